"""Dataset errors name the argument or file: indices as given, speeds that are not finite
(before any numpy warning), and the axis order of ``mnist_test_seq.npy``."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from pyro_dynvae.data import DynamicSprites, MovingMNIST, MovingMNISTFile


@pytest.fixture
def no_warnings():
    """Any warning (e.g. numpy's invalid value in multiply) becomes an error."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


def small_datasets(tmp_path):
    path = tmp_path / "seq.npy"
    np.save(path, np.random.default_rng(0).integers(0, 256, (20, 3, 16, 16), dtype=np.uint8))
    return [
        MovingMNIST(num_sequences=3, num_frames=4, image_size=32),
        DynamicSprites(num_sequences=3, num_frames=4, image_size=16),
        MovingMNISTFile(path),
    ]


@pytest.mark.parametrize("which", range(3))
def test_index_errors_name_the_index_as_given(which, tmp_path):
    dataset = small_datasets(tmp_path)[which]
    for index in (-4, 3, 10):
        message = rf"^index {index} out of range for 3 sequences \(valid: -3 to 2\)"
        with pytest.raises(IndexError, match=message):
            dataset[index]
    with pytest.raises(IndexError, match="index -4 out of range"):
        dataset.get_batch([0, -4])
    for negative in (-3, -1):
        assert torch.equal(dataset[negative][0], dataset[negative + 3][0])
    with pytest.raises(TypeError, match="index must be an int, got float"):
        dataset[1.0]


@pytest.mark.parametrize("value", [float("inf"), float("nan"), -1.0])
@pytest.mark.parametrize(
    "build, name",
    [
        (lambda v: MovingMNIST(num_sequences=2, speed=v), "speed"),
        (lambda v: DynamicSprites(num_sequences=2, speeds={"x": v}), "speed of 'x'"),
        (lambda v: MovingMNIST(num_sequences=2, background="texture", background_speed=v),
         "background_speed"),
        (lambda v: DynamicSprites(num_sequences=2, background="brightness", background_speed=v),
         "background_speed"),
    ],
)
def test_speeds_must_be_finite_and_nonnegative(build, name, value, no_warnings):
    with pytest.raises(ValueError, match=f"^{name} must be a finite number >= 0, got {value}"):
        build(value)


def test_speed_must_be_a_number():
    with pytest.raises(TypeError, match="speed must be a number, got str"):
        MovingMNIST(num_sequences=2, speed="fast")
    with pytest.raises(TypeError, match="speed of 'y' must be a number, got bool"):
        DynamicSprites(num_sequences=2, speeds={"y": True})
    # 0 (static) and ints are speeds.
    assert MovingMNIST(num_sequences=1, speed=0).speed == 0.0
    assert DynamicSprites(num_sequences=1, speeds={"x": 2}).speeds["x"] == 2.0


def test_moving_mnist_file_checks_the_axis_order(tmp_path):
    array = np.random.default_rng(1).integers(0, 256, size=(7, 20, 16, 16), dtype=np.uint8)
    path = tmp_path / "swapped.npy"
    np.save(path, array)
    message = (r"swapped.npy: expected 20 frames along axis 0 of \(T, N, H, W\), got shape "
               r"\(7, 20, 16, 16\); the two axes look swapped: pass time_axis=1")
    with pytest.raises(ValueError, match=message):
        MovingMNISTFile(path)
    dataset = MovingMNISTFile(path, time_axis=1)
    assert len(dataset) == 7 and dataset.num_frames == 20
    frames, factors = dataset[4]
    assert frames.shape == (20, 1, 16, 16) and factors.shape == (20, 0)
    torch.testing.assert_close(frames[:, 0], torch.from_numpy(array[4]).float() / 255)
    # Another sequence length, standard axis order.
    short = tmp_path / "short.npy"
    np.save(short, array[:, :5].transpose(1, 0, 2, 3).copy())  # (5, 7, 16, 16)
    with pytest.raises(ValueError, match=r"got shape \(5, 7, 16, 16\); pass num_frames"):
        MovingMNISTFile(short)
    assert len(MovingMNISTFile(short, num_frames=None)) == 7
    assert MovingMNISTFile(short, num_frames=5).num_frames == 5
    with pytest.raises(ValueError, match="time_axis must be 0 .* or 1"):
        MovingMNISTFile(short, time_axis=2)
    with pytest.raises(ValueError, match="num_frames must be >= 1, got 0"):
        MovingMNISTFile(short, num_frames=0)

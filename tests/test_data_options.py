"""Dataset options that make the factors learnable at 32x32: sprite scale and rotation ranges,
the shapes' symmetries, the digit size of Moving MNIST, and the study's dataset specs."""

import math

import numpy as np
import pytest
import torch

from pyro_dynvae.assessment.datasets import STUDY_DATASETS, make_dataset
from pyro_dynvae.data import DynamicSprites, MovingMNIST
from pyro_dynvae.data.sprites import SYMMETRY_ORDERS


def test_scale_range_sets_the_radius_and_the_margin():
    ds = DynamicSprites(num_sequences=2, image_size=32, shapes=["square"], scale_range=(1.0, 1.5))
    assert (ds.factors[1].low, ds.factors[1].high) == (1.0, 1.5)
    margin = 1.45 * 0.15 * 1.5 * 32
    assert ds.factors[3].low == pytest.approx(margin) and ds.factors[3].high == pytest.approx(
        31 - margin
    )
    rows = ds.sample_factors(40, rng=0, fixed={"colour": 1.0, "rotation": 0.0})
    assert rows[:, 1].min() >= 1.0 and rows[:, 1].max() <= 1.5 and rows[:, 1].std() > 0.1
    # an axis-aligned square of half side 0.8 radii covers (1.6 r)^2 pixels, r = 0.15 S scale
    area = ds.render(rows)[:, 0].sum((-1, -2))
    expected = (1.6 * 0.15 * 32 * rows[:, 1]) ** 2
    torch.testing.assert_close(area, expected, rtol=0.02, atol=0)
    default = DynamicSprites(num_sequences=2)
    assert (default.factors[1].low, default.factors[1].high) == (0.5, 1.0)
    assert default.factors[5].periodic and default.factors[5].high == pytest.approx(2 * math.pi)


def test_largest_scale_fits_the_canvas():
    largest = 31 / (2 * 1.45 * 0.15 * 32)
    ds = DynamicSprites(num_sequences=1, image_size=32, scale_range=(largest, largest))
    rows = torch.tensor([[s, largest, 1.0, ds.factors[3].low, ds.factors[4].high, a]
                         for s in range(4) for a in np.linspace(0, 6, 7)], dtype=torch.float32)
    frames = ds.render(rows)[:, 0]
    border = torch.cat([frames[:, 0], frames[:, -1], frames[:, :, 0], frames[:, :, -1]], dim=1)
    assert border.max() == 0
    with pytest.raises(ValueError, match="scale_range"):
        DynamicSprites(num_sequences=1, image_size=32, scale_range=(1.0, largest * 1.01))


def test_bounded_rotation_bounces_inside_its_range():
    low, high = -math.pi / 6, math.pi / 6
    ds = DynamicSprites(num_sequences=50, num_frames=30, rotation_range=(low, high), seed=3,
                        speeds={"rotation": 0.1})
    assert not ds.factors[5].periodic and (ds.factors[5].low, ds.factors[5].high) == (low, high)
    _, factors = ds.get_batch(range(50))
    rotation = factors[..., 5].double()
    assert rotation.min() >= low - 1e-6 and rotation.max() <= high + 1e-6
    steps = rotation.diff(dim=1)
    assert steps.abs().max() <= 0.1 + 1e-5  # no wrap-around jump of a full range
    assert ((steps[:, 1:] * steps[:, :-1]) < 0).any()  # it bounces
    assert ds.identifiable_periods(factors) == {}


@pytest.mark.parametrize("name", list(SYMMETRY_ORDERS))
def test_symmetry_orders_are_the_renderer_symmetries(name):
    """A turn by 2 pi / k leaves the frame unchanged; half of it changes it (k > 1 shapes)."""
    order = SYMMETRY_ORDERS[name]
    ds = DynamicSprites(num_sequences=1, shapes=[name], scale_range=(1.0, 1.0))
    rows = ds.sample_factors(6, rng=0, fixed={"x": 31.5, "y": 31.5, "colour": 1.0})
    turned = rows.clone()
    turned[:, 5] = (rows[:, 5] + 2 * math.pi / order) % (2 * math.pi)
    frames, turned_frames = ds.render(rows), ds.render(turned)
    assert (frames - turned_frames).abs().max() < 0.02
    for divisor in (2, 3):
        part = rows.clone()
        part[:, 5] = (rows[:, 5] + 2 * math.pi / (order * divisor)) % (2 * math.pi)
        assert (ds.render(part) - frames).abs().amax(dim=(1, 2, 3)).min() > 0.5
    periods = ds.identifiable_periods(rows)["rotation"]
    torch.testing.assert_close(periods, torch.full((6,), 2 * math.pi / order))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"scale_range": (0.0, 1.0)}, "scale_range"),
        ({"scale_range": (1.0, 0.5)}, "scale_range"),
        ({"scale_range": 1.0}, "scale_range"),
        ({"scale_range": (1.0, 2.0, 3.0)}, "scale_range"),
        ({"rotation_range": (1.0, 1.0)}, "rotation_range"),
        ({"rotation_range": (0.0, 7.0)}, "rotation_range"),
        ({"rotation_range": (0.0, float("nan"))}, "rotation_range"),
    ],
)
def test_bad_sprite_options(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DynamicSprites(num_sequences=2, **kwargs)


def test_digit_size_resizes_the_pool_and_leaves_room_to_move():
    ds = MovingMNIST(num_sequences=4, image_size=32, num_digits=1, digit_size=16, seed=1)
    full = MovingMNIST(num_sequences=4, image_size=32, num_digits=1)
    assert ds.digit_size == 16 and ds.max_position == 16 and ds.speed == pytest.approx(1.6)
    assert full.digit_size == 28 and full.max_position == 4
    assert ds.digit_images.shape == (len(full.digit_images), 16, 16)
    assert ds.digit_images.dtype == torch.uint8
    # antialiased resizing keeps each digit's mean grey level (its ink per unit area)
    means = ds.digit_images.double().mean((1, 2))
    assert (means - full.digit_images.double().mean((1, 2))).abs().max() < 2.0
    frames, factors = ds.get_batch(range(4))
    for frame, row in zip(frames.flatten(0, 1), factors.flatten(0, 1), strict=True):
        x, y = (int(round(float(v))) for v in row[2:4])
        window = frame[0, y : y + 16, x : x + 16]
        assert window.sum() == pytest.approx(frame.sum().item())  # all ink inside the digit box
        expected = ds.digit_images[int(row[1])].float() / 255
        torch.testing.assert_close(window, expected)
    span = factors[..., 2].amax(1) - factors[..., 2].amin(1)
    assert span.max() > 8  # the digit travels across the canvas in 20 frames


@pytest.mark.parametrize(
    "kwargs, match",
    [({"digit_size": 3}, "digit_size"), ({"digit_size": 32}, "digit_size"),
     ({"digit_size": 2.5}, "digit_size")],
)
def test_bad_digit_size(kwargs, match):
    with pytest.raises((TypeError, ValueError), match=match):
        MovingMNIST(num_sequences=2, image_size=32, **kwargs)


@pytest.mark.parametrize("name", list(STUDY_DATASETS))
def test_study_specs_build_both_splits(name):
    spec = STUDY_DATASETS[name]
    train = make_dataset(name, "train", num_sequences=3, num_frames=4)
    test = make_dataset(name, "test", num_sequences=3, num_frames=4)
    frames, factors = train[0]
    assert frames.shape[-1] == spec["image_size"] and factors.shape == (4, len(train.factors))
    assert test.split == "test" and test.factor_names == train.factor_names
    custom = make_dataset(name, spec={"image_size": 64, "options": dict(spec["options"])},
                          num_sequences=2)
    assert custom[0][0].shape[-1] == 64


def test_make_dataset_bad_arguments():
    with pytest.raises(ValueError, match="dataset must be one of"):
        make_dataset("cifar")
    with pytest.raises(ValueError, match="spec must be a dict"):
        make_dataset("sprites", spec={"image_size": 32})
    with pytest.raises(ValueError, match="options"):
        make_dataset("sprites", spec={"image_size": 32, "options": 3})

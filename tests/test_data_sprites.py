import math

import numpy as np
import pytest
import torch
from matplotlib.path import Path

from pyro_dynvae.data import DynamicSprites
from pyro_dynvae.data.sprites import hue_to_rgb


@pytest.fixture(scope="module")
def dataset():
    return DynamicSprites(num_sequences=40, seed=2)


def local_coordinates(row, size):
    """Pixel centres in the shape's frame, in radii (independent of the renderer's code)."""
    _, scale, _, x, y, angle = (float(v) for v in row[:6])
    radius = 0.15 * size * scale
    cols, rows = np.meshgrid(np.arange(size), np.arange(size))
    dx, dy = cols - x, rows - y
    u = (np.cos(angle) * dx + np.sin(angle) * dy) / radius
    v = (-np.sin(angle) * dx + np.cos(angle) * dy) / radius
    return u, v, radius


def inside_reference(name, u, v):
    """Inside tests from the shapes' geometric definitions (polygons, ellipse, disc union)."""
    points = np.stack([u.ravel(), v.ravel()], axis=1)
    if name == "square":
        polygon = [(-0.8, -0.8), (0.8, -0.8), (0.8, 0.8), (-0.8, 0.8)]
        return Path(polygon).contains_points(points).reshape(u.shape)
    if name == "triangle":  # circumradius 1, apex up (towards smaller rows)
        polygon = [
            (math.cos(a), -math.sin(a)) for a in (math.pi / 2, 7 * math.pi / 6, -math.pi / 6)
        ]
        return Path(polygon).contains_points(points).reshape(u.shape)
    if name == "ellipse":
        return (u / 1.0) ** 2 + (v / 0.55) ** 2 < 1
    # heart: a square turned by 45 degrees with two half discs on its upper sides
    hx, hy = np.abs(u) * 0.55, (1 - v) * 0.55
    diamond = hx + np.abs(hy - 0.5) < 0.5
    lobe = (hx - 0.25) ** 2 + (hy - 0.75) ** 2 < 1 / 8
    return diamond | lobe


AREAS = {  # in squared radii
    "square": 1.6**2,
    "ellipse": math.pi * 0.55,
    "triangle": 3 * math.sqrt(3) / 4,
    "heart": (0.5 + math.pi / 8) / 0.55**2,
}


@pytest.mark.parametrize("image_size", [64, 32])
@pytest.mark.parametrize("channels", [1, 3])
def test_shapes_dtypes_ranges(image_size, channels):
    ds = DynamicSprites(num_sequences=5, num_frames=6, image_size=image_size, channels=channels)
    frames, factors = ds[4]
    assert frames.shape == (6, channels, image_size, image_size) and frames.dtype == torch.float32
    assert factors.shape == (6, 6) and factors.dtype == torch.float32
    assert frames.min() >= 0 and frames.max() <= 1 and frames.max() >= 0.5
    assert ds.factor_names == ["shape", "scale", "colour", "x", "y", "rotation"]
    assert ds.static_factors == ["shape", "scale", "colour"]


def test_determinism_and_batch_independence(dataset):
    again = DynamicSprites(num_sequences=40, seed=2)
    assert torch.equal(dataset[7][0], again[7][0]) and torch.equal(dataset[7][1], again[7][1])
    frames, factors = dataset.get_batch([3, 7])
    assert torch.equal(factors[1], dataset[7][1])
    torch.testing.assert_close(frames[1], dataset[7][0], rtol=0, atol=1e-6)
    assert not torch.equal(dataset[0][1], DynamicSprites(num_sequences=40, seed=3)[0][1])
    test = DynamicSprites(num_sequences=40, seed=2, split="test")
    assert not torch.equal(dataset[0][1], test[0][1])


@pytest.mark.parametrize("name", ["square", "ellipse", "triangle", "heart"])
def test_shapes_match_geometric_reference(name):
    ds = DynamicSprites(num_sequences=1, shapes=[name])
    rows = ds.sample_factors(12, rng=0, fixed={"colour": 1.0})
    alpha = ds.render(rows)[:, 0].numpy()
    for row, image in zip(rows, alpha, strict=True):
        u, v, radius = local_coordinates(row, 64)
        inside = inside_reference(name, u, v)
        assert not (inside & (image == 0)).any()  # fully uncovered pixels are outside
        assert not (~inside & (image == 1)).any()  # fully covered pixels are inside
        assert (image == 1).sum() > 0.5 * inside.sum()
        # anti-aliased coverage integrates to the analytic area (pixels are unit squares)
        assert image.sum() == pytest.approx(AREAS[name] * radius**2, rel=0.04)


def test_rerender_from_factors(dataset):
    frames, factors = dataset.get_batch(range(8))
    torch.testing.assert_close(dataset.render(factors), frames, rtol=0, atol=1e-6)
    torch.testing.assert_close(dataset.render(factors[5, 9]), frames[5, 9], rtol=0, atol=1e-6)


def test_shape_stays_inside_canvas():
    ds = DynamicSprites(num_sequences=1)
    low, high = ds.factors[3].low, ds.factors[3].high
    corners = [(low, low), (low, high), (high, low), (high, high)]
    rows = torch.tensor(
        [
            [s, 1.0, 1.0, x, y, a]
            for s in range(4)
            for x, y in corners
            for a in np.linspace(0, 6, 13)
        ]
    )
    frames = ds.render(rows)[:, 0]
    border = torch.cat([frames[:, 0], frames[:, -1], frames[:, :, 0], frames[:, :, -1]], dim=1)
    assert border.max() == 0 and frames.amax(dim=(1, 2)).min() == 1


def test_speeds_per_factor():
    speeds = {"x": 3.0, "y": 0.5, "rotation": 0.02, "scale": 0.01}
    ds = DynamicSprites(num_sequences=30, num_frames=12, speeds=speeds, seed=1)
    assert ds.static_factors == ["shape", "colour"]
    _, factors = ds.get_batch(range(30))
    steps = factors.diff(dim=1).abs()
    for name, speed in speeds.items():
        column = steps[..., ds.factor_names.index(name)].double()
        if name == "rotation":
            column = torch.minimum(column, 2 * math.pi - column)  # wrap-around
        assert column.max() <= speed + 1e-4
        assert column.median() >= speed / 2 - 1e-4  # away from walls the step is in [s/2, s]
    for name in ("shape", "colour"):
        assert steps[..., ds.factor_names.index(name)].max() == 0
    x = factors[..., 3].double()
    assert x.min() >= ds.factors[3].low and x.max() <= ds.factors[3].high
    assert (factors[..., 5] >= 0).all() and (factors[..., 5] < 2 * math.pi + 1e-6).all()


def test_hue_to_rgb_known_colours():
    rgb = hue_to_rgb(torch.tensor([0.0, 1 / 6, 1 / 3, 0.5, 2 / 3, 5 / 6]))
    expected = [[1, 0, 0], [1, 1, 0], [0, 1, 0], [0, 1, 1], [0, 0, 1], [1, 0, 1]]
    torch.testing.assert_close(rgb, torch.tensor(expected, dtype=torch.float32))


def test_colour_and_background_compositing():
    ds = DynamicSprites(num_sequences=4, channels=3, background="brightness", seed=0)
    frames, factors = ds.get_batch(range(4))
    assert ds.factor_names[-1] == "background"
    for b in range(4):
        frame, row = frames[b, 0], factors[b, 0]
        alpha_one = DynamicSprites(num_sequences=1).render(
            torch.cat([row[:2], torch.ones(1), row[3:6]])
        )[0]
        full = alpha_one == 1
        np.testing.assert_allclose(
            frame[:, full].T.numpy(), hue_to_rgb(row[2]).expand(int(full.sum()), 3).numpy()
        )
        empty = alpha_one == 0
        torch.testing.assert_close(
            frame[:, empty], torch.full_like(frame[:, empty], float(row[-1]))
        )


def test_sample_factors_and_discretize(dataset):
    rows = dataset.sample_factors(64, rng=3, fixed={"shape": 2, "x": 20.0})
    assert (rows[:, 0] == 2).all() and (rows[:, 3] == 20.0).all()
    assert rows[:, 4].std() > 1 and rows[:, 5].std() > 0.1  # the rest varies
    codes = dataset.discretize(rows, num_bins=8)
    assert (codes[:, 0] == 2).all() and codes.dtype == torch.int64
    expected = np.floor((rows[:, 1].numpy() - 0.5) / 0.5 * 8)
    np.testing.assert_array_equal(codes[:, 1].numpy(), np.minimum(expected, 7))
    assert dataset.num_codes(8) == [4, 8, 8, 8, 8, 8]
    assert dataset.render(rows).shape == (64, 1, 64, 64)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"channels": 2}, "channels"),
        ({"image_size": 8}, "image_size"),
        ({"shapes": ["square", "star"]}, "shapes"),
        ({"shapes": "square"}, "shapes"),
        ({"shapes": []}, "shapes"),
        ({"shapes": ["heart", "heart"]}, "shapes"),
        ({"speeds": {"shape": 1.0}}, "unknown factor 'shape'"),
        ({"speeds": {"x": -1.0}}, "speed of 'x'"),
        ({"num_frames": 0}, "num_frames"),
        ({"split": "dev"}, "split"),
        ({"background": "noise"}, "background"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DynamicSprites(num_sequences=2, **kwargs)


def test_bad_factor_rows(dataset):
    with pytest.raises(ValueError, match=r"\(\.\.\., 6\)"):
        dataset.render(torch.zeros(2, 7))
    row = dataset[0][1][0].clone()
    row[3] = 0.0
    with pytest.raises(ValueError, match="factor 'x'"):
        dataset.render(row)
    row = dataset[0][1][0].clone()
    row[0] = 4
    with pytest.raises(ValueError, match="factor 'shape'"):
        dataset.render(row)
    with pytest.raises(ValueError, match="rotation"):
        dataset.sample_factors(2, fixed={"rotation": 7.0})
    row = dataset[0][1][0].clone()
    row[5] = float("nan")
    with pytest.raises(ValueError, match="finite"):
        dataset.render(row)


def test_sample_factors_in_chunks_keeps_the_distribution(dataset):
    rows = dataset.sample_factors(5000, rng=0)  # more than one chunk of 4096
    assert rows.shape == (5000, 6)
    counts = torch.bincount(rows[:, 0].long(), minlength=4).float()
    assert (counts / 5000 - 0.25).abs().max() < 0.03  # 4 sigma = 0.024
    assert rows[:, 1].min() >= 0.5 and rows[:, 1].max() <= 1.0


def test_fixed_values_at_float32_range_ends(dataset):
    # rows are float32, so a value of a row may be the float32 rounding of the range's end
    for name in ("x", "rotation"):
        high = float(np.float32(dataset.factors[dataset.factor_index(name)].high))
        rows = dataset.sample_factors(3, rng=0, fixed={name: high})
        assert (rows[:, dataset.factor_index(name)] == high).all()
        dataset.render(rows)
    view = dataset.factor_subset(["shape", "x"])
    assert view.sample_factors(4, rng=1, fixed={"shape": 1}).shape == (4, 2)
    assert dataset.metric_factors == dataset.factor_names

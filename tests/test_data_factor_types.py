"""Factor types declared by the datasets, and rotation reduced modulo each shape's symmetry."""

import math

import pytest
import torch

from pyro_dynvae.data import DynamicSprites, MovingMNIST
from pyro_dynvae.data.base import FactorType
from pyro_dynvae.data.sprites import SYMMETRY_ORDERS


def test_sprites_declare_a_type_for_every_factor():
    grey = DynamicSprites(num_sequences=2, image_size=32, background="texture")
    types = dict(zip(grey.factor_names, grey.factor_types, strict=True))
    assert types == {
        "shape": FactorType("categorical"),
        "scale": FactorType("continuous"),
        "colour": FactorType("continuous"),  # grey intensity
        "x": FactorType("continuous"),
        "y": FactorType("continuous"),
        "rotation": FactorType("periodic", 2 * math.pi),
        "background": FactorType("periodic", 32.0),  # the texture's offset wraps at the width
    }
    colour = DynamicSprites(num_sequences=2, image_size=32, channels=3)
    assert colour.factor_types[colour.factor_index("colour")] == FactorType("periodic", 1.0)


def test_moving_mnist_declares_a_type_for_every_factor():
    dataset = MovingMNIST(num_sequences=2, image_size=32, num_digits=1, background="brightness")
    kinds = {name: kind for name, (kind, _) in
             zip(dataset.factor_names, dataset.factor_types, strict=True)}
    assert kinds == {"digit0_class": "categorical", "digit0_image": "categorical",
                     "digit0_x": "continuous", "digit0_y": "continuous",
                     "digit0_vx": "continuous", "digit0_vy": "continuous",
                     "background": "continuous"}
    assert dataset.factor_subset().factor_types == [
        FactorType("categorical"), FactorType("continuous"), FactorType("continuous"),
        FactorType("continuous")]


@pytest.mark.parametrize("shape", list(SYMMETRY_ORDERS))
def test_declared_symmetry_orders_match_the_renderer(shape):
    """A turn by 2 pi / k draws the same frame; a turn by a smaller fraction of the circle that
    the declared order does not allow draws another one."""
    dataset = DynamicSprites(num_sequences=1, image_size=48, shapes=[shape])
    order = SYMMETRY_ORDERS[shape]
    row = torch.tensor([0.0, 1.0, 0.8, 24.0, 24.0, 0.3])
    turned = row.clone()
    turned[5] = (0.3 + 2 * math.pi / order) % (2 * math.pi)
    frames = dataset.render(torch.stack([row, turned]))
    assert (frames[0] - frames[1]).abs().max() < 1e-3
    for other in (2, 3, 4):
        if order % other:  # a symmetry the shape does not have
            wrong = row.clone()
            wrong[5] += 2 * math.pi / other
            assert (dataset.render(wrong) - frames[0]).abs().max() > 0.2, other
    folded = dataset.identifiable_factors(torch.stack([row, turned]))
    assert folded[0, 5] == pytest.approx(folded[1, 5], abs=1e-5)
    assert folded[0, 5] == pytest.approx((order * 0.3) % (2 * math.pi), abs=1e-5)
    torch.testing.assert_close(folded[:, :5], torch.stack([row, turned])[:, :5])


def test_identifiable_factors_use_each_rows_shape():
    dataset = DynamicSprites(num_sequences=8, num_frames=3, image_size=32)
    factors = dataset.sequence_factors(range(8))
    folded = dataset.identifiable_factors(factors)
    orders = torch.tensor([SYMMETRY_ORDERS[name] for name in dataset.shapes], dtype=torch.float64)
    expected = torch.remainder(orders[factors[..., 0].long()] * factors[..., 5].double(),
                               2 * math.pi)
    torch.testing.assert_close(folded[..., 5].double(), expected, atol=1e-5, rtol=0)
    assert ((folded[..., 5] >= 0) & (folded[..., 5] <= 2 * math.pi)).all()
    subset = dataset.factor_subset(["shape", "rotation"])
    torch.testing.assert_close(subset.identifiable_factors(factors[..., [0, 5]]),
                               folded[..., [0, 5]])
    with pytest.raises(ValueError, match="'rotation' is identifiable only given 'shape'"):
        dataset.factor_subset(["rotation", "x"]).identifiable_factors(factors[..., [5, 3]])
    plain = MovingMNIST(num_sequences=2, image_size=32, num_digits=1)
    rows = plain.sequence_factors([0, 1])
    torch.testing.assert_close(plain.identifiable_factors(rows), rows)

"""SharedScaleNormal against the elementwise Normal it computes faster."""

import math

import pyro.distributions as dist
import pytest
import torch

from pyro_dynvae.distributions import SharedScaleNormal


def test_density_gradients_and_moments_match_the_elementwise_normal():
    torch.manual_seed(0)
    loc = torch.randn(3, 2, 4, 5, dtype=torch.float64, requires_grad=True)
    scale = torch.tensor(0.7, dtype=torch.float64, requires_grad=True)
    value = torch.randn(6, 3, 2, 4, 5, dtype=torch.float64)  # a sample dim broadcasts
    ours = SharedScaleNormal(loc, scale, event_dim=3)
    reference = dist.Normal(loc, scale).to_event(3)
    assert ours.batch_shape == reference.batch_shape and ours.event_shape == (2, 4, 5)
    log_prob, expected = ours.log_prob(value), reference.log_prob(value)
    torch.testing.assert_close(log_prob, expected)
    weights = torch.randn(6, 3, dtype=torch.float64)
    grads = torch.autograd.grad((weights * log_prob).sum(), (loc, scale))
    expected_grads = torch.autograd.grad((weights * expected).sum(), (loc, scale))
    for grad, expected_grad in zip(grads, expected_grads, strict=True):
        torch.testing.assert_close(grad, expected_grad)
    torch.testing.assert_close(ours.entropy(), reference.entropy())
    torch.testing.assert_close(ours.variance, reference.variance)
    wide = ours.expand((2, 3))
    torch.testing.assert_close(wide.log_prob(value[:2]), reference.expand((2, 3)).log_prob(
        value[:2]))


def test_samples_have_the_shared_scale():
    torch.manual_seed(1)
    loc = torch.linspace(-1, 1, 50).reshape(5, 10)
    draws = SharedScaleNormal(loc, torch.tensor(0.3), event_dim=1).rsample((20000,))
    assert draws.shape == (20000, 5, 10)
    # Monte Carlo: standard errors 0.3 / sqrt(20000) ~ 0.002 (mean), ~0.0015 (std)
    assert (draws.mean(0) - loc).abs().max() < 0.01
    assert abs(float(draws.std(0).mean()) - 0.3) < 0.005
    assert math.isclose(float((draws - loc).std()), 0.3, rel_tol=0.02)


def test_errors():
    loc = torch.zeros(2, 3)
    with pytest.raises(ValueError, match="scale must be a 0-dim tensor"):
        SharedScaleNormal(loc, torch.ones(3), event_dim=1)
    with pytest.raises(ValueError, match="event_dim"):
        SharedScaleNormal(loc, torch.tensor(1.0), event_dim=3)
    with pytest.raises(ValueError):
        SharedScaleNormal(loc, torch.tensor(-1.0), event_dim=1, validate_args=True)

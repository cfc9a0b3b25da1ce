"""Analytic KL(BlockTridiagMVN || BlockTridiagMVN) against the dense MultivariateNormal KL."""

import pyro
import pyro.infer
import pyro.optim
import pytest
import torch
from torch.distributions import MultivariateNormal, kl_divergence

from pyro_dynvae.distributions import BlockTridiagMVN
from pyro_dynvae.distributions.testing import random_block_tridiag


def random_mvn(batch_shape, num_steps, dim, blocks, seed, **kwargs):
    generator = torch.Generator().manual_seed(seed)
    diag, offdiag = random_block_tridiag(
        batch_shape, num_steps, dim, blocks=blocks, generator=generator, **kwargs
    )
    loc = torch.randn(batch_shape + (num_steps, dim), dtype=torch.float64, generator=generator)
    return BlockTridiagMVN(loc, diag, offdiag, blocks=blocks)


def dense(d):
    return MultivariateNormal(d.loc.flatten(-2), precision_matrix=d.precision_matrix)


@pytest.mark.parametrize("q_blocks", ["full", "diagonal"])
@pytest.mark.parametrize("p_blocks", ["full", "diagonal"])
@pytest.mark.parametrize("num_steps,dim", [(1, 3), (6, 1), (7, 3)])
def test_kl_matches_dense(q_blocks, p_blocks, num_steps, dim):
    q = random_mvn((2, 3), num_steps, dim, q_blocks, seed=0)
    p = random_mvn((3,), num_steps, dim, p_blocks, seed=1)  # batch shapes broadcast
    kl = kl_divergence(q, p)
    assert kl.shape == (2, 3)
    torch.testing.assert_close(kl, kl_divergence(dense(q), dense(p)))
    torch.testing.assert_close(kl_divergence(q, q), torch.zeros(2, 3, dtype=torch.float64))


def test_kl_ill_conditioned():
    q = random_mvn((2,), 20, 2, "full", seed=2, log10_scale_range=2.0)
    p = random_mvn((2,), 20, 2, "full", seed=3)
    torch.testing.assert_close(
        kl_divergence(q, p), kl_divergence(dense(q), dense(p)), rtol=1e-8, atol=1e-8
    )


def test_kl_gradcheck():
    q = random_mvn((), 4, 2, "full", seed=4)
    p = random_mvn((), 4, 2, "diagonal", seed=5)
    params = [x.detach().clone().requires_grad_() for x in (q.loc, q._diag, q._offdiag)]

    def kl(loc, diag, offdiag):
        return kl_divergence(BlockTridiagMVN(loc, (diag + diag.mT) / 2, offdiag), p)

    assert torch.autograd.gradcheck(kl, params)


def test_kl_event_shape_mismatch():
    with pytest.raises(ValueError, match="equal event shapes"):
        kl_divergence(random_mvn((), 4, 2, "full", seed=0), random_mvn((), 5, 2, "full", seed=0))


def test_trace_mean_field_elbo_uses_the_analytic_kl():
    # With no observed sites the mean-field ELBO loss is exactly KL(q || p), with no Monte
    # Carlo noise, only if the registered closed form is used.
    prior = random_mvn((), 5, 2, "full", seed=6)
    guide_dist = random_mvn((), 5, 2, "diagonal", seed=7)

    def model():
        pyro.sample("z", prior)

    def guide():
        pyro.sample("z", guide_dist)

    elbo = pyro.infer.TraceMeanField_ELBO()
    losses = [elbo.loss(model, guide) for _ in range(3)]
    expected = kl_divergence(dense(guide_dist), dense(prior)).item()
    assert losses == pytest.approx([expected] * 3, rel=1e-10)

"""SVI with a BlockTridiagMVN guide recovers the exact smoothing posterior of a
linear-Gaussian state-space model (compared with a dense computation)."""

import math

import pyro
import pyro.distributions as dist
import pyro.infer
import pyro.optim
import pytest
import torch
from torch.nn.functional import softplus

from pyro_dynvae.distributions import BlockTridiagMVN


@pytest.fixture
def one_thread():
    # Thousands of tiny ops: intra-op threads only add synchronisation, which on a loaded
    # machine costs milliseconds per op.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_svi_recovers_kalman_smoother_posterior(one_thread):
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    num_steps, dim = 8, 2
    angle = 0.3
    rotation = torch.tensor(
        [[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]]
    )
    trans = 0.95 * rotation.expand(num_steps - 1, dim, dim)
    noise = 0.2 * torch.eye(dim).expand(num_steps - 1, dim, dim)
    prior = BlockTridiagMVN.from_markov_chain(torch.zeros(dim), torch.eye(dim), trans, noise)
    obs_var = torch.tensor([0.3, 0.6])
    obs = prior.sample() + obs_var.sqrt() * torch.randn(num_steps, dim)

    # Exact posterior, densely: J = J_prior + blockdiag(R^{-1}), h = R^{-1} x (prior mean 0).
    precision = prior.precision_matrix + torch.diag((1 / obs_var).repeat(num_steps))
    covariance = torch.linalg.inv(precision.double())
    exact_mean = (covariance @ (obs / obs_var).flatten().double()).reshape(num_steps, dim)
    exact_var = covariance.diagonal().reshape(num_steps, dim)

    def model():
        z = pyro.sample("z", prior)
        pyro.sample("x", dist.Normal(z, obs_var.sqrt()).to_event(2), obs=obs)

    def guide():
        # Precision = prior precision + positive local terms (Archer et al. 2016): positive
        # definite by construction, and the exact posterior lies in the family.
        loc = pyro.param("loc", torch.zeros(num_steps, dim))
        local = softplus(pyro.param("local_raw", torch.zeros(num_steps, dim)))
        diag = prior.diag_blocks + torch.diag_embed(local)
        pyro.sample("z", BlockTridiagMVN(loc, diag, prior.offdiag_blocks))

    svi = pyro.infer.SVI(
        model,
        guide,
        pyro.optim.ClippedAdam({"lr": 0.1, "lrd": 0.995}),
        pyro.infer.TraceMeanField_ELBO(num_particles=16, vectorize_particles=True),
    )
    for _ in range(800):
        svi.step()

    with torch.no_grad():
        loc = pyro.param("loc")
        local = softplus(pyro.param("local_raw"))
        fitted = BlockTridiagMVN(
            loc, prior.diag_blocks + torch.diag_embed(local), prior.offdiag_blocks
        )
        # Tolerances: means within 0.1 posterior standard deviations, variances within 5%
        # (seeds 0-3 reach 0.02-0.04 and 1-2%).
        assert ((fitted.mean.double() - exact_mean) / exact_var.sqrt()).abs().max() < 0.1
        assert ((fitted.variance.double() / exact_var) - 1).abs().max() < 0.05

"""Gradients of BlockTridiagMVN along its two routes for ``log|J|`` (the selected-inverse
backward on a fresh distribution, autograd through the cached factor once there is one) and
through the adjoint solve of ``from_info``, against autograd through the dense
MultivariateNormal, for both algorithms and block layouts."""

from __future__ import annotations

import pytest
import torch
from oracles import graph_nodes
from torch.distributions import MultivariateNormal, kl_divergence

from pyro_dynvae.distributions import BlockTridiagMVN
from pyro_dynvae.distributions.testing import random_block_tridiag
from pyro_dynvae.ops import dispatch

ALGORITHMS = ["sequential", "cyclic", "dense"]
BLOCKS = ["full", "diagonal"]
ROUTES = ["fresh", "factorised"]
NUM_STEPS, DIM = 17, 3


def random_parameters(batch_shape, blocks, seed):
    generator = torch.Generator().manual_seed(seed)
    diag, off = random_block_tridiag(
        batch_shape, NUM_STEPS, DIM, blocks=blocks, generator=generator
    )
    loc = torch.randn(batch_shape + (NUM_STEPS, DIM), dtype=torch.float64, generator=generator)
    return tuple(x.requires_grad_() for x in (loc, diag, off))


def build(params, blocks, route):
    """The distribution without validation (which would factorise at construction); with
    ``route="factorised"`` an ``rsample`` caches the factor first."""
    d = BlockTridiagMVN(*params, validate_args=False, blocks=blocks)
    if route == "factorised":
        d.rsample()
    return d


def dense(params, blocks):
    """The reference: the dense MultivariateNormal of the symmetrised ``D_t`` (only symmetric
    perturbations are meaningful), so that its ``D_t`` gradient is the symmetric one."""
    loc, diag, off = params
    symmetric = (diag + diag.mT) / 2 if blocks == "full" else diag
    return BlockTridiagMVN(loc, symmetric, off, validate_args=False, blocks=blocks).to_dense()


def assert_route(d, route):
    """The route actually taken: the factor is cached exactly on the factorised route, and only
    the fresh route's ``log|J|`` has the selected-inverse backward."""
    assert ("_factor" in d.__dict__) == (route == "factorised")
    selected_inverse = "BlockTridiagLogdet" in type(d._logdet_precision.grad_fn).__name__
    assert selected_inverse == (route == "fresh")


def assert_grads_close(objective, expected, params):
    grads = torch.autograd.grad(objective, params)
    expected_grads = torch.autograd.grad(expected, params)
    for ours, theirs in zip(grads, expected_grads, strict=True):
        assert ours.shape == theirs.shape
        torch.testing.assert_close(ours, theirs, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("blocks", BLOCKS)
@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_log_prob_and_entropy_gradients_match_dense(algorithm, blocks, route):
    params = random_parameters((2,), blocks, seed=0)
    value = torch.randn(4, 2, NUM_STEPS, DIM, dtype=torch.float64)
    weights = torch.randn(4, 2, dtype=torch.float64)
    with dispatch.block_tridiag_algorithm(algorithm):
        d = build(params, blocks, route)
        objective = (weights * d.log_prob(value)).sum() + (weights[0] * d.entropy()).sum()
    assert_route(d, route)
    reference = dense(params, blocks)
    expected = (weights * reference.log_prob(value.flatten(-2))).sum()
    expected = expected + (weights[0] * reference.entropy()).sum()
    torch.testing.assert_close(objective, expected)
    assert_grads_close(objective, expected, params)


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("blocks", BLOCKS)
@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_kl_gradients_match_dense(algorithm, blocks, route):
    q_params = random_parameters((2,), blocks, seed=1)
    p_params = random_parameters((), blocks, seed=2)  # a prior shared by the batch
    with dispatch.block_tridiag_algorithm(algorithm):
        p = build(p_params, blocks, route)
        kl = kl_divergence(BlockTridiagMVN(*q_params, validate_args=False, blocks=blocks), p)
    assert_route(p, route)
    expected = kl_divergence(dense(q_params, blocks), dense(p_params, blocks))
    weights = torch.tensor([0.5, -2.0], dtype=torch.float64)
    torch.testing.assert_close(kl, expected)
    assert_grads_close((weights * kl).sum(), (weights * expected).sum(), q_params + p_params)


@pytest.mark.parametrize("blocks", BLOCKS)
@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_from_info_gradients_match_dense(algorithm, blocks):
    info, diag, off = params = random_parameters((2,), blocks, seed=3)
    value = torch.randn(2, NUM_STEPS, DIM, dtype=torch.float64)
    weights = torch.randn(2, NUM_STEPS, DIM, dtype=torch.float64)
    with dispatch.block_tridiag_algorithm(algorithm):
        d = BlockTridiagMVN.from_info(info, diag, off, blocks=blocks)
        objective = (weights * d.mean).sum() + d.log_prob(value).sum()
    assert "_factor" in d.__dict__  # one factorisation, reused for log|J|
    # The mean's backward is the adjoint solve and views, nothing of the factorisation.
    mean_graph = graph_nodes(d.mean)
    assert "_BlockTridiagSolveBackward" in mean_graph
    views = {"UnsqueezeBackward0", "SqueezeBackward1", "ExpandBackward0", "AccumulateGrad"}
    assert mean_graph <= views | {"_BlockTridiagSolveBackward"}, mean_graph
    reference = dense(params, blocks)
    precision = reference.precision_matrix
    mean = torch.linalg.solve(precision, info.flatten(-2).unsqueeze(-1)).squeeze(-1)
    reference = MultivariateNormal(mean, precision_matrix=precision)
    expected = (weights.flatten(-2) * mean).sum() + reference.log_prob(value.flatten(-2)).sum()
    torch.testing.assert_close(objective, expected)
    assert_grads_close(objective, expected, params)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_selected_inverse_route_names_the_failing_step(algorithm):
    loc, diag, off = (x.detach() for x in random_parameters((2, 3), "full", seed=4))
    diag[0, 2, 9] -= 50 * torch.eye(DIM, dtype=torch.float64)
    d = BlockTridiagMVN(loc, diag, off, validate_args=False)
    with (
        dispatch.block_tridiag_algorithm(algorithm),
        pytest.raises(
            ValueError, match=r"not positive definite.*time step 9 \(batch index \(0, 2\)\)"
        ),
    ):
        d.log_prob(loc)
    assert "_factor" not in d.__dict__

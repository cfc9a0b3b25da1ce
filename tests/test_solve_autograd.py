"""The one-solve adjoint of ``J^{-1} h``: gradcheck, gradients against autograd through a dense
``torch.linalg.solve``, batch broadcasting, and independence from the factor's graph."""

from __future__ import annotations

import pytest
import torch
from test_cyclic_reduction import random_precision

from pyro_dynvae.ops import dispatch
from pyro_dynvae.ops.block_tridiag import dense_from_blocks

PATHS = ["sequential", "cyclic", "dense"]
BLOCKS = ["full", "diagonal"]


def random_blocks(batch, num_steps, n, blocks, seed):
    """A random SPD block-tridiagonal ``J`` in the given layout (float64)."""
    if blocks == "full":
        return random_precision(batch, num_steps, n, seed=seed)
    gen = torch.Generator().manual_seed(seed)
    diag = 2 + torch.rand(batch + (num_steps, n), generator=gen, dtype=torch.float64)
    off = torch.rand(batch + (num_steps - 1, n), generator=gen, dtype=torch.float64) - 0.5
    return diag, off


def symmetric(diag, blocks):
    """Only symmetric perturbations of ``D_t`` are meaningful (the factorisations read the
    lower triangle): finite differences and the dense reference see the symmetrised block."""
    return (diag + diag.mT) / 2 if blocks == "full" else diag


def adjoint_solve(diag, off, rhs, blocks, path, factor_grad=False):
    """``J^{-1} rhs`` through :func:`dispatch.solve_with_adjoint`, the factor computed without
    autograd unless ``factor_grad``. The factor is of the symmetrised ``J`` but ``diag`` itself
    goes to the adjoint, whose ``D_t`` gradient must then be the symmetric one to pass."""
    with torch.set_grad_enabled(factor_grad):
        factor = dispatch.factorize(symmetric(diag, blocks), off, blocks=blocks, algorithm=path)
    return dispatch.solve_with_adjoint(factor, diag, off, rhs, blocks=blocks)


def dense_solve(diag, off, rhs, blocks):
    """The reference: autograd through ``torch.linalg.solve`` on the assembled dense ``J``."""
    dense = dense_from_blocks(symmetric(diag, blocks), off, blocks=blocks)
    solution = torch.linalg.solve(dense, rhs.flatten(-3, -2))
    return solution.reshape(solution.shape[:-2] + rhs.shape[-3:])


@pytest.mark.parametrize("blocks", BLOCKS)
@pytest.mark.parametrize("path", PATHS)
def test_gradcheck(path, blocks):
    diag, off = random_blocks((), 6, 2, blocks, seed=0)
    rhs = torch.randn(6, 2, 2, dtype=torch.float64)
    inputs = tuple(x.requires_grad_() for x in (diag, off, rhs))
    assert torch.autograd.gradcheck(lambda d, b, h: adjoint_solve(d, b, h, blocks, path), inputs)


@pytest.mark.parametrize("blocks", BLOCKS)
@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize(
    "diag_batch,off_batch,rhs_batch",
    [((), (), (4,)), ((2,), (), (3, 1)), ((2,), (2,), ())],
    ids=["shared-blocks-batched-rhs", "broadcast", "batched-blocks-shared-rhs"],
)
def test_gradients_match_dense_solve(path, blocks, diag_batch, off_batch, rhs_batch):
    num_steps, n, k = 17, 3, 2
    diag, _ = random_blocks(diag_batch, num_steps, n, blocks, seed=1)
    _, off = random_blocks(off_batch, num_steps, n, blocks, seed=2)
    rhs = torch.randn(rhs_batch + (num_steps, n, k), dtype=torch.float64)
    inputs = tuple(x.requires_grad_() for x in (diag, off, rhs))
    solution = adjoint_solve(diag, off, rhs, blocks, path)
    expected = dense_solve(diag, off, rhs, blocks)
    assert solution.shape == expected.shape
    torch.testing.assert_close(solution, expected, rtol=1e-10, atol=1e-10)
    weights = torch.randn(expected.shape, dtype=torch.float64)
    grads = torch.autograd.grad((weights * solution).sum(), inputs)
    expected_grads = torch.autograd.grad((weights * expected).sum(), inputs)
    for ours, theirs in zip(grads, expected_grads, strict=True):
        assert ours.shape == theirs.shape
        torch.testing.assert_close(ours, theirs, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("path", PATHS)
def test_backward_does_not_use_the_factor_graph(path):
    diag, off = random_blocks((2,), 12, 3, "full", seed=3)
    rhs = torch.randn(2, 12, 3, 1, dtype=torch.float64)
    inputs = tuple(x.requires_grad_() for x in (diag, off, rhs))
    with_graph = adjoint_solve(diag, off, rhs, "full", path, factor_grad=True)
    without_graph = adjoint_solve(diag, off, rhs, "full", path)
    # The solution's graph is one node whose inputs are the three leaves: nothing of the
    # factorisation is kept for the backward.
    for solution in (with_graph, without_graph):
        parents = [fn for fn, _ in solution.grad_fn.next_functions if fn is not None]
        assert len(parents) == 3
        assert all(fn.variable is leaf for fn, leaf in zip(parents, inputs, strict=True))
    grads = torch.autograd.grad(with_graph.sum(), inputs)
    for ours, theirs in zip(grads, torch.autograd.grad(without_graph.sum(), inputs), strict=True):
        torch.testing.assert_close(ours, theirs, rtol=0, atol=0)


def test_errors_and_no_second_derivative():
    diag, off = random_blocks((), 5, 2, "full", seed=4)
    factor = dispatch.factorize(diag, off)
    with pytest.raises(ValueError, match=r"rhs must have shape \(\.\.\., T, n, k\) = "):
        dispatch.solve_with_adjoint(factor, diag, off, torch.zeros(5, 2))
    with pytest.raises(TypeError, match="rhs must be a tensor"):
        dispatch.solve_with_adjoint(factor, diag, off, [[0.0]])
    with pytest.raises(ValueError, match="offdiag_blocks"):
        dispatch.solve_with_adjoint(factor, diag, off[:3], torch.zeros(5, 2, 1))
    diag.requires_grad_()
    rhs = torch.ones(5, 2, 1, dtype=torch.float64)
    solution = dispatch.solve_with_adjoint(factor, diag, off, rhs)
    (grad,) = torch.autograd.grad(solution.square().sum(), diag, create_graph=True)
    with pytest.raises(RuntimeError, match="once_differentiable"):
        grad.sum().backward()

"""The algorithm dispatch: the choice rule, overrides, and equivalence of the two paths."""

from __future__ import annotations

import pytest
import torch
from test_cyclic_reduction import dense_band, dense_precision, random_precision

from pyro_dynvae.ops import block_tridiag as sequential
from pyro_dynvae.ops import dispatch
from pyro_dynvae.ops.cyclic_reduction import CyclicReductionFactor
from pyro_dynvae.ops.dense_factor import DenseFactor

PATHS = ["sequential", "cyclic", "dense"]


def test_choose_algorithm_rule_and_overrides():
    def blocks(batch, num_steps, n):
        return torch.zeros(batch + (num_steps, n, n))

    assert dispatch.choose_algorithm(blocks((1,), 1000, 32)) == "cyclic"  # B n^2 = 1024
    assert dispatch.choose_algorithm(blocks((16,), 1000, 8)) == "cyclic"  # B n^3 = 8192
    assert dispatch.choose_algorithm(blocks((64,), 1000, 8)) == "sequential"
    assert dispatch.choose_algorithm(blocks((4, 4), 1000, 16)) == "sequential"  # B = 16
    assert dispatch.choose_algorithm(blocks((1,), 12, 4)) == "sequential"  # T < 16, T n = 48
    assert dispatch.choose_algorithm(blocks((256,), 10, 4)) == "dense"  # T n = 40
    assert dispatch.choose_algorithm(blocks((1,), 20, 2)) == "dense"
    assert dispatch.choose_algorithm(blocks((1,), 21, 2)) == "cyclic"  # T n = 42
    assert dispatch.choose_algorithm(torch.zeros(1, 10, 2), blocks="diagonal") == "sequential"
    scalar_chains = torch.zeros(1, 10, 2)  # one fused operation per step already
    assert dispatch.choose_algorithm(scalar_chains, blocks="diagonal", algorithm="dense") == (
        "sequential"
    )
    diag = torch.zeros(4, 1000, 16)  # 64 scalar chains
    assert dispatch.choose_algorithm(diag, blocks="diagonal") == "cyclic"
    assert dispatch.choose_algorithm(torch.zeros(5, 1000, 16), blocks="diagonal") == "sequential"
    assert dispatch.choose_algorithm(torch.zeros(1, 100, 4), blocks="diagonal") == "sequential"
    big = blocks((64,), 1000, 8)
    assert dispatch.choose_algorithm(big, algorithm="cyclic") == "cyclic"
    with dispatch.block_tridiag_algorithm("cyclic"):
        assert dispatch.choose_algorithm(big) == "cyclic"
        assert dispatch.choose_algorithm(big, algorithm="auto") == "sequential"
        with dispatch.block_tridiag_algorithm("sequential"):
            assert dispatch.choose_algorithm(blocks((1,), 1000, 4)) == "sequential"
        assert dispatch.choose_algorithm(blocks((1,), 1000, 4)) == "cyclic"
    assert dispatch.choose_algorithm(big) == "sequential"
    with pytest.raises(ValueError, match="algorithm"):
        dispatch.choose_algorithm(big, algorithm="scan")
    with pytest.raises(ValueError, match="algorithm"), dispatch.block_tridiag_algorithm("fast"):
        pass


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("num_steps", [1, 5, 17])
@pytest.mark.parametrize("path", PATHS)
def test_paths_agree_with_dense(path, num_steps, dtype):
    n, k = 3, 2
    diag, off = random_precision((2,), num_steps, n, dtype, seed=20)
    dense = dense_precision(diag, off).double()
    factor = dispatch.factorize(diag, off, algorithm=path)
    assert isinstance(factor, CyclicReductionFactor) == (path == "cyclic")
    assert isinstance(factor, DenseFactor) == (path == "dense")
    tol = 1e-9 if dtype == torch.float64 else 2e-4
    expected = torch.linalg.slogdet(dense)[1]
    assert torch.allclose(dispatch.logdet(factor).double(), expected, rtol=tol, atol=tol)
    rhs = torch.randn(2, num_steps, n, k, dtype=dtype)
    solution = dispatch.solve(factor, rhs)
    expected = torch.linalg.solve(dense, rhs.double().reshape(2, -1, k))
    assert torch.allclose(solution.double().reshape(2, -1, k), expected, rtol=tol, atol=tol)
    basis = torch.eye(num_steps * n, dtype=dtype).reshape(num_steps, n, -1)
    linear_map = dispatch.sample_transform(factor, basis).reshape(2, num_steps * n, -1)
    covariance = torch.linalg.inv(dense)
    assert torch.allclose((linear_map @ linear_map.mT).double(), covariance, rtol=tol, atol=tol)
    cov_diag, cov_off = dispatch.selected_inverse(factor)
    expected_diag, expected_off = dense_band(covariance, num_steps, n)
    assert torch.allclose(cov_diag.double(), expected_diag, rtol=tol, atol=tol)
    assert torch.allclose(cov_off.double(), expected_off, rtol=tol, atol=tol)


@pytest.mark.parametrize("path", PATHS)
def test_diagonal_blocks_agree_between_paths(path):
    gen = torch.Generator().manual_seed(21)
    diag = 2 + torch.rand((3, 20, 4), generator=gen, dtype=torch.float64)
    off = torch.rand((3, 19, 4), generator=gen, dtype=torch.float64) - 0.5
    factor = dispatch.factorize(diag, off, blocks="diagonal", algorithm=path)
    reference = sequential.block_cholesky(diag, off, blocks="diagonal")
    assert torch.allclose(
        dispatch.logdet(factor, blocks="diagonal"),
        sequential.logdet(reference, blocks="diagonal"),
    )
    rhs = torch.randn(3, 20, 4, 1, dtype=torch.float64)
    assert torch.allclose(
        dispatch.solve(factor, rhs, blocks="diagonal"),
        sequential.solve(reference, rhs, blocks="diagonal"),
    )
    for ours, theirs in zip(
        dispatch.selected_inverse(factor, blocks="diagonal"),
        sequential.selected_inverse(reference, blocks="diagonal"),
        strict=True,
    ):
        assert torch.allclose(ours, theirs)


@pytest.mark.parametrize("path", PATHS)
def test_factorize_names_the_failing_step(path):
    diag, off = random_precision((), 20, 2, seed=22)
    diag[7] = -torch.eye(2, dtype=torch.float64)
    with pytest.raises(ValueError, match="time step 7"):
        dispatch.factorize(diag, off, algorithm=path)


@pytest.mark.parametrize("path", PATHS)
def test_selected_inverse_gradient_matches_autograd_through_sequential(path):
    diag, off = random_precision((2,), 12, 3, seed=23)
    diag.requires_grad_()
    off.requires_grad_()
    weights = torch.tensor([0.5, 2.0], dtype=torch.float64)
    value, failed = dispatch.logdet_with_selected_inverse_grad(diag, off, algorithm=path)
    assert failed.tolist() == [-1, -1]
    grads = torch.autograd.grad((weights * value).sum(), (diag, off))
    symmetric = (diag + diag.mT) / 2  # the sequential Cholesky reads the lower triangle only
    reference = sequential.logdet(sequential.block_cholesky(symmetric, off))
    expected = torch.autograd.grad((weights * reference).sum(), (diag, off))
    assert torch.allclose(value, reference)
    for ours, theirs in zip(grads, expected, strict=True):
        assert torch.allclose(ours, theirs, rtol=1e-9, atol=1e-12)


def test_dense_and_sequential_draw_the_same_sample_for_the_same_noise():
    diag, off = random_precision((2,), 6, 3, seed=27)
    noise = torch.randn(2, 6, 3, 4, dtype=torch.float64)
    draws = [dispatch.sample_transform(dispatch.factorize(diag, off, algorithm=path), noise)
             for path in ("sequential", "dense")]
    assert torch.allclose(*draws, rtol=1e-10, atol=1e-12)


def test_sequential_logdet_gradcheck_with_selected_inverse_backward():
    diag, off = random_precision((), 5, 2, seed=24)
    inputs = (diag.requires_grad_(), off.requires_grad_())
    assert torch.autograd.gradcheck(
        lambda d, b: dispatch.logdet_with_selected_inverse_grad(
            (d + d.mT) / 2, b, algorithm="sequential"
        )[0],
        inputs,
        fast_mode=True,
    )


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("path", PATHS)
def test_cuda_paths_agree_with_cpu(path):
    diag, off = random_precision((4,), 100, 8, torch.float64, seed=25)
    rhs = torch.randn(4, 100, 8, 2, dtype=torch.float64)
    reference = dispatch.factorize(diag, off, algorithm="sequential")
    factor = dispatch.factorize(diag.cuda(), off.cuda(), algorithm=path)
    assert torch.allclose(dispatch.logdet(factor).cpu(), dispatch.logdet(reference))
    assert torch.allclose(dispatch.solve(factor, rhs.cuda()).cpu(), dispatch.solve(reference, rhs))
    for ours, theirs in zip(
        dispatch.selected_inverse(factor), dispatch.selected_inverse(reference), strict=True
    ):
        assert torch.allclose(ours.cpu(), theirs)
    assert dispatch.choose_algorithm(diag.cuda()) == "cyclic"


def test_distribution_uses_the_chosen_algorithm():
    from pyro_dynvae.distributions import BlockTridiagMVN

    num_steps, n = 20, 2
    diag, off = random_precision((3,), num_steps, n, seed=26)
    loc = torch.randn(3, num_steps, n, dtype=torch.float64)
    value = torch.randn(3, num_steps, n, dtype=torch.float64)
    with dispatch.block_tridiag_algorithm("sequential"):
        reference = BlockTridiagMVN(loc, diag, off)
        expected = (reference.log_prob(value), reference.entropy(), reference.variance)
        expected_blocks = reference.covariance_blocks()
    diag.requires_grad_()
    with dispatch.block_tridiag_algorithm("cyclic"):
        d = BlockTridiagMVN(loc, diag, off)
        assert isinstance(d._factor, CyclicReductionFactor)
        for ours, theirs in zip(
            (d.log_prob(value), d.entropy(), d.variance), expected, strict=True
        ):
            assert torch.allclose(ours, theirs)
        for ours, theirs in zip(d.covariance_blocks(), expected_blocks, strict=True):
            assert torch.allclose(ours, theirs)
        assert torch.allclose(d.covariance_matrix, d.to_dense().covariance_matrix)
        info = torch.randn(3, num_steps, n, dtype=torch.float64)
        mean = BlockTridiagMVN.from_info(info, diag, off).mean
        dense = dense_precision(diag, off)
        assert torch.allclose(
            mean.reshape(3, -1, 1), torch.linalg.solve(dense, info.reshape(3, -1, 1))
        )
        (grad,) = torch.autograd.grad(d.rsample((2,)).sum(), diag)
        assert torch.isfinite(grad).all() and grad.abs().sum() > 0

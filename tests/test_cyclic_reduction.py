"""Block cyclic reduction against dense references (torch.linalg on the assembled matrix)."""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import MultivariateNormal

from pyro_dynvae.ops.cyclic_reduction import (
    cyclic_reduction_factor,
    cyclic_reduction_logdet,
    cyclic_reduction_selected_inverse,
    cyclic_reduction_solve,
    cyclic_reduction_transform_noise,
)
from pyro_dynvae.ops.logdet_autograd import block_tridiag_logdet

STEPS = [1, 2, 3, 5, 8, 17, 100]
TOL = {torch.float64: 1e-9, torch.float32: 2e-4}


def random_precision(batch, num_steps, n, dtype=torch.float64, decay=0.9, noise=1.0, seed=0):
    """Blocks of the precision of a random linear-Gaussian chain plus Gaussian observations.

    ``z_0 ~ N(0, I)``, ``z_{t+1} = A_t z_t + w_t`` with ``w_t ~ N(0, noise^2 I)`` and the spectral
    radius of ``A_t`` about ``decay``; observations add ``R_t = W_t W_t'``. ``decay -> 1`` with a
    small ``noise`` makes ``J`` ill-conditioned.
    """
    gen = torch.Generator().manual_seed(seed)
    shape = tuple(batch)
    eye = torch.eye(n, dtype=torch.float64)
    trans = (
        decay
        * torch.linalg.qr(
            torch.randn(shape + (max(num_steps - 1, 0), n, n), generator=gen, dtype=torch.float64)
        )[0]
    )
    obs = 0.3 * torch.randn(shape + (num_steps, n, n), generator=gen, dtype=torch.float64)
    diag = (obs @ obs.mT + eye).clone()
    diag[..., 1:, :, :] += eye / noise**2 - eye
    diag[..., :-1, :, :] += trans.mT @ trans / noise**2
    off = -trans / noise**2
    return diag.to(dtype), off.to(dtype)


def dense_precision(diag, off):
    """Assemble the dense ``Tn x Tn`` matrix."""
    num_steps, n = diag.shape[-3], diag.shape[-1]
    batch = torch.broadcast_shapes(diag.shape[:-3], off.shape[:-3])
    dense = diag.new_zeros(batch + (num_steps, n, num_steps, n))
    for t in range(num_steps):
        dense[..., t, :, t, :] = diag[..., t, :, :]
    for t in range(num_steps - 1):
        dense[..., t + 1, :, t, :] = off[..., t, :, :]
        dense[..., t, :, t + 1, :] = off[..., t, :, :].mT
    return dense.reshape(batch + (num_steps * n, num_steps * n))


def dense_band(cov, num_steps, n):
    """The tridiagonal band of a dense ``Tn x Tn`` matrix as ``(diag, offdiag)`` blocks."""
    blocks = cov.reshape(cov.shape[:-2] + (num_steps, n, num_steps, n))
    steps = torch.arange(num_steps)
    diag = blocks[..., steps, :, steps, :].movedim(0, -3)
    off = blocks[..., steps[1:], :, steps[:-1], :].movedim(0, -3)
    return diag, off


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("num_steps", STEPS)
def test_factor_algorithms_match_dense(num_steps, dtype):
    n, batch = 3, (2,)
    diag, off = random_precision(batch, num_steps, n, dtype)
    dense = dense_precision(diag, off).double()
    factor = cyclic_reduction_factor(diag, off)
    assert factor.failed_step.tolist() == [-1, -1]
    tol = TOL[dtype]

    logdet = cyclic_reduction_logdet(factor)
    expected = torch.linalg.slogdet(dense)[1]
    assert logdet.dtype == dtype
    assert torch.allclose(logdet.double(), expected, rtol=tol, atol=tol * num_steps * n)

    rhs = torch.randn(batch + (num_steps, n), dtype=dtype)
    solution = cyclic_reduction_solve(factor, rhs)
    expected = torch.linalg.solve(dense, rhs.double().reshape(batch + (-1, 1)))
    assert torch.allclose(solution.double().reshape(expected.shape), expected, rtol=tol, atol=tol)

    cov_diag, cov_off = cyclic_reduction_selected_inverse(factor)
    cov = MultivariateNormal(
        torch.zeros(num_steps * n, dtype=torch.float64), precision_matrix=dense
    ).covariance_matrix
    expected_diag, expected_off = dense_band(cov, num_steps, n)
    assert cov_diag.shape == diag.shape and cov_off.shape == off.shape
    assert torch.allclose(cov_diag.double(), expected_diag, rtol=tol, atol=tol)
    assert torch.allclose(cov_off.double(), expected_off, rtol=tol, atol=tol)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("num_steps", [1, 3, 8, 17])
def test_transform_noise_is_a_square_root_of_the_covariance(num_steps, dtype):
    # Feeding the identity's columns as noise gives the linear map M; M M' must equal J^{-1}.
    n, batch = 2, (3,)
    diag, off = random_precision(batch, num_steps, n, dtype, seed=1)
    factor = cyclic_reduction_factor(diag, off)
    basis = torch.eye(num_steps * n, dtype=dtype).reshape(-1, 1, num_steps, n)
    columns = cyclic_reduction_transform_noise(factor, basis)  # (Tn, 3, T, n)
    linear_map = columns.reshape(num_steps * n, 3, -1).permute(1, 2, 0)
    expected = torch.linalg.inv(dense_precision(diag, off).double())
    tol = TOL[dtype]
    assert torch.allclose((linear_map @ linear_map.mT).double(), expected, rtol=tol, atol=tol)


def test_transform_noise_monte_carlo_covariance():
    # 40000 draws: the standard error of an empirical covariance entry is below
    # sqrt((S_ii S_jj + S_ij^2) / N) <= 0.01 * max S_ii here; allow 5 standard errors.
    num_steps, n, draws = 5, 2, 40000
    diag, off = random_precision((), num_steps, n, seed=2)
    factor = cyclic_reduction_factor(diag, off)
    noise = torch.randn(
        (draws, num_steps, n), generator=torch.Generator().manual_seed(3), dtype=torch.float64
    )
    samples = cyclic_reduction_transform_noise(factor, noise).reshape(draws, -1)
    expected = torch.linalg.inv(dense_precision(diag, off))
    empirical = samples.T @ samples / draws
    scale = expected.diagonal().max()
    assert (empirical - expected).abs().max() < 5 * 0.01 * math.sqrt(2) * scale
    assert samples.mean(0).abs().max() < 5 * math.sqrt(scale / draws)


@pytest.mark.parametrize("num_steps", [17, 100])
def test_ill_conditioned(num_steps):
    # A nearly integrated random walk with tiny process noise: cond(J) ~ 1e7 (float64).
    n = 2
    diag, off = random_precision((), num_steps, n, decay=0.9999, noise=1e-2, seed=4)
    dense = dense_precision(diag, off)
    cond = torch.linalg.cond(dense).item()
    assert cond > 1e5
    factor = cyclic_reduction_factor(diag, off)
    logdet = cyclic_reduction_logdet(factor)
    assert torch.allclose(logdet, torch.linalg.slogdet(dense)[1], rtol=1e-10)
    rhs = torch.randn(num_steps, n, dtype=torch.float64)
    solution = cyclic_reduction_solve(factor, rhs).reshape(-1)
    # Backward stability: small residual relative to |J| |x|; forward error within cond * eps.
    residual = dense @ solution - rhs.reshape(-1)
    assert residual.norm() <= 1e-12 * torch.linalg.matrix_norm(dense, 2) * solution.norm()
    expected = torch.linalg.solve(dense, rhs.reshape(-1))
    assert (solution - expected).norm() <= 1e-13 * cond * expected.norm()
    cov_diag, cov_off = cyclic_reduction_selected_inverse(factor)
    expected_diag, expected_off = dense_band(torch.linalg.inv(dense), num_steps, n)
    scale = expected_diag.abs().max()
    assert (cov_diag - expected_diag).abs().max() <= 1e-13 * cond * scale
    assert (cov_off - expected_off).abs().max() <= 1e-13 * cond * scale


def test_float32_ill_conditioned_against_float64():
    num_steps, n = 100, 4
    diag, off = random_precision((2,), num_steps, n, decay=0.999, noise=0.1, seed=5)
    dense = dense_precision(diag, off)
    factor = cyclic_reduction_factor(diag.float(), off.float())
    logdet = cyclic_reduction_logdet(factor).double()
    assert torch.allclose(logdet, torch.linalg.slogdet(dense)[1], rtol=1e-5)
    cov_diag, _ = cyclic_reduction_selected_inverse(factor)
    expected_diag, _ = dense_band(torch.linalg.inv(dense), num_steps, n)
    assert torch.allclose(cov_diag.double(), expected_diag, rtol=1e-2, atol=1e-3)


def test_broadcast_batch_shapes():
    num_steps, n = 5, 2
    diag, _ = random_precision((4, 1), num_steps, n, seed=6)
    _, off = random_precision((3,), num_steps, n, seed=7)
    factor = cyclic_reduction_factor(diag, off)
    assert factor.failed_step.shape == (4, 3)
    dense = dense_precision(diag, off)
    assert torch.allclose(cyclic_reduction_logdet(factor), torch.linalg.slogdet(dense)[1])
    rhs = torch.randn(num_steps, n, dtype=torch.float64)  # broadcasts against (4, 3)
    solution = cyclic_reduction_solve(factor, rhs)
    assert solution.shape == (4, 3, num_steps, n)
    expected = torch.linalg.solve(dense, rhs.reshape(-1, 1).expand(4, 3, -1, 1))
    assert torch.allclose(solution.reshape(4, 3, -1, 1), expected)


@pytest.mark.parametrize("num_steps", [1, 2, 7, 16])
def test_diagonal_blocks_match_full_blocks(num_steps):
    gen = torch.Generator().manual_seed(8)
    n = 3
    diag = 2 + torch.rand((2, num_steps, n), generator=gen, dtype=torch.float64)
    off = torch.rand((2, num_steps - 1, n), generator=gen, dtype=torch.float64) - 0.5
    full = cyclic_reduction_factor(torch.diag_embed(diag), torch.diag_embed(off))
    scalar = cyclic_reduction_factor(diag, off, blocks="diagonal")
    assert torch.allclose(cyclic_reduction_logdet(scalar), cyclic_reduction_logdet(full))
    rhs = torch.randn(2, num_steps, n, dtype=torch.float64)
    assert torch.allclose(cyclic_reduction_solve(scalar, rhs), cyclic_reduction_solve(full, rhs))
    assert torch.allclose(
        cyclic_reduction_transform_noise(scalar, rhs), cyclic_reduction_transform_noise(full, rhs)
    )
    full_diag, full_off = cyclic_reduction_selected_inverse(full)
    cov_diag, cov_off = cyclic_reduction_selected_inverse(scalar)
    assert torch.allclose(cov_diag, full_diag.diagonal(dim1=-2, dim2=-1))
    assert torch.allclose(cov_off, full_off.diagonal(dim1=-2, dim2=-1))


@pytest.mark.parametrize("bad_step", [0, 3, 6])
def test_failed_step_names_the_non_positive_definite_block(bad_step):
    num_steps, n = 8, 2
    diag, off = random_precision((2,), num_steps, n, seed=9)
    diag[1, bad_step] = -torch.eye(n, dtype=torch.float64)
    factor = cyclic_reduction_factor(diag, off)
    assert factor.failed_step.tolist() == [-1, bad_step]
    scalar = cyclic_reduction_factor(
        diag.diagonal(dim1=-2, dim2=-1), off.diagonal(dim1=-2, dim2=-1), blocks="diagonal"
    )
    assert scalar.failed_step.tolist() == [-1, bad_step]


def test_factor_memory_is_linear_in_time():
    # The saved factor holds exactly T Cholesky blocks and at most 2T coupling blocks.
    n = 3
    for num_steps in (100, 1000):
        diag, off = random_precision((), num_steps, n, seed=10)
        factor = cyclic_reduction_factor(diag, off)
        numel = sum(
            lv.chol.numel() + (0 if lv.coupling is None else lv.coupling.numel())
            for lv in factor.levels
        )
        assert sum(lv.chol.shape[-3] for lv in factor.levels) == num_steps
        assert numel <= 3 * num_steps * n * n
        assert len(factor.levels) == math.floor(math.log2(num_steps)) + 1


def test_bad_input_raises():
    diag, off = random_precision((), 4, 2)
    with pytest.raises(ValueError, match="offdiag_blocks"):
        cyclic_reduction_factor(diag, off[:-1])
    with pytest.raises(ValueError, match="square"):
        cyclic_reduction_factor(diag[..., :1], off)
    with pytest.raises(ValueError, match="blocks"):
        cyclic_reduction_factor(diag, off, blocks="banded")
    with pytest.raises(TypeError, match="diag_blocks"):
        cyclic_reduction_factor(diag.long(), off)
    with pytest.raises(TypeError, match="offdiag_blocks"):
        cyclic_reduction_factor(diag, off.numpy())
    with pytest.raises(ValueError, match="at least one time step"):
        cyclic_reduction_factor(diag[:0], off[:0])
    factor = cyclic_reduction_factor(diag, off)
    with pytest.raises(ValueError, match="rhs"):
        cyclic_reduction_solve(factor, torch.zeros(3, 2, dtype=torch.float64))


# ---------------------------------------------------------------------------------------------
# The hand-written log-determinant backward.


def test_logdet_gradcheck_full_blocks():
    diag, off = random_precision((2,), 5, 2, seed=11)
    diag.requires_grad_()
    off.requires_grad_()
    # Symmetrise so that finite differences see the same symmetric matrix as the backward.
    assert torch.autograd.gradcheck(
        lambda d, b: block_tridiag_logdet((d + d.mT) / 2, b)[0], (diag, off)
    )


def test_logdet_gradcheck_diagonal_blocks():
    gen = torch.Generator().manual_seed(12)
    diag = (2 + torch.rand((2, 7, 3), generator=gen, dtype=torch.float64)).requires_grad_()
    off = (torch.rand((7 - 1, 3), generator=gen, dtype=torch.float64) - 0.5).requires_grad_()
    assert torch.autograd.gradcheck(
        lambda d, b: block_tridiag_logdet(d, b, blocks="diagonal")[0], (diag, off)
    )


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_logdet_gradient_matches_dense_autograd(dtype):
    num_steps, n = 9, 3
    diag, off = random_precision((), num_steps, n, dtype, seed=13)
    diag = diag.expand(2, -1, -1, -1).clone().requires_grad_()  # batch only on diag
    off = off.clone().requires_grad_()
    weights = torch.tensor([1.0, -2.0], dtype=dtype)
    logdet, failed = block_tridiag_logdet(diag, off)
    assert failed.tolist() == [-1, -1] and not failed.requires_grad
    grad_diag, grad_off = torch.autograd.grad((weights * logdet).sum(), (diag, off))
    dense_diag = diag.detach().double().requires_grad_()
    dense_off = off.detach().double().requires_grad_()
    sym = (dense_diag + dense_diag.mT) / 2
    dense_logdet = torch.linalg.slogdet(dense_precision(sym, dense_off))[1]
    expected = torch.autograd.grad((weights.double() * dense_logdet).sum(), (dense_diag, dense_off))
    tol = 10 * TOL[dtype]
    assert grad_diag.shape == diag.shape and grad_off.shape == off.shape
    assert torch.allclose(grad_diag.double(), expected[0], rtol=tol, atol=tol)
    assert torch.allclose(grad_off.double(), expected[1], rtol=tol, atol=tol)


@pytest.mark.parametrize("num_steps", [3, 8])
def test_solve_and_noise_transform_are_differentiable(num_steps):
    diag, off = random_precision((), num_steps, 2, seed=14)
    rhs = torch.randn(num_steps, 2, dtype=torch.float64)
    inputs = (diag.requires_grad_(), off.requires_grad_(), rhs.requires_grad_())

    def solve(d, b, h):
        return cyclic_reduction_solve(cyclic_reduction_factor((d + d.mT) / 2, b), h)

    def transform(d, b, h):
        return cyclic_reduction_transform_noise(cyclic_reduction_factor((d + d.mT) / 2, b), h)

    assert torch.autograd.gradcheck(solve, inputs, fast_mode=num_steps > 3)
    assert torch.autograd.gradcheck(transform, inputs, fast_mode=num_steps > 3)


def _compiled_logdet_matches_eager(backend: str, device: str = "cpu", mode=None) -> None:
    diag, off = (x.to(device) for x in random_precision((2,), 11, 2, torch.float32, seed=15))

    def logdet(d, b):
        factor = cyclic_reduction_factor(d, b)
        return cyclic_reduction_logdet(factor), factor.failed_step

    compiled = torch.compile(logdet, backend=backend, fullgraph=True, mode=mode)  # no breaks
    expected, _ = logdet(diag, off)
    for _ in range(3):  # with mode="reduce-overhead" the later calls replay a CUDA graph
        value, failed = compiled(diag, off)
        assert failed.tolist() == [-1, -1]
        assert torch.allclose(value, expected, rtol=1e-5)


def test_torch_compile_traces_one_graph():
    # fullgraph=True: the whole factorisation (failure bookkeeping included) is one graph with
    # no host synchronisation, the precondition for CUDA graphs.
    _compiled_logdet_matches_eager("aot_eager")


@pytest.mark.slow
def test_torch_compile_inductor():
    _compiled_logdet_matches_eager("inductor")


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("mode", [None, "reduce-overhead"])
def test_torch_compile_inductor_on_cuda(mode):
    # Inductor's CUDA kernels, and with "reduce-overhead" the whole factorisation as one
    # replayed CUDA graph (possible because it has no host synchronisation).
    _compiled_logdet_matches_eager("inductor", "cuda", mode)

"""pyro_dynvae.ops.block_tridiag against dense linear algebra (torch.linalg on the Tn x Tn
matrices), for the full and diagonal block layouts."""

import pytest
import torch

from pyro_dynvae.distributions.testing import random_block_tridiag
from pyro_dynvae.ops import block_tridiag as ops

SHAPES = [  # (batch_shape, T, n)
    ((), 1, 3),
    ((2,), 6, 1),
    ((2, 3), 5, 3),
    ((), 40, 2),
]


def dense_inputs(batch_shape, num_steps, dim, blocks, log10_scale_range=0.0, seed=0):
    generator = torch.Generator().manual_seed(seed)
    diag, offdiag = random_block_tridiag(
        batch_shape,
        num_steps,
        dim,
        blocks=blocks,
        log10_scale_range=log10_scale_range,
        generator=generator,
    )
    return diag, offdiag, ops.dense_from_blocks(diag, offdiag, blocks=blocks)


def test_dense_from_blocks_layout():
    # Known answer: T=2, n=2, J[t+1, t] = offdiag[0] sits below the diagonal.
    diag = torch.tensor([[[2.0, 0.1], [0.1, 3.0]], [[4.0, 0.2], [0.2, 5.0]]])
    offdiag = torch.tensor([[[0.5, 0.6], [0.7, 0.8]]])
    expected = torch.tensor(
        [
            [2.0, 0.1, 0.5, 0.7],
            [0.1, 3.0, 0.6, 0.8],
            [0.5, 0.6, 4.0, 0.2],
            [0.7, 0.8, 0.2, 5.0],
        ]
    )
    assert torch.equal(ops.dense_from_blocks(diag, offdiag), expected)


@pytest.mark.parametrize("blocks", ["full", "diagonal"])
@pytest.mark.parametrize("batch_shape,num_steps,dim", SHAPES)
def test_factor_logdet_solves(blocks, batch_shape, num_steps, dim):
    diag, offdiag, dense = dense_inputs(batch_shape, num_steps, dim, blocks)
    factor = ops.block_cholesky(diag, offdiag, blocks=blocks)
    chol = ops.dense_from_blocks(*factor, blocks=blocks, symmetric=False)
    torch.testing.assert_close(chol @ chol.mT, dense, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(chol, torch.linalg.cholesky(dense), rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(ops.logdet(factor, blocks=blocks), torch.logdet(dense))

    rhs = torch.randn(batch_shape + (num_steps, dim, 4), dtype=torch.float64)
    flat = rhs.reshape(batch_shape + (num_steps * dim, 4))

    def unflat(x):
        return x.reshape(rhs.shape)

    torch.testing.assert_close(
        ops.solve(factor, rhs, blocks=blocks), unflat(torch.linalg.solve(dense, flat))
    )
    torch.testing.assert_close(
        ops.solve_lower(factor, rhs, blocks=blocks),
        unflat(torch.linalg.solve_triangular(chol, flat, upper=False)),
    )
    torch.testing.assert_close(
        ops.solve_upper(factor, rhs, blocks=blocks),
        unflat(torch.linalg.solve_triangular(chol.mT, flat, upper=True)),
    )


@pytest.mark.parametrize("blocks", ["full", "diagonal"])
@pytest.mark.parametrize("batch_shape,num_steps,dim", SHAPES)
def test_selected_inverse(blocks, batch_shape, num_steps, dim):
    diag, offdiag, dense = dense_inputs(batch_shape, num_steps, dim, blocks)
    cov = torch.linalg.inv(dense).reshape(batch_shape + (num_steps, dim, num_steps, dim))
    cov_diag, cov_offdiag = ops.selected_inverse(
        ops.block_cholesky(diag, offdiag, blocks=blocks), blocks=blocks
    )
    steps = torch.arange(num_steps)
    expected_diag = cov[..., steps, :, steps, :].movedim(0, -3)
    expected_offdiag = cov[..., steps[1:], :, steps[:-1], :].movedim(0, -3)
    if blocks == "diagonal":
        expected_diag = expected_diag.diagonal(dim1=-2, dim2=-1)
        expected_offdiag = expected_offdiag.diagonal(dim1=-2, dim2=-1)
    torch.testing.assert_close(cov_diag, expected_diag)
    torch.testing.assert_close(cov_offdiag, expected_offdiag)


@pytest.mark.parametrize("blocks", ["full", "diagonal"])
def test_matvec_and_quadratic_form_broadcast(blocks):
    diag, offdiag, dense = dense_inputs((3,), 7, 2, blocks)
    x = torch.randn(5, 3, 7, 2, dtype=torch.float64)  # an extra sample dim broadcasts
    flat = x.reshape(5, 3, 14, 1)
    torch.testing.assert_close(
        ops.matvec(diag, offdiag, x, blocks=blocks), (dense @ flat).reshape(x.shape)
    )
    torch.testing.assert_close(
        ops.quadratic_form(diag, offdiag, x, blocks=blocks), (flat.mT @ dense @ flat)[..., 0, 0]
    )


@pytest.mark.parametrize("batch_shape,num_steps,dim", SHAPES)
def test_diagonal_layout_equals_full_layout(batch_shape, num_steps, dim):
    diag, offdiag, _ = dense_inputs(batch_shape, num_steps, dim, "diagonal")
    fast = ops.block_cholesky(diag, offdiag, blocks="diagonal")
    full = ops.block_cholesky(torch.diag_embed(diag), torch.diag_embed(offdiag))
    torch.testing.assert_close(torch.diag_embed(fast.diag), full.diag)
    torch.testing.assert_close(torch.diag_embed(fast.offdiag), full.offdiag)
    band_fast = ops.selected_inverse(fast, blocks="diagonal")
    band_full = ops.selected_inverse(full)
    for a, b in zip(band_fast, band_full, strict=True):
        torch.testing.assert_close(torch.diag_embed(a), b)


@pytest.mark.parametrize("blocks", ["full", "diagonal"])
def test_ill_conditioned_float64(blocks):
    # Congruence scaling over 3 decades: condition numbers 1.5e6-2.2e6 here.
    diag, offdiag, dense = dense_inputs((2,), 30, 3, blocks, log10_scale_range=3.0, seed=1)
    assert torch.linalg.cond(dense).min() > 1e6
    factor = ops.block_cholesky(diag, offdiag, blocks=blocks)
    torch.testing.assert_close(
        ops.logdet(factor, blocks=blocks), torch.logdet(dense), rtol=1e-10, atol=1e-9
    )
    # Relative accuracy of the band of the inverse, measured in the scale of each entry.
    cov = torch.linalg.inv(dense)
    cov_diag, cov_offdiag = ops.selected_inverse(factor, blocks=blocks)
    full = ops._algebra(blocks).to_full
    band = ops.dense_from_blocks(full(cov_diag), full(cov_offdiag))
    mask = (
        ops.dense_from_blocks(torch.ones_like(full(cov_diag)), torch.ones_like(full(cov_offdiag)))
        != 0
    )
    stddev = cov.diagonal(dim1=-2, dim2=-1).sqrt()
    error = (band - cov) / (stddev[..., :, None] * stddev[..., None, :])
    assert error[mask.expand_as(error)].abs().max() < 1e-9
    rhs = torch.randn(2, 30, 3, 1, dtype=torch.float64)
    solution = ops.solve(factor, rhs, blocks=blocks).reshape(2, 90, 1)
    torch.testing.assert_close(dense @ solution, rhs.reshape(2, 90, 1), rtol=1e-8, atol=1e-8)


@pytest.mark.parametrize("blocks", ["full", "diagonal"])
def test_float32(blocks):
    diag, offdiag, dense = dense_inputs((4,), 50, 3, blocks)
    factor = ops.block_cholesky(diag.float(), offdiag.float(), blocks=blocks)
    assert factor.diag.dtype == torch.float32
    torch.testing.assert_close(
        ops.logdet(factor, blocks=blocks).double(), torch.logdet(dense), rtol=1e-5, atol=1e-4
    )


@pytest.mark.parametrize("blocks", ["full", "diagonal"])
def test_not_positive_definite_names_first_step_and_batch(blocks):
    diag, offdiag, _ = dense_inputs((2, 3), 8, 2, blocks)
    diag = diag.clone()
    eye = torch.ones(2) if blocks == "diagonal" else torch.eye(2)
    diag[1, 2, 5] -= 100 * eye
    diag[0, 1, 6] -= 100 * eye
    _, failed = ops.block_cholesky_ex(diag, offdiag, blocks=blocks)
    assert failed.shape == (2, 3, 8)
    assert failed[1, 2, 5] and failed[0, 1, 6] and not failed[..., :5].any()
    with pytest.raises(ValueError, match=r"time step 5 \(batch index \(1, 2\)\)"):
        ops.block_cholesky(diag, offdiag, blocks=blocks)


def test_shape_errors_name_expected_and_received():
    with pytest.raises(ValueError, match=r"offdiag_blocks.*\(3, 2, 2\).*got \(4, 2, 2\)"):
        ops.block_cholesky(torch.eye(2).expand(4, 2, 2), torch.zeros(4, 2, 2))
    with pytest.raises(ValueError, match="square"):
        ops.block_cholesky(torch.zeros(4, 2, 3), torch.zeros(3, 2, 3))
    with pytest.raises(ValueError, match="blocks must be one of"):
        ops.block_cholesky(torch.ones(4, 2), torch.zeros(3, 2), blocks="banded")
    factor = ops.block_cholesky(torch.ones(4, 2), torch.zeros(3, 2), blocks="diagonal")
    with pytest.raises(ValueError, match=r"rhs must have shape .*\(4, 2\), got \(4, 3, 1\)"):
        ops.solve(factor, torch.zeros(4, 3, 1), blocks="diagonal")


@pytest.mark.parametrize("dim", [2, 3])  # 2: the closed-form 2x2 blocks (ops.small_blocks)
def test_markov_chain_blocks_match_dense_innovation_form(dim):
    # Independent reference: the joint precision of the chain is M' W M with M mapping z to
    # its innovations (z_0, z_1 - A_0 z_0, ...) and W = blockdiag(P_0^{-1}, Q_0^{-1}, ...).
    torch.manual_seed(0)
    num_steps = 5
    trans = torch.randn(num_steps - 1, dim, dim, dtype=torch.float64) * 0.6
    root = torch.randn(num_steps, dim, dim, dtype=torch.float64) * 0.5
    covs = root @ root.mT + 0.3 * torch.eye(dim, dtype=torch.float64)
    innovation = torch.eye(num_steps * dim, dtype=torch.float64)
    for t in range(num_steps - 1):
        innovation[(t + 1) * dim : (t + 2) * dim, t * dim : (t + 1) * dim] = -trans[t]
    weight = torch.block_diag(*torch.linalg.inv(covs))
    expected = innovation.T @ weight @ innovation
    diag, offdiag = ops.markov_chain_blocks(covs[0], trans, covs[1:])
    torch.testing.assert_close(ops.dense_from_blocks(diag, offdiag), expected)
    # one factorisation of P_0 and Q_t for both: the same blocks and log|J|
    *blocks, logdet = ops.markov_chain_precision(covs[0], trans, covs[1:])
    for got, want in zip(blocks, (diag, offdiag), strict=True):
        torch.testing.assert_close(got, want)
    torch.testing.assert_close(logdet, torch.linalg.slogdet(expected).logabsdet)
    torch.testing.assert_close(ops.markov_chain_logdet(covs[0], covs[1:]), logdet)
    init_loc = torch.randn(dim, dtype=torch.float64)
    means = ops.markov_chain_mean(init_loc, trans)
    expected_means = [init_loc]
    for t in range(num_steps - 1):
        expected_means.append(trans[t] @ expected_means[-1])
    torch.testing.assert_close(means, torch.stack(expected_means))


def test_markov_chain_blocks_diagonal_layout_and_errors():
    torch.manual_seed(0)
    trans, noise, init = torch.randn(2, 6, 3), torch.rand(2, 6, 3) + 0.1, torch.rand(3) + 0.5
    diag, offdiag = ops.markov_chain_blocks(init, trans, noise, blocks="diagonal")
    full = ops.markov_chain_blocks(
        torch.diag_embed(init), torch.diag_embed(trans), torch.diag_embed(noise)
    )
    torch.testing.assert_close(torch.diag_embed(diag), full[0])
    torch.testing.assert_close(torch.diag_embed(offdiag), full[1])
    with pytest.raises(ValueError, match="trans_cov must hold positive variances"):
        ops.markov_chain_blocks(init, trans, -noise, blocks="diagonal")
    with pytest.raises(ValueError, match="init_cov must be positive definite"):
        ops.markov_chain_blocks(-torch.eye(3), torch.diag_embed(trans), torch.diag_embed(noise))
    with pytest.raises(ValueError, match="trailing shape"):
        ops.markov_chain_blocks(init, trans, noise[..., :2], blocks="diagonal")


@pytest.mark.parametrize("blocks", ["full", "diagonal"])
def test_logdet_gradient_is_selected_inverse(blocks):
    # Known identity: d log|J| = tr(Sigma dJ), so along symmetric directions
    # d log|J| / d D_t = Sigma_tt and d log|J| / d B_t = 2 Sigma_{t+1,t}.
    diag, offdiag, dense = dense_inputs((2,), 12, 2, blocks)
    root = diag.clone().requires_grad_()
    offdiag = offdiag.clone().requires_grad_()
    sym = root if blocks == "diagonal" else (root + root.mT) / 2
    ops.logdet(ops.block_cholesky(sym, offdiag, blocks=blocks), blocks=blocks).sum().backward()
    cov = torch.linalg.inv(dense).reshape(2, 12, 2, 12, 2)
    steps = torch.arange(12)
    expected_diag = cov[:, steps, :, steps, :].movedim(0, 1)
    expected_offdiag = 2 * cov[:, steps[1:], :, steps[:-1], :].movedim(0, 1)
    if blocks == "diagonal":
        expected_diag = expected_diag.diagonal(dim1=-2, dim2=-1)
        expected_offdiag = expected_offdiag.diagonal(dim1=-2, dim2=-1)
    torch.testing.assert_close(root.grad, expected_diag)
    torch.testing.assert_close(offdiag.grad, expected_offdiag)


@pytest.mark.parametrize("chunk_steps", [1, 3, 10])
def test_cholesky_adjoint_in_time_chunks_matches_dense(monkeypatch, chunk_steps):
    # The block Cholesky's backward runs over chunks of time steps (last first); with 1, 3
    # (uneven: 10 = 3 + 3 + 3 + 1) and all 10 steps per chunk, the gradient of a loss that
    # reaches both factor outputs (log-det: C_t; back substitution: C_t and E_t) equals
    # autograd through the dense Cholesky.
    batch, num_steps, dim = 2, 10, 2
    monkeypatch.setattr(ops, "ADJOINT_CHUNK_ELEMENTS", chunk_steps * batch * dim * dim)
    diag, offdiag, _ = dense_inputs((batch,), num_steps, dim, "full")
    rhs = torch.randn(batch, num_steps, dim, 1, dtype=torch.float64)

    grads = []
    for dense in (False, True):
        d = diag.clone().requires_grad_()
        b = offdiag.clone().requires_grad_()
        sym = (d + d.mT) / 2
        if dense:
            chol = torch.linalg.cholesky(ops.dense_from_blocks(sym, b))
            value = torch.linalg.solve_triangular(chol.mT, rhs.reshape(batch, -1, 1), upper=True)
            total = value.square().sum() + 2 * chol.diagonal(dim1=-2, dim2=-1).log().sum()
        else:
            factor = ops.block_cholesky(sym, b)
            total = ops.solve_upper(factor, rhs).square().sum() + ops.logdet(factor).sum()
        grads.append(torch.autograd.grad(total, (d, b)))
    for got, expected in zip(*grads, strict=True):
        torch.testing.assert_close(got, expected)


@pytest.mark.parametrize("blocks", ["full", "diagonal"])
@pytest.mark.parametrize("solver", ["solve_lower", "solve_upper", "solve"])
def test_solve_gradients_match_dense_triangular_solves(blocks, solver):
    # The substitutions' hand-written adjoints against autograd through dense triangular solves
    # with the same factor L, for the factor blocks and the right-hand side (float64), with a
    # factor shared by a batch of right-hand sides.
    diag, offdiag, _ = dense_inputs((), 17, 3, blocks)
    factor = ops.block_cholesky(diag, offdiag, blocks=blocks)
    rhs = torch.randn(2, 17, 3, 2, dtype=torch.float64)
    weights = torch.randn(2, 17, 3, 2, dtype=torch.float64)

    def dense_solve(chol_blocks, sub_blocks, columns):
        chol = ops.dense_from_blocks(chol_blocks, sub_blocks, blocks=blocks, symmetric=False)
        flat = columns.reshape(2, 51, 2)
        if solver in ("solve_lower", "solve"):
            flat = torch.linalg.solve_triangular(chol, flat, upper=False)
        if solver in ("solve_upper", "solve"):
            flat = torch.linalg.solve_triangular(chol.mT, flat, upper=True)
        return flat.reshape(columns.shape)

    def ours(chol_blocks, sub_blocks, columns):
        blocks_factor = ops.BlockCholesky(chol_blocks, sub_blocks)
        return getattr(ops, solver)(blocks_factor, columns, blocks=blocks)

    grads = []
    for function in (ours, dense_solve):
        inputs = [x.detach().clone().requires_grad_() for x in (*factor, rhs)]
        value = function(*inputs)
        grads.append(torch.autograd.grad((weights * value).sum(), inputs))
    for got, expected in zip(*grads, strict=True):
        if blocks == "full" and got.shape == factor.diag.shape:
            got, expected = got.tril(), expected.tril()  # only the entries L has
        torch.testing.assert_close(got, expected)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("blocks", ["full", "diagonal"])
def test_cuda_matches_cpu(blocks):
    diag, offdiag, dense = dense_inputs((3,), 20, 4, blocks)
    factor = ops.block_cholesky(diag.cuda(), offdiag.cuda(), blocks=blocks)
    assert factor.diag.is_cuda
    torch.testing.assert_close(ops.logdet(factor, blocks=blocks).cpu(), torch.logdet(dense))

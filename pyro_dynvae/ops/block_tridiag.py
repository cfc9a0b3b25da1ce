"""Algorithms on symmetric positive-definite block-tridiagonal matrices.

A symmetric block-tridiagonal matrix ``J`` of size ``T*n x T*n`` is stored as its diagonal
blocks ``diag_blocks[..., t, :, :] = J[t, t]`` (shape ``(..., T, n, n)``) and its sub-diagonal
blocks ``offdiag_blocks[..., t, :, :] = J[t+1, t]`` (shape ``(..., T-1, n, n)``); the
super-diagonal blocks are their transposes. Leading dims are batch dims and broadcast.

When every block is diagonal, ``J`` is ``n`` independent scalar tridiagonal chains. Pass
``blocks="diagonal"`` and store only the block diagonals: ``diag_blocks`` ``(..., T, n)`` and
``offdiag_blocks`` ``(..., T-1, n)``. The solves, selected inversion, quadratic form,
log-determinant, dense conversion and Markov-chain constructors are written once against a
small "block algebra" (:class:`_FullBlocks`: matrix products and triangular solves;
:class:`_DiagonalBlocks`: elementwise products and divisions), sharing one loop skeleton
(:func:`_scan`). The factorisation has two kernels: for scalar chains the Schur recursion
``s_{t+1} = d_{t+1} - b_t^2 / s_t`` is one fused operation per step (three if it carried the
factor as the block path must), and the block path has a hand-written adjoint
(:class:`_BlockCholeskyFull`). The block substitutions (solves, sampling) have hand-written
adjoints too (:class:`_Substitution`): one substitution the other way.

All functions are pure tensor functions: batched, float32/float64, any device, and
differentiable. Systems are solved by triangular solves against the factor; an inverse is
formed only where a block of an inverse is itself the result (covariance blocks, and the
precisions ``P_0^{-1}``, ``Q_t^{-1}`` of a Markov chain), via ``cholesky_inverse``.

The sequential recursions (depth ``T``) unbind the time axis once and stack once at the end;
indexing ``x[:, t]`` inside the loop would make the backward pass cost grow as ``T^2``.
Per-step work is kept to a few small kernels (the Python loop costs ~10-20 us a step), and
everything that does not need the recursion (most triangular solves, the quadratic form,
log-determinants) runs batched over all time steps, outside the loop.

References:

- G. H. Golub, C. F. Van Loan, *Matrix Computations*, 4th ed. (2013), sec. 4.5
  (block tridiagonal systems, block Cholesky).
- H. Rue, L. Held, *Gaussian Markov Random Fields: Theory and Applications* (2005), ch. 2
  (band Cholesky, sampling by back substitution, recursions for marginal variances).
- K. Takahashi, J. Fagan, M.-S. Chen, "Formation of a sparse bus impedance matrix and its
  application to short circuit study" (1973); Jain et al. (2007): selected inversion, the
  band of ``J^{-1}`` from the factor.
- I. Murray, "Differentiation of the Cholesky decomposition", arXiv:1602.07527 (2016).
- E. Archer, I. M. Park, L. Buesing, J. Cunningham, L. Paninski, "Black box variational
  inference for state space models" (2016): the block-tridiagonal Gaussian posterior.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import NamedTuple

import torch
from torch import Tensor

from . import small_blocks

__all__ = [
    "BlockCholesky",
    "block_cholesky",
    "block_cholesky_ex",
    "check_block_shapes",
    "dense_from_blocks",
    "logdet",
    "markov_chain_blocks",
    "markov_chain_logdet",
    "markov_chain_mean",
    "markov_chain_precision",
    "matvec",
    "quadratic_form",
    "selected_inverse",
    "solve",
    "solve_lower",
    "solve_upper",
]

BLOCK_LAYOUTS = ("full", "diagonal")
# Floats per batched pass in the block Cholesky's backward on CPU (_BlockCholeskyFull.backward).
ADJOINT_CHUNK_ELEMENTS = 2**16


class BlockCholesky(NamedTuple):
    """Lower block-bidiagonal Cholesky factor ``L`` with ``J = L L'``.

    :param torch.Tensor diag: diagonal blocks ``C_t``, lower triangular, ``(..., T, n, n)``
        (``(..., T, n)`` for diagonal blocks).
    :param torch.Tensor offdiag: sub-diagonal blocks ``E_t = L[t+1, t]``, ``(..., T-1, n, n)``
        (``(..., T-1, n)`` for diagonal blocks).
    """

    diag: Tensor
    offdiag: Tensor


# ----------------------------------------------------------------------------------------------
# Block algebra: the primitives the algorithms are written against. Inside the time loops the
# batch dims are flattened into one, so blocks are (B, n, n) or (B, n) and columns (B, n, k).


class _FullBlocks:
    """Dense ``n x n`` blocks: Cholesky, triangular solves, matrix products (``2 x 2`` blocks
    in closed form, :mod:`~pyro_dynvae.ops.small_blocks`)."""

    block_ndim = 2

    @staticmethod
    def transpose(a: Tensor) -> Tensor:
        return a.mT

    @staticmethod
    def as_operator(a: Tensor) -> Tensor:
        """The block in a form that multiplies a column matrix ``(..., n, k)``."""
        return a

    @staticmethod
    def mul(a: Tensor, b: Tensor) -> Tensor:
        return a @ b

    @staticmethod
    def sub_mul(x: Tensor, a: Tensor, b: Tensor) -> Tensor:
        """``x - a b`` for one time step (3-d operands)."""
        return torch.baddbmm(x, a, b, alpha=-1)

    @staticmethod
    def add_congruence(p: Tensor, m: Tensor, s: Tensor) -> Tensor:
        """``p + m' s m`` for one time step (3-d operands)."""
        return torch.baddbmm(p, m.mT, torch.bmm(s, m))

    @staticmethod
    def solve_lower(chol: Tensor, x: Tensor, left: bool = True) -> Tensor:
        """``C^{-1} x`` (``left``) or ``x C^{-1}``."""
        return small_blocks.solve_triangular(chol, x, upper=False, left=left)

    @staticmethod
    def solve_lower_transpose(chol: Tensor, x: Tensor, left: bool = True) -> Tensor:
        """``C^{-T} x`` (``left``) or ``x C^{-T}``."""
        return small_blocks.solve_triangular(chol.mT, x, upper=True, left=left)

    @staticmethod
    def cholesky_inverse(chol: Tensor) -> Tensor:
        """``(C C')^{-1}``."""
        return small_blocks.cholesky_inverse(chol)

    @staticmethod
    def column_outer(a: Tensor, b: Tensor) -> Tensor:
        """``a b'`` for column matrices ``(..., n, k)``: the gradient of a block applied to
        the columns ``b``, in the block's storage."""
        return a @ b.mT

    @staticmethod
    def lower(a: Tensor) -> Tensor:
        """The lower triangle: the entries a Cholesky block really has."""
        return a.tril()

    @staticmethod
    def diagonal(a: Tensor) -> Tensor:
        return a.diagonal(dim1=-2, dim2=-1)

    @staticmethod
    def to_full(a: Tensor) -> Tensor:
        return a


class _DiagonalBlocks:
    """Diagonal blocks stored as their diagonals ``(..., n)``: elementwise arithmetic."""

    block_ndim = 1

    @staticmethod
    def transpose(a: Tensor) -> Tensor:
        return a

    @staticmethod
    def as_operator(a: Tensor) -> Tensor:
        return a.unsqueeze(-1)

    @staticmethod
    def mul(a: Tensor, b: Tensor) -> Tensor:
        return a * b

    @staticmethod
    def sub_mul(x: Tensor, a: Tensor, b: Tensor) -> Tensor:
        return torch.addcmul(x, a, b, value=-1)

    @staticmethod
    def add_congruence(p: Tensor, m: Tensor, s: Tensor) -> Tensor:
        return torch.addcmul(p, m * m, s)

    @staticmethod
    def solve_lower(chol: Tensor, x: Tensor, left: bool = True) -> Tensor:
        return x / chol

    @staticmethod
    def solve_lower_transpose(chol: Tensor, x: Tensor, left: bool = True) -> Tensor:
        return x / chol

    @staticmethod
    def cholesky_inverse(chol: Tensor) -> Tensor:
        return chol.square().reciprocal()

    @staticmethod
    def column_outer(a: Tensor, b: Tensor) -> Tensor:
        return (a * b).sum(-1)

    @staticmethod
    def lower(a: Tensor) -> Tensor:
        return a

    @staticmethod
    def diagonal(a: Tensor) -> Tensor:
        return a

    @staticmethod
    def to_full(a: Tensor) -> Tensor:
        return torch.diag_embed(a)


_ALGEBRAS = {"full": _FullBlocks, "diagonal": _DiagonalBlocks}


def _algebra(blocks: str) -> type[_FullBlocks] | type[_DiagonalBlocks]:
    try:
        return _ALGEBRAS[blocks]
    except KeyError:
        raise ValueError(f"blocks must be one of {BLOCK_LAYOUTS}, got {blocks!r}") from None


# ----------------------------------------------------------------------------------------------
# Shape handling and the shared time-loop skeleton.


def check_block_shapes(
    diag_blocks: Tensor, offdiag_blocks: Tensor, *, blocks: str = "full"
) -> tuple[int, int]:
    """Check the shapes of a block-tridiagonal matrix and return ``(T, n)``.

    :param torch.Tensor diag_blocks: ``(..., T, n, n)``, or ``(..., T, n)`` for diagonal blocks.
    :param torch.Tensor offdiag_blocks: ``(..., T-1, n, n)``, or ``(..., T-1, n)``.
    :param str blocks: ``"full"`` or ``"diagonal"``.
    :raises ValueError: naming the argument, the expected and the received shape.
    """
    alg = _algebra(blocks)
    layout = "(..., T, n, n)" if alg.block_ndim == 2 else "(..., T, n)"
    if diag_blocks.dim() < alg.block_ndim + 1:
        raise ValueError(
            f"diag_blocks must have shape {layout} for blocks={blocks!r}, "
            f"got {tuple(diag_blocks.shape)}"
        )
    num_steps, dim = diag_blocks.shape[-alg.block_ndim - 1], diag_blocks.shape[-1]
    block_shape = (dim, dim)[: alg.block_ndim]
    if alg.block_ndim == 2 and diag_blocks.shape[-2] != dim:
        raise ValueError(
            f"diag_blocks must have square blocks {layout}, got {tuple(diag_blocks.shape)}"
        )
    expected = (max(num_steps - 1, 0), *block_shape)
    if tuple(offdiag_blocks.shape[-alg.block_ndim - 1 :]) != expected:
        raise ValueError(
            f"offdiag_blocks must have trailing shape (T-1, ...) = {expected} for "
            f"diag_blocks of shape {tuple(diag_blocks.shape)} (blocks={blocks!r}), "
            f"got {tuple(offdiag_blocks.shape)}"
        )
    if num_steps < 1:
        raise ValueError(
            f"diag_blocks needs at least one time step, got {tuple(diag_blocks.shape)}"
        )
    return num_steps, dim


def _flatten_batch(
    tensors: list[Tensor], event_ndims: list[int]
) -> tuple[torch.Size, list[Tensor]]:
    """Broadcast the batch dims of ``tensors`` and flatten them into one leading dim."""
    batch_shape = torch.broadcast_shapes(
        *(x.shape[: x.dim() - e] for x, e in zip(tensors, event_ndims, strict=True))
    )
    size = (math.prod(batch_shape),)
    flat = [
        x.expand(batch_shape + x.shape[x.dim() - e :]).reshape(size + x.shape[x.dim() - e :])
        for x, e in zip(tensors, event_ndims, strict=True)
    ]
    return batch_shape, flat


def _unflatten_batch(x: Tensor, batch_shape: torch.Size) -> Tensor:
    return x.reshape(batch_shape + x.shape[1:])


def _scan(
    step: Callable[..., Tensor | tuple[Tensor, ...]],
    init: Tensor | tuple[Tensor, ...],
    *sequences: Tensor | Sequence[Tensor],
    reverse: bool = False,
) -> Tensor | tuple[Tensor, ...]:
    """Sequential recursion over the time dim (dim 1) of flattened tensors.

    Forward: ``x[0] = init``, ``x[k+1] = step(x[k], *(s[:, k] for s in sequences))``.
    Reverse: ``x[K] = init``, ``x[k] = step(x[k+1], *(s[:, k] ...))``, with ``K`` the length of
    the sequences. Returns the ``K+1`` states stacked along dim 1 (a tuple of stacks when the
    state is a tuple). The time axis is unbound once and the states stacked once; a sequence
    may also come already unbound (a tuple of per-step tensors), e.g. ``x.unbind(1)[1:]``,
    which differentiates more cheaply than the slice ``x[:, 1:]``.
    """
    steps = (s.unbind(1) if isinstance(s, Tensor) else s for s in sequences)
    inputs = list(zip(*steps, strict=True))
    if reverse:
        inputs.reverse()
    states = [init]
    for args in inputs:
        states.append(step(states[-1], *args))
    if reverse:
        states.reverse()
    if isinstance(init, tuple):
        return tuple(_stack_time(parts) for parts in zip(*states, strict=True))
    return _stack_time(states)


def _stack_time(parts: Sequence[Tensor]) -> Tensor:
    """Stack per-step tensors along dim 1. LAPACK results (``cholesky_ex``,
    ``solve_triangular``) come in column-major block layout; they are stacked as such (a plain
    copy, 3-7 times faster here than the transposing copy into row-major blocks)."""
    first = parts[0]
    if first.dim() >= 2 and not first.is_contiguous() and first.mT.is_contiguous():
        return torch.stack([x.mT for x in parts], 1).mT
    return torch.stack(parts, 1)


def _first_failure_message(failed: Tensor, what: str) -> str | None:
    """Describe the first time step (and batch index) flagged in ``failed`` ``(..., T)``."""
    if not bool(failed.any()):
        return None
    index = failed.nonzero()
    first = index[index[:, -1].argmin()].tolist()
    where = f"time step {first[-1]}"
    if len(first) > 1:
        where += f" (batch index {tuple(first[:-1])})"
    return f"{what} is not positive definite: factorisation fails first at {where}"


# ----------------------------------------------------------------------------------------------
# Block Cholesky factorisation.


def _full_cholesky_step(
    state: tuple[Tensor, Tensor, Tensor], diag_next: Tensor, offdiag: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    # E_t = B_t C_t^{-T} (a right solve: 1.5-2x faster than the left one for W_t = E_t' here);
    # C_{t+1} C_{t+1}' = D_{t+1} - E_t E_t'
    sub = torch.linalg.solve_triangular(state[0].mT, offdiag, upper=True, left=False)
    chol, info = torch.linalg.cholesky_ex(torch.baddbmm(diag_next, sub, sub.mT, alpha=-1))
    return chol, info, sub


def _symmetrised_phi(x: Tensor, mask: Tensor) -> Tensor:
    """``Phi(x) + Phi(x)'`` with ``Phi`` the lower triangle with halved diagonal (``mask``)."""
    lower = x * mask
    return lower + lower.mT


class _BlockCholeskyFull(torch.autograd.Function):
    r"""Block Cholesky of flattened ``(B, T, n, n)`` blocks with a hand-written adjoint.

    Forward, per step: ``E_t = B_t C_t^{-T}`` (a right triangular solve),
    ``C_{t+1} = chol(D_{t+1} - E_t E_t')``; the adjoint below writes ``W_t = E_t'``.

    Reverse mode (Murray 2016, "Differentiation of the Cholesky decomposition", applied
    blockwise): with ``Phi`` the lower triangle with halved diagonal and ``Q_t`` defined by
    ``dloss/dS_t = 1/2 C_t^{-T} Q_t C_t^{-1}`` for the Schur complement ``S_t = C_t C_t'``,

    .. math::

        Q_t = \Phi(P_t) + \Phi(P_t)',\quad
        P_t = C_t' \bar C_t - \bar W_t W_t' + K_t Q_{t+1} K_t',\quad
        K_t = W_t C_{t+1}^{-T},

    where ``bar C``, ``bar W`` are the incoming gradients. The reverse loop is four small
    matrix products per step and no triangular solve; every solve (``K``, then
    ``dloss/dD_t = 1/2 C_t^{-T} Q_t C_t^{-1}`` and ``dloss/dB_t``) runs batched over all t.
    Autograd through the forward loop costs about fifteen kernels per step plus the graph's
    bookkeeping, which dominates at small ``n``. Once differentiable.
    """

    @staticmethod
    def forward(ctx, diag: Tensor, offdiag: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        first, *rest = diag.unbind(1)
        chol, info, sub = _scan(
            _full_cholesky_step,
            # a placeholder for E_{-1}, column-major like the solves' results (see _stack_time)
            (*torch.linalg.cholesky_ex(first), first.new_zeros(first.shape).mT),
            rest,
            offdiag,
        )
        sub = sub[:, 1:]
        ctx.save_for_backward(chol, sub)
        failed = info != 0
        ctx.mark_non_differentiable(failed)
        return chol, sub, failed

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(
        ctx, grad_chol: Tensor | None, grad_sub: Tensor | None, _
    ) -> tuple[Tensor, Tensor]:
        chol, sub = ctx.saved_tensors
        batch, num_steps, dim = chol.shape[:3]
        mask = torch.ones(dim, dim, dtype=chol.dtype, device=chol.device).tril()
        mask.diagonal().fill_(0.5)

        def reverse_step(q_next: Tensor, p_t: Tensor, k_t: Tensor) -> Tensor:
            return _symmetrised_phi(torch.baddbmm(p_t, k_t, torch.bmm(q_next, k_t.mT)), mask)

        grad_diag = chol.new_empty(chol.shape)
        grad_offdiag = chol.new_empty(sub.shape)
        # On CPU, chunks of time steps, last first, sized to stay in cache: over the whole
        # sequence at once every batched pass would stream B T n^2 floats through memory (4x
        # slower than plain autograd at B=64, T=1000, n=32 before chunking). On a GPU, memory
        # is fast and every chunk costs kernel launches: one chunk.
        chunk = num_steps
        if chol.device.type == "cpu":
            chunk = max(1, ADJOINT_CHUNK_ELEMENTS // (batch * dim * dim))
        q_after = schur_after = None  # Q and dloss/dS (times 2) at the first step of the next chunk
        for start in reversed(range(0, num_steps, chunk)):
            end = min(start + chunk, num_steps)
            coupled = min(end, num_steps - 1) - start  # steps t of the chunk that have an E_t
            chol_c, sub_c = chol[:, start:end], sub[:, start : start + coupled]
            if grad_chol is None:
                local = chol_c.new_zeros(chol_c.shape)
            else:
                local = chol_c.mT @ grad_chol[:, start:end].tril()
            if grad_sub is not None:
                local[:, :coupled] -= grad_sub[:, start : start + coupled].mT @ sub_c
            link = torch.linalg.solve_triangular(
                chol[:, start + 1 : start + 1 + coupled].mT, sub_c.mT, upper=True, left=False
            )
            if q_after is None:  # the chunk holding t = T-1: Q_{T-1} = Phi(P_{T-1}) + its '
                *rest, last = local.unbind(1)
                sym = _scan(reverse_step, _symmetrised_phi(last, mask), rest, link, reverse=True)
            else:
                sym = _scan(reverse_step, q_after, local.unbind(1), link, reverse=True)[:, :-1]
            # C^{-T} sym C^{-1} and (C_t^{-T} dloss/dW_t)' by right solves only (about twice as
            # fast as left solves here); sym and so the Schur gradient are symmetric.
            right = torch.linalg.solve_triangular(chol_c, sym, upper=False, left=False)
            schur = torch.linalg.solve_triangular(chol_c, right.mT, upper=False, left=False)
            torch.mul(schur, 0.5, out=grad_diag[:, start:end])
            following = schur[:, 1:]  # the Schur gradient at t + 1
            if schur_after is not None:
                following = torch.cat([following, schur_after.unsqueeze(1)], 1)
            grad_w_t = following @ sub_c  # minus (dloss/dW_t)'
            grad_w_t = (
                grad_w_t.neg_()
                if grad_sub is None
                else grad_sub[:, start : start + coupled] - grad_w_t
            )
            grad_offdiag[:, start : start + coupled] = torch.linalg.solve_triangular(
                chol[:, start : start + coupled], grad_w_t, upper=False, left=False
            )
            q_after, schur_after = sym[:, 0], schur[:, 0]
        return grad_diag, grad_offdiag


def _factor_full(diag: Tensor, offdiag: Tensor) -> tuple[BlockCholesky, Tensor]:
    chol, sub, failed = _BlockCholeskyFull.apply(diag, offdiag)
    return BlockCholesky(chol, sub), failed


class _ScalarSchurRecursion(torch.autograd.Function):
    """Schur complements of ``n`` scalar tridiagonal chains, elementwise over ``(B, T, n)``:
    ``s_0 = d_0``, ``s_{t+1} = d_{t+1} - q_t / s_t`` with ``q_t = b_t^2``: one fused operation
    per step, against three (square root, division, multiply-subtract) if the loop carried
    the factor as the block path does. The adjoint is the linear recursion
    ``G_t = g_t + (q_t / s_t^2) G_{t+1}`` (``dloss/dd_t = G_t``,
    ``dloss/dq_t = -G_{t+1} / s_t``), again one operation per step. Once differentiable."""

    @staticmethod
    def forward(ctx, diag: Tensor, offdiag_sq: Tensor) -> Tensor:
        first, *rest = diag.unbind(1)
        schur = _scan(
            lambda s, d_next, q: torch.addcdiv(d_next, q, s, value=-1), first, rest, offdiag_sq
        )
        ctx.save_for_backward(schur, offdiag_sq)
        return schur

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_schur: Tensor) -> tuple[Tensor, Tensor]:
        schur, offdiag_sq = ctx.saved_tensors
        previous = schur[:, :-1]
        grad_diag = _linear_scan(_DiagonalBlocks, grad_schur, -offdiag_sq / previous.square(), True)
        return grad_diag, -grad_diag[:, 1:] / previous


def _factor_diagonal(diag: Tensor, offdiag: Tensor) -> tuple[BlockCholesky, Tensor]:
    schur = _ScalarSchurRecursion.apply(diag, offdiag.square())
    failed = ~(schur > 0).all(-1)
    chol = schur.clamp(min=torch.finfo(schur.dtype).tiny).sqrt()
    return BlockCholesky(chol, offdiag / chol[:, :-1]), failed


def block_cholesky_ex(
    diag_blocks: Tensor, offdiag_blocks: Tensor, *, blocks: str = "full"
) -> tuple[BlockCholesky, Tensor]:
    """Block Cholesky factorisation ``J = L L'`` without raising; see :func:`block_cholesky`.

    :returns: the factor and a bool tensor ``failed`` of shape ``(..., T)``, true where the
        Schur complement ``D_t - E_{t-1} E_{t-1}'`` is not positive definite. Only the first
        failing step of each batch element is meaningful; factor entries from it on are
        garbage. No host synchronisation happens here.
    """
    alg = _algebra(blocks)
    check_block_shapes(diag_blocks, offdiag_blocks, blocks=blocks)
    batch_shape, (diag, offdiag) = _flatten_batch(
        [diag_blocks, offdiag_blocks], [alg.block_ndim + 1] * 2
    )
    kernel = _factor_full if alg is _FullBlocks else _factor_diagonal
    factor, failed = kernel(diag, offdiag)
    return (
        BlockCholesky(*(_unflatten_batch(x, batch_shape) for x in factor)),
        _unflatten_batch(failed, batch_shape),
    )


def block_cholesky(
    diag_blocks: Tensor, offdiag_blocks: Tensor, *, blocks: str = "full", name: str = "precision"
) -> BlockCholesky:
    r"""Block Cholesky factorisation of a symmetric positive-definite block-tridiagonal ``J``.

    ``J = L L'`` with ``L`` lower block-bidiagonal (Golub & Van Loan, sec. 4.5):

    .. math::

        C_0 C_0' = D_0, \quad E_t = B_t C_t^{-T}, \quad C_{t+1} C_{t+1}' = D_{t+1} - E_t E_t'.

    ``E_t`` comes from a triangular solve, never an explicit inverse. The recursion runs over
    ``T`` with one ``cholesky_ex`` per step; failures are checked once, after the loop (one
    host synchronisation per call).

    :param torch.Tensor diag_blocks: ``D_t = J[t, t]``, symmetric, ``(..., T, n, n)``;
        ``(..., T, n)`` with ``blocks="diagonal"``.
    :param torch.Tensor offdiag_blocks: ``B_t = J[t+1, t]``, ``(..., T-1, n, n)``;
        ``(..., T-1, n)`` with ``blocks="diagonal"``.
    :param str blocks: ``"full"`` or ``"diagonal"`` (``n`` scalar tridiagonal chains).
    :param str name: how the matrix is called in the error message.
    :returns: :class:`BlockCholesky` with batch shape the broadcast of the inputs'.
    :raises ValueError: if ``J`` is not positive definite, naming the first failing time step
        and batch index.
    """
    factor, failed = block_cholesky_ex(diag_blocks, offdiag_blocks, blocks=blocks)
    message = _first_failure_message(failed, name)
    if message is not None:
        raise ValueError(message)
    return factor


# ----------------------------------------------------------------------------------------------
# Functions of the factor.


def logdet(factor: BlockCholesky, *, blocks: str = "full") -> Tensor:
    """``log|J| = 2 sum_t log diag C_t``.

    :param BlockCholesky factor: from :func:`block_cholesky`.
    :param str blocks: ``"full"`` or ``"diagonal"``, the layout of ``factor``.
    :returns: ``(...)``.
    """
    alg = _algebra(blocks)
    return 2 * alg.diagonal(factor.diag).log().sum((-1, -2))


def _factor_and_rhs(
    factor: BlockCholesky, rhs: Tensor, alg: type[_FullBlocks] | type[_DiagonalBlocks]
) -> tuple[torch.Size, Tensor, Tensor, Tensor]:
    if rhs.dim() < 3 or rhs.shape[-3:-1] != factor.diag.shape[-alg.block_ndim - 1 :][:2]:
        raise ValueError(
            f"rhs must have shape (..., T, n, k) matching the factor's (T, n) = "
            f"{tuple(factor.diag.shape[-alg.block_ndim - 1 :][:2])}, got {tuple(rhs.shape)}"
        )
    batch_shape, (chol, sub, cols) = _flatten_batch(
        [factor.diag, factor.offdiag, rhs], [alg.block_ndim + 1, alg.block_ndim + 1, 3]
    )
    return batch_shape, chol, sub, cols


def _linear_scan(alg, rhs: Tensor, coeff: Tensor, reverse: bool) -> Tensor:
    """``x_0 = a_0``, ``x_{k+1} = a_{k+1} - M_k x_k`` (or from the end with ``reverse``:
    ``x_K = a_K``, ``x_k = a_k - M_k x_{k+1}``); one multiply-subtract per step."""
    steps = rhs.unbind(1)
    if reverse:
        return _scan(
            lambda x, a_k, m_k: alg.sub_mul(a_k, m_k, x), steps[-1], steps[:-1], coeff, reverse=True
        )
    return _scan(lambda x, a_next, m_k: alg.sub_mul(a_next, m_k, x), steps[0], steps[1:], coeff)


def _forward_substitution(alg, chol: Tensor, sub: Tensor, rhs: Tensor) -> Tensor:
    # L y = h:  C_{t+1} y_{t+1} = h_{t+1} - E_t y_t.  With u_t = C_t y_t the recursion is
    # u_{t+1} = h_{t+1} - M_t u_t, M_t = E_t C_t^{-1}: one multiply-subtract per step, and all
    # triangular solves happen in parallel over t.
    m = alg.as_operator(alg.solve_lower(chol[:, :-1], sub, left=False))
    u = _linear_scan(alg, rhs, m, False)
    return alg.solve_lower(alg.as_operator(chol), u)


def _back_substitution(alg, chol: Tensor, sub: Tensor, rhs: Tensor) -> Tensor:
    # L' x = r:  C_t' x_t = r_t - E_t' x_{t+1}.  With v_t = C_t' x_t the recursion is
    # v_t = r_t - N_t v_{t+1}, N_t = E_t' C_{t+1}^{-T} (a right solve).
    n = alg.as_operator(alg.solve_lower_transpose(chol[:, 1:], alg.transpose(sub), left=False))
    v = _linear_scan(alg, rhs, n, True)
    return alg.solve_lower_transpose(alg.as_operator(chol), v)


class _Substitution(torch.autograd.Function):
    r"""Forward substitution ``y = L^{-1} h`` or back substitution ``x = L^{-T} r`` (``transpose``)
    on flattened ``(B, T, ...)`` factor blocks and right-hand sides ``(B, T, n, k)``, with the
    adjoint written out. For ``y = L^{-1} h``, ``dy = -L^{-1} dL y``, so with ``v = L^{-T} g``
    (``g`` the incoming gradient)

    .. math::

        \bar h = v,\quad \bar C_t = -\operatorname{tril}(v_t y_t'),\quad
        \bar E_t = -v_{t+1} y_t',

    and for ``x = L^{-T} r`` with ``u = L^{-1} g``: ``bar r = u``,
    ``bar C_t = -tril(x_t u_t')``, ``bar E_t = -x_{t+1} u_t'`` (only the blocks that ``L``
    has). The backward is one substitution the other way and a batched outer product; autograd
    would instead differentiate the batched triangular solves that precompute the recursion's
    coefficients, several times the cost. Once differentiable.
    """

    @staticmethod
    def forward(ctx, alg, transpose: bool, chol: Tensor, sub: Tensor, rhs: Tensor) -> Tensor:
        out = (_back_substitution if transpose else _forward_substitution)(alg, chol, sub, rhs)
        ctx.alg, ctx.transpose = alg, transpose
        ctx.save_for_backward(chol, sub, out)
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out: Tensor) -> tuple[None, None, Tensor | None, Tensor | None, Tensor]:
        alg = ctx.alg
        chol, sub, out = ctx.saved_tensors
        if ctx.transpose:
            adjoint = _forward_substitution(alg, chol, sub, grad_out)
            left, right = out, adjoint
        else:
            adjoint = _back_substitution(alg, chol, sub, grad_out)
            left, right = adjoint, out
        left = -left  # negate the (n, k) columns, not the n x n products
        grad_chol = grad_sub = None
        if ctx.needs_input_grad[2]:
            grad_chol = alg.lower(alg.column_outer(left, right))
        if ctx.needs_input_grad[3]:
            grad_sub = alg.column_outer(left[:, 1:], right[:, :-1])
        return None, None, grad_chol, grad_sub, adjoint


def solve_lower(factor: BlockCholesky, rhs: Tensor, *, blocks: str = "full") -> Tensor:
    """Forward block substitution: ``L^{-1} rhs``.

    :param BlockCholesky factor: from :func:`block_cholesky`.
    :param torch.Tensor rhs: ``(..., T, n, k)`` (``k`` right-hand sides); batch dims broadcast
        with the factor's.
    :returns: ``(..., T, n, k)``.
    """
    alg = _algebra(blocks)
    batch_shape, chol, sub, cols = _factor_and_rhs(factor, rhs, alg)
    return _unflatten_batch(_Substitution.apply(alg, False, chol, sub, cols), batch_shape)


def solve_upper(factor: BlockCholesky, rhs: Tensor, *, blocks: str = "full") -> Tensor:
    """Backward block substitution: ``L^{-T} rhs``; if ``rhs ~ N(0, I)`` then the result is
    ``N(0, J^{-1})`` (Rue & Held 2005, algorithm 2.4).

    :param BlockCholesky factor: from :func:`block_cholesky`.
    :param torch.Tensor rhs: ``(..., T, n, k)``; batch dims broadcast with the factor's.
    :returns: ``(..., T, n, k)``.
    """
    alg = _algebra(blocks)
    batch_shape, chol, sub, cols = _factor_and_rhs(factor, rhs, alg)
    return _unflatten_batch(_Substitution.apply(alg, True, chol, sub, cols), batch_shape)


def solve(factor: BlockCholesky, rhs: Tensor, *, blocks: str = "full") -> Tensor:
    """``J^{-1} rhs = L^{-T} L^{-1} rhs`` by forward then backward block substitution.

    :param BlockCholesky factor: from :func:`block_cholesky`.
    :param torch.Tensor rhs: ``(..., T, n, k)``; batch dims broadcast with the factor's.
    :returns: ``(..., T, n, k)``.
    """
    alg = _algebra(blocks)
    batch_shape, chol, sub, cols = _factor_and_rhs(factor, rhs, alg)
    forward = _Substitution.apply(alg, False, chol, sub, cols)
    return _unflatten_batch(_Substitution.apply(alg, True, chol, sub, forward), batch_shape)


def selected_inverse(factor: BlockCholesky, *, blocks: str = "full") -> tuple[Tensor, Tensor]:
    r"""The tridiagonal band of ``Sigma = J^{-1}`` (selected inversion), ``O(T n^3)``.

    From ``Sigma L = L^{-T}`` (Takahashi et al. 1973; Rue & Held 2005, sec. 2.4; Jain et al.
    2007), with ``G_t = C_t^{-T} E_t'``:

    .. math::

        \Sigma_{T-1,T-1} = (C_{T-1} C_{T-1}')^{-1}, \quad
        \Sigma_{t,t} = (C_t C_t')^{-1} + G_t \Sigma_{t+1,t+1} G_t', \quad
        \Sigma_{t+1,t} = -\Sigma_{t+1,t+1} G_t'.

    :param BlockCholesky factor: from :func:`block_cholesky`.
    :returns: ``(cov_diag, cov_offdiag)``: ``Sigma[t, t]`` ``(..., T, n, n)`` and
        ``Sigma[t+1, t] = Cov(z_{t+1}, z_t)`` ``(..., T-1, n, n)`` (``(..., T, n)`` and
        ``(..., T-1, n)`` with ``blocks="diagonal"``).
    """
    alg = _algebra(blocks)
    batch_shape, (chol, sub) = _flatten_batch(list(factor), [alg.block_ndim + 1] * 2)
    local = alg.cholesky_inverse(chol)
    m = alg.solve_lower(chol[:, :-1], sub, left=False)  # M_t = E_t C_t^{-1} = G_t'
    *rest, last = local.unbind(1)
    cov_diag = _scan(
        lambda cov_next, local_t, m_t: alg.add_congruence(local_t, m_t, cov_next),
        last,
        rest,
        m,
        reverse=True,
    )
    cov_offdiag = -alg.mul(cov_diag[:, 1:], m)
    return _unflatten_batch(cov_diag, batch_shape), _unflatten_batch(cov_offdiag, batch_shape)


# ----------------------------------------------------------------------------------------------
# Functions of the blocks (parallel over time).


def matvec(
    diag_blocks: Tensor, offdiag_blocks: Tensor, x: Tensor, *, blocks: str = "full"
) -> Tensor:
    """``J x`` in parallel over t: ``(J x)_t = D_t x_t + B_{t-1} x_{t-1} + B_t' x_{t+1}``.

    :param torch.Tensor diag_blocks: ``(..., T, n, n)`` (``(..., T, n)`` if diagonal).
    :param torch.Tensor offdiag_blocks: ``(..., T-1, n, n)`` (``(..., T-1, n)``).
    :param torch.Tensor x: ``(..., T, n)``; batch dims broadcast with the blocks'.
    :param str blocks: ``"full"`` or ``"diagonal"``.
    :returns: ``(..., T, n)``.
    """
    alg = _algebra(blocks)
    col = x.unsqueeze(-1)
    out = alg.mul(alg.as_operator(diag_blocks), col)
    below = alg.mul(alg.as_operator(offdiag_blocks), col[..., :-1, :, :])
    above = alg.mul(alg.as_operator(alg.transpose(offdiag_blocks)), col[..., 1:, :, :])
    zero = below.new_zeros(below.shape[:-3] + (1,) + below.shape[-2:])
    out = out + torch.cat([zero, below], -3) + torch.cat([above, zero], -3)
    return out.squeeze(-1)


def quadratic_form(
    diag_blocks: Tensor, offdiag_blocks: Tensor, x: Tensor, *, blocks: str = "full"
) -> Tensor:
    """``x' J x = sum_t x_t' D_t x_t + 2 sum_t x_{t+1}' B_t x_t`` in parallel over t.

    :param torch.Tensor diag_blocks: ``(..., T, n, n)`` (``(..., T, n)`` if diagonal).
    :param torch.Tensor offdiag_blocks: ``(..., T-1, n, n)`` (``(..., T-1, n)``).
    :param str blocks: ``"full"`` or ``"diagonal"``.
    :param torch.Tensor x: ``(..., T, n)``; batch dims broadcast with the blocks'.
    :returns: ``(...)``.
    """
    alg = _algebra(blocks)
    col = x.unsqueeze(-1)
    diag_part = alg.mul(alg.as_operator(diag_blocks), col).squeeze(-1) * x
    off_part = alg.mul(alg.as_operator(offdiag_blocks), col[..., :-1, :, :]).squeeze(-1)
    return diag_part.sum((-1, -2)) + 2 * (off_part * x[..., 1:, :]).sum((-1, -2))


def dense_from_blocks(
    diag_blocks: Tensor, offdiag_blocks: Tensor, *, blocks: str = "full", symmetric: bool = True
) -> Tensor:
    """Assemble the dense ``(..., T*n, T*n)`` matrix, rows and columns in ``(t, i)`` order
    (for tests and small problems).

    :param torch.Tensor diag_blocks: ``(..., T, n, n)`` (``(..., T, n)`` if diagonal).
    :param torch.Tensor offdiag_blocks: ``(..., T-1, n, n)`` (``(..., T-1, n)``).
    :param str blocks: ``"full"`` or ``"diagonal"``.
    :param bool symmetric: put ``B_t'`` above the diagonal (a symmetric ``J``); with ``False``
        the upper part is zero (the lower block-bidiagonal Cholesky factor ``L``).
    """
    alg = _algebra(blocks)
    diag, offdiag = alg.to_full(diag_blocks), alg.to_full(offdiag_blocks)
    batch_shape = torch.broadcast_shapes(diag.shape[:-3], offdiag.shape[:-3])
    num_steps, dim = diag.shape[-3], diag.shape[-1]
    dense = diag.new_zeros(batch_shape + (num_steps, num_steps, dim, dim))
    steps = torch.arange(num_steps, device=diag.device)
    dense[..., steps, steps, :, :] = diag
    dense[..., steps[1:], steps[:-1], :, :] = offdiag
    if symmetric:
        dense[..., steps[:-1], steps[1:], :, :] = offdiag.mT
    return dense.transpose(-3, -2).reshape(batch_shape + (num_steps * dim, num_steps * dim))


# ----------------------------------------------------------------------------------------------
# Linear-Gaussian Markov chains.


def _pad_time(x: Tensor, before: int, after: int, alg) -> Tensor:
    return torch.nn.functional.pad(x, (0, 0) * alg.block_ndim + (before, after))


def _covariance_cholesky(cov: Tensor, alg, name: str) -> Tensor:
    """Cholesky factor of a covariance (square root of variances for diagonal blocks)."""
    if alg is _DiagonalBlocks:
        if not bool((cov > 0).all()):
            raise ValueError(f"{name} must hold positive variances with blocks='diagonal'")
        return cov.sqrt()
    chol, info = small_blocks.cholesky_ex(cov)
    if bool(info.any()):
        raise ValueError(f"{name} must be positive definite")
    return chol


def _check_trans_matrix(trans_matrix: Tensor, alg, blocks: str) -> None:
    """``trans_matrix`` has a time dim and (full blocks) square blocks, else ``ValueError``."""
    full = alg.block_ndim == 2
    if trans_matrix.dim() < alg.block_ndim + 1 or (
        full and trans_matrix.shape[-1] != trans_matrix.shape[-2]
    ):
        layout = "(..., T-1, n, n)" if full else "(..., T-1, n)"
        raise ValueError(
            f"trans_matrix must have shape {layout} for blocks={blocks!r}, got "
            f"{tuple(trans_matrix.shape)}"
        )


def _check_trailing(
    name: str, value: Tensor, ndim: int, trans_matrix: Tensor, blocks: str
) -> None:
    """``value`` ends in the last ``ndim`` dims of ``trans_matrix`` (``(n,)``, ``(n, n)`` or
    ``(T-1, n, n)``), else a ``ValueError`` naming ``name``."""
    expected = tuple(trans_matrix.shape[trans_matrix.dim() - ndim :])
    if value.dim() < ndim or tuple(value.shape[value.dim() - ndim :]) != expected:
        raise ValueError(
            f"{name} must have trailing shape {expected} to match trans_matrix "
            f"{tuple(trans_matrix.shape)} (blocks={blocks!r}), got {tuple(value.shape)}"
        )


def markov_chain_precision(
    init_cov: Tensor, trans_matrix: Tensor, trans_cov: Tensor, *, blocks: str = "full"
) -> tuple[Tensor, Tensor, Tensor]:
    r"""Precision blocks and log-determinant of the linear-Gaussian chain (column-vector
    convention)

    ``z_0 ~ N(m_0, P_0)``, ``z_{t+1} = A_t z_t + w_t``, ``w_t ~ N(0, Q_t)``:

    .. math::

        D_0 = P_0^{-1} + A_0' Q_0^{-1} A_0,\ D_t = Q_{t-1}^{-1} + A_t' Q_t^{-1} A_t,\
        D_{T-1} = Q_{T-2}^{-1},\ B_t = -Q_t^{-1} A_t,

        \log|J| = -\log|P_0| - \sum_t \log|Q_t|.

    Inverses come from Cholesky factors of ``P_0`` and ``Q_t`` (``cholesky_inverse`` and
    triangular solves), each factorised once for both results. The log-determinant holds
    because ``J = M' M`` with ``M`` the lower block-bidiagonal whitening map of the innovations
    (diagonal blocks ``P_0^{-1/2}, Q_0^{-1/2}, ..., Q_{T-2}^{-1/2}``, sub-diagonal blocks
    ``-Q_t^{-1/2} A_t``), whatever the transition matrices. Unlike the block Cholesky of ``J``
    it stays exact when ``J`` is badly conditioned, e.g. for explosive dynamics
    (``|lambda| > 1`` over many steps), where a float32 factorisation of ``J`` stops being
    positive definite.

    :param torch.Tensor init_cov: ``P_0`` ``(..., n, n)`` (variances ``(..., n)`` with
        ``blocks="diagonal"``).
    :param torch.Tensor trans_matrix: ``A_t`` ``(..., T-1, n, n)`` (``(..., T-1, n)``).
    :param torch.Tensor trans_cov: ``Q_t`` ``(..., T-1, n, n)`` (``(..., T-1, n)``).
    :returns: ``(diag_blocks, offdiag_blocks, logdet)``, the blocks in the layout given by
        ``blocks``, ``logdet`` of the broadcast batch shape ``(...)``.
    :raises ValueError: naming the argument, on mismatched shapes or covariances that are not
        positive definite.
    """
    alg = _algebra(blocks)
    _check_trans_matrix(trans_matrix, alg, blocks)
    _check_trailing("trans_cov", trans_cov, alg.block_ndim + 1, trans_matrix, blocks)
    _check_trailing("init_cov", init_cov, alg.block_ndim, trans_matrix, blocks)
    init_chol, noise_chol = _chain_cholesky(init_cov, trans_cov, alg)
    noise_prec = alg.cholesky_inverse(noise_chol)
    # B_t = -Q_t^{-1} A_t and A_t' Q_t^{-1} A_t = W'W with W = R_t^{-1} A_t (Q_t = R_t R_t').
    whitened = alg.solve_lower(noise_chol, trans_matrix)
    offdiag = -alg.solve_lower_transpose(noise_chol, whitened)
    pulled_back = alg.mul(alg.transpose(whitened), whitened)
    init_prec = alg.cholesky_inverse(init_chol).unsqueeze(-alg.block_ndim - 1)
    num_transitions = trans_matrix.shape[-alg.block_ndim - 1]
    diag = (
        _pad_time(init_prec, 0, num_transitions, alg)
        + _pad_time(noise_prec, 1, 0, alg)
        + _pad_time(pulled_back, 0, 1, alg)
    )
    return diag, offdiag, _chain_logdet(init_chol, noise_chol, alg)


def markov_chain_blocks(
    init_cov: Tensor, trans_matrix: Tensor, trans_cov: Tensor, *, blocks: str = "full"
) -> tuple[Tensor, Tensor]:
    """``(diag_blocks, offdiag_blocks)`` of the chain's precision, see
    :func:`markov_chain_precision`."""
    diag, offdiag, _ = markov_chain_precision(init_cov, trans_matrix, trans_cov, blocks=blocks)
    return diag, offdiag


def markov_chain_logdet(init_cov: Tensor, trans_cov: Tensor, *, blocks: str = "full") -> Tensor:
    r"""``log|J| = -log|P_0| - sum_t log|Q_t|`` of the chain of :func:`markov_chain_precision`,
    without the transition matrices and without factorising ``J``.

    :param torch.Tensor init_cov: ``P_0`` ``(..., n, n)`` (variances ``(..., n)`` with
        ``blocks="diagonal"``).
    :param torch.Tensor trans_cov: ``Q_t`` ``(..., T-1, n, n)`` (``(..., T-1, n)``).
    :returns: ``log|J|``, shape the broadcast batch shape ``(...)``.
    """
    alg = _algebra(blocks)
    return _chain_logdet(*_chain_cholesky(init_cov, trans_cov, alg), alg)


def _chain_cholesky(init_cov: Tensor, trans_cov: Tensor, alg) -> tuple[Tensor, Tensor]:
    return (
        _covariance_cholesky(init_cov, alg, "init_cov"),
        _covariance_cholesky(trans_cov, alg, "trans_cov"),
    )


def _chain_logdet(init_chol: Tensor, noise_chol: Tensor, alg) -> Tensor:
    init_half_logdet = alg.diagonal(init_chol).log().sum(-1)
    noise_half_logdet = alg.diagonal(noise_chol).log().sum((-1, -2))
    return -2 * (init_half_logdet + noise_half_logdet)


def markov_chain_mean(init_loc: Tensor, trans_matrix: Tensor, *, blocks: str = "full") -> Tensor:
    """Means ``m_{t+1} = A_t m_t`` of the chain of :func:`markov_chain_blocks`, ``(..., T, n)``.

    :param torch.Tensor init_loc: ``m_0`` ``(..., n)``.
    :param torch.Tensor trans_matrix: ``A_t`` ``(..., T-1, n, n)`` (``(..., T-1, n)`` with
        ``blocks="diagonal"``).
    :raises ValueError: naming the argument whose shape does not fit.
    """
    alg = _algebra(blocks)
    _check_trans_matrix(trans_matrix, alg, blocks)
    _check_trailing("init_loc", init_loc, 1, trans_matrix, blocks)
    batch_shape, (loc, trans) = _flatten_batch(
        [init_loc.unsqueeze(-1), trans_matrix], [2, alg.block_ndim + 1]
    )
    means = _scan(lambda m, a: alg.mul(a, m), loc, alg.as_operator(trans))
    return _unflatten_batch(means.squeeze(-1), batch_shape)


LOG_2PI = math.log(2 * math.pi)

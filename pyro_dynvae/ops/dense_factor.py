"""The dense Cholesky route for small block-tridiagonal SPD matrices.

For a short chain of small blocks (``T n`` up to a few hundred) the sequential block Cholesky of
:mod:`pyro_dynvae.ops.block_tridiag` spends its time in Python and in per-call overhead: ``T``
dependent steps of several tiny batched LAPACK calls each, forward and backward. Assembling the
dense ``Tn x Tn`` matrix ``J`` and factorising it with one batched ``cholesky_ex`` does
``(Tn)^3 / 3`` flops instead of ``7/3 T n^3`` (``T^2 / 7`` times more) in a handful of calls, and
for ``T n <= DENSE_MAX_SIZE`` (see :mod:`pyro_dynvae.ops.dispatch`) that is the faster trade.
The factor ``L`` of ``J = L L'`` is the same lower block-bidiagonal matrix the block Cholesky
computes (the Cholesky factor is unique); it is kept dense here, and everything else follows
from it in one batched call each:

- ``log|J| = 2 sum_i log L_ii``;
- ``J^{-1} h`` by ``cholesky_solve`` (two triangular solves);
- samples ``L^{-T} eps`` by one triangular solve (the same map as the block back substitution,
  so the same draw for a given ``eps`` as the sequential path);
- the tridiagonal band of ``Sigma = J^{-1}`` read off ``cholesky_inverse(L)``.

Gradients are PyTorch's own (the Cholesky adjoint of Murray 2016, arXiv:1602.07527, and the
adjoints of the triangular solves), which for these sizes are a few batched calls as well.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from . import block_tridiag as sequential

__all__ = [
    "DenseFactor",
    "dense_factor",
    "dense_logdet",
    "dense_selected_inverse",
    "dense_solve",
    "dense_transform_noise",
]


class DenseFactor(NamedTuple):
    """The dense lower Cholesky factor of a block-tridiagonal ``J``.

    :param torch.Tensor chol: ``L``, ``(..., T*n, T*n)``, rows and columns in ``(t, i)`` order.
    :param torch.Tensor failed_step: ``(...,)`` int64: ``-1`` where ``J`` is positive definite,
        else the time step of the first leading minor that is not.
    :param int block_size: ``n``.
    """

    chol: Tensor
    failed_step: Tensor
    block_size: int


def dense_factor(diag_blocks: Tensor, offdiag_blocks: Tensor) -> DenseFactor:
    """Factorise ``J`` (full blocks, ``(..., T, n, n)`` and ``(..., T-1, n, n)``) densely.

    Does not raise: a matrix that is not positive definite is flagged in ``failed_step``
    (``cholesky_ex``'s ``info`` is the order of the first failing leading minor).
    """
    dim = diag_blocks.shape[-1]
    dense = sequential.dense_from_blocks(diag_blocks, offdiag_blocks)
    chol, info = torch.linalg.cholesky_ex(dense)
    failed_step = torch.where(info > 0, (info - 1) // dim, -1)
    return DenseFactor(chol, failed_step, dim)


def dense_logdet(factor: DenseFactor) -> Tensor:
    """``log|J| = 2 sum_i log L_ii``, ``(...,)``."""
    return 2 * factor.chol.diagonal(dim1=-2, dim2=-1).log().sum(-1)


def _flat(rhs: Tensor) -> Tensor:
    """``(..., T, n, k)`` -> ``(..., T*n, k)``."""
    return rhs.flatten(-3, -2)


def dense_solve(factor: DenseFactor, rhs: Tensor) -> Tensor:
    """``J^{-1} rhs`` for ``rhs`` ``(..., T, n, k)``."""
    solution = torch.cholesky_solve(_flat(rhs), factor.chol)
    return solution.unflatten(-2, rhs.shape[-3:-1])


def dense_transform_noise(factor: DenseFactor, noise: Tensor) -> Tensor:
    """``L^{-T} noise`` for white noise ``(..., T, n, k)``: draws with covariance ``J^{-1}``."""
    draws = torch.linalg.solve_triangular(factor.chol.mT, _flat(noise), upper=True)
    return draws.unflatten(-2, noise.shape[-3:-1])


def dense_selected_inverse(factor: DenseFactor) -> tuple[Tensor, Tensor]:
    """The band ``(Sigma[t, t], Sigma[t+1, t])`` of ``J^{-1}``: ``(..., T, n, n)`` and
    ``(..., T-1, n, n)``."""
    dim = factor.block_size
    size = factor.chol.shape[-1]
    covariance = torch.cholesky_inverse(factor.chol)
    blocks = covariance.unflatten(-1, (size // dim, dim)).unflatten(-3, (size // dim, dim))
    # blocks[..., t, i, s, j] = Sigma[(t, i), (s, j)]
    steps = torch.arange(size // dim, device=covariance.device)
    diag = blocks[..., steps, :, steps, :]
    offdiag = blocks[..., steps[1:], :, steps[:-1], :]
    # advanced indices separated by a slice move to the front: (T, ..., n, n) -> (..., T, n, n)
    return diag.movedim(0, -3), offdiag.movedim(0, -3)

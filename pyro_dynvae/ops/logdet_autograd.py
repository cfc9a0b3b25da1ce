"""Log-determinant of a block-tridiagonal SPD matrix with a hand-written backward.

For ``J`` with diagonal blocks ``D_t`` and sub-diagonal blocks ``B_t = J[t+1, t]``,
``d log|J| = tr(J^{-1} dJ)``, so with ``Sigma = J^{-1}``::

    d log|J| / d D_t = Sigma[t, t],        d log|J| / d B_t = 2 Sigma[t+1, t]

(``B_t`` enters ``J`` twice, at ``[t+1, t]`` and transposed at ``[t, t+1]``; the gradient with
respect to ``D_t`` is the symmetric one, as for :func:`torch.linalg.cholesky`). Only the
tridiagonal band of ``Sigma`` is needed: the selected inverse, computed from the saved factor in
one sweep. Autograd through the factorisation would instead replay every level (or, for the
sequential algorithm, every time step) in reverse; this backward costs one selected inversion and
keeps memory linear in ``T`` (the factor). The backward is not itself differentiable
(``once_differentiable``): second derivatives of ``log|J|`` are not supported through this path.

Reference: I. Murray, "Differentiation of the Cholesky decomposition", 2016 (why the Cholesky
backward is replaced by the closed form ``Sigma``); selected inversion as in
:mod:`pyro_dynvae.ops.cyclic_reduction`.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from . import block_tridiag as sequential
from .cyclic_reduction import (
    cyclic_reduction_factor,
    cyclic_reduction_logdet,
    cyclic_reduction_selected_inverse,
)
from .dense_factor import dense_factor, dense_logdet, dense_selected_inverse

__all__ = ["block_tridiag_logdet"]


def _first_failure(failed: Tensor) -> Tensor:
    """``(..., T)`` bool -> ``(...,)`` int64: the first flagged step, ``-1`` if none."""
    return torch.where(failed.any(-1), failed.int().argmax(-1), -1)


def _sequential_factor(diag_blocks: Tensor, offdiag_blocks: Tensor, blocks: str):
    factor, failed = sequential.block_cholesky_ex(diag_blocks, offdiag_blocks, blocks=blocks)
    return factor, _first_failure(failed)


def _cyclic_factor(diag_blocks: Tensor, offdiag_blocks: Tensor, blocks: str):
    factor = cyclic_reduction_factor(diag_blocks, offdiag_blocks, blocks=blocks)
    return factor, factor.failed_step


def _dense_factor(diag_blocks: Tensor, offdiag_blocks: Tensor, blocks: str):
    factor = dense_factor(diag_blocks, offdiag_blocks)
    return factor, factor.failed_step


# algorithm -> (factorise -> (factor, failed_step), logdet(factor, blocks), band(factor, blocks))
_ALGORITHMS: dict[str, tuple[Callable, Callable, Callable]] = {
    "sequential": (
        _sequential_factor,
        lambda factor, blocks: sequential.logdet(factor, blocks=blocks),
        lambda factor, blocks: sequential.selected_inverse(factor, blocks=blocks),
    ),
    "cyclic": (
        _cyclic_factor,
        lambda factor, blocks: cyclic_reduction_logdet(factor),
        lambda factor, blocks: cyclic_reduction_selected_inverse(factor),
    ),
    "dense": (
        _dense_factor,
        lambda factor, blocks: dense_logdet(factor),
        lambda factor, blocks: dense_selected_inverse(factor),
    ),
}


class _BlockTridiagLogdet(torch.autograd.Function):
    @staticmethod
    def forward(ctx, diag_blocks: Tensor, offdiag_blocks: Tensor, blocks: str, algorithm: str):
        factorise, logdet, _ = _ALGORITHMS[algorithm]
        factor, failed_step = factorise(diag_blocks, offdiag_blocks, blocks)
        ctx.factor, ctx.blocks, ctx.algorithm = factor, blocks, algorithm
        ctx.shapes = diag_blocks.shape, offdiag_blocks.shape
        ctx.mark_non_differentiable(failed_step)
        return logdet(factor, blocks), failed_step

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_logdet: Tensor, grad_failed_step: Tensor | None):
        cov_diag, cov_off = _ALGORITHMS[ctx.algorithm][2](ctx.factor, ctx.blocks)
        diag_shape, off_shape = ctx.shapes
        event_dims = cov_diag.dim() - grad_logdet.dim()
        grad = grad_logdet.reshape(grad_logdet.shape + (1,) * event_dims)
        # In place: the selected inverse is ours, and memory is what limits long sequences.
        grad_diag = cov_diag.mul_(grad).sum_to_size(diag_shape)
        grad_off = cov_off.mul_(2 * grad).sum_to_size(off_shape)
        return grad_diag, grad_off, None, None


def block_tridiag_logdet(
    diag_blocks: Tensor,
    offdiag_blocks: Tensor,
    *,
    blocks: str = "full",
    algorithm: str = "cyclic",
) -> tuple[Tensor, Tensor]:
    """``log|J|`` with the selected-inverse backward.

    :param torch.Tensor diag_blocks: ``(..., T, n, n)`` (``(..., T, n)`` with
        ``blocks="diagonal"``) diagonal blocks ``D_t``.
    :param torch.Tensor offdiag_blocks: ``(..., T-1, n, n)`` (``(..., T-1, n)``) sub-diagonal
        blocks ``B_t = J[t+1, t]``.
    :param str blocks: ``"full"`` or ``"diagonal"``.
    :param str algorithm: ``"cyclic"`` (:mod:`~pyro_dynvae.ops.cyclic_reduction`),
        ``"sequential"`` (:mod:`~pyro_dynvae.ops.block_tridiag`) or ``"dense"``
        (:mod:`~pyro_dynvae.ops.dense_factor`, full blocks); all use the backward above.
    :return: ``(logdet, failed_step)``: ``(...,)`` log-determinants (differentiable) and
        ``(...,)`` int64, ``-1`` where ``J`` is positive definite, else a failing time step.
    """
    if algorithm not in _ALGORITHMS:
        raise ValueError(f"algorithm must be one of {tuple(_ALGORITHMS)}, got {algorithm!r}")
    return _BlockTridiagLogdet.apply(diag_blocks, offdiag_blocks, blocks, algorithm)

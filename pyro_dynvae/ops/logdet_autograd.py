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

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from .cyclic_reduction import (
    cyclic_reduction_factor,
    cyclic_reduction_logdet,
    cyclic_reduction_selected_inverse,
)

__all__ = ["block_tridiag_logdet"]


class _CyclicReductionLogdet(torch.autograd.Function):
    @staticmethod
    def forward(ctx, diag_blocks: Tensor, offdiag_blocks: Tensor, blocks: str):
        factor = cyclic_reduction_factor(diag_blocks, offdiag_blocks, blocks=blocks)
        ctx.factor = factor
        ctx.shapes = diag_blocks.shape, offdiag_blocks.shape
        ctx.mark_non_differentiable(factor.failed_step)
        return cyclic_reduction_logdet(factor), factor.failed_step

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_logdet: Tensor, grad_failed_step: Tensor | None):
        cov_diag, cov_off = cyclic_reduction_selected_inverse(ctx.factor)
        diag_shape, off_shape = ctx.shapes
        event_dims = cov_diag.dim() - grad_logdet.dim()
        grad = grad_logdet.reshape(grad_logdet.shape + (1,) * event_dims)
        grad_diag = (grad * cov_diag).sum_to_size(diag_shape)
        grad_off = (2 * grad * cov_off).sum_to_size(off_shape)
        return grad_diag, grad_off, None


def block_tridiag_logdet(
    diag_blocks: Tensor, offdiag_blocks: Tensor, *, blocks: str = "full"
) -> tuple[Tensor, Tensor]:
    """``log|J|`` by cyclic reduction, with the selected-inverse backward.

    :param torch.Tensor diag_blocks: ``(..., T, n, n)`` (``(..., T, n)`` with
        ``blocks="diagonal"``) diagonal blocks ``D_t``.
    :param torch.Tensor offdiag_blocks: ``(..., T-1, n, n)`` (``(..., T-1, n)``) sub-diagonal
        blocks ``B_t = J[t+1, t]``.
    :param str blocks: ``"full"`` or ``"diagonal"``.
    :return: ``(logdet, failed_step)``: ``(...,)`` log-determinants (differentiable) and the
        ``(...,)`` int64 ``failed_step`` of :class:`~pyro_dynvae.ops.cyclic_reduction.
        CyclicReductionFactor` (``-1`` where ``J`` is positive definite).
    """
    return _CyclicReductionLogdet.apply(diag_blocks, offdiag_blocks, blocks)

"""Solves with a block-tridiagonal SPD matrix whose backward is one more solve.

For ``J`` with diagonal blocks ``D_t`` and sub-diagonal blocks ``B_t = J[t+1, t]`` and
``x = J^{-1} h``, ``dx = J^{-1} (dh - dJ x)``. For a loss with incoming gradient ``g = dL/dx``
and the adjoint ``u = J^{-1} g`` (``J`` is symmetric), ``dL = u' dh - u' dJ x``, hence::

    dL/dh   = u,
    dL/dD_t = -(u_t x_t' + x_t u_t') / 2,
    dL/dB_t = -(u_{t+1} x_t' + x_{t+1} u_t')

(``B_t`` enters ``J`` at ``[t+1, t]`` and transposed at ``[t, t+1]``; the gradient with respect
to ``D_t`` is the symmetric one, as for :func:`torch.linalg.cholesky` and
:mod:`~pyro_dynvae.ops.logdet_autograd`: only symmetric perturbations of ``D_t`` are
meaningful, and the factorisations read only its lower triangle). With ``k`` right-hand sides the
outer products sum over the columns; with diagonal blocks the gradients are the diagonals of the
above. The backward therefore costs one solve with the factor that the forward used, instead of
replaying the factorisation (every level of cyclic reduction, or every time step of the
sequential Cholesky) and both substitutions in reverse; it needs neither the factor's autograd
graph nor memory beyond the factor itself and the solution ``x`` (both linear in ``T``).

The operator ``J^{-1}`` is passed in as a callable (for instance
:func:`pyro_dynvae.ops.dispatch.solve` bound to an already computed factor, see
:func:`pyro_dynvae.ops.dispatch.solve_with_adjoint`), so this adjoint serves either algorithm.
The backward is not itself differentiable (``once_differentiable``): second derivatives through
this path raise.

Reference: M. B. Giles, "An extended collection of matrix derivative results for forward and
reverse mode algorithmic differentiation", Oxford NA report 08/01 (2008) (the reverse-mode rule
``dL/dA = -A^{-T} g C'`` for ``C = A^{-1} B``), restricted here to the band of ``J``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from .block_tridiag import check_block_shapes

__all__ = ["block_tridiag_solve"]


def _block_gradients(adjoint: Tensor, solution: Tensor, blocks: str) -> tuple[Tensor, Tensor]:
    """``(-(u_t x_t' + x_t u_t') / 2, -(u_{t+1} x_t' + x_{t+1} u_t'))`` for columns
    ``(..., T, n, k)``; their diagonals with ``blocks="diagonal"``."""
    if blocks == "diagonal":
        grad_diag = -(adjoint * solution).sum(-1)
        cross = adjoint[..., 1:, :, :] * solution[..., :-1, :, :]
        cross = cross + solution[..., 1:, :, :] * adjoint[..., :-1, :, :]
        return grad_diag, -cross.sum(-1)
    outer = adjoint @ solution.mT
    grad_diag = -(outer + outer.mT) / 2
    cross = adjoint[..., 1:, :, :] @ solution[..., :-1, :, :].mT
    cross = cross + solution[..., 1:, :, :] @ adjoint[..., :-1, :, :].mT
    return grad_diag, -cross


class _BlockTridiagSolve(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx,
        inverse: Callable[[Tensor], Tensor],
        diag_blocks: Tensor,
        offdiag_blocks: Tensor,
        rhs: Tensor,
        blocks: str,
    ) -> Tensor:
        solution = inverse(rhs)
        ctx.inverse, ctx.blocks = inverse, blocks
        ctx.shapes = diag_blocks.shape, offdiag_blocks.shape, rhs.shape
        ctx.save_for_backward(solution)
        return solution

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_solution: Tensor):
        (solution,) = ctx.saved_tensors
        diag_shape, off_shape, rhs_shape = ctx.shapes
        adjoint = ctx.inverse(grad_solution)
        grad_diag = grad_off = None
        if ctx.needs_input_grad[1] or ctx.needs_input_grad[2]:
            grad_diag, grad_off = _block_gradients(adjoint, solution, ctx.blocks)
            grad_diag = grad_diag.sum_to_size(diag_shape) if ctx.needs_input_grad[1] else None
            grad_off = grad_off.sum_to_size(off_shape) if ctx.needs_input_grad[2] else None
        grad_rhs = adjoint.sum_to_size(rhs_shape) if ctx.needs_input_grad[3] else None
        return None, grad_diag, grad_off, grad_rhs, None


def block_tridiag_solve(
    inverse: Callable[[Tensor], Tensor],
    diag_blocks: Tensor,
    offdiag_blocks: Tensor,
    rhs: Tensor,
    *,
    blocks: str = "full",
) -> Tensor:
    """``x = J^{-1} rhs`` with the one-solve backward above.

    :param inverse: applies ``J^{-1}`` to ``(..., T, n, k)`` columns (batch dims broadcasting
        with ``J``'s), from a factor of the very ``J`` given by ``diag_blocks`` and
        ``offdiag_blocks``; it is called without autograd (in the forward on ``rhs``, in the
        backward on the incoming gradient), so gradients reach ``J`` only through the formula.
    :param torch.Tensor diag_blocks: ``(..., T, n, n)`` (``(..., T, n)`` with
        ``blocks="diagonal"``) symmetric diagonal blocks ``D_t``.
    :param torch.Tensor offdiag_blocks: ``(..., T-1, n, n)`` (``(..., T-1, n)``) sub-diagonal
        blocks ``B_t = J[t+1, t]``.
    :param torch.Tensor rhs: ``(..., T, n, k)``, ``k`` right-hand sides.
    :param str blocks: ``"full"`` or ``"diagonal"``.
    :return: ``(..., T, n, k)``, batch dims broadcast from ``rhs`` and ``J``.
    """
    num_steps, dim = check_block_shapes(diag_blocks, offdiag_blocks, blocks=blocks)
    if not isinstance(rhs, Tensor):
        raise TypeError(f"rhs must be a tensor, got {type(rhs).__name__}")
    if rhs.dim() < 3 or rhs.shape[-3:-1] != (num_steps, dim):
        raise ValueError(
            f"rhs must have shape (..., T, n, k) = (..., {num_steps}, {dim}, k), "
            f"got {tuple(rhs.shape)}"
        )
    return _BlockTridiagSolve.apply(inverse, diag_blocks, offdiag_blocks, rhs, blocks)

"""Random block-tridiagonal precisions for tests and benchmarks."""

from __future__ import annotations

import torch
from torch import Tensor


def random_block_tridiag(
    batch_shape: tuple[int, ...],
    num_steps: int,
    dim: int,
    *,
    blocks: str = "full",
    log10_scale_range: float = 0.0,
    dtype: torch.dtype = torch.float64,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """A random symmetric positive-definite block-tridiagonal precision.

    Blocks are random with diagonal blocks made block diagonally dominant,
    ``lambda_min(D_t) >= ||B_{t-1}||_2 + ||B_t||_2 + 1/2``, which makes ``J`` positive
    definite (a block Gershgorin argument) with a moderate condition number. With
    ``log10_scale_range = r > 0`` the matrix is congruence-scaled, ``J <- S J S`` with
    ``S = diag(s)`` and ``log10 s`` spread uniformly over ``[0, r]`` in a random order; the
    condition number then grows to about ``10^(2r)`` and the block structure is kept.

    :param tuple batch_shape: leading batch dims.
    :param int num_steps: ``T``.
    :param int dim: ``n``.
    :param str blocks: ``"full"`` (``(..., T, n, n)`` and ``(..., T-1, n, n)``) or
        ``"diagonal"`` (``(..., T, n)`` and ``(..., T-1, n)``).
    :returns: ``(diag_blocks, offdiag_blocks)``.
    """
    shape = tuple(batch_shape)
    options = {"dtype": dtype, "generator": generator}
    if blocks == "diagonal":
        offdiag = torch.randn(shape + (num_steps - 1, dim), **options)
        norms = offdiag.abs()
        diag = torch.randn(shape + (num_steps, dim), **options).abs()
    elif blocks == "full":
        offdiag = torch.randn(shape + (num_steps - 1, dim, dim), **options) / dim**0.5
        norms = torch.linalg.matrix_norm(offdiag, ord=2).unsqueeze(-1)
        root = torch.randn(shape + (num_steps, dim, dim), **options) / dim**0.5
        diag = root @ root.mT
    else:
        raise ValueError(f"blocks must be 'full' or 'diagonal', got {blocks!r}")
    pad = norms.new_zeros(shape + (1,) + norms.shape[-1:])
    shift = torch.cat([pad, norms], -2) + torch.cat([norms, pad], -2) + 0.5
    diag = diag + (
        shift if blocks == "diagonal" else torch.diag_embed(shift.expand(diag.shape[:-1]))
    )
    if log10_scale_range > 0:
        order = torch.randperm(num_steps * dim, generator=generator)
        scale = torch.logspace(0, log10_scale_range, num_steps * dim, dtype=dtype)[order]
        scale = scale.reshape(num_steps, dim)
        if blocks == "diagonal":
            diag = diag * scale**2
            offdiag = offdiag * scale[1:] * scale[:-1]
        else:
            diag = diag * scale[:, :, None] * scale[:, None, :]
            offdiag = offdiag * scale[1:, :, None] * scale[:-1, None, :]
    return diag, offdiag

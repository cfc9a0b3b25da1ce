r"""Cholesky factor, triangular solves and ``cholesky_inverse`` of batched ``2 x 2`` blocks in
closed form, and the LAPACK routines for every other size.

On CPU, PyTorch's batched ``cholesky_ex``, ``solve_triangular`` and ``cholesky_inverse`` call
LAPACK once per matrix of the batch, about 0.3-0.7 us each whatever the size, so the
thousands of ``2 x 2`` blocks of the per-latent latent-velocity chains (a training batch of
16 sequences x 16 latents x 9 transitions is 2304 blocks) cost a millisecond or more per call,
and autograd's backward calls them again. Written out, each is a handful of elementwise
operations over the whole batch, with elementwise backward passes. For
``A = [[a, b], [b, c]]`` and ``L = [[l_00, 0], [l_10, l_11]]``:

.. math::

    l_{00} = \sqrt{a}, \quad l_{10} = b / l_{00}, \quad l_{11} = \sqrt{c - l_{10}^2},

    L^{-1} = \begin{pmatrix} 1/l_{00} & 0 \\ -l_{10}/(l_{00} l_{11}) & 1/l_{11} \end{pmatrix},
    \qquad (L L')^{-1} = L^{-T} L^{-1},

and the solves are forward or back substitution over the two rows (left) or columns
(right). The results are those of the LAPACK routines to float rounding (tested against them
in float64, values and gradients). Other sizes go to ``torch.linalg`` unchanged.

Reference: G. H. Golub, C. F. Van Loan, *Matrix Computations*, 4th ed. (2013), sec. 3.1
(triangular systems) and 4.2 (the Cholesky factorisation).
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["cholesky_ex", "cholesky_inverse", "solve_triangular"]


def _is_2x2(matrix: Tensor) -> bool:
    return matrix.shape[-2:] == (2, 2)


def _entries(matrix: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``(m_00, m_01, m_10, m_11)`` of ``(..., 2, 2)``, each ``(...)`` (one ``unbind``, whose
    backward is one ``stack``)."""
    return matrix.flatten(-2).unbind(-1)


def _matrix(m00: Tensor, m01: Tensor, m10: Tensor, m11: Tensor) -> Tensor:
    return torch.stack(torch.broadcast_tensors(m00, m01, m10, m11), -1).unflatten(-1, (2, 2))


def cholesky_ex(matrix: Tensor) -> tuple[Tensor, Tensor]:
    """Lower Cholesky factor of SPD ``matrix`` ``(..., n, n)`` and ``info`` ``(...)``, as
    :func:`torch.linalg.cholesky_ex`: ``info`` is 0 where the factorisation succeeded, else the
    order of the first leading minor that is not positive (the factor is then not to be used).
    Reads the lower triangle only."""
    if not _is_2x2(matrix):
        return torch.linalg.cholesky_ex(matrix)
    a, _, b, c = _entries(matrix)
    l00 = a.sqrt()
    l10 = b / l00
    l11 = (c - l10 * l10).sqrt()
    # sqrt of a negative number is NaN, and NaN > 0 is False
    info = torch.where(l00 > 0, torch.where(l11 > 0, 0, 2), 1).to(torch.int32)
    return _matrix(l00, torch.zeros_like(l00), l10, l11), info


def solve_triangular(chol: Tensor, rhs: Tensor, *, upper: bool, left: bool = True) -> Tensor:
    """``chol^{-1} rhs`` (``left``) or ``rhs chol^{-1}``, as
    :func:`torch.linalg.solve_triangular` with ``upper`` saying which triangle ``chol`` holds
    (the other is not read). Batch dims broadcast."""
    if not _is_2x2(chol):
        return torch.linalg.solve_triangular(chol, rhs, upper=upper, left=left)
    d0, upper_off, lower_off, d1 = (entry.unsqueeze(-1) for entry in _entries(chol))
    off = upper_off if upper else lower_off
    dim = -2 if left else -1
    first, second = rhs.unbind(dim)
    # the unknown found first: row 0 of a lower system solved from the left (forward
    # substitution), row 1 of an upper one; from the right the roles swap
    if upper == left:
        y1 = second / d1
        y0 = (first - off * y1) / d0
    else:
        y0 = first / d0
        y1 = (second - off * y0) / d1
    return torch.stack(torch.broadcast_tensors(y0, y1), dim)


def cholesky_inverse(chol: Tensor) -> Tensor:
    """``(L L')^{-1}`` from the lower factor ``L`` ``(..., n, n)``, as
    :func:`torch.cholesky_inverse` (symmetric)."""
    if not _is_2x2(chol):
        return torch.cholesky_inverse(chol)
    l00, _, l10, l11 = _entries(chol)
    m00, m11 = l00.reciprocal(), l11.reciprocal()
    m10 = -l10 * m00 * m11
    corner = m10 * m11
    return _matrix(m00 * m00 + m10 * m10, corner, corner, m11 * m11)

"""Analytic KL divergence between two :class:`BlockTridiagMVN`."""

from __future__ import annotations

import torch
from torch import Tensor
from torch.distributions.kl import register_kl

from pyro_dynvae.distributions.block_tridiag_mvn import BlockTridiagMVN
from pyro_dynvae.ops import block_tridiag as ops


@register_kl(BlockTridiagMVN, BlockTridiagMVN)
def kl_block_tridiag_mvn(q: BlockTridiagMVN, p: BlockTridiagMVN) -> Tensor:
    r"""``KL(q || p)`` in ``O(T n^3)``, for any mix of full and diagonal block layouts:

    .. math::

        \mathrm{KL} = \tfrac12 \left[\operatorname{tr}(J_p \Sigma_q) + d' J_p d - Tn
        + \log|J_q| - \log|J_p|\right],\quad d = \mu_q - \mu_p,

    where only the tridiagonal band of ``Sigma_q`` is needed (selected inversion):
    ``tr(J_p Sigma_q) = sum_t tr(D^p_t Sigma^q_{tt}) + 2 sum_t tr(B^p_t Sigma^q_{t,t+1})``.
    Registered with :func:`torch.distributions.kl.register_kl`, so
    :class:`pyro.infer.TraceMeanField_ELBO` uses it.

    :returns: shape ``broadcast(q.batch_shape, p.batch_shape)``.
    """
    if q.event_shape != p.event_shape:
        raise ValueError(
            f"KL needs equal event shapes (T, n), got {tuple(q.event_shape)} and "
            f"{tuple(p.event_shape)}"
        )
    # q's factor is computed here first, so log|J_q| below reuses it (no second
    # factorisation); log|J_p| takes whichever route p's state allows (see BlockTridiagMVN).
    cov_diag, cov_offdiag = q._covariance_band
    if q.blocks == p.blocks == "full":
        trace = (p._diag * cov_diag).sum((-1, -2, -3)) + 2 * (p._offdiag * cov_offdiag).sum(
            (-1, -2, -3)
        )
    else:  # a diagonal precision or covariance band only meets the other's diagonals
        prec_diag, prec_offdiag = (p._algebra.diagonal(x) for x in (p._diag, p._offdiag))
        cov_diag, cov_offdiag = (q._algebra.diagonal(x) for x in (cov_diag, cov_offdiag))
        trace = (prec_diag * cov_diag).sum((-1, -2)) + 2 * (prec_offdiag * cov_offdiag).sum(
            (-1, -2)
        )
    mahalanobis = ops.quadratic_form(p._diag, p._offdiag, q.loc - p.loc, blocks=p.blocks)
    num_steps, dim = q.event_shape
    kl = 0.5 * (
        trace + mahalanobis - num_steps * dim + q._logdet_precision - p._logdet_precision
    )
    return kl.expand(torch.broadcast_shapes(q.batch_shape, p.batch_shape))

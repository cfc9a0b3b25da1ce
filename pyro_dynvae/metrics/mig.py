"""Mutual Information Gap (MIG).

Reference: Chen, Li, Grosse & Duvenaud (2018), "Isolating Sources of Disentanglement in
Variational Autoencoders", NeurIPS; discrete estimator as in disentanglement_lib
(Locatello et al. 2019).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .utils import (
    check_codes,
    check_factors,
    discrete_entropy,
    discrete_mutual_info,
    histogram_discretize,
    with_versions,
)


def mig(codes: Any, factors: Any, num_bins: int = 20) -> dict[str, Any]:
    r"""Mutual Information Gap of a representation.

    Each code column is discretised into ``num_bins`` equal-width bins
    (:func:`~pyro_dynvae.metrics.utils.histogram_discretize`), the plug-in mutual
    information matrix :math:`I_{ij} = I(c_i; v_j)` is estimated with
    ``sklearn.metrics.mutual_info_score`` and

    .. math::

        \mathrm{MIG} = \frac{1}{K} \sum_{j=1}^{K}
            \frac{I_{(1)j} - I_{(2)j}}{H(v_j)},

    where :math:`I_{(1)j} \ge I_{(2)j}` are the largest and second largest entries of
    column :math:`j` and :math:`H(v_j)` is the plug-in entropy of factor :math:`j`.
    disentanglement_lib's default is ``num_bins=20`` on 10,000 points.

    :param codes: real array of shape ``(N, D)`` with ``D >= 2``.
    :param factors: integer-valued array of shape ``(N, K)``; every factor must take at
        least two values (its entropy is the normaliser).
    :param int num_bins: bins of the histogram discretiser.
    :returns: ``{"mig": float, "versions": {...}}``.
    """
    codes = check_codes(codes)
    factors = check_factors(factors, codes.shape[0], discrete=True)
    if codes.shape[1] < 2:
        raise ValueError(f"codes must have at least 2 columns for a gap, got {codes.shape[1]}")
    entropy = discrete_entropy(factors)
    if np.any(entropy == 0.0):
        raise ValueError("every factor must take at least two values; constant factor "
                         f"columns: {np.flatnonzero(entropy == 0.0).tolist()}")
    mutual_info = discrete_mutual_info(histogram_discretize(codes, num_bins), factors)
    top_two = -np.sort(-mutual_info, axis=0)[:2]
    return with_versions({"mig": np.mean((top_two[0] - top_two[1]) / entropy)})

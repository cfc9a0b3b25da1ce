"""Mean Correlation Coefficient (MCC) with optimal one-to-one matching.

References: Hyvärinen & Morioka (2016), "Unsupervised Feature Extraction by Time-Contrastive
Learning and Nonlinear ICA", NeurIPS; Klindt et al. (2021), "Towards Nonlinear Disentanglement
in Natural Data with Temporal Sparse Coding", ICLR (Spearman correlations, Hungarian matching).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.stats import rankdata

from .utils import check_codes, check_factors, with_versions

CORRELATION_METHODS = ("spearman", "pearson")


def abs_correlation_matrix(codes: np.ndarray, factors: np.ndarray,
                           method: str = "spearman") -> np.ndarray:
    r"""Absolute correlations :math:`|\rho(c_i, v_j)|` between code and factor columns.

    ``"pearson"`` is the sample correlation coefficient; ``"spearman"`` is the Pearson
    correlation of the (average-tie) ranks. A constant column has correlation 0 with
    everything.

    :param numpy.ndarray codes: real array ``(N, D)``.
    :param numpy.ndarray factors: real array ``(N, K)``.
    :param str method: ``"spearman"`` or ``"pearson"``.
    :returns: array ``(D, K)`` with entries in ``[0, 1]``.
    """
    if method not in CORRELATION_METHODS:
        raise ValueError(f"method must be one of {CORRELATION_METHODS}, got {method!r}")
    if method == "spearman":
        codes = rankdata(codes, axis=0)
        factors = rankdata(factors, axis=0)
    codes = codes - codes.mean(axis=0)
    factors = factors - factors.mean(axis=0)
    code_norms = np.linalg.norm(codes, axis=0)
    factor_norms = np.linalg.norm(factors, axis=0)
    denominator = np.outer(code_norms, factor_norms)
    covariance = np.abs(codes.T @ factors)
    safe = denominator > 0
    correlation = np.zeros_like(covariance)
    correlation[safe] = covariance[safe] / denominator[safe]
    return np.minimum(correlation, 1.0)


def mcc(codes: Any, factors: Any, method: str = "spearman") -> dict[str, Any]:
    r"""Mean correlation coefficient after matching codes to factors one-to-one.

    With :math:`R_{ij} = |\rho(c_i, v_j)|` (:func:`abs_correlation_matrix`), the matching
    :math:`\pi` maximising :math:`\sum_j R_{\pi(j) j}` over injective maps between the
    ``min(D, K)`` matched pairs is found with the Hungarian algorithm
    (``scipy.optimize.linear_sum_assignment``) and

    .. math:: \mathrm{MCC} = \frac{1}{\min(D, K)} \sum_{j} R_{\pi(j) j}.

    It is invariant to permutations, sign flips and (for Spearman) any strictly monotone
    transformation of individual codes.

    :param codes: real array ``(N, D)``.
    :param factors: real array ``(N, K)`` (continuous factors are fine).
    :param str method: ``"spearman"`` (default, Klindt et al. 2021) or ``"pearson"``.
    :returns: ``{"mcc": float, "versions": {...}}``.
    """
    codes = check_codes(codes)
    factors = check_factors(factors, codes.shape[0], discrete=False)
    correlation = abs_correlation_matrix(codes, factors, method)
    rows, cols = linear_sum_assignment(correlation, maximize=True)
    return with_versions({"mcc": correlation[rows, cols].mean()})

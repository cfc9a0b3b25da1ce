"""Mean Correlation Coefficient (MCC) with optimal one-to-one matching, with a correlation
suited to each factor's type.

References: Hyvärinen & Morioka (2016), "Unsupervised Feature Extraction by Time-Contrastive
Learning and Nonlinear ICA", NeurIPS; Klindt et al. (2021), "Towards Nonlinear Disentanglement
in Natural Data with Temporal Sparse Coding", ICLR (Spearman correlations, Hungarian matching);
for categorical factors the correlation ratio (Pearson 1905; Fisher 1925, "Statistical Methods
for Research Workers"), on ranks the Kruskal & Wallis (1952) effect size; for periodic factors
the circular-linear correlation (Mardia 1976, "Linear-circular correlation coefficients and
rhythmometry", Biometrika 63; Johnson & Wehrly 1977, JASA 72).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.stats import rankdata

from .utils import check_codes, check_factor_types, check_factors, with_versions

CORRELATION_METHODS = ("spearman", "pearson")


def _check_method(method: str) -> None:
    if method not in CORRELATION_METHODS:
        raise ValueError(f"method must be one of {CORRELATION_METHODS}, got {method!r}")


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
    _check_method(method)
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


def factor_embedding(values: np.ndarray, kind: str, period: float | None,
                     rank: bool = False) -> np.ndarray:
    r"""The columns a factor's values are compared with, shape ``(N, m)``.

    - continuous: the value itself (its ranks if ``rank``), ``m = 1``;
    - categorical: the one-hot indicators of its categories, ``m`` = number of categories;
    - periodic with period :math:`P`: :math:`(\cos\phi, \sin\phi)` with
      :math:`\phi = 2\pi v / P`; with ``rank``, :math:`\phi` are Mardia's uniform scores
      :math:`2\pi \operatorname{rank}(v) / N` (circular ranks), ``m = 2``.

    :param numpy.ndarray values: one factor's values ``(N,)``.
    :param str kind: ``"categorical"``, ``"periodic"`` or ``"continuous"``.
    :param float period: the period of a periodic factor.
    :param bool rank: replace values by ranks where the kind has an order.
    """
    if kind == "categorical":
        _, inverse = np.unique(values, return_inverse=True)
        return np.eye(inverse.max() + 1)[inverse]
    if kind == "periodic":
        phase = (2 * np.pi * rankdata(np.mod(values, period)) / len(values) if rank
                 else 2 * np.pi * values / period)
        return np.stack([np.cos(phase), np.sin(phase)], axis=1)
    return (rankdata(values) if rank else values)[:, None].astype(np.float64)


def multiple_correlation(codes: np.ndarray, embedding: np.ndarray) -> np.ndarray:
    r"""Multiple correlation of every code column with an embedding ``(N, m)``:
    :math:`R_i = \sqrt{1 - \mathrm{SS}_\mathrm{res} / \mathrm{SS}_\mathrm{tot}}` of the least
    squares regression of :math:`c_i` on the embedding and an intercept (0 for a constant
    code). With one column this is :math:`|\rho|`; with one-hot indicators it is the
    correlation ratio :math:`\eta`; with :math:`(\cos\phi, \sin\phi)` the circular-linear
    correlation.

    :returns: array ``(D,)`` in ``[0, 1]``.
    """
    centred = codes - codes.mean(axis=0)
    design = embedding - embedding.mean(axis=0)
    coefficients = np.linalg.lstsq(design, centred, rcond=None)[0]
    explained = np.sum((design @ coefficients) ** 2, axis=0)
    total = np.sum(centred**2, axis=0)
    correlation = np.zeros(codes.shape[1])
    safe = total > 1e-12 * max(1.0, float(total.max()))
    correlation[safe] = np.sqrt(np.clip(explained[safe] / total[safe], 0.0, 1.0))
    return correlation


def typed_correlation_matrix(codes: np.ndarray, factors: np.ndarray,
                             factor_types: Any, method: str = "spearman") -> np.ndarray:
    r"""Absolute correlations between codes and factors, each suited to the factor's type.

    :math:`R_{ij}` is the :func:`multiple_correlation` of code :math:`c_i` with the
    :func:`factor_embedding` of factor :math:`v_j`:

    - continuous: :math:`|\rho(c_i, v_j)|`, Spearman's (``"spearman"``) or Pearson's;
    - categorical: the correlation ratio :math:`\eta = \sqrt{\sum_c n_c (\bar c_c - \bar c)^2 /
      \sum_n (c_n - \bar c)^2}`, the share of the code's spread explained by the class
      (Fisher 1925); with ``"spearman"`` computed on the code's ranks, where :math:`\eta^2 =
      H / (N - 1)` is the Kruskal-Wallis effect size. For two classes it equals
      :math:`|\rho|`;
    - periodic: the circular-linear correlation
      :math:`R^2 = (r_{c\cos}^2 + r_{c\sin}^2 - 2 r_{c\cos} r_{c\sin} r_{\cos\sin}) /
      (1 - r_{\cos\sin}^2)` (Mardia 1976; Johnson & Wehrly 1977), how well
      :math:`c_i \approx a + b \cos(2\pi v_j / P - \phi_0)`; with ``"spearman"`` Mardia's rank
      version (code ranks against the angles' uniform scores). A scalar code cannot follow a
      circle one-to-one: the angle itself (a sawtooth) reaches :math:`\sqrt{6} / \pi \approx
      0.78`; a code :math:`\cos(\phi - \phi_0)` reaches 1 (Pearson) or
      :math:`\sqrt{96} / \pi^2 \approx 0.993` (Spearman: its ranks trace a triangle wave).

    Each entry lies in ``[0, 1]`` and is 0 for a constant code. Spearman's versions are
    invariant to strictly monotone transformations of each code. Like :math:`\eta`, the
    periodic correlation asks how much of the code the factor explains: a code that singles
    out one class of a categorical factor also reaches 1, so read MCC beside the probes
    (:mod:`pyro_dynvae.assessment.probes`), which ask how much of the factor the codes hold.

    :param numpy.ndarray codes: real array ``(N, D)``.
    :param numpy.ndarray factors: real array ``(N, K)``.
    :param factor_types: one type per factor (see
        :func:`~pyro_dynvae.metrics.utils.check_factor_types`).
    :param str method: ``"spearman"`` (rank versions) or ``"pearson"``.
    :returns: array ``(D, K)``.
    """
    _check_method(method)
    types = check_factor_types(factor_types, factors.shape[1])
    rank = method == "spearman"
    codes = rankdata(codes, axis=0) if rank else codes
    return np.stack([
        multiple_correlation(codes, factor_embedding(factors[:, j], kind, period, rank))
        for j, (kind, period) in enumerate(types)
    ], axis=1)


def mcc(codes: Any, factors: Any, method: str = "spearman",
        factor_types: Any = None) -> dict[str, Any]:
    r"""Mean correlation coefficient after matching codes to factors one-to-one.

    With :math:`R_{ij}` the absolute correlation of code :math:`i` and factor :math:`j`, the
    matching :math:`\pi` maximising :math:`\sum_j R_{\pi(j) j}` over injective maps between the
    ``min(D, K)`` matched pairs is found with the Hungarian algorithm
    (``scipy.optimize.linear_sum_assignment``) and

    .. math:: \mathrm{MCC} = \frac{1}{\min(D, K)} \sum_{j} R_{\pi(j) j}.

    Without ``factor_types`` every factor is treated as continuous and :math:`R` is
    :func:`abs_correlation_matrix` (Klindt et al. 2021); with them, :math:`R` is
    :func:`typed_correlation_matrix`, which gives classes and angles a correlation that suits
    them. It is invariant to permutations, sign flips and (for Spearman) any strictly monotone
    transformation of individual codes.

    :param codes: real array ``(N, D)``.
    :param factors: real array ``(N, K)`` (continuous factors are fine).
    :param str method: ``"spearman"`` (default, Klindt et al. 2021) or ``"pearson"``.
    :param factor_types: optional, one type per factor: ``"categorical"``, ``"continuous"``
        or ``("periodic", period)`` (the datasets' ``factor_types``).
    :returns: ``{"mcc": float, "versions": {...}}``.
    """
    codes = check_codes(codes)
    factors = check_factors(factors, codes.shape[0], discrete=False)
    if factor_types is None:
        correlation = abs_correlation_matrix(codes, factors, method)
    else:
        correlation = typed_correlation_matrix(codes, factors, factor_types, method)
    rows, cols = linear_sum_assignment(correlation, maximize=True)
    return with_versions({"mcc": correlation[rows, cols].mean()})

"""Diagnostics of learned latent dynamics: per-latent eigenvalue distributions and their
bimodality, and the overlap between the latents carrying an object and those carrying the
background (forecast errors and their baselines: :mod:`.forecast`).

A model with per-latent linear dynamics ``z_{t+1, i} = lambda_{t, i} z_{t, i} + w_{t, i}``
should place static properties in latents with eigenvalues at 1 and moving ones in latents
whose eigenvalues move away from 1, so the distribution of the per-latent deviation
``mean |lambda - 1|`` should be bimodal (static vs dynamic latents).

References: SAS Institute (1990), SAS/STAT User's Guide (Sarle's bimodality coefficient);
Pfister et al. (2013), "Good things peak in pairs: a note on the bimodality coefficient",
Frontiers in Psychology; Otsu (1979), "A Threshold Selection Method from Gray-Level
Histograms", IEEE Trans. SMC; Klindt et al. (2021), ICLR (correlation matching of latents and
factors).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import scipy.stats

from .mcc import CORRELATION_METHODS, abs_correlation_matrix
from .utils import (
    check_codes,
    check_factors,
    discrete_entropy,
    discrete_mutual_info,
    histogram_discretize,
    with_versions,
)

#: Sarle's coefficient of a uniform distribution; larger values suggest bimodality.
BIMODALITY_THRESHOLD = 5.0 / 9.0

ASSOCIATION_METHODS = CORRELATION_METHODS + ("mutual_info",)


def check_eigenvalues(eigenvalues: Any) -> np.ndarray:
    """Validate eigenvalues of shape ``(N, T-1, n)`` (sequences or samples, transitions,
    latents); real or complex, finite."""
    array = np.asarray(eigenvalues)
    if not (np.issubdtype(array.dtype, np.number) and not np.issubdtype(array.dtype, np.bool_)):
        raise TypeError(f"eigenvalues must be a numeric array, got dtype {array.dtype}")
    if array.ndim != 3 or 0 in array.shape:
        raise ValueError(f"eigenvalues must have shape (N, T-1, n), got {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError("eigenvalues must be finite (found NaN or inf)")
    return array if np.iscomplexobj(array) else array.astype(np.float64)


def eigenvalue_statistics(eigenvalues: Any,
                          quantiles: Sequence[float] = (0.05, 0.5, 0.95)) -> dict[str, Any]:
    r"""Per-latent summaries of the eigenvalue distribution, pooled over sequences and
    time steps.

    :param eigenvalues: array ``(N, T-1, n)``. Complex eigenvalues are summarised by their
        modulus :math:`|\lambda|`, except for the deviation :math:`|\lambda - 1|`, which is
        the distance from 1 in the complex plane.
    :param quantiles: probabilities of the reported quantiles.
    :returns: dict of arrays: ``"mean"``, ``"std"`` (``(n,)``), ``"quantiles"``
        (``(len(quantiles), n)``), ``"quantile_levels"`` and ``"mean_abs_deviation"``
        (``(n,)``, :math:`\frac{1}{N(T-1)}\sum_{s,t} |\lambda_{s,t,i} - 1|`).
    """
    eigenvalues = check_eigenvalues(eigenvalues)
    levels = np.asarray(quantiles, dtype=np.float64)
    if levels.ndim != 1 or np.any((levels < 0) | (levels > 1)):
        raise ValueError(f"quantiles must be a sequence of probabilities, got {quantiles}")
    pooled = eigenvalues.reshape(-1, eigenvalues.shape[-1])
    magnitude = np.abs(pooled) if np.iscomplexobj(pooled) else pooled
    return {
        "mean": magnitude.mean(axis=0),
        "std": magnitude.std(axis=0),
        "quantiles": np.quantile(magnitude, levels, axis=0),
        "quantile_levels": levels,
        "mean_abs_deviation": np.abs(pooled - 1.0).mean(axis=0),
    }


def eigenvalue_histograms(eigenvalues: Any, bins: int = 40,
                          value_range: tuple[float, float] | None = None
                          ) -> tuple[np.ndarray, np.ndarray]:
    """Histogram of each latent's eigenvalues (modulus if complex) on shared bin edges.

    :param eigenvalues: array ``(N, T-1, n)``.
    :param int bins: number of bins.
    :param value_range: ``(low, high)`` of the bins; default: the range of all values.
    :returns: ``(counts (n, bins), edges (bins + 1,))``.
    """
    eigenvalues = check_eigenvalues(eigenvalues)
    pooled = eigenvalues.reshape(-1, eigenvalues.shape[-1])
    magnitude = np.abs(pooled) if np.iscomplexobj(pooled) else pooled
    edges = np.histogram_bin_edges(magnitude, bins=bins, range=value_range)
    counts = np.stack([np.histogram(column, bins=edges)[0] for column in magnitude.T])
    return counts, edges


def bimodality_coefficient(values: Any, bias_corrected: bool = True) -> float:
    r"""Sarle's bimodality coefficient of a 1-D sample,

    .. math:: b = \frac{g^2 + 1}{\kappa + \frac{3 (n-1)^2}{(n-2)(n-3)}},

    with :math:`g` the bias-corrected sample skewness and :math:`\kappa` the bias-corrected
    excess kurtosis (the SAS definition). With ``bias_corrected=False`` it is the
    coefficient of the empirical distribution itself, :math:`b = (g_1^2 + 1)/(g_2 + 3)`
    with plug-in moments; it equals 1 for any sample taking exactly two values. Both tend
    to :math:`(\gamma^2 + 1)/(\kappa + 3)`: 1/3 for a normal, 5/9 for a uniform, 1 for a
    two-point distribution. Values above 5/9 (:data:`BIMODALITY_THRESHOLD`) suggest
    bimodality (Pfister et al. 2013 discuss its limits: heavy skew also raises it).
    Returns NaN for a constant sample.

    :param values: 1-D array with at least 4 entries.
    :param bool bias_corrected: use the small-sample corrected moments (default, SAS).
    """
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 1 or values.size < 4:
        raise ValueError(f"values must be a 1-D array of at least 4 entries, got {values.shape}")
    if np.ptp(values) == 0:
        return float("nan")
    n = values.size
    skewness = scipy.stats.skew(values, bias=not bias_corrected)
    excess_kurtosis = scipy.stats.kurtosis(values, fisher=True, bias=not bias_corrected)
    normal_kurtosis = 3 * (n - 1) ** 2 / ((n - 2) * (n - 3)) if bias_corrected else 3.0
    return float((skewness**2 + 1) / (excess_kurtosis + normal_kurtosis))


def otsu_split(values: Any) -> dict[str, Any]:
    r"""Best two-group split of a 1-D sample (Otsu 1979).

    Over all thresholds between consecutive sorted values, pick the one maximising the
    between-group variance :math:`\sigma_B^2 = w_0 w_1 (\mu_0 - \mu_1)^2`, and report the
    separation :math:`\eta = \sigma_B^2 / \sigma^2 \in [0, 1]` (1 for two point masses, 3/4
    for a uniform, :math:`2/\pi \approx 0.64` for a normal).

    :param values: 1-D array with at least 2 distinct entries.
    :returns: ``{"threshold": float, "separation": float, "low": bool mask}`` where the
        threshold is the midpoint between the groups and ``low`` marks the lower group.
    """
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 1 or values.size < 2:
        raise ValueError(f"values must be a 1-D array of at least 2 entries, got {values.shape}")
    if np.ptp(values) == 0:
        raise ValueError("values must not all be equal")
    ordered = np.sort(values)
    n = ordered.size
    sizes = np.arange(1, n)
    low_means = np.cumsum(ordered)[:-1] / sizes
    high_means = (ordered.sum() - np.cumsum(ordered)[:-1]) / (n - sizes)
    between = sizes * (n - sizes) / n**2 * (low_means - high_means) ** 2
    between[ordered[1:] == ordered[:-1]] = -1.0  # cannot split between equal values
    best = int(np.argmax(between))
    threshold = 0.5 * (ordered[best] + ordered[best + 1])
    return {"threshold": float(threshold), "separation": float(between[best] / values.var()),
            "low": values < threshold}


def eigenvalue_bimodality(eigenvalues: Any) -> dict[str, Any]:
    r"""Are the latents split into static (eigenvalues at 1) and dynamic ones?

    Summarises each latent by :math:`s_i = \operatorname{mean}_{s,t} |\lambda_{s,t,i} - 1|`
    and reports, across the ``n`` latents, Sarle's :func:`bimodality_coefficient` of
    :math:`s` and the :func:`otsu_split` of :math:`s` into a static (low) and a dynamic
    (high) group. The coefficient describes the empirical distribution of the ``n``
    latents, so it uses plug-in moments (``bias_corrected=False``): with the SAS
    small-sample correction two perfectly separated groups of 4 latents would score only
    0.48, below the 5/9 threshold. With few latents the coefficient is coarse; the Otsu
    separation and the groups are the more direct read-out.

    :param eigenvalues: array ``(N, T-1, n)`` with ``n >= 4``.
    :returns: dict with ``"mean_abs_deviation"`` (``(n,)``), ``"bimodality_coefficient"``,
        ``"bimodal"`` (coefficient above 5/9), ``"separation"``, ``"threshold"``,
        ``"static_latents"`` and ``"dynamic_latents"`` (index arrays), and ``"versions"``.
    """
    deviation = eigenvalue_statistics(eigenvalues)["mean_abs_deviation"]
    if deviation.size < 4:
        raise ValueError("need at least 4 latents for a bimodality statistic, "
                         f"got {deviation.size}")
    coefficient = bimodality_coefficient(deviation, bias_corrected=False)
    result = {"mean_abs_deviation": deviation, "bimodality_coefficient": coefficient,
              "bimodal": bool(coefficient > BIMODALITY_THRESHOLD)}
    if np.ptp(deviation) == 0:
        result.update(separation=0.0, threshold=float(deviation[0]),
                      static_latents=np.arange(deviation.size), dynamic_latents=np.arange(0))
        return with_versions(result)
    split = otsu_split(deviation)
    result.update(separation=split["separation"], threshold=split["threshold"],
                  static_latents=np.flatnonzero(split["low"]),
                  dynamic_latents=np.flatnonzero(~split["low"]))
    return with_versions(result)


def _factor_indices(indices: Any, num_factors: int, name: str) -> np.ndarray:
    array = np.asarray(indices)
    if array.dtype == np.bool_:
        if array.shape != (num_factors,):
            raise ValueError(f"{name} as a mask must have shape ({num_factors},), "
                             f"got {array.shape}")
        array = np.flatnonzero(array)
    if array.ndim != 1 or array.size == 0 or not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"{name} must be a non-empty sequence of factor indices or a mask")
    if np.any((array < 0) | (array >= num_factors)):
        raise ValueError(f"{name} must index the {num_factors} factor columns, got {array}")
    return array


def association_matrix(codes: np.ndarray, factors: np.ndarray, method: str = "spearman",
                       num_bins: int = 20) -> np.ndarray:
    r"""Association :math:`A_{ij} \in [0, 1]` between latent :math:`i` and factor :math:`j`:
    absolute Spearman or Pearson correlation, or (``"mutual_info"``) the mutual information
    of the histogram-discretised code and factor divided by the factor's entropy."""
    if method not in ASSOCIATION_METHODS:
        raise ValueError(f"method must be one of {ASSOCIATION_METHODS}, got {method!r}")
    if method != "mutual_info":
        return abs_correlation_matrix(codes, factors, method)
    discrete_factors = histogram_discretize(factors, num_bins)
    entropy = discrete_entropy(discrete_factors)
    mutual_info = discrete_mutual_info(histogram_discretize(codes, num_bins), discrete_factors)
    return np.divide(mutual_info, entropy, out=np.zeros_like(mutual_info), where=entropy > 0)


def object_background_overlap(codes: Any, factors: Any, object_factors: Any,
                              background_factors: Any, *, method: str = "spearman",
                              min_association: float = 0.2) -> dict[str, Any]:
    r"""How much the latents carrying the object and those carrying the background overlap.

    With the association matrix :math:`A` (:func:`association_matrix`, ``(n, K)``), latent
    :math:`i` carries the object with strength :math:`a_i = \max_{j \in O} A_{ij}` and the
    background with :math:`b_i = \max_{j \in B} A_{ij}`. Normalising to distributions over
    latents, :math:`p = a / \sum a` and :math:`q = b / \sum b`, the overlap is the histogram
    intersection

    .. math:: \mathrm{overlap} = \sum_i \min(p_i, q_i) \in [0, 1],

    0 when object and background live in disjoint latents and 1 when they are spread
    identically over the latents. (For independent Gaussian sources with latents
    ``[o, o + g, g]`` and Pearson correlations it is :math:`\sqrt 2 - 1`.) Estimated
    associations of unrelated variables are of order :math:`1/\sqrt N`, so disjoint sets
    score about :math:`n/\sqrt N` rather than exactly 0. NaN if either group has zero
    association with every latent.

    :param codes: array ``(..., n)`` of latents, e.g. posterior means per frame.
    :param factors: array ``(..., K)`` of ground-truth factors with the same leading shape.
    :param object_factors: indices (or a boolean mask) of the object's factor columns.
    :param background_factors: indices (or mask) of the background's factor columns,
        disjoint from ``object_factors``.
    :param str method: ``"spearman"`` (default), ``"pearson"`` or ``"mutual_info"``.
    :param float min_association: a latent belongs to the object (background) set if
        :math:`a_i` (:math:`b_i`) reaches this value.
    :returns: dict with ``"overlap"``, ``"object_association"`` :math:`a` and
        ``"background_association"`` :math:`b` (``(n,)``), and index arrays
        ``"object_latents"``, ``"background_latents"``, ``"shared_latents"``, and
        ``"versions"``.
    """
    codes_array, factors_array = np.asarray(codes), np.asarray(factors)
    if codes_array.ndim < 2 or codes_array.shape[:-1] != factors_array.shape[:-1]:
        raise ValueError("codes (..., n) and factors (..., K) must share their leading shape, "
                         f"got {codes_array.shape} and {factors_array.shape}")
    codes_array = check_codes(codes_array.reshape(-1, codes_array.shape[-1]))
    factors_array = check_factors(factors_array.reshape(-1, factors_array.shape[-1]),
                                  codes_array.shape[0], discrete=False)
    num_factors = factors_array.shape[1]
    object_index = _factor_indices(object_factors, num_factors, "object_factors")
    background_index = _factor_indices(background_factors, num_factors, "background_factors")
    if np.intersect1d(object_index, background_index).size:
        raise ValueError("object_factors and background_factors must be disjoint")
    association = association_matrix(codes_array, factors_array, method)
    object_strength = association[:, object_index].max(axis=1)
    background_strength = association[:, background_index].max(axis=1)
    if object_strength.sum() == 0 or background_strength.sum() == 0:
        overlap = float("nan")
    else:
        overlap = float(np.minimum(object_strength / object_strength.sum(),
                                   background_strength / background_strength.sum()).sum())
    object_latents = np.flatnonzero(object_strength >= min_association)
    background_latents = np.flatnonzero(background_strength >= min_association)
    return with_versions({
        "overlap": overlap,
        "object_association": object_strength,
        "background_association": background_strength,
        "object_latents": object_latents,
        "background_latents": background_latents,
        "shared_latents": np.intersect1d(object_latents, background_latents),
    })

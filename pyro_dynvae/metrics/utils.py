"""Shared pieces of the disentanglement metrics: input checks, the histogram discretiser,
discrete mutual information, train/test splits and the library-version record.

Conventions (all metrics in :mod:`pyro_dynvae.metrics`):

- ``codes`` is a real array of shape ``(N, D)`` (one row per observation, one column per
  latent dimension); ``factors`` is an array of shape ``(N, K)`` holding the ground-truth
  factors of the same observations. Metrics that treat factors as class labels (MIG, DCI,
  SAP with ``continuous=False``, Modularity/Explicitness) require integer-valued factors;
  use the dataset's ``discretize`` to obtain them.
- Every metric returns a ``dict`` of Python floats (plus a few ints) together with the key
  ``"versions"``: the numpy / scipy / scikit-learn versions that produced the score, since
  scores computed with different library versions are not guaranteed to be comparable.

Reference: Locatello et al. (2019), "Challenging Common Assumptions in the Unsupervised
Learning of Disentangled Representations", ICML, and its library
google-research/disentanglement_lib, whose definitions and defaults these metrics follow.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy
import sklearn
from sklearn.metrics import mutual_info_score

from pyro_dynvae.validation import as_generator, check_positive_int

#: disentanglement_lib draws 10,000 training and 5,000 test points: a 1/3 test share.
DEFAULT_TEST_FRACTION = 1.0 / 3.0

#: the kinds of factor a metric can be told about (see :func:`check_factor_types`)
FACTOR_KINDS = ("categorical", "periodic", "continuous")


def library_versions() -> dict[str, str]:
    """The versions of the numerical libraries a score depends on."""
    return {
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "scikit-learn": sklearn.__version__,
    }


def with_versions(scores: dict[str, Any]) -> dict[str, Any]:
    """Return ``scores`` with every numpy scalar turned into a Python number and the
    library versions recorded under ``"versions"``."""
    result = {key: value.item() if isinstance(value, np.generic) else value
              for key, value in scores.items()}
    result["versions"] = library_versions()
    return result


def check_codes(codes: Any, name: str = "codes") -> np.ndarray:
    """Validate a real ``(N, D)`` array of codes and return it as float64."""
    try:
        array = np.asarray(codes, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise TypeError(f"{name} must be a real array of shape (N, D), got {type(codes)}") \
            from error
    if array.ndim != 2 or array.shape[0] < 2 or array.shape[1] < 1:
        raise ValueError(f"{name} must have shape (N, D) with N >= 2 and D >= 1, "
                         f"got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} must be finite (found NaN or inf)")
    return array


def check_factors(factors: Any, num_points: int, *, discrete: bool,
                  name: str = "factors") -> np.ndarray:
    """Validate an ``(N, K)`` array of factors with ``N == num_points``.

    :param bool discrete: if true the factors must be integer valued (class labels) and
        are returned as int64; otherwise they are returned as float64.
    """
    array = check_codes(factors, name)
    if array.shape[0] != num_points:
        raise ValueError(f"{name} must have as many rows as the codes ({num_points}), "
                         f"got shape {array.shape}")
    if discrete:
        if not np.array_equal(array, np.round(array)):
            raise ValueError(f"{name} must be integer valued (discrete class labels); "
                             "discretise continuous factors first, e.g. with the "
                             "dataset's discretize()")
        return array.astype(np.int64)
    return array


def histogram_discretize(codes: np.ndarray, num_bins: int = 20) -> np.ndarray:
    """Discretise each column of ``codes`` into ``num_bins`` equal-width bins spanning its
    own range (disentanglement_lib's ``histogram_discretizer``).

    Column ``j`` maps value ``x`` to the index ``b`` with ``e_{b-1} <= x < e_b`` among the
    left bin edges ``e_0 < ... < e_{num_bins-1}`` of ``numpy.histogram(codes[:, j],
    num_bins)``, so labels run from 1 to ``num_bins``.

    :param numpy.ndarray codes: real array of shape ``(N, D)``.
    :param int num_bins: number of bins per column.
    :returns: int64 array of shape ``(N, D)``.
    """
    codes = check_codes(codes)
    num_bins = check_positive_int(num_bins, "num_bins")
    discretized = np.empty(codes.shape, dtype=np.int64)
    for j in range(codes.shape[1]):
        left_edges = np.histogram(codes[:, j], num_bins)[1][:-1]
        discretized[:, j] = np.digitize(codes[:, j], left_edges)
    return discretized


def discrete_mutual_info(discrete_codes: np.ndarray, factors: np.ndarray) -> np.ndarray:
    """Plug-in mutual information (nats) between every discrete code and every factor.

    :param numpy.ndarray discrete_codes: integer array ``(N, D)``.
    :param numpy.ndarray factors: integer array ``(N, K)``.
    :returns: array ``(D, K)`` with entry ``[i, j] = I(code_i; factor_j)``.
    """
    num_codes, num_factors = discrete_codes.shape[1], factors.shape[1]
    mutual_info = np.empty((num_codes, num_factors))
    for i in range(num_codes):
        for j in range(num_factors):
            mutual_info[i, j] = mutual_info_score(factors[:, j], discrete_codes[:, i])
    return mutual_info


def discrete_entropy(factors: np.ndarray) -> np.ndarray:
    """Plug-in entropy (nats) of every column of an integer ``(N, K)`` array,
    ``H(v) = I(v; v)``."""
    return np.array([mutual_info_score(column, column) for column in factors.T])


def split_train_test(codes: np.ndarray, factors: np.ndarray, test_codes: Any,
                     test_factors: Any, test_fraction: float, random_state: Any, *,
                     discrete: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Return ``(codes_train, factors_train, codes_test, factors_test)``.

    If ``test_codes`` and ``test_factors`` are given they are the test set; otherwise a
    random ``test_fraction`` share of the rows (at least one) is held out.
    """
    if (test_codes is None) != (test_factors is None):
        raise ValueError("test_codes and test_factors must be given together")
    if test_codes is not None:
        test_codes = check_codes(test_codes, "test_codes")
        if test_codes.shape[1] != codes.shape[1]:
            raise ValueError(f"test_codes must have {codes.shape[1]} columns like codes, "
                             f"got shape {test_codes.shape}")
        test_factors = check_factors(test_factors, test_codes.shape[0], discrete=discrete,
                                     name="test_factors")
        if test_factors.shape[1] != factors.shape[1]:
            raise ValueError(f"test_factors must have {factors.shape[1]} columns like "
                             f"factors, got shape {test_factors.shape}")
        return codes, factors, test_codes, test_factors
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must lie in (0, 1), got {test_fraction}")
    num_points = codes.shape[0]
    num_test = min(max(1, round(test_fraction * num_points)), num_points - 1)
    order = as_generator(random_state, "random_state").permutation(num_points)
    train, test = order[num_test:], order[:num_test]
    return codes[train], factors[train], codes[test], factors[test]


def check_factor_types(factor_types: Any, num_factors: int) -> list[tuple[str, float | None]]:
    """Validate one type per factor column and return them as ``(kind, period)`` pairs.

    A type is a kind, ``"categorical"`` or ``"continuous"``, or a pair ``(kind, period)`` such
    as the datasets' :class:`~pyro_dynvae.data.base.FactorType` (``("periodic", 2 * pi)`` for
    an angle in radians); a periodic factor needs a positive period.

    :param factor_types: a sequence of ``num_factors`` types.
    :param int num_factors: the number of factor columns ``K``.
    """
    if isinstance(factor_types, str) or not hasattr(factor_types, "__len__") \
            or len(factor_types) != num_factors:
        raise ValueError(f"factor_types must list one type for each of the {num_factors} "
                         f"factors, got {factor_types!r}")
    checked = []
    for column, entry in enumerate(factor_types):
        kind, period = (entry, None) if isinstance(entry, str) else tuple(entry)
        if kind not in FACTOR_KINDS:
            raise ValueError(f"factor_types[{column}] must be a kind from {FACTOR_KINDS} or a "
                             f"(kind, period) pair, got {entry!r}")
        if kind == "periodic":
            if period is None or not float(period) > 0:
                raise ValueError(f"factor_types[{column}] is periodic and needs a positive "
                                 f"period, e.g. ('periodic', 2 * math.pi), got {entry!r}")
            period = float(period)
        elif period is not None:
            raise ValueError(f"factor_types[{column}] is {kind} and takes no period, "
                             f"got {entry!r}")
        checked.append((kind, period))
    return checked

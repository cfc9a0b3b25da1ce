"""Modularity and Explicitness.

Reference: Ridgeway & Mozer (2018), "Learning Deep Disentangled Embeddings With the
F-Statistic Loss", NeurIPS; estimators and defaults as in disentanglement_lib
(Locatello et al. 2019).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from .utils import (
    DEFAULT_TEST_FRACTION,
    check_codes,
    check_factors,
    discrete_mutual_info,
    histogram_discretize,
    split_train_test,
    with_versions,
)


def modularity_from_mutual_info(mutual_info: Any) -> float:
    r"""Modularity from a mutual information matrix :math:`m` of shape ``(D, K)``.

    Each code scores :math:`1 - \delta_i` with

    .. math:: \delta_i = \frac{\sum_j m_{ij}^2 - \theta_i^2}{\theta_i^2 (K - 1)},
              \qquad \theta_i = \max_j m_{ij},

    (0 for a code carrying no information) and modularity is the mean over codes. A code
    informative about exactly one factor scores 1; one equally informative about all
    ``K`` factors scores 0.
    """
    squared = np.square(np.asarray(mutual_info, dtype=np.float64))
    if squared.ndim != 2 or squared.shape[1] < 2:
        raise ValueError(f"mutual_info must have shape (D, K) with K >= 2, got {squared.shape}")
    max_squared = squared.max(axis=1)
    informative = max_squared > 0
    per_code = np.zeros(squared.shape[0])
    deviation = (squared.sum(axis=1) - max_squared)[informative] / (
        max_squared[informative] * (squared.shape[1] - 1))
    per_code[informative] = 1.0 - deviation
    return float(per_code.mean())


def _one_vs_rest_auc(labels: np.ndarray, probabilities: np.ndarray,
                     classes: np.ndarray) -> float:
    """Macro-averaged one-vs-rest ROC-AUC over the classes present (and not exhaustive) in
    ``labels`` (NaN if there is none); disentanglement_lib binarises the labels with
    MultiLabelBinarizer."""
    aucs = []
    for column, label in enumerate(classes):
        positives = labels == label
        if 0 < positives.sum() < len(labels):
            aucs.append(roc_auc_score(positives, probabilities[:, column]))
    return float(np.mean(aucs)) if aucs else float("nan")


def explicitness(codes_train: np.ndarray, factors_train: np.ndarray, codes_test: np.ndarray,
                 factors_test: np.ndarray) -> tuple[float, float]:
    """Explicitness on the training and the test set (Ridgeway & Mozer 2018): for each factor
    the macro one-vs-rest ROC-AUC of a default ``LogisticRegression()`` predicting it from all
    codes, standardised with the training mean and standard deviation (a constant code is left
    unscaled); the mean over factors.

    :param numpy.ndarray codes_train: real array ``(N, D)``.
    :param numpy.ndarray factors_train: integer array ``(N, K)``.
    :param numpy.ndarray codes_test: real array ``(M, D)``.
    :param numpy.ndarray factors_test: integer array ``(M, K)``.
    :returns: ``(explicitness_train, explicitness_test)``; 0.5 is chance. A factor with a
        single class in a set has no ROC-AUC there and is left out of that mean (NaN if no
        factor has one).
    :raises ValueError: if a factor is constant on the training set.
    """
    mean, std = codes_train.mean(axis=0), codes_train.std(axis=0)
    std = np.where(std > 0, std, 1.0)
    train_normalised, test_normalised = (codes_train - mean) / std, (codes_test - mean) / std
    explicitness_train, explicitness_test = [], []
    for j in range(factors_train.shape[1]):
        if np.unique(factors_train[:, j]).size < 2:
            raise ValueError(
                f"factors[:, {j}] takes a single value on the training split, so its "
                "explicitness (a classifier's ROC-AUC) is undefined; pass more rows, a "
                "smaller test_fraction, or drop the constant factor"
            )
        classifier = LogisticRegression().fit(train_normalised, factors_train[:, j])
        explicitness_train.append(_one_vs_rest_auc(
            factors_train[:, j], classifier.predict_proba(train_normalised),
            classifier.classes_))
        explicitness_test.append(_one_vs_rest_auc(
            factors_test[:, j], classifier.predict_proba(test_normalised),
            classifier.classes_))
    return _mean_of_defined(explicitness_train), _mean_of_defined(explicitness_test)


def _mean_of_defined(values: list[float]) -> float:
    defined = [value for value in values if not np.isnan(value)]
    return float(np.mean(defined)) if defined else float("nan")


def modularity_explicitness(codes: Any, factors: Any, num_bins: int = 20, *,
                            test_codes: Any = None, test_factors: Any = None,
                            test_fraction: float = DEFAULT_TEST_FRACTION,
                            random_state: Any = 0) -> dict[str, Any]:
    r"""Modularity and explicitness of a representation (Ridgeway & Mozer 2018).

    Modularity (:func:`modularity_from_mutual_info`) uses the mutual information between
    the training codes, discretised into ``num_bins`` histogram bins, and the factors;
    explicitness is :func:`explicitness`. Defaults of disentanglement_lib: ``num_bins=20``,
    10,000 train / 5,000 test points.

    :param codes: real array ``(N, D)``.
    :param factors: integer-valued array ``(N, K)``, ``K >= 2``.
    :param int num_bins: bins of the histogram discretiser.
    :param test_codes: optional held-out codes ``(M, D)``; with ``test_factors``.
    :param test_factors: optional held-out integer factors ``(M, K)``.
    :param float test_fraction: share of rows held out when no test set is given.
    :param random_state: seed of the train/test split.
    :returns: ``{"modularity", "explicitness_train", "explicitness_test", "versions"}``.
    :raises ValueError: if a factor is constant on the training split.
    """
    codes = check_codes(codes)
    factors = check_factors(factors, codes.shape[0], discrete=True)
    codes_train, factors_train, codes_test, factors_test = split_train_test(
        codes, factors, test_codes, test_factors, test_fraction, random_state, discrete=True)
    mutual_info = discrete_mutual_info(histogram_discretize(codes_train, num_bins),
                                       factors_train)
    explicitness_train, explicitness_test = explicitness(codes_train, factors_train,
                                                         codes_test, factors_test)
    return with_versions({
        "modularity": modularity_from_mutual_info(mutual_info),
        "explicitness_train": explicitness_train,
        "explicitness_test": explicitness_test,
    })

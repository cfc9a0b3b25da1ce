"""Separated Attribute Predictability (SAP).

Reference: Kumar, Sattigeri & Balakrishnan (2018), "Variational Inference of Disentangled
Latent Concepts from Unlabeled Observations", ICLR, Section 3; defaults as in
disentanglement_lib (Locatello et al. 2019).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.svm import LinearSVC

from .utils import (
    DEFAULT_TEST_FRACTION,
    check_codes,
    check_factors,
    split_train_test,
    with_versions,
)


def sap_score_matrix(codes_train: np.ndarray, factors_train: np.ndarray,
                     codes_test: np.ndarray, factors_test: np.ndarray,
                     continuous: bool) -> np.ndarray:
    r"""Predictability of each factor from each single code, shape ``(D, K)``.

    Continuous factors: :math:`S_{ij} = \mathrm{Cov}(c_i, v_j)^2 /
    (\mathrm{Var}(c_i)\mathrm{Var}(v_j))`, the :math:`R^2` of a 1-D linear regression, on
    the training set (0 for a constant code). Discrete factors: the test accuracy of a
    ``LinearSVC(C=0.01, class_weight="balanced")`` fitted on the single code :math:`c_i`.
    """
    num_codes, num_factors = codes_train.shape[1], factors_train.shape[1]
    scores = np.zeros((num_codes, num_factors))
    for i in range(num_codes):
        for j in range(num_factors):
            if continuous:
                covariance = np.cov(codes_train[:, i], factors_train[:, j], ddof=1)
                if covariance[0, 0] > 1e-12 and covariance[1, 1] > 0:
                    scores[i, j] = covariance[0, 1] ** 2 / (covariance[0, 0] * covariance[1, 1])
            else:
                classifier = LinearSVC(C=0.01, class_weight="balanced")
                classifier.fit(codes_train[:, i:i + 1], factors_train[:, j])
                prediction = classifier.predict(codes_test[:, i:i + 1])
                scores[i, j] = np.mean(prediction == factors_test[:, j])
    return scores


def sap(codes: Any, factors: Any, continuous: bool = False, *, test_codes: Any = None,
        test_factors: Any = None, test_fraction: float = DEFAULT_TEST_FRACTION,
        random_state: Any = 0) -> dict[str, Any]:
    r"""SAP score: the mean over factors of the gap between the two codes that predict the
    factor best,

    .. math:: \mathrm{SAP} = \frac{1}{K} \sum_j \left(S_{(1)j} - S_{(2)j}\right),

    with the score matrix :math:`S` of :func:`sap_score_matrix`. disentanglement_lib uses
    ``continuous=False`` with 10,000 train and 5,000 test points. Note that a 1-D linear
    classifier cannot isolate the middle values of a many-valued factor, so even perfect
    codes score well below 1 in the discrete mode.

    :param codes: real array ``(N, D)``, ``D >= 2``.
    :param factors: array ``(N, K)``; integer valued if ``continuous=False``.
    :param bool continuous: treat the factors as continuous (R^2 scores, no test set
        needed) or as discrete classes (SVM test accuracy).
    :param test_codes: optional held-out codes ``(M, D)`` (discrete mode).
    :param test_factors: optional held-out factors ``(M, K)`` (discrete mode).
    :param float test_fraction: share of rows held out when no test set is given.
    :param random_state: seed of the train/test split.
    :returns: ``{"sap": float, "versions": {...}}``.
    """
    codes = check_codes(codes)
    discrete = not continuous
    factors = check_factors(factors, codes.shape[0], discrete=discrete)
    if codes.shape[1] < 2:
        raise ValueError(f"codes must have at least 2 columns for a gap, got {codes.shape[1]}")
    if continuous:
        scores = sap_score_matrix(codes, factors, codes, factors, continuous=True)
    else:
        scores = sap_score_matrix(*split_train_test(codes, factors, test_codes, test_factors,
                                                    test_fraction, random_state,
                                                    discrete=True),
                                  continuous=False)
    top_two = -np.sort(-scores, axis=0)[:2]
    return with_versions({"sap": np.mean(top_two[0] - top_two[1])})

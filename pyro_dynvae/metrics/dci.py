"""Disentanglement, Completeness and Informativeness (DCI).

Reference: Eastwood & Williams (2018), "A Framework for the Quantitative Evaluation of
Disentangled Representations", ICLR; gradient-boosted-tree importances and classification
accuracy as informativeness, as in disentanglement_lib (Locatello et al. 2019).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.ensemble import GradientBoostingClassifier, RandomForestClassifier

from .utils import (
    DEFAULT_TEST_FRACTION,
    check_codes,
    check_factors,
    split_train_test,
    with_versions,
)

#: Numerical floor added to every importance before taking entropies (as in
#: disentanglement_lib), so that zero rows and columns have a defined entropy.
IMPORTANCE_EPS = 1e-11

PREDICTORS = ("gradient_boosting", "random_forest")


def _normalised_entropy(probabilities: np.ndarray, axis: int) -> np.ndarray:
    """Shannon entropy along ``axis`` of non-negative weights, in the base equal to the
    length of that axis (so it lies in ``[0, 1]``)."""
    weights = probabilities + IMPORTANCE_EPS
    weights = weights / weights.sum(axis=axis, keepdims=True)
    return -(weights * np.log(weights)).sum(axis=axis) / np.log(weights.shape[axis])


def _check_importance(importance_matrix: Any) -> np.ndarray:
    matrix = np.asarray(importance_matrix, dtype=np.float64)
    if matrix.ndim != 2 or min(matrix.shape) < 2:
        raise ValueError("importance_matrix must have shape (D, K) with D >= 2 and K >= 2, "
                         f"got {matrix.shape}")
    if np.any(matrix < 0) or not np.all(np.isfinite(matrix)):
        raise ValueError("importance_matrix must be finite and non-negative")
    return matrix


def dci_disentanglement(importance_matrix: Any) -> float:
    r"""DCI disentanglement from an importance matrix ``R`` of shape ``(D, K)``.

    With :math:`P_{ij} = R_{ij} / \sum_k R_{ik}`, each code scores
    :math:`D_i = 1 - H_K(P_{i\cdot}) = 1 + \sum_k P_{ik} \log_K P_{ik}` and the total is
    the importance-weighted mean :math:`\sum_i \rho_i D_i` with
    :math:`\rho_i = \sum_j R_{ij} / \sum_{ij} R_{ij}` (uniform weights if ``R == 0``).
    A diagonal ``R`` gives 1; a code spreading its importance evenly over two of ``K``
    factors gets :math:`1 - \ln 2 / \ln K`.
    """
    matrix = _check_importance(importance_matrix)
    per_code = 1.0 - _normalised_entropy(matrix, axis=1)
    weights = matrix if matrix.sum() > 0 else np.ones_like(matrix)
    code_weights = weights.sum(axis=1) / weights.sum()
    return float(np.sum(per_code * code_weights))


def dci_completeness(importance_matrix: Any) -> float:
    r"""DCI completeness from an importance matrix ``R`` of shape ``(D, K)``.

    With :math:`\tilde P_{ij} = R_{ij} / \sum_i R_{ij}`, each factor scores
    :math:`C_j = 1 - H_D(\tilde P_{\cdot j})` (entropy in base ``D``, the number of codes)
    and the total is the importance-weighted mean over factors. A diagonal ``R`` gives 1;
    a factor captured evenly by two of ``D`` codes gets :math:`1 - \ln 2 / \ln D`.
    """
    matrix = _check_importance(importance_matrix)
    per_factor = 1.0 - _normalised_entropy(matrix, axis=0)
    weights = matrix if matrix.sum() > 0 else np.ones_like(matrix)
    factor_weights = weights.sum(axis=0) / weights.sum()
    return float(np.sum(per_factor * factor_weights))


def _make_classifier(predictor: str, random_state: int | None):
    if predictor == "gradient_boosting":
        return GradientBoostingClassifier(random_state=random_state)
    if predictor == "random_forest":
        return RandomForestClassifier(n_estimators=50, min_samples_leaf=5, max_features=None,
                                      random_state=random_state)
    raise ValueError(f"predictor must be one of {PREDICTORS}, got {predictor!r}")


def dci_importance(codes_train: np.ndarray, factors_train: np.ndarray,
                   codes_test: np.ndarray, factors_test: np.ndarray,
                   predictor: str = "gradient_boosting",
                   random_state: int | None = 0) -> tuple[np.ndarray, float, float]:
    """Fit one classifier per factor on the codes and collect feature importances.

    :returns: ``(importance_matrix (D, K), train_accuracy, test_accuracy)`` where the
        accuracies are averaged over factors and ``importance_matrix[:, j]`` holds the
        impurity-based ``feature_importances_`` of the classifier for factor ``j``.
    """
    num_factors = factors_train.shape[1]
    importance = np.zeros((codes_train.shape[1], num_factors))
    train_accuracy, test_accuracy = np.zeros(num_factors), np.zeros(num_factors)
    for j in range(num_factors):
        classifier = _make_classifier(predictor, random_state)
        classifier.fit(codes_train, factors_train[:, j])
        importance[:, j] = np.abs(classifier.feature_importances_)
        train_accuracy[j] = np.mean(classifier.predict(codes_train) == factors_train[:, j])
        test_accuracy[j] = np.mean(classifier.predict(codes_test) == factors_test[:, j])
    return importance, float(train_accuracy.mean()), float(test_accuracy.mean())


def dci(codes: Any, factors: Any, *, test_codes: Any = None, test_factors: Any = None,
        test_fraction: float = DEFAULT_TEST_FRACTION, predictor: str = "gradient_boosting",
        random_state: int | None = 0) -> dict[str, Any]:
    r"""DCI scores of a representation (Eastwood & Williams 2018).

    For each factor :math:`v_j` a classifier predicts :math:`v_j` from all codes; its
    impurity-based feature importances form column :math:`j` of the importance matrix
    :math:`R` (``D x K``). Disentanglement and completeness are computed from :math:`R` by
    :func:`dci_disentanglement` and :func:`dci_completeness`; informativeness is the
    classification accuracy averaged over factors, on the training and on the test set.

    The standard predictor (``"gradient_boosting"``) is scikit-learn's
    ``GradientBoostingClassifier()`` with default hyper-parameters, as in
    disentanglement_lib (10,000 train / 5,000 test points there). ``"random_forest"`` (50
    bagged trees over all codes, ``min_samples_leaf=5``; Eastwood & Williams also used
    random forests) is faster but **non-standard**: its scores are not comparable with
    published DCI numbers.

    :param codes: real array ``(N, D)``, ``D >= 2``.
    :param factors: integer-valued array ``(N, K)``, ``K >= 2``.
    :param test_codes: optional held-out codes ``(M, D)``; with ``test_factors``.
    :param test_factors: optional held-out integer factors ``(M, K)``.
    :param float test_fraction: share of rows held out when no test set is given
        (default 1/3, the 10,000 : 5,000 split of disentanglement_lib).
    :param str predictor: ``"gradient_boosting"`` (standard) or ``"random_forest"``.
    :param random_state: seed of the split and of the classifiers.
    :returns: ``{"disentanglement", "completeness", "informativeness_train",
        "informativeness_test", "versions"}``.
    """
    codes = check_codes(codes)
    factors = check_factors(factors, codes.shape[0], discrete=True)
    if predictor not in PREDICTORS:
        raise ValueError(f"predictor must be one of {PREDICTORS}, got {predictor!r}")
    if codes.shape[1] < 2 or factors.shape[1] < 2:
        raise ValueError("dci needs at least 2 codes and 2 factors, got codes "
                         f"{codes.shape} and factors {factors.shape}")
    codes_train, factors_train, codes_test, factors_test = split_train_test(
        codes, factors, test_codes, test_factors, test_fraction, random_state, discrete=True)
    importance, train_accuracy, test_accuracy = dci_importance(
        codes_train, factors_train, codes_test, factors_test, predictor, random_state)
    return with_versions({
        "disentanglement": dci_disentanglement(importance),
        "completeness": dci_completeness(importance),
        "informativeness_train": train_accuracy,
        "informativeness_test": test_accuracy,
    })

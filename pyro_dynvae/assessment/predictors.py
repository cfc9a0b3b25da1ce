"""Supervised predictors of one factor from the codes, suited to the factor's type, and their
held-out scores.

A factor is predicted as what it is: a categorical factor by a classifier (scored by accuracy),
a continuous factor by a regressor (scored by :math:`R^2`), and a periodic factor of period
:math:`P` by a regressor of its embedding :math:`(\\cos\\phi, \\sin\\phi)`,
:math:`\\phi = 2\\pi v / P`, on the unit circle (scored by the :math:`R^2` of that embedding), the
usual regression onto a circular response (Fisher 1993, "Statistical Analysis of Circular
Data", Cambridge, chapter 6; Mardia & Jupp 2000, "Directional Statistics", Wiley). Every score
is computed on observations the predictor was not fitted on.

Families (scikit-learn; Pedregosa et al. 2011, JMLR 12):

- ``"linear"``: ridge regression / multinomial logistic regression on standardised codes;
- ``"random_forest"``: 100 trees, leaves of 5 or more observations (Breiman 2001);
- ``"gradient_boosting"``: scikit-learn's defaults (100 trees of depth 3), the predictor of
  disentanglement_lib's DCI (Friedman 2001).
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.ensemble import (
    GradientBoostingClassifier,
    GradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.metrics import r2_score
from sklearn.multioutput import MultiOutputRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

FAMILIES = ("linear", "random_forest", "gradient_boosting")


def factor_targets(values: np.ndarray, kind: str, period: float | None) -> np.ndarray:
    """What a predictor of one factor is fitted to: class labels ``(N,)`` (int64) for a
    categorical factor, the values ``(N,)`` for a continuous one, and
    :math:`(\\cos\\phi, \\sin\\phi)` ``(N, 2)`` for a periodic one."""
    if kind == "categorical":
        return np.round(values).astype(np.int64)
    if kind == "periodic":
        phase = 2 * np.pi * values / period
        return np.stack([np.cos(phase), np.sin(phase)], axis=1)
    return values.astype(np.float64)


def make_predictor(family: str, kind: str, random_state: int | None = 0) -> BaseEstimator:
    """An unfitted scikit-learn predictor of ``family`` for a factor of ``kind``."""
    if family not in FAMILIES:
        raise ValueError(f"family must be one of {FAMILIES}, got {family!r}")
    classify = kind == "categorical"
    if family == "linear":
        model = LogisticRegression(max_iter=1000) if classify else Ridge(alpha=1.0)
        return make_pipeline(StandardScaler(), model)
    if family == "random_forest":
        forest = RandomForestClassifier if classify else RandomForestRegressor
        return forest(n_estimators=100, min_samples_leaf=5, random_state=random_state)
    if classify:
        return GradientBoostingClassifier(random_state=random_state)
    boosting = GradientBoostingRegressor(random_state=random_state)
    return MultiOutputRegressor(boosting) if kind == "periodic" else boosting


def feature_importances(predictor: BaseEstimator) -> np.ndarray:
    """The impurity-based (mean decrease in impurity) importances ``(D,)`` of a fitted tree
    ensemble; for the two regressors of a periodic factor, their mean."""
    if isinstance(predictor, MultiOutputRegressor):
        return np.mean([tree.feature_importances_ for tree in predictor.estimators_], axis=0)
    return predictor.feature_importances_


def held_out_score(kind: str, targets: np.ndarray, predictions: np.ndarray) -> float:
    """Accuracy (categorical), :math:`R^2` (continuous) or the variance-weighted :math:`R^2` of
    the :math:`(\\cos, \\sin)` embedding (periodic) of ``predictions`` against ``targets``; the
    :math:`R^2` is relative to the mean of ``targets`` (scikit-learn's ``r2_score``), so 0 is the
    score of predicting the mean and it is negative for worse predictions (NaN, undefined,
    for fewer than two test observations)."""
    if kind == "categorical":
        return float(np.mean(predictions == targets))
    if len(targets) < 2:
        return float("nan")
    return float(r2_score(targets, predictions, multioutput="variance_weighted"))


def chance_score(kind: str, fit_targets: np.ndarray, test_targets: np.ndarray) -> float:
    """The held-out score of a predictor that ignores the codes: the accuracy of always
    answering the most frequent class of the fitting set (categorical), else 0."""
    if kind != "categorical":
        return 0.0
    classes, counts = np.unique(fit_targets, return_counts=True)
    return float(np.mean(test_targets == classes[np.argmax(counts)]))


def is_learnable(kind: str, fit_targets: np.ndarray) -> bool:
    """Whether the fitting set shows the factor varying at all (two classes, or a spread)."""
    if kind == "categorical":
        return np.unique(fit_targets).size >= 2
    return bool(np.ptp(fit_targets, axis=0).max() > 0)


def fit_and_score(family: str, kind: str, codes_fit: np.ndarray, targets_fit: np.ndarray,
                  codes_test: np.ndarray, targets_test: np.ndarray,
                  random_state: int | None = 0) -> tuple[float, BaseEstimator | None]:
    """Fit a ``family`` predictor of a factor of ``kind`` on one set of observations and score
    it on another (:func:`held_out_score`).

    :returns: ``(score, fitted predictor)``, or ``(nan, None)`` when the fitting set does not
        show the factor varying.
    """
    if not is_learnable(kind, targets_fit):
        return float("nan"), None
    predictor = make_predictor(family, kind, random_state).fit(codes_fit, targets_fit)
    return held_out_score(kind, targets_test, predictor.predict(codes_test)), predictor


def normalised_score(kind: str, score: float, chance: float) -> float:
    """A score on the scale where chance is 0 and a perfect prediction 1:
    :math:`(a - a_0) / (1 - a_0)` for an accuracy :math:`a` with chance :math:`a_0`, the
    :math:`R^2` itself otherwise."""
    if kind != "categorical":
        return score
    return (score - chance) / (1.0 - chance) if chance < 1.0 else float("nan")


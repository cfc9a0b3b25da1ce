"""Codes against ground-truth factors, scored without rewarding per-sequence constants.

:func:`score_codes` takes per-frame codes ``(S, T, n)`` and factors ``(S, T, K)`` of many
held-out sequences and computes the disentanglement metrics of :mod:`pyro_dynvae.metrics` and
the probes of :mod:`.probes` on frames drawn from every sequence (one by default,
:mod:`.sampling`), with whole sequences on either side of every fit/test split:

==========================  ==============================================================
score                       observations
==========================  ==============================================================
MIG, MCC                    one frame of every sequence
modularity                  one frame of every fitting sequence (its mutual information)
DCI D / C                   one frame of every fitting sequence (the predictors' importances)
DCI I, SAP, explicitness,   predictors fitted on the sampled frames of the fitting
probes                      sequences, scored on those of the test sequences
==========================  ==============================================================

Why. Scoring 96 sequences x 10 frames as 960 independent points (the study's scoring until
now), a code of pure noise with one latent that is constant within each sequence scored MIG
0.175, DCI-D 0.169, DCI-C 0.41 on the sprites' factors, above most trained models: with ten
copies of each sequence, plug-in mutual information sees ~100 distinct values of that latent
co-varying with every static factor, and a random forest fitted on those frames memorises each
sequence's static factors from it, so its training-set importances point there. One frame per
sequence makes the observations independent, as disentanglement_lib's sampler assumes
(Locatello et al. 2019): that latent is then noise, and scores as noise
(``tests/test_assessment_scoring.py``).

**DCI importances.** disentanglement_lib's DCI uses the impurity-based importances (mean
decrease in impurity, MDI) of gradient-boosted trees fitted on the training points. MDI is
computed on the fitting data, so it credits any feature the trees can split on to memorise them
(Strobl et al. 2007, BMC Bioinformatics 8:25): with several frames per sequence, a per-sequence
constant. Here the DCI predictors are fitted on one frame per sequence, where memorising a
sequence cannot lower the impurity of any other point, and MDI is kept (so D and C follow the
library's definition). (Measured on that control with 10 frames per fitting sequence: the
constant latent took 76-90% of every factor's MDI, DCI-C 0.65.) Held-out permutation importance
(Breiman 2001) would not need that restriction, but it is noise around 0 for codes that carry
nothing, and D and C, which normalise the importances, turn that noise into spurious
concentration (pure noise: DCI-D 0.56, DCI-C 0.44 on 1,000 sequences).

**DCI informativeness** departs from disentanglement_lib (accuracy of a classifier of 20-bin
factors), which gave 0.17 for an exact code under a random rotation: here each factor is
predicted as what it is (:mod:`.predictors`: classes by a classifier, continuous values and
angles by regressors) and scored on the test sequences on the scale where chance is 0 and a
perfect prediction 1 (accuracy above the majority class, :math:`R^2`), clipped to [0, 1] and
averaged over factors, as Eastwood & Williams (2018) define it (one minus the prediction error
of the importances' own regressors).

MIG, SAP and modularity / explicitness need classes: categorical factors keep theirs,
continuous factors are cut into ``num_bins`` equal-width bins over the sample's range and
periodic factors into ``num_bins`` equal arcs of their circle. MCC uses the correlation of
each factor's type (:func:`pyro_dynvae.metrics.mcc.typed_correlation_matrix`).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning

from pyro_dynvae import metrics
from pyro_dynvae.metrics.dci import dci_completeness, dci_disentanglement
from pyro_dynvae.metrics.modularity import explicitness, modularity_from_mutual_info
from pyro_dynvae.metrics.sap import sap_score_matrix
from pyro_dynvae.metrics.utils import (
    DEFAULT_TEST_FRACTION,
    check_factor_types,
    discrete_mutual_info,
    histogram_discretize,
)
from pyro_dynvae.validation import check_positive_int

from .predictors import (
    chance_score,
    factor_targets,
    feature_importances,
    fit_and_score,
    normalised_score,
)
from .probes import factor_names_or_default, mean_probe_scores, probe_sample
from .sampling import SequenceSample, sample_sequences

#: DCI predictor families: disentanglement_lib's gradient boosting, or a faster random forest
DCI_PREDICTORS = ("gradient_boosting", "random_forest")

#: the scores :func:`score_codes` reports for every run (table columns of the study)
SCORE_KEYS = ("mig", "dci_disentanglement", "dci_completeness", "dci_informativeness", "sap",
              "modularity", "explicitness", "mcc", "probe_linear", "probe_nonlinear")


def discretize_factors(factors: np.ndarray, factor_types: Sequence[tuple[str, float | None]],
                       num_bins: int = 20) -> np.ndarray:
    """Class labels ``(N, K)`` of factor values ``(N, K)``: the category of a categorical
    factor, one of ``num_bins`` equal-width bins over the observed range of a continuous one
    (disentanglement_lib's histogram discretiser), one of ``num_bins`` equal arcs of
    ``[0, period)`` for a periodic one."""
    labels = np.empty(factors.shape, dtype=np.int64)
    for j, (kind, period) in enumerate(factor_types):
        if kind == "categorical":
            labels[:, j] = np.round(factors[:, j])
        elif kind == "periodic":
            arc = np.floor(np.mod(factors[:, j], period) / period * num_bins)
            labels[:, j] = np.minimum(arc, num_bins - 1)
        else:
            labels[:, j] = histogram_discretize(factors[:, [j]], num_bins)[:, 0]
    return labels


def typed_dci(sample: SequenceSample, factor_types: Sequence[tuple[str, float | None]],
              predictor: str = "gradient_boosting",
              random_state: int | None = 0) -> dict[str, float]:
    r"""DCI (Eastwood & Williams 2018) with one predictor per factor suited to its type.

    For factor :math:`j` a ``predictor`` (:func:`~.predictors.make_predictor`) is fitted on
    one frame of every fitting sequence; its impurity importances form column :math:`j` of the
    importance matrix :math:`R`, from which
    :func:`~pyro_dynvae.metrics.dci.dci_disentanglement` and
    :func:`~pyro_dynvae.metrics.dci.dci_completeness` follow. Informativeness is its score on
    every sampled frame of the test sequences above chance (:func:`~.predictors.normalised_score`),
    clipped to [0, 1], averaged over factors. A factor that does not vary over the fitting
    sequences gets a zero column and no informativeness.

    :returns: ``{"dci_disentanglement", "dci_completeness", "dci_informativeness"}``
        (D and C are NaN with fewer than 2 codes or factors).
    """
    if predictor not in DCI_PREDICTORS:
        raise ValueError(f"dci_predictor must be one of {DCI_PREDICTORS}, got {predictor!r}")
    codes_fit, factors_fit = sample.one_frame("fit")
    codes_test, factors_test = sample.frames("test")
    importance = np.zeros((codes_fit.shape[1], len(factor_types)))
    informativeness = []
    for j, (kind, period) in enumerate(factor_types):
        fit_targets = factor_targets(factors_fit[:, j], kind, period)
        test_targets = factor_targets(factors_test[:, j], kind, period)
        score, fitted = fit_and_score(predictor, kind, codes_fit, fit_targets, codes_test,
                                      test_targets, random_state)
        if fitted is None:
            continue
        importance[:, j] = np.abs(feature_importances(fitted))
        above = normalised_score(kind, score, chance_score(kind, fit_targets, test_targets))
        informativeness.append(float(np.clip(above, 0.0, 1.0)))
    finite = [value for value in informativeness if np.isfinite(value)]
    scores = {"dci_informativeness": float(np.mean(finite)) if finite else float("nan")}
    if min(importance.shape) >= 2:
        scores.update(dci_disentanglement=dci_disentanglement(importance),
                      dci_completeness=dci_completeness(importance))
    else:
        scores.update(dci_disentanglement=float("nan"), dci_completeness=float("nan"))
    return scores


def _classes_scores(sample: SequenceSample, factor_types: Sequence[tuple[str, float | None]],
                    num_bins: int) -> dict[str, float]:
    """MIG, SAP, modularity and explicitness of a sample, on class labels of the factors."""
    sizes = [len(sample.fit_codes), len(sample.test_codes)]
    frames = sample.frames_per_sequence
    codes_all = np.concatenate([sample.fit_codes, sample.test_codes])
    labels_all = discretize_factors(
        np.concatenate([sample.fit_factors, sample.test_factors]).reshape(
            -1, sample.fit_factors.shape[-1]), factor_types, num_bins,
    ).reshape(sum(sizes), frames, -1)
    labels_fit, labels_test = labels_all[:sizes[0]], labels_all[sizes[0]:]
    codes_fit, codes_test = codes_all[:sizes[0]], codes_all[sizes[0]:]
    nan = float("nan")
    scores = {"mig": nan, "sap": nan, "modularity": nan, "explicitness": nan}
    if codes_all.shape[-1] >= 2:
        scores["mig"] = metrics.mig(codes_all[:, 0], labels_all[:, 0], num_bins)["mig"]
    learnable = all(np.unique(labels_fit[..., j]).size >= 2 for j in range(labels_fit.shape[-1]))
    if not learnable:
        return scores
    flat = [array.reshape(-1, array.shape[-1])
            for array in (codes_fit, labels_fit, codes_test, labels_test)]
    if codes_all.shape[-1] >= 2:
        top_two = -np.sort(-sap_score_matrix(*flat, continuous=False), axis=0)[:2]
        scores["sap"] = float(np.mean(top_two[0] - top_two[1]))
    if labels_fit.shape[-1] >= 2 and sizes[0] >= 2:
        mutual_info = discrete_mutual_info(histogram_discretize(codes_fit[:, 0], num_bins),
                                           labels_fit[:, 0])
        scores["modularity"] = modularity_from_mutual_info(mutual_info)
    scores["explicitness"] = explicitness(*flat)[1]
    return scores


def score_codes(codes: Any, factors: Any, factor_types: Any,
                factor_names: Sequence[str] | None = None, *, frames_per_sequence: int = 1,
                test_fraction: float = DEFAULT_TEST_FRACTION, num_bins: int = 20,
                dci_predictor: str = "gradient_boosting",
                random_state: int = 0) -> dict[str, Any]:
    """Every codes-vs-factors score of a representation on many held-out sequences, with the
    sequence as the unit of sampling and of every fit/test split (see the module docstring).

    disentanglement_lib scores 10,000 fitting and 5,000 test points: pass ``S = 15,000``
    sequences with the default ``test_fraction`` and ``frames_per_sequence`` for its sample
    sizes. Factors that take a single value over the sampled frames carry nothing to score and
    are left out (listed under ``"constant_factors"``).

    :param codes: per-frame codes ``(S, T, n)`` of ``S >= 2`` sequences (e.g. posterior means).
    :param factors: their per-frame ground-truth factors ``(S, T, K)``, where a factor a frame
        cannot show has been reduced to what it shows (e.g. a dataset's
        ``identifiable_factors``).
    :param factor_types: one type per factor: ``"categorical"``, ``"continuous"`` or
        ``("periodic", period)`` (a dataset's ``factor_types``).
    :param factor_names: names of the ``K`` factors (default ``factor0, ...``).
    :param int frames_per_sequence: frames drawn per sequence; more than one adds frames only
        where a predictor is fitted and scored on disjoint sequences (see the module table).
    :param float test_fraction: share of the sequences predictors are scored on (default 1/3).
    :param int num_bins: bins of continuous and periodic factors and of the codes for MIG,
        SAP and modularity / explicitness (disentanglement_lib: 20).
    :param str dci_predictor: ``"gradient_boosting"`` (disentanglement_lib's) or
        ``"random_forest"`` (faster, not comparable with published DCI numbers).
    :param int random_state: seed of the frames drawn, the split and the predictors.
    :returns: a dict with the floats of :data:`SCORE_KEYS` (NaN where the sample cannot define
        one), ``"probes"`` (per factor, :func:`~.probes.probe_sample`), ``"factors"`` (names
        scored), ``"constant_factors"``, ``"sample"`` (sizes) and ``"versions"``.
    """
    with warnings.catch_warnings():
        # SAP's LinearSVC(C=0.01) (disentanglement_lib's) and the logistic regressions often
        # stop at their iteration limit; the metrics are defined by the predictors so fitted
        warnings.filterwarnings("ignore", category=ConvergenceWarning)
        return _score_codes(codes, factors, factor_types, factor_names,
                            frames_per_sequence, test_fraction, num_bins, dci_predictor,
                            random_state)


def _score_codes(codes: Any, factors: Any, factor_types: Any,
                 factor_names: Sequence[str] | None, frames_per_sequence: int,
                 test_fraction: float, num_bins: int, dci_predictor: str,
                 random_state: int) -> dict[str, Any]:
    num_bins = check_positive_int(num_bins, "num_bins", minimum=2)
    sample = sample_sequences(codes, factors, frames_per_sequence=frames_per_sequence,
                              test_fraction=test_fraction, random_state=random_state)
    num_factors = sample.fit_factors.shape[-1]
    types = check_factor_types(factor_types, num_factors)
    names = factor_names_or_default(factor_names, num_factors)
    _, one_frame_factors = sample.one_frame("all")
    varying = [j for j in range(num_factors) if np.ptp(one_frame_factors[:, j]) > 0]
    result: dict[str, Any] = {
        "factors": [names[j] for j in varying],
        "constant_factors": [names[j] for j in range(num_factors) if j not in varying],
        "sample": sample.sizes(),
        "versions": metrics.library_versions(),
    }
    if not varying:
        result.update({key: float("nan") for key in SCORE_KEYS}, probes={})
        return result
    sample = SequenceSample(sample.fit_codes, sample.fit_factors[..., varying],
                            sample.test_codes, sample.test_factors[..., varying])
    types = [types[j] for j in varying]
    result["mcc"] = metrics.mcc(*sample.one_frame("all"), factor_types=types)["mcc"]
    result.update(typed_dci(sample, types, dci_predictor, random_state))
    result.update(_classes_scores(sample, types, num_bins))
    result["probes"] = probe_sample(sample, types, result["factors"], random_state)
    result.update(mean_probe_scores(result["probes"]))
    return result


def score_factor_space(codes: Any, factors: Any, space: Any, **options: Any) -> dict[str, Any]:
    """:func:`score_codes` of codes ``(S, T, n)`` against factors ``(S, T, K)`` in the columns
    of ``space`` (a dataset or its ``factor_subset()``), which supplies their names, their
    types and the reduction to what a frame shows (``identifiable_factors``).

    :param options: keyword arguments of :func:`score_codes`.
    """
    identifiable = space.identifiable_factors(torch.as_tensor(factors)).double().numpy()
    return score_codes(codes, identifiable, space.factor_types, space.factor_names, **options)


def without_nan(value: Any) -> Any:
    """``value`` with every NaN float, at any depth of dicts and lists, replaced by ``None``
    (strict JSON has no NaN)."""
    if isinstance(value, dict):
        return {key: without_nan(item) for key, item in value.items()}
    if isinstance(value, list):
        return [without_nan(item) for item in value]
    if isinstance(value, float) and np.isnan(value):
        return None
    return value

"""Per-factor probes: is a factor *encoded* at all, before asking whether it is disentangled?

For every factor a linear and a nonlinear predictor (:mod:`.predictors`: ridge / logistic
regression, and a random forest) read the factor from all codes; each is fitted on the frames
of some held-out sequences and scored on the frames of the others (:mod:`.sampling`). Scores:
accuracy for a categorical factor, beside its chance level (always answering the fitting set's
most frequent class); :math:`R^2` for a continuous factor; the :math:`R^2` of the
:math:`(\\cos, \\sin)` embedding for a periodic one (chance 0 for both). A factor no probe reads
cannot be disentangled by any metric; a supervised encoder with the model's network gives the
ceiling (Alain & Bengio 2017, "Understanding intermediate layers using linear classifier
probes"; Hewitt & Liang 2019, "Designing and Interpreting Probes with Control Tasks", on probe
capacity: the reason for reporting both probes). The forest is axis-aligned, so on an exact
code under a rotation of the latent space it reads less (R^2 about 0.8) than the linear probe
(1.0); an MLP would not depend on the basis but needs a validation split (early stopping) that
small held-out sets with many classes cannot stratify, and without it overfits noise (R^2 -0.5).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from pyro_dynvae.metrics.utils import check_factor_types, library_versions

from .predictors import chance_score, factor_targets, fit_and_score, normalised_score
from .sampling import SequenceSample, sample_sequences

#: probe name -> predictor family
PROBES = {"linear": "linear", "nonlinear": "random_forest"}


def factor_names_or_default(factor_names: Sequence[str] | None, num_factors: int) -> list[str]:
    """``factor_names`` checked against ``K`` columns, or ``factor0, factor1, ...``."""
    if factor_names is None:
        return [f"factor{j}" for j in range(num_factors)]
    names = list(factor_names)
    if len(names) != num_factors or not all(isinstance(name, str) for name in names) \
            or len(set(names)) != num_factors:
        raise ValueError(f"factor_names must be {num_factors} distinct names, got {names!r}")
    return names


def probe_sample(sample: SequenceSample, factor_types: Any,
                 factor_names: Sequence[str] | None = None,
                 random_state: int | None = 0) -> dict[str, dict[str, Any]]:
    """Probe every factor of a :class:`~.sampling.SequenceSample`: fitted on every sampled
    frame of the fitting sequences, scored on every sampled frame of the test sequences.

    :returns: ``{name: {"type", "linear", "nonlinear", "chance", "linear_above_chance",
        "nonlinear_above_chance"}}``; ``*_above_chance`` is the score on the scale where
        chance is 0 and a perfect prediction 1 (:func:`~.predictors.normalised_score`).
        Scores are NaN for a factor that does not vary over the fitting sequences.
    """
    codes_fit, factors_fit = sample.frames("fit")
    codes_test, factors_test = sample.frames("test")
    types = check_factor_types(factor_types, factors_fit.shape[1])
    names = factor_names_or_default(factor_names, len(types))
    probes: dict[str, dict[str, Any]] = {}
    for j, (kind, period) in enumerate(types):
        fit_targets = factor_targets(factors_fit[:, j], kind, period)
        test_targets = factor_targets(factors_test[:, j], kind, period)
        chance = chance_score(kind, fit_targets, test_targets)
        result: dict[str, Any] = {"type": kind, "chance": chance}
        for probe, family in PROBES.items():
            score, _ = fit_and_score(family, kind, codes_fit, fit_targets, codes_test,
                                     test_targets, random_state)
            result[probe] = score
            result[f"{probe}_above_chance"] = normalised_score(kind, score, chance)
        probes[names[j]] = result
    return probes


def probe_codes(codes: Any, factors: Any, factor_types: Any,
                factor_names: Sequence[str] | None = None, *, frames_per_sequence: int = 1,
                test_fraction: float = 1.0 / 3.0, random_state: int = 0) -> dict[str, Any]:
    """Linear and nonlinear probes of every factor from per-frame codes of many sequences.

    :param codes: per-frame codes ``(S, T, n)`` of ``S`` held-out sequences.
    :param factors: their per-frame factors ``(S, T, K)``.
    :param factor_types: one type per factor: ``"categorical"``, ``"continuous"`` or
        ``("periodic", period)`` (the datasets' ``factor_types``).
    :param factor_names: names of the ``K`` factors (default ``factor0, ...``).
    :param int frames_per_sequence: frames drawn per sequence (default 1).
    :param float test_fraction: share of the sequences the probes are scored on.
    :param int random_state: seed of the draw, the split and the forests.
    :returns: ``{"probes": per factor (see :func:`probe_sample`), "sample": sizes,
        "versions"}``.
    """
    sample = sample_sequences(codes, factors, frames_per_sequence=frames_per_sequence,
                              test_fraction=test_fraction, random_state=random_state)
    return {"probes": probe_sample(sample, factor_types, factor_names, random_state),
            "sample": sample.sizes(), "versions": library_versions()}


def mean_probe_scores(probes: dict[str, dict[str, Any]]) -> dict[str, float]:
    """``{"probe_linear", "probe_nonlinear"}``: each probe's score above chance, averaged over
    the factors where it is defined (NaN if none)."""
    means = {}
    for probe in PROBES:
        values = np.array([entry[f"{probe}_above_chance"] for entry in probes.values()])
        values = values[np.isfinite(values)]
        means[f"probe_{probe}"] = float(values.mean()) if values.size else float("nan")
    return means

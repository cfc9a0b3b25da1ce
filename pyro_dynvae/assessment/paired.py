r"""Paired differences between two models over the seeds of a study, with a bootstrap interval.

Every cell of a study trains on the same data and budget, and the seed sets the initial
weights, the data order and the Monte Carlo noise of both models alike, so the seeds pair the
cells: for a score :math:`m`, the difference of seed :math:`s` is

.. math:: d_s = m(\text{reference}, s) - m(\text{other}, s),

over the :math:`S` seeds where both models finished with a finite score. The interval is the
percentile bootstrap of the mean :math:`\bar d` (Efron and Tibshirani 1993, "An Introduction to
the Bootstrap", ch. 13): resample the :math:`S` differences with replacement ``B`` times and
take the :math:`(1 - c)/2` and :math:`(1 + c)/2` quantiles of the resampled means. With five
seeds the interval is coarse (its resamples take at most 126 distinct values) and tends to be
too narrow; an interval that excludes 0 is a signal, not a test at level ``1 - c``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = ["paired_difference", "paired_differences"]


def paired_difference(reference: Sequence[float], other: Sequence[float], *,
                      confidence: float = 0.95, num_resamples: int = 10000,
                      seed: int = 0) -> dict[str, float | int]:
    """The mean paired difference ``reference - other`` and its percentile bootstrap interval.

    :param reference: scores of the reference model, one per seed (NaN: not finished).
    :param other: scores of the other model for the same seeds, in the same order.
    :param float confidence: the interval's nominal coverage ``c`` in ``(0, 1)``.
    :param int num_resamples: bootstrap resamples ``B``.
    :param int seed: the resampling's seed.
    :returns: ``{"mean", "low", "high", "num_seeds"}`` (NaN where fewer than 2 seeds pair).
    """
    reference = np.asarray(reference, dtype=np.float64)
    other = np.asarray(other, dtype=np.float64)
    if reference.ndim != 1 or reference.shape != other.shape:
        raise ValueError(f"reference and other must be 1-d of one length, got shapes "
                         f"{reference.shape} and {other.shape}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
    if isinstance(num_resamples, bool) or not isinstance(num_resamples, int) or num_resamples < 1:
        raise ValueError(f"num_resamples must be a positive int, got {num_resamples!r}")
    differences = (reference - other)[np.isfinite(reference) & np.isfinite(other)]
    result: dict[str, float | int] = {"mean": math.nan, "low": math.nan, "high": math.nan,
                                      "num_seeds": int(differences.size)}
    if differences.size == 0:
        return result
    result["mean"] = float(differences.mean())
    if differences.size < 2:
        return result
    rng = np.random.default_rng(seed)
    picks = rng.integers(differences.size, size=(num_resamples, differences.size))
    means = differences[picks].mean(axis=1)
    tail = (1 - confidence) / 2
    result["low"], result["high"] = (float(v) for v in np.quantile(means, [tail, 1 - tail]))
    return result


def paired_differences(results: Sequence[Mapping[str, Any] | None], dataset: str,
                       reference: str, others: Sequence[str], keys: Sequence[str],
                       **options: Any) -> dict[str, dict[str, dict[str, float | int]]]:
    """:func:`paired_difference` of ``reference`` against each of ``others`` on one dataset of a
    study, for every score in ``keys``, the cells paired by seed.

    :param results: the study's cell results (``{"dataset", "variant", "seed", "status",
        "scores"}``; None for a cell that has not finished).
    :param str dataset: the dataset.
    :param str reference: the reference model (e.g. ``"hierarchical"``).
    :param others: the models compared with it.
    :param keys: keys of the cells' ``scores``.
    :param options: keywords of :func:`paired_difference`.
    :returns: ``{other: {key: {"mean", "low", "high", "num_seeds"}}}``.
    """
    by_cell = {(r["variant"], r["seed"]): r["scores"] for r in results
               if r and r["dataset"] == dataset and r["status"] == "ok"}
    seeds = sorted({seed for variant, seed in by_cell if variant == reference})

    def score(variant: str, seed: int, key: str) -> float:
        value = by_cell.get((variant, seed), {}).get(key)
        return math.nan if value is None else float(value)

    return {other: {key: paired_difference([score(reference, s, key) for s in seeds],
                                           [score(other, s, key) for s in seeds], **options)
                    for key in keys}
            for other in others if other != reference}

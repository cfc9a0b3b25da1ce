"""
The scores of one trained model of the variant study (:func:`score_cell`): its codes against
the ground-truth factors, the intervention scores (BetaVAE, FactorVAE), the dynamics
diagnostics, the held-out ELBO, reconstruction and forecast errors, and the static/dynamic
protocol. Training the model and keeping the results is :mod:`~pyro_dynvae.assessment.study`'s.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from pyro_dynvae import metrics
from pyro_dynvae.config import TrainConfig
from pyro_dynvae.evaluation import evaluate

from . import scoring
from .background import BACKGROUND_FACTORS
from .budget import StudyBudget
from .encoding import encode_sequences
from .judge import Judge
from .protocol import static_dynamic_report


class FrameRepresentation:
    """
    Codes of single frames for the intervention scores: each frame ``(C, H, W)`` becomes a
    static two-frame sequence, and its code is the posterior mean ``z_mean`` averaged over the
    two frames (the sequence models need ``T >= 2``).

    :param dynvae: a trained model.
    :param int chunk: frames encoded at once.
    """

    def __init__(self, dynvae: torch.nn.Module, chunk: int = 256) -> None:
        self.dynvae = dynvae
        self.chunk = chunk

    def __call__(self, images: Any) -> np.ndarray:
        images = torch.as_tensor(images, dtype=torch.float32)
        codes = []
        for start in range(0, images.shape[0], self.chunk):
            frames = images[start : start + self.chunk, None].expand(-1, 2, -1, -1, -1)
            codes.append(encode_sequences(self.dynvae, frames)["z_mean"].mean(axis=1))
        return np.concatenate(codes)


@torch.no_grad()
def encode_factor_dataset(dynvae: torch.nn.Module, dataset: Any,
                          chunk: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Posterior means ``(S, T, n)`` and factors ``(S, T, K)`` of every sequence of
    ``dataset``, rendered and encoded ``chunk`` sequences at a time (the frames are never held
    all at once)."""
    codes, factors = [], []
    for start in range(0, len(dataset), chunk):
        frames, batch_factors = dataset.get_batch(range(start, min(start + chunk, len(dataset))))
        codes.append(encode_sequences(dynvae, frames)["z_mean"])
        factors.append(batch_factors.numpy())
    return np.concatenate(codes), np.concatenate(factors)


def code_metrics(codes: np.ndarray, factors: np.ndarray, space: Any, budget: StudyBudget,
                 seed: int) -> dict[str, Any]:
    """
    Codes-vs-factors scores (:func:`~pyro_dynvae.assessment.scoring.score_codes`) of
    per-frame codes ``(S, T, n)`` against the factors ``(S, T, K)`` of ``space`` (a dataset's
    ``factor_subset()``), reduced to what a frame shows, with their types: one frame of every
    sequence, predictors fitted on two thirds of the sequences and scored on the rest.

    :returns: the floats of :data:`~pyro_dynvae.assessment.scoring.SCORE_KEYS`,
        ``"probes"`` (per factor) and ``"factors"`` (the names scored, in column order).
    """
    scores = scoring.score_factor_space(codes, factors, space,
                                        dci_predictor=budget.dci_predictor, random_state=seed)
    return {key: scores[key] for key in (*scoring.SCORE_KEYS, "probes", "factors")}


def intervention_metrics(dynvae: torch.nn.Module, sampler: Any, budget: StudyBudget,
                         seed: int) -> dict[str, float]:
    """BetaVAE and FactorVAE scores (evaluation accuracy) at the budget's sample sizes."""
    representation = FrameRepresentation(dynvae)
    sizes = {"batch_size": budget.intervention_batch_size,
             "num_train": budget.intervention_num_train,
             "num_eval": budget.intervention_num_eval, "random_state": seed}
    beta = metrics.beta_vae_score(representation, sampler, **sizes)
    factor = metrics.factor_vae_score(representation, sampler,
                                      num_variance_estimate=budget.variance_estimate, **sizes)
    return {"beta_vae": beta["eval_accuracy"], "factor_vae": factor["eval_accuracy"],
            "factor_vae_active_dims": factor["num_active_dims"]}


def dynamics_diagnostics(encoded: dict[str, np.ndarray], factors: np.ndarray,
                         factor_names: Sequence[str]) -> dict[str, Any]:
    """Eigenvalue bimodality (models with transition eigenvalues) and the object/background
    overlap (datasets with a background factor); NaN where they do not apply."""
    result: dict[str, Any] = {"eig_bimodality": math.nan, "eig_separation": math.nan,
                              "overlap": math.nan}
    if "eigenvalues" in encoded:
        bimodality = metrics.eigenvalue_bimodality(encoded["eigenvalues"])
        result.update(eig_bimodality=bimodality["bimodality_coefficient"],
                      eig_separation=bimodality["separation"],
                      static_latents=bimodality["static_latents"],
                      dynamic_latents=bimodality["dynamic_latents"],
                      eig_mean_abs_deviation=bimodality["mean_abs_deviation"])
    background = [i for i, name in enumerate(factor_names) if name in BACKGROUND_FACTORS]
    if background:
        objects = [i for i in range(len(factor_names)) if i not in background]
        overlap = metrics.object_background_overlap(encoded["z_mean"], factors, objects,
                                                    background)
        result.update(overlap=overlap["overlap"], object_latents=overlap["object_latents"],
                      background_latents=overlap["background_latents"])
    return result


def score_cell(dynvae: torch.nn.Module, test_data: Any, score_data: Any, config: TrainConfig,
               budget: StudyBudget, *, judge: Judge | None = None,
               figure_path: str | os.PathLike | None = None,
               ) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """
    Every score of a trained model on held-out sequences: the codes-vs-factors scores and the
    static/dynamic protocol on ``score_data``, the rest on ``test_data``.

    :param torch.nn.Module dynvae: the trained model.
    :param test_data: the cell's held-out dataset.
    :param score_data: the held-out sequences the codes are scored on
        (:func:`~.study.make_score_dataset`).
    :param TrainConfig config: the configuration the model was trained with.
    :param StudyBudget budget: the study's sample sizes.
    :param Judge judge: the dataset's judge (:func:`~.study.study_judge`); None: no protocol.
    :param figure_path: where the protocol saves its figure of swapped sequences.
    :returns: ``(scores, encoded)``: a flat dict of floats (see :data:`~.report.COLUMNS` and
        :data:`~.report.PROTOCOL_COLUMNS`) plus the diagnostics' latent groups and the protocol's
        details (``"static_dynamic"``, or its refusal of the judge), and the encoded arrays
        (codes, eigenvalues, prior scales).
    """
    dynvae.eval()
    frames, all_factors = test_data.get_batch(range(len(test_data)))
    sampler = test_data.factor_subset()
    columns = [test_data.factor_index(name) for name in sampler.factor_names]
    factors = all_factors[..., columns].numpy()
    encoded = encode_sequences(dynvae, frames)
    score_codes, score_factors = encode_factor_dataset(dynvae, score_data)
    scores = code_metrics(score_codes, score_factors[..., columns], sampler, budget,
                          config.seed)
    scores.update(intervention_metrics(dynvae, sampler, budget, config.seed))
    scores.update(dynamics_diagnostics(encoded, factors, sampler.factor_names))
    quality = evaluate(dynvae, test_data, batch_size=config.batch_size,
                       forecast_horizon=config.forecast_horizon, seed=config.seed)
    scores.update({key: quality[key] for key in ("recon_mse", "forecast_mse",
                                                 "forecast_vs_best_baseline", "elbo")})
    scores["forecast_best_baseline"] = quality["forecast"]["best_baseline"]
    scores["forecast_object_vs_best_baseline"] = quality["forecast"][
        "object_ratio_to_best_baseline"]
    if judge is not None:
        report = static_dynamic_report(dynvae, score_data, judge, seed=config.seed,
                                       num_pairs=budget.protocol_pairs, figure_path=figure_path)
        scores["static_dynamic"] = report
        scores.update(report.get("summary", {}))
    return scores, encoded

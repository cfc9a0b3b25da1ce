r"""Swap and prior-sample tests: replace one group of latents, decode, and ask a judge which
factors survived.

The field's protocol of sequential disentanglement (DSVAE, Li & Mandt 2018; S3VAE, Zhu et al.
2020, "S3VAE: Self-supervised sequential VAE for representation disentanglement and data
generation"; C-DSVAE, Bai et al. 2021, "Contrastively disentangled sequential variational
autoencoder"; SKD, Berman et al. 2023): keep one latent group of a video, replace the other,
decode, and have a separately trained judge (:class:`~pyro_dynvae.assessment.judge.Judge`) read
every factor of the result.

- :func:`exchange_test` (the swap): for pairs ``(a, b)`` of held-out sequences, ``a``'s
  per-frame posterior means with latents ``L`` taken from ``b``; the judge should read ``b``'s
  values of the factors ``L`` carries and ``a``'s of the others. Static latents are transplanted
  as ``b``'s *sequence mean* (a static code is one per sequence, as DSVAE's ``f``), moving
  latents (the slow group of the object/background swap) frame by frame.
- :func:`resample_test` (C-DSVAE's variant): latents ``L`` drawn from the model's prior
  (``sample_prior_latents``) frame by frame, the others kept; the judge should read the kept
  factors of the source and new values of the resampled ones.

Reading: the judge reads sequences (:meth:`~.judge.Judge.predict_sequences`: static factors
once per sequence from its frames' average reading) from decoded frames clipped to [0, 1].
Scores per factor are the judge's (:meth:`~.judge.Judge.score`): accuracy and the majority
class's share (``chance``) for classes; for continuous and periodic factors the tolerance
accuracy ``|error| <= tolerance * P`` beside the best constant reader's (``chance``), the mean
absolute error beside its ``chance_mae``, and ``R^2``.

Class scores of generated sequences (:func:`class_scores`, S3VAE's): with the judge's class
probabilities :math:`p(y | x)` (averaged over the frames for a static factor),
:math:`p(y) = E_x p(y | x)`,

.. math::

    \mathrm{IS} = \exp E_x \mathrm{KL}(p(y|x) \,\|\, p(y)) = \exp(H(y) - H(y|x)),
    \qquad H(y|x) = E_x H(p(y|x)),

(Salimans et al. 2016, "Improved techniques for training GANs"): IS lies in ``[1, K]``, high
when the generated classes are both confident (low :math:`H(y|x)`) and diverse (high
:math:`H(y)`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from .encoding import model_device
from .judge import Judge

#: sequences decoded at once
DECODE_CHUNK = 64


def replace_latents(codes: torch.Tensor, donor: torch.Tensor, latents: Sequence[int], *,
                    sequence_mean: bool) -> torch.Tensor:
    """``codes`` with the ``latents`` columns taken from ``donor``.

    :param torch.Tensor codes: ``(P, T, n)``.
    :param torch.Tensor donor: ``(P, T', n)`` (``T' = T`` unless ``sequence_mean``).
    :param latents: column indices.
    :param bool sequence_mean: take the donor's mean over its frames (a static code) rather
        than its values frame by frame.
    """
    latents = list(latents)
    mixed = codes.clone()
    if not latents:
        return mixed
    values = donor[..., latents]
    if sequence_mean:
        values = values.mean(-2, keepdim=True)
    mixed[..., latents] = values.expand(*codes.shape[:-1], len(latents)).to(codes)
    return mixed


@torch.no_grad()
def decode_sequences(model: Any, codes: torch.Tensor) -> torch.Tensor:
    """Frames ``(P, T, C, H, W)`` on the CPU, clipped to [0, 1], decoded from ``(P, T, n)``."""
    device = model_device(model)
    frames = [model.decode(part.to(device)).cpu() for part in codes.split(DECODE_CHUNK)]
    return torch.cat(frames).clamp(0, 1)


def class_scores(probabilities: torch.Tensor) -> dict[str, float]:
    """IS, :math:`H(y|x)` and :math:`H(y)` (nats) of class probabilities ``(N, K)``."""
    p = probabilities.double().clamp(min=1e-12)
    p = p / p.sum(-1, keepdim=True)
    marginal = p.mean(0)
    conditional = -(p * p.log()).sum(-1).mean()
    marginal_entropy = -(marginal * marginal.log()).sum()
    return {
        "inception_score": float((marginal_entropy - conditional).exp()),
        "conditional_entropy": float(conditional),
        "marginal_entropy": float(marginal_entropy),
        "num_classes": int(p.shape[-1]),
    }


def sequence_class_scores(judge: Judge, frames: torch.Tensor) -> dict[str, dict[str, float]]:
    """:func:`class_scores` of every categorical factor the judge reads, of sequences
    ``(P, T, C, H, W)``: per sequence (probabilities averaged over its frames) for a static
    factor, per frame for a dynamic one."""
    static = set(judge.static_factors)
    scores = {}
    for name, probabilities in judge.class_probabilities(frames).items():
        if name in static:
            probabilities = probabilities.mean(-2)
        scores[name] = class_scores(probabilities.reshape(-1, probabilities.shape[-1]))
    return scores


def group_summary(scores: dict[str, dict[str, Any]], names: Sequence[str]) -> dict[str, Any]:
    """Mean accuracy and chance over the factors ``names`` (None if there are none)."""
    names = [name for name in names if name in scores]
    if not names:
        return {"factors": [], "accuracy": None, "chance": None}
    return {
        "factors": names,
        "accuracy": float(np.mean([scores[name]["accuracy"] for name in names])),
        "chance": float(np.mean([scores[name]["chance"] for name in names])),
    }


def _mixed_rows(source: torch.Tensor, donor: torch.Tensor, judge: Judge,
                names: Sequence[str]) -> torch.Tensor:
    """``source``'s factor rows ``(P, T, K)`` with the columns of ``names`` from ``donor``."""
    rows = source.clone()
    for name in names:
        column = judge.dataset.factor_index(name)
        rows[..., column] = donor[..., column]
    return rows


def _check_factor_names(judge: Judge, names: Sequence[str], argument: str) -> list[str]:
    names = list(names)
    unknown = [name for name in names if name not in judge.factor_names]
    if unknown:
        raise ValueError(f"{argument} must be factors the judge reads {judge.factor_names}, "
                         f"got {unknown}")
    return names


def exchange_test(model: Any, judge: Judge, codes_a: torch.Tensor, codes_b: torch.Tensor,
                  factors_a: torch.Tensor, factors_b: torch.Tensor, latents: Sequence[int],
                  followed: Sequence[str], *, sequence_mean: bool,
                  tolerance: float = 0.05) -> tuple[dict[str, Any], torch.Tensor]:
    """Decode ``a``'s codes with ``latents`` from ``b`` and score the judge's reading against
    ``b``'s values of the factors ``followed`` and ``a``'s of the others.

    :param model: ``decode(latents (..., n)) -> (..., C, H, W)``.
    :param Judge judge: the reader.
    :param torch.Tensor codes_a: per-frame posterior means ``(P, T, n)`` of the sources.
    :param torch.Tensor codes_b: those of the donors.
    :param torch.Tensor factors_a: the sources' factor rows ``(P, T, K)``.
    :param torch.Tensor factors_b: the donors'.
    :param latents: the latents taken from the donors.
    :param followed: names of the factors the exchanged latents should carry.
    :param bool sequence_mean: transplant the donor's sequence mean (static latents) rather
        than its frames (see :func:`replace_latents`).
    :param float tolerance: the judge's tolerance (fraction of a factor's period or range).
    :returns: ``(result, frames)``: ``result`` has ``"factors"`` (the judge's scores against
        the wanted rows, each with ``"wanted"``: ``"donor"`` or ``"source"``, and for followed
        factors ``"source_accuracy"``, how often the judge still reads the source's value),
        ``"followed"`` and ``"kept"`` (:func:`group_summary`); ``frames`` ``(P, T, C, H, W)``.
    """
    followed = _check_factor_names(judge, followed, "followed")
    frames = decode_sequences(model, replace_latents(codes_a, codes_b, latents,
                                                     sequence_mean=sequence_mean))
    wanted = _mixed_rows(factors_a, factors_b, judge, followed)
    scores = judge.score(frames, wanted, sequences=True, tolerance=tolerance)
    against_source = judge.score(frames, factors_a, sequences=True, tolerance=tolerance)
    for name, metrics in scores.items():
        metrics["wanted"] = "donor" if name in followed else "source"
        if name in followed:
            metrics["source_accuracy"] = against_source[name]["accuracy"]
    kept = [name for name in judge.factor_names if name not in followed]
    return {
        "latents": [int(i) for i in latents],
        "factors": scores,
        "followed": group_summary(scores, followed),
        "kept": group_summary(scores, kept),
    }, frames


def resample_test(model: Any, judge: Judge, codes: torch.Tensor, factors: torch.Tensor,
                  prior: torch.Tensor, latents: Sequence[int], resampled: Sequence[str], *,
                  tolerance: float = 0.05) -> tuple[dict[str, Any], torch.Tensor]:
    """Decode ``codes`` with ``latents`` replaced by prior samples, frame by frame, and score
    the judge's reading against the sources' factors.

    :param torch.Tensor codes: per-frame posterior means ``(P, T, n)`` of the sources.
    :param torch.Tensor factors: their factor rows ``(P, T, K)``.
    :param torch.Tensor prior: latents ``(P, T, n)`` drawn from the model's prior.
    :param latents: the latents resampled.
    :param resampled: the factors they should carry (should change; the others are kept).
    :returns: ``(result, frames)``: ``result`` has ``"factors"`` (scores against the sources'
        rows), ``"kept"`` and ``"resampled"`` (:func:`group_summary`; a resampled factor
        should fall to chance) and ``"class_scores"`` (:func:`sequence_class_scores`).
    """
    resampled = _check_factor_names(judge, resampled, "resampled")
    frames = decode_sequences(model, replace_latents(codes, prior, latents,
                                                     sequence_mean=False))
    scores = judge.score(frames, factors, sequences=True, tolerance=tolerance)
    kept = [name for name in judge.factor_names if name not in resampled]
    return {
        "latents": [int(i) for i in latents],
        "factors": scores,
        "kept": group_summary(scores, kept),
        "resampled": group_summary(scores, resampled),
        "class_scores": sequence_class_scores(judge, frames),
    }, frames

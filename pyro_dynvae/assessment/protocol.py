"""The static/dynamic protocol of a trained model, in one call: the split, its agreement with
the truth, the swap, the prior-sample tests and the object/background swap, read by a judge.

:func:`assess_static_dynamic` draws ``2P`` held-out sequences of a dataset, pairs the first
``P`` (sources ``a``) with the others (donors ``b``), encodes them (per-frame posterior means),
and then

1. splits the latents into static and dynamic from the model alone (:mod:`.split`);
2. scores the split against the latents the ground truth says carry static factors
   (:mod:`.agreement`);
3. swap (:func:`.swap.exchange_test`): ``a``'s codes with ``b``'s static latents (``b``'s
   sequence mean), read against ``b``'s static factors and ``a``'s dynamic ones (DSVAE, Li &
   Mandt 2018; SKD, Berman et al. 2023);
4. prior samples (:func:`.swap.resample_test`; S3VAE, Zhu et al. 2020; C-DSVAE, Bai et al.
   2021): ``a``'s static latents with dynamic latents from the prior (``static_kept``), and
   ``a``'s dynamic latents with static latents from the prior (``dynamic_kept``), with IS and
   ``H(y|x)`` of the classes;
5. object vs background (:mod:`.background`) where the judge reads a background factor.

Every score stands beside its chance level, beside the judge's own reading of the real sequences
``a`` (``judge_real``, the ceiling) and of the model's reconstructions of them
(``reconstruction``, this model's ceiling). The protocol refuses a judge below
:data:`MIN_ACCURACY` on any class and :data:`MIN_R2` on any continuous or periodic factor
(:meth:`.judge.Judge.check`): a swap read by a judge that cannot read real frames means nothing.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pyro_dynvae.data import FactorDataset
from pyro_dynvae.viz import plot_swaps

from .agreement import split_agreement
from .background import object_background_test
from .encoding import encode_sequences, model_device
from .judge import Judge, JudgeAccuracyError, load_or_train_judge
from .scoring import without_nan
from .split import static_dynamic_split
from .swap import (
    decode_sequences,
    exchange_test,
    group_summary,
    resample_test,
    sequence_class_scores,
)

#: least held-out accuracy of the judge on every categorical factor
MIN_ACCURACY = 0.95
#: least held-out R^2 of the judge on every continuous or periodic factor
MIN_R2 = 0.9

#: where :func:`protocol_judge` caches judges unless told otherwise
JUDGE_CACHE_ENV = "PYRO_DYNVAE_JUDGE_CACHE"
DEFAULT_JUDGE_CACHE = Path("~/.cache/pyro_dynvae/judges")

#: pairs shown in the figure
FIGURE_PAIRS = 3

#: the figure's rows besides a and b: label -> key of the generated frames
FIGURE_ROWS = {"swap": "swap", "prior dyn": "static_kept", "prior static": "dynamic_kept",
               "bg swap": "object_background"}


def _check_judge(judge: Judge, dataset: FactorDataset) -> None:
    if not isinstance(judge, Judge):
        raise TypeError(f"judge must be a Judge, got {type(judge).__name__}")
    if not isinstance(dataset, FactorDataset):
        raise TypeError(f"dataset must be a FactorDataset, got {type(dataset).__name__}")
    frame_shape = tuple(dataset[0][0].shape[1:])
    if judge.dataset.factor_names != dataset.factor_names or judge.frame_shape != frame_shape:
        raise ValueError(
            f"judge reads frames {judge.frame_shape} with factors {judge.dataset.factor_names}, "
            f"the dataset has frames {frame_shape} with factors {dataset.factor_names}"
        )


@torch.no_grad()
def _prior_latents(model: Any, num_sequences: int, num_frames: int,
                   seed: int) -> torch.Tensor | None:
    """``model.sample_prior_latents`` on forked generators seeded with ``seed`` (None if the
    model has no prior sampler)."""
    sample = getattr(model, "sample_prior_latents", None)
    if sample is None:
        return None
    device = model_device(model)
    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        return torch.as_tensor(sample(num_sequences, num_frames)).float().cpu()


def _summary(result: Mapping[str, Any]) -> dict[str, float | None]:
    """The headline numbers as flat keys (see :func:`assess_static_dynamic`)."""
    flat: dict[str, float | None] = {
        "num_static_latents": len(result["split"]["static_latents"]),
        "num_dynamic_latents": len(result["split"]["dynamic_latents"]),
        "split_agreement": result["split_agreement"]["agreement"],
        "split_agreement_chance": result["split_agreement"]["chance"],
        "split_kappa": result["split_agreement"]["kappa"],
    }
    groups = {
        "swap_static": result["swap"]["followed"],
        "swap_dynamic": result["swap"]["kept"],
        "judge_static": result["judge_real"]["static"],
        "judge_dynamic": result["judge_real"]["dynamic"],
        "reconstruction_static": result["reconstruction"]["static"],
        "reconstruction_dynamic": result["reconstruction"]["dynamic"],
    }
    if result["static_kept"] is not None:
        groups["prior_static_kept"] = result["static_kept"]["kept"]
        groups["prior_dynamic_kept"] = result["dynamic_kept"]["kept"]
    if result["object_background"] is not None:
        groups["background_follows"] = result["object_background"]["background_follows"]
        groups["object_kept"] = result["object_background"]["object_kept"]
    for key, group in groups.items():
        flat[f"{key}_accuracy"] = group["accuracy"]
        flat[f"{key}_chance"] = group["chance"]
    return flat


def assess_static_dynamic(model: Any, dataset: FactorDataset, judge: Judge, *,
                          num_pairs: int = 128, seed: int = 0, tolerance: float = 0.05,
                          min_accuracy: float = MIN_ACCURACY, min_r2: float = MIN_R2,
                          rule: str | None = None,
                          figure_path: str | os.PathLike | None = None) -> dict[str, Any]:
    """The static/dynamic protocol of ``model`` on held-out sequences of ``dataset``.

    :param model: ``encode(frames) -> {"z_mean": (B, T, n), ...}``,
        ``decode(latents (..., n)) -> (..., C, H, W)`` and, for the prior-sample tests,
        ``sample_prior_latents(num_sequences, num_frames)`` (e.g. a
        :class:`~pyro_dynvae.models.DynamicsVAE`).
    :param FactorDataset dataset: held-out sequences with their factors.
    :param Judge judge: a judge of ``dataset``'s frames (:func:`~.judge.load_or_train_judge`).
    :param int num_pairs: pairs ``P`` (at most ``len(dataset) // 2``).
    :param int seed: seed of the sequences drawn and of the prior samples.
    :param float tolerance: the judge's tolerance for continuous and periodic factors.
    :param float min_accuracy: the judge's least held-out class accuracy.
    :param float min_r2: the judge's least held-out ``R^2``.
    :param str rule: the split rule (:func:`~.split.static_dynamic_split`; default by model).
    :param figure_path: where to save the figure of swapped sequences (rows ``a``, ``b``,
        swap, prior dynamics, prior static, background swap; :func:`pyro_dynvae.viz.plot_swaps`).
    :returns: a JSON-serialisable dict: ``"summary"`` (flat headline numbers:
        ``swap_static_accuracy`` / ``_chance`` (the judge reads ``b``'s static factors),
        ``swap_dynamic_*`` (``a``'s dynamic factors), ``prior_static_kept_*`` and
        ``prior_dynamic_kept_*`` (the kept factors of the prior-sample tests),
        ``background_follows_*`` and ``object_kept_*``, ``judge_*`` and ``reconstruction_*``
        (the judge on real and reconstructed sequences), ``split_agreement`` / ``_chance`` /
        ``split_kappa``, the number of static and dynamic latents; each accuracy the mean over
        the group's factors of the judge's accuracy (tolerance accuracy for continuous ones));
        the per-factor details under ``"split"``, ``"split_agreement"``, ``"judge"`` (its
        held-out report), ``"judge_real"``, ``"reconstruction"``, ``"swap"``, ``"static_kept"``,
        ``"dynamic_kept"`` (None without a prior sampler), ``"object_background"`` (None
        without a background factor), ``"class_scores_real"``, ``"protocol"`` and
        ``"figure"``.
    :raises JudgeAccuracyError: if the judge reads held-out frames below the requirement.
    """
    _check_judge(judge, dataset)
    if isinstance(num_pairs, bool) or not isinstance(num_pairs, int) or num_pairs < 1:
        raise ValueError(f"num_pairs must be a positive int, got {num_pairs!r}")
    if not 0 < tolerance < 1:
        raise ValueError(f"tolerance must be in (0, 1), got {tolerance}")
    judge.check(min_accuracy=min_accuracy, min_r2=min_r2)
    pairs = min(num_pairs, len(dataset) // 2)
    if pairs < 1:
        raise ValueError(f"dataset must hold at least 2 sequences, got {len(dataset)}")
    order = np.random.default_rng(seed).permutation(len(dataset))[: 2 * pairs]
    frames, factors = dataset.get_batch(order.tolist())
    encoded = encode_sequences(model, frames)
    codes = torch.as_tensor(encoded["z_mean"], dtype=torch.float32)
    split = static_dynamic_split(model, encoded, rule=rule)
    static = judge.static_factors
    dynamic = [name for name in judge.factor_names if name not in static]
    a, b = slice(0, pairs), slice(pairs, 2 * pairs)

    def groups(scores: dict[str, Any]) -> dict[str, Any]:
        return {"factors": scores, "static": group_summary(scores, static),
                "dynamic": group_summary(scores, dynamic)}

    generated = {}
    result: dict[str, Any] = {
        "protocol": {"num_pairs": pairs, "seed": seed, "tolerance": tolerance,
                     "min_accuracy": min_accuracy, "min_r2": min_r2,
                     "static_factors": static, "dynamic_factors": dynamic,
                     "static_code": "the donor's sequence mean of its static latents",
                     "judge_reading": "sequences (static factors from the frames' average)"},
        "split": split.to_dict(),
        "split_agreement": split_agreement(split, encoded["z_mean"], factors, dataset),
        "judge": judge.report.get("factors"),
        "judge_real": groups(judge.score(frames[a], factors[a], sequences=True,
                                         tolerance=tolerance)),
        "reconstruction": groups(judge.score(decode_sequences(model, codes[a]), factors[a],
                                             sequences=True, tolerance=tolerance)),
        "class_scores_real": sequence_class_scores(judge, frames[a]),
    }
    result["swap"], generated["swap"] = exchange_test(
        model, judge, codes[a], codes[b], factors[a], factors[b], split.static, static,
        sequence_mean=True, tolerance=tolerance)
    prior = _prior_latents(model, pairs, frames.shape[1], seed)
    result["static_kept"] = result["dynamic_kept"] = None
    if prior is not None:
        result["static_kept"], generated["static_kept"] = resample_test(
            model, judge, codes[a], factors[a], prior, split.dynamic, dynamic,
            tolerance=tolerance)
        result["dynamic_kept"], generated["dynamic_kept"] = resample_test(
            model, judge, codes[a], factors[a], prior, split.static, static,
            tolerance=tolerance)
    background = object_background_test(model, judge, split, codes[a], codes[b], factors[a],
                                         factors[b], tolerance=tolerance)
    result["object_background"] = None
    if background is not None:
        result["object_background"], generated["object_background"] = background
    result["figure"] = None
    if figure_path is not None:
        rows = {label: generated[key] for label, key in FIGURE_ROWS.items() if key in generated}
        title = ("a, b; swap: a's dynamic latents + b's static ones; prior dyn / static: a's "
                 "static / dynamic latents + prior samples; bg swap: b's slow latents")
        result["figure"] = str(plot_swaps(frames[a], frames[b], rows, figure_path, title,
                                          max_pairs=FIGURE_PAIRS))
    result["summary"] = _summary(result)
    return without_nan(result)


def protocol_judge(judge_data: FactorDataset, held_out: FactorDataset | None = None, *,
                   cache_dir: str | os.PathLike | None = None, **options: Any) -> Judge:
    """The judge of a dataset's frames, loaded from a cache or trained into it once
    (:func:`~.judge.load_or_train_judge`).

    :param FactorDataset judge_data: its training distribution (e.g. the training split).
    :param FactorDataset held_out: the rows of its held-out report (e.g. the held-out split,
        whose digits the training split does not show); default ``judge_data``.
    :param cache_dir: the cache (default ``$PYRO_DYNVAE_JUDGE_CACHE``, else
        ``~/.cache/pyro_dynvae/judges``).
    :param options: ``seed`` and the keywords of :meth:`.judge.Judge.train` (``steps``...).
    """
    if cache_dir is None:
        cache_dir = os.environ.get(JUDGE_CACHE_ENV) or DEFAULT_JUDGE_CACHE.expanduser()
    return load_or_train_judge(judge_data, cache_dir, held_out=held_out, **options)


def static_dynamic_report(model: Any, dataset: FactorDataset, judge: Judge,
                          **options: Any) -> dict[str, Any]:
    """:func:`assess_static_dynamic`, or ``{"refused": message, "judge": its held-out report}``
    when the protocol refuses the judge (for ``metrics.json`` and the study, which record the
    refusal rather than stop).

    :param options: keywords of :func:`assess_static_dynamic`.
    """
    try:
        return assess_static_dynamic(model, dataset, judge, **options)
    except JudgeAccuracyError as error:
        return without_nan({"refused": str(error), "judge": judge.report.get("factors")})

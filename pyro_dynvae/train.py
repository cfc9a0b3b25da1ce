"""
Lightning training of a dynamics VAE's ELBO.

Following Pyro's ``examples/svi_lightning.py``, the loss is Pyro's
:class:`~pyro.infer.elbo.ELBOModule` (``elbo(model, guide)``) with module-local parameters, and
a :class:`lightning.pytorch.LightningModule` whose ``training_step`` returns that loss and whose
optimiser covers ``loss_fn.parameters()``. Lightning then provides progress bars, checkpoints,
resumption, CSV/TensorBoard logs, gradient clipping and DDP across devices and nodes.

Every run writes one folder::

    run_dir/
      config.json        training, model and data configuration plus library versions
      checkpoints/       last.ckpt (and the newest periodic checkpoint)
      logs/version_N/    metrics.csv (and TensorBoard events when tensorboard is installed);
                         N counts the starts, so a resumed run keeps its earlier logs
      metrics.json       held-out ELBO, reconstruction and forecast errors
      figures/           PNGs written by :mod:`pyro_dynvae.viz`

A folder holds one run: :func:`train` refuses a folder that already holds one unless it resumes
that run (``resume=True``, which may change only the options in :data:`RESUMABLE` and records
each resume in ``config.json``'s ``history``) or replaces it (``overwrite=True``, which first
removes everything in :data:`RUN_CONTENTS`). Checkpoints are always ``checkpoints/last.ckpt``
of the run being trained.

Reproducibility: the data order is a pure function of ``(seed, step)`` (see
:class:`StepBatchSampler`), the RNG states are stored in every checkpoint, and validation runs
on a forked RNG, so a run resumed from a checkpoint takes exactly the steps of an uninterrupted
run.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import os
import pickle
import shutil
import sys
import warnings
import weakref
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import lightning
import lightning.pytorch as pl
import numpy as np
import pyro
import torch
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger, Logger, TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_only
from torch.utils.data import DataLoader, Dataset, Sampler

from pyro_dynvae import __version__
from pyro_dynvae.assessment.judge import Judge
from pyro_dynvae.assessment.protocol import static_dynamic_report
from pyro_dynvae.assessment.scoring import score_factor_space, without_nan
from pyro_dynvae.data import DynamicSprites, FactorDataset, MemoizedSequences, MovingMNIST
from pyro_dynvae.defaults import dataset_options, model_options
from pyro_dynvae.inference_data import (
    dynamics_inference_data,
    dynamics_summary,
    plot_prior_scales,
)
from pyro_dynvae.metrics import eigenvalue_bimodality, forecast_scores
from pyro_dynvae.metrics.digit_reading import digit_reading
from pyro_dynvae.models import build_model
from pyro_dynvae.nets import conv_kernels
from pyro_dynvae.viz import save_run_figures

# Parameters live in their PyroModules (not Pyro's global param store), as ELBOModule training
# requires; PyroModules must be constructed after this is set, so it is set on import.
pyro.settings.set(module_local_params=True)

#: dataset name -> class in :mod:`pyro_dynvae.data`
DATASETS = {"moving_mnist": MovingMNIST, "sprites": DynamicSprites}

#: frames a forecast observes at least (the eigenvalue network reads pairs of frames)
MIN_OBSERVED_FRAMES = 2

#: what a run writes into its folder; ``train(..., overwrite=True)`` removes exactly these
RUN_CONTENTS = (
    "config.json", "checkpoints", "logs", "metrics.json", "figures", "dynamics.nc",
    "dynamics_summary.csv",
)

#: most pairs of held-out sequences of the static/dynamic protocol in :func:`finish_run`
PROTOCOL_PAIRS = 256

#: TrainConfig fields a resumed run may change: how it is optimised and where it runs, never
#: the model, the data or the evaluation
RESUMABLE = (
    "learning_rate", "gradient_clip_val", "max_steps", "val_every", "checkpoint_every",
    "num_workers", "accelerator", "devices", "num_nodes", "strategy", "threads",
)


@dataclasses.dataclass
class TrainConfig:
    """
    Everything a training run needs besides the model weights; saved as ``config.json``.

    The defaults are the example's run (``examples/moving_mnist.py``, and ``pyro-dynvae train``
    without options): the ``hierarchical`` variant on one digit bouncing in a 64x64 canvas, 10
    frames; the model options each dataset needs come from :mod:`pyro_dynvae.defaults`.

    :param str variant: model variant name (a key of :data:`pyro_dynvae.models.VARIANTS`).
    :param dict model_overrides: extra keyword arguments for
        :func:`~pyro_dynvae.models.build_model`.
    :param str dataset: ``"moving_mnist"`` or ``"sprites"``.
    :param int num_sequences: training sequences.
    :param dict dataset_options: extra keyword arguments for the dataset class (e.g.
        ``{"num_digits": 1}``).
    :param int num_val_sequences: held-out sequences (see :func:`make_dataset`).
    :param int num_frames: frames per sequence ``T``.
    :param int image_size: frame height and width.
    :param int latent_dim: latent dimension ``n``.
    :param int batch_size: sequences per optimiser step and device.
    :param float learning_rate: Adam learning rate.
    :param int max_steps: total optimiser steps.
    :param float gradient_clip_val: clip the global gradient norm to this (0 disables).
    :param int seed: seed for parameters, data order and the ELBO's Monte Carlo noise.
    :param int val_every: validate every this many steps (0: only at the end).
    :param int checkpoint_every: checkpoint every this many steps.
    :param int forecast_horizon: frames ``k`` to forecast in validation.
    :param int num_workers: DataLoader worker processes.
    :param str accelerator: Lightning accelerator (``auto``, ``cpu``, ``gpu``).
    :param str devices: Lightning devices (``auto``, a count, or a list such as ``0,1``).
    :param int num_nodes: number of nodes for DDP.
    :param str strategy: Lightning strategy (``auto``, ``ddp``, ``ddp_spawn``, ...).
    :param int threads: torch intra-op threads per process (``torch.set_num_threads``; 0 leaves
        torch's default).
    :param int kl_warmup_steps: KL annealing (Bowman et al. 2016, Sonderby et al. 2016): the
        latent ``z`` term of the ELBO is scaled by ``min(1, (s + 1) / kl_warmup_steps)`` at step
        ``s``, so the decoder learns to use the latents before the KL prices them (0: off).
        Validation and metrics always use the full ELBO.

    Every field is checked on construction (type and range, ``ValueError``/``TypeError`` naming
    the field), so a bad value fails before anything is written.
    """

    variant: str = "hierarchical"
    model_overrides: dict = dataclasses.field(default_factory=dict)
    dataset: str = "moving_mnist"
    dataset_options: dict = dataclasses.field(default_factory=dict)
    num_sequences: int = 4096
    num_val_sequences: int = 64
    num_frames: int = 10
    image_size: int = 64
    latent_dim: int = 8
    batch_size: int = 16
    learning_rate: float = 2e-3
    max_steps: int = 2000
    gradient_clip_val: float = 10.0
    seed: int = 0
    val_every: int = 500
    checkpoint_every: int = 250
    forecast_horizon: int = 3
    num_workers: int = 0
    accelerator: str = "auto"
    devices: str = "auto"
    num_nodes: int = 1
    strategy: str = "auto"
    threads: int = 0
    kl_warmup_steps: int = 0

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            _check_field_type(self, field)
        if self.dataset not in DATASETS:
            raise ValueError(f"dataset must be one of {sorted(DATASETS)}, got {self.dataset!r}")
        for name in ("num_sequences", "num_val_sequences", "image_size", "latent_dim",
                     "batch_size", "max_steps", "checkpoint_every", "num_nodes"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)}")
        for name in ("seed", "val_every", "num_workers", "threads", "kl_warmup_steps"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be an integer >= 0, got {getattr(self, name)}")
        if not (math.isfinite(self.learning_rate) and self.learning_rate > 0):
            raise ValueError(
                f"learning_rate must be a finite number > 0, got {self.learning_rate}"
            )
        if not (math.isfinite(self.gradient_clip_val) and self.gradient_clip_val >= 0):
            raise ValueError(
                "gradient_clip_val must be a finite number >= 0 (0 disables clipping), got "
                f"{self.gradient_clip_val}"
            )
        if self.num_frames <= MIN_OBSERVED_FRAMES:
            raise ValueError(
                f"num_frames must be at least {MIN_OBSERVED_FRAMES + 1} (forecasts observe "
                f"{MIN_OBSERVED_FRAMES} frames or more), got {self.num_frames}"
            )
        largest_horizon = self.num_frames - MIN_OBSERVED_FRAMES
        if not 0 < self.forecast_horizon <= largest_horizon:
            raise ValueError(
                f"forecast_horizon must lie in [1, num_frames - {MIN_OBSERVED_FRAMES}] = "
                f"[1, {largest_horizon}], got {self.forecast_horizon}"
            )
        _parse_devices(self.devices)
        if self.batch_size > self.num_sequences:
            raise ValueError(
                f"batch_size ({self.batch_size}) must not exceed num_sequences"
                f" ({self.num_sequences})"
            )

    @classmethod
    def from_dict(cls, values: dict) -> TrainConfig:
        """Rebuild a config from :func:`dataclasses.asdict` output, rejecting unknown keys."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"unknown TrainConfig keys: {sorted(unknown)}")
        return cls(**values)


def _check_field_type(config: TrainConfig, field: dataclasses.Field) -> None:
    """A field holds the type of its default (an int also passes for a float; bool never
    passes for a number), as a config read from JSON or built by hand may not."""
    value = getattr(config, field.name)
    default = field.default if field.default is not dataclasses.MISSING else field.default_factory()
    expected = (int, float) if isinstance(default, float) else type(default)
    if field.name == "devices":  # a count may also come as an int
        expected = (str, int)
    if isinstance(value, bool) or not isinstance(value, expected):
        raise TypeError(
            f"{field.name} must be of type {type(default).__name__}, got {value!r} "
            f"({type(value).__name__})"
        )


class NonFiniteLossError(RuntimeError):
    """Raised when the loss or a gradient becomes NaN or infinite during training."""


class StepBatchSampler(Sampler[list[int]]):
    r"""
    An endless batch sampler whose batch at optimiser step ``s`` depends only on ``(seed, s)``.

    Steps are grouped into epochs of ``num_items // (batch_size * world_size)`` steps; epoch
    ``e`` uses the permutation ``torch.randperm(num_items)`` drawn from a generator seeded with
    ``seed + e``, the global batch of step ``s`` is the next ``batch_size * world_size``
    entries, and rank ``r`` takes the ``r``-th contiguous chunk of ``batch_size`` of them.
    Starting at ``start_step`` therefore resumes the data stream exactly, which is what
    makes checkpoint-resume reproduce an uninterrupted run.

    :param int num_items: dataset length.
    :param int batch_size: items per rank and step.
    :param int seed: seed of the epoch permutations.
    :param int start_step: the first step to yield.
    :param int rank: this process's global rank.
    :param int world_size: number of processes.
    """

    def __init__(
        self,
        num_items: int,
        batch_size: int,
        seed: int,
        *,
        start_step: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if batch_size * world_size > num_items:
            raise ValueError(
                f"batch_size * world_size ({batch_size} * {world_size}) must not exceed the"
                f" number of training sequences ({num_items})"
            )
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must lie in [0, world_size), got {rank} of {world_size}")
        self.num_items = num_items
        self.batch_size = batch_size
        self.seed = seed
        self.start_step = start_step
        self.rank = rank
        self.world_size = world_size
        self.steps_per_epoch = num_items // (batch_size * world_size)

    def batch_indices(self, step: int) -> list[int]:
        """The indices this rank reads at optimiser step ``step``."""
        epoch, position = divmod(step, self.steps_per_epoch)
        generator = torch.Generator().manual_seed(self.seed + epoch)
        permutation = torch.randperm(self.num_items, generator=generator)
        begin = (position * self.world_size + self.rank) * self.batch_size
        return permutation[begin : begin + self.batch_size].tolist()

    def __iter__(self) -> Iterator[list[int]]:
        step = self.start_step
        while True:
            yield self.batch_indices(step)
            step += 1


def _loader(dataset: Dataset, seed: int, **kwargs: Any) -> DataLoader:
    """
    A DataLoader with its own generator: creating an iterator draws a worker seed, which would
    otherwise consume the global RNG that the ELBO's Monte Carlo noise comes from.
    """
    return DataLoader(dataset, generator=torch.Generator().manual_seed(seed), **kwargs)


def _frames(batch: Any) -> torch.Tensor:
    """Datasets yield ``(frames, factors)``; training uses the frames only."""
    return batch[0] if isinstance(batch, (tuple, list)) else batch


def loss_scale(dynvae: torch.nn.Module, batch_size: int) -> int:
    """
    The number of sequences one loss value stands for: models built with ``num_sequences``
    scale their sequence plate from the batch to the whole training set (so SVI's gradient is
    unbiased for the full ELBO); otherwise the loss is the batch's sum.
    """
    return getattr(dynvae, "config", {}).get("num_sequences") or batch_size


@torch.no_grad()
def batch_metrics(
    dynvae: torch.nn.Module,
    loss_fn: torch.nn.Module,
    frames: torch.Tensor,
    forecast_horizon: int,
) -> dict[str, float]:
    r"""
    Held-out quality of one batch of sequences ``frames`` of shape ``(B, T, C, H, W)``, as
    logged during validation (:func:`evaluate` scores a whole dataset):

    - ``elbo``: one-sample Monte Carlo ELBO per sequence, ``-loss_fn(frames)`` divided by
      :func:`loss_scale`;
    - ``recon_mse``: mean squared error of ``dynvae.reconstruct(frames)`` per pixel;
    - ``forecast_mse``: per-pixel MSE of ``dynvae.forecast(frames[:, :T-k], k)`` against the
      last ``k`` true frames, and ``forecast_vs_best_baseline``, its ratio to the best of the
      copy-last, blank and mean frames (:func:`~pyro_dynvae.metrics.forecast_scores`, with the
      batch's own mean frame).
    """
    scores, _ = forecast_errors(dynvae, frames, forecast_horizon)
    return {
        "elbo": -float(loss_fn(frames)) / loss_scale(dynvae, frames.shape[0]),
        "recon_mse": float((dynvae.reconstruct(frames) - frames).pow(2).mean()),
        "forecast_mse": scores["mse"]["model"],
        "forecast_vs_best_baseline": scores["ratio_to_best_baseline"],
    }


@torch.no_grad()
def forecast_errors(
    dynvae: torch.nn.Module,
    frames: torch.Tensor,
    forecast_horizon: int,
    *,
    background: torch.Tensor | None = None,
    mean_frame: torch.Tensor | None = None,
) -> tuple[dict[str, Any], torch.Tensor]:
    """
    Observe ``frames[:, :T-k]``, forecast ``k = forecast_horizon`` frames, and score them
    against the true ``frames[:, T-k:]`` beside the copy-last, blank and mean-frame baselines
    (:func:`~pyro_dynvae.metrics.forecast_scores`).

    :param background: the background at the forecast times ``(B, k, C, H, W)`` (None: black).
    :param mean_frame: the mean training frame ``(C, H, W)`` (None: the mean of ``frames``).
    :returns: ``(scores, forecast)``: the scores of
        :func:`~pyro_dynvae.metrics.forecast_scores` and the forecast ``(B, k, C, H, W)``.
    """
    num_observed = frames.shape[1] - forecast_horizon
    context, future = frames[:, :num_observed], frames[:, num_observed:]
    forecast = dynvae.forecast(context, forecast_horizon)
    if mean_frame is None:
        mean_frame = frames.mean((0, 1))
    scores = forecast_scores(
        context[:, -1:].cpu(),
        future.cpu(),
        forecast.cpu(),
        background=None if background is None else background.cpu(),
        mean_frame=mean_frame.cpu(),
    )
    return scores, forecast


def background_frames(dataset: Dataset, factors: torch.Tensor) -> torch.Tensor | None:
    """The background alone ``(..., 1, H, W)`` (broadcast over channels) at every frame of
    ``factors`` ``(..., K)`` for datasets with a drifting background, else None (black)."""
    background = getattr(dataset, "background", None)
    if background is None:
        return None
    states = factors[..., dataset.factor_index("background")]
    images = background.render(states.reshape(-1).float())
    return images.reshape(states.shape + (1,) + images.shape[-2:])


def mean_training_frame(dataset: Dataset, num_sequences: int = 256) -> torch.Tensor:
    """The per-pixel mean of the frames of the first ``num_sequences`` sequences, ``(C, H, W)``
    (the mean-frame forecast baseline)."""
    count = min(len(dataset), num_sequences)
    frames = torch.stack([_frames(dataset[i]) for i in range(count)])
    return frames.mean((0, 1))


@torch.no_grad()
def evaluate(
    dynvae: torch.nn.Module,
    dataset: Dataset,
    *,
    batch_size: int = 16,
    forecast_horizon: int = 5,
    seed: int = 0,
    mean_frame: torch.Tensor | None = None,
) -> dict[str, Any]:
    """
    Held-out quality over ``dataset``, using a forked RNG seeded with ``seed`` so the result is
    reproducible and training's RNG stream is untouched:

    - ``elbo`` (per sequence, one-sample Monte Carlo) and ``recon_mse`` (per pixel), averaged
      over the sequences;
    - ``forecast``: :func:`~pyro_dynvae.metrics.forecast_scores` of forecasts of the last
      ``forecast_horizon`` frames of every sequence from the frames before them, against the
      copy-last frame, the blank frame (the dataset's background where it has one, from
      :func:`background_frames`) and ``mean_frame`` (the mean training frame; None: the mean
      held-out frame, an oracle), over all pixels and over the object's pixels;
      ``forecast_mse`` and ``forecast_vs_best_baseline`` repeat its headline numbers.

    :returns: a JSON-serialisable dict plus ``num_sequences``.
    """
    loss_fn = dynvae.make_elbo()(dynvae.model, dynvae.guide)
    device = next(dynvae.parameters()).device
    was_training = dynvae.training
    dynvae.eval()
    totals = {"elbo": 0.0, "recon_mse": 0.0}
    pieces: dict[str, list[torch.Tensor]] = {"frames": [], "forecast": [], "background": []}
    with torch.random.fork_rng(devices=_rng_devices(device)):
        torch.manual_seed(seed)
        for batch in _loader(dataset, seed, batch_size=batch_size):
            frames = _frames(batch).to(device)
            num_sequences = frames.shape[0]
            elbo = -float(loss_fn(frames)) / loss_scale(dynvae, num_sequences)
            totals["elbo"] += elbo * num_sequences
            recon_error = (dynvae.reconstruct(frames) - frames).pow(2).mean()
            totals["recon_mse"] += float(recon_error) * num_sequences
            context = frames[:, : frames.shape[1] - forecast_horizon]
            pieces["frames"].append(frames.cpu())
            pieces["forecast"].append(dynvae.forecast(context, forecast_horizon).cpu())
            if isinstance(batch, (tuple, list)):
                background = background_frames(dataset, batch[1][:, -forecast_horizon:])
            else:
                background = None
            if background is not None:
                pieces["background"].append(background)
    dynvae.train(was_training)
    frames = torch.cat(pieces["frames"])
    count = frames.shape[0]
    metrics: dict[str, Any] = {key: value / count for key, value in totals.items()}
    scores = forecast_scores(
        frames[:, -forecast_horizon - 1 : -forecast_horizon],
        frames[:, -forecast_horizon:],
        torch.cat(pieces["forecast"]),
        background=torch.cat(pieces["background"]) if pieces["background"] else None,
        mean_frame=frames.mean((0, 1)) if mean_frame is None else mean_frame.cpu(),
    )
    scores.pop("versions")
    metrics["forecast"] = scores
    metrics["forecast_mse"] = scores["mse"]["model"]
    metrics["forecast_vs_best_baseline"] = scores["ratio_to_best_baseline"]
    metrics["num_sequences"] = count
    return metrics


@torch.no_grad()
def disentanglement(
    dynvae: torch.nn.Module,
    dataset: FactorDataset,
    *,
    batch_size: int = 16,
    frames_per_sequence: int = 1,
    dci_predictor: str = "gradient_boosting",
    seed: int = 0,
) -> dict[str, Any]:
    """
    Disentanglement and probes of the posterior means ``encode(frames)["z_mean"]`` against the
    ground-truth factors the dataset recommends (``dataset.metric_factors``, reduced to what a
    frame shows by ``identifiable_factors``, with their ``factor_types``), scored by
    :func:`pyro_dynvae.assessment.scoring.score_codes`: frames drawn from every sequence (one
    by default), predictors fitted on two thirds of the sequences and scored on the others, so
    a latent that is merely constant within each sequence earns nothing. Factors constant over
    the sampled frames carry no information and are left out. The scores are only as precise
    as the number of sequences allows: evaluate on more (``pyro-dynvae evaluate
    --num-val-sequences``) for stable numbers.

    :param int frames_per_sequence: frames drawn per sequence for the fitted and held-out
        predictors (see :func:`~pyro_dynvae.assessment.scoring.score_codes`).
    :param str dci_predictor: ``"gradient_boosting"`` (disentanglement_lib's) or
        ``"random_forest"``.
    :param int seed: seed of the frames drawn, the split and the predictors.
    :returns: ``{"mig", "dci_disentanglement", "dci_completeness", "dci_informativeness",
        "sap", "modularity", "explicitness", "mcc", "probe_linear", "probe_nonlinear",
        "probes": per factor, "factors": names scored, "constant_factors", "sample": sizes,
        "versions"}``; a score the sample cannot define is ``None``.
    """
    device = next(dynvae.parameters()).device
    codes, factors = [], []
    for frames, batch_factors in _loader(dataset, 0, batch_size=batch_size):
        codes.append(dynvae.encode(frames.to(device))["z_mean"].cpu())
        factors.append(batch_factors)
    space = dataset.factor_subset()
    columns = [dataset.factor_index(name) for name in space.factor_names]
    scores = score_factor_space(
        torch.cat(codes).double().numpy(),
        torch.cat(factors)[..., columns],
        space,
        frames_per_sequence=frames_per_sequence,
        dci_predictor=dci_predictor,
        random_state=seed,
    )
    return without_nan(scores)


@torch.no_grad()
def digit_report(
    dynvae: torch.nn.Module, dataset: MovingMNIST, *, batch_size: int = 16
) -> dict[str, Any]:
    """
    Whether the reconstructions keep the digits: a classifier fitted on the package's MNIST
    digits reads the 28x28 window at each digit's true position in every frame of ``dataset``
    and of ``dynvae.reconstruct`` of it (:func:`~pyro_dynvae.metrics.digit_reading.digit_reading`).

    :returns: the accuracies on data and reconstructions, their ratio and the classifier's own
        held-out accuracy.
    """
    device = next(dynvae.parameters()).device
    frames, reconstructions, factors = [], [], []
    for batch_frames, batch_factors in _loader(dataset, 0, batch_size=batch_size):
        frames.append(batch_frames.flatten(0, 1))
        reconstructions.append(dynvae.reconstruct(batch_frames.to(device)).cpu().flatten(0, 1))
        factors.append(batch_factors.flatten(0, 1))
    frames, reconstructions, factors = (torch.cat(x) for x in (frames, reconstructions, factors))
    windows = []
    for d in range(dataset.num_digits):
        columns = [dataset.factor_index(f"digit{d}_{name}") for name in ("x", "y", "class")]
        windows.append(factors[:, columns])
    windows = torch.cat(windows)
    repeat = [dataset.num_digits] + [1] * (frames.dim() - 1)
    return digit_reading(
        frames.repeat(repeat).numpy(),
        reconstructions.repeat(repeat).numpy(),
        windows[:, :2].numpy(),
        windows[:, 2].numpy(),
    )


def _rng_devices(device: torch.device) -> list[int]:
    return [device.index or 0] if device.type == "cuda" else []


@dataclasses.dataclass(frozen=True)
class StepOptions:
    """
    How a training step is carried out, not what it computes (issue 13): every choice gives the
    same loss and gradients, to float rounding, on the same batch and weights, and the same data
    stream. :meth:`reference` is the step as it was before these options existed, kept so that
    ``benchmarks/bench_training.py`` can measure the speed-up against it.

    :param int cache_bytes: keep up to this many bytes of rendered training sequences in memory
        (:class:`~pyro_dynvae.data.MemoizedSequences`, shared by every fit on the same dataset
        object in a process); 0 renders every batch anew.
    :param foreach: Adam's ``foreach`` (multi-tensor) implementation; ``None``: torch's default
        (the per-parameter loop on CPU, ``foreach`` on CUDA).
    :param str conv_kernels: the convolution kernels, see :func:`pyro_dynvae.nets.conv_kernels`.
    :param bool channels_last: on CPU, store the convolution weights channels-last when the fit
        is set up (``dynvae.to(memory_format=torch.channels_last)``; values and parameter objects
        unchanged), which lets oneDNN run the convolutions channels-last.
    """

    cache_bytes: int = 2**30
    foreach: bool | None = True
    conv_kernels: str = "auto"
    channels_last: bool = True

    @classmethod
    def reference(cls) -> StepOptions:
        """The step before issue 13: render every batch, torch's default Adam, plain layers,
        contiguous weights."""
        return cls(cache_bytes=0, foreach=None, conv_kernels="torch", channels_last=False)


_MEMOIZED: weakref.WeakKeyDictionary[Dataset, MemoizedSequences] = weakref.WeakKeyDictionary()


def _memoized(dataset: Dataset, max_bytes: int) -> Dataset:
    """``dataset`` behind one :class:`MemoizedSequences` per dataset object (0: unwrapped); a
    dataset that cannot be weakly referenced or hashed gets a cache of its own each time."""
    if not max_bytes:
        return dataset
    try:
        cached = _MEMOIZED.get(dataset)
    except TypeError:
        return MemoizedSequences(dataset, max_bytes)
    if cached is None or cached.max_bytes != max_bytes:
        cached = _MEMOIZED[dataset] = MemoizedSequences(dataset, max_bytes)
    return cached


class DynamicsVAEModule(pl.LightningModule):
    """
    The LightningModule wrapping a dynamics VAE's ELBO (Pyro's ``ELBOModule``).

    :param torch.nn.Module dynvae: a model following the :func:`~pyro_dynvae.models.build_model`
        protocol (``.model``, ``.guide``, ``.make_elbo()``, ``.reconstruct``, ``.forecast``).
    :param Dataset train_data: yields ``(frames, factors)``.
    :param Dataset val_data: held-out sequences, same format.
    :param TrainConfig config: batch size, learning rate, seed, forecast horizon, workers.
    :param StepOptions step_options: how the steps are carried out (default: the fastest).
    """

    def __init__(
        self,
        dynvae: torch.nn.Module,
        train_data: Dataset,
        val_data: Dataset,
        config: TrainConfig,
        step_options: StepOptions = StepOptions(),
    ) -> None:
        super().__init__()
        self.dynvae = dynvae
        # The ELBOModule shares dynvae's model and guide; it is kept out of the module tree so
        # that every parameter is stored once, under ``dynvae.``, in the checkpoint.
        object.__setattr__(self, "loss_fn", dynvae.make_elbo()(dynvae.model, dynvae.guide))
        self.train_data = train_data
        self.val_data = val_data
        self.config = config
        self.step_options = step_options
        self._last_loss: torch.Tensor | None = None

    def train_dataloader(self) -> DataLoader:
        sampler = StepBatchSampler(
            len(self.train_data),
            self.config.batch_size,
            self.config.seed,
            start_step=self.trainer.global_step,
            rank=self.trainer.global_rank,
            world_size=self.trainer.world_size,
        )
        return _loader(
            _memoized(self.train_data, self.step_options.cache_bytes),
            self.config.seed,
            batch_sampler=sampler,
            num_workers=self.config.num_workers,
        )

    def val_dataloader(self) -> DataLoader:
        return _loader(self.val_data, self.config.seed, batch_size=self.config.batch_size)

    def setup(self, stage: str) -> None:
        # before the strategy moves the module to its device and wraps it (DDP)
        self._set_memory_format(self.trainer.strategy.root_device)

    def _set_memory_format(self, device: torch.device) -> None:
        """Channels-last convolution weights for a CPU step, if the step options say so."""
        if self.step_options.channels_last and device.type == "cpu":
            self.dynvae.to(memory_format=torch.channels_last)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(
            self.loss_fn.parameters(),
            lr=self.config.learning_rate,
            foreach=self.step_options.foreach,
        )

    def on_train_start(self) -> None:
        # A resumed run restores the optimiser's state, learning rate included; the config's
        # learning rate is the one to train with (a resume may change it, see RESUMABLE).
        for optimizer in self.trainer.optimizers:
            for group in optimizer.param_groups:
                group["lr"] = self.config.learning_rate

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        frames = _frames(batch)
        warmup = self.config.kl_warmup_steps
        self.dynvae.kl_annealing = min(1.0, (self.global_step + 1) / warmup) if warmup else 1.0
        try:
            loss = self.loss_fn(frames)
        except ValueError as error:  # e.g. Pyro's argument validation of a diverged quantity
            raise ValueError(f"at training step {self.global_step}: {error}") from error
        self._last_loss = loss.detach()
        per_sequence = loss / loss_scale(self.dynvae, frames.shape[0])
        self.log("train/loss", per_sequence, prog_bar=True, batch_size=frames.shape[0])
        return loss

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        """
        The NaN guard: before any parameter changes, stop if the loss or a gradient is not
        finite. Raising here leaves the weights (and the last checkpoint, which
        :class:`~lightning.pytorch.callbacks.ModelCheckpoint` only writes after successful
        steps) at the last good state. Under DDP the decision is shared by all ranks.
        """
        bad = [] if torch.isfinite(self._last_loss).all() else ["loss"]
        bad += [
            name
            for name, param in self.named_parameters()
            if param.grad is not None and not torch.isfinite(param.grad).all()
        ]
        if self.trainer.strategy.reduce_boolean_decision(bool(bad), all=False):
            raise NonFiniteLossError(
                f"non-finite values at training step {self.global_step} "
                f"(in {', '.join(bad[:5]) or 'another process'}); training stopped before the"
                " optimiser step, and checkpoints/last.ckpt holds the last finite weights."
                " Resume it with a smaller learning rate or gradient clipping, e.g. pyro-dynvae"
                f" train --run-dir {self.trainer.default_root_dir} --resume --learning-rate"
                f" {self.config.learning_rate / 10:g} --gradient-clip-val 1"
            )

    def on_validation_start(self) -> None:
        self.dynvae.kl_annealing = 1.0

    def on_train_end(self) -> None:
        self.dynvae.kl_annealing = 1.0

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        frames = _frames(batch)
        with torch.random.fork_rng(devices=_rng_devices(frames.device)):
            torch.manual_seed(self.config.seed + batch_idx)
            metrics = batch_metrics(
                self.dynvae, self.loss_fn, frames, self.config.forecast_horizon
            )
        for key, value in metrics.items():
            self.log(f"val/{key}", value, batch_size=frames.shape[0], sync_dist=True,
                     prog_bar=key == "elbo")

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # Pyro draws all Monte Carlo noise from torch's generators.
        checkpoint["rng_states"] = {
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        states = checkpoint.get("rng_states")
        if states is None:
            return
        torch.set_rng_state(states["torch"])
        if states["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(states["cuda"])


def _loggers(run_dir: Path) -> list[Logger]:
    """CSV logs always; TensorBoard events as well when tensorboard is importable."""
    loggers: list[Logger] = [CSVLogger(run_dir, name="logs")]
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        return loggers
    loggers.append(TensorBoardLogger(run_dir, name="logs", version=loggers[0].version))
    return loggers


def _parse_devices(devices: str | int) -> str | int | list[int]:
    """``"auto"`` stays, ``"2"`` becomes 2, ``"0,1"`` becomes [0, 1]."""
    if isinstance(devices, int) or devices == "auto":
        return devices
    try:
        if "," in devices:
            return [int(d) for d in devices.split(",") if d]
        return int(devices)
    except ValueError:
        raise ValueError(
            f"devices must be 'auto', a count or a list like 0,1, got {devices!r}"
        ) from None


def versions() -> dict[str, str]:
    """Versions of the libraries a run depends on, recorded beside its results."""
    return {
        "pyro_dynvae": __version__,
        "pyro": pyro.__version__,
        "torch": torch.__version__,
        "lightning": lightning.__version__,
        "numpy": np.__version__,
    }


def write_json(path: Path, content: dict) -> None:
    """Write ``content`` as JSON, atomically: a reader sees the old file or the new one."""
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(content, indent=2, sort_keys=True, default=str) + "\n")
    os.replace(partial, path)


def fit(
    dynvae: torch.nn.Module,
    train_data: Dataset,
    val_data: Dataset,
    config: TrainConfig,
    run_dir: str | os.PathLike,
    *,
    ckpt_path: str | os.PathLike | None = None,
    callbacks: Sequence[Callback] = (),
    enable_progress_bar: bool | None = None,
    step_options: StepOptions = StepOptions(),
) -> DynamicsVAEModule:
    """
    Train ``dynvae`` on ``train_data`` with Lightning, writing ``config.json``, checkpoints and
    logs into ``run_dir`` (metrics and figures are written by :func:`finish_run`).

    This is the building block of :func:`train` and does not look at what ``run_dir`` holds
    besides a run it resumes; use :func:`train` for the checks of a run folder. Everything that
    can be checked (the options, the resumed run's config) is checked before anything is
    written.

    :param ckpt_path: a checkpoint to resume from (e.g. ``run_dir/checkpoints/last.ckpt``). If
        ``run_dir`` holds the ``config.json`` of the run being resumed, ``config`` may differ
        from it only in the fields of :data:`RESUMABLE`, and this resume (its step and changes)
        is appended to the ``history`` in ``config.json``.
    :param callbacks: extra Lightning callbacks.
    :param enable_progress_bar: show Lightning's progress bar; ``None``: only when standard
        output is a terminal.
    :param StepOptions step_options: how the steps are carried out (:meth:`StepOptions.reference`
        is the slower path of before issue 13, for benchmarks).
    :returns: the trained :class:`DynamicsVAEModule` (its ``trainer`` attribute is set).
    :raises NonFiniteLossError: when the loss or a gradient becomes non-finite.
    :raises ValueError: for options Lightning rejects, or changes a resume cannot make.
    """
    run_dir = Path(run_dir)
    # Only the process of global rank 0 reads and writes config.json: the others may start
    # at the same time (a cluster launcher) or after it wrote (Lightning's DDP launcher).
    writes_config = _is_global_zero_process()
    history = []
    if ckpt_path is not None and writes_config:
        history = _resume_history(run_dir, config, Path(ckpt_path))
    if config.threads:
        torch.set_num_threads(config.threads)
    lightning.seed_everything(config.seed, workers=True, verbose=False)
    module = DynamicsVAEModule(dynvae, train_data, val_data, config, step_options)
    # Create lazily initialised parameters before the optimiser (and DDP) sees them.
    with torch.no_grad():
        module.loss_fn(_frames(next(iter(module.val_dataloader()))))
    checkpoint = ModelCheckpoint(
        dirpath=run_dir / "checkpoints",
        filename="step{step}",
        auto_insert_metric_name=False,
        every_n_train_steps=config.checkpoint_every,
        save_top_k=1,
        save_last=True,
        enable_version_counter=False,  # always last.ckpt, never a last-v1.ckpt beside a stale one
    )
    val_every = config.val_every or config.max_steps
    with _quiet_lightning(resuming=ckpt_path is not None):
        try:
            trainer = pl.Trainer(
                default_root_dir=run_dir,
                max_steps=config.max_steps,
                val_check_interval=min(val_every, config.max_steps),
                check_val_every_n_epoch=None,
                num_sanity_val_steps=0,
                gradient_clip_val=config.gradient_clip_val or None,
                accelerator=config.accelerator,
                devices=_parse_devices(config.devices),
                num_nodes=config.num_nodes,
                strategy=config.strategy,
                use_distributed_sampler=False,  # StepBatchSampler shards by rank itself
                logger=_loggers(run_dir),
                callbacks=[checkpoint, *callbacks],
                log_every_n_steps=max(1, min(50, config.max_steps // 10)),
                enable_progress_bar=(
                    sys.stdout.isatty() if enable_progress_bar is None else enable_progress_bar
                ),
                enable_model_summary=False,
            )
        except (MisconfigurationException, TypeError) as error:
            raise ValueError(
                f"accelerator={config.accelerator!r}, devices={config.devices!r}, "
                f"strategy={config.strategy!r}: {error}"
            ) from error
        if writes_config:
            run_dir.mkdir(parents=True, exist_ok=True)
            write_json(
                run_dir / "config.json",
                {
                    "train": dataclasses.asdict(config),
                    "model": dynvae.config,
                    "versions": versions(),
                    "history": history,
                },
            )
        with conv_kernels(step_options.conv_kernels):
            trainer.fit(module, ckpt_path=ckpt_path)
    return module


class _DropTips(logging.Filter):
    """Drops Lightning's advertisements ("💡 Tip: ... try installing ...")."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("💡 Tip")


#: the loggers Lightning's ``rank_zero_info`` writes to
_LIGHTNING_INFO_LOGGERS = (
    "lightning.pytorch.utilities.rank_zero",
    "lightning.fabric.utilities.rank_zero",
)


@contextlib.contextmanager
def _quiet_lightning(resuming: bool) -> Iterator[None]:
    """
    Inside: no Lightning tips, and none of the warnings a run here can do nothing about: the
    deprecation of ``LeafSpec`` that torch 2.13 reports from Lightning 2.6's pytree helper, and
    (when ``resuming``) that the checkpoint folder being resumed from is not empty or has moved.
    """
    tips = _DropTips()
    loggers = [logging.getLogger(name) for name in _LIGHTNING_INFO_LOGGERS]
    for logger in loggers:
        logger.addFilter(tips)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings(
                "ignore",
                message=r"`isinstance\(treespec, LeafSpec\)` is deprecated",
                category=FutureWarning,
                module=r"lightning\.pytorch\.utilities\._pytree",
            )
            if resuming:
                for message in ("Checkpoint directory .* exists and is not empty",
                                "The dirpath has changed from"):
                    warnings.filterwarnings("ignore", message=message)
            yield
    finally:
        for logger in loggers:
            logger.removeFilter(tips)


def read_run_config(run_dir: str | os.PathLike) -> tuple[dict[str, Any], TrainConfig]:
    """
    Read the ``config.json`` of a run folder.

    :returns: ``(saved, config)``: the whole file (``train``, ``model``, ``versions``,
        ``history``) and its ``train`` part as a :class:`TrainConfig`.
    :raises ValueError: naming the file when it is missing, not JSON, or not a run's config.
    """
    path = Path(run_dir) / "config.json"
    if not path.is_file():
        raise ValueError(f"{run_dir} is not a training run folder: {path} is missing")
    try:
        saved = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{path} is not valid JSON ({error})") from None
    if not (
        isinstance(saved, dict)
        and isinstance(saved.get("train"), dict)
        and isinstance(saved.get("model"), dict)
    ):
        raise ValueError(
            f"{path} is not the config.json of a training run: expected a JSON object with "
            "'train' and 'model' objects"
        )
    try:
        config = TrainConfig.from_dict(saved["train"])
    except (TypeError, ValueError) as error:
        raise ValueError(f"{path}: 'train': {error}") from None
    return saved, config


def read_checkpoint(
    path: str | os.PathLike, map_location: str | torch.device = "cpu"
) -> dict[str, Any]:
    """
    Load a Lightning checkpoint written by :func:`fit`.

    :raises ValueError: naming the file when it is missing, empty, unreadable, or not a
        Lightning checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"checkpoint {path} is missing")
    if path.stat().st_size == 0:
        raise ValueError(f"checkpoint {path} is empty")
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=False)
    except (EOFError, OSError, RuntimeError, pickle.UnpicklingError) as error:
        raise ValueError(f"checkpoint {path} cannot be read ({type(error).__name__}: "
                         f"{str(error).splitlines()[0]})") from error
    if not (isinstance(checkpoint, dict) and {"state_dict", "global_step"} <= set(checkpoint)):
        raise ValueError(f"{path} is not a Lightning checkpoint (no state_dict and global_step)")
    return checkpoint


def _resume_history(run_dir: Path, config: TrainConfig, ckpt_path: Path) -> list[dict[str, Any]]:
    """
    The ``history`` of the run in ``run_dir`` with this resume appended: the checkpoint's step
    and the changed fields as ``{name: [old, new]}``. Empty when ``run_dir`` holds no
    ``config.json`` (a checkpoint from elsewhere starts a new run).

    :raises ValueError: naming the fields that differ from the saved run and may not change.
    """
    if not (run_dir / "config.json").exists():
        return []
    saved, previous = read_run_config(run_dir)
    # compared as saved (JSON): an option given as a tuple is read back as a list
    old, new = (json.loads(json.dumps(dataclasses.asdict(c))) for c in (previous, config))
    changes = {name: [old[name], new[name]] for name in old if old[name] != new[name]}
    fixed = [name for name in changes if name not in RESUMABLE]
    if fixed:
        listed = ", ".join(f"{name} {changes[name][0]!r} -> {changes[name][1]!r}" for name in fixed)
        raise ValueError(
            f"resuming {run_dir} cannot change {listed}: they change the model, the data or "
            f"the evaluation; a resume may change only {', '.join(RESUMABLE)}"
        )
    step = read_checkpoint(ckpt_path)["global_step"]
    return [*saved.get("history", []), {"resumed_at_step": step, "changes": changes}]


def _is_global_zero_process() -> bool:
    """
    Whether this is the process of global rank 0, as the launcher's environment tells before
    Lightning starts: Lightning's DDP launcher runs the whole command again in every further
    process (setting ``LOCAL_RANK`` and ``NODE_RANK``), and cluster launchers (torchrun, SLURM)
    start all processes at once (``RANK``, ``SLURM_PROCID``).
    """
    return rank_zero_only.rank == 0 and os.environ.get("NODE_RANK", "0") == "0"


def holds_run(run_dir: str | os.PathLike) -> bool:
    """Whether ``run_dir`` holds a training run (a ``config.json`` or ``checkpoints/``)."""
    run_dir = Path(run_dir)
    return (run_dir / "config.json").exists() or (run_dir / "checkpoints").exists()


def clear_run(run_dir: str | os.PathLike) -> None:
    """Remove the run in ``run_dir``: exactly the entries of :data:`RUN_CONTENTS`."""
    for name in RUN_CONTENTS:
        path = Path(run_dir) / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()


def make_dataset(config: TrainConfig, split: str) -> Dataset:
    """
    The ``"train"`` or held-out ``"test"`` dataset named by ``config`` (deterministic given its
    seed; the test split draws from disjoint digits/objects), with the dataset's default options
    (:data:`pyro_dynvae.defaults.DATASET_DEFAULTS`) under ``config.dataset_options``.
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    try:
        return DATASETS[config.dataset](
            num_sequences=config.num_sequences if split == "train" else config.num_val_sequences,
            num_frames=config.num_frames,
            image_size=config.image_size,
            seed=config.seed,
            split=split,
            **dataset_options(config.dataset, config.dataset_options),
        )
    except TypeError as error:  # e.g. an unknown keyword in dataset_options
        raise TypeError(f"dataset_options of {config.dataset!r}: {error}") from error


def make_model(config: TrainConfig, channels: int) -> torch.nn.Module:
    """Build the variant named by ``config`` (seeded, so the initial weights are reproducible),
    with the dataset's default model options (:mod:`pyro_dynvae.defaults`) under
    ``config.model_overrides``."""
    lightning.seed_everything(config.seed, verbose=False)
    return build_model(
        config.variant,
        image_size=config.image_size,
        channels=channels,
        latent_dim=config.latent_dim,
        num_sequences=config.num_sequences,
        **model_options(config.dataset, config.model_overrides),
    )


def dynamics_report(
    dynvae: torch.nn.Module, dataset: Dataset, run_dir: str | os.PathLike, max_sequences: int = 64
) -> dict[str, Any]:
    """
    Export the inferred dynamics of up to ``max_sequences`` held-out sequences: an arviz
    ``InferenceData`` of the eigenvalues (one draw per sequence; dims time, latent) and the prior
    scales in ``dynamics.nc``, its ``az.summary`` in ``dynamics_summary.csv``, a forest plot of
    the scales in ``figures/prior_scales_forest.png``, and the eigenvalue bimodality across
    latents (:func:`~pyro_dynvae.metrics.eigenvalue_bimodality`, with 4 or more latents).

    :returns: ``{}`` for models without eigenvalues, else a JSON-serialisable dict with
        ``"eigenvalue_bimodality"`` (where defined) and ``"files"`` (paths relative to
        ``run_dir``).
    """
    run_dir = Path(run_dir)
    device = next(dynvae.parameters()).device
    frames = torch.stack([dataset[i][0] for i in range(min(len(dataset), max_sequences))])
    with torch.no_grad():
        codes = dynvae.encode(frames.to(device))
    if "eigenvalues" not in codes:
        return {}
    eigenvalues = codes["eigenvalues"].cpu().numpy()
    scales = codes.get("prior_scales")
    # scales per latent only (full dynamics have one scale per row of A_t, not per eigenvalue)
    if scales is not None and scales.shape[-1:] != eigenvalues.shape[-1:]:
        scales = None
    idata = dynamics_inference_data(eigenvalues, None if scales is None else scales.cpu().numpy())
    files = [run_dir / "dynamics.nc", run_dir / "dynamics_summary.csv"]
    idata.to_netcdf(files[0])
    dynamics_summary(idata).to_csv(files[1])
    if scales is not None:
        forest = plot_prior_scales(idata, run_dir / "figures" / "prior_scales_forest.png")
        files.append(Path(forest))
    report: dict[str, Any] = {"files": [str(path.relative_to(run_dir)) for path in files]}
    if eigenvalues.shape[-1] >= 4:
        bimodality = eigenvalue_bimodality(eigenvalues)
        report["eigenvalue_bimodality"] = {
            key: value.tolist() if isinstance(value, np.ndarray) else value
            for key, value in bimodality.items()
        }
    return report


def finish_run(
    dynvae: torch.nn.Module,
    val_data: Dataset,
    config: TrainConfig,
    run_dir: str | os.PathLike,
    *,
    train_data: Dataset | None = None,
    judge: Judge | None = None,
) -> dict[str, Any]:
    """
    Write ``metrics.json`` (held-out metrics, see :func:`evaluate`, for datasets with
    ground-truth factors :func:`disentanglement`, for Moving MNIST :func:`digit_report`, the
    dynamics of :func:`dynamics_report` and, given a ``judge``, the static/dynamic protocol),
    the figures of :func:`pyro_dynvae.viz.save_run_figures` and the arviz export of
    :func:`dynamics_report` into ``run_dir``.

    :param train_data: the training sequences, whose mean frame is the mean-frame forecast
        baseline (None: the held-out mean frame, an oracle).
    :param judge: a judge of the held-out frames
        (:func:`pyro_dynvae.assessment.protocol.protocol_judge`): ``metrics["static_dynamic"]``
        is then :func:`~pyro_dynvae.assessment.protocol.static_dynamic_report` on up to
        :data:`PROTOCOL_PAIRS` pairs of held-out sequences (or the judge's refusal), with its
        figure ``figures/swaps.png``.
    :returns: the metrics, with ``figures`` listing the PNG paths written.
    """
    run_dir = Path(run_dir)
    metrics = evaluate(
        dynvae,
        val_data,
        batch_size=config.batch_size,
        forecast_horizon=config.forecast_horizon,
        seed=config.seed,
        mean_frame=None if train_data is None else mean_training_frame(train_data),
    )
    if isinstance(val_data, FactorDataset):
        metrics["disentanglement"] = disentanglement(dynvae, val_data, batch_size=config.batch_size)
    if isinstance(val_data, MovingMNIST):
        metrics["digit_reading"] = digit_report(dynvae, val_data, batch_size=config.batch_size)
    figures = save_run_figures(
        dynvae, val_data, run_dir / "figures", forecast_horizon=config.forecast_horizon
    )
    metrics["figures"] = [str(path.relative_to(run_dir)) for path in figures]
    swaps = run_dir / "figures" / "swaps.png"
    swaps.unlink(missing_ok=True)  # never a stale figure beside a refusal or no protocol
    if judge is not None and isinstance(val_data, FactorDataset):
        metrics["static_dynamic"] = static_dynamic_report(
            dynvae, val_data, judge, seed=config.seed,
            num_pairs=min(PROTOCOL_PAIRS, max(1, len(val_data) // 2)), figure_path=swaps)
        if swaps.exists():
            metrics["figures"].append(str(swaps.relative_to(run_dir)))
    dynamics = dynamics_report(dynvae, val_data, run_dir)
    if dynamics:
        metrics["dynamics"] = dynamics
    metrics["versions"] = versions()
    write_json(run_dir / "metrics.json", metrics)
    return metrics


def train(
    config: TrainConfig,
    run_dir: str | os.PathLike,
    *,
    resume: bool = False,
    overwrite: bool = False,
    enable_progress_bar: bool | None = None,
) -> dict[str, Any] | None:
    """
    Build the datasets and model from ``config``, train, and write the whole run folder.

    A folder holds one run. Into a folder that already holds one (see :func:`holds_run`),
    ``train`` only resumes it or, with ``overwrite``, replaces it; everything that can be
    checked (the datasets and model ``config`` names, the checkpoint) is checked before the
    old run is removed or anything is written.

    :param bool resume: continue from ``run_dir/checkpoints/last.ckpt``; ``config`` may differ
        from the saved one only in the fields of :data:`RESUMABLE` (e.g. a new learning rate,
        applied to the restored optimiser) and its ``max_steps`` must exceed the checkpoint's
        step.
    :param bool overwrite: remove the run in ``run_dir`` (:func:`clear_run`) and train anew.
    :param enable_progress_bar: as in :func:`fit` (``None``: only on a terminal).
    :returns: the final metrics on the global-zero process, ``None`` on other ranks.
    :raises ValueError: for a folder that holds another run, a missing or unreadable
        checkpoint, a resume that has nothing to do or changes what it may not.
    """
    run_dir = Path(run_dir)
    if _is_global_zero_process():
        ckpt_path = _check_run_dir(run_dir, config, resume=resume, overwrite=overwrite)
    else:  # the process of global rank 0 checks (and clears) the folder for all
        ckpt_path = run_dir / "checkpoints" / "last.ckpt" if resume else None
    train_data, val_data = make_dataset(config, "train"), make_dataset(config, "test")
    channels = _frames(train_data[0]).shape[1]
    dynvae = make_model(config, channels)
    if overwrite and _is_global_zero_process():
        clear_run(run_dir)
    module = fit(
        dynvae,
        train_data,
        val_data,
        config,
        run_dir,
        ckpt_path=ckpt_path,
        enable_progress_bar=enable_progress_bar,
    )
    if not module.trainer.is_global_zero:
        return None
    return finish_run(module.dynvae, val_data, config, run_dir, train_data=train_data)


def _check_run_dir(
    run_dir: Path, config: TrainConfig, *, resume: bool, overwrite: bool
) -> Path | None:
    """What :func:`train` may do with ``run_dir``; returns the checkpoint to resume from."""
    if resume and overwrite:
        raise ValueError("resume and overwrite exclude each other: resume keeps the run")
    if run_dir.exists() and not run_dir.is_dir():
        raise ValueError(f"run folder {run_dir} is a file")
    if not resume:
        if holds_run(run_dir) and not overwrite:
            raise ValueError(
                f"{run_dir} already holds a training run; continue it with --resume "
                "(resume=True) or replace it with --overwrite (overwrite=True)"
            )
        return None
    read_run_config(run_dir)
    ckpt_path = run_dir / "checkpoints" / "last.ckpt"
    if not ckpt_path.exists():
        raise ValueError(
            f"cannot resume {run_dir}: {ckpt_path} is missing (the run stopped before its "
            "first checkpoint; start it again with --overwrite)"
        )
    step = read_checkpoint(ckpt_path)["global_step"]
    if step >= config.max_steps:
        raise ValueError(
            f"nothing to resume: {ckpt_path} is at step {step} and max_steps is "
            f"{config.max_steps}; pass a larger max_steps (--max-steps) to train further"
        )
    return ckpt_path


def load_run(
    run_dir: str | os.PathLike, map_location: str | torch.device = "cpu"
) -> tuple[torch.nn.Module, TrainConfig]:
    """
    Rebuild a run's model from ``config.json`` and load its ``checkpoints/last.ckpt`` weights.

    :returns: ``(dynvae, config)`` with ``dynvae`` in eval mode.
    :raises ValueError: naming the file when ``config.json`` or the checkpoint is missing,
        unreadable, or when the two do not belong together.
    """
    run_dir = Path(run_dir)
    saved, config = read_run_config(run_dir)
    ckpt_path = run_dir / "checkpoints" / "last.ckpt"
    state = read_checkpoint(ckpt_path, map_location)["state_dict"]
    try:
        dynvae = build_model(**saved["model"])
    except (TypeError, ValueError) as error:
        raise ValueError(f"{run_dir / 'config.json'}: 'model': {error}") from None
    prefix = "dynvae."
    try:
        dynvae.load_state_dict(
            {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
        )
    except RuntimeError as error:
        raise ValueError(
            f"{ckpt_path} does not hold the weights of the model in {run_dir / 'config.json'}"
            f" ({str(error).splitlines()[0]} ...)"
        ) from error
    return dynvae.eval(), config

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

Reproducibility: the data order is a pure function of ``(seed, step)`` (see
:class:`StepBatchSampler`), the RNG states are stored in every checkpoint, and validation runs
on a forked RNG, so a run resumed from a checkpoint takes exactly the steps of an uninterrupted
run.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import lightning
import lightning.pytorch as pl
import numpy as np
import pyro
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger, Logger, TensorBoardLogger
from torch.utils.data import DataLoader, Dataset, Sampler

from pyro_dynvae import __version__
from pyro_dynvae.assessment.scoring import score_factor_space, without_nan
from pyro_dynvae.data import DynamicSprites, FactorDataset, MovingMNIST
from pyro_dynvae.inference_data import (
    dynamics_inference_data,
    dynamics_summary,
    plot_prior_scales,
)
from pyro_dynvae.metrics import eigenvalue_bimodality
from pyro_dynvae.models import build_model
from pyro_dynvae.viz import save_run_figures

# Parameters live in their PyroModules (not Pyro's global param store), as ELBOModule training
# requires; PyroModules must be constructed after this is set, so it is set on import.
pyro.settings.set(module_local_params=True)

#: dataset name -> class in :mod:`pyro_dynvae.data`
DATASETS = {"moving_mnist": MovingMNIST, "sprites": DynamicSprites}


@dataclasses.dataclass
class TrainConfig:
    """
    Everything a training run needs besides the model weights; saved as ``config.json``.

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
    """

    variant: str = "hierarchical"
    model_overrides: dict = dataclasses.field(default_factory=dict)
    dataset: str = "moving_mnist"
    dataset_options: dict = dataclasses.field(default_factory=dict)
    num_sequences: int = 512
    num_val_sequences: int = 64
    num_frames: int = 20
    image_size: int = 64
    latent_dim: int = 8
    batch_size: int = 16
    learning_rate: float = 5e-4
    max_steps: int = 500
    gradient_clip_val: float = 10.0
    seed: int = 0
    val_every: int = 100
    checkpoint_every: int = 50
    forecast_horizon: int = 5
    num_workers: int = 0
    accelerator: str = "auto"
    devices: str = "auto"
    num_nodes: int = 1
    strategy: str = "auto"

    def __post_init__(self) -> None:
        if self.dataset not in DATASETS:
            raise ValueError(f"dataset must be one of {sorted(DATASETS)}, got {self.dataset!r}")
        for name in ("num_sequences", "num_val_sequences", "batch_size", "max_steps",
                     "checkpoint_every", "num_nodes"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)}")
        if not 0 < self.forecast_horizon < self.num_frames:
            raise ValueError(
                f"forecast_horizon must lie in [1, num_frames - 1] = [1, {self.num_frames - 1}],"
                f" got {self.forecast_horizon}"
            )
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
    Held-out quality of one batch of sequences ``frames`` of shape ``(B, T, C, H, W)``.

    - ``elbo``: one-sample Monte Carlo ELBO per sequence, ``-loss_fn(frames)`` divided by
      :func:`loss_scale`;
    - ``recon_mse``: mean squared error of ``dynvae.reconstruct(frames)`` per pixel;
    - ``forecast_mse``: per-pixel MSE of ``dynvae.forecast(frames[:, :T-k], k)`` against the
      last ``k`` true frames, and ``copy_last_mse`` the same error for the baseline that repeats
      the last observed frame ``frames[:, T-k-1]``.
    """
    return {
        "elbo": -float(loss_fn(frames)) / loss_scale(dynvae, frames.shape[0]),
        "recon_mse": float((dynvae.reconstruct(frames) - frames).pow(2).mean()),
        **forecast_errors(dynvae, frames, forecast_horizon)[0],
    }


@torch.no_grad()
def forecast_errors(
    dynvae: torch.nn.Module, frames: torch.Tensor, forecast_horizon: int
) -> tuple[dict[str, float], torch.Tensor]:
    """
    Observe ``frames[:, :T-k]``, forecast ``k = forecast_horizon`` frames, and compare with the
    true ``frames[:, T-k:]``.

    :returns: ``({"forecast_mse", "copy_last_mse"}, forecast)``, the per-pixel mean squared
        errors of the forecast and of repeating the last observed frame, and the forecast
        ``(B, k, C, H, W)``.
    """
    num_observed = frames.shape[1] - forecast_horizon
    context, future = frames[:, :num_observed], frames[:, num_observed:]
    forecast = dynvae.forecast(context, forecast_horizon)
    errors = {
        "forecast_mse": float((forecast - future).pow(2).mean()),
        "copy_last_mse": float((context[:, -1:] - future).pow(2).mean()),
    }
    return errors, forecast


def evaluate(
    dynvae: torch.nn.Module,
    dataset: Dataset,
    *,
    batch_size: int = 16,
    forecast_horizon: int = 5,
    seed: int = 0,
) -> dict[str, float]:
    """
    Average :func:`batch_metrics` over ``dataset`` (weighted by batch size), using a forked RNG
    seeded with ``seed`` so the result is reproducible and training's RNG stream is untouched.
    Adds ``forecast_vs_copy_last = forecast_mse / copy_last_mse`` (below 1: better than copying;
    ``None`` when nothing moves, i.e. ``copy_last_mse == 0``).

    :returns: a JSON-serialisable dict of floats plus ``num_sequences``.
    """
    loss_fn = dynvae.make_elbo()(dynvae.model, dynvae.guide)
    device = next(dynvae.parameters()).device
    was_training = dynvae.training
    dynvae.eval()
    totals: dict[str, float] = {}
    count = 0
    with torch.random.fork_rng(devices=_rng_devices(device)):
        torch.manual_seed(seed)
        for batch in _loader(dataset, seed, batch_size=batch_size):
            frames = _frames(batch).to(device)
            for key, value in batch_metrics(dynvae, loss_fn, frames, forecast_horizon).items():
                totals[key] = totals.get(key, 0.0) + value * frames.shape[0]
            count += frames.shape[0]
    dynvae.train(was_training)
    metrics = {key: value / count for key, value in totals.items()}
    copy_last = metrics["copy_last_mse"]
    metrics["forecast_vs_copy_last"] = metrics["forecast_mse"] / copy_last if copy_last else None
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


def _rng_devices(device: torch.device) -> list[int]:
    return [device.index or 0] if device.type == "cuda" else []


class DynamicsVAEModule(pl.LightningModule):
    """
    The LightningModule wrapping a dynamics VAE's ELBO (Pyro's ``ELBOModule``).

    :param torch.nn.Module dynvae: a model following the :func:`~pyro_dynvae.models.build_model`
        protocol (``.model``, ``.guide``, ``.make_elbo()``, ``.reconstruct``, ``.forecast``).
    :param Dataset train_data: yields ``(frames, factors)``.
    :param Dataset val_data: held-out sequences, same format.
    :param TrainConfig config: batch size, learning rate, seed, forecast horizon, workers.
    """

    def __init__(
        self, dynvae: torch.nn.Module, train_data: Dataset, val_data: Dataset, config: TrainConfig
    ) -> None:
        super().__init__()
        self.dynvae = dynvae
        # The ELBOModule shares dynvae's model and guide; it is kept out of the module tree so
        # that every parameter is stored once, under ``dynvae.``, in the checkpoint.
        object.__setattr__(self, "loss_fn", dynvae.make_elbo()(dynvae.model, dynvae.guide))
        self.train_data = train_data
        self.val_data = val_data
        self.config = config
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
            self.train_data,
            self.config.seed,
            batch_sampler=sampler,
            num_workers=self.config.num_workers,
        )

    def val_dataloader(self) -> DataLoader:
        return _loader(self.val_data, self.config.seed, batch_size=self.config.batch_size)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.loss_fn.parameters(), lr=self.config.learning_rate)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        frames = _frames(batch)
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
                " optimiser step. The last checkpoint holds the last finite weights; resume from"
                " it with a smaller learning rate or gradient_clip_val."
            )

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
    if "," in devices:
        return [int(d) for d in devices.split(",") if d]
    return int(devices)


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
    path.write_text(json.dumps(content, indent=2, sort_keys=True, default=str) + "\n")


def fit(
    dynvae: torch.nn.Module,
    train_data: Dataset,
    val_data: Dataset,
    config: TrainConfig,
    run_dir: str | os.PathLike,
    *,
    ckpt_path: str | os.PathLike | None = None,
    callbacks: Sequence[Callback] = (),
    enable_progress_bar: bool = True,
) -> DynamicsVAEModule:
    """
    Train ``dynvae`` on ``train_data`` with Lightning, writing ``config.json``, checkpoints and
    logs into ``run_dir`` (metrics and figures are written by :func:`finish_run`).

    :param ckpt_path: a checkpoint to resume from (e.g. ``run_dir/checkpoints/last.ckpt``).
    :param callbacks: extra Lightning callbacks.
    :returns: the trained :class:`DynamicsVAEModule` (its ``trainer`` attribute is set).
    :raises NonFiniteLossError: when the loss or a gradient becomes non-finite.
    """
    run_dir = Path(run_dir)
    (run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
    lightning.seed_everything(config.seed, workers=True, verbose=False)
    module = DynamicsVAEModule(dynvae, train_data, val_data, config)
    # Create lazily initialised parameters before the optimiser (and DDP) sees them.
    with torch.no_grad():
        module.loss_fn(_frames(next(iter(module.val_dataloader()))))
    write_json(
        run_dir / "config.json",
        {"train": dataclasses.asdict(config), "model": dynvae.config, "versions": versions()},
    )
    checkpoint = ModelCheckpoint(
        dirpath=run_dir / "checkpoints",
        filename="step{step}",
        auto_insert_metric_name=False,
        every_n_train_steps=config.checkpoint_every,
        save_top_k=1,
        save_last=True,
    )
    val_every = config.val_every or config.max_steps
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
        enable_progress_bar=enable_progress_bar,
        enable_model_summary=False,
    )
    trainer.fit(module, ckpt_path=ckpt_path)
    return module


def make_dataset(config: TrainConfig, split: str) -> Dataset:
    """
    The ``"train"`` or held-out ``"test"`` dataset named by ``config`` (deterministic given its
    seed; the test split draws from disjoint digits/objects).
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    return DATASETS[config.dataset](
        num_sequences=config.num_sequences if split == "train" else config.num_val_sequences,
        num_frames=config.num_frames,
        image_size=config.image_size,
        seed=config.seed,
        split=split,
        **config.dataset_options,
    )


def make_model(config: TrainConfig, channels: int) -> torch.nn.Module:
    """Build the variant named by ``config`` (seeded, so the initial weights are reproducible)."""
    lightning.seed_everything(config.seed, verbose=False)
    return build_model(
        config.variant,
        image_size=config.image_size,
        channels=channels,
        latent_dim=config.latent_dim,
        num_sequences=config.num_sequences,
        **config.model_overrides,
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
    dynvae: torch.nn.Module, val_data: Dataset, config: TrainConfig, run_dir: str | os.PathLike
) -> dict[str, Any]:
    """
    Write ``metrics.json`` (held-out metrics, see :func:`evaluate`, for datasets with
    ground-truth factors :func:`disentanglement`, and the dynamics of :func:`dynamics_report`),
    the figures of :func:`pyro_dynvae.viz.save_run_figures` and the arviz export of
    :func:`dynamics_report` into ``run_dir``.

    :returns: the metrics, with ``figures`` listing the PNG paths written.
    """
    run_dir = Path(run_dir)
    metrics = evaluate(
        dynvae,
        val_data,
        batch_size=config.batch_size,
        forecast_horizon=config.forecast_horizon,
        seed=config.seed,
    )
    if isinstance(val_data, FactorDataset):
        metrics["disentanglement"] = disentanglement(dynvae, val_data, batch_size=config.batch_size)
    figures = save_run_figures(
        dynvae, val_data, run_dir / "figures", forecast_horizon=config.forecast_horizon
    )
    metrics["figures"] = [str(path.relative_to(run_dir)) for path in figures]
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
    enable_progress_bar: bool = True,
) -> dict[str, Any] | None:
    """
    Build the datasets and model from ``config``, train, and write the whole run folder.

    :param bool resume: continue from ``run_dir/checkpoints/last.ckpt``.
    :returns: the final metrics on the global-zero process, ``None`` on other ranks.
    """
    run_dir = Path(run_dir)
    ckpt_path = run_dir / "checkpoints" / "last.ckpt" if resume else None
    if resume and not ckpt_path.exists():
        raise ValueError(f"resume=True but there is no checkpoint at {ckpt_path}")
    train_data, val_data = make_dataset(config, "train"), make_dataset(config, "test")
    channels = _frames(train_data[0]).shape[1]
    module = fit(
        make_model(config, channels),
        train_data,
        val_data,
        config,
        run_dir,
        ckpt_path=ckpt_path,
        enable_progress_bar=enable_progress_bar,
    )
    if not module.trainer.is_global_zero:
        return None
    return finish_run(module.dynvae, val_data, config, run_dir)


def load_run(
    run_dir: str | os.PathLike, map_location: str | torch.device = "cpu"
) -> tuple[torch.nn.Module, TrainConfig]:
    """
    Rebuild a run's model from ``config.json`` and load its ``checkpoints/last.ckpt`` weights.

    :returns: ``(dynvae, config)`` with ``dynvae`` in eval mode.
    """
    run_dir = Path(run_dir)
    config_path = run_dir / "config.json"
    ckpt_path = run_dir / "checkpoints" / "last.ckpt"
    for path in (config_path, ckpt_path):
        if not path.exists():
            raise ValueError(f"run_dir {run_dir} is not a training run folder: {path} missing")
    saved = json.loads(config_path.read_text())
    config = TrainConfig.from_dict(saved["train"])
    dynvae = build_model(**saved["model"])
    state = torch.load(ckpt_path, map_location=map_location, weights_only=False)["state_dict"]
    prefix = "dynvae."
    dynvae.load_state_dict({k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)})
    return dynvae.eval(), config

"""
Lightning training of a dynamics VAE's ELBO.

Following Pyro's ``examples/svi_lightning.py``, the loss is Pyro's
:class:`~pyro.infer.elbo.ELBOModule` (``elbo(model, guide)``) with module-local parameters, and
a :class:`lightning.pytorch.LightningModule` whose ``training_step`` returns that loss and whose
optimiser covers ``loss_fn.parameters()``. Lightning then provides progress bars, checkpoints,
resumption, CSV/TensorBoard logs, gradient clipping and DDP across devices and nodes.

:func:`train` builds the datasets and model a :class:`~pyro_dynvae.config.TrainConfig` names,
trains them with :func:`fit` into a run folder (its contents and the rules of resuming and
replacing a run: :mod:`pyro_dynvae.run_folder`) and evaluates the result there
(:func:`pyro_dynvae.evaluation.finish_run`).

Reproducibility: the data order is a pure function of ``(seed, step)`` (see
:class:`~pyro_dynvae.loading.StepBatchSampler`), the RNG states are stored in every checkpoint,
and validation runs on a forked RNG, so a run resumed from a checkpoint takes exactly the steps
of an uninterrupted run.

The public names of :mod:`~pyro_dynvae.config`, :mod:`~pyro_dynvae.loading`,
:mod:`~pyro_dynvae.run_folder` and :mod:`~pyro_dynvae.evaluation` that this module held before
they moved there are re-exported here (see ``__all__``), so ``from pyro_dynvae.train import
TrainConfig, train`` and the like keep working.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import sys
import warnings
import weakref
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import lightning
import lightning.pytorch as pl
import torch
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger, Logger, TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_only
from torch.utils.data import DataLoader, Dataset

from pyro_dynvae.config import DATASETS, MIN_OBSERVED_FRAMES, TrainConfig, parse_devices
from pyro_dynvae.data import MemoizedSequences
from pyro_dynvae.defaults import dataset_options, model_options
from pyro_dynvae.evaluation import (
    PROTOCOL_PAIRS,
    background_frames,
    batch_metrics,
    digit_report,
    disentanglement,
    dynamics_report,
    evaluate,
    finish_run,
    forecast_errors,
    loss_scale,
    mean_training_frame,
)
from pyro_dynvae.loading import StepBatchSampler, frames_of, rng_devices, seeded_loader
from pyro_dynvae.models import build_model
from pyro_dynvae.models.dynamics import chain_layout
from pyro_dynvae.models.frames import gaussian_form
from pyro_dynvae.nets import conv_kernels
from pyro_dynvae.ops.dispatch import block_tridiag_algorithm
from pyro_dynvae.run_folder import (
    RESUMABLE,
    RUN_CONTENTS,
    check_run_dir,
    clear_run,
    holds_run,
    load_run,
    read_checkpoint,
    read_run_config,
    resume_history,
    versions,
    write_json,
)

__all__ = [
    "DATASETS",
    "MIN_OBSERVED_FRAMES",
    "PROTOCOL_PAIRS",
    "RESUMABLE",
    "RUN_CONTENTS",
    "DynamicsVAEModule",
    "NonFiniteLossError",
    "StepBatchSampler",
    "StepOptions",
    "TrainConfig",
    "background_frames",
    "batch_metrics",
    "clear_run",
    "digit_report",
    "disentanglement",
    "dynamics_report",
    "evaluate",
    "finish_run",
    "fit",
    "forecast_errors",
    "holds_run",
    "load_run",
    "loss_scale",
    "make_dataset",
    "make_model",
    "mean_training_frame",
    "read_checkpoint",
    "read_run_config",
    "train",
    "versions",
    "write_json",
]


class NonFiniteLossError(RuntimeError):
    """Raised when the loss or a gradient becomes NaN or infinite during training."""


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
    :param str chain_layout: separable latent chains as ``"separate"`` per-latent chains or one
        ``"joint"`` chain, see :func:`pyro_dynvae.models.dynamics.chain_layout`.
    :param str block_tridiag_algorithm: the block-tridiagonal algorithm, see
        :func:`pyro_dynvae.ops.dispatch.block_tridiag_algorithm` (``"auto"``: by regime).
    :param str gaussian_form: how a Gaussian frames likelihood is computed, see
        :func:`pyro_dynvae.models.frames.gaussian_form`.
    """

    cache_bytes: int = 2**30
    foreach: bool | None = True
    conv_kernels: str = "auto"
    channels_last: bool = True
    chain_layout: str = "separate"
    block_tridiag_algorithm: str = "auto"
    gaussian_form: str = "shared_scale"

    @classmethod
    def reference(cls) -> StepOptions:
        """The step before issue 13: render every batch, torch's default Adam, plain layers,
        contiguous weights, one joint latent chain factorised by the sequential block
        Cholesky, the elementwise Gaussian likelihood."""
        return cls(cache_bytes=0, foreach=None, conv_kernels="torch", channels_last=False,
                   chain_layout="joint", block_tridiag_algorithm="sequential",
                   gaussian_form="elementwise")

    @contextlib.contextmanager
    def applied(self) -> Iterator[None]:
        """Inside the block, the kernels, chain layout, algorithm and likelihood form these
        options choose."""
        with (
            conv_kernels(self.conv_kernels),
            chain_layout(self.chain_layout),
            block_tridiag_algorithm(self.block_tridiag_algorithm),
            gaussian_form(self.gaussian_form),
        ):
            yield


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
        protocol (``.model``, ``.guide``, ``.make_elbo()``, ``.exact_elbo()``, ``.reconstruct``,
        ``.forecast``).
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
        return seeded_loader(
            _memoized(self.train_data, self.step_options.cache_bytes),
            self.config.seed,
            batch_sampler=sampler,
            num_workers=self.config.num_workers,
        )

    def val_dataloader(self) -> DataLoader:
        return seeded_loader(self.val_data, self.config.seed, batch_size=self.config.batch_size)

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
        frames = frames_of(batch)
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
        frames = frames_of(batch)
        with torch.random.fork_rng(devices=rng_devices(frames.device)):
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


class _LastCheckpointAtEnd(Callback):
    """
    Writes ``last.ckpt`` at the end of training. :class:`ModelCheckpoint` with
    ``every_n_train_steps`` saves only at multiples of that interval and after validation, so
    a run whose ``max_steps`` is a multiple of neither ``checkpoint_every`` nor ``val_every``
    left the weights of an earlier step in ``last.ckpt`` (the example's 2400 steps: step
    2250's), and ``evaluate`` and ``--resume`` read another model than the one training scored.
    Not called when training stops on an exception (the NaN guard keeps the last good one).

    :param ModelCheckpoint checkpoint: the run's checkpoint callback (its ``dirpath``).
    """

    def __init__(self, checkpoint: ModelCheckpoint) -> None:
        self.checkpoint = checkpoint

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # (again, when ModelCheckpoint saved at this step: one small write, no private state)
        trainer.save_checkpoint(
            Path(self.checkpoint.dirpath) / f"{ModelCheckpoint.CHECKPOINT_NAME_LAST}.ckpt")


def _loggers(run_dir: Path) -> list[Logger]:
    """CSV logs always; TensorBoard events as well when tensorboard is importable."""
    loggers: list[Logger] = [CSVLogger(run_dir, name="logs")]
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        return loggers
    loggers.append(TensorBoardLogger(run_dir, name="logs", version=loggers[0].version))
    return loggers


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
    logs into ``run_dir`` (metrics and figures are written by
    :func:`~pyro_dynvae.evaluation.finish_run`).

    This is the building block of :func:`train` and does not look at what ``run_dir`` holds
    besides a run it resumes; use :func:`train` for the checks of a run folder. Everything that
    can be checked (the options, the resumed run's config) is checked before anything is
    written.

    :param ckpt_path: a checkpoint to resume from (e.g. ``run_dir/checkpoints/last.ckpt``). If
        ``run_dir`` holds the ``config.json`` of the run being resumed, ``config`` may differ
        from it only in the fields of :data:`~pyro_dynvae.run_folder.RESUMABLE`, and this
        resume (its step and changes) is appended to the ``history`` in ``config.json``.
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
        history = resume_history(run_dir, config, Path(ckpt_path))
    if config.threads:
        torch.set_num_threads(config.threads)
    lightning.seed_everything(config.seed, workers=True, verbose=False)
    module = DynamicsVAEModule(dynvae, train_data, val_data, config, step_options)
    # Create lazily initialised parameters before the optimiser (and DDP) sees them.
    with torch.no_grad():
        module.loss_fn(frames_of(next(iter(module.val_dataloader()))))
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
                devices=parse_devices(config.devices),
                num_nodes=config.num_nodes,
                strategy=config.strategy,
                use_distributed_sampler=False,  # StepBatchSampler shards by rank itself
                logger=_loggers(run_dir),
                callbacks=[checkpoint, _LastCheckpointAtEnd(checkpoint), *callbacks],
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
        with step_options.applied():
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


def _is_global_zero_process() -> bool:
    """
    Whether this is the process of global rank 0, as the launcher's environment tells before
    Lightning starts: Lightning's DDP launcher runs the whole command again in every further
    process (setting ``LOCAL_RANK`` and ``NODE_RANK``), and cluster launchers (torchrun, SLURM)
    start all processes at once (``RANK``, ``SLURM_PROCID``).
    """
    return rank_zero_only.rank == 0 and os.environ.get("NODE_RANK", "0") == "0"


def make_dataset(config: TrainConfig, split: str) -> Dataset:
    """
    The ``"train"`` or held-out ``"test"`` dataset named by ``config`` (deterministic given its
    seed; the test split draws from disjoint digits/objects), with the dataset's default options
    (:data:`pyro_dynvae.defaults.DATASET_DEFAULTS`) under ``config.dataset_options``. The
    ``"digit_reading"`` split is a larger draw from the test split,
    ``config.digit_reading_sequences`` sequences, for the digit reading.
    """
    sizes = {"train": config.num_sequences, "test": config.num_val_sequences,
             "digit_reading": config.digit_reading_sequences}
    if split not in sizes:
        raise ValueError(f"split must be one of {sorted(sizes)}, got {split!r}")
    try:
        return DATASETS[config.dataset](
            num_sequences=sizes[split],
            num_frames=config.num_frames,
            image_size=config.image_size,
            seed=config.seed,
            split="train" if split == "train" else "test",
            **dataset_options(config.dataset, config.dataset_options),
        )
    except TypeError as error:  # e.g. an unknown keyword in dataset_options
        raise TypeError(f"dataset_options of {config.dataset!r}: {error}") from error


def digit_reading_data(config: TrainConfig) -> Dataset | None:
    """The held-out sequences the digit reading of ``metrics.json`` scores: the
    ``"digit_reading"`` split for Moving MNIST, None for datasets without digits."""
    return make_dataset(config, "digit_reading") if config.dataset == "moving_mnist" else None


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

    A folder holds one run. Into a folder that already holds one (see
    :func:`~pyro_dynvae.run_folder.holds_run`), ``train`` only resumes it or, with
    ``overwrite``, replaces it; everything that can be checked (the datasets and model
    ``config`` names, the checkpoint) is checked before the old run is removed or anything is
    written.

    :param bool resume: continue from ``run_dir/checkpoints/last.ckpt``; ``config`` may differ
        from the saved one only in the fields of :data:`~pyro_dynvae.run_folder.RESUMABLE`
        (e.g. a new learning rate, applied to the restored optimiser) and its ``max_steps``
        must exceed the checkpoint's step.
    :param bool overwrite: remove the run in ``run_dir``
        (:func:`~pyro_dynvae.run_folder.clear_run`) and train anew.
    :param enable_progress_bar: as in :func:`fit` (``None``: only on a terminal).
    :returns: the final metrics on the global-zero process, ``None`` on other ranks.
    :raises ValueError: for a folder that holds another run, a missing or unreadable
        checkpoint, a resume that has nothing to do or changes what it may not.
    """
    run_dir = Path(run_dir)
    if _is_global_zero_process():
        ckpt_path = check_run_dir(run_dir, config, resume=resume, overwrite=overwrite)
    else:  # the process of global rank 0 checks (and clears) the folder for all
        ckpt_path = run_dir / "checkpoints" / "last.ckpt" if resume else None
    train_data, val_data = make_dataset(config, "train"), make_dataset(config, "test")
    channels = frames_of(train_data[0]).shape[1]
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
    return finish_run(module.dynvae, val_data, config, run_dir, train_data=train_data,
                      digit_data=digit_reading_data(config))

"""
The configuration of a training run: :class:`TrainConfig`, saved in the run folder's
``config.json`` (:mod:`pyro_dynvae.run_folder`), and the datasets a run can name.

Importing this module sets Pyro's ``module_local_params``, which every module that builds,
trains or evaluates a run's model needs and gets by importing :class:`TrainConfig`.
"""

from __future__ import annotations

import dataclasses
import math

import pyro

from pyro_dynvae.data import DynamicSprites, MovingMNIST

# Parameters live in their PyroModules (not Pyro's global param store), as ELBOModule training
# requires; PyroModules must be constructed after this is set, so it is set on import.
pyro.settings.set(module_local_params=True)


#: dataset name -> class in :mod:`pyro_dynvae.data`
DATASETS = {"moving_mnist": MovingMNIST, "sprites": DynamicSprites}

#: frames a forecast observes at least (the eigenvalue network reads pairs of frames)
MIN_OBSERVED_FRAMES = 2


@dataclasses.dataclass
class TrainConfig:
    """
    Everything a training run needs besides the model weights; saved as ``config.json``.

    The defaults are ``pyro-dynvae train``'s without options, and the example's run
    (``examples/moving_mnist.py``) but for its 32x32 canvas with 20-px digits, ``kl_scale=0.5``
    and 2400 steps: the ``hierarchical`` variant on one digit bouncing in a 64x64 canvas, 10 frames,
    16 latents (8 kept the digit worse: a digit classifier read 0.42-0.51 of the
    reconstructions against 0.54-0.73 at 16), the KL annealed over the first 1000 of 2000 steps
    (it kept more of the digit: 0.64 against 0.61); the model options each dataset needs come
    from :mod:`pyro_dynvae.defaults`.

    :param str variant: model variant name (a key of :data:`pyro_dynvae.models.VARIANTS`).
    :param dict model_overrides: extra keyword arguments for
        :func:`~pyro_dynvae.models.build_model`.
    :param str dataset: ``"moving_mnist"`` or ``"sprites"``.
    :param int num_sequences: training sequences.
    :param dict dataset_options: extra keyword arguments for the dataset class (e.g.
        ``{"num_digits": 1}``).
    :param int num_val_sequences: held-out sequences (see :func:`~pyro_dynvae.train.make_dataset`).
    :param int digit_reading_sequences: held-out Moving MNIST sequences (a larger draw from the
        test split) that the digit reading of ``metrics.json`` scores
        (:func:`~pyro_dynvae.evaluation.digit_report`): the reading's error is set by how many
        distinct digits it sees, and with 64 one run's ratio has a standard error of about
        0.05 (the default 512: about 0.02); ignored for other datasets.
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
    digit_reading_sequences: int = 512
    num_frames: int = 10
    image_size: int = 64
    latent_dim: int = 16
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
    kl_warmup_steps: int = 1000

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            _check_field_type(self, field)
        if self.dataset not in DATASETS:
            raise ValueError(f"dataset must be one of {sorted(DATASETS)}, got {self.dataset!r}")
        for name in ("num_sequences", "num_val_sequences", "digit_reading_sequences",
                     "image_size", "latent_dim", "batch_size", "max_steps", "checkpoint_every",
                     "num_nodes"):
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
        parse_devices(self.devices)
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


def parse_devices(devices: str | int) -> str | int | list[int]:
    """
    Lightning's ``devices`` from :attr:`TrainConfig.devices`: ``"auto"`` stays, ``"2"`` becomes
    2, ``"0,1"`` becomes [0, 1].

    :param devices: ``"auto"``, a count, or a comma-separated list of device indices.
    :raises ValueError: for anything else.
    """
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

"""A judge: a supervised network that reads every factor of a single frame.

Our datasets render frames exactly from factor rows (``dataset.render(dataset.sample_factors(n))``),
so a judge trains on unlimited labelled frames, offline and deterministically from a seed: every
step draws fresh rows with ``numpy.random.default_rng([seed, 0])``, renders them and takes one
Adam step (cosine-decayed learning rate) on the sum of the per-factor losses. Each factor is read
according to its type:

==============  ===========================  ====================================================
kind            output and loss              decoded value
==============  ===========================  ====================================================
categorical     ``K`` logits, cross-entropy  ``argmax``
continuous      ``t = 2 (v - low) / (high -  ``low + (t + 1) / 2 (high - low)``, clipped
                low) - 1``, squared error
periodic        ``(cos phi, sin phi)`` with  ``low + P atan2(s, c) / 2 pi`` (mod ``P``)
                ``phi = 2 pi (v - low) / P``,
                squared error
==============  ===========================  ====================================================

``P`` is the factor's period ``high - low``, or a shorter one where the frame shows the value
only modulo it: the dataset's factors declare it (``Factor.symmetry``), and
:meth:`~pyro_dynvae.data.base.FactorSpace.identifiable_periods` gives ``P`` row by row (a
square's rotation is seen modulo a quarter turn). When decoding, ``P`` comes from the judge's
own reading of the other factors (the shape); when scoring, from the true rows.

Two network choices share this trainer: ``"judge"`` (a full-resolution 3x3 convolution in front of
a wider :class:`~pyro_dynvae.nets.ConvEncoder`, the reader of the swap test) and ``"encoder"``
(the models' own ``ConvEncoder`` at :class:`~pyro_dynvae.models.DynamicsVAEConfig`'s widths: the
supervised ceiling of what a model with that encoder can encode, :mod:`.ceiling`). A linear
layer maps the features to every factor's outputs.

Held-out scores (:meth:`Judge.score`, stored in :attr:`Judge.report` after training) per factor:

- categorical: ``accuracy``; ``chance`` is the share of the most frequent true class;
- continuous and periodic: ``r2 = 1 - sum e^2 / sum e0^2``, ``mae = mean |e|`` and the tolerance
  accuracy ``accuracy = mean(|e| <= tolerance * P)`` (``P = high - low`` for a non-periodic
  factor), with ``e`` the prediction error (wrapped into ``[-P/2, P/2)`` when periodic) and
  ``e0`` the error of the best constant reader (the median; the circular mean of the phases when
  periodic), whose ``mae`` and tolerance accuracy are reported as ``chance_mae`` and ``chance``
  (its ``r2`` is 0 for a non-periodic factor).

:meth:`Judge.check` refuses a judge below a stated accuracy. :func:`load_or_train_judge` caches
a trained judge on disk under a key of the judge version, the datasets (their factors and a hash of
frames they render from fixed rows), the seed and the training options, so a study trains it once.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from pyro_dynvae.data import FactorDataset
from pyro_dynvae.models import DynamicsVAEConfig
from pyro_dynvae.nets import ConvEncoder
from pyro_dynvae.validation import check_positive_int

from .datasets import make_dataset

#: bump when training or scoring changes: cached judges of older versions are retrained
JUDGE_VERSION = 1
EVAL_CHUNK = 512
FINGERPRINT_ROWS = 16


#: a period ``P`` per row ``(N,)``, one for all rows, or ``None`` (not periodic)
Period = torch.Tensor | float | None


class JudgeAccuracyError(ValueError):
    """A judge reads some factor less accurately than the scoring protocol requires."""


# ----- networks -----------------------------------------------------------------------------
def judge_network(image_size: int, channels: int) -> tuple[nn.Module, int]:
    """The judge's body: a 3x3 convolution at full resolution, then a wider strided encoder.

    :returns: ``(module mapping (N, C, S, S) to (N, F), F)``.
    """
    stem = 16
    encoder = ConvEncoder(image_size, stem, conv_channels=(32, 64, 64, 128), feature_dim=256)
    return nn.Sequential(nn.Conv2d(channels, stem, 3, padding=1), nn.ELU(), encoder), 256


def encoder_network(image_size: int, channels: int) -> tuple[nn.Module, int]:
    """The models' frame encoder at the default widths of :class:`DynamicsVAEConfig`."""
    config = DynamicsVAEConfig()
    encoder = ConvEncoder(image_size, channels, config.conv_channels, config.feature_dim)
    return encoder, config.feature_dim


#: network choice -> builder ``(image_size, channels) -> (body, feature_dim)``
NETWORKS: dict[str, Callable[[int, int], tuple[nn.Module, int]]] = {
    "judge": judge_network,
    "encoder": encoder_network,
}


# ----- reading one factor -------------------------------------------------------------------
@dataclass(frozen=True)
class FactorReader:
    """How one factor is read from the network's outputs (see the module's table).

    :param str name: factor name.
    :param int column: its column in the dataset's factor rows.
    :param str kind: ``"categorical"``, ``"continuous"`` or ``"periodic"``.
    :param float low: smallest value.
    :param float high: largest value (the period's end when periodic).
    :param int num_categories: classes of a categorical factor, else ``None``.
    """

    name: str
    column: int
    kind: str
    low: float
    high: float
    num_categories: int | None = None

    @property
    def width(self) -> int:
        """Number of network outputs."""
        return {"categorical": self.num_categories, "continuous": 1, "periodic": 2}[self.kind]

    def period(self, periods: Mapping[str, torch.Tensor]) -> Period:
        """``P`` per row (identifiable period) or the whole range ``high - low``."""
        return periods.get(self.name, self.high - self.low)

    def loss(
        self, outputs: torch.Tensor, values: torch.Tensor, period: Period
    ) -> torch.Tensor:
        """Per-row loss ``(N,)`` of outputs ``(N, width)`` against true values ``(N,)``."""
        if self.kind == "categorical":
            return nn.functional.cross_entropy(outputs, values.round().long(), reduction="none")
        if self.kind == "continuous":
            target = 2 * (values - self.low) / max(self.high - self.low, 1e-12) - 1
            return (outputs[:, 0] - target) ** 2
        phase = 2 * math.pi * (values - self.low) / period
        target = torch.stack([torch.cos(phase), torch.sin(phase)], dim=-1)
        return ((outputs - target) ** 2).sum(-1)

    def decode(self, outputs: torch.Tensor, period: Period) -> torch.Tensor:
        """Values ``(N,)`` read from outputs ``(N, width)``."""
        if self.kind == "categorical":
            return outputs.argmax(-1).to(torch.float32)
        if self.kind == "continuous":
            fraction = ((outputs[:, 0] + 1) / 2).clamp(0, 1)
            return self.low + fraction * (self.high - self.low)
        phase = torch.atan2(outputs[:, 1], outputs[:, 0]) % (2 * math.pi)
        return self.low + phase / (2 * math.pi) * period

    def metrics(
        self, predicted: torch.Tensor, true: torch.Tensor, period: Period, tolerance: float
    ) -> dict[str, Any]:
        """Held-out scores of predicted values against true values (both ``(N,)``)."""
        if self.kind == "categorical":
            counts = torch.bincount(true.round().long(), minlength=self.num_categories)
            return {
                "kind": self.kind,
                "accuracy": (predicted == true.round()).double().mean().item(),
                "chance": (counts.max() / counts.sum()).item(),
            }
        predicted, true = predicted.double(), true.double()
        if self.kind == "continuous":
            span = self.high - self.low
            error = predicted - true
            baseline = true.median() - true
            spread = true - true.mean()
        else:
            span = torch.as_tensor(period, dtype=torch.float64)
            error = _wrap(predicted - true, span)
            phase = 2 * math.pi * (true - self.low) / span
            centre = torch.atan2(torch.sin(phase).mean(), torch.cos(phase).mean())
            baseline = spread = _wrap(self.low + centre / (2 * math.pi) * span - true, span)
        window = tolerance * span
        return {
            "kind": self.kind,
            "r2": 1 - (error**2).sum().item() / max((spread**2).sum().item(), 1e-300),
            "mae": error.abs().mean().item(),
            "accuracy": (error.abs() <= window).double().mean().item(),
            "chance_mae": baseline.abs().mean().item(),
            "chance": (baseline.abs() <= window).double().mean().item(),
            "tolerance": tolerance,
        }


def _wrap(difference: torch.Tensor, period: Period) -> torch.Tensor:
    """``difference`` wrapped into ``[-period / 2, period / 2)``."""
    return torch.remainder(difference + period / 2, period) - period / 2


def factor_readers(
    dataset: FactorDataset, names: Sequence[str] | None = None
) -> list[FactorReader]:
    """Readers of the factors ``names`` (default: the dataset's ``metric_factors``)."""
    if names is None:
        names = dataset.metric_factors
    if isinstance(names, str) or not names or len(set(names)) != len(names):
        raise ValueError(f"factors must be a non-empty list of distinct names, got {names!r}")
    readers = []
    for name in names:
        column = dataset.factor_index(name)
        factor = dataset.factors[column]
        if factor.num_categories is not None:
            kind = "categorical"
        else:
            kind = "periodic" if factor.periodic else "continuous"
        readers.append(
            FactorReader(name, column, kind, factor.low, factor.high, factor.num_categories)
        )
    return readers


def _periods(dataset: FactorDataset, rows: torch.Tensor) -> dict[str, torch.Tensor]:
    return dataset.identifiable_periods(rows)


# ----- the judge ----------------------------------------------------------------------------
class Judge:
    """A network reading factors of single frames of one dataset.

    Build one with :meth:`train` or :func:`load_or_train_judge`.

    :param FactorDataset dataset: the dataset whose frames it reads (its factor metadata and
        ``identifiable_periods``).
    :param str network: a key of :data:`NETWORKS`.
    :param factors: the factor names read (default: ``dataset.metric_factors``).
    :param int seed: seed of the initial weights (drawn without touching torch's global
        generator).
    """

    def __init__(
        self,
        dataset: FactorDataset,
        network: str = "judge",
        factors: Sequence[str] | None = None,
        seed: int = 0,
    ) -> None:
        if not isinstance(dataset, FactorDataset):
            raise TypeError(f"dataset must be a FactorDataset, got {type(dataset).__name__}")
        if network not in NETWORKS:
            raise ValueError(f"network must be one of {sorted(NETWORKS)}, got {network!r}")
        self.dataset = dataset
        self.network_name = network
        self.readers = factor_readers(dataset, factors)
        example = dataset.render(dataset.sample_factors(1, rng=0))[0]
        self.frame_shape = tuple(example.shape)
        channels, height, width = self.frame_shape
        if height != width:
            raise ValueError(f"the judge needs square frames, got {height}x{width}")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(check_positive_int(seed, "seed", minimum=0))
            body, feature_dim = NETWORKS[network](height, channels)
            self.network = nn.Sequential(
                body, nn.Linear(feature_dim, sum(reader.width for reader in self.readers))
            )
        self.report: dict[str, Any] = {}

    @property
    def factor_names(self) -> list[str]:
        """Names of the factors read, in output order."""
        return [reader.name for reader in self.readers]

    @property
    def static_factors(self) -> list[str]:
        """The factors read that are static in the dataset."""
        return [name for name in self.factor_names if name in self.dataset.static_factors]

    # ----- reading ------------------------------------------------------------------------
    def outputs(self, frames: torch.Tensor) -> list[torch.Tensor]:
        """Raw network outputs per factor, each ``(N, width)``, of frames ``(N, C, H, W)``."""
        return list(self.network(frames).split([r.width for r in self.readers], dim=-1))

    def _check_frames(self, frames: torch.Tensor, sequences: bool = False) -> torch.Tensor:
        frames = torch.as_tensor(frames, dtype=torch.float32)
        need = 4 if sequences else 3
        shape = tuple(frames.shape)
        if frames.dim() < need or shape[-3:] != self.frame_shape or not frames.numel():
            layout = "(..., T, C, H, W)" if sequences else "(..., C, H, W)"
            raise ValueError(
                f"frames must have a non-empty shape {layout} with (C, H, W) = "
                f"{self.frame_shape}, got {shape}"
            )
        return frames

    @torch.no_grad()
    def _read(self, frames: torch.Tensor) -> list[torch.Tensor]:
        """Per-factor outputs ``(N, width)`` of frames ``(N, C, H, W)``, read in chunks: class
        probabilities, normalised values and unit vectors (what may be averaged over frames)."""
        self.network.eval()
        raw = torch.cat([self.network(chunk) for chunk in frames.split(EVAL_CHUNK)])
        outputs = raw.split([reader.width for reader in self.readers], dim=-1)
        return [_normalise(reader, out) for reader, out in zip(self.readers, outputs, strict=True)]

    def _decode(self, outputs: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        """Values per factor from normalised outputs ``(N, width)``; periodic factors last, with
        their periods from the judge's own reading of the others (a factor it does not read
        counts as its lowest value)."""
        values = {
            reader.name: reader.decode(out, None)
            for reader, out in zip(self.readers, outputs, strict=True)
            if reader.kind != "periodic"
        }
        rows = torch.tensor([f.low for f in self.dataset.factors], dtype=torch.float32)
        rows = rows.repeat(len(outputs[0]), 1)
        for reader in self.readers:
            if reader.name in values:
                rows[:, reader.column] = values[reader.name]
        periods = _periods(self.dataset, rows)
        for reader, out in zip(self.readers, outputs, strict=True):
            if reader.kind == "periodic":
                values[reader.name] = reader.decode(out, reader.period(periods))
        return {name: values[name] for name in self.factor_names}

    def predict(self, frames: torch.Tensor) -> dict[str, torch.Tensor]:
        """The factors read from each frame.

        :param torch.Tensor frames: ``(..., C, H, W)`` in [0, 1].
        :returns: ``{factor: values (...)}``, float32 (class indices for categorical factors).
        """
        frames = self._check_frames(frames)
        batch = frames.shape[:-3]
        values = self._decode(self._read(frames.reshape(-1, *self.frame_shape)))
        return {name: value.reshape(batch) for name, value in values.items()}

    def predict_sequences(self, frames: torch.Tensor) -> dict[str, torch.Tensor]:
        """The factors read from sequences: dynamic factors frame by frame, static factors once
        per sequence from the average over its ``T`` frames of the class probabilities
        (categorical), the normalised values (continuous) or the unit vectors ``(cos, sin)``
        (periodic), repeated over the frames.

        :param torch.Tensor frames: ``(..., T, C, H, W)``.
        :returns: ``{factor: values (..., T)}``.
        """
        frames = self._check_frames(frames, sequences=True)
        batch = frames.shape[:-3]
        outputs = self._read(frames.reshape(-1, *self.frame_shape))
        static = set(self.static_factors)
        averaged = []
        for reader, out in zip(self.readers, outputs, strict=True):
            if reader.name in static:
                mean = out.reshape(*batch, out.shape[-1]).mean(-2, keepdim=True)
                out = mean.expand(*batch, out.shape[-1]).reshape(-1, out.shape[-1])
            averaged.append(out)
        values = self._decode(averaged)
        return {name: value.reshape(batch) for name, value in values.items()}

    def class_probabilities(self, frames: torch.Tensor) -> dict[str, torch.Tensor]:
        """Class probabilities ``{factor: (..., K)}`` of the categorical factors, per frame
        (for scores of generated frames such as IS and ``H(y|x)``).

        :param torch.Tensor frames: ``(..., C, H, W)``.
        """
        frames = self._check_frames(frames)
        outputs = self._read(frames.reshape(-1, *self.frame_shape))
        return {
            reader.name: out.reshape(*frames.shape[:-3], out.shape[-1])
            for reader, out in zip(self.readers, outputs, strict=True)
            if reader.kind == "categorical"
        }

    # ----- scoring ------------------------------------------------------------------------
    def score(
        self,
        frames: torch.Tensor,
        factors: torch.Tensor,
        *,
        sequences: bool = False,
        tolerance: float = 0.05,
    ) -> dict[str, dict[str, Any]]:
        """Per-factor accuracy / error of the judge's reading against true factors.

        :param torch.Tensor frames: ``(..., C, H, W)``, or ``(..., T, C, H, W)`` with
            ``sequences=True`` (static factors read once per sequence, :meth:`predict_sequences`).
        :param torch.Tensor factors: true rows ``(..., K)`` in the dataset's columns, one per frame.
        :param bool sequences: read sequences rather than independent frames.
        :param float tolerance: tolerance-accuracy window as a fraction of the period ``P``.
        :returns: ``{factor: metrics}`` (see the module docstring).
        """
        if not 0 < tolerance < 1:
            raise ValueError(f"tolerance must be in (0, 1), got {tolerance}")
        predicted = self.predict_sequences(frames) if sequences else self.predict(frames)
        factors = self.dataset._check_rows(factors)
        batch = next(iter(predicted.values())).shape
        if tuple(factors.shape[:-1]) != tuple(batch):
            raise ValueError(
                f"factors must have one row per frame, shape {tuple(batch)} + (K,), got "
                f"{tuple(factors.shape)}"
            )
        rows = factors.reshape(-1, factors.shape[-1])
        periods = _periods(self.dataset, rows)
        return {
            reader.name: reader.metrics(
                predicted[reader.name].reshape(-1),
                rows[:, reader.column],
                reader.period(periods),
                tolerance,
            )
            for reader in self.readers
        }

    def check(self, min_accuracy: float = 0.95, min_r2: float = 0.9) -> None:
        """Refuse a judge whose held-out reading is below the protocol's requirement.

        :param float min_accuracy: least held-out accuracy of every categorical factor.
        :param float min_r2: least held-out ``R^2`` of every continuous or periodic factor.
        :raises JudgeAccuracyError: naming every factor below its requirement.
        """
        if "factors" not in self.report:
            raise JudgeAccuracyError("the judge has no held-out report; train it with Judge.train")
        failures = []
        for name, metrics in self.report["factors"].items():
            if metrics["kind"] == "categorical" and metrics["accuracy"] < min_accuracy:
                failures.append(
                    f"{name} accuracy {metrics['accuracy']:.3f} < {min_accuracy} "
                    f"(chance {metrics['chance']:.3f})"
                )
            elif metrics["kind"] != "categorical" and metrics["r2"] < min_r2:
                failures.append(f"{name} R^2 {metrics['r2']:.3f} < {min_r2} (chance 0)")
        if failures:
            raise JudgeAccuracyError(
                "the judge reads held-out frames below the required accuracy: "
                + "; ".join(failures)
            )

    # ----- training -----------------------------------------------------------------------
    @classmethod
    def train(
        cls,
        dataset: FactorDataset | str,
        *,
        seed: int = 0,
        steps: int = 3000,
        batch_size: int = 64,
        learning_rate: float = 2e-3,
        network: str = "judge",
        factors: Sequence[str] | None = None,
        held_out: FactorDataset | None = None,
        num_held_out: int = 2000,
        tolerance: float = 0.05,
        spec: Mapping[str, Any] | None = None,
    ) -> Judge:
        """Train a judge on frames rendered from freshly sampled factor rows.

        :param dataset: a :class:`FactorDataset` (its ``sample_factors`` and ``render``), or a
            study dataset name (:func:`~pyro_dynvae.assessment.datasets.make_dataset`: trains on
            its ``"train"`` split and holds out its ``"test"`` split).
        :param int seed: seed of the initial weights and of the training and held-out rows.
        :param int steps: optimiser steps (one fresh batch each).
        :param int batch_size: frames per step.
        :param float learning_rate: Adam's initial learning rate (cosine decay to 0).
        :param str network: ``"judge"`` or ``"encoder"`` (:data:`NETWORKS`).
        :param factors: factor names read (default ``metric_factors``).
        :param held_out: dataset of the held-out rows (default ``dataset``; e.g. the test split,
            whose digits are unseen).
        :param int num_held_out: held-out frames scored into :attr:`report`.
        :param float tolerance: the report's tolerance (:meth:`score`).
        :param dict spec: spec of a named dataset (default the study's).
        """
        dataset, held_out = _resolve(dataset, held_out, spec)
        seed = check_positive_int(seed, "seed", minimum=0)
        steps = check_positive_int(steps, "steps")
        batch_size = check_positive_int(batch_size, "batch_size")
        num_held_out = check_positive_int(num_held_out, "num_held_out")
        if not learning_rate > 0:
            raise ValueError(f"learning_rate must be > 0, got {learning_rate}")
        start = time.perf_counter()
        judge = cls(dataset, network, factors, seed)
        judge.network.train()
        optimiser = torch.optim.Adam(judge.network.parameters(), lr=learning_rate)
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, steps)
        rng = np.random.default_rng([seed, 0])
        for _ in range(steps):
            rows = dataset.sample_factors(batch_size, rng)
            frames = dataset.render(rows)
            periods = _periods(dataset, rows)
            outputs = judge.outputs(frames)
            loss = sum(
                reader.loss(out, rows[:, reader.column], reader.period(periods)).mean()
                for reader, out in zip(judge.readers, outputs, strict=True)
            )
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            schedule.step()
        train_seconds = time.perf_counter() - start
        rows = held_out.sample_factors(num_held_out, np.random.default_rng([seed, 1]))
        judge.report = {
            "factors": judge.score(held_out.render(rows), rows, tolerance=tolerance),
            "num_held_out": num_held_out,
            "train_seconds": train_seconds,
            "options": {
                "seed": seed,
                "steps": steps,
                "batch_size": batch_size,
                "learning_rate": learning_rate,
                "network": network,
                "factors": judge.factor_names,
                "tolerance": tolerance,
            },
        }
        return judge

    # ----- persistence --------------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> None:
        """Write the weights and the report to ``path`` (atomically) and the report beside it
        as JSON (``path`` with suffix ``.json``)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        state = {
            "version": JUDGE_VERSION,
            "network": self.network_name,
            "factors": self.factor_names,
            "state_dict": self.network.state_dict(),
            "report": json.dumps(self.report),
        }
        partial = path.with_name(path.name + ".partial")
        torch.save(state, partial)
        os.replace(partial, path)
        path.with_suffix(".json").write_text(json.dumps(self.report, indent=2) + "\n")

    @classmethod
    def load(cls, path: str | os.PathLike, dataset: FactorDataset) -> Judge:
        """A judge saved by :meth:`save`, for ``dataset`` (the one it was trained on).

        :raises ValueError: when the file is of another judge version or reads other factors.
        """
        state = torch.load(path, map_location="cpu", weights_only=True)
        if state.get("version") != JUDGE_VERSION:
            raise ValueError(
                f"{path}: judge version {state.get('version')}, expected {JUDGE_VERSION}"
            )
        judge = cls(dataset, state["network"], state["factors"])
        judge.network.load_state_dict(state["state_dict"])
        judge.report = json.loads(state["report"])
        return judge


def _resolve(
    dataset: FactorDataset | str,
    held_out: FactorDataset | None,
    spec: Mapping[str, Any] | None,
) -> tuple[FactorDataset, FactorDataset]:
    """The training and held-out datasets from a dataset or a study dataset name."""
    if isinstance(dataset, str):
        train = make_dataset(dataset, "train", spec=spec)
        return train, make_dataset(dataset, "test", spec=spec) if held_out is None else held_out
    if spec is not None:
        raise ValueError("spec is only used with a dataset name")
    if not isinstance(dataset, FactorDataset):
        raise TypeError(
            f"dataset must be a FactorDataset or a dataset name, got {type(dataset).__name__}"
        )
    if held_out is not None and not isinstance(held_out, FactorDataset):
        raise TypeError(f"held_out must be a FactorDataset, got {type(held_out).__name__}")
    return dataset, dataset if held_out is None else held_out


def _normalise(reader: FactorReader, outputs: torch.Tensor) -> torch.Tensor:
    """Class probabilities or unit vectors, which may be averaged over frames."""
    if reader.kind == "categorical":
        return outputs.softmax(-1)
    if reader.kind == "periodic":
        return outputs / outputs.norm(dim=-1, keepdim=True).clamp(min=1e-12)
    return outputs


def dataset_fingerprint(dataset: FactorDataset) -> dict[str, Any]:
    """What identifies a dataset's frames: its class, factors and a hash of frames it renders
    from fixed rows (``sample_factors(16, rng=0)``, which also reflects the factor ranges and,
    for Moving MNIST, the digit pool)."""
    rows = dataset.sample_factors(FINGERPRINT_ROWS, rng=0)
    digest = hashlib.sha256(rows.numpy().tobytes())
    digest.update(dataset.render(rows).numpy().tobytes())
    return {
        "class": type(dataset).__name__,
        "factors": [
            [f.name, f.low, f.high, f.num_categories, f.static, f.periodic]
            for f in dataset.factors
        ],
        "frames": digest.hexdigest(),
    }


def load_or_train_judge(
    dataset: FactorDataset | str,
    cache_dir: str | os.PathLike,
    seed: int = 0,
    *,
    held_out: FactorDataset | None = None,
    spec: Mapping[str, Any] | None = None,
    **options: Any,
) -> Judge:
    """The judge cached in ``cache_dir`` for these datasets, seed and options; trained and saved
    there (``judge-<key>.pt`` and its report ``judge-<key>.json``) when missing.

    :param dataset: as :meth:`Judge.train`.
    :param cache_dir: folder of cached judges (e.g. the study's output folder).
    :param int seed: the judge's seed.
    :param held_out: as :meth:`Judge.train`.
    :param dict spec: as :meth:`Judge.train`.
    :param options: further keywords of :meth:`Judge.train` (``steps``, ``network``...).
    """
    train, test = _resolve(dataset, held_out, spec)
    bound = inspect.signature(Judge.train).bind(train, seed=seed, **options)
    bound.apply_defaults()  # the same key whether an option is given at its default or omitted
    settings = {
        name: value
        for name, value in bound.arguments.items()
        if name not in ("dataset", "held_out", "spec")
    }
    key_source = {
        "version": JUDGE_VERSION,
        "options": settings,
        "train": dataset_fingerprint(train),
        "held_out": dataset_fingerprint(test),
    }
    key = hashlib.sha256(json.dumps(key_source, sort_keys=True, default=list).encode()).hexdigest()
    path = Path(cache_dir) / f"judge-{key[:16]}.pt"
    if path.is_file():
        return Judge.load(path, train)
    judge = Judge.train(train, seed=seed, held_out=test, **options)
    judge.save(path)
    return judge

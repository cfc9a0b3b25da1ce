"""
The run folder: what a training run writes into it, and reading and checking what it holds.

Every run writes one folder::

    run_dir/
      config.json        training, model and data configuration plus library versions
      checkpoints/       last.ckpt (and the newest periodic checkpoint)
      logs/version_N/    metrics.csv (and TensorBoard events when tensorboard is installed);
                         N counts the starts, so a resumed run keeps its earlier logs
      metrics.json       held-out ELBO, reconstruction and forecast errors
      figures/           PNGs written by :mod:`pyro_dynvae.viz`

``config.json`` and the checkpoints are written by :func:`pyro_dynvae.train.fit`, the metrics,
figures and dynamics by :func:`pyro_dynvae.evaluation.finish_run`.

A folder holds one run: :func:`~pyro_dynvae.train.train` refuses a folder that already holds
one (:func:`check_run_dir`) unless it resumes that run (``resume=True``, which may change only
the options in :data:`RESUMABLE` and records each resume in ``config.json``'s ``history``) or
replaces it (``overwrite=True``, which first removes everything in :data:`RUN_CONTENTS`).
Checkpoints are always ``checkpoints/last.ckpt`` of the run being trained.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pickle
import shutil
from pathlib import Path
from typing import Any

import lightning
import numpy as np
import pyro
import torch

from pyro_dynvae import __version__
from pyro_dynvae.config import TrainConfig
from pyro_dynvae.models import build_model

#: what a run writes into its folder; ``train(..., overwrite=True)`` removes exactly these
RUN_CONTENTS = (
    "config.json", "checkpoints", "logs", "metrics.json", "figures", "dynamics.nc",
    "dynamics_summary.csv",
)

#: TrainConfig fields a resumed run may change: how it is optimised and where it runs, never
#: the model, the data or the evaluation
RESUMABLE = (
    "learning_rate", "gradient_clip_val", "max_steps", "val_every", "checkpoint_every",
    "num_workers", "accelerator", "devices", "num_nodes", "strategy", "threads",
)


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
    Load a Lightning checkpoint written by :func:`~pyro_dynvae.train.fit`.

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


def resume_history(run_dir: Path, config: TrainConfig, ckpt_path: Path) -> list[dict[str, Any]]:
    """
    The ``history`` of the run in ``run_dir`` with this resume appended: the checkpoint's step
    and the changed fields as ``{name: [old, new]}``. Empty when ``run_dir`` holds no
    ``config.json`` (a checkpoint from elsewhere starts a new run).

    :param Path run_dir: the run folder of the resumed run.
    :param TrainConfig config: the configuration it resumes with.
    :param Path ckpt_path: the checkpoint it resumes from.
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


def check_run_dir(
    run_dir: Path, config: TrainConfig, *, resume: bool, overwrite: bool
) -> Path | None:
    """
    What :func:`~pyro_dynvae.train.train` may do with ``run_dir``.

    :param Path run_dir: the run folder.
    :param TrainConfig config: the configuration to train with.
    :param bool resume: continue the run ``run_dir`` holds.
    :param bool overwrite: replace the run ``run_dir`` holds.
    :returns: the checkpoint to resume from (None: a new run).
    :raises ValueError: for a folder that is a file or holds another run, or a resume without a
        readable ``config.json`` and checkpoint or with nothing left to train.
    """
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

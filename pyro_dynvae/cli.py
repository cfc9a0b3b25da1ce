"""
The ``pyro-dynvae`` command line: ``train``, ``evaluate``, ``forecast`` and ``show-data``.

Examples::

    pyro-dynvae show-data --num-sequences 4
    pyro-dynvae train --variant hierarchical --max-steps 500 --run-dir runs/hier
    pyro-dynvae train --run-dir runs/hier --resume --max-steps 1000
    pyro-dynvae evaluate runs/hier
    pyro-dynvae forecast runs/hier --horizon 10
    pyro-dynvae train --devices 2 --strategy ddp --accelerator cpu   # DDP, gloo on CPU

A mistake in what was asked (a bad option, a missing or corrupt file, a folder that is not a
run) prints one line, ``pyro-dynvae: error: ...``, and exits with status 2; ``--debug`` shows
the traceback instead.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import torch

from pyro_dynvae import train as training
from pyro_dynvae import viz
from pyro_dynvae.assessment import study as compare
from pyro_dynvae.assessment.protocol import DEFAULT_JUDGE_CACHE, JUDGE_CACHE_ENV, protocol_judge
from pyro_dynvae.config import DATASETS, MIN_OBSERVED_FRAMES, TrainConfig
from pyro_dynvae.data import FactorDataset
from pyro_dynvae.evaluation import background_frames, finish_run, forecast_errors
from pyro_dynvae.metrics import BASELINES
from pyro_dynvae.run_folder import RESUMABLE, load_run, read_run_config
from pyro_dynvae.validation import json_object

#: exit status for a mistake in what was asked (as for argparse's own errors)
USAGE_ERROR = 2

#: help text of every TrainConfig field exposed by ``pyro-dynvae train``
TRAIN_OPTIONS = {
    "variant": "model variant (see pyro_dynvae.models.VARIANTS)",
    "model_overrides": "JSON object of extra build_model keyword arguments",
    "dataset": f"dataset, one of {sorted(DATASETS)}",
    "dataset_options": 'JSON object of extra dataset keyword arguments, e.g. \'{"num_digits": 1}\'',
    "num_sequences": "training sequences",
    "num_val_sequences": "held-out sequences (test split) for validation and metrics",
    "digit_reading_sequences": "held-out Moving MNIST sequences the digit reading scores",
    "num_frames": "frames per sequence T",
    "image_size": "frame height and width in pixels",
    "latent_dim": "latent dimension n",
    "batch_size": "sequences per optimiser step and device",
    "learning_rate": "Adam learning rate",
    "max_steps": "total optimiser steps (with --resume: the new total)",
    "gradient_clip_val": "clip the gradient norm to this value (0 disables)",
    "seed": "seed for weights, data order and Monte Carlo noise",
    "val_every": "validate every this many steps (0: only at the end)",
    "checkpoint_every": "save a checkpoint every this many steps",
    "forecast_horizon": "frames k forecast in validation and metrics",
    "num_workers": "DataLoader worker processes",
    "accelerator": "Lightning accelerator: auto, cpu, gpu, ...",
    "devices": "Lightning devices: auto, a count, or a list like 0,1",
    "num_nodes": "number of nodes for multi-node DDP",
    "strategy": "Lightning strategy: auto, ddp, ddp_spawn, ... (DDP on CPU uses gloo)",
    "threads": "torch intra-op threads per process (0: torch's default)",
    "kl_warmup_steps": "KL annealing: the z term is scaled up linearly over these steps (0: off)",
}


class UserError(Exception):
    """A mistake in the command line that the command itself finds."""


#: what a user can get wrong: the library reports bad arguments and files as ValueError,
#: TypeError or OSError (FileNotFoundError, ...) naming them; one line, exit status 2
USER_ERRORS = (UserError, ValueError, TypeError, OSError)


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Appends ``(default: ...)`` only to options that have a default to show."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.default is None or action.default is False:
            return action.help
        return super()._get_help_string(action)


class _StoreGiven(argparse.Action):
    """Stores the value like ``store`` and records in ``namespace.given`` that it was given."""

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        setattr(namespace, self.dest, values)
        namespace.given = (*namespace.given, self.dest)


def _add_train_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train a model and write a run folder",
        description="Train a model; writes config.json, checkpoints/, logs/, metrics.json and "
        "figures/ into --run-dir, which must not hold another run (see --resume, --overwrite).",
        formatter_class=_HelpFormatter,
        parents=[_debug_parent()],
    )
    defaults = TrainConfig()
    for field in dataclasses.fields(TrainConfig):
        default = getattr(defaults, field.name)
        kind = json_object if isinstance(default, dict) else type(default)
        parser.add_argument(
            "--" + field.name.replace("_", "-"),
            type=kind,
            action=_StoreGiven,
            # argparse passes string defaults through ``type``, so dicts go in as JSON text
            default=json.dumps(default) if isinstance(default, dict) else default,
            help=TRAIN_OPTIONS[field.name],
        )
    parser.set_defaults(given=())
    parser.add_argument(
        "--run-dir", default=None, help="output folder (default: runs/<variant>-seed<seed>)"
    )
    existing = parser.add_mutually_exclusive_group()
    resumable = ", ".join("--" + name.replace("_", "-") for name in RESUMABLE)
    existing.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in --run-dir from its checkpoints/last.ckpt with its saved "
        f"options; only {resumable} may be given anew (--max-steps is the new total, above "
        "the checkpoint's step)",
    )
    existing.add_argument(
        "--overwrite",
        action="store_true",
        help="remove the run that --run-dir holds (config.json, checkpoints/, logs/, "
        "metrics.json, figures/, ...) and train a new one",
    )
    parser.add_argument(
        "--no-progress-bar",
        action="store_true",
        help="hide the progress bar (shown by default only when output goes to a terminal)",
    )
    parser.set_defaults(command=_train)


def _train(args: argparse.Namespace) -> int:
    values = {field.name: getattr(args, field.name) for field in dataclasses.fields(TrainConfig)}
    run_dir = Path(args.run_dir or f"runs/{args.variant}-seed{args.seed}")
    if args.resume:
        # the saved run's options, with those given on this command line (fit checks that
        # only resumable ones change)
        try:
            _, saved = read_run_config(run_dir)
        except ValueError as error:
            raise UserError(f"--resume: {error}") from error
        values = {**dataclasses.asdict(saved), **{name: values[name] for name in args.given}}
    metrics = training.train(
        TrainConfig.from_dict(values),
        run_dir,
        resume=args.resume,
        overwrite=args.overwrite,
        enable_progress_bar=False if args.no_progress_bar else None,
    )
    if metrics is not None:
        _print_metrics(metrics, run_dir)
    return 0


def _forecast_lines(scores: dict) -> list[str]:
    """The model's forecast errors beside each baseline's, on all and on object pixels."""
    lines = ["forecast MSE, all pixels / object pixels:"]
    for name in ("model", *BASELINES):
        lines.append(f"  {name:<12} {scores['mse'][name]:.6g} / {scores['object_mse'][name]:.6g}")
    lines.append(
        f"  model / best baseline: {scores['ratio_to_best_baseline']:.3g} "
        f"({scores['best_baseline']}) / {scores['object_ratio_to_best_baseline']:.3g} "
        f"({scores['best_object_baseline']}); "
        + ("beats every baseline" if scores["beats_baselines"] else "does NOT beat every baseline")
    )
    return lines


def _print_metrics(metrics: dict, run_dir: Path) -> None:
    print(f"run folder: {run_dir.resolve()}")
    for key in ("elbo", "recon_mse"):
        print(f"  {key:24s} {metrics[key]}")
    for line in _forecast_lines(metrics["forecast"]):
        print(f"  {line}")
    if "digit_reading" in metrics:
        reading = metrics["digit_reading"]
        print(f"  digit classifier accuracy: data {reading['accuracy_data']:.3f}, "
              f"reconstructions {reading['accuracy_reconstruction']:.3f} (chance 0.1; "
              f"{reading['num_sequences']} sequences)")
    protocol = metrics.get("static_dynamic")
    if protocol is not None:
        print("  static/dynamic protocol: " + _protocol_line(protocol))
    print(f"  metrics: {run_dir / 'metrics.json'}")
    for figure in metrics["figures"]:
        print(f"  figure:  {run_dir / figure}")


def _protocol_line(protocol: dict) -> str:
    """One line of the static/dynamic protocol's headline (or the judge's refusal)."""
    if "refused" in protocol:
        return f"not scored: {protocol['refused']}"
    summary = protocol["summary"]
    parts = [f"{summary['num_static_latents']} static / {summary['num_dynamic_latents']} "
             "dynamic latents"]
    for key, label in (("swap_static", "swap static"), ("swap_dynamic", "swap dynamic"),
                       ("prior_static_kept", "prior: static kept"),
                       ("prior_dynamic_kept", "prior: dynamic kept")):
        value, chance = summary.get(f"{key}_accuracy"), summary.get(f"{key}_chance")
        if value is not None:
            chance_text = "" if chance is None else f" (chance {chance:.2f})"
            parts.append(f"{label} {value:.3f}{chance_text}")
    return ", ".join(parts)


def _debug_parent() -> argparse.ArgumentParser:
    """The option every command has."""
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument(
        "--debug",
        action="store_true",
        help="on an error, show the traceback instead of the one-line message",
    )
    return parent


def _threads_parent() -> argparse.ArgumentParser:
    """``--threads`` of the commands that load a run (train has the TrainConfig field)."""
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch intra-op threads (default: the run's threads option; 0: torch's default)",
    )
    return parent


def _set_threads(threads: int | None, config: TrainConfig) -> None:
    """Apply ``--threads`` (``None``: the run's own setting; 0: leave torch's default)."""
    threads = config.threads if threads is None else threads
    if threads < 0:
        raise UserError(f"--threads must be an integer >= 0, got {threads}")
    if threads:
        torch.set_num_threads(threads)


def _add_evaluate_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        help="held-out metrics and figures for a run folder",
        description="Recompute metrics.json and figures/ of a run from its last checkpoint.",
        formatter_class=_HelpFormatter,
        parents=[_debug_parent(), _threads_parent()],
    )
    parser.add_argument("run_dir", help="a folder written by `pyro-dynvae train`")
    parser.add_argument(
        "--num-val-sequences",
        type=int,
        default=None,
        help="held-out sequences to evaluate on (default: the run's num_val_sequences)",
    )
    parser.add_argument(
        "--no-protocol", action="store_true",
        help="skip the static/dynamic protocol (swap and prior-sample tests read by a judge)",
    )
    parser.add_argument(
        "--judge-steps", type=int, default=3000,
        help="training steps of the dataset's judge, trained once and cached in "
        f"${JUDGE_CACHE_ENV} (default {DEFAULT_JUDGE_CACHE}); a judge below the protocol's "
        "accuracy is refused and the refusal recorded",
    )
    parser.set_defaults(command=_evaluate)


def _evaluate(args: argparse.Namespace) -> int:
    run_dir = Path(args.run_dir)
    dynvae, config = load_run(run_dir)
    _set_threads(args.threads, config)
    if args.num_val_sequences is not None:
        if args.num_val_sequences < 1:
            raise UserError(f"--num-val-sequences must be >= 1, got {args.num_val_sequences}")
        config = dataclasses.replace(config, num_val_sequences=args.num_val_sequences)
    if args.judge_steps < 1:
        raise UserError(f"--judge-steps must be >= 1, got {args.judge_steps}")
    val_data = training.make_dataset(config, "test")
    train_data = training.make_dataset(config, "train")
    judge = None
    if not args.no_protocol and isinstance(val_data, FactorDataset):
        judge = protocol_judge(train_data, val_data, steps=args.judge_steps)
    metrics = finish_run(dynvae, val_data, config, run_dir, train_data=train_data, judge=judge,
                         digit_data=training.digit_reading_data(config))
    _print_metrics(metrics, run_dir)
    return 0


def _add_forecast_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "forecast",
        help="forecast held-out sequences with a trained run",
        description="Observe the first T - k frames of held-out sequences, forecast k frames, "
        "draw them against the truth and report the errors of the predictive means beside the "
        "copy-last, blank and mean frames.",
        formatter_class=_HelpFormatter,
        parents=[_debug_parent(), _threads_parent()],
    )
    parser.add_argument("run_dir", help="a folder written by `pyro-dynvae train`")
    parser.add_argument(
        "--horizon", type=int, default=None,
        help="frames k to forecast (default: the run's forecast_horizon)",
    )
    parser.add_argument("--num-sequences", type=int, default=4, help="sequences to forecast")
    parser.add_argument(
        "--output", default=None, help="PNG path (default: <run_dir>/figures/forecast_k<k>.png)"
    )
    parser.set_defaults(command=_forecast)


def _forecast(args: argparse.Namespace) -> int:
    run_dir = Path(args.run_dir)
    dynvae, config = load_run(run_dir)
    _set_threads(args.threads, config)
    horizon = config.forecast_horizon if args.horizon is None else args.horizon
    largest = config.num_frames - MIN_OBSERVED_FRAMES
    if not 0 < horizon <= largest:
        raise UserError(
            f"--horizon must lie in [1, {largest}] for {config.num_frames}-frame sequences "
            f"(a forecast observes at least {MIN_OBSERVED_FRAMES} frames), got {horizon}"
        )
    if args.num_sequences < 1:
        raise UserError(f"--num-sequences must be >= 1, got {args.num_sequences}")
    dataset = training.make_dataset(
        dataclasses.replace(config, num_val_sequences=args.num_sequences), "test"
    )
    frames, factors = dataset.get_batch(range(len(dataset)))
    background = background_frames(dataset, factors[:, -horizon:])
    errors, forecast = forecast_errors(dynvae, frames, horizon, background=background)
    num_observed = config.num_frames - horizon
    output = Path(args.output or run_dir / "figures" / f"forecast_k{horizon}.png")
    viz.plot_forecasts(
        frames[:, :num_observed],
        frames[:, num_observed:],
        forecast,
        output,
        max_sequences=args.num_sequences,
    )
    print(f"{len(frames)} sequences (mean_frame: their own mean frame, an oracle)")
    print("\n".join(_forecast_lines(errors)))
    print(f"figure: {output}")
    return 0


def _add_show_data_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "show-data",
        help="draw sequences of a dataset and list its factors",
        description="Draw the first sequences of a built-in dataset into a PNG.",
        formatter_class=_HelpFormatter,
        parents=[_debug_parent()],
    )
    parser.add_argument(
        "--dataset", default="moving_mnist", choices=sorted(DATASETS), help="dataset"
    )
    parser.add_argument("--num-sequences", type=int, default=4, help="sequences to draw")
    parser.add_argument("--num-frames", type=int, default=20, help="frames per sequence")
    parser.add_argument("--image-size", type=int, default=64, help="frame size in pixels")
    parser.add_argument("--split", default="train", choices=["train", "test"], help="split")
    parser.add_argument("--seed", type=int, default=0, help="dataset seed")
    parser.add_argument("--output", default="data.png", help="PNG path")
    parser.set_defaults(command=_show_data)


def _show_data(args: argparse.Namespace) -> int:
    dataset = DATASETS[args.dataset](
        num_sequences=args.num_sequences,
        num_frames=args.num_frames,
        image_size=args.image_size,
        seed=args.seed,
        split=args.split,
    )
    rows = [(f"seq {i}", dataset[i][0]) for i in range(len(dataset))]
    path = viz.plot_frame_grid(rows, args.output, f"{args.dataset} ({args.split} split)")
    print(f"factors per frame: {', '.join(dataset.factor_names)}")
    print(f"figure: {path}")
    return 0


def _add_compare_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "compare",
        help="compare every variant and baseline (the study of benchmarks/compare_variants.py)",
        description=compare.DESCRIPTION,
        parents=[_debug_parent()],
    )
    compare.add_arguments(parser)
    parser.set_defaults(command=compare.run)


def make_parser() -> argparse.ArgumentParser:
    """The ``pyro-dynvae`` argument parser with its five subcommands."""
    parser = argparse.ArgumentParser(
        prog="pyro-dynvae",
        description="Disentangled video representations through latent dynamics, in Pyro.",
        formatter_class=_HelpFormatter,
    )
    subparsers = parser.add_subparsers(title="commands", required=True, metavar="COMMAND")
    _add_train_parser(subparsers)
    _add_evaluate_parser(subparsers)
    _add_forecast_parser(subparsers)
    _add_show_data_parser(subparsers)
    _add_compare_parser(subparsers)
    return parser


def _one_line(error: BaseException) -> str:
    """The first line of an error's message (the rest, e.g. a tensor dump, is in --debug)."""
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


def main(argv: Sequence[str] | None = None) -> int:
    """
    Entry point of the ``pyro-dynvae`` console command.

    :returns: the exit status: 0 on success; 2 for a mistake in what was asked (bad options,
        missing or corrupt files, a folder that is not a run: one line on stderr, a traceback
        with ``--debug``, as for argparse's own errors); 1 when training stops at a non-finite
        loss (:class:`~pyro_dynvae.train.NonFiniteLossError`, one line too).
    """
    args = make_parser().parse_args(argv)
    try:
        return args.command(args)
    except (*USER_ERRORS, training.NonFiniteLossError) as error:
        if args.debug:
            raise
        print(f"pyro-dynvae: error: {_one_line(error)}", file=sys.stderr)
        return 1 if isinstance(error, training.NonFiniteLossError) else USAGE_ERROR


if __name__ == "__main__":
    sys.exit(main())

"""
The ``pyro-dynvae`` command line: ``train``, ``evaluate``, ``forecast`` and ``show-data``.

Examples::

    pyro-dynvae show-data --num-sequences 4
    pyro-dynvae train --variant hierarchical --max-steps 500 --run-dir runs/hier
    pyro-dynvae train --run-dir runs/hier --resume --max-steps 1000
    pyro-dynvae evaluate runs/hier
    pyro-dynvae forecast runs/hier --horizon 10
    pyro-dynvae train --devices 2 --strategy ddp --accelerator cpu   # DDP, gloo on CPU
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

#: help text of every TrainConfig field exposed by ``pyro-dynvae train``
TRAIN_OPTIONS = {
    "variant": "model variant (see pyro_dynvae.models.VARIANTS)",
    "model_overrides": "JSON object of extra build_model keyword arguments",
    "dataset": f"dataset, one of {sorted(training.DATASETS)}",
    "dataset_options": 'JSON object of extra dataset keyword arguments, e.g. \'{"num_digits": 1}\'',
    "num_sequences": "training sequences",
    "num_val_sequences": "held-out sequences (test split) for validation and metrics",
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
}


def _json_object(text: str) -> dict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise argparse.ArgumentTypeError(f"not valid JSON: {error}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object, got {text!r}")
    return value


def _add_train_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train a model and write a run folder",
        description="Train a model; writes config.json, checkpoints/, logs/, metrics.json and "
        "figures/ into --run-dir.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    defaults = training.TrainConfig()
    for field in dataclasses.fields(training.TrainConfig):
        default = getattr(defaults, field.name)
        kind = _json_object if isinstance(default, dict) else type(default)
        parser.add_argument(
            "--" + field.name.replace("_", "-"),
            type=kind,
            # argparse passes string defaults through ``type``, so dicts go in as JSON text
            default=json.dumps(default) if isinstance(default, dict) else default,
            help=TRAIN_OPTIONS[field.name],
        )
    parser.add_argument(
        "--run-dir", default=None, help="output folder (default: runs/<variant>-seed<seed>)"
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue from <run-dir>/checkpoints/last.ckpt with the run's saved config "
        "(only --max-steps and the device options are taken from this command line)",
    )
    parser.add_argument("--no-progress-bar", action="store_true", help="hide the progress bar")
    parser.set_defaults(command=_train)


def _train(args: argparse.Namespace) -> int:
    values = {field.name: getattr(args, field.name) for field in dataclasses.fields(
        training.TrainConfig)}
    run_dir = Path(args.run_dir or f"runs/{args.variant}-seed{args.seed}")
    if args.resume:
        if not (run_dir / "config.json").exists():
            raise ValueError(f"--resume: {run_dir} holds no config.json of an earlier run")
        saved = json.loads((run_dir / "config.json").read_text())["train"]
        for name in ("max_steps", "accelerator", "devices", "num_nodes", "strategy"):
            saved[name] = values[name]
        values = saved
    metrics = training.train(
        training.TrainConfig.from_dict(values),
        run_dir,
        resume=args.resume,
        enable_progress_bar=not args.no_progress_bar,
    )
    if metrics is not None:
        _print_metrics(metrics, run_dir)
    return 0


def _print_metrics(metrics: dict, run_dir: Path) -> None:
    print(f"run folder: {run_dir.resolve()}")
    for key in ("elbo", "recon_mse", "forecast_mse", "copy_last_mse", "forecast_vs_copy_last"):
        print(f"  {key:24s} {metrics[key]}")
    print(f"  metrics: {run_dir / 'metrics.json'}")
    for figure in metrics["figures"]:
        print(f"  figure:  {run_dir / figure}")


def _add_evaluate_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        help="held-out metrics and figures for a run folder",
        description="Recompute metrics.json and figures/ of a run from its last checkpoint.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("run_dir", help="a folder written by `pyro-dynvae train`")
    parser.add_argument(
        "--num-val-sequences",
        type=int,
        default=None,
        help="held-out sequences to evaluate on (default: the run's num_val_sequences)",
    )
    parser.set_defaults(command=_evaluate)


def _evaluate(args: argparse.Namespace) -> int:
    run_dir = Path(args.run_dir)
    dynvae, config = training.load_run(run_dir)
    if args.num_val_sequences is not None:
        config = dataclasses.replace(config, num_val_sequences=args.num_val_sequences)
    metrics = training.finish_run(dynvae, training.make_dataset(config, "test"), config, run_dir)
    _print_metrics(metrics, run_dir)
    return 0


def _add_forecast_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "forecast",
        help="forecast held-out sequences with a trained run",
        description="Observe the first T - k frames of held-out sequences, forecast k frames, "
        "draw them against the truth and report the error against copying the last frame.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
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
    dynvae, config = training.load_run(run_dir)
    horizon = config.forecast_horizon if args.horizon is None else args.horizon
    if not 0 < horizon < config.num_frames:
        raise ValueError(
            f"--horizon must lie in [1, {config.num_frames - 1}] for {config.num_frames}-frame "
            f"sequences, got {horizon}"
        )
    dataset = training.make_dataset(
        dataclasses.replace(config, num_val_sequences=args.num_sequences), "test"
    )
    frames = torch.stack([dataset[i][0] for i in range(len(dataset))])
    errors, forecast = training.forecast_errors(dynvae, frames, horizon)
    num_observed = config.num_frames - horizon
    output = Path(args.output or run_dir / "figures" / f"forecast_k{horizon}.png")
    viz.plot_forecasts(
        frames[:, :num_observed],
        frames[:, num_observed:],
        forecast,
        output,
        max_sequences=args.num_sequences,
    )
    forecast_mse, copy_last_mse = errors["forecast_mse"], errors["copy_last_mse"]
    ratio = f"{forecast_mse / copy_last_mse:.3g}" if copy_last_mse else "undefined: no motion"
    print(f"forecast MSE {forecast_mse:.6g}, copy-last-frame MSE {copy_last_mse:.6g} "
          f"(ratio {ratio})")
    print(f"figure: {output}")
    return 0


def _add_show_data_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "show-data",
        help="draw sequences of a dataset and list its factors",
        description="Draw the first sequences of a built-in dataset into a PNG.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--dataset", default="moving_mnist", choices=sorted(training.DATASETS), help="dataset"
    )
    parser.add_argument("--num-sequences", type=int, default=4, help="sequences to draw")
    parser.add_argument("--num-frames", type=int, default=20, help="frames per sequence")
    parser.add_argument("--image-size", type=int, default=64, help="frame size in pixels")
    parser.add_argument("--split", default="train", choices=["train", "test"], help="split")
    parser.add_argument("--seed", type=int, default=0, help="dataset seed")
    parser.add_argument("--output", default="data.png", help="PNG path")
    parser.set_defaults(command=_show_data)


def _show_data(args: argparse.Namespace) -> int:
    config = training.TrainConfig(
        dataset=args.dataset,
        num_sequences=args.num_sequences,
        num_val_sequences=args.num_sequences,
        batch_size=1,
        forecast_horizon=1,
        num_frames=args.num_frames,
        image_size=args.image_size,
        seed=args.seed,
    )
    dataset = training.make_dataset(config, args.split)
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
    )
    compare.add_arguments(parser)
    parser.set_defaults(command=compare.run)


def make_parser() -> argparse.ArgumentParser:
    """The ``pyro-dynvae`` argument parser with its five subcommands."""
    parser = argparse.ArgumentParser(
        prog="pyro-dynvae",
        description="Disentangled video representations through latent dynamics, in Pyro.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    subparsers = parser.add_subparsers(title="commands", required=True, metavar="COMMAND")
    _add_train_parser(subparsers)
    _add_evaluate_parser(subparsers)
    _add_forecast_parser(subparsers)
    _add_show_data_parser(subparsers)
    _add_compare_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``pyro-dynvae`` console command."""
    args = make_parser().parse_args(argv)
    return args.command(args)


if __name__ == "__main__":
    sys.exit(main())

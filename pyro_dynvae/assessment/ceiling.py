"""The supervised ceiling: the models' own frame encoder trained to read every factor.

A model can only disentangle what its encoder can encode. Training the same network the models
use (:class:`~pyro_dynvae.nets.ConvEncoder` at :class:`~pyro_dynvae.models.DynamicsVAEConfig`'s
widths) with full supervision, by the judge's trainer (:meth:`.Judge.train` with
``network="encoder"``), gives per factor the held-out accuracy / ``R^2`` no model with that
encoder should be expected to beat. The judge's own network is the other choice of the same
trainer, so the two tables compare directly::

    python -m pyro_dynvae.assessment.ceiling sprites moving_mnist
    python -m pyro_dynvae.assessment.ceiling sprites --network judge
    python -m pyro_dynvae.assessment.ceiling sprites --spec '{"image_size": 32, "options": {}}'
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from pyro_dynvae.data import FactorDataset

from .datasets import STUDY_DATASETS
from .judge import NETWORKS, Judge


def supervised_ceiling(
    dataset: FactorDataset | str,
    *,
    spec: Mapping[str, Any] | None = None,
    seed: int = 0,
    steps: int = 3000,
    **options: Any,
) -> dict[str, Any]:
    """Held-out report of the models' encoder trained to read the factors (:attr:`.Judge.report`).

    :param dataset: a dataset or a study dataset name (as :meth:`.Judge.train`).
    :param dict spec: spec of a named dataset (default the study's).
    :param int seed: training seed.
    :param int steps: optimiser steps.
    :param options: further keywords of :meth:`.Judge.train`.
    """
    judge = Judge.train(dataset, spec=spec, seed=seed, steps=steps, network="encoder", **options)
    return judge.report


def format_report(report: Mapping[str, Any]) -> str:
    """A markdown table of a judge's held-out report: per factor the score beside chance."""
    lines = ["| factor | kind | accuracy (chance) | R^2 | MAE (chance) |", "|---|---|---|---|---|"]
    for name, metrics in report["factors"].items():
        score = f"{metrics['accuracy']:.3f} ({metrics['chance']:.3f})"
        if metrics["kind"] == "categorical":
            lines.append(f"| {name} | {metrics['kind']} | {score} | | |")
        else:
            lines.append(
                f"| {name} | {metrics['kind']} | {score} | {metrics['r2']:.3f} | "
                f"{metrics['mae']:.3g} ({metrics['chance_mae']:.3g}) |"
            )
    options = report["options"]
    lines.append(
        f"\n{options['network']} network, {options['steps']} steps of {options['batch_size']} "
        f"frames, seed {options['seed']}, {report['num_held_out']} held-out frames, tolerance "
        f"{options['tolerance']} of the period; trained in {report['train_seconds']:.0f} s"
    )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    """Print the ceiling (or the judge's accuracy) of study datasets, one thread."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("datasets", nargs="+", choices=sorted(STUDY_DATASETS))
    parser.add_argument("--spec", type=json.loads, default=None,
                        help="JSON spec {image_size, options} (default: the study's)")
    parser.add_argument("--network", choices=sorted(NETWORKS), default="encoder")
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    for name in args.datasets:
        judge = Judge.train(name, spec=args.spec, seed=args.seed, steps=args.steps,
                            network=args.network)
        print(f"## {name} {json.dumps(args.spec or STUDY_DATASETS[name])}\n")
        print(format_report(judge.report) + "\n", flush=True)


if __name__ == "__main__":
    main()

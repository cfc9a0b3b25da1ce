# Copyright Contributors to the pyro-dynvae project.
# SPDX-License-Identifier: Apache-2.0
"""
Training throughput of every variant and baseline: sequences per second of one SVI step
(ELBO forward, backward, Adam update) at 64x64, T=20, batch 16, on CPU by default.

The reference is the ``meanfield`` variant (the hierarchical model with a guide that has no
temporal coupling); the column ``vs meanfield`` is the time per step divided by meanfield's, and
the last line checks the structured (BlockTridiagMVN) guide's ratio ``hierarchical / meanfield``
against the target of at most 1.2x. Timings on a shared machine are noisy: the median of
``--repeats`` timed blocks is reported.

    python benchmarks/bench_training.py
    python benchmarks/bench_training.py --variants hierarchical meanfield --steps 5
"""

from __future__ import annotations

import argparse
import statistics
import time

import pyro
import torch

from pyro_dynvae.data import MovingMNIST
from pyro_dynvae.models import VARIANTS, build_model

pyro.settings.set(module_local_params=True)

TARGET_RATIO = 1.2


def seconds_per_step(
    variant: str, frames: torch.Tensor, latent_dim: int, steps: int, repeats: int
) -> float:
    """Median over ``repeats`` blocks of ``steps`` SVI steps, after one warm-up step."""
    torch.manual_seed(0)
    dynvae = build_model(
        variant,
        image_size=frames.shape[-1],
        channels=frames.shape[2],
        latent_dim=latent_dim,
        num_sequences=frames.shape[0],
    )
    loss_fn = dynvae.make_elbo()(dynvae.model, dynvae.guide)
    loss_fn(frames)  # create lazy parameters
    optimizer = torch.optim.Adam(loss_fn.parameters(), lr=1e-3)

    def step() -> None:
        optimizer.zero_grad()
        loss_fn(frames).backward()
        optimizer.step()

    step()
    blocks = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(steps):
            step()
        blocks.append((time.perf_counter() - start) / steps)
    return statistics.median(blocks)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[1],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), help="variants to time")
    parser.add_argument("--image-size", type=int, default=64, help="frame size")
    parser.add_argument("--num-frames", type=int, default=20, help="frames per sequence T")
    parser.add_argument("--batch-size", type=int, default=16, help="sequences per step")
    parser.add_argument("--latent-dim", type=int, default=8, help="latent dimension n")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per block")
    parser.add_argument("--repeats", type=int, default=3, help="timed blocks (median)")
    args = parser.parse_args(argv)
    variants = list(dict.fromkeys(["meanfield", *args.variants]))  # the reference first

    data = MovingMNIST(
        num_sequences=args.batch_size, num_frames=args.num_frames, image_size=args.image_size
    )
    frames = torch.stack([data[i][0] for i in range(args.batch_size)])
    print(
        f"SVI step, {args.image_size}x{args.image_size}, T={args.num_frames}, "
        f"batch {args.batch_size}, n={args.latent_dim}, torch threads "
        f"{torch.get_num_threads()} (shared machine: timings are noisy)"
    )
    print(f"{'variant':<16}{'s/step':>10}{'seq/s':>10}{'vs meanfield':>14}")
    times = {}
    for variant in variants:
        times[variant] = seconds_per_step(
            variant, frames, args.latent_dim, args.steps, args.repeats
        )
        print(
            f"{variant:<16}{times[variant]:>10.3f}{args.batch_size / times[variant]:>10.1f}"
            f"{times[variant] / times['meanfield']:>13.2f}x"
        )
    if "hierarchical" in times:
        ratio = times["hierarchical"] / times["meanfield"]
        verdict = "meets" if ratio <= TARGET_RATIO else "misses"
        print(
            f"structured guide / meanfield guide (hierarchical / meanfield): {ratio:.2f}x "
            f"({verdict} the {TARGET_RATIO}x target)"
        )


if __name__ == "__main__":
    main()

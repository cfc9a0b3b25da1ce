"""Can data generation ever be the bottleneck? Frames generated per second on one core, next to
the frames per second one training step of a small convolutional VAE consumes, on the same batch.

For each dataset at 64x64 the script times (median of ``--repeats`` runs, ``torch`` limited to one
thread):

- ``generate``: ``dataset.get_batch(indices)`` (factor sampling + one vectorised render of the
  whole batch), as a DataLoader with ``__getitems__`` or :class:`ShardedStream` calls it;
- ``per item``: the same sequences fetched one ``dataset[i]`` at a time;
- ``train step``: forward, backward and Adam update of a per-frame conv VAE (4 strided conv
  layers 32-32-64-64 channels, 16 latents, mirrored transposed-conv decoder, Bernoulli
  likelihood) on the ``B * T`` frames of the same batch; this is the cheapest model any
  sequence variant in this library runs per frame.

``ratio = generate frames/s / train-step frames/s``; the target is ``>= 5``.

Usage (package installed, or ``PYTHONPATH=.`` from the repository root):
``python3 benchmarks/bench_data.py [--batch-size 16] [--num-frames 20] [--repeats 5]``
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

from pyro_dynvae.data import DynamicSprites, MovingMNIST


class SmallConvVAE(nn.Module):
    """Per-frame VAE: 64x64xC -> 16 latents -> 64x64xC Bernoulli logits."""

    def __init__(self, channels: int, latent_dim: int = 16) -> None:
        super().__init__()
        widths = [channels, 32, 32, 64, 64]
        encoder = []
        for w_in, w_out in zip(widths[:-1], widths[1:], strict=True):
            encoder += [nn.Conv2d(w_in, w_out, 4, stride=2, padding=1), nn.ReLU()]
        self.encoder = nn.Sequential(*encoder, nn.Flatten(), nn.Linear(64 * 4 * 4, 2 * latent_dim))
        decoder = []
        for w_in, w_out in zip(widths[:0:-1], widths[-2::-1], strict=True):
            decoder += [nn.ConvTranspose2d(w_in, w_out, 4, stride=2, padding=1), nn.ReLU()]
        self.decoder = nn.Sequential(
            nn.Linear(latent_dim, 64 * 4 * 4), nn.Unflatten(1, (64, 4, 4)), *decoder[:-1]
        )

    def loss(self, frames: torch.Tensor) -> torch.Tensor:
        """Negative ELBO per frame (one reparameterised sample)."""
        loc, log_scale = self.encoder(frames).chunk(2, dim=-1)
        z = loc + log_scale.exp() * torch.randn_like(loc)
        logits = self.decoder(z)
        nll = nn.functional.binary_cross_entropy_with_logits(logits, frames, reduction="sum")
        kl = 0.5 * (loc**2 + (2 * log_scale).exp() - 2 * log_scale - 1).sum()
        return (nll + kl) / len(frames)


def median_seconds(function, repeats: int) -> float:
    function()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=16, help="sequences per batch")
    parser.add_argument("--num-frames", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    common = {"num_sequences": 10 * args.batch_size, "num_frames": args.num_frames}
    datasets = {
        "MovingMNIST (2 digits)": MovingMNIST(**common),
        "MovingMNIST + texture": MovingMNIST(**common, background="texture"),
        "DynamicSprites (1 ch)": DynamicSprites(**common),
        "DynamicSprites (3 ch) + texture": DynamicSprites(
            **common, channels=3, background="texture"
        ),
    }
    frames_per_batch = args.batch_size * args.num_frames
    print(
        f"one thread; batch = {args.batch_size} sequences x {args.num_frames} frames = "
        f"{frames_per_batch} frames at 64x64; median of {args.repeats}"
    )
    header = (
        f"{'dataset':34s} {'generate fr/s':>14s} {'per item fr/s':>14s} "
        f"{'train step ms':>14s} {'train fr/s':>11s} {'ratio':>7s}"
    )
    print(header)
    print("-" * len(header))
    indices = list(range(args.batch_size))
    for name, dataset in datasets.items():
        generate = median_seconds(lambda d=dataset: d.get_batch(indices), args.repeats)
        per_item = median_seconds(lambda d=dataset: [d[i] for i in indices], args.repeats)
        frames, _ = dataset.get_batch(indices)
        frames = frames.flatten(0, 1)
        model = SmallConvVAE(frames.shape[1])
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

        def train_step(model=model, optimizer=optimizer, frames=frames):
            optimizer.zero_grad()
            model.loss(frames).backward()
            optimizer.step()

        step = median_seconds(train_step, args.repeats)
        generate_rate, train_rate = frames_per_batch / generate, frames_per_batch / step
        print(
            f"{name:34s} {generate_rate:14,.0f} {frames_per_batch / per_item:14,.0f} "
            f"{1000 * step:14.1f} {train_rate:11,.0f} {generate_rate / train_rate:7.1f}"
        )
    print("ratio = generated frames/s / frames/s one training step consumes (target >= 5)")


if __name__ == "__main__":
    main()

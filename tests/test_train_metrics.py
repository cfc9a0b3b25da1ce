"""pyro_dynvae.train.disentanglement on encoders with known answers."""

from __future__ import annotations

import pytest
import torch

from pyro_dynvae.data import MovingMNIST
from pyro_dynvae.train import disentanglement


class CentroidEncoder(torch.nn.Module):
    """Codes = the ink centroid (x, y) of each frame (an oracle for the digit's position),
    or, with ``noise_only``, random codes unrelated to the frames."""

    def __init__(self, noise_only: bool = False):
        super().__init__()
        self.unused = torch.nn.Parameter(torch.zeros(()))  # gives the module a device
        self.noise_only = noise_only
        self.generator = torch.Generator().manual_seed(0)

    def encode(self, frames: torch.Tensor) -> dict[str, torch.Tensor]:
        ink = frames.sum(dim=2)  # (B, T, H, W)
        grid = torch.arange(ink.shape[-1], dtype=ink.dtype)
        mass = ink.sum(dim=(-2, -1))
        centroid = torch.stack(
            [(ink.sum(-2) * grid).sum(-1) / mass, (ink.sum(-1) * grid).sum(-1) / mass], dim=-1
        )
        if self.noise_only:
            return {"z_mean": torch.randn(centroid.shape, generator=self.generator)}
        return {"z_mean": centroid}


@pytest.fixture(scope="module")
def one_digit():
    return MovingMNIST(num_sequences=24, num_frames=5, image_size=64, num_digits=1, seed=3)


def test_position_oracle_scores_high(one_digit):
    scores = disentanglement(CentroidEncoder(), one_digit)
    assert set(scores["factors"]) == {"digit0_class", "digit0_x", "digit0_y"}
    # Two codes matched to x and y: Spearman correlations near 1.
    assert scores["mcc"] > 0.9
    # MIG averages over all three factors; the class gets no code, x and y one each (the 20-bin
    # plug-in estimate on 120 frames keeps each gap near 0.45, not 1).
    assert scores["mig"] > 0.25


def test_random_codes_score_low(one_digit):
    scores = disentanglement(CentroidEncoder(noise_only=True), one_digit)
    assert scores["mcc"] < 0.3
    assert scores["mig"] < 0.1

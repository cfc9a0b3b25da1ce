"""pyro_dynvae.train.disentanglement on encoders with known answers."""

from __future__ import annotations

import pytest
import torch

from pyro_dynvae.data import DynamicSprites, MovingMNIST
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


def test_dynamics_report_exports_the_encoded_eigenvalues(tmp_path):
    import arviz as az
    import numpy as np
    import pandas as pd

    from pyro_dynvae.models import build_model
    from pyro_dynvae.train import dynamics_report

    dataset = DynamicSprites(num_sequences=6, num_frames=5, image_size=16, seed=1)
    torch.manual_seed(0)
    dynvae = build_model("hierarchical", image_size=16, latent_dim=4, architecture="mlp")
    (tmp_path / "figures").mkdir()
    report = dynamics_report(dynvae, dataset, tmp_path)

    frames = torch.stack([dataset[i][0] for i in range(len(dataset))])
    codes = dynvae.encode(frames)
    eigenvalues = codes["eigenvalues"].numpy()  # (6, 4, 4)
    idata = az.from_netcdf(tmp_path / "dynamics.nc")
    # one chain, a draw per sequence; dims (chain, draw, time, latent)
    np.testing.assert_allclose(idata.posterior["eigenvalues"].values[0], eigenvalues, rtol=1e-6)
    np.testing.assert_allclose(
        idata.posterior["prior_scales"].values[0, 0], codes["prior_scales"].numpy(), rtol=1e-6
    )
    summary = pd.read_csv(tmp_path / "dynamics_summary.csv", index_col=0)
    np.testing.assert_allclose(
        summary.loc["eigenvalues[0, 0]", "mean"], eigenvalues[:, 0, 0].mean(), atol=1e-3
    )
    assert (tmp_path / "figures" / "prior_scales_forest.png").read_bytes()[:4] == b"\x89PNG"
    bimodality = report["eigenvalue_bimodality"]
    np.testing.assert_allclose(
        bimodality["mean_abs_deviation"], np.abs(eigenvalues - 1).mean(axis=(0, 1)), rtol=1e-5
    )
    assert sorted(bimodality["static_latents"] + bimodality["dynamic_latents"]) == [0, 1, 2, 3]
    assert set(report["files"]) == {
        "dynamics.nc", "dynamics_summary.csv", "figures/prior_scales_forest.png"
    }


def test_dynamics_report_is_empty_without_eigenvalues(tmp_path):
    from pyro_dynvae.models import build_model
    from pyro_dynvae.train import dynamics_report

    dataset = DynamicSprites(num_sequences=2, num_frames=3, image_size=16, seed=1)
    dynvae = build_model("vae", image_size=16, latent_dim=4, architecture="mlp")
    assert dynamics_report(dynvae, dataset, tmp_path) == {}
    assert list(tmp_path.iterdir()) == []

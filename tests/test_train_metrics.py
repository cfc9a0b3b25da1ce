"""pyro_dynvae.evaluation.disentanglement on encoders with known answers."""

from __future__ import annotations

import json

import pytest
import torch

from pyro_dynvae.data import DynamicSprites, MovingMNIST
from pyro_dynvae.evaluation import disentanglement


class CentroidEncoder(torch.nn.Module):
    """Codes = the ink centroid (x, y) of each frame (an oracle for the digit's position),
    or, with ``noise_only``, random codes unrelated to the frames, whose first latent is, with
    ``constant``, the same for every frame of a sequence."""

    def __init__(self, noise_only: bool = False, constant: bool = False):
        super().__init__()
        self.unused = torch.nn.Parameter(torch.zeros(()))  # gives the module a device
        self.noise_only = noise_only
        self.constant = constant
        self.generator = torch.Generator().manual_seed(0)

    def encode(self, frames: torch.Tensor) -> dict[str, torch.Tensor]:
        ink = frames.sum(dim=2)  # (B, T, H, W)
        grid = torch.arange(ink.shape[-1], dtype=ink.dtype)
        mass = ink.sum(dim=(-2, -1))
        centroid = torch.stack(
            [(ink.sum(-2) * grid).sum(-1) / mass, (ink.sum(-1) * grid).sum(-1) / mass], dim=-1
        )
        if not self.noise_only:
            return {"z_mean": centroid}
        codes = torch.randn((*centroid.shape[:2], 4), generator=self.generator)
        if self.constant:
            codes[..., 0] = torch.randn(codes.shape[0], 1, generator=self.generator)
        return {"z_mean": codes}


@pytest.fixture(scope="module")
def one_digit():
    return MovingMNIST(num_sequences=300, num_frames=4, image_size=64, num_digits=1, seed=3)


def test_position_oracle_scores_high(one_digit):
    scores = disentanglement(CentroidEncoder(), one_digit, batch_size=100)
    assert scores["factors"] == ["digit0_class", "digit0_x", "digit0_y"]
    assert scores["sample"] == {"num_fit_sequences": 200, "num_test_sequences": 100,
                                "frames_per_sequence": 1}
    # Two codes matched to x and y: Spearman correlations near 1.
    assert scores["mcc"] > 0.9
    # MIG averages over all three factors; the class gets no code, x and y one each (the
    # 20-bin plug-in estimate on 300 points keeps each gap near 0.6, not 1).
    assert scores["mig"] > 0.3
    probes = scores["probes"]
    for factor in ("digit0_x", "digit0_y"):
        assert probes[factor]["linear"] > 0.95 and probes[factor]["nonlinear"] > 0.9
    # the centroid says little about the class: both probes near the majority class
    assert probes["digit0_class"]["linear"] < probes["digit0_class"]["chance"] + 0.15
    # informativeness: x and y read exactly, the class not at all
    assert scores["dci_informativeness"] == pytest.approx(2 / 3, abs=0.1)
    json.dumps(scores, allow_nan=False)  # metrics.json stays strict JSON


@pytest.mark.parametrize("constant", [False, True])
def test_random_codes_score_low(one_digit, constant):
    """Noise, and noise with a latent constant within each sequence (which scoring all
    frames as independent points used to reward), both score about 0."""
    scores = disentanglement(CentroidEncoder(noise_only=True, constant=constant), one_digit,
                             batch_size=100)
    assert scores["mcc"] < 0.2
    for key in ("mig", "dci_disentanglement", "dci_completeness", "dci_informativeness", "sap"):
        assert scores[key] < 0.08, key
    assert abs(scores["probe_linear"]) < 0.1


def test_frames_per_sequence_and_tiny_datasets():
    dataset = MovingMNIST(num_sequences=2, num_frames=3, image_size=32, num_digits=1, seed=0)
    scores = disentanglement(CentroidEncoder(), dataset, frames_per_sequence=3)
    assert scores["sample"]["frames_per_sequence"] == 3
    assert scores["dci_disentanglement"] is None or 0 <= scores["dci_disentanglement"] <= 1
    assert 0 <= scores["mcc"] <= 1
    json.dumps(scores, allow_nan=False)


def test_dynamics_report_exports_the_encoded_eigenvalues(tmp_path):
    import arviz as az
    import numpy as np
    import pandas as pd

    from pyro_dynvae.evaluation import dynamics_report
    from pyro_dynvae.models import build_model

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
    from pyro_dynvae.evaluation import dynamics_report
    from pyro_dynvae.models import build_model

    dataset = DynamicSprites(num_sequences=2, num_frames=3, image_size=16, seed=1)
    dynvae = build_model("vae", image_size=16, latent_dim=4, architecture="mlp")
    assert dynamics_report(dynvae, dataset, tmp_path) == {}
    assert list(tmp_path.iterdir()) == []

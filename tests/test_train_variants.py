"""Every registered variant and baseline goes through the whole training pipeline."""

from __future__ import annotations

import json
import math

import pytest

from pyro_dynvae.config import TrainConfig
from pyro_dynvae.models import VARIANTS
from pyro_dynvae.train import train


@pytest.mark.slow
@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_variant_trains_and_writes_its_run_folder(variant, tmp_path):
    config = TrainConfig(
        variant=variant,
        model_overrides={"architecture": "mlp"},
        dataset="sprites",
        num_sequences=8,
        num_val_sequences=4,
        num_frames=5,
        image_size=16,
        latent_dim=4,
        batch_size=4,
        max_steps=3,
        val_every=0,
        checkpoint_every=3,
        forecast_horizon=2,
        accelerator="cpu",
        devices="1",
    )
    metrics = train(config, tmp_path, enable_progress_bar=False)
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["elbo"] == metrics["elbo"] and math.isfinite(saved["elbo"])
    figures = {name.split("/")[-1] for name in saved["figures"]}
    assert {"reconstructions.png", "forecasts.png", "traversals.png"} <= figures
    has_dynamics = variant not in ("vae", "beta_vae", "slowvae")
    assert ("eigenvalues.png" in figures) == has_dynamics
    for name in figures:
        assert (tmp_path / "figures" / name).stat().st_size > 1000

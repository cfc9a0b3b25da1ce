"""examples/moving_mnist.py writes every file it promises into its run folder."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest
import torch

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "moving_mnist.py"
FIGURES = [
    "reconstructions", "forecasts", "eigenvalues", "traversals", "prior_scales",
    "prior_scales_forest",
]
METRICS = ["elbo", "recon_mse", "forecast_mse", "forecast_vs_best_baseline"]


def load_example():
    spec = importlib.util.spec_from_file_location("moving_mnist_example", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def check_run_folder(run_dir: Path, metrics: dict, printed: str, max_steps: int) -> None:
    config = json.loads((run_dir / "config.json").read_text())
    assert config["train"]["variant"] == "hierarchical"
    assert config["model"]["variant"] == "hierarchical"
    checkpoint = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)
    assert checkpoint["global_step"] == max_steps
    assert "train/loss" in (run_dir / "logs" / "version_0" / "metrics.csv").read_text()
    saved = json.loads((run_dir / "metrics.json").read_text())
    for key in METRICS:
        assert math.isfinite(saved[key]) and saved[key] == metrics[key], key
    assert saved["recon_mse"] > 0 and saved["forecast"]["mse"]["copy_last"] > 0
    assert saved["elbo"] < 0  # a Bernoulli likelihood: a discrete density, log p <= 0
    assert saved["forecast"] == metrics["forecast"]
    assert set(saved["forecast"]["mse"]) == {"model", "copy_last", "blank", "mean_frame"}
    reading = saved["digit_reading"]
    assert 0 <= reading["accuracy_reconstruction"] <= 1 and reading["accuracy_data"] > 0.5
    # read on the larger digit-reading draw, not on the few validation sequences
    assert reading["num_sequences"] == config["train"]["digit_reading_sequences"] == 512
    assert "digit classifier accuracy" in printed and "best baseline" in printed
    assert {"digit0_x", "digit0_y"} <= set(saved["disentanglement"]["factors"])
    assert "MIG / MCC" in printed
    for name in FIGURES:
        path = run_dir / "figures" / f"{name}.png"
        assert path.stat().st_size > 2000, name
        assert str(path) in printed, f"{path} not reported"
    assert str(run_dir / "metrics.json") in printed
    for name in ("dynamics.nc", "dynamics_summary.csv"):
        assert (run_dir / name).stat().st_size > 0 and str(run_dir / name) in printed, name
    assert "bimodality_coefficient" in saved["dynamics"]["eigenvalue_bimodality"]


def test_tiny_run_writes_every_promised_file(tmp_path, capsys):
    metrics = load_example().main(
        ["--quick", "--max-steps", "3", "--num-sequences", "32", "--num-val-sequences", "4",
         "--run-dir", str(tmp_path), "--no-progress-bar", "--threads", "1"]
    )
    check_run_folder(tmp_path, metrics, capsys.readouterr().out, max_steps=3)
    assert json.loads((tmp_path / "config.json").read_text())["train"]["threads"] == 1


@pytest.mark.slow
def test_quick_run_writes_every_promised_file(tmp_path, capsys):
    metrics = load_example().main(["--quick", "--run-dir", str(tmp_path)])
    check_run_folder(tmp_path, metrics, capsys.readouterr().out, max_steps=25)

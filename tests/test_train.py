"""
Training machinery (pyro_dynvae.train) on a tiny linear dynamical VAE that follows the
``build_model`` protocol, so these tests exercise Lightning + Pyro's ELBOModule and nothing else.
"""

from __future__ import annotations

import contextlib
import json
import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from lightning.pytorch.callbacks import Callback
from pyro.nn import PyroModule
from torch.nn.functional import softplus
from torch.utils.data import TensorDataset

from pyro_dynvae.config import TrainConfig
from pyro_dynvae.evaluation import evaluate, finish_run
from pyro_dynvae.loading import StepBatchSampler
from pyro_dynvae.train import NonFiniteLossError, fit


class TinyModel(PyroModule):
    """z_0 ~ N(0, I), z_t ~ N(lambda * z_{t-1}, s^2), x_t ~ N(sigmoid(W z_t + b), 0.1^2)."""

    def __init__(self, num_pixels: int, latent_dim: int, nan_at_step: int | None) -> None:
        super().__init__()
        self.decoder = torch.nn.Linear(latent_dim, num_pixels)
        self.eigen_logit = torch.nn.Parameter(torch.zeros(latent_dim))
        self.log_scale = torch.nn.Parameter(torch.zeros(latent_dim))
        self.nan_at_step = nan_at_step
        self.validate_nan = False
        self.num_training_calls = 0

    def eigenvalues(self) -> torch.Tensor:
        return 2 * torch.sigmoid(self.eigen_logit)

    def forward(self, frames: torch.Tensor) -> None:
        batch, num_frames = frames.shape[:2]
        pixels = frames.reshape(batch, num_frames, -1)
        if torch.is_grad_enabled():  # count training calls only (validation runs without grad)
            if self.num_training_calls == self.nan_at_step:
                # By default the NaN reaches the loss; with validation Pyro rejects it at once.
                with pyro.validation_enabled(self.validate_nan):
                    pyro.factor("injected_nan", frames.new_tensor(math.nan))
            self.num_training_calls += 1
        with pyro.plate("sequences", batch):
            z = frames.new_zeros(batch, self.eigen_logit.shape[0])
            for t in range(num_frames):
                loc = self.eigenvalues() * z
                z = pyro.sample(f"z_{t}", dist.Normal(loc, self.log_scale.exp()).to_event(1))
                mean = torch.sigmoid(self.decoder(z))
                pyro.sample(f"x_{t}", dist.Normal(mean, 0.1).to_event(1), obs=pixels[:, t])


class TinyGuide(PyroModule):
    """q(z_t | x_t) = N(mu(x_t), sigma(x_t)^2), independent over t."""

    def __init__(self, num_pixels: int, latent_dim: int) -> None:
        super().__init__()
        self.encoder = torch.nn.Linear(num_pixels, 2 * latent_dim)

    def posterior(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        loc, raw_scale = self.encoder(frames.flatten(2)).chunk(2, dim=-1)
        return loc, softplus(raw_scale) + 1e-3

    def forward(self, frames: torch.Tensor) -> None:
        loc, scale = self.posterior(frames)
        with pyro.plate("sequences", frames.shape[0]):
            for t in range(frames.shape[1]):
                pyro.sample(f"z_{t}", dist.Normal(loc[:, t], scale[:, t]).to_event(1))


class TinyDynamicsVAE(torch.nn.Module):
    """The ``build_model`` protocol (model, guide, make_elbo, exact_elbo, encode, reconstruct,
    forecast)."""

    def __init__(self, image_size: int = 4, latent_dim: int = 2, nan_at_step: int | None = None):
        super().__init__()
        self.image_size = image_size
        num_pixels = image_size * image_size
        self.model = TinyModel(num_pixels, latent_dim, nan_at_step)
        self.guide = TinyGuide(num_pixels, latent_dim)
        self.config = {"image_size": image_size, "latent_dim": latent_dim}

    def make_elbo(self) -> pyro.infer.ELBO:
        return pyro.infer.Trace_ELBO()

    def exact_elbo(self) -> contextlib.AbstractContextManager:
        return contextlib.nullcontext()  # its objective is the ELBO, unweighted

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        mean = torch.sigmoid(self.model.decoder(z))
        return mean.reshape(*z.shape[:-1], 1, self.image_size, self.image_size)

    def encode(self, frames: torch.Tensor) -> dict[str, torch.Tensor]:
        z_mean = self.guide.posterior(frames)[0]
        eigenvalues = self.model.eigenvalues().expand(frames.shape[0], frames.shape[1] - 1, -1)
        return {
            "z_mean": z_mean,
            "eigenvalues": eigenvalues + 0.01 * torch.randn_like(eigenvalues),
            "prior_scales": self.model.log_scale.exp(),
        }

    def reconstruct(self, frames: torch.Tensor) -> torch.Tensor:
        return self.decode(self.guide.posterior(frames)[0])

    def forecast(self, frames: torch.Tensor, num_steps: int, num_samples: int = 0) -> torch.Tensor:
        z = self.guide.posterior(frames)[0][:, -1]
        future = []
        for _ in range(num_steps):
            z = self.model.eigenvalues() * z
            future.append(self.decode(z))
        return torch.stack(future, dim=1)


def tiny_data(num_sequences: int, seed: int, num_frames: int = 6) -> TensorDataset:
    """Blobs drifting across a 4x4 frame: smooth, learnable sequences with a known factor."""
    generator = torch.Generator().manual_seed(seed)
    start = torch.rand(num_sequences, 1, generator=generator) * 3
    position = start + 0.4 * torch.arange(num_frames)  # (N, T)
    grid = torch.arange(4.0)
    column = torch.exp(-((grid - position[..., None] % 4) ** 2))  # (N, T, 4)
    frames = column[:, :, None, None, :].expand(-1, -1, 1, 4, -1).contiguous()
    return TensorDataset(frames, position[..., None])


def tiny_config(**overrides) -> TrainConfig:
    values = dict(
        variant="tiny",
        num_sequences=32,
        num_val_sequences=8,
        num_frames=6,
        image_size=4,
        latent_dim=2,
        batch_size=4,
        learning_rate=0.05,
        max_steps=8,
        val_every=3,
        checkpoint_every=4,
        forecast_horizon=2,
        accelerator="cpu",
        devices="1",
    )
    values.update(overrides)
    return TrainConfig(**values)


def run_fit(run_dir, config, seed=0, nan_at_step=None, **kwargs) -> TinyDynamicsVAE:
    torch.manual_seed(seed)
    dynvae = TinyDynamicsVAE(nan_at_step=nan_at_step)
    fit(dynvae, tiny_data(32, 0), tiny_data(8, 1), config, run_dir,
        enable_progress_bar=False, **kwargs)
    return dynvae


def parameters(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in module.named_parameters()}


def test_step_batch_sampler_is_a_function_of_the_step():
    sampler = StepBatchSampler(10, 3, seed=5)
    stream = iter(sampler)
    batches = [next(stream) for _ in range(7)]
    # Each epoch (3 steps of 3) visits 9 distinct items; epochs use different permutations.
    assert len(set(sum(batches[:3], []))) == 9
    assert batches[:3] != batches[3:6]
    resumed = iter(StepBatchSampler(10, 3, seed=5, start_step=4))
    assert [next(resumed) for _ in range(3)] == batches[4:7]
    # Two ranks split each global batch of 6 without overlap, rank 0 first.
    ranks = [StepBatchSampler(10, 3, seed=5, rank=r, world_size=2) for r in (0, 1)]
    merged = ranks[0].batch_indices(1) + ranks[1].batch_indices(1)
    # One step per epoch here (10 // 6), so step 1 is the start of epoch 1 (seed 5 + 1).
    assert merged == torch.randperm(10, generator=torch.Generator().manual_seed(6)).tolist()[:6]
    with pytest.raises(ValueError, match="batch_size"):
        StepBatchSampler(4, 3, seed=0, world_size=2)


def test_train_config_validates():
    with pytest.raises(ValueError, match="dataset"):
        tiny_config(dataset="cifar")
    with pytest.raises(ValueError, match="forecast_horizon"):
        tiny_config(forecast_horizon=6)
    with pytest.raises(ValueError, match="batch_size"):
        tiny_config(batch_size=64)
    with pytest.raises(ValueError, match="unknown"):
        TrainConfig.from_dict({"variant": "x", "lr": 1})


def test_fit_writes_run_folder_and_learns(tmp_path):
    config = tiny_config(max_steps=40, val_every=20, checkpoint_every=20)
    torch.manual_seed(0)  # the initialisation run_fit uses
    before = evaluate(TinyDynamicsVAE(), tiny_data(8, 1), forecast_horizon=2)
    dynvae = run_fit(tmp_path, config)
    metrics = finish_run(dynvae, tiny_data(8, 1), config, tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["train"]["max_steps"] == 40 and saved["model"] == dynvae.config
    assert "torch" in saved["versions"]
    assert (tmp_path / "checkpoints" / "last.ckpt").exists()
    log = (tmp_path / "logs" / "version_0" / "metrics.csv").read_text()
    assert "train/loss" in log and "val/forecast_mse" in log
    assert json.loads((tmp_path / "metrics.json").read_text())["elbo"] == metrics["elbo"]
    for name in ("reconstructions", "forecasts", "eigenvalues", "prior_scales", "traversals"):
        assert (tmp_path / "figures" / f"{name}.png").stat().st_size > 1000
    # 40 Adam steps on smooth data raise the held-out ELBO and lower the reconstruction error.
    assert metrics["elbo"] > before["elbo"] + 10
    assert metrics["recon_mse"] < before["recon_mse"]
    errors = metrics["forecast"]["mse"]
    best = min(errors[name] for name in ("copy_last", "blank", "mean_frame"))
    assert metrics["forecast_vs_best_baseline"] == pytest.approx(errors["model"] / best)
    assert errors["mean_frame"] > 0 and errors["blank"] > 0
    assert metrics["num_sequences"] == 8


def test_resume_reproduces_uninterrupted_run(tmp_path):
    straight = run_fit(tmp_path / "straight", tiny_config(max_steps=8))
    halfway = run_fit(tmp_path / "resumed", tiny_config(max_steps=4))
    ckpt = tmp_path / "resumed" / "checkpoints" / "last.ckpt"
    assert torch.load(ckpt, weights_only=False)["global_step"] == 4
    # A fresh model with a different initialisation: everything must come from the checkpoint.
    resumed = run_fit(tmp_path / "resumed", tiny_config(max_steps=8), seed=1, ckpt_path=ckpt)
    expected, actual, midway = parameters(straight), parameters(resumed), parameters(halfway)
    for name in expected:
        torch.testing.assert_close(actual[name], expected[name], rtol=1e-6, atol=1e-7)
    assert any(not torch.allclose(midway[n], expected[n]) for n in expected)


def test_last_checkpoint_holds_the_final_step_whatever_the_intervals(tmp_path):
    """6 steps with checkpoints every 4 and validation every 4: neither saves at step 6, yet
    last.ckpt must hold the trained weights (it held step 4's, so that evaluate and resume
    read a model 2 steps older than the one training scored), and resuming from it reproduces
    an uninterrupted run."""
    config = tiny_config(max_steps=6, checkpoint_every=4, val_every=4)
    trained = run_fit(tmp_path / "run", config)
    checkpoint = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=False)
    assert checkpoint["global_step"] == 6
    for name, value in parameters(trained).items():
        torch.testing.assert_close(checkpoint["state_dict"][f"dynvae.{name}"], value,
                                   rtol=0, atol=0)
    straight = run_fit(tmp_path / "straight", tiny_config(max_steps=10, checkpoint_every=4,
                                                          val_every=4))
    resumed = run_fit(tmp_path / "run", tiny_config(max_steps=10, checkpoint_every=4,
                                                    val_every=4),
                      seed=1, ckpt_path=tmp_path / "run" / "checkpoints" / "last.ckpt")
    for name, value in parameters(straight).items():
        torch.testing.assert_close(parameters(resumed)[name], value, rtol=1e-6, atol=1e-7)


def test_nan_guard_stops_and_keeps_last_good_checkpoint(tmp_path):
    config = tiny_config(max_steps=10, checkpoint_every=1, val_every=0)
    torch.manual_seed(0)
    dynvae = TinyDynamicsVAE(nan_at_step=5)
    nan_warnings = pytest.warns(UserWarning, match="Encountered NaN")  # Pyro's own notice
    with pytest.raises(NonFiniteLossError, match="training step 5"), nan_warnings:
        fit(dynvae, tiny_data(32, 0), tiny_data(8, 1), config, tmp_path,
            enable_progress_bar=False)
    at_failure = parameters(dynvae)
    assert all(torch.isfinite(p).all() for p in at_failure.values())
    checkpoint = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=False)
    assert checkpoint["global_step"] == 5
    for name, value in at_failure.items():
        saved = checkpoint["state_dict"][f"dynvae.{name}"]
        assert torch.isfinite(saved).all()
        torch.testing.assert_close(saved, value, rtol=0, atol=0)
    # The same five steps without the NaN give the same weights: the guard changed nothing.
    clean = run_fit(tmp_path / "clean", tiny_config(max_steps=5, checkpoint_every=1, val_every=0))
    for name, value in parameters(clean).items():
        torch.testing.assert_close(at_failure[name], value, rtol=1e-6, atol=1e-7)


def test_errors_inside_the_loss_name_the_step(tmp_path):
    config = tiny_config(max_steps=10, checkpoint_every=1, val_every=0)
    torch.manual_seed(0)
    dynvae = TinyDynamicsVAE(nan_at_step=3)
    dynvae.model.validate_nan = True
    with pytest.raises(ValueError, match="at training step 3: "):
        fit(dynvae, tiny_data(32, 0), tiny_data(8, 1), config, tmp_path,
            enable_progress_bar=False)
    checkpoint = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=False)
    assert checkpoint["global_step"] == 3


class SaveRankParameters(Callback):
    """Each DDP process writes its final parameters, so the test can compare the ranks."""

    def on_train_end(self, trainer, pl_module):
        path = trainer.default_root_dir + f"/rank{trainer.global_rank}.pt"
        torch.save({"params": parameters(pl_module.dynvae), "world_size": trainer.world_size}, path)


@pytest.mark.slow
def test_ddp_two_cpu_processes(tmp_path):
    config = tiny_config(max_steps=4, devices="2", strategy="ddp_fork", val_every=2)
    torch.manual_seed(0)  # the initialisation run_fit uses
    initial = parameters(TinyDynamicsVAE())
    run_fit(tmp_path, config, seed=0, callbacks=[SaveRankParameters()])
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1)]
    assert [r["world_size"] for r in ranks] == [2, 2]
    for name, value in ranks[0]["params"].items():
        # DDP averages gradients, so both processes take identical steps.
        torch.testing.assert_close(ranks[1]["params"][name], value, rtol=0, atol=0)
    assert any(not torch.equal(initial[n], ranks[0]["params"][n]) for n in initial)
    assert "val/elbo" in (tmp_path / "logs" / "version_0" / "metrics.csv").read_text()


class RecordTrainingDevices(Callback):
    """The devices of the parameters and of the batch at every training step."""

    def __init__(self):
        self.devices = set()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.devices.add(next(pl_module.dynvae.parameters()).device.type)
        self.devices.update(x.device.type for x in batch)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_fit_and_evaluate_on_cuda(tmp_path):
    config = tiny_config(max_steps=4, accelerator="gpu", devices="1")
    recorder = RecordTrainingDevices()
    # Lightning moves the module back to the CPU when fit ends, so look during training.
    dynvae = run_fit(tmp_path, config, callbacks=[recorder])
    assert recorder.devices == {"cuda"}
    checkpoint = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=False)
    assert checkpoint["rng_states"]["cuda"]
    metrics = finish_run(dynvae, tiny_data(8, 1), config, tmp_path)
    assert math.isfinite(metrics["elbo"])

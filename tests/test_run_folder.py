"""
A run folder holds one run (pyro_dynvae.run_folder, pyro_dynvae.train): ``train`` refuses a
folder holding another run, ``overwrite`` replaces it, a resume applies what it may change (a new
learning rate reaches the restored optimiser), records it and rejects the rest, and every error
names its file or field.
"""

from __future__ import annotations

import json
import logging
import shutil
import sys
import warnings

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import _pytree
from test_train import TinyDynamicsVAE, parameters, run_fit, tiny_config, tiny_data

from pyro_dynvae.config import TrainConfig
from pyro_dynvae.run_folder import RESUMABLE, load_run, read_checkpoint
from pyro_dynvae.train import NonFiniteLossError, fit, train


def small_config(**overrides) -> TrainConfig:
    """A real variant (through make_dataset and build_model) that trains in about a second."""
    values = dict(
        dataset="sprites", model_overrides={"architecture": "mlp"}, image_size=16,
        num_frames=4, num_sequences=8, num_val_sequences=2, batch_size=2, latent_dim=2,
        max_steps=2, val_every=0, checkpoint_every=2, forecast_horizon=1, accelerator="cpu",
        devices="1",
    )
    values.update(overrides)
    return TrainConfig(**values)


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """A finished small run (2 steps) and its metrics; copy it before changing it."""
    run_dir = tmp_path_factory.mktemp("trained") / "run"
    return run_dir, train(small_config(), run_dir, enable_progress_bar=False)


def copy_run(trained_run, tmp_path):
    return shutil.copytree(trained_run[0], tmp_path / "run")


def saved_config(run_dir) -> dict:
    return json.loads((run_dir / "config.json").read_text())


def test_train_refuses_a_folder_that_holds_a_run(trained_run, tmp_path):
    run_dir = copy_run(trained_run, tmp_path)
    before = {path: path.read_bytes() for path in run_dir.rglob("*") if path.is_file()}
    with pytest.raises(ValueError, match="already holds a training run.*--resume.*--overwrite"):
        train(small_config(latent_dim=3), run_dir, enable_progress_bar=False)
    # Only checkpoints/ is enough to count as a run.
    (run_dir / "config.json").unlink()
    with pytest.raises(ValueError, match="already holds a training run"):
        train(small_config(), run_dir, enable_progress_bar=False)
    del before[run_dir / "config.json"]
    assert {path: path.read_bytes() for path in run_dir.rglob("*") if path.is_file()} == before


def test_overwrite_replaces_the_run_and_leaves_nothing_stale(trained_run, tmp_path):
    run_dir = copy_run(trained_run, tmp_path)
    stale = [run_dir / "checkpoints" / "step999.ckpt", run_dir / "figures" / "old.png",
             run_dir / "logs" / "version_7" / "metrics.csv"]
    for path in stale:
        path.parent.mkdir(exist_ok=True)
        path.write_text("old run")
    (run_dir / "notes.txt").write_text("not the run's")
    # Invalid new options fail before the old run is removed.
    with pytest.raises(ValueError, match="unknown variant 'nope'"):
        train(small_config(variant="nope"), run_dir, overwrite=True)
    assert all(path.exists() for path in stale)

    metrics = train(small_config(latent_dim=3), run_dir, overwrite=True, enable_progress_bar=False)
    assert not any(path.exists() for path in stale)
    assert (run_dir / "notes.txt").read_text() == "not the run's"
    checkpoints = sorted(p.name for p in (run_dir / "checkpoints").iterdir())
    assert checkpoints == ["last.ckpt", "step2.ckpt"]
    assert sorted(p.name for p in (run_dir / "logs").iterdir()) == ["version_0"]
    saved = saved_config(run_dir)
    assert saved["train"]["latent_dim"] == 3 and saved["history"] == []
    # Identical to the same run in a fresh folder: nothing of the old run was used.
    fresh = train(small_config(latent_dim=3), tmp_path / "fresh", enable_progress_bar=False)
    assert metrics["elbo"] == fresh["elbo"]
    dynvae, config = load_run(run_dir)
    assert config.latent_dim == 3 and dynvae.config["latent_dim"] == 3


@pytest.mark.filterwarnings("ignore:Checkpoint directory .* exists and is not empty")
def test_fit_always_writes_last_ckpt_of_the_run_being_trained(tmp_path):
    run_fit(tmp_path, tiny_config(max_steps=4))
    run_fit(tmp_path, tiny_config(max_steps=2, checkpoint_every=2), seed=1)  # no resume
    names = sorted(path.name for path in (tmp_path / "checkpoints").iterdir())
    assert "last-v1.ckpt" not in names and "last.ckpt" in names
    assert read_checkpoint(tmp_path / "checkpoints" / "last.ckpt")["global_step"] == 2


class SwitchLearningRate(Callback):
    """Sets the optimiser's learning rate before the batch of optimiser step ``step``."""

    def __init__(self, step: int, learning_rate: float) -> None:
        self.step, self.learning_rate = step, learning_rate

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == self.step:
            for group in trainer.optimizers[0].param_groups:
                group["lr"] = self.learning_rate


def test_resume_applies_a_new_learning_rate_and_records_it(tmp_path):
    # Reference: one uninterrupted run whose learning rate drops from 0.05 to 0.01 at step 4.
    switched = run_fit(tmp_path / "switched", tiny_config(max_steps=8),
                       callbacks=[SwitchLearningRate(4, 0.01)])
    unchanged = run_fit(tmp_path / "unchanged", tiny_config(max_steps=8))
    run_dir = tmp_path / "resumed"
    run_fit(run_dir, tiny_config(max_steps=4))
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    resumed = run_fit(run_dir, tiny_config(max_steps=8, learning_rate=0.01), seed=1,
                      ckpt_path=ckpt)
    expected, actual = parameters(switched), parameters(resumed)
    for name in expected:
        torch.testing.assert_close(actual[name], expected[name], rtol=1e-6, atol=1e-7)
    assert any(not torch.allclose(actual[n], parameters(unchanged)[n]) for n in actual)
    checkpoint = read_checkpoint(ckpt)
    assert checkpoint["global_step"] == 8
    assert [g["lr"] for g in checkpoint["optimizer_states"][0]["param_groups"]] == [0.01]
    saved = saved_config(run_dir)
    assert saved["train"]["learning_rate"] == 0.01
    first = {"resumed_at_step": 4, "changes": {"learning_rate": [0.05, 0.01], "max_steps": [4, 8]}}
    assert saved["history"] == [first]

    run_fit(run_dir, tiny_config(max_steps=10, learning_rate=0.01, gradient_clip_val=1.0),
            ckpt_path=ckpt)
    second = {"resumed_at_step": 8, "changes": {"gradient_clip_val": [10.0, 1.0],
                                                 "max_steps": [8, 10]}}
    assert saved_config(run_dir)["history"] == [first, second]


def test_resume_rejects_changes_to_the_model_or_data(tmp_path):
    run_fit(tmp_path, tiny_config(max_steps=4))
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    config = tiny_config(max_steps=8, latent_dim=3, batch_size=8, learning_rate=0.01)
    with pytest.raises(ValueError) as error:
        fit(TinyDynamicsVAE(), tiny_data(32, 0), tiny_data(8, 1), config, tmp_path,
            ckpt_path=tmp_path / "checkpoints" / "last.ckpt", enable_progress_bar=False)
    message = str(error.value)
    assert "cannot change" in message and "\n" not in message
    assert "latent_dim 2 -> 3" in message and "batch_size 4 -> 8" in message
    assert "learning_rate" not in message.split("may change only")[0]
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before


def test_resume_with_a_tuple_option_is_no_change(tmp_path):
    # config.json stores (1.0, 1.5) as [1.0, 1.5]; the same options resumed change nothing
    options = {"scale_range": (1.0, 1.5)}
    run_dir = tmp_path / "run"
    train(small_config(dataset_options=options), run_dir, enable_progress_bar=False)
    train(small_config(dataset_options=options, max_steps=3), run_dir, resume=True,
          enable_progress_bar=False)
    assert saved_config(run_dir)["history"] == [{"resumed_at_step": 2,
                                                 "changes": {"max_steps": [2, 3]}}]
    assert read_checkpoint(run_dir / "checkpoints" / "last.ckpt")["global_step"] == 3


def test_resumable_options_are_config_fields():
    assert set(RESUMABLE) < {field for field in TrainConfig.__dataclass_fields__}


def test_resume_that_has_nothing_to_do_says_so(trained_run, tmp_path):
    run_dir = copy_run(trained_run, tmp_path)
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    for max_steps in (1, 2):
        with pytest.raises(ValueError, match=f"{ckpt} is at step 2 and max_steps is {max_steps}"):
            train(small_config(max_steps=max_steps), run_dir, resume=True)
    with pytest.raises(ValueError, match="exclude each other"):
        train(small_config(max_steps=3), run_dir, resume=True, overwrite=True)
    shutil.rmtree(run_dir / "checkpoints")
    missing = f"cannot resume {run_dir}: {ckpt} is missing.*--overwrite"
    with pytest.raises(ValueError, match=missing):
        train(small_config(max_steps=3), run_dir, resume=True)
    with pytest.raises(ValueError, match=f"{tmp_path / 'none'} is not a training run folder"):
        train(small_config(max_steps=3), tmp_path / "none", resume=True)


def test_nan_guard_advice_can_be_followed(tmp_path):
    config = tiny_config(max_steps=10, checkpoint_every=1, val_every=0)
    torch.manual_seed(0)
    with pytest.raises(NonFiniteLossError) as error, pytest.warns(UserWarning, match="NaN"):
        fit(TinyDynamicsVAE(nan_at_step=5), tiny_data(32, 0), tiny_data(8, 1), config, tmp_path,
            enable_progress_bar=False)
    advice = f"pyro-dynvae train --run-dir {tmp_path} --resume --learning-rate 0.005"
    assert advice in str(error.value)
    resumed = run_fit(tmp_path, tiny_config(max_steps=10, checkpoint_every=1, val_every=0,
                                            learning_rate=0.005),
                      ckpt_path=tmp_path / "checkpoints" / "last.ckpt")
    assert all(torch.isfinite(p).all() for p in parameters(resumed).values())
    assert read_checkpoint(tmp_path / "checkpoints" / "last.ckpt")["global_step"] == 10
    assert saved_config(tmp_path)["history"][0]["changes"]["learning_rate"] == [0.05, 0.005]


@pytest.mark.parametrize(
    "overrides, error, match",
    [
        (dict(variant="nope"), ValueError, "unknown variant 'nope'"),
        (dict(dataset_options={"foo": 1}), TypeError, "dataset_options of 'sprites'.*'foo'"),
        (dict(model_overrides={"foo": 1}), TypeError, "foo"),
        (dict(accelerator="tpuz"), ValueError, "accelerator='tpuz'"),
        (dict(devices="0,1"), ValueError, "devices='0,1'"),
    ],
)
def test_bad_options_fail_before_anything_is_written(overrides, error, match, tmp_path):
    with pytest.raises(error, match=match):
        train(small_config(**overrides), tmp_path / "run", enable_progress_bar=False)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "overrides, error, match",
    [
        (dict(learning_rate=-1.0), ValueError, "learning_rate must be a finite number > 0"),
        (dict(learning_rate=float("inf")), ValueError, "learning_rate must be a finite"),
        (dict(gradient_clip_val=-1.0), ValueError, "gradient_clip_val must be"),
        (dict(threads=-1), ValueError, "threads must be an integer >= 0"),
        (dict(val_every=-1), ValueError, "val_every must be an integer >= 0"),
        (dict(latent_dim=0), ValueError, "latent_dim must be a positive integer"),
        (dict(num_frames=2, forecast_horizon=1), ValueError, "num_frames must be at least 3"),
        (dict(forecast_horizon=5), ValueError, r"forecast_horizon .* = \[1, 4\], got 5"),
        (dict(devices="two"), ValueError, "devices must be 'auto', a count or a list"),
        (dict(max_steps=2.5), TypeError, "max_steps must be of type int, got 2.5"),
        (dict(max_steps=True), TypeError, "max_steps must be of type int"),
        (dict(learning_rate="0.1"), TypeError, "learning_rate must be of type float"),
        (dict(dataset_options=[1]), TypeError, "dataset_options must be of type dict"),
    ],
)
def test_train_config_names_the_bad_field(overrides, error, match):
    with pytest.raises(error, match=match):
        tiny_config(**overrides)


def test_train_config_accepts_ints_for_floats_and_devices():
    config = tiny_config(learning_rate=1, devices=2)
    assert config.learning_rate == 1 and config.devices == 2


@pytest.mark.parametrize(
    "damage, match",
    [
        (lambda run: (run / "config.json").write_text("{not json"),
         "config.json is not valid JSON"),
        (lambda run: (run / "config.json").write_text('{"model": {}}'),
         "config.json is not the config.json of a training run"),
        (lambda run: (run / "config.json").write_text(json.dumps(
            {**saved_config(run), "train": {**saved_config(run)["train"], "latent_dim": -1}})),
         "config.json: 'train': latent_dim must be a positive integer"),
        (lambda run: (run / "config.json").write_text(json.dumps(
            {**saved_config(run), "model": {**saved_config(run)["model"], "latent_dim": 3}})),
         "last.ckpt does not hold the weights of the model in .*config.json"),
        (lambda run: (run / "checkpoints" / "last.ckpt").write_bytes(b""), "last.ckpt is empty"),
        (lambda run: (run / "checkpoints" / "last.ckpt").write_bytes(b"garbage"),
         "checkpoint .*last.ckpt cannot be read"),
        (lambda run: torch.save({"weights": 1}, run / "checkpoints" / "last.ckpt"),
         "last.ckpt is not a Lightning checkpoint"),
        (lambda run: (run / "checkpoints" / "last.ckpt").unlink(), "last.ckpt is missing"),
        (lambda run: (run / "config.json").unlink(), "is not a training run folder"),
    ],
)
def test_load_run_names_the_bad_file(damage, match, trained_run, tmp_path):
    run_dir = copy_run(trained_run, tmp_path)
    damage(run_dir)
    with pytest.raises(ValueError, match=match) as error:
        load_run(run_dir)
    assert "\n" not in str(error.value)


def test_fit_is_quiet_and_shows_a_progress_bar_only_on_a_terminal(tmp_path, caplog, monkeypatch):
    # The noise exists in this environment (else the checks below could not fail) ...
    with pytest.warns(FutureWarning, match="LeafSpec"):
        _pytree._tree_flatten(1)
    with caplog.at_level(logging.INFO):
        pl.Trainer(logger=False, enable_progress_bar=False, default_root_dir=tmp_path / "plain")
    assert any(record.getMessage().startswith("💡 Tip") for record in caplog.records)
    caplog.clear()
    # ... and fit has none of it.
    with warnings.catch_warnings(record=True) as caught, caplog.at_level(logging.INFO):
        warnings.simplefilter("always")
        run_fit(tmp_path / "a", tiny_config(max_steps=2))
    assert not any(record.getMessage().startswith("💡") for record in caplog.records)
    assert not any("LeafSpec" in str(warning.message) for warning in caught)
    # Progress bar by default only on a terminal.
    assert not sys.stdout.isatty()
    quiet = fit(TinyDynamicsVAE(), tiny_data(32, 0), tiny_data(8, 1), tiny_config(max_steps=1),
                tmp_path / "b")
    assert quiet.trainer.progress_bar_callback is None
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    shown = fit(TinyDynamicsVAE(), tiny_data(32, 0), tiny_data(8, 1), tiny_config(max_steps=1),
                tmp_path / "c")
    assert shown.trainer.progress_bar_callback is not None


def test_threads_option_sets_torch_threads(tmp_path):
    before = torch.get_num_threads()
    try:
        run_fit(tmp_path, tiny_config(max_steps=1, threads=2))
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)

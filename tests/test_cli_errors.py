"""
The command line answers a mistake in one line (``pyro-dynvae: error: ...`` naming the option or
file, exit status 2; ``--debug`` raises instead), checks options before it writes anything, and
on ``train --resume`` takes from the command line only the options given there.
"""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from test_cli import SUBCOMMANDS, TINY_TRAIN

from pyro_dynvae import train as training
from pyro_dynvae.cli import main
from pyro_dynvae.config import TrainConfig
from pyro_dynvae.run_folder import RESUMABLE, read_checkpoint

# TINY_TRAIN's run with non-default latent_dim, batch_size, ...: a resume must keep them.
TINY_RESUME = ["--no-progress-bar", "--accelerator", "cpu", "--devices", "1"]


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("cli") / "run"
    assert main(["train", "--run-dir", str(run_dir), *TINY_TRAIN]) == 0
    return run_dir


def copy_run(trained_run, tmp_path):
    return shutil.copytree(trained_run, tmp_path / "run")


def error_line(capsys) -> str:
    """The whole of stderr, which must be exactly one ``pyro-dynvae: error:`` line."""
    err = capsys.readouterr().err
    assert err.startswith("pyro-dynvae: error: ") and err.count("\n") == 1, err
    return err


def with_option(argv: list[str], option: str, value: str) -> list[str]:
    """``argv`` with ``option`` set to ``value`` (replaced where ``argv`` has it)."""
    argv = list(argv)
    if option in argv:
        argv[argv.index(option) + 1] = value
        return argv
    return [*argv, option, value]


@pytest.mark.parametrize(
    "option, value, named",
    [
        ("--learning-rate", "-1", "learning_rate must be a finite number > 0, got -1.0"),
        ("--learning-rate", "nan", "learning_rate must be a finite number > 0, got nan"),
        ("--variant", "nope", "unknown variant 'nope'"),
        ("--dataset-options", '{"foo": 1}', "dataset_options of 'sprites'"),
        ("--model-overrides", '{"foo": 1}', "unknown option(s) ['foo']"),
        ("--devices", "x", "devices must be 'auto', a count or a list like 0,1, got 'x'"),
        ("--accelerator", "tpuz", "accelerator='tpuz'"),
        ("--forecast-horizon", "3", "forecast_horizon must lie in [1, num_frames - 2]"),
        ("--threads", "-1", "threads must be an integer >= 0, got -1"),
        ("--batch-size", "100", "batch_size (100) must not exceed num_sequences (8)"),
        ("--num-frames", "0", "num_frames must be at least 3"),
    ],
)
def test_train_bad_option_is_one_line_and_writes_nothing(option, value, named, tmp_path, capsys):
    run_dir = tmp_path / "run"
    argv = with_option(["train", "--run-dir", str(run_dir), *TINY_TRAIN], option, value)
    assert main(argv) == 2
    assert named in error_line(capsys)
    assert not run_dir.exists()


def test_debug_shows_the_traceback(tmp_path):
    argv = ["train", "--run-dir", str(tmp_path / "run"), *TINY_TRAIN, "--learning-rate", "-1"]
    with pytest.raises(ValueError, match="learning_rate"):
        main([*argv, "--debug"])


def test_train_into_a_run_folder_refuses_and_overwrite_replaces(trained_run, tmp_path, capsys):
    run_dir = copy_run(trained_run, tmp_path)
    assert main(["train", "--run-dir", str(run_dir), *TINY_TRAIN]) == 2
    line = error_line(capsys)
    assert f"{run_dir} already holds a training run" in line
    assert "--resume" in line and "--overwrite" in line
    argv = ["train", "--run-dir", str(run_dir), *with_option(TINY_TRAIN, "--latent-dim", "3")]
    assert main([*argv, "--overwrite"]) == 0
    assert json.loads((run_dir / "config.json").read_text())["train"]["latent_dim"] == 3
    with pytest.raises(SystemExit) as exit_info:  # argparse: the two flags exclude each other
        main([*argv, "--overwrite", "--resume"])
    assert exit_info.value.code == 2
    assert "not allowed with argument --overwrite" in capsys.readouterr().err


def test_resume_takes_only_the_options_given(trained_run, tmp_path, capsys):
    run_dir = copy_run(trained_run, tmp_path)
    argv = ["train", "--run-dir", str(run_dir), "--resume", *TINY_RESUME]
    assert main([*argv, "--max-steps", "3", "--learning-rate", "0.01"]) == 0
    saved = json.loads((run_dir / "config.json").read_text())
    # Options not given keep the run's values, not the command line's defaults.
    default = TrainConfig()
    assert saved["train"]["latent_dim"] == 2 != default.latent_dim
    assert saved["train"]["dataset"] == "sprites" != default.dataset
    assert saved["history"] == [
        {"resumed_at_step": 2, "changes": {"learning_rate": [default.learning_rate, 0.01],
                                           "max_steps": [2, 3]}}
    ]
    checkpoint = read_checkpoint(run_dir / "checkpoints" / "last.ckpt")
    assert checkpoint["global_step"] == 3
    assert checkpoint["optimizer_states"][0]["param_groups"][0]["lr"] == 0.01
    capsys.readouterr()

    assert main([*argv, "--max-steps", "3"]) == 2
    assert "nothing to resume" in error_line(capsys)
    assert main([*argv, "--max-steps", "4", "--latent-dim", "3", "--seed", "1"]) == 2
    line = error_line(capsys)
    assert "cannot change latent_dim 2 -> 3, seed 0 -> 1" in line
    # Giving a fixed option its saved value is no change.
    assert main([*argv, "--max-steps", "4", "--latent-dim", "2"]) == 0


@pytest.mark.parametrize(
    "damage, named",
    [
        (lambda run: (run / "config.json").write_text("{not json"),
         "config.json is not valid JSON"),
        (lambda run: (run / "config.json").write_text('{"model": {}}'), "config.json is not"),
        (lambda run: (run / "checkpoints" / "last.ckpt").write_bytes(b""), "last.ckpt is empty"),
        (lambda run: shutil.rmtree(run), "is not a training run folder"),
    ],
)
@pytest.mark.parametrize("command", ["evaluate", "forecast", "resume"])
def test_bad_run_folder_is_named(command, damage, named, trained_run, tmp_path, capsys):
    run_dir = copy_run(trained_run, tmp_path)
    damage(run_dir)
    if command == "resume":
        argv = ["train", "--run-dir", str(run_dir), "--resume", "--max-steps", "5", *TINY_RESUME]
    else:
        argv = [command, str(run_dir)]
    assert main(argv) == 2
    line = error_line(capsys)
    assert str(run_dir) in line and named in line


def test_forecast_checks_its_options(trained_run, capsys):
    assert main(["forecast", str(trained_run), "--num-sequences", "0"]) == 2
    assert "--num-sequences must be >= 1, got 0" in error_line(capsys)
    assert main(["forecast", str(trained_run), "--threads", "-2"]) == 2
    assert "--threads must be an integer >= 0, got -2" in error_line(capsys)
    assert main(["evaluate", str(trained_run), "--num-val-sequences", "0"]) == 2
    assert "--num-val-sequences must be >= 1, got 0" in error_line(capsys)


def test_evaluate_threads(trained_run, tmp_path):
    run_dir = copy_run(trained_run, tmp_path)
    before = torch.get_num_threads()
    try:
        assert main(["evaluate", str(run_dir), "--threads", "2"]) == 0
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_show_data_names_the_bad_option(tmp_path, capsys):
    output = tmp_path / "data.png"
    assert main(["show-data", "--num-frames", "0", "--output", str(output)]) == 2
    assert "num_frames must be >= 1, got 0" in error_line(capsys)
    assert not output.exists()


def test_training_divergence_is_one_line_with_status_1(monkeypatch, tmp_path, capsys):
    def diverge(*args, **kwargs):
        raise training.NonFiniteLossError("non-finite values at training step 5 (in loss); ...")

    monkeypatch.setattr(training, "train", diverge)
    assert main(["train", "--run-dir", str(tmp_path / "run"), *TINY_TRAIN]) == 1
    assert "non-finite values at training step 5" in error_line(capsys)


def test_a_long_message_keeps_its_first_line(monkeypatch, tmp_path, capsys):
    def fail(*args, **kwargs):
        raise ValueError("Expected parameter loc to satisfy the constraint\ntensor([nan])")

    monkeypatch.setattr(training, "train", fail)
    assert main(["train", "--run-dir", str(tmp_path / "run"), *TINY_TRAIN]) == 2
    assert error_line(capsys).endswith("to satisfy the constraint\n")


@pytest.mark.parametrize("command", [*SUBCOMMANDS, "compare"])
def test_help_shows_each_default_once(command, capsys):
    with pytest.raises(SystemExit):
        main([command, "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "(default: None)" not in text and "(default: False)" not in text
    assert "--debug" in text


def test_train_help_documents_resume_and_overwrite(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "10000")  # argparse wraps help at hyphens otherwise
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    resume_help = text.split("--resume continue the run", 1)[1].split("--overwrite remove")[0]
    for name in RESUMABLE:
        assert "--" + name.replace("_", "-") in resume_help
    assert "--overwrite remove the run" in text

"""The ``pyro-dynvae`` command line: documented options, argument checking, show-data."""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import shutil
import subprocess
import sys

import pytest
import torch
from PIL import Image

from pyro_dynvae.cli import TRAIN_OPTIONS, main, make_parser
from pyro_dynvae.config import TrainConfig

SUBCOMMANDS = ["train", "evaluate", "forecast", "show-data"]


def subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


@pytest.mark.parametrize("command", SUBCOMMANDS)
def test_help_documents_every_option_with_its_default(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())  # undo line wrapping
    parser = subparsers(make_parser())[command]
    options = [a for a in parser._actions if a.option_strings and a.dest != "help"]
    assert options
    for action in options:
        assert action.option_strings[-1] in text
        assert action.help, f"{command} {action.option_strings[-1]} has no help text"
        if action.default is not None and action.default is not False:
            # The help text of the option ends with its default value.
            help_text = " ".join(action.help.split())
            expected = f"{help_text} (default: {action.default})"
            assert expected in text.replace("%%", "%"), expected


def test_train_exposes_every_config_field():
    parser = subparsers(make_parser())["train"]
    dests = {a.dest for a in parser._actions}
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    assert fields <= dests
    assert set(TRAIN_OPTIONS) == fields
    args = parser.parse_args(["--dataset-options", '{"num_digits": 1}', "--max-steps", "7"])
    assert args.dataset_options == {"num_digits": 1} and args.max_steps == 7
    assert parser.parse_args([]).model_overrides == {}
    assert parser.parse_args([]).max_steps == TrainConfig().max_steps


@pytest.mark.parametrize("value", ["[1, 2]", "{not json"])
def test_train_rejects_bad_json_options(value, capsys):
    with pytest.raises(SystemExit):
        main(["train", "--model-overrides", value])
    assert "--model-overrides" in capsys.readouterr().err


def test_module_help_runs_as_a_script():
    result = subprocess.run(
        [sys.executable, "-m", "pyro_dynvae.cli", "--help"],
        capture_output=True, text=True, check=True,
    )
    for command in SUBCOMMANDS:
        assert re.search(rf"^\s+{command}\s", result.stdout, re.MULTILINE), command


@pytest.mark.parametrize("dataset, factor", [("moving_mnist", "digit0_x"), ("sprites", "x")])
def test_show_data_draws_sequences(dataset, factor, tmp_path, capsys):
    output = tmp_path / "data.png"
    code = main(["show-data", "--dataset", dataset, "--num-sequences", "2", "--num-frames", "4",
                 "--image-size", "32", "--output", str(output)])
    assert code == 0
    out = capsys.readouterr().out
    assert factor in out.split("factors per frame:")[1].split("\n")[0].split(", ")
    assert str(output) in out
    with Image.open(output) as image:
        width, height = image.size
    assert width > height > 100  # 2 rows x 4 frames


TINY_TRAIN = [
    "--dataset", "sprites", "--model-overrides", '{"architecture": "mlp"}',
    "--image-size", "16", "--num-frames", "4", "--num-sequences", "8",
    "--num-val-sequences", "2", "--batch-size", "2", "--latent-dim", "2", "--max-steps", "2",
    "--val-every", "0", "--checkpoint-every", "2", "--forecast-horizon", "1",
    "--accelerator", "cpu", "--devices", "1", "--no-progress-bar",
]


def test_train_resume_evaluate_forecast_round_trip(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PYRO_DYNVAE_JUDGE_CACHE", str(tmp_path / "judges"))
    run_dir = tmp_path / "run"
    assert main(["train", "--run-dir", str(run_dir), *TINY_TRAIN]) == 0
    trained = json.loads((run_dir / "metrics.json").read_text())
    assert trained["disentanglement"]["factors"]
    assert 0 <= trained["disentanglement"]["mcc"] <= 1
    assert str(run_dir / "metrics.json") in capsys.readouterr().out

    # Resuming continues the saved run to the new total and keeps the first run's logs.
    argv = ["train", "--run-dir", str(run_dir), "--resume", "--max-steps", "3",
            "--no-progress-bar", "--accelerator", "cpu", "--devices", "1"]
    assert main(argv) == 0
    checkpoint = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)
    assert checkpoint["global_step"] == 3
    assert (run_dir / "logs" / "version_0" / "metrics.csv").exists()
    assert (run_dir / "logs" / "version_1" / "metrics.csv").exists()
    resumed = json.loads((run_dir / "metrics.json").read_text())
    assert resumed["elbo"] != trained["elbo"]

    # evaluate rebuilds the model from config.json + last.ckpt: same (seeded) metrics.
    (run_dir / "metrics.json").unlink()
    shutil.rmtree(run_dir / "figures")
    capsys.readouterr()
    assert main(["evaluate", str(run_dir), "--judge-steps", "2"]) == 0
    evaluated = json.loads((run_dir / "metrics.json").read_text())
    for key in ("elbo", "recon_mse", "forecast_mse", "forecast_vs_best_baseline"):
        assert evaluated[key] == pytest.approx(resumed[key], rel=1e-5), key
    assert (run_dir / "figures" / "reconstructions.png").exists()
    # the protocol's judge, trained for 2 steps into the cache, is refused and the refusal kept
    assert "below the required accuracy" in evaluated["static_dynamic"]["refused"]
    assert list((tmp_path / "judges").glob("judge-*.pt"))
    assert "static/dynamic protocol: not scored" in capsys.readouterr().out
    assert main(["evaluate", str(run_dir), "--no-protocol"]) == 0
    assert "static_dynamic" not in json.loads((run_dir / "metrics.json").read_text())
    assert main(["evaluate", str(run_dir), "--judge-steps", "0"]) == 2
    assert "--judge-steps must be >= 1" in capsys.readouterr().err

    capsys.readouterr()
    assert main(["forecast", str(run_dir), "--horizon", "2", "--num-sequences", "2"]) == 0
    out = capsys.readouterr().out
    assert (run_dir / "figures" / "forecast_k2.png").exists()
    assert "copy_last" in out and "mean_frame" in out and "model / best baseline" in out
    assert main(["forecast", str(run_dir)]) == 0  # the run's own horizon, 1
    assert (run_dir / "figures" / "forecast_k1.png").exists()
    capsys.readouterr()
    assert main(["train", "--run-dir", str(tmp_path / "nothing"), "--resume"]) == 2
    assert "--resume" in capsys.readouterr().err
    assert main(["forecast", str(run_dir), "--horizon", "3"]) == 2  # 4 frames: k <= 2
    assert "--horizon must lie in [1, 2]" in capsys.readouterr().err


def test_compare_subcommand_is_the_study_command_line():
    from pyro_dynvae.assessment import study as compare

    argv = ["--out", "elsewhere", "--variants", "vae", "hierarchical", "--seeds", "3"]
    args = make_parser().parse_args(["compare", *argv])
    expected = vars(compare.build_parser().parse_args(argv))
    assert {key: vars(args)[key] for key in expected} == expected
    assert args.command is compare.run


def test_compare_max_steps_replaces_only_the_budgets_steps(tmp_path, capsys):
    from pyro_dynvae.assessment import study as compare

    parse = compare.build_parser().parse_args
    scaled = compare.StudyBudget.scaled(2.0)
    assert compare.study_budget(parse(["--budget", "2"])) == scaled
    longer = compare.study_budget(parse(["--budget", "2", "--max-steps", "8000"]))
    assert longer == dataclasses.replace(scaled, max_steps=8000) and scaled.max_steps == 4000
    assert main(["compare", "--out", str(tmp_path), "--max-steps", "0"]) == 2
    assert "max_steps must be a positive integer, got 0" in capsys.readouterr().err
    assert not (tmp_path / "study.json").exists()


def test_compare_model_overrides_are_checked_before_anything_runs(tmp_path, capsys):
    from pyro_dynvae.assessment import study as compare

    args = compare.build_parser().parse_args(["--model-overrides", '{"kl_scale": 0.5}'])
    assert args.model_overrides == {"kl_scale": 0.5}
    with pytest.raises(SystemExit):
        compare.build_parser().parse_args(["--model-overrides", "[1]"])
    assert "expected a JSON object" in capsys.readouterr().err
    assert main(["compare", "--out", str(tmp_path), "--variants", "vae", "--model-overrides",
                 '{"no_such_option": 1}']) == 2
    error = capsys.readouterr().err
    assert "model options {'architecture': 'conv', 'no_such_option': 1} for vae on sprites" in error
    assert "Traceback" not in error and not (tmp_path / "study.json").exists()

"""The variant comparison study: a tiny-budget run writes its tables and figures, and a rerun
skips finished cells (no retraining), resumes an interrupted cell from its checkpoint and
retries failed ones only on request."""

import csv
import json
import math
import statistics

import pytest
import torch

from pyro_dynvae import train as training
from pyro_dynvae.assessment import report
from pyro_dynvae.assessment import study as compare

TINY = compare.StudyBudget(
    max_steps=2, num_train_sequences=4, num_test_sequences=6, num_score_sequences=30,
    num_frames=4, batch_size=2,
    latent_dim=4, forecast_horizon=1, intervention_batch_size=4, intervention_num_train=10,
    intervention_num_eval=6, variance_estimate=20, judge_steps=2, protocol_pairs=4,
)
VARIANTS = ["hierarchical", "vae"]


class FitSpy:
    """Records every call of :func:`pyro_dynvae.train.fit` and forwards it (or fails)."""

    def __init__(self, monkeypatch, error=None):
        self.calls = []
        self.error = error
        self.real_fit = training.fit
        monkeypatch.setattr(training, "fit", self)

    def __call__(self, dynvae, train_data, val_data, config, run_dir, **kwargs):
        self.calls.append({"variant": config.variant, "seed": config.seed, **kwargs})
        if self.error is not None:
            raise self.error
        return self.real_fit(dynvae, train_data, val_data, config, run_dir, **kwargs)


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """One tiny study (sprites, two variants, one seed), shared by the tests below."""
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("study")
    summary = compare.run_study(out, datasets=["sprites"], variants=VARIANTS, seeds=[0],
                                budget=TINY, command="tiny", progress=False)
    return out, summary


def read_rows(out):
    with (out / "table.csv").open() as stream:
        return list(csv.DictReader(stream))


def test_tiny_study_writes_table_figures_and_cells(study):
    out, summary = study
    assert summary["trained"] == ["sprites/hierarchical/seed0", "sprites/vae/seed0"]
    assert summary["skipped"] == [] and summary["failed"] == []
    rows = read_rows(out)
    assert [row["variant"] for row in rows] == VARIANTS
    for row in rows:
        assert row["dataset"] == "sprites" and row["num_ok"] == "1" and row["num_seeds"] == "1"
        for key in ("mig", "dci_disentanglement", "dci_informativeness", "mcc", "recon_mse",
                    "forecast_vs_best_baseline", "overlap"):
            assert 0 <= float(row[f"{key}_mean"]) < math.inf, key
        assert 0 <= float(row["mig_mean"]) <= 1 and 0 <= float(row["mcc_mean"]) <= 1
        # probes: means above chance (at most 1) and every factor's held-out scores
        for key in ("probe_linear", "probe_nonlinear"):
            assert float(row[f"{key}_mean"]) <= 1, key
        for factor in ("shape", "x", "rotation", "background"):
            assert float(row[f"probe_linear:{factor}_mean"]) <= 1, factor
        assert 0 < float(row["chance:shape_mean"]) < 1
    # eigenvalue diagnostics exist only for the model with transition eigenvalues
    by_variant = {row["variant"]: row for row in rows}
    assert 0 <= float(by_variant["hierarchical"]["eig_separation_mean"]) <= 1
    assert math.isnan(float(by_variant["vae"]["eig_separation_mean"]))
    # the protocol refuses the 2-step judge, trained once for the dataset, and says why
    assert len(list((out / "judges").glob("judge-*.pt"))) == 1
    cell = json.loads((out / "cells/sprites/vae/seed0/result.json").read_text())
    assert "below the required accuracy" in cell["scores"]["static_dynamic"]["refused"]
    assert math.isnan(float(rows[0]["swap_static_accuracy_mean"]))
    markdown = (out / "table.md").read_text()
    assert "Static/dynamic protocol (judge's accuracy" in markdown
    assert "the protocol refused the judge in 2 of 2 cells" in markdown
    assert "Command: `tiny`" in markdown and "NON-STANDARD" in markdown
    assert "| hierarchical | 1/1 |" in markdown and "| vae | 1/1 |" in markdown
    assert "Paired differences, hierarchical minus each model" in markdown
    assert "| vae | 1 | " in markdown  # one seed: the mean difference, no interval
    assert "scikit-learn" in markdown and "torch" in markdown
    assert "on 30 held-out sequences, one random frame each" in markdown
    assert "| variant | shape (chance " in markdown  # the per-factor probe table, in order
    assert markdown.index("| variant | shape") < markdown.index("| rotation | background |")
    for name in ("eigenvalues_sprites.png", "metrics_sprites.png"):
        assert (out / "figures" / name).stat().st_size > 0
    result = json.loads((out / "cells/sprites/hierarchical/seed0/result.json").read_text())
    assert result["status"] == "ok" and result["budget"]["max_steps"] == TINY.max_steps
    assert result["train_config"]["max_steps"] == TINY.max_steps
    probes = result["scores"]["probes"]
    # the study's rotation bounces in +-30 degrees: a bounded, not a periodic factor
    assert probes["shape"]["type"] == "categorical" and probes["rotation"]["type"] == "continuous"
    assert (out / "cells/sprites/hierarchical/seed0/eigenvalues.npy").exists()
    assert not (out / "cells/sprites/vae/seed0/eigenvalues.npy").exists()


def test_rerun_skips_finished_cells_without_training(study, monkeypatch):
    out, _ = study
    spy = FitSpy(monkeypatch, error=AssertionError("a finished cell was retrained"))
    result_path = out / "cells/sprites/vae/seed0/result.json"
    before = result_path.stat().st_mtime_ns
    summary = compare.run_study(out, datasets=["sprites"], variants=VARIANTS, seeds=[0],
                                budget=TINY, command="tiny", progress=False)
    assert spy.calls == []
    assert summary["trained"] == [] and len(summary["skipped"]) == 2
    assert result_path.stat().st_mtime_ns == before
    assert [row["num_ok"] for row in read_rows(out)] == ["1", "1"]


def test_interrupted_cell_resumes_from_its_checkpoint(study, monkeypatch):
    out, _ = study
    cell = out / "cells/sprites/vae/seed0"
    (cell / "result.json").unlink()  # as if the study stopped after training this cell
    spy = FitSpy(monkeypatch)
    summary = compare.run_study(out, datasets=["sprites"], variants=VARIANTS, seeds=[0],
                                budget=TINY, command="tiny", progress=False)
    assert summary["trained"] == ["sprites/vae/seed0"]
    assert summary["skipped"] == ["sprites/hierarchical/seed0"]
    assert len(spy.calls) == 1 and spy.calls[0]["variant"] == "vae"
    assert spy.calls[0]["ckpt_path"] == cell / "run" / "checkpoints" / "last.ckpt"
    assert json.loads((cell / "result.json").read_text())["status"] == "ok"


def test_failed_cells_are_recorded_and_retried_on_request(tmp_path, monkeypatch):
    spy = FitSpy(monkeypatch, error=training.NonFiniteLossError("diverged at step 1"))
    kwargs = dict(datasets=["sprites"], variants=["vae"], seeds=[3], budget=TINY,
                  progress=False)
    summary = compare.run_study(tmp_path, **kwargs)
    assert summary["failed"] == ["sprites/vae/seed3"] and len(spy.calls) == 1
    result = json.loads((tmp_path / "cells/sprites/vae/seed3/result.json").read_text())
    assert result["status"] == "failed" and "diverged at step 1" in result["error"]
    assert "| vae | 0/1 | n/a |" in (tmp_path / "table.md").read_text()
    assert compare.run_study(tmp_path, **kwargs)["skipped"] == ["sprites/vae/seed3"]
    assert len(spy.calls) == 1
    compare.run_study(tmp_path, retry_failed=True, **kwargs)
    assert len(spy.calls) == 2 and spy.calls[1]["ckpt_path"] is None


def test_a_folder_holding_another_budget_is_refused(study):
    out, _ = study
    other = compare.StudyBudget(**{**TINY.__dict__, "max_steps": TINY.max_steps + 1})
    with pytest.raises(ValueError, match="another budget"):
        compare.run_study(out, datasets=["sprites"], variants=["vae"], seeds=[0], budget=other,
                          progress=False)


def test_a_folder_holding_other_model_options_is_refused(study):
    out, _ = study
    with pytest.raises(ValueError, match="other model options"):
        compare.run_study(out, datasets=["sprites"], variants=["vae"], seeds=[0], budget=TINY,
                          progress=False, model_overrides={"kl_scale": 0.5})


@pytest.mark.parametrize("jobs", [1, 2])
def test_model_overrides_reach_every_cell_and_the_record(tmp_path, jobs):
    """The cells train with the overrides, also in worker processes (which import the study
    module afresh, so a changed ``STUDY_MODEL_OPTIONS`` of this process would not reach
    them), and ``study.json`` records what the cells used."""
    overrides = {"kl_scale": 0.5, "learn_transition_scale": False}
    compare.run_study(tmp_path, datasets=["sprites"], variants=["hierarchical"], seeds=[0],
                      budget=TINY, progress=False, jobs=jobs, model_overrides=overrides)
    run = tmp_path / "cells/sprites/hierarchical/seed0/run"
    config = json.loads((run / "config.json").read_text())
    assert config["train"]["model_overrides"] == {"architecture": "conv", **overrides}
    assert config["model"]["kl_scale"] == 0.5 and config["model"]["learn_transition_scale"] is False
    recorded = json.loads((tmp_path / "study.json").read_text())["model_options"]["sprites"]
    assert recorded["kl_scale"] == 0.5 and recorded["learn_transition_scale"] is False


def test_bad_model_overrides_fail_before_anything_runs(tmp_path):
    with pytest.raises(TypeError, match="model options .* for hierarchical on sprites"):
        compare.run_study(tmp_path, datasets=["sprites"], variants=["hierarchical"],
                          seeds=[0], budget=TINY, progress=False,
                          model_overrides={"no_such_option": 1})
    with pytest.raises(TypeError, match="model_overrides must be a mapping"):
        compare.run_study(tmp_path, budget=TINY, progress=False, model_overrides=["kl_scale"])
    assert not (tmp_path / "study.json").exists()


def make_result(variant, seed, status="ok", **scores):
    return {"dataset": "sprites", "variant": variant, "seed": seed, "status": status,
            "scores": scores}


def test_aggregate_mean_and_sample_std_over_finished_seeds():
    mig = [0.1, 0.4, 0.25]
    results = [make_result("vae", seed, mig=value, overlap=None)
               for seed, value in enumerate(mig)]
    results += [make_result("slowvae", 0, mig=0.3), make_result("slowvae", 1, status="failed"),
                None]
    rows = report.aggregate(results, ["sprites"], ["vae", "slowvae", "hierarchical"])
    vae, slowvae, hierarchical = rows
    assert vae["num_ok"] == vae["num_seeds"] == 3
    assert vae["mig_mean"] == pytest.approx(statistics.mean(mig))
    assert vae["mig_std"] == pytest.approx(statistics.stdev(mig))
    assert math.isnan(vae["overlap_mean"]) and math.isnan(vae["mcc_mean"])
    assert (slowvae["num_ok"], slowvae["num_seeds"]) == (1, 2)
    assert slowvae["mig_mean"] == pytest.approx(0.3) and math.isnan(slowvae["mig_std"])
    assert hierarchical["num_seeds"] == 0 and math.isnan(hierarchical["mig_mean"])
    assert report._format(vae["mig_mean"], vae["mig_std"]) == "0.250 ± 0.150"
    assert report._format(slowvae["mig_mean"], slowvae["mig_std"]) == "0.300"
    assert report._format(math.nan, math.nan) == "n/a"


def test_protocol_table_shows_each_score_beside_its_chance_level():
    results = [make_result("vae", seed, swap_static_accuracy=value, swap_static_chance=0.25,
                           split_agreement=0.5, split_agreement_chance=0.5,
                           eig_bimodality=0.6 + 0.1 * seed)
               for seed, value in enumerate([0.3, 0.5])]
    rows = report.aggregate(results, ["sprites"], ["vae"])
    lines = report._protocol_table(rows)
    assert lines[3].startswith("| variant | swap: static | swap: dynamic |")
    assert lines[3].endswith("| eig BC |")
    assert lines[-1].startswith("| vae | 0.400 ± 0.141 (0.25) | n/a | n/a | n/a | "
                                "0.500 ± 0.000 (0.50) |")
    assert lines[-1].endswith("| 0.650 ± 0.071 |")  # no chance level in brackets


def test_scaled_budget():
    assert compare.StudyBudget.scaled(1.0) == compare.StudyBudget()
    big = compare.StudyBudget.scaled(100.0)
    assert big.max_steps == 100 * compare.StudyBudget().max_steps
    assert big.dci_predictor == "gradient_boosting"
    assert (big.intervention_batch_size, big.intervention_num_train, big.intervention_num_eval,
            big.variance_estimate) == (64, 10000, 5000, 10000)  # disentanglement_lib's sizes
    assert big.num_score_sequences == 15000  # its 10,000 + 5,000 points, one frame each
    tiny = compare.StudyBudget.scaled(0.001)
    assert tiny.batch_size <= tiny.num_train_sequences and tiny.num_test_sequences == 12
    assert tiny.num_score_sequences == 60
    assert compare.StudyBudget.scaled(8, "random_forest").dci_predictor == "random_forest"
    with pytest.raises(ValueError, match="budget"):
        compare.StudyBudget.scaled(0.0)


@pytest.mark.parametrize("kwargs, match", [
    ({"variants": ["nope"]}, "variants"),
    ({"datasets": []}, "datasets"),
    ({"seeds": [-1]}, "seeds"),
    ({"jobs": 0}, "jobs"),
])
def test_bad_selection_is_rejected(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        compare.run_study(tmp_path, budget=TINY, progress=False, **kwargs)


def test_bad_budget_is_rejected():
    with pytest.raises(ValueError, match="max_steps"):
        compare.StudyBudget(max_steps=0)
    with pytest.raises(ValueError, match="dci_predictor"):
        compare.StudyBudget(dci_predictor="svm")
    with pytest.raises(ValueError, match="num_score_sequences must be at least 3"):
        compare.StudyBudget(num_score_sequences=2)


@pytest.mark.slow
def test_command_line_runs_both_datasets_in_parallel_jobs(tmp_path):
    assert compare.main(["--out", str(tmp_path), "--budget", "0.02", "--variants", "slowvae",
                         "--seeds", "0", "--no-progress", "--jobs", "2",
                         "--judge-steps", "2"]) == 0
    rows = read_rows(tmp_path)
    assert [(row["dataset"], row["num_ok"]) for row in rows] == [("sprites", "1"),
                                                                ("moving_mnist", "1")]
    assert "--budget 0.02" in (tmp_path / "table.md").read_text()

"""The swap, prior-sample and object/background tests against known answers: the ground-truth
renderer with exact codes passes at the judge's accuracy, a static code of noise fails, a split
that misses the static factors scores chance; read by a tiny judge trained in seconds."""

import json

import numpy as np
import pytest
import torch
from oracles import RendererModel

from pyro_dynvae.assessment.background import object_background_test
from pyro_dynvae.assessment.judge import Judge, JudgeAccuracyError
from pyro_dynvae.assessment.protocol import (
    assess_static_dynamic,
    protocol_judge,
    static_dynamic_report,
)
from pyro_dynvae.assessment.split import LatentSplit
from pyro_dynvae.assessment.swap import class_scores, replace_latents
from pyro_dynvae.data import DynamicSprites
from pyro_dynvae.models import build_model

FACTORS = ["shape", "colour", "x", "y", "background"]
STATIC, DYNAMIC = ["shape", "colour"], ["x", "y", "background"]
NUM_PAIRS = 100
#: three standard deviations of an accuracy near 0.5 over NUM_PAIRS pairs
BAND = 0.15


def sprites(split="test", seed=0, num_sequences=200):
    """16x16 grey sprites, two shapes, static rotation, over a drifting brightness."""
    return DynamicSprites(num_sequences=num_sequences, num_frames=6, image_size=16, split=split,
                          seed=seed, shapes=["square", "triangle"], scale_range=(1.4, 1.8),
                          background="brightness", speeds={"rotation": 0.0})


@pytest.fixture(scope="module")
def judge():
    return Judge.train(sprites("train"), seed=0, steps=400, batch_size=32, factors=FACTORS,
                       num_held_out=500)


@pytest.fixture(scope="module")
def data():
    return sprites(), sprites(seed=7)


@pytest.fixture(scope="module")
def exact(judge, data):
    return assess_static_dynamic(RendererModel(*data), data[0], judge, num_pairs=NUM_PAIRS)


def accuracies(section):
    return {name: scores["accuracy"] for name, scores in section["factors"].items()}


# ----- the swap ---------------------------------------------------------------------------------
def test_the_exact_renderer_passes_the_swap_at_judge_accuracy(exact):
    summary = exact["summary"]
    assert exact["split"]["rule"] == "structure"
    assert exact["split"]["static_latents"] == [0, 1, 2, 5]  # shape, scale, colour, rotation
    real, swap = accuracies(exact["judge_real"]), accuracies(exact["swap"])
    for name in FACTORS:
        assert swap[name] >= real[name] - 0.06, name
    assert summary["swap_static_accuracy"] >= summary["judge_static_accuracy"] - 0.05
    assert summary["swap_dynamic_accuracy"] >= summary["judge_dynamic_accuracy"] - 0.05
    assert summary["swap_static_accuracy"] > summary["swap_static_chance"] + 0.5
    assert summary["swap_dynamic_accuracy"] > summary["swap_dynamic_chance"] + 0.5
    # the judge still reading a's shape would agree with b's only by chance
    assert exact["swap"]["factors"]["shape"]["source_accuracy"] < 0.5 + BAND
    assert exact["swap"]["factors"]["shape"]["wanted"] == "donor"
    assert exact["swap"]["factors"]["x"]["wanted"] == "source"
    json.dumps(exact, allow_nan=False)


def test_a_static_code_of_noise_fails_the_swap(judge, data):
    result = assess_static_dynamic(RendererModel(*data, noise_static=True), data[0], judge,
                                   num_pairs=NUM_PAIRS)
    summary, swap = result["summary"], result["swap"]["factors"]
    assert abs(summary["swap_static_accuracy"] - summary["swap_static_chance"]) < BAND
    assert abs(swap["shape"]["accuracy"] - swap["shape"]["chance"]) < BAND
    # its dynamic code is exact: the failure is the static part's alone
    assert summary["swap_dynamic_accuracy"] >= summary["judge_dynamic_accuracy"] - 0.05
    assert abs(summary["reconstruction_static_accuracy"]
               - summary["reconstruction_static_chance"]) < BAND


def test_a_split_that_misses_the_static_factors_scores_chance(judge, data):
    """The exact codes with a split shuffled among the latents that carry no read static
    factor: the judge reads a's shape and colour (b's only by chance), and b's values of the
    dynamic factors the split moved (a's only by chance)."""
    dataset = data[0]
    read_static = [dataset.factor_index(name) for name in STATIC]
    others = [i for i in range(len(dataset.factors)) if i not in read_static]
    static = np.random.default_rng(0).choice(others, size=3, replace=False).tolist()
    model = RendererModel(*data, static_latents=static)
    result = assess_static_dynamic(model, dataset, judge, num_pairs=NUM_PAIRS)
    summary, swap = result["summary"], result["swap"]["factors"]
    assert abs(summary["swap_static_accuracy"] - summary["swap_static_chance"]) < BAND
    moved = [name for name in DYNAMIC if dataset.factor_index(name) in static]
    assert moved
    for name in moved:
        assert abs(swap[name]["accuracy"] - swap[name]["chance"]) < BAND, name
    agreement = result["split_agreement"]
    assert agreement["agreement"] < 1 and agreement["kappa"] < 0.5


# ----- the prior-sample variant (C-DSVAE) -------------------------------------------------------
def test_prior_samples_keep_the_kept_factors_and_change_the_others(exact):
    summary = exact["summary"]
    static_kept, dynamic_kept = exact["static_kept"], exact["dynamic_kept"]
    assert summary["prior_static_kept_accuracy"] >= summary["judge_static_accuracy"] - 0.06
    assert summary["prior_dynamic_kept_accuracy"] >= summary["judge_dynamic_accuracy"] - 0.06
    for section, resampled in ((static_kept, DYNAMIC), (dynamic_kept, STATIC)):
        assert section["resampled"]["factors"] == resampled
        for name in resampled:
            scores = section["factors"][name]
            assert abs(scores["accuracy"] - scores["chance"]) < BAND, name
    # fresh shapes from the prior are as confident and diverse as the real ones
    real, fresh = exact["class_scores_real"]["shape"], dynamic_kept["class_scores"]["shape"]
    assert fresh["inception_score"] == pytest.approx(real["inception_score"], abs=0.15)
    assert fresh["inception_score"] > 1.8 and fresh["conditional_entropy"] < 0.1


def test_class_scores_of_known_distributions():
    confident = torch.eye(4).repeat(25, 1)
    scores = class_scores(confident)
    assert scores["inception_score"] == pytest.approx(4, rel=1e-6)
    assert scores["conditional_entropy"] == pytest.approx(0, abs=1e-6)
    assert scores["marginal_entropy"] == pytest.approx(np.log(4))
    assert class_scores(torch.full((10, 4), 0.25))["inception_score"] == pytest.approx(1)
    assert class_scores(torch.eye(4)[[2] * 10])["inception_score"] == pytest.approx(1, abs=1e-6)


def test_replace_latents_by_frame_or_by_the_donors_mean():
    codes, donor = torch.zeros(2, 3, 4), torch.arange(24.0).reshape(2, 3, 4)
    by_frame = replace_latents(codes, donor, [1, 3], sequence_mean=False)
    assert torch.equal(by_frame[..., [1, 3]], donor[..., [1, 3]])
    assert torch.equal(by_frame[..., [0, 2]], codes[..., [0, 2]])
    mean = replace_latents(codes, donor, [1], sequence_mean=True)
    assert torch.equal(mean[..., 1], donor[..., 1].mean(-1, keepdim=True).expand(2, 3))
    assert torch.equal(replace_latents(codes, donor, [], sequence_mean=True), codes)


# ----- object vs background ---------------------------------------------------------------------
def test_background_follows_the_donor_and_the_object_stays(exact):
    background = exact["object_background"]
    assert exact["split"]["slow_latents"] == [6]  # the background, slowest of x, y, background
    summary = exact["summary"]
    assert summary["background_follows_accuracy"] > 0.9 > summary["background_follows_chance"]
    assert summary["object_kept_accuracy"] >= summary["judge_static_accuracy"] - 0.1
    assert background["factors"]["background"]["wanted"] == "donor"
    assert 0 <= background["overlap"]["overlap"] < 0.2


def test_exchanging_the_fast_latents_moves_the_object_not_the_background(judge, data):
    dataset, _ = data
    frames, factors = dataset.get_batch(range(2 * NUM_PAIRS))
    codes = RendererModel(*data).encode(frames)["z_mean"]
    wrong = LatentSplit((0, 1, 2, 5), (3, 4, 6), (3, 4), "structure", (0.0,) * 7, None)
    a, b = slice(0, NUM_PAIRS), slice(NUM_PAIRS, None)
    result, swapped = object_background_test(RendererModel(*data), judge, wrong, codes[a],
                                             codes[b], factors[a], factors[b])
    scores = result["factors"]
    assert abs(scores["background"]["accuracy"] - scores["background"]["chance"]) < BAND
    assert abs(scores["x"]["accuracy"] - scores["x"]["chance"]) < BAND
    assert swapped.shape == frames[a].shape


# ----- refusals, a real model, the figure -------------------------------------------------------
def test_a_judge_below_the_required_accuracy_is_refused(judge, data, tmp_path):
    weak = Judge(judge.dataset, factors=FACTORS)
    weak.report = {"factors": {**judge.report["factors"],
                               "shape": {"kind": "categorical", "accuracy": 0.8, "chance": 0.5}}}
    with pytest.raises(JudgeAccuracyError, match="shape accuracy 0.800 < 0.95"):
        assess_static_dynamic(RendererModel(*data), data[0], weak)
    assert static_dynamic_report(RendererModel(*data), data[0], weak)["judge"]["shape"][
        "accuracy"] == 0.8
    untrained = protocol_judge(judge.dataset, data[0], cache_dir=tmp_path, steps=1,
                               batch_size=4, num_held_out=16, factors=FACTORS)
    report = static_dynamic_report(RendererModel(*data), data[0], untrained)
    assert "below the required accuracy" in report["refused"] and "shape" in report["judge"]
    assert list(tmp_path.glob("judge-*.pt"))


def test_a_dynamics_vae_runs_through_the_protocol(judge, data, tmp_path):
    torch.manual_seed(0)
    model = build_model("hierarchical", image_size=16, architecture="mlp", latent_dim=4)
    state = torch.get_rng_state()
    result = assess_static_dynamic(model, data[0], judge, num_pairs=8, seed=3,
                                   figure_path=tmp_path / "swaps.png")
    assert torch.equal(torch.get_rng_state(), state)  # prior samples on a forked generator
    assert result["split"]["rule"] == "prior_share" and result["protocol"]["num_pairs"] == 8
    for key, value in result["summary"].items():
        if key.endswith(("_accuracy", "_chance")):
            assert 0 <= value <= 1, key
    assert (tmp_path / "swaps.png").stat().st_size > 0 and result["figure"].endswith("swaps.png")
    json.dumps(result, allow_nan=False)
    again = assess_static_dynamic(model, data[0], judge, num_pairs=8, seed=3)
    assert again["summary"] == result["summary"]


def test_bad_arguments(judge, data):
    model = RendererModel(*data)
    with pytest.raises(TypeError, match="judge must be a Judge"):
        assess_static_dynamic(model, data[0], object())
    with pytest.raises(TypeError, match="dataset must be a FactorDataset"):
        assess_static_dynamic(model, [1, 2], judge)
    with pytest.raises(ValueError, match="judge reads frames"):
        assess_static_dynamic(model, DynamicSprites(4, image_size=32), judge)
    with pytest.raises(ValueError, match="num_pairs must be a positive int"):
        assess_static_dynamic(model, data[0], judge, num_pairs=0)
    with pytest.raises(ValueError, match="tolerance must be in"):
        assess_static_dynamic(model, data[0], judge, tolerance=1)
    with pytest.raises(ValueError, match="at least 2 sequences"):
        assess_static_dynamic(model, sprites(num_sequences=1), judge)


def test_finish_run_writes_the_protocol_and_its_figure(judge, data, tmp_path):
    from pyro_dynvae.config import TrainConfig
    from pyro_dynvae.evaluation import finish_run

    torch.manual_seed(0)
    model = build_model("hierarchical", image_size=16, architecture="mlp", latent_dim=4)
    config = TrainConfig(dataset="sprites", image_size=16, num_frames=6, latent_dim=4,
                         batch_size=8, forecast_horizon=1)
    finish_run(model, data[0], config, tmp_path, judge=judge)
    saved = json.loads((tmp_path / "metrics.json").read_text())
    summary = saved["static_dynamic"]["summary"]
    assert summary["num_static_latents"] + summary["num_dynamic_latents"] == 4
    assert saved["static_dynamic"]["protocol"]["num_pairs"] == NUM_PAIRS  # 200 sequences
    assert "figures/swaps.png" in saved["figures"]
    assert (tmp_path / "figures" / "swaps.png").stat().st_size > 0
    finish_run(model, data[0], config, tmp_path)  # no judge: no protocol
    assert "static_dynamic" not in json.loads((tmp_path / "metrics.json").read_text())
    assert not (tmp_path / "figures" / "swaps.png").exists()  # not left from the last run

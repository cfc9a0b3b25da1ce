"""The judge: known-answer scores, a tiny judge trained in seconds, permutation controls, caching,
and (slow) the study datasets' judges at the protocol's accuracy."""

import functools
import math

import numpy as np
import pytest
import torch

from pyro_dynvae.assessment.ceiling import format_report, supervised_ceiling
from pyro_dynvae.assessment.datasets import STUDY_DATASETS
from pyro_dynvae.assessment.judge import (
    FactorReader,
    Judge,
    JudgeAccuracyError,
    factor_readers,
    load_or_train_judge,
)
from pyro_dynvae.data import DynamicSprites
from pyro_dynvae.models import DynamicsVAEConfig
from pyro_dynvae.nets import ConvEncoder

TINY_FACTORS = ["shape", "x", "y"]


def tiny_sprites(**options):
    """16x16 sprites, two shapes, large enough to tell apart in a few hundred frames."""
    kwargs = dict(num_sequences=200, num_frames=4, image_size=16, shapes=["square", "triangle"],
                  scale_range=(1.4, 1.8), seed=0)
    kwargs.update(options)
    return DynamicSprites(**kwargs)


@pytest.fixture(scope="module")
def tiny_judge():
    return Judge.train(tiny_sprites(), seed=0, steps=250, batch_size=32, factors=TINY_FACTORS,
                       num_held_out=500)


# ----- scores against known answers ---------------------------------------------------------
def test_metrics_of_exact_and_constant_readers():
    reader = FactorReader("x", 0, "continuous", 2.0, 12.0)
    true = torch.from_numpy(np.random.default_rng(0).uniform(2, 12, 4000)).float()
    exact = reader.metrics(true, true, None, 0.05)
    assert exact["r2"] == 1 and exact["mae"] == 0 and exact["accuracy"] == 1
    constant = reader.metrics(torch.full_like(true, float(true.median())), true, None, 0.05)
    assert constant["accuracy"] == constant["chance"] == pytest.approx(0.1, abs=0.02)
    assert constant["mae"] == pytest.approx(constant["chance_mae"]) == pytest.approx(2.5, abs=0.1)
    assert -0.01 < constant["r2"] <= 0
    classes = FactorReader("shape", 0, "categorical", 0, 2, 3)
    labels = torch.tensor([0, 0, 0, 1, 2, 2.0])
    scores = classes.metrics(torch.tensor([0, 1, 0, 1, 2, 0.0]), labels, None, 0.05)
    assert scores["accuracy"] == pytest.approx(4 / 6) and scores["chance"] == pytest.approx(0.5)


def test_periodic_errors_wrap_modulo_the_identifiable_period():
    reader = FactorReader("rotation", 5, "periodic", 0.0, 2 * math.pi)
    true = torch.from_numpy(np.random.default_rng(1).uniform(0, 2 * math.pi, 1000)).float()
    period = torch.full_like(true, math.pi / 2)  # squares
    shifted = (true + math.pi / 2 * torch.randint(0, 4, true.shape)) % (2 * math.pi)
    same = reader.metrics(shifted, true, period, 0.05)
    assert same["mae"] < 1e-5 and same["accuracy"] == 1 and same["r2"] > 1 - 1e-9
    off = reader.metrics((true + math.pi / 4) % (2 * math.pi), true, period, 0.05)
    assert off["mae"] == pytest.approx(math.pi / 4, rel=1e-4) and off["accuracy"] == 0
    assert off["chance_mae"] == pytest.approx(math.pi / 8, rel=0.05)  # uniform on a quarter turn
    assert off["chance"] == pytest.approx(0.1, abs=0.03)


@pytest.mark.parametrize(
    "reader, values, period",
    [
        (FactorReader("x", 0, "continuous", 2.0, 12.0), [2.0, 5.5, 12.0], None),
        (FactorReader("r", 0, "periodic", -1.0, 3.0), [-1.0, 0.5, 2.9], 4.0),
        (FactorReader("r", 0, "periodic", 0.0, 6.0), [0.0, 1.0, 1.4], 1.5),
        (FactorReader("s", 0, "categorical", 0, 2, 3), [0.0, 2.0, 1.0], None),
    ],
)
def test_decoding_inverts_the_training_target(reader, values, period):
    """The outputs at which the loss is least decode to the true values."""
    values = torch.tensor(values)
    if reader.kind == "categorical":
        outputs = 20 * torch.nn.functional.one_hot(values.long(), 3).float()
    elif reader.kind == "continuous":
        outputs = (2 * (values - reader.low) / (reader.high - reader.low) - 1)[:, None]
    else:
        phase = 2 * math.pi * (values - reader.low) / period
        outputs = 3 * torch.stack([phase.cos(), phase.sin()], -1)  # any length reads the same
    torch.testing.assert_close(reader.decode(outputs, period), values, atol=1e-5, rtol=0)
    if reader.kind != "periodic":
        assert reader.loss(outputs, values, period).max() < 1e-6


def test_readers_follow_factor_types():
    kinds = {r.name: r.kind for r in factor_readers(DynamicSprites(2, channels=3))}
    assert kinds == {"shape": "categorical", "scale": "continuous", "colour": "periodic",
                     "x": "continuous", "y": "continuous", "rotation": "periodic"}
    bounded = DynamicSprites(2, rotation_range=(-0.5, 0.5))
    assert factor_readers(bounded, ["rotation"])[0].kind == "continuous"


# ----- a tiny judge, trained in seconds -----------------------------------------------------
def test_tiny_judge_reads_fresh_frames_at_its_reported_accuracy(tiny_judge):
    report = tiny_judge.report["factors"]
    assert report["shape"]["accuracy"] >= 0.95 and report["shape"]["chance"] < 0.6
    assert report["x"]["r2"] > 0.9 and report["y"]["r2"] > 0.9
    dataset = tiny_sprites()
    rows = dataset.sample_factors(500, rng=123)
    fresh = tiny_judge.score(dataset.render(rows), rows)
    assert abs(fresh["shape"]["accuracy"] - report["shape"]["accuracy"]) < 0.04
    assert abs(fresh["x"]["r2"] - report["x"]["r2"]) < 0.05
    tiny_judge.check(min_accuracy=0.95, min_r2=0.9)


def test_permuting_frames_across_sequences_gives_chance(tiny_judge):
    dataset = tiny_sprites(num_sequences=300, split="test")
    frames, factors = dataset.get_batch(range(300))
    kept = tiny_judge.score(frames, factors, sequences=True)
    assert kept["shape"]["accuracy"] >= 0.97 and kept["x"]["r2"] > 0.9
    generator = torch.Generator().manual_seed(0)
    shuffled = torch.stack(
        [frames[torch.randperm(300, generator=generator), t] for t in range(frames.shape[1])], 1
    )
    scores = tiny_judge.score(shuffled, factors, sequences=True)
    chance = scores["shape"]["chance"]
    assert abs(scores["shape"]["accuracy"] - chance) < 0.1  # 3 sd of 300 sequences
    assert scores["x"]["r2"] < 0  # a reading from another frame is worse than the median
    assert abs(scores["x"]["accuracy"] - scores["x"]["chance"]) < 0.05


def test_sequence_reading_holds_static_factors_and_class_probabilities(tiny_judge):
    frames, _ = tiny_sprites().get_batch(range(6))
    read = tiny_judge.predict_sequences(frames)
    assert read["shape"].shape == (6, 4) and (read["shape"] == read["shape"][:, :1]).all()
    assert not (read["x"] == read["x"][:, :1]).all()
    per_frame = tiny_judge.predict(frames)
    assert set(per_frame) == set(TINY_FACTORS) and per_frame["x"].shape == (6, 4)
    probabilities = tiny_judge.class_probabilities(frames)
    assert set(probabilities) == {"shape"} and probabilities["shape"].shape == (6, 4, 2)
    torch.testing.assert_close(probabilities["shape"].sum(-1), torch.ones(6, 4))
    torch.testing.assert_close(probabilities["shape"].argmax(-1).float(), per_frame["shape"])


def test_symmetric_rotation_is_read_modulo_the_shape_symmetry():
    """A judge that reads shape and rotation: a square's reading lies in a quarter turn."""
    dataset = tiny_sprites(speeds={"rotation": 0.05})
    judge = Judge(dataset, factors=["shape", "rotation"])
    rows = dataset.sample_factors(64, rng=0)
    read = judge.predict(dataset.render(rows))
    period = torch.where(read["shape"] == 0, math.pi / 2, 2 * math.pi / 3)
    assert (read["rotation"] >= 0).all() and (read["rotation"] < period + 1e-5).all()


def test_training_is_deterministic_and_leaves_the_global_generator():
    dataset = tiny_sprites()
    state = torch.get_rng_state()
    first = Judge.train(dataset, seed=3, steps=3, batch_size=8, num_held_out=16)
    assert torch.equal(torch.get_rng_state(), state)
    second = Judge.train(dataset, seed=3, steps=3, batch_size=8, num_held_out=16)
    other = Judge.train(dataset, seed=4, steps=3, batch_size=8, num_held_out=16)
    for name, tensor in first.network.state_dict().items():
        assert torch.equal(tensor, second.network.state_dict()[name])
    assert not torch.equal(first.network[1].weight, other.network[1].weight)
    assert first.report["factors"] == second.report["factors"]


def test_check_refuses_a_judge_below_the_required_accuracy():
    judge = Judge(tiny_sprites(), factors=TINY_FACTORS)
    with pytest.raises(JudgeAccuracyError, match="no held-out report"):
        judge.check()
    judge.report = {"factors": {
        "shape": {"kind": "categorical", "accuracy": 0.9, "chance": 0.5},
        "x": {"kind": "continuous", "r2": 0.95, "accuracy": 0.7, "chance": 0.1},
        "y": {"kind": "continuous", "r2": 0.5, "accuracy": 0.2, "chance": 0.1},
    }}
    with pytest.raises(JudgeAccuracyError, match=r"shape accuracy 0.900 < 0.95 \(chance 0.500\); "
                                                 r"y R\^2 0.500 < 0.9") as error:
        judge.check(min_accuracy=0.95, min_r2=0.9)
    assert isinstance(error.value, ValueError) and " x " not in str(error.value)
    judge.check(min_accuracy=0.9, min_r2=0.5)


# ----- caching ------------------------------------------------------------------------------
def test_cache_trains_once_per_configuration(tmp_path, monkeypatch):
    dataset = tiny_sprites()
    options = dict(steps=3, batch_size=8, num_held_out=16, factors=TINY_FACTORS)
    first = load_or_train_judge(dataset, tmp_path, seed=0, **options)
    assert len(list(tmp_path.glob("judge-*.pt"))) == 1
    assert len(list(tmp_path.glob("judge-*.json"))) == 1

    @functools.wraps(Judge.train)  # the cache key reads the defaults from the signature
    def refuse(*args, **kwargs):
        raise AssertionError("a cached judge was trained again")

    with monkeypatch.context() as patch:
        patch.setattr(Judge, "train", refuse)
        again = load_or_train_judge(tiny_sprites(num_sequences=5), tmp_path, seed=0, **options)
    frames = dataset.render(dataset.sample_factors(8, rng=1))
    for name, values in first.predict(frames).items():
        torch.testing.assert_close(again.predict(frames)[name], values)
    assert again.report == first.report
    load_or_train_judge(dataset, tmp_path, seed=1, **options)
    load_or_train_judge(tiny_sprites(scale_range=(1.5, 1.8)), tmp_path, seed=0, **options)
    load_or_train_judge(dataset, tmp_path, seed=0, **{**options, "steps": 4})
    assert len(list(tmp_path.glob("judge-*.pt"))) == 4


def test_load_refuses_another_version(tmp_path):
    dataset = tiny_sprites()
    judge = Judge.train(dataset, steps=1, batch_size=4, num_held_out=8, factors=TINY_FACTORS)
    judge.save(tmp_path / "judge.pt")
    state = torch.load(tmp_path / "judge.pt", weights_only=True)
    state["version"] = -1
    torch.save(state, tmp_path / "old.pt")
    with pytest.raises(ValueError, match="judge version -1"):
        Judge.load(tmp_path / "old.pt", dataset)


# ----- the ceiling's network and the study specs ----------------------------------------------
def test_ceiling_trains_the_models_encoder_by_the_same_trainer():
    report = supervised_ceiling(tiny_sprites(), steps=2, batch_size=4, num_held_out=16,
                                factors=TINY_FACTORS)
    assert report["options"]["network"] == "encoder"
    judge = Judge(tiny_sprites(), network="encoder")
    encoder, config = judge.network[0], DynamicsVAEConfig()
    assert isinstance(encoder, ConvEncoder) and encoder.feature_dim == config.feature_dim
    assert encoder.convs[0].out_channels == config.conv_channels[0]
    table = format_report(report)
    assert "| shape | categorical |" in table and "encoder network, 2 steps" in table


@pytest.mark.parametrize("name", list(STUDY_DATASETS))
def test_named_datasets_train_on_train_and_hold_out_test(name):
    judge = Judge.train(name, steps=1, batch_size=4, num_held_out=8)
    assert judge.dataset.split == "train" and judge.frame_shape[-1] == STUDY_DATASETS[name][
        "image_size"]
    assert set(judge.report["factors"]) == set(judge.dataset.metric_factors)


@pytest.mark.slow
@pytest.mark.parametrize("name", list(STUDY_DATASETS))
def test_study_judges_pass_the_protocol(name, tmp_path):
    judge = load_or_train_judge(name, tmp_path, seed=0)
    judge.check(min_accuracy=0.95, min_r2=0.9)


# ----- bad input ----------------------------------------------------------------------------
def test_bad_arguments(tiny_judge):
    dataset = tiny_sprites()
    with pytest.raises(TypeError, match="dataset must be a FactorDataset"):
        Judge([1, 2])
    with pytest.raises(TypeError, match="dataset must be a FactorDataset or a dataset name"):
        Judge.train(3)
    with pytest.raises(ValueError, match="network must be one of"):
        Judge(dataset, network="resnet")
    with pytest.raises(ValueError, match="unknown factor 'hue'"):
        Judge(dataset, factors=["hue"])
    with pytest.raises(ValueError, match="distinct names"):
        Judge(dataset, factors="shape")
    with pytest.raises(ValueError, match="spec is only used with a dataset name"):
        Judge.train(dataset, spec={"image_size": 32, "options": {}})
    with pytest.raises(ValueError, match="dataset must be one of"):
        Judge.train("cifar")
    with pytest.raises(ValueError, match="steps must be >= 1"):
        Judge.train(dataset, steps=0)
    with pytest.raises(ValueError, match=r"frames must have .*\(1, 16, 16\)"):
        tiny_judge.predict(torch.zeros(2, 1, 32, 32))
    with pytest.raises(ValueError, match=r"\(\.\.\., T, C, H, W\)"):
        tiny_judge.predict_sequences(torch.zeros(1, 16, 16))
    frames = torch.zeros(3, 1, 16, 16)
    with pytest.raises(ValueError, match="one row per frame"):
        tiny_judge.score(frames, torch.zeros(2, 6))
    with pytest.raises(ValueError, match="tolerance"):
        tiny_judge.score(frames, torch.zeros(3, 6), tolerance=0)

"""Unbiased scoring of codes: the per-sequence-constant control, exact and rotated ground truth,
and the sampling that keeps every sequence on one side of a split.

Tolerances of the control (noise plus one latent constant within each sequence, 600 sequences,
one frame each): MIG, DCI-D, DCI-C, DCI-I and SAP below 0.05; the probes within 0.1 of 0
(above chance); MCC below 0.12 (the largest of 6 x 5 noise correlations on 600 points);
explicitness within 0.05 of its chance level 0.5; modularity, whose noise level is not 0, within
0.05 of the modularity of pure noise.
"""

import math

import numpy as np
import pytest

from pyro_dynvae import metrics
from pyro_dynvae.assessment.sampling import sample_sequences
from pyro_dynvae.assessment.scoring import (
    SCORE_KEYS,
    discretize_factors,
    score_codes,
    score_factor_space,
)
from pyro_dynvae.data import DynamicSprites
from pyro_dynvae.metrics.modularity import modularity_from_mutual_info
from pyro_dynvae.metrics.utils import discrete_mutual_info, histogram_discretize

NAMES = ["shape", "scale", "hue", "x", "rotation"]
TYPES = ["categorical", "continuous", ("periodic", 1.0), "continuous", ("periodic", 2 * math.pi)]


def make_factors(num_sequences, num_frames=6, seed=0):
    """Sprite-like factors (S, T, 5): static shape, scale and hue; moving x and rotation."""
    rng = np.random.default_rng(seed)
    static = np.stack([rng.integers(0, 4, num_sequences), rng.uniform(0.5, 1, num_sequences),
                       rng.uniform(0, 1, num_sequences)], axis=1)
    steps = np.arange(num_frames)
    x = rng.uniform(0, 10, (num_sequences, 1)) + rng.uniform(-1, 1, (num_sequences, 1)) * steps
    rotation = np.mod(rng.uniform(0, 2 * math.pi, (num_sequences, 1))
                      + rng.uniform(-0.3, 0.3, (num_sequences, 1)) * steps, 2 * math.pi)
    return np.concatenate([np.repeat(static[:, None], num_frames, axis=1),
                           np.stack([x, rotation], axis=-1)], axis=-1)


def noise_with_constant_latent(factors, num_codes=6, seed=1):
    rng = np.random.default_rng(seed)
    codes = rng.normal(size=(*factors.shape[:2], num_codes))
    codes[:, :, 0] = rng.normal(size=(factors.shape[0], 1))  # constant within each sequence
    return codes


def smooth_code(factors):
    """An exact code with every factor a smooth function: angles as (cos, sin)."""
    columns = []
    for j, kind in enumerate(TYPES):
        if isinstance(kind, tuple):
            phase = 2 * math.pi * factors[..., j] / kind[1]
            columns += [np.cos(phase), np.sin(phase)]
        else:
            columns.append((factors[..., j] - factors[..., j].mean()) / factors[..., j].std())
    return np.stack(columns, axis=-1)


@pytest.fixture(scope="module")
def factors():
    return make_factors(600)


@pytest.fixture(scope="module")
def control(factors):
    return score_codes(noise_with_constant_latent(factors), factors, TYPES, NAMES)


def test_noise_with_a_per_sequence_constant_scores_like_noise(factors, control):
    for key in ("mig", "dci_disentanglement", "dci_completeness", "dci_informativeness",
                "sap"):
        assert 0 <= control[key] < 0.05, key
    assert abs(control["probe_linear"]) < 0.1 and abs(control["probe_nonlinear"]) < 0.1
    assert control["mcc"] < 0.12
    assert control["explicitness"] == pytest.approx(0.5, abs=0.05)
    # modularity's noise level is not 0: compare with pure noise on the same observations
    sample = sample_sequences(np.random.default_rng(2).normal(size=(600, 6, 6)), factors)
    codes, values = sample.one_frame("fit")
    labels = discretize_factors(values, [(t, None) if isinstance(t, str) else t
                                         for t in TYPES])
    noise_level = modularity_from_mutual_info(
        discrete_mutual_info(histogram_discretize(codes), labels))
    assert control["modularity"] == pytest.approx(noise_level, abs=0.05)
    assert control["factors"] == NAMES and control["constant_factors"] == []
    assert control["sample"] == {"num_fit_sequences": 400, "num_test_sequences": 200,
                                 "frames_per_sequence": 1}
    assert set(SCORE_KEYS) <= set(control) and control["versions"] == metrics.library_versions()


def test_frames_as_independent_points_reward_the_constant_latent():
    """The bias the control guards against: 96 sequences x 10 frames scored as 960 points."""
    factors = make_factors(96, num_frames=10)
    codes = noise_with_constant_latent(factors)
    labels = discretize_factors(factors.reshape(-1, 5), [
        ("categorical", None), ("continuous", None), ("periodic", 1.0), ("continuous", None),
        ("periodic", 2 * math.pi)])
    assert metrics.mig(codes.reshape(-1, 6), labels)["mig"] > 0.1
    assert score_codes(codes, factors, TYPES)["mig"] < 0.05


def test_exact_code_scores_high(factors):
    exact = factors.copy()  # every factor in a code of its own
    scores = score_codes(exact, factors, TYPES, NAMES)
    assert scores["mig"] > 0.8 and scores["dci_disentanglement"] > 0.9
    assert scores["dci_completeness"] > 0.9 and scores["dci_informativeness"] > 0.95
    assert scores["modularity"] > 0.9 and scores["explicitness"] > 0.85
    # a scalar code of an angle follows a sawtooth: circular-linear correlation sqrt(6) / pi
    assert scores["mcc"] == pytest.approx((3 + 2 * math.sqrt(6) / math.pi) / 5, abs=0.02)
    assert scores["probe_nonlinear"] > 0.95


def test_rotated_exact_code_is_informative_but_entangled(factors):
    code = smooth_code(factors)
    rotation, _ = np.linalg.qr(np.random.default_rng(3).normal(size=(7, 7)))
    scores = score_codes(code @ rotation, factors, TYPES, NAMES)
    assert scores["dci_informativeness"] > 0.8
    assert scores["probe_linear"] > 0.98
    assert scores["dci_disentanglement"] < 0.5
    # disentanglement_lib's DCI-I (accuracy of 20-bin classes) calls the same code uninformative
    flat = (code @ rotation)[:, 0]
    labels = discretize_factors(factors[:, 0], [(t, None) if isinstance(t, str) else t
                                                for t in TYPES])
    library = metrics.dci(flat[:400], labels[:400], test_codes=flat[400:],
                          test_factors=labels[400:], predictor="random_forest")
    assert library["informativeness_test"] < 0.5


def test_constant_factors_are_left_out_and_tiny_samples_give_nan(factors):
    constant = factors.copy()
    constant[..., 1] = 0.7
    scores = score_codes(constant[:60], constant[:60], TYPES, NAMES,
                         dci_predictor="random_forest")
    assert scores["constant_factors"] == ["scale"] and "scale" not in scores["probes"]
    tiny = score_codes(factors[:2], factors[:2], TYPES, NAMES)
    assert tiny["sample"]["num_fit_sequences"] == 1
    assert math.isnan(tiny["dci_informativeness"]) and math.isnan(tiny["explicitness"])
    assert 0 <= tiny["mcc"] <= 1


def test_sampling_keeps_each_sequence_on_one_side():
    num_sequences, num_frames = 30, 8
    index = np.broadcast_to(np.arange(num_sequences)[:, None, None], (num_sequences, num_frames, 1))
    frame = np.broadcast_to(np.arange(num_frames)[None, :, None], (num_sequences, num_frames, 1))
    sample = sample_sequences(np.concatenate([index, frame], -1).astype(float),
                              index.astype(float), frames_per_sequence=3, random_state=4)
    fit, test = set(sample.fit_codes[..., 0].ravel()), set(sample.test_codes[..., 0].ravel())
    assert not fit & test and len(fit | test) == num_sequences and len(test) == 10
    for part in (sample.fit_codes, sample.test_codes):
        assert (part[..., 0] == part[:, :1, 0]).all()  # one sequence per row
        assert all(len(set(row)) == 3 for row in part[..., 1])  # distinct frames
    assert sample.frames("test")[0].shape == (30, 2)
    assert sample.one_frame("all")[0].shape == (30, 2)
    # the draw is a function of the seed
    again = sample_sequences(np.concatenate([index, frame], -1).astype(float),
                             index.astype(float), frames_per_sequence=3, random_state=4)
    np.testing.assert_array_equal(again.test_codes, sample.test_codes)


@pytest.mark.parametrize("kwargs, match", [
    ({"codes": np.zeros((5, 4))}, r"codes must have shape \(S, T, n\)"),
    ({"factors": np.zeros((5, 3, 5))}, "same sequences and frames"),
    ({"codes": np.zeros((1, 4, 2)), "factors": np.zeros((1, 4, 5))}, "at least 2 sequences"),
    ({"frames_per_sequence": 5}, "at most the 4 frames"),
    ({"test_fraction": 1.0}, "test_fraction"),
    ({"factor_names": ["a", "b"]}, "factor_names must be 5 distinct names"),
    ({"factor_types": ["continuous"] * 4}, "one type for each of the 5"),
    ({"dci_predictor": "svm"}, "dci_predictor must be one of"),
    ({"codes": np.full((5, 4, 2), np.nan)}, "codes must be finite"),
])
def test_bad_arguments_are_rejected(kwargs, match):
    arguments = {"codes": np.random.default_rng(0).normal(size=(5, 4, 2)),
                 "factors": make_factors(5, num_frames=4), "factor_types": TYPES,
                 "factor_names": NAMES, **kwargs}
    codes, factors, types = (arguments.pop(key) for key in ("codes", "factors", "factor_types"))
    with pytest.raises(ValueError, match=match):
        score_codes(codes, factors, types, **arguments)


def test_sprite_rotation_is_scored_modulo_each_shapes_symmetry():
    """A code that holds what a frame shows, rotation modulo 2 pi / k, reads rotation exactly;
    one that holds the raw angle, which a frame of a square cannot show, does not."""
    dataset = DynamicSprites(num_sequences=300, num_frames=3, image_size=32)
    space = dataset.factor_subset()
    factors = dataset.sequence_factors(range(300))
    folded = dataset.identifiable_factors(factors)[..., 5].double().numpy()
    raw = factors[..., 5].double().numpy()
    others = factors[..., :5].double().numpy()
    for angle, expected in ((folded, (0.99, 1.0)), (raw, (-0.2, 0.5))):
        codes = np.concatenate([others, np.stack([np.cos(angle), np.sin(angle)], -1)], -1)
        probes = score_factor_space(codes, factors, space, dci_predictor="random_forest")
        assert expected[0] < probes["probes"]["rotation"]["linear"] < expected[1]

"""Per-factor probes on known answers: an exact code is read perfectly, noise and shuffled
factors at chance; and the predictors' scores against direct computations."""

import math

import numpy as np
import pytest

from pyro_dynvae.assessment.predictors import (
    chance_score,
    factor_targets,
    held_out_score,
    make_predictor,
    normalised_score,
)
from pyro_dynvae.assessment.probes import mean_probe_scores, probe_codes

TYPES = ["categorical", "continuous", ("periodic", 2 * math.pi)]
NAMES = ["digit", "x", "rotation"]


@pytest.fixture(scope="module")
def factors():
    """(400 sequences, 4 frames, 3 factors): an unbalanced static class, a position, an angle."""
    rng = np.random.default_rng(0)
    digit = rng.choice(3, size=(400, 1), p=[0.6, 0.3, 0.1]).repeat(4, axis=1)
    x = rng.uniform(0, 1, (400, 1)) + 0.1 * np.arange(4)
    angle = np.mod(rng.uniform(0, 2 * math.pi, (400, 1)) + 0.2 * np.arange(4), 2 * math.pi)
    return np.stack([digit, x, angle], axis=-1)


def exact_code(factors):
    """The class as an index, the position, the angle as (cos, sin)."""
    return np.stack([factors[..., 0], factors[..., 1], np.cos(factors[..., 2]),
                     np.sin(factors[..., 2])], axis=-1)


def test_exact_code_is_read_by_both_probes(factors):
    probes = probe_codes(exact_code(factors), factors, TYPES, NAMES,
                         frames_per_sequence=2)["probes"]
    assert probes["digit"]["linear"] == 1.0 and probes["digit"]["nonlinear"] == 1.0
    assert probes["x"]["linear"] > 0.999 and probes["x"]["nonlinear"] > 0.98
    assert probes["rotation"]["linear"] > 0.999 and probes["rotation"]["nonlinear"] > 0.95
    assert probes["digit"]["linear_above_chance"] == 1.0
    assert [probes[name]["type"] for name in NAMES] == ["categorical", "continuous",
                                                         "periodic"]


def test_noise_and_shuffled_factors_score_chance(factors):
    rng = np.random.default_rng(1)
    noise = probe_codes(rng.normal(size=(400, 4, 4)), factors, TYPES, NAMES)["probes"]
    shuffled = probe_codes(exact_code(factors), factors[rng.permutation(400)], TYPES,
                           NAMES)["probes"]
    for probes in (noise, shuffled):
        digit = probes["digit"]
        # chance is the majority class (0.6 of the sequences), not 1/3
        assert digit["chance"] == pytest.approx(0.6, abs=0.1)
        for probe in ("linear", "nonlinear"):
            assert digit[probe] == pytest.approx(digit["chance"], abs=0.08)
        for name in ("x", "rotation"):
            assert abs(probes[name]["linear"]) < 0.1
            # held-out R^2 is negative where a forest fits noise (267 fitting sequences)
            assert -0.25 < probes[name]["nonlinear"] < 0.05
    means = mean_probe_scores(noise)
    assert abs(means["probe_linear"]) < 0.1 and abs(means["probe_nonlinear"]) < 0.15


def test_an_angle_needs_the_nonlinear_probe(factors):
    """A code that is the angle itself is informative, but no linear map reaches (cos, sin)."""
    codes = factors[..., 2:]
    probes = probe_codes(codes, factors[..., 2:], TYPES[2:], NAMES[2:])["probes"]["rotation"]
    assert probes["nonlinear"] > 0.95 and probes["linear"] < 0.7


def test_predictor_scores_match_direct_computations():
    angles = np.array([0.0, math.pi / 2, math.pi, 1.5 * math.pi])
    targets = factor_targets(angles, "periodic", 2 * math.pi)
    np.testing.assert_allclose(targets, [[1, 0], [0, 1], [-1, 0], [0, -1]], atol=1e-12)
    prediction = 0.5 * targets  # half-way to the circle: residual 1/4 of the variance
    assert held_out_score("periodic", targets, prediction) == pytest.approx(0.75)
    assert held_out_score("continuous", np.arange(4.0), np.full(4, 1.5)) == 0.0
    assert held_out_score("categorical", np.array([0, 1, 1]), np.array([0, 1, 0])) == \
        pytest.approx(2 / 3)
    assert chance_score("categorical", np.array([2, 2, 1]), np.array([2, 1, 1, 1])) == 0.25
    assert chance_score("continuous", np.zeros(3), np.ones(3)) == 0.0
    assert normalised_score("categorical", 0.75, 0.5) == 0.5
    assert normalised_score("continuous", -0.2, 0.0) == -0.2
    with pytest.raises(ValueError, match="family must be one of"):
        make_predictor("svm", "continuous")

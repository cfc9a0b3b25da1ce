"""MCC with a correlation for each factor type, against independent references (scipy's
Kruskal-Wallis and one-way ANOVA, Mardia's circular-linear formula) and known answers."""

import math

import numpy as np
import pytest
import scipy.stats

from pyro_dynvae.metrics import mcc
from pyro_dynvae.metrics.mcc import abs_correlation_matrix, typed_correlation_matrix
from pyro_dynvae.metrics.utils import check_factor_types

N = 4000
PERIODIC = ("periodic", 2 * math.pi)


@pytest.fixture(scope="module")
def sample():
    rng = np.random.default_rng(0)
    angle = rng.uniform(0, 2 * math.pi, N)
    label = rng.integers(0, 4, N)
    value = rng.normal(size=N)
    codes = np.stack([np.cos(angle - 1.0) + 0.5 * rng.normal(size=N),
                      label + rng.normal(size=N), value + rng.normal(size=N),
                      rng.normal(size=N)], axis=1)
    return codes, np.stack([angle, label, value], axis=1)


def test_continuous_factors_get_spearman_and_pearson(sample):
    codes, factors = sample
    for method in ("spearman", "pearson"):
        np.testing.assert_allclose(
            typed_correlation_matrix(codes, factors, ["continuous"] * 3, method),
            abs_correlation_matrix(codes, factors, method), rtol=1e-9)


def test_categorical_correlation_ratio_matches_anova_and_kruskal_wallis(sample):
    codes, factors = sample
    groups = [codes[factors[:, 1] == c] for c in range(4)]
    for i in range(codes.shape[1]):
        f_stat = scipy.stats.f_oneway(*[g[:, i] for g in groups]).statistic
        eta_squared = f_stat * 3 / (f_stat * 3 + N - 4)  # SS_between / SS_total
        h_stat = scipy.stats.kruskal(*[g[:, i] for g in groups]).statistic
        pearson = typed_correlation_matrix(codes[:, [i]], factors[:, [1]], ["categorical"],
                                           "pearson")
        spearman = typed_correlation_matrix(codes[:, [i]], factors[:, [1]], ["categorical"])
        assert pearson[0, 0] == pytest.approx(math.sqrt(eta_squared), rel=1e-9)
        assert spearman[0, 0] == pytest.approx(math.sqrt(h_stat / (N - 1)), rel=1e-9)


def test_two_classes_give_the_absolute_rank_correlation(sample):
    codes, factors = sample
    binary = (factors[:, [1]] >= 2).astype(float)
    np.testing.assert_allclose(typed_correlation_matrix(codes, binary, ["categorical"]),
                               abs_correlation_matrix(codes, binary), rtol=1e-9)


def test_periodic_correlation_matches_mardias_formula(sample):
    codes, factors = sample
    angle = factors[:, 0]
    for i in range(codes.shape[1]):
        r = np.corrcoef([codes[:, i], np.cos(angle), np.sin(angle)])
        rxc, rxs, rcs = r[0, 1], r[0, 2], r[1, 2]
        expected = math.sqrt((rxc**2 + rxs**2 - 2 * rxc * rxs * rcs) / (1 - rcs**2))
        got = typed_correlation_matrix(codes[:, [i]], factors[:, [0]], [PERIODIC], "pearson")
        assert got[0, 0] == pytest.approx(expected, rel=1e-9)


def test_periodic_known_answers_and_invariances():
    rng = np.random.default_rng(1)
    angle = rng.uniform(0, 2 * math.pi, 20000)[:, None]
    cosine = np.cos(angle - 2.0)
    assert typed_correlation_matrix(cosine, angle, [PERIODIC], "pearson")[0, 0] == \
        pytest.approx(1.0)
    # the ranks of a cosine trace a triangle wave: its first harmonic holds 96 / pi^4
    assert typed_correlation_matrix(cosine, angle, [PERIODIC])[0, 0] == pytest.approx(
        math.sqrt(96) / math.pi**2, abs=2e-3)
    # the angle itself is a sawtooth: its first harmonic holds 6 / pi^2 of its variance
    assert typed_correlation_matrix(angle, angle, [PERIODIC])[0, 0] == pytest.approx(
        math.sqrt(6) / math.pi, abs=5e-3)
    # the same in degrees with period 360; rank version ignores monotone maps and the origin
    shifted = np.mod(angle + 1.0, 2 * math.pi)
    codes = np.concatenate([cosine, np.exp(cosine)], axis=1)
    rank_version = typed_correlation_matrix(codes, angle, [PERIODIC])
    np.testing.assert_allclose(rank_version[0], rank_version[1], rtol=1e-12)
    np.testing.assert_allclose(typed_correlation_matrix(codes, shifted, [PERIODIC]),
                               rank_version, rtol=1e-9)
    np.testing.assert_allclose(
        typed_correlation_matrix(codes, np.degrees(angle), [("periodic", 360.0)]),
        rank_version, rtol=1e-9)
    noise = rng.normal(size=angle.shape)
    assert typed_correlation_matrix(noise, angle, [PERIODIC])[0, 0] < 0.03


def test_typed_mcc_ground_truth_and_noise(sample):
    _, factors = sample
    types = [PERIODIC, "categorical", "continuous"]
    exact = np.stack([np.cos(factors[:, 0]), 2.0 - factors[:, 1], -3 * factors[:, 2]], 1)
    assert mcc(exact, factors, method="pearson", factor_types=types)["mcc"] == \
        pytest.approx(1.0, abs=1e-9)
    monotone = np.concatenate([exact[:, :2], np.exp(exact[:, 2:])], axis=1)
    assert mcc(monotone[:, [2, 0, 1]], factors, factor_types=types)["mcc"] > 0.99
    # Spearman on the class index and on the angle: what the untyped MCC did
    assert mcc(exact, factors)["mcc"] < 0.8
    noise = np.random.default_rng(2).normal(size=(N, 5))
    assert mcc(noise, factors, factor_types=types)["mcc"] < 0.05


@pytest.mark.parametrize("types, match", [
    (["continuous"] * 2, "one type for each of the 3"),
    ("continuous", "one type for each"),
    (["continuous", "ordinal", "continuous"], r"factor_types\[1\] must be a kind"),
    (["continuous", "periodic", "continuous"], r"factor_types\[1\] is periodic and needs"),
    (["continuous", ("periodic", 0.0), "continuous"], "positive period"),
    (["continuous", ("categorical", 4), "continuous"], "takes no period"),
])
def test_bad_factor_types_are_rejected(sample, types, match):
    codes, factors = sample
    with pytest.raises(ValueError, match=match):
        mcc(codes, factors, factor_types=types)


def test_factor_types_accept_kinds_and_pairs():
    assert check_factor_types(["categorical", ("periodic", 1), ("continuous", None)], 3) == [
        ("categorical", None), ("periodic", 1.0), ("continuous", None)]

"""Known-answer tests of the dynamics diagnostics."""

import math

import numpy as np
import pytest

from pyro_dynvae.metrics import library_versions
from pyro_dynvae.metrics.dynamics import (
    BIMODALITY_THRESHOLD,
    bimodality_coefficient,
    eigenvalue_bimodality,
    eigenvalue_histograms,
    eigenvalue_statistics,
    object_background_overlap,
    otsu_split,
)


def two_group_eigenvalues(rng, static=(0, 2, 5, 7), num_latents=8, shape=(30, 9)):
    """Static latents near 1, dynamic latents near 0.6."""
    centres = np.full(num_latents, 0.6)
    centres[list(static)] = 1.0
    return centres + 0.01 * rng.normal(size=(*shape, num_latents))


# ---------------------------------------------------------------- eigenvalue summaries


def test_eigenvalue_statistics_known_values():
    eigenvalues = np.stack([np.ones((4, 5)), np.full((4, 5), 0.5),
                            np.tile([0.0, 1.0], (4, 1, 3))[..., :5].reshape(4, 5)], axis=-1)
    stats = eigenvalue_statistics(eigenvalues, quantiles=(0.0, 1.0))
    np.testing.assert_allclose(stats["mean_abs_deviation"][:2], [0.0, 0.5])
    np.testing.assert_allclose(stats["mean"][:2], [1.0, 0.5])
    np.testing.assert_allclose(stats["std"][:2], [0.0, 0.0])
    np.testing.assert_allclose(stats["quantiles"][:, 2], [0.0, 1.0])


def test_eigenvalue_statistics_complex_uses_modulus_and_distance_from_one():
    eigenvalues = np.full((2, 3, 1), 0.6 + 0.8j)  # modulus 1, |lambda - 1| = sqrt(0.8)
    stats = eigenvalue_statistics(eigenvalues)
    np.testing.assert_allclose(stats["mean"], [1.0])
    np.testing.assert_allclose(stats["mean_abs_deviation"], [math.sqrt(0.16 + 0.64)])


def test_eigenvalue_histograms_count_every_value():
    eigenvalues = two_group_eigenvalues(np.random.default_rng(0))
    counts, edges = eigenvalue_histograms(eigenvalues, bins=10, value_range=(0.0, 1.2))
    assert counts.shape == (8, 10) and edges.shape == (11,)
    np.testing.assert_array_equal(counts.sum(axis=1), 30 * 9)
    assert counts[0, 8] == 30 * 9  # latent 0 sits in the bin [0.96, 1.08)


def test_eigenvalue_inputs_are_validated():
    with pytest.raises(ValueError, match=r"\(N, T-1, n\)"):
        eigenvalue_statistics(np.ones((3, 4)))
    with pytest.raises(ValueError, match="finite"):
        eigenvalue_statistics(np.full((1, 1, 1), np.nan))
    with pytest.raises(TypeError, match="numeric"):
        eigenvalue_statistics(np.array([[["a"]]]))


# ---------------------------------------------------------------- bimodality


def test_bimodality_coefficient_large_sample_limits():
    rng = np.random.default_rng(1)
    assert bimodality_coefficient(rng.normal(size=200_000)) == pytest.approx(1 / 3, abs=0.01)
    assert bimodality_coefficient(rng.uniform(size=200_000)) == pytest.approx(5 / 9, abs=0.01)
    two_points = rng.integers(2, size=200_000).astype(float)
    assert bimodality_coefficient(two_points) == pytest.approx(1.0, abs=0.01)
    assert math.isnan(bimodality_coefficient(np.ones(10)))


def test_bimodality_coefficient_small_samples():
    # the SAS correction, by hand for n = 8 values {0 x 4, 1 x 4}: G1 = 0 and
    # G2 = ((n + 1) g2 + 6)(n - 1) / ((n - 2)(n - 3)) with g2 = -2
    two_groups = np.repeat([0.0, 1.0], 4)
    corrected_kurtosis = (9 * -2 + 6) * 7 / (6 * 5)
    expected = 1 / (corrected_kurtosis + 3 * 49 / 30)
    assert bimodality_coefficient(two_groups) == pytest.approx(expected)
    # plug-in moments: exactly 1 for any two-valued sample
    for sample in (two_groups, np.array([0.0, 0.0, 0.0, 5.0, 0.0, 5.0])):
        assert bimodality_coefficient(sample, bias_corrected=False) == pytest.approx(1.0)


def test_otsu_split_known_cases():
    split = otsu_split([0.0, 0.1, 0.05, 1.0, 0.9, 0.95])
    np.testing.assert_array_equal(split["low"], [True, True, True, False, False, False])
    assert split["threshold"] == pytest.approx(0.5)
    assert split["separation"] > 0.98
    rng = np.random.default_rng(2)
    assert otsu_split(rng.uniform(size=100_000))["separation"] == pytest.approx(0.75, abs=0.01)
    assert otsu_split(rng.normal(size=100_000))["separation"] == pytest.approx(2 / math.pi,
                                                                               abs=0.01)
    with pytest.raises(ValueError, match="equal"):
        otsu_split(np.zeros(3))


def test_eigenvalue_bimodality_finds_static_and_dynamic_latents():
    result = eigenvalue_bimodality(two_group_eigenvalues(np.random.default_rng(3)))
    np.testing.assert_array_equal(result["static_latents"], [0, 2, 5, 7])
    np.testing.assert_array_equal(result["dynamic_latents"], [1, 3, 4, 6])
    assert result["bimodal"] and result["bimodality_coefficient"] > BIMODALITY_THRESHOLD
    assert result["separation"] > 0.99
    assert result["versions"] == library_versions()


def test_eigenvalue_bimodality_unimodal_latents():
    rng = np.random.default_rng(4)
    centres = 0.8 + 0.05 * rng.normal(size=300)  # one normal cloud of per-latent deviations
    eigenvalues = centres + 0.001 * rng.normal(size=(5, 4, 300))
    result = eigenvalue_bimodality(eigenvalues)
    assert not result["bimodal"]
    assert result["bimodality_coefficient"] == pytest.approx(1 / 3, abs=0.08)
    assert result["separation"] < 0.7
    with pytest.raises(ValueError, match="at least 4 latents"):
        eigenvalue_bimodality(eigenvalues[..., :3])


# ---------------------------------------------------------------- object vs background


@pytest.fixture(scope="module")
def sources():
    """Independent Gaussian object factors (x, y) and a background factor."""
    return np.random.default_rng(5).normal(size=(20000, 3))


def test_overlap_disjoint_latents_is_zero(sources):
    codes = np.stack([np.tanh(sources[:, 2]), -sources[:, 0], sources[:, 1] ** 3], axis=1)
    result = object_background_overlap(codes, sources, [0, 1], [2])
    # unrelated correlations are O(1/sqrt(N)) = O(0.007): the noise floor of the overlap
    assert result["overlap"] == pytest.approx(0.0, abs=0.04)
    np.testing.assert_array_equal(result["object_latents"], [1, 2])
    np.testing.assert_array_equal(result["background_latents"], [0])
    assert result["shared_latents"].size == 0
    assert result["versions"] == library_versions()


def test_overlap_fully_mixed_latents_is_one(sources):
    mixed = sources[:, 0] + sources[:, 2]
    codes = np.stack([mixed, 2 * mixed], axis=1)
    result = object_background_overlap(codes, sources, [0], [2])
    assert result["overlap"] == pytest.approx(1.0, abs=1e-12)
    np.testing.assert_array_equal(result["shared_latents"], [0, 1])


def test_overlap_partial_known_answer(sources):
    # latents [o, o + g, g]: a = [1, 1/sqrt2, 0], b = [0, 1/sqrt2, 1] -> sqrt(2) - 1
    codes = np.stack([sources[:, 0], sources[:, 0] + sources[:, 2], sources[:, 2]], axis=1)
    result = object_background_overlap(codes, sources, [0], [2], method="pearson")
    assert result["overlap"] == pytest.approx(math.sqrt(2) - 1, abs=0.02)
    np.testing.assert_allclose(result["object_association"], [1, 2**-0.5, 0], atol=0.02)


def test_overlap_mutual_info_and_video_shaped_inputs(sources):
    codes = np.stack([sources[:, 2], sources[:, 0]], axis=1).reshape(100, 200, 2)
    factors = sources.reshape(100, 200, 3)
    mask = np.array([True, True, False])
    result = object_background_overlap(codes, factors, mask, ~mask, method="mutual_info")
    assert result["overlap"] < 0.05
    np.testing.assert_array_equal(result["object_latents"], [1])


def test_overlap_validates_arguments(sources):
    with pytest.raises(ValueError, match="disjoint"):
        object_background_overlap(sources, sources, [0, 1], [1])
    with pytest.raises(ValueError, match="factor columns"):
        object_background_overlap(sources, sources, [0], [3])
    with pytest.raises(ValueError, match="leading shape"):
        object_background_overlap(sources[:10], sources[:11], [0], [2])
    with pytest.raises(ValueError, match="method"):
        object_background_overlap(sources, sources, [0], [2], method="kendall")

"""Known-answer tests of the BetaVAE and FactorVAE scores on a synthetic ground-truth
sampler whose observations are a known invertible function of the factors."""

import numpy as np
import pytest

from pyro_dynvae.metrics import (
    GroundTruthSampler,
    beta_vae_score,
    factor_vae_score,
    library_versions,
    sample_codes_and_factors,
)

MIXING = np.array([[1.0, 0.5, 0.0], [0.0, 1.0, 0.3], [0.2, 0.0, 1.0]])
SMALL = {"batch_size": 16, "num_train": 300, "num_eval": 600}


class ToySampler:
    """Three discrete factors with 4, 5 and 6 values; the observation is
    ``tanh(0.3 * factors) @ MIXING``, so ``ground_truth`` inverts it exactly."""

    cardinalities = np.array([4, 5, 6])

    def sample_factors(self, n, rng):
        return rng.integers(self.cardinalities, size=(n, 3))

    def render(self, factors):
        return np.tanh(0.3 * factors) @ MIXING

    def discretize(self, factors):
        return np.asarray(factors, dtype=np.int64)


def ground_truth(observations):
    return np.arctanh(observations @ np.linalg.inv(MIXING)) / 0.3


def transformed(observations):
    """Ground truth permuted, rescaled, shifted and sign-flipped."""
    return ground_truth(observations)[:, [2, 0, 1]] * np.array([-3.0, 0.5, -1.0]) + 7.0


def random_representation(seed=0, num_codes=4):
    rng = np.random.default_rng(seed)
    return lambda observations: rng.normal(size=(len(observations), num_codes))


def test_toy_sampler_satisfies_protocol():
    assert isinstance(ToySampler(), GroundTruthSampler)
    with pytest.raises(TypeError, match="sampler must provide"):
        beta_vae_score(ground_truth, object())


def test_sample_codes_and_factors_recovers_factors():
    codes, factors = sample_codes_and_factors(ground_truth, ToySampler(), 50, batch_size=16)
    assert codes.shape == (50, 3) and factors.dtype == np.int64
    np.testing.assert_allclose(codes, factors, atol=1e-9)


@pytest.mark.parametrize("representation", [ground_truth, transformed])
def test_beta_vae_score_ground_truth_is_one(representation):
    result = beta_vae_score(representation, ToySampler(), **SMALL)
    assert result["train_accuracy"] == pytest.approx(1.0)
    assert result["eval_accuracy"] == pytest.approx(1.0)
    assert result["versions"] == library_versions()


def test_beta_vae_score_random_codes_at_chance():
    result = beta_vae_score(random_representation(), ToySampler(), **SMALL)
    assert result["eval_accuracy"] == pytest.approx(1 / 3, abs=0.07)


@pytest.mark.parametrize("representation", [ground_truth, transformed])
def test_factor_vae_score_ground_truth_is_one(representation):
    result = factor_vae_score(representation, ToySampler(), num_variance_estimate=1000, **SMALL)
    assert result["train_accuracy"] == pytest.approx(1.0)
    assert result["eval_accuracy"] == pytest.approx(1.0)
    assert result["num_active_dims"] == 3
    assert result["versions"] == library_versions()


def test_factor_vae_score_random_codes_at_chance():
    result = factor_vae_score(random_representation(), ToySampler(),
                              num_variance_estimate=1000, **SMALL)
    assert result["eval_accuracy"] == pytest.approx(1 / 3, abs=0.07)


def test_factor_vae_score_prunes_collapsed_codes():
    def with_collapsed(observations):
        codes = ground_truth(observations)
        return np.concatenate([np.zeros_like(codes[:, :1]), codes, 0.01 * codes[:, :1]], 1)

    result = factor_vae_score(with_collapsed, ToySampler(), num_variance_estimate=1000, **SMALL)
    assert result["num_active_dims"] == 3
    assert result["eval_accuracy"] == pytest.approx(1.0)
    collapsed = factor_vae_score(lambda x: np.zeros((len(x), 2)), ToySampler(),
                                 num_variance_estimate=100, **SMALL)
    assert collapsed["num_active_dims"] == 0 and collapsed["eval_accuracy"] == 0.0


def test_intervention_scores_are_reproducible_and_validate_arguments():
    first = factor_vae_score(transformed, ToySampler(), num_variance_estimate=200,
                             random_state=3, **SMALL)
    assert first == factor_vae_score(transformed, ToySampler(), num_variance_estimate=200,
                                     random_state=3, **SMALL)
    with pytest.raises(ValueError, match="num_train"):
        beta_vae_score(ground_truth, ToySampler(), num_train=0)
    with pytest.raises(TypeError, match="batch_size"):
        factor_vae_score(ground_truth, ToySampler(), batch_size=2.5)
    with pytest.raises(ValueError, match="representation_function"):
        beta_vae_score(lambda x: np.zeros(len(x)), ToySampler(), **SMALL)


class DependentSampler:
    """Factors (image, class, x) with class = image // 3, like a digit's image and class.
    ``sample_factors`` takes ``fixed`` and redraws the other factors consistently; the
    observation is the factor row itself."""

    def __init__(self):
        self.fixed_calls = 0

    def sample_factors(self, n, rng, fixed=None):
        image, x = rng.integers(12, size=n), rng.integers(5, size=n)
        fixed = fixed or {}
        if 0 in fixed:
            image[:] = fixed[0]
        if 1 in fixed:
            image = 3 * int(fixed[1]) + rng.integers(3, size=n)
        if 2 in fixed:
            x[:] = fixed[2]
        self.fixed_calls += bool(fixed)
        return np.stack([image, image // 3, x], axis=1)

    def render(self, factors):
        return np.asarray(factors, dtype=np.float64)

    def discretize(self, factors):
        return np.asarray(factors, dtype=np.int64)


class OverwriteOnlySampler(DependentSampler):
    def sample_factors(self, n, rng):
        return super().sample_factors(n, rng)


@pytest.mark.parametrize("score", [beta_vae_score, factor_vae_score])
def test_intervention_uses_fixed_keyword_for_dependent_factors(score):
    seen = []

    def recording(observations):
        seen.append(observations)
        return observations

    sampler = DependentSampler()
    result = score(recording, sampler, batch_size=8, num_train=60, num_eval=60)
    rows = np.concatenate(seen)
    assert sampler.fixed_calls > 0
    np.testing.assert_array_equal(rows[:, 1], rows[:, 0] // 3)
    assert result["eval_accuracy"] > 0.9
    # without the keyword the column is overwritten (disentanglement_lib's behaviour), which
    # breaks the dependency whenever the class or the image is the fixed factor
    seen.clear()
    score(recording, OverwriteOnlySampler(), batch_size=8, num_train=60, num_eval=60)
    rows = np.concatenate(seen)
    assert np.any(rows[:, 1] != rows[:, 0] // 3)

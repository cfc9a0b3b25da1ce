"""Agreement of a split with the truth: exact codes agree fully, shuffled splits score their
chance level on average, latents that carry nothing are left out."""

import numpy as np
import pytest

from pyro_dynvae.assessment.agreement import split_agreement
from pyro_dynvae.assessment.split import LatentSplit
from pyro_dynvae.data import DynamicSprites


def labelled_split(static, num_latents):
    dynamic = tuple(i for i in range(num_latents) if i not in static)
    return LatentSplit(tuple(sorted(static)), dynamic, (), "structure", (0.0,) * num_latents,
                       None)


@pytest.fixture(scope="module")
def sequences():
    dataset = DynamicSprites(num_sequences=300, num_frames=4, image_size=16,
                             shapes=["square", "triangle"], scale_range=(1.4, 1.8),
                             background="brightness", speeds={"rotation": 0.0}, split="test")
    return dataset, dataset.sequence_factors(range(300)).numpy()


def test_exact_codes_with_the_exact_split_agree(sequences):
    dataset, factors = sequences
    rng = np.random.default_rng(0)
    static = [i for i, factor in enumerate(dataset.factors) if factor.static]
    # exact codes, in a monotone transform, and a latent of noise that carries nothing
    codes = np.concatenate([np.tanh(factors), rng.standard_normal(factors.shape[:2] + (1,))], -1)
    result = split_agreement(labelled_split(static, codes.shape[-1]), codes, factors, dataset)
    assert result["agreement"] == 1 and result["kappa"] == 1
    assert result["num_active"] == factors.shape[-1] and result["carried_factor"][-1] is None
    assert result["true_static_latents"] == static
    assert result["carried_factor"][:3] == ["shape", "scale", "colour"]
    p = len(static) / factors.shape[-1]
    assert result["chance"] == pytest.approx(p**2 + (1 - p) ** 2)


def test_shuffled_splits_score_their_chance_level(sequences):
    dataset, factors = sequences
    num_latents, num_static = factors.shape[-1], 3
    rng = np.random.default_rng(1)
    agreements, chances = [], set()
    factors = factors[:100]
    for _ in range(200):
        static = rng.choice(num_latents, size=num_static, replace=False).tolist()
        result = split_agreement(labelled_split(static, num_latents), factors, factors, dataset)
        agreements.append(result["agreement"])
        chances.add(round(result["chance"], 12))
    (chance,) = chances  # the same counts give the same chance level
    # sd of one shuffle about 0.2, of the mean of 200 about 0.014
    assert np.mean(agreements) == pytest.approx(chance, abs=0.045)
    assert chance == pytest.approx((3 * 4 + 4 * 3) / 49)


def test_no_active_latent_gives_no_agreement(sequences):
    dataset, factors = sequences
    noise = np.random.default_rng(2).standard_normal(factors.shape[:2] + (3,))
    result = split_agreement(labelled_split([0], 3), noise, factors, dataset)
    assert result["num_active"] == 0 and result["agreement"] is None and result["kappa"] is None


def test_bad_arguments(sequences):
    dataset, factors = sequences
    with pytest.raises(ValueError, match="must share"):
        split_agreement(labelled_split([0], 7), factors[:5], factors, dataset)
    with pytest.raises(ValueError, match="the split 3"):
        split_agreement(labelled_split([0], 3), factors, factors, dataset)
    with pytest.raises(ValueError, match="min_association"):
        split_agreement(labelled_split([0], 7), factors, factors, dataset, min_association=1)

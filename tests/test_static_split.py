"""The static/dynamic split from a model's own dynamics, against dense covariances computed
independently, hand-built models with known noise scales, and codes with known shares."""

import numpy as np
import pytest
import torch

from pyro_dynvae.assessment.split import (
    STATIC_THRESHOLD,
    LatentSplit,
    posterior_within_share,
    prior_within_share,
    split_by_share,
    static_dynamic_split,
)
from pyro_dynvae.metrics import eigenvalue_bimodality
from pyro_dynvae.models import build_model


def hand_built(latent_dim, velocity, **scales):
    """An untrained MLP dynamics VAE whose noise scales are set to ``scales`` (buffers)."""
    model = build_model("hierarchical", image_size=16, architecture="mlp", latent_dim=latent_dim,
                        learn_transition_scale=False, velocity=velocity)
    for name, values in scales.items():
        getattr(model.guide.transitions, name).copy_(torch.tensor(values))
    return model


def dense_share(lambdas, q, sigma_v=0.0, r=0.0, sigma_0=1.0):
    """Within-sequence share of one latent from its dense T x T covariance, built by scalar
    loops over the sources of ``z_0 ~ N(0, sigma_0^2)``, ``v_0 ~ N(0, sigma_v^2)``,
    ``z_t = lambda_t z_{t-1} + v_{t-1} + q w_t``, ``v_t = v_{t-1} + r u_t``, summed over
    sequences (rows of ``lambdas``)."""
    within = total = 0.0
    for sequence in lambdas:
        num_frames = len(sequence) + 1
        sources = 2 * num_frames
        z_load, v_load = np.zeros(sources), np.zeros(sources)
        z_load[0], v_load[1] = sigma_0, sigma_v
        rows = [z_load.copy()]
        for t, lam in enumerate(sequence, start=1):
            z_load, v_load = lam * z_load + v_load, v_load.copy()
            z_load[2 * t] += q
            v_load[2 * t + 1] += r
            rows.append(z_load.copy())
        covariance = np.array(rows) @ np.array(rows).T
        centring = np.eye(num_frames) - 1.0 / num_frames
        within += np.trace(centring @ covariance)
        total += np.trace(covariance)
    return within / total


# ----- the prior's share, against dense covariances ----------------------------------------
def test_timescales_prior_keeps_the_latents_of_its_four_slowest_scales_static():
    """The ``timescales`` variant's fixed scales (1e-4 ... 1 over 8 latents, the same for
    noise and velocity) at eigenvalues 1: the dense shares, and so the split, put the four
    latents with scales up to 2.7e-3 below the static threshold and the four from 1.9e-2 up
    above it."""
    model = build_model("timescales", image_size=16, architecture="mlp", latent_dim=8)
    theta = np.ones((3, 9, 8))
    share = prior_within_share(model.guide.transitions, theta)
    scales = np.logspace(-4, 0, 8)
    expected = np.array([dense_share(theta[..., i], s, sigma_v=s, r=s)
                         for i, s in enumerate(scales)])
    np.testing.assert_allclose(share, expected, rtol=1e-5)
    assert (expected[:4] < STATIC_THRESHOLD).all() and (expected[4:] > STATIC_THRESHOLD).all()


def test_prior_share_matches_dense_covariance_without_velocity():
    rng = np.random.default_rng(0)
    q = [1e-4, 0.3, 1e-4, 0.05]
    model = hand_built(4, False, transition_scale=q)
    theta = rng.uniform(0.5, 1.2, size=(3, 7, 4))
    share = prior_within_share(model.guide.transitions, theta)
    expected = [dense_share(theta[..., i], q[i]) for i in range(4)]
    np.testing.assert_allclose(share, expected, rtol=1e-4, atol=1e-9)
    # the random walk z_t = z_0 + q sum w: a known closed form at q = 0.3, T = 8
    walk = prior_within_share(model.guide.transitions, np.ones((1, 7, 4)))[1]
    times = np.arange(8)
    covariance = 1 + 0.09 * np.minimum.outer(times, times)
    assert walk == pytest.approx(1 - covariance.sum() / (8 * np.trace(covariance)), rel=1e-5)


def test_prior_share_matches_dense_covariance_with_velocity():
    rng = np.random.default_rng(1)
    scales = {"transition_scale": [1e-4, 0.2, 1e-4], "velocity_init_scale": [1e-4, 0.1, 0.4],
              "velocity_noise_scale": [1e-4, 0.05, 0.2]}
    model = hand_built(3, True, **scales)
    theta = rng.uniform(0.8, 1.1, size=(2, 9, 3))
    share = prior_within_share(model.guide.transitions, theta, chunk=1)
    expected = [dense_share(theta[..., i], *(scales[k][i] for k in scales)) for i in range(3)]
    np.testing.assert_allclose(share, expected, rtol=1e-4, atol=1e-9)
    # started from a wider spread of sequences, the same motion is a smaller share
    initial = [3.0, 0.5, 2.0]
    share = prior_within_share(model.guide.transitions, theta, initial)
    expected = [dense_share(theta[..., i], *(scales[k][i] for k in scales), initial[i])
                for i in range(3)]
    np.testing.assert_allclose(share, expected, rtol=1e-4, atol=1e-9)


# ----- the split of a hand-built model with known noise scales -----------------------------
def test_known_noise_scales_give_the_known_split():
    """Latents 0 and 4: eigenvalue 1 and scales 1e-4 (static). Latent 1: no noise but eigenvalue
    0.6 (it decays). Latent 2: eigenvalue 1 and noise 0.5. Latent 3: eigenvalue 1, no noise,
    a velocity (it drifts). The eigenvalue split calls 2 and 3 static too."""
    tiny = 1e-4
    model = hand_built(5, True,
                       transition_scale=[tiny, tiny, 0.5, tiny, tiny],
                       velocity_init_scale=[tiny, tiny, tiny, 0.5, tiny],
                       velocity_noise_scale=[tiny] * 5)
    theta = torch.tensor([1.0, 0.6, 1.0, 1.0, 1.0]).expand(20, 9, 5)
    encoded = {"z_mean": torch.randn(20, 10, 5).numpy(), "dynamics": theta.numpy(),
               "eigenvalues": theta.numpy()}
    split = static_dynamic_split(model, encoded)
    assert split.rule == "prior_share" and split.threshold == STATIC_THRESHOLD
    assert split.static == (0, 4) and split.dynamic == (1, 2, 3)
    assert max(split.share[i] for i in (0, 4)) < 1e-6 < 0.1 < min(split.share[1:4])
    assert split.details["eigenvalue_deviation"] == pytest.approx([0, 0.4, 0, 0, 0], abs=1e-6)
    assert split.details["noise_scales"]["transition_scale"][2] == pytest.approx(0.5)
    assert len(split.details["posterior_share"]) == 5
    by_eigenvalues = eigenvalue_bimodality(theta.numpy())
    assert list(by_eigenvalues["static_latents"]) == [0, 2, 3, 4]  # misleads on 2 and 3


def test_a_trained_models_encode_feeds_the_prior_rule():
    model = build_model("hierarchical", image_size=16, architecture="mlp", latent_dim=4)
    encoded = model.encode(torch.rand(3, 5, 1, 16, 16))
    encoded = {key: value.numpy() for key, value in encoded.items()}
    split = static_dynamic_split(model, encoded)
    initial = encoded["z_mean"][:, 0].std(axis=0)
    share = prior_within_share(model.guide.transitions, encoded["dynamics"], initial)
    assert split.rule == "prior_share" and split.share == pytest.approx(list(share))
    assert split.details["initial_scale"] == pytest.approx(list(initial))
    assert all(0 <= value <= 1 for value in split.share)


# ----- the posterior share and the rule of each kind of model ------------------------------
def test_posterior_share_of_codes_with_known_shares():
    rng = np.random.default_rng(2)
    constant = rng.standard_normal((4000, 1, 1)).repeat(10, axis=1)
    noise = rng.standard_normal((4000, 10, 1))
    codes = np.concatenate([constant + 0.05 * noise, noise, constant], axis=-1)
    share = posterior_within_share(codes)
    # within variance 0.05^2 (1 - 1/T), total 1 + 0.05^2
    assert share[0] == pytest.approx(0.0025 * 0.9 / 1.0025, rel=0.05)
    assert share[1] == pytest.approx(0.9, abs=0.01) and share[2] < 1e-20
    assert posterior_within_share(np.zeros((3, 4, 2))).tolist() == [0, 0]


@pytest.mark.parametrize("variant", ["vae", "beta_vae", "slowvae"])
def test_models_without_learned_dynamics_use_the_posterior_share(variant):
    model = build_model(variant, image_size=16, architecture="mlp", latent_dim=3)
    codes = np.random.default_rng(3).standard_normal((30, 6, 3))
    codes[..., 1] = codes[:, :1, 1]
    split = static_dynamic_split(model, {"z_mean": codes})
    assert split.rule == "posterior_share" and split.static == (1,)
    assert split.share == pytest.approx(list(posterior_within_share(codes)))


def test_a_model_with_static_latents_is_split_by_its_structure():
    codes = np.random.default_rng(4).standard_normal((30, 6, 4))
    split = static_dynamic_split(object(), {"z_mean": codes, "static_latents": np.array([3, 0])})
    assert split.rule == "structure" and split.static == (0, 3) and split.dynamic == (1, 2)
    assert split.threshold is None
    forced = static_dynamic_split(object(), {"z_mean": codes, "static_latents": [0]},
                                  rule="posterior_share")
    assert forced.rule == "posterior_share" and forced.static == ()


def test_threshold_and_slow_group():
    split = split_by_share([0.0, 0.005, 0.1, 0.12, 0.5, 0.6, 0.009], "posterior_share")
    assert split.static == (0, 1, 6) and split.dynamic == (2, 3, 4, 5)
    assert split.slow == (2, 3) and split.fast == (4, 5) and split.num_latents == 7
    record = split.to_dict()
    assert record["static_latents"] == [0, 1, 6] and record["slow_latents"] == [2, 3]
    assert record["rule"] == "posterior_share" and record["threshold"] == 0.01
    assert split_by_share([0.3, 0.3], "posterior_share").slow == ()
    assert split_by_share([0.0, 0.3], "posterior_share").slow == ()  # one dynamic latent
    assert isinstance(split, LatentSplit)


# ----- bad input ------------------------------------------------------------------------------
def test_bad_arguments():
    model = hand_built(2, False, transition_scale=[0.1, 0.1])
    with pytest.raises(ValueError, match=r"codes must have shape \(S, T, n\)"):
        posterior_within_share(np.zeros((3, 1, 2)))
    with pytest.raises(ValueError, match=r"theta must have shape \(S, T-1, d\)"):
        prior_within_share(model.guide.transitions, np.ones((4, 2)))
    with pytest.raises(ValueError, match=r"initial_scale must be \(2,\) non-negative"):
        prior_within_share(model.guide.transitions, np.ones((1, 3, 2)), [1.0, -1.0])
    with pytest.raises(ValueError, match="2 transition parameters"):
        prior_within_share(model.guide.transitions, np.ones((1, 3, 5)))
    with pytest.raises(ValueError, match="no learned noise scales"):
        vae = build_model("vae", image_size=16, architecture="mlp", latent_dim=2)
        prior_within_share(vae.guide.transitions, np.ones((1, 3, 2)))
    with pytest.raises(ValueError, match="share must be a non-empty 1-D array in"):
        split_by_share([0.5, 1.5], "posterior_share")
    with pytest.raises(ValueError, match="threshold must be in"):
        split_by_share([0.5], "posterior_share", threshold=0)
    with pytest.raises(ValueError, match="rule must be one of"):
        static_dynamic_split(model, {"z_mean": np.zeros((2, 3, 2))}, rule="eigenvalues")
    with pytest.raises(ValueError, match="needs encode"):
        static_dynamic_split(model, {"z_mean": np.zeros((2, 3, 2))}, rule="structure")
    with pytest.raises(ValueError, match="prior_share rule needs"):
        static_dynamic_split(model, {"z_mean": np.zeros((2, 3, 2))}, rule="prior_share")
    with pytest.raises(ValueError, match="must hold the posterior means"):
        static_dynamic_split(model, {})
    with pytest.raises(ValueError, match="static_latents must index the 2 latents"):
        static_dynamic_split(model, {"z_mean": np.zeros((2, 3, 2)), "static_latents": [2]})

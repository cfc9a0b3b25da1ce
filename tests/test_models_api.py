"""The public API of pyro_dynvae.models: registry, build_model, shapes, errors, dynamics maps."""

import json
import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from oracles import unused_parameters
from pyro import poutine
from pyro.infer import Trace_ELBO, TraceMeanField_ELBO
from scipy import stats
from torch.distributions import kl_divergence

from pyro_dynvae.models import VARIANTS, DynamicsVAEConfig, LaplaceRandomWalk, build_model
from pyro_dynvae.models.dynamics import group_weights
from pyro_dynvae.nets import ELU, ConvDecoder, ConvEncoder

TINY = dict(image_size=4, channels=1, latent_dim=4, architecture="mlp", likelihood="bernoulli")
EXPECTED_VARIANTS = {
    "unconstrained",
    "slow_l1",
    "weighted_l1",
    "hierarchical",
    "timescales",
    "full_a",
    "block_a",
    "meanfield",
    "vae",
    "beta_vae",
    "slowvae",
}


@pytest.fixture(autouse=True)
def module_local_params():
    with pyro.settings.context(module_local_params=True):
        yield


def test_registry_names_and_configs():
    assert set(VARIANTS) == EXPECTED_VARIANTS
    for name, config in VARIANTS.items():
        assert isinstance(config, DynamicsVAEConfig) and config.variant == name
    assert VARIANTS["meanfield"].guide == "meanfield"
    assert VARIANTS["hierarchical"].guide == "structured"
    # meanfield is hierarchical with the guide swapped and no latent velocity (which a guide
    # without temporal coupling cannot infer), nothing else
    swapped = {"variant": "meanfield", "guide": "meanfield", "velocity": False}
    assert VARIANTS["meanfield"] == DynamicsVAEConfig(
        **{**VARIANTS["hierarchical"].to_dict(), **swapped}
    )
    assert VARIANTS["beta_vae"].kl_scale > 1
    # timescales is hierarchical with its noise and velocity scales fixed over four decades
    fixed = {"variant": "timescales", "learn_transition_scale": False,
             "transition_scale": (1e-4, 1.0)}
    assert VARIANTS["timescales"] == DynamicsVAEConfig(
        **{**VARIANTS["hierarchical"].to_dict(), **fixed}
    )


@pytest.mark.parametrize("variant", sorted(EXPECTED_VARIANTS))
def test_encode_reconstruct_forecast_shapes(variant):
    torch.manual_seed(0)
    dynvae = build_model(variant, **TINY)
    frames = torch.rand(3, 5, 1, 4, 4)
    summary = dynvae.encode(frames)
    assert summary["z_mean"].shape == summary["z_variance"].shape == (3, 5, 4)
    assert (summary["z_variance"] > 0).all()
    has_dynamics = variant not in ("vae", "beta_vae", "slowvae")
    assert ("eigenvalues" in summary) == has_dynamics
    if has_dynamics:
        assert summary["eigenvalues"].shape == (3, 4, 4)
        assert not summary["eigenvalues"].is_complex()
    if variant in ("full_a", "block_a"):
        assert summary["transition_matrices"].shape == (3, 4, 4, 4)
    assert ("prior_scales" in summary) == (variant in ("hierarchical", "timescales", "meanfield"))
    reconstruction = dynvae.reconstruct(frames)
    assert reconstruction.shape == frames.shape
    assert ((reconstruction >= 0) & (reconstruction <= 1)).all()
    assert dynvae.forecast(frames, 7).shape == (3, 7, 1, 4, 4)
    elbo_class = Trace_ELBO if variant == "slowvae" else TraceMeanField_ELBO
    assert type(dynvae.make_elbo()) is elbo_class
    assert unused_parameters(dynvae, frames) == []  # DDP-safe


def test_config_round_trips_through_json():
    dynvae = build_model("weighted_l1", penalty_schedule="geometric", num_sequences=7, **TINY)
    config = json.loads(json.dumps(dynvae.config))
    assert config["variant"] == "weighted_l1" and config["penalty_schedule"] == "geometric"
    rebuilt = build_model(**config)
    assert rebuilt.variant_config == dynvae.variant_config
    shapes = {k: v.shape for k, v in dynvae.state_dict().items()}
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == shapes


def test_conv_architecture_at_16_and_32():
    torch.manual_seed(0)
    for image_size in (16, 32):
        dynvae = build_model(
            "hierarchical", image_size=image_size, channels=3, conv_channels=(4, 8), feature_dim=16
        )
        frames = torch.rand(2, 3, 3, image_size, image_size)
        loss = dynvae.make_elbo()(dynvae.model, dynvae.guide)(frames)
        loss.backward()
        assert math.isfinite(loss.item())
        assert dynvae.forecast(frames, 2).shape == (2, 2, 3, image_size, image_size)


def test_unknown_variant_lists_known_ones():
    with pytest.raises(ValueError, match="known variants.*hierarchical"):
        build_model("hierarchichal")


def test_bad_options():
    with pytest.raises(TypeError, match="unknown option"):
        build_model("vae", latent_size=3)
    with pytest.raises(ValueError, match="dynamics_prior"):
        build_model("hierarchical", dynamics_prior="cauchy")
    with pytest.raises(ValueError, match="even latent_dim"):
        build_model("block_a", latent_dim=5)
    with pytest.raises(ValueError, match="meanfield"):
        build_model("slowvae", guide="structured")
    with pytest.raises(ValueError, match="latent_dim must be positive"):
        build_model("vae", latent_dim=0)
    with pytest.raises(ValueError, match="conv_activation must be one of"):
        build_model("hierarchical", conv_activation="tanh")
    with pytest.raises(ValueError, match="conv_activation must be one of"):
        build_model("dsvae", conv_activation="tanh")
    with pytest.raises(TypeError, match="learn_velocity_scale must be one of"):
        build_model("hierarchical", learn_velocity_scale="no")
    with pytest.raises(TypeError, match="learn_transition_scale must be one of"):
        build_model("hierarchical", learn_transition_scale=1)


@pytest.mark.parametrize(("variant", "learn_transition_scale", "learn_velocity_scale",
                          "velocity_learned"), [
    ("hierarchical", True, None, True),  # the velocity's follow the noise scales
    ("hierarchical", False, None, False),
    ("hierarchical", True, True, True), ("hierarchical", True, False, False),
    ("hierarchical", False, True, True), ("hierarchical", False, False, False),
    ("timescales", False, None, False),  # the variant's own options
])
def test_noise_and_velocity_scales_are_learned_on_their_own_switches(
        variant, learn_transition_scale, learn_velocity_scale, velocity_learned):
    """One SVI step moves exactly the scales that are learned (and the networks); the others
    stay at their geometric start: 0.01 ... 1.0 at n = 3, and 1e-4 ... 1 for ``timescales``."""
    torch.manual_seed(0)
    options = dict(velocity=True, learn_transition_scale=learn_transition_scale,
                   learn_velocity_scale=learn_velocity_scale)
    if variant == "timescales":  # its registry entry, not an override, must fix the scales
        assert all(getattr(VARIANTS[variant], name) == value for name, value in options.items())
        options = {}
    dynvae = build_model(variant, image_size=8, latent_dim=3, architecture="mlp", **options)
    expected_start = [1e-4, 1e-2, 1.0] if variant == "timescales" else [0.01, 0.1, 1.0]
    start = {name: scale.detach().clone()
             for name, scale in dynvae.guide.transitions.noise_scales().items()}
    assert set(start) == {"transition_scale", "velocity_init_scale", "velocity_noise_scale"}
    assert all(torch.allclose(scale, torch.tensor(expected_start)) for scale in start.values())
    loss_fn = dynvae.make_elbo()(dynvae.model, dynvae.guide)
    before = {name: p.detach().clone() for name, p in loss_fn.named_parameters()}
    optimizer = torch.optim.Adam(loss_fn.parameters(), lr=0.1)
    loss_fn(torch.rand(2, 4, 1, 8, 8).round()).backward()
    optimizer.step()
    learned = {"transition_scale": learn_transition_scale,
               "velocity_init_scale": velocity_learned,
               "velocity_noise_scale": velocity_learned}
    for name, scale in dynvae.guide.transitions.noise_scales().items():
        assert torch.equal(scale.detach(), start[name]) is not learned[name], name
    moved = [name for name, p in loss_fn.named_parameters() if not torch.equal(p, before[name])]
    assert any("dynamics_net" in name for name in moved), moved


@pytest.mark.parametrize("variant", ["hierarchical", "dsvae"])
def test_conv_activation_reaches_both_frame_networks(variant):
    dynvae = build_model(variant, image_size=16, conv_channels=(4, 8), feature_dim=16,
                         conv_activation="leaky_relu")
    nets = [m for m in dynvae.modules() if isinstance(m, (ConvEncoder, ConvDecoder))]
    assert len(nets) == 2
    for net in nets:
        kinds = {type(m) for m in net.modules()}
        assert torch.nn.LeakyReLU in kinds and not kinds & {ELU, torch.nn.ELU}
    default = build_model(variant, image_size=16, conv_channels=(4, 8), feature_dim=16)
    for net in (m for m in default.modules() if isinstance(m, (ConvEncoder, ConvDecoder))):
        assert ELU in {type(m) for m in net.modules()}


def test_bad_frames():
    dynvae = build_model("hierarchical", **TINY)
    with pytest.raises(ValueError, match=r"\(B, T, C, H, W\)"):
        dynvae.guide(torch.rand(5, 1, 4, 4))
    with pytest.raises(ValueError, match=r"\(B, T, 1, 4, 4\)"):
        dynvae.model(torch.rand(2, 5, 3, 4, 4))
    with pytest.raises(ValueError, match="at least 2 time steps"):
        dynvae.encode(torch.rand(2, 1, 1, 4, 4))
    with pytest.raises(TypeError, match="floating point"):
        dynvae.encode(torch.ones(2, 5, 1, 4, 4, dtype=torch.uint8))
    with pytest.raises(ValueError, match="num_steps"):
        dynvae.forecast(torch.rand(2, 5, 1, 4, 4), 0)


def test_forecast_rolls_the_last_inferred_transition():
    torch.manual_seed(0)
    for variant in ("unconstrained", "block_a", "vae"):
        dynvae = build_model(variant, **TINY)
        frames = torch.rand(2, 6, 1, 4, 4)
        summary = dynvae.encode(frames)
        latent = summary["z_mean"][:, -1]
        # the dynamics variants drift by their latent velocity, constant over the forecast
        velocity = summary["velocity_mean"][:, -1] if variant != "vae" else 0.0
        expected = []
        for _ in range(3):
            if variant == "unconstrained":
                latent = summary["eigenvalues"][:, -1] * latent + velocity
            elif variant == "block_a":
                latent = (summary["transition_matrices"][:, -1] @ latent[..., None])[..., 0]
                latent = latent + velocity
            expected.append(dynvae.model.decoder(latent).sigmoid())
        assert torch.allclose(dynvae.forecast(frames, 3), torch.stack(expected, 1), atol=1e-6)


def test_predictive_mean_forecast_of_an_affine_decoder_is_the_point_forecast():
    # with an affine decoder (Gaussian means) E[decode(z)] = decode(E[z]), and the dynamics are
    # linear given theta: the Monte Carlo predictive mean converges to the point forecast
    torch.manual_seed(0)
    dynvae = build_model("unconstrained", **{**TINY, "likelihood": "gaussian"}, decoder_hidden=())
    frames = torch.rand(2, 6, 1, 4, 4)
    point = dynvae.forecast(frames, 3)
    predictive = dynvae.forecast(frames, 3, num_samples=20000)
    # the decoder's weights are O(0.5) and the states' spread O(1): standard error ~0.01
    assert (predictive - point).abs().max() < 0.05
    assert not torch.equal(predictive, point)


def test_predictive_mean_forecast_matches_a_dense_monte_carlo_reference():
    # reference: the last state (z, v) drawn from the dense posterior marginal
    # N(mean, Sigma_{T-1}), moved by z <- lambda z + v + q eps, v <- v + r eps' (written out
    # here from the learned scales), decoded through the sigmoid and averaged
    torch.manual_seed(1)
    dynvae = build_model("unconstrained", **TINY)
    frames = torch.rand(2, 6, 1, 4, 4)
    summary, posterior = dynvae._posterior(frames)
    transitions = dynvae.guide.transitions
    n = transitions.latent_dim
    covariance = posterior.covariance_matrix[..., -2 * n :, -2 * n :]
    mean = posterior.mean[:, -1]
    eigenvalues = summary["dynamics"][:, -1]
    q, r = transitions.transition_scale.detach(), transitions.velocity_noise_scale.detach()
    num_samples = 20000
    state = dist.MultivariateNormal(mean, covariance).sample((num_samples,))
    latent, velocity = state[..., :n], state[..., n:]
    expected = []
    for _ in range(2):
        latent = eigenvalues * latent + velocity + q * torch.randn_like(latent)
        velocity = velocity + r * torch.randn_like(velocity)
        expected.append(dynvae.model.decoder(latent).sigmoid().mean(0))
    expected = torch.stack(expected, 1)
    predictive = dynvae.forecast(frames, 2, num_samples=num_samples)
    # probabilities: standard error below 0.5 / sqrt(20000) ~ 0.004 per pixel, for each estimate
    assert (predictive - expected).abs().max() < 0.02
    # the transition noise spreads the forecast: it is not the point forecast
    assert (predictive - dynvae.forecast(frames, 2)).abs().max() > 0.02
    with pytest.raises(ValueError, match="num_samples"):
        dynvae.forecast(frames, 2, num_samples=-1)


def test_encode_prior_scales():
    dynvae = build_model("hierarchical", prior_scale=0.2, **TINY)
    scales = dynvae.encode(torch.rand(2, 3, 1, 4, 4))["prior_scales"]
    # LogNormal(log 0.2, 0.1) mean
    assert torch.allclose(scales, torch.full((4,), 0.2 * math.exp(0.1**2 / 2)), rtol=1e-5)
    dynvae = build_model("hierarchical", scale_inference="type2", prior_scale=0.3, **TINY)
    scales = dynvae.encode(torch.rand(2, 3, 1, 4, 4))["prior_scales"]
    assert torch.allclose(scales, torch.full((4,), 0.3))
    # type-II maximum likelihood: a model parameter the optimiser sees
    assert "scales_unconstrained" in dict(dynvae.model.named_parameters())


def test_block_transitions_have_rotation_scaling_eigenvalues():
    torch.manual_seed(0)
    transitions = build_model("block_a", **{**TINY, "latent_dim": 6}).model.transitions
    with torch.no_grad():
        transitions.basis_skew.normal_(0, 1.0)
        transitions.basis_log_scale.normal_(0, 3.0)
    basis, basis_inverse = transitions.basis()
    assert torch.allclose(basis @ basis_inverse, torch.eye(6), atol=1e-5)
    assert torch.linalg.cond(basis) < math.exp(transitions.basis_max_log_scale * 2) + 1e-3
    theta = torch.tensor([0.9, 0.3, 1.1, -0.5, -0.7, 0.0])
    eigenvalues = torch.linalg.eigvals(transitions.transition_matrices(theta))
    expected = transitions.eigenvalues(theta)
    for radius, angle in [(0.9, 0.3), (1.1, -0.5), (-0.7, 0.0)]:
        for sign in (1, -1):
            value = radius * complex(math.cos(angle), sign * math.sin(angle))
            assert (eigenvalues - value).abs().min() < 1e-5
            assert (expected - value).abs().min() < 1e-6


def test_full_transitions_are_row_major():
    transitions = build_model("full_a", velocity=False, **TINY).model.transitions
    theta = torch.arange(16.0)
    z = torch.randn(4)
    by_hand = torch.stack([sum(theta[4 * i + j] * z[j] for j in range(4)) for i in range(4)])
    assert torch.allclose(transitions.propagate(theta, z), by_hand)
    assert torch.equal(transitions.centre, torch.eye(4).flatten())
    assert transitions.groups.tolist() == [i for i in range(4) for _ in range(4)]


def test_group_weights_schedules():
    assert group_weights(3, 2.0, "constant", 5.0).tolist() == [2.0, 2.0, 2.0]
    assert group_weights(3, 2.0, "linear", 5.0).tolist() == [2.0, 4.0, 6.0]
    assert group_weights(3, 2.0, "geometric", 3.0).tolist() == [2.0, 6.0, 18.0]
    weighted = build_model("weighted_l1", penalty_weight=1.5, **TINY).model
    assert weighted.penalty_weights.tolist() == [1.5, 3.0, 4.5, 6.0]


def test_laplace_random_walk_log_prob_and_samples():
    torch.manual_seed(0)
    rate = torch.tensor(4.0)
    walk = LaplaceRandomWalk(5, 3, rate)
    z = torch.randn(2, 5, 3)
    expected = stats.norm.logpdf(z[:, 0].numpy()).sum(-1) + stats.laplace.logpdf(
        (z[:, 1:] - z[:, :-1]).numpy(), scale=0.25
    ).sum((-1, -2))
    assert torch.allclose(walk.log_prob(z), torch.as_tensor(expected).float(), atol=1e-4)
    samples = walk.rsample((20000,))
    assert samples.shape == (20000, 5, 3)
    # Var z_0 = 1, Var(z_t - z_{t-1}) = 2 / rate^2
    assert samples[:, 0].var().item() == pytest.approx(1.0, rel=0.05)
    assert samples.diff(dim=1).var().item() == pytest.approx(2 / 16, rel=0.05)


def test_bernoulli_likelihood_binarises_frames():
    torch.manual_seed(0)
    dynvae = build_model("vae", **TINY)  # TINY's likelihood is Bernoulli
    frames = torch.rand(2, 3, 1, 4, 4)
    z = torch.randn(2, 3, 4)
    log_density = []
    for observed in (frames, (frames > 0.5).float()):
        conditioned = poutine.condition(dynvae.model, data={"z": z})
        log_density.append(poutine.trace(conditioned).get_trace(observed).log_prob_sum())
    assert torch.equal(log_density[0], log_density[1])
    logits = dynvae.model.decoder(z)
    by_hand = dist.Bernoulli(logits=logits).log_prob((frames > 0.5).float()).sum()
    prior = dist.Normal(0.0, 1.0).log_prob(z).sum()
    assert torch.allclose(log_density[0], by_hand + prior, atol=1e-4)
    # the site skips Pyro's validation (its values are binary by construction), so a diverged
    # decoder must still show: its NaN logits give a NaN log-density, never a finite one
    dynvae.model.decoder.register_forward_hook(lambda module, args, out: out * float("nan"))
    trace = poutine.trace(poutine.condition(dynvae.model, data={"z": z})).get_trace(frames)
    with pytest.warns(UserWarning, match="Encountered NaN"):  # Pyro's own notice
        assert torch.isnan(trace.log_prob_sum())


@pytest.mark.parametrize(
    "variant, options",
    [
        ("full_a", dict(dynamics_prior="laplace", scale_inference="type2", penalty_weight=0.0)),
        ("block_a", dict(dynamics_prior="normal", dynamics_posterior="normal")),
        ("hierarchical", dict(dynamics_prior="normal", potential_rank=2)),
        ("meanfield", dict(potential_rank=2, scale_inference="fixed")),
        ("slowvae", dict(likelihood="continuous_bernoulli", kl_scale=2.0)),
    ],
)
def test_option_combinations_give_finite_gradients(variant, options):
    torch.manual_seed(0)
    dynvae = build_model(variant, **{**TINY, **options})
    loss_fn = dynvae.make_elbo()(dynvae.model, dynvae.guide)
    loss = loss_fn(torch.rand(3, 4, 1, 4, 4))
    loss.backward()
    assert math.isfinite(loss.item())
    grads = [p.grad for p in loss_fn.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("variant", ["hierarchical", "block_a", "slowvae"])
def test_runs_on_cuda(variant):
    torch.manual_seed(0)
    dynvae = build_model(variant, image_size=32, conv_channels=(4, 8), feature_dim=16).cuda()
    frames = torch.rand(2, 4, 1, 32, 32, device="cuda")
    loss = dynvae.make_elbo()(dynvae.model, dynvae.guide)(frames)
    loss.backward()
    assert math.isfinite(loss.item())
    assert dynvae.encode(frames)["z_mean"].device.type == "cuda"
    assert dynvae.forecast(frames, 2).device.type == "cuda"


@pytest.mark.parametrize("variant", sorted(EXPECTED_VARIANTS))
def test_documented_elbo_terms_match_what_trace_mean_field_does(variant):
    dynvae = build_model(variant, **TINY)
    frames = torch.rand(2, 3, 1, 4, 4)
    guide_trace = poutine.trace(dynvae.guide).get_trace(frames)
    model_trace = poutine.trace(poutine.replay(dynvae.model, guide_trace)).get_trace(frames)
    for name, how in dynvae.variant_config.elbo_terms().items():
        site = model_trace.nodes[name]
        if name in ("frames", "dynamics_penalty"):
            assert site["is_observed"]
            continue
        guide_fn, model_fn = guide_trace.nodes[name]["fn"], site["fn"]
        if how.startswith("monte carlo"):
            with pytest.raises(NotImplementedError):
                kl_divergence(guide_fn, model_fn)
        else:  # analytic, or a point estimate (KL(Delta || p) = -log p)
            kl = kl_divergence(guide_fn, model_fn)
            assert kl.shape == guide_fn.batch_shape and torch.isfinite(kl).all()


@pytest.mark.parametrize("variant", ["unconstrained", "slow_l1", "block_a"])
def test_point_estimate_transitions_are_bounded(variant):
    # a flat prior makes a point estimate free: bounded within eigenvalue_bound of the centre,
    # however large the network's output
    dynvae = build_model(variant, eigenvalue_bound=0.25, **TINY)
    with torch.no_grad():
        dynvae.guide.dynamics_net.offset.bias.fill_(50.0)
    theta = dynvae.encode(torch.rand(2, 4, 1, 4, 4))["dynamics"]
    centre = dynvae.guide.transitions.centre
    assert torch.allclose(theta - centre, torch.full_like(theta, 0.25))
    unbounded = build_model(variant, eigenvalue_bound=None, **TINY)
    with torch.no_grad():
        unbounded.guide.dynamics_net.offset.bias.fill_(50.0)
    assert (unbounded.encode(torch.rand(2, 4, 1, 4, 4))["dynamics"] - centre > 49).all()


def test_config_of_noise_scales_velocity_and_bounds():
    assert DynamicsVAEConfig(transition_scale=0.3).transition_scale == (0.3, 0.3)
    spread = build_model("hierarchical", transition_scale=(0.01, 1.0), **TINY)
    geometric = 10 ** torch.tensor([-2.0, -4 / 3, -2 / 3, 0.0])  # 0.01 .. 1 over 4 latents
    torch.testing.assert_close(spread.guide.transitions.transition_scale, geometric)
    for bad in [(1.0, 0.1), (0.0, 1.0), (0.1, 0.2, 0.3), -1.0]:
        with pytest.raises(ValueError, match="transition_scale"):
            DynamicsVAEConfig(transition_scale=bad)
    with pytest.raises(ValueError, match="velocity=True needs guide='structured'"):
        build_model("hierarchical", guide="meanfield", **TINY)
    with pytest.raises(ValueError, match="velocity=True needs linear dynamics"):
        DynamicsVAEConfig(dynamics="none", velocity=True)
    with pytest.raises(ValueError, match="eigenvalue_bound"):
        DynamicsVAEConfig(eigenvalue_bound=0.0)
    # velocities are states of the chain: twice the latents, the z part decoded
    summary = spread.encode(torch.rand(2, 3, 1, 4, 4))
    assert summary["velocity_mean"].shape == summary["z_mean"].shape == (2, 3, 4)
    assert set(spread.guide.transitions.noise_scales()) == {
        "transition_scale", "velocity_init_scale", "velocity_noise_scale"
    }


def test_learned_observation_scale_reaches_its_maximum_likelihood():
    # with z observed and the decoder fixed, max over sigma of log N(x; f(z), sigma^2) is at
    # sigma^2 = mean squared residual
    torch.manual_seed(0)
    options = dict(likelihood="gaussian", learn_observation_scale=True, observation_scale=1.0)
    dynvae = build_model("vae", **{**TINY, **options})
    frames, z = torch.rand(8, 5, 1, 4, 4), torch.randn(8, 5, 4)
    conditioned = poutine.condition(dynvae.model, data={"z": z})
    optimizer = torch.optim.Adam([dynvae.model.observation_scale_unconstrained], lr=0.05)
    for _ in range(300):
        optimizer.zero_grad()
        (-poutine.trace(conditioned).get_trace(frames).log_prob_sum()).backward()
        optimizer.step()
    with torch.no_grad():
        residual = (frames - dynvae.model.decoder(z)).pow(2).mean()
    assert dynvae.model.observation_scale.item() == pytest.approx(residual.sqrt().item(), rel=1e-3)


@pytest.mark.parametrize("variant", ["hierarchical", "unconstrained", "vae", "slowvae"])
def test_prior_latents_follow_the_learned_noise_scales(variant):
    # at A = I, z_t - z_{t-1} = v_{t-1} + w_t: a latent with tiny scales stays constant
    torch.manual_seed(0)
    dynvae = build_model(variant, transition_scale=(1e-4, 1.0), **TINY)
    z = dynvae.sample_prior_latents(4000, 6)
    assert z.shape == (4000, 6, 4)
    assert z[:, 0].var(0).sub(1).abs().max() < 0.1  # z_0 ~ N(0, I)
    steps = (z[:, 1:] - z[:, :-1]).var(0).mean(0)
    if variant in ("hierarchical", "unconstrained"):
        assert steps[0] < 1e-6 and steps[-1] > 0.5
    elif variant == "vae":  # independent frames: steps of variance 2
        assert steps.sub(2).abs().max() < 0.2


def test_ancestral_prior_samples_have_the_chain_covariance():
    # Monte Carlo check against the BlockTridiagMVN prior's dense covariance (20000 draws: the
    # standard error of a covariance entry of size ~2 is about 0.02)
    torch.manual_seed(0)
    dynvae = build_model("unconstrained", transition_scale=(0.3, 0.8), **TINY)
    transitions = dynvae.guide.transitions
    theta = 1 + 0.1 * torch.randn(1, 4, 4)
    states = transitions.sample_chain(theta.expand(20000, 4, 4), 20000, 5, theta)
    dense = transitions.prior(theta, 5, theta).covariance_matrix[0]
    empirical = torch.cov(states.flatten(1).T)
    assert (empirical - dense).abs().max() < 0.15


def _loss(dynvae: torch.nn.Module, frames: torch.Tensor) -> float:
    pyro.set_rng_seed(0)  # the same Monte Carlo sample for every call
    return float(dynvae.make_elbo()(dynvae.model, dynvae.guide)(frames))


@pytest.mark.parametrize("variant, kl_scale", [("hierarchical", 0.5), ("beta_vae", 4.0)])
def test_exact_elbo_is_the_bound_whatever_kl_scale_and_annealing(variant, kl_scale):
    torch.manual_seed(0)
    frames = torch.rand(3, 4, 1, 4, 4).round()
    weighted = build_model(variant, **TINY, kl_scale=kl_scale)
    bound = build_model(variant, **TINY, kl_scale=1.0)  # the reference: the same weights, beta 1
    bound.load_state_dict(weighted.state_dict())
    weighted.kl_annealing = 0.3
    with weighted.exact_elbo():
        exact = _loss(weighted, frames)
    assert exact == pytest.approx(_loss(bound, frames), rel=1e-6)
    assert weighted.kl_annealing == 0.3  # the training objective is back
    # the objective is -E[log p(x | z)] + beta a KL(z) + the other terms: affine in beta a,
    # so two annealing factors give the latent term and, at beta a = 1, the bound
    low = _loss(weighted, frames)
    weighted.kl_annealing = 0.6
    latent_term = (_loss(weighted, frames) - low) / (0.3 * kl_scale)
    assert abs(latent_term) > 1e-2 * abs(exact)  # not negligible here
    assert exact == pytest.approx(low + (1 - 0.3 * kl_scale) * latent_term, rel=1e-5)


def test_dsvae_exact_elbo_anneals_nothing():
    torch.manual_seed(0)
    frames = torch.rand(3, 4, 1, 4, 4).round()
    dsvae = build_model("dsvae", image_size=4, channels=1, latent_dim=4, architecture="mlp",
                        rnn_hidden=8, likelihood="bernoulli")
    full = _loss(dsvae, frames)
    dsvae.kl_annealing = 0.2
    with dsvae.exact_elbo():
        assert _loss(dsvae, frames) == pytest.approx(full, rel=1e-6)
    assert dsvae.kl_annealing == 0.2 and _loss(dsvae, frames) != pytest.approx(full, rel=1e-3)

"""The DSVAE baseline (pyro_dynvae.models.dsvae): shapes, its ELBO against a hand-written one,
the recurrent prior, minibatch scaling, the static/dynamic swap on a known answer, the training
pipeline and its errors. (Its analytic and Monte Carlo ELBOs are compared with the other
variants' in test_models_svi.py.)

References are independent of the code under test: the ELBO and the LSTM prior's density
written out with an ``LSTMCell`` loop and Gaussian formulas, Monte Carlo estimates with stated
standard errors, and videos whose static and moving factors are known.
"""

from __future__ import annotations

import json
import math

import pyro
import pytest
import torch
from oracles import unused_parameters
from pyro import poutine
from pyro.infer import TraceMeanField_ELBO
from scipy import stats
from test_models_svi import moving_bar_frames, train

from pyro_dynvae.assessment import study
from pyro_dynvae.config import TrainConfig
from pyro_dynvae.evaluation import finish_run
from pyro_dynvae.models import DSVAE, MODEL_NAMES, DSVAEConfig, build_model
from pyro_dynvae.run_folder import load_run
from pyro_dynvae.train import fit, make_dataset, make_model

TINY = dict(image_size=4, channels=1, latent_dim=4, architecture="mlp", rnn_hidden=8)


@pytest.fixture(autouse=True)
def module_local_params():
    with pyro.settings.context(module_local_params=True):
        yield


def test_shapes_of_every_method():
    torch.manual_seed(0)
    dsvae = build_model("dsvae", likelihood="bernoulli", static_dim=2, **TINY)
    assert isinstance(dsvae, DSVAE)
    frames = torch.rand(3, 5, 1, 4, 4)
    summary = dsvae.encode(frames)
    assert summary["z_mean"].shape == summary["z_variance"].shape == (3, 5, 4)
    assert (summary["z_variance"] > 0).all()
    assert summary["static_latents"].tolist() == [0, 1]
    assert summary["dynamic_latents"].tolist() == [2, 3]
    assert summary["static_latents"].dtype == torch.long
    # f is one code per sequence, repeated over the frames; z_t differs from frame to frame
    static = summary["z_mean"][..., :2]
    assert torch.equal(static, static[:, :1].expand_as(static))
    assert (summary["z_mean"][:, 1:, 2:] != summary["z_mean"][:, :1, 2:]).all()
    reconstruction = dsvae.reconstruct(frames)
    assert reconstruction.shape == frames.shape
    assert ((reconstruction >= 0) & (reconstruction <= 1)).all()
    assert torch.equal(reconstruction, dsvae.decode(summary["z_mean"]))
    assert dsvae.decode(torch.randn(7, 4)).shape == (7, 1, 4, 4)
    forecast = dsvae.forecast(frames, 6)
    assert forecast.shape == (3, 6, 1, 4, 4)
    # its first frame decodes (f's posterior mean, the prior's mean of z_T given z_{<T})
    padded = torch.cat([summary["z_mean"][..., 2:], torch.zeros(3, 1, 2)], dim=1)
    next_mean = dsvae.model.prior.conditionals(padded)[0][:, -1]
    first = dsvae.decode(torch.cat([summary["z_mean"][:, 0, :2], next_mean], -1))
    assert torch.allclose(forecast[:, 0], first, atol=1e-6)
    # the predictive mean's first frame: f and z_{<T} drawn from the posteriors, z_T from the
    # prior's conditional, decoded and averaged (a Monte Carlo reference built by hand)
    num_samples = 20000
    static, dynamic = dsvae.guide.posteriors(frames)
    torch.manual_seed(3)
    predictive = dsvae.forecast(frames, 2, num_samples=num_samples)
    assert predictive.shape == (3, 2, 1, 4, 4)
    draws = dynamic.sample((num_samples,))
    padded = torch.cat([draws, torch.zeros(num_samples, 3, 1, 2)], dim=-2)
    loc, scale = dsvae.model.prior.conditionals(padded)
    next_z = loc[..., -1, :] + scale[..., -1, :] * torch.randn_like(loc[..., -1, :])
    reference = dsvae.decode(torch.cat([static.sample((num_samples,)), next_z], -1)).mean(0)
    assert (predictive[:, 0] - reference).abs().max() < 0.02  # standard errors ~0.004
    assert (predictive[:, 0] - forecast[:, 0]).abs().max() > 0.02
    prior = dsvae.sample_prior_latents(4, 6)
    assert prior.shape == (4, 6, 4)
    assert torch.equal(prior[..., :2], prior[:, :1, :2].expand(4, 6, 2))
    assert type(dsvae.make_elbo()) is TraceMeanField_ELBO
    assert unused_parameters(dsvae, frames) == []  # DDP-safe


def test_conv_networks_and_a_learned_observation_scale():
    torch.manual_seed(0)
    dsvae = build_model(
        "dsvae", image_size=32, latent_dim=5, static_dim=3, conv_channels=(4, 8), feature_dim=16,
        learn_observation_scale=True,
    )
    assert dsvae.variant_config.dynamic_dim == 2
    frames = torch.rand(2, 4, 1, 32, 32)
    loss_fn = dsvae.make_elbo()(dsvae.model, dsvae.guide)
    loss = loss_fn(frames)
    loss.backward()
    assert math.isfinite(loss.item())
    assert "model.observation_scale_unconstrained" in dict(loss_fn.named_parameters())
    assert dsvae.encode(frames)["z_mean"].shape == (2, 4, 5)
    assert dsvae.forecast(frames, 2).shape == (2, 2, 1, 32, 32)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_runs_on_cuda():
    torch.manual_seed(0)
    dsvae = build_model("dsvae", image_size=32, conv_channels=(4, 8), feature_dim=16).cuda()
    frames = torch.rand(2, 4, 1, 32, 32, device="cuda")
    loss_fn = dsvae.make_elbo(num_particles=3, vectorize_particles=True)
    loss = loss_fn(dsvae.model, dsvae.guide)(frames)
    loss.backward()
    assert math.isfinite(loss.item())
    summary = dsvae.encode(frames)
    assert summary["z_mean"].device.type == summary["static_latents"].device.type == "cuda"
    assert dsvae.forecast(frames, 2).device.type == "cuda"
    assert dsvae.sample_prior_latents(3, 5).device.type == "cuda"


def lstm_prior_log_density(prior, z):
    """``sum_t log N(z_t; mu_t, sigma_t)`` written out: an ``LSTMCell`` with the prior's weights
    stepped by hand from ``z_{-1} = 0``, ``sigma_t^-2 = softplus(.) + floor``."""
    lstm, head = prior.lstm, prior.head
    cell = torch.nn.LSTMCell(lstm.input_size, lstm.hidden_size).to(z.dtype)
    with torch.no_grad():
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            getattr(cell, name).copy_(getattr(lstm, f"{name}_l0"))
    hidden = (z.new_zeros(z.shape[0], lstm.hidden_size),) * 2
    previous, total = z.new_zeros(z.shape[0], z.shape[-1]), 0.0
    for t in range(z.shape[1]):
        hidden = cell(previous, hidden)
        loc = head.mean(hidden[0])
        variance = 1 / (torch.nn.functional.softplus(head.precision(hidden[0])) + 1e-3)
        total = total - 0.5 * ((z[:, t] - loc) ** 2 / variance + (2 * math.pi * variance).log())
        previous = z[:, t]
    return total.sum(-1)


def test_elbo_is_the_hand_written_one():
    # one particle of TraceMeanField_ELBO equals log p(x | f, z) + log p(z) - log q(z)
    # - KL(q(f) || N(0, I)), each written out, at the guide's sample (same random numbers)
    torch.manual_seed(0)
    dsvae = build_model("dsvae", num_sequences=6, observation_scale=0.5, **TINY).double()
    frames = moving_bar_frames(3, 4, seed=2).double()
    torch.manual_seed(1)
    guide_trace = poutine.trace(dsvae.guide).get_trace(frames)
    torch.manual_seed(1)
    with torch.no_grad():
        loss = TraceMeanField_ELBO(max_plate_nesting=1).loss(dsvae.model, dsvae.guide, frames)
    f, z = guide_trace.nodes["f"]["value"], guide_trace.nodes["z"]["value"]
    q_f, q_z = guide_trace.nodes["f"]["fn"].base_dist, guide_trace.nodes["z"]["fn"].base_dist
    with torch.no_grad():
        mean = dsvae.model.decoder(torch.cat([f[:, None].expand(-1, 4, -1), z], -1))
        log_likelihood = (
            -0.5 * ((frames - mean) / 0.5) ** 2 - math.log(0.5) - 0.5 * math.log(2 * math.pi)
        ).sum((1, 2, 3, 4))
        kl_f = 0.5 * (q_f.variance + q_f.mean**2 - 1 - q_f.variance.log()).sum(-1)
        log_q_z = (
            -0.5 * ((z - q_z.mean) ** 2 / q_z.variance + (2 * math.pi * q_z.variance).log())
        ).sum((-1, -2))
        log_p_z = lstm_prior_log_density(dsvae.model.prior, z)
    elbo = (log_likelihood + log_p_z - log_q_z - kl_f).sum() * 6 / 3  # minibatch of 3 of 6
    assert loss == pytest.approx(-elbo.item(), rel=1e-9)


def test_documented_elbo_terms_match_what_trace_mean_field_does():
    dsvae = build_model("dsvae", **TINY)
    frames = torch.rand(2, 3, 1, 4, 4)
    guide_trace = poutine.trace(dsvae.guide).get_trace(frames)
    model_trace = poutine.trace(poutine.replay(dsvae.model, guide_trace)).get_trace(frames)
    terms = dsvae.variant_config.elbo_terms()
    assert set(terms) == {"f", "z", "frames"} and model_trace.nodes["frames"]["is_observed"]
    kl = torch.distributions.kl_divergence(
        guide_trace.nodes["f"]["fn"], model_trace.nodes["f"]["fn"]
    )
    assert terms["f"] == "analytic" and kl.shape == (2,) and (kl > 0).all()
    assert terms["z"].startswith("monte carlo")
    with pytest.raises(NotImplementedError):
        torch.distributions.kl_divergence(
            guide_trace.nodes["z"]["fn"], model_trace.nodes["z"]["fn"]
        )


def test_recurrent_prior_samples_have_its_conditionals():
    # ancestral samples, standardised by the teacher-forced conditionals of their own past,
    # are independent N(0, 1) draws: mean 0, variance 1, no correlation between steps
    torch.manual_seed(0)
    dsvae = build_model("dsvae", static_dim=2, **TINY)
    prior = dsvae.model.prior
    with torch.no_grad():
        for param in prior.parameters():  # a prior far from N(0, 1)
            param.add_(0.5 * torch.randn_like(param))
        z = dsvae.sample_prior_latents(4000, 5)[..., 2:]
        loc, scale = prior.conditionals(z)
    residuals = ((z - loc) / scale).reshape(-1, 5 * 2)
    assert stats.kstest(residuals.flatten().numpy(), "norm").pvalue > 1e-3
    correlation = torch.corrcoef(residuals.T) - torch.eye(10)
    assert correlation.abs().max() < 4 / math.sqrt(4000)
    # and the density is the hand-written one
    with torch.no_grad():
        log_prob = dsvae_prior_log_prob(dsvae, z[:5])
    assert torch.allclose(log_prob, lstm_prior_log_density(prior, z[:5]), atol=1e-4)
    # the conditionals vary with the past (a learned, not a fixed, prior)
    assert loc[:, 1:].std(0).min() > 0.01


def dsvae_prior_log_prob(dsvae, z):
    """``log p(z)`` of the model's site ``z`` for ``z`` ``(B, T, d_z)``."""
    trace = poutine.trace(poutine.condition(dsvae.model, data={"z": z})).get_trace(
        torch.rand(z.shape[0], z.shape[1], 1, 4, 4)
    )
    return trace.nodes["z"]["fn"].log_prob(z)


def test_minibatch_scaling_and_kl_annealing_of_the_sites():
    dsvae = build_model("dsvae", num_sequences=40, **TINY)
    frames = moving_bar_frames(8, 5, seed=4)
    for annealing in (1.0, 0.5):
        dsvae.kl_annealing = annealing
        guide_trace = poutine.trace(dsvae.guide).get_trace(frames)
        model_trace = poutine.trace(poutine.replay(dsvae.model, guide_trace)).get_trace(frames)
        for trace in [guide_trace, model_trace]:
            assert trace.nodes["f"]["scale"] == trace.nodes["z"]["scale"] == 5.0 * annealing
        assert model_trace.nodes["frames"]["scale"] == 5.0
    assert dsvae.kl_annealing == 0.5
    with pytest.raises(ValueError, match="kl_annealing"):
        dsvae.kl_annealing = 1.5


def test_build_model_round_trips_through_its_config():
    torch.manual_seed(0)
    dsvae = build_model("dsvae", static_dim=1, num_sequences=10, **TINY)
    config = json.loads(json.dumps(dsvae.config))
    assert config["variant"] == "dsvae" and config["static_dim"] == 1
    rebuilt = build_model(**config)
    assert rebuilt.config == config
    rebuilt.load_state_dict(dsvae.state_dict())
    frames = torch.rand(2, 3, 1, 4, 4)
    assert torch.equal(rebuilt.encode(frames)["z_mean"], dsvae.encode(frames)["z_mean"])
    # by default z gets a quarter of the latent_dim asked for (not of the registry's default)
    assert build_model("dsvae", **{**TINY, "latent_dim": 7}).config["static_dim"] == 6
    assert build_model("dsvae", **{**TINY, "latent_dim": 16}).config["static_dim"] == 12


def swap_static(dsvae, codes, receivers, donors):
    """Per-frame codes of the sequences ``receivers`` with ``f`` taken from ``donors``."""
    static = dsvae.variant_config.static_dim
    return torch.cat([codes[donors][..., :static], codes[receivers][..., static:]], dim=-1)


@pytest.mark.parametrize("seed", [0, pytest.param(1, marks=pytest.mark.slow),
                                  pytest.param(2, marks=pytest.mark.slow)])
def test_f_carries_the_static_factor_and_swapping_it_moves_only_that(seed):
    # known answer: in moving_bar_frames the background level is static and the bar moves.
    # DSVAE has no term that keeps static information out of z (once the LSTM prior predicts
    # it, a level stored in z costs about what it costs in f); what keeps it in f is a z too
    # small to hold both. With d_z = 2 of 4 latents the level went to f and z alike and
    # swapping f did not move it (seeds 0, 1); with d_z = 1, as here, it went to f.
    torch.manual_seed(seed)
    frames = moving_bar_frames(64, 8, seed=1)
    level = frames[:, 0].amin((-1, -2, -3))
    dsvae = build_model(
        "dsvae", num_sequences=64, static_dim=3, observation_scale=0.1,
        **{**TINY, "rnn_hidden": 32},
    )
    losses = train(dsvae, frames, steps=300, lr=1e-2)
    first, last = sum(losses[:10]) / 10, sum(losses[-10:]) / 10
    assert last < first - 0.5 * abs(first)
    codes = dsvae.encode(frames)["z_mean"]
    # f: the level is a linear function of the static code (multiple correlation > 0.9)
    design = torch.cat([codes[:, 0, :3], torch.ones(64, 1)], dim=1)
    fitted = design @ torch.linalg.lstsq(design, level[:, None]).solution
    assert torch.corrcoef(torch.stack([fitted[:, 0], level]))[0, 1] > 0.9
    # swap f between sequences a and b: the decoded frames show b's level and a's bar
    a, b = torch.arange(32), torch.arange(32, 64)
    swapped = dsvae.decode(swap_static(dsvae, codes, a, b))[:, :, 0]  # (32, T, 4, 4)
    bar_column = frames[a, :, 0].mean(-2).argmax(-1)  # (32, T)
    assert (swapped.mean(-2).argmax(-1) == bar_column).float().mean() > 0.95
    background = frames[a, :, 0] < 0.5
    shown_level = (swapped * background).sum((-1, -2)) / background.sum((-1, -2))
    error_to_b = (shown_level - level[b, None]).abs().mean()
    error_to_a = (shown_level - level[a, None]).abs().mean()
    assert error_to_b < 0.5 * error_to_a
    assert torch.corrcoef(torch.stack([shown_level.mean(1), level[b]]))[0, 1] > 0.9
    # control: swapping z instead keeps a's level (what moves is what was swapped)
    kept = dsvae.decode(swap_static(dsvae, codes, b, a))[:, :, 0]
    background = frames[b, :, 0] < 0.5
    kept_level = (kept * background).sum((-1, -2)) / background.sum((-1, -2))
    assert (kept_level - level[a, None]).abs().mean() < 0.5 * (
        kept_level - level[b, None]
    ).abs().mean()


def small_config(**overrides) -> TrainConfig:
    values = dict(
        variant="dsvae", dataset="sprites", model_overrides={"architecture": "mlp"},
        image_size=16, num_frames=4, num_sequences=8, num_val_sequences=4, batch_size=2,
        latent_dim=4, max_steps=3, val_every=0, checkpoint_every=3, forecast_horizon=1,
        kl_warmup_steps=2, accelerator="cpu", devices="1",
    )
    values.update(overrides)
    return TrainConfig(**values)


def test_trains_through_fit_and_load_run_rebuilds_it(tmp_path):
    config = small_config()
    train_data, val_data = make_dataset(config, "train"), make_dataset(config, "test")
    dsvae = make_model(config, channels=train_data[0][0].shape[1])
    assert isinstance(dsvae, DSVAE) and dsvae.config["num_sequences"] == 8
    # the dataset's defaults reach DSVAE too (sprites: a Gaussian with a learned scale)
    assert dsvae.config["learn_observation_scale"] is True
    module = fit(dsvae, train_data, val_data, config, tmp_path, enable_progress_bar=False)
    assert module.trainer.global_step == 3 and dsvae.kl_annealing == 1.0
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["model"] == dsvae.config and saved["model"]["variant"] == "dsvae"
    loaded, loaded_config = load_run(tmp_path)
    assert loaded_config == config
    trained = module.dynvae.state_dict()
    assert all(torch.equal(value, trained[key]) for key, value in loaded.state_dict().items())
    metrics = finish_run(loaded, val_data, config, tmp_path, train_data=train_data)
    assert math.isfinite(metrics["elbo"]) and "dynamics" not in metrics
    figures = {name.split("/")[-1] for name in metrics["figures"]}
    assert {"reconstructions.png", "forecasts.png", "traversals.png"} <= figures


@pytest.mark.slow
def test_the_study_trains_and_scores_dsvae(tmp_path):
    assert "dsvae" in MODEL_NAMES
    budget = study.StudyBudget(
        max_steps=2, num_train_sequences=4, num_test_sequences=6, num_score_sequences=30,
        num_frames=4, batch_size=2, latent_dim=4, forecast_horizon=1, intervention_batch_size=4,
        intervention_num_train=10, intervention_num_eval=6, variance_estimate=20,
    )
    summary = study.run_study(tmp_path, datasets=["sprites"], variants=["dsvae"], seeds=[0],
                              budget=budget, command="tiny", progress=False)
    assert summary["trained"] == ["sprites/dsvae/seed0"] and not summary["failed"]
    result = json.loads((tmp_path / "cells/sprites/dsvae/seed0/result.json").read_text())
    assert result["status"] == "ok" and math.isfinite(result["scores"]["elbo"])
    assert math.isnan(result["scores"]["eig_bimodality"])  # no eigenvalues: not applicable


@pytest.mark.parametrize(
    "options, name",
    [
        (dict(static_dim=0), "static_dim"),
        (dict(static_dim=4), "static_dim"),
        (dict(latent_dim=1), "latent_dim"),
        (dict(likelihood="poisson"), "likelihood"),
        (dict(architecture="rnn"), "architecture"),
        (dict(observation_scale=0.0), "observation_scale"),
        (dict(rnn_hidden=0), "rnn_hidden"),
        (dict(precision_floor=-1.0), "precision_floor"),
        (dict(num_sequences=0), "num_sequences"),
    ],
)
def test_bad_options_raise_one_line_value_errors_naming_them(options, name):
    with pytest.raises(ValueError, match=name) as error:
        build_model("dsvae", **{**TINY, **options})
    assert "\n" not in str(error.value)


def test_bad_calls_raise_errors_naming_the_argument():
    with pytest.raises(TypeError, match="unknown option.*'velocity'"):
        build_model("dsvae", velocity=True, **TINY)
    with pytest.raises(TypeError, match="static_dim"):
        build_model("dsvae", static_dim=1.5, **TINY)
    with pytest.raises(ValueError, match="variant must be 'dsvae'"):
        DSVAEConfig(variant="vae")
    with pytest.raises(ValueError, match="known variants: .*'dsvae'"):
        build_model("dsvea", **TINY)
    dsvae = build_model("dsvae", **TINY)
    frames = torch.rand(2, 3, 1, 4, 4)
    with pytest.raises(ValueError, match="frames must have shape"):
        dsvae.encode(frames[:, :, :, :2])
    with pytest.raises(ValueError, match="num_steps"):
        dsvae.forecast(frames, 0)
    with pytest.raises(ValueError, match="num_sequences"):
        dsvae.sample_prior_latents(0, 3)
    with pytest.raises(ValueError, match=r"latents must have shape \(\.\.\., 4\)"):
        dsvae.decode(torch.randn(2, 3))

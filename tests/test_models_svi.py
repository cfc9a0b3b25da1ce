"""SVI behaviour of the model family: training runs, exact posteriors, ELBO estimators, objectives.

References are independent of the code under test: a dense Gaussian posterior built from the
chain's covariance by hand, Monte Carlo ELBOs with a stated standard error, and the Laplace
log-density written out.
"""

import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine
from pyro.infer import Trace_ELBO, TraceMeanField_ELBO

from pyro_dynvae.models import VARIANTS, build_model
from pyro_dynvae.nets import inverse_softplus


@pytest.fixture(autouse=True)
def pyro_training_settings():
    """Module-local parameters (as in training)."""
    with pyro.settings.context(module_local_params=True):
        yield


TINY = dict(image_size=4, channels=1, latent_dim=4, architecture="mlp")


def train(dynvae, frames, steps, lr, final_lr_factor=1.0, **elbo_kwargs):
    """Adam on the negative ELBO (the training recipe); returns the losses."""
    loss_fn = dynvae.make_elbo(**elbo_kwargs)(dynvae.model, dynvae.guide)
    params = [p for p in loss_fn.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=lr)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: final_lr_factor ** (step / steps)
    )
    losses = []
    for _ in range(steps):
        optimizer.zero_grad()
        loss = loss_fn(frames)
        loss.backward()
        optimizer.step()
        schedule.step()
        losses.append(loss.item())
    return losses


def moving_bar_frames(batch_size, num_frames, seed):
    """4x4 frames with a bright column moving right and a static random background level."""
    generator = torch.Generator().manual_seed(seed)
    start = torch.randint(0, 4, (batch_size,), generator=generator)
    level = 0.1 + 0.3 * torch.rand(batch_size, generator=generator)
    frames = level.view(-1, 1, 1, 1, 1).expand(batch_size, num_frames, 1, 4, 4).clone()
    for t in range(num_frames):
        frames[torch.arange(batch_size), t, 0, :, (start + t) % 4] = 0.9
    return frames


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_every_variant_trains(variant):
    torch.manual_seed(0)
    frames = moving_bar_frames(8, 5, seed=1)
    dynvae = build_model(variant, num_sequences=16, **TINY)
    losses = train(dynvae, frames, steps=80, lr=1e-2)
    assert all(math.isfinite(v) for v in losses)
    first, last = sum(losses[:10]) / 10, sum(losses[-10:]) / 10
    assert last < first - 0.1 * abs(first), (variant, first, last)


# ----- linear-Gaussian model: the exact posterior is known in closed form -----

LATENT, FRAMES, PIXELS, SEQUENCES = 2, 5, 4, 32
NOISE_SCALE, OBSERVATION_SCALE = 0.3, 0.5
EIGENVALUES = torch.tensor([0.95, 0.6], dtype=torch.float64)


def linear_gaussian_model(guide, decoder_weight, potential_rank=0, velocity=False):
    """``unconstrained`` with a linear decoder (frozen at ``decoder_weight``), Gaussian pixels,
    and its dynamics network frozen at the known eigenvalues: ``p(z | x)`` is Gaussian."""
    dynvae = build_model(
        "unconstrained",
        image_size=2,
        latent_dim=LATENT,
        architecture="mlp",
        encoder_hidden=(),
        decoder_hidden=(),
        likelihood="gaussian",
        observation_scale=OBSERVATION_SCALE,
        transition_scale=NOISE_SCALE,
        learn_transition_scale=False,
        guide=guide,
        potential_rank=potential_rank,
        velocity=velocity,
        eigenvalue_bound=None,
    ).double()
    dynamics_net, decoder = dynvae.guide.dynamics_net, dynvae.model.decoder.layers[0]
    with torch.no_grad():
        dynamics_net.offset.weight.zero_()
        dynamics_net.offset.bias.copy_(EIGENVALUES - 1)
        decoder.weight.copy_(decoder_weight)
        decoder.bias.zero_()
    for param in [*dynamics_net.parameters(), *decoder.parameters()]:
        param.requires_grad_(False)
    return dynvae


def chain_covariance(transition_matrices, noise_scale, velocity=False):
    """Dense prior covariance of ``z_0 ~ N(0, I)``, ``z_t = A_t z_{t-1} + N(0, q^2 I)`` from
    ``P_t = A_t P_{t-1} A_t' + Q`` and ``Cov(z_t, z_s) = A_t ... A_{s+1} P_s`` (``t >= s``).
    With ``velocity`` the state is ``(z_t, v_t)``: ``z_t = A_t z_{t-1} + v_{t-1} + w_t``,
    ``v_t = v_{t-1} + u_t``, ``v_0, u_t ~ N(0, q^2 I)``, written out as ``[[A_t, I], [0, I]]``.

    :param transition_matrices: ``(T-1, n, n)``, ``A_1..A_{T-1}``.
    """
    num_frames, n = transition_matrices.shape[0] + 1, transition_matrices.shape[-1]
    eye = torch.eye(n, dtype=transition_matrices.dtype)
    marginal = [eye]
    noise = noise_scale**2 * eye
    if velocity:
        zero = torch.zeros_like(eye)
        transition_matrices = torch.stack(
            [torch.cat([torch.cat([a, eye], 1), torch.cat([zero, eye], 1)])
             for a in transition_matrices]
        )
        marginal = [torch.block_diag(eye, noise)]
        noise = torch.block_diag(noise, noise)
        n = 2 * n
    for transition in transition_matrices:
        marginal.append(transition @ marginal[-1] @ transition.T + noise)
    covariance = torch.zeros(num_frames * n, num_frames * n, dtype=eye.dtype)
    for s in range(num_frames):
        block = marginal[s]
        for t in range(s, num_frames):
            if t > s:
                block = transition_matrices[t - 1] @ block
            covariance[t * n : (t + 1) * n, s * n : (s + 1) * n] = block
            covariance[s * n : (s + 1) * n, t * n : (t + 1) * n] = block.T
    return covariance


def linear_gaussian_problem(decoder_weight, seed=0, velocity=False):
    """Frames sampled from the model and the exact posterior ``p(z | x)`` of each sequence
    (of the states ``(z_t, v_t)`` with ``velocity``)."""
    generator = torch.Generator().manual_seed(seed)
    transitions = torch.diag(EIGENVALUES).expand(FRAMES - 1, LATENT, LATENT)
    covariance = chain_covariance(transitions, NOISE_SCALE, velocity)
    state = 2 * LATENT if velocity else LATENT
    latents = dist.MultivariateNormal(torch.zeros(FRAMES * state, dtype=torch.float64), covariance)
    torch.manual_seed(seed)
    z = latents.sample((SEQUENCES,)).reshape(SEQUENCES, FRAMES, state)[..., :LATENT]
    noise = torch.randn(SEQUENCES, FRAMES, PIXELS, dtype=torch.float64, generator=generator)
    pixels = z @ decoder_weight.T + OBSERVATION_SCALE * noise
    gram = decoder_weight.T @ decoder_weight / OBSERVATION_SCALE**2
    local = torch.block_diag(gram, torch.zeros(state - LATENT, state - LATENT))
    precision = torch.linalg.inv(covariance) + torch.block_diag(*[local] * FRAMES)
    info = pixels @ decoder_weight / OBSERVATION_SCALE**2
    info = torch.nn.functional.pad(info, (0, state - LATENT)).reshape(SEQUENCES, -1)
    mean = torch.linalg.solve(precision, info.T).T
    exact = dist.MultivariateNormal(mean, precision_matrix=precision)
    return pixels.reshape(SEQUENCES, FRAMES, 1, 2, 2), exact


def fitted_kl(dynvae, frames, exact):
    """``KL(q(z | x) || p(z | x))`` per sequence, through q's dense view."""
    guide = dynvae.guide
    with torch.no_grad():
        theta = EIGENVALUES.expand(SEQUENCES, FRAMES - 1, LATENT)
        posterior = guide.latent_posterior(theta, guide.potentials(guide.encoder(frames)))
        return torch.distributions.kl_divergence(posterior.to_dense(), exact)


ORTHOGONAL_WEIGHT = 0.8 * torch.tensor(
    [[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, -1.0]], dtype=torch.float64
)
SKEWED_WEIGHT = torch.tensor(
    [[1.0, 0.3], [0.2, 1.0], [1.0, -0.5], [0.0, -1.0]], dtype=torch.float64
)


@pytest.mark.parametrize("velocity", [False, True], ids=["position", "velocity"])
@pytest.mark.parametrize(
    "potential_rank, weight", [(0, ORTHOGONAL_WEIGHT), (2, SKEWED_WEIGHT)], ids=["diag", "lowrank"]
)
def test_exact_posterior_is_in_the_structured_family(potential_rank, weight, velocity):
    # the encoder weights that give p(z | x): R = W'W / sigma^2, m_t = R^-1 W' x_t / sigma^2;
    # diagonal R_t needs W'W diagonal, R = diag(d) + U U' (rank 2) represents any W'W. With a
    # latent velocity the frames' potentials act on the z part of the states only.
    frames, exact = linear_gaussian_problem(weight, velocity=velocity)
    dynvae = linear_gaussian_model("structured", weight, potential_rank, velocity)
    potentials = dynvae.guide.potentials
    gram = weight.T @ weight / OBSERVATION_SCALE**2
    if potential_rank == 0:
        diagonal = gram.diagonal()
    else:
        diagonal = torch.full((LATENT,), 0.1, dtype=torch.float64)
        factor = torch.linalg.cholesky(gram - torch.diag(diagonal))
    with torch.no_grad():
        potentials.mean.weight.copy_(torch.linalg.solve(gram, weight.T / OBSERVATION_SCALE**2))
        potentials.mean.bias.zero_()
        potentials.precision.weight.zero_()
        potentials.precision.bias.copy_(
            torch.tensor([inverse_softplus(v - potentials.precision_floor) for v in diagonal])
        )
        if potential_rank:
            potentials.factor.weight.zero_()
            potentials.factor.bias.copy_(factor.flatten())
    assert fitted_kl(dynvae, frames, exact).abs().max() < 1e-8


def test_structured_guide_recovers_exact_posterior_and_meanfield_cannot():
    # orthogonal decoder columns: W'W is diagonal, so diagonal potentials R_t suffice
    weight = ORTHOGONAL_WEIGHT
    frames, exact = linear_gaussian_problem(weight)
    # best factorised Gaussian q (precision diag(J), mean mu): KL = 1/2 (sum log J_ii - log|J|)
    precision = exact.precision_matrix[0]  # the same for every sequence
    meanfield_floor = 0.5 * (precision.diagonal().log().sum() - torch.linalg.slogdet(precision)[1])
    assert meanfield_floor > 0.5  # strong coupling between frames: a gap worth showing
    kls = {}
    for guide in ["structured", "meanfield"]:
        torch.manual_seed(0)
        dynvae = linear_gaussian_model(guide, weight)
        train(dynvae, frames, 600, 0.2, 0.002, num_particles=4, vectorize_particles=True)
        kls[guide] = fitted_kl(dynvae, frames, exact)
    assert kls["structured"].mean() < 0.05 and kls["structured"].max() < 0.1
    assert (kls["meanfield"] >= meanfield_floor - 1e-6).all()
    assert kls["meanfield"].mean() > 10 * kls["structured"].mean()


@pytest.mark.parametrize("velocity", [False, True], ids=["position", "velocity"])
@pytest.mark.parametrize("variant", ["unconstrained", "full_a", "block_a"])
def test_latent_prior_is_the_dense_markov_chain(variant, velocity):
    torch.manual_seed(0)
    dynvae = build_model(variant, transition_scale=0.4, velocity=velocity, **TINY).double()
    transitions = dynvae.model.transitions
    if variant == "block_a":  # a basis away from the identity
        with torch.no_grad():
            transitions.basis_skew.normal_(0, 0.3)
            transitions.basis_log_scale.normal_(0, 1.0)
    centre = transitions.centre.double()
    theta = centre + 0.2 * torch.randn(3, 5, transitions.num_params, dtype=torch.float64)
    prior = transitions.prior(theta, 6, theta)
    state = 8 if velocity else 4
    z = torch.randn(3, 6, state, dtype=torch.float64)
    for b in range(3):
        covariance = chain_covariance(transitions.transition_matrices(theta[b]), 0.4, velocity)
        dense = dist.MultivariateNormal(torch.zeros(6 * state, dtype=torch.float64), covariance)
        assert torch.allclose(prior.log_prob(z)[b], dense.log_prob(z[b].flatten()))


# ----- the analytic-KL ELBO and the Monte Carlo ELBO estimate the same number -----


@pytest.mark.parametrize("variant", ["hierarchical", "meanfield", "block_a", "full_a", "dsvae"])
def test_analytic_and_monte_carlo_elbo_agree(variant):
    torch.manual_seed(0)
    dynvae = build_model(
        variant, num_sequences=6, likelihood="gaussian", observation_scale=0.5, **TINY
    )
    frames = moving_bar_frames(3, 4, seed=2)
    estimates = {}
    for elbo_class in [TraceMeanField_ELBO, Trace_ELBO]:
        elbo = elbo_class(num_particles=500, vectorize_particles=True, max_plate_nesting=1)
        with torch.no_grad():
            estimates[elbo_class] = torch.tensor(
                [elbo.loss(dynvae.model, dynvae.guide, frames) for _ in range(8)]
            )
    analytic, monte_carlo = estimates[TraceMeanField_ELBO], estimates[Trace_ELBO]
    standard_error = ((analytic.var() + monte_carlo.var()) / 8).sqrt()
    assert (analytic.mean() - monte_carlo.mean()).abs() < 4 * standard_error + 1e-3


# ----- slow_l1's penalty is the hierarchical Laplace prior at s = 1/gamma -----


@pytest.mark.parametrize("penalty_variant", ["slow_l1", "weighted_l1"])
def test_penalty_equals_laplace_log_density_at_matching_scale(penalty_variant):
    torch.manual_seed(0)
    penalised = build_model(penalty_variant, velocity=False, **TINY)
    gamma = penalised.model.penalty_weights  # one weight per latent for diagonal dynamics
    prior = build_model("hierarchical", scale_inference="type2", velocity=False, **TINY)
    prior.model.load_state_dict(penalised.model.state_dict(), strict=False)
    prior.model.scales = 1 / gamma
    frames = moving_bar_frames(3, 5, seed=3)
    theta = 1 + 0.3 * torch.randn(3, 4, 4)
    z = torch.randn(3, 5, 4)
    log_density = {}
    for name, dynvae in [("penalised", penalised), ("prior", prior)]:
        conditioned = poutine.condition(dynvae.model, data={"dynamics": theta, "z": z})
        with torch.no_grad():
            log_density[name] = poutine.trace(conditioned).get_trace(frames).log_prob_sum()
    # Laplace(1, s) log-density = -|theta - 1| / s - log(2 s); the penalty is gamma |theta - 1|
    normaliser = -(2 / gamma).log().sum() * 3 * 4
    assert torch.allclose(log_density["prior"], log_density["penalised"] + normaliser, rtol=1e-5)
    # and the penalty is not trivially zero
    assert (penalised.model.penalty(theta) > 1).all()


def test_minibatch_scaling_of_local_and_global_sites():
    dynvae = build_model("hierarchical", num_sequences=40, **TINY)
    frames = moving_bar_frames(8, 5, seed=4)
    guide_trace = poutine.trace(dynvae.guide).get_trace(frames)
    model_trace = poutine.trace(poutine.replay(dynvae.model, guide_trace)).get_trace(frames)
    for trace in [guide_trace, model_trace]:
        assert trace.nodes["prior_scales"]["scale"] == 1.0
        assert trace.nodes["dynamics"]["scale"] == 5.0
        assert trace.nodes["z"]["scale"] == 5.0
    assert model_trace.nodes["frames"]["scale"] == 5.0


def test_type2_scales_reach_the_laplace_maximum_likelihood():
    # with theta observed, maximising log p(theta | s) over s gives s_i = mean |theta_i - 1|
    torch.manual_seed(0)
    dynvae = build_model(
        "hierarchical", scale_inference="type2", prior_scale=1.0, velocity=False, **TINY
    )
    true_scales = torch.tensor([0.05, 0.2, 0.5, 1.0])
    theta = 1 + torch.distributions.Laplace(0.0, true_scales).sample((16, 8))
    z = torch.randn(16, 9, 4)
    frames = moving_bar_frames(16, 9, seed=5)
    conditioned = poutine.condition(dynvae.model, data={"dynamics": theta, "z": z})
    optimizer = torch.optim.Adam([dynvae.model.scales_unconstrained], lr=0.1)
    for _ in range(200):
        optimizer.zero_grad()
        (-poutine.trace(conditioned).get_trace(frames).log_prob_sum()).backward()
        optimizer.step()
    expected = (theta - 1).abs().mean((0, 1))
    assert torch.allclose(dynvae.model.scales, expected, rtol=0.02)


@pytest.mark.parametrize("seed", [0, 1])
def test_hierarchical_model_puts_the_static_factor_in_a_static_latent(seed):
    # known answer: in moving_bar_frames the background level is static and the bar moves. The
    # latent the model's own dynamics call the most static (smallest transition noise q_i)
    # must hold the level, constant within a sequence: within-sequence variance of its
    # posterior mean below 1% of its variance across sequences
    torch.manual_seed(seed)
    frames = moving_bar_frames(64, 8, seed=1)
    level = frames[:, 0].amin((-1, -2, -3))
    dynvae = build_model(
        "hierarchical",
        num_sequences=64,
        likelihood="gaussian",
        observation_scale=0.1,
        **TINY,
    )
    train(dynvae, frames, steps=300, lr=1e-2)
    summary = dynvae.encode(frames)
    static = dynvae.guide.transitions.transition_scale.argmin()
    code = summary["z_mean"][..., static]
    assert code.var(1).mean() < 0.01 * code.mean(1).var()
    assert torch.corrcoef(torch.stack([code.mean(1), level]))[0, 1].abs() > 0.95
    # its eigenvalues sit at 1, and the bar is carried by latents that move
    assert (summary["eigenvalues"][..., static].mean() - 1).abs() < 0.03
    ratios = summary["z_mean"].var(1).mean(0) / summary["z_mean"].mean(1).var(0)
    assert ratios.max() > 1

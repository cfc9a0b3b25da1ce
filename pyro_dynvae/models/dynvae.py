"""The dynamics VAE as a Pyro program: generative model, amortised guide, and their wrapper.

Generative model per sequence ``x_{0:T-1}`` (DESIGN.md section 3)::

    s_i      ~ HalfCauchy(1)                   (or a type-II ML parameter, or fixed)
    theta_t  ~ Laplace(c, s) / Normal(c, s)    t = 1..T-1  (flat prior + pyro.factor penalty
                                               for the penalty variants)
    z        ~ p(z | theta) = BlockTridiagMVN.from_markov_chain(0, I, A(theta_t), Q)
                                               (states (z_t, v_t) with a latent velocity,
                                               see pyro_dynvae.models.dynamics)
    x_t      ~ ContinuousBernoulli(logits=decoder(z_t))   (or Bernoulli, or Normal)

inside a plate over sequences of size ``num_sequences`` subsampled to the minibatch, so global
variables (``s``) are weighted right against minibatch sums.

Guide (Archer et al. 2016, "Black box variational inference for state space models")::

    q(s)           = LogNormal(mu_s, sigma_s)                           (variational scales)
    q(theta_t | x) = Normal(NN(f_t, f_{t-1})) or Delta(NN(f_t, f_{t-1}))  (point estimate)
    q(z | x, theta) = BlockTridiagMVN.from_info(h, J_prior(theta) + blockdiag(R_t)),
                      h_t = R_t m_t                                    (structured)
                    = prod_t N(z_t; m_t, R_t^-1)                         (mean field)

with ``f_t`` the frame encoder's features and ``(m_t, R_t)`` its local Gaussian potentials. The
structured guide's precision is positive definite by construction (``J_prior`` is, ``R_t`` is).
Given the frames' likelihood were Gaussian and linear, ``p(z | x, theta)`` has exactly this form,
so the guide family contains the exact posterior (checked in the tests).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from pyro.distributions import constraints
from pyro.infer import ELBO, Trace_ELBO, TraceMeanField_ELBO
from pyro.nn import PyroModule, PyroParam
from torch import nn

from pyro_dynvae.distributions import BlockTridiagMVN, ChainProductMVN
from pyro_dynvae.nets import DynamicsNet, LocalPotentials

from .config import VARIANTS, DynamicsVAEConfig
from .dsvae import DSVAE, DSVAE_VARIANTS, build_dsvae
from .dynamics import LatentDynamics, group_weights, initial_scales
from .frames import add_observation_scale, frame_decoder, frame_encoder, frame_mean, observe_frames
from .frames import check_frames as _check_frames
from .frames import sequence_plate as _sequence_plate
from .options import replace_options

__all__ = ["DynamicsGuide", "DynamicsModel", "DynamicsVAE", "build_model"]


def _initial_precision(config: DynamicsVAEConfig) -> float | torch.Tensor:
    """Initial diagonal of the local precisions ``R_t`` (a float, or one value per latent).

    Structured guides already hold the prior's precision in ``J_q``: 1. Mean-field guides start
    near the prior's precision of an interior ``z_t`` given its neighbours at the slow centre
    ``A = I``: ``2 / q_i^2`` for the Gaussian chain, ``rate^2`` for the Laplace walk (variance
    matched), 1 for independent frames.
    """
    if config.guide == "structured" or config.dynamics == "none":
        return 1.0
    if config.dynamics == "random_walk":
        return config.slowness_rate**2
    return 2.0 / initial_scales(config.transition_scale, config.latent_dim) ** 2


class DynamicsModel(PyroModule):
    """The generative model ``p(s) p(theta | s) p(z | theta) p(x | z)``; call as ``model(frames)``.

    :param DynamicsVAEConfig config: the configuration.
    :param LatentDynamics transitions: the (shared) latent dynamics.
    """

    def __init__(self, config: DynamicsVAEConfig, transitions: LatentDynamics):
        super().__init__()
        self.config, self.transitions = config, transitions
        self.decoder = frame_decoder(config)
        add_observation_scale(self, config)
        groups = transitions.num_groups
        if config.has_prior_scales and config.scale_inference == "type2":
            self.scales = PyroParam(
                torch.full((groups,), config.prior_scale), constraint=constraints.positive
            )
        elif config.has_prior_scales and config.scale_inference == "fixed":
            self.register_buffer("scales", torch.full((groups,), config.prior_scale))
        if config.has_dynamics_site and config.penalty_weight > 0:
            weights = group_weights(
                groups, config.penalty_weight, config.penalty_schedule, config.penalty_ratio
            )
            self.register_buffer("penalty_weights", weights[transitions.groups])

    def prior_scales(self, like: torch.Tensor) -> torch.Tensor | None:
        """The scales ``s`` (``(G,)``; sampled in the variational case), None without a prior."""
        config = self.config
        if not config.has_prior_scales:
            return None
        if config.scale_inference == "variational":
            hyperprior = dist.HalfCauchy(like.new_ones(self.transitions.num_groups))
            return pyro.sample("prior_scales", hyperprior.to_event(1))
        return self.scales.to(like)

    def dynamics_prior(
        self, scales: torch.Tensor | None, batch_size: int, num_frames: int, like: torch.Tensor
    ) -> dist.TorchDistribution:
        """``p(theta | s)`` with batch shape ``(..., B)`` and event shape ``(T-1, d)``."""
        event_shape = (num_frames - 1, self.transitions.num_params)
        if scales is None:
            return dist.ImproperUniform(constraints.real, (batch_size,), event_shape)
        scale = scales[..., self.transitions.groups].unsqueeze(-2)
        family = dist.Laplace if self.config.dynamics_prior == "laplace" else dist.Normal
        batch_shape = torch.broadcast_shapes(scale.shape[:-2], (batch_size,))
        return (
            family(self.transitions.centre.to(like), scale)
            .expand(batch_shape + event_shape)
            .to_event(2)
        )

    def penalty(self, theta: torch.Tensor) -> torch.Tensor:
        """``sum_{t,j} gamma_j |theta_tj - c_j|`` per sequence, ``(..., B)``."""
        deviation = (theta - self.transitions.centre).abs()
        return (self.penalty_weights * deviation).sum((-1, -2))

    def forward(self, frames: torch.Tensor) -> None:
        config = self.config
        batch_size, num_frames = _check_frames(frames, config)
        scales = self.prior_scales(frames)
        with _sequence_plate(config, batch_size, frames.device):
            theta = None
            if config.has_dynamics_site:
                theta = pyro.sample(
                    "dynamics", self.dynamics_prior(scales, batch_size, num_frames, frames)
                )
                if config.penalty_weight > 0:
                    pyro.factor("dynamics_penalty", -self.penalty(theta))
            with poutine.scale(scale=self.transitions.kl_scale * self.transitions.kl_annealing):
                latents = pyro.sample("z", self.transitions.prior(theta, num_frames, frames))
            output = self.decoder(self.transitions.positions(latents))
            observe_frames(config, output, frames, self.observation_scale)


def _separate_posterior(
    prior: ChainProductMVN, mean: torch.Tensor, precision: torch.Tensor
) -> ChainProductMVN:
    """The structured posterior of separate chains: chain ``i``'s precision is its prior's plus
    the potential ``R_t[i]`` on its first coordinate (the latent, not its velocity), its
    information vector ``(R_t[i] m_t[i], 0)``.

    :param ChainProductMVN prior: chains of event ``(T, k)``.
    :param torch.Tensor mean: the potentials' means ``m``, ``(B, T, n)``.
    :param torch.Tensor precision: their diagonal precisions ``R``, ``(B, T, n)``.
    """
    chain_dim = prior.chains.event_shape[-1]
    padding = (0, chain_dim - 1)
    dtype, chain_dtype = mean.dtype, prior.chains.loc.dtype
    mean, precision = mean.to(chain_dtype), precision.to(chain_dtype)
    precision = nn.functional.pad(precision.movedim(-1, -2).unsqueeze(-1), padding)
    info_vec = nn.functional.pad((precision[..., 0] * mean.movedim(-1, -2)).unsqueeze(-1), padding)
    chains = BlockTridiagMVN.from_info(
        info_vec,
        prior.chains.diag_blocks + torch.diag_embed(precision),
        prior.chains.offdiag_blocks,
    )
    return ChainProductMVN(chains, dtype=dtype)


class DynamicsGuide(PyroModule):
    """The amortised guide ``q(s) q(theta | x) q(z | x, theta)``; call as ``guide(frames)``.

    :param DynamicsVAEConfig config: the configuration.
    :param LatentDynamics transitions: the (shared) latent dynamics.
    """

    def __init__(self, config: DynamicsVAEConfig, transitions: LatentDynamics):
        super().__init__()
        self.config, self.transitions = config, transitions
        self.encoder = frame_encoder(config)
        feature_dim = self.encoder.feature_dim
        self.potentials = LocalPotentials(
            feature_dim,
            config.latent_dim,
            config.potential_rank,
            config.precision_floor,
            init_precision=_initial_precision(config),
        )
        if config.has_dynamics_site:
            self.dynamics_net = DynamicsNet(
                feature_dim,
                transitions.num_params,
                config.dynamics_hidden,
                with_scale=config.dynamics_posterior == "normal",
            )
        if config.has_prior_scales and config.scale_inference == "variational":
            groups = transitions.num_groups
            self.scale_loc = nn.Parameter(torch.full((groups,), float(config.prior_scale)).log())
            self.scale_scale = PyroParam(
                torch.full((groups,), 0.1), constraint=constraints.positive
            )

    def scale_posterior(self) -> dist.TorchDistribution:
        """``q(s)``: independent LogNormals, event shape ``(G,)``."""
        return dist.LogNormal(self.scale_loc, self.scale_scale).to_event(1)

    def dynamics_posterior(self, features: torch.Tensor) -> dist.TorchDistribution:
        """``q(theta | x)`` from features ``(B, T, F)``: event shape ``(T-1, d)``.

        A point estimate is ``c + b tanh(NN / b)`` with ``b = eigenvalue_bound`` (within ``b``
        of the identity); a Normal posterior is ``N(c + NN, sigma)``, whose prior prices it.
        """
        offset, scale = self.dynamics_net(features)
        if scale is None:
            bound = self.config.eigenvalue_bound
            if bound is not None:
                offset = bound * torch.tanh(offset / bound)
            return dist.Delta(self.transitions.centre + offset, event_dim=2)
        loc = self.transitions.centre + offset
        return dist.Normal(loc, scale).to_event(2)

    def latent_posterior(
        self, theta: torch.Tensor | None, potentials: tuple[torch.Tensor, torch.Tensor]
    ) -> BlockTridiagMVN | ChainProductMVN:
        """``q(z | x, theta)`` from the local potentials ``(m, R)`` (``(B, T, n)`` and
        ``(B, T, n)`` diagonal or ``(B, T, n, n)``) and transition parameters ``theta``.

        The structured posterior has precision ``J_prior(theta) + blockdiag(R_t)`` and
        information vector ``(R_t m_t)_t``; with ``velocity`` the potentials act on the ``z``
        part of each state ``(z_t, v_t)`` only (no frame shows a velocity), and the velocities
        are inferred through the chain's coupling. A prior of separate per-latent chains
        (:class:`~pyro_dynvae.distributions.ChainProductMVN`) with diagonal potentials gives a
        posterior of separate chains; full potentials couple the latents, and the posterior is
        then one chain over the joint state.
        """
        mean, precision = potentials
        num_frames, n = mean.shape[-2:]
        full_precision = precision.dim() > mean.dim()
        if self.config.guide == "meanfield":
            if full_precision:
                return BlockTridiagMVN(mean, precision, mean.new_zeros(num_frames - 1, n, n))
            zeros = mean.new_zeros(num_frames - 1, n)
            return BlockTridiagMVN(mean, precision, zeros, blocks="diagonal")
        prior = self.transitions.prior(theta, num_frames, mean)
        if isinstance(prior, ChainProductMVN) and not full_precision:
            return _separate_posterior(prior, mean, precision)
        diag_blocks, offdiag_blocks = prior.diag_blocks, prior.offdiag_blocks
        if isinstance(prior, BlockTridiagMVN) and prior.blocks == "diagonal" and not full_precision:
            return BlockTridiagMVN.from_info(
                precision * mean,
                diag_blocks.diagonal(dim1=-2, dim2=-1) + precision,
                offdiag_blocks.diagonal(dim1=-2, dim2=-1),
                blocks="diagonal",
            )
        if not full_precision:
            precision = torch.diag_embed(precision)
        info_vec = (precision @ mean.unsqueeze(-1)).squeeze(-1)
        padding = self.transitions.state_dim - n
        if padding:
            info_vec = nn.functional.pad(info_vec, (0, padding))
            precision = nn.functional.pad(precision, (0, padding, 0, padding))
        return BlockTridiagMVN.from_info(info_vec, diag_blocks + precision, offdiag_blocks)

    def forward(self, frames: torch.Tensor) -> None:
        config = self.config
        batch_size, _ = _check_frames(frames, config)
        features = self.encoder(frames)
        potentials = self.potentials(features)
        if config.has_prior_scales and config.scale_inference == "variational":
            pyro.sample("prior_scales", self.scale_posterior())
        with _sequence_plate(config, batch_size, frames.device):
            theta = None
            if config.has_dynamics_site:
                theta = pyro.sample("dynamics", self.dynamics_posterior(features))
            with poutine.scale(scale=self.transitions.kl_scale * self.transitions.kl_annealing):
                pyro.sample("z", self.latent_posterior(theta, potentials))


class DynamicsVAE(nn.Module):
    """A dynamics VAE: ``.model`` and ``.guide`` (PyroModules) and posterior summaries.

    Train with ``pyro.settings.set(module_local_params=True)``,
    ``loss_fn = dynvae.make_elbo()(dynvae.model, dynvae.guide)`` and a torch optimizer over
    ``loss_fn.parameters()``; ``loss_fn(frames)`` is the negative training objective of a
    minibatch, the negative ELBO when ``kl_scale`` and the KL annealing are 1 and always inside
    :meth:`exact_elbo`.

    :param DynamicsVAEConfig config: the configuration (see :data:`VARIANTS`).
    """

    def __init__(self, config: DynamicsVAEConfig):
        super().__init__()
        self.variant_config = config
        transitions = LatentDynamics(config)
        self.model = DynamicsModel(config, transitions)
        self.guide = DynamicsGuide(config, transitions)

    @property
    def kl_annealing(self) -> float:
        """The factor ``a`` in ``[0, 1]`` on the latent ``z`` term during KL annealing (1 by
        default; the ELBO is a lower bound only at 1)."""
        return self.guide.transitions.kl_annealing

    @kl_annealing.setter
    def kl_annealing(self, value: float) -> None:
        if not 0 <= value <= 1:
            raise ValueError(f"kl_annealing must lie in [0, 1], got {value}")
        self.guide.transitions.kl_annealing = float(value)

    @contextlib.contextmanager
    def exact_elbo(self) -> Iterator[None]:
        r"""Inside, ``make_elbo()(model, guide)`` is the negative ELBO itself: the latent term
        weighted 1 instead of the training objective's ``kl_scale * kl_annealing``.

        Training maximises :math:`E_q[\log p(x \mid z)] - \beta a\, KL(q(z) \| p(z))` with
        :math:`\beta` = ``kl_scale`` (Higgins et al. 2017, "beta-VAE") and :math:`a` the KL
        annealing factor; only at :math:`\beta a = 1` is that a lower bound on
        :math:`\log p(x)`, so held-out ELBOs are computed in here (:mod:`pyro_dynvae.evaluation`).
        The penalty variants' ``pyro.factor`` stays: with their flat prior on the eigenvalues
        it is the unnormalised prior the variant is defined by.
        """
        transitions = self.guide.transitions
        weights = transitions.kl_scale, transitions.kl_annealing
        transitions.kl_scale, transitions.kl_annealing = 1.0, 1.0
        try:
            yield
        finally:
            transitions.kl_scale, transitions.kl_annealing = weights

    @property
    def config(self) -> dict:
        """JSON-serialisable configuration; ``build_model(**config)`` rebuilds this model."""
        return self.variant_config.to_dict()

    def make_elbo(self, **kwargs) -> ELBO:
        """``TraceMeanField_ELBO`` when some KL term is analytic, else ``Trace_ELBO``.

        Which term is which: ``self.variant_config.elbo_terms()``. Keyword arguments go to the
        ELBO (e.g. ``num_particles``, ``vectorize_particles``); ``max_plate_nesting`` is 1.
        """
        kwargs.setdefault("max_plate_nesting", 1)
        analytic = "analytic" in self.variant_config.elbo_terms().values()
        return (TraceMeanField_ELBO if analytic else Trace_ELBO)(**kwargs)

    def _posterior(self, frames: torch.Tensor) -> tuple[dict, BlockTridiagMVN]:
        """Posterior summaries at the mean of ``q(theta | x)``, and ``q(z | x, theta_mean)``."""
        _check_frames(frames, self.variant_config)
        guide = self.guide
        features = guide.encoder(frames)
        summary, theta = {}, None
        if self.variant_config.has_dynamics_site:
            theta_posterior = guide.dynamics_posterior(features)
            theta = theta_posterior.mean
            summary["dynamics"] = theta
            if self.variant_config.dynamics_posterior == "normal":
                summary["dynamics_scale"] = theta_posterior.stddev
        return summary, guide.latent_posterior(theta, guide.potentials(features))

    @torch.no_grad()
    def sample_prior_latents(
        self, num_sequences: int, num_frames: int, theta: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Latents ``z`` ``(num_sequences, num_frames, n)`` drawn from the prior ``p(z | theta)``.

        :param theta: transition parameters ``(num_sequences, num_frames - 1, d)``; None: the
            slow centre (``A_t = I``), so that a latent moves only through its learned noise
            and velocity scales (a static latent stays constant, a moving one wanders).
        """
        transitions = self.guide.transitions
        like = next(self.parameters())
        if theta is None and self.variant_config.has_dynamics_site:
            theta = transitions.centre.to(like).expand(
                num_sequences, num_frames - 1, transitions.num_params
            )
        states = transitions.sample_chain(theta, num_sequences, num_frames, like)
        return transitions.positions(states)

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Frames shown for latents ``(..., n)``: ``(..., C, H, W)``, the Gaussian mean, or the
        Bernoulli probabilities ``sigmoid(logits)`` (for the continuous Bernoulli, its shape
        parameter). Used by ``reconstruct``, ``forecast`` and latent traversals."""
        return frame_mean(self.variant_config, self.model.decoder(latents))

    @torch.no_grad()
    def encode(self, frames: torch.Tensor) -> dict[str, torch.Tensor]:
        """Posterior summaries of a batch of sequences (no gradients).

        :param frames: ``(B, T, C, H, W)`` in [0, 1].
        :returns: dict with ``"z_mean"`` and ``"z_variance"`` ``(B, T, n)`` (of
            ``q(z | x, theta)`` at the posterior mean of ``theta``); ``"velocity_mean"``
            ``(B, T, n)`` with ``velocity``; with dynamics also
            ``"dynamics"`` (``theta``'s mean, ``(B, T-1, d)``; ``"dynamics_scale"`` for a Normal
            ``q(theta)``), ``"eigenvalues"`` ``(B, T-1, n)`` (real ``lambda_t`` for diagonal
            dynamics; moduli ``|eig(A_t)|`` otherwise, in pair order for block and in
            decreasing order for full dynamics), ``"eigenvalues_complex"`` and
            ``"transition_matrices"`` ``(B, T-1, n, n)`` for full and block dynamics; and
            ``"prior_scales"`` ``(G,)`` (posterior mean of ``s``, or its value) with a prior.
        """
        summary, latent_posterior = self._posterior(frames)
        transitions = self.guide.transitions
        states_mean, states_variance = latent_posterior.mean, latent_posterior.variance
        summary["z_mean"] = transitions.positions(states_mean)
        summary["z_variance"] = transitions.positions(states_variance)
        if transitions.has_velocity:
            summary["velocity_mean"] = states_mean[..., transitions.latent_dim :]
        if "dynamics" in summary:
            theta = summary["dynamics"]
            if transitions.kind == "diagonal":
                summary["eigenvalues"] = theta
            else:
                eigenvalues = transitions.eigenvalues(theta)
                moduli = eigenvalues.abs()
                if transitions.kind == "full":
                    moduli = moduli.sort(dim=-1, descending=True).values
                summary["eigenvalues"] = moduli
                summary["eigenvalues_complex"] = eigenvalues
                summary["transition_matrices"] = transitions.transition_matrices(theta)
        if self.variant_config.has_prior_scales:
            if self.variant_config.scale_inference == "variational":
                summary["prior_scales"] = self.guide.scale_posterior().mean
            else:
                summary["prior_scales"] = self.model.scales.detach().clone()
        return summary

    @torch.no_grad()
    def reconstruct(self, frames: torch.Tensor) -> torch.Tensor:
        """Decoded posterior mean of ``z``: ``(B, T, C, H, W)`` (see :meth:`decode`)."""
        _, latent_posterior = self._posterior(frames)
        return self.decode(self.guide.transitions.positions(latent_posterior.mean))

    @torch.no_grad()
    def forecast(
        self, frames: torch.Tensor, num_steps: int, num_samples: int = 0
    ) -> torch.Tensor:
        """Roll the inferred dynamics forward from the last frame and decode.

        With ``num_samples = 0`` (a point forecast) it starts at the posterior mean of the state
        at ``T-1`` (``z_{T-1}``, and ``v_{T-1}`` with ``velocity``) and applies the last inferred
        transition ``A_{T-1}`` (at the posterior mean of ``theta_{T-1}``) ``num_steps`` times,
        without noise: ``z <- A z + v``, ``v <- v``.

        With ``num_samples = S > 0`` it returns the mean of the model's predictive distribution
        of the frames, estimated by Monte Carlo: ``S`` states drawn from
        ``q(z_{T-1}, v_{T-1} | x)``, each propagated with the transition noise
        (``z <- A z + v + q eps``, ``v <- v + r eps'``), decoded, and averaged,

        .. math:: \\hat x_{T-1+k} = \\frac{1}{S} \\sum_s \\mathbb{E}[x \\mid
            z^{(s)}_{T-1+k}], \\qquad z^{(s)} \\sim p(z_{T-1+k} \\mid z_{T-1}) \\,
            q(z_{T-1} \\mid x_{0:T-1}),

        the forecast that minimises the expected squared error under the model: where the
        model is sure it is sharp, where it is not it spreads the object over the places the
        model thinks it can be.

        Models without transition parameters (``vae``, ``beta_vae``, ``slowvae``: the random
        walk's mean) keep the last latent (and its posterior samples, with ``num_samples``).

        :param frames: ``(B, T, C, H, W)``.
        :param int num_steps: ``k >= 1`` frames to predict.
        :param int num_samples: ``S >= 0`` Monte Carlo samples of the predictive mean (0: the
            point forecast).
        :returns: ``(B, k, C, H, W)``.
        """
        if not isinstance(num_steps, int) or num_steps < 1:
            raise ValueError(f"num_steps must be a positive int, got {num_steps!r}")
        if not isinstance(num_samples, int) or num_samples < 0:
            raise ValueError(f"num_samples must be an int >= 0, got {num_samples!r}")
        summary, latent_posterior = self._posterior(frames)
        theta = summary.get("dynamics")
        last_theta = None if theta is None else theta[..., -1, :]
        transitions = self.guide.transitions
        if num_samples == 0:
            state, noise = latent_posterior.mean[..., -1, :], None
        else:
            state = latent_posterior.sample((num_samples,))[..., -1, :]
            noise = transitions.step_noise_scale(state)
        states = []
        for _ in range(num_steps):
            state = transitions.propagate(last_theta, state)
            if noise is not None:
                state = state + noise * torch.randn_like(state)
            states.append(state)
        decoded = self.decode(transitions.positions(torch.stack(states, dim=-2)))
        return decoded if num_samples == 0 else decoded.mean(0)


def build_model(
    variant: str,
    *,
    image_size: int = 64,
    channels: int = 1,
    latent_dim: int = 8,
    num_sequences: int | None = None,
    **overrides,
) -> DynamicsVAE | DSVAE:
    """Build a named variant of the dynamics VAE (or the DSVAE baseline).

    :param str variant: a key of :data:`VARIANTS`, or of
        :data:`~pyro_dynvae.models.dsvae.DSVAE_VARIANTS` (then see :func:`build_dsvae`).
    :param int image_size: frame side (``H = W``).
    :param int channels: frame channels.
    :param int latent_dim: ``n``.
    :param num_sequences: training set size, for minibatch scaling (None: the batch size).
    :param overrides: any other :class:`DynamicsVAEConfig` field.
    """
    if variant in DSVAE_VARIANTS:
        return build_dsvae(
            variant,
            image_size=image_size,
            channels=channels,
            latent_dim=latent_dim,
            num_sequences=num_sequences,
            **overrides,
        )
    if variant not in VARIANTS:
        known = sorted([*VARIANTS, *DSVAE_VARIANTS])
        raise ValueError(f"unknown variant {variant!r}; known variants: {known}")
    config = replace_options(
        VARIANTS[variant],
        "build_model",
        image_size=image_size,
        channels=channels,
        latent_dim=latent_dim,
        num_sequences=num_sequences,
        **overrides,
    )
    return DynamicsVAE(config)

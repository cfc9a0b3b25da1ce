r"""DSVAE, the disentangled sequential autoencoder, as a Pyro program (a baseline).

Li and Mandt 2018, "Disentangled Sequential Autoencoder" (ICML). A sequence ``x_{0:T-1}`` has
one static code ``f`` (size ``d_f = static_dim``) and per-frame dynamic codes ``z_t`` (size
``d_z = latent_dim - static_dim``); the static/dynamic split is given by the model's structure,
not learned. Generative model, per sequence:

.. math::

    f \sim N(0, I_{d_f}), \qquad
    z_t \mid z_{<t} \sim N(\mu_t, \mathrm{diag}(\sigma_t^2)), \quad
    (\mu_t, \sigma_t) = g(h_t), \quad h_t = \mathrm{LSTM}(z_{t-1}, h_{t-1}), \quad
    t = 0..T-1,

    x_t \mid f, z_t \sim \text{likelihood}(\mathrm{decoder}([f, z_t]))

with ``z_{-1} = 0`` and ``h_{-1} = 0`` (so ``p(z_0)`` is a learned Gaussian) and ``g`` an
affine map to the mean and a softplus precision :math:`\sigma_t^{-2}` (:class:`LocalPotentials`).
The decoder reads the concatenated code ``[f, z_t]`` of size ``latent_dim``, frame by frame.

Guide: the paper's *factorised* posterior,

.. math::

    q(f \mid x_{0:T-1}) = N(m_f, \mathrm{diag}(r_f)^{-1}), \quad
    (m_f, r_f) = a([\overrightarrow{h}_{T-1}, \overleftarrow{h}_0]), \qquad
    q(z_t \mid x_t) = N(m_t, \mathrm{diag}(r_t)^{-1}), \quad (m_t, r_t) = b(e_t),

with ``e_t`` the frame encoder's features of ``x_t`` and ``[h->_{T-1}, h<-_0]`` the final states
of a bidirectional LSTM over ``e_{0:T-1}``. Of the paper's two choices this is the one in which
``z_t`` sees only its own frame: whatever needs the whole sequence to be read has to pass
through ``f`` (the "full" ``q(z_t | x_{0:T-1}, f)`` lets ``z_t`` read it as well).

ELBO (sites ``f``, ``z``, ``frames`` in a plate over sequences, minibatches scaled by
``num_sequences / B`` as for the other variants):

.. math::

    \mathcal{L} = E_q\Big[\sum_t \log p(x_t \mid f, z_t)\Big]
    - a\, KL(q(f \mid x) \,\|\, N(0, I))
    - a\, E_q\big[\log q(z \mid x) - \log p(z)\big],

where the KL of ``f`` is analytic (Normal vs Normal) and the ``z`` term, whose prior is
autoregressive, is Monte Carlo at the sampled ``z`` (``log p(z) = sum_t log N(z_t; mu_t,
sigma_t)`` with the LSTM fed the sample itself). ``a`` is :attr:`DSVAE.kl_annealing` (1 for
the ELBO). :meth:`DSVAE.make_elbo` returns ``TraceMeanField_ELBO``, which uses the analytic KL
where torch has one and falls back to Monte Carlo for ``z``; the guide is mean field across
``f`` and ``z``, as it requires. :meth:`DSVAEConfig.elbo_terms` says this per site.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from pyro.distributions import TorchDistribution, constraints
from pyro.infer import ELBO, TraceMeanField_ELBO
from pyro.nn import PyroModule
from torch import nn

from pyro_dynvae.nets import LocalPotentials

from .frames import (
    add_observation_scale,
    check_frames,
    frame_decoder,
    frame_encoder,
    frame_mean,
    observe_frames,
    sequence_plate,
)
from .options import (
    FRAME_CHOICES,
    FRAME_POSITIVE,
    FRAME_TUPLES,
    FrameOptions,
    check_options,
    options_dict,
    replace_options,
)

__all__ = [
    "DSVAE",
    "DSVAEConfig",
    "DSVAEGuide",
    "DSVAEModel",
    "DSVAE_VARIANTS",
    "RecurrentGaussian",
    "RecurrentPrior",
    "build_dsvae",
    "frame_codes",
]

_POSITIVE = (*FRAME_POSITIVE, "rnn_hidden", "precision_floor")


@dataclass(frozen=True)
class DSVAEConfig(FrameOptions):
    """All options of DSVAE (one flat, JSON-serialisable record).

    Data: ``image_size``, ``channels``, ``num_sequences`` as for
    :class:`~pyro_dynvae.models.DynamicsVAEConfig`. Codes: ``latent_dim`` (``D``, the size of
    the per-frame code ``[f, z_t]`` that the decoder reads, the same total as the other
    variants') splits into ``static_dim`` (``d_f``, the size of ``f``; None:
    ``D - max(1, D // 4)``, a quarter of the code for ``z``) and ``D - static_dim`` (``d_z``);
    both parts need at least one latent, so ``D >= 2``. Nothing
    in the ELBO keeps static information out of ``z``: once the LSTM prior predicts it, a level
    stored in ``z_t`` costs about what it costs in ``f``. What keeps it in ``f`` is a ``z`` too
    small to hold it as well (the paper's models have a ``z`` much smaller than ``f``). Measured
    on the tests' 4x4 moving-bar videos (``D = 4``, 300 steps): with ``d_z = 2`` the static
    level went to ``z`` as well as ``f`` and swapping ``f`` left it where it was (seeds 0, 1);
    with ``d_z = 1`` swapping ``f`` moved it (seeds 0, 1, 2). Hence the default gives ``z`` a
    quarter of the code.

    Networks: ``architecture``, ``conv_channels``, ``conv_activation``, ``feature_dim``,
    ``encoder_hidden``, ``decoder_hidden`` as for the other variants (the same frame networks);
    ``rnn_hidden``, the width of the LSTMs (each direction of ``q(f | x)``'s, and the prior's);
    ``precision_floor``, the smallest precision of every Gaussian (posteriors and prior), so
    that no variance exceeds ``1 / precision_floor``.

    Objective: ``likelihood``, ``observation_scale``, ``learn_observation_scale`` as for the
    other variants.
    """

    variant: str = "dsvae"
    image_size: int = 64
    channels: int = 1
    latent_dim: int = 8
    num_sequences: int | None = None
    static_dim: int | None = None
    rnn_hidden: int = 64
    precision_floor: float = 1e-3

    def __post_init__(self):
        if self.variant != "dsvae":
            raise ValueError(f"variant must be 'dsvae', got {self.variant!r}")
        check_options(self, choices=FRAME_CHOICES, positive=_POSITIVE, tuples=FRAME_TUPLES)
        if self.latent_dim < 2:
            raise ValueError(
                "latent_dim must be >= 2 (one static and one dynamic latent), got "
                f"{self.latent_dim}"
            )
        static_dim = self.static_dim
        if static_dim is None:
            static_dim = self.latent_dim - max(1, self.latent_dim // 4)
        if isinstance(static_dim, bool) or not isinstance(static_dim, int):
            raise TypeError(f"static_dim must be an int or None, got {self.static_dim!r}")
        if not 1 <= static_dim < self.latent_dim:
            raise ValueError(
                f"static_dim must lie in [1, latent_dim - 1] = [1, {self.latent_dim - 1}], "
                f"got {static_dim}"
            )
        object.__setattr__(self, "static_dim", static_dim)

    @property
    def dynamic_dim(self) -> int:
        """``d_z = latent_dim - static_dim``."""
        return self.latent_dim - self.static_dim

    def elbo_terms(self) -> dict[str, str]:
        """How each ELBO term is computed: site name -> ``"analytic"`` or ``"monte carlo"``."""
        return {
            "f": "analytic",
            "z": "monte carlo (recurrent LSTM prior)",
            "frames": "monte carlo",
        }

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable dict; ``build_model(**config.to_dict())`` rebuilds the model."""
        return options_dict(self)


#: name -> :class:`DSVAEConfig`; :func:`~pyro_dynvae.models.build_model` dispatches these names
#: to :func:`build_dsvae`.
DSVAE_VARIANTS: dict[str, DSVAEConfig] = {"dsvae": DSVAEConfig()}


class RecurrentPrior(nn.Module):
    """The LSTM of ``p(z_t | z_{<t})``: ``h_t = LSTM(z_{t-1}, h_{t-1})`` and
    ``(mu_t, sigma_t^-2) = g(h_t)``, with ``z_{-1} = 0`` and ``h_{-1} = 0``.

    :param int latent_dim: ``d_z``.
    :param int hidden_dim: LSTM width.
    :param float precision_floor: smallest precision ``sigma_t^-2``.
    """

    def __init__(self, latent_dim: int, hidden_dim: int, precision_floor: float):
        super().__init__()
        self.latent_dim = latent_dim
        self.lstm = nn.LSTM(latent_dim, hidden_dim, batch_first=True)
        self.head = LocalPotentials(hidden_dim, latent_dim, precision_floor=precision_floor)

    def step(
        self, inputs: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """Run the LSTM over ``inputs`` ``(N, S, d_z)`` from ``state`` (None: zeros).

        :returns: ``(loc, scale, state)``: ``loc`` and ``scale`` ``(N, S, d_z)`` of ``z`` at the
            step after each input, and the LSTM state after the last one.
        """
        hidden, state = self.lstm(inputs, state)
        loc, precision = self.head(hidden)
        return loc, precision.rsqrt(), state

    def conditionals(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(mu_t, sigma_t)`` of ``p(z_t | z_{<t})`` for ``t = 0..T-1`` given ``z`` ``(..., T,
        d_z)`` (teacher forcing: the LSTM reads ``z`` itself), each ``(..., T, d_z)``."""
        num_frames, dim = z.shape[-2:]
        flat = z.reshape(-1, num_frames, dim)
        inputs = torch.cat([flat.new_zeros(flat.shape[0], 1, dim), flat[:, :-1]], dim=1)
        loc, scale, _ = self.step(inputs)
        return loc.reshape(z.shape), scale.reshape(z.shape)

    def sample(self, batch_shape: torch.Size, num_frames: int, like: torch.Tensor) -> torch.Tensor:
        """Ancestral (reparameterised) sample ``(*batch_shape, T, d_z)`` of ``p(z)``."""
        num = batch_shape.numel()
        inputs = like.new_zeros(num, 1, self.latent_dim)
        state, samples = None, []
        for _ in range(num_frames):
            loc, scale, state = self.step(inputs, state)
            inputs = loc + scale * torch.randn_like(loc)
            samples.append(inputs)
        return torch.cat(samples, dim=1).reshape(*batch_shape, num_frames, self.latent_dim)

    def rollout(self, z: torch.Tensor, num_steps: int, sample: bool = False) -> torch.Tensor:
        """The prior's path after ``z`` ``(..., T, d_z)``, ``(..., num_steps, d_z)``: its mean
        path ``z_{T} = mu_T(z_{<T})``, then ``z_{t+1} = mu_{t+1}(z_{<=t})`` feeding each mean
        back; with ``sample``, a draw ``z_{t+1} ~ N(mu_{t+1}, sigma_{t+1}^2)`` fed back instead."""
        flat = z.reshape(-1, *z.shape[-2:])
        inputs = torch.cat([flat.new_zeros(flat.shape[0], 1, self.latent_dim), flat], dim=1)
        loc, scale, state = self.step(inputs)
        loc, scale = loc[:, -1:], scale[:, -1:]
        path = []
        for step in range(num_steps):
            path.append(loc + scale * torch.randn_like(loc) if sample else loc)
            if step < num_steps - 1:
                loc, scale, state = self.step(path[-1], state)
        return torch.cat(path, dim=1).reshape(*z.shape[:-2], num_steps, self.latent_dim)


class RecurrentGaussian(TorchDistribution):
    """``p(z) = prod_t N(z_t; mu_t(z_{<t}), diag(sigma_t^2))`` of event shape ``(T, d_z)``.

    ``log_prob`` runs the LSTM on the value (one call over all steps); ``rsample`` draws
    ancestrally, step by step. There is no closed-form KL against it: ELBOs estimate its term
    by Monte Carlo.

    :param RecurrentPrior prior: the LSTM and its Gaussian head.
    :param int num_frames: ``T``.
    :param tuple batch_shape: batch shape.
    :param torch.Tensor like: sets the dtype and device of samples.
    """

    arg_constraints: dict = {}
    support = constraints.independent(constraints.real, 2)
    has_rsample = True

    def __init__(
        self,
        prior: RecurrentPrior,
        num_frames: int,
        batch_shape: tuple[int, ...],
        like: torch.Tensor,
        validate_args=None,
    ):
        self.prior, self.like = prior, like
        event_shape = torch.Size((num_frames, prior.latent_dim))
        super().__init__(torch.Size(batch_shape), event_shape, validate_args=validate_args)

    def expand(self, batch_shape, _instance=None) -> RecurrentGaussian:
        return RecurrentGaussian(
            self.prior,
            self.event_shape[0],
            torch.Size(batch_shape),
            self.like,
            validate_args=self._validate_args,
        )

    def rsample(self, sample_shape=()) -> torch.Tensor:
        shape = torch.Size(sample_shape) + self.batch_shape
        return self.prior.sample(shape, self.event_shape[0], self.like)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        if self._validate_args:
            self._validate_sample(value)
        loc, scale = self.prior.conditionals(value)
        log_prob = dist.Normal(loc, scale).log_prob(value).sum((-1, -2))
        return log_prob.expand(torch.broadcast_shapes(log_prob.shape, self.batch_shape))


class DSVAEModel(PyroModule):
    """The generative model ``p(f) p(z) p(x | f, z)``; call as ``model(frames)``.

    :param DSVAEConfig config: the configuration.
    """

    def __init__(self, config: DSVAEConfig):
        super().__init__()
        self.config = config
        self.kl_annealing = 1.0
        self.prior = RecurrentPrior(config.dynamic_dim, config.rnn_hidden, config.precision_floor)
        self.decoder = frame_decoder(config)
        add_observation_scale(self, config)

    def forward(self, frames: torch.Tensor) -> None:
        config = self.config
        batch_size, num_frames = check_frames(frames, config)
        with sequence_plate(config, batch_size, frames.device):
            with poutine.scale(scale=self.kl_annealing):
                static_prior = dist.Normal(frames.new_zeros(config.static_dim), 1.0)
                static = pyro.sample("f", static_prior.to_event(1))
                dynamic = pyro.sample(
                    "z", RecurrentGaussian(self.prior, num_frames, (batch_size,), frames)
                )
            output = self.decoder(frame_codes(static, dynamic))
            observe_frames(config, output, frames, self.observation_scale)


class DSVAEGuide(PyroModule):
    """The factorised guide ``q(f | x_{0:T-1}) prod_t q(z_t | x_t)``; call as ``guide(frames)``.

    :param DSVAEConfig config: the configuration.
    """

    def __init__(self, config: DSVAEConfig):
        super().__init__()
        self.config = config
        self.kl_annealing = 1.0
        self.encoder = frame_encoder(config)
        features = self.encoder.feature_dim
        self.static_rnn = nn.LSTM(features, config.rnn_hidden, batch_first=True, bidirectional=True)
        floor = config.precision_floor
        self.static_head = LocalPotentials(2 * config.rnn_hidden, config.static_dim, 0, floor)
        self.dynamic_head = LocalPotentials(features, config.dynamic_dim, 0, floor)

    def posteriors(self, frames: torch.Tensor) -> tuple[dist.Normal, dist.Normal]:
        """``q(f | x)`` (batch ``(B, d_f)``) and ``q(z | x)`` (batch ``(B, T, d_z)``) as Normals
        without event dims, from frames ``(B, T, C, H, W)``."""
        features = self.encoder(frames)
        _, (final, _) = self.static_rnn(features)  # final: (2, B, H), forward then backward
        static_loc, static_precision = self.static_head(torch.cat([final[0], final[1]], -1))
        dynamic_loc, dynamic_precision = self.dynamic_head(features)
        return (
            dist.Normal(static_loc, static_precision.rsqrt()),
            dist.Normal(dynamic_loc, dynamic_precision.rsqrt()),
        )

    def forward(self, frames: torch.Tensor) -> None:
        batch_size, _ = check_frames(frames, self.config)
        static, dynamic = self.posteriors(frames)
        with sequence_plate(self.config, batch_size, frames.device):
            with poutine.scale(scale=self.kl_annealing):
                pyro.sample("f", static.to_event(1))
                pyro.sample("z", dynamic.to_event(2))


def frame_codes(static: torch.Tensor, dynamic: torch.Tensor) -> torch.Tensor:
    """The per-frame codes ``[f, z_t]`` ``(..., T, d_f + d_z)`` from ``f`` ``(..., d_f)`` and
    ``z`` ``(..., T, d_z)`` (``f`` repeated over the frames, first)."""
    static = static.unsqueeze(-2).expand(*dynamic.shape[:-1], static.shape[-1])
    return torch.cat([static, dynamic], dim=-1)


class DSVAE(nn.Module):
    """DSVAE: ``.model`` and ``.guide`` (PyroModules) and posterior summaries, with the
    interface of :class:`~pyro_dynvae.models.DynamicsVAE`.

    Train with ``pyro.settings.set(module_local_params=True)``,
    ``loss_fn = dsvae.make_elbo()(dsvae.model, dsvae.guide)`` and a torch optimizer over
    ``loss_fn.parameters()``; ``loss_fn(frames)`` is the negative ELBO of a minibatch.

    Per-frame codes are ``[f, z_t]`` of size ``latent_dim``: latents ``0..d_f-1`` are ``f``
    (constant over a sequence), the rest ``z_t``.

    :param DSVAEConfig config: the configuration.
    """

    def __init__(self, config: DSVAEConfig):
        super().__init__()
        self.variant_config = config
        self.model = DSVAEModel(config)
        self.guide = DSVAEGuide(config)

    @property
    def kl_annealing(self) -> float:
        """The factor ``a`` in ``[0, 1]`` on the ``f`` and ``z`` terms during KL annealing (1 by
        default; the ELBO is a lower bound only at 1)."""
        return self.model.kl_annealing

    @kl_annealing.setter
    def kl_annealing(self, value: float) -> None:
        if not 0 <= value <= 1:
            raise ValueError(f"kl_annealing must lie in [0, 1], got {value}")
        self.model.kl_annealing = self.guide.kl_annealing = float(value)

    @contextlib.contextmanager
    def exact_elbo(self) -> Iterator[None]:
        """Inside, ``make_elbo()(model, guide)`` is the negative ELBO itself: KL annealing at 1
        (see :meth:`pyro_dynvae.models.dynvae.DynamicsVAE.exact_elbo`)."""
        annealing = self.kl_annealing
        self.kl_annealing = 1.0
        try:
            yield
        finally:
            self.kl_annealing = annealing

    @property
    def config(self) -> dict:
        """JSON-serialisable configuration; ``build_model(**config)`` rebuilds this model."""
        return self.variant_config.to_dict()

    @property
    def static_latents(self) -> torch.Tensor:
        """Indices of ``f`` in the per-frame code, ``(d_f,)`` long."""
        return torch.arange(self.variant_config.static_dim)

    def make_elbo(self, **kwargs) -> ELBO:
        """``TraceMeanField_ELBO``: analytic KL for ``f``, Monte Carlo for ``z`` (see
        ``self.variant_config.elbo_terms()``). Keyword arguments go to the ELBO (e.g.
        ``num_particles``, ``vectorize_particles``); ``max_plate_nesting`` is 1."""
        kwargs.setdefault("max_plate_nesting", 1)
        return TraceMeanField_ELBO(**kwargs)

    @torch.no_grad()
    def encode(self, frames: torch.Tensor) -> dict[str, torch.Tensor]:
        """Posterior summaries of a batch of sequences (no gradients).

        :param frames: ``(B, T, C, H, W)`` in [0, 1].
        :returns: dict with ``"z_mean"`` and ``"z_variance"`` ``(B, T, D)``: means and variances
            of the per-frame code ``[f, z_t]`` under the guide (``f``'s repeated over the
            frames); ``"static_latents"`` ``(d_f,)`` and ``"dynamic_latents"`` ``(d_z,)``, the
            indices of ``f`` and ``z_t`` in that code (long).
        """
        check_frames(frames, self.variant_config)
        static, dynamic = self.guide.posteriors(frames)
        static_latents = self.static_latents.to(frames.device)
        return {
            "z_mean": frame_codes(static.mean, dynamic.mean),
            "z_variance": frame_codes(static.variance, dynamic.variance),
            "static_latents": static_latents,
            "dynamic_latents": torch.arange(
                len(static_latents), self.variant_config.latent_dim, device=frames.device
            ),
        }

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Frames shown for per-frame codes ``[f, z_t]`` ``(..., D)``: ``(..., C, H, W)``, the
        Gaussian mean or the Bernoulli probabilities (see
        :func:`~pyro_dynvae.models.frames.frame_mean`)."""
        if latents.shape[-1] != self.variant_config.latent_dim:
            raise ValueError(
                f"latents must have shape (..., {self.variant_config.latent_dim}), got "
                f"{tuple(latents.shape)}"
            )
        return frame_mean(self.variant_config, self.model.decoder(latents))

    @torch.no_grad()
    def reconstruct(self, frames: torch.Tensor) -> torch.Tensor:
        """Decoded posterior means of ``[f, z_t]``: ``(B, T, C, H, W)``."""
        return self.decode(self.encode(frames)["z_mean"])

    @torch.no_grad()
    def forecast(
        self, frames: torch.Tensor, num_steps: int, num_samples: int = 0
    ) -> torch.Tensor:
        """Roll the recurrent prior forward from the observed frames and decode.

        With ``num_samples = 0`` (a point forecast) the LSTM reads the posterior means of
        ``z_0..z_{T-1}``, then emits the prior mean of the next ``z`` and feeds it back,
        ``num_steps`` times, without noise; ``f`` is kept at its posterior mean. With
        ``num_samples = S > 0`` it is the Monte Carlo mean of the predictive distribution of the
        frames (as :meth:`~pyro_dynvae.models.DynamicsVAE.forecast`): ``S`` draws of ``f`` and
        ``z_{0:T-1}`` from the posteriors, each rolled forward by sampling the prior, decoded
        and averaged.

        :param frames: ``(B, T, C, H, W)``.
        :param int num_steps: ``k >= 1`` frames to predict.
        :param int num_samples: ``S >= 0`` Monte Carlo samples (0: the point forecast).
        :returns: ``(B, k, C, H, W)``.
        """
        if not isinstance(num_steps, int) or num_steps < 1:
            raise ValueError(f"num_steps must be a positive int, got {num_steps!r}")
        if not isinstance(num_samples, int) or num_samples < 0:
            raise ValueError(f"num_samples must be an int >= 0, got {num_samples!r}")
        check_frames(frames, self.variant_config)
        static, dynamic = self.guide.posteriors(frames)
        if num_samples == 0:
            future = self.model.prior.rollout(dynamic.mean, num_steps)
            return self.decode(frame_codes(static.mean, future))
        shape = (num_samples,)
        future = self.model.prior.rollout(dynamic.sample(shape), num_steps, sample=True)
        return self.decode(frame_codes(static.sample(shape), future)).mean(0)

    @torch.no_grad()
    def sample_prior_latents(self, num_sequences: int, num_frames: int) -> torch.Tensor:
        """Per-frame codes ``[f, z_t]`` ``(num_sequences, num_frames, D)`` from the prior:
        ``f ~ N(0, I)`` (one per sequence), ``z`` from the recurrent prior."""
        for name, value in (("num_sequences", num_sequences), ("num_frames", num_frames)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        like = next(self.parameters())
        static = torch.randn(num_sequences, self.variant_config.static_dim).to(like)
        dynamic = self.model.prior.sample(torch.Size([num_sequences]), num_frames, like)
        return frame_codes(static, dynamic)


def build_dsvae(
    variant: str = "dsvae",
    *,
    image_size: int = 64,
    channels: int = 1,
    latent_dim: int = 8,
    num_sequences: int | None = None,
    **overrides,
) -> DSVAE:
    """Build DSVAE (what :func:`~pyro_dynvae.models.build_model` does for ``"dsvae"``).

    :param str variant: a key of :data:`DSVAE_VARIANTS`.
    :param int image_size: frame side (``H = W``).
    :param int channels: frame channels.
    :param int latent_dim: ``D``, the size of the per-frame code ``[f, z_t]``.
    :param num_sequences: training set size, for minibatch scaling (None: the batch size).
    :param overrides: any other :class:`DSVAEConfig` field (e.g. ``static_dim``).
    """
    if variant not in DSVAE_VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; known: {sorted(DSVAE_VARIANTS)}")
    overrides.setdefault("static_dim", None)  # None: from this latent_dim, not the default's
    config = replace_options(
        DSVAE_VARIANTS[variant],
        f"build_model({variant!r})",
        image_size=image_size,
        channels=channels,
        latent_dim=latent_dim,
        num_sequences=num_sequences,
        **overrides,
    )
    return DSVAE(config)

"""Configuration of the dynamics VAE and the registry of named variants.

Every variant is the same Pyro program (:mod:`pyro_dynvae.models.dynvae`) under a different
:class:`DynamicsVAEConfig`. ``theta_t`` below is the transition parameter vector of step
``t-1 -> t``: the eigenvalues ``lambda_t`` for diagonal dynamics, ``vec(A_t)`` for dense ones,
``(r_k, phi_k)`` pairs (eigenvalues ``r_k exp(+-i phi_k)``) for 2x2 rotation-scaling blocks.
Its "slow" centre ``c`` is the identity transition (``lambda = 1``, ``A = I``, ``r = 1, phi = 0``).

=================  ==========================================================================
name               configuration
=================  ==========================================================================
``unconstrained``  diagonal ``A_t``; ``theta_t = NN(x_t, x_{t-1})`` a point estimate, no penalty
``slow_l1``        as above plus ``pyro.factor`` penalty ``gamma * sum |theta - c|``
``weighted_l1``    penalty ``sum_i gamma(i) |theta^(i) - c|``, ``gamma(i)`` a schedule
                   (``penalty_schedule``: ``linear`` ``gamma * (i+1)``, ``constant``,
                   ``geometric`` ``gamma * ratio**i``)
``hierarchical``   ``theta^(i) ~ Laplace(c, s_i)`` (or Normal), ``s_i ~ HalfCauchy(1)`` with
                   ``q(s_i)`` LogNormal (``scale_inference="variational"``), or ``s_i`` a
                   positive parameter fitted by type-II maximum likelihood (``"type2"``), or
                   fixed (``"fixed"``); ``q(theta_t | x_t, x_{t-1})`` Normal
``timescales``     ``hierarchical`` with the noise and velocity scales fixed (not learned) and
                   spread geometrically over ``(1e-4, 1)``: a fixed spectrum of timescales
                   from nearly static latents to fast ones, so that the ELBO, not the
                   optimiser's drift of the scales, decides which content is static
``full_a``         dense ``A_t = I + NN(x_t, x_{t-1})``, penalty on ``A_t - I`` (or a prior
                   through ``dynamics_prior``; scale group = row of ``A_t``)
``block_a``        ``A_t = L blockdiag(r_k R(phi_k)) L^-1`` with learned well-conditioned basis
                   ``L``; penalty on ``(r_k - 1, phi_k)``
``meanfield``      ``hierarchical`` with a guide without temporal coupling (per-frame Gaussians)
``vae``            per-frame ``N(0, I)`` prior, mean-field guide
``beta_vae``       ``vae`` with the KL term weighted by ``beta`` (``kl_scale``, via
                   ``poutine.scale`` on the latent site in model and guide)
``slowvae``        Klindt et al. 2021: ``z_0 ~ N(0, I)``, ``z_t - z_{t-1} ~ Laplace(0, 1/rate)``,
                   mean-field guide
=================  ==========================================================================

Which ELBO terms are analytic and which are Monte Carlo is a function of the configuration:
:meth:`DynamicsVAEConfig.elbo_terms` says it per site (and holds for overridden variants too):

- ``z``: analytic ``KL(q(z | x, theta) || p(z | theta))`` between two BlockTridiagMVNs (given the
  sampled ``theta``) for every Gaussian prior (all but ``slowvae``, whose Laplace random walk
  needs Monte Carlo ``log p(z) - log q(z)``);
- ``dynamics``: Normal posterior vs Laplace or Normal prior: analytic (torch's registered KLs);
  point estimates: ``KL(Delta || p) = -log p(theta)`` exactly (zero under the flat prior of the
  penalty variants, whose penalty enters as a ``pyro.factor``);
- ``prior_scales``: ``LogNormal`` vs ``HalfCauchy``: Monte Carlo;
- ``frames``: the expected log-likelihood, always Monte Carlo (reparameterised).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .options import (
    FRAME_CHOICES,
    FRAME_POSITIVE,
    FRAME_TUPLES,
    FrameOptions,
    check_options,
    options_dict,
)

__all__ = ["DynamicsVAEConfig", "VARIANTS"]

_CHOICES = {
    "dynamics": ("diagonal", "full", "block", "none", "random_walk"),
    "dynamics_posterior": ("point", "normal"),
    "dynamics_prior": (None, "laplace", "normal"),
    "scale_inference": ("variational", "type2", "fixed"),
    "penalty_schedule": ("constant", "linear", "geometric"),
    "guide": ("structured", "meanfield"),
    **FRAME_CHOICES,
}
_POSITIVE = (
    *FRAME_POSITIVE,
    "prior_scale",
    "penalty_ratio",
    "block_basis_log_cond",
    "slowness_rate",
    "precision_floor",
    "dynamics_hidden",
)


@dataclass(frozen=True)
class DynamicsVAEConfig(FrameOptions):
    """All options of the dynamics VAE (one flat, JSON-serialisable record).

    Data: ``image_size``, ``channels`` (frames ``(B, T, channels, image_size, image_size)``),
    ``latent_dim`` (``n``), ``num_sequences`` (size of the training set, so that minibatches are
    scaled by ``num_sequences / B`` against global variables; None: no scaling).

    Dynamics: ``dynamics`` (``"diagonal"`` ``A_t``, ``"full"``, ``"block"`` 2x2 blocks,
    ``"none"`` independent frames, ``"random_walk"`` the slowVAE Laplace walk);
    ``dynamics_posterior`` (``"point"``: Delta at the network's output, ``"normal"``);
    ``dynamics_prior`` (None: flat, ``"laplace"``, ``"normal"``, centred on the identity with
    scales ``s``); ``scale_inference`` and ``prior_scale`` (``s`` fixed at / initialised to this;
    the variational ``q(s)`` starts with this median); ``penalty_weight`` (``gamma``, 0 for none),
    ``penalty_schedule``, ``penalty_ratio``; ``transition_scale`` ``(lowest, highest)`` (initial
    standard deviations ``q_i`` of the transition noise ``Q = diag(q^2)``, spread geometrically
    over the latents, and of the velocity's; a single float gives every latent the same scale;
    the noise scales learned when ``learn_transition_scale``, the velocity's when
    ``learn_velocity_scale``, which follows ``learn_transition_scale`` when None); ``velocity``
    (a latent velocity per latent, the
    drift ``z_t = A_t z_{t-1} + v_{t-1} + w_t`` that translation needs, see
    :mod:`~pyro_dynvae.models.dynamics`); ``eigenvalue_bound`` (``b``: point-estimate transition
    parameters are ``c + b tanh((NN - c) / b)``, within ``b`` of the identity, so that a flat
    prior cannot make them a free channel for the frames' content; None: unbounded);
    ``block_basis_log_cond`` (block basis ``L``: ``cond(L) < exp(block_basis_log_cond)``);
    ``slowness_rate`` (Laplace rate of the slowVAE walk).

    Guide: ``guide`` (``"structured"`` BlockTridiagMVN ``J_prior + blockdiag(R_t)``, or
    ``"meanfield"`` per-frame ``N(m_t, R_t^-1)``), ``potential_rank`` (low-rank part of ``R_t``),
    ``precision_floor``.

    Objective: ``kl_scale`` (``beta`` on the latent term), ``likelihood``
    (``"gaussian"`` with standard deviation ``observation_scale``, a learned parameter when
    ``learn_observation_scale`` (type-II maximum likelihood, the calibrated decoder of Rybkin et
    al. 2021, "Simple and effective VAE training with calibrated decoders"); ``"bernoulli"`` on
    frames binarised at 0.5; ``"continuous_bernoulli"`` on frames in [0, 1]). Training picks the
    dataset's default (:data:`pyro_dynvae.defaults.DATASET_MODEL_DEFAULTS`): Bernoulli for
    (nearly) binary frames such as Moving MNIST, a Gaussian with a learned scale for sprites
    over grey or textured backgrounds. The continuous Bernoulli's density grows without bound
    as its parameter goes to 0 or 1 (capped only by float32 clamping, about 2.8 nats per pixel),
    so on nearly binary frames its loss is dominated by pushing background logits to the
    extremes.

    Networks: ``architecture`` (``"conv"``; ``"broadcast"``, the conv encoder with a spatial
    broadcast decoder, :class:`~pyro_dynvae.nets.ConvDecoder`; or ``"mlp"`` on flattened frames),
    ``conv_channels``, ``conv_activation`` (``"elu"``, ``"leaky_relu"`` or ``"relu"``),
    ``feature_dim`` (conv features), ``encoder_hidden`` / ``decoder_hidden`` (MLP widths; ``()``
    gives an identity encoder / affine decoder), ``dynamics_hidden``.
    """

    variant: str = "hierarchical"
    image_size: int = 64
    channels: int = 1
    latent_dim: int = 8
    num_sequences: int | None = None
    dynamics: str = "diagonal"
    dynamics_posterior: str = "point"
    dynamics_prior: str | None = None
    scale_inference: str = "variational"
    prior_scale: float = 0.1
    penalty_weight: float = 0.0
    penalty_schedule: str = "constant"
    penalty_ratio: float = 2.0
    transition_scale: tuple[float, float] = (0.01, 1.0)
    learn_transition_scale: bool = True
    learn_velocity_scale: bool | None = None
    velocity: bool = False
    eigenvalue_bound: float | None = 0.5
    block_basis_log_cond: float = 2.0
    slowness_rate: float = 6.0
    guide: str = "structured"
    potential_rank: int = 0
    precision_floor: float = 1e-3
    kl_scale: float = 1.0
    dynamics_hidden: int = 64

    def __post_init__(self):
        check_options(self, choices=_CHOICES, positive=_POSITIVE, tuples=FRAME_TUPLES)
        scale_range = self.transition_scale
        if isinstance(scale_range, (int, float)):
            scale_range = (scale_range, scale_range)
        scale_range = tuple(float(v) for v in scale_range)
        if len(scale_range) != 2 or not 0 < scale_range[0] <= scale_range[1]:
            raise ValueError(
                "transition_scale must be a positive float or a pair (lowest, highest) with "
                f"0 < lowest <= highest, got {self.transition_scale!r}"
            )
        object.__setattr__(self, "transition_scale", scale_range)
        for name, allowed in (("learn_transition_scale", (True, False)),
                              ("velocity", (True, False)),
                              ("learn_velocity_scale", (True, False, None))):
            if not any(getattr(self, name) is value for value in allowed):
                raise TypeError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")
        if self.penalty_weight < 0 or self.kl_scale < 0:
            raise ValueError("penalty_weight and kl_scale must be >= 0")
        if self.dynamics == "block" and self.latent_dim % 2:
            raise ValueError(f"block dynamics need an even latent_dim, got {self.latent_dim}")
        if self.eigenvalue_bound is not None and not self.eigenvalue_bound > 0:
            raise ValueError(
                f"eigenvalue_bound must be positive or None, got {self.eigenvalue_bound}"
            )
        if self.velocity and not self.has_dynamics_site:
            raise ValueError(
                "velocity=True needs linear dynamics (diagonal, full or block), "
                f"got dynamics={self.dynamics!r}"
            )
        if self.velocity and self.guide == "meanfield":
            raise ValueError(
                "velocity=True needs guide='structured': a mean-field guide has no temporal "
                "coupling through which to infer a velocity that no single frame shows"
            )
        if self.dynamics == "random_walk" and self.guide == "structured":
            raise ValueError(
                "the structured guide adds potentials to a Gaussian chain's precision; "
                "dynamics='random_walk' (Laplace) needs guide='meanfield'"
            )

    @property
    def has_dynamics_site(self) -> bool:
        """Whether there are per-step transition parameters ``theta_t`` (site ``dynamics``)."""
        return self.dynamics in ("diagonal", "full", "block")

    @property
    def has_prior_scales(self) -> bool:
        """Whether ``theta`` has a prior with scales ``s`` (site or ``model.scales``)."""
        return self.has_dynamics_site and self.dynamics_prior is not None

    def elbo_terms(self) -> dict[str, str]:
        """How each ELBO term is computed: site name -> ``"analytic"``, ``"monte carlo"``, ...

        This is what :meth:`DynamicsVAE.make_elbo` relies on (``TraceMeanField_ELBO`` when any
        term is analytic).
        """
        terms = {}
        if self.has_prior_scales and self.scale_inference == "variational":
            terms["prior_scales"] = "monte carlo (LogNormal vs HalfCauchy)"
        if self.has_dynamics_site:
            if self.dynamics_posterior == "point":
                terms["dynamics"] = "point estimate: -log p(theta) (0 for a flat prior)"
            elif self.dynamics_prior is None:
                terms["dynamics"] = "monte carlo (entropy of q under a flat prior)"
            else:
                terms["dynamics"] = "analytic"
            if self.penalty_weight > 0:
                terms["dynamics_penalty"] = "pyro.factor at the guide's theta"
        gaussian_prior = self.dynamics != "random_walk"
        terms["z"] = "analytic" if gaussian_prior else "monte carlo (Laplace random walk prior)"
        terms["frames"] = "monte carlo"
        return terms

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable dict; ``build_model(**config.to_dict())`` rebuilds the model."""
        return options_dict(self)


def _variant(name: str, **fields: Any) -> DynamicsVAEConfig:
    return DynamicsVAEConfig(variant=name, **fields)


_HIERARCHICAL = dict(dynamics_posterior="normal", dynamics_prior="laplace")
_MEANFIELD_BASELINE = dict(guide="meanfield")
_CHAIN = dict(velocity=True)

#: name -> :class:`DynamicsVAEConfig`; :func:`build_model` starts from these.
VARIANTS: dict[str, DynamicsVAEConfig] = {
    "unconstrained": _variant("unconstrained", **_CHAIN),
    "slow_l1": _variant("slow_l1", penalty_weight=10.0, **_CHAIN),
    "weighted_l1": _variant("weighted_l1", penalty_weight=2.0, penalty_schedule="linear", **_CHAIN),
    "hierarchical": _variant("hierarchical", **_HIERARCHICAL, **_CHAIN),
    # learned scales started over (0.01, 1) grow until no latent stays static (README: "What
    # keeps static content out of the static latents"); fixed over four decades, about half the
    # latents are static
    "timescales": _variant("timescales", **_HIERARCHICAL, **_CHAIN,
                           learn_transition_scale=False, transition_scale=(1e-4, 1.0)),
    "full_a": _variant("full_a", dynamics="full", penalty_weight=10.0, **_CHAIN),
    "block_a": _variant("block_a", dynamics="block", penalty_weight=10.0, **_CHAIN),
    # a mean-field guide cannot infer a velocity (no single frame shows one): no velocity
    "meanfield": _variant("meanfield", **_HIERARCHICAL, **_MEANFIELD_BASELINE),
    "vae": _variant("vae", dynamics="none", **_MEANFIELD_BASELINE),
    "beta_vae": _variant("beta_vae", dynamics="none", kl_scale=4.0, **_MEANFIELD_BASELINE),
    "slowvae": _variant("slowvae", dynamics="random_walk", **_MEANFIELD_BASELINE),
}

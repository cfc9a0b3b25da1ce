r"""Latent dynamics: transition matrices from transition parameters, and the prior over ``z``.

Per-frame latents ``z_t`` (``n`` of them, what the decoder reads) follow the linear-Gaussian chain

.. math::

    z_0 \sim N(0, I), \quad z_t = A_t z_{t-1} + v_{t-1} + w_t, \quad w_t \sim N(0, Q),
    \quad Q = \mathrm{diag}(q^2)

(column-vector convention, :meth:`BlockTridiagMVN.from_markov_chain`'s). Its law is a Gaussian
with block-tridiagonal precision, the prior ``p(z | theta)`` of the model. The transition
parameters ``theta_t`` (``t = 1..T-1``, shape ``(..., T-1, d)``) map to ``A_t``:

- ``"diagonal"``: ``A_t = diag(lambda_t)``, ``theta_t = lambda_t`` (``d = n``), the
  factorised case, handled by BlockTridiagMVN's ``blocks="diagonal"`` path;
- ``"full"``: ``A_t = unvec(theta_t)`` row-major (``d = n^2``);
- ``"block"``: ``theta_t = (r_1, phi_1, ..., r_K, phi_K)`` (``K = n/2``) and
  ``A_t = L blockdiag(r_k [[cos phi_k, -sin phi_k], [sin phi_k, cos phi_k]]) L^-1``, eigenvalues
  ``r_k exp(+-i phi_k)``. The basis ``L = expm(S - S') diag(exp(c tanh(u)))`` (orthogonal times
  positive diagonal) is invertible with ``cond(L) < exp(2c)`` by construction;
- ``"none"``: independent frames, ``z_t ~ N(0, I)``;
- ``"random_walk"``: slowVAE (Klindt et al. 2021, "Towards nonlinear disentanglement in natural
  data with temporal sparse coding"): ``z_0 ~ N(0, I)``, ``z_t - z_{t-1} ~ Laplace(0, 1/rate)``.

**Which motion the chain can represent.** A multiplicative ``A_t`` moves a latent towards or away
from 0 (``|lambda| != 1``) or rotates latent pairs (block dynamics); it cannot translate: under
``z_t = lambda z_{t-1}`` a latent that encodes an object's position moves at a speed proportional
to its distance from the origin. Translation at a constant speed needs a drift. With
``velocity=True`` every latent gets a latent velocity ``v^(i)`` (the local linear trend model of
structural time series, Harvey 1989, "Forecasting, structural time series models and the Kalman
filter"):

.. math::

    v_0 \sim N(0, \mathrm{diag}(\sigma_v^2)), \quad v_t = v_{t-1} + u_t, \quad
    u_t \sim N(0, \mathrm{diag}(r^2)),

so the chain's state is ``x_t = (z_t, v_t)`` of size ``2n`` with transition
``[[A_t, I], [0, I]]`` and noise ``diag(q^2, r^2)``. The velocity is a latent variable of the
Gaussian chain, not a free output of a network: it has a prior and a posterior (the structured
guide infers it from the positions it couples to), so it costs what it encodes in the ELBO and
the forecast extrapolates it. A bounce is one large innovation ``u_t``.

**Static latents.** Every latent has its own learned noise scales ``q_i`` (and ``sigma_v,i``,
``r_i``). A latent whose scales go to 0 is constant over a sequence: its KL term costs one
``N(0, 1)`` code per sequence instead of one per frame, so the ELBO stores what does not change
(identity, shape, colour) in such latents when it can. If every latent starts with the same
scales, nothing breaks the symmetry between them and training keeps them equal (measured); the
scales therefore start spread geometrically over ``transition_scale = (lowest, highest)`` across
the latents (still learned), so that some latents start nearly static and some fast. Learned from
``(0.01, 1)`` the slow latents' scales grow during training until few stay static; the
``timescales`` variant keeps them fixed over ``(1e-4, 1)``, a fixed spectrum of timescales in
which the four slowest of eight latents are static at eigenvalue 1 (README, *Comparing the
variants*).

**Separate chains.** With diagonal dynamics and a velocity, latent ``i``'s pair
``(z^(i)_t, v^(i)_t)`` evolves on its own (``A_t`` diagonal, noise diagonal), so the prior is a
product of ``n`` independent chains of ``2 x 2`` blocks, and so is the structured posterior when
the frames' potentials are diagonal (``potential_rank=0``). :meth:`LatentDynamics.prior` then
returns a :class:`~pyro_dynvae.distributions.ChainProductMVN`: the same Gaussian, computed as
``n`` chains of event ``(T, 2)`` (``n^2`` times fewer flops, and small enough for the dense
route of :mod:`pyro_dynvae.ops.dispatch`) instead of one chain of ``2n x 2n`` blocks. The
:func:`chain_layout` context manager selects the joint form instead (the same values; kept to
measure the speed-up against, ``benchmarks/bench_training.py``).

Each coordinate of ``theta`` belongs to a scale group (the latent it drives): latent ``i`` for
diagonal, row ``i`` of ``A_t`` for full, pair ``k`` for block dynamics. Prior scales ``s`` and
penalty weights ``gamma`` are per group.
"""

from __future__ import annotations

import contextlib
import contextvars
import math

import torch
from pyro.distributions import Laplace, Normal, TorchDistribution, constraints
from pyro.nn import PyroModule, PyroParam
from torch import nn

from pyro_dynvae._settings import setting
from pyro_dynvae.distributions import BlockTridiagMVN, ChainProductMVN

from .config import DynamicsVAEConfig

__all__ = [
    "CHAIN_DTYPE",
    "CHAIN_LAYOUTS",
    "LaplaceRandomWalk",
    "LatentDynamics",
    "chain_layout",
    "group_weights",
    "initial_scales",
]

CHAIN_LAYOUTS = ("separate", "joint")
#: the dtype the separate chains compute in (their values keep the model's): a nearly static
#: latent with a velocity (q_i, r_i near 0) gives a 2x2-block precision that float32 cannot
#: factorise once the frames' potentials grow (measured: training with a KL weight of 0.5, or
#: annealed over 2000 steps, stopped at step 95-106 on a non-positive-definite float32
#: posterior precision, with the joint chain as with the separate ones); each chain is a
#: 2T x 2T matrix, so float64 costs little
CHAIN_DTYPE = torch.float64
_CHAIN_LAYOUT = contextvars.ContextVar("pyro_dynvae_chain_layout", default="separate")


def chain_layout(layout: str) -> contextlib.AbstractContextManager[None]:
    """Inside a ``with`` block, compute separable latent chains as ``"separate"`` chains (the
    default: a :class:`~pyro_dynvae.distributions.ChainProductMVN`) or as one ``"joint"``
    :class:`~pyro_dynvae.distributions.BlockTridiagMVN` (thread- and task-local).

    :param str layout: ``"separate"`` or ``"joint"``.
    :raises ValueError: for another layout.
    """
    return setting(_CHAIN_LAYOUT, layout, CHAIN_LAYOUTS, "layout")


class LaplaceRandomWalk(TorchDistribution):
    """The slowVAE prior over ``z`` of event shape ``(T, n)``.

    ``z_0 ~ N(0, I)``, ``z_t - z_{t-1} ~ Laplace(0, 1/rate)`` independently per coordinate.

    :param int num_frames: ``T``.
    :param int latent_dim: ``n``.
    :param torch.Tensor rate: Laplace rate (scalar tensor; sets dtype and device).
    """

    arg_constraints = {}
    support = constraints.independent(constraints.real, 2)
    has_rsample = True

    def __init__(self, num_frames: int, latent_dim: int, rate: torch.Tensor, validate_args=None):
        self.rate = rate
        self._steps = Laplace(torch.zeros_like(rate), 1 / rate)
        super().__init__(torch.Size(), torch.Size((num_frames, latent_dim)), validate_args)

    def rsample(self, sample_shape=()) -> torch.Tensor:
        num_frames, latent_dim = self.event_shape
        shape = torch.Size(sample_shape) + self.batch_shape
        init = torch.randn(shape + (1, latent_dim), dtype=self.rate.dtype, device=self.rate.device)
        steps = self._steps.rsample(shape + (num_frames - 1, latent_dim))
        return torch.cat([init, steps], dim=-2).cumsum(-2)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        init = Normal(0.0, 1.0).log_prob(value[..., 0, :]).sum(-1)
        steps = self._steps.log_prob(value[..., 1:, :] - value[..., :-1, :]).sum((-1, -2))
        return init + steps

    @property
    def mean(self) -> torch.Tensor:
        return self.rate.new_zeros(self.batch_shape + self.event_shape)


def group_weights(num_groups: int, weight: float, schedule: str, ratio: float) -> torch.Tensor:
    """Per-group penalty weights ``gamma(i)``, ``i = 0..num_groups-1``.

    ``"constant"``: ``gamma``; ``"linear"``: ``gamma * (i + 1)``; ``"geometric"``:
    ``gamma * ratio**i``.
    """
    index = torch.arange(num_groups, dtype=torch.get_default_dtype())
    if schedule == "constant":
        return torch.full((num_groups,), float(weight))
    if schedule == "linear":
        return weight * (index + 1)
    if schedule == "geometric":
        return weight * ratio**index
    raise ValueError(f"penalty_schedule must be constant, linear or geometric, got {schedule!r}")


def initial_scales(scale_range: tuple[float, float], num_latents: int) -> torch.Tensor:
    """Initial noise scales spread geometrically from ``scale_range[0]`` (latent 0) to
    ``scale_range[1]`` (latent ``n-1``); equal ends give equal scales."""
    low, high = (float(value) for value in scale_range)
    if num_latents == 1:
        return torch.tensor([math.sqrt(low * high)])
    return torch.logspace(math.log10(low), math.log10(high), num_latents)


class LatentDynamics(PyroModule):
    """Transition noise, block basis and the map ``theta -> A_t -> p(z | theta)``.

    Shared by model and guide (the structured guide adds its potentials to this prior's
    precision). The chain's state is ``z_t`` (``n``), or ``(z_t, v_t)`` (``2n``) with
    ``velocity``; :meth:`positions` takes the ``z`` part of a state.

    :param DynamicsVAEConfig config: the model configuration.
    """

    def __init__(self, config: DynamicsVAEConfig):
        super().__init__()
        n = config.latent_dim
        self.kind, self.latent_dim = config.dynamics, n
        # factors on the z term of model and guide alike (beta and KL annealing; see
        # DynamicsVAE.exact_elbo)
        self.kl_scale = float(config.kl_scale)
        self.kl_annealing = 1.0
        self.has_velocity = config.velocity
        self.state_dim = 2 * n if config.velocity else n
        if self.kind == "random_walk":
            self.register_buffer("slowness_rate", torch.tensor(float(config.slowness_rate)))
        elif self.kind != "none":
            scales = initial_scales(config.transition_scale, n)
            names = ["transition_scale"]
            if config.velocity:
                names += ["velocity_init_scale", "velocity_noise_scale"]
            learn_velocity = (config.learn_transition_scale if config.learn_velocity_scale is None
                              else config.learn_velocity_scale)
            for name in names:
                learned = (learn_velocity if name.startswith("velocity")
                           else config.learn_transition_scale)
                if learned:
                    setattr(self, name, PyroParam(scales.clone(), constraint=constraints.positive))
                else:
                    self.register_buffer(name, scales.clone())
        if self.kind == "diagonal":
            centre, groups = torch.ones(n), torch.arange(n)
        elif self.kind == "full":
            centre, groups = torch.eye(n).flatten(), torch.arange(n).repeat_interleave(n)
        elif self.kind == "block":
            centre = torch.tensor([1.0, 0.0]).repeat(n // 2)
            groups = torch.arange(n // 2).repeat_interleave(2)
            self.basis_skew = nn.Parameter(torch.zeros(n, n))
            self.basis_log_scale = nn.Parameter(torch.zeros(n))
            self.basis_max_log_scale = 0.5 * config.block_basis_log_cond
        else:
            centre, groups = torch.zeros(0), torch.zeros(0, dtype=torch.long)
        self.register_buffer("centre", centre)
        self.register_buffer("groups", groups)
        self.num_groups = int(groups.max()) + 1 if len(groups) else 0

    @property
    def num_params(self) -> int:
        """``d``, the number of transition parameters per step."""
        return self.centre.shape[0]

    def positions(self, states: torch.Tensor) -> torch.Tensor:
        """The latents ``z`` ``(..., n)`` of chain states ``(..., state_dim)``."""
        return states[..., : self.latent_dim]

    def basis(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Block dynamics' basis ``L`` and its inverse (both ``(n, n)``)."""
        rotation = torch.linalg.matrix_exp(self.basis_skew - self.basis_skew.T)
        log_scale = self.basis_max_log_scale * torch.tanh(self.basis_log_scale)
        return rotation * log_scale.exp(), rotation.T * (-log_scale).exp().unsqueeze(-1)

    def transition_matrices(self, theta: torch.Tensor) -> torch.Tensor:
        """``A_t`` as dense matrices ``(..., T-1, n, n)`` from ``theta`` ``(..., T-1, d)``
        (the map of ``z``; with ``velocity`` the chain adds ``v_{t-1}``)."""
        n = self.latent_dim
        if self.kind == "diagonal":
            return torch.diag_embed(theta)
        if self.kind == "full":
            return theta.unflatten(-1, (n, n))
        if self.kind == "block":
            radius, angle = theta[..., 0::2], theta[..., 1::2]
            cos, sin = radius * angle.cos(), radius * angle.sin()
            blocks = torch.stack([cos, -sin, sin, cos], dim=-1).unflatten(-1, (2, 2))
            eye = torch.eye(n // 2, dtype=theta.dtype, device=theta.device)
            block_diag = torch.einsum("kl,...kab->...kalb", eye, blocks).reshape(
                theta.shape[:-1] + (n, n)
            )
            basis, basis_inverse = self.basis()
            return basis @ block_diag @ basis_inverse
        raise ValueError(f"dynamics {self.kind!r} has no transition parameters")

    def eigenvalues(self, theta: torch.Tensor) -> torch.Tensor:
        """Complex eigenvalues of ``A_t``, ``(..., T-1, n)``.

        Diagonal: ``lambda_t`` in latent order; block: ``r_k exp(+-i phi_k)`` in pair order;
        full: ``torch.linalg.eigvals`` order (not tied to latents). (With ``velocity`` the
        chain's transition ``[[A_t, I], [0, I]]`` has these and ``n`` more eigenvalues at 1.)
        """
        if self.kind == "diagonal":
            return torch.complex(theta, torch.zeros_like(theta))
        if self.kind == "block":
            radius, angle = theta[..., 0::2], theta[..., 1::2]
            real, imag = radius * angle.cos(), radius * angle.sin()
            pairs = torch.stack([torch.complex(real, imag), torch.complex(real, -imag)], dim=-1)
            return pairs.flatten(-2)
        return torch.linalg.eigvals(self.transition_matrices(theta))

    def noise_scales(self) -> dict[str, torch.Tensor]:
        """The learned scales, ``(n,)`` each: ``transition_scale`` ``q`` and, with
        ``velocity``, ``velocity_init_scale`` ``sigma_v`` and ``velocity_noise_scale`` ``r``
        (empty for ``"none"`` and ``"random_walk"``)."""
        names = ("transition_scale", "velocity_init_scale", "velocity_noise_scale")
        return {name: getattr(self, name) for name in names if hasattr(self, name)}

    @property
    def separable(self) -> bool:
        """Whether the prior is computed as separate per-latent chains (diagonal dynamics with
        a velocity, under the ``"separate"`` :func:`chain_layout`)."""
        return (
            self.kind == "diagonal" and self.has_velocity and _CHAIN_LAYOUT.get() == "separate"
        )

    def prior(
        self, theta: torch.Tensor | None, num_frames: int, like: torch.Tensor
    ) -> TorchDistribution:
        """``p(z | theta)`` (the chain's states) with event shape ``(T, state_dim)``; a
        :class:`~pyro_dynvae.distributions.ChainProductMVN` of ``n`` chains of event ``(T, 2)``
        when :attr:`separable`.

        :param theta: ``(..., T-1, d)`` transition parameters (None for ``"none"`` and
            ``"random_walk"``, which then have batch shape ``()``).
        :param int num_frames: ``T``.
        :param torch.Tensor like: a tensor with the wanted dtype and device.
        """
        n = self.latent_dim
        if self.kind == "random_walk":
            return LaplaceRandomWalk(num_frames, n, self.slowness_rate.to(like))
        if self.kind == "none":
            return BlockTridiagMVN(
                like.new_zeros(num_frames, n),
                like.new_ones(num_frames, n),
                like.new_zeros(num_frames - 1, n),
                blocks="diagonal",
            )
        noise = self.transition_scale.to(like) ** 2
        if self.kind == "diagonal" and not self.has_velocity:
            return BlockTridiagMVN.from_markov_chain(
                like.new_zeros(n), like.new_ones(n), theta, noise.expand(theta.shape),
                blocks="diagonal",
            )
        if self.separable:
            return self._separate_prior(theta, like)
        trans_matrix = self.transition_matrices(theta)
        init_variance = like.new_ones(n)
        if self.has_velocity:
            eye = torch.eye(n, dtype=like.dtype, device=like.device).expand(trans_matrix.shape)
            trans_matrix = torch.cat(
                [torch.cat([trans_matrix, eye], -1), torch.cat([torch.zeros_like(eye), eye], -1)],
                -2,
            )
            init_variance = torch.cat([init_variance, self.velocity_init_scale.to(like) ** 2])
            noise = torch.cat([noise, self.velocity_noise_scale.to(like) ** 2])
        return BlockTridiagMVN.from_markov_chain(
            like.new_zeros(self.state_dim),
            torch.diag_embed(init_variance),
            trans_matrix,
            torch.diag_embed(noise).expand(trans_matrix.shape),
        )

    def _separate_prior(self, theta: torch.Tensor, like: torch.Tensor) -> ChainProductMVN:
        """Latent ``i``'s chain ``(z^(i), v^(i))``: transition ``[[lambda^(i)_t, 1], [0, 1]]``,
        noise ``diag(q_i^2, r_i^2)``, initial covariance ``diag(1, sigma_v,i^2)``; computed in
        :data:`CHAIN_DTYPE`, values in ``like``'s dtype."""
        dtype = like.dtype
        like = like.to(CHAIN_DTYPE)
        eigenvalues = theta.to(CHAIN_DTYPE).movedim(-1, -2)  # (..., n, T-1)
        ones, zeros = torch.ones_like(eigenvalues), torch.zeros_like(eigenvalues)
        trans_matrix = torch.stack(
            [torch.stack([eigenvalues, ones], -1), torch.stack([zeros, ones], -1)], -2
        )
        noise = torch.stack(
            [self.transition_scale.to(like), self.velocity_noise_scale.to(like)], -1
        ).square()
        init_variance = torch.stack(
            [like.new_ones(self.latent_dim), self.velocity_init_scale.to(like).square()], -1
        )
        chains = BlockTridiagMVN.from_markov_chain(
            like.new_zeros(self.latent_dim, 2),
            torch.diag_embed(init_variance),
            trans_matrix,
            torch.diag_embed(noise).unsqueeze(-3).expand(trans_matrix.shape),
        )
        return ChainProductMVN(chains, dtype=dtype)

    def sample_chain(
        self, theta: torch.Tensor | None, num_sequences: int, num_frames: int, like: torch.Tensor
    ) -> torch.Tensor:
        """States ``(num_sequences, T, state_dim)`` drawn from ``p(z | theta)`` by ancestral
        sampling (``x_0 ~ N(0, P_0)``, ``x_t = propagate(theta_t, x_{t-1}) + noise``), which,
        unlike a factorisation of the chain's precision, stays exact for noise scales near 0.

        :param theta: ``(num_sequences, T-1, d)`` (None for ``"none"`` and ``"random_walk"``).
        """
        if self.kind in ("none", "random_walk"):
            return self.prior(None, num_frames, like).sample((num_sequences,))
        initial = like.new_ones(self.latent_dim)
        if self.has_velocity:
            initial = torch.cat([initial, self.velocity_init_scale.to(like)])
        noise = self.step_noise_scale(like)
        states = [initial * torch.randn(num_sequences, self.state_dim, dtype=like.dtype,
                                        device=like.device)]
        for step in theta.unbind(-2):
            states.append(self.propagate(step, states[-1]) + noise * torch.randn_like(states[-1]))
        return torch.stack(states, dim=-2)

    def step_noise_scale(self, like: torch.Tensor) -> torch.Tensor | None:
        """Standard deviations ``(state_dim,)`` of one step's Gaussian noise: ``q`` (and ``r``
        for the velocities); None for ``"none"`` and ``"random_walk"``, which have no Gaussian
        transition.

        :param torch.Tensor like: a tensor with the wanted dtype and device.
        """
        if self.kind in ("none", "random_walk"):
            return None
        noise = self.transition_scale.to(like)
        if self.has_velocity:
            noise = torch.cat([noise, self.velocity_noise_scale.to(like)])
        return noise

    def propagate(self, theta: torch.Tensor | None, states: torch.Tensor) -> torch.Tensor:
        """Mean of the state at ``t+1`` given the state ``states`` at ``t`` under the step with
        parameters ``theta``: ``A z (+ v)``, and ``v`` with ``velocity``.

        :param theta: ``(..., d)`` or None (``"none"``, ``"random_walk"``: the latent persists).
        :param states: ``(..., state_dim)``.
        """
        if theta is None:
            return states
        latents = self.positions(states)
        if self.kind == "diagonal":
            moved = theta * latents
        else:
            moved = (self.transition_matrices(theta) @ latents.unsqueeze(-1)).squeeze(-1)
        if not self.has_velocity:
            return moved
        velocity = states[..., self.latent_dim :]
        return torch.cat([moved + velocity, velocity], dim=-1)

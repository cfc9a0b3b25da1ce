r"""Static and dynamic latents, found from what a model learned (no ground truth used).

A latent is *static* when it stays constant over a sequence. The statistic is each latent's
within-sequence share of variance,

.. math::

    \rho_i = \frac{E \sum_t (z_{ti} - \bar z_i)^2}{E \sum_t (z_{ti} - \mu_i)^2} \in [0, 1],
    \qquad \bar z_i = \frac{1}{T} \sum_t z_{ti},

0 for a latent constant within every sequence and near 1 for one that moves over its whole
range within each. One rule per kind of model, chosen by what the model exposes:

- ``"structure"``: a model whose ``encode(frames)`` returns ``"static_latents"`` (DSVAE, Li &
  Mandt 2018, "Disentangled sequential autoencoder": the indices of its sequence-level code
  ``f`` in the per-frame code ``(f, z_t)``) has its split by construction.
- ``"prior_share"``: a model with a Gaussian chain (``model.guide.transitions`` with noise
  scales, learned or fixed as in ``timescales``, :class:`~pyro_dynvae.models.LatentDynamics`)
  gets :math:`\rho_i` under its own prior chain at the posterior mean of ``theta`` of each
  held-out sequence ``s`` (:func:`prior_within_share`), started from
  ``z_0 ~ N(0, diag(sigma_0^2))`` with :math:`\sigma_{0,i}` the standard deviation over the
  held-out sequences of their posterior means at ``t = 0``. With :math:`\Sigma^{(i)}_s` the
  ``T x T`` covariance of latent ``i`` and :math:`C = I - 11^\top / T` the centring matrix

  .. math:: \rho_i = \sum_s \operatorname{tr}(C \Sigma^{(i)}_s) / \sum_s \operatorname{tr}
            \Sigma^{(i)}_s .

  Why the posterior's initial spread rather than the prior's ``z_0 ~ N(0, I)``: the motion the
  dynamics allow matters relative to how far apart the sequences actually lie. Measured on a
  ``hierarchical`` model (3000 steps, study sprites): the latent holding the colour (typed
  correlation 0.97) has posterior means spread with variance 10.9 and a posterior share of
  0.0034, but a prior share of 0.044 from ``N(0, 1)`` (dynamic); from its posterior spread,
  0.0054 (static). The within-sequence motion is exact for any initial scale; the initial
  means are left out (exact at ``lambda = 1``; a decaying latent is still caught, since the
  share of a decay does not depend on the scale it starts from).

  It uses the learned noise scales ``q_i``, the velocity scales ``sigma_v,i`` and ``r_i`` and
  the inferred eigenvalues together: a latent is static only if its eigenvalues stay at 1 *and*
  its noise and velocity scales are near 0. Eigenvalues alone mislead: in measured runs speed
  was carried by ``q_i`` and an eigenvalue split called the two fastest latents static; a
  latent with ``q_i = 0`` but ``|lambda| < 1`` decays, so it is not static either.
- ``"posterior_share"``: models without learned dynamics (``vae``, ``beta_vae``; ``slowvae``,
  whose Laplace walk has one fixed rate for every latent) get :math:`\rho_i` of their
  posterior means ``m`` on held-out sequences (:func:`posterior_within_share`),
  :math:`\rho_i = \sum_{s,t} (m_{sti} - \bar m_{si})^2 / \sum_{s,t} (m_{sti} - \bar m_i)^2`
  (within-sequence over total sum of squares).

**Threshold.** Latent ``i`` is static iff :math:`\rho_i <` :data:`STATIC_THRESHOLD` ``= 0.01``:
its within-sequence standard deviation is below a tenth of its overall spread. Ground truth of
the study datasets (:data:`~pyro_dynvae.assessment.datasets.STUDY_DATASETS`, 500 sequences):
static factors have :math:`\rho = 0`; the slowest moving ones, the sprites' background and
rotation, 0.10 and 0.11 at ``T = 10`` (0.32 and 0.37 at ``T = 20``); ``x`` and ``y`` 0.54 (0.96);
the digit's position 0.33 (0.67). Trained dynamics models measured in issue 10 had static latents
at :math:`\rho \le 0.003` and the others at :math:`\ge 0.16`. The threshold sits an order of
magnitude below the slowest true motion and above those static latents. It is fixed rather than
Otsu's because Otsu always finds two groups, even for a model whose latents all move (a VAE) or
all stay.

**Slow and fast.** Among the dynamic latents, the Otsu split (Otsu 1979,
:func:`~pyro_dynvae.metrics.dynamics.otsu_split`) of :math:`\log_{10} \rho_i` names the lower
group *slow* (on the sprites: background and rotation against ``x`` and ``y``); the
object/background swap exchanges it. It is empty with fewer than two distinct dynamic values.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from pyro_dynvae.metrics.dynamics import otsu_split

#: latents whose within-sequence share of variance is below this are static
STATIC_THRESHOLD = 0.01

#: the split rules, see the module docstring
RULES = ("structure", "prior_share", "posterior_share")

#: shares below this are clipped before the slow / fast split's logarithm
SHARE_FLOOR = 1e-12


@dataclass(frozen=True)
class LatentSplit:
    """A split of ``n`` latents into static and dynamic ones, and of the dynamic ones into slow
    and fast.

    :param tuple static: indices of the static latents.
    :param tuple dynamic: indices of the dynamic latents (the others).
    :param tuple slow: the slow dynamic latents (a subset of ``dynamic``).
    :param str rule: one of :data:`RULES`.
    :param tuple share: the statistic :math:`\\rho_i` per latent the split used (for
        ``"structure"``: the posterior share, which only splits slow from fast).
    :param float threshold: the static threshold (None for ``"structure"``).
    :param dict details: further per-latent statistics (JSON-serialisable).
    """

    static: tuple[int, ...]
    dynamic: tuple[int, ...]
    slow: tuple[int, ...]
    rule: str
    share: tuple[float, ...]
    threshold: float | None
    details: Mapping[str, Any] = field(default_factory=dict)

    @property
    def num_latents(self) -> int:
        """``n``."""
        return len(self.static) + len(self.dynamic)

    @property
    def fast(self) -> tuple[int, ...]:
        """The dynamic latents that are not slow."""
        return tuple(i for i in self.dynamic if i not in self.slow)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict of the split and its statistics."""
        return {
            "rule": self.rule,
            "static_latents": list(self.static),
            "dynamic_latents": list(self.dynamic),
            "slow_latents": list(self.slow),
            "fast_latents": list(self.fast),
            "share": list(self.share),
            "threshold": self.threshold,
            **dict(self.details),
        }


def _check_codes(codes: Any, name: str = "codes") -> np.ndarray:
    array = np.asarray(codes, dtype=np.float64)
    if array.ndim != 3 or array.shape[0] < 1 or array.shape[1] < 2 or array.shape[2] < 1:
        raise ValueError(
            f"{name} must have shape (S, T, n) with S >= 1, T >= 2, n >= 1, got {array.shape}"
        )
    if not np.isfinite(array).all():
        raise ValueError(f"{name} must be finite")
    return array


def posterior_within_share(codes: Any) -> np.ndarray:
    r"""Within-sequence share of each latent's variance in per-frame codes,
    :math:`\sum_{s,t} (m_{sti} - \bar m_{si})^2 / \sum_{s,t} (m_{sti} - \bar m_i)^2` (0 for a
    latent constant over all frames).

    :param codes: ``(S, T, n)``, e.g. posterior means of ``S`` held-out sequences.
    :returns: ``(n,)`` in ``[0, 1]``.
    """
    codes = _check_codes(codes)
    within = ((codes - codes.mean(axis=1, keepdims=True)) ** 2).sum(axis=(0, 1))
    total = ((codes - codes.mean(axis=(0, 1))) ** 2).sum(axis=(0, 1))
    share = np.zeros_like(total)
    np.divide(within, total, out=share, where=total > 0)
    return np.clip(share, 0.0, 1.0)


def _chain_scales(transitions: Any, initial_scale: Any = None
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Standard deviations ``(state_dim,)`` of the chain's initial state and of its per-step
    noise: ``z_0 ~ N(0, I)`` (or ``N(0, diag(initial_scale^2))``) and ``q`` (and ``sigma_v``,
    ``r`` with a latent velocity), as in
    :meth:`~pyro_dynvae.models.LatentDynamics.sample_chain`."""
    scales = {name: value.detach() for name, value in transitions.noise_scales().items()}
    if "transition_scale" not in scales:
        raise ValueError(
            "the model's dynamics have no learned noise scales (dynamics 'none' or "
            "'random_walk'); use the posterior_share rule"
        )
    noise = scales["transition_scale"]
    initial = torch.ones_like(noise)
    if initial_scale is not None:
        initial = torch.as_tensor(np.asarray(initial_scale), dtype=noise.dtype,
                                  device=noise.device)
        if initial.shape != noise.shape or not bool(torch.all(initial >= 0)):
            raise ValueError(f"initial_scale must be {tuple(noise.shape)} non-negative scales, "
                             f"got {tuple(initial.shape)}")
    if transitions.has_velocity:
        noise = torch.cat([noise, scales["velocity_noise_scale"]])
        initial = torch.cat([initial, scales["velocity_init_scale"]])
    return initial, noise


@torch.no_grad()
def prior_within_share(transitions: Any, theta: Any, initial_scale: Any = None,
                       chunk: int = 64) -> np.ndarray:
    r"""The expected within-sequence share of each latent's variance under the model's prior
    chain ``p(z | theta)``, pooled over sequences (see the module docstring).

    Exact, by linearity: every state is a linear map of independent standard normal sources
    (the initial state and each step's noise), ``x_t = sum_k g_tk e_k``; the loadings ``g_t``
    follow ``g_t = propagate(theta_t, g_{t-1})`` plus the new step's noise scales, so
    ``Cov(z_si, z_ti) = sum_k g_sk,i g_tk,i`` without factorising a precision (which fails in
    float32 for noise scales near 0).

    :param transitions: the model's :class:`~pyro_dynvae.models.LatentDynamics`
        (``model.guide.transitions``) with learned noise scales.
    :param theta: transition parameters ``(S, T-1, d)`` of ``S`` sequences (``encode``'s
        ``"dynamics"``, the posterior mean).
    :param initial_scale: ``(n,)`` standard deviations of ``z_0`` (default 1, the prior's).
    :param int chunk: sequences propagated at once.
    :returns: ``(n,)`` in ``[0, 1]``.
    """
    initial, noise = _chain_scales(transitions, initial_scale)
    theta = torch.as_tensor(np.asarray(theta), dtype=noise.dtype, device=noise.device)
    if theta.dim() != 3 or theta.shape[0] < 1 or theta.shape[1] < 1:
        raise ValueError(f"theta must have shape (S, T-1, d) with S, T-1 >= 1, got "
                         f"{tuple(theta.shape)}")
    if theta.shape[-1] != transitions.num_params:
        raise ValueError(f"theta must have {transitions.num_params} transition parameters per "
                         f"step, got {theta.shape[-1]}")
    state_dim, num_frames = initial.shape[0], theta.shape[1] + 1
    diagonal = torch.arange(state_dim, device=noise.device)
    within = torch.zeros(transitions.latent_dim, dtype=torch.float64)
    total = torch.zeros_like(within)
    for part in theta.split(chunk):
        loadings = part.new_zeros(part.shape[0], state_dim * num_frames, state_dim)
        loadings[:, diagonal, diagonal] = initial
        latents = [transitions.positions(loadings)]
        for t, step in enumerate(part.unbind(-2), start=1):
            loadings = transitions.propagate(step.unsqueeze(-2), loadings)
            loadings[:, t * state_dim + diagonal, diagonal] += noise
            latents.append(transitions.positions(loadings))
        paths = torch.stack(latents, dim=1).double()  # (S, T, sources, n)
        within += ((paths - paths.mean(1, keepdim=True)) ** 2).sum((0, 1, 2)).cpu()
        total += (paths**2).sum((0, 1, 2)).cpu()
    share = torch.where(total > 0, within / total.clamp(min=1e-300), torch.zeros_like(total))
    return share.clamp(0, 1).numpy()


def slow_latents(share: Sequence[float], dynamic: Sequence[int]) -> tuple[int, ...]:
    r"""The slow group of the dynamic latents: the lower group of the Otsu split of
    :math:`\log_{10} \rho_i` over ``dynamic`` (empty with fewer than two distinct values)."""
    dynamic = list(dynamic)
    values = np.log10(np.maximum(np.asarray(share, dtype=np.float64)[dynamic], SHARE_FLOOR))
    if len(dynamic) < 2 or np.ptp(values) == 0:
        return ()
    low = otsu_split(values)["low"]
    return tuple(int(i) for i, is_low in zip(dynamic, low, strict=True) if is_low)


def split_by_share(share: Any, rule: str, threshold: float = STATIC_THRESHOLD,
                   details: Mapping[str, Any] | None = None) -> LatentSplit:
    r"""The split of latents with within-sequence shares ``share`` ``(n,)``: static iff
    :math:`\rho_i <` ``threshold``; slow by :func:`slow_latents`.

    :param share: ``(n,)`` values in ``[0, 1]``.
    :param str rule: ``"prior_share"`` or ``"posterior_share"`` (recorded).
    :param float threshold: in ``(0, 1)``.
    :param dict details: further statistics to record.
    """
    share = np.asarray(share, dtype=np.float64)
    if share.ndim != 1 or not share.size or not np.all((share >= 0) & (share <= 1)):
        raise ValueError(f"share must be a non-empty 1-D array in [0, 1], got {share!r}")
    if not 0 < threshold < 1:
        raise ValueError(f"threshold must be in (0, 1), got {threshold}")
    static = tuple(int(i) for i in np.flatnonzero(share < threshold))
    dynamic = tuple(int(i) for i in np.flatnonzero(share >= threshold))
    return LatentSplit(static, dynamic, slow_latents(share, dynamic), rule,
                       tuple(float(v) for v in share), float(threshold), dict(details or {}))


def structural_split(static_latents: Any, share: Any) -> LatentSplit:
    """The split a model's structure gives (``encode``'s ``"static_latents"``); the dynamic
    latents are split into slow and fast by their posterior ``share``.

    :param static_latents: indices of the static latents.
    :param share: ``(n,)`` posterior within-sequence shares.
    """
    share = np.asarray(share, dtype=np.float64)
    num_latents = share.shape[0]
    static = sorted({int(i) for i in np.asarray(static_latents).reshape(-1)})
    if any(not 0 <= i < num_latents for i in static):
        raise ValueError(f"static_latents must index the {num_latents} latents, got {static}")
    dynamic = tuple(i for i in range(num_latents) if i not in static)
    return LatentSplit(tuple(static), dynamic, slow_latents(share, dynamic), "structure",
                       tuple(float(v) for v in share), None)


def static_dynamic_split(model: Any, encoded: Mapping[str, Any], *, rule: str | None = None,
                         threshold: float = STATIC_THRESHOLD) -> LatentSplit:
    """Split a model's latents into static and dynamic ones by the rule its kind calls for.

    :param model: the model (its ``guide.transitions`` for the prior rule).
    :param dict encoded: its summaries of held-out sequences
        (:func:`~pyro_dynvae.assessment.encoding.encode_sequences`): ``"z_mean"`` ``(S, T, n)``,
        and ``"static_latents"`` or ``"dynamics"`` where the model has them.
    :param str rule: one of :data:`RULES`; default: ``"structure"`` where ``encoded`` has
        ``"static_latents"``, else ``"prior_share"`` where the model has a chain with noise
        scales (learned or fixed) and ``encoded`` its ``"dynamics"``, else ``"posterior_share"``.
    :param float threshold: the static threshold of the share rules.
    :returns: a :class:`LatentSplit`; for the prior rule its ``details`` also hold the
        posterior shares, the initial scales ``sigma_0``, the noise scales and (diagonal
        dynamics) each latent's mean ``|lambda - 1|``.
    """
    if "z_mean" not in encoded:
        raise ValueError("encoded must hold the posterior means 'z_mean' (S, T, n)")
    posterior = posterior_within_share(encoded["z_mean"])
    transitions = getattr(getattr(model, "guide", None), "transitions", None)
    has_chain = transitions is not None and "transition_scale" in transitions.noise_scales()
    if rule is None:
        if "static_latents" in encoded:
            rule = "structure"
        else:
            rule = "prior_share" if has_chain and "dynamics" in encoded else "posterior_share"
    if rule not in RULES:
        raise ValueError(f"rule must be one of {RULES}, got {rule!r}")
    if rule == "structure":
        if "static_latents" not in encoded:
            raise ValueError("the structure rule needs encode(frames)['static_latents']")
        return structural_split(encoded["static_latents"], posterior)
    if rule == "posterior_share":
        return split_by_share(posterior, rule, threshold)
    if not has_chain or "dynamics" not in encoded:
        raise ValueError("the prior_share rule needs a model with transition noise "
                         "scales (model.guide.transitions) and encode(frames)['dynamics']")
    initial_scale = np.asarray(encoded["z_mean"], dtype=np.float64)[:, 0].std(axis=0)
    details: dict[str, Any] = {
        "posterior_share": [float(v) for v in posterior],
        "initial_scale": [float(v) for v in initial_scale],
        "noise_scales": {name: [float(v) for v in value.detach().cpu()]
                         for name, value in transitions.noise_scales().items()},
    }
    eigenvalues = encoded.get("eigenvalues")
    if transitions.kind == "diagonal" and eigenvalues is not None:
        deviation = np.abs(np.asarray(eigenvalues, dtype=np.float64) - 1).mean(axis=(0, 1))
        details["eigenvalue_deviation"] = [float(v) for v in deviation]
    share = prior_within_share(transitions, encoded["dynamics"], initial_scale)
    return split_by_share(share, rule, threshold, details)

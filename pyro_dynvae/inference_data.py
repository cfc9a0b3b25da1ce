"""Export learned eigenvalues and prior scales as an ``arviz.InferenceData``, summarise them
with ``arviz.summary`` and draw a forest plot of the prior scales.

Layout of the posterior group (see :func:`dynamics_inference_data`):

- ``eigenvalues`` with dims ``(chain, draw, time, latent)``: ``draw`` runs over held-out
  sequences (posterior means per sequence) or over posterior samples; ``time`` indexes the
  transitions ``t -> t + 1`` (``0 .. T-2``).
- ``prior_scales`` with dims ``(chain, draw, latent)``: the scales of the eigenvalue prior.
  A learned point estimate (shape ``(n,)``) is repeated over the draws, so its interval has
  zero width.

Reference: Kumar et al. (2019), "ArviZ a unified library for exploratory analysis of
Bayesian models in Python", JOSS.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import arviz as az
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from .metrics.dynamics import check_eigenvalues


def dynamics_inference_data(eigenvalues: Any, prior_scales: Any = None, *,
                            latent_names: Sequence[str] | None = None,
                            attrs: dict[str, Any] | None = None) -> az.InferenceData:
    """Build an InferenceData of eigenvalues and prior scales.

    :param eigenvalues: real array ``(N, T-1, n)`` (``N`` sequences or samples, taken as one
        chain of ``N`` draws) or ``(C, S, T-1, n)`` (``C`` chains of ``S`` draws), e.g. the
        ``"eigenvalues"`` returned by a model's ``encode``.
    :param prior_scales: optional array ``(n,)`` (a point estimate, repeated over draws),
        or draws ``(S, n)`` / ``(C, S, n)`` matching the eigenvalues' chains and draws.
    :param latent_names: optional names of the ``n`` latents (default ``0 .. n-1``).
    :param attrs: optional attributes stored on the posterior group (e.g. the run config).
    :returns: ``arviz.InferenceData`` with a ``posterior`` group.
    """
    values = np.asarray(eigenvalues)
    if values.ndim == 4:
        chains, draws = values.shape[:2]
        check_eigenvalues(values.reshape(-1, *values.shape[2:]))
    else:
        values = check_eigenvalues(values)[None]
        chains, draws = 1, values.shape[1]
    if np.iscomplexobj(values):
        raise TypeError("eigenvalues must be real to export; pass their modulus or real part")
    values = values.astype(np.float64)
    num_transitions, num_latents = values.shape[2:]
    latents = list(range(num_latents)) if latent_names is None else list(latent_names)
    if len(latents) != num_latents:
        raise ValueError(f"latent_names must have {num_latents} entries, got {len(latents)}")
    posterior = {"eigenvalues": values}
    dims = {"eigenvalues": ["time", "latent"]}
    if prior_scales is not None:
        posterior["prior_scales"] = _scale_draws(prior_scales, chains, draws, num_latents)
        dims["prior_scales"] = ["latent"]
    coords = {"time": np.arange(num_transitions), "latent": latents}
    idata = az.from_dict(posterior=posterior, coords=coords, dims=dims)
    if attrs:
        idata.posterior.attrs.update(attrs)
    return idata


def _scale_draws(prior_scales: Any, chains: int, draws: int, num_latents: int) -> np.ndarray:
    scales = np.asarray(prior_scales, dtype=np.float64)
    if scales.shape[-1:] != (num_latents,) or scales.ndim > 3:
        raise ValueError(f"prior_scales must have shape (n,), (S, n) or (C, S, n) with n = "
                         f"{num_latents}, got {scales.shape}")
    if not np.all(np.isfinite(scales)):
        raise ValueError("prior_scales must be finite")
    if scales.ndim == 1:
        return np.broadcast_to(scales, (chains, draws, num_latents)).copy()
    scales = scales.reshape(-1, *scales.shape[-2:]) if scales.ndim == 3 else scales[None]
    if scales.shape[:2] != (chains, draws):
        raise ValueError(f"prior_scales draws {scales.shape[:2]} must match the eigenvalues' "
                         f"(chains, draws) = {(chains, draws)}")
    return scales


def dynamics_summary(idata: az.InferenceData, var_names: Sequence[str] | None = None,
                     kind: str = "stats", **kwargs: Any):
    """``arviz.summary`` of the exported variables (a ``pandas.DataFrame``).

    The default ``kind="stats"`` (mean, sd, HDI) fits draws that are sequences rather than
    Markov chains; pass ``kind="all"`` for the MCMC diagnostics of genuine posterior samples.
    Further keyword arguments go to ``arviz.summary``.
    """
    if var_names is None:
        var_names = [name for name in ("eigenvalues", "prior_scales") if name in idata.posterior]
    return az.summary(idata, var_names=list(var_names), kind=kind, **kwargs)


def plot_prior_scales(idata: az.InferenceData, path: str | os.PathLike,
                      hdi_prob: float = 0.94) -> str:
    """Write a forest plot of the prior scales (one row per latent) to ``path``.

    The figure is rendered with matplotlib's Agg canvas (no display, pyplot state untouched);
    the file format follows the suffix of ``path`` (``.png``, ``.pdf``, ``.svg``).

    :returns: the path written, as a string.
    """
    if "prior_scales" not in idata.posterior:
        raise ValueError("idata has no prior_scales; pass prior_scales to "
                         "dynamics_inference_data")
    num_latents = idata.posterior.sizes["latent"]
    figure = Figure(figsize=(5.0, 1.0 + 0.35 * num_latents))
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    az.plot_forest(idata, var_names=["prior_scales"], combined=True, hdi_prob=hdi_prob,
                   ax=axes)
    axes.set_title("Prior scales per latent")
    axes.set_xlabel("scale")
    figure.tight_layout()
    path = os.fspath(path)
    figure.savefig(path)
    return path

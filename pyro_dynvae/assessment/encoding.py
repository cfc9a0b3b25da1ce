"""Posterior summaries of many sequences, encoded a chunk at a time.

Every scored model exposes ``encode(frames (B, T, C, H, W)) -> dict`` (see
:meth:`pyro_dynvae.models.DynamicsVAE.encode`); the assessment reads the per-sequence summaries
of :data:`SEQUENCE_KEYS` and the model-wide ones of :data:`GLOBAL_KEYS` where a model has them.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

#: summaries with one entry per sequence, concatenated over chunks: the per-frame posterior
#: means ``(B, T, n)``, the transition eigenvalues ``(B, T-1, n)`` and parameters
#: ``(B, T-1, d)``
SEQUENCE_KEYS = ("z_mean", "eigenvalues", "dynamics")

#: summaries of the model, the same for every sequence: the prior scales ``(G,)`` and, for a
#: model with a sequence-level code (DSVAE's ``f``), the indices of its static latents
GLOBAL_KEYS = ("prior_scales", "static_latents")


def model_device(model: Any) -> torch.device:
    """The device of a model's first parameter (CPU for a model without parameters)."""
    parameters = getattr(model, "parameters", None)
    first = next(iter(parameters()), None) if callable(parameters) else None
    return torch.device("cpu") if first is None else first.device


@torch.no_grad()
def encode_sequences(model: Any, frames: torch.Tensor, chunk: int = 64) -> dict[str, np.ndarray]:
    """``model.encode`` in chunks of ``chunk`` sequences.

    :param model: anything with ``encode(frames) -> dict`` (e.g. a
        :class:`~pyro_dynvae.models.DynamicsVAE`).
    :param torch.Tensor frames: ``(B, T, C, H, W)``.
    :param int chunk: sequences encoded at once.
    :returns: the :data:`SEQUENCE_KEYS` and :data:`GLOBAL_KEYS` the model returns, as numpy
        arrays (``z_mean`` ``(B, T, n)``...).
    """
    device = model_device(model)
    pieces: dict[str, list[np.ndarray]] = {key: [] for key in SEQUENCE_KEYS}
    shared: dict[str, np.ndarray] = {}
    for start in range(0, frames.shape[0], chunk):
        summary = model.encode(frames[start : start + chunk].to(device))
        for key in SEQUENCE_KEYS:
            if key in summary:
                pieces[key].append(summary[key].cpu().numpy())
        for key in GLOBAL_KEYS:
            if key in summary and key not in shared:
                shared[key] = torch.as_tensor(summary[key]).cpu().numpy()
    result = {key: np.concatenate(values) for key, values in pieces.items() if values}
    result.update(shared)
    return result

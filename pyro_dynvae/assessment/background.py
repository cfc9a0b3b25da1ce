"""Object vs background: does exchanging the latents that carry the background move the
background and leave the object alone?

On sprites over a drifting background (:class:`~pyro_dynvae.data.DynamicSprites` with
``background=...``), the background moves more slowly than the object, so a model that separates
them by their dynamics holds it in slow latents. The test exchanges the split's *slow* group
(:attr:`~.split.LatentSplit.slow`: the lower Otsu group of the dynamic latents' within-sequence
shares, chosen from the model's own statistics; the static group is the static swap's) between
pairs ``(a, b)``, frame by frame (the background moves), decodes, and asks the judge whether it
reads ``b``'s background and ``a``'s object (every other factor): :func:`.swap.exchange_test`.
The overlap of the latents that correlate with the object and with the background
(:func:`~pyro_dynvae.metrics.object_background_overlap`) is kept beside it as a diagnostic.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from pyro_dynvae.metrics import object_background_overlap

from .judge import Judge
from .split import LatentSplit
from .swap import exchange_test

#: factor names that describe the background rather than the object
BACKGROUND_FACTORS = ("background",)


def background_factor_names(names: Sequence[str]) -> list[str]:
    """The names among ``names`` that describe the background."""
    return [name for name in names if name in BACKGROUND_FACTORS]


def object_background_test(model: Any, judge: Judge, split: LatentSplit, codes_a: torch.Tensor,
                           codes_b: torch.Tensor, factors_a: torch.Tensor,
                           factors_b: torch.Tensor, *,
                           tolerance: float = 0.05) -> tuple[dict[str, Any], torch.Tensor] | None:
    """The object/background swap of pairs ``(a, b)`` (arguments as
    :func:`~.swap.exchange_test`); None when the judge reads no background factor.

    :returns: ``(result, frames)``; ``result`` as :func:`~.swap.exchange_test`'s plus
        ``"background_follows"`` (its ``followed`` group: the judge reads ``b``'s background),
        ``"object_kept"`` (its ``kept`` group: ``a``'s object) and ``"overlap"`` (the
        diagnostic on the codes of all ``2P`` sequences, the dataset's metric factors).
    """
    background = background_factor_names(judge.factor_names)
    if not background:
        return None
    result, frames = exchange_test(model, judge, codes_a, codes_b, factors_a, factors_b,
                                   split.slow, background, sequence_mean=False,
                                   tolerance=tolerance)
    result["background_follows"] = result.pop("followed")
    result["object_kept"] = result.pop("kept")
    dataset = judge.dataset
    names = dataset.metric_factors
    columns = [dataset.factor_index(name) for name in names]
    codes = torch.cat([codes_a, codes_b]).numpy()
    factors = torch.cat([factors_a, factors_b])[..., columns].numpy()
    is_background = np.isin(names, BACKGROUND_FACTORS)
    overlap = object_background_overlap(codes, factors, ~is_background, is_background)
    result["overlap"] = {
        "overlap": overlap["overlap"],
        "object_latents": overlap["object_latents"].tolist(),
        "background_latents": overlap["background_latents"].tolist(),
    }
    return result, frames

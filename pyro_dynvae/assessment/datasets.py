"""The study's datasets: image size and keyword options per dataset, chosen so every scored factor
can be encoded by the models' own encoder.

A spec is ``{"image_size": S, "options": {keyword: value}}``, the keywords of the dataset class
(:class:`~pyro_dynvae.data.DynamicSprites`, :class:`~pyro_dynvae.data.MovingMNIST`), as in the
study's table of datasets. :func:`make_dataset` builds one split from a name and a spec.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from pyro_dynvae.data import DynamicSprites, FactorDataset, MovingMNIST

#: dataset name -> class
DATASET_CLASSES: dict[str, type[FactorDataset]] = {
    "sprites": DynamicSprites,
    "moving_mnist": MovingMNIST,
}

STUDY_DATASETS: dict[str, dict[str, Any]] = {
    "sprites": {
        "image_size": 32,
        "options": {
            "channels": 3,
            "scale_range": (1.0, 1.5),
            "rotation_range": (-math.pi / 6, math.pi / 6),
            "background": "brightness",
        },
    },
    "moving_mnist": {"image_size": 32, "options": {"num_digits": 1, "digit_size": 20}},
}


def check_spec(spec: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``spec`` after checking that it has an int ``image_size`` and an ``options`` dict.

    :param dict spec: ``{"image_size": int, "options": dict}``.
    """
    if not isinstance(spec, Mapping) or set(spec) != {"image_size", "options"}:
        raise ValueError(f"spec must be a dict with keys 'image_size' and 'options', got {spec!r}")
    if not isinstance(spec["options"], Mapping):
        raise ValueError(f"spec['options'] must be a dict, got {spec['options']!r}")
    return {"image_size": spec["image_size"], "options": dict(spec["options"])}


def make_dataset(
    name: str,
    split: str = "train",
    *,
    spec: Mapping[str, Any] | None = None,
    num_sequences: int = 1000,
    num_frames: int = 20,
    seed: int = 0,
) -> FactorDataset:
    """One split of a dataset built from a spec.

    :param str name: a key of :data:`DATASET_CLASSES`.
    :param str split: ``"train"`` or ``"test"``.
    :param dict spec: ``{"image_size", "options"}``; default ``STUDY_DATASETS[name]``.
    :param int num_sequences: dataset length.
    :param int num_frames: frames per sequence.
    :param int seed: the dataset's seed.
    """
    if name not in DATASET_CLASSES:
        raise ValueError(f"dataset must be one of {sorted(DATASET_CLASSES)}, got {name!r}")
    if spec is None:
        if name not in STUDY_DATASETS:
            raise ValueError(f"no study spec for {name!r}; pass spec=")
        spec = STUDY_DATASETS[name]
    spec = check_spec(spec)
    return DATASET_CLASSES[name](
        num_sequences=num_sequences,
        num_frames=num_frames,
        image_size=spec["image_size"],
        split=split,
        seed=seed,
        **spec["options"],
    )

"""The study's datasets: image size and keyword options per dataset, chosen so every scored factor
can be encoded by the models' own encoder.

A spec is ``{"image_size": S, "options": {keyword: value}}``, the keywords of the dataset class
(:class:`~pyro_dynvae.data.DynamicSprites`, :class:`~pyro_dynvae.data.MovingMNIST`), as in the
study's table of datasets. :func:`make_dataset` builds one split from a name and a spec.

:data:`STUDY_DATASETS`:

- ``"sprites"``: 32x32 RGB sprites with radius 4.8-7.2 px (``scale_range`` 1-1.5), static
  shape, hue and scale; fast ``x``, ``y`` (0.64-1.28 px per frame over a 10-px range); slow
  ``rotation`` (0.025-0.05 rad per frame) bouncing in +-30 degrees, narrower than every shape's
  symmetry (a square repeats after 90), so it is identifiable from a frame; the slowest drifting
  brightness background (0.01 per frame over [0, 0.3]) for object vs background.
- ``"moving_mnist"``: one digit resized to 20 px on a 32x32 canvas: 13 positions per axis and
  1.2 px per frame, against 5 positions for a 28-px digit.

Supervised ceiling (:mod:`.ceiling`): the models' ``ConvEncoder`` (widths ``(16, 32, 32)`` at
32x32, 128 features, :class:`~pyro_dynvae.models.DynamicsVAEConfig`'s defaults) plus a linear
layer, trained with full supervision, 3000 steps of 64 fresh frames, one CPU thread; scored on
2000 frames of the ``"test"`` split (Moving MNIST: unseen digits); seeds 0 / 1. Accuracy for
classes, ``R^2`` for continuous factors, chance in brackets (the most frequent class; ``R^2`` 0).
Rotation over the full turn is scored modulo each shape's symmetry. Commands:
``python -m pyro_dynvae.assessment.ceiling sprites moving_mnist [--seed 1] [--spec JSON]``.

==============  ===========================  ===========================
factor          old spec                     study spec (seeds 0 / 1)
==============  ===========================  ===========================
sprites         ``{background: brightness}`` as above
shape           0.473 (0.264)                0.999 / 1.000 (0.26)
scale           0.645                        0.935 / 0.948
colour          0.951 (grey level)           1.000 / 1.000 (hue)
x, y            0.993, 0.992                 0.997, 0.995 / 0.997, 0.995
rotation        0.107 (full turn, modulo     0.928 / 0.933
                symmetry)
background      0.998                        0.998 / 0.998
moving_mnist    28-px digit, ``speed 1.0``   ``digit_size 20``
digit class     0.978 (0.109)                0.945 / 0.944 (0.11)
x, y            0.895, 0.890 (5 positions)   0.983, 0.983 / 0.984, 0.984
==============  ===========================  ===========================

A 16-px digit leaves more room (17 positions) but the ceiling of its class drops to 0.911 (the
judge's to 0.953, too close to the protocol's 0.95); 20 px keeps it at 0.945 (judge 0.972).
The judge (:mod:`.judge`, ``network="judge"``, seed 0, 161 s for sprites and 233 s for Moving
MNIST on one thread) reads the study specs at shape 1.000, scale 0.981, colour 1.000, x 0.999,
y 0.998, rotation 0.978, background 0.999; digit class 0.972, x 0.986, y 0.986. On the old
sprites spec it reaches only shape 0.863 and rotation 0.425, and :meth:`.Judge.check` refuses it.
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

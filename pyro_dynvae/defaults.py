"""One source of defaults for every way of training: ``TrainConfig``, the ``pyro-dynvae train``
command, ``examples/moving_mnist.py`` and the variant study.

Each dataset gets the likelihood that is a proper, sensible density for its frames:

- ``moving_mnist``: ``Bernoulli`` on frames binarised at 0.5 (the digits are nearly binary; a
  discrete likelihood, so the ELBO is at most 0);
- ``sprites``: a ``Normal`` whose standard deviation is learned (type-II maximum likelihood,
  Rybkin et al. 2021): the anti-aliased edges, grey levels and drifting backgrounds are not
  binary, and a learned scale weighs the likelihood against the KL by the data's own noise
  level instead of a hand-set constant.
"""

from __future__ import annotations

from typing import Any

__all__ = ["DATASET_MODEL_DEFAULTS", "model_options"]

#: dataset name -> model options (keyword arguments of ``build_model``) used unless overridden
DATASET_MODEL_DEFAULTS: dict[str, dict[str, Any]] = {
    "moving_mnist": {"likelihood": "bernoulli"},
    "sprites": {"likelihood": "gaussian", "learn_observation_scale": True},
}


def model_options(dataset: str, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """The dataset's default model options updated with ``overrides``.

    :raises ValueError: for an unknown dataset.
    """
    if dataset not in DATASET_MODEL_DEFAULTS:
        known = sorted(DATASET_MODEL_DEFAULTS)
        raise ValueError(f"dataset must be one of {known}, got {dataset!r}")
    return {**DATASET_MODEL_DEFAULTS[dataset], **(overrides or {})}

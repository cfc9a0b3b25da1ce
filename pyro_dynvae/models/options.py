"""Checks and conversions shared by the model configurations, flat frozen dataclasses of
options (:class:`~.config.DynamicsVAEConfig`, :class:`~.dsvae.DSVAEConfig`)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from pyro_dynvae.nets import ACTIVATIONS

__all__ = [
    "FRAME_CHOICES",
    "FrameOptions",
    "FRAME_POSITIVE",
    "FRAME_TUPLES",
    "check_options",
    "options_dict",
    "replace_options",
]

#: options of the frames, their networks and likelihood, which every model has
#: (:mod:`~pyro_dynvae.models.frames`): field -> allowed values, positive fields, int tuples
FRAME_CHOICES: dict[str, tuple] = {
    "likelihood": ("continuous_bernoulli", "bernoulli", "gaussian"),
    "architecture": ("conv", "broadcast", "mlp"),
    "conv_activation": tuple(ACTIVATIONS),
}
FRAME_POSITIVE = ("image_size", "channels", "latent_dim", "observation_scale", "feature_dim")
FRAME_TUPLES = ("conv_channels", "encoder_hidden", "decoder_hidden")


@dataclasses.dataclass(frozen=True)
class FrameOptions:
    """The options of the frames' networks and likelihood that every model configuration has
    (its base class): ``likelihood`` (``"bernoulli"`` on frames binarised at 0.5,
    ``"gaussian"`` with ``observation_scale``, learned when ``learn_observation_scale``, or
    ``"continuous_bernoulli"``), ``architecture`` (:data:`FRAME_CHOICES`), the conv widths
    ``conv_channels``, the encoder's ``feature_dim`` and the MLP widths ``encoder_hidden`` and
    ``decoder_hidden`` (:mod:`~pyro_dynvae.models.frames`) and the conv networks' activation
    ``conv_activation`` (:data:`~pyro_dynvae.nets.ACTIVATIONS`)."""

    likelihood: str = "gaussian"
    observation_scale: float = 0.1
    learn_observation_scale: bool = False
    architecture: str = "conv"
    conv_channels: tuple[int, ...] = (16, 32, 32, 64)
    conv_activation: str = "elu"
    feature_dim: int = 128
    encoder_hidden: tuple[int, ...] = (64,)
    decoder_hidden: tuple[int, ...] = (64,)


def check_options(
    config: Any,
    *,
    choices: Mapping[str, tuple],
    positive: Sequence[str],
    tuples: Sequence[str],
) -> None:
    """Make the fields named in ``tuples`` tuples of ints (JSON gives lists), and check the
    fields of ``choices`` (field -> allowed values), the ``positive`` ones and
    ``num_sequences`` (positive or None), with a one-line ``ValueError`` naming the field.

    :param config: a frozen dataclass instance (called from its ``__post_init__``).
    """
    for name in tuples:
        object.__setattr__(config, name, tuple(int(v) for v in getattr(config, name)))
    for name, allowed in choices.items():
        if getattr(config, name) not in allowed:
            raise ValueError(f"{name} must be one of {allowed}, got {getattr(config, name)!r}")
    for name in positive:
        if not getattr(config, name) > 0:
            raise ValueError(f"{name} must be positive, got {getattr(config, name)!r}")
    if config.num_sequences is not None and config.num_sequences <= 0:
        raise ValueError(f"num_sequences must be positive or None, got {config.num_sequences}")


def options_dict(config: Any) -> dict[str, Any]:
    """The fields of ``config`` as a JSON-serialisable dict (tuples as lists)."""
    return {
        key: list(value) if isinstance(value, tuple) else value
        for key, value in dataclasses.asdict(config).items()
    }


def replace_options(base: Any, caller: str, **values: Any) -> Any:
    """``dataclasses.replace(base, **values)``; a ``TypeError`` naming ``caller`` lists the
    names that are not fields of ``base``."""
    fields = {field.name for field in dataclasses.fields(base)}
    unknown = sorted(set(values) - fields)
    if unknown:
        raise TypeError(f"unknown option(s) {unknown} for {caller}; valid: {sorted(fields)}")
    return dataclasses.replace(base, **values)

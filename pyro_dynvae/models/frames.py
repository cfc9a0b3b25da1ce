"""What every model of the package does with frames: check them, plate the sequences, encode
and decode them, and observe them under the configured likelihood.

The helpers read a model configuration by its field names (:class:`~.config.DynamicsVAEConfig`
and :class:`~.dsvae.DSVAEConfig` share them): ``image_size``, ``channels``, ``latent_dim``,
``num_sequences``, ``architecture``, ``conv_channels``, ``conv_activation``, ``feature_dim``,
``encoder_hidden``, ``decoder_hidden``, ``likelihood``, ``observation_scale``,
``learn_observation_scale``.
"""

from __future__ import annotations

import contextlib
import contextvars
from typing import Any

import pyro
import pyro.distributions as dist
import torch
from pyro.distributions import constraints
from pyro.nn import PyroModule, PyroParam
from torch import nn

from pyro_dynvae._settings import setting
from pyro_dynvae.distributions import SharedScaleNormal
from pyro_dynvae.nets import ConvDecoder, ConvEncoder, MLPDecoder, MLPEncoder

__all__ = [
    "GAUSSIAN_FORMS",
    "add_observation_scale",
    "check_frames",
    "frame_decoder",
    "frame_encoder",
    "frame_mean",
    "gaussian_form",
    "observe_frames",
    "sequence_plate",
]

GAUSSIAN_FORMS = ("shared_scale", "elementwise")
_GAUSSIAN_FORM = contextvars.ContextVar("pyro_dynvae_gaussian_form", default="shared_scale")


def gaussian_form(form: str) -> contextlib.AbstractContextManager[None]:
    """Inside a ``with`` block, compute the Gaussian frames likelihood as ``"shared_scale"``
    (the default: :class:`~pyro_dynvae.distributions.SharedScaleNormal`, one reduction per
    sequence) or ``"elementwise"`` (``Normal(output, scale).to_event(4)``): the same density,
    the second kept to measure the speed-up against (``benchmarks/bench_training.py``).

    :param str form: ``"shared_scale"`` or ``"elementwise"``.
    """
    return setting(_GAUSSIAN_FORM, form, GAUSSIAN_FORMS, "form")


def check_frames(frames: torch.Tensor, config: Any) -> tuple[int, int]:
    """Validate ``frames`` against ``config``; return ``(B, T)``."""
    if not torch.is_tensor(frames) or not frames.is_floating_point():
        raise TypeError(f"frames must be a floating point torch.Tensor, got {type(frames)}")
    expected = (config.channels, config.image_size, config.image_size)
    if frames.dim() != 5 or tuple(frames.shape[2:]) != expected:
        raise ValueError(
            "frames must have shape (B, T, C, H, W) = (B, T, {}, {}, {}), got {}".format(
                *expected, tuple(frames.shape)
            )
        )
    if frames.shape[1] < 2:
        raise ValueError(f"frames need at least 2 time steps, got T={frames.shape[1]}")
    return frames.shape[0], frames.shape[1]


def sequence_plate(config: Any, batch_size: int, device: torch.device) -> pyro.plate:
    """The plate over sequences: ``num_sequences`` subsampled to the ``batch_size`` given."""
    size = config.num_sequences or batch_size
    return pyro.plate("sequences", size, subsample=torch.arange(batch_size, device=device), dim=-1)


def frame_encoder(config: Any) -> nn.Module:
    """Frames ``(..., C, H, W)`` to features ``(..., F)``: :class:`ConvEncoder` (architectures
    ``"conv"`` and ``"broadcast"``) or :class:`MLPEncoder` (``"mlp"``); its ``feature_dim`` is
    ``F``."""
    if config.architecture in ("conv", "broadcast"):
        return ConvEncoder(
            config.image_size,
            config.channels,
            config.conv_channels,
            config.feature_dim,
            activation=config.conv_activation,
        )
    frame_shape = (config.channels, config.image_size, config.image_size)
    return MLPEncoder(frame_shape, config.encoder_hidden)


def frame_decoder(config: Any) -> nn.Module:
    """Latents ``(..., latent_dim)`` to per-pixel outputs ``(..., C, H, W)``:
    :class:`ConvDecoder` (``"conv"``; ``"broadcast"``: its spatial broadcast form) or
    :class:`MLPDecoder` (``"mlp"``)."""
    if config.architecture in ("conv", "broadcast"):
        return ConvDecoder(
            config.image_size,
            config.channels,
            config.latent_dim,
            config.conv_channels,
            broadcast=config.architecture == "broadcast",
            activation=config.conv_activation,
        )
    frame_shape = (config.channels, config.image_size, config.image_size)
    return MLPDecoder(config.latent_dim, frame_shape, config.decoder_hidden)


def add_observation_scale(module: PyroModule, config: Any) -> None:
    """Give ``module`` its Gaussian likelihood's standard deviation ``observation_scale``: a
    positive :class:`~pyro.nn.PyroParam` with ``learn_observation_scale``, else a buffer."""
    scale = torch.tensor(float(config.observation_scale))
    if config.learn_observation_scale:
        module.observation_scale = PyroParam(scale, constraint=constraints.positive)
    else:
        module.register_buffer("observation_scale", scale)


def observe_frames(
    config: Any, output: torch.Tensor, frames: torch.Tensor, observation_scale: torch.Tensor
) -> None:
    """The site ``"frames"``: the frames observed under ``config.likelihood`` given the
    decoder's output: ``ContinuousBernoulli`` or ``Bernoulli`` (on frames binarised at 0.5)
    with logits ``output``, or ``Normal(output, observation_scale)``.

    :param config: the model's configuration.
    :param torch.Tensor output: the decoder's output ``(..., B, T, C, H, W)``.
    :param torch.Tensor frames: ``(B, T, C, H, W)``.
    :param torch.Tensor observation_scale: the Gaussian's standard deviation (scalar).
    """
    if config.likelihood == "continuous_bernoulli":
        likelihood = dist.ContinuousBernoulli(logits=output).to_event(4)
    elif config.likelihood == "bernoulli":
        # The values are binarised here, so they lie in the support by construction; Pyro's
        # validation would check them twice (the Bernoulli's and to_event's support) and the
        # logits for NaN, 6-12% of the 64x64 example's training step. A NaN logit still gives a
        # NaN log-density, which training reports as a non-finite loss at its step.
        likelihood = dist.Bernoulli(logits=output, validate_args=False).to_event(4)
        frames = (frames > 0.5).to(frames.dtype)
    elif _GAUSSIAN_FORM.get() == "shared_scale":  # see gaussian_form
        likelihood = SharedScaleNormal(output, observation_scale.to(output), event_dim=4)
    else:
        likelihood = dist.Normal(output, observation_scale.to(output)).to_event(4)
    pyro.sample("frames", likelihood, obs=frames)


def frame_mean(config: Any, output: torch.Tensor) -> torch.Tensor:
    """The frames shown for a decoder's ``output``: the Gaussian mean, or the Bernoulli
    probabilities ``sigmoid(logits)`` (for the continuous Bernoulli, its shape parameter)."""
    return output if config.likelihood == "gaussian" else output.sigmoid()

"""A slowly drifting background whose state is one ground-truth factor.

Two kinds, both moving at constant speed (much slower than the objects by default):

- ``"brightness"``: a uniform grey level ``b_t`` in ``[0, amplitude]`` that bounces between the
  two ends (see :func:`~pyro_dynvae.data.trajectories.linear_trajectories`); factor value ``b_t``.
- ``"texture"``: a smooth periodic pattern translated horizontally by an offset ``o_t`` that wraps
  around in ``[0, W)``; factor value ``o_t`` (pixels). With ``u = (x - o) / W``::

      B(x, y) = amplitude * (1/2 + 1/4 sin(2 pi u) + 1/4 sin(2 pi (u + 2 y / H)))
"""

from __future__ import annotations

import math

import numpy as np
import torch

from pyro_dynvae.validation import check_nonnegative_float

from .base import Factor
from .trajectories import linear_trajectories

BACKGROUND_KINDS = ("brightness", "texture")
DEFAULT_SPEEDS = {"brightness": 0.01, "texture": 0.25}


class DriftingBackground:
    """A drifting background for ``H x W`` frames.

    :param str kind: ``"brightness"`` or ``"texture"``.
    :param int height: frame height ``H``.
    :param int width: frame width ``W``.
    :param float speed: drift per frame (grey levels for brightness, pixels for texture);
        ``None`` for the default (0.01 and 0.25).
    :param float amplitude: largest background intensity, in ``(0, 1]``.
    """

    def __init__(
        self,
        kind: str,
        height: int,
        width: int,
        speed: float | None = None,
        amplitude: float = 0.3,
    ) -> None:
        if kind not in BACKGROUND_KINDS:
            raise ValueError(f"background must be None or one of {BACKGROUND_KINDS}, got {kind!r}")
        if speed is None:
            speed = DEFAULT_SPEEDS[kind]
        speed = check_nonnegative_float(speed, "background_speed")
        if not 0 < amplitude <= 1:
            raise ValueError(f"background_amplitude must be in (0, 1], got {amplitude}")
        self.kind = kind
        self.height = height
        self.width = width
        self.speed = speed
        self.amplitude = float(amplitude)
        if kind == "brightness":
            self.factor = Factor("background", 0.0, self.amplitude, static=speed == 0)
        else:
            self.factor = Factor("background", 0.0, float(width), static=speed == 0, periodic=True)

    def sample_trajectories(self, rng: np.random.Generator, n: int, num_frames: int) -> np.ndarray:
        """States ``(n, T)``: uniform start, velocity ``+-speed`` with a random sign."""
        start = rng.uniform(self.factor.low, self.factor.high, size=n)
        velocity = self.speed * rng.choice([-1.0, 1.0], size=n)
        states, _ = linear_trajectories(
            start, velocity, num_frames, self.factor.low, self.factor.high, self.factor.periodic
        )
        return states

    def render(self, states: torch.Tensor) -> torch.Tensor:
        """Background images ``(N, H, W)`` for states ``(N,)``."""
        if self.kind == "brightness":
            return states[:, None, None].expand(-1, self.height, self.width).clone()
        x = torch.arange(self.width, dtype=torch.float32)
        y = torch.arange(self.height, dtype=torch.float32)
        phase = 2 * math.pi * (x - states[:, None]) / self.width  # (N, W)
        sin_x, cos_x = torch.sin(phase)[:, None, :], torch.cos(phase)[:, None, :]
        rows = 4 * math.pi * y[:, None] / self.height  # (H, 1)
        # sin(a + b) = sin a cos b + cos a sin b: no sine over the whole (N, H, W) grid
        second = sin_x * torch.cos(rows) + cos_x * torch.sin(rows)
        return self.amplitude * (0.5 + 0.25 * sin_x + 0.25 * second)

"""Closed-form constant-velocity motion on an interval, with reflection or wrap-around.

A factor that moves at constant velocity ``v`` from ``start`` inside ``[low, high]`` has the
unconstrained position ``p(t) = start + v t``. Bouncing off the walls (elastic reflection) folds
``p`` back into the interval with a triangle wave of period ``2 (high - low)``::

    q(t) = (p(t) - low) mod 2 (high - low)
    x(t) = low + (high - low) - |(high - low) - q(t)|
    v(t) = v        if q(t) <  high - low
         = -v       otherwise

which equals stepping ``x += v`` and mirroring at each wall crossing, but costs one vectorised
expression for all frames at once (no loop over time, any number of bounces per step). A periodic
factor (an angle, a hue) wraps instead: ``x(t) = low + (p(t) - low) mod (high - low)``.
"""

from __future__ import annotations

import numpy as np


def linear_trajectories(
    start: np.ndarray,
    velocity: np.ndarray,
    num_frames: int,
    low: float,
    high: float,
    periodic: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Positions and velocities of constant-velocity motion that bounces (or wraps) in an interval.

    :param numpy.ndarray start: start positions in ``[low, high]``, any shape ``S``.
    :param numpy.ndarray velocity: velocities (units per frame), broadcastable to ``S``.
    :param int num_frames: number of frames ``T``.
    :param float low: lower wall.
    :param float high: upper wall (``high >= low``; ``high == low`` pins the factor at ``low``).
    :param bool periodic: wrap around instead of reflecting.
    :returns: ``(positions, velocities)``, each of shape ``S + (T,)``; ``velocities[..., t]`` is
        the velocity that carries frame ``t`` to frame ``t + 1`` (its sign flips after a bounce).
    :rtype: tuple
    """
    start = np.asarray(start, dtype=np.float64)
    velocity = np.broadcast_to(np.asarray(velocity, dtype=np.float64), start.shape)
    width = float(high) - float(low)
    times = np.arange(num_frames, dtype=np.float64)
    unfolded = start[..., None] - low + velocity[..., None] * times
    velocities = np.broadcast_to(velocity[..., None], unfolded.shape)
    if width <= 0.0:
        return np.full_like(unfolded, float(low)), np.zeros_like(unfolded)
    if periodic:
        return low + np.mod(unfolded, width), velocities.copy()
    phase = np.mod(unfolded, 2.0 * width)
    positions = low + width - np.abs(width - phase)
    return positions, np.where(phase < width, velocities, -velocities)

"""Dynamic sprites: procedurally drawn shapes whose factors move at chosen speeds.

Each sequence shows one shape (square, ellipse, triangle or heart) drawn from the factors of the
frame, over black or a slowly drifting background (:mod:`.background`):

==============  ========  ==================  ===================================================
name            default   range               meaning
==============  ========  ==================  ===================================================
``shape``       static    categorical         index into ``shapes``
``scale``       static    ``scale_range``     radius as a fraction of ``0.15 * image_size``
                          (default [0.5, 1])
``colour``      static    [0.5, 1] or         grey intensity (1 channel) or hue (3 channels,
                          [0, 1)              periodic)
``x``           fast      [m, S - 1 - m]      centre column in pixels (``m``: the margin that
                                              keeps every shape inside the ``S x S`` canvas)
``y``           fast      [m, S - 1 - m]      centre row in pixels
``rotation``    slow      ``rotation_range``  angle in radians; periodic over the default full
                          (default            turn, bouncing between the ends of a narrower
                          [0, 2 pi))          range
``background``  slowest   see background      drifting background state, if any
==============  ========  ==================  ===================================================

Every continuous factor moves at constant velocity, bouncing off the ends of its range (wrapping
for a periodic one; :func:`~pyro_dynvae.data.trajectories.linear_trajectories`). Its velocity has
a random sign and a magnitude uniform in ``[speed / 2, speed]``, where ``speed`` is set per factor
(``speeds``); a factor with speed 0 is static. Defaults: ``x`` and ``y`` ``0.04 * image_size``
pixels per frame (fast), ``rotation`` 0.05 rad per frame (slow), ``scale`` and ``colour`` 0.

Rendering is analytic and vectorised over a whole batch of frames: every pixel centre ``p`` is
mapped to the shape's frame, ``u = R(-rotation) (p - centre) / radius``, a signed distance
function ``sdf(u)`` of the shape (Quilez, "2D distance functions",
https://iquilezles.org/articles/distfunctions2d/) gives the distance to the outline, and the
coverage ``alpha = clip(1/2 - radius * sdf(u), 0, 1)`` (one-pixel anti-aliasing) composites the
colour over the background: ``frame = (1 - alpha) background + alpha colour``. A frame is thus a
deterministic function of its factor row.

A shape looks the same after ``1 / k`` of a turn, ``k`` its order of rotational symmetry
(:data:`SYMMETRY_ORDERS`: square 4, ellipse 2, triangle 3, heart 1), so over the full turn
``rotation`` is identifiable from a frame only modulo ``2 pi / k``
(:meth:`DynamicSprites.identifiable_periods`). A ``rotation_range`` narrower than a quarter turn
makes it identifiable for every shape. At 32x32 the default scales give radii of 2.4-4.8 px, too
small for a network to tell the shapes or their rotation apart; ``scale_range`` enlarges them
(the margin, hence the room left for ``x`` and ``y``, shrinks with the largest scale).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import torch

from pyro_dynvae.validation import check_nonnegative_float, check_positive_int

from .background import DriftingBackground
from .base import Factor, FactorDataset
from .trajectories import linear_trajectories

BASE_RADIUS = 0.15  # radius of a scale-1 shape, as a fraction of the canvas side
EXTENT = 1.45  # largest distance of any shape's outline from its centre, in radii
SCALE_RANGE = (0.5, 1.0)
FULL_TURN = (0.0, 2 * math.pi)
INTENSITY_RANGE = (0.5, 1.0)
SQUARE_HALF_SIDE = 0.8
ELLIPSE_AXES = (1.0, 0.55)
TRIANGLE_HALF_SIDE = math.sqrt(3) / 2  # circumradius 1
RENDER_CHUNK = 64  # frames rendered per vectorised pass
HEART_SIZE = 0.55  # Quilez's heart spans y in [0, 1.1]; map it to [-1, 1]


def _square(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    dx, dy = x.abs() - SQUARE_HALF_SIDE, y.abs() - SQUARE_HALF_SIDE
    outside = torch.hypot(dx.clamp(min=0), dy.clamp(min=0))
    return outside + torch.maximum(dx, dy).clamp(max=0)


def _ellipse(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    # first-order distance estimate k0 (k0 - 1) / k1 with k0 = |p / r|, k1 = |p / r^2|
    a, b = ELLIPSE_AXES
    k0 = torch.hypot(x / a, y / b)
    k1 = torch.hypot(x / a**2, y / b**2).clamp(min=1e-6)
    return k0 * (k0 - 1) / k1


def _triangle(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    # equilateral triangle pointing up in the image (image rows grow downwards, hence -y)
    k, r = math.sqrt(3), TRIANGLE_HALF_SIDE
    px, py = x.abs() - r, -y + r / k
    fold = px + k * py > 0
    px, py = (
        torch.where(fold, (px - k * py) / 2, px),
        torch.where(fold, (-k * px - py) / 2, py),
    )
    px = px - px.clamp(-2 * r, 0)
    return -torch.hypot(px, py) * torch.sign(py)


def _heart(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    # Quilez's heart (tip at the origin, lobes up), scaled so it spans [-1, 1] vertically
    px, py = x.abs() * HEART_SIZE, (1 - y) * HEART_SIZE
    lobe = torch.hypot(px - 0.25, py - 0.75) - math.sqrt(2) / 4
    t = (px + py).clamp(min=0) / 2
    body = torch.sqrt(torch.minimum(px**2 + (py - 1) ** 2, (px - t) ** 2 + (py - t) ** 2))
    body = body * torch.sign(px - py)
    return torch.where(px + py > 1, lobe, body) / HEART_SIZE


SHAPES = {"square": _square, "ellipse": _ellipse, "triangle": _triangle, "heart": _heart}
#: order ``k`` of each shape's rotational symmetry: it looks the same after ``2 pi / k``
SYMMETRY_ORDERS = {"square": 4, "ellipse": 2, "triangle": 3, "heart": 1}


def hue_to_rgb(hue: torch.Tensor) -> torch.Tensor:
    """Fully saturated, full-value colours ``(..., 3)`` for hues ``(...)`` in [0, 1) (HSV)."""
    h = 6 * hue[..., None]
    offsets = torch.tensor([0.0, 4.0, 2.0])
    return ((h + offsets) % 6 - 3).abs().sub(1).clamp(0, 1)


def _check_range(value: Sequence[float], name: str) -> tuple[float, float]:
    """``(low, high)`` as floats, finite with ``low <= high``."""
    try:
        low, high = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a pair of numbers (low, high), got {value!r}") from None
    if not (math.isfinite(low) and math.isfinite(high) and low <= high):
        raise ValueError(f"{name} must be finite with low <= high, got {tuple(value)}")
    return low, high


class DynamicSprites(FactorDataset):
    """Sequences of one moving, rotating shape with per-frame ground-truth factors.

    :param int num_sequences: dataset length.
    :param int num_frames: frames per sequence (default 20).
    :param int image_size: canvas side in pixels (64 or 32; any size >= 16 works).
    :param int channels: 1 (grey; ``colour`` is the intensity) or 3 (``colour`` is the hue).
    :param shapes: names of the shapes to draw from (default all four).
    :param dict speeds: ``{factor: speed}`` overriding the default speed of ``scale``,
        ``colour``, ``x``, ``y`` or ``rotation`` (units of the factor per frame; 0 = static).
    :param str split: ``"train"`` or ``"test"`` (independent random streams).
    :param int seed: seed; sequence ``i`` depends only on ``(seed, split, i)``.
    :param str background: ``None``, ``"brightness"`` or ``"texture"``.
    :param float background_speed: background drift per frame (``None``: the kind's default).
    :param float background_amplitude: largest background intensity.
    :param scale_range: ``(low, high)`` of ``scale``, ``0 < low <= high``; the largest shape must
        fit in the canvas (margin ``m = EXTENT * BASE_RADIUS * high * S <= (S - 1) / 2``).
    :param rotation_range: ``(low, high)`` of ``rotation`` in radians, ``low < high <= low +
        2 pi``; a full turn (the default ``(0, 2 pi)``) makes it periodic, anything narrower makes
        it bounce between the ends.
    """

    def __init__(
        self,
        num_sequences: int = 10000,
        num_frames: int = 20,
        image_size: int = 64,
        channels: int = 1,
        shapes: Sequence[str] = tuple(SHAPES),
        speeds: Mapping[str, float] | None = None,
        split: str = "train",
        seed: int = 0,
        background: str | None = None,
        background_speed: float | None = None,
        background_amplitude: float = 0.3,
        scale_range: Sequence[float] = SCALE_RANGE,
        rotation_range: Sequence[float] = FULL_TURN,
    ) -> None:
        super().__init__(num_sequences, num_frames, seed, split)
        self.image_size = check_positive_int(image_size, "image_size", minimum=16)
        if channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, got {channels}")
        self.channels = channels
        if isinstance(shapes, str) or not shapes:
            raise ValueError(f"shapes must be a non-empty list of names from {list(SHAPES)}")
        unknown = [name for name in shapes if name not in SHAPES]
        if unknown or len(set(shapes)) != len(shapes):
            raise ValueError(
                f"shapes must be distinct names from {list(SHAPES)}, got {list(shapes)}"
            )
        self.shapes = list(shapes)
        self.speeds = {"scale": 0.0, "colour": 0.0, "x": 0.04 * image_size, "y": 0.04 * image_size}
        self.speeds["rotation"] = 0.05
        for name, speed in (speeds or {}).items():
            if name not in self.speeds:
                raise ValueError(
                    f"speeds has unknown factor {name!r}; expected {list(self.speeds)}"
                )
            self.speeds[name] = check_nonnegative_float(speed, f"speed of {name!r}")
        self.scale_range = _check_range(scale_range, "scale_range")
        largest = (self.image_size - 1) / (2 * EXTENT * BASE_RADIUS * self.image_size)
        if not 0 < self.scale_range[0] or not self.scale_range[1] <= largest:
            raise ValueError(
                f"scale_range must satisfy 0 < low <= high <= {largest:.4g} (the largest shape "
                f"must fit in the {self.image_size}-pixel canvas), got {tuple(scale_range)}"
            )
        self.rotation_range = _check_range(rotation_range, "rotation_range")
        turn = self.rotation_range[1] - self.rotation_range[0]
        if not 0 < turn <= 2 * math.pi * (1 + 1e-9):
            raise ValueError(
                f"rotation_range must satisfy low < high <= low + 2 pi, got {tuple(rotation_range)}"
            )
        full_turn = math.isclose(turn, 2 * math.pi)
        self.margin = EXTENT * BASE_RADIUS * self.scale_range[1] * self.image_size
        far = self.image_size - 1 - self.margin
        colour = (0.0, 1.0, True) if channels == 3 else (*INTENSITY_RANGE, False)
        ranges = {
            "scale": (*self.scale_range, False),
            "colour": colour,
            "x": (self.margin, far, False),
            "y": (self.margin, far, False),
            "rotation": (*self.rotation_range, full_turn),
        }
        self.factors = [Factor("shape", 0, len(shapes) - 1, len(shapes), static=True)]
        symmetry = {"rotation": ("shape", tuple(SYMMETRY_ORDERS[name] for name in self.shapes))}
        self.factors += [
            Factor(name, low, high, static=self.speeds[name] == 0, periodic=periodic,
                   symmetry=symmetry.get(name))
            for name, (low, high, periodic) in ranges.items()
        ]
        self.background = (
            None
            if background is None
            else DriftingBackground(
                background, self.image_size, self.image_size, background_speed, background_amplitude
            )
        )
        if self.background is not None:
            self.factors.append(self.background.factor)

    def _sample_trajectories(self, rng: np.random.Generator, n: int) -> np.ndarray:
        columns = [
            np.broadcast_to(rng.integers(len(self.shapes), size=(n, 1)), (n, self.num_frames))
        ]
        for factor in self.factors[1:6]:
            start = rng.uniform(factor.low, factor.high, size=n)
            magnitude = self.speeds[factor.name] * rng.uniform(0.5, 1.0, size=n)
            velocity = magnitude * rng.choice([-1.0, 1.0], size=n)
            values, _ = linear_trajectories(
                start, velocity, self.num_frames, factor.low, factor.high, factor.periodic
            )
            columns.append(values)
        if self.background is not None:
            columns.append(self.background.sample_trajectories(rng, n, self.num_frames))
        return np.stack(columns, axis=-1)

    def render(self, factors: torch.Tensor) -> torch.Tensor:
        """Frames from factor rows (analytic signed distances, anti-aliased by one pixel).

        :param torch.Tensor factors: rows ``(..., K)``.
        :returns: frames ``(..., C, H, W)`` float32 in [0, 1].
        """
        factors = self._check_rows(factors)
        batch_shape = factors.shape[:-1]
        rows = factors.reshape(-1, factors.shape[-1])
        for k, factor in enumerate(self.factors[:6]):
            values = rows[:, k]
            if values.numel() and (values.min() < factor.low or values.max() > factor.high):
                raise ValueError(
                    f"factor {factor.name!r} must lie in [{factor.low}, {factor.high}], got "
                    f"values in [{values.min():g}, {values.max():g}]"
                )
        # chunks keep the ~20 (N, H, W) intermediates in cache: 3x faster than one big batch
        frames = [self._render_rows(chunk) for chunk in rows.split(RENDER_CHUNK)]
        frames = torch.cat(frames) if frames else torch.zeros(0)
        return frames.reshape(*batch_shape, self.channels, self.image_size, self.image_size)

    def _render_rows(self, rows: torch.Tensor) -> torch.Tensor:
        """Frames ``(N, C, H, W)`` of validated rows ``(N, K)``."""
        shape, scale, colour, x, y, rotation = rows[:, :6].unbind(-1)
        radius = (BASE_RADIUS * self.image_size * scale)[:, None, None]
        grid = torch.arange(self.image_size, dtype=torch.float32)
        dx = grid - x[:, None, None]  # (N, 1, W)
        dy = grid[:, None] - y[:, None, None]  # (N, H, 1)
        cos, sin = torch.cos(rotation)[:, None, None], torch.sin(rotation)[:, None, None]
        u = (cos * dx + sin * dy) / radius
        v = (cos * dy - sin * dx) / radius
        distance = torch.empty_like(u)
        shape = shape.round().long()
        for code, name in enumerate(self.shapes):
            members = (shape == code).nonzero().squeeze(-1)
            if len(members):
                distance[members] = SHAPES[name](u[members], v[members])
        alpha = (0.5 - radius * distance).clamp(0, 1)[:, None]  # (N, 1, H, W)
        if self.channels == 3:
            ink = hue_to_rgb(colour)[:, :, None, None]
        else:
            ink = colour[:, None, None, None]
        if self.background is None:
            return alpha * ink
        backdrop = self.background.render(rows[:, -1])[:, None]
        return (1 - alpha) * backdrop + alpha * ink

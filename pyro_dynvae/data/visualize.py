"""Looking at sequences: a PNG strip (frames across, sequences down) and an animated GIF.

Both take frames ``(T, C, H, W)`` (one sequence) or ``(B, T, C, H, W)`` with ``C`` in {1, 3} and
values in [0, 1] (a torch tensor or a numpy array), and write with Pillow (a matplotlib
dependency).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from pyro_dynvae.validation import check_positive_int


def _as_sequences(frames: torch.Tensor | np.ndarray) -> np.ndarray:
    """Validate and convert to uint8 ``(B, T, H, W, C)``."""
    frames = torch.as_tensor(frames).detach().cpu()
    if frames.dim() == 4:
        frames = frames[None]
    if frames.dim() != 5 or frames.shape[2] not in (1, 3) or 0 in frames.shape:
        raise ValueError(
            "frames must have shape (T, C, H, W) or (B, T, C, H, W) with C in {1, 3} and no "
            f"empty dimension, got {tuple(frames.shape)}"
        )
    frames = frames.to(torch.float32)
    if not torch.isfinite(frames).all() or frames.min() < 0 or frames.max() > 1:
        raise ValueError("frames must be finite and lie in [0, 1]")
    pixels = (frames * 255).round().to(torch.uint8).permute(0, 1, 3, 4, 2).numpy()
    return np.repeat(pixels, 3, axis=-1) if pixels.shape[-1] == 1 else pixels


def _tile(images: np.ndarray, border: int) -> np.ndarray:
    """Tile ``(rows, cols, H, W, 3)`` images into one with ``border`` grey pixels between."""
    rows, cols, height, width, _ = images.shape
    canvas = np.full(
        (rows * (height + border) + border, cols * (width + border) + border, 3), 128, np.uint8
    )
    for r in range(rows):
        for c in range(cols):
            top, left = border + r * (height + border), border + c * (width + border)
            canvas[top : top + height, left : left + width] = images[r, c]
    return canvas


def _check_output(path: str | os.PathLike, suffix: str, scale: int, border: int) -> Path:
    """Validate the path suffix, ``scale`` and ``border``; create the parent folder."""
    check_positive_int(scale, "scale")
    check_positive_int(border, "border", minimum=0)
    path = Path(path)
    if path.suffix.lower() != suffix:
        raise ValueError(f"path must end in {suffix}, got {path}")
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _grid_image(images: np.ndarray, border: int, scale: int) -> Image.Image:
    """:func:`_tile` the images and upscale by ``scale`` (nearest neighbour)."""
    image = Image.fromarray(_tile(images, border))
    return image.resize((image.width * scale, image.height * scale), Image.NEAREST)


def save_strip(
    frames: torch.Tensor | np.ndarray,
    path: str | os.PathLike,
    *,
    scale: int = 2,
    border: int = 1,
) -> Path:
    """Write a PNG grid: one sequence per row, its frames from left to right.

    :param frames: ``(T, C, H, W)`` or ``(B, T, C, H, W)`` in [0, 1].
    :param path: output ``.png`` path (parent folders are created).
    :param int scale: integer upscaling factor (nearest neighbour).
    :param int border: grey separator width in pixels (before scaling).
    :returns: the path written.
    """
    path = _check_output(path, ".png", scale, border)
    _grid_image(_as_sequences(frames), border, scale).save(path)
    return path


def save_gif(
    frames: torch.Tensor | np.ndarray,
    path: str | os.PathLike,
    *,
    fps: float = 8.0,
    scale: int = 2,
    border: int = 1,
) -> Path:
    """Write an animated GIF (looping); the sequences play side by side.

    :param frames: ``(T, C, H, W)`` or ``(B, T, C, H, W)`` in [0, 1].
    :param path: output ``.gif`` path (parent folders are created).
    :param float fps: frames per second.
    :param int scale: integer upscaling factor (nearest neighbour).
    :param int border: grey separator width in pixels (before scaling).
    :returns: the path written.
    """
    path = _check_output(path, ".gif", scale, border)
    if not fps > 0:
        raise ValueError(f"fps must be > 0, got {fps}")
    sequences = _as_sequences(frames)
    images = [_grid_image(sequences[None, :, t], border, scale) for t in range(sequences.shape[1])]
    images[0].save(
        path, save_all=True, append_images=images[1:], duration=round(1000 / fps), loop=0
    )
    return path

# Copyright Contributors to the pyro-dynvae project.
# SPDX-License-Identifier: Apache-2.0
"""
Figures for a trained dynamics VAE (matplotlib, non-interactive Agg backend).

Each ``plot_*`` function takes tensors, writes one PNG and returns its path;
:func:`save_run_figures` draws all of them for a model and a held-out dataset.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch.utils.data import Dataset  # noqa: E402


def _image(frame: torch.Tensor) -> tuple[np.ndarray, str | None]:
    """``(C, H, W)`` in [0, 1] -> an array for ``imshow`` and its colour map."""
    frame = frame.detach().float().cpu().clamp(0, 1)
    if frame.shape[0] == 1:
        return frame[0].numpy(), "gray"
    return frame.permute(1, 2, 0).numpy(), None


def _check_frames(name: str, frames: torch.Tensor, ndim: int) -> None:
    if not isinstance(frames, torch.Tensor) or frames.dim() != ndim:
        shape = tuple(frames.shape) if isinstance(frames, torch.Tensor) else type(frames).__name__
        raise ValueError(f"{name} must be a tensor with {ndim} dims, got {shape}")


def _check_same_shape(
    name: str, value: torch.Tensor, reference_name: str, reference: torch.Tensor
) -> None:
    if value.shape != reference.shape:
        raise ValueError(
            f"{name} must have the shape of {reference_name} {tuple(reference.shape)}, got"
            f" {tuple(value.shape)}"
        )


def _save(fig: plt.Figure, path: str | os.PathLike) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return path


def plot_frame_grid(
    rows: list[tuple[str, torch.Tensor | None]], path: str | os.PathLike, title: str = ""
) -> Path:
    """
    Draw labelled rows of frames.

    :param rows: ``(label, frames)`` pairs with frames ``(T, C, H, W)``; a ``None`` entry in a
        row's frames (use a list) leaves that cell blank. All rows share the column count of the
        longest row.
    """
    num_cols = max(len(frames) for _, frames in rows)
    fig, axes = plt.subplots(
        len(rows), num_cols, figsize=(1.1 * num_cols, 1.15 * len(rows)), squeeze=False
    )
    for axes_row, (label, frames) in zip(axes, rows, strict=True):
        for col, ax in enumerate(axes_row):
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
            if col < len(frames) and frames[col] is not None:
                image, cmap = _image(frames[col])
                ax.imshow(image, cmap=cmap, vmin=0, vmax=1)
        axes_row[0].set_ylabel(label, rotation=0, ha="right", va="center", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    return _save(fig, path)


def plot_reconstructions(
    frames: torch.Tensor,
    reconstructions: torch.Tensor,
    path: str | os.PathLike,
    max_sequences: int = 4,
    max_frames: int = 10,
) -> Path:
    """
    Data (odd rows) above their reconstructions (even rows).

    :param torch.Tensor frames: ``(B, T, C, H, W)`` in [0, 1].
    :param torch.Tensor reconstructions: same shape.
    """
    _check_frames("frames", frames, 5)
    _check_same_shape("reconstructions", reconstructions, "frames", frames)
    rows = []
    for b in range(min(max_sequences, frames.shape[0])):
        rows.append((f"data {b}", frames[b, :max_frames]))
        rows.append((f"recon {b}", reconstructions[b, :max_frames]))
    return plot_frame_grid(rows, path, "reconstructions")


def plot_forecasts(
    context: torch.Tensor,
    future: torch.Tensor,
    forecast: torch.Tensor,
    path: str | os.PathLike,
    max_sequences: int = 4,
    max_context: int = 5,
) -> Path:
    """
    Per sequence: the last observed frames followed by the true future (upper row), and below
    them the forecast (blank under the context).

    :param torch.Tensor context: observed frames ``(B, T0, C, H, W)``.
    :param torch.Tensor future: true next frames ``(B, k, C, H, W)``.
    :param torch.Tensor forecast: predicted next frames ``(B, k, C, H, W)``.
    """
    for name, value in (("context", context), ("future", future), ("forecast", forecast)):
        _check_frames(name, value, 5)
    _check_same_shape("forecast", forecast, "future", future)
    rows = []
    for b in range(min(max_sequences, context.shape[0])):
        seen = list(context[b, -max_context:])
        rows.append((f"truth {b}", seen + list(future[b])))
        rows.append((f"forecast {b}", [None] * len(seen) + list(forecast[b])))
    return plot_frame_grid(rows, path, "forecasts (left: observed, right: future)")


def plot_eigenvalue_histograms(
    eigenvalues: torch.Tensor, path: str | os.PathLike, bins: int = 40
) -> Path:
    """
    One histogram per latent of the inferred eigenvalues ``lambda_t^(i)``, with a line at 1
    (a static latent concentrates there).

    :param torch.Tensor eigenvalues: ``(..., n)``; all leading dims are pooled. Complex values
        (``block_a``) are shown by modulus.
    """
    if eigenvalues.dim() < 1:
        raise ValueError(
            f"eigenvalues must have a latent dim, got shape {tuple(eigenvalues.shape)}"
        )
    values = eigenvalues.detach().cpu()
    values = (values.abs() if values.is_complex() else values).reshape(-1, values.shape[-1])
    num_latents = values.shape[-1]
    num_cols = min(4, num_latents)
    num_rows = -(-num_latents // num_cols)
    fig, axes = plt.subplots(
        num_rows, num_cols, figsize=(3 * num_cols, 2.2 * num_rows), squeeze=False
    )
    for i, ax in enumerate(axes.flat):
        if i >= num_latents:
            ax.axis("off")
            continue
        ax.hist(values[:, i].numpy(), bins=bins, color="tab:blue")
        ax.axvline(1.0, color="tab:red", linestyle="--", linewidth=1)
        ax.set_title(f"latent {i}", fontsize=9)
        ax.tick_params(labelsize=7)
    fig.suptitle("inferred eigenvalues per latent (red: 1 = static)", fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def plot_latent_traversals(
    decode: Callable[[torch.Tensor], torch.Tensor],
    z_base: torch.Tensor,
    z_scale: torch.Tensor,
    path: str | os.PathLike,
    num_steps: int = 7,
    span: float = 2.0,
) -> Path:
    """
    Row ``i`` decodes ``z_base + s * z_scale[i] * e_i`` for ``s`` evenly spaced in
    ``[-span, span]``: what latent ``i`` changes in the frame.

    :param decode: maps latents ``(M, n)`` to frames ``(M, C, H, W)``.
    :param torch.Tensor z_base: ``(n,)``, e.g. one frame's posterior mean.
    :param torch.Tensor z_scale: ``(n,)``, e.g. the posterior means' standard deviations.
    """
    if z_base.dim() != 1 or z_scale.shape != z_base.shape:
        raise ValueError(
            f"z_base and z_scale must both have shape (n,), got {tuple(z_base.shape)} and"
            f" {tuple(z_scale.shape)}"
        )
    num_latents = z_base.shape[0]
    offsets = torch.linspace(-span, span, num_steps, dtype=z_base.dtype, device=z_base.device)
    # z[i, s] = z_base + offsets[s] * z_scale[i] * e_i
    z = z_base.expand(num_latents, num_steps, num_latents).clone()
    index = torch.arange(num_latents)
    z[index, :, index] += offsets * z_scale[:, None]
    with torch.no_grad():
        frames = decode(z.reshape(-1, num_latents))
    frames = frames.reshape(num_latents, num_steps, *frames.shape[-3:])
    rows = [(f"z{i}", frames[i]) for i in range(num_latents)]
    return plot_frame_grid(rows, path, f"latent traversals ({-span:g} to {span:g} std)")


def plot_prior_scales(scales: torch.Tensor, path: str | os.PathLike) -> Path:
    """
    Bar chart of the learned per-latent eigenvalue prior scales ``s_i`` (small: the latent is
    held near eigenvalue 1, i.e. static).

    :param torch.Tensor scales: ``(n,)`` positive.
    """
    if scales.dim() != 1:
        raise ValueError(f"scales must have shape (n,), got {tuple(scales.shape)}")
    values = scales.detach().cpu().numpy()
    fig, ax = plt.subplots(figsize=(max(3.0, 0.5 * len(values) + 1), 2.5))
    ax.bar(range(len(values)), values, color="tab:green")
    ax.set_xticks(range(len(values)))
    ax.set_xlabel("latent i")
    ax.set_ylabel("prior scale s_i")
    ax.set_yscale("log")
    ax.set_title("learned eigenvalue prior scales", fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


@torch.no_grad()
def save_run_figures(
    dynvae: torch.nn.Module,
    dataset: Dataset,
    out_dir: str | os.PathLike,
    *,
    forecast_horizon: int = 5,
    num_sequences: int = 4,
) -> list[Path]:
    """
    Draw every figure the model supports on the first ``num_sequences`` held-out sequences (the
    eigenvalue histogram and traversal scales pool over up to 64 sequences):
    ``reconstructions.png``, ``forecasts.png``, and, when ``dynvae.encode`` returns them,
    ``eigenvalues.png`` and ``prior_scales.png``; and ``traversals.png`` around the first
    frame's posterior mean.

    :returns: the paths written.
    """
    out_dir = Path(out_dir)
    device = next(dynvae.parameters()).device
    num_pooled = min(len(dataset), 64)
    frames = torch.stack([dataset[i][0] for i in range(num_pooled)]).to(device)
    shown = frames[:num_sequences]
    num_frames = frames.shape[1]
    context = shown[:, : num_frames - forecast_horizon]
    paths = [
        plot_reconstructions(shown, dynvae.reconstruct(shown), out_dir / "reconstructions.png"),
        plot_forecasts(
            context,
            shown[:, num_frames - forecast_horizon :],
            dynvae.forecast(context, forecast_horizon),
            out_dir / "forecasts.png",
        ),
    ]
    codes = dynvae.encode(frames)
    if "eigenvalues" in codes:
        paths.append(plot_eigenvalue_histograms(codes["eigenvalues"], out_dir / "eigenvalues.png"))
    if "prior_scales" in codes:
        paths.append(plot_prior_scales(codes["prior_scales"], out_dir / "prior_scales.png"))
    z_mean = codes["z_mean"].reshape(-1, codes["z_mean"].shape[-1])
    paths.append(
        plot_latent_traversals(
            _decoder(dynvae), codes["z_mean"][0, 0], z_mean.std(0), out_dir / "traversals.png"
        )
    )
    return paths


def _decoder(dynvae: torch.nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    """
    The map from latents ``(M, n)`` to displayed frames ``(M, C, H, W)``: ``dynvae.decode``,
    or for :class:`~pyro_dynvae.models.DynamicsVAE`, which has no public ``decode`` yet, its
    ``_decode_mean`` (the decoded mean that ``reconstruct`` and ``forecast`` show).
    """
    decode = getattr(dynvae, "decode", None) or getattr(dynvae, "_decode_mean", None)
    if decode is None:
        raise TypeError(f"{type(dynvae).__name__} has no decode(z) method for latent traversals")
    return decode

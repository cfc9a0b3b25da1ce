"""
Figures for a trained dynamics VAE (matplotlib, non-interactive Agg backend).

Each ``plot_*`` function takes tensors, writes one PNG and returns its path;
:func:`save_run_figures` draws all of them for a model and a held-out dataset.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch.utils.data import Dataset  # noqa: E402


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
    rows: list[tuple[str, Sequence[torch.Tensor | None]]],
    path: str | os.PathLike,
    title: str = "",
    gap: int = 2,
) -> Path:
    """
    Draw labelled rows of frames as one mosaic image (one axes, so it stays fast for many
    frames): frames on black, separated by ``gap`` white pixels.

    :param rows: ``(label, frames)`` pairs, frames a ``(T, C, H, W)`` tensor or a list of
        ``(C, H, W)`` frames in [0, 1] where ``None`` leaves a cell white. Rows may differ in
        length; grey frames (``C == 1``) and colour frames (``C == 3``) may mix.
    """
    frame = next(f for _, frames in rows for f in frames if f is not None)
    height, width = frame.shape[-2:]
    num_cols = max(len(frames) for _, frames in rows)
    mosaic = np.ones(
        (len(rows) * (height + gap) - gap, num_cols * (width + gap) - gap, 3), dtype=np.float32
    )
    for r, (_, frames) in enumerate(rows):
        for c, frame in enumerate(frames):
            if frame is None:
                continue
            image = frame.detach().float().cpu().clamp(0, 1).expand(3, -1, -1)
            top, left = r * (height + gap), c * (width + gap)
            mosaic[top : top + height, left : left + width] = image.permute(1, 2, 0).numpy()
    scale = 1.1 / max(height, width)  # inches per pixel: about 1.1 inch per frame
    fig, ax = plt.subplots(figsize=(mosaic.shape[1] * scale + 1, mosaic.shape[0] * scale + 0.4))
    ax.imshow(mosaic, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([r * (height + gap) + height / 2 for r in range(len(rows))])
    ax.set_yticklabels([label for label, _ in rows], fontsize=8)
    ax.tick_params(length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)
    if title:
        ax.set_title(title, fontsize=10)
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


def plot_swaps(
    frames_a: torch.Tensor,
    frames_b: torch.Tensor,
    generated: Mapping[str, torch.Tensor],
    path: str | os.PathLike,
    title: str = "swaps",
    max_pairs: int = 4,
    max_frames: int = 10,
) -> Path:
    """
    Per pair: the source ``a``, the donor ``b`` and each generated sequence (e.g. ``a``'s
    dynamics with ``b``'s static latents), one row each.

    :param torch.Tensor frames_a: sources ``(P, T, C, H, W)`` in [0, 1].
    :param torch.Tensor frames_b: donors, same shape.
    :param generated: row label -> sequences of the same shape.
    """
    _check_frames("frames_a", frames_a, 5)
    _check_same_shape("frames_b", frames_b, "frames_a", frames_a)
    for label, frames in generated.items():
        _check_same_shape(f"generated[{label!r}]", frames, "frames_a", frames_a)
    rows = []
    for p in range(min(max_pairs, frames_a.shape[0])):
        rows.append((f"a {p}", frames_a[p, :max_frames]))
        rows.append((f"b {p}", frames_b[p, :max_frames]))
        rows += [(f"{label} {p}", frames[p, :max_frames]) for label, frames in generated.items()]
    return plot_frame_grid(rows, path, title)


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
    ax.set_ylim(0, 1.1 * values.max())
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
    forecast_samples: int = 0,
) -> list[Path]:
    """
    Draw every figure the model supports on the first ``num_sequences`` held-out sequences (the
    eigenvalue histogram and traversal scales pool over up to 64 sequences):
    ``reconstructions.png``, ``forecasts.png``, and, when ``dynvae.encode`` returns them,
    ``eigenvalues.png`` and ``prior_scales.png``; and ``traversals.png`` around the first
    frame's posterior mean.

    :param int forecast_samples: the forecasts drawn are predictive means over this many
        samples (0: point forecasts; see ``dynvae.forecast``).
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
            dynvae.forecast(context, forecast_horizon, forecast_samples),
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
            dynvae.decode, codes["z_mean"][0, 0], z_mean.std(0), out_dir / "traversals.png"
        )
    )
    return paths

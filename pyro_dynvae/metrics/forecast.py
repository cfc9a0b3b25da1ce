r"""Forecast errors beside the trivial forecasts that could fake them.

A forecast is worth reporting only against the baselines a model could hide behind. On sparse
frames (a digit on black) the blank frame is a strong baseline: it is wrong only on the object's
pixels, whereas a forecast that puts the object in the wrong place is wrong twice. So a forecast
is scored beside

- ``copy_last``: the last observed frame, repeated;
- ``blank``: the background alone (the empty canvas; for a drifting background, the background
  the dataset draws at the predicted times);
- ``mean_frame``: the mean training frame (per pixel);

by the per-pixel mean squared error over all pixels, and over the *object's* pixels: the
pixels where the target departs from the background by more than a threshold, one set for every
forecast compared,

.. math::

    M = \{ p : |x_p - b_p| > \tau \}, \qquad
    \mathrm{MSE}_{\mathrm{object}} = \frac{1}{|M|} \sum_{p \in M} (\hat x_p - x_p)^2 .

A forecast cannot win by drawing nothing (the blank frame's object error is the object's full
energy) nor by drawing everywhere (it then loses over all pixels); the model beats the baselines
only if its error is below the best baseline's on both. The mask is the target's alone: a mask
that also held the pixels where each forecast departs from the background (tried first) rewards
a haze, because every faint pixel of it joins the mask with a small error and dilutes the error
on the object (the mean frame scored 0.088 there against 0.214 for a model whose forecast
follows the digit, and a model with a faint grey background, whose mask is the whole canvas,
scored its all-pixel error).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .utils import with_versions

__all__ = ["BASELINES", "forecast_scores"]

#: the baseline forecasts, in the order they are reported
BASELINES = ("copy_last", "blank", "mean_frame")


def _object_mse(prediction: np.ndarray, target: np.ndarray, mask: np.ndarray) -> float:
    if not mask.any():
        return 0.0
    return float(np.mean((prediction - target)[mask] ** 2))


def forecast_scores(
    context: Any,
    future: Any,
    forecast: Any,
    *,
    background: Any = None,
    mean_frame: Any = None,
    threshold: float = 0.05,
) -> dict[str, Any]:
    r"""Mean squared errors of ``forecast`` and of the baselines, overall and on object pixels.

    :param context: observed frames ``(B, T_c, C, H, W)``.
    :param future: true continuations ``(B, k, C, H, W)``.
    :param forecast: the model's forecast ``(B, k, C, H, W)``.
    :param background: the background at the forecast times, broadcastable to ``future``
        (None: zeros, an empty black canvas).
    :param mean_frame: the mean training frame ``(C, H, W)`` (None: the mean of ``context``
        and ``future``, an oracle that is at least as strong).
    :param float threshold: ``tau``, the target's departure from the background that marks an
        object pixel.
    :returns: ``{"mse": {name: float}, "object_mse": {name: float}}`` for ``name`` in
        ``("model", *BASELINES)``, ``"best_baseline"`` and ``"best_object_baseline"`` (the names
        with the smallest errors), ``"ratio_to_best_baseline"`` and
        ``"object_ratio_to_best_baseline"`` (the model's error over the best baseline's; below 1:
        better; ``inf`` if only the baseline is exact, NaN if both are),
        ``"beats_baselines"`` (both ratios below 1), and ``"versions"``.
    :raises ValueError: on mismatched shapes or a non-positive threshold.
    """
    context, future, forecast = (np.asarray(x, dtype=np.float64)
                                 for x in (context, future, forecast))
    if context.ndim < 3 or future.ndim != context.ndim or forecast.shape != future.shape:
        raise ValueError("context must be (B, T_c, ...) and future and forecast (B, k, ...) of "
                         f"equal shape; got {context.shape}, {future.shape}, {forecast.shape}")
    if context.shape[0] != future.shape[0] or context.shape[2:] != future.shape[2:]:
        raise ValueError("context and future must share the batch size and frame shape; got "
                         f"{context.shape} and {future.shape}")
    if not threshold > 0:
        raise ValueError(f"threshold must be positive, got {threshold}")
    frame_shape = future.shape[2:]
    background = (np.zeros_like(future) if background is None
                  else np.broadcast_to(np.asarray(background, dtype=np.float64), future.shape))
    if mean_frame is None:
        mean_frame = np.concatenate([context, future], axis=1).mean(axis=(0, 1))
    mean_frame = np.asarray(mean_frame, dtype=np.float64)
    if mean_frame.shape != frame_shape:
        raise ValueError(f"mean_frame must have the frame shape {frame_shape}, got "
                         f"{mean_frame.shape}")
    predictions = {
        "model": forecast,
        "copy_last": np.broadcast_to(context[:, -1:], future.shape),
        "blank": background,
        "mean_frame": np.broadcast_to(mean_frame, future.shape),
    }
    mse = {name: float(np.mean((value - future) ** 2)) for name, value in predictions.items()}
    mask = np.abs(future - background) > threshold
    object_mse = {name: _object_mse(value, future, mask) for name, value in predictions.items()}
    scores: dict[str, Any] = {"mse": mse, "object_mse": object_mse}
    for prefix, errors in (("", mse), ("object_", object_mse)):
        best = min(BASELINES, key=errors.__getitem__)
        scores[f"best_{prefix}baseline"] = best
        scores[f"{prefix}ratio_to_best_baseline"] = _ratio(errors["model"], errors[best])
    scores["beats_baselines"] = bool(scores["ratio_to_best_baseline"] < 1
                                     and scores["object_ratio_to_best_baseline"] < 1)
    return with_versions(scores)


def _ratio(error: float, reference: float) -> float:
    if reference > 0:
        return error / reference
    return float("nan") if error == 0 else float("inf")

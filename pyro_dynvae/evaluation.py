"""
Held-out evaluation of a trained model: ELBO, reconstruction and forecast errors against
baselines (:func:`evaluate`; :func:`batch_metrics` for one batch during validation),
disentanglement against the ground-truth factors, digit reading, the inferred dynamics, and
:func:`finish_run`, which writes them all, with the figures, into a run folder.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from pyro_dynvae.assessment.judge import Judge
from pyro_dynvae.assessment.protocol import static_dynamic_report
from pyro_dynvae.assessment.scoring import score_factor_space, without_nan
from pyro_dynvae.config import TrainConfig
from pyro_dynvae.data import FactorDataset, MovingMNIST
from pyro_dynvae.inference_data import (
    dynamics_inference_data,
    dynamics_summary,
    plot_prior_scales,
)
from pyro_dynvae.loading import frames_of, rng_devices, seeded_loader
from pyro_dynvae.metrics import eigenvalue_bimodality, forecast_scores
from pyro_dynvae.metrics.digit_reading import digit_reading
from pyro_dynvae.run_folder import versions, write_json
from pyro_dynvae.viz import save_run_figures

#: Monte Carlo samples of the predictive mean that every scored forecast is (the forecast that
#: minimises the expected squared error under the model; see ``DynamicsVAE.forecast``)
FORECAST_SAMPLES = 32

#: most pairs of held-out sequences of the static/dynamic protocol in :func:`finish_run`
PROTOCOL_PAIRS = 256


def loss_scale(dynvae: torch.nn.Module, batch_size: int) -> int:
    """
    The number of sequences one loss value stands for: models built with ``num_sequences``
    scale their sequence plate from the batch to the whole training set (so SVI's gradient is
    unbiased for the full ELBO); otherwise the loss is the batch's sum.
    """
    return getattr(dynvae, "config", {}).get("num_sequences") or batch_size


def exact_elbo(dynvae: torch.nn.Module, loss_fn: torch.nn.Module, frames: torch.Tensor) -> float:
    """One-sample Monte Carlo ELBO per sequence of ``frames``: ``-loss_fn(frames)`` under
    ``dynvae.exact_elbo()`` (the latent term weighted 1 whatever ``kl_scale`` and the KL
    annealing are) divided by :func:`loss_scale`."""
    with dynvae.exact_elbo():
        return -float(loss_fn(frames)) / loss_scale(dynvae, frames.shape[0])


@torch.no_grad()
def batch_metrics(
    dynvae: torch.nn.Module,
    loss_fn: torch.nn.Module,
    frames: torch.Tensor,
    forecast_horizon: int,
) -> dict[str, float]:
    r"""
    Held-out quality of one batch of sequences ``frames`` of shape ``(B, T, C, H, W)``, as
    logged during validation (:func:`evaluate` scores a whole dataset):

    - ``elbo``: :func:`exact_elbo`, the one-sample Monte Carlo ELBO per sequence (not the
      training objective where ``kl_scale`` differs from 1);
    - ``recon_mse``: mean squared error of ``dynvae.reconstruct(frames)`` per pixel;
    - ``forecast_mse``: per-pixel MSE of the predictive mean
      ``dynvae.forecast(frames[:, :T-k], k, FORECAST_SAMPLES)`` against the
      last ``k`` true frames, and ``forecast_vs_best_baseline``, its ratio to the best of the
      copy-last, blank and mean frames (:func:`~pyro_dynvae.metrics.forecast_scores`, with the
      batch's own mean frame).
    """
    scores, _ = forecast_errors(dynvae, frames, forecast_horizon)
    return {
        "elbo": exact_elbo(dynvae, loss_fn, frames),
        "recon_mse": float((dynvae.reconstruct(frames) - frames).pow(2).mean()),
        "forecast_mse": scores["mse"]["model"],
        "forecast_vs_best_baseline": scores["ratio_to_best_baseline"],
    }


@torch.no_grad()
def forecast_errors(
    dynvae: torch.nn.Module,
    frames: torch.Tensor,
    forecast_horizon: int,
    *,
    background: torch.Tensor | None = None,
    mean_frame: torch.Tensor | None = None,
    num_samples: int = FORECAST_SAMPLES,
) -> tuple[dict[str, Any], torch.Tensor]:
    """
    Observe ``frames[:, :T-k]``, forecast ``k = forecast_horizon`` frames, and score them
    against the true ``frames[:, T-k:]`` beside the copy-last, blank and mean-frame baselines
    (:func:`~pyro_dynvae.metrics.forecast_scores`).

    :param background: the background at the forecast times ``(B, k, C, H, W)`` (None: black).
    :param mean_frame: the mean training frame ``(C, H, W)`` (None: the mean of ``frames``).
    :param int num_samples: Monte Carlo samples of the predictive mean (0: the point forecast,
        see ``dynvae.forecast``).
    :returns: ``(scores, forecast)``: the scores of
        :func:`~pyro_dynvae.metrics.forecast_scores` and the forecast ``(B, k, C, H, W)``.
    """
    num_observed = frames.shape[1] - forecast_horizon
    context, future = frames[:, :num_observed], frames[:, num_observed:]
    forecast = dynvae.forecast(context, forecast_horizon, num_samples)
    if mean_frame is None:
        mean_frame = frames.mean((0, 1))
    scores = forecast_scores(
        context[:, -1:].cpu(),
        future.cpu(),
        forecast.cpu(),
        background=None if background is None else background.cpu(),
        mean_frame=mean_frame.cpu(),
    )
    return scores, forecast


def background_frames(dataset: Dataset, factors: torch.Tensor) -> torch.Tensor | None:
    """The background alone ``(..., 1, H, W)`` (broadcast over channels) at every frame of
    ``factors`` ``(..., K)`` for datasets with a drifting background, else None (black)."""
    background = getattr(dataset, "background", None)
    if background is None:
        return None
    states = factors[..., dataset.factor_index("background")]
    images = background.render(states.reshape(-1).float())
    return images.reshape(states.shape + (1,) + images.shape[-2:])


def mean_training_frame(dataset: Dataset, num_sequences: int = 256) -> torch.Tensor:
    """The per-pixel mean of the frames of the first ``num_sequences`` sequences, ``(C, H, W)``
    (the mean-frame forecast baseline)."""
    count = min(len(dataset), num_sequences)
    frames = torch.stack([frames_of(dataset[i]) for i in range(count)])
    return frames.mean((0, 1))


@torch.no_grad()
def evaluate(
    dynvae: torch.nn.Module,
    dataset: Dataset,
    *,
    batch_size: int = 16,
    forecast_horizon: int = 5,
    seed: int = 0,
    mean_frame: torch.Tensor | None = None,
) -> dict[str, Any]:
    """
    Held-out quality over ``dataset``, using a forked RNG seeded with ``seed`` so the result is
    reproducible and training's RNG stream is untouched:

    - ``elbo`` (per sequence, one-sample Monte Carlo) and ``recon_mse`` (per pixel), averaged
      over the sequences;
    - ``forecast``: :func:`~pyro_dynvae.metrics.forecast_scores` of forecasts (predictive means
      over :data:`FORECAST_SAMPLES` samples) of the last
      ``forecast_horizon`` frames of every sequence from the frames before them, against the
      copy-last frame, the blank frame (the dataset's background where it has one, from
      :func:`background_frames`) and ``mean_frame`` (the mean training frame; None: the mean
      held-out frame, an oracle), over all pixels and over the object's pixels;
      ``forecast_mse`` and ``forecast_vs_best_baseline`` repeat its headline numbers.

    :returns: a JSON-serialisable dict plus ``num_sequences``.
    """
    loss_fn = dynvae.make_elbo()(dynvae.model, dynvae.guide)
    device = next(dynvae.parameters()).device
    was_training = dynvae.training
    dynvae.eval()
    totals = {"elbo": 0.0, "recon_mse": 0.0}
    pieces: dict[str, list[torch.Tensor]] = {"frames": [], "forecast": [], "background": []}
    with torch.random.fork_rng(devices=rng_devices(device)):
        torch.manual_seed(seed)
        for batch in seeded_loader(dataset, seed, batch_size=batch_size):
            frames = frames_of(batch).to(device)
            num_sequences = frames.shape[0]
            elbo = exact_elbo(dynvae, loss_fn, frames)
            totals["elbo"] += elbo * num_sequences
            recon_error = (dynvae.reconstruct(frames) - frames).pow(2).mean()
            totals["recon_mse"] += float(recon_error) * num_sequences
            context = frames[:, : frames.shape[1] - forecast_horizon]
            pieces["frames"].append(frames.cpu())
            forecast = dynvae.forecast(context, forecast_horizon, FORECAST_SAMPLES)
            pieces["forecast"].append(forecast.cpu())
            if isinstance(batch, (tuple, list)):
                background = background_frames(dataset, batch[1][:, -forecast_horizon:])
            else:
                background = None
            if background is not None:
                pieces["background"].append(background)
    dynvae.train(was_training)
    frames = torch.cat(pieces["frames"])
    count = frames.shape[0]
    metrics: dict[str, Any] = {key: value / count for key, value in totals.items()}
    scores = forecast_scores(
        frames[:, -forecast_horizon - 1 : -forecast_horizon],
        frames[:, -forecast_horizon:],
        torch.cat(pieces["forecast"]),
        background=torch.cat(pieces["background"]) if pieces["background"] else None,
        mean_frame=frames.mean((0, 1)) if mean_frame is None else mean_frame.cpu(),
    )
    scores.pop("versions")
    metrics["forecast"] = scores
    metrics["forecast_mse"] = scores["mse"]["model"]
    metrics["forecast_vs_best_baseline"] = scores["ratio_to_best_baseline"]
    metrics["num_sequences"] = count
    return metrics


@torch.no_grad()
def disentanglement(
    dynvae: torch.nn.Module,
    dataset: FactorDataset,
    *,
    batch_size: int = 16,
    frames_per_sequence: int = 1,
    dci_predictor: str = "gradient_boosting",
    seed: int = 0,
) -> dict[str, Any]:
    """
    Disentanglement and probes of the posterior means ``encode(frames)["z_mean"]`` against the
    ground-truth factors the dataset recommends (``dataset.metric_factors``, reduced to what a
    frame shows by ``identifiable_factors``, with their ``factor_types``), scored by
    :func:`pyro_dynvae.assessment.scoring.score_codes`: frames drawn from every sequence (one
    by default), predictors fitted on two thirds of the sequences and scored on the others, so
    a latent that is merely constant within each sequence earns nothing. Factors constant over
    the sampled frames carry no information and are left out. The scores are only as precise
    as the number of sequences allows: evaluate on more (``pyro-dynvae evaluate
    --num-val-sequences``) for stable numbers.

    :param int frames_per_sequence: frames drawn per sequence for the fitted and held-out
        predictors (see :func:`~pyro_dynvae.assessment.scoring.score_codes`).
    :param str dci_predictor: ``"gradient_boosting"`` (disentanglement_lib's) or
        ``"random_forest"``.
    :param int seed: seed of the frames drawn, the split and the predictors.
    :returns: ``{"mig", "dci_disentanglement", "dci_completeness", "dci_informativeness",
        "sap", "modularity", "explicitness", "mcc", "probe_linear", "probe_nonlinear",
        "probes": per factor, "factors": names scored, "constant_factors", "sample": sizes,
        "versions"}``; a score the sample cannot define is ``None``.
    """
    device = next(dynvae.parameters()).device
    codes, factors = [], []
    for frames, batch_factors in seeded_loader(dataset, 0, batch_size=batch_size):
        codes.append(dynvae.encode(frames.to(device))["z_mean"].cpu())
        factors.append(batch_factors)
    space = dataset.factor_subset()
    columns = [dataset.factor_index(name) for name in space.factor_names]
    scores = score_factor_space(
        torch.cat(codes).double().numpy(),
        torch.cat(factors)[..., columns],
        space,
        frames_per_sequence=frames_per_sequence,
        dci_predictor=dci_predictor,
        random_state=seed,
    )
    return without_nan(scores)


@torch.no_grad()
def digit_report(
    dynvae: torch.nn.Module, dataset: MovingMNIST, *, batch_size: int = 16
) -> dict[str, Any]:
    """
    Whether the reconstructions keep the digits: a classifier fitted on the package's MNIST
    digits (at the data's digit size) reads the window at each digit's true position in every
    frame of ``dataset`` and of ``dynvae.reconstruct`` of it
    (:func:`~pyro_dynvae.metrics.digit_reading.digit_reading`).

    :returns: the accuracies on data and reconstructions, their ratio, the classifier's own
        held-out accuracy and the number of sequences read.
    """
    device = next(dynvae.parameters()).device
    frames, reconstructions, factors = [], [], []
    for batch_frames, batch_factors in seeded_loader(dataset, 0, batch_size=batch_size):
        frames.append(batch_frames.flatten(0, 1))
        reconstructions.append(dynvae.reconstruct(batch_frames.to(device)).cpu().flatten(0, 1))
        factors.append(batch_factors.flatten(0, 1))
    frames, reconstructions, factors = (torch.cat(x) for x in (frames, reconstructions, factors))
    windows = []
    for d in range(dataset.num_digits):
        columns = [dataset.factor_index(f"digit{d}_{name}") for name in ("x", "y", "class")]
        windows.append(factors[:, columns])
    windows = torch.cat(windows)
    repeat = [dataset.num_digits] + [1] * (frames.dim() - 1)
    report = digit_reading(
        frames.repeat(repeat).numpy(),
        reconstructions.repeat(repeat).numpy(),
        windows[:, :2].numpy(),
        windows[:, 2].numpy(),
        dataset.digit_size,
    )
    return {**report, "num_sequences": len(dataset)}


def dynamics_report(
    dynvae: torch.nn.Module, dataset: Dataset, run_dir: str | os.PathLike, max_sequences: int = 64
) -> dict[str, Any]:
    """
    Export the inferred dynamics of up to ``max_sequences`` held-out sequences: an arviz
    ``InferenceData`` of the eigenvalues (one draw per sequence; dims time, latent) and the prior
    scales in ``dynamics.nc``, its ``az.summary`` in ``dynamics_summary.csv``, a forest plot of
    the scales in ``figures/prior_scales_forest.png``, and the eigenvalue bimodality across
    latents (:func:`~pyro_dynvae.metrics.eigenvalue_bimodality`, with 4 or more latents).

    :returns: ``{}`` for models without eigenvalues, else a JSON-serialisable dict with
        ``"eigenvalue_bimodality"`` (where defined) and ``"files"`` (paths relative to
        ``run_dir``).
    """
    run_dir = Path(run_dir)
    device = next(dynvae.parameters()).device
    frames = torch.stack([dataset[i][0] for i in range(min(len(dataset), max_sequences))])
    with torch.no_grad():
        codes = dynvae.encode(frames.to(device))
    if "eigenvalues" not in codes:
        return {}
    eigenvalues = codes["eigenvalues"].cpu().numpy()
    scales = codes.get("prior_scales")
    # scales per latent only (full dynamics have one scale per row of A_t, not per eigenvalue)
    if scales is not None and scales.shape[-1:] != eigenvalues.shape[-1:]:
        scales = None
    idata = dynamics_inference_data(eigenvalues, None if scales is None else scales.cpu().numpy())
    files = [run_dir / "dynamics.nc", run_dir / "dynamics_summary.csv"]
    idata.to_netcdf(files[0])
    dynamics_summary(idata).to_csv(files[1])
    if scales is not None:
        forest = plot_prior_scales(idata, run_dir / "figures" / "prior_scales_forest.png")
        files.append(Path(forest))
    report: dict[str, Any] = {"files": [str(path.relative_to(run_dir)) for path in files]}
    if eigenvalues.shape[-1] >= 4:
        bimodality = eigenvalue_bimodality(eigenvalues)
        report["eigenvalue_bimodality"] = {
            key: value.tolist() if isinstance(value, np.ndarray) else value
            for key, value in bimodality.items()
        }
    return report


def finish_run(
    dynvae: torch.nn.Module,
    val_data: Dataset,
    config: TrainConfig,
    run_dir: str | os.PathLike,
    *,
    train_data: Dataset | None = None,
    judge: Judge | None = None,
    digit_data: MovingMNIST | None = None,
) -> dict[str, Any]:
    """
    Write ``metrics.json`` (held-out metrics, see :func:`evaluate`, for datasets with
    ground-truth factors :func:`disentanglement`, for Moving MNIST :func:`digit_report`, the
    dynamics of :func:`dynamics_report` and, given a ``judge``, the static/dynamic protocol),
    the figures of :func:`pyro_dynvae.viz.save_run_figures` and the arviz export of
    :func:`dynamics_report` into ``run_dir``.

    :param train_data: the training sequences, whose mean frame is the mean-frame forecast
        baseline (None: the held-out mean frame, an oracle).
    :param judge: a judge of the held-out frames
        (:func:`pyro_dynvae.assessment.protocol.protocol_judge`): ``metrics["static_dynamic"]``
        is then :func:`~pyro_dynvae.assessment.protocol.static_dynamic_report` on up to
        :data:`PROTOCOL_PAIRS` pairs of held-out sequences (or the judge's refusal), with its
        figure ``figures/swaps.png``.
    :param digit_data: the held-out Moving MNIST sequences the digit reading scores (None:
        ``val_data``); ``make_dataset(config, "digit_reading")`` draws more of them than
        validation needs, since the reading's error is set by the number of distinct digits.
    :returns: the metrics, with ``figures`` listing the PNG paths written.
    """
    run_dir = Path(run_dir)
    metrics = evaluate(
        dynvae,
        val_data,
        batch_size=config.batch_size,
        forecast_horizon=config.forecast_horizon,
        seed=config.seed,
        mean_frame=None if train_data is None else mean_training_frame(train_data),
    )
    if isinstance(val_data, FactorDataset):
        metrics["disentanglement"] = disentanglement(dynvae, val_data, batch_size=config.batch_size)
    if isinstance(val_data, MovingMNIST):
        metrics["digit_reading"] = digit_report(
            dynvae, val_data if digit_data is None else digit_data, batch_size=config.batch_size)
    figures = save_run_figures(
        dynvae,
        val_data,
        run_dir / "figures",
        forecast_horizon=config.forecast_horizon,
        forecast_samples=FORECAST_SAMPLES,
    )
    metrics["figures"] = [str(path.relative_to(run_dir)) for path in figures]
    swaps = run_dir / "figures" / "swaps.png"
    swaps.unlink(missing_ok=True)  # never a stale figure beside a refusal or no protocol
    if judge is not None and isinstance(val_data, FactorDataset):
        metrics["static_dynamic"] = static_dynamic_report(
            dynvae, val_data, judge, seed=config.seed,
            num_pairs=min(PROTOCOL_PAIRS, max(1, len(val_data) // 2)), figure_path=swaps)
        if swaps.exists():
            metrics["figures"].append(str(swaps.relative_to(run_dir)))
    dynamics = dynamics_report(dynvae, val_data, run_dir)
    if dynamics:
        metrics["dynamics"] = dynamics
    metrics["versions"] = versions()
    write_json(run_dir / "metrics.json", metrics)
    return metrics

"""
The variant comparison study: every model variant and baseline, the same data, budget and
seeds, scored with every disentanglement metric and dynamics diagnostic on held-out sequences.

For each cell ``(dataset, variant, seed)`` the study trains the variant with
:func:`pyro_dynvae.train.fit` (same data and budget, :class:`~.budget.StudyBudget`, for every
variant; the seed sets the initial weights, the data order and the ELBO's Monte Carlo noise),
and :func:`~.cell_scores.score_cell` encodes held-out sequences and scores the per-frame
posterior means ``encode(frames)["z_mean"]`` against the per-frame ground-truth factors:

- codes vs factors (:func:`pyro_dynvae.assessment.scoring.score_codes`): MIG, DCI
  disentanglement / completeness / informativeness, SAP, modularity / explicitness, MCC and
  per-factor linear and nonlinear probes, on ``num_score_sequences`` held-out sequences, one
  frame each, every predictor fitted on two thirds of the sequences and scored on the rest;
  the factors are the dataset's ``metric_factors`` reduced to what a frame shows
  (``identifiable_factors``), each with its type (``factor_types``);
- intervention scores (BetaVAE, FactorVAE) with the dataset's factor-conditioned sampler; a
  single frame is represented by the posterior mean of a static two-frame sequence of it,
  averaged over the two frames;
- dynamics diagnostics (:mod:`pyro_dynvae.metrics.dynamics`): the bimodality of the per-latent
  eigenvalue deviations ``mean |lambda - 1|`` (Sarle's coefficient, Otsu separation), the
  overlap of the latents carrying the object and those carrying the background (datasets with
  a background factor), and the forecast error against repeating the last frame
  (:func:`pyro_dynvae.evaluation.evaluate`);
- the static/dynamic protocol (:func:`pyro_dynvae.assessment.protocol.assess_static_dynamic`)
  on ``protocol_pairs`` pairs of the scored sequences, read by the dataset's judge, trained
  once per study into ``out/judges`` (:func:`study_judge`): the swap, the prior-sample tests,
  the split's agreement with the truth and the object/background swap, the headline table.

Each cell writes ``cells/<dataset>/<variant>/seed<seed>/result.json`` atomically once it is
done, so an interrupted study resumes where it stopped: finished cells are skipped, and a cell
interrupted during training continues from its last checkpoint. The study then writes
``table.md`` and ``table.csv`` (mean +- std over seeds), ``figures/`` (eigenvalue histograms
side by side, metric bars) and ``study.json`` (budget, command, library versions).

    python -m benchmarks.compare_variants --out compare_out --jobs 2
    python -m benchmarks.compare_variants --budget 8 --seeds 0 1 2 3 4   # e.g. on a GPU
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import json
import logging
import multiprocessing
import os
import platform
import shlex
import shutil
import sys
import tempfile
import warnings
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from pyro_dynvae import metrics
from pyro_dynvae import train as training
from pyro_dynvae.config import TrainConfig
from pyro_dynvae.defaults import model_options
from pyro_dynvae.models import MODEL_NAMES
from pyro_dynvae.run_folder import versions
from pyro_dynvae.validation import json_object

from . import report
from .budget import StudyBudget
from .cell_scores import score_cell
from .datasets import STUDY_DATASETS, make_dataset
from .judge import Judge
from .protocol import MIN_ACCURACY, MIN_R2, protocol_judge
from .split import STATIC_THRESHOLD

#: the models every study compares unless told otherwise: the hierarchical prior with learned
#: and with fixed noise scales (``timescales``), one penalty variant, and the baselines without
#: learned dynamics (VAE, slowVAE) and with a static code (DSVAE); every name of
#: :data:`~pyro_dynvae.models.MODEL_NAMES` can be chosen with ``variants``. Six models x two
#: datasets x five seeds fit the default budget's two hours on two CPU cores (five took 1 h 13
#: min); all twelve would not.
DEFAULT_VARIANTS = ("hierarchical", "timescales", "slow_l1", "vae", "slowvae", "dsvae")

#: the training seeds of a study unless told otherwise
DEFAULT_SEEDS = (0, 1, 2, 3, 4)

#: model options every cell adds to its dataset's defaults: the conv decoder, whose encoder
#: mirror the supervised ceilings of :mod:`.datasets` were measured with, on both datasets
#: (``run_study(model_overrides=...)`` adds to these for one study)
STUDY_MODEL_OPTIONS = {"architecture": "conv"}

#: the model every other is compared with, seed by seed (:func:`~.report.paired_rows`)
REFERENCE_VARIANT = "hierarchical"


def _write_json_atomic(path: Path, content: dict) -> None:
    """Write JSON to a temporary file in the same folder, then rename it over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    with os.fdopen(handle, "w") as stream:
        json.dump(content, stream, indent=2, sort_keys=True, default=_jsonable)
        stream.write("\n")
    os.replace(temporary, path)


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, torch.Tensor):
        return value.tolist()
    return str(value)


def _build_dataset(dataset: str, budget: StudyBudget, split: str, size: int) -> Dataset:
    if dataset not in STUDY_DATASETS:
        raise ValueError(f"dataset must be one of {sorted(STUDY_DATASETS)}, got {dataset!r}")
    return make_dataset(dataset, split, num_sequences=size, num_frames=budget.num_frames,
                        seed=budget.data_seed)


@functools.lru_cache(maxsize=4)
def make_datasets(dataset: str, budget: StudyBudget) -> tuple[Dataset, Dataset]:
    """The training and held-out datasets of one study dataset (same for every cell; built
    once per process)."""
    return (_build_dataset(dataset, budget, "train", budget.num_train_sequences),
            _build_dataset(dataset, budget, "test", budget.num_test_sequences))


@functools.lru_cache(maxsize=4)
def make_score_dataset(dataset: str, budget: StudyBudget) -> Dataset:
    """The held-out sequences the codes are scored on: ``num_score_sequences`` of the test
    split (sequence ``i`` depends only on the seed, the split and ``i``, so its first
    ``num_test_sequences`` are the held-out dataset's)."""
    return _build_dataset(dataset, budget, "test", budget.num_score_sequences)


def study_model_options(model_overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The model options every cell of a study adds to its dataset's defaults:
    :data:`STUDY_MODEL_OPTIONS` updated with ``model_overrides``.

    :raises TypeError: if ``model_overrides`` is not a mapping with string keys.
    """
    if model_overrides is None:
        model_overrides = {}
    if not (isinstance(model_overrides, Mapping)
            and all(isinstance(key, str) for key in model_overrides)):
        raise TypeError(f"model_overrides must be a mapping of option names to values, got "
                        f"{model_overrides!r:.80}")
    return {**STUDY_MODEL_OPTIONS, **model_overrides}


def train_config(dataset: str, variant: str, seed: int, budget: StudyBudget,
                 model_overrides: Mapping[str, Any] | None = None) -> TrainConfig:
    """The :class:`~pyro_dynvae.config.TrainConfig` of one cell: the dataset's
    :data:`~.datasets.STUDY_DATASETS` spec and its default model options
    (:func:`pyro_dynvae.defaults.model_options`, the same as ``pyro-dynvae train``'s) with
    :func:`study_model_options` ``(model_overrides)``."""
    spec = STUDY_DATASETS[dataset]
    return TrainConfig(
        variant=variant,
        model_overrides=study_model_options(model_overrides),
        dataset=dataset,
        dataset_options=dict(spec["options"]),
        num_sequences=budget.num_train_sequences,
        num_val_sequences=budget.num_test_sequences,
        num_frames=budget.num_frames,
        image_size=spec["image_size"],
        latent_dim=budget.latent_dim,
        batch_size=budget.batch_size,
        learning_rate=budget.learning_rate,
        max_steps=budget.max_steps,
        seed=seed,
        val_every=0,
        checkpoint_every=max(1, budget.max_steps // 4),
        forecast_horizon=budget.forecast_horizon,
        accelerator="auto",
        devices="1",
    )


def study_judge(out: str | os.PathLike, dataset: str, budget: StudyBudget) -> Judge:
    """The judge of a study dataset, trained once into ``out/judges`` (``budget.judge_steps``
    steps on frames of the training split, held out on the scored sequences) and loaded from
    there afterwards."""
    train_data, _ = make_datasets(dataset, budget)
    return protocol_judge(train_data, make_score_dataset(dataset, budget),
                          cache_dir=Path(out) / "judges", steps=budget.judge_steps)


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """
    Keep Lightning's per-run banners and hints out of the study's progress bar, and the
    warnings of metrics on small held-out sets: averages of empty lists (e.g. explicitness
    when a class is missing from the test frames; the score is then NaN, shown as n/a) and
    BetaVAE's logistic regression stopping at its iteration limit. Restored on exit.
    """
    loggers = [logging.getLogger(name) for name in ("lightning.pytorch", "lightning.fabric")]
    levels = [logger.level for logger in loggers]
    with warnings.catch_warnings():
        for pattern in (".*does not have many workers.*", ".*treespec.*",
                        ".*exists and is not empty.*", "Mean of empty slice",
                        "invalid value encountered"):
            warnings.filterwarnings("ignore", message=pattern)
        warnings.filterwarnings("ignore", category=ConvergenceWarning)
        for logger in loggers:
            logger.setLevel(logging.ERROR)
        try:
            yield
        finally:
            for logger, level in zip(loggers, levels, strict=True):
                logger.setLevel(level)


def run_cell(dataset: str, variant: str, seed: int, budget: StudyBudget,
             datasets: tuple[Dataset, Dataset], path: Path,
             judge: Judge | None = None,
             model_overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """
    Train one variant, score it (with the static/dynamic protocol read by ``judge``, whose
    figure goes to ``path/swaps.png``) and write ``path/result.json`` (atomically, last).
    Training resumes from ``path/run/checkpoints/last.ckpt`` when an earlier attempt left
    one. A training run that diverges (:class:`~pyro_dynvae.train.NonFiniteLossError`, or a
    ``ValueError`` such as a precision that lost positive definiteness) is recorded as
    ``"status": "failed"`` with its message. ``model_overrides``: as in :func:`train_config`.
    """
    train_data, test_data = datasets
    config = train_config(dataset, variant, seed, budget, model_overrides)
    run_dir = path / "run"
    last = run_dir / "checkpoints" / "last.ckpt"
    result: dict[str, Any] = {"dataset": dataset, "variant": variant, "seed": seed,
                              "budget": dataclasses.asdict(budget),
                              "train_config": dataclasses.asdict(config)}
    dynvae = training.make_model(config, channels=train_data[0][0].shape[1])
    try:
        module = training.fit(dynvae, train_data, test_data, config, run_dir,
                              ckpt_path=last if last.exists() else None,
                              enable_progress_bar=False)
    except (training.NonFiniteLossError, ValueError) as error:
        result.update(status="failed", error=f"{type(error).__name__}: {error}")
        _write_json_atomic(path / "result.json", result)
        return result
    if module.trainer.global_step < config.max_steps:  # never score an unfinished run
        raise RuntimeError(f"training of {path} stopped at step {module.trainer.global_step}"
                           f" of {config.max_steps}; rerun the study to resume it")
    dynvae = module.dynvae.to("cuda" if torch.cuda.is_available() else "cpu")
    scores, encoded = score_cell(dynvae, test_data, make_score_dataset(dataset, budget), config,
                                 budget, judge=judge, figure_path=path / "swaps.png")
    for key in ("eigenvalues", "prior_scales"):
        if key in encoded:
            np.save(path / f"{key}.npy", encoded[key])
    result.update(status="ok", scores=scores, versions=study_versions())
    _write_json_atomic(path / "result.json", result)
    return result


def study_versions() -> dict[str, str]:
    """Versions of every library a score depends on, and the Python and platform."""
    return {**versions(), **metrics.library_versions(),
            "python": platform.python_version(), "platform": platform.platform()}


def _cell_name(dataset: str, variant: str, seed: int) -> str:
    return f"{dataset}/{variant}/seed{seed}"


def _run_pending(out: Path, budget: StudyBudget, model_overrides: dict[str, Any],
                 dataset: str, variant: str, seed: int) -> dict[str, Any]:
    """Run one cell (in this or a worker process, which gets every option as an argument:
    a spawned worker imports this module afresh), quietly."""
    with _quiet():
        return run_cell(dataset, variant, seed, budget, make_datasets(dataset, budget),
                        cell_dir(out, dataset, variant, seed), study_judge(out, dataset, budget),
                        model_overrides)


def cell_dir(out: Path, dataset: str, variant: str, seed: int) -> Path:
    return out / "cells" / dataset / variant / f"seed{seed}"


def load_result(path: Path) -> dict[str, Any] | None:
    """A finished cell's result, or None if the cell has not finished."""
    result_path = path / "result.json"
    return json.loads(result_path.read_text()) if result_path.exists() else None


def run_study(out: str | os.PathLike, *, datasets: Sequence[str] = tuple(STUDY_DATASETS),
              variants: Sequence[str] = DEFAULT_VARIANTS,
              seeds: Sequence[int] = DEFAULT_SEEDS,
              budget: StudyBudget | None = None, command: str | None = None,
              retry_failed: bool = False, progress: bool = True,
              jobs: int = 1, model_overrides: Mapping[str, Any] | None = None
              ) -> dict[str, Any]:
    """
    Run (or resume) the comparison and write the table and figures into ``out``.

    :param out: output folder. A study there with a different budget or different model
        options is refused; ``study.json`` lists every invocation with its command and
        library versions.
    :param datasets: keys of :data:`~.datasets.STUDY_DATASETS`.
    :param variants: names of :data:`pyro_dynvae.models.MODEL_NAMES`.
    :param seeds: training seeds (3 or more for a meaningful std).
    :param StudyBudget budget: default :class:`StudyBudget` ``()``.
    :param str command: the command line, recorded in ``study.json`` and the table.
    :param bool retry_failed: rerun cells whose training diverged earlier.
    :param bool progress: show a tqdm bar over cells.
    :param int jobs: cells trained at once in separate processes, each with this process's
        number of torch threads (e.g. 2 jobs of 1 thread on an idle 2-core machine).
    :param dict model_overrides: model options of every variant on top of the datasets'
        defaults and :data:`STUDY_MODEL_OPTIONS` (e.g. ``{"conv_channels": [8, 16, 32]}``),
        checked by building each model once before anything trains.
    :returns: ``{"trained": [...], "skipped": [...], "failed": [...]}`` cell names, and
        ``"table"``: the aggregated rows.
    """
    budget = budget or StudyBudget()
    for name, chosen, known in (("datasets", datasets, STUDY_DATASETS), ("variants", variants,
                                                                    MODEL_NAMES)):
        unknown = [item for item in chosen if item not in known]
        if unknown or not chosen:
            raise ValueError(f"{name} must be a non-empty list from {sorted(known)}, "
                             f"got {list(chosen)}")
    if not seeds or any(not isinstance(seed, int) or seed < 0 for seed in seeds):
        raise ValueError(f"seeds must be a non-empty list of non-negative ints, got {seeds}")
    if not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"jobs must be a positive integer, got {jobs!r}")
    options = study_model_options(model_overrides)
    _check_model_options(datasets, variants, budget, options)
    out = Path(out)
    _record_study(out, budget, options, command)
    cells = [(d, v, s) for d in datasets for v in variants for s in seeds]
    summary: dict[str, Any] = {"trained": [], "skipped": [], "failed": []}
    pending = []
    for cell in cells:
        previous = load_result(cell_dir(out, *cell))
        if previous is not None and (previous["status"] == "ok" or not retry_failed):
            summary["skipped"].append(_cell_name(*cell))
            continue
        if previous is not None:  # a failed cell, retried from scratch
            shutil.rmtree(cell_dir(out, *cell) / "run", ignore_errors=True)
        pending.append(cell)
    for dataset in dict.fromkeys(cell[0] for cell in pending):
        study_judge(out, dataset, budget)  # trained once, here, before the cells load it
    bar = tqdm(total=len(pending), desc="compare", unit="cell", disable=not progress)
    with contextlib.ExitStack() as stack:
        if jobs == 1:
            finished = (_run_pending(out, budget, options, *cell) for cell in pending)
        else:
            pool = stack.enter_context(ProcessPoolExecutor(
                jobs, mp_context=multiprocessing.get_context("spawn"),
                initializer=torch.set_num_threads, initargs=(torch.get_num_threads(),)))
            futures = [pool.submit(_run_pending, out, budget, options, *cell)
                       for cell in pending]
            finished = (future.result() for future in as_completed(futures))
        for result in finished:
            name = _cell_name(result["dataset"], result["variant"], result["seed"])
            summary["failed" if result["status"] == "failed" else "trained"].append(name)
            bar.set_postfix_str(name)
            bar.update()
    bar.close()
    results = [load_result(cell_dir(out, *cell)) for cell in cells]
    rows = report.aggregate(results, datasets, variants)
    header = _study_header(out, budget, datasets, variants, seeds, command)
    paired = {dataset: report.paired_rows(results, dataset, REFERENCE_VARIANT, variants)
              for dataset in datasets}
    report.write_tables(rows, out, header, paired)
    report.write_figures(out, rows, _eigenvalue_panels(out, datasets, variants, seeds))
    summary["table"] = rows
    return summary


def _eigenvalue_panels(out: Path, datasets: Sequence[str], variants: Sequence[str],
                       seeds: Sequence[int]) -> dict[str, list[tuple[str, int, np.ndarray]]]:
    """Each dataset's eigenvalues of every variant that has them, from its first finished
    seed (``cells/.../eigenvalues.npy``)."""
    panels: dict[str, list[tuple[str, int, np.ndarray]]] = {}
    for dataset in datasets:
        panels[dataset] = []
        for variant in variants:
            for seed in seeds:
                path = cell_dir(out, dataset, variant, seed) / "eigenvalues.npy"
                if path.exists():
                    panels[dataset].append((variant, seed, np.load(path)))
                    break
    return panels


def _check_model_options(datasets: Sequence[str], variants: Sequence[str],
                         budget: StudyBudget, options: dict[str, Any]) -> None:
    """Build every variant once with each dataset's options (no data, no training), so that
    an unknown or bad option fails here, naming the cell, rather than in a worker later."""
    for dataset in datasets:
        for variant in variants:
            try:
                training.make_model(train_config(dataset, variant, 0, budget, options),
                                    channels=1)
            except (TypeError, ValueError) as error:
                raise type(error)(f"model options {options} for {variant} on {dataset}: "
                                  f"{error}") from None


def _record_study(out: Path, budget: StudyBudget, options: dict[str, Any],
                  command: str | None) -> None:
    """
    Record the budget, data and model options in ``out/study.json`` and append this
    invocation (command, UTC time, library versions); refuse a folder holding another budget
    or other model options.
    """
    study_path = out / "study.json"
    recorded_options = json.loads(json.dumps(
        {name: model_options(name, options) for name in STUDY_DATASETS}, default=_jsonable))
    study = {"budget": dataclasses.asdict(budget), "datasets": STUDY_DATASETS,
             "model_options": recorded_options, "invocations": []}
    if study_path.exists():
        study = json.loads(study_path.read_text())
        if study["budget"] != dataclasses.asdict(budget):
            raise ValueError(f"{out} holds a study with another budget ({study['budget']}); "
                             "use a new output folder or the same --budget")
        if study["model_options"] != recorded_options:
            raise ValueError(f"{out} holds a study with other model options "
                             f"({study['model_options']}); use a new output folder or the "
                             "same --model-overrides")
    study["invocations"].append({"command": command, "versions": study_versions(),
                                 "started_utc": datetime.now(timezone.utc).isoformat()})
    _write_json_atomic(study_path, study)


def _study_header(out: Path, budget: StudyBudget, datasets: Sequence[str],
                  variants: Sequence[str], seeds: Sequence[int], command: str | None) -> str:
    study = json.loads((out / "study.json").read_text())
    dci_label = ("gradient boosting (standard)" if budget.dci_predictor == "gradient_boosting"
                 else "random forest (fast, NON-STANDARD: not comparable with published DCI)")
    num_test = min(max(1, round(budget.num_score_sequences / 3)), budget.num_score_sequences - 1)
    lines = [
        "# Variant comparison",
        "",
        f"Command: `{command or 'run_study(...)'}`",
        "",
        f"Budget: {json.dumps(study['budget'], sort_keys=True)}",
        f"Datasets: {json.dumps({d: STUDY_DATASETS[d] for d in datasets}, sort_keys=True)}; "
        "model options of every variant (the datasets' defaults with the study's own, as "
        "recorded when the study began): "
        f"{json.dumps({d: study['model_options'][d] for d in datasets}, sort_keys=True)}.",
        f"Variants: {', '.join(variants)}; seeds: {', '.join(map(str, seeds))}. "
        "Entries: mean ± std (ddof=1) over the seeds that finished (`ok`/`seeds`).",
        "",
        f"Codes vs factors on {budget.num_score_sequences} held-out sequences, one random "
        "frame each (codes = posterior means, factors = the dataset's metric factors reduced "
        "to what a frame shows, with their types; 20 bins where a metric needs classes): MIG "
        f"and MCC on all {budget.num_score_sequences}; DCI, SAP, Mod/Expl and the probes "
        f"fitted on {budget.num_score_sequences - num_test} sequences, scored on the other "
        f"{num_test} (disentanglement_lib: 10,000 / 5,000). DCI predictor: {dci_label}. "
        "ELBO, recon, forecast and dynamics diagnostics on the first "
        f"{budget.num_test_sequences} of those sequences. BetaVAE and FactorVAE: batch "
        f"{budget.intervention_batch_size}, {budget.intervention_num_train} train / "
        f"{budget.intervention_num_eval} eval points, {budget.variance_estimate} frames for "
        "FactorVAE's variances (disentanglement_lib: 64, 10,000 / 5,000, 10,000).",
        "",
        "Columns: MIG; DCI-D/-C disentanglement/completeness, DCI-I informativeness (held-out "
        "R^2 / accuracy above chance of a predictor suited to each factor's type); SAP "
        "(discrete); Mod modularity (noise codes score about 0.3, not 0), Expl test "
        "explicitness (ROC-AUC, chance 0.5); MCC (Hungarian matching; Spearman for continuous, "
        "correlation ratio for categorical, circular-linear for periodic factors); probe "
        "lin/nonlin = mean over factors of the held-out score above chance of a linear "
        "(ridge/logistic) and a random-forest probe (per factor in the Probes tables); "
        "BetaVAE / FactorVAE evaluation accuracy; recon MSE per pixel; "
        f"fcst/best = forecast MSE of the last {budget.forecast_horizon} frames / that of the "
        "best of copying the last frame, a blank frame and the mean training frame (< 1 beats "
        "them all); eig BC = Sarle's bimodality "
        "coefficient of the per-latent mean |lambda - 1| (> 5/9 suggests static vs dynamic "
        "latents), eig sep = its Otsu separation (1: two point masses); obj/bg overlap = "
        "histogram intersection of the latents' object and background associations (0: "
        "disjoint latents). n/a: not defined for the model or dataset.",
        "",
        "Static/dynamic protocol (pyro_dynvae.assessment.protocol) on "
        f"{min(budget.protocol_pairs, budget.num_score_sequences // 2)} pairs (a, b) of the "
        "scored sequences, read by each dataset's judge (a supervised network trained on "
        f"{budget.judge_steps} batches of frames rendered from sampled factors; refused, n/a, "
        f"below accuracy {MIN_ACCURACY} on any class or R^2 {MIN_R2} on any continuous "
        "factor): the model's latents split into static and dynamic from its own dynamics (the "
        "prior's expected within-sequence share of each latent's variance below "
        f"{STATIC_THRESHOLD}; the posterior means' "
        "share for models without learned dynamics); swap: a's codes with b's static latents "
        "(b's sequence mean), decoded; static: the judge reads b's static factors, dynamic: "
        "a's dynamic ones; prior: a's static (dynamic) latents kept, the others drawn from "
        "the model's prior, the judge reads a's static (dynamic) factors (C-DSVAE); split vs "
        "truth: share of the latents carrying a factor whose static/dynamic label matches "
        "that factor's; bg swap: b's slow latents into a (frame by frame): the judge reads "
        "b's background, and a's object (every other factor). Accuracies are means over the "
        "group's factors (tolerance accuracy within 5% of a continuous factor's range); "
        "chance: the majority class, the best constant reader, or a random split.",
        "",
        f"Versions: {json.dumps(study_versions(), sort_keys=True)}",
    ]
    return "\n".join(lines)


#: one-line description of the study's command line
DESCRIPTION = (
    "Train every variant and baseline on the same data, budget and seeds; write table.md, "
    "table.csv and figures (resumable)."
)


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    """The study's argument parser (``python -m benchmarks.compare_variants``)."""
    parser = argparse.ArgumentParser(prog=prog, description=DESCRIPTION)
    add_arguments(parser)
    return parser


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the study's options to ``parser`` (also used by ``pyro-dynvae compare``)."""
    parser.add_argument("--out", default="compare_out", help="output folder (default: %(default)s)")
    parser.add_argument("--budget", type=float, default=1.0,
                        help="scale of steps, sequences and intervention sample sizes; 1 (60 "
                        "cells of 2000 steps) is meant to take under 2 hours with --jobs 2 on 2 "
                        "idle CPU cores (the README has the measured time) (default: "
                        "%(default)s)")
    parser.add_argument("--variants", nargs="+", default=list(DEFAULT_VARIANTS),
                        choices=list(MODEL_NAMES), metavar="VARIANT",
                        help=f"variants to compare, of {list(MODEL_NAMES)} (default: "
                        f"{' '.join(DEFAULT_VARIANTS)})")
    parser.add_argument("--datasets", nargs="+", default=list(STUDY_DATASETS),
                        choices=list(STUDY_DATASETS), metavar="DATASET",
                        help=f"datasets (default: all of {list(STUDY_DATASETS)})")
    parser.add_argument("--seeds", nargs="+", type=int, default=list(DEFAULT_SEEDS),
                        help=f"training seeds (default: {' '.join(map(str, DEFAULT_SEEDS))})")
    parser.add_argument("--dci-predictor", choices=["random_forest", "gradient_boosting"],
                        help="DCI's classifier (default: random_forest below --budget 4, "
                        "gradient_boosting from 4)")
    parser.add_argument("--retry-failed", action="store_true",
                        help="rerun cells whose training diverged in an earlier run")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch intra-op threads (default: %(default)s; on a shared CPU, more "
                        "threads than free cores slow training down by an order of magnitude)")
    parser.add_argument("--jobs", type=int, default=1,
                        help="cells trained in parallel processes (default: %(default)s; e.g. 2 "
                        "on an idle 2-core machine)")
    parser.add_argument("--model-overrides", type=json_object, default={},
                        help="JSON object of model options for every variant, on top of the "
                        "study's (e.g. '{\"conv_channels\": [8, 16, 32]}') (default: none)")
    parser.add_argument("--max-steps", type=int,
                        help="optimiser steps of every cell instead of --budget's (its data and "
                        "sample sizes stay), e.g. to ask whether a model needs more training "
                        "(default: the budget's)")
    parser.add_argument("--judge-steps", type=int, default=StudyBudget().judge_steps,
                        help="training steps of each dataset's judge, trained once per study "
                        "(not scaled by --budget; the protocol refuses a judge below its "
                        "accuracy) (default: %(default)s)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def _invocation() -> list[str]:
    """This process's command line as typed: ``python -m module ...``, ``python script.py
    ...`` or an entry point's ``prog ...``."""
    spec = getattr(sys.modules["__main__"], "__spec__", None)
    if spec is not None:
        return ["python", "-m", spec.name, *sys.argv[1:]]
    return ["python", *sys.argv] if sys.argv[0].endswith(".py") else list(sys.argv)


def main(argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    """Command-line entry point (``benchmarks/compare_variants.py``, ``pyro-dynvae compare``)."""
    args = build_parser(prog).parse_args(argv)
    command = None if argv is None else shlex.join([prog or "compare", *argv])
    return run(args, command)


def study_budget(args: argparse.Namespace) -> StudyBudget:
    """The budget parsed ``args`` ask for: ``--budget`` scaled, with ``--judge-steps`` and, if
    given, ``--max-steps``."""
    budget = dataclasses.replace(StudyBudget.scaled(args.budget, args.dci_predictor),
                                 judge_steps=args.judge_steps)
    if args.max_steps is not None:
        budget = dataclasses.replace(budget, max_steps=args.max_steps)
    return budget


def run(args: argparse.Namespace, command: str | None = None) -> int:
    """Run the study for parsed ``args`` (see :func:`add_arguments`); ``command`` is recorded
    in ``study.json`` (default: this process's command line)."""
    if args.threads < 1:
        raise ValueError(f"--threads must be a positive integer, got {args.threads}")
    torch.set_num_threads(args.threads)
    if command is None:
        command = shlex.join(_invocation())
    summary = run_study(
        args.out,
        datasets=args.datasets,
        variants=args.variants,
        seeds=args.seeds,
        budget=study_budget(args),
        model_overrides=args.model_overrides,
        command=command,
        retry_failed=args.retry_failed,
        progress=not args.no_progress,
        jobs=args.jobs,
    )
    out = Path(args.out)
    print(f"trained {len(summary['trained'])}, skipped {len(summary['skipped'])} finished, "
          f"failed {len(summary['failed'])} cells; table: {out / 'table.md'}")
    for name in summary["failed"]:
        print(f"  failed: {name}")
    return 0

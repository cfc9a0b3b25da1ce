"""The tables and figures of a variant study: aggregation over seeds, the Markdown and CSV
tables (the static/dynamic protocol's headline, every score, the per-factor probes, the paired
differences against the reference model) and the figures.

:func:`aggregate` turns the cells' results into one row per ``(dataset, variant)``;
:func:`write_tables` writes ``table.md`` and ``table.csv``; :func:`write_figures` the eigenvalue
histograms and metric bars. The orchestration that produces the results is
:mod:`~pyro_dynvae.assessment.study`.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from pyro_dynvae import metrics

from .paired import paired_differences

__all__ = ["COLUMNS", "PAIRED_COLUMNS", "PROTOCOL_COLUMNS", "aggregate", "paired_rows",
           "write_figures", "write_tables"]

#: table columns: key in a cell's ``scores`` -> column title
COLUMNS = {
    "mig": "MIG",
    "dci_disentanglement": "DCI-D",
    "dci_completeness": "DCI-C",
    "dci_informativeness": "DCI-I",
    "sap": "SAP",
    "modularity": "Mod",
    "explicitness": "Expl",
    "mcc": "MCC",
    "probe_linear": "probe lin",
    "probe_nonlinear": "probe nonlin",
    "beta_vae": "BetaVAE",
    "factor_vae": "FactorVAE",
    "recon_mse": "recon MSE",
    "forecast_vs_best_baseline": "fcst/best",
    "eig_bimodality": "eig BC",
    "eig_separation": "eig sep",
    "overlap": "obj/bg overlap",
}

#: the static/dynamic protocol's headline columns (:func:`~.protocol.assess_static_dynamic`'s
#: summary): key -> column title; each accuracy ``<name>_accuracy`` has its ``<name>_chance``
PROTOCOL_COLUMNS = {
    "swap_static_accuracy": "swap: static",
    "swap_dynamic_accuracy": "swap: dynamic",
    "prior_static_kept_accuracy": "prior: static kept",
    "prior_dynamic_kept_accuracy": "prior: dynamic kept",
    "split_agreement": "split vs truth",
    "background_follows_accuracy": "bg swap: bg follows",
    "object_kept_accuracy": "bg swap: object kept",
}

#: the chance level of each protocol column
PROTOCOL_CHANCE = {key: key.removesuffix("_accuracy") + "_chance" for key in PROTOCOL_COLUMNS}

#: the scores of the paired differences against the reference model: the protocol's headline
#: and the per-factor scores that decide a comparison
PAIRED_COLUMNS = {**PROTOCOL_COLUMNS, "mig": "MIG", "dci_disentanglement": "DCI-D",
                  "mcc": "MCC", "probe_linear": "probe lin",
                  "forecast_vs_best_baseline": "fcst/best"}

#: the metrics drawn as bars
BAR_METRICS = ("mig", "dci_disentanglement", "sap", "modularity", "mcc", "beta_vae",
               "factor_vae", "forecast_vs_best_baseline", "overlap")



def aggregate(results: Sequence[dict[str, Any] | None], datasets: Sequence[str],
              variants: Sequence[str]) -> list[dict[str, Any]]:
    """
    One row per ``(dataset, variant)``: ``num_ok`` / ``num_seeds`` cells,
    ``protocol_refused`` (finished cells whose judge the protocol refused) and, for every
    column of :data:`COLUMNS` and :data:`PROTOCOL_COLUMNS`, every protocol chance level and
    every per-factor probe score (:func:`_probe_scores`), the mean and (sample, ``ddof=1``)
    standard deviation over the finished seeds (NaN where a score does not apply or no seed
    finished).
    """
    rows = []
    for dataset in datasets:
        for variant in variants:
            cells = [r for r in results if r and r["dataset"] == dataset
                     and r["variant"] == variant]
            finished = [r["scores"] for r in cells if r["status"] == "ok"]
            row: dict[str, Any] = {"dataset": dataset, "variant": variant,
                                   "num_ok": len(finished), "num_seeds": len(cells)}
            row["protocol_refused"] = sum("refused" in s.get("static_dynamic", {})
                                          for s in finished)
            finished = [{**_probe_scores(s), **s} for s in finished]
            probe_keys = dict.fromkeys(key for s in finished for key in _probe_scores(s))
            for key in (*COLUMNS, *PROTOCOL_COLUMNS, *PROTOCOL_CHANCE.values(), *probe_keys):
                values = np.array([_as_float(s.get(key)) for s in finished], dtype=np.float64)
                values = values[np.isfinite(values)]
                row[f"{key}_mean"] = float(values.mean()) if values.size else math.nan
                row[f"{key}_std"] = float(values.std(ddof=1)) if values.size > 1 else math.nan
            rows.append(row)
    return rows


def _probe_scores(scores: dict[str, Any]) -> dict[str, float]:
    """A cell's per-factor probes as flat keys: ``probe_linear:<factor>``,
    ``probe_nonlinear:<factor>`` (held-out R^2 or accuracy) and ``chance:<factor>``."""
    flat = {}
    probes = scores.get("probes", {})
    for factor in scores.get("factors", probes):
        probe = probes[factor]
        for key in ("linear", "nonlinear"):
            flat[f"probe_{key}:{factor}"] = probe[key]
        flat[f"chance:{factor}"] = probe["chance"]
    return flat


def _as_float(value: Any) -> float:
    return math.nan if value is None else float(value)


def _format(mean: float, std: float) -> str:
    if math.isnan(mean):
        return "n/a"
    return f"{mean:.3f}" if math.isnan(std) else f"{mean:.3f} ± {std:.3f}"


def write_tables(rows: Sequence[dict[str, Any]], out: Path, header: str,
                 paired: Mapping[str, Mapping[str, Any]] | None = None) -> tuple[Path, Path]:
    """Write ``table.md`` (per dataset below ``header``: the protocol's headline, the paired
    differences, every score and the probes) and ``table.csv`` (one line per row,
    ``<key>_mean`` and ``<key>_std`` columns).

    :param paired: ``{dataset: paired_rows(...)}`` (:func:`paired_rows`); None: no such table.
    """
    lines = [header]
    for dataset in dict.fromkeys(row["dataset"] for row in rows):
        lines += ["", f"## {dataset}"]
        lines += _protocol_table([row for row in rows if row["dataset"] == dataset])
        if paired and paired.get(dataset):
            lines += _paired_table(paired[dataset])
        lines += ["", "Every score:", "",
                  "| variant | ok/seeds | " + " | ".join(COLUMNS.values()) + " |",
                  "|---|---|" + "---|" * len(COLUMNS)]
        for row in rows:
            if row["dataset"] == dataset:
                cells = [_format(row[f"{key}_mean"], row[f"{key}_std"]) for key in COLUMNS]
                lines.append(f"| {row['variant']} | {row['num_ok']}/{row['num_seeds']} | "
                             + " | ".join(cells) + " |")
        lines += _probe_table([row for row in rows if row["dataset"] == dataset])
    markdown = out / "table.md"
    markdown.write_text("\n".join(lines) + "\n")
    table = out / "table.csv"
    with table.open("w", newline="") as stream:
        fieldnames = list(dict.fromkeys(key for row in rows for key in row))
        writer = csv.DictWriter(stream, fieldnames=fieldnames, restval="")
        writer.writeheader()
        writer.writerows(rows)
    return markdown, table


def _protocol_table(rows: Sequence[dict[str, Any]]) -> list[str]:
    """Markdown lines of one dataset's headline: each static/dynamic protocol column's mean ±
    std over seeds with its chance level (mean over seeds) in brackets, and the eigenvalue
    bimodality (the seed's second question: do the eigenvalues fall into two groups?)."""
    lines = ["", "Static/dynamic protocol (judge's accuracy, chance in brackets) and the "
             "eigenvalues' bimodality (eig BC, above 5/9: two groups):", "",
             "| variant | " + " | ".join(PROTOCOL_COLUMNS.values()) + " | eig BC |",
             "|---|" + "---|" * (len(PROTOCOL_COLUMNS) + 1)]
    for row in rows:
        cells = []
        for key, chance in PROTOCOL_CHANCE.items():
            cell = _format(row[f"{key}_mean"], row[f"{key}_std"])
            if not math.isnan(row[f"{chance}_mean"]):
                cell += f" ({row[f'{chance}_mean']:.2f})"
            cells.append(cell)
        cells.append(_format(row["eig_bimodality_mean"], row["eig_bimodality_std"]))
        lines.append(f"| {row['variant']} | " + " | ".join(cells) + " |")
    refused = sum(row.get("protocol_refused", 0) for row in rows)
    if refused:
        lines += ["", f"n/a: the protocol refused the judge in {refused} of "
                  f"{sum(row['num_ok'] for row in rows)} cells (its held-out accuracy is below "
                  "the requirement; see the cells' result.json)."]
    return lines


def paired_rows(results: Sequence[Mapping[str, Any] | None], dataset: str, reference: str,
                variants: Sequence[str], **options: Any) -> dict[str, Any]:
    """The paired differences ``reference - other`` over seeds of one dataset
    (:func:`~.paired.paired_differences`) for every score of :data:`PAIRED_COLUMNS`.

    :returns: ``{"reference": reference, "differences": {other: {key: {"mean", "low",
        "high", "num_seeds"}}}}``, empty differences when ``reference`` is not in ``variants``.
    """
    others = [v for v in variants if v != reference] if reference in variants else []
    return {"reference": reference,
            "differences": paired_differences(results, dataset, reference, others,
                                              list(PAIRED_COLUMNS), **options)}


def _paired_table(paired: Mapping[str, Any]) -> list[str]:
    """Markdown lines of one dataset's paired differences: mean ``[low, high]``."""
    differences = paired["differences"]
    if not differences:
        return []
    lines = ["", f"Paired differences, {paired['reference']} minus each model over the seeds "
             "both finished (mean [95% percentile bootstrap interval]; positive: "
             f"{paired['reference']} higher):", "",
             "| model | seeds | " + " | ".join(PAIRED_COLUMNS.values()) + " |",
             "|---|---|" + "---|" * len(PAIRED_COLUMNS)]
    for other, scores in differences.items():
        cells = []
        for key in PAIRED_COLUMNS:
            value = scores[key]
            if math.isnan(value["mean"]):
                cells.append("n/a")
            elif math.isnan(value["low"]):
                cells.append(f"{value['mean']:+.3f}")
            else:
                cells.append(f"{value['mean']:+.3f} [{value['low']:+.3f}, {value['high']:+.3f}]")
        seeds = max(value["num_seeds"] for value in scores.values())
        lines.append(f"| {other} | {seeds} | " + " | ".join(cells) + " |")
    return lines


def _probe_table(rows: Sequence[dict[str, Any]]) -> list[str]:
    """Markdown lines of one dataset's per-factor probes: ``linear / nonlinear`` held-out
    scores (mean over seeds), with the chance level of categorical factors in the header."""
    factors = list(dict.fromkeys(key.split(":", 1)[1] for row in rows for key in row
                                 if key.startswith("probe_linear:") and key.endswith("_mean")))
    if not factors:
        return []
    factors = [name[:-len("_mean")] for name in factors]
    titles = []
    for name in factors:
        chance = np.nanmean([row.get(f"chance:{name}_mean", math.nan) for row in rows])
        titles.append(f"{name} (chance {chance:.2f})" if chance > 0 else name)
    lines = ["", "Probes (held-out R^2, or accuracy for classes; linear / random forest):", "",
             "| variant | " + " | ".join(titles) + " |", "|---|" + "---|" * len(factors)]
    for row in rows:
        cells = [" / ".join("n/a" if math.isnan(value) else f"{value:.2f}" for value in (
            row.get(f"probe_{probe}:{name}_mean", math.nan) for probe in ("linear", "nonlinear")))
            for name in factors]
        lines.append(f"| {row['variant']} | " + " | ".join(cells) + " |")
    return lines


def _save(fig: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)
    fig.savefig(path, dpi=100)
    return path


def write_figures(out: Path, rows: Sequence[dict[str, Any]],
                  eigenvalues: Mapping[str, Sequence[tuple[str, int, np.ndarray]]]) -> list[Path]:
    """
    Per dataset: ``figures/eigenvalues_<dataset>.png``, each variant's per-latent eigenvalue
    histograms side by side, and ``figures/metrics_<dataset>.png``, bars of
    :data:`BAR_METRICS` (mean, error bar: std over seeds).

    :param rows: :func:`aggregate`'s rows.
    :param eigenvalues: ``{dataset: [(variant, seed, eigenvalues (S, T-1, n)), ...]}``, one
        panel each.
    """
    paths = []
    for dataset in dict.fromkeys(row["dataset"] for row in rows):
        panels = eigenvalues.get(dataset, [])
        if panels:
            fig = Figure(figsize=(max(5.0, 3.2 * len(panels)), 3.0))
            for index, (variant, seed, values) in enumerate(panels):
                ax = fig.add_subplot(1, len(panels), index + 1)
                counts, edges = metrics.eigenvalue_histograms(values, bins=30)
                for latent, column in enumerate(counts):
                    ax.stairs(column, edges, label=str(latent))
                ax.axvline(1.0, color="k", lw=0.8, ls=":")
                ax.set_title(f"{variant} (seed {seed})", fontsize=9)
                ax.set_xlabel("eigenvalue")
            fig.axes[0].set_ylabel("count (per latent)")
            fig.axes[-1].legend(title="latent", fontsize=6, title_fontsize=7)
            fig.suptitle(f"{dataset}: posterior eigenvalues on held-out sequences", fontsize=10)
            fig.tight_layout()
            paths.append(_save(fig, out / "figures" / f"eigenvalues_{dataset}.png"))
        dataset_rows = [row for row in rows if row["dataset"] == dataset]
        keys = [key for key in BAR_METRICS
                if any(np.isfinite(row[f"{key}_mean"]) for row in dataset_rows)]
        if not keys:
            continue
        fig = Figure(figsize=(4 * min(3, len(keys)), 3 * math.ceil(len(keys) / 3)))
        positions = np.arange(len(dataset_rows))
        for index, key in enumerate(keys):
            ax = fig.add_subplot(math.ceil(len(keys) / 3), min(3, len(keys)), index + 1)
            means = [row[f"{key}_mean"] for row in dataset_rows]
            errors = [np.nan_to_num(row[f"{key}_std"]) for row in dataset_rows]
            ax.bar(positions, means, yerr=errors, capsize=2)
            ax.set_xticks(positions, [row["variant"] for row in dataset_rows], rotation=60,
                          fontsize=7, ha="right")
            ax.set_title(COLUMNS[key], fontsize=9)
        fig.suptitle(f"{dataset}: mean ± std over seeds")
        fig.tight_layout()
        paths.append(_save(fig, out / "figures" / f"metrics_{dataset}.png"))
    return paths

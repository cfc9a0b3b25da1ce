"""Paired differences over seeds against hand-computed values and an exhaustive bootstrap."""

import itertools
import math

import numpy as np
import pytest

from pyro_dynvae.assessment import report
from pyro_dynvae.assessment.paired import paired_difference, paired_differences


def test_mean_and_interval_against_every_resample():
    reference, other = [0.5, 0.7, 0.4, 0.9], [0.3, 0.6, 0.5, 0.4]
    differences = np.subtract(reference, other)  # 0.2, 0.1, -0.1, 0.5
    result = paired_difference(reference, other, num_resamples=200000, seed=1)
    assert result["mean"] == pytest.approx(0.175) and result["num_seeds"] == 4
    # the bootstrap distribution of the mean, exactly: all 4^4 equally likely resamples
    means = np.sort([differences[list(pick)].mean()
                     for pick in itertools.product(range(4), repeat=4)])
    low, high = np.quantile(means, [0.025, 0.975])
    assert result["low"] == pytest.approx(low, abs=0.013)
    assert result["high"] == pytest.approx(high, abs=0.013)
    assert result["low"] < result["mean"] < result["high"]


def test_a_constant_shift_has_a_zero_width_interval_and_unpaired_seeds_drop_out():
    result = paired_difference([1.0, 2.0, math.nan, 4.0], [0.5, 1.5, 3.0, 3.5])
    assert (result["mean"], result["low"], result["high"]) == pytest.approx((0.5, 0.5, 0.5))
    assert result["num_seeds"] == 3
    single = paired_difference([1.0, math.nan], [0.0, 1.0])
    assert single["mean"] == 1.0 and math.isnan(single["low"]) and single["num_seeds"] == 1
    assert math.isnan(paired_difference([math.nan], [1.0])["mean"])


def test_bad_arguments():
    with pytest.raises(ValueError, match="reference and other must be 1-d of one length"):
        paired_difference([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match=r"confidence must lie in \(0, 1\)"):
        paired_difference([1.0], [1.0], confidence=1.0)
    with pytest.raises(ValueError, match="num_resamples must be a positive int"):
        paired_difference([1.0], [1.0], num_resamples=0)


def make_result(variant, seed, status="ok", **scores):
    return {"dataset": "sprites", "variant": variant, "seed": seed, "status": status,
            "scores": scores}


def test_study_cells_pair_by_seed():
    results = [make_result("hierarchical", s, mig=0.1 * s) for s in range(3)]
    results += [make_result("vae", 2, mig=0.05), make_result("vae", 0, mig=0.0),
                make_result("vae", 1, status="failed"), None]
    differences = paired_differences(results, "sprites", "hierarchical", ["hierarchical", "vae"],
                                     ["mig", "mcc"])
    assert list(differences) == ["vae"]
    mig = differences["vae"]["mig"]
    assert mig["num_seeds"] == 2 and mig["mean"] == pytest.approx((0.0 + 0.15) / 2)
    assert differences["vae"]["mcc"]["num_seeds"] == 0  # no scores: n/a, not 0
    rows = report.paired_rows(results, "sprites", "hierarchical", ["hierarchical", "vae"])
    lines = report._paired_table(rows)
    assert "hierarchical minus each model" in lines[1]
    assert lines[-1].startswith("| vae | 2 | n/a |") and "+0.075 [" in lines[-1]
    assert report.paired_rows(results, "sprites", "dsvae", ["vae"])["differences"] == {}


def test_write_figures_draws_every_dataset(tmp_path):
    results = [{**make_result("hierarchical", 0, mig=0.1), "dataset": name}
               for name in ("sprites", "moving_mnist")]
    rows = report.aggregate(results, ["sprites", "moving_mnist"], ["hierarchical"])
    eigenvalues = np.random.default_rng(0).normal(1.0, 0.1, size=(4, 3, 2))
    panels = {name: [("hierarchical", 0, eigenvalues)] for name in ("sprites", "moving_mnist")}
    paths = report.write_figures(tmp_path, rows, panels)
    assert sorted(path.name for path in paths) == [
        "eigenvalues_moving_mnist.png", "eigenvalues_sprites.png",
        "metrics_moving_mnist.png", "metrics_sprites.png"]

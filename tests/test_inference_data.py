"""The arviz export of eigenvalues and prior scales, its summary and the forest plot."""

import numpy as np
import pytest

from pyro_dynvae.inference_data import (
    dynamics_inference_data,
    dynamics_summary,
    plot_prior_scales,
)


@pytest.fixture
def eigenvalues():
    return np.random.default_rng(0).uniform(0.5, 1.0, size=(6, 9, 4))  # (N, T-1, n)


SCALES = np.array([0.1, 0.2, 0.3, 0.4])


def test_export_dims_coords_and_values(eigenvalues):
    idata = dynamics_inference_data(eigenvalues, SCALES, latent_names=list("abcd"),
                                    attrs={"variant": "hierarchical"})
    posterior = idata.posterior
    assert posterior["eigenvalues"].dims == ("chain", "draw", "time", "latent")
    assert posterior["prior_scales"].dims == ("chain", "draw", "latent")
    assert dict(posterior.sizes) == {"chain": 1, "draw": 6, "time": 9, "latent": 4}
    assert list(posterior["latent"].values) == list("abcd")
    np.testing.assert_array_equal(posterior["time"].values, np.arange(9))
    np.testing.assert_array_equal(posterior["eigenvalues"].values[0], eigenvalues)
    # sequence 2, transition 5, latent "c"
    assert posterior["eigenvalues"].sel(draw=2, time=5, latent="c").item() == eigenvalues[2, 5, 2]
    np.testing.assert_array_equal(posterior["prior_scales"].values[0, 3], SCALES)
    assert posterior.attrs["variant"] == "hierarchical"


def test_export_with_chains_and_scale_draws(eigenvalues):
    chained = eigenvalues.reshape(2, 3, 9, 4)
    scale_draws = np.random.default_rng(1).uniform(size=(2, 3, 4))
    posterior = dynamics_inference_data(chained, scale_draws).posterior
    assert dict(posterior.sizes) == {"chain": 2, "draw": 3, "time": 9, "latent": 4}
    np.testing.assert_array_equal(posterior["eigenvalues"].values, chained)
    np.testing.assert_array_equal(posterior["prior_scales"].values, scale_draws)
    flat = dynamics_inference_data(eigenvalues, scale_draws.reshape(6, 4)).posterior
    np.testing.assert_array_equal(flat["prior_scales"].values[0], scale_draws.reshape(6, 4))


def test_summary_matches_numpy(eigenvalues):
    summary = dynamics_summary(dynamics_inference_data(eigenvalues, SCALES), round_to="none")
    assert len(summary) == 9 * 4 + 4
    np.testing.assert_allclose(summary.loc["eigenvalues[5, 2]", "mean"],
                               eigenvalues[:, 5, 2].mean())
    np.testing.assert_allclose(summary.loc["eigenvalues[5, 2]", "sd"],
                               eigenvalues[:, 5, 2].std(ddof=1))
    np.testing.assert_allclose(summary.loc["prior_scales[3]", ["mean", "sd"]], [0.4, 0.0],
                               atol=1e-12)


def test_forest_plot_is_written(eigenvalues, tmp_path):
    idata = dynamics_inference_data(eigenvalues, SCALES)
    for suffix in ("png", "pdf"):
        path = plot_prior_scales(idata, tmp_path / f"scales.{suffix}")
        assert path.endswith(suffix)
        with open(path, "rb") as handle:
            header = handle.read(8)
        assert header.startswith(b"\x89PNG" if suffix == "png" else b"%PDF")
    with pytest.raises(ValueError, match="no prior_scales"):
        plot_prior_scales(dynamics_inference_data(eigenvalues), tmp_path / "none.png")


def test_export_validates_inputs(eigenvalues):
    with pytest.raises(ValueError, match="prior_scales must have shape"):
        dynamics_inference_data(eigenvalues, np.ones(3))
    with pytest.raises(ValueError, match="must match"):
        dynamics_inference_data(eigenvalues, np.ones((5, 4)))
    with pytest.raises(ValueError, match="latent_names"):
        dynamics_inference_data(eigenvalues, latent_names=["a"])
    with pytest.raises(ValueError, match=r"\(N, T-1, n\)"):
        dynamics_inference_data(eigenvalues[0])
    with pytest.raises(TypeError, match="real"):
        dynamics_inference_data(eigenvalues + 0.1j)

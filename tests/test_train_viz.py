# Copyright Contributors to the pyro-dynvae project.
# SPDX-License-Identifier: Apache-2.0
"""pyro_dynvae.viz: what each figure draws, and its argument checks."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from pyro_dynvae import viz


def test_traversal_decodes_one_latent_at_a_time(tmp_path):
    seen = []

    def decode(z):
        seen.append(z.clone())
        return z[:, :1, None, None].sigmoid().expand(-1, 3, 5, 5)  # RGB frames

    z_base = torch.tensor([0.5, -1.0, 2.0])
    z_scale = torch.tensor([1.0, 0.5, 2.0])
    path = viz.plot_latent_traversals(decode, z_base, z_scale, tmp_path / "t.png", num_steps=5)
    z = seen[0].reshape(3, 5, 3)
    offsets = torch.linspace(-2, 2, 5)
    for i in range(3):
        expected = z_base.repeat(5, 1)
        expected[:, i] += offsets * z_scale[i]
        torch.testing.assert_close(z[i], expected)
    with Image.open(path) as image:
        assert image.size[0] > image.size[1]  # 5 columns, 3 rows


def test_figures_check_their_arguments(tmp_path):
    frames = torch.rand(2, 4, 1, 8, 8)
    with pytest.raises(ValueError, match="reconstructions"):
        viz.plot_reconstructions(frames, frames[:, :3], tmp_path / "r.png")
    with pytest.raises(ValueError, match="forecast"):
        viz.plot_forecasts(frames, frames[:, :2], frames[:, :1], tmp_path / "f.png")
    with pytest.raises(ValueError, match="frames"):
        viz.plot_reconstructions(frames[0], frames[0], tmp_path / "r.png")
    with pytest.raises(ValueError, match="scales"):
        viz.plot_prior_scales(torch.ones(2, 2), tmp_path / "s.png")
    with pytest.raises(ValueError, match="z_base"):
        viz.plot_latent_traversals(lambda z: z, torch.zeros(3), torch.ones(2), tmp_path / "t.png")


def test_eigenvalue_histograms_pool_leading_dims_and_take_moduli(tmp_path):
    eigenvalues = torch.polar(torch.rand(4, 6, 5) + 0.5, torch.rand(4, 6, 5))
    path = viz.plot_eigenvalue_histograms(eigenvalues, tmp_path / "e.png")
    with Image.open(path) as image:
        width, height = image.size
    assert width > height  # 5 latents on a 4 x 2 grid

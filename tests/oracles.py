"""Known-answer "models" for the static/dynamic protocol: the ground-truth renderer with exact
factor codes, and the same with a static code of noise."""

import hashlib
import math

import numpy as np
import torch

from pyro_dynvae.data import FactorDataset


class RendererModel:
    """A model whose code of a frame is its factor row and whose decoder is the renderer.

    ``encode`` looks each frame up among the frames of ``dataset``'s sequences (it knows no
    others); ``decode`` renders rows clipped to the factors' ranges; the prior draws sequences of
    ``prior_dataset``. ``encode`` reports the static factors' columns as ``"static_latents"``
    (or ``static_latents`` when given: a wrong split, for controls).

    With ``noise_static``, the static columns of the code are instead standard normal noise drawn
    per sequence from a hash of its first frame (independent of its factors), and ``decode`` maps
    them to factor values through the normal CDF: a static code that carries nothing.
    """

    def __init__(self, dataset: FactorDataset, prior_dataset: FactorDataset, *,
                 noise_static: bool = False, static_latents=None):
        self.dataset, self.prior_dataset = dataset, prior_dataset
        self.noise_static = noise_static
        self.static_columns = [i for i, f in enumerate(dataset.factors) if f.static]
        self.static_latents = self.static_columns if static_latents is None else static_latents
        frames, factors = dataset.get_batch(range(len(dataset)))
        self.rows = {self._key(frame): row
                     for frame, row in zip(frames.flatten(0, 1), factors.flatten(0, 1),
                                           strict=True)}

    @staticmethod
    def _key(frame: torch.Tensor) -> bytes:
        return hashlib.sha1(frame.contiguous().numpy().tobytes()).digest()

    def _noise(self, first_frame: torch.Tensor, num_frames: int) -> torch.Tensor:
        seed = int.from_bytes(self._key(first_frame)[:8], "little")
        noise = np.random.default_rng(seed).standard_normal(len(self.static_columns))
        return torch.from_numpy(noise).float().expand(num_frames, -1)

    def encode(self, frames: torch.Tensor) -> dict:
        codes = torch.stack([torch.stack([self.rows[self._key(frame)] for frame in sequence])
                             for sequence in frames])
        if self.noise_static:
            for b, sequence in enumerate(frames):
                codes[b][:, self.static_columns] = self._noise(sequence[0], frames.shape[1])
        return {"z_mean": codes, "static_latents": torch.tensor(self.static_latents)}

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        rows = latents.clone()
        for k, factor in enumerate(self.dataset.factors):
            values = rows[..., k]
            if self.noise_static and k in self.static_columns:
                fraction = 0.5 * (1 + torch.erf(values / math.sqrt(2)))
                if factor.num_categories is not None:
                    values = (fraction * factor.num_categories).floor()
                else:
                    values = factor.low + fraction * (factor.high - factor.low)
            elif factor.num_categories is not None:
                values = values.round()
            rows[..., k] = values.clamp(factor.low, factor.high)
        return self.dataset.render(rows)

    def sample_prior_latents(self, num_sequences: int, num_frames: int) -> torch.Tensor:
        if num_frames != self.prior_dataset.num_frames:
            raise ValueError(f"the prior draws {self.prior_dataset.num_frames} frames")
        codes = self.prior_dataset.sequence_factors(range(num_sequences))
        if self.noise_static:
            codes[..., self.static_columns] = torch.randn(
                num_sequences, 1, len(self.static_columns)).expand(-1, num_frames, -1)
        return codes


def unused_parameters(model, frames) -> list[str]:
    """Names of the ELBO's parameters that get no gradient from one loss on ``frames`` (an
    unused parameter breaks DDP)."""
    loss_fn = model.make_elbo()(model.model, model.guide)
    loss_fn(frames).backward()
    return [name for name, p in loss_fn.named_parameters() if p.grad is None]


def graph_nodes(tensor) -> set[str]:
    """Names of all autograd nodes that ``tensor``'s backward would run."""
    names, stack, seen = set(), [tensor.grad_fn], set()
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        names.add(type(node).__name__)
        stack.extend(fn for fn, _ in node.next_functions)
    return names

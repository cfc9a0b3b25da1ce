"""
Reproducible reading of a run's datasets: the order of the training batches, a pure function
of the seed and the step (:class:`StepBatchSampler`), DataLoaders that leave the global RNG to
the ELBO's Monte Carlo noise (:func:`seeded_loader`), the frames of a batch, and the devices
whose generators a forked RNG must cover.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Sampler


class StepBatchSampler(Sampler[list[int]]):
    r"""
    An endless batch sampler whose batch at optimiser step ``s`` depends only on ``(seed, s)``.

    Steps are grouped into epochs of ``num_items // (batch_size * world_size)`` steps; epoch
    ``e`` uses the permutation ``torch.randperm(num_items)`` drawn from a generator seeded with
    ``seed + e``, the global batch of step ``s`` is the next ``batch_size * world_size``
    entries, and rank ``r`` takes the ``r``-th contiguous chunk of ``batch_size`` of them.
    Starting at ``start_step`` therefore resumes the data stream exactly, which is what
    makes checkpoint-resume reproduce an uninterrupted run.

    :param int num_items: dataset length.
    :param int batch_size: items per rank and step.
    :param int seed: seed of the epoch permutations.
    :param int start_step: the first step to yield.
    :param int rank: this process's global rank.
    :param int world_size: number of processes.
    """

    def __init__(
        self,
        num_items: int,
        batch_size: int,
        seed: int,
        *,
        start_step: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if batch_size * world_size > num_items:
            raise ValueError(
                f"batch_size * world_size ({batch_size} * {world_size}) must not exceed the"
                f" number of training sequences ({num_items})"
            )
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must lie in [0, world_size), got {rank} of {world_size}")
        self.num_items = num_items
        self.batch_size = batch_size
        self.seed = seed
        self.start_step = start_step
        self.rank = rank
        self.world_size = world_size
        self.steps_per_epoch = num_items // (batch_size * world_size)

    def batch_indices(self, step: int) -> list[int]:
        """The indices this rank reads at optimiser step ``step``."""
        epoch, position = divmod(step, self.steps_per_epoch)
        generator = torch.Generator().manual_seed(self.seed + epoch)
        permutation = torch.randperm(self.num_items, generator=generator)
        begin = (position * self.world_size + self.rank) * self.batch_size
        return permutation[begin : begin + self.batch_size].tolist()

    def __iter__(self) -> Iterator[list[int]]:
        step = self.start_step
        while True:
            yield self.batch_indices(step)
            step += 1


def seeded_loader(dataset: Dataset, seed: int, **kwargs: Any) -> DataLoader:
    """
    A DataLoader with its own generator: creating an iterator draws a worker seed, which would
    otherwise consume the global RNG that the ELBO's Monte Carlo noise comes from.

    :param Dataset dataset: the dataset to load.
    :param int seed: seed of the loader's generator.
    :param kwargs: further :class:`~torch.utils.data.DataLoader` arguments.
    """
    return DataLoader(dataset, generator=torch.Generator().manual_seed(seed), **kwargs)


def frames_of(batch: Any) -> torch.Tensor:
    """
    The frames of a batch or item: datasets yield ``(frames, factors)``, and training and
    evaluation use the frames only.

    :param batch: ``(frames, factors)`` or frames alone.
    """
    return batch[0] if isinstance(batch, (tuple, list)) else batch


def rng_devices(device: torch.device) -> list[int]:
    """
    The CUDA devices whose generators :func:`torch.random.fork_rng` must fork for a computation
    on ``device`` (none on the CPU).

    :param torch.device device: where the computation runs.
    """
    return [device.index or 0] if device.type == "cuda" else []

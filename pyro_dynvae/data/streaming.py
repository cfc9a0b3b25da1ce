"""Streaming a map-style dataset, sharded across DataLoader workers and distributed ranks.

The ``N`` sequence indices (optionally permuted, identically on every process, by a permutation
seeded with ``(seed, epoch)``) are dealt round-robin first to the ranks (rank ``r`` takes
positions ``r, r + world_size, ...``), then within a rank to its DataLoader workers (worker ``w``
takes every ``num_workers``-th of the rank's indices, from the ``w``-th). The shards are disjoint
and together cover every index exactly once; a rank's share does not depend on how many workers
it runs and differs from any other rank's by at most one index. Each worker renders its sequences
in vectorised chunks of ``chunk_size`` and yields them one at a time.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from pyro_dynvae.validation import check_positive_int


def distributed_rank_and_world_size() -> tuple[int, int]:
    """``(rank, world_size)`` of the initialised default process group, else ``(0, 1)``."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


class ShardedStream(IterableDataset):
    """An :class:`~torch.utils.data.IterableDataset` over a map-style sequence dataset.

    :param dataset: a dataset with ``len`` and ``get_batch(indices) -> (frames, factors)``.
    :param bool shuffle: permute the order each epoch (same permutation on every process).
    :param int seed: seed of the permutation.
    :param int rank: this process's rank; ``None`` reads it from ``torch.distributed`` when it is
        initialised (else 0) at iteration time.
    :param int world_size: number of processes; ``None`` as for ``rank``.
    :param bool drop_last: drop the last ``N mod world_size`` indices (of the permuted order) so
        every rank yields the same number of items (as DDP needs); no index is then repeated.
    :param int chunk_size: sequences rendered per vectorised call.
    """

    def __init__(
        self,
        dataset,
        *,
        shuffle: bool = False,
        seed: int = 0,
        rank: int | None = None,
        world_size: int | None = None,
        drop_last: bool = False,
        chunk_size: int = 32,
    ) -> None:
        if (rank is None) != (world_size is None):
            raise ValueError("give both rank and world_size, or neither")
        if world_size is not None:
            check_positive_int(world_size, "world_size")
            check_positive_int(rank, "rank", minimum=0)
            if rank >= world_size:
                raise ValueError(f"rank must be < world_size={world_size}, got {rank}")
        self.dataset = dataset
        self.shuffle = shuffle
        self.seed = check_positive_int(seed, "seed", minimum=0)
        self.rank = rank
        self.world_size = world_size
        self.drop_last = drop_last
        self.chunk_size = check_positive_int(chunk_size, "chunk_size")
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Set the epoch, which changes the shuffled order."""
        self.epoch = check_positive_int(epoch, "epoch", minimum=0)

    def _rank_and_world_size(self) -> tuple[int, int]:
        if self.world_size is None:
            return distributed_rank_and_world_size()
        return self.rank, self.world_size

    def _order(self, world_size: int) -> np.ndarray:
        count = len(self.dataset)
        if self.shuffle:
            order = np.random.default_rng([self.seed, self.epoch]).permutation(count)
        else:
            order = np.arange(count)
        if self.drop_last:
            order = order[: count - count % world_size]
        return order

    def shard_indices(self, worker_id: int = 0, num_workers: int = 1) -> np.ndarray:
        """Dataset indices this process's worker ``worker_id`` of ``num_workers`` yields."""
        return self._rank_indices()[worker_id::num_workers]

    def _rank_indices(self) -> np.ndarray:
        rank, world_size = self._rank_and_world_size()
        return self._order(world_size)[rank::world_size]

    def __len__(self) -> int:
        """Number of items this process yields over all its workers."""
        return len(self._rank_indices())

    def __iter__(self):
        info = get_worker_info()
        worker_id, num_workers = (0, 1) if info is None else (info.id, info.num_workers)
        indices = self.shard_indices(worker_id, num_workers).tolist()
        for start in range(0, len(indices), self.chunk_size):
            frames, factors = self.dataset.get_batch(indices[start : start + self.chunk_size])
            yield from zip(frames, factors, strict=True)

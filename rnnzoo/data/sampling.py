"""Which samples go in which batch, on which process: deterministic per epoch.

The order of an epoch depends only on (seed, epoch), so a run resumed mid-epoch can
rebuild it and skip the batches already trained on, and every process of a
``torchrun`` job agrees on it without talking.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import Sampler

from rnnzoo.config import ConfigError
from rnnzoo.distributed import World


class EpochBatches(Sampler[list[int]]):
    """Shuffled global batches of ``batch_size``; each process takes every world-th item.

    A final global batch smaller than the number of processes is dropped (some process
    would get nothing); with one process only an empty batch could be dropped.
    """

    def __init__(self, n: int, batch_size: int, seed: int, world: World | None = None) -> None:
        self.n, self.batch_size, self.seed = n, batch_size, seed
        self.world = world or World()
        self.epoch, self.skip = 0, 0
        full, rest = divmod(n, batch_size)
        self.num_batches = full + (1 if rest >= self.world.size else 0)
        if self.num_batches == 0:
            raise ConfigError(
                f"{n} training samples cannot fill one batch on {self.world.size} processes"
            )

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        """Use epoch ``epoch``'s order, starting after its first ``skip`` batches."""
        self.epoch, self.skip = epoch, skip

    def global_size(self, index: int) -> int:
        """Samples in global batch ``index`` over all processes."""
        return min(self.batch_size, self.n - index * self.batch_size)

    def __iter__(self) -> Iterator[list[int]]:
        gen = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        order = torch.randperm(self.n, generator=gen).tolist()
        for b in range(self.skip, self.num_batches):
            batch = order[b * self.batch_size : (b + 1) * self.batch_size]
            yield batch[self.world.rank :: self.world.size]

    def __len__(self) -> int:
        return self.num_batches


def shard_batches(n: int, batch_size: int, world: World | None = None) -> list[list[int]]:
    """Evaluation batches in order; process r takes items r, r + world, ... of the split."""
    world = world or World()
    mine = list(range(world.rank, n, world.size))
    return [mine[i : i + batch_size] for i in range(0, len(mine), batch_size)]

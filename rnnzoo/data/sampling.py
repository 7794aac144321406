"""Which samples go in which batch, on which process: deterministic per epoch.

The order of an epoch depends only on (seed, epoch), so a run resumed mid-epoch can
rebuild it and skip the batches already trained on, and every process of a
``torchrun`` job agrees on it without talking.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from torch.utils.data import Sampler

from rnnzoo.distributed import World
from rnnzoo.errors import ConfigError


class EpochBatches(Sampler[list[int]]):
    """Shuffled global batches of ``batch_size``; each process takes every world-th item.

    With ``lengths`` and ``bucket`` > 1, each shuffled chunk of ``bucket`` batches is
    sorted by length before it is cut into batches, and the batches are then shuffled:
    similar lengths share a batch (little padding), and the order stays random.

    A final global batch smaller than the number of processes is dropped (some process
    would get nothing); with one process only an empty batch could be dropped.
    """

    def __init__(
        self,
        n: int,
        batch_size: int,
        seed: int,
        world: World | None = None,
        lengths: Sequence[int] | None = None,
        bucket: int = 1,
    ) -> None:
        self.n, self.batch_size, self.seed = n, batch_size, seed
        self.world = world or World()
        self.lengths, self.bucket = lengths, bucket
        full, rest = divmod(n, batch_size)
        self.num_batches = full + (1 if rest >= self.world.size else 0)
        if self.num_batches == 0:
            raise ConfigError(
                f"{n} training samples cannot fill one batch on {self.world.size} processes"
            )
        self.set_epoch(0)

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        """Use epoch ``epoch``'s order, starting after its first ``skip`` batches."""
        self.epoch, self.skip = epoch, skip
        self._batches = self._global_batches()

    def epoch_seed(self) -> int:
        """The seed of this epoch's order; the epoch's loader seeds its workers from it."""
        return self.seed * 100_003 + self.epoch

    def global_size(self, index: int) -> int:
        """Samples in global batch ``index`` of this epoch, over all processes."""
        return len(self._batches[index])

    def _global_batches(self) -> list[list[int]]:
        gen = torch.Generator().manual_seed(self.epoch_seed())
        order = torch.randperm(self.n, generator=gen).tolist()
        size = self.batch_size
        if self.lengths is not None and self.bucket > 1:
            lengths, chunk = self.lengths, size * self.bucket
            order = [
                i
                for start in range(0, self.n, chunk)
                for i in sorted(order[start : start + chunk], key=lambda i: -lengths[i])
            ]
        batches = [order[b * size : (b + 1) * size] for b in range(self.num_batches)]
        if self.lengths is not None and self.bucket > 1:
            shuffle = torch.randperm(len(batches), generator=gen).tolist()
            batches = [batches[i] for i in shuffle]
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        for batch in self._batches[self.skip :]:
            yield batch[self.world.rank :: self.world.size]

    def __len__(self) -> int:
        return self.num_batches


def shard_batches(n: int, batch_size: int, world: World | None = None) -> list[list[int]]:
    """Evaluation batches in order; process r takes items r, r + world, ... of the split."""
    world = world or World()
    mine = list(range(world.rank, n, world.size))
    return [mine[i : i + batch_size] for i in range(0, len(mine), batch_size)]

"""Which samples go in which batch, on which process: deterministic per epoch.

The order of an epoch depends only on (seed, epoch), so a run resumed mid-epoch can
rebuild it and skip the batches already trained on, and every process of a
``torchrun`` job agrees on it without talking.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

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

    ``contiguous`` (a dataset of parallel streams, ``rnnzoo.data.streams``): batch b is
    samples b * batch_size ... (b + 1) * batch_size - 1, in order, every epoch; no
    shuffling, no bucketing. Each process then reads the same streams in every batch.
    """

    def __init__(
        self,
        n: int,
        batch_size: int,
        seed: int,
        world: World | None = None,
        lengths: Sequence[int] | None = None,
        bucket: int = 1,
        contiguous: bool = False,
    ) -> None:
        self.n, self.batch_size, self.seed = n, batch_size, seed
        self.world = world or World()
        self.lengths, self.bucket, self.contiguous = lengths, bucket, contiguous
        if contiguous:
            check_streams(batch_size, self.world, "train.batch_size")
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
        size = self.batch_size
        if self.contiguous:
            return [list(range(b * size, (b + 1) * size)) for b in range(self.num_batches)]
        gen = torch.Generator().manual_seed(self.epoch_seed())
        order = torch.randperm(self.n, generator=gen).tolist()
        if self.lengths is not None and self.bucket > 1:
            order = length_sorted(order, self.lengths, size * self.bucket)
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


def length_sorted(order: list[int], lengths: Sequence[int], chunk: int) -> list[int]:
    """``order`` with each run of ``chunk`` items sorted by length, longest first.

    The sort is stable, so equal lengths keep their order and the result depends only
    on ``order``: the same on every run and every process."""
    return [
        i
        for start in range(0, len(order), chunk)
        for i in sorted(order[start : start + chunk], key=lambda i: -lengths[i])
    ]


def shard_batches(
    n: int,
    batch_size: int,
    world: World | None = None,
    lengths: Sequence[int] | None = None,
    bucket: int = 1,
) -> list[list[int]]:
    """Evaluation batches of this process, in a fixed order; each sample on one process.

    With ``lengths`` and ``bucket`` > 1 the split is sorted by length within chunks of
    ``bucket`` global batches (never shuffled), so that a batch holds similar lengths
    and little padding; a split's metrics are sums over its samples, which no order
    changes. Process r takes items r, r + world, ... of that order and cuts them into
    batches: every sample is scored exactly once over all processes.
    """
    world = world or World()
    order = list(range(n))
    if lengths is not None and bucket > 1:
        order = length_sorted(order, lengths, batch_size * world.size * bucket)
    mine = order[world.rank :: world.size]
    return [mine[i : i + batch_size] for i in range(0, len(mine), batch_size)]


EVAL_BUCKET = 50  # batches per sorted chunk for a dataset with lengths but no ``bucket``


def eval_batches(dataset: Any, batch_size: int, world: World | None = None) -> list[list[int]]:
    """``shard_batches`` of a dataset, length-sorted where it has ``lengths``.

    Its ``bucket`` (a task's ``data.bucket``: 1 turns sorting off) sets the chunk; a
    dataset with lengths and no such key is sorted in chunks of ``EVAL_BUCKET``.

    A ``contiguous`` dataset (``batched`` to its streams first) is read in order: batch c
    is chunk c of every stream, and process r takes streams r, r + world, ... of it, the
    same in every batch; ``batch_size`` is then its number of streams."""
    if getattr(dataset, "contiguous", False):
        world = world or World()
        streams = dataset.streams
        check_streams(streams, world, "train.eval_batch_size")
        return [
            list(range(c * streams, (c + 1) * streams))[world.rank :: world.size]
            for c in range(len(dataset) // streams)
        ]
    lengths = getattr(dataset, "lengths", None)
    if isinstance(lengths, torch.Tensor):
        lengths = lengths.tolist()
    bucket = getattr(dataset, "bucket", EVAL_BUCKET)
    return shard_batches(len(dataset), batch_size, world, lengths, bucket)


def sorted_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Batches of indices into ``lengths``, longest first, for outputs put back in input
    order by the caller (``predict``): similar lengths share a batch, little padding."""
    order = length_sorted(list(range(len(lengths))), lengths, max(len(lengths), 1))
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def batched(dataset: Any, batch_size: int) -> Any:
    """The dataset as batches of ``batch_size`` read it: a ``contiguous`` one (a token
    stream) cut into that many parallel streams, any other as it is."""
    if getattr(dataset, "contiguous", False):
        return dataset.with_streams(batch_size)
    return dataset


def check_streams(streams: int, world: World, key: str) -> None:
    """Every process needs a stream of its own: the global batch is split over them."""
    if streams < world.size:
        raise ConfigError(
            f"{key} {streams}: a batch of parallel text streams needs at least one stream "
            f"for each of the {world.size} processes",
            f"set {key} to {world.size} or more",
        )

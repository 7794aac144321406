"""Scoring a model on a split: batches, precision, and metric sums across processes."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from rnnzoo.data.batches import Batch
from rnnzoo.data.sampling import batched, eval_batches
from rnnzoo.distributed import World, all_sum
from rnnzoo.tasks import Task


class Totals:
    """Sums and counts of metrics over batches, reduced over processes at the end."""

    def __init__(self, device: torch.device, start: dict[str, float] | None = None) -> None:
        self.device = device
        self.sums: dict[str, Tensor] = {}
        for key, value in (start or {}).items():
            self.sums[key] = torch.tensor(value, dtype=torch.float64, device=device)

    def add(self, name: str, total: Tensor, count: Tensor | int) -> None:
        for key, value in ((name, total), (name + "/n", count)):
            v = torch.as_tensor(value, device=self.device).detach().double()
            self.sums[key] = self.sums[key] + v if key in self.sums else v

    def state(self) -> dict[str, float]:
        return {k: float(v) for k, v in self.sums.items()}

    def means(self, world: World) -> dict[str, float]:
        keys = sorted(self.sums)
        if not keys:
            return {}
        values = all_sum(torch.stack([self.sums[k] for k in keys]), world).tolist()
        reduced = dict(zip(keys, values, strict=True))
        # A metric that counted nothing (unseen words in the training split) has no mean:
        # it is left out rather than reported as 0.
        return {
            k: reduced[k] / reduced[k + "/n"]
            for k in keys
            if not k.endswith("/n") and reduced[k + "/n"] > 0
        }


@torch.no_grad()
def evaluate(
    model: nn.Module,
    task: Task,
    dataset: Dataset[Batch],
    device: torch.device,
    batch_size: int,
    world: World | None = None,
    precision: str = "fp32",
) -> dict[str, float]:
    """Loss and metrics of ``model`` over ``dataset``; each process takes a shard.

    A contiguous dataset (a token stream) is read as ``batch_size`` parallel streams."""
    world = world or World()
    was_training = model.training
    model.eval()
    totals = Totals(device)
    dataset = batched(dataset, batch_size)
    # length-sorted: less padding, and the same sums (metrics do not depend on order)
    shards = eval_batches(dataset, batch_size, world)
    for batch in loader(dataset, shards, 0, device, seed=0):
        batch = batch.to(device)
        with autocast(device, precision):
            output = model(batch.inputs, batch.lengths).float()
        weight = task.loss_weight(batch)  # sequences, or a token task's valid tokens
        totals.add("loss", task.loss(output, batch) * weight, weight)
        for name, (total, count) in task.metrics(output, batch).items():
            totals.add(name, total, count)
    model.train(was_training)
    return task.finish(totals.means(world))


def autocast(device: torch.device, precision: str) -> torch.autocast:
    """bf16 autocast when ``train.precision`` asks for it, else a no-op context."""
    return torch.autocast(device.type, torch.bfloat16, enabled=precision == "bf16")


def loader(
    dataset: Dataset[Batch], batches: Any, workers: int, device: torch.device, seed: int
) -> DataLoader[Batch]:
    """Batches as the datasets build them (``__getitems__``), optionally in workers.

    Every iterator a ``DataLoader`` starts draws a base seed for its workers, even with
    none, from its ``generator`` or else from torch's global one, which is the model's
    stream (dropout masks): an unseeded loader started after a resume would shift every
    later mask. Its own generator, seeded by ``seed``, keeps the model's stream alone
    and gives the workers the same seeds on every run. (No dataset here draws random
    numbers; one that augments must draw from a generator seeded by its sample index
    and epoch, or a resumed epoch would not see the same samples.)
    """
    return DataLoader(
        dataset, batch_sampler=batches, collate_fn=_as_is,
        num_workers=workers, pin_memory=device.type == "cuda",
        generator=torch.Generator().manual_seed(seed),
    )  # fmt: skip


def _as_is(batch: Any) -> Any:
    return batch

"""Tasks: each owns its data, loss, metrics and how a prediction is shown.

The trainer sees only this interface, so it never branches on the task. Metrics are
returned as (sum, count) pairs per batch, which add up exactly across batches and
across processes before the division.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor
from torch.utils.data import Dataset

from rnnzoo.config import ConfigError, Section
from rnnzoo.data.batches import Batch, TensorBatches
from rnnzoo.data.synthetic import adding_problem
from rnnzoo.registry import Registry

Sums = dict[str, tuple[Tensor, Tensor]]
"""Metric name -> (sum over the batch, number of items summed)."""


@dataclasses.dataclass(frozen=True)
class ModelIO:
    """What a task tells the model builder: feature size in, size of the output."""

    input_size: int
    output_size: int


class Task:
    """Base of all tasks. Subclasses set ``Data`` (their ``data:`` schema) and override
    ``dataset``, ``io``, ``loss`` and ``metrics``."""

    Data: ClassVar[type[Section]]
    metric: ClassVar[str]
    """Default validation metric for model selection and early stopping."""
    modes: ClassVar[dict[str, Literal["min", "max"]]]
    """Every metric this task reports ("loss" included), and whether lower is better."""
    splits: ClassVar[tuple[str, ...]] = ("train", "val", "test")

    def __init__(self, data: Any) -> None:
        self.data = data

    def dataset(self, split: str) -> Dataset[Batch]:
        raise NotImplementedError

    @property
    def io(self) -> ModelIO:
        raise NotImplementedError

    def loss(self, output: Tensor, batch: Batch) -> Tensor:
        """Mean loss of the batch, a scalar to minimise."""
        raise NotImplementedError

    def metrics(self, output: Tensor, batch: Batch) -> Sums:
        raise NotImplementedError

    def show(self, output: Tensor) -> str:
        """One sample's prediction as a person reads it."""
        return ", ".join(f"{v:.4g}" for v in output.flatten().tolist())

    def check_split(self, split: str) -> None:
        if split not in self.splits:
            valid = ", ".join(self.splits)
            raise ConfigError(f"unknown split {split!r}; this task has: {valid}")


TASKS: Registry[type[Task]] = Registry("task")


@TASKS.register("adding")
class AddingTask(Task):
    """The adding problem: regress the sum of the two marked values (many-to-one)."""

    class Data(Section):
        seq_len: int = Field(100, ge=2, description="T, steps per sequence")
        n_train: int = Field(10_000, ge=1)
        n_val: int = Field(1_000, ge=1)
        n_test: int = Field(1_000, ge=1)
        seed: int = 0

    metric = "mse"
    modes: ClassVar[dict[str, Literal["min", "max"]]] = {"loss": "min", "mse": "min", "mae": "min"}

    def dataset(self, split: str) -> Dataset[Batch]:
        self.check_split(split)
        d = self.data
        size = {"train": d.n_train, "val": d.n_val, "test": d.n_test}[split]
        # One independent stream per split, fixed by the seed: same config, same data.
        offset = self.splits.index(split)
        gen = torch.Generator().manual_seed(d.seed * len(self.splits) + offset)
        inputs, targets = adding_problem(size, d.seq_len, gen)
        return TensorBatches(inputs, targets)

    @property
    def io(self) -> ModelIO:
        return ModelIO(input_size=2, output_size=1)

    def loss(self, output: Tensor, batch: Batch) -> Tensor:
        return F.mse_loss(output, batch.targets)

    def metrics(self, output: Tensor, batch: Batch) -> Sums:
        err = (output.detach().float() - batch.targets).flatten()
        n = torch.tensor(err.numel(), device=err.device)
        return {"mse": (err.square().sum(), n), "mae": (err.abs().sum(), n)}

    def show(self, output: Tensor) -> str:
        return f"sum of the marked values: {output.item():.4f}"


def list_tasks() -> list[str]:
    return TASKS.names()

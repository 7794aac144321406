"""The adding problem (Hochreiter & Schmidhuber 1997): a long-range-memory regression."""

from __future__ import annotations

from typing import ClassVar, Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor
from torch.utils.data import Dataset

from rnnzoo.config import Section
from rnnzoo.data.batches import Batch, TensorBatches
from rnnzoo.data.synthetic import adding_problem
from rnnzoo.tasks.base import TASKS, ModelIO, Sums, Task


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

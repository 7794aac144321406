"""The adding problem (Hochreiter & Schmidhuber 1997): a long-range-memory regression."""

from __future__ import annotations

from typing import ClassVar, Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor
from torch.utils.data import Dataset

from rnnzoo.data.batches import Batch, TensorBatches
from rnnzoo.data.synthetic import adding_problem
from rnnzoo.tasks.base import TASKS, GeneratedSplits, ModelIO, Sums, Task, split_stream


@TASKS.register("adding")
class AddingTask(Task):
    """The adding problem: regress the sum of the two marked values (many-to-one)."""

    class Data(GeneratedSplits):
        seq_len: int = Field(100, ge=2, description="T, steps per sequence")

    metric = "mse"
    headline = ("loss", "mse", "mae")
    modes: ClassVar[dict[str, Literal["min", "max"]]] = {"loss": "min", "mse": "min", "mae": "min"}

    def dataset(self, split: str) -> Dataset[Batch]:
        size, gen = split_stream(self, split)
        return TensorBatches(*adding_problem(size, self.data.seq_len, gen))

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

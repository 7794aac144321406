"""The copy-memory task: recall 10 symbols after T blank steps (many-to-many)."""

from __future__ import annotations

from typing import ClassVar, Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor
from torch.utils.data import Dataset

from rnnzoo.data.batches import Batch, TensorBatches
from rnnzoo.data.synthetic import COPY_LENGTH, COPY_SYMBOLS, copy_baseline, copy_memory
from rnnzoo.tasks.base import TASKS, GeneratedSplits, ModelIO, Sums, Task, split_stream


@TASKS.register("copy")
class CopyTask(Task):
    """Copy memory (Arjovsky et al. 2016): recall 10 symbols after a long blank delay.

    An answer per step, cross-entropy over all steps; ``ce_vs_baseline`` below 1 means the
    model remembers something."""

    class Data(GeneratedSplits):
        delay: int = Field(100, ge=1, description="T, blank steps between symbols and recall")

    metric = "ce"
    headline = ("loss", "ce_vs_baseline", "recall_accuracy")
    modes: ClassVar[dict[str, Literal["min", "max"]]] = {
        "loss": "min", "ce": "min", "ce_vs_baseline": "min", "recall_accuracy": "max",
    }  # fmt: skip

    def dataset(self, split: str) -> Dataset[Batch]:
        size, gen = split_stream(self, split)
        return TensorBatches(*copy_memory(size, self.data.delay, gen))

    @property
    def io(self) -> ModelIO:
        return ModelIO(input_size=COPY_SYMBOLS + 2, output_size=COPY_SYMBOLS + 2, output="per_step")

    def loss(self, output: Tensor, batch: Batch) -> Tensor:
        return F.cross_entropy(output.flatten(0, 1), batch.targets.flatten())

    def metrics(self, output: Tensor, batch: Batch) -> Sums:
        logits = output.detach().float()
        ce = F.cross_entropy(logits.flatten(0, 1), batch.targets.flatten(), reduction="sum")
        recall = logits[:, -COPY_LENGTH:].argmax(-1) == batch.targets[:, -COPY_LENGTH:]
        steps = torch.tensor(batch.targets.numel(), device=logits.device)
        return {
            "ce": (ce, steps),
            "recall_accuracy": (recall.sum(), torch.tensor(recall.numel(), device=logits.device)),
        }

    def finish(self, means: dict[str, float]) -> dict[str, float]:
        if "ce" in means:
            means["ce_vs_baseline"] = means["ce"] / copy_baseline(self.data.delay)
        return means

    def show(self, output: Tensor) -> str:
        recalled = output[-COPY_LENGTH:].argmax(-1).tolist()
        return "recalled symbols: " + " ".join(str(s) for s in recalled)

"""The batch that every task hands the trainer, and in-memory datasets that make them."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import torch
from torch import Tensor
from torch.utils.data import Dataset


@dataclasses.dataclass
class Batch:
    """One batch: what a model takes (``inputs``, ``lengths``) and what the task scores.

    inputs: (B, T, F) features or (B, T) token ids, padded; lengths: (B,) or None when
    every sequence has T steps; targets: whatever the task's loss compares with;
    context: what the task's scores need beyond the targets (a forecast window's values
    in original units, to undo a transformation), never seen by the model.
    """

    inputs: Tensor
    targets: Tensor
    lengths: Tensor | None = None
    context: Tensor | None = None

    def to(self, device: torch.device) -> Batch:
        def move(t: Tensor | None) -> Tensor | None:
            return None if t is None else t.to(device, non_blocking=True)

        return Batch(
            self.inputs.to(device, non_blocking=True),
            self.targets.to(device, non_blocking=True),
            move(self.lengths),
            move(self.context),
        )

    def __len__(self) -> int:
        return self.inputs.shape[0]


class TensorBatches(Dataset[Batch]):
    """Tensors with the sample on dim 0, fetched a whole batch at a time.

    ``DataLoader`` calls ``__getitems__`` with a batch of indices (one gather per tensor
    instead of a Python loop over samples); pass ``collate_fn=lambda b: b``.
    """

    def __init__(self, inputs: Tensor, targets: Tensor, lengths: Tensor | None = None) -> None:
        if len(inputs) != len(targets) or (lengths is not None and len(lengths) != len(inputs)):
            raise ValueError("inputs, targets and lengths must have one entry per sample")
        self.inputs, self.targets, self.lengths = inputs, targets, lengths

    def __len__(self) -> int:
        return len(self.inputs)

    def __getitems__(self, indices: Sequence[int]) -> Batch:
        idx = torch.as_tensor(indices, dtype=torch.long)
        lengths = None if self.lengths is None else self.lengths[idx]
        return Batch(self.inputs[idx], self.targets[idx], lengths)

    def __getitem__(self, index: int) -> Batch:
        return self.__getitems__([index])


class TokenBatches(Dataset[Batch]):
    """Variable-length token id sequences, padded per batch to its longest member.

    ``lengths`` and ``bucket`` tell the sampler to batch similar lengths together
    (``rnnzoo.data.sampling.EpochBatches``) so that padding stays small.
    """

    def __init__(self, seqs: Sequence[Tensor], labels: Tensor, bucket: int = 1) -> None:
        if len(seqs) != len(labels):
            raise ValueError("one label per sequence expected")
        self.seqs, self.labels, self.bucket = list(seqs), labels, bucket
        self.lengths = [len(s) for s in self.seqs]

    def __len__(self) -> int:
        return len(self.seqs)

    def __getitems__(self, indices: Sequence[int]) -> Batch:
        seqs = [self.seqs[i] for i in indices]
        lengths = torch.tensor([len(s) for s in seqs], dtype=torch.long)
        inputs = torch.nn.utils.rnn.pad_sequence(seqs, batch_first=True).long()  # pad id 0
        return Batch(inputs, self.labels[torch.as_tensor(indices, dtype=torch.long)], lengths)

    def __getitem__(self, index: int) -> Batch:
        return self.__getitems__([index])


class PairBatches(Dataset[Batch]):
    """Token id sequence pairs, each side padded per batch (pad id 0).

    A batch holds inputs (B, S) with lengths (B,) and targets (B, U), each target
    followed by EOS. ``lengths`` (source + target, the work a pair costs) and
    ``bucket`` let the sampler batch pairs of similar size together.
    """

    def __init__(self, sources: Sequence[Tensor], targets: Sequence[Tensor], bucket: int = 1):
        if len(sources) != len(targets):
            raise ValueError("one target per source expected")
        self.sources, self.targets, self.bucket = list(sources), list(targets), bucket
        self.lengths = [len(s) + len(t) for s, t in zip(self.sources, self.targets, strict=True)]

    def __len__(self) -> int:
        return len(self.sources)

    def __getitems__(self, indices: Sequence[int]) -> Batch:
        pad = torch.nn.utils.rnn.pad_sequence
        sources = [self.sources[i] for i in indices]
        targets = [self.targets[i] for i in indices]
        lengths = torch.tensor([len(s) for s in sources], dtype=torch.long)
        return Batch(pad(sources, batch_first=True), pad(targets, batch_first=True), lengths)

    def __getitem__(self, index: int) -> Batch:
        return self.__getitems__([index])

"""Sequence tagging: a tag for every word (many-to-many, same length)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar, Literal

import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from torch import Tensor, nn
from torch.utils.data import Dataset

from rnnzoo.data.batches import Batch, TensorBatches
from rnnzoo.data.tagging import IGNORE, context_tags, is_ambiguous
from rnnzoo.errors import ConfigError
from rnnzoo.tasks.base import (
    TASKS,
    GeneratedSplits,
    ModelIO,
    PredictRequest,
    Sums,
    Task,
    split_stream,
)


class TrimmedBatches(TensorBatches):
    """Padded sequences cut, batch by batch, to the longest member of the batch."""

    def __getitems__(self, indices: Sequence[int]) -> Batch:
        batch = super().__getitems__(indices)
        assert batch.lengths is not None
        steps = int(batch.lengths.max())
        return Batch(batch.inputs[:, :steps], batch.targets[:, :steps], batch.lengths)


@TASKS.register("tagging")
class TaggingTask(Task):
    """Tag every word of a generated sentence, a test of bidirectional context.

    See ``rnnzoo.data.tagging``: half the words are tagged by their left and right
    neighbours, so a bidirectional tagger can be right everywhere and a left-to-right one
    only about 1/2 + 1/(2K) of the time.

    The loss and every metric count valid steps only: padded steps carry the target
    ``IGNORE`` and add nothing.
    """

    class Data(GeneratedSplits):
        vocab_size: int = Field(40, ge=2, description="words 1..V; the upper half ambiguous")
        num_tags: int = Field(4, ge=2, description="K, the number of tags")
        min_len: int = Field(5, ge=1)
        max_len: int = Field(40, ge=1)

        @model_validator(mode="after")
        def _sizes(self) -> TaggingTask.Data:
            if self.min_len > self.max_len:
                raise ValueError(f"min_len ({self.min_len}) exceeds max_len ({self.max_len})")
            if self.vocab_size < 2 * self.num_tags:
                raise ValueError(
                    f"vocab_size ({self.vocab_size}) must be at least 2 * num_tags "
                    f"({2 * self.num_tags})"
                )
            return self

    metric = "accuracy"
    headline = ("loss", "accuracy", "ambiguous_accuracy", "sentence_accuracy")
    missing_text = 'give a sentence of word ids to tag, e.g. "3 17 25 9"'
    modes: ClassVar[dict[str, Literal["min", "max"]]] = {
        "loss": "min", "accuracy": "max", "ambiguous_accuracy": "max",
        "sentence_accuracy": "max",
    }  # fmt: skip

    def dataset(self, split: str) -> Dataset[Batch]:
        size, gen = split_stream(self, split)
        d = self.data
        words, tags, lengths = context_tags(
            size, d.vocab_size, d.num_tags, d.min_len, d.max_len, gen
        )
        return TrimmedBatches(words, tags, lengths)

    @property
    def io(self) -> ModelIO:
        # +1: id 0 is padding
        return ModelIO(
            input_size=0, output_size=self.data.num_tags, vocab_size=self.data.vocab_size + 1,
            output="per_step",
        )  # fmt: skip

    def loss(self, output: Tensor, batch: Batch) -> Tensor:
        """Mean cross-entropy over the valid words of the batch; output (B, T, K)."""
        return F.cross_entropy(output.flatten(0, 1), batch.targets.flatten(), ignore_index=IGNORE)

    def loss_weight(self, batch: Batch) -> Tensor:
        return (batch.targets != IGNORE).sum()

    def metrics(self, output: Tensor, batch: Batch) -> Sums:
        valid = batch.targets != IGNORE
        right = (output.argmax(-1) == batch.targets) & valid
        ambiguous = is_ambiguous(batch.inputs, self.data.vocab_size) & valid
        whole = (right | ~valid).all(dim=1)
        return {
            "accuracy": (right.sum(), valid.sum()),
            "ambiguous_accuracy": ((right & ambiguous).sum(), ambiguous.sum()),
            "sentence_accuracy": (whole.sum(), torch.tensor(len(batch), device=output.device)),
        }

    def inputs_from_text(self, texts: list[str]) -> Batch:
        """Word ids separated by spaces, one sentence per text: ``"3 17 25 9"``."""
        seqs = []
        for text in texts:
            try:
                ids = [int(w) for w in text.split()]
            except ValueError:
                raise ConfigError(f"expected word ids separated by spaces, got {text!r}") from None
            bad = [w for w in ids if not 1 <= w <= self.data.vocab_size]
            if not ids or bad:
                raise ConfigError(f"word ids run from 1 to {self.data.vocab_size}; got {text!r}")
            seqs.append(torch.tensor(ids))
        lengths = torch.tensor([len(s) for s in seqs])
        inputs = nn.utils.rnn.pad_sequence(seqs, batch_first=True)
        return Batch(inputs, torch.full_like(inputs, IGNORE), lengths)

    def answer(self, model: nn.Module, batch: Batch, request: PredictRequest) -> list[str]:
        """Each sentence as ``word/tag`` pairs."""
        tags = model(batch.inputs, batch.lengths).argmax(-1)
        assert batch.lengths is not None
        return [
            " ".join(f"{w}/{t}" for w, t in zip(words[:n].tolist(), row[:n].tolist(), strict=True))
            for words, row, n in zip(batch.inputs, tags, batch.lengths.tolist(), strict=True)
        ]

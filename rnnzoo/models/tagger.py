"""Sequence tagging: a tag for every token, from a uni- or bidirectional stack."""

from __future__ import annotations

import dataclasses
from typing import Literal

from pydantic import Field
from torch import Tensor, nn

from rnnzoo.models.base import MODELS, WORD_DROPOUT
from rnnzoo.models.many_to_many import ManyToMany
from rnnzoo.regularizers import embedding_dropout
from rnnzoo.tasks import ModelIO


class SequenceTagger(ManyToMany):
    """Token ids -> embedding (pad id 0) -> ``ManyToMany``: (B, T) -> (B, T, num_tags).

    Inputs may also be features (B, T, F) when the task has no vocabulary. The layer
    takes the lengths, so padded steps never reach a valid step's output in either
    direction; the task's loss skips their targets. A bidirectional stack reads the
    words after step t before tagging it.
    """

    class Args(ManyToMany.Args):
        name: Literal["sequence_tagger"] = "sequence_tagger"  # type: ignore[assignment]
        embedding_dim: int = Field(64, ge=1, description="used when the inputs are token ids")
        embedding_dropout: float = Field(0.0, ge=0, lt=1)
        word_dropout: float = Field(0.0, ge=0, lt=1, description=WORD_DROPOUT)

    def __init__(self, io: ModelIO, args: Args) -> None:
        features = (
            io if io.vocab_size is None else dataclasses.replace(io, input_size=args.embedding_dim)
        )
        super().__init__(features, args)
        self.word_dropout = args.word_dropout
        self.embedding: nn.Module = nn.Identity()
        if io.vocab_size is not None:
            self.embedding = nn.Sequential(
                nn.Embedding(io.vocab_size, args.embedding_dim, padding_idx=0),
                nn.Dropout(args.embedding_dropout),
            )

    @classmethod
    def build(cls, args: Args, io: ModelIO) -> SequenceTagger:  # type: ignore[override]
        return cls(io, args)

    def forward(
        self, inputs: Tensor, lengths: Tensor | None = None, targets: Tensor | None = None
    ) -> Tensor:
        """inputs (B, T) ids or (B, T, F), lengths (B,) -> tag scores (B, T, num_tags)."""
        if isinstance(self.embedding, nn.Sequential):  # token ids: (B, T) -> (B, T, E)
            lookup, dropout = self.embedding  # kept as one module: state_dict keys unchanged
            assert isinstance(lookup, nn.Embedding)
            x = dropout(embedding_dropout(lookup, inputs, self.word_dropout, self.training))
        else:
            x = inputs
        return super().forward(x, lengths)


MODELS.add("sequence_tagger", SequenceTagger)

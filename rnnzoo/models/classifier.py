"""Sequence classification from token ids: embedding, recurrent stack, pooling, head."""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field
from torch import Tensor, nn

from rnnzoo.errors import ConfigError
from rnnzoo.models.base import MODELS, WORD_DROPOUT, RecurrentArgs, top_layer_state
from rnnzoo.regularizers import embedding_dropout
from rnnzoo.tasks import ModelIO


class SequenceClassifier(nn.Module):
    """Token ids -> a class per sequence: embedding, recurrent stack, pooling, linear.

    Embedding (pad id 0) -> ``rnnzoo.Recurrent`` -> pooling over valid steps ->
    dropout -> linear to class scores.

    Pooling: ``last`` (each direction's final state), ``mean`` and ``max`` over the top
    layer's valid outputs, or ``concat`` of all three. Padded steps are never read: the
    layer takes the lengths, and mean/max mask them out.
    """

    class Args(RecurrentArgs):
        name: Literal["sequence_classifier"] = "sequence_classifier"
        embedding_dim: int = Field(128, ge=1)
        embedding_dropout: float = Field(0.0, ge=0, lt=1, description="on embedded tokens")
        word_dropout: float = Field(0.0, ge=0, lt=1, description=WORD_DROPOUT)
        head_dropout: float = Field(0.0, ge=0, lt=1, description="before the linear head")
        pooling: Literal["last", "mean", "max", "concat"] = "last"

    def __init__(self, vocab_size: int, num_classes: int, args: Args) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, args.embedding_dim, padding_idx=0)
        self.embedding_dropout = nn.Dropout(args.embedding_dropout)
        self.word_dropout = args.word_dropout
        self.rnn = args.recurrent(args.embedding_dim)
        self.pooling = args.pooling
        width = args.hidden_size * self.rnn.num_directions
        self.head = nn.Sequential(
            nn.Dropout(args.head_dropout),
            nn.Linear(width * (3 if args.pooling == "concat" else 1), num_classes),
        )

    @classmethod
    def build(cls, args: Args, io: ModelIO) -> SequenceClassifier:
        if io.vocab_size is None:
            raise ConfigError("model sequence_classifier needs a task with token inputs")
        return cls(io.vocab_size, io.output_size, args)

    def forward(
        self, inputs: Tensor, lengths: Tensor | None = None, targets: Tensor | None = None
    ) -> Tensor:
        """inputs: (B, T) token ids, lengths: (B,) or None -> (B, num_classes) scores."""
        x = embedding_dropout(self.embedding, inputs, self.word_dropout, self.training)
        x = self.embedding_dropout(x)  # (B, T, E)
        out, h_n = self.rnn(x, lengths=lengths)  # out: (B, T, D*H)
        assert isinstance(out, Tensor)
        parts = []
        if self.pooling in ("last", "concat"):
            parts.append(top_layer_state(h_n, self.rnn.num_directions))
        if self.pooling in ("mean", "max", "concat"):
            steps = torch.arange(out.shape[1], device=out.device)
            n = lengths if lengths is not None else torch.full_like(steps[:1], out.shape[1])
            if self.pooling in ("mean", "concat"):  # padded outputs are zero already
                parts.append(out.sum(dim=1) / n[:, None].to(out.dtype))
            if self.pooling in ("max", "concat"):
                valid = (steps[None, :] < n[:, None]).unsqueeze(-1)
                parts.append(out.masked_fill(~valid, float("-inf")).amax(dim=1))
        return self.head(torch.cat(parts, dim=-1))


MODELS.add("sequence_classifier", SequenceClassifier)

"""Many-to-many: an answer at every step (a tag, a class, a value)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from torch import Tensor, nn

from rnnzoo.models.base import MODELS, RecurrentArgs
from rnnzoo.tasks import ModelIO


class ManyToMany(nn.Module):
    """A recurrent stack and a linear head applied at every step: (B, T, I) -> (B, T, O).

    Bidirectional stacks see the whole sequence before answering at any step; that
    suits tagging, not tasks that must answer online.
    """

    output = "per_step"

    class Args(RecurrentArgs):
        name: Literal["many_to_many"] = "many_to_many"
        head_dropout: float = Field(0.0, ge=0, lt=1)

    def __init__(self, io: ModelIO, args: Args) -> None:
        super().__init__()
        self.rnn = args.recurrent(io.input_size)
        self.dropout = nn.Dropout(args.head_dropout)
        self.head = nn.Linear(args.hidden_size * self.rnn.num_directions, io.output_size)

    @classmethod
    def build(cls, args: Args, io: ModelIO) -> ManyToMany:
        return cls(io, args)

    def forward(
        self, inputs: Tensor, lengths: Tensor | None = None, targets: Tensor | None = None
    ) -> Tensor:
        out, _ = self.rnn(inputs, lengths=lengths)
        assert isinstance(out, Tensor)
        return self.head(self.dropout(out))


MODELS.add("many_to_many", ManyToMany)

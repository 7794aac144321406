"""Many-to-one: read a whole sequence, emit one vector (a class score, a regression)."""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from rnnzoo.models.base import MODELS, RecurrentArgs, top_layer_state
from rnnzoo.tasks import ModelIO


class ManyToOne(nn.Module):
    """A recurrent stack, a pooling over valid steps, and a linear head.

    Pooling: ``last`` takes each direction's final state (the forward one at the
    sequence's last valid step, the reverse one at its first), ``mean`` and ``max``
    reduce the top layer's outputs over the valid steps only.
    """

    class Args(RecurrentArgs):
        name: Literal["many_to_one"] = "many_to_one"
        pooling: Literal["last", "mean", "max"] = "last"

    def __init__(
        self,
        input_size: int,
        output_size: int,
        cell: str = "lstm",
        hidden_size: int = 128,
        num_layers: int = 1,
        bidirectional: bool = False,
        dropout: float = 0.0,
        pooling: str = "last",
        impl: str = "auto",
        **regularizers: float,
    ) -> None:
        """``regularizers``: any of ``RecurrentArgs``' (input_dropout, zoneout, ...)."""
        super().__init__()
        args = self.Args(
            cell=cell, hidden_size=hidden_size, num_layers=num_layers, dropout=dropout,
            bidirectional=bidirectional, impl=impl, pooling=pooling, **regularizers,
        )  # fmt: skip
        self.rnn = args.recurrent(input_size)
        self.pooling = pooling
        self.head = nn.Linear(hidden_size * self.rnn.num_directions, output_size)

    @classmethod
    def build(cls, args: Args, io: ModelIO) -> ManyToOne:
        keys = args.model_dump(exclude={"name", "init_from"})  # init_from: not the model's
        return cls(io.input_size, io.output_size, **keys)

    def forward(
        self, inputs: Tensor, lengths: Tensor | None = None, targets: Tensor | None = None
    ) -> Tensor:
        """inputs: (B, T, input_size), lengths: (B,) or None -> (B, output_size)."""
        out, h_n = self.rnn(inputs, lengths=lengths)  # out: (B, T, D*H)
        assert isinstance(out, Tensor)
        if self.pooling == "last":
            pooled = top_layer_state(h_n, self.rnn.num_directions)
        elif lengths is None:
            pooled = out.mean(dim=1) if self.pooling == "mean" else out.amax(dim=1)
        else:
            steps = torch.arange(out.shape[1], device=out.device)
            valid = (steps[None, :] < lengths[:, None]).unsqueeze(-1)  # (B, T, 1)
            if self.pooling == "mean":  # padded outputs are zero already
                pooled = out.sum(dim=1) / lengths[:, None].to(out.dtype)
            else:
                pooled = out.masked_fill(~valid, float("-inf")).amax(dim=1)
        return self.head(pooled)


MODELS.add("many_to_one", ManyToOne)

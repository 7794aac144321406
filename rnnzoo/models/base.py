"""The model registry and what every model's config shares."""

from __future__ import annotations

from typing import Any, Literal

import torch
from pydantic import BaseModel, Field, field_validator
from torch import Tensor, nn

from rnnzoo.cells import CELLS
from rnnzoo.config import ConfigError, Section
from rnnzoo.registry import Registry
from rnnzoo.tasks import ModelIO


class RecurrentArgs(Section):
    """The ``model:`` keys of every model built on ``rnnzoo.Recurrent``."""

    name: str
    cell: str = "lstm"
    hidden_size: int = Field(128, ge=1)
    num_layers: int = Field(1, ge=1)
    bidirectional: bool = False
    dropout: float = Field(0.0, ge=0, le=1, description="between recurrent layers")
    impl: Literal["auto", "loop", "fused", "torch"] = Field(
        "auto", description="how the recurrence runs; see rnnzoo.layers.IMPLS"
    )

    @field_validator("cell")
    @classmethod
    def _known_cell(cls, cell: str) -> str:
        if cell not in CELLS:
            raise ValueError(CELLS.unknown_message(cell))
        return cell


MODELS: Registry[Any] = Registry("model")
"""Model classes by name; each has ``Args`` (its config schema) and ``build(args, io)``.

Every model is called as ``model(inputs, lengths=None, targets=None)``: the trainer
passes the batch's targets while training (for teacher forcing; most models ignore
them) and never while scoring. A class's ``output`` says the shape it returns (see
``ModelIO``: ``one``, the default, ``per_step`` or ``horizon``); it is built only for
tasks that ask for that shape. A ``sequence`` model returns ``rnnzoo.tasks.base.Decoded``
and also has ``decode(inputs, lengths, beam_width=None, max_len=None) -> Decoded``, which
``predict`` calls with the user's beam width and length.
"""


def build_model(args: BaseModel, io: ModelIO) -> nn.Module:
    """The model named by ``args.name``, sized for the task's inputs and outputs."""
    name: str = getattr(args, "name")  # noqa: B009 - every model schema has a name
    cls = MODELS.get(name)
    if output_of(name) != io.output:
        fits = [n for n in MODELS if output_of(n) == io.output]
        raise ConfigError(
            f"model.name: {name!r} does not fit this task; models that do: {', '.join(fits)}"
        )
    return cls.build(args, io)


def output_of(name: str) -> str:
    """The output shape a registered model produces: ``one``, ``per_step`` or ``horizon``."""
    return getattr(MODELS.get(name), "output", "one")


def top_layer_state(h_n: Tensor | tuple[Tensor, ...], num_directions: int) -> Tensor:
    """The last layer's final hidden state, its directions side by side: (B, D*H).

    ``h_n`` is a layer's final state, ``(L*D, B, H)`` or a tuple whose first member is
    it (an LSTM's ``(h_n, c_n)``)."""
    h = h_n if isinstance(h_n, Tensor) else h_n[0]
    return torch.cat(list(h[-num_directions:]), dim=-1)


def list_models() -> list[str]:
    return MODELS.names()

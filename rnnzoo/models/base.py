"""The model registry and what every model's config shares."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import BaseModel, Field, field_validator
from torch import Tensor, nn

from rnnzoo.cells import CELLS
from rnnzoo.config import Section
from rnnzoo.errors import ConfigError
from rnnzoo.layers import Recurrent
from rnnzoo.registry import Registry
from rnnzoo.tasks import ModelIO


class ModelArgs(Section):
    """The ``model:`` keys every model takes: its name, and the run to start from.

    ``init_from`` lives here, in the model's own schema, rather than being taken out of
    the section before the model is built: like every key it is checked for typos, set
    with ``--set model.init_from=RUN_DIR``, and kept in the run's config.yaml, so the
    run says where its weights came from. No builder reads it; ``rnnzoo.transfer``
    acts on it when a new run starts (never on ``--resume``, nor in eval or predict)."""

    name: str
    init_from: Path | None = Field(
        None,
        description="a run folder: copy its best weights where names and shapes match "
        "(and a text task's tokenizer) before training",
    )


class RecurrentArgs(ModelArgs):
    """The ``model:`` keys of every model built on ``rnnzoo.Recurrent``."""

    cell: str = "lstm"
    hidden_size: int = Field(128, ge=1)
    num_layers: int = Field(1, ge=1)
    bidirectional: bool = False
    dropout: float = Field(0.0, ge=0, le=1, description="between recurrent layers")
    impl: Literal["auto", "native", "loop", "fused", "torch", "scan"] = Field(
        "auto", description="how the recurrence runs; see rnnzoo.layers.IMPLS"
    )
    # Regularisers (rnnzoo.regularizers), rates in [0, 1), 0 = off.
    input_dropout: float = Field(
        0.0, ge=0, lt=1, description="locked mask on every layer's input, same at all steps"
    )
    hidden_dropout: float = Field(
        0.0, ge=0, lt=1, description="locked mask on h_{t-1} where it enters W_hh"
    )
    weight_drop: float = Field(
        0.0, ge=0, lt=1, description="DropConnect on W_hh, one draw per forward pass"
    )
    zoneout: float = Field(
        0.0, ge=0, lt=1, description="chance that a state unit keeps its previous value"
    )

    @field_validator("cell")
    @classmethod
    def _known_cell(cls, cell: str) -> str:
        if cell not in CELLS:
            raise ValueError(CELLS.unknown_message(cell))
        return cell

    def recurrent(self, input_size: int, bidirectional: bool | None = None) -> Recurrent:
        """The batch-first ``Recurrent`` these keys describe, every option passed on.

        ``bidirectional`` None: the config's (a decoder passes False). A combination
        the layer refuses (a regulariser the cell cannot take) is a ``ConfigError``
        naming the key."""
        try:
            return Recurrent(
                self.cell, input_size, self.hidden_size, self.num_layers, batch_first=True,
                dropout=self.dropout, impl=self.impl,
                bidirectional=self.bidirectional if bidirectional is None else bidirectional,
                input_dropout=self.input_dropout, hidden_dropout=self.hidden_dropout,
                weight_drop=self.weight_drop, zoneout=self.zoneout,
            )  # fmt: skip
        except ValueError as err:
            raise ConfigError(f"model: {err}") from None


WORD_DROPOUT = "chance to drop a whole word type (an embedding row) in a pass"
"""Description of the token models' ``word_dropout`` (``rnnzoo.regularizers.embedding_dropout``),
unlike their ``embedding_dropout``, which drops single features of embedded tokens."""


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


def draw(logits: Tensor, temperature: float, generator: torch.Generator | None) -> Tensor:
    """One token per row of next-token scores (N, V): the argmax at temperature 0, else
    a draw from softmax(logits / temperature) with ``generator`` (seeded: repeatable)."""
    if temperature == 0:
        return logits.argmax(dim=-1)
    probs = torch.softmax(logits / temperature, dim=-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(1)


def list_models() -> list[str]:
    return MODELS.names()

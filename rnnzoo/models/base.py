"""The model registry and what every model's config shares."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator
from torch import nn

from rnnzoo.cells import CELLS
from rnnzoo.config import Section
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
"""Model classes by name; each has ``Args`` (its config schema) and ``build(args, io)``."""


def build_model(args: BaseModel, io: ModelIO) -> nn.Module:
    """The model named by ``args.name``, sized for the task's inputs and outputs."""
    name: str = getattr(args, "name")  # noqa: B009 - every model schema has a name
    return MODELS.get(name).build(args, io)


def list_models() -> list[str]:
    return MODELS.names()

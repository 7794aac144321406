"""rnnzoo: recurrent networks written plainly, proven equal to torch.nn, runnable on real data.

The public names load on first use, so ``rnnzoo --help`` (and Ctrl-C while it starts)
does not wait for torch to import.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "CELLS": "rnnzoo.cells",
    "GRUCell": "rnnzoo.cells",
    "LSTMCell": "rnnzoo.cells",
    "RNNCell": "rnnzoo.cells",
    "RecurrentCell": "rnnzoo.cells",
    "list_cells": "rnnzoo.cells",
    "GRU": "rnnzoo.layers",
    "LSTM": "rnnzoo.layers",
    "RNN": "rnnzoo.layers",
    "Recurrent": "rnnzoo.layers",
    "Registry": "rnnzoo.registry",
    "UnknownNameError": "rnnzoo.errors",
    "safe_globals": "rnnzoo.pickling",
}

__all__ = [
    "CELLS",
    "GRU",
    "LSTM",
    "RNN",
    "GRUCell",
    "LSTMCell",
    "RNNCell",
    "Recurrent",
    "RecurrentCell",
    "Registry",
    "UnknownNameError",
    "list_cells",
    "safe_globals",
]

if TYPE_CHECKING:
    from rnnzoo.cells import CELLS, GRUCell, LSTMCell, RecurrentCell, RNNCell, list_cells
    from rnnzoo.errors import UnknownNameError
    from rnnzoo.layers import GRU, LSTM, RNN, Recurrent
    from rnnzoo.pickling import safe_globals
    from rnnzoo.registry import Registry


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'rnnzoo' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])

"""What a whole pickled rnnzoo module refers to, for ``torch.load(weights_only=True)``.

Current PyTorch loads a pickled module only if every class in the pickle is on its
allowlist. A model holding ``rnnzoo.LSTM`` pickles ``rnnzoo.layers.LSTM``, its cells
(``rnnzoo.cells.lstm.LSTMCell``) and the ``torch.nn.ModuleList`` that holds them, so
those must be allowed besides the user's own classes::

    with torch.serialization.safe_globals([*rnnzoo.safe_globals(), MyModel]):
        model = torch.load(path, weights_only=True)

The list is derived from the code, not kept by hand: every ``nn.Module`` class that
rnnzoo defines or has registered (cells, layers, models and their parts), and every
torch.nn module class that the code of those classes' modules names (``nn.ModuleList``,
``nn.Linear``, ...). A new cell or model is covered the moment it is defined.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator
from types import CodeType
from typing import Any

from torch import nn

_PACKAGES = ("rnnzoo.cells", "rnnzoo.layers", "rnnzoo.models")
"""Where rnnzoo's modules are defined; importing them registers every cell and model."""


def safe_globals() -> list[type]:
    """Every class a pickled rnnzoo layer, cell or model can refer to, for torch's allowlist.

    Use it when loading a whole model saved with ``torch.save(model)``::

        with torch.serialization.safe_globals([*rnnzoo.safe_globals(), MyModel]):
            model = torch.load(path, weights_only=True)

    ``MyModel`` (and any other class of yours, or of torch.nn that your own code adds,
    such as ``torch.nn.Linear``) you name yourself, as torch asks.
    """
    ours = _our_module_classes()
    modules = {sys.modules[cls.__module__] for cls in ours if cls.__module__ in sys.modules}
    found = set(ours)
    for module in modules:
        for name in _names_in(module):
            torch_class = _torch_module_class(name)
            # a name the module binds to something else (its own GRUCell) is not nn's
            if (
                torch_class not in (None, nn.Module)
                and vars(module).get(name, torch_class) is torch_class
            ):
                found.add(torch_class)
    return sorted(found, key=lambda cls: (cls.__module__, cls.__qualname__))


def _our_module_classes() -> set[type]:
    """rnnzoo's nn.Module classes, and whatever class the cell and model registries hold."""
    for package in _PACKAGES:
        importlib.import_module(package)
    from rnnzoo.cells import CELLS
    from rnnzoo.models import MODELS

    found = {cls for cls in _subclasses(nn.Module) if cls.__module__.startswith("rnnzoo.")}
    for registry in (CELLS, MODELS):
        for name in registry.names():
            entry: Any = registry.get(name)
            entry = getattr(entry, "func", entry)  # functools.partial(RNNCell, ...)
            if isinstance(entry, type):
                found.add(entry)
    return found


def _subclasses(cls: type) -> Iterator[type]:
    sub: type
    for sub in cls.__subclasses__():
        yield sub
        yield from _subclasses(sub)


def _names_in(module: Any) -> set[str]:
    """Every name the module's code uses (globals and attributes, nested code too)."""
    names = set(vars(module))
    loader: Any = getattr(module.__spec__, "loader", None)
    code = loader.get_code(module.__name__) if hasattr(loader, "get_code") else None
    pending: list[CodeType] = [code] if code is not None else []
    while pending:
        code = pending.pop()
        names.update(code.co_names)
        pending.extend(c for c in code.co_consts if isinstance(c, CodeType))
    return names


def _torch_module_class(name: str) -> type | None:
    """``torch.nn.<name>`` if that is an nn.Module class (``Linear``), else None."""
    value = getattr(nn, name, None)
    return value if isinstance(value, type) and issubclass(value, nn.Module) else None

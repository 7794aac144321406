"""The configs shipped with rnnzoo, found by name from any folder and in any install.

They live in the repository's ``configs/`` folder, which packaging installs as the
package ``rnnzoo.configs`` (see setup.py), so a wheel carries them without a copy in
the source tree. A name is the path below that folder without ``.yaml``
(``imdb_lstm``; ``sub/name`` in a subfolder).
"""

from __future__ import annotations

import difflib
import importlib.resources
from importlib.resources.abc import Traversable
from pathlib import Path

from rnnzoo.errors import ConfigError, UnknownNameError

SUFFIX = ".yaml"


def _root() -> Traversable | None:
    """The folder of the shipped configs, or None where there is none."""
    checkout = Path(__file__).resolve().parents[1]
    # A source checkout reads its own configs: run from the tree (PYTHONPATH, python -m)
    # the package rnnzoo.configs may be another tree's editable install, or none at all.
    if (checkout / "pyproject.toml").is_file() and (checkout / "configs").is_dir():
        return checkout / "configs"
    try:
        return importlib.resources.files("rnnzoo.configs")
    except ModuleNotFoundError:
        return None


def _walk(folder: Traversable, prefix: str = "") -> dict[str, Traversable]:
    """Every ``.yaml`` below ``folder`` by name: its path without the suffix."""
    found: dict[str, Traversable] = {}
    for entry in folder.iterdir():
        if entry.is_dir() and not entry.name.startswith(("_", ".")):
            found.update(_walk(entry, f"{prefix}{entry.name}/"))
        elif entry.is_file() and entry.name.endswith(SUFFIX):
            found[prefix + entry.name[: -len(SUFFIX)]] = entry
    return found


def configs() -> dict[str, Traversable]:
    """The shipped configs by name, sorted by name."""
    root = _root()
    return dict(sorted(_walk(root).items())) if root is not None else {}


def names() -> list[str]:
    return list(configs())


def name_of(arg: str | Path) -> str:
    """The config name that ``--config ARG`` stands for: ``imdb_lstm.yaml`` -> ``imdb_lstm``."""
    text = Path(arg).as_posix()
    return text[: -len(SUFFIX)] if text.endswith(SUFFIX) else text


def find(name: str | Path) -> Traversable:
    """The shipped config called ``name`` (with or without ``.yaml``); an unknown name is
    an error that lists the close ones."""
    shipped = configs()
    key = name_of(name)
    if key not in shipped:
        raise UnknownNameError(unknown(name), "`rnnzoo list` shows the shipped configs")
    return shipped[key]


def unknown(name: str | Path) -> str:
    """That no shipped config has this name, with the names close to it."""
    key, shipped = name_of(name), names()
    close = difflib.get_close_matches(key, shipped, n=3, cutoff=0.6)
    # a short name is also close to every longer name that starts with it (imdb -> imdb_*)
    close += [n for n in shipped if n.startswith(key) and n not in close][: 3 - len(close)]
    did_you_mean = f"; did you mean {', '.join(close)}?" if close else ""
    return f"no shipped config is called {key!r}{did_you_mean}"


def resolve(arg: str | Path) -> Path:
    """What ``--config ARG`` reads: the file ARG if there is one, else the shipped config
    of that name. A folder of that name, with no shipped config, stays a path (reading
    it then says it is a folder)."""
    path = Path(arg)
    if path.is_file():
        return path
    try:
        return Path(str(find(arg)))  # shipped configs are installed as plain files
    except UnknownNameError as err:
        if path.exists():
            return path
        # a path is no name: then say only that it is missing
        why = "" if path.is_absolute() else f", and {err.message}"
        raise ConfigError(f"config file not found: {arg}{why}", err.hint) from None


def description(config: Traversable) -> str:
    """A config's one-line description: its first line, without the ``#``."""
    first = config.read_text(encoding="utf-8").partition("\n")[0]
    return first.removeprefix("#").strip() if first.startswith("#") else ""

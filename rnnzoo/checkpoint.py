"""Checkpoints that survive a crash mid-write and never run code when opened.

Everything saved is tensors, numbers, strings, lists and dicts, so ``torch.load`` with
``weights_only=True`` opens it: a run folder from someone else cannot execute code.
"""

from __future__ import annotations

import os
import random
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch


def save_atomic(obj: dict[str, Any], path: Path) -> None:
    """Write to a temporary file beside ``path``, flush it to disk, then rename.

    A rename within one folder is atomic, so a reader (or a crash) sees either the old
    file or the new one, never half of one.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Open a checkpoint without unpickling arbitrary objects."""
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    result: dict[str, Any] = torch.load(path, map_location=map_location, weights_only=True)
    return result


def rng_state() -> dict[str, Any]:
    """Every generator a run draws from, in a form ``weights_only`` loading accepts."""
    np_state: Any = np.random.get_state(legacy=True)
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": [np_state[0], np_state[1].tolist(), *np_state[2:]],
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), *rest))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # every device's generator

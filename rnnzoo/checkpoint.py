"""Checkpoints that survive a crash mid-write and never run code when opened.

Everything saved is tensors, numbers, strings, lists and dicts, so ``torch.load`` with
``weights_only=True`` opens it: a run folder from someone else cannot execute code.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rnnzoo.errors import CheckpointError, RunFolderError
from rnnzoo.run_folder import atomic_writer


def save_atomic(obj: dict[str, Any], path: Path) -> None:
    """Write a checkpoint so that a crash mid-write leaves the previous one intact."""
    with atomic_writer(path) as f:
        torch.save(obj, f)


def load(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Open a checkpoint without unpickling arbitrary objects.

    Anything that is not a checkpoint written by rnnzoo (truncated, random bytes, a
    pickle that would run code, a bare ``state_dict``) is a ``CheckpointError``; torch's
    own message is not shown, since for a malicious file it advises ``weights_only=False``.
    """
    if not path.is_file():
        raise RunFolderError(f"no checkpoint at {path}")
    try:
        result = torch.load(path, map_location=map_location, weights_only=True)
    except MemoryError:
        raise
    except Exception:
        raise CheckpointError(
            f"{path} is not a readable rnnzoo checkpoint: it is truncated, corrupt, or "
            "was not written by rnnzoo (it was not opened: files that could run code are refused)",
            "restore the file, or train the run again",
        ) from None
    if not isinstance(result, dict) or not {"model", "config"} <= result.keys():
        raise CheckpointError(
            f"{path} is not an rnnzoo checkpoint: it lacks the model and config entries "
            "(a bare state_dict?)",
            "rnnzoo eval/predict read checkpoints written by rnnzoo train",
        )
    return result


def rng_state() -> dict[str, Any]:
    """The global generators, in a form ``weights_only`` loading accepts.

    Who owns which random stream of a run, so that a resumed run draws what the
    uninterrupted one drew:

    * torch's global generators (CPU, and every CUDA device's) are the model's stream:
      initial weights, dropout and the other regulariser masks, teacher forcing. They
      are seeded by ``train.seed`` and saved here, and nothing else may draw from them
      (``nn.Dropout`` and ``F.dropout`` take no generator, a private one would need
      every module rewritten, and a user's own module draws from them too).
    * batch order: a generator of its own per epoch, from (seed, epoch)
      (``rnnzoo.data.sampling.EpochBatches``), rebuilt rather than saved;
    * data loaders: their own seeded generator (``rnnzoo.evaluation.loader``);
    * generated data: a generator per split from ``data.seed``;
    * probes that need test numbers (``rnnzoo.fused._onednn_works``): their own.

    Python's and NumPy's global generators are saved too, for code that uses them.
    """
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
    """Put back the generators ``rng_state`` saved: the next draw is the one it would be."""
    torch.set_rng_state(state["torch"])
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), *rest))
    if "cuda" in state and torch.cuda.is_available():
        # one state per device it was saved on; a machine with fewer takes the first
        for device, cuda_state in enumerate(state["cuda"][: torch.cuda.device_count()]):
            torch.cuda.set_rng_state(cuda_state, device)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # every device's generator

"""Start a new run from another run's weights: ``model.init_from: RUN_DIR``.

ULMFiT's recipe (Howard & Ruder 2018): train a language model on the domain's text,
then fine-tune a classifier that starts from its embedding and recurrent layers. Here
the source may be any run: every parameter of its ``checkpoints/best.pt`` whose name and
shape are this model's is copied; the rest keeps the seeded initialisation. Models that
share parts name them alike (``embedding``, ``rnn``, ``head``), and a recurrent layer's
parameters are torch.nn's (``weight_ih_l0``, ``bias_hh_l0_reverse``), so a language
model's stack goes into a classifier's, and a unidirectional one into the forward
direction of a bidirectional one.

What the task fitted travels where it can be shared (``Task.adopt_state``: a text
task's tokenizer), so token ids mean the same words in both runs. Everything is checked
before a run folder is written: the source is a run folder, its checkpoint and fitted
files match the digests in its run.json, its cell is this config's, its vocabulary is
the size of this model's embedding, and at least one tensor fits.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from rnnzoo import checkpoint, run_folder
from rnnzoo.config import Config
from rnnzoo.errors import CheckpointError, ConfigError, RnnzooError
from rnnzoo.tasks import Task

KEY = "model.init_from"
BEST = "checkpoints/best.pt"


@dataclasses.dataclass
class Source:
    """A checked source run: its best weights, its config, and that file's SHA-256."""

    run_dir: Path
    weights: dict[str, Tensor]
    config: dict[str, Any]
    sha256: str


@dataclasses.dataclass
class Copied:
    """What ``copy_matching`` did, by parameter name, in the model's order."""

    source: Path
    sha256: str
    copied: list[str]
    missing: list[str]  # no tensor of that name in the source
    differs: dict[str, tuple[list[int], list[int]]]  # name -> (this model's shape, source's)
    values: int  # numbers copied
    names: list[str]  # every parameter of the model, to shorten the lists

    def lines(self) -> list[str]:
        """What ``rnnzoo train`` prints: one line per group (copied, not in the source,
        shape differs)."""
        head = f"init_from {self.source}:"
        out = [
            f"{head} copied {_short(self.copied, self.names)} ({len(self.copied)} tensors, "
            f"{self.values:,} values)"
        ]
        if self.missing:
            out.append(
                f"{head} left initialised: {_short(self.missing, self.names)} "
                f"({len(self.missing)} tensors, not in the source)"
            )
        if self.differs:
            shapes = ", ".join(
                f"{name} {_shape(mine)} (source {_shape(theirs)})"
                for name, (mine, theirs) in self.differs.items()
            )
            out.append(f"{head} left initialised (shape differs): {shapes}")
        return out

    def record(self) -> dict[str, Any]:
        """run.json's ``init_from`` entry."""
        return {
            "run": str(self.source),
            "checkpoint": BEST,
            "sha256": self.sha256,
            "copied": self.copied,
            "initialised": [n for n in self.names if n not in self.copied],
            "shape_differs": {n: {"here": a, "source": b} for n, (a, b) in self.differs.items()},
        }


def init_from(config: Config) -> Path | None:
    """The run folder ``model.init_from`` names (relative: to the current folder), if any."""
    path = getattr(config.model, "init_from", None)  # a model schema of a test may lack it
    return None if path is None else Path(path)


def open_source(run_dir: Path, config: Config) -> Source:
    """The source run's best checkpoint (weights_only) once the run folder, that file
    and its fitted files check out against its run.json, and its cell is this config's."""
    try:
        run_folder.check_run(run_dir)
        path = run_folder.verify(run_dir, BEST)
        state = checkpoint.load(path)
        run_folder.verify_state(run_dir)
    except RnnzooError as err:
        raise _blamed(err) from None
    theirs = state["config"].get("model", {}).get("cell")
    mine = getattr(config.model, "cell", None)
    if theirs is not None and mine is not None and theirs != mine:
        raise ConfigError(
            f"{KEY}: {run_dir} trained a {theirs!r} cell, this config's model.cell is {mine!r}",
            f"set model.cell: {theirs}, or give a run whose model.cell is {mine}",
        )
    return Source(run_dir, state["model"], state["config"], run_folder.sha256(path))


def adopt_state(task: Task, source: Source) -> None:
    """What of the source's fitted state the task shares (``Task.adopt_state``)."""
    try:
        task.adopt_state(source.run_dir)
    except RnnzooError as err:
        raise _blamed(err) from None
    except Exception as err:
        raise CheckpointError(
            f"{KEY}: {source.run_dir}: the task's saved state cannot be read "
            f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''})",
            "restore the file, or train that run again",
        ) from None


def copy_matching(source: Source, model: nn.Module, vocab_size: int | None) -> Copied:
    """Copy into ``model`` every parameter of the source with its name and shape.

    A parameter of the same name and another shape is left initialised, except the
    embedding of the task's vocabulary (an ``nn.Embedding`` of ``vocab_size`` rows):
    other rows there mean other token ids, a ``ConfigError``. So is a source with no
    tensor that fits at all."""
    theirs = source.weights
    vocabulary = [
        f"{name}.weight" if name else "weight"
        for name, module in model.named_modules()
        if isinstance(module, nn.Embedding) and module.num_embeddings == vocab_size
    ]
    for key in vocabulary:
        if key in theirs and theirs[key].shape[0] != vocab_size:
            raise ConfigError(
                f"{KEY}: {source.run_dir}'s {key} has {theirs[key].shape[0]} rows (its "
                f"vocabulary), this model's has {vocab_size}: the tokenizer must come "
                "from the same run",
                "this task does not take the source's tokenizer: give it the same "
                "vocabulary (data.vocab_size, data.min_frequency, the same data)",
            )
    params = dict(model.named_parameters())
    copied = [n for n, p in params.items() if n in theirs and theirs[n].shape == p.shape]
    if not copied:
        mine, there = ", ".join(list(params)[:4]), ", ".join(list(theirs)[:4])
        raise ConfigError(
            f"{KEY}: no tensor of {source.run_dir} has a name and shape of this model's "
            f"(this model: {mine or 'no parameters'}, ...; the source: {there}, ...)",
            "init_from copies by name and shape: start from a run of a model with the same "
            "parts and sizes (embedding_dim, hidden_size, num_layers)",
        )
    with torch.no_grad():
        for name in copied:
            params[name].copy_(theirs[name])
    differs = {
        n: (list(p.shape), list(theirs[n].shape))
        for n, p in params.items()
        if n in theirs and n not in copied
    }
    return Copied(
        source=source.run_dir,
        sha256=source.sha256,
        copied=copied,
        missing=[n for n in params if n not in theirs],
        differs=differs,
        values=sum(params[n].numel() for n in copied),
        names=list(params),
    )


def _blamed(err: RnnzooError) -> RnnzooError:
    """The same error, its message naming the key that led to it."""
    return type(err)(f"{KEY}: {err.message}", err.hint)


def _short(names: list[str], every: list[str]) -> str:
    """``names`` with each top-level part shown as ``part.*`` where all of it is listed."""
    shown: list[str] = []
    for top in dict.fromkeys(n.split(".")[0] for n in names):
        mine = [n for n in names if n.split(".")[0] == top]
        whole = [n for n in every if n.split(".")[0] == top]
        shown += [f"{top}.*"] if mine == whole and len(mine) > 1 else mine
    return ", ".join(shown)


def _shape(shape: list[int]) -> str:
    return "x".join(map(str, shape))

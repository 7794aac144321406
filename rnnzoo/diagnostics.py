"""Gradient flow through time: the norm of d loss / d h_t at every step t.

Through a simple RNN the gradient that reaches a step shrinks (or grows) by a factor
at every step it travels back; LSTM and GRU carry it further. ``gradient_flow``
measures it on a batch: the first recurrent layer of the model (its top layer's
forward direction) runs step by step through autograd, every ``h_t`` keeps its
gradient, and the norm over units is averaged over the batch. ``rnnzoo diagnose``
does it for runs at initialisation (the same seed rebuilds the same initial weights)
and at the end of training, and plots them on one log-scale figure.
"""

from __future__ import annotations

import contextlib
import json
import statistics
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from rnnzoo import checkpoint, run_folder
from rnnzoo.data.batches import Batch
from rnnzoo.data.sampling import batched
from rnnzoo.errors import ConfigError
from rnnzoo.layers import Recurrent
from rnnzoo.tasks import Task


@contextlib.contextmanager
def recording(model: nn.Module) -> Iterator[list[Tensor]]:
    """Collect the hidden state of every step of the model's first recurrent layer."""
    layer = next((m for m in model.modules() if isinstance(m, Recurrent)), None)
    if layer is None:
        raise ConfigError(f"{type(model).__name__} has no recurrent layer to measure")
    states: list[Tensor] = []
    layer.recorder = states
    try:
        yield states
    finally:
        layer.recorder = None


def gradient_flow(model: nn.Module, task: Task, batch: Batch) -> list[float]:
    """Mean over the batch of ||d loss / d h_t||, for t = 0 .. T-1 (dropout off)."""
    was_training = model.training
    model.eval()
    with recording(model) as states:
        output = model(batch.inputs, batch.lengths)
        for h in states:
            h.retain_grad()
        loss = task.loss(output.float(), batch)
        model.zero_grad(set_to_none=True)
        loss.backward()
    model.train(was_training)
    return [0.0 if h.grad is None else float(h.grad.norm(dim=-1).mean()) for h in states]


def diagnose(run_dirs: Sequence[Path], out: Path, which: str = "best") -> dict[str, Any]:
    """Gradient flow of each run, at initialisation and trained; writes
    ``gradient_flow.json`` into each run folder and ``gradient_flow.png`` into ``out``."""
    from rnnzoo.models import build_model
    from rnnzoo.runs import load_run

    results: dict[str, Any] = {}
    for run_dir in _expand(run_dirs):
        config, task, trained = load_run(run_dir, which)
        checkpoint.seed_everything(config.train.seed)  # as training did before building
        initial = build_model(config.model, task.io)
        wanted = config.train.eval_batch_size or config.train.batch_size
        data = batched(task.dataset("val"), wanted)  # a token stream: chunk 0 of each stream
        size = min(wanted, len(data))
        batch = data.__getitems__(list(range(size)))
        lines = run_folder.read_jsonl(run_dir / "metrics.jsonl")
        clipped = [x["train_clipped"] for x in lines if "train_clipped" in x]
        result = {
            "run": str(run_dir),
            "cell": getattr(config.model, "cell", None),
            "initial": gradient_flow(initial, task, batch),
            "trained": gradient_flow(trained, task, batch),
            "checkpoint": which,
            "batch": size,
            "clipped_fraction": statistics.fmean(clipped) if clipped else None,
        }
        (run_dir / "gradient_flow.json").write_text(json.dumps(result, indent=2) + "\n")
        results[run_dir.name] = result
    out.mkdir(parents=True, exist_ok=True)
    plot(results, out / "gradient_flow.png")
    return results


def _expand(paths: Sequence[Path]) -> list[Path]:
    """Run folders; a ``rnnzoo compare`` folder stands for the runs it lists."""
    runs: list[Path] = []
    for path in paths:
        listing = path / "compare.json"
        if listing.is_file():
            runs += [Path(r["run_dir"]) for r in run_folder.read_json(listing)["runs"]]
        else:
            runs.append(path)
    return runs


def plot(results: dict[str, Any], path: Path) -> None:
    """||d loss / d h_t|| against t, log scale: dashed at initialisation, solid trained."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    for i, (name, r) in enumerate(results.items()):
        label = name + (f" ({r['cell']})" if r["cell"] else "")
        ax.plot(_floor(r["initial"]), color=f"C{i}", ls="--", lw=1, label=f"{label}, initial")
        ax.plot(_floor(r["trained"]), color=f"C{i}", lw=1.5, label=f"{label}, trained")
    ax.set_yscale("log")
    ax.set_xlabel("time step t")
    ax.set_ylabel("mean ||d loss / d h_t||")
    ax.set_title("gradient flow through time")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _floor(values: list[float]) -> list[float]:
    """Zeros cannot be drawn on a log scale; show them at the float32 floor."""
    return [max(v, 1e-38) for v in values]

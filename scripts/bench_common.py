"""What the benchmark scripts share: one training in a child process, measured.

A child process per run makes the peak resident memory that run's own (``ru_maxrss``
of the child), and keeps one run's allocator state from timing the next.
"""

from __future__ import annotations

import json
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch

from rnnzoo.perf import LoadSampler

# The child runs the CLI and then prints its own peak resident set (KiB on Linux).
_CHILD = (
    "import resource, sys; sys.argv = ['rnnzoo'] + sys.argv[1:];"
    "from rnnzoo.cli import app\ntry: app()\nexcept SystemExit: pass\n"
    "print('PEAK_KB', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"
)


def train_in_child(
    config: Path | str, overrides: list[str], out_dir: Path, name: str
) -> dict[str, Any]:
    """Train ``config`` (a file or a shipped name) as ``out_dir/name`` in a child process.

    Returns the run folder, its per-epoch records (metrics.jsonl), summary.json, the
    child's peak memory in MB and the load sampled while it trained."""
    overrides = [*overrides, f"output.name={name}", "output.tensorboard=false"]
    cmd = ["train", "-c", str(config), "--out", str(out_dir)]
    cmd += [a for o in overrides for a in ("--set", o)]
    with LoadSampler() as sampler:
        done = subprocess.run([sys.executable, "-c", _CHILD, *cmd], capture_output=True, text=True)
    if done.returncode != 0 or "run folder:" not in done.stdout:
        raise RuntimeError(f"{name} failed:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}")
    run_dir = out_dir / name
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return {
        "run_dir": run_dir,
        "curve": [json.loads(x) for x in lines],
        "summary": json.loads((run_dir / "summary.json").read_text()),
        "peak_memory_mb": int(done.stdout.rsplit("PEAK_KB", 1)[1].split()[0]) / 1024,
        "load": sampler.record(),
        "log": done.stdout,
    }


def measured(result: dict[str, Any]) -> dict[str, Any]:
    """What every benchmark row reports of a ``train_in_child`` result: time per epoch
    (validation included), peak memory, parameter count and the load while it trained."""
    seconds = [r["seconds"] for r in result["curve"]]
    return {
        "seconds_per_epoch": seconds,
        "train_seconds": sum(seconds),
        "peak_memory_mb": round(result["peak_memory_mb"], 1),
        "parameters": parameters(result["run_dir"]),
        "load": result["load"],
    }


def parameters(run_dir: Path) -> int:
    """Number of parameters of the run's model, from its best checkpoint."""
    state = torch.load(run_dir / "checkpoints" / "best.pt", weights_only=True)
    return sum(t.numel() for t in state["model"].values())


def write_json(path: Path | None, script: str, results: dict[str, Any]) -> None:
    """The results with the command and the machine that produced them."""
    if path is None:
        return
    result = {
        "command": f"python scripts/{script} " + " ".join(sys.argv[1:]),
        "machine": {
            "platform": platform.platform(),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
        },
        **results,
    }
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {path}")

"""``rnnzoo compare``: train configs with the same seeds and budget, tabulate, plot.

Each config is trained in its own process (``python -m rnnzoo train``), so that runs
do not share state and each run's peak memory is its own. A finished run folder may be
given instead of a config; it is read, not retrained. The comparison folder gets::

    compare.md    one row per config: cell, layers, parameters, scores, time, memory
    compare.json  the same numbers, and every run behind them
    compare.png   validation metric against epoch and against wall time
    runs/         the run folders that compare trained
"""

from __future__ import annotations

import dataclasses
import json
import statistics
import subprocess
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from rnnzoo import checkpoint
from rnnzoo.config import load_config
from rnnzoo.errors import ConfigError, RunFailed

Echo = Callable[[str], None]


@dataclasses.dataclass
class RunRecord:
    """What a comparison reads from one finished run folder."""

    label: str
    run_dir: str
    model: dict[str, Any]
    metric: str
    best_val: float
    test: float | None
    seconds: float
    samples_per_s: float | None
    peak_memory_mb: float | None
    parameters: int
    curve: list[tuple[int, float, float]]  # (epoch, seconds so far, validation metric)


def read_run(run_dir: Path, label: str | None = None) -> RunRecord:
    """The numbers of a finished run, from its own files only."""
    summary_path = run_dir / "summary.json"
    if not summary_path.is_file():
        raise ConfigError(f"{run_dir} is not a finished run (no summary.json)")
    summary = json.loads(summary_path.read_text())
    metric = next(
        k.removeprefix("best_") for k in summary if k.startswith("best_") and k != "best_epoch"
    )
    lines = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    curve, elapsed = [], 0.0
    for line in lines:
        elapsed += line["seconds"]
        curve.append((line["epoch"], elapsed, line[f"val_{metric}"]))
    speeds = [x["samples_per_s"] for x in lines if x.get("samples_per_s")]
    state = checkpoint.load(run_dir / "checkpoints" / "best.pt")
    config = state["config"]
    test = summary.get("test", {}).get(metric)
    return RunRecord(
        label=label or run_dir.name,
        run_dir=str(run_dir),
        model=config["model"],
        metric=metric,
        best_val=summary["best_" + metric],
        test=test,
        seconds=elapsed,
        samples_per_s=statistics.median(speeds) if speeds else None,
        peak_memory_mb=summary.get("peak_memory_mb"),
        parameters=sum(t.numel() for t in state["model"].values() if t.is_floating_point()),
        curve=curve,
    )


def compare(
    sources: Sequence[Path],
    overrides: Iterable[str] = (),
    seeds: int = 1,
    budget_minutes: float | None = None,
    out: Path = Path("runs/compare"),
    echo: Echo = print,
) -> Path:
    """Train (or read) every source, then write the comparison into ``out``."""
    overrides = list(overrides)
    if budget_minutes is not None:
        overrides.append(f"train.max_minutes={budget_minutes}")
    for source in sources:  # every config is checked before anything trains
        if source.is_file():
            load_config(source, overrides)
        elif not source.is_dir():
            raise ConfigError(f"{source} is neither a config file nor a run folder")
    out.mkdir(parents=True, exist_ok=True)
    records: list[RunRecord] = []
    for source in sources:
        if source.is_dir():
            records.append(read_run(source))
            continue
        for seed in range(seeds):
            name = f"{source.stem}-seed{seed}"
            echo(f"== {source} (seed {seed}) ==")
            run_dir = _train_in_subprocess(
                source, [*overrides, f"train.seed={seed}"], out / "runs", name
            )
            records.append(read_run(run_dir, label=source.stem))
    rows = summarize(records)
    (out / "compare.md").write_text(markdown(rows, seeds, budget_minutes))
    result = {"seeds": seeds, "budget_minutes": budget_minutes, "rows": rows,
              "runs": [dataclasses.asdict(r) for r in records]}  # fmt: skip
    (out / "compare.json").write_text(json.dumps(result, indent=2) + "\n")
    plot(records, out / "compare.png")
    return out


def _train_in_subprocess(config: Path, overrides: list[str], root: Path, name: str) -> Path:
    run_dir = root / name
    if (run_dir / "summary.json").is_file():
        return run_dir  # finished by an earlier, interrupted compare: not trained twice
    command = [sys.executable, "-m", "rnnzoo", "train", "--config", str(config), "--out", str(root)]
    for item in [*overrides, f"output.name={name}"]:
        command += ["--set", item]
    if (run_dir / "checkpoints" / "last.pt").is_file():  # interrupted: continue it
        command = [sys.executable, "-m", "rnnzoo", "train", "--resume", str(run_dir)]
    code = subprocess.run(command, check=False).returncode
    if code != 0:
        raise RunFailed(f"training {config} ({name}) failed with exit code {code}; see above")
    return run_dir


def summarize(records: list[RunRecord]) -> list[dict[str, Any]]:
    """One row per label: the first run's description, means and deviations over seeds."""
    rows = []
    for label in dict.fromkeys(r.label for r in records):
        group = [r for r in records if r.label == label]
        first = group[0]
        model = first.model
        row: dict[str, Any] = {
            "label": label,
            "model": model.get("name"),
            "cell": model.get("cell", "-"),
            "layers": model.get("num_layers", "-"),
            "bidirectional": model.get("bidirectional", "-"),
            "parameters": first.parameters,
            "metric": first.metric,
            "runs": len(group),
        }
        for key in ("best_val", "test", "seconds", "samples_per_s", "peak_memory_mb"):
            values = [getattr(r, key) for r in group if getattr(r, key) is not None]
            row[key] = statistics.fmean(values) if values else None
            row[key + "_std"] = statistics.stdev(values) if len(values) > 1 else None
        rows.append(row)
    return rows


def markdown(rows: list[dict[str, Any]], seeds: int, budget_minutes: float | None) -> str:
    budget = (
        f"{budget_minutes:g} minutes of wall time each"
        if budget_minutes
        else "each config's own epochs"
    )
    lines = [
        "# Comparison",
        "",
        f"Seeds per config: {seeds}; budget: {budget}. Scores on the best checkpoint, "
        "selected on validation; mean ± standard deviation over seeds.",
        "",
        "| config | model | cell | layers | bidirectional | parameters | metric | best val | test "
        "| train s | samples/s | peak MB |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        cells = [
            row["label"], row["model"], row["cell"], str(row["layers"]), str(row["bidirectional"]),
            f"{row['parameters']:,}", row["metric"],
            _pm(row, "best_val", ".4g"), _pm(row, "test", ".4g"), _pm(row, "seconds", ".0f"),
            _pm(row, "samples_per_s", ".0f"), _pm(row, "peak_memory_mb", ".0f"),
        ]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _pm(row: dict[str, Any], key: str, spec: str) -> str:
    value, std = row[key], row[key + "_std"]
    if value is None:
        return "-"
    return f"{value:{spec}}" + (f" ± {std:{spec}}" if std is not None else "")


def plot(records: list[RunRecord], path: Path) -> None:
    """Validation metric against epoch (left) and against wall time (right)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    fig, (by_epoch, by_time) = plt.subplots(1, 2, figsize=(11, 4))
    colors = {label: f"C{i}" for i, label in enumerate(dict.fromkeys(r.label for r in records))}
    for record in records:
        epochs, seconds, values = zip(*record.curve, strict=True) if record.curve else ((), (), ())
        first = record is next(r for r in records if r.label == record.label)
        label = record.label if first else None
        by_epoch.plot(epochs, values, color=colors[record.label], marker=".", label=label)
        by_time.plot(seconds, values, color=colors[record.label], marker=".")
    metric = records[0].metric if records else ""
    for ax, xlabel in ((by_epoch, "epoch"), (by_time, "wall time (s)")):
        ax.set_xlabel(xlabel)
        ax.set_ylabel(f"validation {metric}")
        ax.grid(alpha=0.3)
    by_epoch.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    by_epoch.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)

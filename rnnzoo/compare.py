"""``rnnzoo compare``: train configs with the same seeds and budget, tabulate, plot.

Each config is trained in its own process (``python -m rnnzoo train``), so that runs
do not share state and each run's peak memory is its own. A finished run folder may be
given instead of a config; it is read, not retrained. The comparison folder gets::

    compare.md    one row per source: cell, layers, parameters, scores, time, memory
    compare.json  the same numbers, and every run behind them
    compare.png   validation metric against epoch and against wall time
    runs/         the run folders that compare trained: <label>-seed<N>-<config hash>

A run is identified by its resolved config (every default filled in, after ``--set``,
the seed and the budget), not by its file name. Comparing again into the same folder
reuses a finished run only when its stored ``config.yaml`` resolves to the same config,
continues an unfinished one (same config) with ``train --resume``, and otherwise trains
a new run beside the old ones: compare never overwrites or deletes a run folder.

Everything that can be checked is checked before anything is written: every source,
their task, ``--seeds``, ``--budget-minutes`` and ``--out``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import statistics
import subprocess
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from rnnzoo import checkpoint, run_folder, shipped
from rnnzoo.config import Config, load_config, parse_config, parse_yaml
from rnnzoo.errors import (
    CheckpointError,
    ConfigError,
    OutputError,
    RnnzooError,
    RunFailed,
    RunFolderError,
    os_error,
    read_text,
)

Echo = Callable[[str], None]

# Output keys that say where a run folder goes, not what it holds.
_PLACEMENT = ("dir", "name")


@dataclasses.dataclass
class RunRecord:
    """What a comparison reads from one finished run folder."""

    label: str
    run_dir: str
    seed: int
    model: dict[str, Any]
    metric: str
    best_val: float
    test: float | None
    seconds: float
    samples_per_s: float | None
    peak_memory_mb: float | None
    parameters: int
    curve: list[tuple[int, float, float]]  # (epoch, seconds so far, validation metric)


@dataclasses.dataclass
class Source:
    """One source on the command line: a config to train once per seed, or a finished run."""

    path: Path
    task: str
    configs: list[dict[str, Any]]  # the resolved config of seed 0, 1, ...; [] for a run folder
    label: str = ""

    @property
    def is_run(self) -> bool:
        return not self.configs


def resolved(config: Config) -> dict[str, Any]:
    """What decides a run's result: its resolved config, less where its folder goes."""
    values = config.to_dict()
    values["output"] = {k: v for k, v in values["output"].items() if k not in _PLACEMENT}
    return values


def config_hash(values: dict[str, Any]) -> str:
    """A short, stable name for a resolved config: SHA-256 of its canonical JSON."""
    text = json.dumps(values, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def read_run(run_dir: Path, label: str | None = None) -> RunRecord:
    """The numbers of a finished run, from its own files only."""
    summary_path = run_dir / "summary.json"
    if not summary_path.is_file():
        raise RunFolderError(f"{run_dir} is not a finished run (no summary.json)")
    summary = run_folder.read_json(summary_path)
    metric = next(
        (k.removeprefix("best_") for k in summary if k.startswith("best_") and k != "best_epoch"),
        None,
    )
    if metric is None:
        raise CheckpointError(f"{summary_path} has no best_<metric> score: the run is damaged")
    metrics_path = run_dir / "metrics.jsonl"
    lines = run_folder.read_jsonl(metrics_path)
    curve, elapsed = [], 0.0
    for line in lines:
        elapsed += line["seconds"]
        curve.append((line["epoch"], elapsed, line[f"val_{metric}"]))
    speeds = [x["samples_per_s"] for x in lines if x.get("samples_per_s")]
    state = checkpoint.load(run_folder.verify(run_dir, "checkpoints/best.pt"))
    config = state["config"]
    test = summary.get("test", {}).get(metric)
    return RunRecord(
        label=label or run_dir.name,
        run_dir=str(run_dir),
        seed=config["train"]["seed"],
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
    if seeds < 1:
        raise ConfigError(f"--seeds must be at least 1, got {seeds}")
    if budget_minutes is not None:
        if not budget_minutes > 0:
            raise ConfigError(f"--budget-minutes must be above 0, got {budget_minutes:g}")
        overrides.append(f"train.max_minutes={budget_minutes}")
    plan = read_sources(sources, overrides, seeds)  # every source, before anything trains
    _check_out(out)
    runs_root = out / "runs"
    try:
        runs_root.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise os_error(err, "create") from None
    records: list[RunRecord] = []
    for source in plan:
        if source.is_run:
            records.append(read_run(source.path, source.label))
            continue
        for seed, values in enumerate(source.configs):
            run_dir = _run(
                source, [*overrides, f"train.seed={seed}"], seed, values, runs_root, echo
            )
            records.append(read_run(run_dir, label=source.label))
    rows = summarize(records)
    (out / "compare.md").write_text(markdown(rows, seeds, budget_minutes))
    result = {"seeds": seeds, "budget_minutes": budget_minutes, "rows": rows,
              "runs": [dataclasses.asdict(r) for r in records]}  # fmt: skip
    (out / "compare.json").write_text(json.dumps(result, indent=2) + "\n")
    plot(records, out / "compare.png")
    return out


# -- checking the sources -------------------------------------------------------------


def read_sources(paths: Sequence[Path], overrides: list[str], seeds: int) -> list[Source]:
    """Every source read and checked, labelled; every problem in all of them is one error."""
    sources: list[Source] = []
    problems: list[RnnzooError] = []
    for path in paths:
        try:
            sources.append(_read_source(path, overrides, seeds))
        except RnnzooError as err:
            problems.append(err)
    if len(problems) == 1:
        raise problems[0]
    if problems:
        raise ConfigError("\n".join(p.message for p in problems), "nothing was trained")
    _check_one_task(sources)
    _check_distinct(sources)
    for source, label in zip(sources, labels([s.path for s in sources]), strict=True):
        source.label = label
    return sources


def _read_source(path: Path, overrides: list[str], seeds: int) -> Source:
    if path.is_dir():
        return Source(path, _finished_run_task(path), [])
    if not path.exists() and shipped.name_of(path) not in shipped.names():
        raise ConfigError(
            f"{path} is neither a config file nor a run folder: it does not exist, and "
            + shipped.unknown(path),
            "give YAML config files, shipped config names (`rnnzoo list`) or finished run folders",
        )
    path = shipped.resolve(path)  # a shipped config's name: its file
    configs = [load_config(path, [*overrides, f"train.seed={seed}"]) for seed in range(seeds)]
    return Source(path, configs[0].task, [resolved(c) for c in configs])


def _finished_run_task(run_dir: Path) -> str:
    """The task of a finished run folder; an error for any other folder."""
    if not (run_dir / "summary.json").is_file():
        hint = "give a config file, or a run folder whose training finished"
        if (run_dir / "compare.json").is_file():
            hint = f"this is a comparison folder: give its run folders ({run_dir / 'runs'}/...)"
        elif (run_dir / "checkpoints" / "last.pt").is_file():
            hint = f"finish it first: rnnzoo train --resume {run_dir}"
        raise RunFolderError(
            f"{run_dir} is neither a config file nor a finished run folder (no summary.json)",
            hint,
        )
    config_path = run_dir / "config.yaml"
    raw = parse_yaml(read_text(config_path, "run config"), str(config_path))
    task = raw.get("task") if isinstance(raw, dict) else None
    if not isinstance(task, str):
        raise RunFolderError(f"{config_path} names no task: {run_dir} is not an rnnzoo run")
    return task


def _check_one_task(sources: list[Source]) -> None:
    """Refuse to put scores of different tasks side by side."""
    if len({s.task for s in sources}) > 1:
        which = ", ".join(f"{s.path} ({s.task})" for s in sources)
        raise ConfigError(
            f"cannot compare different tasks, their scores are not comparable: {which}",
            "compare configs and runs of one task",
        )


def _check_distinct(sources: list[Source]) -> None:
    """Refuse a source given twice, or two configs that resolve to the same runs."""
    seen: dict[str, Path] = {}
    for source in sources:
        # a run folder is itself; a config is the runs it would train
        key = (
            str(source.path.resolve())
            if source.is_run
            else json.dumps(source.configs, sort_keys=True)
        )
        if key not in seen:
            seen[key] = source.path
            continue
        earlier = seen[key]
        if earlier.resolve() == source.path.resolve():
            raise ConfigError(f"{source.path} is given twice", "give each source once")
        raise ConfigError(
            f"{earlier} and {source.path} are the same config after --set: "
            "they would train the same runs",
            "give one of them, or change what differs",
        )


def labels(paths: Sequence[Path]) -> list[str]:
    """Each source's row label: the shortest end of its path that no other source shares
    (``v1/exp`` and ``v2/exp`` for two ``exp.yaml``), without a config's ``.yaml``."""
    keys = [_label_parts(p) for p in paths]
    found = []
    for i, key in enumerate(keys):
        others = keys[:i] + keys[i + 1 :]
        for n in range(1, len(key) + 1):
            if all(other[-n:] != key[-n:] for other in others):
                found.append("/".join(key[-n:]))
                break
        else:  # the same path but for the suffix: a run folder x beside x.yaml
            found.append(str(paths[i]))
    return found


def _label_parts(path: Path) -> tuple[str, ...]:
    parts = path.resolve().parts[1:]  # without the root
    return (*parts[:-1], path.stem) if path.is_file() else parts


def _check_out(out: Path) -> None:
    """Refuse an ``--out`` that cannot hold a comparison, before anything is written."""
    for folder in (out, out / "runs"):
        if folder.exists() and not folder.is_dir():
            raise OutputError(f"--out {out}: {folder} is a file, not a folder")
    holds_comparison = (out / "compare.json").is_file() or (out / "runs").is_dir()
    if out.is_dir() and not holds_comparison and any(out.iterdir()):
        raise OutputError(
            f"--out {out} is a folder with other files, not a comparison",
            "give a new folder, or the folder of an earlier comparison",
        )
    existing = out
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise OutputError(f"cannot create --out {out}: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise OutputError(
            f"cannot write to --out {out}: {existing} is not writable",
            "choose a folder you can write to",
        )


# -- training -------------------------------------------------------------------------


def _run(
    source: Source,
    overrides: list[str],
    seed: int,
    values: dict[str, Any],
    root: Path,
    echo: Echo,
) -> Path:
    """The finished run folder of ``source`` with this seed: reused, resumed or trained."""
    name = f"{_slug(source.label)}-seed{seed}-{config_hash(values)}"
    run_dir, action = place(root, name, values, earlier=f"{source.path.stem}-seed{seed}")
    doing = {"reuse": "reusing the finished run", "resume": "resuming", "train": "training"}
    echo(f"== {source.label} (seed {seed}): {doing[action]} {run_dir} ==")
    if action == "reuse":
        return run_dir
    if action == "resume":
        command = ["train", "--resume", str(run_dir)]
    else:
        command = ["train", "--config", str(source.path), "--out", str(root)]
        for item in [*overrides, f"output.name={run_dir.name}"]:
            command += ["--set", item]
    code = train_process(command)
    if code != 0:
        raise RunFailed(
            f"training {source.path} ({run_dir}) failed with exit code {code}; see above"
        )
    if stored_config(run_dir) != values:  # the file changed while the comparison ran
        raise RunFailed(f"{run_dir} holds another config than {source.path} had when checked")
    return run_dir


def train_process(args: list[str]) -> int:
    """Run ``rnnzoo <args>`` in a process of its own; its exit code."""
    return subprocess.run([sys.executable, "-m", "rnnzoo", *args], check=False).returncode


def place(
    root: Path, name: str, values: dict[str, Any], earlier: str | None = None
) -> tuple[Path, str]:
    """Where the run of the resolved config ``values`` goes under ``root``, and whether to
    ``reuse``, ``resume`` or ``train`` it.

    ``name`` is tried first, then ``name-2``, ``name-3``...; a folder that holds another
    config, or a start that failed before its first checkpoint, is left as it is. The
    folder ``earlier`` (the name older versions gave, ``<stem>-seed<N>``) is reused or
    resumed when it holds the same config, never trained into."""
    if earlier is not None and (found := _existing_run(root / earlier, values)):
        return root / earlier, found
    n = 1
    while True:
        run_dir = root / (name if n == 1 else f"{name}-{n}")
        if not run_dir.exists():
            return run_dir, "train"
        if found := _existing_run(run_dir, values):
            return run_dir, found
        n += 1


def _existing_run(run_dir: Path, values: dict[str, Any]) -> str | None:
    """``reuse`` a finished run of ``values``, ``resume`` an unfinished one, else None."""
    if not run_dir.is_dir() or stored_config(run_dir) != values:
        return None
    if (run_dir / "summary.json").is_file():
        return "reuse"
    if (run_dir / "checkpoints" / "last.pt").is_file():
        return "resume"
    return None  # it failed before its first checkpoint: left as it is


def stored_config(run_dir: Path) -> dict[str, Any] | None:
    """The resolved config a run folder's ``config.yaml`` holds; None if it holds none."""
    path = run_dir / "config.yaml"
    try:
        raw = parse_yaml(read_text(path, "run config"), str(path))
        return resolved(parse_config(raw, str(path))) if isinstance(raw, dict) else None
    except RnnzooError:  # missing, damaged or from another schema: not the same config
        return None


def _slug(label: str) -> str:
    """A label as a folder name: ``v1/exp`` -> ``v1-exp``."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", label).strip("-.") or "run"


# -- the table and the plot -----------------------------------------------------------


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

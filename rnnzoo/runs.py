"""Run folders: start, resume and evaluate a run; the functions behind the CLI.

A run folder holds everything needed to rebuild and evaluate its model::

    runs/<name>/
      config.yaml          the resolved config, every default filled in
      run.json             torch version, device, seed, git commit, processes, command
      metrics.jsonl        one line per epoch: every metric, lr, grad norm, time, speed
      checkpoints/best.pt  best validation metric so far   (weights_only-loadable)
      checkpoints/last.pt  latest state, to resume from
      summary.json         best epoch and metrics when training ended
      eval_<split>.json    written by ``rnnzoo eval`` (test: also at the end of training)
      <task state>         what the task fitted on train: tokenizer.json, forecast.json
      forecast_<split>.png a forecasting task's plot, written by ``rnnzoo eval``
"""

from __future__ import annotations

import datetime as dt
import json
import platform
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from rnnzoo import checkpoint
from rnnzoo.config import Config, apply_overrides, load_config, parse_config
from rnnzoo.distributed import (
    World,
    broadcast_from_main,
    close_world,
    device_type,
    init_world,
    resolve_device,
)
from rnnzoo.errors import ConfigError
from rnnzoo.evaluation import evaluate as evaluate_model
from rnnzoo.models import build_model
from rnnzoo.perf import peak_memory_mb
from rnnzoo.tasks import TASKS, Task
from rnnzoo.tasks.base import PredictRequest
from rnnzoo.trainer import Trainer

Echo = Callable[[str], None]


def train(
    config_path: Path | None = None,
    overrides: Iterable[str] = (),
    out: Path | None = None,
    device: str | None = None,
    resume: Path | None = None,
    echo: Echo = print,
) -> Path:
    """Train from a config file (or continue the run in ``resume``); returns the run folder."""
    overrides = list(overrides)
    if device is not None:
        overrides.append(f"train.device={device}")
    if resume is not None:
        state = checkpoint.load(_checkpoint_path(resume, "last"))
        config = parse_config(apply_overrides(state["config"], overrides), source=str(resume))
    elif config_path is not None:
        config = load_config(config_path, overrides)
    else:
        raise ConfigError("give a config file, or --resume RUN_DIR")
    if out is not None:
        config.output.dir = out

    world = init_world(device_type(config.train.device))
    try:
        dev = resolve_device(config.train.device, world)
        checkpoint.seed_everything(config.train.seed)
        task = TASKS.get(config.task)(config.data)
        run_dir = resume or _new_run_dir(config, config_path)
        if resume is not None:
            task.load_state(run_dir)
        else:
            task.prepare()  # fitted on the training split only (a tokenizer, say)
        model = build_model(config.model, task.io)  # after seeding: same init every time
        if world.is_main:
            _write_run_files(run_dir, config, dev, world, resumed=resume is not None)
            task.save_state(run_dir)
        log = _epoch_logger(run_dir, config, echo) if world.is_main else None
        trainer = Trainer(config, task, model, dev, world, run_dir if world.is_main else None, log)
        if resume is not None:
            trainer.restore(state)
            at = trainer.progress
            echo(f"resuming {run_dir} at epoch {at.epoch + 1}, step {at.step}")
        started = time.perf_counter()
        progress = trainer.fit()
        # Report on the best checkpoint: validation (selection) and, if any, test. Only
        # rank 0 has the run folder; the others take its weights.
        if world.is_main:
            best = checkpoint.load(_checkpoint_path(run_dir, "best"), dev)
            model.load_state_dict(best["model"])
        broadcast_from_main(model, world)
        summary: dict[str, Any] = {
            "best_epoch": progress.best_epoch,
            "best_" + trainer.metric: progress.best,
            "epochs": progress.epoch,
            "steps": progress.step,
            "seconds": round(time.perf_counter() - started, 3),
            "peak_memory_mb": round(peak_memory_mb(dev), 1),
        }
        for split in ("val", "test"):
            if not task.has_split(split):
                echo(f"no {split} split in this copy of the data: not scored")
                continue
            data = trainer.val_data if split == "val" else task.dataset(split)
            summary[split] = metrics = trainer.evaluate(data)
            if world.is_main and split == "test":
                test = {"split": "test", "checkpoint": "best", **metrics}
                _write_json(run_dir / "eval_test.json", test)
                task.figures(model, "test", run_dir, dev)
        if world.is_main:
            _write_json(run_dir / "summary.json", summary)
            echo(f"best epoch {progress.best_epoch}: val {_fmt(summary['val'])}")
            if "test" in summary:
                echo(f"test (best checkpoint): {_fmt(summary['test'])}")
            if config.train.diagnose:
                from rnnzoo.diagnostics import diagnose

                diagnose([run_dir], run_dir)
                echo(f"gradient flow: {run_dir / 'gradient_flow.png'}")
            echo(f"run folder: {run_dir}")
        return run_dir
    finally:
        close_world(world)


def load_run(
    run_dir: Path,
    which: str = "best",
    data_path: Path | None = None,
    overrides: Sequence[str] = (),
) -> tuple[Config, Task, nn.Module]:
    """Rebuild config, task and model (with the checkpoint's weights) from a run folder.

    ``overrides`` (``key=value``) may change how the model is used, not its weights
    (``model.beam_width=4``)."""
    state = checkpoint.load(_checkpoint_path(run_dir, which))
    raw = state["config"]
    if data_path is not None:
        overrides = [*overrides, f"data.path={data_path}"]
    if overrides:
        raw = apply_overrides(raw, list(overrides))
    config = parse_config(raw, source=str(run_dir))
    task = TASKS.get(config.task)(config.data)
    task.load_state(run_dir)
    model = build_model(config.model, task.io)
    model.load_state_dict(state["model"])
    return config, task, model


def evaluate(
    run_dir: Path,
    split: str = "test",
    which: str = "best",
    data_path: Path | None = None,
    device: str = "auto",
    plots: bool = True,
    beam_width: int | None = None,
) -> dict[str, float]:
    """Metrics of a run's checkpoint on ``split``; also written to ``eval_<split>.json``
    (``eval_<split>_beam<k>.json`` with a beam width), with the task's plots (a
    forecast's ``forecast_<split>.png``) beside it."""
    beam = [] if beam_width is None else [f"model.beam_width={beam_width}"]
    config, task, model = load_run(run_dir, which, data_path, beam)
    task.check_split(split)
    dev = resolve_device(device, World())
    size = config.train.eval_batch_size or config.train.batch_size
    model = model.to(dev)
    data = task.dataset(split)
    metrics = evaluate_model(model, task, data, dev, size, precision=config.train.precision)
    name = f"eval_{split}" if beam_width is None else f"eval_{split}_beam{beam_width}"
    _write_json(run_dir / f"{name}.json", {"split": split, "checkpoint": which, **metrics})
    if plots:
        task.figures(model, split, run_dir, dev)
    return metrics


def predict(request: PredictRequest, which: str = "best") -> list[str]:
    """The trained model's answers as lines: one per text, a forecast table, or samples."""
    _, task, model = load_run(request.run_dir, which)
    return task.predict(model, request)


# -- run folder files ---------------------------------------------------------------


def _checkpoint_path(run_dir: Path, which: str) -> Path:
    if not run_dir.is_dir():
        raise ConfigError(f"run folder not found: {run_dir}")
    path = run_dir / "checkpoints" / f"{which}.pt"
    if not path.is_file():
        raise ConfigError(f"{run_dir} has no {which!r} checkpoint ({path} is missing)")
    return path


def _new_run_dir(config: Config, config_path: Path | None) -> Path:
    stem = config_path.stem if config_path is not None else config.task
    name = config.output.name or f"{stem}-{dt.datetime.now():%Y%m%d-%H%M%S}"
    run_dir = config.output.dir / name
    if (run_dir / "checkpoints").exists():
        if config.output.name:
            raise ConfigError(f"{run_dir} already holds a run; resume it with --resume {run_dir}")
        run_dir = run_dir.with_name(f"{name}-{time.time_ns() % 10**6:06d}")
    return run_dir


def _write_run_files(
    run_dir: Path, config: Config, device: torch.device, world: World, resumed: bool
) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(config.to_yaml())
    info = {
        "started": dt.datetime.now().isoformat(timespec="seconds"),
        "resumed": resumed,
        "command": " ".join(sys.argv),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "device": str(device)
        + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else ""),
        "processes": world.size,
        "seed": config.train.seed,
        "git_commit": _git_commit(),
    }
    runs_log = run_dir / "run.json"
    history = json.loads(runs_log.read_text()) if resumed and runs_log.exists() else []
    if isinstance(history, dict):
        history = [history]
    _write_json(runs_log, [*history, info])


def _git_commit() -> str | None:
    """The commit of the rnnzoo source tree, with ``-dirty`` if it has changes."""
    src = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=src, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=src,
            capture_output=True,
            text=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return commit + ("-dirty" if dirty else "")


def _epoch_logger(run_dir: Path, config: Config, echo: Echo) -> Callable[[dict[str, Any]], None]:
    """Each epoch: a line in metrics.jsonl, TensorBoard scalars if wanted, a summary line."""
    writer = None
    if config.output.tensorboard:
        try:
            from torch.utils.tensorboard import SummaryWriter

            writer = SummaryWriter(str(run_dir / "tensorboard"))
        except ImportError:  # the optional extra is not installed
            writer = None
    epochs = config.train.epochs

    def log(record: dict[str, Any]) -> None:
        with (run_dir / "metrics.jsonl").open("a") as f:
            f.write(json.dumps(record) + "\n")
        if writer is not None:
            for key, value in record.items():
                if isinstance(value, float):
                    writer.add_scalar(key.replace("_", "/", 1), value, record["step"])
            writer.flush()
        train = {k[6:]: v for k, v in record.items() if k.startswith("train_")}
        val = {k[4:]: v for k, v in record.items() if k.startswith("val_")}
        grad = f"grad {train.pop('grad_norm', 0.0):.3g} (clipped {train.pop('clipped', 0.0):.0%})"
        speed = f" {record['samples_per_s']:.0f} samples/s" if record["samples_per_s"] else ""
        echo(
            f"epoch {record['epoch']}/{epochs}{' (partial)' if record['partial_epoch'] else ''} "
            f"step {record['step']} | train {_fmt(train)} | val {_fmt(val)} | "
            f"{grad} | lr {record['lr']:.2e} | {record['seconds']:.1f}s{speed}"
            + (" *best" if record["best"] else "")
        )

    return log


def _fmt(metrics: dict[str, Any]) -> str:
    return " ".join(
        f"{k} {v:.4g}" for k, v in metrics.items() if isinstance(v, float) and "/" not in k
    )


def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2) + "\n")

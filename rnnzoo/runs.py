"""Run folders: start, resume and evaluate a run; the functions behind the CLI.

A run folder holds everything needed to rebuild and evaluate its model::

    runs/<name>/
      config.yaml          the resolved config, every default filled in
      run.json             torch version, device, seed, git commit, processes, command;
                           with model.init_from, the source run and what was copied
      metrics.jsonl        one line per epoch: every metric, lr, grad norm, time, speed
      checkpoints/best.pt  best validation metric so far   (weights_only-loadable)
      checkpoints/last.pt  latest state, to resume from
      summary.json         best epoch and metrics when training ended
      eval_<split>.json    written by ``rnnzoo eval`` (test: also at the end of training)
      <task state>         what the task fitted on train: tokenizer.json, forecast.json
      forecast_<split>.png a forecasting task's plot, written by ``rnnzoo eval``
      backtest_<split>.json a forecasting run's error against lead time from every
      backtest_<split>.png origin of a split, and its plot: ``rnnzoo eval --backtest``
      confusion_<split>.png a classifier's confusion matrix, written by ``rnnzoo eval``
"""

from __future__ import annotations

import datetime as dt
import json
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from rnnzoo import checkpoint, run_folder, shipped, transfer
from rnnzoo.backtest import Backtest, BacktestRequest
from rnnzoo.config import Config, apply_overrides, load_config, parse_config
from rnnzoo.distributed import (
    World,
    broadcast_from_main,
    close_world,
    device_type,
    init_world,
    resolve_device,
)
from rnnzoo.errors import CheckpointError, ConfigError, ResourceError, RnnzooError
from rnnzoo.evaluation import evaluate as evaluate_model
from rnnzoo.models import build_model
from rnnzoo.perf import available_memory_bytes, peak_memory_mb
from rnnzoo.tasks import TASKS, Task
from rnnzoo.tasks.base import PredictRequest
from rnnzoo.trainer import Progress, Trainer

SUMMARY = "summary.json"

Echo = Callable[[str], None]


def train(
    config_path: Path | None = None,
    overrides: Iterable[str] = (),
    out: Path | None = None,
    device: str | None = None,
    resume: Path | None = None,
    echo: Echo = print,
) -> Path:
    """Train from a config file or a shipped config's name (or continue the run in
    ``resume``); returns the run folder.

    Everything that can fail before training (config, data, model size and build, the
    checkpoint and its shapes) is checked before the run folder is created or touched,
    and a new run that fails before its first checkpoint leaves no folder behind."""
    overrides = list(overrides)
    if device is not None:
        overrides.append(f"train.device={device}")
    state = None
    if resume is not None:
        if out is not None:
            raise ConfigError("--out does not apply to --resume: a run continues in its folder")
        _check_resume_overrides(overrides)
        run_folder.check_run(resume)
        state = checkpoint.load(run_folder.verify(resume, "checkpoints/last.pt"))
        raw = apply_overrides(state["config"], overrides)
        if raw.get("task") != state["config"].get("task"):
            raise ConfigError(
                f"--resume: {resume} is a {state['config'].get('task')!r} run; "
                "--set cannot change its task",
                "start a new run for another task",
            )
        config = parse_config(raw, str(resume), overrides)
    elif config_path is not None:
        config_path = shipped.resolve(config_path)  # a file, else a shipped config's name
        config = load_config(config_path, overrides)
        if out is not None:
            config.output.dir = out
    else:
        raise ConfigError("give a config file, or --resume RUN_DIR")

    world = init_world(device_type(config.train.device))
    undo: Callable[[], None] | None = None  # removes what a failed start created
    try:
        # Only rank 0 writes, so only rank 0 needs (and checks) the folder.
        run_dir = resume or (_new_run_dir(config, config_path) if world.is_main else Path())
        dev = resolve_device(config.train.device, world)
        checkpoint.seed_everything(config.train.seed)
        task = TASKS.get(config.task)(config.data)
        # A resumed run has its own weights and state; a new one may start from another's.
        source_dir = transfer.init_from(config) if state is None else None
        source = None if source_dir is None else transfer.open_source(source_dir, config)
        if state is not None:
            _load_task_state(task, run_dir)
        else:
            if source is not None:
                transfer.adopt_state(task, source)  # the source's tokenizer, say
            task.prepare()  # fitted on the training split only (a tokenizer, say)
        _check_fits(config, task, dev)
        model = build_model(config.model, task.io)  # after seeding: same init every time
        copied = (
            None if source is None else transfer.copy_matching(source, model, task.io.vocab_size)
        )
        trainer = Trainer(config, task, model, dev, world)
        if state is not None:
            _restore(trainer, state, overrides)
            if trainer.finished() and (run_dir / SUMMARY).exists():
                _say_finished(run_dir, echo)
                return run_dir
        # Checked: now write.
        if world.is_main:
            undo = None if state is not None else _undo_for(run_dir)
            _write_run_files(run_dir, config, dev, world, task, resumed=state is not None)
            shown = _headline(task, trainer.metric)
            trainer.run_dir, trainer.log = run_dir, _epoch_logger(run_dir, config, echo, shown)
            trainer.say = echo
            echo(_start_line(config, model, dev, run_dir))
            if copied is not None:
                run_folder.set_entry(run_dir, "init_from", copied.record())
                for line in copied.lines():
                    echo(line)
        if state is not None:
            at = trainer.progress
            echo(f"resuming {run_dir} at epoch {at.epoch + 1}, step {at.step}")
        if world.is_main:
            for note in task.notes:  # what prepare() chose or fixed, said once
                echo(note)
        started = time.perf_counter()
        progress = trainer.fit()
        _report(trainer, progress, run_dir, dev, world, time.perf_counter() - started, echo)
        return run_dir
    except BaseException:
        if undo is not None and not run_folder.is_run(run_dir):
            undo()  # no checkpoint, nothing to resume: leave no trace
        raise
    finally:
        close_world(world)


def _undo_for(run_dir: Path) -> Callable[[], None]:
    """A function that removes what writing a new run into ``run_dir`` is about to
    create: the folders it makes, or (an empty folder already there) what it puts in."""
    if run_dir.exists():

        def empty_again() -> None:
            for path in run_dir.iterdir():
                shutil.rmtree(path) if path.is_dir() else path.unlink()

        return empty_again
    top = run_dir
    while not top.parent.exists():
        top = top.parent
    return lambda: shutil.rmtree(top, ignore_errors=True)


def _report(
    trainer: Trainer,
    progress: Progress,
    run_dir: Path,
    dev: torch.device,
    world: World,
    seconds: float,
    echo: Echo,
) -> None:
    """Score the best checkpoint on validation (selection) and, if any, test; write
    summary.json. Only rank 0 has the run folder; the others take its weights."""
    task, model, config = trainer.task, trainer.model, trainer.config
    if world.is_main:
        best = checkpoint.load(run_folder.verify(run_dir, "checkpoints/best.pt"), dev)
        model.load_state_dict(best["model"])
    broadcast_from_main(model, world)
    summary: dict[str, Any] = {
        "best_epoch": progress.best_epoch,
        "best_" + trainer.metric: progress.best,
        "epochs": progress.epoch,
        "steps": progress.step,
        "seconds": round(seconds, 3),
        "peak_memory_mb": round(peak_memory_mb(dev), 1),
    }
    for split in ("val", "test"):
        if not task.has_split(split):
            echo(f"no {split} split in this copy of the data: not scored")
            continue
        data = trainer.val_data if split == "val" else task.dataset(split)
        summary[split] = metrics = trainer.evaluate(data)
        if world.is_main and split == "test":
            size = config.train.eval_batch_size or config.train.batch_size
            test = {
                "split": "test", "checkpoint": "best", **metrics,
                **task.report(model, "test", dev, size),
            }  # fmt: skip
            files = {run_dir / "eval_test.json": run_folder.json_bytes(test)}
            run_folder.write_all({**files, **task.figures(model, "test", run_dir, dev)})
    if world.is_main:
        run_folder.write_json(run_dir / SUMMARY, summary)
        shown = _headline(task, trainer.metric)  # the rest: summary.json, eval_test.json
        echo(f"best epoch {progress.best_epoch}: val {_fmt(summary['val'], shown)}")
        if "test" in summary:
            echo(f"test (best checkpoint): {_fmt(summary['test'], shown)}")
        if config.train.diagnose:
            from rnnzoo.diagnostics import diagnose

            diagnose([run_dir], run_dir)
            echo(f"gradient flow: {run_dir / 'gradient_flow.png'}")
        echo(f"run folder: {run_dir}")


def _say_finished(run_dir: Path, echo: Echo) -> None:
    summary = run_folder.read_json(run_dir / SUMMARY)
    echo(
        f"{run_dir} already finished (best epoch {summary.get('best_epoch')} of "
        f"{summary.get('epochs')}): nothing to resume, nothing changed. To train on, raise "
        "its budget with --set (train.epochs, train.max_steps, train.max_minutes, "
        "train.patience)"
    )


# What --set may change on --resume: how long training goes on, where it runs, where
# the data lives. Anything else would either be silently ignored (the optimiser, the
# schedule and the fitted state come from the checkpoint) or change what is trained.
RESUME_SETTABLE = {
    "train.epochs", "train.max_steps", "train.max_minutes", "train.patience",
    "train.device", "train.num_workers", "train.eval_batch_size", "train.diagnose",
    "output.tensorboard",
}  # fmt: skip


def _check_resume_overrides(overrides: Sequence[str]) -> None:
    for item in overrides:
        key = item.partition("=")[0].strip()
        is_path = key.startswith("data.") and key.rsplit(".", 1)[-1] in ("path", "url")
        if key not in RESUME_SETTABLE and not is_path and key != "task":
            raise ConfigError(
                f"--resume: --set {item} cannot change a run that has started (its model, "
                "optimiser, schedule and data come from its checkpoint)",
                "on resume --set takes " + ", ".join(sorted(RESUME_SETTABLE)) + " and data "
                "paths; for anything else start a new run",
            )


def _restore(trainer: Trainer, state: dict[str, Any], overrides: Sequence[str]) -> None:
    """Load the checkpoint into the trainer; a shape that a ``--set`` changed is refused."""
    try:
        trainer.restore(state)
    except (RuntimeError, KeyError, ValueError) as err:
        changed = ", ".join(f"--set {o}" for o in overrides) or "the checkpoint"
        raise ConfigError(
            f"--resume: the checkpoint does not fit the model ({changed}): "
            f"{str(err).splitlines()[0]}",
            "a run resumes with the shapes it was trained with; start a new run to change them",
        ) from None


def _check_fits(config: Config, task: Task, device: torch.device) -> None:
    """Refuse a model whose training state cannot fit in memory, before allocating it.

    The model is built on the meta device (shapes, no memory) to count its parameters;
    training in float32 holds about four copies (weights, gradients, two Adam moments)."""
    try:
        with torch.device("meta"):
            probe = build_model(config.model, task.io)
    except RnnzooError:
        raise
    except Exception:  # a model that cannot be built on meta is checked by its real build
        return
    n = sum(p.numel() for p in probe.parameters())
    need, free = 16 * n, available_memory_bytes(device)
    if free is not None and need > free:
        raise ResourceError(
            f"the model has {n:,} parameters: training needs about {need / 2**30:.1f} GiB "
            f"(weights, gradients, optimiser state), {device} has {free / 2**30:.1f} GiB free",
            "lower model.hidden_size or model.num_layers (or the vocabulary size)",
        )


def _load_task_state(task: Task, run_dir: Path) -> None:
    """What the task fitted on train (a tokenizer, a scaler), checked against run.json."""
    run_folder.verify_state(run_dir)
    try:
        task.load_state(run_dir)
    except RnnzooError:
        raise
    except Exception as err:
        raise CheckpointError(
            f"{run_dir}: the task's saved state cannot be read ({type(err).__name__}: "
            f"{str(err).splitlines()[0] if str(err) else ''}); the run folder was modified",
            "restore the file, or train the run again",
        ) from None


def load_run(
    run_dir: Path,
    which: str = "best",
    data_path: Path | None = None,
    overrides: Sequence[str] = (),
) -> tuple[Config, Task, nn.Module]:
    """Rebuild config, task and model (with the checkpoint's weights) from a run folder.

    ``overrides`` (``key=value``) may change how the model is used, not its weights
    (``model.beam_width=4``)."""
    run_folder.check_run(run_dir)
    state = checkpoint.load(run_folder.verify(run_dir, f"checkpoints/{which}.pt"))
    raw = state["config"]
    if data_path is not None:
        overrides = [*overrides, f"data.path={data_path}"]
    if overrides:
        raw = apply_overrides(raw, list(overrides))
    config = parse_config(raw, str(run_dir), overrides)
    task = TASKS.get(config.task)(config.data)
    _load_task_state(task, run_dir)
    model = build_model(config.model, task.io)
    try:
        model.load_state_dict(state["model"])
    except RuntimeError:
        raise CheckpointError(
            f"{run_dir}/checkpoints/{which}.pt does not fit the model its config builds; "
            "the run folder was modified"
        ) from None
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
    details = task.report(model, split, dev, size)  # per-class scores, say
    name = f"eval_{split}" if beam_width is None else f"eval_{split}_beam{beam_width}"
    scores = {"split": split, "checkpoint": which, **metrics, **details}
    figures = task.figures(model, split, run_dir, dev) if plots else {}
    run_folder.write_all({run_dir / f"{name}.json": run_folder.json_bytes(scores), **figures})
    return metrics


def backtest(
    run_dir: Path,
    split: str = "test",
    which: str = "best",
    data_path: Path | None = None,
    device: str = "auto",
    fine_tune_steps: int | None = None,
    refit_every: int | None = None,
) -> Backtest:
    """A forecasting run's rolling-origin backtest on ``split`` (``rnnzoo.backtest``),
    written as ``backtest_<split>.json`` and ``backtest_<split>.png`` once it has all
    succeeded; the checkpoint is only read."""
    config, task, model = load_run(run_dir, which, data_path)
    request = BacktestRequest(
        run_dir, getattr(config.model, "name"),  # noqa: B009 - every model schema has a name
        config.train, resolve_device(device, World()), split, which,
        fine_tune_steps, refit_every,
    )  # fmt: skip
    result = task.backtest(model, request)
    run_folder.write_all(
        {
            run_dir / f"backtest_{split}.json": run_folder.json_bytes(result.to_json()),
            run_dir / f"backtest_{split}.png": result.figure(),
        }
    )
    return result


def predict(request: PredictRequest, which: str = "best") -> list[str]:
    """The trained model's answers as lines: one per text, a forecast table, or samples."""
    if request.out is not None:
        _check_output_file(request.out)
    _, task, model = load_run(request.run_dir, which)
    return task.predict(model, request)


def _check_output_file(path: Path) -> None:
    """A file ``predict --out`` may write: not a folder, in a folder that exists."""
    if path.is_dir():
        raise ConfigError(f"--out {path} is a folder; give the path of a file to write")
    if not path.parent.is_dir():
        raise ConfigError(
            f"--out {path}: the folder {path.parent} does not exist", "create it first"
        )


# -- run folder files ---------------------------------------------------------------


def _new_run_dir(config: Config, config_path: Path | None) -> Path:
    """Where a new run goes: ``output.dir/output.name``, a folder that does not exist or
    is empty (a generated name gets a suffix rather than collide)."""
    stem = config_path.stem if config_path is not None else config.task
    name = config.output.name or f"{stem}-{dt.datetime.now():%Y%m%d-%H%M%S}"
    run_dir = config.output.dir / name
    if not config.output.name and run_dir.exists():
        run_dir = run_dir.with_name(f"{name}-{time.time_ns() % 10**6:06d}")
    run_folder.check_new(run_dir)
    return run_dir


def _write_run_files(
    run_dir: Path, config: Config, device: torch.device, world: World, task: Task, resumed: bool
) -> None:
    """config.yaml, a session in run.json and (a new run) the task's fitted state, with
    the SHA-256 of each state file so that later commands can trust them."""
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(config.to_yaml())
    session = {
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
        "notes": list(task.notes),  # what the task chose from the data (a split, say)
    }
    run_folder.add_session(run_dir, session)
    if not resumed:
        before = {p for p in run_dir.rglob("*") if p.is_file()}
        task.save_state(run_dir)
        written = sorted(p for p in run_dir.rglob("*") if p.is_file() and p not in before)
        run_folder.record(run_dir, *(str(p.relative_to(run_dir)) for p in written))


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


def _start_line(config: Config, model: nn.Module, device: torch.device, run_dir: Path) -> str:
    """What a run is, in one line: task, model (and cell), size, device, run folder."""
    name = getattr(config.model, "name")  # noqa: B009 - every model schema has a name
    cell = getattr(config.model, "cell", None)  # a baseline has none
    name += f" ({cell})" if cell else ""
    n = sum(p.numel() for p in model.parameters())
    return f"training {config.task}: {name}, {n:,} parameters, {device}, run folder {run_dir}"


def _headline(task: Task, selected: str) -> tuple[str, ...]:
    """The validation metrics the epoch line shows: the task's headline and, if it is not
    among them, the metric the run selects on."""
    shown = task.headline_metrics()
    return shown if selected in shown else (*shown, selected)


def _epoch_logger(
    run_dir: Path, config: Config, echo: Echo, headline: Sequence[str] = ("loss",)
) -> Callable[[dict[str, Any]], None]:
    """Each epoch: a line in metrics.jsonl (every metric), TensorBoard scalars if wanted,
    and a line on screen with the training loss and the ``headline`` validation metrics."""
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
        train = {"loss": record.get("train_loss")}
        val = {k: record[f"val_{k}"] for k in headline if f"val_{k}" in record}
        grad_norm, clipped = record.get("train_grad_norm", 0.0), record.get("train_clipped", 0.0)
        grad = f"grad {grad_norm:.3g} (clipped {clipped:.0%})"
        speed = f" {record['samples_per_s']:.0f} samples/s" if record["samples_per_s"] else ""
        echo(
            f"epoch {record['epoch']}/{epochs}{' (partial)' if record['partial_epoch'] else ''} "
            f"step {record['step']} | train {_fmt(train)} | val {_fmt(val)} | "
            f"{grad} | lr {record['lr']:.2e} | {record['seconds']:.1f}s{speed}"
            + (" *best" if record["best"] else "")
        )

    return log


def _fmt(metrics: dict[str, Any], only: Sequence[str] | None = None) -> str:
    """``name value`` pairs of the float metrics (those in ``only``, in its order)."""
    keys = list(metrics) if only is None else [k for k in only if k in metrics]
    return " ".join(
        f"{k} {metrics[k]:.4g}" for k in keys if isinstance(metrics[k], float) and "/" not in k
    )

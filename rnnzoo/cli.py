"""The ``rnnzoo`` command line. Commands stay thin: each calls a library function.

Exit codes: 0 success, 1 a failure while running (a diverged loss, say), 2 a usage or
config error (one clear message, no traceback), 130 interrupted with Ctrl-C after
saving the state to resume from.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import json
import os
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any

import typer

import rnnzoo
from rnnzoo.errors import ConfigError, RnnzooError, os_error


def _fail(message: str, hint: str | None = None, code: int = 2) -> typer.Exit:
    """Print ``error: message`` (and ``help: hint``) on stderr; the exit to raise."""
    typer.echo(message if code == 130 else f"error: {message}", err=True)  # 130: asked for
    if hint:
        typer.echo(f"help: {hint}", err=True)
    return typer.Exit(code)


@contextlib.contextmanager
def _user_errors() -> Iterator[None]:
    """Every command's errors, mapped once: one or two lines and an exit code, never a
    traceback (``RNNZOO_DEBUG=1`` shows it, for bug reports)."""
    debug = bool(os.environ.get("RNNZOO_DEBUG"))
    try:
        yield
    except (typer.Exit, typer.Abort):
        raise
    except Exception as err:
        if debug:
            traceback.print_exc()
        raise _as_exit(err) from None
    except KeyboardInterrupt:
        if debug:
            traceback.print_exc()
        typer.echo("interrupted: stopped at once; what was saved before stays as it was", err=True)
        raise typer.Exit(130) from None


def _as_exit(err: Exception) -> typer.Exit:
    """Print what went wrong in a line or two; the exit (with its code) to raise."""
    memory_hint = "use a smaller model or batch (model.hidden_size, train.batch_size)"
    if isinstance(err, RnnzooError):
        return _fail(err.message, err.hint, err.exit_code)
    if isinstance(err, OSError):
        error = os_error(err)
        return _fail(error.message, error.hint)
    if isinstance(err, MemoryError) or _is_out_of_memory(err):
        return _fail(
            f"out of memory: {str(err).splitlines()[0] if str(err) else ''}", memory_hint, 1
        )
    where = traceback.extract_tb(err.__traceback__)[-1]
    return _fail(
        f"internal error: {type(err).__name__}: {err} "
        f"({Path(where.filename).name}, line {where.lineno})",
        "this is a bug in rnnzoo: rerun with RNNZOO_DEBUG=1 and report the traceback",
        1,
    )


def _command(*args: Any, **kwargs: Any) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """``app.command`` whose function runs under ``_user_errors``."""

    def register(fn: Callable[..., None]) -> Callable[..., None]:
        @functools.wraps(fn)
        def run(*a: Any, **kw: Any) -> None:
            with _user_errors():
                fn(*a, **kw)

        return app.command(*args, **kwargs)(run)

    return register


def _is_out_of_memory(err: BaseException) -> bool:
    """torch's allocator errors: ``torch.OutOfMemoryError`` or the CPU's RuntimeError."""
    if type(err).__name__ == "OutOfMemoryError":
        return True
    text = str(err)
    return isinstance(err, RuntimeError) and (
        "DefaultCPUAllocator: can't allocate memory" in text or "out of memory" in text
    )


FineTuneSteps = Annotated[
    int | None,
    typer.Option(
        min=1,
        help="Backtest, a neural model: fine-tune a copy for N steps on the windows before "
        "the origin, with the run's optimiser settings (default: not refitted).",
    ),
]
RefitEvery = Annotated[
    int | None,
    typer.Option(min=1, help="Backtest: fine-tune at every K-th origin (default: the horizon)."),
]

app = typer.Typer(
    name="rnnzoo",
    help="A model zoo of recurrent networks: hand-written cells proven equal to torch.nn.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"rnnzoo {rnnzoo.__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    """rnnzoo: recurrent networks written plainly, trained from YAML configs."""
    from rnnzoo.perf import tune_cpu_allocator

    tune_cpu_allocator()  # an application's choice, see rnnzoo/perf.py


@_command()
def train(
    config: Annotated[
        Path | None,
        typer.Option(
            "--config", "-c", help="YAML config file, or a shipped config's name (rnnzoo list)."
        ),
    ] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="Override a config value: key.path=value (repeatable)."),
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="Folder for run folders (default: output.dir).")
    ] = None,
    device: Annotated[
        str | None, typer.Option(help="auto, cpu or cuda (default: train.device).")
    ] = None,
    resume: Annotated[
        Path | None, typer.Option(help="Continue the run in this folder from its last checkpoint.")
    ] = None,
) -> None:
    """Train a model from a config; writes a run folder (config, checkpoints, metrics)."""
    from rnnzoo import runs

    if config is None and resume is None:
        raise ConfigError("give --config FILE, or --resume RUN_DIR")
    if config is not None and resume is not None:
        raise ConfigError("--resume continues a run with its own config; drop --config")
    runs.train(config, set_ or [], out=out, device=device, resume=resume, echo=typer.echo)


@_command("eval")
def eval_(
    run_dir: Annotated[Path, typer.Argument(help="A run folder written by `rnnzoo train`.")],
    split: Annotated[str, typer.Option(help="Which split to score: val or test.")] = "test",
    data_path: Annotated[
        Path | None, typer.Option(help="Read the data from here instead of data.path.")
    ] = None,
    checkpoint: Annotated[str, typer.Option(help="best or last.")] = "best",
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    beam_width: Annotated[
        int | None,
        typer.Option(min=1, help="Sequence-to-sequence: decode with this beam width."),
    ] = None,
    backtest: Annotated[
        bool,
        typer.Option(
            "--backtest",
            help="Forecasting: forecast from every origin of the split and score each "
            "lead time; writes backtest_<split>.json and .png (the same as rnnzoo backtest).",
        ),
    ] = False,
    fine_tune_steps: FineTuneSteps = None,
    refit_every: RefitEvery = None,
) -> None:
    """Score a trained run on a split; prints the metrics and writes eval_<split>.json."""
    from rnnzoo import runs

    _check_checkpoint(checkpoint)
    if backtest:
        if beam_width is not None:
            raise ConfigError("--beam-width does not apply to --backtest (a forecasting run's)")
        _backtest(run_dir, split, checkpoint, data_path, device, fine_tune_steps, refit_every)
        return
    for given, name in ((fine_tune_steps, "--fine-tune-steps"), (refit_every, "--refit-every")):
        if given is not None:
            raise ConfigError(f"{name} applies to a backtest: add --backtest")
    metrics = runs.evaluate(run_dir, split, checkpoint, data_path, device, beam_width=beam_width)
    shown = {"split": split, "checkpoint": checkpoint, "beam_width": beam_width, **metrics}
    typer.echo(json.dumps({k: v for k, v in shown.items() if v is not None}, indent=2))


@_command("backtest")
def backtest_(
    run_dir: Annotated[Path, typer.Argument(help="A forecasting run folder (rnnzoo train).")],
    split: Annotated[str, typer.Option(help="Which split's origins: val or test.")] = "test",
    data_path: Annotated[
        Path | None, typer.Option(help="Read the data from here instead of data.path.")
    ] = None,
    checkpoint: Annotated[str, typer.Option(help="best or last.")] = "best",
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    fine_tune_steps: FineTuneSteps = None,
    refit_every: RefitEvery = None,
) -> None:
    """Forecast from every origin of a split and score each lead time (rnnzoo eval
    --backtest); writes backtest_<split>.json and backtest_<split>.png."""
    _check_checkpoint(checkpoint)
    _backtest(run_dir, split, checkpoint, data_path, device, fine_tune_steps, refit_every)


def _backtest(
    run_dir: Path,
    split: str,
    checkpoint: str,
    data_path: Path | None,
    device: str,
    fine_tune_steps: int | None,
    refit_every: int | None,
) -> None:
    from rnnzoo import runs

    result = runs.backtest(
        run_dir, split, checkpoint, data_path, device, fine_tune_steps, refit_every
    )
    for line in result.table():
        typer.echo(line)
    typer.echo(f"wrote {run_dir / f'backtest_{split}.json'} and backtest_{split}.png")


@_command()
def predict(
    run_dir: Annotated[Path, typer.Argument(help="A run folder written by `rnnzoo train`.")],
    text: Annotated[str | None, typer.Argument(help="The input, e.g. a review.")] = None,
    file: Annotated[
        Path | None,
        typer.Option(
            "--file",
            help="Predict each line of this file instead; a table (.csv .tsv .jsonl "
            ".parquet): each row, written to --out with the predictions added; pos_tagging: "
            "or a .conllu, filled in.",
        ),
    ] = None,
    data_path: Annotated[
        Path | None,
        typer.Option(help="Forecasting: the CSV to forecast from (default: the run's data)."),
    ] = None,
    cutoff: Annotated[
        str | None,
        typer.Option(help="Forecasting: forecast after this date or row (default: the last)."),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            help="Forecasting: the CSV to write (default: RUN_DIR/forecast.csv). "
            "Classification: the table to write for a table --file; pos_tagging: the "
            "tagged .conllu (default: printed)."
        ),
    ] = None,
    top_k: Annotated[
        int | None,
        typer.Option("--top-k", min=1, help="Classification: the K most likely classes."),
    ] = None,
    text_column: Annotated[
        str | None,
        typer.Option(help="Classification: a table --file's text column (default: the run's)."),
    ] = None,
    label: Annotated[
        str | None, typer.Option(help="Generation: the condition, e.g. pos or neg.")
    ] = None,
    max_len: Annotated[
        int | None, typer.Option(min=1, help="Generation and decoding: the longest output.")
    ] = None,
    temperature: Annotated[
        float, typer.Option(min=0.0, help="Generation: sampling temperature; 0 is greedy.")
    ] = 1.0,
    seed: Annotated[
        int | None, typer.Option(help="Generation: random seed, for a repeatable sample.")
    ] = None,
    samples: Annotated[int, typer.Option(min=1, help="Generation: how many samples.")] = 1,
    beam_width: Annotated[
        int | None,
        typer.Option(min=1, help="Sequence-to-sequence: beam width (default: the config's)."),
    ] = None,
    checkpoint: Annotated[str, typer.Option(help="best or last.")] = "best",
) -> None:
    """Run a trained model: a label or tags per text, a decoded sequence, a forecast of
    the next horizon as CSV, or generated text."""
    from rnnzoo import runs
    from rnnzoo.tasks.base import PredictRequest

    _check_checkpoint(checkpoint)
    if text is not None and file is not None:
        raise ConfigError("give a TEXT argument or --file FILE, not both")
    texts = None
    if file is not None and not _is_table(file):
        texts = _read_lines(file)
    elif text is not None:
        if not text.strip():
            raise ConfigError("the TEXT argument is empty", "give the text to predict on")
        texts = [text]
    request = PredictRequest(
        run_dir, texts, data_path, cutoff, out,
        label, max_len, temperature, seed, samples, beam_width, file, top_k, text_column,
    )  # fmt: skip
    lines = runs.predict(request, checkpoint)
    for line in lines:
        typer.echo(line)


def _check_checkpoint(which: str) -> None:
    if which not in ("best", "last"):
        raise ConfigError(f"--checkpoint must be best or last, got {which!r}")


def _is_table(file: Path) -> bool:
    """A --file the task reads as a table rather than as lines of text."""
    from rnnzoo.data.tables import TABLES

    return file.suffix.lower() in TABLES


def _read_lines(file: Path) -> list[str]:
    """The non-blank lines of a predict ``--file`` (undecodable bytes replaced)."""
    if file.is_dir():
        raise ConfigError(f"--file {file} is a folder; give a text file, one input per line")
    try:
        text = file.read_bytes().decode("utf-8", errors="replace")
    except FileNotFoundError:
        raise ConfigError(f"--file {file}: no such file") from None
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        raise ConfigError(f"--file {file} has no text: every line is blank")
    return lines


@_command()
def compare(
    sources: Annotated[
        list[Path],
        typer.Argument(
            help="Config files or shipped config names to train, or finished run folders."
        ),
    ],
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="Override a config value in every config (repeatable)."),
    ] = None,
    seeds: Annotated[int, typer.Option(help="Train each config with seeds 0..N-1.")] = 1,
    budget_minutes: Annotated[
        float | None, typer.Option(help="The same wall time for every run (minutes).")
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="Folder for the comparison (default runs/compare-<time>).")
    ] = None,
) -> None:
    """Train configs with the same seeds and budget; write compare.md and compare.png."""
    import datetime as dt

    from rnnzoo.compare import compare as run_compare

    out = out or Path("runs") / f"compare-{dt.datetime.now():%Y%m%d-%H%M%S}"
    folder = run_compare(sources, set_ or [], seeds, budget_minutes, out, echo=typer.echo)
    typer.echo((folder / "compare.md").read_text())
    typer.echo(f"comparison folder: {folder}")


@_command()
def diagnose(
    run_dirs: Annotated[
        list[Path], typer.Argument(help="Run folders (or a compare folder) to measure.")
    ],
    out: Annotated[
        Path | None, typer.Option(help="Folder for gradient_flow.png (default: the run folder).")
    ] = None,
    checkpoint: Annotated[str, typer.Option(help="best or last.")] = "best",
) -> None:
    """Gradient flow through time, ||d loss / d h_t|| per step, initial and trained."""
    import datetime as dt

    from rnnzoo.diagnostics import diagnose as run_diagnose

    if out is None:
        single = len(run_dirs) == 1 and not (run_dirs[0] / "compare.json").exists()
        out = (
            run_dirs[0] if single else Path("runs") / f"diagnose-{dt.datetime.now():%Y%m%d-%H%M%S}"
        )
    _check_checkpoint(checkpoint)
    results = run_diagnose(run_dirs, out, checkpoint)
    for name, r in results.items():
        flow, clipped = r["trained"], r["clipped_fraction"]
        typer.echo(
            f"{name}: trained ||dL/dh_t|| {flow[0]:.3g} at t=0, {flow[-1]:.3g} at t={len(flow) - 1}"
            + (f"; clipping fired on {clipped:.0%} of steps" if clipped is not None else "")
        )
    typer.echo(f"plot: {out / 'gradient_flow.png'}")


@_command("list")
def list_command() -> None:
    """List the shipped configs and the registered cells, models and tasks, each with
    what it is."""
    from rnnzoo import shipped
    from rnnzoo.cells import CELLS
    from rnnzoo.models import MODELS
    from rnnzoo.tasks import TASKS

    sections = {
        "configs (rnnzoo train --config NAME)": {
            name: shipped.description(config) for name, config in shipped.configs().items()
        },
        **{
            f"{registry.kind}s": {name: _summary(registry.get(name)) for name in registry}
            for registry in (CELLS, MODELS, TASKS)
        },
    }
    for title, entries in sections.items():
        typer.echo(f"{title}:")
        width = max(map(len, entries), default=0)
        for name, text in entries.items():
            typer.echo(f"  {name:<{width}}  {text}".rstrip())


def _summary(obj: object) -> str:
    """The first line of a docstring, as ``rnnzoo list`` shows it."""
    if isinstance(obj, functools.partial):  # a class with arguments fixed (rnn_tanh)
        fixed = ", ".join(f"{k}={v!r}" for k, v in obj.keywords.items())
        return f"{_summary(obj.func)} Here {fixed}."
    doc = inspect.getdoc(obj) or ""
    return doc.partition("\n")[0].replace("``", "")


config_app = typer.Typer(help="The shipped configs: print one to save and edit it.")
app.add_typer(config_app, name="config")


@config_app.command("show")
def config_show(
    name: Annotated[str, typer.Argument(help="A shipped config's name (see rnnzoo list).")],
) -> None:
    """Print a shipped config exactly as shipped: rnnzoo config show imdb_lstm > my.yaml"""
    from rnnzoo import shipped

    with _user_errors():
        text = shipped.find(name).read_bytes()
        typer.echo(text, nl=False)


def main() -> None:
    app()

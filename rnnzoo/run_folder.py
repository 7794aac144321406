"""The files of a run folder that rnnzoo vouches for: run.json, checkpoints, fitted state.

``run.json`` holds the history of the processes that trained the run and the SHA-256 of
every file the run wrote that later commands trust (checkpoints, a fitted tokenizer or
scaler)::

    {"sessions": [{"started": ..., "torch": ..., ...}, ...],
     "files": {"checkpoints/last.pt": "<sha256>", "tokenizer.json": "<sha256>", ...},
     "init_from": {"run": ..., "copied": [...], ...}}   # a run started from another's

``eval``, ``predict`` and ``--resume`` check a file against its digest before reading
it, so a truncated, replaced or hand-edited file is reported as such rather than as a
torch or JSON error. Writers replace files atomically (a temporary file, then a rename).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, BinaryIO

from rnnzoo.errors import CheckpointError, RunFolderError

RUN_JSON = "run.json"


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@contextlib.contextmanager
def atomic_writer(path: Path) -> Iterator[BinaryIO]:
    """A file to write ``path`` through: a temporary file beside it, flushed to disk and
    renamed over ``path`` when the block ends without an error (removed if not).

    A rename within one folder is atomic, so a reader (or a crash) sees either the old
    file or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_atomic(path: Path, data: bytes) -> None:
    with atomic_writer(path) as f:
        f.write(data)


def write_all(files: Mapping[Path, bytes]) -> None:
    """Write several files so that none of them changes unless every one could be
    written: each goes to a temporary file beside it first, and only when all are on
    disk are they renamed into place (a failure before that removes the temporary ones)."""
    staged: list[tuple[str, Path]] = []
    try:
        for path, data in files.items():
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
            staged.append((tmp, path))
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
        for tmp, path in staged:
            os.replace(tmp, path)
    except BaseException:
        for tmp, _ in staged:
            Path(tmp).unlink(missing_ok=True)
        raise


def json_bytes(data: Any) -> bytes:
    return (json.dumps(data, indent=2) + "\n").encode()


def png_bytes(fig: Any) -> bytes:
    """A matplotlib figure as PNG bytes, for ``write_all``; the figure is closed."""
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    try:
        fig.savefig(buffer, format="png", dpi=100)
    finally:
        plt.close(fig)
    return buffer.getvalue()


def write_json(path: Path, data: Any) -> None:
    write_atomic(path, json_bytes(data))


def read_json(path: Path, what: str | None = None) -> Any:
    """A JSON file the run wrote, or a ``CheckpointError`` saying it is missing or broken."""
    name = what or path.name
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RunFolderError(f"{path.parent}: {name} is missing") from None
    except (ValueError, UnicodeDecodeError) as err:
        raise CheckpointError(
            f"{path} is corrupt ({err}); the run folder was modified",
            "restore the file, or train the run again",
        ) from None


def read_jsonl(path: Path) -> list[Any]:
    """The records of a JSON-lines file the run wrote (``metrics.jsonl``), one a line."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise RunFolderError(f"{path.parent}: {path.name} is missing") from None
    records = []
    for number, line in enumerate(lines, start=1):
        try:
            records.append(json.loads(line))
        except ValueError:
            raise CheckpointError(
                f"{path}, line {number}: not valid JSON; the run folder was modified"
            ) from None
    return records


def info(run_dir: Path) -> dict[str, Any]:
    """``run.json`` as a dict (an old run's plain list of sessions is read as one);
    entries besides ``sessions`` and ``files`` (``set_entry``'s) are kept."""
    path = run_dir / RUN_JSON
    if not path.exists():
        return {"sessions": [], "files": {}}
    data = read_json(path)
    if isinstance(data, list):  # written before run.json recorded digests
        return {"sessions": data, "files": {}}
    if not isinstance(data, dict):
        raise CheckpointError(f"{path} is not an rnnzoo run.json; the run folder was modified")
    return {**data, "sessions": data.get("sessions", []), "files": data.get("files", {})}


def add_session(run_dir: Path, session: dict[str, Any]) -> None:
    data = info(run_dir)
    data["sessions"].append(session)
    write_json(run_dir / RUN_JSON, data)


def set_entry(run_dir: Path, key: str, value: Any) -> None:
    """Store ``value`` as run.json's ``key`` (what the run was started from, say)."""
    data = info(run_dir)
    data[key] = value
    write_json(run_dir / RUN_JSON, data)


def record(run_dir: Path, *names: str) -> None:
    """Store the SHA-256 of each named file (relative to ``run_dir``) in run.json."""
    data = info(run_dir)
    for name in names:
        data["files"][name] = sha256(run_dir / name)
    write_json(run_dir / RUN_JSON, data)


def verify(run_dir: Path, name: str, digests: dict[str, str] | None = None) -> Path:
    """The path of ``name`` inside ``run_dir`` once its digest matches run.json's
    (``digests``, when the caller has already read them).

    A file that run.json does not list (a run from before digests) is not checked."""
    path = run_dir / name
    if not path.is_file():
        raise RunFolderError(
            f"{run_dir} has no {name}", "is this a folder written by rnnzoo train?"
        )
    expected = (info(run_dir)["files"] if digests is None else digests).get(name)
    if expected is not None and sha256(path) != expected:
        raise CheckpointError(
            f"{path} was modified or is corrupt: its SHA-256 differs from the one run.json "
            "recorded when it was written",
            "restore the file from a backup, or train the run again",
        )
    return path


def verify_state(run_dir: Path) -> None:
    """Check every recorded file outside ``checkpoints/`` (the task's fitted state)."""
    digests = info(run_dir)["files"]
    for name in digests:
        if not name.startswith("checkpoints/"):
            verify(run_dir, name, digests)


def is_run(run_dir: Path) -> bool:
    return (run_dir / "checkpoints" / "last.pt").is_file()


def check_run(run_dir: Path) -> None:
    """A ``RunFolderError`` unless ``run_dir`` is a folder that ``rnnzoo train`` wrote."""
    if not run_dir.exists():
        raise RunFolderError(f"run folder not found: {run_dir}")
    if not run_dir.is_dir():
        raise RunFolderError(f"{run_dir} is a file, not a run folder")
    if not is_run(run_dir):
        raise RunFolderError(
            f"{run_dir} is not a run folder (it has no checkpoints/last.pt)",
            "give a folder written by rnnzoo train",
        )


def check_new(run_dir: Path) -> None:
    """A ``RunFolderError`` unless a new run may be written into ``run_dir``: it does not
    exist yet, or is an empty folder; its parent is a folder (or can become one)."""
    if run_dir.exists():
        if not run_dir.is_dir():
            raise RunFolderError(f"cannot write a run into {run_dir}: it is a file")
        if any(run_dir.iterdir()):
            hint = (
                f"continue it with: rnnzoo train --resume {run_dir}"
                if is_run(run_dir)
                else "choose another output.name or --out, or empty the folder"
            )
            raise RunFolderError(f"{run_dir} already exists and is not empty", hint)
    for parent in run_dir.parents:
        if parent.exists():
            if not parent.is_dir():
                raise RunFolderError(f"cannot write a run under {parent}: it is a file")
            break

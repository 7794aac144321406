"""The errors a user sees: one type per kind of problem, each with its exit code.

Raise the most specific one where a problem is found, saying what is at fault (the key,
file, line or folder) and, as ``hint``, what to do. The CLI catches ``RnnzooError`` once
and prints ``error: <message>`` and ``help: <hint>``; nothing else is shown unless
``RNNZOO_DEBUG=1``. This module imports nothing of rnnzoo, so every layer can use it.

Exit codes: 2 the user can fix it (a config, a file, a folder, a size), 1 a failure while
running (a diverged loss, a crashed child run), 130 interrupted after saving.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path


class RnnzooError(Exception):
    """Base of every error meant for the user rather than for a traceback."""

    exit_code = 2

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else ""


class ConfigError(RnnzooError, ValueError):
    """A config (file, ``--set`` or command-line option) that cannot be used."""


class UnknownNameError(ConfigError):
    """A name that no registry entry has; the message lists the valid names."""


class DataError(ConfigError):
    """A data file or folder that cannot be read as the task needs (names file and line)."""


class RunFolderError(RnnzooError):
    """A run folder that is missing, not a run, or not in a state for the command."""


class CheckpointError(RunFolderError):
    """A checkpoint or run-folder file that is corrupt, foreign or was modified."""


class OutputError(RnnzooError):
    """A path rnnzoo was asked to write or read that the file system refuses."""


class ResourceError(RnnzooError):
    """A model or batch that cannot fit: the message gives the size and the limit."""


class RunFailed(RnnzooError):
    """A child run (``rnnzoo compare``) failed; its own output says why."""

    exit_code = 1


class TrainingDiverged(RnnzooError):
    """The loss or the gradient became NaN or infinite."""

    exit_code = 1


class Interrupted(RnnzooError):
    """Training stopped on request (Ctrl-C); ``last`` holds the state to resume from."""

    exit_code = 130


_REASONS = {
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.ENOENT: "no such file or folder",
    errno.ENOTDIR: "a part of the path is a file, not a folder",
    errno.EISDIR: "it is a folder, not a file",
    errno.ENOSPC: "no space left on the device",
    errno.EROFS: "the file system is read-only",
    errno.EEXIST: "it already exists",
    errno.ENAMETOOLONG: "the name is too long",
    errno.EDQUOT: "the disk quota is exceeded",
}


def os_error(err: OSError, action: str = "use") -> OutputError:
    """An ``OSError`` as one line: ``cannot <action> <path>: <reason>``."""
    path = err.filename if err.filename is not None else "a file"
    reason = _REASONS.get(err.errno or 0) or err.strerror or str(err)
    hint = None
    if err.errno == errno.ENOSPC:
        hint = "free some space or choose another folder"
    elif err.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        hint = "choose a folder you can write to"
    return OutputError(f"cannot {action} {path}: {reason}", hint)


def read_text(path: str | os.PathLike[str], what: str = "file") -> str:
    """A text file's contents as UTF-8, or a ``ConfigError`` naming the path and why."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{what} {path} is a folder, not a file")
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{what} not found: {path}") from None
    except UnicodeDecodeError as err:
        raise ConfigError(
            f"{path}: not UTF-8 text (byte {err.start}: {err.object[err.start : err.start + 1]!r})",
            "save the file as UTF-8",
        ) from None
    except OSError as err:
        raise os_error(err, "read") from None

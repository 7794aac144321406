"""Labelled texts from a table (.csv .tsv .jsonl .parquet) or a folder of class folders.

A table has a text column (or several, joined) and a label column; a folder has one
subfolder per class holding one text file per example. Either way the result is the
same: texts, their labels as strings, and where each came from (for error messages).
Bytes that are not UTF-8 are replaced with U+FFFD and counted, never fatal.
"""

from __future__ import annotations

import dataclasses
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from rnnzoo.errors import ConfigError, DataError, os_error

TABLES = (".csv", ".tsv", ".jsonl", ".parquet")
REPLACEMENT = "\ufffd"


@dataclasses.dataclass
class Examples:
    """Texts and labels read from one source, with what reading them had to fix."""

    texts: list[str]
    labels: list[str]
    source: Path
    replaced: int = 0  # invalid UTF-8 byte sequences replaced with U+FFFD
    dropped: int = 0  # rows with an empty text or label left out (data.drop_empty)

    def __len__(self) -> int:
        return len(self.texts)

    def subset(self, indices: Sequence[int]) -> Examples:
        return Examples(
            [self.texts[i] for i in indices], [self.labels[i] for i in indices], self.source
        )


def decode(raw: bytes) -> tuple[str, int]:
    """UTF-8 bytes to text, invalid sequences replaced; and how many were replaced (a
    U+FFFD that was in the file as valid UTF-8 is not counted)."""
    text = raw.decode("utf-8", errors="replace")
    return text, text.count(REPLACEMENT) - raw.count(REPLACEMENT.encode())


def read_bytes(path: Path, what: str) -> bytes:
    if path.is_dir():
        raise DataError(f"{what} {path} is a folder; give a table file here")
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{what} not found: {path}") from None
    except OSError as err:
        raise os_error(err, "read") from None


def read_table(path: Path, what: str = "data file") -> tuple[Any, int]:
    """A table file as a pandas DataFrame of strings (empty cells as ""), by extension;
    and the number of invalid UTF-8 sequences replaced."""
    import pandas as pd

    suffix = path.suffix.lower()
    if suffix not in TABLES:
        raise DataError(
            f"{what} {path}: unknown table format {suffix or '(no extension)'!r}",
            f"give a {', '.join(TABLES)} file, or a folder with one subfolder per class",
        )
    if suffix == ".parquet":
        if not path.is_file():
            read_bytes(path, what)  # the same not-found and folder errors as the others
        return _read_parquet(path), 0
    text, replaced = decode(read_bytes(path, what))
    try:
        if suffix == ".jsonl":
            frame = pd.read_json(io.StringIO(text), lines=True, dtype=False)
        else:
            sep = "\t" if suffix == ".tsv" else ","
            frame = pd.read_csv(io.StringIO(text), sep=sep, dtype=str, keep_default_na=False)
    except (ValueError, pd.errors.ParserError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise DataError(f"{what} {path} cannot be read as {suffix[1:]}: {first}") from None
    return frame, replaced


def require_pyarrow(path: Path, doing: str = "reading") -> None:
    """Refuse a .parquet file up front when pyarrow (which pandas needs for it) is missing."""
    try:
        import pyarrow  # noqa: F401 - pandas needs it for parquet
    except ImportError:
        raise ConfigError(
            f"{path}: {doing} .parquet needs pyarrow, which is not installed",
            "pip install pyarrow (or: pip install 'rnnzoo[parquet]')",
        ) from None


def _read_parquet(path: Path) -> Any:
    import pandas as pd

    require_pyarrow(path)
    try:
        return pd.read_parquet(path)
    except (OSError, ValueError) as err:
        raise DataError(f"{path} cannot be read as parquet: {err}") from None


def cell_strings(frame: Any, column: str) -> list[str]:
    """A column's cells as stripped strings; a missing value is ""."""
    return ["" if _missing(v) else str(v).strip() for v in frame[column].tolist()]


def joined_texts(frame: Any, columns: Sequence[str], separator: str) -> list[str]:
    """Each row's text: its ``columns``' non-empty cells joined by ``separator``."""
    parts = [cell_strings(frame, c) for c in columns]
    return [separator.join(p for p in row if p) for row in zip(*parts, strict=True)]


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and value != value)  # NaN


def check_columns(frame: Any, columns: Sequence[str], path: Path, key: str) -> None:
    """A ``DataError`` naming the first of ``columns`` the table lacks, and what it has."""
    have = [str(c) for c in frame.columns]
    for column in columns:
        if column not in have:
            raise DataError(
                f"{path} has no column {column!r} ({key}); its columns: {', '.join(have)}",
                f"set {key} to one of them",
            )


def read_examples(
    path: Path,
    text_columns: Sequence[str],
    label_column: str,
    separator: str = " ",
    drop_empty: bool = False,
    what: str = "data.path",
) -> Examples:
    """The labelled texts of a table or a class-folder tree. An empty text or label is a
    ``DataError`` naming the file and row, or (``drop_empty``) left out and counted."""
    if path.is_dir():
        return _read_folder(path, drop_empty, what)
    frame, replaced = read_table(path, what)
    check_columns(frame, text_columns, path, "data.text_column")
    check_columns(frame, [label_column], path, "data.label_column")
    texts = joined_texts(frame, text_columns, separator)
    labels = cell_strings(frame, label_column)
    keep = []
    for row, (text, label) in enumerate(zip(texts, labels, strict=True), start=1):
        if text and label:
            keep.append(row - 1)
        elif not drop_empty:
            empty = "text" if not text else "label"
            raise DataError(
                f"{path}, row {row} (data rows counted from 1, header not counted): "
                f"the {empty} is empty",
                "fill it in, or set data.drop_empty: true to leave such rows out",
            )
    out = Examples([texts[i] for i in keep], [labels[i] for i in keep], path, replaced)
    out.dropped = len(texts) - len(keep)
    if not out.texts:
        raise DataError(f"{path} has no rows with both a text and a label")
    return out


def _read_folder(root: Path, drop_empty: bool, what: str) -> Examples:
    """One subfolder per class (its name is the label), one text file per example; both
    in sorted order, hidden files and folders skipped."""
    classes = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise DataError(
            f"{what} {root} is a folder without class subfolders",
            "put each class's text files in a subfolder named after the class",
        )
    out = Examples([], [], root)
    for folder in classes:
        files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
        for file in files:
            text, replaced = decode(read_bytes(file, "text file"))
            out.replaced += replaced
            if text.strip():
                out.texts.append(text.strip())
                out.labels.append(folder.name)
            elif drop_empty:
                out.dropped += 1
            else:
                raise DataError(
                    f"{file}: the text is empty",
                    "remove the file, or set data.drop_empty: true to leave such files out",
                )
    if not out.texts:
        raise DataError(f"{what} {root}: its class folders hold no text files")
    return out


def class_names(labels: Sequence[str]) -> list[str]:
    """The distinct labels in a stable order: by value when all are integers, else by text."""
    distinct = set(labels)
    if all(_is_int(label) for label in distinct):
        return sorted(distinct, key=int)
    return sorted(distinct)


def _is_int(text: str) -> bool:
    return text.lstrip("+-").isdigit()


def stratified_split(
    labels: Sequence[str], fractions: Sequence[float], seed: int
) -> list[list[int]]:
    """Row indices for a seeded, stratified split: one list per fraction (in order),
    then the rest (train). Each class is cut in the same proportions; a class with at
    least one example per part more than the parts (train keeps one) gets at least one
    example in every part whose fraction is not 0. Indices come back sorted (the file's order)."""
    gen = torch.Generator().manual_seed(seed)
    parts: list[list[int]] = [[] for _ in range(len(fractions) + 1)]
    by_class: dict[str, list[int]] = {}
    for i, label in enumerate(labels):
        by_class.setdefault(label, []).append(i)
    for name in sorted(by_class):
        rows = by_class[name]
        order = [rows[j] for j in torch.randperm(len(rows), generator=gen).tolist()]
        sizes = [round(len(rows) * f) for f in fractions]
        if len(rows) > len(fractions):  # enough for every part and a training example
            sizes = [max(1, s) if f > 0 else 0 for s, f in zip(sizes, fractions, strict=True)]
        while sum(sizes) >= len(rows) and max(sizes) > 0:  # train keeps at least one
            sizes[sizes.index(max(sizes))] -= 1
        start = 0
        for part, size in zip(parts, sizes, strict=False):
            part.extend(order[start : start + size])
            start += size
        parts[-1].extend(order[start:])
    return [sorted(part) for part in parts]

"""Plain text as documents: read a file or a folder of files, split them into parts.

A text file holds documents separated by blank lines (a line with nothing but spaces
counts as blank); a folder holds one document per ``*.txt`` file below it, in sorted
order of their paths. Bytes that are not UTF-8 become U+FFFD, and the reader says how
many. ``split_documents`` deals whole documents to validation and test, or, with too
few documents for that, cuts the text by position.
"""

from __future__ import annotations

import bisect
import itertools
import re
import tarfile
from collections.abc import Sequence
from pathlib import Path

import torch

from rnnzoo.errors import DataError, os_error

_BLANK_LINE = re.compile(r"\n[ \t\f\v]*\n\s*")


def is_imdb(path: Path) -> bool:
    """Whether ``path`` is IMDB's archive (any tarball) or an ``aclImdb/`` folder."""
    if path.is_dir():
        root = path if path.name == "aclImdb" else path / "aclImdb"
        return (root / "train").is_dir()
    return path.is_file() and tarfile.is_tarfile(path)


def read_documents(path: Path, key: str = "data.path") -> tuple[list[str], int]:
    """The documents of a text file or folder, and how many bytes were replaced.

    A missing path, a folder without ``*.txt`` files or a text with nothing but blanks
    is a ``DataError`` naming ``key`` and the path."""
    if not path.exists():
        raise DataError(f"{key}: {path} not found", "give a text file or a folder of .txt files")
    files = sorted(p for p in path.rglob("*.txt") if p.is_file()) if path.is_dir() else [path]
    if not files:
        raise DataError(f"{key}: the folder {path} holds no .txt files")
    docs: list[str] = []
    replaced = 0
    for file in files:
        try:
            raw = file.read_bytes()
        except OSError as err:
            raise os_error(err, "read") from None
        text = raw.decode("utf-8", errors="replace").replace("\r\n", "\n")
        replaced += text.count("\ufffd") - raw.count("\ufffd".encode())
        parts = [text] if path.is_dir() else _BLANK_LINE.split(text)
        docs += [d.strip() for d in parts if d.strip()]
    if not docs:
        raise DataError(f"{key}: {path} holds no text (only blanks)")
    return docs, replaced


def split_documents(
    docs: Sequence[str], fractions: Sequence[float], seed: int
) -> tuple[list[list[str]], bool]:
    """``docs`` dealt into parts: (train, then one part per fraction), and whether the
    text was cut by position rather than by document.

    Each fraction gets that share of the documents (at least one), drawn at random with
    ``seed``, each part in the documents' order. When that leaves a part (training
    included) without a document, the text is cut by position instead, at a blank
    between words: the first share of the characters is train, the last ones the
    parts, in order."""
    if not all(0 < f < 1 for f in fractions):
        raise ValueError(f"fractions must lie in (0, 1), got {list(fractions)}")
    n = len(docs)
    counts = [max(1, round(n * f)) for f in fractions]
    if n - sum(counts) >= 1:
        order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
        parts, start = [], 0
        for count in counts:
            parts.append(sorted(order[start : start + count]))
            start += count
        train = sorted(order[start:])
        return [[docs[i] for i in rows] for rows in [train, *parts]], False
    return _cut_by_position(docs, [1 - sum(fractions), *fractions]), True


def _cut_by_position(docs: Sequence[str], shares: Sequence[float]) -> list[list[str]]:
    """The documents cut at the character offsets that ``shares`` (summing to 1) give,
    each cut moved back to just after the last blank before it in its document (in a
    document without one, it stays where it falls)."""
    offsets = list(itertools.accumulate((len(d) for d in docs), initial=0))  # doc starts
    cuts = []
    for point in itertools.accumulate(shares[:-1]):
        at = round(offsets[-1] * point)
        i = max(bisect.bisect_right(offsets, at) - 1, 0)
        i = min(i, len(docs) - 1)
        local = at - offsets[i]
        blank = max(docs[i].rfind(" ", 0, local), docs[i].rfind("\n", 0, local))
        cuts.append(offsets[i] + blank + 1 if blank >= 0 else at)
    parts: list[list[str]] = [[] for _ in shares]
    for doc, offset in zip(docs, offsets, strict=False):
        edges = [0, *(min(max(c - offset, 0), len(doc)) for c in cuts), len(doc)]
        for k in range(len(shares)):
            piece = doc[edges[k] : edges[k + 1]].strip()
            if piece:
                parts[k].append(piece)
    return parts

"""CoNLL-U treebanks: read sentences with their raw lines, write a tag column back.

A file is kept as its raw lines (line ends included), so that filling one column of
the word lines and joining the lines again leaves every other byte as it was: a file
read and written without changes is byte-identical, CRLF line ends and a missing final
newline included. Bytes that are not UTF-8 survive too (``surrogateescape``).

The ``conllu`` package on PyPI parses the format into token dicts and serialises them
anew; it keeps neither the line numbers an error should name nor the original bytes,
so this small line-based reader does the job instead.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from pathlib import Path

from rnnzoo.errors import DataError, os_error

COLUMNS = ("id", "form", "lemma", "upos", "xpos", "feats", "head", "deprel", "deps", "misc")
WORD_ID = re.compile(r"[1-9][0-9]*")
MULTIWORD_ID = re.compile(r"[1-9][0-9]*-[1-9][0-9]*")
EMPTY_NODE_ID = re.compile(r"(0|[1-9][0-9]*)\.[1-9][0-9]*")


@dataclasses.dataclass
class Sentence:
    """One sentence: its words' forms and the chosen column, and where its word lines are.

    ``word_lines`` index ``Document.lines``; comments, multiword-token lines (``3-4``)
    and empty nodes (``8.1``) stay in the document's lines but are not words.
    """

    forms: list[str]
    tags: list[str]
    word_lines: list[int]
    first_line: int  # 1-based line number of its first line, for messages


@dataclasses.dataclass
class Document:
    """A CoNLL-U file: every raw line (ending included) and the sentences in it."""

    path: Path
    lines: list[str]
    sentences: list[Sentence]

    def text(self) -> str:
        return "".join(self.lines)

    def filled(self, column: str, tags: Sequence[Sequence[str]]) -> str:
        """The file with ``column`` of every word line replaced by ``tags`` (one list
        per sentence), every other line and column unchanged."""
        col = COLUMNS.index(column)
        lines = list(self.lines)
        for sentence, sent_tags in zip(self.sentences, tags, strict=True):
            for index, tag in zip(sentence.word_lines, sent_tags, strict=True):
                body, end = _split_ending(lines[index])
                fields = body.split("\t")
                fields[col] = tag
                lines[index] = "\t".join(fields) + end
        return "".join(lines)


def read(path: Path, column: str = "upos", what: str = "CoNLL-U file") -> Document:
    """Parse the CoNLL-U file at ``path``, taking the tags from ``column``.

    A malformed line (not 10 tab-separated columns, a bad or out-of-order ID) is a
    ``DataError`` naming ``path:line``; a missing file one naming ``what``.
    """
    if path.is_dir():
        raise DataError(f"{what} {path} is a folder; give a .conllu file")
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{what} not found: {path}") from None
    except OSError as err:
        raise os_error(err) from None
    return parse(raw.decode("utf-8", errors="surrogateescape"), path, column)


def parse(text: str, path: Path, column: str = "upos") -> Document:
    """``read`` on text already in memory (``path`` names it in messages)."""
    col = COLUMNS.index(column)
    lines = _raw_lines(text)
    sentences: list[Sentence] = []
    current: Sentence | None = None
    for index, line in enumerate(lines):
        body, _ = _split_ending(line)
        where = f"{path}:{index + 1}"
        if not body.strip():
            if current is not None and current.forms:  # comments alone: kept, no sentence
                sentences.append(current)
            current = None
            continue
        if current is None:
            current = Sentence([], [], [], index + 1)
        if body.startswith("#"):
            continue
        fields = body.split("\t")
        if len(fields) != len(COLUMNS):
            raise DataError(
                f"{where}: expected 10 tab-separated columns, found {len(fields)}",
                "CoNLL-U word lines have ID, FORM, LEMMA, UPOS, XPOS, FEATS, HEAD, "
                "DEPREL, DEPS, MISC separated by tabs",
            )
        token_id = fields[0]
        if MULTIWORD_ID.fullmatch(token_id) or EMPTY_NODE_ID.fullmatch(token_id):
            continue
        if not WORD_ID.fullmatch(token_id):
            raise DataError(
                f"{where}: bad ID {token_id!r}",
                "an ID is a word number (1, 2, ...), a range (3-4) or an empty node (8.1)",
            )
        expected = len(current.forms) + 1
        if int(token_id) != expected:
            raise DataError(f"{where}: word ID {token_id} where {expected} was expected")
        current.forms.append(fields[1])
        current.tags.append(fields[col])
        current.word_lines.append(index)
    if current is not None and current.forms:
        sentences.append(current)
    return Document(path, lines, sentences)


def _raw_lines(text: str) -> list[str]:
    """Lines with their ``\\n`` kept (only ``\\n`` ends a line, as in the format)."""
    lines = [part + "\n" for part in text.split("\n")]
    lines[-1] = lines[-1][:-1]  # the text after the last "\n": maybe empty
    return lines if lines[-1] else lines[:-1]


def _split_ending(line: str) -> tuple[str, str]:
    """A raw line as (its content, its ending: ``\\r\\n``, ``\\n`` or nothing)."""
    for end in ("\r\n", "\n"):
        if line.endswith(end):
            return line[: -len(end)], end
    return line, ""

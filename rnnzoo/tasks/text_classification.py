"""Text classification on the user's own data: a table of texts and labels, or a folder
with one subfolder per class (many-to-one, binary or multi-class).

Validation and test are the files ``data.val_path`` and ``data.test_path`` or, without
them, a seeded, stratified split of ``data.path``. The class names, their training
counts and the class weights are fitted on train and kept in the run (``classes.json``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import Field, model_validator
from torch import Tensor

from rnnzoo import run_folder
from rnnzoo.errors import ConfigError, DataError
from rnnzoo.tasks.base import TASKS
from rnnzoo.tasks.text import TextClassification, TokenizerKeys

PLACEHOLDER = "SET_ME"  # a shipped config's data.path until the user gives theirs
IMBALANCE = 2.0  # above this largest:smallest class ratio, select on macro-F1
STATE = "classes.json"


class TableData(TokenizerKeys):
    """The ``data:`` keys of ``task: text_classification``."""

    path: Path = Field(
        description=".csv .tsv .jsonl .parquet (by extension), or a folder with one "
        "subfolder per class holding one text file per example"
    )
    text_column: str | list[str] = Field("text", description="tables: a column, or several")
    text_separator: str = Field(" ", description="joins the cells of several text columns")
    label_column: str = Field("label", description="tables: strings or integers")
    val_path: Path | None = Field(None, description="null: a stratified split of path")
    test_path: Path | None = Field(None, description="null: a stratified split of path")
    val_fraction: float = Field(0.1, gt=0, lt=1, description="of path, without val_path")
    test_fraction: float = Field(0.1, ge=0, lt=1, description="of path, without test_path")
    seed: int = Field(0, description="of the split")
    drop_empty: bool = Field(False, description="leave out rows with an empty text or label")
    class_weights: Literal["balanced"] | None = Field(
        None, description="balanced: weigh class c by n / (k * count_c) in the loss"
    )

    @model_validator(mode="after")
    def _fractions_leave_a_train_split(self) -> TableData:
        carved = (self.val_path is None) * self.val_fraction + (
            self.test_path is None
        ) * self.test_fraction
        if carved >= 1:
            raise ValueError("val_fraction + test_fraction must leave some of path to train on")
        if isinstance(self.text_column, list) and not self.text_column:
            raise ValueError("text_column: give a column, or a list of at least one")
        return self


@TASKS.register("text_classification")
class TextClassificationTask(TextClassification):
    """Classify texts from a table or class folders into the labels they carry."""

    Data = TableData

    def __init__(self, data: Any) -> None:
        super().__init__(data)
        self._raw: dict[str, Any] | None = None  # split -> tables.Examples
        self._labelled: dict[str, tuple[list[str], Tensor]] = {}
        self.class_counts: list[int] = []

    @property
    def text_columns(self) -> list[str]:
        column = self.data.text_column
        return [column] if isinstance(column, str) else list(column)

    @property
    def text_separator(self) -> str:
        return str(self.data.text_separator)

    # -- reading ----------------------------------------------------------------------

    def _splits(self) -> dict[str, Any]:
        """Every split's texts and label strings: the files given, the rest carved out
        of ``data.path`` (stratified by label, seeded by ``data.seed``)."""
        from rnnzoo.data.tables import stratified_split

        if self._raw is None:
            d = self.data
            if str(d.path) == PLACEHOLDER:
                raise ConfigError(
                    "data.path is not set: this config needs your table or folder of texts",
                    "add --set data.path=FILE --set data.text_column=COLUMN "
                    "--set data.label_column=COLUMN",
                )
            raw = {"train": self._read(d.path, "data.path")}
            given = {"val": d.val_path, "test": d.test_path}
            for split, path in given.items():
                if path is not None:
                    raw[split] = self._read(path, f"data.{split}_path")
            carve = [s for s in ("val", "test") if given[s] is None]
            fractions = [d.val_fraction if s == "val" else d.test_fraction for s in carve]
            *parts, train = stratified_split(raw["train"].labels, fractions, d.seed)
            for split, rows in zip(carve, parts, strict=True):
                raw[split] = raw["train"].subset(rows)
            raw["train"] = raw["train"].subset(train)
            self._raw = raw
        return self._raw

    def _read(self, path: Path, key: str) -> Any:
        from rnnzoo.data.tables import read_examples

        d = self.data
        examples = read_examples(
            path, self.text_columns, d.label_column, d.text_separator, d.drop_empty, key
        )
        if examples.replaced:
            self.notes.append(
                f"{path}: {examples.replaced} invalid UTF-8 byte sequence(s) replaced with U+FFFD"
            )
        if examples.dropped:
            self.notes.append(
                f"{path}: {examples.dropped} row(s) with an empty text or label left out "
                "(data.drop_empty)"
            )
        return examples

    def examples(self, split: str) -> tuple[list[str], Tensor]:
        self.check_split(split)
        if split not in self._labelled:
            part = self._splits()[split]
            ids = {name: i for i, name in enumerate(self.classes)}
            unseen = sorted({label for label in part.labels if label not in ids})
            if unseen:
                raise DataError(
                    f"{part.source}: label {unseen[0]!r} ({split}) never occurs in the "
                    f"training data; its classes: {', '.join(self.classes)}"
                    + (f" ({len(unseen)} unseen labels in all)" if len(unseen) > 1 else ""),
                    "fix the label, or add examples of that class to the training data",
                )
            labels = torch.tensor([ids[label] for label in part.labels], dtype=torch.long)
            self._labelled[split] = (part.texts, labels)
        return self._labelled[split]

    def has_split(self, split: str) -> bool:
        return split in self.splits and len(self._splits()[split]) > 0

    # -- fitted on train ----------------------------------------------------------------

    def prepare(self) -> None:
        """Classes, their counts and weights from train; every split read and checked
        now, so that a bad row or label stops the run before it writes anything."""
        from rnnzoo.data.tables import class_names

        splits = self._splits()
        self.classes = class_names(splits["train"].labels)
        if len(self.classes) < 2:
            raise DataError(
                f"{self.data.path}: the training data has one class only "
                f"({self.classes[0]!r}); a classifier needs two or more"
            )
        labels = splits["train"].labels
        self.class_counts = [labels.count(name) for name in self.classes]
        self._fit_weights()
        self._choose_metric(note=True)
        for split in ("val", "test"):
            self.examples(split)  # unseen labels are an error now, not after training
        sizes = ", ".join(f"{s} {len(splits[s])}" for s in self.splits)
        self.notes.append(f"{len(self.classes)} classes; texts: {sizes}")
        super().prepare()

    def _fit_weights(self) -> None:
        """scikit-learn's "balanced" weights, n / (k * count_c), or none."""
        if self.data.class_weights != "balanced":
            self.class_weights = None
            return
        counts = torch.tensor(self.class_counts, dtype=torch.float32)
        self.class_weights = counts.sum() / (len(counts) * counts)

    def _choose_metric(self, note: bool) -> None:
        """Accuracy, or macro-F1 when the largest class outnumbers the smallest > 2:1."""
        big, small = max(self.class_counts), min(self.class_counts)
        self.metric = "macro_f1" if big > IMBALANCE * small else "accuracy"
        if note and self.metric == "macro_f1":
            most = self.classes[self.class_counts.index(big)]
            least = self.classes[self.class_counts.index(small)]
            self.notes.append(
                f"classes are imbalanced {big / small:.1f}:1 in training ({most!r} {big}, "
                f"{least!r} {small}): train.metric defaults to macro_f1"
            )

    def save_state(self, run_dir: Path) -> None:
        super().save_state(run_dir)
        state = {"classes": self.classes, "train_counts": self.class_counts}
        run_folder.write_json(run_dir / STATE, state)

    def load_state(self, run_dir: Path) -> None:
        super().load_state(run_dir)
        state = run_folder.read_json(run_dir / STATE)
        self.classes = [str(c) for c in state["classes"]]
        self.class_counts = [int(n) for n in state["train_counts"]]
        self._fit_weights()
        self._choose_metric(note=False)

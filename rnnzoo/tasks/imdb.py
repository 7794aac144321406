"""IMDB review sentiment (Maas et al. 2011): text classification, many-to-one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from pydantic import Field
from torch import Tensor

from rnnzoo.config import Section
from rnnzoo.errors import DataError
from rnnzoo.tasks.base import TASKS, Task
from rnnzoo.tasks.text import TextClassification, TokenizerKeys


class ReviewData(Section):
    """The ``data:`` keys of every task on IMDB's reviews: where they are, the split."""

    path: Path | None = Field(
        None, description="aclImdb_v1.tar.gz, an aclImdb/ folder, or a partial tarball"
    )
    download: bool = Field(True, description="fetch the official archive if no copy is found")
    val_fraction: float = Field(0.2, gt=0, lt=1, description="of train, seeded")
    seed: int = 0
    cache: bool = Field(True, description="keep parsed reviews in ~/.cache/rnnzoo")


class ReviewSplits(Task):
    """A task on IMDB's reviews: train, a seeded validation part of it, and test, each
    read once (``ReviewData`` says from where)."""

    def __init__(self, data: Any) -> None:
        super().__init__(data)
        self._splits: dict[str, list[Any]] = {}

    def _reviews(self, split: str) -> list[Any]:
        from rnnzoo.data import imdb

        self.check_split(split)
        if split not in self._splits:
            d = self.data
            source = imdb.find_source(d.path, d.download)
            if split == "test":
                self._splits["test"] = imdb.load_split(source, "test", d.cache)
            else:
                reviews = imdb.load_split(source, "train", d.cache)
                train, val = imdb.train_val_split(reviews, d.val_fraction, d.seed)
                self._splits.update(train=train, val=val)
        return self._splits[split]

    def has_split(self, split: str) -> bool:

        try:
            self._reviews(split)
        except DataError:
            return False
        return True


@TASKS.register("imdb")
class IMDBTask(ReviewSplits, TextClassification):
    """IMDB review sentiment (Maas et al. 2011): positive or negative (many-to-one).

    Text classification (``rnnzoo.tasks.text``) with IMDB's reader: its folder layout is
    one subfolder per class (``neg``, ``pos``)."""

    class Data(TokenizerKeys, ReviewData):
        pass

    metric = "accuracy"

    def __init__(self, data: Any) -> None:
        super().__init__(data)
        self.classes = ["negative", "positive"]  # as rnnzoo.data.imdb labels them: 0, 1

    def examples(self, split: str) -> tuple[list[str], Tensor]:
        reviews = self._reviews(split)
        return [r.text for r in reviews], torch.tensor([r.label for r in reviews])

    def clean(self, text: str) -> str:
        from rnnzoo.data.imdb import clean

        return clean(text.encode())

"""IMDB review sentiment (Maas et al. 2011): text classification, many-to-one."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

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
    val_split: Literal["movie", "random"] = Field(
        "movie",
        description="movie: whole movies held out (needs the url files), random: single reviews",
    )
    seed: int = 0
    cache: bool = Field(True, description="keep parsed reviews in ~/.cache/rnnzoo")


class ReviewSplits(Task):
    """A task on IMDB's reviews: train, a seeded validation part of it, and test, each
    read once (``ReviewData`` says from where).

    Validation holds whole movies by default (``rnnzoo.data.imdb.train_val_split``), as
    test does: its reviews share no movie with the training part. A copy without the
    url files (``aclImdb/train/urls_{pos,neg}.txt``) falls back to single reviews, and
    the run's notes say so."""

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
                by_movie = d.val_split == "movie"
                train, val = imdb.train_val_split(reviews, d.val_fraction, d.seed, by_movie)
                self._splits.update(train=train, val=val)
                self.notes.append(_split_note(source, train, val, by_movie))
        return self._splits[split]

    def has_split(self, split: str) -> bool:

        try:
            self._reviews(split)
        except DataError:
            return False
        return True


def _split_note(source: Path, train: list[Any], val: list[Any], by_movie: bool) -> str:
    """The run's line on how validation was drawn."""
    from rnnzoo.data.imdb import grouped

    share = f"{len(val):,} of {len(train) + len(val):,} training reviews"
    if by_movie and grouped(train + val):
        movies = len({r.movie for r in val})
        return f"validation: {share}, {movies:,} whole movies (none of them in training)"
    if by_movie:
        return (
            f"validation: {share} drawn at random, not by movie: {source} lacks "
            "aclImdb/train/urls_pos.txt and urls_neg.txt for some reviews, so reviews of "
            "one movie may sit on both sides (validation then flatters the model)"
        )
    return f"validation: {share} drawn at random (data.val_split: random)"


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

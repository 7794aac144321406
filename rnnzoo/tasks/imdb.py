"""IMDB review sentiment (Maas et al. 2011): text classification, many-to-one."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor
from torch.utils.data import Dataset

from rnnzoo.config import Section
from rnnzoo.data.batches import Batch
from rnnzoo.errors import DataError
from rnnzoo.tasks.base import TASKS, ModelIO, Sums, Task


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
class IMDBTask(ReviewSplits):
    """IMDB review sentiment (Maas et al. 2011): positive or negative (many-to-one)."""

    class Data(ReviewData):
        tokenizer: Literal["word", "bpe"] = "word"
        vocab_size: int = Field(20_000, ge=10)
        min_frequency: int = Field(2, ge=1)
        max_len: int = Field(256, ge=1, description="tokens kept per review")
        truncation: Literal["head", "tail", "head_tail"] = "head"
        bucket: int = Field(50, ge=1, description="batches per length-sorted chunk (1: off)")

    metric = "accuracy"
    headline = ("loss", "accuracy")
    modes: ClassVar[dict[str, Literal["min", "max"]]] = {
        "loss": "min", "accuracy": "max", "pad_fraction": "min",
    }  # fmt: skip
    labels = ("negative", "positive")

    def __init__(self, data: Any) -> None:
        super().__init__(data)
        self.tokenizer: Any = None

    def prepare(self) -> None:
        from rnnzoo.data.text import fit_tokenizer

        d = self.data
        texts = [r.text for r in self._reviews("train")]
        self.tokenizer = fit_tokenizer(texts, d.tokenizer, d.vocab_size, d.min_frequency)

    def save_state(self, run_dir: Path) -> None:
        from rnnzoo.data.text import save_tokenizer

        save_tokenizer(self.tokenizer, run_dir / "tokenizer.json")

    def load_state(self, run_dir: Path) -> None:
        from rnnzoo.data.text import load_tokenizer

        self.tokenizer = load_tokenizer(run_dir / "tokenizer.json")

    def dataset(self, split: str) -> Dataset[Batch]:
        from rnnzoo.data.batches import TokenBatches

        reviews = self._reviews(split)
        labels = torch.tensor([r.label for r in reviews])
        seqs = self._encode([r.text for r in reviews])
        return TokenBatches(seqs, labels, bucket=self.data.bucket if split == "train" else 1)

    def _encode(self, texts: list[str]) -> list[Tensor]:
        from rnnzoo.data.text import encode

        if self.tokenizer is None:
            raise RuntimeError("the tokenizer is not fitted: call prepare() or load_state()")
        return encode(self.tokenizer, texts, self.data.max_len, self.data.truncation)

    @property
    def io(self) -> ModelIO:
        if self.tokenizer is None:
            raise RuntimeError("the tokenizer is not fitted: call prepare() or load_state()")
        return ModelIO(input_size=0, output_size=2, vocab_size=self.tokenizer.get_vocab_size())

    @property
    def nominal_io(self) -> ModelIO:
        return ModelIO(input_size=0, output_size=2, vocab_size=self.data.vocab_size)

    def loss(self, output: Tensor, batch: Batch) -> Tensor:
        return F.cross_entropy(output, batch.targets)

    def metrics(self, output: Tensor, batch: Batch) -> Sums:
        correct = (output.argmax(dim=-1) == batch.targets).sum()
        n = torch.tensor(len(batch), device=output.device)
        assert batch.lengths is not None
        cells = batch.inputs.numel()
        padded = torch.tensor(cells, device=output.device) - batch.lengths.sum()
        return {
            "accuracy": (correct, n),
            "pad_fraction": (padded, torch.tensor(cells, device=output.device)),
        }

    def show(self, output: Tensor) -> str:
        p = torch.softmax(output.float(), dim=-1)
        label = int(p.argmax())
        return f"{self.labels[label]} (p={float(p[label]):.3f})"

    def inputs_from_text(self, texts: list[str]) -> Batch:
        from rnnzoo.data.batches import TokenBatches
        from rnnzoo.data.imdb import clean

        seqs = self._encode([clean(t.encode()) for t in texts])
        data = TokenBatches(seqs, torch.zeros(len(seqs), dtype=torch.long))
        return data.__getitems__(list(range(len(seqs))))

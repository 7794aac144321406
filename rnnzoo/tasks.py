"""Tasks: each owns its data, loss, metrics and how a prediction is shown.

The trainer sees only this interface, so it never branches on the task. Metrics are
returned as (sum, count) pairs per batch, which add up exactly across batches and
across processes before the division.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor
from torch.utils.data import Dataset

from rnnzoo.config import ConfigError, Section
from rnnzoo.data.batches import Batch, TensorBatches
from rnnzoo.data.synthetic import adding_problem
from rnnzoo.registry import Registry

Sums = dict[str, tuple[Tensor, Tensor]]
"""Metric name -> (sum over the batch, number of items summed)."""


@dataclasses.dataclass(frozen=True)
class ModelIO:
    """What a task tells the model builder: feature size in (or, for token ids, the
    vocabulary size), size of the output."""

    input_size: int
    output_size: int
    vocab_size: int | None = None


class Task:
    """Base of all tasks. Subclasses set ``Data`` (their ``data:`` schema) and override
    ``dataset``, ``io``, ``loss`` and ``metrics``."""

    Data: ClassVar[type[Section]]
    metric: ClassVar[str]
    """Default validation metric for model selection and early stopping."""
    modes: ClassVar[dict[str, Literal["min", "max"]]]
    """Every metric this task reports ("loss" included), and whether lower is better."""
    splits: ClassVar[tuple[str, ...]] = ("train", "val", "test")

    def __init__(self, data: Any) -> None:
        self.data = data

    def dataset(self, split: str) -> Dataset[Batch]:
        raise NotImplementedError

    @property
    def io(self) -> ModelIO:
        raise NotImplementedError

    @property
    def nominal_io(self) -> ModelIO:
        """The sizes as the config alone gives them, before any data is read (a token
        task's vocabulary at its configured maximum): enough to check a model builds."""
        return self.io

    def loss(self, output: Tensor, batch: Batch) -> Tensor:
        """Mean loss of the batch, a scalar to minimise."""
        raise NotImplementedError

    def metrics(self, output: Tensor, batch: Batch) -> Sums:
        raise NotImplementedError

    def show(self, output: Tensor) -> str:
        """One sample's prediction as a person reads it."""
        return ", ".join(f"{v:.4g}" for v in output.flatten().tolist())

    # -- state fitted on the training split (a tokenizer, a scaler), kept in the run --

    def prepare(self) -> None:
        """Fit whatever the task learns from training data; before the model is built."""

    def save_state(self, run_dir: Path) -> None:
        """Write what ``prepare`` fitted into the run folder."""

    def load_state(self, run_dir: Path) -> None:
        """Read it back, instead of ``prepare``, when a run is rebuilt or resumed."""

    def inputs_from_text(self, texts: list[str]) -> Batch:
        """A batch for ``rnnzoo predict``; tasks without text input say so."""
        raise ConfigError(f"task {type(self).__name__} does not take text to predict from")

    def has_split(self, split: str) -> bool:
        """Whether this copy of the data holds ``split`` (a partial archive may not)."""
        return split in self.splits

    def check_split(self, split: str) -> None:
        if split not in self.splits:
            valid = ", ".join(self.splits)
            raise ConfigError(f"unknown split {split!r}; this task has: {valid}")


TASKS: Registry[type[Task]] = Registry("task")


@TASKS.register("adding")
class AddingTask(Task):
    """The adding problem: regress the sum of the two marked values (many-to-one)."""

    class Data(Section):
        seq_len: int = Field(100, ge=2, description="T, steps per sequence")
        n_train: int = Field(10_000, ge=1)
        n_val: int = Field(1_000, ge=1)
        n_test: int = Field(1_000, ge=1)
        seed: int = 0

    metric = "mse"
    modes: ClassVar[dict[str, Literal["min", "max"]]] = {"loss": "min", "mse": "min", "mae": "min"}

    def dataset(self, split: str) -> Dataset[Batch]:
        self.check_split(split)
        d = self.data
        size = {"train": d.n_train, "val": d.n_val, "test": d.n_test}[split]
        # One independent stream per split, fixed by the seed: same config, same data.
        offset = self.splits.index(split)
        gen = torch.Generator().manual_seed(d.seed * len(self.splits) + offset)
        inputs, targets = adding_problem(size, d.seq_len, gen)
        return TensorBatches(inputs, targets)

    @property
    def io(self) -> ModelIO:
        return ModelIO(input_size=2, output_size=1)

    def loss(self, output: Tensor, batch: Batch) -> Tensor:
        return F.mse_loss(output, batch.targets)

    def metrics(self, output: Tensor, batch: Batch) -> Sums:
        err = (output.detach().float() - batch.targets).flatten()
        n = torch.tensor(err.numel(), device=err.device)
        return {"mse": (err.square().sum(), n), "mae": (err.abs().sum(), n)}

    def show(self, output: Tensor) -> str:
        return f"sum of the marked values: {output.item():.4f}"


@TASKS.register("imdb")
class IMDBTask(Task):
    """IMDB review sentiment (Maas et al. 2011): positive or negative (many-to-one)."""

    class Data(Section):
        path: Path | None = Field(
            None, description="aclImdb_v1.tar.gz, an aclImdb/ folder, or a partial tarball"
        )
        download: bool = Field(True, description="fetch the official archive if no copy is found")
        val_fraction: float = Field(0.2, gt=0, lt=1, description="of train, seeded")
        seed: int = 0
        tokenizer: Literal["word", "bpe"] = "word"
        vocab_size: int = Field(20_000, ge=10)
        min_frequency: int = Field(2, ge=1)
        max_len: int = Field(256, ge=1, description="tokens kept per review")
        truncation: Literal["head", "tail", "head_tail"] = "head"
        bucket: int = Field(50, ge=1, description="batches per length-sorted chunk (1: off)")
        cache: bool = Field(True, description="keep parsed reviews in ~/.cache/rnnzoo")

    metric = "accuracy"
    modes: ClassVar[dict[str, Literal["min", "max"]]] = {
        "loss": "min", "accuracy": "max", "pad_fraction": "min",
    }  # fmt: skip
    labels = ("negative", "positive")

    def __init__(self, data: Any) -> None:
        super().__init__(data)
        self.tokenizer: Any = None
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
        from rnnzoo.data.imdb import DataError

        try:
            self._reviews(split)
        except DataError:
            return False
        return True

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


def list_tasks() -> list[str]:
    return TASKS.names()

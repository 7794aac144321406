"""Tasks: each owns its data, loss, metrics and how a prediction is shown.

The trainer sees only this interface, so it never branches on the task. Metrics are
returned as (sum, count) pairs per batch, which add up exactly across batches and
across processes before the division.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, NamedTuple

import torch
from pydantic import Field
from torch import Tensor, nn
from torch.utils.data import Dataset

from rnnzoo.config import Section
from rnnzoo.data.batches import Batch
from rnnzoo.errors import ConfigError
from rnnzoo.registry import Registry

if TYPE_CHECKING:
    from rnnzoo.backtest import Backtest, BacktestRequest

Sums = dict[str, tuple[Tensor, Tensor]]
"""Metric name -> (sum over the batch, number of items summed)."""


Output = Literal["one", "per_step", "horizon", "sequence", "next_token", "language_model"]


@dataclasses.dataclass(frozen=True)
class ModelIO:
    """What a task tells the model builder: feature size in (or, for token ids, the
    vocabulary size), size of the output, and its shape (``output``):

    * ``one``: a vector per sequence, (B, output_size);
    * ``per_step``: one per input step, (B, T, output_size);
    * ``horizon``: the next ``horizon`` steps, (B, horizon, output_size), from a window
      of ``input_len`` steps;
    * ``sequence``: an output sequence of its own length, up to ``max_output_len``
      tokens from a vocabulary of ``output_size`` (sequence-to-sequence);
    * ``next_token``: scores of the next token at each step, (B, T, output_size),
      given a condition, one of ``num_conditions`` classes (a conditional generator);
    * ``language_model``: scores of the next token at each step, (B, T, output_size),
      from (B, T) token ids alone, the model's state carried from batch to batch.

    ``char_vocab_size``: token inputs that also spell each word, (B, T, 1 + C): the
    word id, then the ids of its C characters (0: padding); None: plain ids (B, T).
    ``season``: a forecasting task's seasonal period (1: none), for models that use one.
    ``inputs``: what the input values mean where sizes alone do not say (a forecasting
    task's columns, transform and scaler), so that a model built from other runs (an
    ensemble) can check they read what it reads.
    """

    input_size: int
    output_size: int
    vocab_size: int | None = None
    input_len: int | None = None
    horizon: int | None = None
    output: Output = "one"
    max_output_len: int | None = None
    num_conditions: int | None = None
    char_vocab_size: int | None = None
    season: int | None = None  # steps per season of a series (data.season), for forecasters
    inputs: str | None = None


class TargetLogProbs(NamedTuple):
    """What a model whose softmax is cheaper with the targets in hand (an adaptive
    softmax) returns while training: the log-probability of each target token.

    log_prob: (B, T), the same shape as the batch's targets. Scoring passes no targets,
    and such a model then returns full (B, T, V) log-probabilities instead.
    """

    log_prob: Tensor

    def float(self) -> TargetLogProbs:  # the trainer calls output.float()
        return TargetLogProbs(self.log_prob.float())


class QuantileForecast(NamedTuple):
    """What a forecaster with ``model.quantiles`` returns: a forecast per quantile level.

    values: (B, H, C, Q), ascending along Q (the models sort it, so levels never cross);
    levels: the Q quantile levels, strictly increasing, each in (0, 1).
    """

    values: Tensor
    levels: tuple[float, ...]

    def float(self) -> QuantileForecast:  # the trainer calls output.float()
        return QuantileForecast(self.values.float(), self.levels)

    @property
    def median(self) -> Tensor:
        """The point forecast, (B, H, C): the level nearest 0.5 (of two, the lower)."""
        return self.values[..., median_index(self.levels)]


def median_index(levels: tuple[float, ...]) -> int:
    """Index of the level nearest 0.5 (of two as near, the lower one)."""
    # rounded: 0.7 - 0.5 < 0.5 - 0.3 in floating point
    return min(range(len(levels)), key=lambda i: (round(abs(levels[i] - 0.5), 9), i))


class Decoded(NamedTuple):
    """What a ``sequence`` model returns: scores and the chosen tokens, position by position.

    logits: (B, U, V) the model's scores at each output position (with targets: of the
        teacher-forced pass; decoding: along the chosen sequence, zeros after its EOS);
    tokens: (B, U) with targets: the best token at each position; decoding: the chosen
        sequence, EOS included, pad (0) after it. Pad and BOS are never chosen.
    """

    logits: Tensor
    tokens: Tensor

    def float(self) -> Decoded:  # the trainer calls output.float()
        return Decoded(self.logits.float(), self.tokens)


@dataclasses.dataclass
class PredictRequest:
    """What ``rnnzoo predict`` was given; each task uses the parts it understands."""

    run_dir: Path
    texts: list[str] | None = None
    data_path: Path | None = None
    cutoff: str | None = None
    out: Path | None = None
    label: str | None = None  # a generator's condition ("pos")
    max_len: int | None = None  # longest output to generate or decode
    temperature: float = 1.0  # sampling; 0 is greedy
    seed: int | None = None  # sampling: the same seed gives the same text
    samples: int = 1  # how many to generate
    beam_width: int | None = None  # decoding; None: the run's config
    file: Path | None = None  # --file as given, for a task that reads it whole (a table, a .conllu)
    top_k: int | None = None  # classification: print the K most likely classes
    text_column: str | None = None  # a table --file's text column; None: the run's


class Task:
    """Base of all tasks. Subclasses set ``Data`` (their ``data:`` schema) and override
    ``dataset``, ``io``, ``loss`` and ``metrics``."""

    Data: ClassVar[type[Section]]
    metric: str
    """Default validation metric for model selection and early stopping (a task may
    choose it in ``prepare``, from the data, as an instance attribute)."""
    modes: ClassVar[dict[str, Literal["min", "max"]]]
    """Every metric this task reports ("loss" included), and whether lower is better."""
    headline: ClassVar[tuple[str, ...]] = ()
    """The validation metrics the per-epoch line shows, a handful (every metric goes to
    metrics.jsonl); empty: ``loss`` and ``metric``. One the task does not report is left out."""
    splits: ClassVar[tuple[str, ...]] = ("train", "val", "test")

    def __init__(self, data: Any) -> None:
        self.data = data
        self.notes: list[str] = []
        """What ``prepare`` found worth saying (a choice it made from the data, bytes it
        replaced); ``rnnzoo train`` prints each once before training."""

    def headline_metrics(self) -> tuple[str, ...]:
        """``headline``, or by default the loss and the selection metric."""
        return self.headline or ("loss", self.metric)

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

    def loss_weight(self, batch: Batch) -> Tensor | int:
        """How many terms ``loss`` averages over in ``batch``: a split's loss is their
        mean however it is batched. Sequences by default; a task whose loss is a mean
        over valid tokens counts those."""
        return len(batch)

    def metrics(self, output: Tensor, batch: Batch) -> Sums:
        raise NotImplementedError

    def finish(self, means: dict[str, float]) -> dict[str, float]:
        """Metrics derived from the reduced means (an RMSE from an MSE, say)."""
        return means

    def show(self, output: Tensor) -> str:
        """One sample's prediction as a person reads it."""
        return ", ".join(f"{v:.4g}" for v in output.flatten().tolist())

    # -- state fitted on the training split (a tokenizer, a scaler), kept in the run --

    def prepare(self) -> None:
        """Fit whatever the task learns from training data (keeping what ``adopt_state``
        took from another run); before the model is built."""

    def save_state(self, run_dir: Path) -> None:
        """Write what ``prepare`` fitted into the run folder."""

    def load_state(self, run_dir: Path) -> None:
        """Read it back, instead of ``prepare``, when a run is rebuilt or resumed."""

    def adopt_state(self, run_dir: Path) -> None:
        """Take the part of another run's fitted state that this run can share, before
        ``prepare`` (``model.init_from``: a text task's tokenizer, so that token ids mean
        the words the copied weights learned); ``prepare`` then fits only the rest.

        Nothing by default: most fitted state belongs to its own data (a forecast's
        scaler), so a task shares only what it says it can. Raise a ``RunFolderError``
        when ``run_dir`` lacks what this task needs."""

    def inputs_from_text(self, texts: list[str]) -> Batch:
        """A batch for ``rnnzoo predict``; tasks without text input say so."""
        raise ConfigError(f"task {type(self).__name__} does not take text to predict from")

    missing_text: ClassVar[str] = "give a text to predict from, or --file with one text per line"
    """What ``rnnzoo predict`` says when a text-reading task is given none."""

    @torch.no_grad()
    def predict(self, model: nn.Module, request: PredictRequest) -> list[str]:
        """``rnnzoo predict``: the model's answers, one line each (default: per text)."""
        if request.file is not None and request.texts is None:
            raise ConfigError(
                f"--file {request.file}: this task reads a text file, one input per line, "
                "not a table"
            )
        if not request.texts:
            raise ConfigError(self.missing_text)
        batch = self.inputs_from_text(request.texts)
        model.eval()
        return self.answer(model, batch, request)

    def answer(self, model: nn.Module, batch: Batch, request: PredictRequest) -> list[str]:
        """The lines ``predict`` prints for a batch of texts: ``show`` of each row."""
        return [self.show(row) for row in model(batch.inputs, batch.lengths)]

    def figures(
        self, model: nn.Module, split: str, run_dir: Path, device: torch.device
    ) -> dict[Path, bytes]:
        """Plots that ``rnnzoo eval`` writes next to its scores, as PNG bytes by path
        (``run_folder.png_bytes``), written together with the scores; none by default."""
        return {}

    def report(
        self, model: nn.Module, split: str, device: torch.device, batch_size: int
    ) -> dict[str, Any]:
        """Details that ``rnnzoo eval`` adds to ``eval_<split>.json`` beside the metrics
        (per-class scores, say); none by default. Called before ``figures``."""
        return {}

    def backtest(self, model: nn.Module, request: BacktestRequest) -> Backtest:
        """``rnnzoo eval --backtest``: errors against lead time from every origin of a
        split (``rnnzoo.backtest``); a forecasting task's alone."""
        raise ConfigError(
            f"{request.run_dir} is not a forecasting run: backtests are for forecasting "
            "runs (task: forecast)"
        )

    def has_split(self, split: str) -> bool:
        """Whether this copy of the data holds ``split`` (a partial archive may not)."""
        return split in self.splits

    def check_split(self, split: str) -> None:
        if split not in self.splits:
            valid = ", ".join(self.splits)
            raise ConfigError(f"unknown split {split!r}; this task has: {valid}")


class GeneratedSplits(Section):
    """The ``data:`` keys every generated task shares: split sizes and the seed."""

    n_train: int = Field(10_000, ge=1)
    n_val: int = Field(1_000, ge=1)
    n_test: int = Field(1_000, ge=1)
    seed: int = 0


def split_stream(task: Task, split: str) -> tuple[int, torch.Generator]:
    """Size of a generated split and its own random stream, fixed by ``data.seed``:
    same config, same data, and no split shares draws with another."""
    task.check_split(split)
    d = task.data
    size = {"train": d.n_train, "val": d.n_val, "test": d.n_test}[split]
    offset = task.splits.index(split)
    return size, torch.Generator().manual_seed(d.seed * len(task.splits) + offset)


TASKS: Registry[type[Task]] = Registry("task")


def list_tasks() -> list[str]:
    return TASKS.names()

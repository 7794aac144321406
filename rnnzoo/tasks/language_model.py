"""Language modelling on any text: the next word (or character) at every step.

The model every RNN course ends with (char-rnn; PyTorch's examples/word_language_model):
the text of a split is one token stream, cut into as many parallel streams as a batch
has rows and read in ``bptt``-step chunks (``rnnzoo.data.streams.TextStream``), the
model's state carried from one chunk to the next and detached (truncated
backpropagation through time; ``rnnzoo.models.language_model``).

Text (``data.path``):

* a text file: documents separated by blank lines;
* a folder: every ``*.txt`` file below it, in sorted order, one document each;
* IMDB's ``aclImdb_v1.tar.gz`` or ``aclImdb/`` (told apart by the layout): the training
  text is the training part of IMDB's train split and its 50,000 unlabeled reviews
  (``aclImdb/train/unsup``), validation the validation part: whole movies, as
  ``task: imdb`` draws it with the same ``val_fraction`` and ``seed`` (so a classifier
  initialised from this model is selected on reviews the model never read). IMDB's
  test split is never read.

Validation and test are ``val_path`` / ``test_path`` or, without them, a seeded share
of the documents (``val_fraction``, ``test_fraction``; ``test_fraction: 0``: no test
split). With too few documents to give every split whole ones (fewer than 3, say) the
text is cut by position instead, the last shares going to validation and test; the run's
notes say so.

Tokens: ``word`` (lowercased words and punctuation), ``bpe`` or ``char`` (every
character, spaces and newlines included, case kept), fitted on the training text only
and saved in the run as ``tokenizer.json`` (the file a text classifier reads, so that
one can start from this model). Every document starts with ``[EOS]`` and the stream
ends with one, so the model learns where a text ends. Tokens rarer than
``min_frequency`` become ``[UNK]``.

Scores, per predicted token: ``loss`` (mean cross-entropy, nats), ``perplexity`` =
exp(loss) of the split's summed cross-entropy, ``bits_per_token`` = loss / ln 2, and
for characters the same as ``bits_per_char``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, ClassVar, Literal, Protocol, cast

import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from torch import Tensor, nn

from rnnzoo.config import Section
from rnnzoo.data.batches import Batch
from rnnzoo.errors import ConfigError, DataError
from rnnzoo.tasks.base import TASKS, ModelIO, PredictRequest, Sums, TargetLogProbs, Task
from rnnzoo.tasks.text_classification import PLACEHOLDER

VAL_FRACTION = 0.1  # of the documents, without val_path
TEST_FRACTION = 0.1
MAX_LEN = 100  # tokens ``predict`` writes without --max-len


def _or(value: float | None, default: float) -> float:
    return default if value is None else value


class Generates(Protocol):
    """What ``predict`` needs of a model (``rnnzoo.models.language_model``'s interface)."""

    def generate(
        self,
        prompt: Tensor,
        samples: int,
        max_len: int,
        temperature: float = 1.0,
        generator: torch.Generator | None = None,
        stop: int | None = None,
    ) -> Tensor: ...


class LanguageModelData(Section):
    """The ``data:`` keys of ``task: language_model``."""

    path: Path = Field(
        description="a text file (documents separated by blank lines), a folder of .txt "
        "files (one document each), or IMDB's aclImdb_v1.tar.gz or aclImdb/ folder"
    )
    val_path: Path | None = Field(None, description="null: a seeded share of path")
    test_path: Path | None = Field(None, description="null: a seeded share of path")
    val_fraction: float | None = Field(
        None, gt=0, lt=1, description="of the documents, without val_path; null: 0.1, "
        "for IMDB 0.2 of its train reviews (whole movies), as task imdb's",
    )  # fmt: skip
    test_fraction: float | None = Field(
        None, ge=0, lt=1, description="of the documents, without test_path (0: no test "
        "split); null: 0.1, for IMDB 0 (its test reviews are never read)",
    )  # fmt: skip
    seed: int = Field(0, description="of the split")
    tokenizer: Literal["word", "bpe", "char"] = "word"
    vocab_size: int = Field(20_000, ge=10, description="special tokens included")
    min_frequency: int = Field(2, ge=1, description="rarer tokens become [UNK]")
    lowercase: bool | None = Field(None, description="null: true for word and bpe, false for char")
    bptt: int = Field(35, ge=1, description="steps per training chunk (truncated BPTT)")
    cache: bool = Field(True, description="IMDB: keep parsed reviews in ~/.cache/rnnzoo")

    @model_validator(mode="after")
    def _fractions_leave_a_train_split(self) -> LanguageModelData:
        val = 0.0 if self.val_path is not None else (self.val_fraction or VAL_FRACTION)
        test = 0.0 if self.test_path is not None else _or(self.test_fraction, TEST_FRACTION)
        if val + test >= 1:
            raise ValueError("val_fraction + test_fraction must leave some of path to train on")
        return self


@TASKS.register("language_model")
class LanguageModelTask(Task):
    """Language modelling on any text: the next word or character, state carried on."""

    Data = LanguageModelData
    metric = "perplexity"
    modes: ClassVar[dict[str, Literal["min", "max"]]] = {
        "loss": "min", "perplexity": "min", "bits_per_token": "min", "bits_per_char": "min",
    }  # fmt: skip

    def __init__(self, data: Any) -> None:
        super().__init__(data)
        self.tokenizer: Any = None
        self._docs: dict[str, list[str]] | None = None  # split -> documents
        self._datasets: dict[str, Any] = {}  # split -> TextStream, one stream
        self._imdb: bool | None = None

    def headline_metrics(self) -> tuple[str, ...]:
        bits = "bits_per_char" if self.data.tokenizer == "char" else "bits_per_token"
        return ("loss", "perplexity", bits)

    # -- reading ----------------------------------------------------------------------

    def _is_imdb(self) -> bool:
        from rnnzoo.data.documents import is_imdb

        if self._imdb is None:
            self._imdb = is_imdb(self.data.path)
        return self._imdb

    def _documents(self) -> dict[str, list[str]]:
        """Every split's documents, read once; a split the data has none of is absent."""
        if self._docs is None:
            d = self.data
            if str(d.path) == PLACEHOLDER:
                raise ConfigError(
                    "data.path is not set: this config needs your text",
                    "add --set data.path=FILE (a text file, a folder of .txt files, or "
                    "aclImdb_v1.tar.gz)",
                )
            docs = self._imdb_documents() if self._is_imdb() else self._text_documents()
            for split, given in (("val", d.val_path), ("test", d.test_path)):
                if given is not None:
                    docs[split] = self._read(given, f"data.{split}_path")
            self._docs = docs
        return self._docs

    def _read(self, path: Path, key: str) -> list[str]:
        from rnnzoo.data.documents import read_documents

        docs, replaced = read_documents(path, key)
        if replaced:
            self.notes.append(f"{path}: {replaced} invalid UTF-8 byte(s) replaced with U+FFFD")
        return docs

    def _text_documents(self) -> dict[str, list[str]]:
        """``data.path``'s documents, validation and test carved out where not given."""
        from rnnzoo.data.documents import split_documents

        d = self.data
        docs = self._read(d.path, "data.path")
        fractions = {
            "val": 0.0 if d.val_path is not None else (d.val_fraction or VAL_FRACTION),
            "test": 0.0 if d.test_path is not None else _or(d.test_fraction, TEST_FRACTION),
        }
        carve = [s for s in ("val", "test") if fractions[s] > 0]
        if not carve:
            return {"train": docs}
        (train, *parts), by_position = split_documents(docs, [fractions[s] for s in carve], d.seed)
        if by_position:
            shares = " and ".join(f"{fractions[s]:.0%} for {s}" for s in carve)
            self.notes.append(
                f"{d.path}: {len(docs)} document(s), too few to give every split whole "
                f"ones: the text is cut by position instead, the last {shares}"
            )
        for split, part in zip(["train", *carve], [train, *parts], strict=True):
            if not part:
                raise DataError(
                    f"data.path: {d.path} has too little text to split into train, val "
                    f"and test (the {split} part is empty)",
                    "give more text, or data.val_path / data.test_path",
                )
        return {"train": train, **dict(zip(carve, parts, strict=True))}

    def _imdb_documents(self) -> dict[str, list[str]]:
        """IMDB: train = the training part and the unlabeled reviews, val = the
        validation part (whole movies); the test split is never read."""
        from rnnzoo.data import imdb
        from rnnzoo.tasks.imdb import ReviewData

        d = self.data
        if d.test_fraction:
            raise ConfigError(
                f"data.test_fraction: {d.path} is IMDB, whose test reviews are kept for "
                "the classifiers and never read here",
                "set data.test_fraction to 0 (or null), or give data.test_path",
            )
        reviews = imdb.load_split(d.path, "train", d.cache)
        val: list[Any] = []
        if d.val_path is None:
            fraction = d.val_fraction or ReviewData.model_fields["val_fraction"].default
            reviews, val = imdb.train_val_split(reviews, fraction, d.seed)
        try:
            unsup = imdb.load_split(d.path, "unsup", d.cache)
        except DataError:  # a partial copy: the labelled reviews alone
            unsup = []
            self.notes.append(f"{d.path} has no unlabeled reviews (aclImdb/train/unsup)")
        how = "whole movies" if imdb.grouped(reviews + val) else "drawn at random (no url files)"
        self.notes.append(
            f"IMDB: training text {len(reviews):,} train and {len(unsup):,} unlabeled "
            f"reviews; validation {len(val):,} train reviews, {how}; test reviews not read"
        )
        docs = {"train": [r.text for r in reviews + unsup if r.text.strip()]}
        if val:
            docs["val"] = [r.text for r in val if r.text.strip()]
        return docs

    def has_split(self, split: str) -> bool:
        return split in self.splits and bool(self._documents().get(split))

    # -- fitted on train ----------------------------------------------------------------

    def prepare(self) -> None:
        """The tokenizer, fitted on the training documents; every split read and encoded
        now, so that a bad path or an empty split stops the run before it writes."""
        from rnnzoo.data.text import EOS, fit_tokenizer

        d = self.data
        docs = self._documents()
        self.tokenizer = fit_tokenizer(
            docs["train"], d.tokenizer, d.vocab_size, d.min_frequency, d.lowercase, [EOS]
        )
        sizes = [f"{s} {len(self.dataset(s).tokens):,}" for s in self.splits if s in docs]
        vocab = self.tokenizer.get_vocab_size()
        self.notes.append(f"tokens ({d.tokenizer}, vocabulary {vocab:,}): {', '.join(sizes)}")

    def save_state(self, run_dir: Path) -> None:
        from rnnzoo.data.text import save_tokenizer

        save_tokenizer(self._fitted(), run_dir / "tokenizer.json")

    def load_state(self, run_dir: Path) -> None:
        from rnnzoo.data.text import EOS, load_tokenizer

        self.tokenizer = load_tokenizer(run_dir / "tokenizer.json")
        if self.tokenizer.token_to_id(EOS) is None:
            raise ValueError(f"the tokenizer has no {EOS} token")

    def _fitted(self) -> Any:
        if self.tokenizer is None:
            raise RuntimeError("the tokenizer is not fitted: call prepare() or load_state()")
        return self.tokenizer

    # -- data -------------------------------------------------------------------------

    def dataset(self, split: str) -> Any:
        """The split's tokens as one stream (``batched`` cuts it into a batch's rows)."""
        from rnnzoo.data.streams import TextStream
        from rnnzoo.data.text import encode_documents

        self.check_split(split)
        if split not in self._datasets:
            docs = self._documents().get(split)
            if not docs:
                why = (
                    "IMDB's test reviews are never read by a language model"
                    if self._is_imdb()
                    else "data.test_fraction is 0 and data.test_path is not set"
                )
                raise DataError(f"this run has no {split} split: {why}")
            tokens = encode_documents(self._fitted(), docs)
            self._datasets[split] = TextStream(tokens, self.data.bptt, name=split)
        return self._datasets[split]

    @property
    def io(self) -> ModelIO:
        return self._io(self._fitted().get_vocab_size())

    @property
    def nominal_io(self) -> ModelIO:
        return self._io(self.data.vocab_size)

    @staticmethod
    def _io(vocab_size: int) -> ModelIO:
        return ModelIO(
            input_size=0, output_size=vocab_size, vocab_size=vocab_size, output="language_model"
        )

    # -- loss and metrics: per predicted token --------------------------------------

    def loss(self, output: Tensor | TargetLogProbs, batch: Batch) -> Tensor:
        """Mean cross-entropy over every token of the batch; output: (B, T, V) scores,
        or the targets' log-probabilities (an adaptive softmax while training)."""
        if isinstance(output, TargetLogProbs):
            return -output.log_prob.mean()
        return F.cross_entropy(output.flatten(0, 1), batch.targets.flatten())

    def loss_weight(self, batch: Batch) -> int:
        return batch.targets.numel()

    def metrics(self, output: Tensor, batch: Batch) -> Sums:
        return {}  # the loss is the cross-entropy; ``finish`` derives the rest from it

    def finish(self, means: dict[str, float]) -> dict[str, float]:
        """Perplexity and bits from the split's mean cross-entropy per token (the loss,
        weighted by tokens: the summed cross-entropy over the count)."""
        if "loss" in means:
            ce = means["loss"]
            means["perplexity"] = math.exp(ce) if ce < 700 else math.inf
            means["bits_per_token"] = ce / math.log(2)
            if self.data.tokenizer == "char":
                means["bits_per_char"] = means["bits_per_token"]
        return means

    # -- generation -------------------------------------------------------------------

    @torch.no_grad()
    def predict(self, model: nn.Module, request: PredictRequest) -> list[str]:
        """``rnnzoo predict RUN [PROMPT]``: the prompt and its sampled continuation.

        Without a prompt the text starts as a new document (after ``[EOS]``). Sampling
        stops at ``[EOS]`` or after ``max_len`` tokens (default 100); ``temperature`` 0
        is greedy; the same ``seed`` gives the same text. Each of ``samples`` texts is
        printed under a header line when there are several; a ``--file`` is one prompt
        per line."""
        from rnnzoo.data.text import EOS, decode

        if request.label is not None:
            raise ConfigError("--label: a language model takes no condition; give a prompt")
        if request.file is not None and request.texts is None:
            raise ConfigError(
                f"--file {request.file}: a language model reads prompts from a text file, "
                "one per line, not a table"
            )
        if request.out is not None:
            raise ConfigError("--out: the samples are printed; redirect them to a file")
        tok, kind = self._fitted(), self.data.tokenizer
        eos = tok.token_to_id(EOS)
        generator = torch.Generator()
        if request.seed is None:
            generator.seed()  # a fresh sample every time
        else:
            generator.manual_seed(request.seed)
        model.eval()
        lines: list[str] = []
        for prompt in request.texts or [""]:
            ids = torch.tensor([eos, *tok.encode(prompt).ids], dtype=torch.long)
            rows = cast(Generates, model).generate(
                ids, request.samples, request.max_len or MAX_LEN, request.temperature,
                generator, stop=eos,
            )  # fmt: skip
            for i, row in enumerate(rows.tolist()):
                row = row[: row.index(eos)] if eos in row else row
                text = decode(tok, row, kind)
                space = " " if prompt and text and kind != "char" else ""
                if request.samples > 1:
                    lines.append(f"--- sample {i + 1}/{request.samples} ---")
                lines.append(prompt + space + text)
        return lines

"""Character-level review openings conditioned on sentiment: one-to-many (issue 8).

One input, the label, and many outputs: the characters of a review's opening. The
data are IMDB's reviews (``rnnzoo.data.imdb``), cut to their first ``max_chars``
characters; the character vocabulary is fitted on the training split and kept in the
run folder as ``chars.json``.

Token ids: 0 pad, 1 BOS (start), 2 EOS (the review ended within ``max_chars``; a cut
opening has none), 3 UNK (a character outside the vocabulary), then the characters,
most frequent first.

A batch packs the condition with the characters, so that the model takes one tensor:

* ``inputs`` (B, 1 + T) long: column 0 is the condition (0 neg, 1 pos), then BOS and
  the first T - 1 characters of each opening (teacher forcing);
* ``targets`` (B, T) long: the characters to predict at each step, EOS last where the
  review ended; 0 (pad) after each row's end, ignored by the loss;
* ``lengths`` (B,): valid steps T_i of each row, counted over the T steps after column 0.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal, Protocol, cast

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn
from torch.nn.utils.rnn import pad_sequence
from torch.utils.data import Dataset

from rnnzoo.data.batches import Batch, TokenBatches
from rnnzoo.errors import ConfigError
from rnnzoo.tasks.base import TASKS, ModelIO, PredictRequest, Sums
from rnnzoo.tasks.imdb import ReviewData, ReviewSplits

PAD, BOS, EOS, UNK = 0, 1, 2, 3
SPECIALS = ("<pad>", "<bos>", "<eos>", "<unk>")
LABELS = ("neg", "pos")  # condition ids 0 and 1, as rnnzoo.data.imdb labels reviews
ALIASES = {"negative": "neg", "positive": "pos"}


class Generates(Protocol):
    """What ``predict`` needs of a model (``rnnzoo.models.generator``'s interface)."""

    def generate(
        self,
        conditions: Tensor,
        max_len: int,
        temperature: float = 1.0,
        generator: torch.Generator | None = None,
        *,
        prompt: Tensor | None = None,
        start: int = BOS,
        stop: int | None = EOS,
    ) -> Tensor: ...


class CharVocab:
    """Characters to ids and back; ids below ``len(SPECIALS)`` are the special tokens."""

    def __init__(self, chars: Sequence[str]) -> None:
        self.chars = list(chars)
        self.ids = {c: i for i, c in enumerate(self.chars, start=len(SPECIALS))}

    @classmethod
    def fit(cls, texts: Sequence[str], vocab_size: int, min_frequency: int) -> CharVocab:
        """The ``vocab_size - 4`` most frequent characters seen ``min_frequency`` times
        or more; ties go to the smaller code point, so a fit is repeatable."""
        counts = Counter(c for text in texts for c in text)
        ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
        keep = [c for c, n in ranked if n >= min_frequency][: vocab_size - len(SPECIALS)]
        return cls(keep)

    def __len__(self) -> int:
        return len(SPECIALS) + len(self.chars)

    def encode(self, text: str) -> list[int]:
        return [self.ids.get(c, UNK) for c in text]

    def decode(self, ids: Sequence[int]) -> str:
        """Text up to the first EOS or pad; UNK shows as U+FFFD."""
        out = []
        for i in ids:
            if i in (PAD, EOS):
                break
            if i >= len(SPECIALS):
                out.append(self.chars[i - len(SPECIALS)])
            elif i == UNK:
                out.append("\ufffd")
        return "".join(out)

    def save(self, path: Path) -> None:
        path.write_text(json.dumps({"specials": list(SPECIALS), "chars": self.chars}))

    @classmethod
    def load(cls, path: Path) -> CharVocab:
        if not path.is_file():
            raise ConfigError(f"{path} is missing: the run folder has no character vocabulary")
        raw = json.loads(path.read_text())
        if raw.get("specials") != list(SPECIALS):
            raise ConfigError(f"{path}: expected special tokens {list(SPECIALS)}")
        return cls(raw["chars"])


class OpeningBatches(TokenBatches):
    """Review openings (character ids, EOS included where the review ended) and their
    labels, packed per batch as the module docstring says; ``lengths`` and ``bucket``
    let the sampler batch similar lengths together."""

    def __getitems__(self, indices: Sequence[int]) -> Batch:
        seqs = [self.seqs[i] for i in indices]
        bos = torch.tensor([BOS])
        steps = pad_sequence([torch.cat([bos, s[:-1]]) for s in seqs], batch_first=True)  # (B, T)
        targets = pad_sequence(seqs, batch_first=True)  # (B, T), pad id 0
        conditions = self.labels[torch.as_tensor(indices, dtype=torch.long)]
        inputs = torch.cat([conditions[:, None], steps], dim=1)  # (B, 1 + T)
        lengths = torch.tensor([len(s) for s in seqs], dtype=torch.long)
        return Batch(inputs.long(), targets.long(), lengths)


@TASKS.register("review_generation")
class ReviewGenerationTask(ReviewSplits):
    """Write the opening of a positive or negative movie review, character by character."""

    class Data(ReviewData):
        max_chars: int = Field(256, ge=1, description="characters kept from each review's start")
        vocab_size: int = Field(128, ge=len(SPECIALS) + 1, description="special tokens included")
        min_frequency: int = Field(10, ge=1, description="rarer characters become UNK")
        bucket: int = Field(50, ge=1, description="batches per length-sorted chunk (1: off)")

    metric = "ce"
    headline = ("loss", "bits_per_char", "perplexity")
    modes: ClassVar[dict[str, Literal["min", "max"]]] = {
        "loss": "min", "ce": "min", "bits_per_char": "min", "perplexity": "min",
    }  # fmt: skip

    def __init__(self, data: Any) -> None:
        super().__init__(data)
        self.vocab: CharVocab | None = None

    def prepare(self) -> None:
        d = self.data
        openings = [r.text[: d.max_chars] for r in self._reviews("train")]
        self.vocab = CharVocab.fit(openings, d.vocab_size, d.min_frequency)

    def save_state(self, run_dir: Path) -> None:
        self._fitted().save(run_dir / "chars.json")

    def load_state(self, run_dir: Path) -> None:
        self.vocab = CharVocab.load(run_dir / "chars.json")

    def _fitted(self) -> CharVocab:
        if self.vocab is None:
            raise RuntimeError("the vocabulary is not fitted: call prepare() or load_state()")
        return self.vocab

    def encode(self, texts: Sequence[str]) -> list[Tensor]:
        """Each text's opening as ids: (T_i,), EOS last if the text fits in max_chars."""
        vocab, n = self._fitted(), self.data.max_chars
        return [
            torch.tensor(vocab.encode(t[:n]) + ([EOS] if len(t) <= n else []), dtype=torch.long)
            for t in texts
        ]

    def dataset(self, split: str) -> Dataset[Batch]:
        reviews = self._reviews(split)
        labels = torch.tensor([r.label for r in reviews], dtype=torch.long)
        seqs = self.encode([r.text for r in reviews])
        return OpeningBatches(seqs, labels, bucket=self.data.bucket)

    @property
    def io(self) -> ModelIO:
        return self._io(len(self._fitted()))

    @property
    def nominal_io(self) -> ModelIO:
        return self._io(self.data.vocab_size)

    @staticmethod
    def _io(vocab_size: int) -> ModelIO:
        return ModelIO(
            input_size=0, vocab_size=vocab_size, output_size=vocab_size,
            output="next_token", num_conditions=len(LABELS),
        )  # fmt: skip

    # -- loss and metrics: per character, padding ignored ---------------------------

    def loss(self, output: Tensor, batch: Batch) -> Tensor:
        """Mean cross-entropy over the batch's valid characters; output: (B, T, V)."""
        return F.cross_entropy(output.flatten(0, 1), batch.targets.flatten(), ignore_index=PAD)

    def loss_weight(self, batch: Batch) -> Tensor:
        return (batch.targets != PAD).sum()

    def metrics(self, output: Tensor, batch: Batch) -> Sums:
        nll = F.cross_entropy(
            output.flatten(0, 1), batch.targets.flatten(), ignore_index=PAD, reduction="sum"
        )
        return {"ce": (nll, (batch.targets != PAD).sum())}

    def finish(self, means: dict[str, float]) -> dict[str, float]:
        if "ce" in means:
            means["bits_per_char"] = means["ce"] / math.log(2)
            means["perplexity"] = math.exp(means["ce"])
        return means

    # -- generation -------------------------------------------------------------------

    @torch.no_grad()
    def predict(self, model: nn.Module, request: PredictRequest) -> list[str]:
        """``rnnzoo predict RUN --label pos``: ``samples`` openings, one block each.

        A TEXT argument is a prompt: the samples continue it. ``max_len`` counts the
        generated characters (default: ``data.max_chars``).
        """
        vocab = self._fitted()
        valid = ", ".join(LABELS + tuple(ALIASES))
        if request.label is None:
            raise ConfigError(f"give --label, the sentiment to write in: one of {valid}")
        label = ALIASES.get(request.label.lower(), request.label.lower())
        if label not in LABELS:
            raise ConfigError(f"unknown label {request.label!r}; valid labels: {valid}")
        if request.texts is not None and len(request.texts) > 1:
            raise ConfigError("give one prompt text (or none), not several")
        prompt_text = request.texts[0] if request.texts else ""
        prompt = torch.tensor(vocab.encode(prompt_text), dtype=torch.long)
        generator = torch.Generator()
        if request.seed is None:
            generator.seed()  # a fresh sample every time
        else:
            generator.manual_seed(request.seed)
        model.eval()
        conditions = torch.full((request.samples,), LABELS.index(label), dtype=torch.long)
        ids = cast(Generates, model).generate(
            conditions, request.max_len or self.data.max_chars, request.temperature,
            generator, prompt=prompt, start=BOS, stop=EOS,
        )  # fmt: skip
        lines: list[str] = []
        for i, row in enumerate(ids.tolist()):
            if lines:
                lines.append("")
            lines += [f"--- {label} sample {i + 1}/{request.samples} ---"]
            lines += [prompt_text + vocab.decode(row)]
        return lines

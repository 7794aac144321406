"""Spelled-out numbers to digits and back: sequence-to-sequence with different lengths.

"three hundred forty-two thousand seven" <-> "342007", character by character. The
numbers of val and test never occur in train, so a model must learn the system of
number words, not the table.
"""

from __future__ import annotations

from typing import ClassVar, Literal

import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from torch import Tensor, nn
from torch.utils.data import Dataset

from rnnzoo.data import number_words as nw
from rnnzoo.data.batches import Batch, PairBatches
from rnnzoo.errors import ConfigError
from rnnzoo.tasks.base import (
    TASKS,
    Decoded,
    GeneratedSplits,
    ModelIO,
    PredictRequest,
    Sums,
    Task,
)

SOURCE_ALPHABET = {"words_to_digits": "a-z, space, hyphen", "digits_to_words": "0-9"}


@TASKS.register("number_words")
class NumberWordsTask(Task):
    """Numbers 0..max_number in English words <-> digits (``data.direction``).

    The model answers with a ``Decoded`` (logits (B, U', V), tokens (B, U')). The loss
    is cross-entropy over the valid target positions (EOS included, padding not);
    ``token_accuracy`` counts the same positions; ``exact_match`` counts outputs whose
    characters up to the first EOS equal the target's. In training these score the
    teacher-forced pass; in evaluation, the decoded sequence and its scores.
    """

    class Data(GeneratedSplits):
        direction: Literal["words_to_digits", "digits_to_words"] = "words_to_digits"
        max_number: int = Field(nw.MAX_NUMBER, ge=1, le=nw.MAX_NUMBER)
        bucket: int = Field(20, ge=1, description="batches per length-sorted chunk (1: off)")

        @model_validator(mode="after")
        def _enough_numbers(self) -> NumberWordsTask.Data:
            need = self.n_train + self.n_val + self.n_test
            if need > self.max_number + 1:  # held out: no number in two splits
                raise ValueError(
                    f"n_train + n_val + n_test = {need} distinct numbers, but 0..{self.max_number}"
                    f" holds only {self.max_number + 1}: lower them or raise max_number"
                )
            return self

    metric = "exact_match"
    headline = ("loss", "exact_match", "token_accuracy")
    modes: ClassVar[dict[str, Literal["min", "max"]]] = {
        "loss": "min", "exact_match": "max", "token_accuracy": "max",
    }  # fmt: skip

    def _numbers(self, split: str) -> Tensor:
        self.check_split(split)
        d = self.data
        sizes = {"val": d.n_val, "test": d.n_test, "train": d.n_train}  # val, test: stable
        return nw.held_out_numbers(d.max_number, sizes, d.seed)[split]

    def dataset(self, split: str) -> Dataset[Batch]:
        # every split bucketed: training shuffles the sorted chunks, evaluation not
        return nw.number_pairs(self._numbers(split), self.data.direction, self.data.bucket)

    @property
    def io(self) -> ModelIO:
        d = self.data
        longest = nw.longest_words(d.max_number) if self._to_words else len(str(d.max_number))
        return ModelIO(
            input_size=0, output_size=nw.VOCAB_SIZE, vocab_size=nw.VOCAB_SIZE,
            output="sequence", max_output_len=longest + 1,  # + EOS
        )  # fmt: skip

    @property
    def _to_words(self) -> bool:
        return self.data.direction == "digits_to_words"

    def loss(self, output: Decoded, batch: Batch) -> Tensor:  # type: ignore[override]
        logits, _ = _aligned(output, batch.targets.shape[1])
        return F.cross_entropy(logits.flatten(0, 1), batch.targets.flatten(), ignore_index=nw.PAD)

    def loss_weight(self, batch: Batch) -> Tensor:
        return (batch.targets != nw.PAD).sum()

    def metrics(self, output: Decoded, batch: Batch) -> Sums:  # type: ignore[override]
        _, tokens = _aligned(output, batch.targets.shape[1])
        targets = batch.targets
        valid = targets != nw.PAD  # the characters and the EOS after them
        same = tokens == targets
        exact = (same | ~valid).all(dim=1)  # so the first EOS is where the target's is
        n = torch.tensor(len(batch), device=targets.device)
        return {
            "exact_match": (exact.sum(), n),
            "token_accuracy": ((same & valid).sum(), valid.sum()),
        }

    def show(self, output: Tensor) -> str:
        """One decoded sequence of token ids (U,) as text, up to its EOS."""
        return nw.decode(output.tolist())

    def inputs_from_text(self, texts: list[str]) -> Batch:
        """Texts as a source batch; case and runs of spaces do not matter, any other
        character outside the source alphabet is an error that names it."""
        alphabet = nw.DIGITS if self._to_words else nw.LETTERS
        sources = []
        for text in texts:
            clean = " ".join(text.lower().split())
            bad = sorted({c for c in clean if c not in alphabet})
            if bad or not clean:
                what = ", ".join(repr(c) for c in bad) if bad else "nothing"
                allowed = SOURCE_ALPHABET[self.data.direction]
                raise ConfigError(
                    f"cannot read {text!r}: it has {what}; a {self.data.direction} model "
                    f"reads only {allowed}"
                )
            sources.append(torch.tensor(nw.encode(clean), dtype=torch.long))
        return PairBatches(sources, sources).__getitems__(list(range(len(sources))))

    def answer(self, model: nn.Module, batch: Batch, request: PredictRequest) -> list[str]:
        """The decoded answer to each text, greedy or with the requested beam width."""
        decode = getattr(model, "decode")  # noqa: B009 - every "sequence" model has it
        out = decode(batch.inputs, batch.lengths, request.beam_width, request.max_len)
        return [self.show(row) for row in out.tokens]


def _aligned(output: Decoded, steps: int) -> tuple[Tensor, Tensor]:
    """Logits (B, steps, V) and tokens (B, steps) of ``output``, cut or padded to the
    targets' length. A padded position scores zeros (uniform) and predicts pad."""
    logits, tokens = output.logits[:, :steps], output.tokens[:, :steps]
    missing = steps - tokens.shape[1]
    if missing > 0:
        logits = F.pad(logits, (0, 0, 0, missing))
        tokens = F.pad(tokens, (0, missing), value=nw.PAD)
    return logits, tokens

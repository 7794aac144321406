"""Text to token ids with HF ``tokenizers``: fitted on training text only, saved to JSON.

Word-level vocabulary by default (lowercased, split into words and punctuation), BPE as
an option. Id 0 is padding and id 1 the unknown token, in both.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers
from torch import Tensor

PAD, UNK = "[PAD]", "[UNK]"
PAD_ID = 0


def fit_tokenizer(
    texts: Sequence[str], kind: str = "word", vocab_size: int = 20_000, min_frequency: int = 2
) -> Tokenizer:
    """A tokenizer whose vocabulary is learned from ``texts`` (the training split only)."""
    if kind == "word":
        tok = Tokenizer(models.WordLevel(unk_token=UNK))
        trainer: trainers.Trainer = trainers.WordLevelTrainer(
            vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=[PAD, UNK]
        )
    elif kind == "bpe":
        tok = Tokenizer(models.BPE(unk_token=UNK))
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=[PAD, UNK]
        )
    else:
        raise ValueError(f"unknown tokenizer {kind!r}; valid: word, bpe")
    tok.normalizer = normalizers.Sequence(
        [normalizers.Replace("<br />", " "), normalizers.NFKC(), normalizers.Lowercase()]
    )
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator(texts, trainer=trainer, length=len(texts))
    assert tok.token_to_id(PAD) == PAD_ID
    return tok


def save_tokenizer(tok: Tokenizer, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tok.save(str(path))


def load_tokenizer(path: Path) -> Tokenizer:
    if not path.is_file():
        raise FileNotFoundError(f"no tokenizer at {path}")
    return Tokenizer.from_file(str(path))


ENCODE_CHUNK = 1024  # texts per encode_batch call


def _encodings(tok: Tokenizer, texts: Sequence[str]) -> Iterator[Any]:
    """The tokenizer's encodings of ``texts``, a chunk at a time: an ``Encoding`` keeps
    every token's string and offsets besides its id, so encoding 20,000 reviews at once
    held all of those at the same time (hundreds of MB) for ids kept as int32."""
    for start in range(0, len(texts), ENCODE_CHUNK):
        yield from tok.encode_batch(list(texts[start : start + ENCODE_CHUNK]))


def encode(tok: Tokenizer, texts: Sequence[str], max_len: int, side: str = "head") -> list[Tensor]:
    """Token ids of each text, cut to ``max_len`` keeping the ``head``, the ``tail`` or
    both ends (``head_tail``: the first and last halves; reviews often conclude at the
    end). Every text keeps at least one token (an empty text becomes [UNK])."""
    if side not in ("head", "tail", "head_tail"):
        raise ValueError(f"unknown truncation side {side!r}; valid: head, tail, head_tail")
    unk = tok.token_to_id(UNK)
    assert unk is not None, "the tokenizer has no [UNK] token"
    out = []
    for enc in _encodings(tok, texts):
        ids = enc.ids or [unk]
        if len(ids) > max_len:
            if side == "head":
                ids = ids[:max_len]
            elif side == "tail":
                ids = ids[-max_len:]
            else:
                first = (max_len + 1) // 2
                ids = ids[:first] + ids[len(ids) - (max_len - first) :]
        out.append(torch.tensor(ids, dtype=torch.int32))
    return out

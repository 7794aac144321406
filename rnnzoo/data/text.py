"""Text to token ids with HF ``tokenizers``: fitted on training text only, saved to JSON.

Word-level vocabulary by default (lowercased, split into words and punctuation), BPE
and single characters (every character a token, spaces and newlines included, case
kept) as options. Id 0 is padding and id 1 the unknown token, in all three; special
tokens asked for (a language model's ``[EOS]``) follow.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers
from torch import Tensor

PAD, UNK, EOS = "[PAD]", "[UNK]", "[EOS]"
PAD_ID = 0
KINDS = ("word", "bpe", "char")


def fit_tokenizer(
    texts: Sequence[str],
    kind: str = "word",
    vocab_size: int = 20_000,
    min_frequency: int = 2,
    lowercase: bool | None = None,
    specials: Sequence[str] = (),
) -> Tokenizer:
    """A tokenizer whose vocabulary is learned from ``texts`` (the training split only).

    ``lowercase`` None: lowercase words and BPE pieces, keep the case of characters.
    ``specials``: tokens added after [PAD] and [UNK] (ids 2, 3, ...), never split."""
    special_tokens = [PAD, UNK, *specials]
    if kind in ("word", "char"):  # a char vocabulary is a word-level one over characters
        tok = Tokenizer(models.WordLevel(unk_token=UNK))
        trainer: trainers.Trainer = trainers.WordLevelTrainer(
            vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=special_tokens
        )
    elif kind == "bpe":
        tok = Tokenizer(models.BPE(unk_token=UNK))
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=special_tokens
        )
    else:
        raise ValueError(f"unknown tokenizer {kind!r}; valid: {', '.join(KINDS)}")
    steps = [normalizers.Replace("<br />", " "), normalizers.NFKC()]
    if lowercase if lowercase is not None else kind != "char":
        steps.append(normalizers.Lowercase())
    tok.normalizer = normalizers.Sequence(steps)
    # "" splits between every two characters and keeps each: spaces and newlines too
    tok.pre_tokenizer = (
        pre_tokenizers.Split("", "isolated") if kind == "char" else pre_tokenizers.Whitespace()
    )
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


def encode_documents(tok: Tokenizer, docs: Sequence[str]) -> Tensor:
    """One stream of token ids for a language model: every document preceded by the
    tokenizer's ``[EOS]``, and one more at the end, (N,) int32. A document is a text of
    its own (a review, a file), and the model learns where one ends and the next starts;
    one that encodes to no tokens is left out."""
    eos = tok.token_to_id(EOS)
    assert eos is not None, "the tokenizer has no [EOS] token"
    mark = torch.tensor([eos], dtype=torch.int32)
    parts = [mark]
    for enc in _encodings(tok, docs):
        if enc.ids:
            parts += [torch.tensor(enc.ids, dtype=torch.int32), mark]
    return torch.cat(parts)


def decode(tok: Tokenizer, ids: Sequence[int], kind: str) -> str:
    """Token ids back to text: characters joined as they are, words and BPE pieces with
    a space between two; [UNK] shows as U+FFFD for characters, as [UNK] otherwise."""
    tokens = [tok.id_to_token(i) or UNK for i in ids]
    if kind == "char":
        return "".join("\ufffd" if t == UNK else t for t in tokens)
    return " ".join(tokens)

"""Numbers 0..999,999 in English words and in digits, for sequence-to-sequence.

Spelling: American, without "and", tens and units hyphenated from 21 to 99::

    342007 -> "three hundred forty-two thousand seven"
    101    -> "one hundred one"

Both sides are character sequences over one fixed vocabulary (nothing is fitted):
ids 0 pad, 1 BOS, 2 EOS, 3 UNK, then ``CHARS`` (a-z, space, hyphen, 0-9).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor

from rnnzoo.data.batches import PairBatches
from rnnzoo.errors import ConfigError

MAX_NUMBER = 999_999

ONES = [
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
    "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen",
    "eighteen", "nineteen",
]  # fmt: skip
TENS = ["", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
VALUES = {word: i for i, word in enumerate(ONES)} | {w: 10 * i for i, w in enumerate(TENS) if w}

PAD, BOS, EOS, UNK = 0, 1, 2, 3
SPECIALS = ("<pad>", "<bos>", "<eos>", "<unk>")
LETTERS = "abcdefghijklmnopqrstuvwxyz -"
DIGITS = "0123456789"
CHARS = LETTERS + DIGITS
VOCAB_SIZE = len(SPECIALS) + len(CHARS)  # 42
_IDS = {c: len(SPECIALS) + i for i, c in enumerate(CHARS)}


def _below_thousand(n: int) -> list[str]:
    """Words of 1..999 (none for 0)."""
    hundreds, rest = divmod(n, 100)
    words = [ONES[hundreds], "hundred"] if hundreds else []
    if rest >= 20:
        words.append(TENS[rest // 10] + (f"-{ONES[rest % 10]}" if rest % 10 else ""))
    elif rest:
        words.append(ONES[rest])
    return words


def number_to_words(n: int) -> str:
    """0..999,999 in words: 342007 -> "three hundred forty-two thousand seven"."""
    if not 0 <= n <= MAX_NUMBER:
        raise ValueError(f"only 0..{MAX_NUMBER} can be spelled, got {n}")
    if n == 0:
        return "zero"
    thousands, rest = divmod(n, 1000)
    words = [*_below_thousand(thousands), "thousand"] if thousands else []
    return " ".join(words + _below_thousand(rest))


def words_to_number(text: str) -> int:
    """The inverse of ``number_to_words`` (lenient about the order it accepts)."""
    total = current = 0
    for part in text.replace("-", " ").split():
        if part in VALUES:
            current += VALUES[part]
        elif part == "hundred":
            current *= 100
        elif part == "thousand":
            total, current = (total + current) * 1000, 0
        else:
            raise ValueError(f"not a number word: {part!r}")
    return total + current


def longest_words(max_number: int) -> int:
    """Characters in the longest spelling among 0..max_number, without spelling them all.

    Above 999, n = a * 1000 + b reads "<a> thousand[ <b>]"; the longest has the longest
    ``a`` whose allowed ``b`` (0..999 below the top ``a``, 0..max_number % 1000 at it)
    give the longest tail."""
    width = [len(number_to_words(n)) for n in range(1000)]
    top, low = divmod(max_number, 1000)
    best = max(width[: min(max_number, 999) + 1])
    tail_any = 1 + max(width[1:])  # " <b>" for any b in 1..999

    def tail(up_to: int) -> int:
        return 1 + max(width[1 : up_to + 1]) if up_to else 0

    for a in range(1, top + 1):
        best = max(best, width[a] + len(" thousand") + (tail(low) if a == top else tail_any))
    return best


def encode(text: str) -> list[int]:
    """Character ids of ``text`` (UNK for a character outside ``CHARS``)."""
    return [_IDS.get(c, UNK) for c in text]


def decode(ids: Iterable[int]) -> str:
    """Characters of ``ids`` up to the first EOS; pad, BOS and UNK are dropped."""
    out = []
    for i in ids:
        if i == EOS:
            break
        if i >= len(SPECIALS):
            out.append(CHARS[i - len(SPECIALS)])
    return "".join(out)


def held_out_numbers(max_number: int, sizes: dict[str, int], seed: int) -> dict[str, Tensor]:
    """Disjoint sets of numbers from 0..max_number, one per split, in the order given.

    One seeded permutation is cut into consecutive slices, so no number is in two
    splits. Give val and test first: then they stay the same when n_train changes.
    """
    need = sum(sizes.values())
    if need > max_number + 1:
        counts = " + ".join(f"n_{k} {v}" for k, v in sizes.items())
        raise ConfigError(
            f"data: {counts} = {need} distinct numbers, but 0..{max_number} holds only "
            f"{max_number + 1}: lower the split sizes or raise data.max_number"
        )
    order = torch.randperm(max_number + 1, generator=torch.Generator().manual_seed(seed))
    out, start = {}, 0
    for split, n in sizes.items():
        out[split] = order[start : start + n]
        start += n
    return out


def number_pairs(numbers: Tensor, direction: str, bucket: int = 1) -> PairBatches:
    """Words -> digits (``words_to_digits``) or back (``digits_to_words``) for ``numbers``."""
    words = [number_to_words(n) for n in numbers.tolist()]
    digits = [str(n) for n in numbers.tolist()]
    src, tgt = (words, digits) if direction == "words_to_digits" else (digits, words)
    sources = [torch.tensor(encode(s), dtype=torch.long) for s in src]
    targets = [torch.tensor([*encode(t), EOS], dtype=torch.long) for t in tgt]
    return PairBatches(sources, targets, bucket)

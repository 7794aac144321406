"""A generated tagging problem in which half the words need both neighbours to tag.

No POS-tagged corpus ships inside a package on PyPI (checked 2026-11: ``nltk``'s
corpora come from ``nltk.download``, ``treebank`` holds untagged Penn Treebank text,
``brown`` is empty), so the tagging task generates its sentences. Like English "run"
(noun after "a", verb after "to"), an *ambiguous* word's tag is decided by context:

* words ``1..V``; each has a class ``c(w) = (w - 1) mod K``;
* the upper half of the vocabulary is ambiguous;
* an unambiguous word's tag is its class; an ambiguous word at step t is tagged
  ``(c(x[t-1]) + c(x[t+1])) mod K``, a neighbour past either end counting as class 0.

A left-to-right tagger cannot know ``x[t+1]``, so on ambiguous words it can do no
better than chance (1/K): its accuracy ceiling is about ``1/2 + 1/(2K)`` (62.5 % at
K = 4). A bidirectional tagger sees both neighbours and can reach 100 %.
"""

from __future__ import annotations

import torch
from torch import Tensor

IGNORE = -100  # target at padded steps: cross-entropy and the metrics skip it


def is_ambiguous(words: Tensor, vocab_size: int) -> Tensor:
    """Whether each word id (1..V; 0 is padding) needs context to tag."""
    return words > vocab_size - vocab_size // 2


def context_tags(
    n: int, vocab_size: int, num_tags: int, min_len: int, max_len: int, generator: torch.Generator
) -> tuple[Tensor, Tensor, Tensor]:
    """``n`` sentences of ``min_len..max_len`` words, tagged as the module says.

    Returns words (n, max_len) padded with 0, tags (n, max_len) padded with ``IGNORE``,
    and lengths (n,).
    """
    if vocab_size < 2 * num_tags:
        raise ValueError(
            f"vocab_size ({vocab_size}) must be at least 2 * num_tags ({2 * num_tags}) so "
            "that both halves of the vocabulary hold every class"
        )
    if not 1 <= min_len <= max_len:
        raise ValueError(f"need 1 <= min_len <= max_len, got {min_len} and {max_len}")
    lengths = torch.randint(min_len, max_len + 1, (n,), generator=generator)
    words = torch.randint(1, vocab_size + 1, (n, max_len), generator=generator)
    valid = torch.arange(max_len)[None, :] < lengths[:, None]
    words = words * valid
    cls = torch.where(valid, (words - 1) % num_tags, 0)  # padding and beyond: class 0
    left = torch.nn.functional.pad(cls, (1, 0))[:, :-1]
    right = torch.nn.functional.pad(cls, (0, 1))[:, 1:]
    tags = torch.where(is_ambiguous(words, vocab_size), (left + right) % num_tags, cls)
    return words, tags.masked_fill(~valid, IGNORE), lengths

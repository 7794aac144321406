"""Tagged sentences as tensors: word ids, each word's characters, tags, unseen flags.

A word is read twice: as a lowercased word id (a vocabulary fitted on training forms,
rare ones left to the unknown id) and as its characters with their case, so that a
character encoder can tag a word it never saw from its spelling and capitalisation.
"""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor
from torch.utils.data import Dataset

from rnnzoo.data.batches import Batch
from rnnzoo.data.tagging import IGNORE

PAD, UNK, BOW, EOW = 0, 1, 2, 3  # word ids use PAD and UNK; char ids all four
SPECIAL = 4


@dataclasses.dataclass
class Vocab:
    """What a tagger fits on its training sentences and keeps in the run folder.

    words: lowercased forms seen at least ``min_frequency`` times (id = 2 + index);
    chars: characters of training forms, case kept (id = 4 + index);
    tags: the tag set, in order of first appearance (id = index);
    forms: every training form as written, to tell seen words from unseen ones.
    """

    words: list[str]
    chars: list[str]
    tags: list[str]
    forms: list[str]

    def __post_init__(self) -> None:
        self.word_ids = {w: i + 2 for i, w in enumerate(self.words)}
        self.char_ids = {c: i + SPECIAL for i, c in enumerate(self.chars)}
        self.tag_ids = {t: i for i, t in enumerate(self.tags)}
        self.seen = set(self.forms)

    @classmethod
    def fit(cls, forms: Sequence[Sequence[str]], tags: Sequence[Sequence[str]], min_frequency: int):
        """The vocabulary of training sentences (``forms``, ``tags``: one list each)."""
        counts = Counter(w.lower() for sent in forms for w in sent)
        words = sorted(w for w, n in counts.items() if n >= min_frequency)
        chars = sorted({c for sent in forms for w in sent for c in w})
        tag_set = list(dict.fromkeys(t for sent in tags for t in sent))
        seen = sorted({w for sent in forms for w in sent})
        return cls(words, chars, tag_set, seen)

    @property
    def word_vocab_size(self) -> int:
        return len(self.words) + 2

    @property
    def char_vocab_size(self) -> int:
        return len(self.chars) + SPECIAL

    def save(self, path: Path) -> None:
        data = {"words": self.words, "chars": self.chars, "tags": self.tags, "forms": self.forms}
        path.write_text(json.dumps(data, ensure_ascii=False) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path: Path) -> Vocab:
        data = json.loads(path.read_text(encoding="utf-8"))
        return cls(data["words"], data["chars"], data["tags"], data["forms"])

    def encode_words(self, forms: Sequence[str], max_word_len: int) -> Tensor:
        """One sentence's inputs: (T, 1 + C) ids, the word id then BOW, chars, EOW, 0s.

        A word longer than ``max_word_len`` characters keeps its first and last halves
        (prefixes and suffixes are what tell a part of speech)."""
        rows = [[self.word_ids.get(w.lower(), UNK), *self._chars(w, max_word_len)] for w in forms]
        width = max(len(r) for r in rows)
        return torch.tensor([r + [PAD] * (width - len(r)) for r in rows], dtype=torch.long)

    def _chars(self, form: str, max_word_len: int) -> list[int]:
        if len(form) > max_word_len:
            head = (max_word_len + 1) // 2
            form = form[:head] + form[len(form) - (max_word_len - head) :]
        return [BOW, *(self.char_ids.get(c, UNK) for c in form), EOW]

    def encode_targets(self, forms: Sequence[str], tags: Sequence[str]) -> Tensor:
        """One sentence's targets: (T, 2), the tag id (``len(tags)`` for a tag training
        never saw: never predicted, so always wrong) and 1 where the form is unseen."""
        unseen_tag = len(self.tags)
        return torch.tensor(
            [
                [self.tag_ids.get(t, unseen_tag), int(w not in self.seen)]
                for w, t in zip(forms, tags, strict=True)
            ],
            dtype=torch.long,
        )


class TaggedSentences(Dataset[Batch]):
    """Sentences padded per batch: inputs (B, T, 1 + C), targets (B, T, 2), lengths (B,).

    Padded words have id 0 and no characters; padded targets are ``IGNORE`` (tag) and
    0 (unseen). ``lengths`` and ``bucket`` let the sampler batch similar lengths.
    """

    def __init__(self, inputs: Sequence[Tensor], targets: Sequence[Tensor], bucket: int = 1):
        if len(inputs) != len(targets):
            raise ValueError("one target sequence per input sequence expected")
        self.inputs, self.targets, self.bucket = list(inputs), list(targets), bucket
        self.lengths = [len(x) for x in self.inputs]

    def __len__(self) -> int:
        return len(self.inputs)

    def __getitems__(self, indices: Sequence[int]) -> Batch:
        xs = [self.inputs[i] for i in indices]
        ys = [self.targets[i] for i in indices]
        steps, width = max(len(x) for x in xs), max(x.shape[1] for x in xs)
        inputs = torch.zeros(len(xs), steps, width, dtype=torch.long)
        targets = torch.zeros(len(xs), steps, 2, dtype=torch.long)
        targets[:, :, 0] = IGNORE
        for b, (x, y) in enumerate(zip(xs, ys, strict=True)):
            inputs[b, : len(x), : x.shape[1]] = x
            targets[b, : len(y)] = y
        lengths = torch.tensor([len(x) for x in xs], dtype=torch.long)
        return Batch(inputs, targets, lengths)

    def __getitem__(self, index: int) -> Batch:
        return self.__getitems__([index])

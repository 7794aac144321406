"""A token stream cut into parallel streams and chunks: a language model's batches.

As in PyTorch's word_language_model (``batchify``): the N tokens of a split are cut
into S streams of L = (N - 1) // S steps each, stream s holding tokens s*L ... s*L + L
and predicting the token after each, so that every token but the first is a target
exactly once (the last (N - 1) % S tokens, fewer than S, are left out). Each stream is
then cut into chunks of ``bptt`` steps, the last one shorter when ``bptt`` does not
divide L.

Sample i is chunk i // S of stream i % S, so a batch of S consecutive samples is one
chunk of every stream, and batch c + 1 continues batch c row by row: a model that
carries its state from one batch to the next (truncated backpropagation through time)
reads every stream in order. ``contiguous`` tells the sampler to keep that order
(``rnnzoo.data.sampling``: no shuffling, no bucketing); ``with_streams(S)`` is the same
tokens as S streams, the number a batch size asks for.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from torch.utils.data import Dataset

from rnnzoo.data.batches import Batch
from rnnzoo.errors import DataError


class TextStream(Dataset[Batch]):
    """The tokens of a split (N,) as ``streams`` parallel streams in ``bptt`` chunks.

    A batch: inputs (B, T) token ids, targets (B, T) the id after each, lengths (B,)
    all T (no padding). ``name`` says which split it is, in errors.
    """

    contiguous = True

    def __init__(self, tokens: Tensor, bptt: int, streams: int = 1, name: str = "text") -> None:
        if bptt < 1 or streams < 1:
            raise ValueError("bptt and streams must be positive")
        self.tokens, self.bptt, self.streams, self.name = tokens, bptt, streams, name
        self.steps = (len(tokens) - 1) // streams  # L: inputs per stream
        if self.steps < 1:
            raise DataError(
                f"the {name} text has {len(tokens)} tokens, too few for {streams} "
                "parallel streams (one per row of a batch)",
                "lower train.batch_size (or train.eval_batch_size), or give more text",
            )
        self.chunks = -(-self.steps // bptt)  # ceil: the last chunk may be shorter
        self._copies: dict[int, TextStream] = {streams: self}

    @property
    def num_targets(self) -> int:
        """Tokens predicted in one pass over every chunk: S * L."""
        return self.streams * self.steps

    def with_streams(self, streams: int) -> TextStream:
        """The same tokens as ``streams`` parallel streams (built once per number)."""
        if streams not in self._copies:
            copy = TextStream(self.tokens, self.bptt, streams, self.name)
            copy._copies = self._copies  # every copy shares the one cache
            self._copies[streams] = copy
        return self._copies[streams]

    def __len__(self) -> int:
        return self.chunks * self.streams

    def span(self, index: int) -> tuple[int, int]:
        """Where sample ``index`` starts in ``tokens`` and how many steps it has."""
        chunk, stream = divmod(index, self.streams)
        if not 0 <= chunk < self.chunks:
            raise IndexError(f"sample {index} of {len(self)}")
        offset = chunk * self.bptt
        return stream * self.steps + offset, min(self.bptt, self.steps - offset)

    def __getitems__(self, indices: Sequence[int]) -> Batch:
        spans = [self.span(i) for i in indices]
        steps = {n for _, n in spans}
        if len(steps) != 1:  # rows of one batch come from the same chunk of each stream
            raise ValueError(f"samples of different lengths in one batch: {sorted(steps)}")
        (n,) = steps
        at = torch.tensor([start for start, _ in spans])[:, None] + torch.arange(n + 1)
        window = self.tokens[at].long()  # (B, T + 1)
        lengths = torch.full((len(spans),), n, dtype=torch.long)
        return Batch(window[:, :-1], window[:, 1:], lengths)

    def __getitem__(self, index: int) -> Batch:
        return self.__getitems__([index])

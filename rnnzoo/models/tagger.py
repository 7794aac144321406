"""Sequence tagging: a tag for every token, from a uni- or bidirectional stack."""

from __future__ import annotations

import dataclasses
from typing import Literal

import torch
from pydantic import Field
from torch import Tensor, nn

from rnnzoo.errors import ConfigError
from rnnzoo.layers import Recurrent
from rnnzoo.models.base import MODELS, WORD_DROPOUT
from rnnzoo.models.many_to_many import ManyToMany
from rnnzoo.regularizers import embedding_dropout
from rnnzoo.tasks import ModelIO

UNK_ID = 1  # the unknown word of a token task's vocabulary (0 is padding)


class CharCNN(nn.Module):
    """A word from its characters: embedding, a convolution, max over the characters.

    chars (N, C) ids, 0 padding -> (N, filters)."""

    def __init__(self, vocab_size: int, dim: int, filters: int, kernel: int) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, dim, padding_idx=0)
        self.conv = nn.Conv1d(dim, filters, kernel, padding=kernel // 2)
        self.output_size = filters

    def forward(self, chars: Tensor) -> Tensor:
        x = self.embedding(chars).transpose(1, 2)  # (N, E, C)
        h = torch.relu(self.conv(x))[:, :, : chars.shape[1]]  # (N, F, C); even kernels: +1
        pad = (chars == 0).unsqueeze(1)  # (N, 1, C)
        return h.masked_fill(pad, 0.0).amax(dim=2)  # relu >= 0: padding never wins the max


class CharLSTM(nn.Module):
    """A word from its characters: a bidirectional LSTM, both final states side by side.

    chars (N, C) ids, 0 padding after the valid characters -> (N, 2 * hidden)."""

    def __init__(self, vocab_size: int, dim: int, hidden: int) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, dim, padding_idx=0)
        self.rnn = Recurrent("lstm", dim, hidden, batch_first=True, bidirectional=True)
        self.output_size = 2 * hidden

    def forward(self, chars: Tensor) -> Tensor:
        lengths = (chars != 0).sum(1).clamp(min=1)  # a padded word: read one pad char
        _, (h_n, _) = self.rnn(self.embedding(chars), lengths=lengths)  # h_n (2, N, H)
        return torch.cat([h_n[0], h_n[1]], dim=-1)


def encode_distinct(encoder: nn.Module, chars: Tensor) -> Tensor:
    """``encoder`` on each distinct spelling of a batch once: (B, T, C) -> (B, T, F).

    Words repeat a lot in running text (a batch of 32 sentences has about a third as
    many distinct words as tokens), so this saves most of the character work."""
    flat = chars.flatten(0, 1)  # (B*T, C)
    distinct, where = torch.unique(flat, dim=0, return_inverse=True)  # (U, C), (B*T,)
    return encoder(distinct)[where].unflatten(0, chars.shape[:2])


class SequenceTagger(ManyToMany):
    """Token ids -> embedding (pad id 0) -> ``ManyToMany``: (B, T) -> (B, T, num_tags).

    Inputs may also be features (B, T, F) when the task has no vocabulary, or, with a
    ``char_encoder``, word ids followed by each word's character ids (B, T, 1 + C): the
    word's embedding and its spelling's encoding go side by side into the stack, so a
    word the vocabulary lacks is still tagged from its characters. The layer takes the
    lengths, so padded steps never reach a valid step's output in either direction; the
    task's loss skips their targets. A bidirectional stack reads the words after step t
    before tagging it.
    """

    class Args(ManyToMany.Args):
        name: Literal["sequence_tagger"] = "sequence_tagger"  # type: ignore[assignment]
        embedding_dim: int = Field(64, ge=1, description="used when the inputs are token ids")
        embedding_dropout: float = Field(0.0, ge=0, lt=1)
        word_dropout: float = Field(0.0, ge=0, lt=1, description=WORD_DROPOUT)
        unk_rate: float = Field(
            0.0, ge=0, lt=1,
            description="chance that a word is read as the unknown word in training",
        )  # fmt: skip
        char_encoder: Literal["none", "cnn", "lstm"] = Field(
            "none", description="spell each word (tasks with characters: pos_tagging)"
        )
        char_embedding_dim: int = Field(32, ge=1)
        char_hidden_size: int = Field(
            64, ge=1, description="cnn: filters; lstm: units per direction"
        )
        char_kernel: int = Field(3, ge=1, description="cnn: characters per filter")

    def __init__(self, io: ModelIO, args: Args) -> None:
        chars = _char_encoder(io, args)
        spelled = 0 if chars is None else chars.output_size
        features = (
            io
            if io.vocab_size is None
            else dataclasses.replace(io, input_size=args.embedding_dim + spelled)
        )
        super().__init__(features, args)
        self.word_dropout = args.word_dropout
        self.unk_rate = args.unk_rate
        self.chars = chars
        self.spelled = io.char_vocab_size is not None  # inputs (B, T, 1 + C)
        self.embedding: nn.Module = nn.Identity()
        if io.vocab_size is not None:
            self.embedding = nn.Sequential(
                nn.Embedding(io.vocab_size, args.embedding_dim, padding_idx=0),
                nn.Dropout(args.embedding_dropout),
            )

    @classmethod
    def build(cls, args: Args, io: ModelIO) -> SequenceTagger:  # type: ignore[override]
        return cls(io, args)

    def forward(
        self, inputs: Tensor, lengths: Tensor | None = None, targets: Tensor | None = None
    ) -> Tensor:
        """inputs (B, T) ids, (B, T, 1 + C) ids and chars, or (B, T, F); lengths (B,)
        -> tag scores (B, T, num_tags)."""
        if not isinstance(self.embedding, nn.Sequential):
            return super().forward(inputs, lengths)
        words = inputs[..., 0] if self.spelled else inputs  # (B, T)
        lookup, dropout = self.embedding  # kept as one module: state_dict keys unchanged
        assert isinstance(lookup, nn.Embedding)
        if self.training and self.unk_rate > 0:
            unk = (torch.rand(words.shape, device=words.device) < self.unk_rate) & (words > 0)
            words = words.masked_fill(unk, UNK_ID)
        x = dropout(embedding_dropout(lookup, words, self.word_dropout, self.training))
        if self.chars is not None:  # (B, T, E) beside (B, T, F)
            x = torch.cat([x, dropout(encode_distinct(self.chars, inputs[..., 1:]))], dim=-1)
        return super().forward(x, lengths)


def _char_encoder(io: ModelIO, args: SequenceTagger.Args) -> CharCNN | CharLSTM | None:
    """The character encoder ``args`` ask for, if the task spells its words."""
    if args.char_encoder == "none":
        return None
    if io.char_vocab_size is None:
        raise ConfigError(
            f"model.char_encoder: {args.char_encoder!r} needs a task that gives each "
            "word's characters (pos_tagging)",
            "set model.char_encoder: none",
        )
    size, dim, hidden = io.char_vocab_size, args.char_embedding_dim, args.char_hidden_size
    if args.char_encoder == "cnn":
        return CharCNN(size, dim, hidden, args.char_kernel)
    return CharLSTM(size, dim, hidden)


MODELS.add("sequence_tagger", SequenceTagger)

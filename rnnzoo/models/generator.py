"""Conditional token generator: one condition in, a sequence of tokens out (one-to-many)."""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field, field_validator
from torch import Tensor, nn

from rnnzoo.errors import ConfigError
from rnnzoo.models.base import MODELS, WORD_DROPOUT, RecurrentArgs, draw
from rnnzoo.regularizers import embedding_dropout
from rnnzoo.tasks import ModelIO

PAD = 0  # every token task pads with 0; it is never generated


class ConditionalGenerator(nn.Module):
    """A language model whose starting state is a learned function of a condition.

    The condition (a class id) picks a learned vector that is the initial state of every
    layer: ``h_0`` for RNN and GRU cells, both ``h_0`` and ``c_0`` for an LSTM. With
    ``condition_each_step`` a second learned vector of the condition is also
    concatenated to every step's token embedding (default off: the condition enters
    once, as the state it starts from). Then embedding (pad id 0) -> unidirectional
    ``rnnzoo.Recurrent`` -> dropout -> linear to next-token scores.

    Inputs: ``inputs, lengths=None, targets=None``
        inputs: (B, 1 + T) long; column 0 is the condition in [0, num_conditions), then
            T token ids (the start token and the tokens so far: teacher forcing).
        lengths: (B,) valid steps among the T, or None when all are valid.
        targets: unused (the inputs already hold the previous tokens).

    Output: (B, T, V) scores of the token after each step; at padded steps, where the
        layer's output is zero, only the head's bias (the task ignores them).
    """

    output = "next_token"

    class Args(RecurrentArgs):
        name: Literal["conditional_generator"] = "conditional_generator"
        embedding_dim: int = Field(64, ge=1)
        embedding_dropout: float = Field(0.0, ge=0, lt=1, description="on embedded tokens")
        word_dropout: float = Field(0.0, ge=0, lt=1, description=WORD_DROPOUT)
        head_dropout: float = Field(0.0, ge=0, lt=1, description="before the linear head")
        condition_each_step: bool = Field(
            False, description="also feed the condition with every token, not only as h_0"
        )
        condition_dim: int = Field(16, ge=1, description="its size there (each-step only)")

        @field_validator("bidirectional")
        @classmethod
        def _forward_only(cls, bidirectional: bool) -> bool:
            if bidirectional:
                raise ValueError("a generator reads left to right: bidirectional must be false")
            return bidirectional

    def __init__(self, vocab_size: int, num_conditions: int, args: Args) -> None:
        super().__init__()
        if args.bidirectional:
            raise ConfigError("a generator reads left to right: bidirectional must be false")
        self.embedding = nn.Embedding(vocab_size, args.embedding_dim, padding_idx=PAD)
        self.embedding_dropout = nn.Dropout(args.embedding_dropout)
        step_condition = args.condition_dim if args.condition_each_step else 0
        self.step_condition = (
            nn.Embedding(num_conditions, args.condition_dim) if args.condition_each_step else None
        )
        self.word_dropout = args.word_dropout
        self.rnn = args.recurrent(args.embedding_dim + step_condition, bidirectional=False)
        # One row per condition: every layer's every initial state, side by side.
        states = self.rnn.num_states * args.num_layers * args.hidden_size
        self.initial_state = nn.Embedding(num_conditions, states)
        nn.init.normal_(self.initial_state.weight, std=0.1)  # small, like a running state
        self.head = nn.Sequential(
            nn.Dropout(args.head_dropout), nn.Linear(args.hidden_size, vocab_size)
        )

    @classmethod
    def build(cls, args: Args, io: ModelIO) -> ConditionalGenerator:
        if io.vocab_size is None or io.num_conditions is None:
            raise ConfigError("model conditional_generator needs a task with tokens and conditions")
        return cls(io.vocab_size, io.num_conditions, args)

    def state(self, conditions: Tensor) -> Tensor | tuple[Tensor, ...]:
        """The initial state for conditions (B,): (L, B, H), or a tuple (LSTM: h, c)."""
        rnn = self.rnn
        s = self.initial_state(conditions)  # (B, S * L * H)
        s = s.view(-1, rnn.num_states, rnn.num_layers, rnn.hidden_size).permute(1, 2, 0, 3)
        return s[0].contiguous() if rnn.num_states == 1 else tuple(x.contiguous() for x in s)

    def _embed(self, tokens: Tensor, conditions: Tensor) -> Tensor:
        """tokens: (B, T) or (B,), conditions: (B,) -> step inputs (B, T, I) or (B, I)."""
        x = embedding_dropout(self.embedding, tokens, self.word_dropout, self.training)
        x = self.embedding_dropout(x)
        if self.step_condition is None:
            return x
        c = self.step_condition(conditions)  # (B, C)
        if tokens.dim() == 2:
            c = c[:, None, :].expand(-1, tokens.shape[1], -1)
        return torch.cat([x, c], dim=-1)

    def forward(
        self, inputs: Tensor, lengths: Tensor | None = None, targets: Tensor | None = None
    ) -> Tensor:
        """inputs: (B, 1 + T) condition then token ids, lengths: (B,) -> (B, T, V) scores."""
        conditions, tokens = inputs[:, 0], inputs[:, 1:]  # (B,), (B, T)
        out, _ = self.rnn(self._embed(tokens, conditions), self.state(conditions), lengths=lengths)
        assert isinstance(out, Tensor)
        return self.head(out)  # (B, T, V)

    @torch.no_grad()
    def generate(
        self,
        conditions: Tensor,
        max_len: int,
        temperature: float = 1.0,
        generator: torch.Generator | None = None,
        *,
        prompt: Tensor | None = None,
        start: int = 1,
        stop: int | None = 2,
    ) -> Tensor:
        """Sample a sequence per condition, one ``Recurrent.step`` at a time.

        conditions: (N,) class ids; prompt: (P,) token ids every sample continues (fed
        after ``start``, not returned); ``start``/``stop``: the task's BOS and EOS ids
        (None: no stop token). ``temperature`` 0 takes the argmax (greedy); otherwise
        ``torch.multinomial`` draws from ``generator``, so a seeded one repeats a sample.
        The pad and start ids are never drawn.

        Returns (N, L) token ids, L <= max_len: each row ends at its first ``stop``
        (kept); positions after it are pad (0).
        """
        n = conditions.shape[0]
        device = conditions.device
        feed = torch.full((n, 1), start, dtype=torch.long, device=device)
        if prompt is not None and prompt.numel():
            feed = torch.cat([feed, prompt.to(device)[None, :].expand(n, -1)], dim=1)
        state = self.state(conditions)
        for t in range(feed.shape[1]):  # the start token and the prompt: teacher-forced
            out, state = self.rnn.step(self._embed(feed[:, t], conditions), state)
        tokens: list[Tensor] = []
        done = torch.zeros(n, dtype=torch.bool, device=device)
        for _ in range(max_len):
            logits = self.head(out).float()  # (N, V)
            logits[:, [PAD, start]] = float("-inf")
            token = draw(logits, temperature, generator).masked_fill(done, PAD)
            tokens.append(token)
            if stop is not None:
                done |= token == stop
                if bool(done.all()):
                    break
            out, state = self.rnn.step(self._embed(token, conditions), state)
        if not tokens:
            return torch.zeros(n, 0, dtype=torch.long, device=device)
        return torch.stack(tokens, dim=1)


MODELS.add("conditional_generator", ConditionalGenerator)

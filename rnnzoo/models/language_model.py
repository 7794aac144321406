"""Language model: the next token from the tokens before it, its state carried on."""

from __future__ import annotations

from typing import Any, Literal, TypeVar

import torch
from pydantic import Field, field_validator
from torch import Tensor, nn

from rnnzoo.errors import ConfigError
from rnnzoo.models.base import MODELS, WORD_DROPOUT, RecurrentArgs, draw
from rnnzoo.regularizers import embedding_dropout
from rnnzoo.tasks import ModelIO
from rnnzoo.tasks.base import TargetLogProbs

PAD = 0  # every token task pads with 0; it is never generated

State = tuple[Tensor, ...]
M = TypeVar("M", bound="LanguageModel")


class LanguageModel(nn.Module):
    """A recurrent language model over token ids, trained with truncated BPTT.

    Embedding (pad id 0) -> unidirectional ``rnnzoo.Recurrent`` -> dropout -> linear
    ``decoder`` to next-token scores. The names ``embedding`` and ``rnn`` are the
    ``sequence_classifier``'s, so that a classifier starts from a trained language
    model's parameters by matching names.

    ``tie_weights`` (Press & Wolf 2016; Inan et al. 2017): the decoder's weight is the
    embedding matrix. It needs the decoder's input to be ``embedding_dim`` wide, so when
    ``hidden_size`` differs a ``projection`` (linear, hidden to embedding size) comes
    before the decoder; with equal sizes, or untied, there is none.

    ``adaptive_softmax`` (Grave et al. 2017; ``torch.nn.AdaptiveLogSoftmaxWithLoss``):
    cutoffs that cut the vocabulary, ordered by frequency as the word tokenizer numbers
    it, into a head of frequent tokens and tail clusters of narrower projections (each
    ``adaptive_div`` times narrower than the last). A 20,000-word softmax costs ten times
    a 256-wide LSTM step per token; the head costs a tenth of that. While training (the
    trainer passes targets) the model then returns only each target's log-probability
    (``TargetLogProbs``), computing a cluster only for the tokens in it; scoring and
    sampling get full log-probabilities. It replaces ``decoder`` and cannot be tied.

    **Carried state.** The model keeps the final state of its last forward pass,
    detached (gradients stop at the batch boundary), and starts the next pass from it,
    as long as the mode (train/eval) is unchanged and the batch has as many rows: a
    batch of ``rnnzoo.data.streams.TextStream`` continues the one before it row by row.
    Switching to training, every ``eval()`` (even in eval mode already: each scoring
    pass begins with it) and another batch size start from zeros, and so does
    ``reset_state()``; ``train()`` while training keeps the state. The trainer sets
    train mode at every epoch start and scoring switches to eval and back, so every
    epoch and every evaluation starts from zeros without either knowing. The state is
    the module's extra state in ``state_dict`` (key ``_extra_state``, one tensor), so a
    checkpoint taken mid-epoch resumes from it: a model loaded in train mode goes on
    from it.

    Inputs: ``inputs, lengths=None, targets=None``
        inputs: (B, T) token ids; lengths: (B,) valid steps (a stream's batches have
            all T); targets: unused.

    Output: (B, T, V) scores of the token after each step.
    """

    output = "language_model"

    class Args(RecurrentArgs):
        name: Literal["language_model"] = "language_model"
        embedding_dim: int = Field(128, ge=1)
        embedding_dropout: float = Field(0.0, ge=0, lt=1, description="on embedded tokens")
        word_dropout: float = Field(0.0, ge=0, lt=1, description=WORD_DROPOUT)
        head_dropout: float = Field(0.0, ge=0, lt=1, description="before the decoder")
        tie_weights: bool = Field(
            False, description="the decoder's weight is the embedding's (a projection "
            "from hidden_size to embedding_dim comes first when they differ)",
        )  # fmt: skip
        adaptive_softmax: list[int] | None = Field(
            None, description="cutoffs of an adaptive softmax, e.g. [2000, 10000]; null: full"
        )
        adaptive_div: float = Field(4.0, gt=1, description="each tail cluster this much narrower")

        @field_validator("bidirectional")
        @classmethod
        def _forward_only(cls, bidirectional: bool) -> bool:
            if bidirectional:
                raise ValueError(
                    "a language model reads left to right: bidirectional must be false"
                )
            return bidirectional

    def __init__(self, vocab_size: int, args: Args) -> None:
        super().__init__()
        if args.bidirectional:
            raise ConfigError("a language model reads left to right: bidirectional must be false")
        self.embedding = nn.Embedding(vocab_size, args.embedding_dim, padding_idx=PAD)
        self.embedding_dropout = nn.Dropout(args.embedding_dropout)
        self.word_dropout = args.word_dropout
        self.rnn = args.recurrent(args.embedding_dim, bidirectional=False)
        self.head_dropout = nn.Dropout(args.head_dropout)
        width = args.hidden_size
        self.projection: nn.Linear | None = None
        if args.tie_weights and args.hidden_size != args.embedding_dim:
            self.projection = nn.Linear(args.hidden_size, args.embedding_dim)
            width = args.embedding_dim
        self.decoder: nn.Linear | None = None
        self.adaptive: nn.AdaptiveLogSoftmaxWithLoss | None = None
        if args.adaptive_softmax is None:
            self.decoder = nn.Linear(width, vocab_size)
            if args.tie_weights:
                self.decoder.weight = self.embedding.weight
        else:
            self.adaptive = _adaptive(width, vocab_size, args)
        self._state: State | None = None  # the last pass's final state, detached

    @classmethod
    def build(cls, args: Args, io: ModelIO) -> LanguageModel:
        if io.vocab_size is None:
            raise ConfigError("model language_model needs a task with token inputs")
        return cls(io.vocab_size, args)

    # -- the carried state --------------------------------------------------------------

    def reset_state(self) -> None:
        """Start the next forward pass from zeros."""
        self._state = None

    def train(self: M, mode: bool = True) -> M:
        if not mode or not self.training:  # a new pass over a split starts from zeros
            self.reset_state()
        return super().train(mode)

    def get_extra_state(self) -> Tensor:
        """The carried state as one tensor, (S, L, B, H) for S state tensors (an LSTM's
        h and c: 2); empty when there is none. One tensor: ``torch.load`` with
        ``weights_only`` opens it, and code that copies parameters by name and shape
        finds a shape."""
        if self._state is None:
            return torch.empty(0)
        return torch.stack(self._state)

    def set_extra_state(self, state: Any) -> None:
        self._state = None if state.numel() == 0 else tuple(state.unbind(0))

    # -- forward ----------------------------------------------------------------------

    def _embed(self, tokens: Tensor) -> Tensor:
        """tokens: (B, T) or (B,) -> step inputs (B, T, E) or (B, E)."""
        x = embedding_dropout(self.embedding, tokens, self.word_dropout, self.training)
        return self.embedding_dropout(x)

    def _features(self, out: Tensor) -> Tensor:
        """The recurrent layer's outputs (..., H) -> the decoder's input (..., W)."""
        y = self.head_dropout(out)
        return y if self.projection is None else self.projection(y)

    def _scores(self, out: Tensor) -> Tensor:
        """The recurrent layer's outputs (..., H) -> next-token scores (..., V): logits,
        or with an adaptive softmax log-probabilities (scores all the same)."""
        y = self._features(out)
        if self.adaptive is not None:
            return self.adaptive.log_prob(y.flatten(0, -2)).view(*y.shape[:-1], -1)
        assert self.decoder is not None
        return self.decoder(y)

    def forward(
        self, inputs: Tensor, lengths: Tensor | None = None, targets: Tensor | None = None
    ) -> Tensor | TargetLogProbs:
        """inputs: (B, T) token ids, lengths: (B,) or None -> (B, T, V) scores; with an
        adaptive softmax and targets (B, T): their log-probabilities, ``TargetLogProbs``."""
        x = self._embed(inputs)  # (B, T, E)
        start = self._state
        if start is not None and start[0].shape[1] != inputs.shape[0]:
            start = None  # another batch size: not the streams the state belongs to
        if start is not None:
            start = tuple(s.to(device=x.device, dtype=x.dtype) for s in start)
        out, h_n = self.rnn(x, start, lengths=lengths)
        assert isinstance(out, Tensor)
        self._state = tuple(s.detach() for s in (h_n if isinstance(h_n, tuple) else (h_n,)))
        if self.adaptive is not None and targets is not None:  # training: the targets' only
            y = self._features(out).flatten(0, 1)  # (B*T, W)
            picked = self.adaptive(y, targets.flatten()).output  # (B*T,)
            return TargetLogProbs(picked.view_as(targets))
        return self._scores(out)  # (B, T, V)

    @torch.no_grad()
    def generate(
        self,
        prompt: Tensor,
        samples: int,
        max_len: int,
        temperature: float = 1.0,
        generator: torch.Generator | None = None,
        stop: int | None = None,
    ) -> Tensor:
        """Continue ``prompt`` (P,) token ids, P >= 1, ``samples`` times, one
        ``Recurrent.step`` at a time from a zero state; the carried state is left alone.

        ``temperature`` 0 takes the argmax (greedy); otherwise ``torch.multinomial``
        draws from ``generator``, so a seeded one repeats a sample. Pad is never drawn.
        Returns (N, L) token ids, L <= max_len: each row ends at its first ``stop``
        (kept); positions after it are pad (0).
        """
        device = self.embedding.weight.device
        feed = prompt.to(device)[None, :].expand(samples, -1)  # (N, P)
        state: Any = None
        for t in range(feed.shape[1]):  # the prompt: read, not sampled
            out, state = self.rnn.step(self._embed(feed[:, t]), state)
        tokens: list[Tensor] = []
        done = torch.zeros(samples, dtype=torch.bool, device=device)
        for _ in range(max_len):
            logits = self._scores(out).float()  # (N, V)
            logits[:, PAD] = float("-inf")
            token = draw(logits, temperature, generator).masked_fill(done, PAD)
            tokens.append(token)
            if stop is not None:
                done |= token == stop
                if bool(done.all()):
                    break
            out, state = self.rnn.step(self._embed(token), state)
        if not tokens:
            return torch.zeros(samples, 0, dtype=torch.long, device=device)
        return torch.stack(tokens, dim=1)


def _adaptive(
    width: int, vocab_size: int, args: LanguageModel.Args
) -> nn.AdaptiveLogSoftmaxWithLoss:
    """The adaptive softmax the keys describe; cutoffs it refuses are a ConfigError."""
    cutoffs = args.adaptive_softmax or []
    if args.tie_weights:
        raise ConfigError(
            "model.adaptive_softmax cannot be tied to the embedding: set tie_weights false"
        )
    if (
        not cutoffs
        or cutoffs != sorted(set(cutoffs))
        or cutoffs[0] < 1
        or cutoffs[-1] >= vocab_size
    ):
        raise ConfigError(
            f"model.adaptive_softmax: {cutoffs} must be increasing token counts between 1 and "
            f"{vocab_size - 1} (the vocabulary has {vocab_size} tokens)"
        )
    return nn.AdaptiveLogSoftmaxWithLoss(width, vocab_size, cutoffs, div_value=args.adaptive_div)


MODELS.add("language_model", LanguageModel)

"""Encoder-decoder sequence-to-sequence (Sutskever et al. 2014), optionally with Luong
attention (Luong et al. 2015, "general" score), greedy or beam-search decoding.

Token ids in, token ids out, each side its own length. Id 0 is padding on both sides,
1 (BOS) starts the decoder and 2 (EOS) ends an output, as in ``rnnzoo.data.number_words``.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn

from rnnzoo.errors import ConfigError
from rnnzoo.models.base import MODELS, WORD_DROPOUT, RecurrentArgs
from rnnzoo.regularizers import embedding_dropout
from rnnzoo.tasks import ModelIO
from rnnzoo.tasks.base import Decoded

PAD, BOS, EOS = 0, 1, 2

State = Tensor | tuple[Tensor, ...]


class Memory(NamedTuple):
    """The encoded source that attention reads: values (B, S, D*H), keys (B, S, H) (the
    values through W_a) and mask (B, S), True at real steps (None: no padding)."""

    values: Tensor
    keys: Tensor
    mask: Tensor | None

    def repeat(self, k: int) -> Memory:
        """Each sequence's memory ``k`` times in a row, for k beam hypotheses each."""
        mask = None if self.mask is None else self.mask.repeat_interleave(k, 0)
        return Memory(self.values.repeat_interleave(k, 0), self.keys.repeat_interleave(k, 0), mask)


class Seq2Seq(nn.Module):
    """Sequence-to-sequence: a recurrent encoder-decoder, with optional attention.

    Embedding -> ``Recurrent`` encoder -> bridge -> ``Recurrent`` decoder -> (attention)
    -> linear to output scores.

    * The encoder takes the source lengths, so padded source steps change nothing; it
      may be bidirectional. Its final state starts the decoder (same cell, layers and
      size, one direction): when bidirectional, each layer's two final states (h, and c
      for an LSTM) are concatenated and mapped by a learned linear layer per state.
    * ``attention: luong``: at each decoder output s_t (B, H), scores s_t^T W_a h_s over
      the real source steps, context c_t = sum softmax * h_s, and the attentional state
      tanh(W_c [s_t; c_t]) feeds the output layer (no input feeding, so a teacher-forced
      pass is one ``Recurrent.forward`` call). ``none``: s_t feeds it directly.
    * With targets (B, U), the decoder reads BOS then the targets shifted right and
      returns logits for every target position. In training, each sequence instead reads
      its own previous prediction at each step with probability 1 - ``teacher_forcing``
      (a coin per sequence and step); outside training targets are always read.
    * Without targets, ``decode``: greedy (``beam_width`` 1) or beam search, up to
      ``max_output_len`` tokens or until every output has ended with EOS.
    """

    output = "sequence"
    never: Tensor  # (V,) added to scores before choosing a token: -inf for pad and BOS

    class Args(RecurrentArgs):
        name: Literal["seq2seq"] = "seq2seq"
        embedding_dim: int = Field(64, ge=1, description="source and target token embeddings")
        word_dropout: float = Field(0.0, ge=0, lt=1, description=WORD_DROPOUT)
        attention: Literal["none", "luong"] = "luong"
        teacher_forcing: float = Field(
            1.0, ge=0, le=1, description="training: chance to read the true previous token"
        )
        beam_width: int = Field(1, ge=1, description="decoding: 1 is greedy")
        length_penalty: float = Field(
            0.0, ge=0, description="beam search: alpha of GNMT's ((5 + len) / 6) ** alpha"
        )

    def __init__(self, io: ModelIO, args: Args) -> None:
        super().__init__()
        if io.vocab_size is None or io.max_output_len is None:
            raise ConfigError("model seq2seq needs a task with token inputs and outputs")
        self.max_len, self.vocab_out = io.max_output_len, io.output_size
        self.teacher_forcing, self.beam_width = args.teacher_forcing, args.beam_width
        self.length_penalty = args.length_penalty
        e, h, d = args.embedding_dim, args.hidden_size, 2 if args.bidirectional else 1
        self.source_embedding = nn.Embedding(io.vocab_size, e, padding_idx=PAD)
        self.target_embedding = nn.Embedding(io.output_size, e, padding_idx=PAD)
        self.word_dropout = args.word_dropout  # source and target words, each its own draw
        self.encoder, self.decoder = args.recurrent(e), args.recurrent(e, bidirectional=False)
        self.bridge = nn.ModuleList(
            nn.Linear(2 * h, h) for _ in range(self.encoder.num_states if d == 2 else 0)
        )
        self.attention = args.attention == "luong"
        if self.attention:
            self.score = nn.Linear(d * h, h, bias=False)  # W_a, applied to the source side
            self.combine = nn.Linear(h + d * h, h, bias=False)  # W_c
        self.head = nn.Linear(h, io.output_size)
        never = torch.zeros(io.output_size)
        never[[PAD, BOS]] = float("-inf")  # scored like any token, never chosen
        self.register_buffer("never", never, persistent=False)

    @classmethod
    def build(cls, args: Args, io: ModelIO) -> Seq2Seq:
        return cls(io, args)

    # -- the parts ------------------------------------------------------------------

    def _embed(self, embedding: nn.Embedding, ids: Tensor) -> Tensor:
        """ids (B, ...) -> (B, ..., E), whole words dropped in training (``word_dropout``)."""
        return embedding_dropout(embedding, ids, self.word_dropout, self.training)

    def encode(self, inputs: Tensor, lengths: Tensor | None) -> tuple[Memory, State]:
        """inputs (B, S) ids, lengths (B,) -> memory, the decoder's initial state."""
        out, h_n = self.encoder(self._embed(self.source_embedding, inputs), lengths=lengths)
        assert isinstance(out, Tensor)  # (B, S, D*H)
        mask = None
        if lengths is not None:
            steps = torch.arange(inputs.shape[1], device=inputs.device)
            mask = steps[None, :] < lengths.to(inputs.device)[:, None]
        keys = self.score(out) if self.attention else out
        return Memory(out, keys, mask), self._bridge(h_n)

    def _bridge(self, h_n: State) -> State:
        """Encoder final states (L*D, B, H) -> decoder initial states (L, B, H)."""
        if not self.bridge:
            return h_n
        states = (h_n,) if isinstance(h_n, Tensor) else tuple(h_n)
        layers = self.encoder.num_layers
        out = []
        for s, linear in zip(states, self.bridge, strict=True):
            both = s.view(layers, 2, *s.shape[1:]).permute(0, 2, 1, 3).flatten(2)  # (L, B, 2H)
            out.append(linear(both))
        return out[0] if len(out) == 1 else tuple(out)

    def readout(self, s: Tensor, memory: Memory) -> Tensor:
        """Decoder outputs (B, U, H) -> scores (B, U, V), through attention if any."""
        if not self.attention:
            return self.head(s)
        scores = s @ memory.keys.transpose(1, 2)  # (B, U, S)
        if memory.mask is not None:
            scores = scores.masked_fill(~memory.mask[:, None, :], float("-inf"))
        context = torch.softmax(scores, dim=-1) @ memory.values  # (B, U, D*H)
        return self.head(torch.tanh(self.combine(torch.cat([s, context], dim=-1))))

    def step(self, tokens: Tensor, state: State, memory: Memory) -> tuple[Tensor, State]:
        """One decoder step: previous tokens (B,) -> scores (B, V), the new state."""
        s, state = self.decoder.step(self._embed(self.target_embedding, tokens), state)
        return self.readout(s.unsqueeze(1), memory).squeeze(1), state

    # -- forward and decoding -------------------------------------------------------

    def forward(
        self, inputs: Tensor, lengths: Tensor | None = None, targets: Tensor | None = None
    ) -> Decoded:
        """inputs (B, S) ids, lengths (B,) -> ``Decoded``: with targets (B, U), logits
        (B, U, V) of each target position; without, ``decode`` with the configured beam
        width, logits (B, max_output_len, V)."""
        if targets is None:
            return self.decode(inputs, lengths)
        memory, state = self.encode(inputs, lengths)
        first = targets.new_full((len(targets), 1), BOS)
        ratio = self.teacher_forcing if self.training else 1.0
        if ratio == 1.0:  # every step reads the truth: the whole sequence in one call
            previous = torch.cat([first, targets[:, :-1]], dim=1)  # (B, U)
            s, _ = self.decoder(self._embed(self.target_embedding, previous), state)
            assert isinstance(s, Tensor)
            logits = self.readout(s, memory)
        else:
            tokens, steps = first[:, 0], []
            for t in range(targets.shape[1]):
                scores, state = self.step(tokens, state, memory)
                steps.append(scores)
                truth = torch.rand(len(targets), device=targets.device) < ratio
                tokens = torch.where(truth, targets[:, t], self._choose(scores.detach()))
            logits = torch.stack(steps, dim=1)
        return Decoded(logits, self._choose(logits.detach()))

    def _choose(self, logits: Tensor) -> Tensor:
        """The best token that decoding may emit (never pad or BOS): (..., V) -> (...)."""
        return (logits + self.never).argmax(-1)

    def decode(
        self,
        inputs: Tensor,
        lengths: Tensor | None = None,
        beam_width: int | None = None,
        max_len: int | None = None,
    ) -> Decoded:
        """Decode without targets: inputs (B, S), lengths (B,) -> ``Decoded`` with logits
        (B, max_len, V) and tokens (B, max_len). ``beam_width`` and ``max_len`` default to
        the config's and the task's."""
        k, max_len = beam_width or self.beam_width, max_len or self.max_len
        memory, state = self.encode(inputs, lengths)
        if k == 1:
            return self._greedy(memory, state, len(inputs), max_len)
        return self._beam(memory, state, len(inputs), max_len, k)

    def _greedy(self, memory: Memory, state: State, batch: int, max_len: int) -> Decoded:
        tokens = torch.full((batch,), BOS, dtype=torch.long, device=memory.values.device)
        done = torch.zeros(batch, dtype=torch.bool, device=tokens.device)
        all_logits, all_tokens = [], []
        for _ in range(max_len):
            logits, state = self.step(tokens, state, memory)
            tokens = self._choose(logits).masked_fill(done, PAD)
            all_logits.append(logits.masked_fill(done[:, None], 0.0))
            all_tokens.append(tokens)
            done = done | (tokens == EOS)
            if bool(done.all()):
                break
        return _padded(torch.stack(all_logits, 1), torch.stack(all_tokens, 1), max_len)

    def _beam(self, memory: Memory, state: State, batch: int, max_len: int, k: int) -> Decoded:
        """Beam search over B*K hypotheses; an ended one stays in the beam, extended by
        pad at no cost. Ranked by total log-probability (divided by the length penalty at
        the end); stops when every hypothesis has ended, or when no penalty is set and
        every sequence's best hypothesis has ended (no other can overtake it then)."""
        device = memory.values.device
        memory, state = memory.repeat(k), _repeat_state(state, k)
        scores = torch.full((batch, k), float("-inf"), device=device)
        scores[:, 0] = 0.0  # one live hypothesis to start, so the first step has no twins
        tokens = torch.full((batch * k,), BOS, dtype=torch.long, device=device)
        done = torch.zeros(batch, k, dtype=torch.bool, device=device)
        seqs = torch.zeros(batch, k, 0, dtype=torch.long, device=device)
        seq_logits = torch.zeros(batch, k, 0, self.vocab_out, device=device)
        # after EOS: log-probability 0 for pad, -inf for all else
        ended = torch.full((self.vocab_out,), float("-inf"), device=device)
        ended[PAD] = 0.0
        rows = torch.arange(batch, device=device)[:, None]  # (B, 1): x[rows, parent] picks
        for _ in range(max_len):
            logits, state = self.step(tokens, state, memory)  # (B*K, V)
            logits = logits.view(batch, k, -1)
            logp = torch.log_softmax(logits.float(), -1) + self.never
            logp = torch.where(done[..., None], ended, logp)
            total = (scores[..., None] + logp).view(batch, -1)  # (B, K*V)
            scores, best = total.topk(k, dim=-1)  # (B, K), sorted
            parent, tokens = best // self.vocab_out, best % self.vocab_out
            logits = logits.masked_fill(done[..., None], 0.0)
            seqs = torch.cat([seqs[rows, parent], tokens[..., None]], dim=2)
            seq_logits = torch.cat(
                [seq_logits[rows, parent], logits[rows, parent].unsqueeze(2)], dim=2
            )
            done = done[rows, parent] | (tokens == EOS)
            flat = (parent + rows * k).view(-1)
            state = _select_state(state, flat)
            tokens = tokens.view(-1)
            if bool(done.all()) or (self.length_penalty == 0 and bool(done[:, 0].all())):
                break
        size = (seqs != PAD).sum(-1).clamp(min=1)  # tokens, EOS included
        rank = scores / ((5 + size) / 6) ** self.length_penalty
        best = rank.argmax(-1, keepdim=True)  # (B, 1)
        return _padded(seq_logits[rows, best][:, 0], seqs[rows, best][:, 0], max_len)


def _padded(logits: Tensor, tokens: Tensor, steps: int) -> Decoded:
    """Pad logits (B, U, V) with zeros and tokens (B, U) with pad to ``steps`` positions."""
    missing = steps - tokens.shape[1]
    return Decoded(F.pad(logits, (0, 0, 0, missing)), F.pad(tokens, (0, missing), value=PAD))


def _repeat_state(state: State, times: int) -> State:
    """Each sequence's state ``times`` times in a row, along the batch (dim 1)."""
    if isinstance(state, Tensor):
        return state.repeat_interleave(times, dim=1)
    return tuple(s.repeat_interleave(times, dim=1) for s in state)


def _select_state(state: State, index: Tensor) -> State:
    """The states (L, N, H) of hypotheses ``index`` (N,), along the batch."""
    if isinstance(state, Tensor):
        return state.index_select(1, index)
    return tuple(s.index_select(1, index) for s in state)


MODELS.add("seq2seq", Seq2Seq)

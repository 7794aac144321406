"""minGRU and minLSTM (Feng et al. 2024, "Were RNNs All We Needed?"): gates that see x_t
only, so each step is linear in the state and a whole sequence runs as one parallel scan.

    minGRU   z_t  = sigmoid(W_iz x_t + b_iz)                        update gate
             h~_t = g(W_in x_t + b_in)                              candidate
             h_t  = (1 - z_t) * h_{t-1} + z_t * h~_t

    minLSTM  i_t  = sigmoid(W_ii x_t + b_ii)                        input gate
             f_t  = sigmoid(W_if x_t + b_if)                        forget gate
             h~_t = g(W_ig x_t + b_ig)                              candidate
             h_t  = f_t / (f_t + i_t) * h_{t-1} + i_t / (f_t + i_t) * h~_t

g is the paper's activation for its log-space scan, g(x) = x + 1/2 for x >= 0 and
sigmoid(x) below: continuous, and positive, so log h~ exists. Both modes use it, so
they compute the same function (with tanh, only the step-by-step mode would exist).

Layout: torch.nn's gate order without the gates that need h_{t-1}: minGRU has GRU's
(z, n) blocks of (r, z, n), minLSTM LSTM's (i, f, g) of (i, f, g, o), in ``weight_ih``
(num_chunks * H, I) and ``bias_ih``. There is no ``weight_hh`` or ``bias_hh``.

Both cells are h_t = a_t h_{t-1} + b_t with a_t in (0, 1) and b_t > 0 from x_t alone.
``step`` applies that once (``impl='loop'``, ``Recurrent.step``, rnnzoo.diagnostics);
``parallel_scan`` does all T steps at once (``impl='scan'``, which ``auto`` picks) with
Heinsen's (2023) log-space scan, ``log_space_scan``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from rnnzoo.cells.base import CELLS, RecurrentCell, State, Weights


def g(x: Tensor) -> Tensor:
    """The candidate's activation: x + 1/2 for x >= 0, sigmoid(x) below; always > 0."""
    return torch.where(x >= 0, x + 0.5, torch.sigmoid(x))


def log_g(x: Tensor) -> Tensor:
    """log g(x), without forming g (so no log of an underflowed sigmoid)."""
    # relu keeps the branch not taken finite, so its zero gradient stays zero, not NaN
    return torch.where(x >= 0, torch.log(F.relu(x) + 0.5), F.logsigmoid(x))


def log_space_scan(
    log_a: Tensor, log_b: Tensor, h0: Tensor, valid: Tensor | None, reverse: bool
) -> tuple[Tensor, Tensor]:
    """h_t = a_t * h_{t-1} + b_t for every t at once, given log a_t and log b_t.

    log_a, log_b: (T, B, H), in time order; h0: (B, H), of any sign; valid: (T, B, 1)
    bool, True at real steps (None: none is padded); ``reverse``: each sequence runs
    from its own last valid step back to step 0. Returns h (T, B, H) in time order,
    zero at padded steps, and the state after the last step run, (B, H).

    Unrolled, h_t = A_t h_0 + sum_{k<=t} (A_t / A_k) b_k with A_t = a_1 ... a_t, so with
    a*_t = log A_t:

        h_t = exp(a*_t) h_0 + exp(log_h_t),  log_h_t = log sum_{k<=t} exp(a*_t - a*_k + log b_k)

    (Heinsen 2023 computes log_h_t as a*_t + logcumsumexp(log b - a*); ``chunked_scan``
    gets it as a scan of logaddexp, which is faster on CPU and avoids subtracting two
    large terms.) Heinsen's form puts log h_0 inside the sum, which needs h_0 > 0 (the
    paper's code passes h_0 through g to get that, changing the state given). Kept
    outside, h_0 may be zero or negative and is the state the loop starts from.
    """
    index: Tensor | None = None  # (T, B, H) time order of the reverse scan, when padded
    if reverse and valid is None:
        log_a, log_b = log_a.flip(0), log_b.flip(0)
    elif reverse and valid is not None:
        # Reverse each sequence's valid steps and leave its padding at the end. A plain
        # flip would put the padding first, where the logcumsumexp of nothing (-inf)
        # gives NaN in its backward; this way the scan always starts at a real step.
        t = torch.arange(valid.shape[0], device=valid.device)[:, None, None]  # (T, 1, 1)
        lengths = valid.sum(0, keepdim=True)  # (1, B, 1)
        index = torch.where(valid, lengths - 1 - t, t).expand_as(log_a)  # (T, B, H)
        log_a, log_b = log_a.gather(0, index), log_b.gather(0, index)
    if valid is not None:  # padded steps keep the state: a_t = 1, b_t = 0
        log_a = log_a.masked_fill(~valid, 0.0)
        log_b = log_b.masked_fill(~valid, NEG)
    a_star, log_h = chunked_scan(log_a, log_b)  # (T, B, H) each
    h = log_h.exp()
    if h0.requires_grad or bool(h0.any()):  # a zero start (the usual one) adds nothing
        h = h + a_star.exp() * h0
    final = h[-1]  # (B, H): padding after a sequence's last valid step keeps its state
    if valid is not None:
        h = h.masked_fill(~valid, 0.0)
    if reverse:  # back to time order (the per-sequence reversal is its own inverse)
        h = h.flip(0) if index is None else h.gather(0, index)
    return h, final


NEG = -1e30
"""log 0 for the scan: finite, so that logaddexp's gradient never meets -inf - -inf."""


def chunked_scan(log_a: Tensor, log_b: Tensor, chunk: int | None = None) -> tuple[Tensor, Tensor]:
    """a*_t = sum_{k<=t} log a_k and log_h_t = log sum_{k<=t} (A_t / A_k) b_k, the log of
    h_t's part that does not come from h_0, for every t: 2 x (T, B, H).

    Both are scans: a*_t = a*_{t-1} + log a_t and log_h_t = logaddexp(log a_t +
    log_h_{t-1}, log b_t), from a*_0 = 0 and log_h_0 = log 0. Run two-level: every
    chunk of ``chunk`` steps (default about sqrt(T)) is scanned from zero, all chunks at
    once, then a short scan over the chunks carries each chunk's start into the next.
    That is about 2 sqrt(T) sequential steps on (T / chunk, B, H) slices instead of T
    on (B, H), and no cumsum or logcumsumexp along time, which are slow on CPU.
    """
    steps = log_a.shape[0]
    size = chunk or max(1, math.ceil(math.sqrt(steps)))
    n = math.ceil(steps / size)
    pad = n * size - steps  # trailing steps that keep the state: log a = 0, log b = log 0
    if pad:
        log_a = torch.cat([log_a, log_a.new_zeros(pad, *log_a.shape[1:])])
        log_b = torch.cat([log_b, log_b.new_full((pad, *log_b.shape[1:]), NEG)])
    la = log_a.view(n, size, *log_a.shape[1:]).unbind(1)  # size x (n, B, H)
    lb = log_b.view(n, size, *log_b.shape[1:]).unbind(1)
    a_loc, h_loc = [la[0]], [lb[0]]  # each chunk from zero
    for j in range(1, size):
        a_loc.append(a_loc[-1] + la[j])
        h_loc.append(torch.logaddexp(la[j] + h_loc[-1], lb[j]))
    a_end, h_end = a_loc[-1].unbind(0), h_loc[-1].unbind(0)  # n x (B, H)
    a_in, h_in = [torch.zeros_like(a_end[0])], [torch.full_like(h_end[0], NEG)]
    for c in range(1, n):  # the state each chunk starts from
        a_in.append(a_in[-1] + a_end[c - 1])
        h_in.append(torch.logaddexp(a_end[c - 1] + h_in[-1], h_end[c - 1]))
    a_start, h_start = torch.stack(a_in)[:, None], torch.stack(h_in)[:, None]  # (n, 1, B, H)
    a_rel = torch.stack(a_loc, 1)  # (n, size, B, H), within each chunk
    a_star = (a_rel + a_start).flatten(0, 1)[:steps]
    log_h = torch.logaddexp(a_rel + h_start, torch.stack(h_loc, 1)).flatten(0, 1)[:steps]
    return a_star, log_h


class MinimalCell(RecurrentCell):
    """What minGRU and minLSTM share: no recurrent weights, and a parallel scan of
    h_t = a_t h_{t-1} + b_t with coefficients from ``log_coefficients``."""

    recurrent_weights = False
    has_parallel_scan = True

    def log_coefficients(self, gi: Tensor) -> tuple[Tensor, Tensor]:
        """log a_t and log b_t from the gates' input part: (..., G) -> 2 x (..., H)."""
        raise NotImplementedError

    def parallel_scan(
        self, gi: Tensor, state: State, w: Weights, valid: Tensor | None, reverse: bool
    ) -> tuple[Tensor, State]:
        log_a, log_b = self.log_coefficients(gi)  # (T, B, H) each
        h, final = log_space_scan(log_a, log_b, state[0], valid, reverse)
        return h, (final,)


@CELLS.register("mingru")
class MinGRUCell(MinimalCell):
    """minGRU cell: gate blocks (z, n), the state is h."""

    num_chunks = 2

    def step(self, gi: Tensor, state: State, w: Weights) -> State:
        (h,) = state
        k, n = gi.chunk(2, dim=-1)  # (B, H) each
        z_t = torch.sigmoid(k)
        return ((1 - z_t) * h + z_t * g(n),)

    def log_coefficients(self, gi: Tensor) -> tuple[Tensor, Tensor]:
        k, n = gi.chunk(2, dim=-1)
        # log(1 - z_t) = logsigmoid(-k), exact where softplus turns linear (|k| > 20)
        return F.logsigmoid(-k), F.logsigmoid(k) + log_g(n)


@CELLS.register("minlstm")
class MinLSTMCell(MinimalCell):
    """minLSTM cell: gate blocks (i, f, g), the state is h (there is no separate c)."""

    num_chunks = 3

    @staticmethod
    def _log_ratio(i: Tensor, f: Tensor) -> Tensor:
        """log(f_t / i_t): f' = f / (f + i) = sigmoid(that), i' = sigmoid(-that), with no
        0 / 0 when both gates underflow."""
        return F.logsigmoid(f) - F.logsigmoid(i)

    def step(self, gi: Tensor, state: State, w: Weights) -> State:
        (h,) = state
        i, f, n = gi.chunk(3, dim=-1)  # (B, H) each
        d = self._log_ratio(i, f)
        return (torch.sigmoid(d) * h + torch.sigmoid(-d) * g(n),)

    def log_coefficients(self, gi: Tensor) -> tuple[Tensor, Tensor]:
        i, f, n = gi.chunk(3, dim=-1)
        d = self._log_ratio(i, f)
        return F.logsigmoid(d), F.logsigmoid(-d) + log_g(n)

"""Long short-term memory (Hochreiter & Schmidhuber 1997, with the forget gate of
Gers et al. 2000), in torch.nn's layout: gate blocks i, f, g, o.

    i_t  = sigmoid(W_ii x_t + b_ii + W_hi h_{t-1} + b_hi)    input gate
    f_t  = sigmoid(W_if x_t + b_if + W_hf h_{t-1} + b_hf)    forget gate
    C~_t = tanh(W_ig x_t + b_ig + W_hg h_{t-1} + b_hg)       candidate cell
    o_t  = sigmoid(W_io x_t + b_io + W_ho h_{t-1} + b_ho)    output gate
    C_t  = f_t * C_{t-1} + i_t * C~_t
    h_t  = o_t * tanh(C_t)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from rnnzoo.cells.base import CELLS, RecurrentCell, State, Weights


@CELLS.register("lstm")
class LSTMCell(RecurrentCell):
    """LSTM cell, equal to ``torch.nn.LSTMCell``. The state is (h, c)."""

    num_chunks = 4
    num_states = 2

    def step(self, gi: Tensor, state: State, w: Weights) -> State:
        h, c = state
        gates = gi + F.linear(h, w.weight_hh, w.bias_hh)  # (B, 4H)
        i, f, g, o = gates.chunk(4, dim=1)
        i_t = torch.sigmoid(i)
        f_t = torch.sigmoid(f)
        c_tilde = torch.tanh(g)
        o_t = torch.sigmoid(o)
        c_t = f_t * c + i_t * c_tilde
        h_t = o_t * torch.tanh(c_t)
        return h_t, c_t

"""Gated recurrent unit (Cho et al. 2014) in torch.nn's layout: gate blocks r, z, n,
with the recurrent bias of the candidate inside the reset product.

    r_t  = sigmoid(W_ir x_t + b_ir + W_hr h_{t-1} + b_hr)           reset gate
    z_t  = sigmoid(W_iz x_t + b_iz + W_hz h_{t-1} + b_hz)           update gate
    h~_t = tanh(W_in x_t + b_in + r_t * (W_hn h_{t-1} + b_hn))      candidate
    h_t  = (1 - z_t) * h~_t + z_t * h_{t-1}
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from rnnzoo.cells.base import CELLS, RecurrentCell, State, Weights


@CELLS.register("gru")
class GRUCell(RecurrentCell):
    """GRU cell, equal to ``torch.nn.GRUCell``."""

    num_chunks = 3

    def step(self, gi: Tensor, state: State, w: Weights) -> State:
        (h,) = state
        gh = F.linear(h, w.weight_hh, w.bias_hh)  # (B, 3H)
        i_r, i_z, i_n = gi.chunk(3, dim=1)
        h_r, h_z, h_n = gh.chunk(3, dim=1)
        r_t = torch.sigmoid(i_r + h_r)
        z_t = torch.sigmoid(i_z + h_z)
        h_tilde = torch.tanh(i_n + r_t * h_n)
        h_t = (1 - z_t) * h_tilde + z_t * h
        return (h_t,)

"""Two LSTM variants from "LSTM: A Search Space Odyssey" (Greff et al. 2017).

Peephole LSTM (Gers & Schmidhuber 2000): the gates also look at the cell state, the
input and forget gates at C_{t-1}, the output gate at the new C_t, through diagonal
weights (vectors of H):

    i_t = sigmoid(W_i x_t + U_i h_{t-1} + b_i + p_i * C_{t-1})
    f_t = sigmoid(W_f x_t + U_f h_{t-1} + b_f + p_f * C_{t-1})
    C~_t = tanh(W_g x_t + U_g h_{t-1} + b_g)
    C_t = f_t * C_{t-1} + i_t * C~_t
    o_t = sigmoid(W_o x_t + U_o h_{t-1} + b_o + p_o * C_t)
    h_t = o_t * tanh(C_t)

With p_i = p_f = p_o = 0 it is exactly ``lstm``.

Coupled input and forget gate (CIFG): one gate decides both, f_t = 1 - i_t, so the
cell keeps three gate blocks i, g, o (a quarter fewer weights than an LSTM):

    C_t = (1 - i_t) * C_{t-1} + i_t * C~_t
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnnzoo.cells.base import CELLS, RecurrentCell, State, Weights

PEEPHOLES = ("weight_ci", "weight_cf", "weight_co")  # p_i, p_f, p_o: (H,) each


@CELLS.register("peephole_lstm")
class PeepholeLSTMCell(RecurrentCell):
    """LSTM whose gates see the cell state (see the module). State (h, c)."""

    num_chunks = 4
    num_states = 2
    native_kind = "peephole_lstm"

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, **factory: Any):
        super().__init__(input_size, hidden_size, bias, **factory)
        for name in PEEPHOLES:
            self.register_parameter(name, nn.Parameter(self.weight_ih.new_empty(hidden_size)))
        self.reset_parameters()  # the peepholes too: U(-1/sqrt(H), 1/sqrt(H))

    def step(self, gi: Tensor, state: State, w: Weights) -> State:
        h, c = state
        i, f, g, o = (gi + F.linear(h, w.weight_hh, w.bias_hh)).chunk(4, dim=1)
        i_t = torch.sigmoid(i + w.weight_ci * c)
        f_t = torch.sigmoid(f + w.weight_cf * c)
        c_t = f_t * c + i_t * torch.tanh(g)
        o_t = torch.sigmoid(o + w.weight_co * c_t)
        return o_t * torch.tanh(c_t), c_t

    def native_args(self, w: Weights) -> tuple[str, Tensor | None, Tensor | None, State]:
        peepholes = torch.stack([getattr(w, name) for name in PEEPHOLES])  # (3, H)
        return "peephole_lstm", w.weight_hh, w.bias_hh, (peepholes,)


@CELLS.register("cifg_lstm")
class CIFGLSTMCell(RecurrentCell):
    """LSTM with the forget gate tied to the input gate (CIFG): f_t = 1 - i_t.

    Gate blocks i, g, o (see the module). State (h, c)."""

    num_chunks = 3
    num_states = 2
    native_kind = "cifg_lstm"

    def step(self, gi: Tensor, state: State, w: Weights) -> State:
        h, c = state
        i, g, o = (gi + F.linear(h, w.weight_hh, w.bias_hh)).chunk(3, dim=1)
        i_t = torch.sigmoid(i)
        c_t = c + i_t * (torch.tanh(g) - c)  # (1 - i_t) C_{t-1} + i_t C~_t
        return torch.sigmoid(o) * torch.tanh(c_t), c_t

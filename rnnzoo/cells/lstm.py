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

    # -- fast path: the same equations in place, and their derivatives (rnnzoo.fused) --

    fused_saved = (4, 1)  # the gate activations (i, f, C~, o), and tanh(C_t)

    def fused_step(self, gi, prev, matmul, b_hh, new, saved):
        (h, c), (h_t, c_t), (act, tanh_c) = prev, new, saved
        H = h.shape[1]
        torch.add(matmul(h), gi, out=act)  # gate pre-activations (b_hh is folded into gi)
        act[:, : 2 * H].sigmoid_()  # i_t, f_t
        act[:, 2 * H : 3 * H].tanh_()  # C~_t
        act[:, 3 * H :].sigmoid_()  # o_t
        i_t, f_t, c_tilde, o_t = act.chunk(4, dim=1)
        torch.mul(f_t, c, out=c_t).addcmul_(i_t, c_tilde)  # C_t = f_t C_{t-1} + i_t C~_t
        torch.tanh(c_t, out=tanh_c)
        torch.mul(o_t, tanh_c, out=h_t)  # h_t = o_t tanh(C_t)

    def fused_backward_prepare(self, saved, states, prev):
        act, tanh_c = saved
        H = tanh_c.shape[-1]
        # sigma' = s (1 - s) for i, f, o; tanh' = 1 - C~^2 for the candidate
        dact = torch.addcmul(act, act, act, value=-1.0)
        dact[..., 2 * H : 3 * H].add_(1.0).sub_(act[..., 2 * H : 3 * H])
        o_t = act[..., 3 * H :]
        # dC_t/dh_t along h_t = o_t tanh(C_t): o_t (1 - tanh(C_t)^2)
        dc_dh = o_t - o_t * tanh_c * tanh_c
        return dact.unbind(0), dc_dh.unbind(0)

    def fused_backward_step(self, t, d, pre, saved, prev, dgi, dgh):
        (dh, dc), (dact, dc_dh) = d, pre
        act, tanh_c = saved[0][t], saved[1][t]
        i_t, f_t, c_tilde, _ = act.chunk(4, dim=1)
        d_i, d_f, d_g, d_o = dgi.chunk(4, dim=1)
        dc_total = torch.addcmul(dc, dh, dc_dh[t])  # dL/dC_t
        torch.mul(dc_total, c_tilde, out=d_i)
        torch.mul(dc_total, prev[1][t], out=d_f)
        torch.mul(dc_total, i_t, out=d_g)
        torch.mul(dh, tanh_c, out=d_o)
        dgi.mul_(dact[t])  # through the gate nonlinearities
        return [None, dc_total * f_t]  # dL/dC_{t-1}

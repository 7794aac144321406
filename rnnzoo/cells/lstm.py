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
    native_kind = "lstm"

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
        # Everything that does not depend on the incoming gradients, for all T at once:
        #   dL/d(pre-activation of i) = dL/dC_t * C~_t * sigma'(i)       (same for f, C~)
        #   dL/d(pre-activation of o) = dL/dh_t * tanh(C_t) * sigma'(o)
        # so that each step needs only two products to fill all four gate gradients.
        act, tanh_c = saved
        H = tanh_c.shape[-1]
        i_t, f_t, c_tilde, o_t = act.chunk(4, dim=-1)
        deriv = torch.addcmul(act, act, act, value=-1.0)  # sigma' = s (1 - s)
        deriv[..., 2 * H : 3 * H].add_(1.0).sub_(c_tilde)  # tanh' = 1 - C~^2
        coef = torch.cat([c_tilde, prev[1], i_t, tanh_c], dim=-1).mul_(deriv)
        # dC_t/dh_t along h_t = o_t tanh(C_t): o_t (1 - tanh(C_t)^2)
        dc_dh = o_t - o_t * tanh_c * tanh_c
        return coef.unbind(0), dc_dh.unbind(0), f_t.unbind(0)

    def fused_backward_step(self, t, d, pre, saved, prev, dgi, dgh):
        (dh, dc), (coef, dc_dh, f_t) = d, pre
        B, H = dh.shape
        dc_total = torch.addcmul(dc, dh, dc_dh[t])  # dL/dC_t
        # i, f, C~ gates: dL/dC_t times their coefficients; o gate: dL/dh_t times its own
        ifg = coef[t][:, : 3 * H].view(B, 3, H)
        torch.mul(ifg, dc_total.unsqueeze(1), out=dgi[:, : 3 * H].view(B, 3, H))
        torch.mul(coef[t][:, 3 * H :], dh, out=dgi[:, 3 * H :])
        return [None, dc_total * f_t[t]]  # dL/dC_{t-1}

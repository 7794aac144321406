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
    native_kind = "gru"

    carries_h = True  # z_t * h_{t-1}: hidden dropout masks only the gates' copy

    def step(self, gi: Tensor, state: State, w: Weights) -> State:
        return self._step(gi, state[0], state[0], w)

    def step_dropped(self, gi: Tensor, state: State, w: Weights, mask: Tensor) -> State:
        return self._step(gi, state[0] * mask, state[0], w)

    def _step(self, gi: Tensor, h_in: Tensor, h: Tensor, w: Weights) -> State:
        """h_in (B, H) enters the gates, h (B, H) is carried into h_t: both are h_{t-1}
        unless hidden dropout has masked h_in."""
        gh = F.linear(h_in, w.weight_hh, w.bias_hh)  # (B, 3H)
        i_r, i_z, i_n = gi.chunk(3, dim=1)
        h_r, h_z, h_n = gh.chunk(3, dim=1)
        r_t = torch.sigmoid(i_r + h_r)
        z_t = torch.sigmoid(i_z + h_z)
        h_tilde = torch.tanh(i_n + r_t * h_n)
        h_t = (1 - z_t) * h_tilde + z_t * h
        return (h_t,)

    # -- fast path: the same equations in place, and their derivatives (rnnzoo.fused) --

    fused_saved = (3, 3)  # the activations (r, z, h~), and W_hh h_{t-1} + b_hh
    fused_gh_is_gi = False  # r_t multiplies the candidate's recurrent part

    def fused_fold_bias(self, gi, b_hh):
        return gi  # b_hn sits inside the reset product: added per step

    def fused_step(self, gi, prev, matmul, b_hh, new, saved):
        (h,), (h_t,), (act, gh) = prev, new, saved
        H = h.shape[1]
        if b_hh is None:
            gh.copy_(matmul(h))
        else:
            torch.add(matmul(h), b_hh, out=gh)  # W_hh h_{t-1} + b_hh
        rz = act[:, : 2 * H]
        torch.add(gi[:, : 2 * H], gh[:, : 2 * H], out=rz).sigmoid_()  # r_t, z_t
        r_t, z_t, h_tilde = act.chunk(3, dim=1)
        torch.addcmul(gi[:, 2 * H :], r_t, gh[:, 2 * H :], out=h_tilde).tanh_()
        torch.sub(h, h_tilde, out=h_t).mul_(z_t).add_(h_tilde)  # h~ + z (h - h~)

    def fused_backward_prepare(self, saved, states, prev):
        act, _ = saved
        H = act.shape[-1] // 3
        dact = torch.addcmul(act, act, act, value=-1.0)  # sigma' = s (1 - s)
        h_tilde, z_t = act[..., 2 * H :], act[..., H : 2 * H]
        dact[..., 2 * H :].add_(1.0).sub_(h_tilde)  # tanh' = 1 - h~^2
        dh_dz = prev[0] - h_tilde  # h_t = h~ + z (h_{t-1} - h~)
        dh_dn = 1.0 - z_t
        return dact.unbind(0), dh_dz.unbind(0), dh_dn.unbind(0)

    def fused_backward_step(self, t, d, pre, saved, prev, dgi, dgh):
        (dh,), (dact, dh_dz, dh_dn) = d, pre
        act, gh = saved[0][t], saved[1][t]
        H = dh.shape[1]
        r_t, z_t, _ = act.chunk(3, dim=1)
        d_r, d_z, d_n = dgi.chunk(3, dim=1)
        torch.mul(dh, dh_dz[t], out=d_z)
        torch.mul(dh, dh_dn[t], out=d_n)
        dgi[:, H:].mul_(dact[t][:, H:])  # through sigma(z) and tanh(candidate)
        torch.mul(d_n, gh[:, 2 * H :], out=d_r).mul_(dact[t][:, :H])  # through r_t
        dgh[:, : 2 * H].copy_(dgi[:, : 2 * H])
        torch.mul(d_n, r_t, out=dgh[:, 2 * H :])
        return [dh * z_t]

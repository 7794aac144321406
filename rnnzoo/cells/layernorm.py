"""Layer-normalised LSTM and GRU (Ba, Kiros & Hinton 2016, "Layer Normalization").

Each gate block's input part and recurrent part are normalised on their own, over all
the gates of a unit (the 4H or 3H pre-activations), before the biases are added; the
LSTM also normalises its cell state before the output squashes it:

    LSTM:  gates = LN(W_ih x_t; g_ih) + b_ih + LN(W_hh h_{t-1}; g_hh) + b_hh
           i, f, g, o = the four blocks of gates, as in ``rnnzoo.cells.lstm``
           C_t = f_t * C_{t-1} + i_t * C~_t
           h_t = o_t * tanh(LN(C_t; g_c, b_c))
    GRU:   gi = LN(W_ih x_t; g_ih) + b_ih,  gh = LN(W_hh h_{t-1}; g_hh) + b_hh,
           then r, z, h~, h_t from gi and gh exactly as in ``rnnzoo.cells.gru``.

LN(v; g, b) = g * (v - mean(v)) / sqrt(var(v) + eps) + b over the last dimension. The
gate normalisations have a gain only (``ln_ih_weight``, ``ln_hh_weight``): a shift
there would repeat ``b_ih``/``b_hh``. Gains start at 1, the cell's shift at 0. With
``_norm`` replaced by the identity, the cells are exactly ``lstm`` and ``gru``.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnnzoo.cells.base import CELLS, RecurrentCell, State, Weights

EPS = 1e-5


def _norm(x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """Layer normalisation over the last dimension with a gain (and shift)."""
    return F.layer_norm(x, x.shape[-1:], weight, bias, EPS)


class _LayerNormCell(RecurrentCell):
    """Adds the gains of the gate normalisations; ``init_parameters`` starts them at 1."""

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, **factory: Any):
        gates = self.num_chunks * hidden_size
        self._extra = {"ln_ih_weight": gates, "ln_hh_weight": gates, **self.cell_norm(hidden_size)}
        super().__init__(input_size, hidden_size, bias, **factory)

    @staticmethod
    def cell_norm(hidden_size: int) -> dict[str, int]:
        return {}

    def reset_parameters(self) -> None:
        for name, size in self._extra.items():
            if name not in self._parameters:
                self.register_parameter(name, nn.Parameter(self.weight_ih.new_empty(size)))
        super().reset_parameters()

    def init_parameters(self, params: dict[str, Tensor]) -> None:
        plain = {k: v for k, v in params.items() if not k.startswith("ln_")}
        super().init_parameters(plain)
        with torch.no_grad():
            for name, p in params.items():
                if name.startswith("ln_"):
                    p.fill_(1.0 if name.endswith("weight") else 0.0)

    def project(self, x: Tensor, w: Weights) -> Tensor:
        """LN(W_ih x) + b_ih: x (..., I) -> (..., num_chunks * H)."""
        gi = _norm(F.linear(x, w.weight_ih), w.ln_ih_weight, None)
        return gi if w.bias_ih is None else gi + w.bias_ih

    def recurrent(self, h: Tensor, w: Weights) -> Tensor:
        """LN(W_hh h) + b_hh: (B, H) -> (B, num_chunks * H)."""
        gh = _norm(F.linear(h, w.weight_hh), w.ln_hh_weight, None)
        return gh if w.bias_hh is None else gh + w.bias_hh


@CELLS.register("layernorm_lstm")
class LayerNormLSTMCell(_LayerNormCell):
    """LSTM with layer-normalised gates and cell state (see the module). State (h, c)."""

    num_chunks = 4
    num_states = 2
    native_kind = "layernorm_lstm"

    @staticmethod
    def cell_norm(hidden_size: int) -> dict[str, int]:
        return {"ln_cell_weight": hidden_size, "ln_cell_bias": hidden_size}

    def step(self, gi: Tensor, state: State, w: Weights) -> State:
        h, c = state
        i, f, g, o = (gi + self.recurrent(h, w)).chunk(4, dim=1)  # (B, H) each
        c_t = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h_t = torch.sigmoid(o) * torch.tanh(_norm(c_t, w.ln_cell_weight, w.ln_cell_bias))
        return h_t, c_t

    def native_args(self, w: Weights) -> tuple[str, Tensor | None, Tensor | None, State]:
        extras = (w.ln_hh_weight, w.ln_cell_weight, w.ln_cell_bias, w.ln_ih_weight)
        return "layernorm_lstm", w.weight_hh, w.bias_hh, extras


@CELLS.register("layernorm_gru")
class LayerNormGRUCell(_LayerNormCell):
    """GRU with layer-normalised input and recurrent parts (see the module)."""

    num_chunks = 3
    native_kind = "layernorm_gru"
    carries_h = True  # z_t * h_{t-1}; no step_dropped yet, so no hidden dropout

    def step(self, gi: Tensor, state: State, w: Weights) -> State:
        (h,) = state
        i_r, i_z, i_n = gi.chunk(3, dim=1)
        h_r, h_z, h_n = self.recurrent(h, w).chunk(3, dim=1)
        r_t = torch.sigmoid(i_r + h_r)
        z_t = torch.sigmoid(i_z + h_z)
        h_tilde = torch.tanh(i_n + r_t * h_n)
        return ((1 - z_t) * h_tilde + z_t * h,)

    def native_args(self, w: Weights) -> tuple[str, Tensor | None, Tensor | None, State]:
        return "layernorm_gru", w.weight_hh, w.bias_hh, (w.ln_hh_weight, w.ln_ih_weight)

"""The simple (Elman) RNN cell: h_t = act(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)."""

from __future__ import annotations

import functools
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from rnnzoo.cells.base import CELLS, RecurrentCell, State, Weights

_NONLINEARITIES = {"tanh": torch.tanh, "relu": torch.relu}


class RNNCell(RecurrentCell):
    """Elman RNN cell, equal to ``torch.nn.RNNCell`` (``nonlinearity`` "tanh" or "relu")."""

    num_chunks = 1
    native_kind = "rnn_tanh"  # or rnn_relu: see native_args

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        nonlinearity: str = "tanh",
        device: Any = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        if nonlinearity not in _NONLINEARITIES:
            raise ValueError(
                f"unknown nonlinearity {nonlinearity!r}; valid: {', '.join(_NONLINEARITIES)}"
            )
        self.nonlinearity = nonlinearity
        super().__init__(input_size, hidden_size, bias, device=device, dtype=dtype)

    @property
    def _act(self) -> Any:
        # Looked up, not stored: a stored torch.tanh pickles as getattr(torch._C..., "tanh"),
        # which torch.load(weights_only=True) refuses (builtins.getattr is not safe).
        return _NONLINEARITIES[self.nonlinearity]

    def step(self, gi: Tensor, state: State, w: Weights) -> State:
        (h,) = state
        h_t = self._act(gi + F.linear(h, w.weight_hh, w.bias_hh))
        return (h_t,)

    # -- fast path: the same equation in place, and its derivative (rnnzoo.fused) --

    fused_saved = ()  # backward needs only h_t itself

    def fused_step(self, gi, prev, matmul, b_hh, new, saved):
        h_t = torch.add(matmul(prev[0]), gi, out=new[0])  # b_hh is folded into gi
        if self.nonlinearity == "tanh":
            h_t.tanh_()
        else:
            h_t.relu_()

    def fused_backward_prepare(self, saved, states, prev):
        h = states[0]
        if self.nonlinearity == "tanh":
            return (1.0 - h * h).unbind(0)  # tanh' = 1 - h_t^2
        return (h > 0).to(h.dtype).unbind(0)  # relu' = [h_t > 0]

    def fused_backward_step(self, t, d, pre, saved, prev, dgi, dgh):
        torch.mul(d[0], pre[t], out=dgi)
        return [None]

    def native_args(self, w: Weights) -> tuple[str, Tensor | None, Tensor | None, State]:
        return f"rnn_{self.nonlinearity}", w.weight_hh, w.bias_hh, ()

    def extra_repr(self) -> str:
        s = super().extra_repr()
        return s if self.nonlinearity == "tanh" else f"{s}, nonlinearity={self.nonlinearity!r}"


CELLS.add("rnn_tanh", functools.partial(RNNCell, nonlinearity="tanh"))
CELLS.add("rnn_relu", functools.partial(RNNCell, nonlinearity="relu"))

"""Independently recurrent neural network (Li et al. 2018, "IndRNN").

Each unit sees only its own past, through one recurrent weight per unit:

    h_t = relu(W_ih x_t + b_ih + u * h_{t-1})         u: (H,), elementwise

Without a matrix mixing the units, the gradient through time of unit n is a product
of u_n and the relu's 0/1 slopes, so it neither vanishes nor explodes when
|u_n| <= ``recurrent_max``: the paper bounds |u| by gamma^(1/T) for a gradient growth of
at most gamma over T steps (2^(1/100) ~ 1.007 for T = 100). The bound is applied in
the forward pass (``u.clamp(-max, max)``), so no weight ever leaves it in effect. Stack
layers to mix units. The recurrent weight keeps torch.nn's name, ``weight_hh``, as a
vector; there is no recurrent bias.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnnzoo.cells.base import CELLS, RecurrentCell, State, Weights


@CELLS.register("indrnn")
class IndRNNCell(RecurrentCell):
    """IndRNN cell with a relu (see the module); ``recurrent_max`` bounds |u|."""

    num_chunks = 1
    native_kind = "indrnn"

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        recurrent_max: float = 2 ** (1 / 100),
        **factory: Any,
    ) -> None:
        if not recurrent_max > 0:
            raise ValueError(f"recurrent_max must be positive, got {recurrent_max}")
        self.recurrent_max = recurrent_max
        super().__init__(input_size, hidden_size, bias, **factory)
        self.weight_hh = nn.Parameter(self.weight_hh.new_empty(hidden_size))  # u: (H,)
        self.register_parameter("bias_hh", None)
        self.reset_parameters()

    def init_parameters(self, params: dict[str, Tensor]) -> None:
        """W_ih and b_ih as torch.nn; u ~ U(0, recurrent_max), the paper's start."""
        super().init_parameters({k: v for k, v in params.items() if k != "weight_hh"})
        with torch.no_grad():
            nn.init.uniform_(params["weight_hh"], 0.0, self.recurrent_max)

    def step(self, gi: Tensor, state: State, w: Weights) -> State:
        (h,) = state
        u = w.weight_hh.clamp(-self.recurrent_max, self.recurrent_max)
        return (F.relu(gi + u * h),)

    def native_args(self, w: Weights) -> tuple[str, Tensor | None, Tensor | None, State]:
        return "indrnn", w.weight_hh.clamp(-self.recurrent_max, self.recurrent_max), None, ()

    def extra_repr(self) -> str:
        return super().extra_repr() + f", recurrent_max={self.recurrent_max:.4g}"

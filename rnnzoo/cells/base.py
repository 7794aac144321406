"""What every recurrent cell shares: parameters, initialisation and the step contract.

A cell is split into two pieces of math so that a layer can run it fast and a reader
can see the equations:

* ``project(x, w)``: the input part of the gates, ``x @ W_ih^T + b_ih``. It has no
  time dependency, so a layer computes it for all time steps in one matrix product.
* ``step(gi, state, w)``: one step of the recurrence given that input part.

Both take the weights as an argument ``w``: any object with the cell's parameter names
as attributes. A lone cell passes itself; a layer (``rnnzoo.layers.Recurrent``) keeps
the parameters under torch.nn's names (``weight_hh_l1_reverse``, ...) and passes a view
with the plain names. That is how our layers keep torch.nn's ``state_dict`` keys while
every cell's math lives in exactly one place.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnnzoo.registry import Registry

State = tuple[Tensor, ...]


Weights = Any
"""Anything with a cell's parameters as attributes: the cell itself, or a layer's view."""


class RecurrentCell(nn.Module):
    """Base of all cells: ``num_chunks`` gate blocks of ``hidden_size`` rows each.

    Parameters (as ``torch.nn.RNNCell/LSTMCell/GRUCell``):
        weight_ih: (num_chunks * H, input_size)
        weight_hh: (num_chunks * H, H)
        bias_ih, bias_hh: (num_chunks * H,), or ``None`` when ``bias=False``
    ``weight_hh`` and ``bias_hh`` are ``None`` when ``recurrent_weights`` is False.
    """

    num_chunks: ClassVar[int]
    """Gate blocks stacked along the rows of ``weight_ih`` and ``weight_hh``."""
    num_states: ClassVar[int] = 1
    """Tensors in the state; ``state[0]`` is always the output ``h``."""
    fused_saved: ClassVar[tuple[int, ...] | None] = None
    """Fast path (``rnnzoo.fused``): sizes, in multiples of H, of the per-step tensors
    that ``fused_step`` saves for backward; None: the cell has no fast path."""
    fused_gh_is_gi: ClassVar[bool] = True
    """Whether the recurrent part of the gates has the same gradient as the input part."""
    recurrent_weights: ClassVar[bool] = True
    """Whether the cell has ``weight_hh``/``bias_hh``; False for gates that see only x_t."""
    native_kind: ClassVar[str | None] = None
    """The compiled time loop's name for this cell (rnnzoo.native); None: it has none."""
    has_parallel_scan: ClassVar[bool] = False
    """Whether ``parallel_scan`` runs a whole sequence at once (``impl='scan'``)."""

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        if input_size < 1 or hidden_size < 1:
            raise ValueError(
                f"input_size and hidden_size must be positive, got {input_size} and {hidden_size}"
            )
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.bias = bias
        factory: dict[str, Any] = {"device": device, "dtype": dtype}
        gates = self.num_chunks * hidden_size
        self.weight_ih = nn.Parameter(torch.empty(gates, input_size, **factory))
        self.weight_hh = nn.Parameter(torch.empty(gates, hidden_size, **factory))
        if bias:
            self.bias_ih = nn.Parameter(torch.empty(gates, **factory))
            self.bias_hh = nn.Parameter(torch.empty(gates, **factory))
        else:
            self.register_parameter("bias_ih", None)
            self.register_parameter("bias_hh", None)
        if not self.recurrent_weights:  # absent parts, as with bias=False (order kept)
            self.register_parameter("weight_hh", None)
            self.register_parameter("bias_hh", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        self.init_parameters(dict(self.named_parameters(recurse=False)))

    def init_parameters(self, params: dict[str, Tensor]) -> None:
        """Initialise this cell's parameters, given by name (a layer passes its own).

        torch.nn's rule: every parameter ~ U(-1/sqrt(H), 1/sqrt(H)). Cells with parts
        that need another start (a LayerNorm gain, say) override this.
        """
        bound = 1.0 / math.sqrt(self.hidden_size)
        with torch.no_grad():
            for p in params.values():
                nn.init.uniform_(p, -bound, bound)

    # -- the math -------------------------------------------------------------------

    def project(self, x: Tensor, w: Weights) -> Tensor:
        """Input part of the gates. x: (..., input_size) -> (..., num_chunks * H)."""
        return F.linear(x, w.weight_ih, w.bias_ih)

    def step(self, gi: Tensor, state: State, w: Weights) -> State:
        """One time step. gi: (B, num_chunks * H), state: num_states x (B, H)."""
        raise NotImplementedError

    def parallel_scan(
        self, gi: Tensor, state: State, w: Weights, valid: Tensor | None, reverse: bool
    ) -> tuple[Tensor, State]:
        """Every step of one direction at once, equal to ``step`` run over time
        (``impl='scan'``; set ``has_parallel_scan``). For cells whose step is linear in
        the state with coefficients from x_t alone (see rnnzoo.cells.minimal).

        gi: (T, B, num_chunks * H), ``project`` of every step; state: num_states x (B, H);
        valid: (T, B, 1) bool, True at real steps (None: no padding); ``reverse``: run
        each sequence from its own last valid step back to step 0. Returns the outputs
        (T, B, H) in time order, zero at padded steps, and the state at each sequence's
        last step run (padded steps keep the state, as in the loop).
        """
        raise NotImplementedError(f"{type(self).__name__} has no parallel scan")

    carries_h: ClassVar[bool] = False
    """Whether h_{t-1} also reaches h_t directly, not only through the recurrent input
    (GRU: z_t * h_{t-1}). Such a cell must override ``step_dropped`` to support
    ``Recurrent(hidden_dropout=...)``; the layer rejects the option otherwise."""

    def step_dropped(self, gi: Tensor, state: State, w: Weights, mask: Tensor) -> State:
        """``step`` with variational hidden dropout (rnnzoo.regularizers): the recurrent
        input is h_{t-1} * mask, mask (B, H) already scaled by 1 / (1 - p), while the
        state carried on stays whole. Masking state[0] does exactly that when h_{t-1}
        enters only through the recurrent input (``carries_h`` False)."""
        return self.step(gi, (state[0] * mask, *state[1:]), w)

    def native_args(self, w: Weights) -> tuple[str, Tensor | None, Tensor | None, State]:
        """What the compiled loop takes: its kind, the recurrent weight, ``b_hh`` and the
        cell's extra parameters in the kernel's order (rnnzoo/csrc/scan.cpp). The kernel
        does the cell's ``project`` itself, so a new kind states it there too."""
        assert self.native_kind is not None
        return self.native_kind, w.weight_hh, w.bias_hh, ()

    # -- the fast path's contract (see rnnzoo.fused); cells without it use the loop --

    def fused_fold_bias(self, gi: Tensor, b_hh: Tensor | None) -> Tensor:
        """gi for all steps, with b_hh added where the cell's math allows it."""
        return gi if b_hh is None else gi + b_hh

    def fused_step(
        self,
        gi: Tensor,
        prev: list[Tensor],
        matmul: Callable[[Tensor], Tensor],
        b_hh: Tensor | None,
        new: list[Tensor],
        saved: list[Tensor],
    ) -> None:
        """One forward step without autograd: write the new state into ``new`` and what
        backward needs into ``saved``. gi: (B, G); each state (B, H); ``matmul(h)`` is
        h @ W_hh^T, (B, G), computed the fastest way the device has."""
        raise NotImplementedError(f"{type(self).__name__} has no fused fast path")

    def fused_backward_prepare(
        self, saved: list[Tensor], states: list[Tensor], prev: list[Tensor]
    ) -> Any:
        """Derivatives needed by every backward step, computed for all T steps at once.

        saved: ``fused_step``'s buffers (T, B, k*H); states / prev: each state after and
        before every step, (T, B, H), in time order.
        """
        raise NotImplementedError

    def fused_backward_step(
        self,
        t: int,
        d: list[Tensor],
        pre: Any,
        saved: list[Tensor],
        prev: list[Tensor],
        dgi: Tensor,
        dgh: Tensor,
    ) -> list[Tensor | None]:
        """Backward of step t: ``d`` holds dL/d(state after t). Write the gradient of the
        gates' input part into ``dgi`` and of their recurrent part into ``dgh`` (the same
        tensor when ``fused_gh_is_gi``); return dL/d(state before t) without the
        ``dgh @ W_hh`` term, which the caller adds (None: no direct term)."""
        raise NotImplementedError

    # -- torch.nn.*Cell interface ---------------------------------------------------

    def forward(self, input: Tensor, hx: Tensor | State | None = None) -> Any:
        """One step on a batch, with torch.nn's cell interface.

        input: (B, input_size) or (input_size,) unbatched.
        hx: (B, H) for one-state cells, a tuple (h, c) for LSTM; zeros when ``None``.
        Returns h' (B, H), or (h', c') for LSTM; unbatched input gives unbatched output.
        """
        if input.dim() not in (1, 2):
            raise ValueError(
                f"{type(self).__name__}: expected input of shape (batch, {self.input_size}) or "
                f"({self.input_size},), got {tuple(input.shape)}"
            )
        if input.shape[-1] != self.input_size:
            raise ValueError(
                f"{type(self).__name__}: expected input feature size {self.input_size}, "
                f"got {input.shape[-1]}"
            )
        batched = input.dim() == 2
        x = input if batched else input.unsqueeze(0)
        state = self._initial_state(x, hx, batched)
        out = self.step(self.project(x, self), state, self)
        if not batched:
            out = tuple(s.squeeze(0) for s in out)
        return out[0] if self.num_states == 1 else out

    def _initial_state(self, x: Tensor, hx: Tensor | State | None, batched: bool) -> State:
        shape = (x.shape[0], self.hidden_size)
        if hx is None:
            return tuple(x.new_zeros(shape) for _ in range(self.num_states))
        states = (hx,) if isinstance(hx, Tensor) else tuple(hx)
        if len(states) != self.num_states:
            raise ValueError(
                f"{type(self).__name__}: expected a state of {self.num_states} tensor(s), "
                f"got {len(states)}"
            )
        states = tuple(s if batched else s.unsqueeze(0) for s in states)
        for s in states:
            if tuple(s.shape) != shape:
                raise ValueError(
                    f"{type(self).__name__}: expected hidden state of shape {shape}, "
                    f"got {tuple(s.shape)}"
                )
        return states

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if not self.bias:
            s += ", bias=False"
        return s


CELLS: Registry[Any] = Registry("cell")
"""Cell constructors by name: ``CELLS.get("lstm")(input_size, hidden_size, bias=...)``."""


def list_cells() -> list[str]:
    """Names of the registered cells, as used by ``Recurrent(cell=...)`` and configs."""
    return CELLS.names()

"""Run any registered cell over time: stacked, bidirectional, variable length.

``Recurrent`` is the one generic layer; ``RNN``, ``LSTM`` and ``GRU`` are it with the
cell fixed, and are drop-in replacements for their torch.nn twins: same constructor,
same ``state_dict`` keys (``weight_ih_l0``, ``bias_hh_l1_reverse``, ...), same outputs.

Variable length follows torch.nn's packed semantics exactly: a padded step never
touches the state, the reverse direction of a sequence starts at its own last valid
step, outputs at padded positions are zero and ``h_n`` is each sequence's state at its
last valid step.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from types import SimpleNamespace
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from rnnzoo import native
from rnnzoo import regularizers as reg
from rnnzoo.cells.base import CELLS, RecurrentCell, State
from rnnzoo.fused import fast_linear, fused_scan

Lengths = Tensor | Sequence[int]
StepFn = Callable[[Tensor, State, Any], State]
"""A cell's ``step`` (gi, state, weights) -> new state, as ``loop_scan`` runs it."""

IMPLS = ("auto", "native", "loop", "fused", "torch", "scan")
"""How a layer runs its recurrence: ``native`` (the compiled time loop, rnnzoo.native:
CPU float32/float64, every cell but minGRU/minLSTM, regularisers included; elsewhere it
runs ``fused``), ``loop`` (autograd through each step's ops), ``fused`` (hand-written
backward from Python, rnnzoo.fused), ``torch`` (torch.nn's native kernels on our
parameters, for comparison), ``scan`` (all steps at once, for cells with a
``parallel_scan``: minGRU, minLSTM), ``auto`` (scan where the cell has it, else native
where it is built, else fused where the cell has that, else loop)."""


def _torch_rnn(nonlinearity: str) -> Any:
    def make(*args: Any, **kwargs: Any) -> nn.Module:
        return nn.RNN(*args, nonlinearity=nonlinearity, **kwargs)

    return make


TORCH_TWINS: dict[str, Any] = {
    "rnn_tanh": _torch_rnn("tanh"),
    "rnn_relu": _torch_rnn("relu"),
    "lstm": nn.LSTM,
    "gru": nn.GRU,
}


class Recurrent(nn.Module):
    """A stack of ``num_layers`` recurrent layers of any registered ``cell``.

    Args:
        cell: a name from ``rnnzoo.list_cells()`` ("lstm", "gru", "rnn_tanh", ...).
        input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional:
            as in ``torch.nn.LSTM``. ``dropout`` acts between layers, in training only.
        input_dropout, hidden_dropout, weight_drop, zoneout: regularisers, rates in
            [0, 1), 0 = off (see ``rnnzoo.regularizers``). ``input_dropout``: a locked
            (B, I) mask on every layer's input, its own per layer. ``hidden_dropout``: a
            locked (B, H) mask per unit on h_{t-1} where it enters W_hh. ``weight_drop``:
            W_hh of every unit dropped once per pass (loop and fused). ``zoneout``: each
            state unit keeps its old value with probability p, per step; eval mixes
            p * old + (1 - p) * new. All four run inside the compiled loop (``native``);
            on the ``fused`` path, zoneout and hidden dropout in training fall back to
            the per-step loop. ``step`` applies them per call: its masks and dropped
            W_hh are fresh at every call.
        **cell_options: passed on to the cell's constructor.

    Inputs: ``input, hx=None, lengths=None``
        input: (T, B, input_size), (B, T, input_size) when ``batch_first``,
            (T, input_size) unbatched, or a ``PackedSequence``.
        hx: (num_layers * D, B, H), a tuple of such for cells with several states
            (LSTM: (h_0, c_0)); zeros when ``None``. D = 2 if bidirectional else 1.
        lengths: (B,) valid steps of each sequence of a padded batch, in [1, T].

    Outputs: ``output, h_n`` (``output, (h_n, c_n)`` for LSTM)
        output: (T, B, D * H) (batch first as the input), zero at padded steps; a
            ``PackedSequence`` when the input is one.
        h_n: (num_layers * D, B, H), each sequence's state at its last valid step;
            layer l, direction d is at index l * D + d, as in torch.nn.
    """

    def __init__(
        self,
        cell: str,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        impl: str = "auto",
        input_dropout: float = 0.0,
        hidden_dropout: float = 0.0,
        weight_drop: float = 0.0,
        zoneout: float = 0.0,
        **cell_options: Any,
    ) -> None:
        super().__init__()
        if not isinstance(num_layers, int) or num_layers < 1:
            raise ValueError(f"num_layers must be a positive integer, got {num_layers!r}")
        if not 0.0 <= float(dropout) <= 1.0 or isinstance(dropout, bool):
            raise ValueError(f"dropout must be a number in [0, 1], got {dropout!r}")
        if dropout > 0 and num_layers == 1:
            warnings.warn(
                "dropout acts between recurrent layers, so a non-zero dropout expects "
                f"num_layers greater than 1, but got dropout={dropout} and num_layers=1",
                stacklevel=2,
            )
        self.cell = cell
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.bias = bias
        self.batch_first = batch_first
        self.dropout = float(dropout)
        self.bidirectional = bidirectional
        self.cell_options = cell_options
        make_cell = CELLS.get(cell)
        num_directions = 2 if bidirectional else 1

        # One cell per (layer, direction). Each cell holds the math; its parameters move
        # onto this module under torch.nn's names, so state_dicts match torch.nn's.
        self.cells = nn.ModuleList()  # of RecurrentCell
        self._param_names: list[dict[str, str | None]] = []  # cell's -> ours, per unit
        for layer in range(num_layers):
            for direction in range(num_directions):
                layer_input = input_size if layer == 0 else hidden_size * num_directions
                unit: RecurrentCell = make_cell(
                    layer_input, hidden_size, bias=bias, device=device, dtype=dtype, **cell_options
                )
                suffix = f"_l{layer}" + ("_reverse" if direction else "")
                names: dict[str, str | None] = {}
                for name, param in list(unit._parameters.items()):
                    names[name] = None if param is None else name + suffix
                    if param is not None:  # None: an absent part, such as bias=False
                        delattr(unit, name)
                        self.register_parameter(name + suffix, param)
                self.cells.append(unit)
                self._param_names.append(names)
        self.num_states: int = unit.num_states
        self.impl = self._resolve_impl(impl, unit)
        self._check_regularizers(unit, input_dropout, hidden_dropout, weight_drop, zoneout)
        self.input_dropout, self.hidden_dropout = float(input_dropout), float(hidden_dropout)
        self.weight_drop, self.zoneout = float(weight_drop), float(zoneout)

    def _check_regularizers(self, cell: RecurrentCell, *rates: float) -> None:
        """Rates in [0, 1); the cell and the impl must support every one that is on."""
        names = ("input_dropout", "hidden_dropout", "weight_drop", "zoneout")
        named = dict(zip(names, rates, strict=True))
        for name, p in named.items():
            if isinstance(p, bool) or not isinstance(p, int | float) or not 0 <= p < 1:
                raise ValueError(f"{name} must be a number in [0, 1), got {p!r}")
        on = [name for name, p in named.items() if p > 0]
        if on and self.impl == "torch":
            raise ValueError(
                f"impl='torch' runs torch.nn's kernels, which have no {', '.join(on)}; "
                "use impl='loop' or 'fused'"
            )
        for name in ("hidden_dropout", "weight_drop"):
            if named[name] > 0 and self._param_names[0].get("weight_hh") is None:
                raise ValueError(
                    f"{name} acts on the recurrent weights, but cell {self.cell!r} has no "
                    "weight_hh; use input_dropout or zoneout"
                )
        own_step = type(cell).step_dropped is not RecurrentCell.step_dropped
        if named["hidden_dropout"] > 0 and cell.carries_h and not own_step:
            raise ValueError(
                f"hidden_dropout: cell {self.cell!r} carries h_{{t-1}} into h_t besides its "
                "recurrent input and has no step_dropped; use weight_drop or zoneout"
            )

    def _resolve_impl(self, impl: str, cell: RecurrentCell) -> str:
        """``auto``: the cell's parallel scan, else its fused fast path, else the loop."""
        if impl not in IMPLS:
            raise ValueError(f"unknown impl {impl!r}; valid: {', '.join(IMPLS)}")
        if impl == "fused" and cell.fused_saved is None:
            raise ValueError(f"cell {self.cell!r} has no fused fast path; use impl='loop'")
        if impl == "scan" and not cell.has_parallel_scan:
            raise ValueError(f"cell {self.cell!r} has no parallel scan; use impl='loop'")
        if impl == "torch" and self.cell not in TORCH_TWINS:
            valid = ", ".join(TORCH_TWINS)
            raise ValueError(f"impl='torch' needs a torch.nn twin ({valid}), not {self.cell!r}")
        if impl == "native" and cell.native_kind is None:
            raise ValueError(f"cell {self.cell!r} has no compiled loop; use impl='auto'")
        if impl == "native" and native.unavailable():
            raise ValueError(
                f"impl='native': the compiled loop is unavailable ({native.unavailable()})"
            )
        if impl == "auto" and cell.has_parallel_scan:
            return "scan"
        if impl == "auto" and cell.native_kind is not None:
            if not native.unavailable():
                return "native"
            native.notice_fallback()
        if impl == "auto":
            return "loop" if cell.fused_saved is None else "fused"
        return impl

    @property
    def num_directions(self) -> int:
        return 2 if self.bidirectional else 1

    recorder: list[Tensor] | None = None
    """Set by ``rnnzoo.diagnostics.recording``: the top layer's forward direction then
    runs step by step through autograd and appends each step's hidden state here."""

    def reset_parameters(self) -> None:
        for unit, names in enumerate(self._param_names):
            params = {mine: getattr(self, ours) for mine, ours in names.items() if ours}
            self._cell(unit).init_parameters(params)

    def flatten_parameters(self) -> None:
        """No-op, for code written against torch.nn (our weights are never flattened)."""

    def __getstate__(self) -> dict[str, Any]:
        """What pickling keeps: all but the cached torch.nn twin of impl='torch', which
        is rebuilt on first use (pickling it would make ``torch.load(weights_only=True)``
        need torch.nn.LSTM allowlisted too)."""
        state = dict(super().__getstate__())
        state.pop("_twin", None)
        return state

    def _cell(self, unit: int) -> RecurrentCell:
        cell = self.cells[unit]
        assert isinstance(cell, RecurrentCell)
        return cell

    def unit_weights(self, unit: int) -> SimpleNamespace:
        """Parameters of layer ``unit // D``, direction ``unit % D``, under the cell's names."""
        names = self._param_names[unit]
        return SimpleNamespace(**{m: ours and getattr(self, ours) for m, ours in names.items()})

    def _weights(self, unit: int) -> SimpleNamespace:
        """``unit_weights`` for one pass. With weight-drop in training, W_hh is a dropped
        copy, one for every step of the pass: autograd reaches the parameter through it
        and the registered parameters (state_dict, optimisers) never change."""
        w = self.unit_weights(unit)
        if self.weight_drop > 0 and self.training:
            w.weight_hh = F.dropout(w.weight_hh, self.weight_drop, training=True)
        return w

    def _step_fn(self, cell: RecurrentCell, h: Tensor) -> StepFn | None:
        """The cell's step with hidden dropout (training) and zoneout, for one unit and
        one pass; None when neither acts. h: (B, H), the shape of the locked mask."""
        hidden = self.hidden_dropout > 0 and self.training
        if not hidden and self.zoneout == 0:
            return None
        mask = reg.locked_mask(h, self.hidden_dropout) if hidden else None  # (B, H)
        p, training = self.zoneout, self.training

        def step(gi: Tensor, state: State, w: Any) -> State:
            new = cell.step(gi, state, w) if mask is None else cell.step_dropped(gi, state, w, mask)
            return reg.zoneout(state, new, p, training) if p > 0 else new

        return step

    def forward(
        self,
        input: Tensor | PackedSequence,
        hx: Tensor | State | None = None,
        lengths: Lengths | None = None,
    ) -> tuple[Tensor | PackedSequence, Tensor | State]:
        if self.impl == "torch" and not torch.jit.is_tracing():  # functional_call: untraceable
            return self._torch_forward(input, hx, lengths)
        packed = isinstance(input, PackedSequence)
        if isinstance(input, PackedSequence):
            if lengths is not None:
                raise ValueError("lengths must not be given with a PackedSequence input")
            sorted_indices, unsorted_indices = input.sorted_indices, input.unsorted_indices
            x, lengths = pad_packed_sequence(input)
            batched = True
        else:
            x, batched = self._time_major(input)
        steps, batch = x.shape[0], x.shape[1]
        valid, full = self._valid_steps(lengths, steps, batch, x.device)
        states = self._initial_states(hx, x, batched)

        finals: list[State] = []
        for layer in range(self.num_layers):
            if self.input_dropout > 0 and self.training:  # one (B, I) mask for all T steps
                x = x * reg.locked_mask(x[0], self.input_dropout)
            outputs = []
            for direction in range(self.num_directions):
                unit = layer * self.num_directions + direction
                start = tuple(s[unit] for s in states)
                y, final = self._scan(unit, x, start, valid, full, reverse=direction == 1)
                outputs.append(y)
                finals.append(final)
            x = outputs[0] if len(outputs) == 1 else torch.cat(outputs, dim=2)
            if self.dropout > 0 and self.training and layer < self.num_layers - 1:
                x = F.dropout(x, self.dropout, training=True)

        h_n = tuple(torch.stack([f[k] for f in finals]) for k in range(self.num_states))
        if packed:
            assert isinstance(lengths, Tensor)
            output: Tensor | PackedSequence = _repack(x, lengths, sorted_indices, unsorted_indices)
        else:
            output = x.transpose(0, 1) if self.batch_first and batched else x
            if not batched:
                output = output.squeeze(1)
                h_n = tuple(h.squeeze(1) for h in h_n)
        return output, (h_n[0] if self.num_states == 1 else h_n)

    def step(self, x: Tensor, hx: Tensor | State | None = None) -> tuple[Tensor, Tensor | State]:
        """One time step through every layer: x (B, input_size) -> (output (B, H), state).

        For decoders that feed each output back as the next input, where ``forward``
        over a one-step sequence would pay its set-up on every step. The state is laid
        out as ``forward``'s (``(num_layers, B, H)``, or a tuple of them); dropout
        between layers applies as in ``forward``, and so do the regularisers, but drawn
        afresh at every call (a locked mask cannot span calls). One direction only.
        """
        if self.bidirectional:
            raise ValueError(f"{type(self).__name__}.step runs forward in time: not bidirectional")
        if x.dim() != 2 or x.shape[-1] != self.input_size:
            raise ValueError(
                f"{type(self).__name__}.step: expected input of shape (B, {self.input_size}), "
                f"got {tuple(x.shape)}"
            )
        states = self._initial_states(hx, x.unsqueeze(0), batched=True)
        finals: list[State] = []
        for layer in range(self.num_layers):
            w, cell = self._weights(layer), self._cell(layer)
            if self.input_dropout > 0 and self.training:
                x = x * reg.locked_mask(x, self.input_dropout)
            start = tuple(s[layer] for s in states)
            step = self._step_fn(cell, start[0]) or cell.step
            new = step(cell.project(x, w), start, w)
            finals.append(new)
            x = new[0]
            if self.dropout > 0 and self.training and layer < self.num_layers - 1:
                x = F.dropout(x, self.dropout, training=True)
        h_n = tuple(torch.stack([f[k] for f in finals]) for k in range(self.num_states))
        return x, (h_n[0] if self.num_states == 1 else h_n)

    def _scan(
        self,
        unit: int,
        x: Tensor,
        state: State,
        valid: Tensor | None,
        full: int,
        reverse: bool,
    ) -> tuple[Tensor, State]:
        """Run one direction of one layer. x: (T, B, I) -> output (T, B, H), final state.

        ``valid``: (T, B, 1) bool, True where a step is real; ``full``: steps before
        which every sequence is still running, so no masking is needed there.
        """
        cell, w = self._cell(unit), self._weights(unit)
        recorded = self.recorder is not None and unit == (self.num_layers - 1) * self.num_directions
        capturing = _capturing()  # a graph is being recorded: the plain ops it can trace
        if self.impl == "native" and native.supports(x) and not (recorded or capturing):
            return self._native_scan(cell, w, x, state, valid, reverse)
        step = self._step_fn(cell, state[0])
        if recorded:
            assert self.recorder is not None
            # rnnzoo.diagnostics is watching the top layer: every h_t a graph node
            gi = cell.project(x, w)
            return loop_scan(cell, w, gi, state, valid, full, reverse, self.recorder.append, step)
        if step is not None:  # hidden dropout or zoneout act inside each step: the loop
            return loop_scan(cell, w, cell.project(x, w), state, valid, full, reverse, step=step)
        if self.impl == "scan":  # every step at once: (T, B, G) -> the cell's scan
            return cell.parallel_scan(cell.project(x, w), state, w, valid, reverse)
        fast = self.impl in ("fused", "native") and cell.fused_saved is not None
        if fast and not capturing:  # the standard projection, on the fastest kernels
            gi = fast_linear(x, w.weight_ih, w.bias_ih)
            return fused_scan(cell, gi, state, w.weight_hh, w.bias_hh, valid, full, reverse)
        gi = cell.project(x, w)  # the input half of every step in one matmul: (T, B, G)
        return loop_scan(cell, w, gi, state, valid, full, reverse)

    def _native_scan(
        self,
        cell: RecurrentCell,
        w: Any,
        x: Tensor,
        state: State,
        valid: Tensor | None,
        reverse: bool,
    ) -> tuple[Tensor, State]:
        """The compiled loop, with hidden dropout's locked mask drawn where the per-step
        loop draws it (so both consume the random stream alike) and zoneout inside."""
        hmask = None
        if self.hidden_dropout > 0 and self.training:
            hmask = reg.locked_mask(state[0], self.hidden_dropout)  # (B, H)
        return native.native_scan(
            cell, x, w, state, valid, reverse, hmask, self.zoneout, self.training
        )

    def _torch_forward(
        self, input: Tensor | PackedSequence, hx: Any, lengths: Lengths | None
    ) -> tuple[Tensor | PackedSequence, Tensor | State]:
        """torch.nn's native kernels on our parameters (impl='torch'), for comparison."""
        twin = self.__dict__.get("_twin")
        if twin is None:  # parameter-less: functional_call lends it ours on every call
            twin = TORCH_TWINS[self.cell](
                self.input_size, self.hidden_size, self.num_layers, bias=self.bias,
                batch_first=self.batch_first, dropout=self.dropout,
                bidirectional=self.bidirectional, device="meta",
            )  # fmt: skip
            self.__dict__["_twin"] = twin  # not a submodule: no second copy of the weights
        twin.train(self.training)
        params: dict[str, Tensor] = dict(self.named_parameters())
        if lengths is None or isinstance(input, PackedSequence):
            out, h = torch.func.functional_call(twin, params, (input, hx))
            return out, h
        x, _ = self._time_major(input)
        self._valid_steps(lengths, x.shape[0], x.shape[1], x.device)  # checks lengths
        lens = torch.as_tensor(lengths).cpu()
        packed = pack_padded_sequence(input, lens, self.batch_first, enforce_sorted=False)
        out, h = torch.func.functional_call(twin, params, (packed, hx))
        padded, _ = pad_packed_sequence(out, self.batch_first, total_length=x.shape[0])
        return padded, h

    # -- input checks ----------------------------------------------------------------

    def _time_major(self, input: Tensor) -> tuple[Tensor, bool]:
        """(T, B, I) view of ``input`` and whether it was batched."""
        layout = "(B, T, input_size)" if self.batch_first else "(T, B, input_size)"
        if input.dim() not in (2, 3):
            raise ValueError(
                f"{type(self).__name__}: expected input of shape {layout} or (T, input_size), "
                f"got {input.dim()}-D input of shape {tuple(input.shape)}"
            )
        if input.shape[-1] != self.input_size:
            raise ValueError(
                f"{type(self).__name__}: expected input feature size {self.input_size}, "
                f"got {input.shape[-1]} (input shape {tuple(input.shape)})"
            )
        if input.dim() == 2:
            return input.unsqueeze(1), False
        return (input.transpose(0, 1) if self.batch_first else input), True

    def _valid_steps(
        self, lengths: Lengths | None, steps: int, batch: int, device: torch.device
    ) -> tuple[Tensor | None, int]:
        """(T, B, 1) mask of real steps (None if none is padded), and the shortest length."""
        if lengths is None:
            return None, steps
        lens = torch.as_tensor(lengths)
        if lens.dim() != 1 or lens.shape[0] != batch:
            raise ValueError(
                f"{type(self).__name__}: expected lengths of shape ({batch},), one per "
                f"sequence, got shape {tuple(lens.shape)}"
            )
        if lens.is_floating_point() or lens.is_complex() or lens.dtype == torch.bool:
            raise ValueError(f"lengths must be integers, got dtype {lens.dtype}")
        lo, hi = int(lens.min()), int(lens.max())
        if lo < 1 or hi > steps:
            raise ValueError(
                f"{type(self).__name__}: lengths must lie in [1, {steps}] (the input has "
                f"T={steps} steps), got min {lo} and max {hi}"
            )
        capturing = _capturing()  # a captured graph must hold for other lengths too
        if lo == steps and not capturing:
            return None, steps
        lens = lens.to(device)
        valid = (torch.arange(steps, device=device)[:, None] < lens[None, :]).unsqueeze(-1)
        return valid, 0 if capturing else lo

    def _initial_states(self, hx: Tensor | State | None, x: Tensor, batched: bool) -> State:
        """num_states tensors of shape (num_layers * D, B, H)."""
        shape = (self.num_layers * self.num_directions, x.shape[1], self.hidden_size)
        if hx is None:
            return tuple(x.new_zeros(shape) for _ in range(self.num_states))
        states = (hx,) if isinstance(hx, Tensor) else tuple(hx)
        if len(states) != self.num_states:
            raise ValueError(
                f"{type(self).__name__}: expected hx to be {self.num_states} tensor(s), "
                f"got {len(states)}"
            )
        if not batched:
            states = tuple(s.unsqueeze(1) if s.dim() == 2 else s for s in states)
        for s in states:
            if tuple(s.shape) != shape:
                want = shape if batched else (shape[0], shape[2])
                raise ValueError(
                    f"{type(self).__name__}: expected hidden state of shape {want} "
                    f"(num_layers * num_directions, batch, hidden_size), got {tuple(s.shape)}"
                )
        return states

    def extra_repr(self) -> str:
        s = f"{self.cell!r}, {self.input_size}, {self.hidden_size}"
        for name, default in [
            ("num_layers", 1),
            ("bias", True),
            ("batch_first", False),
            ("dropout", 0.0),
            ("bidirectional", False),
            ("input_dropout", 0.0),
            ("hidden_dropout", 0.0),
            ("weight_drop", 0.0),
            ("zoneout", 0.0),
        ]:
            if getattr(self, name) != default:
                s += f", {name}={getattr(self, name)}"
        return s


def _capturing() -> bool:
    """Whether torch.jit.trace or torch.compile is recording this call as a graph.

    Then the layer keeps to ops a graph can hold: the loop instead of the native and
    fused paths (an opaque extension call, and in-place ``out=`` kernels the tracer
    cannot record and inductor cannot lower; the compiler fuses the loop's pointwise
    ops itself) and a padding mask on every step
    instead of a Python int from the lengths, which a graph would keep as a constant."""
    return torch.jit.is_tracing() or torch.compiler.is_compiling()


def loop_scan(
    cell: RecurrentCell,
    w: Any,
    gi: Tensor,
    state: State,
    valid: Tensor | None,
    full: int,
    reverse: bool,
    on_step: Callable[[Tensor], None] | None = None,
    step: StepFn | None = None,
) -> tuple[Tensor, State]:
    """The plain path: each step's equations, with autograd recording every op.

    ``on_step`` is handed the hidden state carried out of every step, in order;
    ``step`` replaces ``cell.step`` (the layer's regularised step).
    """
    step = step or cell.step
    steps = gi.shape[0]
    gi_t = gi.unbind(0)  # not gi[t]: indexing makes backward build a full-size zero per step
    outputs: list[Tensor] = [gi] * steps  # placeholders, all overwritten below
    for t in reversed(range(steps)) if reverse else range(steps):
        new = step(gi_t[t], state, w)
        if t < full:  # every sequence is still running: no masking needed
            state, outputs[t] = new, new[0]
        else:  # padded entries keep their state and output zero
            assert valid is not None
            m = valid[t]
            state = tuple(torch.where(m, n, s) for n, s in zip(new, state, strict=True))
            outputs[t] = torch.where(m, new[0], 0.0)
        if on_step is not None:
            on_step(state[0])
    return torch.stack(outputs), state


def _repack(
    x: Tensor, lengths: Tensor, sorted_indices: Tensor | None, unsorted_indices: Tensor | None
) -> PackedSequence:
    """Pack (T, B, F) output with the same batch order as the PackedSequence input."""
    if sorted_indices is not None:
        x = x.index_select(1, sorted_indices)
        lengths = lengths.index_select(0, sorted_indices.cpu())
    packed = pack_padded_sequence(x, lengths.cpu(), enforce_sorted=True)
    return PackedSequence(packed.data, packed.batch_sizes, sorted_indices, unsorted_indices)


class RNN(Recurrent):
    """Elman RNN stack, a drop-in replacement for ``torch.nn.RNN``."""

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        nonlinearity: str = "tanh",
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        impl: str = "auto",
    ) -> None:
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"unknown nonlinearity {nonlinearity!r}; valid: 'tanh', 'relu'")
        super().__init__(
            f"rnn_{nonlinearity}", input_size, hidden_size, num_layers, bias, batch_first,
            dropout, bidirectional, device, dtype, impl,
        )  # fmt: skip
        self.nonlinearity = nonlinearity


class LSTM(Recurrent):
    """LSTM stack, a drop-in replacement for ``torch.nn.LSTM`` (without ``proj_size``)."""

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        impl: str = "auto",
    ) -> None:
        super().__init__(
            "lstm", input_size, hidden_size, num_layers, bias, batch_first, dropout,
            bidirectional, device, dtype, impl,
        )  # fmt: skip


class GRU(Recurrent):
    """GRU stack, a drop-in replacement for ``torch.nn.GRU``."""

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        impl: str = "auto",
    ) -> None:
        super().__init__(
            "gru", input_size, hidden_size, num_layers, bias, batch_first, dropout,
            bidirectional, device, dtype, impl,
        )  # fmt: skip

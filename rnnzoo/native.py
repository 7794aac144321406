"""The compiled time loop: every cell's recurrence in C++ (rnnzoo/csrc/scan.cpp).

``fused`` (rnnzoo.fused) already replaced autograd's per-op record with a hand-written
backward, but each step still dispatched a dozen small tensor ops from Python, and on
the small models people learn with that overhead was most of the cost. Here one call
runs one layer and direction over all steps: per step, one matrix product and one pass
over the batch that applies the cell's equations, hidden dropout, zoneout and the
padding rule together; backward the same, in reverse.

The extension is built by ``make install`` (setup.py compiles it against the installed
torch). Where it is missing or cannot load (another torch, a build without a compiler)
layers fall back to the fused path, and the first layer to do so says why, once.
``RNNZOO_NATIVE=0`` turns it off. The cells' Python files stay the statement of their
equations; tests/test_native.py proves the kernel equal to them.
"""

from __future__ import annotations

import functools
import os
import sys
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import torch
from torch import Tensor

from rnnzoo.cells.base import RecurrentCell, State

KINDS = {
    "rnn_tanh": 0,
    "rnn_relu": 1,
    "lstm": 2,
    "gru": 3,
    "peephole_lstm": 4,
    "cifg_lstm": 5,
    "indrnn": 6,
    "layernorm_lstm": 7,
    "layernorm_gru": 8,
}
"""The kernel's cell kinds (``enum Kind`` in scan.cpp), by ``RecurrentCell.native_kind``."""

DTYPES = (torch.float32, torch.float64)


@functools.cache
def extension() -> ModuleType | None:
    """The compiled module, or None (with ``unavailable()`` saying why)."""
    if os.environ.get("RNNZOO_NATIVE", "1") == "0":
        _reason.append("RNNZOO_NATIVE=0")
        return None
    try:
        from rnnzoo import _scan
    except ImportError as err:  # not built, or built against another torch
        _reason.append(str(err).splitlines()[0] if str(err) else type(err).__name__)
        return None
    return _scan


_reason: list[str] = []


def unavailable() -> str | None:
    """Why the compiled loop cannot be used here, or None when it can."""
    return None if extension() is not None else (_reason[0] if _reason else "unknown")


@functools.cache
def notice_fallback() -> None:
    """Say once per process that layers run the slower fused path, and why."""
    print(
        f"rnnzoo: compiled time loop unavailable ({unavailable()}); using the Python fast "
        "path (run 'make install' to build it)",
        file=sys.stderr,
    )


def supports(x: Tensor) -> bool:
    """Whether the kernel runs this input: a CPU tensor of float32 or float64, outside
    autocast (whose low-precision products the fused path runs)."""
    return x.device.type == "cpu" and x.dtype in DTYPES and not torch.is_autocast_enabled("cpu")


@dataclass
class Spec:
    """What one call needs besides the tensors autograd differentiates."""

    kind: int
    num_extras: int
    lengths: Tensor | None  # (B,) int64, None: no padding
    reverse: bool
    hmask: Tensor | None  # (B, H) hidden dropout, scaled by 1 / (1 - p)
    zmask: Tensor | None  # (T, S, B, H) bool, True keeps the old value (training)
    zoneout: float  # rate; with zmask None and a rate, eval's mix p old + (1 - p) new


def native_scan(
    cell: RecurrentCell,
    x: Tensor,
    w: Any,
    state: State,
    valid: Tensor | None,
    reverse: bool,
    hmask: Tensor | None = None,
    zoneout: float = 0.0,
    training: bool = False,
) -> tuple[Tensor, State]:
    """One layer, one direction. x: (T, B, I) the layer's input; state: each (B, H);
    valid: (T, B, 1) bool or None. Returns output (T, B, H) and the final state.

    The kernel projects x step by step (``x W_ih^T + b_ih``, or for the LayerNorm cells
    ``LN(x W_ih^T) + b_ih``), so no (T, B, G) tensor of every step's gates is made.
    """
    kind, weight, bias, extras = cell.native_args(w)
    steps, batch, _ = x.shape
    source, w_ih, b_ih = x, w.weight_ih, w.bias_ih
    lengths = None if valid is None else valid.squeeze(-1).sum(0)
    zmask = None
    if zoneout > 0 and training:  # drawn in the loop's order: step by step, h then c
        shape = (steps, len(state), batch, state[0].shape[1])
        zmask = torch.rand(shape, dtype=x.dtype) < zoneout
    spec = Spec(KINDS[kind], len(extras), lengths, reverse, hmask, zmask, zoneout)
    tensors = (source.contiguous(), w_ih, b_ih, weight, bias, *extras, *state)
    if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors):
        out, *final = NativeScan.apply(spec, *tensors)
    else:  # inference: the kernel keeps nothing for a backward pass
        out, *final = _forward(spec, *tensors, for_backward=False)[: 1 + len(state)]
    return out, tuple(final)


def _detach(t: Tensor | None) -> Tensor | None:
    return None if t is None else t.detach()


def _forward(spec: Spec, *tensors: Tensor | None, for_backward: bool) -> list[Tensor]:
    """The kernel's forward: [out, final states..., C_t of every step, saved activations].

    tensors: gi or x, W_ih, b_ih (None with gi), W_hh, b_hh, extras..., states...
    """
    ext = extension()
    assert ext is not None
    source, w_ih, b_ih, weight, bias, *rest = (_detach(t) for t in tensors)
    extras, state0 = rest[: spec.num_extras], rest[spec.num_extras :]
    return ext.forward(
        spec.kind, source, w_ih, b_ih, weight, bias, extras, state0, spec.lengths, spec.reverse,
        spec.hmask, spec.zmask, spec.zoneout, for_backward,
    )  # fmt: skip


class NativeScan(torch.autograd.Function):
    """The recurrence of one layer and direction, forward and backward in C++."""

    @staticmethod
    def forward(ctx: Any, spec: Spec, *tensors: Tensor | None) -> tuple[Tensor, ...]:
        out, *res = _forward(spec, *tensors, for_backward=True)
        source, w_ih, b_ih, weight, bias, *rest = tensors
        assert source is not None
        extras, state0 = rest[: spec.num_extras], rest[spec.num_extras :]
        final, cs, saved = res[: len(state0)], res[-2], res[-1]
        ctx.spec, ctx.shape = spec, source.shape
        ctx.gates = source.shape[-1] if w_ih is None else w_ih.shape[0]
        ctx.has_b_ih, ctx.has_bias = b_ih is not None, bias is not None
        x = None if w_ih is None else source  # kept only where the kernel projected it
        ctx.save_for_backward(x, w_ih, weight, bias, *extras, *state0, out, cs, saved)
        return (out, *final)

    @staticmethod
    def backward(ctx: Any, grad_out: Tensor | None, *grad_final: Tensor | None) -> Any:
        ext = extension()
        assert ext is not None
        spec: Spec = ctx.spec
        x, w_ih, weight, bias, *rest = ctx.saved_tensors
        n = spec.num_extras
        extras, rest = rest[:n], rest[n:]
        state0, (out, cs, saved) = rest[:-3], rest[-3:]
        steps, batch = ctx.shape[0], ctx.shape[1]
        gates = ctx.gates
        shape_only = out.new_zeros(()).expand(steps, batch, gates)  # the kernel reads its shape
        dgi, dweight, dbias, *rest_d = ext.backward(
            spec.kind, shape_only, weight.detach(), bias, list(extras), list(state0),
            spec.lengths, spec.reverse, spec.hmask, spec.zmask, spec.zoneout, out, cs, saved,
            grad_out, list(grad_final),
        )  # fmt: skip
        k = len(state0)
        dstate, dextras, tail = rest_d[:k], rest_d[k : k + n], rest_d[k + n :]
        dbias = dbias if ctx.has_bias else None
        if w_ih is None:  # the kernel was handed gi: its gradient goes back through autograd
            return (None, dgi, None, None, dweight, dbias, *dextras, *dstate)
        # the projection x W_ih^T + b_ih of every step, backward in two products
        flat = dgi.view(-1, gates)
        dx = flat.mm(w_ih).view(x.shape) if ctx.needs_input_grad[1] else None
        dw_ih = flat.t().mm(x.reshape(-1, x.shape[-1]))
        db_ih = None
        if ctx.has_b_ih and tail:  # layernorm: the kernel summed it after the input LN
            db_ih = tail[0]
        elif ctx.has_b_ih:  # where b_ih and b_hh are summed into the gates, both agree
            summed = spec.kind not in (KINDS["gru"], KINDS["indrnn"])
            db_ih = dbias.clone() if summed and dbias is not None else flat.sum(0)
        return (None, dx, dw_ih, db_ih, dweight, dbias, *dextras, *dstate)


def main() -> None:
    """``python -m rnnzoo.native``: say whether the compiled loop loads (make install)."""
    reason = unavailable()
    if reason is None:
        print(f"rnnzoo: compiled time loop ready ({extension().__file__})")  # type: ignore[union-attr]
    else:
        print(f"rnnzoo: compiled time loop unavailable ({reason}); layers use the Python fast path")


if __name__ == "__main__":
    main()

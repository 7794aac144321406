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
    """Whether the kernel runs this input: a CPU tensor of float32 or float64."""
    return x.device.type == "cpu" and x.dtype in DTYPES


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
    gi: Tensor,
    w: Any,
    state: State,
    valid: Tensor | None,
    reverse: bool,
    hmask: Tensor | None = None,
    zoneout: float = 0.0,
    training: bool = False,
) -> tuple[Tensor, State]:
    """One layer, one direction. gi: (T, B, G) ``project`` of every step; state: each
    (B, H); valid: (T, B, 1) bool or None. Returns output (T, B, H), final state."""
    kind, weight, bias, extras = cell.native_args(w)
    steps, batch, _ = gi.shape
    lengths = None if valid is None else valid.squeeze(-1).sum(0)
    zmask = None
    if zoneout > 0 and training:  # drawn in the loop's order: step by step, h then c
        shape = (steps, len(state), batch, state[0].shape[1])
        zmask = torch.rand(shape, dtype=gi.dtype) < zoneout
    spec = Spec(KINDS[kind], len(extras), lengths, reverse, hmask, zmask, zoneout)
    tensors = (gi.contiguous(), weight, bias, *extras, *state)
    if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors):
        out, *final = NativeScan.apply(spec, *tensors)
    else:  # inference: the kernel keeps nothing for a backward pass
        out, *final = _forward(spec, *tensors, for_backward=False)[: 1 + len(state)]
    return out, tuple(final)


def _forward(
    spec: Spec, gi: Tensor, weight: Tensor, bias: Tensor | None, *rest: Tensor, for_backward: bool
) -> list[Tensor]:
    """The kernel's forward: [out, final states..., C_t of every step, saved activations]."""
    ext = extension()
    assert ext is not None
    extras, state0 = list(rest[: spec.num_extras]), list(rest[spec.num_extras :])
    return ext.forward(
        spec.kind, gi.detach(), weight.detach(), None if bias is None else bias.detach(),
        [e.detach() for e in extras], [s.detach() for s in state0], spec.lengths, spec.reverse,
        spec.hmask, spec.zmask, spec.zoneout, for_backward,
    )  # fmt: skip


class NativeScan(torch.autograd.Function):
    """The recurrence of one layer and direction, forward and backward in C++."""

    @staticmethod
    def forward(
        ctx: Any, spec: Spec, gi: Tensor, weight: Tensor, bias: Tensor | None, *rest: Tensor
    ):
        out, *res = _forward(spec, gi, weight, bias, *rest, for_backward=True)
        extras, state0 = rest[: spec.num_extras], rest[spec.num_extras :]
        final, cs, saved = res[: len(state0)], res[-2], res[-1]
        ctx.spec, ctx.gi_shape = spec, gi.shape
        ctx.save_for_backward(weight, bias, *extras, *state0, out, cs, saved)
        return (out, *final)

    @staticmethod
    def backward(ctx: Any, grad_out: Tensor | None, *grad_final: Tensor | None) -> Any:
        ext = extension()
        assert ext is not None
        spec: Spec = ctx.spec
        weight, bias, *rest = ctx.saved_tensors
        n = spec.num_extras
        extras, rest = rest[:n], rest[n:]
        state0, (out, cs, saved) = rest[:-3], rest[-3:]
        steps, batch, gates = ctx.gi_shape
        shape_only = out.new_zeros(()).expand(steps, batch, gates)  # the kernel reads its shape
        dgi, dweight, dbias, *rest_d = ext.backward(
            spec.kind, shape_only, weight.detach(), bias, list(extras), list(state0),
            spec.lengths, spec.reverse, spec.hmask, spec.zmask, spec.zoneout, out, cs, saved,
            grad_out, list(grad_final),
        )  # fmt: skip
        dstate, dextras = rest_d[: len(state0)], rest_d[len(state0) :]
        return (None, dgi, dweight, dbias if bias is not None else None, *dextras, *dstate)


def main() -> None:
    """``python -m rnnzoo.native``: say whether the compiled loop loads (make install)."""
    reason = unavailable()
    if reason is None:
        print(f"rnnzoo: compiled time loop ready ({extension().__file__})")  # type: ignore[union-attr]
    else:
        print(f"rnnzoo: compiled time loop unavailable ({reason}); layers use the Python fast path")


if __name__ == "__main__":
    main()

"""Backpropagation through time written out: the fast path of the recurrent loop.

Autograd on a Python loop records every small op of every step and replays them
backwards, with a per-step matrix product for each weight gradient. Here, as in cuDNN
and haste, one ``torch.autograd.Function`` runs the whole loop of one layer and
direction:

* forward: each step writes its state and the activations backward needs into buffers
  allocated once, (T, B, ...) each, with in-place ops and no autograd graph;
* backward: only the small ``dh`` recursion walks the steps (one (B, G) x (G, H) matrix
  product each); the recurrent weight gradient is then ONE matrix product over all
  steps, ``dW_hh = sum_t dgates_t^T h_{t-1}``, and ``dW_ih``, ``db_ih`` and the input
  gradient come from autograd of the single input projection ``x W_ih^T + b_ih``.

A cell joins the fast path by implementing four methods (see ``RecurrentCell``):
``fused_fold_bias``, ``fused_step`` (its forward equations), ``fused_backward_prepare``
(the derivatives of its activations, computed for all steps at once) and
``fused_backward_step`` (its backward equations for one step).

Variable lengths follow the loop's rule: a padded step leaves the state as it was, and
in backward it passes the state's gradient through untouched and adds nothing to the
weight gradients.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from rnnzoo.cells.base import RecurrentCell, State

MatMul = Callable[[Tensor], Tensor]


def step_matmul(weight: Tensor, batch: int) -> MatMul:
    """``x -> x @ weight^T`` for the many small products of the time loop.

    On CPU in float32 the weight is packed once for oneDNN (as torch.nn.LSTM's own CPU
    kernel does): a (64, 256) x (256, 1024) product then takes about a third of the
    time of ``torch.mm`` on this project's benchmark machine, with float32 accuracy.
    Elsewhere, or where this torch build lacks the packed kernels, plain ``torch.mm``.
    Set ``RNNZOO_ONEDNN=0`` to turn the packing off.
    """
    if weight.device.type == "cpu" and weight.dtype == torch.float32 and _onednn_works():
        packed = torch.ops.mkldnn._reorder_linear_weight(weight.detach(), batch)

        def packed_mm(x: Tensor) -> Tensor:
            return torch.ops.mkldnn._linear_pointwise(x, packed, None, "none", [], "")

        return packed_mm
    w_t = weight.t()
    return lambda x: torch.mm(x, w_t)


def fast_linear(x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """``F.linear`` for the input projection of all steps, through oneDNN where it can.

    On CPU in float32 (outside autocast) the (T*B, I) x (I, G) product and its input
    gradient run on oneDNN's packed kernels, about twice as fast as ``F.linear`` on the
    benchmark machine; anywhere else this is ``F.linear`` itself.
    """
    if (
        x.device.type == "cpu"
        and x.dtype == weight.dtype == torch.float32
        and not torch.is_autocast_enabled("cpu")
        and _onednn_works()
    ):
        return PackedLinear.apply(x, weight, bias)
    return torch.nn.functional.linear(x, weight, bias)


class PackedLinear(torch.autograd.Function):
    """x @ W^T + b on oneDNN's packed kernels, with the matching backward."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        flat = x.reshape(-1, x.shape[-1])
        y = step_matmul(weight, flat.shape[0])(flat)
        if bias is not None:
            y.add_(bias)
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        return y.view(*x.shape[:-1], weight.shape[0])

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Any:
        x, weight = ctx.saved_tensors
        g = grad.reshape(-1, weight.shape[0])
        dx = step_matmul(weight.t().contiguous(), g.shape[0])(g).view(x.shape)
        dw = g.t().mm(x.reshape(-1, x.shape[-1]))
        db = g.sum(dim=0) if ctx.has_bias else None
        return dx, dw, db


@functools.cache
def _onednn_works() -> bool:
    """Whether the packed oneDNN kernels exist here and give the right answer.

    The probe runs at the first forward pass of a process, which for a resumed run is
    after the checkpoint's random state was restored: its test numbers come from a
    generator of its own, so the global one (the model's dropout stream) is untouched.
    """
    if os.environ.get("RNNZOO_ONEDNN", "1") == "0" or not torch.backends.mkldnn.is_available():
        return False
    try:
        gen = torch.Generator().manual_seed(0)
        w, x = torch.randn(8, 4, generator=gen), torch.randn(3, 4, generator=gen)
        packed = torch.ops.mkldnn._reorder_linear_weight(w, 3)
        y = torch.ops.mkldnn._linear_pointwise(x, packed, None, "none", [], "")
        return bool(torch.allclose(y, x @ w.t(), rtol=1e-5, atol=1e-5))
    except (AttributeError, RuntimeError):
        return False


def fused_scan(
    cell: RecurrentCell,
    gi: Tensor,
    state: State,
    w_hh: Tensor,
    b_hh: Tensor | None,
    valid: Tensor | None,
    full: int,
    reverse: bool,
) -> tuple[Tensor, State]:
    """One layer, one direction. gi: (T, B, G) input part of the gates; state: each (B, H).

    ``valid``: (T, B, 1) bool or None; ``full``: steps before which none is padded.
    Returns the output (T, B, H), zero at padded steps, and the final state.
    """
    # Under autocast the projection gives gi in low precision: the loop's buffers and
    # in-place ops then run in that dtype, with autocast itself off inside.
    dtype = gi.dtype
    w_hh = w_hh.to(dtype)
    b_hh = None if b_hh is None else b_hh.to(dtype)
    state = tuple(s.to(dtype) for s in state)
    with torch.autocast(gi.device.type, enabled=False):
        out, *final = FusedScan.apply(cell, valid, full, reverse, gi, w_hh, b_hh, *state)
    return out, tuple(final)


class FusedScan(torch.autograd.Function):
    """The recurrence of one layer and direction, with a hand-written backward."""

    @staticmethod
    def forward(
        ctx: Any,
        cell: RecurrentCell,
        valid: Tensor | None,
        full: int,
        reverse: bool,
        gi: Tensor,
        w_hh: Tensor,
        b_hh: Tensor | None,
        *state0: Tensor,
    ) -> tuple[Tensor, ...]:
        steps, batch, _ = gi.shape
        hidden = w_hh.shape[1]
        gi = cell.fused_fold_bias(gi, b_hh)
        # Buffers, allocated once: the state after every step (time order) and what
        # the cell's backward needs from every step.
        states = [gi.new_empty(steps, batch, hidden) for _ in state0]
        saved = [gi.new_empty(steps, batch, k * hidden) for k in cell.fused_saved or ()]
        state_t = [s.unbind(0) for s in states]
        saved_t = [s.unbind(0) for s in saved]
        gi_t, valid_t = gi.unbind(0), None if valid is None else valid.unbind(0)
        matmul = step_matmul(w_hh, batch)  # h -> h @ W_hh^T
        prev: list[Tensor] = list(state0)
        for t in _order(steps, reverse):
            new = [s[t] for s in state_t]
            cell.fused_step(gi_t[t], prev, matmul, b_hh, new, [s[t] for s in saved_t])
            if valid_t is not None and t >= full:  # padded entries keep their state
                for n, p in zip(new, prev, strict=True):
                    torch.where(valid_t[t], n, p, out=n)
            prev = new
        out = states[0] if valid is None else states[0].masked_fill(~valid, 0.0)
        ctx.cell, ctx.full, ctx.reverse = cell, full, reverse
        ctx.has_bias = b_hh is not None
        ctx.save_for_backward(valid, w_hh, *state0, *states, *saved)
        ctx.num_states = len(state0)
        return (out, *(p.clone() for p in prev))

    @staticmethod
    def backward(ctx: Any, grad_out: Tensor | None, *grad_final: Tensor | None) -> Any:
        cell: RecurrentCell = ctx.cell
        valid, w_hh, *rest = ctx.saved_tensors
        k = ctx.num_states
        state0, states, saved = rest[:k], rest[k : 2 * k], rest[2 * k :]
        steps, batch, hidden = states[0].shape
        # The state each step started from, in time order (the initial state first).
        if ctx.reverse:
            prev = [torch.cat([s[1:], s0[None]]) for s, s0 in zip(states, state0, strict=True)]
        else:
            prev = [torch.cat([s0[None], s[:-1]]) for s, s0 in zip(states, state0, strict=True)]
        pre = cell.fused_backward_prepare(saved, states, prev)
        gates = cell.num_chunks * hidden
        dgi = states[0].new_empty(steps, batch, gates)
        dgh = dgi if cell.fused_gh_is_gi else torch.empty_like(dgi)
        go = torch.zeros_like(states[0]) if grad_out is None else grad_out
        if valid is not None:  # the output is a constant zero at padded steps
            go = go.masked_fill(~valid, 0.0)
        d = [
            torch.zeros_like(state0[j]) if g is None else g.clone()
            for j, g in enumerate(grad_final)
        ]
        order = list(_order(steps, ctx.reverse))[::-1]
        d[0] = d[0] + go[order[0]]
        dgi_t, dgh_t, go_t = dgi.unbind(0), dgh.unbind(0), go.unbind(0)
        matmul_t = step_matmul(w_hh.t(), batch)  # dgates -> dgates @ W_hh
        valid_t = None if valid is None else valid.unbind(0)
        for i, t in enumerate(order):
            direct = cell.fused_backward_step(t, d, pre, saved, prev, dgi_t[t], dgh_t[t])
            padded = valid_t is not None and t >= ctx.full
            if padded:
                assert valid_t is not None
                dgi_t[t].masked_fill_(~valid_t[t], 0.0)
                if dgh is not dgi:
                    dgh_t[t].masked_fill_(~valid_t[t], 0.0)
            # dh_{t-1} = (the cell's direct terms) + dgates_hh @ W_hh (+ the output's grad)
            nxt = go_t[order[i + 1]] if i + 1 < steps else None
            base = direct[0]
            if nxt is not None:
                base = nxt if base is None else base + nxt
            dh_prev = matmul_t(dgh_t[t])
            if base is not None:
                dh_prev.add_(base)
            rest = [x for x in direct[1:] if x is not None]  # only h's term may be None
            new_d = [dh_prev, *rest]
            if padded:
                assert valid_t is not None
                # a padded step passes the gradient through (plus the output's, for dh)
                carried = [d[0] if nxt is None else d[0] + nxt, *d[1:]]
                new_d = [torch.where(valid_t[t], n, c) for n, c in zip(new_d, carried, strict=True)]
            d = new_d
        # What made the loop slow with autograd is now one matrix product over all steps.
        dw_hh = dgh.reshape(-1, gates).t().mm(prev[0].reshape(-1, hidden))
        db_hh = dgh.sum(dim=(0, 1)) if ctx.has_bias else None
        return (None, None, None, None, dgi, dw_hh, db_hh, *d)


def _order(steps: int, reverse: bool) -> range:
    return range(steps - 1, -1, -1) if reverse else range(steps)

"""The fused fast path: its hand-written backward against numerical derivatives, and the
float32 CPU path users train on (oneDNN's packed kernels, or torch.mm) against torch.nn."""

from __future__ import annotations

import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import rnnzoo
from rnnzoo import fused
from rnnzoo.fused import fast_linear, fused_scan, step_matmul
from tests.helpers import LAYERS, copy_by_name, states

CELLS = ["rnn_tanh", "rnn_relu", "lstm", "gru"]


@pytest.mark.parametrize("cell_name", CELLS)
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("bias", [True, False])
def test_gradcheck_with_ragged_lengths(cell_name, reverse, bias):
    torch.manual_seed(0)
    cell = rnnzoo.CELLS.get(cell_name)(3, 4, bias=bias).double()
    steps, batch = 5, 3
    lengths = torch.tensor([5, 2, 3])
    valid = (torch.arange(steps)[:, None] < lengths[None, :]).unsqueeze(-1)
    gi = torch.randn(steps, batch, cell.num_chunks * 4, dtype=torch.double, requires_grad=True)
    state = [
        torch.randn(batch, 4, dtype=torch.double, requires_grad=True)
        for _ in range(cell.num_states)
    ]
    w_hh = cell.weight_hh.detach().clone().requires_grad_()
    b_hh = cell.bias_hh.detach().clone().requires_grad_() if bias else None
    inputs = [gi, w_hh, *([b_hh] if bias else []), *state]

    def run(*args):
        gi, w_hh, *rest = args
        b = rest.pop(0) if bias else None
        out, final = fused_scan(cell, gi, tuple(rest), w_hh, b, valid, 2, reverse)
        return (out, *final)

    assert torch.autograd.gradcheck(run, inputs)


@pytest.mark.parametrize("cell_name", CELLS)
def test_gradcheck_equal_lengths_and_a_single_step(cell_name):
    cell = rnnzoo.CELLS.get(cell_name)(2, 3).double()
    for steps in (1, 4):
        gi = torch.randn(steps, 2, cell.num_chunks * 3, dtype=torch.double, requires_grad=True)
        state = tuple(torch.randn(2, 3, dtype=torch.double) for _ in range(cell.num_states))
        w_hh = cell.weight_hh.detach().clone().requires_grad_()

        def run(gi, w_hh, state=state, steps=steps):
            out, final = fused_scan(cell, gi, state, w_hh, cell.bias_hh, None, steps, False)
            return (out, *final)

        assert torch.autograd.gradcheck(run, (gi, w_hh))


def test_auto_picks_the_compiled_loop_else_fused_for_cells_with_a_fast_path():
    from rnnzoo import native

    expected = "fused" if native.unavailable() else "native"
    for name in CELLS:
        assert rnnzoo.Recurrent(name, 3, 4).impl == expected
    assert rnnzoo.LSTM(3, 4, impl="loop").impl == "loop"


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"impl": "cuda"}, r"unknown impl 'cuda'; valid: auto, native, loop, fused, torch"),
    ],
)
def test_bad_impl_is_an_error(kwargs, message):
    with pytest.raises(ValueError, match=message):
        rnnzoo.LSTM(3, 4, **kwargs)


EPS32 = torch.finfo(torch.float32).eps
# Float32 rounding alone: on these shapes torch.nn's own float32 kernels land within
# 3.1 eps (of each tensor's largest magnitude) of the float64 answer, and the fused path
# within 3.7 eps, outputs, states and gradients alike. 16 eps leaves room for another
# summation order; a 3e-5 relative error in one product (250 eps), a product rounded
# to bf16 (~3e4 eps) or a stale packed weight is far outside.
F32_EPS_BOUND = 16

FLOAT32_SHAPES = {  # name -> (num_layers, bidirectional, lengths or None, initial state)
    "single": (1, False, None, False),
    "stacked-bi-ragged-hx": (3, True, [9, 3, 6, 1, 8], True),
}


@pytest.fixture(params=["onednn", "RNNZOO_ONEDNN=0"])
def kernels(request, monkeypatch):
    """Each float32 CPU path users get: oneDNN's packed kernels, and torch.mm without."""
    if request.param == "RNNZOO_ONEDNN=0":
        monkeypatch.setenv("RNNZOO_ONEDNN", "0")
    fused._onednn_works.cache_clear()  # decided once per process: decide again here
    if request.param == "onednn" and not fused._onednn_works():
        pytest.skip("this torch build has no working oneDNN packed kernels")
    assert fused._onednn_works() == (request.param == "onednn")
    yield request.param
    monkeypatch.undo()
    fused._onednn_works.cache_clear()


def run_float32(model, x, hx, lengths, ours):
    """Outputs, final states and the gradients of input, hx and every parameter."""
    model.zero_grad(set_to_none=True)
    xi = x.clone().requires_grad_()
    hxi = tuple(h.clone().requires_grad_() for h in hx)
    h_arg = None if not hxi else hxi[0] if len(hxi) == 1 else hxi
    if ours or lengths is None:
        out, h_n = model(xi, h_arg, **({"lengths": torch.tensor(lengths)} if lengths else {}))
    else:
        packed = pack_padded_sequence(xi, torch.tensor(lengths), enforce_sorted=False)
        out, h_n = model(packed, h_arg)
        out, _ = pad_packed_sequence(out, total_length=x.shape[0])
    results = [out, *states(h_n)]
    # weights drawn in float64, then rounded: the same loss for float32 and float64 runs
    gen = torch.Generator().manual_seed(1)
    loss = sum(
        (t * torch.randn(t.shape, generator=gen, dtype=torch.float64).to(t.dtype)).sum()
        for t in results
    )
    loss.backward()
    named = {"output": out, **{f"h_n[{k}]": s for k, s in enumerate(states(h_n))}}
    named["grad input"] = xi.grad
    named.update({f"grad hx[{k}]": h.grad for k, h in enumerate(hxi)})
    named.update({f"grad {n}": p.grad for n, p in model.named_parameters()})
    return named


@pytest.mark.parametrize("impl", ["fused", "native"])
@pytest.mark.parametrize("shape", list(FLOAT32_SHAPES))
@pytest.mark.parametrize("cell", list(LAYERS))
def test_float32_fast_paths_match_torch_nn(cell, shape, kernels, impl):
    """The paths a CPU user trains on (native, or fused where it is not built; float32,
    oneDNN when present) against torch.nn in float32 and float64: outputs, states and
    every gradient, before and after an optimiser step (a packed weight must follow the
    parameter it packs)."""
    from rnnzoo import native

    if impl == "native" and native.unavailable():
        pytest.skip(f"compiled loop not built: {native.unavailable()}")
    ours_cls, ref_cls, kw = LAYERS[cell]
    num_layers, bidirectional, lengths, with_hx = FLOAT32_SHAPES[shape]
    args = dict(num_layers=num_layers, bidirectional=bidirectional, **kw)
    torch.manual_seed(0)
    ref = ref_cls(8, 16, **args)
    ours = ours_cls(8, 16, impl=impl, **args)
    assert ours.impl == impl and ours.weight_hh_l0.dtype == torch.float32
    copy_by_name(ref, ours)
    exact = ref_cls(8, 16, **args).double()
    steps, batch = 9, 5
    x = torch.randn(steps, batch, 8)
    hshape = (num_layers * (2 if bidirectional else 1), batch, 16)
    hx = tuple(torch.randn(hshape) for _ in range(ours.num_states)) if with_hx else ()
    optimizers = [torch.optim.SGD(m.parameters(), lr=0.5) for m in (ours, ref)]
    for when in ("initial weights", "after one SGD step"):
        copy_by_name(ref, exact)
        got = run_float32(ours, x, hx, lengths, ours=True)
        theirs = run_float32(ref, x, hx, lengths, ours=False)
        truth = run_float32(exact, x.double(), tuple(h.double() for h in hx), lengths, False)
        assert got.keys() == theirs.keys() == truth.keys()
        for name, value in truth.items():
            bound = F32_EPS_BOUND * EPS32 * value.abs().max()
            for side, result in (("ours", got[name]), ("torch.nn", theirs[name])):
                assert result.dtype == torch.float32, (side, name)
                error = (result.double() - value).abs().max()
                assert error <= bound, (
                    f"{when}, {name}: {side} float32 is {error / bound * F32_EPS_BOUND:.1f} "
                    f"eps from float64, more than {F32_EPS_BOUND}"
                )
        # one SGD step on a plain loss, the same on both sides
        for model, opt in zip((ours, ref), optimizers, strict=True):
            out, _ = model(x)
            opt.zero_grad()
            out.square().mean().backward()
            opt.step()


def test_a_cell_without_the_fast_path_runs_the_loop(monkeypatch):
    monkeypatch.setattr(rnnzoo.LSTMCell, "fused_saved", None)
    monkeypatch.setattr(rnnzoo.LSTMCell, "native_kind", None)
    assert rnnzoo.LSTM(3, 4).impl == "loop"
    with pytest.raises(ValueError, match="cell 'lstm' has no fused fast path"):
        rnnzoo.LSTM(3, 4, impl="fused")


def test_fast_linear_matches_f_linear_with_gradients():
    """The input projection of the fused path (oneDNN on CPU float32, when present)."""
    torch.manual_seed(0)
    x = torch.randn(7, 5, 6, requires_grad=True)
    w = torch.randn(12, 6, requires_grad=True)
    b = torch.randn(12, requires_grad=True)
    y = fast_linear(x, w, b)
    ref = torch.nn.functional.linear(x, w, b)
    torch.testing.assert_close(y, ref, rtol=1e-5, atol=1e-5)
    g = torch.randn_like(y)
    grads = torch.autograd.grad(y, (x, w, b), g)
    ref_grads = torch.autograd.grad(ref, (x, w, b), g)
    for a, r in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(a, r, rtol=1e-4, atol=1e-4)


def test_step_matmul_matches_mm():
    torch.manual_seed(0)
    w, h = torch.randn(12, 6), torch.randn(5, 6)
    torch.testing.assert_close(step_matmul(w, 5)(h), h @ w.t(), rtol=1e-5, atol=1e-5)
    w64, h64 = w.double(), h.double()  # float64 takes torch.mm
    torch.testing.assert_close(step_matmul(w64, 5)(h64), h64 @ w64.t(), rtol=0, atol=0)

"""minGRU and minLSTM: the step against the paper's equations written out here in float64,
and the parallel scan against the step-by-step loop on ragged batches."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import Tensor

import rnnzoo
from rnnzoo.cells.minimal import log_space_scan
from tests.helpers import states, weighted_sum

IN, H = 3, 4
NAMES = ["mingru", "minlstm"]
F64 = torch.float64


def g(x: Tensor) -> Tensor:
    """The paper's g: x + 1/2 for x >= 0, sigmoid(x) below."""
    return torch.where(x >= 0, x + 0.5, torch.sigmoid(x))


def mingru(w: Tensor, b: Tensor, x: Tensor, h: Tensor) -> Tensor:
    z = torch.sigmoid(x @ w[:H].T + b[:H])
    h_tilde = g(x @ w[H:].T + b[H:])
    return (1 - z) * h + z * h_tilde


def minlstm(w: Tensor, b: Tensor, x: Tensor, h: Tensor) -> Tensor:
    i = torch.sigmoid(x @ w[:H].T + b[:H])
    f = torch.sigmoid(x @ w[H : 2 * H].T + b[H : 2 * H])
    h_tilde = g(x @ w[2 * H :].T + b[2 * H :])
    return f / (f + i) * h + i / (f + i) * h_tilde


EQUATIONS: dict[str, Callable[[Tensor, Tensor, Tensor, Tensor], Tensor]] = {
    "mingru": mingru,
    "minlstm": minlstm,
}


def perturbed_cell(name: str, bias: bool = True) -> rnnzoo.RecurrentCell:
    torch.manual_seed(0)
    cell = rnnzoo.CELLS.get(name)(IN, H, bias=bias, dtype=F64)
    with torch.no_grad():  # larger weights: gate values across (0, 1), g on both branches
        for p in cell.parameters():
            p.mul_(4.0)
    return cell


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("name", NAMES)
def test_step_equals_the_papers_equations_with_gradients(name, bias):
    cell = perturbed_cell(name, bias)
    assert cell.weight_hh is None and cell.bias_hh is None
    assert cell.weight_ih.shape == (cell.num_chunks * H, IN)
    w = cell.weight_ih
    b = cell.bias_ih if bias else torch.zeros(cell.num_chunks * H, dtype=F64)
    x = torch.randn(6, 5, IN, dtype=F64, requires_grad=True)
    h0 = torch.randn(5, H, dtype=F64, requires_grad=True)  # both signs
    ours, ref, h, h_ref = [], [], h0, h0
    for t in range(x.shape[0]):
        h, h_ref = cell(x[t], h), EQUATIONS[name](w, b, x[t], h_ref)
        ours.append(h)
        ref.append(h_ref)
    out, out_ref = torch.stack(ours), torch.stack(ref)
    torch.testing.assert_close(out, out_ref, rtol=1e-12, atol=1e-12)
    leaves = [x, h0, *cell.parameters()]
    for a, r in zip(
        torch.autograd.grad(weighted_sum([out]), leaves),
        torch.autograd.grad(weighted_sum([out_ref]), leaves),
        strict=True,
    ):
        torch.testing.assert_close(a, r, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", NAMES)
def test_step_and_scan_survive_underflowing_gates(name):
    """Every gate's sigmoid underflows to 0 in float32 (minLSTM: f / (f + i) = 0 / 0)."""
    cell = rnnzoo.CELLS.get(name)(IN, H)
    with torch.no_grad():
        cell.weight_ih.zero_()
        cell.bias_ih.fill_(-200.0)
    x, h0 = torch.randn(3, 2, IN), torch.randn(2, H)
    out, _ = cell.parallel_scan(cell.project(x, cell), (h0,), cell, None, False)
    h = h0
    for t in range(3):
        h = cell(x[t], h)
        torch.testing.assert_close(out[t], h)
    assert torch.isfinite(out).all()


def run(layer: rnnzoo.Recurrent, x: Tensor, hx: Tensor | None, lengths: list[int] | None):
    """Outputs, h_n and the gradients of a weighted sum w.r.t. x, hx and every parameter."""
    xi = x.clone().requires_grad_()
    hxi = None if hx is None else hx.clone().requires_grad_()
    out, h_n = layer(xi, hxi, lengths=lengths)
    leaves = [xi, *([] if hxi is None else [hxi]), *layer.parameters()]
    grads = torch.autograd.grad(weighted_sum([out, *states(h_n)]), leaves)
    return out, h_n, grads


RAGGED = [150, 37, 1, 199, 120]  # unsorted, none full length, one of a single step


@pytest.mark.parametrize("lengths", [None, RAGGED], ids=["full", "ragged"])
@pytest.mark.parametrize("initial", ["zero", "randn", "negative"])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("name", NAMES)
def test_parallel_scan_equals_the_loop(name, bidirectional, initial, lengths):
    steps, batch, d = 200, len(RAGGED), 2 if bidirectional else 1
    kw = dict(num_layers=2, bidirectional=bidirectional, batch_first=True, dtype=F64)
    torch.manual_seed(0)
    loop = rnnzoo.Recurrent(name, IN, H, impl="loop", **kw)
    scan = rnnzoo.Recurrent(name, IN, H, impl="scan", **kw)
    scan.load_state_dict(loop.state_dict())
    gen = torch.Generator().manual_seed(1)
    x = 2 * torch.randn(batch, steps, IN, generator=gen, dtype=F64)
    hx = {
        "zero": None,
        "randn": torch.randn(2 * d, batch, H, generator=gen, dtype=F64),
        "negative": -3 - torch.rand(2 * d, batch, H, generator=gen, dtype=F64),
    }[initial]
    # anomaly mode fails on any NaN in backward, even one that masking would hide
    with torch.autograd.detect_anomaly():
        out, h_n, grads = run(scan, x, hx, lengths)
    ref_out, ref_h_n, ref_grads = run(loop, x, hx, lengths)
    torch.testing.assert_close(out, ref_out, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(h_n, ref_h_n, rtol=1e-10, atol=1e-12)
    names = ["x", *(["hx"] if hx is not None else []), *dict(loop.named_parameters())]
    # Weight gradients are sums over B * T steps of size up to ~50, and the log-space
    # scan rounds each term at ~|a*_t| * eps (a*_t ~ -140 here): ~1e-11 absolute.
    for n, a, r in zip(names, grads, ref_grads, strict=True):
        torch.testing.assert_close(a, r, rtol=1e-9, atol=1e-9, msg=n)
    if lengths is not None:
        assert (out[1, 37:] == 0).all()  # padded steps output zero


def test_reverse_scan_over_padding_keeps_h0_until_the_first_real_step():
    """The reverse direction of a padded sequence starts at its own last valid step."""
    log_a = torch.full((5, 1, 1), -0.5, dtype=F64)
    log_b = torch.zeros(5, 1, 1, dtype=F64)  # b = 1
    valid = torch.tensor([True, True, False, False, False])[:, None, None]
    h, final = log_space_scan(log_a, log_b, torch.full((1, 1), -2.0, dtype=F64), valid, True)
    a = torch.exp(torch.tensor(-0.5, dtype=F64))
    at_1 = a * -2.0 + 1  # step 1 runs first, from h_0 = -2 (the padding changed nothing)
    at_0 = a * at_1 + 1
    expected = torch.stack([at_0, at_1, *[torch.zeros((), dtype=F64)] * 3])
    torch.testing.assert_close(h.flatten(), expected)
    torch.testing.assert_close(final.flatten(), at_0.reshape(1))


def test_float32_scan_stays_close_to_the_loop_over_a_long_sequence():
    """The log-space scan's float32 error grows with T (see log_space_scan); bound it."""
    torch.manual_seed(0)
    loop = rnnzoo.Recurrent("mingru", 8, 16, impl="loop")
    scan = rnnzoo.Recurrent("mingru", 8, 16, impl="scan")
    scan.load_state_dict(loop.state_dict())
    x, hx = torch.randn(1000, 4, 8), torch.randn(1, 4, 16)
    with torch.no_grad():
        torch.testing.assert_close(scan(x, hx)[0], loop(x, hx)[0], rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("name", NAMES)
def test_decoder_step_equals_forward(name):
    """``Recurrent.step`` (one step through every layer) runs the same cells as the scan."""
    torch.manual_seed(0)
    layer = rnnzoo.Recurrent(name, IN, H, num_layers=2, dtype=F64)
    x, hx = torch.randn(7, 3, IN, dtype=F64), torch.randn(2, 3, H, dtype=F64)
    out, h_n = layer(x, hx)
    h = hx
    for t in range(7):
        y, h = layer.step(x[t], h)
        torch.testing.assert_close(y, out[t])
    torch.testing.assert_close(h, h_n)


@pytest.mark.parametrize("name", NAMES)
def test_auto_picks_the_scan_and_the_layer_has_no_recurrent_weights(name):
    layer = rnnzoo.Recurrent(name, IN, H, bidirectional=True)
    assert layer.impl == "scan"
    assert rnnzoo.Recurrent(name, IN, H, impl="loop").impl == "loop"
    assert list(layer.state_dict()) == [
        "weight_ih_l0",
        "bias_ih_l0",
        "weight_ih_l0_reverse",
        "bias_ih_l0_reverse",
    ]
    chunks = {"mingru": 2, "minlstm": 3}[name]
    assert layer.weight_ih_l0.shape == (chunks * H, IN)
    with pytest.raises(ValueError, match=f"cell '{name}' has no fused fast path"):
        rnnzoo.Recurrent(name, IN, H, impl="fused")


def test_scan_on_a_cell_without_one_is_an_error():
    with pytest.raises(ValueError, match="cell 'lstm' has no parallel scan; use impl='loop'"):
        rnnzoo.LSTM(IN, H, impl="scan")
    with pytest.raises(ValueError, match="cell 'gru' has no parallel scan"):
        rnnzoo.Recurrent("gru", IN, H, impl="scan")
    assert rnnzoo.LSTM(IN, H).impl in ("native", "fused")  # auto: unchanged without one

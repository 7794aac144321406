"""The fused fast path: its hand-written backward against numerical derivatives."""

from __future__ import annotations

import pytest
import torch

import rnnzoo
from rnnzoo.fused import fast_linear, fused_scan, step_matmul
from tests.helpers import LAYERS

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


def test_auto_picks_fused_for_cells_with_a_fast_path():
    for name in CELLS:
        assert rnnzoo.Recurrent(name, 3, 4).impl == "fused"
    assert rnnzoo.LSTM(3, 4, impl="loop").impl == "loop"


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"impl": "cuda"}, r"unknown impl 'cuda'; valid: auto, loop, fused, torch"),
    ],
)
def test_bad_impl_is_an_error(kwargs, message):
    with pytest.raises(ValueError, match=message):
        rnnzoo.LSTM(3, 4, **kwargs)


def test_fused_and_loop_agree_in_float32_training_step():
    """The same training step in float32 on both paths (the equivalence suite is float64)."""
    for name, (cls, _, kw) in LAYERS.items():
        torch.manual_seed(0)
        a = cls(8, 16, num_layers=2, bidirectional=True, impl="loop", **kw)
        b = cls(8, 16, num_layers=2, bidirectional=True, impl="fused", **kw)
        b.load_state_dict(a.state_dict())
        x = torch.randn(20, 4, 8)
        lengths = torch.tensor([20, 5, 13, 1])
        for layer in (a, b):
            out, _ = layer(x, lengths=lengths)
            out.square().mean().backward()
        for (n, p), q in zip(a.named_parameters(), b.parameters(), strict=True):
            torch.testing.assert_close(p.grad, q.grad, rtol=1e-4, atol=1e-5, msg=f"{name} {n}")


def test_a_cell_without_the_fast_path_runs_the_loop(monkeypatch):
    monkeypatch.setattr(rnnzoo.LSTMCell, "fused_saved", None)
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

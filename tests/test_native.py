"""The compiled time loop (rnnzoo.native) against the cells' own equations.

Every cell with a ``native_kind`` runs through ``impl='native'`` and through the plain
autograd loop (``impl='loop'``, the cells' Python ``step``) on the same weights, inputs
and random stream; outputs, final states and every gradient must agree. The loop draws
hidden dropout and zoneout masks in the order the compiled path does, so regularised
runs compare exactly too.
"""

from __future__ import annotations

import pytest
import torch

import rnnzoo
from rnnzoo import native
from rnnzoo.layers import Recurrent

pytestmark = pytest.mark.skipif(
    native.unavailable() is not None, reason=f"compiled loop not built: {native.unavailable()}"
)

NATIVE_CELLS = [
    name
    for name in rnnzoo.list_cells()
    if Recurrent(name, 2, 2).cells[0].native_kind is not None  # type: ignore[union-attr]
]


def _pair(cell: str, dtype: torch.dtype = torch.float64, **kw):
    torch.manual_seed(0)
    loop = Recurrent(cell, 3, 5, impl="loop", dtype=dtype, **kw)
    fast = Recurrent(cell, 3, 5, impl="native", dtype=dtype, **kw)
    with torch.no_grad():  # random values everywhere, LayerNorm gains and peepholes too
        for p in loop.parameters():
            p.uniform_(-0.8, 0.8)
    fast.load_state_dict(loop.state_dict())
    return loop, fast


def _run(layer, x, hx, lengths, grad_seed=1):
    x = x.clone().requires_grad_(True)
    hx = tuple(h.clone().requires_grad_(True) for h in hx)
    torch.manual_seed(7)  # the regularisers' random stream
    out, h_n = layer(x, hx if len(hx) > 1 else hx[0], lengths=lengths)
    h_n = h_n if isinstance(h_n, tuple) else (h_n,)
    gen = torch.Generator().manual_seed(grad_seed)
    loss = (out * torch.randn(out.shape, generator=gen, dtype=out.dtype)).sum()
    loss = loss + sum((h * torch.randn(h.shape, generator=gen, dtype=h.dtype)).sum() for h in h_n)
    loss.backward()
    grads = {n: p.grad for n, p in layer.named_parameters()}
    return out, h_n, x.grad, [h.grad for h in hx], grads


def _compare(loop, fast, lengths=None, steps=6, batch=4, tol=1e-10):
    dtype = next(loop.parameters()).dtype
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(steps, batch, 3, generator=gen, dtype=dtype)
    shape = (loop.num_layers * loop.num_directions, batch, 5)
    hx = tuple(torch.randn(shape, generator=gen, dtype=dtype) for _ in range(loop.num_states))
    a, b = _run(loop, x, hx, lengths), _run(fast, x, hx, lengths)
    torch.testing.assert_close(b[0], a[0], rtol=tol, atol=tol)  # output
    for ha, hb in zip(a[1], b[1], strict=True):  # final states
        torch.testing.assert_close(hb, ha, rtol=tol, atol=tol)
    torch.testing.assert_close(b[2], a[2], rtol=tol, atol=tol)  # d input
    for ga, gb in zip(a[3], b[3], strict=True):  # d initial states
        torch.testing.assert_close(gb, ga, rtol=tol, atol=tol)
    assert a[4].keys() == b[4].keys()
    for name in a[4]:
        assert b[4][name] is not None, name
        torch.testing.assert_close(b[4][name], a[4][name], rtol=tol, atol=tol, msg=name)


@pytest.mark.parametrize("cell", NATIVE_CELLS)
@pytest.mark.parametrize("bidirectional", [False, True])
def test_equal_to_the_cells_equations_deep_and_ragged(cell, bidirectional):
    loop, fast = _pair(cell, num_layers=2, bidirectional=bidirectional)
    _compare(loop, fast)
    _compare(loop, fast, lengths=torch.tensor([6, 2, 5, 1]))


@pytest.mark.parametrize("cell", NATIVE_CELLS)
def test_equal_without_biases(cell):
    _compare(*_pair(cell, bias=False))


def _regularised(cell: str) -> list[dict]:
    options = [{"zoneout": 0.3}, {"weight_drop": 0.4}, {"input_dropout": 0.2}]
    try:
        Recurrent(cell, 2, 2, hidden_dropout=0.3)
        options.append({"hidden_dropout": 0.3})
        options.append({"hidden_dropout": 0.3, "zoneout": 0.2, "weight_drop": 0.2})
    except ValueError:  # the cell rejects it on every path (layernorm_gru)
        pass
    return options


@pytest.mark.parametrize("cell", NATIVE_CELLS)
@pytest.mark.parametrize("training", [True, False])
def test_regularisers_run_inside_and_draw_the_loops_masks(cell, training):
    for options in _regularised(cell):
        loop, fast = _pair(cell, num_layers=2, bidirectional=True, **options)
        loop.train(training)
        fast.train(training)
        _compare(loop, fast, lengths=torch.tensor([6, 3, 6, 1]))


@pytest.mark.parametrize("cell", ["lstm", "gru", "layernorm_lstm", "peephole_lstm", "indrnn"])
def test_float32_close_to_float64(cell):
    loop, _ = _pair(cell, bidirectional=True)
    fast32 = Recurrent(cell, 3, 5, impl="native", bidirectional=True)
    fast32.load_state_dict({k: v.float() for k, v in loop.state_dict().items()})
    x = torch.randn(9, 4, 3, dtype=torch.float64)
    out64, _ = loop(x, lengths=torch.tensor([9, 4, 7, 2]))
    out32, _ = fast32(x.float(), lengths=torch.tensor([9, 4, 7, 2]))
    torch.testing.assert_close(out32.double(), out64, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("cell", ["lstm", "gru", "layernorm_gru", "cifg_lstm"])
def test_gradcheck(cell):
    """Finite differences on the compiled backward itself, not only agreement."""
    _, fast = _pair(cell)
    x = torch.randn(4, 2, 3, dtype=torch.float64, requires_grad=True)
    h0 = torch.randn(1, 2, 5, dtype=torch.float64, requires_grad=True)

    def f(x, h0):
        hx = (h0, torch.zeros_like(h0)) if fast.num_states == 2 else h0
        return fast(x, hx, lengths=torch.tensor([4, 2]))[0]

    assert torch.autograd.gradcheck(f, (x, h0))


def test_auto_picks_native_and_drop_ins_use_it():
    assert rnnzoo.LSTM(3, 4).impl == "native"
    assert rnnzoo.GRU(3, 4).impl == "native"
    assert Recurrent("layernorm_lstm", 3, 4).impl == "native"
    assert Recurrent("mingru", 3, 4).impl == "scan"


def test_drop_in_equal_to_torch_nn_in_float32():
    torch.manual_seed(0)
    ref = torch.nn.LSTM(8, 16, num_layers=2, bidirectional=True)
    ours = rnnzoo.LSTM(8, 16, num_layers=2, bidirectional=True)
    ours.load_state_dict(ref.state_dict())
    x = torch.randn(20, 6, 8, requires_grad=True)
    out_ref, _ = ref(x)
    out, _ = ours(x)
    torch.testing.assert_close(out, out_ref, rtol=1e-5, atol=1e-5)
    (g_ref,) = torch.autograd.grad(out_ref.square().sum(), x)
    (g,) = torch.autograd.grad(out.square().sum(), x)
    torch.testing.assert_close(g, g_ref, rtol=1e-4, atol=1e-5)

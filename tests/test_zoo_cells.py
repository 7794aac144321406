"""The zoo's LSTM/GRU variants and IndRNN against their papers' equations, written out
here on their own in float64, and reduced to the plain cells where the papers say so."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import Tensor

import rnnzoo
from rnnzoo.cells import layernorm
from tests.helpers import states, weighted_sum

IN, H, T, B = 3, 4, 6, 2  # input size, hidden size, steps, batch
Params = dict[str, Tensor]


def ln(v: Tensor, gain: Tensor, shift: Tensor | None = None) -> Tensor:
    mean = v.mean(-1, keepdim=True)
    var = ((v - mean) ** 2).mean(-1, keepdim=True)
    out = gain * (v - mean) / torch.sqrt(var + 1e-5)
    return out if shift is None else out + shift


def lin(p: Params, x: Tensor, h: Tensor) -> tuple[Tensor, Tensor]:
    """W_ih x + b_ih and W_hh h + b_hh, unnormalised."""
    return x @ p["weight_ih"].T + p["bias_ih"], h @ p["weight_hh"].T + p["bias_hh"]


def layernorm_lstm(p: Params, x: Tensor, h: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
    a = ln(x @ p["weight_ih"].T, p["ln_ih_weight"]) + p["bias_ih"]
    a = a + ln(h @ p["weight_hh"].T, p["ln_hh_weight"]) + p["bias_hh"]
    i, f, g, o = a.split(H, dim=-1)
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    h = torch.sigmoid(o) * torch.tanh(ln(c, p["ln_cell_weight"], p["ln_cell_bias"]))
    return h, c


def layernorm_gru(p: Params, x: Tensor, h: Tensor) -> tuple[Tensor]:
    gi = ln(x @ p["weight_ih"].T, p["ln_ih_weight"]) + p["bias_ih"]
    gh = ln(h @ p["weight_hh"].T, p["ln_hh_weight"]) + p["bias_hh"]
    r = torch.sigmoid(gi[:, :H] + gh[:, :H])
    z = torch.sigmoid(gi[:, H : 2 * H] + gh[:, H : 2 * H])
    n = torch.tanh(gi[:, 2 * H :] + r * gh[:, 2 * H :])
    return ((1 - z) * n + z * h,)


def peephole_lstm(p: Params, x: Tensor, h: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
    gi, gh = lin(p, x, h)
    a = gi + gh
    i = torch.sigmoid(a[:, :H] + p["weight_ci"] * c)
    f = torch.sigmoid(a[:, H : 2 * H] + p["weight_cf"] * c)
    c = f * c + i * torch.tanh(a[:, 2 * H : 3 * H])
    o = torch.sigmoid(a[:, 3 * H :] + p["weight_co"] * c)
    return o * torch.tanh(c), c


def cifg_lstm(p: Params, x: Tensor, h: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
    gi, gh = lin(p, x, h)
    i, g, o = (gi + gh).split(H, dim=-1)
    i = torch.sigmoid(i)
    c = (1 - i) * c + i * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(c), c


def indrnn(p: Params, x: Tensor, h: Tensor) -> tuple[Tensor]:
    u = p["weight_hh"].clamp(-(2 ** (1 / 100)), 2 ** (1 / 100))
    return (torch.relu(x @ p["weight_ih"].T + p["bias_ih"] + u * h),)


EQUATIONS: dict[str, Callable[..., tuple[Tensor, ...]]] = {
    "layernorm_lstm": layernorm_lstm,
    "layernorm_gru": layernorm_gru,
    "peephole_lstm": peephole_lstm,
    "cifg_lstm": cifg_lstm,
    "indrnn": indrnn,
}


def run_equations(name: str, p: Params, x: Tensor, start: tuple[Tensor, ...]) -> Tensor:
    """The paper's recurrence over x (T, B, I), one step at a time: outputs (T, B, H)."""
    state, outs = start, []
    for t in range(x.shape[0]):
        state = EQUATIONS[name](p, x[t], *state)
        outs.append(state[0])
    return torch.stack(outs)


def layer_and_params(name: str, **kw) -> tuple[rnnzoo.Recurrent, Params]:
    torch.manual_seed(0)
    layer = rnnzoo.Recurrent(name, IN, H, dtype=torch.float64, **kw)
    with torch.no_grad():  # move every part off its initial value (gains 1, shifts 0)
        for p in layer.parameters():
            p.add_(0.3 * torch.randn_like(p))
    params = {n.removesuffix("_l0"): p for n, p in layer.named_parameters()}
    return layer, params


@pytest.mark.parametrize("name", list(EQUATIONS))
def test_cell_equals_its_papers_equations_with_gradients(name):
    layer, params = layer_and_params(name)
    assert name in rnnzoo.list_cells()
    x = torch.randn(T, B, IN, dtype=torch.float64, requires_grad=True)
    start = tuple(torch.randn(1, B, H, dtype=torch.float64) for _ in range(layer.num_states))
    out, h_n = layer(x, start[0] if len(start) == 1 else start)
    ref = run_equations(name, params, x, tuple(s[0] for s in start))
    torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(states(h_n)[0][0], ref[-1], rtol=1e-10, atol=1e-10)
    leaves = [x, *params.values()]
    ours = torch.autograd.grad(weighted_sum([out]), leaves)
    theirs = torch.autograd.grad(weighted_sum([ref]), leaves)
    for n, a, b in zip(["x", *params], ours, theirs, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-10, msg=n)


def plain_twin(name: str, params: Params) -> rnnzoo.Recurrent:
    """Our plain cell with the variant's shared weights copied in."""
    twin = rnnzoo.Recurrent(name, IN, H, dtype=torch.float64)
    with torch.no_grad():
        for n, p in twin.named_parameters():
            p.copy_(params[n.removesuffix("_l0")])
    return twin


@pytest.mark.parametrize(
    ("variant", "plain"), [("layernorm_lstm", "lstm"), ("layernorm_gru", "gru")]
)
def test_layernorm_cells_without_normalisation_are_the_plain_cells(variant, plain, monkeypatch):
    # the cells' Python equations (the compiled loop is proven equal to them elsewhere)
    layer, params = layer_and_params(variant, impl="loop")
    x = torch.randn(T, B, IN, dtype=torch.float64)
    normed, _ = layer(x)
    monkeypatch.setattr(layernorm, "_norm", lambda v, weight, bias: v)
    out, h_n = layer(x)
    ref, ref_h = plain_twin(plain, params)(x)
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)
    for a, b in zip(states(h_n), states(ref_h), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    assert not torch.allclose(normed, ref)  # the normalisation did something before


def test_peephole_lstm_with_zero_peepholes_is_the_lstm():
    layer, params = layer_and_params("peephole_lstm")
    x = torch.randn(T, B, IN, dtype=torch.float64)
    with_peepholes, _ = layer(x)
    with torch.no_grad():
        for n in ("weight_ci", "weight_cf", "weight_co"):
            params[n].zero_()
    out, (_, c) = layer(x)
    ref, (_, ref_c) = plain_twin("lstm", params)(x)
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(c, ref_c, rtol=1e-12, atol=1e-12)
    assert not torch.allclose(with_peepholes, ref)


def test_cifg_has_three_gate_blocks_and_forgets_what_it_writes():
    layer, params = layer_and_params("cifg_lstm")
    assert params["weight_ih"].shape == (3 * H, IN) and params["weight_hh"].shape == (3 * H, H)
    lstm = rnnzoo.Recurrent("lstm", IN, H)
    assert (
        sum(p.numel() for p in layer.parameters())
        == 3 * sum(p.numel() for p in lstm.parameters()) // 4
    )
    # input gate fully open (large bias): the cell state is the candidate, all else forgotten
    with torch.no_grad():
        params["bias_ih"][:H] = 50.0
    x = torch.randn(T, B, IN, dtype=torch.float64)
    c0 = torch.randn(1, B, H, dtype=torch.float64)
    _, (_, c) = layer(x[:1], (torch.zeros_like(c0), c0))
    g = torch.tanh(
        (x[0] @ params["weight_ih"].T + params["bias_ih"] + params["bias_hh"])[:, H : 2 * H]
    )
    torch.testing.assert_close(c[0], g, rtol=1e-10, atol=1e-10)


def test_indrnn_keeps_its_recurrent_weight_within_the_bound():
    layer, params = layer_and_params("indrnn", recurrent_max=0.5)
    assert params["weight_hh"].shape == (H,) and "bias_hh" not in params
    with torch.no_grad():
        params["weight_hh"].copy_(torch.tensor([3.0, -3.0, 0.2, -0.4], dtype=torch.float64))
    x = torch.randn(T, B, IN, dtype=torch.float64)
    out, _ = layer(x)
    h, outs = torch.zeros(B, H, dtype=torch.float64), []
    u = torch.tensor([0.5, -0.5, 0.2, -0.4], dtype=torch.float64)
    for t in range(T):
        h = torch.relu(x[t] @ params["weight_ih"].T + params["bias_ih"] + u * h)
        outs.append(h)
    torch.testing.assert_close(out, torch.stack(outs), rtol=1e-12, atol=1e-12)
    (grad,) = torch.autograd.grad(out.sum(), params["weight_hh"])
    assert (grad[:2] == 0).all()  # clamped: no gradient pushes further out
    with pytest.raises(ValueError, match="recurrent_max"):
        rnnzoo.Recurrent("indrnn", IN, H, recurrent_max=0.0)


def test_indrnn_starts_inside_its_bound():
    layer = rnnzoo.Recurrent("indrnn", IN, 64, num_layers=2, recurrent_max=0.9)
    for n, p in layer.named_parameters():
        if n.startswith("weight_hh"):
            assert p.shape == (64,) and (p >= 0).all() and (p <= 0.9).all()


@pytest.mark.parametrize("name", ["layernorm_lstm", "layernorm_gru"])
def test_layernorm_gains_start_at_one_and_shifts_at_zero(name):
    layer = rnnzoo.Recurrent(name, IN, H, num_layers=2, bidirectional=True)
    for n, p in layer.named_parameters():
        if n.startswith("ln_"):
            expected = 1.0 if "_weight" in n else 0.0
            assert (p == expected).all(), n

"""Each cell alone against its torch.nn twin, and the cell registry."""

from __future__ import annotations

import pytest
import torch

import rnnzoo
from tests.helpers import CELLS, copy_by_name, states, weighted_sum

TOL = {"rtol": 1e-10, "atol": 1e-10}


@pytest.mark.parametrize("cell", list(CELLS))
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("with_hx", [False, True])
@pytest.mark.parametrize("batched", [True, False])
def test_cell_matches_torch(cell, bias, with_hx, batched):
    ours_cls, ref_cls, kw = CELLS[cell]
    torch.manual_seed(0)
    ours = ours_cls(5, 7, bias=bias, **kw).double()
    torch.manual_seed(0)
    ref = ref_cls(5, 7, bias=bias, **kw).double()
    # Same seed, same draws: the initialisation itself matches, before any copy.
    assert list(ours.state_dict()) == list(ref.state_dict())
    for name, p in ref.named_parameters():
        torch.testing.assert_close(getattr(ours, name), p, rtol=0, atol=0)

    x = torch.randn(3, 5, dtype=torch.double) if batched else torch.randn(5, dtype=torch.double)
    hshape = (3, 7) if batched else (7,)
    hx = None
    if with_hx:
        hx = torch.randn(hshape, dtype=torch.double)
        if cell == "lstm":
            hx = (hx, torch.randn(hshape, dtype=torch.double))
    results = []
    for model in (ours, ref):
        xi = x.clone().requires_grad_()
        out = model(xi, hx)
        weighted_sum(list(states(out))).backward()
        results.append((states(out), xi.grad, {n: p.grad for n, p in model.named_parameters()}))
    (out, gx, gp), (ref_out, ref_gx, ref_gp) = results
    for a, b in zip(out, ref_out, strict=True):
        torch.testing.assert_close(a, b, **TOL)
    torch.testing.assert_close(gx, ref_gx, **TOL)
    for name in ref_gp:
        torch.testing.assert_close(gp[name], ref_gp[name], **TOL, msg=name)


@pytest.mark.parametrize("cell", list(CELLS))
def test_cell_weights_copied_from_torch(cell):
    """torch.nn -> ours by name (the other direction of the init test above)."""
    ours_cls, ref_cls, kw = CELLS[cell]
    ours, ref = ours_cls(4, 3, **kw).double(), ref_cls(4, 3, **kw).double()
    copy_by_name(ref, ours)
    x = torch.randn(2, 4, dtype=torch.double)
    for a, b in zip(states(ours(x)), states(ref(x)), strict=True):
        torch.testing.assert_close(a, b, **TOL)


def test_registry_lists_the_cells():
    assert rnnzoo.list_cells() == [
        "cifg_lstm", "gru", "indrnn", "layernorm_gru", "layernorm_lstm", "lstm", "mingru",
        "minlstm", "peephole_lstm", "rnn_relu", "rnn_tanh",
    ]  # fmt: skip


def test_unknown_cell_lists_the_valid_names():
    with pytest.raises(
        ValueError, match=r"unknown cell 'lstn'.*'lstm'.*valid names: cifg_lstm, gru, .*, lstm, "
    ):
        rnnzoo.Recurrent("lstn", 3, 4)


def test_registering_a_name_twice_is_an_error():
    with pytest.raises(ValueError, match="already registered"):
        rnnzoo.CELLS.add("lstm", rnnzoo.LSTMCell)


def test_registry_on_its_own():
    reg: rnnzoo.Registry = rnnzoo.Registry("thing")

    @reg.register("a")
    def make_a():
        return "a"

    assert reg.get("a") is make_a
    assert "a" in reg and list(reg) == ["a"]
    with pytest.raises(rnnzoo.UnknownNameError, match="unknown thing 'b'; valid names: a"):
        reg.get("b")


@pytest.mark.parametrize("name", rnnzoo.list_cells())
def test_every_registered_cell_runs_in_every_layer_mode(name):
    """Registry-wide checks: a new cell gets stacking, both directions and lengths."""
    layer = rnnzoo.Recurrent(name, 3, 5, num_layers=2, bidirectional=True, batch_first=True)
    x = torch.randn(4, 6, 3, requires_grad=True)
    out, h_n = layer(x, lengths=[6, 2, 4, 1])
    assert out.shape == (4, 6, 10)
    for h in states(h_n):
        assert h.shape == (4, 4, 5)
    assert torch.isfinite(out).all()
    weighted_sum([out, *states(h_n)]).backward()
    for pname, p in layer.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, f"{pname} got no gradient"
    assert x.grad[1, 2:].abs().sum() == 0  # padded steps of sequence 1 feed nothing


def test_cell_rejects_bad_input():
    cell = rnnzoo.LSTMCell(3, 4)
    with pytest.raises(ValueError, match=r"expected input feature size 3, got 5"):
        cell(torch.randn(2, 5))
    with pytest.raises(ValueError, match=r"expected input of shape \(batch, 3\)"):
        cell(torch.randn(2, 2, 3))
    with pytest.raises(ValueError, match=r"expected a state of 2 tensor\(s\), got 1"):
        cell(torch.randn(2, 3), (torch.zeros(2, 4),))
    with pytest.raises(ValueError, match=r"expected hidden state of shape \(2, 4\), got \(2, 5\)"):
        rnnzoo.GRUCell(3, 4)(torch.randn(2, 3), torch.zeros(2, 5))
    with pytest.raises(ValueError, match="unknown nonlinearity 'sigmoid'"):
        rnnzoo.RNNCell(3, 4, nonlinearity="sigmoid")

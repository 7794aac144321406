"""Our layers against torch.nn in float64: outputs, final states and every gradient."""

from __future__ import annotations

import itertools

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from rnnzoo import native
from tests.helpers import LAYERS, copy_by_name, states, weighted_sum

TOL = {"rtol": 1e-10, "atol": 1e-10}
IN, H, B, T = 5, 6, 4, 7
RAGGED = [3, 7, 1, 5]  # unsorted on purpose: torch needs enforce_sorted=False
# every way a layer can run its recurrence (the compiled loop where it is built)
IMPLS = ["loop", "fused", "torch", *(["native"] if native.unavailable() is None else [])]


def run_pair(cell, num_layers, bidirectional, batch_first, lengths, with_hx, copy, impl, seed=0):
    """Run ours and torch.nn's twin on the same data; return both sides' results."""
    ours_cls, ref_cls, kw = LAYERS[cell]
    torch.manual_seed(seed)
    args = dict(num_layers=num_layers, bidirectional=bidirectional, batch_first=batch_first, **kw)
    ours = ours_cls(IN, H, impl=impl, **args).double()
    ref = ref_cls(IN, H, **args).double()
    if copy == "ours->torch":
        copy_by_name(ours, ref)
    else:
        copy_by_name(ref, ours)

    steps, batch = (T, B) if lengths is None else (max(lengths), len(lengths))
    gen = torch.Generator().manual_seed(seed + 1)
    shape = (batch, steps, IN) if batch_first else (steps, batch, IN)
    x = torch.randn(shape, generator=gen, dtype=torch.double)
    directions = 2 if bidirectional else 1
    num_states = 2 if cell == "lstm" else 1
    hx = None
    if with_hx:
        hshape = (num_layers * directions, batch, H)
        hx = tuple(
            torch.randn(hshape, generator=gen, dtype=torch.double) for _ in range(num_states)
        )

    results = []
    for model, side in ((ours, "ours"), (ref, "torch")):
        xi = x.clone().requires_grad_()
        hxi = None if hx is None else tuple(h.clone().requires_grad_() for h in hx)
        h_arg = None if hxi is None else (hxi[0] if num_states == 1 else hxi)
        if lengths is None:
            out, h_n = model(xi, h_arg)
        elif side == "ours":
            out, h_n = model(xi, h_arg, lengths=torch.tensor(lengths))
        else:
            packed = pack_padded_sequence(
                xi, torch.tensor(lengths), batch_first=batch_first, enforce_sorted=False
            )
            out, h_n = model(packed, h_arg)
            out, _ = pad_packed_sequence(out, batch_first=batch_first, total_length=steps)
        weighted_sum([out, *states(h_n)]).backward()
        grads = {"input": xi.grad}
        if hxi is not None:
            grads.update({f"hx{k}": h.grad for k, h in enumerate(hxi)})
        grads.update({name: p.grad for name, p in model.named_parameters()})
        results.append((out, states(h_n), grads))
    return results


MATRIX = list(
    itertools.product(
        LAYERS,  # cell
        [1, 2, 3],  # num_layers
        [False, True],  # bidirectional
        [False, True],  # batch_first
        [None, RAGGED],  # lengths
        [False, True],  # initial state given
    )
)


@pytest.mark.parametrize(
    "cell,num_layers,bidirectional,batch_first,lengths,with_hx",
    MATRIX,
    ids=[
        f"{c}-L{n}-{'bi' if b else 'uni'}-{'bf' if f else 'tf'}-{'ragged' if r else 'full'}"
        f"-{'hx' if h else 'nohx'}"
        for c, n, b, f, r, h in MATRIX
    ],
)
@pytest.mark.parametrize("copy", ["ours->torch", "torch->ours"])
@pytest.mark.parametrize("impl", IMPLS)
def test_layer_matches_torch(
    cell, num_layers, bidirectional, batch_first, lengths, with_hx, copy, impl
):
    (out, h_n, grads), (ref_out, ref_h_n, ref_grads) = run_pair(
        cell, num_layers, bidirectional, batch_first, lengths, with_hx, copy, impl
    )
    torch.testing.assert_close(out, ref_out, **TOL)
    assert len(h_n) == len(ref_h_n)
    for ours, ref in zip(h_n, ref_h_n, strict=True):
        torch.testing.assert_close(ours, ref, **TOL)
    assert sorted(grads) == sorted(ref_grads)
    for name, g in grads.items():
        assert g is not None, f"no gradient for {name}"
        torch.testing.assert_close(g, ref_grads[name], **TOL, msg=lambda m, n=name: f"{n}: {m}")


@pytest.mark.parametrize("cell", list(LAYERS))
def test_init_and_state_dict_match_torch(cell):
    """Same seed, same initial weights, same keys: ours and torch.nn draw identically."""
    ours_cls, ref_cls, kw = LAYERS[cell]
    torch.manual_seed(3)
    ours = ours_cls(IN, H, num_layers=2, bidirectional=True, **kw)
    torch.manual_seed(3)
    ref = ref_cls(IN, H, num_layers=2, bidirectional=True, **kw)
    assert list(ours.state_dict()) == list(ref.state_dict())
    for (name, p), (_, q) in zip(ours.state_dict().items(), ref.state_dict().items(), strict=True):
        torch.testing.assert_close(p, q, rtol=0, atol=0, msg=name)
    # and a state_dict loads strictly in both directions
    ref.load_state_dict(ours.state_dict())
    ours.load_state_dict(ref.state_dict())


@pytest.mark.parametrize("cell", list(LAYERS))
def test_reset_parameters_uses_torch_bounds(cell):
    ours_cls, _, kw = LAYERS[cell]
    layer = ours_cls(IN, 16, num_layers=2, **kw)
    with torch.no_grad():
        for p in layer.parameters():
            p.fill_(5.0)
    layer.reset_parameters()
    for name, p in layer.named_parameters():
        assert p.abs().max() <= 0.25, name  # 1 / sqrt(16)
        assert p.std() > 0.1, name  # actually redrawn, not left constant


@pytest.mark.parametrize("cell", list(LAYERS))
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("impl", IMPLS)
def test_packed_sequence_in_packed_sequence_out(cell, bidirectional, batch_first, impl):
    ours_cls, ref_cls, kw = LAYERS[cell]
    args = dict(num_layers=2, bidirectional=bidirectional, batch_first=batch_first, **kw)
    ours = ours_cls(IN, H, impl=impl, **args)
    ref = ref_cls(IN, H, num_layers=2, bidirectional=bidirectional, batch_first=batch_first, **kw)
    ours.double(), ref.double()
    copy_by_name(ours, ref)
    x = torch.randn(len(RAGGED), max(RAGGED), IN, dtype=torch.double)
    if not batch_first:
        x = x.transpose(0, 1)
    packed = pack_padded_sequence(x, torch.tensor(RAGGED), batch_first, enforce_sorted=False)
    out, h_n = ours(packed)
    ref_out, ref_h_n = ref(packed)
    assert type(out) is type(ref_out)
    torch.testing.assert_close(out.data, ref_out.data, **TOL)
    assert torch.equal(out.batch_sizes, ref_out.batch_sizes)
    assert torch.equal(out.sorted_indices, ref_out.sorted_indices)
    assert torch.equal(out.unsorted_indices, ref_out.unsorted_indices)
    for a, b in zip(states(h_n), states(ref_h_n), strict=True):
        torch.testing.assert_close(a, b, **TOL)


@pytest.mark.parametrize("cell", list(LAYERS))
@pytest.mark.parametrize("impl", IMPLS)
def test_unbatched_input_matches_torch(cell, impl):
    ours_cls, ref_cls, kw = LAYERS[cell]
    ours = ours_cls(IN, H, num_layers=2, bidirectional=True, impl=impl, **kw).double()
    ref = ref_cls(IN, H, num_layers=2, bidirectional=True, **kw).double()
    copy_by_name(ours, ref)
    x = torch.randn(T, IN, dtype=torch.double)
    out, h_n = ours(x)
    ref_out, ref_h_n = ref(x)
    torch.testing.assert_close(out, ref_out, **TOL)
    for a, b in zip(states(h_n), states(ref_h_n), strict=True):
        torch.testing.assert_close(a, b, **TOL)


@pytest.mark.parametrize("cell", list(LAYERS))
@pytest.mark.parametrize("impl", IMPLS)
def test_padded_positions_are_zero_and_ignored(cell, impl):
    """Garbage in the padding changes nothing: the state never sees a padded step."""
    ours_cls, _, kw = LAYERS[cell]
    layer = ours_cls(IN, H, bidirectional=True, impl=impl, **kw).double()
    x = torch.randn(max(RAGGED), len(RAGGED), IN, dtype=torch.double)
    lengths = torch.tensor(RAGGED)
    pad = torch.arange(x.shape[0])[:, None] >= lengths[None, :]
    noisy = x.masked_fill(pad.unsqueeze(-1), 1e3)
    out, h_n = layer(x, lengths=lengths)
    out2, h_n2 = layer(noisy, lengths=lengths)
    torch.testing.assert_close(out, out2, **TOL)
    for a, b in zip(states(h_n), states(h_n2), strict=True):
        torch.testing.assert_close(a, b, **TOL)
    assert torch.all(out[pad] == 0)


@settings(max_examples=60, deadline=None)
@given(
    cell=st.sampled_from(sorted(LAYERS)),
    input_size=st.integers(1, 6),
    hidden_size=st.integers(1, 6),
    num_layers=st.integers(1, 3),
    bidirectional=st.booleans(),
    batch_first=st.booleans(),
    lengths=st.lists(st.integers(1, 8), min_size=1, max_size=5),
    seed=st.integers(0, 2**16),
    impl=st.sampled_from([i for i in IMPLS if i != "torch"]),
)
def test_random_shapes_match_torch(
    cell, input_size, hidden_size, num_layers, bidirectional, batch_first, lengths, seed, impl
):
    ours_cls, ref_cls, kw = LAYERS[cell]
    torch.manual_seed(seed)
    args = dict(num_layers=num_layers, bidirectional=bidirectional, batch_first=batch_first, **kw)
    ours = ours_cls(input_size, hidden_size, impl=impl, **args).double()
    ref = ref_cls(input_size, hidden_size, **args).double()
    copy_by_name(ours, ref)
    steps = max(lengths)
    shape = (len(lengths), steps, input_size) if batch_first else (steps, len(lengths), input_size)
    x = torch.randn(shape, dtype=torch.double)
    lens = torch.tensor(lengths)
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    out, h_n = ours(x1, lengths=lens)
    packed = pack_padded_sequence(x2, lens, batch_first=batch_first, enforce_sorted=False)
    ref_out, ref_h_n = ref(packed)
    ref_out, _ = pad_packed_sequence(ref_out, batch_first=batch_first, total_length=steps)
    torch.testing.assert_close(out, ref_out, **TOL)
    for a, b in zip(states(h_n), states(ref_h_n), strict=True):
        torch.testing.assert_close(a, b, **TOL)
    weighted_sum([out, *states(h_n)]).backward()
    weighted_sum([ref_out, *states(ref_h_n)]).backward()
    torch.testing.assert_close(x1.grad, x2.grad, **TOL)
    ref_params = dict(ref.named_parameters())
    for name, p in ours.named_parameters():
        torch.testing.assert_close(p.grad, ref_params[name].grad, **TOL, msg=name)

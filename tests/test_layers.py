"""Layer behaviour beyond the equivalence matrix: dropout, errors, repr, devices."""

from __future__ import annotations

import pytest
import torch

import rnnzoo
from rnnzoo import native
from tests.helpers import LAYERS, copy_by_name, states

IMPLS = ["loop", "fused", "torch", *(["native"] if native.unavailable() is None else [])]


@pytest.mark.parametrize("cell", list(LAYERS))
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("impl", IMPLS)
def test_dropout_matches_torch_in_train_and_eval(cell, bidirectional, impl):
    ours_cls, ref_cls, kw = LAYERS[cell]
    args = dict(num_layers=3, dropout=0.5, bidirectional=bidirectional, **kw)
    ours, ref = ours_cls(5, 6, impl=impl, **args).double(), ref_cls(5, 6, **args).double()
    copy_by_name(ours, ref)
    x = torch.randn(7, 4, 5, dtype=torch.double)
    # train mode: the masks come from the same generator in the same order as torch.nn's
    torch.manual_seed(0)
    train_out, _ = ours(x)
    torch.manual_seed(0)
    ref_train_out, _ = ref(x)
    torch.testing.assert_close(train_out, ref_train_out, rtol=1e-10, atol=1e-10)
    ours.eval(), ref.eval()
    eval_out, _ = ours(x)
    ref_eval_out, _ = ref(x)
    torch.testing.assert_close(eval_out, ref_eval_out, rtol=1e-10, atol=1e-10)
    assert not torch.allclose(train_out, eval_out)  # dropout did act in training


def test_dropout_is_between_layers_only():
    # With one layer there is no "between": training and eval agree (torch.nn warns too).
    with pytest.warns(UserWarning, match="num_layers greater than 1"):
        single = rnnzoo.LSTM(3, 4, dropout=0.9)
    x = torch.randn(5, 2, 3)
    torch.testing.assert_close(single.train()(x)[0], single.eval()(x)[0])
    # dropout=1 zeroes the second layer's input, so its output is what zeros give.
    stack = rnnzoo.GRU(3, 4, num_layers=2, dropout=1.0).train()
    out, h_n = stack(x)
    top = rnnzoo.GRU(4, 4)
    top.load_state_dict(
        {k.replace("_l1", "_l0"): v for k, v in stack.state_dict().items() if "_l1" in k}
    )
    expected, _ = top(torch.zeros(5, 2, 4))
    torch.testing.assert_close(out, expected)
    # the first layer's state is untouched by dropout
    first = rnnzoo.GRU(3, 4)
    first.load_state_dict({k: v for k, v in stack.state_dict().items() if "_l0" in k})
    torch.testing.assert_close(h_n[0], first(x)[1][0])


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda m: m(torch.randn(5, 2, 3, 1)), r"expected input of shape \(T, B, input_size\) or"),
        (lambda m: m(torch.randn(5)), r"got 1-D input"),
        (lambda m: m(torch.randn(5, 2, 4)), r"expected input feature size 3, got 4"),
        (lambda m: m(torch.randn(5, 2, 3), lengths=[6, 2]), r"lengths must lie in \[1, 5\].*max 6"),
        (lambda m: m(torch.randn(5, 2, 3), lengths=[0, 2]), r"lengths must lie in \[1, 5\].*min 0"),
        (lambda m: m(torch.randn(5, 2, 3), lengths=[5, 2, 1]), r"expected lengths of shape \(2,\)"),
        (lambda m: m(torch.randn(5, 2, 3), lengths=[[5, 2]]), r"expected lengths of shape \(2,\)"),
        (lambda m: m(torch.randn(5, 2, 3), lengths=[2.5, 2.0]), r"lengths must be integers"),
        (
            lambda m: m(torch.randn(5, 2, 3), (torch.zeros(2, 2, 4), torch.zeros(1, 2, 4))),
            r"expected hidden state of shape \(2, 2, 4\).*got \(1, 2, 4\)",
        ),
        (lambda m: m(torch.randn(5, 2, 3), torch.zeros(2, 2, 4)), r"expected hx to be 2 tensor"),
        (lambda m: m(torch.randn(5, 3), (torch.zeros(2, 5), torch.zeros(2, 4))), r"shape \(2, 4\)"),
    ],
)
def test_bad_input_gets_a_clear_error(call, message):
    model = rnnzoo.LSTM(3, 4, num_layers=2)
    with pytest.raises(ValueError, match=message):
        call(model)


def test_lengths_with_packed_input_is_an_error():
    packed = torch.nn.utils.rnn.pack_padded_sequence(torch.randn(3, 2, 3), [3, 2])
    with pytest.raises(ValueError, match="lengths must not be given with a PackedSequence"):
        rnnzoo.GRU(3, 4)(packed, lengths=[3, 2])


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"num_layers": 0}, "num_layers must be a positive integer"),
        ({"dropout": 1.5}, r"dropout must be a number in \[0, 1\]"),
        ({"hidden_size": 0}, "must be positive"),
    ],
)
def test_bad_constructor_arguments(kwargs, message):
    args = {"input_size": 3, "hidden_size": 4, **kwargs}
    with pytest.raises(ValueError, match=message):
        rnnzoo.LSTM(**args)


def test_rnn_nonlinearity_picks_the_cell():
    assert rnnzoo.RNN(3, 4).cell == "rnn_tanh"
    assert rnnzoo.RNN(3, 4, nonlinearity="relu").cell == "rnn_relu"
    with pytest.raises(ValueError, match="unknown nonlinearity 'gelu'"):
        rnnzoo.RNN(3, 4, nonlinearity="gelu")


def test_generic_stack_equals_the_named_layers():
    torch.manual_seed(0)
    generic = rnnzoo.Recurrent("gru", 3, 4, num_layers=2, bidirectional=True)
    torch.manual_seed(0)
    named = rnnzoo.GRU(3, 4, num_layers=2, bidirectional=True)
    x = torch.randn(5, 2, 3)
    torch.testing.assert_close(generic(x)[0], named(x)[0], rtol=0, atol=0)


def test_bias_false_has_no_bias_parameters():
    layer = rnnzoo.LSTM(3, 4, num_layers=2, bias=False)
    ref = torch.nn.LSTM(3, 4, num_layers=2, bias=False)
    assert list(layer.state_dict()) == list(ref.state_dict())
    copy_by_name(layer, ref)
    x = torch.randn(5, 2, 3)
    torch.testing.assert_close(layer(x)[0], ref(x)[0])


def test_to_and_dtype_move_the_torch_named_parameters():
    layer = rnnzoo.LSTM(3, 4).double()
    assert layer.weight_hh_l0.dtype == torch.float64
    out, (h, c) = layer(torch.randn(2, 1, 3, dtype=torch.double))
    assert out.dtype == h.dtype == c.dtype == torch.float64
    assert "weight_hh_l0" in dict(layer.named_parameters())


def test_repr_names_the_cell_and_options():
    text = repr(rnnzoo.LSTM(3, 4, num_layers=2, bidirectional=True))
    assert "'lstm', 3, 4, num_layers=2, bidirectional=True" in text


def test_lengths_may_be_a_list_or_a_tensor():
    layer = rnnzoo.LSTM(3, 4)
    x = torch.randn(5, 2, 3)
    a = layer(x, lengths=[5, 3])[0]
    b = layer(x, lengths=torch.tensor([5, 3]))[0]
    torch.testing.assert_close(a, b)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("cell", list(LAYERS))
@pytest.mark.parametrize("impl", IMPLS)
def test_cuda_matches_cpu(cell, impl):
    ours_cls, _, kw = LAYERS[cell]
    cpu = ours_cls(5, 6, num_layers=2, bidirectional=True, **kw).double()
    gpu = ours_cls(5, 6, num_layers=2, bidirectional=True, impl=impl, **kw).double().cuda()
    gpu.load_state_dict(cpu.state_dict())
    x = torch.randn(7, 3, 5, dtype=torch.double)
    lengths = torch.tensor([7, 2, 5])
    out, h_n = cpu(x, lengths=lengths)
    gout, gh_n = gpu(x.cuda(), lengths=lengths)
    torch.testing.assert_close(gout.cpu(), out)
    for a, b in zip(states(gh_n), states(h_n), strict=True):
        torch.testing.assert_close(a.cpu(), b)


@pytest.mark.parametrize("cell", ["rnn_tanh", "lstm", "gru"])
def test_step_by_step_equals_forward_over_the_sequence(cell):
    torch.manual_seed(0)
    layer = rnnzoo.Recurrent(cell, 3, 5, num_layers=2, batch_first=True)
    x = torch.randn(4, 6, 3)
    out, final = layer(x)
    state = None
    for t in range(6):
        y, state = layer.step(x[:, t], state)
        torch.testing.assert_close(y, out[:, t])
    for a, b in zip(final if isinstance(final, tuple) else (final,),
                    state if isinstance(state, tuple) else (state,), strict=True):  # fmt: skip
        torch.testing.assert_close(a, b)
    with pytest.raises(ValueError, match="expected input of shape"):
        layer.step(torch.randn(4, 6, 3))
    with pytest.raises(ValueError, match="not bidirectional"):
        rnnzoo.Recurrent(cell, 3, 5, bidirectional=True).step(x[:, 0])

"""Shared pieces of the equivalence tests: torch.nn twins and weight copies by name."""

from __future__ import annotations

import torch
from torch import Tensor, nn

import rnnzoo

# cell name -> (our layer, torch.nn layer, extra constructor kwargs for both)
LAYERS: dict[str, tuple[type[rnnzoo.Recurrent], type[nn.RNNBase], dict[str, str]]] = {
    "rnn_tanh": (rnnzoo.RNN, nn.RNN, {"nonlinearity": "tanh"}),
    "rnn_relu": (rnnzoo.RNN, nn.RNN, {"nonlinearity": "relu"}),
    "lstm": (rnnzoo.LSTM, nn.LSTM, {}),
    "gru": (rnnzoo.GRU, nn.GRU, {}),
}

CELLS: dict[str, tuple[type[nn.Module], type[nn.Module], dict[str, str]]] = {
    "rnn_tanh": (rnnzoo.RNNCell, nn.RNNCell, {"nonlinearity": "tanh"}),
    "rnn_relu": (rnnzoo.RNNCell, nn.RNNCell, {"nonlinearity": "relu"}),
    "lstm": (rnnzoo.LSTMCell, nn.LSTMCell, {}),
    "gru": (rnnzoo.GRUCell, nn.GRUCell, {}),
}


def copy_by_name(src: nn.Module, dst: nn.Module) -> None:
    """Copy every parameter of ``src`` into the parameter of the same name in ``dst``.

    Fails if the two do not have exactly the same names and shapes, which is the point.
    """
    src_params, dst_params = dict(src.named_parameters()), dict(dst.named_parameters())
    assert sorted(src_params) == sorted(dst_params)
    with torch.no_grad():
        for name, p in src_params.items():
            assert dst_params[name].shape == p.shape, name
            dst_params[name].copy_(p)


def states(h: Tensor | tuple[Tensor, ...]) -> tuple[Tensor, ...]:
    return h if isinstance(h, tuple) else (h,)


def weighted_sum(tensors: list[Tensor], seed: int = 1) -> Tensor:
    """A loss that gives every element its own gradient (so a swapped element shows)."""
    gen = torch.Generator().manual_seed(seed)
    total = torch.zeros((), dtype=tensors[0].dtype)
    for t in tensors:
        total = total + (t * torch.randn(t.shape, generator=gen, dtype=t.dtype)).sum()
    return total

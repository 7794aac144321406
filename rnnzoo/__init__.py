"""rnnzoo: recurrent networks written plainly, proven equal to torch.nn, runnable on real data."""

from rnnzoo.cells import CELLS, GRUCell, LSTMCell, RecurrentCell, RNNCell, list_cells
from rnnzoo.layers import GRU, LSTM, RNN, Recurrent
from rnnzoo.registry import Registry, UnknownNameError

__version__ = "0.1.0"

__all__ = [
    "CELLS",
    "GRU",
    "LSTM",
    "RNN",
    "GRUCell",
    "LSTMCell",
    "RNNCell",
    "Recurrent",
    "RecurrentCell",
    "Registry",
    "UnknownNameError",
    "list_cells",
]

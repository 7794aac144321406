"""Hand-written recurrent cells, registered by name in ``CELLS``."""

from rnnzoo.cells.base import CELLS, RecurrentCell, list_cells
from rnnzoo.cells.gru import GRUCell
from rnnzoo.cells.indrnn import IndRNNCell
from rnnzoo.cells.layernorm import LayerNormGRUCell, LayerNormLSTMCell
from rnnzoo.cells.lstm import LSTMCell
from rnnzoo.cells.lstm_variants import CIFGLSTMCell, PeepholeLSTMCell
from rnnzoo.cells.minimal import MinGRUCell, MinLSTMCell
from rnnzoo.cells.rnn import RNNCell

__all__ = [
    "CELLS",
    "CIFGLSTMCell",
    "GRUCell",
    "IndRNNCell",
    "LSTMCell",
    "LayerNormGRUCell",
    "LayerNormLSTMCell",
    "MinGRUCell",
    "MinLSTMCell",
    "PeepholeLSTMCell",
    "RNNCell",
    "RecurrentCell",
    "list_cells",
]

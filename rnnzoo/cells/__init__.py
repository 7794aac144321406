"""Hand-written recurrent cells, registered by name in ``CELLS``."""

from rnnzoo.cells.base import CELLS, RecurrentCell, list_cells
from rnnzoo.cells.gru import GRUCell
from rnnzoo.cells.lstm import LSTMCell
from rnnzoo.cells.rnn import RNNCell

__all__ = ["CELLS", "GRUCell", "LSTMCell", "RNNCell", "RecurrentCell", "list_cells"]

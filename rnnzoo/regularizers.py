"""Regularisers for recurrent networks that work with every cell.

``rnnzoo.layers.Recurrent`` takes four of them as constructor arguments (and every
model's config as ``model:`` keys, see ``rnnzoo.models.base.RecurrentArgs``), each a
rate in [0, 1), 0 meaning off:

* ``input_dropout``: variational (locked) dropout on every layer's input sequence
  (Gal & Ghahramani 2016): one mask per sequence and input feature, the same at every
  time step; each layer draws its own (as AWD-LSTM, Merity et al. 2017).
* ``hidden_dropout``: variational dropout on h_{t-1} where it enters the recurrence
  (before W_hh), one mask per sequence and unit for all steps. The state carried on,
  and the layer's output, are not dropped (see ``RecurrentCell.step_dropped``).
* ``weight_drop``: DropConnect on the recurrent weights (Merity et al. 2017): W_hh of
  every unit is dropped once per forward pass, the same matrix at every step.
* ``zoneout`` (Krueger et al. 2017): at every step each state unit keeps its previous
  value with probability p (a fresh mask per step); in eval, p * old + (1 - p) * new.

All but zoneout are the identity in eval mode and scale what they keep by 1 / (1 - p).
``embedding_dropout`` (word dropout: whole rows of an embedding matrix) is for models
with token inputs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnnzoo.cells.base import State


def locked_mask(like: Tensor, p: float) -> Tensor:
    """A dropout mask shaped like ``like``, (B, F): 0 with probability p, else 1 / (1 - p).

    Multiplying every time step by it (broadcast over T) is variational dropout."""
    return F.dropout(like.new_ones(like.shape), p, training=True)


def zoneout(old: State, new: State, p: float, training: bool) -> State:
    """Each state tensor (B, H) keeps its previous value with probability p.

    Training: a fresh Bernoulli(p) mask per tensor (per call, so per step); eval: the
    expectation p * old + (1 - p) * new."""
    if training:
        return tuple(
            torch.where(torch.rand_like(n) < p, o, n) for o, n in zip(old, new, strict=True)
        )
    return tuple(o * p + n * (1 - p) for o, n in zip(old, new, strict=True))


def embedding_dropout(embedding: nn.Embedding, ids: Tensor, p: float, training: bool) -> Tensor:
    """Look ``ids`` (any shape) up in ``embedding`` with whole word types dropped.

    Word dropout (Gal & Ghahramani 2016; Merity et al. 2017): in training each row of
    the embedding matrix (a word type) is zeroed with probability p, the rest scaled by
    1 / (1 - p), one draw per call, so every occurrence of a word in the batch shares
    it. Unlike ``nn.Dropout`` on the embedded vectors, a dropped word loses all its
    features everywhere at once. Returns (*ids.shape, embedding_dim); in eval, or with p
    0, exactly ``embedding(ids)``.
    """
    x = embedding(ids)
    if not training or p == 0:
        return x
    keep = F.dropout(x.new_ones(embedding.num_embeddings), p, training=True)  # (V,)
    return x * keep[ids].unsqueeze(-1)

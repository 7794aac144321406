"""Generated sequence problems whose answers need long-range memory."""

from __future__ import annotations

import math

import torch
from torch import Tensor


def adding_problem(n: int, seq_len: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """The adding problem (Hochreiter & Schmidhuber 1997; the variant of Le et al. 2015).

    Each step carries a value ~ U[0, 1] and a marker; exactly two steps are marked, one
    in each half of the sequence. The target is the sum of the two marked values, so
    always predicting its mean (1.0) scores MSE = Var(U1 + U2) = 1/6 ≈ 0.167.

    Returns inputs (n, seq_len, 2) as (value, marker) and targets (n, 1).
    """
    if seq_len < 2:
        raise ValueError(f"the adding problem needs seq_len >= 2, got {seq_len}")
    values = torch.rand(n, seq_len, generator=generator)
    half = seq_len // 2
    first = torch.randint(0, half, (n,), generator=generator)
    second = torch.randint(half, seq_len, (n,), generator=generator)
    markers = torch.zeros(n, seq_len)
    rows = torch.arange(n)
    markers[rows, first] = 1.0
    markers[rows, second] = 1.0
    targets = (values * markers).sum(dim=1, keepdim=True)
    return torch.stack([values, markers], dim=-1), targets


COPY_SYMBOLS = 8  # data symbols 1..8; 0 is blank, 9 the delimiter
COPY_LENGTH = 10  # symbols to remember


def copy_memory(n: int, delay: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """The copy-memory task (Hochreiter & Schmidhuber 1997; as Arjovsky et al. 2016 set it).

    A sequence of T + 20 steps: 10 symbols drawn from 1..8, T - 1 blanks (0), the
    delimiter (9), then 10 more blanks during which the model must output the 10
    symbols in order; everywhere else the answer is blank. A model without memory does
    best by answering blank until the last 10 steps and a uniform guess over the 8
    symbols there: cross-entropy 10 ln 8 / (T + 20) per step (``copy_baseline``).

    Returns inputs (n, T + 20, 10) one-hot and targets (n, T + 20) class ids.
    """
    if delay < 1:
        raise ValueError(f"the copy task needs a delay T >= 1, got {delay}")
    total = delay + 2 * COPY_LENGTH
    symbols = torch.randint(1, COPY_SYMBOLS + 1, (n, COPY_LENGTH), generator=generator)
    ids = torch.zeros(n, total, dtype=torch.long)
    ids[:, :COPY_LENGTH] = symbols
    ids[:, COPY_LENGTH + delay - 1] = COPY_SYMBOLS + 1  # the delimiter
    targets = torch.zeros(n, total, dtype=torch.long)
    targets[:, -COPY_LENGTH:] = symbols
    inputs = torch.nn.functional.one_hot(ids, COPY_SYMBOLS + 2).float()
    return inputs, targets


def copy_baseline(delay: int) -> float:
    """Cross-entropy per step of the best memoryless answer: 10 ln 8 / (T + 20)."""
    return COPY_LENGTH * math.log(COPY_SYMBOLS) / (delay + 2 * COPY_LENGTH)

"""Generated sequence problems whose answers need long-range memory."""

from __future__ import annotations

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

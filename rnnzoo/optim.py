"""Optimisers and learning-rate schedules named in ``train:``."""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR, LRScheduler, ReduceLROnPlateau

from rnnzoo.config import TrainConfig


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    # One explicit group, which may be empty: a parameter-free baseline still gets an
    # optimiser (and a checkpoint) like every other model.
    params = [{"params": [p for p in model.parameters() if p.requires_grad]}]
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


class WarmupCosine:
    """Linear warm-up over ``warmup`` steps, then cosine decay to zero at ``total``.

    A class rather than a closure so that ``LambdaLR.state_dict`` saves its settings.
    """

    def __init__(self, warmup: int, total: int) -> None:
        self.warmup, self.total = warmup, max(total, 1)

    def __call__(self, step: int) -> float:
        if step < self.warmup:
            return (step + 1) / self.warmup
        progress = min((step - self.warmup) / max(self.total - self.warmup, 1), 1.0)
        return 0.5 * (1.0 + math.cos(math.pi * progress))


def make_scheduler(
    optimizer: torch.optim.Optimizer,
    cfg: TrainConfig,
    total_steps: int,
    mode: Literal["min", "max"],
) -> LRScheduler | ReduceLROnPlateau:
    """Per-step schedules (``constant``, ``cosine``) or per-epoch ``plateau``."""
    if cfg.schedule == "plateau":
        return ReduceLROnPlateau(
            optimizer, mode=mode, factor=cfg.plateau_factor, patience=cfg.plateau_patience
        )
    if cfg.schedule == "cosine":
        return LambdaLR(optimizer, WarmupCosine(cfg.warmup_steps, total_steps))
    return LambdaLR(optimizer, _constant)


def _constant(step: int) -> float:
    return 1.0

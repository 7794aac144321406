"""Optimisers and learning-rate schedules named in ``train:``.

``train.lr_multipliers`` and ``train.unfreeze_epochs`` (ULMFiT's discriminative rates
and gradual unfreezing, Howard & Ruder 2018) split the parameters into groups by the
longest prefix of their names that each table gives (``embedding``, ``rnn``): a group
trains at ``train.lr`` times its factor, and from its epoch on. Before that epoch the
schedule gives the group a rate of 0, which with Adam, AdamW and SGD leaves its
parameters exactly as they are (AdamW's decay is lr * weight_decay, SGD's momentum step
is scaled by lr), while ``requires_grad`` stays on: the optimiser state and DDP's
buckets never change shape. Held-back parameters still get gradients, so they count in
the norm that ``train.grad_clip`` clips, and Adam's moment estimates keep averaging
them: when a group starts, its first steps use moments of the frozen epochs.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR, LRScheduler, ReduceLROnPlateau

from rnnzoo.config import TrainConfig
from rnnzoo.errors import ConfigError


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    params = param_groups(model, cfg)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


def param_groups(model: nn.Module, cfg: TrainConfig) -> list[dict[str, Any]]:
    """The optimiser's parameter groups, each ``{"params", "lr", "start_epoch"}``.

    Parameters whose longest prefix in ``train.lr_multipliers`` and in
    ``train.unfreeze_epochs`` are the same share a group, in the order the model lists
    them. The first group holds those that neither table names, at ``train.lr`` from
    epoch 1; it is always there, even empty (a parameter-free baseline still gets an
    optimiser and a checkpoint like every other model), and its rate is the one a run
    logs. A prefix that no parameter name starts with is a ``ConfigError``."""
    named = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    tables: dict[str, dict[str, Any]] = {
        "train.lr_multipliers": cfg.lr_multipliers,
        "train.unfreeze_epochs": cfg.unfreeze_epochs,
    }
    for key, table in tables.items():
        for prefix in table:
            if not any(name.startswith(prefix) for name, _ in named):
                tops = dict.fromkeys(name.split(".")[0] for name, _ in named)
                raise ConfigError(
                    f"{key}.{prefix}: no parameter's name starts with {prefix!r}; this "
                    f"model's names start with: {', '.join(tops) or 'none (no parameters)'}"
                )
    groups: dict[tuple[str | None, str | None], dict[str, Any]] = {
        (None, None): {"params": [], "lr": cfg.lr, "start_epoch": 1}
    }
    for name, p in named:
        rate, start = _longest(name, cfg.lr_multipliers), _longest(name, cfg.unfreeze_epochs)
        if (rate, start) not in groups:
            groups[rate, start] = {
                "params": [],
                "lr": cfg.lr * (1.0 if rate is None else cfg.lr_multipliers[rate]),
                "start_epoch": 1 if start is None else cfg.unfreeze_epochs[start],
            }
        groups[rate, start]["params"].append(p)
    return list(groups.values())


def _longest(name: str, table: dict[str, Any]) -> str | None:
    """The longest key of ``table`` that ``name`` starts with, or None."""
    return max((prefix for prefix in table if name.startswith(prefix)), key=len, default=None)


class Constant:
    """The rate as set: factor 1 from step ``start`` on, 0 before it (a held-back group).

    A class rather than a closure so that ``LambdaLR.state_dict`` saves its settings."""

    def __init__(self, start: int = 0) -> None:
        self.start = start

    def __call__(self, step: int) -> float:
        return 1.0 if step >= self.start else 0.0


class WarmupCosine:
    """Linear warm-up over ``warmup`` steps, then cosine decay to zero at ``total``;
    0 before step ``start`` (a held-back group), and the run's curve from then on.

    A class rather than a closure so that ``LambdaLR.state_dict`` saves its settings.
    """

    def __init__(self, warmup: int, total: int, start: int = 0) -> None:
        self.warmup, self.total, self.start = warmup, max(total, 1), start

    def __call__(self, step: int) -> float:
        if step < self.start:
            return 0.0
        if step < self.warmup:
            return (step + 1) / self.warmup
        progress = min((step - self.warmup) / max(self.total - self.warmup, 1), 1.0)
        return 0.5 * (1.0 + math.cos(math.pi * progress))


def make_scheduler(
    optimizer: torch.optim.Optimizer,
    cfg: TrainConfig,
    total_steps: int,
    mode: Literal["min", "max"],
    steps_per_epoch: int = 1,
) -> LRScheduler | ReduceLROnPlateau:
    """Per-step schedules (``constant``, ``cosine``), one factor per parameter group
    (a group's ``start_epoch`` E holds it at 0 for the first E - 1 epochs of
    ``steps_per_epoch`` steps), or per-epoch ``plateau``, which lowers every group's
    rate by the same factor."""
    if cfg.schedule == "plateau":
        return ReduceLROnPlateau(
            optimizer, mode=mode, factor=cfg.plateau_factor, patience=cfg.plateau_patience
        )
    factors: list[Constant | WarmupCosine] = []
    for group in optimizer.param_groups:
        start = (group.get("start_epoch", 1) - 1) * steps_per_epoch
        if cfg.schedule == "cosine":
            factors.append(WarmupCosine(cfg.warmup_steps, total_steps, start))
        else:
            factors.append(Constant(start))
    return LambdaLR(optimizer, factors)  # type: ignore[arg-type]

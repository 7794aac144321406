"""Rolling-origin backtests of a forecasting run: the error against lead time.

From every origin of a split (every window, stride 1; a window's origin is its first
forecast row) the model forecasts the next H rows. The errors, in the data's units
through the task's ``originals``, are averaged over origins and output columns for each
lead h = 1..H, and over everything for the overall scores: the windows and definitions
of ``rnnzoo eval``, so the overall numbers are eval's.

How the model meets each origin:

* without trainable parameters (``repeat_last``, ``seasonal_naive``, statistical models
  that fit each window's history inside ``forward``): refitted at every origin, by
  construction; ``fine_tune_steps`` is refused, there is nothing to tune;
* a neural model keeps its checkpoint's weights at every origin, unless
  ``fine_tune_steps`` is given: then at every ``refit_every``-th origin (default: the
  horizon) a copy of the checkpoint's model trains for that many steps on the windows
  whose targets all lie before that origin (train, val and the split's rows already
  seen), with the run's optimiser settings (``train.optimizer``, ``lr`` with its
  ``lr_multipliers``, ``weight_decay``, ``momentum``, ``grad_clip``, ``batch_size``,
  ``precision``) at a constant rate, and forecasts from there up to the next refit.
  Each refit starts from the checkpoint again and is seeded by ``train.seed`` and its
  origin, so a forecast depends only on the checkpoint and the rows before it, and the
  same command gives the same numbers. The checkpoint itself is never changed.

This module knows the task only through ``Forecasting`` (what ``ForecastTask`` offers)
and imports nothing above the config and the optimisers.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
import torch
from torch import Tensor, nn

from rnnzoo import run_folder
from rnnzoo.config import TrainConfig
from rnnzoo.data.batches import Batch
from rnnzoo.data.timeseries import Series, Windows, window_starts
from rnnzoo.errors import ConfigError, TrainingDiverged
from rnnzoo.optim import make_optimizer

METRICS = ("mae_orig", "rmse_orig", "mase", "mse", "mae")
"""Per lead and overall, named as ``eval_<split>.json`` names them: MAE, RMSE and MASE
in the data's units, MSE and MAE on the scaled values."""

SHOWN_LEADS = 24
"""Up to this horizon the table shows every lead; beyond it, a dozen of them."""

Refit = Literal["every_origin", "none", "fine_tune"]


class Forecasting(Protocol):
    """What a backtest needs of its task (``rnnzoo.tasks.ForecastTask`` has it all)."""

    data: Any  # input_len, horizon
    out_columns: list[str]
    mase_scale: np.ndarray | None

    def dataset(self, split: str) -> Windows: ...
    def windows(self, starts: Tensor) -> Windows: ...
    def load_series(self) -> Series: ...
    def loss(self, output: Tensor, batch: Batch) -> Tensor: ...
    def originals(self, output: Any, batch: Batch) -> tuple[Tensor, Tensor]: ...
    def scaled_error(self, pred: Tensor, true: Tensor) -> Tensor: ...


@dataclasses.dataclass(frozen=True)
class BacktestRequest:
    """What ``rnnzoo eval --backtest`` (or ``rnnzoo backtest``) asks for."""

    run_dir: Path
    model_name: str  # model.name, as the output names the model
    train: TrainConfig  # the run's: fine-tuning's optimiser, batches, seed, precision
    device: torch.device
    split: str = "test"
    checkpoint: str = "best"
    fine_tune_steps: int | None = None  # None: no fine-tuning
    refit_every: int | None = None  # origins between refits; None: the horizon

    @property
    def forecast_batch_size(self) -> int:
        return self.train.eval_batch_size or self.train.batch_size


@dataclasses.dataclass
class Backtest:
    """A finished backtest: the forecasts, their errors per lead and overall."""

    request: BacktestRequest
    origins: np.ndarray  # (N,) row of each origin (its first forecast row)
    labels: list[str]  # (N,) each origin as the data names it: a date, or the row
    columns: list[str]  # (C_out,) the forecast columns
    forecast: np.ndarray  # (N, H, C_out) in the data's units
    truth: np.ndarray  # (N, H, C_out)
    per_lead: dict[str, list[float]]  # METRICS -> H values, lead 1 first
    overall: dict[str, float]  # METRICS -> one value
    refit: Refit
    refits: int  # fine-tuned copies made: 0 without --fine-tune-steps

    @property
    def horizon(self) -> int:
        return self.forecast.shape[1]

    @property
    def refit_every(self) -> int | None:
        if self.refit != "fine_tune":
            return None
        return self.request.refit_every or self.horizon

    def describe(self) -> str:
        """How the model met each origin, in words."""
        r = self.request
        if self.refit == "every_origin":
            return f"{r.model_name} has no trainable parameters: refitted at every origin"
        if self.refit == "none":
            return (
                f"{r.model_name} not refitted: the {r.checkpoint} checkpoint's weights at "
                "every origin (--fine-tune-steps N to fine-tune)"
            )
        return (
            f"{r.model_name} fine-tuned from the {r.checkpoint} checkpoint for "
            f"{r.fine_tune_steps} steps every {self.refit_every} origins ({self.refits} "
            f"refits; {r.train.optimizer}, lr {r.train.lr:g}, batch {r.train.batch_size}) "
            "on the windows before each origin"
        )

    def to_json(self) -> dict[str, Any]:
        r, t = self.request, self.request.train
        fine_tune = None
        if self.refit == "fine_tune":
            fine_tune = {
                "steps": r.fine_tune_steps, "refit_every": self.refit_every,
                "refits": self.refits, "from": r.checkpoint, "optimizer": t.optimizer,
                "lr": t.lr, "lr_multipliers": t.lr_multipliers,
                "weight_decay": t.weight_decay, "momentum": t.momentum,
                "grad_clip": t.grad_clip, "batch_size": t.batch_size, "seed": t.seed,
                "precision": t.precision,
            }  # fmt: skip
        return {
            "split": r.split,
            "checkpoint": r.checkpoint,
            "model": r.model_name,
            "origins": len(self.origins),
            "first_origin": self.labels[0],
            "last_origin": self.labels[-1],
            "origin_rows": [int(self.origins[0]), int(self.origins[-1])],
            "horizon": self.horizon,
            "columns": list(self.columns),
            "refit": self.refit,
            "refit_note": self.describe(),
            "fine_tune": fine_tune,
            "per_lead": {"lead": list(range(1, self.horizon + 1)), **self.per_lead},
            "overall": self.overall,
        }

    def leads_shown(self) -> list[int]:
        """Every lead up to ``SHOWN_LEADS``; beyond, 12 spread from 1 to H."""
        if self.horizon <= SHOWN_LEADS:
            return list(range(1, self.horizon + 1))
        return sorted({int(h) for h in np.linspace(1, self.horizon, 12).round()})

    def table(self) -> list[str]:
        """The printed report: what was run, then a row per lead shown and the overall."""
        r = self.request
        head = (
            f"backtest on {r.split}: {len(self.origins)} origins ({self.labels[0]} to "
            f"{self.labels[-1]}), horizon {self.horizon}"
        )
        width = 11
        lines = [head, self.describe(), "lead" + "".join(f"{m:>{width}}" for m in METRICS)]
        for h in self.leads_shown():
            values = "".join(f"{self.per_lead[m][h - 1]:>{width}.4g}" for m in METRICS)
            lines.append(f"{h:>4}{values}")
        lines.append(" all" + "".join(f"{self.overall[m]:>{width}.4g}" for m in METRICS))
        if len(self.leads_shown()) < self.horizon:
            lines.append(f"(leads shown: {len(self.leads_shown())} of {self.horizon}; all in JSON)")
        lines.append("*_orig and mase in the data's units; mse and mae on the scaled values")
        return lines

    def figure(self) -> bytes:
        """A PNG: RMSE and MAE (the data's units) against lead time."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        leads = np.arange(1, self.horizon + 1)
        fig, ax = plt.subplots(figsize=(7, 3.6))
        marker = "o" if self.horizon <= SHOWN_LEADS else None
        ax.plot(leads, self.per_lead["rmse_orig"], marker=marker, ms=3, label="RMSE")
        ax.plot(leads, self.per_lead["mae_orig"], marker=marker, ms=3, label="MAE")
        refit = {
            "every_origin": "refitted at every origin",
            "none": "not refitted",
            "fine_tune": f"fine-tuned every {self.refit_every} origins",
        }[self.refit]
        ax.set_xlabel("lead (steps after the origin)")
        ax.set_ylabel(f"error in {self.columns[0]}'s units" if len(self.columns) == 1 else "error")
        ax.set_ylim(bottom=0)
        ax.set_title(
            f"{self.request.model_name}, {self.request.split} split: {len(self.origins)} "
            f"origins, {refit}",
            fontsize="medium",
        )
        ax.legend(fontsize="small")
        fig.tight_layout()
        return run_folder.png_bytes(fig)


def backtest(task: Forecasting, model: nn.Module, request: BacktestRequest) -> Backtest:
    """Forecast from every origin of ``request.split`` (see the module); writes nothing."""
    trainable = any(p.requires_grad for p in model.parameters())
    _check(request, trainable)
    data = task.dataset(request.split)
    d = task.data
    origins = data.starts.numpy() + d.input_len
    n, device = len(data), request.device
    model = model.to(device)
    if request.fine_tune_steps is None:
        refit: Refit = "none" if trainable else "every_origin"
        pred, true = _forecast(task, model, data, range(n), request)
        refits = 0
    else:
        refit, every = "fine_tune", request.refit_every or d.horizon
        parts = []
        for first in range(0, n, every):
            origin = int(origins[first])
            tuned = fine_tune(task, model, origin, request.fine_tune_steps, request)
            parts.append(_forecast(task, tuned, data, range(first, min(first + every, n)), request))
        pred, true = (np.concatenate(p) for p in zip(*parts, strict=True))
        refits = len(parts)
    per_lead, overall = _scores(task, pred, true)
    return Backtest(
        request, origins, _labels(task.load_series(), origins), list(task.out_columns),
        pred, true, per_lead, overall, refit, refits,
    )  # fmt: skip


def fine_tune(
    task: Forecasting, model: nn.Module, origin: int, steps: int, request: BacktestRequest
) -> nn.Module:
    """A copy of ``model`` trained for ``steps`` on the windows whose targets all lie
    before row ``origin`` (every such window, stride 1), in eval mode; ``model`` itself
    is not touched."""
    d, cfg, device = task.data, request.train, request.device
    pool = task.windows(window_starts((0, origin), d.input_len, d.horizon))
    if len(pool) == 0:
        raise ConfigError(
            f"fine-tuning before row {origin}: no window of input_len {d.input_len} + "
            f"horizon {d.horizon} ends before it"
        )
    tuned = copy.deepcopy(model).to(device).train()
    optimizer = make_optimizer(tuned, cfg)
    seed = cfg.seed + origin  # each refit its own draws, the same on every run
    picks = torch.Generator().manual_seed(seed)
    max_norm = cfg.grad_clip if cfg.grad_clip is not None else math.inf
    cuda = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):  # dropout draws, without moving the caller's
        torch.manual_seed(seed)
        for step in range(steps):
            rows = torch.randperm(len(pool), generator=picks)[: cfg.batch_size]
            batch = pool.__getitems__(rows.tolist()).to(device)
            with _autocast(device, cfg.precision):
                output = tuned(batch.inputs, batch.lengths, batch.targets)  # as in training
                loss = task.loss(output.float(), batch)
            value = float(loss.detach())
            if not math.isfinite(value):
                raise TrainingDiverged(
                    f"fine-tuning diverged before row {origin}: loss is {value} at "
                    f"step {step + 1}; the run folder is unchanged",
                    "lower --fine-tune-steps, or train.lr with --set in a new run",
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(tuned.parameters(), max_norm)
            optimizer.step()
    return tuned.eval()


def _check(request: BacktestRequest, trainable: bool) -> None:
    """Settings that cannot apply, refused before any work (none is silently ignored)."""
    if request.split not in ("val", "test"):
        raise ConfigError(f"--split {request.split}: a backtest runs on val or test")
    if request.fine_tune_steps is not None and not trainable:
        raise ConfigError(
            f"--fine-tune-steps: {request.model_name} has no trainable parameters; it is "
            "refitted at every origin already"
        )
    if request.refit_every is not None and request.fine_tune_steps is None:
        raise ConfigError("--refit-every says how often to fine-tune: give --fine-tune-steps too")


@torch.no_grad()
def _forecast(
    task: Forecasting, model: nn.Module, data: Windows, indices: range, request: BacktestRequest
) -> tuple[np.ndarray, np.ndarray]:
    """(forecast, truth) of windows ``indices`` in the data's units, each (n, H, C_out)."""
    model.eval()
    preds, trues = [], []
    size = request.forecast_batch_size
    for start in range(indices.start, indices.stop, size):
        batch = data.__getitems__(list(range(start, min(start + size, indices.stop))))
        batch = batch.to(request.device)
        with _autocast(request.device, request.train.precision):
            output = model(batch.inputs, batch.lengths).float()
        pred, true = task.originals(output, batch)
        preds.append(pred.cpu().numpy())
        trues.append(true.cpu().numpy())
    return np.concatenate(preds), np.concatenate(trues)


def _scores(
    task: Forecasting, pred: np.ndarray, true: np.ndarray
) -> tuple[dict[str, list[float]], dict[str, float]]:
    """Per lead (mean over origins and columns) and overall (mean over everything)."""
    assert task.mase_scale is not None
    err = pred - true  # (N, H, C)
    scaled = task.scaled_error(torch.from_numpy(pred), torch.from_numpy(true)).numpy()
    terms = {
        "mae_orig": np.abs(err),
        "mse_orig": err**2,
        "mase": np.abs(err) / task.mase_scale,
        "mse": scaled**2,
        "mae": np.abs(scaled),
    }
    per_lead = {k: v.mean(axis=(0, 2)) for k, v in terms.items()}
    overall = {k: float(v.mean()) for k, v in terms.items()}
    per_lead["rmse_orig"] = np.sqrt(per_lead.pop("mse_orig"))
    overall["rmse_orig"] = math.sqrt(overall.pop("mse_orig"))
    return {m: per_lead[m].tolist() for m in METRICS}, {m: overall[m] for m in METRICS}


def _labels(series: Series, rows: np.ndarray) -> list[str]:
    """Each row as the data names it: its date (as short as the dates allow), else its number."""
    if series.dates is None:
        return [str(int(r)) for r in rows]
    dates = series.dates[rows]
    whole_days = bool((dates == dates.normalize()).all())
    return [str(d.date()) if whole_days else d.isoformat() for d in dates]


def _autocast(device: torch.device, precision: str) -> torch.autocast:
    """bf16 autocast as the run trained with (``rnnzoo.evaluation.autocast``'s rule)."""
    return torch.autocast(device.type, torch.bfloat16, enabled=precision == "bf16")

"""Forecasting baselines, registered like any model and run through the same CLI.

``repeat_last`` and ``seasonal_naive`` have no parameters: the trainer scores them
without training. ``linear`` is one linear map from the window to the horizon per
column (NLinear with ``norm: last``, DLinear with ``decomposition: true``; Zeng et al.
2023, "Are Transformers Effective for Time Series Forecasting?").
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn

from rnnzoo.errors import ConfigError
from rnnzoo.models.base import MODELS, ModelArgs
from rnnzoo.models.forecast import ForecastModel, Norm
from rnnzoo.tasks import ModelIO


class RepeatLast(ForecastModel):
    """The naive forecast: every future step equals the last observed one."""

    class Args(ModelArgs):
        name: Literal["repeat_last"] = "repeat_last"

    @classmethod
    def build(cls, args: Args, io: ModelIO) -> RepeatLast:
        return cls(io)

    def forecast(self, x: Tensor, targets: Tensor | None) -> Tensor:
        return x[:, -1:, : self.n_out].expand(-1, self.horizon, -1)


class SeasonalNaive(ForecastModel):
    """Every future step equals the step one ``period`` earlier (the last season, repeated)."""

    class Args(ModelArgs):
        name: Literal["seasonal_naive"] = "seasonal_naive"
        period: int = Field(ge=1, description="steps per season: 12 for months, 24 for hours")

    def __init__(self, io: ModelIO, period: int) -> None:
        super().__init__(io)
        if period > self.input_len:
            raise ConfigError(
                f"model.period {period} is longer than the window (data.input_len {self.input_len})"
            )
        self.steps: Tensor
        steps = self.input_len - period + torch.arange(self.horizon) % period
        self.register_buffer("steps", steps, persistent=False)

    @classmethod
    def build(cls, args: Args, io: ModelIO) -> SeasonalNaive:
        return cls(io, args.period)

    def forecast(self, x: Tensor, targets: Tensor | None) -> Tensor:
        return x[:, self.steps, : self.n_out]


class LinearForecaster(ForecastModel):
    """A linear map over time, per column (NLinear, DLinear): (B, L) -> (B, H).

    With ``decomposition``, a moving average splits the window into trend and remainder,
    each with its own map."""

    class Args(ModelArgs):
        name: Literal["linear"] = "linear"
        norm: Norm = "last"
        decomposition: bool = Field(False, description="DLinear's trend/remainder split")
        kernel: int = Field(25, ge=1, description="moving-average length of the trend")
        individual: bool = Field(False, description="one map per column instead of one shared")

    def __init__(self, io: ModelIO, args: Args) -> None:
        super().__init__(io, args.norm)
        self.kernel = args.kernel if args.decomposition else None
        maps = self.n_out if args.individual else 1
        parts = 2 if args.decomposition else 1
        bound = 1 / self.input_len**0.5  # nn.Linear's initialisation
        self.weight = nn.Parameter(
            torch.empty(parts, maps, self.horizon, self.input_len).uniform_(-bound, bound)
        )
        self.bias = nn.Parameter(torch.empty(parts, maps, self.horizon).uniform_(-bound, bound))

    @classmethod
    def build(cls, args: Args, io: ModelIO) -> LinearForecaster:
        return cls(io, args)

    def forecast(self, x: Tensor, targets: Tensor | None) -> Tensor:
        x = x[:, :, : self.n_out]  # (B, L, C)
        parts = [x] if self.kernel is None else list(_decompose(x, self.kernel))
        y = sum(
            torch.einsum("blc,chl->bhc", part, w.expand(x.shape[-1], -1, -1)) + b.T
            for part, w, b in zip(parts, self.weight, self.bias, strict=True)
        )
        assert isinstance(y, Tensor)
        return y


def _decompose(x: Tensor, kernel: int) -> tuple[Tensor, Tensor]:
    """(remainder, trend) of (B, L, C): the trend is a centred moving average, the
    window's ends repeated outwards so that it keeps the window's length."""
    front, back = (kernel - 1) // 2, kernel // 2
    padded = torch.cat([x[:, :1].expand(-1, front, -1), x, x[:, -1:].expand(-1, back, -1)], dim=1)
    trend = F.avg_pool1d(padded.transpose(1, 2), kernel, stride=1).transpose(1, 2)
    return x - trend, trend


MODELS.add("repeat_last", RepeatLast)
MODELS.add("seasonal_naive", SeasonalNaive)
MODELS.add("linear", LinearForecaster)

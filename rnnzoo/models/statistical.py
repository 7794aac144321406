"""Statistical forecasting baselines: ETS, ARIMA and Theta, fitted anew to every window.

``ets``, ``arima`` and ``theta`` are statsforecast's AutoETS, AutoARIMA and AutoTheta.
They learn nothing from the training split: each window's history, one output column
at a time, is a series of its own, fitted as the library intends
(``Model(season_length=m).forecast(y=history, h=horizon)["mean"]``), which chooses the
model's form (trend, season, orders) for that window by an information criterion. They
have no trainable parameters, so the trainer scores them without training.

Why statsforecast rather than statsmodels: statsforecast selects the form automatically
for all three models and is built to fit many short series, which is what our windows
are. statsmodels has no automatic ETS or ARIMA selection. Measured on the airline
series (13 test origins, 12-step forecasts): AutoETS fitted the 13 origins in 2.6 s,
while choosing among statsmodels' 12 ETSModel forms at the same origins took 27.7 s.

The season is ``data.season`` (``ModelIO.season``) unless ``model.season`` overrides it.
A window too short for a seasonal form gets statsforecast's own non-seasonal fit (each
model has its rule: ETS needs more than one season of history, Theta's decomposition
and ARIMA's seasonal difference two). A window too short for any fit (ETS under 7
steps, Theta under 4) is a ``ConfigError`` naming ``data.input_len``; the run then
stops before its first checkpoint, which leaves no run folder.

The models fit the values the task gives them, after its scaler: their configs set
``data.scaler: none`` so that they see the data's own units, where a multiplicative
form (seasons that grow with the level, as the airline series' do) is possible.
Fitting is per series, in a plain Python loop over the batch's rows and columns, on
the CPU in float64; the forecast comes back in the input's dtype and device.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field, field_validator
from torch import Tensor

from rnnzoo.errors import ConfigError
from rnnzoo.models.base import MODELS, ModelArgs
from rnnzoo.models.forecast import ForecastModel
from rnnzoo.tasks import ModelIO


class StatisticalArgs(ModelArgs):
    """The ``model:`` keys every statistical forecaster takes."""

    season: int | None = Field(None, ge=1, description="steps per season; None: data.season")


class StatisticalForecaster(ForecastModel):
    """Base of the statsforecast models: one fit per window and column, H steps each."""

    name = "?"  # the registered name, which each model sets, for its error messages

    def __init__(self, io: ModelIO, args: StatisticalArgs) -> None:
        super().__init__(io)  # norm none: the model fits the values as the task gives them
        self.season = args.season if args.season is not None else io.season or 1
        # where the season came from, for an error message
        self.season_key = "model.season" if args.season is not None else "data.season"

    @classmethod
    def build(cls, args: Any, io: ModelIO) -> StatisticalForecaster:
        return cls(io, args)

    def make(self) -> Any:
        """A fresh statsforecast model for one series (imported here: the import is slow)."""
        raise NotImplementedError

    def check(self, history: np.ndarray) -> None:
        """Refuse a series that this model's settings cannot fit; nothing by default."""

    def forecast(self, x: Tensor, targets: Tensor | None) -> Tensor:
        """x (B, L, C_in) -> (B, H, C_out): each row's first C_out columns fitted apart."""
        # through numpy: no autograd graph (there is nothing to train), float64 fits
        history = x[:, :, : self.n_out].detach().cpu().double().numpy()  # (B, L, C_out)
        b, _, c = history.shape
        out = np.empty((b, self.horizon, c))
        for i in range(b):
            for j in range(c):
                out[i, :, j] = self._fit(np.ascontiguousarray(history[i, :, j]))
        return torch.from_numpy(out).to(device=x.device, dtype=x.dtype)

    def _fit(self, y: np.ndarray) -> np.ndarray:
        """The H-step mean forecast of one series (L,)."""
        self.check(y)
        try:
            return self.make().forecast(y=y, h=self.horizon)["mean"]
        except Exception as err:  # statsforecast raises plain Exception, among others
            m = self.season
            raise ConfigError(
                f"model {self.name}: statsforecast cannot fit a window of data.input_len "
                f"{self.input_len} steps ({self.season_key} {m}): {err}",
                "lengthen data.input_len"
                + (f" (two seasons, {2 * m} steps, or more, for a seasonal fit)" if m > 1 else ""),
            ) from err


class ETS(StatisticalForecaster):
    """Exponential smoothing (statsforecast AutoETS): error, trend and season chosen by AICc."""

    class Args(StatisticalArgs):
        name: Literal["ets"] = "ets"
        model: str = Field(
            "ZZZ",
            description="error, trend, season: A additive, M multiplicative, N none, Z chosen",
        )

        @field_validator("model")
        @classmethod
        def _spec(cls, spec: str) -> str:
            letters = ("AMZ", "NAMZ", "NAMZ")
            if len(spec) != 3 or any(c not in ok for c, ok in zip(spec, letters, strict=True)):
                raise ValueError(
                    "three letters: error (A, M, Z), trend (N, A, M, Z) and season "
                    "(N, A, M, Z), e.g. ZZZ (all chosen) or MAM"
                )
            return spec

    name = "ets"

    def __init__(self, io: ModelIO, args: Args) -> None:
        super().__init__(io, args)
        self.spec = args.model

    def make(self) -> Any:
        from statsforecast.models import AutoETS

        return AutoETS(season_length=self.season, model=self.spec)

    def check(self, history: np.ndarray) -> None:
        # Z never chooses a multiplicative form for such data; a fixed M would fail
        if "M" in self.spec and history.min() <= 0:
            raise ConfigError(
                f"model.model {self.spec!r} is multiplicative, which needs positive values; "
                f"a window holds {history.min():.4g}",
                "set data.scaler: none (the data's own units), or an additive or Z form",
            )


class ARIMA(StatisticalForecaster):
    """ARIMA (statsforecast AutoARIMA): orders and seasonal orders chosen stepwise by AICc."""

    class Args(StatisticalArgs):
        name: Literal["arima"] = "arima"

    name = "arima"

    def make(self) -> Any:
        from statsforecast.models import AutoARIMA

        return AutoARIMA(season_length=self.season)


class Theta(StatisticalForecaster):
    """Theta method (statsforecast AutoTheta): the best of four Theta variants by MSE."""

    class Args(StatisticalArgs):
        name: Literal["theta"] = "theta"

    name = "theta"

    def make(self) -> Any:
        from statsforecast.models import AutoTheta

        return AutoTheta(season_length=self.season)


MODELS.add("ets", ETS)
MODELS.add("arima", ARIMA)
MODELS.add("theta", Theta)

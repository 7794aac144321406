"""Time-series forecasting: from a window of the past, the next ``horizon`` steps.

Settings, as the long-horizon literature names them (Informer, DLinear):

* ``S``  one target in, the same target out (univariate);
* ``MS`` the targets and the extra ``features`` in, the targets out;
* ``M``  every column in, every column out.

Models are trained and selected on scaled values; scores are reported both on the
scaled values (MSE, MAE: the ETT convention) and in the data's own units (MAE, RMSE,
MAPE, sMAPE, and MASE against the in-sample seasonal naive forecast of train).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field, ValidationInfo, field_validator
from torch import Tensor, nn

from rnnzoo.backtest import Backtest, BacktestRequest, backtest
from rnnzoo.config import Section
from rnnzoo.data.batches import Batch
from rnnzoo.data.timeseries import (
    DataError,
    Missing,
    Protocol,
    Scaler,
    Series,
    Windows,
    fetch,
    read_series,
    resolve_path,
    split_borders,
    window_starts,
)
from rnnzoo.errors import ConfigError
from rnnzoo.tasks.base import TASKS, ModelIO, PredictRequest, Sums, Task

STATE_FILE = "forecast.json"


@TASKS.register("forecast")
class ForecastTask(Task):
    """Direct multi-step forecasting of one or more columns of a CSV series."""

    class Data(Section):
        path: str = Field(description="a CSV file with a header, or builtin:airline")
        url: str | None = Field(None, description="download data.path from here if missing")
        date_column: str | None = Field(None, description="without it rows are the time index")
        target: str | list[str] = Field(description="the column(s) to forecast")
        mode: Literal["S", "MS", "M"] = Field("S", description="S, MS or M, see the module")
        features: list[str] = Field(
            default_factory=list, validate_default=True, description="extra input columns"
        )
        missing: Missing = "error"
        input_len: int = Field(96, ge=1, description="steps of history the model reads")
        horizon: int = Field(24, ge=1, description="steps forecast at once")
        stride: int = Field(1, ge=1, description="between training windows (val/test: 1)")
        protocol: Protocol = "ratios"
        splits: list[float] = Field(
            default_factory=lambda: [0.7, 0.1, 0.2],
            description="train/val/test: fractions (ratios) or rows (counts)",
        )
        scaler: Literal["standard", "minmax", "none"] = "standard"
        season: int = Field(1, ge=1, description="period of MASE's naive forecast (1: last)")
        plot_windows: int = Field(4, ge=1, description="test windows drawn by rnnzoo eval")

        @property
        def targets(self) -> list[str]:
            return [self.target] if isinstance(self.target, str) else list(self.target)

        @field_validator("target")
        @classmethod
        def _some_target(cls, target: str | list[str]) -> str | list[str]:
            if not target:
                raise ValueError("name at least one column to forecast")
            return target

        @field_validator("features")
        @classmethod
        def _features_fit_mode(cls, features: list[str], info: ValidationInfo) -> list[str]:
            target = info.data.get("target")
            n_targets = 1 if isinstance(target, str) else len(target or [])
            if info.data.get("mode") == "S" and (features or n_targets > 1):
                raise ValueError(
                    "mode S forecasts one target from its own past: give one data.target "
                    "and no data.features, or use mode MS (features in) or M (all out)"
                )
            return features

        @field_validator("splits")
        @classmethod
        def _splits_fit_protocol(cls, splits: list[float], info: ValidationInfo) -> list[float]:
            protocol = info.data.get("protocol")
            if protocol in ("ett_hour", "ett_minute"):
                return splits  # fixed borders; splits is not read
            if len(splits) != 3 or min(splits) <= 0:
                raise ValueError("give three positive sizes: [train, val, test]")
            if protocol == "ratios" and abs(sum(splits) - 1) > 1e-6:
                raise ValueError(f"ratios must add up to 1 (they add up to {sum(splits):g})")
            if protocol == "counts" and any(s != int(s) for s in splits):
                raise ValueError("counts are whole numbers of rows")
            return splits

    metric = "mse"
    headline = ("loss", "mse", "mae", "mase")  # never mape: near-zero values blow it up
    modes: ClassVar[dict[str, Literal["min", "max"]]] = {
        "loss": "min", "mse": "min", "mae": "min", "mse_orig": "min", "mae_orig": "min",
        "rmse_orig": "min", "mape": "min", "smape": "min", "mase": "min",
    }  # fmt: skip

    def __init__(self, data: Any) -> None:
        super().__init__(data)
        d = self.data
        self.out_columns: list[str] = d.targets + (d.features if d.mode == "M" else [])
        self.columns: list[str] = d.targets + d.features  # inputs; the outputs lead
        self.scaler: Scaler | None = None
        self.mase_scale: np.ndarray | None = None
        self._series: Series | None = None

    # -- data ---------------------------------------------------------------------

    def load_series(self, path: str | Path | None = None) -> Series:
        """The configured series (or the CSV at ``path``), with its gaps handled."""
        d = self.data
        if path is None and self._series is not None:
            return self._series
        file = resolve_path(path if path is not None else d.path)
        if path is None and not file.exists() and d.url:
            fetch(d.url, file)
        series = read_series(file, self.columns, d.date_column, d.missing)
        if path is None:
            self._series = series
        return series

    @property
    def borders(self) -> dict[str, tuple[int, int]]:
        d = self.data
        return split_borders(len(self.load_series()), d.protocol, d.splits)

    def prepare(self) -> None:
        """Fit the scaler and MASE's scale on the training rows only."""
        d = self.data
        series, borders = self.load_series(), self.borders
        for split, border in borders.items():
            stride = d.stride if split == "train" else 1
            if len(window_starts(border, d.input_len, d.horizon, stride)) == 0:
                raise DataError(
                    f"{series.source}: the {split} split (rows {border[0]}-{border[1]}) is too "
                    f"short for one window of input_len {d.input_len} + horizon {d.horizon}"
                )
        train = series.values[: borders["train"][1]]
        self.scaler = Scaler.fit(d.scaler, train)
        n_out = len(self.out_columns)
        m = d.season if d.season < len(train) else 1
        naive = np.abs(train[m:, :n_out] - train[:-m, :n_out]).mean(axis=0)
        self.mase_scale = np.where(naive > 0, naive, 1.0)

    def save_state(self, run_dir: Path) -> None:
        assert self.scaler is not None and self.mase_scale is not None
        state = {
            "columns": self.columns,
            "scaler": self.scaler.to_dict(),
            "mase_scale": self.mase_scale.tolist(),
        }
        (run_dir / STATE_FILE).write_text(json.dumps(state, indent=2) + "\n")

    def load_state(self, run_dir: Path) -> None:
        path = run_dir / STATE_FILE
        if not path.is_file():
            raise ConfigError(f"{run_dir} has no {STATE_FILE} (the fitted scaler)")
        state = json.loads(path.read_text())
        self.scaler = Scaler.from_dict(state["scaler"])
        self.mase_scale = np.asarray(state["mase_scale"], np.float64)

    def _scaled(self, series: Series) -> Tensor:
        if self.scaler is None:
            raise RuntimeError("the scaler is not fitted: call prepare() or load_state()")
        return torch.as_tensor(self.scaler.transform(series.values), dtype=torch.float32)

    def dataset(self, split: str) -> Windows:
        self.check_split(split)
        d = self.data
        stride = d.stride if split == "train" else 1
        return self.windows(window_starts(self.borders[split], d.input_len, d.horizon, stride))

    def windows(self, starts: Tensor) -> Windows:
        """The windows of the series whose inputs start at rows ``starts`` (N,): a
        split's, or any others (a backtest's fine-tuning windows)."""
        d = self.data
        n_out, n_in = len(self.out_columns), len(self.columns)
        values = self._scaled(self.load_series())
        return Windows(values, starts, d.input_len, d.horizon, range(n_in), range(n_out))

    @property
    def io(self) -> ModelIO:
        d = self.data
        n_in, n_out = len(self.columns), len(self.out_columns)
        return ModelIO(n_in, n_out, None, d.input_len, d.horizon, output="horizon", season=d.season)

    # -- loss and scores ----------------------------------------------------------

    def loss(self, output: Tensor, batch: Batch) -> Tensor:
        return F.mse_loss(output, batch.targets)

    def originals(self, output: Tensor, batch: Batch) -> tuple[Tensor, Tensor]:
        """(forecast, truth) of a batch in the data's own units, float64 (B, H, C_out).

        Every reported score starts here, so a change of model space (scaling, a
        transformation) is undone in one place."""
        return self._unscale(output), self._unscale(batch.targets)

    def metrics(self, output: Tensor, batch: Batch) -> Sums:
        assert self.scaler is not None and self.mase_scale is not None
        pred, true = self.originals(output, batch)
        err = self.scaled_error(pred, true)
        abs_err = (pred - true).abs()
        mase_scale = torch.as_tensor(self.mase_scale, dtype=abs_err.dtype, device=abs_err.device)
        nonzero = true.abs() > 1e-8
        both = (pred.abs() + true.abs()) > 1e-8
        n = torch.tensor(err.numel(), device=err.device)
        return {
            "mse": (err.square().sum(), n),
            "mae": (err.abs().sum(), n),
            "mse_orig": (abs_err.square().sum(), n),
            "mae_orig": (abs_err.sum(), n),
            "mape": (100 * (abs_err / true.abs())[nonzero].sum(), nonzero.sum()),
            "smape": (200 * (abs_err / (pred.abs() + true.abs()))[both].sum(), both.sum()),
            "mase": ((abs_err / mase_scale).sum(), n),
        }

    def scaled_error(self, pred: Tensor, true: Tensor) -> Tensor:
        """Forecast minus truth (both in the data's units, (..., C_out)) on the scaled
        values of the original series: what the field's MSE and MAE average."""
        assert self.scaler is not None
        scale = self.scaler.scale[: len(self.out_columns)]
        return (pred - true) / torch.as_tensor(scale, dtype=pred.dtype, device=pred.device)

    def finish(self, means: dict[str, float]) -> dict[str, float]:
        if "mse_orig" in means:
            means["rmse_orig"] = math.sqrt(means["mse_orig"])
        return means

    def show(self, output: Tensor) -> str:
        return " ".join(f"{v:.4g}" for v in self._unscale(output).flatten().tolist())

    def _unscale(self, output: Tensor) -> Tensor:
        assert self.scaler is not None
        return self.scaler.inverse(output.detach().double(), range(len(self.out_columns)))

    # -- outputs: forecast CSV, plots, backtests -------------------------------------

    def backtest(self, model: nn.Module, request: BacktestRequest) -> Backtest:
        """Forecast from every origin of a split: errors per lead (``rnnzoo.backtest``)."""
        return backtest(self, model, request)

    @torch.no_grad()
    def predict(self, model: nn.Module, request: PredictRequest) -> list[str]:
        """Forecast ``horizon`` steps after the last row (or ``request.cutoff``) to a CSV."""
        import pandas as pd

        if request.texts:
            raise ConfigError("a forecasting run predicts from a CSV: use --data-path, not text")
        d = self.data
        series = self.load_series(request.data_path)
        cut = _cutoff_row(series, request.cutoff)  # forecast rows cut, cut+1, ...
        if cut < d.input_len:
            raise ConfigError(
                f"the forecast needs {d.input_len} rows of history before the cut-off; "
                f"{series.source} has {cut}"
            )
        values = self._scaled(series)[cut - d.input_len : cut]
        model.eval()
        forecast = self._unscale(model(values[None], None)[0]).numpy()  # (H, C_out)
        frame = pd.DataFrame(forecast, columns=self.out_columns)
        frame.insert(
            0, "date" if series.dates is not None else "step", _future(series, cut, d.horizon)
        )
        known = series.values[cut : cut + d.horizon, : len(self.out_columns)]
        for i, name in enumerate(self.out_columns):  # a cut-off inside the data: the truth too
            frame[f"actual_{name}"] = np.pad(
                known[:, i], (0, d.horizon - len(known)), constant_values=np.nan
            )
        if len(known) == 0:
            frame = frame.drop(columns=[f"actual_{n}" for n in self.out_columns])
        out = request.out or request.run_dir / "forecast.csv"
        frame.to_csv(out, index=False)
        return [*frame.to_csv(index=False).splitlines(), f"wrote {out}"]

    @torch.no_grad()
    def figures(
        self, model: nn.Module, split: str, run_dir: Path, device: torch.device
    ) -> list[Path]:
        """``forecast_<split>.png``: history, truth and forecast of a few windows."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        d, series = self.data, self.load_series()
        data = self.dataset(split)
        n = min(d.plot_windows, len(data))
        picks = np.linspace(0, len(data) - 1, n).round().astype(int).tolist()
        batch = data.__getitems__(picks).to(device)
        model.eval()
        forecast = self._unscale(model(batch.inputs, None).float().cpu())[:, :, 0]
        fig, axes = plt.subplots(n, 1, figsize=(9, 2.4 * n), squeeze=False)
        for ax, i, pred in zip(axes[:, 0], picks, forecast, strict=True):
            start = int(data.starts[i])
            rows = np.arange(start, start + d.input_len + d.horizon)
            x: Any = rows if series.dates is None else series.dates[rows]
            history = series.values[rows, 0]
            ax.plot(x, history, color="0.4", lw=1, label="actual")
            ax.plot(x[d.input_len :], pred.numpy(), color="C1", lw=1.5, label="forecast")
            ax.axvline(x[d.input_len], color="0.7", ls="--", lw=0.8)
            ax.set_ylabel(self.out_columns[0])
        axes[0, 0].legend(loc="upper left", fontsize="small")
        axes[0, 0].set_title(f"{Path(series.source).name}: {split} windows, horizon {d.horizon}")
        fig.tight_layout()
        path = run_dir / f"forecast_{split}.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        return [path]


def _cutoff_row(series: Series, cutoff: str | None) -> int:
    """The first row to forecast: after the last row, or after the row at ``cutoff``."""
    if cutoff is None:
        return len(series)
    if series.dates is None or cutoff.lstrip("-").isdigit():
        try:
            row = int(cutoff)
        except ValueError:
            raise ConfigError(
                f"--cutoff {cutoff!r}: this series has no dates; give a row number"
            ) from None
        if not 0 <= row < len(series):
            raise ConfigError(f"--cutoff {row}: rows are 0-{len(series) - 1}")
        return row + 1
    import pandas as pd

    try:
        when = pd.Timestamp(cutoff)
    except ValueError:
        raise ConfigError(f"--cutoff {cutoff!r} is not a date") from None
    row = int(series.dates.searchsorted(when, side="right"))
    if row == 0:
        raise ConfigError(f"--cutoff {cutoff} is before the first row ({series.dates[0]})")
    return row


def _future(series: Series, cut: int, horizon: int) -> Any:
    """Dates (or row numbers) of the ``horizon`` rows from ``cut`` on."""
    import pandas as pd

    if series.dates is None:
        return np.arange(cut, cut + horizon)
    freq = series.freq() or (series.dates[1:] - series.dates[:-1]).median()
    last = series.dates[cut - 1]
    return pd.date_range(last, periods=horizon + 1, freq=freq)[1:]

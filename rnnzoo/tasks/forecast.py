"""Time-series forecasting: from a window of the past, the next ``horizon`` steps.

Settings, as the long-horizon literature names them (Informer, DLinear):

* ``S``  one target in, the same target out (univariate);
* ``MS`` the targets and the extra ``features`` in, the targets out;
* ``M``  every column in, every column out.

Models are trained and selected on scaled values; scores are reported both on the
scaled values (MSE, MAE: the ETT convention) and in the data's own units (MAE, RMSE,
MAPE, sMAPE, and MASE against the in-sample seasonal naive forecast of train).

A model with quantile levels (``model.quantiles``) returns a ``QuantileForecast``: it
is trained on the mean pinball loss over its levels, every point score above is taken
on its median (the level nearest 0.5), so runs stay comparable, and ``pinball``,
``coverage`` (the % of true values between the lowest and highest level), ``nominal``
(the % that interval should hold), ``coverage_error`` (their distance) and
``interval_width`` (scaled, like MAE) are added.
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

from rnnzoo import run_folder
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
from rnnzoo.data.transforms import Step, StepSpec, Transform
from rnnzoo.errors import ConfigError
from rnnzoo.tasks.base import (
    TASKS,
    ModelIO,
    PredictRequest,
    QuantileForecast,
    Sums,
    Task,
    median_index,
)

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
        transform: list[StepSpec] | dict[str, list[StepSpec]] = Field(
            default_factory=list,
            description="log, log1p, box_cox, difference or {difference: LAG}, in order; "
            "a list for every column or {column: list}",
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

        @field_validator("transform")
        @classmethod
        def _steps_parse(cls, spec: Any) -> Any:
            chains = spec.values() if isinstance(spec, dict) else [spec]
            for chain in chains:
                for step in chain:
                    Step.parse(step)  # a ValueError names what is wrong
            return spec

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
    # never mape: near-zero values blow it up; coverage and nominal only with quantiles
    headline = ("loss", "mse", "mae", "mase", "coverage", "nominal")
    # coverage and nominal are to read, not to select on: what matters is how near
    # coverage is to nominal, which coverage_error measures (select on it or pinball)
    modes: ClassVar[dict[str, Literal["min", "max"]]] = {
        "loss": "min", "mse": "min", "mae": "min", "mse_orig": "min", "mae_orig": "min",
        "rmse_orig": "min", "mape": "min", "smape": "min", "mase": "min",
        "pinball": "min", "coverage": "max", "nominal": "max", "coverage_error": "min",
        "interval_width": "min",
    }  # fmt: skip

    def __init__(self, data: Any) -> None:
        super().__init__(data)
        d = self.data
        self.out_columns: list[str] = d.targets + (d.features if d.mode == "M" else [])
        self.columns: list[str] = d.targets + d.features  # inputs; the outputs lead
        self.transform = Transform.from_config(self.data.transform, self.columns)
        self.scaler: Scaler | None = None  # fitted in model space (after the transform)
        self.report_scale: np.ndarray | None = None  # the scaler's scale in original units
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
        """Fit the transform, the scaler and MASE's scale on the training rows only."""
        d = self.data
        series, borders = self.load_series(), self.borders
        offset = self.transform.offset
        if offset > d.input_len:
            raise ConfigError(
                f"data.transform differences {offset} steps back, more than the window "
                f"(data.input_len {d.input_len}) holds: lengthen the window or shorten the lag"
            )
        for split in borders:
            if len(self._starts(split)) == 0:
                border = borders[split]
                raise DataError(
                    f"{series.source}: the {split} split (rows {border[0]}-{border[1]}) is too "
                    f"short for one window of input_len {d.input_len} + horizon {d.horizon}"
                    + (
                        f" after the {offset} rows data.transform differences away"
                        if offset
                        else ""
                    )
                )
        train = series.values[: borders["train"][1]]
        self.transform.fit(train, self.columns, series.source)
        modelled = self.transform.apply(train, self.columns, series.source)[offset:]
        self.scaler = Scaler.fit(d.scaler, modelled)
        self.report_scale = Scaler.fit(d.scaler, train).scale
        n_out = len(self.out_columns)
        m = d.season if d.season < len(train) else 1
        naive = np.abs(train[m:, :n_out] - train[:-m, :n_out]).mean(axis=0)
        self.mase_scale = np.where(naive > 0, naive, 1.0)

    def save_state(self, run_dir: Path) -> None:
        assert self.scaler is not None and self.mase_scale is not None
        state = {
            "columns": self.columns,
            "scaler": self.scaler.to_dict(),
            "report_scale": None if self.report_scale is None else self.report_scale.tolist(),
            "transform": self.transform.to_list(),
            "mase_scale": self.mase_scale.tolist(),
        }
        (run_dir / STATE_FILE).write_text(json.dumps(state, indent=2) + "\n")

    def load_state(self, run_dir: Path) -> None:
        path = run_dir / STATE_FILE
        if not path.is_file():
            raise ConfigError(f"{run_dir} has no {STATE_FILE} (the fitted scaler)")
        state = json.loads(path.read_text())
        self.scaler = Scaler.from_dict(state["scaler"])
        # Runs from before transformations: no transform, the report scale is the scaler's.
        self.report_scale = np.asarray(state.get("report_scale") or self.scaler.scale, np.float64)
        if "transform" in state:
            self.transform = Transform.from_list(state["transform"])
        self.mase_scale = np.asarray(state["mase_scale"], np.float64)

    def _scaled(self, series: Series) -> Tensor:
        """The series in model space: transformed, then scaled (float32, NaN where a
        difference has no value)."""
        if self.scaler is None:
            raise RuntimeError("the scaler is not fitted: call prepare() or load_state()")
        values = self.transform.apply(series.values, self.columns, series.source)
        return torch.as_tensor(self.scaler.transform(values), dtype=torch.float32)

    def _starts(self, split: str) -> Tensor:
        """First rows of the split's windows: none before the transform's first value."""
        d = self.data
        stride = d.stride if split == "train" else 1
        starts = window_starts(self.borders[split], d.input_len, d.horizon, stride)
        return starts[starts >= self.transform.offset]

    def dataset(self, split: str) -> Windows:
        self.check_split(split)
        return self.windows(self._starts(split))

    def windows(self, starts: Tensor) -> Windows:
        """The windows of the series whose inputs start at rows ``starts`` (N,): a
        split's, or any others (a backtest's fine-tuning windows); none starts before the
        transform's first value."""
        d = self.data
        starts = starts[starts >= self.transform.offset]
        n_out, n_in = len(self.out_columns), len(self.columns)
        series = self.load_series()
        raw = None  # the windows' values in original units, to undo the transform
        if not self.transform.identity:
            raw = torch.as_tensor(series.values[:, :n_out], dtype=torch.float64)
        return Windows(
            self._scaled(series), starts, d.input_len, d.horizon,
            range(n_in), range(n_out), raw=raw,
        )  # fmt: skip

    @property
    def io(self) -> ModelIO:
        d = self.data
        n_in, n_out = len(self.columns), len(self.out_columns)
        inputs = f"columns {self.columns}, transform {d.transform}, scaler {d.scaler}"
        return ModelIO(
            n_in, n_out, None, d.input_len, d.horizon, output="horizon", season=d.season,
            inputs=inputs,
        )  # fmt: skip

    # -- loss and scores ----------------------------------------------------------

    def loss(self, output: Tensor | QuantileForecast, batch: Batch) -> Tensor:
        if isinstance(output, QuantileForecast):
            return pinball(output.values, batch.targets, output.levels).mean()
        return F.mse_loss(output, batch.targets)

    def originals(self, output: Tensor | QuantileForecast, batch: Batch) -> tuple[Tensor, Tensor]:
        """(forecast, truth) of a batch in the data's own units, float64 (B, H, C_out);
        a quantile forecast's point forecast (its median).

        Every reported score starts here, so a change of model space (scaling, a
        transformation) is undone in one place. With a transform, ``batch.context`` holds
        each window's values in original units: (B, L + H, C_out)."""
        output = self._point(output)
        if batch.context is None:
            return self._unscale(output), self._unscale(batch.targets)
        truth = batch.context[:, self.data.input_len :].double()
        return self._original(output, self._history(batch)), truth

    def _history(self, batch: Batch) -> Tensor | None:
        """Each window's inputs in original units (B, L, C_out); None without a transform."""
        if batch.context is None:
            return None
        return batch.context[:, : self.data.input_len].double()

    def _original(self, output: Tensor, history: Tensor | None) -> Tensor:
        """A model-space forecast (B, H, C_out) in original units, given each window's
        history in original units (B, L, C_out) (unused without a transform)."""
        forecast = self._unscale(output)
        if self.transform.identity:
            return forecast
        assert history is not None
        return self.transform.inverse(forecast, history)

    def metrics(self, output: Tensor | QuantileForecast, batch: Batch) -> Sums:
        assert self.mase_scale is not None
        pred, true = self.originals(self._point(output), batch)
        err = self.scaled_error(pred, true)
        abs_err = (pred - true).abs()
        mase_scale = torch.as_tensor(self.mase_scale, dtype=abs_err.dtype, device=abs_err.device)
        nonzero = true.abs() > 1e-8
        both = (pred.abs() + true.abs()) > 1e-8
        n = torch.tensor(err.numel(), device=err.device)
        sums = {
            "mse": (err.square().sum(), n),
            "mae": (err.abs().sum(), n),
            "mse_orig": (abs_err.square().sum(), n),
            "mae_orig": (abs_err.sum(), n),
            "mape": (100 * (abs_err / true.abs())[nonzero].sum(), nonzero.sum()),
            "smape": (200 * (abs_err / (pred.abs() + true.abs()))[both].sum(), both.sum()),
            "mase": ((abs_err / mase_scale).sum(), n),
        }
        if isinstance(output, QuantileForecast):
            sums.update(self._quantile_sums(output, true, self._history(batch)))
        return sums

    def _quantile_sums(
        self, output: QuantileForecast, true: Tensor, history: Tensor | None
    ) -> Sums:
        """pinball, coverage, nominal and interval_width of a batch, against ``true``
        (B, H, C_out) in the data's units; pinball and width scaled like ``mae``."""
        assert self.report_scale is not None
        values = self._levels(output, history)  # (B, H, C_out, Q)
        scale = self.report_scale[: len(self.out_columns)]
        scale_t = torch.as_tensor(scale, dtype=values.dtype, device=values.device)[:, None]
        low, high = values[..., 0], values[..., -1]
        inside = (true >= low) & (true <= high)
        n = torch.tensor(true.numel(), device=true.device)
        nominal = 100 * (output.levels[-1] - output.levels[0])
        return {
            "pinball": (pinball(values / scale_t, true / scale_t[..., 0], output.levels).sum(), n),
            "coverage": (100 * inside.sum(), n),
            "nominal": (torch.tensor(nominal * true.numel(), dtype=torch.float64), n),
            "interval_width": (((high - low) / scale_t[..., 0]).sum(), n),
        }

    def scaled_error(self, pred: Tensor, true: Tensor) -> Tensor:
        """Forecast minus truth (both in the data's units, (..., C_out)) on the scaled
        values of the original series: what the field's MSE and MAE average (the
        scaler's statistics of the untransformed training rows)."""
        assert self.report_scale is not None
        scale = self.report_scale[: len(self.out_columns)]
        return (pred - true) / torch.as_tensor(scale, dtype=pred.dtype, device=pred.device)

    def finish(self, means: dict[str, float]) -> dict[str, float]:
        if "mse_orig" in means:
            means["rmse_orig"] = math.sqrt(means["mse_orig"])
        if "coverage" in means and "nominal" in means:
            means["coverage_error"] = abs(means["coverage"] - means["nominal"])
        return means

    def show(self, output: Tensor | QuantileForecast) -> str:
        return " ".join(f"{v:.4g}" for v in self._unscale(self._point(output)).flatten().tolist())

    def _unscale(self, output: Tensor) -> Tensor:
        assert self.scaler is not None
        return self.scaler.inverse(output.detach().double(), range(len(self.out_columns)))

    @staticmethod
    def _point(output: Tensor | QuantileForecast) -> Tensor:
        """The point forecast (B, H, C_out): a quantile model's median, the level nearest 0.5."""
        return output.median if isinstance(output, QuantileForecast) else output

    def _levels(self, output: QuantileForecast, history: Tensor | None) -> Tensor:
        """Every level in the data's units, float64 (B, H, C_out, Q), each undone as
        ``_original`` undoes a point forecast. Under a monotone transform (log, box_cox)
        a level stays that level; a difference is undone on each level's path, which is
        an approximation: a sum of quantiles is not the quantile of a sum."""
        levels = output.values.unbind(-1)
        return torch.stack([self._original(v, history) for v in levels], dim=-1)

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
        need = d.input_len + self.transform.offset  # a difference needs rows before its first
        if cut < need:
            raise ConfigError(
                f"the forecast needs {need} rows of history before the cut-off; "
                f"{series.source} has {cut}"
            )
        values = self._scaled(series)[cut - d.input_len : cut]
        history = torch.as_tensor(series.values[cut - d.input_len : cut, : len(self.out_columns)])
        model.eval()
        frame = pd.DataFrame(self._forecast_columns(model(values[None], None), history[None]))
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
    ) -> dict[Path, bytes]:
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
        output = model(batch.inputs, None).float()
        batch = batch.to(torch.device("cpu"))
        forecast = self.originals(self._point(output).cpu(), batch)[0][:, :, 0]
        band = self._interval(output, self._history(batch))
        fig, axes = plt.subplots(n, 1, figsize=(9, 2.4 * n), squeeze=False)
        for row, (ax, i, pred) in enumerate(zip(axes[:, 0], picks, forecast, strict=True)):
            start = int(data.starts[i])
            rows = np.arange(start, start + d.input_len + d.horizon)
            x: Any = rows if series.dates is None else series.dates[rows]
            history = series.values[rows, 0]
            ax.plot(x, history, color="0.4", lw=1, label="actual")
            ax.plot(x[d.input_len :], pred.numpy(), color="C1", lw=1.5, label="forecast")
            if band is not None:
                low, high, label = band
                ax.fill_between(
                    x[d.input_len :], low[row], high[row], color="C1", alpha=0.25, lw=0,
                    label=label,
                )  # fmt: skip
            ax.axvline(x[d.input_len], color="0.7", ls="--", lw=0.8)
            ax.set_ylabel(self.out_columns[0])
        axes[0, 0].legend(loc="upper left", fontsize="small")
        axes[0, 0].set_title(f"{Path(series.source).name}: {split} windows, horizon {d.horizon}")
        fig.tight_layout()
        return {run_dir / f"forecast_{split}.png": run_folder.png_bytes(fig)}

    def _forecast_columns(
        self, output: Tensor | QuantileForecast, history: Tensor
    ) -> dict[str, np.ndarray]:
        """One window's forecast (H,) per CSV column, in the data's units: each output
        column's point forecast, then, with quantiles, ``<column>_q<level>`` for every
        level but the median's (the column itself). history: (1, L, C_out), original units."""
        # float32, the model's precision: no digits of float64 noise in the CSV
        point = self._original(self._point(output), history)[0].float().numpy()  # (H, C_out)
        columns: dict[str, np.ndarray] = {}
        for j, name in enumerate(self.out_columns):
            columns[name] = point[:, j]
            if isinstance(output, QuantileForecast):
                values = self._levels(output, history)[0].float().numpy()  # (H, C_out, Q)
                for k, level in enumerate(output.levels):
                    if k != median_index(output.levels):
                        columns[f"{name}_q{level:g}"] = values[:, j, k]
        return columns

    def _interval(
        self, output: Tensor | QuantileForecast, history: Tensor | None
    ) -> tuple[Any, Any, str] | None:
        """The first output column's lowest and highest levels (B, H), in the data's units,
        and their legend label; None for a point forecast."""
        if not isinstance(output, QuantileForecast):
            return None
        on_cpu = QuantileForecast(output.values.float().cpu(), output.levels)
        values = self._levels(on_cpu, history)[:, :, 0]  # (B, H, Q)
        low, high = output.levels[0], output.levels[-1]
        label = f"{100 * (high - low):g} % interval (q{low:g}-q{high:g})"
        return values[..., 0].numpy(), values[..., -1].numpy(), label


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


def pinball(values: Tensor, true: Tensor, levels: tuple[float, ...]) -> Tensor:
    """Pinball (quantile) loss, averaged over the levels: (..., Q), (...) -> (...).

    Level q's loss is q * (y - f) where the truth y is above its forecast f, and
    (1 - q) * (f - y) where below; its expectation is least at the q-quantile of y."""
    q = torch.as_tensor(levels, dtype=values.dtype, device=values.device)
    diff = true.unsqueeze(-1) - values
    return torch.maximum(q * diff, (q - 1) * diff).mean(dim=-1)

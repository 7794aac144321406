"""The statsforecast baselines (``ets``, ``arima``, ``theta``): their forecasts are the
library's own for each window's history, their season is data.season unless the model
overrides it, the shipped airline configs run end to end, and a window too short to
fit is one error line."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from typer.testing import CliRunner

from rnnzoo.cli import app
from rnnzoo.config import parse_config
from rnnzoo.models import MODELS, build_model
from rnnzoo.tasks import ForecastTask, ModelIO
from tests.test_bad_input import assert_user_error, unchanged

ROOT = Path(__file__).resolve().parents[1]
LIBRARY = {"ets": "AutoETS", "arima": "AutoARIMA", "theta": "AutoTheta"}
runner = CliRunner()


def seasonal(rows: int, columns: int, length: int = 16, period: int = 4) -> torch.Tensor:
    """(rows, length, columns) positive series, a trend and a strong season of ``period``
    steps, each series with its own level, amplitude, phase and noise."""
    rng = np.random.default_rng(0)
    t = np.arange(length)
    x = np.empty((rows, length, columns))
    for i in range(rows):
        for j in range(columns):
            level, amplitude, phase = 50 + 20 * i + 7 * j, 10 + 3 * i + 2 * j, i + j
            season = amplitude * np.sin(2 * np.pi * (t + phase) / period)
            x[i, :, j] = level + 0.8 * t + season + rng.normal(0, 0.5, length)
    return torch.tensor(x, dtype=torch.float32)


def library_forecast(name: str, history: torch.Tensor, horizon: int, season: int) -> np.ndarray:
    """statsforecast's mean forecast of one series, called as its documentation does."""
    import statsforecast.models  # slow to import: only where a test needs it

    model = getattr(statsforecast.models, LIBRARY[name])(season_length=season)
    return model.forecast(y=history.double().numpy(), h=horizon)["mean"]


def build(name: str, io: ModelIO, **args) -> torch.nn.Module:
    return build_model(MODELS.get(name).Args(name=name, **args), io).eval()


# ARIMA fits slowly: one series for it, 2 x 2 (and a feature column) for the others. The
# loop over rows and columns is the base class's, shared by all three.
SHAPES = {"ets": (2, 3, 2), "theta": (2, 3, 2), "arima": (1, 2, 1)}  # rows, inputs, outputs


@pytest.mark.parametrize("name", list(LIBRARY))
def test_each_window_and_column_gets_the_librarys_own_forecast(name: str):
    rows, n_in, n_out = SHAPES[name]
    x = seasonal(rows, n_in)  # float32, as the task's windows are
    io = ModelIO(n_in, n_out, input_len=16, horizon=4, output="horizon", season=4)
    model = build(name, io)
    assert not list(model.parameters())  # nothing to train: the trainer just scores it
    out = model(x)
    assert out.shape == (rows, 4, n_out) and out.dtype == torch.float32 and not out.requires_grad
    for i in range(rows):
        for j in range(n_out):
            expected = library_forecast(name, x[i, :, j], 4, season=4)
            torch.testing.assert_close(out[i, :, j], torch.tensor(expected, dtype=torch.float32))
    # float64 in (values float32 cannot hold), float64 out, to the library's last bit
    x64 = x.double() + 1 / 3
    expected = library_forecast(name, x64[0, :, 0], 4, season=4)
    torch.testing.assert_close(model(x64)[0, :, 0], torch.tensor(expected), rtol=0, atol=0)


@pytest.mark.parametrize("name", ["ets", "theta"])
def test_the_season_is_data_season_unless_the_model_sets_one(name: str):
    x = seasonal(1, 1)
    io = ModelIO(1, 1, input_len=16, horizon=4, output="horizon", season=4)
    seasonal_fit = library_forecast(name, x[0, :, 0], 4, season=4)
    flat_fit = library_forecast(name, x[0, :, 0], 4, season=1)
    assert np.abs(seasonal_fit - flat_fit).max() > 3  # a wrong season shows
    as_data = build(name, io)(x)[0, :, 0].numpy()
    overridden = build(name, io, season=1)(x)[0, :, 0].numpy()
    set_by_model = build(name, ModelIO(1, 1, input_len=16, horizon=4, output="horizon"), season=4)
    np.testing.assert_allclose(as_data, seasonal_fit, rtol=1e-6)
    np.testing.assert_allclose(overridden, flat_fit, rtol=1e-6)
    np.testing.assert_allclose(set_by_model(x)[0, :, 0].numpy(), seasonal_fit, rtol=1e-6)
    # and data.season reaches the model through the task
    raw = yaml.safe_load((ROOT / "configs" / f"airline_{name}.yaml").read_text())
    raw["data"]["season"] = 6
    config = parse_config(raw)
    assert build_model(config.model, ForecastTask(config.data).io).season == 6


def test_ets_takes_a_form_and_refuses_a_malformed_one():
    x = seasonal(1, 1)
    io = ModelIO(1, 1, input_len=16, horizon=4, output="horizon", season=4)
    from statsforecast.models import AutoETS

    out = build("ets", io, model="ANN")(x)[0, :, 0].numpy()  # no trend, no season: flat
    y = x[0, :, 0].double().numpy()
    expected = AutoETS(season_length=4, model="ANN").forecast(y=y, h=4)["mean"]
    np.testing.assert_allclose(out, expected, rtol=1e-6)
    assert np.ptp(out) < 1e-6
    with pytest.raises(ValueError, match="three letters"):
        MODELS.get("ets").Args(model="AN")
    with pytest.raises(ValueError, match="three letters"):
        MODELS.get("ets").Args(model="NAN")  # the error is A, M or Z


# -- the shipped airline configs, through the CLI -------------------------------------

# One window per split: the same configs, a handful of fits each. Val and test, 12 rows
# each, hold one window of 72 + 12 steps; train's stride leaves one of its 37.
FEW_WINDOWS = ["--set", "data.splits=[120, 12, 12]", "--set", "data.stride=84"]


@pytest.mark.parametrize(
    "name", ["ets", "theta", pytest.param("arima", marks=pytest.mark.slow)]
)  # fmt: skip
def test_a_shipped_airline_config_is_scored_not_trained(name: str, tmp_path: Path):
    config = ROOT / "configs" / f"airline_{name}.yaml"
    over = [*FEW_WINDOWS, "--set", f"output.dir={tmp_path}", "--set", "output.name=run",
            "--set", "output.tensorboard=false"]  # fmt: skip
    result = runner.invoke(app, ["train", "--config", str(config), *over])
    assert result.exit_code == 0, result.output
    run = tmp_path / "run"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["steps"] == 0  # scored, not trained
    # The one test window: six years of passengers (scaler none: the model sees them
    # as they are) before the last twelve months, which it forecasts.
    series = ForecastTask(parse_config(yaml.safe_load(config.read_text())).data).load_series()
    passengers = torch.tensor(series.values[:, 0])
    forecast = library_forecast(name, passengers[60:132], 12, season=12)
    rmse = math.sqrt(float(np.mean((forecast - passengers[132:].numpy()) ** 2)))
    assert summary["test"]["rmse_orig"] == pytest.approx(rmse, rel=1e-5)

    result = runner.invoke(app, ["eval", str(run), "--split", "test"])
    assert result.exit_code == 0, result.output
    scores = json.loads((run / "eval_test.json").read_text())
    assert scores["rmse_orig"] == pytest.approx(rmse, rel=1e-5)


# -- mistakes: one error line, no run folder left ----------------------------------------


@pytest.mark.parametrize(("name", "input_len"), [("ets", 5), ("theta", 3)])
def test_a_window_too_short_to_fit_exits_2_naming_input_len(
    name: str, input_len: int, tmp_path: Path
):
    config = ROOT / "configs" / f"airline_{name}.yaml"
    over = ["--set", f"data.input_len={input_len}", "--set", f"output.dir={tmp_path / 'runs'}"]
    with unchanged(tmp_path):
        result = runner.invoke(app, ["train", "--config", str(config), *over])
    message = assert_user_error(result, f"data.input_len {input_len}", "data.season 12")
    assert "help: lengthen data.input_len" in message


def test_a_multiplicative_ets_on_scaled_values_exits_2_naming_the_scaler(tmp_path: Path):
    config = ROOT / "configs" / "airline_ets.yaml"
    over = ["--set", "model.model=MAM", "--set", "data.scaler=standard",
            "--set", f"output.dir={tmp_path / 'runs'}"]  # fmt: skip
    with unchanged(tmp_path):
        result = runner.invoke(app, ["train", "--config", str(config), *over])
    assert_user_error(result, "model.model 'MAM'", "positive values", "data.scaler: none")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_inputs_on_cuda_give_the_same_forecast_on_cuda():
    x = seasonal(2, 1)
    io = ModelIO(1, 1, input_len=16, horizon=4, output="horizon", season=4)
    model = build("theta", io)
    out = model(x.cuda())
    assert out.device.type == "cuda" and out.dtype == torch.float32
    torch.testing.assert_close(out.cpu(), model(x))

"""Forecasting: CSV reading, splits without leakage, scaling, models, metrics, the CLI."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from torch import Tensor
from typer.testing import CliRunner

from rnnzoo.cli import app
from rnnzoo.config import ConfigError, parse_config
from rnnzoo.data.timeseries import (
    DataError,
    Scaler,
    read_series,
    split_borders,
    window_starts,
)
from rnnzoo.models import MODELS, build_model
from rnnzoo.models.base import output_of
from rnnzoo.tasks import ForecastTask, ModelIO
from rnnzoo.tasks.base import QuantileForecast
from rnnzoo.tasks.forecast import pinball
from tests.test_bad_input import assert_user_error

# AutoARIMA fits every series of a batch apart, a fraction of a second each: slow here.
FORECASTERS = [
    pytest.param(n, marks=pytest.mark.slow) if n == "arima" else n
    for n in MODELS.names()
    if output_of(n) == "horizon" and n != "ensemble"  # built from run folders: test_ensemble
]

# The smallest arguments that build each forecaster for a window of 8 and a horizon of 4.
MODEL_ARGS = {
    "forecaster": {"hidden_size": 6, "num_layers": 2, "bidirectional": True, "norm": "revin"},
    "seq2seq_forecaster": {"hidden_size": 6, "num_layers": 2, "teacher_forcing": 0.5},
    "segrnn": {"hidden_size": 6, "segment_len": 4, "cell": "lstm"},
    "linear": {"decomposition": True, "kernel": 3, "individual": True},
    "repeat_last": {},
    "seasonal_naive": {"period": 3},
    "ets": {},
    "arima": {},
    "theta": {},
}


def write(path: Path, text: str, newline: str = "\n") -> Path:
    path.write_bytes(text.replace("\n", newline).encode())
    return path


def monthly_csv(path: Path, n: int = 60, columns: int = 2, seed: int = 0) -> Path:
    """A seasonal monthly series with ``columns`` numeric columns and a date column."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    lines = ["month," + ",".join(f"c{j}" for j in range(columns))]
    for i, month in enumerate(np.arange("2000-01", n, dtype="datetime64[M]")[:n]):
        values = [
            100 + 2 * t[i] + 10 * (j + 1) * math.sin(2 * math.pi * t[i] / 12)
            for j in range(columns)
        ]
        values = [v + rng.normal() for v in values]
        lines.append(f"{month}," + ",".join(f"{v:.3f}" for v in values))
    return write(path, "\n".join(lines) + "\n")


# -- reading CSV files ------------------------------------------------------------------


def test_crlf_quoted_header_and_no_final_newline(tmp_path: Path):
    csv = write(tmp_path / "a.csv", '"Month","Passengers"\n"1949-01",112\n"1949-02",118', "\r\n")
    series = read_series(csv, ["Passengers"], "Month")
    assert series.values.tolist() == [[112.0], [118.0]]
    assert [str(d.date()) for d in series.dates] == ["1949-01-01", "1949-02-01"]


def test_blank_lines_are_skipped_and_line_numbers_stay_true(tmp_path: Path):
    csv = write(tmp_path / "a.csv", "t,x\n1,1.0\n\n2,abc\n")
    with pytest.raises(DataError, match=r"a\.csv: line 4, column 'x': 'abc' is not a number"):
        read_series(csv, ["x"], "t")


GAPPY = "day,x,y\n2020-01-01,NA,1\n2020-01-02,2,\n2020-01-03,,3\n2020-01-04,4,4\n"


def test_missing_values_are_errors_by_default(tmp_path: Path):
    csv = write(tmp_path / "gappy.csv", GAPPY)
    with pytest.raises(DataError, match=r"gappy\.csv: line 2, column 'x': missing value"):
        read_series(csv, ["x", "y"], "day")


@pytest.mark.parametrize(
    ("policy", "x", "y", "days"),
    [
        ("interpolate", [2, 2, 3, 4], [1, 2, 3, 4], [1, 2, 3, 4]),
        ("ffill", [2, 2, 2, 4], [1, 1, 3, 4], [1, 2, 3, 4]),
        ("drop", [4], [4], [4]),
    ],
)
def test_missing_value_policies(tmp_path: Path, policy, x, y, days):
    csv = write(tmp_path / "gappy.csv", GAPPY)
    series = read_series(csv, ["x", "y"], "day", missing=policy)
    assert series.values[:, 0].tolist() == x
    assert series.values[:, 1].tolist() == y
    assert [d.day for d in series.dates] == days


def test_a_non_numeric_cell_names_file_line_and_column(tmp_path: Path):
    csv = write(tmp_path / "bad.csv", "a,b\n1,2\n3,4\n5,six\n")
    with pytest.raises(DataError, match=r"bad\.csv: line 4, column 'b': 'six' is not a number"):
        read_series(csv, ["a", "b"], missing="interpolate")  # even when gaps are filled


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a,b\n1,2\n", r"no column 'c'; its columns: a, b"),
        (
            "d,x\n2020-01-02,1\n2020-01-01,2\n",
            r"line 3, column 'd': '2020-01-01' does not come after",
        ),
        ("d,x\n2020-01-01,1\nsoon,2\n", r"line 3, column 'd': 'soon' is not a date"),
        ("d,x\n", "no data rows"),
        ("d,x\n2020-01-01,NA\n2020-01-02,NA\n", "column 'x' has no values at all"),
    ],
)
def test_file_problems_are_named(tmp_path: Path, text, message):
    csv = write(tmp_path / "f.csv", text)
    columns = ["c"] if "no column" in message else ["x"]
    with pytest.raises(DataError, match=message):
        read_series(csv, columns, None if "no column" in message else "d", missing="ffill")


def test_missing_file_and_unknown_builtin(tmp_path: Path):
    with pytest.raises(DataError, match="data file not found"):
        read_series(tmp_path / "nope.csv", ["x"])
    with pytest.raises(DataError, match="builtin:airline"):
        read_series("builtin:nope", ["x"])


def test_the_builtin_airline_series():
    series = read_series("builtin:airline", ["Passengers"], "Month")
    assert len(series) == 144 and series.freq() == "MS"
    assert series.values[0, 0] == 112 and series.values[-1, 0] == 432


# -- splits, scaling, windows -----------------------------------------------------------


def test_ett_borders_on_etth1_length():
    borders = split_borders(17_420, "ett_hour")
    sizes = [end - start for start, end in borders.values()]
    assert sizes == [8640, 2880, 2880]
    assert borders["test"] == (11_520, 14_400)  # the published protocol drops the tail
    assert [e - s for s, e in split_borders(69_680, "ett_minute").values()] == [34560, 11520, 11520]
    with pytest.raises(DataError, match="needs 14400 rows"):
        split_borders(1000, "ett_hour")


def test_ratio_and_count_borders_are_contiguous_and_in_order():
    b = split_borders(101, "ratios", (0.7, 0.1, 0.2))
    assert b == {"train": (0, 70), "val": (70, 81), "test": (81, 101)}
    b = split_borders(100, "counts", (50, 10, 20))
    assert b == {"train": (20, 70), "val": (70, 80), "test": (80, 100)}  # the last rows
    with pytest.raises(DataError, match="asks for 130 rows"):
        split_borders(100, "counts", (100, 10, 20))


def test_windows_never_forecast_across_a_split_border():
    borders = split_borders(500, "ratios", (0.6, 0.2, 0.2))
    L, H = 24, 12
    for start, end in borders.values():
        starts = window_starts((start, end), L, H)
        assert len(starts) == (end - start - H + 1 if start else end - L - H + 1)
        assert (starts + L >= start).all()  # the forecast starts inside the split ...
        assert (starts + L + H <= end).all()  # ... and ends inside it
        assert (starts >= max(start - L, 0)).all()  # inputs borrow at most one window


def task_for(csv: Path, **data) -> ForecastTask:
    config = {
        "task": "forecast",
        "data": {"path": str(csv), "date_column": "month", "target": "c0", "input_len": 8,
                 "horizon": 4, "splits": [0.6, 0.2, 0.2], **data},
        "model": {"name": "repeat_last"},
    }  # fmt: skip
    task = ForecastTask(parse_config(config).data)
    task.prepare()
    return task


@pytest.mark.parametrize("kind", ["standard", "minmax"])
def test_the_scaler_sees_train_rows_only(tmp_path: Path, kind):
    task = task_for(monthly_csv(tmp_path / "m.csv", n=100), scaler=kind, mode="MS", features=["c1"])
    train = task.load_series().values[:60]
    if kind == "standard":
        np.testing.assert_allclose(task.scaler.shift, train.mean(0))
        np.testing.assert_allclose(task.scaler.scale, train.std(0))
    else:
        np.testing.assert_allclose(task.scaler.shift, train.min(0))
        np.testing.assert_allclose(task.scaler.scale, train.max(0) - train.min(0))
    # the series trends upwards: statistics of all rows would differ
    assert not np.allclose(task.scaler.shift, task.load_series().values.mean(0))


@pytest.mark.parametrize("kind", ["standard", "minmax", "none"])
def test_inverse_scaling_round_trip(kind):
    values = np.random.default_rng(0).normal(5, 3, size=(50, 3))
    values[:, 2] = 7.0  # a constant column
    scaler = Scaler.fit(kind, values)
    np.testing.assert_allclose(scaler.inverse(scaler.transform(values)), values)
    again = Scaler.from_dict(json.loads(json.dumps(scaler.to_dict())))
    tensor = torch.as_tensor(scaler.transform(values))[:, 1:]
    np.testing.assert_allclose(again.inverse(tensor, [1, 2]).numpy(), values[:, 1:])


def test_window_contents_are_the_scaled_rows(tmp_path: Path):
    task = task_for(monthly_csv(tmp_path / "m.csv", n=100), mode="M", features=["c1"])
    data = task.dataset("test")
    assert len(data) == 20 - 4 + 1
    batch = data.__getitems__([0, len(data) - 1])
    scaled = task.scaler.transform(task.load_series().values)
    first = int(data.starts[0])
    assert first == 80 - 8  # the first test input borrows 8 validation rows
    np.testing.assert_allclose(batch.inputs[0].numpy(), scaled[first : first + 8], rtol=1e-6)
    np.testing.assert_allclose(batch.targets[1].numpy(), scaled[96:100], rtol=1e-6)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"mode": "S", "features": ["c1"]}, "mode S forecasts one target"),
        ({"mode": "S", "target": ["c0", "c1"]}, "mode S forecasts one target"),
        ({"splits": [0.5, 0.2, 0.2]}, "ratios must add up to 1"),
        ({"protocol": "counts", "splits": [10.5, 5, 5]}, "whole numbers of rows"),
        ({"target": []}, "at least one column"),
    ],
)
def test_data_settings_are_checked(data, message):
    raw = {"task": "forecast", "data": {"path": "x.csv", "target": "c0", **data},
           "model": {"name": "repeat_last"}}  # fmt: skip
    with pytest.raises(ConfigError, match=message):
        parse_config(raw)


def test_a_split_too_short_for_one_window_is_named(tmp_path: Path):
    with pytest.raises(DataError, match=r"the val split \(rows 24-26\) is too short"):
        task_for(monthly_csv(tmp_path / "m.csv", n=40), splits=[0.6, 0.05, 0.35])


# -- models -----------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["S", "MS", "M"])
@pytest.mark.parametrize("name", FORECASTERS)
def test_every_forecaster_shape_in_every_mode(name, mode):
    n_in, n_out = {"S": (1, 1), "MS": (3, 1), "M": (3, 3)}[mode]
    args = MODELS.get(name).Args(name=name, **MODEL_ARGS[name])
    model = build_model(args, ModelIO(n_in, n_out, input_len=8, horizon=4, output="horizon"))
    x, y = torch.randn(5, 8, n_in), torch.randn(5, 4, n_out)
    out = model(x, None, y)  # training call, targets given
    assert out.shape == (5, 4, n_out)
    assert torch.isfinite(out).all()
    params = [p for p in model.parameters() if p.requires_grad]
    if params:
        out.square().sum().backward()
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in params)
    model.eval()
    assert model(x).shape == (5, 4, n_out)


def test_naive_baselines_repeat_what_they_should():
    io = ModelIO(2, 2, input_len=6, horizon=5, output="horizon")
    x = torch.arange(12.0).view(1, 6, 2)
    last = build_model(MODELS.get("repeat_last").Args(), io)(x)
    assert last[0].tolist() == [[10.0, 11.0]] * 5
    season = build_model(MODELS.get("seasonal_naive").Args(period=2), io)(x)
    # steps 4, 5, 4, 5, 4 of the window
    assert season[0, :, 0].tolist() == [8.0, 10.0, 8.0, 10.0, 8.0]
    with pytest.raises(ConfigError, match="longer than the window"):
        build_model(MODELS.get("seasonal_naive").Args(period=7), io)


@pytest.mark.parametrize("name", ["forecaster", "segrnn", "linear"])
def test_last_value_norm_makes_forecasts_shift_with_the_level(name):
    args = MODELS.get(name).Args(name=name, **{**MODEL_ARGS[name], "norm": "last"})
    model = build_model(args, ModelIO(2, 2, input_len=8, horizon=4, output="horizon")).eval()
    x = torch.randn(3, 8, 2)
    torch.testing.assert_close(model(x + 100.0), model(x) + 100.0, rtol=1e-5, atol=1e-4)


def test_revin_makes_forecasts_follow_level_and_scale():
    args = MODELS.get("forecaster").Args(name="forecaster", hidden_size=5, norm="revin")
    model = build_model(args, ModelIO(2, 1, input_len=8, horizon=4, output="horizon")).eval()
    x = torch.randn(3, 8, 2)
    torch.testing.assert_close(model(3 * x + 7), 3 * model(x) + 7, rtol=1e-4, atol=1e-4)


def test_seq2seq_teacher_forcing_feeds_targets_in_training_only():
    args = MODELS.get("seq2seq_forecaster").Args(hidden_size=5, teacher_forcing=1.0)
    model = build_model(args, ModelIO(2, 1, input_len=8, horizon=4, output="horizon"))
    x, y = torch.randn(2, 8, 2), torch.randn(2, 4, 1)
    other = y.clone()
    other[:, 1] += 5  # a different true value at step 1 changes the inputs of step 2 on
    out, out_other = model(x, None, y), model(x, None, other)
    torch.testing.assert_close(out[:, :2], out_other[:, :2])
    assert not torch.allclose(out[:, 2:], out_other[:, 2:])
    model.eval()  # scoring: its own forecasts only, the targets are not read
    torch.testing.assert_close(model(x, None, y), model(x, None, other))
    torch.testing.assert_close(model(x, None, y), model(x))


@pytest.mark.parametrize("norm", ["none", "last"])
def test_a_residual_decoder_starts_as_repeat_last_and_learns_the_change(norm):
    args = MODELS.get("seq2seq_forecaster").Args(hidden_size=5, residual=True, norm=norm)
    model = build_model(args, ModelIO(2, 1, input_len=8, horizon=4, output="horizon"))
    x = torch.randn(3, 8, 2)
    torch.testing.assert_close(model.eval()(x), x[:, -1:, :1].expand(-1, 4, -1))
    # a trend: every step one higher; a few steps of training leave repeat-last behind
    t = torch.arange(12.0)
    series = (t + torch.randn(16, 1)).unsqueeze(-1).expand(-1, -1, 2) / 4
    inputs, targets = series[:, :8], series[:, 8:, :1]
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    model.train()
    for _ in range(60):
        opt.zero_grad()
        torch.nn.functional.mse_loss(model(inputs, None, targets), targets).backward()
        opt.step()
    repeat = inputs[:, -1:, :1].expand(-1, 4, -1)
    model.eval()
    learned = torch.nn.functional.mse_loss(model(inputs), targets)
    assert learned < 0.2 * torch.nn.functional.mse_loss(repeat, targets)


def test_forecasters_and_other_models_fit_only_their_tasks():
    with pytest.raises(
        ConfigError, match=r"does not fit this task; models that do: (\w+, )*forecaster,"
    ):
        io = ModelIO(1, 1, None, 8, 4, output="horizon")
        build_model(MODELS.get("many_to_one").Args(name="many_to_one"), io)
    with pytest.raises(ConfigError, match="models that do: many_to_one"):
        build_model(MODELS.get("forecaster").Args(), ModelIO(2, 1))


def test_segment_length_must_divide_window_and_horizon():
    args = MODELS.get("segrnn").Args(hidden_size=4, segment_len=3)
    with pytest.raises(ConfigError, match=r"segment_len 3 does not divide data\.input_len 8"):
        build_model(args, ModelIO(1, 1, input_len=8, horizon=6, output="horizon"))


# -- metrics ------------------------------------------------------------------------------


def test_metrics_in_scaled_and_original_units(tmp_path: Path):
    task = task_for(monthly_csv(tmp_path / "m.csv", n=100), season=12)
    batch = task.dataset("test").__getitems__(list(range(5)))
    output = batch.targets + 0.5  # half a standard deviation too high, everywhere
    sums = task.metrics(output, batch)
    means = task.finish({k: float(s) / float(n) for k, (s, n) in sums.items()})
    std = float(task.scaler.scale[0])
    assert means["mse"] == pytest.approx(0.25) and means["mae"] == pytest.approx(0.5)
    assert means["mae_orig"] == pytest.approx(0.5 * std)
    assert means["rmse_orig"] == pytest.approx(0.5 * std)
    train = task.load_series().values[:60, 0]
    naive = np.abs(train[12:] - train[:-12]).mean()  # in-sample seasonal naive error
    assert means["mase"] == pytest.approx(0.5 * std / naive)
    true = task.scaler.inverse(batch.targets.double(), [0])
    assert means["mape"] == pytest.approx(float((100 * 0.5 * std / true.abs()).mean()))
    pred = true + 0.5 * std
    smape = 200 * 0.5 * std / (pred.abs() + true.abs())
    assert means["smape"] == pytest.approx(float(smape.mean()))


# -- end to end through the CLI ---------------------------------------------------------


@pytest.fixture
def forecast_config(tmp_path: Path) -> Path:
    csv = monthly_csv(tmp_path / "sales.csv", n=90, columns=2)
    config = {
        "task": "forecast",
        "data": {"path": str(csv), "date_column": "month", "target": "c0", "features": ["c1"],
                 "mode": "MS", "input_len": 12, "horizon": 6, "protocol": "counts",
                 "splits": [54, 18, 18], "season": 12, "plot_windows": 3},
        "model": {"name": "forecaster", "cell": "gru", "hidden_size": 8, "norm": "last"},
        "train": {"epochs": 2, "batch_size": 8, "lr": 0.01, "device": "cpu"},
        "output": {"dir": str(tmp_path / "runs"), "name": "sales", "tensorboard": False},
    }  # fmt: skip
    path = tmp_path / "sales.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_train_eval_plot_predict_through_the_cli(forecast_config: Path, tmp_path: Path):
    runner = CliRunner()
    result = runner.invoke(app, ["train", "--config", str(forecast_config)])
    assert result.exit_code == 0, result.output
    run = tmp_path / "runs" / "sales"
    state = json.loads((run / "forecast.json").read_text())
    assert state["columns"] == ["c0", "c1"]
    record = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])
    assert {"val_mse", "val_mae_orig", "val_rmse_orig", "val_mase", "val_smape"} <= set(record)

    (run / "forecast_test.png").unlink()
    result = runner.invoke(app, ["eval", str(run), "--split", "test"])
    assert result.exit_code == 0, result.output
    scores = json.loads((run / "eval_test.json").read_text())
    assert scores["rmse_orig"] == pytest.approx(math.sqrt(scores["mse_orig"]))
    assert (run / "forecast_test.png").read_bytes()[:4] == b"\x89PNG"

    result = runner.invoke(app, ["predict", str(run)])
    assert result.exit_code == 0, result.output
    lines = (run / "forecast.csv").read_text().splitlines()
    assert lines[0] == "date,c0" and len(lines) == 1 + 6
    assert lines[1].startswith("2007-07-01")  # the month after the last row (2007-06)
    digits = [len(line.split(",")[1].lstrip("-0").replace(".", "")) for line in lines[1:]]
    assert max(digits) <= 9, lines  # float32's digits, not 441.8476867675781

    out = tmp_path / "cut.csv"
    args = ["predict", str(run), "--cutoff", "2006-12", "--out", str(out)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    rows = out.read_text().splitlines()
    assert rows[0] == "date,c0,actual_c0" and rows[1].startswith("2007-01-01")

    # the model reads the history of a new file: a copy with one more year
    longer = monthly_csv(tmp_path / "longer.csv", n=102, columns=2)
    result = runner.invoke(
        app, ["predict", str(run), "--data-path", str(longer), "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert out.read_text().splitlines()[1].startswith("2008-07-01")


def test_predict_writes_forecasts_in_the_data_units(forecast_config: Path, tmp_path: Path):
    """repeat_last forecasts the last history row: so the CSV must hold that row's raw
    value of c0 (scaled back), and a cut-off's actual columns the rows that follow it."""
    runner = CliRunner()
    over = ["--set", "model={name: repeat_last}"]
    assert runner.invoke(app, ["train", "--config", str(forecast_config), *over]).exit_code == 0
    raw = [line.split(",") for line in (tmp_path / "sales.csv").read_text().splitlines()[1:]]
    c0 = [float(row[1]) for row in raw]  # 90 months from 2000-01
    run = tmp_path / "runs" / "sales"
    out = tmp_path / "cut.csv"
    for cutoff, last_seen in ((None, 89), ("2006-12", 83)):  # row 84 is 2007-01
        args = ["predict", str(run), "--out", str(out)]
        result = runner.invoke(app, args + (["--cutoff", cutoff] if cutoff else []))
        assert result.exit_code == 0, result.output
        rows = [line.split(",") for line in out.read_text().splitlines()[1:]]
        assert len(rows) == 6
        for row in rows:
            assert float(row[1]) == pytest.approx(c0[last_seen], abs=1e-3)
        if cutoff:
            actual = [float(row[2]) for row in rows]
            assert actual == pytest.approx(c0[last_seen + 1 : last_seen + 7])


def test_baselines_are_scored_without_training(forecast_config: Path, tmp_path: Path):
    naive = ["--set", "model={name: seasonal_naive, period: 12}", "--set", "output.name=naive"]
    result = CliRunner().invoke(app, ["train", "--config", str(forecast_config), *naive])
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "runs" / "naive" / "summary.json").read_text())
    assert summary["steps"] == 0 and summary["test"]["mse"] > 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--cutoff", "1990-01"], "before the first row"),
        (["--cutoff", "2000-03"], "needs 12 rows of history"),
        (["some text"], "predicts from a CSV"),
    ],
)
def test_predict_mistakes_exit_2(forecast_config: Path, tmp_path: Path, args, message):
    runner = CliRunner()
    over = ["--set", "model={name: repeat_last}"]
    assert runner.invoke(app, ["train", "--config", str(forecast_config), *over]).exit_code == 0
    result = runner.invoke(app, ["predict", str(tmp_path / "runs" / "sales"), *args])
    assert result.exit_code == 2
    assert message in result.output


def test_a_broken_data_file_exits_2_naming_the_line(forecast_config: Path, tmp_path: Path):
    csv = tmp_path / "sales.csv"
    lines = csv.read_text().splitlines()
    lines[10] = lines[10].rsplit(",", 1)[0] + ",oops"
    csv.write_text("\n".join(lines) + "\n")
    result = CliRunner().invoke(app, ["train", "--config", str(forecast_config)])
    assert result.exit_code == 2
    assert "sales.csv: line 11, column 'c1': 'oops' is not a number" in result.output


def test_a_missing_file_is_fetched_from_data_url(tmp_path: Path):
    source = monthly_csv(tmp_path / "source.csv", n=100)
    target = tmp_path / "cache" / "copy.csv"
    task = task_for(target, url=source.as_uri())
    assert target.read_bytes() == source.read_bytes()
    assert len(task.dataset("train")) > 0
    with pytest.raises(DataError, match=r"could not be downloaded from file://"):
        task_for(tmp_path / "other.csv", url=(tmp_path / "nowhere.csv").as_uri())
    assert not (tmp_path / "other.csv.part").exists()


# -- quantile forecasts -------------------------------------------------------------------

LEVELS = (0.1, 0.5, 0.9)
RECURRENT = ["forecaster", "seq2seq_forecaster", "segrnn"]


def test_pinball_loss_and_quantile_scores_by_hand(tmp_path: Path):
    task = task_for(monthly_csv(tmp_path / "m.csv", n=100))
    batch = task.dataset("test").__getitems__(list(range(4)))
    offsets = torch.tensor([-1.0, 0.5, 2.0]).expand(4, 4, 1, 3).clone()  # (B, H, C, Q)
    offsets[0, :, :, 0] = 0.25  # window 0: its lowest level is above the truth
    output = QuantileForecast(batch.targets.unsqueeze(-1) + offsets, LEVELS)
    # q * (y - f) above the forecast, (1 - q) * (f - y) below, averaged over the levels
    inside = (0.1 * 1 + 0.5 * 0.5 + 0.1 * 2) / 3
    above = (0.9 * 0.25 + 0.5 * 0.5 + 0.1 * 2) / 3
    expected = 0.75 * inside + 0.25 * above
    assert float(task.loss(output, batch)) == pytest.approx(expected, rel=1e-6)
    sums = task.metrics(output, batch)
    means = task.finish({k: float(s) / float(n) for k, (s, n) in sums.items()})
    assert means["pinball"] == pytest.approx(expected, rel=1e-5)  # standard scaler: same units
    assert means["mse"] == pytest.approx(0.25)  # point scores: of the median, 0.5 too high
    assert means["mae_orig"] == pytest.approx(0.5 * float(task.scaler.scale[0]))
    assert means["coverage"] == pytest.approx(75.0) and means["nominal"] == pytest.approx(80.0)
    assert means["coverage_error"] == pytest.approx(5.0)
    assert means["interval_width"] == pytest.approx(0.75 * 3 + 0.25 * 1.75)


def test_the_pinball_loss_is_least_at_the_true_quantile():
    y = torch.randn(20_000, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    grid = torch.linspace(-2, 2, 401, dtype=torch.float64)
    for q in LEVELS:
        losses = torch.stack([pinball(f.view(1, 1), y, (q,)).mean() for f in grid])
        true = float(torch.distributions.Normal(0.0, 1.0).icdf(torch.tensor(q)))
        assert float(grid[losses.argmin()]) == pytest.approx(true, abs=0.05), q
        for step, sign in ((-0.2, -1), (0.2, 1)):  # below the quantile: raise f, above: lower
            f = torch.tensor([[true + step]], dtype=torch.float64, requires_grad=True)
            pinball(f, y, (q,)).mean().backward()
            assert f.grad is not None and math.copysign(1, float(f.grad)) == sign


@pytest.mark.parametrize("norm", ["last", "revin"])
@pytest.mark.parametrize("name", RECURRENT)
def test_quantile_forecasters_shape_order_and_norm_on_every_level(name, norm):
    args = MODELS.get(name).Args(name=name, **{**MODEL_ARGS[name], "norm": norm},
                                 quantiles=list(LEVELS))  # fmt: skip
    model = build_model(args, ModelIO(3, 2, input_len=8, horizon=4, output="horizon"))
    x, y = torch.randn(5, 8, 3), torch.randn(5, 4, 2)
    out = model(x, None, y)
    assert isinstance(out, QuantileForecast) and out.levels == LEVELS
    assert out.values.shape == (5, 4, 2, 3)
    pinball(out.values, y, out.levels).mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())
    model.eval()
    assert (model(x).values.diff(dim=-1) >= 0).all()
    if norm == "last":  # a constant added to the window shifts every level by it
        torch.testing.assert_close(model(x + 100.0).values, model(x).values + 100.0,
                                   rtol=1e-5, atol=1e-4)  # fmt: skip
    else:  # revin: every level follows the window's level and scale
        torch.testing.assert_close(model(3 * x + 7).values, 3 * model(x).values + 7,
                                   rtol=1e-4, atol=1e-4)  # fmt: skip


def test_quantiles_never_cross_even_when_the_head_would_cross_them():
    args = MODELS.get("forecaster").Args(hidden_size=4, quantiles=list(LEVELS))
    model = build_model(args, ModelIO(1, 1, input_len=8, horizon=2, output="horizon")).eval()
    with torch.no_grad():  # the head says 3, 2, 1 for levels 0.1, 0.5, 0.9
        model.head.weight.zero_()
        model.head.bias.copy_(torch.tensor([3.0, 2.0, 1.0]).repeat(2))
    out = model(torch.randn(2, 8, 1))
    assert out.values.tolist() == [[[[1.0, 2.0, 3.0]]] * 2] * 2
    assert out.median.tolist() == [[[2.0]] * 2] * 2


def test_seq2seq_feeds_back_the_median():
    args = MODELS.get("seq2seq_forecaster").Args(hidden_size=5, quantiles=[0.2, 0.45, 0.8])
    model = build_model(args, ModelIO(2, 2, input_len=8, horizon=3, output="horizon")).eval()
    fed: list[Tensor] = []
    step = model.decoder.step

    def recording(x, state):
        fed.append(x)
        return step(x, state)

    model.decoder.step = recording
    out = model(torch.randn(4, 8, 2))
    assert len(fed) == 3
    for t in (1, 2):  # norm none: the forecast is in the model's space as it is fed
        torch.testing.assert_close(fed[t], out.values[:, t - 1, :, 1])


@pytest.mark.parametrize("levels", ["[0.9, 0.1]", "[0, 0.5]", "[0.5]", "[0.1, 1.2]"])
def test_bad_quantile_levels_exit_2_naming_the_key(forecast_config: Path, tmp_path: Path, levels):
    args = ["train", "--config", str(forecast_config), "--set", f"model.quantiles={levels}"]
    assert_user_error(CliRunner().invoke(app, args), "model.quantiles")
    assert not (tmp_path / "runs").exists()


def test_quantile_forecaster_through_the_cli(forecast_config: Path, tmp_path: Path, monkeypatch):
    from matplotlib.axes import Axes

    bands: list[int] = []
    fill = Axes.fill_between

    def recording(ax, x, *args, **kwargs):
        bands.append(len(x))
        return fill(ax, x, *args, **kwargs)

    monkeypatch.setattr(Axes, "fill_between", recording)
    runner = CliRunner()
    args = ["train", "--config", str(forecast_config), "--set", "model.quantiles=[0.1,0.5,0.9]"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    run = tmp_path / "runs" / "sales"
    record = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])
    assert {"val_pinball", "val_coverage", "val_interval_width", "val_mse"} <= set(record)
    test = json.loads((run / "summary.json").read_text())["test"]
    assert 0 <= test["coverage"] <= 100 and test["pinball"] > 0
    assert test["nominal"] == pytest.approx(80)
    [line] = [line for line in result.output.splitlines() if line.startswith("test ")]
    assert " coverage " in line and " nominal 80" in line
    assert bands == [6] * 3  # the test plot: one band per window drawn, over the horizon
    assert (run / "forecast_test.png").read_bytes()[:4] == b"\x89PNG"

    out = tmp_path / "cut.csv"
    result = runner.invoke(app, ["predict", str(run), "--cutoff", "2006-12", "--out", str(out)])
    assert result.exit_code == 0, result.output
    header, *rows = out.read_text().splitlines()
    assert header == "date,c0,c0_q0.1,c0_q0.9,actual_c0" and len(rows) == 6
    for row in rows:
        median, low, high = (float(v) for v in row.split(",")[1:4])
        assert low <= median <= high

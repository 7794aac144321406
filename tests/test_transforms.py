"""Per-column transformations (data.transform): fitted on train, undone on every score."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from scipy import stats
from typer.testing import CliRunner

from rnnzoo.cli import app
from rnnzoo.config import parse_config
from rnnzoo.data.timeseries import DataError
from rnnzoo.data.transforms import Step, Transform
from rnnzoo.errors import ConfigError
from rnnzoo.tasks import ForecastTask


def growing_csv(path: Path, n: int = 96, zero_at: int | None = None) -> Path:
    """A positive monthly series whose season grows with its level (the airline shape)."""
    rng = np.random.default_rng(0)
    t = np.arange(n)
    y = (50 + 3 * t) * (1 + 0.25 * np.sin(2 * np.pi * t / 12)) * np.exp(rng.normal(0, 0.03, n))
    if zero_at is not None:
        y[zero_at] = 0.0
    months = np.arange("2000-01", n, dtype="datetime64[M]")[:n]
    rows = [f"{m},{v:.4f},{v / 2 + 1:.4f}" for m, v in zip(months, y, strict=True)]
    path.write_text("month,y,z\n" + "\n".join(rows) + "\n")
    return path


def task_for(csv: Path, transform, **data) -> ForecastTask:
    config = {
        "task": "forecast",
        "data": {"path": str(csv), "date_column": "month", "target": "y", "input_len": 24,
                 "horizon": 6, "protocol": "counts", "splits": [48, 24, 24], "season": 12,
                 "transform": transform, **data},
        "model": {"name": "repeat_last"},
    }  # fmt: skip
    task = ForecastTask(parse_config(config).data)
    task.prepare()
    return task


CHAINS = [["log"], ["log1p"], ["box_cox"], ["difference"], [{"difference": 12}],
          ["log", "difference", {"difference": 12}], ["box_cox", {"difference": 12}]]  # fmt: skip


@pytest.mark.parametrize("chain", CHAINS, ids=str)
def test_the_true_future_in_model_space_inverts_to_the_true_values(tmp_path: Path, chain):
    """An oracle forecast (the targets themselves, in model space) scores exactly zero in
    original units: the inverse uses each window's own history, never the future."""
    task = task_for(growing_csv(tmp_path / "g.csv"), chain)
    data = task.dataset("test")
    batch = data.__getitems__(list(range(len(data))))
    pred, true = task.originals(batch.targets.double(), batch)
    raw = task.load_series().values[:, 0]
    rows = data.starts[:, None] + torch.arange(24, 30)
    np.testing.assert_allclose(true[..., 0].numpy(), raw[rows.numpy()])
    np.testing.assert_allclose(pred.numpy(), true.numpy(), rtol=1e-5)
    sums = task.metrics(batch.targets, batch)  # float32 model-space targets: ~0 error
    assert float(sums["mse_orig"][0]) < 1e-3


def test_a_difference_is_undone_from_the_last_observed_season():
    step = Step("difference", lag=3)
    history = torch.tensor([[1.0, 2.0, 3.0, 10.0, 20.0, 30.0]])
    diffs = torch.tensor([[1.0, 1.0, 1.0, 2.0, 2.0]])
    # each step adds its difference to the value three steps earlier
    assert step.inverse(diffs, history).tolist() == [[11.0, 21.0, 31.0, 13.0, 23.0]]


def test_box_cox_lam_is_fitted_on_the_training_rows_only(tmp_path: Path):
    csv = growing_csv(tmp_path / "g.csv")
    task = task_for(csv, ["box_cox"])
    train = task.load_series().values[:48, 0]
    assert task.transform.chains[0][0].lam == pytest.approx(stats.boxcox(train)[1])
    lines = csv.read_text().splitlines()  # multiply the test rows: lam stays
    for i in range(len(lines) - 24, len(lines)):
        month, y, z = lines[i].split(",")
        lines[i] = f"{month},{float(y) * 50:.4f},{z}"
    csv.write_text("\n".join(lines) + "\n")
    assert task_for(csv, ["box_cox"]).transform.chains[0][0].lam == task.transform.chains[0][0].lam


def test_the_scaler_is_fitted_in_model_space_and_scores_in_original_units(tmp_path: Path):
    task = task_for(growing_csv(tmp_path / "g.csv"), ["log", "difference"])
    train = task.load_series().values[:48, 0]
    np.testing.assert_allclose(task.scaler.shift[0], np.diff(np.log(train)).mean())
    np.testing.assert_allclose(task.report_scale[0], train.std())
    data = task.dataset("test")
    batch = data.__getitems__(list(range(len(data))))
    sums = task.metrics(batch.targets.double() + 0.1, batch)  # a wrong forecast
    pred, true = task.originals(batch.targets.double() + 0.1, batch)
    err = (pred - true) / train.std()
    assert float(sums["mse"][0] / sums["mse"][1]) == pytest.approx(float(err.square().mean()))


def test_per_column_chains_and_windows_start_after_the_lost_rows(tmp_path: Path):
    task = task_for(
        growing_csv(tmp_path / "g.csv"), {"z": ["log"], "y": [{"difference": 12}]},
        mode="MS", features=["z"],
    )  # fmt: skip
    assert [[s.kind for s in c] for c in task.transform.chains] == [["difference"], ["log"]]
    assert int(task.dataset("train").starts.min()) == 12  # 12 rows have no difference
    assert not task.dataset("train").values.isnan()[12:].any()


@pytest.mark.parametrize(
    ("transform", "error", "message"),
    [
        (["log"], DataError, "column 'y', row 30: 0 is not positive"),
        (["log1p", "box_cox"], DataError, "row 30: 0 is not positive"),
        ({"w": ["log"]}, DataError, "names 'w', not a column"),
        ([{"difference": 30}], ConfigError, "more than the window"),
    ],
)
def test_transform_mistakes_are_named(tmp_path: Path, transform, error, message):
    with pytest.raises(error, match=message):
        task_for(growing_csv(tmp_path / "g.csv", zero_at=30), transform)


@pytest.mark.parametrize("bad", [["sqrt"], [{"difference": 0}], [{"lag": 2}]], ids=str)
def test_a_bad_step_exits_2_naming_data_transform(tmp_path: Path, bad):
    config = yaml.safe_dump(run_config(tmp_path, bad))
    (tmp_path / "c.yaml").write_text(config)
    result = CliRunner().invoke(app, ["train", "--config", str(tmp_path / "c.yaml")])
    assert result.exit_code == 2 and "data.transform" in result.output, result.output
    assert "Traceback" not in result.output and not (tmp_path / "runs").exists()


def run_config(tmp_path: Path, transform) -> dict:
    return {
        "task": "forecast",
        "data": {"path": str(growing_csv(tmp_path / "g.csv")), "date_column": "month",
                 "target": "y", "input_len": 24, "horizon": 6, "protocol": "counts",
                 "splits": [48, 24, 24], "season": 12, "transform": transform},
        "model": {"name": "forecaster", "cell": "gru", "hidden_size": 8},
        "train": {"epochs": 2, "batch_size": 8, "lr": 0.01, "device": "cpu"},
        "output": {"dir": str(tmp_path / "runs"), "name": "t", "tensorboard": False},
    }  # fmt: skip


def test_a_transformed_run_trains_evaluates_and_predicts_in_original_units(tmp_path: Path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(run_config(tmp_path, ["log", "difference"])))
    runner = CliRunner()
    assert runner.invoke(app, ["train", "--config", str(path)]).exit_code == 0
    run = tmp_path / "runs" / "t"
    state = json.loads((run / "forecast.json").read_text())
    assert [s["kind"] for s in state["transform"][0]] == ["log", "difference"]
    result = runner.invoke(app, ["eval", str(run), "--split", "test"])
    assert result.exit_code == 0, result.output
    scores = json.loads((run / "eval_test.json").read_text())
    assert scores["rmse_orig"] == pytest.approx(math.sqrt(scores["mse_orig"]))
    out = tmp_path / "f.csv"
    result = runner.invoke(app, ["predict", str(run), "--cutoff", "2006-12", "--out", str(out)])
    assert result.exit_code == 0, result.output
    rows = [line.split(",") for line in out.read_text().splitlines()[1:]]
    forecast, actual = (np.array([float(r[i]) for r in rows]) for i in (1, 2))
    # in original units: the forecasts are at the level of the truth, not near 0
    assert np.all(forecast > 0) and np.abs(forecast / actual - 1).max() < 0.5


def test_repeat_last_on_differences_is_the_drift_forecast(tmp_path: Path):
    """repeat_last over a differenced series repeats the last step: y_L + h * (y_L - y_L-1)."""
    task = task_for(growing_csv(tmp_path / "g.csv"), ["difference"])
    data = task.dataset("test")
    batch = data.__getitems__(list(range(len(data))))
    model_out = batch.inputs[:, -1:, :1].expand(-1, 6, -1)
    pred, _ = task.originals(model_out, batch)
    raw = task.load_series().values[:, 0]
    last = data.starts + 23
    drift = raw[last][:, None] + np.arange(1, 7) * (raw[last] - raw[last - 1])[:, None]
    np.testing.assert_allclose(pred[..., 0].numpy(), drift, rtol=1e-5)


def test_runs_from_before_transforms_still_load(tmp_path: Path):
    task = task_for(growing_csv(tmp_path / "g.csv"), [])
    task.save_state(tmp_path)
    state = json.loads((tmp_path / "forecast.json").read_text())
    del state["transform"], state["report_scale"]
    (tmp_path / "forecast.json").write_text(json.dumps(state))
    old = ForecastTask(task.data)
    old.load_state(tmp_path)
    assert old.transform.identity and np.allclose(old.report_scale, task.scaler.scale)


def test_transform_round_trip_on_a_whole_series():
    x = np.exp(np.random.default_rng(1).normal(3, 0.5, (40, 1)))
    t = Transform([[Step("log"), Step("difference", lag=4)]])
    t.fit(x[:30], ["x"], "mem")
    y = torch.as_tensor(t.apply(x, ["x"], "mem"))
    back = t.inverse(y[None, 20:, :], torch.as_tensor(x[None, :20]))
    np.testing.assert_allclose(back[0].numpy(), x[20:])


def test_quantile_levels_are_undone_through_the_transform(tmp_path: Path):
    """Each level goes back through log and the scaler like the point forecast does."""
    from rnnzoo.tasks.base import QuantileForecast

    task = task_for(growing_csv(tmp_path / "g.csv"), ["log"])
    data = task.dataset("test")
    batch = data.__getitems__(list(range(len(data))))
    offsets = torch.tensor([-0.5, 0.0, 0.5], dtype=torch.float64)
    values = batch.targets.double()[..., None] + offsets  # (B, H, 1, 3)
    sums = task.metrics(QuantileForecast(values, (0.1, 0.5, 0.9)), batch)
    assert float(sums["coverage"][0] / sums["coverage"][1]) == pytest.approx(100)
    assert float(sums["mse_orig"][0]) < 1e-3  # the median is the truth
    true = batch.context[:, 24:, 0].double()
    scaled_log_sd = float(task.scaler.scale[0])
    low, high = true * math.exp(-0.5 * scaled_log_sd), true * math.exp(0.5 * scaled_log_sd)
    width = float(((high - low) / task.report_scale[0]).mean())
    got = float(sums["interval_width"][0] / sums["interval_width"][1])
    assert got == pytest.approx(width, rel=1e-4)

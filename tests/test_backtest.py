"""Rolling-origin backtests: errors per lead against a hand computation, eval's overall
numbers, fine-tuning that changes the forecasts but never the run and never sees a row
at or after its origin, and files written only when everything succeeded."""

from __future__ import annotations

import errno
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from typer.testing import CliRunner

from rnnzoo import backtest as backtest_module
from rnnzoo import run_folder, runs
from rnnzoo.backtest import Backtest, BacktestRequest
from rnnzoo.cli import app
from rnnzoo.config import TrainConfig
from rnnzoo.tasks import ForecastTask

runner = CliRunner()

L, H = 6, 4  # input_len, horizon
TRAIN, VAL, TEST = 30, 10, 20  # data.splits as row counts: test is rows 40-59
# every test window's origin, its first forecast row: 40..56
ORIGINS = list(range(TRAIN + VAL, TRAIN + VAL + TEST - H + 1))


def write_csv(path: Path, values: np.ndarray) -> None:
    """``values`` (N, C) as columns x, y, ... of a CSV, a row number before them."""
    names = "xyz"[: values.shape[1]]
    lines = ["t," + ",".join(names)]
    lines += [f"{i}," + ",".join(f"{v:.6f}" for v in row) for i, row in enumerate(values)]
    path.write_text("\n".join(lines) + "\n")


def random_walk(n: int = 60, columns: int = 2, seed: int = 0) -> np.ndarray:
    steps = np.random.default_rng(seed).normal(size=(n, columns))
    return 50 + np.cumsum(steps, axis=0)


def train(root: Path, csv: Path, name: str, model: dict, **data) -> Path:
    config = {
        "task": "forecast",
        "data": {"path": str(csv), "target": "x", "features": ["y"], "mode": "M",
                 "input_len": L, "horizon": H, "protocol": "counts",
                 "splits": [TRAIN, VAL, TEST], "season": 1, "plot_windows": 1, **data},
        "model": model,
        # a batch holds every window: each fine-tuning step trains on its whole pool
        "train": {"epochs": 1, "batch_size": 64, "lr": 0.01, "seed": 0, "device": "cpu"},
        "output": {"dir": str(root / "runs"), "name": name, "tensorboard": False},
    }  # fmt: skip
    path = root / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    result = runner.invoke(app, ["train", "--config", str(path)])
    assert result.exit_code == 0, result.output
    return root / "runs" / name


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict[str, Path]:
    """Runs trained once, on a two-column random walk (and a straight line)."""
    root = tmp_path_factory.mktemp("backtest")
    walk = root / "walk.csv"
    write_csv(walk, random_walk())
    line = root / "line.csv"
    write_csv(line, 100 + 3.0 * np.arange(60)[:, None])  # x_t = 100 + 3t
    # trainable and quick: fine-tuning is the same for any model with parameters
    linear = {"name": "linear", "norm": "last"}
    naive = {"name": "seasonal_naive", "period": 3}
    line_data = {"features": [], "mode": "S"}
    return {
        "seasonal_naive": train(root, walk, "seasonal_naive", naive),
        "line": train(root, line, "line", {"name": "repeat_last"}, **line_data),
        "linear": train(root, walk, "linear", linear),
        # on differences, repeat-last is the drift forecast: exact on a line
        "line_diff": train(
            root, line, "line_diff", {"name": "repeat_last"}, transform=["difference"],
            **line_data,
        ),
        "quantiles": train(
            root, walk, "quantiles",
            {"name": "forecaster", "cell": "gru", "hidden_size": 4, "quantiles": [0.1, 0.5, 0.9]},
        ),
    }  # fmt: skip


@pytest.fixture
def copy_of(trained: dict[str, Path], tmp_path: Path):
    """A fresh copy of a trained run, free to write into."""

    def copy(name: str) -> Path:
        return Path(shutil.copytree(trained[name], tmp_path / name))

    return copy


def snapshot(root: Path) -> dict[str, bytes | None]:
    return {
        str(p.relative_to(root)): (p.read_bytes() if p.is_file() else None)
        for p in sorted(root.rglob("*"))
    }


def csv_values(run: Path) -> np.ndarray:
    """The values of the CSV a run was trained on, as rnnzoo reads them: (N, C)."""
    config = yaml.safe_load((run / "config.yaml").read_text())
    values = np.loadtxt(config["data"]["path"], delimiter=",", skiprows=1, ndmin=2)
    return values[:, 1:]


# -- errors per lead ----------------------------------------------------------------------


def test_errors_per_lead_are_the_hand_computed_ones(copy_of):
    run, period = copy_of("seasonal_naive"), 3
    result = runner.invoke(app, ["eval", str(run), "--backtest"])
    assert result.exit_code == 0, result.output
    assert "refitted at every origin" in result.output
    report = json.loads((run / "backtest_test.json").read_text())

    # By hand, from the CSV: the naive forecast at lead h (1..H) from origin o repeats
    # row o - period + (h - 1) % period; the truth is row o + h - 1.
    values = csv_values(run)
    origins = np.array(ORIGINS)
    lead = np.arange(H)
    pred = values[origins[:, None] - period + lead % period]  # (N, H, C)
    true = values[origins[:, None] + lead]
    err = pred - true
    train_rows = values[:TRAIN]
    std = train_rows.std(axis=0)  # the standard scaler, fitted on train
    naive = np.abs(np.diff(train_rows, axis=0)).mean(axis=0)  # MASE's scale, season 1
    expected = {
        "mae_orig": np.abs(err).mean(axis=(0, 2)),
        "rmse_orig": np.sqrt((err**2).mean(axis=(0, 2))),
        "mase": (np.abs(err) / naive).mean(axis=(0, 2)),
        "mse": ((err / std) ** 2).mean(axis=(0, 2)),
        "mae": (np.abs(err) / std).mean(axis=(0, 2)),
    }
    assert report["per_lead"]["lead"] == [1, 2, 3, 4]
    for metric, by_lead in expected.items():
        np.testing.assert_allclose(report["per_lead"][metric], by_lead, rtol=1e-5)
    assert report["origins"] == len(ORIGINS) == 17
    assert (report["first_origin"], report["last_origin"]) == ("40", "56")
    assert report["refit"] == "every_origin" and report["fine_tune"] is None

    # the overall numbers are rnnzoo eval's on the same split
    result = runner.invoke(app, ["eval", str(run), "--split", "test"])
    assert result.exit_code == 0, result.output
    scores = json.loads((run / "eval_test.json").read_text())
    for metric in expected:
        assert report["overall"][metric] == pytest.approx(scores[metric], rel=1e-9), metric
    assert report["overall"]["rmse_orig"] == pytest.approx(math.sqrt((err**2).mean()), rel=1e-5)


def test_the_naive_error_grows_with_lead_on_a_trend(copy_of):
    """repeat_last on x_t = 100 + 3t misses by exactly 3h at lead h: MAE = RMSE = 3h,
    MASE = h (the training rows' one-step change is 3), and the table shows each lead."""
    run = copy_of("line")
    result = runner.invoke(app, ["backtest", str(run)])
    assert result.exit_code == 0, result.output
    report = json.loads((run / "backtest_test.json").read_text())
    leads = np.arange(1, H + 1)
    np.testing.assert_allclose(report["per_lead"]["mae_orig"], 3.0 * leads, rtol=1e-4)
    np.testing.assert_allclose(report["per_lead"]["rmse_orig"], 3.0 * leads, rtol=1e-4)
    np.testing.assert_allclose(report["per_lead"]["mase"], leads, rtol=1e-4)
    rows = [line.split() for line in result.output.splitlines()]
    table = {row[0]: row[1:] for row in rows if row and row[0] in ("1", "2", "3", "4", "all")}
    assert [float(table[str(h)][0]) for h in leads] == pytest.approx(3.0 * leads, rel=1e-3)
    assert float(table["all"][0]) == pytest.approx(7.5, rel=1e-3)  # the mean of 3, 6, 9, 12
    assert (run / "backtest_test.png").read_bytes()[:4] == b"\x89PNG"


def test_a_long_horizon_shows_a_dozen_leads_and_the_overall():
    n, horizon = 3, 96
    per_lead = {m: [float(h) for h in range(1, horizon + 1)] for m in backtest_module.METRICS}
    request = BacktestRequest(Path("run"), "segrnn", TrainConfig(), torch.device("cpu"))
    result = Backtest(
        request, np.arange(n), ["a", "b", "c"], ["x"], np.zeros((n, horizon, 1)),
        np.zeros((n, horizon, 1)), per_lead, dict.fromkeys(backtest_module.METRICS, 48.5),
        "none", 0,
    )  # fmt: skip
    rows = [line.split() for line in result.table()]
    shown = [row for row in rows if row and row[0].isdigit()]  # lead, then its METRICS
    leads = [int(row[0]) for row in shown]
    assert len(leads) == 12 and leads[0] == 1 and leads[-1] == horizon
    assert [float(row[1]) for row in shown] == leads  # each lead's own row of values
    assert ["all", *["48.5"] * 5] in rows
    assert "(leads shown: 12 of 96; all in JSON)" in result.table()
    assert len(result.to_json()["per_lead"]["mase"]) == horizon


def test_a_backtest_on_validation(copy_of):
    run = copy_of("seasonal_naive")
    result = runner.invoke(app, ["eval", str(run), "--backtest", "--split", "val"])
    assert result.exit_code == 0, result.output
    report = json.loads((run / "backtest_val.json").read_text())
    assert report["split"] == "val" and report["origins"] == VAL - H + 1
    assert report["origin_rows"] == [TRAIN, TRAIN + VAL - H]
    assert not (run / "backtest_test.json").exists()


# -- fine-tuning ------------------------------------------------------------------------


def test_fine_tuning_changes_the_forecasts_and_never_the_run(copy_of):
    run = copy_of("linear")
    result = runner.invoke(app, ["backtest", str(run)])
    assert result.exit_code == 0, result.output
    assert "not refitted" in result.output
    frozen = json.loads((run / "backtest_test.json").read_text())
    before = snapshot(run)
    args = ["eval", str(run), "--backtest", "--fine-tune-steps", "2", "--refit-every", "6"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    tuned = json.loads((run / "backtest_test.json").read_text())
    assert tuned["refit"] == "fine_tune" and frozen["refit"] == "none"
    assert tuned["fine_tune"]["steps"] == 2 and tuned["fine_tune"]["refit_every"] == 6
    assert tuned["fine_tune"]["refits"] == 3  # at origins 0, 6 and 12 of 17
    assert tuned["fine_tune"]["lr"] == 0.01  # the run's train.lr
    assert not np.allclose(tuned["per_lead"]["mae_orig"], frozen["per_lead"]["mae_orig"])
    after = snapshot(run)
    assert set(after) == set(before)  # the same files: nothing added but a new JSON, PNG
    changed = sorted(name for name in before if before[name] != after[name])
    assert changed == ["backtest_test.json", "backtest_test.png"]  # checkpoints untouched


def test_fine_tuning_sees_no_row_at_or_after_its_origin(copy_of, tmp_path: Path):
    """The same backtest on a copy of the data whose rows from 48 on are absurd: every
    forecast from an origin up to 48 must be exactly the same (a refit that trained on
    a window reaching row 48 or later would differ), the later ones not."""
    run = copy_of("linear")
    values = csv_values(run)
    changed = values.copy()
    changed[48:] += 1000.0
    other = tmp_path / "changed.csv"
    write_csv(other, changed)
    # Refits at 40, 44, 48, 52, 56; three steps, as Adam's first is lr * sign(gradient)
    # and would not show how far off a leaked window is.
    settings = {"fine_tune_steps": 3, "refit_every": 4}
    same = runs.backtest(run, **settings)
    moved = runs.backtest(run, data_path=other, **settings)
    upto = np.array(ORIGINS) <= 48
    np.testing.assert_array_equal(same.forecast[upto], moved.forecast[upto])
    assert not np.allclose(same.truth[upto], moved.truth[upto])  # their truth did change
    assert np.abs(same.forecast[~upto] - moved.forecast[~upto]).min() > 1.0


def test_each_refit_trains_on_every_window_before_its_origin(copy_of, monkeypatch):
    """The windows each refit is given: all whose targets end before the origin (train,
    val and the test rows already seen), none later; the model handed in is a copy's
    source, left as the checkpoint has it."""
    run = copy_of("linear")
    config, task, model = runs.load_run(run)
    made: list[torch.Tensor] = []
    pools: dict[int, torch.Tensor] = {}
    windows, fine_tune = ForecastTask.windows, backtest_module.fine_tune

    def spy_windows(self, starts):
        made.append(starts.clone())
        return windows(self, starts)

    def spy_fine_tune(task, model, origin, steps, request):
        first = len(made)
        tuned = fine_tune(task, model, origin, steps, request)
        pools[origin] = torch.cat(made[first:])
        return tuned

    monkeypatch.setattr(ForecastTask, "windows", spy_windows)
    monkeypatch.setattr(backtest_module, "fine_tune", spy_fine_tune)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    request = BacktestRequest(
        run, "linear", config.train, torch.device("cpu"), fine_tune_steps=1, refit_every=3
    )
    result = task.backtest(model, request)
    assert sorted(pools) == ORIGINS[::3]
    for origin, starts in pools.items():
        assert starts.tolist() == list(range(0, origin - L - H + 1)), origin
    assert result.refits == len(ORIGINS[::3])
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, state[key], rtol=0, atol=0)


# -- files -------------------------------------------------------------------------------


def test_a_failure_before_writing_leaves_the_run_unchanged(copy_of, monkeypatch):
    run = copy_of("seasonal_naive")
    before = snapshot(run)

    def broken(self: Backtest) -> bytes:
        raise RuntimeError("matplotlib is broken")

    monkeypatch.setattr(Backtest, "figure", broken)
    result = runner.invoke(app, ["eval", str(run), "--backtest"])
    assert result.exit_code == 1 and "matplotlib is broken" in result.output
    assert snapshot(run) == before


def test_an_eval_whose_figure_fails_writes_no_scores(copy_of, monkeypatch):
    """eval's scores and its figure land together or not at all (the val split, so
    eval_val.json would be a new file)."""
    run = copy_of("seasonal_naive")
    before = snapshot(run)

    def broken(fig) -> bytes:
        raise RuntimeError("matplotlib is broken")

    monkeypatch.setattr(run_folder, "png_bytes", broken)
    result = runner.invoke(app, ["eval", str(run), "--split", "val"])
    assert result.exit_code == 1 and "matplotlib is broken" in result.output
    assert snapshot(run) == before
    monkeypatch.undo()
    result = runner.invoke(app, ["eval", str(run), "--split", "val"])
    assert result.exit_code == 0, result.output
    assert {"eval_val.json", "forecast_val.png"} <= set(snapshot(run)) - set(before)


def test_a_disk_full_while_writing_leaves_the_run_unchanged(copy_of, monkeypatch):
    """The second file fails to reach the disk: the first is not renamed into place."""
    run = copy_of("seasonal_naive")
    before = snapshot(run)
    calls = []
    fsync = run_folder.os.fsync

    def full(fd: int) -> None:
        calls.append(fd)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        fsync(fd)

    monkeypatch.setattr(run_folder.os, "fsync", full)
    result = runner.invoke(app, ["backtest", str(run)])
    assert result.exit_code == 2 and "no space left" in result.output, result.output
    assert len(result.output.strip().splitlines()) == 2  # error: and help:
    assert snapshot(run) == before


def test_a_transformed_run_is_backtested_in_original_units(copy_of):
    run = copy_of("line_diff")
    result = runner.invoke(app, ["backtest", str(run)])
    assert result.exit_code == 0, result.output
    scores = json.loads((run / "backtest_test.json").read_text())
    text = json.dumps(scores)
    assert scores["overall"]["rmse_orig"] == pytest.approx(0, abs=1e-6), text


def test_a_quantile_run_is_backtested_on_its_median(copy_of):
    run = copy_of("quantiles")
    assert runner.invoke(app, ["eval", str(run), "--split", "test"]).exit_code == 0
    result = runner.invoke(app, ["backtest", str(run)])
    assert result.exit_code == 0, result.output
    overall = json.loads((run / "backtest_test.json").read_text())["overall"]
    expected = json.loads((run / "eval_test.json").read_text())
    assert overall["rmse_orig"] == pytest.approx(expected["rmse_orig"], rel=1e-6)

"""model: {name: ensemble, runs: [...]}: the mean of trained forecasting runs, frozen."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from typer.testing import CliRunner

from rnnzoo.cli import app
from rnnzoo.config import parse_config
from rnnzoo.models import build_model
from rnnzoo.tasks import ForecastTask

runner = CliRunner()


def config(tmp_path: Path, name: str, model: dict, **data) -> Path:
    rows = [f"{i},{100 + i + 10 * ((i % 12) > 5):.1f}" for i in range(90)]
    csv = tmp_path / "s.csv"
    csv.write_text("t,x\n" + "\n".join(rows) + "\n")
    body = {
        "task": "forecast",
        "data": {"path": str(csv), "target": "x", "input_len": 12, "horizon": 3,
                 "protocol": "counts", "splits": [54, 18, 18], "plot_windows": 1, **data},
        "model": model,
        "train": {"epochs": 2, "batch_size": 8, "lr": 0.01, "device": "cpu"},
        "output": {"dir": str(tmp_path / "runs"), "name": name, "tensorboard": False},
    }  # fmt: skip
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(body))
    return path


@pytest.fixture(scope="module")
def members(tmp_path_factory) -> tuple[Path, list[Path]]:
    root = tmp_path_factory.mktemp("ensemble")
    runs = []
    for seed in (0, 1):
        path = config(root, f"m{seed}", {"name": "forecaster", "cell": "gru", "hidden_size": 4})
        result = runner.invoke(app, ["train", "-c", str(path), "--set", f"train.seed={seed}"])
        assert result.exit_code == 0, result.output
        runs.append(root / "runs" / f"m{seed}")
    return root, runs


def rebuilt(run: Path) -> torch.nn.Module:
    cfg = parse_config(yaml.safe_load((run / "config.yaml").read_text()))
    model = build_model(cfg.model, ForecastTask(cfg.data).io)
    state = torch.load(run / "checkpoints" / "best.pt", weights_only=True)
    model.load_state_dict(state["model"])
    return model.eval()


def test_the_ensemble_forecast_is_the_mean_of_its_members(members, tmp_path: Path):
    _, runs = members
    raw = yaml.safe_load((runs[0] / "config.yaml").read_text())
    cfg = parse_config({**raw, "model": {"name": "ensemble", "runs": [str(r) for r in runs]}})
    ensemble = build_model(cfg.model, ForecastTask(cfg.data).io)
    x = torch.randn(5, 12, 1)
    expected = (rebuilt(runs[0])(x) + rebuilt(runs[1])(x)) / 2
    torch.testing.assert_close(ensemble.train()(x), expected)  # frozen members: eval always
    assert not any(p.requires_grad for p in ensemble.parameters())


def test_an_ensemble_run_is_scored_and_evaluates_from_its_folder(members, tmp_path: Path):
    root, runs = members
    path = config(root, "ens", {"name": "ensemble", "runs": [str(r) for r in runs]})
    result = runner.invoke(app, ["train", "-c", str(path)])
    assert result.exit_code == 0, result.output
    summary = json.loads((root / "runs" / "ens" / "summary.json").read_text())
    assert summary["steps"] == 0
    tests = [json.loads((r / "summary.json").read_text())["test"]["mse"] for r in runs]
    assert summary["test"]["mse"] != tests[0] and summary["test"]["mse"] != tests[1]
    result = runner.invoke(app, ["eval", str(root / "runs" / "ens"), "--split", "test"])
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize(
    ("members_of", "data", "message"),
    [
        (lambda runs: [str(runs[0]), "/no/such/run"], {}, "model.runs: "),
        (lambda runs: [str(r) for r in runs], {"input_len": 6}, "trained for other windows"),
        # same sizes, other values: the members read log-differenced windows, not these
        (
            lambda runs: [str(r) for r in runs],
            {"transform": ["log", "difference"]},
            "transform ['log', 'difference']",
        ),
        (lambda runs: [str(r) for r in runs], {"scaler": "minmax"}, "scaler minmax"),
    ],
)
def test_ensemble_mistakes_exit_2(members, tmp_path: Path, members_of, data, message):
    _, runs = members
    path = config(tmp_path, "bad", {"name": "ensemble", "runs": members_of(runs)}, **data)
    result = runner.invoke(app, ["train", "-c", str(path)])
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
    assert not (tmp_path / "runs" / "bad").exists()

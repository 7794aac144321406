"""``train.precision: bf16``: autocast really on wherever the model runs (training steps,
validation, the final scores, ``rnnzoo eval``), and results that differ from fp32 by
more than float32 rounding."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from rnnzoo.cli import app
from rnnzoo.layers import Recurrent

runner = CliRunner()


def train(config: Path, name: str, precision: str) -> Path:
    """One epoch of the tiny adding run at ``precision``; returns its run folder."""
    args = ["--set", f"train.precision={precision}", "--set", "train.epochs=1"]
    result = runner.invoke(app, ["train", "-c", str(config), *args, "--set", f"output.name={name}"])
    assert result.exit_code == 0, result.output
    return config.parent / "runs" / name


@pytest.fixture
def forwards(monkeypatch) -> list[dict]:
    """What every recurrent layer's forward saw: training or scoring, the autocast
    state inside it, and the dtype its outputs came out in."""
    seen: list[dict] = []
    real = Recurrent.forward

    def forward(self, *args, **kwargs):
        out, h_n = real(self, *args, **kwargs)
        seen.append(
            {
                "training": self.training,
                "autocast": torch.is_autocast_enabled("cpu"),
                "autocast_dtype": torch.get_autocast_dtype("cpu"),
                "output": out.dtype,
            }
        )
        return out, h_n

    monkeypatch.setattr(Recurrent, "forward", forward)
    return seen


def test_bf16_runs_every_forward_under_autocast(tiny_config: Path, forwards: list[dict]):
    run_dir = train(tiny_config, "bf16", "bf16")
    in_training = list(forwards)
    steps = [f for f in in_training if f["training"]]
    assert len(steps) == 5  # 70 samples in batches of 16
    assert len(in_training) > len(steps)  # and the scoring: validation, final val and test
    forwards.clear()
    result = runner.invoke(app, ["eval", str(run_dir), "--split", "val"])
    assert result.exit_code == 0, result.output
    assert len(forwards) == 2  # 32 samples: two batches of 16
    for f in [*in_training, *forwards]:
        assert f["autocast"] and f["autocast_dtype"] == torch.bfloat16, f
        assert f["output"] == torch.bfloat16, f  # the recurrence itself ran in bf16


def test_fp32_runs_no_forward_under_autocast(tiny_config: Path, forwards: list[dict]):
    train(tiny_config, "fp32", "fp32")
    assert forwards
    for f in forwards:
        assert not f["autocast"] and f["output"] == torch.float32, f


def test_bf16_results_differ_from_fp32_by_more_than_rounding(tiny_config: Path):
    """Same data, same initial weights: fp32 twice agrees to the last bit (the runs are
    deterministic), bf16 keeps ~3 significant digits, so its scores move, a little."""
    fp32 = [train(tiny_config, f"fp32_{i}", "fp32") for i in range(2)]
    bf16 = train(tiny_config, "bf16", "bf16")
    val = [json.loads((r / "summary.json").read_text())["val"]["mse"] for r in (*fp32, bf16)]
    assert val[0] == val[1]
    relative = abs(val[2] - val[0]) / val[0]
    assert 1e-4 < relative < 0.05, val

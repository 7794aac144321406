"""The copy-memory task: the generator, the memoryless baseline, a tiny run."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import yaml
from typer.testing import CliRunner

from rnnzoo.cli import app
from rnnzoo.data.synthetic import copy_baseline, copy_memory
from rnnzoo.models import MODELS, build_model
from rnnzoo.tasks import CopyTask, ModelIO


def test_sequences_hold_symbols_delimiter_and_recall():
    inputs, targets = copy_memory(16, 30, torch.Generator().manual_seed(0))
    assert inputs.shape == (16, 50, 10) and targets.shape == (16, 50)
    ids = inputs.argmax(-1)
    assert (inputs.sum(-1) == 1).all()  # one-hot
    assert ((ids[:, :10] >= 1) & (ids[:, :10] <= 8)).all()
    assert (ids[:, 39] == 9).all() and (ids[:, 10:39] == 0).all() and (ids[:, 40:] == 0).all()
    assert torch.equal(targets[:, -10:], ids[:, :10])  # the symbols, in order
    assert (targets[:, :-10] == 0).all()


@pytest.mark.parametrize("delay", [1, 100, 500])
def test_the_memoryless_baseline_is_10_ln8_over_t_plus_20(delay):
    assert copy_baseline(delay) == pytest.approx(10 * math.log(8) / (delay + 20))
    _, targets = copy_memory(64, delay, torch.Generator().manual_seed(1))
    # certain "blank" before the recall, uniform over the 8 symbols during it
    logits = torch.full((64, delay + 20, 10), -1e9)
    logits[:, :-10, 0] = 0
    logits[:, -10:, 1:9] = 0
    ce = F.cross_entropy(logits.flatten(0, 1), targets.flatten())
    assert float(ce) == pytest.approx(copy_baseline(delay), rel=1e-5)


def test_many_to_many_answers_every_step_and_ignores_padding():
    args = MODELS.get("many_to_many").Args(hidden_size=6, num_layers=2)
    model = build_model(args, ModelIO(3, 4, output="per_step")).eval()
    x, lengths = torch.randn(2, 7, 3), torch.tensor([7, 4])
    out = model(x, lengths)
    assert out.shape == (2, 7, 4)
    torch.testing.assert_close(out[1:, :4], model(x[1:, :4]))


def test_a_tiny_copy_run_reports_against_the_baseline(tmp_path: Path):
    config = {
        "task": "copy",
        "data": {"delay": 5, "n_train": 64, "n_val": 32, "n_test": 32},
        "model": {"name": "many_to_many", "cell": "gru", "hidden_size": 16},
        "train": {"epochs": 2, "batch_size": 16, "lr": 0.01, "device": "cpu"},
        "output": {"dir": str(tmp_path), "name": "copy", "tensorboard": False},
    }
    path = tmp_path / "copy.yaml"
    path.write_text(yaml.safe_dump(config))
    result = CliRunner().invoke(app, ["train", "--config", str(path)])
    assert result.exit_code == 0, result.output
    test = json.loads((tmp_path / "copy" / "eval_test.json").read_text())
    assert test["ce_vs_baseline"] == pytest.approx(test["ce"] / copy_baseline(5))
    assert 0 <= test["recall_accuracy"] <= 1
    assert CopyTask.modes["recall_accuracy"] == "max"

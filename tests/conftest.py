"""Fixtures shared by the trainer and CLI tests: tiny configs that train in a second."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

TINY = {
    "task": "adding",
    "data": {"seq_len": 8, "n_train": 70, "n_val": 32, "n_test": 32, "seed": 0},
    "model": {"name": "many_to_one", "cell": "gru", "hidden_size": 8},
    "train": {"epochs": 3, "batch_size": 16, "lr": 0.01, "seed": 0, "device": "cpu"},
    "output": {"tensorboard": False},
}


@pytest.fixture
def tiny_config(tmp_path: Path) -> Path:
    """A tiny adding-problem config file; its runs go under tmp_path/runs."""
    config = {**TINY, "output": {**TINY["output"], "dir": str(tmp_path / "runs")}}
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(config))
    return path

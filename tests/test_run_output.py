"""What a run prints: its start line, a short per-epoch line, progress lines in a log."""

from __future__ import annotations

import contextlib
import json
import re
from pathlib import Path

import torch
from typer.testing import CliRunner

from rnnzoo.cli import app
from rnnzoo.progress import LogProgress
from rnnzoo.runs import _epoch_logger

runner = CliRunner()  # its output is not a terminal: tqdm shows no bar, as in a log file

# airline_lstm.yaml (shipped, its data built in) made tiny
AIRLINE = [
    "model.hidden_size=4", "train.epochs=2", "train.batch_size=16", "train.device=cpu",
]  # fmt: skip


def train(tmp_path: Path, *args: str) -> str:
    sets = [a for item in args[1:] for a in ("--set", item)]
    with contextlib.chdir(tmp_path):
        result = runner.invoke(app, ["train", "-c", args[0], *sets])
    assert result.exit_code == 0, result.output
    return result.output


def test_the_start_line_names_task_model_size_device_and_run_folder(tiny_config: Path):
    out = train(tiny_config.parent, str(tiny_config))
    first = out.splitlines()[0]
    found = re.fullmatch(
        r"training adding: many_to_one \(gru\), ([\d,]+) parameters, cpu, run folder (.+)", first
    )
    assert found, first
    run_dir = Path(found[2])
    state = torch.load(run_dir / "checkpoints" / "best.pt", weights_only=True)
    assert int(found[1].replace(",", "")) == sum(t.numel() for t in state["model"].values())


def test_the_epoch_line_shows_the_headline_and_metrics_jsonl_keeps_the_rest(tmp_path: Path):
    out = train(tmp_path, "airline_lstm", *AIRLINE)
    epochs = [line for line in out.splitlines() if re.match(r"epoch \d+/2 step", line)]
    assert len(epochs) == 2, out
    train_part, val_part = epochs[0].split(" | ")[1:3]
    assert re.fullmatch(r"train loss \S+", train_part), train_part
    assert re.fullmatch(r"val loss \S+ mse \S+ mae \S+ mase \S+", val_part), val_part
    for line in out.splitlines():
        assert "mape" not in line, line  # nor smape: near-zero values make them explode
    [metrics] = Path(tmp_path / "runs").glob("*/metrics.jsonl")
    record = json.loads(metrics.read_text().splitlines()[0])
    assert {"val_mape", "val_smape", "val_rmse_orig", "train_mae"} <= set(record)


def test_a_headline_metric_the_task_does_not_report_is_left_out(tmp_path: Path):
    lines: list[str] = []
    log = _epoch_logger(tmp_path, _config(), lines.append, ("loss", "not_reported", "mae"))
    log({"epoch": 1, "step": 3, "partial_epoch": False, "lr": 0.1, "train_loss": 0.5,
         "train_mae": 0.25, "val_loss": 0.75, "val_mae": 0.125, "val_mse": 0.5,
         "seconds": 1.0, "samples_per_s": 10.0, "best": True})  # fmt: skip
    assert " | val loss 0.75 mae 0.125 | " in lines[0] and "mse" not in lines[0], lines
    assert " | train loss 0.5 | " in lines[0], lines


def _config():
    from rnnzoo.config import parse_config

    raw = {"task": "adding", "model": {"name": "many_to_one"}, "output": {"tensorboard": False}}
    return parse_config(raw, "test")


def test_progress_lines_appear_in_a_run_without_a_terminal(tiny_config: Path):
    out = train(tiny_config.parent, str(tiny_config))  # 70 samples in batches of 16: 5
    progress = [line for line in out.splitlines() if " batch " in line]
    # every tenth of an epoch of 5 batches is a batch; the last one is the epoch line's
    assert [p.split(" |")[0] for p in progress[:4]] == [
        f"epoch 1/3 batch {i}/5" for i in range(1, 5)
    ], out
    assert re.fullmatch(r"epoch 1/3 batch 1/5 \| loss \S+ \| \d+ samples/s", progress[0])


class Clock:
    def __init__(self, step: float) -> None:
        self.now, self.step = 0.0, step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


def test_progress_every_tenth_of_an_epoch_with_the_running_mean_loss():
    said: list[str] = []
    lines = LogProgress("epoch 1/1", 20, 0, said.append, True, clock=Clock(0.001))
    for i in range(20):
        lines.update(loss=float(i + 1), samples=4)
    assert [s.split(" |")[0] for s in said] == [f"epoch 1/1 batch {i}/20" for i in range(2, 20, 2)]
    assert " | loss 1.5 | " in said[0]  # the mean of 1 and 2
    assert " | loss 9.5 | " in said[-1]  # the mean of 1..18


def test_progress_at_least_every_minute_on_a_long_epoch():
    said: list[str] = []
    lines = LogProgress("epoch 2/3", 10_000, 0, said.append, True, clock=Clock(25.0))
    for _ in range(6):
        lines.update(loss=1.0, samples=50)  # 25 s a batch: a line every third batch
    assert [s.split(" |")[0] for s in said] == [
        "epoch 2/3 batch 3/10000",
        "epoch 2/3 batch 6/10000",
    ]
    assert said[0].endswith("| 2 samples/s")  # 150 samples in 75 s


def test_no_progress_lines_while_a_bar_shows_or_off_the_main_process():
    said: list[str] = []
    lines = LogProgress("epoch 1/1", 10, 0, said.append, False, clock=Clock(100.0))
    for _ in range(10):
        lines.update(loss=1.0, samples=1)
    assert said == []

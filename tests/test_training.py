"""The trainer and run folders, end to end on a tiny adding problem."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from rnnzoo import checkpoint
from rnnzoo.cli import app
from rnnzoo.config import parse_config
from rnnzoo.errors import ConfigError
from rnnzoo.models import build_model
from rnnzoo.optim import WarmupCosine
from rnnzoo.tasks import AddingTask
from rnnzoo.trainer import Trainer
from tests.conftest import TINY

runner = CliRunner()


def train(config: Path, *args: str) -> Path:
    """Run ``rnnzoo train`` and return the run folder it made."""
    result = runner.invoke(app, ["train", "-c", str(config), *args])
    assert result.exit_code == 0, result.output
    return Path(result.output.strip().splitlines()[-1].removeprefix("run folder: "))


def weights(run_dir: Path, which: str = "last") -> dict[str, torch.Tensor]:
    return checkpoint.load(run_dir / "checkpoints" / f"{which}.pt")["model"]


def assert_same_weights(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name


# A model that draws dropout masks at every step: a resume that loses or shifts the
# random state ends with other weights (the tiny config alone draws nothing).
DRAWS = ("--set", "model.num_layers=2", "--set", "model.dropout=0.3")


def metric_lines(run_dir: Path) -> list[dict]:
    lines = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    for line in lines:  # wall-clock fields differ between identical runs
        line.pop("seconds"), line.pop("samples_per_s")
    return lines


def test_train_then_eval_from_the_run_folder_alone(tiny_config: Path, tmp_path: Path):
    run_dir = train(tiny_config)
    for name in ("config.yaml", "run.json", "metrics.jsonl", "summary.json", "eval_test.json"):
        assert (run_dir / name).is_file(), name
    info = json.loads((run_dir / "run.json").read_text())["sessions"][0]
    assert info["torch"] == torch.__version__ and info["seed"] == 0 and info["device"] == "cpu"
    assert "git_commit" in info
    assert len(metric_lines(run_dir)) == 3
    # Move the folder and delete the config file: the checkpoint alone must do.
    moved = tmp_path / "elsewhere"
    run_dir.rename(moved)
    (moved / "config.yaml").unlink()
    result = runner.invoke(app, ["eval", str(moved), "--split", "val"])
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.output)
    assert metrics["split"] == "val" and 0 <= metrics["mse"] < 1
    summary = json.loads((moved / "summary.json").read_text())
    assert metrics["mse"] == pytest.approx(summary["val"]["mse"], rel=1e-6)
    assert json.loads((moved / "eval_val.json").read_text())["mse"] == metrics["mse"]
    result = runner.invoke(app, ["eval", str(moved), "--split", "train2"])
    assert result.exit_code == 2 and "unknown split 'train2'" in result.output


def test_same_config_and_seed_give_identical_runs(tiny_config: Path):
    a, b = train(tiny_config), train(tiny_config)
    assert a != b
    assert metric_lines(a) == metric_lines(b)
    assert_same_weights(weights(a), weights(b))


def test_resume_with_a_raised_budget_stretches_the_cosine_schedule(tiny_config: Path):
    cosine = ("--set", "train.schedule=cosine", "--set", "train.warmup_steps=2")
    straight = train(tiny_config, *cosine)  # 15 steps
    partial = train(tiny_config, *cosine, "--set", "train.max_steps=7")  # decays to 0 at 7
    result = runner.invoke(
        app, ["train", "--resume", str(partial), "--set", "train.max_steps=null"]
    )
    assert result.exit_code == 0, result.output
    # after the resume the learning rate follows the 15-step schedule, not the 7-step one
    resumed = {line["step"]: line["lr"] for line in metric_lines(partial)}
    expected = {line["step"]: line["lr"] for line in metric_lines(straight)}
    assert resumed[10] == expected[10] > 0 and resumed[15] == expected[15]


def test_resume_after_max_steps_matches_an_uninterrupted_run(tiny_config: Path):
    straight = train(tiny_config, *DRAWS)
    # 7 steps is part-way through epoch 2 (70 samples: 4 batches of 16 and one of 6)
    partial = train(tiny_config, *DRAWS, "--set", "train.max_steps=7")
    progress = checkpoint.load(partial / "checkpoints" / "last.pt")["progress"]
    assert (progress["step"], progress["epoch"], progress["batch_in_epoch"]) == (7, 1, 2)
    result = runner.invoke(
        app, ["train", "--resume", str(partial), "--set", "train.max_steps=null"]
    )
    assert result.exit_code == 0, result.output
    assert_same_weights(weights(straight), weights(partial))


def test_a_time_budget_stops_after_the_step_that_spends_it(tiny_config: Path):
    run_dir = train(tiny_config, "--set", "train.max_minutes=1e-6")  # 60 microseconds
    progress = checkpoint.load(run_dir / "checkpoints" / "last.pt")["progress"]
    assert progress["step"] == 1 and progress["seconds"] > 0
    (line,) = metric_lines(run_dir)
    assert line["partial_epoch"] and line["step"] == 1
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["steps"] == 1 and summary["peak_memory_mb"] > 0
    assert summary["best_epoch"] == line["epoch"] == 1  # the partial epoch, numbered as logged


def test_ctrl_c_saves_last_and_resume_matches(tiny_config: Path, monkeypatch):
    straight = train(tiny_config, *DRAWS)
    real_step, calls = Trainer._step, []

    def step_then_interrupt(self, batch, totals):
        out = real_step(self, batch, totals)
        calls.append(1)
        if len(calls) == 6:
            os.kill(os.getpid(), signal.SIGINT)  # what Ctrl-C sends
        return out

    monkeypatch.setattr(Trainer, "_step", step_then_interrupt)
    result = runner.invoke(app, ["train", "-c", str(tiny_config), *DRAWS])
    assert result.exit_code == 130, result.output
    assert "interrupted" in result.output and "resume" in result.output
    run_dir = next(p for p in (tiny_config.parent / "runs").iterdir() if p != straight)
    assert checkpoint.load(run_dir / "checkpoints" / "last.pt")["progress"]["step"] == 6
    monkeypatch.setattr(Trainer, "_step", real_step)
    result = runner.invoke(app, ["train", "--resume", str(run_dir)])
    assert result.exit_code == 0, result.output
    assert_same_weights(weights(straight), weights(run_dir))


def test_interrupted_write_leaves_the_previous_checkpoint(tmp_path: Path, monkeypatch):
    path = tmp_path / "last.pt"
    checkpoint.save_atomic({"model": {}, "config": {}, "value": torch.tensor(1.0)}, path)

    def half_written(obj, f):
        f.write(b"PK\x03\x04 half a zip file")
        raise KeyboardInterrupt  # killed mid-write

    monkeypatch.setattr(torch, "save", half_written)
    with pytest.raises(KeyboardInterrupt):
        checkpoint.save_atomic({"model": {}, "config": {}, "value": torch.tensor(2.0)}, path)
    assert checkpoint.load(path)["value"].item() == 1.0
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left behind


def test_checkpoints_open_with_weights_only(tiny_config: Path):
    run_dir = train(tiny_config, "--set", "train.epochs=1")
    for which in ("best", "last"):
        state = torch.load(run_dir / "checkpoints" / f"{which}.pt", weights_only=True)
        assert {"model", "optimizer", "scheduler", "rng", "progress", "config"} <= state.keys()


def test_nan_loss_stops_with_the_step_and_keeps_best(tiny_config: Path, monkeypatch):
    run_dir = train(tiny_config, "--set", "train.epochs=1", "--set", "output.name=nan")
    best_before = (run_dir / "checkpoints" / "best.pt").read_bytes()
    real_loss, calls = AddingTask.loss, []

    def loss_then_nan(self, output, batch):
        calls.append(1)
        loss = real_loss(self, output, batch)
        return loss * float("nan") if len(calls) == 3 else loss

    monkeypatch.setattr(AddingTask, "loss", loss_then_nan)
    result = runner.invoke(app, ["train", "--resume", str(run_dir), "--set", "train.epochs=2"])
    assert result.exit_code == 1, result.output
    assert "loss is nan at epoch 2, step 8" in result.output
    assert (run_dir / "checkpoints" / "best.pt").read_bytes() == best_before


def test_early_stopping_uses_validation_patience(tiny_config: Path):
    run_dir = train(tiny_config, "--set", "train.epochs=30", "--set", "train.patience=1",
                    "--set", "train.lr=1e-9")  # fmt: skip
    lines = metric_lines(run_dir)
    assert len(lines) < 30
    assert not lines[-1]["best"]


@pytest.mark.parametrize(
    "extra",
    [
        ["train.schedule=cosine", "train.warmup_steps=3", "train.optimizer=adamw"],
        ["train.schedule=plateau", "train.optimizer=sgd", "train.metric=mae"],
        ["train.grad_clip=null", "model.pooling=mean", "model.bidirectional=true"],
        ["model.pooling=max", "model.num_layers=2", "model.dropout=0.2", "train.precision=bf16"],
    ],
)
def test_schedules_optimizers_and_model_options_train(tiny_config: Path, extra):
    args = [a for kv in extra for a in ("--set", kv)]
    lines = metric_lines(train(tiny_config, *args))
    assert len(lines) == 3
    assert all(0 <= line["val_mse"] < 10 for line in lines)
    if "train.schedule=cosine" in extra:  # decays to zero at the last step
        assert lines[0]["lr"] > lines[1]["lr"] > lines[2]["lr"] == pytest.approx(0.0)
    else:
        assert all(0 < line["lr"] <= 0.01 for line in lines)


def test_warmup_cosine_shape():
    schedule = WarmupCosine(warmup=4, total=14)
    assert [schedule(s) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert schedule(9) == pytest.approx(0.5)
    assert schedule(14) == pytest.approx(0.0)


def tiny_trainer(**train: object) -> Trainer:
    """A trainer of TINY's GRU (parameters rnn.weight_ih_l0, rnn.weight_hh_l0,
    rnn.bias_ih_l0, rnn.bias_hh_l0, head.weight, head.bias), 5 batches an epoch."""
    config = parse_config({**TINY, "train": {**TINY["train"], **train}})
    task = AddingTask(config.data)
    return Trainer(config, task, build_model(config.model, task.io), torch.device("cpu"))


def group_names(trainer: Trainer) -> list[list[str]]:
    names = {id(p): n for n, p in trainer.model.named_parameters()}
    return [[names[id(p)] for p in g["params"]] for g in trainer.optimizer.param_groups]


def test_lr_multipliers_give_each_prefix_its_group_and_the_schedule_moves_all():
    trainer = tiny_trainer(
        schedule="cosine", warmup_steps=2, lr_multipliers={"rnn": 0.5, "rnn.weight_hh": 0.1}
    )
    # the longest prefix wins; train.lr's group (the one logged) comes first
    assert group_names(trainer) == [
        ["head.weight", "head.bias"],
        ["rnn.weight_ih_l0", "rnn.bias_ih_l0", "rnn.bias_hh_l0"],
        ["rnn.weight_hh_l0"],
    ]
    curve = WarmupCosine(warmup=2, total=15)
    for step in range(6):
        lrs = [g["lr"] for g in trainer.optimizer.param_groups]
        assert lrs == pytest.approx([0.01 * f * curve(step) for f in (1.0, 0.5, 0.1)]), step
        trainer.optimizer.step()  # no gradients: nothing moves, but the schedule does
        trainer.scheduler.step()


@pytest.mark.parametrize("table", ["lr_multipliers", "unfreeze_epochs"])
def test_a_prefix_that_names_no_parameter_is_a_config_error(table: str):
    with pytest.raises(
        ConfigError, match=f"train.{table}.decoder: no parameter's name .* rnn, head"
    ):
        tiny_trainer(**{table: {"decoder": 2}})


def test_unfreezing_needs_a_per_step_schedule():
    raw = {**TINY, "train": {**TINY["train"], "schedule": "plateau", "unfreeze_epochs": {"rnn": 2}}}
    with pytest.raises(ConfigError, match=r"train\.unfreeze_epochs: unfreezing needs a per-step"):
        parse_config(raw)


@pytest.mark.parametrize("optimizer", ["adam", "adamw", "sgd"])
def test_a_group_held_back_stays_bit_identical_until_its_epoch(optimizer: str):
    """Gradual unfreezing as a rate of 0: with weight decay and (SGD) momentum on, the
    held-back parameters do not move in epoch 1 and do from epoch 2."""
    trainer = tiny_trainer(
        epochs=2, optimizer=optimizer, weight_decay=0.1, schedule="cosine", warmup_steps=2,
        unfreeze_epochs={"rnn": 2, "rnn.bias": 3},
    )  # fmt: skip
    start = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    after_epoch_1 = {}

    def keep(t: Trainer) -> None:
        if t.progress.step == len(t.batches):
            after_epoch_1.update({n: p.detach().clone() for n, p in t.model.named_parameters()})

    trainer.after_step.append(keep)
    trainer.fit()
    end = dict(trainer.model.named_parameters())
    for name, before in start.items():
        moved_in_1 = not torch.equal(after_epoch_1[name], before)
        moved_in_2 = not torch.equal(end[name].detach(), after_epoch_1[name])
        # rnn.bias*: from epoch 3, which this run of 2 never reaches
        expected = (False, False) if name.startswith("rnn.bias") else (False, True)
        assert (moved_in_1, moved_in_2) == (expected if name.startswith("rnn") else (True, True)), (
            name
        )


def test_grad_norm_and_clipping_are_logged(tiny_config: Path):
    line = metric_lines(train(tiny_config, "--set", "train.grad_clip=1e-6"))[0]
    assert line["train_grad_norm"] > 1e-6 and line["train_clipped"] == 1.0


def test_unknown_metric_is_a_config_error(tiny_config: Path):
    result = runner.invoke(app, ["train", "-c", str(tiny_config), "--set", "train.metric=acc"])
    assert result.exit_code == 2
    assert "train.metric 'acc' is not one of this task's: loss, mae, mse" in result.output


@pytest.mark.slow
def test_two_processes_match_one_on_the_same_global_batch(tiny_config: Path, tmp_path: Path):
    # 69 samples: the last global batch of 5 splits 3 and 2, so each process's loss
    # must be weighted by its share (with 70 every split is even and weights are moot)
    one = train(tiny_config, "--set", "output.name=one", "--set", "data.n_train=69")
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
        "-m", "rnnzoo", "train", "-c", str(tiny_config), "--set", "output.name=two",
        "--set", "data.n_train=69",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    two = tiny_config.parent / "runs" / "two"
    info = json.loads((two / "run.json").read_text())["sessions"][0]
    assert info["processes"] == 2
    a, b = weights(one), weights(two)
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=1e-5, atol=1e-6, msg=name)
    # metrics are reduced over both processes: same numbers as one process
    for x, y in zip(metric_lines(one), metric_lines(two), strict=True):
        assert x["val_mse"] == pytest.approx(y["val_mse"], rel=1e-4)
        assert x["train_loss"] == pytest.approx(y["train_loss"], rel=1e-4)


def test_tensorboard_scalars_when_installed(tiny_config: Path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run_dir = train(tiny_config, "--set", "output.tensorboard=true")
    events = EventAccumulator(str(run_dir / "tensorboard"))
    events.Reload()
    tags = events.Tags()["scalars"]
    assert {"train/loss", "val/mse", "lr"} <= set(tags)
    assert [e.step for e in events.Scalars("val/mse")] == [5, 10, 15]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a CPU-only machine")
def test_asking_for_cuda_without_a_gpu_is_a_clear_error(tiny_config: Path):
    result = runner.invoke(app, ["train", "-c", str(tiny_config), "--device", "cuda"])
    assert result.exit_code == 2, result.output
    assert "no CUDA device is available" in result.output
    assert "Traceback" not in result.output

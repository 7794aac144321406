"""Exact resume: a run stopped with Ctrl-C (or by a budget) and continued in a new process
ends with the weights, optimiser and random state of an uninterrupted run, bit for bit.

The models here draw random numbers at every step (dropout between layers, locked input
and hidden dropout, weight drop, zoneout, word and embedding dropout), the schedules
change the rate (cosine with warm-up, plateau), batches are bucketed, and the tasks fit
state on train (IMDB's tokenizer, a forecast's scaler). If any random stream were left
to a generator the checkpoint does not restore, or anything drew from the model's stream
between the restore and the next step, the weights would differ.

The end-to-end tests run ``rnnzoo train`` in separate processes and interrupt them with
a real SIGINT at a known step (``tests/sigint_at_step.py``), or stop them with a budget
(also a ``torchrun`` job of two processes, each of which must resume from its own
state); they are marked slow only because every process spends seconds importing torch.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml
from typer.testing import CliRunner

from rnnzoo import checkpoint, fused
from rnnzoo.cli import app
from rnnzoo.config import parse_config
from rnnzoo.errors import Interrupted
from rnnzoo.evaluation import evaluate
from rnnzoo.models import build_model
from rnnzoo.tasks import TASKS
from rnnzoo.trainer import Trainer
from tests.conftest import TINY
from tests.sigint_at_step import MARKER
from tests.test_forecast import monthly_csv
from tests.test_imdb import make_archive

runner = CliRunner()
DRIVER = Path(__file__).with_name("sigint_at_step.py")
TIMEOUT = 300  # seconds for one process, on a loaded machine; a run takes a few

# A 2-layer GRU on the adding problem that draws a dropout mask at every step, on the
# fused path (so the oneDNN probe runs in every process).
RANDOM_ADDING = {
    **TINY,
    "model": {**TINY["model"], "num_layers": 2, "dropout": 0.3, "input_dropout": 0.2,
              "weight_drop": 0.2},
}  # fmt: skip


def write_config(path: Path, config: dict[str, Any], runs: Path) -> Path:
    config = {**config, "output": {"dir": str(runs), "tensorboard": False}}
    path.write_text(yaml.safe_dump(config))
    return path


# -- running rnnzoo ---------------------------------------------------------------------


def train_here(config: Path, name: str, *args: str) -> Path:
    """An uninterrupted ``rnnzoo train`` in this process; returns its run folder."""
    result = runner.invoke(app, ["train", "-c", str(config), "--set", f"output.name={name}", *args])
    assert result.exit_code == 0, result.output
    return config.parent / "runs" / name


def rnnzoo(*args: str) -> str:
    """``python -m rnnzoo ARGS`` in a new process, which must succeed; its output."""
    done = subprocess.run(
        [sys.executable, "-m", "rnnzoo", *args], capture_output=True, text=True, timeout=TIMEOUT
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def rnnzoo_ctrl_c_after(step: int, *args: str) -> str:
    """``python -m rnnzoo ARGS`` in a new process, sent SIGINT after training step ``step``.

    The process pauses after that step (``tests/sigint_at_step.py``); the signal comes
    from here, as a terminal sends it, and then the line that lets it go on. It must
    save ``last`` and exit with 130. Returns its output."""
    cmd = [sys.executable, str(DRIVER), str(step), *args]
    proc = subprocess.Popen(
        cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    watchdog = threading.Timer(TIMEOUT, proc.kill)  # a hang fails the test, not CI
    watchdog.start()
    try:
        assert proc.stdout is not None and proc.stdin is not None
        seen = []
        for line in proc.stdout:
            if line.strip() == MARKER:
                break
            seen.append(line)
        else:
            proc.wait()
            pytest.fail(f"never reached step {step} (exit {proc.returncode}):\n{''.join(seen)}")
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate("go\n")
    finally:
        watchdog.cancel()
    output = "".join(seen) + rest
    assert proc.returncode == 130, output
    assert f"step {step}; the last checkpoint is saved" in output, output
    return output


# -- what is compared -------------------------------------------------------------------


def last(run_dir: Path) -> dict[str, Any]:
    return checkpoint.load(run_dir / "checkpoints" / "last.pt")


def assert_same_end(straight: Path, resumed: Path) -> None:
    """Same weights, optimiser state, random state and per-epoch metrics, exactly."""
    a, b = last(straight), last(resumed)
    assert a["progress"]["step"] == b["progress"]["step"]
    assert a["model"].keys() == b["model"].keys()
    for name in a["model"]:
        assert torch.equal(a["model"][name], b["model"][name]), name
    for i, (x, y) in enumerate(
        zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values(), strict=True)
    ):
        for key in x:
            assert torch.equal(torch.as_tensor(x[key]), torch.as_tensor(y[key])), (i, key)
    assert torch.equal(a["rng"]["torch"], b["rng"]["torch"])  # the same draws, no more
    assert epoch_lines(straight) == epoch_lines(resumed)


def epoch_lines(run_dir: Path) -> list[dict[str, Any]]:
    """metrics.jsonl's finished epochs, without wall-clock fields; a budget stop also
    logs the partial epoch it stopped in, which an uninterrupted run never scores."""
    lines = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    for line in lines:
        line.pop("seconds"), line.pop("samples_per_s")
    return [line for line in lines if not line["partial_epoch"]]


def where(run_dir: Path) -> tuple[int, int, int]:
    """(epochs finished, step, batches of the unfinished epoch) in ``last.pt``."""
    p = last(run_dir)["progress"]
    return p["epoch"], p["step"], p["batch_in_epoch"]


# -- real interrupts, separate processes ------------------------------------------------


@pytest.fixture
def imdb_config(tmp_path: Path, monkeypatch) -> Path:
    """Token task with a fitted tokenizer, bucketing, cosine warm-up and every dropout
    a token model has, on the fused path; 5 batches an epoch."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # the subprocesses too
    archive = make_archive(tmp_path / "aclImdb_v1.tar.gz")
    config = {
        "task": "imdb",
        "data": {"path": str(archive), "val_fraction": 0.25, "vocab_size": 100,
                 "min_frequency": 1, "max_len": 16, "bucket": 2},
        "model": {"name": "sequence_classifier", "cell": "gru", "embedding_dim": 8,
                  "hidden_size": 8, "num_layers": 2, "dropout": 0.3, "input_dropout": 0.2,
                  "weight_drop": 0.3, "word_dropout": 0.2, "embedding_dropout": 0.1,
                  "head_dropout": 0.1, "pooling": "concat"},
        "train": {"epochs": 3, "batch_size": 4, "lr": 0.01, "schedule": "cosine",
                  "warmup_steps": 4, "device": "cpu", "seed": 1},
    }  # fmt: skip
    return write_config(tmp_path / "imdb.yaml", config, tmp_path / "runs")


@pytest.mark.slow
def test_ctrl_c_mid_epoch_and_at_an_epoch_end_then_resume_on_a_token_task(imdb_config: Path):
    straight = train_here(imdb_config, "straight")
    lrs = [line["lr"] for line in epoch_lines(straight)]
    assert len(set(lrs)) == 3  # the schedule moves: a lost scheduler state would show
    run = imdb_config.parent / "runs" / "stopped"
    args = ["train", "-c", str(imdb_config), "--set", "output.name=stopped"]
    rnnzoo_ctrl_c_after(2, *args)
    assert where(run) == (0, 2, 2)  # mid-epoch: the resumed run skips 2 batches of epoch 1
    rnnzoo_ctrl_c_after(10, "train", "--resume", str(run))
    assert where(run) == (1, 10, 5)  # epoch 2 trained, not yet scored
    rnnzoo("train", "--resume", str(run))
    assert_same_end(straight, run)
    assert (run / "tokenizer.json").read_text() == (straight / "tokenizer.json").read_text()


@pytest.fixture
def forecast_config(tmp_path: Path) -> Path:
    """A forecast with a fitted scaler, zoneout and hidden dropout (the per-step loop),
    and a plateau schedule that halves the rate whenever validation does not improve;
    5 batches an epoch."""
    csv = monthly_csv(tmp_path / "sales.csv", n=90, columns=2)
    config = {
        "task": "forecast",
        "data": {"path": str(csv), "date_column": "month", "target": "c0", "features": ["c1"],
                 "mode": "MS", "input_len": 12, "horizon": 6, "protocol": "counts",
                 "splits": [54, 18, 18], "season": 12},
        "model": {"name": "forecaster", "cell": "lstm", "hidden_size": 8, "num_layers": 2,
                  "dropout": 0.2, "zoneout": 0.2, "hidden_dropout": 0.2, "head_dropout": 0.1,
                  "norm": "last"},
        "train": {"epochs": 5, "batch_size": 8, "lr": 0.1, "schedule": "plateau",
                  "plateau_patience": 0, "device": "cpu", "seed": 2},
    }  # fmt: skip
    return write_config(tmp_path / "sales.yaml", config, tmp_path / "runs")


@pytest.mark.slow
def test_ctrl_c_then_a_budget_stop_then_resume_on_a_forecast(forecast_config: Path):
    straight = train_here(forecast_config, "straight")
    lrs = [line["lr"] for line in epoch_lines(straight)]
    assert lrs[2] > lrs[3] > lrs[4]  # the plateau schedule acts: its state matters
    run = forecast_config.parent / "runs" / "stopped"
    rnnzoo_ctrl_c_after(3, "train", "-c", str(forecast_config), "--set", "output.name=stopped")
    assert where(run) == (0, 3, 3)
    # A budget stop mid-epoch scores the partial epoch: validation must not draw from
    # the model's stream, nor count as an epoch for the plateau schedule (here it scores
    # worse than epoch 3, which would halve the rate once more).
    rnnzoo("train", "--resume", str(run), "--set", "train.max_steps=17")
    assert where(run) == (3, 17, 2)
    rnnzoo("train", "--resume", str(run), "--set", "train.max_steps=null")
    assert_same_end(straight, run)
    assert (run / "forecast.json").read_text() == (straight / "forecast.json").read_text()


@pytest.fixture
def lm_config(tmp_path: Path) -> Path:
    """A character language model that carries its state from batch to batch, with
    every dropout it has and a tied decoder behind a projection; 3 batches an epoch."""
    from tests.test_language_model import TEXT

    (tmp_path / "text.txt").write_text(TEXT)
    config = {
        "task": "language_model",
        "data": {"path": str(tmp_path / "text.txt"), "tokenizer": "char", "vocab_size": 60,
                 "min_frequency": 1, "bptt": 20},
        "model": {"name": "language_model", "cell": "lstm", "embedding_dim": 6,
                  "hidden_size": 8, "num_layers": 2, "dropout": 0.3, "input_dropout": 0.2,
                  "weight_drop": 0.2, "word_dropout": 0.1, "embedding_dropout": 0.1,
                  "head_dropout": 0.1, "tie_weights": True},
        "train": {"epochs": 2, "batch_size": 3, "lr": 0.01, "schedule": "plateau",
                  "plateau_patience": 0, "device": "cpu", "seed": 3},
    }  # fmt: skip
    return write_config(tmp_path / "lm.yaml", config, tmp_path / "runs")


def test_a_budget_stop_mid_epoch_then_resume_on_a_language_model(lm_config: Path):
    """The budget stop scores the partial epoch, which resets the model's carried state;
    the checkpoint must hold the state training left, or the resumed epoch would go on
    from zeros where the uninterrupted one goes on from the batch before. At an epoch's
    end it must hold none: the next epoch starts from zeros."""
    straight = train_here(lm_config, "straight")
    run = train_here(lm_config, "run", "--set", "train.max_steps=2")
    assert where(run) == (0, 2, 2)  # mid-epoch
    carried = last(run)["model"]["_extra_state"]
    assert carried.shape == (2, 2, 3, 8)  # h and c of 2 layers, 3 streams
    for steps in ("3", "null"):  # to the end of epoch 1, then to the end
        ask = ["train", "--resume", str(run), "--set", f"train.max_steps={steps}"]
        result = runner.invoke(app, ask)
        assert result.exit_code == 0, result.output
        if steps == "3":
            assert where(run) == (1, 3, 0) and last(run)["model"]["_extra_state"].numel() == 0
    assert where(straight)[1] == 6
    assert_same_end(straight, run)
    for name in ("summary.json", "eval_test.json"):
        a, b = (json.loads((r / name).read_text()) for r in (straight, run))
        for key in ("seconds", "peak_memory_mb"):  # wall time and memory: not the run
            a.pop(key, None), b.pop(key, None)
        assert a == b, name


def torchrun(*args: str) -> None:
    """``rnnzoo ARGS`` in two processes (``torchrun --nproc_per_node 2``), on CPU."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
           "--nproc_per_node=2", "-m", "rnnzoo", *args]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=TIMEOUT)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.slow
def test_two_processes_resume_each_from_its_own_random_state(tmp_path: Path):
    # 71 samples: the last batch of 7 splits 4 + 3, so the processes draw different
    # amounts from then on, and rank 0's state would not resume rank 1.
    raw = {**RANDOM_ADDING, "data": {**RANDOM_ADDING["data"], "n_train": 71}}
    config = write_config(tmp_path / "tiny.yaml", raw, tmp_path / "runs")
    torchrun("train", "-c", str(config), "--set", "output.name=straight")
    run = tmp_path / "runs" / "run"
    torchrun("train", "-c", str(config), "--set", "output.name=run", "--set", "train.max_steps=7")
    rng = [own["rng"] for own in last(run)["per_process"]]
    assert len(rng) == 2 and not torch.equal(rng[0]["torch"], rng[1]["torch"])
    torchrun("train", "--resume", str(run), "--set", "train.max_steps=null")
    assert_same_end(tmp_path / "runs" / "straight", run)


@pytest.mark.slow
def test_two_processes_resume_a_language_model_each_from_its_own_state(lm_config: Path):
    """Each process carries the state of its own rows (streams): rank 0's would start
    rank 1 from the state of other text."""
    runs = lm_config.parent / "runs"
    torchrun("train", "-c", str(lm_config), "--set", "output.name=straight",
             "--set", "train.batch_size=4")  # fmt: skip
    run = runs / "run"
    torchrun("train", "-c", str(lm_config), "--set", "output.name=run",
             "--set", "train.batch_size=4", "--set", "train.max_steps=1")  # fmt: skip
    assert where(run)[2] == 1  # mid-epoch
    extra = [own["extra"]["_extra_state"] for own in last(run)["per_process"]]
    assert extra[0].shape == extra[1].shape == (2, 2, 2, 8)  # two streams each
    assert not torch.equal(extra[0], extra[1])
    torchrun("train", "--resume", str(run), "--set", "train.max_steps=null")
    assert_same_end(runs / "straight", run)


# -- the global generators, checked where they could be disturbed -----------------------


def global_rng() -> tuple[torch.Tensor, Any, Any]:
    return torch.get_rng_state(), random.getstate(), np.random.get_state(legacy=True)[1].tolist()


def test_one_step_after_a_resume_the_random_state_is_the_uninterrupted_runs(tmp_path: Path):
    """Anything that drew from a global generator between the restore and the step, or
    a restore that missed one, leaves the generators elsewhere after the step."""
    config = write_config(tmp_path / "tiny.yaml", RANDOM_ADDING, tmp_path / "runs")
    # Each run as in a new process, where the oneDNN probe runs at the first forward
    # pass: for the resumed run, after the restore.
    fused._onednn_works.cache_clear()
    straight = train_here(config, "straight", "--set", "train.max_steps=4")
    fused._onednn_works.cache_clear()
    run = train_here(config, "run", "--set", "train.max_steps=3")
    fused._onednn_works.cache_clear()
    result = runner.invoke(app, ["train", "--resume", str(run), "--set", "train.max_steps=4"])
    assert result.exit_code == 0, result.output
    a, b = last(straight)["rng"], last(run)["rng"]
    assert last(run)["progress"]["step"] == 4
    assert torch.equal(a["torch"], b["torch"])
    assert a["python"] == b["python"] and a["numpy"] == b["numpy"]
    for name, weight in last(straight)["model"].items():
        assert torch.equal(weight, last(run)["model"][name]), name


def test_a_resume_across_an_unfreezing_is_exact_for_every_group(tmp_path: Path):
    """Discriminative rates and gradual unfreezing under a cosine schedule: stopped
    inside epoch 1, before the held-back group starts, and resumed, each group's rate
    and every weight end as in the uninterrupted run."""
    raw = {**RANDOM_ADDING, "train": {**RANDOM_ADDING["train"], "schedule": "cosine",
           "warmup_steps": 3, "lr_multipliers": {"rnn": 0.5, "head": 2.0},
           "unfreeze_epochs": {"rnn.weight_hh": 2}}}  # fmt: skip
    config = write_config(tmp_path / "tiny.yaml", raw, tmp_path / "runs")
    straight = train_here(config, "straight")
    run = train_here(config, "run", "--set", "train.max_steps=4")
    result = runner.invoke(app, ["train", "--resume", str(run), "--set", "train.max_steps=null"])
    assert result.exit_code == 0, result.output
    assert_same_end(straight, run)
    a, b = (last(r)["optimizer"]["param_groups"] for r in (straight, run))
    assert [g["lr"] for g in a] == [g["lr"] for g in b]
    assert len(a) == 4 and len({g["initial_lr"] for g in a}) == 3


def test_scoring_a_split_draws_no_random_numbers(tmp_path: Path):
    """Validation runs between epochs and when a budget stops a run mid-epoch: any draw
    there would shift the masks of every later step of a resumed run."""
    raw = {**RANDOM_ADDING, "model": {**RANDOM_ADDING["model"], "zoneout": 0.3}}
    config = parse_config(raw)
    task = TASKS.get(config.task)(config.data)
    model = build_model(config.model, task.io)
    model.train()  # scoring puts it in eval mode, and back
    before = global_rng()
    evaluate(model, task, task.dataset("val"), torch.device("cpu"), batch_size=8)
    after = global_rng()
    assert torch.equal(before[0], after[0]) and before[1:] == after[1:]
    assert model.training


def test_the_onednn_probe_leaves_the_global_generator_alone():
    fused._onednn_works.cache_clear()  # as in a new process
    before = torch.get_rng_state()
    fused._onednn_works()
    assert torch.equal(torch.get_rng_state(), before)


def test_an_interrupted_epoch_counts_against_the_time_budget():
    config = parse_config(RANDOM_ADDING)
    task = TASKS.get(config.task)(config.data)
    trainer = Trainer(config, task, build_model(config.model, task.io), torch.device("cpu"))

    def ctrl_c_after_step_2(t: Trainer) -> None:
        t.stop_requested = t.stop_requested or t.progress.step == 2

    trainer.after_step.append(ctrl_c_after_step_2)
    with pytest.raises(Interrupted):
        trainer.fit()
    p = trainer.progress
    assert (p.epoch, p.step) == (0, 2)  # stopped inside the first epoch...
    assert p.seconds > 0  # ...whose time so far a resumed run's max_minutes must count


def test_a_partial_epoch_counts_for_neither_patience_nor_the_plateau_schedule():
    """A budget stop scores the partial epoch it stopped in; the run resumed with more
    budget finishes that epoch and scores it again. Counting both would make it stop
    early, or lower the rate, at another epoch than an uninterrupted run."""
    raw = {**RANDOM_ADDING, "train": {**RANDOM_ADDING["train"], "schedule": "plateau",
                                      "plateau_patience": 0, "patience": 2}}  # fmt: skip
    config = parse_config(raw)
    task = TASKS.get(config.task)(config.data)
    trainer = Trainer(config, task, build_model(config.model, task.io), torch.device("cpu"))
    lr, p = trainer.optimizer.param_groups[0]["lr"], trainer.progress

    def scored(mse: float, done: bool) -> None:
        p.epoch += done  # as fit() counts a finished epoch before recording it
        trainer._record({}, {"mse": mse}, 1.0, done)

    scored(1.0, done=True)  # epoch 1
    scored(0.5, done=False)  # part of epoch 2, the best so far
    assert (p.best, p.best_epoch) == (0.5, 2)  # best.pt may still come from it
    scored(0.8, done=True)  # epoch 2 finished: better than epoch 1
    assert p.bad_epochs == 0  # an improvement on the best finished epoch...
    assert trainer.optimizer.param_groups[0]["lr"] == lr  # ...for the plateau schedule too
    scored(0.9, done=True)  # epoch 3: worse
    assert p.bad_epochs == 1
    assert trainer.optimizer.param_groups[0]["lr"] == lr / 2

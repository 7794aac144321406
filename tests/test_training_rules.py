"""The trainer's rules, each against the number it must give: early stopping and the best
checkpoint, the plateau schedule, gradient clipping, and metrics weighted by samples."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from typer.testing import CliRunner

from rnnzoo import checkpoint
from rnnzoo.cli import app
from rnnzoo.config import parse_config
from rnnzoo.evaluation import evaluate
from rnnzoo.models import build_model
from rnnzoo.tasks import TASKS, AddingTask
from rnnzoo.trainer import Trainer
from tests.conftest import TINY

runner = CliRunner()


def train(config: Path, name: str, *settings: str) -> Path:
    """``rnnzoo train`` with ``--set`` for each setting; returns the run folder."""
    args = [a for kv in (*settings, f"output.name={name}") for a in ("--set", kv)]
    result = runner.invoke(app, ["train", "-c", str(config), *args])
    assert result.exit_code == 0, result.output
    return config.parent / "runs" / name


def epochs(run_dir: Path) -> list[dict]:
    return [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture
def scripted_val(monkeypatch):
    """Make validation during training report the given MSEs, epoch by epoch (the
    scores at the end, after the script, are real). ``mode`` "max" flips the task's
    metric to higher-is-better and the script's signs, so the same epochs improve."""

    def script(values: list[float], mode: str = "min") -> None:
        sign = 1 if mode == "min" else -1
        monkeypatch.setattr(AddingTask, "modes", {"loss": "min", "mse": mode, "mae": "min"})
        queue = [sign * v for v in values]
        real = Trainer.evaluate

        def scripted(self, dataset):
            scores = real(self, dataset)
            return {**scores, "mse": queue.pop(0)} if queue else scores

        monkeypatch.setattr(Trainer, "evaluate", scripted)

    return script


@pytest.mark.parametrize("mode", ["min", "max"])
def test_early_stopping_counts_epochs_since_the_best(tiny_config: Path, scripted_val, mode):
    # patience 2: best at 1, worse, best at 3 (the count restarts), worse, worse: stop
    scripted_val([1.0, 1.2, 0.8, 0.9, 1.1, 0.5, 0.4, 0.3], mode)
    run_dir = train(tiny_config, "stop", "train.epochs=8", "train.patience=2")
    lines = epochs(run_dir)
    assert [line["best"] for line in lines] == [True, False, True, False, False]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["best_epoch"] == 3 and summary["epochs"] == 5
    assert summary["best_mse"] == (0.8 if mode == "min" else -0.8)
    best = checkpoint.load(run_dir / "checkpoints" / "best.pt")["progress"]
    last = checkpoint.load(run_dir / "checkpoints" / "last.pt")["progress"]
    assert (best["epoch"], last["epoch"]) == (3, 5)  # best.pt holds epoch 3's weights
    assert best["step"] == 3 * 5  # 5 steps an epoch


@pytest.mark.parametrize("mode", ["min", "max"])
def test_plateau_schedule_halves_lr_after_each_epoch_without_improvement(
    tiny_config: Path, scripted_val, mode
):
    scripted_val([1.0, 1.1, 0.9, 1.0, 1.2], mode)
    settings = ["train.schedule=plateau", "train.plateau_patience=0", "train.epochs=5"]
    lrs = [line["lr"] for line in epochs(train(tiny_config, "plateau", *settings))]
    assert lrs == pytest.approx([0.01, 0.005, 0.005, 0.0025, 0.00125])


def test_cosine_schedule_warms_up_then_reaches_zero_at_the_last_step(tiny_config, monkeypatch):
    """Linear warm-up over 3 steps, then cosine down to 0 at the last step, which
    max_steps (7) sets, not the 3 epochs (15 steps)."""
    lrs: list[float] = []
    real = Trainer._step

    def step(self, *args, **kwargs):
        lrs.append(self.optimizer.param_groups[0]["lr"])  # the lr this step uses
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Trainer, "_step", step)
    settings = ["train.schedule=cosine", "train.warmup_steps=3", "train.max_steps=7"]
    lines = epochs(train(tiny_config, "cosine", *settings, "train.epochs=3"))
    c = math.cos
    by_hand = [1 / 3, 2 / 3, 1, 1, (1 + c(math.pi / 4)) / 2, 1 / 2, (1 + c(3 * math.pi / 4)) / 2]
    assert lrs == pytest.approx([0.01 * f for f in by_hand])
    assert lines[-1]["step"] == 7 and lines[-1]["lr"] == pytest.approx(0.0, abs=1e-12)


@pytest.fixture
def steps(monkeypatch) -> list[dict]:
    """Each optimiser step: how far it moved the parameters (L2 over all of them), its
    loss, its pre-clip gradient norm and its number of samples."""
    seen: list[dict] = []
    real = Trainer._step

    def step(self, *args, **kwargs):
        before = [p.detach().clone() for p in self.model.parameters()]
        loss, norm, n = real(self, *args, **kwargs)
        after = [p.detach() for p in self.model.parameters()]
        moved = math.sqrt(
            sum(float((a - b).square().sum()) for a, b in zip(after, before, strict=True))
        )
        seen.append({"loss": loss, "norm": norm, "n": n, "moved": moved})
        return loss, norm, n

    monkeypatch.setattr(Trainer, "_step", step)
    return seen


SGD = ["train.optimizer=sgd", "train.momentum=0", "train.lr=0.5", "train.epochs=1"]


@pytest.mark.parametrize("clip", [1e-3, 1e3, None])
def test_gradient_clipping_bounds_the_step(tiny_config: Path, steps: list[dict], clip):
    """Plain SGD moves the weights by lr * |gradient|; clipping caps |gradient| at
    ``grad_clip``, and the logged norm is the one before clipping."""
    run_dir = train(tiny_config, "clip", *SGD, f"train.grad_clip={clip or 'null'}")
    assert len(steps) == 5
    for s in steps:
        expected = 0.5 * (s["norm"] if clip is None else min(s["norm"], clip))
        assert s["moved"] == pytest.approx(expected, rel=1e-4), s
    if clip == 1e-3:
        assert all(s["norm"] > 1e-2 for s in steps)  # every step was clipped
    if clip == 1e3:
        assert all(s["norm"] < 1e3 for s in steps)  # no step was
    (line,) = epochs(run_dir)
    norms = [s["norm"] for s in steps]
    assert line["train_grad_norm"] == pytest.approx(sum(norms) / len(norms), rel=1e-6)
    clipped = sum(clip is not None and n > clip for n in norms) / len(norms)
    assert line["train_clipped"] == pytest.approx(clipped)


def test_train_loss_is_the_mean_over_samples_not_batches(tiny_config: Path, steps: list[dict]):
    (line,) = epochs(train(tiny_config, "mean", *SGD))
    assert [s["n"] for s in steps] == [16, 16, 16, 16, 6]
    by_sample = sum(s["loss"] * s["n"] for s in steps) / 70
    by_batch = sum(s["loss"] for s in steps) / 5
    assert abs(by_sample - by_batch) > 1e-3 * by_sample  # the data tell them apart
    assert line["train_loss"] == pytest.approx(by_sample, rel=1e-6)
    assert line["train_mse"] == pytest.approx(by_sample, rel=1e-5)


def test_scores_over_uneven_batches_equal_the_whole_split_at_once():
    config = parse_config({**TINY, "model": {**TINY["model"], "hidden_size": 4}})
    task = AddingTask(config.data)
    torch.manual_seed(0)
    model = build_model(config.model, task.io).eval()
    data = task.dataset("val")  # 32 samples: batches of 7, 7, 7, 7 and 4
    scores = evaluate(model, task, data, torch.device("cpu"), batch_size=7)
    whole = data.__getitems__(list(range(32)))
    with torch.no_grad():
        out = model(whole.inputs, whole.lengths)
    err = out - whole.targets
    assert scores["mse"] == pytest.approx(float(err.square().mean()), rel=1e-6)
    assert scores["mae"] == pytest.approx(float(err.abs().mean()), rel=1e-6)
    assert scores["loss"] == pytest.approx(float(F.mse_loss(out, whole.targets)), rel=1e-6)


def test_bucketing_reaches_the_training_batches(tmp_path: Path, monkeypatch):
    """A task's ``bucket`` must reach the sampler the trainer builds: with it, the
    training batches hold sources of similar length, so far less padding."""
    padding: list[float] = []
    real = Trainer._step

    def step(self, batch, *args, **kwargs):
        padding.append(1 - float(batch.lengths.sum()) / batch.inputs.numel())
        return real(self, batch, *args, **kwargs)

    monkeypatch.setattr(Trainer, "_step", step)
    mean = {}
    for bucket in (1, 8):
        config = {
            "task": "number_words",
            "data": {"max_number": 999, "n_train": 256, "n_val": 8, "n_test": 8, "bucket": bucket},
            "model": {"name": "seq2seq", "cell": "gru", "hidden_size": 4, "embedding_dim": 4},
            "train": {"epochs": 1, "batch_size": 32, "device": "cpu"},
            "output": {"dir": str(tmp_path), "name": f"bucket{bucket}", "tensorboard": False},
        }
        path = tmp_path / f"bucket{bucket}.yaml"
        path.write_text(json.dumps(config))
        result = runner.invoke(app, ["train", "-c", str(path)])
        assert result.exit_code == 0, result.output
        assert len(padding) == 8  # 256 samples in batches of 32
        mean[bucket] = sum(padding) / len(padding)
        padding.clear()
    assert mean[8] < 0.5 * mean[1], mean  # measured: 0.06 against 0.20


TAGGING = {
    "task": "tagging",
    "data": {"vocab_size": 12, "num_tags": 3, "min_len": 2, "max_len": 9,
             "n_train": 32, "n_val": 16, "n_test": 16},
    "model": {"name": "sequence_tagger", "hidden_size": 6, "embedding_dim": 4,
              "bidirectional": True},
    "train": {"epochs": 1, "batch_size": 8, "device": "cpu"},
    "output": {"tensorboard": False},
}  # fmt: skip


def test_training_steps_see_the_batch_lengths(tmp_path: Path, monkeypatch):
    """Each step's loss is the model's loss on its batch read with the batch's lengths
    (a bidirectional tagger: read without them, its reverse direction starts in the
    padding and every score moves)."""
    checked: list[float] = []
    real = Trainer._step

    def step(self, batch, *args, **kwargs):
        assert batch.lengths is not None and (batch.lengths < batch.inputs.shape[1]).any()
        with torch.no_grad():
            output = self.model(batch.inputs, batch.lengths)
            expected = float(self.task.loss(output.float(), batch))
        loss, norm, n = real(self, batch, *args, **kwargs)
        assert loss == pytest.approx(expected, rel=1e-5)
        checked.append(loss)
        return loss, norm, n

    monkeypatch.setattr(Trainer, "_step", step)
    config = {**TAGGING, "output": {**TAGGING["output"], "dir": str(tmp_path), "name": "tag"}}
    path = tmp_path / "tag.yaml"
    path.write_text(json.dumps(config))
    result = runner.invoke(app, ["train", "-c", str(path)])
    assert result.exit_code == 0, result.output
    assert len(checked) == 4


def test_scoring_reads_each_sequence_as_if_alone():
    """evaluate() in batches of 8 (padded to each batch's longest) gives every sentence
    the scores it gets scored alone (no padding at all), and so the same metrics and
    the same loss: each batch's mean token loss counts as many times as it has valid
    tokens (``Task.loss_weight``), not sentences."""
    config = parse_config(TAGGING)
    task = TASKS.get("tagging")(config.data)
    torch.manual_seed(0)
    model = build_model(config.model, task.io)
    scored: list[torch.Tensor] = []  # each sentence's scores at its valid steps, in order
    real = task.metrics

    def metrics(output, batch):
        scored.extend(o[:n] for o, n in zip(output, batch.lengths.tolist(), strict=True))
        return real(output, batch)

    task.metrics = metrics
    data, cpu = task.dataset("val"), torch.device("cpu")
    together = evaluate(model, task, data, cpu, 8)
    padded, scored[:] = list(scored), []
    alone = evaluate(model, task, data, cpu, 1)
    assert len(padded) == len(scored) == 16
    for a, b in zip(padded, scored, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    for name in together.keys() - {"loss"}:
        assert together[name] == alone[name], name
    assert together["loss"] == pytest.approx(alone["loss"], rel=1e-6)

"""Tagging (many-to-many, same length): the generated rule, masking, bidirectional context."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from typer.testing import CliRunner

from rnnzoo.cli import app
from rnnzoo.data.batches import Batch
from rnnzoo.data.tagging import IGNORE, context_tags
from rnnzoo.models import MODELS, build_model
from rnnzoo.tasks import ModelIO
from rnnzoo.tasks.tagging import TaggingTask

V, K = 12, 3


def tagger(bidirectional: bool, io: ModelIO, cell: str = "lstm") -> torch.nn.Module:
    args = MODELS.get("sequence_tagger").Args(
        name="sequence_tagger", cell=cell, hidden_size=8, num_layers=2,
        bidirectional=bidirectional, embedding_dim=6,
    )  # fmt: skip
    torch.manual_seed(0)
    return build_model(args, io).double()


def test_tags_follow_the_rule_written_as_a_loop():
    words, tags, lengths = context_tags(50, V, K, 2, 9, torch.Generator().manual_seed(0))
    assert words.shape == tags.shape == (50, 9)
    assert ((lengths >= 2) & (lengths <= 9)).all()
    for w, t, n in zip(words.tolist(), tags.tolist(), lengths.tolist(), strict=True):
        assert all(x == 0 for x in w[n:]) and all(y == IGNORE for y in t[n:])
        cls = [(x - 1) % K for x in w[:n]]
        for i, x in enumerate(w[:n]):
            if x <= V - V // 2:
                assert t[i] == cls[i]
            else:
                left = cls[i - 1] if i > 0 else 0
                right = cls[i + 1] if i + 1 < n else 0
                assert t[i] == (left + right) % K


def test_same_seed_same_sentences_and_splits_differ():
    task = TaggingTask(TaggingTask.Data(vocab_size=V, num_tags=K, n_train=20, n_val=20))
    a, b = task.dataset("train"), TaggingTask(task.data).dataset("train")
    assert torch.equal(a.inputs, b.inputs) and torch.equal(a.targets, b.targets)
    assert not torch.equal(task.dataset("val").inputs, a.inputs)


def test_batches_are_cut_to_their_longest_sentence():
    task = TaggingTask(TaggingTask.Data(vocab_size=V, num_tags=K, min_len=2, max_len=30))
    data = task.dataset("val")
    batch = data.__getitems__([0, 1, 2])
    assert batch.inputs.shape[1] == int(batch.lengths.max()) <= 30


def test_config_checks_sizes():
    with pytest.raises(ValueError, match="min_len"):
        TaggingTask.Data(min_len=10, max_len=5)
    with pytest.raises(ValueError, match="2 \\* num_tags"):
        TaggingTask.Data(vocab_size=6, num_tags=4)


def padded(batch: Batch, extra: int, word: int) -> Batch:
    """The same sentences with ``extra`` more padded steps holding ``word``."""
    pad = torch.full((len(batch), extra), word, dtype=batch.inputs.dtype)
    inputs = torch.cat([batch.inputs, pad], dim=1)
    steps = torch.arange(inputs.shape[1])[None, :]
    inputs = torch.where(steps < batch.lengths[:, None], inputs, pad[:, :1])
    targets = torch.cat([batch.targets, torch.full_like(pad, IGNORE)], dim=1)
    return Batch(inputs, targets, batch.lengths)


@pytest.mark.parametrize("bidirectional", [False, True])
def test_padded_steps_contribute_nothing_to_loss_or_metrics(bidirectional):
    task = TaggingTask(TaggingTask.Data(vocab_size=V, num_tags=K, min_len=2, max_len=9))
    batch = task.dataset("train").__getitems__(list(range(8)))
    model = tagger(bidirectional, task.io)
    out = model(batch.inputs, batch.lengths)
    longer = padded(batch, 4, word=5)  # padding with a real word id, not just 0
    out2 = model(longer.inputs, longer.lengths)
    valid = batch.targets != IGNORE
    torch.testing.assert_close(out2[:, : out.shape[1]][valid], out[valid])
    # whatever the model says at padded steps is not scored
    out2 = torch.where((longer.targets == IGNORE)[..., None], torch.randn_like(out2) * 50, out2)
    torch.testing.assert_close(task.loss(out2, longer), task.loss(out, batch))
    for name, (total, count) in task.metrics(out, batch).items():
        total2, count2 = task.metrics(out2, longer)[name]
        assert (int(total2), int(count2)) == (int(total), int(count)), name


def test_metrics_against_a_hand_count():
    inputs = torch.tensor([[1, 12, 2, 0], [7, 3, 0, 0]])  # 12 and 7 are ambiguous (V = 12)
    targets = torch.tensor([[0, 1, 1, IGNORE], [2, 2, IGNORE, IGNORE]])
    guess = torch.tensor([[0, 2, 1, 1], [2, 2, 0, 0]])  # 4 of 5 right; one ambiguous wrong
    output = torch.nn.functional.one_hot(guess, K).double()
    task = TaggingTask(TaggingTask.Data(vocab_size=V, num_tags=K))
    sums = task.metrics(output, Batch(inputs, targets, torch.tensor([3, 2])))
    got = {k: (int(a), int(b)) for k, (a, b) in sums.items()}
    assert got == {"accuracy": (4, 5), "ambiguous_accuracy": (1, 2), "sentence_accuracy": (1, 2)}


@pytest.mark.parametrize("cell", ["rnn_tanh", "lstm", "gru"])
def test_only_a_bidirectional_tagger_reads_words_after_step_t(cell):
    io = ModelIO(input_size=5, output_size=K, output="per_step")  # features: a gradient to x
    x = torch.randn(2, 7, 5, dtype=torch.float64, requires_grad=True)
    t = 3
    for bidirectional in (False, True):
        x.grad = None
        tagger(bidirectional, io, cell)(x)[:, t].sum().backward()
        later = x.grad[:, t + 1 :].abs().sum()
        assert (later > 0) if bidirectional else (later == 0), (bidirectional, float(later))
        assert x.grad[:, : t + 1].abs().sum() > 0


def test_train_eval_predict_through_the_cli(tmp_path: Path):
    config = {
        "task": "tagging",
        "data": {"vocab_size": V, "num_tags": K, "min_len": 2, "max_len": 8,
                 "n_train": 64, "n_val": 32, "n_test": 32},
        "model": {"name": "sequence_tagger", "hidden_size": 8, "bidirectional": True},
        "train": {"epochs": 2, "batch_size": 16, "device": "cpu"},
        "output": {"dir": str(tmp_path), "name": "tag", "tensorboard": False},
    }  # fmt: skip
    path = tmp_path / "tag.yaml"
    path.write_text(yaml.safe_dump(config))
    runner = CliRunner()
    result = runner.invoke(app, ["train", "--config", str(path)])
    assert result.exit_code == 0, result.output
    run = tmp_path / "tag"
    result = runner.invoke(app, ["eval", str(run), "--split", "test"])
    assert result.exit_code == 0, result.output
    scores = json.loads((run / "eval_test.json").read_text())
    assert 0 <= scores["ambiguous_accuracy"] <= 1 and 0 <= scores["sentence_accuracy"] <= 1
    result = runner.invoke(app, ["predict", str(run), "3 12 5"])
    assert result.exit_code == 0, result.output
    pairs = result.output.split()
    assert [p.split("/")[0] for p in pairs] == ["3", "12", "5"]
    assert all(0 <= int(p.split("/")[1]) < K for p in pairs)
    result = runner.invoke(app, ["eval", str(run), "--beam-width", "2"])  # nothing to decode
    assert result.exit_code == 2 and "model.beam_width" in result.output, result.output
    for bad in ("3 13", "three"):
        result = runner.invoke(app, ["predict", str(run), bad])
        assert result.exit_code == 2 and "word ids" in result.output, result.output

"""Review generation (one-to-many): sampling, the condition, the loss, the vocabulary, CLI."""

from __future__ import annotations

import json
import math
import tarfile
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import yaml
from typer.testing import CliRunner

from rnnzoo.cli import app
from rnnzoo.config import ConfigError, parse_config
from rnnzoo.data import imdb
from rnnzoo.data.batches import Batch
from rnnzoo.models import build_model
from rnnzoo.models.generator import ConditionalGenerator
from rnnzoo.tasks import ModelIO
from rnnzoo.tasks.review_generation import BOS, EOS, PAD, UNK, ReviewGenerationTask
from tests.test_imdb import add

runner = CliRunner()
V = 12
IO = ModelIO(input_size=0, vocab_size=V, output_size=V, output="next_token", num_conditions=2)
GOOD = "a great film, loved it. "
BAD = "an awful film, hated it. "


def generator(cell: str = "lstm", **kwargs) -> ConditionalGenerator:
    torch.manual_seed(0)
    args = ConditionalGenerator.Args(cell=cell, hidden_size=8, embedding_dim=6, **kwargs)
    model = build_model(args, IO)
    assert isinstance(model, ConditionalGenerator)
    return model.eval()


def make_archive(path: Path, n: int = 8) -> Path:
    """Train reviews only, each holding one character no other review has (from U+0100),
    so that where a character landed (train or val) shows in the vocabulary."""
    with tarfile.open(path, "w:gz") as tar:
        for i in range(n):
            for j, (polarity, text) in enumerate((("pos", GOOD), ("neg", BAD))):
                unique = chr(0x100 + 2 * i + j)
                body = f"{text * (1 + i % 3)}{unique}<br />the end".encode()
                add(tar, f"aclImdb/train/{polarity}/{i}_{8 if j == 0 else 2}.txt", body)
    return path


@pytest.fixture
def archive(tmp_path: Path, monkeypatch) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return make_archive(tmp_path / "train.tar.gz")


def data(archive: Path, **kwargs) -> ReviewGenerationTask.Data:
    keys = {"path": str(archive), "val_fraction": 0.25, "min_frequency": 1, "bucket": 1}
    return ReviewGenerationTask.Data(**{**keys, **kwargs})


# -- sampling -------------------------------------------------------------------------


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_a_seed_repeats_a_sample_and_another_seed_does_not(cell):
    model = generator(cell)
    conditions = torch.tensor([0, 1, 1])

    def sample(seed: int) -> torch.Tensor:
        return model.generate(conditions, 30, 1.0, torch.Generator().manual_seed(seed), stop=None)

    assert sample(0).shape == (3, 30)
    assert torch.equal(sample(0), sample(0))
    assert not torch.equal(sample(0), sample(1))
    assert not ({PAD, BOS} & set(sample(2).flatten().tolist()))  # never drawn


def test_temperature_zero_is_greedy_and_a_tiny_one_matches_it():
    model = generator("gru", condition_each_step=True)
    conditions = torch.tensor([0, 1])
    # greedy decoding computed independently: the full forward pass over the prefix
    prefix = torch.tensor([[0, BOS], [1, BOS]])
    for _ in range(15):
        scores = model(prefix)[:, -1]  # (N, V)
        scores[:, [PAD, BOS]] = float("-inf")
        prefix = torch.cat([prefix, scores.argmax(-1, keepdim=True)], dim=1)
    greedy = prefix[:, 2:]
    torch.testing.assert_close(model.generate(conditions, 15, 0.0, stop=None), greedy)
    tiny = model.generate(conditions, 15, 1e-4, torch.Generator().manual_seed(3), stop=None)
    torch.testing.assert_close(tiny, greedy)


def test_generation_stops_at_eos_and_pads_after_it():
    model = generator()
    with torch.no_grad():  # make EOS the likeliest token everywhere but at the start
        model.head[1].bias[EOS] = 5.0
    out = model.generate(torch.tensor([0, 1]), 20, 0.0, stop=EOS)
    assert out.shape == (2, 1) and (out == EOS).all()
    prompted = model.generate(torch.tensor([1]), 20, 0.0, prompt=torch.tensor([4, 5]))
    assert prompted.tolist() == [[EOS]]


# -- the condition, the loss ------------------------------------------------------------


@pytest.mark.parametrize("each_step", [False, True])
def test_the_condition_changes_the_scores(each_step):
    model = generator(condition_each_step=each_step)
    x = torch.randint(4, V, (1, 7))
    x[:, 0] = 0
    y = x.clone()
    y[:, 0] = 1
    assert not torch.allclose(model(x), model(y))
    assert torch.equal(model(x), model(x.clone()))


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn_tanh"])
def test_every_parameter_gets_a_gradient(cell):
    model = generator(cell, num_layers=2, condition_each_step=True).train()
    x = torch.randint(4, V, (3, 6))
    x[:, 0] = torch.tensor([0, 1, 0])
    out = model(x, torch.tensor([5, 2, 4]))
    assert out.shape == (3, 5, V) and torch.isfinite(out).all()
    out.square().sum().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_bidirectional_generator_is_a_config_error():
    raw = {"task": "review_generation", "data": {}, "model": {
        "name": "conditional_generator", "bidirectional": True}}  # fmt: skip
    with pytest.raises(ConfigError, match=r"model\.bidirectional.*left to right"):
        parse_config(raw)


def test_padding_adds_nothing_and_the_loss_is_the_hand_computed_cross_entropy(archive):
    task = ReviewGenerationTask(data(archive))
    model = generator("lstm")
    inputs = torch.tensor([[1, BOS, 5, 6, 7], [0, BOS, 8, 0, 0]])  # (B, 1 + T)
    targets = torch.tensor([[5, 6, 7, EOS], [8, 9, 0, 0]])  # (B, T)
    lengths = torch.tensor([4, 2])
    batch = Batch(inputs, targets, lengths)
    logits = model(inputs, lengths)
    loss = task.loss(logits, batch)
    by_hand = []
    for b, n in enumerate(lengths.tolist()):
        for t in range(n):
            log_p = logits[b, t] - torch.logsumexp(logits[b, t], dim=0)
            by_hand.append(-log_p[targets[b, t]])
    torch.testing.assert_close(loss, torch.stack(by_hand).mean())
    total, count = task.metrics(logits, batch)["ce"]
    assert int(count) == 6
    torch.testing.assert_close(total, torch.stack(by_hand).sum())
    # three more padded steps, with junk where the inputs are padded: nothing changes
    junk = torch.cat([inputs, torch.full((2, 3), 9)], dim=1)
    junk[1, 3:] = 9
    longer = Batch(junk, F.pad(targets, (0, 3)), lengths)
    torch.testing.assert_close(task.loss(model(junk, lengths), longer), loss)
    means = task.finish({"ce": 1.5})
    assert means["perplexity"] == pytest.approx(math.exp(1.5))
    assert means["bits_per_char"] == pytest.approx(1.5 / math.log(2))


# -- the data -------------------------------------------------------------------------


def test_batches_pack_the_condition_then_bos_and_the_shifted_characters(archive):
    task = ReviewGenerationTask(data(archive, max_chars=30))
    task.prepare()
    reviews = task._reviews("train")
    batch = task.dataset("train").__getitems__([0, 1])  # type: ignore[attr-defined]
    for b, review in enumerate(reviews[:2]):
        text = review.text[:30]
        ids = task.vocab.encode(text) + ([EOS] if len(review.text) <= 30 else [])
        n, pad = len(ids), [PAD] * (batch.targets.shape[1] - len(ids))
        assert int(batch.lengths[b]) == n
        assert batch.inputs[b, 0] == review.label
        assert batch.inputs[b, 1:].tolist() == [BOS, *ids[:-1], *pad]
        assert batch.targets[b].tolist() == ids + pad
        assert task.vocab.decode(batch.targets[b].tolist()) == text
    assert all("<br" not in r.text for r in reviews)
    short = task.encode(["ok"])[0].tolist()
    assert short[-1] == EOS and len(short) == 3  # the review ended: EOS


def test_the_vocabulary_is_fitted_on_train_only_and_round_trips(archive, tmp_path: Path):
    task = ReviewGenerationTask(data(archive, max_chars=500))
    task.prepare()
    train, val = task._reviews("train"), task._reviews("val")
    in_train = {c for r in train for c in r.text}
    only_val = {c for r in val for c in r.text} - in_train
    assert len(val) == 4 and len(only_val) == 4  # each val review has its own character
    assert set(task.vocab.chars) == in_train
    assert task.vocab.chars[0] == " "  # most frequent first
    val_ids = task.encode([r.text for r in val])
    assert all(UNK in ids.tolist() for ids in val_ids)
    task.save_state(tmp_path)
    again = ReviewGenerationTask(data(archive, max_chars=500))
    again.load_state(tmp_path)
    assert again.io == task.io and task.io.vocab_size == len(in_train) + 4
    for a, b in zip(val_ids, again.encode([r.text for r in val]), strict=True):
        assert torch.equal(a, b)
    small = ReviewGenerationTask(data(archive, vocab_size=7, min_frequency=1))
    small.prepare()
    assert len(small.vocab) == 7
    assert json.loads((tmp_path / "chars.json").read_text())["chars"] == task.vocab.chars


# -- end to end -----------------------------------------------------------------------


def test_train_eval_predict_through_the_cli(archive: Path, tmp_path: Path):
    raw = {
        "task": "review_generation",
        "data": {"path": str(archive), "val_fraction": 0.25, "max_chars": 40,
                 "vocab_size": 40, "min_frequency": 1, "bucket": 1},
        "model": {"name": "conditional_generator", "cell": "lstm", "embedding_dim": 8,
                  "hidden_size": 8},
        "train": {"epochs": 1, "batch_size": 4, "lr": 0.01, "device": "cpu"},
        "output": {"dir": str(tmp_path / "runs"), "name": "gen", "tensorboard": False},
    }  # fmt: skip
    config = tmp_path / "gen.yaml"
    config.write_text(yaml.safe_dump(raw))
    result = runner.invoke(app, ["train", "-c", str(config)])
    assert result.exit_code == 0, result.output
    run = tmp_path / "runs" / "gen"
    assert (run / "chars.json").is_file()
    assert imdb.read_split(archive, "train")  # a train-only archive: no test score
    assert "no test split" in result.output

    result = runner.invoke(app, ["eval", str(run), "--split", "val"])
    assert result.exit_code == 0, result.output
    scores = json.loads(result.output)
    assert scores["perplexity"] == pytest.approx(math.exp(scores["ce"]))
    assert 1 < scores["perplexity"] < 40

    ask = ["predict", str(run), "--label", "pos", "--max-len", "50", "--seed", "0"]
    first, second = runner.invoke(app, ask), runner.invoke(app, ask)
    assert first.exit_code == 0, first.output
    assert first.output == second.output and "pos sample 1/1" in first.output
    result = runner.invoke(app, [*ask[:3], "negative", "--samples", "2", "--temperature", "0"])
    assert result.exit_code == 0, result.output
    assert "neg sample 2/2" in result.output
    result = runner.invoke(app, [*ask[:2], "a great", "--label", "pos", "--max-len", "5"])
    assert result.exit_code == 0 and result.output.splitlines()[1].startswith("a great")

    result = runner.invoke(app, [*ask[:3], "maybe"])
    assert result.exit_code == 2, result.output
    assert "'maybe'" in result.output and "neg, pos" in result.output
    result = runner.invoke(app, ask[:2])
    assert result.exit_code == 2 and "give --label" in result.output

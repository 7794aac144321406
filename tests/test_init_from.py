"""``model.init_from``: a new run starts from another run's weights and tokenizer.

The source is a tiny text classifier trained once for the module (a GRU on a table of
three classes, ``tests/test_text_classification.py``'s rows); the targets start from it
with another shape (bidirectional) or break a rule on purpose.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
import yaml

from rnnzoo import checkpoint
from rnnzoo.config import parse_config
from rnnzoo.models import build_model
from rnnzoo.tasks import TASKS
from tests.test_bad_input import ADDING, assert_user_error, invoke, unchanged
from tests.test_imdb import make_archive
from tests.test_pos_tagging import pos_config, write_treebank
from tests.test_text_classification import rows, write_csv

CLASSIFIER = {
    "task": "text_classification",
    "data": {"path": "t.csv", "text_column": "body", "label_column": "label",
             "vocab_size": 40, "min_frequency": 1, "max_len": 12},
    "model": {"name": "sequence_classifier", "cell": "gru", "embedding_dim": 8,
              "hidden_size": 8, "pooling": "last"},
    "train": {"epochs": 1, "batch_size": 8, "lr": 0.02, "device": "cpu", "seed": 3},
    "output": {"tensorboard": False, "dir": "runs"},
}  # fmt: skip


def write(root: Path, name: str, config: dict) -> Path:
    path = root / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def flags(*sets: str) -> list[str]:
    """``--set`` before each ``key=value``."""
    return [a for s in sets for a in ("--set", s)]


def train(root: Path, config: str, name: str, *sets: str) -> str:
    """``rnnzoo train`` from ``root`` (relative paths are the user's), which must succeed;
    its output."""
    result = invoke("train", "-c", f"{config}.yaml", *flags(f"output.name={name}", *sets), cwd=root)
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    """A user's folder: a table, configs, and two finished runs to start from:
    ``runs/src`` (the classifier) and ``runs/adding`` (a GRU with no tokenizer)."""
    root = tmp_path_factory.mktemp("init_from")
    write_csv(root / "t.csv", rows(60))
    write(root, "tc", CLASSIFIER)
    write(root, "adding", {**ADDING, "output": {"tensorboard": False, "dir": "runs"}})
    train(root, "tc", "src")
    train(root, "adding", "adding", "train.epochs=1")
    return root


def test_a_new_run_copies_what_fits_and_keeps_the_rest_initialised(root: Path):
    """A bidirectional classifier from a unidirectional one: the embedding and the
    forward direction are copied, the reverse direction and the head's weight (twice as
    wide) keep the seeded initialisation; the tokenizer is the source's, although this
    config would fit another (vocab_size 15). Every rate is 0 here, so best.pt holds
    the weights as they were before the first step."""
    out = train(
        root, "tc", "bi", "model.init_from=runs/src", "model.bidirectional=true",
        "data.vocab_size=15", "train.lr_multipliers={'': 0}",
    )  # fmt: skip
    run, src = root / "runs" / "bi", root / "runs" / "src"
    source = checkpoint.load(src / "checkpoints" / "best.pt")["model"]
    start = checkpoint.load(run / "checkpoints" / "best.pt")["model"]

    forward = ["rnn.weight_ih_l0", "rnn.weight_hh_l0", "rnn.bias_ih_l0", "rnn.bias_hh_l0"]
    copied = ["embedding.weight", *forward, "head.1.bias"]
    reverse = [f"{name}_reverse" for name in forward]
    for name in copied:
        assert torch.equal(start[name], source[name]), name
    # the rest: what a seeded build of this config gives, with the source's tokenizer
    raw = yaml.safe_load((run / "config.yaml").read_text())
    raw["model"]["init_from"] = None
    raw["data"]["path"] = str(root / "t.csv")
    config = parse_config(raw)
    task = TASKS.get(config.task)(config.data)
    task.adopt_state(src)
    task.prepare()
    checkpoint.seed_everything(config.train.seed)
    fresh = build_model(config.model, task.io).state_dict()
    for name in [*reverse, "head.1.weight"]:
        assert torch.equal(start[name], fresh[name]), name
        assert not torch.equal(start[name], source.get(name, torch.zeros(0))), name

    values = sum(source[name].numel() for name in copied)
    assert f"init_from runs/src: copied {', '.join(copied)} (6 tensors, {values:,} values)" in out
    assert f"init_from runs/src: left initialised: {', '.join(reverse)} (4 tensors" in out
    assert "left initialised (shape differs): head.1.weight 3x16 (source 3x8)" in out
    vocab = json.loads((src / "tokenizer.json").read_text())["model"]["vocab"]
    assert f"tokenizer from runs/src (vocabulary {len(vocab)}), not fitted on this run" in out
    assert (run / "tokenizer.json").read_bytes() == (src / "tokenizer.json").read_bytes()

    record = json.loads((run / "run.json").read_text())
    assert "tokenizer.json" in record["files"]  # saved as the run's own, and vouched for
    assert record["init_from"] == {
        "run": "runs/src",
        "checkpoint": "checkpoints/best.pt",
        "sha256": record["init_from"]["sha256"],
        "copied": copied,
        "initialised": [*reverse, "head.1.weight"],
        "shape_differs": {"head.1.weight": {"here": [3, 16], "source": [3, 8]}},
    }
    assert len(record["init_from"]["sha256"]) == 64
    assert yaml.safe_load((run / "config.yaml").read_text())["model"]["init_from"] == "runs/src"


def test_a_resumed_run_goes_on_from_its_own_weights_and_never_reads_the_source(
    root: Path, tmp_path: Path
):
    src = tmp_path / "src"
    shutil.copytree(root / "runs" / "src", src)
    train(root, "tc", "straight", f"model.init_from={src}", "train.epochs=2")
    train(root, "tc", "resumed", f"model.init_from={src}", "train.epochs=2", "train.max_steps=3")
    shutil.rmtree(src)  # a resume that read the source would fail now
    result = invoke("train", "--resume", "runs/resumed", "--set", "train.max_steps=null", cwd=root)
    assert result.exit_code == 0, result.output
    assert "init_from" not in result.output
    straight, resumed = (
        checkpoint.load(root / "runs" / name / "checkpoints" / "last.pt")
        for name in ("straight", "resumed")
    )
    assert resumed["progress"]["step"] == straight["progress"]["step"] == 12
    for name, weight in straight["model"].items():  # not copied again halfway
        assert torch.equal(weight, resumed["model"][name]), name


def damaged(root: Path, tmp_path: Path, how: str) -> Path:
    """A copy of the source run, broken as ``how`` says."""
    src = tmp_path / "src"
    shutil.copytree(root / "runs" / "src", src)
    best = src / "checkpoints" / "best.pt"
    if how == "no best.pt":
        best.unlink()
    elif how == "damaged":
        best.write_bytes(best.read_bytes()[:-10] + b"0123456789")
    elif how == "tokenizer edited":
        path = src / "tokenizer.json"
        path.write_text(path.read_text().replace('"goal"', '"gaol"'))
    return src


@pytest.mark.parametrize(
    ("config", "source", "sets", "expected"),
    [
        ("tc", "nope", [], ["run folder not found"]),
        ("tc", "no best.pt", [], ["has no checkpoints/best.pt"]),
        ("tc", "damaged", [], ["best.pt was modified or is corrupt"]),
        ("tc", "tokenizer edited", [], ["tokenizer.json was modified or is corrupt"]),
        ("tc", "runs/src", ["model.cell=lstm"], ["'gru' cell", "model.cell is 'lstm'"]),
        ("adding", "runs/src", [], ["no tensor of runs/src", "rnn.weight_ih_l0, rnn.weight_hh"]),
        ("tc", "runs/adding", [], ["runs/adding has no tokenizer.json"]),
    ],
    ids=["not a run", "no best.pt", "damaged", "tokenizer edited", "cell", "nothing fits",
         "no tokenizer"],
)  # fmt: skip
def test_a_source_that_cannot_be_used_is_one_error_and_writes_nothing(
    root: Path, tmp_path: Path, config: str, source: str, sets: list[str], expected: list[str]
):
    if source in ("no best.pt", "damaged", "tokenizer edited"):
        source = str(damaged(root, tmp_path, source))
    args = flags(f"model.init_from={source}", "output.name=x", *sets)
    with unchanged(root), unchanged(tmp_path):
        result = invoke("train", "-c", f"{config}.yaml", *args, cwd=root)
    assert_user_error(result, "model.init_from", *expected)


def test_a_source_of_another_vocabulary_is_an_error(tmp_path: Path):
    """A task that does not share its vocabulary (pos_tagging's couples words and tags)
    with one fitted differently: the embedding's rows mean other words."""
    write_treebank(tmp_path)
    config = pos_config(tmp_path, char_encoder="none", bidirectional=False)
    config["train"]["epochs"] = 1
    path = write(tmp_path, "pos", config)
    result = invoke("train", "-c", path)
    assert result.exit_code == 0, result.output
    src = tmp_path / "runs" / "pos"
    sets = [f"model.init_from={src}", "output.name=fewer", "data.min_frequency=1000"]
    with unchanged(tmp_path):
        result = invoke("train", "-c", path, *flags(*sets))
    rows_there = checkpoint.load(src / "checkpoints" / "best.pt")["model"]["embedding.0.weight"]
    assert_user_error(
        result, "model.init_from", f"embedding.0.weight has {rows_there.shape[0]} rows",
        "the tokenizer must come from the same run",
    )  # fmt: skip


# -- the shipped pipeline: imdb_lm, then imdb_pretrained ----------------------------------


def test_the_shipped_classifier_without_its_language_model_is_one_error(tmp_path: Path):
    with unchanged(tmp_path):
        result = invoke("train", "-c", "imdb_pretrained", cwd=tmp_path)
    assert_user_error(result, "model.init_from: run folder not found: runs/imdb_lm")


def test_the_shipped_classifier_trains_from_a_run_of_its_shape(tmp_path: Path, monkeypatch):
    """imdb_pretrained made tiny, from a stand-in for imdb_lm (a classifier of the same
    cell and sizes: what it takes is the embedding and the LSTM): it copies them and
    trains with the config's rate groups."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    archive = make_archive(tmp_path / "aclImdb_v1.tar.gz")
    tiny = [f"data.path={archive}", "data.vocab_size=100", "data.min_frequency=1",
            "data.max_len=16", "model.embedding_dim=8", "model.hidden_size=8",
            "train.batch_size=4", "train.warmup_steps=2", "train.max_minutes=null",
            "train.epochs=3", "train.device=cpu", "output.tensorboard=false"]  # fmt: skip
    stand_in = [*tiny, "model.init_from=null", "train.lr_multipliers={}",
                "train.unfreeze_epochs={}", "train.epochs=1", "output.name=imdb_lm"]  # fmt: skip
    result = invoke("train", "-c", "imdb_pretrained", *flags(*stand_in), cwd=tmp_path)
    assert result.exit_code == 0, result.output
    result = invoke(
        "train", "-c", "imdb_pretrained", *flags(*tiny, "output.name=cls"), cwd=tmp_path
    )
    assert result.exit_code == 0, result.output
    assert "init_from runs/imdb_lm: copied embedding.weight, rnn.*, head.*" in result.output
    groups = checkpoint.load(tmp_path / "runs" / "cls" / "checkpoints" / "last.pt")["optimizer"]
    # train.lr, then the embedding at its multiplier (the shipped config's)
    assert [g["initial_lr"] for g in groups["param_groups"]] == pytest.approx([1e-3, 5e-4])
    lines = [json.loads(x) for x in (tmp_path / "runs" / "cls" / "metrics.jsonl").open()]
    assert len(lines) == 3

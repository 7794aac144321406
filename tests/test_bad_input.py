"""Mistakes and misuses a new user makes, one test each, through the CLI.

Every case checks the same four things: the exit code (2 for a mistake the user can
fix), no traceback, one ``error:`` line that names the thing at fault, and every file
that existed before (the user's and the run folder's) byte-identical afterwards, with
no new file left behind by a command that failed.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import yaml
from typer.testing import CliRunner, Result

from rnnzoo.cli import app
from rnnzoo.trainer import Trainer

runner = CliRunner()

ADDING = {
    "task": "adding",
    "data": {"seq_len": 6, "n_train": 48, "n_val": 16, "n_test": 16, "seed": 0},
    "model": {"name": "many_to_one", "cell": "gru", "hidden_size": 4},
    "train": {"epochs": 2, "batch_size": 16, "lr": 0.01, "seed": 0, "device": "cpu"},
    "output": {"tensorboard": False},
}


# -- helpers ------------------------------------------------------------------------


def invoke(*args: object, cwd: Path | None = None) -> Result:
    with contextlib.chdir(cwd) if cwd else contextlib.nullcontext():
        return runner.invoke(app, [str(a) for a in args])


def snapshot(root: Path) -> dict[str, bytes | None]:
    """Every file (its bytes) and folder (None) below ``root``, hidden ones too."""
    return {
        str(p.relative_to(root)): (p.read_bytes() if p.is_file() else None)
        for p in sorted(root.rglob("*"))
    }


@contextlib.contextmanager
def unchanged(root: Path) -> Iterator[None]:
    """Assert that nothing below ``root`` is written, changed, added or removed."""
    before = snapshot(root)
    yield
    after = snapshot(root)
    assert sorted(after) == sorted(before), "files added or removed"
    changed = [name for name in before if before[name] != after[name]]
    assert not changed, f"changed: {changed}"


def assert_user_error(result: Result, *names: str, code: int = 2) -> str:
    """Exit ``code``, no traceback, exactly one ``error:`` line, naming each of ``names``."""
    out = result.output
    assert result.exit_code == code, out
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(
        result.exception
    )
    assert "Traceback" not in out, out
    errors = [line for line in out.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, out
    for name in names:
        assert name in out, (name, out)
    return out


def write_config(path: Path, config: dict, runs: Path) -> Path:
    config = {**config, "output": {**config.get("output", {}), "dir": str(runs)}}
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture
def work(tmp_path: Path, monkeypatch) -> Path:
    """A user's folder with a tiny config; the cache stays inside it."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    write_config(tmp_path / "tiny.yaml", ADDING, tmp_path / "runs")
    return tmp_path


def edit(work: Path, **sections: dict) -> Path:
    """``tiny.yaml`` with some keys of its sections replaced."""
    config = yaml.safe_load((work / "tiny.yaml").read_text())
    for name, values in sections.items():
        config[name] = {**config.get(name, {}), **values}
    path = work / "edited.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def train_once(root: Path, config: dict) -> Path:
    """A finished run of ``config`` at ``root/runs/run``."""
    path = write_config(root / "config.yaml", config, root / "runs")
    result = invoke("train", "-c", path, "--set", "output.name=run")
    assert result.exit_code == 0, result.output
    return root / "runs" / "run"


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """One finished adding run, trained once; tests take copies."""
    return train_once(tmp_path_factory.mktemp("trained"), ADDING)


@pytest.fixture
def run(trained: Path, tmp_path: Path) -> Path:
    """A copy of the finished run, free to damage."""
    return Path(shutil.copytree(trained, tmp_path / "run"))


def forecast_csv(path: Path, n: int = 80, bad: str | None = None) -> Path:
    lines = ["t,x"] + [f"{i},{(i % 7) * 1.5 + i * 0.1:.2f}" for i in range(n)]
    if bad is not None:
        lines[30] = f"29,{bad}"  # line 31 of the file
    path.write_text("\n".join(lines) + "\n")
    return path


FORECAST = {
    "task": "forecast",
    "data": {"target": "x", "mode": "S", "input_len": 6, "horizon": 2, "season": 1,
             "protocol": "ratios", "splits": [0.6, 0.2, 0.2]},
    "model": {"name": "forecaster", "cell": "gru", "hidden_size": 4},
    "train": {"epochs": 1, "batch_size": 16, "device": "cpu"},
    "output": {"tensorboard": False},
}  # fmt: skip


@pytest.fixture(scope="module")
def forecast_run(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("forecast")
    csv = forecast_csv(root / "s.csv")
    return train_once(root, {**FORECAST, "data": {**FORECAST["data"], "path": str(csv)}})


def imdb_archive(path: Path) -> Path:
    texts = {"pos": ["a great film", "wonderful, loved it"], "neg": ["awful mess", "dull, bad"]}
    with tarfile.open(path, "w:gz") as tar:
        for split in ("train", "test"):
            for label, examples in texts.items():
                for i in range(8):
                    data = examples[i % 2].encode()
                    info = tarfile.TarInfo(
                        f"aclImdb/{split}/{label}/{i}_{8 if label == 'pos' else 2}.txt"
                    )
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
    return path


IMDB = {
    "task": "imdb",
    "data": {"val_fraction": 0.25, "vocab_size": 50, "min_frequency": 1, "max_len": 8},
    "model": {"name": "sequence_classifier", "cell": "gru", "embedding_dim": 4,
              "hidden_size": 4},
    "train": {"epochs": 1, "batch_size": 8, "device": "cpu"},
    "output": {"tensorboard": False},
}  # fmt: skip


@pytest.fixture(scope="module")
def imdb_run(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("imdb")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("XDG_CACHE_HOME", str(root / "cache"))
        archive = imdb_archive(root / "aclImdb_v1.tar.gz")
        return train_once(root, {**IMDB, "data": {**IMDB["data"], "path": str(archive)}})


# -- the config file ------------------------------------------------------------------


def test_config_file_missing(work: Path):
    with unchanged(work):
        assert_user_error(invoke("train", "-c", work / "nope.yaml"), "nope.yaml", "not found")


def test_config_is_a_folder(work: Path):
    (work / "configs").mkdir()
    with unchanged(work):
        assert_user_error(invoke("train", "-c", work / "configs"), "configs", "folder")


@pytest.mark.parametrize(
    ("name", "content", "named"),
    [
        ("latin.yaml", "task: adding  # caf\xe9\n".encode("latin-1"), "UTF-8"),
        ("broken.yaml", b"task: adding\nmodel: {name: many_to_one\ntrain: {}\n", "line"),
        ("list.yaml", b"- task: adding\n", "mapping"),
        ("empty.yaml", b"", "mapping"),
    ],
    ids=["latin-1", "yaml-syntax", "a-list", "empty"],
)
def test_a_config_file_that_is_not_a_config(work: Path, name: str, content: bytes, named: str):
    (work / name).write_bytes(content)
    with unchanged(work):
        assert_user_error(invoke("train", "-c", work / name), name, named)


def test_config_with_a_section_twice(work: Path):
    text = (work / "tiny.yaml").read_text() + "model:\n  name: many_to_one\n  cell: lstm\n"
    (work / "twice.yaml").write_text(text)
    with unchanged(work):
        out = assert_user_error(invoke("train", "-c", work / "twice.yaml"), "'model'", "twice")
    assert "line" in out


def test_misspelt_key_suggests_the_right_one(work: Path):
    config = yaml.safe_load((work / "tiny.yaml").read_text())
    config["train"]["lrr"] = config["train"].pop("lr")
    (work / "typo.yaml").write_text(yaml.safe_dump(config))
    with unchanged(work):
        assert_user_error(invoke("train", "-c", work / "typo.yaml"), "train.lrr", "'lr'")


def test_boolean_where_a_number_is_expected(work: Path):
    config = edit(work, train={"epochs": True})
    with unchanged(work):
        assert_user_error(invoke("train", "-c", config), "train.epochs")


@pytest.mark.parametrize("value", [".inf", ".nan"])
def test_non_finite_number_in_the_config(work: Path, value: str):
    with unchanged(work):
        result = invoke("train", "-c", work / "tiny.yaml", "--set", f"train.lr={value}")
        assert_user_error(result, "train.lr", "finite")


def test_negative_learning_rate(work: Path):
    config = edit(work, train={"lr": -1.0})
    with unchanged(work):
        assert_user_error(invoke("train", "-c", config), "train.lr")


def test_zero_batch_size(work: Path):
    config = edit(work, train={"batch_size": 0})
    with unchanged(work):
        assert_user_error(invoke("train", "-c", config), "batch_size")


def test_unknown_task(work: Path):
    config = yaml.safe_load((work / "tiny.yaml").read_text())
    config["task"] = "addding"
    (work / "task.yaml").write_text(yaml.safe_dump(config))
    with unchanged(work):
        assert_user_error(invoke("train", "-c", work / "task.yaml"), "task", "adding")


def test_unknown_cell_lists_the_valid_ones(work: Path):
    config = edit(work, model={"cell": "lstn"})
    with unchanged(work):
        out = assert_user_error(invoke("train", "-c", config), "lstn")
    assert "lstm" in out and "gru" in out


def test_unknown_model(work: Path):
    config = edit(work, model={"name": "many_to_two"})
    with unchanged(work):
        result = invoke("train", "-c", config)
        assert_user_error(result, "model.name", "many_to_one")


def test_model_without_a_name(work: Path):
    config = yaml.safe_load((work / "tiny.yaml").read_text())
    del config["model"]["name"]
    (work / "noname.yaml").write_text(yaml.safe_dump(config))
    with unchanged(work):
        assert_user_error(invoke("train", "-c", work / "noname.yaml"), "model.name", "missing")


def test_a_task_value_out_of_range(work: Path):
    config = edit(work, data={"seq_len": 0})
    with unchanged(work):
        assert_user_error(invoke("train", "-c", config), "data.seq_len")


def test_unknown_validation_metric_leaves_no_run_folder(work: Path):
    config = edit(work, train={"metric": "acuracy"})
    with unchanged(work):
        result = invoke("train", "-c", config)
        assert_user_error(result, "train.metric", "acuracy")


def test_a_model_too_big_for_memory_is_refused_with_its_size(work: Path):
    with unchanged(work):
        result = invoke("train", "-c", work / "tiny.yaml", "--set", "model.hidden_size=1000000")
        assert_user_error(result, "parameters", "GiB", "model.hidden_size")


def test_cuda_asked_for_without_a_gpu(work: Path):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with unchanged(work):
        assert_user_error(invoke("train", "-c", work / "tiny.yaml", "--device", "cuda"), "cuda")


# -- --set ----------------------------------------------------------------------------


def test_set_of_an_unknown_key_blames_the_set_not_the_file(work: Path):
    with unchanged(work):
        result = invoke("train", "-c", work / "tiny.yaml", "--set", "foo.bar=1")
        out = assert_user_error(result, "--set foo.bar=1", "'foo'")
    assert "tiny.yaml" not in out


def test_set_without_an_equals_sign(work: Path):
    with unchanged(work):
        result = invoke("train", "-c", work / "tiny.yaml", "--set", "train.lr")
        assert_user_error(result, "--set", "train.lr")


def test_set_with_a_value_of_the_wrong_type(work: Path):
    with unchanged(work):
        result = invoke("train", "-c", work / "tiny.yaml", "--set", "train.lr=fast")
        assert_user_error(result, "train.lr", "fast", "--set")


def test_set_into_a_value(work: Path):
    with unchanged(work):
        result = invoke("train", "-c", work / "tiny.yaml", "--set", "task.name=adding")
        assert_user_error(result, "--set", "task")


def test_config_and_resume_together(work: Path, run: Path):
    with unchanged(work):
        result = invoke("train", "-c", work / "tiny.yaml", "--resume", run)
        assert_user_error(result, "--resume", "--config")


def test_train_without_config_or_resume(work: Path):
    with unchanged(work):
        assert_user_error(invoke("train"), "--config", "--resume")


# -- where runs are written -------------------------------------------------------------


def test_out_is_a_file(work: Path):
    (work / "notes.txt").write_text("mine\n")
    with unchanged(work):
        result = invoke("train", "-c", work / "tiny.yaml", "--out", work / "notes.txt")
        assert_user_error(result, "notes.txt", "file")


def test_out_under_a_file(work: Path):
    (work / "notes.txt").write_text("mine\n")
    with unchanged(work):
        result = invoke("train", "-c", work / "tiny.yaml", "--out", work / "notes.txt" / "runs")
        assert_user_error(result, "notes.txt", "file")


def test_out_not_writable(work: Path, monkeypatch):
    real_mkdir = Path.mkdir

    def refuse(self: Path, *args, **kwargs):
        if self.is_relative_to(work / "locked"):
            raise PermissionError(13, "Permission denied", str(self))
        return real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", refuse)  # root ignores chmod, so refuse by hand
    with unchanged(work):
        result = invoke("train", "-c", work / "tiny.yaml", "--out", work / "locked")
        assert_user_error(result, "locked", "permission denied")


def test_disk_full_while_writing_the_run_leaves_no_folder(work: Path, monkeypatch):
    def full(self: Path, *args, **kwargs):
        raise OSError(28, "No space left on device", str(self))

    monkeypatch.setattr(Path, "write_text", full)
    with unchanged(work):
        result = invoke("train", "-c", work / "tiny.yaml", "--set", "output.name=x")
        assert_user_error(result, "no space left")


def test_a_users_folder_is_never_written_into(work: Path):
    mine = work / "runs" / "experiments"
    mine.mkdir(parents=True)
    (mine / "config.yaml").write_text("my own notes\n")
    (mine / "metrics.jsonl").write_text('{"mine": 1}\n')
    with unchanged(work):
        result = invoke("train", "-c", work / "tiny.yaml", "--set", "output.name=experiments")
        assert_user_error(result, "experiments", "not empty")


def test_a_run_name_already_taken_points_to_resume(work: Path, run: Path):
    with unchanged(run.parent):
        result = invoke(
            "train", "-c", work / "tiny.yaml", "--out", run.parent, "--set", "output.name=run"
        )
        assert_user_error(result, "already exists", "--resume")


def test_an_empty_folder_may_take_a_new_run(work: Path):
    (work / "runs" / "fresh").mkdir(parents=True)
    result = invoke("train", "-c", work / "tiny.yaml", "--set", "output.name=fresh")
    assert result.exit_code == 0, result.output
    assert (work / "runs" / "fresh" / "checkpoints" / "best.pt").is_file()


# -- resume -------------------------------------------------------------------------------


def test_resume_a_missing_folder(work: Path):
    with unchanged(work):
        assert_user_error(invoke("train", "--resume", work / "gone"), "gone", "not found")


def test_resume_a_file(work: Path):
    with unchanged(work):
        assert_user_error(invoke("train", "--resume", work / "tiny.yaml"), "tiny.yaml", "file")


def test_resume_a_folder_that_is_not_a_run(work: Path):
    with unchanged(work):
        assert_user_error(invoke("train", "--resume", work), "not a run folder")


def test_resume_of_a_finished_run_changes_nothing(run: Path):
    with unchanged(run):
        result = invoke("train", "--resume", run)
    assert result.exit_code == 0, result.output
    assert "already finished" in result.output and "nothing" in result.output


def test_resume_of_an_early_stopped_run_changes_nothing(work: Path):
    # An update of 1e-30 leaves every float32 weight as it was: no epoch improves.
    stopped = edit(work, train={"epochs": 6, "patience": 1, "optimizer": "sgd", "lr": 1e-30,
                                "momentum": 0.0})  # fmt: skip
    result = invoke("train", "-c", stopped, "--set", "output.name=stopped")
    assert result.exit_code == 0, result.output
    run_dir = work / "runs" / "stopped"
    assert json.loads((run_dir / "summary.json").read_text())["epochs"] == 2  # stopped early
    with unchanged(run_dir):
        result = invoke("train", "--resume", run_dir)
    assert result.exit_code == 0, result.output
    assert "already finished" in result.output


def test_resume_with_a_set_that_changes_the_shape_is_refused(run: Path):
    with unchanged(run):
        result = invoke("train", "--resume", run, "--set", "model.hidden_size=32")
        assert_user_error(result, "model.hidden_size=32", "model", "new run")


def test_resume_with_a_set_that_changes_the_task_is_refused(run: Path):
    with unchanged(run):
        result = invoke("train", "--resume", run, "--set", "task=copy")
        assert_user_error(result, "'adding'", "task")


@pytest.mark.parametrize("item", ["train.lr=0.1", "train.schedule=cosine", "data.seq_len=9"])
def test_resume_with_a_set_that_would_not_take_effect_is_refused(run: Path, item: str):
    with unchanged(run):
        result = invoke("train", "--resume", run, "--set", item)
        assert_user_error(result, f"--set {item}", "new run")


def test_resume_with_out(run: Path, work: Path):
    with unchanged(run):
        result = invoke("train", "--resume", run, "--out", work / "elsewhere")
        assert_user_error(result, "--out", "--resume")


def test_resume_from_a_truncated_last_checkpoint(run: Path):
    (run / "summary.json").unlink()  # an interrupted run, so resume reads last.pt
    last = run / "checkpoints" / "last.pt"
    last.write_bytes(last.read_bytes()[:200])
    with unchanged(run):
        assert_user_error(invoke("train", "--resume", run), "last.pt", "modified or is corrupt")


# -- checkpoints and run-folder files ----------------------------------------------------


def test_eval_of_a_missing_run(work: Path):
    with unchanged(work):
        assert_user_error(invoke("eval", work / "runs" / "nope"), "nope", "not found")


def test_eval_of_a_folder_that_is_not_a_run(work: Path):
    with unchanged(work):
        assert_user_error(invoke("eval", work), "not a run folder")


def test_eval_of_a_truncated_checkpoint(run: Path):
    best = run / "checkpoints" / "best.pt"
    best.write_bytes(best.read_bytes()[:100])
    with unchanged(run):
        assert_user_error(invoke("eval", run), "best.pt", "modified or is corrupt")


def test_eval_of_random_bytes_without_a_recorded_digest(run: Path):
    (run / "run.json").unlink()  # as a run from before digests, or a hand-made folder
    (run / "checkpoints" / "best.pt").write_bytes(os.urandom(4096))
    with unchanged(run):
        assert_user_error(invoke("eval", run), "best.pt", "not a readable rnnzoo checkpoint")


class _Payload:
    """A pickle that would create a file if it were ever unpickled."""

    target = ""

    def __reduce__(self):
        return (Path.touch, (Path(self.target),))


def test_a_malicious_checkpoint_is_never_run_nor_advised_to_run(run: Path, work: Path):
    (run / "run.json").unlink()
    _Payload.target = str(work / "pwned")
    (run / "checkpoints" / "best.pt").write_bytes(pickle.dumps({"model": _Payload()}))
    with unchanged(run):
        out = assert_user_error(invoke("eval", run), "best.pt", "could run code")
    assert "weights_only=False" not in out
    assert not (work / "pwned").exists()


def test_a_bare_state_dict_as_checkpoint(run: Path):
    (run / "run.json").unlink()
    bare = torch.load(run / "checkpoints" / "best.pt", weights_only=True)["model"]
    torch.save(bare, run / "checkpoints" / "best.pt")
    with unchanged(run):
        assert_user_error(invoke("eval", run), "not an rnnzoo checkpoint", "state_dict")


def test_a_checkpoint_swapped_for_another_valid_one_is_caught(run: Path):
    checkpoints = run / "checkpoints"
    (checkpoints / "best.pt").write_bytes((checkpoints / "last.pt").read_bytes())
    if (checkpoints / "best.pt").read_bytes() == (checkpoints / "last.pt").read_bytes():
        state = torch.load(checkpoints / "best.pt", weights_only=True)
        state["progress"]["step"] += 1  # a real edit: the bytes differ from what was recorded
        torch.save(state, checkpoints / "best.pt")
    with unchanged(run):
        assert_user_error(invoke("eval", run), "best.pt", "modified")


def test_a_truncated_run_json(run: Path):
    (run / "run.json").write_text('{"sessions": [')
    with unchanged(run):
        assert_user_error(invoke("eval", run), "run.json", "corrupt")


def test_a_truncated_summary_on_resume(run: Path):
    (run / "summary.json").write_text('{"best_epoch": ')
    with unchanged(run):
        assert_user_error(invoke("train", "--resume", run), "summary.json", "corrupt")


def test_a_truncated_forecast_state(forecast_run: Path, tmp_path: Path):
    run = Path(shutil.copytree(forecast_run, tmp_path / "f"))
    (run / "forecast.json").write_text('{"columns": ["x"], "sca')
    with unchanged(run):
        assert_user_error(invoke("eval", run), "forecast.json", "modified or is corrupt")


def test_a_truncated_tokenizer(imdb_run: Path, tmp_path: Path):
    run = Path(shutil.copytree(imdb_run, tmp_path / "i"))
    tokenizer = run / "tokenizer.json"
    tokenizer.write_bytes(tokenizer.read_bytes()[:50])
    with unchanged(run):
        assert_user_error(invoke("predict", run, "a film"), "tokenizer.json", "corrupt")


def test_a_broken_tokenizer_without_a_recorded_digest(imdb_run: Path, tmp_path: Path):
    run = Path(shutil.copytree(imdb_run, tmp_path / "i"))
    info = json.loads((run / "run.json").read_text())
    info["files"] = {k: v for k, v in info["files"].items() if k != "tokenizer.json"}
    (run / "run.json").write_text(json.dumps(info))
    (run / "tokenizer.json").write_text('{"version": "1.0", "model": 3}')
    with unchanged(run):
        assert_user_error(invoke("predict", run, "a film"), "saved state cannot be read")


def test_eval_with_an_unknown_checkpoint_name(run: Path):
    with unchanged(run):
        assert_user_error(invoke("eval", run, "--checkpoint", "newest"), "--checkpoint", "newest")


def test_eval_of_an_unknown_split(run: Path):
    with unchanged(run):
        assert_user_error(invoke("eval", run, "--split", "dev"), "'dev'", "val")


def test_eval_with_a_missing_data_file(forecast_run: Path, tmp_path: Path):
    run = Path(shutil.copytree(forecast_run, tmp_path / "f"))
    with unchanged(tmp_path):
        result = invoke("eval", run, "--data-path", tmp_path / "moved.csv")
        assert_user_error(result, "moved.csv", "not found")


def test_data_path_that_is_a_folder(forecast_run: Path, tmp_path: Path):
    run = Path(shutil.copytree(forecast_run, tmp_path / "f"))
    with unchanged(tmp_path):
        assert_user_error(invoke("eval", run, "--data-path", tmp_path), "folder")


# -- backtest ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def naive_forecast_run(tmp_path_factory) -> Path:
    """A forecasting run of a model without parameters (repeat_last)."""
    root = tmp_path_factory.mktemp("naive")
    data = {**FORECAST["data"], "path": str(forecast_csv(root / "s.csv"))}
    return train_once(root, {**FORECAST, "data": data, "model": {"name": "repeat_last"}})


def test_backtest_of_a_run_that_is_not_forecasting(run: Path):
    with unchanged(run):
        out = assert_user_error(invoke("eval", run, "--backtest"), "forecasting runs")
        assert out.count("\n") == 1, out  # that one line only
    with unchanged(run):
        assert_user_error(invoke("backtest", run), "backtests are for forecasting runs")


def test_backtest_of_a_missing_run(work: Path):
    with unchanged(work):
        assert_user_error(invoke("backtest", work / "runs" / "nope"), "nope", "not found")
    with unchanged(work):
        assert_user_error(invoke("eval", work / "nope", "--backtest"), "not found")


def test_fine_tuning_a_model_without_parameters_is_refused(naive_forecast_run: Path):
    """Refused rather than ignored: repeat_last is refitted at every origin already."""
    with unchanged(naive_forecast_run):
        result = invoke("eval", naive_forecast_run, "--backtest", "--fine-tune-steps", 5)
        assert_user_error(result, "--fine-tune-steps", "repeat_last", "no trainable parameters")


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["backtest", "--refit-every", 2], ["--refit-every", "--fine-tune-steps"]),
        (["backtest", "--split", "train"], ["--split train", "val or test"]),
        (["eval", "--fine-tune-steps", 2], ["--fine-tune-steps", "--backtest"]),
        (["eval", "--refit-every", 2], ["--refit-every", "--backtest"]),
        (["eval", "--backtest", "--beam-width", 2], ["--beam-width", "--backtest"]),
    ],
)
def test_backtest_options_that_do_not_apply(forecast_run: Path, args: list, named: list):
    command, *options = args
    with unchanged(forecast_run):
        assert_user_error(invoke(command, forecast_run, *options), *named)


def test_diagnose_with_a_damaged_metrics_file(run: Path, work: Path):
    with (run / "metrics.jsonl").open("a") as f:
        f.write('{"epoch": 3, "val_')
    with unchanged(run):
        result = invoke("diagnose", run, "--out", work / "flow")
        assert_user_error(result, "metrics.jsonl", "not valid JSON")
    assert not (work / "flow").exists()


def test_diagnose_a_folder_that_is_not_a_run(work: Path):
    with unchanged(work):
        assert_user_error(invoke("diagnose", work / "runs"), "runs")


# -- predict ---------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["", "   "])
def test_predict_on_empty_text(imdb_run: Path, text: str):
    with unchanged(imdb_run):
        assert_user_error(invoke("predict", imdb_run, text), "empty")


def test_predict_file_missing(imdb_run: Path, tmp_path: Path):
    with unchanged(imdb_run):
        assert_user_error(invoke("predict", imdb_run, "--file", tmp_path / "in.txt"), "in.txt")


def test_predict_file_is_a_folder(imdb_run: Path, tmp_path: Path):
    with unchanged(imdb_run):
        assert_user_error(invoke("predict", imdb_run, "--file", tmp_path), "folder")


def test_predict_file_with_only_blank_lines(imdb_run: Path, tmp_path: Path):
    (tmp_path / "blank.txt").write_text("\n  \n\n")
    with unchanged(imdb_run):
        result = invoke("predict", imdb_run, "--file", tmp_path / "blank.txt")
        assert_user_error(result, "blank.txt", "blank")


def test_predict_text_and_file_together(imdb_run: Path, tmp_path: Path):
    (tmp_path / "in.txt").write_text("a film\n")
    with unchanged(imdb_run):
        result = invoke("predict", imdb_run, "a film", "--file", tmp_path / "in.txt")
        assert_user_error(result, "TEXT", "--file")


def test_predict_text_for_a_task_without_text(run: Path):
    with unchanged(run):
        assert_user_error(invoke("predict", run, "1 2 3"), "text")


def test_predict_out_is_a_folder(forecast_run: Path, tmp_path: Path):
    with unchanged(forecast_run):
        assert_user_error(invoke("predict", forecast_run, "--out", tmp_path), "--out", "folder")


def test_predict_out_in_a_missing_folder(forecast_run: Path, tmp_path: Path):
    with unchanged(forecast_run):
        result = invoke("predict", forecast_run, "--out", tmp_path / "no" / "f.csv")
        assert_user_error(result, "does not exist")


def test_predict_with_a_cutoff_that_is_not_in_the_data(forecast_run: Path):
    with unchanged(forecast_run):
        assert_user_error(invoke("predict", forecast_run, "--cutoff", "yesterday"), "yesterday")


# -- data --------------------------------------------------------------------------------------


def forecast_config(work: Path, csv: Path) -> Path:
    config = {**FORECAST, "data": {**FORECAST["data"], "path": str(csv)}}
    return write_config(work / "f.yaml", config, work / "runs")


def test_an_infinite_value_in_a_csv_names_the_line(work: Path):
    config = forecast_config(work, forecast_csv(work / "inf.csv", bad="inf"))
    with unchanged(work):
        assert_user_error(invoke("train", "-c", config), "inf.csv", "line 31", "'x'", "finite")


def test_a_word_in_a_numeric_column_names_the_line(work: Path):
    config = forecast_config(work, forecast_csv(work / "word.csv", bad="n/a?"))
    with unchanged(work):
        assert_user_error(invoke("train", "-c", config), "word.csv", "line 31", "not a number")


def test_a_missing_value_by_default_names_the_line(work: Path):
    config = forecast_config(work, forecast_csv(work / "gap.csv", bad=""))
    with unchanged(work):
        assert_user_error(invoke("train", "-c", config), "gap.csv", "line 31", "data.missing")


def test_a_csv_without_the_target_column(work: Path):
    config = forecast_config(work, forecast_csv(work / "s.csv"))
    with unchanged(work):
        result = invoke("train", "-c", config, "--set", "data.target=y")
        assert_user_error(result, "'y'", "t, x")


def test_a_forecast_data_path_that_is_a_folder(work: Path):
    (work / "series").mkdir()
    config = forecast_config(work, work / "series")
    with unchanged(work):
        assert_user_error(invoke("train", "-c", config), "series", "folder")


def test_a_csv_too_short_for_its_windows(work: Path):
    config = forecast_config(work, forecast_csv(work / "short.csv", n=12))
    with unchanged(work):
        assert_user_error(invoke("train", "-c", config), "short.csv")


def imdb_config(work: Path, path: Path) -> Path:
    config = {**IMDB, "data": {**IMDB["data"], "path": str(path)}}
    return write_config(work / "imdb.yaml", config, work / "runs")


def test_imdb_data_path_missing(work: Path):
    config = imdb_config(work, work / "aclImdb_v1.tar.gz")
    with unchanged(work):
        assert_user_error(invoke("train", "-c", config), "aclImdb_v1.tar.gz", "not found")


def test_imdb_data_path_that_is_not_an_archive(work: Path):
    (work / "reviews.csv").write_text("text,label\ngood,1\n")
    config = imdb_config(work, work / "reviews.csv")
    with unchanged(work):
        assert_user_error(invoke("train", "-c", config), "reviews.csv", "not a readable")


def test_a_cache_folder_that_is_a_file_only_costs_the_cache(work: Path):
    (work / "cache").mkdir(exist_ok=True)
    (work / "cache" / "rnnzoo").write_text("not a folder\n")  # where the cache would go
    config = imdb_config(work, imdb_archive(work / "aclImdb_v1.tar.gz"))
    result = invoke("train", "-c", config, "--set", "output.name=cached")
    assert result.exit_code == 0, result.output
    assert (work / "cache" / "rnnzoo").read_text() == "not a folder\n"


# -- interrupts and failures ---------------------------------------------------------------


def test_ctrl_c_while_starting_leaves_nothing(work: Path, monkeypatch):
    from rnnzoo.tasks.base import Task

    def interrupted(self):
        raise KeyboardInterrupt

    monkeypatch.setattr(Task, "prepare", interrupted)
    with unchanged(work):
        result = invoke("train", "-c", work / "tiny.yaml")
    assert result.exit_code == 130, result.output
    assert "Traceback" not in result.output and "interrupted" in result.output


def test_a_second_ctrl_c_stops_at_once_without_a_traceback(work: Path, monkeypatch):
    real_step, calls = Trainer._step, []

    def step(self, batch, totals):
        calls.append(1)
        if len(calls) in (2, 3):
            os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C, then Ctrl-C again
        return real_step(self, batch, totals)

    monkeypatch.setattr(Trainer, "_step", step)
    result = invoke("train", "-c", work / "tiny.yaml", "--set", "output.name=twice")
    assert result.exit_code == 130, result.output
    assert "Traceback" not in result.output and "interrupted" in result.output


def test_a_diverged_first_step_says_no_checkpoint_exists(work: Path, monkeypatch):
    from rnnzoo.tasks.adding import AddingTask

    monkeypatch.setattr(AddingTask, "loss", lambda self, output, batch: output.sum() * float("nan"))
    with unchanged(work):
        result = invoke("train", "-c", work / "tiny.yaml", "--set", "output.name=nan")
        out = assert_user_error(result, "diverged", "no checkpoint was saved", code=1)
    assert "untouched" not in out


def test_a_bug_is_one_line_and_debug_shows_the_traceback(work: Path, monkeypatch):
    from rnnzoo.tasks.adding import AddingTask

    def broken(self):
        raise TypeError("unexpected")

    monkeypatch.setattr(AddingTask, "prepare", broken)
    with unchanged(work):
        result = invoke("train", "-c", work / "tiny.yaml")
        assert_user_error(result, "internal error", "TypeError", "RNNZOO_DEBUG", code=1)
    monkeypatch.setenv("RNNZOO_DEBUG", "1")
    result = invoke("train", "-c", work / "tiny.yaml")
    assert result.exit_code == 1 and "Traceback" in result.output, result.output
    assert 'raise TypeError("unexpected")' in result.output


def _importing_torch(pid: int, work: Path) -> bool:
    maps = Path(f"/proc/{pid}/maps")
    return maps.exists() and "libtorch" in maps.read_text()


def _training(pid: int, work: Path) -> bool:
    return any((work / "runs").glob("*/checkpoints/last.pt"))


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="needs Linux /proc")
@pytest.mark.parametrize("moment", [_importing_torch, _training])
def test_ctrl_c_at_any_moment_of_a_real_process(work: Path, moment):
    """SIGINT while the command imports torch, or while it trains: exit 130, one line,
    and a run folder only if it holds a checkpoint to resume from."""
    long = edit(work, train={"epochs": 100000})
    process = subprocess.Popen(
        [sys.executable, "-m", "rnnzoo", "train", "-c", str(long)],
        cwd=work, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while not moment(process.pid, work) and time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()
        time.sleep(0.01)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    assert "Traceback" not in err and err.startswith("interrupted"), err
    assert len(err.strip().splitlines()) <= 2, err  # what happened, and how to resume
    for run_dir in (work / "runs").glob("*") if (work / "runs").exists() else []:
        assert (run_dir / "checkpoints" / "last.pt").is_file(), sorted(run_dir.rglob("*"))

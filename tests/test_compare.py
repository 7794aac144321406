"""``rnnzoo compare``: runs trained in their own processes, tabulated from their files;
a run is known by its resolved config, never by its file name."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from rnnzoo import compare as compare_module
from rnnzoo import runs
from rnnzoo.cli import app
from rnnzoo.compare import config_hash, place, resolved
from rnnzoo.config import load_config
from tests.conftest import TINY


def config(folder: Path, name: str, cell: str, **train: object) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.yaml"
    data = {
        **TINY,
        "model": {**TINY["model"], "cell": cell},
        "train": {**TINY["train"], "epochs": 2, **train},
    }
    path.write_text(yaml.safe_dump(data))
    return path


def table_rows(md: str) -> dict[str, list[str]]:
    rows = [line.strip("|").split("|") for line in md.splitlines() if line.startswith("| ")]
    return {cells[0].strip(): [c.strip() for c in cells] for cells in rows[1:]}


def files(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` by relative path, with its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def compare(*args: str | Path) -> str:
    result = CliRunner().invoke(app, ["compare", *map(str, args)])
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture
def trained(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """Child runs trained in this process, to spare a torch import per run; the argument
    lists they were given. (test_compare_two_configs_over_seeds uses real processes.)"""
    calls: list[list[str]] = []

    def train_here(args: list[str]) -> int:
        calls.append(args)
        return CliRunner().invoke(app, args).exit_code

    monkeypatch.setattr(compare_module, "train_process", train_here)
    return calls


@pytest.mark.slow
def test_compare_two_configs_over_seeds(tmp_path: Path):
    gru, rnn = config(tmp_path, "tiny_gru", "gru"), config(tmp_path, "tiny_rnn", "rnn_tanh")
    out = tmp_path / "cmp"
    compare(gru, rnn, "--seeds", "2", "--out", out)
    rows = table_rows((out / "compare.md").read_text())
    assert set(rows) == {"tiny_gru", "tiny_rnn"}
    for label, cell in (("tiny_gru", "gru"), ("tiny_rnn", "rnn_tanh")):
        best, tests = [], []
        for seed in (0, 1):
            (run,) = (out / "runs").glob(f"{label}-seed{seed}-*")
            lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
            best.append(min(line["val_mse"] for line in lines))  # the run's own record
            tests.append(json.loads((run / "summary.json").read_text())["test"]["mse"])
        row = rows[label]
        assert row[2] == cell and row[6] == "mse"
        mean_best = float(row[7].split("±")[0])
        assert mean_best == pytest.approx(sum(best) / 2, rel=1e-3)
        assert float(row[8].split("±")[0]) == pytest.approx(sum(tests) / 2, rel=1e-3)
    assert (out / "compare.png").read_bytes()[:4] == b"\x89PNG"
    recorded = json.loads((out / "compare.json").read_text())["runs"]
    assert [(r["label"], r["seed"]) for r in recorded] == [
        ("tiny_gru", 0), ("tiny_gru", 1), ("tiny_rnn", 0), ("tiny_rnn", 1)
    ]  # fmt: skip

    # a finished run folder is read, not retrained
    (run,) = (out / "runs").glob("tiny_gru-seed0-*")
    before = files(run)
    again = tmp_path / "again"
    compare(run, gru, "--out", again)
    assert set(table_rows((again / "compare.md").read_text())) == {run.name, "tiny_gru"}
    assert files(run) == before


def test_two_configs_with_one_file_name_are_two_rows(tmp_path: Path, trained: list[list[str]]):
    lstm = config(tmp_path / "v1", "exp", "lstm", max_steps=2)
    gru = config(tmp_path / "v2", "exp", "gru", max_steps=2)
    out = tmp_path / "cmp"
    compare(lstm, gru, "--out", out)
    rows = table_rows((out / "compare.md").read_text())
    assert {label: row[2] for label, row in rows.items()} == {"v1/exp": "lstm", "v2/exp": "gru"}
    assert len(trained) == 2
    run_dirs = sorted((out / "runs").iterdir())
    assert [p.name.rsplit("-", 1)[0] for p in run_dirs] == ["v1-exp-seed0", "v2-exp-seed0"]
    for run, cell in zip(run_dirs, ("lstm", "gru"), strict=True):
        assert (run / "summary.json").is_file()
        assert yaml.safe_load((run / "config.yaml").read_text())["model"]["cell"] == cell
    recorded = json.loads((out / "compare.json").read_text())["runs"]
    assert [r["run_dir"] for r in recorded] == [str(p) for p in run_dirs]


def test_compare_again_retrains_a_changed_config_and_reuses_the_same(
    tmp_path: Path, trained: list[list[str]]
):
    source = config(tmp_path, "tiny", "gru", max_steps=2)
    out = tmp_path / "cmp"
    compare(source, "--set", "model.hidden_size=4", "--out", out)
    (first,) = (out / "runs").iterdir()
    old = files(first)
    parameters_4 = table_rows((out / "compare.md").read_text())["tiny"][5]

    compare(source, "--set", "model.hidden_size=6", "--out", out)
    assert len(trained) == 2
    (second,) = set((out / "runs").iterdir()) - {first}
    assert files(first) == old  # the earlier run is left as it was
    assert yaml.safe_load((second / "config.yaml").read_text())["model"]["hidden_size"] == 6
    row = table_rows((out / "compare.md").read_text())["tiny"]
    assert row[5] != parameters_4
    (recorded,) = json.loads((out / "compare.json").read_text())["runs"]
    assert recorded["run_dir"] == str(second)

    before = files(out / "runs")
    output = compare(source, "--set", "model.hidden_size=6", "--out", out)
    assert f"reusing the finished run {second}" in output
    assert len(trained) == 2  # nothing trained
    assert files(out / "runs") == before  # nothing touched
    assert table_rows((out / "compare.md").read_text())["tiny"][5] == row[5]


# -- where a run goes: reused, resumed or trained anew ----------------------------------


def tiny_run_folder(folder: Path, *overrides: str) -> dict[str, object]:
    """A run folder's config.yaml for the tiny config; the resolved config it holds."""
    cfg = load_config(config(folder.parent, "tiny", "gru"), overrides)
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text(cfg.to_yaml())
    return resolved(cfg)


def test_a_run_is_known_by_its_resolved_config_not_by_where_it_goes(tmp_path: Path):
    path = config(tmp_path, "tiny", "gru")
    base = resolved(load_config(path))
    moved = resolved(load_config(path, ["output.dir=elsewhere", "output.name=x"]))
    assert config_hash(moved) == config_hash(base)
    assert config_hash(resolved(load_config(path, ["train.lr=0.02"]))) != config_hash(base)
    assert config_hash(resolved(load_config(path, ["train.seed=1"]))) != config_hash(base)
    defaults_filled = config(tmp_path / "b", "tiny", "gru", optimizer="adam")
    assert resolved(load_config(defaults_filled)) == base


def test_a_finished_run_is_reused_only_with_the_same_stored_config(tmp_path: Path):
    root = tmp_path / "runs"
    values = tiny_run_folder(root / "x")
    (root / "x" / "summary.json").write_text("{}")
    assert place(root, "x", values) == (root / "x", "reuse")
    # the same folder name, but its config.yaml says another learning rate: trained anew
    other = dict(values, train={**values["train"], "lr": 0.5})  # type: ignore[dict-item]
    assert place(root, "x", other) == (root / "x-2", "train")


def test_a_run_under_the_name_older_versions_gave_is_reused_never_trained_into(tmp_path: Path):
    root = tmp_path / "runs"
    values = tiny_run_folder(root / "tiny-seed0")
    (root / "tiny-seed0" / "summary.json").write_text("{}")
    assert place(root, "x", values, earlier="tiny-seed0") == (root / "tiny-seed0", "reuse")
    other = dict(values, train={**values["train"], "lr": 0.5})  # type: ignore[dict-item]
    assert place(root, "x", other, earlier="tiny-seed0") == (root / "x", "train")


def test_an_unfinished_run_is_resumed_and_a_failed_start_left_alone(tmp_path: Path):
    root = tmp_path / "runs"
    values = tiny_run_folder(root / "x")
    (root / "x" / "checkpoints").mkdir()
    (root / "x" / "checkpoints" / "last.pt").write_bytes(b"")
    assert place(root, "x", values) == (root / "x", "resume")
    (root / "x" / "checkpoints" / "last.pt").unlink()  # died before its first checkpoint
    assert place(root, "x", values) == (root / "x-2", "train")


# -- bad input: one line, exit 2, nothing written ----------------------------------------


def refused(*args: str | Path, says: str) -> str:
    result = CliRunner().invoke(app, ["compare", *map(str, args)])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    (line,) = [x for x in result.output.splitlines() if x.startswith("error:")]
    assert says in result.output, result.output
    return line


def test_compare_checks_every_config_before_training(tmp_path: Path):
    good = config(tmp_path, "good", "gru")
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({**TINY, "model": {"name": "many_to_one", "cel": "gru"}}))
    worse = tmp_path / "worse.yaml"
    worse.write_text(yaml.safe_dump({**TINY, "train": {"epochs": 0}}))
    out = tmp_path / "cmp"
    output = CliRunner().invoke(
        app, ["compare", str(good), str(bad), str(worse), "--out", str(out)]
    )
    assert output.exit_code == 2, output.output
    assert "unknown key 'model.cel'" in output.output and "train.epochs" in output.output
    assert not out.exists()


def test_compare_refuses_a_source_that_is_not_a_config_or_a_finished_run(tmp_path: Path):
    out = tmp_path / "cmp"
    refused(tmp_path / "nope.yaml", "--out", out, says="neither a config file nor a run folder")
    (tmp_path / "notes").mkdir()
    refused(tmp_path / "notes", "--out", out, says="notes is neither a config file nor a finished")
    assert not out.exists()


def test_compare_refuses_an_out_that_cannot_hold_it(tmp_path: Path):
    source = config(tmp_path, "tiny", "gru")
    a_file = tmp_path / "a_file"
    a_file.write_text("mine")
    refused(source, "--out", a_file, says="is a file, not a folder")
    refused(source, "--out", a_file / "cmp", says="a_file is a file, not a folder")
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "notes.md").write_text("mine")
    refused(source, "--out", theirs, says="is a folder with other files, not a comparison")
    assert a_file.read_text() == "mine" and os.listdir(theirs) == ["notes.md"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write into a read-only folder")
def test_compare_refuses_an_out_it_cannot_write(tmp_path: Path):
    source = config(tmp_path, "tiny", "gru")
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        refused(source, "--out", locked / "cmp", says="is not writable")
    finally:
        locked.chmod(0o700)


def test_compare_refuses_bad_seeds_and_budget(tmp_path: Path):
    source, out = config(tmp_path, "tiny", "gru"), tmp_path / "cmp"
    refused(source, "--seeds", "0", "--out", out, says="--seeds must be at least 1, got 0")
    refused(source, "--budget-minutes", "0", "--out", out, says="--budget-minutes must be above 0")
    assert not out.exists()


def test_compare_refuses_the_same_config_twice(tmp_path: Path):
    source, out = config(tmp_path, "tiny", "gru"), tmp_path / "cmp"
    refused(source, source, "--out", out, says="tiny.yaml is given twice")
    twin = tmp_path / "twin.yaml"
    twin.write_text(source.read_text())
    refused(source, twin, "--out", out, says="twin.yaml are the same config")
    assert not out.exists()


def test_compare_refuses_a_run_of_another_task(tmp_path: Path):
    source = config(tmp_path, "tiny", "gru", epochs=1, max_steps=1)
    run = runs.train(source, out=tmp_path / "runs", echo=lambda _: None)
    copy = tmp_path / "copy.yaml"
    model = {**TINY["model"], "name": "many_to_many"}
    data = {"delay": 3, "n_train": 8}
    copy.write_text(yaml.safe_dump({**TINY, "task": "copy", "data": data, "model": model}))
    out = tmp_path / "cmp"
    line = refused(run, copy, "--out", out, says="scores are not comparable")
    assert f"{run} (adding)" in line and f"{copy} (copy)" in line
    assert not out.exists()


def test_a_config_edited_while_compare_runs_is_not_tabulated(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    source = config(tmp_path, "tiny", "gru", max_steps=1)

    def edit_then_train(args: list[str]) -> int:
        source.write_text(source.read_text().replace("hidden_size: 8", "hidden_size: 5"))
        return CliRunner().invoke(app, args).exit_code

    monkeypatch.setattr(compare_module, "train_process", edit_then_train)
    out = tmp_path / "cmp"
    result = CliRunner().invoke(app, ["compare", str(source), "--out", str(out)])
    assert result.exit_code == 1, result.output
    assert "holds another config than" in result.output
    assert not (out / "compare.md").exists()

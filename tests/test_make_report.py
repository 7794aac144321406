"""scripts/make_report.py finds the runs its comparisons trained through their
compare.json, never by building a folder name (compare names folders by config hash)."""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
from pathlib import Path
from types import ModuleType, SimpleNamespace

import pytest
import yaml
from typer.testing import CliRunner

from rnnzoo import compare as compare_module
from rnnzoo.cli import app
from tests.conftest import TINY

ROOT = Path(__file__).resolve().parents[1]


def _make_report() -> ModuleType:
    """scripts/make_report.py as a module (shared with test_claims if it loaded it first)."""
    if "make_report" in sys.modules:
        return sys.modules["make_report"]
    spec = importlib.util.spec_from_file_location(
        "make_report", ROOT / "scripts" / "make_report.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["make_report"] = module
    spec.loader.exec_module(module)
    return module


report = _make_report()


def _config(folder: Path, name: str, cell: str) -> Path:
    """A tiny adding config that trains two steps."""
    path = folder / f"{name}.yaml"
    data = {
        **TINY,
        "model": {**TINY["model"], "cell": cell},
        "train": {**TINY["train"], "epochs": 1, "max_steps": 2},
    }
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture(scope="module")
def comparison(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real two-config, two-seed comparison, trained once for this file (in this
    process, to spare a torch import per run); tests that change it work on a copy."""
    folder = tmp_path_factory.mktemp("report")
    sources = [_config(folder, "tiny_gru", "gru"), _config(folder, "tiny_rnn", "rnn_tanh")]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(compare_module, "train_process", _train_here)
        return compare_module.compare(sources, seeds=2, out=folder / "cmp", echo=_silent)


def _train_here(args: list[str]) -> int:
    return CliRunner().invoke(app, args).exit_code


def _silent(line: str) -> None:
    pass


def _trained_as(run: Path) -> tuple[str, int]:
    """The cell and seed a run folder's own config says it was trained with."""
    config = yaml.safe_load((run / "config.yaml").read_text())
    return config["model"]["cell"], config["train"]["seed"]


def test_run_folder_finds_each_run_of_a_comparison_by_label_and_seed(comparison: Path):
    found = {
        (label, seed): report.run_folder(comparison, label, seed)
        for label in ("tiny_gru", "tiny_rnn")
        for seed in (0, 1)
    }
    assert len(set(found.values())) == 4
    for (label, seed), run in found.items():
        assert run.parent == comparison / "runs"
        assert _trained_as(run) == ({"tiny_gru": "gru", "tiny_rnn": "rnn_tanh"}[label], seed)
    # the name make_report used to build by hand is not where compare puts a run
    assert not (comparison / "runs" / "tiny_gru-seed0").exists()


def test_the_report_reads_a_summary_through_compare_json(comparison: Path):
    args = SimpleNamespace(work=comparison.parent)
    summary = report._summary(args, comparison.name, "tiny_rnn")
    run = report.run_folder(comparison, "tiny_rnn")
    assert summary == json.loads((run / "summary.json").read_text())
    assert set(summary["test"]) >= {"mse"}


def test_run_folder_follows_compare_to_a_run_under_another_name(
    comparison: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """A finished run under the name older versions gave (``<stem>-seed<N>``) is reused
    by compare; the report must follow it there, not guess the hashed name."""
    work = shutil.copytree(comparison.parent, tmp_path / "work")
    cmp = work / comparison.name
    older = cmp / "runs" / "tiny_gru-seed0"
    # compare.json still names the original's folders: rename the copy's
    (cmp / "runs" / report.run_folder(cmp, "tiny_gru").name).rename(older)
    monkeypatch.setattr(compare_module, "train_process", _train_here)
    sources = [work / "tiny_gru.yaml", work / "tiny_rnn.yaml"]
    compare_module.compare(sources, seeds=2, out=cmp, echo=_silent)
    assert report.run_folder(cmp, "tiny_gru") == older


def test_run_folder_names_what_the_comparison_holds_when_a_label_is_missing(
    comparison: Path,
):
    with pytest.raises(LookupError) as caught:
        report.run_folder(comparison, "tiny_lstm")
    message = str(caught.value)
    assert str(comparison / "compare.json") in message
    assert "tiny_gru (seed 0)" in message and "tiny_rnn (seed 1)" in message


def test_the_imdb_section_says_test_is_missing_only_when_it_is():
    without = [{"test": None}, {"test": None}]
    assert "no test split" in report._imdb_splits(without, 0.2)
    with_test = [{"test": 0.85}, {"test": 0.87}]
    sentence = report._imdb_splits(with_test, 0.2)
    assert "no test split" not in sentence and "official test split" in sentence

"""``rnnzoo compare``: runs trained in their own processes, tabulated from their files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from rnnzoo.cli import app
from tests.conftest import TINY


def config(tmp_path: Path, name: str, cell: str) -> Path:
    path = tmp_path / f"{name}.yaml"
    data = {
        **TINY,
        "model": {**TINY["model"], "cell": cell},
        "train": {**TINY["train"], "epochs": 2},
    }
    path.write_text(yaml.safe_dump(data))
    return path


def table_rows(md: str) -> dict[str, list[str]]:
    rows = [line.strip("|").split("|") for line in md.splitlines() if line.startswith("| ")]
    return {cells[0].strip(): [c.strip() for c in cells] for cells in rows[1:]}


@pytest.mark.slow
def test_compare_two_configs_over_seeds(tmp_path: Path):
    gru, rnn = config(tmp_path, "tiny_gru", "gru"), config(tmp_path, "tiny_rnn", "rnn_tanh")
    out = tmp_path / "cmp"
    result = CliRunner().invoke(
        app, ["compare", str(gru), str(rnn), "--seeds", "2", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    rows = table_rows((out / "compare.md").read_text())
    assert set(rows) == {"tiny_gru", "tiny_rnn"}
    for label, cell in (("tiny_gru", "gru"), ("tiny_rnn", "rnn_tanh")):
        best, tests = [], []
        for seed in (0, 1):
            run = out / "runs" / f"{label}-seed{seed}"
            lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
            best.append(min(line["val_mse"] for line in lines))  # the run's own record
            tests.append(json.loads((run / "summary.json").read_text())["test"]["mse"])
        row = rows[label]
        assert row[2] == cell and row[6] == "mse"
        mean_best = float(row[7].split("±")[0])
        assert mean_best == pytest.approx(sum(best) / 2, rel=1e-3)
        assert float(row[8].split("±")[0]) == pytest.approx(sum(tests) / 2, rel=1e-3)
    assert (out / "compare.png").read_bytes()[:4] == b"\x89PNG"
    assert len(json.loads((out / "compare.json").read_text())["runs"]) == 4

    # a finished run folder is read, not retrained; an interrupted compare reuses its runs
    run = out / "runs" / "tiny_gru-seed0"
    stamp = (run / "summary.json").stat().st_mtime_ns
    again = tmp_path / "again"
    result = CliRunner().invoke(app, ["compare", str(run), str(gru), "--out", str(again)])
    assert result.exit_code == 0, result.output
    assert set(table_rows((again / "compare.md").read_text())) == {"tiny_gru-seed0", "tiny_gru"}
    assert (run / "summary.json").stat().st_mtime_ns == stamp


def test_compare_checks_every_config_before_training(tmp_path: Path):
    good = config(tmp_path, "good", "gru")
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({**TINY, "model": {"name": "many_to_one", "cel": "gru"}}))
    out = tmp_path / "cmp"
    result = CliRunner().invoke(app, ["compare", str(good), str(bad), "--out", str(out)])
    assert result.exit_code == 2 and "unknown key 'model.cel'" in result.output
    assert not (out / "runs").exists()
    result = CliRunner().invoke(app, ["compare", str(tmp_path / "nope.yaml"), "--out", str(out)])
    assert result.exit_code == 2 and "neither a config file nor a run folder" in result.output

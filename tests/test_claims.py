"""Every measured number in the documents is in a committed JSON, and timings carry
the machine's load (scripts/check_claims.py, rnnzoo.perf.LoadSampler)."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType, SimpleNamespace

import pytest

from rnnzoo import perf

ROOT = Path(__file__).resolve().parents[1]


def _script(name: str) -> ModuleType:
    """A script of scripts/ as a module (registered first: dataclasses look it up)."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


claims = _script("check_claims")


def _problems(document: str, text: str) -> list[str]:
    return claims.check_document(ROOT / document, ROOT, text)


def _tree(tmp_path: Path, doc: str, evidence: dict[str, object]) -> Path:
    """A repository with one document (docs/DOC.md) and its JSONs under benchmarks/."""
    (tmp_path / "docs").mkdir(parents=True)
    (tmp_path / "benchmarks").mkdir()
    for name, content in evidence.items():
        (tmp_path / "benchmarks" / name).write_text(json.dumps(content))
    path = tmp_path / "docs" / "DOC.md"
    path.write_text(doc)
    return path


@pytest.mark.parametrize("document", claims.DOCUMENTS)
def test_every_measured_number_is_in_a_json_its_section_cites(document):
    assert claims.check_document(ROOT / document, ROOT) == []


@pytest.mark.parametrize("document", claims.DOCUMENTS)
def test_the_json_the_documents_cite_are_committed(document):
    if not (ROOT / ".git").exists() or shutil.which("git") is None:
        pytest.skip("not a git checkout")
    text = (ROOT / document).read_text()
    cited = {
        path
        for ref in claims.JSON_REF.findall(text)
        if (path := claims._resolve(ref, ROOT / document, ROOT)) is not None
    }
    for path in cited:
        done = subprocess.run(
            ["git", "ls-files", "--error-unmatch", str(path)], cwd=ROOT, capture_output=True
        )
        assert done.returncode == 0, f"{path} is cited but not committed"


@pytest.mark.parametrize(
    ("document", "shown", "changed", "number"),
    [
        ("benchmarks/RESULTS.md", "| LSTM | 200 | 0.1704 |", "| LSTM | 200 | 0.1714 |", "0.1714"),
        ("benchmarks/RESULTS.md", "**217 GFLOP/s", "**227 GFLOP/s", "227 GFLOP/s"),
        ("benchmarks/RESULTS.md", "**90.3 %** | 174 |", "**90.3 %** | 184 |", "184"),
        ("README.md", "GRU 0.85x and 0.67x", "GRU 0.85x and 6.67x", "6.67x"),
        ("README.md", "`etth1_segrnn` **0.355**", "`etth1_segrnn` **0.365**", "0.365"),
        ("README.md", "(lstm)          36.91", "(lstm)          36.19", "36.19"),
    ],
)
def test_a_number_changed_to_one_no_json_holds_is_caught(document, shown, changed, number):
    text = (ROOT / document).read_text()
    assert text.count(shown) == 1
    problems = _problems(document, text.replace(shown, changed))
    assert len(problems) == 1, problems
    assert repr(number) in problems[0]


def test_the_same_value_at_another_rounding_still_matches():
    text = (ROOT / "benchmarks/RESULTS.md").read_text()
    shorter = text.replace("| LSTM | 200 | 0.1704 |", "| LSTM | 200 | 0.17 |")
    assert _problems("benchmarks/RESULTS.md", shorter) == []


@pytest.mark.parametrize(
    ("text", "value", "matches"),
    [
        ("scores 0.355 on test", 0.35512, True),
        ("scores 0.356 on test", 0.35512, False),
        ("accuracy 89.6 %", 0.8961, True),
        ("accuracy 89.7 %", 0.8961, False),
        ("accuracy 89.6 %", 89.61, True),
        ("takes 1.9x its time", 1.93, True),
        ("takes 1.9x its time", 1.96, False),
        ("a forward of 30 ms", 0.0297, True),
        ("ran in 10 min 16 s", 616.2, True),
        ("ran in 10 min 16 s", 617.0, False),
        ("about 3 min of training", 173.8, True),
        ("2.59M parameters", 2592866, True),
        ("249k tokens/s", 248734.5, True),
        ("falls 6.2e19x", 6.19e19, True),
        ("falls 6.3e19x", 6.19e19, False),
        ("in 1,338 s", 1338.2, True),
        ("-0.80 points against one layer", -0.008, True),
    ],
)
def test_a_number_matches_a_json_value_after_the_rounding_shown(text, value, matches):
    found = claims.claims_in(text, 1, False)
    assert len(found) == 1, found
    assert claims.backed(found[0], [abs(value)]) is matches


@pytest.mark.parametrize(
    "text",
    [
        "issue 14 and section 3 of commit 97e54b5",
        "Python 3.11.7, torch 2.13.0+cpu on 2026-11-26",
        "Ba et al. 2016; the series covers 1949-1960",
        "hidden 128, 25 epochs, batch 64 on 10,000 sequences",
        "T=256, B=64, H=256 and K = 4",
        "Adam 1e-3, lr 3e-4, dropout 0.3, clip 1.0, weight decay 0.01",
        "set `train.lr=3.5` and `--budget-minutes 2`",
        "see [the table](cells_2.5x.json)",
    ],
)
def test_settings_citations_and_code_are_not_measurements(text):
    assert claims.claims_in(text, 1, False) == []


def test_a_table_cell_of_numbers_is_measured_and_its_header_unit_applies(tmp_path):
    doc = (
        "# Speed\n\nFrom `benchmarks/t.json`; idle.\n\n"
        "| cell | T | scan (ms) |\n|---|---|---|\n| mingru | 256 | 60.6 |\n"
    )
    assert claims.check_document(_tree(tmp_path, doc, {"t.json": [256, 0.0606]}), tmp_path) == []
    wrong = doc.replace("| 256 |", "| 255 |")
    problems = claims.check_document(_tree(tmp_path / "x", wrong, {"t.json": [256, 0.0606]}),
                                     tmp_path / "x")  # fmt: skip
    assert len(problems) == 1 and "'255'" in problems[0]


def test_numbers_in_code_blocks_with_a_language_are_skipped_but_output_is_checked(tmp_path):
    command = "```bash\nrnnzoo train --set lr=0.123\n```\n"
    doc = f"# Run\n\n`benchmarks/t.json`\n\n{command}\n```\nrmse 36.91\n```\n"
    problems = claims.check_document(_tree(tmp_path, doc, {"t.json": [1.0]}), tmp_path)
    assert len(problems) == 1 and "'36.91'" in problems[0]


def test_a_section_that_cites_no_json_backs_none_of_its_numbers(tmp_path):
    doc = "# A\n\nSee `benchmarks/t.json`: 0.355.\n\n# B\n\nScores 0.355.\n"
    problems = claims.check_document(_tree(tmp_path, doc, {"t.json": [0.355]}), tmp_path)
    assert len(problems) == 1 and ":7:" in problems[0] and "no JSON" in problems[0]


def test_a_subsection_inherits_the_json_its_parent_cites(tmp_path):
    doc = "# A\n\nSee `benchmarks/t.json`.\n\n## A.1\n\nScores 0.355.\n"
    assert claims.check_document(_tree(tmp_path, doc, {"t.json": [0.355]}), tmp_path) == []


def test_a_timing_must_say_how_busy_the_machine_was(tmp_path):
    evidence = {"t.json": {"seconds": 12.3}}
    silent = "# A\n\nFrom `benchmarks/t.json`: 12.3 s.\n"
    problems = claims.check_document(_tree(tmp_path, silent, evidence), tmp_path)
    assert len(problems) == 1 and "load" in problems[0]
    said = silent.replace("12.3 s.", "12.3 s (load not recorded).")
    assert claims.check_document(_tree(tmp_path / "x", said, evidence), tmp_path / "x") == []


def test_a_timing_taken_under_load_must_say_so(tmp_path):
    record = {"max": 5.2, "mean": 4.1, "samples": 9, "cores": 2, "idle": False}
    evidence = {"t.json": {"seconds": 12.3, "load": record}}
    doc = "# A\n\nFrom `benchmarks/t.json`: 12.3 s, load at most 5.2.\n"
    problems = claims.check_document(_tree(tmp_path, doc, evidence), tmp_path)
    assert len(problems) == 1 and "under load" in problems[0]
    said = doc.replace("12.3 s,", "12.3 s under load,")
    assert claims.check_document(_tree(tmp_path / "x", said, evidence), tmp_path / "x") == []


def test_an_allowed_phrase_that_left_the_document_is_an_error():
    text = (ROOT / "README.md").read_text().replace("caps it near 62.5 %", "caps it at 62.5 %")
    problems = _problems("README.md", text)
    assert any("stale entry" in p for p in problems)
    assert any("'62.5 %'" in p for p in problems)  # and the number is checked again


def test_the_checker_exits_1_and_names_the_number(tmp_path, capsys):
    doc = _tree(tmp_path, "# A\n\n`benchmarks/t.json`: 0.356.\n", {"t.json": [0.355]})
    assert claims.main([str(doc), "--root", str(tmp_path)]) == 1
    assert "'0.356'" in capsys.readouterr().out
    doc.write_text("# A\n\n`benchmarks/t.json`: 0.355.\n")
    assert claims.main([str(doc), "--root", str(tmp_path)]) == 0


def test_load_sampler_samples_during_the_run_not_only_around_it(monkeypatch):
    readings = iter([0.5, 7.5, 0.6])  # a job that came and went while the run timed
    monkeypatch.setattr(perf, "_load_now", lambda: next(readings, 0.6))
    with perf.LoadSampler(interval_s=0.02) as sampler:
        time.sleep(0.2)
    record = sampler.record()
    assert record["samples"] >= 4  # entry, several in between, exit
    assert record["max"] == 7.5
    assert record["idle"] is False  # before (0.5) and after (0.6) alone would say idle
    assert perf.describe_load(record).startswith("under load (")


def test_load_records_merge_and_read_as_a_sentence(monkeypatch):
    monkeypatch.setattr(perf, "cpu_cores", lambda: 2)
    idle = {"max": 2.0, "mean": 1.0, "samples": 3, "cores": 2, "idle": True}
    busy = {"max": 4.0, "mean": 3.0, "samples": 1, "cores": 2, "idle": False}
    merged = perf.merge_load([idle, busy])
    assert merged == {"max": 4.0, "mean": 1.5, "samples": 4, "cores": 2, "idle": False}
    assert perf.describe_load(idle) == (
        "idle machine (1-minute load average at most 2.0, mean 1.0, on 2 cores)"
    )
    assert perf.describe_load(perf.merge_load([])) == "load not recorded"


def test_the_report_shows_only_numbers_its_json_holds(tmp_path, monkeypatch):
    """Section 2 of make_report (the one timing it runs itself), tiny repeats: every
    number it prints is in the facts it writes to docs/report.json, load included."""
    report = _script("make_report")
    tiny = {"seq_len": 5, "batch": 2, "input_size": 3, "hidden_size": 4}
    monkeypatch.setattr(report, "STEP", tiny)
    args = SimpleNamespace(repeats=3, load=[], facts={})
    lines: list[str] = []
    report.step_cost_section(args, lines)
    load = args.facts["step_cost"]["load"]
    assert load["samples"] >= 2 and args.load == [load]
    assert "load" in " ".join(lines)
    merged = report.merge_load(args.load)
    head = ["# Report", "", "Every number below is in `docs/report.json`.", ""]
    doc = "\n".join(head + report._load_note(merged, []) + lines)
    (tmp_path / "docs").mkdir()
    evidence = {"load": merged, "sections": args.facts}
    (tmp_path / "docs" / "report.json").write_text(json.dumps(evidence))
    (tmp_path / "docs" / "REPORT.md").write_text(doc)
    assert claims.check_document(tmp_path / "docs" / "REPORT.md", tmp_path) == []


def test_bench_scan_records_the_load_of_each_timing(tmp_path, monkeypatch):
    scan = _script("bench_scan")
    out = tmp_path / "scan.json"
    argv = ["bench_scan.py", "--cells", "mingru", "--seq-lens", "4", "--batch", "2"]
    argv += ["--hidden", "3", "--repeats", "1", "--warmup", "0", "--out", str(out)]
    monkeypatch.setattr(sys, "argv", argv)
    scan.main()
    written = json.loads(out.read_text())
    assert written["results"][0]["load"]["samples"] >= 2
    assert written["load"]["samples"] == written["results"][0]["load"]["samples"]

"""scripts/gpu_check.py (``make gpu-check``) end to end on the CPU: every section in
gpu.json, a missing data file skipped with its reason, a failing or overrunning section
recorded, and no CPU run ever written where a GPU result belongs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

from tests.test_bad_input import assert_user_error, unchanged

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "gpu_check.py"
SMOKE = ["--device", "cpu", "--smoke"]

# A stand-in for the gpu-marked suite: one pass, one failure, one test of another mark.
GPU_TESTS = """
import pytest

@pytest.mark.gpu
def test_passes():
    pass

@pytest.mark.gpu
def test_fails():
    assert False

def test_not_marked():
    pass
"""


def gpu_check(*args: str | Path) -> SimpleNamespace:
    """Run the script as make does; its result shaped like a CliRunner result."""
    done = subprocess.run(
        [sys.executable, str(SCRIPT), *map(str, args)], cwd=ROOT, capture_output=True, text=True
    )
    return SimpleNamespace(
        exit_code=done.returncode, output=done.stdout + done.stderr, exception=None
    )


def write_etth1(path: Path, rows: int = 200) -> Path:
    """A short series with ETTh1's columns (hourly dates, seven random walks)."""
    columns = ["HUFL", "HULL", "MUFL", "MULL", "LUFL", "LULL", "OT"]
    values = np.random.default_rng(0).normal(size=(rows, 7)).cumsum(axis=0)
    frame = pd.DataFrame(values, columns=columns)
    dates = pd.date_range("2016-07-01", periods=rows, freq="h")
    frame.insert(0, "date", dates.strftime("%Y-%m-%d %H:%M:%S"))
    frame.to_csv(path, index=False)
    return path


@pytest.mark.slow  # three child processes (pytest, the benchmark, a training run)
def test_a_smoke_run_records_every_section(tmp_path: Path):
    tests = tmp_path / "test_marked.py"
    tests.write_text(GPU_TESTS)
    out = tmp_path / "gpu.json"
    result = gpu_check(
        *SMOKE, "--out", out, "--tests", tests,
        "--imdb", tmp_path / "missing.tar.gz", "--etth1", write_etth1(tmp_path / "etth1.csv"),
    )  # fmt: skip
    assert result.exit_code == 1, result.output  # the failing stand-in test
    report = json.loads(out.read_text())
    assert report["device"] == "cpu" and report["smoke"] is True
    assert report["machine"]["torch"] == torch.__version__
    sections = report["sections"]
    assert list(sections) == ["equivalence", "cells", "imdb", "etth1"]
    assert report["ok"] is False and report["complete"] is False

    eq = sections["equivalence"]
    assert eq["status"] == "failed", eq
    assert eq["counts"] == {"tests": 2, "passed": 1, "failures": 1, "errors": 0, "skipped": 0}
    assert eq["failures"] == ["test_marked::test_fails"]

    cells = sections["cells"]
    assert cells["status"] == "ok", cells
    [row] = cells["results"]
    assert (row["device"], row["cell"], row["seq_len"]) == ("cpu", "lstm", 4)
    assert {"ours_fused", "ours_loop", "torch"} <= set(row["forward_backward"])

    imdb = sections["imdb"]
    assert imdb["status"] == "skipped"
    assert "missing.tar.gz" in imdb["reason"] and "IMDB=" in imdb["reason"]

    etth1 = sections["etth1"]
    assert etth1["status"] == "ok", etth1
    assert etth1["config"] == "etth1_lstm" and "train.epochs=1" in etth1["overrides"]
    [seconds] = etth1["seconds_per_epoch"]
    assert seconds > 0 and etth1["peak_memory_mb"] > 0
    assert etth1["peak_memory_of"] == "resident set"
    assert "mse" in etth1["val"]


def test_a_section_past_its_cap_is_stopped_and_recorded(tmp_path: Path):
    out = tmp_path / "gpu.json"
    result = gpu_check(*SMOKE, "--out", out, "--sections", "cells", "--cap-factor", "0.001")
    assert result.exit_code == 1, result.output
    cells = json.loads(out.read_text())["sections"]["cells"]
    assert cells["status"] == "timeout" and "cap" in cells["reason"], cells
    assert "results" not in cells


@pytest.mark.parametrize("args", [["--device", "cpu"], ["--smoke", "--out", "benchmarks/gpu.json"]])
def test_a_cpu_or_smoke_run_never_writes_the_gpu_result(args):
    with unchanged(ROOT / "benchmarks"):
        out = assert_user_error(gpu_check(*args), "benchmarks/gpu.json", "--out elsewhere")
    assert len(out.strip().splitlines()) == 1, out


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a CPU-only machine")
def test_cuda_without_a_device_is_a_clear_error(tmp_path: Path):
    out = tmp_path / "gpu.json"
    assert_user_error(gpu_check("--out", out), "no CUDA device")
    assert not out.exists()

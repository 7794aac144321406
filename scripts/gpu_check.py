"""GPU readiness in one call (``make gpu-check``): checks and measures, into gpu.json.

    python scripts/gpu_check.py --imdb data/aclImdb_v1.tar.gz --etth1 data/ETTh1.csv
    python scripts/gpu_check.py --device cpu --smoke --out /tmp/gpu.json   # the script itself

Four sections, one after another, each in a child process under its own time cap (the
caps add up to under five minutes; ``--cap-factor`` scales them):

    equivalence  pytest -m gpu: the equivalence suite on the device (tests/test_gpu.py and
                 every other gpu-marked test), pass/fail counts from pytest's JUnit XML
    cells        scripts/bench_cells.py --preset gpu: our impls against cuDNN, its rows
    imdb         one epoch of configs/imdb_lstm.yaml on the device
    etth1        one epoch of configs/etth1_lstm.yaml on the device

A training section reads seconds per epoch from the run's metrics.jsonl and the peak
memory (CUDA tensors on a GPU) from its summary.json. A section whose data file is
missing is skipped with the reason; one that fails or runs past its cap is recorded with
the end of its output. The JSON is rewritten after every section, so whatever ran is
kept; the exit status is 1 when a section failed. A CPU or ``--smoke`` run (a tiny grid
and tiny models, to test this script) never writes benchmarks/gpu.json itself: give
``--out`` elsewhere, so that it cannot pass for a GPU result.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from rnnzoo.errors import ConfigError, RnnzooError

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "benchmarks" / "gpu.json"
SECTIONS = ("equivalence", "cells", "imdb", "etth1")
CAPS = {"equivalence": 75, "cells": 60, "imdb": 100, "etth1": 45}  # seconds: 280 in all
CONFIGS = {"imdb": "imdb_lstm", "etth1": "etth1_lstm"}
# What a run's summary.json calls peak_memory_mb (rnnzoo.perf.peak_memory_mb).
PEAK_OF = {"cuda": "CUDA tensors (torch.cuda.max_memory_allocated)", "cpu": "resident set"}
# The cells benchmark: the gpu preset, or one tiny configuration for a smoke run.
BENCH = ["--preset", "gpu"]
BENCH_SMOKE = [
    *("--cells", "lstm", "--seq-lens", "4", "--batches", "2", "--hidden", "4"),
    *("--layers", "1", "--directions", "uni", "--input-size", "3"),
    *("--repeats", "1", "--warmup", "0", "--peak-size", "64"),
]
# Smoke runs of the training sections: tiny models on tiny data, one or two steps.
TRAIN_SMOKE = {
    "imdb": [
        "model.hidden_size=8", "model.embedding_dim=8", "data.vocab_size=200",
        "data.min_frequency=1", "data.max_len=16", "data.cache=false", "train.batch_size=8",
    ],
    "etth1": [
        "data.protocol=ratios", "data.input_len=8", "data.horizon=4",
        "model.hidden_size=8", "train.batch_size=16",
    ],
}  # fmt: skip


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    parser.add_argument("--smoke", action="store_true", help="tiny grid and models (a test)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="the JSON to write")
    parser.add_argument("--imdb", type=Path, default=Path("data/aclImdb_v1.tar.gz"))
    parser.add_argument("--etth1", type=Path, default=Path("data/ETTh1.csv"))
    parser.add_argument("--sections", nargs="+", choices=SECTIONS, default=list(SECTIONS))
    parser.add_argument(
        "--tests", nargs="+", default=["tests"], help="where pytest looks for gpu tests"
    )
    parser.add_argument("--cap-factor", type=float, default=1.0, help="scale every time cap")
    return parser.parse_args(argv)


def check_args(args: argparse.Namespace) -> None:
    """Refuse, before anything runs, what would give a misleading or no result."""
    if (args.device != "cuda" or args.smoke) and args.out.resolve() == DEFAULT_OUT:
        kind, name = "smoke" if args.smoke else "CPU", DEFAULT_OUT.relative_to(ROOT)
        raise ConfigError(
            f"a {kind} run does not write {name} (it would pass for a GPU result); "
            "give --out elsewhere"
        )
    import torch  # here, so that a refusal above answers at once

    if args.device == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            "--device cuda: no CUDA device is available to this process",
            "run it on a CUDA machine, or test the script with --device cpu --smoke --out ...",
        )
    if args.cap_factor <= 0:
        raise ConfigError(f"--cap-factor must be positive, got {args.cap_factor}")


def machine(device: str) -> dict[str, Any]:
    """Versions and hardware, so the JSON says what it was measured on."""
    import torch

    info: dict[str, Any] = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "cpu_count": os.cpu_count(),
        "commit": _git("rev-parse", "HEAD"),
        "uncommitted_changes": bool(_git("status", "--porcelain", "--untracked-files=no")),
    }
    if device == "cuda":
        props = torch.cuda.get_device_properties(0)
        info["device_name"] = props.name
        info["capability"] = f"{props.major}.{props.minor}"
        info["device_memory_gib"] = round(props.total_memory / 2**30, 1)
        info["device_count"] = torch.cuda.device_count()
    return info


def _git(*args: str) -> str | None:
    try:
        done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)
    except OSError:
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def run_child(cmd: list[str], cap: float, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run ``cmd`` in its own process group for at most ``cap`` seconds.

    Returns its exit status (None when it was stopped at the cap), output and wall time.
    The whole group is killed at the cap, so no grandchild keeps the device busy."""
    started = time.perf_counter()
    child = subprocess.Popen(
        cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,
    )  # fmt: skip
    try:
        output, _ = child.communicate(timeout=cap)
        status: int | None = child.returncode
    except subprocess.TimeoutExpired:
        os.killpg(child.pid, signal.SIGKILL)
        output, _ = child.communicate()
        status = None
    return {"returncode": status, "output": output, "seconds": time.perf_counter() - started}


def outcome(done: dict[str, Any], cap: float, ok: bool, reason: str = "") -> dict[str, Any]:
    """A section's status from its child's result: ok, failed or timeout."""
    row: dict[str, Any] = {"seconds": round(done["seconds"], 1), "cap_seconds": cap}
    if done["returncode"] is None:
        row.update(status="timeout", reason=f"stopped at its cap of {cap:g} s")
    elif ok:
        row["status"] = "ok"
    else:
        row.update(status="failed", reason=reason or f"exit status {done['returncode']}")
    if row["status"] != "ok":
        row["log_tail"] = done["output"][-3000:]
    return row


def child_env() -> dict[str, str]:
    """The environment for children: this tree importable, the gpu tests on CUDA."""
    env = dict(os.environ)
    env.pop("RNNZOO_GPU_TESTS_DEVICE", None)  # a dry-run setting must not leak in
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def equivalence(args: argparse.Namespace, cap: float, work: Path) -> dict[str, Any]:
    """pytest -m gpu, with the counts and the failing tests' names from JUnit XML."""
    xml = work / "junit.xml"
    cmd = [sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-p", "no:cacheprovider"]
    # pytest names a test by its path from the rootdir: tests outside the repository
    # (the smoke test's stand-in) get their own folder as the rootdir, so their names do
    # not depend on where the repository and the temporary folder happen to lie
    tests = [Path(t).resolve() for t in args.tests]
    folders = [t if t.is_dir() else t.parent for t in tests]
    inside = all(t.is_relative_to(ROOT) for t in tests)
    rootdir = ROOT if inside else Path(os.path.commonpath(folders))
    cmd += [f"--junitxml={xml}", f"--rootdir={rootdir}", *map(str, tests)]
    done = run_child(cmd, cap, child_env())
    counts, failures = junit_counts(xml) if xml.is_file() else ({}, [])
    # On CUDA nothing may be skipped into a pass: at least one test must have run.
    ran = counts.get("passed", 0) > 0 or args.device != "cuda"
    ok = done["returncode"] == 0 and ran
    reason = "" if ran else "no gpu test ran (all skipped or none collected)"
    return {**outcome(done, cap, ok, reason), "counts": counts, "failures": failures[:50]}


def junit_counts(path: Path) -> tuple[dict[str, int], list[str]]:
    """Tests, passed, failed, errors and skipped in a JUnit XML; the failing tests' ids."""
    root = ET.parse(path).getroot()
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    counts = {k: sum(int(s.get(k, 0)) for s in suites) for k in ("tests", "failures", "errors")}
    counts["skipped"] = sum(int(s.get("skipped", 0)) for s in suites)
    counts["passed"] = counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"]
    failures = [
        f"{case.get('classname')}::{case.get('name')}"
        for case in root.iter("testcase")
        if case.find("failure") is not None or case.find("error") is not None
    ]
    return counts, failures


def cells(args: argparse.Namespace, cap: float, work: Path) -> dict[str, Any]:
    """bench_cells.py on the device; its rows and machine record, as it wrote them."""
    out = work / "cells.json"
    grid = BENCH_SMOKE if args.smoke else BENCH
    cmd = [sys.executable, str(ROOT / "scripts" / "bench_cells.py"), *grid]
    cmd += ["--device", args.device, "--out", str(out)]
    done = run_child(cmd, cap, child_env())
    ok = done["returncode"] == 0 and out.is_file()
    row = outcome(done, cap, ok)
    if ok:
        bench = json.loads(out.read_text())
        row.update(command=bench["command"], machine=bench["machine"], results=bench["results"])
    return row


def training(name: str, data: Path, args: argparse.Namespace, cap: float, work: Path) -> dict:
    """One epoch of the shipped config on the device: seconds, peak memory, scores."""
    config = CONFIGS[name]
    row: dict[str, Any] = {"config": config, "data": str(data)}
    if not data.exists():
        variable = name.upper()
        reason = f"data file not found: {data} (make gpu-check {variable}=path/to/it)"
        return {**row, "status": "skipped", "reason": reason}
    sets = [f"data.path={data.resolve()}", f"train.device={args.device}", "train.epochs=1"]
    sets += ["output.name=run", "output.tensorboard=false"]
    sets += TRAIN_SMOKE[name] if args.smoke else []
    cmd = [sys.executable, "-m", "rnnzoo", "train", "-c", config, "--out", str(work / name)]
    cmd += [a for s in sets for a in ("--set", s)]
    done = run_child(cmd, cap, child_env())
    run_dir = work / name / "run"
    ok = done["returncode"] == 0 and (run_dir / "summary.json").is_file()
    row.update(outcome(done, cap, ok), overrides=sets)
    if ok:
        row.update(epoch_record(run_dir))
        row["peak_memory_of"] = PEAK_OF[args.device]
    return row


def epoch_record(run_dir: Path) -> dict[str, Any]:
    """What a run folder says about its one epoch."""
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    epochs = [json.loads(line) for line in lines]
    summary = json.loads((run_dir / "summary.json").read_text())
    return {
        "seconds_per_epoch": [e["seconds"] for e in epochs],
        "samples_per_s": [e["samples_per_s"] for e in epochs],
        "peak_memory_mb": summary.get("peak_memory_mb"),
        "val": summary.get("val"),
    }


def run_section(name: str, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    cap = CAPS[name] * args.cap_factor
    try:
        if name == "equivalence":
            return equivalence(args, cap, work)
        if name == "cells":
            return cells(args, cap, work)
        return training(name, args.imdb if name == "imdb" else args.etth1, args, cap, work)
    except Exception as err:  # this script's own bug: record it, go on with the next
        return {"status": "failed", "reason": f"{type(err).__name__}: {err}"}


def write(path: Path, result: dict[str, Any]) -> None:
    """Replace ``path`` in one step, so a reader never sees half a JSON."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    tmp.replace(path)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    check_args(args)
    result: dict[str, Any] = {
        "command": "python scripts/gpu_check.py "
        + " ".join(sys.argv[1:] if argv is None else argv),
        "device": args.device,
        "smoke": args.smoke,
        "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine(args.device),
        "sections": {},
    }
    with tempfile.TemporaryDirectory(prefix="gpu_check_") as tmp:
        for name in args.sections:
            print(f"gpu-check: {name} ...", flush=True)
            row = run_section(name, args, Path(tmp))
            result["sections"][name] = row
            print(f"gpu-check: {name}: {row['status']} {row.get('reason', '')}".rstrip())
            write(args.out, result)
    statuses = [row["status"] for row in result["sections"].values()]
    result["ok"] = all(s in ("ok", "skipped") for s in statuses)
    result["complete"] = all(s == "ok" for s in statuses)
    write(args.out, result)
    print(f"wrote {args.out}")
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except RnnzooError as err:
        print(f"error: {err.message}", file=sys.stderr)
        if err.hint:
            print(f"help: {err.hint}", file=sys.stderr)
        sys.exit(err.exit_code)

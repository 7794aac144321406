"""Peak and resident memory of one IMDB epoch: rnnzoo's imdb_lstm against torch.nn.

Each run trains one epoch in its own child process (so its peak is its own) on the
same data with the same settings: imdb_lstm.yaml's tokenizer, vocabulary, lengths and
batch size. The child samples its resident set (VmRSS) every 50 ms and reads it at the
points where a run's working set changes: before training (data, tokenizer, model
ready), after the epoch's training, after evaluation. Variants:

- ``rnnzoo``: the shipped path (``impl: auto``, the tuned allocator, memory released
  after training and evaluation);
- ``rnnzoo, no release``: the same without ``release_free_memory`` (what the tuned
  allocator kept before it was added);
- ``rnnzoo, RNNZOO_MALLOC=system``: glibc's default allocator settings;
- ``rnnzoo, impl torch``: ``torch.nn.LSTM`` inside our layer, so the difference to the
  first is what the compiled loop's saved buffers cost;
- ``rnnzoo, impl fused``: the Python fast path the compiled loop replaced;
- ``torch.nn (hand-written)``: scripts/bench_imdb.py's baseline, tuned and system.

    python scripts/bench_memory.py --data ../shared/data/imdb/aclImdb_train.tar.gz \\
        --reviews 5000 --out benchmarks/memory.json
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bench_common import write_json

from rnnzoo.perf import LoadSampler, describe_load, merge_load

ROOT = Path(__file__).resolve().parent.parent
VARIANTS: dict[str, dict[str, Any]] = {
    "rnnzoo": {"kind": "rnnzoo"},
    "rnnzoo, no release": {"kind": "rnnzoo", "no_release": True},
    "rnnzoo, RNNZOO_MALLOC=system": {"kind": "rnnzoo", "malloc": "system"},
    "rnnzoo, impl torch": {"kind": "rnnzoo", "set": ["model.impl=torch"]},
    "rnnzoo, impl fused": {"kind": "rnnzoo", "set": ["model.impl=fused"]},
    "torch.nn (hand-written)": {"kind": "baseline"},
    "torch.nn (hand-written), RNNZOO_MALLOC=system": {"kind": "baseline", "malloc": "system"},
}


def rss_mb() -> float:
    """This process's resident set now, in MB (VmRSS of /proc/self/status)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


class RssSampler:
    """VmRSS every ``interval_s`` in a thread, and at named points (``mark``)."""

    def __init__(self, interval_s: float = 0.05) -> None:
        self.interval_s, self.points, self.peak = interval_s, [], 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.peak = max(self.peak, rss_mb())

    def mark(self, name: str) -> None:
        now = rss_mb()
        self.peak = max(self.peak, now)
        self.points.append({"point": name, "rss_mb": round(now, 1)})

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def child(spec: dict[str, Any]) -> dict[str, Any]:
    """One variant, in this (child) process; returns what it measured."""
    from rnnzoo.perf import tune_cpu_allocator

    tuned = tune_cpu_allocator()  # a no-op under RNNZOO_MALLOC=system
    with RssSampler() as rss:
        rss.mark("start")
        if spec["kind"] == "baseline":
            baseline(spec, rss)
        else:
            ours(spec, rss)
        rss.mark("end")
    return {
        "allocator_tuned": tuned,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "sampled_peak_rss_mb": round(rss.peak, 1),
        "points": rss.points,
    }


def ours(spec: dict[str, Any], rss: RssSampler) -> None:
    """``rnnzoo train -c imdb_lstm`` for one epoch, RSS read at the trainer's phases."""
    from rnnzoo import trainer
    from rnnzoo.cli import app

    if spec.get("no_release"):
        trainer.release_free_memory = lambda: False  # type: ignore[attr-defined]
    fit, train_epoch, evaluate = (
        trainer.Trainer.fit,
        trainer.Trainer._train_epoch,
        trainer.Trainer.evaluate,
    )

    def fit_marked(self: Any) -> Any:
        rss.mark("ready to train (data, tokenizer, model)")
        return fit(self)

    def train_marked(self: Any) -> Any:
        out = train_epoch(self)
        rss.mark("after the epoch's training")
        return out

    def evaluate_marked(self: Any, data: Any) -> Any:
        out = evaluate(self, data)
        rss.mark("after evaluation")
        return out

    trainer.Trainer.fit = fit_marked  # type: ignore[method-assign]
    trainer.Trainer._train_epoch = train_marked  # type: ignore[method-assign]
    trainer.Trainer.evaluate = evaluate_marked  # type: ignore[method-assign]
    sets = [f"data.path={spec['data']}", "train.epochs=1", "output.tensorboard=false"]
    sets += [f"output.name={spec['name']}", *spec.get("set", [])]
    args = ["train", "-c", str(ROOT / "configs" / "imdb_lstm.yaml"), "--out", spec["out"]]
    args += [a for s in sets for a in ("--set", s)]
    try:
        app(args)
    except SystemExit as done:
        if done.code not in (0, None):
            raise


def baseline(spec: dict[str, Any], rss: RssSampler) -> None:
    """scripts/bench_imdb.py's hand-written torch.nn.LSTM classifier, one epoch."""
    import bench_imdb

    args = argparse.Namespace(data=spec["data"])
    run_epoch = bench_imdb.run_baseline
    rss.mark("ready to train (imports)")
    run_epoch(args, 1)


def run_variant(name: str, spec: dict[str, Any], data: Path, out: Path) -> dict[str, Any]:
    """``spec`` in a child process; its measurements and the load while it ran."""
    full = {**spec, "data": str(data), "out": str(out), "name": f"run{len(os.listdir(out))}"}
    env = dict(os.environ)
    if spec.get("malloc"):
        env["RNNZOO_MALLOC"] = spec["malloc"]
    cmd = [sys.executable, __file__, "--child", json.dumps(full)]
    start = time.perf_counter()
    with LoadSampler() as load:
        done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if done.returncode != 0 or "RESULT " not in done.stdout:
        raise RuntimeError(f"{name} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    row = json.loads(done.stdout.rsplit("RESULT ", 1)[1])
    return {"variant": name, **row, "wall_s": round(time.perf_counter() - start, 1),
            "load": load.record()}  # fmt: skip


def subset(source: Path, reviews: int, out: Path) -> Path:
    """A tarball in the official layout with the first ``reviews`` labelled training
    reviews of ``source`` (an archive), half positive and half negative."""
    import tarfile

    wanted = {"pos": reviews // 2, "neg": reviews - reviews // 2}
    path = out / "aclImdb_subset.tar.gz"
    with tarfile.open(source) as src, tarfile.open(path, "w:gz") as dst:
        for member in src:
            parts = member.name.split("/")
            kind = parts[2] if member.isfile() and parts[1:2] == ["train"] else None
            if kind in wanted and wanted[kind] > 0:
                wanted[kind] -= 1
                dst.addfile(member, src.extractfile(member))
            if not any(wanted.values()):
                break
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, help="IMDB archive or folder")
    parser.add_argument(
        "--reviews", type=int, default=None, help="train on a subset: this many reviews"
    )
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        print("RESULT " + json.dumps(child(json.loads(args.child))), flush=True)
        return
    if args.data is None:
        parser.error("--data is required")
    rows = []
    with tempfile.TemporaryDirectory() as tmp, tempfile.TemporaryDirectory() as runs:
        data = args.data.resolve()
        if args.reviews is not None:
            data = subset(data, args.reviews, Path(tmp))
        for name in args.variants:
            print(f"{name} ...", flush=True)
            rows.append(run_variant(name, VARIANTS[name], data, Path(runs)))
            points = ", ".join(f"{p['point']} {p['rss_mb']:.0f}" for p in rows[-1]["points"])
            print(f"  peak {rows[-1]['peak_rss_mb']:.0f} MB; RSS: {points}", flush=True)
            save(args.out, args.reviews, rows)  # each variant takes minutes: keep what ran
    print(describe_load(merge_load([r["load"] for r in rows])))


def save(out: Path | None, reviews: int | None, rows: list[dict[str, Any]]) -> None:
    """The rows so far, each peak also as a ratio to the hand-written baseline's."""
    base = next((r for r in rows if r["variant"] == "torch.nn (hand-written)"), None)
    if base is not None:
        for row in rows:
            row["peak_vs_hand_written"] = round(row["peak_rss_mb"] / base["peak_rss_mb"], 3)
    load = merge_load([r["load"] for r in rows])
    write_json(out, "bench_memory.py", {"reviews": reviews, "load": load, "results": rows})


if __name__ == "__main__":
    main()

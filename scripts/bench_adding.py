"""The adding problem at T=100 and T=200: tanh RNN against LSTM and GRU, same budget.

Trains the shipped configs (``configs/adding_*.yaml``) for the same number of epochs,
then reports the test MSE of each run's best checkpoint (selected on validation) and
the first epoch, step and second at which validation MSE fell below 0.01.

    python scripts/bench_adding.py --out benchmarks/adding.json
    python scripts/bench_adding.py --seq-lens 100 --epochs 5      # a quick look
    python scripts/bench_adding.py --epoch-times --out benchmarks/adding_epochs.json

``--epoch-times`` instead times one training epoch of each config with every ``impl``
(loop: autograd through the Python loop; fused: the hand-written backward; torch:
torch.nn's kernels), median of ``--repeats``.

Prints a table and writes a JSON with every run's numbers and epoch curve, and the load
average sampled while each run trained (``rnnzoo.perf.LoadSampler``).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
from pathlib import Path

import torch

from rnnzoo import runs
from rnnzoo.perf import LoadSampler, describe_load, merge_load, tune_cpu_allocator

CONFIGS = Path(__file__).resolve().parent.parent / "configs"
SOLVED = 0.01


def bench_one(cell: str, seq_len: int, args: argparse.Namespace, root: Path) -> dict[str, object]:
    overrides = [
        f"data.seq_len={seq_len}",
        f"train.epochs={args.epochs}",
        "train.patience=null",  # same budget for every run: no early stopping
        f"train.seed={args.seed}",
        f"output.name={cell}-T{seq_len}",
        "output.tensorboard=false",
    ]
    with LoadSampler() as sampler:
        run_dir = runs.train(
            CONFIGS / f"adding_{cell}.yaml", overrides, out=root, echo=lambda s: None
        )
    curve = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    summary = json.loads((run_dir / "summary.json").read_text())
    elapsed, solved_at = 0.0, None
    for record in curve:
        elapsed += record["seconds"]
        if solved_at is None and record["val_mse"] < SOLVED:
            solved_at = {"epoch": record["epoch"], "step": record["step"], "seconds": elapsed}
    return {
        "cell": cell,
        "seq_len": seq_len,
        "epochs": args.epochs,
        "test_mse": summary["test"]["mse"],
        "best_val_mse": summary["val"]["mse"],
        "best_epoch": summary["best_epoch"],
        "train_seconds": elapsed,
        "solved_at": solved_at,
        "val_mse_curve": [r["val_mse"] for r in curve],
        "load": sampler.record(),
    }


def write_results(path: Path | None, rows: list[dict[str, object]]) -> None:
    """The rows as JSON, with the command and machine that produced them."""
    load = merge_load([r["load"] for r in rows])
    print(describe_load(load))
    if path is None:
        return
    result = {
        "command": "python scripts/bench_adding.py " + " ".join(sys.argv[1:]),
        "machine": {"platform": platform.platform(), "torch": torch.__version__},
        "threads": torch.get_num_threads(),
        "load": load,
        "results": rows,
    }
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {path}")


def epoch_seconds(
    cell: str, seq_len: int, impl: str, root: Path, repeats: int, loads: list[dict]
) -> float:
    """Median wall time of one training epoch (10,000 sequences) with ``impl``; the load
    sampled during each repeat goes to ``loads``."""
    times = []
    for r in range(repeats):
        overrides = [
            f"data.seq_len={seq_len}",
            "train.epochs=1",
            f"model.impl={impl}",
            f"output.name={cell}-T{seq_len}-{impl}-{r}",
            "output.tensorboard=false",
        ]
        with LoadSampler() as sampler:
            run_dir = runs.train(
                CONFIGS / f"adding_{cell}.yaml", overrides, out=root, echo=lambda s: None
            )
        loads.append(sampler.record())
        record = json.loads((run_dir / "metrics.jsonl").read_text().splitlines()[0])
        times.append(record["seconds"])
    return sorted(times)[len(times) // 2]


def time_epochs(args: argparse.Namespace) -> None:
    impls = ["loop", "fused", "native", "torch"]
    print(f"seconds per training epoch (10,000 sequences, batch 64), median of {args.repeats}")
    print(f"{'cell':5} {'T':>4} | " + " ".join(f"{i:>7}" for i in impls) + " | native/torch")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for seq_len in args.seq_lens:
            for cell in args.cells:
                loads: list[dict] = []
                secs = {
                    i: epoch_seconds(cell, seq_len, i, Path(tmp), args.repeats, loads)
                    for i in impls
                }
                rows.append(
                    {"cell": cell, "seq_len": seq_len, "seconds": secs, "load": merge_load(loads)}
                )
                print(
                    f"{cell:5} {seq_len:>4} | "
                    + " ".join(f"{secs[i]:>6.1f}s" for i in impls)
                    + f" | {secs['native'] / secs['torch']:.2f}x",
                    flush=True,
                )
    write_results(args.out, rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", nargs="+", default=["rnn", "lstm", "gru"])
    parser.add_argument("--seq-lens", nargs="+", type=int, default=[100, 200])
    parser.add_argument("--epochs", type=int, default=25)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    parser.add_argument("--epoch-times", action="store_true", help="time one epoch per impl")
    parser.add_argument("--repeats", type=int, default=3, help="with --epoch-times")
    args = parser.parse_args()
    tune_cpu_allocator()  # as the rnnzoo command does
    if args.epoch_times:
        time_epochs(args)
        return

    rows = []
    print(f"adding problem, {args.epochs} epochs of 10,000 sequences, batch 64, Adam 1e-3")
    print(f"{'cell':5} {'T':>4} | {'test MSE':>9} | {'best ep':>7} | {'MSE<0.01 at':>22} | train s")
    with tempfile.TemporaryDirectory() as tmp:
        for seq_len in args.seq_lens:
            for cell in args.cells:
                row = bench_one(cell, seq_len, args, Path(tmp))
                rows.append(row)
                at = row["solved_at"]
                solved = (
                    f"epoch {at['epoch']}, {at['seconds']:.0f}s"  # type: ignore[index]
                    if at
                    else "never"
                )
                print(
                    f"{cell:5} {seq_len:>4} | {row['test_mse']:>9.5f} | {row['best_epoch']:>7} | "
                    f"{solved:>22} | {row['train_seconds']:.0f}",
                    flush=True,
                )
    write_results(args.out, rows)


if __name__ == "__main__":
    main()

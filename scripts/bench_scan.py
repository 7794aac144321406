"""Speed of minGRU/minLSTM's parallel scan against their step-by-step loop.

Times forward + backward of one layer (float32) under ``impl='scan'`` and
``impl='loop'``, alternating the two in one process (so a noisy neighbour hits both),
and reports the medians of ``--repeats`` runs after a warm-up and loop / scan.

    python scripts/bench_scan.py --out benchmarks/scan.json
    python scripts/bench_scan.py --cells mingru --seq-lens 1024 --repeats 3

Prints a markdown table and, with ``--out``, writes a JSON with every timing and the load
average sampled while each configuration was timed (``rnnzoo.perf.LoadSampler``).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch

import rnnzoo
from rnnzoo.perf import LoadSampler, describe_load, merge_load, tune_cpu_allocator

IMPLS = ("scan", "loop")


def time_once(layer: rnnzoo.Recurrent, x: torch.Tensor) -> float:
    """Seconds for one forward + backward. x: (T, B, I)."""
    layer.zero_grad(set_to_none=True)
    start = time.perf_counter()
    out, _ = layer(x)  # (T, B, H)
    out.sum().backward()
    return time.perf_counter() - start


def bench(cell: str, steps: int, args: argparse.Namespace) -> dict:
    torch.manual_seed(0)
    layers = {impl: rnnzoo.Recurrent(cell, args.hidden, args.hidden, impl=impl) for impl in IMPLS}
    layers["loop"].load_state_dict(layers["scan"].state_dict())
    x = torch.randn(steps, args.batch, args.hidden)
    times: dict[str, list[float]] = {impl: [] for impl in IMPLS}
    for rep in range(args.warmup + args.repeats):
        order = IMPLS if rep % 2 == 0 else IMPLS[::-1]
        for impl in order:
            t = time_once(layers[impl], x)
            if rep >= args.warmup:
                times[impl].append(t)
    medians = {impl: statistics.median(ts) for impl, ts in times.items()}
    return {
        "cell": cell,
        "seq_len": steps,
        "median_s": medians,
        "loop_over_scan": medians["loop"] / medians["scan"],
        "times_s": times,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", nargs="+", default=["mingru", "minlstm"])
    parser.add_argument("--seq-lens", nargs="+", type=int, default=[256, 1024, 4096])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--hidden", type=int, default=256, help="hidden and input size")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--out", type=Path, help="write the results here as JSON")
    args = parser.parse_args()
    tune_cpu_allocator()  # as the rnnzoo command does: large buffers are reused, not re-faulted

    results = []
    for cell in args.cells:
        for steps in args.seq_lens:
            with LoadSampler() as sampler:
                result = bench(cell, steps, args)
            result["load"] = sampler.record()
            results.append(result)
    load = merge_load([r["load"] for r in results])
    threads = torch.get_num_threads()
    print(f"one layer, B={args.batch}, H=I={args.hidden}, float32, {threads} threads: ")
    print(f"forward + backward, median of {args.repeats} runs\n")
    print("| cell | T | scan (ms) | loop (ms) | loop / scan |")
    print("|---|---:|---:|---:|---:|")
    for r in results:
        scan_ms, loop_ms = 1e3 * r["median_s"]["scan"], 1e3 * r["median_s"]["loop"]
        row = f"| {r['cell']} | {r['seq_len']} | {scan_ms:.1f} | {loop_ms:.1f} |"
        print(f"{row} {r['loop_over_scan']:.1f}x |")
    print(f"\n{describe_load(load)}")
    if args.out is not None:
        machine = {
            "platform": platform.platform(),
            "processor": platform.processor(),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
        }
        config = {k: v for k, v in vars(args).items() if k != "out"}
        report = {"machine": machine, "config": config, "load": load, "results": results}
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n")
        print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()

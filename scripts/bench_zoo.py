"""Every cell of the zoo against torch.nn.LSTM, in a plain script (issue 16's table).

For each shape, torch.nn.LSTM of the same input and hidden size is the reference and
every cell (``impl='auto'``, what a user gets) is timed alternately with it in this
process: fwd+bwd (the sum of the outputs backpropagated) and forward only (under
no_grad), median of ``--repeats`` runs after one warm-up each. The ratio is ours over
the reference's median. The script changes no process setting: it does not call
``rnnzoo.perf.tune_cpu_allocator`` or touch the thread count, as a user's script would
not.

    python scripts/bench_zoo.py --out benchmarks/zoo.json
    python scripts/bench_zoo.py --cells lstm gru --shapes T256B64I128H256 --repeats 3

Also times the 2-layer, 200-unit LSTM at T=35, B=20 of a word-level language model
against torch.nn.LSTM of the same stack, and the extra impls ``--impls`` asks for.
"""

from __future__ import annotations

import argparse
import contextlib
import re
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from bench_common import write_json
from torch import nn

import rnnzoo
from rnnzoo import native
from rnnzoo.perf import LoadSampler, describe_load, merge_load

SHAPES = ["T256B64I128H256", "T100B64I2H128", "T256B64I128H512", "T100B64I2H512"]
LM_SHAPE = "T35B20I200H200L2"  # the word-level language model of PyTorch's example


def parse(shape: str) -> dict[str, int]:
    """'T256B64I128H256' (optionally 'L2') -> {'T': 256, 'B': 64, 'I': 128, 'H': 256, 'L': 1}."""
    parts = dict(re.findall(r"([TBIHL])(\d+)", shape))
    return {"L": 1, **{k: int(v) for k, v in parts.items()}}


def timer(layer: nn.Module, x: torch.Tensor, backward: bool) -> Callable[[], float]:
    def run() -> float:
        start = time.perf_counter()
        if backward:
            out, _ = layer(x)
            out.sum().backward()
        else:
            with torch.no_grad():
                layer(x)
        return time.perf_counter() - start

    return run


def alternate(runs: dict[str, Callable[[], float]], repeats: int) -> dict[str, float]:
    """Median seconds of each, timed in turn so that drift hits all of them alike."""
    for run in runs.values():
        run()  # warm-up: first-call allocations, oneDNN's weight packing
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            times[name].append(run())
    return {name: statistics.median(ts) for name, ts in times.items()}


def bench_shape(shape: str, cells: list[str], impls: list[str], repeats: int) -> list[dict]:
    p = parse(shape)
    torch.manual_seed(0)
    x = torch.randn(p["T"], p["B"], p["I"], requires_grad=True)
    reference = nn.LSTM(p["I"], p["H"], num_layers=p["L"])
    rows = []
    for cell in cells:
        layers = {"auto": rnnzoo.Recurrent(cell, p["I"], p["H"], num_layers=p["L"])}
        for impl in impls:
            with contextlib.suppress(ValueError):  # the cell lacks it
                layers[impl] = rnnzoo.Recurrent(cell, p["I"], p["H"], num_layers=p["L"], impl=impl)
        for backward in (True, False):
            runs = {"torch.nn.LSTM": timer(reference, x, backward)}
            runs |= {impl: timer(layer, x, backward) for impl, layer in layers.items()}
            with LoadSampler() as load:
                medians = alternate(runs, repeats)
            ref = medians.pop("torch.nn.LSTM")
            row: dict[str, Any] = {
                "shape": shape,
                "cell": cell,
                "resolved_impl": layers["auto"].impl,
                "pass": "fwd+bwd" if backward else "forward",
                "torch_lstm_s": ref,
                "seconds": medians,
                "ratio": {impl: s / ref for impl, s in medians.items()},
                "load": load.record(),
            }
            rows.append(row)
            ratios = "  ".join(f"{k} {v:.2f}x" for k, v in row["ratio"].items())
            print(f"{shape:>18} {cell:>15} {row['pass']:>8}  torch {ref * 1e3:7.1f} ms  {ratios}")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cells", nargs="+", default=rnnzoo.list_cells())
    parser.add_argument("--shapes", nargs="+", default=SHAPES)
    parser.add_argument("--impls", nargs="*", default=["fused"], help="also time these impls")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    print(f"compiled loop: {native.unavailable() or 'ready'}")
    rows = []
    for shape in args.shapes:
        rows += bench_shape(shape, args.cells, args.impls, args.repeats)
    rows += bench_shape(LM_SHAPE, ["lstm"], args.impls, args.repeats)
    load = merge_load([r["load"] for r in rows])
    print(describe_load(load))
    write_json(
        args.out,
        "bench_zoo.py",
        {"native": native.unavailable() or "ready", "load": load, "results": rows},
    )


if __name__ == "__main__":
    main()

"""Speed of our layers' implementations against torch.nn's native kernels.

Each configuration times every ``impl`` of ours and torch.nn alternately in one process
(so a noisy neighbour hits all of them), takes the median of ``--repeats`` runs after
warm-up, and reports ours / torch.nn. It also reports the achieved matrix-product
throughput (GFLOP/s of the layer's matrix products) beside the machine's own measured
float32 matrix-product throughput, and the memory autograd keeps for backward.

    python scripts/bench_cells.py --out benchmarks/cells.json          # default grid
    python scripts/bench_cells.py --preset target                      # the issue's target
    python scripts/bench_cells.py --preset full                        # the whole grid (hours)
    python scripts/bench_cells.py --cells lstm --seq-lens 64 256 1024 --plot ratio.png
    python scripts/bench_cells.py --preset gpu --device cuda          # against cuDNN

Prints a table and writes a JSON with every timing, the machine it ran on and the load
average sampled while each configuration was timed (``rnnzoo.perf.LoadSampler``).
"""

from __future__ import annotations

import argparse
import itertools
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

import rnnzoo
from rnnzoo.fused import step_matmul
from rnnzoo.layers import TORCH_TWINS
from rnnzoo.perf import LoadSampler, describe_load, merge_load, tune_cpu_allocator

PRESETS: dict[str, dict[str, list]] = {
    # The configuration the speed targets name, one layer, both cells.
    "target": {
        "cells": ["lstm", "gru"],
        "seq_lens": [256],
        "batches": [64],
        "hidden": [256],
        "layers": [1],
        "directions": ["uni"],
    },
    # A cross-section that runs in about half an hour on 2 cores.
    "default": {
        "cells": ["lstm", "gru", "rnn_tanh"],
        "seq_lens": [256],
        "batches": [64],
        "hidden": [128, 256],
        "layers": [1, 2],
        "directions": ["uni", "bi"],
    },
    # Sequence length and batch sweeps for the plot.
    "sweep": {
        "cells": ["lstm", "gru"],
        "seq_lens": [64, 256, 1024],
        "batches": [1, 16, 64, 256],
        "hidden": [256],
        "layers": [1],
        "directions": ["uni"],
    },
    # make gpu-check's grid on a CUDA device: against cuDNN in well under a minute.
    "gpu": {
        "cells": ["lstm", "gru", "rnn_tanh"],
        "seq_lens": [256],
        "batches": [64, 256],
        "hidden": [256, 512],
        "layers": [1],
        "directions": ["uni"],
    },
    # Everything the issue lists; slow.
    "full": {
        "cells": ["lstm", "gru", "rnn_tanh"],
        "seq_lens": [64, 256, 1024],
        "batches": [1, 16, 64, 256],
        "hidden": [128, 256, 512],
        "layers": [1, 2],
        "directions": ["uni", "bi"],
    },
}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _forward(model: nn.Module, x: torch.Tensor) -> Callable[[], None]:
    def run() -> None:
        with torch.no_grad():
            model(x)

    return run


def _forward_backward(model: nn.Module, x: torch.Tensor) -> Callable[[], None]:
    def run() -> None:
        model.zero_grad(set_to_none=True)
        out, _ = model(x)
        out.sum().backward()

    return run


def time_all(
    fns: dict[str, Callable[[], None]], device: torch.device, repeats: int, warmup: int
) -> dict[str, list[float]]:
    """Seconds of each function over ``repeats`` rounds, the functions interleaved."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            _sync(device)
            start = time.perf_counter()
            fn()
            _sync(device)
            times[name].append(time.perf_counter() - start)
    return times


def matmul_flops(
    cell: str, seq_len: int, batch: int, input_size: int, hidden: int, layers: int, directions: int
) -> float:
    """Floating-point operations of the layer's matrix products in one forward pass."""
    gates = {"lstm": 4, "gru": 3}.get(cell, 1) * hidden
    total = 0.0
    for layer in range(layers):
        layer_in = input_size if layer == 0 else hidden * directions
        total += directions * 2.0 * seq_len * batch * gates * (layer_in + hidden)
    return total


def peak_gflops(device: torch.device, size: int = 2048, repeats: int = 5) -> dict[str, float]:
    """The machine's float32 matrix-product throughput: a large square product, median.

    On CPU both of torch's kernels are measured: ``torch.mm`` (MKL here) and oneDNN's
    packed inner product (what torch.nn.LSTM and our fast path use); the larger one is
    the practical limit.
    """
    a = torch.randn(size, size, device=device)
    b = torch.randn(size, size, device=device)
    fns = {"mm": lambda: a @ b}
    if device.type == "cpu":
        fns["onednn"] = lambda: step_matmul(b, size)(a)
    times = time_all(fns, device, repeats, 1)
    return {name: 2 * size**3 / statistics.median(ts) / 1e9 for name, ts in times.items()}


def saved_for_backward(model: nn.Module, x: torch.Tensor) -> dict[str, float]:
    """What autograd keeps for backward during one forward: MiB (each storage counted
    once) and the number of saved tensors (grows with T when every step is a graph)."""
    seen: dict[int, int] = {}
    count = 0

    def pack(t: torch.Tensor) -> torch.Tensor:
        nonlocal count
        count += 1
        storage = t.untyped_storage()
        seen[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out, _ = model(x)
    del out
    return {"mib": sum(seen.values()) / 2**20, "tensors": count}


def bench_config(
    cell: str,
    seq_len: int,
    batch: int,
    hidden: int,
    layers: int,
    bidirectional: bool,
    args: argparse.Namespace,
    device: torch.device,
) -> dict[str, object]:
    torch.manual_seed(0)
    kw = dict(num_layers=layers, bidirectional=bidirectional, device=device)
    ours = {
        impl: rnnzoo.Recurrent(cell, args.input_size, hidden, impl=impl, **kw)
        for impl in args.impls
    }
    first = next(iter(ours.values()))
    for model in ours.values():
        model.load_state_dict(first.state_dict())
    ref = TORCH_TWINS[cell](args.input_size, hidden, **kw)
    ref.load_state_dict(first.state_dict())
    x = torch.randn(seq_len, batch, args.input_size, device=device)
    directions = 2 if bidirectional else 1
    flops = matmul_flops(cell, seq_len, batch, args.input_size, hidden, layers, directions)
    row: dict[str, object] = {
        "device": device.type,
        "cell": cell,
        "seq_len": seq_len,
        "batch": batch,
        "hidden": hidden,
        "layers": layers,
        "bidirectional": bidirectional,
    }
    for mode, make, mult in (("forward", _forward, 1), ("forward_backward", _forward_backward, 3)):
        fns = {f"ours_{impl}": make(model, x) for impl, model in ours.items()}
        fns["torch"] = make(ref, x)
        times = time_all(fns, device, args.repeats, args.warmup)
        result: dict[str, object] = {}
        for name, ts in times.items():
            med = statistics.median(ts)
            ratio = statistics.median(a / b for a, b in zip(ts, times["torch"], strict=True))
            result[name] = {"seconds": med, "ratio": ratio, "gflops": mult * flops / med / 1e9}
        row[mode] = result
    if args.memory:
        saved = {impl: saved_for_backward(m, x) for impl, m in ours.items()}
        saved["torch"] = saved_for_backward(ref, x)
        row["saved"] = saved
    return row


def plot(rows: list[dict], path: Path) -> None:
    """Ratio to torch.nn against sequence length: a row per cell, forward and
    forward+backward side by side, a colour per batch size, a line style per impl."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cells = sorted({r["cell"] for r in rows})
    batches = sorted({r["batch"] for r in rows})
    colours = dict(
        zip(
            batches,
            plt.get_cmap("viridis")(
                [i / max(len(batches) - 1, 1) * 0.85 for i in range(len(batches))]
            ),
            strict=True,
        )
    )
    fig, axes = plt.subplots(len(cells), 2, figsize=(11, 3.6 * len(cells)), squeeze=False)
    for row_axes, cell in zip(axes, cells, strict=True):
        for ax, mode in zip(row_axes, ("forward", "forward_backward"), strict=True):
            groups: dict[tuple, list[tuple[int, float]]] = {}
            for r in rows:
                if r["cell"] != cell:
                    continue
                for impl, v in r[mode].items():
                    if impl != "torch":
                        key = (impl.removeprefix("ours_"), r["batch"], r["hidden"])
                        groups.setdefault(key, []).append((r["seq_len"], v["ratio"]))
            for (impl, batch, hidden), pts in sorted(groups.items()):
                pts.sort()
                ax.plot(
                    [p[0] for p in pts], [p[1] for p in pts], marker="o",
                    color=colours[batch], linestyle="-" if impl == "fused" else ":",
                    label=f"{impl} B={batch} H={hidden}",
                )  # fmt: skip
            ax.axhline(1.0, color="black", linewidth=0.8)
            ax.set_xscale("log", base=2)
            ax.set_xlabel("sequence length T")
            ax.set_ylabel("time / torch.nn time")
            ax.set_title(f"{cell}, {mode.replace('_', ' + ')}")
            ax.grid(alpha=0.3)
        row_axes[1].legend(fontsize=7, ncol=2)
    fig.suptitle(
        "Our layer's time relative to torch.nn (lower is faster; solid: fused, dotted: loop)"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def machine(device_names: list[str], peak_size: int = 2048) -> dict[str, object]:
    info: dict[str, object] = {
        "platform": platform.platform(),
        "processor": _cpu_name(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
    }
    for name in device_names:
        peaks = peak_gflops(torch.device(name), peak_size)
        info[f"peak_gflops_{name}"] = max(peaks.values())
        info[f"matmul_gflops_{name}"] = peaks
        if name == "cuda":
            info["cuda_device"] = torch.cuda.get_device_name()
    return info


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=list(PRESETS), default="default")
    parser.add_argument("--cells", nargs="+", choices=list(TORCH_TWINS))
    parser.add_argument("--seq-lens", nargs="+", type=int)
    parser.add_argument("--batches", nargs="+", type=int)
    parser.add_argument("--hidden", nargs="+", type=int)
    parser.add_argument("--layers", nargs="+", type=int)
    parser.add_argument("--directions", nargs="+", choices=["uni", "bi"])
    parser.add_argument("--impls", nargs="+", default=["fused", "loop"], choices=["fused", "loop"])
    parser.add_argument("--input-size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=10, help="timed runs (median taken)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument(
        "--devices",
        "--device",
        nargs="+",
        choices=["cpu", "cuda"],
        default=None,
        help="default: cpu, and cuda if any",
    )
    parser.add_argument(
        "--peak-size", type=int, default=2048, help="side of the square matmul for peak GFLOP/s"
    )
    parser.add_argument("--memory", action="store_true", help="also count autograd's saved bytes")
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    parser.add_argument("--plot", type=Path, default=None, help="plot ratio over T as PNG here")
    parser.add_argument("--system-malloc", action="store_true", help="skip tune_cpu_allocator")
    parser.add_argument("--replot", type=Path, default=None, help="only plot this JSON to --plot")
    args = parser.parse_args()
    if args.replot is not None:
        plot(json.loads(args.replot.read_text())["results"], args.plot or Path("ratio.png"))
        return
    tuned = False if args.system_malloc else tune_cpu_allocator()
    for key, value in PRESETS[args.preset].items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    devices = args.devices or (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
    if "cuda" in devices and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is available to this process")

    with LoadSampler() as sampler:
        info = machine(devices, args.peak_size)
    info["allocator_tuned"] = tuned
    info["load_during_peak"] = sampler.record()
    print(
        f"input {args.input_size}, median of {args.repeats}; peak matmul "
        + ", ".join(f"{d} {info[f'peak_gflops_{d}']:.0f} GFLOP/s" for d in devices)
    )
    impls = [f"ours_{i}" for i in args.impls]
    head = " ".join(f"{i.removeprefix('ours_'):>7}" for i in impls)
    print(
        f"{'dev':4} {'cell':8} {'T':>5} {'B':>4} {'H':>4} L dir | fwd ratio {head} | "
        f"f+b ratio {head} | f+b GFLOP/s ours torch"
    )
    rows = []
    grid = itertools.product(
        devices, args.cells, args.seq_lens, args.batches, args.hidden, args.layers, args.directions
    )
    for dev, cell, seq_len, batch, hidden, layers, direction in grid:
        with LoadSampler() as sampler:
            row = bench_config(
                cell, seq_len, batch, hidden, layers, direction == "bi", args, torch.device(dev)
            )
        row["load"] = sampler.record()
        rows.append(row)
        f, fb = row["forward"], row["forward_backward"]
        assert isinstance(f, dict) and isinstance(fb, dict)
        print(
            f"{dev:4} {cell:8} {seq_len:>5} {batch:>4} {hidden:>4} {layers} {direction:3} | "
            + "          "
            + " ".join(f"{f[i]['ratio']:>6.2f}x" for i in impls)
            + " | "
            + "          "
            + " ".join(f"{fb[i]['ratio']:>6.2f}x" for i in impls)
            + f" | {fb[impls[0]]['gflops']:>6.1f} {fb['torch']['gflops']:>6.1f}"
            + (f" | saved {row['saved']}" if "saved" in row else ""),
            flush=True,
        )
    load = merge_load([info["load_during_peak"], *(r["load"] for r in rows)])
    print(describe_load(load))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        result = {
            "command": "python scripts/bench_cells.py " + " ".join(sys.argv[1:]),
            "machine": info,
            "load": load,
            "settings": {
                "input_size": args.input_size,
                "repeats": args.repeats,
                "warmup": args.warmup,
                "preset": args.preset,
            },
            "results": rows,
        }
        args.out.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.out}")
    if args.plot:
        plot(rows, args.plot)
        print(f"wrote {args.plot}")


if __name__ == "__main__":
    main()

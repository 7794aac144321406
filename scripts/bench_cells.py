"""Speed of our layers against torch.nn's native kernels, as a ratio in one process.

Each configuration times ours and torch.nn alternately (so a noisy neighbour hits both),
takes the median of ``--repeats`` runs after warm-up, and reports ours / torch.nn.

    python scripts/bench_cells.py --out benchmarks/cells.json            # full grid
    python scripts/bench_cells.py --quick                                # 4 configs
    python scripts/bench_cells.py --cells lstm gru --hidden 256 --layers 1

Prints a table and writes a JSON with every timing and the machine it ran on.
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

TORCH_TWINS: dict[str, Callable[..., nn.Module]] = {
    "lstm": nn.LSTM,
    "gru": nn.GRU,
    "rnn_tanh": lambda *a, **k: nn.RNN(*a, nonlinearity="tanh", **k),
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


def time_pair(
    ours: Callable[[], None],
    ref: Callable[[], None],
    device: torch.device,
    repeats: int,
    warmup: int,
) -> dict[str, float]:
    """Median seconds of each, timed alternately, and the median of per-pair ratios."""
    for _ in range(warmup):
        ours(), ref()
    t_ours, t_ref = [], []
    for _ in range(repeats):
        for fn, sink in ((ours, t_ours), (ref, t_ref)):
            _sync(device)
            start = time.perf_counter()
            fn()
            _sync(device)
            sink.append(time.perf_counter() - start)
    ratios = [a / b for a, b in zip(t_ours, t_ref, strict=True)]
    return {
        "ours_s": statistics.median(t_ours),
        "torch_s": statistics.median(t_ref),
        "ratio": statistics.median(ratios),
    }


def bench_config(
    cell: str,
    hidden: int,
    layers: int,
    bidirectional: bool,
    args: argparse.Namespace,
    device: torch.device,
) -> dict[str, object]:
    torch.manual_seed(0)
    kw = dict(num_layers=layers, bidirectional=bidirectional, device=device)
    ours = rnnzoo.Recurrent(cell, args.input_size, hidden, **kw)
    ref = TORCH_TWINS[cell](args.input_size, hidden, **kw)
    ref.load_state_dict(ours.state_dict())
    x = torch.randn(args.seq_len, args.batch, args.input_size, device=device)
    row: dict[str, object] = {
        "device": device.type,
        "cell": cell,
        "hidden": hidden,
        "layers": layers,
        "bidirectional": bidirectional,
    }
    for mode, make in (("forward", _forward), ("forward_backward", _forward_backward)):
        row[mode] = time_pair(make(ours, x), make(ref, x), device, args.repeats, args.warmup)
    return row


def machine() -> dict[str, object]:
    info: dict[str, object] = {
        "platform": platform.platform(),
        "processor": _cpu_name(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
    }
    if torch.cuda.is_available():
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
    parser.add_argument("--cells", nargs="+", default=list(TORCH_TWINS), choices=list(TORCH_TWINS))
    parser.add_argument("--hidden", nargs="+", type=int, default=[128, 256])
    parser.add_argument("--layers", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--directions", nargs="+", choices=["uni", "bi"], default=["uni", "bi"])
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--input-size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=10, help="timed runs (median taken)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--devices", nargs="+", default=None, help="default: cpu, and cuda if any")
    parser.add_argument("--quick", action="store_true", help="LSTM/GRU, H=256, 1 layer, uni")
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    args = parser.parse_args()
    if args.quick:
        args.cells, args.hidden, args.layers, args.directions = ["lstm", "gru"], [256], [1], ["uni"]
    devices = args.devices or (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])

    rows = []
    header = (
        f"{'dev':4} {'cell':8} {'H':>4} {'L':>2} {'dir':3} | {'fwd ours':>9} {'torch':>9} "
        f"{'ratio':>6} | {'f+b ours':>9} {'torch':>9} {'ratio':>6}"
    )
    print(f"T={args.seq_len} B={args.batch} input={args.input_size}, median of {args.repeats}")
    print(header)
    print("-" * len(header))
    grid = itertools.product(devices, args.cells, args.hidden, args.layers, args.directions)
    for dev, cell, hidden, layers, direction in grid:
        row = bench_config(cell, hidden, layers, direction == "bi", args, torch.device(dev))
        rows.append(row)
        f, fb = row["forward"], row["forward_backward"]
        assert isinstance(f, dict) and isinstance(fb, dict)
        print(
            f"{dev:4} {cell:8} {hidden:>4} {layers:>2} {direction:3} | "
            f"{f['ours_s'] * 1e3:>7.1f}ms {f['torch_s'] * 1e3:>7.1f}ms {f['ratio']:>5.2f}x | "
            f"{fb['ours_s'] * 1e3:>7.1f}ms {fb['torch_s'] * 1e3:>7.1f}ms {fb['ratio']:>5.2f}x",
            flush=True,
        )
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        result = {
            "command": "python scripts/bench_cells.py " + " ".join(sys.argv[1:]),
            "machine": machine(),
            "settings": {
                "seq_len": args.seq_len,
                "batch": args.batch,
                "input_size": args.input_size,
                "repeats": args.repeats,
                "warmup": args.warmup,
            },
            "results": rows,
        }
        args.out.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

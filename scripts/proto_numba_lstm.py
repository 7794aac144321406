"""Prototype of issue 16's second way: a one-layer LSTM whose time loop runs in numba.

Issue 16 asks for the LSTM step prototyped two ways before the zoo's compiled loop is
built: a C++ extension against torch (rnnzoo/csrc/scan.cpp) and a JIT kernel library from
PyPI that needs no compiler on the user's machine. This is the second, with numba.

The input projection ``x @ W_ih^T + b`` runs in torch over all steps at once, as rnnzoo
does. The recurrence is a ``torch.autograd.Function`` whose forward and backward hand
numpy views of the tensors (``.numpy()``, no copies) to ``@njit`` kernels. Per step: the
recurrent product ``h_{t-1} @ W_hh^T``, then one fused pointwise pass over the batch that
applies the gates (torch.nn's layout i, f, g, o) and saves what backward reads (the
activated gates and c_t). Backward walks the steps in reverse; dW_hh is one matrix
product over all steps at the end. Two choices are timed rather than guessed:

* ``matmul``: "numba" does the step's product inside the kernel (``np.dot``, which numba
  maps to scipy's BLAS sgemm) so the whole loop is one call; "torch" keeps the loop in
  Python, the product in ``torch.mm`` and only the pointwise pass in numba.
* ``parallel``: the pointwise pass over batch rows with ``prange`` (parallel=True) or a
  plain loop.

Every variant's forward and backward is checked against torch.nn.LSTM on the same weights
(max abs error printed, asserted < 1e-4). Then fwd+bwd and forward only are timed,
alternately in one process, median of ``--repeats`` after warm-up: torch.nn.LSTM, the
numba variants, and rnnzoo.LSTM with impl="native" (the C++ loop; skipped with a note
where it cannot load) and impl="fused". The kernels are cached on disk (cache=True): the
first call against an empty cache, timed in a child process, is the once-per-machine
compile; this process's first call shows what a later process pays.

    PYTHONPATH=/work/main python scripts/proto_numba_lstm.py --out benchmarks/proto_lstm.json
    python scripts/proto_numba_lstm.py --smoke    # tiny shapes, one repeat: proves it runs
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from bench_cells import time_all
from torch import nn

import rnnzoo
from rnnzoo.perf import LoadSampler, describe_load, merge_load

try:
    import numba
    import scipy  # numba's np.dot calls scipy's BLAS; without it the kernels cannot compile
    from numba import njit, prange
except ImportError:
    print("error: this prototype needs numba and scipy: pip install numba scipy", file=sys.stderr)
    sys.exit(2)

SHAPES = [(256, 64, 128, 256), (100, 64, 2, 128)]  # (T, B, I, H): the two shapes
SMOKE_SHAPES = [(7, 3, 5, 8), (5, 2, 2, 4)]
CHECK_SHAPE = (24, 6, 10, 16)  # small enough that float32 sums stay well inside 1e-4
TOLERANCE = 1e-4
VARIANTS = [("numba", False), ("numba", True), ("torch", False), ("torch", True)]

ONE = np.float32(1.0)  # a float64 literal would turn the pointwise pass into float64


# ---------------------------------------------------------------- the numba kernels


@njit(cache=True)
def _sigmoid(x):
    return ONE / (ONE + np.exp(-x))


@njit(cache=True)
def _row_forward(xg, rec, c_prev, h, c, gates):
    """One batch row of one step: the gates from both products, then c_t and h_t.

    xg, rec: (4H,) input and recurrent products; c_prev: (H,). Writes h, c: (H,) and the
    activated gates i, f, g, o: (4H,), which backward reads."""
    n = c.shape[0]
    for j in range(n):
        i = _sigmoid(xg[j] + rec[j])
        f = _sigmoid(xg[n + j] + rec[n + j])
        g = np.tanh(xg[2 * n + j] + rec[2 * n + j])
        o = _sigmoid(xg[3 * n + j] + rec[3 * n + j])
        c_new = f * c_prev[j] + i * g
        c[j] = c_new
        h[j] = o * np.tanh(c_new)
        gates[j] = i
        gates[n + j] = f
        gates[2 * n + j] = g
        gates[3 * n + j] = o


@njit(cache=True)
def _row_backward(dout, dh_rec, dc, gates, c, c_prev, dpre):
    """One batch row of one step backward: the pre-activation gradient of the four gates.

    dout, dh_rec: (H,) gradient of h_t from the output and from step t+1; dc: (H,) the
    gradient of c_t from step t+1, replaced by that of c_{t-1}. Writes dpre: (4H,)."""
    n = c.shape[0]
    for j in range(n):
        i, f, g, o = gates[j], gates[n + j], gates[2 * n + j], gates[3 * n + j]
        dh = dout[j] + dh_rec[j]
        tanh_c = np.tanh(c[j])  # recomputed: saving it would cost another (T, B, H)
        dc_t = dc[j] + dh * o * (ONE - tanh_c * tanh_c)
        dpre[j] = dc_t * g * i * (ONE - i)
        dpre[n + j] = dc_t * c_prev[j] * f * (ONE - f)
        dpre[2 * n + j] = dc_t * i * (ONE - g * g)
        dpre[3 * n + j] = dh * tanh_c * o * (ONE - o)
        dc[j] = dc_t * f


# The loops over batch rows, serial and parallel. Written twice rather than one function
# jitted twice: numba's on-disk cache keys a function by its source, not its flags.
@njit(cache=True)
def _rows_forward(xg, rec, c_prev, h, c, gates):
    for b in range(xg.shape[0]):
        _row_forward(xg[b], rec[b], c_prev[b], h[b], c[b], gates[b])


@njit(cache=True, parallel=True)
def _rows_forward_parallel(xg, rec, c_prev, h, c, gates):
    for b in prange(xg.shape[0]):
        _row_forward(xg[b], rec[b], c_prev[b], h[b], c[b], gates[b])


@njit(cache=True)
def _rows_backward(dout, dh_rec, dc, gates, c, c_prev, dpre):
    for b in range(dout.shape[0]):
        _row_backward(dout[b], dh_rec[b], dc[b], gates[b], c[b], c_prev[b], dpre[b])


@njit(cache=True, parallel=True)
def _rows_backward_parallel(dout, dh_rec, dc, gates, c, c_prev, dpre):
    for b in prange(dout.shape[0]):
        _row_backward(dout[b], dh_rec[b], dc[b], gates[b], c[b], c_prev[b], dpre[b])


@njit(cache=True)
def _scan_forward(xg, w_hh_t, h0, c0, out, cs, gates, parallel):
    """The whole forward loop in one call, the step's product by np.dot (BLAS sgemm).

    xg: (T, B, 4H); w_hh_t: (H, 4H); h0, c0: (B, H). Writes out, cs: (T, B, H) (every
    h_t and c_t) and gates: (S, B, 4H), S = T when backward will run, else 1 (inference
    keeps only the current step's gates)."""
    rec = np.empty((xg.shape[1], xg.shape[2]), dtype=xg.dtype)  # (B, 4H)
    for t in range(xg.shape[0]):
        h_prev = h0 if t == 0 else out[t - 1]
        c_prev = c0 if t == 0 else cs[t - 1]
        np.dot(h_prev, w_hh_t, rec)
        slot = t % gates.shape[0]
        if parallel:
            _rows_forward_parallel(xg[t], rec, c_prev, out[t], cs[t], gates[slot])
        else:
            _rows_forward(xg[t], rec, c_prev, out[t], cs[t], gates[slot])


@njit(cache=True)
def _scan_backward(dout, dhn, dcn, w_hh, c0, cs, gates, dpre, parallel):
    """The whole backward loop in one call, steps in reverse; returns (dh0, dc0).

    dout: (T, B, H); dhn, dcn: (B, H); w_hh: (4H, H). Writes dpre: (T, B, 4H), the
    gradient of the gates' pre-activations, which is also that of xg."""
    dh_rec = dhn.copy()  # (B, H) gradient of h_t arriving from step t+1
    dc = dcn.copy()
    for t in range(dout.shape[0] - 1, -1, -1):
        c_prev = c0 if t == 0 else cs[t - 1]
        if parallel:
            _rows_backward_parallel(dout[t], dh_rec, dc, gates[t], cs[t], c_prev, dpre[t])
        else:
            _rows_backward(dout[t], dh_rec, dc, gates[t], cs[t], c_prev, dpre[t])
        np.dot(dpre[t], w_hh, dh_rec)
    return dh_rec, dc


# ---------------------------------------------------------------- torch around them


def _loop_forward(xg, w_hh, h0, c0, out, cs, gates, parallel):
    """``_scan_forward`` with the loop in Python and the step's product in torch.mm.

    Tensors as in ``_scan_forward`` (w_hh: (4H, H)); numpy views share their memory."""
    rows = _rows_forward_parallel if parallel else _rows_forward
    xg_np, out_np, cs_np, gates_np = xg.numpy(), out.numpy(), cs.numpy(), gates.numpy()
    rec = xg.new_empty(xg.shape[1:])  # (B, 4H)
    rec_np, w_hh_t = rec.numpy(), w_hh.t()
    for t in range(xg.shape[0]):
        torch.mm(h0 if t == 0 else out[t - 1], w_hh_t, out=rec)
        c_prev = c0.numpy() if t == 0 else cs_np[t - 1]
        rows(xg_np[t], rec_np, c_prev, out_np[t], cs_np[t], gates_np[t % gates.shape[0]])


def _loop_backward(dout, dhn, dcn, w_hh, c0, cs, gates, dpre, parallel):
    """``_scan_backward`` with the loop in Python and the step's product in torch.mm."""
    rows = _rows_backward_parallel if parallel else _rows_backward
    dh_rec, dc = dhn.clone(), dcn.clone()
    dout_np, cs_np, gates_np, dpre_np = dout.numpy(), cs.numpy(), gates.numpy(), dpre.numpy()
    dh_np, dc_np = dh_rec.numpy(), dc.numpy()
    for t in range(dout.shape[0] - 1, -1, -1):
        c_prev = c0.numpy() if t == 0 else cs_np[t - 1]
        rows(dout_np[t], dh_np, dc_np, gates_np[t], cs_np[t], c_prev, dpre_np[t])
        torch.mm(dpre[t], w_hh, out=dh_rec)
    return dh_rec, dc


def _forward(xg, w_hh, h0, c0, matmul, parallel, save):
    """Run the recurrence; (out, cs, gates) as ``_scan_forward`` writes them."""
    steps, batch, gates_size = xg.shape
    out = xg.new_empty(steps, batch, gates_size // 4)
    cs = torch.empty_like(out)
    gates = xg.new_empty(steps if save else 1, batch, gates_size)
    if matmul == "numba":
        arrays = (xg, w_hh.t(), h0, c0, out, cs, gates)
        _scan_forward(*(a.numpy() for a in arrays), parallel)
    else:
        _loop_forward(xg, w_hh, h0, c0, out, cs, gates, parallel)
    return out, cs, gates


class _Recurrence(torch.autograd.Function):
    """The LSTM recurrence over precomputed input products, forward and backward in numba.

    xg: (T, B, 4H) float32 contiguous; w_hh: (4H, H); h0, c0: (B, H).
    Returns out: (T, B, H), h_n, c_n: (B, H)."""

    @staticmethod
    def forward(ctx, xg, w_hh, h0, c0, matmul, parallel):
        xg, w_hh, h0, c0 = (t.detach().contiguous() for t in (xg, w_hh, h0, c0))
        out, cs, gates = _forward(xg, w_hh, h0, c0, matmul, parallel, save=True)
        ctx.save_for_backward(w_hh, h0, c0, out, cs, gates)
        ctx.matmul, ctx.parallel = matmul, parallel
        return out, out[-1].clone(), cs[-1].clone()

    @staticmethod
    def backward(ctx, dout, dhn, dcn):
        w_hh, h0, c0, out, cs, gates = ctx.saved_tensors
        dout, dhn, dcn = (t.contiguous() for t in (dout, dhn, dcn))
        dpre = torch.empty_like(gates)  # (T, B, 4H)
        if ctx.matmul == "numba":
            arrays = (dout, dhn, dcn, w_hh, c0, cs, gates, dpre)
            dh0, dc0 = _scan_backward(*(a.numpy() for a in arrays), ctx.parallel)
            dh0, dc0 = torch.from_numpy(dh0), torch.from_numpy(dc0)
        else:
            dh0, dc0 = _loop_backward(dout, dhn, dcn, w_hh, c0, cs, gates, dpre, ctx.parallel)
        # dW_hh = sum_t dpre_t^T h_{t-1}: every step after the first in one product
        gates_size, hidden = w_hh.shape
        dw_hh = torch.addmm(
            dpre[0].t() @ h0, dpre[1:].reshape(-1, gates_size).t(), out[:-1].reshape(-1, hidden)
        )
        return dpre, dw_hh, dh0, dc0, None, None


class NumbaLSTM(nn.Module):
    """A one-layer, one-direction LSTM with torch.nn.LSTM's parameters, loop in numba.

    Input (T, B, I) float32 on CPU, no padding; returns (out (T, B, H), (h_n, c_n)), the
    states (1, B, H), as torch.nn.LSTM does."""

    def __init__(self, input_size: int, hidden_size: int, matmul: str, parallel: bool) -> None:
        super().__init__()
        self.hidden_size, self.matmul, self.parallel = hidden_size, matmul, parallel
        self.weight_ih_l0 = nn.Parameter(torch.empty(4 * hidden_size, input_size))
        self.weight_hh_l0 = nn.Parameter(torch.empty(4 * hidden_size, hidden_size))
        self.bias_ih_l0 = nn.Parameter(torch.empty(4 * hidden_size))
        self.bias_hh_l0 = nn.Parameter(torch.empty(4 * hidden_size))
        bound = hidden_size**-0.5  # torch.nn.LSTM's initialisation
        for p in self.parameters():
            nn.init.uniform_(p, -bound, bound)

    def forward(self, x: torch.Tensor, hx: tuple[torch.Tensor, torch.Tensor] | None = None):
        steps, batch, _ = x.shape
        if hx is None:
            h0 = c0 = x.new_zeros(batch, self.hidden_size)
        else:
            h0, c0 = hx[0][0], hx[1][0]
        bias = self.bias_ih_l0 + self.bias_hh_l0
        xg = torch.addmm(bias, x.reshape(steps * batch, -1), self.weight_ih_l0.t())
        xg = xg.view(steps, batch, -1)  # (T, B, 4H)
        args = (xg, self.weight_hh_l0, h0, c0)
        if torch.is_grad_enabled() and any(a.requires_grad for a in args):
            out, hn, cn = _Recurrence.apply(*args, self.matmul, self.parallel)
        else:  # inference: nothing saved for backward
            detached = (a.detach().contiguous() for a in args)
            out, cs, _ = _forward(*detached, self.matmul, self.parallel, save=False)
            hn, cn = out[-1], cs[-1]
        return out, (hn[None], cn[None])


def variant_name(matmul: str, parallel: bool) -> str:
    return f"numba_{matmul}mm_{'parallel' if parallel else 'serial'}"


# ---------------------------------------------------------------- checks and timings


def compile_kernels() -> dict[str, Any]:
    """Call every kernel once on tiny inputs: seconds, and how many came from the cache."""
    start = time.perf_counter()
    for matmul, parallel in VARIANTS:
        model = NumbaLSTM(3, 4, matmul, parallel)
        out, _ = model(torch.randn(2, 2, 3))
        out.sum().backward()
    seconds = time.perf_counter() - start
    kernels = [_scan_forward, _scan_backward, _rows_forward, _rows_forward_parallel]
    kernels += [_rows_backward, _rows_backward_parallel]
    hits = sum(sum(k.stats.cache_hits.values()) for k in kernels)
    misses = sum(sum(k.stats.cache_misses.values()) for k in kernels)
    return {"seconds": round(seconds, 3), "cache_hits": hits, "cache_misses": misses}


def cold_compile() -> dict[str, Any]:
    """``compile_kernels`` in a child process against an empty numba cache: what the
    first run on a machine pays (the numba import timed on its own)."""
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "NUMBA_CACHE_DIR": cache}
        cmd = [sys.executable, __file__, "--compile-only"]
        done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"compile child failed:\n{done.stdout}\n{done.stderr}")
    return json.loads(done.stdout.splitlines()[-1])


def check(shape: tuple[int, int, int, int]) -> dict[str, float]:
    """Max abs error of each numba variant against torch.nn.LSTM on the same weights:
    outputs, final states and the gradients of the input, initial states and weights."""
    steps, batch, inputs, hidden = shape
    torch.manual_seed(0)
    ref = nn.LSTM(inputs, hidden)
    x = torch.randn(steps, batch, inputs)
    h0, c0 = torch.randn(2, 1, batch, hidden).unbind(0)
    weights = [torch.randn(steps, batch, hidden), torch.randn(1, batch, hidden)]
    weights.append(torch.randn(1, batch, hidden))

    def run(model: nn.Module) -> list[torch.Tensor]:
        leaves = [t.clone().requires_grad_() for t in (x, h0, c0)]
        out, (hn, cn) = model(leaves[0], (leaves[1], leaves[2]))
        loss = sum((y * w).sum() for y, w in zip((out, hn, cn), weights, strict=True))
        grads = torch.autograd.grad(loss, [*leaves, *model.parameters()])
        with torch.no_grad():
            inferred, _ = model(x, (h0, c0))
        return [out, hn, cn, inferred, *grads]

    expected = run(ref)
    errors = {}
    for matmul, parallel in VARIANTS:
        model = NumbaLSTM(inputs, hidden, matmul, parallel)
        model.load_state_dict(ref.state_dict())
        got = run(model)
        errors[variant_name(matmul, parallel)] = max(
            (a - b).abs().max().item() for a, b in zip(got, expected, strict=True)
        )
    return errors


def contenders(inputs: int, hidden: int) -> tuple[dict[str, nn.Module], dict[str, str]]:
    """torch.nn.LSTM, the numba variants and rnnzoo's native and fused LSTM on one set
    of weights; the second dict says why a contender was left out."""
    torch.manual_seed(0)
    models: dict[str, nn.Module] = {"torch": nn.LSTM(inputs, hidden)}
    for matmul, parallel in VARIANTS:
        models[variant_name(matmul, parallel)] = NumbaLSTM(inputs, hidden, matmul, parallel)
    skipped = {}
    why_not = native_unavailable()
    if why_not is None:
        models["rnnzoo_native"] = rnnzoo.LSTM(inputs, hidden, impl="native")
    else:
        skipped["rnnzoo_native"] = why_not
    models["rnnzoo_fused"] = rnnzoo.LSTM(inputs, hidden, impl="fused")
    for model in models.values():
        model.load_state_dict(models["torch"].state_dict())
    return models, skipped


def native_unavailable() -> str | None:
    """Why rnnzoo's compiled loop cannot run here, or None when it can."""
    from rnnzoo.layers import IMPLS

    # IMPLS, not the import alone: setuptools' editable finder serves rnnzoo.native from
    # the installed tree even when PYTHONPATH puts an older tree without it first.
    if "native" not in IMPLS:
        return f"this rnnzoo ({Path(rnnzoo.__file__).parent}) has no impl='native'"
    from rnnzoo import native

    return native.unavailable()


def _fwd(model: nn.Module, x: torch.Tensor) -> Callable[[], None]:
    def run() -> None:
        with torch.no_grad():
            model(x)

    return run


def _fwd_bwd(model: nn.Module, x: torch.Tensor) -> Callable[[], None]:
    def run() -> None:
        model.zero_grad(set_to_none=True)
        out, _ = model(x)
        out.sum().backward()

    return run


def bench_shape(shape: tuple[int, int, int, int], repeats: int, warmup: int) -> dict[str, Any]:
    """Every contender's seconds at one shape, fwd+bwd and forward only, and its ratio to
    torch.nn.LSTM (median over rounds of the per-round ratio)."""
    steps, batch, inputs, hidden = shape
    models, skipped = contenders(inputs, hidden)
    x = torch.randn(steps, batch, inputs)
    row: dict[str, Any] = {"T": steps, "B": batch, "I": inputs, "H": hidden, "skipped": skipped}
    for mode, make in (("forward_backward", _fwd_bwd), ("forward", _fwd)):
        fns = {name: make(model, x) for name, model in models.items()}
        with LoadSampler() as sampler:
            times = time_all(fns, torch.device("cpu"), repeats, warmup)
        row[mode] = {
            name: {
                "seconds": statistics.median(ts),
                "ratio": statistics.median(a / b for a, b in zip(ts, times["torch"], strict=True)),
                "all_seconds": ts,
            }
            for name, ts in times.items()
        }
        row[f"{mode}_load"] = sampler.record()
    return row


def machine() -> dict[str, Any]:
    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numba": numba.__version__,
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "torch_threads": torch.get_num_threads(),
        "numba_threads": numba.get_num_threads(),
        "numba_threading_layer": numba.threading_layer(),  # known once a parallel kernel ran
        "rnnzoo": str(Path(rnnzoo.__file__).parent),
        "thread_pools": thread_pool_libraries(),
    }


def thread_pool_libraries() -> list[str]:
    """The OpenMP, TBB and BLAS libraries loaded in this process (Linux): numba's omp
    layer and torch may each bring their own runtime, and each its own pool of threads."""
    try:
        maps = Path("/proc/self/maps").read_text().splitlines()
    except OSError:
        return []
    names = {line.split()[-1] for line in maps if "/" in line}
    keys = ("gomp", "iomp", "tbb", "openblas", "mkl", "omppool")
    return sorted(n for n in names if any(k in Path(n).name for k in keys))


def print_row(row: dict[str, Any]) -> None:
    print(f"T{row['T']} B{row['B']} I{row['I']} H{row['H']}   seconds (ratio to torch.nn)")
    for name in row["forward_backward"]:
        fb, f = row["forward_backward"][name], row["forward"][name]
        print(
            f"  {name:26} fwd+bwd {fb['seconds']:9.5f} ({fb['ratio']:5.2f}x)"
            f"   fwd {f['seconds']:9.5f} ({f['ratio']:5.2f}x)"
        )
    for name, why in row["skipped"].items():
        print(f"  {name:26} skipped: {why}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed rounds (median taken)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--out", type=Path, default=None, help="default benchmarks/proto_lstm.json")
    parser.add_argument("--smoke", action="store_true", help="tiny shapes, one repeat, no JSON")
    parser.add_argument("--compile-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.compile_only:  # the child of cold_compile
        print(json.dumps(compile_kernels()))
        return
    if args.smoke:
        args.repeats, args.warmup = 1, 1
    elif args.out is None:
        args.out = Path("benchmarks/proto_lstm.json")

    compile_cold = cold_compile()
    compile_warm = compile_kernels()
    print(f"numba compile, empty cache (child process): {compile_cold}")
    print(f"numba first call, this process: {compile_warm}")
    errors = check(CHECK_SHAPE)
    for name, err in errors.items():
        print(f"check {name:26} max abs error vs torch.nn.LSTM {err:.2e}")
        assert err < TOLERANCE, f"{name}: max abs error {err} >= {TOLERANCE}"

    rows = []
    for shape in SMOKE_SHAPES if args.smoke else SHAPES:
        rows.append(bench_shape(shape, args.repeats, args.warmup))
        print_row(rows[-1])
    load = merge_load([r[f"{m}_load"] for r in rows for m in ("forward_backward", "forward")])
    print(describe_load(load))
    if args.out is None:
        return
    result = {
        "command": "python scripts/proto_numba_lstm.py " + " ".join(sys.argv[1:]),
        "machine": machine(),
        "settings": {"repeats": args.repeats, "warmup": args.warmup, "check_shape": CHECK_SHAPE},
        "compile": {"empty_cache": compile_cold, "this_process": compile_warm},
        "check_max_abs_error": errors,
        "load": load,
        "results": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

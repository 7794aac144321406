"""The equivalence suite on a CUDA device: every cell, every impl, against the CPU.

Each case runs a layer on the device and compares outputs, final states and every
gradient (input, initial state, each parameter by name) with

- the CPU float64 result of the plain loop (the readable statement of the equations),
  for every cell in ``rnnzoo.list_cells()`` and every impl in ``rnnzoo.layers.IMPLS``
  the cell has (an impl it lacks is skipped, with the layer's own reason);
- torch.nn on the same device (cuDNN there), in float64 and in float32 with TF32 off,
  for the cells that have a torch.nn twin;
- the CPU float64 result again under bf16 autocast, with bf16's tolerance, and the
  check that bf16 really ran (the error is above float32 rounding).

Cases: one layer with an initial state, ragged lengths (lengths given on the device, as
a batch moved there gives them), and two bidirectional layers, ragged, with a state.

Without CUDA every test here is skipped. ``RNNZOO_GPU_TESTS_DEVICE=cpu`` runs them on
the CPU instead: a check of the tests themselves, not of a GPU. ``make gpu-check``
runs them (``pytest -m gpu``) on a CUDA machine and records the counts.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Iterator
from typing import Any

import pytest
import torch
from torch import Tensor
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import rnnzoo
from rnnzoo.layers import IMPLS, TORCH_TWINS
from tests.helpers import states, weighted_sum

DEVICE = torch.device(os.environ.get("RNNZOO_GPU_TESTS_DEVICE", "cuda"))
pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(
        DEVICE.type == "cuda" and not torch.cuda.is_available(), reason="needs a CUDA device"
    ),
]

IN, H, B, T = 5, 6, 4, 7
RAGGED = [3, 7, 1, 5]  # unsorted on purpose, and one sequence of a single step
# name -> (num_layers, bidirectional, lengths, initial state given)
CASES: dict[str, tuple[int, bool, list[int] | None, bool]] = {
    "one_layer": (1, False, None, True),
    "ragged": (1, False, RAGGED, False),
    "bi_2layers_ragged": (2, True, RAGGED, True),
}
FP64 = {"rtol": 1e-9, "atol": 1e-9}  # the same sums in another order
FP32 = {"rtol": 1e-4, "atol": 1e-5}  # float32 rounding over T steps and 2 layers
# bf16 against float64: relative error, |difference| / |float64 result| per tensor. CPU
# autocast measured at most 0.0064 on outputs and states and 0.077 on gradients (0.077:
# layernorm_lstm's bias_ih_l0, through the layer norm; every other gradient below 0.02);
# a wrong kernel is off by the size of the result itself.
BF16_FORWARD, BF16_GRADIENT = 0.03, 0.2
BF16_MIN = 1e-5  # ... and the output's error must exceed it: float32 rounding stays below


def build(cell: str, impl: str, case: str, seed: int = 0) -> rnnzoo.Recurrent:
    """Our layer for ``case``, seeded, on the CPU; skips an impl the cell lacks."""
    num_layers, bidirectional, _, _ = CASES[case]
    torch.manual_seed(seed)
    try:
        return rnnzoo.Recurrent(
            cell, IN, H, num_layers=num_layers, bidirectional=bidirectional, impl=impl
        )
    except ValueError as err:  # "cell 'indrnn' has no fused fast path; ..."
        pytest.skip(str(err))


def inputs(cell: str, case: str, dtype: torch.dtype) -> tuple[Tensor, tuple[Tensor, ...] | None]:
    """The case's input (T, B, IN) and initial state, the same on every call (CPU)."""
    num_layers, bidirectional, lengths, with_hx = CASES[case]
    gen = torch.Generator().manual_seed(1)
    steps = T if lengths is None else max(lengths)
    # drawn in float64 and then cast: randn draws other numbers in another dtype
    x = torch.randn(steps, B, IN, generator=gen, dtype=torch.float64)
    if not with_hx:
        return x.to(dtype), None
    shape = (num_layers * (2 if bidirectional else 1), B, H)
    num_states = rnnzoo.Recurrent(cell, IN, H).num_states
    hx = [torch.randn(shape, generator=gen, dtype=torch.float64) for _ in range(num_states)]
    return x.to(dtype), tuple(h.to(dtype) for h in hx)


def run(
    model: torch.nn.Module,
    case: str,
    x: Tensor,
    hx: tuple[Tensor, ...] | None,
    device: torch.device,
    autocast: bool = False,
) -> dict[str, Tensor]:
    """Forward and backward of ``model`` on ``device``: outputs, states and gradients,
    all brought back to the CPU in float64 (the loss is computed there, so every side
    gets the same weights of its elements)."""
    lengths = CASES[case][2]
    # copies: a .to() that changes nothing returns the same tensor, and two runs would
    # then add their gradients into one .grad
    xi = x.to(device, copy=True).requires_grad_()
    hxi = None if hx is None else tuple(h.to(device, copy=True).requires_grad_() for h in hx)
    h_arg: Any = None if hxi is None else (hxi[0] if len(hxi) == 1 else hxi)
    ctx = torch.autocast(device.type, torch.bfloat16) if autocast else contextlib.nullcontext()
    with ctx:
        if lengths is None:
            out, h_n = model(xi, h_arg)
        elif isinstance(model, rnnzoo.Recurrent):
            out, h_n = model(xi, h_arg, lengths=torch.tensor(lengths, device=device))
        else:  # torch.nn takes ragged batches packed
            packed = pack_padded_sequence(xi, torch.tensor(lengths), enforce_sorted=False)
            out, h_n = model(packed, h_arg)
            out, _ = pad_packed_sequence(out, total_length=xi.shape[0])
    results = {"output": out, **{f"h_n{k}": s for k, s in enumerate(states(h_n))}}
    results = {k: v.to("cpu", torch.float64) for k, v in results.items()}
    weighted_sum(list(results.values())).backward()
    assert xi.grad is not None
    results["grad_input"] = cpu64(xi.grad)
    for k, h in enumerate(hxi or ()):
        assert h.grad is not None
        results[f"grad_hx{k}"] = cpu64(h.grad)
    for name, p in model.named_parameters():
        assert p.grad is not None, f"{name} received no gradient"
        results[f"grad_{name}"] = cpu64(p.grad)
    return results


def cpu64(t: Tensor) -> Tensor:
    """A float64 CPU copy (never the tensor itself: a later backward adds into .grad)."""
    return t.detach().to("cpu", torch.float64, copy=True)


@functools.cache
def reference(cell: str, case: str) -> dict[str, Tensor]:
    """The truth: the plain loop in float64 on the CPU (computed once per cell and case;
    the tests only read it)."""
    model = build(cell, "loop", case).double()
    return run(model, case, *inputs(cell, case, torch.float64), torch.device("cpu"))


def assert_all_close(got: dict[str, Tensor], want: dict[str, Tensor], **tol: float) -> None:
    assert sorted(got) == sorted(want)
    for name, value in want.items():
        torch.testing.assert_close(got[name], value, **tol, msg=lambda m, n=name: f"{n}: {m}")


@contextlib.contextmanager
def no_tf32() -> Iterator[None]:
    """float32 as float32: cuDNN's RNNs and matmuls may use TF32 (10-bit mantissa)."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("cell", rnnzoo.list_cells())
def test_device_float64_matches_cpu_float64(cell, impl, case):
    ours = build(cell, impl, case).to(DEVICE, torch.float64)
    got = run(ours, case, *inputs(cell, case, torch.float64), DEVICE)
    assert_all_close(got, reference(cell, case), **FP64)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["fp64", "fp32"])
@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("cell", list(TORCH_TWINS))
def test_device_matches_torch_nn_on_the_device(cell, impl, case, dtype):
    ours = build(cell, impl, case)
    num_layers, bidirectional, _, _ = CASES[case]
    twin = TORCH_TWINS[cell](IN, H, num_layers=num_layers, bidirectional=bidirectional)
    twin.load_state_dict(ours.state_dict())  # our names are torch.nn's
    ours, twin = ours.to(DEVICE, dtype), twin.to(DEVICE, dtype)
    x, hx = inputs(cell, case, dtype)
    with no_tf32():
        got, want = run(ours, case, x, hx, DEVICE), run(twin, case, x, hx, DEVICE)
    assert_all_close(got, want, **(FP64 if dtype == torch.float64 else FP32))


def relative_error(got: Tensor, want: Tensor) -> float:
    return float((got - want).detach().norm() / want.norm().clamp_min(1e-12))


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("cell", rnnzoo.list_cells())
def test_bf16_autocast_stays_within_bf16_of_float64(cell, impl):
    case = "bi_2layers_ragged"
    ours = build(cell, impl, case).to(DEVICE)  # float32 weights; autocast computes in bf16
    got = run(ours, case, *inputs(cell, case, torch.float32), DEVICE, autocast=True)
    want = reference(cell, case)
    assert sorted(got) == sorted(want)
    errors = {name: relative_error(got[name], value) for name, value in want.items()}
    for name, error in errors.items():
        assert error < (BF16_GRADIENT if name.startswith("grad_") else BF16_FORWARD), errors
    assert errors["output"] > BF16_MIN, errors  # bf16 did run, not float32

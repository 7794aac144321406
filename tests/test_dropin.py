"""The layers in real code: whole-model torch.save/torch.load(weights_only=True) with
``rnnzoo.safe_globals()``, ``flatten_parameters()``, ``torch.compile`` and ``torch.jit.trace``."""

from __future__ import annotations

import functools
import io
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.serialization import get_unsafe_globals_in_checkpoint

import rnnzoo
from rnnzoo.layers import IMPLS
from rnnzoo.models import MODELS, build_model
from rnnzoo.models.base import output_of
from rnnzoo.tasks import ModelIO

ROOT = Path(__file__).resolve().parents[1]


def layer_or_none(cell: str, impl: str, **kwargs) -> rnnzoo.Recurrent | None:
    """A small 2-layer bidirectional layer of ``cell``, or None where the cell lacks ``impl``."""
    try:
        return rnnzoo.Recurrent(cell, 3, 4, num_layers=2, bidirectional=True, impl=impl, **kwargs)
    except ValueError:
        return None


CELL_IMPLS = [
    (cell, impl)
    for cell in rnnzoo.list_cells()
    for impl in IMPLS
    if layer_or_none(cell, impl) is not None
]


def pickled_globals(obj: object) -> set[str]:
    """The globals torch.load(weights_only=True) would refuse in ``torch.save(obj)``."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    buffer.seek(0)
    return set(get_unsafe_globals_in_checkpoint(buffer))


@functools.cache
def allowed() -> set[str]:
    return {f"{cls.__module__}.{cls.__qualname__}" for cls in rnnzoo.safe_globals()}


# -- torch.save(model) / torch.load(weights_only=True) ------------------------------


@pytest.mark.parametrize(("cell", "impl"), CELL_IMPLS)
def test_safe_globals_cover_every_cell_and_impl(cell: str, impl: str):
    layer = layer_or_none(cell, impl)
    layer(torch.randn(5, 2, 3))  # impl='torch' caches its torch.nn twin on first use
    needed = pickled_globals(layer)
    assert needed - allowed() == set()
    assert f"{type(layer._cell(0)).__module__}.{type(layer._cell(0)).__qualname__}" in needed


def test_safe_globals_cover_the_torch_nn_twins():
    for layer in (rnnzoo.LSTM(3, 4), rnnzoo.GRU(3, 4), rnnzoo.RNN(3, 4, nonlinearity="relu")):
        assert pickled_globals(layer) - allowed() == set()


MODEL_ARGS = {"seasonal_naive": {"period": 2}, "segrnn": {"segment_len": 4, "hidden_size": 8}}
TAGGERS = [{"char_encoder": "cnn"}, {"char_encoder": "lstm"}]


def registry_models() -> dict[str, nn.Module]:
    """Every registered model as a config builds it, tiny; the tagger with each char encoder."""
    io_ = dict(input_size=3, output_size=4, vocab_size=20, input_len=8, horizon=4)
    extra = dict(max_output_len=5, num_conditions=3)
    models = {}
    for name in MODELS.names():
        if name == "ensemble":  # its members are registered models, rebuilt from run folders
            continue
        variants = TAGGERS if name == "sequence_tagger" else [{}]
        for i, options in enumerate(variants):
            args = MODELS.get(name).Args(name=name, **MODEL_ARGS.get(name, {}), **options)
            chars = 7 if options else None
            model_io = ModelIO(**io_, **extra, output=output_of(name), char_vocab_size=chars)
            models[f"{name}{i or ''}"] = build_model(args, model_io)
    return models


def test_safe_globals_cover_every_registered_model():
    models = registry_models()
    assert {"sequence_tagger", "sequence_tagger1", "segrnn"} <= set(models)
    for name, model in models.items():
        assert pickled_globals(model) - allowed() == set(), name


USER_MODEL = '''
import torch
import rnnzoo


class MyModel(torch.nn.Module):
    """A user's model holding every kind of our layer."""

    def __init__(self):
        super().__init__()
        self.lstm = rnnzoo.LSTM(3, 4, num_layers=2, bidirectional=True, batch_first=True)
        self.gru = rnnzoo.GRU(3, 4, batch_first=True)
        self.rnn = rnnzoo.RNN(3, 4, nonlinearity="relu", batch_first=True)
        self.twin = rnnzoo.Recurrent("lstm", 3, 4, batch_first=True, impl="torch")
        self.zoo = torch.nn.ModuleList(
            rnnzoo.Recurrent(c, 3, 4, batch_first=True) for c in rnnzoo.list_cells()
        )

    def forward(self, x, lengths):
        layers = [self.lstm, self.gru, self.rnn, self.twin, *self.zoo]
        return torch.cat([layer(x, lengths=lengths)[0] for layer in layers], dim=-1)
'''

LOAD = """
import pickle, sys, torch, rnnzoo
from mymodel import MyModel
saved = torch.load("expected.pt", weights_only=True)
try:
    with torch.serialization.safe_globals([MyModel]):
        torch.load("model.pt", weights_only=True)
except pickle.UnpicklingError as err:
    print("WITHOUT:", str(err).splitlines()[0])
with torch.serialization.safe_globals([*rnnzoo.safe_globals(), MyModel]):
    model = torch.load("model.pt", weights_only=True)
    models = torch.load("models.pt", weights_only=True)
torch.testing.assert_close(model(saved["x"], saved["lengths"]), saved["y"], rtol=0, atol=0)
model(saved["x"], saved["lengths"]).square().sum().backward()
dead = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
assert not dead, dead
for name, state in saved["models"].items():
    torch.testing.assert_close(models[name].state_dict(), state, rtol=0, atol=0)
print("LOADED", len(models))
"""


def test_a_whole_model_loads_in_a_fresh_process_with_one_line(tmp_path: Path, monkeypatch):
    (tmp_path / "mymodel.py").write_text(USER_MODEL)
    monkeypatch.syspath_prepend(str(tmp_path))  # pickle finds MyModel by its module
    monkeypatch.delitem(sys.modules, "mymodel", raising=False)
    from mymodel import MyModel  # type: ignore[import-not-found]

    torch.manual_seed(0)
    model, models = MyModel(), registry_models()
    x, lengths = torch.randn(3, 5, 3), torch.tensor([5, 2, 4])
    expected = {"x": x, "lengths": lengths, "y": model(x, lengths).detach()}
    expected["models"] = {name: m.state_dict() for name, m in models.items()}
    torch.save(model, tmp_path / "model.pt")
    torch.save(models, tmp_path / "models.pt")
    torch.save(expected, tmp_path / "expected.pt")
    sys.modules.pop("mymodel")
    env = {"PYTHONPATH": f"{tmp_path}:{ROOT}", "PATH": "/usr/bin:/bin"}
    done = subprocess.run(
        [sys.executable, "-c", LOAD], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    # Without the list, torch refuses our classes: the line is needed, and it suffices.
    assert "WITHOUT: Weights only load failed" in done.stdout, done.stdout
    assert f"LOADED {len(models)}" in done.stdout


def test_pickling_leaves_out_the_cached_torch_twin():
    layer = rnnzoo.Recurrent("gru", 3, 4, impl="torch")
    x = torch.randn(5, 2, 3)
    y = layer(x)[0]
    assert "_twin" in layer.__dict__
    buffer = io.BytesIO()
    torch.save(layer, buffer)
    buffer.seek(0)
    with torch.serialization.safe_globals(rnnzoo.safe_globals()):
        loaded = torch.load(buffer, weights_only=True)
    assert "_twin" not in loaded.__dict__
    torch.testing.assert_close(loaded(x)[0], y)


# -- flatten_parameters -------------------------------------------------------------


@pytest.mark.parametrize(("cell", "impl"), CELL_IMPLS)
def test_flatten_parameters_is_a_no_op(cell: str, impl: str):
    layer = layer_or_none(cell, impl)
    x = torch.randn(5, 2, 3)
    before = {k: (v.data_ptr(), v.clone()) for k, v in layer.state_dict().items()}
    y = layer(x)[0]
    assert layer.flatten_parameters() is None
    after = layer.state_dict()
    assert list(after) == list(before)
    for k, (ptr, value) in before.items():
        assert after[k].data_ptr() == ptr and torch.equal(after[k], value), k
    torch.testing.assert_close(layer(x)[0], y, rtol=0, atol=0)


# -- torch.compile and torch.jit.trace ------------------------------------------------

GRAPH_CELLS = ("lstm", "gru", "layernorm_lstm")
GRAPH_IMPLS = [(c, i) for c, i in CELL_IMPLS if c in GRAPH_CELLS]


class Tagger(nn.Module):
    """A small model holding one of our layers: (B, T, 3), lengths (B,) -> (B, T, 2)."""

    def __init__(self, cell: str, impl: str) -> None:
        super().__init__()
        self.rnn = layer_or_none(cell, impl, batch_first=True)
        self.head = nn.Linear(8, 2)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        out, _ = self.rnn(x, lengths=lengths)
        return self.head(out)


def outputs_and_grads(model: nn.Module, run, *inputs) -> list[torch.Tensor]:
    """``run(*inputs)``, then d(weighted sum)/d(every parameter) of ``model``."""
    y = run(*inputs)
    grads = torch.autograd.grad(
        (y * torch.linspace(-1, 1, y.numel()).view_as(y)).sum(), [*model.parameters()]
    )
    return [y.detach(), *grads]


def assert_same(got: list[torch.Tensor], want: list[torch.Tensor]) -> None:
    # A captured graph runs the per-step loop; eager runs the compiled loop where it is
    # built, whose float32 activations are its own polynomials (rnnzoo/csrc/scan.cpp):
    # equal to float32 rounding over a few steps, not bit for bit.
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w, rtol=1e-4, atol=1e-4)


def compiled_matches_eager(cell: str, impl: str, backend: str) -> None:
    torch.manual_seed(0)
    model = Tagger(cell, impl)
    compiled = torch.compile(model, backend=backend)
    x = torch.randn(3, 4, 3)
    for lengths in (None, torch.tensor([4, 1, 3])):
        want = outputs_and_grads(model, model, x, lengths)
        assert_same(outputs_and_grads(model, compiled, x, lengths), want)


@pytest.mark.parametrize(("cell", "impl"), GRAPH_IMPLS)
def test_torch_compile_gives_eager_outputs_and_gradients(cell: str, impl: str):
    compiled_matches_eager(cell, impl, "eager")  # dynamo's capture, run as captured


@pytest.mark.slow
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_torch_compile_through_aot_autograd_gives_eager_outputs_and_gradients(cell: str):
    compiled_matches_eager(cell, "auto", "aot_eager")  # autograd's graph as inductor gets it


@pytest.mark.slow
def test_torch_compile_with_inductor_gives_eager_outputs():
    torch.manual_seed(0)
    model = Tagger("lstm", "auto")
    compiled = torch.compile(model)  # the default backend: C++ code built with g++
    x, lengths = torch.randn(3, 4, 3), torch.tensor([4, 1, 3])
    assert_same(
        outputs_and_grads(model, compiled, x, lengths), outputs_and_grads(model, model, x, lengths)
    )


def test_compiling_runs_the_loop_instead_of_the_fused_function(monkeypatch):
    """The fused path's in-place kernels break torch.compile's AOT graphs (GRU) and
    inductor's lowering (oneDNN), so a captured graph records the loop instead."""
    from rnnzoo import fused

    def refuse(*args):
        raise AssertionError("FusedScan ran under torch.compile")

    model = Tagger("lstm", "fused")
    x = torch.randn(3, 4, 3)
    compiled = torch.compile(model, backend="eager")
    monkeypatch.setattr(fused.FusedScan, "apply", refuse)
    compiled(x)
    with pytest.raises(AssertionError, match="FusedScan ran"):
        model(x)  # eager still takes the fused path


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")
@pytest.mark.parametrize(("cell", "impl"), GRAPH_IMPLS)
def test_jit_trace_holds_for_new_inputs_and_lengths_of_the_same_length(cell: str, impl: str):
    torch.manual_seed(0)
    model = Tagger(cell, impl)
    traced = torch.jit.trace(model, (torch.randn(3, 4, 3), torch.tensor([4, 4, 4])))
    x = torch.randn(3, 4, 3)
    for lengths in (torch.tensor([4, 4, 4]), torch.tensor([2, 4, 1])):  # unpadded, then padded
        assert_same(
            outputs_and_grads(model, traced, x, lengths),
            outputs_and_grads(model, model, x, lengths),
        )
    # The trace unrolled T = 4 steps: another T is refused, not computed wrongly.
    with pytest.raises(RuntimeError, match="Expected 4 elements"):
        traced(torch.randn(3, 6, 3), torch.tensor([6, 6, 6]))

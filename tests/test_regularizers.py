"""Regularisers (rnnzoo.regularizers): identity in eval, masks locked or resampled as the
papers say, padding still inert, options reaching every model's layers."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import yaml
from pydantic import ValidationError

import rnnzoo
from rnnzoo.config import ConfigError, parse_config
from rnnzoo.layers import Recurrent
from rnnzoo.models import MODELS, RecurrentArgs, build_model
from rnnzoo.regularizers import embedding_dropout, locked_mask
from rnnzoo.tasks import TASKS, ModelIO
from tests.conftest import TINY
from tests.helpers import states, weighted_sum

OPTIONS = ("input_dropout", "hidden_dropout", "weight_drop", "zoneout")
REFUSED = ("has no weight_hh", "has no step_dropped")  # the cells that cannot take one


def layer(cell: str, **kwargs) -> Recurrent | None:
    """A small float64 stack; None when the cell refuses the options (checked message)."""
    args = {"num_layers": 2, "bidirectional": True, "batch_first": True, **kwargs}
    try:
        return Recurrent(cell, 3, 5, **args).double()
    except ValueError as err:
        assert any(r in str(err) for r in REFUSED), err
        return None


def twin(model: Recurrent, **kwargs) -> Recurrent:
    """The same cell and weights with other options."""
    other = layer(model.cell, **kwargs)
    assert other is not None
    other.load_state_dict(model.state_dict())
    return other


# -- eval mode ----------------------------------------------------------------------


@pytest.mark.parametrize("option", ["input_dropout", "hidden_dropout", "weight_drop"])
@pytest.mark.parametrize("cell", rnnzoo.list_cells())
def test_dropouts_are_the_identity_in_eval(cell, option):
    torch.manual_seed(0)
    model = layer(cell, **{option: 0.5})
    if model is None:
        assert option in ("hidden_dropout", "weight_drop")
        return
    plain = twin(model).eval()
    x, lengths = torch.randn(4, 6, 3, dtype=torch.double), torch.tensor([6, 2, 4, 1])
    out, h_n = model.eval()(x, lengths=lengths)
    ref, ref_h = plain(x, lengths=lengths)
    torch.testing.assert_close(out, ref, rtol=0, atol=0)
    for a, b in zip(states(h_n), states(ref_h), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize("cell", ["rnn_tanh", "lstm", "gru"])
def test_zoneout_in_eval_mixes_old_and_new_by_hand(cell):
    torch.manual_seed(0)
    p = 0.3
    model = Recurrent(cell, 3, 4, zoneout=p).double().eval()
    ref = {"rnn_tanh": torch.nn.RNNCell, "lstm": torch.nn.LSTMCell, "gru": torch.nn.GRUCell}
    step = ref[cell](3, 4).double()
    step.load_state_dict({k[: -len("_l0")]: v for k, v in model.state_dict().items()})
    x = torch.randn(5, 2, 3, dtype=torch.double)
    out, h_n = model(x)
    state = (torch.zeros(2, 4, dtype=torch.double),) * model.num_states
    for t in range(5):
        new = states(step(x[t], state if cell == "lstm" else state[0]))
        state = tuple(p * old + (1 - p) * n for old, n in zip(state, new, strict=True))
        torch.testing.assert_close(out[t], state[0])
    for a, b in zip(states(h_n), state, strict=True):
        torch.testing.assert_close(a[0], b)


def test_step_applies_the_regularisers_as_forward_does():
    torch.manual_seed(0)
    model = Recurrent("lstm", 3, 5, num_layers=2, batch_first=True, zoneout=0.4, weight_drop=0.3)
    model.eval()
    x = torch.randn(4, 6, 3)
    out, final = model(x)
    state = None
    for t in range(6):
        y, state = model.step(x[:, t], state)
        torch.testing.assert_close(y, out[:, t])
    for a, b in zip(states(final), states(state), strict=True):
        torch.testing.assert_close(a, b)
    model.train()  # training: it runs, its regularisers drawn afresh
    y, _ = model.step(x[:, 0], state)
    assert y.shape == (4, 5) and torch.isfinite(y).all()


# -- training mode: the masks ------------------------------------------------------


def test_locked_mask_keeps_or_scales():
    torch.manual_seed(0)
    mask = locked_mask(torch.empty(200, 50, dtype=torch.double), 0.25)
    assert set(mask.unique().tolist()) == {0.0, 1 / 0.75}
    assert 0.2 < (mask == 0).double().mean() < 0.3


@pytest.mark.parametrize("impl", ["loop", "fused"])
def test_input_dropout_drops_a_feature_at_every_step_or_none(impl):
    torch.manual_seed(0)
    model = Recurrent("gru", 8, 6, impl=impl, input_dropout=0.5).train()
    x = torch.randn(7, 4, 8, requires_grad=True)  # (T, B, I)
    out, _ = model(x)
    weighted_sum([out]).backward()
    dropped = x.grad == 0  # (T, B, I): a dropped feature never reaches anything
    assert (dropped == dropped[0]).all()  # the same at every step
    assert dropped[0].any() and not dropped[0].all()
    assert not (dropped[0] == dropped[0, :1]).all()  # one mask per sequence


def test_input_dropout_acts_on_every_layer():
    torch.manual_seed(0)
    model = Recurrent("lstm", 3, 6, num_layers=2, input_dropout=0.5).train()
    out, _ = model(torch.randn(5, 2, 3))
    weighted_sum([out]).backward()
    # layer 1's input is layer 0's output: its dropped features never reach W_ih_l1
    cols = model.weight_ih_l1.grad.abs().sum(0) == 0  # (H,)
    assert cols.any() and not cols.all()


@pytest.mark.parametrize("cell", ["rnn_tanh", "lstm", "gru", "indrnn", "layernorm_lstm"])
def test_hidden_dropout_locks_one_mask_per_sequence_for_all_steps(cell):
    torch.manual_seed(0)
    model = Recurrent(cell, 3, 8, hidden_dropout=0.5).train()
    out, _ = model(torch.randn(6, 1, 3))  # one sequence
    weighted_sum([out]).backward()
    grad = model.weight_hh_l0.grad
    # a unit dropped at one step but not at another would give its column a gradient
    dead = (grad.abs().sum(0) if grad.dim() == 2 else grad.abs()) == 0  # (H,)
    assert dead.any() and not dead.all()


def test_hidden_dropout_masks_only_the_recurrent_input_of_a_gru():
    # By hand: the gates read h_{t-1} * mask, the update keeps z_t * h_{t-1} whole.
    torch.manual_seed(0)
    p = 0.5
    model = Recurrent("gru", 3, 4, hidden_dropout=p).double().train()
    x = torch.randn(5, 2, 3, dtype=torch.double)
    torch.manual_seed(1)
    out, _ = model(x)
    torch.manual_seed(1)
    h = torch.zeros(2, 4, dtype=torch.double)
    mask = F.dropout(torch.ones_like(h), p)  # the layer's first draw
    w = model.unit_weights(0)
    for t in range(5):
        i_r, i_z, i_n = F.linear(x[t], w.weight_ih, w.bias_ih).chunk(3, 1)
        h_r, h_z, h_n = F.linear(h * mask, w.weight_hh, w.bias_hh).chunk(3, 1)
        r, z = torch.sigmoid(i_r + h_r), torch.sigmoid(i_z + h_z)
        h = (1 - z) * torch.tanh(i_n + r * h_n) + z * h
        torch.testing.assert_close(out[t], h)


@pytest.mark.parametrize("cell", rnnzoo.list_cells())
def test_hidden_dropout_never_drops_the_carried_state(cell):
    # With W_hh = 0 the recurrent input is dead, so hidden dropout must change nothing.
    torch.manual_seed(0)
    model = layer(cell, hidden_dropout=0.5)
    if model is None:
        return
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.startswith("weight_hh"):
                p.zero_()
    x = torch.randn(4, 6, 3, dtype=torch.double)
    out, _ = model.train()(x)
    ref, _ = twin(model).train()(x)
    torch.testing.assert_close(out, ref)


@pytest.mark.parametrize("impl", ["loop", "fused"])
@pytest.mark.parametrize("cell", ["rnn_tanh", "lstm", "gru"])
def test_weight_drop_uses_one_dropped_matrix_for_every_step(cell, impl):
    torch.manual_seed(0)
    p = 0.4
    model = Recurrent(cell, 3, 5, impl=impl, weight_drop=p).double().train()
    keys = list(model.state_dict())
    before = model.weight_hh_l0.detach().clone()
    x = torch.randn(6, 2, 3, dtype=torch.double)
    torch.manual_seed(1)
    out, h_n = model(x)
    torch.manual_seed(1)
    dropped = F.dropout(model.weight_hh_l0.detach(), p)  # the layer's first draw
    ref = twin(model, num_layers=1, bidirectional=False, batch_first=False, impl=impl)
    with torch.no_grad():
        ref.weight_hh_l0.copy_(dropped)
    ref_out, ref_h = ref(x)
    torch.testing.assert_close(out, ref_out)
    for a, b in zip(states(h_n), states(ref_h), strict=True):
        torch.testing.assert_close(a, b)
    weighted_sum([out, *states(h_n)]).backward()
    grad = model.weight_hh_l0.grad
    assert grad is not None and grad.abs().sum() > 0  # through the dropout to the parameter
    assert (grad[dropped == 0] == 0).all()  # dropped weights took no part
    assert list(model.state_dict()) == keys  # nothing re-registered
    torch.testing.assert_close(model.weight_hh_l0.detach(), before, rtol=0, atol=0)


@pytest.mark.parametrize("impl", ["loop", "fused"])
def test_weight_drop_redraws_every_pass_and_unit(impl):
    torch.manual_seed(0)
    model = Recurrent("lstm", 3, 5, num_layers=2, impl=impl, weight_drop=0.5).train()
    x = torch.randn(6, 2, 3)
    a, _ = model(x)
    b, _ = model(x)
    assert not torch.allclose(a, b)


def test_zoneout_resamples_its_mask_at_every_step():
    torch.manual_seed(0)
    model = Recurrent("rnn_tanh", 3, 64, zoneout=0.5).train()
    out, _ = model(torch.randn(8, 2, 3))
    kept = out[1:] == out[:-1]  # (T-1, B, H): a unit that kept its previous value
    assert 0.35 < kept.double().mean() < 0.65
    assert not (kept == kept[0]).all()  # not locked across steps
    assert not (kept[:, 0] == kept[:, 1]).all()  # nor across sequences


def test_zoneout_keeps_the_lstm_cell_state_too():
    torch.manual_seed(0)
    model = Recurrent("lstm", 3, 200, zoneout=0.5).train()
    x = torch.randn(2, 1, 3)
    _, (h_1, c_1) = model(x[:1])
    _, (h_2, c_2) = model(x[1:], (h_1, c_1))
    kept_h, kept_c = h_2 == h_1, c_2 == c_1  # a kept unit holds its old value exactly
    assert 0.4 < kept_c.double().mean() < 0.6
    assert not (kept_h == kept_c).all()  # each state tensor draws its own mask


# -- padding ------------------------------------------------------------------------


ALL_ON = {"input_dropout": 0.3, "hidden_dropout": 0.3, "weight_drop": 0.3, "zoneout": 0.3}


def all_on(cell: str) -> Recurrent:
    """Every regulariser the cell takes, on."""
    model = layer(cell, **ALL_ON)
    if model is None:  # without the two that need W_hh (or a step_dropped)
        model = layer(cell, input_dropout=0.3, weight_drop=0.3, zoneout=0.3)
    if model is None:
        model = layer(cell, input_dropout=0.3, zoneout=0.3)
    return model


@pytest.mark.parametrize("cell", rnnzoo.list_cells())
def test_padded_steps_change_nothing_with_every_regulariser_on(cell):
    torch.manual_seed(0)
    model = all_on(cell)
    lengths = torch.tensor([6, 2, 4, 1])
    x = torch.randn(4, 6, 3, dtype=torch.double)
    garbage = x.clone()
    for b, n in enumerate(lengths):
        garbage[b, n:] = 1e3
    # eval: each sequence alone, unpadded, gives the same outputs and final state
    model.eval()
    out, h_n = model(x, lengths=lengths)
    for b, n in enumerate(lengths.tolist()):
        alone, h_alone = model(x[b : b + 1, :n])
        torch.testing.assert_close(out[b, :n], alone[0])
        assert (out[b, n:] == 0).all()
        for a, c in zip(states(h_n), states(h_alone), strict=True):
            torch.testing.assert_close(a[:, b], c[:, 0])
    # training, same seed: whatever the padded steps hold, nothing changes
    model.train()
    torch.manual_seed(1)
    out, h_n = model(x, lengths=lengths)
    torch.manual_seed(1)
    out2, h_n2 = model(garbage, lengths=lengths)
    assert out.shape == (4, 6, 10) and torch.isfinite(out).all()
    torch.testing.assert_close(out, out2, rtol=0, atol=0)
    for a, c in zip(states(h_n), states(h_n2), strict=True):
        torch.testing.assert_close(a, c, rtol=0, atol=0)
    for b, n in enumerate(lengths.tolist()):
        assert (out[b, n:] == 0).all()


# -- word dropout -------------------------------------------------------------------


def test_embedding_dropout_drops_whole_word_types():
    torch.manual_seed(0)
    embedding = torch.nn.Embedding(20, 6)
    ids = torch.randint(0, 20, (8, 30))
    out = embedding_dropout(embedding, ids, 0.5, training=True)
    zero = (out == 0).all(-1)  # (B, T): dropped tokens
    for word in ids.unique():
        assert zero[ids == word].all() or not zero[ids == word].any()  # all or none
    kept = ~zero
    torch.testing.assert_close(out[kept], embedding(ids)[kept] / 0.5)
    assert zero.any() and kept.any()
    torch.testing.assert_close(
        embedding_dropout(embedding, ids, 0.5, training=False), embedding(ids), rtol=0, atol=0
    )


# -- config and models ----------------------------------------------------------------


def test_every_option_is_a_model_key():
    assert set(OPTIONS) <= set(RecurrentArgs.model_fields)
    for name in ("sequence_classifier", "sequence_tagger", "conditional_generator", "seq2seq"):
        assert "word_dropout" in MODELS.get(name).Args.model_fields


@pytest.mark.parametrize("key", OPTIONS)
@pytest.mark.parametrize("value", [-0.1, 1.0, 1.5])
def test_bad_rates_are_rejected_with_the_key_named(key, value):
    with pytest.raises(ConfigError, match=rf"model\.{key}: Input should be"):
        parse_config({**TINY, "model": {**TINY["model"], key: value}})
    with pytest.raises(ValueError, match=rf"{key} must be a number in \[0, 1\)"):
        Recurrent("lstm", 3, 4, **{key: value})


@pytest.mark.parametrize("value", [-0.1, 1.0])
def test_bad_word_dropout_is_rejected(value):
    with pytest.raises(ValidationError, match="word_dropout"):
        MODELS.get("sequence_classifier").Args(word_dropout=value)


def test_refusals_name_the_option():
    with pytest.raises(ValueError, match=r"impl='torch'.*weight_drop"):
        Recurrent("lstm", 3, 4, impl="torch", weight_drop=0.1)
    with pytest.raises(ValueError, match="hidden_dropout: cell 'layernorm_gru' carries"):
        Recurrent("layernorm_gru", 3, 4, hidden_dropout=0.1)
    no_w_hh = [c for c in rnnzoo.list_cells() if layer(c) is not None and "weight_hh_l0"
               not in dict(layer(c).named_parameters())]  # fmt: skip
    for cell in no_w_hh:  # minGRU, minLSTM: gates that see only x_t
        with pytest.raises(ValueError, match=f"weight_drop acts on the recurrent weights.*{cell}"):
            Recurrent(cell, 3, 4, weight_drop=0.1)
        args = MODELS.get("many_to_one").Args(cell=cell, hidden_dropout=0.1)
        with pytest.raises(ConfigError, match="model: hidden_dropout"):
            build_model(args, ModelIO(input_size=3, output_size=1))


CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").rglob("*.yaml"))
ONE_PER_MODEL = list(
    {yaml.safe_load(p.read_text())["model"]["name"]: p for p in reversed(CONFIGS)}.values()
)


@pytest.mark.parametrize("path", ONE_PER_MODEL, ids=[p.name for p in ONE_PER_MODEL])
def test_a_shipped_config_with_every_option_on_trains(path: Path):
    raw = yaml.safe_load(path.read_text())
    schema = MODELS.get(raw["model"]["name"]).Args
    if "zoneout" not in schema.model_fields:
        pytest.skip("not a recurrent model")
    on = {k: 0.2 for k in (*OPTIONS, "word_dropout") if k in schema.model_fields}
    raw["model"].update(on, hidden_size=16, num_layers=2)
    config = parse_config(raw, source=str(path))
    io = TASKS.get(config.task)(config.data).nominal_io
    torch.manual_seed(0)
    model = build_model(config.model, io).train()
    layers = [m for m in model.modules() if isinstance(m, Recurrent)]
    assert layers
    for m in layers:  # every layer of every model gets every option
        assert [getattr(m, k) for k in OPTIONS] == [0.2] * 4
    out = run_model(model, io)
    assert torch.isfinite(out).all()
    out.square().mean().backward()
    for m in layers:
        assert m.weight_hh_l0.grad is not None and m.weight_hh_l0.grad.abs().sum() > 0


def run_model(model: torch.nn.Module, io: ModelIO) -> torch.Tensor:
    """The model's scores on a small fixed batch of the inputs its task gives."""
    gen = torch.Generator().manual_seed(0)
    targets = None
    if io.vocab_size:
        x = torch.randint(3, 10, (2, 5), generator=gen)
        if io.output == "next_token":
            x[:, 0] = torch.arange(2) % (io.num_conditions or 1)
        if io.output == "sequence":
            targets = torch.randint(3, io.output_size, (2, 4), generator=gen)
    else:
        x = torch.randn(2, io.input_len or 5, io.input_size, generator=gen)
    out = model(x, targets=targets)
    return out.logits if io.output == "sequence" else out


@pytest.mark.parametrize("path", ONE_PER_MODEL, ids=[p.name for p in ONE_PER_MODEL])
def test_every_models_dropouts_are_off_in_eval(path: Path):
    """Every dropout a model's config offers (between layers, on inputs, hidden state,
    weights, embeddings, words, before the head) at 0.5: in eval the model gives what
    the same weights give with all of them at 0, to the bit. (Zoneout is not the
    identity in eval: it has its own test above.)"""
    raw = yaml.safe_load(path.read_text())
    schema = MODELS.get(raw["model"]["name"]).Args
    rates = [k for k in schema.model_fields if "drop" in k]
    if not rates:
        pytest.skip("nothing to drop")
    raw["model"].update(hidden_size=16, num_layers=2)
    plain = parse_config(raw, source=str(path))
    io = TASKS.get(plain.task)(plain.data).nominal_io
    raw["model"].update(dict.fromkeys(rates, 0.5))
    dropped = parse_config(raw, source=str(path))
    torch.manual_seed(0)
    model = build_model(dropped.model, io)
    reference = build_model(plain.model, io)
    reference.load_state_dict(model.state_dict())
    torch.manual_seed(1)
    train_out = run_model(model.train(), io)
    with torch.no_grad():
        out, ref = run_model(model.eval(), io), run_model(reference.eval(), io)
    torch.testing.assert_close(out, ref, rtol=0, atol=0)
    assert not torch.allclose(train_out, out)  # the rates do act in training

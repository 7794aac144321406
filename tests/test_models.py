"""Every registered model: shapes, finiteness, gradients; pooling over valid steps only."""

from __future__ import annotations

import pytest
import torch

from rnnzoo.models import MODELS, ManyToOne, build_model
from rnnzoo.models.base import output_of
from rnnzoo.tasks import ModelIO

ONE_OUTPUT = [n for n in MODELS.names() if output_of(n) == "one"]


@pytest.mark.parametrize("name", ONE_OUTPUT)  # forecasters: tests/test_forecast.py
def test_every_model_builds_runs_and_gets_gradients(name):
    args = MODELS.get(name).Args(name=name, hidden_size=6, num_layers=2, bidirectional=True)
    model = build_model(args, ModelIO(input_size=3, output_size=4, vocab_size=50))
    tokens = hasattr(model, "embedding")  # token ids in, else features
    x = torch.randint(1, 50, (5, 7)) if tokens else torch.randn(5, 7, 3)
    out = model(x, torch.tensor([7, 3, 1, 7, 5]))
    assert out.shape == (5, 4)
    assert torch.isfinite(out).all()
    out.square().sum().backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, pname


@pytest.mark.parametrize("pooling", ["last", "mean", "max"])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_pooling_ignores_padding(pooling, bidirectional):
    model = ManyToOne(3, 2, "lstm", 5, bidirectional=bidirectional, pooling=pooling)
    lengths = torch.tensor([6, 2, 4])
    x = torch.randn(3, 6, 3)
    pad = torch.arange(6)[None, :] >= lengths[:, None]
    noisy = x.masked_fill(pad.unsqueeze(-1), 100.0)
    torch.testing.assert_close(model(x, lengths), model(noisy, lengths))
    # and each sequence gives what it gives alone, unpadded
    for b, n in enumerate(lengths.tolist()):
        alone = model(x[b : b + 1, :n])
        torch.testing.assert_close(model(x, lengths)[b : b + 1], alone, rtol=1e-5, atol=1e-6)


def pooled_by_hand(out: torch.Tensor, lengths: list[int], pooling: str) -> torch.Tensor:
    """Pooling written out per sequence from the top layer's outputs (B, T, 2H) of a
    bidirectional stack: ``last`` is the forward half at the last valid step beside the
    reverse half at step 0 (where the reverse direction ends)."""
    hidden = out.shape[-1] // 2
    rows = []
    for b, n in enumerate(lengths):
        valid = out[b, :n]  # (n, 2H)
        last = torch.cat([valid[n - 1, :hidden], valid[0, hidden:]])
        parts = {"last": [last], "mean": [valid.mean(0)], "max": [valid.amax(0)]}
        parts["concat"] = parts["last"] + parts["mean"] + parts["max"]
        rows.append(torch.cat(parts[pooling]))
    return torch.stack(rows)


LENGTHS = [6, 2, 4, 1]  # unsorted, one of a single step


@pytest.mark.parametrize("pooling", ["last", "mean", "max"])
def test_many_to_one_pooling_by_hand_over_both_directions(pooling):
    torch.manual_seed(0)
    model = ManyToOne(3, 2, "lstm", 5, num_layers=2, bidirectional=True, pooling=pooling)
    model = model.double().eval()
    x = torch.randn(4, 6, 3, dtype=torch.double)
    out, _ = model.rnn(x, lengths=torch.tensor(LENGTHS))
    expected = model.head(pooled_by_hand(out, LENGTHS, pooling))
    torch.testing.assert_close(model(x, torch.tensor(LENGTHS)), expected, rtol=1e-12, atol=1e-12)
    if pooling == "max":  # a padded sequence with a unit below zero at every valid step:
        assert (pooled_by_hand(out, LENGTHS, "max")[1:] < 0).any()  # padding's 0 must lose


@pytest.mark.parametrize("pooling", ["last", "mean", "max", "concat"])
def test_classifier_pooling_by_hand_over_both_directions(pooling):
    from rnnzoo.models import SequenceClassifier

    torch.manual_seed(0)
    args = SequenceClassifier.Args(
        hidden_size=5, num_layers=2, bidirectional=True, pooling=pooling, embedding_dim=4
    )
    model = SequenceClassifier(30, 3, args).double().eval()
    tokens = torch.randint(1, 30, (4, 6))
    out, _ = model.rnn(model.embedding(tokens), lengths=torch.tensor(LENGTHS))
    expected = model.head(pooled_by_hand(out, LENGTHS, pooling))
    got = model(tokens, torch.tensor(LENGTHS))
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
    if pooling == "max":
        assert (pooled_by_hand(out, LENGTHS, "max")[1:] < 0).any()


@pytest.mark.parametrize("pooling", ["last", "mean", "max", "concat"])
def test_sequence_classifier_ignores_padding_tokens(pooling):
    from rnnzoo.models import SequenceClassifier

    args = SequenceClassifier.Args(hidden_size=5, bidirectional=True, pooling=pooling)
    model = SequenceClassifier(30, 2, args).eval()
    lengths = torch.tensor([6, 2, 4])
    x = torch.randint(1, 30, (3, 6))
    pad = torch.arange(6)[None, :] >= lengths[:, None]
    other = x.masked_fill(pad, 7)  # different tokens where the padding is
    torch.testing.assert_close(model(x, lengths), model(other, lengths))
    for b, n in enumerate(lengths.tolist()):
        alone = model(x[b : b + 1, :n])
        torch.testing.assert_close(model(x, lengths)[b : b + 1], alone, rtol=1e-5, atol=1e-6)

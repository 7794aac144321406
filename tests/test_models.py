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


def test_last_pooling_reads_both_directions():
    model = ManyToOne(3, 2, "gru", 4, bidirectional=True, pooling="last")
    x = torch.randn(1, 5, 3, requires_grad=True)
    model(x).sum().backward()
    # the reverse direction's final state saw step 0 last, the forward one step 4:
    # every step, first and last included, reaches the output
    assert (x.grad.abs().sum(-1) > 0).all()


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

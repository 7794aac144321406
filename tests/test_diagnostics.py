"""Gradient flow through time: the measurement, and ``rnnzoo diagnose``."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import torch
import torch.nn.functional as F
from typer.testing import CliRunner

from rnnzoo.cli import app
from rnnzoo.data.batches import Batch
from rnnzoo.diagnostics import gradient_flow
from rnnzoo.models import ManyToOne
from rnnzoo.tasks import AddingTask


def test_gradient_flow_equals_autograd_on_each_h_t_and_vanishes_for_a_small_tanh_rnn():
    torch.manual_seed(0)
    model = ManyToOne(2, 1, "rnn_tanh", 8, pooling="last")
    with torch.no_grad():
        model.rnn.weight_hh_l0.mul_(0.1)  # small recurrent weights: gradients vanish
    x, y = torch.randn(4, 12, 2), torch.randn(4, 1)
    task = AddingTask(AddingTask.Data())
    flow = gradient_flow(model, task, Batch(x, y))

    # the same network unrolled by hand, every h_t kept by autograd
    w_ih, w_hh = model.rnn.weight_ih_l0, model.rnn.weight_hh_l0
    b = model.rnn.bias_ih_l0 + model.rnn.bias_hh_l0
    h, hs = torch.zeros(4, 8), []
    for t in range(12):
        h = torch.tanh(x[:, t] @ w_ih.T + h @ w_hh.T + b)
        h.retain_grad()
        hs.append(h)
    F.mse_loss(model.head(h), y).backward()
    direct = [float(h.grad.norm(dim=-1).mean()) for h in hs]

    torch.testing.assert_close(torch.tensor(flow), torch.tensor(direct), rtol=1e-5, atol=0)
    assert all(a < b for a, b in itertools.pairwise(flow))  # decays with distance from the loss
    assert flow[0] < 1e-6 * flow[-1]


def test_diagnose_a_run_and_the_trainer_option(tiny_config: Path, tmp_path: Path):
    runner = CliRunner()
    args = [
        "train",
        "-c",
        str(tiny_config),
        "--set",
        "output.name=diag",
        "--set",
        "train.diagnose=true",
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    run = tmp_path / "runs" / "diag"
    flow = json.loads((run / "gradient_flow.json").read_text())
    assert len(flow["initial"]) == len(flow["trained"]) == 8  # seq_len of the tiny config
    assert 0 <= flow["clipped_fraction"] <= 1
    (run / "gradient_flow.png").unlink()
    out = tmp_path / "flow"
    result = runner.invoke(app, ["diagnose", str(run), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "clipping fired on" in result.output
    assert (out / "gradient_flow.png").read_bytes()[:4] == b"\x89PNG"
    again = json.loads((run / "gradient_flow.json").read_text())
    assert again["trained"] == flow["trained"] and again["initial"] == flow["initial"]

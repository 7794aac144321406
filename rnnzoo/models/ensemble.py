"""An ensemble of trained forecasting runs: the mean of their forecasts.

Seeds of one config differ more than their validation scores suggest on a short series;
averaging their forecasts is the usual remedy::

    model: {name: ensemble, runs: [runs/airline-s0, runs/airline-s1, runs/airline-s2]}

Each member is rebuilt from its own run folder (its config.yaml and verified best
checkpoint, never retrained) and frozen, so the ensemble has nothing to train: the
trainer scores it on the same windows as any model. The members must read the same
windows as the ensemble's config (the same ``data:`` section, so the same fitted scaler
and transform): they average in model space, and a member sized for other windows is
an error. Quantile members average level by level.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import torch
from pydantic import Field
from torch import Tensor, nn

from rnnzoo import checkpoint, run_folder
from rnnzoo.config import parse_config
from rnnzoo.errors import ConfigError, RnnzooError
from rnnzoo.models.base import MODELS, ModelArgs, build_model
from rnnzoo.tasks import TASKS, ModelIO
from rnnzoo.tasks.base import QuantileForecast

BEST = "checkpoints/best.pt"


class Ensemble(nn.Module):
    """The mean forecast of frozen members: (B, L, C_in) -> (B, H, C_out)."""

    output = "horizon"

    class Args(ModelArgs):
        name: Literal["ensemble"] = "ensemble"
        runs: list[Path] = Field(min_length=1, description="run folders of forecasting runs")

    def __init__(self, members: list[nn.Module]) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)
        for p in self.members.parameters():
            p.requires_grad_(False)

    @classmethod
    def build(cls, args: Args, io: ModelIO) -> Ensemble:
        return cls([_member(run_dir, io) for run_dir in args.runs])

    def train(self, mode: bool = True) -> Ensemble:
        super().train(mode)
        self.members.eval()  # frozen: no dropout, no teacher forcing, ever
        return self

    def forward(
        self, inputs: Tensor, lengths: Tensor | None = None, targets: Tensor | None = None
    ) -> Tensor | QuantileForecast:
        outputs = [m(inputs, lengths) for m in self.members]
        first = outputs[0]
        if isinstance(first, QuantileForecast):
            if any(
                not isinstance(o, QuantileForecast) or o.levels != first.levels for o in outputs
            ):
                raise ConfigError("model.runs: the members forecast different quantile levels")
            values = torch.stack([o.values for o in outputs]).mean(dim=0)
            return QuantileForecast(values, first.levels)
        if any(isinstance(o, QuantileForecast) for o in outputs):
            raise ConfigError("model.runs: some members forecast quantiles and others do not")
        return torch.stack(outputs).mean(dim=0)


def _member(run_dir: Path, io: ModelIO) -> nn.Module:
    """A member rebuilt from its run folder, its best weights loaded, checked against ``io``."""
    try:
        run_folder.check_run(run_dir)
        state = checkpoint.load(run_folder.verify(run_dir, BEST))
    except RnnzooError as err:
        raise ConfigError(f"model.runs: {err.message}", err.hint) from None
    config = parse_config(state["config"])
    if config.model.name == "ensemble":  # type: ignore[attr-defined]
        raise ConfigError(f"model.runs: {run_dir} is an ensemble; list its members instead")
    theirs = TASKS.get(config.task)(config.data).io
    if theirs != io:
        raise ConfigError(
            f"model.runs: {run_dir} was trained for other windows than this config's "
            f"({_describe(theirs)} against {_describe(io)})",
            "give the ensemble the members' data: section",
        )
    model = build_model(config.model, io)
    if not any(p.is_meta for p in model.parameters()):  # a size check builds on meta
        model.load_state_dict(state["model"])
    return model.eval()


def _describe(io: ModelIO) -> str:
    return (
        f"{io.input_size} columns in, {io.output_size} out, {io.input_len} steps, "
        f"horizon {io.horizon}, {io.inputs}"
    )


MODELS.add("ensemble", Ensemble)

"""Per-column transformations of a series, fitted on train and undone on every forecast.

A forecasting run may model a column in another space than its own units: the log of
a series whose swings grow with its level, its differences when it trends. The steps,
applied in the order given (``data.transform``)::

    log          log(x)                          x > 0
    log1p        log(1 + x)                      x > -1
    box_cox      (x**lam - 1) / lam, log at 0    x > 0; lam fitted on the train rows
    difference   x[t] - x[t - lag]               lag 1, or {difference: 12} for a season

A chain is fitted on the training rows only (``box_cox``'s lam by maximum likelihood,
scipy's ``boxcox``), applied to the whole series, and inverted on a forecast from the
window's own history in original units: a difference is undone by adding back, season
by season, the last ``lag`` values before the forecast. The first ``lag`` rows of a
differenced column have no value; windows start after them (``offset``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor

from rnnzoo.errors import DataError

Kind = Literal["log", "log1p", "box_cox", "difference"]
StepSpec = Kind | dict[Literal["difference"], int]
"""How a step is written in YAML: a name, or ``{difference: LAG}``."""

_DOMAIN = {"log": (0.0, "positive"), "box_cox": (0.0, "positive"), "log1p": (-1.0, "above -1")}


@dataclasses.dataclass
class Step:
    kind: Kind
    lag: int = 1  # difference only
    lam: float | None = None  # box_cox only, fitted

    @classmethod
    def parse(cls, spec: StepSpec) -> Step:
        if isinstance(spec, str):
            return cls(spec)
        if len(spec) != 1:
            raise ValueError(f"a step is a name or {{difference: LAG}}, not {spec}")
        ((kind, lag),) = spec.items()
        if lag < 1:
            raise ValueError(f"difference lag must be at least 1, got {lag}")
        return cls(kind, lag=int(lag))

    def forward(self, x: Tensor) -> Tensor:
        """(..., T) in this step's input space -> its output space (NaN where undefined)."""
        if self.kind == "log":
            return x.log()
        if self.kind == "log1p":
            return x.log1p()
        if self.kind == "box_cox":
            lam = self._lam()
            return x.log() if lam == 0 else (x.pow(lam) - 1) / lam
        out = torch.full_like(x, float("nan"))
        out[..., self.lag :] = x[..., self.lag :] - x[..., : -self.lag]
        return out

    def inverse(self, y: Tensor, before: Tensor) -> Tensor:
        """Forecast (B, H) in this step's output space -> its input space.

        ``before``: (B, L) the window's history in the input space (a difference needs
        its last ``lag`` values)."""
        if self.kind == "log":
            return y.exp()
        if self.kind == "log1p":
            return y.expm1()
        if self.kind == "box_cox":
            lam = self._lam()
            # The power of a negative base is undefined: clamp at the space's edge (0).
            return y.exp() if lam == 0 else (lam * y + 1).clamp_min(0).pow(1 / lam)
        m, (b, h) = self.lag, y.shape
        blocks = -(-h // m)  # seasons the horizon spans
        padded = torch.cat([y, y.new_zeros(b, blocks * m - h)], dim=1)
        # Step t adds to the value one lag earlier: per position in the season, a running
        # sum of the forecast differences on top of the last observed season.
        return (padded.view(b, blocks, m).cumsum(dim=1) + before[:, None, -m:]).flatten(1)[:, :h]

    def _lam(self) -> float:
        if self.lam is None:
            raise RuntimeError("box_cox is not fitted: call Transform.fit first")
        return self.lam

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class Transform:
    """One chain of steps per column (``columns`` in the series' order; most are empty)."""

    def __init__(self, chains: Sequence[Sequence[Step]]) -> None:
        self.chains = [list(chain) for chain in chains]

    @classmethod
    def from_config(
        cls, spec: Sequence[StepSpec] | Mapping[str, Sequence[StepSpec]], columns: Sequence[str]
    ) -> Transform:
        """``spec``: one chain for every column, or ``{column: chain}``."""
        if isinstance(spec, Mapping):
            unknown = sorted(set(spec) - set(columns))
            if unknown:
                raise DataError(
                    f"data.transform names {', '.join(map(repr, unknown))}, not a column of "
                    f"the run; its columns: {', '.join(columns)}"
                )
            return cls([[Step.parse(s) for s in spec.get(c, [])] for c in columns])
        return cls([[Step.parse(s) for s in spec] for _ in columns])

    @property
    def identity(self) -> bool:
        return not any(self.chains)

    @property
    def offset(self) -> int:
        """Leading rows without a value: the largest sum of lags over the columns."""
        return max(
            (sum(s.lag for s in c if s.kind == "difference") for c in self.chains), default=0
        )

    def fit(self, train: np.ndarray, columns: Sequence[str], source: str) -> None:
        """Check the domain on the training rows (N, C) and fit box_cox's lam."""
        from scipy import stats

        for j, chain in enumerate(self.chains):
            x = torch.as_tensor(train[:, j], dtype=torch.float64)
            for step in chain:
                _check_domain(step, x, columns[j], source, "training rows")
                if step.kind == "box_cox":
                    values = x[~x.isnan()].numpy()
                    if np.ptp(values) == 0:
                        raise DataError(
                            f"{source}: column {columns[j]!r} is constant on the training "
                            "rows; box_cox has no lam to fit there"
                        )
                    step.lam = float(stats.boxcox(values)[1])
                x = step.forward(x)

    def apply(self, values: np.ndarray, columns: Sequence[str], source: str) -> np.ndarray:
        """The whole series (N, C) in model space (NaN in the first ``offset`` rows)."""
        out = np.array(values, dtype=np.float64)
        for j, chain in enumerate(self.chains):
            x = torch.as_tensor(out[:, j])
            for step in chain:
                _check_domain(step, x, columns[j], source, "rows")
                x = step.forward(x)
            out[:, j] = x.numpy()
        return out

    def inverse(self, y: Tensor, history: Tensor) -> Tensor:
        """Forecasts (B, H, C) in model units (scaling undone) -> original units.

        history: (B, L, C) the windows' inputs in original units, the same columns."""
        out = []
        for j in range(y.shape[-1]):
            chain, col = self.chains[j], y[..., j]
            stages = [history[..., j]]  # the history in each step's input space
            for step in chain[:-1]:
                stages.append(step.forward(stages[-1]))
            for step, before in zip(reversed(chain), reversed(stages), strict=True):
                col = step.inverse(col, before)
            out.append(col)
        return torch.stack(out, dim=-1)

    def to_list(self) -> list[list[dict[str, Any]]]:
        return [[s.to_dict() for s in chain] for chain in self.chains]

    @classmethod
    def from_list(cls, chains: Sequence[Sequence[Mapping[str, Any]]]) -> Transform:
        return cls([[Step(**s) for s in chain] for chain in chains])


def _check_domain(step: Step, x: Tensor, column: str, source: str, where: str) -> None:
    if step.kind not in _DOMAIN:
        return
    low, words = _DOMAIN[step.kind]
    bad = ~(x > low) & ~x.isnan()
    if bad.any():
        row = int(bad.nonzero()[0, 0])
        raise DataError(
            f"{source}: column {column!r}, row {row}: {float(x[row]):g} is not {words}, "
            f"so data.transform {step.kind} is undefined there",
            "use log1p for data with zeros, or leave the column untransformed",
        )

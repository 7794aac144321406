"""Time series from CSV files: read, fill gaps, split in time, scale, cut into windows.

The pieces, in the order a forecasting run uses them::

    series = read_series(path, columns, date_column, missing)   # pandas, checked
    borders = split_borders(len(series), protocol, splits)      # target rows per split
    scaler = Scaler.fit(kind, series.values[:borders["train"][1]])  # train rows only
    windows = Windows(scaler.transform(series.values), borders["test"], ...)

Splits are chronological and never shuffled. A split owns the rows its *targets* fall
in; a window's input may reach back into the previous split (as Informer and DLinear
cut ETT), so the first test forecast starts right where validation ends.
"""

from __future__ import annotations

import dataclasses
import urllib.error
import urllib.request
import warnings
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
from torch import Tensor
from torch.utils.data import Dataset

from rnnzoo.data.batches import Batch
from rnnzoo.errors import DataError

BUILTIN = {"airline": "airline-passengers.csv"}
"""Series shipped inside the package (``data.path: builtin:<name>``); see series/README.md."""

NA_TOKENS = frozenset({"", "NA", "N/A", "NaN", "nan", "null", "NULL", "None", "#N/A", "?"})
"""Cells that count as missing values (after stripping spaces)."""

Missing = Literal["error", "interpolate", "ffill", "drop"]
Protocol = Literal["ratios", "counts", "ett_hour", "ett_minute"]

# ETT's split, as Informer (Zhou et al. 2021) and DLinear cut it: 12/4/4 months of 30 days.
_ETT_MONTHS = (12, 4, 4)
_ETT_ROWS_PER_DAY = {"ett_hour": 24, "ett_minute": 24 * 4}


@dataclasses.dataclass
class Series:
    """A multivariate series: ``values`` (N, C) float64, one column per name."""

    values: np.ndarray
    columns: list[str]
    dates: pd.DatetimeIndex | None
    source: str

    def __len__(self) -> int:
        return len(self.values)

    def freq(self) -> str | None:
        """The dates' regular frequency (``"h"``, ``"MS"``, ...) if pandas can tell."""
        if self.dates is None or len(self.dates) < 3:
            return None
        with warnings.catch_warnings():  # pandas 3 announces an offset as the return type
            warnings.simplefilter("ignore")
            freq = pd.infer_freq(self.dates[-min(len(self.dates), 50) :])
        return None if freq is None else str(getattr(freq, "freqstr", freq))


# -- reading ------------------------------------------------------------------------


def resolve_path(path: str | Path) -> Path:
    """A file path, or ``builtin:<name>`` for a series shipped with rnnzoo."""
    text = str(path)
    if text.startswith("builtin:"):
        name = text.removeprefix("builtin:")
        if name not in BUILTIN:
            known = ", ".join(f"builtin:{n}" for n in BUILTIN)
            raise DataError(f"no built-in series {name!r}; built in: {known}")
        return Path(str(resources.files("rnnzoo.data") / "series" / BUILTIN[name]))
    return Path(text).expanduser()


def fetch(url: str, target: Path) -> None:
    """Download ``url`` to ``target`` (written to a ``.part`` file, then renamed)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".part")
    try:
        with urllib.request.urlopen(url, timeout=60) as response:
            partial.write_bytes(response.read())
    except (urllib.error.URLError, OSError) as err:
        partial.unlink(missing_ok=True)
        raise DataError(
            f"{target} is missing and could not be downloaded from {url} ({err}); "
            "put the file there or point data.path at a copy"
        ) from None
    partial.replace(target)


def read_series(
    path: str | Path,
    columns: Sequence[str],
    date_column: str | None = None,
    missing: Missing = "error",
) -> Series:
    """Read ``columns`` (numbers) and the optional date column of a CSV file with a header.

    Quoted names, CRLF line ends and a missing final newline are all fine; blank lines
    are skipped. Missing cells (``NA_TOKENS``) follow ``missing``: ``error`` names the
    first one, ``interpolate`` fills linearly (ends take the nearest value), ``ffill``
    carries the last value forward (leading gaps take the first value), ``drop`` removes
    the row. A cell that is neither a number nor missing is always an error.
    """
    file = resolve_path(path)
    if file.is_dir():
        raise DataError(f"data.path {file} is a folder; give a CSV file")
    if not file.is_file():
        raise DataError(f"data file not found: {file}")
    try:
        frame = pd.read_csv(
            file, dtype=str, na_filter=False, skip_blank_lines=False, skipinitialspace=True
        )
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise DataError(f"{file}: not a readable CSV file ({err})") from None
    frame.columns = [str(c).strip() for c in frame.columns]
    wanted = [*([date_column] if date_column else []), *columns]
    absent = [c for c in wanted if c not in frame.columns]
    if absent:
        raise DataError(
            f"{file}: no column {', '.join(map(repr, absent))}; "
            f"its columns: {', '.join(frame.columns)}"
        )
    if len(set(columns)) != len(columns):
        raise DataError(f"{file}: a column is named twice in target/features: {list(columns)}")
    # Line numbers as an editor shows them: the header is line 1. Blank lines are dropped
    # after the numbering, so every message points at the right line.
    frame.index = pd.RangeIndex(2, len(frame) + 2)
    stripped = frame.apply(lambda col: col.str.strip())
    frame = frame.loc[~(stripped == "").all(axis=1)]  # blank lines; not rows with a gap
    cells = stripped.loc[frame.index, wanted]
    if cells.empty:
        raise DataError(f"{file}: no data rows")

    values = pd.DataFrame(index=cells.index)
    for name in columns:
        col = cells[name]
        number = pd.to_numeric(col.where(~col.isin(NA_TOKENS)), errors="coerce")
        bad = number.isna() & ~col.isin(NA_TOKENS)
        if bad.any():
            line = bad.idxmax()
            raise DataError(f"{file}: line {line}, column {name!r}: {col[line]!r} is not a number")
        infinite = number.abs() == np.inf
        if infinite.any():
            line = infinite.idxmax()
            raise DataError(
                f"{file}: line {line}, column {name!r}: {col[line]!r} is not a finite number",
                "fix the value, or leave the cell empty and set data.missing",
            )
        values[name] = number.astype("float64")
    dates = _parse_dates(file, cells[date_column]) if date_column else None
    values, dates = _fill(file, values, dates, missing)
    return Series(values.to_numpy(np.float64), list(columns), dates, str(file))


def _parse_dates(file: Path, col: pd.Series) -> pd.Series:
    parsed = pd.to_datetime(col, errors="coerce", format="mixed")
    bad = parsed.isna()
    if bad.any():
        line = bad.idxmax()
        raise DataError(f"{file}: line {line}, column {col.name!r}: {col[line]!r} is not a date")
    steps = parsed.diff().iloc[1:]
    if (steps <= pd.Timedelta(0)).any():
        line = steps.index[(steps <= pd.Timedelta(0)).to_numpy().argmax()]
        raise DataError(
            f"{file}: line {line}, column {col.name!r}: {col[line]!r} does not come after "
            "the row before it; rows must be in time order, one per time"
        )
    return parsed


def _fill(
    file: Path, values: pd.DataFrame, dates: pd.Series | None, missing: Missing
) -> tuple[pd.DataFrame, pd.DatetimeIndex | None]:
    gaps = values.isna()
    for name in values.columns:
        if gaps[name].all():
            raise DataError(f"{file}: column {name!r} has no values at all")
    if gaps.to_numpy().any():
        if missing == "error":
            line = int(gaps.any(axis=1).idxmax())
            name = next(c for c in values.columns if gaps.at[line, c])
            raise DataError(
                f"{file}: line {line}, column {name!r}: missing value; set data.missing "
                "to interpolate, ffill or drop to fill or skip missing values"
            )
        if missing == "interpolate":
            values = values.interpolate(method="linear", limit_direction="both")
        elif missing == "ffill":
            values = values.ffill().bfill()
        elif missing == "drop":
            keep = ~gaps.any(axis=1)
            values = values.loc[keep]
            dates = None if dates is None else dates.loc[keep]
        else:
            raise ValueError(f"unknown missing-value policy {missing!r}")
    index = None if dates is None else pd.DatetimeIndex(dates.to_numpy())
    return values, index


# -- splits and scaling -------------------------------------------------------------


def split_borders(
    n: int, protocol: Protocol, splits: Sequence[float] = (0.7, 0.1, 0.2)
) -> dict[str, tuple[int, int]]:
    """The rows ``[start, end)`` whose values each split forecasts, in time order.

    ``ratios``: fractions of the rows, as Informer's custom datasets (test and train
    rounded down, validation the rest). ``counts``: row counts; the last rows form the
    test split, validation the rows before it, train the rows before that. ``ett_hour``
    / ``ett_minute``: 12/4/4 months of 30 days from the first row.
    """
    if protocol in _ETT_ROWS_PER_DAY:
        month = 30 * _ETT_ROWS_PER_DAY[protocol]
        sizes = [m * month for m in _ETT_MONTHS]
        if n < sum(sizes):
            raise DataError(f"protocol {protocol} needs {sum(sizes)} rows; the data has {n}")
        start = 0
    elif protocol == "ratios":
        n_train, n_test = int(n * splits[0]), int(n * splits[2])
        sizes = [n_train, n - n_train - n_test, n_test]
        start = 0
    elif protocol == "counts":
        sizes = [int(s) for s in splits]
        if sum(sizes) > n:
            raise DataError(f"data.splits {sizes} asks for {sum(sizes)} rows; the data has {n}")
        start = n - sum(sizes)
    else:
        raise ValueError(f"unknown protocol {protocol!r}")
    borders = {}
    for name, size in zip(("train", "val", "test"), sizes, strict=True):
        borders[name] = (start, start + size)
        start += size
    return borders


@dataclasses.dataclass
class Scaler:
    """Per-column ``(x - shift) / scale``, fitted on training rows only."""

    kind: Literal["standard", "minmax", "none"]
    shift: np.ndarray
    scale: np.ndarray

    @classmethod
    def fit(cls, kind: Literal["standard", "minmax", "none"], values: np.ndarray) -> Scaler:
        c = values.shape[1]
        if kind == "standard":
            shift, scale = values.mean(axis=0), values.std(axis=0)
        elif kind == "minmax":
            shift, scale = values.min(axis=0), values.max(axis=0) - values.min(axis=0)
        else:
            shift, scale = np.zeros(c), np.ones(c)
        scale = np.where(scale > 0, scale, 1.0)  # a constant column stays as it is
        return cls(kind, shift.astype(np.float64), scale.astype(np.float64))

    def transform(self, values: np.ndarray) -> np.ndarray:
        return (values - self.shift) / self.scale

    def inverse(self, values: Any, columns: Sequence[int] | None = None) -> Any:
        """Back to original units; ``columns`` picks the scaler columns of ``values``."""
        shift, scale = self.shift, self.scale
        if columns is not None:
            shift, scale = shift[list(columns)], scale[list(columns)]
        if isinstance(values, Tensor):
            scale = torch.as_tensor(scale, dtype=values.dtype, device=values.device)  # type: ignore[assignment]
            shift = torch.as_tensor(shift, dtype=values.dtype, device=values.device)  # type: ignore[assignment]
        return values * scale + shift

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "shift": self.shift.tolist(), "scale": self.scale.tolist()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Scaler:
        return cls(
            d["kind"], np.asarray(d["shift"], np.float64), np.asarray(d["scale"], np.float64)
        )


# -- windows ------------------------------------------------------------------------


def window_starts(border: tuple[int, int], input_len: int, horizon: int, stride: int = 1) -> Tensor:
    """First input row of every window whose forecast lies inside ``border``.

    The input may start before ``border`` (it borrows the previous split's last rows),
    the forecast never leaves it; a split at the very start has no rows to borrow.
    """
    start, end = border
    first = max(start - input_len, 0)
    last = end - input_len - horizon  # inclusive
    if last < first:
        return torch.empty(0, dtype=torch.long)
    return torch.arange(first, last + 1, stride, dtype=torch.long)


class Windows(Dataset[Batch]):
    """Sliding windows over a (scaled) series: ``inputs`` (B, L, C_in), ``targets`` (B, H, C_out).

    ``in_cols``/``out_cols`` pick columns of ``values``; the output columns come first
    among the inputs (a model reads a target's own history at ``inputs[..., :C_out]``).
    ``raw``: (N, C_out) the output columns in original units; each batch then carries
    its windows' rows of it, (B, L + H, C_out), as ``context``.
    """

    def __init__(
        self,
        values: Tensor,
        starts: Tensor,
        input_len: int,
        horizon: int,
        in_cols: Sequence[int],
        out_cols: Sequence[int],
        raw: Tensor | None = None,
    ) -> None:
        if list(in_cols[: len(out_cols)]) != list(out_cols):
            raise ValueError("the output columns must lead the input columns")
        self.values, self.starts, self.raw = values, starts, raw
        self.input_len, self.horizon = input_len, horizon
        self.in_cols = torch.as_tensor(list(in_cols), dtype=torch.long)
        self.out_cols = torch.as_tensor(list(out_cols), dtype=torch.long)
        self._steps_in = torch.arange(input_len)
        self._steps_out = torch.arange(input_len, input_len + horizon)

    def __len__(self) -> int:
        return len(self.starts)

    def __getitems__(self, indices: Sequence[int]) -> Batch:
        starts = self.starts[torch.as_tensor(indices, dtype=torch.long)]
        rows_in = starts[:, None] + self._steps_in  # (B, L)
        rows_out = starts[:, None] + self._steps_out  # (B, H)
        inputs = self.values[rows_in][:, :, self.in_cols]
        targets = self.values[rows_out][:, :, self.out_cols]
        if self.raw is None:
            return Batch(inputs, targets)
        return Batch(inputs, targets, context=self.raw[torch.cat([rows_in, rows_out], dim=1)])

    def __getitem__(self, index: int) -> Batch:
        return self.__getitems__([index])

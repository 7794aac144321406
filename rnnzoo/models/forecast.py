"""Forecasters: a window of ``L`` past steps in, the next ``H`` steps out.

Every forecaster maps ``(B, L, C_in)`` to ``(B, H, C_out)``, where the ``C_out``
forecast columns are the first ``C_out`` input columns (their own history). Each may
normalise every window on its own (``norm``) before it sees it, which removes the level
shift between the years a model trains on and the years it is tested on:

* ``last``  subtract each column's last input value, add it back to the forecast
  (NLinear, Zeng et al. 2023; SegRNN's default);
* ``revin`` reversible instance normalisation (Kim et al. 2022): per window and column,
  subtract the mean and divide by the standard deviation, with a learnable affine map.

The recurrent models here: ``forecaster`` (encoder, then a linear head emits all H
steps at once), ``seq2seq_forecaster`` (encoder, then a decoder unrolled over the
horizon on its own forecasts, teacher-forced in training) and ``segrnn`` (Lin et al.
2023: recur over segments of the window, decode every horizon segment in parallel).

With ``quantiles`` (levels such as [0.1, 0.5, 0.9]) a recurrent forecaster emits one
forecast per level, a ``QuantileForecast`` of (B, H, C_out, Q), for the task's pinball
loss. The window norm is undone on every level, and the levels are then sorted along Q
(monotone rearrangement, Chernozhukov et al. 2010), so they never cross: the forecast
at level Q's position is the Q-th smallest of the head's outputs, and the loss of that
level trains whichever output lands there. Where none cross, the sort changes nothing.
"""

from __future__ import annotations

from itertools import pairwise
from typing import Literal

import torch
from pydantic import Field, field_validator
from torch import Tensor, nn

from rnnzoo.errors import ConfigError
from rnnzoo.models.base import MODELS, RecurrentArgs, top_layer_state
from rnnzoo.tasks import ModelIO
from rnnzoo.tasks.base import QuantileForecast, median_index

Norm = Literal["none", "last", "revin"]


class WindowNorm(nn.Module):
    """Per-window normalisation of the inputs, undone on the forecast (see the module)."""

    def __init__(self, kind: Norm, channels: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.kind, self.eps = kind, eps
        if kind == "revin":
            self.weight = nn.Parameter(torch.ones(channels))
            self.bias = nn.Parameter(torch.zeros(channels))

    def stats(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(shift, scale) of each window and column, each (B, 1, C)."""
        if self.kind == "last":
            return x[:, -1:].detach(), torch.ones_like(x[:, -1:])
        if self.kind == "revin":
            mean = x.mean(dim=1, keepdim=True).detach()
            std = (x.var(dim=1, keepdim=True, unbiased=False) + self.eps).sqrt().detach()
            return mean, std
        zero = torch.zeros_like(x[:, -1:])
        return zero, zero + 1

    def normalize(self, x: Tensor, shift: Tensor, scale: Tensor) -> Tensor:
        """Inputs (B, T, C) or targets (B, H, C_out, the first columns) to model space."""
        c = x.shape[-1]
        x = (x - shift[..., :c]) / scale[..., :c]
        if self.kind == "revin":
            x = x * self.weight[:c] + self.bias[:c]
        return x

    def denormalize(self, y: Tensor, shift: Tensor, scale: Tensor) -> Tensor:
        c = y.shape[-1]
        if self.kind == "revin":
            y = (y - self.bias[:c]) / (self.weight[:c] + self.eps**2)
        return y * scale[..., :c] + shift[..., :c]


class ForecastModel(nn.Module):
    """Base of the forecasters: window normalisation around ``forecast``, and with
    ``quantiles`` one forecast per level (see the module)."""

    output = "horizon"

    def __init__(
        self, io: ModelIO, norm: Norm = "none", quantiles: list[float] | None = None
    ) -> None:
        super().__init__()
        if io.horizon is None or io.input_len is None:
            raise ConfigError("a forecaster needs a task with input_len and horizon")
        self.n_in, self.n_out = io.input_size, io.output_size
        self.input_len, self.horizon = io.input_len, io.horizon
        self.norm = WindowNorm(norm, self.n_in)
        self.levels = tuple(quantiles) if quantiles else None
        self.n_levels = len(self.levels) if self.levels else 1  # Q: outputs per (step, column)

    def forward(
        self, inputs: Tensor, lengths: Tensor | None = None, targets: Tensor | None = None
    ) -> Tensor | QuantileForecast:
        """inputs (B, L, C_in) -> forecast (B, H, C_out), or with quantiles a
        ``QuantileForecast`` of (B, H, C_out, Q); ``targets`` for teacher forcing."""
        shift, scale = self.norm.stats(inputs)
        x = self.norm.normalize(inputs, shift, scale)
        if targets is not None:
            targets = self.norm.normalize(targets, shift, scale)
        y = self.forecast(x, targets)
        if self.levels is None:
            return self.norm.denormalize(y, shift, scale)
        # (B, H, C, Q) -> (B, H, Q, C): denormalize broadcasts over the last dim
        y = self.norm.denormalize(y.transpose(-1, -2), shift[:, None], scale[:, None])
        return QuantileForecast(y.transpose(-1, -2).sort(dim=-1).values, self.levels)

    def forecast(self, x: Tensor, targets: Tensor | None) -> Tensor:
        """Normalised window (B, L, C_in) -> (B, H, C_out), or (B, H, C_out, Q)."""
        raise NotImplementedError

    def _levels_last(self, y: Tensor) -> Tensor:
        """(..., C_out * Q) -> (..., C_out, Q) with quantiles; unchanged without."""
        return y if self.levels is None else y.unflatten(-1, (-1, self.n_levels))


class ForecastArgs(RecurrentArgs):
    norm: Norm = Field("none", description="per-window normalisation: none, last or revin")
    quantiles: list[float] | None = Field(
        None, description="quantile levels to forecast, e.g. [0.1, 0.5, 0.9]; null: a point"
    )

    @field_validator("quantiles")
    @classmethod
    def _levels(cls, levels: list[float] | None) -> list[float] | None:
        if levels is None:
            return None
        if len(levels) < 2 or any(not 0 < q < 1 for q in levels):
            raise ValueError(
                "give two or more levels, each strictly between 0 and 1, e.g. "
                "[0.1, 0.5, 0.9]; leave it null for a point forecast"
            )
        if any(b <= a for a, b in pairwise(levels)):
            raise ValueError("the levels must be strictly increasing, e.g. [0.1, 0.5, 0.9]")
        return levels


class Forecaster(ForecastModel):
    """Recurrent encoder; its final state -> a linear head -> all H steps at once."""

    class Args(ForecastArgs):
        name: Literal["forecaster"] = "forecaster"
        head_dropout: float = Field(0.0, ge=0, lt=1)

    def __init__(self, io: ModelIO, args: Args) -> None:
        super().__init__(io, args.norm, args.quantiles)
        self.rnn = args.recurrent(self.n_in)
        self.dropout = nn.Dropout(args.head_dropout)
        size = self.horizon * self.n_out * self.n_levels
        self.head = nn.Linear(args.hidden_size * self.rnn.num_directions, size)

    @classmethod
    def build(cls, args: Args, io: ModelIO) -> Forecaster:
        return cls(io, args)

    def forecast(self, x: Tensor, targets: Tensor | None) -> Tensor:
        _, h_n = self.rnn(x)
        h = top_layer_state(h_n, self.rnn.num_directions)
        y = self.head(self.dropout(h)).view(len(x), self.horizon, -1)  # (B, H, C_out*Q)
        return self._levels_last(y)


class Seq2SeqForecaster(ForecastModel):
    """Encoder-decoder forecaster: the decoder unrolls over the horizon on its own forecasts.

    The decoder starts from the encoder's state and the last observed value, and feeds each
    forecast back as its next input (with quantiles, the median's: the level nearest
    0.5). In training, each step's input is instead the true previous value with
    probability ``teacher_forcing``.

    With ``residual``, each step forecasts the change from the value fed in, and the head
    starts at zero: the untrained model is the repeat-last forecast, and training moves
    it away only where that lowers the loss."""

    class Args(ForecastArgs):
        name: Literal["seq2seq_forecaster"] = "seq2seq_forecaster"
        teacher_forcing: float = Field(0.5, ge=0, le=1, description="in training only")
        residual: bool = Field(False, description="each step forecasts the change from the last")

        @field_validator("bidirectional")
        @classmethod
        def _one_way(cls, bidirectional: bool) -> bool:
            if bidirectional:
                raise ValueError("the decoder runs forward in time: bidirectional must be false")
            return bidirectional

    def __init__(self, io: ModelIO, args: Args) -> None:
        super().__init__(io, args.norm, args.quantiles)
        self.teacher_forcing = args.teacher_forcing
        self.encoder = args.recurrent(self.n_in)
        self.decoder = args.recurrent(self.n_out, bidirectional=False)
        self.head = nn.Linear(args.hidden_size, self.n_out * self.n_levels)
        self.median = None if self.levels is None else median_index(self.levels)
        self.residual = args.residual
        if self.residual:
            nn.init.zeros_(self.head.weight)
            nn.init.zeros_(self.head.bias)

    @classmethod
    def build(cls, args: Args, io: ModelIO) -> Seq2SeqForecaster:
        return cls(io, args)

    def forecast(self, x: Tensor, targets: Tensor | None) -> Tensor:
        _, state = self.encoder(x)
        step = x[:, -1, : self.n_out]  # (B, C_out): the last observed values
        teach = self.training and targets is not None and self.teacher_forcing > 0
        outputs = []
        for t in range(self.horizon):
            out, state = self.decoder.step(step, state)
            y = self._levels_last(self.head(out))  # (B, C_out), or (B, C_out, Q)
            if self.residual:
                y = y + (step if self.median is None else step[..., None])
            if self.median is not None:  # sorted here too, so the median fed back is the output's
                y = y.sort(dim=-1).values
            outputs.append(y)
            if teach and float(torch.rand(())) < self.teacher_forcing:
                assert targets is not None
                step = targets[:, t]
            else:
                step = y if self.median is None else y[..., self.median]
        return torch.stack(outputs, dim=1)


class SegRNN(ForecastModel):
    """SegRNN (Lin et al. 2023): a recurrent layer over segments, horizon decoded in parallel.

    Channel-independent: each column's window is cut into segments of ``segment_len`` steps,
    each embedded (linear + ReLU) and fed to the recurrent layer; from its final state,
    every horizon segment is decoded in one parallel step whose input is a position
    embedding beside a column embedding."""

    class Args(ForecastArgs):
        name: Literal["segrnn"] = "segrnn"
        cell: str = "gru"
        hidden_size: int = Field(512, ge=2)
        segment_len: int = Field(48, ge=1, description="must divide input_len and horizon")
        head_dropout: float = Field(0.5, ge=0, lt=1)
        norm: Norm = "last"

        @field_validator("hidden_size")
        @classmethod
        def _even(cls, size: int) -> int:
            if size % 2:
                raise ValueError(
                    "half is the position embedding, half the column's: use an even size"
                )
            return size

        @field_validator("bidirectional")
        @classmethod
        def _one_way(cls, bidirectional: bool) -> bool:
            if bidirectional:
                raise ValueError("segments are decoded forward from the final state: use false")
            return bidirectional

    def __init__(self, io: ModelIO, args: Args) -> None:
        super().__init__(io, args.norm, args.quantiles)
        w, d = args.segment_len, args.hidden_size
        for what, n in (("input_len", self.input_len), ("horizon", self.horizon)):
            if n % w:
                raise ConfigError(f"model.segment_len {w} does not divide data.{what} {n}")
        self.w, self.n_segments_out = w, self.horizon // w
        self.embed = nn.Sequential(nn.Linear(w, d), nn.ReLU())
        self.rnn = args.recurrent(d)  # hidden_size is d too
        self.position = nn.Parameter(torch.randn(self.n_segments_out, d // 2))
        self.column = nn.Parameter(torch.randn(self.n_in, d // 2))
        self.dropout = nn.Dropout(args.head_dropout)
        self.head = nn.Linear(d, w * self.n_levels)

    @classmethod
    def build(cls, args: Args, io: ModelIO) -> SegRNN:
        return cls(io, args)

    def forecast(self, x: Tensor, targets: Tensor | None) -> Tensor:
        b, length, c = x.shape
        m = self.n_segments_out
        segments = x.transpose(1, 2).reshape(b * c, length // self.w, self.w)
        _, state = self.rnn(self.embed(segments))  # state: (layers, B*C, d) or a tuple
        # One decoder step per (series, horizon segment), all in one batch.
        queries = torch.cat(
            [
                self.position.unsqueeze(0).expand(c, m, -1),  # (C, m, d/2)
                self.column.unsqueeze(1).expand(c, m, -1),  # (C, m, d/2)
            ],
            dim=-1,
        ).repeat(b, 1, 1)  # (B*C, m, d)
        state = _repeat_state(state, m)
        out, _ = self.rnn(queries.reshape(b * c * m, 1, -1), state)
        y = self.head(self.dropout(out[:, 0]))  # (B*C*m, w*Q)
        y = y.view(b, c, m * self.w, self.n_levels).transpose(1, 2)  # (B, H, C, Q)
        y = y[:, :, : self.n_out]
        return y[..., 0] if self.levels is None else y


def _repeat_state(state: Tensor | tuple[Tensor, ...], times: int) -> Tensor | tuple[Tensor, ...]:
    """Each sequence's state ``times`` times in a row, along the batch (dim 1)."""
    if isinstance(state, Tensor):
        return state.repeat_interleave(times, dim=1)
    return tuple(s.repeat_interleave(times, dim=1) for s in state)


MODELS.add("forecaster", Forecaster)
MODELS.add("seq2seq_forecaster", Seq2SeqForecaster)
MODELS.add("segrnn", SegRNN)

"""Config loading: typed, overridable, and every mistake named with its key path."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml
from typer.testing import CliRunner

from rnnzoo.cli import app
from rnnzoo.config import ConfigError, load_config, parse_config
from rnnzoo.models import build_model
from rnnzoo.tasks import TASKS, AddingTask
from rnnzoo.tasks.base import QuantileForecast
from tests.conftest import TINY

runner = CliRunner()


def with_(section: str, **values) -> dict:
    return {**TINY, section: {**TINY[section], **values}}


def test_defaults_are_filled_in_and_typed():
    config = parse_config(TINY)
    assert config.train.optimizer == "adam" and config.train.grad_clip == 1.0
    assert config.model.pooling == "last"  # type: ignore[attr-defined]
    assert config.data.seq_len == 8  # type: ignore[attr-defined]
    again = parse_config(config.to_dict())  # the resolved config round-trips
    assert again.to_dict() == config.to_dict()


@pytest.mark.parametrize(
    "raw, message",
    [
        (with_("train", lrr=0.1), r"unknown key 'train.lrr' \(did you mean 'lr'\?\); valid keys"),
        (with_("data", seq_lenn=5), r"unknown key 'data.seq_lenn' \(did you mean 'seq_len'"),
        (
            with_("model", hiden_size=5),
            r"unknown key 'model.hiden_size' \(did you mean 'hidden_size'",
        ),
        ({**TINY, "trian": {}}, r"unknown key 'trian' \(did you mean 'train'\?\)"),
        (with_("train", epochs="ten"), r"train.epochs: Input should be a valid integer.*'ten'"),
        (with_("train", optimizer="adagrad"), r"train.optimizer: Input should be 'adam', 'adamw'"),
        (with_("train", lr=-1), r"train.lr: Input should be greater than 0"),
        (
            with_("model", cell="lstn"),
            r"model.cell: .*unknown cell 'lstn'.*valid names: cifg_lstm, gru, .*lstm",
        ),
        (with_("model", name="many_to_none"), r"unknown model 'many_to_none'.*many_to_one"),
        ({**TINY, "task": "adder"}, r"task: unknown task 'adder'.*valid names: adding"),
        ({k: v for k, v in TINY.items() if k != "task"}, r"task: required but missing"),
    ],
)
def test_mistakes_name_the_key_and_the_choices(raw, message):
    with pytest.raises(ConfigError, match=message):
        parse_config(raw)


def test_overrides_are_typed_by_the_schema(tiny_config: Path):
    config = load_config(
        tiny_config,
        ["train.lr=3e-4", "model.bidirectional=true", "data.seq_len=12", "train.grad_clip=null"],
    )
    assert config.train.lr == pytest.approx(3e-4)
    assert config.model.bidirectional is True  # type: ignore[attr-defined]
    assert config.data.seq_len == 12  # type: ignore[attr-defined]
    assert config.train.grad_clip is None


@pytest.mark.parametrize(
    "override, message",
    [
        ("train.lrr=0.1", r"unknown key 'train.lrr'"),
        ("train.epochs=many", r"train.epochs: Input should be a valid integer"),
        ("train", r"--set expects key.path=value"),
        ("train.lr.x=1", r"'lr' is a value, not a section"),
    ],
)
def test_bad_overrides(tiny_config: Path, override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(tiny_config, [override])


def test_file_errors(tmp_path: Path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("task: [adding\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    bad.write_text("- a list\n")
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_config(bad)


def test_model_arguments_are_checked_before_any_data_loads(tiny_config, monkeypatch):
    def no_data(self, split):
        raise AssertionError("data was loaded before the config was checked")

    monkeypatch.setattr(AddingTask, "dataset", no_data)
    result = runner.invoke(app, ["train", "-c", str(tiny_config), "--set", "model.cell=lstn"])
    assert result.exit_code == 2, result.output
    assert "unknown cell 'lstn'" in result.output


@pytest.mark.parametrize(
    "override, message",
    [
        ("train.lrr=0.1", "unknown key 'train.lrr' (did you mean 'lr'?)"),
        ("train.epochs=ten", "train.epochs: Input should be a valid integer"),
        ("model.cell=lstn", "unknown cell 'lstn'"),
        ("model.name=nope", "unknown model 'nope'"),
    ],
)
def test_cli_config_errors_exit_2_without_traceback(tiny_config: Path, override, message):
    result = runner.invoke(app, ["train", "-c", str(tiny_config), "--set", override])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output


def test_cli_usage_errors_exit_2(tmp_path: Path):
    assert runner.invoke(app, ["train"]).exit_code == 2
    result = runner.invoke(app, ["train", "-c", str(tmp_path / "nope.yaml")])
    assert result.exit_code == 2 and "config file not found" in result.output
    result = runner.invoke(app, ["eval", str(tmp_path / "no_run")])
    assert result.exit_code == 2 and "run folder not found" in result.output


CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").rglob("*.yaml"))
# The models with nothing to learn: the naive forecasts, and the statistical ones
# fitted anew to every window.
SCORED_NOT_TRAINED = {"repeat_last", "seasonal_naive", "ets", "arima", "theta"}


def test_there_are_shipped_configs():
    assert len(CONFIGS) >= 3


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_every_shipped_config_loads_validates_and_builds(path: Path):
    raw = yaml.safe_load(path.read_text())
    config = parse_config(raw, source=str(path))
    task = TASKS.get(config.task)(config.data)
    io = task.nominal_io
    model = build_model(config.model, io)  # no data needed to check this
    if io.vocab_size:
        x = torch.randint(1, 10, (2, 5))
        if io.char_vocab_size:  # each word's id, then its characters' ids
            x = torch.randint(1, 10, (2, 5, 1 + 6))
        if io.output == "next_token":  # column 0: the condition
            x[:, 0] = torch.arange(2) % (io.num_conditions or 1)
    else:
        x = torch.randn(2, io.input_len or 5, io.input_size)
    out = model(x)
    if isinstance(out, QuantileForecast):  # model.quantiles: a forecast per level, (B, H, C, Q)
        assert out.levels == tuple(config.model.quantiles)  # type: ignore[attr-defined]
        assert out.values.shape == (2, io.horizon, io.output_size, len(out.levels))
    elif io.output == "sequence":  # decoded: scores along the decoded path, and its tokens
        assert out.logits.shape[0] == 2 and out.logits.shape[-1] == io.output_size
        assert out.tokens.shape[0] == 2 and out.tokens.shape[1] <= (io.max_output_len or 0)
    else:
        steps = {
            "one": (), "per_step": (x.shape[1],), "horizon": (io.horizon,),
            "next_token": (x.shape[1] - 1,), "language_model": (x.shape[1],),
        }[io.output]  # fmt: skip
        assert out.shape == (2, *steps, io.output_size)
    if config.model.name not in SCORED_NOT_TRAINED:
        assert sum(p.numel() for p in model.parameters()) > 0

"""One typed schema for a run: YAML -> validated ``Config``; unknown keys are errors.

A run config has five sections::

    task: adding
    data:  {...}    # schema chosen by the task (``TASKS``)
    model: {...}    # schema chosen by model.name (``MODELS``)
    train: {...}    # TrainConfig
    output: {...}   # OutputConfig

``data`` and ``model`` are validated against the schema their task or model registers,
so a typo anywhere is reported with its full key path and the closest valid names
before any data is loaded.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from rnnzoo.errors import ConfigError, read_text

__all__ = ["Config", "ConfigError", "load_config", "parse_config"]


class Section(BaseModel):
    """Base of every config section: unknown keys are errors, values are re-checked on set.

    Numbers must be finite, and a boolean is never taken for a number (pydantic would
    read ``epochs: true`` as 1)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _no_bools_for_numbers(cls, value: Any, info: ValidationInfo) -> Any:
        field = cls.model_fields.get(info.field_name or "")
        if isinstance(value, bool) and field is not None and not _takes_bool(field.annotation):
            raise ValueError("expected a number or a name, not a boolean")
        return value


def _takes_bool(annotation: Any) -> bool:
    """Whether a field's type admits ``True``/``False``: bool, Any, or a union with one."""
    if annotation is bool or annotation is Any:
        return True
    if typing.get_origin(annotation) is Literal:
        return any(isinstance(v, bool) for v in typing.get_args(annotation))
    return any(_takes_bool(a) for a in typing.get_args(annotation))


class TrainConfig(Section):
    """How to fit: optimiser, schedule, budget, batches, early stopping, device."""

    optimizer: Literal["adam", "adamw", "sgd"] = "adam"
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    momentum: float = Field(0.9, ge=0, description="SGD only")
    schedule: Literal["constant", "cosine", "plateau"] = "constant"
    warmup_steps: int = Field(0, ge=0, description="linear warm-up before the cosine decay")
    plateau_factor: float = Field(0.5, gt=0, lt=1)
    plateau_patience: int = Field(2, ge=0)
    epochs: int = Field(10, ge=1)
    lr_multipliers: dict[str, Annotated[float, Field(ge=0)]] = Field(
        default_factory=dict,
        description="parameter-name prefix -> factor on lr (the longest matching prefix wins)",
    )
    unfreeze_epochs: dict[str, Annotated[int, Field(ge=1)]] = Field(
        default_factory=dict,
        description="parameter-name prefix -> the epoch (1 = the first) it is trained from",
    )
    max_steps: int | None = Field(None, ge=1, description="stop after this many steps")
    max_minutes: float | None = Field(
        None, gt=0, description="stop after this much wall time (training and validation)"
    )
    batch_size: int = Field(64, ge=1, description="global batch, over all processes")
    eval_batch_size: int | None = Field(None, ge=1)
    grad_clip: float | None = Field(1.0, gt=0, description="max gradient norm; null: off")
    metric: str | None = Field(None, description="validation metric to select and stop on")
    patience: int | None = Field(None, ge=1, description="epochs without improvement")
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    precision: Literal["fp32", "bf16"] = "fp32"
    num_workers: int = Field(0, ge=0)
    diagnose: bool = Field(
        False, description="at the end, measure gradient flow through time (rnnzoo diagnose)"
    )

    @field_validator("unfreeze_epochs")
    @classmethod
    def _per_step_schedule(cls, epochs: dict[str, int], info: ValidationInfo) -> dict[str, int]:
        # A held-back group is a rate of 0 inside the per-step schedule; plateau's rates
        # are multiplied down per epoch, so there is no step at which to switch one on.
        if epochs and info.data.get("schedule") == "plateau":
            raise ValueError(
                "unfreezing needs a per-step schedule: set train.schedule to constant or "
                "cosine, or drop train.unfreeze_epochs"
            )
        return epochs


class OutputConfig(Section):
    """Where a run folder goes: ``<dir>/<name>``."""

    dir: Path = Path("runs")
    name: str | None = Field(None, description="default: the config's file name and a time")
    tensorboard: bool = Field(True, description="write TensorBoard scalars when installed")


class RunConfig(Section):
    """The top level; ``data`` and ``model`` are checked by their own schemas afterwards."""

    task: str
    data: dict[str, Any] = Field(default_factory=dict)
    model: dict[str, Any] = Field(default_factory=dict)
    train: TrainConfig = Field(default_factory=TrainConfig)
    output: OutputConfig = Field(default_factory=OutputConfig)

    @model_validator(mode="before")
    @classmethod
    def _sections_are_mappings(cls, values: Any) -> Any:
        if isinstance(values, Mapping):
            for key in ("data", "model", "train", "output"):
                if values.get(key) is None and key in values:
                    values = {**values, key: {}}
        return values


@dataclasses.dataclass
class Config:
    """A validated run config: every section is a typed pydantic model."""

    task: str
    data: BaseModel
    model: BaseModel
    train: TrainConfig
    output: OutputConfig

    def to_dict(self) -> dict[str, Any]:
        """Plain YAML-able values, every default filled in (the resolved config)."""
        return {
            "task": self.task,
            "data": self.data.model_dump(mode="json"),
            "model": self.model.model_dump(mode="json"),
            "train": self.train.model_dump(mode="json"),
            "output": self.output.model_dump(mode="json"),
        }

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


# -- loading ------------------------------------------------------------------------


def load_config(path: str | Path, overrides: Iterable[str] = ()) -> Config:
    """Read a YAML file, apply ``key.path=value`` overrides, validate everything."""
    path = Path(path)
    raw = parse_yaml(read_text(path, "config file"), str(path))
    if not isinstance(raw, dict):
        raise ConfigError(
            f"{path}: expected a mapping of sections at the top level (task:, data:, model:, ...)"
        )
    overrides = list(overrides)
    return parse_config(apply_overrides(raw, overrides), str(path), overrides)


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, except that a key given twice in one mapping is an error
    (PyYAML keeps the last one silently)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} appears twice (lines {seen[key]} and {line})",
                    key_node.start_mark,
                )  # fmt: skip
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


def parse_yaml(text: str, source: str) -> Any:
    """YAML text as Python values; a syntax error or a duplicate key names the line."""
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "?"
        raise ConfigError(f"{source}, {where}: not valid YAML: {err.problem}") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{source}: not valid YAML: {err}") from None


def parse_config(
    raw: Mapping[str, Any], source: str = "config", overrides: Iterable[str] = ()
) -> Config:
    """Validate a config given as nested dicts (what ``yaml.safe_load`` gives).

    A problem with a key that ``overrides`` (``--set key=value``) gave is reported as
    that ``--set``'s, not the file's."""
    from rnnzoo.models import MODELS
    from rnnzoo.tasks import TASKS

    # Every section is checked even when an earlier one fails, so one run of the
    # command lists every mistake in the file.
    errors: list[str] = []
    top = _validate(RunConfig, raw, "", errors)
    task, data_raw, model_raw = raw.get("task"), raw.get("data") or {}, raw.get("model") or {}
    data = model = None
    if isinstance(task, str) and task not in TASKS:
        errors.append(f"task: {TASKS.unknown_message(task)}")
    elif isinstance(task, str) and isinstance(data_raw, Mapping):
        data = _validate(TASKS.get(task).Data, data_raw, "data.", errors)
    name = model_raw.get("name") if isinstance(model_raw, Mapping) else None
    if name is None:
        errors.append(f"model.name: required but missing; valid names: {', '.join(MODELS)}")
    elif name not in MODELS:
        errors.append(f"model.name: {MODELS.unknown_message(name)}")
    else:
        model = _validate(MODELS.get(name).Args, model_raw, "model.", errors)
    if errors or top is None or data is None or model is None:
        raise ConfigError(_blame(errors, source, list(overrides)))
    return Config(top.task, data, model, top.train, top.output)


def _blame(errors: list[str], source: str, overrides: list[str]) -> str:
    """The errors as one message, each tagged with the ``--set`` that caused it."""
    given = {item.partition("=")[0].strip(): item for item in overrides}
    lines, from_file = [], False
    for line in errors:
        key = line.split("'")[1] if line.startswith("unknown key '") else line.partition(":")[0]
        item = next((v for k, v in given.items() if _within(key, k) or _within(k, key)), None)
        lines.append(line + (f" [from --set {item}]" if item else ""))
        from_file = from_file or item is None
    return (f"{source}: " if from_file else "") + "\n  ".join(lines)


def _within(key: str, section: str) -> bool:
    return key == section or key.startswith(section + ".")


def apply_overrides(raw: Mapping[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """Return a copy of ``raw`` with each ``a.b.c=value`` set; values are parsed as YAML.

    The schema then types them: ``train.lr=3e-4`` becomes a float, ``model.bidirectional=
    true`` a bool. A key that the schema lacks is reported like a typo in the file.
    """
    out = copy.deepcopy(dict(raw))
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set expects key.path=value, got {item!r}")
        try:
            value = yaml.load(text, Loader=_UniqueKeyLoader) if text.strip() else None
        except yaml.YAMLError:
            value = text
        node = out
        parts = key.strip().split(".")
        for part in parts[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise ConfigError(f"--set {key}: {part!r} is a value, not a section")
            node = child
        node[parts[-1]] = value
    return out


def _validate(schema: type[BaseModel], values: Any, prefix: str, errors: list[str]) -> Any:
    """The validated section, or None with one line per problem added to ``errors``."""
    try:
        return schema.model_validate(values)
    except ValidationError as err:
        errors.extend(_describe(schema, e, prefix) for e in err.errors())
        return None


def _describe(schema: type[BaseModel], error: Mapping[str, Any], prefix: str) -> str:
    """One line per problem: the full key path, what is wrong, and what would be valid."""
    loc = [str(p) for p in error["loc"]]
    key = prefix + ".".join(loc)
    if error["type"] == "extra_forbidden":
        valid = _fields_at(schema, loc[:-1])
        close = difflib.get_close_matches(loc[-1], valid, n=3, cutoff=0.5)
        parent = (prefix + ".".join(loc[:-1])).rstrip(".") or "the top level"
        hint = f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""
        return f"unknown key '{key}'{hint}; valid keys in {parent}: {', '.join(valid)}"
    if error["type"] == "missing":
        return f"{key}: required but missing"
    got = error.get("input")
    message = str(error["msg"]).removeprefix("Value error, ")
    return f"{key}: {message} (got {got!r})"


def _fields_at(schema: type[BaseModel], loc: list[str]) -> list[str]:
    """The field names of the section at ``loc`` inside ``schema`` (empty if unknown)."""
    for part in loc:
        field = schema.model_fields.get(part)
        annotation = getattr(field, "annotation", None)
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return []
        schema = annotation
    return list(schema.model_fields)

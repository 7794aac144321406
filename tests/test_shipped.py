"""Shipped configs by name: ``--config NAME`` from any folder, ``rnnzoo list`` and
``rnnzoo config show``, and a wheel that carries them."""

from __future__ import annotations

import contextlib
import inspect
import os
import subprocess
import sys
import venv
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from rnnzoo import shipped
from rnnzoo.cells import CELLS
from rnnzoo.cli import app
from rnnzoo.compare import read_sources
from rnnzoo.models import MODELS
from rnnzoo.tasks import TASKS
from tests.test_bad_input import assert_user_error, unchanged

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted((ROOT / "configs").rglob("*.yaml"))
runner = CliRunner()

# adding_lstm.yaml made tiny: trains in well under a second
TINY = [
    "data.seq_len=5", "data.n_train=16", "data.n_val=8", "data.n_test=8",
    "model.hidden_size=4", "train.epochs=1", "train.batch_size=8", "train.device=cpu",
]  # fmt: skip
TINY_SETS = [arg for item in TINY for arg in ("--set", item)]


def invoke(*args: object, cwd: Path) -> tuple[int, str]:
    with contextlib.chdir(cwd):
        result = runner.invoke(app, [str(a) for a in args])
    return result.exit_code, result.output


def first_line(path: Path) -> str:
    return path.read_text(encoding="utf-8").partition("\n")[0]


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_every_shipped_config_starts_with_a_one_line_description(path: Path):
    line = first_line(path)
    assert line.startswith("# ") and line[2:].strip(), f"{path.name}: first line {line!r}"
    assert len(line) <= 100, f"{path.name}: the description is longer than a line"
    assert not line.rstrip().endswith((",", "(", ":", ";", "-")), f"{path.name}: cut off"


def test_shipped_configs_are_the_repository_folder_and_described_apart():
    assert sorted(shipped.configs()) == sorted(
        str(p.relative_to(ROOT / "configs").with_suffix("").as_posix()) for p in CONFIGS
    )
    lines = [first_line(p) for p in CONFIGS]
    twins = {line for line in lines if lines.count(line) > 1}
    assert not twins, f"configs that `rnnzoo list` cannot tell apart: {twins}"


def test_list_shows_configs_with_their_description_and_every_registered_name(tmp_path: Path):
    code, out = invoke("list", cwd=tmp_path)
    assert code == 0, out
    rows = {line.split()[0]: line.split(None, 1)[1] for line in out.splitlines()[1:]
            if line.startswith("  ")}  # fmt: skip
    for path in CONFIGS:
        assert rows[path.stem] == first_line(path)[2:]
    for registry in (CELLS, MODELS, TASKS):
        for name in registry:
            assert rows[name].strip(), f"{registry.kind} {name} has no description"
    assert rows["lstm"] == "LSTM cell, equal to torch.nn.LSTMCell. The state is (h, c)."
    assert "nonlinearity='relu'" in rows["rnn_relu"]  # a registered partial says its fix


@pytest.mark.parametrize("registry", [CELLS, MODELS, TASKS], ids=lambda r: r.kind)
def test_every_registered_name_has_a_one_line_summary(registry):
    """`rnnzoo list` shows a docstring's first line: it must be the whole first paragraph."""
    for name in registry:
        obj = registry.get(name)
        doc = inspect.getdoc(getattr(obj, "func", obj)) or ""
        lines = doc.splitlines()
        assert lines and lines[0].strip(), f"{registry.kind} {name}: no docstring"
        assert len(lines) == 1 or not lines[1].strip(), (
            f"{registry.kind} {name}: the summary runs on: {lines[:2]}"
        )


@pytest.mark.parametrize("name", ["adding_lstm", "adding_lstm.yaml"])
def test_config_show_prints_the_shipped_file_byte_for_byte(name: str, tmp_path: Path):
    with contextlib.chdir(tmp_path):
        result = runner.invoke(app, ["config", "show", name])
    assert result.exit_code == 0, result.output
    assert result.stdout_bytes == (ROOT / "configs" / "adding_lstm.yaml").read_bytes()


def test_config_show_of_an_unknown_name_exits_2_with_close_names(tmp_path: Path):
    with unchanged(tmp_path), contextlib.chdir(tmp_path):
        result = runner.invoke(app, ["config", "show", "imdb_lstn"])
    message = assert_user_error(result, "imdb_lstn", "imdb_lstm")
    assert "rnnzoo list" in result.output, message


def run_folders(root: Path) -> list[Path]:
    return sorted((root / "runs").glob("*/config.yaml"))


@pytest.mark.parametrize("name", ["adding_lstm", "adding_lstm.yaml"])
def test_train_a_shipped_config_by_name_from_an_empty_folder(name: str, tmp_path: Path):
    code, out = invoke("train", "--config", name, *TINY_SETS, cwd=tmp_path)
    assert code == 0, out
    [config] = run_folders(tmp_path)
    assert config.parent.name.startswith("adding_lstm-")
    saved = yaml.safe_load(config.read_text())
    assert saved["task"] == "adding" and saved["model"]["cell"] == "lstm"


def test_a_file_of_that_path_comes_before_the_shipped_config(tmp_path: Path):
    mine = yaml.safe_load((ROOT / "configs" / "adding_lstm.yaml").read_text())
    mine["model"]["cell"] = "gru"
    (tmp_path / "adding_lstm.yaml").write_text(yaml.safe_dump(mine))
    code, out = invoke("train", "-c", "adding_lstm.yaml", *TINY_SETS, cwd=tmp_path)
    assert code == 0, out
    [config] = run_folders(tmp_path)
    assert yaml.safe_load(config.read_text())["model"]["cell"] == "gru"


def test_an_unknown_config_name_is_one_error_with_close_names(tmp_path: Path):
    with unchanged(tmp_path), contextlib.chdir(tmp_path):
        result = runner.invoke(app, ["train", "-c", "adding_lstn", *TINY_SETS])
    message = assert_user_error(result, "adding_lstn", "adding_lstm")
    assert "config file not found" in message and "rnnzoo list" in result.output


def test_train_by_name_in_a_subprocess_from_another_folder(tmp_path: Path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "rnnzoo", "train", "-c", "adding_lstm", *TINY_SETS]
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert len(run_folders(tmp_path)) == 1


def test_compare_takes_shipped_names(tmp_path: Path):
    with contextlib.chdir(tmp_path):
        [source] = read_sources([Path("adding_lstm")], TINY, seeds=1)
    assert source.path == ROOT / "configs" / "adding_lstm.yaml" and source.label == "adding_lstm"
    with unchanged(tmp_path), contextlib.chdir(tmp_path):
        result = runner.invoke(app, ["compare", "adding_lstm", "adding_grv", "--out", "cmp"])
    assert_user_error(result, "adding_grv", "adding_gru")


# -- a wheel, installed away from the source tree --------------------------------------


@pytest.mark.slow
def test_a_wheel_install_trains_a_shipped_config_by_name(tmp_path: Path):
    """Build a wheel, install it into a fresh venv that sees the dependencies (the
    current environment's site-packages, through a .pth) but not the source tree."""
    wheels, env_dir, work = tmp_path / "wheels", tmp_path / "venv", tmp_path / "work"
    work.mkdir()
    build = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
             "--no-index", "-q", "-w", str(wheels), str(ROOT)]  # fmt: skip
    subprocess.run(build, check=True, capture_output=True, cwd=tmp_path)
    [wheel] = wheels.glob("rnnzoo-*.whl")
    venv.create(env_dir, with_pip=False)
    python = env_dir / "bin" / "python"
    site = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip
    deps = [p for p in sys.path if p.endswith("site-packages")]
    (Path(site) / "deps.pth").write_text("\n".join(deps) + "\n")
    install = [python, "-m", "pip", "install", "--no-deps", "--no-index", "-q", str(wheel)]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    subprocess.run(install, check=True, capture_output=True, env=env, cwd=tmp_path)

    def run(*args: str) -> str:
        done = subprocess.run(
            [str(env_dir / "bin" / "rnnzoo"), *args], cwd=work, env=env,
            capture_output=True, text=True,
        )  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    where = subprocess.run(
        [python, "-c", "import rnnzoo; print(rnnzoo.__file__)"],
        cwd=work, env=env, check=True, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip
    assert Path(where).is_relative_to(site) and not Path(where).is_relative_to(ROOT), where
    assert "adding_lstm" in run("list")
    assert run("config", "show", "adding_lstm") == (ROOT / "configs/adding_lstm.yaml").read_text()
    run("train", "--config", "adding_lstm", *TINY_SETS)
    assert len(run_folders(work)) == 1

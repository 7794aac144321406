"""The command line, through typer's CliRunner."""

from __future__ import annotations

from typer.testing import CliRunner

import rnnzoo
from rnnzoo.cli import app

runner = CliRunner()


def test_version():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0, result.output
    assert rnnzoo.__version__ in result.output


def test_list_shows_every_cell():
    result = runner.invoke(app, ["list"])
    assert result.exit_code == 0, result.output
    for name in rnnzoo.list_cells():
        assert name in result.output

"""The ``rnnzoo`` command line. Commands stay thin: each calls a library function."""

from __future__ import annotations

from typing import Annotated

import typer

import rnnzoo

app = typer.Typer(
    name="rnnzoo",
    help="A model zoo of recurrent networks: hand-written cells proven equal to torch.nn.",
    no_args_is_help=True,
    add_completion=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"rnnzoo {rnnzoo.__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    """rnnzoo: recurrent networks written plainly, trained from YAML configs."""


@app.command("list")
def list_command() -> None:
    """List the registered cells."""
    typer.echo("cells:")
    for name in rnnzoo.list_cells():
        typer.echo(f"  {name}")


def main() -> None:
    app()

"""The ``rnnzoo`` command's entry point: Ctrl-C at any moment exits 130 in one line.

Importing the CLI (typer, then torch inside each command) takes a moment; a Ctrl-C
during it would otherwise end in a traceback of whatever was being imported. This module
imports nothing heavy itself, so it is in place before any of that starts.
"""

from __future__ import annotations

import sys


def main() -> None:
    try:
        from rnnzoo.cli import main as cli_main

        cli_main()
    except KeyboardInterrupt:
        sys.stderr.write("interrupted: stopped at once; what was saved before stays as it was\n")
        sys.exit(130)

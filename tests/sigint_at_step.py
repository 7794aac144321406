"""``python -m rnnzoo`` that stops after one training step until the test sends Ctrl-C.

Usage: ``python tests/sigint_at_step.py STEP ARGS...`` runs ``rnnzoo ARGS...``. After
optimiser step STEP (counted over the whole run, as ``progress.step``) it prints
``PAUSED`` on stdout and waits for a line on stdin. The test then sends a real SIGINT
from outside, as a terminal does on Ctrl-C, and after it the line: the trainer's handler
has run before training goes on, so the run stops after step STEP on any machine, fast
or slow, with no timing luck. Nothing in rnnzoo is changed: the pause is an
``after_step`` hook that this script adds to every ``Trainer``.
"""

from __future__ import annotations

import runpy
import sys
from typing import Any

from rnnzoo.trainer import Trainer

MARKER = "PAUSED"


def pause_after(step: int) -> None:
    """Make every ``Trainer`` pause after step ``step`` until a line arrives on stdin."""
    init = Trainer.__init__

    def pause(trainer: Trainer) -> None:
        if trainer.progress.step == step:
            print(MARKER, flush=True)
            sys.stdin.readline()  # a SIGINT here runs the trainer's handler, then reads on

    def init_with_pause(self: Trainer, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        self.after_step.append(pause)

    Trainer.__init__ = init_with_pause  # type: ignore[method-assign]


if __name__ == "__main__":
    pause_after(int(sys.argv[1]))
    sys.argv = ["rnnzoo", *sys.argv[2:]]
    runpy.run_module("rnnzoo", run_name="__main__", alter_sys=True)

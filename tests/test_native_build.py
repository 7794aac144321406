"""The compiled loop is built where it should be, and its absence costs one line.

These run whether or not the extension is built (tests/test_native.py needs it)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from rnnzoo import native

LAYERS = (
    "import torch, rnnzoo\n"
    "a = rnnzoo.LSTM(3, 4); b = rnnzoo.GRU(3, 4)\n"
    "print(a.impl, b.impl)\n"
    "print(tuple(a(torch.randn(5, 2, 3))[0].shape))\n"
)


def _run(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=True,
    )


@pytest.mark.skipif(not os.environ.get("CI"), reason="CI builds it with make install")
def test_ci_builds_and_loads_the_compiled_loop():
    assert native.unavailable() is None


@pytest.mark.parametrize(
    ("prelude", "env", "reason"),
    [
        ("", {"RNNZOO_NATIVE": "0"}, "RNNZOO_NATIVE=0"),
        # a build for another torch, or none at all: the import itself fails
        ("import sys; sys.modules['rnnzoo._scan'] = None\n", {}, "import of rnnzoo._scan halted"),
    ],
)
def test_without_the_extension_layers_fall_back_with_one_line(prelude, env, reason):
    done = _run(prelude + LAYERS, **env)
    assert done.stdout.splitlines() == ["fused fused", "(5, 2, 4)"]
    notice = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(notice) == 1, notice
    assert notice[0].startswith("rnnzoo: compiled time loop unavailable (")
    assert reason in notice[0]


def test_make_install_says_whether_it_loads():
    done = _run("from rnnzoo import native; native.main()")
    expected = "ready" if native.unavailable() is None else "unavailable"
    assert f"compiled time loop {expected}" in done.stdout

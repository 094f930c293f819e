"""The ``sushitui`` command run inside the test process (issue 15 §6: the quick run).

Starting ``python -m sushitui`` costs about a second of CPU on this machine (the
imports), and a few hundred tests did it only to read a command's output and exit
code. ``run_cli`` calls ``sushitui.cli.main`` instead and hands back what
``subprocess.run(..., capture_output=True)`` would: ``returncode``, ``stdout``,
``stderr``. Like a process with pipes: stdout is UTF-8 with strict errors (a stray
surrogate fails as it would in the real process), stderr UTF-8 with backslashreplace,
stdin is empty and not a terminal, ``env`` replaces the environment for the call.

Tests about the process itself (signals, kill -9, locks between processes, a detached
job outliving its parent, what the interpreter does at exit) keep real subprocesses.
Not a test module.
"""

from __future__ import annotations

import io
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class CliResult:
    """The fields of ``subprocess.CompletedProcess`` that the tests read."""

    args: list[str]
    returncode: int
    stdout: "str | bytes"
    stderr: "str | bytes"
    env: dict[str, str] = field(default_factory=dict, repr=False)


class _Pipe(io.TextIOWrapper):
    """A text stream over bytes that keeps them after the command is done (the
    command may close or reconfigure ``sys.stdout``)."""

    def __init__(self, errors: str) -> None:
        self.raw_bytes = io.BytesIO()
        super().__init__(self.raw_bytes, encoding="utf-8", errors=errors, write_through=True)

    def isatty(self) -> bool:
        return False

    def close(self) -> None:  # keep the buffer readable
        self.flush()

    def value(self) -> bytes:
        self.flush()
        return self.raw_bytes.getvalue()


def run_cli(*argv: "str | Path", env: "dict[str, str] | None" = None, text: bool = True, db=None) -> CliResult:
    """``sushitui [--db DB] ARGV…`` in this process; ``env`` (a whole environment, as
    for ``subprocess.run``) replaces ``os.environ`` during the call."""
    from sushitui.cli import main

    args = [str(a) for a in argv]
    if db is not None:
        args = ["--db", str(db), *args]
    saved_env = dict(os.environ)
    saved = sys.stdin, sys.stdout, sys.stderr
    out, err = _Pipe("strict"), _Pipe("backslashreplace")
    try:
        if env is not None:
            os.environ.clear()
            os.environ.update(env)
        sys.stdin, sys.stdout, sys.stderr = io.StringIO(""), out, err
        code = main(args)
    finally:
        sys.stdin, sys.stdout, sys.stderr = saved
        if env is not None:
            os.environ.clear()
            os.environ.update(saved_env)
    stdout, stderr = out.value(), err.value()
    if text:  # decoded as subprocess.run(text=True) does: universal newlines
        return CliResult(args, code, _text(stdout), _text(stderr))
    return CliResult(args, code, stdout, stderr)


def _text(data: bytes) -> str:
    return data.decode("utf-8", "replace").replace("\r\n", "\n").replace("\r", "\n")

"""Run the adhunt CLI in-process for tests (typer's CliRunner), with the output made searchable."""

from __future__ import annotations

import time
from typing import Any

from typer.testing import CliRunner


def invoke(args: list[Any]) -> Any:
    """``adhunt ARGS``; the result also has ``text`` (whitespace collapsed: rich wraps long log
    lines), ``compact`` (no whitespace at all: rich wraps even inside a path) and ``seconds``."""
    from adhunt.jobs.cli import app

    t0 = time.perf_counter()
    result = CliRunner().invoke(app, [str(a) for a in args])
    result.seconds = time.perf_counter() - t0
    result.text = " ".join(result.output.split())
    result.compact = "".join(result.output.split())
    return result

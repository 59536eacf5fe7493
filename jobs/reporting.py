"""Logging and progress for the command line. Library code logs; only jobs show progress bars."""

from __future__ import annotations

import logging

from rich.console import Console
from rich.logging import RichHandler
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

console = Console(stderr=True)


def setup_logging(verbosity: int = 0) -> None:
    """INFO by default, DEBUG with ``-v``; WARNING with ``verbosity < 0`` (``--quiet``)."""
    level = logging.DEBUG if verbosity > 0 else logging.WARNING if verbosity < 0 else logging.INFO
    logging.basicConfig(
        level=level,
        format="%(message)s",
        datefmt="[%X]",
        handlers=[RichHandler(console=console, show_path=False, rich_tracebacks=True)],
        force=True,
    )
    # Third-party chatter stays at WARNING unless asked for.
    for noisy in ("distributed", "numba", "matplotlib", "fsspec", "asyncio"):
        logging.getLogger(noisy).setLevel(logging.DEBUG if verbosity > 1 else logging.WARNING)


def progress_bar(transient: bool = False) -> Progress:
    """A rich progress bar for long loops (generation, chunks, epochs)."""
    return Progress(
        TextColumn("[bold blue]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=transient,
        disable=not console.is_terminal,
    )

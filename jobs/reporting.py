"""Logging and progress for the command line. Library code logs; only jobs show progress bars.

Every bar shows a rate: events/s where a step counts events (a task added with
``unit="events"``, or described as "... events"), else the task's ``unit`` per second
(``items/s`` by default). Bars are drawn only on a terminal and not with ``--quiet``
(:func:`show_progress`): a batch log holds warnings and errors, not redraws.
"""

from __future__ import annotations

import logging

from rich.console import Console
from rich.logging import RichHandler
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

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


def show_progress() -> bool:
    """Whether to draw progress bars: on a terminal, and not with ``--quiet`` (the adhunt
    loggers above INFO)."""
    return console.is_terminal and logging.getLogger("adhunt").isEnabledFor(logging.INFO)


def task_unit(task: Task) -> str:
    """What a task counts: its ``unit`` field, else ``events`` when its description says so,
    else ``items``."""
    unit = task.fields.get("unit")
    if unit:
        return str(unit)
    return "events" if str(task.description).rstrip().endswith("events") else "items"


def format_rate(per_second: float | None, unit: str) -> str:
    """``12.3k events/s``: the rate with an SI prefix (``-`` before the first measurement)."""
    if per_second is None:
        return f"- {unit}/s"
    value = float(per_second)
    for prefix in ("", "k", "M", "G"):
        if abs(value) < 1000 or prefix == "G":
            break
        value /= 1000
    digits = 0 if abs(value) >= 100 or (prefix == "" and abs(value) >= 10) else 1
    return f"{value:.{digits}f}{prefix} {unit}/s"


class RateColumn(ProgressColumn):
    """The task's rate in its own unit (see :func:`task_unit`), averaged over the whole task
    once it has finished."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        if task.finished and task.elapsed:
            speed = task.completed / task.elapsed
        return Text(format_rate(speed, task_unit(task)), style="progress.data.speed")


def progress_bar(transient: bool = False, disable: bool | None = None) -> Progress:
    """A rich progress bar for long loops (generation, chunks, epochs, windows), with a rate
    column; ``disable`` None: off unless :func:`show_progress`."""
    return Progress(
        TextColumn("[bold blue]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        RateColumn(),
        console=console,
        transient=transient,
        disable=not show_progress() if disable is None else disable,
    )

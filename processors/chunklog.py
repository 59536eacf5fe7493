"""Log lines that name the chunk they come from.

While a processor works on a chunk (:func:`chunk_logging`), every record of an ``adhunt`` logger
made in that thread, in whatever worker process, starts with ``[dataset file.root:start-stop]``
and carries the label as ``record.chunk``: a worker's log (dask, batch jobs) then says which
dataset and file a warning is about, without each call site passing it along. Errors raised out
of a chunk name it in their message (the processors' ``where``).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from contextvars import ContextVar
from pathlib import Path
from typing import Any

_logger = logging.getLogger(__name__)

__all__ = ["chunk_label", "chunk_logging", "current_chunk", "events_logging"]

_CHUNK: ContextVar[str | None] = ContextVar("adhunt_chunk", default=None)
_INSTALLED: list[object] = []


def chunk_label(dataset: str, filename: str, start: int, stop: int) -> str:
    """``qcd qcd_0001.root:0-5000``: dataset, file name (no folder) and entry range."""
    name = filename.rsplit("/", 1)[-1] if "://" in filename else Path(filename).name
    return f"{dataset} {name}:{start}-{stop}"


def current_chunk() -> str | None:
    """The label of the chunk this thread is processing, if any."""
    return _CHUNK.get()


def _install() -> None:
    """Wrap the log record factory once per process (it stays: it only acts inside a chunk)."""
    if _INSTALLED:
        return
    previous = logging.getLogRecordFactory()

    def factory(*args: object, **kwargs: object) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        label = _CHUNK.get()
        if label is not None and record.name.startswith("adhunt"):
            record.chunk = label
            if isinstance(record.msg, str):
                prefix = label.replace("%", "%%") if record.args else label
                record.msg = f"[{prefix}] {record.msg}"
        return record

    logging.setLogRecordFactory(factory)
    _INSTALLED.append(factory)


@contextlib.contextmanager
def chunk_logging(dataset: str, filename: str, start: int, stop: int) -> Iterator[str]:
    """Within the block, adhunt log records name the chunk (see the module doc)."""
    _install()
    label = chunk_label(dataset, filename, start, stop)
    token = _CHUNK.set(label)
    try:
        yield label
    finally:
        _CHUNK.reset(token)


@contextlib.contextmanager
def events_logging(events: Any) -> Iterator[str]:
    """:func:`chunk_logging` for a NanoEvents chunk (its coffea metadata names the chunk), with
    one DEBUG line saying how many events it holds: what every processor's ``process`` does."""
    meta = events.metadata
    with chunk_logging(
        meta["dataset"], meta["filename"], int(meta["entrystart"]), int(meta["entrystop"])
    ) as label:
        _logger.debug("processing %d event(s)", len(events))
        yield label

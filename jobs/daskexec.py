"""Dask pieces of :mod:`adhunt.jobs.executors`, imported only when dask runs the chunks.

:class:`ProgressDaskExecutor` gives ``--executor dask`` the progress bar of our iterative and
futures executors (:mod:`adhunt.jobs.progressexec`, events/s); :class:`QuietTaskErrors` keeps a failed task's traceback out of
the LocalCluster workers' log (the driver reports the error in one line).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any

from coffea import processor
from distributed import WorkerPlugin

__all__ = ["ProgressDaskExecutor", "QuietTaskErrors"]


class _DropTaskErrors(logging.Filter):
    """Drops a worker's report of a failed task (and of the tasks cancelled after it)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = str(record.msg)
        return not (message.startswith("Compute Failed") or "ended with CancelledError" in message)


class QuietTaskErrors(WorkerPlugin):
    """Keeps failed tasks' tracebacks out of a worker's log (``distributed.worker`` logs each
    with its full traceback): the driver gets the exception and reports it in one line."""

    def setup(self, worker: Any) -> None:
        for name in ("distributed.worker", "distributed.worker.state_machine"):
            log = logging.getLogger(name)
            if not any(isinstance(f, _DropTaskErrors) for f in log.filters):
                log.addFilter(_DropTaskErrors())


@dataclass
class ProgressDaskExecutor(processor.DaskExecutor):
    """coffea's DaskExecutor with the progress bar of our iterative and futures executors
    (:class:`adhunt.jobs.progressexec.ChunkBar`: events/s over chunks, files in preprocessing).

    coffea's own dask bar (``status=True``) prints the worker's traceback when a task fails;
    this one counts the finished chunk tasks, and stays silent on failure (the caller reports
    the error). ``show_progress=False``, ``--quiet`` or no terminal: no bar.
    """

    show_progress: bool = True

    def __call__(self, items: Any, function: Any, accumulator: Any) -> Any:
        from adhunt.jobs.reporting import show_progress

        if not self.show_progress or not show_progress() or len(items) == 0 or self.use_dataframes:
            return super().__call__(items, function, accumulator)
        client = self.client
        watcher = _TaskWatcher(client, items, self.desc, self.unit)
        self.client = watcher
        try:
            return super().__call__(items, function, accumulator)
        finally:
            self.client = client
            watcher.stop()


class _TaskWatcher:
    """Stands in for the client during one executor call: passes everything through, and
    draws the bar over the tasks mapped on ``items`` (the chunks; the tree reduction comes
    after them), each counting its chunk's events. Finished futures are dropped at once, so
    that holding them never keeps a chunk's result in the cluster's memory."""

    def __init__(self, client: Any, items: Any, desc: str, unit: str) -> None:
        from adhunt.jobs.progressexec import ChunkBar

        self._client = client
        self._items = list(items)
        self._total = len(self._items)
        self._bar = ChunkBar(self._items, desc, unit)
        self._pending: list[tuple[Any, Any]] = []
        self._mapped = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._draw, daemon=True)
        self._thread.start()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def map(self, *args: Any, **kwargs: Any) -> Any:
        futures = self._client.map(*args, **kwargs)
        with self._lock:
            if self._mapped < self._total:
                items = list(args[1]) if len(args) > 1 else [None] * len(futures)
                # coffea maps (item, processor future) pairs when it ships a heavy input
                items = [i[0] if isinstance(i, tuple) else i for i in items]
                self._pending.extend(zip(futures, items, strict=False))
                self._mapped += len(futures)
        return futures

    def _draw(self) -> None:
        with self._bar as bar:
            stopping = False
            while True:
                with self._lock:
                    state = [(f, i, f.done()) for f, i in self._pending]
                    finished = [i for _, i, is_done in state if is_done]
                    self._pending = [(f, i) for f, i, is_done in state if not is_done]
                    done = self._mapped - len(self._pending)
                for item in finished:
                    bar.count(item)
                if done >= self._total or stopping:
                    break
                stopping = self._stop.wait(0.2)  # then one last count

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self._pending = []

"""Dask pieces of :mod:`adhunt.jobs.executors`, imported only when dask runs the chunks.

:class:`ProgressDaskExecutor` gives ``--executor dask`` the progress bar coffea draws for its
iterative and futures executors; :class:`QuietTaskErrors` keeps a failed task's traceback out of
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
    """coffea's DaskExecutor with the progress bar of its iterative and futures executors.

    coffea's own dask bar (``status=True``) prints the worker's traceback when a task fails;
    this one counts the finished chunk tasks, and stays silent on failure (the caller reports
    the error). ``show_progress=False``: no bar.
    """

    show_progress: bool = True

    def __call__(self, items: Any, function: Any, accumulator: Any) -> Any:
        if not self.show_progress or len(items) == 0 or self.use_dataframes:
            return super().__call__(items, function, accumulator)
        client = self.client
        watcher = _TaskWatcher(client, len(items), self.desc, self.unit)
        self.client = watcher
        try:
            return super().__call__(items, function, accumulator)
        finally:
            self.client = client
            watcher.stop()


class _TaskWatcher:
    """Stands in for the client during one executor call: passes everything through, and
    draws coffea's progress bar over the first ``total`` tasks mapped (the chunks; the tree
    reduction comes after them). Finished futures are dropped at once, so that holding them
    never keeps a chunk's result in the cluster's memory."""

    def __init__(self, client: Any, total: int, desc: str, unit: str) -> None:
        self._client = client
        self._total = total
        self._pending: list[Any] = []
        self._mapped = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._draw, args=(desc, unit), daemon=True)
        self._thread.start()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def map(self, *args: Any, **kwargs: Any) -> Any:
        futures = self._client.map(*args, **kwargs)
        with self._lock:
            if self._mapped < self._total:
                self._pending.extend(futures)
                self._mapped += len(futures)
        return futures

    def _draw(self, desc: str, unit: str) -> None:
        from coffea.util import rich_bar

        with rich_bar() as bar:
            task = bar.add_task(desc, total=self._total, unit=unit)
            stopping = False
            while True:
                with self._lock:
                    self._pending = [f for f in self._pending if not f.done()]
                    done = self._mapped - len(self._pending)
                bar.update(task, completed=done, refresh=True)
                if done >= self._total or stopping:
                    break
                stopping = self._stop.wait(0.2)  # then one last count

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self._pending = []

"""coffea's iterative and futures executors with our progress bar (events/s), imported only when
chunks run.

coffea draws its own bar (``coffea.util.rich_bar``) on stdout, counting chunks (``chunk/s``),
whatever ``status`` says, and prints it even when stdout is not a terminal. Here coffea's console
is kept quiet during the call and :class:`ChunkBar` draws :func:`adhunt.jobs.reporting.progress_bar` instead,
counting events when the items are chunks (``WorkItem``: entry ranges) and items otherwise
(preprocessing: files), and only where :func:`~adhunt.jobs.reporting.show_progress` allows.
The executors' own logic is untouched: the iterative one gets a function that counts each item
when it returns; the futures one gets a pool whose futures count their item when done (the
same pool coffea would use). The dask executor counts the futures it maps
(:mod:`adhunt.jobs.daskexec`).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from coffea import processor

from adhunt.jobs.reporting import progress_bar, show_progress

__all__ = ["ChunkBar", "ProgressFuturesExecutor", "ProgressIterativeExecutor", "item_events"]


def item_events(item: Any) -> int | None:
    """Events in a chunk (``WorkItem``), None for anything else (a file's metadata)."""
    start, stop = getattr(item, "entrystart", None), getattr(item, "entrystop", None)
    if start is None or stop is None:
        return None
    return int(stop) - int(start)


class ChunkBar:
    """One bar over the items of an executor call: events when all items are chunks, else
    items in ``unit``. ``count(item)`` advances it (thread-safe: rich locks its tasks)."""

    def __init__(self, items: Iterable[Any], desc: str, unit: str) -> None:
        items = list(items)
        sizes = [item_events(i) for i in items]
        self.by_events = bool(items) and all(s is not None for s in sizes)
        total = sum(sizes) if self.by_events else len(items)
        self._bar = progress_bar()
        self._task = self._bar.add_task(
            desc, total=total, unit="events" if self.by_events else unit
        )

    def size(self, item: Any) -> int:
        return (item_events(item) or 0) if self.by_events else 1

    def count(self, item: Any) -> None:
        self._bar.advance(self._task, self.size(item))

    def __enter__(self) -> ChunkBar:
        self._bar.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._bar.stop()


@contextlib.contextmanager
def _coffea_bars_off() -> Any:
    """coffea's iterative and futures executors draw their bar whatever ``status`` says (the
    iterative one passes it as a task field, the futures ``_watcher`` ignores it), on coffea's
    own stdout console: keep that console quiet during the call."""
    from coffea.util import coffea_console

    quiet = coffea_console.quiet
    coffea_console.quiet = True
    try:
        yield
    finally:
        coffea_console.quiet = quiet


@dataclass
class ProgressIterativeExecutor(processor.IterativeExecutor):
    """coffea's IterativeExecutor with :class:`ChunkBar` (``status`` stays False);
    ``show_progress=False``: no bar."""

    show_progress: bool = True

    def __call__(self, items: Any, function: Callable, accumulator: Any) -> Any:
        if len(items) == 0 or not self.show_progress or not show_progress():
            with _coffea_bars_off():
                return super().__call__(items, function, accumulator)
        with _coffea_bars_off(), ChunkBar(items, self.desc, self.unit) as bar:

            def counted(item: Any) -> Any:
                out = function(item)
                bar.count(item)
                return out

            return super().__call__(items, counted, accumulator)


class _CountingPool(concurrent.futures.Executor):
    """Passes submissions to ``pool``; a chunk's future advances the bar when it is done."""

    def __init__(self, pool: concurrent.futures.Executor, bar: ChunkBar, items: list) -> None:
        self._pool = pool
        self._bar = bar
        self._items = {id(i) for i in items}

    def submit(self, fn: Callable, /, *args: Any, **kwargs: Any) -> concurrent.futures.Future:
        future = self._pool.submit(fn, *args, **kwargs)
        if args and id(args[0]) in self._items:  # not coffea's merge tasks
            item = args[0]
            future.add_done_callback(lambda _f: self._bar.count(item))
        return future

    def shutdown(self, wait: bool = True, **kwargs: Any) -> None:
        """The pool belongs to whoever made it."""


@dataclass
class ProgressFuturesExecutor(processor.FuturesExecutor):
    """coffea's FuturesExecutor with :class:`ChunkBar` instead of coffea's own bar (which it
    draws even with ``status=False``); ``show_progress=False``: no bar at all."""

    show_progress: bool = True

    def __call__(self, items: Any, function: Callable, accumulator: Any) -> Any:
        if len(items) == 0 or not self.show_progress or not show_progress():
            with _coffea_bars_off():
                return super().__call__(items, function, accumulator)
        with contextlib.ExitStack() as stack:
            stack.enter_context(_coffea_bars_off())
            pool = self.pool
            if not isinstance(pool, concurrent.futures.Executor):
                pool = stack.enter_context(pool(max_workers=self.workers))
            bar = stack.enter_context(ChunkBar(items, self.desc, self.unit))
            counting = self.copy(pool=_CountingPool(pool, bar, list(items)))
            return processor.FuturesExecutor.__call__(counting, items, function, accumulator)

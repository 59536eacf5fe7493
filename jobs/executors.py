"""The one place that turns executor options into a coffea ``processor.Runner``.

``iterative`` runs chunks in this process; ``futures`` in a local process pool; ``dask`` on the
cluster of ``cluster`` (:class:`adhunt.clusters.ClusterConfig`): a ``distributed.LocalCluster``
it starts (``workers`` single-threaded worker processes; the default), a running ``dask
scheduler`` + ``dask worker`` cluster (``tcp://`` address, also given as ``scheduler``), batch
jobs through dask-jobqueue or a dask-gateway cluster. Every kind hands a ``distributed.Client`` to
the same executor code. Use it as a context manager so clusters and clients are always closed::

    with coffea_runner(ExecutorConfig(executor="dask", workers=2), schema=...) as runner:
        output = runner(fileset, processor_instance, treename="Events")

Retries are off: our inputs are local files, so a failure is deterministic and retrying only
delays (and triplicates) the error message. Every executor gets the same chunking, so outputs
are identical whichever runs them.

Progress: every executor draws :func:`adhunt.jobs.reporting.progress_bar` with events/s over
the chunks (:mod:`adhunt.jobs.progressexec`; dask: :class:`ProgressDaskExecutor`, as coffea's own
dask bar would print the worker's traceback on a failure, before our one-line error); coffea's
own bars stay off (they count chunks and print to stdout even when it is not a terminal). A failing task's traceback is also kept out of the
LocalCluster workers' log unless debugging (``-v``): the driver reports the error, once.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from adhunt.clusters import ClusterConfig

logger = logging.getLogger(__name__)

EXECUTORS = ("iterative", "futures", "dask")

#: ``uproot.open`` options of every chunk. uproot keeps each array a file object reads in its
#: ``array_cache`` (up to 100 MB), and a file object sits in reference cycles (file, directory,
#: keys): after its chunk it waits for Python's full garbage collection, which may come hundreds
#: of chunks later, so every chunk's candidates (up to 100 MB) piled up in the worker (measured:
#: +14% peak RSS for a 4x larger fileset at 10k and 50k chunks). NanoEvents keeps what a chunk
#: reads itself; nothing reads an array twice.
UPROOT_OPTIONS = {"array_cache": None}


@dataclass(frozen=True)
class ExecutorConfig:
    """How chunks are distributed. ``scheduler`` (dask only): e.g. ``tcp://127.0.0.1:8786``, the
    same as ``cluster=ClusterConfig(kind=address)`` (either one sets the other)."""

    executor: str = "iterative"
    workers: int = 1
    chunksize: int = 100_000
    scheduler: str | None = None
    skip_bad_files: bool = False
    cluster: ClusterConfig | None = None

    def __post_init__(self) -> None:
        if self.executor not in EXECUTORS:
            raise ValueError(f"executor must be one of {EXECUTORS}, got {self.executor!r}")
        if self.workers < 1:
            raise ValueError(f"workers must be >= 1, got {self.workers}")
        if self.chunksize < 1:
            raise ValueError(f"chunksize must be >= 1, got {self.chunksize}")
        if self.scheduler is not None and self.executor != "dask":
            raise ValueError("a scheduler address only makes sense with executor='dask'")
        if self.cluster is not None and self.executor != "dask":
            raise ValueError("a cluster only makes sense with executor='dask'")
        if self.scheduler is not None and self.cluster is None:
            object.__setattr__(self, "cluster", ClusterConfig(kind=self.scheduler))
        elif self.cluster is not None and self.cluster.is_address:
            if self.scheduler not in (None, self.cluster.kind):
                raise ValueError(
                    f"two scheduler addresses: --scheduler {self.scheduler} and --cluster "
                    f"{self.cluster.kind}"
                )
            object.__setattr__(self, "scheduler", self.cluster.kind)
        elif self.cluster is not None and self.scheduler is not None:
            raise ValueError(
                f"--scheduler {self.scheduler} and --cluster {self.cluster.kind} contradict"
            )

    @property
    def remote(self) -> bool:
        """Workers run elsewhere (scheduler, batch jobs, gateway): do not size threads by this
        machine's cores."""
        return self.executor == "dask" and self.cluster is not None and self.cluster.kind != "local"


@contextlib.contextmanager
def coffea_runner(
    config: ExecutorConfig,
    schema: type | None = None,
    skip_exceptions: tuple[type[BaseException], ...] = (),
    show_progress: bool = True,
) -> Iterator:
    """A ready ``coffea.processor.Runner``; closes whatever cluster/client it opened on exit.

    ``show_progress``: a bar per executor call (events/s over chunks; see
    :mod:`adhunt.jobs.progressexec`), drawn only on a terminal and not with ``--quiet``; False
    when the caller draws its own.

    ``schema`` is the NanoEvents schema class (default NanoAODSchema). With ``skip_bad_files``
    coffea skips chunks/files raising ``OSError`` or any of ``skip_exceptions`` instead of failing;
    callers must then find out what was skipped (coffea only warns, on the worker).
    """
    from coffea.nanoevents import NanoAODSchema

    skip: bool | tuple[type[BaseException], ...] = False
    if config.skip_bad_files:
        skip = (OSError, *skip_exceptions)

    with contextlib.ExitStack() as stack:
        from adhunt.jobs.progressexec import ProgressFuturesExecutor, ProgressIterativeExecutor

        if config.executor == "iterative":
            executor = ProgressIterativeExecutor(
                status=False, retries=0, show_progress=show_progress
            )
        elif config.executor == "futures":
            executor = ProgressFuturesExecutor(
                workers=config.workers, status=False, retries=0, show_progress=show_progress
            )
        else:
            from adhunt.jobs.daskexec import ProgressDaskExecutor

            executor = ProgressDaskExecutor(
                client=stack.enter_context(_dask_client(config)), status=False, retries=0,
                show_progress=show_progress,
            )  # fmt: skip
        yield _runner_class()(
            executor=executor,
            chunksize=config.chunksize,
            schema=schema or NanoAODSchema,
            skipbadfiles=skip,
            metadata_cache={},  # a fresh cache: files rewritten in place must not reuse stale entries
        )


@functools.cache
def _runner_class() -> type:
    """coffea's Runner opening ROOT files with :data:`UPROOT_OPTIONS` (callers' own
    ``uproot_options`` win). Built on first use: importing this module does not import coffea."""
    from coffea import processor

    class Runner(processor.Runner):
        def run(self, fileset: Any, processor_instance: Any, **kwargs: Any) -> Any:
            if self.format == "root":
                kwargs["uproot_options"] = {
                    **UPROOT_OPTIONS,
                    **(kwargs.get("uproot_options") or {}),
                }
            return super().run(fileset, processor_instance, **kwargs)

    return Runner


def _quiet_dask() -> None:
    """distributed sets its loggers to INFO when first imported (after the CLI configured
    logging): keep scheduler/nanny chatter out of the run's log unless debugging (-v)."""
    import distributed  # noqa: F401  (sets its logging up first, so the levels below stick)

    if not logging.getLogger("adhunt").isEnabledFor(logging.DEBUG):
        for name in ("distributed", "dask_jobqueue", "dask_gateway"):
            logging.getLogger(name).setLevel(logging.WARNING)


@contextlib.contextmanager
def _dask_client(config: ExecutorConfig) -> Iterator:
    from distributed import Client

    from adhunt.clusters import open_cluster

    _quiet_dask()
    cluster_config = config.cluster or ClusterConfig()
    if cluster_config.is_address:
        logger.info("connecting to dask scheduler %s", cluster_config.kind)
        _check_reachable(cluster_config.kind)
    with open_cluster(cluster_config, workers=config.workers) as cluster:
        try:
            client = Client(cluster, timeout="20s")
        except OSError as err:
            raise ConnectionError(
                f"cannot reach dask scheduler of cluster {cluster_config.kind}: {err}"
            ) from err
        if cluster_config.kind == "local" and not logging.getLogger("adhunt").isEnabledFor(
            logging.DEBUG
        ):  # our own workers: their task-failure dumps would precede the one-line error
            from adhunt.jobs.daskexec import QuietTaskErrors

            client.register_plugin(QuietTaskErrors(), name="adhunt-quiet-task-errors")
        try:
            yield client
        finally:
            client.close()


def executor_from_options(
    executor: str,
    workers: int | None,
    chunksize: int = 100_000,
    scheduler: str | None = None,
    skip_bad_files: bool = False,
    cluster: str | None = None,
    cluster_config: str | os.PathLike | None = None,
    **overrides: Any,
) -> ExecutorConfig:
    """The :class:`ExecutorConfig` of the command-line options.

    ``cluster`` (a kind or address) overrides the ``kind`` of ``cluster_config`` (a file with a
    ``cluster`` section); ``overrides`` (cores, memory, walltime, queue, maximum_jobs, ...) that
    are not None override the file's values. A cluster or scheduler turns the default iterative
    executor into dask; ``workers`` None means one per core for a local dask cluster, else 1.
    """
    import dataclasses

    from adhunt.clusters import load_cluster_config

    given = {k: v for k, v in overrides.items() if v is not None}
    cfg: ClusterConfig | None = None
    if cluster_config is not None:
        cfg = load_cluster_config(cluster_config)
    if cluster is not None:
        cfg = dataclasses.replace(cfg or ClusterConfig(), kind=cluster)
    if given:
        if cfg is None:
            raise ValueError(
                f"--{next(iter(given)).replace('_', '-')} needs --cluster or --cluster-config"
            )
        cfg = dataclasses.replace(cfg, **given)
    if cfg is not None:
        cfg.check()  # a missing setting fails here, before any input is read
    if (cfg is not None or scheduler is not None) and executor == "iterative":
        executor = "dask"
    if workers is None:
        local = cfg is None or cfg.kind == "local"
        workers = (os.cpu_count() or 1) if executor == "dask" and local and not scheduler else 1
    return ExecutorConfig(executor, workers, chunksize, scheduler, skip_bad_files, cfg)


def print_job_script(config: ExecutorConfig) -> None:
    """``--dry-run``: print the batch script dask-jobqueue would submit; nothing is submitted."""
    from adhunt.clusters import job_script

    if config.cluster is None:
        raise ValueError("--dry-run needs --cluster slurm|htcondor|pbs (or --cluster-config)")
    _quiet_dask()
    print(job_script(config.cluster))


def _check_reachable(address: str, timeout: float = 5.0) -> None:
    """Fail in seconds, not after the client's 20 s timeout, when nothing listens at a tcp address."""
    import socket
    from urllib.parse import urlsplit

    parts = urlsplit(address if "://" in address else f"tcp://{address}")
    if parts.scheme != "tcp" or parts.hostname is None or parts.port is None:
        return  # tls://, inproc:// ...: let distributed handle them
    try:
        socket.create_connection((parts.hostname, parts.port), timeout=timeout).close()
    except OSError as err:
        raise ConnectionError(f"cannot reach dask scheduler {address}: {err}") from err


# --------------------------------------------------------------------------------------------------
# Plain tasks (scan windows, toy batches) over the same executors


class _ParquetTable:
    """A table handed to process-pool tasks as a file: written once, read once per process."""

    def __init__(self, path: str) -> None:
        self.path = path

    def load(self) -> Any:
        return _load_cached(("parquet", self.path), lambda: _read_parquet(self.path))


class _DaskTable:
    """A table scattered to every Dask worker and published under ``name``; read once per
    worker process from the worker's own copy (a lost worker's replacement fetches a replica)."""

    def __init__(self, name: str) -> None:
        self.name = name

    def load(self) -> Any:
        def fetch() -> Any:
            from distributed import get_client

            return get_client().get_dataset(self.name).result()

        return _load_cached(("dask", self.name), fetch)


_TABLE_CACHE: dict[tuple[str, str], Any] = {}


def _load_cached(key: tuple[str, str], load: Any) -> Any:
    if key not in _TABLE_CACHE:
        _TABLE_CACHE.clear()  # one scan at a time per process: keep memory bounded
        _TABLE_CACHE[key] = load()
    return _TABLE_CACHE[key]


def _read_parquet(path: str) -> Any:
    import pandas as pd

    return pd.read_parquet(path)


@dataclass
class TaskPool:
    """``map(fn, items)`` yields ``fn(item)`` in the order of ``items`` (as each completes);
    ``share(table)`` returns what tasks should hold instead of a large table (an object with
    ``load()``, or the table itself in-process). ``parallel`` is the number of tasks that run at
    once, for sizing each task's threads."""

    executor: str
    parallel: int
    map: Any
    share: Any


@contextlib.contextmanager
def task_pool(config: ExecutorConfig) -> Iterator[TaskPool]:
    """A :class:`TaskPool` on the configured executor; closes what it opened on exit."""
    import os
    import tempfile

    if config.executor == "iterative":

        def serial(fn: Any, items: Any) -> Iterator[Any]:
            return (fn(item) for item in items)

        yield TaskPool("iterative", 1, serial, lambda table: table)
        return

    if config.executor == "futures":
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        with (
            tempfile.TemporaryDirectory(prefix="adhunt-tasks-") as tmp,
            ProcessPoolExecutor(
                max_workers=config.workers, mp_context=multiprocessing.get_context("spawn")
            ) as pool,
        ):
            counter = [0]

            def share_file(table: Any) -> _ParquetTable:
                counter[0] += 1
                path = os.path.join(tmp, f"table-{counter[0]}.parquet")
                table.to_parquet(path, index=False)
                return _ParquetTable(path)

            yield TaskPool("futures", config.workers, pool.map, share_file)
        return

    with _dask_client(config) as client:
        import uuid

        published: list[str] = []

        def share_dask(table: Any) -> _DaskTable:
            name = f"adhunt-table-{uuid.uuid4().hex}"
            future = client.scatter(table, broadcast=True, hash=False)
            client.publish_dataset(future, name=name)
            published.append(name)
            return _DaskTable(name)

        def dask_map(fn: Any, items: Any) -> Iterator[Any]:
            futures = client.map(fn, list(items), pure=False)
            return (f.result() for f in futures)

        n = sum(w["nthreads"] for w in client.scheduler_info()["workers"].values())
        try:
            yield TaskPool("dask", max(1, n), dask_map, share_dask)
        finally:
            for name in published:
                with contextlib.suppress(Exception):
                    client.unpublish_dataset(name)

"""Where dask workers come from: one :class:`ClusterConfig` for every kind of cluster.

``kind`` is ``local`` (a ``distributed.LocalCluster`` on this machine), an existing scheduler's
address (``tcp://host:port``), a batch system through dask-jobqueue (``slurm``, ``htcondor``,
``pbs``: each job runs ``processes`` single-threaded dask workers sharing ``cores`` and
``memory``; the cluster adapts between ``minimum_jobs`` and ``maximum_jobs``) or a dask-gateway
(``gateway``: ``gateway_address`` and ``gateway_options``). Whatever the kind,
:func:`open_cluster` yields something a ``distributed.Client`` connects to, so every kind runs the
same executor code. dask-jobqueue and dask-gateway are imported only when used.

The settings live in the ``cluster`` section of a YAML/TOML file (or a whole file of them)::

    cluster:
      kind: slurm
      cores: 8
      memory: 16GB
      walltime: "02:00:00"
      queue: short
      job_extra_directives: ["--constraint=cpu"]
      job_script_prologue: ["source /shared/adhunt/.venv/bin/activate"]
      maximum_jobs: 10
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

__all__ = [
    "CLUSTER_KINDS",
    "JOBQUEUE_KINDS",
    "ClusterConfig",
    "job_script",
    "load_cluster_config",
    "open_cluster",
]

#: dask-jobqueue kinds -> their cluster class in ``dask_jobqueue``.
JOBQUEUE_KINDS = {"slurm": "SLURMCluster", "htcondor": "HTCondorCluster", "pbs": "PBSCluster"}
#: Every kind by name; a ``tcp://`` / ``tls://`` address is also a kind (an existing scheduler).
CLUSTER_KINDS = ("local", *JOBQUEUE_KINDS, "gateway")
ADDRESS_SCHEMES = ("tcp://", "tls://", "inproc://", "ucx://")


@dataclass(frozen=True)
class ClusterConfig:
    """Where the dask workers run and what each batch job asks for.

    ``workers``: local only, worker processes (None: the ``--workers`` value). ``cores``/
    ``memory`` per batch job, split over ``processes`` worker processes (None: one per core).
    ``queue`` is the Slurm partition or PBS queue (HTCondor has none). ``disk`` per job is
    required by HTCondor. ``job_extra_directives`` are added to the job header verbatim (after
    ``#SBATCH``/``#PBS`` or as submit-file lines); ``job_script_prologue`` lines run before the
    worker starts (activate the venv, load modules). ``python`` is the workers' interpreter
    (default: this one, right for a venv on a shared file system; ``python`` inside a container).
    """

    kind: str = "local"
    workers: int | None = None
    # dask-jobqueue
    cores: int | None = None
    memory: str | None = None
    processes: int | None = None
    walltime: str | None = None
    queue: str | None = None
    account: str | None = None
    disk: str | None = None
    job_extra_directives: tuple[str, ...] = ()
    job_script_prologue: tuple[str, ...] = ()
    python: str | None = None
    interface: str | None = None
    local_directory: str | None = None
    log_directory: str | None = None
    minimum_jobs: int = 0
    maximum_jobs: int = 1
    # dask-gateway
    gateway_address: str | None = None
    gateway_proxy_address: str | None = None
    gateway_auth: str | None = None
    gateway_options: dict[str, Any] = field(default_factory=dict)
    gateway_workers: int | None = None

    def __post_init__(self) -> None:
        if not (self.kind in CLUSTER_KINDS or self.is_address):
            raise ValueError(
                f"cluster kind must be one of {', '.join(CLUSTER_KINDS)} or a scheduler address "
                f"tcp://HOST:PORT, got {self.kind!r}"
            )
        for name in ("workers", "cores", "processes", "gateway_workers"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or value < 1):
                raise ValueError(f"cluster {name} must be >= 1, got {value!r}")
        if self.minimum_jobs < 0 or self.maximum_jobs < max(1, self.minimum_jobs):
            raise ValueError(
                "cluster needs 0 <= minimum_jobs <= maximum_jobs and maximum_jobs >= 1, got "
                f"{self.minimum_jobs}..{self.maximum_jobs}"
            )
        if self.cores and self.processes and self.processes > self.cores:
            raise ValueError(f"cluster processes ({self.processes}) > cores ({self.cores})")
        for name in ("job_extra_directives", "job_script_prologue"):
            if isinstance(getattr(self, name), str):
                raise ValueError(f"cluster {name} must be a list of lines, not one string")

    @property
    def is_address(self) -> bool:
        """An existing scheduler (``tcp://host:port``), not a cluster to start."""
        return self.kind.startswith(ADDRESS_SCHEMES)

    @property
    def is_jobqueue(self) -> bool:
        return self.kind in JOBQUEUE_KINDS

    def check(self) -> None:
        """Raise ``ValueError`` naming the missing setting before anything is started."""
        if self.is_jobqueue:
            missing = [n for n in ("cores", "memory") if getattr(self, n) is None]
            if self.kind == "htcondor" and self.disk is None:
                missing.append("disk")
            if missing:
                raise ValueError(
                    f"cluster kind {self.kind!r} needs {' and '.join(missing)}: set in the "
                    "cluster section of --cluster-config (cores, memory also as --cores/--memory)"
                )
            if self.kind == "htcondor" and self.queue is not None:
                raise ValueError("cluster kind 'htcondor' has no queue; drop cluster queue")
        if self.kind == "gateway" and not self.gateway_address:
            raise ValueError(
                "cluster kind 'gateway' needs gateway_address (e.g. http://gateway.example:8000)"
            )


def load_cluster_config(path: str | Path) -> ClusterConfig:
    """The ``cluster`` section of a YAML/TOML file, or the whole file when it has none."""
    import yaml

    from adhunt.config import load_config

    path = Path(path)
    section = None
    if path.is_file():
        text = path.read_text()
        if path.suffix == ".toml":
            import tomllib

            data = tomllib.loads(text)
        else:
            data = yaml.safe_load(text) or {}
        if isinstance(data, dict) and isinstance(data.get("cluster"), dict):
            section = "cluster"
    return load_config(ClusterConfig, path, section=section)


def _jobqueue_kwargs(config: ClusterConfig) -> dict[str, Any]:
    cores = int(config.cores or 1)
    kwargs: dict[str, Any] = {
        "cores": cores,
        "memory": config.memory,
        "processes": config.processes or cores,  # single-threaded workers, as the LocalCluster
        "walltime": config.walltime,
        "job_extra_directives": list(config.job_extra_directives),
        "job_script_prologue": list(config.job_script_prologue),
        "python": config.python,
        "interface": config.interface,
        "local_directory": config.local_directory,
        "log_directory": config.log_directory,
        # a free port: a fixed :8787 clashes with other users' schedulers on a shared login node
        "scheduler_options": {"dashboard": False, "dashboard_address": ":0"},
    }
    if config.kind != "htcondor":
        kwargs["queue"] = config.queue
        kwargs["account"] = config.account
    else:
        kwargs["disk"] = config.disk
        kwargs["job_extra_directives"] = _submit_file_lines(config.job_extra_directives)
    return {k: v for k, v in kwargs.items() if v is not None}


def _submit_file_lines(lines: tuple[str, ...]) -> dict[str, str]:
    """HTCondor directives ``"Key = value"`` -> the dict dask-jobqueue writes into the submit file."""
    out: dict[str, str] = {}
    for line in lines:
        key, sep, value = line.partition("=")
        if not sep or not key.strip():
            raise ValueError(
                f"cluster job_extra_directives for htcondor must be 'Key = value', got {line!r}"
            )
        out[key.strip()] = value.strip()
    return out


def _jobqueue_cluster(config: ClusterConfig) -> Any:
    try:
        import dask_jobqueue
    except ImportError as err:  # pragma: no cover - a dependency of adhunt
        raise ImportError("cluster kinds slurm/htcondor/pbs need dask-jobqueue") from err
    config.check()
    cls = getattr(dask_jobqueue, JOBQUEUE_KINDS[config.kind])
    return cls(**_jobqueue_kwargs(config))


def job_script(config: ClusterConfig) -> str:
    """The batch script dask-jobqueue would submit for one job of ``config`` (nothing submitted).

    The cluster object is created (it starts a scheduler in this process, which the script
    points at) and closed again at once.
    """
    if not config.is_jobqueue:
        raise ValueError(
            f"--dry-run prints a batch job script: cluster kind must be one of "
            f"{', '.join(JOBQUEUE_KINDS)}, got {config.kind!r}"
        )
    cluster = _jobqueue_cluster(config)
    try:
        return cluster.job_script()
    finally:
        cluster.close()


@contextlib.contextmanager
def open_cluster(config: ClusterConfig, workers: int = 1) -> Iterator[Any]:
    """What a ``distributed.Client`` connects to: an address (``tcp://`` kinds) or a cluster
    object, closed (its jobs/workers stopped) on exit. ``workers`` sizes a local cluster when
    ``config.workers`` is unset."""
    config.check()
    if config.is_address:
        yield config.kind
        return
    if config.kind == "local":
        from distributed import LocalCluster

        n = config.workers or workers
        logger.info("starting a dask LocalCluster with %d single-threaded worker process(es)", n)
        with LocalCluster(
            n_workers=n,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            host="127.0.0.1",
        ) as cluster:
            yield cluster
        return
    if config.is_jobqueue:
        cluster = _jobqueue_cluster(config)
        try:
            logger.info(
                "%s: adaptive %d..%d job(s) of %s cores, %s",
                config.kind,
                config.minimum_jobs,
                config.maximum_jobs,
                config.cores,
                config.memory,
            )
            cluster.adapt(minimum_jobs=config.minimum_jobs, maximum_jobs=config.maximum_jobs)
            yield cluster
        finally:
            cluster.close()
        return
    with _gateway_cluster(config) as cluster:
        yield cluster


@contextlib.contextmanager
def _gateway_cluster(config: ClusterConfig) -> Iterator[Any]:
    try:
        from dask_gateway import Gateway
    except ImportError as err:
        raise ImportError(
            "cluster kind 'gateway' needs dask-gateway: pip install 'adhunt[gateway]'"
        ) from err
    logger.info("dask-gateway %s: starting a cluster", config.gateway_address)
    gateway = Gateway(
        address=config.gateway_address,
        proxy_address=config.gateway_proxy_address,
        auth=config.gateway_auth,
    )
    try:
        try:
            cluster = gateway.new_cluster(**dict(config.gateway_options))
        except OSError as err:
            raise ConnectionError(
                f"cannot reach dask-gateway {config.gateway_address}: {err}"
            ) from err
        try:
            if config.gateway_workers is not None:
                cluster.scale(config.gateway_workers)
            else:
                cluster.adapt(minimum=config.minimum_jobs, maximum=config.maximum_jobs)
            yield cluster
        finally:
            cluster.shutdown()
    finally:
        gateway.close()

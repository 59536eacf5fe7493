"""Real ``dask scheduler`` / ``dask worker`` processes on loopback for the cluster tests."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def dask_processes(
    directory: Path, workers: Sequence[tuple[str, Sequence[str]]] = (("A", ()), ("B", ()))
) -> Iterator[tuple[str, dict[str, subprocess.Popen]]]:
    """A scheduler and single-threaded workers without nanny (a killed worker stays dead),
    each ``(name, extra arguments)``; yields (address, {name: process}); always torn down."""
    from distributed import Client

    dask = shutil.which("dask", path=str(Path(sys.executable).parent)) or "dask"
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    env = {**os.environ, "DASK_DISTRIBUTED__WORKER__DAEMON": "False"}
    log_path = directory / "dask.log"
    procs: dict[str, subprocess.Popen] = {}
    worker = [dask, "worker", address, "--nthreads", "1", "--no-nanny", "--no-dashboard"]
    worker += ["--host", "127.0.0.1"]
    with open(log_path, "w") as log:

        def start(name: str, args: list[str]) -> None:
            procs[name] = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env)

        try:
            start("scheduler", [dask, "scheduler", "--host", "127.0.0.1", "--port", str(port)])
            for name, extra in workers:
                start(
                    name,
                    [*worker, "--name", name, *extra, "--local-directory", str(directory / name)],
                )
            deadline = time.monotonic() + 60
            while True:
                if any(p.poll() is not None for p in procs.values()):
                    raise RuntimeError("dask process died: " + log_path.read_text())
                try:
                    with Client(address, timeout="5s") as client:
                        client.wait_for_workers(
                            len(workers), timeout=max(1.0, deadline - time.monotonic())
                        )
                        break
                except (OSError, TimeoutError):
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.5)
            yield address, procs
        finally:
            for proc in reversed(procs.values()):  # workers first, then the scheduler
                if proc.poll() is None:
                    proc.terminate()
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


@contextlib.contextmanager
def kill_worker_when_holding(
    address: str,
    process: subprocess.Popen,
    name: str,
    key_prefix: str,
    min_held: int = 1,
) -> Iterator[dict]:
    """SIGKILL worker ``name`` once it holds ``min_held`` finished results whose keys start with
    ``key_prefix`` while other tasks still run; yields a dict that says whether it did."""
    import signal
    import threading

    from distributed import Client

    state: dict = {"killed": False}
    stop = threading.Event()

    def monitor() -> None:
        with Client(address, timeout="10s") as client:
            info = client.scheduler_info()["workers"]
            worker = next(a for a, w in info.items() if w["name"] == name)
            while not stop.is_set():
                held = [
                    k for k in client.has_what().get(worker, ()) if str(k).startswith(key_prefix)
                ]
                running = sum(len(v) for v in client.processing().values())
                if len(held) >= min_held and running:
                    os.kill(process.pid, signal.SIGKILL)
                    state.update(killed=True, held=held, running=running)
                    return
                time.sleep(0.02)

    watcher = threading.Thread(target=monitor, daemon=True)
    watcher.start()
    try:
        yield state
    finally:
        stop.set()
        watcher.join(10)

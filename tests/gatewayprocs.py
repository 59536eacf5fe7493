"""A real ``dask-gateway-server`` on loopback for the gateway tests.

Its ``UnsafeLocalBackend`` starts each cluster's scheduler and workers as processes of this user
(``dask scheduler`` / ``dask worker`` of this venv); ``SimpleAuthenticator`` takes any user with
basic auth. Yields the gateway's http address; always torn down.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from daskprocs import free_port

CONFIG = """\
c.DaskGateway.address = "127.0.0.1:{api}"
c.Proxy.address = "127.0.0.1:{web}"
c.DaskGateway.backend_class = "dask_gateway_server.backends.local.UnsafeLocalBackend"
c.DaskGateway.authenticator_class = "dask_gateway_server.auth.SimpleAuthenticator"
c.LocalBackend.clusters_directory = {clusters!r}
c.ClusterConfig.scheduler_cmd = [{dask!r}, "scheduler"]
c.ClusterConfig.worker_cmd = [{dask!r}, "worker"]
c.ClusterConfig.worker_cores = 1
c.ClusterConfig.worker_threads = 1
c.ClusterConfig.worker_memory = "1 G"
c.ClusterConfig.scheduler_memory = "1 G"
c.ClusterConfig.idle_timeout = 0
"""


def gateway_available() -> bool:
    try:
        import dask_gateway  # noqa: F401
        import dask_gateway_server  # noqa: F401
    except ImportError:
        return False
    return shutil.which("dask-gateway-server", path=str(Path(sys.executable).parent)) is not None


@contextlib.contextmanager
def gateway_server(directory: Path, timeout: float = 60.0) -> Iterator[str]:
    """``dask-gateway-server -f config.py`` as a subprocess; yields ``http://127.0.0.1:PORT``."""
    bindir = Path(sys.executable).parent
    server = shutil.which("dask-gateway-server", path=str(bindir))
    dask = shutil.which("dask", path=str(bindir))
    assert server and dask, "dask-gateway-server / dask not installed in this environment"
    directory.mkdir(parents=True, exist_ok=True)
    web = free_port()
    config = directory / "gateway_config.py"
    clusters = str(directory / "clusters")
    config.write_text(CONFIG.format(api=free_port(), web=web, dask=dask, clusters=clusters))
    address = f"http://127.0.0.1:{web}"
    log_path = directory / "gateway.log"
    env = {**os.environ, "DASK_DISTRIBUTED__WORKER__DAEMON": "False"}
    with open(log_path, "w") as log:
        cmd = [server, "-f", str(config)]
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=directory)
        try:
            deadline = time.monotonic() + timeout
            while True:
                if proc.poll() is not None:
                    raise RuntimeError("dask-gateway-server died: " + log_path.read_text())
                try:
                    with urllib.request.urlopen(f"{address}/api/health", timeout=2) as r:
                        if r.status == 200:
                            break
                except OSError:
                    pass
                if time.monotonic() > deadline:
                    raise TimeoutError("dask-gateway-server did not start: " + log_path.read_text())
                time.sleep(0.3)
            yield address
        finally:
            if proc.poll() is None:
                proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

"""Every executor gives identical feature tables; a real `dask scheduler` + `dask worker` works."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from eventfiles import corrupt_baskets, expected_cutflow, make_events, write_events

from adhunt.jobs.executors import ExecutorConfig, coffea_runner
from adhunt.jobs.features import run_features
from adhunt.processors.features import FeatureInputError
from adhunt.tables import read_features

KINDS = ["dijet", "soft", "dijet", "monojet", "nan", "dijet", "empty", "dijet", "dijet"]


@pytest.fixture(scope="module")
def fileset(tmp_path_factory) -> dict[str, list[str]]:
    directory = tmp_path_factory.mktemp("exec-events")
    return {
        "qcd": [
            str(write_events(directory / f"q{i}.root", make_events(KINDS, seed=10 + i)))
            for i in range(2)
        ],
        "sig": [str(write_events(directory / "s0.root", make_events(KINDS[::-1], seed=20)))],
    }


@pytest.fixture(scope="module")
def reference(fileset, tmp_path_factory):
    out = tmp_path_factory.mktemp("iterative")
    result = run_features(fileset, out, executor="iterative", chunksize=4)
    return result, read_features(out)


def _check_same(reference, result, out: Path) -> None:
    ref_result, ref_frame = reference
    assert result.cutflow == ref_result.cutflow
    assert [p.name for p in result.files] == [p.name for p in ref_result.files]
    pd.testing.assert_frame_equal(read_features(out), ref_frame, check_exact=True)


def test_reference_cutflow(reference):
    result, frame = reference
    assert result.cutflow["qcd"] == {k: 2 * v for k, v in expected_cutflow(KINDS).items()}
    assert result.cutflow["sig"] == expected_cutflow(KINDS)
    assert len(frame) == 3 * KINDS.count("dijet")


def test_futures_identical(fileset, reference, tmp_path):
    result = run_features(fileset, tmp_path, executor="futures", workers=2, chunksize=4)
    _check_same(reference, result, tmp_path)


def test_dask_local_cluster_identical(fileset, reference, tmp_path):
    result = run_features(fileset, tmp_path, executor="dask", workers=2, chunksize=4)
    _check_same(reference, result, tmp_path)


def test_chunk_arrays_do_not_outlive_their_chunk(fileset, reference, tmp_path):
    """Each chunk's uproot file object sits in reference cycles; with uproot's array cache it
    kept the chunk's arrays alive until Python's full garbage collection, hundreds of chunks
    later on a real run (peak memory then grew with the fileset). With the automatic collection
    off, no file object may hold arrays after the run, and the tables are unchanged."""
    import gc

    import uproot

    gc.collect()
    gc.disable()
    try:
        result = run_features(fileset, tmp_path, executor="iterative", chunksize=4)
        holding = [
            len(o)
            for o in gc.get_objects()
            if isinstance(o, uproot.cache.LRUArrayCache) and len(o) > 0
        ]
    finally:
        gc.enable()
    assert len(result.files) == 6  # 3 files x 2 chunks: chunks that could leave arrays behind
    assert holding == []
    _check_same(reference, result, tmp_path)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def dask_cluster(tmp_path):
    """`dask scheduler` and one `dask worker` as separate processes on 127.0.0.1; always torn down."""
    dask = shutil.which("dask", path=str(Path(sys.executable).parent)) or "dask"
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    env = {**os.environ, "DASK_DISTRIBUTED__WORKER__DAEMON": "False"}
    logs = [open(tmp_path / name, "w") for name in ("scheduler.log", "worker.log")]
    procs = []
    try:
        procs.append(
            subprocess.Popen(
                [dask, "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
                stdout=logs[0],
                stderr=subprocess.STDOUT,
                env=env,
            )
        )
        procs.append(
            subprocess.Popen(
                [
                    dask,
                    "worker",
                    address,
                    "--nworkers",
                    "1",
                    "--nthreads",
                    "1",
                    "--no-nanny",
                    "--no-dashboard",
                    "--host",
                    "127.0.0.1",
                    "--local-directory",
                    str(tmp_path / "worker"),
                ],
                stdout=logs[1],
                stderr=subprocess.STDOUT,
                env=env,
            )
        )
        _wait_for_worker(address, procs, tmp_path)
        yield address
    finally:
        for proc in reversed(procs):
            proc.terminate()
        for proc in reversed(procs):
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for log in logs:
            log.close()


def _wait_for_worker(address: str, procs, tmp_path: Path, timeout: float = 60.0) -> None:
    from distributed import Client

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(p.poll() is not None for p in procs):
            raise RuntimeError(
                "dask process died: "
                + (tmp_path / "scheduler.log").read_text()
                + (tmp_path / "worker.log").read_text()
            )
        try:
            with Client(address, timeout="5s") as client:
                client.wait_for_workers(1, timeout=max(1.0, deadline - time.monotonic()))
                return
        except (OSError, TimeoutError):
            time.sleep(0.5)
    raise RuntimeError(f"no dask worker registered at {address} within {timeout} s")


def test_dask_scheduler_processes(fileset, reference, tmp_path, dask_cluster):
    result = run_features(
        fileset, tmp_path / "out", executor="dask", scheduler=dask_cluster, chunksize=4
    )
    _check_same(reference, result, tmp_path / "out")


def test_errors_from_worker_processes_name_the_file(fileset, tmp_path):
    """A chunk failing inside a futures worker comes back as FeatureInputError naming the file."""
    broken = corrupt_baskets(Path(fileset["qcd"][0]), tmp_path / "broken.root")
    with pytest.raises(FeatureInputError, match=r"broken\.root"):
        run_features(
            {"qcd": [str(broken)]}, tmp_path / "out", executor="futures", workers=1, chunksize=4
        )


def test_executor_config_validation():
    with pytest.raises(ValueError, match="executor must be one of"):
        ExecutorConfig(executor="spark")
    with pytest.raises(ValueError, match="scheduler"):
        ExecutorConfig(executor="futures", scheduler="tcp://127.0.0.1:1")
    with pytest.raises(ValueError, match="workers"):
        ExecutorConfig(workers=0)
    with coffea_runner(ExecutorConfig(chunksize=7, skip_bad_files=True)) as runner:
        assert runner.chunksize == 7 and OSError in runner.skipbadfiles


def test_unreachable_scheduler_is_a_clear_error(fileset, tmp_path):
    with pytest.raises(ConnectionError, match="cannot reach dask scheduler"):
        run_features(
            fileset, tmp_path, executor="dask", scheduler=f"tcp://127.0.0.1:{_free_port()}"
        )

"""The scan on a real dask cluster (``dask scheduler`` + ``dask worker`` processes): windows are
tasks, a worker SIGKILLed mid-scan loses nothing, and the report equals the in-process one."""

from __future__ import annotations

import signal

import pytest
from daskprocs import dask_processes, kill_worker_when_holding
from test_scan import synthetic_table

from adhunt.bumphunt import ScanConfig
from adhunt.jobs.executors import ExecutorConfig
from adhunt.jobs.scan import run_scan

FAST_METHOD = {"n_ensemble": 1, "hgb_max_iter": 30, "num_threads": 1}


def _comparable(report: dict) -> dict:
    return {k: v for k, v in report.items() if k not in ("timing", "executor")}


@pytest.mark.timeout(300)
def test_worker_killed_mid_scan_loses_nothing(tmp_path):
    data = synthetic_table(20_000, 150, seed=5)
    cfg = ScanConfig(
        folds=2, seed=4, method_config=FAST_METHOD, n_toys=20, fit_range=(2800.0, 8000.0),
        scan_range=(3200.0, 5000.0), window_step=200.0, efficiencies=(0.1,), plots=False,
    )  # fmt: skip
    reference = run_scan(data, tmp_path / "iterative", cfg)
    with dask_processes(tmp_path) as (address, procs):
        with kill_worker_when_holding(address, procs["B"], "B", "scan_window") as state:
            result = run_scan(
                data, tmp_path / "dask", cfg, executor=ExecutorConfig("dask", scheduler=address)
            )
        assert state["killed"], "worker B was never killed: the scan ended before it held a window"
        assert procs["B"].wait(5) == -signal.SIGKILL
    assert _comparable(result.report) == _comparable(reference.report)
    assert len(result.report["windows"]) == len(reference.report["windows"]) >= 6

"""``--executor dask`` on a real LocalCluster, through the installed ``adhunt`` command (the
workers are separate processes that write to the command's own stderr, which only a subprocess
can capture): a progress bar as the other executors draw, and on a failing chunk one clean
error line, without the worker's traceback dump before it (kept with ``-v``).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from eventfiles import corrupt_baskets, make_events, write_events

ADHUNT = str(Path(sys.executable).with_name("adhunt"))


@pytest.fixture(scope="module")
def filesets(tmp_path_factory):
    base = tmp_path_factory.mktemp("daskprogress")
    good = write_events(base / "good.root", make_events(["dijet"] * 60, seed=8))
    broken = corrupt_baskets(good, base / "broken.root")
    out = {}
    for name, path in (("good", good), ("broken", broken)):
        out[name] = base / f"{name}.json"
        out[name].write_text(json.dumps({"qcd": [str(path)]}))
    return out


def run(*args, env=None):
    return subprocess.run(
        [ADHUNT, *map(str, args)], capture_output=True, text=True, timeout=300, check=False,
        env=None if env is None else {**os.environ, **env},
    )  # fmt: skip


#: rich treats stderr as a (non-interactive) terminal: bars are drawn once, when they finish
TERMINAL = {"TTY_COMPATIBLE": "1", "TTY_INTERACTIVE": "0", "NO_COLOR": "1", "COLUMNS": "160"}


def plain(text):
    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text)


def test_dask_shows_a_progress_bar_like_the_other_executors(filesets, tmp_path):
    r = run("features", filesets["good"], "-o", tmp_path / "out", "--executor", "dask",
            "--workers", 1, "--chunksize", 20, env=TERMINAL)  # fmt: skip
    assert r.returncode == 0, r.stderr
    lines = plain(r.stderr).splitlines()
    assert any(ln.startswith("Preprocessing") and "1/1" in ln and "file/s" in ln for ln in lines)
    assert any(
        ln.startswith("Processing") and "60/60" in ln and "events/s" in ln for ln in lines
    ), lines


def test_dask_worker_failure_is_one_clean_line(filesets, tmp_path):
    r = run("features", filesets["broken"], "-o", tmp_path / "out", "--executor", "dask",
            "--workers", 1, "--chunksize", 20)  # fmt: skip
    assert r.returncode == 1
    output = r.stdout + r.stderr
    assert "Compute Failed" not in output and "Traceback" not in output, output
    errors = [line for line in output.splitlines() if "ERROR" in line]
    assert len(errors) == 1 and "broken.root" in errors[0], output


@pytest.mark.slow
def test_dask_worker_traceback_is_kept_with_verbose(filesets, tmp_path):
    r = run("-v", "features", filesets["broken"], "-o", tmp_path / "out", "--executor", "dask",
            "--workers", 1, "--chunksize", 20)  # fmt: skip
    assert r.returncode == 1
    assert "Compute Failed" in r.stderr and "broken.root" in r.stderr

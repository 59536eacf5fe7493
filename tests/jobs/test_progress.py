"""Progress bars with a rate, the closing events/s line, ``--quiet``, and log lines that name
the chunk, through the installed ``adhunt`` command on real ROOT files (the bars go to the
command's stderr, which only a subprocess sees as a terminal or not)."""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from eventfiles import corrupt_baskets, make_events, write_events

from adhunt.jobs.features import run_features
from adhunt.jobs.reporting import format_rate

ADHUNT = str(Path(sys.executable).with_name("adhunt"))
#: rich treats stderr as a (non-interactive) terminal: bars are drawn once, when they finish
TERMINAL = {"TTY_COMPATIBLE": "1", "TTY_INTERACTIVE": "0", "NO_COLOR": "1", "COLUMNS": "160"}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    base = tmp_path_factory.mktemp("progress")
    good = write_events(base / "qcd_0001.root", make_events(["dijet"] * 60, seed=5))
    broken = corrupt_baskets(good, base / "broken.root")
    fileset = base / "fileset.json"
    fileset.write_text(json.dumps({"qcd": [str(good)]}))
    return fileset, good, broken


def run(*args, env=None):
    environ = {k: v for k, v in os.environ.items() if k not in TERMINAL}
    return subprocess.run(
        [ADHUNT, *map(str, args)], capture_output=True, text=True, timeout=300, check=False,
        env={**environ, **(env or {})},
    )  # fmt: skip


def plain(text):
    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text)


@pytest.mark.parametrize("executor", ["iterative", "futures"])
def test_bars_show_events_per_second(files, tmp_path, executor):
    fileset, _, _ = files
    r = run("features", fileset, "-o", tmp_path / "out", "--executor", executor, "--workers", 1,
            "--chunksize", 20, env=TERMINAL)  # fmt: skip
    assert r.returncode == 0, r.stderr
    err = plain(r.stderr)
    bars = [ln for ln in err.splitlines() if ln.startswith("Processing")]
    assert len(bars) == 1 and "60/60" in bars[0], err
    assert re.search(r"\d[\d.]*k? events/s", bars[0]), bars
    assert any(ln.startswith("Preprocessing") and "file/s" in ln for ln in err.splitlines())
    # coffea's own bar (chunk/s, on stdout) is off
    assert "chunk/s" not in plain(r.stdout) + err and "Merging" not in plain(r.stdout)
    assert re.search(r"processed 60 events in [\d.]+ s \(\d+ events/s\)", err), err


def test_quiet_and_no_terminal_have_no_bars(files, tmp_path):
    fileset, _, _ = files
    quiet = run("-q", "features", fileset, "-o", tmp_path / "q", "--chunksize", 20, env=TERMINAL)
    assert quiet.returncode == 0, quiet.stderr
    output = plain(quiet.stdout + quiet.stderr)
    assert "Processing" not in output and "events/s" not in output, output
    assert "INFO" not in output, output
    batch = run("features", fileset, "-o", tmp_path / "b", "--chunksize", 20)  # not a terminal
    assert batch.returncode == 0, batch.stderr
    output = plain(batch.stdout + batch.stderr)
    assert "Processing" not in output and "Preprocessing" not in output, output
    assert "processed 60 events in" in output  # the log line stays


def test_log_lines_and_errors_name_the_chunk(files, tmp_path, caplog):
    fileset, _, broken = files
    caplog.set_level(logging.DEBUG, logger="adhunt")
    run_features(fileset, tmp_path / "out", chunksize=20)
    chunks = [r for r in caplog.records if r.name.startswith("adhunt.processors")]
    labels = sorted({r.chunk for r in chunks})
    assert labels == [
        "qcd qcd_0001.root:0-20",
        "qcd qcd_0001.root:20-40",
        "qcd qcd_0001.root:40-60",
    ]
    assert all(r.getMessage().startswith(f"[{r.chunk}] ") for r in chunks)
    # outside a chunk, records are left alone
    assert not any(hasattr(r, "chunk") for r in caplog.records if r.name == "adhunt.jobs.features")

    caplog.clear()
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"sig": [str(broken)]}))
    result = run_features(bad, tmp_path / "bad", chunksize=20, skip_bad_files=True)
    skipped = [r for r in caplog.records if "chunk skipped" in r.getMessage()]
    assert skipped and skipped[0].getMessage().startswith("[sig broken.root:0-20] ")
    failed = result.summary.datasets["sig"].failed
    assert failed and all(str(broken) in f.reason and "'sig'" in f.reason for f in failed), failed


def test_format_rate():
    assert format_rate(None, "events") == "- events/s"
    assert format_rate(3.25, "items") == "3.2 items/s"
    assert format_rate(42.0, "events") == "42 events/s"
    assert format_rate(12345.0, "events") == "12.3k events/s"
    assert format_rate(2.5e6, "events") == "2.5M events/s"

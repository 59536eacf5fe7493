"""Feature directories are complete or marked: the manifest, interrupted runs that resume to the
same bytes, failed runs that keep the previous tables, and directories that mix definitions."""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from clirun import invoke
from eventfiles import corrupt_baskets, expected_cutflow, make_events, write_events

from adhunt.jobs.features import run_features
from adhunt.manifest import load_manifest, write_manifest
from adhunt.processors.features import FeatureConfig, FeatureInputError
from adhunt.runrecord import RECORD_NAME
from adhunt.tables import FeatureTableError, read_table

KINDS = (["dijet"] * 6 + ["monojet", "soft", "nan"]) * 20  # 180 events per file
CHUNKSIZE = 5  # 36 chunks per file


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    directory = tmp_path_factory.mktemp("integrity")
    out = {name: write_events(directory / f"{name}.root", make_events(KINDS, seed=seed))
           for name, seed in (("a", 21), ("b", 22), ("c", 23))}  # fmt: skip
    out["broken"] = corrupt_baskets(out["c"], directory / "broken.root")
    fileset = directory / "fileset.json"
    fileset.write_text(json.dumps({"qcd": [str(out["a"])], "sig": [str(out["b"])]}))
    out["fileset"] = fileset
    return out


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file below ``root`` (hidden ones included) by relative path, but the run record
    that the CLI writes (its times differ from run to run; the library writes none)."""
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in root.rglob("*")
        if p.is_file() and p.name != RECORD_NAME
    }


def features_cmd(fileset: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "adhunt.jobs.cli", "features", str(fileset), "-o", str(out),
            "--chunksize", str(CHUNKSIZE), *extra]  # fmt: skip


def test_sigint_then_resume_gives_the_uninterrupted_bytes(files, tmp_path):
    out, reference = tmp_path / "out", tmp_path / "reference"
    proc = subprocess.Popen(
        features_cmd(files["fileset"], out),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 120
    while len(list(out.glob("*/*.parquet"))) < 4 and proc.poll() is None:
        assert time.monotonic() < deadline, "no chunk written in 120 s"
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)
    log, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, log
    assert "run the same command again to resume" in " ".join(log.split())
    n_written = len(list(out.glob("*/*.parquet")))
    manifest = load_manifest(out)
    assert {r.status for r in manifest.datasets.values()} == {"interrupted"}
    assert 4 <= n_written < 36

    # every reader refuses the partial directory, naming what is missing
    with pytest.raises(FeatureTableError, match=r"incomplete: dataset 'qcd' \(interrupted\)"):
        read_table(out)
    r = invoke(["train", "cwola", "--features", out, "--output", tmp_path / "model"])
    assert r.exit_code == 2 and "is incomplete" in r.text and "--allow-partial" in r.text
    warnings = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = lambda record: warnings.append(record.getMessage())
    logging.getLogger("adhunt.manifest").addHandler(handler)
    try:
        partial = read_table(out, allow_partial=True)
    finally:
        logging.getLogger("adhunt.manifest").removeHandler(handler)
    assert len(warnings) == 1 and "reading what is there (--allow-partial)" in warnings[0]
    lost = 36 - n_written  # the iterative executor runs qcd's chunks first
    assert (
        f"'qcd' (interrupted) is missing {lost} of 36 chunks ({5 * lost} of 180 events)"
        in (warnings[0])
    )
    present = sorted(out.glob("*/*.parquet"))
    by_hand = pd.concat([pd.read_parquet(p) for p in present], ignore_index=True)
    assert len(partial) == len(by_hand) and partial["event"].tolist() == by_hand["event"].tolist()
    # the CLI flag: the table is read (with the warning) and training goes on to its own checks
    r = invoke(["train", "cwola", "--features", out, "--output", tmp_path / "model",
                "--allow-partial", "--window", "1:2"])  # fmt: skip
    assert "reading what is there" in r.text and "is incomplete:" not in r.text

    # resuming with another chunking is refused; the same command resumes
    other = subprocess.run(
        [*features_cmd(files["fileset"], out)[:-1], "7"], capture_output=True, text=True
    )
    assert other.returncode == 1 and "--chunksize 5" in " ".join(other.stderr.split())
    resumed = subprocess.run(features_cmd(files["fileset"], out), capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    text = " ".join((resumed.stdout + resumed.stderr).split())
    assert f"skipping {n_written} of 72 chunk(s) already done" in text

    # an uninterrupted run elsewhere: the same bytes, tables, manifest and cutflow
    run_features(files["fileset"], reference, chunksize=CHUNKSIZE)
    got, want = snapshot(out), snapshot(reference)
    assert sorted(got) == sorted(want)
    assert all(got[name] == want[name] for name in want)
    pd.testing.assert_frame_equal(read_table(out), read_table(reference))
    cutflow = json.loads((out / "cutflow.json").read_text())["cutflow"]
    assert cutflow == {"qcd": expected_cutflow(KINDS), "sig": expected_cutflow(KINDS)}


def test_failed_run_keeps_the_previous_tables(files, tmp_path):
    out = tmp_path / "out"
    run_features({"qcd": [str(files["b"])]}, out, chunksize=CHUNKSIZE)
    before, table = snapshot(out), read_table(out)
    # a new fileset whose second file fails while being processed (it opens fine)
    with pytest.raises(FeatureInputError, match=r"broken\.root"):
        run_features({"qcd": [str(files["a"]), str(files["broken"])]}, out, chunksize=CHUNKSIZE)
    assert snapshot(out) == before
    pd.testing.assert_frame_equal(read_table(out), table)
    # another chunking that fails: the old chunks were set aside and come back
    with pytest.raises(FeatureInputError, match=r"broken\.root"):
        run_features({"qcd": [str(files["b"]), str(files["broken"])]}, out, chunksize=7)
    assert snapshot(out) == before


def test_rerun_skips_done_chunks_and_restart_redoes_them(files, tmp_path):
    out = tmp_path / "out"
    first = run_features({"qcd": [str(files["a"])]}, out, chunksize=CHUNKSIZE)
    before = snapshot(out)
    again = run_features({"qcd": [str(files["a"])]}, out, chunksize=CHUNKSIZE)
    assert again.resumed_chunks == 36 and again.cutflow == first.cutflow
    assert snapshot(out) == before
    redo = run_features({"qcd": [str(files["a"])]}, out, chunksize=CHUNKSIZE, restart=True)
    assert redo.resumed_chunks == 0 and snapshot(out) == before
    # a dataset added to the fileset: only its chunks are processed
    more = run_features(
        {"qcd": [str(files["a"])], "sig": [str(files["b"])]}, out, chunksize=CHUNKSIZE
    )
    assert more.resumed_chunks == 36 and more.cutflow["sig"] == expected_cutflow(KINDS)
    # an input touched in place (new mtime: another identity) is processed again
    copy = tmp_path / "copy.root"
    shutil.copyfile(files["a"], copy)
    run_features({"qcd": [str(copy)]}, tmp_path / "copy", chunksize=CHUNKSIZE)
    mtime = copy.stat().st_mtime_ns + 10**9
    os.utime(copy, ns=(mtime, mtime))
    touched = run_features({"qcd": [str(copy)]}, tmp_path / "copy", chunksize=CHUNKSIZE)
    assert touched.resumed_chunks == 0 and touched.cutflow == first.cutflow


def test_datasets_with_different_feature_configurations_are_refused(files, tmp_path):
    out = tmp_path / "out"
    run_features({"qcd": [str(files["a"])]}, out, FeatureConfig(radius=0.4), chunksize=60)
    with pytest.raises(FeatureInputError, match=r"'qcd'.*radius: 0\.4 vs 1\.0"):
        run_features({"sig": [str(files["b"])]}, out, FeatureConfig(radius=1.0), chunksize=60)
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["qcd"]
    # rerunning qcd too is fine; so is --restart, which drops qcd's R = 0.4 tables
    other = tmp_path / "other"
    run_features({"qcd": [str(files["a"])]}, other, FeatureConfig(radius=0.4), chunksize=60)
    run_features({"sig": [str(files["b"])]}, other, FeatureConfig(radius=1.0), chunksize=60,
                 restart=True)  # fmt: skip
    assert set(load_manifest(other).datasets) == {"sig"} and not (other / "qcd").exists()

    # a directory assembled by hand from two runs is refused by the readers, naming the field
    signal_dir = tmp_path / "signal"
    run_features({"sig": [str(files["b"])]}, signal_dir, FeatureConfig(radius=1.0), chunksize=60)
    (signal_dir / "sig").rename(out / "sig")
    with pytest.raises(FeatureTableError, match=r"\['sig'\] are not in its manifest\.json"):
        read_table(out)
    manifest = load_manifest(out)
    manifest.datasets["sig"] = load_manifest(signal_dir).datasets["sig"]
    write_manifest(out, manifest)
    with pytest.raises(FeatureTableError, match=r"'qcd' and 'sig'.*radius: 0\.4 vs 1\.0"):
        read_table(out)
    with pytest.raises(FeatureTableError, match=r"radius"):
        read_table(out, allow_partial=True)  # --allow-partial is about missing chunks only
    assert len(read_table(out, ["qcd"])) == expected_cutflow(KINDS)["two_jets"]


def test_directory_from_before_manifests_stays_readable(files, tmp_path):
    """Tables written without a manifest: read as before; a run over another dataset records
    them (their configuration from features_config.json) instead of orphaning them."""
    out = tmp_path / "out"
    run_features({"qcd": [str(files["a"])]}, out, chunksize=60)
    (out / "manifest.json").unlink()  # as an older adhunt left it
    legacy = read_table(out)
    run_features({"sig": [str(files["b"])]}, out, chunksize=60)
    both = read_table(out)
    pd.testing.assert_frame_equal(both[both["dataset"] == "qcd"].reset_index(drop=True), legacy)
    assert load_manifest(out).datasets["qcd"].status == "complete"
    with pytest.raises(FeatureInputError, match=r"'sig'.*radius: 1\.0 vs 0\.4"):
        run_features({"qcd": [str(files["a"])]}, out, FeatureConfig(radius=0.4), chunksize=60)

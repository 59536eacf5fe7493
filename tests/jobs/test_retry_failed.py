"""Run summary and ``--retry-failed`` on real ROOT files through the real feature processor.

One input file is replaced by a same-size copy with garbled baskets (its size and mtime kept,
so its identity is the same): with --skip-bad-files the run completes and records that file's
chunks as failed. The file is restored and ``--retry-failed`` processes only those chunks: the
other chunk files are untouched (mtime_ns) and the tables equal an uninterrupted run's.
"""

from __future__ import annotations

import json
import os
import shutil

import pandas as pd
import pytest
from eventfiles import corrupt_baskets, expected_cutflow, make_events, write_events
from typer.testing import CliRunner

from adhunt.jobs.cli import app
from adhunt.jobs.features import run_features
from adhunt.processors.features import FeatureConfig, FeatureInputError
from adhunt.runsummary import SUMMARY_NAME, read_summary
from adhunt.tables import read_features

KINDS = ["dijet"] * 40 + ["monojet"] * 10 + ["soft"] * 10
CHUNK = 20  # 60 events per file -> 3 chunks


@pytest.fixture()
def inputs(tmp_path):
    a = write_events(tmp_path / "qcd_a.root", make_events(KINDS, seed=21))
    b = write_events(tmp_path / "qcd_b.root", make_events(KINDS, seed=22))
    s = write_events(tmp_path / "sig.root", make_events(KINDS, seed=23))
    fileset = tmp_path / "fileset.json"
    fileset.write_text(json.dumps({"qcd": [str(a), str(b)], "sig": [str(s)]}))
    return fileset, b


def spoil(path, tmp_path):
    """Replace ``path`` by a same-size copy with garbled baskets, keeping its mtime; returns the
    saved original (restore it with shutil.copy2)."""
    saved = shutil.copy2(path, tmp_path / "saved.root")
    broken = corrupt_baskets(path, tmp_path / "broken.root")
    assert broken.stat().st_size == path.stat().st_size
    stat = path.stat()
    broken.replace(path)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    return saved


def mtimes(directory):
    return {p.name: p.stat().st_mtime_ns for p in directory.rglob("*.parquet")}


def test_retry_failed_runs_only_the_failed_chunks(inputs, tmp_path):
    fileset, b = inputs
    reference = run_features(fileset, tmp_path / "ref", chunksize=CHUNK)
    assert reference.summary.failed == []

    saved = spoil(b, tmp_path)
    out = tmp_path / "out"
    first = run_features(fileset, out, chunksize=CHUNK, skip_bad_files=True)
    summary = read_summary(out)
    assert summary.to_dict() == first.summary.to_dict()
    qcd, sig = summary.datasets["qcd"], summary.datasets["sig"]
    assert (qcd.events_in_fileset, qcd.events_processed) == (120, 60)
    assert (qcd.chunks_expected, qcd.chunks_done, qcd.chunks_failed) == (6, 3, 3)
    assert sorted((f.file, f.start, f.stop) for f in qcd.failed) == [
        (str(b), 0, 20), (str(b), 20, 40), (str(b), 40, 60),
    ]  # fmt: skip
    assert all(f.reason for f in qcd.failed)
    assert (sig.events_processed, sig.chunks_failed) == (60, 0)
    # the cutflow counts exactly the processed events, once
    assert first.cutflow["qcd"]["events"] == qcd.events_processed

    shutil.copy2(saved, b)  # restored, same size and mtime: the same input identity
    before = mtimes(out)
    retried = run_features(fileset, out, chunksize=CHUNK, retry_failed=True)
    after = mtimes(out)
    assert {n: after[n] for n in before} == before  # done chunks untouched
    new = sorted(set(after) - set(before))
    assert len(new) == 3 and all("qcd_b" in n for n in new), new
    summary = read_summary(out)
    assert [s.chunks_failed for s in summary.datasets.values()] == [0, 0]
    assert summary.datasets["qcd"].events_processed == 120
    assert summary.datasets["qcd"].chunks_done == 6
    assert retried.cutflow == reference.cutflow
    assert retried.cutflow["qcd"] == {k: 2 * v for k, v in expected_cutflow(KINDS).items()}
    pd.testing.assert_frame_equal(read_features(out), read_features(tmp_path / "ref"))
    for name in after:  # byte-identical chunk tables
        ref = next((tmp_path / "ref").rglob(name))
        assert next(out.rglob(name)).read_bytes() == ref.read_bytes(), name

    with pytest.raises(FeatureInputError, match="nothing to retry"):
        run_features(fileset, out, chunksize=CHUNK, retry_failed=True)


def test_retry_failed_refuses_another_run(inputs, tmp_path):
    fileset, b = inputs
    out = tmp_path / "out"
    with pytest.raises(FeatureInputError, match="no run summary"):
        run_features(fileset, out, chunksize=CHUNK, retry_failed=True)
    saved = spoil(b, tmp_path)
    run_features(fileset, out, chunksize=CHUNK, skip_bad_files=True)
    shutil.copy2(saved, b)
    before = mtimes(out)
    with pytest.raises(FeatureInputError, match=r"configuration differs.*radius"):
        run_features(fileset, out, FeatureConfig(radius=0.8), chunksize=CHUNK, retry_failed=True)
    with pytest.raises(FeatureInputError, match="chunksize"):
        run_features(fileset, out, chunksize=30, retry_failed=True)
    os.utime(b, ns=(0, 10**18))
    with pytest.raises(FeatureInputError, match="changed since the recorded run"):
        run_features(fileset, out, chunksize=CHUNK, retry_failed=True)
    assert mtimes(out) == before  # a refused retry changes nothing
    summary = json.loads((out / SUMMARY_NAME).read_text())
    assert summary["datasets"]["qcd"]["chunks_failed"] == 3


def test_cli_prints_the_summary_and_refuses_in_one_line(inputs, tmp_path):
    fileset, _ = inputs
    out = tmp_path / "out"
    r = CliRunner().invoke(app, ["features", str(fileset), "-o", str(out), "--chunksize", "20"])
    assert r.exit_code == 0, r.output
    assert "run summary" in r.output and "6/6" in r.output
    r = CliRunner().invoke(
        app, ["features", str(fileset), "-o", str(out), "--chunksize", "20", "--retry-failed"]
    )
    assert r.exit_code == 1
    errors = [line for line in r.output.splitlines() if "ERROR" in line]
    assert len(errors) == 1 and "nothing to retry" in r.output, r.output
    assert "Traceback" not in r.output


def test_rerun_of_a_retried_output_is_one_full_run(inputs, tmp_path):
    """The record of a --retry-failed run describes the whole output: `adhunt rerun` repeats it
    as one full run (not a retry of a summary the new output does not have)."""
    fileset, b = inputs
    saved = spoil(b, tmp_path)
    out = tmp_path / "out"
    base = ["features", str(fileset), "-o", str(out), "--chunksize", str(CHUNK)]
    r = CliRunner().invoke(app, [*base, "--skip-bad-files"])
    assert r.exit_code == 0, r.output
    shutil.copy2(saved, b)
    r = CliRunner().invoke(app, [*base, "--retry-failed"])
    assert r.exit_code == 0, r.output
    again = tmp_path / "again"
    r = CliRunner().invoke(app, ["rerun", str(out), "--output", str(again)])
    assert r.exit_code == 0, r.output
    pd.testing.assert_frame_equal(read_features(again), read_features(out))
    assert read_summary(again).to_dict()["datasets"] == read_summary(out).to_dict()["datasets"]


# --------------------------------------------------------------------------------------------
# adhunt infer: failed chunks keep the saved results; --retry-failed scores only those chunks
# --------------------------------------------------------------------------------------------


def test_infer_retry_failed_scores_only_the_failed_chunks(inputs, tmp_path, caplog):
    import logging

    import numpy as np

    from adhunt.jobs.executors import ExecutorConfig
    from adhunt.jobs.infer import run_infer
    from adhunt.models.base import TrainConfig
    from adhunt.models.registry import get_method
    from adhunt.processors.inference import InferenceError, clear_model_cache
    from adhunt.regions import SignalRegion

    fileset, b = inputs
    features = tmp_path / "features"
    run_features(fileset, features, chunksize=CHUNK)
    table = read_features(features)
    low, high = np.quantile(table["mjj"], [0.3, 0.7])
    fast = TrainConfig(backend="hgb", n_ensemble=1, hgb_max_iter=10, num_threads=1)
    model = get_method("cwola")(
        ["mj1", "delta_mj", "tau21_j1"], SignalRegion(float(low), float(high)), n_folds=2,
        seed=3, config=fast,
    ).fit(table)  # fmt: skip
    models = {"cwola": model.save(tmp_path / "model")}
    kwargs = {
        "executor": ExecutorConfig("iterative", chunksize=CHUNK),
        "reference": features,
        "efficiencies": (0.2,),
    }
    clear_model_cache()
    reference = run_infer(fileset, models, tmp_path / "ref", **kwargs)
    assert reference.summary.failed == []

    saved = spoil(b, tmp_path)
    out = tmp_path / "infer"
    first = run_infer(fileset, models, out, skip_bad_files=True, **kwargs)
    qcd = read_summary(out).datasets["qcd"]
    assert (qcd.events_in_fileset, qcd.events_processed, qcd.chunks_failed) == (120, 60, 3)
    assert {f.file for f in qcd.failed} == {str(b)}
    assert first.cutflow["qcd"]["events"] == 60
    assert (out / ".partials").is_dir()  # kept for the retry

    shutil.copy2(saved, b)
    other = {**kwargs, "efficiencies": (0.1,)}
    with pytest.raises(InferenceError, match="configuration differs"):
        run_infer(fileset, models, out, retry_failed=True, **other)
    caplog.set_level(logging.INFO, logger="adhunt")
    retried = run_infer(fileset, models, out, retry_failed=True, **kwargs)
    text = caplog.text
    assert "skipping 6 of 9 chunk(s) already done" in text, text
    assert "processed 60 events in" in text, text  # only the failed file's chunks ran
    assert [s.chunks_failed for s in read_summary(out).datasets.values()] == [0, 0]
    assert not (out / ".partials").exists()
    assert retried.cutflow == reference.cutflow and retried.scored == reference.scored
    va, vb = retried.histogram.view(flow=True), reference.histogram.view(flow=True)
    np.testing.assert_array_equal(va["value"], vb["value"])
    np.testing.assert_array_equal(va["variance"], vb["variance"])

    with pytest.raises(InferenceError, match="nothing to retry"):
        run_infer(fileset, models, out, retry_failed=True, **kwargs)

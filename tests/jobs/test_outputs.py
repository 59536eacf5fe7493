"""Fail early on outputs: every command checks ``-o`` before any work.

An existing file where a directory is needed (or the reverse), an unwritable directory and a
foreign non-empty directory each end the command at once with exit code 1 (sculpting: 2, its 1
means "the cut sculpts"), one line naming the path and no traceback; nothing is trained,
processed or generated, and no temporary file is left behind. The unwritable cases need a
non-root user (root writes anywhere): they are skipped as root.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd
import pytest
from clirun import invoke
from eventfiles import make_events, write_events

from adhunt.lhco import LHCO_FEATURE_COLUMNS
from adhunt.outputs import OutputError, check_output_dir, check_output_file, is_output_of
from adhunt.schema import FEATURE_COLUMNS
from adhunt.tables import chunk_filename, make_feature_frame, write_chunk

ROOT = os.geteuid() == 0
needs_non_root = pytest.mark.skipif(ROOT, reason="root writes into read-only directories")


def feature_table(root, n=4000, seed=1):
    rng = np.random.default_rng(seed)
    skip = ("dataset", "run", "luminosityBlock", "event", "truth_label", "weight")
    feats = {c: rng.uniform(0.1, 1.0, n) for c in FEATURE_COLUMNS if c not in skip}
    feats["mjj"] = rng.uniform(2800, 4400, n)
    frame = make_feature_frame("qcd", np.ones(n, int), np.arange(n), np.zeros(n, int), feats)
    write_chunk(frame, root, chunk_filename("qcd", "f.root", 0, n))
    return root


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    from adhunt.jobs.train import run_train

    base = tmp_path_factory.mktemp("outputs")
    events = write_events(base / "dijets.root", make_events(["dijet"] * 40, seed=3))
    fileset = base / "fileset.json"
    fileset.write_text(json.dumps({"qcd": [str(events)]}))
    table = feature_table(base / "table")
    config = base / "fast.yaml"
    config.write_text("n_ensemble: 1\nhgb_max_iter: 5\nnum_threads: 1\n")
    model = base / "model"
    run_train("cwola", table, model, window="3300:3700", folds=2, config_path=config)
    lhco = base / "lhco_features.h5"
    rng = np.random.default_rng(4)
    columns = {c: rng.uniform(10, 500, 20) for c in LHCO_FEATURE_COLUMNS}
    pd.DataFrame({**columns, "label": np.zeros(20)}).to_hdf(lhco, key="df")
    return {"fileset": fileset, "table": table, "model": model, "config": config, "lhco": lhco}


def commands(inputs, out):
    """Every command, with real inputs, writing to ``out``; (name, argv, exit code expected)."""
    i = inputs
    return [
        ("generate", ["generate", "-p", "qcd", "-n", 5, "-s", 1, "-o", out], 1),
        ("convert-lhco", ["convert-lhco", "-o", out, "--features", i["lhco"]], 1),
        ("features", ["features", i["fileset"], "-o", out], 1),
        (
            "train",
            [
                "train",
                "cwola",
                "--features",
                i["table"],
                "-o",
                out,
                "--folds",
                2,
                "--config",
                i["config"],
            ],
            1,
        ),
        ("score", ["score", i["model"], "--features", i["table"], "-o", out], 1),
        ("evaluate", ["evaluate", i["model"], "--test", i["table"], "-o", out], 1),
        ("compare", ["compare", i["model"], "--features", i["table"], "-o", out], 1),
        (
            "infer",
            ["infer", i["fileset"], "-m", f"m={i['model']}", "-o", out, "--reference", i["table"]],
            1,
        ),
        ("scan", ["scan", "--features", i["table"], "-o", out, "--windows", "3300:3700"], 1),
        ("sculpting", ["sculpting", "--features", i["table"], "--model", i["model"], "-o", out], 2),
        ("demo", ["demo", "-o", out, "--fileset", i["fileset"], "--qcd-events", 10], 1),
    ]


NAMES = [
    c[0] for c in commands(dict.fromkeys(("fileset", "table", "model", "config", "lhco")), None)
]


def assert_refused(r, path, code):
    assert r.exit_code == code, r.output
    assert isinstance(r.exception, SystemExit), r.exception  # a clean exit, not a crash
    assert "Traceback" not in r.output
    assert str(path) in r.compact
    errors = [line for line in r.output.splitlines() if "ERROR" in line]
    assert len(errors) == 1, r.output


@pytest.mark.parametrize("name", NAMES)
def test_output_is_an_existing_file(inputs, tmp_path, name):
    out = tmp_path / "taken"
    if name == "score":  # score writes a file: a directory is the wrong kind there
        out.mkdir()
    else:
        out.write_text("not yours\n")
    wanted = out
    _, argv, code = next(c for c in commands(inputs, wanted) if c[0] == name)
    r = invoke(argv)
    assert_refused(r, wanted, code)
    if name == "score":
        assert list(out.iterdir()) == []
    else:
        assert out.read_text() == "not yours\n"
    assert [p.name for p in tmp_path.iterdir()] == ["taken"]  # nothing else written, no .tmp


@pytest.mark.parametrize("name", NAMES)
def test_output_below_a_file(inputs, tmp_path, name):
    (tmp_path / "file").write_text("x")
    out = tmp_path / "file" / ("scores.parquet" if name == "score" else "out")
    _, argv, code = next(c for c in commands(inputs, out) if c[0] == name)
    assert_refused(invoke(argv), out, code)


@needs_non_root
@pytest.mark.parametrize("name", NAMES)
def test_unwritable_output_directory(inputs, tmp_path, name):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        out = locked / "scores.parquet" if name == "score" else locked
        _, argv, code = next(c for c in commands(inputs, out) if c[0] == name)
        r = invoke(argv)
        assert_refused(r, locked, code)
        assert "not writable" in r.text
        assert list(locked.iterdir()) == []
    finally:
        locked.chmod(0o700)


@pytest.mark.parametrize(
    "name", ["train", "evaluate", "compare", "infer", "scan", "features", "demo"]
)
def test_foreign_non_empty_directory_needs_overwrite(inputs, tmp_path, name):
    out = tmp_path / "busy"
    out.mkdir()
    (out / "notes.txt").write_text("mine\n")
    _, argv, code = next(c for c in commands(inputs, out) if c[0] == name)
    r = invoke(argv)
    assert_refused(r, out, code)
    assert "--overwrite" in r.text
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]


def test_features_rerun_and_overwrite_are_accepted(inputs, tmp_path):
    out = tmp_path / "features"
    assert invoke(["features", inputs["fileset"], "-o", out]).exit_code == 0
    assert is_output_of("features", out)
    r = invoke(["features", inputs["fileset"], "-o", out])  # a rerun into its own output
    assert r.exit_code == 0, r.output
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine\n")
    r = invoke(["features", inputs["fileset"], "-o", foreign, "--overwrite"])
    assert r.exit_code == 0, r.output
    assert (foreign / "notes.txt").read_text() == "mine\n" and (foreign / "qcd").is_dir()
    # train does not rerun into its own output without --overwrite
    model = tmp_path / "model"
    args = ["train", "cwola", "--features", inputs["table"], "--folds", 2, "--config",
            inputs["config"], "--window", "3300:3700", "-o", model]  # fmt: skip
    assert invoke(args).exit_code == 0
    assert invoke(args).exit_code == 1
    assert invoke([*args, "--overwrite"]).exit_code == 0


@needs_non_root
@pytest.mark.parametrize("skip", [False, True])
def test_features_does_not_blame_the_input_for_an_unwritable_output(inputs, tmp_path, skip):
    out = tmp_path / "features"
    assert invoke(["features", inputs["fileset"], "-o", out]).exit_code == 0
    (out / "qcd").chmod(0o500)  # a rerun: the dataset directory the tables go to is read-only
    try:
        r = invoke(["features", inputs["fileset"], "-o", out, *(["--skip-bad-files"] * skip)])
        assert r.exit_code == 1
        assert str(out / "qcd") in r.compact and "not writable" in r.text
        assert "skipping" not in r.text and "dijets.root" not in r.text
    finally:
        (out / "qcd").chmod(0o700)


@needs_non_root
def test_processor_write_failure_is_an_output_error_even_when_skipping_bad_files(inputs, tmp_path):
    """Below the up-front check: a chunk table that cannot be written stops the run naming the
    table, also with skip-bad-files (coffea would otherwise skip the good input as bad)."""
    from adhunt.jobs.executors import ExecutorConfig, coffea_runner
    from adhunt.processors.features import (
        DijetFeatureProcessor,
        FeatureConfig,
        FeatureInputError,
        FeatureOutputError,
    )

    out = tmp_path / "out"
    out.mkdir()
    out.chmod(0o500)
    fileset = {"qcd": {"files": {json.loads(inputs["fileset"].read_text())["qcd"][0]: "Events"}}}
    config = FeatureConfig()
    try:
        proc = DijetFeatureProcessor(config, out, skip_bad_chunks=True)
        with coffea_runner(ExecutorConfig(skip_bad_files=True), config.schema_class,
                           (FeatureInputError,)) as runner:  # fmt: skip
            with pytest.raises(Exception) as info:
                runner(fileset, proc, treename=None)
        chain, err = [], info.value
        while err is not None:
            chain.append(err)
            err = err.__cause__ or err.__context__
        assert any(isinstance(e, FeatureOutputError) for e in chain), chain
        assert "cannot write the feature table" in str(chain) and str(out) in str(chain)
    finally:
        out.chmod(0o700)


def test_core_checks(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(OutputError, match="exists and is not a directory"):
        check_output_dir(tmp_path / "f")
    with pytest.raises(OutputError, match="is a directory"):
        check_output_file(tmp_path)
    with pytest.raises(OutputError, match="is a file, not a directory"):
        check_output_file(tmp_path / "f" / "a" / "b.parquet")
    assert check_output_dir(tmp_path / "new" / "deeper") == tmp_path / "new" / "deeper"
    assert not (tmp_path / "new").exists()  # checks create nothing
    assert check_output_file(tmp_path / "f") == tmp_path / "f"  # an existing file is replaced
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "fileset.json").write_text("{}")
    assert check_output_dir(tmp_path / "d", command="generate") == tmp_path / "d"
    with pytest.raises(OutputError, match="not an earlier adhunt features output"):
        check_output_dir(tmp_path / "d", command="features")
    assert check_output_dir(tmp_path / "d", command="features", overwrite=True)
    (tmp_path / "e" / "qcd").mkdir(parents=True)  # left by a run that failed before writing
    assert check_output_dir(tmp_path / "e", command="train") == tmp_path / "e"


def test_score_leaves_no_temporary_file_when_the_write_fails(inputs, tmp_path, monkeypatch):
    import adhunt.jobs.score as score_job

    def full_disk(src, dst):  # fault injection: the final rename fails as on a full disk
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(score_job.os, "replace", full_disk)
    out = tmp_path / "scores.parquet"
    with pytest.raises(OSError, match="No space left"):
        score_job.run_score(inputs["model"], inputs["table"], out)
    assert list(tmp_path.iterdir()) == []  # neither the output nor its temporary file

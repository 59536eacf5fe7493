"""Nothing counted twice, nothing filled in silently, from fileset to model (issue 8).

* a file listed twice in a fileset (same dataset, two datasets, through a symlink) is refused by
  ``adhunt features`` and ``adhunt infer``; ``--dedupe-files`` processes it once and the counts
  equal the file's own events (``eventfiles.expected_cutflow``, counted independently);
* repeated (run, event) keys are refused by ``train``, ``score``, ``evaluate``, ``infer
  --reference`` and ``scan``, naming how many keys repeat, one of them and the datasets/files;
  ``--allow-duplicates`` accepts them with a warning;
* a chunk that lacks a column is an error naming the column and the file (not "NaN values").
"""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pandas as pd
import pytest
from clirun import invoke
from eventfiles import expected_cutflow, make_events, write_events

from adhunt.models.base import TrainConfig
from adhunt.models.registry import get_method
from adhunt.regions import SignalRegion
from adhunt.schema import FEATURE_COLUMNS
from adhunt.tables import chunk_filename, make_feature_frame, read_features, write_chunk

KINDS = ["dijet", "soft", "dijet", "monojet", "nan", "dijet", "empty"]
WINDOW = SignalRegion(3300.0, 3700.0)
FEATURES = ["mj1", "delta_mj", "tau21_j1", "tau21_j2"]
FAST = TrainConfig(backend="hgb", n_ensemble=1, hgb_max_iter=20, num_threads=1)


def write_features(root, dataset, n, seed, run, name="f.root"):
    """A feature directory in the layout of ``adhunt features`` (two chunks of one input file)."""
    rng = np.random.default_rng(seed)
    feats = {c: rng.uniform(0.1, 1.0, n) for c in FEATURE_COLUMNS}
    feats["mj1"] = rng.exponential(80, n) + 10
    feats["delta_mj"] = rng.exponential(150, n)
    feats["mjj"] = rng.uniform(2800, 4400, n)
    frame = make_feature_frame(dataset, np.full(n, run), np.arange(n), np.zeros(n, int), feats)
    half = n // 2
    write_chunk(frame.iloc[:half], root, chunk_filename(dataset, name, 0, half))
    write_chunk(frame.iloc[half:], root, chunk_filename(dataset, name, half, n))
    return root


@pytest.fixture(scope="module")
def events(tmp_path_factory):
    """One small NanoAOD-like file, a symlink to it and filesets listing it twice."""
    d = tmp_path_factory.mktemp("events")
    write_events(d / "good_a.root", make_events(KINDS, seed=7))
    os.symlink(d / "good_a.root", d / "link_a.root")
    filesets = {
        "same_dataset": {"qcd": ["good_a.root", "good_a.root"]},
        "two_datasets": {"qcd": ["good_a.root"], "sig": ["good_a.root"]},
        "symlink": {"qcd": ["good_a.root"], "sig": {"files": {"link_a.root": "Events"}}},
    }
    paths = {}
    for name, content in filesets.items():
        paths[name] = d / f"{name}.json"
        paths[name].write_text(json.dumps(content))
    return {"dir": d, "filesets": paths}


@pytest.fixture(scope="module")
def tables(tmp_path_factory):
    base = tmp_path_factory.mktemp("tables")
    clean = write_features(base / "clean", "qcd", 800, seed=1, run=1)
    # The cross-dataset case: the same events under a second dataset name.
    dup = write_features(base / "dup", "qcd", 800, seed=1, run=1)
    shutil.copytree(dup / "qcd", dup / "qcd_again")
    for path in (dup / "qcd_again").glob("*.parquet"):
        frame = pd.read_parquet(path)
        frame["dataset"] = "qcd_again"
        frame.to_parquet(path, index=False)
    return {"clean": clean, "dup": dup}


@pytest.fixture(scope="module")
def model(tables, tmp_path_factory):
    frame = read_features(tables["clean"])
    fitted = get_method("cwola")(FEATURES, WINDOW, n_folds=2, seed=3, config=FAST).fit(frame)
    return fitted.save(tmp_path_factory.mktemp("model") / "cwola")


# --------------------------------------------------------------------------------------------
# the same file twice in a fileset
# --------------------------------------------------------------------------------------------

CASES = ["same_dataset", "two_datasets", "symlink"]


@pytest.mark.parametrize("case", CASES)
def test_features_refuses_a_file_listed_twice(events, case, tmp_path):
    out = tmp_path / "out"
    r = invoke(["features", events["filesets"][case], "--output", out, "--chunksize", 3])
    assert r.exit_code == 1, r.output
    assert "same input file more than once" in r.text
    later = "link_a.root" if case == "symlink" else "good_a.root"
    second = "qcd" if case == "same_dataset" else "sig"
    assert f"qcd: 'good_a.root' and {second}: '{later}'" in r.text
    assert not out.exists()  # refused before any work


@pytest.mark.parametrize("case", CASES)
def test_features_dedupe_files_processes_the_file_once(events, case, tmp_path):
    out = tmp_path / "out"
    r = invoke(
        ["features", events["filesets"][case], "-o", out, "--chunksize", 3, "--dedupe-files"]
    )
    assert r.exit_code == 0, r.output
    assert "dropped" in r.text and "the same file as qcd: 'good_a.root'" in r.text
    cutflow = json.loads((out / "cutflow.json").read_text())["cutflow"]
    assert cutflow["qcd"] == expected_cutflow(KINDS)
    assert all(n == 0 for n in cutflow.get("sig", {}).values())
    table = read_features(out)
    assert len(table) == KINDS.count("dijet")
    assert not table.duplicated(["run", "event"]).any()


@pytest.mark.parametrize("case", CASES)
def test_infer_refuses_a_file_listed_twice(events, model, tables, case, tmp_path):
    r = invoke(["infer", events["filesets"][case], "--model", f"m={model}", "-o", tmp_path / "o",
                "--reference", tables["clean"], "--reference-selection", "all"])  # fmt: skip
    assert r.exit_code == 2, r.output
    assert "same input file more than once" in r.text and "qcd: 'good_a.root' and" in r.text
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("case", ["two_datasets", "symlink"])
def test_infer_dedupe_files_counts_each_event_once(events, model, tables, case, tmp_path):
    out = tmp_path / "o"
    r = invoke(["infer", events["filesets"][case], "--model", f"m={model}", "-o", out,
                "--reference", tables["clean"], "--reference-selection", "all",
                "--chunksize", 3, "--dedupe-files"])  # fmt: skip
    assert r.exit_code == 0, r.output
    doc = json.loads((out / "infer.json").read_text())
    assert doc["cutflow"]["qcd"] == expected_cutflow(KINDS)
    assert doc["scored"] == {"qcd": KINDS.count("dijet"), "sig": 0}
    assert doc["skipped"] == []
    from adhunt.histograms import read_histogram_json

    h = read_histogram_json(out / "histograms.json")
    assert h.sum(flow=True).value == KINDS.count("dijet")  # one model, unit weights


# --------------------------------------------------------------------------------------------
# repeated (run, event) keys
# --------------------------------------------------------------------------------------------


def _refused(r, what):
    assert r.exit_code == 2, r.output
    assert f"{what}: 800 (run, event) key(s) occur more than once (1600 rows)" in r.text
    assert "e.g. run 1, event 0 in dataset(s) qcd, qcd_again" in r.text
    assert "qcd_again/f-" in r.text  # the files holding the example key
    assert "--allow-duplicates" in r.text


def test_train_refuses_duplicate_rows_unless_allowed(tables, tmp_path):
    fast = tmp_path / "fast.yaml"
    fast.write_text("backend: hgb\nn_ensemble: 1\nhgb_max_iter: 20\nnum_threads: 1\n")
    args = ["train", "cwola", "--features", tables["dup"], "--output", tmp_path / "m",
            "--window", "3300:3700", "--folds", 2, "--features-list", ",".join(FEATURES),
            "--config", fast]  # fmt: skip
    _refused(invoke(args), "--features")
    assert not (tmp_path / "m").exists()
    r = invoke([*args, "--allow-duplicates"])
    assert r.exit_code == 0, r.output
    assert "used as they are (--allow-duplicates)" in r.text
    from adhunt.models.base import ResonantModel

    assert ResonantModel.load(tmp_path / "m").n_folds == 2


def test_score_refuses_duplicate_rows_unless_allowed(tables, model, tmp_path):
    out = tmp_path / "s.parquet"
    args = ["score", model, "--features", tables["dup"], "--output", out]
    _refused(invoke(args), "--features")
    assert not out.exists()
    r = invoke([*args, "--allow-duplicates"])
    assert r.exit_code == 0, r.output
    assert len(pd.read_parquet(out)) == 1600


def test_evaluate_infer_and_scan_refuse_duplicate_rows(tables, model, events, tmp_path):
    labelled = tmp_path / "labelled"
    shutil.copytree(tables["dup"], labelled)
    _refused(invoke(["evaluate", model, "--test", labelled, "-o", tmp_path / "e"]), "--test")
    fileset = tmp_path / "fs.json"
    fileset.write_text(json.dumps({"qcd": [str(events["dir"] / "good_a.root")]}))
    args = ["infer", fileset, "--model", f"m={model}", "-o", tmp_path / "i",
            "--reference", tables["dup"], "--reference-selection", "all"]  # fmt: skip
    _refused(invoke(args), "--reference")
    r = invoke([*args, "--allow-duplicates"])
    assert r.exit_code == 0, r.output
    assert (
        json.loads((tmp_path / "i" / "infer.json").read_text())["reference"]["m"]["n_events"]
        == 1600
    )
    _refused(invoke(["scan", "--features", tables["dup"], "-o", tmp_path / "s",
                     "--windows", "3300:3700"]), "--features")  # fmt: skip


def test_scan_inputs_accept_duplicates_when_allowed(tables, caplog):
    from adhunt.bumphunt import ScanConfig
    from adhunt.jobs.scan import load_inputs

    data, _, info = load_inputs(tables["dup"], ScanConfig(), allow_duplicates=True)
    assert len(data) == info["n_events"] == 1600
    assert "800 (run, event) key(s) occur more than once" in caplog.text


# --------------------------------------------------------------------------------------------
# missing columns
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("column", ["tau21_j1", "tau32_j2"], ids=["model-input", "not-an-input"])
def test_a_chunk_without_a_column_names_the_column_and_the_file(tables, column, tmp_path):
    """A chunk lacking a column: before, concatenation filled it with NaN (a model input:
    "has N NaN/inf values", no file; any other column: silently)."""
    broken = tmp_path / "features"
    shutil.copytree(tables["clean"], broken)
    chunk = sorted((broken / "qcd").glob("*.parquet"))[1]
    pd.read_parquet(chunk).drop(columns=[column]).to_parquet(chunk, index=False)
    r = invoke(["train", "cwola", "--features", broken, "--output", tmp_path / "m",
                "--window", "3300:3700", "--folds", 2, "--features-list", ",".join(FEATURES)])  # fmt: skip
    assert r.exit_code == 2, r.output
    assert f"lacks column(s) ['{column}']" in r.text and chunk.name in r.text
    assert "NaN" not in r.text


def test_compare_and_combine_refuse_duplicate_rows_unless_allowed(tables, model, tmp_path):
    labelled = tmp_path / "labelled"
    shutil.copytree(tables["dup"], labelled)
    args = ["compare", model, "--features", labelled, "-o", tmp_path / "c"]
    _refused(invoke(args), "--test")
    r = invoke([*args, "--allow-duplicates"])  # read as it is; the table has no signal
    assert "used as they are (--allow-duplicates)" in r.text, r.output
    assert "need both classes" in r.text, r.output
    combine = ["train", "combine", "--models", f"{model},{model}", "--features", tables["dup"],
               "-o", tmp_path / "k"]  # fmt: skip
    r = invoke(combine)  # the same model twice is refused before any table is read
    assert r.exit_code == 2 and "lists a model twice" in r.text, r.output

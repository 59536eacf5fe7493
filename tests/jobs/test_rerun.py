"""Run records and ``adhunt rerun``: every output records what made it, and rerun repeats it.

Real chain on small NanoAOD-like ROOT files (``tests/eventfiles.py``): ``features`` -> ``train``
(cwola, fast HGB) -> ``score`` and ``infer``; each is rerun from its record into a new output and
must give the same tables, scores and histograms.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import typer
from clirun import invoke
from eventfiles import make_events, write_events

from adhunt.runrecord import (
    RECORD_NAME,
    RECORD_SUFFIX,
    RunRecord,
    RunRecordError,
    current_environment,
    git_state,
    read_record,
)
from adhunt.tables import read_table


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    base = tmp_path_factory.mktemp("rerun")
    events = write_events(base / "dijets.root", make_events(["dijet"] * 300, seed=31))
    fileset = base / "fileset.json"
    fileset.write_text(json.dumps({"qcd": [str(events)]}))
    features = base / "features"
    r = invoke(["features", fileset, "-o", features, "--chunksize", 150])
    assert r.exit_code == 0, r.output
    mjj = read_table(features)["mjj"].to_numpy()
    low, high = np.quantile(mjj, [0.4, 0.6])
    config = base / "fast.yaml"
    config.write_text("n_ensemble: 1\nhgb_max_iter: 10\nnum_threads: 1\n")
    model = base / "model"
    r = invoke(["train", "cwola", "--features", features, "-o", model, "--seed", 5,
                "--window", f"{low:.1f}:{high:.1f}", "--folds", 2, "--config", config])  # fmt: skip
    assert r.exit_code == 0, r.output
    return {"base": base, "fileset": fileset, "features": features, "model": model,
            "config": config}  # fmt: skip


def test_features_record_holds_the_resolved_run(chain):
    record = read_record(chain["features"])
    assert record.command == "features"
    options = record.options
    # every parameter of the command, defaults included, paths absolute
    assert options["output"] == str(chain["features"]) and os.path.isabs(options["fileset"])
    assert options["chunksize"] == 150 and options["executor"] == "iterative"
    assert options["radius"] is None and options["overwrite"] is False
    env = record.environment
    assert env == current_environment()
    assert env.packages["numpy"] == np.__version__ and env.packages["awkward"]
    revision, dirty = git_state()
    assert env.git_revision == revision and env.git_dirty == dirty
    assert record.started <= record.finished and record.cwd == os.getcwd()
    assert RunRecord.from_dict(record.to_dict()) == record  # one writer, one reader


def test_git_state_is_that_of_the_checkout_or_none(tmp_path):
    here = Path(__file__).resolve().parents[2]
    revision, dirty = git_state(str(here))
    try:
        expected = subprocess.run(
            ["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True, text=True,
            check=True,
        ).stdout.strip()  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        expected = None
    assert revision == expected and (dirty is None) == (expected is None)
    assert git_state(str(tmp_path)) == (None, None)  # not a git checkout: None, never an error


def test_train_record_has_the_seeds_and_config_content(chain):
    record = read_record(chain["model"])
    assert record.command == "train" and record.seeds == {"seed": 5}
    assert record.options["method"] == "cwola" and record.options["folds"] == 2
    assert record.config_files["config"]["content"] == {
        "n_ensemble": 1, "hgb_max_iter": 10, "num_threads": 1,
    }  # fmt: skip


def test_rerun_features_gives_identical_tables(chain, tmp_path):
    out = tmp_path / "again"
    r = invoke(["rerun", chain["features"], "--output", out])
    assert r.exit_code == 0, r.output
    pd.testing.assert_frame_equal(read_table(chain["features"]), read_table(out))
    record = read_record(out)
    assert record.rerun_of == str(chain["features"]) and record.options["output"] == str(out)
    first = read_record(chain["features"]).options
    assert {**first, "output": str(out)} == record.options
    # into its own output (--overwrite): processed again, not resumed
    r = invoke(["rerun", out, "--overwrite"])
    assert r.exit_code == 0, r.output
    assert "already done" not in r.text and read_record(out).options["restart"] is True
    pd.testing.assert_frame_equal(read_table(chain["features"]), read_table(out))


def test_rerun_train_then_score_gives_identical_scores(chain, tmp_path):
    again = tmp_path / "model"
    r = invoke(["rerun", chain["model"], "-o", again])
    assert r.exit_code == 0, r.output
    scores = {}
    for name, model in (("first", chain["model"]), ("again", again)):
        out = tmp_path / f"{name}.parquet"
        r = invoke(["score", model, "--features", chain["features"], "-o", out])
        assert r.exit_code == 0, r.output
        scores[name] = pd.read_parquet(out)
    assert len(scores["first"]) == 300
    pd.testing.assert_frame_equal(scores["first"], scores["again"])
    # score writes a file: its record sits next to it, and reruns too
    first = tmp_path / "first.parquet"
    assert (tmp_path / ("first.parquet" + RECORD_SUFFIX)).is_file()
    r = invoke(["rerun", first, "-o", tmp_path / "third.parquet"])
    assert r.exit_code == 0, r.output
    pd.testing.assert_frame_equal(scores["first"], pd.read_parquet(tmp_path / "third.parquet"))


def test_rerun_infer_gives_identical_histograms(chain, tmp_path):
    out = tmp_path / "infer"
    r = invoke(["infer", chain["fileset"], "-m", f"cwola={chain['model']}", "-o", out,
                "--efficiencies", "0.5,0.2", "--chunksize", 100])  # fmt: skip
    assert r.exit_code == 0, r.output
    again = tmp_path / "infer-again"
    r = invoke(["rerun", out, "-o", again])
    assert r.exit_code == 0, r.output
    first = json.loads((out / "histograms.json").read_text())
    second = json.loads((again / "histograms.json").read_text())
    assert first == second and first  # the same counts in every bin of every cut
    assert read_record(again).options["model"] == [f"cwola={chain['model']}"]


def test_rerun_refuses_to_overwrite_the_output_without_overwrite(chain, tmp_path):
    r = invoke(["rerun", chain["model"]])
    assert r.exit_code == 1 and "give --output NEW, or --overwrite" in r.text
    assert "Traceback" not in r.output


def test_failed_run_keeps_the_earlier_record(chain, tmp_path):
    out = tmp_path / "model"
    r = invoke(["rerun", chain["model"], "-o", out])
    assert r.exit_code == 0, r.output
    before = (out / RECORD_NAME).read_bytes()
    # the same command into the same output fails (a non-empty directory without --overwrite)
    r = invoke(["train", "cwola", "--features", chain["features"], "-o", out])
    assert r.exit_code != 0
    assert (out / RECORD_NAME).read_bytes() == before
    # a failure after the output check (a missing --features table) writes no record either
    r = invoke(["train", "cwola", "--features", tmp_path / "absent", "-o", tmp_path / "m2"])
    assert r.exit_code != 0 and not (tmp_path / "m2" / RECORD_NAME).exists()


def test_missing_or_foreign_records_are_one_line_errors(chain, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    r = invoke(["rerun", empty, "-o", tmp_path / "x"])
    assert r.exit_code == 1 and f"has no run record ({RECORD_NAME} not found)" in r.text
    assert "Traceback" not in r.output
    r = invoke(["rerun", tmp_path / "absent", "-o", tmp_path / "x"])
    assert r.exit_code == 1 and "absent does not exist" in r.text
    # a JSON of another writer under the record's name
    other = tmp_path / "other"
    other.mkdir()
    (other / RECORD_NAME).write_text(json.dumps({"format": "something else"}))
    r = invoke(["rerun", other, "-o", tmp_path / "x"])
    assert r.exit_code == 1 and "is not an adhunt run record" in r.text
    # a record of another command: the options of features are no options of train
    data = read_record(chain["features"]).to_dict()
    data["command"] = "train"
    (other / RECORD_NAME).write_text(json.dumps(data))
    r = invoke(["rerun", other, "-o", tmp_path / "x"])
    assert (
        r.exit_code == 1 and "--chunksize" in r.text and "not option(s) of adhunt train" in r.text
    )
    # a value the command refuses (an edited record): click's one-line message
    data["command"] = "features"
    data["options"]["chunksize"] = "many"
    (other / RECORD_NAME).write_text(json.dumps(data))
    r = invoke(["rerun", other, "-o", tmp_path / "x"])
    assert r.exit_code == 1 and "Invalid value for '--chunksize'" in r.text
    assert "Traceback" not in r.output
    data["command"] = "frobnicate"
    (other / RECORD_NAME).write_text(json.dumps(data))
    r = invoke(["rerun", other, "-o", tmp_path / "x"])
    assert r.exit_code == 1 and "'frobnicate', which adhunt cannot rerun" in r.text
    assert not (tmp_path / "x").exists()
    with pytest.raises(RunRecordError, match="unknown run record field"):
        RunRecord.from_dict({**read_record(chain["model"]).to_dict(), "colour": 1})


def test_rerun_warns_about_a_changed_environment_and_config(chain, tmp_path):
    moved = tmp_path / "model"
    import shutil

    shutil.copytree(chain["model"], moved)
    data = json.loads((moved / RECORD_NAME).read_text())
    data["environment"]["packages"]["numpy"] = "1.0.0"
    data["environment"]["adhunt_version"] = "0.0.1"
    # the config file is gone: the rerun uses the content recorded with it
    data["options"]["config"] = str(tmp_path / "gone.yaml")
    data["config_files"]["config"]["path"] = str(tmp_path / "gone.yaml")
    (moved / RECORD_NAME).write_text(json.dumps(data))
    out = tmp_path / "again"
    r = invoke(["rerun", moved, "-o", out])
    assert r.exit_code == 0, r.output
    assert f"numpy: recorded 1.0.0, now {np.__version__}" in r.text
    assert "adhunt version: recorded 0.0.1" in r.text
    assert "gone.yaml is gone since the run; using the content recorded with it" in r.text
    for name in ("first", "again"):
        model = chain["model"] if name == "first" else out
        r = invoke(["score", model, "--features", chain["features"], "-o", tmp_path / f"{name}.pq"])
        assert r.exit_code == 0, r.output
    pd.testing.assert_frame_equal(
        pd.read_parquet(tmp_path / "first.pq"), pd.read_parquet(tmp_path / "again.pq")
    )


# --- adhunt --analysis FILE ------------------------------------------------------------------


def analysis_file(chain, tmp_path, window):
    path = tmp_path / "analysis.yaml"
    path.write_text(f"""
seed: 5
fileset: {chain["fileset"]}
chunksize: 150
features:
  output: {tmp_path / "features"}
  config: {{radius: 0.8, trigger: {{pt_min: 1200.0, abs_eta_max: 2.5}}}}
methods:
  cwola: {{n_ensemble: 1, hgb_max_iter: 10, num_threads: 1}}
train:
  method: cwola
  features: {chain["features"]}
  output: {tmp_path / "model"}
  window: "{window}"
  folds: 2
""")
    return path


def test_analysis_file_runs_features_and_its_record_reruns(chain, tmp_path):
    window = read_record(chain["model"]).options["window"]
    analysis = analysis_file(chain, tmp_path, window)
    r = invoke(["--analysis", analysis, "features"])
    assert r.exit_code == 0, r.output
    # the same run with flags, no analysis file
    flags = tmp_path / "flags"
    r = invoke(["features", chain["fileset"], "-o", flags, "--chunksize", 150, "--radius", 0.8])
    assert r.exit_code == 0, r.output
    table = read_table(tmp_path / "features")
    pd.testing.assert_frame_equal(table, read_table(flags))
    assert not table.equals(read_table(chain["features"]))  # R = 0.8 is not the default 1.0
    record = read_record(tmp_path / "features")
    assert record.analysis_file == str(analysis)
    assert record.analysis["features"]["config"]["radius"] == 0.8
    assert record.analysis["features"]["chunksize"] == 150  # shared key, resolved into it
    assert record.config_files["config"]["content"]["radius"] == 0.8
    assert record.config_files["config"]["inline"] is True
    assert record.options["chunksize"] == 150 and record.options["fileset"] == str(chain["fileset"])
    assert record.seeds == {"analysis.seed": 5, "analysis.train.seed": 5}
    # the inline configuration was a temporary file: the rerun uses the recorded content
    again = tmp_path / "again"
    r = invoke(["rerun", tmp_path / "features", "-o", again])
    assert r.exit_code == 0, r.output
    assert "WARNING" not in r.text  # an inline configuration is no file that went missing
    pd.testing.assert_frame_equal(table, read_table(again))
    rerun_config = read_record(again).config_files["config"]
    assert rerun_config == {**record.config_files["config"], "path": rerun_config["path"]}
    assert read_record(again).analysis == record.analysis


def test_command_line_flags_override_the_analysis_file(chain, tmp_path):
    window = read_record(chain["model"]).options["window"]
    analysis = analysis_file(chain, tmp_path, window)
    other = tmp_path / "other"
    r = invoke(["--analysis", analysis, "features", "--chunksize", 100, "-o", other])
    assert r.exit_code == 0, r.output
    options = read_record(other).options
    assert options["chunksize"] == 100 and options["output"] == str(other)
    assert not (tmp_path / "features").exists()
    # 300 events in chunks of 100 (the flag), not 150 (the file): one table per chunk
    chunks = sorted(p.name for p in (other / "qcd").glob("*.parquet"))
    assert [c.rsplit("_", 1)[1] for c in chunks] == [
        "000000000000-000000000100.parquet",
        "000000000100-000000000200.parquet",
        "000000000200-000000000300.parquet",
    ]


def test_analysis_methods_section_sets_the_hyper_parameters(chain, tmp_path):
    window = read_record(chain["model"]).options["window"]
    analysis = analysis_file(chain, tmp_path, window)
    r = invoke(["--analysis", analysis, "train"])
    assert r.exit_code == 0, r.output
    from adhunt.config import config_to_dict
    from adhunt.models.base import TrainConfig

    record = read_record(tmp_path / "model")
    resolved = TrainConfig(n_ensemble=1, hgb_max_iter=10, num_threads=1)  # [methods] filled
    assert record.config_files["config"]["content"] == config_to_dict(resolved)
    assert record.options["seed"] == 5 and record.options["folds"] == 2
    # the same model as the chain's, trained with flags and a config file
    scores = {}
    for name, model in (("flags", chain["model"]), ("analysis", tmp_path / "model")):
        out = tmp_path / f"{name}.parquet"
        r = invoke(["score", model, "--features", chain["features"], "-o", out])
        assert r.exit_code == 0, r.output
        scores[name] = pd.read_parquet(out)
    pd.testing.assert_frame_equal(scores["flags"], scores["analysis"])
    # an explicit --config wins over [methods]
    r = invoke(["--analysis", analysis, "train", "-o", tmp_path / "m2", "--config", chain["config"],
                "--folds", 3])  # fmt: skip
    assert r.exit_code == 0, r.output
    options = read_record(tmp_path / "m2").options
    assert options["config"] == str(chain["config"]) and options["folds"] == 3


def test_analysis_file_errors_are_one_line(chain, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("features: {chunksiz: 5}\n")
    r = invoke(["--analysis", bad, "features", "-o", tmp_path / "o"])
    assert r.exit_code == 1 and "unknown key 'chunksiz' in section [features]" in r.text
    assert "Traceback" not in r.output and not (tmp_path / "o").exists()
    r = invoke(["--analysis", tmp_path / "absent.yaml", "features"])
    assert r.exit_code == 1 and "analysis file not found" in r.text


# --- the other commands ----------------------------------------------------------------------


def test_generate_and_fileset_record_and_rerun(tmp_path):
    import uproot

    out = tmp_path / "gen"
    r = invoke(["generate", "-p", "qcd", "-n", 20, "-s", 3, "-o", out, "--events-per-file", 20,
                "--batch-size", 20])  # fmt: skip
    assert r.exit_code == 0, r.output
    assert read_record(out).seeds == {"seed": 3}
    again = tmp_path / "gen-again"
    r = invoke(["rerun", out, "-o", again])
    assert r.exit_code == 0, r.output
    first, second = sorted(out.glob("*.root")), sorted(again.glob("*.root"))
    assert [p.name for p in first] == [p.name for p in second] and first
    for a, b in zip(first, second, strict=True):
        ta, tb = uproot.open(a)["Events"], uproot.open(b)["Events"]
        assert ta.keys() == tb.keys()
        for key in ("run", "event", "PFCands_pt", "PFCands_eta"):
            assert ta[key].array().tolist() == tb[key].array().tolist()
    # fileset writes a file: its record sits next to it
    fileset = tmp_path / "fs" / "fileset.json"
    r = invoke(["fileset", out, "--dataset", "qcd", "-o", fileset])
    assert r.exit_code == 0, r.output
    record = read_record(fileset)
    assert (tmp_path / "fs" / ("fileset.json" + RECORD_SUFFIX)).is_file()
    assert record.command == "fileset" and record.options["sources"] == [str(out)]
    r = invoke(["rerun", fileset, "-o", tmp_path / "fs2.json"])
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "fs2.json").read_text()) == json.loads(fileset.read_text())


def test_dry_run_writes_no_record(chain, tmp_path):
    before = (chain["features"] / RECORD_NAME).read_bytes()
    cluster = ["--cluster", "slurm", "--cores", 2, "--memory", "2GB", "--dry-run"]
    for out in (tmp_path / "new", chain["features"]):
        r = invoke(["features", chain["fileset"], "-o", out, *cluster])
        assert r.exit_code == 0, r.output
    assert not (tmp_path / "new").exists()
    assert (chain["features"] / RECORD_NAME).read_bytes() == before


def test_a_finished_sculpting_check_is_recorded_whatever_its_verdict(tmp_path):
    """sculpting exits 1 when the cut sculpts: a finished run with a result, so it is recorded;
    exit 1 of any other command is a failure and is not."""
    from adhunt.jobs.rerun import recorded

    def finishes_with_1(output: Path) -> None:
        output.mkdir()
        (output / "sculpting.json").write_text("{}")
        raise typer.Exit(code=1)

    for command, out in (("sculpting", tmp_path / "s"), ("train", tmp_path / "t")):
        with pytest.raises(typer.Exit):
            recorded(command, finishes_with_1)(output=out)
    assert read_record(tmp_path / "s").command == "sculpting"
    assert not (tmp_path / "t" / RECORD_NAME).exists()


def test_recorded_commands_have_the_options_of_the_plain_functions():
    """The record wrapper keeps each command's signature: typer builds the same options."""
    import importlib

    from adhunt.jobs.cli import _COMMANDS, app

    wrapped = typer.main.get_command(app)
    for name, (module, function) in _COMMANDS.items():
        plain = typer.Typer()
        plain.command(name)(getattr(importlib.import_module(module), function))
        plain.command("_other")(lambda: None)  # a group, so the command keeps its name
        bare = typer.main.get_command(plain).commands[name]

        def describe(command):
            return [(p.name, tuple(p.opts), tuple(getattr(p, "secondary_opts", ())), p.required,
                     repr(p.default), p.multiple if hasattr(p, "multiple") else None)
                    for p in command.params]  # fmt: skip

        assert describe(wrapped.commands[name]) == describe(bare), name


def test_scan_from_an_analysis_file_reruns_to_the_same_results(tmp_path):
    """Windows, cuts and the method's hyper-parameters inline in one file; the rerun of its
    record gives the same scan.json (up to wall times)."""
    from adhunt.schema import FEATURE_COLUMNS
    from adhunt.tables import chunk_filename, make_feature_frame, write_chunk

    rng = np.random.default_rng(4)
    n = 6000
    feats = {
        c: rng.uniform(0.1, 1.0, n)
        for c in FEATURE_COLUMNS
        if c not in ("dataset", "run", "luminosityBlock", "event", "truth_label", "weight")
    }
    feats["mjj"] = 2800.0 + rng.exponential(600.0, n)  # a falling spectrum
    feats["mj1"] = rng.exponential(60.0, n) + 10.0
    feats["delta_mj"] = rng.exponential(100.0, n)
    frame = make_feature_frame("qcd", np.ones(n), np.arange(n), np.zeros(n, int), feats)
    table = tmp_path / "table"
    write_chunk(frame, table, chunk_filename("qcd", "synthetic.root", 0, n))
    analysis = tmp_path / "analysis.yaml"
    analysis.write_text(f"""
seed: 11
efficiencies: "0.2"
methods:
  cwola: {{n_ensemble: 1, hgb_max_iter: 20, num_threads: 1}}
scan:
  features: {table}
  output: {tmp_path / "scan"}
  no_plots: true
  config:
    folds: 2
    n_toys: 5
    windows: [[3300.0, 3700.0]]
    fit_range: [2800.0, 8000.0]
    min_sr_events: 20
""")
    r = invoke(["--analysis", analysis, "scan"])
    assert r.exit_code == 0, r.output
    report = json.loads((tmp_path / "scan" / "scan.json").read_text())
    assert report["config"]["windows"] == [[3300.0, 3700.0]] and report["config"]["seed"] == 11
    assert report["method_config"]["hgb_max_iter"] == 20  # from [methods]
    assert report["cuts"] == ["no_cut", "eff_0.2"]
    (window,) = report["windows"]
    assert window["n_sr"] > 0 and window["cuts"]["eff_0.2"]["status"] == "ok"
    r = invoke(["rerun", tmp_path / "scan", "-o", tmp_path / "again"])
    assert r.exit_code == 0, r.output
    again = json.loads((tmp_path / "again" / "scan.json").read_text())

    def comparable(doc):
        out = {k: v for k, v in doc.items() if k not in ("timing", "executor", "output")}
        # the path of the (temporary) method configuration; its content is "method_config"
        out["config"] = {k: v for k, v in doc["config"].items() if k != "method_config"}
        return out

    assert comparable(again) == comparable(report)

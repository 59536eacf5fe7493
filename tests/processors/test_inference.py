"""Distributed inference into histograms (``adhunt infer``): identical on every executor, equal to an
independent computation (feature tables + ``model.score`` + ``np.histogram``), robust to a worker
killed mid-run, and clear about bad input."""

from __future__ import annotations

import json
import pickle
import shutil
import signal
from pathlib import Path

import numpy as np
import pytest
from daskprocs import dask_processes as start_dask_processes
from daskprocs import kill_worker_when_holding
from eventfiles import corrupt_baskets, expected_cutflow, make_events, write_events
from typer.testing import CliRunner

from adhunt.histograms import (
    DEFAULT_MJJ_EDGES,
    NO_CUT_LABEL,
    cut_label,
    cut_spectra,
    efficiency_edges,
    efficiency_fill_values,
    make_inference_histogram,
    read_histogram_json,
    root_cut_name,
    thresholds_from_scores,
)
from adhunt.jobs.executors import ExecutorConfig
from adhunt.jobs.features import run_features
from adhunt.jobs.infer import read_root_spectra, run_infer
from adhunt.models.artifact import ArtifactError
from adhunt.models.base import ResonantModel, TrainConfig
from adhunt.models.registry import get_method
from adhunt.processors.features import FeatureInputError
from adhunt.processors.inference import InferenceError, clear_model_cache
from adhunt.regions import SignalRegion
from adhunt.tables import read_features, write_chunk

EFFS = (0.2, 0.05, 0.01)
CHUNK = 100  # 2000 events -> 20 chunks: many more chunks than workers
WINDOW = SignalRegion(3000.0, 3600.0)
FAST = TrainConfig(backend="hgb", n_ensemble=1, hgb_max_iter=30, num_threads=1)


# --------------------------------------------------------------------------------------------
# fixtures: features of the generated samples, two small trained models, the iterative run
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def features_dir(fileset_path, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("inference-features")
    run_features(fileset_path, out, chunksize=500)
    return out


@pytest.fixture(scope="module")
def table(features_dir):
    return read_features(features_dir)


def _train(table, features, seed, directory: Path, provenance: Path | None) -> Path:
    model = get_method("cwola")(features, WINDOW, n_folds=3, seed=seed, config=FAST).fit(table)
    extra = {"provenance": {"features_dir": str(provenance)}} if provenance else None
    return model.save(directory, extra=extra)


@pytest.fixture(scope="module")
def models(table, features_dir, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("inference-models")
    return {
        "cwola_a": _train(
            table, ["mj1", "delta_mj", "tau21_j1", "tau21_j2"], 1, root / "a", features_dir
        ),
        "cwola_b": _train(table, ["mj2", "tau32_j1", "tau21_j2"], 2, root / "b", features_dir),
    }


@pytest.fixture(scope="module")
def iterative(fileset_path, models, features_dir, tmp_path_factory):
    clear_model_cache()
    return run_infer(
        fileset_path,
        models,
        tmp_path_factory.mktemp("infer-iterative"),
        ExecutorConfig("iterative", chunksize=CHUNK),
        reference=features_dir,
        efficiencies=EFFS,
    )


def _same(a, b) -> None:
    """Identical histograms (exact counts and variances, same axes and categories)."""
    assert list(a.axes.name) == list(b.axes.name)
    for ax_a, ax_b in zip(a.axes, b.axes, strict=True):
        assert list(ax_a) == list(ax_b)
    va, vb = a.view(flow=True), b.view(flow=True)
    np.testing.assert_array_equal(va["value"], vb["value"])
    np.testing.assert_array_equal(va["variance"], vb["variance"])


# --------------------------------------------------------------------------------------------
# the independent computation
# --------------------------------------------------------------------------------------------


def test_equals_direct_scoring_of_feature_tables(iterative, table, models):
    """Histograms == feature tables scored with model.score and histogrammed with numpy."""
    edges = np.asarray(DEFAULT_MJJ_EDGES)
    sr = WINDOW.in_sr(table["mjj"].to_numpy())
    assert iterative.scored == {"qcd": 1500, "wprime": 500}
    for name, path in models.items():
        model = ResonantModel.load(path)
        scores = model.score(table, mode="kfold")
        thresholds = [iterative.thresholds[name][cut_label(e)] for e in EFFS]
        # thresholds: the round(e n) highest reference (SR) scores pass
        ref = np.sort(scores[sr])[::-1]
        for e, t in zip(EFFS, thresholds, strict=True):
            k = round(e * sr.sum())
            assert ref[k - 1] == t and (scores[sr] >= t).sum() >= k
        for dataset in (None, "qcd", "wprime"):
            rows = np.ones(len(table), bool) if dataset is None else table["dataset"] == dataset
            spectra = cut_spectra(iterative.histogram, name, dataset)
            assert list(spectra) == [NO_CUT_LABEL, "20%", "5%", "1%"]
            cuts = {
                NO_CUT_LABEL: -np.inf,
                **{cut_label(e): t for e, t in zip(EFFS, thresholds, strict=True)},
            }
            for label, t in cuts.items():
                mjj = table["mjj"].to_numpy()[rows & (scores >= t)]
                expected, _ = np.histogram(mjj, bins=edges)
                h = spectra[label]
                np.testing.assert_array_equal(h.values(), expected)
                flow = h.values(flow=True)
                assert flow[0] == (mjj < edges[0]).sum() and flow[-1] == (mjj >= edges[-1]).sum()
                np.testing.assert_array_equal(h.variances(), expected)


def test_ensemble_mode_equals_direct_scoring(fileset_path, models, table, features_dir, tmp_path):
    """``mode="ensemble"`` scores every event with the mean of the folds (for independent data)."""
    result = run_infer(
        fileset_path,
        {"cwola_a": models["cwola_a"]},
        tmp_path,
        ExecutorConfig(chunksize=500),
        reference=features_dir,
        efficiencies=(0.1,),
        mode="ensemble",
        reference_selection="all",
    )
    scores = ResonantModel.load(models["cwola_a"]).score(table, mode="ensemble")
    t = result.thresholds["cwola_a"]["10%"]
    assert t == np.sort(scores)[::-1][round(0.1 * len(scores)) - 1]
    expected, _ = np.histogram(table["mjj"][scores >= t], bins=np.asarray(DEFAULT_MJJ_EDGES))
    np.testing.assert_array_equal(
        cut_spectra(result.histogram, "cwola_a")["10%"].values(), expected
    )


def test_every_event_counted_once(iterative, features_dir):
    cutflow = json.loads((features_dir / "cutflow.json").read_text())["cutflow"]
    assert iterative.cutflow == cutflow
    h = iterative.histogram
    for d, dataset in enumerate(h.axes["dataset"]):
        for m in range(len(h.axes["model"])):
            # sum over bkg_eff and mjj bins, flow included
            assert h.view(flow=True)["value"][d, m].sum() == iterative.scored[dataset]
    assert iterative.model_loads == {"cwola_a": 1, "cwola_b": 1}  # once for 20 chunks
    assert iterative.devices == {"cwola_a": ["cpu"], "cwola_b": ["cpu"]}
    assert h.metadata["thresholds"] == iterative.thresholds


def test_cutflow_with_rejected_events(models, features_dir, tmp_path):
    """Hand-made events failing each cut: the cutflow adds up and only dijets are scored."""
    kinds = ["dijet", "soft", "monojet", "nan", "empty", "dijet", "dijet"]
    path = write_events(tmp_path / "events.root", make_events(kinds, seed=5))
    result = run_infer(
        {"toy": [str(path)]},
        {"cwola_a": models["cwola_a"]},
        tmp_path / "out",
        ExecutorConfig(chunksize=3),
        reference=features_dir,
        efficiencies=EFFS,
    )
    assert result.cutflow["toy"] == expected_cutflow(kinds)
    assert result.scored["toy"] == kinds.count("dijet") == result.histogram.sum(flow=True).value
    assert any("non-finite" in w for w in result.warnings)


def test_weights_from_file_to_table_to_histogram(models, features_dir, tmp_path):
    """genWeight -> feature table ``weight`` -> histogram: the histogram's sum of weights equals
    the sum of genWeight of the selected events, and its variances the sum of squares."""
    kinds = ["dijet", "soft", "dijet", "monojet", "dijet", "nan", "dijet"]
    columns = make_events(kinds, seed=12)
    gen = np.array([1.5, 7.0, -0.5, 3.0, 2.25, 9.0, 0.75], np.float32)
    columns["genWeight"] = gen
    path = write_events(tmp_path / "mc.root", columns)
    run_features({"mc": [str(path)]}, tmp_path / "features")
    table = read_features(tmp_path / "features")
    selected = np.array([k == "dijet" for k in kinds])
    np.testing.assert_array_equal(table["weight"], gen[selected])
    result = run_infer(
        {"mc": [str(path)]},
        {"cwola_a": models["cwola_a"]},
        tmp_path / "out",
        ExecutorConfig(chunksize=3),
        reference=features_dir,
        efficiencies=EFFS,
    )
    total = result.histogram.sum(flow=True)
    assert result.scored["mc"] == 4
    assert total.value == pytest.approx(float(gen[selected].astype(np.float64).sum()), rel=1e-12)
    assert total.variance == pytest.approx(float((gen[selected].astype(np.float64) ** 2).sum()))


def test_bad_input_files(models, features_dir, tmp_path):
    """Missing/corrupt input files: a clear error naming the file, or skipped and reported."""
    kinds = ["dijet", "soft", "dijet"]
    good = write_events(tmp_path / "good.root", make_events(kinds, seed=6))
    broken = corrupt_baskets(good, tmp_path / "broken.root")
    missing = tmp_path / "missing.root"
    one = {"cwola_a": models["cwola_a"]}
    kwargs = {"reference": features_dir, "efficiencies": EFFS}
    with pytest.raises(FeatureInputError, match=r"missing\.root: file not found"):
        run_infer({"toy": [str(good), str(missing)]}, one, tmp_path / "o", **kwargs)
    with pytest.raises(FeatureInputError, match=r"broken\.root"):
        run_infer({"toy": [str(broken)]}, one, tmp_path / "o", **kwargs)
    result = run_infer(
        {"toy": [str(good), str(broken), str(missing)]},
        one,
        tmp_path / "o",
        skip_bad_files=True,
        **kwargs,
    )
    assert {Path(s["file"]).name for s in result.skipped} == {"broken.root", "missing.root"}
    assert result.cutflow["toy"] == expected_cutflow(kinds)
    assert result.scored["toy"] == 2 == result.histogram.sum(flow=True).value


# --------------------------------------------------------------------------------------------
# executors
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("executor", "with_progress"), [("futures", True), ("dask", False)], ids=["futures", "dask"]
)
def test_executors_identical(
    executor, with_progress, fileset_path, models, features_dir, iterative, tmp_path
):
    calls = []
    result = run_infer(
        fileset_path,
        models,
        tmp_path,
        ExecutorConfig(executor, workers=2, chunksize=CHUNK),
        reference=features_dir,
        efficiencies=EFFS,
        progress=(lambda done, total: calls.append((done, total))) if with_progress else None,
    )
    _same(result.histogram, iterative.histogram)
    assert result.cutflow == iterative.cutflow and result.scored == iterative.scored
    assert result.thresholds == iterative.thresholds
    # loaded once per worker process, not per chunk (20 chunks, batches reuse the workers)
    n_chunks = sum(iterative.workers.values())
    assert n_chunks == 21 and sum(result.workers.values()) == n_chunks
    assert len(result.workers) <= 2
    assert all(1 <= n <= len(result.workers) for n in result.model_loads.values())
    if with_progress:
        assert calls[0] == (0, n_chunks) and calls[-1] == (n_chunks, n_chunks) and len(calls) > 2


# --------------------------------------------------------------------------------------------
# a real dask scheduler + workers: resources and a worker killed mid-run
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dask_processes(tmp_path_factory):
    """``dask scheduler`` + worker A (``--resources GPU=1``) + worker B, single-threaded, no nanny.

    Module-scoped (starting processes is slow); the test killing B comes last.
    """
    workers = (("A", ["--resources", "GPU=1"]), ("B", []))
    with start_dask_processes(tmp_path_factory.mktemp("dask"), workers) as (address, procs):
        yield address, procs


@pytest.mark.timeout(150)
def test_dask_gpu_resource_annotation(
    dask_processes, fileset_path, models, features_dir, iterative, tmp_path
):
    """``gpu_resource`` pins chunk tasks to workers advertising it (A); none offering it -> error."""
    address, procs = dask_processes
    result = run_infer(
        fileset_path,
        models,
        tmp_path / "gpu",
        ExecutorConfig("dask", scheduler=address, chunksize=CHUNK),
        reference=features_dir,
        efficiencies=EFFS,
        gpu_resource={"GPU": 1},
    )
    _same(result.histogram, iterative.histogram)
    assert [int(k.rsplit(":", 1)[1]) for k in result.workers] == [procs["A"].pid]
    with pytest.raises(InferenceError, match=r"no dask worker offers the resource\(s\) \{'TPU'"):
        run_infer(
            fileset_path,
            models,
            tmp_path / "tpu",
            ExecutorConfig("dask", scheduler=address, chunksize=CHUNK),
            reference=features_dir,
            gpu_resource={"TPU": 1},
        )


@pytest.mark.timeout(150)
def test_dask_worker_killed_mid_run(
    dask_processes, fileset_path, models, features_dir, iterative, tmp_path
):
    """SIGKILL a worker holding finished chunks while others still run: same histograms."""
    address, procs = dask_processes
    # finished chunk results (coffea keys them by the processor class name)
    with kill_worker_when_holding(address, procs["B"], "B", "InferenceProcessor", 2) as state:
        result = run_infer(
            fileset_path,
            models,
            tmp_path / "out",
            ExecutorConfig("dask", scheduler=address, chunksize=50),
            reference=features_dir,
            efficiencies=EFFS,
        )
    assert state["killed"], "worker B was never killed: the run ended before it held results"
    assert procs["B"].wait(5) == -signal.SIGKILL
    _same(result.histogram, iterative.histogram)
    assert result.cutflow == iterative.cutflow and result.scored == iterative.scored
    assert sum(result.workers.values()) == 40  # every chunk counted once in the final output


# --------------------------------------------------------------------------------------------
# outputs
# --------------------------------------------------------------------------------------------


def test_outputs_read_back(iterative, models):
    paths = iterative.paths
    portable = read_histogram_json(paths["histograms"])  # the file that needs no pickle
    _same(portable, iterative.histogram)
    assert portable.metadata["thresholds"] == iterative.thresholds
    with open(paths["pickle"], "rb") as f:
        h = pickle.load(f)
    _same(h, iterative.histogram)
    assert h.metadata["thresholds"] == iterative.thresholds

    spectra = read_root_spectra(paths["root"])
    assert len(spectra) == 2 * 2 * (len(EFFS) + 1)
    for dataset in ("qcd", "wprime"):
        for name in models:
            for label, expected in cut_spectra(h, name, dataset).items():
                edges, counts = spectra[f"{dataset}/{name}/{root_cut_name(label)}"]
                np.testing.assert_array_equal(edges, np.asarray(DEFAULT_MJJ_EDGES))
                np.testing.assert_array_equal(counts, expected.values())

    doc = json.loads(paths["json"].read_text())
    assert doc["thresholds"] == iterative.thresholds
    assert doc["cutflow"] == iterative.cutflow
    assert doc["config"]["efficiencies"] == list(EFFS)
    for name, path in models.items():
        meta = json.loads((path / "model.json").read_text())
        assert doc["models"][name]["digest"].startswith(meta["metadata_sha256"])
    assert doc["root_names"]["1%"] == "eff1pct" and doc["adhunt_version"]


def test_cli(fileset_path, models, features_dir, tmp_path):
    from adhunt.jobs.cli import app

    runner = CliRunner()
    args = ["infer", str(fileset_path), "--model", f"first={models['cwola_a']}"]
    args += ["--model", str(models["cwola_b"]), "--output", str(tmp_path / "out")]
    args += ["--efficiencies", "0.1,0.01", "--chunksize", "1000"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    doc = json.loads((tmp_path / "out" / "infer.json").read_text())
    assert set(doc["thresholds"]) == {"first", "cwola"}  # a bare DIR is named by its method
    assert doc["reference"]["first"]["source"] == str(features_dir)  # training provenance
    assert doc["reference"]["first"]["n_events"] == doc["reference"]["cwola"]["n_events"] > 0
    assert (tmp_path / "out" / "histograms.root").stat().st_size > 0

    bad = runner.invoke(app, ["infer", str(fileset_path), "-m", str(tmp_path / "none"), "-o", "x"])
    assert bad.exit_code == 2


# --------------------------------------------------------------------------------------------
# bad input
# --------------------------------------------------------------------------------------------


def test_missing_and_corrupt_models(fileset_path, models, features_dir, tmp_path):
    kwargs = {"reference": features_dir, "executor": ExecutorConfig(chunksize=1000)}
    with pytest.raises(ArtifactError, match=r"model 'x': model directory not found: .*nowhere"):
        run_infer(fileset_path, {"x": tmp_path / "nowhere"}, tmp_path / "o", **kwargs)
    broken = shutil.copytree(models["cwola_a"], tmp_path / "broken")
    weights = broken / "weights.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])  # truncated
    with pytest.raises(ArtifactError, match=r"broken/weights\.safetensors: checksum mismatch"):
        run_infer(fileset_path, {"x": broken}, tmp_path / "o", **kwargs)
    with pytest.raises(ValueError, match="cannot be used"):
        run_infer(fileset_path, {"a/b": models["cwola_a"]}, tmp_path / "o", **kwargs)


def test_feature_list_mismatch(fileset_path, table, features_dir, tmp_path):
    """Checked on the driver before any chunk is submitted (the input file is never opened)."""
    extra = table.assign(my_tagger=table["tau21_j1"] * 2)
    path = _train(extra, ["mj1", "my_tagger"], 3, tmp_path / "m", features_dir)
    with pytest.raises(InferenceError, match=r"expects input column\(s\) \['my_tagger'\]"):
        run_infer({"qcd": ["/nonexistent.root"]}, {"m": path}, tmp_path / "o")


def test_reference_errors(fileset_path, models, table, tmp_path):
    one = {"cwola_a": models["cwola_a"]}
    with pytest.raises(ValueError, match=r"--reference: feature table not found"):
        run_infer(fileset_path, one, tmp_path / "o", reference=tmp_path / "nope")
    outside = table[~WINDOW.in_sr(table["mjj"].to_numpy())]
    write_chunk(outside, tmp_path / "sb", "qcd/sb_000000000000-000000000001.parquet")
    with pytest.raises(InferenceError, match=r"no events in the signal region 3000:3600"):
        run_infer(fileset_path, one, tmp_path / "o", reference=tmp_path / "sb")
    bare = _train(table, ["mj1", "mj2"], 4, tmp_path / "bare", None)  # no provenance
    with pytest.raises(InferenceError, match="give a reference sample with --reference"):
        run_infer(fileset_path, {"bare": bare}, tmp_path / "o")


def test_bad_inputs_and_options(fileset_path, models, features_dir, tmp_path):
    one = {"cwola_a": models["cwola_a"]}
    kwargs = {"reference": features_dir}
    with pytest.raises(ValueError, match="strictly between 0 and 1"):
        run_infer(fileset_path, one, tmp_path / "o", efficiencies=(0.1, 1.0), **kwargs)
    with pytest.raises(InferenceError, match="score mode"):
        run_infer(fileset_path, one, tmp_path / "o", mode="median", **kwargs)
    with pytest.raises(InferenceError, match="needs --executor dask with --scheduler"):
        run_infer(
            fileset_path, one, tmp_path / "o", ExecutorConfig("dask"), gpu_resource={"GPU": 1}
        )


# --------------------------------------------------------------------------------------------
# the histogram helpers
# --------------------------------------------------------------------------------------------


def test_thresholds_and_bins():
    scores = np.arange(1000, dtype=float)[::-1]  # 999 ... 0
    t = thresholds_from_scores(scores, (0.001, 0.1, 0.01))
    np.testing.assert_array_equal(t, [900.0, 990.0, 999.0])  # loosest first
    assert efficiency_edges((0.1, 0.01, 0.001)) == (0.0, 0.001, 0.01, 0.1, 1.0)
    values = efficiency_fill_values(np.array([0.0, 900.0, 995.0, 999.0]), t, (0.1, 0.01, 0.001))
    # no cut passed -> [0.1, 1]; 10% -> [0.01, 0.1); 1% -> [0.001, 0.01); 0.1% -> [0, 0.001)
    np.testing.assert_allclose(values, [0.55, 0.055, 0.0055, 0.0005])
    with pytest.raises(ValueError, match="empty reference"):
        thresholds_from_scores([], (0.1,))
    with pytest.raises(ValueError, match="NaN"):
        thresholds_from_scores([1.0, np.nan], (0.1,))
    with pytest.raises(ValueError, match="duplicate"):
        thresholds_from_scores([1.0], (0.1, 0.1))


def test_cut_spectra_cumulative():
    h = make_inference_histogram(["m"], (0.1, 0.01), mjj_edges=(0, 10, 20))
    rng = np.random.default_rng(0)
    eff = rng.choice([0.005, 0.05, 0.5], 300)
    mjj = rng.uniform(-5, 25, 300)
    h.fill(dataset="d", model="m", bkg_eff=eff, mjj=mjj)
    spectra = cut_spectra(h, "m")
    assert list(spectra) == ["all", "10%", "1%"]
    for label, keep in (("all", eff < 1), ("10%", eff < 0.1), ("1%", eff < 0.01)):
        assert spectra[label].values(flow=True).sum() == keep.sum()
        np.testing.assert_array_equal(
            spectra[label].values(), np.histogram(mjj[keep], bins=[0, 10, 20])[0]
        )
    with pytest.raises(ValueError, match="no model 'x'"):
        cut_spectra(h, "x")
    with pytest.raises(ValueError, match=r"no dataset\(s\) \['e'\]"):
        cut_spectra(h, "m", ["d", "e"])


# --------------------------------------------------------------------------------------------
# resume after an interrupt
# --------------------------------------------------------------------------------------------


def test_sigint_then_resume_gives_the_same_histograms(fileset_path, models, features_dir,
                                                      iterative, tmp_path):  # fmt: skip
    import re
    import subprocess
    import sys
    import time

    out = tmp_path / "infer"
    cmd = [sys.executable, "-m", "adhunt.jobs.cli", "infer", str(fileset_path), "-o", str(out),
           "--reference", str(features_dir), "--efficiencies", ",".join(map(str, EFFS)),
           "--chunksize", str(CHUNK)]  # fmt: skip
    for name, path in models.items():
        cmd += ["-m", f"{name}={path}"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    partials = out / ".partials"
    deadline = time.monotonic() + 300
    while len(list(partials.glob("*/*.npz"))) < 2 and proc.poll() is None:
        assert time.monotonic() < deadline, "no chunk result saved in 300 s"
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)
    log, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, log
    n_saved = len(list(partials.glob("*/*.npz")))
    assert n_saved >= 2 and not (out / "infer.json").exists()

    resumed = subprocess.run(cmd, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    text = " ".join((resumed.stdout + resumed.stderr).split())
    skipped = re.search(r"skipping (\d+) of (\d+) chunk\(s\) already done", text)
    assert skipped and int(skipped[1]) == n_saved < int(skipped[2]), text
    assert not partials.exists()  # merged and removed
    with open(out / "histograms.pkl", "rb") as handle:
        _same(pickle.load(handle), iterative.histogram)
    doc = json.loads((out / "infer.json").read_text())
    assert doc["cutflow"] == iterative.cutflow and doc["scored"] == iterative.scored

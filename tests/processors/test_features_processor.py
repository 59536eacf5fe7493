"""The feature processor end to end: cutflow, features vs direct sums, bad inputs, fatjet mode, CLI."""

from __future__ import annotations

import json
import math
from pathlib import Path

import awkward as ak
import numpy as np
import pandas as pd
import pytest
from eventfiles import KINDS, corrupt_baskets, expected_cutflow, make_events, write_events

from adhunt.config import load_config
from adhunt.jobs.features import run_features
from adhunt.processors.features import CUTFLOW_STEPS, FeatureConfig, FeatureInputError
from adhunt.schema import FEATURE_COLUMNS
from adhunt.tables import FeatureTableError, read_features

KINDS_A = [
    "dijet",
    "monojet",
    "soft",
    "dijet",
    "empty",
    "nan",
    "dijet",
    "monojet",
    "dijet",
    "soft",
    "dijet",
]
KINDS_B = ["nan", "dijet", "dijet", "empty", "soft", "dijet", "monojet"]


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory) -> dict:
    directory = tmp_path_factory.mktemp("events")
    columns_a, columns_b = make_events(KINDS_A, seed=1), make_events(KINDS_B, seed=2)
    return {
        "dir": directory,
        "a": write_events(directory / "a.root", columns_a),
        "b": write_events(directory / "b.root", columns_b),
        "columns_a": columns_a,
        "columns_b": columns_b,
    }


@pytest.fixture(scope="module")
def synthetic_run(synthetic, tmp_path_factory):
    out = tmp_path_factory.mktemp("features")
    fileset = {"qcd": [str(synthetic["a"])], "sig": {"files": {str(synthetic["b"]): "Events"}}}
    return run_features(fileset, out, chunksize=4), out


def test_cutflow_is_exact(synthetic_run):
    result, out = synthetic_run
    assert result.cutflow == {"qcd": expected_cutflow(KINDS_A), "sig": expected_cutflow(KINDS_B)}
    frame = read_features(out)
    assert list(frame.columns) == list(FEATURE_COLUMNS)
    assert (frame["dataset"] == "qcd").sum() == result.cutflow["qcd"]["two_jets"]
    assert (frame["dataset"] == "sig").sum() == result.cutflow["sig"]["two_jets"]
    # one warning per chunk holding a NaN event, naming the file
    assert sum("non-finite" in w for w in result.warnings) == 2
    assert any(str(Path(result.files[0]).parent.parent) == str(out) for _ in [0])
    saved = json.loads((out / "cutflow.json").read_text())
    assert saved["cutflow"] == result.cutflow
    echo = json.loads((out / "features_config.json").read_text())
    assert echo["features"]["radius"] == 1.0 and echo["executor"]["chunksize"] == 4


def test_one_parquet_per_chunk_and_order(synthetic_run):
    result, out = synthetic_run
    # 11 events in chunks of 4 -> 3 chunks; 7 events -> 2 chunks
    assert len(result.files) == 5
    frame = read_features(out)
    ids = [make_events(KINDS_A, 1)["event"][i] for i, k in enumerate(KINDS_A) if k == "dijet"]
    ids += [make_events(KINDS_B, 2)["event"][i] for i, k in enumerate(KINDS_B) if k == "dijet"]
    assert frame["event"].tolist() == [int(i) for i in ids]
    assert read_features(out, datasets=["sig"])["dataset"].unique().tolist() == ["sig"]


def test_features_match_direct_sums(synthetic, synthetic_run):
    """Each synthetic dijet event is two narrow sprays: mjj is the mass of ALL its particles and the
    jet masses are the masses of the two sprays (the sprays have opposite pz/eta signs by build)."""
    _, out = synthetic_run
    frame = read_features(out, ["qcd"]).set_index("event")
    pf = synthetic["columns_a"]["PFCands"]
    events = synthetic["columns_a"]["event"]
    checked = 0
    for i, kind in enumerate(KINDS_A):
        if kind != "dijet":
            continue
        pt, eta, phi, m = (
            ak.to_numpy(pf[i][f]).astype(np.float64) for f in ("pt", "eta", "phi", "mass")
        )
        # float32 on disk -> the processor sees float32 inputs; reproduce them
        px, py, pz = pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta)
        E = np.sqrt(px**2 + py**2 + pz**2 + m**2)
        row = frame.loc[int(events[i])]
        assert row["mjj"] == pytest.approx(
            math.sqrt(E.sum() ** 2 - px.sum() ** 2 - py.sum() ** 2 - pz.sum() ** 2), rel=1e-6
        )
        # the two sprays: separate by which side in phi they sit on (back to back)
        phi_ref = phi[0]
        side = np.cos(phi - phi_ref) > 0
        masses = sorted(
            math.sqrt(
                max(E[s].sum() ** 2 - px[s].sum() ** 2 - py[s].sum() ** 2 - pz[s].sum() ** 2, 0)
            )
            for s in (side, ~side)
        )
        assert row["mj1"] == pytest.approx(masses[0], rel=1e-5)
        assert row["mj2"] == pytest.approx(masses[1], rel=1e-5)
        assert row["delta_mj"] == pytest.approx(masses[1] - masses[0], rel=1e-4, abs=1e-3)
        # two-prong sprays: tau21 well below 1, ratios consistent
        assert 0 < row["tau21_j1"] < 0.7 and row["tau21_j1"] == pytest.approx(
            row["tau2_j1"] / row["tau1_j1"]
        )
        checked += 1
    assert checked == KINDS_A.count("dijet")


def test_rerun_overwrites_and_stale_chunks_are_detected(synthetic, tmp_path):
    fileset = {"qcd": [str(synthetic["a"])]}
    first = run_features(fileset, tmp_path, chunksize=5)
    again = run_features(fileset, tmp_path, chunksize=5)
    assert [p.name for p in first.files] == [p.name for p in again.files]
    pd.testing.assert_frame_equal(read_features(tmp_path), read_features(tmp_path))
    assert len(read_features(tmp_path)) == KINDS_A.count("dijet")
    # a new chunking replaces the old tables instead of adding to them
    run_features(fileset, tmp_path, chunksize=3)
    assert len(read_features(tmp_path)) == KINDS_A.count("dijet")
    # a stale chunk copied in by hand (overlapping range) is refused, naming both files
    files = sorted((tmp_path / "qcd").glob("*.parquet"))
    stale = files[0].name.replace("000000000000-000000000003", "000000000001-000000000005")
    (tmp_path / "qcd" / stale).write_bytes(files[0].read_bytes())
    with pytest.raises(FeatureTableError, match="overlapping chunks"):
        read_features(tmp_path)


# --- bad inputs -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bad_files(synthetic, tmp_path_factory) -> dict[str, Path]:
    directory = tmp_path_factory.mktemp("bad")
    corrupt = directory / "corrupt.root"
    corrupt.write_bytes(b"this is not a ROOT file" * 100)
    return {
        "missing": directory / "does_not_exist.root",
        "corrupt": corrupt,
        "no_eta": write_events(
            directory / "no_eta.root", make_events(["dijet"] * 3, seed=5), drop=("PFCands_eta",)
        ),
        "empty": write_events(directory / "empty.root", make_events([], seed=6)),
    }


@pytest.mark.parametrize(
    ("which", "reason"),
    [
        ("missing", "file not found"),
        ("corrupt", "cannot read ROOT file"),
        ("no_eta", "missing branch.*PFCands_eta"),
        ("empty", r"empty file \(0 events\)"),
    ],
)
def test_bad_input_names_file_and_reason(synthetic, bad_files, tmp_path, which, reason):
    fileset = {"qcd": [str(synthetic["a"]), str(bad_files[which])]}
    with pytest.raises(FeatureInputError, match=reason) as info:
        run_features(fileset, tmp_path)
    assert bad_files[which].name in str(info.value)


def test_skip_bad_files_goes_on_and_reports(synthetic, bad_files, tmp_path):
    fileset = {
        "qcd": [str(synthetic["a"]), *map(str, bad_files.values())],
        "sig": [str(synthetic["b"])],
    }
    result = run_features(fileset, tmp_path, skip_bad_files=True)
    assert sorted(Path(s["file"]).name for s in result.skipped) == sorted(
        p.name for p in bad_files.values()
    )
    assert result.cutflow["qcd"] == expected_cutflow(KINDS_A)
    assert result.cutflow["sig"] == expected_cutflow(KINDS_B)
    assert len(json.loads((tmp_path / "cutflow.json").read_text())["skipped"]) == 4


def test_unreadable_baskets_fail_at_processing_naming_the_file(synthetic, tmp_path):
    broken = corrupt_baskets(synthetic["a"], tmp_path / "broken_baskets.root")
    with pytest.raises(FeatureInputError, match=r"broken_baskets\.root"):
        run_features({"qcd": [str(broken)]}, tmp_path / "out")
    result = run_features(
        {"qcd": [str(broken)], "sig": [str(synthetic["b"])]}, tmp_path / "out2", skip_bad_files=True
    )
    assert [Path(s["file"]).name for s in result.skipped] == ["broken_baskets.root"]
    assert result.cutflow["qcd"]["events"] == 0
    assert result.cutflow["sig"] == expected_cutflow(KINDS_B)


def test_every_event_kind_is_in_the_synthetic_sample():
    assert set(KINDS_A) == set(KINDS)


def test_non_physical_candidates_are_rejected_counted_and_reported(tmp_path):
    """Negative pT or a mass far below zero rejects the event like NaN (counted, reported with the
    file); masses negative by float rounding (as real NanoAOD has) are accepted."""
    kinds = ["dijet", "negpt", "roundmass", "negmass", "nan", "soft", "dijet", "negpt"]
    columns = make_events(kinds, seed=4)
    path = write_events(tmp_path / "odd.root", columns)
    result = run_features({"odd": [str(path)]}, tmp_path / "out", chunksize=3)
    counts = result.cutflow["odd"]
    assert counts == expected_cutflow(kinds)
    assert counts["finite_momenta"] - counts["physical_momenta"] == 3  # 2 negpt + 1 negmass
    steps = [counts[s] for s in CUTFLOW_STEPS]
    assert steps == sorted(steps, reverse=True)  # nested: every rejection counted at one step
    reports = [w for w in result.warnings if "non-physical" in w]
    assert reports and all("odd.root" in w for w in reports)
    assert sum(int(w.split(": ")[1].split()[0]) for w in reports) == 3
    logged = json.loads((tmp_path / "out" / "cutflow.json").read_text())
    assert logged["cutflow"]["odd"]["physical_momenta"] == counts["physical_momenta"]
    assert any("non-physical" in w for w in logged["warnings"])
    frame = read_features(tmp_path / "out")
    kept = [int(columns["event"][i]) for i, k in enumerate(kinds) if k in ("dijet", "roundmass")]
    assert frame["event"].tolist() == kept
    # the same events with the candidate fixed: the rejected events were really changed by it
    fixed = make_events(kinds, seed=4)
    pf = fixed["PFCands"]
    good = ak.zip({f: abs(pf[f]) if f in ("pt", "mass") else pf[f] for f in pf.fields})
    fixed["PFCands"] = good
    write_events(tmp_path / "fixed.root", fixed)
    again = run_features({"odd": [str(tmp_path / "fixed.root")]}, tmp_path / "out2")
    assert again.cutflow["odd"]["physical_momenta"] == counts["finite_momenta"]


# --- fatjet mode ----------------------------------------------------------------------------


def test_fatjet_mode_uses_the_nanoaod_collection(tmp_path):
    """FatJet kinematics and taus are taken as stored; expectations computed by hand."""
    fat = {
        # event 0: two jets, second heavier -> j1 = leading-pT jet; event 1: lighter one leads
        # event 2: one jet only; event 3: below trigger; event 4: NaN tau -> rejected
        "pt": [
            [1500.0, 1400.0, 30.0],
            [1600.0, 1450.0],
            [1700.0],
            [900.0, 800.0],
            [1500.0, 1400.0],
        ],
        "eta": [[0.5, -0.5, 2.0], [0.0, 1.0], [0.2], [0.0, 0.1], [0.0, 0.0]],
        "phi": [[0.0, 3.0, 1.0], [1.0, -2.0], [0.0], [0.0, 3.0], [0.0, 3.0]],
        "mass": [[100.0, 480.0, 5.0], [500.0, 90.0], [100.0], [50.0, 60.0], [100.0, 500.0]],
        "tau1": [[0.3, 0.4, 0.5], [0.2, 0.5], [0.3], [0.3, 0.3], [0.3, 0.3]],
        "tau2": [[0.1, 0.2, 0.4], [0.1, 0.0], [0.2], [0.2, 0.2], [np.nan, 0.2]],
        "tau3": [[0.05, 0.1, 0.3], [0.05, 0.0], [0.1], [0.1, 0.1], [0.1, 0.1]],
    }
    fatjets = ak.zip({k: ak.values_astype(ak.Array(v), np.float32) for k, v in fat.items()})
    columns = make_events(["soft"] * 5, seed=9)
    columns["FatJet"] = fatjets
    columns.pop("truthLabel")  # real data: no truth label -> -1
    path = write_events(tmp_path / "fat.root", columns)
    result = run_features({"data": [str(path)]}, tmp_path / "out", FeatureConfig(jets="fatjet"))
    assert result.cutflow["data"] == {
        "events": 5,
        "lumi_mask": 5,
        "hlt": 5,
        "finite_momenta": 4,
        "physical_momenta": 4,
        "trigger": 3,
        "two_jets": 2,
    }
    frame = read_features(tmp_path / "out")
    assert frame["truth_label"].tolist() == [-1, -1]

    def p4(pt, eta, phi, m):
        px, py, pz = pt * math.cos(phi), pt * math.sin(phi), pt * math.sinh(eta)
        return np.array([px, py, pz, math.sqrt(px * px + py * py + pz * pz + m * m)])

    for row, e, (light, heavy) in ((0, 0, (0, 1)), (1, 1, (1, 0))):
        a = p4(*(fat[k][e][0] for k in ("pt", "eta", "phi", "mass")))
        b = p4(*(fat[k][e][1] for k in ("pt", "eta", "phi", "mass")))
        s = a + b
        got = frame.iloc[row]
        assert got["mjj"] == pytest.approx(
            math.sqrt(s[3] ** 2 - s[0] ** 2 - s[1] ** 2 - s[2] ** 2), rel=1e-5
        )
        assert got["mj1"] == pytest.approx(fat["mass"][e][light], rel=1e-4)
        assert got["mj2"] == pytest.approx(fat["mass"][e][heavy], rel=1e-4)
        for n in (1, 2, 3):
            assert got[f"tau{n}_j1"] == pytest.approx(fat[f"tau{n}"][e][light], rel=1e-6)
            assert got[f"tau{n}_j2"] == pytest.approx(fat[f"tau{n}"][e][heavy], rel=1e-6)
    assert frame.iloc[1]["tau32_j1"] == 0.0  # tau2 = 0 -> ratio defined as 0
    # pfcands mode on the same file ignores FatJet and reclusters the (soft) candidates
    soft = run_features({"data": [str(path)]}, tmp_path / "out2")
    assert soft.cutflow["data"]["trigger"] == 0


def test_fatjet_mode_missing_collection_is_reported(synthetic, tmp_path):
    with pytest.raises(FeatureInputError, match="FatJet_pt"):
        run_features({"qcd": [str(synthetic["a"])]}, tmp_path, FeatureConfig(jets="fatjet"))


# --- configuration and CLI -------------------------------------------------------------------


def test_config_from_yaml_with_nested_trigger(tmp_path):
    path = tmp_path / "features.yaml"
    path.write_text("jets: pfcands\nradius: 0.8\ntrigger:\n  pt_min: 1000.0\n")
    config = load_config(FeatureConfig, path)
    assert (
        config.radius == 0.8
        and config.trigger.pt_min == 1000.0
        and config.trigger.abs_eta_max == 2.5
    )
    with pytest.raises(ValueError, match="jets must be one of"):
        FeatureConfig(jets="ak4")


def test_cli_writes_tables_cutflow_and_config(synthetic, tmp_path):
    from typer.testing import CliRunner

    from adhunt.jobs.cli import app

    fileset = tmp_path / "fileset.json"
    fileset.write_text(json.dumps({"qcd": {"files": {str(synthetic["a"]): "Events"}}}))
    out = tmp_path / "out"
    res = CliRunner().invoke(
        app, ["features", str(fileset), "--output", str(out), "--chunksize", "6", "--radius", "1.0"]
    )
    assert res.exit_code == 0, res.output
    assert json.loads((out / "cutflow.json").read_text())["cutflow"]["qcd"] == expected_cutflow(
        KINDS_A
    )
    assert json.loads((out / "features_config.json").read_text())["features"]["jets"] == "pfcands"
    assert len(read_features(out)) == KINDS_A.count("dijet")
    bad = CliRunner().invoke(app, ["features", str(tmp_path / "nope.json"), "--output", str(out)])
    assert bad.exit_code == 1


# --- physics on the generated Pythia samples ---------------------------------------------------


@pytest.fixture(scope="module")
def generated_features(fileset_path, tmp_path_factory):
    out = tmp_path_factory.mktemp("generated-features")
    result = run_features(fileset_path, out, chunksize=400)
    return result, read_features(out)


def test_generated_cutflow_and_signal_substructure(generated_features):
    result, frame = generated_features
    for dataset, counts in result.cutflow.items():
        values = [counts[s] for s in CUTFLOW_STEPS]
        assert values == sorted(values, reverse=True), (dataset, counts)
        assert counts["two_jets"] == int((frame["dataset"] == dataset).sum())
        assert counts["events"] > 0
    qcd, sig = frame[frame["dataset"] == "qcd"], frame[frame["dataset"] == "wprime"]
    assert (qcd["truth_label"] == 0).all() and (sig["truth_label"] == 1).all()
    # two-prong X and Y jets: lower tau21 on average than QCD jets, for both jets
    assert sig["tau21_j1"].mean() < qcd["tau21_j1"].mean() - 0.05
    assert sig["tau21_j2"].mean() < qcd["tau21_j2"].mean() - 0.05
    # the resonances: lighter-jet mass near 100 GeV, heavier near 500 GeV, mjj near 3.5 TeV
    assert 60 < sig["mj1"].median() < 140 and 380 < sig["mj2"].median() < 560
    assert 2800 < sig["mjj"].median() < 3700
    assert np.isfinite(frame.drop(columns="dataset").to_numpy(dtype=float)).all()


def test_clustering_in_batches_changes_nothing(synthetic, tmp_path, monkeypatch):
    """A chunk clustered a few events at a time (to bound fastjet's memory) gives the same
    tables, to the byte, and the same cutflow as one cluster sequence over the chunk."""
    import adhunt.processors.features as features

    fileset = {"qcd": [str(synthetic["a"])], "sig": [str(synthetic["b"])]}
    whole = run_features(fileset, tmp_path / "whole", chunksize=100)
    monkeypatch.setattr(features, "CLUSTER_BATCH", 2)
    batched = run_features(fileset, tmp_path / "batched", chunksize=100)
    assert batched.cutflow == whole.cutflow
    assert whole.cutflow["qcd"]["two_jets"] > 2  # batches of 2 events really split the chunk
    assert [f.name for f in batched.files] == [f.name for f in whole.files]
    for a, b in zip(whole.files, batched.files, strict=True):
        assert a.read_bytes() == b.read_bytes()

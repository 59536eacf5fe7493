"""Real experiment inputs: CMS NanoAOD / PFNanoAOD files written by CMS software, Delphes layout.

The three CMS files in ``tests/samples`` come from coffea's test samples (see the README there).
Expectations are computed independently of the processor: uproot reads of the branches, the raw
FatJet values CMS software wrote, numpy on the selections.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import awkward as ak
import numpy as np
import pytest
import uproot
from eventfiles import make_events, write_delphes, write_events

from adhunt.jets import ClusteredEvents, to_fastjet_input
from adhunt.jobs.features import run_features
from adhunt.processors.features import FeatureConfig, FeatureInputError
from adhunt.tables import read_features

SAMPLES = Path(__file__).resolve().parents[1] / "samples"
PFNANO = SAMPLES / "pfnano.root"
V15 = SAMPLES / "nano_tt_v15.root"
DIMUON = SAMPLES / "nano_dimuon.root"
NO_TRIGGER = {"apply_trigger": False}


def _arrays(path: Path, names: list[str]) -> ak.Array:
    with uproot.open(path) as handle:
        return handle["Events"].arrays(names)


def _delta_phi(a, b):
    return (a - b + np.pi) % (2 * np.pi) - np.pi


# --- PUPPI --------------------------------------------------------------------------------------


def _reclustered_vs_raw_fatjets(puppi: bool) -> list[tuple[float, float]]:
    """Per FatJet of pfnano.root: (pT ratio - 1, mass ratio - 1) of its DeltaR-matched R = 0.8 jet.

    The candidates go through ``adhunt.inputs.candidates`` (the processor's own reading) via
    NanoEvents; the reference is FatJet pt/mass x (1 - rawFactor), as CMS software wrote them.
    """
    from coffea.nanoevents import NanoEventsFactory

    from adhunt.inputs import candidates
    from adhunt.processors.features import QuietPFNanoAODSchema

    events = NanoEventsFactory.from_root(
        {str(PFNANO): "Events"}, schemaclass=QuietPFNanoAODSchema, mode="eager"
    ).events()
    parts, collection, weighted = candidates(events, puppi=puppi)
    assert collection == "PFCands" and weighted == puppi
    jets = ClusteredEvents(to_fastjet_input(parts), 0.8).jets
    fat = _arrays(
        PFNANO, ["FatJet_pt", "FatJet_eta", "FatJet_phi", "FatJet_mass", "FatJet_rawFactor"]
    )
    out = []
    for i in range(len(fat)):
        for k in range(len(fat.FatJet_pt[i])):
            raw = 1.0 - float(fat.FatJet_rawFactor[i][k])
            dr = np.hypot(
                ak.to_numpy(jets.eta[i]) - float(fat.FatJet_eta[i][k]),
                _delta_phi(ak.to_numpy(jets.phi[i]), float(fat.FatJet_phi[i][k])),
            )
            j = int(np.argmin(dr))
            assert dr[j] < 0.1, (i, k, dr[j])
            out.append(
                (
                    float(jets.pt[i][j]) / (float(fat.FatJet_pt[i][k]) * raw) - 1.0,
                    float(jets.mass[i][j]) / (float(fat.FatJet_mass[i][k]) * raw) - 1.0,
                )
            )
    return out


def test_puppi_reclustering_matches_cms_raw_fatjets():
    """Anti-kT R = 0.8 on PUPPI-weighted PFCands reproduces every raw AK8 FatJet to 1%."""
    ratios = _reclustered_vs_raw_fatjets(puppi=True)
    assert len(ratios) == 24  # every FatJet of the file (pT > 170 GeV) is matched
    worst = max(max(abs(p), abs(m)) for p, m in ratios)
    assert worst < 0.01, worst
    # without the weights pile-up inflates the masses (what the processor did before): the test
    # can fail
    unweighted = _reclustered_vs_raw_fatjets(puppi=False)
    assert max(abs(m) for _, m in unweighted) > 0.3


def test_puppi_features_end_to_end_and_echo(tmp_path):
    """The feature table's leading jets are the raw FatJets (pT, mass to 1%); --no-puppi is echoed."""
    out = tmp_path / "out"
    run_features({"pf": [str(PFNANO)]}, out, FeatureConfig(radius=0.8, **NO_TRIGGER))
    frame = read_features(out)
    fat = _arrays(PFNANO, ["event", "FatJet_pt", "FatJet_mass", "FatJet_rawFactor"])
    assert len(frame) == len(fat)
    for row in frame.itertuples():
        i = int(np.flatnonzero(ak.to_numpy(fat.event) == row.event)[0])
        raw = 1.0 - ak.to_numpy(fat.FatJet_rawFactor[i][:2])
        pts = ak.to_numpy(fat.FatJet_pt[i][:2]) * raw
        masses = ak.to_numpy(fat.FatJet_mass[i][:2]) * raw
        order = np.argsort(masses)  # the table orders j1, j2 by mass
        np.testing.assert_allclose([row.mj1, row.mj2], masses[order], rtol=0.01)
        np.testing.assert_allclose([row.pt_j1, row.pt_j2], pts[order], rtol=0.01)
    echo = json.loads((out / "features_config.json").read_text())["features"]
    assert echo["puppi"] is True and echo["radius"] == 0.8
    run_features({"pf": [str(PFNANO)]}, out, FeatureConfig(radius=0.8, puppi=False, **NO_TRIGGER))
    assert json.loads((out / "features_config.json").read_text())["features"]["puppi"] is False
    assert read_features(out)["mj2"].mean() > 1.3 * frame["mj2"].mean()


@pytest.mark.parametrize(
    ("sample", "branch", "config"),
    [
        (PFNANO, "PFCands_mass", {"radius": 0.8}),
        (PFNANO, "PFCands_mass", {"radius": 0.8, "puppi": False}),
        (V15, "PFCand_mass", {"radius": 0.8}),
        (DIMUON, "FatJet_msoftdrop", {"jets": "fatjet"}),
    ],
    ids=["pfnano-puppi", "pfnano", "v15", "dimuon-fatjet"],
)
def test_real_nanoaod_passes_the_physical_momentum_check(sample, branch, config, tmp_path):
    """Real NanoAOD holds negative masses (float rounding of massless candidates; msoftdrop -1):
    no real event is rejected as non-physical."""
    values = ak.flatten(_arrays(sample, [branch])[branch])
    assert ak.sum(values < 0) > 0  # the file really has them: the check is exercised
    result = run_features({"s": [str(sample)]}, tmp_path, FeatureConfig(**config, **NO_TRIGGER))
    counts = result.cutflow["s"]
    assert counts["physical_momenta"] == counts["finite_momenta"] == counts["events"]
    assert not any("non-physical" in w for w in result.warnings)


def test_soft_drop_sentinel_is_reported(tmp_path):
    """nano_dimuon.root: one of the two leading fat jets of an event has msoftdrop = -1."""
    config = FeatureConfig(jets="fatjet", jet_mass="msoftdrop", **NO_TRIGGER)
    result = run_features({"d": [str(DIMUON)]}, tmp_path, config)
    assert any("1 selected jet(s) with negative FatJet_msoftdrop" in w for w in result.warnings)
    frame = read_features(tmp_path)
    assert (frame[["mj1", "mj2"]].to_numpy() == -1).sum() == 1


# --- schemas, names, trees ----------------------------------------------------------------------


def test_nanoaod_v15_pfcand_naming_is_read(tmp_path):
    """NanoAOD v15 ``PFCand_*`` (no charge, no PUPPI weight): features equal a direct clustering."""
    result = run_features({"tt": [str(V15)]}, tmp_path, FeatureConfig(radius=0.8, **NO_TRIGGER))
    frame = read_features(tmp_path)
    raw = _arrays(V15, ["event", "PFCand_pt", "PFCand_eta", "PFCand_phi", "PFCand_mass"])
    parts = ak.zip({f: raw[f"PFCand_{f}"] for f in ("pt", "eta", "phi", "mass")})
    jets = ClusteredEvents(to_fastjet_input(parts), 0.8).jets
    two = ak.to_numpy(ak.num(jets, axis=1)) >= 2
    assert result.cutflow["tt"]["two_jets"] == int(two.sum()) == len(frame) > 0
    assert frame["event"].tolist() == ak.to_numpy(raw.event)[two].tolist()
    px, py, pz, e = (ak.to_numpy(jets[k][two][:, :2]).sum(axis=1) for k in ("px", "py", "pz", "E"))
    np.testing.assert_allclose(frame["mjj"], np.sqrt(e**2 - px**2 - py**2 - pz**2), rtol=1e-9)
    assert (frame["weight"] == np.float32(350.17)).all()  # the file's genWeight


def test_tree_name_from_the_fileset_is_honoured(tmp_path):
    kinds = ["dijet", "soft", "dijet"]
    path = write_events(tmp_path / "v12.root", make_events(kinds, seed=4), tree="Events_v12")
    result = run_features({"ds": {"files": {str(path): "Events_v12"}}}, tmp_path / "out")
    assert result.cutflow["ds"]["two_jets"] == 2
    fileset = tmp_path / "fileset.json"
    fileset.write_text(json.dumps({"ds": {"treename": "Events_v12", "files": [path.name]}}))
    assert run_features(fileset, tmp_path / "out2").cutflow["ds"]["two_jets"] == 2
    with pytest.raises(FeatureInputError, match=r"no tree 'Events' \(the file has Events_v12\)"):
        run_features({"ds": [str(path)]}, tmp_path / "out3")


def test_missing_collection_names_what_the_file_has(tmp_path):
    with pytest.raises(FeatureInputError) as info:
        run_features({"data": [str(DIMUON)]}, tmp_path)
    message = str(info.value)
    assert "nano_dimuon.root" in message and "PFCands_*" in message and "PFCand_*" in message
    assert "FatJet" in message and "Muon" in message  # what the file does have
    with pytest.raises(FeatureInputError, match=r"FatJet_jetId"):  # v15 dropped jetId
        run_features({"tt": [str(V15)]}, tmp_path, FeatureConfig(jets="fatjet", jet_id=2))


# --- weights and data ---------------------------------------------------------------------------


def test_data_without_genweight_get_weight_one(tmp_path):
    result = run_features(
        {"data": {"files": [str(DIMUON)], "metadata": {"is_data": True}}},
        tmp_path,
        FeatureConfig(jets="fatjet", **NO_TRIGGER),
    )
    frame = read_features(tmp_path)
    fat = _arrays(DIMUON, ["event", "luminosityBlock", "nFatJet"])
    two = ak.to_numpy(fat.nFatJet) >= 2
    assert result.cutflow["data"]["two_jets"] == int(two.sum()) == len(frame) == 2
    assert (frame["weight"] == 1.0).all()
    assert frame["luminosityBlock"].tolist() == ak.to_numpy(fat.luminosityBlock)[two].tolist()
    # no declaration either: no genWeight branch -> data, weight 1
    run_features({"data": [str(DIMUON)]}, tmp_path, FeatureConfig(jets="fatjet", **NO_TRIGGER))
    assert (read_features(tmp_path)["weight"] == 1.0).all()
    with pytest.raises(FeatureInputError, match="no genWeight"):
        run_features(
            {"data": {"files": [str(DIMUON)], "metadata": {"is_data": False}}},
            tmp_path,
            FeatureConfig(jets="fatjet", **NO_TRIGGER),
        )


def test_genweight_and_normalisation_from_fileset_metadata(tmp_path):
    """weight = genWeight x xsec x luminosity / sum of genWeight (Runs/genEventSumw)."""
    kinds = ["dijet", "dijet", "soft", "dijet", "monojet"]
    columns = make_events(kinds, seed=7)
    gen = np.array([2.0, -1.0, 5.0, 0.5, 3.0], np.float32)
    columns["genWeight"] = gen
    path = write_events(tmp_path / "mc.root", columns)
    run_features({"mc": [str(path)]}, tmp_path / "raw")
    dijet = np.array([k == "dijet" for k in kinds])
    np.testing.assert_array_equal(read_features(tmp_path / "raw")["weight"], gen[dijet])
    config = FeatureConfig(luminosity=1000.0)
    run_features({"mc": {"files": [str(path)], "metadata": {"xsec": 3.0}}}, tmp_path / "n", config)
    gen64 = gen.astype(np.float64)
    expected = gen64[dijet] * 3.0 * 1000.0 / gen64.sum()  # no Runs tree: sum over the events
    np.testing.assert_allclose(read_features(tmp_path / "n")["weight"], expected, rtol=1e-12)
    echo = json.loads((tmp_path / "n" / "features_config.json").read_text())
    assert echo["weights"]["mc"]["scale"] == pytest.approx(3000.0 / gen64.sum())
    with pytest.raises(FeatureInputError, match="'xsec'"):
        run_features({"mc": [str(path)]}, tmp_path / "n2", config)
    # a real PFNano file: Runs/genEventSumw = 10, genWeight = 1
    run_features(
        {"pf": {"files": [str(PFNANO)], "metadata": {"xsec": 2.0}}},
        tmp_path / "pf",
        FeatureConfig(jets="fatjet", luminosity=50.0, **NO_TRIGGER),
    )
    assert (read_features(tmp_path / "pf")["weight"] == 2.0 * 50.0 / 10.0).all()


# --- selections ---------------------------------------------------------------------------------


def test_lumi_mask_keeps_exactly_the_certified_ranges(tmp_path):
    kinds = ["dijet"] * 12
    columns = make_events(kinds, seed=8)
    columns["run"] = np.array([1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3], np.uint32)
    columns["luminosityBlock"] = np.array([1, 5, 6, 9, 1, 2, 3, 10, 4, 5, 6, 7], np.uint32)
    path = write_events(tmp_path / "data.root", columns)
    golden = {"1": [[5, 6], [9, 9]], "2": [[2, 3]], "4": [[1, 100]]}
    mask_path = tmp_path / "golden.json"
    mask_path.write_text(json.dumps(golden))
    result = run_features(
        {"data": [str(path)]}, tmp_path / "out", FeatureConfig(lumi_mask=str(mask_path))
    )
    frame = read_features(tmp_path / "out")
    certified = {
        (int(r), lumi)
        for r, ranges in golden.items()
        for lo, hi in ranges
        for lumi in range(lo, hi + 1)
    }
    pairs = list(zip(columns["run"].tolist(), columns["luminosityBlock"].tolist(), strict=True))
    expected = [p for p in pairs if p in certified]
    assert len(expected) == 5
    assert list(zip(frame["run"], frame["luminosityBlock"], strict=True)) == expected
    assert result.cutflow["data"]["lumi_mask"] == 5 and result.cutflow["data"]["events"] == 12
    # real collision data (run 315267, lumi 205)
    for ranges, kept in (([[205, 205]], 40), ([[1, 204], [206, 999]], 0)):
        mask_path.write_text(json.dumps({"315267": ranges}))
        config = FeatureConfig(jets="fatjet", lumi_mask=str(mask_path), **NO_TRIGGER)
        assert (
            run_features({"d": [str(DIMUON)]}, tmp_path / "d", config).cutflow["d"]["lumi_mask"]
            == kept
        )
    mask_path.write_text("[1, 2]")
    with pytest.raises(Exception, match="golden JSON"):
        run_features(
            {"data": [str(path)]}, tmp_path / "out", FeatureConfig(lumi_mask=str(mask_path))
        )


def test_hlt_or_selects_the_right_events_on_pfnano(tmp_path):
    bits = ["HLT_AK8PFHT800_TrimMass50", "HLT_AK8PFJetFwd40"]
    raw = _arrays(PFNANO, ["event", "nFatJet", *bits])
    fired = ak.to_numpy(raw[bits[0]]) | ak.to_numpy(raw[bits[1]])
    assert 0 < fired.sum() < len(fired) and not (ak.to_numpy(raw[bits[0]]) == fired).all()
    config = FeatureConfig(jets="fatjet", hlt=("AK8PFHT800_TrimMass50", bits[1]), **NO_TRIGGER)
    result = run_features({"pf": [str(PFNANO)]}, tmp_path, config)
    frame = read_features(tmp_path)
    assert result.cutflow["pf"]["hlt"] == int(fired.sum()) == 7
    assert sorted(frame["event"]) == sorted(ak.to_numpy(raw.event)[fired].tolist())
    with pytest.raises(FeatureInputError, match=r"HLT_AK8PFJet999 not in the file; similar"):
        run_features({"pf": [str(PFNANO)]}, tmp_path, FeatureConfig(hlt=("AK8PFJet999",)))


def test_fatjet_selection_options_on_pfnano(tmp_path):
    """|eta|, jet ID and soft-drop mass: the table equals the selection done with numpy."""
    raw = _arrays(
        PFNANO,
        ["event", "FatJet_pt", "FatJet_eta", "FatJet_jetId", "FatJet_msoftdrop", "FatJet_mass"],
    )
    config = FeatureConfig(
        jets="fatjet", jet_abs_eta_max=1.0, jet_id=2, jet_mass="msoftdrop", **NO_TRIGGER
    )
    run_features({"pf": [str(PFNANO)]}, tmp_path, config)
    frame = read_features(tmp_path).set_index("event")
    expected = {}
    for i in range(len(raw)):
        good = (np.abs(ak.to_numpy(raw.FatJet_eta[i])) < 1.0) & (
            (ak.to_numpy(raw.FatJet_jetId[i]) & 2) == 2
        )
        pt = ak.to_numpy(raw.FatJet_pt[i])[good]
        sd = ak.to_numpy(raw.FatJet_msoftdrop[i])[good][np.argsort(-pt)]
        if len(sd) >= 2:
            expected[int(raw.event[i])] = sorted(sd[:2])
    assert 0 < len(expected) < len(raw)
    assert sorted(frame.index) == sorted(expected)
    for event, (light, heavy) in expected.items():
        assert frame.loc[event, "mj1"] == pytest.approx(light, rel=1e-6)
        assert frame.loc[event, "mj2"] == pytest.approx(heavy, rel=1e-6)
    echo = json.loads((tmp_path / "features_config.json").read_text())["features"]
    assert echo["radius"] == 0.8 and echo["jet_mass"] == "msoftdrop"


def test_cli_options_and_radius_refused_in_fatjet_mode(tmp_path):
    from typer.testing import CliRunner

    from adhunt.jobs.cli import app

    fileset = tmp_path / "fileset.json"
    fileset.write_text(json.dumps({"pf": {"files": {str(PFNANO): "Events"}}}))
    out = tmp_path / "out"
    base = ["features", str(fileset), "--output", str(out)]
    res = CliRunner().invoke(app, [*base, "--jets", "fatjet", "--radius", "1.0"])
    assert res.exit_code == 1
    res = CliRunner().invoke(
        app,
        [*base, "--jets", "fatjet", "--hlt", "AK8PFHT800_TrimMass50,HLT_AK8PFJetFwd40",
         "--trigger-pt", "1400", "--jet-mass", "msoftdrop", "--jet-eta", "2.4"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    echo = json.loads((out / "features_config.json").read_text())["features"]
    assert echo["radius"] == 0.8 and echo["trigger"]["pt_min"] == 1400.0
    assert echo["hlt"] == ["HLT_AK8PFHT800_TrimMass50", "HLT_AK8PFJetFwd40"]
    assert echo["jet_abs_eta_max"] == 2.4
    res = CliRunner().invoke(app, [*base, "--no-trigger", "--no-puppi", "--radius", "0.8"])
    assert res.exit_code == 0, res.output
    echo = json.loads((out / "features_config.json").read_text())["features"]
    assert echo["apply_trigger"] is False and echo["puppi"] is False and echo["radius"] == 0.8
    assert json.loads((out / "cutflow.json").read_text())["cutflow"]["pf"]["two_jets"] == 10


# --- Delphes ------------------------------------------------------------------------------------


def test_delphes_round_trip(tmp_path):
    """The same particles as Delphes EFlow objects and as NanoAOD PFCands give the same features."""
    kinds = ["dijet", "soft", "dijet", "monojet", "empty", "dijet", "nan"]
    columns = make_events(kinds, seed=11)
    weights = np.linspace(0.5, 2.0, len(kinds))
    columns["weight"] = weights
    delphes = write_delphes(tmp_path / "delphes.root", columns)
    columns.pop("weight")
    nano = write_events(tmp_path / "nano.root", columns)
    with uproot.open(delphes) as handle:
        keys = set(handle["Delphes"].keys())
    assert {"EFlowTrack_size", "EFlowTrack/EFlowTrack.PT", "EFlowPhoton/EFlowPhoton.ET"} <= keys
    a = run_features({"x": [str(delphes)]}, tmp_path / "d", FeatureConfig(schema="delphes"))
    b = run_features({"x": [str(nano)]}, tmp_path / "n")
    assert a.cutflow == b.cutflow and a.cutflow["x"]["two_jets"] == 3
    fd, fn = read_features(tmp_path / "d"), read_features(tmp_path / "n")
    assert fd["event"].tolist() == fn["event"].tolist()
    # Delphes has no run/luminosity block (0) and no truth label (-1)
    assert (fd["run"] == 0).all() and (fd["luminosityBlock"] == 0).all()
    assert (fd["truth_label"] == -1).all()
    bookkeeping = ("dataset", "run", "luminosityBlock", "truth_label", "weight")
    features = [c for c in fd.columns if c not in bookkeeping]
    np.testing.assert_allclose(
        fd[features].to_numpy(float), fn[features].to_numpy(float), rtol=1e-9, atol=1e-9
    )
    dijet = np.array([k == "dijet" for k in kinds])
    np.testing.assert_allclose(fd["weight"], weights[dijet].astype(np.float32))  # Event.Weight
    assert (
        json.loads((tmp_path / "d" / "features_config.json").read_text())["features"]["schema"]
        == "delphes"
    )
    # fat-jet mode needs the Delphes FatJet collection and says so
    with pytest.raises(FeatureInputError, match=r"missing Delphes collection\(s\) FatJet"):
        run_features(
            {"x": [str(delphes)]}, tmp_path / "f", FeatureConfig(schema="delphes", jets="fatjet")
        )


def test_samples_carry_their_attribution():
    readme = (SAMPLES / "README.md").read_text()
    assert "coffea" in readme and (SAMPLES / "LICENSE.coffea").is_file()
    for path in (PFNANO, V15, DIMUON):
        assert path.name in readme
    assert shutil.which  # the samples are read in place, never modified

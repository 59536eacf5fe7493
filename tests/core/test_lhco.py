"""LHC Olympics R&D HDF5 -> ROOT conversion: exact round trip, padding, chunking, bad files."""

from __future__ import annotations

import awkward as ak
import numpy as np
import pandas as pd
import pytest
import uproot

from adhunt.lhco import LHCO_RUN, UNKNOWN_LABEL, convert_lhco, inspect_lhco
from adhunt.rootio import read_events, read_fileset


def _lhco_table(
    n_events: int, seed: int, labeled: bool = True
) -> tuple[np.ndarray, list[np.ndarray]]:
    """An array in the exact LHCO layout, plus the (n_i x 3) hadron lists it encodes."""
    rng = np.random.default_rng(seed)
    table = np.zeros((n_events, 2101 if labeled else 2100))
    hadrons = []
    for i in range(n_events):
        n = [0, 700, 1][i] if i < 3 else int(rng.integers(1, 300))  # empty, full, single, random
        h = np.column_stack(
            [
                rng.exponential(20.0, n) + 0.01,
                rng.uniform(-4.0, 4.0, n),
                rng.uniform(-np.pi, np.pi, n),
            ]
        )
        table[i, : 3 * n] = h.ravel()
        hadrons.append(h)
    if labeled:
        table[:, 2100] = rng.integers(0, 2, n_events)
    return table, hadrons


def _write(path, table, fmt="fixed"):
    pd.DataFrame(table).to_hdf(path, key="df", format=fmt)
    return path


@pytest.mark.parametrize("fmt", ["fixed", "table"])
def test_round_trip_is_exact(tmp_path, fmt):
    table, hadrons = _lhco_table(47, seed=1)
    src = _write(tmp_path / "events_rd.h5", table, fmt)
    paths = convert_lhco(src, tmp_path / "out", chunk_size=7, events_per_file=20)
    assert [p.name for p in paths] == [
        "events_rd_0000.root",
        "events_rd_0001.root",
        "events_rd_0002.root",
    ]
    events = ak.concatenate([read_events(p) for p in paths])
    assert len(events) == 47
    assert ak.to_numpy(events.event).tolist() == list(range(1, 48))
    assert ak.to_numpy(events.luminosityBlock).tolist() == [1] * 20 + [2] * 20 + [3] * 7
    assert np.all(ak.to_numpy(events.run) == LHCO_RUN)
    assert np.array_equal(ak.to_numpy(events.truthLabel), table[:, 2100].astype(np.int32))
    counts = ak.to_numpy(ak.num(events.PFCands))
    assert counts.tolist() == [len(h) for h in hadrons]  # padding dropped, nothing else
    assert counts[0] == 0 and counts[1] == 700
    for i in (0, 1, 2, 10, 46):
        c = events.PFCands[i]
        for j, field in enumerate(("pt", "eta", "phi")):
            assert np.array_equal(ak.to_numpy(c[field]), hadrons[i][:, j].astype(np.float32)), (
                i,
                field,
            )
    for field in ("mass", "charge", "pdgId"):
        assert np.all(ak.to_numpy(ak.flatten(events.PFCands[field])) == 0)
    with uproot.open(paths[0]) as f:
        types = f["Events"].typenames()
    assert types["PFCands_pt"] == "float[]" and types["PFCands_charge"] == "int32_t[]"
    assert types["event"] == "uint64_t" and types["truthLabel"] == "int32_t"

    meta = read_fileset(tmp_path / "out" / "fileset.json")["events_rd"]["metadata"]
    assert meta["n_events"] == 47 and meta["n_signal"] == int(table[:, 2100].sum())
    assert meta["labeled"] is True


def test_unlabeled_black_box_and_dataset_name(tmp_path):
    table, hadrons = _lhco_table(5, seed=2, labeled=False)
    src = _write(tmp_path / "bb.h5", table)
    convert_lhco(src, tmp_path, dataset="blackbox1", run=7)
    events = read_events(tmp_path / "blackbox1_0000.root")
    assert np.all(ak.to_numpy(events.truthLabel) == UNKNOWN_LABEL)
    assert np.all(ak.to_numpy(events.run) == 7)
    assert ak.to_numpy(ak.num(events.PFCands)).tolist() == [len(h) for h in hadrons]
    fileset = read_fileset(tmp_path / "fileset.json")
    assert fileset["blackbox1"]["metadata"]["n_signal"] is None


def test_rerun_overwrites(tmp_path):
    table, _ = _lhco_table(30, seed=3)
    src = _write(tmp_path / "x.h5", table)
    convert_lhco(src, tmp_path / "o", events_per_file=10)
    convert_lhco(_write(tmp_path / "x.h5", table[:12]), tmp_path / "o", events_per_file=10)
    files = sorted((tmp_path / "o").glob("*.root"))
    assert [f.name for f in files] == ["x_0000.root", "x_0001.root"]
    assert sum(len(read_events(f)) for f in files) == 12


@pytest.mark.parametrize("n_columns", [2102, 300, 2099])
def test_wrong_shape_is_a_clear_error(tmp_path, n_columns):
    src = _write(tmp_path / "bad.h5", np.ones((4, n_columns)))
    with pytest.raises(ValueError, match=rf"{n_columns} columns; the LHCO R&D format has 2101"):
        convert_lhco(src, tmp_path / "o")
    assert not (tmp_path / "o" / "fileset.json").exists()


def test_bad_content_names_the_row(tmp_path):
    table, _ = _lhco_table(6, seed=4)
    table[4, 2100] = 3.0
    with pytest.raises(ValueError, match=r"row\(s\) \[4\]"):
        convert_lhco(_write(tmp_path / "lab.h5", table), tmp_path / "o")
    table, _ = _lhco_table(6, seed=4)
    table[2, 3] = np.nan
    with pytest.raises(ValueError, match=r"non-finite values in input row\(s\) \[2\]"):
        convert_lhco(_write(tmp_path / "nan.h5", table), tmp_path / "o2", chunk_size=2)


def test_missing_and_non_hdf5_files(tmp_path):
    with pytest.raises(FileNotFoundError):
        inspect_lhco(tmp_path / "nope.h5")
    (tmp_path / "text.h5").write_text("not hdf5")
    with pytest.raises(ValueError, match="not a readable pandas HDF5 file"):
        inspect_lhco(tmp_path / "text.h5")
    table, _ = _lhco_table(2, seed=5)
    pd.DataFrame(table).to_hdf(tmp_path / "two.h5", key="a")
    pd.DataFrame(table).to_hdf(tmp_path / "two.h5", key="b")
    with pytest.raises(ValueError, match="pick one with --key"):
        inspect_lhco(tmp_path / "two.h5")
    assert inspect_lhco(tmp_path / "two.h5", key="b") == ("b", 2, 2101)


def test_cli_convert(tmp_path):
    from typer.testing import CliRunner

    from adhunt.jobs.cli import app

    table, hadrons = _lhco_table(9, seed=6)
    src = _write(tmp_path / "rd.h5", table)
    runner = CliRunner()
    result = runner.invoke(
        app, ["convert-lhco", str(src), "--output", str(tmp_path / "o"), "--chunk-size", "4"]
    )
    assert result.exit_code == 0, result.output
    events = read_events(tmp_path / "o" / "rd_0000.root")
    assert ak.to_numpy(ak.num(events.PFCands)).tolist() == [len(h) for h in hadrons]
    bad = _write(tmp_path / "bad.h5", np.ones((3, 5)))
    result = runner.invoke(app, ["convert-lhco", str(bad), "--output", str(tmp_path / "o")])
    assert result.exit_code == 2 and "2101" in result.output


# ----- the pre-computed features table (pxj1 ... tau3j2, label) ---------------------------------

LHCO_FEATURE_LAYOUT = [
    "pxj1", "pyj1", "pzj1", "mj1", "tau1j1", "tau2j1", "tau3j1",
    "pxj2", "pyj2", "pzj2", "mj2", "tau1j2", "tau2j2", "tau3j2", "label",
]  # fmt: skip


def _lhco_features(n: int, seed: int) -> pd.DataFrame:
    """The LHCO features table layout: back-to-back TeV jets, masses in either order."""
    rng = np.random.default_rng(seed)
    pt = rng.uniform(1200, 2000, n)
    phi = rng.uniform(-np.pi, np.pi, n)
    frame = pd.DataFrame(
        {
            "pxj1": pt * np.cos(phi), "pyj1": pt * np.sin(phi), "pzj1": rng.normal(0, 800, n),
            "mj1": rng.uniform(20, 600, n),
            "tau1j1": rng.uniform(0.2, 0.8, n), "tau2j1": rng.uniform(0.1, 0.5, n),
            "tau3j1": rng.uniform(0.05, 0.3, n),
            "pxj2": -pt * np.cos(phi) * rng.uniform(0.8, 1.0, n),
            "pyj2": -pt * np.sin(phi) * rng.uniform(0.8, 1.0, n), "pzj2": rng.normal(0, 800, n),
            "mj2": rng.uniform(20, 600, n),
            "tau1j2": rng.uniform(0.2, 0.8, n), "tau2j2": rng.uniform(0.1, 0.5, n),
            "tau3j2": rng.uniform(0.05, 0.3, n),
            "label": rng.integers(0, 2, n).astype(float),
        }
    )  # fmt: skip
    return frame[LHCO_FEATURE_LAYOUT]


def test_convert_lhco_features_table(tmp_path):
    import vector

    from adhunt.lhco import convert_lhco_features
    from adhunt.tables import read_table

    frame = _lhco_features(200, seed=11)
    src = tmp_path / "events_anomalydetection_v2.features.h5"
    frame.to_hdf(src, key="df", format="table")
    path = convert_lhco_features(src, tmp_path / "out")
    table = read_table(tmp_path / "out")  # the output reads back as a feature table
    assert path == tmp_path / "out" / "events_anomalydetection_v2.parquet"
    assert len(table) == 200 and (table["dataset"] == "events_anomalydetection_v2").all()
    assert table["event"].tolist() == list(range(1, 201)) and (table["run"] == LHCO_RUN).all()
    assert np.array_equal(table["truth_label"], frame["label"].astype(int))

    # independent mjj: the vector library's sum of the two (px, py, pz, m) four-vectors
    j1 = vector.array({"px": frame.pxj1, "py": frame.pyj1, "pz": frame.pzj1, "M": frame.mj1})
    j2 = vector.array({"px": frame.pxj2, "py": frame.pyj2, "pz": frame.pzj2, "M": frame.mj2})
    np.testing.assert_allclose(table["mjj"], (j1 + j2).mass, rtol=1e-9)
    # ordered by mass as the schema defines: j1 the lighter jet, taus follow their jet
    light_is_1 = (frame.mj1 <= frame.mj2).to_numpy()
    np.testing.assert_allclose(table["mj1"], np.minimum(frame.mj1, frame.mj2))
    np.testing.assert_allclose(table["delta_mj"], np.abs(frame.mj2 - frame.mj1))
    tau21_light = np.where(light_is_1, frame.tau2j1 / frame.tau1j1, frame.tau2j2 / frame.tau1j2)
    np.testing.assert_allclose(table["tau21_j1"], tau21_light)
    tau32_heavy = np.where(light_is_1, frame.tau3j2 / frame.tau2j2, frame.tau3j1 / frame.tau2j1)
    np.testing.assert_allclose(table["tau32_j2"], tau32_heavy)
    assert (light_is_1.sum(), (~light_is_1).sum()) > (20, 20)  # both orders were exercised


def test_convert_lhco_features_errors_and_cli(tmp_path):
    from typer.testing import CliRunner

    from adhunt.jobs.cli import app
    from adhunt.lhco import convert_lhco_features

    frame = _lhco_features(20, seed=12)
    bad = tmp_path / "bad.h5"
    frame.drop(columns=["tau3j2"]).to_hdf(bad, key="df")
    with pytest.raises(ValueError, match=r"bad\.h5.*lacks column\(s\) \['tau3j2'\]"):
        convert_lhco_features(bad, tmp_path / "o")
    unlabeled = tmp_path / "bb.h5"
    frame.drop(columns=["label"]).to_hdf(unlabeled, key="df")
    runner = CliRunner()
    result = runner.invoke(
        app,
        [
            "convert-lhco",
            "--features",
            str(unlabeled),
            "--output",
            str(tmp_path / "o"),
            "--run",
            "9",
        ],
    )
    assert result.exit_code == 0, result.output
    table = pd.read_parquet(tmp_path / "o" / "bb.parquet")
    assert (table["truth_label"] == UNKNOWN_LABEL).all() and (table["run"] == 9).all()
    result = runner.invoke(app, ["convert-lhco", "--output", str(tmp_path / "o")])
    assert result.exit_code == 2 and "either INPUT_FILE" in result.output

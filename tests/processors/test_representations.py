"""``adhunt features --images --extended``: image files aligned with the tables, the extra columns,
the default columns unchanged, refusals of inconsistent directories, and training on extra columns."""

from __future__ import annotations

import json
import shutil

import awkward as ak
import numpy as np
import pandas as pd
import pytest
from eventfiles import make_events, write_events
from typer.testing import CliRunner

from adhunt.images import jet_images
from adhunt.jobs.cli import app
from adhunt.jobs.features import run_features
from adhunt.processors.features import FeatureConfig
from adhunt.schema import FEATURE_COLUMNS, IMAGE_COLUMNS, extended_columns
from adhunt.tables import FeatureTableError, iter_chunk_images, read_images, read_table

KINDS = ["dijet", "soft", "dijet", "monojet", "dijet", "dijet", "nan", "dijet", "dijet", "empty"]
SIZE = 16


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("representations")
    columns = make_events(KINDS, seed=5)
    source = write_events(base / "a.root", columns)
    fileset = base / "fileset.json"
    fileset.write_text(json.dumps({"qcd": [str(source)]}))
    full = base / "full"
    res = CliRunner().invoke(
        app,
        [
            "features",
            str(fileset),
            "--output",
            str(full),
            "--chunksize",
            "4",
            "--images",
            "--image-size",
            str(SIZE),
            "--extended",
        ],
    )
    assert res.exit_code == 0, res.output
    default = base / "default"
    run_features({"qcd": [str(source)]}, default, chunksize=4)
    return {"columns": columns, "full": full, "default": default}


def _sprays(columns, i):
    """The two sprays of synthetic dijet event i as float64 px/py/pz/E (float32 on disk)."""
    pf = columns["PFCands"][i]
    pt, eta, phi, m = (
        ak.to_numpy(pf[f]).astype(np.float32).astype(np.float64)
        for f in ("pt", "eta", "phi", "mass")
    )
    px, py, pz = pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta)
    E = np.sqrt(px**2 + py**2 + pz**2 + m**2)
    side = np.cos(phi - phi[0]) > 0
    out = []
    for s in (side, ~side):
        p4 = {"px": px[s], "py": py[s], "pz": pz[s], "E": E[s]}
        mass = np.sqrt(
            max(E[s].sum() ** 2 - px[s].sum() ** 2 - py[s].sum() ** 2 - pz[s].sum() ** 2, 0)
        )
        out.append((mass, p4, pt[s].sum()))
    return sorted(out, key=lambda x: x[0])  # j1 = lighter


def test_images_aligned_with_table_rows(runs):
    """Row r of read_images is the event of row r of read_table: its images equal those of the
    event's two sprays computed straight from the file, lighter jet in channel 0; the stored
    pre-normalisation pT equals the scalar pT sum of each spray (nothing leaves the grid)."""
    frame = read_table(runs["full"])
    images = read_images(runs["full"])
    assert images.shape == (len(frame), 2, SIZE, SIZE) == (KINDS.count("dijet"), 2, SIZE, SIZE)
    assert images.dtype == np.float32
    events = list(runs["columns"]["event"])
    for row, event in enumerate(frame["event"]):
        sprays = _sprays(runs["columns"], events.index(event))
        for k, (_mass, p4, pt_sum) in enumerate(sprays):
            expected = jet_images(
                ak.Array([[dict(zip(p4, v, strict=True)) for v in zip(*p4.values(), strict=True)]]),
                1.0,
                SIZE,
            )
            np.testing.assert_allclose(images[row, k], expected.images[0], atol=1e-6)
            assert frame.loc[row, f"image_pt_j{k + 1}"] == pytest.approx(pt_sum, rel=1e-9)
            assert frame.loc[row, f"image_outside_j{k + 1}"] == 0
            assert frame.loc[row, f"nconst_j{k + 1}"] == len(p4["px"])
        assert frame.loc[row, "mj1"] == pytest.approx(sprays[0][0], rel=1e-5)
    np.testing.assert_allclose(images.sum(axis=(2, 3)), 1.0, rtol=1e-5)


def test_extra_columns_leave_the_default_ones_unchanged(runs):
    full, default = read_table(runs["full"]), read_table(runs["default"])
    assert list(default.columns) == list(FEATURE_COLUMNS)
    assert list(full.columns) == [*FEATURE_COLUMNS, *extended_columns(), *IMAGE_COLUMNS]
    pd.testing.assert_frame_equal(full[list(FEATURE_COLUMNS)], default)
    # tau at beta 1 of the extended set is the default tau; ratios and grooming are sane
    for k in (1, 2):
        for n in (1, 2, 3):
            np.testing.assert_array_equal(full[f"tau{n}_b1_j{k}"], full[f"tau{n}_j{k}"])
        np.testing.assert_allclose(full[f"tau21_b1_j{k}"], full[f"tau21_j{k}"])
        assert (full[f"msd_j{k}"] <= full[f"mj{k}"] * (1 + 1e-9)).all()
        assert (full[f"d2_j{k}"] > 0).all()
        assert (full[f"tau5_b05_j{k}"] <= full[f"tau4_b05_j{k}"]).all()
    chosen = read_table(runs["full"], columns=["msd_j1", "tau21_b05_j1", "mj1_over_mjj"])
    assert len(chosen) == len(full) and "msd_j1" in chosen.columns
    assert not list(runs["default"].rglob("*.npy"))
    echo = json.loads((runs["default"] / "features_config.json").read_text())
    assert echo["images"] is None and echo["extra_columns"] == []
    with pytest.raises(FeatureTableError, match="no jet images"):
        read_images(runs["default"])
    # one dataset's directory, a dataset list, and chunk by chunk: the same rows
    whole = read_images(runs["full"])
    np.testing.assert_array_equal(read_images(runs["full"] / "qcd"), whole)
    np.testing.assert_array_equal(read_images(runs["full"], datasets=["qcd"]), whole)
    chunks = list(iter_chunk_images(runs["full"]))
    assert [len(pd.read_parquet(t)) for t, _ in chunks] == [len(i) for _, i in chunks]
    np.testing.assert_array_equal(np.concatenate([i for _, i in chunks]), whole)


def test_refuses_inconsistent_directories(runs, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(runs["full"], broken)
    npys = sorted((broken / "qcd").glob("*.images.npy"))
    assert len(npys) == 2  # coffea splits 10 events into chunks of 5
    np.save(npys[1], np.zeros((2, 2, SIZE + 1, SIZE + 1), np.float32))
    with pytest.raises(FeatureTableError, match="shape"):
        read_images(broken)
    npys[1].unlink()
    with pytest.raises(FeatureTableError, match="has no image file"):
        read_images(broken)
    echo = json.loads((broken / "features_config.json").read_text())
    echo["extra_columns"] = echo["extra_columns"][:-4]  # tables hold columns it does not declare
    (broken / "features_config.json").write_text(json.dumps(echo))
    with pytest.raises(FeatureTableError, match="does not declare"):
        read_table(broken)
    # a chunk of a default run mixed into an extended directory lacks the configured columns
    mixed = tmp_path / "mixed"
    shutil.copytree(runs["full"], mixed)
    first = sorted((mixed / "qcd").glob("*.parquet"))[0]
    shutil.copy(runs["default"] / "qcd" / first.name, first)
    with pytest.raises(FeatureTableError, match="lacks the configured"):
        read_table(mixed)


def test_config_refuses_representations_without_constituents():
    with pytest.raises(ValueError, match="constituents"):
        FeatureConfig(jets="fatjet", images=True)
    with pytest.raises(ValueError, match="image_size"):
        FeatureConfig(images=True, image_size=1)
    assert FeatureConfig().extra_columns() == () and FeatureConfig().image_spec() is None


@pytest.mark.slow  # ~20 s: extended features of 2000 Pythia events, then a 2-fold training
def test_train_on_extended_columns(generated_qcd, generated_wprime, tmp_path):
    """``adhunt train --features-list`` reads extra columns from an extended directory."""
    from adhunt.rootio import read_fileset

    fileset = {
        **read_fileset(generated_qcd / "fileset.json"),
        **read_fileset(generated_wprime / "fileset.json"),
    }
    out = tmp_path / "features"
    run_features(fileset, out, FeatureConfig(extended=True), chunksize=1000)
    config = tmp_path / "fast.yaml"
    config.write_text("n_ensemble: 1\nhgb_max_iter: 30\nnum_threads: 1\n")
    model = tmp_path / "model"
    res = CliRunner().invoke(
        app,
        [
            "train",
            "supervised",
            "--features",
            str(out),
            "--output",
            str(model),
            "--folds",
            "2",
            "--window",
            "2800:4400",
            "--features-list",
            "msd_j1,msd_j2,tau21_b05_j1,d2_j2,nconst_j1",
            "--config",
            str(config),
        ],
    )
    assert res.exit_code == 0, res.output
    # adhunt infer accepts the model only with a feature configuration that computes its inputs
    from adhunt.jobs.infer import _load_models
    from adhunt.processors.inference import InferenceError

    with pytest.raises(InferenceError, match="msd_j1"):
        _load_models({"m": model})
    assert "m" in _load_models({"m": model}, FeatureConfig(extended=True).extra_columns())
    frame = read_table(out)
    sig, qcd = frame[frame["truth_label"] == 1], frame[frame["truth_label"] == 0]
    # the W' decay products: the heavier jet's groomed mass sits near 500 GeV more often than QCD's
    near = lambda f: ((f["msd_j2"] > 400) & (f["msd_j2"] < 600)).mean()  # noqa: E731
    assert near(sig) > 3 * near(qcd)

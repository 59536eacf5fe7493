"""``adhunt scan`` (per-window training + bump hunt) and ``adhunt sculpting``.

Known answers come from synthetic feature tables built here, independently of the code under test:
background mjj by inverse-CDF sampling of the dijet function (numpy grid integral), background
features independent of mjj, and a Gaussian W'-like signal at 3.5 TeV whose substructure features
sit far from the background. The CLI runs on the real Pythia fixtures' features as well.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from adhunt.jobs.cli import app
from adhunt.jobs.scan import SCAN_JSON_KEYS, ScanJobConfig, run_scan
from adhunt.jobs.sculpting import run_sculpting
from adhunt.models.base import ResonantModel
from adhunt.schema import FEATURE_COLUMNS, STANDARD_FEATURES
from adhunt.tables import chunk_filename, make_feature_frame, write_chunk

runner = CliRunner()
PNG = b"\x89PNG\r\n\x1a\n"
FAST_METHOD = {"n_ensemble": 1, "hgb_max_iter": 40, "num_threads": 1}


def dijet_sample(n: int, rng: np.random.Generator, lo: float = 2800.0, hi: float = 8000.0):
    """mjj drawn from dN/dm ~ (1 - x)^10 / x^(6 + 0.2 ln x), x = m / 13 TeV, by inverse CDF."""
    m = np.linspace(lo, hi, 20001)
    x = m / 13000.0
    pdf = (1 - x) ** 10.0 / x ** (6.0 + 0.2 * np.log(x))
    cdf = np.concatenate([[0.0], np.cumsum(0.5 * (pdf[1:] + pdf[:-1]) * np.diff(m))])
    return np.interp(rng.uniform(size=n), cdf / cdf[-1], m)


def synthetic_table(n_bkg: int, n_sig: int, seed: int, correlated: bool = False) -> pd.DataFrame:
    """Feature table with every column of FEATURE_COLUMNS; signal: mjj ~ N(3500, 150) GeV, a
    ~250 GeV lighter jet, large mass gap and two-prong (low tau21) jets. ``correlated``: the
    background's lighter-jet mass grows with mjj (a feature a CWoLa classifier can learn the
    window from, i.e. a cut that sculpts)."""
    rng = np.random.default_rng(seed)
    mjj_b = dijet_sample(n_bkg, rng)
    mj1_b = rng.exponential(60.0, n_bkg) + 10.0
    if correlated:
        mj1_b = 0.1 * mjj_b + rng.normal(0.0, 15.0, n_bkg)
    n = n_bkg + n_sig
    # the columns of the original schema only: weight/luminosityBlock (bookkeeping, filled by
    # make_feature_frame) must not shift the random stream the scan expectations were tuned on
    feats = {
        c: rng.uniform(0.1, 1.0, n)
        for c in FEATURE_COLUMNS
        if c not in ("luminosityBlock", "weight")
    }
    feats.update(
        mjj=np.r_[mjj_b, rng.normal(3500.0, 150.0, n_sig)],
        mj1=np.r_[mj1_b, rng.normal(250.0, 30.0, n_sig)],
        delta_mj=np.r_[rng.exponential(100.0, n_bkg), rng.normal(600.0, 80.0, n_sig)],
        tau21_j1=np.r_[rng.normal(0.65, 0.12, n_bkg), rng.normal(0.35, 0.1, n_sig)],
        tau21_j2=np.r_[rng.normal(0.65, 0.12, n_bkg), rng.normal(0.35, 0.1, n_sig)],
    )
    truth = np.r_[np.zeros(n_bkg, int), np.ones(n_sig, int)]
    return make_feature_frame("synthetic", np.full(n, 1), np.arange(n), truth, feats)


def write_feature_dir(frame: pd.DataFrame, root, dataset: str = "qcd"):
    frame = frame.assign(dataset=dataset)
    write_chunk(frame, root, chunk_filename(dataset, "synthetic.root", 0, len(frame)))
    return root


def fast_config(**kwargs) -> ScanJobConfig:
    base = {"folds": 2, "seed": 3, "method_config": FAST_METHOD, "n_toys": 20}
    base.update(kwargs)
    return ScanJobConfig(**base)


def invoke(args):
    result = runner.invoke(app, [str(a) for a in args])
    result.text = " ".join(result.output.split())
    return result


def strip_timing(report: dict) -> dict:
    return {k: v for k, v in report.items() if k not in ("timing",)}


# --------------------------------------------------------------------------------------------------
# Known answers on synthetic tables


@pytest.fixture(scope="module")
def signal_scan(tmp_path_factory):
    data = synthetic_table(30_000, 250, seed=1)
    cfg = fast_config(scan_range=(3000.0, 4200.0), window_step=200.0, efficiencies=(0.1, 0.01))
    return data, run_scan(data, tmp_path_factory.mktemp("scan-signal"), config=cfg)


def test_scan_finds_the_injected_resonance(signal_scan):
    data, result = signal_scan
    report = json.loads(result.json_path.read_text())  # strict JSON
    assert tuple(report) == SCAN_JSON_KEYS
    windows = [(w["low"], w["high"]) for w in report["windows"]]
    assert windows == [(3000, 3400), (3200, 3600), (3400, 3800), (3600, 4000), (3800, 4200)]
    lo, hi = result.best_window("eff_0.1")
    assert lo <= 3500 < hi
    z_cut = result.local_z("eff_0.1", (lo, hi))
    z_nocut = result.local_z("no_cut", (lo, hi))
    assert z_cut > 5.0 and z_cut > z_nocut + 3.0, (z_cut, z_nocut)
    assert report["best"]["cut"] == "eff_0.1" and report["best"]["window"] == [lo, hi]
    # Counting checked against the table itself.
    mjj, truth = data["mjj"].to_numpy(), data["truth_label"].to_numpy()
    for w in report["windows"]:
        sr = (mjj >= w["low"]) & (mjj < w["high"])
        nc = w["cuts"]["no_cut"]
        assert nc["observed"] == sr.sum() == w["n_sr"] == nc["n_sr_before"]
        assert w["truth"]["n_signal_sr"] == np.sum(sr & (truth == 1))
        cut = w["cuts"]["eff_0.1"]
        assert cut["n_sr_after"] >= round(0.1 * w["n_sr"])
        assert cut["efficiency_sr"] == pytest.approx(0.1, abs=0.01)
        t = cut["truth"]
        assert t["n_signal_sr_after"] + t["n_background_sr_after"] == cut["n_sr_after"]
        if cut["status"] == "ok":
            assert cut["observed"] == cut["n_sr_after"]
    # The cut enriches the signal: in the best window most surviving SR events are signal.
    best = next(w for w in report["windows"] if [w["low"], w["high"]] == [lo, hi])
    t = best["cuts"]["eff_0.1"]["truth"]
    assert t["n_signal_sr_after"] > 0.8 * t["n_signal_sr_before"]
    assert abs(0.5 * sum(report["truth_window"]["window"]) - 3500) <= 100
    # Signal-like excess beats every background-only toy for the cut; not for the uncut spectrum.
    g = result.global_significance("eff_0.1")
    assert g["n_toys"] == 20 and g["is_bound"]
    assert result.global_significance("no_cut")["p_value"] > 0.01
    assert report["sic"]["best_window"]["auc"] > 0.9


def test_scan_outputs_and_plots(signal_scan):
    _, result = signal_scan
    names = {p.name for p in result.plots}
    assert {
        "spectrum_no_cut.png",
        "spectrum_eff_0.1.png",
        "local_significance.png",
        "sic.png",
    } <= names
    for p in result.plots:
        assert p.read_bytes()[:8] == PNG and p.stat().st_size > 10_000
    assert set(result.report["plots"]) == names


@pytest.fixture(scope="module")
def background_table():
    return synthetic_table(25_000, 0, seed=11)


def test_background_only_scan_is_compatible_with_chance_and_reproducible(
    background_table, tmp_path
):
    cfg = fast_config(windows=((3200.0, 3600.0), (3400.0, 3800.0), (3600.0, 4000.0)),
                      n_toys=60, plots=False, efficiencies=(0.1, 0.01))  # fmt: skip
    a = run_scan(background_table, tmp_path / "a", config=cfg)
    for label in ("no_cut", "eff_0.1", "eff_0.01"):
        g = a.global_significance(label)
        assert g is not None and not g["is_bound"], (label, g)
        assert g["p_value"] > 0.01, (label, g)
        assert a.report["results"][label]["max_local_z"] < 3.0
        for w in a.report["windows"]:
            assert w["cuts"][label]["status"] == "ok"
            assert w["cuts"][label]["fit_p_value"] > 1e-3
    assert a.report["sic"] is None and a.report["truth_window"] is None  # no signal: no ROC
    b = run_scan(background_table, tmp_path / "b", config=cfg)
    ja, jb = (json.loads(r.json_path.read_text()) for r in (a, b))
    assert strip_timing(ja) == strip_timing(jb)
    c = run_scan(
        background_table, tmp_path / "c", config=fast_config(**{**cfg.__dict__, "seed": 4})
    )
    jc = json.loads(c.json_path.read_text())
    assert jc["windows"][0]["cuts"]["eff_0.1"] != ja["windows"][0]["cuts"]["eff_0.1"]


# --------------------------------------------------------------------------------------------------
# Bad input


def test_bad_input_errors(background_table, tmp_path):
    out = tmp_path / "out"
    with pytest.raises(ValueError, match=r"window \[5000, 8000\] GeV lies outside the data range"):
        run_scan(
            background_table.query("mjj < 6000"), out, config=fast_config(windows=("5000:8000",))
        )
    with pytest.raises(ValueError, match=r"efficiencies must lie in \(0, 1\]"):
        fast_config(efficiencies=(0.1, 1.5))
    with pytest.raises(ValueError, match=r"efficiencies must lie in \(0, 1\]"):
        fast_config(efficiencies=(0.0,))
    with pytest.raises(ValueError, match="unknown method 'nope'"):
        fast_config(method="nope")
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['tau21_j2'\]"):
        run_scan(
            background_table.drop(columns="tau21_j2"),
            out,
            config=fast_config(windows=("3300:3700",)),
        )
    gap = background_table[(background_table.mjj < 3300) | (background_table.mjj >= 3700)]
    with pytest.raises(
        ValueError,
        match=r"window \[3300, 3700\] GeV cannot be scanned: no events in the signal region",
    ):
        run_scan(gap, out, config=fast_config(windows=("3300:3700",)))
    with pytest.raises(ValueError, match="no events in the sideband"):
        sr_only = background_table.query("3300 <= mjj < 3700").copy()
        sr_only.loc[sr_only.index[:2], "mjj"] = [3000.0, 4000.0]  # data range covers the window
        run_scan(sr_only, out, config=fast_config(windows=("3300:3700",), sideband_width=100))
    with pytest.raises(ValueError, match="outside the fit range"):
        run_scan(
            background_table,
            out,
            config=fast_config(windows=("2900:3300",), fit_range=(3000, 8000)),
        )
    assert not out.exists()  # validation happens before any output is written


# --------------------------------------------------------------------------------------------------
# CLI on the real generated samples


@pytest.fixture(scope="module")
def real_features(fileset_path, tmp_path_factory):
    from adhunt.jobs.features import run_features

    out = tmp_path_factory.mktemp("features-real")
    run_features(fileset_path, out, executor="iterative", chunksize=2000)
    return out


def test_cli_scan_on_generated_samples(real_features, tmp_path):
    config = tmp_path / "scan.yaml"
    config.write_text(
        "folds: 2\nseed: 5\nn_toys: 10\nefficiencies: [0.2, 0.05]\n"
        "method_config: {n_ensemble: 1, hgb_max_iter: 30, num_threads: 1}\n"
    )
    out = tmp_path / "scan"
    r = invoke(["scan", "--features", real_features, "--output", out, "--config", config,
                "--windows", "3000:3400,3200:3600", "--datasets", "qcd", "--inject", 150,
                "--signal", real_features, "--signal-datasets", "wprime", "--save-models"])  # fmt: skip
    assert r.exit_code == 0, r.output
    report = json.loads((out / "scan.json").read_text())
    assert tuple(report) == SCAN_JSON_KEYS
    assert report["config"]["n_toys"] == 10 and report["config"]["folds"] == 2
    assert report["config"]["windows"] == [[3000.0, 3400.0], [3200.0, 3600.0]]
    assert report["input"]["injection"]["n_injected"] == 150
    assert report["cuts"] == ["no_cut", "eff_0.2", "eff_0.05"]
    for w in report["windows"]:
        assert set(w["cuts"]) == set(report["cuts"])
        for entry in w["cuts"].values():
            for key in ("status", "observed", "expected", "expected_error", "z", "p_value",
                        "fit_chi2_ndf", "fit_p_value", "n_sr_before", "n_sr_after", "threshold", "truth"):  # fmt: skip
                assert key in entry
        assert w["truth"]["n_signal_sr"] > 0
    assert report["results"]["no_cut"]["global"]["n_toys"] == 10
    assert report["seeds"]["training"] == 5
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert "local_significance.png" in pngs and "sic.png" in pngs and "spectrum_no_cut.png" in pngs
    assert all((out / p).read_bytes()[:8] == PNG for p in pngs)
    model = ResonantModel.load(out / "models" / "3000_3400")
    assert (model.region.low, model.region.high, model.n_folds) == (3000.0, 3400.0, 2)
    assert tuple(model.features) == STANDARD_FEATURES

    r = invoke(["scan", "--features", real_features, "--output", tmp_path / "bad",
                "--windows", "3000:3400", "--efficiencies", "0.1,2"])  # fmt: skip
    assert r.exit_code == 2 and "efficiencies must lie in (0, 1]" in r.text


# --------------------------------------------------------------------------------------------------
# Sculpting


def train_cli(features_dir, output, extra=()):
    fast = output.parent / "fast.yaml"
    fast.write_text("n_ensemble: 1\nhgb_max_iter: 40\nnum_threads: 1\n")
    r = invoke(["train", "cwola", "--features", features_dir, "--output", output, "--window",
                "3300:3700", "--folds", "2", "--seed", "1", "--config", fast, *extra])  # fmt: skip
    assert r.exit_code == 0, r.output
    return output


def test_sculpting_passes_on_background_and_fails_on_a_sculpting_score(background_table, tmp_path):
    common = ["--toys", 20, "--efficiencies", "0.1,0.02", "--step", 200, "--range", "3000:5000",
              "--no-plots"]  # fmt: skip
    feats = write_feature_dir(background_table, tmp_path / "bkg")
    model = train_cli(feats, tmp_path / "model")
    ok = tmp_path / "ok"
    r = invoke(["sculpting", "--features", feats, "--model", model, "--output", ok, *common[:-1]])
    assert r.exit_code == 0, r.output
    assert "sculpting check PASSED" in r.text
    for label in ("no_cut", "eff_0.1", "eff_0.02"):
        assert (ok / f"spectrum_{label}.png").read_bytes()[:8] == PNG
    report = json.loads((tmp_path / "ok" / "sculpting.json").read_text())
    assert report["passed"] and report["input"]["mode"] == "kfold"  # trained on these events
    assert [c["label"] for c in report["cuts"]] == ["no_cut", "eff_0.1", "eff_0.02"]
    assert all(c["status"] == "pass" for c in report["cuts"])
    sr = (background_table.mjj >= 3300) & (background_table.mjj < 3700)
    assert report["cuts"][1]["n_sr"] == pytest.approx(0.1 * sr.sum(), abs=2)
    assert report["cuts"][1]["efficiency_sb"] == pytest.approx(0.1, abs=0.01)  # flat in mjj

    # A background whose lighter-jet mass tracks mjj: CWoLa learns the window, the cut sculpts.
    sculpted = write_feature_dir(
        synthetic_table(25_000, 0, seed=12, correlated=True), tmp_path / "corr"
    )
    bad_model = train_cli(sculpted, tmp_path / "bad-model")
    r = invoke(["sculpting", "--features", sculpted, "--model", bad_model, "--output",
                tmp_path / "fail", *common])  # fmt: skip
    assert r.exit_code == 1, r.output
    report = json.loads((tmp_path / "fail" / "sculpting.json").read_text())
    assert not report["passed"]
    cuts = {c["label"]: c for c in report["cuts"]}
    assert cuts["no_cut"]["status"] == "pass" and cuts["eff_0.02"]["status"] == "fail"
    assert cuts["eff_0.02"]["efficiency_sr"] > 5 * cuts["eff_0.02"]["efficiency_sb"]


def test_sculpting_bad_input(background_table, tmp_path):
    r = invoke(["sculpting", "--features", tmp_path, "--model", tmp_path / "missing", "--output",
                tmp_path / "o"])  # fmt: skip
    assert r.exit_code == 2 and "model directory not found" in r.text
    from adhunt.models.registry import get_method
    from adhunt.regions import SignalRegion

    cfg = get_method("cwola").config_class(**FAST_METHOD)
    model = get_method("cwola")(STANDARD_FEATURES, SignalRegion(3300, 3700), 2, 0, cfg)
    model.fit(background_table)
    with pytest.raises(ValueError, match="needs >= 20 toys"):
        run_sculpting(background_table, model, tmp_path / "a", n_toys=5)
    with pytest.raises(ValueError, match=r"efficiencies must lie in \(0, 1\]"):
        run_sculpting(background_table, model, tmp_path / "b", efficiencies=(2.0,))
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['mj1'\]"):
        run_sculpting(background_table.drop(columns="mj1"), model, tmp_path / "c")
    with pytest.raises(ValueError, match="--mode must be one of"):
        run_sculpting(background_table, model, tmp_path / "d", mode="fold")
    assert math.isfinite(model.score(background_table.head(10), mode="ensemble").sum())

"""``adhunt train ... --decorrelate qr``, ``adhunt train combine`` and ``adhunt compare`` end to end."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from adhunt.jobs.cli import app
from adhunt.models.base import ResonantModel
from adhunt.models.combine import CombinedModel
from adhunt.regions import SignalRegion
from adhunt.schema import FEATURE_COLUMNS
from adhunt.tables import chunk_filename, make_feature_frame, read_features, write_chunk

runner = CliRunner()
SR = SignalRegion(3300, 3700)


def write_dir(root, dataset, n, signal, seed, run=1):
    """A feature directory like ``adhunt features`` writes; background jet masses grow with mjj."""
    rng = np.random.default_rng(seed)
    feats = {
        c: rng.uniform(0.1, 1.0, n)
        for c in FEATURE_COLUMNS
        if c not in ("dataset", "run", "luminosityBlock", "event", "truth_label", "weight")
    }
    if signal:
        feats["mj1"] = rng.normal(100, 10, n)
        feats["delta_mj"] = rng.normal(400, 30, n)
        feats["tau21_j1"] = rng.normal(0.3, 0.1, n)
        feats["tau21_j2"] = rng.normal(0.35, 0.1, n)
        feats["mjj"] = rng.normal(3500, 80, n)
    else:
        feats["mjj"] = 2800.0 + rng.exponential(600.0, n)
        feats["mj1"] = rng.exponential(80, n) + 10 + 0.03 * (feats["mjj"] - 2800.0)
        feats["delta_mj"] = rng.exponential(150, n)
        feats["tau21_j1"] = rng.normal(0.65, 0.12, n)
        feats["tau21_j2"] = rng.normal(0.65, 0.12, n)
    frame = make_feature_frame(
        dataset, np.full(n, run), np.arange(n), np.full(n, int(signal)), feats
    )
    write_chunk(frame, root, chunk_filename(dataset, "f.root", 0, n))
    return root


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    base = tmp_path_factory.mktemp("features")
    train = write_dir(base / "train", "qcd", 8000, False, seed=1)
    write_dir(base / "signal", "wprime", 1000, True, seed=2, run=2)
    test = write_dir(base / "test", "qcd", 4000, False, seed=3, run=3)
    write_dir(test, "wprime", 400, True, seed=4, run=4)
    config = base / "fast.yaml"
    config.write_text("n_ensemble: 1\nhgb_max_iter: 40\nnum_threads: 1\n")
    return {"train": train, "signal": base / "signal", "test": test, "config": config}


def invoke(args):
    result = runner.invoke(app, [str(a) for a in args])
    result.text = " ".join(result.output.split())
    return result


def common(dirs):
    return ["--window", "3300:3700", "--folds", "3", "--seed", "5", "--config", dirs["config"],
            "--inject", 300, "--signal", dirs["signal"]]  # fmt: skip


def test_train_decorrelate_qr_and_score(dirs, tmp_path):
    out = tmp_path / "cwola_qr"
    r = invoke(["train", "cwola", "--features", dirs["train"], "--output", out,
                "--decorrelate", "qr", *common(dirs)])  # fmt: skip
    assert r.exit_code == 0, r.output
    model = ResonantModel.load(out)
    assert model.decorrelation is not None
    info = model.describe()["decorrelation"]
    assert info["method"] == "qr" and info["config"]["fit_region"] == "sidebands"
    # fitted on the training table's events outside the SR (injected signal included)
    assert info["fit"]["n_events"] == model.training["n_events"] - model.training["n_sr"]
    assert model.training["n_events"] == 8300

    scores_path = tmp_path / "scores.parquet"
    r = invoke(["score", out, "--features", dirs["test"], "--output", scores_path])
    assert r.exit_code == 0, r.output
    scores = pd.read_parquet(scores_path)
    test = read_features(dirs["test"])
    assert np.array_equal(scores["score"], model.score(test, mode="ensemble"))
    assert scores["score"].between(0, 1, inclusive="neither").all()
    raw = model.raw_score(test, mode="ensemble")
    mjj = test["mjj"].to_numpy()
    assert not np.array_equal(scores["score"].to_numpy(), raw)
    # at fixed mjj the decorrelated score orders events exactly like the raw one
    fixed = test.assign(mjj=3500.0)
    u_fixed = model.score(fixed, mode="ensemble")
    assert np.array_equal(model.raw_score(fixed, mode="ensemble"), raw)
    order = np.argsort(raw, kind="stable")
    assert np.all(np.diff(u_fixed[order]) >= 0)
    # the bump hunt's use: the training table scored k-fold (injection rebuilt); the cut u > 0.8
    # keeps 20% of the events in every mjj bin outside the SR (where the regression was fitted)
    r = invoke(["score", out, "--features", dirs["train"], "--output", tmp_path / "t.parquet",
                "--inject", 300, "--signal", dirs["signal"]])  # fmt: skip
    assert r.exit_code == 0, r.output
    on_train = pd.read_parquet(tmp_path / "t.parquet")
    assert (on_train["score_mode"] == "kfold").all()
    bins = ((2800, 3000), (3000, 3300), (3700, 4200), (4200, 9000))
    for lo, hi in bins:
        sel = on_train["mjj"].between(lo, hi, inclusive="left").to_numpy()
        frac = float(np.mean(on_train["score"].to_numpy()[sel] > 0.8))
        assert abs(frac - 0.2) < 3 * np.sqrt(0.16 / sel.sum()), (lo, hi, frac, sel.sum())
    # on an independent sample (fold ensemble, a slightly narrower score) the kept fraction is
    # below 20% but still the same in every bin
    bkg = test["truth_label"].to_numpy() == 0
    u = scores["score"].to_numpy()
    fracs = [float(np.mean(u[bkg & (mjj >= lo) & (mjj < hi)] > 0.8)) for lo, hi in bins]
    assert max(fracs) - min(fracs) < 0.06, fracs

    # infer calibrates its cuts with the same model.score: thresholds are decorrelated levels
    from adhunt.jobs.infer import calibrate_thresholds

    sr_events = on_train[SR.in_sr(on_train["mjj"])]
    reference = read_features(dirs["train"]).merge(sr_events[["run", "event"]], how="inner")
    thresholds = calibrate_thresholds(model, reference, (0.2, 0.05), mode="ensemble")
    assert 0 < thresholds[0] < thresholds[1] < 1

    r = invoke(["train", "cwola", "--features", dirs["train"], "--output", tmp_path / "x",
                "--decorrelate", "magic", *common(dirs)])  # fmt: skip
    assert r.exit_code == 2 and "--decorrelate must be one of none, qr" in r.text


def test_combine_and_compare(dirs, tmp_path):
    sup, noise, cw = tmp_path / "sup", tmp_path / "noise", tmp_path / "cw"
    r = invoke(["train", "supervised", "--features", dirs["train"], "--output", sup, *common(dirs)])
    assert r.exit_code == 0, r.output
    # a model on pure-noise features: a random score to compare against
    r = invoke(["train", "supervised", "--features", dirs["train"], "--output", noise,
                "--features-list", "tau32_j1,tau32_j2", *common(dirs)])  # fmt: skip
    assert r.exit_code == 0, r.output
    r = invoke(["train", "cwola", "--features", dirs["train"], "--output", cw, *common(dirs)])
    assert r.exit_code == 0, r.output

    comb = tmp_path / "comb"
    r = invoke(["train", "combine", "--models", f"{sup},{cw}", "--output", comb])
    assert r.exit_code == 0, r.output
    model = ResonantModel.load(comb)
    assert isinstance(model, CombinedModel) and model.reference["n_events"] > 100
    assert model.extra["members"] == [str(sup), str(cw)]
    # the combined score can itself be decorrelated; it round-trips with its members
    r = invoke(["train", "combine", "--models", f"{sup},{cw}", "--output", tmp_path / "cq",
                "--decorrelate", "qr"])  # fmt: skip
    assert r.exit_code == 0, r.output
    cq = ResonantModel.load(tmp_path / "cq")
    test = read_features(dirs["test"])
    assert cq.decorrelation is not None
    assert np.array_equal(cq.raw_score(test, "ensemble"), model.score(test, "ensemble"))
    # refusals: different feature sets, one member, existing output
    r = invoke(["train", "combine", "--models", f"{sup},{noise}", "--output", tmp_path / "bad"])
    assert r.exit_code == 2 and "members must share one feature set" in r.text
    r = invoke(["train", "combine", "--models", f"{sup}", "--output", tmp_path / "bad"])
    assert r.exit_code == 2 and "at least two" in r.text
    r = invoke(["train", "combine", "--models", f"{sup},{cw}", "--output", comb])
    assert r.exit_code == 1 and "exists and is not empty" in r.text  # checked before any work

    out = tmp_path / "cmp"
    r = invoke(["compare", sup, noise, comb, "--features", dirs["test"], "--output", out,
                "--min-background", 5])  # fmt: skip
    assert r.exit_code == 0, r.output
    assert "max SIC" in r.output
    table = pd.read_csv(out / "comparison.csv")
    assert list(table["model"]) == ["supervised", "supervised (noise)", "combine"]
    row = table.set_index("model")
    assert row.loc["supervised", "auc"] > 0.95 and row.loc["supervised", "max_sic"] > 4
    assert abs(row.loc["supervised (noise)", "auc"] - 0.5) < 0.1
    assert (
        row.loc["supervised", "eps_s_at_eps_b_0.01"]
        > row.loc["supervised (noise)", "eps_s_at_eps_b_0.01"] + 0.3
    )
    assert row.loc["combine", "auc"] > 0.9
    report = json.loads((out / "comparison.json").read_text())
    assert report["table"][0]["model"] == "supervised" and report["mode"] == "auto"
    assert report["models"]["combine"]["score_modes"] == {
        "kfold": 0,
        "ensemble": int(row.loc["combine", "n_signal"] + row.loc["combine", "n_background"]),
    }
    # the table's efficiency at 1% background, recomputed by brute force from the scores
    test = read_features(dirs["test"])
    test = test[SR.in_sr(test["mjj"])]
    s = ResonantModel.load(sup).score(test, mode="ensemble")
    y = test["truth_label"].to_numpy()
    bkg = np.sort(s[y == 0])[::-1]
    k = int(0.01 * bkg.size)  # at most k background events may pass
    brute = float(np.mean(s[y == 1] > bkg[k]))  # loosest cut: just above the (k+1)-th highest
    assert row.loc["supervised", "eps_s_at_eps_b_0.01"] == pytest.approx(brute)
    assert (out / "sic.png").stat().st_size > 10_000

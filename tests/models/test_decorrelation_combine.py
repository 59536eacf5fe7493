"""mjj decorrelation stored in a model (``--decorrelate qr``) and the rank-averaged combination."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from adhunt.models.artifact import ArtifactError
from adhunt.models.base import ResonantModel, TrainConfig
from adhunt.models.combine import CombinedModel
from adhunt.models.cwola import CWoLa
from adhunt.models.decorrelation import fit_decorrelation
from adhunt.models.references import Supervised
from adhunt.quantiles import rank_transform
from adhunt.regions import SignalRegion

FAST = TrainConfig(backend="hgb", n_ensemble=1, hgb_max_iter=30, num_threads=1)
FEATS = ["f0", "f1"]
SR = SignalRegion(3300, 3700)


def correlated_toy(n_bkg: int, n_sig: int, seed: int, start: int = 0) -> pd.DataFrame:
    """Falling mjj background whose f0 grows with mjj (jet mass-like); signal in the SR."""
    rng = np.random.default_rng(seed)
    m = 2600.0 * (1.0 + rng.pareto(5.0, 3 * n_bkg))
    m = m[m < 5000.0][:n_bkg]
    f0 = 1.5 * (m - 2600.0) / 1000.0 + rng.normal(0, 1, m.size)
    f1 = rng.normal(0, 1, m.size)
    sig = rng.normal(2.0, 0.6, size=(n_sig, 2))
    df = pd.DataFrame({"f0": np.r_[f0, sig[:, 0]], "f1": np.r_[f1, sig[:, 1]]})
    df["mjj"] = np.r_[m, rng.uniform(3350, 3650, n_sig)]
    df["truth_label"] = np.r_[np.zeros(m.size, int), np.ones(n_sig, int)]
    df["run"] = 3
    df["event"] = np.arange(start, start + len(df))
    return df


def test_qr_decorrelated_score_does_not_sculpt_and_round_trips(tmp_path):
    train = correlated_toy(12_000, 1500, seed=1)
    test = correlated_toy(12_000, 0, seed=2, start=100_000)  # signal-free
    # a classifier of the high-f0 signal: its score grows with mjj through f0
    model = Supervised(FEATS, SR, n_folds=3, seed=4, config=FAST).fit(train)
    raw = model.raw_score(test, mode="ensemble")
    fit_decorrelation(model, train)  # default: fitted outside the SR, interpolated across it
    u = model.score(test, mode="ensemble")
    assert np.all((u > 0) & (u < 1))
    assert np.array_equal(model.raw_score(test, mode="ensemble"), raw)  # raw score untouched
    m = test["mjj"].to_numpy()
    eps = 0.1
    raw_cut = raw >= np.quantile(raw, 1 - eps)
    qr_cut = u > 1 - eps
    p_raw = stats.ks_2samp(m[raw_cut], m).pvalue
    p_qr = stats.ks_2samp(m[qr_cut], m).pvalue
    print(f"KS p-value of the post-cut mjj: raw {p_raw:.2g}, QR {p_qr:.2g}")
    assert p_raw < 1e-6 and p_qr > 0.01, (p_raw, p_qr)
    assert abs(qr_cut.mean() - eps) < 0.02

    # saved with the model, applied after loading; the description records it
    model.save(tmp_path / "m")
    back = ResonantModel.load(tmp_path / "m")
    assert back.decorrelation is not None
    assert back.describe()["decorrelation"]["config"]["fit_region"] == "sidebands"
    assert np.array_equal(back.score(test, mode="ensemble"), u)
    assert np.array_equal(back.score(train, mode="auto"), model.score(train, mode="auto"))
    with pytest.raises(ValueError, match="missing column"):
        back.score(test.drop(columns=["mjj"]), mode="ensemble")


def test_qr_fit_region_sidebands_ignores_the_signal_region():
    data = correlated_toy(8000, 600, seed=5)
    model = Supervised(FEATS, SR, n_folds=3, seed=1, config=FAST).fit(data)
    d = fit_decorrelation(model, data)  # default: outside the SR only
    assert d.fit["n_events"] == int((~SR.in_sr(data["mjj"])).sum())
    # the signal in the SR keeps its high decorrelated score (the SR is not fitted)
    u = model.score(data, mode="kfold")
    sig = data["truth_label"].to_numpy() == 1
    assert np.mean(u[sig] > 0.9) > 0.5
    with pytest.raises(ValueError, match="needs at least"):
        fit_decorrelation(model, data.iloc[:100])


def test_combine_is_the_mean_of_member_ranks_and_round_trips(tmp_path):
    data = correlated_toy(6000, 400, seed=7)
    test = correlated_toy(4000, 300, seed=8, start=50_000)
    cw = CWoLa(FEATS, SR, n_folds=3, seed=2, config=FAST).fit(data)
    sup = Supervised(["f1", "f0"], SR, n_folds=4, seed=3, config=FAST).fit(data)
    combined = CombinedModel.build([cw, sup], data, ["cw", "sup"])
    got = combined.score(test, mode="kfold")

    # independent computation: each member's score of the reference SR events (held-out k-fold,
    # they trained on them), the fraction of those below each test score, averaged
    ref = data[SR.in_sr(data["mjj"])]
    expect, tolerance = np.zeros(len(test)), 0.0
    for member in (cw, sup):
        ref_scores = np.sort(member.score(ref, mode="kfold"))
        below = np.searchsorted(ref_scores, member.score(test, mode="ensemble")) / ref_scores.size
        expect += below / 2
        ties = np.unique(ref_scores, return_counts=True)[1].max()
        tolerance += 0.5 * (ties + 1) / ref_scores.size / 2
    assert np.max(np.abs(got - expect)) <= tolerance + 1e-12
    # the combination is an anomaly score too
    labels = test["truth_label"].to_numpy()
    sr = SR.in_sr(test["mjj"])
    assert got[sr][labels[sr] == 1].mean() > got[sr][labels[sr] == 0].mean() + 0.2

    combined.save(tmp_path / "c")
    back = ResonantModel.load(tmp_path / "c")
    assert isinstance(back, CombinedModel) and [m.method for m in back.members] == [
        "cwola",
        "supervised",
    ]
    assert np.array_equal(back.score(test, mode="kfold"), got)
    assert np.array_equal(back.score(data, mode="auto"), combined.score(data, mode="auto"))
    # events a member trained on get that member's held-out (k-fold) score, never the ensemble
    head = data.iloc[:50]
    levels, values = back.rank_tables[0]
    assert np.array_equal(
        back.member_levels(head, "kfold")[:, 0],
        rank_transform(levels, values, cw.score(head, mode="kfold")),
    )
    assert not np.array_equal(
        back.member_levels(head, "kfold")[:, 0], back.member_levels(head, "ensemble")[:, 0]
    )

    # tampering with the nested member is caught like any artifact change
    meta = (tmp_path / "c" / "model.json").read_text()
    (tmp_path / "c" / "model.json").write_text(meta.replace('"f1"', '"f2"', 1))
    with pytest.raises(ArtifactError):
        ResonantModel.load(tmp_path / "c")


def test_combine_refuses_mismatched_members():
    data = correlated_toy(3000, 200, seed=9)
    a = CWoLa(FEATS, SR, n_folds=2, seed=2, config=FAST).fit(data)
    b = CWoLa(["f0"], SR, n_folds=2, seed=2, config=FAST).fit(data)
    c = CWoLa(FEATS, SignalRegion(3400, 3800), n_folds=2, seed=2, config=FAST).fit(data)
    with pytest.raises(ValueError, match="feature set"):
        CombinedModel.build([a, b], data, ["a", "b"])
    with pytest.raises(ValueError, match="one window"):
        CombinedModel.build([a, c], data, ["a", "c"])
    with pytest.raises(ValueError, match="at least two"):
        CombinedModel.build([a], data)
    with pytest.raises(ValueError, match="lacks column"):
        CombinedModel.build([a, a], data.drop(columns=["f1"]), ["a", "a2"])
    with pytest.raises(TypeError, match="fitted members"):
        CombinedModel(FEATS, SR).fit(data)


def test_scan_window_trainer_cuts_on_the_decorrelated_score():
    """``ScanConfig(decorrelate="qr")``: each window's scores are conditional quantile levels."""
    from adhunt.bumphunt import ScanConfig
    from adhunt.models import window_scorer

    data = correlated_toy(8000, 0, seed=11)
    cfg = ScanConfig(method="supervised", features=FEATS, folds=3, decorrelate="qr")
    # labels drawn with P(1 | f0) = sigmoid(f0 - 2): the classifier's score is smooth in f0,
    # hence grows with mjj
    p1 = 1.0 / (1.0 + np.exp(-(data["f0"].to_numpy() - 2.0)))
    labels = np.random.default_rng(12).random(len(data)) < p1
    data = data.assign(truth_label=labels.astype(int))
    trainer = window_scorer(data, cfg, num_threads=1)
    assert trainer.decorrelate == "qr"
    u = trainer((3300.0, 3700.0))
    assert np.all((u > 0) & (u < 1))
    raw = window_scorer(
        data, ScanConfig(method="supervised", features=FEATS, folds=3), num_threads=1
    )((3300.0, 3700.0))
    m = data["mjj"].to_numpy()
    outside = ~SR.in_sr(m)
    low, high = outside & (m < 3000), outside & (m >= 3900)
    # raw: the 10% cut keeps far more at high mjj; decorrelated: ~10% on both sides
    t_raw = np.quantile(raw, 0.9)
    assert np.mean(raw[high] > t_raw) > 2 * np.mean(raw[low] > t_raw)
    for part in (low, high):
        assert abs(np.mean(u[part] > 0.9) - 0.1) < 0.03
    with pytest.raises(ValueError, match="decorrelate must be none or qr"):
        ScanConfig(decorrelate="pca")

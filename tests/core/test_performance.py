"""ROC / SIC / AUC against brute-force counting, and the SIC plot."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import norm

from adhunt.performance import curve_for_json, plot_sic, rejection_at, roc_sic


def _sample(rng, n_sig=300, n_bkg=500, ties=True):
    s = np.r_[rng.normal(1.0, 1.0, n_sig), rng.normal(0.0, 1.0, n_bkg)]
    if ties:
        s = np.round(s, 1)  # many tied scores: the ROC must treat a tie group as one cut
    y = np.r_[np.ones(n_sig, int), np.zeros(n_bkg, int)]
    perm = rng.permutation(len(y))
    return y[perm], s[perm]


def test_roc_points_match_brute_force_counts():
    rng = np.random.default_rng(3)
    y, s = _sample(rng)
    res = roc_sic(y, s, min_background=5)
    # one point per distinct score plus the "nothing passes" point
    assert len(res["eps_s"]) == len(np.unique(s)) + 1
    assert res["eps_s"][0] == 0 and res["eps_b"][0] == 0
    assert res["eps_s"][-1] == 1 and res["eps_b"][-1] == 1
    for t, es, eb, nb, sic in zip(
        res["thresholds"][1:], res["eps_s"][1:], res["eps_b"][1:],
        res["n_background_pass"][1:], res["sic"][1:], strict=True,
    ):  # fmt: skip
        passed = s >= t
        assert es == pytest.approx(np.mean(passed[y == 1]))
        assert eb == pytest.approx(np.mean(passed[y == 0]))
        assert nb == np.sum(passed & (y == 0))
        if nb >= 5:
            assert sic == pytest.approx(es / np.sqrt(eb))
        else:
            assert np.isnan(sic)


def test_auc_is_the_mann_whitney_probability():
    rng = np.random.default_rng(4)
    y, s = _sample(rng, 200, 250)
    sig, bkg = s[y == 1], s[y == 0]
    diff = sig[:, None] - bkg[None, :]
    brute = np.mean(diff > 0) + 0.5 * np.mean(diff == 0)
    assert roc_sic(y, s)["auc"] == pytest.approx(brute, abs=1e-12)
    assert roc_sic(y, -s)["auc"] == pytest.approx(1 - brute, abs=1e-12)


def test_auc_of_gaussian_scores_matches_analytic_value():
    rng = np.random.default_rng(5)
    y, s = _sample(rng, 20000, 20000, ties=False)
    # signal N(1,1) vs background N(0,1): AUC = Phi(1/sqrt(2))
    assert roc_sic(y, s)["auc"] == pytest.approx(norm.cdf(1 / np.sqrt(2)), abs=0.01)


def test_max_sic_respects_minimum_background():
    # one signal-like background outlier above all signal: a min_background of 1 lets the tightest
    # cuts (with 1 background event) count, a larger one must skip them
    y = np.r_[np.ones(50, int), np.zeros(1000, int)]
    s = np.r_[np.linspace(5, 6, 50), np.linspace(-3, 2, 999), 10.0]
    loose = roc_sic(y, s, min_background=1)
    strict = roc_sic(y, s, min_background=100)
    # brute force the best cut with at least 100 background events passing
    best = 0.0
    for t in np.unique(s):
        nb = np.sum((s >= t) & (y == 0))
        if nb >= 100:
            best = max(best, np.mean(s[y == 1] >= t) / np.sqrt(nb / 1000))
    assert strict["max_sic"] == pytest.approx(best)
    assert loose["max_sic"] > strict["max_sic"]
    assert np.nanmin(strict["n_background_pass"][np.isfinite(strict["sic"])]) >= 100
    # random scores: SIC ~ sqrt(eps_S) <= 1 at the best point, up to fluctuations
    rng = np.random.default_rng(0)
    rnd = roc_sic(rng.integers(0, 2, 20000), rng.random(20000), min_background=200)
    assert rnd["max_sic"] < 1.3
    assert rnd["auc"] == pytest.approx(0.5, abs=0.02)


def test_rejection_and_json_curve():
    y = np.r_[np.ones(10, int), np.zeros(100, int)]
    s = np.r_[99.5 - np.arange(10), np.arange(100, dtype=float)]
    res = roc_sic(y, s, min_background=1)
    # cut at 98.5: signal 99.5 and 98.5 pass (eps_S = 0.2), background only 99 (eps_B = 1/100)
    assert rejection_at(res, 0.2) == pytest.approx(100.0)
    assert rejection_at(res, 1.01) is None
    out = curve_for_json(res, max_points=20)
    assert len(out["curve"]["eps_s"]) <= 21
    assert out["max_sic"] == pytest.approx(res["max_sic"])
    assert out["curve"]["thresholds"][0] is None  # +inf is not JSON


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="0 \\(background\\) or 1"):
        roc_sic([0, 1, -1], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="NaN"):
        roc_sic([0, 1], [0.1, np.nan])
    with pytest.raises(ValueError, match="both classes"):
        roc_sic([1, 1], [0.1, 0.2])
    with pytest.raises(ValueError, match="equal length"):
        roc_sic([0, 1], [0.1])


def test_plot_sic_writes_png(tmp_path):
    rng = np.random.default_rng(6)
    y, s = _sample(rng, 500, 2000, ties=False)
    results = {"good": roc_sic(y, s), "random": roc_sic(y, rng.random(len(y)))}
    path = plot_sic(results, tmp_path / "plots" / "sic.png", title="toy")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert path.stat().st_size > 10_000

"""Sliding-window bump hunt on seeded toy spectra drawn from the dijet function (bin integrals by
scipy quad), with and without an injected Gaussian bump; sculpting guard; report; plots."""

from __future__ import annotations

import itertools
import json
import math

import hist
import numpy as np
import pytest
from scipy import integrate, stats

from adhunt.bumphunt import ScanConfig, bump_hunt, check_sculpting, make_windows
from adhunt.fitting import FitError, dijet_function
from adhunt.significance import asimov_z

EDGES = np.arange(2000.0, 6001.0, 100.0)
SR = (3300.0, 3700.0)
SR_BINS = (EDGES[:-1] >= SR[0]) & (EDGES[1:] <= SR[1])


@pytest.fixture(scope="module")
def background():
    """Expected background per bin: quad integrals of a 4-parameter dijet function, 200k events."""
    params = (1.0, 10.0, 6.0, 0.2)
    raw = np.array(
        [
            integrate.quad(lambda m: dijet_function(m, params), a, b)[0]
            for a, b in itertools.pairwise(EDGES)
        ]
    )
    return raw * 2e5 / raw.sum()


def gaussian_signal(n_signal: float, mass: float, width: float) -> np.ndarray:
    return n_signal * np.diff(stats.norm.cdf(EDGES, mass, width))


FAST = ScanConfig(window_step=200.0, n_toys=0)


def test_injected_bump_is_found_at_the_right_mass(background):
    sig = gaussian_signal(600.0, 3500.0, 60.0)
    n = np.random.default_rng(1).poisson(background + sig).astype(float)
    report = bump_hunt({"injected": (EDGES, n)}, ScanConfig(window_step=100.0, n_toys=25, seed=5))
    cut = report.cut("injected")
    best = cut.best
    assert best.low <= 3500.0 <= best.high
    assert best.low >= 3200.0 and best.high <= 3800.0
    assert best.z > 5
    # The observed maximum beats every background-only toy: a lower bound is stated.
    g = cut.global_significance
    assert g.n_toys == 25 and g.is_bound and "lower bound" in g.statement
    assert g.z == pytest.approx(stats.norm.isf(1 / 25))
    assert report.best[0] == "injected"


def test_injected_significance_matches_asimov_expectation(background):
    """Mean local Z over seeded pseudo-data at the SR agrees with the Asimov Z_A of the injected
    signal on the TRUE background (an independent computation), once the fit uncertainty
    sigma_b of the sideband extrapolation is included."""
    sig = gaussian_signal(500.0, 3500.0, 50.0)
    s_true, b_true = sig[SR_BINS].sum(), background[SR_BINS].sum()
    rng = np.random.default_rng(99)
    cfg = ScanConfig(windows=(SR,), n_toys=0)
    zs, sigmas, excess = [], [], []
    for _ in range(12):
        w = bump_hunt((EDGES, rng.poisson(background + sig).astype(float)), cfg).cuts[0].windows[0]
        assert w.status == "ok"
        zs.append(w.z)
        sigmas.append(w.expected_error)
        excess.append(w.observed - w.expected)
    z_expected = asimov_z(s_true, b_true, float(np.mean(sigmas)))
    # Spread of single-experiment Z is ~1; the mean of 12 is good to ~0.3.
    assert np.mean(zs) == pytest.approx(z_expected, abs=0.6)
    assert np.mean(excess) == pytest.approx(s_true, abs=3 * np.std(excess) / math.sqrt(12) + 40)
    # Without the fit uncertainty the significance would be overstated.
    assert asimov_z(s_true, b_true) > z_expected


def test_background_only_has_no_excess(background):
    n = np.random.default_rng(2).poisson(background).astype(float)
    report = bump_hunt((EDGES, n), ScanConfig(window_step=200.0, n_toys=30, seed=3))
    cut = report.cuts[0]
    assert cut.max_z < 3.0
    assert cut.global_significance.p_value > 0.05
    assert not cut.global_significance.is_bound
    ok = cut.ok_windows
    assert len(ok) >= 15
    assert all(w.fit_p_value > 1e-3 for w in ok)
    # The background-only fit of the full spectrum is good.
    assert cut.background_fit.p_value > 0.01


def test_local_p_values_uniform_at_a_fixed_window(background):
    """Independent background-only spectra: local p-values at one window are uniform (KS)."""
    rng = np.random.default_rng(17)
    cfg = ScanConfig(windows=(SR,), n_toys=0)
    p = [
        bump_hunt((EDGES, rng.poisson(background).astype(float)), cfg).cuts[0].windows[0].p_value
        for _ in range(150)
    ]
    assert stats.kstest(p, "uniform").pvalue > 0.01
    # And a too-small background uncertainty would be caught by the same test.
    cfg0 = ScanConfig(windows=((2200.0, 2600.0),), n_toys=0, include_fit_uncertainty=False)
    rng = np.random.default_rng(17)
    p0 = [
        bump_hunt((EDGES, rng.poisson(background).astype(float)), cfg0).cuts[0].windows[0].p_value
        for _ in range(150)
    ]
    assert stats.kstest(p0, "uniform").pvalue < 0.01


def test_sculpting_guard(background):
    rng = np.random.default_rng(8)
    clean = rng.poisson(background).astype(float)
    # A cut that carves a broad bump into the spectrum (efficiency rising then falling with mjj).
    m = 0.5 * (EDGES[:-1] + EDGES[1:])
    sculpt = 0.1 * (1 + 0.5 * np.exp(-0.5 * ((m - 3000.0) / 250.0) ** 2))
    sculpted = rng.poisson(background * sculpt).astype(float)
    report = check_sculpting(
        {"clean": (EDGES, clean), "sculpted": (EDGES, sculpted)},
        ScanConfig(window_step=200.0, n_toys=30),
    )
    by = {c.label: c for c in report.checks}
    assert by["clean"].passed, by["clean"].reasons
    assert not by["sculpted"].passed
    assert any("full-spectrum fit p-value" in r for r in by["sculpted"].reasons), by[
        "sculpted"
    ].reasons
    # Low-count windows (high mjj after the 10% cut) are left out of the KS test.
    assert len(by["sculpted"].ks_windows) < len(by["clean"].ks_windows)
    assert not report.passed
    json.dumps(report.to_dict())
    with pytest.raises(ValueError, match="n_toys >= 20"):
        check_sculpting((EDGES, clean), ScanConfig(n_toys=5))


def test_windows_snap_and_skip_with_reasons():
    edges = np.arange(2000.0, 4001.0, 100.0)
    ws = make_windows(edges, ScanConfig())
    assert ws[0].low == 2000.0 and ws[0].high == 2400.0 and ws[0].skip_reason is not None
    assert "both sides" in ws[0].skip_reason
    usable = [w for w in ws if w.skip_reason is None]
    assert usable[0].low == 2200.0 and usable[-1].high == 3800.0
    snapped = make_windows(edges, ScanConfig(windows=((3310.0, 3690.0),)))[0]
    assert (snapped.low, snapped.high) == (3300.0, 3700.0)
    assert snapped.sr_bins.sum() == 4 and not (snapped.sr_bins & snapped.fit_bins).any()
    limited = make_windows(edges, ScanConfig(windows=(SR,), sideband_width=300.0))[0]
    assert limited.fit_bins.sum() == 6
    ranged = make_windows(edges, ScanConfig(fit_range=(2500.0, 4000.0)))
    assert all(w.skip_reason for w in ranged if w.low < 2500.0)


def test_config_round_trip(tmp_path):
    from adhunt.config import dump_config, load_config

    cfg = ScanConfig(
        windows=((3300.0, 3700.0), (3400.0, 3800.0)), fit_range=(2200.0, 6000.0), n_toys=7, seed=3
    )
    dump_config(cfg, tmp_path / "scan.yaml")
    assert load_config(ScanConfig, tmp_path / "scan.yaml") == cfg
    (tmp_path / "bad.yaml").write_text("window_widht: 300\n")
    with pytest.raises(ValueError, match="unknown ScanConfig option"):
        load_config(ScanConfig, tmp_path / "bad.yaml")


def test_bad_inputs(background):
    n = np.random.default_rng(0).poisson(background).astype(float)
    with pytest.raises(ValueError, match="outside the histogram range"):
        bump_hunt((EDGES, n), ScanConfig(windows=((5800.0, 6200.0),), n_toys=0))
    with pytest.raises(ValueError, match="cut 'empty': histogram is empty"):
        bump_hunt({"empty": (EDGES, np.zeros_like(n))}, FAST)
    with pytest.raises(FitError, match="cut 'tiny': too few events to fit"):
        bump_hunt({"tiny": (EDGES, np.r_[np.ones(20), np.zeros(EDGES.size - 21)])}, FAST)
    with pytest.raises(ValueError, match=r"cut 'neg'.*finite and >= 0"):
        bump_hunt({"neg": (EDGES, -n)}, FAST)
    with pytest.raises(ValueError, match="exceeds the histogram range"):
        bump_hunt((EDGES, n), ScanConfig(window_width=5000.0, n_toys=0))
    with pytest.raises(ValueError, match=r"fit_range .* does not overlap"):
        bump_hunt((EDGES, n), ScanConfig(fit_range=(7000.0, 8000.0), n_toys=0))
    with pytest.raises(ValueError, match="window_width and window_step"):
        ScanConfig(window_step=0.0)
    with pytest.raises(ValueError, match="no histograms"):
        bump_hunt({}, FAST)


def test_report_is_json_reproducible_and_takes_hist(background, tmp_path):
    rng = np.random.default_rng(4)
    hists = {}
    for label, frac in (("eff=1", 1.0), ("eff=0.1", 0.1)):
        h = hist.Hist(hist.axis.Regular(40, 2000.0, 6000.0, name="mjj"))
        h.view()[:] = rng.poisson(background * frac)
        hists[label] = h
    cfg = ScanConfig(window_step=400.0, n_toys=5, seed=11)
    r1 = bump_hunt(hists, cfg)
    r2 = bump_hunt(hists, cfg)
    assert r1.to_dict() == r2.to_dict()
    r3 = bump_hunt(hists, ScanConfig(window_step=400.0, n_toys=5, seed=12))
    assert not np.array_equal(
        r1.cuts[0].global_significance.toy_max_z, r3.cuts[0].global_significance.toy_max_z
    )
    path = r1.write_json(tmp_path / "scan.json")
    data = json.loads(path.read_text())
    assert data["config"]["seed"] == 11 and data["config"]["window_width"] == 400.0
    assert [c["label"] for c in data["cuts"]] == ["eff=1", "eff=0.1"]
    assert data["cuts"][1]["seed"] == [11, 1]
    win = data["cuts"][0]["windows"]
    assert {
        "low",
        "high",
        "status",
        "observed",
        "expected",
        "expected_error",
        "z",
        "p_value",
        "fit_chi2_ndf",
        "fit_p_value",
    } <= set(win[0])
    assert any(w["status"] == "skipped" and w["reason"] for w in win)
    assert data["cuts"][0]["global"]["n_toys"] == 5
    assert len(data["cuts"][0]["best_window_fit"]["expected"]) == 40


def test_plots_are_written(background, tmp_path):
    from adhunt.plotting import plot_fit, plot_local_significance, plot_spectra

    rng = np.random.default_rng(6)
    sig = gaussian_signal(400.0, 3500.0, 60.0)
    hists = {
        "all": (EDGES, rng.poisson(background).astype(float)),
        "cut": (EDGES, rng.poisson(0.2 * background + sig).astype(float)),
    }
    report = bump_hunt(hists, ScanConfig(window_step=200.0, n_toys=3))
    paths = [
        plot_spectra(report, tmp_path / "spectra.png"),
        plot_local_significance(report, tmp_path / "z.png"),
    ]
    best = report.cut("cut").best
    paths.append(
        plot_fit(
            report.cut("cut").edges,
            report.cut("cut").counts,
            best.fit,
            tmp_path / "one.png",
            (best.low, best.high),
            "cut",
        )
    )
    for p in paths:
        assert p.exists() and p.stat().st_size > 10_000
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

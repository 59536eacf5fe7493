"""Property-style tests of :func:`adhunt.bumphunt.plan_windows` over seeded random binnings, fit
ranges, scan ranges, widths, steps and explicit windows (issue #7 item 6: windows always plan), and
the regression of the default scan on a table whose mjj reaches the last bin edge.

Every property is checked against quantities recomputed here from the bin edges alone (bins below
and above a window inside the fit range, events in the window), not against the planner's own
masks.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

from adhunt.bumphunt import ScanConfig, Window, mjj_counts, plan_windows, resolve_fit_range, scan
from adhunt.histograms import DEFAULT_MJJ_EDGES

TOL = 1e-6

#: The only errors plan_windows documents: a fit or scan range holding no bin, no window fitting.
DOCUMENTED = re.compile(
    r"fit range \[.*\] GeV contains less than one bin"
    r"|no [0-9.e+]+ GeV window fits into the scan range"
)


# --------------------------------------------------------------------------------------------------
# Random inputs


def random_edges(rng: np.random.Generator) -> np.ndarray:
    kind = rng.integers(4)
    if kind == 0:  # the default dijet binning (41 edges, variable widths)
        return np.asarray(DEFAULT_MJJ_EDGES)
    start = float(rng.choice([500.0, 1000.0, 1800.0, 2000.0, 2750.0]))
    n_bins = int(rng.integers(1, 60))
    if kind == 1:  # uniform
        width = float(rng.choice([25.0, 50.0, 100.0, 137.5, 250.0]))
        return start + width * np.arange(n_bins + 1)
    if kind == 2:  # irregular
        return start + np.concatenate([[0.0], np.cumsum(rng.uniform(10.0, 400.0, n_bins))])
    # growing widths (log-like, as real dijet binnings)
    return start * np.exp(np.linspace(0.0, rng.uniform(0.1, 1.5), n_bins + 1))


def random_range(rng: np.random.Generator, edges: np.ndarray) -> tuple[float, float]:
    """A range that may be aligned to edges, inside, overlapping an end or entirely outside."""
    lo_e, hi_e = edges[0], edges[-1]
    span = hi_e - lo_e
    choice = rng.integers(5)
    if choice == 0:  # aligned to edges
        i, j = sorted(rng.choice(edges.size, 2, replace=edges.size < 2))
        if i == j:
            j = min(i + 1, edges.size - 1)
            i = j - 1
        return float(edges[i]), float(edges[j])
    if choice == 1:  # the whole binning
        return float(lo_e), float(hi_e)
    lo = lo_e + span * rng.uniform(-0.3, 1.1)
    hi = lo + span * rng.uniform(0.001, 1.4)
    return float(lo), float(hi)


def random_windows(rng: np.random.Generator, edges: np.ndarray) -> tuple[tuple[float, float], ...]:
    """Explicit windows, with a good share touching or crossing the first/last edge."""
    lo_e, hi_e = edges[0], edges[-1]
    span = hi_e - lo_e
    out = []
    for _ in range(int(rng.integers(1, 8))):
        kind = rng.integers(6)
        width = span * rng.uniform(0.001, 0.5)
        if kind == 0:  # touches the last edge
            out.append((hi_e - width, hi_e))
        elif kind == 1:  # touches the first edge
            out.append((lo_e, lo_e + width))
        elif kind == 2:  # crosses the last edge
            out.append((hi_e - 0.5 * width, hi_e + 0.5 * width))
        elif kind == 3:  # narrower than a bin, anywhere (also at the very top)
            a = float(rng.choice(edges)) + rng.uniform(-5.0, 5.0)
            out.append((a, a + rng.uniform(0.5, 20.0)))
        elif kind == 4:  # entirely outside
            a = hi_e + rng.uniform(1.0, 500.0) if rng.uniform() < 0.5 else lo_e - 600.0
            out.append((a, a + 100.0))
        else:  # random inside
            a = lo_e + rng.uniform(0.0, 1.0) * (span - width)
            out.append((a, a + width))
    return tuple((float(a), float(b)) for a, b in out)


def random_case(seed: int) -> tuple[np.ndarray, tuple[float, float], ScanConfig, np.ndarray | None]:
    rng = np.random.default_rng(seed)
    edges = random_edges(rng)
    fit_range = random_range(rng, edges)
    span = edges[-1] - edges[0]
    kwargs = {
        "window_width": float(rng.choice([span * rng.uniform(0.01, 1.2), 400.0, 100.0, 37.0])),
        "window_step": float(rng.choice([span * rng.uniform(0.005, 0.5), 100.0, 50.0, 13.0])),
        "min_sideband_bins": int(rng.integers(1, 5)),
        "min_sr_events": int(rng.integers(1, 300)),
        "edges": tuple(edges),
    }
    if rng.uniform() < 0.4:
        kwargs["windows"] = random_windows(rng, edges)
    elif rng.uniform() < 0.5:
        kwargs["scan_range"] = random_range(rng, edges)
    mjj = None
    if rng.uniform() < 0.5:
        mjj = rng.uniform(edges[0] - 100.0, edges[-1] + 100.0, int(rng.integers(0, 3000)))
        mjj = np.r_[mjj, edges[-1], edges[0]]  # an event exactly on each outer edge
    return edges, fit_range, ScanConfig(**kwargs), mjj


# --------------------------------------------------------------------------------------------------
# Independent checks of one planned window


def fit_bins_from_edges(edges: np.ndarray, fit_range: tuple[float, float]) -> np.ndarray:
    """Bins wholly inside the fit range, after snapping it inward to edges (the documented rule)."""
    lo = edges[edges >= fit_range[0] - TOL][0]
    hi = edges[edges <= fit_range[1] + TOL][-1]
    return (edges[:-1] >= lo - TOL) & (edges[1:] <= hi + TOL)


def check_window(w, edges, fit_range, cfg, mjj) -> None:
    lo_e, hi_e = edges[:-1], edges[1:]
    assert isinstance(w, Window)
    if w.skip_reason and "outside the mjj binning" in w.skip_reason:
        # Reported as requested (no bins), so the user sees which request was dropped.
        assert w.low < edges[0] - TOL or w.high > edges[-1] + TOL, (w.low, w.high)
        assert not w.sr_bins.any() and not w.fit_bins.any()
        return
    # Inside the binning, snapped to edges, at least one bin wide.
    assert edges[0] - TOL <= w.low < w.high <= edges[-1] + TOL, (w.low, w.high)
    assert np.min(np.abs(edges - w.low)) < TOL and np.min(np.abs(edges - w.high)) < TOL
    expected_sr = (lo_e >= w.low - TOL) & (hi_e <= w.high + TOL)
    np.testing.assert_array_equal(w.sr_bins, expected_sr)
    assert w.sr_bins.sum() >= 1
    # The signal region is never fitted; only bins of the fit range are.
    in_fit = fit_bins_from_edges(edges, fit_range)
    assert not np.any(w.sr_bins & w.fit_bins)
    assert not np.any(w.fit_bins & ~in_fit)
    assert w.skip_reason is None or (isinstance(w.skip_reason, str) and w.skip_reason.strip())
    # Sideband bins recomputed from the edges.
    n_below = int(np.sum(in_fit & (hi_e <= w.low + TOL)))
    n_above = int(np.sum(in_fit & (lo_e >= w.high - TOL)))
    sr_in_fit = bool(np.all(in_fit[expected_sr]))
    n_sr = None if mjj is None else int(np.sum((mjj >= w.low) & (mjj < w.high)))
    if mjj is not None:
        assert w.n_sr == n_sr
    if w.skip_reason is None:
        assert sr_in_fit
        assert n_below >= cfg.min_sideband_bins and n_above >= cfg.min_sideband_bins
        widths = np.diff(edges)
        need = cfg.min_sideband_width if cfg.min_sideband_width is not None else w.high - w.low
        assert float(np.sum(widths[in_fit & (hi_e <= w.low + TOL)])) >= need - TOL
        assert float(np.sum(widths[in_fit & (lo_e >= w.high - TOL)])) >= need - TOL
        assert int(np.sum(w.fit_bins & (hi_e <= w.low + TOL))) == n_below
        assert int(np.sum(w.fit_bins & (lo_e >= w.high - TOL))) == n_above
        if mjj is not None:
            assert n_sr >= cfg.min_sr_events
        return
    # A skip reason states a fact that holds.
    reason = w.skip_reason
    if "fitted sideband bins" in reason:
        assert min(n_below, n_above) < cfg.min_sideband_bins, (reason, n_below, n_above)
        assert f"has {n_below} below and {n_above} above" in reason
    elif "GeV of fitted sidebands" in reason:
        widths = np.diff(edges)
        need = cfg.min_sideband_width if cfg.min_sideband_width is not None else w.high - w.low
        below = float(np.sum(widths[in_fit & (hi_e <= w.low + TOL)]))
        above = float(np.sum(widths[in_fit & (lo_e >= w.high - TOL)]))
        assert min(below, above) < need - TOL, (reason, below, above, need)
    elif "outside the fit range" in reason:
        assert not sr_in_fit, reason
    elif "min_sr_events" in reason:
        assert mjj is not None and n_sr < cfg.min_sr_events, reason
    else:
        assert "outside the mjj binning" in reason or "last mjj bin edge" in reason, reason


def nearest_edges(edges: np.ndarray, x: float) -> set[float]:
    d = np.abs(edges - x)
    return {float(e) for e in edges[d <= d.min() + TOL]}


N_CASES = 400


@pytest.mark.parametrize("block", range(4))
def test_plan_windows_properties_over_random_inputs(block):
    """400 seeded random cases: only documented ValueErrors, every window valid, reasons true."""
    outcomes = {"planned": 0, "raised": 0, "usable": 0, "skipped": 0, "top_edge": 0}
    for seed in range(block * N_CASES // 4, (block + 1) * N_CASES // 4):
        edges, fit_range, cfg, mjj = random_case(seed)
        try:
            windows = plan_windows(edges, fit_range, cfg, mjj)
        except ValueError as exc:  # anything else (IndexError ...) fails the test
            assert DOCUMENTED.search(str(exc)), (seed, str(exc))
            outcomes["raised"] += 1
            continue
        outcomes["planned"] += 1
        assert windows, seed  # no error means at least one candidate
        keys = [(w.low, w.high) for w in windows]
        assert len(set(keys)) == len(keys), (seed, keys)  # no window planned twice
        for w in windows:
            check_window(w, edges, fit_range, cfg, mjj)
        usable = [w for w in windows if w.skip_reason is None]
        outcomes["usable"] += len(usable)
        outcomes["skipped"] += len(windows) - len(usable)
        outcomes["top_edge"] += sum(abs(w.high - edges[-1]) < TOL for w in windows)
        if cfg.windows:
            # Each explicit window inside the binning and wider than its snapping lands on the
            # nearest edges.
            for a, b in cfg.windows:
                if a < edges[0] - TOL or b > edges[-1] + TOL:
                    continue
                lows, highs = nearest_edges(edges, a), nearest_edges(edges, b)
                if max(lows) >= min(highs):
                    continue  # narrower than a bin: widened to one bin, checked by check_window
                assert any(w.low in lows and w.high in highs for w in windows), (seed, a, b)
        else:
            # Sliding windows: none starts below the (snapped) scan start, and the top of the
            # scan range is covered to within one step (+ a bin of snapping).
            fi = edges[edges >= fit_range[0] - TOL][0]
            fj = edges[edges <= fit_range[1] + TOL][-1]
            lo, hi = cfg.scan_range or (fi, fj)
            lo, hi = max(lo, fi), min(hi, fj)
            widest = float(np.max(np.diff(edges)))
            assert min(w.low for w in windows) >= lo - widest / 2 - TOL, seed
            assert max(w.high for w in windows) >= hi - cfg.window_step - widest - TOL, seed
    # The random inputs exercise every branch, not just the easy one.
    assert outcomes["planned"] > 40 and outcomes["raised"] > 5, outcomes
    assert outcomes["usable"] > 50 and outcomes["skipped"] > 100, outcomes
    assert outcomes["top_edge"] > 20, outcomes


def test_windows_touching_the_outer_edges_are_planned_or_skipped():
    edges = np.arange(2000.0, 4001.0, 100.0)
    cfg = ScanConfig(
        windows=((3600.0, 4000.0), (2000.0, 2400.0), (3990.0, 4000.0), (3950.0, 4100.0),
                 (4100.0, 4500.0), (3300.0, 3700.0)),
        edges=tuple(edges),
    )  # fmt: skip
    ws = {(w.low, w.high): w for w in plan_windows(edges, (2000.0, 4000.0), cfg)}
    # At the top and bottom: planned, skipped because nothing is fitted beyond them.
    assert "0 above" in ws[(3600.0, 4000.0)].skip_reason
    assert "0 below" in ws[(2000.0, 2400.0)].skip_reason
    # Narrower than a bin at the last edge: the old IndexError path (j = i + 1 past the end).
    assert "last mjj bin edge 4000" in ws[(3900.0, 4000.0)].skip_reason
    # Crossing or beyond the outer edges: skipped with their requested bounds, also in a list.
    for bounds in ((3950.0, 4100.0), (4100.0, 4500.0)):
        assert f"window [{bounds[0]:g}, {bounds[1]:g}] GeV lies outside the mjj binning" in (
            ws[bounds].skip_reason or ""
        ), (bounds, ws[bounds].skip_reason)
    for bounds in ((3950.0, 4100.0), (4100.0, 4500.0), (1500.0, 1900.0), (1900.0, 2300.0)):
        (w,) = plan_windows(edges, (2000.0, 4000.0), ScanConfig(windows=(bounds,)))
        assert (w.low, w.high) == bounds
        assert f"window [{bounds[0]:g}, {bounds[1]:g}] GeV lies outside the mjj binning" in (
            w.skip_reason or ""
        ), (bounds, w.skip_reason)
    # 300 GeV of sidebands above [3300, 3700] (< the window's 400): extrapolation, skipped.
    assert "needs >= 400 GeV of fitted sidebands" in ws[(3300.0, 3700.0)].skip_reason
    assert ws[(3200.0, 3600.0)].skip_reason is None if (3200.0, 3600.0) in ws else True
    # A fit range ending inside the binning: windows reaching past it are skipped.
    ws = plan_windows(edges, (2000.0, 3500.0), ScanConfig(window_step=100.0, edges=tuple(edges)))
    assert all(w.high <= 3500.0 for w in ws)
    assert [w for w in ws if w.skip_reason is None][-1].high == 3100.0
    with pytest.raises(ValueError, match=r"fit range \[4100, 5000\] GeV contains less than one"):
        plan_windows(edges, (4100.0, 5000.0), ScanConfig())
    with pytest.raises(ValueError, match="no 400 GeV window fits into the scan range"):
        plan_windows(edges, (2000.0, 2300.0), ScanConfig())


def falling_spectrum_with_turn_on(n: int, seed: int, top: float = 8000.0) -> np.ndarray:
    """mjj from (1 - x)^10 / x^(6 + 0.2 ln x) times an erf trigger turn-on at 2.5 TeV, inverse CDF
    on a grid up to ``top``, plus a few events in the last default bin [7000, 8000)."""
    from scipy.special import erf

    m = np.linspace(1800.0, top, 40001)
    x = m / 13000.0
    pdf = (1 - x) ** 10.0 / x ** (6.0 + 0.2 * np.log(x)) * 0.5 * (1 + erf((m - 2500.0) / 150.0))
    cdf = np.concatenate([[0.0], np.cumsum(0.5 * (pdf[1:] + pdf[:-1]) * np.diff(m))])
    rng = np.random.default_rng(seed)
    mjj = np.interp(rng.uniform(size=n), cdf / cdf[-1], m)
    return np.r_[mjj, [7100.0, 7500.0, 7999.0]]


def test_default_config_on_a_table_reaching_the_last_edge_plans_and_scans():
    """Regression (issue #7): ``adhunt scan`` with all defaults stopped with ``IndexError: index 41
    is out of bounds for axis 0 with size 41`` in make_windows when mjj reached the last edge."""
    mjj = falling_spectrum_with_turn_on(40_000, seed=7)
    cfg = ScanConfig()
    edges = np.asarray(cfg.edges)
    assert edges.size == 41 and edges[-1] == 8000.0
    counts = mjj_counts(mjj, edges)
    assert counts[-1] > 0  # the data reach the last bin
    fit_range, source = resolve_fit_range(edges, counts, cfg)
    assert source == "turn-on"
    assert 2500.0 < fit_range[0] <= 3200.0 and fit_range[1] == 8000.0
    windows = plan_windows(edges, fit_range, cfg, mjj)
    for w in windows:
        check_window(w, edges, fit_range, cfg, mjj)
    top = [w for w in windows if w.high == 8000.0]
    assert top and all(w.skip_reason for w in top)
    usable = [w for w in windows if w.skip_reason is None]
    assert len(usable) >= 10 and usable[0].low >= fit_range[0]

    # The whole scan runs with the default windows (n_toys=0 and one cut keep it fast).
    rng = np.random.default_rng(3)
    scores = rng.uniform(size=mjj.size)
    result = scan(mjj, lambda bounds: scores, ScanConfig(n_toys=0, efficiencies=(0.1,)))
    assert [(w.low, w.high) for w in result.windows] == [(w.low, w.high) for w in usable]
    assert result.fit_range == fit_range and result.fit_range_source == "turn-on"
    assert {(w.low, w.high) for w in result.skipped} == {
        (w.low, w.high) for w in windows if w.skip_reason
    }
    # Random scores, no signal: nothing significant.
    assert result.max_local_z() < 3.0

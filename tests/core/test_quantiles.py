"""Quantile regression of a score versus mjj (decorrelation) and rank normalisation."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import sparse, stats
from scipy.optimize import linprog

from adhunt.quantiles import (
    QuantileCurves,
    _pinball_fit,
    _standardise,
    fit_quantile_curves,
    pinball_loss,
    rank_table,
    rank_transform,
)


def falling_toy(n: int, seed: int, slope: float = 0.8) -> tuple[np.ndarray, np.ndarray]:
    """Background whose score grows with mjj: mjj from a falling power law, score = a*mjj + noise."""
    rng = np.random.default_rng(seed)
    m = 2000.0 * (1.0 + rng.pareto(4.0, 2 * n))
    m = m[m < 7000.0][:n]
    score = slope * m / 1000.0 + rng.normal(0.0, 1.0, m.size)
    return score, m


def test_pinball_fit_matches_an_exact_linear_program():
    """The smoothed-Newton fit reaches the LP optimum of the check loss (independent solver)."""
    from numpy.polynomial import legendre

    s, m = falling_toy(3000, seed=11)
    x = legendre.legvander(_standardise(m, (np.log(m).min(), np.log(m).max())), 3)
    n, p = x.shape
    for tau in (0.5, 0.9, 0.99):
        start = np.zeros(p)
        start[0] = np.quantile(s, tau)
        beta, _ = _pinball_fit(x, s, tau, start, 1e-4, 200)
        cost = np.r_[np.zeros(p), tau * np.ones(n), (1 - tau) * np.ones(n)]
        a_eq = sparse.hstack([sparse.csr_matrix(x), sparse.identity(n), -sparse.identity(n)])
        lp = linprog(cost, A_eq=a_eq, b_eq=s, bounds=[(None, None)] * p + [(0, None)] * 2 * n)
        assert lp.success
        exact = pinball_loss(s - x @ lp.x[:p], tau)
        ours = pinball_loss(s - x @ beta, tau)
        assert exact <= ours <= exact * (1 + 2e-3), (tau, ours, exact)


def test_qr_cut_keeps_the_background_shape_and_the_raw_cut_sculpts():
    score, m = falling_toy(60_000, seed=1)
    curves = fit_quantile_curves(score, m)
    # an independent sample of the same background
    s2, m2 = falling_toy(60_000, seed=2)
    u = curves.transform(s2, m2)
    assert np.all((u > 0) & (u < 1))
    for eps in (0.1, 0.02):
        qr_cut = u > 1 - eps
        raw_cut = s2 > np.quantile(s2, 1 - eps)
        assert abs(qr_cut.mean() - eps) < 4 * np.sqrt(eps / m2.size) + 0.05 * eps
        assert stats.ks_2samp(m2[qr_cut], m2).pvalue > 0.01, eps
        assert stats.ks_2samp(m2[raw_cut], m2).pvalue < 1e-6, eps
        # efficiency per mjj bin (equal-population bins) is eps within statistics
        edges = np.quantile(m2, np.linspace(0, 1, 9))
        idx = np.clip(np.searchsorted(edges, m2, side="right") - 1, 0, 7)
        for k in range(8):
            n_k = int((idx == k).sum())
            passed = int(qr_cut[idx == k].sum())
            # binomial error plus the fit's own error (same order for a curve fit on 60k)
            sigma = np.sqrt(2 * n_k * eps * (1 - eps))
            assert abs(passed - eps * n_k) < 4 * sigma, (eps, k, passed, eps * n_k)
        raw_eff = [raw_cut[idx == k].mean() / eps for k in (0, 7)]
        assert raw_eff[0] < 0.6 and raw_eff[1] > 2.0  # the raw cut visibly sculpts


def test_curves_are_non_crossing_monotone_and_round_trip():
    score, m = falling_toy(20_000, seed=3)
    curves = fit_quantile_curves(score, m, degree=4)
    grid = np.geomspace(1500, 9000, 300)  # also outside the fitted range (held constant)
    q = curves.quantiles(grid)
    assert np.all(np.diff(q, axis=1) >= 0)
    assert np.allclose(curves.quantiles(np.array([1000.0, 1500.0]))[0], q[0])
    s = np.linspace(-5, 15, 2001)
    for mjj in (2100.0, 3500.0, 6000.0):
        u = curves.transform(s, np.full(s.size, mjj))
        assert np.all(np.diff(u) >= 0), mjj
        # strictly increasing (events stay ordered) until 1 - u reaches float resolution
        resolved = (1 - u[1:]) > 1e-12
        assert resolved.mean() > 0.5 and np.all(np.diff(u)[resolved] > 0), mjj
    # the cut at efficiency e is the curve where u = 1 - e
    mm = np.array([2500.0, 4000.0])
    t = curves.threshold(mm, 0.05)
    assert np.allclose(curves.transform(t, mm), 0.95, atol=1e-9)
    back = QuantileCurves.from_parts(curves.tensors(), curves.metadata())
    assert np.array_equal(
        back.transform(score[:500], m[:500]), curves.transform(score[:500], m[:500])
    )
    with pytest.raises(ValueError, match="mjj has 1 NaN"):
        curves.transform(np.zeros(2), np.array([3000.0, np.nan]))
    with pytest.raises(ValueError, match="NaN/inf score"):
        fit_quantile_curves(np.r_[score[:100], np.nan], np.r_[m[:100], 3000.0])


def test_rank_table_is_the_empirical_cdf():
    rng = np.random.default_rng(5)
    ref = rng.exponential(1.0, 20_000)
    levels, values = rank_table(ref)
    new = rng.exponential(1.0, 5000)
    got = rank_transform(levels, values, new)
    brute = np.searchsorted(np.sort(ref), new) / ref.size  # fraction of reference below
    assert np.max(np.abs(got - brute)) < 2e-3
    assert np.all(np.diff(rank_transform(levels, values, np.sort(new))) >= 0)
    # discrete scores: ties collapse, the level of a tied value is its mid-rank
    tied = np.repeat([0.0, 1.0, 2.0], [100, 300, 600])
    lv, vv = rank_table(tied)
    assert np.allclose(
        rank_transform(lv, vv, np.array([0.0, 1.0, 2.0])), [0.05, 0.25, 0.7], atol=0.01
    )


def test_tied_scores_get_the_middle_of_their_levels():
    """A discrete score: 70% of events share the lowest value; their u is not the top level."""
    rng = np.random.default_rng(9)
    m = rng.uniform(2000, 5000, 20_000)
    s = np.where(rng.random(m.size) < 0.7, 0.0, rng.exponential(1.0, m.size) + 0.1)
    curves = fit_quantile_curves(s, m, degree=1)
    u = curves.transform(s, m)
    assert np.ptp(u[s == 0]) < 0.02  # (the fitted curves sit on the tie up to roundoff)
    assert 0.3 < u[s == 0][0] < 0.45  # the middle of the levels the tie spans (~0.05..0.7)
    assert abs(np.mean(u > 0.9) - 0.1) < 0.01  # the untied tail is still cut exactly

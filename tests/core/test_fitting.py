"""Dijet-function fits, checked against independent integrals (scipy quad), an independent iminuit
cost function, and pseudo-experiment pulls."""

from __future__ import annotations

import itertools
import json
import math

import hist
import numpy as np
import pytest
from scipy import integrate, special

from adhunt.fitting import (
    BackgroundConfig,
    FitConfig,
    FitError,
    dijet_function,
    fit_background,
    fit_dijet,
    fit_start_above_turn_on,
)
from adhunt.histograms import DEFAULT_MJJ_EDGES
from adhunt.significance import local_significance

EDGES = np.arange(2000.0, 6001.0, 100.0)
TRUE4 = (1.0, 10.0, 6.0, 0.2)  # p0 rescaled below
TRUE3 = (1.0, 9.0, 5.5)
TOTAL = 200_000.0


def true_expectation(params, edges=EDGES, total=TOTAL):
    """Per-bin integrals of the dijet density by adaptive quadrature, normalised to ``total``.

    Returns (expected counts, log p0 of the normalised function)."""
    raw = np.array(
        [
            integrate.quad(lambda m: dijet_function(m, params), a, b, epsrel=1e-10)[0]
            for a, b in itertools.pairwise(edges)
        ]
    )
    scale = total / raw.sum()
    return raw * scale, math.log(params[0] * scale)


@pytest.fixture(scope="module")
def truth4():
    mu, lp0 = true_expectation(TRUE4)
    return mu, np.array([lp0, *TRUE4[1:]])


def test_asimov_fit_recovers_truth_and_bin_integrals(truth4):
    mu, truth = truth4
    fit = fit_dijet((EDGES, mu))
    assert fit.valid
    # Strongly correlated parameters: compare in units of their (Poisson) uncertainties.
    assert np.all(np.abs(fit.params - truth) < 1e-3 * fit.errors), (fit.params - truth) / fit.errors
    assert fit.deviance < 1e-6
    # Expected counts are bin integrals (not centre values): agree with adaptive quadrature of the
    # fitted function to high precision.
    p_fit = fit.p_standard
    quad = np.array(
        [
            integrate.quad(lambda m: dijet_function(m, p_fit), a, b, epsrel=1e-11)[0]
            for a, b in itertools.pairwise(EDGES)
        ]
    )
    np.testing.assert_allclose(fit.expected(), quad, rtol=1e-8)
    np.testing.assert_allclose(fit.expected(), mu, rtol=1e-3)
    centre_values = dijet_function(0.5 * (EDGES[:-1] + EDGES[1:]), p_fit) * 100.0
    assert (
        np.max(np.abs(centre_values / quad - 1)) > 1e-3
    )  # the centre approximation would be visibly off


def test_three_parameter_form():
    mu, lp0 = true_expectation(TRUE3)
    fit = fit_dijet((EDGES, mu), FitConfig(n_params=3))
    assert fit.valid and fit.n_params == 3 and fit.params.shape == (3,)
    assert np.all(np.abs(fit.params - [lp0, *TRUE3[1:]]) < 1e-3 * fit.errors)
    # ndf = bins - 3
    assert fit.ndf == EDGES.size - 1 - 3


def test_matches_independent_iminuit_cost_and_hessian(truth4):
    """Minimum and covariance agree with iminuit's own ExtendedBinnedNLL (numerical bin integrals).

    The covariance is checked against a central-difference Hessian of that independent cost: with
    parameter correlations of ~0.999 in (ln p0, p1, p2, p3), Minuit's own HESSE in this
    parametrisation is not reliable, which is why the fit works in a decorrelated one.
    """
    from iminuit import Minuit
    from iminuit.cost import ExtendedBinnedNLL

    mu, _ = truth4
    n = np.random.default_rng(7).poisson(mu).astype(float)
    fit = fit_dijet((EDGES, n))

    def density(m, lp0, p1, p2, p3):
        return math.exp(lp0) * dijet_function(m, (1.0, p1, p2, p3))

    cost = ExtendedBinnedNLL(n, EDGES, density, use_pdf="numerical")
    m = Minuit(cost, *fit.params)
    m.migrad()
    assert m.valid
    assert cost(*fit.params) <= m.fval + 1e-3  # ours is (at least as good as) the minimum
    # Central-difference Hessian of the independent cost (= 2 NLL) at our minimum, along the
    # principal axes of our covariance scaled by their sigmas: if our covariance is right, the
    # Hessian there is 2 * identity. Steps of 0.5 sigma keep the second differences far above the
    # numerical-integration noise of the cost.
    lam, vec = np.linalg.eigh(fit.covariance)
    d = vec * np.sqrt(lam)  # columns: principal axes
    f = lambda t: cost(*(fit.params + d @ t))  # noqa: E731
    k, h = 4, 0.5
    hess = np.empty((k, k))
    for i in range(k):
        for j in range(k):
            ei, ej = np.eye(k)[i] * h, np.eye(k)[j] * h
            hess[i, j] = (f(ei + ej) - f(ei - ej) - f(-ei + ej) + f(-ei - ej)) / (4 * h * h)
    np.testing.assert_allclose(hess, 2.0 * np.eye(k), atol=0.01)


def test_minimum_does_not_depend_on_the_starting_point(truth4):
    """Toy fits start from the observed fit: they must land on the same minimum as a fit from the
    data-driven start (the correlated direction is where a loose MIGRAD stop would differ)."""
    mu, truth = truth4
    rng = np.random.default_rng(21)
    for _ in range(15):
        n = rng.poisson(mu).astype(float)
        a = fit_dijet((EDGES, n), exclude=(3300.0, 3700.0))
        b = fit_dijet((EDGES, n), exclude=(3300.0, 3700.0), start=truth + 0.5 * a.errors)
        assert a.valid and b.valid
        assert np.all(np.abs(a.params - b.params) < 1e-3 * a.errors)
        assert abs(a.deviance - b.deviance) < 1e-6


def test_parameter_pulls_over_pseudo_experiments(truth4):
    """Fitted parameters scatter around the truth as their fitted uncertainties say."""
    mu, truth = truth4
    rng = np.random.default_rng(11)
    pulls = []
    for _ in range(60):
        fit = fit_dijet((EDGES, rng.poisson(mu).astype(float)))
        assert fit.valid
        pulls.append((fit.params - truth) / fit.errors)
    pulls = np.array(pulls)
    assert np.all(np.abs(pulls.mean(axis=0)) < 0.45), pulls.mean(axis=0)
    assert np.all((pulls.std(axis=0) > 0.7) & (pulls.std(axis=0) < 1.35)), pulls.std(axis=0)
    # Goodness of fit: deviance p-values of correct-model fits are not concentrated at 0.
    assert np.mean([abs(p) < 2 for p in pulls.ravel()]) > 0.88


def test_masked_fit_and_propagated_uncertainty(truth4):
    mu, _ = truth4
    rng = np.random.default_rng(3)
    n = rng.poisson(mu).astype(float)
    fit = fit_dijet((EDGES, n), exclude=(3300.0, 3700.0))
    sr = (EDGES[:-1] >= 3300) & (EDGES[1:] <= 3700)
    assert not fit.mask[sr].any() and fit.mask[~sr].all()
    assert fit.ndf == (~sr).sum() - 4
    # What is inside the masked region does not matter.
    n2 = n.copy()
    n2[sr] *= 3.0
    fit2 = fit_dijet((EDGES, n2), exclude=(3300.0, 3700.0))
    np.testing.assert_allclose(fit2.params, fit.params, rtol=1e-9, atol=1e-9)
    # SR prediction with uncertainty (correlations included) vs. sampling the parameter covariance
    # and integrating with an independent trapezoid rule.
    b, sigma_b = fit.expected_sum(sr)
    assert abs(b - mu[sr].sum()) < 4 * sigma_b
    samples = rng.multivariate_normal(fit.params, fit.covariance, size=4000)
    grid = np.linspace(3300.0, 3700.0, 801)
    lnx = np.log(grid / 13000.0)
    lnf = (
        samples[:, :1]
        + samples[:, 1:2] * np.log1p(-grid / 13000.0)
        - (samples[:, 2:3] + samples[:, 3:4] * lnx) * lnx
    )
    sums = np.trapezoid(np.exp(lnf), grid, axis=1)
    assert abs(np.mean(sums) - b) < 0.05 * sigma_b + 1e-3 * b
    assert np.std(sums) == pytest.approx(sigma_b, rel=0.08)
    # The per-bin band is smaller than the correlated sum would suggest when summed in quadrature? No:
    # bins move together, so the correlated sigma exceeds the quadrature sum.
    _, per_bin = fit.expected_with_uncertainty()
    assert sigma_b > math.sqrt(np.sum(per_bin[sr] ** 2))


def test_hist_input_same_as_arrays(truth4):
    mu, _ = truth4
    n = np.random.default_rng(5).poisson(mu)
    h = hist.Hist(hist.axis.Variable(EDGES, name="mjj"))
    h.view()[:] = n
    a = fit_dijet(h, fit_range=(2200.0, 5000.0))
    b = fit_dijet((EDGES, n), fit_range=(2200.0, 5000.0))
    np.testing.assert_allclose(a.params, b.params)
    assert a.mask.sum() == 28


@pytest.mark.parametrize(
    ("data", "match"),
    [
        ((EDGES, np.full(EDGES.size - 1, -1.0)), "finite and >= 0; bin 0"),
        ((EDGES, np.full(EDGES.size - 1, np.nan)), "finite and >= 0"),
        ((EDGES, np.ones(EDGES.size)), "len\\(edges\\) == len\\(counts\\) \\+ 1"),
        ((EDGES[::-1], np.ones(EDGES.size - 1)), "strictly increasing"),
        ((EDGES, np.zeros(EDGES.size - 1)), "too few events to fit"),
        ((EDGES, np.r_[np.ones(10), np.zeros(EDGES.size - 11)]), "too few events to fit"),
        ((EDGES[:5], np.full(4, 1000.0)), "too few bins"),
        ((np.array([1.0e4, 1.2e4, 1.4e4]), np.array([100.0, 100.0])), "too few bins"),
        ("not a histogram", "expected a 1D hist.Hist"),
    ],
)
def test_bad_input_errors(data, match):
    with pytest.raises((ValueError, TypeError), match=match):
        fit_dijet(data)


def test_bad_config_and_range():
    with pytest.raises(ValueError, match="n_params must be one of"):
        FitConfig(n_params=6)
    with pytest.raises(ValueError, match="n_params must be one of"):
        FitConfig(n_params=5, family="ua2")
    with pytest.raises(ValueError, match="family must be one of"):
        FitConfig(family="expo")
    edges = np.linspace(10_000.0, 14_000.0, 41)
    with pytest.raises(FitError, match="must lie in"):
        fit_dijet((edges, np.full(40, 100.0)))
    h2 = hist.Hist(hist.axis.Regular(4, 0, 1), hist.axis.Regular(4, 0, 1))
    with pytest.raises(ValueError, match="1D histogram"):
        fit_dijet(h2)


# --------------------------------------------------------------------------------------------------
# 5-parameter dijet function, UA2 family, F-test background model, fit start above the turn-on

WIDE_EDGES = np.arange(1500.0, 8001.0, 100.0)
TRUE5 = (
    1.0,
    10.0,
    5.0,
    0.2,
    -0.6,
)  # p4 = -0.6: the 4-parameter Asimov deviance is ~26 at 1e6 events


def integrals(function, params, edges, total):
    """Per-bin adaptive-quadrature integrals normalised to ``total``; (counts, ln p0 normalised)."""
    raw = np.array(
        [
            integrate.quad(lambda m: function(m, params), a, b, epsrel=1e-10)[0]
            for a, b in itertools.pairwise(edges)
        ]
    )
    scale = total / raw.sum()
    return raw * scale, math.log(params[0] * scale)


@pytest.mark.parametrize(
    ("family", "n_params"), [("dijet", 3), ("dijet", 4), ("dijet", 5), ("ua2", 3), ("ua2", 4)]
)
def test_internal_basis_maps_to_standard_parameters(family, n_params):
    """phi @ theta (internal basis) equals ln f evaluated directly with to_standard(theta)."""
    from adhunt.fitting import _Model, ua2_function

    edges = np.arange(2000.0, 7001.0, 250.0)
    model = _Model(edges, 13000.0, n_params, math.log(0.31), 5, family, x_scale=0.47)
    rng = np.random.default_rng(n_params)
    fn = dijet_function if family == "dijet" else ua2_function
    mjj = (
        0.5 * (edges[:-1] + edges[1:])[:, None]
        + 0.5 * np.diff(edges)[:, None] * (np.polynomial.legendre.leggauss(5)[0][None, :])
    )
    for _ in range(3):
        theta = rng.normal(0.0, 2.0, n_params)
        std = model.to_standard() @ theta
        direct = np.log(fn(mjj, np.r_[1.0, std[1:]])) + std[0]
        np.testing.assert_allclose(model.phi @ theta, direct, rtol=1e-9, atol=1e-9)


def test_five_parameter_fit_recovers_truth():
    mu, lp0 = integrals(dijet_function, TRUE5, WIDE_EDGES, 1e6)
    truth = np.array([lp0, *TRUE5[1:]])
    asimov = fit_dijet((WIDE_EDGES, mu), FitConfig(n_params=5))
    assert asimov.valid and asimov.params.shape == (5,)
    assert np.all(np.abs(asimov.params - truth) < 1e-3 * asimov.errors)
    rng = np.random.default_rng(17)
    pulls = []
    for _ in range(20):
        fit = fit_dijet((WIDE_EDGES, rng.poisson(mu).astype(float)), FitConfig(n_params=5))
        assert fit.valid
        pulls.append((fit.params - truth) / fit.errors)
    pulls = np.array(pulls)
    assert np.all(np.abs(pulls.mean(axis=0)) < 0.6), pulls.mean(axis=0)
    assert np.all((pulls.std(axis=0) > 0.6) & (pulls.std(axis=0) < 1.5)), pulls.std(axis=0)
    # The density the fit reports is the standard formula with the fitted parameters.
    np.testing.assert_allclose(
        asimov.function(3000.0), dijet_function(3000.0, np.r_[math.exp(lp0), TRUE5[1:]]), rtol=1e-6
    )


@pytest.mark.parametrize("params", [(1.0, 5.0, 8.0, 2.0), (1.0, 4.0, 9.0)])
def test_ua2_family_recovers_its_parameters(params):
    from adhunt.fitting import ua2_function

    edges = np.array(DEFAULT_MJJ_EDGES)
    edges = edges[edges >= 2900.0]
    mu, lp0 = integrals(ua2_function, params, edges, 4e5)
    fit = fit_dijet((edges, mu), FitConfig(n_params=len(params), family="ua2"))
    assert fit.valid and fit.family == "ua2" and fit.deviance < 1e-6
    truth = np.array([lp0, *params[1:]])
    assert np.all(np.abs(fit.params - truth) < 1e-3 * fit.errors), (fit.params - truth) / fit.errors
    np.testing.assert_allclose(fit.expected(), mu, rtol=1e-6)


def test_f_test_picks_five_parameters_when_p4_matters():
    mu, _ = integrals(dijet_function, TRUE5, WIDE_EDGES, 1e6)
    rng = np.random.default_rng(5)
    for _ in range(8):
        bf = fit_background((WIDE_EDGES, rng.poisson(mu).astype(float)))
        assert bf.n_params == 5, bf.summary()["f_test"]
        assert [s.n_params for s in bf.ladder] == [3, 4, 5]
        assert [s.chosen for s in bf.ladder] == [False, False, True]
        assert bf.ladder[2].f_p_value < 0.05 and bf.ladder[1].f_p_value < 0.05
        assert bf.status == "ok" and bf.good


def test_f_test_false_upgrade_rate_on_three_parameter_truth():
    mu, _ = integrals(dijet_function, TRUE3, WIDE_EDGES, 1e6)
    rng = np.random.default_rng(8)
    chosen, f_p = [], []
    for _ in range(50):
        bf = fit_background((WIDE_EDGES, rng.poisson(mu).astype(float)))
        chosen.append(bf.n_params)
        f_p.append(bf.ladder[1].f_p_value)
        # The F statistic is recomputed independently from the recorded deviances.
        d3, d4 = bf.ladder[0].deviance, bf.ladder[1].deviance
        f = (d3 - d4) / (d4 / (WIDE_EDGES.size - 1 - 4))
        assert bf.ladder[1].f_statistic == pytest.approx(max(f, 0.0), rel=1e-9, abs=1e-9)
    chosen = np.array(chosen)
    # alpha = 0.05: 2.5 upgrades expected; P(>= 9 of 50) ~ 1e-3.
    assert np.sum(chosen > 3) <= 8, np.bincount(chosen)
    # Under the 3-parameter truth the F-test p-values are roughly uniform (not all near 1 or 0).
    assert 0.25 < np.median(f_p) < 0.75


def test_background_envelope_matches_independent_alternative_fits():
    """sigma_spurious = max |B_alt - B_nominal| over the alternatives that fit, computed here from
    independent fit_dijet calls; poor alternatives are left out; a poor nominal is 'fit_failed'."""
    edges = np.array(DEFAULT_MJJ_EDGES)
    edges = edges[edges >= 2900.0]
    mu, _ = integrals(dijet_function, TRUE4, edges, 4e5)
    n = np.random.default_rng(4).poisson(mu).astype(float)
    window = (3500.0, 3900.0)
    sr = (edges[:-1] >= window[0]) & (edges[1:] <= window[1])
    bf = fit_background((edges, n), exclude=window)
    assert bf.status == "ok" and bf.reason == ""
    k = bf.n_params
    nominal = fit_dijet((edges, n), FitConfig(n_params=k), exclude=window)
    others = [fit_dijet((edges, n), FitConfig(n_params=k + 1), exclude=window)] if k < 5 else []
    others.append(fit_dijet((edges, n), FitConfig(n_params=4, family="ua2"), exclude=window))
    b, sigma_fit, sigma_spur = bf.expected_sum(sr)
    b_ref, sigma_ref = nominal.expected_sum(sr)
    assert b == pytest.approx(b_ref, rel=1e-6) and sigma_fit == pytest.approx(sigma_ref, rel=1e-4)
    spread = [abs(o.expected()[sr].sum() - b_ref) for o in others if o.p_value >= 0.01]
    assert spread and sigma_spur == pytest.approx(max(spread), rel=1e-4, abs=1e-3)
    assert bf.sigma_total(sr) == pytest.approx(math.hypot(sigma_fit, sigma_spur))
    summary = bf.summary()
    json.dumps(summary)
    assert summary["n_params"] == k and len(summary["alternatives"]) == len(others)
    assert summary["masked"]["sigma_spurious"] == pytest.approx(sigma_spur)
    # Without the spurious-signal term, or when no alternative passes the quality cut: zero.
    off = fit_background((edges, n), BackgroundConfig(spurious_signal=False), exclude=window)
    assert off.expected_sum(sr)[2] == 0.0
    strict = fit_background((edges, n), BackgroundConfig(min_fit_p_value=0.9999), exclude=window)
    assert strict.expected_sum(sr)[2] == 0.0
    assert strict.status == "fit_failed" and "p-value" in strict.reason and not strict.good
    # Starting from the observed fit lands on the same minimum.
    again = fit_background((edges, n), exclude=window, start=bf)
    assert again.n_params == k
    assert np.all(np.abs(again.nominal.params - bf.nominal.params) < 1e-3 * bf.nominal.errors)


def test_poor_sideband_fit_is_fit_failed_not_an_excess():
    """A spectrum no candidate describes (a 5% wiggle at 1e6 events) is reported as fit_failed."""
    mu, _ = integrals(dijet_function, TRUE4, EDGES, 1e6)
    centres = 0.5 * (EDGES[:-1] + EDGES[1:])
    n = np.random.default_rng(9).poisson(mu * (1 + 0.05 * np.sin(centres / 250.0))).astype(float)
    bf = fit_background((EDGES, n), exclude=(3300.0, 3700.0))
    assert bf.valid and not bf.good and bf.status == "fit_failed"
    assert "p-value" in bf.reason and "chi2/ndf" in bf.reason
    assert bf.nominal.p_value < 0.01


def _toy_windows(edges, width=400.0, step=200.0):
    lo = edges[0] + 100.0
    return [(a, a + width) for a in np.arange(lo, 6000.0 - width + 1, step)]


@pytest.mark.parametrize("truth", [TRUE4, (1.0, 10.0, 5.0, 0.2, -0.1)], ids=["4par", "5par"])
def test_window_pulls_and_local_z_are_calibrated(truth):
    """Background-only toys at 400k events over 2.9-8 TeV: pulls with the fit and function-choice
    uncertainties are unit-width, and the largest local Z over the windows stays below 3."""
    edges = np.array(DEFAULT_MJJ_EDGES)
    edges = edges[edges >= 2900.0]
    mu, _ = integrals(dijet_function, truth, edges, 4e5)
    observed = fit_background((edges, mu))
    lo, hi = edges[:-1], edges[1:]
    rng = np.random.default_rng(12)
    pulls, max_z, toys_with_failed_fit = [], [], 0
    for _ in range(30):
        n = rng.poisson(mu).astype(float)
        zs, failed = [], False
        for w in _toy_windows(edges):
            sr = (lo >= w[0]) & (hi <= w[1])
            bf = fit_background((edges, n), exclude=w, start=observed)
            if (
                bf.status != "ok"
            ):  # p < 0.01: the toy's whole spectrum is unlikely, many windows fail
                failed = True
                continue
            b, sigma_fit, sigma_spur = bf.expected_sum(sr)
            sigma = math.hypot(sigma_fit, sigma_spur)
            pulls.append((n[sr].sum() - b) / math.sqrt(b + sigma**2))
            zs.append(local_significance(n[sr].sum(), b, sigma).z)
        max_z.append(max(zs))
        toys_with_failed_fit += failed
    pulls = np.array(pulls)
    assert toys_with_failed_fit <= 4  # ~1-3% expected of 30; P(>= 5) ~ 0.2%
    assert abs(pulls.mean()) < 0.15, pulls.mean()
    assert 0.8 < pulls.std() <= 1.1, pulls.std()
    assert np.mean(np.array(max_z) < 3.0) >= 0.9, np.sort(max_z)


TURN_ON_TRUTH = (1.0, 10.0, 6.0, 0.2)


@pytest.mark.parametrize("midpoint", [2200.0, 2500.0, 2800.0])
@pytest.mark.parametrize("width", [50.0, 100.0, 150.0])
def test_fit_start_above_turn_on(midpoint, width):
    """The start lies past where an erf turn-on distorts the spectrum by > 1%, and the background
    fit from there describes a 400k-event spectrum (Asimov deviance tiny; it is not from the peak)."""
    edges = np.array(DEFAULT_MJJ_EDGES)

    def eff(m):
        return 0.5 * (1.0 + special.erf((m - midpoint) / (math.sqrt(2.0) * width)))

    def turned_on(m, p):
        return dijet_function(m, p) * eff(m)

    mu, _ = integrals(turned_on, TURN_ON_TRUTH, edges, 4e5)
    # Per-bin efficiency (ratio of the bin integrals with and without the turn-on).
    bin_eff = np.array(
        [
            integrate.quad(lambda m: turned_on(m, TURN_ON_TRUTH), a, b)[0]
            / integrate.quad(lambda m: dijet_function(m, TURN_ON_TRUTH), a, b)[0]
            for a, b in itertools.pairwise(edges)
        ]
    )
    distortion = 1.0 - bin_eff
    start = fit_start_above_turn_on(edges, mu)
    assert start in edges
    assert np.all(distortion[edges[:-1] >= start] < 0.01)
    assert start <= midpoint + 4 * width + 300.0  # does not throw away the spectrum either
    asimov = fit_background((edges, mu), fit_range=(start, edges[-1]))
    assert asimov.good and asimov.nominal.deviance < 2.0, asimov.summary()["f_test"]
    peak = edges[int(np.argmax(mu / np.diff(edges)))]
    from_peak = fit_background((edges, mu), fit_range=(peak, edges[-1]))
    assert from_peak.nominal.deviance > 5.0 * max(asimov.nominal.deviance, 0.1)
    toy = np.random.default_rng(int(midpoint + width)).poisson(mu).astype(float)
    assert fit_background((edges, toy), fit_range=(start, edges[-1])).p_value > 0.01


def test_fit_start_above_turn_on_errors():
    edges = np.arange(2000.0, 4001.0, 100.0)
    with pytest.raises(ValueError, match="empty"):
        fit_start_above_turn_on(edges, np.zeros(20))
    with pytest.raises(ValueError, match="too few"):
        fit_start_above_turn_on(edges[:6], np.ones(5))
    with pytest.raises(ValueError, match="never falls"):
        fit_start_above_turn_on(edges, np.arange(1.0, 21.0))
    with pytest.raises(ValueError, match="too short past its peak"):
        fit_start_above_turn_on(edges, np.r_[np.ones(14), 100.0, 1.0, 1.0, 1.0, 1.0, 1.0])


def test_background_config_validation():
    with pytest.raises(ValueError, match="strictly increasing"):
        BackgroundConfig(n_params=(4, 3))
    with pytest.raises(ValueError, match="subset"):
        BackgroundConfig(n_params=(3, 6))
    with pytest.raises(ValueError, match="alternative family"):
        BackgroundConfig(alternatives=("dijet",))
    with pytest.raises(ValueError, match="f_test_alpha"):
        BackgroundConfig(f_test_alpha=0.0)
    with pytest.raises(ValueError, match="quadrature_points"):
        BackgroundConfig(quadrature_points=0)
    assert BackgroundConfig(n_params=[3, 4]).n_params == (3, 4)

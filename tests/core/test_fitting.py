"""Dijet-function fits, checked against independent integrals (scipy quad), an independent iminuit
cost function, and pseudo-experiment pulls."""

from __future__ import annotations

import itertools
import math

import hist
import numpy as np
import pytest
from scipy import integrate

from adhunt.fitting import FitConfig, FitError, dijet_function, fit_dijet

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

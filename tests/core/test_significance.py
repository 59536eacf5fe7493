"""Local and global significance, checked against brute-force profile likelihoods, Gaussian limits
and Monte Carlo calibration."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import optimize, stats

from adhunt.significance import (
    asimov_z,
    global_significance,
    local_significance,
    p_from_z,
    z_counting,
    z_from_p,
)


def brute_force_z(n: float, b: float, sigma_b: float) -> float:
    """sqrt(q0) from numerically maximised on/off likelihoods: Pois(n | s + B) Pois(m | tau B),
    m = tau b, tau = b / sigma_b^2; numerator s = 0 (B profiled), denominator s and B free."""
    tau = b / sigma_b**2
    m = tau * b

    def nll(s, bb):
        return -(n * math.log(s + bb) - (s + bb) + m * math.log(tau * bb) - tau * bb)

    r0 = optimize.minimize_scalar(
        lambda lb: nll(0.0, math.exp(lb)), bracket=(math.log(b) - 1, math.log(b) + 1), tol=1e-12
    )
    r1 = optimize.minimize(
        lambda p: nll(max(p[0], -math.exp(p[1]) + 1e-9), math.exp(p[1])),
        x0=[max(n - b, 0.0), math.log(b)],
        method="Nelder-Mead",
        options={"xatol": 1e-10, "fatol": 1e-12, "maxiter": 20000},
    )
    return math.sqrt(max(2 * (r0.fun - r1.fun), 0.0))


@pytest.mark.parametrize(
    ("n", "b", "sigma_b"), [(130, 100, 5), (1200, 1000, 40), (25, 10, 3), (3700, 3100, 37)]
)
def test_closed_form_matches_brute_force_profile_likelihood(n, b, sigma_b):
    assert z_counting(n, b, sigma_b) == pytest.approx(brute_force_z(n, b, sigma_b), rel=2e-4)


def test_no_uncertainty_limit_and_gaussian_limit():
    # sigma_b -> 0: Poisson likelihood ratio; tiny sigma continuous with zero.
    assert z_counting(130, 100, 1e-9) == pytest.approx(z_counting(130, 100, 0.0), rel=1e-6)
    assert z_counting(130, 100, 0.0) == pytest.approx(
        math.sqrt(2 * (130 * math.log(1.3) - 30)), rel=1e-12
    )
    # Large counts: Z -> (n - b) / sqrt(b + sigma_b^2).
    b, sb = 1e6, 800.0
    n = b + 3 * math.sqrt(b + sb**2)
    assert z_counting(n, b, sb) == pytest.approx(3.0, rel=5e-3)
    # Uncertainty always lowers the significance.
    assert z_counting(130, 100, 10) < z_counting(130, 100, 0)


def test_asimov_small_signal_limit():
    assert asimov_z(30.0, 1e5) == pytest.approx(30 / math.sqrt(1e5), rel=1e-3)
    assert asimov_z(30.0, 1e5, 200.0) == pytest.approx(30 / math.sqrt(1e5 + 200.0**2), rel=1e-3)


def test_one_sided_and_signed():
    assert z_counting(80, 100) == 0.0
    assert z_counting(80, 100, signed=True) < 0
    assert z_counting(120, 100, signed=True) == z_counting(120, 100)
    zs = z_counting(np.array([0.0, 50, 100, 150]), 100.0, 5.0, signed=True)
    assert np.all(np.diff(zs) > 0) and zs[2] == 0.0
    loc = local_significance(80, 100, 5)
    assert loc.z == 0.0 and loc.z_signed < 0 and loc.p_value > 0.5
    assert p_from_z(0.0) == 0.5
    assert z_from_p(p_from_z(2.7)) == pytest.approx(2.7)


def test_monte_carlo_calibration_with_background_uncertainty():
    """Background-only: n ~ Pois(b), the prediction b_hat ~ N(b, sigma_b) is what a fit delivers.
    The signed Z must then be ~ N(0, 1), i.e. local p-values uniform."""
    rng = np.random.default_rng(2024)
    b, sb = 3000.0, 60.0
    n = rng.poisson(b, size=100_000).astype(float)
    b_hat = rng.normal(b, sb, size=n.size)
    z = z_counting(n, b_hat, sb, signed=True)
    assert np.mean(z) == pytest.approx(0.0, abs=0.02)
    assert np.std(z) == pytest.approx(1.0, abs=0.02)
    assert np.mean(z > 2) == pytest.approx(stats.norm.sf(2), rel=0.1)
    # Ignoring the uncertainty would overstate significances (std ~ sqrt(1 + sb^2/b)).
    z0 = z_counting(n, b_hat, 0.0, signed=True)
    assert np.std(z0) > 1.25


def test_global_significance_counts_and_bounds():
    toys = np.array([0.5, 1.0, 1.5, 2.0, 2.5, 3.0, np.nan, 0.1, 0.2, 0.3, 0.4])
    g = global_significance(2.0, toys)
    assert g.n_toys == 10 and g.n_exceeding == 3
    assert g.p_value == pytest.approx(0.3) and not g.is_bound
    assert g.z == pytest.approx(stats.norm.isf(0.3))
    assert "3/10" in g.statement
    hi = global_significance(4.0, toys)
    assert hi.is_bound and hi.p_value == pytest.approx(0.1) and "lower bound" in hi.statement
    assert hi.z == pytest.approx(stats.norm.isf(0.1))
    low = global_significance(0.0, toys)
    assert low.p_value == 1.0 and low.z == 0.0
    assert set(g.to_dict()) >= {"p_value", "z", "is_bound", "statement", "n_toys"}


@pytest.mark.parametrize(
    ("args", "match"),
    [
        ((10, 0.0, 1.0), "b must be finite and > 0"),
        ((10, 5.0, -1.0), "sigma_b"),
        ((-1, 5.0, 1.0), "observed n"),
    ],
)
def test_bad_inputs(args, match):
    with pytest.raises(ValueError, match=match):
        z_counting(*args)


def test_global_needs_valid_toys():
    with pytest.raises(ValueError, match="no valid pseudo-experiments"):
        global_significance(1.0, [np.nan, np.nan])
    with pytest.raises(ValueError, match="must be finite"):
        global_significance(float("nan"), [1.0])

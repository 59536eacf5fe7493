"""Binned Poisson fits of the smooth dijet function to mjj spectra, and the background model built on them.

The background model of a dijet bump hunt is the empirical function

    dN/dmjj = f(x) = p0 (1 - x)^p1 / x^(p2 + p3 ln x + p4 (ln x)^2),   x = mjj / sqrt(s),

in events per GeV (3-parameter form: p3 = p4 = 0; 4-parameter form: p4 = 0). An alternative family
for the function-choice uncertainty is the UA2-like form

    f(x) = p0 x^(-p1) exp(-p2 x - p3 x^2)          (3-parameter form: p3 = 0),

whose reported ``params`` are (ln p0, p1, p2[, p3]) in this convention. Expected counts per bin are the integral of f over the
bin (Gauss-Legendre), not f at the bin centre: spectra fall by orders of magnitude across a few bins and
the centre value is biased by the curvature.

Numerical robustness: p0 spans dozens of orders of magnitude and (p0, p1, p2, p3) are strongly
correlated, so Minuit works in an internal, nearly orthogonal parametrisation around a pivot x0 in the
middle of the fitted range,

    ln f = a + p1 ln((1 - x)/(1 - x0)) - b u - c u^2 - d u^3,   u = ln(x / x0),

which is a *linear* reparametrisation of (ln p0, p1, p2, p3, p4): results and covariances are mapped
back exactly (with L0 = ln x0: p2 = b - 2 c L0 + 3 d L0^2, p3 = c - 3 d L0, p4 = d). The UA2 family
uses, with v = x / x0 - 1 and s = max |v| over the fitted bins, the nearly triangular basis
(-u, -(v - u) / s^2, -(v^2 - 2 (v - u)) / s^3) ~ (-v, -v^2 / 2 s^2, -2 v^3 / 3 s^3): each function adds
one power of v, so the parameters are nearly uncorrelated. Starting values come from a weighted linear least-squares fit of ln(counts / width), which is
linear in the internal parameters. Gradients and the Hessian of the likelihood are analytic.

:func:`fit_background` is what a search uses: it chooses the number of dijet parameters per spectrum
with a Fisher F-test (as the CMS and ATLAS dijet searches do), fits alternative functions for a
function-choice ("spurious signal") uncertainty and flags a poor sideband fit as failed, so that a
wrong function is never reported as an excess. :func:`fit_start_above_turn_on` finds a fit range that
starts past the trigger turn-on from the spectrum itself.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import logging
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import stats

logger = logging.getLogger(__name__)

#: LHC Run 2 centre-of-mass energy, GeV.
SQRT_S_GEV = 13000.0
#: Names of the standard (reported) parameters of the dijet function (first ``n_params`` used).
PARAM_NAMES = ("log_p0", "p1", "p2", "p3", "p4")
#: Function families: the nominal dijet function and the UA2-like alternative.
FAMILIES = ("dijet", "ua2")
#: Allowed numbers of parameters per family.
FAMILY_N_PARAMS: dict[str, tuple[int, ...]] = {"dijet": (3, 4, 5), "ua2": (3, 4)}

_LNF_MAX = 700.0  # exp overflow guard


class FitError(ValueError):
    """A spectrum cannot be fit (too few events, too few bins, bad input)."""


@dataclass(frozen=True)
class FitConfig:
    """Settings of one dijet-function fit.

    ``min_events`` protects against fitting noise: with fewer events in the fitted bins the
    4-parameter function is unconstrained and the extrapolation into a masked region is meaningless.
    """

    n_params: int = 4
    sqrt_s: float = SQRT_S_GEV
    quadrature_points: int = 4
    min_events: float = 50.0
    #: "dijet" (3, 4 or 5 parameters) or "ua2" (3 or 4), see the module docstring.
    family: str = "dijet"

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise ValueError(f"FitConfig.family must be one of {FAMILIES}, got {self.family!r}")
        allowed = FAMILY_N_PARAMS[self.family]
        if self.n_params not in allowed:
            raise ValueError(
                f"FitConfig.n_params must be one of {allowed} for family {self.family!r}, "
                f"got {self.n_params}"
            )
        if not self.sqrt_s > 0:
            raise ValueError(f"FitConfig.sqrt_s must be positive, got {self.sqrt_s}")
        if not 1 <= self.quadrature_points <= 20:
            raise ValueError(
                f"FitConfig.quadrature_points must be in 1..20, got {self.quadrature_points}"
            )


# --------------------------------------------------------------------------------------------------
# Input handling


def as_histogram(histogram: Any, name: str = "histogram") -> tuple[np.ndarray, np.ndarray]:
    """(edges, counts) from a 1D ``hist.Hist`` or an ``(edges, counts)`` pair, validated.

    Flow bins are ignored. Counts must be finite and non-negative (Poisson likelihood); ``name``
    appears in error messages so that the failing cut/input is identified.
    """
    if hasattr(histogram, "axes") and hasattr(histogram, "values"):
        if len(histogram.axes) != 1:
            raise ValueError(
                f"{name}: expected a 1D histogram of mjj, got {len(histogram.axes)} axes"
            )
        edges = np.asarray(histogram.axes[0].edges, dtype=float)
        counts = np.asarray(histogram.values(flow=False), dtype=float)
    elif isinstance(histogram, tuple | list) and len(histogram) == 2:
        edges = np.asarray(histogram[0], dtype=float)
        counts = np.asarray(histogram[1], dtype=float)
    else:
        raise TypeError(
            f"{name}: expected a 1D hist.Hist or an (edges, counts) pair, got {type(histogram).__name__}"
        )
    if edges.ndim != 1 or counts.ndim != 1 or edges.size != counts.size + 1:
        raise ValueError(
            f"{name}: need len(edges) == len(counts) + 1, got {edges.shape} edges and {counts.shape} counts"
        )
    if counts.size < 1:
        raise ValueError(f"{name}: histogram has no bins")
    if not np.all(np.isfinite(edges)) or np.any(np.diff(edges) <= 0):
        raise ValueError(f"{name}: bin edges must be finite and strictly increasing")
    bad = ~np.isfinite(counts) | (counts < 0)
    if np.any(bad):
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"{name}: counts must be finite and >= 0; bin {i} [{edges[i]:g}, {edges[i + 1]:g}] has {counts[i]}"
        )
    return edges, counts


# --------------------------------------------------------------------------------------------------
# The function


def dijet_function(mjj: np.ndarray | float, params: Any, sqrt_s: float = SQRT_S_GEV) -> np.ndarray:
    """f(x) = p0 (1 - x)^p1 / x^(p2 + p3 ln x + p4 ln^2 x) at x = mjj / sqrt_s.

    ``params`` = (p0, p1, p2[, p3[, p4]]). Note: it holds p0 itself (not its log), as in the literature.
    """
    p = np.asarray(params, dtype=float)
    if p.size not in (3, 4, 5):
        raise ValueError(f"dijet_function needs 3, 4 or 5 parameters, got {p.size}")
    p3 = p[3] if p.size >= 4 else 0.0
    p4 = p[4] if p.size == 5 else 0.0
    x = np.asarray(mjj, dtype=float) / sqrt_s
    if np.any((x <= 0) | (x >= 1)):
        raise ValueError("dijet_function: mjj must lie in (0, sqrt_s)")
    lnx = np.log(x)
    return p[0] * np.exp(p[1] * np.log1p(-x) - (p[2] + (p3 + p4 * lnx) * lnx) * lnx)


def ua2_function(mjj: np.ndarray | float, params: Any, sqrt_s: float = SQRT_S_GEV) -> np.ndarray:
    """UA2-like f(x) = p0 x^(-p1) exp(-p2 x - p3 x^2) at x = mjj / sqrt_s; params = (p0, p1, p2[, p3]).

    The alternative family of the function-choice uncertainty: it has no (1 - x) factor and
    falls exponentially, so it extrapolates differently from the dijet function where data are
    sparse. ``params`` holds p0 itself (not its log).
    """
    p = np.asarray(params, dtype=float)
    if p.size not in (3, 4):
        raise ValueError(f"ua2_function needs 3 or 4 parameters, got {p.size}")
    p3 = p[3] if p.size == 4 else 0.0
    x = np.asarray(mjj, dtype=float) / sqrt_s
    if np.any((x <= 0) | (x >= 1)):
        raise ValueError("ua2_function: mjj must lie in (0, sqrt_s)")
    return p[0] * np.exp(-p[1] * np.log(x) - (p[2] + p3 * x) * x)


@functools.lru_cache(maxsize=32)
def _gauss_legendre(n_nodes: int) -> tuple[np.ndarray, np.ndarray]:
    return np.polynomial.legendre.leggauss(n_nodes)


class _Model:
    """Quadrature nodes and internal basis for one set of bin edges, a family and a pivot x0.

    ``x_scale`` is the UA2 basis scale s (max |x / x0 - 1| over the fitted bins); unused for dijet.
    """

    def __init__(
        self,
        edges: np.ndarray,
        sqrt_s: float,
        n_params: int,
        ln_x0: float,
        n_nodes: int,
        family: str = "dijet",
        x_scale: float = 1.0,
    ):
        nodes, weights = _gauss_legendre(n_nodes)
        lo, hi = edges[:-1], edges[1:]
        half = 0.5 * (hi - lo)
        mid = 0.5 * (hi + lo)
        m = mid[:, None] + half[:, None] * nodes[None, :]  # (bins, nodes)
        x = m / sqrt_s
        if np.any((x <= 0) | (x >= 1)):
            raise FitError(
                f"bin edges [{edges[0]:g}, {edges[-1]:g}] must lie in (0, sqrt_s={sqrt_s:g})"
            )
        self.weights = half[:, None] * weights[None, :]
        x0 = math.exp(ln_x0)
        u = np.log(x) - ln_x0
        if family == "dijet":
            basis = [np.ones_like(x), np.log1p(-x) - math.log1p(-x0), -u, -(u**2), -(u**3)]
        elif family == "ua2":
            v = x / x0 - 1.0
            s = x_scale
            basis = [np.ones_like(x), -u, -(v - u) / s**2, -(v * v - 2.0 * (v - u)) / s**3]
        else:  # pragma: no cover - FitConfig validates
            raise ValueError(f"unknown family {family!r}")
        self.phi = np.stack(basis[:n_params], axis=-1)  # (bins, nodes, k)
        self.ln_x0 = ln_x0
        self.x0 = x0
        self.family = family
        self.x_scale = x_scale

    def node_values(self, theta: np.ndarray) -> np.ndarray:
        lnf = np.clip(self.phi @ theta, -_LNF_MAX, _LNF_MAX)
        return self.weights * np.exp(lnf)  # (bins, nodes): weighted f at nodes

    def expected(self, theta: np.ndarray) -> np.ndarray:
        return self.node_values(theta).sum(axis=1)

    def expected_and_jacobian(self, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        wf = self.node_values(theta)
        return wf.sum(axis=1), np.einsum("bn,bnk->bk", wf, self.phi)

    def to_standard(self) -> np.ndarray:
        """Matrix M with (standard parameters) = M @ theta.

        Both bases are triangular in the standard functions (each internal function adds one),
        so the k-parameter matrix is the upper-left block of the full one.
        """
        k = self.phi.shape[-1]
        L0 = self.ln_x0
        m = np.eye(5)
        if self.family == "dijet":  # (ln p0, p1, p2, p3, p4)
            m[0, 1] = -math.log1p(-self.x0)
            m[0, 2] = L0
            m[0, 3] = -(L0**2)
            m[2, 3] = -2.0 * L0
            m[0, 4] = L0**3
            m[2, 4] = 3.0 * L0**2
            m[3, 4] = -3.0 * L0
        else:  # ua2: (ln p0, p1, p2, p3) from (a, q1, q2, q3)
            s2, s3, x0 = self.x_scale**2, self.x_scale**3, self.x0
            m[0, 1] = L0
            m[0, 2] = (1.0 - L0) / s2
            m[1, 2] = -1.0 / s2
            m[2, 2] = 1.0 / (s2 * x0)
            m[0, 3] = -(3.0 - 2.0 * L0) / s3
            m[1, 3] = 2.0 / s3
            m[2, 3] = -4.0 / (s3 * x0)
            m[3, 3] = 1.0 / (s3 * x0 * x0)
        return m[:k, :k]


def _deviance_terms(n: np.ndarray, mu: np.ndarray) -> np.ndarray:
    """Per-bin Poisson deviance 2 [mu - n + n ln(n / mu)] (n = 0 bins contribute 2 mu)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        log_term = np.where(n > 0, n * np.log(np.where(n > 0, n, 1.0) / mu), 0.0)
    return 2.0 * (mu - n + log_term)


# --------------------------------------------------------------------------------------------------
# Result


@dataclass(frozen=True, eq=False)
class FitResult:
    """Outcome of one fit. ``params``/``covariance`` are in (ln p0, p1, p2[, p3[, p4]]) of the
    ``family``'s own formula (module docstring).

    ``chi2`` is Pearson's sum (n - mu)^2 / mu over fitted bins; ``p_value`` comes from the Poisson
    deviance (likelihood ratio to the saturated model), chi2-distributed with ``ndf`` for
    large counts.
    """

    n_params: int
    sqrt_s: float
    params: np.ndarray
    covariance: np.ndarray
    edges: np.ndarray
    counts: np.ndarray
    mask: np.ndarray
    deviance: float
    chi2: float
    ndf: int
    p_value: float
    valid: bool
    message: str
    n_attempts: int
    theta: np.ndarray = field(repr=False)
    theta_covariance: np.ndarray = field(repr=False)
    ln_x0: float = field(repr=False)
    quadrature_points: int = field(repr=False, default=4)
    family: str = "dijet"
    x_scale: float = field(repr=False, default=1.0)

    @property
    def chi2_ndf(self) -> float:
        return self.chi2 / self.ndf if self.ndf > 0 else float("nan")

    @property
    def errors(self) -> np.ndarray:
        return np.sqrt(np.diag(self.covariance))

    @property
    def p_standard(self) -> np.ndarray:
        """(p0, p1, ...) with p0 itself; may overflow to inf for extreme fits."""
        out = self.params.copy()
        out[0] = math.exp(min(out[0], _LNF_MAX))
        return out

    def _model(self, edges: np.ndarray | None) -> _Model:
        e = self.edges if edges is None else np.asarray(edges, dtype=float)
        return _Model(
            e,
            self.sqrt_s,
            self.n_params,
            self.ln_x0,
            self.quadrature_points,
            self.family,
            self.x_scale,
        )

    def function(self, mjj: np.ndarray | float) -> np.ndarray:
        """The fitted density dN/dmjj (events per GeV) at ``mjj``."""
        fn = dijet_function if self.family == "dijet" else ua2_function
        return fn(mjj, self.p_standard, self.sqrt_s)

    def expected(self, edges: np.ndarray | None = None) -> np.ndarray:
        """Expected counts per bin (default: the fitted histogram's bins, masked ones included)."""
        return self._model(edges).expected(self.theta)

    def expected_covariance(self, edges: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(mu, cov(mu)) with the fit covariance propagated linearly (mu is log-linear in theta)."""
        mu, jac = self._model(edges).expected_and_jacobian(self.theta)
        return mu, jac @ self.theta_covariance @ jac.T

    def expected_with_uncertainty(
        self, edges: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(mu, sigma_mu) per bin."""
        mu, cov = self.expected_covariance(edges)
        return mu, np.sqrt(np.clip(np.diag(cov), 0.0, None))

    def expected_sum(self, select: np.ndarray) -> tuple[float, float]:
        """Expected total in the selected bins and its uncertainty, correlations included.

        Summing per-bin sigmas in quadrature would ignore that all bins move together with the
        parameters; this is the number the local significance needs.
        """
        mu, jac = self._model(None).expected_and_jacobian(self.theta)
        sel = np.asarray(select, dtype=bool)
        g = jac[sel].sum(axis=0)
        var = float(g @ self.theta_covariance @ g)
        return float(mu[sel].sum()), math.sqrt(max(var, 0.0))

    def pulls(self) -> np.ndarray:
        """(n - mu) / sqrt(mu) per bin."""
        mu = self.expected()
        return (self.counts - mu) / np.sqrt(np.where(mu > 0, mu, np.nan))

    def summary(self) -> dict[str, Any]:
        """JSON-able summary."""
        names = PARAM_NAMES[: self.n_params]
        return {
            "family": self.family,
            "n_params": self.n_params,
            "params": dict(zip(names, map(float, self.params), strict=True)),
            "errors": dict(zip(names, map(float, self.errors), strict=True)),
            "deviance": float(self.deviance),
            "chi2": float(self.chi2),
            "ndf": int(self.ndf),
            "chi2_ndf": float(self.chi2_ndf),
            "p_value": float(self.p_value),
            "valid": bool(self.valid),
            "message": self.message,
        }


# --------------------------------------------------------------------------------------------------
# Fitting


def _starting_values(
    model: _Model, edges: np.ndarray, n: np.ndarray, sel: np.ndarray
) -> np.ndarray:
    """Weighted least squares of ln(n / width) on the internal basis at bin centres (weights n)."""
    centre_basis = model.phi[:, model.phi.shape[1] // 2, :]
    if model.phi.shape[1] % 2 == 0:  # even node count: average the two middle nodes
        j = model.phi.shape[1] // 2
        centre_basis = 0.5 * (model.phi[:, j - 1, :] + model.phi[:, j, :])
    use = sel & (n > 0)
    widths = np.diff(edges)
    y = np.log(n[use] / widths[use])
    w = np.sqrt(n[use])
    a = centre_basis[use] * w[:, None]
    theta, *_ = np.linalg.lstsq(a, y * w, rcond=None)
    return theta


def fit_dijet(
    histogram: Any,
    config: FitConfig | None = None,
    *,
    exclude: tuple[float, float] | None = None,
    fit_range: tuple[float, float] | None = None,
    mask: np.ndarray | None = None,
    start: np.ndarray | None = None,
) -> FitResult:
    """Binned Poisson maximum-likelihood fit of the dijet function with iminuit.

    ``exclude`` masks a signal region (every bin overlapping it),
    ``fit_range`` restricts the fit to bins fully inside it, ``mask`` selects bins explicitly
    (combined with the others by AND). ``start`` is a starting point in the standard parameters
    (ln p0, p1, p2[, p3[, p4]]) (toy fits start from the fit of the observed spectrum). Masked bins
    still get predictions. ``config.family`` selects the dijet function or the UA2 alternative.
    """
    cfg = config or FitConfig()
    edges, counts = as_histogram(histogram)
    sel = _selection(edges, counts, mask, fit_range, exclude)
    return _fit(edges, counts, sel, cfg, start)


def _selection(
    edges: np.ndarray,
    counts: np.ndarray,
    mask: np.ndarray | None,
    fit_range: tuple[float, float] | None,
    exclude: tuple[float, float] | None,
) -> np.ndarray:
    sel = np.ones(counts.size, dtype=bool) if mask is None else np.asarray(mask, dtype=bool).copy()
    if sel.shape != counts.shape:
        raise ValueError(f"mask has shape {sel.shape}, histogram has {counts.size} bins")
    lo, hi = edges[:-1], edges[1:]
    if fit_range is not None:
        sel &= (lo >= fit_range[0] - 1e-9) & (hi <= fit_range[1] + 1e-9)
    if exclude is not None:  # every bin touching the excluded region is masked
        sel &= ~((hi > exclude[0] + 1e-9) & (lo < exclude[1] - 1e-9))
    return sel


def _fit(
    edges: np.ndarray, counts: np.ndarray, sel: np.ndarray, cfg: FitConfig, start: np.ndarray | None
) -> FitResult:
    from iminuit import Minuit

    k = cfg.n_params
    n_bins = int(sel.sum())
    total = float(counts[sel].sum())
    if n_bins <= k:
        raise FitError(f"too few bins to fit: {n_bins} fitted bins for {k} parameters (need > {k})")
    if total < cfg.min_events:
        raise FitError(
            f"too few events to fit: {total:g} events in the fitted bins "
            f"[{edges[:-1][sel][0]:g}, {edges[1:][sel][-1]:g}] GeV, need >= {cfg.min_events:g}"
        )
    if int(np.count_nonzero(counts[sel])) < k:
        raise FitError(
            f"too few non-empty bins to fit: {np.count_nonzero(counts[sel])} for {k} parameters"
        )

    centres = 0.5 * (edges[:-1] + edges[1:])
    x_sel = centres[sel] / cfg.sqrt_s
    ln_x0 = 0.5 * (math.log(x_sel.min()) + math.log(x_sel.max()))
    x_scale = float(np.max(np.abs(x_sel / math.exp(ln_x0) - 1.0))) or 1.0
    family = cfg.family

    def make_model(n_par: int) -> _Model:
        return _Model(edges, cfg.sqrt_s, n_par, ln_x0, cfg.quadrature_points, family, x_scale)

    model = make_model(k)
    phi_s = model.phi[sel]
    w_s = model.weights[sel]
    n_s = counts[sel]

    # Hot loop of every fit (and of thousands of toy fits): flat arrays, the n-only part of the
    # deviance precomputed, no context managers.
    n_nodes = phi_s.shape[1]
    phi_flat = phi_s.reshape(-1, k)
    w_flat = w_s.reshape(-1)
    dev_const = float(_deviance_terms(n_s, np.ones_like(n_s)).sum()) - 2.0 * n_s.size

    def node_weights(theta: np.ndarray) -> np.ndarray:
        lnf = phi_flat @ theta
        np.minimum(lnf, _LNF_MAX, out=lnf)
        return (w_flat * np.exp(lnf)).reshape(-1, n_nodes)

    def cost(theta: np.ndarray) -> float:
        mu = np.maximum(node_weights(theta).sum(axis=1), 1e-300)
        d = 2.0 * (float(mu.sum()) - float(n_s @ np.log(mu))) + dev_const
        return d if math.isfinite(d) else 1e300

    def grad(theta: np.ndarray) -> np.ndarray:
        wf = node_weights(theta)
        mu = np.maximum(wf.sum(axis=1), 1e-300)
        dmu = (wf.reshape(-1)[:, None] * phi_flat).reshape(-1, n_nodes, k).sum(axis=1)
        return 2.0 * ((1.0 - n_s / mu) @ dmu)

    def starts() -> Iterator[tuple[str, np.ndarray]]:
        """Starting points, tried in turn until a fit converges (later ones only computed if needed)."""
        if start is not None:
            yield "given start", np.linalg.solve(model.to_standard(), start)
        yield "least-squares start", _starting_values(model, edges, counts, sel)
        if k >= 4:  # the 3-parameter solution is a robust start for an ill-conditioned 4/5-par fit
            theta3 = _starting_values(make_model(3), edges, counts, sel)
            yield "3-parameter start", np.append(theta3, np.zeros(k - 3))

    if start is not None:
        start = np.asarray(start, dtype=float)
        if start.shape != (k,):
            raise ValueError(
                f"start must hold {k} parameters (ln p0, p1, p2, ...), got {start.shape}"
            )

    best = None
    attempts = 0
    for label, theta0 in starts():
        for strategy, simplex in ((0, False), (1, False), (2, True)):
            attempts += 1
            m = Minuit(cost, theta0, grad=grad, name=[f"t{i}" for i in range(k)])
            m.errordef = Minuit.LEAST_SQUARES  # deviance = 2 NLL
            m.strategy = strategy
            m.tol = 0.01
            try:
                if simplex:
                    m.simplex()
                m.migrad(ncall=5000)
            except (RuntimeError, ValueError) as exc:  # pragma: no cover - defensive
                logger.debug("fit attempt %s failed: %s", label, exc)
                continue
            ok = bool(m.valid) and math.isfinite(m.fval)
            if best is None or (ok and (not best[0] or m.fval < best[1] - 1e-6)):
                best = (ok, float(m.fval), np.array(m.values), label)
            if ok:
                break
        if best is not None and best[0]:
            break
    if best is None:
        raise FitError(f"every fit attempt raised ({attempts} attempts); see the debug log")
    ok, fval, theta, label = best

    def derivatives(theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Analytic gradient and Hessian of the NLL (= deviance / 2)."""
        wf = model.node_values(theta)[sel]
        mu = wf.sum(axis=1)
        dmu = np.einsum("bn,bnk->bk", wf, phi_s)
        d2mu = np.einsum("bn,bnk,bnl->bkl", wf, phi_s, phi_s)
        # Bins whose expectation underflows to 0 (far tails of sparse post-cut spectra) and are
        # empty contribute nothing; avoid 0/0 there.
        r = np.divide(n_s, mu, out=np.zeros_like(mu), where=mu > 0)
        r2 = np.divide(r, mu, out=np.zeros_like(mu), where=mu > 0)
        g = (1.0 - r) @ dmu
        h = np.einsum("b,bk,bl->kl", r2, dmu, dmu) + np.einsum("b,bkl->kl", 1.0 - r, d2mu)
        return g, h

    # Newton polish with the exact Hessian: MIGRAD stops on its EDM estimate, which along the
    # remaining parameter correlations can leave the deviance ~0.1 above the minimum, i.e. a
    # visible shift of the extrapolated background. A few Newton steps converge quadratically.
    if ok:
        for _ in range(20):
            g, hess = derivatives(theta)
            try:
                step = np.linalg.solve(hess, g)
            except np.linalg.LinAlgError:
                break
            edm = 0.5 * float(g @ step)
            if not edm > 0 or edm < 1e-12:
                break
            t = 1.0
            while t > 1e-4:
                trial = theta - t * step
                f_trial = cost(trial)
                if f_trial <= fval:
                    theta, fval = trial, f_trial
                    break
                t *= 0.5
            else:
                break
    _, hess = derivatives(theta)
    try:
        theta_cov = np.linalg.inv(hess)
        pos_def = bool(np.all(np.linalg.eigvalsh(0.5 * (hess + hess.T)) > 0))
    except np.linalg.LinAlgError:
        theta_cov = np.full((k, k), np.nan)
        pos_def = False
    valid = ok and pos_def
    msg = f"converged ({label})" if valid else f"fit not converged after {attempts} attempts"
    if not valid:
        logger.warning(
            "%s fit (%d parameters) did not converge (%d attempts, deviance %.3g)",
            family,
            k,
            attempts,
            fval,
        )

    m_std = model.to_standard()
    params = m_std @ theta
    cov = m_std @ theta_cov @ m_std.T
    ndf = n_bins - k
    mu = model.node_values(theta)[sel].sum(axis=1)
    chi2 = float(((n_s - mu) ** 2 / mu).sum())
    p_value = float(stats.chi2.sf(fval, ndf))
    return FitResult(
        n_params=k,
        sqrt_s=cfg.sqrt_s,
        params=params,
        covariance=cov,
        edges=edges,
        counts=counts,
        mask=sel,
        deviance=fval,
        chi2=chi2,
        ndf=ndf,
        p_value=p_value,
        valid=valid,
        message=msg,
        n_attempts=attempts,
        theta=theta,
        theta_covariance=theta_cov,
        ln_x0=ln_x0,
        quadrature_points=cfg.quadrature_points,
        family=family,
        x_scale=x_scale,
    )


# --------------------------------------------------------------------------------------------------
# Background model: F-test, function-choice uncertainty, fit quality


@dataclass(frozen=True)
class BackgroundConfig:
    """Settings of :func:`fit_background`.

    ``n_params`` are the dijet-function candidates, tried in increasing order; the F-test moves to
    the next only when it improves the fit with p < ``f_test_alpha``. ``alternatives`` are the other
    families fitted for the function-choice ("spurious signal") uncertainty, each with its largest
    number of parameters (UA2: 4): measured on 400k-event toys, a 3-parameter UA2 fits QCD-like
    spectra only marginally, so whether it entered the envelope depended on its p-value rather than
    on the genuine ambiguity between functions that fit. A fit with p-value below
    ``min_fit_p_value`` does not describe the sidebands: as nominal it makes the window "fit_failed",
    as alternative it is left out of the envelope (a function that does not fit says nothing about
    the function-choice uncertainty).
    """

    n_params: tuple[int, ...] = (3, 4, 5)
    f_test_alpha: float = 0.05
    alternatives: tuple[str, ...] = ("ua2",)
    spurious_signal: bool = True
    min_fit_p_value: float = 0.01
    sqrt_s: float = SQRT_S_GEV
    quadrature_points: int = 4
    min_events: float = 50.0

    def __post_init__(self) -> None:
        n_params = tuple(int(n) for n in np.atleast_1d(self.n_params))
        object.__setattr__(self, "n_params", n_params)
        object.__setattr__(self, "alternatives", tuple(self.alternatives))
        if not n_params or any(n not in FAMILY_N_PARAMS["dijet"] for n in n_params):
            raise ValueError(
                f"BackgroundConfig.n_params must be a non-empty subset of "
                f"{FAMILY_N_PARAMS['dijet']}, got {self.n_params}"
            )
        if any(b <= a for a, b in itertools.pairwise(n_params)):
            raise ValueError(
                f"BackgroundConfig.n_params must be strictly increasing, got {n_params}"
            )
        if not 0.0 < self.f_test_alpha < 1.0:
            raise ValueError(
                f"BackgroundConfig.f_test_alpha must be in (0, 1), got {self.f_test_alpha}"
            )
        for fam in self.alternatives:
            if fam not in FAMILIES or fam == "dijet":
                raise ValueError(
                    f"BackgroundConfig.alternatives: unknown alternative family {fam!r} "
                    f"(choose from {FAMILIES[1:]}; higher-order dijet fits are always used)"
                )
        if not 0.0 <= self.min_fit_p_value < 1.0:
            raise ValueError(
                f"BackgroundConfig.min_fit_p_value must be in [0, 1), got {self.min_fit_p_value}"
            )
        self.fit_config(n_params[0])  # validates sqrt_s, quadrature_points

    def fit_config(self, n_params: int, family: str = "dijet") -> FitConfig:
        """The :class:`FitConfig` of one candidate fit."""
        return FitConfig(
            n_params=n_params,
            sqrt_s=self.sqrt_s,
            quadrature_points=self.quadrature_points,
            min_events=self.min_events,
            family=family,
        )


@dataclass(frozen=True, eq=False)
class FTestStep:
    """One rung of the F-test ladder: the ``n_params`` fit and its test against the previous rung.

    ``f_statistic``/``f_p_value`` are NaN for the first rung (nothing to compare with) and for a
    fit that failed. ``chosen`` marks the nominal fit.
    """

    n_params: int
    deviance: float
    ndf: int
    f_statistic: float
    f_p_value: float
    chosen: bool
    valid: bool
    fit_p_value: float
    message: str = ""
    fit: FitResult | None = field(default=None, repr=False)

    def summary(self) -> dict[str, Any]:
        """JSON-able record (NaN as None)."""

        def num(v: float) -> float | None:
            return float(v) if math.isfinite(v) else None

        return {
            "n_params": self.n_params,
            "deviance": num(self.deviance),
            "ndf": self.ndf,
            "f_statistic": num(self.f_statistic),
            "f_p_value": num(self.f_p_value),
            "chosen": self.chosen,
            "valid": self.valid,
            "fit_p_value": num(self.fit_p_value),
            "message": self.message,
        }


@dataclass(frozen=True, eq=False)
class BackgroundFit:
    """The background model of one spectrum: nominal fit, F-test ladder, alternatives, quality.

    ``alternatives`` holds every alternative fit made (higher-order dijet fits, then the other
    families); :attr:`envelope` those that count for the function-choice uncertainty (converged,
    p-value >= ``config.min_fit_p_value``) and are fitted with the same bin selection. ``status`` is "ok" or "fit_failed" (``reason`` says why):
    a window whose sideband fit failed is not a measurement and must not be reported as an excess.
    """

    nominal: FitResult
    ladder: tuple[FTestStep, ...]
    alternatives: tuple[FitResult, ...]
    config: BackgroundConfig
    valid: bool
    good: bool
    status: str
    reason: str

    @property
    def n_params(self) -> int:
        return self.nominal.n_params

    @property
    def p_value(self) -> float:
        return self.nominal.p_value

    @property
    def envelope(self) -> tuple[FitResult, ...]:
        """Alternatives that count for the function-choice uncertainty."""
        if not self.config.spurious_signal:
            return ()
        return tuple(
            a for a in self.alternatives if a.valid and a.p_value >= self.config.min_fit_p_value
        )

    def expected(self, edges: np.ndarray | None = None) -> np.ndarray:
        """Nominal expected counts per bin (see :meth:`FitResult.expected`)."""
        return self.nominal.expected(edges)

    def expected_with_uncertainty(
        self, edges: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Nominal (mu, sigma_mu) per bin from the fit covariance (no function-choice term)."""
        return self.nominal.expected_with_uncertainty(edges)

    def expected_sum(self, select: np.ndarray) -> tuple[float, float, float]:
        """(b, sigma_fit, sigma_spurious) for the selected bins.

        b and sigma_fit (parameter uncertainty, correlations included) come from the nominal fit;
        sigma_spurious is the largest |B_alt - b| over :attr:`envelope`: the spread of predictions
        of functions that describe the sidebands equally well, which the nominal fit's covariance
        cannot see.
        """
        sel = np.asarray(select, dtype=bool)
        b, sigma_fit = self.nominal.expected_sum(sel)
        spur = 0.0
        for alt in self.envelope:
            spur = max(spur, abs(float(alt.expected()[sel].sum()) - b))
        return b, sigma_fit, spur

    def sigma_total(self, select: np.ndarray) -> float:
        """sqrt(sigma_fit^2 + sigma_spurious^2) for the selected bins."""
        _, sf, ss = self.expected_sum(select)
        return math.hypot(sf, ss)

    def starts(self) -> dict[int | str, np.ndarray]:
        """Starting values for :func:`fit_background` on toys drawn from this spectrum.

        Keys: number of dijet parameters (int) and alternative family (str).
        """
        out: dict[int | str, np.ndarray] = {}
        for step in self.ladder:
            if step.fit is not None and step.fit.valid:
                out[step.n_params] = step.fit.params.copy()
        for alt in self.alternatives:
            if alt.family != "dijet" and alt.valid:
                out[alt.family] = alt.params.copy()
        return out

    def summary(self) -> dict[str, Any]:
        """JSON-able summary: chosen function, quality, F-test ladder, alternatives' spread."""
        nom = self.nominal
        mu = nom.expected()
        fitted = np.flatnonzero(nom.mask)
        span = np.zeros(mu.size, dtype=bool)
        if fitted.size:
            span[fitted[0] : fitted[-1] + 1] = True
        masked = span & ~nom.mask
        counted = {id(a) for a in self.envelope}
        alts = []
        for a in self.alternatives:
            mu_a = a.expected()
            with np.errstate(divide="ignore", invalid="ignore"):
                rel = np.abs(mu_a[span] / mu[span] - 1.0)
            entry = {
                "family": a.family,
                "n_params": a.n_params,
                "p_value": float(a.p_value),
                "chi2_ndf": float(a.chi2_ndf),
                "valid": bool(a.valid),
                "counted": id(a) in counted,
                "max_relative_deviation": float(np.nanmax(rel)) if rel.size else None,
            }
            if masked.any():
                entry["masked_deviation"] = float(mu_a[masked].sum() - mu[masked].sum())
            alts.append(entry)
        out: dict[str, Any] = {
            "status": self.status,
            "reason": self.reason,
            "family": nom.family,
            "n_params": nom.n_params,
            "p_value": float(nom.p_value),
            "chi2": float(nom.chi2),
            "ndf": int(nom.ndf),
            "chi2_ndf": float(nom.chi2_ndf),
            "f_test": [s.summary() for s in self.ladder],
            "alternatives": alts,
            "nominal": nom.summary(),
        }
        if masked.any():
            b, sf, ss = self.expected_sum(masked)
            out["masked"] = {"expected": b, "sigma_fit": sf, "sigma_spurious": ss}
        return out


def _f_test(d_low: float, d_high: float, dfn: int, dfd: int) -> tuple[float, float]:
    """Fisher F for nested Poisson fits: F = ((D_low - D_high) / dfn) / (D_high / dfd)."""
    diff = d_low - d_high
    if not diff > 1e-7 * max(1.0, d_low) or dfd <= 0:  # no improvement beyond rounding
        return 0.0, 1.0
    if not d_high > 0:
        return math.inf, 0.0
    f = (diff / dfn) / (d_high / dfd)
    return f, float(stats.f.sf(f, dfn, dfd))


def _pad(params: np.ndarray, k: int) -> np.ndarray:
    p = np.asarray(params, dtype=float)[:k]
    return np.append(p, np.zeros(k - p.size))


def fit_background(
    histogram: Any,
    config: BackgroundConfig | None = None,
    *,
    mask: np.ndarray | None = None,
    fit_range: tuple[float, float] | None = None,
    exclude: tuple[float, float] | None = None,
    start: Mapping[int | str, Any] | BackgroundFit | None = None,
) -> BackgroundFit:
    """Background model of one spectrum: F-test choice of the dijet function, function-choice
    envelope, and a verdict on the sideband fit.

    Bin selection (``mask``, ``fit_range``, ``exclude``) as in :func:`fit_dijet`. ``start`` (e.g.
    :meth:`BackgroundFit.starts` of the observed spectrum, or the BackgroundFit itself) gives
    starting values per number of dijet parameters (int keys) and per alternative family (str
    keys), so that toy fits start close to their minimum; a candidate without one starts from the
    previous rung's result with a zero appended.

    Raises :class:`FitError` when the first candidate cannot be fitted at all (too few events or
    bins); later failures end the ladder or drop the alternative and are recorded.
    """
    cfg = config or BackgroundConfig()
    edges, counts = as_histogram(histogram)
    sel = _selection(edges, counts, mask, fit_range, exclude)
    if start is None:
        starts: Mapping[int | str, Any] = {}
    elif isinstance(start, BackgroundFit):
        starts = start.starts()
    elif isinstance(start, Mapping):
        starts = start
    else:
        raise TypeError(
            "fit_background: start must be a BackgroundFit or a mapping {n_params or family: "
            f"standard parameters}}, got {type(start).__name__}"
        )
    n_fit_bins = int(sel.sum())

    ladder: list[FTestStep] = []
    chosen: FitResult | None = None
    higher: list[FitResult] = []
    prev: FitResult | None = None
    for n in cfg.n_params:
        given = starts.get(n)
        if given is not None:  # truncated / zero-padded to n parameters
            s0 = _pad(given, n)
        elif prev is not None and prev.valid:
            s0 = _pad(prev.params, n)
        else:
            s0 = None
        try:
            fit = _fit(edges, counts, sel, cfg.fit_config(n), s0)
        except FitError as exc:
            if prev is None:
                raise
            ladder.append(
                FTestStep(n, math.nan, n_fit_bins - n, math.nan, math.nan, False, False, math.nan,
                          str(exc))
            )  # fmt: skip
            break
        if prev is None:
            chosen = fit
            ladder.append(
                FTestStep(n, fit.deviance, fit.ndf, math.nan, math.nan, True, fit.valid,
                          fit.p_value, fit.message, fit)
            )  # fmt: skip
            prev = fit
            if not fit.valid:
                break
            continue
        if not fit.valid:
            ladder.append(
                FTestStep(n, fit.deviance, fit.ndf, math.nan, math.nan, False, False,
                          fit.p_value, fit.message, fit)
            )  # fmt: skip
            break
        f_stat, f_p = _f_test(prev.deviance, fit.deviance, n - prev.n_params, fit.ndf)
        upgrade = f_p < cfg.f_test_alpha
        ladder.append(
            FTestStep(n, fit.deviance, fit.ndf, f_stat, f_p, upgrade, True, fit.p_value,
                      fit.message, fit)
        )  # fmt: skip
        if not upgrade:
            higher.append(fit)
            break
        chosen = fit
        prev = fit
    assert chosen is not None
    ladder = [dataclasses.replace(s, chosen=s.fit is chosen) for s in ladder]

    alternatives: list[FitResult] = list(higher)
    if cfg.spurious_signal and chosen.valid:
        for fam in cfg.alternatives:
            k = max(FAMILY_N_PARAMS[fam])  # as flexible as the family gets (see BackgroundConfig)
            given = starts.get(fam)
            s0 = None if given is None else _pad(given, k)
            try:
                alternatives.append(_fit(edges, counts, sel, cfg.fit_config(k, fam), s0))
            except FitError as exc:
                logger.debug("alternative %s fit failed: %s", fam, exc)

    valid = bool(chosen.valid)
    good = valid and chosen.p_value >= cfg.min_fit_p_value
    if not valid:
        status, reason = "fit_failed", f"{chosen.n_params}-parameter fit did not converge"
    elif not good:
        status = "fit_failed"
        reason = (
            f"sideband fit p-value {chosen.p_value:.3g} < {cfg.min_fit_p_value:g} "
            f"(chi2/ndf = {chosen.chi2:.1f}/{chosen.ndf}, {chosen.n_params}-parameter dijet)"
        )
    else:
        status, reason = "ok", ""
    return BackgroundFit(
        nominal=chosen,
        ladder=tuple(ladder),
        alternatives=tuple(alternatives),
        config=cfg,
        valid=valid,
        good=good,
        status=status,
        reason=reason,
    )


# --------------------------------------------------------------------------------------------------
# Fit range


def fit_start_above_turn_on(
    edges: Any,
    counts: Any,
    *,
    fraction: float = 0.5,
    min_bins_past_peak: int = 2,
    min_bins_after: int = 8,
) -> float:
    """Lower edge of a fit range that starts past the trigger turn-on, found from the spectrum.

    Rule: take the maximum of the density counts / width; the start is the lower edge of the first
    bin at least ``min_bins_past_peak`` bins past it whose density is below ``fraction`` of the
    peak density. Why: the turn-on bends the falling spectrum over into its maximum; the bend fades
    over a width comparable to the distance between the turn-on's midpoint and the peak, so a fit
    must start well down the falling edge. With a halving of the density (``fraction`` = 0.5,
    typically 2-4 bins of 100 GeV for a 13 TeV dijet spectrum) the turn-on's residual effect is
    below 1% for erf turn-ons up to ~150 GeV wide (tested). The result is always an edge of the
    histogram with at least ``min_bins_after`` bins above it.
    """
    e, n = as_histogram((edges, counts), "turn-on spectrum")
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"fraction must be in (0, 1), got {fraction}")
    if n.sum() <= 0:
        raise ValueError("fit_start_above_turn_on: the spectrum is empty")
    if n.size < min_bins_after + min_bins_past_peak + 1:
        raise ValueError(
            f"fit_start_above_turn_on: {n.size} bins are too few "
            f"(need > {min_bins_after + min_bins_past_peak})"
        )
    density = n / np.diff(e)
    peak = int(np.argmax(density))
    below = np.flatnonzero(density[peak + min_bins_past_peak :] < fraction * density[peak])
    if below.size == 0:
        raise ValueError(
            "fit_start_above_turn_on: the spectrum never falls below "
            f"{fraction:g} of its peak density after bin {peak}; no falling region to fit"
        )
    i = peak + min_bins_past_peak + int(below[0])
    if n.size - i < min_bins_after:
        raise ValueError(
            f"fit_start_above_turn_on: only {n.size - i} bins above the start {e[i]:g} "
            f"(need >= {min_bins_after}); the spectrum is too short past its peak"
        )
    logger.debug(
        "fit start above turn-on: peak bin %d at %g, start %g (fraction %g)",
        peak,
        e[peak],
        e[i],
        fraction,
    )
    return float(e[i])

"""Binned Poisson fits of the smooth dijet function to mjj spectra.

The background model of a dijet bump hunt is the empirical function

    dN/dmjj = f(x) = p0 (1 - x)^p1 / x^(p2 + p3 ln x),   x = mjj / sqrt(s),

in events per GeV (3-parameter form: p3 = 0). Expected counts per bin are the integral of f over the
bin (Gauss-Legendre), not f at the bin centre: spectra fall by orders of magnitude across a few bins and
the centre value is biased by the curvature.

Numerical robustness: p0 spans dozens of orders of magnitude and (p0, p1, p2, p3) are strongly
correlated, so Minuit works in an internal, nearly orthogonal parametrisation around a pivot x0 in the
middle of the fitted range,

    ln f = a + p1 ln((1 - x)/(1 - x0)) - b u - c u^2,   u = ln(x / x0),

which is a *linear* reparametrisation of (ln p0, p1, p2, p3): results and covariances are mapped back
exactly. Starting values come from a weighted linear least-squares fit of ln(counts / width), which is
linear in the internal parameters. Gradients and the Hessian of the likelihood are analytic.
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import stats

logger = logging.getLogger(__name__)

#: LHC Run 2 centre-of-mass energy, GeV.
SQRT_S_GEV = 13000.0
#: Names of the standard (reported) parameters.
PARAM_NAMES = ("log_p0", "p1", "p2", "p3")

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

    def __post_init__(self) -> None:
        if self.n_params not in (3, 4):
            raise ValueError(f"FitConfig.n_params must be 3 or 4, got {self.n_params}")
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
    """f(x) = p0 (1 - x)^p1 / x^(p2 + p3 ln x) at x = mjj / sqrt_s; params = (p0, p1, p2[, p3]).

    Note: ``params`` here holds p0 itself (not its log), as in the literature.
    """
    p = np.asarray(params, dtype=float)
    if p.size not in (3, 4):
        raise ValueError(f"dijet_function needs 3 or 4 parameters, got {p.size}")
    p3 = p[3] if p.size == 4 else 0.0
    x = np.asarray(mjj, dtype=float) / sqrt_s
    if np.any((x <= 0) | (x >= 1)):
        raise ValueError("dijet_function: mjj must lie in (0, sqrt_s)")
    lnx = np.log(x)
    return p[0] * np.exp(p[1] * np.log1p(-x) - (p[2] + p3 * lnx) * lnx)


@functools.lru_cache(maxsize=32)
def _gauss_legendre(n_nodes: int) -> tuple[np.ndarray, np.ndarray]:
    return np.polynomial.legendre.leggauss(n_nodes)


class _Model:
    """Quadrature nodes and internal basis for one set of bin edges and a pivot x0."""

    def __init__(self, edges: np.ndarray, sqrt_s: float, n_params: int, ln_x0: float, n_nodes: int):
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
        basis = [np.ones_like(x), np.log1p(-x) - math.log1p(-x0), -u, -(u**2)]
        self.phi = np.stack(basis[:n_params], axis=-1)  # (bins, nodes, k)
        self.ln_x0 = ln_x0
        self.x0 = x0

    def node_values(self, theta: np.ndarray) -> np.ndarray:
        lnf = np.clip(self.phi @ theta, -_LNF_MAX, _LNF_MAX)
        return self.weights * np.exp(lnf)  # (bins, nodes): weighted f at nodes

    def expected(self, theta: np.ndarray) -> np.ndarray:
        return self.node_values(theta).sum(axis=1)

    def expected_and_jacobian(self, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        wf = self.node_values(theta)
        return wf.sum(axis=1), np.einsum("bn,bnk->bk", wf, self.phi)

    def to_standard(self) -> np.ndarray:
        """Matrix M with (ln p0, p1, p2[, p3]) = M @ theta."""
        k = self.phi.shape[-1]
        L0 = self.ln_x0
        m = np.eye(k)
        m[0, 1] = -math.log1p(-self.x0)
        m[0, 2] = L0
        if k == 4:
            m[0, 3] = -(L0**2)
            m[2, 3] = -2.0 * L0
        return m


def _deviance_terms(n: np.ndarray, mu: np.ndarray) -> np.ndarray:
    """Per-bin Poisson deviance 2 [mu - n + n ln(n / mu)] (n = 0 bins contribute 2 mu)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        log_term = np.where(n > 0, n * np.log(np.where(n > 0, n, 1.0) / mu), 0.0)
    return 2.0 * (mu - n + log_term)


# --------------------------------------------------------------------------------------------------
# Result


@dataclass(frozen=True, eq=False)
class FitResult:
    """Outcome of a dijet fit. ``params``/``covariance`` are in (ln p0, p1, p2[, p3]).

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

    @property
    def chi2_ndf(self) -> float:
        return self.chi2 / self.ndf if self.ndf > 0 else float("nan")

    @property
    def errors(self) -> np.ndarray:
        return np.sqrt(np.diag(self.covariance))

    @property
    def p_standard(self) -> np.ndarray:
        """(p0, p1, p2[, p3]) with p0 itself; may overflow to inf for extreme fits."""
        out = self.params.copy()
        out[0] = math.exp(min(out[0], _LNF_MAX))
        return out

    def _model(self, edges: np.ndarray | None) -> _Model:
        e = self.edges if edges is None else np.asarray(edges, dtype=float)
        return _Model(e, self.sqrt_s, self.n_params, self.ln_x0, self.quadrature_points)

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
    (combined with the others by AND). ``start`` is a starting point in (ln p0, p1, p2[, p3]) (toy fits
    start from the fit of the observed spectrum). Masked bins still get predictions.
    """
    cfg = config or FitConfig()
    edges, counts = as_histogram(histogram)
    sel = np.ones(counts.size, dtype=bool) if mask is None else np.asarray(mask, dtype=bool).copy()
    if sel.shape != counts.shape:
        raise ValueError(f"mask has shape {sel.shape}, histogram has {counts.size} bins")
    lo, hi = edges[:-1], edges[1:]
    if fit_range is not None:
        sel &= (lo >= fit_range[0] - 1e-9) & (hi <= fit_range[1] + 1e-9)
    if exclude is not None:  # every bin touching the excluded region is masked
        sel &= ~((hi > exclude[0] + 1e-9) & (lo < exclude[1] - 1e-9))
    return _fit(edges, counts, sel, cfg, start)


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
    model = _Model(edges, cfg.sqrt_s, k, ln_x0, cfg.quadrature_points)
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
        if k == 4:  # the 3-parameter solution is a robust start for an ill-conditioned 4-par fit
            model3 = _Model(edges, cfg.sqrt_s, 3, ln_x0, cfg.quadrature_points)
            yield "3-parameter start", np.append(_starting_values(model3, edges, counts, sel), 0.0)

    if start is not None:
        start = np.asarray(start, dtype=float)
        if start.shape != (k,):
            raise ValueError(
                f"start must hold {k} parameters (ln p0, p1, p2[, p3]), got {start.shape}"
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
        logger.warning("dijet fit did not converge (%d attempts, deviance %.3g)", attempts, fval)

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
    )

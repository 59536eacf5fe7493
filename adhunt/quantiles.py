"""Quantile regression of an anomaly score versus mjj, and rank normalisation of scores.

Why: a cut ``score > t`` at one threshold keeps a different fraction of the background at each
mjj whenever the score correlates with mjj (jet masses grow with mjj, an autoencoder's loss with
the jet mass), so the post-cut background spectrum is sculpted and the bump hunt's smooth fit
fails or finds fake bumps. A cut on the conditional quantile instead keeps the same fraction
``eps`` at every mjj by construction.

:func:`fit_quantile_curves` regresses the score's quantiles ``q_tau(mjj)`` for a grid of levels
``tau`` (bulk and a tail that reaches ``1 - eps`` for eps down to ~``min_tail_events / n``), each
as a Legendre polynomial (default degree 3) in the standardised ``log mjj``, by minimising the
pinball (check) loss with the majorise-minimise iteration of Hunter & Lange (2000; a weighted
least-squares solve per step, exact up to a small smoothing ``epsilon``). Why a low-order
polynomial in log mjj and not a network: the dependence on mjj is smooth and slow (a falling
spectrum, jet masses scaling with mjj), a polynomial per level has ~4 parameters so even the
0.999 level is fitted from ~100 events without overfitting, it interpolates smoothly across a
masked signal region, and its fit is deterministic (no seed, no training noise). Outside the
fitted mjj range the curves are held constant (no polynomial extrapolation).

Separate per-level fits may cross; :class:`QuantileCurves` sorts the predicted quantiles at each
mjj ("rearrangement", Chernozhukov, Fernandez-Val & Galichon 2010), which makes them non-crossing
and never worsens the fit. :meth:`QuantileCurves.transform` maps a score to its conditional
quantile level ``u = F(score | mjj)`` (piecewise linear between the curves, exponential tails
beyond the outermost ones, so ``u`` is continuous and strictly increasing in the score at fixed
mjj and events stay ordered; a score on which several curves coincide, as happens for tied
discrete scores, gets the middle of their levels): ``u > 1 - eps`` keeps a fraction ``eps`` of the background at
every mjj, and within a narrow mjj window the order of events (hence ROC/SIC there) is nearly
that of the raw score.

:func:`rank_table` / :func:`rank_transform` are the unconditional counterpart used to put the
scores of several methods on one scale (their empirical CDF on a reference sample, stored as a
quantile table so that scoring new events is deterministic and per event).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = [
    "QuantileCurves",
    "default_levels",
    "fit_quantile_curves",
    "pinball_loss",
    "rank_table",
    "rank_transform",
]

log = logging.getLogger(__name__)

_BULK_LEVELS = tuple(np.round(np.arange(0.05, 0.951, 0.05), 4))
_CHUNK = 65536


def pinball_loss(residual: np.ndarray, tau: float) -> float:
    """Mean check loss ``r * (tau - 1[r < 0])`` of residuals ``y - q`` (for tests and reports)."""
    r = np.asarray(residual, dtype=np.float64)
    return float(np.mean(r * (tau - (r < 0))))


def default_levels(n_events: int, min_tail_events: int = 30, min_eps: float = 1e-4) -> np.ndarray:
    """Quantile levels for ``n_events``: 0.05..0.95 and a log-spaced tail ``1 - eps``.

    The tail reaches the smallest eps that still leaves ``min_tail_events`` events above the
    curve (a level fitted from fewer would be noise), at most ``min_eps``.
    """
    n = int(n_events)
    eps_min = max(float(min_eps), min_tail_events / max(n, 1))
    levels = [t for t in _BULK_LEVELS if n * min(t, 1 - t) >= min_tail_events]
    if eps_min < 0.05:
        n_tail = max(2, int(np.ceil(4 * np.log10(0.05 / eps_min))) + 1)
        eps = np.geomspace(0.05, eps_min, n_tail)[1:]
        levels.extend(1.0 - eps)
    levels = np.unique(np.round(np.asarray(levels, dtype=np.float64), 10))
    if levels.size < 2:
        raise ValueError(
            f"{n} events are too few for a quantile regression (need >= {20 * min_tail_events})"
        )
    return levels


@dataclass(frozen=True)
class QuantileCurves:
    """Fitted quantile curves ``q_tau(mjj)`` of a score; see the module docstring.

    ``coefficients[j]``: Legendre coefficients of level ``levels[j]`` in
    ``x = (log mjj - centre) / half_width`` clipped to [-1, 1] (the fitted mjj range).
    """

    levels: np.ndarray
    coefficients: np.ndarray
    log_mjj_range: tuple[float, float]
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        levels = np.asarray(self.levels, dtype=np.float64)
        coefs = np.asarray(self.coefficients, dtype=np.float64)
        if levels.ndim != 1 or levels.size < 2 or np.any(np.diff(levels) <= 0):
            raise ValueError("QuantileCurves.levels must be >= 2 strictly increasing values")
        if levels[0] <= 0 or levels[-1] >= 1:
            raise ValueError("QuantileCurves.levels must lie strictly between 0 and 1")
        if coefs.ndim != 2 or coefs.shape[0] != levels.size:
            raise ValueError(
                f"QuantileCurves.coefficients must be (levels, degree + 1), got {coefs.shape}"
            )
        if not np.all(np.isfinite(coefs)):
            raise ValueError("QuantileCurves.coefficients must be finite")
        lo, hi = (float(v) for v in self.log_mjj_range)
        if not (np.isfinite(lo) and np.isfinite(hi) and lo < hi):
            raise ValueError(f"QuantileCurves.log_mjj_range must be finite, lo < hi: {lo}, {hi}")
        object.__setattr__(self, "levels", levels)
        object.__setattr__(self, "coefficients", coefs)
        object.__setattr__(self, "log_mjj_range", (lo, hi))

    @property
    def degree(self) -> int:
        return int(self.coefficients.shape[1] - 1)

    @property
    def mjj_range(self) -> tuple[float, float]:
        return (float(np.exp(self.log_mjj_range[0])), float(np.exp(self.log_mjj_range[1])))

    def _x(self, mjj: np.ndarray) -> np.ndarray:
        return _standardise(mjj, self.log_mjj_range)

    def quantiles(self, mjj: np.ndarray) -> np.ndarray:
        """``(n, levels)`` quantile values at each mjj, sorted along the levels (non-crossing)."""
        from numpy.polynomial import legendre

        basis = legendre.legvander(self._x(mjj), self.degree)
        return np.sort(basis @ self.coefficients.T, axis=1)

    def threshold(self, mjj: np.ndarray, efficiency: float) -> np.ndarray:
        """Score cut ``q_{1-eff}(mjj)`` keeping a fraction ``efficiency`` at each mjj."""
        eff = float(efficiency)
        if not 0.0 < eff < 1.0:
            raise ValueError(f"efficiency must be in (0, 1), got {efficiency!r}")
        q = self.quantiles(mjj)
        tau = 1.0 - eff
        if tau < self.levels[0] or tau > self.levels[-1]:
            raise ValueError(
                f"efficiency {eff:g} is outside the fitted levels "
                f"({1 - self.levels[-1]:.3g} .. {1 - self.levels[0]:.3g})"
            )
        j = int(np.clip(np.searchsorted(self.levels, tau) - 1, 0, self.levels.size - 2))
        w = (tau - self.levels[j]) / (self.levels[j + 1] - self.levels[j])
        return (1 - w) * q[:, j] + w * q[:, j + 1]

    def transform(self, score: np.ndarray, mjj: np.ndarray) -> np.ndarray:
        """Conditional quantile level ``u = F(score | mjj)`` in (0, 1), strictly increasing in score."""
        s = np.asarray(score, dtype=np.float64)
        m = np.asarray(mjj, dtype=np.float64)
        if s.shape != m.shape or s.ndim != 1:
            raise ValueError(f"score and mjj must be 1-D of equal length, got {s.shape}, {m.shape}")
        if not np.all(np.isfinite(m)):
            raise ValueError(f"mjj has {int((~np.isfinite(m)).sum())} NaN/inf value(s)")
        out = np.empty(s.shape, dtype=np.float64)
        for start in range(0, s.size, _CHUNK):
            sl = slice(start, start + _CHUNK)
            out[sl] = self._transform(s[sl], m[sl])
        return out

    def _transform(self, s: np.ndarray, m: np.ndarray) -> np.ndarray:
        t = self.levels
        q = self.quantiles(m)
        n, n_lev = q.shape
        scale = max(float(np.max(q[:, -1] - q[:, 0])) if n else 0.0, 1e-300)
        tiny = 1e-12 * scale
        j = (q <= s[:, None]).sum(axis=1) - 1  # segment index: q_j <= s < q_{j+1}
        u = np.empty(n, dtype=np.float64)
        low, high = j < 0, j >= n_lev - 1
        mid = ~(low | high)
        if mid.any():
            jm = j[mid]
            rows = np.flatnonzero(mid)
            q0, q1 = q[rows, jm], q[rows, jm + 1]
            frac = (s[mid] - q0) / np.maximum(q1 - q0, tiny)
            u[mid] = t[jm] + (t[jm + 1] - t[jm]) * np.clip(frac, 0.0, 1.0)
        if low.any():  # F(s) = t0 exp((s - q0) / b), matched to F(q1) = t1
            b = np.maximum(q[low, 1] - q[low, 0], tiny) / np.log(t[1] / t[0])
            u[low] = t[0] * np.exp((s[low] - q[low, 0]) / b)
        if high.any():  # 1 - F(s) = (1 - tL) exp(-(s - qL) / b), matched at the level below
            b = np.maximum(q[high, -1] - q[high, -2], tiny) / np.log((1 - t[-2]) / (1 - t[-1]))
            u[high] = 1.0 - (1.0 - t[-1]) * np.exp(-(s[high] - q[high, -1]) / b)
        # a score equal to several coinciding curves (a tied, discrete score) gets the middle of
        # their levels (mid-rank), not the top one: otherwise every tied event would pass the cut
        first = (q < s[:, None]).sum(axis=1)
        tied = (first < j) & (j < n_lev)
        if tied.any():
            u[tied] = 0.5 * (t[first[tied]] + t[j[tied]])
        return u

    # ----- persistence (tensors + JSON, as model artifacts store them) -------------------------

    def tensors(self) -> dict[str, np.ndarray]:
        return {"levels": self.levels, "coefficients": self.coefficients}

    def metadata(self) -> dict[str, Any]:
        return {
            "kind": "quantile_regression",
            "basis": "legendre(log mjj)",
            "degree": self.degree,
            "log_mjj_range": list(self.log_mjj_range),
            "info": dict(self.info),
        }

    @classmethod
    def from_parts(
        cls, tensors: Mapping[str, np.ndarray], metadata: Mapping[str, Any]
    ) -> QuantileCurves:
        if metadata.get("kind") != "quantile_regression":
            raise ValueError(f"not a quantile regression: kind {metadata.get('kind')!r}")
        return cls(
            levels=np.asarray(tensors["levels"]),
            coefficients=np.asarray(tensors["coefficients"]),
            log_mjj_range=tuple(metadata["log_mjj_range"]),
            info=dict(metadata.get("info") or {}),
        )


def _standardise(mjj: np.ndarray, log_range: tuple[float, float]) -> np.ndarray:
    m = np.asarray(mjj, dtype=np.float64)
    if np.any(m <= 0):
        raise ValueError("mjj must be positive for the quantile regression in log mjj")
    lo, hi = log_range
    return np.clip((np.log(m) - 0.5 * (lo + hi)) / (0.5 * (hi - lo)), -1.0, 1.0)


def _pinball_fit(
    x: np.ndarray, y: np.ndarray, tau: float, beta: np.ndarray, tol: float, max_iter: int
) -> tuple[np.ndarray, int]:
    """Minimise the check loss of ``y - x @ beta`` by Newton steps on a smoothed loss.

    The kink of the check loss at r = 0 is rounded over |r| < h (quadratic there, exact
    outside), which makes the loss twice differentiable so a damped Newton step converges in a
    few iterations; h shrinks geometrically from a tenth of the residual spread down to
    ``tol`` x that spread, where the smoothed minimiser agrees with the exact one to far below
    the statistical precision of any quantile, or until fewer than 20 events per parameter
    lie on the rounded part (the Newton step would be ill-conditioned; the smoothed minimiser
    is then already within the spacing of neighbouring events of the exact one).
    """
    r = y - x @ beta
    spread = float(np.subtract(*np.quantile(r, [0.75, 0.25]))) or float(np.std(r)) or 1.0
    h = 0.1 * spread
    h_min = max(tol, 1e-12) * spread
    ridge = 1e-12 * np.trace(x.T @ x) / x.shape[1]

    def loss(b: np.ndarray, h: float) -> float:
        r = y - x @ b
        a = np.abs(r)
        return float(np.sum((tau - 0.5) * r + 0.5 * np.where(a > h, a, 0.5 * (r * r / h + h))))

    it = 0
    while True:
        for _ in range(50):
            it += 1
            r = y - x @ beta
            inside = np.abs(r) <= h
            dpsi = np.where(inside, r / h, np.sign(r))
            grad = -x.T @ ((tau - 0.5) + 0.5 * dpsi)
            hess = (x[inside].T @ x[inside]) * (0.5 / h) + ridge * np.eye(x.shape[1])
            try:
                step = np.linalg.solve(hess, -grad)
            except np.linalg.LinAlgError:
                step = -grad / (np.abs(np.diag(hess)).max() or 1.0)
            f0, t = loss(beta, h), 1.0
            while t > 1e-10 and loss(beta + t * step, h) > f0:
                t *= 0.5
            if t <= 1e-10:  # no descent left at this h (roundoff): stop here
                break
            beta = beta + t * step
            if np.max(np.abs(t * step)) < 1e-3 * h or it >= max_iter:
                break
        if h <= h_min or it >= max_iter:
            return beta, it
        # keep enough events on the rounded part for a well-conditioned Newton step
        if np.count_nonzero(np.abs(y - x @ beta) <= 0.25 * h) < 20 * x.shape[1]:
            return beta, it
        h = max(0.25 * h, h_min)


def fit_quantile_curves(
    score: np.ndarray,
    mjj: np.ndarray,
    levels: np.ndarray | None = None,
    degree: int = 3,
    *,
    min_tail_events: int = 30,
    max_events: int | None = 100_000,
    seed: int = 0,
    tol: float = 1e-4,
    max_iter: int = 200,
) -> QuantileCurves:
    """Fit ``q_tau(mjj)`` for every level (default :func:`default_levels`) by pinball loss.

    ``max_events``: fit on at most that many events (a seeded random subset; the tail levels are
    then chosen for that many). Every level starts from the previous level's solution shifted to
    the unconditional quantile, so each needs a few tens of weighted least-squares steps.
    """
    from numpy.polynomial import legendre

    s = np.asarray(score, dtype=np.float64)
    m = np.asarray(mjj, dtype=np.float64)
    if s.ndim != 1 or s.shape != m.shape:
        raise ValueError(f"score and mjj must be 1-D of equal length, got {s.shape}, {m.shape}")
    bad = ~(np.isfinite(s) & np.isfinite(m))
    if bad.any():
        raise ValueError(f"{int(bad.sum())} event(s) with NaN/inf score or mjj")
    if int(degree) < 0:
        raise ValueError(f"degree must be >= 0, got {degree}")
    n_all = s.size
    if max_events is not None and n_all > int(max_events):
        keep = np.sort(np.random.default_rng(seed).choice(n_all, int(max_events), replace=False))
        s, m = s[keep], m[keep]
    levels = (
        default_levels(s.size, min_tail_events)
        if levels is None
        else np.unique(np.asarray(levels, dtype=np.float64))
    )
    if levels.size < 2 or levels[0] <= 0 or levels[-1] >= 1:
        raise ValueError("levels must hold >= 2 distinct values strictly between 0 and 1")
    if s.size < 10 * (int(degree) + 1):
        raise ValueError(f"{s.size} events are too few for a degree-{degree} quantile regression")
    if np.any(m <= 0):
        raise ValueError("mjj must be positive for the quantile regression in log mjj")
    log_m = np.log(m)
    log_range = (float(log_m.min()), float(log_m.max()))
    if not log_range[0] < log_range[1]:
        raise ValueError("all fit events have the same mjj: nothing to regress on")
    x = legendre.legvander(_standardise(m, log_range), int(degree))
    coefs = np.zeros((levels.size, int(degree) + 1))
    beta = np.zeros(int(degree) + 1)
    iterations = []
    for j, tau in enumerate(levels):
        beta = beta.copy()
        beta[0] += float(np.quantile(s - x @ beta, tau))  # start: shift onto the level
        beta, it = _pinball_fit(x, s, float(tau), beta, tol, max_iter)
        coefs[j] = beta
        iterations.append(it)
    info = {
        "n_fit": int(s.size),
        "n_available": int(n_all),
        "max_iterations_used": int(max(iterations)),
        "mjj_range_gev": [float(np.exp(log_range[0])), float(np.exp(log_range[1]))],
    }
    log.debug("quantile regression: %d levels, degree %d, %d events", levels.size, degree, s.size)
    return QuantileCurves(levels, coefs, log_range, info)


# --------------------------------------------------------------------------------------------
# Rank normalisation (unconditional)
# --------------------------------------------------------------------------------------------


def rank_table(scores: np.ndarray, n_points: int = 4001) -> tuple[np.ndarray, np.ndarray]:
    """``(levels, values)``: the empirical quantile function of ``scores`` on a fixed grid.

    Each stored point is a distinct score with its exact mid-rank level (ties collapse to one
    point). With more distinct scores than ``n_points`` the points are chosen on a grid uniform
    in the bulk and log-dense in both tails (down to 1/n), so ranks stay resolved where tight
    cuts live.
    """
    s = np.sort(np.asarray(scores, dtype=np.float64))
    if s.ndim != 1 or s.size < 2:
        raise ValueError("rank_table needs at least two scores")
    if not np.all(np.isfinite(s)):
        raise ValueError(f"scores contain {int((~np.isfinite(s)).sum())} NaN/inf value(s)")
    n = s.size
    values, counts = np.unique(s, return_counts=True)
    levels = (np.cumsum(counts) - 0.5 * counts) / n  # mid-rank of each distinct value
    if values.size > int(n_points):
        tail = np.geomspace(0.5 / n, 0.05, 200) if 0.5 / n < 0.05 else np.empty(0)
        grid = np.concatenate([np.linspace(0, 1, int(n_points)), tail, 1 - tail])
        pick = np.clip(np.searchsorted(levels, grid), 0, values.size - 1)
        pick = np.unique(np.r_[0, pick, values.size - 1])
        levels, values = levels[pick], values[pick]
    return levels, values


def rank_transform(levels: np.ndarray, values: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Rank level in [0, 1] of each score by a :func:`rank_table` (linear between its points)."""
    values = np.asarray(values, dtype=np.float64)
    levels = np.asarray(levels, dtype=np.float64)
    s = np.asarray(scores, dtype=np.float64)
    if values.size == 1:
        return np.where(s < values[0], 0.0, np.where(s > values[0], 1.0, levels[0]))
    return np.interp(s, values, levels, left=0.0, right=1.0)

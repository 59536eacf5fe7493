"""Local and global significance of an excess in a counting window.

Local: observed n in the signal region against a background b predicted by the sideband fit with
uncertainty sigma_b. The background uncertainty is treated as an auxiliary Poisson measurement
m = tau b with tau = b / sigma_b^2 (so that it carries the same relative error), and the background
is profiled; the profile-likelihood ratio then has the closed form (Cowan, Cranmer, Gross, Vitells,
arXiv:1007.1727; G. Cowan, "Discovery sensitivity for a counting experiment with background
uncertainty")

    Z = sqrt(2 [ n ln( n (b + s2) / (b^2 + n s2) ) - (b^2 / s2) ln(1 + s2 (n - b) / (b (b + s2))) ]),

s2 = sigma_b^2, reducing to Z = sqrt(2 (n ln(n / b) - (n - b))) for sigma_b = 0. With n -> s + b
(Asimov data) it is the median expected discovery significance Z_A.

Global: the largest local Z over all windows is compared with its distribution in background-only
pseudo-experiments (look-elsewhere effect).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import stats


def _q0(n: np.ndarray, b: np.ndarray, s2: np.ndarray) -> np.ndarray:
    """Twice the log profile-likelihood ratio (no sign), elementwise."""
    n = np.asarray(n, dtype=float)
    b = np.asarray(b, dtype=float)
    s2 = np.asarray(s2, dtype=float)
    n, b, s2 = np.broadcast_arrays(n, b, s2)
    out = np.empty(n.shape, dtype=float)
    small = s2 <= 1e-12 * b
    with np.errstate(divide="ignore", invalid="ignore"):
        # sigma_b = 0: plain Poisson
        nlog = np.where(n > 0, n * np.log(np.where(n > 0, n, 1.0) / b), 0.0)
        plain = 2.0 * (nlog - (n - b))
        ratio = n * (b + s2) / (b * b + n * s2)
        t1 = np.where(n > 0, n * np.log(np.where(n > 0, ratio, 1.0)), 0.0)
        t2 = (b * b / s2) * np.log1p(s2 * (n - b) / (b * (b + s2)))
        full = 2.0 * (t1 - t2)
    out[...] = np.where(small, plain, full)
    return np.clip(out, 0.0, None)


def z_counting(n: Any, b: Any, sigma_b: Any = 0.0, signed: bool = False) -> np.ndarray | float:
    """Profile-likelihood significance of n observed over b +- sigma_b expected.

    One-sided discovery test by default: Z = 0 for deficits (n <= b). With ``signed=True`` deficits
    get -|Z|, which makes p = Phi(-Z) uniform under the background-only hypothesis (for the
    calibration checks). Vectorised over array inputs; b must be > 0, sigma_b >= 0.
    """
    n_a = np.asarray(n, dtype=float)
    b_a = np.asarray(b, dtype=float)
    s_a = np.asarray(sigma_b, dtype=float)
    if np.any(~np.isfinite(b_a) | (b_a <= 0)):
        raise ValueError("z_counting: expected background b must be finite and > 0")
    if np.any(~np.isfinite(s_a) | (s_a < 0)):
        raise ValueError("z_counting: background uncertainty sigma_b must be finite and >= 0")
    if np.any(~np.isfinite(n_a) | (n_a < 0)):
        raise ValueError("z_counting: observed n must be finite and >= 0")
    z = np.sqrt(_q0(n_a, b_a, s_a**2))
    z = np.where(n_a >= b_a, z, -z if signed else 0.0)
    return float(z) if z.ndim == 0 else z


def asimov_z(s: Any, b: Any, sigma_b: Any = 0.0) -> np.ndarray | float:
    """Median expected discovery significance Z_A for signal s on background b +- sigma_b."""
    return z_counting(np.asarray(s, dtype=float) + np.asarray(b, dtype=float), b, sigma_b)


def p_from_z(z: Any) -> np.ndarray | float:
    """One-sided p-value 1 - Phi(Z)."""
    p = stats.norm.sf(z)
    return float(p) if np.ndim(p) == 0 else p


def z_from_p(p: Any) -> np.ndarray | float:
    """Z = Phi^-1(1 - p); p = 0.5 gives Z = 0, p = 0 gives +inf."""
    z = stats.norm.isf(p)
    return float(z) if np.ndim(z) == 0 else z


@dataclass(frozen=True)
class LocalSignificance:
    """Counting result in one window. ``z`` is one-sided (0 for deficits); ``z_signed`` keeps the sign."""

    observed: float
    expected: float
    expected_error: float
    z: float
    z_signed: float
    p_value: float

    def to_dict(self) -> dict[str, float]:
        return {k: float(v) for k, v in self.__dict__.items()}


def local_significance(n: float, b: float, sigma_b: float = 0.0) -> LocalSignificance:
    """Local significance and one-sided p-value (p = 1 - Phi(z_signed), uniform under H0)."""
    zs = float(z_counting(n, b, sigma_b, signed=True))
    return LocalSignificance(
        observed=float(n),
        expected=float(b),
        expected_error=float(sigma_b),
        z=max(zs, 0.0),
        z_signed=zs,
        p_value=float(p_from_z(zs)),
    )


@dataclass(frozen=True, eq=False)
class GlobalSignificance:
    """Look-elsewhere-corrected significance from background-only pseudo-experiments.

    ``p_value`` = fraction of toys whose max local Z reaches the observed one. When no toy does,
    ``is_bound`` is True: ``p_value`` is then the bound 1 / n_toys (p < that) and ``z`` a lower bound.
    """

    observed_max_z: float
    n_toys: int
    n_exceeding: int
    p_value: float
    p_value_error: float
    z: float
    is_bound: bool
    statement: str
    toy_max_z: np.ndarray = field(repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "observed_max_z": float(self.observed_max_z),
            "n_toys": int(self.n_toys),
            "n_exceeding": int(self.n_exceeding),
            "p_value": float(self.p_value),
            "p_value_error": float(self.p_value_error),
            "z": float(self.z),
            "is_bound": bool(self.is_bound),
            "statement": self.statement,
            "toy_max_z_quantiles": {
                q: float(np.quantile(self.toy_max_z, float(q)))
                if self.toy_max_z.size
                else float("nan")
                for q in ("0.5", "0.84", "0.975")
            },
        }


def global_significance(observed_max_z: float, toy_max_z: Any) -> GlobalSignificance:
    """Global p-value and Z of the observed maximum local Z given max-Z values of toys.

    Toys whose scan failed (NaN) are dropped. The binomial error of p is reported so that the user
    can judge whether more toys are needed.
    """
    toys = np.asarray(toy_max_z, dtype=float).ravel()
    toys = toys[np.isfinite(toys)]
    n = int(toys.size)
    if n == 0:
        raise ValueError("global_significance: no valid pseudo-experiments (all toy scans failed?)")
    if not math.isfinite(observed_max_z):
        raise ValueError(
            f"global_significance: observed max Z must be finite, got {observed_max_z}"
        )
    k = int(np.count_nonzero(toys >= observed_max_z - 1e-12))
    if k == 0:
        p = 1.0 / n
        z = float(z_from_p(p))
        statement = (
            f"observed max local Z = {observed_max_z:.2f} exceeds all {n} toys: "
            f"global p < {p:.3g}, global Z > {z:.2f} (lower bound; run more toys)"
        )
        return GlobalSignificance(observed_max_z, n, 0, p, p, z, True, statement, toys)
    p = k / n
    err = math.sqrt(p * (1.0 - p) / n)
    z = float(z_from_p(p)) if p < 1.0 else float("-inf")
    z = max(z, 0.0)
    statement = (
        f"observed max local Z = {observed_max_z:.2f}: {k}/{n} toys reach it, "
        f"global p = {p:.3g} +- {err:.2g}, global Z = {z:.2f}"
    )
    return GlobalSignificance(observed_max_z, n, k, p, err, z, False, statement, toys)

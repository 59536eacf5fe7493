"""Sliding-window bump hunt over mjj spectra, one spectrum per anomaly-score cut.

For every signal-region window the sidebands (all fitted bins outside the window) are fit with the
dijet function, the fit is extrapolated into the window with its uncertainty, and the excess is
turned into a local significance (:mod:`adhunt.significance`). The global significance comes from
background-only pseudo-experiments drawn from the fit of the full spectrum and scanned with exactly
the same code. :func:`check_sculpting` applies the same machinery to signal-free data to show that
a score cut leaves a smooth, well-fit spectrum with calibrated p-values.

Trials across cuts are *not* included in the per-cut global significance: spectra of nested cuts
share events, so their toys cannot be drawn independently.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

from adhunt.config import config_to_dict
from adhunt.fitting import SQRT_S_GEV, FitConfig, FitError, FitResult, as_histogram, fit_dijet
from adhunt.significance import GlobalSignificance, global_significance, local_significance

logger = logging.getLogger(__name__)

_TOL = 1e-6  # GeV, for comparing window and bin edges


@dataclass(frozen=True)
class ScanConfig:
    """Bump-hunt settings (GeV). Echoed into every report.

    ``windows`` lists explicit signal regions; empty means sliding windows of ``window_width`` in
    steps of ``window_step`` over the histogram range. Window edges snap to the nearest bin edges.
    ``fit_range`` limits the bins used by every fit (None: the whole histogram);
    ``sideband_width`` additionally limits each window's fit to that many GeV on either side of
    the window (None: all bins of the fit range). A window needs ``min_sideband_bins`` fitted bins
    on *both* sides, otherwise the fit would extrapolate rather than interpolate and it is skipped.
    """

    window_width: float = 400.0
    window_step: float = 100.0
    windows: tuple[tuple[float, float], ...] = ()
    fit_range: tuple[float, float] | None = None
    sideband_width: float | None = None
    min_sideband_bins: int = 2
    n_params: int = 4
    sqrt_s: float = SQRT_S_GEV
    min_events: float = 50.0
    include_fit_uncertainty: bool = True
    n_toys: int = 100
    seed: int = 20_260_401
    quadrature_points: int = 4

    def __post_init__(self) -> None:
        # Normalise YAML/JSON lists to tuples so that loaded configs compare and hash equal.
        object.__setattr__(self, "windows", tuple(tuple(float(v) for v in w) for w in self.windows))
        if self.fit_range is not None:
            object.__setattr__(self, "fit_range", tuple(float(v) for v in self.fit_range))
        if not self.window_width > 0 or not self.window_step > 0:
            raise ValueError(
                f"ScanConfig: window_width and window_step must be > 0, got {self.window_width}, {self.window_step}"
            )
        for w in self.windows:
            if len(w) != 2 or not w[0] < w[1]:
                raise ValueError(
                    f"ScanConfig.windows: each window must be (low, high) with low < high, got {w}"
                )
        if self.fit_range is not None and not self.fit_range[0] < self.fit_range[1]:
            raise ValueError(
                f"ScanConfig.fit_range must be (low, high) with low < high, got {self.fit_range}"
            )
        if self.sideband_width is not None and not self.sideband_width > 0:
            raise ValueError(
                f"ScanConfig.sideband_width must be > 0 or None, got {self.sideband_width}"
            )
        if self.min_sideband_bins < 1:
            raise ValueError(
                f"ScanConfig.min_sideband_bins must be >= 1, got {self.min_sideband_bins}"
            )
        if self.n_toys < 0:
            raise ValueError(f"ScanConfig.n_toys must be >= 0, got {self.n_toys}")
        self.fit_config()  # validates n_params, sqrt_s, quadrature_points

    def fit_config(self) -> FitConfig:
        return FitConfig(
            n_params=self.n_params,
            sqrt_s=self.sqrt_s,
            quadrature_points=self.quadrature_points,
            min_events=self.min_events,
        )


# --------------------------------------------------------------------------------------------------
# Windows


@dataclass(frozen=True, eq=False)
class Window:
    """A signal region snapped to bin edges, the bins it covers and the bins its fit uses."""

    low: float
    high: float
    sr_bins: np.ndarray = field(repr=False)
    fit_bins: np.ndarray = field(repr=False)
    skip_reason: str | None = None

    @property
    def centre(self) -> float:
        return 0.5 * (self.low + self.high)


def make_windows(edges: np.ndarray, config: ScanConfig) -> list[Window]:
    """Signal-region windows for a histogram with ``edges`` (skipped ones carry a reason)."""
    edges = np.asarray(edges, dtype=float)
    h_lo, h_hi = float(edges[0]), float(edges[-1])
    if config.windows:
        raw = [(float(a), float(b)) for a, b in config.windows]
        for a, b in raw:
            if a < h_lo - _TOL or b > h_hi + _TOL:
                raise ValueError(
                    f"window [{a:g}, {b:g}] GeV lies outside the histogram range [{h_lo:g}, {h_hi:g}] GeV"
                )
    else:
        n = math.floor((h_hi - h_lo - config.window_width) / config.window_step + 1e-9) + 1
        if n < 1:
            raise ValueError(
                f"window width {config.window_width:g} GeV exceeds the histogram range [{h_lo:g}, {h_hi:g}] GeV"
            )
        raw = [
            (h_lo + k * config.window_step, h_lo + k * config.window_step + config.window_width)
            for k in range(n)
        ]

    lo_e, hi_e = edges[:-1], edges[1:]
    in_range = np.ones(lo_e.size, dtype=bool)
    if config.fit_range is not None:
        f_lo, f_hi = config.fit_range
        if f_hi <= h_lo or f_lo >= h_hi:
            raise ValueError(
                f"fit_range [{f_lo:g}, {f_hi:g}] GeV does not overlap the histogram [{h_lo:g}, {h_hi:g}] GeV"
            )
        in_range = (lo_e >= f_lo - _TOL) & (hi_e <= f_hi + _TOL)

    windows: list[Window] = []
    seen: set[tuple[int, int]] = set()
    for a, b in raw:
        i = int(np.argmin(np.abs(edges - a)))
        j = int(np.argmin(np.abs(edges - b)))
        if j <= i:
            j = i + 1
        if (i, j) in seen:
            continue
        seen.add((i, j))
        low, high = float(edges[i]), float(edges[j])
        sr = np.zeros(lo_e.size, dtype=bool)
        sr[i:j] = True
        fit = in_range & ~sr
        if config.sideband_width is not None:
            fit &= (lo_e >= low - config.sideband_width - _TOL) & (
                hi_e <= high + config.sideband_width + _TOL
            )
        n_below = int(np.count_nonzero(fit & (hi_e <= low + _TOL)))
        n_above = int(np.count_nonzero(fit & (lo_e >= high - _TOL)))
        reason = None
        if not np.all(in_range[sr]):
            reason = "signal region extends outside the fit range"
        elif n_below < config.min_sideband_bins or n_above < config.min_sideband_bins:
            reason = (
                f"needs >= {config.min_sideband_bins} fitted sideband bins on both sides; "
                f"has {n_below} below and {n_above} above"
            )
        windows.append(Window(low, high, sr, fit, reason))
    return windows


# --------------------------------------------------------------------------------------------------
# Results


@dataclass(frozen=True)
class WindowResult:
    """Outcome for one window. ``status``: "ok", "skipped" or "fit_failed" (see ``reason``)."""

    low: float
    high: float
    status: str
    reason: str = ""
    observed: float = float("nan")
    expected: float = float("nan")
    expected_error: float = float("nan")
    z: float = float("nan")
    z_signed: float = float("nan")
    p_value: float = float("nan")
    fit_chi2_ndf: float = float("nan")
    fit_ndf: int = 0
    fit_p_value: float = float("nan")
    fit_params: tuple[float, ...] = ()
    fit: FitResult | None = field(default=None, repr=False, compare=False)

    @property
    def centre(self) -> float:
        return 0.5 * (self.low + self.high)

    def to_dict(self) -> dict[str, Any]:
        d = {k: v for k, v in self.__dict__.items() if k != "fit"}
        d["fit_params"] = list(self.fit_params)
        d["centre"] = self.centre
        return _jsonable(d)


@dataclass(frozen=True, eq=False)
class CutResult:
    """Scan of one spectrum (one anomaly-score cut)."""

    label: str
    edges: np.ndarray
    counts: np.ndarray
    windows: tuple[WindowResult, ...]
    background_fit: FitResult
    seed: tuple[int, int]
    global_significance: GlobalSignificance | None = None
    toy_z_signed: np.ndarray | None = field(default=None, repr=False)

    @property
    def ok_windows(self) -> list[WindowResult]:
        return [w for w in self.windows if w.status == "ok"]

    @property
    def best(self) -> WindowResult | None:
        ok = self.ok_windows
        return max(ok, key=lambda w: w.z_signed) if ok else None

    @property
    def max_z(self) -> float:
        best = self.best
        return best.z if best is not None else float("nan")

    def to_dict(self) -> dict[str, Any]:
        best = self.best
        curve: dict[str, Any] = {}
        if best is not None and best.fit is not None:
            mu, err = best.fit.expected_with_uncertainty()
            curve = {
                "expected": mu.tolist(),
                "error": err.tolist(),
                "fitted_bins": best.fit.mask.tolist(),
            }
        return _jsonable(
            {
                "label": self.label,
                "n_events": float(self.counts.sum()),
                "edges": self.edges.tolist(),
                "counts": self.counts.tolist(),
                "seed": list(self.seed),
                "background_fit": self.background_fit.summary(),
                "windows": [w.to_dict() for w in self.windows],
                "best_window": None if best is None else [best.low, best.high],
                "max_local_z": self.max_z,
                "best_window_fit": curve,
                "global": None
                if self.global_significance is None
                else self.global_significance.to_dict(),
            }
        )


@dataclass(frozen=True, eq=False)
class ScanReport:
    """Bump-hunt results for all cuts, with the configuration echoed."""

    config: ScanConfig
    cuts: tuple[CutResult, ...]

    @property
    def best(self) -> tuple[str, WindowResult] | None:
        """(cut label, window) with the largest local Z over all cuts (no trials over cuts)."""
        cands = [(c.label, c.best) for c in self.cuts if c.best is not None]
        if not cands:
            return None
        return max(cands, key=lambda t: t[1].z_signed)  # type: ignore[union-attr]

    def cut(self, label: str) -> CutResult:
        for c in self.cuts:
            if c.label == label:
                return c
        raise KeyError(f"no cut {label!r}; cuts: {[c.label for c in self.cuts]}")

    def to_dict(self) -> dict[str, Any]:
        best = self.best
        return _jsonable(
            {
                "config": config_to_dict(self.config),
                "cuts": [c.to_dict() for c in self.cuts],
                "best": None
                if best is None
                else {"cut": best[0], "window": [best[1].low, best[1].high], "local_z": best[1].z},
            }
        )

    def write_json(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        return path


def _jsonable(obj: Any) -> Any:
    """NaN/inf -> None, numpy scalars -> Python, so that the report is strict JSON."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, np.bool_ | bool):
        return bool(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, float | np.floating):
        return float(obj) if math.isfinite(obj) else None
    return obj


# --------------------------------------------------------------------------------------------------
# Scanning


def _fit_window(
    edges: np.ndarray,
    counts: np.ndarray,
    window: Window,
    config: ScanConfig,
    start: np.ndarray | None = None,
) -> WindowResult:
    """Sideband fit + local significance of one window; the one code path for data and toys."""
    if window.skip_reason is not None:
        return WindowResult(window.low, window.high, "skipped", window.skip_reason)
    try:
        fit = fit_dijet((edges, counts), config.fit_config(), mask=window.fit_bins, start=start)
    except FitError as exc:
        return WindowResult(window.low, window.high, "skipped", str(exc))
    if not fit.valid:
        return WindowResult(window.low, window.high, "fit_failed", fit.message, fit=fit)
    b, sigma_b = fit.expected_sum(window.sr_bins)
    if not config.include_fit_uncertainty:
        sigma_b = 0.0
    n = float(counts[window.sr_bins].sum())
    loc = local_significance(n, b, sigma_b)
    return WindowResult(
        window.low,
        window.high,
        "ok",
        "",
        observed=n,
        expected=b,
        expected_error=sigma_b,
        z=loc.z,
        z_signed=loc.z_signed,
        p_value=loc.p_value,
        fit_chi2_ndf=fit.chi2_ndf,
        fit_ndf=fit.ndf,
        fit_p_value=fit.p_value,
        fit_params=tuple(float(p) for p in fit.params),
        fit=fit,
    )


def background_toys(fit: FitResult, n_toys: int, seed: Any) -> np.ndarray:
    """Poisson pseudo-spectra (n_toys, n_bins) from a background fit's expected counts."""
    rng = np.random.default_rng(seed)
    mu = fit.expected()
    return rng.poisson(mu, size=(n_toys, mu.size)).astype(float)


def scan_toys(
    toys: np.ndarray,
    edges: np.ndarray,
    windows: list[Window],
    observed: list[WindowResult],
    config: ScanConfig,
) -> np.ndarray:
    """Signed local Z (n_toys, n_windows) of pseudo-spectra; NaN where the window is not usable.

    Only windows that were usable in the observed scan are scanned, each toy fit starting from the
    observed fit of that window.
    """
    z = np.full((toys.shape[0], len(windows)), np.nan)
    for j, (w, obs) in enumerate(zip(windows, observed, strict=True)):
        if obs.status != "ok":
            continue
        start = np.asarray(obs.fit_params)
        for i in range(toys.shape[0]):
            r = _fit_window(edges, toys[i], w, config, start=start)
            if r.status == "ok":
                z[i, j] = r.z_signed
    n_bad = int(np.count_nonzero(np.isnan(z[:, [o.status == "ok" for o in observed]])))
    if n_bad:
        logger.warning("%d toy window fits failed or were skipped; they are ignored", n_bad)
    return z


def _scan_cut(label: str, histogram: Any, config: ScanConfig, index: int, n_toys: int) -> CutResult:
    edges, counts = as_histogram(histogram, name=f"cut {label!r}")
    total = float(counts.sum())
    if total <= 0:
        raise ValueError(f"cut {label!r}: histogram is empty (0 events)")
    windows = make_windows(edges, config)
    fit_bins = np.ones(counts.size, dtype=bool)
    if config.fit_range is not None:
        fit_bins = (edges[:-1] >= config.fit_range[0] - _TOL) & (
            edges[1:] <= config.fit_range[1] + _TOL
        )
    try:
        bkg = fit_dijet((edges, counts), config.fit_config(), mask=fit_bins)
    except FitError as exc:
        raise FitError(f"cut {label!r}: {exc}") from exc
    if not bkg.valid:
        raise FitError(f"cut {label!r}: background-only fit of the full spectrum did not converge")
    results = [_fit_window(edges, counts, w, config) for w in windows]
    n_ok = sum(r.status == "ok" for r in results)
    for r in results:
        if r.status != "ok":
            logger.info("cut %r window [%g, %g]: %s (%s)", label, r.low, r.high, r.status, r.reason)
    seed = (int(config.seed), int(index))
    glob = None
    toy_z = None
    if n_toys > 0 and n_ok > 0:
        toys = background_toys(bkg, n_toys, np.random.SeedSequence(seed))
        toy_z = scan_toys(toys, edges, windows, results, config)
        toy_max = _row_max(np.clip(toy_z, 0.0, None))
        observed_max = max(r.z for r in results if r.status == "ok")
        glob = global_significance(observed_max, toy_max)
    logger.info(
        "cut %r: %d/%d windows usable, max local Z %.2f",
        label,
        n_ok,
        len(results),
        max((r.z for r in results if r.status == "ok"), default=float("nan")),
    )
    return CutResult(label, edges, counts, tuple(results), bkg, seed, glob, toy_z)


def _row_max(a: np.ndarray) -> np.ndarray:
    """Max over windows per toy, ignoring failed fits (NaN); NaN when a toy has no usable window."""
    finite = np.isfinite(a)
    out = np.where(finite, a, -np.inf).max(axis=1)
    return np.where(finite.any(axis=1), out, np.nan)


def _as_mapping(histograms: Any) -> dict[str, Any]:
    if isinstance(histograms, Mapping):
        if not histograms:
            raise ValueError("no histograms given")
        return {str(k): v for k, v in histograms.items()}
    return {"all": histograms}


def bump_hunt(
    histograms: Any, config: ScanConfig | None = None, n_toys: int | None = None
) -> ScanReport:
    """Scan every spectrum (``{cut label: hist}`` or one hist) and compute global significances.

    ``n_toys`` overrides ``config.n_toys`` (0 skips the pseudo-experiments). Toy seeds are
    ``(config.seed, cut index)``, recorded in the report: same inputs and seed, same report.
    """
    cfg = config or ScanConfig()
    nt = cfg.n_toys if n_toys is None else int(n_toys)
    cuts = tuple(
        _scan_cut(label, h, cfg, i, nt)
        for i, (label, h) in enumerate(_as_mapping(histograms).items())
    )
    return ScanReport(cfg, cuts)


# --------------------------------------------------------------------------------------------------
# Sculpting guard


@dataclass(frozen=True)
class SculptingConfig:
    """Thresholds for :func:`check_sculpting`. p-value thresholds are per cut; the KS test is
    Bonferroni-corrected over windows."""

    min_fit_p_value: float = 0.01
    min_ks_p_value: float = 0.01
    min_global_p_value: float = 0.01
    #: Windows with fewer expected events are left out of the KS test: there the counts are so
    #: discrete that even exact Poisson p-values are not continuous-uniform.
    min_expected_for_ks: float = 50.0


@dataclass(frozen=True)
class SculptingCheck:
    """Sculpting diagnostics of one cut on signal-free data."""

    label: str
    fit_chi2_ndf: float
    fit_p_value: float
    window_fit_p_values_min: float
    ks_windows: tuple[tuple[float, float], ...]
    ks_statistics: tuple[float, ...]
    ks_p_values: tuple[float, ...]
    ks_p_value_bonferroni: float
    global_p_value_two_sided: float
    passed: bool
    reasons: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return _jsonable(dict(self.__dict__))


@dataclass(frozen=True, eq=False)
class SculptingReport:
    scan_config: ScanConfig
    sculpting_config: SculptingConfig
    checks: tuple[SculptingCheck, ...]

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    def to_dict(self) -> dict[str, Any]:
        return _jsonable(
            {
                "scan_config": config_to_dict(self.scan_config),
                "sculpting_config": config_to_dict(self.sculpting_config),
                "passed": self.passed,
                "checks": [c.to_dict() for c in self.checks],
            }
        )


def check_sculpting(
    histograms: Any, config: ScanConfig | None = None, thresholds: SculptingConfig | None = None
) -> SculptingReport:
    """Does an anomaly-score cut sculpt the background mjj spectrum? Run on SIGNAL-FREE data.

    Per cut it requires (1) a good fit of the full post-cut spectrum by the smooth function
    (deviance p-value), (2) local p-values of background-only pseudo-experiments uniform at every
    fixed window (KS test over independent toys; adjacent windows are correlated, so windows are
    tested one at a time and Bonferroni-corrected), and (3) no bump or dip beyond the look-elsewhere
    expectation in the observed scan (two-sided global p-value of max |Z|). A cut that carves a
    structure into the spectrum fails (1) or (3); a miscalibrated fit/uncertainty fails (2).
    """
    cfg = config or ScanConfig()
    thr = thresholds or SculptingConfig()
    if cfg.n_toys < 20:
        raise ValueError(f"check_sculpting needs n_toys >= 20 for the KS test, got {cfg.n_toys}")
    checks = []
    for i, (label, h) in enumerate(_as_mapping(histograms).items()):
        cut = _scan_cut(label, h, cfg, i, cfg.n_toys)
        reasons: list[str] = []
        bkg = cut.background_fit
        if bkg.p_value < thr.min_fit_p_value:
            reasons.append(
                f"full-spectrum fit p-value {bkg.p_value:.3g} < {thr.min_fit_p_value} (chi2/ndf {bkg.chi2_ndf:.2f})"
            )
        ok_idx = [j for j, w in enumerate(cut.windows) if w.status == "ok"]
        if not ok_idx or cut.toy_z_signed is None:
            raise ValueError(f"cut {label!r}: no usable window for the sculpting check")
        ks_idx = [j for j in ok_idx if cut.windows[j].expected >= thr.min_expected_for_ks]
        if not ks_idx:
            raise ValueError(
                f"cut {label!r}: no window expects >= {thr.min_expected_for_ks:g} events; "
                "the p-value uniformity test needs more events"
            )
        ks_stat, ks_p = [], []
        for j in ks_idx:
            z = cut.toy_z_signed[:, j]
            p = stats.norm.sf(z[np.isfinite(z)])
            res = stats.kstest(p, "uniform")
            ks_stat.append(float(res.statistic))
            ks_p.append(float(res.pvalue))
        ks_bonf = min(1.0, min(ks_p) * len(ks_p))
        if ks_bonf < thr.min_ks_p_value:
            worst = ks_idx[int(np.argmin(ks_p))]
            w = cut.windows[worst]
            reasons.append(
                f"toy local p-values not uniform at window [{w.low:g}, {w.high:g}] "
                f"(KS p = {min(ks_p):.3g}, Bonferroni {ks_bonf:.3g})"
            )
        obs_abs = max(abs(cut.windows[j].z_signed) for j in ok_idx)
        toy_abs = _row_max(np.abs(cut.toy_z_signed[:, ok_idx]))
        g2 = global_significance(obs_abs, toy_abs)
        if g2.p_value < thr.min_global_p_value:
            reasons.append(
                f"observed max |Z| = {obs_abs:.2f} is beyond the look-elsewhere expectation: {g2.statement}"
            )
        checks.append(
            SculptingCheck(
                label=label,
                fit_chi2_ndf=bkg.chi2_ndf,
                fit_p_value=bkg.p_value,
                window_fit_p_values_min=min(cut.windows[j].fit_p_value for j in ok_idx),
                ks_windows=tuple((cut.windows[j].low, cut.windows[j].high) for j in ks_idx),
                ks_statistics=tuple(ks_stat),
                ks_p_values=tuple(ks_p),
                ks_p_value_bonferroni=ks_bonf,
                global_p_value_two_sided=g2.p_value,
                passed=not reasons,
                reasons=tuple(reasons),
            )
        )
    return SculptingReport(cfg, thr, tuple(checks))

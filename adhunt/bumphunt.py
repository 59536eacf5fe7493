"""The sliding-window bump hunt in mjj: windows, anomaly cuts, background fits, local and global Z.

One library call runs a whole search on a table of events (a notebook needs three lines)::

    from adhunt.bumphunt import ScanConfig, scan
    from adhunt.models import window_scorer
    result = scan(df["mjj"], window_scorer(df, ScanConfig()), ScanConfig())

``score_window(low, high)`` is any callable that returns one anomaly score per event, trained for
the window ``[low, high)`` and k-fold honest (no event scored by a model that saw it); the core
never imports a model. Per window, cuts keep a fixed fraction of the window's signal-region (SR)
events (10%, 1%, 0.1%: the CWoLa-hunting convention) and are applied at every mjj; the post-cut
spectrum is fit with the window masked by the background model of :func:`adhunt.fitting.
fit_background` (fit range starting above the trigger turn-on, number of parameters chosen by a
Fisher F-test, function-choice uncertainty); a window whose sideband fit is poor, also with half a
window width more masked on each side (where a resonance's tails go), is reported as
``fit_failed``, never as an excess. The excess becomes a local significance with the fit and
function-choice uncertainties (:mod:`adhunt.significance`).

Global significance: the uncut spectrum is common to all windows, so its pseudo-experiments are
exact (one toy spectrum drawn from the full-spectrum fit and scanned over every window with the
same code). After a cut every window has its own spectrum (its own model): each window's toys are
drawn independently from its own sideband fit and the maximum over windows is taken per toy.
Neighbouring windows share most events, so independent draws over-count the trials and the global
Z is conservative. Toys drawn from a fit cannot see a cut that sculpts the background: that is
what the scan-safe methods, the ``fit_failed`` rule and :func:`check_sculpting` on signal-free data
are for. Trials across cuts are not included.

Windows, fits and toys are independent tasks; ``mapper(fn, items)`` (default: in order, in this
process) lets the caller spread them over processes or a Dask cluster with identical results.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

from adhunt.config import config_to_dict, json_safe, write_json
from adhunt.fitting import (
    SQRT_S_GEV,
    BackgroundConfig,
    BackgroundFit,
    FitError,
    as_histogram,
    fit_background,
    fit_start_above_turn_on,
)
from adhunt.histograms import DEFAULT_MJJ_EDGES
from adhunt.schema import SCAN_FEATURES
from adhunt.significance import GlobalSignificance, global_significance, local_significance

logger = logging.getLogger(__name__)

__all__ = [
    "NO_CUT",
    "CutSpectrum",
    "CutSummary",
    "ScanConfig",
    "ScanResult",
    "SculptingConfig",
    "SculptingReport",
    "SpectrumScan",
    "Window",
    "WindowResult",
    "WindowScan",
    "bump_hunt",
    "check_sculpting",
    "cut_label",
    "cut_spectra",
    "evaluate_window",
    "mjj_counts",
    "plan_windows",
    "resolve_fit_range",
    "scan",
    "sr_threshold",
]

#: Label of the spectrum before any anomaly cut.
NO_CUT = "no_cut"
_TOL = 1e-6  # GeV, for comparing window and bin edges

Mapper = Callable[[Callable[[Any], Any], Sequence[Any]], Iterable[Any]]


def cut_label(efficiency: float) -> str:
    """The one name of the cut keeping ``efficiency`` of the SR events (``eff_0.01``)."""
    return f"eff_{efficiency:g}"


def sr_threshold(scores_sr: np.ndarray, efficiency: float) -> float:
    """The one score threshold rule: keep ``score >= t`` for ``efficiency`` of the SR events.

    ``t`` is the k-th highest SR score with k = max(1, round(efficiency * n_SR)); with ties more
    events pass, which is why the efficiency reached is reported next to the requested one.
    """
    s = np.sort(np.asarray(scores_sr, dtype=np.float64))[::-1]
    if s.size == 0:
        raise ValueError("no signal-region events to set a score threshold on")
    k = min(s.size, max(1, round(efficiency * s.size)))
    return float(s[k - 1])


# --------------------------------------------------------------------------------------------------
# Configuration


def _pair(value: Any, name: str) -> tuple[float, float] | None:
    """``"LO:HI"`` or a 2-sequence -> (lo, hi) with finite lo < hi; None stays None."""
    if value is None:
        return None
    parts = value.split(":") if isinstance(value, str) else list(value)
    if len(parts) != 2:
        raise ValueError(f"ScanConfig.{name}: expected LOW:HIGH (GeV), got {value!r}")
    try:
        lo, hi = float(parts[0]), float(parts[1])
    except (TypeError, ValueError):
        raise ValueError(
            f"ScanConfig.{name}: LOW and HIGH must be numbers, got {value!r}"
        ) from None
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise ValueError(f"ScanConfig.{name}: need finite LOW < HIGH, got {value!r}")
    return lo, hi


def _names(value: Any) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, str):
        items = tuple(v.strip() for v in value.split(",") if v.strip())
    else:
        items = tuple(str(v) for v in value)
    return items or None


@dataclass(frozen=True)
class ScanConfig:
    """Everything that defines a scan, loadable from YAML/TOML and echoed into ``scan.json``.

    Method (trained per window by the caller's scorer): ``method``, ``features`` (default: the
    standard features with jet masses divided by mjj, see :data:`adhunt.schema.SCAN_FEATURES`),
    ``method_config`` (path or mapping), ``backend``, ``folds``, ``seed``. ``sideband_width``:
    the training sidebands, ``"window"`` (default: adjacent sidebands as wide as the window, as in
    CWoLa hunting), ``"all"`` (every event outside the window) or a width in GeV.
    ``max_sideband_ratio`` subsamples the training sidebands to at most that many times the SR
    events (None: all). ``decorrelate="qr"``: each window's model also fits the quantile
    regression of its k-fold score versus mjj on every event outside the window and the cuts are
    made on the decorrelated score, which keeps the same fraction at every mjj. ``n_ensemble`` overrides the classifier ensemble size of the method
    (default 1 in a scan: the k folds already average out the training noise of one window, and
    the benchmark found no loss of power against 5 members at 5x the cost; None: the method's).

    Windows: explicit ``windows`` or sliding ones of ``window_width`` in steps of ``window_step``
    over ``scan_range`` (None: the fit range), all snapped to the mjj bin edges ``edges``; windows
    with fewer than ``min_sr_events`` SR events, fewer than ``min_sideband_bins`` fitted bins or
    less than ``min_sideband_width`` GeV of fitted sidebands (None: the window's width) on either
    side are skipped with their reason: with less, the fit extrapolates into the window rather
    than interpolating, and on QCD toys its prediction scatters more than its uncertainty says.

    Background model: ``fit_range`` (None: from the first bin at least two bins past the peak of
    the uncut spectrum whose density is below ``turn_on_fraction`` of the peak, i.e. just above
    the trigger turn-on, to the last edge with events), candidate numbers of dijet-function parameters
    ``fit_n_params`` chosen by an F-test at ``f_test_alpha``, alternative ``fit_alternatives``
    for the function-choice (spurious-signal) uncertainty, windows whose sideband fit has a
    p-value below ``min_fit_p_value`` reported as ``fit_failed`` (after one retry with half a
    window width more masked on each side, for the tails of a resonance). ``n_toys`` toys
    per cut for the global significance.
    """

    # method
    method: str = "cwola"
    features: tuple[str, ...] = SCAN_FEATURES
    method_config: str | dict[str, Any] | None = None
    backend: str | None = None
    n_ensemble: int | None = 1
    folds: int = 5
    seed: int = 0
    sideband_width: float | str = "window"
    max_sideband_ratio: float | None = None
    decorrelate: str = "none"  # "qr": cut on the mjj-decorrelated score (models/decorrelation.py)
    # windows
    window_width: float = 400.0
    window_step: float = 100.0
    windows: tuple[tuple[float, float], ...] = ()
    scan_range: tuple[float, float] | None = None
    min_sr_events: int = 100
    min_sideband_bins: int = 2
    min_sideband_width: float | None = None
    edges: tuple[float, ...] = DEFAULT_MJJ_EDGES
    # cuts
    efficiencies: tuple[float, ...] = (0.1, 0.01, 0.001)
    # background model
    fit_range: tuple[float, float] | None = None
    turn_on_fraction: float = 0.9
    fit_n_params: tuple[int, ...] = (3, 4, 5)
    f_test_alpha: float = 0.05
    fit_alternatives: tuple[str, ...] = ("ua2",)
    spurious_signal: bool = True
    min_fit_p_value: float = 0.01
    min_fit_events: float = 50.0
    sqrt_s: float = SQRT_S_GEV
    quadrature_points: int = 4
    # global significance
    n_toys: int = 100
    # inputs and outputs of the scan job
    datasets: tuple[str, ...] | None = None
    inject: int | None = None
    signal_dir: str | None = None
    signal_datasets: tuple[str, ...] | None = None
    reference_dir: str | None = None
    reference_datasets: tuple[str, ...] | None = None
    save_models: bool = False
    plots: bool = True

    def __post_init__(self) -> None:
        def put(name: str, value: Any) -> None:
            object.__setattr__(self, name, value)

        feats = _names(self.features)
        if not feats:
            raise ValueError("ScanConfig.features: give at least one input feature")
        put("features", feats)
        for name in ("datasets", "signal_datasets", "reference_datasets"):
            put(name, _names(getattr(self, name)))
        put("fit_alternatives", _names(self.fit_alternatives) or ())
        for name in ("window_width", "window_step", "min_fit_events", "sqrt_s"):
            value = float(getattr(self, name))
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"ScanConfig.{name} must be > 0, got {getattr(self, name)!r}")
            put(name, value)
        put("scan_range", _pair(self.scan_range, "scan_range"))
        put("fit_range", _pair(self.fit_range, "fit_range"))
        windows = self.windows
        if isinstance(windows, str):
            windows = [w for w in windows.split(",") if w.strip()]
        put("windows", tuple(_pair(w, "windows") for w in windows or ()))
        edges = np.asarray(self.edges, dtype=float)
        if edges.ndim != 1 or edges.size < 2 or np.any(~np.isfinite(edges)):
            raise ValueError("ScanConfig.edges must list at least two finite bin edges")
        if np.any(np.diff(edges) <= 0):
            raise ValueError("ScanConfig.edges must increase strictly")
        put("edges", tuple(float(e) for e in edges))
        sbw = self.sideband_width
        if isinstance(sbw, str) and sbw not in ("window", "all"):
            try:
                sbw = float(sbw)
            except ValueError:
                raise ValueError(
                    f"ScanConfig.sideband_width must be 'window', 'all' or GeV, got {sbw!r}"
                ) from None
        if not isinstance(sbw, str):
            sbw = float(sbw)
            if not (math.isfinite(sbw) and sbw > 0):
                raise ValueError(f"ScanConfig.sideband_width must be > 0, got {sbw!r}")
        put("sideband_width", sbw)
        if self.max_sideband_ratio is not None:
            ratio = float(self.max_sideband_ratio)
            if not (math.isfinite(ratio) and ratio > 0):
                raise ValueError(
                    f"ScanConfig.max_sideband_ratio must be > 0 or None, got {ratio!r}"
                )
            put("max_sideband_ratio", ratio)
        effs = self.efficiencies
        if isinstance(effs, str):
            effs = [e for e in effs.split(",") if e.strip()]
        try:
            effs = tuple(float(e) for e in (effs if isinstance(effs, Sequence) else [effs]))
        except (TypeError, ValueError):
            raise ValueError(
                f"ScanConfig.efficiencies must be numbers, got {self.efficiencies!r}"
            ) from None
        if not effs:
            raise ValueError("ScanConfig.efficiencies: give at least one efficiency")
        bad = [e for e in effs if not (0.0 < e <= 1.0)]
        if bad:
            raise ValueError(f"ScanConfig.efficiencies must lie in (0, 1], got {bad}")
        if len({cut_label(e) for e in effs}) != len(effs):
            raise ValueError(f"ScanConfig.efficiencies has duplicates: {effs}")
        put("efficiencies", effs)
        integers = (
            ("folds", 2), ("min_sr_events", 1), ("n_toys", 0), ("seed", 0),
            ("min_sideband_bins", 1), ("quadrature_points", 1),
        )  # fmt: skip
        for name, low in integers:
            value = getattr(self, name)
            if isinstance(value, bool) or int(value) != value or value < low:
                raise ValueError(f"ScanConfig.{name} must be an integer >= {low}, got {value!r}")
            put(name, int(value))
        for name in ("n_ensemble", "inject"):
            value = getattr(self, name)
            if value is not None:
                if isinstance(value, bool) or int(value) != value or value < 0:
                    raise ValueError(f"ScanConfig.{name} must be an integer >= 0, got {value!r}")
                put(name, int(value))
        if not 0.0 < float(self.turn_on_fraction) < 1.0:
            raise ValueError(
                f"ScanConfig.turn_on_fraction must be in (0, 1), got {self.turn_on_fraction!r}"
            )
        if self.min_sideband_width is not None:
            width = float(self.min_sideband_width)
            if not (math.isfinite(width) and width >= 0):
                raise ValueError(
                    f"ScanConfig.min_sideband_width must be >= 0 GeV or None, got {width!r}"
                )
            put("min_sideband_width", width)
        if self.n_ensemble == 0:
            raise ValueError("ScanConfig.n_ensemble must be >= 1")
        if (self.inject is None) != (self.signal_dir is None):
            raise ValueError("ScanConfig: inject (N) and signal_dir go together")
        for name in ("signal_dir", "reference_dir"):
            value = getattr(self, name)
            if value is not None:
                put(name, str(value))
        if self.decorrelate not in ("none", "qr"):
            raise ValueError(f"ScanConfig.decorrelate must be none or qr, got {self.decorrelate!r}")
        if self.backend is not None and self.backend not in ("hgb", "mlp"):
            raise ValueError(f"ScanConfig.backend must be hgb, mlp or None, got {self.backend!r}")
        if self.method_config is not None and not isinstance(self.method_config, str | dict):
            put("method_config", str(self.method_config))
        put("fit_n_params", tuple(int(n) for n in self.fit_n_params))
        self.background_config()  # validates the fit settings with the fitter's own messages

    def background_config(self) -> BackgroundConfig:
        return BackgroundConfig(
            n_params=self.fit_n_params,
            f_test_alpha=self.f_test_alpha,
            alternatives=self.fit_alternatives,
            spurious_signal=self.spurious_signal,
            min_fit_p_value=self.min_fit_p_value,
            sqrt_s=self.sqrt_s,
            quadrature_points=self.quadrature_points,
            min_events=self.min_fit_events,
        )

    def sideband_gev(self, window: tuple[float, float]) -> float | None:
        """Training sideband width for ``window`` in GeV (None: all events outside)."""
        if self.sideband_width == "all":
            return None
        if self.sideband_width == "window":
            return float(window[1] - window[0])
        return float(self.sideband_width)

    @property
    def labels(self) -> tuple[str, ...]:
        """Spectrum labels in report order: the uncut one, then one per efficiency."""
        return (NO_CUT, *(cut_label(e) for e in self.efficiencies))


# --------------------------------------------------------------------------------------------------
# Windows


@dataclass(frozen=True, eq=False)
class Window:
    """A signal region snapped to bin edges, its bins, its fitted sideband bins and, when it
    cannot be scanned, the reason."""

    low: float
    high: float
    sr_bins: np.ndarray = field(repr=False)
    fit_bins: np.ndarray = field(repr=False)
    skip_reason: str | None = None
    n_sr: int | None = None

    @property
    def centre(self) -> float:
        return 0.5 * (self.low + self.high)

    @property
    def bounds(self) -> tuple[float, float]:
        return (self.low, self.high)

    def to_dict(self) -> dict[str, Any]:
        return {"low": self.low, "high": self.high, "n_sr": self.n_sr, "reason": self.skip_reason}


def _snap_range(edges: np.ndarray, lo: float, hi: float, what: str) -> tuple[int, int]:
    """Indices (i, j) of the edges inside [lo, hi]: the largest edge span the range contains."""
    i = int(np.searchsorted(edges, lo - _TOL))
    j = int(np.searchsorted(edges, hi + _TOL)) - 1
    if i >= edges.size or j < 0 or j <= i:
        raise ValueError(
            f"{what} [{lo:g}, {hi:g}] GeV contains less than one bin of the mjj binning "
            f"[{edges[0]:g}, {edges[-1]:g}] GeV"
        )
    return i, j


def plan_windows(
    edges: Any,
    fit_range: tuple[float, float],
    config: ScanConfig,
    mjj: np.ndarray | None = None,
) -> list[Window]:
    """Every candidate window, snapped to ``edges``; unusable ones carry ``skip_reason``.

    Never raises for a window at the edge of the binning or the fit range: such a window is
    planned when it fits, or skipped with the reason. Raises ``ValueError`` only when the fit range
    or scan range holds no bin at all, or no window of the requested width fits.
    """
    edges = np.asarray(edges, dtype=float)
    fi, fj = _snap_range(edges, *fit_range, "fit range")
    lo_e = edges[:-1]
    in_fit = np.zeros(lo_e.size, dtype=bool)
    in_fit[fi:fj] = True
    if config.windows:
        raw = list(config.windows)
    else:
        lo, hi = config.scan_range or (edges[fi], edges[fj])
        lo, hi = max(lo, edges[fi]), min(hi, edges[fj])
        if not hi - lo >= config.window_width - _TOL:
            raise ValueError(
                f"no {config.window_width:g} GeV window fits into the scan range [{lo:g}, {hi:g}] "
                f"GeV (requested {config.scan_range}, clipped to the fit range "
                f"[{edges[fi]:g}, {edges[fj]:g}] GeV)"
            )
        n = math.floor((hi - lo - config.window_width) / config.window_step + 1e-9) + 1
        raw = [
            (lo + k * config.window_step, lo + k * config.window_step + config.window_width)
            for k in range(n)
        ]
    windows: list[Window] = []
    seen: set[tuple[float, float]] = set()
    for a, b in raw:
        if a < edges[0] - _TOL or b > edges[-1] + _TOL:  # reported as asked, bins untouched
            if (a, b) not in seen:
                seen.add((a, b))
                none = np.zeros(lo_e.size, dtype=bool)
                reason = (
                    f"window [{a:g}, {b:g}] GeV lies outside the mjj binning "
                    f"[{edges[0]:g}, {edges[-1]:g}] GeV"
                )
                windows.append(Window(float(a), float(b), none, none.copy(), reason))
            continue
        reason = None
        i = int(np.argmin(np.abs(edges - a)))
        j = int(np.argmin(np.abs(edges - b)))
        if j <= i:  # narrower than a bin: the next edge up, if there is one
            j = i + 1
        if j >= edges.size:
            i, j = edges.size - 2, edges.size - 1
            reason = f"window [{a:g}, {b:g}] GeV reaches the last mjj bin edge {edges[-1]:g} GeV"
        if (edges[i], edges[j]) in seen:  # two requests snapping to the same bins: one window
            continue
        seen.add((edges[i], edges[j]))
        sr = np.zeros(lo_e.size, dtype=bool)
        sr[i:j] = True
        fit = in_fit & ~sr
        n_below = int(np.count_nonzero(fit[:i]))
        n_above = int(np.count_nonzero(fit[j:]))
        if reason is None and not np.all(in_fit[sr]):
            reason = (
                f"signal region [{edges[i]:g}, {edges[j]:g}] GeV extends outside the fit range "
                f"[{edges[fi]:g}, {edges[fj]:g}] GeV"
            )
        if reason is None and min(n_below, n_above) < config.min_sideband_bins:
            reason = (
                f"needs >= {config.min_sideband_bins} fitted sideband bins on both sides; "
                f"has {n_below} below and {n_above} above"
            )
        need = config.min_sideband_width
        need = float(edges[j] - edges[i]) if need is None else need
        gev_below = float(np.sum(np.diff(edges)[:i][fit[:i]]))
        gev_above = float(np.sum(np.diff(edges)[j:][fit[j:]]))
        if reason is None and min(gev_below, gev_above) < need - _TOL:
            reason = (
                f"needs >= {need:g} GeV of fitted sidebands on both sides; "
                f"has {gev_below:g} below and {gev_above:g} above"
            )
        n_sr = None
        if mjj is not None:
            n_sr = int(np.count_nonzero((mjj >= edges[i]) & (mjj < edges[j])))
            if reason is None and n_sr < config.min_sr_events:
                reason = f"{n_sr} SR events < min_sr_events = {config.min_sr_events}"
        windows.append(Window(float(edges[i]), float(edges[j]), sr, fit, reason, n_sr))
    return windows


def mjj_counts(mjj: np.ndarray, edges: Any, weights: np.ndarray | None = None) -> np.ndarray:
    """Counts of ``mjj`` in the bins of ``edges`` (``low <= mjj < high``; outside: dropped).

    The same half-open convention as :meth:`adhunt.regions.SignalRegion.in_sr`, so the events of
    a window's bins are exactly the events of its signal region.
    """
    edges = np.asarray(edges, dtype=float)
    m = np.asarray(mjj, dtype=np.float64)
    idx = np.searchsorted(edges, m, side="right") - 1
    ok = (idx >= 0) & (idx < edges.size - 1)
    w = None if weights is None else np.asarray(weights, dtype=np.float64)[ok]
    return np.bincount(idx[ok], weights=w, minlength=edges.size - 1).astype(np.float64)


def resolve_fit_range(
    edges: Any, uncut_counts: np.ndarray, config: ScanConfig
) -> tuple[tuple[float, float], str]:
    """The fit range (snapped to edges) and how it was chosen (``"config"`` or ``"turn-on"``).

    Without ``config.fit_range`` the fit starts above the trigger turn-on of the uncut spectrum
    (:func:`adhunt.fitting.fit_start_above_turn_on`) and ends at the last edge where the spectrum
    still has events; every cut then uses that same range.
    """
    edges = np.asarray(edges, dtype=float)
    counts = np.asarray(uncut_counts, dtype=float)
    if config.fit_range is not None:
        i, j = _snap_range(edges, *config.fit_range, "fit range")
        return (float(edges[i]), float(edges[j])), "config"
    if counts.sum() <= 0:
        raise ValueError("the mjj spectrum is empty: no fit range can be found")
    start = fit_start_above_turn_on(edges, counts, fraction=config.turn_on_fraction)
    last = int(np.flatnonzero(counts)[-1]) + 1  # edge above the last non-empty bin
    i, j = _snap_range(edges, start, float(edges[last]), "fit range")
    return (float(edges[i]), float(edges[j])), "turn-on"


# --------------------------------------------------------------------------------------------------
# One window of one spectrum


@dataclass(frozen=True)
class WindowResult:
    """Outcome of one window in one spectrum: ``status`` "ok", "skipped" or "fit_failed"."""

    low: float
    high: float
    status: str
    reason: str = ""
    observed: float = float("nan")
    expected: float = float("nan")
    expected_error: float = float("nan")
    expected_error_fit: float = float("nan")
    expected_error_function: float = float("nan")
    z: float = float("nan")
    z_signed: float = float("nan")
    p_value: float = float("nan")
    fit_n_params: int = 0
    fit_chi2_ndf: float = float("nan")
    fit_ndf: int = 0
    fit_p_value: float = float("nan")
    fit_params: tuple[float, ...] = ()
    sideband_mask: str = ""
    background: BackgroundFit | None = field(default=None, repr=False, compare=False)

    @property
    def centre(self) -> float:
        return 0.5 * (self.low + self.high)

    @property
    def fit(self) -> Any:
        """The nominal background fit (a :class:`adhunt.fitting.FitResult`) or None."""
        return None if self.background is None else self.background.nominal

    def to_dict(self) -> dict[str, Any]:
        d = {k: v for k, v in self.__dict__.items() if k != "background"}
        d["fit_params"] = list(self.fit_params)
        if self.background is not None:
            d["background_fit"] = self.background.summary()
        return json_safe(d)


def evaluate_window(
    edges: np.ndarray,
    counts: np.ndarray,
    window: Window,
    config: ScanConfig,
    start: Mapping[int | str, Any] | None = None,
) -> WindowResult:
    """Sideband fit + local significance of one window: the one code path for data and toys.

    ``start``: starting values of the fits (:meth:`BackgroundFit.starts` of the observed
    spectrum), so that toy fits begin next to their minimum.
    """
    if window.skip_reason is not None:
        return WindowResult(window.low, window.high, "skipped", window.skip_reason)
    try:
        bg = fit_background(
            (edges, counts), config.background_config(), mask=window.fit_bins, start=start
        )
    except FitError as exc:
        return WindowResult(window.low, window.high, "skipped", str(exc))
    mask = "window"
    if bg.status != "ok":
        # A narrow resonance is not a step: its tails leak into the bins next to the window and
        # can spoil the sideband fit. Retry with half a window width masked on each side; a
        # broad mismodelling (a sculpted or mis-fit spectrum) fails there too and stays failed.
        wider = _widened_fit_bins(edges, window, config)
        if wider is not None:
            try:
                retry = fit_background(
                    (edges, counts), config.background_config(), mask=wider, start=start
                )
            except FitError:
                retry = None
            if retry is not None and retry.status == "ok":
                bg, mask = retry, "widened"
    nominal = bg.nominal
    common = {
        "sideband_mask": mask,
        "fit_n_params": nominal.n_params,
        "fit_chi2_ndf": nominal.chi2_ndf,
        "fit_ndf": nominal.ndf,
        "fit_p_value": nominal.p_value,
        "fit_params": tuple(float(p) for p in nominal.params),
        "background": bg,
    }
    if bg.status != "ok":
        return WindowResult(window.low, window.high, "fit_failed", bg.reason, **common)
    b, sigma_fit, sigma_function = bg.expected_sum(window.sr_bins)
    n = float(counts[window.sr_bins].sum())
    if not b > 0:
        return WindowResult(
            window.low, window.high, "fit_failed", "no background expected in the window", **common
        )
    sigma = math.hypot(sigma_fit, sigma_function)
    loc = local_significance(n, b, sigma)
    return WindowResult(
        window.low,
        window.high,
        "ok",
        "",
        observed=n,
        expected=b,
        expected_error=sigma,
        expected_error_fit=sigma_fit,
        expected_error_function=sigma_function,
        z=loc.z,
        z_signed=loc.z_signed,
        p_value=loc.p_value,
        **common,
    )


def _widened_fit_bins(edges: np.ndarray, window: Window, config: ScanConfig) -> np.ndarray | None:
    """The window's fit bins without those within half a window width of it (None when that
    leaves fewer than ``min_sideband_bins`` on either side)."""
    half = 0.5 * (window.high - window.low)
    lo_e, hi_e = edges[:-1], edges[1:]
    near = (hi_e > window.low - half + _TOL) & (lo_e < window.high + half - _TOL)
    fit = window.fit_bins & ~near
    below = int(np.count_nonzero(fit & (hi_e <= window.low + _TOL)))
    above = int(np.count_nonzero(fit & (lo_e >= window.high - _TOL)))
    if min(below, above) < config.min_sideband_bins:
        return None
    return fit


def _toy_z(
    edges: np.ndarray,
    mu: np.ndarray,
    windows: Sequence[Window],
    config: ScanConfig,
    n_toys: int,
    seed: Sequence[int],
    starts: Sequence[Mapping[int | str, Any] | None] | None = None,
) -> np.ndarray:
    """Signed local Z (n_toys, n_windows) of Poisson toys of ``mu`` scanned over ``windows``.

    NaN where a toy's window is skipped or its fit fails (a failed fit is no excess, so it
    counts as no excess in the maximum too).
    """
    rng = np.random.default_rng(np.random.SeedSequence(list(seed)))
    # Only the bins the window fits use are drawn: outside the fit range a sparse post-cut fit
    # can extrapolate to absurd expectations that mean nothing (and overflow the Poisson draw).
    used = np.zeros(mu.size, dtype=bool)
    for w in windows:
        used |= w.fit_bins | w.sr_bins
    mu = np.where(used & np.isfinite(mu), mu, 0.0)
    toys = rng.poisson(mu, size=(n_toys, mu.size)).astype(float)
    z = np.full((n_toys, len(windows)), np.nan)
    starts = list(starts) if starts is not None else [None] * len(windows)
    for i in range(n_toys):
        for j, w in enumerate(windows):
            r = evaluate_window(edges, toys[i], w, config, starts[j])
            if r.status == "ok":
                z[i, j] = r.z_signed
    return z


def _row_max(a: np.ndarray) -> np.ndarray:
    """Max over windows per toy of a non-negative Z, ignoring NaN (failed or skipped windows).

    A toy whose every window failed reports no excess, exactly as the data would: 0, not a toy
    to drop (dropping it would shift the global p-value).
    """
    finite = np.isfinite(a)
    out = np.where(finite, a, -np.inf).max(axis=1)
    return np.where(finite.any(axis=1), out, 0.0)


# --------------------------------------------------------------------------------------------------
# A spectrum scanned over windows (the uncut spectrum, the demo, the sculpting check)


@dataclass(frozen=True, eq=False)
class SpectrumScan:
    """One spectrum scanned over every window with exact look-elsewhere toys."""

    label: str
    edges: np.ndarray
    counts: np.ndarray
    windows: tuple[WindowResult, ...]
    background: BackgroundFit | None
    fit_range: tuple[float, float]
    seed: tuple[int, ...]
    global_significance: GlobalSignificance | None = None
    toy_z_signed: np.ndarray | None = field(default=None, repr=False)
    note: str = ""

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
        return json_safe(
            {
                "label": self.label,
                "n_events": float(self.counts.sum()),
                "fit_range": list(self.fit_range),
                "seed": list(self.seed),
                "background_fit": None if self.background is None else self.background.summary(),
                "windows": [w.to_dict() for w in self.windows],
                "best_window": None if best is None else [best.low, best.high],
                "max_local_z": self.max_z,
                "global": None
                if self.global_significance is None
                else self.global_significance.to_dict(),
                "note": self.note,
            }
        )


def _full_fit_bins(edges: np.ndarray, fit_range: tuple[float, float]) -> np.ndarray:
    return (edges[:-1] >= fit_range[0] - _TOL) & (edges[1:] <= fit_range[1] + _TOL)


def scan_spectrum(
    label: str,
    histogram: Any,
    windows: Sequence[Window],
    fit_range: tuple[float, float],
    config: ScanConfig,
    seed: Sequence[int],
    n_toys: int | None = None,
    mapper: Mapper | None = None,
) -> SpectrumScan:
    """Scan one spectrum over ``windows``; global Z from toys of its full-range background fit.

    The toys are drawn from the background model fit to every bin of the fit range (window not
    masked: under the background-only hypothesis that is the best estimate) and scanned with
    :func:`evaluate_window`, so they see the same F-test, uncertainties and ``fit_failed`` rule.
    """
    edges, counts = as_histogram(histogram, name=f"spectrum {label!r}")
    if counts.sum() <= 0:
        raise ValueError(f"spectrum {label!r} is empty (0 events)")
    nt = config.n_toys if n_toys is None else int(n_toys)
    results = tuple(evaluate_window(edges, counts, w, config) for w in windows)
    seed = tuple(int(s) for s in seed)
    try:
        full = fit_background(
            (edges, counts), config.background_config(), mask=_full_fit_bins(edges, fit_range)
        )
    except FitError as exc:
        return SpectrumScan(
            label, edges, counts, results, None, fit_range, seed, note=f"no full fit: {exc}"
        )
    ok = [j for j, r in enumerate(results) if r.status == "ok"]
    if nt == 0 or not ok:
        return SpectrumScan(label, edges, counts, results, full, fit_range, seed)
    note = ""
    if not full.valid:
        note = f"no global significance: the full-range background fit did not converge ({full.reason})"
        logger.warning("spectrum %r: %s", label, note)
        return SpectrumScan(label, edges, counts, results, full, fit_range, seed, note=note)
    if full.status != "ok":
        # A strong signal spoils the full-range fit; its smooth part still models the background
        # the toys need, so they are drawn from it and the report says so.
        note = (
            f"toys drawn from a full-range fit that describes the spectrum poorly ({full.reason})"
        )
        logger.info("spectrum %r: %s", label, note)
    usable = [windows[j] for j in ok]
    starts = [results[j].background.starts() for j in ok]
    # Toys in batches so that a mapper can spread them; each batch has its own seed.
    batches = _toy_batches(nt)
    run = partial(_toy_batch, edges, full.nominal.expected(), usable, config, seed, starts)
    z_ok = np.concatenate(list((mapper or _serial)(run, batches)), axis=0)
    z = np.full((nt, len(windows)), np.nan)
    z[:, ok] = z_ok
    glob = global_significance(max(results[j].z for j in ok), _row_max(np.clip(z_ok, 0.0, None)))
    return SpectrumScan(label, edges, counts, results, full, fit_range, seed, glob, z)


_TOY_BATCH = 25


def _toy_batches(n_toys: int) -> list[tuple[int, int]]:
    return [(b, min(_TOY_BATCH, n_toys - b * _TOY_BATCH)) for b in range(-(-n_toys // _TOY_BATCH))]


def _toy_batch(
    edges: np.ndarray,
    mu: np.ndarray,
    windows: Sequence[Window],
    config: ScanConfig,
    seed: Sequence[int],
    starts: Sequence[Mapping[int | str, Any]],
    batch: tuple[int, int],
) -> np.ndarray:
    index, size = batch
    return _toy_z(edges, mu, windows, config, size, (*seed, index), starts)


def _serial(fn: Callable[[Any], Any], items: Sequence[Any]) -> list[Any]:
    return [fn(item) for item in items]


def bump_hunt(
    histograms: Any,
    config: ScanConfig | None = None,
    n_toys: int | None = None,
    fit_range: tuple[float, float] | None = None,
) -> dict[str, SpectrumScan]:
    """Scan fixed spectra (``{label: hist}`` or one hist) over the config's windows.

    The fit range is ``fit_range``, else ``config.fit_range``, else found above the turn-on of
    the first spectrum. Toy seeds are ``(config.seed, spectrum index)``: same input, same result.
    """
    cfg = config or ScanConfig()
    spectra = _as_mapping(histograms)
    first_edges, first_counts = as_histogram(next(iter(spectra.values())))
    if fit_range is None:
        fit_range, _ = resolve_fit_range(first_edges, first_counts, cfg)
    out = {}
    for i, (label, h) in enumerate(spectra.items()):
        edges, _ = as_histogram(h, name=f"spectrum {label!r}")
        windows = plan_windows(edges, fit_range, cfg)
        out[label] = scan_spectrum(label, h, windows, fit_range, cfg, (cfg.seed, i), n_toys)
    return out


def _as_mapping(histograms: Any) -> dict[str, Any]:
    if isinstance(histograms, Mapping):
        if not histograms:
            raise ValueError("no histograms given")
        return {str(k): v for k, v in histograms.items()}
    return {"all": histograms}


# --------------------------------------------------------------------------------------------------
# The scan: one trained score per window


@dataclass(eq=False)
class WindowScan:
    """One trained window: its SR/SB counts and, per spectrum label, the cut and the result."""

    low: float
    high: float
    n_sr: int
    results: dict[str, WindowResult] = field(default_factory=dict)
    cuts: dict[str, dict[str, Any]] = field(default_factory=dict)
    counts: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    truth: dict[str, Any] | None = None
    roc: dict[str, Any] | None = field(default=None, repr=False)
    seconds: float = 0.0

    @property
    def centre(self) -> float:
        return 0.5 * (self.low + self.high)

    def z(self, label: str) -> float:
        r = self.results.get(label)
        return r.z_signed if r is not None and r.status == "ok" else float("nan")

    def to_dict(self) -> dict[str, Any]:
        return json_safe(
            {
                "low": self.low,
                "high": self.high,
                "centre": self.centre,
                "n_sr": self.n_sr,
                "truth": self.truth,
                "cuts": {
                    label: {**self.cuts.get(label, {}), **self.results[label].to_dict()}
                    for label in self.results
                },
            }
        )


@dataclass(frozen=True)
class CutSummary:
    """Best window and global significance of one spectrum label over all windows."""

    label: str
    efficiency: float
    n_windows_ok: int
    n_windows_fit_failed: int
    best_window: tuple[float, float] | None
    max_local_z: float
    global_significance: GlobalSignificance | None
    global_method: str

    def to_dict(self) -> dict[str, Any]:
        d = {k: v for k, v in self.__dict__.items() if k != "global_significance"}
        d["global"] = (
            None if self.global_significance is None else self.global_significance.to_dict()
        )
        return json_safe(d)


@dataclass(frozen=True, eq=False)
class ScanResult:
    """Everything a scan found; :meth:`to_dict` is the content of ``scan.json`` (minus the job's
    own entries: inputs, timing, files)."""

    config: ScanConfig
    edges: np.ndarray
    fit_range: tuple[float, float]
    fit_range_source: str
    windows: tuple[WindowScan, ...]
    skipped: tuple[Window, ...]
    summaries: dict[str, CutSummary]
    no_cut: SpectrumScan
    truth_window: WindowScan | None = None
    median_signal_mjj: float | None = None

    def best(self, label: str | None = None) -> tuple[str, WindowScan] | None:
        """(label, window) of the largest local Z, after ``label`` or over all anomaly cuts."""
        labels = [label] if label is not None else list(self.config.labels[1:])
        cands = [(lab, w) for lab in labels for w in self.windows if math.isfinite(w.z(lab))]
        return max(cands, key=lambda t: t[1].z(t[0])) if cands else None

    def window(self, low: float, high: float) -> WindowScan:
        for w in self.windows:
            if abs(w.low - low) < _TOL and abs(w.high - high) < _TOL:
                return w
        raise KeyError(f"no window [{low:g}, {high:g}] in the scan")

    def max_local_z(self, labels: Iterable[str] | None = None) -> float:
        """Largest local Z over windows and the given labels (default: every label)."""
        values = [w.z(lab) for lab in (labels or self.config.labels) for w in self.windows]
        finite = [v for v in values if math.isfinite(v)]
        return max(finite) if finite else float("nan")

    def to_dict(self) -> dict[str, Any]:
        best = self.best()
        return json_safe(
            {
                "config": config_to_dict(self.config),
                "edges": self.edges.tolist(),
                "fit_range": list(self.fit_range),
                "fit_range_source": self.fit_range_source,
                "cuts": list(self.config.labels),
                "windows": [w.to_dict() for w in self.windows],
                "skipped_windows": [w.to_dict() for w in self.skipped],
                "results": {k: v.to_dict() for k, v in self.summaries.items()},
                "no_cut_background_fit": None
                if self.no_cut.background is None
                else self.no_cut.background.summary(),
                "best": None
                if best is None
                else {
                    "cut": best[0],
                    "window": [best[1].low, best[1].high],
                    "local_z": best[1].z(best[0]),
                    "global": self.summaries[best[0]].to_dict()["global"],
                },
                "truth_window": None
                if self.truth_window is None
                else {
                    "window": [self.truth_window.low, self.truth_window.high],
                    "median_signal_mjj": self.median_signal_mjj,
                },
                "global_method": (
                    "no_cut: exact (one toy spectrum from the full-range background fit, scanned "
                    "over all windows). Anomaly cuts: toys of every window's post-cut spectrum "
                    "drawn independently from that window's sideband fit, max local Z over "
                    "windows per toy; windows share events, so this over-counts trials and the "
                    "global Z is conservative. Toys see the F-test, the function-choice "
                    "uncertainty and the fit_failed rule; they cannot see sculpting."
                ),
            }
        )

    def write_json(self, path: str | Path, extra: Mapping[str, Any] | None = None) -> Path:
        """``scan.json``: :meth:`to_dict` after the entries of ``extra`` (see :func:`write_json`)."""
        return write_json(path, {**(extra or {}), **self.to_dict()})

    def plot(self, output: str | Path, title: str = "") -> list[Path]:
        """Spectrum + fit of the best window per label, local Z vs mjj, SIC: PNG files."""
        from adhunt.plotting import plot_scan

        return plot_scan(self, Path(output), title or self.config.method)


@dataclass(frozen=True, eq=False)
class CutSpectrum:
    """The mjj spectrum passing one anomaly cut (threshold set on a window's SR events)."""

    label: str
    efficiency: float
    threshold: float
    passed: np.ndarray = field(repr=False)
    counts: np.ndarray = field(repr=False)
    n_sr: int = 0
    n_sr_after: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "efficiency": self.efficiency,
            "threshold": self.threshold,
            "n_sr_after": self.n_sr_after,
            "efficiency_sr": self.n_sr_after / max(self.n_sr, 1),
            "n_events_after": int(self.passed.sum()),
            "efficiency_all": float(self.passed.mean()),
        }


def cut_spectra(
    mjj: np.ndarray,
    scores: np.ndarray,
    window: tuple[float, float],
    efficiencies: Sequence[float],
    edges: Any,
) -> dict[str, CutSpectrum]:
    """Post-cut mjj spectra, one per efficiency: ``score >= t`` with ``t`` keeping that fraction
    of the window's SR events (:func:`sr_threshold`), applied to every event at every mjj."""
    mjj = np.asarray(mjj, dtype=np.float64)
    scores = np.asarray(scores, dtype=np.float64)
    sr = (mjj >= window[0]) & (mjj < window[1])
    out = {}
    for eff in efficiencies:
        threshold = sr_threshold(scores[sr], eff)
        passed = scores >= threshold
        out[cut_label(eff)] = CutSpectrum(
            cut_label(eff), float(eff), threshold, passed, mjj_counts(mjj[passed], edges),
            int(sr.sum()), int(np.sum(passed & sr)),
        )  # fmt: skip
    return out


def _window_cuts(
    window: Window,
    scores: np.ndarray,
    mjj: np.ndarray,
    edges: np.ndarray,
    config: ScanConfig,
    truth: np.ndarray | None,
) -> WindowScan:
    """Cuts, post-cut spectra and fits of one trained window."""
    from adhunt.performance import roc_sic

    scores = np.asarray(scores, dtype=np.float64)
    if scores.shape != mjj.shape:
        raise ValueError(
            f"window [{window.low:g}, {window.high:g}]: the scorer returned {scores.shape} scores "
            f"for {mjj.size} events"
        )
    if not np.all(np.isfinite(scores)):
        raise ValueError(
            f"window [{window.low:g}, {window.high:g}]: {int((~np.isfinite(scores)).sum())} "
            "NaN/inf scores"
        )
    sr = (mjj >= window.low) & (mjj < window.high)
    ws = WindowScan(window.low, window.high, int(sr.sum()))
    if truth is not None:
        ws.truth = {
            "n_signal_sr": int(np.sum(sr & (truth == 1))),
            "n_background_sr": int(np.sum(sr & (truth == 0))),
        }
        if ws.truth["n_signal_sr"] and ws.truth["n_background_sr"]:
            ws.roc = roc_sic(truth[sr], scores[sr])
            ws.truth["auc_sr"] = ws.roc["auc"]
            ws.truth["max_sic_sr"] = ws.roc["max_sic"]
    for label, cut in cut_spectra(mjj, scores, window.bounds, config.efficiencies, edges).items():
        ws.results[label] = evaluate_window(edges, cut.counts, window, config)
        ws.cuts[label] = cut.to_dict()
        if truth is not None:
            ws.cuts[label]["truth"] = {
                "n_signal_sr_after": int(np.sum(cut.passed & sr & (truth == 1))),
                "n_background_sr_after": int(np.sum(cut.passed & sr & (truth == 0))),
            }
        ws.counts[label] = cut.counts
    return ws


def _cut_window_toys(
    edges: np.ndarray, config: ScanConfig, item: tuple[int, int, Window, BackgroundFit]
) -> np.ndarray:
    """Independent toys of one window's post-cut spectrum (drawn from its sideband fit)."""
    label_index, window_index, window, fit = item
    seed = (config.seed, 1, label_index, window_index)
    return _toy_z(edges, fit.expected(), [window], config, config.n_toys, seed, [fit.starts()])[
        :, 0
    ]


def scan(
    mjj: Any,
    score_window: Callable[[tuple[float, float]], np.ndarray],
    config: ScanConfig | None = None,
    *,
    truth: Any | None = None,
    mapper: Mapper | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> ScanResult:
    """Sliding-window bump hunt: one trained score per window, cuts, fits, local and global Z.

    ``mjj``: one value per event (GeV). ``score_window((low, high))`` returns one score per event
    for a model trained on that window (k-fold honest). ``truth`` (optional, 0/1 per event) only
    adds truth counts and SIC curves to the report. ``mapper(fn, items)`` evaluates ``fn`` over
    ``items`` in order (default: here, one by one); windows and toy batches go through it.
    ``progress(stage, done, total)`` is called as windows and toys complete.
    """
    cfg = config or ScanConfig()
    m = np.asarray(mjj, dtype=np.float64).ravel()
    if m.size == 0:
        raise ValueError("no events to scan")
    bad = ~np.isfinite(m)
    if bad.any():
        raise ValueError(f"mjj has {int(bad.sum())} NaN/inf value(s) out of {m.size}")
    t = None
    if truth is not None:
        t = np.asarray(truth)
        if t.shape != m.shape:
            raise ValueError(f"truth has shape {t.shape}, mjj has {m.shape}")
    edges = np.asarray(cfg.edges, dtype=float)
    uncut = mjj_counts(m, edges)
    fit_range, source = resolve_fit_range(edges, uncut, cfg)
    planned = plan_windows(edges, fit_range, cfg, m)
    usable = [w for w in planned if w.skip_reason is None]
    skipped = tuple(w for w in planned if w.skip_reason is not None)
    for w in skipped:
        logger.info("window [%g, %g] GeV skipped: %s", w.low, w.high, w.skip_reason)
    if not usable:
        raise ValueError(
            f"no window to scan: all {len(planned)} candidate windows were skipped "
            f"({planned[0].skip_reason if planned else 'none planned'})"
        )
    logger.info(
        "scan %s: %d window(s) [%g, %g] GeV, fit range [%g, %g] GeV (%s), %d events",
        cfg.method, len(usable), usable[0].low, usable[-1].high, *fit_range, source, m.size,
    )  # fmt: skip
    run_map = mapper or _serial
    done = [0]

    windows: list[WindowScan] = []
    scored = run_map(_TimedScorer(score_window), [w.bounds for w in usable])
    for window, (scores, seconds) in zip(usable, scored, strict=True):
        ws = _window_cuts(window, scores, m, edges, cfg, t)
        ws.seconds = seconds
        windows.append(ws)
        done[0] += 1
        logger.info(
            "window [%g, %g] GeV (%d/%d): %d SR events, %.1f s; local Z %s",
            ws.low, ws.high, done[0], len(usable), ws.n_sr, seconds,
            ", ".join(f"{k} {ws.z(k):+.2f}" for k in ws.results),
        )  # fmt: skip
        if progress is not None:
            progress("windows", done[0], len(usable))

    # The uncut spectrum: exact look-elsewhere toys over the same windows.
    no_cut = scan_spectrum(
        NO_CUT, (edges, uncut), usable, fit_range, cfg, (cfg.seed, 0), mapper=mapper
    )
    for ws, res in zip(windows, no_cut.windows, strict=True):
        ws.results = {NO_CUT: res, **ws.results}
        ws.cuts = {NO_CUT: {"efficiency": 1.0, "threshold": None}, **ws.cuts}
        ws.counts = {NO_CUT: uncut, **ws.counts}
    if progress is not None:
        progress("toys", 1, len(cfg.labels))

    summaries = {NO_CUT: _summary(NO_CUT, 1.0, windows, no_cut.global_significance, "exact")}
    for index, eff in enumerate(cfg.efficiencies, start=1):
        label = cut_label(eff)
        glob = None
        ok = [(j, ws) for j, ws in enumerate(windows) if ws.results[label].status == "ok"]
        if cfg.n_toys > 0 and ok:
            items = [(index, j, usable[j], ws.results[label].background) for j, ws in ok]
            cols = list(run_map(partial(_cut_window_toys, edges, cfg), items))
            toy_max = _row_max(np.clip(np.stack(cols, axis=1), 0.0, None))
            try:
                glob = global_significance(max(ws.results[label].z for _, ws in ok), toy_max)
            except ValueError as exc:
                logger.warning("%s: no global significance (%s)", label, exc)
        summaries[label] = _summary(label, eff, windows, glob, "independent toys per window")
        if progress is not None:
            progress("toys", index + 1, len(cfg.labels))

    truth_window = median = None
    if t is not None and np.any(t == 1):
        median = float(np.median(m[t == 1]))
        truth_window = min(windows, key=lambda w: abs(w.centre - median))
    result = ScanResult(
        cfg, edges, fit_range, source, tuple(windows), skipped, summaries, no_cut,
        truth_window, median,
    )  # fmt: skip
    for label, s in summaries.items():
        logger.info(
            "%-10s best window %s  max local Z %.2f  %s",
            label, s.best_window, s.max_local_z,
            "" if s.global_significance is None else s.global_significance.statement,
        )  # fmt: skip
    return result


class _TimedScorer:
    """``score_window`` with its wall time, picklable for process pools and Dask."""

    __name__ = "scan_window"  # names the tasks on a Dask dashboard

    def __init__(self, score_window: Callable[[tuple[float, float]], np.ndarray]) -> None:
        self.score_window = score_window

    def __call__(self, bounds: tuple[float, float]) -> tuple[np.ndarray, float]:
        t0 = time.perf_counter()
        scores = np.asarray(self.score_window(bounds), dtype=np.float64)
        return scores, time.perf_counter() - t0


def _summary(
    label: str,
    efficiency: float,
    windows: Sequence[WindowScan],
    glob: GlobalSignificance | None,
    method: str,
) -> CutSummary:
    ok = [w for w in windows if math.isfinite(w.z(label))]
    best = max(ok, key=lambda w: w.z(label)) if ok else None
    return CutSummary(
        label=label,
        efficiency=efficiency,
        n_windows_ok=len(ok),
        n_windows_fit_failed=sum(w.results[label].status == "fit_failed" for w in windows),
        best_window=None if best is None else (best.low, best.high),
        max_local_z=float("nan") if best is None else best.results[label].z,
        global_significance=glob,
        global_method=method,
    )


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
    status: str  # "pass", "fail" or "untestable" (too few events to fit)
    fit_chi2_ndf: float
    fit_p_value: float
    n_windows_fit_failed: int
    max_abs_local_z: float
    ks_windows: tuple[tuple[float, float], ...]
    ks_p_values: tuple[float, ...]
    ks_p_value_bonferroni: float
    global_p_value_two_sided: float
    reasons: tuple[str, ...]

    @property
    def passed(self) -> bool:
        return self.status == "pass"

    def to_dict(self) -> dict[str, Any]:
        return json_safe({**self.__dict__, "passed": self.passed})


def _untestable_check(label: str, why: str) -> SculptingCheck:
    nan = float("nan")
    return SculptingCheck(label, "untestable", nan, nan, 0, nan, (), (), nan, nan, (why,))


@dataclass(frozen=True, eq=False)
class SculptingReport:
    config: ScanConfig
    thresholds: SculptingConfig
    fit_range: tuple[float, float]
    checks: tuple[SculptingCheck, ...]
    scans: tuple[SpectrumScan, ...] = field(default=(), repr=False)

    @property
    def passed(self) -> bool:
        """Every testable spectrum passed, and at least one was testable."""
        tested = [c for c in self.checks if c.status != "untestable"]
        return bool(tested) and all(c.passed for c in tested)

    def to_dict(self) -> dict[str, Any]:
        return json_safe(
            {
                "config": config_to_dict(self.config),
                "thresholds": config_to_dict(self.thresholds),
                "fit_range": list(self.fit_range),
                "passed": self.passed,
                "checks": [c.to_dict() for c in self.checks],
            }
        )


def check_sculpting(
    histograms: Any,
    config: ScanConfig | None = None,
    thresholds: SculptingConfig | None = None,
    fit_range: tuple[float, float] | None = None,
) -> SculptingReport:
    """Does an anomaly-score cut sculpt the background mjj spectrum? Run on SIGNAL-FREE data.

    Per spectrum it requires (1) a good background fit of the whole post-cut spectrum,
    (2) local p-values of background-only pseudo-experiments not more often small than uniform ones
    at every fixed window (one-sided KS test, Bonferroni-corrected over windows), and (3) no bump or dip beyond the look-elsewhere
    expectation in the observed scan (two-sided global p-value of max |Z|). A window whose own
    sideband fit fails counts as a failure here: on signal-free data it means the cut carved
    structure that the smooth function cannot follow.
    """
    cfg = config or ScanConfig()
    thr = thresholds or SculptingConfig()
    if cfg.n_toys < 20:
        raise ValueError(f"check_sculpting needs n_toys >= 20 for the KS test, got {cfg.n_toys}")
    scans = bump_hunt(histograms, cfg, fit_range=fit_range)
    the_range = next(iter(scans.values())).fit_range
    checks = []
    for label, s in scans.items():
        reasons: list[str] = []
        bkg = s.background
        if bkg is None:  # too few events or bins: nothing to test, which is not a pass either
            checks.append(_untestable_check(label, s.note))
            continue
        fit = bkg.nominal
        if fit.p_value < thr.min_fit_p_value or bkg.status != "ok":
            reasons.append(
                f"full-spectrum fit p-value {fit.p_value:.3g} < {thr.min_fit_p_value} "
                f"(chi2/ndf {fit.chi2_ndf:.2f}, {fit.n_params} parameters)"
            )
        n_failed = sum(w.status == "fit_failed" for w in s.windows)
        if n_failed:
            reasons.append(f"{n_failed} window sideband fit(s) failed")
        ok_idx = [j for j, w in enumerate(s.windows) if w.status == "ok"]
        ks_idx, ks_p, obs_abs, g2_p = [], [], float("nan"), float("nan")
        if not ok_idx or s.toy_z_signed is None:
            reasons.append(
                f"no window with a usable fit and toys ({s.note or 'all windows failed'})"
            )
        else:
            ks_idx = [j for j in ok_idx if s.windows[j].expected >= thr.min_expected_for_ks]
            for j in ks_idx:
                z = s.toy_z_signed[:, j]
                # One-sided: only an excess of small p-values (an anti-conservative background
                # model) is a failure; the function-choice uncertainty makes p-values slightly
                # conservative by design, which is no sculpting.
                p = stats.norm.sf(z[np.isfinite(z)])
                ks_p.append(float(stats.kstest(p, "uniform", alternative="greater").pvalue))
            obs_abs = max(abs(s.windows[j].z_signed) for j in ok_idx)
            g2 = global_significance(obs_abs, _row_max(np.abs(s.toy_z_signed[:, ok_idx])))
            g2_p = g2.p_value
            if g2.p_value < thr.min_global_p_value:
                reasons.append(
                    f"observed max |Z| = {obs_abs:.2f} is beyond the look-elsewhere expectation: "
                    f"{g2.statement}"
                )
        ks_bonf = min(1.0, min(ks_p) * len(ks_p)) if ks_p else float("nan")
        if ks_p and ks_bonf < thr.min_ks_p_value:
            w = s.windows[ks_idx[int(np.argmin(ks_p))]]
            reasons.append(
                f"toy local p-values not uniform at window [{w.low:g}, {w.high:g}] "
                f"(KS p = {min(ks_p):.3g}, Bonferroni {ks_bonf:.3g})"
            )
        checks.append(
            SculptingCheck(
                label=label,
                status="fail" if reasons else "pass",
                fit_chi2_ndf=fit.chi2_ndf,
                fit_p_value=fit.p_value,
                n_windows_fit_failed=n_failed,
                max_abs_local_z=obs_abs,
                ks_windows=tuple((s.windows[j].low, s.windows[j].high) for j in ks_idx),
                ks_p_values=tuple(ks_p),
                ks_p_value_bonferroni=ks_bonf,
                global_p_value_two_sided=g2_p,
                reasons=tuple(reasons),
            )
        )
    return SculptingReport(cfg, thr, the_range, tuple(checks), tuple(scans.values()))

"""``adhunt scan``: the sliding-window bump hunt with one anomaly-detection model per window.

For every signal-region window (400 GeV wide in 100 GeV steps by default, or explicit windows, all
snapped to :data:`adhunt.histograms.DEFAULT_MJJ_EDGES`) the chosen method is trained k-fold on that
window through the model API (``get_method(name)(features, SignalRegion, n_folds, seed,
config).fit(data, reference)``) and every event is scored by the fold model that never saw it
(``mode="kfold"``). Cuts keep a fixed fraction of the window's SR events (10%, 1%, 0.1%: the
CWoLa-hunting convention) and are applied at every mjj; the post-cut mjj spectrum is fit by the
dijet function with the window masked and the excess in the window becomes a local significance
(profile likelihood with the fit uncertainty; :mod:`adhunt.bumphunt`). The same is done for the
uncut spectrum ("no_cut") for comparison.

Global significance per cut: every window has its own post-cut spectrum (its own model), so there
is no single spectrum to draw pseudo-experiments from. Each window's toys are drawn independently
from that window's background (sideband) fit, scanned with the same code, and the maximum local Z
over windows is taken per toy. Neighbouring windows share most events, so in reality their local
Z values are strongly correlated; independent draws *over-count* the trials, the toy maximum is
stochastically larger than the true one and the global Z reported is conservative (too small).
The uncut spectrum is common to all windows and gets the exact treatment of
:func:`adhunt.bumphunt.bump_hunt` (one toy spectrum per pseudo-experiment, scanned over all windows).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer

from adhunt.schema import RESONANT_VARIABLE, STANDARD_FEATURES

logger = logging.getLogger(__name__)

NO_CUT = "no_cut"
#: Top-level keys of ``scan.json`` (documented contract, checked by the tests).
SCAN_JSON_KEYS = (
    "command",
    "adhunt_version",
    "config",
    "method_config",
    "seeds",
    "input",
    "edges",
    "fit_range",
    "cuts",
    "windows",
    "skipped_windows",
    "results",
    "best",
    "truth_window",
    "sic",
    "global_method",
    "plots",
    "models",
    "timing",
)
_TOL = 1e-6


def cut_label(efficiency: float) -> str:
    """Name of the cut keeping ``efficiency`` of the SR events (``eff_0.01``); used in file names."""
    return f"eff_{efficiency:g}"


def _pair(value: Any, name: str) -> tuple[float, float] | None:
    """``"LO:HI"`` or a 2-sequence -> (lo, hi) floats with lo < hi; None stays None."""
    if value is None:
        return None
    if isinstance(value, str):
        parts = value.split(":")
    else:
        parts = list(value)
    if len(parts) != 2:
        raise ValueError(f"ScanJobConfig.{name}: expected LOW:HIGH (GeV), got {value!r}")
    try:
        lo, hi = float(parts[0]), float(parts[1])
    except (TypeError, ValueError):
        raise ValueError(
            f"ScanJobConfig.{name}: LOW and HIGH must be numbers, got {value!r}"
        ) from None
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise ValueError(f"ScanJobConfig.{name}: need finite LOW < HIGH, got {value!r}")
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
class ScanJobConfig:
    """Everything that defines a scan; loadable from YAML/TOML and echoed into ``scan.json``.

    Windows: ``windows`` lists explicit SRs (``[[3300, 3700], ...]`` or ``"3300:3700"`` strings);
    otherwise windows of ``window_width`` in steps of ``window_step`` over ``scan_range`` (None: the
    fit range clipped to the data). Auto windows with fewer than ``min_sr_events`` SR events or
    without fitted sideband bins on both sides are skipped (and listed); explicit ones raise.
    ``sideband_width`` limits the *training* sidebands (None: all other events); the background
    fit always uses every bin of ``fit_range`` (None: ``DEFAULT_FIT_RANGE``) outside the window.
    ``method_config``: a YAML/TOML path or a dict of the method's config; ``backend`` overrides
    its classifier back-end. ``inject`` events from ``signal_dir`` are added with seed ``seed``.
    """

    method: str = "cwola"
    features: tuple[str, ...] = STANDARD_FEATURES
    window_width: float = 400.0
    window_step: float = 100.0
    scan_range: tuple[float, float] | None = None
    windows: tuple[tuple[float, float], ...] = ()
    sideband_width: float | None = None
    min_sr_events: int = 100
    folds: int = 5
    seed: int = 0
    backend: str | None = None
    method_config: str | dict[str, Any] | None = None
    efficiencies: tuple[float, ...] = (0.1, 0.01, 0.001)
    n_toys: int = 100
    fit_range: tuple[float, float] | None = None
    n_params: int = 4
    min_fit_events: float = 50.0
    datasets: tuple[str, ...] | None = None
    inject: int | None = None
    signal_dir: str | None = None
    signal_datasets: tuple[str, ...] | None = None
    reference_dir: str | None = None
    reference_datasets: tuple[str, ...] | None = None
    save_models: bool = False
    plots: bool = True

    def __post_init__(self) -> None:
        from adhunt.models.registry import METHODS

        def put(name: str, value: Any) -> None:
            object.__setattr__(self, name, value)

        if self.method not in METHODS:
            raise ValueError(f"unknown method {self.method!r}; available: {', '.join(METHODS)}")
        feats = _names(self.features)
        if not feats:
            raise ValueError("ScanJobConfig.features: give at least one input feature")
        put("features", feats)
        for name in ("datasets", "signal_datasets", "reference_datasets"):
            put(name, _names(getattr(self, name)))
        for name in ("window_width", "window_step"):
            value = float(getattr(self, name))
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"ScanJobConfig.{name} must be > 0, got {getattr(self, name)!r}")
            put(name, value)
        put("scan_range", _pair(self.scan_range, "scan_range"))
        put("fit_range", _pair(self.fit_range, "fit_range"))
        windows = self.windows
        if isinstance(windows, str):
            windows = [w for w in windows.split(",") if w.strip()]
        put("windows", tuple(_pair(w, "windows") for w in windows or ()))
        if self.sideband_width is not None:
            sbw = float(self.sideband_width)
            if not (math.isfinite(sbw) and sbw > 0):
                raise ValueError(
                    f"ScanJobConfig.sideband_width must be > 0 or None, got {self.sideband_width!r}"
                )
            put("sideband_width", sbw)
        effs = self.efficiencies
        if isinstance(effs, str):
            effs = [e for e in effs.split(",") if e.strip()]
        try:
            effs = tuple(float(e) for e in (effs if isinstance(effs, Sequence) else [effs]))
        except (TypeError, ValueError):
            raise ValueError(
                f"ScanJobConfig.efficiencies must be numbers, got {self.efficiencies!r}"
            ) from None
        if not effs:
            raise ValueError("ScanJobConfig.efficiencies: give at least one efficiency")
        bad = [e for e in effs if not (0.0 < e <= 1.0)]
        if bad:
            raise ValueError(
                f"ScanJobConfig.efficiencies must lie in (0, 1] (fraction of SR events kept), got {bad}"
            )
        if len({cut_label(e) for e in effs}) != len(effs):
            raise ValueError(f"ScanJobConfig.efficiencies has duplicates: {effs}")
        put("efficiencies", effs)
        for name, low in (("folds", 2), ("min_sr_events", 1), ("n_toys", 0), ("seed", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or int(value) != value or value < low:
                raise ValueError(f"ScanJobConfig.{name} must be an integer >= {low}, got {value!r}")
            put(name, int(value))
        if self.n_params not in (3, 4):
            raise ValueError(f"ScanJobConfig.n_params must be 3 or 4, got {self.n_params!r}")
        if self.backend is not None and self.backend not in ("hgb", "mlp"):
            raise ValueError(
                f"ScanJobConfig.backend must be hgb, mlp or None, got {self.backend!r}"
            )
        if self.inject is not None:
            if isinstance(self.inject, bool) or int(self.inject) != self.inject or self.inject < 0:
                raise ValueError(
                    f"ScanJobConfig.inject must be an integer >= 0, got {self.inject!r}"
                )
            put("inject", int(self.inject))
        if (self.inject is None) != (self.signal_dir is None):
            raise ValueError("ScanJobConfig: inject (N) and signal_dir go together")
        for name in ("signal_dir", "reference_dir"):
            value = getattr(self, name)
            if value is not None:
                put(name, str(value))
        if self.method_config is not None and not isinstance(self.method_config, str | Path | dict):
            raise ValueError(
                "ScanJobConfig.method_config must be a config file path or a mapping, "
                f"got {type(self.method_config).__name__}"
            )
        if isinstance(self.method_config, Path):
            put("method_config", str(self.method_config))


# --------------------------------------------------------------------------------------------------
# Results


@dataclass(eq=False)
class WindowScan:
    """One trained window: counts, per-cut results (JSON-ready) and in-memory fits for plots."""

    low: float
    high: float
    n_sr: int
    n_sb: int
    seconds: float = 0.0
    cuts: dict[str, dict[str, Any]] = field(default_factory=dict)
    fits: dict[str, Any] = field(default_factory=dict, repr=False)  # label -> WindowResult
    counts: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    truth: dict[str, Any] | None = None
    roc: dict[str, Any] | None = field(default=None, repr=False)  # full roc_sic result (SR)

    @property
    def centre(self) -> float:
        return 0.5 * (self.low + self.high)

    @property
    def key(self) -> str:
        return f"{self.low:g}_{self.high:g}"

    def z(self, label: str) -> float:
        entry = self.cuts.get(label, {})
        value = entry.get("z_signed") if entry.get("status") == "ok" else None
        return float("nan") if value is None else float(value)


@dataclass(frozen=True, eq=False)
class ScanJobResult:
    """What :func:`run_scan` produced: the ``scan.json`` content, the per-window details, files."""

    output: Path
    report: dict[str, Any]
    windows: tuple[WindowScan, ...]
    json_path: Path
    plots: tuple[Path, ...]
    model_dirs: tuple[Path, ...] = ()

    def best_window(self, cut: str) -> tuple[float, float] | None:
        """(low, high) of the window with the largest local Z after ``cut``."""
        best = self.report["results"][cut]["best_window"]
        return None if best is None else (best[0], best[1])

    def local_z(self, cut: str, window: tuple[float, float]) -> float:
        for w in self.windows:
            if abs(w.low - window[0]) < _TOL and abs(w.high - window[1]) < _TOL:
                return w.z(cut)
        raise KeyError(f"no window {window} in the scan")

    def global_significance(self, cut: str) -> dict[str, Any] | None:
        return self.report["results"][cut]["global"]


# --------------------------------------------------------------------------------------------------
# Helpers shared with ``adhunt sculpting``


def mjj_histogram(mjj: np.ndarray) -> Any:
    """``hist.Hist`` of mjj on :data:`DEFAULT_MJJ_EDGES` (events outside go to the flow bins)."""
    import hist

    from adhunt.histograms import DEFAULT_MJJ_EDGES

    h = hist.Hist(hist.axis.Variable(DEFAULT_MJJ_EDGES, name="mjj", label="mjj [GeV]"))
    h.fill(mjj=np.asarray(mjj, dtype=np.float64))
    return h


def sr_threshold(scores_sr: np.ndarray, efficiency: float) -> tuple[float, int]:
    """Score threshold keeping ``efficiency`` of the SR events (cut ``score >= threshold``).

    The k-th highest SR score with k = max(1, round(efficiency * n_SR)); with ties more events may
    pass, so callers record the efficiency actually reached. Returns (threshold, k).
    """
    s = np.sort(np.asarray(scores_sr, dtype=np.float64))[::-1]
    if s.size == 0:
        raise ValueError("no signal-region events to set a score threshold on")
    k = min(s.size, max(1, round(efficiency * s.size)))
    return float(s[k - 1]), k


def snap(value: float, edges: np.ndarray) -> float:
    """The bin edge nearest to ``value``."""
    return float(edges[int(np.argmin(np.abs(edges - value)))])


def sliding_windows(lo: float, hi: float, width: float, step: float) -> list[tuple[float, float]]:
    """Windows [lo + k step, lo + k step + width] that fit inside [lo, hi]."""
    n = math.floor((hi - lo - width) / step + 1e-9) + 1
    return [(lo + k * step, lo + k * step + width) for k in range(max(n, 0))]


def resolve_fit_range(fit_range: tuple[float, float] | None) -> tuple[float, float]:
    """``fit_range`` (default :data:`DEFAULT_FIT_RANGE`) snapped to the mjj bin edges."""
    from adhunt.histograms import DEFAULT_FIT_RANGE, DEFAULT_MJJ_EDGES

    edges = np.asarray(DEFAULT_MJJ_EDGES)
    lo, hi = fit_range or DEFAULT_FIT_RANGE
    if hi <= edges[0] or lo >= edges[-1]:
        raise ValueError(
            f"fit range [{lo:g}, {hi:g}] GeV does not overlap the mjj binning [{edges[0]:g}, {edges[-1]:g}] GeV"
        )
    out = (snap(max(lo, edges[0]), edges), snap(min(hi, edges[-1]), edges))
    if not out[0] < out[1]:
        raise ValueError(f"fit range [{lo:g}, {hi:g}] GeV is narrower than one mjj bin")
    return out


def load_method_config(cls: type, method_config: Any, backend: str | None) -> Any:
    """The method's config from a path, a mapping or its defaults, with ``backend`` applied."""
    from adhunt.config import config_from_dict, load_config
    from adhunt.jobs.train import _with_backend

    if method_config is None:
        config = cls.config_class()
    elif isinstance(method_config, Mapping):
        config = config_from_dict(cls.config_class, dict(method_config))
    else:
        config = load_config(cls.config_class, method_config)
    if backend is not None:
        config = _with_backend(config, backend)
    return config


def prepare_output(output: Path, overwrite: bool) -> Path:
    output = Path(output)
    if output.exists() and not output.is_dir():
        raise ValueError(f"output {output} exists and is not a directory")
    if output.is_dir() and any(output.iterdir()) and not overwrite:
        raise ValueError(f"output {output} exists and is not empty (use --overwrite to replace it)")
    output.mkdir(parents=True, exist_ok=True)
    return output


def write_json(path: Path, data: dict[str, Any]) -> Path:
    """Strict JSON (NaN -> null), written atomically."""
    from adhunt.models.artifact import json_safe

    text = json.dumps(json_safe(data), indent=2, allow_nan=False) + "\n"
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
    return path


def has_truth(data: Any) -> bool:
    """Truth labels usable for ROC/SIC: the column exists and every event is 0 or 1."""
    return "truth_label" in data.columns and bool(data["truth_label"].isin((0, 1)).all())


# --------------------------------------------------------------------------------------------------
# Input


def _load_inputs(
    features: Any, cfg: ScanJobConfig, reference: Any | None
) -> tuple[Any, Any | None, dict[str, Any]]:
    """Data table (with injection), reference table and the provenance record."""
    import pandas as pd

    from adhunt.injection import inject_signal
    from adhunt.jobs.train import read_table

    info: dict[str, Any] = {}
    if isinstance(features, pd.DataFrame):
        data = features
        if cfg.datasets is not None:
            if "dataset" not in data.columns:
                raise ValueError("datasets given but the feature table has no 'dataset' column")
            missing = sorted(set(cfg.datasets) - set(data["dataset"]))
            if missing:
                raise ValueError(f"feature table has no dataset(s) {missing}")
            data = data[data["dataset"].isin(cfg.datasets)].reset_index(drop=True)
        info["features"] = "<DataFrame>"
    else:
        data = read_table(
            Path(features), list(cfg.datasets) if cfg.datasets else None, "--features"
        )
        info["features"] = str(features)
    if "dataset" in data.columns:
        info["datasets"] = sorted(set(map(str, data["dataset"])))
    if cfg.inject is not None:
        signal = read_table(
            Path(cfg.signal_dir),
            list(cfg.signal_datasets) if cfg.signal_datasets else None,
            "--signal",
        )
        data = inject_signal(data, signal, cfg.inject, cfg.seed)
        info["injection"] = {
            "signal_dir": cfg.signal_dir,
            "n_injected": cfg.inject,
            "seed": cfg.seed,
        }
    if reference is None and cfg.reference_dir is not None:
        reference = read_table(
            Path(cfg.reference_dir),
            list(cfg.reference_datasets) if cfg.reference_datasets else None,
            "--reference",
        )
        info["reference_dir"] = cfg.reference_dir
    if reference is not None:
        info["n_reference"] = len(reference)

    needed = [*cfg.features, RESONANT_VARIABLE, "run", "event"]
    missing = [c for c in needed if c not in data.columns]
    if missing:
        raise ValueError(
            f"feature table lacks column(s) {missing} needed by the scan "
            f"(features {list(cfg.features)}); it has {list(data.columns)}"
        )
    if len(data) == 0:
        raise ValueError("feature table has no events")
    mjj = data[RESONANT_VARIABLE].to_numpy(dtype=np.float64)
    if not np.all(np.isfinite(mjj)):
        raise ValueError(
            f"column {RESONANT_VARIABLE!r} has {int((~np.isfinite(mjj)).sum())} NaN/inf value(s)"
        )
    info["n_events"] = len(data)
    info["mjj_range"] = [float(mjj.min()), float(mjj.max())]
    if has_truth(data):
        info["truth"] = {
            "n_signal": int((data["truth_label"] == 1).sum()),
            "n_background": int((data["truth_label"] == 0).sum()),
        }
    return data, reference, info


def _plan_windows(
    cfg: ScanJobConfig, mjj: np.ndarray, fit_range: tuple[float, float]
) -> tuple[list[tuple[float, float]], list[dict[str, Any]]]:
    """Windows to train (snapped) and the auto windows skipped with their reason.

    Explicit windows that cannot be scanned raise ``ValueError`` naming the window.
    """
    from adhunt.bumphunt import ScanConfig, make_windows
    from adhunt.histograms import DEFAULT_MJJ_EDGES
    from adhunt.regions import SignalRegion

    edges = np.asarray(DEFAULT_MJJ_EDGES, dtype=float)
    d_lo, d_hi = float(mjj.min()), float(mjj.max())
    data_text = f"the data range [{d_lo:.0f}, {d_hi:.0f}] GeV (mjj of {mjj.size} events)"
    explicit = bool(cfg.windows)
    if explicit:
        raw = list(cfg.windows)
        for a, b in raw:
            if a < d_lo - _TOL or b > d_hi + _TOL:
                raise ValueError(f"window [{a:g}, {b:g}] GeV lies outside {data_text}")
            if a < fit_range[0] - _TOL or b > fit_range[1] + _TOL:
                raise ValueError(
                    f"window [{a:g}, {b:g}] GeV lies outside the fit range [{fit_range[0]:g}, {fit_range[1]:g}] GeV"
                )
    else:
        if cfg.scan_range is not None:
            lo, hi = cfg.scan_range
            if lo < d_lo - _TOL or hi > d_hi + _TOL:
                logger.info("scan range [%g, %g] GeV clipped to %s", lo, hi, data_text)
        else:
            lo, hi = fit_range
        lo, hi = max(lo, d_lo, fit_range[0]), min(hi, d_hi, fit_range[1])
        lo = float(edges[np.searchsorted(edges, lo - _TOL)]) if lo <= edges[-1] else lo
        hi = float(edges[np.searchsorted(edges, hi + _TOL) - 1]) if hi >= edges[0] else hi
        raw = sliding_windows(lo, hi, cfg.window_width, cfg.window_step)
        if not raw:
            raise ValueError(
                f"no {cfg.window_width:g} GeV window fits into the scan range [{lo:g}, {hi:g}] GeV "
                f"(requested {cfg.scan_range or fit_range}, clipped to the fit range and {data_text})"
            )
    scan_cfg = ScanConfig(windows=tuple(raw), fit_range=fit_range, n_params=cfg.n_params)
    planned: list[tuple[float, float]] = []
    skipped: list[dict[str, Any]] = []
    for w in make_windows(edges, scan_cfg):
        region = SignalRegion(w.low, w.high, cfg.sideband_width)
        n_sr = int(region.in_sr(mjj).sum())
        n_sb = int(region.in_sb(mjj).sum())
        reason = w.skip_reason
        if reason is None and (n_sr == 0 or n_sb == 0):
            reason = f"no events in the {'signal region' if n_sr == 0 else 'sideband'} ({n_sr} SR, {n_sb} SB)"
        if explicit and reason is not None:
            raise ValueError(f"window [{w.low:g}, {w.high:g}] GeV cannot be scanned: {reason}")
        if reason is None and not explicit and n_sr < cfg.min_sr_events:
            reason = f"{n_sr} SR events < min_sr_events = {cfg.min_sr_events}"
        if reason is not None:
            skipped.append(
                {"low": w.low, "high": w.high, "n_sr": n_sr, "n_sb": n_sb, "reason": reason}
            )
            logger.info("window [%g, %g] GeV skipped: %s", w.low, w.high, reason)
            continue
        planned.append((w.low, w.high))
    if not planned:
        raise ValueError(
            f"no window to scan: all {len(skipped)} candidate windows were skipped "
            f"({skipped[0]['reason'] if skipped else 'none generated'})"
        )
    return planned, skipped


# --------------------------------------------------------------------------------------------------
# Per-window fits


def _fit_cut(
    label: str,
    h: Any,
    window: tuple[float, float],
    fit_range: tuple[float, float],
    cfg: ScanJobConfig,
) -> Any:
    """Sideband fit + local significance of one post-cut spectrum in one window (a WindowResult)."""
    from adhunt.bumphunt import ScanConfig, WindowResult, bump_hunt
    from adhunt.fitting import FitError

    scan_cfg = ScanConfig(
        windows=(window,),
        fit_range=fit_range,
        n_params=cfg.n_params,
        min_events=cfg.min_fit_events,
        n_toys=0,
        seed=cfg.seed,
    )
    try:
        return bump_hunt({label: h}, scan_cfg, n_toys=0).cuts[0].windows[0]
    except (FitError, ValueError) as exc:
        return WindowResult(window[0], window[1], "skipped", str(exc))


def _result_entry(res: Any) -> dict[str, Any]:
    keys = (
        "status", "reason", "observed", "expected", "expected_error", "z", "z_signed", "p_value",
        "fit_chi2_ndf", "fit_ndf", "fit_p_value", "fit_params",
    )  # fmt: skip
    d = res.to_dict()
    return {k: d.get(k) for k in keys}


def _scan_window(
    window: tuple[float, float],
    data: Any,
    reference: Any | None,
    cls: type,
    method_config: Any,
    cfg: ScanJobConfig,
    fit_range: tuple[float, float],
    truth: np.ndarray | None,
) -> tuple[WindowScan, Any]:
    """Train, score k-fold, cut, histogram and fit one window; returns (WindowScan, model)."""
    from adhunt.performance import roc_sic
    from adhunt.regions import SignalRegion

    t0 = time.perf_counter()
    region = SignalRegion(window[0], window[1], cfg.sideband_width)
    mjj = data[RESONANT_VARIABLE].to_numpy(dtype=np.float64)
    sr = region.in_sr(mjj)
    ws = WindowScan(window[0], window[1], int(sr.sum()), int(region.in_sb(mjj).sum()))
    model = cls(list(cfg.features), region, n_folds=cfg.folds, seed=cfg.seed, config=method_config)
    model.fit(data, reference)
    scores = model.score(data, mode="kfold")
    if truth is not None:
        ws.truth = {
            "n_signal_sr": int(np.sum(sr & (truth == 1))),
            "n_background_sr": int(np.sum(sr & (truth == 0))),
        }
        if ws.truth["n_signal_sr"] and ws.truth["n_background_sr"]:
            ws.roc = roc_sic(truth[sr], scores[sr])
            ws.truth["auc_sr"] = ws.roc["auc"]
            ws.truth["max_sic_sr"] = ws.roc["max_sic"]

    selections: list[tuple[str, float | None, np.ndarray]] = []
    for eff in cfg.efficiencies:
        threshold, _ = sr_threshold(scores[sr], eff)
        selections.append((cut_label(eff), threshold, scores >= threshold))
    for label, threshold, passed in selections:
        h = mjj_histogram(mjj[passed])
        res = _fit_cut(label, h, window, fit_range, cfg)
        n_after = int(np.sum(passed & sr))
        entry = _result_entry(res)
        entry.update(
            threshold=threshold,
            n_sr_before=ws.n_sr,
            n_sr_after=n_after,
            efficiency_sr=n_after / ws.n_sr,
            n_events_after=int(passed.sum()),
            efficiency_all=float(passed.mean()),
        )
        if truth is not None:
            entry["truth"] = {
                "n_signal_sr_before": ws.truth["n_signal_sr"],
                "n_background_sr_before": ws.truth["n_background_sr"],
                "n_signal_sr_after": int(np.sum(passed & sr & (truth == 1))),
                "n_background_sr_after": int(np.sum(passed & sr & (truth == 0))),
            }
        entry["counts"] = np.asarray(h.values(), dtype=float)
        ws.cuts[label] = entry
        ws.fits[label] = res
        ws.counts[label] = entry["counts"]
    ws.seconds = time.perf_counter() - t0
    return ws, model


def _no_cut(
    windows: list[WindowScan],
    data: Any,
    fit_range: tuple[float, float],
    cfg: ScanJobConfig,
    truth: np.ndarray | None,
) -> dict[str, Any] | None:
    """Uncut spectrum scanned over the trained windows (exact look-elsewhere toys); global info."""
    from adhunt.bumphunt import ScanConfig, WindowResult, bump_hunt
    from adhunt.fitting import FitError

    mjj = data[RESONANT_VARIABLE].to_numpy(dtype=np.float64)
    h = mjj_histogram(mjj)
    scan_cfg = ScanConfig(
        windows=tuple((w.low, w.high) for w in windows),
        fit_range=fit_range,
        n_params=cfg.n_params,
        min_events=cfg.min_fit_events,
        n_toys=cfg.n_toys,
        seed=cfg.seed,
    )
    glob = None
    try:
        cut = bump_hunt({NO_CUT: h}, scan_cfg).cuts[0]
        results = list(cut.windows)
        glob = cut.global_significance
    except (FitError, ValueError) as exc:
        logger.warning("uncut spectrum cannot be fit: %s", exc)
        results = [WindowResult(w.low, w.high, "skipped", str(exc)) for w in windows]
    counts = np.asarray(h.values(), dtype=float)
    for ws, res in zip(windows, results, strict=True):
        entry = _result_entry(res)
        sr = (mjj >= ws.low) & (mjj < ws.high)
        entry.update(
            threshold=None,
            n_sr_before=ws.n_sr,
            n_sr_after=ws.n_sr,
            efficiency_sr=1.0,
            n_events_after=len(mjj),
            efficiency_all=1.0,
        )
        if truth is not None:
            s, b = int(np.sum(sr & (truth == 1))), int(np.sum(sr & (truth == 0)))
            entry["truth"] = {
                "n_signal_sr_before": s,
                "n_background_sr_before": b,
                "n_signal_sr_after": s,
                "n_background_sr_after": b,
            }
        entry["counts"] = counts
        ws.cuts = {NO_CUT: entry, **ws.cuts}
        ws.fits[NO_CUT] = res
        ws.counts[NO_CUT] = counts
    return None if glob is None else glob.to_dict()


def _global_anomaly_cut(
    index: int,
    label: str,
    windows: list[WindowScan],
    fit_range: tuple[float, float],
    cfg: ScanJobConfig,
) -> dict[str, Any] | None:
    """Max local Z over windows in background-only toys, each window's toys drawn independently
    from its own sideband fit (conservative: see the module docstring)."""
    from adhunt.bumphunt import ScanConfig, background_toys, make_windows, scan_toys
    from adhunt.histograms import DEFAULT_MJJ_EDGES
    from adhunt.significance import global_significance

    edges = np.asarray(DEFAULT_MJJ_EDGES, dtype=float)
    ok = [(j, w) for j, w in enumerate(windows) if w.cuts[label]["status"] == "ok"]
    if cfg.n_toys == 0 or not ok:
        return None
    z = np.full((cfg.n_toys, len(ok)), np.nan)
    for col, (j, w) in enumerate(ok):
        res = w.fits[label]
        scan_cfg = ScanConfig(
            windows=((w.low, w.high),),
            fit_range=fit_range,
            n_params=cfg.n_params,
            min_events=cfg.min_fit_events,
            n_toys=cfg.n_toys,
            seed=cfg.seed,
        )
        seed = np.random.SeedSequence([cfg.seed, 1, index, j])
        toys = background_toys(res.fit, cfg.n_toys, seed)
        z[:, col] = scan_toys(toys, edges, make_windows(edges, scan_cfg), [res], scan_cfg)[:, 0]
    zc = np.clip(z, 0.0, None)
    finite = np.isfinite(zc)
    toy_max = np.where(finite.any(axis=1), np.where(finite, zc, -np.inf).max(axis=1), np.nan)
    observed = max(w.cuts[label]["z"] for _, w in ok)
    try:
        g = global_significance(observed, toy_max)
    except ValueError as exc:
        logger.warning("cut %s: no global significance (%s)", label, exc)
        return None
    out = g.to_dict()
    out["toy_seed"] = f"SeedSequence([{cfg.seed}, 1, {index}, window index])"
    return out


def _best(windows: list[WindowScan], label: str) -> WindowScan | None:
    ok = [w for w in windows if np.isfinite(w.z(label))]
    return max(ok, key=lambda w: w.z(label)) if ok else None


# --------------------------------------------------------------------------------------------------
# Library entry


def run_scan(
    features: Any,
    output: str | Path,
    method: str | None = None,
    config: ScanJobConfig | None = None,
    *,
    reference: Any | None = None,
    overwrite: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> ScanJobResult:
    """Sliding-window bump hunt with per-window k-fold training; writes ``output/scan.json`` + plots.

    ``features``: a feature directory (``adhunt features``) or a DataFrame with the feature
    columns. ``method`` overrides ``config.method``. ``reference``: a true-background table for
    methods that need one (else ``config.reference_dir``). ``progress(done, total)`` is called after
    every window. Global Z per anomaly cut is conservative (independent toys per window; module
    docstring). Same inputs and seeds give the same ``scan.json`` (apart from ``timing``).
    """
    import adhunt
    from adhunt.config import config_to_dict
    from adhunt.histograms import DEFAULT_MJJ_EDGES
    from adhunt.models.registry import get_method

    t_start = time.perf_counter()
    cfg = config or ScanJobConfig()
    if method is not None and method != cfg.method:
        cfg = dataclasses.replace(cfg, method=method)
    cls = get_method(cfg.method)
    method_config = load_method_config(cls, cfg.method_config, cfg.backend)
    if cls.needs_reference and reference is None and cfg.reference_dir is None:
        raise ValueError(f"method {cfg.method!r} needs a reference (true background) sample")
    if not cls.needs_reference and (reference is not None or cfg.reference_dir is not None):
        raise ValueError(f"method {cfg.method!r} does not use a reference sample")
    fit_range = resolve_fit_range(cfg.fit_range)
    data, reference, info = _load_inputs(features, cfg, reference)
    mjj = data[RESONANT_VARIABLE].to_numpy(dtype=np.float64)
    planned, skipped = _plan_windows(cfg, mjj, fit_range)
    if cls.uses_truth and not has_truth(data):
        raise ValueError(f"method {cfg.method!r} needs truth_label 0/1 on every event")
    output = prepare_output(Path(output), overwrite)
    truth = data["truth_label"].to_numpy().astype(np.int64) if has_truth(data) else None
    logger.info(
        "scan with %s: %d window(s) [%g, %g] GeV, %d folds, cuts %s, %d events",
        cfg.method, len(planned), planned[0][0], planned[-1][1], cfg.folds,
        ",".join(cut_label(e) for e in cfg.efficiencies), len(data),
    )  # fmt: skip

    windows: list[WindowScan] = []
    model_dirs: list[Path] = []
    for i, window in enumerate(planned):
        ws, model = _scan_window(window, data, reference, cls, method_config, cfg, fit_range, truth)
        windows.append(ws)
        if cfg.save_models:
            model_dirs.append(
                model.save(
                    output / "models" / ws.key,
                    extra={
                        "provenance": {
                            "command": "scan",
                            **info,
                            "config": config_to_dict(method_config),
                        }
                    },
                )
            )
        logger.info(
            "window [%g, %g] GeV (%d/%d): %d SR, %d SB events, %.1f s; local Z %s",
            ws.low, ws.high, i + 1, len(planned), ws.n_sr, ws.n_sb, ws.seconds,
            ", ".join(f"{k} {ws.z(k):.2f}" for k in ws.cuts),
        )  # fmt: skip
        if progress is not None:
            progress(i + 1, len(planned))

    labels = [NO_CUT, *(cut_label(e) for e in cfg.efficiencies)]
    results: dict[str, Any] = {}
    t_toys = time.perf_counter()
    no_cut_global = _no_cut(windows, data, fit_range, cfg, truth)
    for index, label in enumerate(labels):
        glob = (
            no_cut_global
            if label == NO_CUT
            else _global_anomaly_cut(index, label, windows, fit_range, cfg)
        )
        best = _best(windows, label)
        results[label] = {
            "efficiency": 1.0 if label == NO_CUT else cfg.efficiencies[index - 1],
            "n_windows_ok": sum(np.isfinite(w.z(label)) for w in windows),
            "best_window": None if best is None else [best.low, best.high],
            "max_local_z": None if best is None else best.cuts[label]["z"],
            "best": None
            if best is None
            else {k: v for k, v in best.cuts[label].items() if k != "counts"},
            "global": glob,
            "global_method": "exact: one toy spectrum scanned over all windows"
            if label == NO_CUT
            else "independent toys per window (over-counts trials: conservative)",
        }
        if glob is not None:
            logger.info(
                "%s: best window %s, %s", label, results[label]["best_window"], glob["statement"]
            )
    t_toys = time.perf_counter() - t_toys

    anomaly = [(lab, _best(windows, lab)) for lab in labels[1:]]
    anomaly = [(lab, w) for lab, w in anomaly if w is not None]
    best_overall = max(anomaly, key=lambda t: t[1].z(t[0])) if anomaly else None
    truth_window = None
    if truth is not None and np.any(truth == 1):
        centre = float(np.median(mjj[truth == 1]))
        truth_window = min(windows, key=lambda w: abs(w.centre - centre))
    report: dict[str, Any] = {
        "command": "scan",
        "adhunt_version": adhunt.__version__,
        "config": config_to_dict(cfg),
        "method_config": config_to_dict(method_config),
        "seeds": {
            "training": cfg.seed,
            "injection": cfg.seed if cfg.inject is not None else None,
            "toys_no_cut": [cfg.seed, 0],
            "toys_cut": "SeedSequence([seed, 1, cut index, window index])",
        },
        "input": info,
        "edges": list(DEFAULT_MJJ_EDGES),
        "fit_range": list(fit_range),
        "cuts": labels,
        "windows": [
            {
                "low": w.low,
                "high": w.high,
                "centre": w.centre,
                "n_sr": w.n_sr,
                "n_sb": w.n_sb,
                "truth": w.truth,
                "cuts": w.cuts,
            }
            for w in windows
        ],
        "skipped_windows": skipped,
        "results": results,
        "best": None
        if best_overall is None
        else {
            "cut": best_overall[0],
            "window": [best_overall[1].low, best_overall[1].high],
            "local_z": best_overall[1].cuts[best_overall[0]]["z"],
            "global": results[best_overall[0]]["global"],
        },
        "truth_window": None
        if truth_window is None
        else {
            "window": [truth_window.low, truth_window.high],
            "median_signal_mjj": float(np.median(mjj[truth == 1])),
        },
        "sic": None,
        "global_method": (
            "Per anomaly cut: background-only toys of every window's post-cut spectrum, drawn "
            "independently from that window's sideband fit, max local Z over windows per toy. "
            "Windows share events, so independent draws over-count trials: the global Z is "
            "conservative. no_cut: exact (one toy spectrum scanned over all windows)."
        ),
        "plots": [],
        "models": [str(p) for p in model_dirs],
        "timing": {},
    }

    plots: list[Path] = []
    if truth is not None:
        report["sic"] = _sic(windows, best_overall, truth_window)
    if cfg.plots:
        plots = _plots(output, windows, results, labels, best_overall, truth_window, cfg)
    report["plots"] = [p.name for p in plots]
    report["timing"] = {
        "total_s": time.perf_counter() - t_start,
        "training_s": sum(w.seconds for w in windows),
        "windows_s": [w.seconds for w in windows],
        "toys_s": t_toys,
    }
    json_path = write_json(output / "scan.json", report)
    logger.info("wrote %s", json_path)
    report = json.loads(json_path.read_text())  # the in-memory report is exactly the file's
    return ScanJobResult(output, report, tuple(windows), json_path, tuple(plots), tuple(model_dirs))


def _sic(
    windows: list[WindowScan], best: tuple[str, WindowScan] | None, truth_window: WindowScan | None
) -> dict[str, Any] | None:
    from adhunt.performance import curve_for_json

    out: dict[str, Any] = {}
    for name, w in (("best_window", best[1] if best else None), ("truth_window", truth_window)):
        if w is not None and w.roc is not None:
            entry = curve_for_json(w.roc, max_points=100)
            entry["window"] = [w.low, w.high]
            out[name] = entry
    return out or None


def _plots(
    output: Path,
    windows: list[WindowScan],
    results: dict[str, Any],
    labels: list[str],
    best_overall: tuple[str, WindowScan] | None,
    truth_window: WindowScan | None,
    cfg: ScanJobConfig,
) -> list[Path]:
    from adhunt.histograms import DEFAULT_MJJ_EDGES
    from adhunt.performance import plot_sic
    from adhunt.plotting import plot_fit, plot_local_significance_curves

    edges = np.asarray(DEFAULT_MJJ_EDGES, dtype=float)
    plots: list[Path] = []
    for label in labels:
        best = _best(windows, label)
        if best is None or best.fits[label].fit is None:
            logger.info("no spectrum plot for %s: no window with a usable fit", label)
            continue
        res = best.fits[label]
        title = f"{cfg.method}, {label}: local Z = {res.z:.2f}"
        plots.append(
            plot_fit(
                edges,
                best.counts[label],
                res.fit,
                output / f"spectrum_{label}.png",
                signal_region=(best.low, best.high),
                title=title,
            )
        )
    curves = {}
    for label in labels:
        z = np.array([w.z(label) for w in windows])
        if not np.isfinite(z).any():
            continue
        glob = results[label]["global"]
        name = label
        if glob is not None:
            name += f" (global Z {'>' if glob['is_bound'] else '='} {glob['z']:.2f})"
        curves[name] = (np.array([w.centre for w in windows]), z)  # NaN: gap in the line
    if curves:
        plots.append(
            plot_local_significance_curves(
                curves, output / "local_significance.png", title=f"{cfg.method} per-window training"
            )
        )
    rocs = {}
    if best_overall is not None and best_overall[1].roc is not None:
        w = best_overall[1]
        rocs[f"best window [{w.low:g}, {w.high:g}] ({best_overall[0]})"] = w.roc
    if truth_window is not None and truth_window.roc is not None:
        if best_overall is None or truth_window is not best_overall[1]:
            rocs[f"truth window [{truth_window.low:g}, {truth_window.high:g}]"] = truth_window.roc
        elif rocs:
            key = next(iter(rocs))
            rocs[key + ", = truth window"] = rocs.pop(key)
    if rocs:
        plots.append(plot_sic(rocs, output / "sic.png", title=f"{cfg.method}, k-fold, SR events"))
    return plots


# --------------------------------------------------------------------------------------------------
# Command


def scan(
    features: Annotated[
        Path, typer.Option("--features", help="Feature directory (adhunt features).")
    ],
    output: Annotated[Path, typer.Option("--output", "-o", help="Output directory.")],
    config: Annotated[
        Path | None, typer.Option("--config", help="YAML/TOML file with a ScanJobConfig.")
    ] = None,
    method: Annotated[
        str | None,
        typer.Option("--method", help="cwola (default), cathode, anode, ranode, iad, supervised."),
    ] = None,
    windows: Annotated[
        str | None, typer.Option("--windows", help="Explicit windows LOW:HIGH,LOW:HIGH,... (GeV).")
    ] = None,
    width: Annotated[float | None, typer.Option("--width", help="Window width, GeV (400).")] = None,
    step: Annotated[float | None, typer.Option("--step", help="Window step, GeV (100).")] = None,
    scan_range: Annotated[
        str | None, typer.Option("--range", help="Range LOW:HIGH of the sliding windows, GeV.")
    ] = None,
    fit_range: Annotated[
        str | None, typer.Option("--fit-range", help="Background fit range LOW:HIGH, GeV.")
    ] = None,
    sideband_width: Annotated[
        float | None, typer.Option("--sideband-width", help="Training sideband width, GeV (all).")
    ] = None,
    folds: Annotated[
        int | None, typer.Option("--folds", help="k of the k-fold training (5).")
    ] = None,
    seed: Annotated[
        int | None, typer.Option("--seed", help="Seed of training, injection, toys.")
    ] = None,
    backend: Annotated[
        str | None, typer.Option("--backend", help="Classifier back-end: hgb or mlp.")
    ] = None,
    efficiencies: Annotated[
        str | None,
        typer.Option("--efficiencies", help="SR efficiencies of the cuts (0.1,0.01,0.001)."),
    ] = None,
    toys: Annotated[
        int | None, typer.Option("--toys", help="Pseudo-experiments per cut (100).")
    ] = None,
    method_config: Annotated[
        Path | None, typer.Option("--method-config", help="YAML/TOML with the method's config.")
    ] = None,
    features_list: Annotated[
        str | None, typer.Option("--features-list", help="Comma-separated input features.")
    ] = None,
    datasets: Annotated[str | None, typer.Option("--datasets", help="Only these datasets.")] = None,
    inject: Annotated[
        int | None, typer.Option("--inject", help="Inject N signal events from --signal.")
    ] = None,
    signal: Annotated[
        Path | None, typer.Option("--signal", help="Signal feature directory for --inject.")
    ] = None,
    signal_datasets: Annotated[str | None, typer.Option("--signal-datasets")] = None,
    reference: Annotated[
        Path | None, typer.Option("--reference", help="True-background feature directory (iad).")
    ] = None,
    save_models: Annotated[
        bool, typer.Option("--save-models", help="Keep each window's model in models/LOW_HIGH/.")
    ] = False,
    no_plots: Annotated[bool, typer.Option("--no-plots", help="Write scan.json only.")] = False,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Write into a non-empty output directory.")
    ] = False,
) -> None:
    """Sliding-window bump hunt: train per window (k-fold), cut, fit, local and global Z."""
    from adhunt.config import config_from_dict, config_to_dict, load_config
    from adhunt.jobs.reporting import progress_bar

    overrides = {
        "method": method, "windows": windows, "window_width": width, "window_step": step,
        "scan_range": scan_range, "fit_range": fit_range, "sideband_width": sideband_width,
        "folds": folds, "seed": seed, "backend": backend, "efficiencies": efficiencies,
        "n_toys": toys, "method_config": None if method_config is None else str(method_config),
        "features": features_list, "datasets": datasets, "inject": inject,
        "signal_dir": None if signal is None else str(signal), "signal_datasets": signal_datasets,
        "reference_dir": None if reference is None else str(reference),
        "save_models": True if save_models else None, "plots": False if no_plots else None,
    }  # fmt: skip
    try:
        base = load_config(ScanJobConfig, config) if config is not None else ScanJobConfig()
        merged = config_to_dict(base)
        merged.update({k: v for k, v in overrides.items() if v is not None})
        cfg = config_from_dict(ScanJobConfig, merged)
        with progress_bar() as bar:
            task = bar.add_task(f"scan {cfg.method}", total=None)
            result = run_scan(
                features, output, config=cfg, overwrite=overwrite,
                progress=lambda done, total: bar.update(task, completed=done, total=total),
            )  # fmt: skip
    except (ValueError, KeyError, ImportError, FileNotFoundError, TypeError) as exc:
        logger.error("%s", exc)
        raise typer.Exit(code=2) from exc
    best = result.report["best"]
    for label, res in result.report["results"].items():
        glob = res["global"]
        logger.info(
            "%-10s best window %s  max local Z %s  %s",
            label,
            res["best_window"],
            "n/a" if res["max_local_z"] is None else f"{res['max_local_z']:.2f}",
            "" if glob is None else glob["statement"],
        )
    if best is not None:
        logger.info("best: %s window %s local Z %.2f", best["cut"], best["window"], best["local_z"])
    logger.info("wrote %s", result.json_path)

"""Classifier performance for anomaly detection: ROC, significance improvement (SIC), AUC.

SIC = eps_S / sqrt(eps_B) is the factor by which a cut on the score multiplies S/sqrt(B). Its
maximum is dominated by the tightest cuts, where only a handful of background events pass and
eps_B fluctuates wildly; as in the CATHODE / R-ANODE papers a point only counts when at least
``min_background`` background events survive the cut.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "comparison_row",
    "curve_for_json",
    "plot_sic",
    "rejection_at",
    "roc_sic",
    "signal_efficiency_at",
]

log = logging.getLogger(__name__)


def roc_sic(
    labels: Sequence[int] | np.ndarray,
    scores: Sequence[float] | np.ndarray,
    min_background: int = 20,
) -> dict[str, Any]:
    """ROC and SIC of ``scores`` (higher = more signal-like) for ``labels`` (1 signal, 0 background).

    Returns arrays ``thresholds``, ``eps_s``, ``eps_b``, ``n_background_pass`` and ``sic`` (one point
    per distinct score, cut ``score >= threshold``, plus the no-event point), and scalars ``auc``,
    ``max_sic`` (over points with ``n_background_pass >= min_background``), ``eps_s_at_max_sic``,
    ``eps_b_at_max_sic``, ``threshold_at_max_sic``, ``n_signal``, ``n_background``.
    """
    y = np.asarray(labels)
    s = np.asarray(scores, dtype=np.float64)
    if y.ndim != 1 or s.shape != y.shape:
        raise ValueError(
            f"labels and scores must be 1-D of equal length, got {y.shape} and {s.shape}"
        )
    if not np.all(np.isin(y, (0, 1))):
        raise ValueError(
            "labels must be 0 (background) or 1 (signal); drop unknown (-1) events first"
        )
    if not np.all(np.isfinite(s)):
        raise ValueError(f"scores contain {int((~np.isfinite(s)).sum())} NaN/inf value(s)")
    if int(min_background) < 1:
        raise ValueError(f"min_background must be >= 1, got {min_background}")
    y = y.astype(np.int64)
    n_sig, n_bkg = int(y.sum()), int(len(y) - y.sum())
    if n_sig == 0 or n_bkg == 0:
        raise ValueError(
            f"need both classes for a ROC curve: {n_sig} signal, {n_bkg} background events"
        )
    order = np.argsort(-s, kind="mergesort")
    s_sorted, y_sorted = s[order], y[order]
    last = np.r_[np.flatnonzero(np.diff(s_sorted) != 0), len(s_sorted) - 1]  # end of each tie group
    tp = np.r_[0, np.cumsum(y_sorted)[last]]
    fp = np.r_[0, np.cumsum(1 - y_sorted)[last]]
    thresholds = np.r_[np.inf, s_sorted[last]]
    eps_s, eps_b = tp / n_sig, fp / n_bkg
    sic = np.full(len(eps_s), np.nan)
    ok = fp >= int(min_background)
    sic[ok] = eps_s[ok] / np.sqrt(eps_b[ok])
    auc = float(np.sum(np.diff(eps_b) * 0.5 * (eps_s[1:] + eps_s[:-1])))
    result: dict[str, Any] = {
        "thresholds": thresholds,
        "eps_s": eps_s,
        "eps_b": eps_b,
        "n_background_pass": fp,
        "sic": sic,
        "auc": auc,
        "n_signal": n_sig,
        "n_background": n_bkg,
        "min_background": int(min_background),
        "max_sic": None,
        "eps_s_at_max_sic": None,
        "eps_b_at_max_sic": None,
        "threshold_at_max_sic": None,
    }
    if ok.any():
        i = int(np.nanargmax(sic))
        result.update(
            max_sic=float(sic[i]),
            eps_s_at_max_sic=float(eps_s[i]),
            eps_b_at_max_sic=float(eps_b[i]),
            threshold_at_max_sic=float(thresholds[i]),
        )
    else:
        log.warning("no cut keeps %d background events: max SIC undefined", min_background)
    return result


def rejection_at(result: Mapping[str, Any], eps_s: float) -> float | None:
    """Background rejection 1/eps_B at signal efficiency ``eps_s`` (first cut reaching it)."""
    es, eb = np.asarray(result["eps_s"]), np.asarray(result["eps_b"])
    reach = np.flatnonzero(es >= eps_s)
    if len(reach) == 0:
        return None
    b = eb[reach[0]]
    return float(1.0 / b) if b > 0 else math.inf


def signal_efficiency_at(result: Mapping[str, Any], eps_b: float) -> float:
    """Signal efficiency of the loosest cut whose background efficiency is at most ``eps_b``.

    A step function read off the ROC points (no interpolation): the cut a user could make.
    """
    if not 0.0 < float(eps_b) <= 1.0:
        raise ValueError(f"background efficiency must be in (0, 1], got {eps_b!r}")
    es, eb = np.asarray(result["eps_s"]), np.asarray(result["eps_b"])
    ok = np.flatnonzero(eb <= float(eps_b) * (1 + 1e-12))
    return float(es[ok[-1]]) if ok.size else 0.0


#: Background efficiencies of the comparison table's signal-efficiency columns.
COMPARISON_EPS_B = (0.01, 0.001)


def comparison_row(result: Mapping[str, Any]) -> dict[str, Any]:
    """One method's line of a comparison: max SIC, AUC, signal efficiency at 1% / 0.1% background.

    ``n_bkg_at_*``: background events behind each efficiency (few means a noisy number).
    """
    row: dict[str, Any] = {
        "max_sic": result.get("max_sic"),
        "auc": float(result["auc"]),
        "eps_s_at_max_sic": result.get("eps_s_at_max_sic"),
    }
    for eb in COMPARISON_EPS_B:
        row[f"eps_s_at_eps_b_{eb:g}"] = signal_efficiency_at(result, eb)
        row[f"n_bkg_at_eps_b_{eb:g}"] = math.floor(eb * int(result["n_background"]) + 1e-9)
    row["n_signal"] = int(result["n_signal"])
    row["n_background"] = int(result["n_background"])
    return row


def curve_for_json(result: Mapping[str, Any], max_points: int = 300) -> dict[str, Any]:
    """Scalars plus a thinned ROC/SIC curve (at most ``max_points``, max-SIC point kept), JSON-ready."""
    n = len(result["eps_s"])
    idx = np.unique(np.linspace(0, n - 1, min(n, max_points)).round().astype(int))
    if result.get("threshold_at_max_sic") is not None:
        idx = np.union1d(idx, [int(np.nanargmax(result["sic"]))])

    def clean(a: np.ndarray) -> list[float | None]:
        return [float(v) if np.isfinite(v) else None for v in np.asarray(a, dtype=np.float64)[idx]]

    out = {k: v for k, v in result.items() if np.ndim(v) == 0}
    out = {k: (float(v) if isinstance(v, float | np.floating) else v) for k, v in out.items()}
    # None where no cut reaches that efficiency or no background passes (rejection unbounded)
    out["rejection_at_eps_s"] = {
        str(e): (r if r is not None and math.isfinite(r) else None)
        for e in (0.2, 0.4, 0.6)
        for r in [rejection_at(result, e)]
    }
    out["curve"] = {k: clean(result[k]) for k in ("eps_s", "eps_b", "sic", "thresholds")}
    return out


def plot_sic(results: Mapping[str, Mapping[str, Any]], path: str | Path, title: str = "") -> Path:
    """SIC versus signal efficiency for several methods (one PNG, mplhep style)."""
    if not results:
        raise ValueError("plot_sic: no results to plot")
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    import mplhep

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with plt.style.context(mplhep.style.CMS):
        fig, ax = plt.subplots(figsize=(9, 7))
        ymax = 2.0
        for name, res in results.items():
            es, sic = np.asarray(res["eps_s"], float), np.asarray(res["sic"], float)
            ok = np.isfinite(sic)
            label = name
            if res.get("max_sic") is not None:
                label += f" (max {res['max_sic']:.1f}, AUC {res['auc']:.3f})"
            ax.plot(es[ok], sic[ok], label=label)
            if ok.any():
                ymax = max(ymax, float(np.max(sic[ok])))
        grid = np.linspace(0, 1, 200)
        ax.plot(grid, np.sqrt(grid), "k:", label="random")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.15 * ymax)
        ax.set_xlabel(r"Signal efficiency $\epsilon_S$")
        ax.set_ylabel(r"SIC = $\epsilon_S\,/\,\epsilon_B^{1/2}$")
        mplhep.label.exp_label(exp="adhunt", llabel="Simulation", rlabel="", ax=ax)
        legend = ax.legend(fontsize=13, loc="best", title=title or None)
        legend.get_title().set_fontsize(13)
        fig.savefig(path, dpi=110, bbox_inches="tight")
        plt.close(fig)
    return path

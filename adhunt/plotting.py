"""Bump-hunt figures: mjj spectra with the sideband fit and pulls, local significance vs mjj.

CMS-like mplhep style with the experiment label "adhunt"; the Agg backend is selected so that
plots can be written on machines without a display (batch jobs, CI).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from adhunt.fitting import FitResult

logger = logging.getLogger(__name__)

LABEL = "adhunt"


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    import mplhep

    plt.style.use(mplhep.style.CMS)
    return plt


def _label(ax: Any, text: str = "") -> None:
    import mplhep

    mplhep.label.exp_label(exp=LABEL, text=text, data=True, com=13, ax=ax, loc=0)


def _draw_spectrum(
    ax_main: Any,
    ax_pull: Any,
    edges: np.ndarray,
    counts: np.ndarray,
    fit: FitResult,
    signal_region: tuple[float, float] | None,
    title: str,
) -> None:
    mu, err = fit.expected_with_uncertainty(edges)
    centres = 0.5 * (edges[:-1] + edges[1:])
    ax_main.errorbar(
        centres, counts, yerr=np.sqrt(counts), fmt="o", ms=3, color="black", label="data", zorder=3
    )
    ax_main.stairs(mu, edges, color="tab:red", label=f"{fit.n_params}-par. dijet fit")
    ax_main.stairs(
        mu + err,
        edges,
        baseline=np.clip(mu - err, 1e-3, None),
        fill=True,
        color="tab:red",
        alpha=0.25,
        label=r"fit uncertainty ($\pm1\sigma$)",
    )
    ax_main.set_yscale("log")
    ax_main.set_ylabel("Events / bin")
    ymin = max(0.5, 0.5 * float(np.min(mu[mu > 0]))) if np.any(mu > 0) else 0.5
    ymax = max(float(counts.max()), float(mu.max()), 1.0)
    ax_main.set_ylim(ymin, ymax * (ymax / ymin) ** 0.6)  # headroom for the legend
    pulls = (counts - mu) / np.sqrt(np.where(mu + err**2 > 0, mu + err**2, np.nan))
    colors = np.where(fit.mask, "tab:blue", "tab:gray")
    ax_pull.bar(centres, np.nan_to_num(pulls), width=np.diff(edges), color=colors, edgecolor="none")
    ax_pull.axhline(0, color="black", lw=1)
    for y in (-2, 2):
        ax_pull.axhline(y, color="gray", lw=0.8, ls=":")
    ax_pull.set_ylabel("pull")
    ax_pull.set_ylim(-5, 5)
    ax_pull.set_xlabel(r"$m_{jj}$ [GeV]")
    if signal_region is not None:
        for ax in (ax_main, ax_pull):
            ax.axvspan(*signal_region, color="gold", alpha=0.25, lw=0)
        ax_main.plot(
            [],
            [],
            color="gold",
            alpha=0.5,
            lw=8,
            label=f"SR [{signal_region[0]:g}, {signal_region[1]:g}]",
        )
    ax_main.set_xlim(edges[0], edges[-1])
    gof = rf"$\chi^2$/ndf = {fit.chi2:.1f}/{fit.ndf}, fit p = {fit.p_value:.2f}"
    ax_main.legend(
        title=f"{title}\n{gof}" if title else gof,
        fontsize="small",
        title_fontsize="small",
        loc="upper right",
    )


def plot_fit(
    edges: np.ndarray,
    counts: np.ndarray,
    fit: FitResult,
    path: str | Path,
    signal_region: tuple[float, float] | None = None,
    title: str = "",
) -> Path:
    """One spectrum with its fit, uncertainty band and pull panel (fitted bins blue, masked grey)."""
    plt = _pyplot()
    fig, (ax, axp) = plt.subplots(
        2, 1, figsize=(9, 9), sharex=True, gridspec_kw={"height_ratios": [3, 1], "hspace": 0.05}
    )
    _draw_spectrum(
        ax, axp, np.asarray(edges, float), np.asarray(counts, float), fit, signal_region, title
    )
    _label(ax)
    return _save(fig, plt, path)


def plot_spectra(scans: Mapping[str, Any], path: str | Path, ncols: int = 3) -> Path:
    """Every spectrum of ``{label: SpectrumScan}`` (:func:`adhunt.bumphunt.bump_hunt`) on one
    figure: the sideband fit of its best window (SR shaded) over a pull panel."""
    plt = _pyplot()
    items = [s for s in scans.values() if s.best is not None and s.best.fit is not None]
    if not items:
        raise ValueError("plot_spectra: no spectrum has a usable window to plot")
    ncols = max(1, min(ncols, len(items)))
    nrows = -(-len(items) // ncols)
    fig = plt.figure(figsize=(8 * ncols, 9.5 * nrows))
    outer = fig.add_gridspec(nrows, ncols, hspace=0.25, wspace=0.3)
    for k, spectrum in enumerate(items):
        inner = outer[k // ncols, k % ncols].subgridspec(2, 1, height_ratios=[3, 1], hspace=0.05)
        ax = fig.add_subplot(inner[0])
        axp = fig.add_subplot(inner[1], sharex=ax)
        ax.tick_params(labelbottom=False)
        best = spectrum.best
        title = f"{spectrum.label}: best window, local Z = {best.z:.2f}"
        _draw_spectrum(
            ax, axp, spectrum.edges, spectrum.counts, best.fit, (best.low, best.high), title
        )
        _label(ax)
    return _save(fig, plt, path)


def plot_local_significance(scans: Mapping[str, Any], path: str | Path) -> Path:
    """Signed local significance vs window centre, one line per spectrum of ``{label:
    SpectrumScan}`` (global Z in the legend)."""
    curves = {}
    for label, spectrum in scans.items():
        ok = spectrum.ok_windows
        if not ok:
            continue
        g = spectrum.global_significance
        if g is not None:
            label += rf" (global Z {'>' if g.is_bound else '='} {g.z:.2f})"
        curves[label] = ([w.centre for w in ok], [w.z_signed for w in ok])
    return plot_local_significance_curves(curves, path)


def plot_scan(result: Any, output: Path, title: str) -> list[Path]:
    """The figures of a :class:`~adhunt.bumphunt.ScanResult`: per label the post-cut spectrum of
    the best window with its sideband fit and pulls, local Z vs mjj for every label, and the SIC
    curves of the best and the truth window when truth labels were given."""
    from adhunt.performance import plot_sic

    edges = np.asarray(result.edges, dtype=float)
    paths: list[Path] = []
    curves = {}
    for label in result.config.labels:
        summary = result.summaries[label]
        best = result.best(label)
        if best is not None and best[1].results[label].fit is not None:
            res = best[1].results[label]
            paths.append(
                plot_fit(
                    edges,
                    best[1].counts[label],
                    res.fit,
                    output / f"spectrum_{label}.png",
                    signal_region=(best[1].low, best[1].high),
                    title=f"{title}, {label}: local Z = {res.z:.2f}",
                )
            )
        z = np.array([w.z(label) for w in result.windows])
        if np.isfinite(z).any():
            name = label
            g = summary.global_significance
            if g is not None:
                name += f" (global Z {'>' if g.is_bound else '='} {g.z:.2f})"
            curves[name] = (np.array([w.centre for w in result.windows]), z)
    if curves:
        paths.append(
            plot_local_significance_curves(
                curves, output / "local_significance.png", title=f"{title}, per-window training"
            )
        )
    rocs = {}
    best = result.best()
    if best is not None and best[1].roc is not None:
        rocs[f"best window [{best[1].low:g}, {best[1].high:g}] ({best[0]})"] = best[1].roc
    tw = result.truth_window
    if tw is not None and tw.roc is not None and (best is None or tw is not best[1]):
        rocs[f"truth window [{tw.low:g}, {tw.high:g}]"] = tw.roc
    if rocs:
        paths.append(plot_sic(rocs, output / "sic.png", title=f"{title}, k-fold, SR events"))
    return paths


def _save(fig: Any, plt: Any, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    logger.info("wrote %s", path)
    return path


def plot_local_significance_curves(
    curves: Mapping[str, tuple[Sequence[float], Sequence[float]]],
    path: str | Path,
    title: str = "",
) -> Path:
    """Local significance vs window centre from plain arrays, one line per entry of ``curves``.

    For scans where every window has its own spectrum (per-window training), so that there is no
    single :class:`~adhunt.bumphunt.ScanReport`; ``curves`` maps a legend label to (centres, Z).
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(10, 7))
    if not curves:
        plt.close(fig)
        raise ValueError("plot_local_significance_curves: no curves to plot")
    for label, (x, y) in curves.items():
        ax.plot(np.asarray(x, float), np.asarray(y, float), marker="o", ms=4, label=label)
    ax.axhline(0, color="black", lw=1)
    for z in (2, 3, 5):
        ax.axhline(z, color="gray", lw=0.8, ls=":")
    ax.set_xlabel(r"signal-region centre $m_{jj}$ [GeV]")
    ax.set_ylabel("local significance Z (signed)")
    ax.legend(fontsize="small", title=title or None, title_fontsize="small")
    _label(ax)
    return _save(fig, plt, path)

"""Signal-vs-background distributions of dijet features (the first plot a physicist looks at).

Shapes, not rates: each class is normalised to unit area, so a few hundred signal events can be
compared with tens of thousands of background events on one axis.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

logger = logging.getLogger(__name__)

#: Column -> (axis label, binning) of the default panels (GeV).
PANELS: dict[str, tuple[str, np.ndarray]] = {
    "mjj": (r"$m_{jj}$ [GeV]", np.linspace(1500.0, 6000.0, 46)),
    "mj1": (r"$m_{j1}$ (lighter jet) [GeV]", np.linspace(0.0, 800.0, 41)),
    "mj2": (r"$m_{j2}$ (heavier jet) [GeV]", np.linspace(0.0, 800.0, 41)),
    "tau21_j1": (r"$\tau_{21}$ of the lighter jet", np.linspace(0.0, 1.2, 41)),
    "tau21_j2": (r"$\tau_{21}$ of the heavier jet", np.linspace(0.0, 1.2, 41)),
    "delta_mj": (r"$\Delta m_j$ [GeV]", np.linspace(0.0, 800.0, 41)),
}


def plot_feature_distributions(
    table: pd.DataFrame,
    path: str | Path,
    columns: Sequence[str] = ("mjj", "mj1", "mj2", "tau21_j1", "tau21_j2", "delta_mj"),
    label_column: str = "truth_label",
) -> Path:
    """Normalised histograms of ``columns`` for signal (label 1) and background (label 0).

    Events with another label (-1: unknown, e.g. real data) are drawn as a third class "data".
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    import mplhep

    if label_column not in table.columns:
        raise ValueError(f"feature table has no {label_column!r} column")
    unknown = [c for c in columns if c not in table.columns]
    if unknown:
        raise ValueError(f"feature table has no column(s) {unknown}")
    labels = table[label_column].to_numpy()
    classes = [
        ("background", labels == 0, "tab:blue"),
        ("signal", labels == 1, "tab:red"),
        ("data (no truth)", ~np.isin(labels, (0, 1)), "black"),
    ]
    classes = [c for c in classes if c[1].any()]
    if not classes:
        raise ValueError("feature table is empty: nothing to plot")

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ncols = 3
    nrows = -(-len(columns) // ncols)
    with plt.style.context(mplhep.style.CMS):
        fig, axes = plt.subplots(nrows, ncols, figsize=(7 * ncols, 6 * nrows), squeeze=False)
        for ax, column in zip(axes.flat, columns, strict=False):
            xlabel, bins = PANELS.get(column, (column, None))
            values = table[column].to_numpy(dtype=float)
            if bins is None:
                lo, hi = np.nanpercentile(values, [0.5, 99.5])
                bins = np.linspace(lo, hi, 41)
            for name, mask, color in classes:
                counts, edges = np.histogram(np.clip(values[mask], bins[0], bins[-1]), bins)
                total = counts.sum()
                density = counts / (total * np.diff(edges)) if total else counts.astype(float)
                ax.stairs(density, edges, color=color, lw=2, label=f"{name} ({int(mask.sum())})")
            ax.set_xlabel(xlabel)
            ax.set_ylabel("normalised")
            ax.legend(fontsize="x-small")
        for ax in list(axes.flat)[len(columns) :]:
            ax.set_visible(False)
        mplhep.label.exp_label(exp="adhunt", llabel="Simulation", rlabel="", ax=axes.flat[0])
        fig.tight_layout()
        fig.savefig(path, dpi=80)
        plt.close(fig)
    logger.info("wrote %s", path)
    return path

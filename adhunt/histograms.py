"""mjj binning and score-cut histograms shared by inference, the bump hunt and the demo.

The bump hunt fits these histograms, so their binning is chosen for the fit: 100 GeV bins (finer
than the ~5% dijet mass resolution at 3.5 TeV, and aligned with the 100 GeV window steps) where
the spectrum is populated, widening above 5 TeV where counts run out.

Score cuts are stored as *background efficiencies*, not raw scores, so that histograms of different
models (and the thresholds behind them) can be compared and summed. The inference histogram
(:func:`make_inference_histogram`) has the axes

* ``dataset`` (StrCategory, growth): the fileset's dataset names;
* ``model`` (StrCategory): the names given to the models;
* ``bkg_eff`` (Variable): edges ``[0, e_n, ..., e_1, 1]`` for cut efficiencies
  ``e_1 > ... > e_n`` (default 10%, 1%, 0.1%). An event sits in the bin whose *upper* edge is the
  tightest efficiency whose cut it passes (score >= threshold), or in ``[e_1, 1]`` when it passes
  none. Summing the bins with upper edge <= e therefore gives the spectrum passing the e cut,
  and summing all bins gives the spectrum before any cut (see :func:`cut_spectra`);
* ``mjj`` (Variable, GeV, :data:`DEFAULT_MJJ_EDGES` by default, under/overflow on).

Storage is ``hist.storage.Weight()``: every event has weight 1 here, so values are exact integer
counts (sums of 1.0 in float64 are exact far beyond any sample size) and variances equal values;
Weight rather than Double so that weighted datasets (cross-section scaled simulation) keep correct
errors in the same histogram type.

On disk the histogram is written as ``histograms.json``: hist's own serialisation (the UHI JSON
schema of ``hist.serialization``, readable without pickle and without adhunt by any UHI reader),
through :func:`write_histogram_json` and read back by :func:`read_histogram_json` (axes, flow
bins, values, variances and the metadata with the score thresholds).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import hist

#: Default mjj bin edges, GeV (a ``hist.axis.Variable``).
DEFAULT_MJJ_EDGES: tuple[float, ...] = tuple(
    float(x)
    for x in np.concatenate(
        [
            np.arange(1800.0, 5000.0, 100.0),
            np.arange(5000.0, 6000.0, 200.0),
            [6000.0, 6500.0, 7000.0, 8000.0],
        ]
    )
)

#: Default background efficiencies of the score cuts (fractions of the reference sample kept).
DEFAULT_EFFICIENCIES: tuple[float, ...] = (0.1, 0.01, 0.001)

#: Label of the spectrum before any score cut in :func:`cut_spectra`.
NO_CUT_LABEL = "all"

AXIS_DATASET, AXIS_MODEL, AXIS_EFF, AXIS_MJJ = "dataset", "model", "bkg_eff", "mjj"

__all__ = [
    "AXIS_DATASET",
    "AXIS_EFF",
    "AXIS_MJJ",
    "AXIS_MODEL",
    "DEFAULT_EFFICIENCIES",
    "DEFAULT_MJJ_EDGES",
    "HISTOGRAM_JSON_NAME",
    "NO_CUT_LABEL",
    "cut_label",
    "cut_spectra",
    "efficiency_edges",
    "efficiency_fill_values",
    "make_inference_histogram",
    "read_histogram_json",
    "root_cut_name",
    "thresholds_from_scores",
    "validate_efficiencies",
    "validate_mjj_edges",
    "write_histogram_json",
]

#: File name of the portable histogram file written by ``adhunt infer``.
HISTOGRAM_JSON_NAME = "histograms.json"


def validate_efficiencies(efficiencies: Iterable[float]) -> tuple[float, ...]:
    """Efficiencies as a tuple sorted from loosest to tightest; each in (0, 1), no duplicates."""
    try:
        values = [float(e) for e in efficiencies]
    except (TypeError, ValueError):
        raise ValueError(f"efficiencies must be numbers, got {efficiencies!r}") from None
    if not values:
        raise ValueError("at least one efficiency is needed")
    bad = [e for e in values if not (math.isfinite(e) and 0.0 < e < 1.0)]
    if bad:
        raise ValueError(
            f"efficiencies must lie strictly between 0 and 1 (1 = no cut is always included), got {bad}"
        )
    if len(set(values)) != len(values):
        raise ValueError(f"duplicate efficiencies in {values}")
    return tuple(sorted(values, reverse=True))


def validate_mjj_edges(edges: Sequence[float] | None) -> tuple[float, ...]:
    """mjj bin edges (default :data:`DEFAULT_MJJ_EDGES`), checked finite and strictly increasing."""
    if edges is None:
        return DEFAULT_MJJ_EDGES
    arr = np.asarray(list(edges), dtype=np.float64)
    if arr.ndim != 1 or arr.size < 2:
        raise ValueError(f"mjj edges need at least 2 values, got {list(edges)!r}")
    if not np.all(np.isfinite(arr)) or np.any(np.diff(arr) <= 0):
        raise ValueError("mjj edges must be finite and strictly increasing")
    return tuple(float(x) for x in arr)


def efficiency_edges(efficiencies: Iterable[float]) -> tuple[float, ...]:
    """Edges of the ``bkg_eff`` axis: ``(0, tightest, ..., loosest, 1)``."""
    effs = validate_efficiencies(efficiencies)
    return (0.0, *sorted(effs), 1.0)


def cut_label(efficiency: float) -> str:
    """Human label of a cut: 0.1 -> ``"10%"``, 0.001 -> ``"0.1%"``; 1 -> :data:`NO_CUT_LABEL`."""
    if efficiency >= 1.0:
        return NO_CUT_LABEL
    return f"{float(efficiency) * 100:.6g}%"


def root_cut_name(label: str) -> str:
    """A ROOT-friendly object name for a cut label: ``"0.1%"`` -> ``"eff0p1pct"``, ``"all"`` -> ``"all"``."""
    if label == NO_CUT_LABEL:
        return label
    return "eff" + label.replace("%", "pct").replace(".", "p")


def thresholds_from_scores(scores: Any, efficiencies: Iterable[float]) -> np.ndarray:
    """Score thresholds such that a fraction ~e of the reference events has score >= threshold.

    For ``n`` reference scores and efficiency ``e`` the threshold is the ``k``-th highest score,
    ``k = max(1, round(e * n))``: exactly ``k`` events pass (more only if scores tie at the
    threshold). Returned in the order of :func:`validate_efficiencies` (loosest first), hence
    non-decreasing. The reference must hold well over ``1 / e`` events for a meaningful cut.
    """
    effs = validate_efficiencies(efficiencies)
    s = np.asarray(scores, dtype=np.float64).ravel()
    if s.size == 0:
        raise ValueError("cannot compute score thresholds from an empty reference sample")
    if not np.all(np.isfinite(s)):
        raise ValueError(
            f"reference scores contain {int((~np.isfinite(s)).sum())} NaN/inf value(s)"
        )
    ordered = np.sort(s)[::-1]
    k = np.array([max(1, round(e * s.size)) for e in effs], dtype=np.int64)
    return ordered[k - 1].copy()


def efficiency_fill_values(
    scores: np.ndarray, thresholds: Sequence[float], efficiencies: Iterable[float]
) -> np.ndarray:
    """Values to fill on the ``bkg_eff`` axis: the centre of each event's bin (see module doc).

    An event passing the ``j`` loosest cuts (``score >= thresholds[i]`` for ``i < j``) lands in
    the bin whose upper edge is the ``j``-th loosest efficiency (``[e_1, 1]`` when ``j = 0``).
    """
    effs = validate_efficiencies(efficiencies)
    t = np.asarray(thresholds, dtype=np.float64)
    if t.shape != (len(effs),):
        raise ValueError(f"need {len(effs)} thresholds, got {t.shape}")
    if np.any(np.diff(t) < 0):
        raise ValueError(f"thresholds must be non-decreasing from the loosest cut, got {t}")
    edges = np.asarray(efficiency_edges(effs))
    centres = 0.5 * (edges[:-1] + edges[1:])
    passed = np.searchsorted(t, np.asarray(scores, dtype=np.float64), side="right")
    return centres[len(effs) - passed]


def make_inference_histogram(
    models: Sequence[str],
    efficiencies: Iterable[float] = DEFAULT_EFFICIENCIES,
    mjj_edges: Sequence[float] | None = None,
    datasets: Sequence[str] = (),
    metadata: dict[str, Any] | None = None,
) -> hist.Hist:
    """An empty inference histogram (axes in the module doc); ``datasets`` pre-seeds the categories."""
    import hist

    if not models or len(set(models)) != len(models):
        raise ValueError(f"model names must be non-empty and unique, got {list(models)}")
    return hist.Hist(
        hist.axis.StrCategory(list(datasets), growth=True, name=AXIS_DATASET, label="dataset"),
        hist.axis.StrCategory(list(models), name=AXIS_MODEL, label="model", overflow=False),
        hist.axis.Variable(
            efficiency_edges(efficiencies),
            name=AXIS_EFF,
            label="background efficiency of the tightest cut passed",
        ),
        hist.axis.Variable(validate_mjj_edges(mjj_edges), name=AXIS_MJJ, label="$m_{jj}$ [GeV]"),
        storage=hist.storage.Weight(),
        metadata=metadata,
    )


def _categories(h: hist.Hist, axis: str) -> list[str]:
    return [str(c) for c in h.axes[axis]]


def cut_spectra(
    h: hist.Hist, model: str, dataset: str | Sequence[str] | None = None
) -> dict[str, hist.Hist]:
    """Cumulative mjj spectra of ``model``: ``{"all": no cut, "10%": ..., "1%": ..., "0.1%": ...}``.

    ``dataset`` None sums all datasets (the "data"), a name or a list selects. Labels come from
    :func:`cut_label` of the ``bkg_eff`` edges, loosest first; each value is a 1D ``hist.Hist``
    over ``mjj`` (flow bins included) ready for :func:`adhunt.bumphunt.bump_hunt` and
    :mod:`adhunt.fitting`.
    """
    import hist

    for axis in (AXIS_DATASET, AXIS_MODEL, AXIS_EFF, AXIS_MJJ):
        if axis not in h.axes.name:
            raise ValueError(f"not an inference histogram: no {axis!r} axis (axes {h.axes.name})")
    models = _categories(h, AXIS_MODEL)
    if model not in models:
        raise ValueError(f"no model {model!r} in the histogram; models: {models}")
    names = _categories(h, AXIS_DATASET)
    if dataset is None:
        wanted = names
    else:
        wanted = [dataset] if isinstance(dataset, str) else list(dataset)
        missing = [d for d in wanted if d not in names]
        if missing:
            raise ValueError(f"no dataset(s) {missing} in the histogram; datasets: {names}")

    order = [h.axes.name.index(a) for a in (AXIS_DATASET, AXIS_MODEL, AXIS_EFF, AXIS_MJJ)]
    view = h.view(flow=True)
    values = np.transpose(np.asarray(view["value"]), order)
    variances = np.transpose(np.asarray(view["variance"]), order)
    d_index = [names.index(d) for d in wanted]
    m_index = models.index(model)
    vals = values[d_index, m_index].sum(axis=0)  # (bkg_eff incl. flow, mjj incl. flow)
    var = variances[d_index, m_index].sum(axis=0)

    eff_axis = h.axes[AXIS_EFF]
    edges = np.asarray(eff_axis.edges)
    underflow = 1 if eff_axis.traits.underflow else 0
    mjj_axis = h.axes[AXIS_MJJ]

    def spectrum(rows: np.ndarray) -> hist.Hist:
        out = hist.Hist(
            hist.axis.Variable(mjj_axis.edges, name=AXIS_MJJ, label=mjj_axis.label),
            storage=hist.storage.Weight(),
        )
        out.view(flow=True)["value"] = vals[rows].sum(axis=0)
        out.view(flow=True)["variance"] = var[rows].sum(axis=0)
        return out

    result = {NO_CUT_LABEL: spectrum(np.arange(vals.shape[0]))}
    for e in sorted(edges[1:-1], reverse=True):
        # regular bins whose upper edge is <= e (tolerance for float edges)
        bins = np.flatnonzero(edges[1:] <= e * (1 + 1e-9)) + underflow
        result[cut_label(float(e))] = spectrum(bins)
    return result


def write_histogram_json(h: hist.Hist, path: str | Path) -> Path:
    """Write ``h`` as UHI JSON (``hist.serialization.to_uhi``), atomically; returns the path."""
    from hist import serialization
    from uhi.io import json as uhi_json

    path = Path(path)
    text = json.dumps(serialization.to_uhi(h), default=uhi_json.default, allow_nan=False)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text + "\n")
    os.replace(tmp, path)
    return path


def read_histogram_json(path: str | Path) -> hist.Hist:
    """The ``hist.Hist`` of a file written by :func:`write_histogram_json` (no pickle involved)."""
    import hist
    from hist import serialization
    from uhi.io import json as uhi_json

    path = Path(path)
    try:
        data = json.loads(path.read_text(), object_hook=uhi_json.object_hook)
        return hist.Hist(serialization.from_uhi(data))
    except (ValueError, KeyError, TypeError) as err:
        raise ValueError(f"{path}: not a histogram JSON file written by adhunt ({err})") from err

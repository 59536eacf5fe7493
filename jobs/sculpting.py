"""``adhunt sculpting``: does an anomaly-score cut sculpt the background mjj spectrum?

A bump hunt after a score cut is only valid if the cut leaves the background smooth: a score that
has learnt mjj (directly or through correlated features) selects events near the window and carves
a bump that the fit would call a signal. This job scores SIGNAL-FREE data with a trained model,
builds the post-cut mjj spectra at fixed SR efficiencies (same convention as ``adhunt scan``: the
threshold keeps that fraction of the model's SR events and is applied at every mjj) and runs
:func:`adhunt.bumphunt.check_sculpting` on each: good fit of the whole post-cut spectrum, uniform
local p-values of background-only pseudo-experiments, and no bump or dip beyond the look-elsewhere
expectation. The command exits 1 when a cut fails, 2 on bad input.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer

from adhunt.jobs.options import (
    AllowDuplicatesOption,
    AllowPartialOption,
    DatasetsOption,
    EfficienciesOption,
    FeaturesOption,
    FitRangeOption,
    NoPlotsOption,
    OutputDirOption,
    OverwriteOption,
    RangeOption,
    SeedOption,
    StepOption,
    ToysOption,
    WidthOption,
    checked_output,
    split_list,
)
from adhunt.schema import RESONANT_VARIABLE

logger = logging.getLogger(__name__)

MODES = ("auto", "kfold", "ensemble")


@dataclass(frozen=True, eq=False)
class SculptingJobResult:
    """Outcome of :func:`run_sculpting`; ``report`` is the content of ``sculpting.json``."""

    output: Path
    report: dict[str, Any]
    passed: bool
    json_path: Path
    plots: tuple[Path, ...]


def run_sculpting(
    features: Any,
    model: Any,
    output: str | Path,
    *,
    datasets: list[str] | None = None,
    mode: str = "auto",
    config: Any | None = None,
    thresholds: Any | None = None,
    plots: bool = True,
    overwrite: bool = False,
    allow_duplicates: bool = False,
) -> SculptingJobResult:
    """Sculpting check of ``model`` (a model directory or a fitted ``ResonantModel``) on the
    signal-free ``features`` (directory or DataFrame); writes ``sculpting.json`` and one spectrum
    plot per cut. ``config``: a :class:`adhunt.bumphunt.ScanConfig` (efficiencies, windows, fit
    settings, toys, seed); ``thresholds``: a :class:`adhunt.bumphunt.SculptingConfig`.
    """
    import pandas as pd

    import adhunt
    from adhunt.bumphunt import (
        NO_CUT,
        ScanConfig,
        SculptingConfig,
        check_sculpting,
        cut_spectra,
        mjj_counts,
        resolve_fit_range,
    )
    from adhunt.config import config_to_dict, write_json
    from adhunt.dijet import required_columns
    from adhunt.jobs.scan import has_truth, prepare_output
    from adhunt.models.base import ResonantModel
    from adhunt.plotting import plot_fit
    from adhunt.provenance import (
        check_feature_definition,
        model_feature_definition,
        score_auto,
        table_feature_definition,
    )
    from adhunt.tables import read_table

    t0 = time.perf_counter()
    cfg = config or ScanConfig()
    if cfg.n_toys < 20:
        raise ValueError(
            f"the sculpting check needs >= 20 toys (p-value uniformity), got {cfg.n_toys}"
        )
    thr = thresholds or SculptingConfig()
    model_dir = None
    if not isinstance(model, ResonantModel):
        model_dir = Path(model)
        if not model_dir.is_dir():
            raise FileNotFoundError(f"model directory not found: {model_dir}")
        model = ResonantModel.load(model_dir)
    if not isinstance(features, pd.DataFrame):
        check_feature_definition(
            model_feature_definition(model), table_feature_definition(features),
            model=str(model_dir or model.method), table=f"--features {features}",
        )  # fmt: skip
    output = prepare_output(Path(output), overwrite, command="sculpting")
    if isinstance(features, pd.DataFrame):
        data = features
        if datasets:
            data = data[data["dataset"].isin(datasets)].reset_index(drop=True)
    else:
        columns = required_columns(model.features)
        data = read_table(
            Path(features), datasets, columns, what="--features",
            allow_duplicates=allow_duplicates,
        )  # fmt: skip
    if len(data) == 0:
        raise ValueError("feature table has no events")
    if has_truth(data) and (data["truth_label"] == 1).any():
        logger.warning(
            "the data contain %d truth-signal event(s): the sculpting check assumes signal-free data",
            int((data["truth_label"] == 1).sum()),
        )
    if mode not in MODES:
        raise ValueError(f"--mode must be one of {', '.join(MODES)}, got {mode!r}")
    mjj = data[RESONANT_VARIABLE].to_numpy(dtype=np.float64)
    sr = model.region.in_sr(mjj)
    sb = model.region.in_sb(mjj)
    if not sr.any():
        raise ValueError(
            f"no events in the model's signal region {model.region} GeV "
            f"(data mjj in [{mjj.min():.0f}, {mjj.max():.0f}] GeV)"
        )
    # auto: the events the model trained on get the fold model that never saw them (k-fold
    # honest), the others the ensemble; the counts of each go into the report.
    if mode == "auto":
        scores, modes = score_auto(model, data)
    else:
        scores, modes = model.score(data, mode=mode), np.full(len(data), mode, dtype=object)
    used_mode = {m: int(np.sum(modes == m)) for m in ("kfold", "ensemble")}
    logger.info(
        "scored %d events with the %s model (%s), SR %s: %d events",
        len(data), model.method, used_mode, model.region, int(sr.sum()),
    )  # fmt: skip
    edges = np.asarray(cfg.edges, dtype=float)
    uncut = mjj_counts(mjj, edges)
    fit_range, source = resolve_fit_range(edges, uncut, cfg)
    cuts = cut_spectra(mjj, scores, (model.region.low, model.region.high), cfg.efficiencies, edges)
    spectra = {NO_CUT: (edges, uncut), **{k: (edges, c.counts) for k, c in cuts.items()}}
    report = check_sculpting(spectra, cfg, thr, fit_range=fit_range)
    if all(c.status == "untestable" for c in report.checks if c.label != NO_CUT):
        raise ValueError(
            "no score cut could be tested: "
            + "; ".join(f"{c.label}: {c.reasons[0]}" for c in report.checks if c.label != NO_CUT)
        )
    entries = []
    plot_paths = []
    for check, spectrum in zip(report.checks, report.scans, strict=True):
        cut = cuts.get(check.label)
        passed = np.ones(len(data), dtype=bool) if cut is None else cut.passed
        entry = {
            **check.to_dict(),
            "efficiency": 1.0 if cut is None else cut.efficiency,
            "threshold": None if cut is None else cut.threshold,
            "n_events": int(passed.sum()),
            # Diagnostic: a cut that learnt mjj keeps far more of the SR than of the sidebands.
            "efficiency_sr": float(np.mean(passed[sr])),
            "efficiency_sb": float(np.mean(passed[sb])) if sb.any() else None,
            "background_fit": None
            if spectrum.background is None
            else spectrum.background.summary(),
            "counts": spectrum.counts,
        }
        entries.append(entry)
        if plots and spectrum.background is not None:
            title = f"{model.method} {check.label}: {entry['status'].upper()}"
            plot_paths.append(
                plot_fit(
                    edges,
                    spectrum.counts,
                    spectrum.background.nominal,
                    output / f"spectrum_{check.label}.png",
                    title=title,
                )
            )
    _log_table(entries, report.passed)
    out = {
        "command": "sculpting",
        "adhunt_version": adhunt.__version__,
        "passed": report.passed,
        "model": {
            "dir": None if model_dir is None else str(model_dir),
            "method": model.method,
            "region": str(model.region),
            "features": list(model.features),
            "n_folds": model.n_folds,
            "seed": model.seed,
        },
        "input": {
            "features": str(features) if not isinstance(features, pd.DataFrame) else "<DataFrame>",
            "datasets": datasets,
            "n_events": len(data),
            "mode_requested": mode,
            "events_per_mode": used_mode,
        },
        "config": config_to_dict(cfg),
        "thresholds": config_to_dict(thr),
        "fit_range": list(fit_range),
        "fit_range_source": source,
        "edges": list(edges),
        "cuts": entries,
        "plots": [p.name for p in plot_paths],
        "timing": {"total_s": time.perf_counter() - t0},
    }
    json_path = write_json(output / "sculpting.json", out)
    logger.info("wrote %s", json_path)
    out = json.loads(json_path.read_text())
    return SculptingJobResult(output, out, report.passed, json_path, tuple(plot_paths))


def _log_table(entries: list[dict[str, Any]], passed: bool) -> None:
    def fmt(value: Any) -> str:
        return "-" if value is None else f"{value:.3g}"

    logger.info(
        "%-10s %8s %7s %7s %9s %9s %9s  %s",
        "cut", "events", "eff SR", "eff SB", "fit p", "KS p", "LEE p", "result",
    )  # fmt: skip
    for e in entries:
        logger.info(
            "%-10s %8d %7s %7s %9s %9s %9s  %s%s",
            e["label"],
            e["n_events"],
            fmt(e["efficiency_sr"]),
            fmt(e["efficiency_sb"]),
            fmt(e.get("fit_p_value")),
            fmt(e.get("ks_p_value_bonferroni")),
            fmt(e.get("global_p_value_two_sided")),
            e["status"].upper(),
            "" if e["status"] == "pass" else f" ({'; '.join(e.get('reasons') or [])})",
        )
    logger.info("sculpting check %s", "PASSED" if passed else "FAILED")


def sculpting(
    features: FeaturesOption,
    model: Annotated[Path, typer.Option("--model", help="Model directory (adhunt train).")],
    output: OutputDirOption,
    datasets: DatasetsOption = None,
    toys: ToysOption = 100,
    mode: Annotated[
        str,
        typer.Option(
            "--mode", help="auto (k-fold for events the model trained on), kfold or ensemble."
        ),
    ] = "auto",
    efficiencies: EfficienciesOption = "0.1,0.01,0.001",
    seed: SeedOption = 0,
    width: WidthOption = 400.0,
    step: StepOption = 100.0,
    scan_range: RangeOption = None,
    fit_range: FitRangeOption = None,
    no_plots: NoPlotsOption = False,
    overwrite: OverwriteOption = False,
    allow_duplicates: AllowDuplicatesOption = False,
    allow_partial: AllowPartialOption = False,
) -> None:
    """Check that the model's score cuts do not sculpt the mjj spectrum (exit 1 if they do)."""
    from adhunt.bumphunt import ScanConfig
    from adhunt.models.artifact import ArtifactError
    from adhunt.tables import partial_reading

    checked_output(output, command="sculpting", overwrite=overwrite, code=2)
    try:
        cfg = ScanConfig(
            efficiencies=efficiencies, n_toys=toys, seed=seed, window_width=width,
            window_step=step, scan_range=scan_range, fit_range=fit_range,
        )  # fmt: skip
        with partial_reading(allow_partial):
            result = run_sculpting(
                features, model, output, datasets=split_list(datasets), mode=mode, config=cfg,
                plots=not no_plots, overwrite=overwrite, allow_duplicates=allow_duplicates,
            )  # fmt: skip
    except (ArtifactError, ValueError, KeyError, FileNotFoundError, ImportError) as exc:
        logger.error("%s", exc)
        raise typer.Exit(code=2) from exc
    if not result.passed:
        raise typer.Exit(code=1)

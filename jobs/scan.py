"""``adhunt scan``: the sliding-window bump hunt, one model trained per window.

The command parses options and wires: feature tables (+ optional injected signal) ->
:func:`adhunt.models.window_scorer` (per-window k-fold training) -> :func:`adhunt.bumphunt.scan`
(cuts, background fits, local and global significance) on the chosen executor -> ``scan.json``
and plots. Everything it computes lives in the core; see :mod:`adhunt.bumphunt`.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer

from adhunt.bumphunt import NO_CUT, ScanConfig, ScanResult, cut_label
from adhunt.jobs.options import (
    AllowDuplicatesOption,
    AllowPartialOption,
    ClusterConfigOption,
    ClusterOption,
    ConfigOption,
    CoresOption,
    DatasetsOption,
    DryRunOption,
    EfficienciesOption,
    ExecutorOption,
    FeaturesOption,
    FitRangeOption,
    MaxJobsOption,
    MemoryOption,
    NoPlotsOption,
    OutputDirOption,
    OverwriteOption,
    QueueOption,
    RangeOption,
    SchedulerOption,
    StepOption,
    ToysOption,
    WalltimeOption,
    WidthOption,
    WorkersOption,
    checked_output,
)
from adhunt.schema import RESONANT_VARIABLE

logger = logging.getLogger(__name__)

__all__ = ["NO_CUT", "SCAN_JSON_KEYS", "ScanJobResult", "cut_label", "run_scan", "scan"]

#: Top-level keys of ``scan.json`` (documented contract, checked by the tests).
SCAN_JSON_KEYS = (
    "command",
    "adhunt_version",
    "config",
    "method_config",
    "executor",
    "seeds",
    "input",
    "edges",
    "fit_range",
    "fit_range_source",
    "cuts",
    "windows",
    "skipped_windows",
    "results",
    "no_cut_background_fit",
    "best",
    "truth_window",
    "sic",
    "global_method",
    "plots",
    "models",
    "timing",
)


@dataclass(frozen=True, eq=False)
class ScanJobResult:
    """What :func:`run_scan` produced: the core result, the ``scan.json`` content, the files."""

    output: Path
    result: ScanResult
    report: dict[str, Any]
    json_path: Path
    plots: tuple[Path, ...]
    model_dirs: tuple[Path, ...] = ()


def has_truth(data: Any) -> bool:
    """Truth labels usable for ROC/SIC: the column exists and every event is 0 or 1."""
    return "truth_label" in data.columns and bool(data["truth_label"].isin((0, 1)).all())


def prepare_output(output: Path, overwrite: bool, command: str = "scan") -> Path:
    """Check the output directory before any work (:func:`adhunt.outputs.check_output_dir`)
    and create it."""
    from adhunt.outputs import check_output_dir

    output = check_output_dir(output, command=command, overwrite=overwrite)
    output.mkdir(parents=True, exist_ok=True)
    return output


def load_inputs(
    features: Any,
    cfg: ScanConfig,
    reference: Any | None = None,
    uses_truth: bool = False,
    allow_duplicates: bool = False,
) -> tuple[Any, Any | None, dict[str, Any]]:
    """The data table (with injected signal), the reference table and their provenance.

    Repeated (run, event) keys are an error unless ``allow_duplicates``.
    """
    import pandas as pd

    from adhunt.dijet import required_columns
    from adhunt.injection import inject_signal
    from adhunt.provenance import check_tables_agree
    from adhunt.tables import check_unique_events, read_table

    allow = {"allow_duplicates": allow_duplicates}

    columns = required_columns(cfg.features) + (["truth_label"] if uses_truth else [])
    check_tables_agree(
        {"--features": features, "--signal": cfg.signal_dir, "--reference": cfg.reference_dir}
    )
    info: dict[str, Any] = {}
    datasets = list(cfg.datasets) if cfg.datasets else None
    if isinstance(features, pd.DataFrame):
        data = features
        if datasets is not None:
            if "dataset" not in data.columns:
                raise ValueError("datasets given but the feature table has no 'dataset' column")
            missing = sorted(set(datasets) - set(data["dataset"]))
            if missing:
                raise ValueError(f"feature table has no dataset(s) {missing}")
            data = data[data["dataset"].isin(datasets)].reset_index(drop=True)
        check_unique_events(data, "feature table", **allow)
    else:
        data = read_table(Path(features), datasets, columns, what="--features", **allow)
    if "dataset" in data.columns:
        info["datasets"] = sorted(set(map(str, data["dataset"])))
    if cfg.inject is not None:
        signal = read_table(
            Path(cfg.signal_dir), cfg.signal_datasets, columns, what="--signal", **allow
        )
        data = inject_signal(data, signal, cfg.inject, cfg.seed)
        check_unique_events(data, "--features with the injected --signal", **allow)
        info["injection"] = {
            "signal_dir": cfg.signal_dir,
            "signal_datasets": cfg.signal_datasets,
            "n_injected": cfg.inject,
            "seed": cfg.seed,
        }
    if reference is None and cfg.reference_dir is not None:
        reference = read_table(
            Path(cfg.reference_dir), cfg.reference_datasets, columns, what="--reference", **allow
        )
    if len(data) == 0:
        raise ValueError("feature table has no events")
    mjj = data[RESONANT_VARIABLE].to_numpy(dtype=np.float64)
    if not np.all(np.isfinite(mjj)):
        raise ValueError(
            f"column {RESONANT_VARIABLE!r} has {int((~np.isfinite(mjj)).sum())} NaN/inf value(s)"
        )
    info["features_dir"] = None if isinstance(features, pd.DataFrame) else str(features)
    info["reference_dir"] = cfg.reference_dir
    info["n_reference"] = None if reference is None else len(reference)
    info["n_events"] = len(data)
    info["mjj_range"] = [float(mjj.min()), float(mjj.max())]
    if has_truth(data):
        info["truth"] = {
            "n_signal": int((data["truth_label"] == 1).sum()),
            "n_background": int((data["truth_label"] == 0).sum()),
        }
    return data, reference, info


def _check_columns(data: Any, cfg: ScanConfig) -> None:
    from adhunt.dijet import with_derived_features

    needed = [*cfg.features, RESONANT_VARIABLE, "run", "event"]
    missing = [c for c in needed if c not in with_derived_features(data.head(1), cfg.features)]
    if missing:
        raise ValueError(
            f"feature table lacks column(s) {missing} needed by the scan "
            f"(features {list(cfg.features)}); it has {list(data.columns)}"
        )


def run_scan(
    features: Any,
    output: str | Path,
    config: ScanConfig | None = None,
    *,
    executor: Any | None = None,
    reference: Any | None = None,
    overwrite: bool = False,
    progress: Callable[[str, int, int], None] | None = None,
    allow_duplicates: bool = False,
) -> ScanJobResult:
    """Run :func:`adhunt.bumphunt.scan` with per-window training; write ``scan.json`` and plots.

    ``features``: a feature directory or a DataFrame. ``executor``: an
    :class:`adhunt.jobs.executors.ExecutorConfig` (default: iterative). Windows and toy batches
    are tasks; the same inputs and seed give the same ``scan.json`` (apart from ``timing``) on
    every executor. Repeated (run, event) keys are an error unless ``allow_duplicates``.
    """
    import adhunt
    from adhunt.bumphunt import scan as core_scan
    from adhunt.config import config_to_dict, write_json
    from adhunt.dijet import with_derived_features
    from adhunt.jobs.executors import ExecutorConfig, task_pool
    from adhunt.models.registry import get_method
    from adhunt.models.windows import method_config, window_scorer
    from adhunt.provenance import make_provenance, provenance_extra

    t_start = time.perf_counter()
    cfg = config or ScanConfig()
    exe = executor or ExecutorConfig()
    cls = get_method(cfg.method)
    mcfg = method_config(
        cfg.method, cfg.method_config, backend=cfg.backend, n_ensemble=cfg.n_ensemble
    )
    if cls.needs_reference and reference is None and cfg.reference_dir is None:
        raise ValueError(f"method {cfg.method!r} needs a reference (true background) sample")
    if not cls.needs_reference and (reference is not None or cfg.reference_dir is not None):
        raise ValueError(f"method {cfg.method!r} does not use a reference sample")
    output = prepare_output(Path(output), overwrite)
    data, reference, info = load_inputs(
        features, cfg, reference, cls.uses_truth, allow_duplicates=allow_duplicates
    )
    _check_columns(data, cfg)
    data = with_derived_features(data, cfg.features)  # once, not in every window task
    if cls.uses_truth and not has_truth(data):
        raise ValueError(f"method {cfg.method!r} needs truth_label 0/1 on every event")
    truth = data["truth_label"].to_numpy().astype(np.int64) if has_truth(data) else None
    mjj = data[RESONANT_VARIABLE].to_numpy(dtype=np.float64)
    columns = list(
        dict.fromkeys(
            [*cfg.features, RESONANT_VARIABLE, "run", "event"]
            + (["truth_label"] if cls.uses_truth else [])
        )
    )
    record = make_provenance(
        "scan",
        features,
        info.get("datasets"),
        injection=info.get("injection"),
        reference=cfg.reference_dir,
        reference_datasets=cfg.reference_datasets,
        n_reference=info["n_reference"],
        truth_counts=info.get("truth"),
        config=config_to_dict(mcfg),
    )
    model_root = output / "models" if cfg.save_models else None
    with task_pool(exe) as pool:
        cores = os.cpu_count() or 1
        threads = None if exe.remote else max(1, cores // pool.parallel)
        table = data[[c for c in columns if c in data.columns]]
        trainer = window_scorer(
            pool.share(table),
            cfg,
            reference=None if reference is None else pool.share(reference),
            num_threads=threads,
            save_dir=model_root,
            extra=provenance_extra(record),
        )
        result = core_scan(mjj, trainer, cfg, truth=truth, mapper=pool.map, progress=progress)
    plots = result.plot(output, cfg.method) if cfg.plots else []
    model_dirs = sorted(p for p in model_root.iterdir() if p.is_dir()) if model_root else []
    extra = {
        "command": "scan",
        "adhunt_version": adhunt.__version__,
        "method_config": config_to_dict(mcfg),
        "executor": dataclasses.asdict(exe),
        "seeds": {
            "training": cfg.seed,
            "injection": cfg.seed if cfg.inject is not None else None,
            "toys_no_cut": "SeedSequence([seed, 0, batch])",
            "toys_cut": "SeedSequence([seed, 1, cut index, window index])",
        },
        "input": info,
        "sic": _sic(result),
        "plots": [p.name for p in plots],
        "models": [str(p) for p in model_dirs],
        "timing": {
            "total_s": time.perf_counter() - t_start,
            "windows_s": [w.seconds for w in result.windows],
        },
    }
    merged = {**extra, **result.to_dict()}
    json_path = write_json(output / "scan.json", {k: merged[k] for k in SCAN_JSON_KEYS})
    logger.info("wrote %s", json_path)
    report = json.loads(json_path.read_text())  # the in-memory report is exactly the file's
    return ScanJobResult(output, result, report, json_path, tuple(plots), tuple(model_dirs))


def _sic(result: ScanResult) -> dict[str, Any] | None:
    from adhunt.performance import curve_for_json

    out: dict[str, Any] = {}
    best = result.best()
    for name, w in (
        ("best_window", best[1] if best else None),
        ("truth_window", result.truth_window),
    ):
        if w is not None and w.roc is not None:
            entry = curve_for_json(w.roc, max_points=100)
            entry["window"] = [w.low, w.high]
            out[name] = entry
    return out or None


# --------------------------------------------------------------------------------------------------
# Command


def scan(
    features: FeaturesOption,
    output: OutputDirOption,
    config: ConfigOption = None,
    method: Annotated[
        str | None,
        typer.Option(
            "--method",
            help="cwola (default), cathode, anode, ranode, iad, supervised. Scan-safe: see README.",
        ),
    ] = None,
    windows: Annotated[
        str | None, typer.Option("--windows", help="Explicit windows LOW:HIGH,LOW:HIGH,... (GeV).")
    ] = None,
    width: WidthOption = None,
    step: StepOption = None,
    scan_range: RangeOption = None,
    fit_range: FitRangeOption = None,
    sideband_width: Annotated[
        str | None,
        typer.Option("--sideband-width", help="Training sidebands: window (default), all, or GeV."),
    ] = None,
    folds: Annotated[
        int | None, typer.Option("--folds", help="k of the k-fold training (5).")
    ] = None,
    seed: Annotated[int | None, typer.Option("--seed", help="Seed of every random step.")] = None,
    backend: Annotated[
        str | None, typer.Option("--backend", help="Classifier back-end: hgb or mlp.")
    ] = None,
    efficiencies: EfficienciesOption = None,
    toys: ToysOption = None,
    method_config: Annotated[
        Path | None, typer.Option("--method-config", help="YAML/TOML with the method's config.")
    ] = None,
    features_list: Annotated[
        str | None, typer.Option("--features-list", help="Comma-separated input features.")
    ] = None,
    datasets: DatasetsOption = None,
    inject: Annotated[
        int | None, typer.Option("--inject", help="Inject N signal events from --signal.")
    ] = None,
    signal: Annotated[
        Path | None, typer.Option("--signal", help="Signal feature table for --inject.")
    ] = None,
    signal_datasets: Annotated[str | None, typer.Option("--signal-datasets")] = None,
    reference: Annotated[
        Path | None, typer.Option("--reference", help="True-background feature table (iad).")
    ] = None,
    executor: ExecutorOption = "iterative",
    workers: WorkersOption = None,
    scheduler: SchedulerOption = None,
    cluster: ClusterOption = None,
    cluster_config: ClusterConfigOption = None,
    cores: CoresOption = None,
    memory: MemoryOption = None,
    walltime: WalltimeOption = None,
    queue: QueueOption = None,
    max_jobs: MaxJobsOption = None,
    dry_run: DryRunOption = False,
    decorrelate: Annotated[
        str | None,
        typer.Option(
            "--decorrelate", help="none (default) | qr: cut on the mjj-decorrelated score."
        ),
    ] = None,
    save_models: Annotated[
        bool, typer.Option("--save-models", help="Keep each window's model in models/LOW_HIGH/.")
    ] = False,
    no_plots: NoPlotsOption = False,
    overwrite: OverwriteOption = False,
    allow_duplicates: AllowDuplicatesOption = False,
    allow_partial: AllowPartialOption = False,
) -> None:
    """Sliding-window bump hunt: train per window (k-fold), cut, fit, local and global Z."""
    checked_output(output, command="scan", overwrite=overwrite)
    from adhunt.config import config_from_dict, config_to_dict, load_config
    from adhunt.jobs.executors import executor_from_options, print_job_script
    from adhunt.jobs.reporting import progress_bar
    from adhunt.tables import partial_reading

    overrides = {
        "method": method, "windows": windows, "window_width": width, "window_step": step,
        "scan_range": scan_range, "fit_range": fit_range, "sideband_width": sideband_width,
        "folds": folds, "seed": seed, "backend": backend, "efficiencies": efficiencies,
        "n_toys": toys, "method_config": None if method_config is None else str(method_config),
        "features": features_list, "datasets": datasets, "inject": inject,
        "signal_dir": None if signal is None else str(signal), "signal_datasets": signal_datasets,
        "reference_dir": None if reference is None else str(reference),
        "save_models": True if save_models else None, "plots": False if no_plots else None,
        "decorrelate": decorrelate,
    }  # fmt: skip
    try:
        exe = executor_from_options(
            executor, workers, 100_000, scheduler, False, cluster, cluster_config,
            cores=cores, memory=memory, walltime=walltime, queue=queue, maximum_jobs=max_jobs,
        )  # fmt: skip
        if dry_run:
            print_job_script(exe)
            return
        base = load_config(ScanConfig, config) if config is not None else ScanConfig()
        merged = config_to_dict(base)
        merged.update({k: v for k, v in overrides.items() if v is not None})
        cfg = config_from_dict(ScanConfig, merged)
        with partial_reading(allow_partial), progress_bar() as bar:
            tasks: dict[str, Any] = {}

            def report(stage: str, done: int, total: int) -> None:
                if stage not in tasks:
                    tasks[stage] = bar.add_task(f"scan {cfg.method}: {stage}", total=total)
                bar.update(tasks[stage], completed=done, total=total)

            result = run_scan(
                features, output, cfg, executor=exe, overwrite=overwrite, progress=report,
                allow_duplicates=allow_duplicates,
            )  # fmt: skip
    except (
        ValueError,
        KeyError,
        ImportError,
        FileNotFoundError,
        TypeError,
        ConnectionError,
    ) as exc:
        logger.error("%s", exc)
        raise typer.Exit(code=2) from exc
    best = result.report["best"]
    if best is not None:
        logger.info("best: %s window %s local Z %.2f", best["cut"], best["window"], best["local_z"])

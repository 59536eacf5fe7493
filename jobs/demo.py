"""``adhunt demo``: the whole search on a small sample it generates itself, in a few minutes.

    generate (Pythia 8: QCD + a few hundred W' -> X Y events)    -> ROOT files + fileset.json
    features (Coffea processor on a dask LocalCluster)           -> cutflow, features.png
    train    (CWoLa hunting with boosted trees, k-fold, SR window; or CATHODE with --method)
    infer    (inference processor on the same cluster)           -> histograms.json / .root / .pkl
    fit      (dijet fit with the SR masked, before/after the anomaly cut) -> Z, spectra plots, demo.json

Generated samples are cached under ``--cache-dir`` (keyed by their full configuration), so a second
run skips generation. The injected signal is generated as its own dataset and merged into "data":
truth labels are kept only to report how much signal the cut kept and to draw the SIC curve; the
anomaly-detection method never sees them (the training API strips them).
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

from adhunt.jobs.options import OverwriteOption, checked_output

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DemoConfig:
    """Everything that determines a demo run. Echoed into ``demo.json``."""

    qcd_events: int = 40_000
    signal_events: int = 200
    seed: int = 20_261_124
    workers: int = 2
    method: str = "cwola"
    backend: str = "hgb"
    window: tuple[float, float] = (3300.0, 3700.0)
    folds: int = 5
    efficiencies: tuple[float, ...] = (0.1, 0.02, 0.01)
    chunksize: int = 10_000
    #: None: from the data, above the trigger turn-on (as `adhunt scan`); (low, high) in GeV.
    fit_range: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "window", tuple(float(v) for v in self.window))
        object.__setattr__(self, "efficiencies", tuple(float(e) for e in self.efficiencies))
        if self.fit_range is not None:
            object.__setattr__(self, "fit_range", tuple(float(v) for v in self.fit_range))
        if self.qcd_events < 1 or self.signal_events < 0:
            raise ValueError("qcd_events must be >= 1 and signal_events >= 0")
        if self.workers < 1:
            raise ValueError(f"workers must be >= 1, got {self.workers}")
        if len(self.window) != 2 or not self.window[0] < self.window[1]:
            raise ValueError(f"window must be (low, high) with low < high, got {self.window}")
        if not all(0.0 < e < 1.0 for e in self.efficiencies):
            raise ValueError(f"efficiencies must lie in (0, 1), got {self.efficiencies}")


@dataclass
class DemoResult:
    """What a demo run measured; ``significance`` maps cut label -> window result dict."""

    output: Path
    cutflow: dict[str, dict[str, int]]
    significance: dict[str, dict[str, Any]]
    timings: dict[str, float]
    files: dict[str, Path]


def cached_sample(
    config: Any,
    cache_dir: Path,
    workers: int,
    progress: Callable[[int], None] | None = None,
) -> Path:
    """Directory holding the generated sample of ``config`` (a ``GenerationConfig``), made once.

    The key covers the full configuration and the generator versions, so any change regenerates;
    a ``.complete`` marker written last means an interrupted run is never mistaken for a sample.
    """
    import importlib.metadata

    import adhunt
    import adhunt.detector
    import adhunt.generation
    import adhunt.jets
    import adhunt.rootio
    from adhunt.config import config_to_dict
    from adhunt.generation import generate_to_root

    digest = hashlib.sha256(json.dumps(config_to_dict(config), sort_keys=True).encode())
    digest.update(importlib.metadata.version("pythia8mc").encode())
    digest.update(adhunt.__version__.encode())
    # ... and the generator's own code: a changed detector model or file schema must regenerate.
    for module in (adhunt.generation, adhunt.detector, adhunt.rootio, adhunt.jets):
        digest.update(Path(module.__file__).read_bytes())
    key = digest.hexdigest()[:16]
    directory = Path(cache_dir) / f"{config.process}-{key}"
    marker = directory / ".complete"
    if marker.exists():
        logger.info("reusing cached %s sample %s", config.process, directory)
        return directory
    shutil.rmtree(directory, ignore_errors=True)
    generate_to_root(config, directory, workers=workers, progress_callback=progress)
    marker.write_text(key + "\n")
    return directory


def run_demo(
    output: Path,
    config: DemoConfig | None = None,
    cache_dir: Path = Path(".cache/demo"),
    fileset: Path | None = None,
    overwrite: bool = False,
) -> DemoResult:
    """Run the whole chain; ``fileset`` skips generation and uses existing samples instead.

    ``output`` must be new, empty or an earlier demo output, unless ``overwrite``."""
    import numpy as np

    from adhunt.bumphunt import ScanConfig, bump_hunt, resolve_fit_range
    from adhunt.config import config_to_dict
    from adhunt.feature_plots import plot_feature_distributions
    from adhunt.fitting import FitError
    from adhunt.generation import FILESET_NAME, GenerationConfig
    from adhunt.histograms import cut_spectra
    from adhunt.jobs.executors import ExecutorConfig
    from adhunt.jobs.features import cutflow_table, run_features
    from adhunt.jobs.infer import run_infer
    from adhunt.jobs.reporting import console, progress_bar
    from adhunt.jobs.train import run_train
    from adhunt.outputs import check_output_dir
    from adhunt.performance import plot_sic, roc_sic
    from adhunt.plotting import plot_fit
    from adhunt.rootio import read_fileset, write_fileset
    from adhunt.schema import SCAN_FEATURES
    from adhunt.tables import read_features

    cfg = config or DemoConfig()
    output = check_output_dir(output, command="demo", overwrite=overwrite)
    output.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    files: dict[str, Path] = {}
    lo, hi = cfg.window

    # 1. events -----------------------------------------------------------------------------
    t0 = time.perf_counter()
    if fileset is None:
        samples = [
            GenerationConfig(process="qcd", n_events=cfg.qcd_events, seed=cfg.seed),
            GenerationConfig(process="wprime", n_events=cfg.signal_events, seed=cfg.seed + 1),
        ]
        datasets: dict[str, Any] = {}
        with progress_bar() as bar:
            for sample in samples:
                if sample.n_events == 0:
                    continue
                task = bar.add_task(f"generate {sample.process}", total=sample.n_events)
                directory = cached_sample(
                    sample, cache_dir, cfg.workers, lambda n, t=task: bar.advance(t, n)
                )
                bar.update(task, completed=sample.n_events)
                datasets.update(read_fileset(directory / FILESET_NAME))
        fileset = write_fileset(output / FILESET_NAME, datasets)
    timings["generate"] = time.perf_counter() - t0
    files["fileset"] = Path(fileset)

    # 2. features on a local dask cluster ----------------------------------------------------------
    t0 = time.perf_counter()
    features_dir = output / "features"
    logger.info("extracting features on a dask LocalCluster with %d workers", cfg.workers)
    feats = run_features(
        fileset, features_dir, executor="dask", workers=cfg.workers, chunksize=cfg.chunksize
    )
    timings["features"] = time.perf_counter() - t0
    console.print(cutflow_table(feats.cutflow, "cutflow"))
    table = read_features(features_dir)
    files["features_plot"] = plot_feature_distributions(table, output / "features.png")

    # 3. train the anomaly detector on the SR window (k-fold; truth never used) -------------------
    t0 = time.perf_counter()
    model_dir = output / "model"
    with progress_bar() as bar:
        task = bar.add_task(f"train {cfg.method} ({cfg.folds} folds)", total=cfg.folds)
        model = run_train(
            cfg.method,
            features_dir,
            model_dir,
            # Scan-safe CWoLa: masses scaled by mjj and sidebands adjacent to the window, so that
            # the cut does not sculpt a bump out of the QCD mass-mjj correlation (README).
            window=f"{lo:g}:{hi:g}:{hi - lo:g}",
            features=list(SCAN_FEATURES),
            folds=cfg.folds,
            seed=cfg.seed,
            backend=cfg.backend
            if cfg.method in ("cwola", "iad", "supervised", "cathode")
            else None,
            overwrite=True,
            progress=lambda done, total: bar.update(task, completed=done, total=total),
        )
    timings["train"] = time.perf_counter() - t0
    files["model"] = model_dir

    # 4. distributed inference into histograms -----------------------------------------------------
    t0 = time.perf_counter()
    infer = run_infer(
        fileset,
        {cfg.method: model_dir},
        output / "inference",
        ExecutorConfig("dask", workers=cfg.workers, chunksize=cfg.chunksize),
        reference=features_dir,
        efficiencies=cfg.efficiencies,
        mode="kfold",
    )
    timings["infer"] = time.perf_counter() - t0
    files.update({f"inference_{k}": Path(v) for k, v in infer.paths.items()})

    # 5. fit each post-cut spectrum with the SR masked ------------------------------------------
    t0 = time.perf_counter()
    spectra = cut_spectra(infer.histogram, cfg.method)  # all datasets: the "data"
    signal_spectra = (
        cut_spectra(infer.histogram, cfg.method, dataset="wprime")
        if "wprime" in infer.histogram.axes["dataset"]
        else None
    )
    # min_events 20 (not the scan default 50): the tightest cut keeps a few dozen events outside
    # the SR of this small sample, which a binned Poisson likelihood still fits reliably.
    scan_config = ScanConfig(
        windows=((lo, hi),), n_toys=0, min_fit_events=20.0, fit_range=cfg.fit_range
    )
    uncut = next(iter(spectra.values()))
    fit_range, _ = resolve_fit_range(
        uncut.axes[0].edges, np.asarray(uncut.values(), dtype=float), scan_config
    )
    significance: dict[str, dict[str, Any]] = {}
    reports = {}
    for label, spectrum in spectra.items():
        try:  # one cut whose spectrum cannot be fit (too few events) must not hide the others
            reports[label] = bump_hunt({label: spectrum}, scan_config, fit_range=fit_range)[label]
        except (FitError, ValueError) as err:
            logger.warning("cut %s: %s", label, err)
            significance[label] = {"status": "fit_failed", "reason": str(err)}
    for label, cut in reports.items():
        window = cut.windows[0]
        entry = window.to_dict()
        if signal_spectra is not None:
            h = signal_spectra[label]
            edges = h.axes[0].edges
            in_sr = (edges[:-1] >= window.low - 1e-6) & (edges[1:] <= window.high + 1e-6)
            entry["true_signal_in_sr"] = float(np.asarray(h.values())[in_sr].sum())
        significance[label] = entry
        if window.fit is not None:
            safe = label.replace("%", "pct").replace(" ", "_")
            files[f"spectrum_{safe}"] = plot_fit(
                cut.edges,
                cut.counts,
                window.fit,
                output / f"spectrum_{safe}.png",
                signal_region=(window.low, window.high),
                title=f"cut {label}: local Z = {window.z_signed:+.2f}"
                if window.status == "ok"
                else f"cut {label}: {window.status}",
            )
    significance = {label: significance[label] for label in spectra}  # cut order
    timings["fit"] = time.perf_counter() - t0

    # SIC of the score on the SR events (truth only for this plot) --------------------------------
    in_sr = (table["mjj"] >= lo) & (table["mjj"] < hi) & table["truth_label"].isin((0, 1))
    sr = table[in_sr]
    if sr["truth_label"].nunique() == 2:
        scores = model.score(sr, mode="kfold")
        sic = roc_sic(sr["truth_label"].to_numpy(), scores, min_background=10)
        files["sic"] = plot_sic({cfg.method: sic}, output / "sic.png", title="signal region")

    _print_summary(console, significance, cfg)
    summary = {
        "config": config_to_dict(cfg),
        "cutflow": feats.cutflow,
        "significance": significance,
        "timings_s": timings,
        "files": {k: str(v) for k, v in files.items()},
    }
    (output / "demo.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    return DemoResult(output, feats.cutflow, significance, timings, files)


def _print_summary(console: Any, significance: dict[str, dict[str, Any]], cfg: DemoConfig) -> None:
    from rich.table import Table

    lo, hi = cfg.window
    table = Table(title=f"signal region {lo:g}-{hi:g} GeV: dijet fit with the SR masked")
    for col in ("cut", "observed", "expected bkg", "true signal", "local Z"):
        table.add_column(col, justify="right")
    for label, entry in significance.items():
        if entry.get("status") != "ok":
            table.add_row(label, "-", "-", "-", f"fit {entry.get('status')}: {entry.get('reason')}")
            continue
        table.add_row(
            label,
            f"{entry['observed']:.0f}",
            f"{entry['expected']:.1f} ± {entry['expected_error']:.1f}",
            f"{entry.get('true_signal_in_sr', float('nan')):.0f}",
            f"{entry['z_signed']:+.2f}",
        )
    console.print(table)
    ok = {k: v for k, v in significance.items() if v.get("status") == "ok"}
    if len(ok) >= 2:
        before = next(iter(ok.values()))["z_signed"]
        best_label, best = max(ok.items(), key=lambda kv: kv[1]["z_signed"])
        console.print(
            f"[bold]local significance: {before:+.2f} sigma before the anomaly cut, "
            f"{best['z_signed']:+.2f} sigma after the {best_label} cut[/bold]"
        )


def demo(
    output: Annotated[Path, typer.Option("--output", "-o", help="Output folder.")] = Path(
        "demo-output"
    ),
    qcd_events: Annotated[
        int, typer.Option(help="QCD events to generate.")
    ] = DemoConfig.qcd_events,
    signal_events: Annotated[
        int, typer.Option(help="W' signal events to inject.")
    ] = DemoConfig.signal_events,
    seed: Annotated[int, typer.Option(help="Seed of generation and training.")] = DemoConfig.seed,
    workers: Annotated[
        int, typer.Option(help="Generation processes and dask workers.")
    ] = DemoConfig.workers,
    method: Annotated[
        str, typer.Option(help="Anomaly detector: cwola (fast) or cathode.")
    ] = DemoConfig.method,
    fileset: Annotated[
        Path | None, typer.Option(help="Use existing samples instead of generating.")
    ] = None,
    cache_dir: Annotated[Path, typer.Option(help="Cache of generated samples.")] = Path(
        ".cache/demo"
    ),
    overwrite: OverwriteOption = False,
) -> None:
    """The whole chain on a small generated sample: features, training, inference, fit."""
    from adhunt.jobs.reporting import console

    checked_output(output, command="demo", overwrite=overwrite)

    try:
        config = DemoConfig(
            qcd_events=qcd_events,
            signal_events=signal_events,
            seed=seed,
            workers=workers,
            method=method,
        )
    except ValueError as err:
        raise typer.BadParameter(str(err)) from err
    from adhunt.models.artifact import ArtifactError
    from adhunt.processors.features import FeatureInputError

    start = time.perf_counter()
    try:
        result = run_demo(output, config, cache_dir=cache_dir, fileset=fileset, overwrite=overwrite)
    except (FileNotFoundError, ValueError, FeatureInputError, ArtifactError) as err:
        logger.error("%s", err)
        raise typer.Exit(code=2) from err
    console.print(
        f"demo finished in {time.perf_counter() - start:.0f} s; outputs in {result.output}: "
        + ", ".join(sorted(p.name for p in result.files.values()))
    )

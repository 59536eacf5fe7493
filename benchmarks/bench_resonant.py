"""Resonant anomaly-detection benchmark on an LHCO-like generated sample: every method, one table.

The recipe of the LHC Olympics R&D comparisons, on our own Pythia 8 sample (QCD dijets + W'(3.5 TeV)
-> X(500) Y(100)), so anyone can rerun it from scratch:

1. samples: ``adhunt.generation`` (500k triggered QCD, 25k W'), unless the data dir already has them;
2. features: ``adhunt.jobs.features.run_features`` (futures executor), cached in the output dir;
3. splits by an event hash (independent of the k-fold hash): QCD -> "data" background (60%), an
   idealized-AD reference background (20%) and a labelled test background (20%); W' -> an
   injection pool and a disjoint test signal set (50/50);
4. inject N signal events into the data, train every method (k-fold, via the models API), score the
   test set's signal-region events with the fold ensemble (test events are independent of training),
   and print max SIC (with a minimum background count behind each point), AUC and wall times;
5. max SIC versus the number of injected signal events for CATHODE and IAD (both retrained per
   injection: the sideband flow sees the injected signal that lands in the sidebands, and the models
   API trains it inside ``fit``, so it is not reused);
   ``--methods`` takes any method of the registry (``adhunt.models.registry``), so methods added
   later (ae, vae, tnt, force) join with ``--methods ...,ae,vae``; ``--combine cwola+ae`` adds
   the rank-averaged combination of two trained methods (``adhunt.models.combine``);
   ``NAME-img`` (``ae-img``, ``vae-img``, ``tnt-img``) is method NAME on the two jet images
   (``inputs: images``, convolutional networks) instead of feature columns: it needs ``--images N``
   (N x N images computed in step 2, cached in their own ``--features-dir``) and takes
   ``--image-epochs`` as its networks' epoch cap;
5b. the same table (max SIC and AUC) for ``--scan-methods`` at every ``--injection-scan`` size
   (default 300, 1000, 3000), and ``sic_vs_injection.png``: max SIC versus injected signal;
5c. sculpting (``--sculpt-method``, default cwola; the literature's case is an autoencoder): the
   method trained on signal-free data, the mjj spectrum after a cut keeping 1% of the SR events
   on the raw score and on the QR-decorrelated score (``adhunt.models.decorrelation``), each
   fitted with the dijet function (``adhunt.fitting.fit_background``: p-value, chi2/ndf) and
   KS-compared with the uncut spectrum; ``sculpting.png`` shows the three spectra;
6. speed: CATHODE end to end on all the QCD we have (+ injected signal), and the reference flow
   (15-block MAF x 128, batch 256) capped at a few epochs on the same sidebands, projected to the
   ~27 epochs it needs.

    nice -n 5 python benchmarks/bench_resonant.py                       # everything, defaults
    nice -n 5 python benchmarks/bench_resonant.py --threads 1           # on a crowded machine
    python benchmarks/bench_resonant.py --methods cwola,iad,supervised --combine cwola+iad \
        --scan-methods cwola,iad --injection-scan 300,1000,3000 --qcd-limit 100000 --no-speed
    python benchmarks/bench_resonant.py --methods iad,cathode --injection-scan '' --no-speed
    python benchmarks/bench_resonant.py --generate --qcd-events 100000 --signal-events 10000
    python benchmarks/bench_resonant.py --images 16 --features-dir bench-output/features16 \
        --methods cwola,ae,ae-img,vae-img --image-epochs 2 --no-speed --sculpt-method ''

``--threads`` sets torch's and OpenMP's thread counts (default 2, one per core). When other jobs
already keep the cores busy use 1: spinning OpenMP threads then make 2-thread training ~5-10x
slower (measured here: the default flow at 27 s/epoch with 2 threads, 3 s/epoch with 1).

The supervised reference is trained on the data background plus the whole labelled injection pool
(many signal events, as in the literature), not on the injected data. Absolute SIC values depend on
the detector model and the test-set size; compare methods with each other (expected ordering from
the literature: supervised > IAD ~ CATHODE ~ R-ANODE > CWoLa > ANODE).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import logging
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

log = logging.getLogger("bench_resonant")

ALL_METHODS = ("supervised", "iad", "cathode", "ranode", "cwola", "anode")
#: Sample recipe (``--generate``): process -> (events written, seed).
DEFAULT_SAMPLES = {"qcd": (500_000, 3001), "wprime": (25_000, 3002)}
#: Epochs the reference CATHODE flow needs on ~550k sideband events (measured, /work/shared/PHYSICS.md).
REFERENCE_EPOCHS = 27
#: Suffix of a method's jet-image variant (``ae-img``: ``ae`` with ``inputs: images``).
IMAGE_SUFFIX = "-img"
SPLIT_SALT = 0xBE7C  # event-hash salt of the data/reference/test split (kfold uses 0, validation 1)


# --------------------------------------------------------------------------------------------
# Samples and features
# --------------------------------------------------------------------------------------------


def ensure_samples(
    data_dir: Path, generate: bool, n_events: dict[str, int], workers: int
) -> dict[str, Path]:
    """Fileset JSON per process; generates the samples (Pythia 8) when asked or when missing."""
    from adhunt.generation import FILESET_NAME, GenerationConfig, generate_to_root

    filesets = {}
    for process, (_, seed) in DEFAULT_SAMPLES.items():
        out = data_dir / process
        fileset = out / FILESET_NAME
        if generate or not fileset.is_file():
            n = n_events[process]
            log.info("generating %d %s events (seed %d) into %s", n, process, seed, out)
            t0 = time.perf_counter()
            config = GenerationConfig(process=process, n_events=n, seed=seed)
            generate_to_root(config, out, workers=workers)
            log.info("generated %s in %.0f s", process, time.perf_counter() - t0)
        filesets[process] = fileset
    return filesets


def _file_key(name: str) -> str:
    """Identity of one input file (path, size, mtime): its features are redone when it changes."""
    st = Path(name).stat()
    return hashlib.sha256(json.dumps([name, st.st_size, int(st.st_mtime)]).encode()).hexdigest()[
        :16
    ]


def ensure_features(
    fileset: Path, features_dir: Path, workers: int, chunksize: int, images: int | None = None
) -> dict[str, list[Path]]:
    """Feature tables of every file of ``fileset``, one cached directory per input file.

    Per file so that an interrupted run, or a sample still being generated, only redoes the
    files that changed. Returns ``{dataset: [feature dir, ...]}`` in fileset order. ``images``:
    also write ``images`` x ``images`` jet images (``adhunt features --images``); the cache key
    records the size, so a cache without images (or of another size) is redone, not reused.
    """
    from adhunt.jobs.features import load_fileset, run_features
    from adhunt.processors.features import FeatureConfig

    config = FeatureConfig(images=True, image_size=images) if images else None

    out: dict[str, list[Path]] = {}
    for dataset, names in load_fileset(fileset).items():
        out[dataset] = []
        for name in names:
            target = features_dir / Path(name).name.removesuffix(".root")
            marker = target / "done.json"
            key = _file_key(name) + (f"-images{images}" if images else "")
            out[dataset].append(target)
            if marker.is_file() and json.loads(marker.read_text()).get("key") == key:
                log.info("features of %s: cached in %s", Path(name).name, target)
                continue
            t0 = time.perf_counter()
            result = run_features(
                {dataset: [name]},
                target,
                config,
                executor="futures",
                workers=workers,
                chunksize=chunksize,
            )
            if result.skipped:
                raise RuntimeError(f"feature extraction skipped inputs of {name}: {result.skipped}")
            seconds = time.perf_counter() - t0
            cutflow = result.cutflow.get(dataset, {})
            log.info("features of %s: %s in %.0f s", Path(name).name, cutflow, seconds)
            marker.write_text(
                json.dumps({"key": key, "seconds": seconds, "cutflow": cutflow}) + "\n"
            )
    return out


def read_clean(
    dirs: Sequence[Path], dataset: str, columns: Sequence[str], images: bool = False
) -> pd.DataFrame:
    """Feature rows of ``dataset`` from its per-file directories; events with non-finite inputs
    dropped. ``images``: with the jet-image pseudo-columns (``image_j1``, ``image_j2``)."""
    from adhunt.tables import read_features, read_images, with_image_columns

    def one(d: Path) -> pd.DataFrame:
        frame = read_features(d, [dataset])
        return with_image_columns(frame, read_images(d, [dataset])) if images else frame

    frame = pd.concat([one(d) for d in dirs], ignore_index=True)
    values = frame[list(columns)].to_numpy(np.float64)
    ok = np.all(np.isfinite(values), axis=1)
    if not ok.all():
        log.warning(
            "%s: dropped %d of %d events with NaN/inf features", dataset, (~ok).sum(), len(ok)
        )
    return frame[ok].reset_index(drop=True)


# --------------------------------------------------------------------------------------------
# Splits
# --------------------------------------------------------------------------------------------


@dataclass
class Splits:
    """Disjoint samples of one benchmark run."""

    data_bkg: pd.DataFrame  # QCD that plays the data (signal is injected into it)
    reference: pd.DataFrame  # QCD: the idealized AD's perfect background template
    test_bkg: pd.DataFrame  # QCD: labelled test background
    signal_pool: pd.DataFrame  # W': events to inject (and the supervised reference's signal)
    test_sig: pd.DataFrame  # W': labelled test signal


def hash_uniform(frame: pd.DataFrame, seed: int) -> np.ndarray:
    """Uniform [0, 1) number per event from its (run, event): the split survives any row order."""
    from adhunt.regions import event_hash

    h = event_hash(frame["run"].to_numpy(), frame["event"].to_numpy(), seed, salt=SPLIT_SALT)
    return (h >> np.uint64(11)).astype(np.float64) / float(2**53)


def make_splits(
    qcd: pd.DataFrame,
    signal: pd.DataFrame,
    seed: int,
    fractions: tuple[float, float] = (0.6, 0.2),
    signal_pool_fraction: float = 0.5,
) -> Splits:
    """QCD -> data / reference / test by event hash; signal -> injection pool / test."""
    u = hash_uniform(qcd, seed)
    f_data, f_ref = fractions
    v = hash_uniform(signal, seed)
    parts = (
        qcd[u < f_data],
        qcd[(u >= f_data) & (u < f_data + f_ref)],
        qcd[u >= f_data + f_ref],
        signal[v < signal_pool_fraction],
        signal[v >= signal_pool_fraction],
    )
    return Splits(*(p.reset_index(drop=True) for p in parts))


# --------------------------------------------------------------------------------------------
# Methods
# --------------------------------------------------------------------------------------------


def tuned_config(
    method: str,
    threads: int,
    backend: str | None,
    n_ensemble: int | None,
    flow_epochs: int | None,
) -> Any:
    """The method's default config with the benchmark's CLI overrides applied (nested configs too)."""
    from adhunt.models.base import TrainConfig
    from adhunt.models.flows import FlowConfig
    from adhunt.models.registry import get_method

    def tune(cfg: Any) -> Any:
        changes: dict[str, Any] = {}
        if isinstance(cfg, TrainConfig):
            changes["num_threads"] = threads
            if backend is not None:
                changes["backend"] = backend
            if n_ensemble is not None:
                changes["n_ensemble"] = n_ensemble
        elif isinstance(cfg, FlowConfig):
            changes["num_threads"] = threads
        else:
            for f in dataclasses.fields(cfg):
                value = getattr(cfg, f.name)
                if dataclasses.is_dataclass(value) and not isinstance(value, type):
                    new = tune(value)
                    # The epoch cap applies to the sideband (background) flow, the big one.
                    if f.name == "flow" and flow_epochs is not None:
                        new = dataclasses.replace(new, epochs=flow_epochs)
                    changes[f.name] = new
            if "num_threads" in {f.name for f in dataclasses.fields(cfg)}:
                changes["num_threads"] = threads  # outlier configs (ae, vae, force)
        return dataclasses.replace(cfg, **changes) if changes else cfg

    return tune(get_method(method).config_class())


def method_variant(name: str) -> tuple[str, str]:
    """(registry method, inputs) of a benchmark method name.

    ``NAME-img`` (e.g. ``ae-img``) is the registry method ``NAME`` with ``inputs: images``: it
    reads the jet images of the feature pass (``--images``) instead of feature columns, and is
    reported under its own name next to ``NAME`` on features.
    """
    if name.endswith(IMAGE_SUFFIX) and len(name) > len(IMAGE_SUFFIX):
        return name[: -len(IMAGE_SUFFIX)], "images"
    return name, "features"


def variant_config(name: str, args: argparse.Namespace) -> Any:
    """The config of benchmark method ``name``: :func:`tuned_config` of its registry method, with
    ``inputs: images`` for an image variant (and ``--image-epochs`` on its networks)."""
    method, inputs = method_variant(name)
    config = tuned_config(method, args.threads, args.backend, args.n_ensemble, args.flow_epochs)
    if inputs == "features":
        return config
    changes: dict[str, Any] = {"inputs": "images"}
    epochs = getattr(args, "image_epochs", None)
    if epochs is not None:
        if hasattr(config, "epochs"):  # ae, vae
            changes["epochs"] = epochs
        if hasattr(config, "ae"):  # tnt: its starting image ae and its image classifiers
            changes["ae"] = dataclasses.replace(config.ae, epochs=epochs)
            if hasattr(config.classifier, "epochs"):
                changes["classifier"] = dataclasses.replace(config.classifier, epochs=epochs)
    return dataclasses.replace(config, **changes)


def method_features(method: str, features: Sequence[str]) -> tuple[str, ...]:
    """The benchmark's features for the resonant methods; the outlier detectors (ae, vae, force,
    tnt) take their own per-jet inputs (each jet's mass and tau ratios; FORCE: m/pT), their image
    variants (``ae-img``, ...) the two jet images."""
    from adhunt.models.outliers import OutlierModel
    from adhunt.models.registry import get_method
    from adhunt.schema import IMAGE_PSEUDO_COLUMNS

    base, inputs = method_variant(method)
    if inputs == "images":
        return tuple(IMAGE_PSEUDO_COLUMNS)
    cls = get_method(base)
    return tuple(cls.default_features if issubclass(cls, OutlierModel) else features)


def build_model(
    method: str, args: argparse.Namespace, region: Any, features: Sequence[str]
) -> tuple[type, Any]:
    """(class, unfitted model) of benchmark method ``method`` (an image variant included)."""
    from adhunt.models.registry import get_method

    cls = get_method(method_variant(method)[0])
    config = variant_config(method, args)
    features = method_features(method, features)
    return cls, cls(features, region, n_folds=args.folds, seed=args.seed, config=config)


@dataclass
class MethodResult:
    method: str
    roc: dict[str, Any]
    train_seconds: float
    score_seconds: float
    summary: dict[str, Any]
    n_train: int
    max_sic_std: float | None = None  # bootstrap spread of the test set's max SIC
    model: Any = None  # the fitted model (for --combine); not written to the report


def bootstrap_max_sic(
    labels: np.ndarray, scores: np.ndarray, min_background: int, n: int = 100, seed: int = 0
) -> float | None:
    """Standard deviation of max SIC over bootstrap resamples of the test set.

    Max SIC sits where only a few tens of background events pass, so it fluctuates by ~10%;
    this spread says which differences between methods the test set can resolve.
    """
    from adhunt.performance import roc_sic

    rng = np.random.default_rng(seed)
    values = []
    for _ in range(n):
        idx = rng.integers(0, len(labels), len(labels))
        value = roc_sic(labels[idx], scores[idx], min_background=min_background)["max_sic"]
        if value is not None:
            values.append(value)
    return float(np.std(values)) if len(values) > 1 else None


def train_and_evaluate(
    method: str,
    data: pd.DataFrame,
    reference: pd.DataFrame | None,
    test: pd.DataFrame,
    args: argparse.Namespace,
    region: Any,
    features: Sequence[str],
) -> MethodResult:
    """Fit ``method`` (wall-timed), score the SR test events with the fold ensemble, ROC/SIC."""
    from adhunt.performance import roc_sic

    cls, model = build_model(method, args, region, features)
    log.info("%s: training on %d events", method, len(data))
    t0 = time.perf_counter()
    model.fit(data, reference if cls.needs_reference else None)
    train_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    scores = model.score(test, mode="ensemble")
    score_s = time.perf_counter() - t0
    labels = test["truth_label"].to_numpy()
    roc = roc_sic(labels, scores, min_background=args.min_background)
    spread = bootstrap_max_sic(labels, scores, args.min_background, seed=args.seed)
    log.info(
        "%s: max SIC %s, AUC %.3f, train %.0f s",
        method, _fmt(roc["max_sic"]), roc["auc"], train_s,
    )  # fmt: skip
    return MethodResult(
        method, roc, train_s, score_s, dict(model.summary), len(data), spread, model
    )


def combine_and_evaluate(
    name: str,
    members: Sequence[MethodResult],
    data: pd.DataFrame,
    test: pd.DataFrame,
    args: argparse.Namespace,
) -> MethodResult:
    """Rank-averaged combination of trained members (rank tables from ``data``'s SR), evaluated."""
    from adhunt.models.combine import CombinedModel
    from adhunt.performance import roc_sic

    t0 = time.perf_counter()
    model = CombinedModel.build([m.model for m in members], data, [m.method for m in members])
    build_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    scores = model.score(test, mode="ensemble")
    score_s = time.perf_counter() - t0
    labels = test["truth_label"].to_numpy()
    roc = roc_sic(labels, scores, min_background=args.min_background)
    spread = bootstrap_max_sic(labels, scores, args.min_background, seed=args.seed)
    train_s = build_s + sum(m.train_seconds for m in members)
    return MethodResult(name, roc, train_s, score_s, {}, len(data), spread, model)


def sculpting_stage(
    data: pd.DataFrame,
    method: str,
    args: argparse.Namespace,
    region: Any,
    features: Sequence[str],
    efficiency: float = 0.01,
) -> tuple[list[str], dict[str, Any]]:
    """Raw vs QR-decorrelated cut on SIGNAL-FREE data: dijet-fit p-values of the post-cut mjj.

    The model trains on ``data`` (no signal) in the benchmark window; every event gets its k-fold
    score; each cut keeps ``efficiency`` of the SR events and is applied at every mjj (the
    scan's convention, :func:`adhunt.bumphunt.sr_threshold`). The QR is fitted on the events
    outside the SR (``--sculpt-fit-region``) and interpolated across it.
    """
    from scipy import stats

    from adhunt.bumphunt import ScanConfig, mjj_counts, resolve_fit_range, sr_threshold
    from adhunt.fitting import FitError, fit_background
    from adhunt.histograms import DEFAULT_MJJ_EDGES
    from adhunt.models.decorrelation import QRConfig, fit_decorrelation

    _, model = build_model(method, args, region, features)
    t0 = time.perf_counter()
    model.fit(data, None)
    raw = model.raw_score(data, mode="kfold")
    fit_decorrelation(model, data, QRConfig(fit_region=args.sculpt_fit_region, seed=args.seed))
    u = model.score(data, mode="kfold")
    seconds = time.perf_counter() - t0
    mjj = data["mjj"].to_numpy(np.float64)
    sr = region.in_sr(mjj)
    edges = np.asarray(DEFAULT_MJJ_EDGES, dtype=float)
    uncut = mjj_counts(mjj, edges)
    cfg = ScanConfig()
    fit_range, _ = resolve_fit_range(edges, uncut, cfg)
    in_range = (mjj >= fit_range[0]) & (mjj < fit_range[1])
    spectra: dict[str, np.ndarray] = {"no cut": np.ones(mjj.size, dtype=bool)}
    spectra[f"raw {100 * efficiency:g}%"] = raw >= sr_threshold(raw[sr], efficiency)
    spectra[f"QR {100 * efficiency:g}%"] = u >= sr_threshold(u[sr], efficiency)
    rows: dict[str, Any] = {}
    for label, keep in spectra.items():
        counts = mjj_counts(mjj[keep], edges)
        row: dict[str, Any] = {"n_pass": int(keep.sum()), "n_pass_sr": int((keep & sr).sum())}
        try:
            fit = fit_background((edges, counts), cfg.background_config(), fit_range=fit_range)
            row.update(
                fit_p_value=float(fit.p_value),
                chi2_ndf=float(fit.nominal.chi2_ndf),
                n_params=int(fit.n_params),
                status=fit.status,
            )
        except FitError as err:
            row.update(fit_p_value=None, chi2_ndf=None, n_params=None, status=f"no fit: {err}")
        row["ks_p_vs_uncut"] = (
            None
            if label == "no cut"
            else float(stats.ks_2samp(mjj[keep & in_range], mjj[in_range]).pvalue)
        )
        # the kept fraction below / inside / above the SR (flat = no sculpting)
        row["kept_fraction"] = {
            part: float(keep[sel].mean()) if sel.any() else None
            for part, sel in (
                ("below SR", mjj < region.low),
                ("SR", sr),
                ("above SR", mjj >= region.high),
            )
        }
        row["counts"] = counts.tolist()
        rows[label] = row
    _plot_sculpting(edges, rows, fit_range, args.output / "sculpting.png", method, region)
    lines = [
        "",
        f"## sculpting on signal-free data: {method} trained in SR {region}, {len(data)} events, "
        f"cut keeping {100 * efficiency:g}% of the SR (QR fitted on {args.sculpt_fit_region}; "
        f"{seconds:.0f} s)",
        f"dijet fit over {fit_range[0]:g}-{fit_range[1]:g} GeV (F-test 3/4/5 parameters)",
        f"{'spectrum':10s} {'events':>7s} {'fit p':>8s} {'chi2/ndf':>8s} {'npar':>4s} "
        f"{'KS p vs uncut':>13s} {'kept below/SR/above':>22s}",
    ]
    for label, r in rows.items():
        kept = r["kept_fraction"]
        frac = "/".join(_fmt(kept[k], ".4f") for k in ("below SR", "SR", "above SR"))
        lines.append(
            f"{label:10s} {r['n_pass']:7d} {_fmt(r['fit_p_value'], '.3g'):>8s} "
            f"{_fmt(r['chi2_ndf']):>8s} {r['n_params'] or '-':>4} "
            f"{_fmt(r['ks_p_vs_uncut'], '.3g'):>13s} {frac:>22s}"
        )
    return lines, {
        "method": method,
        "fit_range": list(fit_range),
        "seconds": seconds,
        "spectra": rows,
    }


def _plot_sculpting(
    edges: np.ndarray,
    rows: dict[str, Any],
    fit_range: tuple[float, float],
    path: Path,
    method: str,
    region: Any,
) -> None:
    """Post-cut mjj spectra normalised to the uncut one in the fit range, and their ratios."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    import mplhep

    centres = 0.5 * (edges[1:] + edges[:-1])
    ok = (edges[:-1] >= fit_range[0]) & (edges[1:] <= fit_range[1])
    ref = np.asarray(rows["no cut"]["counts"])
    with plt.style.context(mplhep.style.CMS):
        fig, (ax, rax) = plt.subplots(
            2, 1, figsize=(9, 8), sharex=True, gridspec_kw={"height_ratios": [3, 1]}
        )
        for label, r in rows.items():
            c = np.asarray(r["counts"])
            scale = ref[ok].sum() / max(c[ok].sum(), 1)
            p = r["fit_p_value"]
            text = f"{label} (fit p {p:.2g})" if p is not None else label
            ax.errorbar(
                centres[ok], c[ok] * scale, np.sqrt(c[ok]) * scale, fmt="o", ms=3, label=text
            )
            with np.errstate(divide="ignore", invalid="ignore"):
                rax.plot(centres[ok], c[ok] * scale / ref[ok], "o", ms=3)
        for a in (ax, rax):
            a.axvspan(region.low, region.high, color="grey", alpha=0.15)
        ax.set_yscale("log")
        ax.set_ylabel("events (normalised to no cut)")
        rax.set_ylabel("/ no cut")
        rax.set_ylim(0, 2.5)
        rax.axhline(1, color="k", lw=1)
        rax.set_xlabel(r"$m_{jj}$ [GeV]")
        ax.legend(fontsize=12, title=f"{method}, signal-free", title_fontsize=12)
        fig.savefig(path, dpi=110, bbox_inches="tight")
        plt.close(fig)


def plot_sic_vs_injection(
    scan: dict[int, dict[str, Any]], methods: Sequence[str], path: Path
) -> None:
    """Max SIC (bootstrap error bars) versus the number of injected signal events, per method."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    import matplotlib.ticker
    import mplhep

    with plt.style.context(mplhep.style.CMS):
        fig, ax = plt.subplots(figsize=(9, 7))
        n = np.array(sorted(scan))
        s_over_sqrt_b = [scan[k]["injection"]["s_over_sqrt_b_sr"] for k in n]
        for method in methods:
            y = [scan[k][method].roc["max_sic"] for k in n]
            e = [scan[k][method].max_sic_std or 0.0 for k in n]
            y = np.array([np.nan if v is None else v for v in y], dtype=float)
            ax.errorbar(n, y, e, marker="o", capsize=3, label=method)
        ax.set_xscale("log")
        ax.set_xticks(n, [str(v) for v in n])
        ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
        ax.set_xlabel("injected signal events")
        ax.set_ylabel("max SIC")
        ax.axhline(1, color="k", ls=":", lw=1)
        top = ax.secondary_xaxis("top")
        top.set_xticks(n, [f"{v:.1f}" for v in s_over_sqrt_b], fontsize=11)
        top.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
        top.set_xlabel(r"$S/\sqrt{B}$ in SR", fontsize=13)
        ax.legend(fontsize=13)
        fig.savefig(path, dpi=110, bbox_inches="tight")
        plt.close(fig)


def _fmt(value: float | None, spec: str = ".2f") -> str:
    return "-" if value is None or not math.isfinite(value) else format(value, spec)


# --------------------------------------------------------------------------------------------
# Speed: reference flow capped
# --------------------------------------------------------------------------------------------


def reference_flow_timing(
    data: pd.DataFrame, region: Any, features: Sequence[str], epochs: int, seed: int, threads: int
) -> dict[str, Any]:
    """Train the reference CATHODE flow (15-block MAF, batch 256) for ``epochs`` on the sidebands.

    Same event selection and preprocessing as ``Cathode``'s shared sideband flow, so its seconds
    per epoch compare directly with the default flow's.
    """
    from adhunt.models.flows import REFERENCE_FLOW_CONFIG, ConditionalFlow
    from adhunt.models.preprocessing import LogitScaler, Pipeline, Standardizer
    from adhunt.regions import validation_mask

    sb = data[region.in_sb(data["mjj"].to_numpy())]
    is_val = validation_mask(sb["run"], sb["event"], 0.2, seed)
    x = sb[list(features)].to_numpy(np.float64)
    m = sb["mjj"].to_numpy(np.float64)
    pre = Pipeline([LogitScaler(margin=0.05), Standardizer()]).fit(x[~is_val])
    lo, hi = pre.steps[0].low, pre.steps[0].high
    inside = np.all((x >= lo) & (x <= hi), axis=1)
    z = pre.transform(x)
    tr, va = ~is_val, is_val & inside
    cfg = dataclasses.replace(REFERENCE_FLOW_CONFIG, epochs=epochs, num_threads=threads)
    flow = ConditionalFlow(len(features), cfg, seed=seed)
    t0 = time.perf_counter()
    flow.fit(z[tr], m[tr], z[va], m[va])
    seconds = time.perf_counter() - t0
    n_ep = len(flow.history.val_loss)
    return {
        "epochs": n_ep,
        "seconds": seconds,
        "seconds_per_epoch": seconds / n_ep,
        "n_train": int(tr.sum()),
        "val_nll": flow.history.best_val_loss,
    }


# --------------------------------------------------------------------------------------------
# Printing
# --------------------------------------------------------------------------------------------


def injection_line(summary: dict[str, Any]) -> str:
    return (
        f"S = {summary['n_signal_sr']}, B = {summary['n_background_sr']} in SR: "
        f"S/B = {100 * summary['s_over_b_sr']:.2f}%, S/sqrt(B) = {summary['s_over_sqrt_b_sr']:.2f} "
        f"({summary['n_signal']} injected, {summary['n_events']} events)"
    )


def method_table(results: dict[str, MethodResult], true_fraction: float) -> list[str]:
    lines = [
        f"{'method':11s} {'max SIC':>8s} {'+-':>5s} {'AUC':>6s} {'eps_S@max':>9s} {'train s':>8s} "
        f"{'score s':>8s}  notes"
    ]
    for name, r in results.items():
        notes = ""
        if name == "ranode" and "w_mean" in r.summary:
            notes = (
                f"w = {r.summary['w_mean']:.4f} +- {r.summary['w_std']:.4f} "
                f"(true S/(S+B) in SR {true_fraction:.4f})"
            )
        elif "flow_seconds" in r.summary:
            ep = r.summary.get("flow_epochs") or []
            notes = f"flows {r.summary['flow_seconds']:.0f} s, epochs {ep[:1]}{'...' if len(ep) > 1 else ''}"
        if name == "supervised":
            notes = (notes + " trained on data bkg + labelled injection pool").strip()
        lines.append(
            f"{name:11s} {_fmt(r.roc['max_sic']):>8s} {_fmt(r.max_sic_std, '.1f'):>5s} "
            f"{r.roc['auc']:6.3f} "
            f"{_fmt(r.roc['eps_s_at_max_sic'], '.3f'):>9s} {r.train_seconds:8.0f} "
            f"{r.score_seconds:8.1f}  {notes}"
        )
    return lines


def emit(lines: Sequence[str]) -> None:
    """Tables go to stdout (the benchmark's product) and to the log."""
    for line in lines:
        print(line, flush=True)


# --------------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--data-dir", type=Path, default=Path("bench-output/lhco"))
    p.add_argument("--output", type=Path, default=Path("bench-output/resonant"))
    p.add_argument("--methods", default=",".join(ALL_METHODS))
    p.add_argument("--inject", type=int, default=1000, help="signal events injected into the data")
    p.add_argument(
        "--injection-scan",
        default="300,1000,3000",
        help="comma-separated injections of the --scan-methods table ('' to skip)",
    )
    p.add_argument(
        "--scan-methods", default=None, help="methods of the injection scan (default: --methods)"
    )
    p.add_argument(
        "--combine",
        default="",
        help="combinations of trained methods, e.g. cwola+ae,cathode+ae ('' for none)",
    )
    p.add_argument("--sculpt-method", default="cwola", help="method of the sculpting stage ('')")
    p.add_argument("--sculpt-fit-region", default="sidebands", choices=("sidebands", "all"))
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--seed", type=int, default=0, help="seeds splits, injection, k-folds, training")
    p.add_argument("--workers", type=int, default=2, help="generation and feature processes")
    p.add_argument("--threads", type=int, default=2, help="torch / OpenMP threads in training")
    p.add_argument("--window", default="3300:3700", help="signal region LOW:HIGH in GeV")
    p.add_argument(
        "--split",
        default="0.6,0.2",
        help="QCD fractions for data and IAD reference (the rest is the test set)",
    )
    p.add_argument(
        "--min-background", type=int, default=20, help="background events behind a SIC point"
    )
    p.add_argument("--backend", choices=("hgb", "mlp"), default=None, help="classifier back-end")
    p.add_argument("--n-ensemble", type=int, default=None, help="classifier members per fold")
    p.add_argument("--flow-epochs", type=int, default=None, help="max epochs of the sideband flow")
    p.add_argument("--chunksize", type=int, default=25_000, help="feature-processor chunk size")
    p.add_argument(
        "--features-dir", type=Path, default=None, help="feature cache (default: OUTPUT/features)"
    )
    p.add_argument(
        "--images",
        type=int,
        default=None,
        metavar="N",
        help="also compute N x N jet images in the feature pass (needs its own --features-dir); "
        "required by the image variants of the outlier methods (ae-img, vae-img, tnt-img)",
    )
    p.add_argument(
        "--image-epochs",
        type=int,
        default=None,
        help="max epochs of the image variants' networks (default: the method's own)",
    )
    p.add_argument(
        "--features-only", action="store_true", help="stop after the (cached) feature extraction"
    )
    p.add_argument("--generate", action="store_true", help="(re)generate the samples")
    p.add_argument("--qcd-events", type=int, default=DEFAULT_SAMPLES["qcd"][0])
    p.add_argument("--signal-events", type=int, default=DEFAULT_SAMPLES["wprime"][0])
    p.add_argument(
        "--qcd-limit", type=int, default=None, help="use only the first N QCD events (quick runs)"
    )
    p.add_argument("--no-speed", dest="speed", action="store_false", help="skip the speed stage")
    p.add_argument(
        "--reference-epochs",
        type=int,
        default=2,
        help="epochs of the capped reference-flow timing (0 to skip)",
    )
    args = p.parse_args(argv)
    from adhunt.models.registry import available_methods

    known = set(available_methods()) - {"combine"}
    args.methods = [m for m in args.methods.split(",") if m]
    args.scan_methods = (
        list(args.methods)
        if args.scan_methods is None
        else [m for m in args.scan_methods.split(",") if m]
    )
    args.combine = [tuple(c.split("+")) for c in args.combine.split(",") if c.strip()]
    wanted = set(args.methods) | set(args.scan_methods) | {m for c in args.combine for m in c}
    if args.sculpt_method:
        wanted.add(args.sculpt_method)
    unknown = sorted(m for m in wanted if method_variant(m)[0] not in known)
    if unknown:
        p.error(f"unknown method(s) {unknown}; available: {', '.join(sorted(known))}")
    for m in sorted(wanted):
        base, inputs = method_variant(m)
        if inputs == "images":
            from adhunt.models.registry import get_method

            if "inputs" not in {f.name for f in dataclasses.fields(get_method(base).config_class)}:
                p.error(f"method {m}: {base} has no jet-image inputs")
            if args.images is None:
                p.error(f"method {m} reads jet images: give --images N (and its --features-dir)")
    for combo in args.combine:
        if len(combo) < 2 or not set(combo) <= set(args.methods):
            p.error(f"--combine {'+'.join(combo)}: give two or more methods that --methods trains")
    args.injection_scan = [int(n) for n in args.injection_scan.split(",") if n.strip()]
    try:
        f_data, f_ref = (float(v) for v in args.split.split(","))
    except ValueError:
        p.error(f"--split must be two comma-separated fractions, got {args.split!r}")
    if not (f_data > 0 and f_ref > 0 and f_data + f_ref < 1):
        p.error(f"--split fractions must be positive and sum to < 1, got {args.split!r}")
    args.split = (f_data, f_ref)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    args.output.mkdir(parents=True, exist_ok=True)
    _setup_logging(args.output / "bench_resonant.log")

    import torch
    from threadpoolctl import threadpool_limits

    from adhunt.injection import inject_signal, injection_summary
    from adhunt.performance import plot_sic
    from adhunt.regions import SignalRegion
    from adhunt.schema import RESONANT_VARIABLE, STANDARD_FEATURES

    torch.set_num_threads(args.threads)
    region = SignalRegion.parse(args.window)
    features = list(STANDARD_FEATURES)
    t_start = time.perf_counter()
    report: dict[str, Any] = {"args": {k: str(v) for k, v in vars(args).items()}}

    # 1-2. samples and features
    n_events = {"qcd": args.qcd_events, "wprime": args.signal_events}
    filesets = ensure_samples(args.data_dir, args.generate, n_events, args.workers)
    feature_dirs: dict[str, list[Path]] = {}
    for fileset in filesets.values():
        feature_dirs.update(
            ensure_features(
                fileset,
                args.features_dir or args.output / "features",
                args.workers,
                args.chunksize,
                args.images,
            )
        )
    if args.features_only:
        return 0
    columns = [*features, RESONANT_VARIABLE]
    with_images = any(method_variant(m)[1] == "images" for m in [*args.methods, *args.scan_methods])
    qcd = read_clean(feature_dirs["qcd"], "qcd", columns, with_images)
    if args.qcd_limit is not None:
        qcd = qcd.iloc[: args.qcd_limit].reset_index(drop=True)
    signal = read_clean(feature_dirs["wprime"], "wprime", columns, with_images)
    if (qcd["truth_label"] != 0).any() or (signal["truth_label"] != 1).any():
        raise RuntimeError("truth labels: QCD must be 0 and W' must be 1")

    # 3. splits and injection
    s = make_splits(qcd, signal, args.seed, args.split)
    sr_frac = float(region.in_sr(qcd["mjj"]).mean())
    sig_sr_frac = float(region.in_sr(signal["mjj"]).mean())
    test = pd.concat([s.test_bkg, s.test_sig], ignore_index=True)
    test = test[region.in_sr(test["mjj"].to_numpy())].reset_index(drop=True)
    sizes = {
        "qcd": len(qcd),
        "signal": len(signal),
        "qcd_sr_fraction": sr_frac,
        "signal_sr_fraction": sig_sr_frac,
        "data_background": len(s.data_bkg),
        "reference": len(s.reference),
        "reference_sr": int(region.in_sr(s.reference["mjj"]).sum()),
        "test_background": len(s.test_bkg),
        "signal_pool": len(s.signal_pool),
        "test_signal": len(s.test_sig),
        "test_sr_background": int((test["truth_label"] == 0).sum()),
        "test_sr_signal": int((test["truth_label"] == 1).sum()),
    }
    report["sizes"] = sizes
    emit(
        [
            f"# samples: {len(qcd)} QCD ({100 * sr_frac:.1f}% in SR {region}), {len(signal)} W' "
            f"({100 * sig_sr_frac:.1f}% in SR); features {features} (+ mjj)",
            f"# splits: data bkg {len(s.data_bkg)}, IAD reference {len(s.reference)} "
            f"({sizes['reference_sr']} in SR), test bkg {len(s.test_bkg)}; signal pool "
            f"{len(s.signal_pool)}, test signal {len(s.test_sig)}",
            f"# SR test set: {sizes['test_sr_background']} background, "
            f"{sizes['test_sr_signal']} signal (ensemble scores; SIC points need >= "
            f"{args.min_background} background events)",
        ]
    )

    def injected(n: int) -> tuple[pd.DataFrame, dict[str, Any]]:
        data = inject_signal(s.data_bkg, s.signal_pool, n, args.seed)
        return data, injection_summary(data, region)

    data, inj = injected(args.inject)
    report["injection"] = inj
    true_w = inj["n_signal_sr"] / max(1, inj["n_signal_sr"] + inj["n_background_sr"])
    emit([f"# injection: {injection_line(inj)}"])
    supervised_data = pd.concat([s.data_bkg, s.signal_pool], ignore_index=True)

    # 4. all methods
    results: dict[str, MethodResult] = {}
    with threadpool_limits(limits=args.threads):
        for method in args.methods:
            train_frame = supervised_data if method == "supervised" else data
            results[method] = train_and_evaluate(
                method, train_frame, s.reference, test, args, region, features
            )
            _write_report(args.output, report, results, {})
    for combo in args.combine:
        name = "+".join(combo)
        results[name] = combine_and_evaluate(name, [results[m] for m in combo], data, test, args)
    table = method_table(results, true_w)
    emit(["", f"## methods at {args.inject} injected signal events, {args.folds} folds", *table])
    if results:
        plot_sic(
            {k: v.roc for k, v in results.items()},
            args.output / "sic.png",
            title=f"{args.inject} injected, S/B {100 * inj['s_over_b_sr']:.2f}% in SR",
        )

    # 5. injection scan
    scan: dict[int, dict[str, Any]] = {}
    if args.injection_scan:
        with threadpool_limits(limits=args.threads):
            for n in args.injection_scan:
                frame, summ = injected(n) if n != args.inject else (data, inj)
                row: dict[str, Any] = {"injection": summ}
                for method in args.scan_methods:
                    if n == args.inject and method in results:
                        r = results[method]
                    else:
                        r = train_and_evaluate(
                            method, frame, s.reference, test, args, region, features
                        )
                    row[method] = r
                scan[n] = row
                _write_report(args.output, report, results, scan)
        head = f"{'N inj':>6s} {'S_SR':>5s} {'B_SR':>7s} {'S/B %':>6s} {'S/sqrtB':>7s}"
        for method in args.scan_methods:
            head += f" {method + ' SIC':>16s} {'AUC':>6s} {'train s':>8s}"
        lines = ["", "## max SIC and AUC vs injected signal events (each model retrained)", head]
        for n, row in scan.items():
            summ = row["injection"]
            line = (
                f"{n:6d} {summ['n_signal_sr']:5d} {summ['n_background_sr']:7d} "
                f"{100 * summ['s_over_b_sr']:6.2f} {summ['s_over_sqrt_b_sr']:7.2f}"
            )
            for method in args.scan_methods:
                r = row[method]
                sic = f"{_fmt(r.roc['max_sic'])} +- {_fmt(r.max_sic_std, '.1f')}"
                line += f" {sic:>16s} {r.roc['auc']:6.3f} {r.train_seconds:8.0f}"
            lines.append(line)
        emit(lines)
        if args.scan_methods:
            plot_sic_vs_injection(scan, args.scan_methods, args.output / "sic_vs_injection.png")

    # 5c. sculpting: raw vs QR-decorrelated cut on signal-free data
    if args.sculpt_method:
        with threadpool_limits(limits=args.threads):
            lines, report["sculpting"] = sculpting_stage(
                s.data_bkg, args.sculpt_method, args, region, features
            )
        emit(lines)
        _write_report(args.output, report, results, scan)

    # 6. speed
    speed: dict[str, Any] = {}
    if args.speed:
        lines = ["", "## CATHODE speed (2-core wall time, end to end: flow + classifiers)"]
        if "cathode" in results:
            r = results["cathode"]
            lines.append(
                f"data ({r.n_train} events): {r.train_seconds:.0f} s "
                f"(flow {r.summary['flow_seconds']:.0f} s, {r.summary['flow_epochs'][0]} epochs)"
            )
        everything = inject_signal(
            pd.concat([s.data_bkg, s.reference, s.test_bkg], ignore_index=True),
            s.signal_pool,
            args.inject,
            args.seed,
        )
        with threadpool_limits(limits=args.threads):
            big = train_and_evaluate("cathode", everything, None, test, args, region, features)
        n_sb = int(region.in_sb(everything["mjj"]).sum())
        flow_s, flow_ep = big.summary["flow_seconds"], big.summary["flow_epochs"][0]
        clf_s = big.train_seconds - flow_s
        speed["cathode_all"] = {
            "n_events": len(everything),
            "n_sideband": n_sb,
            "train_seconds": big.train_seconds,
            "flow_seconds": flow_s,
            "flow_epochs": flow_ep,
            "classifier_seconds": clf_s,
            "max_sic_on_test": big.roc["max_sic"],
        }
        lines.append(
            f"all QCD + {args.inject} signal ({len(everything)} events, {n_sb} in SB): "
            f"{big.train_seconds:.0f} s = flow {flow_s:.0f} s ({flow_ep} epochs, "
            f"{flow_s / flow_ep:.1f} s/epoch) + classifiers {clf_s:.0f} s "
            f"(test max SIC {_fmt(big.roc['max_sic'])}; trains on the IAD/test QCD too)"
        )
        if len(everything) < 800_000:
            per_event = big.train_seconds / len(everything)
            lines.append(
                f"  ~800k events would take ~{per_event * 800_000:.0f} s if linear in events "
                f"(only {len(everything)} available)"
            )
        if args.reference_epochs > 0:
            with threadpool_limits(limits=args.threads):
                ref = reference_flow_timing(
                    everything, region, features, args.reference_epochs, args.seed, args.threads
                )
            projected = ref["seconds_per_epoch"] * REFERENCE_EPOCHS + clf_s
            speed["reference_flow"] = {**ref, "projected_end_to_end_seconds": projected}
            lines.append(
                f"reference flow (15-block MAF x 128, batch 256) on the same {ref['n_train']} SB "
                f"training events: {ref['seconds_per_epoch']:.1f} s/epoch "
                f"({ref['epochs']} epochs timed, vs {flow_s / flow_ep:.1f} s/epoch default)"
            )
            lines.append(
                f"  projected reference CATHODE ({REFERENCE_EPOCHS} epochs + same classifiers): "
                f"{projected:.0f} s -> default is x{projected / big.train_seconds:.1f} faster"
            )
        emit(lines)

    report["speed"] = speed
    report["total_seconds"] = time.perf_counter() - t_start
    _write_report(args.output, report, results, scan)
    emit(["", f"# total wall time {report['total_seconds']:.0f} s; results in {args.output}"])
    return 0


def _write_report(
    output: Path,
    report: dict[str, Any],
    results: dict[str, MethodResult],
    scan: dict[int, dict[str, Any]],
) -> None:
    """results.json, rewritten after every model so a long run leaves partial results behind."""
    from adhunt.config import json_safe
    from adhunt.performance import curve_for_json

    def one(r: MethodResult) -> dict[str, Any]:
        return {
            "roc": curve_for_json(r.roc),
            "max_sic_bootstrap_std": r.max_sic_std,
            "train_seconds": r.train_seconds,
            "score_seconds": r.score_seconds,
            "n_train": r.n_train,
            "summary": r.summary,
        }

    out = dict(report)
    out["methods"] = {k: one(v) for k, v in results.items()}
    out["injection_scan"] = {
        str(n): {
            "injection": row["injection"],
            **{m: one(v) for m, v in row.items() if isinstance(v, MethodResult)},
        }
        for n, row in scan.items()
    }
    path = output / "results.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(json_safe(out), indent=1) + "\n")
    tmp.replace(path)


def _setup_logging(path: Path) -> None:
    """INFO to stderr and to a log file in the output dir."""
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S")
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    for handler in (logging.StreamHandler(sys.stderr), logging.FileHandler(path)):
        handler.setFormatter(fmt)
        root.addHandler(handler)
    for noisy in ("distributed", "numba", "matplotlib", "fsspec", "asyncio", "PIL"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


if __name__ == "__main__":
    sys.exit(main())

"""``adhunt infer``: score a fileset with trained models on any executor, into mjj histograms.

``run_infer`` is the library entry point (demo, scan consumers, tests); ``infer`` is the typer
command around it. Steps, all checks on the driver before any chunk is submitted:

1. load every model artifact (checksums verified; a missing/corrupt one raises ArtifactError
   naming its path) and check that its input columns are produced by the feature processor;
2. check the input files (``check_inputs``: missing, unreadable, missing branches, empty);
3. calibrate the score thresholds of each model on a reference feature table: the events of
   ``--reference`` (default: the table the model was trained on, from its provenance, with the
   same signal injection) inside the model's signal region (``reference_selection="sr"``) or all
   of them (``"all"``), scored in the same ``mode``; the threshold of efficiency e keeps a
   fraction e of them (:func:`adhunt.histograms.thresholds_from_scores`);
4. run :class:`adhunt.processors.inference.InferenceProcessor` over the fileset with the chosen
   executor (``adhunt.jobs.executors``), in batches of chunks when a progress callback is given;
5. verify that every event was counted exactly once (cutflow adds up, each selected event scored
   once per model and in the histogram once per model), then write ``histograms.json`` (hist's
   own UHI serialisation, read back by :func:`adhunt.histograms.read_histogram_json`, no pickle),
   ``histograms.pkl`` (pickle of the ``hist.Hist``), ``histograms.root`` (one TH1D per ``{dataset}/{model}/{cut}`` with
   cut names from :func:`adhunt.histograms.root_cut_name`: ``all``, ``eff10pct``, ``eff1pct``,
   ``eff0p1pct``) and ``infer.json`` (configuration, thresholds, cutflow, models and checksums,
   package version). The thresholds are also in the histogram's ``metadata``.

GPU workers: torch models use CUDA in any worker that has it (see the processor module). With a
dask scheduler, ``gpu_resource={"GPU": 1}`` (``--gpu-resource GPU=1``) annotates the chunk tasks
with ``resources=`` through ``dask.annotate``, because coffea's DaskExecutor submits with
``client.map`` and has no resources option of its own; distributed merges the annotation into
every task it submits inside the context (the chunk tasks and coffea's tree-reduction tasks).
Workers must be started with ``dask worker ... --resources GPU=1``; the job checks that at least
one connected worker advertises the resource, otherwise the tasks would wait forever.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import json
import logging
import math
import os
import pickle
import shutil
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from adhunt.histograms import DEFAULT_EFFICIENCIES, HISTOGRAM_JSON_NAME
from adhunt.jobs.options import (
    AllowDuplicatesOption,
    AllowPartialOption,
    ChunksizeOption,
    ClusterConfigOption,
    ClusterOption,
    CoresOption,
    DedupeFilesOption,
    DryRunOption,
    ExecutorOption,
    MaxJobsOption,
    MemoryOption,
    OutputDirOption,
    OverwriteOption,
    QueueOption,
    RestartOption,
    RetryFailedOption,
    SchedulerOption,
    SkipBadFilesOption,
    WalltimeOption,
    WorkersOption,
    checked_output,
    split_list,
)

if TYPE_CHECKING:
    import hist
    import pandas as pd

    from adhunt.jobs.executors import ExecutorConfig
    from adhunt.models.base import ResonantModel
    from adhunt.processors.features import FeatureConfig
    from adhunt.runsummary import RunSummary

logger = logging.getLogger(__name__)

JSON_HIST_NAME = HISTOGRAM_JSON_NAME
PICKLE_NAME = "histograms.pkl"
ROOT_NAME = "histograms.root"
JSON_NAME = "infer.json"
REFERENCE_SELECTIONS = ("sr", "all")
#: Below this many reference events passing a cut, its threshold is mostly noise: warn.
MIN_REFERENCE_PASSING = 10


@dataclass
class InferResult:
    """What an inference run produced (``paths``: ``pickle``, ``root``, ``json`` -> files)."""

    histogram: hist.Hist
    cutflow: dict[str, dict[str, int]]
    scored: dict[str, int]
    thresholds: dict[str, dict[str, float]]
    paths: dict[str, Path]
    skipped: list[dict[str, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    model_loads: dict[str, int] = field(default_factory=dict)
    devices: dict[str, list[str]] = field(default_factory=dict)
    workers: dict[str, int] = field(default_factory=dict)
    summary: RunSummary | None = None  # adhunt.runsummary, also in run_summary.json


def parse_model_specs(specs: Iterable[str]) -> dict[str, Path]:
    """``["NAME=DIR", "DIR", ...]`` -> ``{name: dir}``; a bare DIR is named by its model's method."""
    from adhunt.models.artifact import ArtifactError, load_artifact

    out: dict[str, Path] = {}
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep:
            path = spec
            try:
                _, meta = load_artifact(path)
            except ArtifactError as err:
                raise ArtifactError(f"--model {spec}: {err}") from err
            name = str(meta.get("method", "model"))
        name = name.strip()
        if not name or not path:
            raise ValueError(f"--model expects NAME=DIR or DIR, got {spec!r}")
        if name in out:
            raise ValueError(
                f"model name {name!r} given twice (name them: --model NAME=DIR); "
                f"first {out[name]}, then {path}"
            )
        out[name] = Path(path)
    if not out:
        raise ValueError("at least one --model is needed")
    return out


def _check_model_name(name: str) -> None:
    if not name or "/" in name or name != name.strip() or name.startswith("."):
        raise ValueError(
            f"model name {name!r} cannot be used (no '/', no leading dot or spaces): it becomes a "
            "histogram category and a directory in histograms.root"
        )


def _load_models(
    models: Mapping[str, str | Path],
    extra_columns: tuple[str, ...] = (),
    image_size: int | None = None,
) -> dict[str, tuple[ResonantModel, Path, str]]:
    """Load and verify every artifact on the driver; ``{name: (model, path, digest)}``.

    ``extra_columns``: the optional columns the feature configuration also computes
    (``FeatureConfig.extra_columns()``, e.g. the extended substructure set); ``image_size``:
    the side of the jet images it computes (None: no images), which image models must match."""
    from adhunt.models.artifact import ArtifactError
    from adhunt.models.base import ResonantModel
    from adhunt.processors.inference import InferenceError, artifact_digest
    from adhunt.schema import FEATURE_COLUMNS

    if not models:
        raise InferenceError("at least one model is needed")
    from adhunt.dijet import required_columns
    from adhunt.schema import IMAGE_PSEUDO_COLUMNS

    produced = [c for c in FEATURE_COLUMNS if c != "dataset"] + list(extra_columns)
    if image_size is not None:
        produced += list(IMAGE_PSEUDO_COLUMNS)
    loaded = {}
    for name, raw in models.items():
        _check_model_name(str(name))
        path = Path(raw).expanduser().resolve()
        if not path.exists():
            raise ArtifactError(f"model {name!r}: model directory not found: {path}")
        try:
            digest = artifact_digest(path)
            model = ResonantModel.load(path)
        except ArtifactError as err:
            raise ArtifactError(f"model {name!r}: {err}") from err
        # Derived inputs (mj1_over_mjj, ...) are computed by the model API from their ingredients.
        images = [c for c in model.input_columns if c in IMAGE_PSEUDO_COLUMNS]
        if images and image_size is None:
            raise InferenceError(
                f"model {name!r} ({path}) reads jet images {images}; the feature configuration "
                "of infer (--config) computes none: set images: true and image_size there"
            )
        trained = getattr(model, "image_size", None)
        if images and trained is not None and int(trained) != int(image_size):
            raise InferenceError(
                f"model {name!r} ({path}) was trained on {trained}x{trained} jet images; the "
                f"feature configuration of infer (--config) makes {image_size}x{image_size} ones"
            )
        missing = [c for c in required_columns(model.input_columns) if c not in produced]
        if missing:
            raise InferenceError(
                f"model {name!r} ({path}) expects input column(s) {missing} that the feature "
                f"processor does not produce; its columns are {produced}"
            )
        loaded[str(name)] = (model, path, digest)
    return loaded


def check_processor_definition(
    loaded: Mapping[str, tuple[ResonantModel, Path, str]], feature_config: FeatureConfig
) -> None:
    """Refuse to run the feature processor with other settings than each model's training table."""
    from adhunt.config import config_to_dict
    from adhunt.provenance import (
        check_feature_definition,
        feature_definition,
        model_feature_definition,
    )

    definition = feature_definition(config_to_dict(feature_config))
    for name, (model, path, _digest) in loaded.items():
        check_feature_definition(
            model_feature_definition(model), definition, model=f"{name!r} ({path})",
            table="the feature processor configuration of infer (--config)", noun="processor",
        )  # fmt: skip


def _reference_table(
    model: ResonantModel,
    name: str,
    reference: Path | None,
    datasets: list[str] | None,
    selection: str,
    allow_duplicates: bool = False,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The reference events of one model and a description of where they came from."""
    from adhunt.processors.inference import InferenceError
    from adhunt.provenance import (
        ProvenanceError,
        check_feature_definition,
        model_feature_definition,
        read_provenance,
        rebuild_training_table,
        table_feature_definition,
    )
    from adhunt.tables import read_table

    info: dict[str, Any] = {"selection": selection}
    columns = [*model.input_columns, "mjj"]
    if reference is not None:
        check_feature_definition(
            model_feature_definition(model), table_feature_definition(reference),
            model=repr(name), table=f"--reference {reference}",
        )  # fmt: skip
        table = read_table(
            Path(reference), datasets, columns, what="--reference",
            allow_duplicates=allow_duplicates,
        )  # fmt: skip
        info.update(source=str(reference), datasets=datasets or sorted(set(table["dataset"])))
    else:
        record = read_provenance(model)
        if record is None or record.features_dir is None:
            raise InferenceError(
                f"model {name!r} does not record a feature table it was trained on; "
                "give a reference sample with --reference FEATURE_TABLE"
            )
        try:
            table = rebuild_training_table(
                record, columns, datasets, what=f"training features of model {name!r}",
                allow_duplicates=allow_duplicates,
            )  # fmt: skip
        except ProvenanceError as err:
            raise InferenceError(f"{err}; give a reference sample with --reference") from err
        used = datasets or (None if record.datasets is None else list(record.datasets))
        info.update(source=record.features_dir, datasets=used, origin="model training provenance")
        if record.injection is not None:
            inj = record.injection
            info["injection"] = {
                "signal": inj.signal_dir, "n_injected": inj.n_injected, "seed": inj.seed,
            }  # fmt: skip
    if selection == "sr":
        table = table[model.region.in_sr(table["mjj"].to_numpy())].reset_index(drop=True)
        info["region"] = str(model.region)
    if len(table) == 0:
        where = f"in the signal region {model.region} GeV" if selection == "sr" else "at all"
        raise InferenceError(
            f"reference sample {info['source']} has no events {where} for model {name!r}; "
            "cannot calibrate the score thresholds"
        )
    info["n_events"] = len(table)
    return table, info


def calibrate_thresholds(
    model: ResonantModel,
    reference: pd.DataFrame,
    efficiencies: Sequence[float],
    mode: str = "kfold",
    name: str = "model",
) -> tuple[float, ...]:
    """Thresholds of ``model`` at ``efficiencies`` (loosest first) on the reference events."""
    from adhunt.histograms import thresholds_from_scores
    from adhunt.processors.inference import InferenceError

    try:
        scores = model.score(reference, mode=mode)
    except ValueError as err:
        raise InferenceError(
            f"cannot score the reference sample with model {name!r}: {err}"
        ) from err
    for e in efficiencies:
        if e * len(scores) < MIN_REFERENCE_PASSING:
            logger.warning(
                "model %s: the %g efficiency cut keeps only %.1f of %d reference events; its "
                "threshold is poorly determined",
                name, e, e * len(scores), len(scores),
            )  # fmt: skip
    return tuple(float(t) for t in thresholds_from_scores(scores, efficiencies))


def run_infer(
    fileset: str | Path | dict[str, Any],
    models: Mapping[str, str | Path],
    output: str | Path,
    executor: ExecutorConfig | None = None,
    reference: str | Path | None = None,
    efficiencies: Sequence[float] = DEFAULT_EFFICIENCIES,
    mjj_edges: Sequence[float] | None = None,
    feature_config: FeatureConfig | None = None,
    mode: str = "kfold",
    skip_bad_files: bool = False,
    progress: Callable[[int, int], None] | None = None,
    *,
    reference_selection: str = "sr",
    reference_datasets: list[str] | None = None,
    gpu_resource: Mapping[str, float] | None = None,
    num_threads: int | None = None,
    dedupe_files: bool = False,
    allow_duplicates: bool = False,
    overwrite: bool = False,
    restart: bool = False,
    retry_failed: bool = False,
    progress_unit: str = "chunks",
) -> InferResult:
    """Score every event of ``fileset`` with ``models`` ({name: artifact dir}) into histograms.

    See the module docstring for the steps and outputs. ``progress(done, total)`` is called with
    chunk counts. ``num_threads`` caps scoring threads per worker (default: 1 on futures/dask,
    whose workers are one process per core; the libraries' default when iterative).
    ``dedupe_files``: process a file listed twice in ``fileset`` once (else an error);
    ``allow_duplicates``: accept repeated (run, event) keys in the reference tables.

    Resumable: each chunk's result is saved under ``<output>/.partials`` (stamped with the models,
    thresholds, configuration and input identity) and the results are merged in chunk order at
    the end, so the same call after an interrupt processes only the missing chunks and gives the
    same histograms; ``restart`` discards the saved results. They are removed once the outputs
    are written.

    ``run_summary.json`` (:mod:`adhunt.runsummary`) says per dataset how many events were
    processed out of those in the fileset and lists every failed chunk (``skip_bad_files``)
    with its reason; while any failed, the saved results stay under ``.partials`` and
    ``retry_failed`` processes only the failed chunks and merges them with the saved ones
    (refused when nothing failed, or the fileset, its files, the models or the configuration
    differ from the recorded run's). ``progress_unit="events"``: ``progress`` counts events.
    """
    import time

    from coffea.processor import accumulate

    import adhunt
    from adhunt import runsummary as rs
    from adhunt.config import config_to_dict
    from adhunt.filesets import load_datasets
    from adhunt.histograms import (
        cut_label,
        root_cut_name,
        validate_efficiencies,
        validate_mjj_edges,
        write_histogram_json,
    )
    from adhunt.jobs.executors import ExecutorConfig, coffea_runner
    from adhunt.jobs.features import check_inputs, dataset_weights, summarize_run
    from adhunt.outputs import check_output_dir
    from adhunt.processors.features import FeatureConfig, FeatureInputError
    from adhunt.processors.inference import (
        SCORE_MODES,
        InferenceError,
        InferenceProcessor,
        ModelRef,
    )

    # --- options -------------------------------------------------------------------------------
    output = check_output_dir(output, command="infer", overwrite=overwrite)
    retry: rs.RunSummary | None = None
    if retry_failed:
        if restart:
            raise InferenceError("--retry-failed and --restart contradict")
        try:
            retry = rs.read_summary(output)
        except rs.SummaryError as err:
            raise InferenceError(str(err)) from err
    if mode not in SCORE_MODES:
        raise InferenceError(f"score mode must be one of {SCORE_MODES}, got {mode!r}")
    if reference_selection not in REFERENCE_SELECTIONS:
        raise InferenceError(
            f"reference selection must be one of {REFERENCE_SELECTIONS}, got {reference_selection!r}"
        )
    effs = validate_efficiencies(efficiencies)
    edges = validate_mjj_edges(mjj_edges)
    feature_config = feature_config or FeatureConfig()
    exec_config = executor or ExecutorConfig()
    if skip_bad_files and not exec_config.skip_bad_files:
        exec_config = dataclasses.replace(exec_config, skip_bad_files=True)
    gpu = {str(k): float(v) for k, v in (gpu_resource or {}).items()}
    if gpu and (exec_config.executor != "dask" or exec_config.scheduler is None):
        raise InferenceError(
            "a GPU resource needs --executor dask with --scheduler (workers started with "
            "'dask worker SCHEDULER --resources GPU=1'); a LocalCluster's workers advertise none"
        )
    if num_threads is None and exec_config.executor != "iterative":
        num_threads = 1

    # --- driver-side checks ----------------------------------------------------------------------
    datasets_in = load_datasets(fileset, feature_config.tree, dedupe_files=dedupe_files)
    loaded = _load_models(
        models,
        feature_config.extra_columns(),
        feature_config.image_size if feature_config.images else None,
    )
    check_processor_definition(loaded, feature_config)
    files = {d: entry["files"] for d, entry in datasets_in.items()}
    good, bad, entries = check_inputs(files, feature_config.missing_branches, feature_config.tree)
    if bad and not exec_config.skip_bad_files:
        lines = "; ".join(f"{b['file']}: {b['reason']}" for b in bad)
        raise FeatureInputError(f"bad input file(s) (use --skip-bad-files to skip them): {lines}")
    for b in bad:
        logger.warning("skipping %s (dataset %s): %s", b["file"], b["dataset"], b["reason"])
    good = {d: f for d, f in good.items() if f}
    weights = dataset_weights(datasets_in, good, feature_config)

    # --- thresholds ------------------------------------------------------------------------------
    refs, thresholds, reference_info = [], {}, {}
    labels = [cut_label(e) for e in effs]
    shared: dict[Any, Any] = {}
    for name, (model, path, digest) in loaded.items():
        # One --reference table serves every model with the same window; without it each model
        # reads its own training table.
        key = model.region if reference is not None else name
        if key not in shared:
            shared[key] = _reference_table(
                model, name, None if reference is None else Path(reference),
                reference_datasets, reference_selection, allow_duplicates,
            )  # fmt: skip
        table, info = shared[key]
        cuts = calibrate_thresholds(model, table, effs, mode, name)
        refs.append(ModelRef(name, str(path), digest, cuts))
        thresholds[name] = dict(zip(labels, cuts, strict=True))
        reference_info[name] = info
        logger.info(
            "model %s: thresholds %s from %d reference events",
            name, ", ".join(f"{k} >= {v:.4g}" for k, v in thresholds[name].items()),
            info["n_events"],
        )  # fmt: skip

    # --- run -------------------------------------------------------------------------------------
    from adhunt import manifest as mf

    datasets = list(files)
    identities = {f: mf.file_identity(f) for names in good.values() for f in names}
    key = mf.fingerprint(
        config_to_dict(feature_config),
        {d: config_to_dict(w) for d, w in weights.items()},
        {"adhunt": adhunt.__version__, "models": [[r.name, r.digest, list(r.thresholds)] for r in refs],
         "efficiencies": list(effs), "mjj_edges": list(edges), "mode": mode, "datasets": datasets},
    )  # fmt: skip
    if retry is not None:
        try:
            rs.check_retry(retry, "infer", files, identities, key)
        except rs.SummaryError as err:
            raise InferenceError(str(err)) from err
    output.mkdir(parents=True, exist_ok=True)
    proc = InferenceProcessor(
        refs, effs, feature_config, edges, mode, datasets, num_threads,
        skip_bad_chunks=exec_config.skip_bad_files, weights=weights,
        partials={"dir": str(output.resolve()), "key": key, "inputs": identities},
    )  # fmt: skip
    out = proc.empty_output()
    chunks: list[Any] = []
    todo: list[Any] = []
    result: dict[str, Any] = {"errors": []}
    started = time.perf_counter()
    if good:
        runnable = {d: {"files": {f: files[d][f] for f in names}} for d, names in good.items()}
        schema = feature_config.schema_class
        with coffea_runner(
            exec_config, schema, (FeatureInputError,), show_progress=progress is None
        ) as runner:
            try:
                chunks = list(runner.preprocess(runnable, treename=None))
                done = _saved_partials(output, chunks, proc, key, identities, restart)
                todo = [c for c in chunks if _chunk_key(c) not in done]
                if retry is not None:
                    _check_retry_chunks(retry, todo)
                if done:
                    logger.info(
                        "skipping %d of %d chunk(s) already done (%s); %d to process",
                        len(done), len(chunks), output / mf.PARTIALS_DIR, len(todo),
                    )  # fmt: skip
                if gpu:
                    _check_resources(runner, gpu)
                started = time.perf_counter()
                result = _execute(runner, todo, proc, exec_config, progress, gpu, progress_unit)
            except (FeatureInputError, InferenceError, ConnectionError):
                raise
            except Exception as err:
                raise _specific(err) from err
        # every chunk's result from its saved partial, in chunk order: a resumed run adds up
        # exactly as an uninterrupted one, whatever order the executor finished them in
        parts = []
        for chunk in chunks:
            saved = done.get(_chunk_key(chunk))
            if saved is None:
                found = mf.read_partial(mf.partial_path(output, *_chunk_key(chunk)))
                saved = None if found is None else proc.output_from_partial(*found[:2])
            if saved is not None:
                parts.append(saved)
        out = accumulate([out, *parts])
        out["errors"] = list(result["errors"])

    seconds = time.perf_counter() - started
    summary = _run_summary(datasets, good, entries, bad, chunks, out, result, key, identities)
    done_now = {tuple(c) for c in out["chunks"]}
    processed = sum(int(c.entrystop) - int(c.entrystart) for c in todo if _chunk_key(c) in done_now)
    skipped, cutflow = summarize_run(out, bad, good, entries, datasets)
    scored = {d: int(out["scored"].get(d, 0)) for d in datasets}
    weighted = {d: float(out["weighted"].get(d, 0.0)) for d in datasets}
    h = out["hist"]
    _check_counts(h, cutflow, scored, list(loaded), weighted)

    # --- outputs ---------------------------------------------------------------------------------
    model_info = {
        name: {
            "path": str(path),
            "digest": digest,
            "method": model.method,
            "region": str(model.region),
            "features": list(model.features),
            "input_columns": list(model.input_columns),
            "n_folds": model.n_folds,
            "seed": model.seed,
        }
        for name, (model, path, digest) in loaded.items()
    }
    metadata = {
        "adhunt_version": adhunt.__version__,
        "efficiencies": list(effs),
        "cut_labels": [cut_label(1.0), *labels],
        "thresholds": thresholds,
        "mode": mode,
        "reference": reference_info,
        "models": {n: {"path": m["path"], "digest": m["digest"]} for n, m in model_info.items()},
    }
    h.metadata = metadata
    output.mkdir(parents=True, exist_ok=True)
    paths = {
        "histograms": output / JSON_HIST_NAME,
        "pickle": output / PICKLE_NAME,
        "root": output / ROOT_NAME,
        "json": output / JSON_NAME,
    }
    write_histogram_json(h, paths["histograms"])
    _atomic_write(paths["pickle"], pickle.dumps(h, protocol=pickle.HIGHEST_PROTOCOL))
    write_root(h, paths["root"])
    devices = {k: sorted(v) for k, v in out["devices"].items()}
    doc = {
        "adhunt_version": adhunt.__version__,
        "config": {
            "efficiencies": list(effs),
            "mode": mode,
            "mjj_edges": list(edges),
            "reference_selection": reference_selection,
            "reference": None if reference is None else str(reference),
            "reference_datasets": reference_datasets,
            "gpu_resource": gpu or None,
            "num_threads": num_threads,
            "features": config_to_dict(feature_config),
            "executor": config_to_dict(exec_config),
        },
        "fileset": files,
        "models": model_info,
        "thresholds": thresholds,
        "reference": reference_info,
        "root_names": {lab: root_cut_name(lab) for lab in metadata["cut_labels"]},
        "cutflow": cutflow,
        "scored": scored,
        "skipped": skipped,
        "warnings": list(out["warnings"]),
        "devices": devices,
        "model_loads": dict(out["model_loads"]),
        "chunks": len(out["chunks"]),
        "files": {k: str(v) for k, v in paths.items()},
    }
    _atomic_write(paths["json"], (json.dumps(doc, indent=2) + "\n").encode())
    rs.write_summary(output, summary)
    if not summary.failed:  # else kept for --retry-failed
        shutil.rmtree(output / mf.PARTIALS_DIR, ignore_errors=True)
    from adhunt.jobs.features import log_rate

    log_rate(logger, processed, seconds)
    logger.info(
        "scored %d events with %d model(s) into %s", sum(scored.values()), len(loaded), output
    )
    return InferResult(
        histogram=h,
        cutflow=cutflow,
        scored=scored,
        thresholds=thresholds,
        paths=paths,
        skipped=skipped,
        warnings=list(out["warnings"]),
        model_loads=dict(out["model_loads"]),
        devices=devices,
        workers=dict(out["workers"]),
        summary=summary,
    )


def _check_retry_chunks(summary: Any, todo: list) -> None:
    """A --retry-failed processes recorded failures only: every chunk without a saved result
    must be one (else the directory is not the recorded run's)."""
    from adhunt.processors.inference import InferenceError
    from adhunt.runsummary import retried

    for chunk in todo:
        if not retried(summary, *_chunk_key(chunk)):
            dataset, filename, start, stop = _chunk_key(chunk)
            raise InferenceError(
                f"chunk {filename} entries {start}-{stop} (dataset {dataset!r}) has no saved "
                "result and is not a recorded failure; rerun without --retry-failed"
            )


def _run_summary(
    datasets: list[str],
    good: Mapping[str, list[str]],
    entries: Mapping[str, int],
    bad: list[dict[str, str]],
    chunks: list,
    out: Mapping[str, Any],
    result: Mapping[str, Any],
    key: str,
    identities: Mapping[str, Mapping[str, Any]],
) -> Any:
    """The run summary of an inference (:mod:`adhunt.runsummary`): done chunks are those whose
    result was merged; failed ones are the unusable files and the chunks without a result."""
    from adhunt import runsummary as rs

    done = {tuple(c) for c in out["chunks"]}
    reasons = {tuple(e[:4]): e[4] for e in result.get("errors", [])}
    per: dict[str, Any] = {}
    for dataset in datasets:
        failed = [
            rs.FailedChunk(b["file"], 0, None, b["reason"]) for b in bad if b["dataset"] == dataset
        ]
        finished = []
        for c in chunks:
            k = _chunk_key(c)
            if k[0] != dataset:
                continue
            if k in done:
                finished.append(k[1:])
            else:
                why = reasons.get(k, "not processed (coffea skipped the chunk; see the worker log)")
                failed.append(rs.FailedChunk(k[1], k[2], k[3], why))
        counts = {f: entries[f] for f in good.get(dataset, [])}
        per[dataset] = rs.dataset_summary(counts, finished, failed)
    inputs = {
        i["path"]: {k: v for k, v in i.items() if k in ("path", "size", "mtime_ns")}
        for i in identities.values()
    }
    return rs.RunSummary("infer", per, key, inputs)


def _chunk_key(item: Any) -> tuple[str, str, int, int]:
    return (item.dataset, item.filename, int(item.entrystart), int(item.entrystop))


def _saved_partials(
    output: Path,
    chunks: list,
    proc: Any,
    key: str,
    identities: Mapping[str, Any],
    restart: bool,
) -> dict[tuple[str, str, int, int], dict[str, Any]]:
    """Chunk results an earlier, interrupted run of the same inference saved; every other file
    under ``.partials`` (another model, threshold, configuration, input or chunking, or
    ``restart``) is removed."""
    from adhunt import manifest as mf

    root = output / mf.PARTIALS_DIR
    expected = {
        mf.partial_path(output, *_chunk_key(c)).relative_to(root).as_posix(): _chunk_key(c)
        for c in chunks
    }
    done = {}
    for path in sorted(root.rglob("*")) if root.is_dir() else []:
        if not path.is_file():
            continue
        chunk = expected.get(path.relative_to(root).as_posix())
        loaded = None if restart or chunk is None else mf.read_partial(path)
        stamp = loaded[2] if loaded is not None else {}
        if stamp.get("key") == key and stamp.get("input") == identities.get(chunk[1]):
            done[chunk] = proc.output_from_partial(loaded[0], loaded[1])
        else:
            path.unlink()
    return done


def _execute(
    runner: Any,
    chunks: list,
    proc: Any,
    exec_config: ExecutorConfig,
    progress: Callable[[int, int], None] | None,
    gpu: Mapping[str, float],
    unit: str = "chunks",
) -> dict[str, Any]:
    """Run the chunks, in batches when reporting progress; returns the summed accumulator.

    Batches reuse the same workers (the dask cluster, or one futures process pool kept for all
    batches), so each worker process still loads each model once.
    """
    import dask
    from coffea.processor import accumulate

    def count(items: list) -> int:
        if unit == "events":
            return sum(int(c.entrystop) - int(c.entrystart) for c in items)
        return len(items)

    if progress is None or not chunks:
        batches = [chunks] if chunks else []
    else:
        size = max(4 * exec_config.workers, math.ceil(len(chunks) / 20))
        batches = [chunks[i : i + size] for i in range(0, len(chunks), size)]
    total = count(chunks)
    annotate = dask.annotate(resources=dict(gpu)) if gpu else contextlib.nullcontext()
    outputs: list[dict[str, Any]] = []
    with contextlib.ExitStack() as stack:
        if exec_config.executor == "futures" and len(batches) > 1:
            import loky

            pool = loky.ProcessPoolExecutor(max_workers=exec_config.workers)
            stack.callback(pool.shutdown)
            runner.executor = runner.executor.copy(pool=pool)
        done = 0
        if progress is not None:
            progress(0, total)
        for batch in batches:
            with annotate:
                outputs.append(runner.run(batch, proc, treename="Events")["out"])
            done += count(batch)
            if progress is not None:
                progress(done, total)
    return accumulate(outputs) if outputs else proc.empty_output()


def _check_resources(runner: Any, gpu: Mapping[str, float]) -> None:
    """At least one connected dask worker must advertise the requested resources."""
    from adhunt.processors.inference import InferenceError

    client = getattr(runner.executor, "client", None)
    if client is None:
        return
    workers = client.scheduler_info().get("workers", {})
    able = [
        address
        for address, info in workers.items()
        if all((info.get("resources") or {}).get(k, 0) >= v for k, v in gpu.items())
    ]
    if not able:
        have = {a: info.get("resources") or {} for a, info in workers.items()}
        raise InferenceError(
            f"no dask worker offers the resource(s) {dict(gpu)} (workers: {have}); start GPU "
            "workers with 'dask worker SCHEDULER --resources GPU=1'"
        )
    logger.info("%d of %d dask worker(s) offer %s", len(able), len(workers), dict(gpu))


def _check_counts(
    h: Any,
    cutflow: dict[str, dict[str, int]],
    scored: dict[str, int],
    models: list[str],
    weighted: dict[str, float] | None = None,
) -> None:
    """Every event counted once: cutflow nested, each selected event scored and filled once.

    The histogram is filled with event weights: per model it must hold ``weighted[dataset]``
    (the scored events' sum of weights; their count when ``weighted`` is None).
    """
    import numpy as np

    from adhunt.processors.features import CUTFLOW_STEPS

    for dataset, counts in cutflow.items():
        steps = [counts[s] for s in CUTFLOW_STEPS]
        if any(b > a for a, b in itertools.pairwise(steps)):
            raise RuntimeError(f"dataset {dataset!r}: cutflow is not nested: {counts}")
        if scored[dataset] != counts["two_jets"]:
            raise RuntimeError(
                f"dataset {dataset!r}: {scored[dataset]} events scored but "
                f"{counts['two_jets']} passed the selection"
            )
    names = [str(c) for c in h.axes["dataset"]]
    values = np.asarray(h.view(flow=True)["value"])
    axes = list(h.axes.name)
    for dataset, n in scored.items():
        if dataset not in names:
            if n:
                raise RuntimeError(f"dataset {dataset!r}: {n} events scored but not histogrammed")
            continue
        for m, model in enumerate(models):
            index = [slice(None)] * values.ndim
            index[axes.index("dataset")] = names.index(dataset)
            index[axes.index("model")] = m
            total = float(values[tuple(index)].sum())
            expected = float(n) if weighted is None else weighted[dataset]
            if abs(total - expected) > 1e-9 * max(1.0, abs(expected)):
                raise RuntimeError(
                    f"dataset {dataset!r}, model {model!r}: histogram holds {total:g} (sum of "
                    f"weights), the {n} scored events weigh {expected:g}"
                )


def _specific(err: BaseException) -> BaseException:
    """The most specific of our errors in an exception chain (coffea wraps worker errors)."""
    from adhunt.models.artifact import ArtifactError
    from adhunt.processors.features import FeatureInputError
    from adhunt.processors.inference import InferenceError

    chain, seen = [], set()
    cur: BaseException | None = err
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        chain.append(cur)
        cur = cur.__cause__ or cur.__context__
    for e in chain:
        if isinstance(e, ArtifactError | InferenceError | FeatureInputError):
            return type(e)(str(e))
    return InferenceError(f"inference failed: {chain[0]}")


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_root(h: Any, path: str | Path) -> Path:
    """One TH1D per ``{dataset}/{model}/{cut}`` (cumulative cut spectra, flow bins kept)."""
    import uproot

    from adhunt.histograms import cut_spectra, root_cut_name

    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with uproot.recreate(tmp) as f:
            for dataset in [str(c) for c in h.axes["dataset"]]:
                for model in [str(c) for c in h.axes["model"]]:
                    for label, spectrum in cut_spectra(h, model, dataset).items():
                        f[f"{dataset}/{model}/{root_cut_name(label)}"] = spectrum
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def read_root_spectra(path: str | Path) -> dict[str, tuple[Any, Any]]:
    """``{"dataset/model/cut": (edges, counts)}`` of a ``histograms.root`` (flow bins dropped)."""
    import uproot

    out = {}
    with uproot.open(path) as f:
        for key, cls in f.classnames(cycle=False).items():
            if cls.startswith("TH1"):
                obj = f[key]
                out[key] = (obj.axis().edges(), obj.values())
    return out


def _parse_resource(text: str | None) -> dict[str, float] | None:
    if not text:
        return None
    out = {}
    for part in text.split(","):
        name, sep, value = part.partition("=")
        try:
            out[name.strip()] = float(value) if sep else 1.0
        except ValueError:
            raise ValueError(f"--gpu-resource expects NAME=AMOUNT, got {part!r}") from None
        if not name.strip():
            raise ValueError(f"--gpu-resource expects NAME=AMOUNT, got {part!r}")
    return out


def infer(
    fileset: Annotated[Path, typer.Argument(help="Fileset JSON: {dataset: files} (coffea form).")],
    model: Annotated[
        list[str],
        typer.Option(
            "--model", "-m", help="NAME=MODEL_DIR (repeatable); a bare DIR is named by its method."
        ),
    ],
    output: OutputDirOption,
    reference: Annotated[
        Path | None,
        typer.Option(
            "--reference",
            help="Feature directory to calibrate thresholds (default: each model's training table).",
        ),
    ] = None,
    reference_datasets: Annotated[
        str | None, typer.Option("--reference-datasets", help="Only these datasets of it.")
    ] = None,
    reference_selection: Annotated[
        str, typer.Option("--reference-selection", help="sr (the model's window) | all.")
    ] = "sr",
    efficiencies: Annotated[
        str, typer.Option("--efficiencies", help="Background efficiencies of the cuts.")
    ] = ",".join(f"{e:g}" for e in DEFAULT_EFFICIENCIES),
    mode: Annotated[
        str, typer.Option("--mode", help="kfold (the training data) | ensemble (independent data).")
    ] = "kfold",
    executor: ExecutorOption = "iterative",
    scheduler: SchedulerOption = None,
    workers: WorkersOption = None,
    chunksize: ChunksizeOption = 100_000,
    cluster: ClusterOption = None,
    cluster_config: ClusterConfigOption = None,
    cores: CoresOption = None,
    memory: MemoryOption = None,
    walltime: WalltimeOption = None,
    queue: QueueOption = None,
    max_jobs: MaxJobsOption = None,
    dry_run: DryRunOption = False,
    gpu_resource: Annotated[
        str | None,
        typer.Option("--gpu-resource", help="dask worker resource per chunk task, e.g. GPU=1."),
    ] = None,
    skip_bad_files: SkipBadFilesOption = False,
    dedupe_files: DedupeFilesOption = False,
    allow_duplicates: AllowDuplicatesOption = False,
    config: Annotated[
        Path | None, typer.Option("--config", help="FeatureConfig YAML/TOML (as for features).")
    ] = None,
    overwrite: OverwriteOption = False,
    allow_partial: AllowPartialOption = False,
    restart: RestartOption = False,
    retry_failed: RetryFailedOption = False,
) -> None:
    """Score a fileset with trained models into mjj histograms per background-efficiency cut."""
    checked_output(output, command="infer", overwrite=overwrite)
    from adhunt.config import load_config
    from adhunt.jobs.executors import executor_from_options, print_job_script
    from adhunt.jobs.features import cutflow_table, report_summary
    from adhunt.jobs.reporting import console, progress_bar
    from adhunt.models.artifact import ArtifactError
    from adhunt.processors.features import FeatureConfig, FeatureInputError
    from adhunt.tables import partial_reading

    try:
        exec_config = executor_from_options(
            executor, workers, chunksize, scheduler, skip_bad_files, cluster, cluster_config,
            cores=cores, memory=memory, walltime=walltime, queue=queue, maximum_jobs=max_jobs,
        )  # fmt: skip
        if dry_run:
            print_job_script(exec_config)
            return
        feature_config = load_config(FeatureConfig, config) if config else FeatureConfig()
        effs = [float(e) for e in split_list(efficiencies) or []]
        specs = parse_model_specs(model)
        with partial_reading(allow_partial), progress_bar() as bar:
            task = bar.add_task("infer", total=None, unit="events")
            result = run_infer(
                fileset, specs, output, exec_config, reference=reference, efficiencies=effs,
                feature_config=feature_config, mode=mode,
                progress=lambda done, total: bar.update(task, completed=done, total=total),
                reference_selection=reference_selection,
                reference_datasets=split_list(reference_datasets),
                gpu_resource=_parse_resource(gpu_resource), overwrite=overwrite,
                dedupe_files=dedupe_files, allow_duplicates=allow_duplicates, restart=restart,
                retry_failed=retry_failed, progress_unit="events",
            )  # fmt: skip
    except KeyboardInterrupt as err:
        logger.error(
            "interrupted: the finished chunks are saved under %s; run the same command again to "
            "resume (--restart starts over)",
            Path(output) / ".partials",
        )
        raise typer.Exit(code=130) from err
    except (
        ArtifactError,
        FeatureInputError,
        ValueError,
        FileNotFoundError,
        ConnectionError,
        ImportError,
    ) as err:
        logger.error("%s", err)
        raise typer.Exit(code=2) from err

    console.print(cutflow_table(result.cutflow, f"cutflow ({output})"))
    for name, cuts in result.thresholds.items():
        logger.info("%s: %s", name, ", ".join(f"{k}: score >= {v:.4g}" for k, v in cuts.items()))
    report_summary(result.summary, f"run summary ({output})")
    logger.info("wrote %s", ", ".join(str(p) for p in result.paths.values()))

"""``adhunt features``: a fileset -> dijet feature tables, cutflow and config echo.

``run_features`` is the library entry point (demo and tests call it); ``features`` is the typer
command around it. Input files are checked up front (exists, opens, has the tree and branches,
has events) so that a bad file is reported by name before any work starts; with
``skip_bad_files`` such files, and chunks that fail later, are skipped and listed instead.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

# load_datasets/load_fileset moved to the core (adhunt.filesets); kept importable from here.
from adhunt.filesets import load_datasets, load_fileset  # noqa: F401
from adhunt.jobs.options import (
    ChunksizeOption,
    ClusterConfigOption,
    ClusterOption,
    ConfigOption,
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
)

if TYPE_CHECKING:
    from adhunt.clusters import ClusterConfig
    from adhunt.inputs import DatasetWeights
    from adhunt.processors.features import FeatureConfig
    from adhunt.runsummary import RunSummary

logger = logging.getLogger(__name__)

TREE_NAME = "Events"


@dataclass
class FeatureRunResult:
    """What a feature run produced: tables, cutflow per dataset, and what it had to skip."""

    output_dir: Path
    files: list[Path]
    cutflow: dict[str, dict[str, int]]
    skipped: list[dict[str, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    status: dict[str, str] = field(default_factory=dict)  # per dataset, see adhunt.manifest
    resumed_chunks: int = 0  # chunks found done on disk and not processed again
    summary: RunSummary | None = None  # adhunt.runsummary, also in run_summary.json


def check_inputs(
    fileset: dict[str, list[str]] | dict[str, dict[str, str]],
    required: tuple[str, ...] | Callable[[set[str]], str | None],
    default_tree: str = TREE_NAME,
) -> tuple[dict[str, list[str]], list[dict[str, str]], dict[str, int]]:
    """Split a fileset into good files and bad ones (with the reason); also entries per good file.

    ``fileset`` maps datasets to file lists (tree ``default_tree``) or to ``{file: tree}``.
    ``required`` is a tuple of branch names or a function of the branch names returning why the
    file cannot be used (``FeatureConfig.missing_branches``), None if it can.
    """
    import uproot

    if not callable(required):
        names = tuple(required)

        def required(keys: set[str]) -> str | None:
            missing = [b for b in names if b not in keys]
            return f"missing branch(es) {', '.join(missing)}" if missing else None

    good: dict[str, list[str]] = {}
    bad: list[dict[str, str]] = []
    entries: dict[str, int] = {}
    for dataset, files in fileset.items():
        trees = files if isinstance(files, dict) else dict.fromkeys(files, default_tree)
        good[dataset] = []
        for name, tree_name in trees.items():
            reason = None
            if "://" not in name and not Path(name).is_file():
                reason = "file not found"
            else:
                try:
                    with uproot.open(name) as handle:
                        if tree_name not in handle:
                            trees_there = sorted(
                                {k.split(";")[0] for k in handle.keys(recursive=False)}
                            )
                            reason = (
                                f"no tree {tree_name!r} (the file has {', '.join(trees_there)})"
                            )
                        else:
                            tree = handle[tree_name]
                            reason = required(set(_branch_names(tree)))
                            if reason is None and tree.num_entries == 0:
                                reason = "empty file (0 events)"
                            elif reason is None:
                                entries[name] = int(tree.num_entries)
                except Exception as err:  # uproot raises many types for corrupt files
                    reason = f"cannot read ROOT file ({type(err).__name__}: {err})"
            if reason is None:
                good[dataset].append(name)
            else:
                bad.append({"dataset": dataset, "file": name, "reason": reason})
    return good, bad, entries


def _branch_names(tree: Any) -> list[str]:
    """Branch names of a TTree, or the NanoAOD-style names of an RNTuple's fields.

    RNTuple NanoAOD stores a collection as one field ``FatJet`` with subfields and a counter
    ``nFatJet``; the names are flattened to ``FatJet_pt`` so one check serves both formats.
    """
    if hasattr(tree, "branches"):
        return list(tree.keys())
    names = []
    for field_ in tree.fields:
        sub = getattr(field_, "fields", None) or []
        if sub:
            names.append(f"n{field_.name}")
            names.extend(f"{field_.name}_{s.name.split('.')[-1]}" for s in sub)
        else:
            names.append(field_.name)
    return names


def run_features(
    fileset: str | Path | dict[str, Any],
    output_dir: str | Path,
    config: FeatureConfig | None = None,
    executor: str = "iterative",
    workers: int = 1,
    chunksize: int = 100_000,
    scheduler: str | None = None,
    skip_bad_files: bool = False,
    dedupe_files: bool = False,
    overwrite: bool = False,
    cluster: ClusterConfig | None = None,
    restart: bool = False,
    retry_failed: bool = False,
) -> FeatureRunResult:
    """Compute feature tables for every dataset of ``fileset`` into ``output_dir``.

    Writes ``<output_dir>/<dataset>/*.parquet`` (read them with ``adhunt.tables.read_features``),
    ``manifest.json`` (``adhunt.manifest``), ``cutflow.json`` and ``features_config.json``.
    Raises ``FeatureInputError`` naming the file on bad input unless ``skip_bad_files``. The same
    input file twice in ``fileset`` is a ``FilesetError`` (a ValueError) unless ``dedupe_files``
    (see :mod:`adhunt.filesets`).

    Resumable: chunks already on disk, stamped by the same configuration from the same input
    files, are not processed again (``restart`` processes everything). Tables of an earlier run
    are set aside, not deleted, until the new run of their dataset has completed, and put back if
    it fails; after an interrupt (KeyboardInterrupt, re-raised) the manifest marks the dataset
    incomplete and the same call resumes it. The output directory
    is checked first (:func:`adhunt.outputs.check_output_dir`: a non-empty directory must be an
    earlier features output, unless ``overwrite``), and so is every dataset directory it holds.

    ``run_summary.json`` (:mod:`adhunt.runsummary`) says per dataset how many events were
    processed out of those in the fileset and lists every failed chunk with its reason;
    ``retry_failed`` reads it and processes only those chunks (refused when nothing failed or the
    fileset, its files or the configuration differ from the recorded run's).
    """
    import time

    from adhunt import manifest as mf
    from adhunt import runsummary as rs
    from adhunt.config import config_to_dict
    from adhunt.inputs import load_lumi_mask
    from adhunt.jobs.executors import ExecutorConfig, coffea_runner
    from adhunt.outputs import check_output_dir
    from adhunt.processors.features import (
        CUTFLOW_STEPS,
        DijetFeatureProcessor,
        FeatureConfig,
        FeatureInputError,
    )
    from adhunt.tables import chunk_filename

    config = config or FeatureConfig()
    exec_config = ExecutorConfig(executor, workers, chunksize, scheduler, skip_bad_files, cluster)
    output_dir = check_output_dir(output_dir, command="features", overwrite=overwrite)
    retry: rs.RunSummary | None = None
    if retry_failed:
        try:
            retry = rs.read_summary(output_dir)
        except rs.SummaryError as err:
            raise FeatureInputError(str(err)) from err
        if restart:
            raise FeatureInputError("--retry-failed and --restart contradict")
    datasets = load_datasets(fileset, config.tree, dedupe_files=dedupe_files)
    files = {d: entry["files"] for d, entry in datasets.items()}
    for dataset in files:  # the chunk tables go to <output_dir>/<dataset>/
        check_output_dir(output_dir / dataset, overwrite=True)

    good, bad, entries = check_inputs(files, config.missing_branches, config.tree)
    if bad and not skip_bad_files:
        lines = "; ".join(f"{b['file']}: {b['reason']}" for b in bad)
        raise FeatureInputError(f"bad input file(s) (use --skip-bad-files to skip them): {lines}")
    for b in bad:
        logger.warning("skipping %s (dataset %s): %s", b["file"], b["dataset"], b["reason"])
    good = {d: f for d, f in good.items() if f}
    if config.lumi_mask is not None:
        load_lumi_mask(config.lumi_mask)  # a bad golden JSON fails here, before any work
    weights = dataset_weights(datasets, good, config)

    output_dir.mkdir(parents=True, exist_ok=True)
    features = config_to_dict(config)
    try:
        previous = mf.load_manifest(output_dir)
        replaced = mf.check_other_datasets(output_dir, previous, features, files, restart)
    except mf.ManifestError as err:
        raise FeatureInputError(str(err)) from err
    manifest = previous or mf.Manifest()
    if previous is None:  # a directory from before manifests: its other datasets stay readable
        mf.adopt_legacy_datasets(output_dir, manifest, features, files)
    identities = {f: mf.file_identity(f) for names in good.values() for f in names}
    from adhunt import __version__

    depends = {"adhunt": __version__}  # chunks of another version are made again
    if config.lumi_mask is not None:  # the path alone would not see a golden JSON rewritten
        depends["lumi_mask_sha256"] = mf.content_hash(config.lumi_mask)

    out: dict[str, Any] = {"cutflow": {}, "files": [], "chunks": [], "warnings": [], "errors": []}
    runnable = {d: {"files": {f: files[d][f] for f in names}} for d, names in good.items()}
    with coffea_runner(exec_config, config.schema_class, (FeatureInputError,)) as runner:
        try:
            items = list(runner.preprocess(runnable, treename=None)) if runnable else []
        except FeatureInputError:
            raise
        except Exception as err:
            raise FeatureInputError(_describe(err)) from err
        records: dict[str, mf.DatasetRecord] = {}
        done_before: dict[str, set[str]] = {}
        for dataset in files:
            chunks = [
                (i.filename, i.entrystart, i.entrystop) for i in items if i.dataset == dataset
            ]
            records[dataset] = mf.DatasetRecord(
                features=features,
                weights=config_to_dict(weights[dataset]),
                depends=depends,
                chunksize=chunksize,
                inputs=[
                    {**identities[f], "tree": files[dataset][f], "entries": entries[f]}
                    for f in good.get(dataset, [])
                ],
                chunks=chunks,
                skipped=[
                    {"file": b["file"], "reason": b["reason"]}
                    for b in bad
                    if b["dataset"] == dataset
                ],
            )
        if retry is not None:
            _check_retry(output_dir, retry, manifest, records, files, identities, items)
        for dataset in files:
            try:
                done_before[dataset] = mf.prepare_dataset(
                    output_dir,
                    dataset,
                    records[dataset],
                    manifest.datasets.get(dataset),
                    identities,
                    restart,
                )
            except mf.ManifestError as err:
                raise FeatureInputError(str(err)) from err
        # the record of what is being written goes to disk before any chunk
        before = dict(manifest.datasets)
        manifest.datasets.update(records)
        mf.write_manifest(output_dir, manifest)

        todo = [
            i
            for i in items
            if Path(chunk_filename(i.dataset, i.filename, i.entrystart, i.entrystop)).name
            not in done_before[i.dataset]
        ]
        n_done = len(items) - len(todo)
        if n_done:
            logger.info(
                "skipping %d of %d chunk(s) already done (%s); %d to process",
                n_done, len(items), output_dir, len(todo),
            )  # fmt: skip
        processor_instance = DijetFeatureProcessor(
            config,
            output_dir,
            skip_bad_chunks=skip_bad_files,
            weights=weights,
            stamps={
                "fingerprint": {d: r.fingerprint for d, r in records.items()},
                "inputs": identities,
            },
        )

        def finish(outcome: str) -> None:
            restored = 0
            for dataset, record in records.items():
                kept = mf.finish_dataset(
                    output_dir,
                    dataset,
                    record,
                    before.get(dataset),
                    identities,
                    done_before[dataset],
                    outcome,
                    skip_missing=skip_bad_files,
                    steps=CUTFLOW_STEPS,
                )
                if kept is None or kept is before.get(dataset):
                    restored += 1
                if kept is None:  # tables older than manifests, back as they were
                    manifest.datasets.pop(dataset, None)
                else:
                    manifest.datasets[dataset] = kept
            if outcome == "complete" and all(
                manifest.datasets[d].complete for d in records if records[d].chunks
            ):
                for dataset in replaced:
                    mf.remove_dataset(output_dir, dataset)
                    manifest.datasets.pop(dataset, None)
                    logger.info("removed dataset %s (another configuration; --restart)", dataset)
            if previous is None:  # restored tables from before manifests are recorded again
                mf.adopt_legacy_datasets(output_dir, manifest, features, [])
            if previous is None and not manifest.datasets:
                (output_dir / mf.MANIFEST_NAME).unlink(missing_ok=True)
            else:
                mf.write_manifest(output_dir, manifest)
            if outcome != "complete" and restored < len(records):
                # the reports say what the directory now holds, marked incomplete
                _write_reports(output_dir, manifest, list(files), config, exec_config, n_done)

        started = time.perf_counter()
        try:
            if todo:
                result = runner.run(todo, processor_instance, treename=None)["out"]
                if result:
                    out.update(result)
        except KeyboardInterrupt:
            finish("interrupted")
            raise
        except BaseException as err:
            finish("failed")
            if isinstance(err, FeatureInputError):
                raise
            if not isinstance(err, Exception):
                raise
            raise FeatureInputError(_describe(err)) from err

    finish("complete")
    seconds = time.perf_counter() - started
    # every chunk on disk counts as processed, including those done before a resume
    out["chunks"] = [(d, f, a, b) for d in records for f, a, b in manifest.datasets[d].done]
    skipped, _ = summarize_run(out, bad, good, entries, files)
    for item in skipped:  # chunks that failed or that coffea skipped (--skip-bad-files)
        if item not in bad:
            manifest.datasets[item["dataset"]].skipped.append(
                {"file": item["file"], "reason": item["reason"]}
            )
    _record_failures(manifest, records, bad, todo, out["errors"])
    mf.write_manifest(output_dir, manifest)
    done_now = {(d, *c) for d in records for c in manifest.datasets[d].done}
    processed = sum(
        i.entrystop - i.entrystart
        for i in todo
        if (i.dataset, i.filename, i.entrystart, i.entrystop) in done_now
    )
    log_rate(logger, processed, seconds)
    return _write_reports(output_dir, manifest, list(files), config, exec_config, n_done)


def log_rate(log: logging.Logger, events: int, seconds: float, what: str = "processed") -> None:
    """The one closing line of a processing step: N events in T s (X events/s)."""
    rate = events / seconds if seconds > 0 else 0.0
    log.info("%s %d events in %.1f s (%.0f events/s)", what, events, seconds, rate)


def _check_retry(
    output_dir: Path,
    summary: Any,
    manifest: Any,
    records: dict[str, Any],
    files: dict[str, Any],
    identities: dict[str, Any],
    items: list[Any],
) -> None:
    """Refuse a --retry-failed the recorded run cannot serve (one-line FeatureInputError): see
    :func:`adhunt.runsummary.check_retry`; also every chunk that is not done on disk must be one
    of the recorded failures (nothing else is recomputed)."""
    from adhunt import manifest as mf
    from adhunt import runsummary as rs
    from adhunt.processors.features import FeatureInputError
    from adhunt.tables import chunk_filename

    for dataset, record in records.items():
        before = manifest.datasets.get(dataset)
        if before is None:
            raise FeatureInputError(f"dataset {dataset!r} is not in the recorded run")
        if before.fingerprint != record.fingerprint:
            differ = "; ".join(mf.config_differences(before.features, record.features))
            raise FeatureInputError(
                f"dataset {dataset!r}: the configuration differs from the recorded run's "
                f"({differ or 'weights or adhunt version'}, old vs new); rerun without "
                "--retry-failed"
            )
        if before.chunksize != record.chunksize:
            raise FeatureInputError(
                f"dataset {dataset!r}: the recorded run used --chunksize {before.chunksize}; "
                f"retry with --chunksize {before.chunksize}"
            )
    now = rs.summary_from_manifest(mf.Manifest(dict(records)), list(files))
    try:
        rs.check_retry(summary, "features", files, identities, now.fingerprint)
    except rs.SummaryError as err:
        raise FeatureInputError(str(err)) from err
    for i in items:
        path = output_dir / chunk_filename(i.dataset, i.filename, i.entrystart, i.entrystop)
        fp = records[i.dataset].fingerprint
        if path.is_file() and mf.stamp_matches(
            mf.chunk_stamp(path), fp, identities.get(i.filename, {})
        ):
            continue
        if not rs.retried(summary, i.dataset, i.filename, i.entrystart, i.entrystop):
            raise FeatureInputError(
                f"chunk {i.filename} entries {i.entrystart}-{i.entrystop} (dataset "
                f"{i.dataset!r}) is neither done nor a recorded failure; rerun without "
                "--retry-failed to complete the directory"
            )


def _record_failures(
    manifest: Any, records: dict[str, Any], bad: list[dict[str, str]], todo: list[Any], errors: list
) -> None:
    """Each dataset's failures into its manifest record: unusable files (whole) and the chunks of
    this run that are not done (with the processor's reason, or coffea's skip)."""
    reasons = {(d, f, a, b): r for d, f, a, b, r in errors}
    for dataset in records:
        record = manifest.datasets.get(dataset)
        if record is None:
            continue
        done = set(record.done)
        failed = [[b["file"], 0, None, b["reason"]] for b in bad if b["dataset"] == dataset]
        for i in todo:
            key = (i.dataset, i.filename, i.entrystart, i.entrystop)
            if i.dataset != dataset or key[1:] in done:
                continue
            reason = reasons.get(
                key, "not processed (coffea skipped the chunk; see the worker log)"
            )
            failed.append([i.filename, i.entrystart, i.entrystop, reason])
        record.failed = failed


def _write_reports(
    output_dir: Path,
    manifest: Any,
    run_datasets: list[str],
    config: Any,
    exec_config: Any,
    n_done: int,
) -> FeatureRunResult:
    """``cutflow.json`` and ``features_config.json`` of every dataset in the directory (from the
    manifest, so a resumed run writes the same as an uninterrupted one) and the run's result."""
    from adhunt.config import config_to_dict, write_json

    order = run_datasets + sorted(d for d in manifest.datasets if d not in run_datasets)
    run_datasets = [d for d in run_datasets if d in manifest.datasets]
    records = {d: manifest.datasets[d] for d in order if d in manifest.datasets}
    skipped = [{"dataset": d, **s} for d, r in records.items() for s in r.skipped]
    warnings = [w for r in records.values() for w in r.warnings]
    cutflow = {d: dict(r.cutflow) for d, r in records.items()}
    write_json(
        output_dir / "cutflow.json",
        {
            "cutflow": cutflow,
            "skipped": skipped,
            "warnings": warnings,
            "status": {d: r.status for d, r in records.items()},
        },
    )
    write_json(
        output_dir / "features_config.json",
        {
            "features": config_to_dict(config),
            "executor": config_to_dict(exec_config),
            "fileset": {d: {i["path"]: i["tree"] for i in r.inputs} for d, r in records.items()},
            "weights": {d: r.weights for d, r in records.items()},
            # read back by adhunt.tables (read_features / read_images): the optional outputs
            "extra_columns": list(config.extra_columns()),
            "images": config.image_spec(),
        },
    )
    from adhunt.tables import chunk_filename

    files = sorted(
        output_dir / chunk_filename(d, *c) for d in run_datasets for c in records[d].done
    )
    run_skipped = [s for s in skipped if s["dataset"] in run_datasets]
    from adhunt.runsummary import summary_from_manifest, write_summary

    summary = summary_from_manifest(manifest, run_datasets)
    write_summary(output_dir, summary)
    return FeatureRunResult(
        output_dir=output_dir,
        files=files,
        cutflow={d: cutflow[d] for d in run_datasets},
        skipped=run_skipped,
        warnings=[w for d in run_datasets for w in records[d].warnings],
        status={d: records[d].status for d in run_datasets},
        resumed_chunks=n_done,
        summary=summary,
    )


def dataset_weights(
    datasets: dict[str, dict[str, Any]], good: dict[str, list[str]], config: FeatureConfig
) -> dict[str, DatasetWeights]:
    """How each dataset is weighted, from its fileset metadata (``is_data``, ``xsec`` in pb).

    With ``config.luminosity`` every simulated dataset needs ``xsec``; its generator weights
    are scaled by xsec x luminosity / (sum of generator weights over all its files).
    """
    from adhunt.inputs import DatasetWeights, InputError, normalisation, sum_of_generator_weights
    from adhunt.processors.features import FeatureInputError

    out = {}
    for dataset, entry in datasets.items():
        meta = entry["metadata"]
        is_data = meta.get("is_data")
        if is_data is not None and not isinstance(is_data, bool):
            raise FeatureInputError(
                f"fileset dataset {dataset!r}: metadata is_data must be true or false, got {is_data!r}"
            )
        scale = 1.0
        if config.luminosity is not None and not is_data and good.get(dataset):
            if "xsec" not in meta:
                raise FeatureInputError(
                    f"fileset dataset {dataset!r}: normalising to a luminosity needs metadata "
                    "'xsec' (pb), or 'is_data': true for data"
                )
            try:
                sumw = sum(sum_of_generator_weights(f, entry["files"][f])[0] for f in good[dataset])
                scale = normalisation(float(meta["xsec"]), config.luminosity, sumw)
            except (InputError, TypeError, ValueError) as err:
                raise FeatureInputError(f"fileset dataset {dataset!r}: {err}") from err
        out[dataset] = DatasetWeights(is_data=is_data, scale=scale)
    return out


def summarize_run(
    out: dict[str, Any],
    bad: list[dict[str, str]],
    good: dict[str, list[str]],
    entries: dict[str, int],
    datasets: Any,
) -> tuple[list[dict[str, str]], dict[str, dict[str, int]]]:
    """What a processor run skipped (bad files, failed chunks, entries coffea left out) and its
    cutflow per dataset (every step, zeros included); logs the chunks' warnings."""
    from adhunt.processors.features import CUTFLOW_STEPS

    skipped = list(bad)
    for dataset, filename, _start, _stop, reason in out["errors"]:
        skipped.append({"dataset": dataset, "file": filename, "reason": reason})
    skipped.extend(_unprocessed(good, entries, out["chunks"], out["errors"]))
    for message in out["warnings"]:
        logger.warning(message)
    cutflow = {
        d: {step: int(out["cutflow"].get(d, {}).get(step, 0)) for step in CUTFLOW_STEPS}
        for d in datasets
    }
    return skipped, cutflow


def _describe(err: BaseException) -> str:
    """The most specific message in an exception chain (coffea wraps ours in generic Exceptions)."""
    from adhunt.processors.features import FeatureInputError, FeatureOutputError

    chain, seen = [], set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        chain.append(err)
        err = err.__cause__ or err.__context__
    for e in chain:
        if isinstance(e, FeatureInputError | FeatureOutputError):
            return str(e)
    return f"feature processing failed: {chain[0]}"


def _unprocessed(
    good: dict[str, list[str]], entries: dict[str, int], chunks: list, errors: list
) -> list[dict[str, str]]:
    """Entries of good files that no chunk covered: coffea skipped them (skip_bad_files)."""
    done: dict[str, int] = {}
    for _, filename, start, stop, *_ in [*chunks, *errors]:
        done[filename] = done.get(filename, 0) + (stop - start)
    missing = []
    for dataset, files in good.items():
        for name in files:
            if done.get(name, 0) != entries.get(name, 0):
                missing.append(
                    {
                        "dataset": dataset,
                        "file": name,
                        "reason": f"only {done.get(name, 0)} of {entries[name]} entries processed "
                        "(coffea skipped the rest; see the worker log)",
                    }
                )
    return missing


def report_summary(summary: Any, title: str) -> None:
    """The end of a run on the console: the summary table, then each failed chunk and why."""
    from adhunt.jobs.reporting import console
    from adhunt.runsummary import summary_table

    if summary is None:
        return
    console.print(summary_table(summary, title))
    for dataset, failed in summary.failed:
        logger.warning("failed chunk %s (dataset %s): %s", failed.label(), dataset, failed.reason)


def cutflow_table(cutflow: dict[str, dict[str, int]], title: str) -> Any:
    """A rich table of a cutflow ``{dataset: {step: n}}``: counts and efficiency w.r.t. events read."""
    from rich.table import Table

    from adhunt.processors.features import CUTFLOW_STEPS

    table = Table(title=title)
    table.add_column("step")
    for dataset in cutflow:
        table.add_column(dataset, justify="right")
        table.add_column("eff.", justify="right")
    for step in CUTFLOW_STEPS:
        row = [step]
        for counts in cutflow.values():
            total = counts.get("events", 0)
            n = counts.get(step, 0)
            row += [str(n), f"{n / total:.3f}" if total else "-"]
        table.add_row(*row)
    return table


def features(
    fileset: Annotated[Path, typer.Argument(help="Fileset JSON: {dataset: files} (coffea form).")],
    output: OutputDirOption,
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
    jets: Annotated[
        str | None, typer.Option(help="pfcands (recluster PFCands) | fatjet (NanoAOD FatJet).")
    ] = None,
    radius: Annotated[
        float | None,
        typer.Option(help="Anti-kT radius and tau_N R0 (pfcands; refused with --jets fatjet)."),
    ] = None,
    schema: Annotated[
        str | None, typer.Option(help="nanoaod (CMS NanoAOD/PFNanoAOD) | delphes.")
    ] = None,
    trigger_pt: Annotated[
        float | None, typer.Option(help="Jet trigger: a jet above this pT (GeV).")
    ] = None,
    no_trigger: Annotated[
        bool, typer.Option("--no-trigger", help="No jet-pT trigger (e.g. with --hlt).")
    ] = False,
    hlt: Annotated[
        str | None, typer.Option(help="OR of HLT bits, comma-separated (HLT_ prefix optional).")
    ] = None,
    no_puppi: Annotated[
        bool, typer.Option("--no-puppi", help="Ignore PFCands_puppiWeight when clustering.")
    ] = False,
    jet_eta: Annotated[
        float | None, typer.Option(help="fatjet: keep fat jets with |eta| below this.")
    ] = None,
    jet_id: Annotated[
        int | None, typer.Option(help="fatjet: required FatJet_jetId bits (2 tight, 6 +lepveto).")
    ] = None,
    jet_mass: Annotated[
        str | None, typer.Option(help="fatjet: jet mass mj, mass | msoftdrop.")
    ] = None,
    lumi_mask: Annotated[
        Path | None, typer.Option("--lumi-mask", help="CMS golden JSON for data.")
    ] = None,
    luminosity: Annotated[
        float | None,
        typer.Option(help="pb^-1: normalise MC weights to xsec (fileset metadata) x this."),
    ] = None,
    images: Annotated[
        bool,
        typer.Option(
            "--images", help="Also write jet images of both jets (one .images.npy per chunk)."
        ),
    ] = False,
    image_size: Annotated[
        int | None, typer.Option(help="Jet images: pixels per side (default 32).")
    ] = None,
    extended: Annotated[
        bool,
        typer.Option(
            "--extended",
            help="Also write tau_N (N<=5, beta 0.5/1/2), soft-drop mass, D2, n constituents.",
        ),
    ] = False,
    skip_bad_files: SkipBadFilesOption = False,
    dedupe_files: DedupeFilesOption = False,
    config: ConfigOption = None,
    overwrite: OverwriteOption = False,
    restart: RestartOption = False,
    retry_failed: RetryFailedOption = False,
) -> None:
    """Extract dijet features from a fileset through the Coffea feature processor."""
    checked_output(output, command="features", overwrite=overwrite)
    import dataclasses

    from adhunt.config import load_config
    from adhunt.jobs.executors import executor_from_options, print_job_script
    from adhunt.jobs.reporting import console
    from adhunt.processors.features import FeatureConfig, FeatureInputError

    try:
        exe = executor_from_options(
            executor, workers, chunksize, scheduler, skip_bad_files, cluster, cluster_config,
            cores=cores, memory=memory, walltime=walltime, queue=queue, maximum_jobs=max_jobs,
        )  # fmt: skip
        if dry_run:
            print_job_script(exe)
            return
        feature_config = load_config(FeatureConfig, config) if config else FeatureConfig()
        overrides: dict[str, Any] = {
            k: v
            for k, v in {
                "jets": jets,
                "schema": schema,
                "jet_abs_eta_max": jet_eta,
                "jet_id": jet_id,
                "jet_mass": jet_mass,
                "luminosity": luminosity,
                "lumi_mask": None if lumi_mask is None else str(lumi_mask),
            }.items()
            if v is not None
        }
        if hlt is not None:
            overrides["hlt"] = tuple(p.strip() for p in hlt.split(",") if p.strip())
        if no_trigger:
            overrides["apply_trigger"] = False
        if no_puppi:
            overrides["puppi"] = False
        if images:
            overrides["images"] = True
        if image_size is not None:
            overrides["image_size"] = image_size
        if extended:
            overrides["extended"] = True
        if trigger_pt is not None:
            overrides["trigger"] = dataclasses.replace(feature_config.trigger, pt_min=trigger_pt)
        if radius is not None:
            if overrides.get("jets", feature_config.jets) == "fatjet":
                raise ValueError(
                    "--radius cannot be used with --jets fatjet: the fat jets' radius is fixed "
                    "by the file (NanoAOD FatJet: AK8, R = 0.8)"
                )
            overrides["radius"] = radius
        elif "jets" in overrides and overrides["jets"] != feature_config.jets:
            overrides["radius"] = None  # the new jet source's own default radius
        feature_config = dataclasses.replace(feature_config, **overrides)
        result = run_features(
            fileset,
            output,
            feature_config,
            executor=exe.executor,
            workers=exe.workers,
            chunksize=chunksize,
            scheduler=exe.scheduler,
            skip_bad_files=skip_bad_files,
            dedupe_files=dedupe_files,
            overwrite=overwrite,
            cluster=exe.cluster,
            restart=restart,
            retry_failed=retry_failed,
        )
    except KeyboardInterrupt as err:
        logger.error(
            "interrupted: the finished chunks are kept and %s marks the run incomplete; run the "
            "same command again to resume (--restart starts over)",
            Path(output) / "manifest.json",
        )
        raise typer.Exit(code=130) from err
    except (FeatureInputError, ValueError, FileNotFoundError, ConnectionError, ImportError) as err:
        logger.error("%s", err)
        raise typer.Exit(code=1) from err

    console.print(cutflow_table(result.cutflow, f"cutflow ({output})"))
    report_summary(result.summary, f"run summary ({output})")
    logger.info("wrote %d feature table(s) to %s", len(result.files), output)

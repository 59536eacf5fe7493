"""``adhunt features``: a fileset -> dijet feature tables, cutflow and config echo.

``run_features`` is the library entry point (demo and tests call it); ``features`` is the typer
command around it. Input files are checked up front (exists, opens, has the tree and branches,
has events) so that a bad file is reported by name before any work starts; with
``skip_bad_files`` such files, and chunks that fail later, are skipped and listed instead.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from adhunt.processors.features import FeatureConfig

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


def load_fileset(fileset: str | Path | dict[str, Any]) -> dict[str, list[str]]:
    """``{dataset: [file, ...]}`` from a fileset JSON path or mapping.

    Accepts coffea's forms (a list of files, or ``{"files": [...] | {file: tree}, ...}`` per
    dataset). Relative paths in a JSON file are taken relative to the JSON file's directory.
    """
    base: Path | None = None
    if not isinstance(fileset, dict):
        path = Path(fileset)
        if not path.is_file():
            raise FileNotFoundError(f"fileset not found: {path}")
        try:
            fileset = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise ValueError(f"fileset {path} is not valid JSON: {err}") from err
        base = path.parent
    if not isinstance(fileset, dict) or not fileset:
        raise ValueError("a fileset must be a non-empty mapping {dataset: files}")
    out: dict[str, list[str]] = {}
    for dataset, entry in fileset.items():
        files = entry.get("files") if isinstance(entry, dict) else entry
        if isinstance(files, dict):
            files = list(files)
        if not isinstance(files, list) or not all(isinstance(f, str) for f in files):
            raise ValueError(f"fileset dataset {dataset!r}: expected a list of file names")
        resolved = []
        for name in files:
            p = Path(name)
            if (
                not p.is_absolute()
                and "://" not in name
                and base is not None
                and (base / p).exists()
            ):
                p = base / p
            resolved.append(str(p.resolve()) if "://" not in name else name)
        out[dataset] = resolved
    return out


def check_inputs(
    fileset: dict[str, list[str]], required: tuple[str, ...]
) -> tuple[dict[str, list[str]], list[dict[str, str]], dict[str, int]]:
    """Split a fileset into good files and bad ones (with the reason); also entries per good file."""
    import uproot

    good: dict[str, list[str]] = {}
    bad: list[dict[str, str]] = []
    entries: dict[str, int] = {}
    for dataset, files in fileset.items():
        good[dataset] = []
        for name in files:
            reason = None
            if "://" not in name and not Path(name).is_file():
                reason = "file not found"
            else:
                try:
                    with uproot.open(name) as handle:
                        if TREE_NAME not in handle:
                            reason = f"no tree {TREE_NAME!r}"
                        else:
                            tree = handle[TREE_NAME]
                            keys = set(tree.keys())
                            missing = [b for b in required if b not in keys]
                            if missing:
                                reason = f"missing branch(es) {', '.join(missing)}"
                            elif tree.num_entries == 0:
                                reason = "empty file (0 events)"
                            else:
                                entries[name] = int(tree.num_entries)
                except Exception as err:  # uproot raises many types for corrupt files
                    reason = f"cannot read ROOT file ({type(err).__name__}: {err})"
            if reason is None:
                good[dataset].append(name)
            else:
                bad.append({"dataset": dataset, "file": name, "reason": reason})
    return good, bad, entries


def run_features(
    fileset: str | Path | dict[str, Any],
    output_dir: str | Path,
    config: FeatureConfig | None = None,
    executor: str = "iterative",
    workers: int = 1,
    chunksize: int = 100_000,
    scheduler: str | None = None,
    skip_bad_files: bool = False,
) -> FeatureRunResult:
    """Compute feature tables for every dataset of ``fileset`` into ``output_dir``.

    Writes ``<output_dir>/<dataset>/*.parquet`` (read them with ``adhunt.tables.read_features``),
    ``cutflow.json`` and ``features_config.json``. Raises ``FeatureInputError`` naming the file
    on bad input unless ``skip_bad_files``.
    """
    from adhunt.config import config_to_dict
    from adhunt.jobs.executors import ExecutorConfig, coffea_runner
    from adhunt.processors.features import (
        DijetFeatureProcessor,
        FeatureConfig,
        FeatureInputError,
        QuietPFNanoAODSchema,
    )
    from adhunt.tables import clear_datasets

    config = config or FeatureConfig()
    exec_config = ExecutorConfig(executor, workers, chunksize, scheduler, skip_bad_files)
    output_dir = Path(output_dir)
    files = load_fileset(fileset)

    good, bad, entries = check_inputs(files, config.required_branches())
    if bad and not skip_bad_files:
        lines = "; ".join(f"{b['file']}: {b['reason']}" for b in bad)
        raise FeatureInputError(f"bad input file(s) (use --skip-bad-files to skip them): {lines}")
    for b in bad:
        logger.warning("skipping %s (dataset %s): %s", b["file"], b["dataset"], b["reason"])
    good = {d: f for d, f in good.items() if f}

    output_dir.mkdir(parents=True, exist_ok=True)
    removed = clear_datasets(output_dir, files)
    if removed:
        logger.info("removed %d feature table(s) of a previous run in %s", removed, output_dir)

    out: dict[str, Any] = {"cutflow": {}, "files": [], "chunks": [], "warnings": [], "errors": []}
    if good:
        processor_instance = DijetFeatureProcessor(
            config, output_dir, skip_bad_chunks=skip_bad_files
        )
        with coffea_runner(exec_config, QuietPFNanoAODSchema, (FeatureInputError,)) as runner:
            try:
                result = runner(good, processor_instance, treename="Events")
            except FeatureInputError:
                raise
            except Exception as err:
                raise FeatureInputError(_describe(err)) from err
        if result:
            out.update(result)

    skipped, cutflow = summarize_run(out, bad, good, entries, files)
    (output_dir / "cutflow.json").write_text(
        json.dumps({"cutflow": cutflow, "skipped": skipped, "warnings": out["warnings"]}, indent=2)
        + "\n"
    )
    echo = {
        "features": config_to_dict(config),
        "executor": config_to_dict(exec_config),
        "fileset": files,
    }
    (output_dir / "features_config.json").write_text(json.dumps(echo, indent=2) + "\n")
    return FeatureRunResult(
        output_dir=output_dir,
        files=sorted(Path(f) for f in out["files"]),
        cutflow=cutflow,
        skipped=skipped,
        warnings=list(out["warnings"]),
    )


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
    from adhunt.processors.features import FeatureInputError

    chain, seen = [], set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        chain.append(err)
        err = err.__cause__ or err.__context__
    for e in chain:
        if isinstance(e, FeatureInputError):
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
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Output directory for the tables.")
    ],
    executor: Annotated[str, typer.Option(help="iterative | futures | dask")] = "iterative",
    scheduler: Annotated[
        str | None, typer.Option(help="dask scheduler address (default: start a LocalCluster).")
    ] = None,
    workers: Annotated[
        int, typer.Option(help="Worker processes (futures, dask LocalCluster).")
    ] = 1,
    chunksize: Annotated[int, typer.Option(help="Events per chunk.")] = 100_000,
    jets: Annotated[
        str | None, typer.Option(help="pfcands (recluster PFCands) | fatjet (NanoAOD FatJet).")
    ] = None,
    radius: Annotated[float | None, typer.Option(help="Anti-kT radius and tau_N R0.")] = None,
    skip_bad_files: Annotated[
        bool, typer.Option("--skip-bad-files", help="Skip bad inputs and report them.")
    ] = False,
    config: Annotated[
        Path | None, typer.Option("--config", help="FeatureConfig YAML/TOML.")
    ] = None,
) -> None:
    """Extract dijet features from a fileset through the Coffea feature processor."""
    import dataclasses

    from adhunt.config import load_config
    from adhunt.jobs.reporting import console
    from adhunt.processors.features import FeatureConfig, FeatureInputError

    feature_config = load_config(FeatureConfig, config) if config else FeatureConfig()
    overrides = {k: v for k, v in {"jets": jets, "radius": radius}.items() if v is not None}
    try:
        feature_config = dataclasses.replace(feature_config, **overrides)
        result = run_features(
            fileset,
            output,
            feature_config,
            executor=executor,
            workers=workers,
            chunksize=chunksize,
            scheduler=scheduler,
            skip_bad_files=skip_bad_files,
        )
    except (FeatureInputError, ValueError, FileNotFoundError, ConnectionError) as err:
        logger.error("%s", err)
        raise typer.Exit(code=1) from err

    console.print(cutflow_table(result.cutflow, f"cutflow ({output})"))
    for item in result.skipped:
        logger.warning("skipped %s: %s", item["file"], item["reason"])
    logger.info("wrote %d feature table(s) to %s", len(result.files), output)

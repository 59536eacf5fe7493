"""Typer options shared by the commands, defined once so names, types and help cannot drift apart.

Use them as parameter annotations, e.g. ``features: FeaturesOption``,
``output: OutputDirOption``, ``seed: SeedOption = 0``. Defaults stay with each command (Python
default values), help texts and flags live here. ``split_list`` parses the comma-separated list
options (``--datasets a,b``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

__all__ = [
    "AllowDuplicatesOption",
    "AllowPartialOption",
    "ChunksizeOption",
    "ClusterConfigOption",
    "ClusterOption",
    "ConfigOption",
    "CoresOption",
    "DatasetsOption",
    "DedupeFilesOption",
    "DryRunOption",
    "EfficienciesOption",
    "ExecutorOption",
    "FeaturesOption",
    "FitRangeOption",
    "MaxJobsOption",
    "MemoryOption",
    "NoPlotsOption",
    "OptionalFeaturesOption",
    "OutputDirOption",
    "OutputFileOption",
    "OverwriteOption",
    "QueueOption",
    "RangeOption",
    "RestartOption",
    "RetryFailedOption",
    "SchedulerOption",
    "SeedOption",
    "SkipBadFilesOption",
    "StepOption",
    "ToysOption",
    "WalltimeOption",
    "WidthOption",
    "WorkersOption",
    "checked_output",
    "split_list",
]

FEATURE_TABLE_HELP = (
    "Feature table: a parquet file, a directory of parquet files (any names, searched "
    "recursively) or an adhunt features directory. Needs mjj and the features used; dataset, "
    "run, event, truth_label are optional."
)

FeaturesOption = Annotated[Path, typer.Option("--features", help=FEATURE_TABLE_HELP)]
#: ``train``: required for every method but ``combine`` (there: the rank reference, optional).
OptionalFeaturesOption = Annotated[
    Path | None,
    typer.Option("--features", help=f"{FEATURE_TABLE_HELP} (train combine: rank reference)."),
]
OutputDirOption = Annotated[Path, typer.Option("--output", "-o", help="Output directory.")]
OutputFileOption = Annotated[Path, typer.Option("--output", "-o", help="Output file to write.")]
OverwriteOption = Annotated[
    bool,
    typer.Option(
        "--overwrite", help="Write into a non-empty output directory (replacing what it writes)."
    ),
]
SeedOption = Annotated[int, typer.Option("--seed", help="Seed of every random step.")]
DatasetsOption = Annotated[
    str | None,
    typer.Option("--datasets", help="Only these datasets (comma-separated) of the table."),
]
ExecutorOption = Annotated[str, typer.Option("--executor", help="iterative | futures | dask")]
WorkersOption = Annotated[
    int | None,
    typer.Option(
        "--workers", help="Worker processes (futures: 1, dask local cluster: one per core)."
    ),
]
SchedulerOption = Annotated[
    str | None,
    typer.Option("--scheduler", help="dask scheduler address (the same as --cluster ADDRESS)."),
]
# --- where dask workers run (adhunt.clusters.ClusterConfig; docs/cluster.md) ------------------
ClusterOption = Annotated[
    str | None,
    typer.Option(
        "--cluster",
        help="dask cluster: local | tcp://HOST:PORT | slurm | htcondor | pbs | gateway "
        "(implies --executor dask).",
    ),
]
ClusterConfigOption = Annotated[
    Path | None,
    typer.Option("--cluster-config", help="YAML/TOML with a cluster section (docs/cluster.md)."),
]
CoresOption = Annotated[int | None, typer.Option("--cores", help="Cores per batch job.")]
MemoryOption = Annotated[str | None, typer.Option("--memory", help="Memory per batch job (16GB).")]
WalltimeOption = Annotated[
    str | None, typer.Option("--walltime", help="Walltime per batch job (HH:MM:SS).")
]
QueueOption = Annotated[str | None, typer.Option("--queue", help="Slurm partition / PBS queue.")]
MaxJobsOption = Annotated[
    int | None, typer.Option("--max-jobs", help="Adaptive maximum of batch jobs / gateway workers.")
]
DryRunOption = Annotated[
    bool,
    typer.Option("--dry-run", help="Print the batch job script (slurm/htcondor/pbs) and exit."),
]
ChunksizeOption = Annotated[int, typer.Option("--chunksize", help="Events per chunk.")]
SkipBadFilesOption = Annotated[
    bool, typer.Option("--skip-bad-files", help="Skip bad inputs and report them.")
]
DedupeFilesOption = Annotated[
    bool,
    typer.Option(
        "--dedupe-files",
        help="Process a file listed twice in the fileset once (the later entries are dropped "
        "with a warning) instead of refusing the fileset.",
    ),
]
AllowDuplicatesOption = Annotated[
    bool,
    typer.Option(
        "--allow-duplicates",
        help="Accept (run, event) keys that repeat in a feature table (warn instead of refusing).",
    ),
]
ConfigOption = Annotated[
    Path | None, typer.Option("--config", help="YAML/TOML configuration file.")
]
AllowPartialOption = Annotated[
    bool,
    typer.Option(
        "--allow-partial",
        help="Read an incomplete features directory (interrupted or failed run) with a warning "
        "saying how much is missing, instead of refusing it.",
    ),
]
RestartOption = Annotated[
    bool,
    typer.Option(
        "--restart",
        help="Start over: process every chunk again instead of resuming, and replace datasets "
        "of the output made with another configuration.",
    ),
]


RetryFailedOption = Annotated[
    bool,
    typer.Option(
        "--retry-failed",
        help="Process only the chunks that failed in the run recorded in OUTPUT/run_summary.json.",
    ),
]


def checked_output(
    path: Path,
    *,
    command: str | None = None,
    overwrite: bool = False,
    file: bool = False,
    code: int = 1,
) -> Path:
    """``path`` checked as the command's output directory (``file``: output file) before any
    work (:mod:`adhunt.outputs`); a bad one ends the command with a one-line error and exit
    ``code`` (1; sculpting, whose 1 means "the cut sculpts", passes 2)."""
    import logging

    from adhunt.outputs import OutputError, check_output_dir, check_output_file

    try:
        if file:
            return check_output_file(path)
        return check_output_dir(path, command=command, overwrite=overwrite)
    except OutputError as err:
        logging.getLogger("adhunt.jobs").error("%s", err)
        raise typer.Exit(code=code) from None


def split_list(text: str | None) -> list[str] | None:
    """``"a,b, c"`` -> ``["a", "b", "c"]``; None/empty -> None."""
    if text is None:
        return None
    items = [t.strip() for t in text.split(",") if t.strip()]
    return items or None


# --- bump-hunt windows, cuts and toys (scan, sculpting) --------------------------------------
WidthOption = Annotated[float | None, typer.Option("--width", help="Window width, GeV (400).")]
StepOption = Annotated[float | None, typer.Option("--step", help="Window step, GeV (100).")]
RangeOption = Annotated[
    str | None, typer.Option("--range", help="Range LOW:HIGH of the sliding windows, GeV.")
]
FitRangeOption = Annotated[
    str | None,
    typer.Option(
        "--fit-range", help="Background fit range LOW:HIGH, GeV (default: above the turn-on)."
    ),
]
EfficienciesOption = Annotated[
    str | None,
    typer.Option("--efficiencies", help="SR efficiencies of the cuts (0.1,0.01,0.001)."),
]
ToysOption = Annotated[int | None, typer.Option("--toys", help="Pseudo-experiments per cut (100).")]
NoPlotsOption = Annotated[bool, typer.Option("--no-plots", help="Write the JSON report only.")]

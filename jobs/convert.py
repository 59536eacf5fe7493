"""``adhunt convert-lhco``: LHC Olympics R&D HDF5 files into adhunt's inputs.

Two inputs: the hadron-level table (``INPUT_FILE``, N x 2101) becomes NanoAOD-like ROOT files plus
a fileset for ``adhunt features``; the pre-computed features table (``--features FILE.h5``:
pxj1 ... tau3j2, label) becomes a feature table (parquet) that ``train``/``scan``/``score`` read
directly (:func:`adhunt.lhco.convert_lhco_features`).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

from adhunt.jobs.options import OutputDirOption, OverwriteOption, checked_output

log = logging.getLogger(__name__)


def convert_lhco(
    output: OutputDirOption,
    input_file: Annotated[
        Path | None,
        typer.Argument(help="LHCO R&D hadron-level HDF5 file (N x 2101, or 2100 unlabeled)."),
    ] = None,
    features: Annotated[
        Path | None,
        typer.Option(
            "--features",
            help="LHCO pre-computed features HDF5 (pxj1 ... tau3j2, label) -> a feature table.",
        ),
    ] = None,
    dataset: Annotated[
        str | None, typer.Option("--dataset", help="Dataset name (default: the input file's stem).")
    ] = None,
    key: Annotated[
        str | None,
        typer.Option("--key", help="HDF5 table key (default: the only one in the file)."),
    ] = None,
    chunk_size: Annotated[
        int, typer.Option("--chunk-size", help="Rows read at a time (bounds memory).")
    ] = 5000,
    events_per_file: Annotated[
        int, typer.Option("--events-per-file", help="Events per ROOT file.")
    ] = 50_000,
    run: Annotated[
        int, typer.Option("--run", help="Value of the run column (1, 2 are generated QCD, W').")
    ] = 3,
    overwrite: OverwriteOption = False,
) -> None:
    """Convert an LHC Olympics HDF5 file: hadrons -> ROOT + fileset, or --features -> parquet."""
    checked_output(output, command="convert-lhco", overwrite=overwrite)
    from adhunt.jobs.reporting import progress_bar
    from adhunt.lhco import FILESET_NAME, convert_lhco, convert_lhco_features, inspect_lhco

    if (input_file is None) == (features is None):
        raise typer.BadParameter("give either INPUT_FILE (hadron-level) or --features FILE.h5")
    if features is not None:
        try:
            target = convert_lhco_features(features, output, dataset=dataset, key=key, run=run)
        except (ValueError, FileNotFoundError) as err:
            log.error("%s", err)
            raise typer.Exit(code=2) from err
        log.info("feature table %s (read it with --features %s)", target, output)
        return
    if chunk_size < 1 or events_per_file < 1:
        raise typer.BadParameter("--chunk-size and --events-per-file must be >= 1")
    try:
        _, n_rows, _ = inspect_lhco(input_file, key)
    except (ValueError, FileNotFoundError) as err:
        raise typer.BadParameter(str(err), param_hint="INPUT_FILE") from err
    with progress_bar() as progress:
        task = progress.add_task("LHCO events", total=n_rows)
        paths = convert_lhco(
            input_file,
            output,
            dataset=dataset,
            key=key,
            chunk_size=chunk_size,
            events_per_file=events_per_file,
            run=run,
            progress_callback=lambda n: progress.advance(task, n),
        )
    log.info("%d events in %d file(s); fileset %s", n_rows, len(paths), output / FILESET_NAME)

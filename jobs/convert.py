"""``adhunt convert-lhco``: LHC Olympics R&D HDF5 to the NanoAOD-like ROOT schema + fileset."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def convert_lhco(
    input_file: Annotated[
        Path, typer.Argument(help="LHCO R&D HDF5 file (N x 2101, or 2100 unlabeled).")
    ],
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Output directory (ROOT files + fileset.json).")
    ],
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
        int, typer.Option("--run", help="Value of the run branch (1, 2 are generated QCD, W').")
    ] = 3,
) -> None:
    """Convert an LHC Olympics R&D HDF5 file into ROOT files and a coffea fileset JSON."""
    import logging

    from adhunt.jobs.reporting import progress_bar
    from adhunt.lhco import FILESET_NAME, convert_lhco, inspect_lhco

    log = logging.getLogger("adhunt.convert")
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

"""``adhunt fileset``: a coffea fileset JSON from folders, globs, files or xrootd URLs.

The library function is :func:`adhunt.filesets.build_fileset`; this command only parses options.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

logger = logging.getLogger(__name__)


def fileset(
    sources: Annotated[
        list[str],
        typer.Argument(
            help="Folders (a dataset per subfolder), globs, ROOT files or root:// URLs."
        ),
    ],
    output: Annotated[Path, typer.Option("--output", "-o", help="Fileset JSON to write.")],
    dataset: Annotated[
        str | None, typer.Option("--dataset", help="One dataset name for every file.")
    ] = None,
    tree: Annotated[str, typer.Option("--tree", help="Tree (or RNTuple) name.")] = "Events",
    split: Annotated[
        int | None,
        typer.Option("--split", help="Keep the first N files per dataset (a quick test)."),
    ] = None,
) -> None:
    """Build a coffea fileset ({dataset: {"files": {file: tree}}}) for adhunt features/infer."""
    from adhunt.config import write_json
    from adhunt.filesets import FilesetError, build_fileset
    from adhunt.outputs import check_output_file

    try:
        check_output_file(output)
        built = build_fileset(list(sources), dataset=dataset, tree=tree, split=split)
    except (FilesetError, ValueError, OSError) as err:
        logger.error("%s", err)
        raise typer.Exit(code=1) from err
    output.parent.mkdir(parents=True, exist_ok=True)
    write_json(output, built)
    counts = ", ".join(f"{name}: {len(entry['files'])}" for name, entry in built.items())
    logger.info("wrote %s (%s file(s))", output, counts)

"""The ``adhunt`` command line: one subcommand per stage of the search.

    adhunt generate      Pythia 8 events (QCD dijets or W' -> X Y) to NanoAOD-like ROOT files + fileset
    adhunt convert-lhco  LHC Olympics R&D HDF5 to the same ROOT schema
    adhunt fileset       a coffea fileset JSON from folders, globs, files or xrootd URLs
    adhunt features      dijet features from a fileset through a Coffea processor
    adhunt train         a k-fold anomaly detector (cwola, cathode, anode, ranode, iad, supervised;
                         outlier detectors ae, vae, force, tnt; combine: rank-averaged saved models;
                         --decorrelate qr)
    adhunt score         anomaly scores of every event of a feature directory
    adhunt evaluate      ROC / SIC of trained models on a labelled test set
    adhunt compare       one table (max SIC, AUC, eps_S at 1%/0.1% B) + SIC plot of several models
    adhunt infer         distributed scoring of a fileset into mjj histograms per score cut
    adhunt scan          sliding-window bump hunt, training per window, local and global Z
    adhunt sculpting     does a score cut sculpt the background mjj spectrum?
    adhunt demo          the whole chain on a small sample it generates itself
    adhunt rerun         repeat the run recorded in an output (adhunt_run.json)

Each subcommand lives in its own module of ``adhunt.jobs``; this file only wires them together.
"""

from __future__ import annotations

import importlib
import logging
import tempfile
from pathlib import Path
from typing import Annotated

import typer

from adhunt.jobs.reporting import setup_logging
from adhunt.jobs.rerun import recorded, rerun, set_analysis

app = typer.Typer(
    name="adhunt",
    help="Model-agnostic resonance searches: generate, extract features, train, infer, bump hunt.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)


@app.callback()
def _root(
    ctx: typer.Context,
    verbose: int = typer.Option(
        0, "--verbose", "-v", count=True, help="More log output (-vv for dependencies)."
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Only warnings and errors."),
    analysis: Annotated[
        Path | None,
        typer.Option(
            "--analysis",
            help="Analysis YAML describing the whole search (examples/analysis.yaml): the "
            "command's options come from it, flags on the command line win.",
        ),
    ] = None,
) -> None:
    setup_logging(-1 if quiet else verbose)
    set_analysis(None, None)
    if analysis is None:
        return
    from adhunt.analysis import AnalysisError
    from adhunt.jobs.analysis import analysis_defaults

    workdir = tempfile.TemporaryDirectory(prefix="adhunt-analysis-")
    ctx.call_on_close(workdir.cleanup)
    try:
        default_map, resolved = analysis_defaults(analysis, ctx.command, Path(workdir.name))
    except AnalysisError as err:
        logging.getLogger("adhunt.jobs").error("%s", err)
        raise typer.Exit(code=1) from None
    ctx.default_map = default_map
    set_analysis(analysis, resolved, workdir.name)


# --- subcommands (each module exposes a typer-decorated function) -------------------------------
# ADHUNT-COMMANDS (keep one line per command; helpers add theirs here)
# Each command is wrapped by ``recorded``: after it succeeds it writes its run record
# (adhunt_run.json in, or <file>.adhunt_run.json next to, its --output), read by ``rerun``.
_COMMANDS = {
    "generate": ("adhunt.jobs.generate", "generate"),
    "convert-lhco": ("adhunt.jobs.convert", "convert_lhco"),
    "fileset": ("adhunt.jobs.fileset", "fileset"),
    "features": ("adhunt.jobs.features", "features"),
    "train": ("adhunt.jobs.train", "train"),
    "score": ("adhunt.jobs.score", "score"),
    "evaluate": ("adhunt.jobs.evaluate", "evaluate"),
    "compare": ("adhunt.jobs.compare", "compare"),
    "infer": ("adhunt.jobs.infer", "infer"),
    "scan": ("adhunt.jobs.scan", "scan"),
    "sculpting": ("adhunt.jobs.sculpting", "sculpting"),
    "demo": ("adhunt.jobs.demo", "demo"),
}
for _name, (_module, _function) in _COMMANDS.items():
    app.command(_name)(recorded(_name, getattr(importlib.import_module(_module), _function)))
app.command("rerun")(rerun)


def main() -> None:
    app()


if __name__ == "__main__":  # pragma: no cover
    main()

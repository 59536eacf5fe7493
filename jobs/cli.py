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

Each subcommand lives in its own module of ``adhunt.jobs``; this file only wires them together.
"""

from __future__ import annotations

import typer

from adhunt.jobs.reporting import setup_logging

app = typer.Typer(
    name="adhunt",
    help="Model-agnostic resonance searches: generate, extract features, train, infer, bump hunt.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)


@app.callback()
def _root(
    verbose: int = typer.Option(
        0, "--verbose", "-v", count=True, help="More log output (-vv for dependencies)."
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Only warnings and errors."),
) -> None:
    setup_logging(-1 if quiet else verbose)


# --- subcommands (each module exposes a typer-decorated function) -------------------------------
# ADHUNT-COMMANDS (keep one line per command; helpers add theirs here)
app.command("generate")(__import__("adhunt.jobs.generate", fromlist=["generate"]).generate)
app.command("convert-lhco")(
    __import__("adhunt.jobs.convert", fromlist=["convert_lhco"]).convert_lhco
)
app.command("fileset")(__import__("adhunt.jobs.fileset", fromlist=["fileset"]).fileset)
app.command("features")(__import__("adhunt.jobs.features", fromlist=["features"]).features)
app.command("train")(__import__("adhunt.jobs.train", fromlist=["train"]).train)
app.command("score")(__import__("adhunt.jobs.score", fromlist=["score"]).score)
app.command("evaluate")(__import__("adhunt.jobs.evaluate", fromlist=["evaluate"]).evaluate)
app.command("compare")(__import__("adhunt.jobs.compare", fromlist=["compare"]).compare)
app.command("infer")(__import__("adhunt.jobs.infer", fromlist=["infer"]).infer)
app.command("scan")(__import__("adhunt.jobs.scan", fromlist=["scan"]).scan)
app.command("sculpting")(__import__("adhunt.jobs.sculpting", fromlist=["sculpting"]).sculpting)
app.command("demo")(__import__("adhunt.jobs.demo", fromlist=["demo"]).demo)


def main() -> None:
    app()


if __name__ == "__main__":  # pragma: no cover
    main()

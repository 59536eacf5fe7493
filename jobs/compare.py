"""``adhunt compare MODEL_DIR... --features LABELLED --output DIR``: one table and one plot of methods.

Scores one labelled sample with every model through the same path as ``adhunt evaluate``
(:func:`adhunt.jobs.evaluate.evaluate_models`: each model in its own signal region, ``auto`` mode,
i.e. k-fold for events a model trained on and the fold ensemble for the others) and writes:

* ``comparison.csv`` and ``comparison.json``: one row per model, from
  :func:`adhunt.performance.comparison_row` (max SIC, AUC, signal efficiency at 1% and 0.1%
  background, event counts); the JSON also holds each model's description, provenance and
  score modes (the ``evaluate`` summary);
* ``sic.png``: SIC versus signal efficiency of all models (:func:`adhunt.performance.plot_sic`);
* a rich table on the terminal.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Annotated, Any

import typer

from adhunt.jobs.options import (
    AllowDuplicatesOption,
    DatasetsOption,
    OutputDirOption,
    OverwriteOption,
    checked_output,
    split_list,
)

logger = logging.getLogger(__name__)

__all__ = ["COMPARISON_CSV", "COMPARISON_JSON", "SIC_PLOT", "compare", "run_compare"]

COMPARISON_CSV = "comparison.csv"
COMPARISON_JSON = "comparison.json"
SIC_PLOT = "sic.png"


def run_compare(
    model_dirs: list[Path],
    features: Path,
    output: Path,
    mode: str = "auto",
    min_background: int = 20,
    datasets: list[str] | None = None,
    all_mjj: bool = False,
    progress: Any | None = None,
    allow_duplicates: bool = False,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Compare saved models on a labelled table; returns the ``comparison.json`` content."""
    import pandas as pd

    from adhunt.config import write_json
    from adhunt.jobs.evaluate import evaluate_models
    from adhunt.outputs import check_output_dir
    from adhunt.performance import comparison_row, plot_sic

    output = check_output_dir(output, command="compare", overwrite=overwrite)
    results, summary = evaluate_models(
        model_dirs, features, mode, min_background, datasets, all_mjj, progress,
        allow_duplicates=allow_duplicates,
    )  # fmt: skip
    rows = []
    for name, res in results.items():
        rows.append(
            {
                "model": name,
                **comparison_row(res),
                "model_dir": summary["models"][name]["model_dir"],
            }
        )
    output.mkdir(parents=True, exist_ok=True)
    table = pd.DataFrame(rows)
    _replace(output / COMPARISON_CSV, table.to_csv(index=False))
    report = {
        "features": str(features),
        "mode": mode,
        "min_background": int(min_background),
        "table": rows,
        "models": summary["models"],
    }
    write_json(output / COMPARISON_JSON, report)
    plot_sic(results, output / SIC_PLOT, title=f"compare: {Path(features).name}")
    return report


def _replace(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file (an old file is replaced, not lost)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def comparison_table(rows: list[dict[str, Any]], title: str = "comparison") -> Any:
    """The rich table of :func:`run_compare`'s rows."""
    from rich.table import Table

    def fmt(value: Any, spec: str) -> str:
        return "n/a" if value is None else format(value, spec)

    table = Table(title=title)
    for col in ("model", "max SIC", "AUC", "eps_S @ 1% B", "eps_S @ 0.1% B", "n sig", "n bkg"):
        table.add_column(col, justify="left" if col == "model" else "right")
    for r in rows:
        table.add_row(
            r["model"], fmt(r["max_sic"], ".2f"), fmt(r["auc"], ".3f"),
            fmt(r["eps_s_at_eps_b_0.01"], ".3f"), fmt(r["eps_s_at_eps_b_0.001"], ".3f"),
            str(r["n_signal"]), str(r["n_background"]),
        )  # fmt: skip
    return table


def compare(
    models: Annotated[
        list[Path], typer.Argument(help="Model directories (adhunt train, train combine).")
    ],
    features: Annotated[
        Path, typer.Option("--features", help="Labelled feature table (truth_label 0/1).")
    ],
    output: OutputDirOption,
    mode: Annotated[
        str,
        typer.Option(
            "--mode",
            help="auto (k-fold for events a model trained on, else ensemble) | ensemble | kfold.",
        ),
    ] = "auto",
    min_background: Annotated[
        int, typer.Option("--min-background", help="Background events a SIC point needs.")
    ] = 20,
    datasets: DatasetsOption = None,
    all_mjj: Annotated[
        bool, typer.Option("--all-mjj", help="Use all events, not only each model's SR.")
    ] = False,
    allow_duplicates: AllowDuplicatesOption = False,
    overwrite: OverwriteOption = False,
) -> None:
    """Max SIC, AUC and signal efficiency at 1%/0.1% background of several models: table + plot."""
    from adhunt.jobs.reporting import console, progress_bar
    from adhunt.models.artifact import ArtifactError

    checked_output(output, command="compare", overwrite=overwrite)

    with progress_bar() as bar:
        task = bar.add_task("compare", total=len(models))
        try:
            report = run_compare(
                models, features, output, mode=mode, min_background=min_background,
                datasets=split_list(datasets), all_mjj=all_mjj, allow_duplicates=allow_duplicates,
                overwrite=overwrite,
                progress=lambda done, total: bar.update(task, completed=done),
            )  # fmt: skip
        except (ArtifactError, ValueError, KeyError, ImportError, FileNotFoundError) as exc:
            logger.error("%s", exc)
            raise typer.Exit(code=2) from exc
    console.print(comparison_table(report["table"], f"compare on {features}"))
    logger.info(
        "wrote %s",
        ", ".join(str(Path(output) / n) for n in (COMPARISON_CSV, COMPARISON_JSON, SIC_PLOT)),
    )

"""``adhunt evaluate MODEL_DIR... --test DIR``: ROC / SIC of several models on a labelled test sample.

Each model is evaluated in its own signal region on the test events with truth 0 or 1 (unknown
-1 events are left out and counted). The default ``auto`` mode scores test events a model trained
on k-fold and the others with the ensemble (:func:`adhunt.provenance.score_auto`); the summary
records how many events got each mode and where the model's training data came from. Writes
``summary.json`` (AUC, max SIC with its minimum background count, background rejection at fixed
signal efficiency, thinned curves, and each model's description) and ``sic.png`` (SIC versus
signal efficiency for all models).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Annotated, Any

import typer

from adhunt.jobs.options import (
    AllowDuplicatesOption,
    AllowPartialOption,
    DatasetsOption,
    OutputDirOption,
    OverwriteOption,
    checked_output,
    split_list,
)

logger = logging.getLogger(__name__)


def run_evaluate(
    model_dirs: list[Path],
    test_dir: Path,
    output: Path,
    mode: str = "auto",
    min_background: int = 20,
    datasets: list[str] | None = None,
    all_mjj: bool = False,
    progress: Any | None = None,
    allow_duplicates: bool = False,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Evaluate saved models; returns the summary written to ``output/summary.json``."""
    from adhunt.outputs import check_output_dir
    from adhunt.performance import plot_sic

    output = check_output_dir(output, command="evaluate", overwrite=overwrite)
    results, summary = evaluate_models(
        model_dirs, test_dir, mode, min_background, datasets, all_mjj, progress,
        allow_duplicates=allow_duplicates,
    )  # fmt: skip
    output.mkdir(parents=True, exist_ok=True)
    plot_sic(results, output / "sic.png", title=f"test: {Path(test_dir).name}")
    (output / "summary.json").write_text(json.dumps(summary, indent=1, allow_nan=False) + "\n")
    return summary


def evaluate_models(
    model_dirs: list[Path],
    test_dir: Path,
    mode: str = "auto",
    min_background: int = 20,
    datasets: list[str] | None = None,
    all_mjj: bool = False,
    progress: Any | None = None,
    allow_duplicates: bool = False,
) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """ROC/SIC of saved models on a labelled table: ``(full roc_sic results, JSON summary)``.

    The one scoring path of ``evaluate`` and ``compare``; models are named by method (and by
    directory when a method appears twice).
    """
    import numpy as np

    from adhunt.models.base import SCORE_MODES, ResonantModel
    from adhunt.performance import curve_for_json, roc_sic
    from adhunt.provenance import (
        check_feature_definition,
        model_feature_definition,
        read_provenance,
        score_auto,
        table_feature_definition,
    )
    from adhunt.tables import read_table

    if not model_dirs:
        raise ValueError("give at least one model directory")
    if mode not in SCORE_MODES:
        raise ValueError(f"--mode must be one of {', '.join(SCORE_MODES)}, got {mode!r}")
    models = [ResonantModel.load(d) for d in model_dirs]
    test_definition = table_feature_definition(test_dir)
    for model_dir, model in zip(model_dirs, models, strict=True):
        check_feature_definition(
            model_feature_definition(model), test_definition,
            model=str(model_dir), table=f"--test {test_dir}",
        )  # fmt: skip
    columns = sorted({c for m in models for c in m.input_columns})
    table = read_table(
        test_dir, datasets, columns, what="--test", allow_duplicates=allow_duplicates
    )
    results, summary = {}, {"test_dir": str(test_dir), "mode": mode, "models": {}}
    for i, (model_dir, model) in enumerate(zip(model_dirs, models, strict=True)):
        name = model.method
        if name in results:
            name = f"{model.method} ({Path(model_dir).name})"
        sel = table["truth_label"].isin((0, 1)).to_numpy().copy()
        if not all_mjj:
            sel &= model.region.in_sr(table["mjj"].to_numpy(dtype=np.float64))
        test = table[sel]
        if mode == "auto":
            scores, modes = score_auto(model, test)
            modes_used = {m: int((modes == m).sum()) for m in ("kfold", "ensemble")}
        else:
            scores = model.score(test, mode=mode)
            modes_used = {mode: len(test)}
        res = roc_sic(test["truth_label"].to_numpy(), scores, min_background=min_background)
        results[name] = res
        entry = curve_for_json(res)
        entry["model_dir"] = str(model_dir)
        entry["n_unlabelled_skipped"] = int((~table["truth_label"].isin((0, 1))).sum())
        entry["selection"] = "all mjj" if all_mjj else f"SR {model.region}"
        entry["model"] = {k: v for k, v in model.describe().items() if k != "training"}
        entry["score_modes"] = modes_used
        record = read_provenance(model)
        entry["provenance"] = None if record is None else record.to_dict()
        summary["models"][name] = entry
        logger.info(
            "%s: AUC %.3f, max SIC %s (%d signal, %d background)", name, res["auc"],
            "n/a" if res["max_sic"] is None else f"{res['max_sic']:.2f}", res["n_signal"], res["n_background"],
        )  # fmt: skip
        if progress is not None:
            progress(i + 1, len(model_dirs))
    return results, summary


def evaluate(
    models: Annotated[
        list[Path], typer.Argument(help="Model directories written by adhunt train.")
    ],
    test: Annotated[Path, typer.Option("--test", help="Labelled feature table (truth_label 0/1).")],
    output: OutputDirOption,
    mode: Annotated[
        str,
        typer.Option(
            "--mode",
            help="auto (k-fold for events a model trained on, else ensemble), ensemble or kfold.",
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
    allow_partial: AllowPartialOption = False,
) -> None:
    """ROC/SIC of one or more models on a labelled test sample: JSON summary + SIC plot."""
    from adhunt.jobs.reporting import progress_bar
    from adhunt.models.artifact import ArtifactError
    from adhunt.tables import partial_reading

    checked_output(output, command="evaluate", overwrite=overwrite)

    with partial_reading(allow_partial), progress_bar() as bar:
        task = bar.add_task("evaluate", total=len(models))
        try:
            run_evaluate(
                models, test, output, mode=mode, min_background=min_background,
                datasets=split_list(datasets), all_mjj=all_mjj, allow_duplicates=allow_duplicates,
                overwrite=overwrite,
                progress=lambda done, total: bar.update(task, completed=done),
            )  # fmt: skip
        except (ArtifactError, ValueError, KeyError, ImportError) as exc:
            logger.error("%s", exc)
            raise typer.Exit(code=2) from exc

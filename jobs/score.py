"""``adhunt score MODEL_DIR``: anomaly scores of every event of a feature table.

Writes one parquet row per event (dataset, run, event, mjj, truth_label, score, score_mode) in the
order of the feature table. The default ``auto`` mode scores each event the model trained on
(recognised by its (run, event) key) with the model of its own fold, which never saw it, and every
other event with the mean of all folds (less noisy on an independent sample); ``score_mode`` says
which one each event got (:func:`adhunt.provenance.score_auto`). ``kfold`` and ``ensemble`` force
one mode for all events.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Annotated

import typer

from adhunt.jobs.options import (
    AllowDuplicatesOption,
    AllowPartialOption,
    DatasetsOption,
    FeaturesOption,
    OutputFileOption,
    checked_output,
    split_list,
)

logger = logging.getLogger(__name__)

SCORE_COLUMNS = ("dataset", "run", "event", "mjj", "truth_label", "score", "score_mode")
MODES = ("auto", "kfold", "ensemble")


def run_score(
    model_dir: Path,
    features_dir: Path,
    output: Path,
    mode: str = "auto",
    datasets: list[str] | None = None,
    inject: int | None = None,
    signal_dir: Path | None = None,
    signal_datasets: list[str] | None = None,
    seed: int | None = None,
    allow_duplicates: bool = False,
):
    """Score a feature table with a saved model and write ``output`` (parquet); returns the frame.

    With ``inject``/``signal_dir`` the same signal injection as ``adhunt train`` is rebuilt first
    (same seed, default the model's), so the very sample a model trained on can be scored
    k-fold for the bump hunt. Repeated (run, event) keys are an error unless
    ``allow_duplicates`` (:func:`adhunt.tables.check_unique_events`).
    """
    import numpy as np
    import pandas as pd

    from adhunt.injection import inject_columns, inject_signal
    from adhunt.models.base import ResonantModel
    from adhunt.outputs import check_output_file
    from adhunt.provenance import (
        check_feature_definition,
        model_feature_definition,
        score_auto,
        table_feature_definition,
    )
    from adhunt.tables import check_unique_events, read_table

    output = check_output_file(output)
    if mode not in MODES:
        raise ValueError(f"--mode must be one of {', '.join(MODES)}, got {mode!r}")
    if (inject is None) != (signal_dir is None):
        raise ValueError("--inject N and --signal DIR go together")
    model = ResonantModel.load(model_dir)
    for path, what in ((features_dir, "--features"), (signal_dir, "--signal")):
        if path is not None:
            check_feature_definition(
                model_feature_definition(model), table_feature_definition(path),
                model=str(model_dir), table=f"{what} {path}",
            )  # fmt: skip
    columns = [*model.input_columns, "mjj"]
    allow = {"allow_duplicates": allow_duplicates}
    table = read_table(features_dir, datasets, columns, what="--features", **allow)
    if inject is not None:
        signal = read_table(signal_dir, signal_datasets, columns, what="--signal", **allow)
        keep = inject_columns(table, signal, columns)
        table = inject_signal(
            table[keep], signal[keep], inject, model.seed if seed is None else seed
        )
        check_unique_events(table, "--features with the injected --signal", **allow)
    if mode == "auto":
        scores, modes = score_auto(model, table)
    else:
        scores = model.score(table, mode=mode)
        modes = np.full(len(table), mode, dtype=object)
    out = pd.DataFrame({c: table[c].to_numpy() for c in SCORE_COLUMNS if c in table.columns})
    out["score"] = scores
    out["score_mode"] = pd.Series(modes, dtype=object)
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(f".{output.name}.{os.getpid()}.tmp")
    try:
        out.to_parquet(tmp, index=False)
        os.replace(tmp, output)
    finally:  # an interrupted or failed write leaves no temporary file behind
        tmp.unlink(missing_ok=True)
    counts = out["score_mode"].value_counts().to_dict()
    logger.info(
        "scored %d events with %s (%s mode: %s) -> %s", len(out), model.method, mode,
        ", ".join(f"{n} {m}" for m, n in sorted(counts.items())), output,
    )  # fmt: skip
    return out


def score(
    model_dir: Annotated[Path, typer.Argument(help="Model directory written by adhunt train.")],
    features: FeaturesOption,
    output: OutputFileOption,
    mode: Annotated[
        str,
        typer.Option(
            "--mode",
            help="auto (k-fold for events the model trained on, ensemble for the rest), "
            "kfold (held-out fold model) or ensemble (mean of folds).",
        ),
    ] = "auto",
    datasets: DatasetsOption = None,
    inject: Annotated[
        int | None, typer.Option("--inject", help="Rebuild train's injection of N signal events.")
    ] = None,
    signal: Annotated[
        Path | None, typer.Option("--signal", help="Signal feature table for --inject.")
    ] = None,
    signal_datasets: Annotated[str | None, typer.Option("--signal-datasets")] = None,
    seed: Annotated[
        int | None, typer.Option("--seed", help="Injection seed (default: the model's seed).")
    ] = None,
    allow_duplicates: AllowDuplicatesOption = False,
    allow_partial: AllowPartialOption = False,
) -> None:
    """Write the anomaly score of every event (run, event, score, score_mode, ...) to parquet."""
    from adhunt.models.artifact import ArtifactError
    from adhunt.tables import partial_reading

    checked_output(output, file=True)
    try:
        with partial_reading(allow_partial):
            run_score(
                model_dir, features, output, mode=mode, datasets=split_list(datasets),
                inject=inject, signal_dir=signal, signal_datasets=split_list(signal_datasets),
                seed=seed, allow_duplicates=allow_duplicates,
            )  # fmt: skip
    except (ArtifactError, ValueError, KeyError, ImportError, OSError) as exc:
        logger.error("%s", exc)
        raise typer.Exit(code=2) from exc

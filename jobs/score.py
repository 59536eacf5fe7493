"""``adhunt score MODEL_DIR``: anomaly scores of every event of a feature directory.

Writes one parquet row per event (dataset, run, event, mjj, truth_label, score) in the order of
the feature table. The default ``kfold`` mode scores each event with the model of its own fold,
which never trained on it, so scoring the training data itself (for the bump hunt) is unbiased.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Annotated

import typer

logger = logging.getLogger(__name__)

SCORE_COLUMNS = ("dataset", "run", "event", "mjj", "truth_label", "score")


def run_score(
    model_dir: Path,
    features_dir: Path,
    output: Path,
    mode: str = "kfold",
    datasets: list[str] | None = None,
    inject: int | None = None,
    signal_dir: Path | None = None,
    signal_datasets: list[str] | None = None,
    seed: int | None = None,
):
    """Score a feature directory with a saved model and write ``output`` (parquet); returns the frame.

    With ``inject``/``signal_dir`` the same signal injection as ``adhunt train`` is rebuilt first
    (same seed, default the model's), so the very sample a model trained on can be scored
    k-fold for the bump hunt.
    """
    import pandas as pd

    from adhunt.injection import inject_signal
    from adhunt.jobs.train import read_table
    from adhunt.models.base import ResonantModel

    if (inject is None) != (signal_dir is None):
        raise ValueError("--inject N and --signal DIR go together")
    model = ResonantModel.load(model_dir)
    table = read_table(features_dir, datasets, "--features")
    if inject is not None:
        signal = read_table(signal_dir, signal_datasets, "--signal")
        table = inject_signal(table, signal, inject, model.seed if seed is None else seed)
    scores = model.score(table, mode=mode)
    out = pd.DataFrame({c: table[c].to_numpy() for c in SCORE_COLUMNS if c in table.columns})
    out["score"] = scores
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(f".{output.name}.{os.getpid()}.tmp")
    out.to_parquet(tmp, index=False)
    os.replace(tmp, output)
    logger.info("scored %d events with %s (%s mode) -> %s", len(out), model.method, mode, output)
    return out


def score(
    model_dir: Annotated[Path, typer.Argument(help="Model directory written by adhunt train.")],
    features: Annotated[Path, typer.Option("--features", help="Feature directory to score.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Parquet file to write.")],
    mode: Annotated[
        str, typer.Option("--mode", help="kfold (held-out fold model) or ensemble (mean of folds).")
    ] = "kfold",
    datasets: Annotated[str | None, typer.Option("--datasets", help="Only these datasets.")] = None,
    inject: Annotated[
        int | None, typer.Option("--inject", help="Rebuild train's injection of N signal events.")
    ] = None,
    signal: Annotated[
        Path | None, typer.Option("--signal", help="Signal feature directory for --inject.")
    ] = None,
    signal_datasets: Annotated[str | None, typer.Option("--signal-datasets")] = None,
    seed: Annotated[
        int | None, typer.Option("--seed", help="Injection seed (default: the model's seed).")
    ] = None,
) -> None:
    """Write the anomaly score of every event (run, event, score, ...) to a parquet file."""
    from adhunt.jobs.train import split_list
    from adhunt.models.artifact import ArtifactError

    try:
        run_score(
            model_dir, features, output, mode=mode, datasets=split_list(datasets), inject=inject,
            signal_dir=signal, signal_datasets=split_list(signal_datasets), seed=seed,
        )  # fmt: skip
    except (ArtifactError, ValueError, KeyError, ImportError) as exc:
        logger.error("%s", exc)
        raise typer.Exit(code=2) from exc

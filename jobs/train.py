"""``adhunt train METHOD``: fit a k-fold resonant anomaly-detection model on a feature directory.

``run_train`` is the library entry point (tests, demo); ``train`` is the typer command around it.
The artifact written to ``--output`` is self-contained: weights, configuration, window, features,
seeds, the hashed keys of the training events, and where the training data came from
(:class:`adhunt.provenance.Provenance`: tables, datasets, injected signal counts).
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Annotated, Any

import typer

from adhunt.jobs.options import (
    AllowDuplicatesOption,
    AllowPartialOption,
    ConfigOption,
    DatasetsOption,
    OptionalFeaturesOption,
    OverwriteOption,
    SeedOption,
    checked_output,
    split_list,
)
from adhunt.schema import DEFAULT_SIGNAL_REGION, STANDARD_FEATURES

__all__ = ["read_table", "run_train", "split_list", "train"]

logger = logging.getLogger(__name__)

DEFAULT_WINDOW = f"{DEFAULT_SIGNAL_REGION[0]:g}:{DEFAULT_SIGNAL_REGION[1]:g}"


def read_table(
    path: Path,
    datasets: list[str] | None,
    what: str,
    columns: list[str] | None = None,
    allow_duplicates: bool = False,
):
    """Kept for callers of the earlier job helper: :func:`adhunt.tables.read_table`."""
    from adhunt.tables import read_table as read

    return read(path, datasets, columns, what=what, allow_duplicates=allow_duplicates)


def _with_backend(config: Any, backend: str) -> Any:
    """Apply ``--backend`` to a method's config (directly, or to its nested classifier config)."""
    from adhunt.models.base import TrainConfig

    if isinstance(config, TrainConfig):
        return dataclasses.replace(config, backend=backend)
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if isinstance(value, TrainConfig):
            return dataclasses.replace(
                config, **{f.name: dataclasses.replace(value, backend=backend)}
            )
    raise ValueError(
        f"--backend does not apply to {type(config).__name__} (no classifier settings)"
    )


def _with_options(config: Any, method: str, **changes: Any) -> Any:
    """Apply CLI options (``--control-region``, ``--rule``, ``--starter``) that name config fields."""
    changes = {k: v for k, v in changes.items() if v is not None}
    fields = {f.name for f in dataclasses.fields(config)}
    for name in changes:
        if name not in fields:
            option = "--" + name.replace("_", "-")
            raise ValueError(f"{option} does not apply to method {method!r}")
    return dataclasses.replace(config, **changes) if changes else config


def run_train(
    method: str,
    features_dir: Path,
    output: Path,
    window: str = DEFAULT_WINDOW,
    folds: int = 5,
    seed: int = 0,
    backend: str | None = None,
    features: list[str] | None = None,
    datasets: list[str] | None = None,
    reference_dir: Path | None = None,
    reference_datasets: list[str] | None = None,
    inject: int | None = None,
    signal_dir: Path | None = None,
    signal_datasets: list[str] | None = None,
    config_path: Path | None = None,
    overwrite: bool = False,
    progress: Any | None = None,
    decorrelate: str = "none",
    decorrelate_region: str = "sidebands",
    allow_duplicates: bool = False,
    control_region: str | None = None,
    rule: str | None = None,
    starter: Path | None = None,
    inputs: str | None = None,
):
    """Train ``method`` and save it to ``output``; returns the fitted model.

    ``decorrelate="qr"``: after training, fit the quantile-regression mjj decorrelation on the
    k-fold scores of the training table (``decorrelate_region``: events outside the SR, or all)
    and store it in the artifact (:mod:`adhunt.models.decorrelation`).
    Repeated (run, event) keys in a table, or between the data and the injected signal, are an
    error unless ``allow_duplicates`` (:func:`adhunt.tables.check_unique_events`).
    """
    from adhunt.models.decorrelation import DECORRELATIONS, QRConfig

    if decorrelate not in DECORRELATIONS:
        raise ValueError(
            f"--decorrelate must be one of {', '.join(DECORRELATIONS)}, got {decorrelate!r}"
        )
    qr_config = QRConfig(fit_region=decorrelate_region, seed=seed) if decorrelate == "qr" else None
    from adhunt.config import config_to_dict, load_config
    from adhunt.injection import inject_columns, inject_signal, injection_summary
    from adhunt.models.registry import get_method
    from adhunt.outputs import check_output_dir
    from adhunt.provenance import check_tables_agree, make_provenance, provenance_extra
    from adhunt.regions import SignalRegion
    from adhunt.tables import check_unique_events

    cls = get_method(method)
    output = check_output_dir(output, command="train", overwrite=overwrite)
    region = SignalRegion.parse(window)
    config = load_config(cls.config_class, config_path) if config_path else cls.config_class()
    if backend is not None:
        config = _with_backend(config, backend)
    config = _with_options(
        config, method, control_region=control_region, rule=rule,
        starter=None if starter is None else str(starter), inputs=inputs,
    )  # fmt: skip
    if getattr(config, "inputs", "features") == "images":  # the jets' image pseudo-columns
        from adhunt.schema import IMAGE_PSEUDO_COLUMNS

        features = list(features or IMAGE_PSEUDO_COLUMNS)
    features = list(features or cls.default_features)
    if cls.needs_reference and reference_dir is None:
        raise ValueError(f"method {method!r} needs --reference DIR (a true-background sample)")
    if not cls.needs_reference and reference_dir is not None:
        raise ValueError(f"method {method!r} does not use --reference")
    if (inject is None) != (signal_dir is None):
        raise ValueError("--inject N and --signal DIR go together")

    check_tables_agree(
        {"--features": features_dir, "--signal": signal_dir, "--reference": reference_dir}
    )
    model = cls(features, region, n_folds=folds, seed=seed, config=config)
    columns = list(model.table_columns)  # inputs, mjj, and e.g. a control-region cut's columns
    data = read_table(features_dir, datasets, "--features", columns, allow_duplicates)
    used_datasets = datasets or sorted(set(data["dataset"]))  # before any injection
    injection, truth_counts = None, None
    if inject is not None:
        signal = read_table(signal_dir, signal_datasets, "--signal", columns, allow_duplicates)
        # Only the columns the method uses: tables from elsewhere may hold different extras.
        keep = inject_columns(data, signal, columns)
        data = inject_signal(data[keep], signal[keep], inject, seed)
        check_unique_events(
            data, "--features with the injected --signal", allow_duplicates=allow_duplicates
        )
        injection = {
            "signal": signal_dir,
            "signal_datasets": signal_datasets or sorted(set(signal["dataset"])),
            "n_injected": int(inject),
            "seed": seed,
            "counts": injection_summary(data, region),
        }
    elif data["truth_label"].isin((0, 1)).all():
        truth_counts = injection_summary(data, region)
    reference = None
    if reference_dir is not None:
        reference = read_table(
            reference_dir, reference_datasets, "--reference", columns, allow_duplicates
        )

    logger.info(
        "training %s on %d events, window %s GeV, %d folds, features %s",
        method, len(data), region, folds, ",".join(features),
    )  # fmt: skip
    model.fit(data, reference, progress=progress)
    if qr_config is not None:
        from adhunt.models.decorrelation import fit_decorrelation

        fit_decorrelation(model, data, qr_config)
    record = make_provenance(
        "train", features_dir, used_datasets, injection=injection,
        reference=reference_dir, reference_datasets=reference_datasets,
        n_reference=None if reference is None else len(reference), truth_counts=truth_counts,
        config=config_to_dict(config),
    )  # fmt: skip
    model.save(output, extra=provenance_extra(record))
    logger.info("saved %s model to %s", method, output)
    return model


def train(
    method: Annotated[
        str,
        typer.Argument(
            help="cwola, cathode, anode, ranode, iad (needs --reference), supervised, "
            "or the outlier detectors ae, vae, force, tnt."
        ),
    ],
    output: Annotated[Path, typer.Option("--output", "-o", help="Model directory to write.")],
    features: OptionalFeaturesOption = None,
    window: Annotated[
        str, typer.Option("--window", help="Signal region LOW:HIGH[:SIDEBAND] in GeV.")
    ] = DEFAULT_WINDOW,
    folds: Annotated[int, typer.Option("--folds", help="k of the k-fold training.")] = 5,
    seed: SeedOption = 0,
    backend: Annotated[
        str | None, typer.Option("--backend", help="Classifier back-end: hgb or mlp.")
    ] = None,
    features_list: Annotated[
        str | None,
        typer.Option(
            "--features-list",
            help="Comma-separated input features (default: the method's, "
            f"{','.join(STANDARD_FEATURES)} for the resonant methods).",
        ),
    ] = None,
    datasets: DatasetsOption = None,
    reference: Annotated[
        Path | None, typer.Option("--reference", help="True-background feature table (iad).")
    ] = None,
    reference_datasets: Annotated[str | None, typer.Option("--reference-datasets")] = None,
    inject: Annotated[
        int | None, typer.Option("--inject", help="Inject N signal events from --signal.")
    ] = None,
    signal: Annotated[
        Path | None, typer.Option("--signal", help="Signal feature table for --inject.")
    ] = None,
    signal_datasets: Annotated[str | None, typer.Option("--signal-datasets")] = None,
    config: ConfigOption = None,
    overwrite: OverwriteOption = False,
    decorrelate: Annotated[
        str, typer.Option("--decorrelate", help="mjj decorrelation of the score: none | qr.")
    ] = "none",
    decorrelate_region: Annotated[
        str,
        typer.Option(
            "--decorrelate-region", help="Events the QR is fitted on: sidebands (outside SR) | all."
        ),
    ] = "sidebands",
    models: Annotated[
        str | None, typer.Option("--models", help="combine: member model directories A,B,...")
    ] = None,
    allow_duplicates: AllowDuplicatesOption = False,
    control_region: Annotated[
        str | None,
        typer.Option(
            "--control-region",
            help="ae/vae/force: train only on events passing a cut, e.g. 'abs(delta_eta)>=1.4', "
            "or 'sidebands' (the mjj sidebands of --window).",
        ),
    ] = None,
    rule: Annotated[
        str | None,
        typer.Option(
            "--rule", help="ae/vae/force/tnt: per-jet -> event score: min|max|sum|heavier|lighter."
        ),
    ] = None,
    starter: Annotated[
        Path | None,
        typer.Option(
            "--starter", help="tnt: saved ae/vae model scoring each jet (default: a fresh ae)."
        ),
    ] = None,
    allow_partial: AllowPartialOption = False,
    inputs: Annotated[
        str | None,
        typer.Option(
            "--inputs",
            help="ae/vae: features (dense network on feature columns) or images (convolutional "
            "network on the jet images of `adhunt features --images`).",
        ),
    ] = None,
) -> None:
    """Train a resonant anomaly-detection model (k-fold) and save it as a verified artifact.

    ``adhunt train combine --models A,B,... --output DIR`` builds the rank-averaged combination
    of saved models instead (see ``adhunt.models.combine``; ``--features`` optional).
    """
    checked_output(output, command="train", overwrite=overwrite)
    if method == "combine":
        _combine(
            models, features, output, datasets, decorrelate, decorrelate_region, overwrite,
            allow_duplicates,
        )  # fmt: skip
        return
    if models is not None:
        logger.error("--models is only for 'adhunt train combine'")
        raise typer.Exit(code=2)
    if features is None:
        logger.error("--features is required")
        raise typer.Exit(code=2)
    from adhunt.jobs.reporting import progress_bar
    from adhunt.tables import partial_reading

    with partial_reading(allow_partial), progress_bar() as bar:
        task = bar.add_task(f"train {method}", total=folds)
        try:
            run_train(
                method, features, output, window=window, folds=folds, seed=seed, backend=backend,
                features=split_list(features_list), datasets=split_list(datasets),
                reference_dir=reference, reference_datasets=split_list(reference_datasets),
                inject=inject, signal_dir=signal, signal_datasets=split_list(signal_datasets),
                config_path=config, overwrite=overwrite, allow_duplicates=allow_duplicates,
                control_region=control_region, rule=rule, starter=starter, inputs=inputs,
                progress=lambda done, total: bar.update(task, completed=done, total=total),
                decorrelate=decorrelate, decorrelate_region=decorrelate_region,
            )  # fmt: skip
        except (ValueError, KeyError, ImportError, FileNotFoundError) as exc:
            logger.error("%s", exc)
            raise typer.Exit(code=2) from exc


def _combine(
    models: str | None,
    features: Path | None,
    output: Path,
    datasets: str | None,
    decorrelate: str,
    decorrelate_region: str,
    overwrite: bool,
    allow_duplicates: bool = False,
) -> None:
    """``adhunt train combine``: wire the options to :func:`adhunt.models.combine.run_combine`."""
    from adhunt.models.artifact import ArtifactError
    from adhunt.models.combine import run_combine

    try:
        run_combine(
            [Path(m) for m in split_list(models) or []], output, reference_dir=features,
            datasets=split_list(datasets), decorrelate=decorrelate,
            decorrelate_region=decorrelate_region, overwrite=overwrite,
            allow_duplicates=allow_duplicates,
        )  # fmt: skip
    except (ArtifactError, ValueError, KeyError, ImportError, FileNotFoundError) as exc:
        logger.error("%s", exc)
        raise typer.Exit(code=2) from exc

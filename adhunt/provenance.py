"""Where a model's training data came from: one typed record, one writer, one reader.

Why: ``infer`` calibrates its score cuts on the model's own training table, ``score``,
``evaluate`` and ``sculpting`` must score an event the model trained on only with the fold model
that never saw it. All of them read this record; ``train`` and ``scan`` write it. Before it
existed, scan wrote ``features`` where readers looked for ``features_dir``, and the readers
silently fell back to the wrong behaviour.

The record sits in a saved model's ``extra["provenance"]`` (plain JSON in ``model.json``):

    record = make_provenance("scan", features=path_or_frame, datasets=..., injection=...)
    model.save(directory, extra=provenance_extra(record))   # the one writer
    record = read_provenance(model)                          # the one reader (None if absent)

Which events a model trained on is not a property of a table path (tables get rewritten, a
DataFrame has no path) but of the events themselves: a fitted model keeps the sorted 32-bit hashes
of its training events' ``(run, event)`` keys (:func:`training_key_set`, stored with the weights
by ``models.base.ResonantModel``). :func:`score_auto` uses them to score each event k-fold if the
model trained on it and with the ensemble of all folds otherwise. Reference (true-background)
samples of the idealized AD are used by every fold, so no mode scores them without bias: score
independent reference events.

The record also keeps the feature definition of the training table (jet source, radius, beta,
trigger, ... as ``adhunt features`` wrote them in ``features_config.json``):
:func:`check_feature_definition` is the one check that ``score``, ``evaluate``, ``infer`` and
``sculpting`` run before scoring a table (or, in ``infer``, running the feature processor), so
that an R = 0.4 table is never scored by a model trained on R = 1.0 features.

The core imports no models: :func:`score_auto` works with any object offering ``score(frame,
mode)`` and ``trained_mask(frame)``.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from adhunt.config import json_safe
from adhunt.regions import event_hash

__all__ = [
    "COMMANDS",
    "EXTENDED_FEATURE_FIELDS",
    "IGNORED_FEATURE_FIELDS",
    "PROVENANCE_KEY",
    "PROVENANCE_VERSION",
    "FeatureDefinitionError",
    "Injection",
    "Provenance",
    "ProvenanceError",
    "check_feature_definition",
    "check_tables_agree",
    "definition_differences",
    "feature_definition",
    "in_key_set",
    "make_provenance",
    "model_feature_definition",
    "provenance_extra",
    "read_provenance",
    "rebuild_training_table",
    "score_auto",
    "table_feature_definition",
    "training_key_set",
]

log = logging.getLogger(__name__)

PROVENANCE_KEY = "provenance"
PROVENANCE_VERSION = 1
COMMANDS = ("train", "scan")
#: Salt of the key hash, distinct from the fold (0) and validation (1) hashes, and seed-free, so
#: the same event has the same key in every model.
_KEY_SALT = 2
#: Value of :func:`score_auto`'s mode per event.
MODE_KFOLD, MODE_ENSEMBLE = "kfold", "ensemble"


class ProvenanceError(ValueError):
    """A provenance record that cannot be read (wrong types, unknown version)."""


@dataclass(frozen=True)
class Injection:
    """Signal events added to the training table: rebuilt by ``inject_signal(..., n, seed)``."""

    signal_dir: str | None  # parquet file or directory of the signal table (None: a DataFrame)
    n_injected: int
    seed: int
    signal_datasets: tuple[str, ...] | None = None
    counts: dict[str, Any] = field(default_factory=dict)  # adhunt.injection.injection_summary


@dataclass(frozen=True)
class Provenance:
    """The training data of a saved model (see the module doc)."""

    command: str  # "train" or "scan"
    # The feature table read: a parquet file or a directory (the ``_dir`` names are those of the
    # first records, kept so that every earlier reader finds them); None: an in-memory DataFrame.
    features_dir: str | None
    datasets: tuple[str, ...] | None = None  # datasets of it that were used (None: all)
    injection: Injection | None = None
    reference_dir: str | None = None  # true-background table (iad)
    reference_datasets: tuple[str, ...] | None = None
    n_reference: int | None = None
    truth_counts: dict[str, Any] | None = None  # SR signal/background counts when truth is known
    config: dict[str, Any] = field(default_factory=dict)  # the method's configuration
    version: int = PROVENANCE_VERSION
    # How the training table's features were made (:func:`table_feature_definition`); None: a
    # foreign table or a DataFrame, or a model saved before the definition was recorded.
    feature_definition: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if self.command not in COMMANDS:
            raise ProvenanceError(
                f"provenance command must be one of {COMMANDS}, got {self.command!r}"
            )
        if self.version != PROVENANCE_VERSION:
            raise ProvenanceError(
                f"provenance version {self.version!r} is not supported (this adhunt reads "
                f"{PROVENANCE_VERSION})"
            )

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON form (what :func:`provenance_extra` stores)."""
        out = dataclasses.asdict(self)
        for name in ("datasets", "reference_datasets"):
            out[name] = None if out[name] is None else list(out[name])
        if out["injection"] is not None:
            sd = out["injection"]["signal_datasets"]
            out["injection"]["signal_datasets"] = None if sd is None else list(sd)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Provenance:
        """Inverse of :meth:`to_dict`; also reads the untyped records of earlier versions.

        Earlier ``train`` wrote the same names untyped (injection counts at the top level of
        ``injection``), earlier ``scan`` wrote ``features`` (``"<DataFrame>"`` for a frame):
        both are mapped onto the typed fields, so models saved before the record stay usable.
        """
        if not isinstance(data, Mapping):
            raise ProvenanceError(f"provenance must be a mapping, got {type(data).__name__}")
        d = dict(data)
        features = d.get("features_dir", d.get("features"))
        if features == "<DataFrame>":
            features = None
        inj = d.get("injection")
        injection = None
        if inj:
            signal = inj.get("signal_dir", inj.get("signal"))
            counts = {
                k: v
                for k, v in (inj.get("counts") or inj).items()
                if k not in ("signal", "signal_dir", "signal_datasets", "n_injected", "seed")
            }
            injection = Injection(
                signal_dir=None if signal in (None, "<DataFrame>") else str(signal),
                n_injected=int(inj["n_injected"]),
                seed=int(inj["seed"]),
                signal_datasets=_tuple(inj.get("signal_datasets")),
                counts=counts,
            )
        try:
            return cls(
                command=str(d.get("command", "train")),
                features_dir=None if features is None else str(features),
                datasets=_tuple(d.get("datasets")),
                injection=injection,
                reference_dir=d.get("reference_dir", d.get("reference")),
                reference_datasets=_tuple(d.get("reference_datasets")),
                n_reference=d.get("n_reference"),
                truth_counts=d.get("truth_counts"),
                config=dict(d.get("config") or {}),
                version=int(d.get("version", PROVENANCE_VERSION)),
                feature_definition=_definition(d.get("feature_definition")),
            )
        except (KeyError, TypeError, ValueError) as err:
            if isinstance(err, ProvenanceError):
                raise
            raise ProvenanceError(f"unreadable provenance record ({err!r})") from err

    def same_table(self, path: str | Path, datasets: Iterable[str] | None = None) -> bool:
        """Whether ``path`` (and ``datasets``) name the table this model was trained on."""
        if self.features_dir is None:
            return False
        if Path(self.features_dir).resolve() != Path(path).resolve():
            return False
        return (
            datasets is None or self.datasets is None or sorted(datasets) == sorted(self.datasets)
        )


def _tuple(value: Any) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return (value,)
    return tuple(str(v) for v in value)


def _source(value: Any) -> str | None:
    """A table argument as recorded: its path, or None for an in-memory table."""
    if value is None or not isinstance(value, str | Path):
        return None
    return str(value)


def make_provenance(
    command: str,
    features: Any,
    datasets: Iterable[str] | None = None,
    *,
    injection: Injection | Mapping[str, Any] | None = None,
    reference: Any = None,
    reference_datasets: Iterable[str] | None = None,
    n_reference: int | None = None,
    truth_counts: Mapping[str, Any] | None = None,
    config: Mapping[str, Any] | None = None,
) -> Provenance:
    """The record of a training run; ``features``/``reference``: a path or a DataFrame.

    The feature definition of a ``features`` path (:func:`table_feature_definition`) is
    recorded with it, so that scoring commands can refuse tables made differently.

    ``injection``: an :class:`Injection` or a mapping with ``signal`` (path or frame; or
    ``signal_dir``),
    ``n_injected``, ``seed`` and optionally ``signal_datasets`` and ``counts``.
    """
    if isinstance(injection, Mapping):
        injection = Injection(
            signal_dir=_source(injection.get("signal_dir", injection.get("signal"))),
            n_injected=int(injection["n_injected"]),
            seed=int(injection["seed"]),
            signal_datasets=_tuple(injection.get("signal_datasets")),
            counts=dict(injection.get("counts") or {}),
        )
    return Provenance(
        command=command,
        features_dir=_source(features),
        datasets=_tuple(None if datasets is None else sorted(datasets)),
        injection=injection,
        reference_dir=_source(reference),
        reference_datasets=_tuple(reference_datasets),
        n_reference=None if n_reference is None else int(n_reference),
        truth_counts=None if truth_counts is None else dict(truth_counts),
        config=dict(config or {}),
        feature_definition=None
        if _source(features) is None
        else table_feature_definition(features),
    )


def provenance_extra(record: Provenance) -> dict[str, Any]:
    """The ``extra`` mapping to save with a model: ``model.save(path, extra=provenance_extra(r))``."""
    if not isinstance(record, Provenance):
        raise TypeError(f"expected a Provenance, got {type(record).__name__}")
    return {PROVENANCE_KEY: record.to_dict()}


def read_provenance(source: Any) -> Provenance | None:
    """The record of a model (anything with ``.extra``) or of its ``extra`` mapping; None if absent."""
    extra = getattr(source, "extra", source)
    if not isinstance(extra, Mapping):
        return None
    data = extra.get(PROVENANCE_KEY)
    if not data:
        return None
    return Provenance.from_dict(data)


def rebuild_training_table(
    record: Provenance,
    columns: Iterable[str],
    datasets: Iterable[str] | None = None,
    what: str = "training table",
    allow_duplicates: bool = False,
) -> Any:
    """The table a model trained on, read again from the record (with the same signal injection).

    ``columns``: the features needed (``mjj`` is added); ``datasets`` overrides the recorded ones.
    Raises :class:`ProvenanceError` when the record names no table (trained on a DataFrame);
    repeated (run, event) keys are an error unless ``allow_duplicates`` (as for ``train``).
    """
    from adhunt.injection import inject_columns, inject_signal
    from adhunt.tables import check_unique_events, read_table

    if record.features_dir is None:
        raise ProvenanceError(
            f"{what}: the model was trained on an in-memory table, not a file; give the table"
        )
    columns = list(dict.fromkeys([*columns, "mjj"]))
    used = list(datasets) if datasets is not None else record.datasets
    allow = {"allow_duplicates": allow_duplicates}
    table = read_table(record.features_dir, used, columns, what=what, **allow)
    if record.injection is not None:
        inj = record.injection
        if inj.signal_dir is None:
            raise ProvenanceError(f"{what}: the injected signal was an in-memory table")
        signal = read_table(
            inj.signal_dir, inj.signal_datasets, columns, what=f"{what} (signal)", **allow
        )
        keep = inject_columns(table, signal, columns)
        table = inject_signal(table[keep], signal[keep], inj.n_injected, inj.seed)
        check_unique_events(table, f"{what} with the injected signal", **allow)
    return table


# --------------------------------------------------------------------------------------------
# How the training table's features were made
# --------------------------------------------------------------------------------------------

#: Feature-configuration fields that do not change an event's features: which data luminosity
#: sections are kept, the normalisation of the weights, and the opt-in extra outputs (extended
#: substructure columns, jet images), which add columns without changing the others (a model
#: needing them is refused where they are missing, by its input columns). Every other field
#: (jet source, radius, beta, trigger, HLT bits, PUPPI, fat-jet cuts, schema) does.
IGNORED_FEATURE_FIELDS = frozenset({"lumi_mask", "luminosity", "extended", "images", "image_size"})
#: Fields that only shape the extended columns: compared when both sides computed those.
EXTENDED_FEATURE_FIELDS = frozenset({"softdrop_zcut", "softdrop_beta"})


class FeatureDefinitionError(ValueError):
    """A table (or processor configuration) whose features are made differently from a model's."""


def feature_definition(
    features: Mapping[str, Any], columns: Iterable[str] | None = None, source: str | None = None
) -> dict[str, Any]:
    """The definition record of a feature configuration (``config_to_dict(FeatureConfig)``, as
    ``adhunt features`` writes it under ``"features"`` in ``features_config.json``)."""
    if not isinstance(features, Mapping):
        raise FeatureDefinitionError(
            f"a feature configuration must be a mapping, got {type(features).__name__}"
        )
    return {
        "features": json_safe(dict(features)),
        "columns": None if columns is None else [str(c) for c in columns],
        "source": source,
    }


def table_feature_definition(path: str | Path) -> dict[str, Any] | None:
    """The feature definition of a table: that of the ``adhunt features`` directory it is (or
    one dataset directory of); None for any other table (a foreign parquet file or directory).

    Directories are recognised exactly as :func:`adhunt.tables.read_table` recognises them.
    """
    import json

    from adhunt.tables import FEATURES_CONFIG_NAME, is_chunk_dataset_directory

    root = Path(path)
    if not root.is_dir():
        return None
    if (root / FEATURES_CONFIG_NAME).is_file():
        config, tables = root / FEATURES_CONFIG_NAME, sorted(root.glob("*/*.parquet"))
    elif is_chunk_dataset_directory(root) and (root.parent / FEATURES_CONFIG_NAME).is_file():
        config, tables = root.parent / FEATURES_CONFIG_NAME, sorted(root.glob("*.parquet"))
    else:
        return None
    try:
        doc = json.loads(config.read_text())
    except (OSError, ValueError) as err:
        raise FeatureDefinitionError(f"{config}: unreadable ({err})") from err
    features = doc.get("features") if isinstance(doc, Mapping) else None
    if not isinstance(features, Mapping):
        raise FeatureDefinitionError(f"{config}: no 'features' mapping (not an adhunt output?)")
    columns = None
    if tables:
        import pyarrow.parquet as pq

        try:
            columns = pq.read_schema(tables[0]).names
        except Exception:  # an unreadable chunk is reported by the table reader, by name
            columns = None
    return feature_definition(features, columns, source=str(config))


def model_feature_definition(model: Any) -> dict[str, Any] | None:
    """The feature definition a model (or its ``extra``) records; None if it records none."""
    record = read_provenance(model)
    return None if record is None else record.feature_definition


def _flatten(mapping: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in mapping.items():
        if isinstance(value, Mapping):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def definition_differences(
    first: Mapping[str, Any], second: Mapping[str, Any]
) -> list[tuple[str, Any, Any]]:
    """``(field, first value, second value)`` of every feature-changing field that differs.

    Fields (``trigger.pt_min`` for nested ones) in :data:`IGNORED_FEATURE_FIELDS` are skipped,
    :data:`EXTENDED_FEATURE_FIELDS` unless both sides computed the extended columns, and fields
    recorded on one side only (written by an adhunt that did not have them).
    """
    a = _flatten(first.get("features") or {})
    b = _flatten(second.get("features") or {})
    both_extended = bool(a.get("extended")) and bool(b.get("extended"))
    out = []
    for name, value in a.items():
        if name.split(".")[0] in IGNORED_FEATURE_FIELDS or name not in b:
            continue
        if name in EXTENDED_FEATURE_FIELDS and not both_extended:
            continue
        other = b[name]
        if json_safe(value) != json_safe(other):
            out.append((name, value, other))
    return out


def check_feature_definition(
    model_definition: Mapping[str, Any] | None,
    table_definition: Mapping[str, Any] | None,
    *,
    model: str,
    table: str,
    noun: str = "table",
) -> None:
    """Refuse a table whose features are made differently from the model's training table.

    Raises :class:`FeatureDefinitionError` naming every differing field and both values, e.g.
    ``radius: model trained on 1.0, table has 0.4``. When either side records no definition (a
    foreign table, a model saved before definitions were recorded) nothing can be compared:
    a WARNING says so and the table is accepted. ``model``/``table`` name both in messages;
    ``noun`` is what the table is called in the differences (``table``, ``--config``).
    """
    if model_definition is None:
        log.warning(
            "model %s does not record how its training features were made (a foreign table, or "
            "saved before adhunt recorded it): cannot check that %s matches it",
            model, table,
        )  # fmt: skip
        return
    if table_definition is None:
        log.warning(
            "%s records no feature definition (not written by adhunt features): cannot check "
            "that it matches the features model %s was trained on",
            table, model,
        )  # fmt: skip
        return
    diffs = definition_differences(model_definition, table_definition)
    if diffs:
        what = "; ".join(
            f"{f}: model trained on {_show(a)}, {noun} has {_show(b)}" for f, a, b in diffs
        )
        raise FeatureDefinitionError(
            f"{table} was made with other feature settings than model {model}'s training "
            f"table: {what}"
        )


def check_tables_agree(tables: Mapping[str, Any]) -> None:
    """Refuse tables read together (``--features``, ``--signal``, ``--reference``) whose features
    were made with different settings; ``tables``: option -> path (None or a DataFrame: skipped,
    as are tables that record no definition)."""
    known = [
        (f"{option} {path}", definition)
        for option, path in tables.items()
        if isinstance(path, str | Path)
        and (definition := table_feature_definition(path)) is not None
    ]
    for (first, a), (label, b) in itertools.product(known[:1], known[1:]):
        diffs = definition_differences(a, b)
        if diffs:
            what = "; ".join(f"{f}: {_show(x)} in {first}, {_show(y)}" for f, x, y in diffs)
            raise FeatureDefinitionError(
                f"{label} was made with other feature settings than {first}: {what}"
            )


def _show(value: Any) -> str:
    if isinstance(value, list | tuple):
        return "[" + ", ".join(map(str, value)) + "]"
    return str(value)


def _definition(value: Any) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, Mapping) or not isinstance(value.get("features"), Mapping):
        raise ProvenanceError("provenance feature_definition must hold a 'features' mapping")
    return dict(value)


# --------------------------------------------------------------------------------------------
# Which events a model trained on
# --------------------------------------------------------------------------------------------


def _key_hashes(run: Any, event: Any) -> np.ndarray:
    h = event_hash(np.asarray(run), np.asarray(event), 0, salt=_KEY_SALT)
    return (h >> np.uint64(32)).astype(np.uint32)


def training_key_set(run: Any, event: Any) -> np.ndarray:
    """Sorted unique 32-bit hashes of ``(run, event)``: 4 bytes per training event.

    A collision can only mark an unseen event as seen (probability ~ n / 2^32 per event, 2.6e-4
    for the 1.1M LHCO events), which scores it k-fold: never biased, only slightly noisier.
    """
    return np.unique(_key_hashes(run, event))


def in_key_set(keys: np.ndarray, run: Any, event: Any) -> np.ndarray:
    """Boolean mask: which ``(run, event)`` are in a :func:`training_key_set`."""
    hashes = _key_hashes(run, event)
    keys = np.asarray(keys, dtype=np.uint32)
    if keys.size == 0:
        return np.zeros(hashes.shape, dtype=bool)
    pos = np.clip(np.searchsorted(keys, hashes), 0, keys.size - 1)
    return keys[pos] == hashes


class _Scorer(Protocol):
    def score(self, data: Any, mode: str = ...) -> np.ndarray: ...

    def trained_mask(self, data: Any) -> np.ndarray | None: ...


def score_auto(model: _Scorer, table: Any) -> tuple[np.ndarray, np.ndarray]:
    """Scores of every row of ``table`` and the mode used for each (``"kfold"``/``"ensemble"``).

    Events the model trained on (by their (run, event) keys) get the fold model that never saw
    them; the others the mean of all folds, which is less noisy. A model that does not know its
    training events (saved before they were recorded) scores everything k-fold, the choice that
    is unbiased either way, and says so in a WARNING.
    """
    n = len(table)
    mask = model.trained_mask(table)
    if mask is None:
        log.warning(
            "the model does not record which events it trained on; scoring all %d events "
            "k-fold (unbiased, but an independent sample would be better served by the ensemble)",
            n,
        )
        mask = np.ones(n, dtype=bool)
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != (n,):
        raise ValueError(f"trained_mask returned shape {mask.shape} for {n} rows")
    scores = np.zeros(n, dtype=np.float64)
    if mask.any():
        scores[mask] = model.score(table[mask], mode=MODE_KFOLD)
    if (~mask).any():
        scores[~mask] = model.score(table[~mask], mode=MODE_ENSEMBLE)
    modes = np.where(mask, MODE_KFOLD, MODE_ENSEMBLE).astype(object)
    log.info(
        "auto scoring: %d event(s) k-fold (seen in training), %d with the ensemble",
        int(mask.sum()), int((~mask).sum()),
    )  # fmt: skip
    return scores, modes

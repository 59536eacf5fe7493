"""The resonant anomaly-detection model API shared by every method (CWoLa, IAD, CATHODE, ANODE, ...).

A method is a :class:`ResonantModel` subclass that implements one hook, ``_fit_fold``: given the
training (and validation) events of one k-fold split it returns a :class:`FoldModel`. The base class
owns everything that must be identical across methods and is easy to get wrong:

* input validation (missing columns, NaN/inf, empty signal region or sideband) with clear errors;
* blinding: methods other than ``supervised`` never receive the ``truth_label`` column;
* k-fold bookkeeping: an event's fold is a hash of ``(run, event, seed)``; the event is scored by
  the model of its own fold, which was trained without it. The model keeps the hashed keys of its
  training events (``adhunt.provenance.training_key_set``), so ``score(..., mode="auto")`` can
  tell which events of any table it saw;
* saving/loading through one verified, pickle-free artifact (``models/artifact.py``).

Models know nothing of coffea or processors: pandas/numpy in, scores out.
"""

from __future__ import annotations

import dataclasses
import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import numpy as np
import pandas as pd

import adhunt
from adhunt.config import config_from_dict, config_to_dict, json_safe
from adhunt.dijet import with_derived_features
from adhunt.models.artifact import ArtifactError, load_artifact, save_artifact
from adhunt.provenance import in_key_set, score_auto, training_key_set
from adhunt.regions import SignalRegion, kfold_assignments, validation_mask
from adhunt.schema import RESONANT_VARIABLE, STANDARD_FEATURES

__all__ = [
    "ID_COLUMNS",
    "SCORE_MODES",
    "TRAINING_KEYS_TENSOR",
    "TRUTH_COLUMN",
    "FoldModel",
    "ResonantModel",
    "TrainConfig",
    "fold_model_from_parts",
    "prefixed",
    "unprefixed",
]

log = logging.getLogger(__name__)

TRUTH_COLUMN = "truth_label"
ID_COLUMNS = ("run", "event")
#: Score modes: held-out fold model, mean of folds, or per event by whether it was trained on.
SCORE_MODES = ("kfold", "ensemble", "auto")
#: Tensor holding the sorted key hashes of the training events.
TRAINING_KEYS_TENSOR = "training/keys"
#: Tensor-name prefix of a stored mjj decorrelation (its metadata: ``metadata["decorrelation"]``).
DECORRELATION_PREFIX = "decorrelation"

_M = TypeVar("_M", bound="ResonantModel")


@dataclass(frozen=True)
class TrainConfig:
    """Settings of the SR-vs-template classifiers (both back-ends) and of the fold splitting."""

    backend: str = "hgb"  # "hgb" (sklearn HistGradientBoosting ensemble) or "mlp" (torch)
    n_ensemble: int = 5  # members per fold model; their mean probability is the score
    val_fraction: float = 0.2  # of each fold's training events, for early stopping
    balance_classes: bool = True  # reweight so both classes carry equal total weight
    # --- MLP (torch) ---
    epochs: int = 100
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 0.0
    patience: int = 10  # epochs without validation-loss improvement before stopping
    hidden: tuple[int, ...] = (64, 64, 64)
    dropout: float = 0.0
    device: str = "auto"  # "auto" (CUDA if available), "cpu", "cuda", "cuda:1", ...
    # CPU threads of torch and of sklearn's OpenMP loops during training; None = library default.
    # Set 1 on crowded machines: OpenMP threads spin-wait and crawl when cores are oversubscribed.
    num_threads: int | None = None
    score_batch_size: int = 65536
    # --- HistGradientBoosting (sklearn) ---
    hgb_max_iter: int = 200
    hgb_learning_rate: float = 0.1
    hgb_max_leaf_nodes: int = 31
    hgb_max_depth: int | None = None
    hgb_min_samples_leaf: int = 20
    hgb_l2_regularization: float = 0.0
    hgb_max_bins: int = 255
    hgb_n_iter_no_change: int = 10

    def __post_init__(self) -> None:
        if self.backend not in ("hgb", "mlp"):
            raise ValueError(f"TrainConfig.backend must be 'hgb' or 'mlp', got {self.backend!r}")
        positive = (
            "n_ensemble", "epochs", "batch_size", "patience", "score_batch_size", "hgb_max_iter",
            "hgb_max_leaf_nodes", "hgb_min_samples_leaf", "hgb_max_bins", "hgb_n_iter_no_change",
        )  # fmt: skip
        for name in positive:
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"TrainConfig.{name} must be a positive integer, got {value!r}")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"TrainConfig.val_fraction must be in [0, 1), got {self.val_fraction}")
        if not self.lr > 0 or not self.hgb_learning_rate > 0:
            raise ValueError("TrainConfig learning rates must be positive")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"TrainConfig.dropout must be in [0, 1), got {self.dropout}")
        if not self.hidden or any(int(h) < 1 for h in self.hidden):
            raise ValueError(
                f"TrainConfig.hidden must list positive layer widths, got {self.hidden}"
            )
        object.__setattr__(self, "hidden", tuple(int(h) for h in self.hidden))


# --------------------------------------------------------------------------------------------
# Fold models
# --------------------------------------------------------------------------------------------


class FoldModel(ABC):
    """A trained model of one fold: scores arrays; serialises to tensors + JSON metadata.

    Subclasses set a unique class attribute ``kind``; they register themselves on definition so
    that an artifact can rebuild them by name (no pickle, no code in the artifact).
    """

    kind: ClassVar[str]
    _KINDS: ClassVar[dict[str, type[FoldModel]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        kind = cls.__dict__.get("kind")
        if kind is not None:
            other = FoldModel._KINDS.get(kind)
            if other is not None and other.__qualname__ != cls.__qualname__:
                raise TypeError(f"fold model kind {kind!r} already used by {other.__qualname__}")
            FoldModel._KINDS[kind] = cls

    @abstractmethod
    def score(self, x: np.ndarray) -> np.ndarray:
        """Scores (higher = more signal-like) of the rows of ``x`` (events x input columns)."""

    @abstractmethod
    def tensors(self) -> dict[str, np.ndarray]:
        """Flat name -> array dict of every learned number too large for JSON."""

    @abstractmethod
    def metadata(self) -> dict[str, Any]:
        """JSON-able settings and small fitted parameters (e.g. preprocessing, fitted w)."""

    @classmethod
    @abstractmethod
    def from_parts(
        cls, tensors: Mapping[str, np.ndarray], metadata: Mapping[str, Any]
    ) -> FoldModel:
        """Rebuild from :meth:`tensors` and :meth:`metadata` (inverse of saving)."""


def fold_model_from_parts(
    kind: str, tensors: Mapping[str, np.ndarray], metadata: Mapping[str, Any]
) -> FoldModel:
    """Rebuild a fold model of a registered ``kind``."""
    if kind not in FoldModel._KINDS:
        raise ArtifactError(
            f"unknown fold model kind {kind!r}; known: {sorted(FoldModel._KINDS)} "
            "(is the module defining it imported?)"
        )
    return FoldModel._KINDS[kind].from_parts(tensors, metadata)


def prefixed(prefix: str, tensors: Mapping[str, Any]) -> dict[str, Any]:
    """``{name: t}`` -> ``{prefix/name: t}``: nest a sub-model's tensors in a flat dict."""
    return {f"{prefix}/{k}": v for k, v in tensors.items()}


def unprefixed(prefix: str, tensors: Mapping[str, Any]) -> dict[str, Any]:
    """Inverse of :func:`prefixed`: the entries under ``prefix/``, with the prefix removed."""
    head = f"{prefix}/"
    return {k[len(head) :]: v for k, v in tensors.items() if k.startswith(head)}


# --------------------------------------------------------------------------------------------
# Resonant models
# --------------------------------------------------------------------------------------------


class ResonantModel(ABC):
    """k-fold ensemble of one anomaly-detection method in one mjj window.

    Subclasses set ``method`` and implement :meth:`_fit_fold`. Class flags:
    ``uses_truth`` (only the supervised reference may read ``truth_label``),
    ``needs_reference`` (a separate background sample, e.g. the idealized AD),
    ``needs_sideband`` (the method learns its background template from the sidebands),
    ``needs_signal_region`` (the method trains on signal-region events; outlier detectors train
    on any events and only report on the window). ``default_features``: the inputs
    ``adhunt train`` uses when none are given.
    """

    method: ClassVar[str]
    uses_truth: ClassVar[bool] = False
    needs_reference: ClassVar[bool] = False
    needs_sideband: ClassVar[bool] = True
    needs_signal_region: ClassVar[bool] = True
    default_features: ClassVar[tuple[str, ...]] = STANDARD_FEATURES
    config_class: ClassVar[type] = TrainConfig

    def __init__(
        self,
        features: Sequence[str],
        region: SignalRegion,
        n_folds: int = 5,
        seed: int = 0,
        config: Any | None = None,
    ) -> None:
        if isinstance(features, str):
            raise TypeError(
                f"features must be a sequence of column names, got the string {features!r}"
            )
        features = tuple(str(f) for f in features)
        if not features:
            raise ValueError("at least one feature is needed")
        if len(set(features)) != len(features):
            raise ValueError(f"duplicate features in {features}")
        forbidden = {RESONANT_VARIABLE, TRUTH_COLUMN, *ID_COLUMNS, "dataset"} & set(features)
        if forbidden:
            raise ValueError(
                f"{sorted(forbidden)} cannot be input features: {RESONANT_VARIABLE} defines the "
                "window (a classifier would learn SR vs SB from it), the others are bookkeeping"
            )
        if not isinstance(region, SignalRegion):
            raise TypeError(f"region must be a SignalRegion, got {type(region).__name__}")
        if int(n_folds) < 2:
            raise ValueError(
                f"n_folds must be >= 2 so every event has a model that never saw it, got {n_folds}"
            )
        config = self.config_class() if config is None else config
        if not isinstance(config, self.config_class):
            raise TypeError(
                f"{type(self).__name__} expects a {self.config_class.__name__}, got {type(config).__name__}"
            )
        self.features = features
        self.region = region
        self.n_folds = int(n_folds)
        self.seed = int(seed)
        self.config = config
        self.fold_models: list[FoldModel] = []
        #: Method-specific results worth reporting (e.g. R-ANODE's fitted signal fraction).
        self.summary: dict[str, Any] = {}
        #: Per-fold bookkeeping of the last fit (event counts); saved with the model.
        self.training: dict[str, Any] = {}
        #: Free-form record saved with the model (e.g. provenance from the train job).
        self.extra: dict[str, Any] = {}
        #: Sorted 32-bit hashes of the (run, event) keys of the training events (None: not recorded).
        self.training_keys: np.ndarray | None = None
        #: mjj decorrelation of the score (``models/decorrelation.py``); None: raw scores.
        self.decorrelation: Any | None = None

    # ----- the hook -------------------------------------------------------------------------

    @abstractmethod
    def _fit_fold(
        self, k: int, train: pd.DataFrame, val: pd.DataFrame, reference: pd.DataFrame | None
    ) -> FoldModel:
        """Train the model of fold ``k`` on ``train`` (early-stop on ``val``).

        Neither frame contains the events of fold ``k``; both hold every mjj (SR and SB), the
        input columns, ``mjj``, ``run``, ``event`` and ``truth_label`` only if ``uses_truth``.
        """

    # ----- overridable details ----------------------------------------------------------------

    @property
    def input_columns(self) -> tuple[str, ...]:
        """Columns handed to ``FoldModel.score`` in this order (flows append ``mjj``)."""
        return self.features

    @property
    def table_columns(self) -> tuple[str, ...]:
        """Feature-table columns training reads (inputs, mjj, and e.g. a control-region cut's)."""
        return tuple(dict.fromkeys([*self.input_columns, RESONANT_VARIABLE]))

    def fold_seed(self, k: int, stream: int = 0) -> int:
        """Independent, reproducible seed for fold ``k`` (and sub-stream, e.g. ensemble member)."""
        return int(np.random.SeedSequence([self.seed, int(k), int(stream)]).generate_state(1)[0])

    @property
    def fitted(self) -> bool:
        return len(self.fold_models) == self.n_folds

    # ----- validation -------------------------------------------------------------------------

    def _validate(self, df: Any, what: str, columns: Sequence[str]) -> pd.DataFrame:
        if not isinstance(df, pd.DataFrame):
            raise TypeError(f"{what}: expected a pandas DataFrame, got {type(df).__name__}")
        missing = [c for c in columns if c not in df.columns]
        if missing:
            raise ValueError(
                f"{what}: missing column(s) {missing} needed by {self.method} "
                f"(has {len(df.columns)} columns: {list(df.columns)[:30]})"
            )
        for col in columns:
            values = df[col]
            if not pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
                raise ValueError(
                    f"{what}: column {col!r} must be numeric, has dtype {values.dtype}"
                )
            arr = values.to_numpy(dtype=np.float64, na_value=np.nan)
            bad = ~np.isfinite(arr)
            if bad.any():
                first = int(np.flatnonzero(bad)[0])
                where = f"row {first}"
                if all(c in df.columns for c in ID_COLUMNS):
                    where += f" (run {df['run'].iloc[first]}, event {df['event'].iloc[first]}"
                    if "dataset" in df.columns:
                        where += f", dataset {df['dataset'].iloc[first]}"
                    where += ")"
                raise ValueError(
                    f"{what}: column {col!r} has {int(bad.sum())} NaN/inf value(s) out of "
                    f"{len(arr)}, first at {where}; clean or drop those events before training"
                )
        for col in ID_COLUMNS:
            if col in columns and not pd.api.types.is_integer_dtype(df[col]):
                arr = df[col].to_numpy(dtype=np.float64)
                if not np.all(arr == np.round(arr)):
                    raise ValueError(
                        f"{what}: column {col!r} must hold integers, got {df[col].dtype}"
                    )
        return df

    def _derive(self, df: Any) -> Any:
        """Add the derived inputs (e.g. ``mj1_over_mjj``) this model needs; see the schema."""
        if not isinstance(df, pd.DataFrame):
            return df  # _validate reports the type
        return with_derived_features(df, self.input_columns)

    def _blind(self, df: pd.DataFrame) -> pd.DataFrame:
        """Drop truth from what the method sees, unless it is the supervised reference."""
        if self.uses_truth or TRUTH_COLUMN not in df.columns:
            return df
        return df.drop(columns=[TRUTH_COLUMN])

    @staticmethod
    def _canonical_order(df: pd.DataFrame) -> pd.DataFrame:
        return df.sort_values(list(ID_COLUMNS), kind="mergesort").reset_index(drop=True)

    def _fit_columns(self) -> list[str]:
        cols = list(dict.fromkeys([*self.input_columns, RESONANT_VARIABLE, *ID_COLUMNS]))
        if self.uses_truth:
            cols.append(TRUTH_COLUMN)
        return cols

    # ----- fit / score --------------------------------------------------------------------------

    def fit(
        self: _M,
        data: pd.DataFrame,
        reference: pd.DataFrame | None = None,
        *,
        progress: Callable[[int, int], None] | None = None,
    ) -> _M:
        """Train one model per fold. ``progress(done, total)`` is called after each fold."""
        data = self._validate(self._derive(data), "data", self._fit_columns())
        if len(data) == 0:
            raise ValueError("data: no events")
        if self.uses_truth:
            labels = data[TRUTH_COLUMN].to_numpy()
            bad = ~np.isin(labels, (0, 1))
            if bad.any():
                raise ValueError(
                    f"data: {self.method} needs truth_label 0 or 1 on every event; "
                    f"{int(bad.sum())} event(s) have {sorted(set(labels[bad].tolist()))[:5]}"
                )
        if self.needs_reference:
            if reference is None:
                raise ValueError(f"{self.method} needs a reference (true background) sample")
            ref_cols = [c for c in self._fit_columns() if c != TRUTH_COLUMN]
            reference = self._validate(self._derive(reference), "reference", ref_cols)
            if not self.region.in_sr(reference[RESONANT_VARIABLE]).any():
                raise ValueError(f"reference: no events in the signal region {self.region}")
            reference = self._canonical_order(self._blind(reference))
        elif reference is not None:
            raise ValueError(f"{self.method} does not use a reference sample; do not pass one")

        mjj = data[RESONANT_VARIABLE].to_numpy(dtype=np.float64)
        n_sr, n_sb = int(self.region.in_sr(mjj).sum()), int(self.region.in_sb(mjj).sum())
        if self.needs_signal_region and n_sr == 0:
            raise ValueError(
                f"data: no events in the signal region {self.region} GeV "
                f"({len(mjj)} events with mjj in [{mjj.min():.0f}, {mjj.max():.0f}])"
            )
        if self.needs_sideband and n_sb == 0:
            raise ValueError(
                f"data: no sideband events around {self.region} GeV "
                f"({len(mjj)} events with mjj in [{mjj.min():.0f}, {mjj.max():.0f}])"
            )

        # Canonical event order: training then depends on the set of events, not on how an
        # executor happened to order the chunks (tree histograms sum in row order).
        data = self._canonical_order(self._blind(data))
        n_dup = int(data.duplicated(list(ID_COLUMNS)).sum())
        if n_dup:
            log.warning(
                "%d event(s) share (run, event) with another one; such events share a fold "
                "(harmless for distinct events, but a duplicated event would sit in one fold twice)",
                n_dup,
            )
        folds = kfold_assignments(data["run"], data["event"], self.n_folds, self.seed)
        val_fraction = float(getattr(self.config, "val_fraction", 0.2))
        is_val = validation_mask(data["run"], data["event"], val_fraction, self.seed)
        counts = np.bincount(folds, minlength=self.n_folds)
        if np.any(counts == 0):
            raise ValueError(f"data: {len(data)} events are too few for {self.n_folds} folds")

        self.fold_models = []
        self.summary = {}
        per_fold = []
        for k in range(self.n_folds):
            held_out = folds == k
            train = data[~held_out & ~is_val].reset_index(drop=True)
            val = data[~held_out & is_val].reset_index(drop=True)
            log.info(
                "%s fold %d/%d: %d train, %d validation, %d held out",
                self.method, k + 1, self.n_folds, len(train), len(val), int(held_out.sum()),
            )  # fmt: skip
            model = self._fit_fold(k, train, val, reference)
            if not isinstance(model, FoldModel):
                raise TypeError(f"{type(self).__name__}._fit_fold must return a FoldModel")
            self.fold_models.append(model)
            per_fold.append(
                {
                    "n_train": len(train),
                    "n_val": len(val),
                    "n_held_out": int(held_out.sum()),
                    "n_train_sr": int(self.region.in_sr(train[RESONANT_VARIABLE]).sum()),
                    "n_train_sb": int(self.region.in_sb(train[RESONANT_VARIABLE]).sum()),
                }
            )
            if progress is not None:
                progress(k + 1, self.n_folds)
        self.training_keys = training_key_set(data["run"], data["event"])
        self.training = {
            "n_events": len(data),
            "n_sr": n_sr,
            "n_sb": n_sb,
            "n_reference": None if reference is None else len(reference),
            "folds": per_fold,
        }
        return self

    def trained_mask(self, data: pd.DataFrame) -> np.ndarray | None:
        """Which rows of ``data`` the model trained on, by (run, event); None if not recorded."""
        if self.training_keys is None:
            return None
        data = self._validate(data, "data to match against the training events", ID_COLUMNS)
        return in_key_set(self.training_keys, data["run"], data["event"])

    def score(self, data: pd.DataFrame, mode: str = "kfold") -> np.ndarray:
        """Anomaly score of every row of ``data``.

        ``mode="kfold"``: each event is scored by the model of its own fold, which never trained
        on it (use on the training data itself, e.g. for the bump hunt). ``mode="ensemble"``: mean
        of all fold models (use on an independent test sample). ``mode="auto"``: k-fold for the
        events the model trained on, ensemble for the others
        (:func:`adhunt.provenance.score_auto`, which also says which event got which).
        """
        if not self.fitted:
            raise RuntimeError(f"{type(self).__name__}.score called before fit() or load()")
        if mode not in SCORE_MODES:
            raise ValueError(f"score mode must be one of {SCORE_MODES}, got {mode!r}")
        if mode == "auto":
            return score_auto(self, data)[0]
        if self.decorrelation is None:
            return self.raw_score(data, mode)
        data = self._validate(data, "data to score", [RESONANT_VARIABLE])
        raw = self.raw_score(data, mode)
        return self.decorrelation.apply(raw, data[RESONANT_VARIABLE].to_numpy(dtype=np.float64))

    def raw_score(self, data: pd.DataFrame, mode: str = "kfold") -> np.ndarray:
        """The method's own score, before any stored mjj decorrelation (modes as :meth:`score`)."""
        if not self.fitted:
            raise RuntimeError(f"{type(self).__name__}.score called before fit() or load()")
        if mode not in SCORE_MODES:
            raise ValueError(f"score mode must be one of {SCORE_MODES}, got {mode!r}")
        if mode == "auto":
            mask = self.trained_mask(data)
            mask = np.ones(len(data), dtype=bool) if mask is None else mask
            out = np.zeros(len(data), dtype=np.float64)
            if mask.any():
                out[mask] = self.raw_score(data[mask], "kfold")
            if (~mask).any():
                out[~mask] = self.raw_score(data[~mask], "ensemble")
            return out
        cols = list(self.input_columns) + (list(ID_COLUMNS) if mode == "kfold" else [])
        data = self._validate(self._derive(data), "data to score", list(dict.fromkeys(cols)))
        x = self._score_inputs(data)
        out = np.zeros(len(data), dtype=np.float64)
        if len(data) == 0:
            return out
        if mode == "ensemble":
            for model in self.fold_models:
                out += np.asarray(model.score(x), dtype=np.float64)
            return out / self.n_folds
        folds = kfold_assignments(data["run"], data["event"], self.n_folds, self.seed)
        for k, model in enumerate(self.fold_models):
            rows = folds == k
            if rows.any():
                out[rows] = np.asarray(model.score(x[rows]), dtype=np.float64)
        return out

    def _score_inputs(self, data: pd.DataFrame) -> np.ndarray:
        """The array handed to ``FoldModel.score``: the input columns (overridden for images)."""
        return data[list(self.input_columns)].to_numpy(dtype=np.float64)

    # ----- persistence -------------------------------------------------------------------------

    def describe(self) -> dict[str, Any]:
        """JSON-able description of the model (everything but the weights)."""
        return json_safe(
            {
                "method": self.method,
                "class": f"{type(self).__module__}:{type(self).__qualname__}",
                "adhunt_version": adhunt.__version__,
                "features": list(self.features),
                "input_columns": list(self.input_columns),
                "resonant_variable": RESONANT_VARIABLE,
                "region": dataclasses.asdict(self.region),
                "n_folds": self.n_folds,
                "seed": self.seed,
                "uses_truth": self.uses_truth,
                "config": config_to_dict(self.config),
                "summary": self.summary,
                "training": self.training,
                "decorrelation": None
                if self.decorrelation is None
                else self.decorrelation.describe(),
            }
        )

    def save(self, path: str | Path, extra: Mapping[str, Any] | None = None) -> Path:
        """Write the artifact directory ``path``; ``extra`` (e.g. provenance) is stored alongside."""
        if not self.fitted:
            raise RuntimeError(f"cannot save an unfitted {type(self).__name__}")
        if extra is not None:
            self.extra = json_safe(dict(extra))
        return save_artifact(path, *self.artifact_parts())

    def artifact_parts(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """``(tensors, metadata)`` of the artifact (nested by composite models such as combine)."""
        tensors: dict[str, Any] = {}
        folds = []
        for k, model in enumerate(self.fold_models):
            tensors.update(prefixed(f"fold{k}", model.tensors()))
            folds.append({"kind": model.kind, "metadata": json_safe(model.metadata())})
        if self.training_keys is not None:
            tensors[TRAINING_KEYS_TENSOR] = np.asarray(self.training_keys, dtype=np.uint32)
        if self.decorrelation is not None:
            tensors.update(prefixed(DECORRELATION_PREFIX, self.decorrelation.tensors()))
        metadata = self.describe()
        metadata["folds"] = folds
        metadata["extra"] = self.extra
        return tensors, metadata

    @classmethod
    def load(cls, path: str | Path) -> ResonantModel:
        """Load any saved model (dispatching on its method); verifies checksums, runs no code."""
        tensors, meta = load_artifact(path)
        return cls.from_artifact_parts(tensors, meta, path)

    @classmethod
    def from_artifact_parts(
        cls, tensors: Mapping[str, np.ndarray], meta: Mapping[str, Any], path: Any = "model"
    ) -> ResonantModel:
        """Inverse of :meth:`artifact_parts` (``path`` only names the artifact in errors)."""
        from adhunt.models.registry import get_method

        try:
            method_cls = get_method(meta["method"])
        except KeyError as exc:
            raise ArtifactError(f"{path}: unknown method {meta.get('method')!r}") from exc
        if cls is not ResonantModel and not issubclass(method_cls, cls):
            raise ArtifactError(f"{path} holds a {meta['method']} model, not {cls.__name__}")
        return method_cls._build_from_parts(tensors, meta, path)

    @classmethod
    def _build_from_parts(
        cls, tensors: Mapping[str, np.ndarray], meta: Mapping[str, Any], path: Any
    ) -> ResonantModel:
        """Build a model of this class from its artifact parts (composite models override)."""
        method_cls = cls
        try:
            region = SignalRegion(**meta["region"])
            config = config_from_dict(method_cls.config_class, meta["config"])
            obj = method_cls(meta["features"], region, meta["n_folds"], meta["seed"], config)
            if list(obj.input_columns) != list(meta["input_columns"]):
                raise ArtifactError(f"{path}: input columns differ from the saved ones")
            obj.fold_models = [
                fold_model_from_parts(f["kind"], unprefixed(f"fold{k}", tensors), f["metadata"])
                for k, f in enumerate(meta["folds"])
            ]
        except ArtifactError:
            raise
        except (KeyError, TypeError, ValueError) as exc:
            raise ArtifactError(f"{path}: inconsistent model metadata ({exc!r})") from exc
        if len(obj.fold_models) != obj.n_folds:
            raise ArtifactError(
                f"{path}: {len(obj.fold_models)} fold models for {obj.n_folds} folds"
            )
        obj.summary = dict(meta.get("summary") or {})
        obj.training = dict(meta.get("training") or {})
        obj.extra = dict(meta.get("extra") or {})
        keys = tensors.get(TRAINING_KEYS_TENSOR)
        obj.training_keys = None if keys is None else np.asarray(keys, dtype=np.uint32)
        obj.decorrelation = _load_decorrelation(tensors, meta, path)
        return obj

    def __repr__(self) -> str:
        state = "fitted" if self.fitted else "unfitted"
        return f"{type(self).__name__}(features={list(self.features)}, region={self.region}, n_folds={self.n_folds}, seed={self.seed}, {state})"


def _load_decorrelation(
    tensors: Mapping[str, np.ndarray], meta: Mapping[str, Any], path: Any
) -> Any:
    """The stored mjj decorrelation of an artifact, or None."""
    info = meta.get("decorrelation")
    if not info:
        return None
    from adhunt.models.decorrelation import Decorrelation

    try:
        return Decorrelation.from_parts(unprefixed(DECORRELATION_PREFIX, tensors), info)
    except (KeyError, TypeError, ValueError) as exc:
        raise ArtifactError(f"{path}: unreadable mjj decorrelation ({exc!r})") from exc

"""Tag N' Train (``tnt``): an outlier tagger on one jet bootstraps a weakly supervised classifier on
the other (Amram & Suarez, arXiv:2002.12376).

A resonance decaying to two jets makes BOTH jets anomalous, while in QCD the two jets' substructure
is (nearly) independent. So the events whose jet 2 looks most anomalous to a starting tagger (top
``signal_fraction`` by the tagger's jet-2 score) are enriched in signal, those whose jet 2 looks
most typical (bottom ``background_fraction``) are nearly pure background, and - by the
independence - the two samples have the same background distribution of jet 1. A CWoLa classifier
of the two samples on jet 1's inputs is then a monotonic function of jet 1's signal/background
likelihood ratio. The same with the jets swapped gives a classifier for jet 2.

Starting tagger: a saved ``ae``/``vae`` artifact (``starter``, any per-jet outlier model) or, by
default, an autoencoder trained on each fold's training events (``ae`` settings). With
``iterations > 1`` the classifiers of one round select the samples of the next. With
``require_window`` the signal-like events must also lie in the mjj window (the background-like
sample is not restricted; the classifiers see no mjj, but jet inputs correlated with mjj can
then sculpt). The classifiers are the CWoLa back-ends (``classifier``: hgb or mlp).

Event score: each jet's classifier output is rank-normalised with the quantiles of its scores on
the fold's training events (so the two jets' scores are comparable fractions), then combined by the
rule (default ``min``: both jets above the cut, the TNT paper's combination).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from adhunt.models import classifiers as _classifiers  # noqa: F401  (registers fold-model kinds)
from adhunt.models.autoencoders import Autoencoder, AutoencoderConfig
from adhunt.models.base import (
    FoldModel,
    TrainConfig,
    fold_model_from_parts,
    prefixed,
    unprefixed,
)
from adhunt.models.classifiers import fit_classifier
from adhunt.models.outliers import (
    EVENT_RULES,
    OutlierModel,
    check_choice,
    coerce_config,
    combine_jets,
)
from adhunt.schema import JET_FEATURES, RESONANT_VARIABLE

__all__ = ["TagNTrain", "TagNTrainConfig", "TagNTrainFold", "rank_normaliser"]

log = logging.getLogger(__name__)

#: Points of the stored quantile table of each jet classifier (its CDF for rank normalisation).
N_QUANTILES = 1001


@dataclass(frozen=True)
class TagNTrainConfig:
    """Tag N' Train settings."""

    starter: str | None = None  # path of a saved per-jet outlier model; None = train an ae per fold
    ae: AutoencoderConfig = dataclasses.field(default_factory=AutoencoderConfig)
    classifier: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    signal_fraction: float = 0.2  # top fraction by the other jet's score: signal-like
    background_fraction: float = 0.4  # bottom fraction by the other jet's score: background-like
    iterations: int = 1
    require_window: bool = False  # signal-like events must also lie in the mjj window
    rule: str = "min"  # rank-normalised per-jet scores -> event score
    val_fraction: float = 0.2

    def __post_init__(self) -> None:
        object.__setattr__(self, "ae", coerce_config(self.ae, AutoencoderConfig))
        object.__setattr__(self, "classifier", coerce_config(self.classifier, TrainConfig))
        check_choice("TagNTrainConfig.rule", self.rule, EVENT_RULES)
        s, b = self.signal_fraction, self.background_fraction
        if not (0 < s < 1 and 0 < b < 1 and s + b <= 1):
            raise ValueError(
                "TagNTrainConfig: signal_fraction and background_fraction must be in (0, 1) with "
                f"a sum <= 1, got {s} and {b}"
            )
        if not isinstance(self.iterations, int) or self.iterations < 1:
            raise ValueError(f"TagNTrainConfig.iterations must be >= 1, got {self.iterations!r}")
        if self.ae.jets == "event":
            raise ValueError("TagNTrainConfig.ae: the starting tagger must score each jet")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in [0, 1), got {self.val_fraction}")


def rank_normaliser(scores: np.ndarray, n: int = N_QUANTILES) -> np.ndarray:
    """Quantile table of ``scores``: ``np.interp(s, table, linspace(0, 1, n))`` is its CDF."""
    s = np.asarray(scores, dtype=np.float64)
    if len(s) == 0 or not np.all(np.isfinite(s)):
        raise ValueError("rank normalisation needs finite scores")
    return np.quantile(s, np.linspace(0.0, 1.0, n))


def _ranks(scores: np.ndarray, table: np.ndarray) -> np.ndarray:
    grid = np.linspace(0.0, 1.0, len(table))
    # Ties in the table (a classifier's flat regions): interp needs increasing x; average ranks.
    x, first = np.unique(table, return_index=True)
    last = len(table) - 1 - np.unique(table[::-1], return_index=True)[1]
    y = 0.5 * (grid[first] + grid[last])
    if len(x) == 1:
        return np.full(len(scores), 0.5)
    return np.interp(scores, x, y)


class TagNTrainFold(FoldModel):
    """The two jet classifiers of one fold and their rank-normalisation tables."""

    kind = "tnt"

    def __init__(
        self,
        classifiers: tuple[FoldModel, FoldModel],
        tables: tuple[np.ndarray, np.ndarray],
        width: int,
        rule: str,
        info: Mapping[str, Any] | None = None,
    ) -> None:
        check_choice("rule", rule, EVENT_RULES)
        if len(classifiers) != 2 or len(tables) != 2:
            raise ValueError("tnt fold needs one classifier and one quantile table per jet")
        self.classifiers = tuple(classifiers)
        self.tables = tuple(np.asarray(t, dtype=np.float64) for t in tables)
        for t in self.tables:
            if t.ndim != 1 or len(t) < 2 or not np.all(np.diff(t) >= 0):
                raise ValueError("tnt quantile tables must be non-decreasing 1-d arrays")
        self.width = int(width)
        self.rule = rule
        self.info = dict(info or {})

    def raw_jet_scores(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != 2 * self.width:
            raise ValueError(f"expected (events, {2 * self.width}) inputs, got {x.shape}")
        blocks = (x[:, : self.width], x[:, self.width :])
        return np.stack([c.score(b) for c, b in zip(self.classifiers, blocks, strict=True)], axis=1)

    def jet_scores(self, x: np.ndarray) -> np.ndarray:
        raw = self.raw_jet_scores(x)
        return np.stack([_ranks(raw[:, j], self.tables[j]) for j in (0, 1)], axis=1)

    def score(self, x: np.ndarray) -> np.ndarray:
        return combine_jets(self.jet_scores(x), self.rule)

    def tensors(self) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        for j, (clf, table) in enumerate(zip(self.classifiers, self.tables, strict=True)):
            out.update(prefixed(f"jet{j + 1}/clf", clf.tensors()))
            out[f"jet{j + 1}/quantiles"] = table
        return out

    def metadata(self) -> dict[str, Any]:
        return {
            "width": self.width,
            "rule": self.rule,
            "classifiers": [{"kind": c.kind, "metadata": c.metadata()} for c in self.classifiers],
            "info": self.info,
        }

    @classmethod
    def from_parts(
        cls, tensors: Mapping[str, np.ndarray], metadata: Mapping[str, Any]
    ) -> TagNTrainFold:
        clfs, tables = [], []
        for j, meta in enumerate(metadata["classifiers"]):
            part = unprefixed(f"jet{j + 1}", tensors)
            clfs.append(
                fold_model_from_parts(meta["kind"], unprefixed("clf", part), meta["metadata"])
            )
            tables.append(part["quantiles"])
        return cls(
            tuple(clfs), tuple(tables), metadata["width"], metadata["rule"], metadata.get("info")
        )


class TagNTrain(OutlierModel):
    """Tag N' Train: per-jet CWoLa classifiers bootstrapped from an outlier tagger."""

    method = "tnt"
    config_class = TagNTrainConfig
    default_features = JET_FEATURES
    per_jet_only = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._starter: OutlierModel | None = None

    @property
    def starter(self) -> OutlierModel | None:
        """The saved starting tagger (loaded on first use), or None for a fresh ae per fold."""
        path = self.config.starter
        if path is None:
            return None
        if self._starter is None:
            from adhunt.models.artifact import ArtifactError
            from adhunt.models.base import ResonantModel

            try:
                model = ResonantModel.load(Path(path))
            except ArtifactError as exc:
                raise ValueError(f"tnt starter: {exc}") from exc
            if not isinstance(model, OutlierModel) or model.layout is None:
                raise ValueError(
                    f"tnt starter {path} is a {model.method} model; it must score each jet "
                    "(an ae, vae or force model with per-jet inputs)"
                )
            self._starter = model
        return self._starter

    @property
    def table_columns(self) -> tuple[str, ...]:
        starter = self.starter
        extra = () if starter is None else starter.table_columns
        return tuple(dict.fromkeys([*super().table_columns, *extra]))

    def fit(self, data: pd.DataFrame, reference: pd.DataFrame | None = None, **kwargs: Any):
        if (
            self.config.require_window
            and isinstance(data, pd.DataFrame)
            and RESONANT_VARIABLE in data
        ):
            if not self.region.in_sr(data[RESONANT_VARIABLE]).any():
                raise ValueError(
                    f"data: no events in the window {self.region} GeV for tnt's require_window"
                )
        super().fit(data, reference, **kwargs)
        if self.config.starter is not None:
            starter = self.starter
            self.summary["starter"] = {
                "path": str(self.config.starter),
                "method": starter.method,
                "features": list(starter.features),
            }
        return self

    def _start_scores(
        self, k: int, train: pd.DataFrame, val: pd.DataFrame
    ) -> tuple[np.ndarray, np.ndarray]:
        """Per-jet scores (events, 2) of the starting tagger on the fold's train and val events."""
        starter = self.starter
        if starter is not None:
            # "auto": events the starter trained on get its held-out fold model.
            return starter.jet_scores(train, "auto"), (
                starter.jet_scores(val, "auto") if len(val) else np.zeros((0, 2))
            )
        ae = Autoencoder(self.features, self.region, n_folds=self.n_folds, seed=self.seed,
                         config=self.config.ae)  # fmt: skip
        fold = ae._fit_fold(k, train, val, None)
        x, xv = self.inputs(train), self.inputs(val)
        return fold.jet_scores(x), (fold.jet_scores(xv) if len(val) else np.zeros((0, 2)))

    def _fit_fold(
        self, k: int, train: pd.DataFrame, val: pd.DataFrame, reference: pd.DataFrame | None
    ) -> FoldModel:
        cfg: TagNTrainConfig = self.config
        s_train, s_val = self._start_scores(k, train, val)
        x = self.layout.split(self.inputs(train))
        xv = self.layout.split(self.inputs(val)) if len(val) else None
        in_sr = self.region.in_sr(train[RESONANT_VARIABLE].to_numpy(dtype=np.float64))
        in_sr_val = self.region.in_sr(val[RESONANT_VARIABLE].to_numpy(dtype=np.float64))
        info: dict[str, Any] = {"iterations": [], "n_train": len(train)}
        classifiers: list[FoldModel] = []
        for it in range(cfg.iterations):
            classifiers, rounds = [], []
            for jet in (0, 1):
                other = 1 - jet  # the other jet's score selects this jet's training samples
                hi, lo = np.quantile(
                    s_train[:, other], [1.0 - cfg.signal_fraction, cfg.background_fraction]
                )
                y, keep = self._labels(s_train[:, other], hi, lo, in_sr)
                if y.sum() == 0 or y.sum() == len(y):
                    raise ValueError(
                        f"tnt fold {k}, jet {jet + 1}: the selection left no "
                        f"{'signal' if y.sum() == 0 else 'background'}-like events"
                    )
                x_val = y_val = None
                if xv is not None:
                    yv, keep_v = self._labels(s_val[:, other], hi, lo, in_sr_val)
                    x_val, y_val = xv[jet][keep_v], yv
                clf = fit_classifier(
                    x[jet][keep], y, None, x_val, y_val,
                    seed=self.fold_seed(k, 10 * it + jet + 1), config=cfg.classifier,
                )  # fmt: skip
                classifiers.append(clf)
                rounds.append(
                    {"n_signal_like": int(y.sum()), "n_background_like": int((y == 0).sum())}
                )
            info["iterations"].append(rounds)
            s_train = np.stack([c.score(x[j]) for j, c in enumerate(classifiers)], axis=1)
            if xv is not None:
                s_val = np.stack([c.score(xv[j]) for j, c in enumerate(classifiers)], axis=1)
        tables = tuple(rank_normaliser(s_train[:, j]) for j in (0, 1))
        return TagNTrainFold(tuple(classifiers), tables, self.layout.width, cfg.rule, info)

    def _labels(
        self, score: np.ndarray, hi: float, lo: float, in_sr: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """(labels, mask) of the signal-like (1) and background-like (0) events."""
        signal_like = score >= hi
        if self.config.require_window:
            signal_like &= in_sr
        background_like = (score <= lo) & ~signal_like
        keep = signal_like | background_like
        return signal_like[keep].astype(np.int64), keep

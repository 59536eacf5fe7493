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
import math
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
    INPUT_KINDS,
    OutlierModel,
    check_choice,
    coerce_config,
    combine_jets,
)
from adhunt.schema import JET_FEATURES, RESONANT_VARIABLE

__all__ = [
    "ConvClassifierFold",
    "TagNTrain",
    "TagNTrainConfig",
    "TagNTrainFold",
    "fit_conv_classifier",
    "rank_normaliser",
]

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
    #: features: classifiers on feature columns (``classifier.backend``); images: convolutional
    #: classifiers (:class:`~adhunt.models.image_networks.ConvClassifier`) on the jet images,
    #: trained with the ``classifier`` torch settings, and a fresh starter is an image ae.
    inputs: str = "features"
    image_size: int | None = None  # images: pixels per side; None = taken from the training data

    def __post_init__(self) -> None:
        object.__setattr__(self, "ae", coerce_config(self.ae, AutoencoderConfig))
        object.__setattr__(self, "classifier", coerce_config(self.classifier, TrainConfig))
        check_choice("TagNTrainConfig.inputs", self.inputs, INPUT_KINDS)
        if self.inputs == "images" and (
            self.ae.inputs != "images" or self.ae.image_size != self.image_size
        ):
            ae = dataclasses.replace(self.ae, inputs="images", image_size=self.image_size)
            object.__setattr__(self, "ae", ae)
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
        x = np.asarray(x)
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
        ae_cfg = self.config.ae
        if self.images:
            ae_cfg = dataclasses.replace(ae_cfg, image_size=self.image_size)
        ae = Autoencoder(self.features, self.region, n_folds=self.n_folds, seed=self.seed,
                         config=ae_cfg)  # fmt: skip
        fold = ae._fit_fold(k, train, val, None)  # on images when the config's inputs are
        x, xv = self.inputs(train), self.inputs(val)
        return fold.jet_scores(x), (fold.jet_scores(xv) if len(val) else np.zeros((0, 2)))

    def _fit_fold(
        self, k: int, train: pd.DataFrame, val: pd.DataFrame, reference: pd.DataFrame | None
    ) -> FoldModel:
        cfg: TagNTrainConfig = self.config
        s_train, s_val = self._start_scores(k, train, val)
        width = self._width
        x = self._split(self.inputs(train))
        xv = self._split(self.inputs(val)) if len(val) else None
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
                fit = fit_conv_classifier if self.images else fit_classifier
                clf = fit(
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
        return TagNTrainFold(tuple(classifiers), tables, width, cfg.rule, info)

    @property
    def _width(self) -> int:
        """Inputs per jet: feature columns, or pixels of a jet image."""
        return int(self.image_size) ** 2 if self.images else self.layout.width

    def _split(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return x[:, : self._width], x[:, self._width :]

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


# --------------------------------------------------------------------------------------------
# Convolutional jet classifier (tnt with inputs="images")
# --------------------------------------------------------------------------------------------


def _conv_classifier(spec: Mapping[str, Any]) -> Any:
    from adhunt.models.image_networks import ConvClassifier

    return ConvClassifier(
        image_size=int(spec["image_size"]), hidden=int(spec["hidden"]),
        dropout=float(spec["dropout"]),
    )  # fmt: skip


class ConvClassifierFold(FoldModel):
    """Ensemble of :class:`~adhunt.models.image_networks.ConvClassifier` on one jet's images;
    inputs are rows of ``S * S`` pixels, the score the members' mean probability."""

    kind = "conv_classifier"

    def __init__(
        self,
        states: list[Mapping[str, np.ndarray]],
        spec: Mapping[str, Any],
        info: Mapping[str, Any] | None = None,
        device: str = "auto",
    ) -> None:
        from adhunt.models.classifiers import resolve_device
        from adhunt.models.outliers import load_state

        if not states:
            raise ValueError("conv classifier fold needs at least one member")
        self.spec, self.info = dict(spec), dict(info or {})
        self.device = resolve_device(device)
        self.nets = [
            load_state(_conv_classifier(self.spec), st, f"conv classifier member {m}")
            .to(self.device)
            .eval()
            for m, st in enumerate(states)
        ]

    def score(self, x: np.ndarray) -> np.ndarray:
        import torch

        size = int(self.spec["image_size"])
        x = np.asarray(x, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != size * size:
            raise ValueError(f"expected (jets, {size * size}) image pixels, got {x.shape}")
        out = np.zeros(len(x))
        bs = int(self.spec["score_batch_size"])
        with torch.no_grad():
            for start in range(0, len(x), bs):
                xb = torch.from_numpy(x[start : start + bs]).reshape(-1, 1, size, size)
                xb = xb.to(self.device)
                for net in self.nets:
                    out[start : start + len(xb)] += torch.sigmoid(net(xb)).double().cpu().numpy()
        return out / len(self.nets)

    def tensors(self) -> dict[str, np.ndarray]:
        from adhunt.models.outliers import network_state

        out: dict[str, np.ndarray] = {}
        for m, net in enumerate(self.nets):
            out.update(prefixed(f"member{m}", network_state(net)))
        return out

    def metadata(self) -> dict[str, Any]:
        return {"spec": self.spec, "n_members": len(self.nets), "info": self.info}

    @classmethod
    def from_parts(
        cls, tensors: Mapping[str, np.ndarray], metadata: Mapping[str, Any]
    ) -> ConvClassifierFold:
        states = [unprefixed(f"member{m}", tensors) for m in range(int(metadata["n_members"]))]
        return cls(states, metadata["spec"], metadata.get("info"))


def fit_conv_classifier(
    x: np.ndarray,
    y: np.ndarray,
    w: np.ndarray | None = None,
    x_val: np.ndarray | None = None,
    y_val: np.ndarray | None = None,
    w_val: np.ndarray | None = None,
    seed: int = 0,
    config: TrainConfig | None = None,
) -> ConvClassifierFold:
    """Train ``config.n_ensemble`` conv classifiers on jet-image rows ``x`` (labels 1 =
    signal-like) with the torch settings of ``config`` (epochs, batch_size, lr, weight_decay,
    patience, dropout, device, num_threads); BCE with the classes weighted to equal total weight
    when ``balance_classes``. Same signature as :func:`fit_classifier` (weights unsupported)."""
    import torch

    from adhunt.models.classifiers import _member_seed, resolve_device
    from adhunt.models.image_networks import IMAGE_SCORE_BATCH
    from adhunt.models.outliers import fit_network, network_state, seeded, torch_threads

    config = config or TrainConfig()
    config = dataclasses.replace(
        config, score_batch_size=min(config.score_batch_size, IMAGE_SCORE_BATCH)
    )
    if w is not None or w_val is not None:
        raise ValueError("the conv classifier takes no event weights")
    x = np.asarray(x, dtype=np.float32)
    y = np.asarray(y, dtype=np.float32)
    size = math.isqrt(x.shape[1])
    if size * size != x.shape[1]:
        raise ValueError(f"conv classifier inputs must be square images, got {x.shape[1]} pixels")
    n_pos = float(y.sum())
    if n_pos == 0 or n_pos == len(y):
        raise ValueError("conv classifier needs both classes")
    pos_weight = (len(y) - n_pos) / n_pos if config.balance_classes else 1.0
    device = resolve_device(config.device)
    spec = {
        "image_size": size, "hidden": int(config.hidden[0]), "dropout": float(config.dropout),
        "score_batch_size": int(config.score_batch_size),
    }  # fmt: skip

    def batch_loss(net: Any, xb: Any, yb: Any) -> Any:
        logits = net(xb.reshape(-1, 1, size, size))
        weight = torch.where(yb > 0.5, pos_weight, 1.0)
        bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, yb, reduction="none")
        return bce * weight

    if x_val is not None and len(x_val) == 0:
        x_val = y_val = None
    xv = None if x_val is None else np.asarray(x_val, dtype=np.float32)
    yv = None if y_val is None else np.asarray(y_val, dtype=np.float32)
    states, histories = [], []
    with torch_threads(config.num_threads):
        for m in range(config.n_ensemble):
            ms = _member_seed(seed, m)
            with seeded(ms, device):
                net = _conv_classifier(spec).to(device)
                history = fit_network(
                    net, batch_loss, x, y, xv, yv, config=config, seed=ms, device=device
                )
            states.append(network_state(net))
            histories.append(
                {"epochs": len(history["train_loss"]), "best_epoch": history["best_epoch"]}
            )
    return ConvClassifierFold(states, spec, {"history": histories}, device=config.device)

"""CATHODE: a sideband flow interpolated into the signal region, then a classifier data vs samples.

Hallin et al., arXiv:2109.00546. Per window: a conditional flow p(x | mjj) is trained on SIDEBAND events,
sampled at signal-region mjj values (drawn from a KDE of the SR mjj distribution), and a classifier
separates SR data from those background samples; its output approaches the likelihood ratio
p_data/p_bg in the SR, i.e. a monotonic function of the signal/background ratio.

The sideband flow never sees signal-region events, so by default ONE flow is trained per model (on
the sidebands of all events, early-stopped on the hashed validation subset) and shared by the k fold
classifiers: that is what makes CATHODE fit in minutes. `shared_flow=False` trains one per fold.

Also home of `FlowMethod`, the plumbing ANODE and R-ANODE share with CATHODE (sideband preprocessing
and flow, cached across folds).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from adhunt.models import classifiers as _classifiers  # noqa: F401  (registers fold-model kinds)
from adhunt.models.base import (
    FoldModel,
    ResonantModel,
    TrainConfig,
    fold_model_from_parts,
    prefixed,
    unprefixed,
)
from adhunt.models.classifiers import fit_classifier
from adhunt.models.preprocessing import LogitScaler, Pipeline, Standardizer, transform_from_dict
from adhunt.regions import SignalRegion, validation_mask
from adhunt.schema import RESONANT_VARIABLE

__all__ = ["Cathode", "CathodeConfig", "CathodeFold", "FlowMethod", "sample_sr_mjj"]

log = logging.getLogger(__name__)


def _nested(value: Any, cls: type) -> Any:
    """Nested configs may arrive as dicts (YAML/JSON); turn them into their dataclass."""
    if isinstance(value, dict):
        from adhunt.config import config_from_dict

        return config_from_dict(cls, value)
    if not isinstance(value, cls):
        raise TypeError(f"expected a {cls.__name__} or a dict, got {type(value).__name__}")
    return value


def _flow_config_cls() -> type:
    from adhunt.models.flows import FlowConfig

    return FlowConfig


@dataclass(frozen=True)
class CathodeConfig:
    """CATHODE settings: the sideband flow, the sampling and the SR classifier."""

    flow: Any = None  # FlowConfig; None = FlowConfig() defaults
    classifier: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    oversample: float = 4.0  # background samples per SR training event
    shared_flow: bool = True  # one sideband flow for all folds (it never sees SR events)
    keep_flow: bool = True  # store the flow in the artifact (diagnostics; scoring does not need it)
    logit_margin: float = 0.05  # LogitScaler margin (fraction of the SB range) before the logit
    kde_bandwidth: float | None = None  # GeV; None = Silverman's rule on SR mjj
    val_fraction: float = 0.2  # hashed validation subset (flow and classifier early stopping)

    def __post_init__(self) -> None:
        fc = _flow_config_cls()
        object.__setattr__(self, "flow", fc() if self.flow is None else _nested(self.flow, fc))
        object.__setattr__(self, "classifier", _nested(self.classifier, TrainConfig))
        if not self.oversample > 0:
            raise ValueError(f"CathodeConfig.oversample must be positive, got {self.oversample}")
        if not 0.0 < self.val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in (0, 1), got {self.val_fraction}")


def sample_sr_mjj(
    mjj: np.ndarray, n: int, region: SignalRegion, seed: int, bandwidth: float | None = None
) -> np.ndarray:
    """n values from a Gaussian KDE of the SR mjj values, truncated to the SR (seeded).

    A KDE rather than the raw values so that repeated (oversampled) conditioning values are not
    identical; truncation by redrawing keeps the samples inside the window.
    """
    m = np.asarray(mjj, dtype=np.float64)
    m = m[region.in_sr(m)]
    if len(m) == 0:
        raise ValueError(f"no SR mjj values in {region} to build the mjj KDE from")
    if bandwidth is None:
        sd = m.std() if len(m) > 1 else region.width / 10
        bandwidth = 1.06 * max(sd, 1e-6) * len(m) ** (-1 / 5)
    rng = np.random.default_rng(seed)
    out = np.empty(0)
    while len(out) < n:
        k = max(n - len(out), 1024)
        draw = rng.choice(m, size=k) + bandwidth * rng.standard_normal(k)
        out = np.concatenate([out, draw[region.in_sr(draw)]])
    return out[:n]


class FlowMethod(ResonantModel):
    """Shared plumbing of the flow-based methods: preprocessing + sideband flow, cached per model.

    `input_columns` are the features (CATHODE) or the features plus mjj (density ratio methods).
    Subclass configs need fields `flow`, `shared_flow`, `logit_margin`, `val_fraction`.
    """

    needs_sideband: ClassVar[bool] = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._all_data: pd.DataFrame | None = None
        self._shared: tuple[Pipeline, Any] | None = None
        #: Called as (epoch, train NLL, val NLL) during every flow fit (jobs show a bar).
        self.flow_progress: Callable[[int, float, float], None] | None = None

    def fit(self, data: pd.DataFrame, reference: pd.DataFrame | None = None, **kwargs: Any):
        """As `ResonantModel.fit`; the sideband flow is trained at the first fold and reused."""
        data = self._derive(data)
        # Keep only what a flow may see: never the truth label.
        cols = [c for c in (*self.features, RESONANT_VARIABLE, "run", "event") if c in data]
        self._all_data = data[cols] if isinstance(data, pd.DataFrame) else None
        self._shared = None
        self._flow_stats: list[dict[str, Any]] = []
        try:
            super().fit(data, reference, **kwargs)
        finally:
            self._all_data = None
            self._shared = None
        self.summary.update(self._flow_summary())
        return self

    def _flow_summary(self) -> dict[str, Any]:
        stats = self._flow_stats
        if not stats:
            return {}
        sideband = [s["val_nll"] for s in stats if s["what"].startswith("sideband")]
        return {
            # Over every flow trained (sideband, SR, signal), in training order.
            "flow_seconds": float(sum(s["seconds"] for s in stats)),
            "flow_epochs": [s["epochs"] for s in stats],
            "flow_best_epoch": [s["best_epoch"] for s in stats],
            "flow_n_train": [s["n_train"] for s in stats],
            # Validation NLL (nats/event, preprocessed coordinates) of the sideband flow(s).
            "flow_val_nll": float(np.mean(sideband)) if sideband else None,
        }

    def _x(self, frame: pd.DataFrame) -> np.ndarray:
        return frame[list(self.features)].to_numpy(dtype=np.float64)

    def _m(self, frame: pd.DataFrame) -> np.ndarray:
        return frame[RESONANT_VARIABLE].to_numpy(dtype=np.float64)

    def _sideband_flow(
        self, k: int, train: pd.DataFrame, val: pd.DataFrame
    ) -> tuple[Pipeline, Any]:
        """(preprocessing, sideband flow) for fold k: shared across folds unless configured not to."""
        cfg = self.config
        if cfg.shared_flow and self._shared is not None:
            return self._shared
        if cfg.shared_flow and self._all_data is not None:
            data = self._all_data
            is_val = validation_mask(data["run"], data["event"], cfg.val_fraction, self.seed)
            fit_frame, val_frame, seed = (
                data[~is_val],
                data[is_val],
                self.fold_seed(self.n_folds, 1),
            )  # "fold n_folds": the shared one
        else:
            fit_frame, val_frame, seed = train, val, self.fold_seed(k, 1)
        sb_fit = fit_frame[self.region.in_sb(self._m(fit_frame))]
        sb_val = val_frame[self.region.in_sb(self._m(val_frame))]
        if len(sb_fit) < 10 or len(sb_val) < 1:
            raise ValueError(
                f"{self.method} fold {k}: too few sideband events for the flow "
                f"({len(sb_fit)} training, {len(sb_val)} validation) around {self.region}"
            )
        pre = Pipeline([LogitScaler(margin=cfg.logit_margin), Standardizer()]).fit(self._x(sb_fit))
        sb_val = self.inside_range(pre, sb_val, f"fold {k} sideband validation")
        flow = self._train_flow(
            pre.transform(self._x(sb_fit)),
            self._m(sb_fit),
            pre.transform(self._x(sb_val)),
            self._m(sb_val),
            cfg.flow,
            seed,
            what=f"sideband flow (fold {k})" if not cfg.shared_flow else "sideband flow (shared)",
        )
        if cfg.shared_flow:
            self._shared = (pre, flow)
        return pre, flow

    def inside_range(self, pre: Pipeline, frame: pd.DataFrame, what: str) -> pd.DataFrame:
        """Events within the preprocessing's fitted range, for flow fits.

        The logit clips values beyond the sideband training range to its edge (~logit(eps)), far in
        the tails; a flow evaluated there returns arbitrarily small densities, so a handful of such
        events would dominate (and destabilise) a validation NLL. They are left out of flow fits,
        counted in the log, and still scored like any other event.
        """
        scaler = pre.steps[0]
        x = self._x(frame)
        ok = np.all((x >= scaler.low) & (x <= scaler.high), axis=1)
        if not ok.all():
            log.info("%s %s: %d of %d events outside the sideband range left out of the flow fit",
                     self.method, what, int((~ok).sum()), len(ok))  # fmt: skip
        return frame[ok]

    def _train_flow(self, x, m, x_val, m_val, flow_cfg, seed: int, what: str):
        from adhunt.models.flows import ConditionalFlow

        t0 = time.perf_counter()
        flow = ConditionalFlow(x.shape[1], flow_cfg, seed=seed)
        flow.fit(x, m, x_val, m_val, progress=self.flow_progress)
        h = flow.history
        self._flow_stats.append(
            {
                "what": what,
                "seconds": time.perf_counter() - t0,
                "epochs": len(h.val_loss),
                "best_epoch": h.best_epoch,
                "val_nll": h.best_val_loss,
                "n_train": len(x),
            }
        )
        log.info(
            "%s %s: %d events, %d epochs, val NLL %.4f, %.1f s",
            self.method, what, len(x), len(h.val_loss), h.best_val_loss, h.seconds,
        )  # fmt: skip
        return flow


class CathodeFold(FoldModel):
    """Preprocessing + SR classifier (+ the sideband flow, kept for diagnostics)."""

    kind = "cathode"

    def __init__(self, preprocessing: Pipeline, classifier: FoldModel, flow: Any = None) -> None:
        self.preprocessing = preprocessing
        self.classifier = classifier
        self.flow = flow

    def score(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(self.classifier.score(self.preprocessing.transform(x)), dtype=np.float64)

    def tensors(self) -> dict[str, np.ndarray]:
        out = prefixed("clf", self.classifier.tensors())
        if self.flow is not None:
            out.update(prefixed("flow", self.flow.tensors()))
        return out

    def metadata(self) -> dict[str, Any]:
        return {
            "preprocessing": self.preprocessing.to_dict(),
            "classifier": {"kind": self.classifier.kind, "metadata": self.classifier.metadata()},
            "flow": None if self.flow is None else self.flow.metadata(),
        }

    @classmethod
    def from_parts(
        cls, tensors: Mapping[str, np.ndarray], metadata: Mapping[str, Any]
    ) -> CathodeFold:
        from adhunt.models.flows import ConditionalFlow

        clf_meta = metadata["classifier"]
        clf = fold_model_from_parts(
            clf_meta["kind"], unprefixed("clf", tensors), clf_meta["metadata"]
        )
        flow = None
        if metadata.get("flow") is not None:
            flow = ConditionalFlow.from_parts(unprefixed("flow", tensors), metadata["flow"])
        pre = transform_from_dict(metadata["preprocessing"])
        return cls(pre, clf, flow)


class Cathode(FlowMethod):
    """CATHODE: classifier of SR data vs sideband-flow samples interpolated into the SR."""

    method = "cathode"
    config_class = CathodeConfig

    def _fit_fold(
        self, k: int, train: pd.DataFrame, val: pd.DataFrame, reference: pd.DataFrame | None
    ) -> FoldModel:
        cfg: CathodeConfig = self.config
        pre, flow = self._sideband_flow(k, train, val)
        sr_train = train[self.region.in_sr(self._m(train))]
        sr_val = val[self.region.in_sr(self._m(val))]
        if len(sr_train) < 2:
            raise ValueError(f"cathode fold {k}: only {len(sr_train)} SR training events")
        z_tr, z_va = self._samples(flow, sr_train, sr_val, k)
        x_data = pre.transform(self._x(sr_train))
        x = np.concatenate([x_data, z_tr])
        y = np.concatenate([np.ones(len(x_data), np.int64), np.zeros(len(z_tr), np.int64)])
        x_val = y_val = None
        if len(sr_val) and len(z_va):
            xv_data = pre.transform(self._x(sr_val))
            x_val = np.concatenate([xv_data, z_va])
            y_val = np.concatenate([np.ones(len(xv_data), np.int64), np.zeros(len(z_va), np.int64)])
        clf = fit_classifier(
            x, y, None, x_val, y_val, seed=self.fold_seed(k, 2), config=cfg.classifier
        )
        return CathodeFold(pre, clf, flow if cfg.keep_flow else None)

    def _samples(
        self, flow: Any, sr_train: pd.DataFrame, sr_val: pd.DataFrame, k: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Background samples (preprocessed coordinates) at KDE-drawn SR mjj, for train and val."""
        cfg: CathodeConfig = self.config
        out = []
        for part, frame in enumerate((sr_train, sr_val)):
            n = round(cfg.oversample * len(frame))
            if n == 0:
                out.append(np.empty((0, len(self.features))))
                continue
            seed = self.fold_seed(k, 10 + part)
            m = sample_sr_mjj(self._m(frame), n, self.region, seed, cfg.kde_bandwidth)
            z = flow.sample(m, seed=seed).astype(np.float64)
            finite = np.all(np.isfinite(z), axis=1)
            if not finite.all():
                log.warning(
                    "cathode fold %d: dropped %d non-finite flow samples", k, int((~finite).sum())
                )
                z = z[finite]
            out.append(z)
        return out[0], out[1]

"""mjj decorrelation of any model's score by quantile regression (``--decorrelate qr``).

A fitted :class:`Decorrelation` is stored in the model's artifact; once a model carries one,
``ResonantModel.score`` returns the decorrelated score ``u = F(raw score | mjj)`` in (0, 1)
instead of the raw score (``raw_score`` still gives the raw one), so ``adhunt score``,
``evaluate``, ``compare``, ``infer`` and ``scan`` all cut on it without knowing: a cut
``u > 1 - eps`` keeps a fraction ``eps`` of the background at every mjj, and thresholds
calibrated on a reference sample (``infer``, the scan's SR-efficiency cuts) become flat in mjj.
The regression itself is :func:`adhunt.quantiles.fit_quantile_curves` (pinball-loss Legendre
polynomials in log mjj, rearranged to be non-crossing; its docstring says why).

What the fit sees, and what that implies:

* the k-fold (held-out) raw scores of the events given, so the curves describe the scores the
  bump hunt cuts on, not the over-fitted scores of training events;
* by default (``fit_region="sidebands"``) only events outside the model's signal region: the
  curves are interpolated across the SR by the smooth polynomial. A signal in the SR therefore
  cannot pull the SR thresholds up (a curve fitted through the SR would partly absorb an excess
  of high scores there, making the cut signal-blind exactly where the signal is, and for a
  weakly supervised method such as CWoLa, whose scores in the SR are high *because* the SR holds
  the signal, it would erase what the classifier found). The price: the SR thresholds rely on
  the mjj dependence being smooth across the window, and any genuine SR-only background
  feature is not corrected. ``fit_region="all"`` fits every event (right for outlier detectors
  trained on signal-free control data, or for checks on signal-free samples);
* the same curves are applied to ensemble-mode scores (independent samples). The fold-mean
  score of an ensemble is slightly narrower than a single fold's, so there the kept fraction per
  mjj is close to, not exactly, ``eps``; its flatness in mjj is what matters and is kept.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from adhunt.quantiles import QuantileCurves, fit_quantile_curves
from adhunt.schema import RESONANT_VARIABLE

__all__ = ["DECORRELATIONS", "FIT_REGIONS", "Decorrelation", "QRConfig", "fit_decorrelation"]

log = logging.getLogger(__name__)

#: Values of ``--decorrelate``.
DECORRELATIONS = ("none", "qr")
FIT_REGIONS = ("sidebands", "all")


@dataclass(frozen=True)
class QRConfig:
    """Settings of the quantile regression (see :func:`adhunt.quantiles.fit_quantile_curves`)."""

    degree: int = 3  # Legendre degree in log mjj
    fit_region: str = "sidebands"  # events outside the SR ("sidebands") or all events ("all")
    min_tail_events: int = 30  # the tightest level keeps at least that many fit events above it
    max_events: int | None = 100_000  # fit on a seeded subset of at most that many events
    seed: int = 0

    def __post_init__(self) -> None:
        if self.fit_region not in FIT_REGIONS:
            raise ValueError(
                f"QRConfig.fit_region must be one of {FIT_REGIONS}, got {self.fit_region!r}"
            )
        if not 0 <= int(self.degree) <= 8:
            raise ValueError(f"QRConfig.degree must be in 0..8, got {self.degree!r}")
        if int(self.min_tail_events) < 1:
            raise ValueError(f"QRConfig.min_tail_events must be >= 1, got {self.min_tail_events}")


class Decorrelation:
    """A fitted mjj decorrelation: the quantile curves and how they were fitted."""

    method = "qr"

    def __init__(self, curves: QuantileCurves, config: QRConfig, fit: Mapping[str, Any]) -> None:
        self.curves = curves
        self.config = config
        self.fit = dict(fit)

    def apply(self, raw: np.ndarray, mjj: np.ndarray) -> np.ndarray:
        """Decorrelated score ``u = F(raw | mjj)`` of every event."""
        return self.curves.transform(raw, mjj)

    def threshold(self, mjj: np.ndarray, efficiency: float) -> np.ndarray:
        """Raw-score cut at each mjj that keeps ``efficiency`` of the background there."""
        return self.curves.threshold(mjj, efficiency)

    def tensors(self) -> dict[str, np.ndarray]:
        return self.curves.tensors()

    def describe(self) -> dict[str, Any]:
        """JSON record (stored as the artifact's ``metadata["decorrelation"]``)."""
        return {
            "method": self.method,
            "config": asdict(self.config),
            "fit": self.fit,
            "curves": self.curves.metadata(),
        }

    @classmethod
    def from_parts(
        cls, tensors: Mapping[str, np.ndarray], info: Mapping[str, Any]
    ) -> Decorrelation:
        if info.get("method") != cls.method:
            raise ValueError(f"unknown decorrelation method {info.get('method')!r}")
        curves = QuantileCurves.from_parts(tensors, info["curves"])
        return cls(curves, QRConfig(**info["config"]), info.get("fit") or {})

    def __repr__(self) -> str:
        return f"Decorrelation(qr, {self.curves.levels.size} levels, fit {self.fit})"


def fit_decorrelation(
    model: Any, data: pd.DataFrame, config: QRConfig | None = None
) -> Decorrelation:
    """Fit the QR decorrelation of ``model``'s k-fold raw scores on ``data`` and attach it.

    ``data``: normally the model's training table (every mjj, with ``run``/``event``); the
    events used are those outside the model's signal region (``fit_region="sidebands"``) or all.
    Returns the decorrelation, also set as ``model.decorrelation``.
    """
    config = config or QRConfig()
    if not isinstance(data, pd.DataFrame) or RESONANT_VARIABLE not in data.columns:
        raise ValueError(f"the decorrelation fit needs a table with a {RESONANT_VARIABLE} column")
    mjj = data[RESONANT_VARIABLE].to_numpy(dtype=np.float64)
    if config.fit_region == "sidebands":
        use = ~model.region.in_sr(mjj) & np.isfinite(mjj)
        where = f"outside the signal region {model.region}"
    else:
        use = np.isfinite(mjj)
        where = "at every mjj"
    n_use = int(use.sum())
    if n_use < 20 * config.min_tail_events:
        raise ValueError(
            f"the mjj decorrelation needs at least {20 * config.min_tail_events} events {where}, "
            f"the table has {n_use}"
        )
    table = data[use]
    raw = model.raw_score(table, mode="kfold")
    curves = fit_quantile_curves(
        raw,
        mjj[use],
        degree=config.degree,
        min_tail_events=config.min_tail_events,
        max_events=config.max_events,
        seed=config.seed,
    )
    fit = {"n_events": n_use, "region": where, "score_mode": "kfold"}
    decorrelation = Decorrelation(curves, config, fit)
    model.decorrelation = decorrelation
    log.info(
        "mjj decorrelation (qr): %d levels (tightest 1 - %.2g), degree %d, %d events %s",
        curves.levels.size, 1 - curves.levels[-1], config.degree, n_use, where,
    )  # fmt: skip
    return decorrelation

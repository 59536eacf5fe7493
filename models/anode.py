"""ANODE: likelihood ratio of two conditional flows, one on SR data and one on the sidebands.

Nachman & Shih, arXiv:2001.04990. R(x | m) = p_data(x | m) / p_bg(x | m): the data density is learned
on signal-region events, the background density on the sidebands and interpolated into the SR through
its mjj conditioning. Score = log p_SR(x | m) - log p_SB(x | m). Both flows work in the same
preprocessed coordinates, so the preprocessing Jacobian cancels in the ratio. Scoring needs both flows,
so both are saved. The sideband flow is shared across folds (it never sees SR events); the SR flow is
trained per fold on that fold's training events only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from adhunt.models.base import FoldModel, prefixed, unprefixed
from adhunt.models.cathode import FlowMethod, _flow_config_cls, _nested
from adhunt.models.preprocessing import Pipeline, transform_from_dict
from adhunt.schema import RESONANT_VARIABLE

__all__ = ["Anode", "AnodeConfig", "AnodeFold"]


@dataclass(frozen=True)
class AnodeConfig:
    """ANODE settings: the sideband flow and the signal-region flow."""

    flow: Any = None  # FlowConfig of the sideband flow; None = FlowConfig() defaults
    sr_flow: Any = None  # FlowConfig of the SR (data) flow; None = FlowConfig() defaults
    shared_flow: bool = True  # one sideband flow for all folds
    logit_margin: float = 0.05
    val_fraction: float = 0.2

    def __post_init__(self) -> None:
        fc = _flow_config_cls()
        for name in ("flow", "sr_flow"):
            value = getattr(self, name)
            object.__setattr__(self, name, fc() if value is None else _nested(value, fc))
        if not 0.0 < self.val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in (0, 1), got {self.val_fraction}")


class AnodeFold(FoldModel):
    """Preprocessing + sideband flow + SR flow; input columns are the features then mjj."""

    kind = "anode"

    def __init__(self, preprocessing: Pipeline, sb_flow: Any, sr_flow: Any) -> None:
        self.preprocessing = preprocessing
        self.sb_flow = sb_flow
        self.sr_flow = sr_flow

    def log_densities(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(log p_SR, log p_SB) in preprocessed coordinates; last column of x is mjj."""
        x = np.asarray(x, dtype=np.float64)
        z = self.preprocessing.transform(x[:, :-1])
        m = x[:, -1]
        return self.sr_flow.log_prob(z, m), self.sb_flow.log_prob(z, m)

    def score(self, x: np.ndarray) -> np.ndarray:
        log_sr, log_sb = self.log_densities(x)
        return log_sr - log_sb

    def tensors(self) -> dict[str, np.ndarray]:
        return {**prefixed("sb", self.sb_flow.tensors()), **prefixed("sr", self.sr_flow.tensors())}

    def metadata(self) -> dict[str, Any]:
        return {
            "preprocessing": self.preprocessing.to_dict(),
            "sb_flow": self.sb_flow.metadata(),
            "sr_flow": self.sr_flow.metadata(),
        }

    @classmethod
    def from_parts(
        cls, tensors: Mapping[str, np.ndarray], metadata: Mapping[str, Any]
    ) -> AnodeFold:
        from adhunt.models.flows import ConditionalFlow

        return cls(
            transform_from_dict(metadata["preprocessing"]),
            ConditionalFlow.from_parts(unprefixed("sb", tensors), metadata["sb_flow"]),
            ConditionalFlow.from_parts(unprefixed("sr", tensors), metadata["sr_flow"]),
        )


class Anode(FlowMethod):
    """ANODE: score = log p_SR(x | m) - log p_SB(x | m)."""

    method = "anode"
    config_class = AnodeConfig

    @property
    def input_columns(self) -> tuple[str, ...]:
        return (*self.features, RESONANT_VARIABLE)

    def _fit_fold(
        self, k: int, train: pd.DataFrame, val: pd.DataFrame, reference: pd.DataFrame | None
    ) -> FoldModel:
        cfg: AnodeConfig = self.config
        pre, sb_flow = self._sideband_flow(k, train, val)
        sr_train = self.inside_range(pre, train[self.region.in_sr(self._m(train))], f"fold {k} SR")
        sr_val = self.inside_range(pre, val[self.region.in_sr(self._m(val))], f"fold {k} SR val")
        if len(sr_train) < 10 or len(sr_val) < 1:
            raise ValueError(
                f"anode fold {k}: too few SR events for the SR flow "
                f"({len(sr_train)} training, {len(sr_val)} validation) in {self.region}"
            )
        sr_flow = self._train_flow(
            pre.transform(self._x(sr_train)),
            self._m(sr_train),
            pre.transform(self._x(sr_val)),
            self._m(sr_val),
            cfg.sr_flow,
            self.fold_seed(k, 3),
            what=f"SR flow (fold {k})",
        )
        return AnodeFold(pre, sb_flow, sr_flow)

"""Reference methods that bracket the data-driven ones: the idealized AD and the supervised classifier.

* Idealized anomaly detector (IAD): SR data versus a *true-background* SR sample (simulation
  truth). It is what CATHODE-like methods would reach with a perfect background template, so it
  is their upper reference.
* Supervised: signal versus background by truth label in the SR: the best any score can do.

Both use the same classifier back-ends and k-fold machinery as CWoLa, so differences between
methods come from the training samples only.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from adhunt.models.base import TRUTH_COLUMN, FoldModel, ResonantModel
from adhunt.models.classifiers import fit_classifier
from adhunt.regions import validation_mask
from adhunt.schema import RESONANT_VARIABLE

__all__ = ["IdealizedAD", "Supervised"]


def _sr_rows(frame: pd.DataFrame, model: ResonantModel) -> pd.DataFrame:
    return frame[model.region.in_sr(frame[RESONANT_VARIABLE].to_numpy(dtype=np.float64))]


class IdealizedAD(ResonantModel):
    """Classifier of SR data (label 1) against a true-background SR reference (label 0)."""

    method = "iad"
    needs_reference = True
    needs_sideband = False

    def _fit_fold(
        self, k: int, train: pd.DataFrame, val: pd.DataFrame, reference: pd.DataFrame | None
    ) -> FoldModel:
        if reference is None:  # fit() guarantees it; keep the hook safe on its own
            raise ValueError("iad needs a reference sample")
        cols = list(self.input_columns)
        ref = _sr_rows(reference, self)
        fraction = float(self.config.val_fraction)
        ref_val = validation_mask(ref["run"], ref["event"], fraction, self.seed)
        data_tr, data_va = _sr_rows(train, self), _sr_rows(val, self)

        def stack(data: pd.DataFrame, bkg: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
            x = np.concatenate([data[cols].to_numpy(np.float64), bkg[cols].to_numpy(np.float64)])
            y = np.concatenate([np.ones(len(data), np.int64), np.zeros(len(bkg), np.int64)])
            return x, y

        x, y = stack(data_tr, ref[~ref_val])
        if len(data_tr) == 0 or (~ref_val).sum() == 0:
            raise ValueError(f"iad fold {k}: no SR data or no SR reference events to train on")
        x_val = y_val = None
        if len(data_va) and ref_val.any():
            x_val, y_val = stack(data_va, ref[ref_val])
        return fit_classifier(x, y, None, x_val, y_val, seed=self.fold_seed(k), config=self.config)


class Supervised(ResonantModel):
    """Signal (truth 1) versus background (truth 0) in the SR: the fully supervised upper bound."""

    method = "supervised"
    uses_truth = True
    needs_sideband = False

    def _fit_fold(
        self, k: int, train: pd.DataFrame, val: pd.DataFrame, reference: pd.DataFrame | None
    ) -> FoldModel:
        cols = list(self.input_columns)
        tr, va = _sr_rows(train, self), _sr_rows(val, self)
        y = tr[TRUTH_COLUMN].to_numpy(np.int64)
        if y.sum() == 0 or y.sum() == len(y):
            raise ValueError(
                f"supervised fold {k}: SR training events have a single truth class "
                f"({len(y)} events, {int(y.sum())} signal)"
            )
        x_val = y_val = None
        if len(va):
            x_val, y_val = va[cols].to_numpy(np.float64), va[TRUTH_COLUMN].to_numpy(np.int64)
        return fit_classifier(
            tr[cols].to_numpy(np.float64),
            y,
            None,
            x_val,
            y_val,
            seed=self.fold_seed(k),
            config=self.config,
        )

"""CWoLa hunting: a classifier of signal-region versus sideband events, k-fold ensembled.

Classification Without Labels (Metodiev, Nachman, Thaler 2017): trained on two mixtures with
different signal fractions (SR: some signal, SB: ~none), the optimal classifier is a monotonic
function of the signal/background likelihood ratio, so no label is needed. The sidebands stand in
for the SR background, which is why the input features must be (nearly) uncorrelated with mjj;
mjj itself is never an input.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from adhunt.models.base import FoldModel, ResonantModel
from adhunt.models.classifiers import fit_classifier
from adhunt.regions import SignalRegion
from adhunt.schema import RESONANT_VARIABLE

__all__ = ["CWoLa", "labelled_arrays"]


def labelled_arrays(
    frame: pd.DataFrame, columns: list[str], region: SignalRegion
) -> tuple[np.ndarray, np.ndarray]:
    """``(x, y)`` of the SR (y = 1) and SB (y = 0) events of ``frame``; others are dropped."""
    mjj = frame[RESONANT_VARIABLE].to_numpy(dtype=np.float64)
    sr, sb = region.in_sr(mjj), region.in_sb(mjj)
    keep = sr | sb
    x = frame.loc[keep, columns].to_numpy(dtype=np.float64)
    return x, sr[keep].astype(np.int64)


class CWoLa(ResonantModel):
    """SR-vs-SB classifier; score = mean SR probability of the fold's ensemble."""

    method = "cwola"

    def _fit_fold(
        self, k: int, train: pd.DataFrame, val: pd.DataFrame, reference: pd.DataFrame | None
    ) -> FoldModel:
        cols = list(self.input_columns)
        x, y = labelled_arrays(train, cols, self.region)
        if y.sum() == 0 or y.sum() == len(y):
            raise ValueError(
                f"cwola fold {k}: training events lack the {'SR' if y.sum() == 0 else 'SB'} class"
            )
        x_val = y_val = None
        if len(val):
            x_val, y_val = labelled_arrays(val, cols, self.region)
        return fit_classifier(x, y, None, x_val, y_val, seed=self.fold_seed(k), config=self.config)

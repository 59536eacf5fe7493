"""Build a "data" sample: background events plus a chosen number of signal events.

The LHC Olympics R&D protocol: a fixed background sample with N signal events injected at random
(1000 by default, S/B ~ 0.6% in the SR). Truth labels are kept in the table for evaluation only;
the models' base class hides them from every method except the supervised reference.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np
import pandas as pd

from adhunt.regions import SignalRegion
from adhunt.schema import RESONANT_VARIABLE

__all__ = ["inject_columns", "inject_signal", "injection_summary"]

log = logging.getLogger(__name__)
TRUTH = "truth_label"


def inject_columns(background: pd.DataFrame, signal: pd.DataFrame, features: Any) -> list[str]:
    """The columns to keep on both tables before :func:`inject_signal`: the bookkeeping columns
    both have and the stored columns behind ``features`` (tables from elsewhere may hold other
    extras, which the injection would otherwise require of both)."""
    from adhunt.dijet import required_columns
    from adhunt.tables import BOOKKEEPING_COLUMNS

    both = [c for c in BOOKKEEPING_COLUMNS if c in background.columns and c in signal.columns]
    return list(dict.fromkeys([*both, *required_columns(features)]))


def inject_signal(
    background: pd.DataFrame, signal: pd.DataFrame, n_signal: int, seed: int
) -> pd.DataFrame:
    """``background`` plus ``n_signal`` events drawn without replacement from ``signal``.

    The draw depends only on ``seed`` and the order of ``signal``; rows keep their columns (the
    background's), signal rows are appended after the background rows.
    """
    for name, frame in (("background", background), ("signal", signal)):
        if not isinstance(frame, pd.DataFrame):
            raise TypeError(f"{name} must be a pandas DataFrame, got {type(frame).__name__}")
    if isinstance(n_signal, bool) or int(n_signal) != n_signal or n_signal < 0:
        raise ValueError(f"n_signal must be a non-negative integer, got {n_signal!r}")
    n_signal = int(n_signal)
    missing = [c for c in background.columns if c not in signal.columns]
    if missing:
        raise ValueError(f"signal table lacks column(s) {missing} of the background table")
    if n_signal > len(signal):
        raise ValueError(
            f"cannot inject {n_signal} signal events: the signal table has only {len(signal)}"
        )
    if TRUTH in background.columns and (background[TRUTH] == 1).any():
        n_bad = int((background[TRUTH] == 1).sum())
        raise ValueError(
            f"background table contains {n_bad} event(s) with truth_label == 1; "
            "split signal from background before injecting"
        )
    # A table without truth labels (all -1, unknown: adhunt.tables' default) is signal by its role.
    unlabelled = TRUTH in signal.columns and bool((signal[TRUTH] == -1).all())
    if TRUTH in signal.columns and not unlabelled and (signal[TRUTH] != 1).any():
        n_bad = int((signal[TRUTH] != 1).sum())
        raise ValueError(f"signal table contains {n_bad} event(s) with truth_label != 1")
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(len(signal), size=n_signal, replace=False))
    picked = signal.iloc[rows][list(background.columns)]
    if unlabelled and TRUTH in picked.columns:
        picked = picked.assign(**{TRUTH: np.ones(len(picked), dtype=picked[TRUTH].dtype)})
    out = pd.concat([background, picked], ignore_index=True)
    log.info(
        "injected %d of %d signal events into %d background events",
        n_signal,
        len(signal),
        len(background),
    )
    return out


def injection_summary(data: pd.DataFrame, region: SignalRegion) -> dict[str, Any]:
    """Signal and background counts in the SR (by truth), S/B and S/sqrt(B)."""
    if TRUTH not in data.columns:
        raise ValueError("injection_summary needs the truth_label column")
    sr = region.in_sr(data[RESONANT_VARIABLE].to_numpy(dtype=np.float64))
    truth = data[TRUTH].to_numpy()
    s, b = int(np.sum(sr & (truth == 1))), int(np.sum(sr & (truth == 0)))
    return {
        "n_events": len(data),
        "n_signal": int(np.sum(truth == 1)),
        "n_signal_sr": s,
        "n_background_sr": b,
        "s_over_b_sr": s / b if b else None,
        "s_over_sqrt_b_sr": s / math.sqrt(b) if b else None,
    }

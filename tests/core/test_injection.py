"""Signal injection with tables from elsewhere: unlabelled signal is signal by its role."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from adhunt.injection import inject_signal


def frame(n, truth, start=0):
    return pd.DataFrame(
        {"run": 1, "event": np.arange(start, start + n), "mjj": np.linspace(3000, 4000, n),
         "truth_label": np.full(n, truth, dtype=np.int32)}
    )  # fmt: skip


def test_unlabelled_signal_table_is_labelled_signal_when_injected():
    out = inject_signal(frame(50, -1), frame(20, -1, start=100), 5, seed=0)
    assert out["truth_label"].tolist() == [-1] * 50 + [1] * 5
    assert out["truth_label"].dtype == np.int32


def test_signal_table_mixing_labels_is_refused():
    mixed = pd.concat([frame(10, -1), frame(10, 0, start=10)], ignore_index=True)
    with pytest.raises(ValueError, match=r"20 event\(s\) with truth_label != 1"):
        inject_signal(frame(50, 0), mixed, 5, seed=0)

"""The provenance record: one writer, one reader, earlier untyped records still read; auto scoring."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from adhunt.provenance import (
    Injection,
    Provenance,
    ProvenanceError,
    in_key_set,
    make_provenance,
    provenance_extra,
    read_provenance,
    score_auto,
    training_key_set,
)


def test_record_round_trip_through_the_writer_and_reader(tmp_path):
    record = make_provenance(
        "scan", tmp_path / "features", ["qcd"],
        injection={"signal": tmp_path / "sig", "n_injected": 300, "seed": 4, "counts": {"n_signal_sr": 250}},
        reference=pd.DataFrame(), n_reference=10, config={"n_ensemble": 1},
    )  # fmt: skip
    extra = provenance_extra(record)
    back = read_provenance(extra)
    assert back == record
    assert back.features_dir == str(tmp_path / "features") and back.reference_dir is None
    assert back.injection == Injection(str(tmp_path / "sig"), 300, 4, None, {"n_signal_sr": 250})
    assert back.same_table(tmp_path / "features", ["qcd"])
    assert not back.same_table(tmp_path / "features", ["wprime"])
    assert read_provenance({}) is None
    in_memory = make_provenance("train", pd.DataFrame({"mjj": [1.0]}))
    assert in_memory.features_dir is None and not in_memory.same_table(tmp_path)


def test_earlier_untyped_records_are_read():
    train_v0 = {
        "command": "train", "features_dir": "/data/qcd", "datasets": ["qcd"],
        "injection": {"signal_dir": "/data/sig", "signal_datasets": ["wprime"], "n_injected": 600,
                      "seed": 0, "n_signal_sr": 500, "n_events": 10600},
        "reference_dir": "/data/ref", "n_reference": 4000, "config": {"backend": "hgb"},
    }  # fmt: skip
    record = read_provenance({"provenance": train_v0})
    assert record.features_dir == "/data/qcd" and record.reference_dir == "/data/ref"
    assert record.injection.signal_dir == "/data/sig" and record.injection.n_injected == 600
    assert record.injection.signal_datasets == ("wprime",)
    assert record.injection.counts == {"n_signal_sr": 500, "n_events": 10600}
    scan_v0 = {"command": "scan", "features": "/data/qcd", "datasets": ["qcd"],
               "injection": {"signal_dir": "/data/sig", "n_injected": 600, "seed": 1}}  # fmt: skip
    record = read_provenance({"provenance": scan_v0})
    assert record.command == "scan" and record.features_dir == "/data/qcd"
    assert record.injection.seed == 1
    frame_v0 = {"command": "scan", "features": "<DataFrame>"}
    assert read_provenance({"provenance": frame_v0}).features_dir is None
    with pytest.raises(ProvenanceError, match="command"):
        Provenance.from_dict({"command": "demo"})
    with pytest.raises(ProvenanceError, match="version"):
        Provenance.from_dict({"command": "train", "version": 99})


def test_key_set_membership():
    run, event = np.full(1000, 3), np.arange(1000)
    keys = training_key_set(run[::2], event[::2])
    assert keys.size == 500 and np.all(np.diff(keys.astype(np.float64)) >= 0)
    mask = in_key_set(keys, run, event)
    assert mask.tolist() == [i % 2 == 0 for i in range(1000)]
    assert not in_key_set(keys, np.full(1000, 4), event).any()  # another run: unseen
    assert not in_key_set(np.array([], dtype=np.uint32), run, event).any()


class _Stub:
    """Scores: 1 per row in kfold, 2 in ensemble; knows its training events (or not)."""

    def __init__(self, keys):
        self.keys = keys
        self.calls = []

    def trained_mask(self, data):
        return None if self.keys is None else in_key_set(self.keys, data["run"], data["event"])

    def score(self, data, mode="kfold"):
        self.calls.append((mode, len(data)))
        return np.full(len(data), 1.0 if mode == "kfold" else 2.0)


def test_score_auto_splits_seen_and_unseen_events(caplog):
    table = pd.DataFrame({"run": [1, 1, 2, 2], "event": [0, 1, 0, 1]})
    model = _Stub(training_key_set([1, 1], [0, 1]))
    scores, modes = score_auto(model, table)
    assert scores.tolist() == [1.0, 1.0, 2.0, 2.0]
    assert modes.tolist() == ["kfold", "kfold", "ensemble", "ensemble"]
    # a model that does not know its training events: k-fold for all (never biased), warned
    legacy = _Stub(None)
    scores, modes = score_auto(legacy, table)
    assert modes.tolist() == ["kfold"] * 4 and legacy.calls == [("kfold", 4)]
    assert "does not record which events it trained on" in caplog.text

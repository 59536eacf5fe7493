"""The one feature-table reader: foreign parquet tables in, adhunt chunk directories kept strict."""

from __future__ import annotations

import json
import logging
import zlib

import numpy as np
import pandas as pd
import pytest

from adhunt.schema import FEATURE_COLUMNS
from adhunt.tables import (
    FeatureTableError,
    chunk_filename,
    make_feature_frame,
    read_table,
    write_chunk,
)


def foreign(n, seed, **extra):
    """A table from elsewhere: only mjj and a few features, no bookkeeping columns."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "mjj": rng.uniform(2800, 4000, n),
            "mj1": rng.uniform(10, 300, n),
            "tau21_j1": rng.random(n),
        }
    )
    for name, values in extra.items():
        frame[name] = values
    return frame


def adhunt_chunks(root, dataset="qcd", n=10):
    feats = {c: np.linspace(1, 2, n) for c in FEATURE_COLUMNS[3:-1]}
    frame = make_feature_frame(dataset, np.full(n, 1), np.arange(n), np.zeros(n, int), feats)
    write_chunk(frame.iloc[:5], root, chunk_filename(dataset, "f.root", 0, 5))
    write_chunk(frame.iloc[5:], root, chunk_filename(dataset, "f.root", 5, n))
    return frame


def test_directory_of_any_names_recursively_with_documented_defaults(tmp_path, caplog):
    (tmp_path / "qcd").mkdir()
    (tmp_path / "qcd" / "deeper").mkdir()
    a, b, c = foreign(5, 1), foreign(3, 2), foreign(4, 3)
    a.to_parquet(tmp_path / "qcd" / "part-2.parquet")
    b.to_parquet(tmp_path / "qcd" / "deeper" / "part-0.parquet")
    c.to_parquet(tmp_path / "top.parquet")
    (tmp_path / ".hidden.parquet").write_bytes(b"half-written temporary")
    (tmp_path / "notes.txt").write_text("ignored")
    with caplog.at_level(logging.WARNING, logger="adhunt.tables"):
        table = read_table(tmp_path)
    assert "no 'event' column" in caplog.text and "row" in caplog.text
    # order: relative paths (qcd/deeper/part-0, qcd/part-2, top)
    assert np.array_equal(table["mjj"], np.r_[b["mjj"], a["mjj"], c["mjj"]])
    assert table["dataset"].tolist() == ["qcd"] * 8 + [tmp_path.name] * 4
    assert table["event"].tolist() == [1, 2, 3, 1, 2, 3, 4, 5, 1, 2, 3, 4]
    crc = {name: zlib.crc32(name.encode()) & 0x7FFFFFFF for name in ("part-0.parquet", "part-2.parquet", "top.parquet")}  # fmt: skip
    assert table["run"].tolist() == [crc["part-0.parquet"]] * 3 + [crc["part-2.parquet"]] * 5 + [crc["top.parquet"]] * 4  # fmt: skip
    assert (table["truth_label"] == -1).all() and table["truth_label"].dtype == np.int32
    assert table["run"].dtype == np.int64 and table["event"].dtype == np.int64
    assert not table.duplicated(["run", "event"]).any()
    pd.testing.assert_frame_equal(table, read_table(tmp_path))  # deterministic
    # a dataset selection, and an unknown one named
    assert len(read_table(tmp_path, ["qcd"])) == 8
    with pytest.raises(FeatureTableError, match=r"no dataset\(s\) \['wprime'\]"):
        read_table(tmp_path, ["wprime"])


def test_single_file_and_given_bookkeeping_columns(tmp_path):
    n = 6
    frame = foreign(n, 4, dataset=["sig"] * n, run=np.full(n, 2), event=np.arange(10, 16),
                    truth_label=np.ones(n, int))  # fmt: skip
    path = tmp_path / "wprime.parquet"
    frame.to_parquet(path)
    table = read_table(path)
    assert table["dataset"].tolist() == ["sig"] * n
    assert table["event"].tolist() == list(range(10, 16)) and (table["run"] == 2).all()
    assert (table["truth_label"] == 1).all()
    foreign(3, 5).to_parquet(tmp_path / "bare.parquet")
    assert read_table(tmp_path / "bare.parquet")["dataset"].tolist() == ["bare"] * 3
    with pytest.raises(FeatureTableError, match="not a parquet file"):
        (tmp_path / "x.csv").write_text("a,b\n")
        read_table(tmp_path / "x.csv")


def test_missing_column_names_the_column_and_the_file(tmp_path):
    foreign(5, 1).to_parquet(tmp_path / "a.parquet")
    foreign(5, 2).drop(columns=["tau21_j1"]).to_parquet(tmp_path / "b.parquet")
    with pytest.raises(FeatureTableError, match=r"b\.parquet lacks column\(s\) \['tau21_j1'\]"):
        read_table(tmp_path, columns=["mj1", "tau21_j1"])
    # mjj is always required
    foreign(5, 3).drop(columns=["mjj"]).to_parquet(tmp_path / "c.parquet")
    with pytest.raises(FeatureTableError, match=r"c\.parquet lacks column\(s\) \['mjj'\]"):
        read_table(tmp_path / "c.parquet")
    # only the requested features (plus bookkeeping) are read
    table = read_table(tmp_path / "a.parquet", columns=["mj1"])
    assert list(table.columns) == ["dataset", "run", "event", "mjj", "mj1", "truth_label"]


def test_files_that_mix_definitions_are_refused(tmp_path):
    foreign(5, 1).to_parquet(tmp_path / "a.parquet")
    foreign(5, 2, event=np.arange(5)).to_parquet(tmp_path / "b.parquet")
    with pytest.raises(FeatureTableError, match="mix definitions"):
        read_table(tmp_path)
    (tmp_path / "b.parquet").unlink()
    foreign(5, 2, extra_col=np.zeros(5)).to_parquet(tmp_path / "b.parquet")
    with pytest.raises(FeatureTableError, match=r"different columns.*extra_col"):
        read_table(tmp_path)
    foreign(5, 2, event=np.linspace(0, 1, 5)).to_parquet(tmp_path / "b.parquet")
    (tmp_path / "a.parquet").unlink()
    with pytest.raises(FeatureTableError, match=r"'event' of .*b\.parquet must hold integers"):
        read_table(tmp_path)


def test_adhunt_chunk_directories_keep_the_stale_chunk_protection(tmp_path):
    frame = adhunt_chunks(tmp_path)
    pd.testing.assert_frame_equal(read_table(tmp_path), frame, check_dtype=False)
    # a stray file inside an adhunt chunk directory is refused, not read as a second table
    foreign(3, 1).to_parquet(tmp_path / "qcd" / "part-2.parquet")
    with pytest.raises(FeatureTableError, match="unexpected file in feature directory"):
        read_table(tmp_path)
    (tmp_path / "qcd" / "part-2.parquet").unlink()
    # stale chunks of another chunksize overlap: refused, so no event is counted twice
    write_chunk(frame.iloc[:7], tmp_path, chunk_filename("qcd", "f.root", 0, 7))
    with pytest.raises(FeatureTableError, match="overlapping chunks"):
        read_table(tmp_path)


def test_features_config_marks_a_chunk_directory(tmp_path):
    (tmp_path / "qcd").mkdir()
    foreign(3, 1).to_parquet(tmp_path / "qcd" / "part-0.parquet")
    assert len(read_table(tmp_path)) == 3  # foreign: fine
    (tmp_path / "features_config.json").write_text(json.dumps({"features": {}}))
    with pytest.raises(FeatureTableError, match="unexpected file"):
        read_table(tmp_path)


def test_one_dataset_of_a_chunk_directory_keeps_the_protection(tmp_path):
    frame = adhunt_chunks(tmp_path, "qcd")
    adhunt_chunks(tmp_path, "wprime")
    pd.testing.assert_frame_equal(read_table(tmp_path / "qcd"), frame, check_dtype=False)
    write_chunk(frame.iloc[:7], tmp_path, chunk_filename("qcd", "f.root", 0, 7))
    with pytest.raises(FeatureTableError, match="overlapping chunks"):
        read_table(tmp_path / "qcd")
    with pytest.raises(FeatureTableError, match="holds only dataset 'wprime'"):
        read_table(tmp_path / "wprime", ["qcd"])


def test_default_keys_do_not_depend_on_which_level_is_read(tmp_path):
    """Train on a directory, score one of its subdirectories or files: same (run, event) keys, so
    the model recognises the events it trained on."""
    (tmp_path / "qcd").mkdir()
    foreign(4, 1).to_parquet(tmp_path / "qcd" / "part-0.parquet")
    foreign(3, 2).to_parquet(tmp_path / "qcd" / "part-1.parquet")
    whole = read_table(tmp_path)
    keys = ["dataset", "run", "event"]
    pd.testing.assert_frame_equal(read_table(tmp_path / "qcd")[keys], whole[keys])
    one = read_table(tmp_path / "qcd" / "part-1.parquet")
    assert one[["run", "event"]].values.tolist() == whole[["run", "event"]].values[4:].tolist()


@pytest.mark.parametrize("big", [False, True], ids=["packed-key", "large-event-numbers"])
def test_repeated_event_keys_are_found_against_brute_force(big, caplog):
    from adhunt.tables import DuplicateEventsError, check_unique_events

    rng = np.random.default_rng(5)
    n = 5000
    run = rng.integers(1, 4, n)
    event = rng.integers(0, 3000, n) + (2**40 if big else 0)
    frame = pd.DataFrame({"dataset": np.where(run == 1, "a", "b"), "run": run, "event": event})
    pairs = list(zip(run.tolist(), event.tolist(), strict=True))
    counts = {p: pairs.count(p) for p in set(pairs)}  # brute force, independent of pandas
    repeated = sorted(p for p, c in counts.items() if c > 1)
    assert repeated  # the draw does repeat keys
    with pytest.raises(DuplicateEventsError, match=rf"^x: {len(repeated)} \(run, event\) key"):
        check_unique_events(frame, "x")
    with caplog.at_level(logging.WARNING):
        assert check_unique_events(frame, "x", allow_duplicates=True) == len(repeated)
    assert "--allow-duplicates" in caplog.text
    unique = frame.drop_duplicates(["run", "event"])
    assert check_unique_events(unique, "x") == 0


def test_same_named_files_without_keys_are_refused_as_duplicates(tmp_path):
    """Default keys are (CRC-32 of the file name, row): two part0.parquet share them."""
    for name in ("qcd", "sig"):
        (tmp_path / name).mkdir()
        pd.DataFrame({"mjj": [3000.0, 3100.0], "mj1": [1.0, 2.0]}).to_parquet(
            tmp_path / name / "part0.parquet"
        )
    with pytest.raises(FeatureTableError, match=r"2 \(run, event\) key.*give them run and event"):
        read_table(tmp_path, columns=["mj1"])
    assert len(read_table(tmp_path, columns=["mj1"], allow_duplicates=True)) == 4

"""The run summary record: counts, round trip through its file, and the retry checks."""

from __future__ import annotations

import pytest

from adhunt.runsummary import (
    FailedChunk,
    RunSummary,
    SummaryError,
    check_retry,
    dataset_summary,
    read_summary,
    retried,
    write_summary,
)


def make(tmp_path):
    a, b, c = (str(tmp_path / n) for n in ("a.root", "b.root", "c.root"))
    for name in (a, b):
        open(name, "w").close()
    qcd = dataset_summary(
        {a: 100, b: 50},
        done=[(a, 0, 40), (a, 40, 80), (b, 0, 40)],
        failed=[FailedChunk(a, 80, 100, "broken basket"), FailedChunk(c, 0, None, "not found")],
        chunks=[(b, 40, 50)],  # pending (an interrupted run)
    )
    from adhunt.manifest import file_identity

    inputs = {p: file_identity(p) for p in (a, b)}
    return RunSummary("features", {"qcd": qcd}, "fp", inputs), (a, b, c)


def test_counts(tmp_path):
    summary, (a, _, c) = make(tmp_path)
    qcd = summary.datasets["qcd"]
    assert (qcd.events_in_fileset, qcd.events_processed) == (150, 120)
    assert (qcd.chunks_expected, qcd.chunks_done, qcd.chunks_failed) == (6, 3, 2)
    assert qcd.unknown_files == 1  # c: entries unknown
    assert retried(summary, "qcd", a, 80, 100) and not retried(summary, "qcd", a, 0, 40)
    assert retried(summary, "qcd", c, 0, 1000)  # a whole file: all its chunks
    assert not retried(summary, "other", a, 80, 100)


def test_round_trip(tmp_path):
    summary, _ = make(tmp_path)
    write_summary(tmp_path, summary)
    back = read_summary(tmp_path)
    assert back == summary and back.to_dict() == summary.to_dict()
    with pytest.raises(SummaryError, match="no run summary"):
        read_summary(tmp_path / "elsewhere")
    (tmp_path / "run_summary.json").write_text('{"format": "x"}')
    with pytest.raises(SummaryError, match="unreadable run summary"):
        read_summary(tmp_path)


def test_retry_checks(tmp_path):
    summary, (a, b, c) = make(tmp_path)
    from adhunt.manifest import file_identity

    ids = {p: file_identity(p) for p in (a, b)}
    files = {"qcd": [a, b, c]}
    check_retry(summary, "features", files, ids, "fp")  # the recorded run: accepted
    cases = [
        (("infer", files, ids, "fp"), "not `adhunt infer`"),
        (("features", {"qcd": [a, b, c], "sig": []}, ids, "fp"), "datasets"),
        (("features", files, ids, "other"), "configuration differs"),
        (("features", {"qcd": [a, c]}, ids, "fp"), "is not in the fileset"),
        (("features", {"qcd": [a, b, c, str(tmp_path / "d.root")]}, ids, "fp"), "not in the rec"),
        (("features", files, {**ids, a: {**ids[a], "size": 1}}, "fp"), "changed since"),
    ]
    for args, message in cases:
        with pytest.raises(SummaryError, match=message):
            check_retry(summary, *args)
    for s in summary.datasets.values():
        s.failed.clear()
    with pytest.raises(SummaryError, match="nothing to retry"):
        check_retry(summary, "features", files, ids, "fp")

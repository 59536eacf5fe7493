"""The run summary of ``adhunt features`` / ``adhunt infer``: per dataset, the events the fileset
holds and the events processed, the chunks expected, done and failed, and every failed chunk with
its reason.

Written as ``<output_dir>/run_summary.json`` (through :func:`adhunt.config.write_json`) and read
back by :func:`read_summary`; ``--retry-failed`` reads it to process only the failed chunks. For a
feature directory it is a view of the manifest (:func:`summary_from_manifest`): the manifest stays
the one truth of what is done, the summary only adds the totals a person wants to read.

A failed chunk is ``(file, start, stop, reason)``; a whole file that could not be used (missing,
unreadable header, missing branches) has ``start = 0`` and ``stop = None`` (its entries are
unknown): a retry processes all of its chunks.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SUMMARY_NAME = "run_summary.json"
SUMMARY_FORMAT = "adhunt-run-summary/1"


class SummaryError(ValueError):
    """No summary, an unreadable one, or a retry it cannot serve."""


@dataclass(frozen=True)
class FailedChunk:
    """One chunk (or whole file: ``stop`` None) that was skipped, and why."""

    file: str
    start: int
    stop: int | None
    reason: str

    @property
    def whole_file(self) -> bool:
        return self.stop is None

    def covers(self, filename: str, start: int, stop: int) -> bool:
        """Whether the chunk ``[start, stop)`` of ``filename`` is this failure."""
        if filename != self.file:
            return False
        return self.whole_file or (start, stop) == (self.start, self.stop)

    def label(self) -> str:
        entries = "all entries" if self.whole_file else f"entries {self.start}-{self.stop}"
        return f"{self.file} ({entries})"


@dataclass
class DatasetSummary:
    """The counts of one dataset (see the module doc)."""

    events_in_fileset: int = 0
    events_processed: int = 0
    chunks_expected: int = 0
    chunks_done: int = 0
    failed: list[FailedChunk] = field(default_factory=list)
    #: files whose entries are unknown (unreadable): not in ``events_in_fileset``
    unknown_files: int = 0

    @property
    def chunks_failed(self) -> int:
        return len(self.failed)


@dataclass
class RunSummary:
    """Every dataset of one run, plus what identifies the run (``command``; ``fingerprint``: the
    configuration's hash; ``inputs``: input file -> identity), so a retry can refuse another run's
    summary. Nothing in it depends on timing: a resumed run writes the same bytes as an
    uninterrupted one."""

    command: str
    datasets: dict[str, DatasetSummary] = field(default_factory=dict)
    fingerprint: str = ""
    inputs: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def failed(self) -> list[tuple[str, FailedChunk]]:
        return [(d, f) for d, s in self.datasets.items() for f in s.failed]

    @property
    def events_processed(self) -> int:
        return sum(s.events_processed for s in self.datasets.values())

    def to_dict(self) -> dict[str, Any]:
        datasets = {}
        for name, s in sorted(self.datasets.items()):
            data = dataclasses.asdict(s)
            data["chunks_failed"] = s.chunks_failed
            datasets[name] = data
        return {
            "format": SUMMARY_FORMAT,
            "command": self.command,
            "fingerprint": self.fingerprint,
            "inputs": dict(sorted(self.inputs.items())),
            "datasets": datasets,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunSummary:
        if data.get("format") != SUMMARY_FORMAT:
            raise ValueError(f"unknown format {data.get('format')!r}")
        datasets = {}
        for name, d in data["datasets"].items():
            failed = [
                FailedChunk(
                    str(f["file"]),
                    int(f["start"]),
                    None if f["stop"] is None else int(f["stop"]),
                    str(f["reason"]),
                )
                for f in d.get("failed", [])
            ]
            datasets[name] = DatasetSummary(
                events_in_fileset=int(d["events_in_fileset"]),
                events_processed=int(d["events_processed"]),
                chunks_expected=int(d["chunks_expected"]),
                chunks_done=int(d["chunks_done"]),
                failed=failed,
                unknown_files=int(d.get("unknown_files", 0)),
            )
        return cls(
            command=str(data["command"]),
            datasets=datasets,
            fingerprint=str(data.get("fingerprint", "")),
            inputs={k: dict(v) for k, v in (data.get("inputs") or {}).items()},
        )


def write_summary(directory: str | Path, summary: RunSummary) -> Path:
    """Write ``run_summary.json`` atomically."""
    from adhunt.config import write_json

    return write_json(Path(directory) / SUMMARY_NAME, summary.to_dict())


def read_summary(directory: str | Path) -> RunSummary:
    """The summary of an output directory; :class:`SummaryError` when there is none or it cannot
    be read."""
    path = Path(directory) / SUMMARY_NAME
    if not path.is_file():
        raise SummaryError(f"no run summary {path}: nothing to retry (run without --retry-failed)")
    try:
        return RunSummary.from_dict(json.loads(path.read_text()))
    except (ValueError, KeyError, TypeError) as err:
        raise SummaryError(f"unreadable run summary {path}: {err}") from err


def dataset_summary(
    entries: Mapping[str, int],
    done: Iterable[tuple[str, int, int]],
    failed: Iterable[FailedChunk],
    chunks: Iterable[tuple[str, int, int]] = (),
) -> DatasetSummary:
    """The counts of one dataset from its readable input files' ``entries``, its ``done`` chunks
    ``(file, start, stop)``, its failures (whole files among them count as unknown entries, and
    as one chunk each) and the ``chunks`` it expects besides (an interrupted run's pending
    ones)."""
    done = list(done)
    failed = list(failed)
    whole = [f for f in failed if f.whole_file and f.file not in entries]
    expected = {tuple(c) for c in chunks} | {tuple(c) for c in done}
    expected |= {(f.file, f.start, f.stop) for f in failed}
    return DatasetSummary(
        events_in_fileset=sum(int(n) for n in entries.values()),
        events_processed=sum(b - a for _, a, b in done),
        chunks_expected=len(expected),
        chunks_done=len(done),
        failed=failed,
        unknown_files=len(whole),
    )


def summary_from_manifest(manifest: Any, datasets: Iterable[str]) -> RunSummary:
    """The summary of a feature directory's ``datasets``: a view of its manifest
    (:class:`adhunt.manifest.Manifest`): done chunks, failed chunks, input entries."""
    from adhunt.manifest import fingerprint

    out: dict[str, DatasetSummary] = {}
    inputs: dict[str, dict[str, Any]] = {}
    fps = set()
    for name in datasets:
        record = manifest.datasets.get(name)
        if record is None:
            continue
        fps.add(record.fingerprint)
        entries = {i["path"]: int(i.get("entries", 0)) for i in record.inputs}
        for i in record.inputs:
            inputs[i["path"]] = {k: v for k, v in i.items() if k in ("path", "size", "mtime_ns")}
        failed = [FailedChunk(f[0], int(f[1]), f[2], f[3]) for f in record.failed]
        out[name] = dataset_summary(entries, record.done, failed, record.chunks)
    fp = fingerprint({"datasets": sorted(fps)}) if fps else ""
    return RunSummary("features", out, fp, inputs)


def summary_table(summary: RunSummary, title: str) -> Any:
    """A rich table: per dataset, events processed / in the fileset, chunks done / expected and
    failed chunks."""
    from rich.table import Table

    table = Table(title=title)
    for column in ("dataset", "events processed", "in fileset", "chunks done", "failed"):
        table.add_column(column, justify="left" if column == "dataset" else "right")
    for name, s in summary.datasets.items():
        fileset = str(s.events_in_fileset)
        if s.unknown_files:
            fileset += f" + {s.unknown_files} unreadable file(s)"
        table.add_row(
            name,
            str(s.events_processed),
            fileset,
            f"{s.chunks_done}/{s.chunks_expected}",
            str(s.chunks_failed),
        )
    return table


def check_retry(
    summary: RunSummary,
    command: str,
    files: Mapping[str, Iterable[str]],
    identities: Mapping[str, Mapping[str, Any]],
    fingerprint: str,
) -> None:
    """Refuse (:class:`SummaryError`, one line) a ``--retry-failed`` that the recorded run cannot
    serve: another command, nothing failed, other datasets or input files, an input file changed
    since (size, mtime), or another configuration (``fingerprint``)."""
    if summary.command != command:
        raise SummaryError(
            f"the run summary is of `adhunt {summary.command}`, not `adhunt {command}`"
        )
    if not summary.failed:
        raise SummaryError("the recorded run has no failed chunks: nothing to retry")
    if set(files) != set(summary.datasets):
        raise SummaryError(
            f"the fileset's datasets {sorted(files)} differ from the recorded run's "
            f"{sorted(summary.datasets)}; rerun without --retry-failed"
        )
    if fingerprint != summary.fingerprint:
        raise SummaryError(
            "the configuration differs from the recorded run's; rerun without --retry-failed"
        )
    whole = {_resolved(f.file) for _, f in summary.failed if f.whole_file}
    listed = {_resolved(name): name for names in files.values() for name in names}
    for path, name in sorted(listed.items()):
        recorded = summary.inputs.get(path)
        if recorded is None and path not in whole:
            raise SummaryError(
                f"input {name} is not in the recorded run; rerun without --retry-failed"
            )
        now = identities.get(name)
        if recorded is not None and now is not None and dict(now) != recorded:
            raise SummaryError(
                f"input {name} changed since the recorded run (size/mtime {recorded.get('size')}/"
                f"{recorded.get('mtime_ns')} then, {now.get('size')}/{now.get('mtime_ns')} now); "
                "rerun without --retry-failed"
            )
    gone = sorted(set(summary.inputs) - set(listed))
    if gone:
        raise SummaryError(
            f"input {gone[0]} of the recorded run is not in the fileset; rerun without "
            "--retry-failed"
        )


def _resolved(name: str) -> str:
    """The key of an input file in :attr:`RunSummary.inputs` (the manifest's resolved path)."""
    return name if "://" in name else str(Path(name).resolve())


def retried(summary: RunSummary, dataset: str, filename: str, start: int, stop: int) -> bool:
    """Whether the chunk is one of the recorded run's failures (a retry processes it)."""
    s = summary.datasets.get(dataset)
    return s is not None and any(f.covers(filename, start, stop) for f in s.failed)

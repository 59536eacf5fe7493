"""Benchmark inputs cut from existing event files: N-event files, concatenated or sliced.

Why: the memory and scaling benchmarks need files of a given size (100k- and 200k-event files
for 100k-event chunks; many small equal files for equal chunks) and generating events again
costs hours of Pythia. Events are read and written with ``adhunt.rootio`` (the one on-disk
schema), and every built file is checked: same branches and types as its sources, entries add
up, and its first and last event numbers are the sources' (nothing dropped or repeated).
Built files are cached under ``<repo>/.cache/bench/built/`` by a key of the sources (path,
size, mtime) and the size asked for.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _segments(sources: list[str], events_per_file: int, n_files: int):
    """[(source, start, stop), ...] per output file: sources consumed in order."""
    import uproot

    sizes = []
    for name in sources:
        with uproot.open(name) as handle:
            sizes.append(int(handle["Events"].num_entries))
    if sum(sizes) < events_per_file * n_files:
        raise ValueError(
            f"{n_files} file(s) of {events_per_file} events need {events_per_file * n_files} "
            f"events; the sources hold {sum(sizes)} ({', '.join(sources)})"
        )
    out, source, position = [], 0, 0
    for _ in range(n_files):
        need, parts = events_per_file, []
        while need:
            take = min(need, sizes[source] - position)
            parts.append((sources[source], position, position + take))
            need -= take
            position += take
            if position == sizes[source]:
                source, position = source + 1, 0
        out.append(parts)
    return out


def build_files(
    sources: list[str], events_per_file: int, n_files: int, cache: Path | None = None
) -> list[str]:
    """``n_files`` files of ``events_per_file`` events each, the sources' events in order.

    Checks each file against its sources (branch names and types, entries, event numbers at both
    ends) and raises ValueError naming the file when something differs.
    """
    import uproot

    from adhunt.rootio import read_events, write_events

    sources = [str(Path(s).resolve()) for s in sources]
    identity = [(s, os.stat(s).st_size, os.stat(s).st_mtime_ns) for s in sources]
    key = hashlib.sha256(json.dumps([identity, events_per_file]).encode()).hexdigest()[:12]
    directory = (cache or REPO / ".cache" / "bench" / "built") / f"{events_per_file}-{key}"
    directory.mkdir(parents=True, exist_ok=True)
    with uproot.open(sources[0]) as handle:
        types = handle["Events"].typenames()
    out = []
    for i, parts in enumerate(_segments(sources, events_per_file, n_files)):
        path = directory / f"events_{events_per_file}_{i:03d}.root"
        if not path.exists():
            print(f"building {path} from {len(parts)} segment(s) ...", flush=True)
            write_events(path, (read_events(s, a, b) for s, a, b in parts))
        _check(path, parts, events_per_file, types)
        out.append(str(path))
    return out


def _check(path: Path, parts: list, events_per_file: int, types: dict) -> None:
    import uproot

    with uproot.open(path) as handle:
        tree = handle["Events"]
        if tree.typenames() != types:
            raise ValueError(
                f"{path}: branches {tree.typenames()} differ from the sources' {types}"
            )
        if tree.num_entries != events_per_file:
            raise ValueError(f"{path}: {tree.num_entries} entries, expected {events_per_file}")
        ends = tree["event"].array(library="np", entry_start=0, entry_stop=1)
        last = tree["event"].array(library="np", entry_start=events_per_file - 1)
    (first_source, first_start, _), (last_source, _, last_stop) = parts[0], parts[-1]
    with uproot.open(first_source) as handle:
        want_first = handle["Events"]["event"].array(
            library="np", entry_start=first_start, entry_stop=first_start + 1
        )
    with uproot.open(last_source) as handle:
        want_last = handle["Events"]["event"].array(
            library="np", entry_start=last_stop - 1, entry_stop=last_stop
        )
    if ends[0] != want_first[0] or last[0] != want_last[0]:
        raise ValueError(f"{path}: first/last event numbers differ from its sources'")


def cached_sources() -> list[str]:
    """The 8 x 50k-event QCD files of the main checkout's cache, when present (else [])."""
    for root in (REPO, Path("/work/main")):
        found = sorted((root / ".cache" / "bench" / "qcd400k").glob("qcd_s7_*.root"))
        if found:
            return [str(f) for f in found]
    return []

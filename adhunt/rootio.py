"""ROOT event files in NanoAOD/PFNano naming, and coffea-style fileset JSON.

Why one module: the generator and the LHC Olympics converter must write byte-compatible files that
the feature processor reads with coffea's ``PFNanoAODSchema``; keeping the branch types here means
there is a single definition of the on-disk schema.

Files are TTrees written with ``file.mktree`` (``file["Events"] = ...`` would write an RNTuple in
uproot 5.7) and filled batch by batch with ``tree.extend`` so memory is bounded by one batch. They are
written to a temporary name and renamed into place, so an interrupted run never leaves a truncated
file under the final name.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import awkward as ak
import numpy as np
import uproot

from adhunt.schema import PFCANDS_FLOAT_FIELDS, PFCANDS_INT_FIELDS, TREE_NAME, TRUTH_BRANCH

log = logging.getLogger(__name__)

#: Event-level branch types (as in NanoAOD: run/luminosityBlock UInt_t, event ULong64_t).
EVENT_BRANCH_TYPES: dict[str, type] = {
    "run": np.uint32,
    "luminosityBlock": np.uint32,
    "event": np.uint64,
    TRUTH_BRANCH: np.int32,
}
PFCANDS_TYPES: dict[str, type] = {
    **{name: np.float32 for name in PFCANDS_FLOAT_FIELDS},
    **{name: np.int32 for name in PFCANDS_INT_FIELDS},
}
PFCANDS = "PFCands"


def make_events(
    *,
    run: np.ndarray,
    luminosity_block: np.ndarray,
    event: np.ndarray,
    truth_label: np.ndarray,
    counts: np.ndarray,
    candidates: Mapping[str, np.ndarray],
) -> ak.Array:
    """Assemble an events array in the on-disk schema from flat candidate arrays and per-event counts.

    Casts every field to its on-disk type here, so the writer and anything that checks the trigger on
    the written values see the same (float32) numbers.
    """
    counts = np.asarray(counts, dtype=np.int64)
    n_events = len(counts)
    total = int(counts.sum())
    missing = [name for name in PFCANDS_TYPES if name not in candidates]
    if missing:
        raise ValueError(f"candidate fields missing: {missing}")
    fields = {}
    for name, dtype in PFCANDS_TYPES.items():
        values = np.asarray(candidates[name])
        if len(values) != total:
            raise ValueError(
                f"candidate field {name!r} has {len(values)} entries, counts sum to {total}"
            )
        fields[name] = ak.unflatten(values.astype(dtype), counts)
    columns = {
        "run": run,
        "luminosityBlock": luminosity_block,
        "event": event,
        TRUTH_BRANCH: truth_label,
    }
    out: dict[str, Any] = {}
    for name, values in columns.items():
        values = np.broadcast_to(np.asarray(values), (n_events,)).astype(EVENT_BRANCH_TYPES[name])
        out[name] = values
    out[PFCANDS] = ak.zip(fields, depth_limit=2) if n_events else _empty_candidates()
    return ak.Array(out)


def _empty_candidates() -> ak.Array:
    fields = {
        name: ak.values_astype(ak.Array([[]] * 0), dtype) for name, dtype in PFCANDS_TYPES.items()
    }
    return ak.zip(fields, depth_limit=2)


def _branch_types() -> dict[str, Any]:
    record = ", ".join(f"{name}: {np.dtype(dtype).name}" for name, dtype in PFCANDS_TYPES.items())
    return {**EVENT_BRANCH_TYPES, PFCANDS: f"var * {{{record}}}"}


def _tree_data(events: ak.Array) -> dict[str, Any]:
    data: dict[str, Any] = {}
    for name, dtype in EVENT_BRANCH_TYPES.items():
        if name not in events.fields:
            raise ValueError(f"events lack the {name!r} field (have {events.fields})")
        data[name] = ak.to_numpy(events[name]).astype(dtype, copy=False)
    if PFCANDS not in events.fields:
        raise ValueError(f"events lack the {PFCANDS!r} collection (have {events.fields})")
    cands = events[PFCANDS]
    data[PFCANDS] = ak.zip(
        {name: ak.values_astype(cands[name], dtype) for name, dtype in PFCANDS_TYPES.items()},
        depth_limit=2,
    )
    return data


def write_events(path: str | Path, events: ak.Array | Iterable[ak.Array]) -> int:
    """Write one events array, or an iterable of batches, to a ROOT TTree; return the event count.

    Overwrites ``path`` atomically: the tree is built under a temporary name and renamed at the end.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    batches = [events] if isinstance(events, ak.Array) else events
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    n_written = 0
    try:
        with uproot.recreate(tmp) as file:
            tree = file.mktree(TREE_NAME, _branch_types())
            for batch in batches:
                if len(batch) == 0:
                    continue
                tree.extend(_tree_data(batch))
                n_written += len(batch)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    log.debug("wrote %d events to %s", n_written, path)
    return n_written


def read_events(
    path: str | Path, entry_start: int | None = None, entry_stop: int | None = None
) -> ak.Array:
    """Read a file written by :func:`write_events` back into the in-memory schema (``PFCands`` record)."""
    with uproot.open(path) as file:
        if TREE_NAME not in file:
            raise ValueError(f"{path}: no {TREE_NAME!r} tree (keys: {file.keys()})")
        tree = file[TREE_NAME]
        names = [*EVENT_BRANCH_TYPES, *(f"{PFCANDS}_{name}" for name in PFCANDS_TYPES)]
        missing = [name for name in names if name not in tree]
        if missing:
            raise ValueError(f"{path}: missing branches {missing}")
        raw = tree.arrays(names, entry_start=entry_start, entry_stop=entry_stop)
    out = {name: raw[name] for name in EVENT_BRANCH_TYPES}
    out[PFCANDS] = ak.zip({name: raw[f"{PFCANDS}_{name}"] for name in PFCANDS_TYPES}, depth_limit=2)
    return ak.Array(out)


def fileset_entry(files: Iterable[str | Path], metadata: Mapping[str, Any]) -> dict[str, Any]:
    """One dataset of a coffea fileset: absolute file paths mapped to the tree name, plus metadata."""
    return {
        "files": {str(Path(f).resolve()): TREE_NAME for f in files},
        "metadata": json.loads(json.dumps(dict(metadata), default=str)),
    }


def write_fileset(
    path: str | Path, datasets: Mapping[str, Mapping[str, Any]], update: bool = False
) -> Path:
    """Write a coffea-style fileset JSON ``{dataset: {"files": {...}, "metadata": {...}}}``.

    With ``update=True`` datasets already in an existing file are kept unless replaced by name, so
    several ``adhunt generate`` runs into one directory build up one fileset.
    """
    path = Path(path)
    for name, entry in datasets.items():
        _check_entry(name, entry, path)
    merged: dict[str, Any] = {}
    if update and path.exists():
        merged.update(read_fileset(path))
    merged.update({name: dict(entry) for name, entry in datasets.items()})
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(merged, indent=2, sort_keys=False) + "\n")
    os.replace(tmp, path)
    return path


def read_fileset(path: str | Path) -> dict[str, Any]:
    """Load and validate a fileset JSON written by :func:`write_fileset` (or by hand)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"fileset not found: {path}")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from err
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a fileset must be a JSON object of datasets")
    for name, entry in data.items():
        _check_entry(name, entry, path)
    return data


def _check_entry(name: str, entry: Any, where: Path) -> None:
    if not isinstance(entry, Mapping) or not isinstance(entry.get("files"), Mapping):
        raise ValueError(f"{where}: dataset {name!r} needs a 'files' mapping of path -> tree name")
    for file, tree in entry["files"].items():
        if not isinstance(tree, str):
            raise ValueError(f"{where}: dataset {name!r}, file {file}: tree name must be a string")

"""LHC Olympics 2020 R&D HDF5 files to the project's NanoAOD-like ROOT schema.

Why: the published benchmark numbers are on the LHCO R&D sample; converting it to the very schema
``adhunt generate`` writes lets the same processor, models and bump hunt run on it unchanged.

Input: a pandas HDF5 table (``DataFrame.to_hdf``, fixed or table format), one row per event with
700 hadrons x (pT, eta, phi) zero-padded (columns 0..2099), then column 2100 = truth label (1 signal,
0 background). The unlabeled "black box" layout (2100 columns) is accepted too; its ``truthLabel``
is -1 (unknown). Hadrons are written as massless PF candidates with charge and pdgId 0 (the format
does not carry them); padding (pT == 0) is dropped. Rows are read in chunks so memory is bounded.

Event numbering: ``event`` = 1-based row in the input file, ``run`` = ``LHCO_RUN`` (3) unless asked
otherwise (1 and 2 are the generated QCD and W' samples), ``luminosityBlock`` = output file index + 1.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import itertools
import logging
import math
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import awkward as ak
import numpy as np

from adhunt.rootio import fileset_entry, make_events, write_events, write_fileset

log = logging.getLogger(__name__)

N_HADRONS = 700
N_FEATURE_COLUMNS = 3 * N_HADRONS  # 2100
LABELED_COLUMNS = N_FEATURE_COLUMNS + 1  # 2101
UNKNOWN_LABEL = -1
LHCO_RUN = 3
FILESET_NAME = "fileset.json"


@contextlib.contextmanager
def _hdf_table(path: Path, key: str | None, what: str) -> Iterator[tuple[Any, str]]:
    """The open pandas HDF5 store of ``path`` and its table ``key`` (the only one if None)."""
    import pandas as pd

    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    try:
        store = pd.HDFStore(path, mode="r")
    except Exception as err:  # tables raises several types for non-HDF5 input
        raise ValueError(f"{path}: not a readable pandas HDF5 file ({err})") from err
    with store:
        keys = [k.lstrip("/") for k in store.keys()]
        if key is None:
            if len(keys) != 1:
                raise ValueError(f"{path}: holds tables {keys}; pick one with --key")
            key = keys[0]
        if key not in keys:
            raise ValueError(f"{path}: no table {key!r} (tables: {keys})")
        yield store, key


def _truth_labels(values: np.ndarray | None, rows: np.ndarray, what: str) -> np.ndarray:
    """int32 truth labels from a 0/1 column (``what`` names it in the error); None: unknown."""
    if values is None:
        return np.full(len(rows), UNKNOWN_LABEL, dtype=np.int32)
    invalid = ~np.isin(values, (0.0, 1.0))
    if invalid.any():
        raise ValueError(
            f"{what} must be 0 or 1; row(s) {rows[invalid][:10].tolist()} "
            f"have {np.unique(values[invalid])[:5].tolist()}"
        )
    return values.astype(np.int32)


def inspect_lhco(path: str | Path, key: str | None = None) -> tuple[str, int, int]:
    """(key, n_rows, n_columns) of an LHCO HDF5 file, checking its layout without reading the data."""

    path = Path(path)
    with _hdf_table(path, key, "LHCO file") as (store, key):
        storer = store.get_storer(key)
        n_rows = getattr(storer, "nrows", None)
        if n_rows is None:
            shape = getattr(storer, "shape", None)
            if not shape or len(shape) != 2:
                raise ValueError(f"{path}[{key}]: not a 2-D table (shape {shape})")
            n_rows = int(shape[0])
        first = store.select(key, start=0, stop=1)
        n_cols = int(first.shape[1])
    if n_cols not in (LABELED_COLUMNS, N_FEATURE_COLUMNS):
        raise ValueError(
            f"{path}[{key}]: {n_cols} columns; the LHCO R&D format has {LABELED_COLUMNS} "
            f"({N_HADRONS} hadrons x (pT, eta, phi) + truth label) or {N_FEATURE_COLUMNS} (unlabeled)"
        )
    return key, int(n_rows), n_cols


def lhco_block_to_events(
    block: np.ndarray, first_row: int, run: int = LHCO_RUN, luminosity_block: int = 1
) -> ak.Array:
    """Events in the on-disk schema from a (rows x 2100|2101) block whose first row is ``first_row`` (0-based)."""
    block = np.asarray(block, dtype=np.float64)
    if block.ndim != 2 or block.shape[1] not in (LABELED_COLUMNS, N_FEATURE_COLUMNS):
        raise ValueError(
            f"expected rows of {LABELED_COLUMNS} or {N_FEATURE_COLUMNS} columns, got shape {block.shape}"
        )
    rows = np.arange(first_row, first_row + len(block))
    bad = ~np.isfinite(block).all(axis=1)
    if bad.any():
        raise ValueError(f"non-finite values in input row(s) {rows[bad][:10].tolist()}")
    hadrons = block[:, :N_FEATURE_COLUMNS].reshape(len(block), N_HADRONS, 3)
    pt, eta, phi = hadrons[..., 0], hadrons[..., 1], hadrons[..., 2]
    negative = (pt < 0).any(axis=1)
    if negative.any():
        raise ValueError(f"negative pT in input row(s) {rows[negative][:10].tolist()}")
    labels = _truth_labels(
        block[:, N_FEATURE_COLUMNS] if block.shape[1] == LABELED_COLUMNS else None,
        rows,
        f"truth label (column {N_FEATURE_COLUMNS})",
    )
    present = pt > 0  # zero pT is padding
    counts = present.sum(axis=1)
    zeros = np.zeros(int(counts.sum()))
    return make_events(
        run=run,
        luminosity_block=luminosity_block,
        event=(rows + 1).astype(np.uint64),
        truth_label=labels,
        counts=counts,
        candidates={
            "pt": pt[present],
            "eta": eta[present],
            "phi": phi[present],
            "mass": zeros,
            "charge": zeros.astype(np.int32),
            "pdgId": zeros.astype(np.int32),
        },
    )


def read_lhco_chunks(
    path: str | Path, key: str | None = None, chunk_size: int = 5000
) -> Iterator[tuple[int, np.ndarray]]:
    """Yield (first row, float array block) of an LHCO file, ``chunk_size`` rows at a time."""
    import pandas as pd

    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    key, n_rows, _ = inspect_lhco(path, key)
    with pd.HDFStore(path, mode="r") as store:
        for start in range(0, n_rows, chunk_size):
            frame = store.select(key, start=start, stop=min(start + chunk_size, n_rows))
            yield start, frame.to_numpy(dtype=np.float64)


def convert_lhco(
    path: str | Path,
    output_dir: str | Path,
    *,
    dataset: str | None = None,
    key: str | None = None,
    chunk_size: int = 5000,
    events_per_file: int = 50_000,
    run: int = LHCO_RUN,
    progress_callback: Callable[[int], None] | None = None,
) -> list[Path]:
    """Convert an LHCO HDF5 file to ROOT files ``{dataset}_{index:04d}.root`` + ``fileset.json``.

    ``dataset`` defaults to the input file's stem. Re-running overwrites the files (surplus ones of
    an earlier, larger conversion are removed) and replaces the dataset's fileset entry.
    """
    path = Path(path)
    if events_per_file < 1:
        raise ValueError(f"events_per_file must be >= 1, got {events_per_file}")
    key, n_rows, n_cols = inspect_lhco(path, key)
    if n_rows == 0:
        raise ValueError(f"{path}[{key}]: the table has no rows")
    name = dataset or path.stem
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    counters = {"n_events": 0, "n_signal": 0, "n_candidates": 0}

    def pieces() -> Iterator[tuple[int, ak.Array]]:
        for start, block in read_lhco_chunks(path, key, chunk_size):
            # Split the chunk at output-file boundaries.
            row = start
            while row < start + len(block):
                file_index = row // events_per_file
                stop = min(start + len(block), (file_index + 1) * events_per_file)
                events = lhco_block_to_events(
                    block[row - start : stop - start], row, run, file_index + 1
                )
                counters["n_events"] += len(events)
                counters["n_signal"] += int(np.sum(ak.to_numpy(events.truthLabel) == 1))
                counters["n_candidates"] += int(ak.sum(ak.num(events.PFCands)))
                yield file_index, events
                row = stop

    def notify(group: Iterator[tuple[int, ak.Array]]) -> Iterator[ak.Array]:
        for _, events in group:
            yield events
            if progress_callback is not None:
                progress_callback(len(events))

    paths = []
    for file_index, group in itertools.groupby(pieces(), key=lambda item: item[0]):
        target = output_dir / f"{name}_{file_index:04d}.root"
        write_events(target, notify(group))
        paths.append(target.resolve())
    n_files = math.ceil(n_rows / events_per_file)
    for stale in output_dir.glob(f"{name}_*.root"):
        suffix = stale.stem[len(name) + 1 :]
        if suffix.isdigit() and int(suffix) >= n_files:
            stale.unlink()
    metadata: dict[str, Any] = {
        "source": str(path.resolve()),
        "key": key,
        "format": "LHC Olympics 2020 R&D HDF5",
        "labeled": n_cols == LABELED_COLUMNS,
        "n_events": counters["n_events"],
        "n_signal": counters["n_signal"] if n_cols == LABELED_COLUMNS else None,
        "mean_candidates": counters["n_candidates"] / counters["n_events"],
        "run": run,
        "config": {"chunk_size": chunk_size, "events_per_file": events_per_file, "dataset": name},
        "adhunt_version": importlib.metadata.version("adhunt"),
    }
    write_fileset(output_dir / FILESET_NAME, {name: fileset_entry(paths, metadata)}, update=True)
    log.info("converted %d events of %s into %d file(s)", counters["n_events"], path, len(paths))
    return paths


# --------------------------------------------------------------------------------------------
# The LHCO pre-computed features table (events_anomalydetection_v2.features.h5 and the like)
# --------------------------------------------------------------------------------------------

#: Per-jet columns of the LHCO features table (jet j in 1, 2), then the optional truth label.
LHCO_JET_FIELDS = ("px", "py", "pz", "m", "tau1", "tau2", "tau3")
LHCO_FEATURE_COLUMNS = tuple(f"{f}j{j}" for j in (1, 2) for f in LHCO_JET_FIELDS)
LHCO_LABEL_COLUMN = "label"


def lhco_features_to_table(
    frame: Any, dataset: str, run: int = LHCO_RUN, first_row: int = 0, source: str = "input"
) -> Any:
    """adhunt feature rows from rows of the LHCO features table (one pandas DataFrame).

    The two jets go through :func:`adhunt.dijet.dijet_features`, the same code path as the
    feature processor (mjj from the summed four-vectors, jets re-ordered by mass, tau ratios), so a
    converted table means what an ``adhunt features`` table means. The jet with the larger pT is
    passed as the leading one (the tie-break of equal masses). ``event`` = 1-based row number
    (``first_row`` is the 0-based row of the first one), as in :func:`convert_lhco`, so the same
    event gets the same (run, event) through either conversion; no label column -> truth -1.
    """
    from adhunt.dijet import dijet_features
    from adhunt.tables import make_feature_frame

    missing = [c for c in LHCO_FEATURE_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(
            f"{source}: the LHCO features table lacks column(s) {missing} "
            f"(expected {list(LHCO_FEATURE_COLUMNS)} and optionally {LHCO_LABEL_COLUMN!r})"
        )
    values = frame[list(LHCO_FEATURE_COLUMNS)].to_numpy(dtype=np.float64)
    rows = np.arange(first_row, first_row + len(frame))
    bad = ~np.isfinite(values).all(axis=1)
    if bad.any():
        raise ValueError(f"{source}: non-finite values in row(s) {rows[bad][:10].tolist()}")
    jets = []
    for j in (1, 2):
        col = {f: frame[f"{f}j{j}"].to_numpy(dtype=np.float64) for f in LHCO_JET_FIELDS}
        if (col["m"] < 0).any():
            raise ValueError(
                f"{source}: negative mj{j} in row(s) {rows[col['m'] < 0][:10].tolist()}"
            )
        energy = np.sqrt(col["px"] ** 2 + col["py"] ** 2 + col["pz"] ** 2 + col["m"] ** 2)
        four = {"px": col["px"], "py": col["py"], "pz": col["pz"], "E": energy}
        taus = np.stack([col["tau1"], col["tau2"], col["tau3"]], axis=1)
        jets.append((four, taus, np.hypot(col["px"], col["py"])))
    (four1, taus1, pt1), (four2, taus2, pt2) = jets
    lead = pt1 >= pt2
    pick = lambda a, b: np.where(lead, a, b)  # noqa: E731
    leading = {k: pick(four1[k], four2[k]) for k in four1}
    trailing = {k: pick(four2[k], four1[k]) for k in four1}
    taus_lead = np.where(lead[:, None], taus1, taus2)
    taus_trail = np.where(lead[:, None], taus2, taus1)
    features = dijet_features(leading, trailing, taus_lead, taus_trail)
    labels = _truth_labels(
        frame[LHCO_LABEL_COLUMN].to_numpy(dtype=np.float64)
        if LHCO_LABEL_COLUMN in frame.columns
        else None,
        rows,
        f"{source}: {LHCO_LABEL_COLUMN!r}",
    )
    return make_feature_frame(
        dataset, np.full(len(frame), run, dtype=np.int64), rows + 1, labels, features
    )


def convert_lhco_features(
    path: str | Path,
    output_dir: str | Path,
    *,
    dataset: str | None = None,
    key: str | None = None,
    run: int = LHCO_RUN,
) -> Path:
    """Convert an LHCO features HDF5 table into ``output_dir/<dataset>.parquet`` (adhunt columns).

    The output is a plain feature table: ``--features output_dir`` (or the file) reads it. A
    ``<dataset>.json`` next to it records the source and counts. Re-running replaces both.
    """
    import json

    path = Path(path)
    with _hdf_table(path, key, "LHCO features file") as (store, key):
        frame = store.select(key)
    if len(frame) == 0:
        raise ValueError(f"{path}[{key}]: the table has no rows")
    name = dataset or path.stem.split(".")[0]
    table = lhco_features_to_table(frame, name, run, source=f"{path}[{key}]")
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    target = output_dir / f"{name}.parquet"
    tmp = target.with_name(f".{target.name}.tmp")
    table.to_parquet(tmp, index=False)
    tmp.replace(target)
    labeled = LHCO_LABEL_COLUMN in frame.columns
    record = {
        "source": str(path.resolve()),
        "key": key,
        "format": "LHC Olympics 2020 pre-computed features (pandas HDF5)",
        "dataset": name,
        "run": run,
        "n_events": len(table),
        "n_signal": int((table["truth_label"] == 1).sum()) if labeled else None,
        "adhunt_version": importlib.metadata.version("adhunt"),
    }
    (output_dir / f"{name}.json").write_text(json.dumps(record, indent=2) + "\n")
    log.info("converted %d events of %s into %s", len(table), path, target)
    return target

"""Feature tables on disk: one parquet file per processed chunk, read back in a fixed order.

Layout: ``<output_dir>/<dataset>/<file-stem>-<hash8>_<entrystart>-<entrystop>.parquet``. The name
is a pure function of (dataset, input file path, entry range), so re-running the same chunking
overwrites instead of duplicating; the zero-padded entry range makes lexicographic order equal
to (file, entry) order, which is what :func:`read_features` returns. Columns and their order are
:data:`adhunt.schema.FEATURE_COLUMNS`.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from adhunt.schema import FEATURE_COLUMNS

_INT_COLUMNS = {
    "run": np.int64,
    "luminosityBlock": np.int64,
    "event": np.int64,
    "truth_label": np.int32,
}
_CHUNK_RE = re.compile(r"^(?P<key>.+)_(?P<start>\d+)-(?P<stop>\d+)\.parquet$")


class FeatureTableError(ValueError):
    """A feature directory that cannot be read back consistently."""


def chunk_filename(dataset: str, filename: str, entrystart: int, entrystop: int) -> str:
    """Relative path (``dataset/stem-hash_start-stop.parquet``) of one chunk's feature table."""
    if not dataset or "/" in dataset or dataset.startswith("."):
        raise ValueError(f"dataset name {dataset!r} cannot be used as a directory name")
    stem = re.sub(r"[^A-Za-z0-9_.+-]", "_", Path(filename).name.removesuffix(".root"))
    digest = hashlib.sha1(str(filename).encode()).hexdigest()[:8]
    return f"{dataset}/{stem}-{digest}_{entrystart:012d}-{entrystop:012d}.parquet"


def make_feature_frame(
    dataset: str,
    run: np.ndarray,
    event: np.ndarray,
    truth_label: np.ndarray,
    features: Mapping[str, np.ndarray],
    *,
    luminosity_block: np.ndarray | None = None,
    weight: np.ndarray | None = None,
) -> pd.DataFrame:
    """A feature table with exactly :data:`FEATURE_COLUMNS`, in order, with fixed dtypes.

    ``luminosity_block`` defaults to 0 (unknown) and ``weight`` to 1 (unweighted events).
    """
    n = len(run)
    columns: dict[str, object] = {
        "dataset": pd.Series([dataset] * n, dtype=object),
        "run": np.asarray(run, dtype=np.int64),
        "luminosityBlock": np.zeros(n, np.int64)
        if luminosity_block is None
        else np.asarray(luminosity_block, dtype=np.int64),
        "event": np.asarray(event, dtype=np.int64),
        "truth_label": np.asarray(truth_label, dtype=np.int32),
        "weight": np.ones(n) if weight is None else np.asarray(weight, dtype=np.float64),
    }
    for name in FEATURE_COLUMNS:
        if name not in columns:
            if name not in features:
                raise KeyError(f"feature column {name!r} missing")
            columns[name] = np.asarray(features[name], dtype=np.float64)
    for name, values in columns.items():
        if len(values) != n:
            raise ValueError(f"column {name!r} has {len(values)} rows, expected {n}")
    return pd.DataFrame({name: columns[name] for name in FEATURE_COLUMNS})


def write_chunk(frame: pd.DataFrame, output_dir: str | Path, relative_path: str) -> Path:
    """Write one chunk atomically (temporary file + rename), so a killed job leaves no half file."""
    path = Path(output_dir) / relative_path
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    frame.to_parquet(tmp, index=False)
    os.replace(tmp, path)
    return path


def chunk_files(output_dir: str | Path, datasets: Iterable[str] | None = None) -> list[Path]:
    """Chunk files of a feature directory, sorted by (dataset, input file, entry start)."""
    root = Path(output_dir)
    if not root.is_dir():
        raise FeatureTableError(f"feature directory not found: {root}")
    if datasets is None:
        names = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    else:
        names = list(datasets)
        missing = [d for d in names if not (root / d).is_dir()]
        if missing:
            raise FeatureTableError(f"no feature tables for dataset(s) {missing} in {root}")
    files: list[Path] = []
    for name in names:
        entries = []
        for path in (root / name).glob("*.parquet"):
            match = _CHUNK_RE.match(path.name)
            if match is None:
                raise FeatureTableError(f"unexpected file in feature directory: {path}")
            entries.append((match["key"], int(match["start"]), int(match["stop"]), path))
        entries.sort()
        _check_no_overlap(entries)
        files.extend(path for *_, path in entries)
    return files


def _check_no_overlap(entries: list[tuple[str, int, int, Path]]) -> None:
    """Chunks of one input file must not overlap (stale files of an earlier, different chunking)."""
    for (key, _, stop, path), (next_key, next_start, _, next_path) in itertools.pairwise(entries):
        if key == next_key and next_start < stop:
            raise FeatureTableError(
                f"overlapping chunks of the same input file: {path.name} and {next_path.name} "
                f"in {path.parent} (left over from a run with another chunksize?); remove the stale ones"
            )


def read_features(output_dir: str | Path, datasets: Iterable[str] | None = None) -> pd.DataFrame:
    """All feature rows of a directory (optionally only some datasets), in deterministic order.

    Order: dataset name, then input file, then entry number; the index is a fresh RangeIndex.
    """
    files = chunk_files(output_dir, datasets)
    if not files:
        raise FeatureTableError(f"no feature tables in {output_dir}")
    frames = [pd.read_parquet(path) for path in files]
    frame = pd.concat(frames, ignore_index=True)
    missing = [c for c in FEATURE_COLUMNS if c not in frame.columns]
    if missing:
        raise FeatureTableError(f"feature tables in {output_dir} lack column(s) {missing}")
    frame = frame[list(FEATURE_COLUMNS)]
    return frame.astype(_INT_COLUMNS)


def clear_datasets(output_dir: str | Path, datasets: Iterable[str]) -> int:
    """Remove the chunk files of ``datasets`` before a new run writes them (no stale chunks)."""
    removed = 0
    for name in datasets:
        directory = Path(output_dir) / name
        if directory.is_dir():
            for path in directory.glob("*.parquet"):
                path.unlink()
                removed += 1
    return removed

"""Feature tables on disk: adhunt's own chunk directories, and any parquet table from elsewhere.

:func:`read_table` is the one reader every command uses (``train``, ``score``, ``evaluate``,
``infer``'s reference tables, ``scan``, ``sculpting``). It accepts

* **an adhunt chunk directory** (written by ``adhunt features``; recognised by its
  ``features_config.json`` or by chunk-named files): one parquet file per processed chunk, layout
  ``<output_dir>/<dataset>/<file-stem>-<hash8>_<entrystart>-<entrystop>.parquet``. The name is a
  pure function of (dataset, input file path, entry range), so re-running the same chunking
  overwrites instead of duplicating; the zero-padded entry range makes lexicographic order equal
  to (file, entry) order, which is what :func:`read_features` returns. Stray files and overlapping
  chunks (stale files of another chunking) are refused, so no event is counted twice. Columns and
  their order are :data:`adhunt.schema.FEATURE_COLUMNS`. With a ``manifest.json``
  (:mod:`adhunt.manifest`) the directory is also refused when a dataset is incomplete (unless
  ``allow_partial`` / :func:`partial_reading`), holds files the manifest does not list, or mixes
  feature configurations.
* **any other parquet table**: one ``.parquet`` file, or a directory searched recursively for
  ``*.parquet`` (any names; hidden files and directories are skipped), read in the order of the
  files' relative paths. Only ``mjj`` and the features a method uses are needed; the bookkeeping
  columns get these defaults when absent (see :data:`TABLE_DEFAULTS`):

  - ``dataset``: the name of the file's first directory below the path read, or, for files
    directly in it, the path's own name (a single file: its stem);
  - ``run``: a per-file number, CRC-32 of the file's *name* (31 bits), so two files read together
    do not share keys unless they have the same name (then keys repeat, which is refused like any
    repeated key, see below: give such files ``run``/``event`` columns);
  - ``event``: the 1-based row number within its file. A WARNING is logged: the k-fold split (and
    whether ``adhunt score`` treats an event as seen in training) then rests on the row order,
    which is deterministic for the same files but changes if a file is rewritten in another order;
  - ``truth_label``: -1 (unknown);
  - ``luminosityBlock``: 0, ``weight``: 1 (unweighted).

  No other column is ever filled in: a column a caller needs that a file lacks is an error naming
  the column and the file (in a chunk directory every chunk must hold every column of the
  schema, except those of :data:`_OLD_TABLE_DEFAULTS` when all chunks predate them).

Every table is checked for repeated (run, event) keys (:func:`check_unique_events`): a file or
dataset read twice would count its events twice; ``allow_duplicates`` turns the error into a
WARNING (``--allow-duplicates``).
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import itertools
import json
import logging
import os
import re
import zlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from adhunt.schema import FEATURE_COLUMNS, IMAGE_PSEUDO_COLUMNS, IMAGE_SUFFIX, RESONANT_VARIABLE

log = logging.getLogger(__name__)

_INT_COLUMNS = {
    "run": np.int64,
    "luminosityBlock": np.int64,
    "event": np.int64,
    "truth_label": np.int32,
}
_CHUNK_RE = re.compile(r"^(?P<key>.+)_(?P<start>\d+)-(?P<stop>\d+)\.parquet$")
#: The exact names :func:`chunk_filename` writes: a foreign table is never mistaken for a chunk.
_STRICT_CHUNK_RE = re.compile(r"^.+-[0-9a-f]{8}_\d{12}-\d{12}\.parquet$")
#: Written by ``adhunt features`` next to its chunk directories.
FEATURES_CONFIG_NAME = "features_config.json"
#: Written by ``adhunt features`` too: what each dataset was made from (``adhunt.manifest``).
MANIFEST_NAME = "manifest.json"
#: Bookkeeping columns a foreign table may lack, and what they default to (see the module doc).
TABLE_DEFAULTS = {
    "dataset": "directory below the path read, else the path's name (a file: its stem)",
    "run": "CRC-32 of the file name (31 bits)",
    "event": "1-based row number within the file (k-fold keys follow the row order: WARNING)",
    "truth_label": -1,
    "luminosityBlock": 0,
    "weight": 1.0,
}
UNKNOWN_TRUTH = -1
BOOKKEEPING_COLUMNS = ("dataset", "run", "luminosityBlock", "event", "truth_label", "weight")


class FeatureTableError(ValueError):
    """A feature directory that cannot be read back consistently."""


class DuplicateEventsError(FeatureTableError):
    """A table whose (run, event) keys repeat: its events would be counted (and folded) twice."""


#: The key that identifies an event everywhere (k-fold split, training keys, duplicate checks).
EVENT_KEY = ("run", "event")


def check_unique_events(
    frame: pd.DataFrame,
    what: str = "feature table",
    *,
    allow_duplicates: bool = False,
    row_files: Sequence[str] | np.ndarray | None = None,
    hint: str = "",
) -> int:
    """Refuse a table in which a (run, event) key occurs more than once; returns how many repeat.

    The one duplicate check of every command (``train``, ``score``, ``evaluate``, ``infer``'s
    reference tables, ``scan``): a repeated key is a file or dataset read twice (its events
    would be counted twice and share a fold), or two samples numbered alike. The error
    (:class:`DuplicateEventsError`) names how many keys repeat, one of them, and the dataset(s)
    and, with ``row_files`` (the file of each row), the file(s) holding it. With
    ``allow_duplicates`` a WARNING says the same and the table is used as it is.
    """
    keys = list(EVENT_KEY)
    if len(frame) == 0 or any(c not in frame.columns for c in keys):
        return 0
    repeated = _repeated_keys(frame["run"].to_numpy(), frame["event"].to_numpy())
    if repeated is None:
        repeated = frame.duplicated(keys, keep=False).to_numpy()
    if not repeated.any():
        return 0
    rows = frame.loc[repeated, keys]
    n_keys = len(rows.drop_duplicates())
    run, event = (int(v) for v in rows.iloc[0])
    example = np.flatnonzero(
        repeated & (frame["run"].to_numpy() == run) & (frame["event"].to_numpy() == event)
    )
    where = []
    if "dataset" in frame.columns:
        names = list(dict.fromkeys(str(d) for d in frame["dataset"].to_numpy()[example]))
        where.append(f"dataset(s) {', '.join(names)}")
    if row_files is not None:
        files = list(dict.fromkeys(str(row_files[i]) for i in example))
        where.append(f"file(s) {', '.join(files[:4])}" + (" ..." if len(files) > 4 else ""))
    datasets = ""
    if "dataset" in frame.columns:
        involved = sorted(set(map(str, frame.loc[repeated, "dataset"])))
        datasets = f"; repeats in dataset(s) {', '.join(involved[:8])}"
    message = (
        f"{what}: {n_keys} (run, event) key(s) occur more than once ({int(repeated.sum())} rows), "
        f"e.g. run {run}, event {event} in {'; '.join(where) or 'the table'}{datasets}{hint}"
    )
    if not allow_duplicates:
        raise DuplicateEventsError(
            f"{message}; the events would be counted twice (read each file once, or use "
            "--allow-duplicates if they are distinct events)"
        )
    log.warning("%s; used as they are (--allow-duplicates)", message)
    return n_keys


def _repeated_keys(run: np.ndarray, event: np.ndarray) -> np.ndarray | None:
    """Rows whose (run, event) occurs more than once, from one sorted int64 per row (about 10x
    faster than a two-column ``duplicated`` when nothing repeats, the usual case); None when the
    numbers do not fit 31 + 32 bits."""
    if not (np.issubdtype(run.dtype, np.integer) and np.issubdtype(event.dtype, np.integer)):
        return None
    if run.min() < 0 or run.max() >= 2**31 or event.min() < 0 or event.max() >= 2**32:
        return None
    key = (run.astype(np.int64) << 32) | event.astype(np.int64)
    ordered = np.sort(key)
    if not np.any(ordered[1:] == ordered[:-1]):
        return np.zeros(len(key), dtype=bool)
    return pd.Series(key).duplicated(keep=False).to_numpy()


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
    extra: Mapping[str, np.ndarray] | None = None,
) -> pd.DataFrame:
    """A feature table with exactly :data:`FEATURE_COLUMNS`, in order, with fixed dtypes.

    ``luminosity_block`` defaults to 0 (unknown) and ``weight`` to 1 (unweighted events).
    ``extra``: configured optional columns (extended set, image sums), appended in their order.
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
    names = list(FEATURE_COLUMNS)
    for name, values in (extra or {}).items():
        if name in columns:
            raise ValueError(f"extra column {name!r} clashes with a feature-table column")
        columns[name] = np.asarray(values)
        names.append(name)
    for name, values in columns.items():
        if len(values) != n:
            raise ValueError(f"column {name!r} has {len(values)} rows, expected {n}")
    return pd.DataFrame({name: columns[name] for name in names})


def write_chunk(
    frame: pd.DataFrame,
    output_dir: str | Path,
    relative_path: str,
    stamp: Mapping[str, object] | None = None,
) -> Path:
    """Write one chunk atomically (temporary file + rename), so a killed job leaves no half file.

    ``stamp`` (JSON-able) goes into the parquet key-value metadata (``adhunt.manifest``: what made
    the chunk, and its cutflow), so a resumed run can tell which chunks are done.
    """
    import json

    import pyarrow as pa
    import pyarrow.parquet as pq

    from adhunt.manifest import CHUNK_STAMP_KEY

    path = Path(output_dir) / relative_path
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    table = pa.Table.from_pandas(frame, preserve_index=False)
    if stamp is not None:
        metadata = dict(table.schema.metadata or {})
        metadata[CHUNK_STAMP_KEY] = json.dumps(stamp, sort_keys=True).encode()
        table = table.replace_schema_metadata(metadata)
    try:
        pq.write_table(table, tmp, compression="snappy")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def image_path(chunk: str | Path) -> Path:
    """The image file of a chunk table: ``<chunk stem>.images.npy`` next to it."""
    chunk = Path(chunk)
    return chunk.with_name(chunk.name.removesuffix(".parquet") + IMAGE_SUFFIX)


def write_chunk_images(images: np.ndarray, output_dir: str | Path, relative_path: str) -> Path:
    """Write the jet images of chunk ``relative_path`` (its parquet path) atomically.

    Called BEFORE :func:`write_chunk`: the parquet table is what marks a chunk as done, so a
    killed job leaves at most an image file without its table, which readers never look at (they
    go from tables to images) and the next run's :func:`clear_datasets` removes.
    """
    path = image_path(Path(output_dir) / relative_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as handle:
        np.save(handle, np.ascontiguousarray(images, dtype=np.float32))
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


#: Defaults of the columns added after the first table format (``weight``, ``luminosityBlock``).
_OLD_TABLE_DEFAULTS = {"weight": 1.0, "luminosityBlock": 0}


#: Set by :func:`partial_reading` (the CLI's ``--allow-partial``) for every read below it.
_ALLOW_PARTIAL: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "adhunt_allow_partial", default=False
)


@contextlib.contextmanager
def partial_reading(allow: bool = True) -> Iterator[None]:
    """Within this block, :func:`read_table`/:func:`read_features` read incomplete feature
    directories (with a WARNING saying how much is missing) instead of refusing them."""
    token = _ALLOW_PARTIAL.set(bool(allow))
    try:
        yield
    finally:
        _ALLOW_PARTIAL.reset(token)


def read_features(
    output_dir: str | Path,
    datasets: Iterable[str] | None = None,
    *,
    allow_partial: bool | None = None,
) -> pd.DataFrame:
    """All feature rows of a directory (optionally only some datasets), in deterministic order.

    Order: dataset name, then input file, then entry number; the index is a fresh RangeIndex.
    A directory with a manifest (``adhunt.manifest``) is refused when a dataset is incomplete
    (unless ``allow_partial``, default: :func:`partial_reading`'s setting), holds files the
    manifest does not list, or mixes feature configurations.
    """
    return _read_chunks(output_dir, datasets, allow_partial=allow_partial)[0]


def _read_chunks(
    output_dir: str | Path,
    datasets: Iterable[str] | None = None,
    *,
    allow_partial: bool | None = None,
) -> tuple[pd.DataFrame, list[tuple[Path, int]]]:
    """:func:`read_features` and the chunk file of each row (``[(file, n_rows), ...]`` in order).

    Every chunk must hold every column of :data:`FEATURE_COLUMNS` (a missing one is an error
    naming the column and the chunk: filling it would hand NaN to a model, or mix table
    versions), except the columns added later (:data:`_OLD_TABLE_DEFAULTS`), which are filled
    only when every chunk lacks them (a directory written by one older version).
    """
    from adhunt.manifest import ManifestError, check_directory

    if datasets is not None:
        datasets = list(datasets)
    files = chunk_files(output_dir, datasets)
    if allow_partial is None:
        allow_partial = _ALLOW_PARTIAL.get()
    try:
        check_directory(output_dir, datasets, allow_partial=allow_partial)
    except ManifestError as err:
        raise FeatureTableError(str(err)) from err
    if not files:
        raise FeatureTableError(f"no feature tables in {output_dir}")
    frames, sources = [], []
    first: tuple[Path, list[str]] | None = None
    for path in files:
        frame = pd.read_parquet(path)
        missing = [c for c in FEATURE_COLUMNS if c not in frame.columns]
        lacking = [c for c in missing if c not in _OLD_TABLE_DEFAULTS]
        if lacking:
            raise FeatureTableError(
                f"feature table {path} lacks column(s) {lacking} (a chunk of another adhunt "
                "version or a damaged one; rerun adhunt features for its dataset)"
            )
        if first is None:
            first = (path, missing)
        elif missing != first[1]:
            raise FeatureTableError(
                f"feature table {path} lacks column(s) {missing} but {first[0]} lacks "
                f"{first[1]}: the chunks were written by different adhunt versions; rerun "
                "adhunt features"
            )
        frames.append(frame)
        sources.append((path, len(frame)))
    extra = _extra_columns(output_dir, files, frames)
    frame = pd.concat(frames, ignore_index=True)
    defaults = {c: _OLD_TABLE_DEFAULTS[c] for c in first[1]}
    if defaults:  # tables written before these columns existed: unweighted, no lumi blocks
        log.warning(
            "feature tables in %s predate column(s) %s; filled with %s",
            output_dir, sorted(defaults), defaults,
        )  # fmt: skip
        frame = frame.assign(**defaults)
    frame = frame[[*FEATURE_COLUMNS, *extra]]
    return frame.astype(_INT_COLUMNS), sources


def features_echo(output_dir: str | Path) -> dict:
    """The ``features_config.json`` of a feature directory ({} when it has none)."""
    path = Path(output_dir) / FEATURES_CONFIG_NAME
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise FeatureTableError(f"{path} is not valid JSON: {err}") from err


def _extra_columns(output_dir: str | Path, files: list[Path], frames: list[pd.DataFrame]):
    """The optional columns of a chunk directory, in order: declared in its
    ``features_config.json`` ("extra_columns"), and the same in every chunk (a mix of runs with
    and without ``--extended``/``--images`` is refused instead of read with holes)."""
    declared = list(features_echo(output_dir).get("extra_columns", []))
    known = set(FEATURE_COLUMNS) | set(_OLD_TABLE_DEFAULTS)
    for path, frame in zip(files, frames, strict=True):
        present = [c for c in frame.columns if c not in known]
        undeclared = [c for c in present if c not in declared]
        if undeclared:
            raise FeatureTableError(
                f"{path} has column(s) {undeclared[:5]} that {output_dir}/{FEATURES_CONFIG_NAME} "
                "does not declare (a table of another features run?)"
            )
        absent = [c for c in declared if c not in frame.columns]
        if absent:
            raise FeatureTableError(
                f"{path} lacks the configured column(s) {absent[:5]} "
                "(a table of a run without the same --extended/--images options?)"
            )
    return declared


def read_images(output_dir: str | Path, datasets: Iterable[str] | None = None) -> np.ndarray:
    """Jet images of a chunk directory: float32 [N, 2, S, S], row for row aligned with
    :func:`read_table` of the same directory and datasets (channel 0 = j1, the lighter jet).

    Written by ``adhunt features --images`` as one ``.images.npy`` per chunk table. Refuses a
    directory whose run had no images, a chunk whose image file is missing, and images of
    another size or row count than the table (each error names the file). Memory: 8 KB per
    event at S = 32; for larger samples iterate :func:`chunk_image_files` instead.
    """
    pairs, size = chunk_image_files(output_dir, datasets)
    arrays = [np.asarray(_load_images(table, images, size)) for table, images in pairs]
    if not arrays:
        return np.zeros((0, 2, size, size), np.float32)
    return np.concatenate(arrays, axis=0)


def with_image_columns(frame: pd.DataFrame, images: np.ndarray) -> pd.DataFrame:
    """``frame`` with the pseudo-columns :data:`IMAGE_PSEUDO_COLUMNS` (object columns holding one
    ``[S, S]`` view of ``images[row, jet]`` per row), so images follow the rows through filtering,
    concatenation, injection and k-fold splits like any other column."""
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[1] != 2 or images.shape[0] != len(frame):
        raise FeatureTableError(
            f"jet images of shape {images.shape} do not fit a table of {len(frame)} rows "
            "(expected [rows, 2, S, S])"
        )
    out = frame.copy()
    for jet, name in enumerate(IMAGE_PSEUDO_COLUMNS):
        column = np.empty(len(frame), dtype=object)
        for row in range(len(frame)):
            column[row] = images[row, jet]
        out[name] = pd.Series(column, index=frame.index, dtype=object)
    return out


def iter_chunk_images(
    output_dir: str | Path, datasets: Iterable[str] | None = None
) -> Iterator[tuple[Path, np.ndarray]]:
    """(chunk table, its images) chunk by chunk, in :func:`read_images` order, each checked as
    there; the images are read-only memory maps, so a training loop holds one chunk at a time.
    All chunks are checked to have an image file before the first is yielded."""
    pairs, size = chunk_image_files(output_dir, datasets)
    for table, images in pairs:
        yield table, _load_images(table, images, size)


def chunk_image_files(
    output_dir: str | Path, datasets: Iterable[str] | None = None
) -> tuple[list[tuple[Path, Path]], int]:
    """(table, image file) of each chunk in :func:`read_features` order, and the image size.

    Accepts a chunk directory or one dataset's directory inside it (as :func:`read_table`).
    """
    root = Path(output_dir)
    wanted = None if datasets is None else list(datasets)
    if not is_chunk_directory(root) and is_chunk_dataset_directory(root):
        if wanted is not None and wanted != [root.name]:
            raise FeatureTableError(f"{root} holds only dataset {root.name!r}, asked for {wanted}")
        root, wanted = root.parent, [root.name]
    spec = features_echo(root).get("images")
    if not spec:
        raise FeatureTableError(
            f"{root} has no jet images (no {FEATURES_CONFIG_NAME} declaring them: run "
            "`adhunt features --images`)"
        )
    size = int(spec["size"])
    files = chunk_files(root, wanted)
    if not files:
        raise FeatureTableError(f"no feature tables in {root}")
    pairs = []
    for table in files:
        images = image_path(table)
        if not images.is_file():
            raise FeatureTableError(
                f"chunk {table} has no image file {images.name} (directory written with images "
                "for only some chunks?)"
            )
        pairs.append((table, images))
    return pairs, size


def _load_images(table: Path, images: Path, size: int) -> np.ndarray:
    import pyarrow.parquet as pq

    try:
        array = np.load(images, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as err:
        raise FeatureTableError(f"{images} is not a readable .npy image file ({err})") from err
    rows = pq.ParquetFile(table).metadata.num_rows
    expected = (rows, 2, size, size)
    if array.shape != expected or array.dtype != np.float32:
        raise FeatureTableError(
            f"{images} holds {array.dtype} images of shape {array.shape}; its table {table.name} "
            f"and the run's image size need float32 {expected}"
        )
    return array


def clear_datasets(output_dir: str | Path, datasets: Iterable[str]) -> int:
    """Remove the chunk files of ``datasets`` before a new run writes them (no stale chunks)."""
    removed = 0
    for name in datasets:
        directory = Path(output_dir) / name
        if directory.is_dir():
            for path in directory.glob("*.parquet"):
                path.unlink()
                removed += 1
            for path in directory.glob(f"*{IMAGE_SUFFIX}"):  # images die with their tables
                path.unlink()
    return removed


# --------------------------------------------------------------------------------------------
# The one reader: adhunt chunk directories and foreign parquet tables
# --------------------------------------------------------------------------------------------


def is_chunk_directory(path: str | Path) -> bool:
    """True for a directory written by ``adhunt features`` (its config file or chunk-named files).

    Such directories keep the strict checks of :func:`chunk_files` (no stray or overlapping
    files), which protect against stale chunks of an earlier run being counted twice.
    """
    root = Path(path)
    if not root.is_dir():
        return False
    if (root / FEATURES_CONFIG_NAME).is_file() or (root / MANIFEST_NAME).is_file():
        return True
    return any(_STRICT_CHUNK_RE.match(p.name) for p in root.glob("*/*.parquet"))


def is_chunk_dataset_directory(path: str | Path) -> bool:
    """True for one dataset's directory inside an ``adhunt features`` output (chunk-named files).

    Reading ``features/qcd`` alone must keep the same protection as reading ``features``.
    """
    root = Path(path)
    if not root.is_dir():
        return False
    if (root.parent / FEATURES_CONFIG_NAME).is_file() or (root.parent / MANIFEST_NAME).is_file():
        return True
    return any(_STRICT_CHUNK_RE.match(p.name) for p in root.glob("*.parquet"))


def table_files(path: str | Path) -> list[Path]:
    """The parquet files a foreign table consists of, in the order of their relative paths."""
    root = Path(path)
    if root.is_file():
        if root.suffix != ".parquet":
            raise FeatureTableError(f"not a parquet file: {root} (expected *.parquet)")
        return [root]
    if not root.exists():
        raise FeatureTableError(f"feature table not found: {root}")
    files = []
    for file in root.rglob("*.parquet"):
        relative = file.relative_to(root)
        if any(part.startswith(".") for part in relative.parts) or not file.is_file():
            continue  # hidden files: temporaries of an interrupted write, editor backups
        files.append(file)
    return sorted(files, key=lambda f: f.relative_to(root).as_posix())


def file_run_number(path: str | Path) -> int:
    """Default ``run`` of a table file without one: CRC-32 of its name, in [0, 2**31)."""
    return zlib.crc32(Path(path).name.encode()) & 0x7FFFFFFF


def _default_dataset(root: Path, file: Path) -> str:
    if root.is_file():
        return root.stem
    relative = file.relative_to(root)
    return relative.parts[0] if len(relative.parts) > 1 else root.resolve().name


def _read_foreign_file(
    root: Path, file: Path, columns: Sequence[str] | None, what: str
) -> tuple[pd.DataFrame, list[str]]:
    """One foreign parquet file with the bookkeeping columns filled; also the defaulted names."""
    import pyarrow.parquet as pq

    try:
        names = pq.read_schema(file).names
    except Exception as err:  # pyarrow raises several types for non-parquet input
        raise FeatureTableError(f"{what}: {file} is not a readable parquet file ({err})") from err
    needed = list(dict.fromkeys([RESONANT_VARIABLE, *(columns or ())]))
    missing = [c for c in needed if c not in names]
    if missing:
        raise FeatureTableError(f"{what}: {file} lacks column(s) {missing} (it has {names[:30]})")
    wanted = None
    if columns is not None:
        wanted = [c for c in names if c in set(needed) | set(BOOKKEEPING_COLUMNS)]
    frame = pd.read_parquet(file, columns=wanted)
    defaulted = [c for c in BOOKKEEPING_COLUMNS if c not in frame.columns]
    n = len(frame)
    if "dataset" not in frame.columns:
        frame.insert(0, "dataset", pd.Series([_default_dataset(root, file)] * n, dtype=object))
    if "run" not in frame.columns:
        frame.insert(1, "run", np.full(n, file_run_number(file), dtype=np.int64))
    if "event" not in frame.columns:
        frame.insert(2, "event", np.arange(1, n + 1, dtype=np.int64))
    if "truth_label" not in frame.columns:
        frame["truth_label"] = np.full(n, UNKNOWN_TRUTH, dtype=np.int32)
    for name in ("run", "event", "truth_label"):
        values = frame[name]
        if not pd.api.types.is_integer_dtype(values):
            arr = values.to_numpy(dtype=np.float64, na_value=np.nan)
            if not np.all(np.isfinite(arr) & (arr == np.round(arr))):
                raise FeatureTableError(
                    f"{what}: column {name!r} of {file} must hold integers, got {values.dtype}"
                )
    if "luminosityBlock" not in frame.columns:
        frame["luminosityBlock"] = np.zeros(n, dtype=np.int64)
    if "weight" not in frame.columns:
        frame["weight"] = np.ones(n, dtype=np.float64)
    frame["dataset"] = frame["dataset"].astype(str).astype(object)
    return frame.astype(_INT_COLUMNS), defaulted


def read_table(
    path: str | Path,
    datasets: Iterable[str] | None = None,
    columns: Sequence[str] | None = None,
    *,
    what: str = "feature table",
    allow_duplicates: bool = False,
    allow_partial: bool | None = None,
) -> pd.DataFrame:
    """Feature rows of an adhunt chunk directory, a parquet file or a directory of parquet files.

    See the module doc for what is accepted and the defaults of missing bookkeeping columns.
    ``datasets`` keeps only those datasets (an unknown one is an error); ``columns`` are the
    feature columns the caller needs (``mjj`` is always needed): each file must hold them, and a
    foreign table is read with only those plus the bookkeeping columns. Every file of a foreign
    table must default the same bookkeeping columns (a mix would mix key definitions). Errors
    (:class:`FeatureTableError`) start with ``what`` and name the file. The index is a fresh
    RangeIndex; ``run``/``event`` are int64, ``truth_label`` int32. A (run, event) key that
    occurs twice is a :class:`DuplicateEventsError` naming the files, or with
    ``allow_duplicates`` a WARNING (:func:`check_unique_events`). An ``adhunt features``
    directory whose manifest says it is incomplete is refused unless ``allow_partial`` (default:
    :func:`partial_reading`'s setting, i.e. the CLI's ``--allow-partial``).
    """
    root = Path(path)
    with_images = columns is not None and any(c in IMAGE_PSEUDO_COLUMNS for c in columns)
    if columns is not None:  # derived features (mj1_over_mjj, ...) are read as their ingredients
        from adhunt.dijet import required_columns

        columns = required_columns([c for c in columns if c not in IMAGE_PSEUDO_COLUMNS])
    wanted = None if datasets is None else list(datasets)
    chunks = is_chunk_directory(root)
    if with_images and not (chunks or is_chunk_dataset_directory(root)):
        raise FeatureTableError(
            f"{what}: {root} is not an `adhunt features` directory, so it has no jet images "
            f"({', '.join(IMAGE_PSEUDO_COLUMNS)}); run `adhunt features --images`"
        )
    if chunks or is_chunk_dataset_directory(root):
        try:
            if chunks:
                frame, sources = _read_chunks(root, wanted, allow_partial=allow_partial)
            else:  # one dataset of a chunk directory: its name is the dataset's
                if wanted is not None and wanted != [root.name]:
                    raise FeatureTableError(
                        f"{root} holds only dataset {root.name!r}, asked for {wanted}"
                    )
                frame, sources = _read_chunks(root.parent, [root.name], allow_partial=allow_partial)
        except FeatureTableError as err:
            raise FeatureTableError(f"{what}: {err}") from err
        needed = list(dict.fromkeys([RESONANT_VARIABLE, *(columns or ())]))
        missing = [c for c in needed if c not in frame.columns]
        if missing:
            raise FeatureTableError(
                f"{what}: feature directory {root} lacks column(s) {missing} (e.g. in "
                f"{sources[0][0]}); its tables have {list(frame.columns)}"
            )
        check_unique_events(
            frame, what, allow_duplicates=allow_duplicates, row_files=_row_files(sources)
        )
        if with_images:  # same chunk order as _read_chunks: rows align (lengths checked)
            try:
                frame = with_image_columns(frame, read_images(root, wanted))
            except FeatureTableError as err:
                raise FeatureTableError(f"{what}: {err}") from err
        return frame
    try:
        files = table_files(root)
    except FeatureTableError as err:
        raise FeatureTableError(f"{what}: {err}") from err
    if not files:
        raise FeatureTableError(f"{what}: no parquet files in {root}")
    frames: list[pd.DataFrame] = []
    first: tuple[Path, list[str], set[str]] | None = None
    sources: list[tuple[Path, int]] = []
    for file in files:
        frame, defaulted = _read_foreign_file(root, file, columns, what)
        if first is None:
            first = (file, defaulted, set(frame.columns))
        elif defaulted != first[1]:
            raise FeatureTableError(
                f"{what}: {file} lacks bookkeeping column(s) {defaulted} but {first[0]} lacks "
                f"{first[1]}; the files mix definitions (add the columns to every file or to none)"
            )
        elif set(frame.columns) != first[2]:
            differ = sorted(set(frame.columns) ^ first[2])
            raise FeatureTableError(
                f"{what}: {file} and {first[0]} have different columns ({differ}); "
                "the files mix definitions"
            )
        frames.append(frame)
        sources.append((file, len(frame)))
    frame = pd.concat(frames, ignore_index=True)
    row_files = _row_files(sources)
    extra = [c for c in frame.columns if c not in BOOKKEEPING_COLUMNS]
    frame = frame[["dataset", "run", "event", *extra, "truth_label"]]
    if "event" in first[1]:
        log.warning(
            "%s: %s has no 'event' column; events are keyed by (file, row number), so the "
            "k-fold split follows the row order of the files",
            what, root,
        )  # fmt: skip
    if wanted is not None:
        present = set(frame["dataset"])
        unknown = [d for d in wanted if d not in present]
        if unknown:
            raise FeatureTableError(
                f"{what}: no dataset(s) {unknown} in {root} (datasets: {sorted(present)})"
            )
        keep = frame["dataset"].isin(wanted).to_numpy()
        frame, row_files = frame[keep].reset_index(drop=True), row_files[keep]
    hint = ""
    if "run" in first[1] or "event" in first[1]:
        hint = (
            " (the files have no run/event columns: keys default to (CRC-32 of the file name, "
            "row number), so files with the same name share keys; give them run and event)"
        )
    check_unique_events(
        frame, what, allow_duplicates=allow_duplicates, row_files=row_files, hint=hint
    )
    return frame


def _row_files(sources: Sequence[tuple[Path, int]]) -> np.ndarray:
    """The file of each row of a concatenation of ``[(file, n_rows), ...]``."""
    names = np.asarray([str(path) for path, _ in sources], dtype=object)
    return np.repeat(names, [n for _, n in sources])

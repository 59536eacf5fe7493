"""The manifest of a feature directory: what each dataset's tables were made from, and whether
they are all there.

``adhunt features`` writes ``<output_dir>/manifest.json`` before it processes anything and again
when it stops (finished, interrupted or failed). Per dataset it records the resolved feature
configuration (``config_to_dict(FeatureConfig)``, as ``features_config.json`` echoes it), the
dataset's event weighting, the chunk size, the input files with their identity (resolved path,
size, mtime_ns, tree, entries), the chunks expected ``[file, entrystart, entrystop]``, the chunks
done, what was skipped, the dataset's cutflow and a status (``running`` | ``interrupted`` |
``failed`` | ``complete``). Readers (:func:`check_directory`, called by
``adhunt.tables.read_features``) refuse a directory whose datasets are incomplete, were written
with different feature configurations, or hold files the manifest does not list.

Each chunk file also carries its own stamp in the parquet key-value metadata (key ``adhunt``):
the fingerprint of (feature configuration, weighting), the identity of its input file, and the
chunk's cutflow and warnings. A chunk on disk whose stamp matches the new run is done and is not
processed again (resume), whatever happened to the manifest (a SIGKILL between two writes); the
cutflow of a resumed run is summed from the stamps, so it equals an uninterrupted run's.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import shutil
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from adhunt.config import write_json
from adhunt.tables import MANIFEST_NAME, chunk_filename, image_path

log = logging.getLogger(__name__)

MANIFEST_FORMAT = "adhunt-features-manifest/1"
#: Where the tables a run replaces wait (hidden: readers skip it) until the run has completed.
PREVIOUS_DIR = ".previous"
#: Parquet key-value metadata key of a chunk's stamp.
CHUNK_STAMP_KEY = b"adhunt"
STATUSES = ("running", "interrupted", "failed", "complete")


def file_identity(name: str) -> dict[str, Any]:
    """What identifies an input file: resolved path, size and mtime_ns (remote URLs: the URL)."""
    if "://" in name:
        return {"path": name}
    path = Path(name).resolve()
    stat = path.stat()
    return {"path": str(path), "size": int(stat.st_size), "mtime_ns": int(stat.st_mtime_ns)}


def fingerprint(
    features: Mapping[str, Any],
    weights: Mapping[str, Any] | None = None,
    depends: Mapping[str, Any] | None = None,
) -> str:
    """SHA-256 of the canonical JSON of what decides a chunk's rows: configuration, weighting and
    the content of files the configuration names (``depends``: e.g. the lumi mask's hash)."""
    text = json.dumps(
        {"features": features, "weights": weights or {}, "depends": depends or {}}, sort_keys=True
    )
    return hashlib.sha256(text.encode()).hexdigest()


def content_hash(path: str | Path) -> str:
    """SHA-256 of a (small) file the configuration names, e.g. a golden JSON rewritten in place."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def config_differences(a: Mapping[str, Any], b: Mapping[str, Any], prefix: str = "") -> list[str]:
    """``["radius: 0.4 vs 1.0", "trigger.pt_min: ..."]``: the fields where two config dicts differ."""
    out = []
    for key in sorted(set(a) | set(b)):
        va, vb = a.get(key), b.get(key)
        if isinstance(va, Mapping) and isinstance(vb, Mapping):
            out.extend(config_differences(va, vb, f"{prefix}{key}."))
        elif va != vb:
            out.append(f"{prefix}{key}: {va!r} vs {vb!r}")
    return out


Chunk = tuple[str, int, int]


@dataclass
class DatasetRecord:
    """One dataset of a feature directory (see the module doc)."""

    features: dict[str, Any]
    chunksize: int
    inputs: list[dict[str, Any]]
    chunks: list[Chunk]
    weights: dict[str, Any] = field(default_factory=dict)
    depends: dict[str, Any] = field(default_factory=dict)
    done: list[Chunk] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)
    #: chunks that failed or were skipped, ``[file, start, stop, reason]`` (a whole unusable file:
    #: ``[file, 0, None, reason]``); ``adhunt.runsummary`` reports them, --retry-failed reruns them
    failed: list[list[Any]] = field(default_factory=list)
    cutflow: dict[str, int] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    status: str = "running"
    #: tables written before manifests existed: their chunk file names (their chunks are unknown)
    legacy_files: list[str] = field(default_factory=list)

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.features, self.weights, self.depends)

    @property
    def complete(self) -> bool:
        return self.status == "complete"

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["chunks"] = [list(c) for c in self.chunks]
        data["done"] = [list(c) for c in self.done]
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DatasetRecord:
        names = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: v for k, v in data.items() if k in names}
        kwargs["chunks"] = [(str(f), int(a), int(b)) for f, a, b in data.get("chunks", [])]
        kwargs["done"] = [(str(f), int(a), int(b)) for f, a, b in data.get("done", [])]
        kwargs["failed"] = [
            [str(f), int(a), None if b is None else int(b), str(r)]
            for f, a, b, r in data.get("failed", [])
        ]
        return cls(**kwargs)


@dataclass
class Manifest:
    """All datasets of one feature directory."""

    datasets: dict[str, DatasetRecord] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": MANIFEST_FORMAT,
            "datasets": {d: r.to_dict() for d, r in sorted(self.datasets.items())},
        }


class ManifestError(ValueError):
    """A manifest that cannot be read, or a directory it says cannot be used as it is."""


def load_manifest(directory: str | Path) -> Manifest | None:
    """The manifest of a feature directory, or None when it has none (older or foreign tables)."""
    path = Path(directory) / MANIFEST_NAME
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
        if data.get("format") != MANIFEST_FORMAT:
            raise ValueError(f"unknown format {data.get('format')!r}")
        datasets = {d: DatasetRecord.from_dict(r) for d, r in data["datasets"].items()}
    except (ValueError, KeyError, TypeError) as err:
        raise ManifestError(f"unreadable manifest {path}: {err}") from err
    return Manifest(datasets)


def write_manifest(directory: str | Path, manifest: Manifest) -> Path:
    """Write the manifest atomically (a killed job leaves the old one or the new one)."""
    return write_json(Path(directory) / MANIFEST_NAME, manifest.to_dict())


# --- chunk stamps -----------------------------------------------------------------------------


def chunk_stamp(path: str | Path) -> dict[str, Any] | None:
    """The stamp a chunk file carries (None: written without one, or unreadable)."""
    import pyarrow.parquet as pq

    try:
        metadata = pq.read_schema(path).metadata or {}
    except Exception:  # a damaged file is simply not done
        return None
    raw = metadata.get(CHUNK_STAMP_KEY)
    if raw is None:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return None


def stamp_matches(stamp: Mapping[str, Any] | None, fp: str, identity: Mapping[str, Any]) -> bool:
    """Whether a chunk stamped ``stamp`` was made by this configuration from this input file."""
    return stamp is not None and stamp.get("fingerprint") == fp and stamp.get("input") == identity


# --- readers ----------------------------------------------------------------------------------


def _chunk_paths(directory: Path, dataset: str, chunks: Iterable[Chunk]) -> dict[str, Chunk]:
    return {Path(chunk_filename(dataset, f, a, b)).name: (f, a, b) for f, a, b in chunks}


def missing_chunks(directory: str | Path, dataset: str, record: DatasetRecord) -> list[Chunk]:
    """Expected chunks of ``dataset`` whose file is not in the directory."""
    root = Path(directory) / dataset
    present = {p.name for p in root.glob("*.parquet")} if root.is_dir() else set()
    return [
        c for name, c in _chunk_paths(root, dataset, record.chunks).items() if name not in present
    ]


def check_directory(
    directory: str | Path, datasets: Iterable[str] | None = None, allow_partial: bool = False
) -> None:
    """Refuse (:class:`ManifestError`) a feature directory that cannot be read as one table.

    Checked for ``datasets`` (default: all of the directory): each is in the manifest, its files
    are exactly the chunks the manifest lists, none is missing (unless ``allow_partial``: then a
    WARNING says how many chunks and events are missing), and all were made with the same feature
    configuration. A directory without a manifest is not checked.
    """
    root = Path(directory)
    manifest = load_manifest(root)
    if manifest is None:
        return
    if datasets is None:
        names = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
        names = sorted(set(names) | set(manifest.datasets))
    else:
        names = list(datasets)
    unknown = [d for d in names if d not in manifest.datasets]
    if unknown:
        raise ManifestError(
            f"feature directory {root}: dataset(s) {unknown} are not in its {MANIFEST_NAME} "
            "(copied in from another run?); their feature configuration is unknown"
        )
    first: tuple[str, DatasetRecord] | None = None
    for name in names:
        record = manifest.datasets[name]
        if first is None:
            first = (name, record)
        elif record.features != first[1].features:
            differ = "; ".join(config_differences(first[1].features, record.features))
            raise ManifestError(
                f"feature directory {root}: datasets {first[0]!r} and {name!r} were written with "
                f"different feature configurations ({differ}); rerun them with one configuration"
            )
    incomplete = []
    for name in names:
        record = manifest.datasets[name]
        expected = _chunk_paths(root / name, name, record.chunks)
        expected.update({n: ("", 0, 0) for n in record.legacy_files})
        folder = root / name
        present = {p.name for p in folder.glob("*.parquet")} if folder.is_dir() else set()
        extra = sorted(present - set(expected))
        if extra:
            raise ManifestError(
                f"feature directory {root}: {folder / extra[0]} (and {len(extra) - 1} more) "
                f"are not chunks of the run recorded in {MANIFEST_NAME}; remove them or rerun"
            )
        missing = [c for n, c in expected.items() if n not in present]
        if not missing and record.complete:
            continue
        events = sum(b - a for _, a, b in record.chunks)
        lost = sum(b - a for _, a, b in missing)
        incomplete.append(
            f"dataset {name!r} ({record.status}) is missing {len(missing)} of "
            f"{len(record.chunks)} chunks ({lost} of {events} events)"
        )
    if not incomplete:
        return
    what = ", ".join(incomplete)
    if allow_partial:
        log.warning("feature directory %s: %s; reading what is there (--allow-partial)", root, what)
        return
    raise ManifestError(
        f"feature directory {root} is incomplete: {what}; rerun the same `adhunt features` "
        "command to resume it, or pass --allow-partial to read what is there"
    )


# --- the writer's bookkeeping -----------------------------------------------------------------


def move_aside(directory: str | Path, dataset: str, files: Iterable[Path]) -> int:
    """Move a dataset's replaced chunk files (and their jet images) to ``.previous/<dataset>/``
    (restored on failure)."""
    target = Path(directory) / PREVIOUS_DIR / dataset
    n = 0
    for path in files:
        target.mkdir(parents=True, exist_ok=True)
        path.replace(target / path.name)
        images = image_path(path)
        if images.is_file():
            images.replace(target / images.name)
        n += 1
    return n


def restore_previous(directory: str | Path, dataset: str, keep: Iterable[str]) -> None:
    """Undo a failed run of ``dataset``: remove its chunk files except ``keep`` (names), and put
    back what :func:`move_aside` moved."""
    folder = Path(directory) / dataset
    keep = set(keep)
    if folder.is_dir():
        for path in folder.glob("*.parquet"):
            if path.name not in keep:
                path.unlink()
                image_path(path).unlink(missing_ok=True)
    aside = Path(directory) / PREVIOUS_DIR / dataset
    if aside.is_dir():
        folder.mkdir(parents=True, exist_ok=True)
        for path in aside.iterdir():
            path.replace(folder / path.name)
        discard_previous(directory, dataset)


def discard_previous(directory: str | Path, dataset: str) -> None:
    """Drop the tables a completed run of ``dataset`` has replaced."""
    root = Path(directory) / PREVIOUS_DIR
    shutil.rmtree(root / dataset, ignore_errors=True)
    if root.is_dir() and not any(root.iterdir()):
        root.rmdir()


def check_other_datasets(
    directory: str | Path,
    manifest: Manifest | None,
    features: Mapping[str, Any],
    run_datasets: Iterable[str],
    restart: bool = False,
) -> list[str]:
    """Datasets of the directory that a new run (``run_datasets``, configuration ``features``)
    leaves alone but that were made with another configuration: refused (:class:`ManifestError`
    naming the dataset and the fields) unless ``restart``; then they are returned, to be removed
    once the new run has completed. A directory without a manifest is compared with the
    configuration its ``features_config.json`` echoes."""
    from adhunt.tables import FEATURES_CONFIG_NAME

    root = Path(directory)
    run = set(run_datasets)
    others: dict[str, Mapping[str, Any]] = {}
    if manifest is not None:
        others = {d: r.features for d, r in manifest.datasets.items() if d not in run}
    elif (root / FEATURES_CONFIG_NAME).is_file():
        try:
            old = json.loads((root / FEATURES_CONFIG_NAME).read_text()).get("features") or {}
        except ValueError:
            old = {}
        on_disk = [p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")]
        others = {d: old for d in on_disk if d not in run and old}
    differing = {d: f for d, f in others.items() if dict(f) != dict(features)}
    if differing and not restart:
        name, old = sorted(differing.items())[0]
        differ = "; ".join(config_differences(old, features))
        raise ManifestError(
            f"{root} holds dataset {name!r} made with another feature configuration ({differ}, "
            f"old vs new); rerun it too (add it to the fileset), use another output directory, or "
            "pass --restart to replace the directory's tables"
        )
    return sorted(differing)


def prepare_dataset(
    directory: str | Path,
    dataset: str,
    new: DatasetRecord,
    previous: DatasetRecord | None,
    identities: Mapping[str, Mapping[str, Any]],
    restart: bool = False,
) -> set[str]:
    """Before a run of ``dataset``: the names of its chunk files that are already done (stamped
    by the same configuration, weighting and input file; none with ``restart``). Every other file
    in the dataset's folder is stale: set aside (``.previous``) when it belongs to a complete
    set of tables (restored if the run fails, dropped when it completes), deleted when it is
    left over from an unfinished run. A resume with another chunk size is refused."""
    folder = Path(directory) / dataset
    if (
        previous is not None
        and not previous.complete
        and not restart
        and previous.fingerprint == new.fingerprint
        and previous.chunksize != new.chunksize
    ):
        raise ManifestError(
            f"dataset {dataset!r} in {directory} has an unfinished run with chunksize "
            f"{previous.chunksize}; resume it with --chunksize {previous.chunksize}, or pass "
            "--restart to start over"
        )
    if not folder.is_dir():
        return set()
    for tmp in folder.glob(".*.tmp"):  # a write killed between its two steps
        tmp.unlink(missing_ok=True)
    expected = _chunk_paths(folder, dataset, new.chunks)
    fp = new.fingerprint
    done: set[str] = set()
    stale: list[Path] = []
    for path in sorted(folder.glob("*.parquet")):
        chunk = expected.get(path.name)
        if (
            not restart
            and chunk is not None
            and stamp_matches(chunk_stamp(path), fp, identities.get(chunk[0], {}))
        ):
            done.add(path.name)
        else:
            stale.append(path)
    if stale and (previous is None or previous.complete):
        move_aside(directory, dataset, stale)
        log.info(
            "dataset %s: %d table(s) of the previous run set aside in %s until this run completes",
            dataset, len(stale), Path(directory) / PREVIOUS_DIR / dataset,
        )  # fmt: skip
    elif stale:
        for path in stale:
            path.unlink()
            image_path(path).unlink(missing_ok=True)
        log.info("dataset %s: removed %d chunk(s) of an unfinished run", dataset, len(stale))
    return done


def finish_dataset(
    directory: str | Path,
    dataset: str,
    new: DatasetRecord,
    previous: DatasetRecord | None,
    identities: Mapping[str, Mapping[str, Any]],
    done_before: set[str],
    outcome: str,
    skip_missing: bool = False,
    steps: Iterable[str] = (),
) -> DatasetRecord | None:
    """After a run of ``dataset`` (``outcome``: ``complete`` | ``interrupted`` | ``failed``): the
    record to keep. Done chunks are the files on disk with a matching stamp; the cutflow and
    warnings are summed from their stamps in chunk order, so a resumed run's equal an
    uninterrupted one's. With ``skip_missing`` (--skip-bad-files) a run that went through ends
    ``complete`` and the chunks it skipped are no longer expected. A dataset that did not
    complete goes back to its previous complete tables when it had some (``failed``; returns
    that record, or None for tables that predate manifests), else it is kept, marked, for a
    resume."""
    folder = Path(directory) / dataset
    chunks = list(new.chunks)
    fp = new.fingerprint
    cutflow = dict.fromkeys(steps, 0)
    warnings: list[str] = []
    done: list[Chunk] = []
    for name, chunk in _chunk_paths(folder, dataset, chunks).items():
        path = folder / name
        stamp = chunk_stamp(path) if path.is_file() else None
        if not stamp_matches(stamp, fp, identities.get(chunk[0], {})):
            continue
        done.append(chunk)
        for step, n in (stamp.get("cutflow") or {}).items():
            cutflow[step] = cutflow.get(step, 0) + int(n)
        warnings.extend(stamp.get("warnings") or [])
    if outcome == "complete" and skip_missing:
        chunks = done
    complete = len(done) == len(chunks)
    aside = Path(directory) / PREVIOUS_DIR / dataset
    restorable = previous.complete if previous is not None else aside.is_dir()
    if not complete and outcome == "failed" and restorable:
        restore_previous(directory, dataset, keep=done_before)
        log.info("dataset %s: the run failed; its previous tables are back in place", dataset)
        return previous
    if complete:
        status = "complete"
        discard_previous(directory, dataset)
    else:
        status = "interrupted" if outcome == "interrupted" else "failed"
    return dataclasses.replace(
        new, chunks=chunks, done=done, cutflow=cutflow, warnings=warnings, status=status
    )


def adopt_legacy_datasets(
    directory: str | Path,
    manifest: Manifest,
    features: Mapping[str, Any],
    run_datasets: Iterable[str],
) -> list[str]:
    """Record the datasets of a directory written before manifests existed (and not rerun now)
    as complete, with the configuration its ``features_config.json`` echoes (or, without one,
    ``features``), so that a run over some datasets leaves the others readable."""
    from adhunt.tables import FEATURES_CONFIG_NAME

    root = Path(directory)
    run = set(run_datasets)
    old: Mapping[str, Any] = {}
    if (root / FEATURES_CONFIG_NAME).is_file():
        try:
            old = json.loads((root / FEATURES_CONFIG_NAME).read_text()).get("features") or {}
        except ValueError:
            old = {}
    adopted = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        if folder.name in run or folder.name in manifest.datasets:
            continue
        names = sorted(p.name for p in folder.glob("*.parquet"))
        if not names:
            continue
        manifest.datasets[folder.name] = DatasetRecord(
            features=dict(old or features), chunksize=0, inputs=[], chunks=[],
            status="complete", legacy_files=names,
        )  # fmt: skip
        adopted.append(folder.name)
    if adopted and not old:
        log.warning(
            "%s: dataset(s) %s predate manifests and %s; recorded with this run's configuration",
            root, adopted, FEATURES_CONFIG_NAME + " is missing",
        )  # fmt: skip
    return adopted


def remove_dataset(directory: str | Path, dataset: str) -> None:
    """Remove a dataset's tables (``--restart`` over a directory of another configuration)."""
    shutil.rmtree(Path(directory) / dataset, ignore_errors=True)
    discard_previous(directory, dataset)


# --- per-chunk partial results of `adhunt infer` ----------------------------------------------

#: Under an infer output: one partial result per chunk, merged at the end (resume skips them).
PARTIALS_DIR = ".partials"


def partial_path(directory: str | Path, dataset: str, filename: str, start: int, stop: int) -> Path:
    """Where one chunk's partial result lives (named like its feature table, ``.npz``)."""
    name = chunk_filename(dataset, filename, start, stop).removesuffix(".parquet") + ".npz"
    return Path(directory) / PARTIALS_DIR / name


def write_partial(
    path: str | Path, arrays: Mapping[str, Any], meta: Mapping[str, Any], stamp: Mapping[str, Any]
) -> Path:
    """One chunk's result: numeric ``arrays`` (a histogram's view) and JSON ``meta`` with the
    ``stamp`` (what made it), written atomically as ``.npz`` (no pickle: nothing in an output
    directory is ever executed when it is read back)."""
    import os

    import numpy as np

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps({"stamp": dict(stamp), "meta": dict(meta)}, sort_keys=True)
    payload = {k: np.asarray(v) for k, v in arrays.items()}
    payload["__json__"] = np.frombuffer(text.encode(), dtype=np.uint8)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as handle:
            np.savez(handle, **payload)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def read_partial(path: str | Path) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]] | None:
    """``(arrays, meta, stamp)`` of a partial written by :func:`write_partial`; None if it is
    damaged (then it is simply computed again)."""
    import numpy as np

    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files if k != "__json__"}
            doc = json.loads(data["__json__"].tobytes())
        return arrays, doc["meta"], doc["stamp"]
    except Exception:
        return None

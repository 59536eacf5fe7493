"""Filesets (``{dataset: files}``, coffea's forms) read once, with every input file identified.

Why a module of its own: the same file listed twice (twice in one dataset, under two datasets,
through a symlink, or as ``./a.root`` next to ``a.root``) would be processed twice and every one
of its events counted twice. Each entry is therefore identified before any work starts:

* a local file by its ``(st_dev, st_ino)`` (so symlinks, hard links and bind mounts of one file
  are recognised), or by its resolved path while it does not exist;
* a remote file (``root://``, ``https://`` ...) by its normalised URL (scheme and host lower
  case, repeated slashes and ``.``/``..`` removed from the path, no fragment);

together with the tree read from it (two trees of one file are different data). The same
identity twice anywhere in the fileset is a :class:`FilesetError` naming both entries as written
(dataset and path); with ``dedupe_files`` the later entries are dropped instead, each with a
WARNING. A fileset JSON whose objects repeat a key (which ``json.loads`` would silently collapse
to the last value) is treated the same way: a repeated file is a duplicate entry, a repeated
dataset or field with a different value is always an error (dropping it would lose files).
"""

from __future__ import annotations

import json
import logging
import os
import posixpath
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

log = logging.getLogger(__name__)

#: Tree read when neither the fileset nor the caller names one (NanoAOD).
DEFAULT_TREE = "Events"


class FilesetError(ValueError):
    """A fileset that cannot be used as given; the message names the dataset(s) and entries."""


@dataclass(frozen=True)
class Duplicate:
    """A fileset entry that names the same input as an earlier one (dataset and path as written)."""

    dataset: str
    name: str
    first_dataset: str
    first_name: str
    identity: str

    def describe(self) -> str:
        return (
            f"{self.first_dataset}: {self.first_name!r} and {self.dataset}: {self.name!r} "
            f"(the same file: {self.identity})"
        )


def file_identity(name: str) -> str:
    """What makes two spellings of an input file the same file (see the module doc).

    Local files: ``"inode <st_dev>:<st_ino>"`` (the same for every path of one file: symlinks,
    hard links, bind mounts), or ``"file <resolved path>"`` while the file does not exist (the
    missing file is reported later by name); remote ones: ``"url <normalised URL>"``.
    """
    if "://" not in name:
        return _local_identity(Path(name))
    parts = urlsplit(name)
    scheme = parts.scheme.lower()
    if scheme == "file":
        return _local_identity(Path(parts.path))
    path = posixpath.normpath("/" + parts.path.lstrip("/")) if parts.path else ""
    return "url " + urlunsplit((scheme, parts.netloc.lower(), path, parts.query, ""))


def _local_identity(path: Path) -> str:
    resolved = path.expanduser().resolve()
    try:
        stat = os.stat(resolved)
    except OSError:
        return f"file {resolved}"
    return f"inode {stat.st_dev}:{stat.st_ino}"


class _Object(dict):
    """A JSON object that remembers the keys it saw more than once (``json`` keeps the last)."""

    repeated: list[tuple[str, Any, Any]]


def _object_pairs(pairs: list[tuple[str, Any]]) -> _Object:
    out = _Object()
    out.repeated = []
    for key, value in pairs:
        if key in out:
            out.repeated.append((key, out[key], value))
        else:
            out[key] = value
    return out


def read_fileset_json(path: str | Path) -> dict[str, Any]:
    """The JSON of a fileset file, with repeated keys remembered (see :func:`load_datasets`)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"fileset not found: {path}")
    try:
        return json.loads(path.read_text(), object_pairs_hook=_object_pairs)
    except json.JSONDecodeError as err:
        raise FilesetError(f"fileset {path} is not valid JSON: {err}") from err


def _repeated(obj: Any) -> list[tuple[str, Any, Any]]:
    return list(getattr(obj, "repeated", []))


def load_datasets(
    fileset: str | Path | dict[str, Any],
    default_tree: str = DEFAULT_TREE,
    *,
    dedupe_files: bool = False,
) -> dict[str, dict[str, Any]]:
    """``{dataset: {"files": {file: tree}, "metadata": {...}}}`` from a fileset JSON path or mapping.

    Accepts coffea's forms per dataset: a list of files, ``{"files": [...]}`` (tree
    ``"treename"`` or ``default_tree``), or ``{"files": {file: tree}}``; ``"metadata"`` (e.g.
    ``xsec`` in pb, ``is_data``) is kept. Relative paths in a JSON file are taken relative to
    the JSON file's directory (when the file is there). The same input twice is refused, or with
    ``dedupe_files`` kept once (the first entry) with a WARNING per dropped entry; see the module
    doc. A dataset left without files by that keeps its name (its cutflow is zeros).
    """
    base: Path | None = None
    where = "fileset"
    if not isinstance(fileset, dict):
        path = Path(fileset)
        fileset = read_fileset_json(path)
        base = path.parent
        where = f"fileset {path}"
    if not isinstance(fileset, dict) or not fileset:
        raise FilesetError("a fileset must be a non-empty mapping {dataset: files}")
    _check_repeated_keys(fileset, where, dedupe_files)
    out: dict[str, dict[str, Any]] = {}
    seen: dict[tuple[str, str], tuple[str, str, str]] = {}
    duplicates: list[Duplicate] = []
    for dataset, entry in fileset.items():
        if isinstance(entry, dict):
            _check_repeated_keys(entry, f"{where}, dataset {dataset!r}", dedupe_files)
        files = entry.get("files") if isinstance(entry, dict) else entry
        metadata = entry.get("metadata") if isinstance(entry, dict) else None
        tree = entry.get("treename", default_tree) if isinstance(entry, dict) else default_tree
        if metadata is not None and not isinstance(metadata, dict):
            raise FilesetError(f"fileset dataset {dataset!r}: 'metadata' must be a mapping")
        if isinstance(files, dict):
            pairs = [*files.items(), *((k, v) for k, _, v in _repeated(files))]
        elif isinstance(files, list):
            pairs = [(f, tree) for f in files]
        else:
            pairs = []
        if not pairs or not all(isinstance(f, str) and isinstance(t, str) for f, t in pairs):
            raise FilesetError(
                f"fileset dataset {dataset!r}: expected a list of file names or a mapping "
                "{file: tree name}"
            )
        resolved: dict[str, str] = {}
        for name, tree_name in pairs:
            local = _locate(name, base)
            key = (file_identity(local), tree_name)
            if key in seen:
                first_dataset, first_name, first_local = seen[key]
                shown = local if local == first_local else f"{first_local} = {local}"
                if tree_name != default_tree:
                    shown += f", tree {tree_name}"
                duplicates.append(Duplicate(dataset, name, first_dataset, first_name, shown))
                continue
            if resolved.get(local, tree_name) != tree_name:
                raise FilesetError(
                    f"fileset dataset {dataset!r}: {name!r} is given with trees "
                    f"{resolved[local]!r} and {tree_name!r}; a dataset reads one tree per file"
                )
            seen[key] = (dataset, name, local)
            resolved[local] = tree_name
        out[dataset] = {"files": resolved, "metadata": dict(metadata or {})}
    if duplicates and not dedupe_files:
        shown = "; ".join(d.describe() for d in duplicates[:5])
        more = f" (and {len(duplicates) - 5} more)" if len(duplicates) > 5 else ""
        raise FilesetError(
            f"{where} lists the same input file more than once: {shown}{more}; its events would "
            "be counted twice (remove the repeats, or use --dedupe-files to process each file once)"
        )
    for d in duplicates:
        log.warning(
            "%s: dropped %s: %r, the same file as %s: %r (%s)",
            where, d.dataset, d.name, d.first_dataset, d.first_name, d.identity,
        )  # fmt: skip
    return out


def load_fileset(
    fileset: str | Path | dict[str, Any], *, dedupe_files: bool = False
) -> dict[str, list[str]]:
    """``{dataset: [file, ...]}`` from a fileset JSON path or mapping (see :func:`load_datasets`)."""
    return {
        d: list(entry["files"])
        for d, entry in load_datasets(fileset, dedupe_files=dedupe_files).items()
    }


def _locate(name: str, base: Path | None) -> str:
    """The path an entry names: relative paths of a JSON file are looked up next to it first."""
    if "://" in name:
        return name
    p = Path(name)
    if not p.is_absolute() and base is not None and (base / p).exists():
        p = base / p
    return str(p.resolve())


def _check_repeated_keys(obj: Any, where: str, dedupe: bool) -> None:
    """Repeated JSON keys: an error unless the values agree and ``dedupe`` (then a WARNING).

    Not for file mappings (``{file: tree}``): their repeats are duplicate entries.
    """
    for key, first, later in _repeated(obj):
        if first == later and dedupe:
            log.warning(
                "%s: key %r is given twice with the same value; dropped the repeat", where, key
            )
            continue
        same = "the same value" if first == later else "different values"
        raise FilesetError(
            f"{where}: key {key!r} is given twice (with {same}); a JSON reader would silently "
            "keep only the last"
            + (", use --dedupe-files to keep it once" if first == later else "; merge them")
        )


#: File names a fileset is built from (ROOT files; RNTuple or TTree inside).
ROOT_SUFFIXES = (".root",)


def build_fileset(
    sources: list[str],
    *,
    dataset: str | None = None,
    tree: str = "Events",
    split: int | None = None,
) -> dict[str, dict[str, Any]]:
    """A coffea fileset ``{dataset: {"files": {file: tree}, "metadata": {}}}`` from sources.

    Each source is a directory, a glob (``data/*/nano_*.root``), a ROOT file, or a remote URL
    (``root://host//path.root``, passed through unchanged for uproot: fsspec-xrootd reads it).
    A directory gives one dataset per subdirectory holding ROOT files (named after it) and one
    for the ROOT files directly inside it (named after the directory); a glob or a file belongs
    to ``dataset``, or else to the name of its parent directory. ``dataset`` names every file's
    dataset when given. ``split`` keeps only the first N files of each dataset (sorted by path),
    for a quick test fileset. The result goes through :func:`load_datasets`, so a file reached
    twice (two globs, a symlink) is refused like in any hand-written fileset.
    """
    import glob

    if split is not None and split < 1:
        raise FilesetError(f"--split must be >= 1, got {split}")
    found: dict[str, list[str]] = {}

    def add(name: str, file: str) -> None:
        found.setdefault(dataset or name, []).append(file)

    for source in sources:
        if "://" in source:
            if glob.has_magic(source):
                raise FilesetError(f"remote globs are not expanded, list the files: {source}")
            add(Path(urlsplit(source).path).parent.name or "remote", source)
            continue
        path = Path(source)
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.suffix in ROOT_SUFFIXES and p.is_file())
            files = [
                p for p in files if not any(s.startswith(".") for s in p.relative_to(path).parts)
            ]
            if not files:
                raise FilesetError(f"no ROOT files (*.root) under {path}")
            for file in files:
                relative = file.relative_to(path)
                add(
                    relative.parts[0] if len(relative.parts) > 1 else path.resolve().name, str(file)
                )
            continue
        matches = sorted(glob.glob(source, recursive=True)) if glob.has_magic(source) else []
        if glob.has_magic(source) and not matches:
            raise FilesetError(f"no file matches {source!r}")
        for match in matches or [source]:
            file = Path(match)
            if not file.is_file():
                raise FilesetError(f"input not found: {match}")
            if file.suffix not in ROOT_SUFFIXES:
                raise FilesetError(f"not a ROOT file (*.root): {match}")
            add(file.resolve().parent.name, match)
    if not found:
        raise FilesetError("no input files given")
    out = {}
    for name, files in found.items():
        repeated = sorted({f for f in files if files.count(f) > 1})
        if repeated:  # two sources reached one file: a dict would silently keep it once
            raise FilesetError(
                f"dataset {name!r}: the same file is reached by more than one source: {repeated[0]}"
            )
        files = sorted(files)[:split] if split is not None else files
        out[name] = {"files": dict.fromkeys(files, tree), "metadata": {}}
    load_datasets(out, tree)  # refuses the same file reached twice, names both entries
    return {
        name: {"files": {_absolute(f): t for f, t in entry["files"].items()}, "metadata": {}}
        for name, entry in out.items()
    }


def _absolute(name: str) -> str:
    return name if "://" in name else str(Path(name).resolve())

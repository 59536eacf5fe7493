"""Output paths checked before any work: a bad ``-o`` fails in a second, not after the training.

Every command calls :func:`check_output_dir` (commands writing a directory) or
:func:`check_output_file` (``score``: one parquet file) on its output before it reads, trains or
processes anything. They refuse, with one line naming the path:

* a file where a directory is needed, or a directory where a file is;
* a path whose parent is a file, or whose nearest existing parent is not writable;
* an existing directory that is not writable;
* a directory holding files, unless ``overwrite`` (``--overwrite``) or it holds an earlier output of
  the same command and that command reruns into its own output by design (``features``,
  ``infer`` and ``generate`` resume or refresh their outputs, ``convert-lhco`` adds datasets next
  to the ones already converted, ``demo`` reuses its samples): see :func:`is_output_of`.

Nothing is created or deleted here; ``overwrite`` only allows writing into a non-empty
directory, the command then replaces the files it writes and leaves the others alone.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from pathlib import Path

__all__ = ["RERUNNABLE", "OutputError", "check_output_dir", "check_output_file", "is_output_of"]


class OutputError(ValueError):
    """An output path that cannot be written as asked (one line, names the path)."""


def _features_output(path: Path) -> bool:
    from adhunt.tables import FEATURES_CONFIG_NAME, is_chunk_directory

    return (
        is_chunk_directory(path)
        or (path / "cutflow.json").is_file()
        or (path / FEATURES_CONFIG_NAME).is_file()
    )


_ROOT_SAMPLE = re.compile(r"^.+_s\d+_\d{4,}\.root$")  # adhunt.generation.output_name


def _generate_output(path: Path) -> bool:
    from adhunt.generation import FILESET_NAME

    return (path / FILESET_NAME).is_file() or any(
        _ROOT_SAMPLE.match(p.name) for p in path.glob("*.root")
    )


def _infer_output(path: Path) -> bool:
    names = ("infer.json", "histograms.json", "histograms.pkl", "histograms.root")
    # .partials: the saved chunk results of an interrupted run, which the same command resumes
    return any((path / n).is_file() for n in names) or (path / ".partials").is_dir()


def _lhco_output(path: Path) -> bool:
    """ROOT files + fileset of the hadron-level conversion, or converted feature tables (each
    ``<name>.parquet`` with its ``<name>.json`` record)."""
    from adhunt.generation import FILESET_NAME

    if (path / FILESET_NAME).is_file():
        return True
    for record in path.glob("*.json"):
        try:
            doc = json.loads(record.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(doc, dict) and str(doc.get("format", "")).startswith("LHC Olympics"):
            return True
    return False


def _demo_output(path: Path) -> bool:
    return (path / "demo.json").is_file() or (path / "fileset.json").is_file()


#: Commands that write into their own earlier output by design, and how each recognises it.
RERUNNABLE: dict[str, Callable[[Path], bool]] = {
    "features": _features_output,
    "infer": _infer_output,
    "generate": _generate_output,
    "convert-lhco": _lhco_output,
    "demo": _demo_output,
}


def is_output_of(command: str, path: str | Path) -> bool:
    """Whether the directory ``path`` holds an earlier output of ``command`` (a rerunnable one)."""
    check = RERUNNABLE.get(command)
    return check is not None and Path(path).is_dir() and check(Path(path))


def _holds_no_files(path: Path) -> bool:
    """True for an empty directory, or one holding only empty directories (what a run that
    failed before writing anything leaves behind)."""
    for _root, _dirs, files in os.walk(path):
        if files:
            return False
    return True


def _writable_dir(path: Path) -> bool:
    return os.access(path, os.W_OK | os.X_OK)


def _check_parent(path: Path) -> None:
    """The nearest existing parent of a path to create must be a writable directory."""
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise OutputError(f"output {path}: {parent} is a file, not a directory")
    if not _writable_dir(parent):
        raise OutputError(f"output {path}: directory {parent} is not writable")


def check_output_dir(
    path: str | Path, *, command: str | None = None, overwrite: bool = False
) -> Path:
    """Check that the directory ``path`` can be written by ``command`` (see the module doc).

    Returns ``Path(path)``; raises :class:`OutputError`. Creates nothing.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputError(f"output {path} exists and is not a directory")
    if not path.exists():
        _check_parent(path)
        return path
    if not _writable_dir(path):
        raise OutputError(f"output directory {path} is not writable")
    if overwrite or _holds_no_files(path):
        return path
    if command is not None and is_output_of(command, path):
        return path
    raise OutputError(
        f"output {path} exists and is not empty"
        + (f" (and is not an earlier adhunt {command} output)" if command in RERUNNABLE else "")
        + "; use --overwrite to write into it"
    )


def check_output_file(path: str | Path) -> Path:
    """Check that the file ``path`` can be written (an existing file is replaced atomically).

    Returns ``Path(path)``; raises :class:`OutputError`. Creates nothing.
    """
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"output {path} is a directory; give the file to write")
    _check_parent(path)
    if path.exists() and not _writable_dir(path.parent):
        raise OutputError(f"output {path}: directory {path.parent} is not writable")
    return path

"""The run record: what produced an output, written next to it so that it can be repeated exactly.

Every command writes one after it succeeds (``adhunt.jobs.cli`` wraps each command): into an
output directory as ``adhunt_run.json``, next to an output file as ``<file>.adhunt_run.json``.
It holds the command, every option of it as the command received it (after the analysis file
and the command line were merged; paths absolute), the analysis file's resolved content, the
content of every configuration file an option named, the seeds, and the software that ran it
(adhunt version, git revision of a git checkout, Python and key package versions), so that
``adhunt rerun OUTPUT`` repeats it and says what changed since.

    record = make_record("features", options, started=t0)
    write_record(record, output)          # the one writer (atomic, strict JSON)
    record = read_record(output)          # the one reader (RunRecordError: one line)

A failed command writes no record, so the record of an earlier good run is never replaced by
one of a failed run.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import importlib.metadata
import json
import os
import platform
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from adhunt.config import json_safe, write_json

__all__ = [
    "KEY_PACKAGES",
    "RECORD_NAME",
    "RECORD_SUFFIX",
    "RUN_RECORD_KIND",
    "RUN_RECORD_VERSION",
    "Environment",
    "RunRecord",
    "RunRecordError",
    "current_environment",
    "find_seeds",
    "git_state",
    "make_record",
    "read_config_file",
    "read_record",
    "record_path",
    "utc_now",
    "write_record",
]

RECORD_NAME = "adhunt_run.json"
RECORD_SUFFIX = ".adhunt_run.json"
RUN_RECORD_KIND = "adhunt run record"
RUN_RECORD_VERSION = 1
#: Packages whose versions change results; recorded and compared by ``adhunt rerun``.
KEY_PACKAGES = (
    "torch",
    "coffea",
    "awkward",
    "numpy",
    "fastjet",
    "uproot",
    "scikit-learn",
    "pythia8mc",
    "dask",
)


class RunRecordError(ValueError):
    """A run record that is missing or cannot be read (one line, names the file)."""


def utc_now() -> str:
    """ISO 8601 UTC time stamp, seconds precision."""
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat()


@functools.lru_cache(maxsize=4)
def git_state(directory: str | None = None) -> tuple[str | None, bool | None]:
    """``(revision, dirty)`` of the git checkout holding ``directory`` (default: this package);
    ``(None, None)`` when it is not in one or git is unavailable. Never raises."""
    where = Path(directory) if directory else Path(__file__).resolve().parent
    try:
        top = subprocess.run(
            ["git", "-C", str(where), "rev-parse", "--show-toplevel"],
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout.strip()  # fmt: skip
        # Only a checkout of adhunt itself: an installed copy inside someone else's repository
        # (a venv in their project) is not described by that repository's revision.
        if not (Path(top) / "adhunt" / "runrecord.py").is_file():
            return None, None
        revision = subprocess.run(
            ["git", "-C", top, "rev-parse", "HEAD"],
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout.strip()  # fmt: skip
        status = subprocess.run(
            ["git", "-C", top, "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, timeout=30, check=True,
        ).stdout  # fmt: skip
    except (OSError, subprocess.SubprocessError, ValueError):
        return None, None
    return (revision or None), bool(status.strip())


@dataclass(frozen=True)
class Environment:
    """The software that ran a command."""

    adhunt_version: str
    git_revision: str | None
    git_dirty: bool | None
    python: str
    packages: dict[str, str | None] = field(default_factory=dict)

    def differences(self, other: Environment) -> list[str]:
        """One line per difference between this (recorded) environment and ``other`` (now)."""
        out = []
        if self.adhunt_version != other.adhunt_version:
            out.append(
                f"adhunt version: recorded {self.adhunt_version}, now {other.adhunt_version}"
            )
        if (self.git_revision, self.git_dirty) != (other.git_revision, other.git_dirty):
            out.append(
                f"git revision: recorded {_revision(self)}, now {_revision(other)}"
            )  # fmt: skip
        if self.python != other.python:
            out.append(f"Python: recorded {self.python}, now {other.python}")
        for name in sorted(set(self.packages) | set(other.packages)):
            a, b = self.packages.get(name), other.packages.get(name)
            if a != b:
                out.append(f"{name}: recorded {a or 'not installed'}, now {b or 'not installed'}")
        return out


def _revision(env: Environment) -> str:
    if env.git_revision is None:
        return "none (not a git checkout)"
    return env.git_revision[:12] + (" (dirty)" if env.git_dirty else "")


def _package_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def current_environment() -> Environment:
    """The environment of this process (git state of the installed adhunt package)."""
    from adhunt import __version__

    revision, dirty = git_state()
    return Environment(
        adhunt_version=__version__,
        git_revision=revision,
        git_dirty=dirty,
        python=platform.python_version(),
        packages={name: _package_version(name) for name in KEY_PACKAGES},
    )


@dataclass(frozen=True)
class RunRecord:
    """What produced an output (see the module doc)."""

    command: str
    options: dict[str, Any]  # every parameter of the command, as it ran (paths absolute)
    seeds: dict[str, Any]  # every seed among the options and the analysis ("train.seed": 3)
    environment: Environment
    started: str  # UTC, ISO 8601
    finished: str
    cwd: str
    # option -> {"path": ..., "content": parsed YAML/TOML} of every configuration file named
    config_files: dict[str, Any] = field(default_factory=dict)
    analysis_file: str | None = None  # the --analysis file, absolute
    analysis: dict[str, Any] | None = None  # its resolved content
    rerun_of: str | None = None  # the output this run repeated (adhunt rerun)
    kind: str = RUN_RECORD_KIND
    version: int = RUN_RECORD_VERSION

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON form (what :func:`write_record` writes)."""
        return json_safe(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "run record") -> RunRecord:
        """Inverse of :meth:`to_dict`; ``source`` names the file in errors."""
        if not isinstance(data, Mapping) or data.get("kind") != RUN_RECORD_KIND:
            raise RunRecordError(f"{source} is not an adhunt run record")
        if data.get("version") != RUN_RECORD_VERSION:
            raise RunRecordError(
                f"{source}: run record version {data.get('version')!r} is not supported (this "
                f"adhunt reads {RUN_RECORD_VERSION})"
            )
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise RunRecordError(f"{source}: unknown run record field(s) {', '.join(unknown)}")
        try:
            env = dict(data["environment"])
            fields = dict(data)
            fields["environment"] = Environment(**env)
            record = cls(**fields)
        except (KeyError, TypeError) as err:
            raise RunRecordError(f"{source}: unreadable run record ({err})") from None
        if not isinstance(record.command, str) or not isinstance(record.options, dict):
            raise RunRecordError(f"{source}: run record needs a command and its options")
        return record


def record_path(output: str | Path) -> Path:
    """Where the record of ``output`` lives: inside a directory, next to a file."""
    output = Path(output)
    if output.name.endswith(RECORD_SUFFIX) or output.name == RECORD_NAME:
        return output
    if output.is_file():
        return output.with_name(output.name + RECORD_SUFFIX)
    return output / RECORD_NAME


def write_record(record: RunRecord, output: str | Path) -> Path | None:
    """Write ``record`` for ``output`` (an existing directory or file); returns its path, None
    when ``output`` does not exist (a dry run, a command that wrote nothing)."""
    output = Path(output)
    if not output.exists():
        return None
    return write_json(record_path(output), record.to_dict())


def read_record(output: str | Path) -> RunRecord:
    """The record of ``output`` (a directory, a file, or the record itself)."""
    path = record_path(output)
    if not Path(output).exists():
        raise RunRecordError(f"{output} does not exist")
    if not path.is_file():
        raise RunRecordError(
            f"{output} has no run record ({path.name} not found): it was not written by a "
            "successful adhunt command that records its runs"
        )
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise RunRecordError(f"cannot read run record {path}: {err}") from None
    return RunRecord.from_dict(data, source=str(path))


def find_seeds(options: Mapping[str, Any], analysis: Mapping[str, Any] | None = None) -> dict:
    """Every seed: options named ``seed``/``*_seed`` and such keys anywhere in ``analysis``
    (as dotted paths, ``train.config.seed``)."""
    seeds = {k: v for k, v in options.items() if _is_seed(k)}
    if analysis:
        seeds.update({f"analysis.{k}": v for k, v in _nested_seeds(analysis).items()})
    return seeds


def _is_seed(name: str) -> bool:
    return name == "seed" or name.endswith("_seed") or name.startswith("seed_")


def _nested_seeds(data: Any, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    if isinstance(data, Mapping):
        for key, value in data.items():
            name = f"{prefix}{key}"
            if isinstance(value, Mapping):
                out.update(_nested_seeds(value, name + "."))
            elif _is_seed(str(key)):
                out[name] = value
    return out


def read_config_file(path: str | Path) -> Any:
    """Parsed content of a YAML/TOML/JSON configuration file; None when it cannot be read."""
    import tomllib
    import yaml

    path = Path(path)
    try:
        text = path.read_text()
        if path.suffix == ".toml":
            return tomllib.loads(text)
        if path.suffix == ".json":
            return json.loads(text)
        return yaml.safe_load(text)
    except (OSError, ValueError, yaml.YAMLError, UnicodeDecodeError):
        return None


def make_record(
    command: str,
    options: Mapping[str, Any],
    *,
    started: str,
    config_options: tuple[str, ...] = (),
    inline_dirs: tuple[str | Path, ...] = (),
    analysis_file: str | Path | None = None,
    analysis: Mapping[str, Any] | None = None,
    rerun_of: str | Path | None = None,
) -> RunRecord:
    """The record of a run of ``command`` that just finished with ``options``.

    Path values become absolute strings; ``config_options`` names the options that are
    configuration files, whose content is recorded too (the file may change or, for an inline
    section of an analysis file, be a temporary file: one below ``inline_dirs``, marked
    ``"inline": true``).
    """
    resolved = {name: _absolute(value) for name, value in options.items()}
    config_files = {}
    for name in config_options:
        value = resolved.get(name)
        if isinstance(value, str) and Path(value).is_file():
            inline = any(Path(value).is_relative_to(Path(d).absolute()) for d in inline_dirs)
            config_files[name] = {
                "path": value, "content": read_config_file(value), "inline": inline,
            }  # fmt: skip
    analysis_dict = None if analysis is None else json_safe(dict(analysis))
    return RunRecord(
        command=command,
        options=json_safe(resolved),
        seeds=json_safe(find_seeds(resolved, analysis_dict)),
        environment=current_environment(),
        started=started,
        finished=utc_now(),
        cwd=os.getcwd(),
        config_files=json_safe(config_files),
        analysis_file=None if analysis_file is None else str(Path(analysis_file).absolute()),
        analysis=analysis_dict,
        rerun_of=None if rerun_of is None else str(rerun_of),
    )


def _absolute(value: Any) -> Any:
    if isinstance(value, Path):
        return os.path.normpath(value.absolute())
    if isinstance(value, list | tuple):
        return [_absolute(v) for v in value]
    return value

"""Explicit configuration: dataclasses loadable from YAML/TOML and echoed into every output.

Every stage keeps its settings in a frozen dataclass (defined next to the code that uses it); this
module only provides the generic round trip so that one config file can drive a run and every
output records exactly what produced it.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import tomllib
import yaml

T = TypeVar("T")


def config_to_dict(config: Any) -> dict[str, Any]:
    """Plain, JSON-serialisable dict of a (possibly nested) config dataclass."""
    if not dataclasses.is_dataclass(config):
        raise TypeError(f"expected a dataclass instance, got {type(config).__name__}")
    return json.loads(json.dumps(dataclasses.asdict(config), default=_json_default))


def _json_default(obj: Any) -> Any:
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, tuple | set | frozenset):
        return list(obj)
    raise TypeError(f"cannot serialise {type(obj).__name__} in a config")


def config_from_dict(cls: type[T], data: dict[str, Any]) -> T:
    """Build ``cls`` from a dict, refusing unknown keys so typos fail loudly."""
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls!r} is not a dataclass")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ValueError(
            f"unknown {cls.__name__} option(s): {', '.join(unknown)}; known: {', '.join(fields)}"
        )
    kwargs: dict[str, Any] = {}
    for name, value in data.items():
        ftype = fields[name].type
        sub = _dataclass_type(ftype)
        if sub is not None and isinstance(value, dict):
            value = config_from_dict(sub, value)
        elif isinstance(value, list) and "tuple" in str(ftype):
            value = tuple(value)
        kwargs[name] = value
    return cls(**kwargs)


def _dataclass_type(ftype: Any) -> type | None:
    if isinstance(ftype, type) and dataclasses.is_dataclass(ftype):
        return ftype
    return None


def load_config(cls: type[T], path: str | Path, section: str | None = None) -> T:
    """Load ``cls`` from a YAML (``.yaml``/``.yml``) or TOML (``.toml``) file, optionally one section."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    text = path.read_text()
    if path.suffix == ".toml":
        data = tomllib.loads(text)
    elif path.suffix in {".yaml", ".yml"}:
        data = yaml.safe_load(text) or {}
    else:
        raise ValueError(f"config file must be .toml, .yaml or .yml: {path}")
    if section is not None:
        if section not in data:
            raise KeyError(f"section [{section}] not found in {path}")
        data = data[section]
    return config_from_dict(cls, data)


def dump_config(config: Any, path: str | Path) -> None:
    """Write a config dataclass as YAML (or JSON for ``.json``)."""
    path = Path(path)
    data = config_to_dict(config)
    if path.suffix == ".json":
        path.write_text(json.dumps(data, indent=2) + "\n")
    else:
        path.write_text(yaml.safe_dump(data, sort_keys=False))


def json_safe(value: Any) -> Any:
    """Plain JSON types from numpy scalars/arrays, tuples and paths; NaN/inf -> None (strict JSON)."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if isinstance(value, np.ndarray):
        return json_safe(value.tolist())
    if isinstance(value, np.generic):
        return json_safe(value.item())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    return value


def write_json(path: str | Path, data: Mapping[str, Any]) -> Path:
    """Strict JSON of ``data`` (:func:`json_safe`), written atomically (temporary file + rename),
    so that a killed job never leaves half a report."""
    text = json.dumps(json_safe(dict(data)), indent=2, allow_nan=False) + "\n"
    return write_text_atomic(path, text)


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write ``text`` through a temporary file and a rename: readers see the old file or the
    new one, never half of one."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path

"""One analysis file: the whole search in one YAML, from the fileset to the bump hunt.

    seed: 7                      # shared keys: given to every command that has the option
    fileset: fileset.json
    cluster: {kind: local}       # inline ClusterConfig (what --cluster-config loads), or a kind
    features:                    # one section per command: its options by name
      output: features
      config: {radius: 1.0}      # inline stage configuration (what --config loads)
    train: {method: cwola, features: features, output: model, config: {n_ensemble: 1}}
    methods:                     # hyper-parameters per method, for train/scan without a config
      cathode: {flow_epochs: 50}
    scan: {features: features, output: scan, config: {window_width: 400}}

``adhunt --analysis FILE COMMAND`` takes the command's options from it; flags on the command line
win. Which sections, keys and inline configurations exist is the command line's business: it
passes an :class:`AnalysisSchema` built from its own parameters, so the file cannot drift from
the options. Unknown keys fail loudly (one line, naming the key and its section).

    data = load_analysis(path, schema)    # checked, keys normalised (dashes -> underscores)
    full = resolve(data, schema)          # every option of every section given, configs filled
    save_analysis(full, path)             # load -> resolve -> save -> load gives the same
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from adhunt.config import config_from_dict, config_to_dict, json_safe, write_text_atomic

__all__ = [
    "METHODS_KEY",
    "AnalysisError",
    "AnalysisSchema",
    "load_analysis",
    "parse_analysis",
    "resolve",
    "save_analysis",
    "section_values",
]

#: Top-level key holding hyper-parameters per method (``methods: {cwola: {...}}``).
METHODS_KEY = "methods"


class AnalysisError(ValueError):
    """An analysis file that cannot be used as written (one line, names the file and the key)."""


#: (section values, key) -> the dataclass an inline mapping of that key is, or None (unchecked)
ConfigResolver = Callable[[Mapping[str, Any], str], type | None]


@dataclass(frozen=True)
class AnalysisSchema:
    """What an analysis file may hold (built by the command line from its parameters).

    ``sections``: command -> {option name: default}. ``shared``: top-level keys given to every
    section having that option. ``configs``: (section, option) -> the dataclass an inline
    mapping of that option holds, or a function of the section's values returning it (e.g. the
    config class of ``train``'s method); section ``"*"`` matches every section and the top level.
    ``method_config``: method name -> its config dataclass (the ``methods`` section); None: the
    ``methods`` section is not accepted.
    """

    sections: Mapping[str, Mapping[str, Any]]
    shared: tuple[str, ...] = ()
    configs: Mapping[tuple[str, str], type | ConfigResolver] = field(default_factory=dict)
    method_config: Callable[[str], type] | None = None

    def config_class(self, section: str, key: str, values: Mapping[str, Any]) -> type | None:
        entry = self.configs.get((section, key), self.configs.get(("*", key)))
        if entry is None or isinstance(entry, type):
            return entry
        return entry(values, key)

    def shared_default(self, key: str) -> Any:
        for options in self.sections.values():
            if key in options:
                return options[key]
        return None


def _key(name: Any) -> str:
    return str(name).replace("-", "_")


def _unknown(source: str, key: str, where: str, known: list[str]) -> AnalysisError:
    close = difflib.get_close_matches(key, known, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return AnalysisError(
        f"{source}: unknown key {key!r} in {where}{hint}; known: {', '.join(sorted(set(known)))}"
    )


def parse_analysis(
    data: Any, schema: AnalysisSchema | None = None, source: str = "analysis"
) -> dict[str, Any]:
    """Check ``data`` (a parsed analysis file) against ``schema``; returns it with option keys
    normalised (``max-jobs`` -> ``max_jobs``). Without a schema only the shape is checked."""
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise AnalysisError(f"{source}: an analysis file is a mapping, got {type(data).__name__}")
    out: dict[str, Any] = {}
    for raw, value in data.items():
        name = str(raw)
        if schema is not None and _is_section(schema, name, value):
            out[name] = _section(value, schema, name, source)
        elif name == METHODS_KEY:
            out[name] = _methods(value, schema, source)
        elif schema is None:
            out[name] = value
        else:
            key = _key(name)
            if key not in schema.shared:
                known = [*schema.sections, *schema.shared, METHODS_KEY]
                raise _unknown(source, name, "the top level (sections and shared keys)", known)
            cls = schema.config_class("*", key, {}) if isinstance(value, Mapping) else None
            if isinstance(value, Mapping) and cls is None:
                raise AnalysisError(f"{source}: shared key {name!r} takes a value, not a mapping")
            out[key] = _inline(value, cls, source, key)
    return out


def _is_section(schema: AnalysisSchema, name: str, value: Any) -> bool:
    """``fileset`` is a command and a shared key: a mapping is the section of the command, a
    path the fileset of every command reading one."""
    if name not in schema.sections:
        return False
    return name not in schema.shared or value is None or isinstance(value, Mapping)


def _section(value: Any, schema: AnalysisSchema, name: str, source: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise AnalysisError(f"{source}: section [{name}] must be a mapping of its options")
    options = schema.sections[name]
    out: dict[str, Any] = {}
    for raw, item in value.items():
        key = _key(raw)
        if key not in options:
            raise _unknown(source, str(raw), f"section [{name}]", list(options))
        out[key] = item
    for key, item in out.items():
        if isinstance(item, Mapping):
            cls = schema.config_class(name, key, out)
            if cls is None and not _takes_mapping(schema, name, key):
                raise AnalysisError(
                    f"{source}: [{name}] {key} takes a value, not a mapping (inline "
                    "configurations: config, cluster_config, detector_config, method_config)"
                )
            out[key] = _inline(item, cls, source, f"[{name}] {key}")
    return out


def _takes_mapping(schema: AnalysisSchema, section: str, key: str) -> bool:
    return (section, key) in schema.configs or ("*", key) in schema.configs


def _methods(value: Any, schema: AnalysisSchema | None, source: str) -> dict[str, Any]:
    if not isinstance(value, Mapping) or not all(isinstance(v, Mapping) for v in value.values()):
        raise AnalysisError(f"{source}: [{METHODS_KEY}] maps method names to their settings")
    if schema is not None and schema.method_config is None:
        raise AnalysisError(f"{source}: section [{METHODS_KEY}] is not accepted here")
    out = {}
    for name, settings in value.items():
        cls = None
        if schema is not None and schema.method_config is not None:
            try:
                cls = schema.method_config(str(name))
            except (ValueError, KeyError) as err:
                raise AnalysisError(f"{source}: [{METHODS_KEY}] {name}: {err}") from None
        out[str(name)] = _inline(settings, cls, source, f"[{METHODS_KEY}] {name}")
    return out


def _inline(value: Any, cls: type | None, source: str, where: str) -> Any:
    """An inline configuration checked against its dataclass (unknown fields fail here)."""
    if cls is None or not isinstance(value, Mapping):
        return value
    try:
        config_from_dict(cls, dict(value))
    except (TypeError, ValueError) as err:
        raise AnalysisError(f"{source}: {where}: {err}") from None
    return dict(value)


def load_analysis(path: str | Path, schema: AnalysisSchema | None = None) -> dict[str, Any]:
    """Read and check an analysis YAML file (see :func:`parse_analysis`)."""
    path = Path(path)
    if not path.is_file():
        raise AnalysisError(f"analysis file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as err:
        detail = " ".join(str(err).split())
        raise AnalysisError(f"cannot read analysis file {path}: {detail}") from None
    return parse_analysis(data, schema, source=str(path))


def section_values(data: Mapping[str, Any], schema: AnalysisSchema, section: str) -> dict:
    """The options ``section`` gets from ``data``: the shared keys it has, then its own."""
    options = schema.sections[section]
    out = {
        k: v
        for k, v in data.items()
        if k in schema.shared and k in options and not _is_section(schema, k, v)
    }
    own = data.get(section)
    out.update(own if _is_section(schema, section, own) and own else {})
    return out


def resolve(data: Mapping[str, Any], schema: AnalysisSchema) -> dict[str, Any]:
    """``data`` with every option of each of its sections given (the shared value, else the
    command's default) and every inline configuration filled with its defaults.

    Idempotent, so ``resolve(load(save(resolve(d))))`` is ``resolve(d)``.
    """
    data = parse_analysis(dict(data), schema)
    out: dict[str, Any] = {}
    for key, value in data.items():
        if _is_section(schema, key, value):
            continue
        if key == METHODS_KEY:
            out[key] = {
                name: _filled(settings, _method_class(schema, name))
                for name, settings in value.items()
            }
        else:
            out[key] = _filled(value, schema.config_class("*", key, {}))
    for section, options in schema.sections.items():
        if section not in data or not _is_section(schema, section, data[section]):
            continue
        given = section_values(data, schema, section)
        full = {k: given.get(k, default) for k, default in options.items()}
        for key, value in full.items():
            if isinstance(value, Mapping):
                full[key] = _filled(value, schema.config_class(section, key, full))
        out[section] = json_safe(full)
    return out


def _method_class(schema: AnalysisSchema, name: str) -> type | None:
    return None if schema.method_config is None else schema.method_config(name)


def _filled(value: Any, cls: type | None) -> Any:
    if cls is None or not isinstance(value, Mapping):
        return json_safe(value)
    return config_to_dict(config_from_dict(cls, dict(value)))


def save_analysis(data: Mapping[str, Any], path: str | Path) -> Path:
    """Write an analysis file (YAML, atomically: a temporary file and a rename)."""
    return write_text_atomic(path, yaml.safe_dump(json_safe(dict(data)), sort_keys=False))

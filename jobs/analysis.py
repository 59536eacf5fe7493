"""``adhunt --analysis FILE COMMAND``: the command's options from one analysis file.

The schema of the file (:class:`adhunt.analysis.AnalysisSchema`) is built from the commands'
own parameters, so every option of every command can be set in its section and nothing else
can. The options become click's ``default_map``: a flag on the command line wins by itself.
Inline configurations (a mapping where an option takes a configuration file) are written to a
temporary folder for the duration of the command and their content goes into the run record.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from adhunt.analysis import METHODS_KEY, AnalysisSchema, load_analysis, resolve, section_values
from adhunt.runrecord import read_config_file

__all__ = ["SHARED_KEYS", "analysis_defaults", "build_schema", "fill_method_config"]

#: Top-level keys given to every command that has the option.
SHARED_KEYS = (
    "seed",
    "fileset",
    "executor",
    "chunksize",
    "workers",
    "scheduler",
    "cluster",
    "cores",
    "memory",
    "walltime",
    "queue",
    "max_jobs",
    "efficiencies",
)
#: Commands that take no options from an analysis file.
EXCLUDED = ("rerun",)


def _feature_config(values: Mapping[str, Any], key: str) -> type:
    from adhunt.processors.features import FeatureConfig

    return FeatureConfig


def _scan_config(values: Mapping[str, Any], key: str) -> type:
    from adhunt.bumphunt import ScanConfig

    return ScanConfig


def _cluster_config(values: Mapping[str, Any], key: str) -> type:
    from adhunt.clusters import ClusterConfig

    return ClusterConfig


def _detector_config(values: Mapping[str, Any], key: str) -> type:
    from adhunt.detector import DetectorConfig

    return DetectorConfig


def method_config_class(name: str) -> type:
    from adhunt.models.registry import get_method

    return get_method(name).config_class


def _train_method_config(values: Mapping[str, Any], key: str) -> type | None:
    method = values.get("method")
    return None if method is None else method_config_class(str(method))


def _scan_method_config(values: Mapping[str, Any], key: str) -> type | None:
    config = values.get("config")
    method = values.get("method") or (config.get("method") if isinstance(config, Mapping) else None)
    return method_config_class(str(method or "cwola"))


_CONFIGS = {
    ("*", "cluster"): _cluster_config,
    ("*", "cluster_config"): _cluster_config,
    ("features", "config"): _feature_config,
    ("infer", "config"): _feature_config,
    ("scan", "config"): _scan_config,
    ("scan", "method_config"): _scan_method_config,
    ("train", "config"): _train_method_config,
    ("generate", "detector_config"): _detector_config,
}


def build_schema(group: Any) -> AnalysisSchema:
    """The analysis schema of adhunt's click group: one section per command, its options with
    their defaults."""
    from adhunt.config import json_safe

    sections = {
        name: {p.name: json_safe(_default(p)) for p in command.params if p.name}
        for name, command in group.commands.items()
        if name not in EXCLUDED
    }
    return AnalysisSchema(
        sections=sections, shared=SHARED_KEYS, configs=_CONFIGS,
        method_config=method_config_class,
    )  # fmt: skip


def _default(param: Any) -> Any:
    default = param.default
    if callable(default) or default is Ellipsis:
        return None
    if isinstance(default, tuple):
        return list(default)
    return default


def _write(directory: Path, name: str, content: Mapping[str, Any]) -> str:
    path = directory / f"{name}.yaml"
    path.write_text(yaml.safe_dump(dict(content), sort_keys=False))
    return str(path)


def analysis_defaults(
    path: str | Path, group: Any, workdir: Path
) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """``(default_map, resolved)`` of analysis file ``path``: click's default map (command ->
    option -> value; inline configurations written as files into ``workdir``) and the file's
    resolved content (for the run record)."""
    schema = build_schema(group)
    data = load_analysis(path, schema)
    resolved = resolve(data, schema)
    default_map: dict[str, dict[str, Any]] = {}
    for section in schema.sections:
        values = section_values(data, schema, section)
        cluster = values.get("cluster")
        if isinstance(cluster, Mapping):  # an inline cluster: the cluster-config file
            del values["cluster"]
            if values.get("cluster_config") is None:
                values["cluster_config"] = cluster
        for key, value in list(values.items()):
            if isinstance(value, Mapping):
                values[key] = _write(workdir, f"{section}.{key}", value)
        if values:
            default_map[section] = values
    return default_map, resolved


def fill_method_config(
    command: str, options: dict[str, Any], analysis: Mapping[str, Any] | None, workdir: Path
) -> dict[str, Any]:
    """``options`` of ``train``/``scan`` with the method's hyper-parameters from the analysis
    file's ``methods`` section when no configuration was given otherwise (written into
    ``workdir``)."""
    methods = (analysis or {}).get(METHODS_KEY) or {}
    if not methods or command not in ("train", "scan"):
        return options
    if command == "train":
        key, method = "config", options.get("method")
    else:
        key, method = "method_config", options.get("method")
        base = options.get("config")
        content = read_config_file(base) if base and Path(base).is_file() else {}
        if isinstance(content, Mapping) and content.get("method_config") is not None:
            return options  # the scan configuration names its own
        if method is None and isinstance(content, Mapping):
            method = content.get("method")
        method = method or "cwola"
    if options.get(key) is not None or method not in methods:
        return options
    return {**options, key: Path(_write(workdir, f"{METHODS_KEY}.{method}", methods[method]))}

"""The analysis file: load -> resolve -> save -> load round trip, unknown keys, inline configs,
and the shipped example (checked against the command line's real schema)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from adhunt.analysis import (
    AnalysisError,
    AnalysisSchema,
    load_analysis,
    parse_analysis,
    resolve,
    save_analysis,
    section_values,
)
from adhunt.bumphunt import ScanConfig
from adhunt.clusters import ClusterConfig
from adhunt.config import config_to_dict

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "analysis.yaml"

#: A schema written out by hand (independent of the CLI): two commands and their defaults.
SCHEMA = AnalysisSchema(
    sections={
        "features": {
            "fileset": None,
            "output": None,
            "chunksize": 100_000,
            "config": None,
            "cluster": None,
            "cluster_config": None,
        },
        "scan": {
            "features": None,
            "output": None,
            "seed": None,
            "config": None,
            "toys": None,
            "cluster": None,
            "cluster_config": None,
        },
        "fileset": {"sources": None, "output": None, "split": None},
    },
    shared=("seed", "fileset", "chunksize", "cluster"),
    configs={
        ("*", "cluster"): ClusterConfig,
        ("*", "cluster_config"): ClusterConfig,
        ("scan", "config"): ScanConfig,
    },
    method_config=None,
)


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_round_trip_load_resolve_save_load_is_unchanged(tmp_path):
    source = write(tmp_path / "a.yaml", """
seed: 7
fileset: data/fileset.json
cluster: {kind: slurm, cores: 4, memory: 8GB}
features: {output: out/features, chunksize: 5000}
scan:
  features: out/features
  output: out/scan
  config: {window_width: 300.0, windows: [[3000, 3400]], n_toys: 20}
""")  # fmt: skip
    loaded = load_analysis(source, SCHEMA)
    full = resolve(loaded, SCHEMA)
    saved = save_analysis(full, tmp_path / "resolved.yaml")
    again = load_analysis(saved, SCHEMA)
    assert again == full  # the saved file is exactly the resolved analysis
    assert resolve(again, SCHEMA) == full  # and resolving it changes nothing
    # what resolve filled, computed independently of it
    expected_cluster = config_to_dict(ClusterConfig(kind="slurm", cores=4, memory="8GB"))
    assert full["cluster"] == expected_cluster
    assert full["features"] == {
        "fileset": "data/fileset.json", "output": "out/features", "chunksize": 5000,
        "config": None, "cluster": expected_cluster, "cluster_config": None,
    }  # fmt: skip
    scan = ScanConfig(window_width=300.0, windows=((3000, 3400),), n_toys=20)
    assert full["scan"]["config"] == config_to_dict(scan)
    assert full["scan"]["seed"] == 7 and full["scan"]["toys"] is None
    assert "fileset" not in full["scan"]  # scan has no fileset option


def test_sections_override_shared_keys_and_dashes_are_accepted(tmp_path):
    data = parse_analysis(
        {
            "chunksize": 10,
            "seed": 3,
            "features": {"chunksize": 20},
            "scan": {"cluster-config": {"kind": "local"}},
        },
        SCHEMA,
    )
    assert section_values(data, SCHEMA, "features") == {"chunksize": 20}
    assert section_values(data, SCHEMA, "scan") == {"seed": 3, "cluster_config": {"kind": "local"}}
    # fileset: a path is the shared key, a mapping the section of the fileset command
    data = parse_analysis({"fileset": {"sources": ["a/"], "split": 1}}, SCHEMA)
    assert section_values(data, SCHEMA, "features") == {}
    assert section_values(data, SCHEMA, "fileset") == {"sources": ["a/"], "split": 1}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "features: {chunksiz: 5}",
            "unknown key 'chunksiz' in section [features] (did you mean 'chunksize'?)",
        ),
        (
            "seeds: 3",
            "unknown key 'seeds' in the top level (sections and shared keys) (did you mean "
            "'seed'?)",
        ),
        (
            "scan: {config: {window_widht: 300}}",
            "[scan] config: unknown ScanConfig option(s): window_widht",
        ),
        ("cluster: {kind: slurm, coers: 4}", "unknown ClusterConfig option(s): coers"),
        ("scan: [1, 2]", "section [scan] must be a mapping of its options"),
        ("features: {chunksize: {a: 1}}", "[features] chunksize takes a value, not a mapping"),
        ("- 1\n- 2", "an analysis file is a mapping, got list"),
        ("seed: [1\n", "cannot read analysis file"),
        ("methods: {cwola: {}}", "section [methods] is not accepted here"),
    ],
)
def test_unknown_keys_and_bad_shapes_are_one_line_errors(tmp_path, text, message):
    path = write(tmp_path / "bad.yaml", text)
    with pytest.raises(AnalysisError) as info:
        load_analysis(path, SCHEMA)
    assert message in str(info.value) and str(path) in str(info.value)
    assert "\n" not in str(info.value)


def test_missing_file(tmp_path):
    with pytest.raises(AnalysisError, match=r"analysis file not found: .*absent\.yaml"):
        load_analysis(tmp_path / "absent.yaml", SCHEMA)


def cli_schema() -> AnalysisSchema:
    import typer

    from adhunt.jobs.analysis import build_schema
    from adhunt.jobs.cli import app

    return build_schema(typer.main.get_command(app))


def test_the_example_loads_resolves_and_round_trips(tmp_path):
    schema = cli_schema()
    data = load_analysis(EXAMPLE, schema)
    full = resolve(data, schema)
    assert load_analysis(save_analysis(full, tmp_path / "r.yaml"), schema) == full
    # the schema is that of the commands: every option of features, with its CLI default
    assert set(full["features"]) == set(schema.sections["features"])
    assert full["features"]["skip_bad_files"] is False and full["features"]["images"] is False
    raw = yaml.safe_load(EXAMPLE.read_text())
    assert full["features"]["config"]["radius"] == raw["features"]["config"]["radius"]
    assert full["train"]["seed"] == raw["seed"] and full["train"]["method"] == "cwola"
    from adhunt.models.registry import get_method

    cathode = get_method("cathode").config_class
    assert full["methods"]["cathode"]["flow"]["epochs"] == 30
    assert set(full["methods"]["cathode"]) == set(config_to_dict(cathode()))


def test_cli_schema_checks_method_settings(tmp_path):
    schema = cli_schema()
    path = write(tmp_path / "m.yaml", "methods: {cwola: {n_ensemble: 1, epoks: 3}}")
    with pytest.raises(AnalysisError, match=r"\[methods\] cwola: unknown TrainConfig option"):
        load_analysis(path, schema)
    path = write(tmp_path / "m.yaml", "methods: {nope: {}}")
    with pytest.raises(AnalysisError, match=r"\[methods\] nope: .*unknown method 'nope'"):
        load_analysis(path, schema)
    path = write(tmp_path / "t.yaml", "train: {method: cwola, config: {hgb_max_itr: 3}}")
    with pytest.raises(AnalysisError, match=r"\[train\] config: unknown TrainConfig option"):
        load_analysis(path, schema)

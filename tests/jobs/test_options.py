"""The commands share one definition of their common options (jobs/options.py)."""

from __future__ import annotations

import typing

import pytest
from typer.testing import CliRunner

from adhunt.jobs import options
from adhunt.jobs.cli import app
from adhunt.jobs.convert import convert_lhco
from adhunt.jobs.evaluate import evaluate
from adhunt.jobs.infer import infer
from adhunt.jobs.score import score
from adhunt.jobs.train import train

SHARED = {
    train: {"features": "OptionalFeaturesOption", "seed": "SeedOption", "datasets": "DatasetsOption",
            "config": "ConfigOption", "overwrite": "OverwriteOption"},
    score: {"features": "FeaturesOption", "output": "OutputFileOption", "datasets": "DatasetsOption"},
    evaluate: {"output": "OutputDirOption", "datasets": "DatasetsOption"},
    infer: {"output": "OutputDirOption", "executor": "ExecutorOption", "workers": "WorkersOption",
            "scheduler": "SchedulerOption", "chunksize": "ChunksizeOption",
            "skip_bad_files": "SkipBadFilesOption"},
    convert_lhco: {"output": "OutputDirOption"},
}  # fmt: skip


@pytest.mark.parametrize("command", list(SHARED), ids=lambda c: c.__name__)
def test_commands_use_the_shared_option_definitions(command):
    hints = typing.get_type_hints(command, include_extras=True)
    for parameter, name in SHARED[command].items():
        assert hints[parameter] == getattr(options, name), (command.__name__, parameter)


def test_shared_help_reaches_every_command():
    runner = CliRunner()
    for name in ("train", "score"):
        result = runner.invoke(app, [name, "--help"], terminal_width=200)
        assert result.exit_code == 0
        assert "searched recursively" in " ".join(result.output.split()), name


def test_split_list():
    assert options.split_list(" a, b,,c ") == ["a", "b", "c"]
    assert options.split_list("") is None and options.split_list(None) is None

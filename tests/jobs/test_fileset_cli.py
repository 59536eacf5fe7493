"""``adhunt fileset``: folders, globs, files and URLs to a coffea fileset that ``features`` reads."""

from __future__ import annotations

import json

import pytest
from eventfiles import make_events, write_events
from typer.testing import CliRunner

from adhunt.filesets import FilesetError, build_fileset, load_datasets

runner = CliRunner()


def invoke(args):
    from adhunt.jobs.cli import app

    result = runner.invoke(app, [str(a) for a in args])
    result.text = " ".join(result.output.split())
    return result


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    """data/qcd/{a,b,c}.root, data/sig/s.root, data/top.root and a hidden temporary file."""
    base = tmp_path_factory.mktemp("filesets") / "data"
    events = make_events(["dijet"] * 20, seed=3)
    for name in ("qcd/a", "qcd/b", "qcd/c", "sig/s", "top"):
        write_events(base / f"{name}.root", events)
    (base / "qcd" / ".partial.root").write_bytes(b"")  # an interrupted copy: never listed
    (base / "qcd" / "notes.txt").write_text("not a ROOT file")
    return base


def test_a_folder_gives_one_dataset_per_subfolder(tree):
    built = build_fileset([str(tree)])
    assert sorted(built) == ["data", "qcd", "sig"]
    assert [f.rsplit("/", 1)[1] for f in built["qcd"]["files"]] == ["a.root", "b.root", "c.root"]
    assert set(built["qcd"]["files"].values()) == {"Events"}
    assert all(f.startswith("/") for entry in built.values() for f in entry["files"])


def test_globs_split_and_one_dataset_name(tree):
    built = build_fileset([f"{tree}/qcd/*.root"], split=2)
    assert list(built) == ["qcd"] and len(built["qcd"]["files"]) == 2
    built = build_fileset([f"{tree}/**/*.root"], dataset="all", tree="T")
    assert list(built) == ["all"] and len(built["all"]["files"]) == 5
    assert set(built["all"]["files"].values()) == {"T"}


def test_urls_pass_through_and_bad_sources_are_refused(tree):
    url = "root://eos.example.org//store/data/run1/nano.root"
    assert list(build_fileset([url])["run1"]["files"]) == [url]
    with pytest.raises(FilesetError, match="remote globs"):
        build_fileset(["root://eos.example.org//store/*.root"])
    with pytest.raises(FilesetError, match="no file matches"):
        build_fileset([f"{tree}/nothing/*.root"])
    with pytest.raises(FilesetError, match="not a ROOT file"):
        build_fileset([str(tree / "qcd" / "notes.txt")])
    with pytest.raises(FilesetError, match="the same file"):
        build_fileset([str(tree / "qcd"), f"{tree}/qcd/a.root"], dataset="x")


def test_cli_writes_a_fileset_that_features_reads(tree, tmp_path):
    out = tmp_path / "sub" / "fileset.json"
    r = invoke(["fileset", tree / "qcd", tree / "sig", "-o", out, "--split", 2])
    assert r.exit_code == 0, r.output
    written = json.loads(out.read_text())
    assert {d: len(e["files"]) for d, e in written.items()} == {"qcd": 2, "sig": 1}
    assert load_datasets(out)["qcd"]["files"] == written["qcd"]["files"]
    r = invoke(["features", out, "-o", tmp_path / "features"])
    assert r.exit_code == 0, r.output
    cutflow = json.loads((tmp_path / "features" / "cutflow.json").read_text())["cutflow"]
    assert cutflow["qcd"]["events"] == 40 and cutflow["sig"]["events"] == 20
    r = invoke(["fileset", tree / "nothing", "-o", tmp_path / "bad.json"])
    assert r.exit_code == 1 and "input not found" in r.text and "Traceback" not in r.output

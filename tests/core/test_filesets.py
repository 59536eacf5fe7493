"""Fileset loading (``adhunt.filesets``): every input identified, the same file never twice."""

from __future__ import annotations

import json
import logging
import os

import pytest

from adhunt.filesets import FilesetError, file_identity, load_datasets


@pytest.fixture
def files(tmp_path):
    (tmp_path / "a.root").write_bytes(b"a")
    (tmp_path / "b.root").write_bytes(b"b")
    (tmp_path / "sub").mkdir()
    os.symlink(tmp_path / "a.root", tmp_path / "sub" / "alias.root")
    os.link(tmp_path / "a.root", tmp_path / "hard.root")
    return tmp_path


def write(path, text):
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    "later",
    ["a.root", "./a.root", "sub/../a.root", "sub/alias.root", "hard.root"],
    ids=["same", "dot", "dotdot", "symlink", "hardlink"],
)
def test_every_spelling_of_one_file_is_the_same_file(files, later):
    fileset = write(files / "fs.json", json.dumps({"qcd": ["a.root"], "sig": [later]}))
    with pytest.raises(
        FilesetError, match=rf"qcd: 'a.root' and sig: '{later}' \(the same file: .*a.root"
    ):
        load_datasets(fileset)


def test_distinct_files_and_distinct_trees_are_kept(files):
    fileset = {
        "qcd": [str(files / "a.root"), str(files / "b.root")],
        "other_tree": {"files": {str(files / "a.root"): "Runs"}},
    }
    out = load_datasets(fileset)
    assert [len(v["files"]) for v in out.values()] == [2, 1]


def test_dedupe_keeps_the_first_entry_and_warns_about_each_dropped_one(files, caplog):
    fileset = {
        "qcd": [str(files / "a.root"), str(files / "hard.root")],
        "sig": [str(files / "a.root")],
    }
    with caplog.at_level(logging.WARNING):
        out = load_datasets(fileset, dedupe_files=True)
    assert out["qcd"]["files"] == {str((files / "a.root").resolve()): "Events"}
    assert out["sig"]["files"] == {}
    dropped = [r.getMessage() for r in caplog.records if "dropped" in r.getMessage()]
    assert len(dropped) == 2
    assert "hard.root" in dropped[0] and "sig" in dropped[1]


def test_remote_urls_are_compared_normalised():
    a = file_identity("root://EOS.cern.ch//eos/cms/store/x/../a.root")
    assert a == file_identity("root://eos.cern.ch/eos/cms/store/a.root")
    assert a != file_identity("root://eos.cern.ch/eos/cms/store/b.root")
    fileset = {"d1": ["root://host//store/a.root"], "d2": ["ROOT://HOST/store//a.root"]}
    with pytest.raises(FilesetError, match=r"d1: 'root://host//store/a.root' and d2"):
        load_datasets(fileset)


def test_repeated_json_keys_are_not_collapsed_silently(files, caplog):
    a, b = json.dumps(str(files / "a.root")), json.dumps(str(files / "b.root"))
    # the same dataset twice with different files: json.loads would keep only the last
    fs = write(files / "k1.json", f'{{"qcd": [{a}], "qcd": [{b}]}}')
    with pytest.raises(FilesetError, match=r"key 'qcd' is given twice .*different values"):
        load_datasets(fs, dedupe_files=True)
    # the same file twice in a {file: tree} mapping is a duplicate entry
    fs = write(files / "k2.json", f'{{"qcd": {{"files": {{{a}: "Events", {a}: "Events"}}}}}}')
    with pytest.raises(FilesetError, match="same input file more than once"):
        load_datasets(fs)
    assert len(load_datasets(fs, dedupe_files=True)["qcd"]["files"]) == 1
    # an identical repeated dataset: refused, or kept once with --dedupe-files
    fs = write(files / "k3.json", f'{{"qcd": [{a}], "qcd": [{a}]}}')
    with pytest.raises(FilesetError, match=r"key 'qcd' is given twice .*same value"):
        load_datasets(fs)
    with caplog.at_level(logging.WARNING):
        assert list(load_datasets(fs, dedupe_files=True)) == ["qcd"]
    assert "dropped the repeat" in caplog.text


def test_old_import_location_still_works():
    from adhunt.jobs.features import load_datasets as old
    from adhunt.jobs.features import load_fileset

    assert old is load_datasets
    assert callable(load_fileset)

"""Session fixtures shared by the whole suite: small, real Pythia samples written by ``adhunt generate``.

Fixture names are stable (other test files use them):

* ``generated_qcd``    -> Path of a directory with QCD ROOT files (1500 events in 2 files) + ``fileset.json``
* ``generated_wprime`` -> Path of a directory with W' -> X Y ROOT files (500 events, 1 file) + ``fileset.json``
* ``fileset_path``     -> Path of a fileset JSON with both datasets, named ``"qcd"`` and ``"wprime"``

Samples are detector-level (default ``DetectorConfig``), LHCO trigger applied, fixed seeds. They are
cached under ``<repo>/.cache/tests/<hash>/`` where the hash covers the configuration and the source of
the generation code, so re-runs are instant and any change to generation regenerates. A file lock plus
a completion marker keeps parallel pytest sessions from colliding or reading half-written samples.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import shutil
from pathlib import Path

import pytest

from adhunt.generation import FILESET_NAME, GenerationConfig, generate_to_root
from adhunt.rootio import read_fileset, write_fileset

REPO = Path(__file__).resolve().parents[1]
CACHE = REPO / ".cache" / "tests"
_SOURCES = ("adhunt/generation.py", "adhunt/detector.py", "adhunt/rootio.py", "adhunt/jets.py")

#: The configurations behind the shared samples (their metadata also sits in each fileset.json).
QCD_TEST_CONFIG = GenerationConfig(process="qcd", n_events=1500, seed=20260101, events_per_file=750)
WPRIME_TEST_CONFIG = GenerationConfig(process="wprime", n_events=500, seed=20260102)


def _cache_key(config: GenerationConfig) -> str:
    import importlib.metadata

    from adhunt.config import config_to_dict

    digest = hashlib.sha256(json.dumps(config_to_dict(config), sort_keys=True).encode())
    digest.update(importlib.metadata.version("pythia8mc").encode())
    for source in _SOURCES:
        digest.update((REPO / source).read_bytes())
    return digest.hexdigest()[:16]


def cached_sample(config: GenerationConfig, workers: int = 2) -> Path:
    """Directory holding ``config``'s sample, generating it once (under a lock) if needed."""
    CACHE.mkdir(parents=True, exist_ok=True)
    key = _cache_key(config)
    directory = CACHE / f"{config.process}-{key}"
    marker = directory / ".complete"
    if marker.exists():
        return directory
    with open(CACHE / f"{config.process}-{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if not marker.exists():
                shutil.rmtree(directory, ignore_errors=True)  # leftovers of an interrupted run
                generate_to_root(config, directory, workers=workers)
                marker.write_text(key + "\n")
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return directory


@pytest.fixture(scope="session")
def generated_qcd() -> Path:
    """QCD dijets, 1500 triggered detector-level events in 2 ROOT files, with ``fileset.json``."""
    return cached_sample(QCD_TEST_CONFIG)


@pytest.fixture(scope="session")
def generated_wprime() -> Path:
    """W'(3.5 TeV) -> X(500) Y(100) -> (qq)(qq), 500 triggered detector-level events, with ``fileset.json``."""
    return cached_sample(WPRIME_TEST_CONFIG, workers=1)


@pytest.fixture(scope="session")
def fileset_path(
    generated_qcd: Path, generated_wprime: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """A coffea fileset JSON with the datasets ``"qcd"`` and ``"wprime"``."""
    datasets = {}
    for directory in (generated_qcd, generated_wprime):
        datasets.update(read_fileset(directory / FILESET_NAME))
    assert set(datasets) == {"qcd", "wprime"}, datasets.keys()
    return write_fileset(tmp_path_factory.mktemp("fileset") / FILESET_NAME, datasets)

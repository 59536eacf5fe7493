"""The benchmarks' input builder (``benchmarks/benchfiles.py``): files of N events cut from others."""

from __future__ import annotations

import sys
from pathlib import Path

import awkward as ak
import numpy as np
import pytest
import uproot

from adhunt.rootio import make_events, read_events, write_events

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import benchfiles


def _source(path: Path, n: int, first_event: int, rng: np.random.Generator) -> str:
    counts = rng.integers(1, 6, n)
    total = int(counts.sum())
    candidates = {
        "pt": rng.uniform(1, 100, total),
        "eta": rng.normal(0, 2, total),
        "phi": rng.uniform(-3, 3, total),
        "mass": rng.uniform(0, 1, total),
        "charge": rng.integers(-1, 2, total),
        "pdgId": rng.choice([211, -211, 22, 130], total),
    }
    events = make_events(
        run=np.full(n, 7),
        luminosity_block=np.ones(n),
        event=np.arange(first_event, first_event + n),
        truth_label=np.zeros(n),
        counts=counts,
        candidates=candidates,
    )
    write_events(path, events)
    return str(path)


def test_built_files_hold_the_sources_events_in_order(tmp_path):
    rng = np.random.default_rng(3)
    sources = [_source(tmp_path / f"s{i}.root", n, 1000 * i, rng) for i, n in enumerate((7, 5, 9))]
    built = benchfiles.build_files(sources, 8, 2, cache=tmp_path / "built")
    assert len(built) == 2
    expected = ak.concatenate([read_events(s) for s in sources])[:16]
    got = ak.concatenate([read_events(b) for b in built])
    assert ak.to_list(got) == ak.to_list(expected)  # every event once, in order, same values
    with uproot.open(sources[0]) as handle:
        types = handle["Events"].typenames()
    for name in built:
        with uproot.open(name) as handle:
            assert handle["Events"].num_entries == 8
            assert handle["Events"].typenames() == types
    # a second call reuses (and re-checks) the cached files
    assert benchfiles.build_files(sources, 8, 2, cache=tmp_path / "built") == built


def test_too_few_source_events_is_refused(tmp_path):
    rng = np.random.default_rng(4)
    sources = [_source(tmp_path / "s.root", 5, 0, rng)]
    with pytest.raises(ValueError, match="need 6 events; the sources hold 5"):
        benchfiles.build_files(sources, 3, 2, cache=tmp_path / "built")

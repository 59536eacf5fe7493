"""The default scan at dataset scale on real generated events (``make test-slow``).

200k Pythia QCD dijet events (detector response, trigger; generated once and cached under
``.cache/tests``): the default scan must find no excess at >= 3 sigma anywhere, and with W'
events injected into the same QCD the signal's window must win.
"""

from __future__ import annotations

import fcntl

import numpy as np
import pytest
from conftest import CACHE, cached_sample

from adhunt.bumphunt import ScanConfig
from adhunt.generation import FILESET_NAME, GenerationConfig
from adhunt.injection import inject_signal
from adhunt.jobs.features import run_features
from adhunt.jobs.scan import run_scan
from adhunt.tables import read_table

pytestmark = pytest.mark.slow

QCD_200K = GenerationConfig(process="qcd", n_events=200_000, seed=20260301, events_per_file=50_000)
WPRIME_3K = GenerationConfig(process="wprime", n_events=3_000, seed=20260302)


def _features(config: GenerationConfig):
    events = cached_sample(config)
    out = events / "features"
    marker = out / ".complete"
    if not marker.exists():
        with open(CACHE / f"{events.name}.features.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not marker.exists():
                run_features(
                    events / FILESET_NAME, out, executor="futures", workers=2, chunksize=50_000
                )
                marker.write_text("ok\n")
    return read_table(out)


@pytest.fixture(scope="module")
def qcd():
    return _features(QCD_200K)


@pytest.fixture(scope="module")
def wprime():
    return _features(WPRIME_3K)


@pytest.mark.timeout(3600)
def test_default_scan_has_no_excess_on_signal_free_qcd(qcd, tmp_path):
    assert len(qcd) >= 199_000
    result = run_scan(qcd, tmp_path / "null", ScanConfig(n_toys=40, plots=False))
    r = result.result
    assert len(r.windows) >= 15
    z = {label: r.max_local_z([label]) for label in r.config.labels}
    assert max(z.values()) < 3.0, z
    g = r.summaries["no_cut"].global_significance
    assert g is not None and g.p_value > 0.01, g.statement


@pytest.mark.timeout(3600)
def test_default_scan_finds_the_injected_wprime(qcd, wprime, tmp_path):
    data = inject_signal(qcd, wprime, 600, seed=11)
    result = run_scan(data, tmp_path / "signal", ScanConfig(n_toys=40, plots=False, seed=11))
    r = result.result
    centre = float(np.median(wprime["mjj"]))
    label, best = r.best()
    assert best.low <= centre < best.high, (label, best.low, best.high, centre)
    assert best.z(label) > 3.0
    assert best.z(label) > r.max_local_z(["no_cut"]) + 1.0

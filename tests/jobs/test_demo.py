"""The demo chain (features on a LocalCluster -> train -> distributed inference -> fit) on real samples.

Uses the suite's generated samples through ``--fileset`` so that no extra generation is needed; the
size of the default demo (40k QCD) is exercised by ``make demo``, not here.
"""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
from typer.testing import CliRunner

from adhunt.jobs.cli import app
from adhunt.jobs.demo import DemoConfig, run_demo
from adhunt.tables import read_features

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def demo_run(fileset_path, tmp_path_factory):
    # The suite's sample is 1500 QCD + 500 W' events: the W' peak is the spectrum's maximum, so the
    # turn-on rule (meant for QCD-dominated data) would start the fit above the window.
    config = DemoConfig(
        workers=2, folds=3, chunksize=400, efficiencies=(0.1,), fit_range=(2800.0, 8000.0)
    )
    output = tmp_path_factory.mktemp("demo")
    return run_demo(output, config, fileset=fileset_path), config


def test_demo_writes_its_outputs(demo_run):
    result, config = demo_run
    summary = json.loads((result.output / "demo.json").read_text())
    assert summary["config"]["folds"] == config.folds  # the configuration is echoed
    for name in ("features.png", "sic.png", "spectrum_all.png"):
        assert (result.output / name).read_bytes()[:8] == PNG_MAGIC, name
    for name in ("histograms.pkl", "histograms.root", "infer.json"):
        assert (result.output / "inference" / name).stat().st_size > 0, name
    assert set(summary["significance"]) == {"all", "10%"}


def test_demo_counts_every_event_once_and_reports_true_signal(demo_run):
    result, config = demo_run
    table = read_features(result.output / "features")
    # cutflow adds up: every selected event is in the feature table and in the histogram, once
    selected = sum(c["two_jets"] for c in result.cutflow.values())
    assert selected == len(table)
    with open(result.output / "inference" / "histograms.pkl", "rb") as f:
        h = pickle.load(f)
    assert h[{"model": config.method}].sum(flow=True).value == selected

    # the signal kept in the SR before any cut, computed directly from the feature table
    lo, hi = config.window
    in_sr = (table["mjj"] >= lo) & (table["mjj"] < hi)
    n_true = int((in_sr & (table["truth_label"] == 1)).sum())
    entry = result.significance["all"]
    assert entry["status"] == "ok"
    assert entry["true_signal_in_sr"] == n_true
    assert entry["observed"] == int(in_sr.sum())
    # 500 W' events on 1500 QCD: an unmistakable excess even before the anomaly cut
    assert entry["z_signed"] > 3.0
    assert np.isfinite(entry["expected_error"])


def test_demo_cli_reports_a_missing_fileset(tmp_path):
    result = CliRunner().invoke(
        app, ["demo", "--fileset", str(tmp_path / "nope.json"), "-o", str(tmp_path / "out")]
    )
    assert result.exit_code == 2
    assert "fileset not found" in result.output


def test_demo_config_rejects_nonsense():
    with pytest.raises(ValueError, match="efficiencies"):
        DemoConfig(efficiencies=(1.5,))
    with pytest.raises(ValueError, match="window"):
        DemoConfig(window=(3700.0, 3300.0))

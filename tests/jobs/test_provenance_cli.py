"""Every reader of the provenance record accepts what every writer writes; tables from elsewhere
go through train / score / evaluate / infer's calibration."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from adhunt.jobs.cli import app
from adhunt.jobs.evaluate import run_evaluate
from adhunt.jobs.infer import _reference_table
from adhunt.jobs.score import run_score
from adhunt.jobs.train import run_train
from adhunt.models.base import ResonantModel, TrainConfig
from adhunt.models.cwola import CWoLa
from adhunt.provenance import make_provenance, provenance_extra, read_provenance
from adhunt.regions import SignalRegion
from adhunt.tables import read_table

FEATURES = ["mj1", "delta_mj", "tau21_j1", "tau21_j2"]
FAST = TrainConfig(n_ensemble=1, hgb_max_iter=30, num_threads=1)


def foreign_table(n, signal, seed):
    """A table from elsewhere: features and mjj only (no dataset, run, event, truth_label)."""
    rng = np.random.default_rng(seed)
    if signal:
        cols = {"mj1": rng.normal(100, 10, n), "delta_mj": rng.normal(400, 30, n),
                "tau21_j1": rng.normal(0.3, 0.1, n), "tau21_j2": rng.normal(0.35, 0.1, n),
                "mjj": rng.normal(3500, 80, n)}  # fmt: skip
    else:
        cols = {"mj1": rng.exponential(80, n) + 10, "delta_mj": rng.exponential(150, n),
                "tau21_j1": rng.normal(0.65, 0.12, n), "tau21_j2": rng.normal(0.65, 0.12, n),
                "mjj": rng.uniform(2800, 4400, n)}  # fmt: skip
    return pd.DataFrame(cols)


@pytest.fixture(scope="module")
def tables(tmp_path_factory):
    base = tmp_path_factory.mktemp("foreign")
    (base / "bkg" / "sub").mkdir(parents=True)
    foreign_table(2500, False, 1).to_parquet(base / "bkg" / "part-0.parquet")
    foreign_table(2500, False, 2).to_parquet(base / "bkg" / "sub" / "part-1.parquet")
    sig = foreign_table(400, True, 3)
    sig["truth_label"] = 1  # the signal table says what it is
    sig["run"], sig["event"] = 2, np.arange(len(sig))
    sig["dataset"] = "wprime"
    sig.to_parquet(base / "signal.parquet")
    test = foreign_table(1500, False, 4)
    test["truth_label"] = 0
    test_sig = foreign_table(200, True, 5)
    test_sig["truth_label"] = 1
    pd.concat([test, test_sig], ignore_index=True).to_parquet(base / "test.parquet")
    config = base / "fast.yaml"
    config.write_text("n_ensemble: 1\nhgb_max_iter: 30\nnum_threads: 1\n")
    return {"bkg": base / "bkg", "signal": base / "signal.parquet", "test": base / "test.parquet",
            "config": config}  # fmt: skip


def train_writer(tables, output):
    """``adhunt train`` on a foreign directory with a foreign signal file injected."""
    run_train("cwola", tables["bkg"], output, folds=3, seed=4, inject=150,
              signal_dir=tables["signal"], config_path=tables["config"])  # fmt: skip
    return ResonantModel.load(output)


def scan_writer(tables, output):
    """What the scan job calls to save a window's model: the same constructor and writer."""
    data = read_table(tables["bkg"], columns=FEATURES)
    model = CWoLa(FEATURES, SignalRegion(3300, 3700), n_folds=3, seed=4, config=FAST).fit(data)
    record = make_provenance("scan", tables["bkg"], sorted(set(data["dataset"])), config={})
    model.save(output, extra=provenance_extra(record))
    return ResonantModel.load(output)


def legacy_scan_writer(tables, output):
    """The record scan wrote before the typed one: ``features`` instead of ``features_dir``."""
    data = read_table(tables["bkg"], columns=FEATURES)
    model = CWoLa(FEATURES, SignalRegion(3300, 3700), n_folds=3, seed=4, config=FAST).fit(data)
    legacy = {"command": "scan", "features": str(tables["bkg"]), "datasets": ["bkg", "sub"]}
    model.save(output, extra={"provenance": legacy})
    return ResonantModel.load(output)


@pytest.mark.parametrize("writer", [train_writer, scan_writer, legacy_scan_writer])
def test_every_reader_accepts_every_writer(writer, tables, tmp_path):
    model = writer(tables, tmp_path / "model")
    record = read_provenance(model)
    assert record is not None and record.features_dir == str(tables["bkg"])
    n_trained = model.training["n_events"]

    # infer: thresholds calibrated on the model's own training table (with its injection)
    table, info = _reference_table(model, "m", None, None, "all")
    assert len(table) == n_trained and info["origin"] == "model training provenance"
    assert model.trained_mask(table).all()

    # score, auto: that training table is scored k-fold; an independent table by the ensemble
    scored = run_score(tmp_path / "model", tables["bkg"], tmp_path / "s.parquet")
    n_bkg = 5000
    assert len(scored) == n_bkg and (scored["score_mode"] == "kfold").all()
    independent = run_score(tmp_path / "model", tables["test"], tmp_path / "t.parquet")
    assert (independent["score_mode"] == "ensemble").all()
    assert np.array_equal(
        independent["score"], model.score(read_table(tables["test"]), mode="ensemble")
    )

    # evaluate: reports the record and the modes used
    summary = run_evaluate([tmp_path / "model"], tables["test"], tmp_path / "eval",
                           min_background=5, all_mjj=True)  # fmt: skip
    entry = summary["models"]["cwola"]
    assert entry["provenance"]["features_dir"] == str(tables["bkg"])
    assert entry["score_modes"] == {"kfold": 0, "ensemble": 1700}


def test_train_score_cli_on_foreign_tables(tables, tmp_path):
    runner = CliRunner()
    model_dir = tmp_path / "m"
    r = runner.invoke(app, ["train", "cwola", "--features", str(tables["bkg"]), "--output",
                            str(model_dir), "--folds", "3", "--inject", "150", "--signal",
                            str(tables["signal"]), "--config", str(tables["config"])])  # fmt: skip
    assert r.exit_code == 0, r.output
    record = read_provenance(ResonantModel.load(model_dir))
    assert record.datasets == ("bkg", "sub") and record.injection.counts["n_signal"] == 150
    out = tmp_path / "scores.parquet"
    r = runner.invoke(app, ["score", str(model_dir), "--features", str(tables["test"]),
                            "--output", str(out)])  # fmt: skip
    assert r.exit_code == 0, r.output
    scores = pd.read_parquet(out)
    assert len(scores) == 1700 and set(scores["score_mode"]) == {"ensemble"}
    sig = scores["truth_label"] == 1
    assert scores["score"][sig].mean() > scores["score"][~sig].mean() + 0.1
    r = runner.invoke(app, ["train", "cwola", "--features", str(tables["bkg"]), "--output",
                            str(tmp_path / "m2"), "--features-list", "mj1,tau32_j1"])  # fmt: skip
    assert r.exit_code == 2 and "tau32_j1" in r.output and "part-0.parquet" in r.output
    summary = json.loads((model_dir / "model.json").read_text())["metadata"]["extra"]
    assert summary["provenance"]["command"] == "train"

"""``adhunt train`` / ``score`` / ``evaluate`` end to end on small parquet feature directories."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from clirun import invoke

from adhunt.models.base import ResonantModel
from adhunt.provenance import read_provenance
from adhunt.regions import SignalRegion
from adhunt.schema import FEATURE_COLUMNS
from adhunt.tables import chunk_filename, make_feature_frame, read_features, write_chunk


def write_dir(root, dataset, n, signal, seed, run=1):
    """A feature directory in the layout of ``adhunt features`` (two chunks of one file)."""
    rng = np.random.default_rng(seed)
    feats = {
        c: rng.uniform(0.1, 1.0, n)
        for c in FEATURE_COLUMNS
        if c not in ("dataset", "run", "luminosityBlock", "event", "truth_label", "weight")
    }
    if signal:  # lighter jet ~100 GeV, heavy ~500 GeV, two-prong (low tau21), mjj in the SR
        feats["mj1"] = rng.normal(100, 10, n)
        feats["delta_mj"] = rng.normal(400, 30, n)
        feats["tau21_j1"] = rng.normal(0.3, 0.1, n)
        feats["tau21_j2"] = rng.normal(0.35, 0.1, n)
        feats["mjj"] = rng.normal(3500, 80, n)
    else:
        feats["mj1"] = rng.exponential(80, n) + 10
        feats["delta_mj"] = rng.exponential(150, n)
        feats["tau21_j1"] = rng.normal(0.65, 0.12, n)
        feats["tau21_j2"] = rng.normal(0.65, 0.12, n)
        feats["mjj"] = rng.uniform(2800, 4400, n)
    frame = make_feature_frame(
        dataset, np.full(n, run), np.arange(n), np.full(n, int(signal)), feats
    )
    half = n // 2
    write_chunk(frame.iloc[:half], root, chunk_filename(dataset, "f.root", 0, half))
    write_chunk(frame.iloc[half:], root, chunk_filename(dataset, "f.root", half, n))
    return root


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    base = tmp_path_factory.mktemp("features")
    train = write_dir(base / "train", "qcd", 6000, False, seed=1)
    write_dir(base / "signal", "wprime", 1000, True, seed=2, run=2)
    test = write_dir(base / "test", "qcd", 3000, False, seed=3, run=3)
    write_dir(test, "wprime", 500, True, seed=4, run=4)
    write_dir(base / "reference", "qcd", 4000, False, seed=5, run=5)
    config = base / "fast.yaml"
    config.write_text("n_ensemble: 1\nhgb_max_iter: 40\nnum_threads: 1\n")
    return {"base": base, "train": train, "signal": base / "signal", "test": test,
            "reference": base / "reference", "config": config}  # fmt: skip


def test_train_score_evaluate(dirs, tmp_path):
    cwola, iad = tmp_path / "cwola", tmp_path / "iad"
    common = ["--window", "3300:3700", "--folds", "3", "--seed", "7", "--config", dirs["config"]]
    r = invoke(["train", "cwola", "--features", dirs["train"], "--output", cwola, "--inject", 300,
                "--signal", dirs["signal"], *common])  # fmt: skip
    assert r.exit_code == 0, r.output
    r = invoke(["train", "iad", "--features", dirs["train"], "--output", iad, "--inject", 300,
                "--signal", dirs["signal"], "--reference", dirs["reference"], "--backend", "mlp", *common])  # fmt: skip
    assert r.exit_code == 0, r.output

    model = ResonantModel.load(cwola)
    assert (
        model.method == "cwola" and model.n_folds == 3 and model.region == SignalRegion(3300, 3700)
    )
    assert model.config.n_ensemble == 1 and model.config.hgb_max_iter == 40  # from --config
    record = read_provenance(model)
    assert record.command == "train" and record.features_dir == str(dirs["train"])
    assert record.injection.n_injected == 300 and record.injection.counts["n_signal_sr"] > 200
    assert record.injection.signal_dir == str(dirs["signal"])
    assert ResonantModel.load(iad).config.backend == "mlp"

    # score (default auto): an independent test table gets the ensemble of the folds
    out = tmp_path / "scores" / "cwola.parquet"
    r = invoke(["score", cwola, "--features", dirs["test"], "--output", out])
    assert r.exit_code == 0, r.output
    scores = pd.read_parquet(out)
    table = read_features(dirs["test"])
    assert len(scores) == len(table) == 3500
    assert {"run", "event", "score", "mjj", "dataset", "score_mode"} <= set(scores.columns)
    assert np.array_equal(scores["event"], table["event"])
    assert (scores["score_mode"] == "ensemble").all()
    assert np.array_equal(scores["score"], model.score(table, mode="ensemble"))
    assert scores["score"].between(0, 1).all()

    # scoring the training sample itself: the injection is rebuilt with the model's seed, and
    # every event gets the score of the fold model that never saw it
    out2 = tmp_path / "scores" / "train.parquet"
    r = invoke(["score", cwola, "--features", dirs["train"], "--output", out2, "--inject", 300,
                "--signal", dirs["signal"]])  # fmt: skip
    assert r.exit_code == 0, r.output
    trained_on = pd.read_parquet(out2)
    assert len(trained_on) == 6300 and int(trained_on["truth_label"].sum()) == 300
    assert (trained_on["score_mode"] == "kfold").all()  # auto: every event was trained on
    assert model.training["n_events"] == 6300
    sr = SignalRegion().in_sr(trained_on["mjj"])
    assert (
        trained_on["score"][sr & (trained_on.truth_label == 1)].mean()
        > trained_on["score"][sr & (trained_on.truth_label == 0)].mean() + 0.2
    )

    # evaluate both models: JSON summary + plot; the signal is easy, so both beat random clearly
    r = invoke(["evaluate", cwola, iad, "--test", dirs["test"], "--output", tmp_path / "eval",
                "--min-background", 5])  # fmt: skip
    assert r.exit_code == 0, r.output
    summary = json.loads((tmp_path / "eval" / "summary.json").read_text())
    assert set(summary["models"]) == {"cwola", "iad"}
    for name, entry in summary["models"].items():
        assert entry["auc"] > 0.9, name
        assert entry["max_sic"] > 3, name
        assert entry["n_signal"] == int(
            SignalRegion().in_sr(table["mjj"][table.truth_label == 1]).sum()
        )
        assert entry["model"]["method"] == name
    assert (tmp_path / "eval" / "sic.png").stat().st_size > 10_000


def test_cli_errors_are_clear(dirs, tmp_path):
    r = invoke(["train", "iad", "--features", dirs["train"], "--output", tmp_path / "m"])
    assert r.exit_code == 2 and "needs --reference" in r.text
    r = invoke(["train", "magic", "--features", dirs["train"], "--output", tmp_path / "m"])
    assert r.exit_code == 2 and "unknown method 'magic'" in r.text
    r = invoke(["train", "cwola", "--features", tmp_path / "nowhere", "--output", tmp_path / "m"])
    assert r.exit_code == 2 and "feature table not found" in r.text
    r = invoke(["train", "cwola", "--features", dirs["train"], "--output", tmp_path / "m",
                "--features-list", "mj1,nonsense"])  # fmt: skip
    assert r.exit_code == 2 and "nonsense" in r.text
    r = invoke(["train", "cwola", "--features", dirs["train"], "--output", tmp_path / "m",
                "--inject", 5000, "--signal", dirs["signal"]])  # fmt: skip
    assert r.exit_code == 2 and "only 1000" in r.text
    r = invoke(
        [
            "train",
            "cwola",
            "--features",
            dirs["train"],
            "--output",
            tmp_path / "m",
            "--window",
            "1:2",
        ]
    )
    assert r.exit_code == 2 and "no events in the signal region" in r.text
    (tmp_path / "bad").mkdir()
    r = invoke(
        ["score", tmp_path / "bad", "--features", dirs["test"], "--output", tmp_path / "s.parquet"]
    )
    assert r.exit_code == 2 and "incomplete" in r.text
    assert not (tmp_path / "m").exists() or not any((tmp_path / "m").iterdir())

"""``adhunt train ae|vae|force|tnt`` with no other options on an ordinary feature table, then
``adhunt score`` and ``adhunt evaluate`` on the result."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from test_train_cli import invoke, write_dir

from adhunt.models.base import ResonantModel
from adhunt.schema import INVARIANT_JET_FEATURES, JET_FEATURES
from adhunt.tables import read_features


@pytest.fixture(scope="module")
def tables(tmp_path_factory):
    base = tmp_path_factory.mktemp("outlier_features")
    train = write_dir(base / "train", "qcd", 3000, False, seed=11)
    write_dir(train, "wprime", 150, True, seed=12, run=2)
    test = write_dir(base / "test", "qcd", 1500, False, seed=13, run=3)
    write_dir(test, "wprime", 300, True, seed=14, run=4)
    fast = base / "fast.yaml"  # a few epochs, one thread: the CLI path, not the physics
    fast.write_text("epochs: 3\nnum_threads: 1\n")
    return {"train": train, "test": test, "fast": fast, "base": base}


@pytest.mark.parametrize("method", ["ae", "vae", "force", "tnt"])
def test_train_with_no_options_then_score(tables, tmp_path, method):
    out = tmp_path / method
    args = ["train", method, "--features", tables["train"], "--output", out]
    if method == "ae":  # the defaults, as they are; the others get a fast config
        r = invoke(args)
    elif method in ("vae", "force"):
        r = invoke([*args, "--config", tables["fast"]])
    else:
        cfg = tmp_path / "tnt.yaml"
        cfg.write_text(
            "ae: {epochs: 3, num_threads: 1}\nclassifier: {n_ensemble: 1, hgb_max_iter: 20}\n"
        )
        r = invoke([*args, "--config", cfg])
    assert r.exit_code == 0, r.output
    model = ResonantModel.load(out)
    assert model.method == method
    expected = INVARIANT_JET_FEATURES if method == "force" else JET_FEATURES
    assert list(model.features) == list(expected)

    scores_file = tmp_path / "scores.parquet"
    r = invoke(["score", out, "--features", tables["test"], "--output", scores_file])
    assert r.exit_code == 0, r.output
    scores = pd.read_parquet(scores_file)
    table = read_features(tables["test"])
    assert len(scores) == len(table) and (scores["score_mode"] == "ensemble").all()
    assert np.array_equal(scores["score"], model.score(table, mode="ensemble"))
    assert np.all(np.isfinite(scores["score"]))


def test_control_region_rule_and_evaluate(tables, tmp_path):
    out = tmp_path / "ae_cr"
    r = invoke(["train", "ae", "--features", tables["train"], "--output", out, "--config",
                tables["fast"], "--control-region", "abs(delta_eta) >= 0.5", "--rule", "sum"])  # fmt: skip
    assert r.exit_code == 0, r.output
    model = ResonantModel.load(out)
    assert model.config.control_region == "abs(delta_eta) >= 0.5" and model.config.rule == "sum"
    table = read_features(tables["train"])
    assert model.summary["n_control_region"] == int((table["delta_eta"] >= 0.5).sum())

    r = invoke(["evaluate", out, "--test", tables["test"], "--output", tmp_path / "eval"])
    assert r.exit_code == 0, r.output
    summary = json.loads((tmp_path / "eval" / "summary.json").read_text())
    assert 0.0 <= summary["models"]["ae"]["auc"] <= 1.0

    # tnt bootstrapped from that saved ae (its control-region column is read for it)
    cfg = tmp_path / "tnt.yaml"
    cfg.write_text("classifier: {n_ensemble: 1, hgb_max_iter: 20}\n")
    r = invoke(["train", "tnt", "--features", tables["train"], "--output", tmp_path / "tnt",
                "--starter", out, "--config", cfg, "--rule", "max"])  # fmt: skip
    assert r.exit_code == 0, r.output
    tnt = ResonantModel.load(tmp_path / "tnt")
    assert tnt.summary["starter"]["path"] == str(out) and tnt.config.rule == "max"

    # refusals: one clear line, no traceback
    r = invoke(["train", "cwola", "--features", tables["train"], "--output", tmp_path / "c",
                "--rule", "min"])  # fmt: skip
    assert r.exit_code == 2 and "--rule does not apply to method 'cwola'" in r.text
    r = invoke(["train", "ae", "--features", tables["train"], "--output", tmp_path / "bad",
                "--control-region", "abs(eta_j9) > 1"])  # fmt: skip
    assert r.exit_code == 2 and "eta_j9" in r.text and "Traceback" not in r.output
    r = invoke(["train", "ae", "--features", tables["train"], "--output", tmp_path / "bad2",
                "--features-list", "mj1,tau21_j1"])  # fmt: skip
    assert r.exit_code == 2 and "have no partner" in r.text
    r = invoke(["score", out, "--features", tables["base"] / "missing", "--output", tmp_path / "s"])
    assert r.exit_code != 0

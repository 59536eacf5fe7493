"""The resonant-model API: regions, folds, injection, preprocessing, artifacts, validation, blinding."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import numpy as np
import pandas as pd
import pytest

from adhunt.injection import inject_signal, injection_summary
from adhunt.models.artifact import ArtifactError, load_artifact, save_artifact
from adhunt.models.base import FoldModel, ResonantModel, TrainConfig
from adhunt.models.cwola import CWoLa
from adhunt.models.preprocessing import LogitScaler, Pipeline, Standardizer, transform_from_dict
from adhunt.models.references import IdealizedAD, Supervised
from adhunt.models.registry import METHODS, get_method
from adhunt.regions import SignalRegion, kfold_assignments, validation_mask

FEATS = ["f0", "f1"]
FAST = TrainConfig(backend="hgb", n_ensemble=1, hgb_max_iter=30, num_threads=1)


def toy(n_bkg=3000, n_sig=300, seed=0, start=0):
    """Background N(0, I) over flat mjj, signal N(1.5, I) in the SR; unique (run, event)."""
    rng = np.random.default_rng(seed)
    x = np.vstack([rng.normal(size=(n_bkg, 2)), rng.normal(1.5, 1.0, size=(n_sig, 2))])
    df = pd.DataFrame(x, columns=FEATS)
    df["mjj"] = np.r_[rng.uniform(2800, 4200, n_bkg), rng.uniform(3300, 3700, n_sig)]
    df["truth_label"] = np.r_[np.zeros(n_bkg, int), np.ones(n_sig, int)]
    df["run"] = 7
    df["event"] = np.arange(start, start + n_bkg + n_sig)
    return df


# ----- regions and folds ----------------------------------------------------------------------


def test_signal_region_masks_and_parse():
    region = SignalRegion.parse("3300:3700")
    m = np.array([3299.9, 3300.0, 3500.0, 3699.9, 3700.0, 2000.0, np.nan])
    assert region.in_sr(m).tolist() == [False, True, True, True, False, False, False]
    assert region.in_sb(m).tolist() == [True, False, False, False, True, True, False]
    narrow = SignalRegion.parse("3300:3700:200")
    assert narrow.sideband_width == 200
    assert narrow.in_sb(m).tolist() == [True, False, False, False, True, False, False]
    assert str(narrow) == "3300:3700:200"
    for bad in ("3700:3300", "3300", "a:b", "1:2:3:4", "3300:3700:-5"):
        with pytest.raises(ValueError, match=r"window|low < high|positive|number"):
            SignalRegion.parse(bad)


def test_kfold_is_a_property_of_the_event():
    df = toy(5000, 0)
    folds = kfold_assignments(df["run"], df["event"], 5, seed=3)
    assert set(folds.tolist()) == set(range(5))
    # balanced within binomial fluctuations
    counts = np.bincount(folds)
    assert np.all(np.abs(counts - 1000) < 5 * np.sqrt(1000))
    # row order, chunking and dtype do not matter
    perm = np.random.default_rng(0).permutation(len(df))
    shuffled = kfold_assignments(df["run"].to_numpy()[perm], df["event"].to_numpy()[perm], 5, 3)
    assert np.array_equal(shuffled, folds[perm])
    parts = [
        kfold_assignments(df["run"][a:b], df["event"][a:b], 5, 3) for a, b in ((0, 17), (17, 5000))
    ]
    assert np.array_equal(np.concatenate(parts), folds)
    assert np.array_equal(kfold_assignments(df["run"].astype(np.int32), df["event"], 5, 3), folds)
    # another seed reshuffles; validation picks ~its fraction independently of the fold
    other = kfold_assignments(df["run"], df["event"], 5, seed=4)
    assert np.mean(other == folds) < 0.3
    val = validation_mask(df["run"], df["event"], 0.2, seed=3)
    assert abs(val.mean() - 0.2) < 0.02
    for k in range(5):
        assert abs(val[folds == k].mean() - 0.2) < 0.05
    with pytest.raises(ValueError, match="integers"):
        kfold_assignments(np.array([1.5]), np.array([2]), 5, 0)


# ----- injection ------------------------------------------------------------------------------


def test_injection_is_seeded_and_checked():
    df = toy(2000, 500)
    bkg, sig = df[df.truth_label == 0], df[df.truth_label == 1]
    a = inject_signal(bkg, sig, 120, seed=1)
    b = inject_signal(bkg, sig, 120, seed=1)
    c = inject_signal(bkg, sig, 120, seed=2)
    pd.testing.assert_frame_equal(a, b)
    assert len(a) == 2120 and int(a.truth_label.sum()) == 120
    assert (
        not a.iloc[2000:]["event"]
        .reset_index(drop=True)
        .equals(c.iloc[2000:]["event"].reset_index(drop=True))
    )
    assert a.iloc[2000:]["event"].is_unique  # without replacement
    summary = injection_summary(a, SignalRegion())
    assert summary["n_signal_sr"] == 120
    assert summary["n_background_sr"] == int(SignalRegion().in_sr(bkg["mjj"]).sum())
    with pytest.raises(ValueError, match="only 500"):
        inject_signal(bkg, sig, 501, seed=0)
    with pytest.raises(ValueError, match="truth_label == 1"):
        inject_signal(df, sig, 10, seed=0)
    with pytest.raises(ValueError, match="non-negative"):
        inject_signal(bkg, sig, -1, seed=0)


# ----- preprocessing --------------------------------------------------------------------------


def test_preprocessing_round_trip_and_jacobian():
    rng = np.random.default_rng(2)
    x = np.c_[rng.uniform(20, 500, 1000), rng.uniform(0, 1, 1000), np.full(1000, 3.0)]
    pipe = Pipeline([LogitScaler(eps=1e-4), Standardizer()]).fit(x)
    z = pipe.transform(x)
    assert np.all(np.isfinite(z))
    assert np.allclose(z[:, :2].mean(axis=0), 0, atol=1e-9)
    assert np.allclose(pipe.inverse_transform(z), x, rtol=1e-7, atol=1e-7)
    again = transform_from_dict(json.loads(json.dumps(pipe.to_dict())))
    assert np.array_equal(again.transform(x), z)
    # log|det J| against finite differences of the (diagonal) transform
    h = 1e-5
    xi = x[:5, :2]
    scaler = LogitScaler(eps=1e-4).fit(x[:, :2])
    num = sum(
        np.log(
            np.abs((scaler.transform(xi + h * e) - scaler.transform(xi - h * e))[:, j] / (2 * h))
        )
        for j, e in enumerate(np.eye(2))
    )
    assert np.allclose(scaler.log_abs_det_jacobian(xi), num, rtol=1e-5)
    with pytest.raises(ValueError, match="fitted on 3 features"):
        pipe.transform(x[:, :2])
    with pytest.raises(RuntimeError, match="before fit"):
        Standardizer().transform(x)


# ----- artifacts ------------------------------------------------------------------------------


def test_artifact_round_trip_and_tampering(tmp_path):
    tensors = {
        "a/w": np.arange(12, dtype=np.float32).reshape(3, 4),
        "b": np.array([1, 2], np.int64),
    }
    meta = {"method": "x", "window": [3300.0, 3700.0]}
    save_artifact(tmp_path / "m", tensors, meta)
    got, got_meta = load_artifact(tmp_path / "m")
    assert got_meta == meta
    assert all(np.array_equal(got[k], v) and got[k].dtype == v.dtype for k, v in tensors.items())

    def fresh(name):
        return save_artifact(tmp_path / name, tensors, meta)

    # a flipped byte in the weights
    p = fresh("flip") / "weights.safetensors"
    raw = bytearray(p.read_bytes())
    raw[-3] ^= 0x01
    p.write_bytes(bytes(raw))
    with pytest.raises(ArtifactError, match="checksum"):
        load_artifact(p.parent)
    # truncated weights
    p = fresh("trunc") / "weights.safetensors"
    p.write_bytes(p.read_bytes()[:-10])
    with pytest.raises(ArtifactError, match="truncated or modified"):
        load_artifact(p.parent)
    # edited metadata (e.g. someone "fixes" the window by hand)
    p = fresh("meta") / "model.json"
    doc = json.loads(p.read_text())
    doc["metadata"]["window"] = [3000.0, 3700.0]
    p.write_text(json.dumps(doc))
    with pytest.raises(ArtifactError, match="metadata was modified"):
        load_artifact(p.parent)
    # weights of another model (checksum in model.json updated to match, header does not)
    other = save_artifact(tmp_path / "other", tensors, {"method": "y"})
    p = fresh("swap")
    (p / "weights.safetensors").write_bytes((other / "weights.safetensors").read_bytes())
    doc = json.loads((p / "model.json").read_text())
    doc["weights_sha256"] = json.loads((other / "model.json").read_text())["weights_sha256"]
    (p / "model.json").write_text(json.dumps(doc))
    with pytest.raises(ArtifactError, match=r"different model\.json"):
        load_artifact(p)
    # missing file, garbage JSON, not a directory
    p = fresh("missing")
    (p / "weights.safetensors").unlink()
    with pytest.raises(ArtifactError, match="missing"):
        load_artifact(p)
    p = fresh("garbage")
    (p / "model.json").write_text("{not json")
    with pytest.raises(ArtifactError, match="not valid JSON"):
        load_artifact(p)
    with pytest.raises(ArtifactError, match="not found"):
        load_artifact(tmp_path / "nowhere")


def test_model_save_load_identical_scores_and_scores_without_sklearn(tmp_path):
    data = toy(3000, 300)
    model = CWoLa(FEATS, SignalRegion(), n_folds=3, seed=11, config=FAST).fit(data)
    model.save(tmp_path / "cwola", extra={"note": "test"})
    loaded = ResonantModel.load(tmp_path / "cwola")
    assert isinstance(loaded, CWoLa)
    assert loaded.config == FAST and loaded.region == SignalRegion() and loaded.seed == 11
    assert loaded.extra == {"note": "test"}
    test = toy(500, 500, seed=5, start=10**6)
    for mode in ("kfold", "ensemble"):
        assert np.array_equal(loaded.score(test, mode=mode), model.score(test, mode=mode))
    with pytest.raises(ArtifactError, match="not IdealizedAD"):
        IdealizedAD.load(tmp_path / "cwola")
    # A fresh interpreter that cannot import sklearn (nor torch) still scores the saved model:
    # the artifact holds everything; no pickle, no training state.
    test.to_parquet(tmp_path / "test.parquet")
    code = (
        "import sys; sys.modules['sklearn'] = None; sys.modules['torch'] = None\n"
        "import numpy as np, pandas as pd\n"
        "from adhunt.models.base import ResonantModel\n"
        f"m = ResonantModel.load({str(tmp_path / 'cwola')!r})\n"
        f"s = m.score(pd.read_parquet({str(tmp_path / 'test.parquet')!r}), mode='ensemble')\n"
        f"np.save({str(tmp_path / 's.npy')!r}, s)\n"
    )
    subprocess.run(
        [sys.executable, "-c", code], check=True, env={**os.environ, "PYTHONWARNINGS": "ignore"}
    )
    assert np.array_equal(np.load(tmp_path / "s.npy"), model.score(test, mode="ensemble"))


# ----- k-fold leakage and blinding, by construction --------------------------------------------


class _Memo(FoldModel):
    """Remembers the ids of every event it trained on; scores 1 for those, 0 otherwise."""

    kind = "test-memo"

    def __init__(self, seen: np.ndarray) -> None:
        self.seen = np.asarray(seen)

    def score(self, x: np.ndarray) -> np.ndarray:
        return np.isin(x[:, 0], self.seen).astype(float)

    def tensors(self) -> dict[str, np.ndarray]:
        return {"seen": self.seen}

    def metadata(self) -> dict[str, Any]:
        return {}

    @classmethod
    def from_parts(cls, tensors, metadata):
        return cls(tensors["seen"])


class _Recorder(ResonantModel):
    method = "test-recorder"

    def _fit_fold(self, k, train, val, reference):
        self.calls = [*getattr(self, "calls", []), (k, train.copy(), val.copy())]
        return _Memo(np.r_[train["eid"].to_numpy(), val["eid"].to_numpy()])


class _SupervisedRecorder(_Recorder):
    method = "test-supervised-recorder"
    uses_truth = True


def test_no_event_is_scored_by_a_model_that_trained_on_it():
    data = toy(2000, 200)
    data["eid"] = data["event"].astype(float)
    data = data.sample(frac=1.0, random_state=1).reset_index(drop=True)  # order must not matter
    model = _Recorder(["eid"], SignalRegion(), n_folds=4, seed=5).fit(data)
    folds = kfold_assignments(data["run"], data["event"], 4, 5)
    for k, train, val in model.calls:
        used = np.r_[train["event"], val["event"]]
        # exactly the events outside fold k, each once, none of fold k
        assert np.array_equal(np.sort(used), np.sort(data["event"][folds != k].to_numpy()))
        assert not set(train["event"]) & set(val["event"])
        assert "truth_label" not in train.columns and "truth_label" not in val.columns
    assert np.all(model.score(data) == 0.0)  # k-fold: every event's model never saw it
    assert np.all(model.score(data, mode="ensemble") == 0.75)  # 3 of 4 fold models saw it
    # scoring a permuted table gives the permuted scores (fold follows the event)
    perm = np.random.default_rng(0).permutation(len(data))
    ens = model.score(data.iloc[perm], mode="ensemble")
    assert np.array_equal(ens, model.score(data, mode="ensemble")[perm])


def test_only_supervised_sees_truth():
    data = toy(1000, 100)
    data["eid"] = data["event"].astype(float)
    blind = _Recorder(["eid"], SignalRegion(), n_folds=2).fit(data)
    assert all("truth_label" not in t.columns for _, t, _ in blind.calls)
    sup = _SupervisedRecorder(["eid"], SignalRegion(), n_folds=2).fit(data)
    assert all("truth_label" in t.columns for _, t, _ in sup.calls)
    with pytest.raises(ValueError, match="truth_label 0 or 1"):
        Supervised(FEATS, SignalRegion(), n_folds=2, config=FAST).fit(data.assign(truth_label=-1))
    with pytest.raises(ValueError, match="cannot be input features"):
        CWoLa(["f0", "truth_label"], SignalRegion())
    with pytest.raises(ValueError, match="cannot be input features"):
        CWoLa(["f0", "mjj"], SignalRegion())


# ----- bad input ------------------------------------------------------------------------------


def test_bad_input_gives_clear_errors():
    data = toy(1000, 100)
    model = CWoLa(FEATS, SignalRegion(), n_folds=2, config=FAST)
    with pytest.raises(ValueError, match=r"missing column\(s\) \['f1'\]"):
        model.fit(data.drop(columns=["f1"]))
    nan = data.copy()
    nan.loc[17, "f0"] = np.nan
    nan.loc[20, "f0"] = np.inf
    with pytest.raises(
        ValueError, match=r"'f0' has 2 NaN/inf value\(s\).*row 17 \(run 7, event 17\)"
    ):
        model.fit(nan)
    with pytest.raises(ValueError, match="no events in the signal region"):
        model.fit(data[~SignalRegion().in_sr(data["mjj"])])
    with pytest.raises(ValueError, match="no sideband events"):
        model.fit(data[SignalRegion().in_sr(data["mjj"])])
    with pytest.raises(ValueError, match="data: no events"):
        model.fit(data.iloc[:0])
    with pytest.raises(ValueError, match="must be numeric"):
        model.fit(data.assign(f0="x"))
    with pytest.raises(RuntimeError, match="before fit"):
        model.score(data)
    with pytest.raises(ValueError, match="needs a reference"):
        IdealizedAD(FEATS, SignalRegion(), n_folds=2, config=FAST).fit(data)
    with pytest.raises(ValueError, match="does not use a reference"):
        model.fit(data, reference=data)
    with pytest.raises(ValueError, match="n_folds must be >= 2"):
        CWoLa(FEATS, SignalRegion(), n_folds=1)
    with pytest.raises(ValueError, match="backend"):
        TrainConfig(backend="xgb")
    model.fit(data)
    with pytest.raises(ValueError, match="data to score: column 'f1' has 1 NaN"):
        model.score(data.assign(f1=np.r_[np.nan, data["f1"].to_numpy()[1:]]))
    with pytest.raises(ValueError, match="mode"):
        model.score(data, mode="best")


def test_registry_is_lazy_and_clear():
    assert set(METHODS) >= {"cwola", "cathode", "anode", "ranode", "iad", "supervised"}
    assert get_method("cwola") is CWoLa and get_method("iad") is IdealizedAD
    assert get_method("supervised") is Supervised
    with pytest.raises(KeyError, match="unknown method 'nope'; available: cwola"):
        get_method("nope")


# ----- training keys: which events a model saw --------------------------------------------------


def test_model_knows_its_training_events_across_save_and_load(tmp_path):
    data = toy(2000, 200, seed=5)
    model = CWoLa(FEATS, SignalRegion(3300, 3700), n_folds=3, seed=2, config=FAST).fit(data)
    unseen = toy(500, 50, seed=6, start=10_000)
    both = pd.concat([data.iloc[:300], unseen], ignore_index=True)
    assert model.trained_mask(both).tolist() == [True] * 300 + [False] * len(unseen)
    model.save(tmp_path / "m")
    loaded = ResonantModel.load(tmp_path / "m")
    assert np.array_equal(loaded.training_keys, model.training_keys)
    assert loaded.trained_mask(both).tolist() == model.trained_mask(both).tolist()
    auto = loaded.score(both, mode="auto")
    assert np.array_equal(auto[:300], loaded.score(both.iloc[:300], mode="kfold"))
    assert np.array_equal(auto[300:], loaded.score(unseen, mode="ensemble"))
    with pytest.raises(ValueError, match="score mode must be one of"):
        loaded.score(both, mode="magic")


def test_model_saved_without_training_keys_scores_auto_as_kfold(tmp_path):
    data = toy(2000, 200, seed=5)
    model = CWoLa(FEATS, SignalRegion(3300, 3700), n_folds=3, seed=2, config=FAST).fit(data)
    model.training_keys = None  # as saved before the keys were recorded
    model.save(tmp_path / "old")
    old = ResonantModel.load(tmp_path / "old")
    assert old.training_keys is None and old.trained_mask(data) is None
    assert np.array_equal(old.score(data, mode="auto"), old.score(data, mode="kfold"))

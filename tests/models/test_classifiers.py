"""Classifier back-ends: exact pickle-free boosted trees, seeded MLPs, early stopping, weights."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.ensemble import HistGradientBoostingClassifier
from threadpoolctl import threadpool_limits

from adhunt.models.artifact import load_artifact, save_artifact
from adhunt.models.base import TrainConfig, fold_model_from_parts
from adhunt.models.classifiers import (
    HGBEnsemble,
    MLPEnsemble,
    class_balance_weights,
    fit_classifier,
    fit_hgb,
    fit_mlp,
)

MLP = TrainConfig(
    backend="mlp", n_ensemble=2, epochs=15, patience=3, hidden=(16, 16), num_threads=1
)


def _data(n, seed, nan_fraction=0.0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 5))
    y = (x[:, 0] + 0.5 * x[:, 1] * x[:, 2] + rng.normal(size=n) > 0).astype(int)
    if nan_fraction:
        x[rng.random(x.shape) < nan_fraction] = np.nan
    return x, y


def _round_trip(model, tmp_path):
    save_artifact(tmp_path, model.tensors(), {"kind": model.kind, "meta": model.metadata()})
    tensors, meta = load_artifact(tmp_path)
    return fold_model_from_parts(meta["kind"], tensors, meta["meta"])


@pytest.mark.parametrize(
    ("params", "nan_fraction"),
    [({"max_iter": 40}, 0.0), ({"max_iter": 60, "max_leaf_nodes": 7, "learning_rate": 0.3}, 0.05)],
)
def test_exported_trees_equal_sklearn_predict_proba(params, nan_fraction, tmp_path):
    x, y = _data(4000, 0, nan_fraction)
    x_test, _ = _data(3000, 1, nan_fraction)
    x_test[:5] = np.nan  # all-missing rows follow the learned missing-value branches
    with threadpool_limits(limits=1, user_api="openmp"):  # OpenMP crawls on crowded CI cores
        clf = HistGradientBoostingClassifier(random_state=0, early_stopping=True, **params)
        expected = clf.fit(x, y).predict_proba(x_test)[:, 1]
    exported = HGBEnsemble.from_estimators([clf])
    assert np.array_equal(exported.score(x_test), expected)  # bit for bit
    loaded = _round_trip(exported, tmp_path)  # and after safetensors + JSON
    assert np.array_equal(loaded.score(x_test), expected)


def test_hgb_ensemble_is_seeded_and_members_differ():
    x, y = _data(3000, 2)
    cfg = TrainConfig(backend="hgb", n_ensemble=3, hgb_max_iter=50, num_threads=1)
    a, b = fit_hgb(x, y, seed=5, config=cfg), fit_hgb(x, y, seed=5, config=cfg)
    c = fit_hgb(x, y, seed=6, config=cfg)
    x_test, y_test = _data(2000, 3)
    assert np.array_equal(a.score(x_test), b.score(x_test))
    assert not np.array_equal(a.score(x_test), c.score(x_test))
    raw = a.raw_scores(x_test)
    assert raw.shape == (3, 2000) and not np.allclose(raw[0], raw[1])
    # the ensemble score is the mean member probability
    assert np.allclose(a.score(x_test), np.mean(1 / (1 + np.exp(-raw)), axis=0))
    # it learned something: accuracy well above chance
    assert np.mean((a.score(x_test) > 0.5) == y_test) > 0.7


def test_mlp_is_seeded_round_trips_and_learns(tmp_path):
    x, y = _data(3000, 4)
    a, b = fit_mlp(x, y, seed=1, config=MLP), fit_mlp(x, y, seed=1, config=MLP)
    c = fit_mlp(x, y, seed=2, config=MLP)
    x_test, y_test = _data(2000, 5)
    assert np.array_equal(a.score(x_test), b.score(x_test))
    assert not np.array_equal(a.score(x_test), c.score(x_test))
    loaded = _round_trip(a, tmp_path)
    assert isinstance(loaded, MLPEnsemble)
    assert np.allclose(loaded.score(x_test), a.score(x_test), rtol=0, atol=1e-6)
    assert np.mean((a.score(x_test) > 0.5) == y_test) > 0.7


def test_mlp_early_stopping_keeps_the_best_epoch():
    rng = np.random.default_rng(7)
    x, y = rng.normal(size=(1500, 5)), rng.integers(0, 2, 1500)  # pure noise: nothing to learn
    x_val, y_val = rng.normal(size=(1500, 5)), rng.integers(0, 2, 1500)
    cfg = TrainConfig(
        backend="mlp", n_ensemble=1, epochs=200, patience=3, hidden=(64, 64), lr=1e-2, num_threads=1
    )
    model = fit_mlp(x, y, x_val=x_val, y_val=y_val, seed=0, config=cfg)
    assert model.info["epochs"][0] < 60  # stopped long before 200 epochs
    # the kept weights are those of the best validation loss (recomputed independently)
    p = np.clip(model.score(x_val), 1e-12, 1 - 1e-12)
    w = class_balance_weights(y_val)
    bce = -np.sum(w * (y_val * np.log(p) + (1 - y_val) * np.log(1 - p))) / w.sum()
    assert bce == pytest.approx(model.info["best_val_loss"][0], rel=1e-4)


def test_class_balance_weights():
    y = np.r_[np.ones(100, int), np.zeros(900, int)]
    w = class_balance_weights(y)
    assert w[y == 1].sum() == pytest.approx(w[y == 0].sum())
    assert w.mean() == pytest.approx(1.0)
    base = np.r_[np.full(100, 2.0), np.ones(900)]
    w2 = class_balance_weights(y, base)
    assert w2[y == 1].sum() == pytest.approx(w2[y == 0].sum())
    assert w2[0] / w2[150] == pytest.approx(2.0 * 900 / 200)
    with pytest.raises(ValueError, match="class 1 has no events"):
        class_balance_weights(np.zeros(10, int))


def test_balancing_makes_the_output_the_likelihood_ratio_not_the_prior():
    # 1:9 classes, identical feature distributions except a shift: balanced training gives a
    # probability near 0.5 where the two densities are equal (x0 = shift/2), not the prior 0.1
    rng = np.random.default_rng(8)
    x = np.r_[rng.normal(1.0, 1.0, (1000, 1)), rng.normal(0.0, 1.0, (9000, 1))]
    y = np.r_[np.ones(1000, int), np.zeros(9000, int)]
    for backend in ("hgb", "mlp"):
        cfg = TrainConfig(
            backend=backend, n_ensemble=1, epochs=20, hgb_max_leaf_nodes=4, num_threads=1
        )
        model = fit_classifier(x, y, seed=0, config=cfg)
        assert model.score(np.array([[0.5]]))[0] == pytest.approx(0.5, abs=0.1)


def test_bad_training_input():
    x, y = _data(100, 9)
    cfg = TrainConfig(backend="hgb", n_ensemble=1, num_threads=1)
    with pytest.raises(ValueError, match="NaN or inf"):
        fit_classifier(np.where(x > 2, np.inf, x), y, config=cfg)
    with pytest.raises(ValueError, match="labels must be 0 or 1"):
        fit_classifier(x, y + 1, config=cfg)
    with pytest.raises(ValueError, match="shape"):
        fit_classifier(x, y[:-1], config=cfg)
    with pytest.raises(ValueError, match="class 1 has no events"):
        fit_classifier(x, np.zeros(100, int), config=cfg)
    model = fit_classifier(x, y, config=cfg)
    with pytest.raises(ValueError, match="expects"):
        model.score(x[:, :3])


def test_corrupt_tree_arrays_are_refused():
    # The compiled tree walk trusts its arrays, so loading must reject any that could send it
    # out of bounds or into an endless loop (the artifact checksums catch edits; this catches
    # arrays that were wrong when written).
    x, y = _data(500, 10)
    model = fit_hgb(x, y, seed=0, config=TrainConfig(n_ensemble=1, hgb_max_iter=5, num_threads=1))
    tensors, meta = model.tensors(), model.metadata()
    inner = np.flatnonzero(tensors["member0/is_leaf"] == 0)
    cyclic = dict(tensors)
    cyclic["member0/left"] = tensors["member0/left"].copy()
    cyclic["member0/left"][inner[1]] = inner[0]  # a child pointing back up to the root
    with pytest.raises(ValueError, match="cycle"):
        HGBEnsemble.from_parts(cyclic, meta)
    wild = dict(tensors)
    wild["member0/right"] = tensors["member0/right"].copy()
    wild["member0/right"][inner[0]] = 10**9
    with pytest.raises(ValueError, match="right child index out of range"):
        HGBEnsemble.from_parts(wild, meta)
    badfeat = dict(tensors)
    badfeat["member0/feature_idx"] = tensors["member0/feature_idx"].copy()
    badfeat["member0/feature_idx"][inner[0]] = 99
    with pytest.raises(ValueError, match="feature index out of range"):
        HGBEnsemble.from_parts(badfeat, meta)

"""``ae``/``vae`` with ``inputs="images"``: convolutional per-jet networks on jet images made by
``adhunt.images`` from toy one- and two-prong jets, read through the image pseudo-columns."""

from __future__ import annotations

import awkward as ak
import numpy as np
import pandas as pd
import pytest
import torch

from adhunt.images import jet_images
from adhunt.models.autoencoders import (
    Autoencoder,
    AutoencoderConfig,
    VariationalAutoencoder,
)
from adhunt.models.base import ResonantModel
from adhunt.regions import SignalRegion
from adhunt.schema import IMAGE_PSEUDO_COLUMNS
from adhunt.tables import with_image_columns

SIZE = 16
WINDOW = SignalRegion(3000.0, 3600.0)


@pytest.fixture(autouse=True)
def _one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def toy_images(n: int, prongs: int, rng: np.random.Generator, size: int = SIZE) -> np.ndarray:
    """[n, S, S] unit-sum images of toy jets: 40 massless particles around 1 or 2 prongs
    (second prong 0.4 away carrying about a third of the particles, each 1.5x harder)."""
    k = 40
    rap = np.repeat(rng.uniform(-1, 1, n), k)
    phi = np.repeat(rng.uniform(-np.pi, np.pi, n), k)
    pt = rng.exponential(20.0, n * k) + 0.5
    if prongs == 2:
        second = np.tile(np.arange(k) < k // 3, n)
        angle = np.repeat(rng.uniform(0, 2 * np.pi, n), k)
        rap = rap + second * 0.4 * np.cos(angle)
        phi = phi + second * 0.4 * np.sin(angle)
        pt = pt * np.where(second, 1.5, 1.0)
    rap = rap + rng.normal(0, 0.05, n * k)
    phi = phi + rng.normal(0, 0.05, n * k)
    p4 = {
        "px": pt * np.cos(phi),
        "py": pt * np.sin(phi),
        "pz": pt * np.sinh(rap),
        "E": pt * np.cosh(rap),
    }
    return jet_images(ak.unflatten(ak.zip(p4), np.full(n, k)), 1.0, size).images


def toy_events(n: int, prongs: int, seed: int, first_event: int = 0, size: int = SIZE):
    """Dijet toy table: both jets of an event have ``prongs`` prongs; mjj spans the window."""
    rng = np.random.default_rng(seed)
    images = np.stack([toy_images(n, prongs, rng, size), toy_images(n, prongs, rng, size)], axis=1)
    frame = pd.DataFrame(
        {
            "run": np.ones(n, np.int64),
            "event": np.arange(first_event, first_event + n, dtype=np.int64),
            "mjj": rng.uniform(2500.0, 4500.0, n),
            "truth_label": np.full(n, int(prongs == 2), np.int32),
        }
    )
    return with_image_columns(frame, images), images


def _config(**kw):
    base = {"inputs": "images", "epochs": 4, "batch_size": 64, "latent_dim": 4, "hidden": (32,)}
    base.update(kw)
    return AutoencoderConfig(**base)


def _auc(background: np.ndarray, signal: np.ndarray) -> float:
    """P(signal score > background score), ties counted half (brute force)."""
    diff = signal[:, None] - background[None, :]
    return float(((diff > 0).sum() + 0.5 * (diff == 0).sum()) / diff.size)


def test_image_columns_hold_the_images():
    frame, images = toy_events(5, 1, seed=0)
    assert list(frame.columns[-2:]) == list(IMAGE_PSEUDO_COLUMNS)
    for row in range(5):
        for jet, name in enumerate(IMAGE_PSEUDO_COLUMNS):
            np.testing.assert_array_equal(frame[name].iloc[row], images[row, jet])
    # Rows survive filtering and concatenation with their images.
    both = pd.concat([frame.iloc[[3, 1]], frame.iloc[[0]]], ignore_index=True)
    np.testing.assert_array_equal(both["image_j2"].iloc[1], images[1, 1])


def test_image_ae_scores_two_prong_jets_higher():
    """Trained on one-prong jets only, the convolutional AE reconstructs two-prong jets worse."""
    train, _ = toy_events(400, 1, seed=1)
    model = Autoencoder(IMAGE_PSEUDO_COLUMNS, WINDOW, n_folds=2, seed=3, config=_config(epochs=6))
    model.fit(train)
    assert model.image_size == SIZE and model.config.network == "conv"
    bkg, _ = toy_events(300, 1, seed=2, first_event=10_000)
    sig, _ = toy_events(300, 2, seed=4, first_event=20_000)
    auc = _auc(model.score(bkg, "ensemble"), model.score(sig, "ensemble"))
    assert auc > 0.8, auc


def test_image_models_round_trip_and_are_reproducible(tmp_path):
    """Save/load gives identical scores in every mode (shared and separate networks); the VAE (sampling in training) gives the
    same scores for the same seed and other scores for another seed."""
    data, _ = toy_events(120, 1, seed=5)
    extra, _ = toy_events(30, 2, seed=6, first_event=5_000)
    both = pd.concat([data.iloc[:40], extra], ignore_index=True)
    cfg = _config(epochs=2, rule="max")

    def vae(seed):
        return VariationalAutoencoder(IMAGE_PSEUDO_COLUMNS, WINDOW, 3, seed, cfg).fit(data)

    separate = _config(epochs=2, jets="separate")  # one network per jet
    for model in (Autoencoder(IMAGE_PSEUDO_COLUMNS, WINDOW, 3, 0, separate).fit(data), vae(7)):
        loaded = ResonantModel.load(model.save(tmp_path / model.method))
        assert loaded.image_size == SIZE
        for mode, table in (("kfold", data), ("ensemble", extra), ("auto", both)):
            np.testing.assert_array_equal(loaded.score(table, mode), model.score(table, mode))
        np.testing.assert_array_equal(
            loaded.jet_scores(data, "kfold"), model.jet_scores(data, "kfold")
        )
    first, again, other = vae(7).score(extra, "ensemble"), vae(7), vae(8)
    np.testing.assert_array_equal(again.score(extra, "ensemble"), first)
    assert not np.array_equal(other.score(extra, "ensemble"), first)
    assert np.isfinite(first).all()


def test_refusals():
    data, _ = toy_events(60, 1, seed=9)
    model = Autoencoder(IMAGE_PSEUDO_COLUMNS, WINDOW, 2, 0, _config(epochs=1)).fit(data)
    small, _ = toy_events(10, 1, seed=10, size=8)
    with pytest.raises(ValueError, match=r"8x8 images; the ae model was trained on 16x16"):
        model.score(small, "ensemble")
    with pytest.raises(
        ValueError, match=r"missing jet image column\(s\) \['image_j1', 'image_j2'\]"
    ):
        model.score(data.drop(columns=list(IMAGE_PSEUDO_COLUMNS)), "ensemble")
    with pytest.raises(ValueError, match="reads exactly the columns"):
        Autoencoder(("mj1", "mj2"), WINDOW, 2, 0, _config())
    with pytest.raises(ValueError, match="inputs='images'"):
        Autoencoder(IMAGE_PSEUDO_COLUMNS, WINDOW, 2, 0, AutoencoderConfig())
    with pytest.raises(ValueError, match="not 'event'"):
        _config(jets="event")
    broken = data.copy()
    bad = broken["image_j1"].iloc[2].copy()
    bad[0, 0] = np.nan
    broken.at[2, "image_j1"] = bad
    with pytest.raises(ValueError, match="NaN/inf pixels, first at row 2"):
        model.score(broken, "ensemble")


def test_tnt_starts_from_an_image_autoencoder(tmp_path):
    """A saved image ae is a per-jet starting tagger of tnt; tnt reads the starter's images for
    training only (its own classifiers are on feature columns), so it scores without images."""
    from adhunt.models.tagntrain import TagNTrain, TagNTrainConfig

    data, _ = toy_events(200, 1, seed=12)
    rng = np.random.default_rng(13)
    data["mj1"], data["mj2"] = rng.normal(100, 10, len(data)), rng.normal(150, 10, len(data))
    starter = Autoencoder(IMAGE_PSEUDO_COLUMNS, WINDOW, 2, 0, _config(epochs=1)).fit(data)
    path = starter.save(tmp_path / "ae")
    cfg = TagNTrainConfig(starter=str(path), classifier={"n_ensemble": 1, "hgb_max_iter": 20})
    tnt = TagNTrain(("mj1", "mj2"), WINDOW, 2, 0, cfg)
    assert set(IMAGE_PSEUDO_COLUMNS) <= set(tnt.table_columns)
    tnt.fit(data)
    without = data.drop(columns=list(IMAGE_PSEUDO_COLUMNS))
    np.testing.assert_array_equal(tnt.score(without, "kfold"), tnt.score(data, "kfold"))
    rounds = tnt.fold_models[0].info["iterations"][0]
    assert all(r["n_signal_like"] > 0 for r in rounds)


def test_tnt_on_images(tmp_path):
    """tnt with inputs='images': a fresh image ae per fold tags one jet, a conv classifier learns
    the other; on toy data with 20% two-prong dijets it separates them, and round-trips."""
    from adhunt.models.tagntrain import TagNTrain, TagNTrainConfig

    bkg, _ = toy_events(400, 1, seed=14)
    sig, _ = toy_events(100, 2, seed=15, first_event=50_000)
    data = pd.concat([bkg, sig], ignore_index=True)
    cfg = TagNTrainConfig(
        inputs="images",
        ae=_config(epochs=6),  # 3 epochs leave the ae near the mean image (seed-dependent)
        classifier={
            "epochs": 4,
            "n_ensemble": 1,
            "batch_size": 64,
            "hidden": [32],
            "num_threads": 1,
        },
    )
    model = TagNTrain(IMAGE_PSEUDO_COLUMNS, WINDOW, 2, 0, cfg).fit(data)
    assert model.image_size == SIZE and model.config.ae.image_size == SIZE
    assert model.fold_models[0].classifiers[0].kind == "conv_classifier"
    scores = model.score(data, "kfold")
    truth = data["truth_label"].to_numpy() == 1
    auc = _auc(scores[~truth], scores[truth])
    assert auc > 0.8, auc
    loaded = ResonantModel.load(model.save(tmp_path / "tnt"))
    np.testing.assert_array_equal(loaded.score(data, "kfold"), scores)
    small, _ = toy_events(5, 1, seed=16, size=8)
    with pytest.raises(ValueError, match="trained on 16x16"):
        loaded.score(small, "ensemble")

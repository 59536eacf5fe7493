"""Outlier detectors (ae, vae, force, tnt): toys with known answers, artifacts, k-fold honesty, errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import ks_2samp, norm
from sklearn.metrics import roc_auc_score

from adhunt.models.autoencoders import Autoencoder, AutoencoderConfig, VariationalAutoencoder
from adhunt.models.base import ResonantModel, TrainConfig
from adhunt.models.force import Force, ForceConfig
from adhunt.models.outliers import JetLayout, combine_jets, control_mask, cut_columns
from adhunt.models.registry import get_method
from adhunt.models.tagntrain import TagNTrain, TagNTrainConfig
from adhunt.regions import SignalRegion, kfold_assignments
from adhunt.schema import JET_FEATURES

COLS = list(JET_FEATURES)  # mj1, tau21_j1, tau32_j1, mj2, tau21_j2, tau32_j2
FAST_AE = AutoencoderConfig(epochs=25, num_threads=1)

# Jet-level toy: background jets spread over a plane (unit width) with a thin (0.2) spread along
# its normal, like correlated substructure variables; the two jets of an event are independent.
_N = np.ones(3) / np.sqrt(3)
_U = np.array([1.0, -1.0, 0.0]) / np.sqrt(2)
_V = np.cross(_N, _U)
THIN = 0.2


def plane_jets(rng, n):
    a, b, c = rng.normal(size=(3, n, 1))
    return a * _U + b * _V + THIN * c * _N


def events(jet1, jet2, rng, start=0, label=0):
    df = pd.DataFrame(np.hstack([jet1, jet2]), columns=COLS)
    n = len(df)
    df["mjj"] = rng.uniform(2800, 4200, n)
    df["delta_eta"] = rng.uniform(0, 2.8, n)
    df["run"] = 1
    df["event"] = np.arange(start, start + n)
    df["truth_label"] = label
    return df


def auc(background, signal):
    y = np.r_[np.zeros(len(background)), np.ones(len(signal))]
    return roc_auc_score(y, np.r_[background, signal])


# ----- per-jet layout, rules, control regions -------------------------------------------------


def test_jet_layout_pairs_columns_by_name():
    lay = JetLayout.from_features(
        ["tau21_j2", "mj1", "mj2", "tau21_j1", "mj1_over_pt_j1", "mj2_over_pt_j2"]
    )
    assert lay.jet1 == ("mj1", "tau21_j1", "mj1_over_pt_j1")  # in the order of the j1 columns
    assert lay.jet2 == ("mj2", "tau21_j2", "mj2_over_pt_j2")
    with pytest.raises(ValueError, match=r"\['tau32_j1'\] have no partner"):
        JetLayout.from_features(["mj1", "mj2", "tau32_j1"])
    with pytest.raises(ValueError, match=r"\['delta_mj'\] belong to neither jet"):
        JetLayout.from_features(["mj1", "mj2", "delta_mj"])
    with pytest.raises(ValueError, match="neither jet"):
        Autoencoder(["mj1", "delta_mj"], SignalRegion(), config=FAST_AE)
    # jets="event" takes any columns
    Autoencoder(["mj1", "delta_mj"], SignalRegion(), config=AutoencoderConfig(jets="event"))


def test_event_rules_against_brute_force():
    s = np.random.default_rng(0).random((50, 2))
    expected = {
        "min": [min(a, b) for a, b in s], "max": [max(a, b) for a, b in s],
        "sum": [a + b for a, b in s], "heavier": [b for _, b in s], "lighter": [a for a, _ in s],
    }  # fmt: skip
    for rule, values in expected.items():
        assert np.allclose(combine_jets(s, rule), values)
    with pytest.raises(ValueError, match="event rule"):
        combine_jets(s, "median")


def test_control_region_cuts():
    rng = np.random.default_rng(1)
    df = pd.DataFrame({"delta_eta": rng.normal(0, 2, 1000), "mjj": rng.uniform(2000, 5000, 1000)})
    de, m = df["delta_eta"].to_numpy(), df["mjj"].to_numpy()
    assert np.array_equal(
        control_mask(df, "abs(delta_eta)>=1.4", SignalRegion()), np.abs(de) >= 1.4
    )
    got = control_mask(
        df, "abs(delta_eta) < 1.4 and (mjj > 3000 or not mjj < 2500)", SignalRegion()
    )
    assert np.array_equal(got, (np.abs(de) < 1.4) & ((m > 3000) | ~(m < 2500)))
    assert np.array_equal(
        control_mask(df, "1 < delta_eta <= 2", SignalRegion()), (de > 1) & (de <= 2)
    )
    region = SignalRegion(3300, 3700, 200)
    assert np.array_equal(control_mask(df, "sidebands", region), region.in_sb(m))
    assert cut_columns("abs(delta_eta) >= 1.4") == ["delta_eta"] and cut_columns(None) == []
    for bad, message in (
        ("__import__('os')", "only abs"), ("delta_eta.real > 1", "Attribute"),
        ("abs(delta_eta) >=", "not a valid"), ("delta_eta + 1", "not a cut"),
        ("delta_eta > 'a'", "not a number"),
    ):  # fmt: skip
        with pytest.raises(ValueError, match=message):
            control_mask(df, bad, SignalRegion())
    with pytest.raises(ValueError, match=r"no column\(s\) \['eta_j3'\]"):
        control_mask(df, "eta_j3 > 1", SignalRegion())


# ----- autoencoders ----------------------------------------------------------------------------


def test_ae_scores_a_shifted_class_higher():
    """Trained on background only; the other class is shifted by 3 sigma off the background's plane."""
    rng = np.random.default_rng(2)
    train = events(plane_jets(rng, 3000), plane_jets(rng, 3000), rng)
    test_b = events(plane_jets(rng, 2000), plane_jets(rng, 2000), rng, 10**6)
    shift = 3 * THIN * _N
    test_s = events(plane_jets(rng, 2000) + shift, plane_jets(rng, 2000) + shift, rng, 2 * 10**6)
    model = Autoencoder(COLS, SignalRegion(), n_folds=2, seed=1, config=FAST_AE).fit(train)
    jb, js = model.jet_scores(test_b, "ensemble"), model.jet_scores(test_s, "ensemble")
    assert auc(jb.ravel(), js.ravel()) > 0.8  # per jet
    assert auc(model.score(test_b, "ensemble"), model.score(test_s, "ensemble")) > 0.9  # min rule
    x = test_s[COLS].to_numpy()
    per_fold = [fold.jet_scores(x).min(axis=1) for fold in model.fold_models]
    assert np.allclose(model.score(test_s, "ensemble"), np.mean(per_fold, axis=0))


def test_vae_kl_is_finite_and_its_loss_decreases():
    rng = np.random.default_rng(3)
    train = events(plane_jets(rng, 2000), plane_jets(rng, 2000), rng)
    cfg = AutoencoderConfig(epochs=15, num_threads=1, patience=15)
    model = VariationalAutoencoder(COLS, SignalRegion(), n_folds=2, seed=0, config=cfg).fit(train)
    for fold in model.fold_models:
        for h in fold.info["history"]:
            assert np.mean(h["train_loss"][-3:]) < 0.9 * np.mean(h["train_loss"][:3])
            assert np.all(np.isfinite(h["train_loss"]))
    x = train[COLS].to_numpy()
    fold = model.fold_models[0]
    kl, reco, total = (fold.jet_scores(x, which) for which in ("kl", "reco", "total"))
    assert np.all(np.isfinite(kl)) and np.all(kl >= 0) and kl.mean() > 0
    assert np.allclose(total, reco + cfg.beta * kl)


def test_control_region_training_sees_only_control_events():
    rng = np.random.default_rng(4)
    train = events(plane_jets(rng, 1500), plane_jets(rng, 1500), rng)
    cfg = AutoencoderConfig(epochs=3, num_threads=1, control_region="abs(delta_eta) >= 1.4")
    model = Autoencoder(COLS, SignalRegion(), n_folds=3, seed=0, config=cfg).fit(train)
    folds = kfold_assignments(train["run"], train["event"], 3, 0)
    in_cr = train["delta_eta"].to_numpy() >= 1.4
    for k, fold in enumerate(model.fold_models):
        seen = fold.info["n_train"] + fold.info["n_val"]
        assert seen == int((in_cr & (folds != k)).sum())
    assert model.summary["n_control_region"] == int(in_cr.sum())
    model.score(train.drop(columns="delta_eta"))  # scoring does not need the cut's columns
    # a cut on a derived column (computed from its stored ingredients, like derived inputs)
    derived = AutoencoderConfig(epochs=1, num_threads=1, control_region="mj2_over_mjj > 0")
    fitted = Autoencoder(COLS, SignalRegion(), n_folds=2, config=derived).fit(train)
    assert fitted.summary["n_control_region"] == int((train["mj2"] > 0).sum())
    with pytest.raises(ValueError, match="no training events in the control region"):
        Autoencoder(COLS, SignalRegion(), n_folds=2, config=cfg).fit(train.assign(delta_eta=0.1))
    with pytest.raises(ValueError, match=r"missing column\(s\) \['delta_eta'\]"):
        Autoencoder(COLS, SignalRegion(), n_folds=2, config=cfg).fit(
            train.drop(columns="delta_eta")
        )


# ----- FORCE --------------------------------------------------------------------------------------

MU_B, MU_S, SIGMA_T, D = 3000.0, 3600.0, 300.0, 2.0


def force_toy(rng, n_bkg, n_sig, start=0):
    """Factorised: background T ~ N(MU_B, SIGMA_T), O ~ N(0, 1); signal T ~ N(MU_S, .), O ~ N(D, 1)."""
    o = np.r_[rng.normal(0, 1, n_bkg), rng.normal(D, 1, n_sig)]
    t = np.r_[rng.normal(MU_B, SIGMA_T, n_bkg), rng.normal(MU_S, SIGMA_T, n_sig)]
    return pd.DataFrame({
        "o": o, "mjj": t, "run": 1, "event": np.arange(start, start + n_bkg + n_sig),
        "truth_label": np.r_[np.zeros(n_bkg, int), np.ones(n_sig, int)],
    })  # fmt: skip


def analytic_expectation(o, f):
    """E[T | O] of the toy: the two classes' means weighted by f p_s(O) and (1 - f) p_b(O)."""
    ps, pb = f * norm.pdf(o - D), (1 - f) * norm.pdf(o)
    return (ps * MU_S + pb * MU_B) / (ps + pb)


FORCE_TOY = ForceConfig(
    jets="event", target="mjj", n_ensemble=3, epochs=40, hidden=(32, 32), num_threads=1
)


def test_force_approaches_the_conditional_expectation():
    rng = np.random.default_rng(5)
    f, n = 0.3, 8000
    data = force_toy(rng, n - int(f * n), int(f * n))
    model = Force(["o"], SignalRegion(), n_folds=2, seed=0, config=FORCE_TOY).fit(data)
    test = force_toy(rng, 3000, 3000, 10**6)
    pred, exact = model.score(test, "ensemble"), analytic_expectation(test["o"].to_numpy(), f)
    assert np.corrcoef(pred, exact)[0, 1] > 0.97
    assert np.sqrt(np.mean((pred - exact) ** 2)) < 0.2 * exact.std()
    assert roc_auc_score(test["truth_label"], pred) > 0.85


def test_force_is_uninformative_without_signal():
    """With no signal E[T | O] is the constant MU_B: the regression must stay flat within statistics.

    (A single training's AUC is not the measure: a flat score's ranking follows its noise, whose
    slope has a random sign, so AUCs of 0.1-0.9 come out; the size of the variation is what
    signal would change.)
    """
    rng = np.random.default_rng(6)
    n = 8000
    model = Force(["o"], SignalRegion(), n_folds=2, seed=0, config=FORCE_TOY).fit(
        force_toy(rng, n, 0)
    )
    test = force_toy(rng, 3000, 3000, 10**6)
    pred = model.score(test, "ensemble")
    n_train = n * 0.5 * 0.8  # one fold's training events
    stat = SIGMA_T / np.sqrt(n_train)  # ~5 GeV: statistical error of a mean
    assert np.sqrt(np.mean((pred - MU_B) ** 2)) < 6 * stat
    signal_spread = analytic_expectation(test["o"].to_numpy(), 0.3).std()
    assert pred.std() < 0.1 * signal_spread


def test_force_per_jet_regresses_jet_pt_and_refuses_pt_inputs():
    rng = np.random.default_rng(7)
    n = 1500
    df = events(plane_jets(rng, n), plane_jets(rng, n), rng)
    df["pt_j1"], df["pt_j2"] = rng.normal(1500, 200, (2, n))
    df = df.rename(columns={"mj1": "mj1_over_pt_j1", "mj2": "mj2_over_pt_j2"})
    feats = ["mj1_over_pt_j1", "tau21_j1", "tau32_j1", "mj2_over_pt_j2", "tau21_j2", "tau32_j2"]
    cfg = ForceConfig(n_ensemble=1, epochs=3, num_threads=1)
    model = Force(feats, SignalRegion(), n_folds=2, seed=0, config=cfg).fit(df)
    assert model.target_columns == ("pt_j1", "pt_j2")
    js = model.jet_scores(df, "kfold")
    assert np.allclose(model.score(df, "kfold"), js.sum(axis=1))  # default rule: sum
    assert abs(js.mean() - 1500) < 100  # predictions are in GeV
    with pytest.raises(ValueError, match=r"target \['pt_j1', 'pt_j2'\] cannot be an input"):
        Force(["pt_j1", "pt_j2"], SignalRegion(), config=cfg)
    with pytest.raises(ValueError, match=r"missing column\(s\) \['pt_j1', 'pt_j2'\]"):
        Force(feats, SignalRegion(), n_folds=2, config=cfg).fit(df.drop(columns=["pt_j1", "pt_j2"]))


# ----- Tag N' Train ---------------------------------------------------------------------------------


def tnt_toy(rng, n_bkg, n_sig, start=0):
    """Background: independent plane jets. Signal: BOTH jets in a compact cluster just off the plane
    (1.5 thin widths), which an autoencoder sees only as mildly anomalous."""
    centre = 0.8 * _U + 0.5 * _V + 1.5 * THIN * _N
    bkg = events(plane_jets(rng, n_bkg), plane_jets(rng, n_bkg), rng, start)
    sig_jets = [centre + 0.1 * rng.normal(size=(n_sig, 3)) for _ in range(2)]
    sig = events(*sig_jets, rng, start + n_bkg, label=1)
    return pd.concat([bkg, sig], ignore_index=True)


def test_tnt_improves_over_its_starting_autoencoder(tmp_path):
    rng = np.random.default_rng(8)
    data, test = tnt_toy(rng, 14500, 500), tnt_toy(rng, 10000, 1000, 10**6)
    y = test["truth_label"].to_numpy()
    ae = Autoencoder(COLS, SignalRegion(), n_folds=2, seed=0, config=FAST_AE).fit(data)
    ae.save(tmp_path / "ae")
    clf = TrainConfig(n_ensemble=1, hgb_max_iter=100, num_threads=1)
    cfg = TagNTrainConfig(starter=str(tmp_path / "ae"), classifier=clf)
    tnt = TagNTrain(COLS, SignalRegion(), n_folds=2, seed=0, config=cfg).fit(data)
    auc_ae = roc_auc_score(y, ae.score(test, "ensemble"))
    auc_tnt = roc_auc_score(y, tnt.score(test, "ensemble"))
    assert auc_ae > 0.7  # the starter is informative ...
    assert auc_tnt > auc_ae + 0.08  # ... and TNT learns the signal's own shape from it
    # combined score: both jets' rank-normalised scores above the cut (min)
    assert np.allclose(tnt.score(test, "ensemble"), np.mean(
        [f.jet_scores(test[COLS].to_numpy()).min(axis=1) for f in tnt.fold_models], axis=0))  # fmt: skip
    assert tnt.summary["starter"]["method"] == "ae"
    rounds = tnt.fold_models[0].info["iterations"][0]
    assert (
        0.15
        < rounds[0]["n_signal_like"] / (rounds[0]["n_signal_like"] + rounds[0]["n_background_like"])
        < 0.4
    )


def test_tnt_fresh_starter_iterations_and_window(tmp_path):
    rng = np.random.default_rng(9)
    data = tnt_toy(rng, 3000, 150)
    clf = TrainConfig(n_ensemble=1, hgb_max_iter=20, num_threads=1)
    cfg = TagNTrainConfig(
        ae=AutoencoderConfig(epochs=3, num_threads=1), classifier=clf, iterations=2,
        require_window=True,
    )  # fmt: skip
    tnt = TagNTrain(COLS, SignalRegion(3300, 3700), n_folds=2, seed=3, config=cfg).fit(data)
    assert len(tnt.fold_models[0].info["iterations"]) == 2
    scores = tnt.score(data)
    assert np.all((scores >= 0) & (scores <= 1))
    tnt.save(tmp_path / "tnt")
    assert np.array_equal(ResonantModel.load(tmp_path / "tnt").score(data), scores)
    with pytest.raises(ValueError, match="must score each jet"):
        TagNTrain(
            ["mj1", "mj2"],
            SignalRegion(),
            config=TagNTrainConfig(ae=AutoencoderConfig(jets="event")),
        )
    with pytest.raises(ValueError, match="sum <= 1"):
        TagNTrainConfig(signal_fraction=0.7, background_fraction=0.5)
    not_per_jet = Autoencoder(["mj1", "delta_mj"], SignalRegion(), n_folds=2,
                              config=AutoencoderConfig(jets="event", epochs=1, num_threads=1))  # fmt: skip
    not_per_jet.fit(data.assign(delta_mj=data["mj2"] - data["mj1"])).save(tmp_path / "event_ae")
    with pytest.raises(ValueError, match="must score each jet"):
        TagNTrain(
            COLS,
            SignalRegion(),
            n_folds=2,
            config=TagNTrainConfig(starter=str(tmp_path / "event_ae")),
        ).fit(data)


# ----- artifacts, k-fold honesty, refusals -----------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "features", "config"),
    [
        ("ae", COLS, AutoencoderConfig(epochs=2, n_ensemble=2, num_threads=1, rule="max")),
        ("ae", COLS, AutoencoderConfig(epochs=2, jets="separate", num_threads=1, rule="heavier")),
        ("vae", COLS, AutoencoderConfig(epochs=2, num_threads=1, vae_score="kl")),
        (
            "ae",
            ["mj1", "tau21_j2", "delta_eta"],
            AutoencoderConfig(epochs=2, jets="event", num_threads=1),
        ),
        (
            "force",
            ["tau21_j1", "tau21_j2"],
            ForceConfig(target="mj", n_ensemble=2, epochs=2, num_threads=1),
        ),
    ],
)
def test_round_trip_gives_identical_scores(tmp_path, method, features, config):
    rng = np.random.default_rng(10)
    data = events(plane_jets(rng, 600), plane_jets(rng, 600), rng)
    data["mj_j1"], data["mj_j2"] = data["mj1"], data["mj2"]  # a per-jet target for FORCE
    model = get_method(method)(features, SignalRegion(), n_folds=3, seed=4, config=config).fit(data)
    model.save(tmp_path / "m")
    loaded = ResonantModel.load(tmp_path / "m")
    assert type(loaded) is type(model) and loaded.config == model.config
    for mode in ("kfold", "ensemble", "auto"):
        assert np.array_equal(loaded.score(data, mode), model.score(data, mode))
    if model.layout is not None:
        assert np.array_equal(loaded.jet_scores(data, "auto"), model.jet_scores(data, "kfold"))
    # same inputs and seeds -> the same model
    again = get_method(method)(features, SignalRegion(), n_folds=3, seed=4, config=config).fit(data)
    assert np.array_equal(again.score(data), model.score(data))


def test_kfold_scores_are_honest_for_an_overfitting_autoencoder():
    """A wide AE trained long on few events reconstructs its own training events far better than
    new ones; k-fold scores of the training sample must look like scores of new events."""
    rng = np.random.default_rng(11)
    cols = [f"f{i}" for i in range(8)]

    def table(n, start):
        df = pd.DataFrame(rng.normal(size=(n, len(cols))), columns=cols)
        return df.assign(mjj=3500.0, run=1, event=np.arange(start, start + n))

    data, fresh = table(300, 0), table(300, 10**6)
    cfg = AutoencoderConfig(
        jets="event", epochs=300, hidden=(128, 128), latent_dim=3, val_fraction=0.0, num_threads=1
    )
    model = Autoencoder(cols, SignalRegion(), n_folds=3, seed=0, config=cfg).fit(data)
    x = data[cols].to_numpy()
    folds = kfold_assignments(data["run"], data["event"], 3, 0)
    in_sample = np.concatenate([model.fold_models[k].score(x[folds != k]) for k in range(3)])
    kfold, new = model.score(data, "kfold"), model.score(fresh, "kfold")
    assert np.median(in_sample) < 0.5 * np.median(new)  # it does overfit ...
    assert ks_2samp(kfold, new).pvalue > 0.01  # ... yet k-fold scores are like new events'
    assert np.array_equal(model.score(data, "auto"), kfold)  # auto: trained-on events -> k-fold


def test_mismatched_inputs_are_refused_by_name(tmp_path):
    rng = np.random.default_rng(12)
    data = events(plane_jets(rng, 400), plane_jets(rng, 400), rng)
    model = Autoencoder(
        COLS, SignalRegion(), n_folds=2, config=AutoencoderConfig(epochs=1, num_threads=1)
    ).fit(data)
    with pytest.raises(ValueError, match=r"missing column\(s\) \['tau32_j2'\]"):
        model.score(data.drop(columns="tau32_j2"))
    with pytest.raises(ValueError, match=r"'tau21_j1' has 1 NaN"):
        model.score(data.assign(tau21_j1=np.r_[np.nan, data["tau21_j1"].to_numpy()[1:]]))
    with pytest.raises(ValueError, match=r"expects? \(events, 6\) inputs|expected \(events, 6\)"):
        model.fold_models[0].score(np.zeros((3, 4)))
    with pytest.raises(ValueError, match="unknown network 'conv9'"):
        Autoencoder(
            COLS, SignalRegion(), n_folds=2, config=AutoencoderConfig(network="conv9", epochs=1)
        ).fit(data)

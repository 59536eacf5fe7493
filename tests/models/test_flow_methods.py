"""CATHODE, ANODE and R-ANODE on a toy with an analytic likelihood ratio and a localized signal."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from sklearn.metrics import roc_auc_score

from adhunt.models.anode import Anode, AnodeConfig
from adhunt.models.base import ResonantModel, TrainConfig
from adhunt.models.cathode import Cathode, CathodeConfig, sample_sr_mjj
from adhunt.models.flows import FlowConfig
from adhunt.models.ranode import RAnode, RAnodeConfig
from adhunt.regions import SignalRegion

REGION = SignalRegion(3300.0, 3700.0)
FEATURES = ("f1", "f2", "f3")
# Small models, one thread each: fast and stable on crowded CI cores.
# (Affine MAFs suffice here: the toy's densities are Gaussian with a linear mjj dependence.)
FLOW = FlowConfig(
    kind="maf",
    n_blocks=3,
    hidden=32,
    batch_size=1024,
    lr=5e-3,
    epochs=25,
    patience=4,
    num_threads=1,
)
SIG_FLOW = FlowConfig(
    kind="maf", n_blocks=1, hidden=16, batch_size=256, lr=5e-3, epochs=25, patience=5, num_threads=1
)
CLF = TrainConfig(backend="hgb", n_ensemble=2, hgb_max_iter=100, num_threads=1)
N_FOLDS = 3

# Background: mjj falls exponentially; the features drift linearly with mjj (so a sideband template
# must be interpolated, not copied) and are correlated. Signal: a narrow mjj peak, displaced features.
SLOPE = np.array([0.8, -0.5, 0.3])
BKG_COV = np.array([[1.0, 0.5, 0.0], [0.5, 1.0, 0.3], [0.0, 0.3, 1.0]])
SIG_MEAN = np.array([1.5, -1.2, 1.0])
SIG_SD = 0.4


def _u(mjj: np.ndarray) -> np.ndarray:
    return (mjj - 3500.0) / 500.0


def make_toy(n_bkg: int, n_sig: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    mjj_b = 2600.0 + rng.exponential(900.0, n_bkg)
    x_b = np.outer(_u(mjj_b), SLOPE) + rng.multivariate_normal(np.zeros(3), BKG_COV, n_bkg)
    mjj_s = rng.normal(3500.0, 70.0, n_sig)
    x_s = SIG_MEAN + SIG_SD * rng.standard_normal((n_sig, 3))
    df = pd.DataFrame(np.vstack([x_b, x_s]), columns=list(FEATURES))
    df["mjj"] = np.concatenate([mjj_b, mjj_s])
    df["truth_label"] = np.r_[np.zeros(n_bkg, int), np.ones(n_sig, int)]
    df = df.sample(frac=1.0, random_state=seed).reset_index(drop=True)
    df["run"] = 1
    df["event"] = np.arange(len(df), dtype=np.int64) + 1000 * seed
    return df


def optimal_score(df: pd.DataFrame) -> np.ndarray:
    """Analytic log likelihood ratio p_sig(x) / p_bkg(x | mjj) (Neyman-Pearson optimum)."""
    x = df[list(FEATURES)].to_numpy()
    mjj = df["mjj"].to_numpy()
    log_s = stats.multivariate_normal(SIG_MEAN, SIG_SD**2 * np.eye(3)).logpdf(x)
    log_b = stats.multivariate_normal(np.zeros(3), BKG_COV).logpdf(x - np.outer(_u(mjj), SLOPE))
    return log_s - log_b


@pytest.fixture(scope="module")
def data() -> pd.DataFrame:
    return make_toy(40_000, 300, seed=1)


@pytest.fixture(scope="module")
def no_signal() -> pd.DataFrame:
    return make_toy(40_000, 0, seed=2)


def _sr(df: pd.DataFrame) -> pd.DataFrame:
    return df[REGION.in_sr(df["mjj"].to_numpy())]


def _auc(model: ResonantModel, df: pd.DataFrame) -> float:
    sr = _sr(df)
    return roc_auc_score(sr["truth_label"], model.score(sr))


@pytest.fixture(scope="module")
def cathode(data: pd.DataFrame) -> Cathode:
    cfg = CathodeConfig(flow=FLOW, classifier=CLF, oversample=4.0)
    return Cathode(FEATURES, REGION, n_folds=N_FOLDS, seed=3, config=cfg).fit(data)


@pytest.fixture(scope="module")
def anode(data: pd.DataFrame) -> Anode:
    cfg = AnodeConfig(flow=FLOW, sr_flow=FLOW)
    return Anode(FEATURES, REGION, n_folds=N_FOLDS, seed=3, config=cfg).fit(data)


@pytest.fixture(scope="module")
def ranode(data: pd.DataFrame) -> RAnode:
    cfg = RAnodeConfig(flow=FLOW, signal_flow=SIG_FLOW)
    return RAnode(FEATURES, REGION, n_folds=N_FOLDS, seed=3, config=cfg).fit(data)


def test_toy_has_the_intended_signal(data: pd.DataFrame) -> None:
    sr = _sr(data)
    n_sig = int(sr["truth_label"].sum())
    assert 250 < n_sig <= 300 and 0.02 < n_sig / len(sr) < 0.06
    # Separable but not trivially: the analytic optimum is just below 1.
    assert 0.99 < roc_auc_score(sr["truth_label"], optimal_score(sr)) < 0.9999


def test_cathode_is_near_optimal_on_an_easy_toy(cathode: Cathode, data: pd.DataFrame) -> None:
    sr = _sr(data)
    optimum = roc_auc_score(sr["truth_label"], optimal_score(sr))
    auc = _auc(cathode, data)
    assert auc > optimum - 0.03, (auc, optimum)
    # Background efficiency at 50% signal efficiency is tiny, as for the optimal classifier.
    s = cathode.score(sr)
    y = sr["truth_label"].to_numpy()
    cut = np.quantile(s[y == 1], 0.5)
    assert np.mean(s[y == 0] > cut) < 0.01
    summ = cathode.summary
    assert summ["flow_epochs"] and summ["flow_val_nll"] < 5.0  # one shared flow was trained
    assert len(summ["flow_epochs"]) == 1


def test_cathode_without_signal_scores_background_flat(no_signal: pd.DataFrame) -> None:
    """No signal: the SR-vs-samples classifier cannot separate; scores stay near 0.5 everywhere."""
    cfg = CathodeConfig(flow=FLOW, classifier=CLF)
    model = Cathode(FEATURES, REGION, n_folds=N_FOLDS, seed=4, config=cfg).fit(no_signal)
    s = model.score(_sr(no_signal))
    # Mean classifier output for data events ~ n_data/(n_data + n_samples) after class balancing: 0.5.
    assert abs(np.mean(s) - 0.5) < 0.05
    # Tighter than the spread a learned signal produces (compare the injected case's top scores).
    assert np.quantile(s, 0.999) < 0.9


def test_anode_finds_the_signal(anode: Anode, data: pd.DataFrame) -> None:
    auc = _auc(anode, data)
    assert auc > 0.95, auc
    assert len(anode.summary["flow_epochs"]) == 1 + N_FOLDS  # shared SB flow + one SR flow per fold


def test_ranode_finds_the_signal_and_its_fraction(ranode: RAnode, data: pd.DataFrame) -> None:
    auc = _auc(ranode, data)
    assert auc > 0.95, auc
    sr = _sr(data)
    true_w = sr["truth_label"].mean()
    w = ranode.summary["w_mean"]
    assert len(ranode.summary["w"]) == N_FOLDS
    # w is only weakly identified from above (a flexible p_sig can absorb some background), so a
    # factor-2 band; the no-signal test below shows it does not grow without a signal.
    assert 0.5 * true_w < w < 2.0 * true_w, (w, true_w)


def test_ranode_w_near_zero_without_signal(no_signal: pd.DataFrame) -> None:
    cfg = RAnodeConfig(flow=FLOW, signal_flow=SIG_FLOW)
    model = RAnode(FEATURES, REGION, n_folds=N_FOLDS, seed=5, config=cfg).fit(no_signal)
    # Started at w_init = 0.001; with signal the same fit reaches ~0.06 (test above).
    assert model.summary["w_mean"] < 0.005, model.summary["w"]


@pytest.mark.parametrize("name", ["cathode", "anode", "ranode"])
def test_save_load_gives_identical_scores(name: str, request, data: pd.DataFrame, tmp_path) -> None:
    model = request.getfixturevalue(name)
    sr = _sr(data).head(3000)
    model.save(tmp_path / name)
    back = ResonantModel.load(tmp_path / name)
    assert type(back) is type(model)
    np.testing.assert_array_equal(back.score(sr), model.score(sr))
    np.testing.assert_array_equal(back.score(sr, mode="ensemble"), model.score(sr, mode="ensemble"))
    assert back.summary.keys() == model.summary.keys()
    assert back.summary["flow_val_nll"] == model.summary["flow_val_nll"]
    if name == "ranode":
        assert back.summary["w"] == model.summary["w"]
        assert [f.w for f in back.fold_models] == model.summary["w"]


def test_truth_label_is_never_used(data: pd.DataFrame) -> None:
    """Shuffling truth_label (or dropping it) changes nothing: the methods are blind to it."""
    small = data.head(12_000)
    cfg = CathodeConfig(
        flow=FlowConfig(kind="maf", n_blocks=1, hidden=8, epochs=2, num_threads=1), classifier=CLF
    )
    shuffled = small.assign(truth_label=np.random.default_rng(0).permutation(small["truth_label"]))
    a = Cathode(FEATURES, REGION, n_folds=2, seed=0, config=cfg).fit(small)
    b = Cathode(FEATURES, REGION, n_folds=2, seed=0, config=cfg).fit(shuffled)
    c = Cathode(FEATURES, REGION, n_folds=2, seed=0, config=cfg).fit(
        small.drop(columns="truth_label")
    )
    np.testing.assert_array_equal(a.score(small), b.score(small))
    np.testing.assert_array_equal(a.score(small), c.score(small))


def test_sr_mjj_sampler_follows_the_sr_distribution() -> None:
    rng = np.random.default_rng(0)
    mjj = 2600.0 + rng.exponential(900.0, 50_000)
    draws = sample_sr_mjj(mjj, 40_000, REGION, seed=1)
    assert len(draws) == 40_000 and REGION.in_sr(draws).all()
    np.testing.assert_array_equal(draws, sample_sr_mjj(mjj, 40_000, REGION, seed=1))
    sr = mjj[REGION.in_sr(mjj)]
    assert stats.ks_2samp(draws, sr).statistic < 0.03
    with pytest.raises(ValueError, match="no SR mjj"):
        sample_sr_mjj(np.array([1000.0, 2000.0]), 10, REGION, seed=0)


def test_configs_round_trip_and_refuse_bad_values() -> None:
    from adhunt.config import config_from_dict, config_to_dict

    cfg = RAnodeConfig(flow=FLOW, signal_flow=SIG_FLOW, w_init=0.05)
    back = config_from_dict(RAnodeConfig, config_to_dict(cfg))
    assert back == cfg
    cc = CathodeConfig(flow=FLOW, classifier=CLF)
    assert config_from_dict(CathodeConfig, config_to_dict(cc)) == cc
    with pytest.raises(ValueError, match="w_init"):
        RAnodeConfig(w_init=1.5)
    with pytest.raises(ValueError, match="warm_start_epochs"):
        RAnodeConfig(warm_start_epochs=-1)
    with pytest.raises(ValueError, match="unknown FlowConfig"):
        CathodeConfig(flow={"kind": "maf", "blocks": 3})

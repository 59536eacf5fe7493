"""CWoLa, IAD and supervised on a Gaussian toy whose optimal classifier is known analytically.

Background: x ~ N(0, I_4), flat mjj. Signal: x ~ N(mu, I_4), mjj mostly in the SR (a tenth of it in
the sidebands, so both CWoLa mixtures contain signal, with different fractions). The likelihood
ratio is exp(mu.x - |mu|^2/2), monotonic in mu.x, so the optimal ROC is that of mu.x and its AUC is
Phi(|mu|/sqrt 2). By the CWoLa theorem, an SR-vs-SB classifier trained on the mixtures is monotonic
in the same ratio, so its signal-vs-background AUC must approach the optimum.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import norm

from adhunt.models.base import TrainConfig
from adhunt.models.cwola import CWoLa
from adhunt.models.references import IdealizedAD, Supervised
from adhunt.performance import roc_sic
from adhunt.regions import SignalRegion

FEATS = ["a", "b", "c", "d"]
MU = np.array([1.6, 1.2, 0.0, 0.0])
OPTIMAL_AUC = float(norm.cdf(np.linalg.norm(MU) / np.sqrt(2)))  # 0.921
REGION = SignalRegion(3300.0, 3700.0)
CONFIGS = {
    "hgb": TrainConfig(
        backend="hgb", n_ensemble=2, hgb_max_iter=100, hgb_max_leaf_nodes=8, num_threads=1
    ),
    "mlp": TrainConfig(
        backend="mlp", n_ensemble=1, epochs=25, patience=4, batch_size=256, hidden=(32, 32),
        lr=3e-3, num_threads=1,
    ),
}  # fmt: skip


def gaussian_toy(
    n_bkg: int, n_sig: int, seed: int, start: int = 0, sig_in_sb: float = 0.1
) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = np.vstack([rng.normal(size=(n_bkg, 4)), rng.normal(size=(n_sig, 4)) + MU])
    m_sig = rng.uniform(REGION.low, REGION.high, n_sig)
    leak = rng.random(n_sig) < sig_in_sb
    m_sig[leak] = np.where(
        rng.random(leak.sum()) < 0.5,
        rng.uniform(2800, 3300, leak.sum()),
        rng.uniform(3700, 4200, leak.sum()),
    )
    df = pd.DataFrame(x, columns=FEATS)
    df["mjj"] = np.r_[rng.uniform(2800, 4200, n_bkg), m_sig]
    df["truth_label"] = np.r_[np.zeros(n_bkg, int), np.ones(n_sig, int)]
    df["run"] = 1
    df["event"] = np.arange(start, start + n_bkg + n_sig)
    return df


@pytest.fixture(scope="module")
def test_sample() -> pd.DataFrame:
    """Independent labelled SR sample, half signal."""
    return gaussian_toy(8000, 8000, seed=99, start=10**7, sig_in_sb=0.0).assign(mjj=3500.0)


def test_optimal_reference_is_what_theory_says(test_sample):
    opt = roc_sic(test_sample["truth_label"], test_sample[FEATS].to_numpy() @ MU)
    assert opt["auc"] == pytest.approx(OPTIMAL_AUC, abs=0.01)


@pytest.mark.parametrize("backend", ["hgb", "mlp"])
def test_cwola_approaches_the_optimal_classifier(backend, test_sample):
    # SR: ~5700 background + ~1800 signal (24%); SB: ~14300 background + ~200 signal (1.4%)
    data = gaussian_toy(20000, 2000, seed=1)
    model = CWoLa(FEATS, REGION, n_folds=2, seed=3, config=CONFIGS[backend]).fit(data)
    auc = roc_sic(test_sample["truth_label"], model.score(test_sample, mode="ensemble"))["auc"]
    assert OPTIMAL_AUC - 0.04 < auc <= OPTIMAL_AUC + 0.01
    # the k-fold scores of the training data also separate the injected signal in the SR
    sr = REGION.in_sr(data["mjj"])
    kfold_auc = roc_sic(data["truth_label"][sr], model.score(data)[sr])["auc"]
    assert kfold_auc > OPTIMAL_AUC - 0.06


@pytest.mark.parametrize("backend", ["hgb", "mlp"])
def test_cwola_without_signal_learns_nothing(backend):
    # identical mixtures in SR and SB: held-out SR-vs-SB separation must be at chance level
    data = gaussian_toy(12000, 0, seed=2)
    model = CWoLa(FEATS, REGION, n_folds=3, seed=4, config=CONFIGS[backend]).fit(data)
    scores = model.score(data)  # k-fold: every event scored by a model that never saw it
    auc = roc_sic(REGION.in_sr(data["mjj"]).astype(int), scores)["auc"]
    n_sr = REGION.in_sr(data["mjj"]).sum()
    sigma = np.sqrt((len(data) + 1) / (12.0 * n_sr * (len(data) - n_sr)))  # AUC spread under H0
    assert abs(auc - 0.5) < 5 * sigma + 0.01


def test_idealized_ad_and_supervised_reach_the_optimum(test_sample):
    # SR data: ~5700 background + 2000 signal; reference: 16000 true-background SR events
    data = gaussian_toy(20000, 2000, seed=5, sig_in_sb=0.0)
    reference = gaussian_toy(16000, 0, seed=6, start=10**6).assign(mjj=3500.0)
    config = CONFIGS["hgb"]
    iad = IdealizedAD(FEATS, REGION, n_folds=2, seed=1, config=config).fit(data, reference)
    sup = Supervised(FEATS, REGION, n_folds=2, seed=1, config=config).fit(data)
    y = test_sample["truth_label"]
    auc_iad = roc_sic(y, iad.score(test_sample, mode="ensemble"))["auc"]
    auc_sup = roc_sic(y, sup.score(test_sample, mode="ensemble"))["auc"]
    assert OPTIMAL_AUC - 0.04 < auc_iad <= OPTIMAL_AUC + 0.01
    assert OPTIMAL_AUC - 0.015 < auc_sup <= OPTIMAL_AUC + 0.01
    assert iad.training["n_reference"] == 16000


def test_cwola_is_reproducible():
    data = gaussian_toy(4000, 400, seed=7)
    cfg = TrainConfig(backend="hgb", n_ensemble=2, hgb_max_iter=40, num_threads=1)
    a = CWoLa(FEATS, REGION, n_folds=2, seed=8, config=cfg).fit(data).score(data)
    b = CWoLa(FEATS, REGION, n_folds=2, seed=8, config=cfg).fit(data.iloc[::-1]).score(data)
    c = CWoLa(FEATS, REGION, n_folds=2, seed=9, config=cfg).fit(data).score(data)
    assert np.array_equal(a, b)  # row order of the training table does not matter
    assert not np.array_equal(a, c)

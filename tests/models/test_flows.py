"""Conditional normalizing flows against analytic densities (both MAF and RQS variants)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file
from scipy import stats

from adhunt.models.base import prefixed, unprefixed
from adhunt.models.flows import ConditionalFlow, FlowConfig

# One torch thread: the tests must stay fast on crowded CI cores (OpenMP spin-waits otherwise).
SMALL = {
    "maf": FlowConfig(
        kind="maf", n_blocks=3, hidden=32, batch_size=1024, lr=5e-3, epochs=30, num_threads=1
    ),
    "rqs": FlowConfig(
        kind="rqs", n_blocks=2, hidden=32, batch_size=1024, lr=5e-3, epochs=30, num_threads=1
    ),
}

# A correlated 3D Gaussian whose mean moves linearly with m (known conditional density).
COV = np.array([[1.0, 0.8, 0.2], [0.8, 2.0, -0.3], [0.2, -0.3, 0.5]])
A = np.array([1.0, -2.0, 0.5])
B = np.array([2.0, 0.0, -1.0])


def gaussian_toy(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    m = rng.uniform(0.0, 1.0, n)
    x = A + np.outer(m, B) + rng.multivariate_normal(np.zeros(3), COV, size=n)
    return x, m


def gaussian_logpdf(x: np.ndarray, m: np.ndarray) -> np.ndarray:
    return stats.multivariate_normal(np.zeros(3), COV).logpdf(x - A - np.outer(m, B))


@pytest.mark.parametrize("kind", ["maf", "rqs"])
def test_recovers_analytic_conditional_log_likelihood(kind: str) -> None:
    x, m = gaussian_toy(20_000, seed=1)
    xt, mt = gaussian_toy(20_000, seed=2)
    flow = ConditionalFlow(3, SMALL[kind], seed=0).fit(x, m)
    learned = flow.log_prob(xt, mt)
    truth = gaussian_logpdf(xt, mt)
    assert learned.shape == (len(xt),)
    # Mean test log-likelihood within 0.05 nats/event of the true conditional density.
    assert abs(learned.mean() - truth.mean()) < 0.05, (learned.mean(), truth.mean())
    # The flow cannot beat the true density on independent data by more than noise.
    assert learned.mean() < truth.mean() + 0.02
    # Best-validation weights were restored: history's best loss is the current model's loss.
    assert flow.history.best_epoch >= 0
    assert len(flow.history.val_loss) <= SMALL[kind].epochs


def test_log_prob_is_normalised_density() -> None:
    """Integrating exp(log p) on a grid gives 1 (checks the Jacobians, incl. the internal scaling)."""
    rng = np.random.default_rng(3)
    n = 8000
    m = rng.uniform(0, 1, n)
    x = np.column_stack([rng.normal(10 + 5 * m, 2.0), rng.gamma(3.0, 0.5, n) * (1 + m)])
    flow = ConditionalFlow(2, SMALL["rqs"], seed=0).fit(x, m)
    g0 = np.linspace(-5, 25, 301)
    g1 = np.linspace(-3, 12, 301)
    xx, yy = np.meshgrid(g0, g1, indexing="ij")
    pts = np.column_stack([xx.ravel(), yy.ravel()])
    for mval in (0.2, 0.7):
        p = np.exp(flow.log_prob(pts, np.full(len(pts), mval)))
        integral = p.sum() * (g0[1] - g0[0]) * (g1[1] - g1[0])
        assert integral == pytest.approx(1.0, abs=0.02), (mval, integral)


@pytest.mark.parametrize("kind", ["maf", "rqs"])
def test_conditional_sampling_matches_known_dependence(kind: str) -> None:
    """x1 ~ N(1 + 2m, 0.3 + 0.5m), x2 | x1 ~ N(-0.5 x1, 0.4): sample at fixed m, compare analytically."""
    rng = np.random.default_rng(4)
    n = 30_000
    m = rng.uniform(0.0, 1.0, n)
    x1 = rng.normal(1 + 2 * m, 0.3 + 0.5 * m)
    x2 = rng.normal(-0.5 * x1, 0.4)
    flow = ConditionalFlow(2, SMALL[kind], seed=1).fit(np.column_stack([x1, x2]), m)
    for mval in (0.25, 0.75):
        s = flow.sample(np.full(10_000, mval), seed=7)
        mu1, s1 = 1 + 2 * mval, 0.3 + 0.5 * mval
        mu2, s2 = -0.5 * mu1, np.hypot(0.5 * s1, 0.4)
        assert s[:, 0].mean() == pytest.approx(mu1, abs=0.05)
        assert s[:, 0].std() == pytest.approx(s1, rel=0.08)
        assert s[:, 1].mean() == pytest.approx(mu2, abs=0.05)
        assert s[:, 1].std() == pytest.approx(s2, rel=0.08)
        assert stats.kstest(s[:, 0], stats.norm(mu1, s1).cdf).statistic < 0.04
        assert stats.kstest(s[:, 1], stats.norm(mu2, s2).cdf).statistic < 0.04
        # The conditional structure survives too: x2 regresses on x1 with slope -0.5.
        slope = np.polyfit(s[:, 0], s[:, 1], 1)[0]
        assert slope == pytest.approx(-0.5, abs=0.07)


def test_save_load_round_trip_through_safetensors(tmp_path) -> None:
    x, m = gaussian_toy(3000, seed=5)
    cfg = FlowConfig(
        kind="rqs",
        n_blocks=2,
        hidden=16,
        epochs=3,
        batch_size=512,
        permutation="random",
        num_threads=1,
    )
    flow = ConditionalFlow(3, cfg, seed=3).fit(x, m)
    save_file(prefixed("flow", flow.tensors()), str(tmp_path / "w.safetensors"))
    (tmp_path / "meta.json").write_text(json.dumps(flow.metadata()))
    tensors = unprefixed("flow", load_file(str(tmp_path / "w.safetensors")))
    meta = json.loads((tmp_path / "meta.json").read_text())
    back = ConditionalFlow.from_parts(tensors, meta)
    np.testing.assert_array_equal(back.log_prob(x, m), flow.log_prob(x, m))
    np.testing.assert_array_equal(back.sample(m[:500], seed=1), flow.sample(m[:500], seed=1))
    assert back.history.best_val_loss == flow.history.best_val_loss
    # A missing tensor is refused with a clear message.
    broken = dict(tensors)
    broken.pop(next(iter(broken)))
    with pytest.raises(ValueError, match="do not match"):
        ConditionalFlow.from_parts(broken, meta)


def test_seeded_training_is_reproducible() -> None:
    x, m = gaussian_toy(3000, seed=6)
    cfg = FlowConfig(
        kind="maf", n_blocks=2, hidden=16, epochs=4, batch_size=512, batch_norm=True, num_threads=1
    )
    a = ConditionalFlow(3, cfg, seed=11).fit(x, m)
    b = ConditionalFlow(3, cfg, seed=11).fit(x, m)
    c = ConditionalFlow(3, cfg, seed=12).fit(x, m)
    for k, v in a.tensors().items():
        np.testing.assert_array_equal(v, b.tensors()[k], err_msg=k)
    assert a.history.val_loss == b.history.val_loss
    assert not np.array_equal(a.log_prob(x, m), c.log_prob(x, m))
    np.testing.assert_array_equal(a.sample(m, seed=2), b.sample(m, seed=2))
    assert not np.array_equal(a.sample(m, seed=2), a.sample(m, seed=3))


def test_early_stopping_restores_best_weights() -> None:
    """With a tiny training set the flow overfits; the kept weights are those of the best epoch."""
    x, m = gaussian_toy(400, seed=7)
    xv, mv = gaussian_toy(2000, seed=8)
    cfg = FlowConfig(
        kind="maf",
        n_blocks=3,
        hidden=64,
        epochs=60,
        patience=5,
        batch_size=64,
        lr=1e-2,
        lr_schedule="constant",
        num_threads=1,
    )
    progress: list[tuple[int, float, float]] = []
    flow = ConditionalFlow(3, cfg, seed=0).fit(x, m, xv, mv, progress=lambda *a: progress.append(a))
    h = flow.history
    assert len(progress) == len(h.val_loss) and progress[-1][0] == len(h.val_loss) - 1
    assert h.best_val_loss == pytest.approx(min(h.val_loss))
    assert len(h.val_loss) < cfg.epochs  # stopped early
    assert h.best_epoch < len(h.val_loss) - 1
    # Independent recomputation: the restored model's validation NLL is the best epoch's.
    assert -flow.log_prob(xv, mv).mean() == pytest.approx(h.best_val_loss, abs=1e-4)


def test_bad_input_is_refused_clearly() -> None:
    x, m = gaussian_toy(100, seed=9)
    flow = ConditionalFlow(3, SMALL["maf"], seed=0)
    bad = x.copy()
    bad[17, 2] = np.nan
    with pytest.raises(ValueError, match=r"x contains NaN.*row 17, column 2"):
        flow.fit(bad, m)
    with pytest.raises(ValueError, match="x has 2 columns, expected 3"):
        flow.fit(x[:, :2], m)
    with pytest.raises(ValueError, match="rows"):
        flow.fit(x, m[:50])
    with pytest.raises(ValueError, match="both x_val and m_val"):
        flow.fit(x, m, x_val=x)
    with pytest.raises(ValueError, match="kind"):
        FlowConfig(kind="glow")
    with pytest.raises(ValueError, match="at least 2 features"):
        ConditionalFlow(1)

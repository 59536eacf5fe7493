"""Convolutional networks on jet images made by ``adhunt.images`` from toy one- and two-prong jets."""

from __future__ import annotations

import awkward as ak
import numpy as np
import pytest
import torch

from adhunt.images import jet_images
from adhunt.models.image_networks import ConvAutoencoder, ConvClassifier, image_losses

SIZE = 16


def toy_images(n: int, prongs: int, seed: int) -> torch.Tensor:
    """[n, 1, S, S] unit-sum images of toy jets: 40 massless particles around 1 or 2 prongs
    (second prong 0.4 away carrying 20-50% of the pT)."""
    rng = np.random.default_rng(seed)
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
    jets = ak.unflatten(ak.zip(p4), np.full(n, k))
    return torch.from_numpy(jet_images(jets, 1.0, SIZE).images).unsqueeze(1)


@pytest.fixture(autouse=True)
def one_thread():
    """Small networks: one thread is fastest on a shared machine (restored afterwards)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


SMALL = {"channels": (8, 16), "hidden": 32}


@pytest.fixture(scope="module")
def images():
    return {"one": toy_images(400, 1, seed=1), "two": toy_images(200, 2, seed=2)}


@pytest.mark.parametrize("variational", [False, True])
def test_forward_shapes(images, variational):
    torch.manual_seed(0)
    model = ConvAutoencoder(image_size=SIZE, latent_dim=6, variational=variational)
    x = images["one"][:10]
    reco, mu, logvar = model(x)
    assert reco.shape == x.shape
    torch.testing.assert_close(reco.sum(dim=(1, 2, 3)), torch.ones(10))  # unit-sum outputs
    if variational:
        assert mu.shape == logvar.shape == (10, 6)
    else:
        assert mu.shape == (10, 6) and logvar is None
    losses = image_losses(x, reco, mu, logvar)
    assert all(v.shape == (10,) and torch.isfinite(v).all() for v in losses.values())
    with pytest.raises(ValueError, match="expects images"):
        model(torch.zeros(3, 2, SIZE, SIZE))
    with pytest.raises(ValueError, match="multiple of 4"):
        ConvAutoencoder(image_size=30)


def _train(model, x, steps, seed, target=None):
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    optimiser = torch.optim.Adam(model.parameters(), lr=2e-3)
    for step in range(steps):
        batch = x[torch.randint(0, len(x), (32,), generator=generator)]
        optimiser.zero_grad()
        if target is None:
            loss = image_losses(batch, *model(batch, generator=generator))["total"].mean()
        else:
            index = torch.randint(0, len(x), (32,), generator=generator)
            logits = model(x[index])
            loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, target[index])
        loss.backward()
        optimiser.step()
        del step
    return model


def _auc(background: np.ndarray, signal: np.ndarray) -> float:
    """P(signal score > background score), ties half (Mann-Whitney)."""
    diff = signal[:, None] - background[None, :]
    return float((diff > 0).mean() + 0.5 * (diff == 0).mean())


@pytest.mark.parametrize("variational", [False, True])
def test_training_lowers_the_loss_and_flags_two_prong_jets(images, variational):
    """A few hundred steps on one-prong jets: the loss falls, the KL stays finite, and two-prong
    jets (never seen) reconstruct worse than held-out one-prong jets."""
    torch.manual_seed(3)
    model = ConvAutoencoder(image_size=SIZE, latent_dim=4, variational=variational, **SMALL)
    train, held_out = images["one"][:300], images["one"][300:]
    model.eval()
    with torch.no_grad():
        before = image_losses(train, *model(train))
    model.train()
    _train(model, train, steps=80, seed=4)
    model.eval()
    with torch.no_grad():
        after = image_losses(train, *model(train))
        background = image_losses(held_out, *model(held_out))["reconstruction"].numpy()
        signal = image_losses(images["two"], *model(images["two"]))["reconstruction"].numpy()
    assert after["total"].mean() < 0.7 * before["total"].mean()
    assert torch.isfinite(after["kl"]).all()
    if variational:
        assert (after["kl"] > 0).all()
    assert _auc(background, signal) > 0.8


def test_classifier_separates_one_and_two_prongs(images):
    torch.manual_seed(5)
    x = torch.cat([images["one"][:200], images["two"]])
    y = torch.cat([torch.zeros(200), torch.ones(200)])
    model = ConvClassifier(image_size=SIZE, **SMALL)
    assert model(x[:7]).shape == (7,)
    _train(model, x, steps=60, seed=6, target=y)
    model.eval()
    test_one, test_two = images["one"][200:], toy_images(100, 2, seed=9)
    with torch.no_grad():
        auc = _auc(model(test_one).numpy(), model(test_two).numpy())
    assert auc > 0.9
    with pytest.raises(ValueError, match="expects images"):
        model(torch.zeros(2, 1, SIZE + 4, SIZE + 4))

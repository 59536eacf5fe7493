"""Detector response: acceptance, object types, thresholds, resolution (checked against the formulae)."""

from __future__ import annotations

import awkward as ak
import numpy as np
import pytest
from scipy import stats

from adhunt.detector import DetectorConfig, apply_detector
from adhunt.generation import GenerationConfig, generate_batch
from adhunt.rootio import read_events

CONFIG = DetectorConfig()


def _particles(
    n: int, pt: float, eta: float, pdg: int, charge: int, mass: float
) -> dict[str, np.ndarray]:
    return {
        "pt": np.full(n, pt),
        "eta": np.full(n, eta),
        "phi": np.linspace(-3.0, 3.0, n),
        "mass": np.full(n, mass),
        "charge": np.full(n, charge, dtype=np.int32),
        "pdgId": np.full(n, pdg, dtype=np.int32),
    }


def _concat(*groups: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {k: np.concatenate([g[k] for g in groups]) for k in groups[0]}


def test_disabled_is_identity():
    rng = np.random.default_rng(1)
    parts = _concat(_particles(5, 10.0, 4.0, 211, 1, 0.14), _particles(5, 0.1, 6.0, 22, 0, 0.0))
    out, kept = apply_detector(parts, DetectorConfig(enabled=False), rng)
    assert kept.all()
    for k in parts:
        assert np.array_equal(out[k], parts[k])


def test_acceptance_and_object_types():
    rng = np.random.default_rng(2)
    groups = {
        "track": _particles(10, 20.0, 2.4, 211, 1, 0.1396),  # inside the tracker: track
        "fwd_charged": _particles(10, 20.0, 3.0, -211, -1, 0.1396),  # outside the tracker: calo
        "fwd_electron": _particles(10, 20.0, -3.0, 11, -1, 0.000511),  # outside: EM calo deposit
        "neutral_had": _particles(10, 20.0, 4.5, 2112, 0, 0.9396),  # neutral, within calo
        "photon": _particles(10, 20.0, 0.3, 22, 0, 0.0),
        "beyond_calo": _particles(10, 50.0, 5.2, 22, 0, 0.0),  # lost
        "fwd_muon": _particles(10, 20.0, 3.0, 13, -1, 0.1057),  # lost (no track, MIP in calo)
        "central_muon": _particles(10, 20.0, 1.0, -13, 1, 0.1057),  # track
        "soft": _particles(10, 0.1, 0.0, 211, 1, 0.1396),  # below min_pt
    }
    parts = _concat(*groups.values())
    out, kept = apply_detector(parts, CONFIG, rng)
    per_group = kept.reshape(len(groups), 10)
    expected_kept = {"beyond_calo": 0, "fwd_muon": 0, "soft": 0}
    for (name, _), row in zip(groups.items(), per_group, strict=True):
        assert row.sum() == expected_kept.get(name, 10), name
    # Objects come out in input order; check their types group by group.
    names = [name for name in groups if expected_kept.get(name, 10)]
    for i, name in enumerate(names):
        sl = slice(10 * i, 10 * (i + 1))
        charge, pdg, mass = out["charge"][sl], out["pdgId"][sl], out["mass"][sl]
        if name in ("track", "central_muon"):
            assert np.array_equal(charge, groups[name]["charge"]) and np.array_equal(
                pdg, groups[name]["pdgId"]
            )
            assert np.allclose(mass, groups[name]["mass"])
        else:
            assert np.all(charge == 0) and np.all(mass == 0)
            assert np.all(pdg == (22 if name in ("fwd_electron", "photon") else 130)), name
        assert np.array_equal(out["eta"][sl], groups[name]["eta"])
        assert np.array_equal(out["phi"][sl], groups[name]["phi"])
    assert np.all(out["pt"] >= CONFIG.min_pt)


def _relative_response(parts, config, seed=3):
    out, kept = apply_detector(parts, config, np.random.default_rng(seed))
    assert kept.all()
    e_in = np.sqrt((parts["pt"] * np.cosh(parts["eta"])) ** 2 + parts["mass"] ** 2)
    e_out = out["pt"] * np.cosh(out["eta"])  # deposits are massless
    return e_out / e_in


@pytest.mark.parametrize(
    "energy, pdg, mass, eta, stochastic, constant",
    [
        (50.0, 22, 0.0, 0.0, CONFIG.em_stochastic, CONFIG.em_constant),
        (200.0, 130, 0.4976, 1.2, CONFIG.had_stochastic, CONFIG.had_constant),
        (
            4.0,
            2112,
            0.9396,
            -0.5,
            CONFIG.had_stochastic,
            CONFIG.had_constant,
        ),  # 50%: log-normal shape
    ],
)
def test_calorimeter_resolution_matches_the_formula(energy, pdg, mass, eta, stochastic, constant):
    n = 20000
    pt = np.sqrt(energy**2 - mass**2) / np.cosh(eta)
    config = DetectorConfig(min_pt=0.0)
    ratio = _relative_response(_particles(n, pt, eta, pdg, 0, mass), config)
    sigma = np.hypot(
        stochastic / np.sqrt(energy), constant
    )  # written out independently of the module
    # Mean response 1 (no bias) and the configured width, within ~5 standard errors.
    assert abs(ratio.mean() - 1) < 5 * sigma / np.sqrt(n)
    assert abs(ratio.std() / sigma - 1) < 5 * np.sqrt((1 + 1.5 * sigma**2) / (2 * n)) + 0.005
    # Shape: log-normal with mean 1 and that width, by a Kolmogorov-Smirnov test.
    s = np.sqrt(np.log1p(sigma**2))
    assert stats.kstest((np.log(ratio) + s**2 / 2) / s, "norm").pvalue > 1e-3
    assert np.all(ratio > 0)


def test_track_resolution_matches_the_formula():
    n = 20000
    pt = 400.0
    parts = _particles(n, pt, 0.7, 211, 1, 0.1396)
    out, _ = apply_detector(parts, CONFIG, np.random.default_rng(4))
    sigma = np.hypot(CONFIG.track_constant, CONFIG.track_pt_term * pt)
    pull = (out["pt"] / pt - 1) / sigma
    assert abs(pull.mean()) < 5 / np.sqrt(n)
    assert abs(pull.std() - 1) < 5 / np.sqrt(2 * n)
    assert stats.kstest(pull, "norm").pvalue > 1e-3


def test_same_generator_seed_same_response():
    parts = _particles(100, 30.0, 0.5, 130, 0, 0.5)
    a, _ = apply_detector(parts, CONFIG, np.random.default_rng(9))
    b, _ = apply_detector(parts, CONFIG, np.random.default_rng(9))
    c, _ = apply_detector(parts, CONFIG, np.random.default_rng(10))
    assert np.array_equal(a["pt"], b["pt"]) and not np.array_equal(a["pt"], c["pt"])


def test_bad_config_and_input():
    with pytest.raises(ValueError, match="calo_abs_eta"):
        DetectorConfig(tracker_abs_eta=3.0, calo_abs_eta=2.0)
    with pytest.raises(ValueError, match="had_stochastic"):
        DetectorConfig(had_stochastic=-1.0)
    parts = _particles(4, 10.0, 0.0, 22, 0, 0.0)
    parts["eta"] = parts["eta"][:3]
    with pytest.raises(ValueError, match="'eta' has length 3"):
        apply_detector(parts, CONFIG, np.random.default_rng(0))


def test_generated_detector_level_sample(generated_qcd):
    """On the shared Pythia QCD sample: what the detector model promises holds event by event."""
    events = ak.concatenate([read_events(f) for f in sorted(generated_qcd.glob("*.root"))])
    c = events.PFCands
    pt, eta = ak.to_numpy(ak.flatten(c.pt)), ak.to_numpy(ak.flatten(c.eta))
    charge, pdg, mass = (ak.to_numpy(ak.flatten(c[f])) for f in ("charge", "pdgId", "mass"))
    assert not np.isin(np.abs(pdg), (12, 14, 16)).any()
    assert np.all(pt >= CONFIG.min_pt - 1e-4)
    assert np.all(np.abs(eta) < CONFIG.calo_abs_eta)
    assert np.all(np.abs(eta[charge != 0]) < CONFIG.tracker_abs_eta)
    assert np.all(mass[charge == 0] == 0)
    assert set(np.unique(pdg[charge == 0]).tolist()) == {22, 130}
    assert 0.4 < np.mean(charge != 0) < 0.8  # most jet energy flow is charged hadrons and photons


def test_particle_level_versus_detector_level():
    """Same events (same seeds): the detector loses particles, particle level keeps forward and soft ones."""
    base = GenerationConfig(process="wprime", n_events=20, seed=31, batch_size=20)
    on = generate_batch(base, 0)
    off = generate_batch(
        GenerationConfig(**{**base.__dict__, "detector": DetectorConfig(enabled=False)}), 0
    )
    n_on = ak.to_numpy(ak.num(on.PFCands))
    n_off = ak.to_numpy(ak.num(off.PFCands))
    assert n_on.mean() < 0.8 * n_off.mean()
    eta_off = ak.to_numpy(ak.flatten(off.PFCands.eta))
    charge_off = ak.to_numpy(ak.flatten(off.PFCands.charge))
    assert np.any(np.abs(eta_off) > CONFIG.calo_abs_eta)
    assert np.any((np.abs(eta_off) > CONFIG.tracker_abs_eta) & (charge_off != 0))
    assert np.any(ak.to_numpy(ak.flatten(off.PFCands.pt)) < CONFIG.min_pt)
    assert not np.isin(np.abs(ak.to_numpy(ak.flatten(off.PFCands.pdgId))), (12, 14, 16)).any()

"""Clustering, constituent gathering, trigger and dijet kinematics against direct computations."""

from __future__ import annotations

import math

import awkward as ak
import numpy as np
import pytest
from eventfiles import make_events

from adhunt.dijet import DIJET_COLUMNS, dijet_features, invariant_mass
from adhunt.jets import (
    ClusteredEvents,
    TriggerConfig,
    cluster,
    cluster_inputs,
    passes_trigger,
    to_fastjet_input,
)


@pytest.fixture(scope="module")
def particles() -> ak.Array:
    kinds = ["dijet", "monojet", "soft", "empty", "dijet", "dijet", "monojet", "soft"] * 3
    pf = make_events(kinds, seed=11)["PFCands"]
    return ak.zip({f: pf[f] for f in ("pt", "eta", "phi", "mass")})


def _fresh_copy(view: ak.Array) -> ak.Array:
    """A new contiguous float32 array with the same events, rebuilt from Python lists."""
    return ak.values_astype(ak.Array(ak.to_list(view)), np.float32)


def _as_lists(jets, index):
    return ak.to_list(jets.px), ak.to_list(jets.E), ak.to_list(index)


@pytest.mark.parametrize(
    "selector",
    [slice(None, None, -1), slice(1, None, 2), np.array([5, 0, 17, 4, 9, 9, 22])],
    ids=["reversed", "strided", "fancy"],
)
def test_sliced_input_clusters_like_packed(particles, selector):
    """fastjet <= 3.5.1.4 clustered the wrong particles for sliced input: compare with a packed copy."""
    view = particles[selector]
    packed = _fresh_copy(view)
    got = _as_lists(*cluster(view))
    want = _as_lists(*cluster(packed))
    assert got[2] == want[2]
    np.testing.assert_allclose(ak.flatten(ak.Array(got[0])), ak.flatten(ak.Array(want[0])))
    np.testing.assert_allclose(ak.flatten(ak.Array(got[1])), ak.flatten(ak.Array(want[1])))
    # and equals clustering the events of the full array, picked afterwards
    full = _as_lists(*cluster(particles))
    picked = np.arange(len(particles))[selector]
    assert got[2] == [full[2][i] for i in picked]


def test_masked_input_clusters_like_packed(particles):
    mask = np.arange(len(particles)) % 3 != 1
    got, want = cluster(particles[mask]), cluster(_fresh_copy(particles[mask]))
    assert ak.to_list(got[1]) == ak.to_list(want[1])


def test_jets_are_four_vector_sums_of_their_constituents(particles):
    """E-scheme: each jet is the numpy sum of its constituents; constituents partition the event."""
    inputs = to_fastjet_input(particles)
    jets, index = cluster_inputs(inputs, 1.0)
    assert ak.all(jets.pt[:, :-1] >= jets.pt[:, 1:])
    for e in range(len(particles)):
        px, py, pz, E = (ak.to_numpy(inputs[e][f]) for f in ("px", "py", "pz", "E"))
        used = sorted(i for jet in ak.to_list(index[e]) for i in jet)
        assert used == list(range(len(px)))
        for j, members in enumerate(ak.to_list(index[e])):
            np.testing.assert_allclose(
                [jets[e, j].px, jets[e, j].py, jets[e, j].pz, jets[e, j].E],
                [px[members].sum(), py[members].sum(), pz[members].sum(), E[members].sum()],
                rtol=1e-10,
                atol=1e-9,
            )


def test_monojet_and_dijet_multiplicities(particles):
    """The narrow sprays of the synthetic events make exactly 1 (monojet) or 2 (dijet) jets."""
    jets, _ = cluster(particles)
    n = ak.to_numpy(ak.num(jets))
    kinds = ["dijet", "monojet", "soft", "empty", "dijet", "dijet", "monojet", "soft"] * 3
    assert [int(n[i]) for i, k in enumerate(kinds) if k == "dijet"] == [2] * 9
    assert [int(n[i]) for i, k in enumerate(kinds) if k == "monojet"] == [1] * 6
    assert [int(n[i]) for i, k in enumerate(kinds) if k == "empty"] == [0] * 3


@pytest.mark.parametrize("n_leading", [1, 2, 3])
def test_leading_jets_gather_the_right_particles(particles, n_leading):
    """ClusteredEvents.leading (numpy gather, pT-cut constituent extraction) against the full,
    pT-sorted constituent lists of cluster_inputs."""
    inputs = to_fastjet_input(particles)
    jets, index = cluster_inputs(inputs, 1.0)
    clustered = ClusteredEvents(inputs, 1.0)
    enough = ak.to_numpy(ak.num(jets)) >= n_leading
    enough[::4] = False  # a non-trivial selection
    leading = clustered.leading(enough, n_leading)
    events = np.flatnonzero(enough)
    assert len(leading.constituents) == n_leading * len(events)
    for row in range(len(leading.constituents)):
        e, j = events[row // n_leading], row % n_leading
        members = ak.to_list(index[e, j])
        np.testing.assert_array_equal(
            ak.to_numpy(leading.constituents[row].E), ak.to_numpy(inputs[e].E)[members]
        )
        for k in ("px", "py", "pz", "E"):
            assert leading.jets[k][row // n_leading, j] == pytest.approx(
                float(jets[e, j][k]), rel=1e-12
            )
            assert float(ak.sum(leading.constituents[row][k])) == pytest.approx(
                float(jets[e, j][k]), rel=1e-9, abs=1e-9
            )
    with pytest.raises(ValueError, match=f">= {n_leading} jets"):
        clustered.leading(np.ones(len(inputs), dtype=bool), n_leading)
    none = clustered.leading(np.zeros(len(inputs), dtype=bool), n_leading)
    assert len(none.constituents) == 0 and none.jets["px"].shape == (0, n_leading)


def test_trigger_threshold_and_eta():
    jets = ak.zip(
        {
            "pt": [[1300.0, 50.0], [1100.0], [1300.0], []],
            "eta": [[0.0, 0.0], [0.0], [2.7], []],
            "phi": [[0.0, 1.0], [0.0], [0.0], []],
            "mass": [[10.0, 1.0], [10.0], [10.0], []],
        },
        with_name="Momentum4D",
    )
    assert passes_trigger(jets).tolist() == [True, False, False, False]
    assert passes_trigger(jets, TriggerConfig(pt_min=1000.0, abs_eta_max=3.0)).tolist() == [
        True,
        True,
        True,
        False,
    ]


def test_clustered_trigger_equals_vector_trigger(particles):
    """ClusteredEvents.passes_trigger (numpy on the flat jets) gives passes_trigger's mask, at
    thresholds placed ON jet pTs and etas of these events (where rounding would show)."""
    clustered = ClusteredEvents(to_fastjet_input(particles), 1.0)
    pts = np.sort(ak.to_numpy(ak.flatten(clustered.jets.pt)))
    etas = np.sort(np.abs(ak.to_numpy(ak.flatten(clustered.jets.eta))))
    assert len(pts) > 10
    masks = set()
    for pt_min in (0.0, *pts[::3], *np.nextafter(pts[::3], 0)):
        for eta_max in (10.0, etas[len(etas) // 2], np.nextafter(etas[len(etas) // 2], 0)):
            trigger = TriggerConfig(pt_min=float(pt_min), abs_eta_max=float(eta_max))
            expected = passes_trigger(clustered.jets, trigger)
            np.testing.assert_array_equal(clustered.passes_trigger(trigger), expected)
            masks.add(tuple(expected))
    assert len(masks) > 5  # the thresholds really select different events


def test_unknown_algorithm():
    with pytest.raises(ValueError, match="unknown jet algorithm"):
        cluster(ak.Array([[{"pt": 1.0, "eta": 0.0, "phi": 0.0, "mass": 0.0}]]), algorithm="siscone")


# --- dijet kinematics -------------------------------------------------------------------------


def _massless(pt, eta, phi):
    return {
        "px": np.array([pt * math.cos(phi)]),
        "py": np.array([pt * math.sin(phi)]),
        "pz": np.array([pt * math.sinh(eta)]),
        "E": np.array([pt * math.cosh(eta)]),
    }


@pytest.mark.parametrize("eta", [0.0, 0.7, -1.3])
def test_mjj_back_to_back_massless_analytic(eta):
    """Massless jets pT p at (eta, phi) and (-eta, phi + pi): mjj = 2 p cosh(eta)."""
    a, b = _massless(1500.0, eta, 0.3), _massless(1500.0, -eta, 0.3 + math.pi)
    out = dijet_features(a, b, np.zeros((1, 3)), np.zeros((1, 3)))
    assert out["mjj"][0] == pytest.approx(2 * 1500.0 * math.cosh(eta), rel=1e-12)
    assert out["mj1"][0] == pytest.approx(0.0, abs=1e-3) and out["mj2"][0] == pytest.approx(
        0.0, abs=1e-3
    )
    assert out["delta_eta"][0] == pytest.approx(2 * abs(eta), abs=1e-12)


def test_dijet_features_against_numpy_and_mass_ordering():
    rng = np.random.default_rng(5)
    n = 200
    jets = []
    for _ in range(2):
        pt, eta, phi, m = (
            rng.uniform(1200, 2000, n),
            rng.uniform(-2, 2, n),
            rng.uniform(-np.pi, np.pi, n),
            rng.uniform(20, 600, n),
        )
        px, py, pz = pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta)
        jets.append(
            {
                "px": px,
                "py": py,
                "pz": pz,
                "E": np.sqrt(px**2 + py**2 + pz**2 + m**2),
                "m": m,
                "pt": pt,
                "eta": eta,
            }
        )
    a, b = jets
    taus_a, taus_b = rng.uniform(0, 1, (n, 3)), rng.uniform(0, 1, (n, 3))
    taus_b[0] = 0.0  # a jet with tau1 = tau2 = 0: ratios defined as 0
    out = dijet_features(a, b, taus_a, taus_b)
    assert set(out) == set(DIJET_COLUMNS)

    E, px, py, pz = (a[k] + b[k] for k in ("E", "px", "py", "pz"))
    np.testing.assert_allclose(out["mjj"], np.sqrt(E**2 - px**2 - py**2 - pz**2), rtol=1e-9)
    light_is_a = a["m"] <= b["m"]
    assert 0 < light_is_a.sum() < n  # both orderings occur
    np.testing.assert_allclose(out["mj1"], np.minimum(a["m"], b["m"]), rtol=1e-6)
    np.testing.assert_allclose(out["mj2"], np.maximum(a["m"], b["m"]), rtol=1e-6)
    assert np.all(out["delta_mj"] >= 0)
    np.testing.assert_allclose(out["pt_j1"], np.where(light_is_a, a["pt"], b["pt"]), rtol=1e-12)
    np.testing.assert_allclose(
        out["eta_j2"], np.where(light_is_a, b["eta"], a["eta"]), rtol=1e-9, atol=1e-12
    )
    tau_j1 = np.where(light_is_a[:, None], taus_a, taus_b)
    np.testing.assert_array_equal(out["tau2_j1"], tau_j1[:, 1])
    np.testing.assert_allclose(
        out["tau21_j1"],
        np.where(tau_j1[:, 0] > 0, tau_j1[:, 1] / np.where(tau_j1[:, 0] > 0, tau_j1[:, 0], 1), 0),
    )
    row0 = out["tau21_j1"][0] if not light_is_a[0] else out["tau21_j2"][0]
    assert row0 == 0.0
    assert (
        invariant_mass(np.array([1.0]), np.array([0.0]), np.array([0.0]), np.array([1.0 - 1e-12]))[
            0
        ]
        == 0.0
    )

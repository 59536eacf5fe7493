"""N-subjettiness against an independent plain-Python exclusive-kT + tau_N (no fastjet)."""

from __future__ import annotations

import math

import awkward as ak
import numpy as np
import pytest

from adhunt.substructure import AXES_BACKENDS, kt_axes, nsubjettiness, safe_ratio

# --- independent reference: plain Python, no numpy vectorisation, no fastjet ---------------------


def _rap_phi(p):
    px, py, pz, E = p
    return 0.5 * math.log((E + pz) / (E - pz)), math.atan2(py, px)


def _dr2(p, q):
    (y1, f1), (y2, f2) = _rap_phi(p), _rap_phi(q)
    dphi = abs(f1 - f2)
    if dphi > math.pi:
        dphi = 2 * math.pi - dphi
    return (y1 - y2) ** 2 + dphi**2


def _pt2(p):
    return p[0] ** 2 + p[1] ** 2


def brute_force_exclusive_kt(particles, n):
    """Merge the pair with the smallest min(pT_i^2, pT_j^2) dR_ij^2 until n objects remain (E-scheme).

    This is exclusive kT with no beam distance, i.e. R -> infinity (fastjet-contrib's KT_Axes).
    """
    objects = [tuple(p) for p in particles]
    while len(objects) > n:
        best = None
        for i in range(len(objects)):
            for j in range(i + 1, len(objects)):
                d = min(_pt2(objects[i]), _pt2(objects[j])) * _dr2(objects[i], objects[j])
                if best is None or d < best[0]:
                    best = (d, i, j)
        _, i, j = best
        merged = tuple(a + b for a, b in zip(objects[i], objects[j], strict=True))
        objects = [o for k, o in enumerate(objects) if k not in (i, j)] + [merged]
    return objects


def brute_force_tau(particles, n, r0, beta=1.0):
    if len(particles) <= n:
        return 0.0
    axes = brute_force_exclusive_kt(particles, n)
    num = sum(
        math.sqrt(_pt2(p)) * min(math.sqrt(_dr2(p, a)) for a in axes) ** beta for p in particles
    )
    den = sum(math.sqrt(_pt2(p)) for p in particles) * r0**beta
    return num / den


def _random_jet(rng, n_particles, n_prongs):
    """A jet of massive particles around 1-3 prong directions (Cartesian px, py, pz, E)."""
    centres = [(rng.uniform(-1.5, 1.5), rng.uniform(-np.pi, np.pi))]
    for _ in range(n_prongs - 1):
        centres.append(
            (centres[0][0] + rng.uniform(-0.5, 0.5), centres[0][1] + rng.uniform(-0.5, 0.5))
        )
    out = []
    for k in range(n_particles):
        eta0, phi0 = centres[k % n_prongs]
        pt = rng.exponential(30.0) + 0.5
        eta, phi, m = eta0 + rng.normal(0, 0.15), phi0 + rng.normal(0, 0.15), 0.13957
        px, py, pz = pt * math.cos(phi), pt * math.sin(phi), pt * math.sinh(eta)
        out.append((px, py, pz, math.sqrt(px * px + py * py + pz * pz + m * m)))
    return out


def _as_awkward(jets):
    return ak.Array(
        [[{"px": p[0], "py": p[1], "pz": p[2], "E": p[3]} for p in jet] for jet in jets]
    )


@pytest.fixture(scope="module")
def jets():
    rng = np.random.default_rng(7)
    sizes = [1, 2, 3, 4, 5, 8, 13, 21, 30, 40]
    return [_random_jet(rng, n, 1 + i % 3) for i, n in enumerate(sizes)]


@pytest.mark.parametrize("backend", AXES_BACKENDS)
@pytest.mark.parametrize("r0", [1.0, 0.8])
def test_tau_matches_brute_force(jets, r0, backend):
    taus = nsubjettiness(_as_awkward(jets), r0=r0, n_max=3, axes_backend=backend)
    expected = np.array([[brute_force_tau(j, n, r0) for n in (1, 2, 3)] for j in jets])
    np.testing.assert_allclose(taus, expected, rtol=1e-9, atol=1e-12)
    # Non-trivial: the multi-particle jets have positive, decreasing taus.
    assert (
        np.all(taus[5:, 0] > taus[5:, 1])
        and np.all(taus[5:, 1] > taus[5:, 2])
        and np.all(taus[5:] > 0)
    )


@pytest.mark.parametrize("backend", AXES_BACKENDS)
def test_tau_beta_two_matches_brute_force(jets, backend):
    taus = nsubjettiness(_as_awkward(jets), r0=1.0, n_max=2, beta=2.0, axes_backend=backend)
    expected = np.array([[brute_force_tau(j, n, 1.0, beta=2.0) for n in (1, 2)] for j in jets])
    np.testing.assert_allclose(taus, expected, rtol=1e-9, atol=1e-12)


def test_few_constituents_give_zero():
    """tau_N = 0 for jets with <= N constituents, including an empty jet."""
    rng = np.random.default_rng(3)
    small = [_random_jet(rng, n, 1) for n in (1, 2, 3)] + [[]]
    taus = nsubjettiness(_as_awkward(small), r0=1.0)
    assert taus[0].tolist() == [0.0, 0.0, 0.0]
    assert taus[1, 0] > 0 and taus[1, 1:].tolist() == [0.0, 0.0]
    assert taus[2, 0] > 0 and taus[2, 1] > 0 and taus[2, 2] == 0.0
    assert taus[3].tolist() == [0.0, 0.0, 0.0]


def test_two_particle_tau1_analytic():
    """Two massless particles at equal pT, dphi = 0.4 at y = 0: the axis bisects them, tau1 = 0.2/R0."""
    pt, half = 100.0, 0.2
    jet = [(pt * math.cos(s * half), pt * math.sin(s * half), 0.0, pt) for s in (1, -1)]
    tau = nsubjettiness(_as_awkward([jet]), r0=1.0, n_max=2)
    np.testing.assert_allclose(tau[0], [half, 0.0], atol=1e-12)


def test_agrees_with_fastjet_contrib_njettiness(jets):
    """Second independent reference: fastjet-contrib Nsubjettiness (NormalizedMeasure, KT_Axes)."""
    import fastjet

    from adhunt.substructure import KT_AXES_RADIUS

    array = _as_awkward([j for j in jets if j])
    sequence = fastjet.ClusterSequence(
        array, fastjet.JetDefinition(fastjet.kt_algorithm, KT_AXES_RADIUS)
    )
    reference = np.asarray(
        sequence.njettiness(
            measure_definition="NormalizedMeasure",
            axes_definition="KT_Axes",
            njets=[1, 2, 3],
            beta=1.0,
            R0=1.0,
        )
    ).reshape(-1, 3)
    np.testing.assert_allclose(nsubjettiness(array, r0=1.0), reference, rtol=1e-7, atol=1e-10)


def test_sliced_input_equals_packed(jets):
    """A reordered/sliced view must give the taus of the corresponding jets (fastjet slicing pitfall)."""
    array = _as_awkward(jets)
    order = np.array([9, 3, 7, 1, 8])
    np.testing.assert_array_equal(
        nsubjettiness(array[order], 1.0), nsubjettiness(array, 1.0)[order]
    )


# --- the compiled exclusive-kT axes: bit-identical to fastjet's clustering --------------------------


def _as_sets(axes):
    """(jet, n, k, 4) axes with each (jet, n)'s axes sorted (their order is not defined)."""
    key = np.where(np.isnan(axes[..., 0]), np.inf, axes[..., 0])
    return np.take_along_axis(axes, np.argsort(key, axis=2)[..., None], axis=2)


def _assert_bit_identical(a, b):
    assert a.shape == b.shape
    same = (a == b) | (np.isnan(a) & np.isnan(b))
    assert same.all(), f"{(~same.all(axis=(1, 2, 3))).sum()} jet(s) differ"


def test_compiled_axes_bit_identical_to_fastjet_on_generated_jets(generated_qcd):
    """The two leading anti-kT jets of generated QCD events (~70 constituents each): the compiled
    kT clustering's exclusive jets equal fastjet's to the bit, and so do all taus."""
    import uproot

    from adhunt.jets import ClusteredEvents, to_fastjet_input
    from adhunt.substructure import nsubjettiness_betas

    path = sorted(generated_qcd.glob("*.root"))[0]
    with uproot.open(path) as handle:
        arrays = handle["Events"].arrays([f"PFCands_{f}" for f in ("pt", "eta", "phi", "mass")])
    particles = ak.zip({f: arrays[f"PFCands_{f}"] for f in ("pt", "eta", "phi", "mass")})
    clustered = ClusteredEvents(to_fastjet_input(particles), 1.0)
    constituents = clustered.leading(np.asarray(clustered.n_jets >= 2), 2).constituents
    assert len(constituents) > 1000 and ak.mean(ak.num(constituents, axis=1)) > 20
    compiled = kt_axes(constituents, 5, backend="compiled")
    full = ak.to_numpy(ak.num(constituents, axis=1)) >= 5  # jets with all five axes
    assert full.mean() > 0.9 and np.isfinite(compiled[full, 4, :5]).all()
    _assert_bit_identical(_as_sets(compiled), _as_sets(kt_axes(constituents, 5, "fastjet")))
    betas = (0.5, 1.0, 2.0)
    np.testing.assert_array_equal(
        nsubjettiness_betas(constituents, 1.0, 5, betas, axes_backend="compiled"),
        nsubjettiness_betas(constituents, 1.0, 5, betas, axes_backend="fastjet"),
    )


def test_compiled_axes_bit_identical_on_random_and_degenerate_jets():
    """Large random jets, tiny jets, an empty jet, and a jet with a pT = 0 particle along the beam
    (the compiled kernel hands such input to fastjet): equal to fastjet's axes to the bit."""
    rng = np.random.default_rng(11)
    jets = [_random_jet(rng, n, 1 + n % 3) for n in (1, 2, 3, 4, 150, 260, 90)] + [[]]
    array = _as_awkward(jets)
    _assert_bit_identical(
        _as_sets(kt_axes(array, 3, "compiled")), _as_sets(kt_axes(array, 3, "fastjet"))
    )
    assert np.isnan(kt_axes(array, 3, "compiled")[-1]).all()  # the empty jet has no axes
    beam = [*_random_jet(rng, 30, 2), (0.0, 0.0, 250.0, 250.0)]
    array = _as_awkward([*jets[:5], beam])
    _assert_bit_identical(
        _as_sets(kt_axes(array, 3, "compiled")), _as_sets(kt_axes(array, 3, "fastjet"))
    )
    with pytest.raises(ValueError, match="backend"):
        kt_axes(array, 3, "pure-python")


def test_compiled_distances_equal_numpy_expression():
    """min over axes of dR^2 (the tau_N distance sums' input), compiled, against the numpy
    expression it replaces: equal to the bit, including missing (infinitely far) axes."""
    from adhunt._ktaxes import min_axis_dr2

    rng = np.random.default_rng(5)
    counts = np.array([0, 1, 7, 40, 3])
    offsets = np.concatenate([[0], np.cumsum(counts)])
    rap, phi = rng.normal(0, 1.5, counts.sum()), rng.uniform(0, 2 * np.pi, counts.sum())
    n_max = 3
    axis_rap = rng.normal(0, 1.5, (len(counts), n_max, n_max))
    axis_phi = rng.uniform(0, 2 * np.pi, (len(counts), n_max, n_max))
    axis_rap[1, :, 1:], axis_phi[1, :, 1:] = np.inf, 0.0  # one constituent: one axis only
    out = np.empty((n_max, counts.sum()))
    min_axis_dr2(rap, phi, offsets, axis_rap, axis_phi, n_max, out)
    jet_of = np.repeat(np.arange(len(counts)), counts)
    for n in range(1, n_max + 1):
        expected = np.full(counts.sum(), np.inf)
        for k in range(n):
            dphi = np.abs(phi - axis_phi[jet_of, n - 1, k])
            dr2 = (rap - axis_rap[jet_of, n - 1, k]) ** 2 + np.minimum(dphi, 2 * np.pi - dphi) ** 2
            np.minimum(expected, dr2, out=expected)
        assert expected.tobytes() == out[n - 1].tobytes()


def test_safe_ratio_and_bad_arguments():
    np.testing.assert_array_equal(safe_ratio([1.0, 2.0, 0.0], [2.0, 0.0, 0.0]), [0.5, 0.0, 0.0])
    assert nsubjettiness(_as_awkward([]), 1.0).shape == (0, 3)
    with pytest.raises(ValueError, match="R0"):
        nsubjettiness(_as_awkward([[(1.0, 0.0, 0.0, 1.0)]]), r0=0.0)
    with pytest.raises(ValueError, match="n_max"):
        nsubjettiness(_as_awkward([[(1.0, 0.0, 0.0, 1.0)]]), r0=1.0, n_max=0)


# --- the extended set: several betas from one clustering, soft-drop mass, D2 -----------------------


@pytest.mark.parametrize("backend", AXES_BACKENDS)
def test_tau_up_to_five_at_three_betas_match_brute_force(jets, backend):
    from adhunt.substructure import nsubjettiness_betas

    betas = (0.5, 1.0, 2.0)
    taus = nsubjettiness_betas(
        _as_awkward(jets), r0=1.0, n_max=5, betas=betas, axes_backend=backend
    )
    assert taus.shape == (len(jets), 3, 5)
    for b, beta in enumerate(betas):
        expected = np.array([[brute_force_tau(j, n, 1.0, beta) for n in range(1, 6)] for j in jets])
        np.testing.assert_allclose(taus[:, b], expected, rtol=1e-9, atol=1e-12)
        # one clustering for all betas gives exactly what a single-beta call gives
        np.testing.assert_array_equal(
            taus[:, b, :3], nsubjettiness(_as_awkward(jets), 1.0, 3, beta)
        )
    assert np.all(taus[-1, 0] > taus[-1, 2])  # beta 0.5 weighs small angles up: larger taus


def _massless(pt, rap, phi, m=0.0):
    mt = math.hypot(pt, m)
    return (pt * math.cos(phi), pt * math.sin(phi), mt * math.sinh(rap), mt * math.cosh(rap))


def test_softdrop_mass_by_hand():
    """C/A declustering with z_cut 0.1, beta 0, computed by hand on toy jets."""
    from adhunt.substructure import groomed_observables

    a, b = _massless(500.0, 0.0, 0.0), _massless(300.0, 0.3, 0.0)
    c = _massless(20.0, -0.5, 0.8)  # far away and soft: z = 20/820 < 0.1 -> groomed away
    heavy = _massless(500.0, 0.0, 0.0, m=5.0)
    light = _massless(30.0, 0.2, 0.2)  # z = 30/530 < 0.1: dropped, the massive particle stays
    d = _massless(120.0, 0.0, 0.5)  # z = 120/920 > 0.1 at the first declustering: kept
    msd = groomed_observables(_as_awkward([[a, b, c], [heavy, light], [a, b, d], [a]]), r0=1.0)[
        "msd"
    ]
    m_ab = math.sqrt(2 * 500 * 300 * (math.cosh(0.3) - 1))  # massless pair
    total = [sum(x) for x in zip(a, b, d, strict=True)]
    m_abd = math.sqrt(total[3] ** 2 - total[0] ** 2 - total[1] ** 2 - total[2] ** 2)
    np.testing.assert_allclose(msd, [m_ab, 5.0, m_abd, 0.0], rtol=1e-9, atol=1e-6)


def _brute_force_d2(jet, beta=1.0):
    pts = [math.sqrt(_pt2(p)) for p in jet]
    total = sum(pts)
    z = [p / total for p in pts]
    n = len(jet)

    def angle(i, j):
        return math.sqrt(_dr2(jet[i], jet[j])) ** beta

    e2 = sum(z[i] * z[j] * angle(i, j) for i in range(n) for j in range(i + 1, n))
    e3 = sum(
        z[i] * z[j] * z[k] * angle(i, j) * angle(i, k) * angle(j, k)
        for i in range(n)
        for j in range(i + 1, n)
        for k in range(j + 1, n)
    )
    return e3 / e2**3 if e2 > 0 else 0.0


def test_d2_matches_brute_force(jets):
    """D2 = e3 / e2^3 (normalised pT and (y, phi) distances); 0 for a one-constituent jet."""
    from adhunt.substructure import groomed_observables

    small = [j for j in jets if len(j) <= 21]  # the triple sum is O(n^3)
    d2 = groomed_observables(_as_awkward([*small, []]), r0=1.0)["d2"]
    expected = [_brute_force_d2(j) for j in small] + [0.0]
    np.testing.assert_allclose(d2, expected, rtol=1e-9, atol=1e-12)
    assert d2[0] == 0.0 and np.all(d2[4:-1] > 0)


def _fastjet_groomed(array, r0, z_cut, sd_beta, d2_beta):
    """Second reference: fastjet-contrib SoftDrop and EnergyCorrelatorD2 through fastjet's Python."""
    import warnings

    import fastjet

    from adhunt.substructure import KT_AXES_RADIUS

    sequence = fastjet.ClusterSequence(
        array, fastjet.JetDefinition(fastjet.cambridge_algorithm, KT_AXES_RADIUS)
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        groomed = sequence.exclusive_jets_softdrop_grooming(
            njets=1, beta=sd_beta, symmetry_cut=z_cut, R0=r0
        )
        d2 = sequence.exclusive_jets_energy_correlator(njets=1, beta=d2_beta, func="d2")
    d2 = np.asarray(ak.to_numpy(d2), dtype=np.float64)
    return np.asarray(ak.to_numpy(groomed.msoftdrop)), np.where(np.isfinite(d2), d2, 0.0)


@pytest.mark.parametrize("z_cut,sd_beta,d2_beta", [(0.1, 0.0, 1.0), (0.2, 1.0, 2.0)])
def test_groomed_observables_match_fastjet(jets, z_cut, sd_beta, d2_beta):
    from adhunt.substructure import groomed_observables

    rng = np.random.default_rng(21)
    more = [_random_jet(rng, n, 1 + i % 3) for i, n in enumerate([60, 90, 120, 45, 75, 33])]
    sample = [j for j in jets if j] + more
    array = _as_awkward(sample)
    ours = groomed_observables(array, r0=0.8, z_cut=z_cut, sd_beta=sd_beta, d2_beta=d2_beta)
    msd, d2 = _fastjet_groomed(array, 0.8, z_cut, sd_beta, d2_beta)
    np.testing.assert_allclose(ours["msd"], msd, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(ours["d2"], d2, rtol=1e-9, atol=1e-12)
    groomed = ours["msd"] < np.array([_mass(j) for j in sample]) * (1 - 1e-6)
    assert groomed.any() and not groomed.all()  # grooming happens, but not everywhere


def _mass(jet):
    total = [sum(x) for x in zip(*jet, strict=True)]
    return math.sqrt(max(total[3] ** 2 - total[0] ** 2 - total[1] ** 2 - total[2] ** 2, 0.0))

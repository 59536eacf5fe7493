"""N-subjettiness of many jets at once: exclusive-kT axes from fastjet, the sums in numpy.

Definition (Thaler & Van Tilburg, as in fastjet-contrib's ``NormalizedMeasure`` with ``KT_Axes``)::

    tau_N = sum_i pT_i * min_k(dR_ik)^beta / (sum_i pT_i * R0^beta)

- The N axes are the exclusive jets of a kT reclustering of the jet's constituents into N subjets,
  E-scheme recombination. The kT radius is fastjet's ``max_allowable_R`` (1000), as in contrib's
  ``KT_Axes``, so that the exclusive sequence is purely pairwise (no constituent "merges with the
  beam" before N subjets are left). R0 (the normalisation) is the jet radius.
- Distances are in (rapidity, phi): the metric the kT clustering itself uses, and the one of
  ``PseudoJet::delta_R`` in fastjet-contrib. Rapidity, not pseudorapidity, because the axes are
  massive subjets.
- A jet with <= N constituents has tau_N = 0 (every constituent is its own axis). A jet with no
  constituents (or zero scalar pT) has all tau_N = 0.
- Ratios (tau21 = tau2/tau1, tau32 = tau3/tau2) are 0 when the denominator is 0: a jet that can
  be described by fewer axes exactly carries no "N-prong" information; 0 keeps tables finite.

All jets are reclustered in ONE fastjet cluster sequence (each jet one "event" of the awkward
multi-event interface); ``exclusive_jets_up_to(N)`` for N = 1..n_max reads that one history.
``exclusive_jets(n_jets=N)`` is NOT used: fastjet raises for any event with fewer than N particles.
"""

from __future__ import annotations

import warnings

import awkward as ak
import fastjet
import numpy as np

#: fastjet::JetDefinition::max_allowable_R: the kT radius of contrib's KT_Axes.
KT_AXES_RADIUS = 1000.0


def rapidity_phi(px: np.ndarray, py: np.ndarray, pz: np.ndarray, E: np.ndarray):
    """(rapidity, phi) of Cartesian four-momenta (numpy, any shape)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        rap = 0.5 * np.log((E + pz) / (E - pz))
    return rap, np.arctan2(py, px)


def safe_ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """numerator / denominator, 0 where the denominator is 0 (see module docstring)."""
    numerator = np.asarray(numerator, dtype=np.float64)
    denominator = np.asarray(denominator, dtype=np.float64)
    out = np.zeros(np.broadcast(numerator, denominator).shape)
    np.divide(numerator, denominator, out=out, where=denominator != 0)
    return out


def nsubjettiness(
    constituents: ak.Array, r0: float, n_max: int = 3, beta: float = 1.0
) -> np.ndarray:
    """tau_1..tau_n_max of every jet; ``constituents`` is jagged (jet, constituent) of px/py/pz/E.

    Returns a float64 array of shape (n_jets, n_max), column N-1 = tau_N.
    """
    return nsubjettiness_betas(constituents, r0, n_max, (beta,))[:, 0, :]


def nsubjettiness_betas(
    constituents: ak.Array, r0: float, n_max: int, betas: tuple[float, ...]
) -> np.ndarray:
    """tau_1..tau_n_max at several angular exponents, from ONE kT reclustering of the jets.

    Returns float64 (n_jets, len(betas), n_max): the axes and distances do not depend on beta,
    so the extended feature set (three betas) pays for the clustering once. Each beta's values
    are computed exactly as :func:`nsubjettiness` computes them alone.
    """
    betas = tuple(float(b) for b in betas)
    if not betas or not all(b > 0 for b in betas):
        raise ValueError(f"betas must be a non-empty list of positive numbers, got {betas}")
    if n_max < 1:
        raise ValueError(f"n_max must be >= 1, got {n_max}")
    if r0 <= 0:
        raise ValueError(f"R0 must be positive, got {r0}")
    n_jets = len(constituents)
    taus = np.zeros((n_jets, len(betas), n_max))
    if n_jets == 0:
        return taus
    constituents = ak.to_packed(constituents)
    counts = ak.to_numpy(ak.num(constituents, axis=1)).astype(np.int64)
    flat = ak.flatten(constituents, axis=1)
    px, py, pz, E = (ak.to_numpy(flat[f]).astype(np.float64) for f in ("px", "py", "pz", "E"))
    pt = np.hypot(px, py)
    rap, phi = rapidity_phi(px, py, pz, E)
    jet_of = np.repeat(np.arange(n_jets), counts)
    pt_sum = np.bincount(jet_of, weights=pt, minlength=n_jets)

    sequence = fastjet.ClusterSequence(
        constituents, fastjet.JetDefinition(fastjet.kt_algorithm, KT_AXES_RADIUS)
    )
    for n in range(1, n_max + 1):
        with warnings.catch_warnings():
            # fastjet warns about exclusive jets for every JetDefinition object, even kT.
            warnings.simplefilter("ignore", UserWarning)
            axes = sequence.exclusive_jets_up_to(n)
        axis_rap, axis_phi = _padded_axes(axes, n)
        # a missing axis (jet with < n constituents) is infinitely far away
        missing = np.isnan(axis_rap)
        axis_rap[missing], axis_phi[missing] = np.inf, 0.0
        min_dr2 = np.full(len(pt), np.inf)
        for k in range(n):  # running minimum over axes: 1-d temporaries only
            dphi = np.abs(phi - axis_phi[jet_of, k])
            dr2 = (rap - axis_rap[jet_of, k]) ** 2 + np.minimum(dphi, 2 * np.pi - dphi) ** 2
            np.minimum(min_dr2, dr2, out=min_dr2)
        for b, beta in enumerate(betas):
            weight = np.sqrt(min_dr2) if beta == 1.0 else min_dr2 ** (beta / 2)
            numerator = np.bincount(jet_of, weights=pt * weight, minlength=n_jets)
            tau = safe_ratio(numerator, pt_sum * r0**beta)
            tau[counts <= n] = 0.0
            taus[:, b, n - 1] = tau
    return taus


def _padded_axes(axes: ak.Array, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Axes (jet, <= n) as regular (jet, n) rapidity/phi arrays, NaN where a jet has fewer.

    Plain numpy on the flat buffers: ``ak.pad_none``/``ak.fill_none`` cost more than the sums.
    """
    counts = ak.to_numpy(ak.num(axes, axis=1)).astype(np.int64)
    flat = ak.flatten(axes, axis=1)
    starts = np.cumsum(counts) - counts
    row = np.repeat(np.arange(len(counts)), counts)
    col = np.arange(len(row)) - np.repeat(starts, counts)
    comps = []
    for f in ("px", "py", "pz", "E"):
        padded = np.full((len(counts), n), np.nan)
        padded[row, col] = ak.to_numpy(flat[f])
        comps.append(padded)
    return rapidity_phi(*comps)


#: Soft-drop defaults (CMS-style mMD): z_cut 0.1, beta 0 (then R0 plays no role).
SOFTDROP_ZCUT = 0.1
SOFTDROP_BETA = 0.0
#: Angular exponent of D2 (Larkoski, Moult, Neill: D2^(beta=1) for two-prong tagging).
D2_BETA = 1.0


def groomed_observables(
    constituents: ak.Array,
    r0: float,
    z_cut: float = SOFTDROP_ZCUT,
    sd_beta: float = SOFTDROP_BETA,
    d2_beta: float = D2_BETA,
) -> dict[str, np.ndarray]:
    """Soft-drop mass and D2 of every jet: ``{"msd": ..., "d2": ...}``, float64.

    ``constituents`` is jagged (jet, constituent) of px/py/pz/E. Definitions, as fastjet-contrib's
    ``SoftDrop`` and ``EnergyCorrelatorD2`` (the tests compare with fastjet's Python package):

    - soft drop: recluster the jet with Cambridge/Aachen (E-scheme, (y, phi) distances, pairwise
      down to one object), then undo the merges from the last one, following the branch of larger
      pT, until the two branches satisfy ``min(pT1, pT2) / (pT1 + pT2) > z_cut (dR12 / r0)^beta``;
      msd is the mass of that node (of the last constituent if none passes);
    - D2 = e3 / e2^3 with e2 = sum_{i<j} z_i z_j R_ij^beta, e3 = sum_{i<j<k} z_i z_j z_k
      (R_ij R_ik R_jk)^beta, z = pT fraction, R the (y, phi) distance, on the UNGROOMED jet;
      0 when e2 = 0 (one constituent), like tau ratios with a zero denominator.

    Compiled (numba) over the flat buffers, one pass over all jets: fastjet's Python soft drop
    copies each groomed jet's constituent list several times per constituent (quadratic; ~4 ms
    per QCD jet, 10x the whole default feature pass) and its D2 is a generic O(n^3) loop.
    """
    if not r0 > 0:
        raise ValueError(f"R0 must be positive, got {r0}")
    n_jets = len(constituents)
    msd, d2 = np.zeros(n_jets), np.zeros(n_jets)
    if n_jets == 0:
        return {"msd": msd, "d2": d2}
    constituents = ak.to_packed(constituents)
    counts = ak.to_numpy(ak.num(constituents, axis=1)).astype(np.int64)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    flat = ak.flatten(constituents, axis=1)
    px, py, pz, E = (
        np.ascontiguousarray(ak.to_numpy(flat[f]), dtype=np.float64)
        for f in ("px", "py", "pz", "E")
    )
    _groomed_kernel()(
        px, py, pz, E, offsets, float(r0), float(z_cut), float(sd_beta), float(d2_beta), msd, d2
    )
    return {"msd": msd, "d2": d2}


def _groomed_kernel():
    """The compiled soft drop + D2 loop over jets (``adhunt._groomed``: numba, cached on disk;
    imported on first use so that importing this module does not load numba)."""
    from adhunt._groomed import groomed_kernel

    return groomed_kernel

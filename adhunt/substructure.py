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

The axes come from :func:`kt_axes`: by default a compiled kT clustering (``adhunt._ktaxes``) that
repeats fastjet's N2Plain clustering operation by operation (bit-identical axes, tested against
fastjet), because fastjet's awkward interface costs ~0.4 of the whole anti-kT event clustering
for this. With ``backend="fastjet"`` all jets are reclustered in ONE fastjet cluster sequence
(each jet one "event" of the multi-event interface) and ``exclusive_jets_up_to(N)`` reads that
history (``exclusive_jets(n_jets=N)`` raises for any jet with fewer than N particles). The
distance sums run compiled over the flat constituent buffers, in numpy's order of operations.
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
    constituents: ak.Array,
    r0: float,
    n_max: int = 3,
    beta: float = 1.0,
    axes_backend: str | None = None,
) -> np.ndarray:
    """tau_1..tau_n_max of every jet; ``constituents`` is jagged (jet, constituent) of px/py/pz/E.

    Returns a float64 array of shape (n_jets, n_max), column N-1 = tau_N.
    """
    return nsubjettiness_betas(constituents, r0, n_max, (beta,), axes_backend)[:, 0, :]


def nsubjettiness_betas(
    constituents: ak.Array,
    r0: float,
    n_max: int,
    betas: tuple[float, ...],
    axes_backend: str | None = None,
) -> np.ndarray:
    """tau_1..tau_n_max at several angular exponents, from ONE kT reclustering of the jets.

    Returns float64 (n_jets, len(betas), n_max): the axes and distances do not depend on beta,
    so the extended feature set (three betas) pays for the clustering once. Each beta's values
    are computed exactly as :func:`nsubjettiness` computes them alone. ``axes_backend``: see
    :data:`AXES_BACKEND` (both give bit-identical taus).
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

    axes = kt_axes(constituents, n_max, backend=axes_backend)
    # (rapidity, phi) of each n's axes from a contiguous (jet, n) array, as always computed
    axis_rap = np.full((n_jets, n_max, n_max), np.inf)
    axis_phi = np.zeros((n_jets, n_max, n_max))
    for n in range(1, n_max + 1):
        rap_n, phi_n = rapidity_phi(
            *(np.ascontiguousarray(axes[:, n - 1, :n, c]) for c in range(4))
        )
        # a missing axis (jet with < n constituents) is infinitely far away
        missing = np.isnan(rap_n)
        rap_n[missing], phi_n[missing] = np.inf, 0.0
        axis_rap[:, n - 1, :n], axis_phi[:, n - 1, :n] = rap_n, phi_n
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    min_dr2_all = np.empty((n_max, len(pt)))
    _compiled().min_axis_dr2(rap, phi, offsets, axis_rap, axis_phi, n_max, min_dr2_all)
    for n in range(1, n_max + 1):
        min_dr2 = min_dr2_all[n - 1]
        for b, beta in enumerate(betas):
            weight = np.sqrt(min_dr2) if beta == 1.0 else min_dr2 ** (beta / 2)
            numerator = np.bincount(jet_of, weights=pt * weight, minlength=n_jets)
            tau = safe_ratio(numerator, pt_sum * r0**beta)
            tau[counts <= n] = 0.0
            taus[:, b, n - 1] = tau
    return taus


#: Who computes the exclusive-kT axes: "compiled" (adhunt._ktaxes, bit-identical to fastjet's
#: N2Plain clustering, ~10x cheaper) or "fastjet" (its multi-event ClusterSequence; also the
#: fallback of "compiled" for jets it cannot handle). Benchmarks switch it to compare.
AXES_BACKEND = "compiled"
AXES_BACKENDS = ("compiled", "fastjet")


def flat_momenta(
    constituents: ak.Array,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(px, py, pz, E, offsets)`` of packed per-jet constituents, as the compiled kernels take
    them: contiguous float64 arrays over all constituents and jet ``j``'s slice
    ``offsets[j]:offsets[j + 1]``."""
    counts = ak.to_numpy(ak.num(constituents, axis=1)).astype(np.int64)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    flat = ak.flatten(constituents, axis=1)
    px, py, pz, E = (
        np.ascontiguousarray(ak.to_numpy(flat[f]), dtype=np.float64)
        for f in ("px", "py", "pz", "E")
    )
    return px, py, pz, E, offsets


def kt_axes(constituents: ak.Array, n_max: int, backend: str | None = None) -> np.ndarray:
    """Exclusive kT axes (R = 1000, E-scheme) of every jet for n = 1..n_max.

    Returns float64 (n_jets, n_max, n_max, 4): ``[jet, n - 1, k]`` is the (px, py, pz, E) of
    the k-th of the n exclusive jets; a jet of m < n constituents has its m constituents as
    axes (as fastjet's ``exclusive_jets_up_to``); NaN rows where k >= min(n, m). The order of the n axes is
    not defined (tau_N takes a minimum over them).
    """
    backend = AXES_BACKEND if backend is None else backend
    if backend not in AXES_BACKENDS:
        raise ValueError(f"axes backend must be one of {AXES_BACKENDS}, got {backend!r}")
    constituents = ak.to_packed(constituents)
    n_jets = len(constituents)
    out = np.full((n_jets, n_max, n_max, 4), np.nan)
    if n_jets == 0:
        return out
    if backend == "compiled":
        px, py, pz, E, offsets = flat_momenta(constituents)
        if _compiled().exclusive_kt_axes(px, py, pz, E, offsets, n_max, out) < 0:
            return out
        out[:] = np.nan  # a jet the kernel cannot decide (a beam merge): fastjet for all
    sequence = fastjet.ClusterSequence(
        constituents, fastjet.JetDefinition(fastjet.kt_algorithm, KT_AXES_RADIUS)
    )
    for n in range(1, n_max + 1):
        with warnings.catch_warnings():
            # fastjet warns about exclusive jets for every JetDefinition object, even kT.
            warnings.simplefilter("ignore", UserWarning)
            axes = sequence.exclusive_jets_up_to(n)
        out[:, n - 1, :n, :] = _padded_axes(axes, n)
    return out


def _compiled():
    """``adhunt._ktaxes`` (numba, cached on disk), imported on first use."""
    from adhunt import _ktaxes

    return _ktaxes


def _padded_axes(axes: ak.Array, n: int) -> np.ndarray:
    """Axes (jet, <= n) as a regular (jet, n, 4) px/py/pz/E array, NaN where a jet has fewer.

    Plain numpy on the flat buffers: ``ak.pad_none``/``ak.fill_none`` cost more than the sums.
    """
    counts = ak.to_numpy(ak.num(axes, axis=1)).astype(np.int64)
    flat = ak.flatten(axes, axis=1)
    starts = np.cumsum(counts) - counts
    row = np.repeat(np.arange(len(counts)), counts)
    col = np.arange(len(row)) - np.repeat(starts, counts)
    padded = np.full((len(counts), n, 4), np.nan)
    for c, f in enumerate(("px", "py", "pz", "E")):
        padded[row, col, c] = ak.to_numpy(flat[f])
    return padded


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
    px, py, pz, E, offsets = flat_momenta(constituents)
    _groomed_kernel()(
        px, py, pz, E, offsets, float(r0), float(z_cut), float(sd_beta), float(d2_beta), msd, d2
    )
    return {"msd": msd, "d2": d2}


def _groomed_kernel():
    """The compiled soft drop + D2 loop over jets (``adhunt._groomed``: numba, cached on disk;
    imported on first use so that importing this module does not load numba)."""
    from adhunt._groomed import groomed_kernel

    return groomed_kernel

"""Compiled exclusive-kT axes and axis distances for :func:`adhunt.substructure.nsubjettiness_betas`.

Why not fastjet: its awkward multi-event interface builds one ClusterSequence object per jet and
copies every history; for the ~70-constituent jets of the default pass that costs about 0.4 of
the whole anti-kT event clustering, while the arithmetic of a pairwise kT reclustering down to
one object is a few microseconds per jet.

Exactness: the kernel reproduces fastjet's N2Plain kT clustering operation by operation, so the
exclusive jets are bit-identical to ``fastjet.ClusterSequence(..., kt_algorithm, R=1000)``:

- (rapidity, phi) of every (pseudo)jet as ``PseudoJet::_set_rap_phi`` (phi in [0, 2 pi),
  rap = +-0.5 log((kt2 + max(m2, 0)) / (E + |pz|)^2), MaxRap = 1e5 for pT = 0, E = |pz|);
- geometric distance ``dphi^2 + drap^2`` with dphi = |phi_a - phi_b| folded above pi
  (``ClusterSequence::_bj_dist``); each jet's nearest geometric neighbour; the pair merged is the
  jet with the smallest ``NN_dist * min(kt2, kt2_NN)`` and its neighbour (``_bj_diJ``): the same
  minimum as over all pairs of min(kt2_i, kt2_j) dR_ij^2;
- E-scheme recombination (sums of px, py, pz, E: commutative, so operand order is irrelevant).

Only exact ties of that minimum (two different pairs with bit-equal distances) could be resolved
differently from fastjet; tests compare the axes with fastjet's bit for bit on generated QCD jets.
A jet where some pair is not closer than R = 1000 (which only a pT = 0, lightlike-along-the-beam
constituent can produce) makes the kernel report failure; the caller then uses fastjet.
"""

from __future__ import annotations

import numba
import numpy as np

#: fastjet's PseudoJet MaxRap (rapidity given to pT = 0, E = |pz| momenta).
MAX_RAP = 1e5
#: R^2 of the kT_Axes reclustering (fastjet's max_allowable_R = 1000).
R2 = 1000.0 * 1000.0
TWOPI = 2.0 * np.pi


@numba.njit(cache=True, nogil=True)
def _rap_phi(px, py, pz, E):
    """fastjet's PseudoJet::_set_rap_phi (see the module docstring), operation by operation."""
    kt2 = px * px + py * py
    if kt2 == 0.0:
        phi = 0.0
    else:
        phi = np.arctan2(py, px)
    if phi < 0.0:
        phi += TWOPI
    if phi >= TWOPI:
        phi -= TWOPI
    if E == abs(pz) and kt2 == 0.0:
        max_rap_here = MAX_RAP + abs(pz)
        rap = max_rap_here if pz >= 0.0 else -max_rap_here
    else:
        m2 = (E + pz) * (E - pz) - kt2
        effective_m2 = m2 if m2 > 0.0 else 0.0
        e_plus_pz = E + abs(pz)
        rap = 0.5 * np.log((kt2 + effective_m2) / (e_plus_pz * e_plus_pz))
        if pz > 0.0:
            rap = -rap
    return rap, phi, kt2


@numba.njit(cache=True, nogil=True)
def _dist(rap, phi, a, b):
    dphi = abs(phi[a] - phi[b])
    deta = rap[a] - rap[b]
    if dphi > np.pi:
        dphi = TWOPI - dphi
    return dphi * dphi + deta * deta


@numba.njit(cache=True, nogil=True)
def _nearest(dist, active, n_active, i, nn, nn_dist):
    """Jet i's nearest neighbour among the active jets, from row i of the distance matrix."""
    best, best_j = R2, -1
    row = dist[i]
    for idx in range(n_active):
        j = active[idx]
        if j != i and row[j] < best:
            best, best_j = row[j], j
    nn[i], nn_dist[i] = best_j, best


@numba.njit(cache=True, nogil=True)
def exclusive_kt_axes(px, py, pz, E, offsets, n_max, out):
    """Fill ``out[jet, n - 1, k, :]`` (px, py, pz, E) with the k-th of the n exclusive kT jets of
    each jet, n = 1..n_max (a jet of m < n constituents: its m constituents; rows k >= min(n, m)
    are left as they are: NaN from the caller). Returns the index of the first jet that needs
    fastjet, or -1 if none does.

    Jets keep their slot; ``active`` lists the live slots. Pairwise distances are kept in a
    matrix (each computed once). After a merge ONE pass over the live jets computes their
    distance to the merged jet, updates nearest neighbours (a full rescan of a row only when its
    neighbour left and the merged jet is farther) and finds the next pair to merge.
    """
    for jet in range(offsets.shape[0] - 1):
        lo, m = offsets[jet], offsets[jet + 1] - offsets[jet]
        if m == 0:
            continue
        jx, jy, jz, je = np.empty(m), np.empty(m), np.empty(m), np.empty(m)
        rap, phi, kt2 = np.empty(m), np.empty(m), np.empty(m)
        nn, nn_dist = np.full(m, -1), np.full(m, R2)
        active, where = np.arange(m), np.arange(m)
        dist = np.empty((m, m))
        for i in range(m):
            jx[i], jy[i], jz[i], je[i] = px[lo + i], py[lo + i], pz[lo + i], E[lo + i]
            rap[i], phi[i], kt2[i] = _rap_phi(jx[i], jy[i], jz[i], je[i])
        for i in range(1, m):  # all pairs once, as N2Plain's initialisation
            for j in range(i):
                d = _dist(rap, phi, i, j)
                dist[i, j] = d
                dist[j, i] = d
                if d < nn_dist[i]:
                    nn_dist[i], nn[i] = d, j
                if d < nn_dist[j]:
                    nn_dist[j], nn[j] = d, i
        # the pair with the smallest min(kt2) * dR^2
        a, dij_min = -1, np.inf
        for i in range(m):
            if nn[i] >= 0:
                dij = nn_dist[i] * min(kt2[i], kt2[nn[i]])
                if dij < dij_min:
                    dij_min, a = dij, i
        n_active = m
        while True:
            if n_active <= n_max:
                # a jet of m <= n constituents: its n exclusive jets are its m constituents
                top = n_max if n_active == m else n_active
                for n in range(n_active, top + 1):
                    for k in range(n_active):
                        i = active[k]
                        row = out[jet, n - 1, k]
                        row[0], row[1], row[2], row[3] = jx[i], jy[i], jz[i], je[i]
            if n_active == 1:
                break
            if a < 0:
                return jet  # no neighbour closer than R: a beam merge; fastjet decides
            b = nn[a]
            # merged jet in slot a; slot b leaves the active list
            jx[a], jy[a], jz[a], je[a] = jx[a] + jx[b], jy[a] + jy[b], jz[a] + jz[b], je[a] + je[b]
            rap[a], phi[a], kt2[a] = _rap_phi(jx[a], jy[a], jz[a], je[a])
            n_active -= 1
            moved = active[n_active]
            active[where[b]] = moved
            where[moved] = where[b]
            best, best_j = R2, -1
            next_a, dij_min = -1, np.inf
            for idx in range(n_active):
                i = active[idx]
                if i == a:
                    continue
                d = _dist(rap, phi, a, i)
                dist[a, i] = d
                dist[i, a] = d
                if d < best:
                    best, best_j = d, i
                if nn[i] == a or nn[i] == b:
                    # its neighbour changed or left: the merged jet is the nearest if it is no
                    # farther than the old nearest was (all others are at least that far)
                    if d <= nn_dist[i]:
                        nn_dist[i], nn[i] = d, a
                    else:
                        _nearest(dist, active, n_active, i, nn, nn_dist)
                elif d < nn_dist[i]:
                    nn_dist[i], nn[i] = d, a
                if nn[i] >= 0:
                    dij = nn_dist[i] * min(kt2[i], kt2[nn[i]])
                    if dij < dij_min:
                        dij_min, next_a = dij, i
                else:
                    next_a, dij_min = -1, -np.inf  # forces the fastjet hand-over
            nn[a], nn_dist[a] = best_j, best
            if best_j >= 0 and dij_min != -np.inf:
                dij = best * min(kt2[a], kt2[best_j])
                if dij < dij_min:
                    dij_min, next_a = dij, a
            elif n_active > 1:
                next_a = -1
            a = next_a
    return -1


@numba.njit(cache=True, nogil=True)
def min_axis_dr2(rap, phi, offsets, axis_rap, axis_phi, n_max, out):
    """``out[n - 1, i]`` = min over the n axes of constituent i's jet of dR^2 (rapidity, phi).

    The same operations, in the same order, as the numpy expression it replaces
    (``(rap - a_rap)**2 + min(dphi, 2 pi - dphi)**2``, running ``np.minimum`` over the axes,
    NaN propagating), so the tau_N sums built on it are unchanged to the bit. Missing axes are
    at rapidity inf (distance inf) as in the caller.
    """
    for jet in range(offsets.shape[0] - 1):
        for i in range(offsets[jet], offsets[jet + 1]):
            r, f = rap[i], phi[i]
            for n in range(1, n_max + 1):
                best = np.inf
                for k in range(n):
                    dphi = abs(f - axis_phi[jet, n - 1, k])
                    drap = r - axis_rap[jet, n - 1, k]
                    wrapped = TWOPI - dphi
                    if wrapped < dphi or wrapped != wrapped:
                        dphi = wrapped
                    d = drap * drap + dphi * dphi
                    if d < best or d != d or best != best:
                        best = d if best == best else best
                    # np.minimum: NaN if either side is NaN
                out[n - 1, i] = best
    return out

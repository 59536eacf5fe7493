"""Compiled per-jet soft drop and D2 for :func:`adhunt.substructure.groomed_observables`.

A separate module so that numba compiles once and caches on disk (functions nested in other
functions are not cached), and is imported only when the extended feature set is requested.
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True, nogil=True)
def rap_phi(px, py, pz, E):
    """(rapidity, phi); a pT = 0 or lightlike-along-the-beam object gets fastjet's MaxRap."""
    if px * px + py * py == 0.0 or E <= abs(pz):
        rap = 1e5 if pz >= 0 else -1e5
    else:
        rap = 0.5 * np.log((E + pz) / (E - pz))
    return rap, np.arctan2(py, px)


@numba.njit(cache=True, nogil=True)
def dr2(r1, f1, r2, f2):
    """Squared (y, phi) distance, phi wrapped."""
    dphi = abs(f1 - f2)
    if dphi > np.pi:
        dphi = 2.0 * np.pi - dphi
    return (r1 - r2) ** 2 + dphi * dphi


@numba.njit(cache=True, nogil=True)
def groomed_kernel(px, py, pz, E, offsets, r0, z_cut, sd_beta, d2_beta, msd, d2):
    """Fill msd[jet], d2[jet] for the jets whose constituents are rows offsets[jet]:offsets[jet+1]
    of px/py/pz/E (definitions: :func:`adhunt.substructure.groomed_observables`)."""
    for jet in range(offsets.shape[0] - 1):
        lo, n = offsets[jet], offsets[jet + 1] - offsets[jet]
        if n == 0:
            continue
        size = 2 * n - 1
        nx, ny, nz, ne = np.empty(size), np.empty(size), np.empty(size), np.empty(size)
        rap, phi = np.empty(size), np.empty(size)
        left, right = np.full(size, -1), np.full(size, -1)
        active = np.zeros(size, dtype=np.bool_)
        nn, nnd = np.full(size, -1), np.full(size, np.inf)
        for i in range(n):
            nx[i], ny[i], nz[i], ne[i] = px[lo + i], py[lo + i], pz[lo + i], E[lo + i]
            rap[i], phi[i] = rap_phi(nx[i], ny[i], nz[i], ne[i])
            active[i] = True
        # --- D2 on the constituents
        if n >= 2:
            ptsum = 0.0
            for i in range(n):
                ptsum += np.hypot(nx[i], ny[i])
            z = np.empty(n)
            for i in range(n):
                z[i] = np.hypot(nx[i], ny[i]) / ptsum
            ang = np.empty((n, n))
            for i in range(n):
                ang[i, i] = 0.0
                for j in range(i + 1, n):
                    d = dr2(rap[i], phi[i], rap[j], phi[j]) ** (0.5 * d2_beta)
                    ang[i, j] = d
                    ang[j, i] = d
            e2 = 0.0
            e3 = 0.0
            for i in range(n):
                for j in range(i + 1, n):
                    zij = z[i] * z[j] * ang[i, j]
                    e2 += zij
                    for k in range(j + 1, n):
                        e3 += zij * z[k] * ang[i, k] * ang[j, k]
            d2[jet] = e3 / e2**3 if e2 > 0.0 else 0.0
        # --- Cambridge/Aachen with nearest-neighbour caching
        for i in range(n):
            for j in range(n):
                if j != i:
                    d = dr2(rap[i], phi[i], rap[j], phi[j])
                    if d < nnd[i]:
                        nnd[i], nn[i] = d, j
        top = n - 1
        for step in range(n - 1):
            a, best = -1, np.inf
            for i in range(top + 1):
                if active[i] and nnd[i] < best:
                    best, a = nnd[i], i
            b = nn[a]
            k = n + step
            nx[k], ny[k] = nx[a] + nx[b], ny[a] + ny[b]
            nz[k], ne[k] = nz[a] + nz[b], ne[a] + ne[b]
            rap[k], phi[k] = rap_phi(nx[k], ny[k], nz[k], ne[k])
            left[k], right[k] = a, b
            active[a] = active[b] = False
            active[k] = True
            top = k
            nn[k], nnd[k] = -1, np.inf
            for i in range(top):
                if not active[i]:
                    continue
                d = dr2(rap[i], phi[i], rap[k], phi[k])
                if d < nnd[k]:
                    nnd[k], nn[k] = d, i
                if nn[i] == a or nn[i] == b:  # lost its neighbour: search again
                    nnd[i], nn[i] = np.inf, -1
                    for j in range(top + 1):
                        if j != i and active[j]:
                            dj = dr2(rap[i], phi[i], rap[j], phi[j])
                            if dj < nnd[i]:
                                nnd[i], nn[i] = dj, j
                elif d < nnd[i]:
                    nnd[i], nn[i] = d, k
        # --- soft drop: decluster along the harder branch
        node = top
        while left[node] >= 0:
            a, b = left[node], right[node]
            pta, ptb = np.hypot(nx[a], ny[a]), np.hypot(nx[b], ny[b])
            zsym = min(pta, ptb) / (pta + ptb) if pta + ptb > 0 else 0.0
            cut = z_cut
            if sd_beta != 0.0:
                cut = z_cut * (np.sqrt(dr2(rap[a], phi[a], rap[b], phi[b])) / r0) ** sd_beta
            if zsym > cut:
                break
            node = a if pta >= ptb else b
        m2 = ne[node] ** 2 - nx[node] ** 2 - ny[node] ** 2 - nz[node] ** 2
        msd[jet] = np.sqrt(m2) if m2 > 0.0 else 0.0

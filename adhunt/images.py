"""Jet images: every jet's constituents as a pT-weighted picture, all jets of a chunk at once.

Preprocessing (the usual jet-image recipe; de Oliveira et al., arXiv:1511.05190), per jet:

1. Coordinates: rapidity ``y`` and azimuth ``phi`` of each constituent. Rapidity, not
   pseudorapidity: differences of rapidity are exactly invariant under a boost along the beam,
   so the centred image of a boosted jet is the same image (for massless constituents y = eta).
   phi differences are wrapped into (-pi, pi] around the jet's own phi (of the summed momentum).
2. Centring: subtract the pT-weighted centroid (y_c, phi_c) of the constituents.
3. Rotation: the principal axis of the pT-weighted second-moment tensor
   ``[[sum pT dy^2, sum pT dy dphi], [., sum pT dphi^2]]`` (the direction of largest spread) is
   rotated onto the vertical axis ``v``; the other axis is ``u``. For a two-prong jet the line
   through the prongs becomes vertical.
4. Flip: ``u -> -u`` and/or ``v -> -v`` so that the quadrant with the largest pT sum is
   ``u >= 0, v >= 0`` (the upper-right quadrant: rows i >= S/2, columns j >= S/2). On ties the
   first of (+,+), (-,+), (+,-), (-,-) wins.
5. Grid: S x S square pixels of width 2R/S over ``-R <= u, v < R``; pixel ``[i, j]`` has row
   ``i`` along ``v`` (increasing upwards) and column ``j`` along ``u``. Each constituent adds its
   pT to one pixel. Constituents outside the square are DROPPED (not clipped onto the border):
   they are counted per jet (``outside``) and excluded from the pT sum. The square contains the
   disc DeltaR < R, so for anti-kT jets of radius R only constituents pulled out by the centring
   (rare, soft) are lost.
6. Normalisation: each image is divided by its pT sum (the ``pt_sum`` returned, before
   normalisation), so it sums to 1; an empty jet gives an all-zero image.

Pixel boundaries are shifted by 1e-9 of a pixel towards negative coordinates, and the quadrant
test uses the same tolerance: a constituent on an axis (u or v = 0 up to rounding, e.g. both
prongs of a two-prong jet after the rotation) lands on the positive side whatever the rounding.

Everything is numpy on the flat constituent buffers: per-jet sums are ``np.bincount`` over the
jet index of each constituent, and all images are filled by ONE ``np.bincount`` over
``jet * S * S + i * S + j``. No loop over jets or events. No coffea: awkward in, numpy out.
"""

from __future__ import annotations

from dataclasses import dataclass

import awkward as ak
import numpy as np

#: Relative shift of pixel boundaries / quadrant edges (see the module docstring).
EDGE_TOLERANCE = 1e-9
#: Quadrant signs (u, v) in tie-breaking order; the chosen one is flipped onto (+, +).
_QUADRANTS = ((1, 1), (-1, 1), (1, -1), (-1, -1))


@dataclass(frozen=True)
class JetImages:
    """Images of ``n`` jets: ``images`` float32 (n, S, S), each summing to 1 (or all 0);
    ``pt_sum`` float64 (n,): pT inside the grid before normalisation; ``outside`` int64 (n,):
    constituents dropped because they fell outside the grid."""

    images: np.ndarray
    pt_sum: np.ndarray
    outside: np.ndarray


def jet_images(constituents: ak.Array, radius: float, size: int = 32) -> JetImages:
    """Preprocessed, normalised ``size`` x ``size`` images of every jet (see the module doc).

    ``constituents`` is jagged (jet, constituent) of px/py/pz/E records (e.g.
    ``LeadingJets.constituents``); ``radius`` is the half-width R of the square grid.
    """
    if size < 2:
        raise ValueError(f"image size must be >= 2 pixels, got {size}")
    if not radius > 0:
        raise ValueError(f"image radius must be positive, got {radius}")
    n_jets = len(constituents)
    if n_jets == 0:
        return JetImages(np.zeros((0, size, size), np.float32), np.zeros(0), np.zeros(0, np.int64))
    constituents = ak.to_packed(constituents)
    counts = ak.to_numpy(ak.num(constituents, axis=1)).astype(np.int64)
    flat = ak.flatten(constituents, axis=1)
    px, py, pz, E = (ak.to_numpy(flat[f]).astype(np.float64) for f in ("px", "py", "pz", "E"))
    jet = np.repeat(np.arange(n_jets), counts)
    u, v, pt = image_coordinates(px, py, pz, E, jet, n_jets)

    width = 2.0 * radius / size
    shift = EDGE_TOLERANCE * width
    col = np.floor((u + radius + shift) / width)
    row = np.floor((v + radius + shift) / width)
    inside = (col >= 0) & (col < size) & (row >= 0) & (row < size)
    outside = np.bincount(jet[~inside], minlength=n_jets).astype(np.int64)
    pixel = (jet[inside] * size + row[inside].astype(np.int64)) * size + col[inside].astype(
        np.int64
    )
    images = np.bincount(pixel, weights=pt[inside], minlength=n_jets * size * size)
    images = images.reshape(n_jets, size, size)
    pt_sum = np.bincount(jet[inside], weights=pt[inside], minlength=n_jets)
    scale = np.zeros(n_jets)
    np.divide(1.0, pt_sum, out=scale, where=pt_sum > 0)
    images *= scale[:, None, None]
    return JetImages(images.astype(np.float32), pt_sum, outside)


def image_coordinates(
    px: np.ndarray,
    py: np.ndarray,
    pz: np.ndarray,
    E: np.ndarray,
    jet: np.ndarray,
    n_jets: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(u, v, pT) of flat constituents after centring, rotation and flip (steps 1-4).

    ``jet`` is each constituent's jet index in [0, n_jets). Exposed for tests and for other
    pixelisations of the same preprocessed coordinates.
    """
    pt = np.hypot(px, py)
    with np.errstate(divide="ignore", invalid="ignore"):
        rap = 0.5 * np.log((E + pz) / (E - pz))
    rap = np.where(np.isfinite(rap), rap, 0.0)  # a constituent along the beam (pT = 0) weighs 0
    phi = np.arctan2(py, px)

    def per_jet(weights: np.ndarray) -> np.ndarray:
        return np.bincount(jet, weights=weights, minlength=n_jets)

    sum_pt = per_jet(pt)
    safe = np.where(sum_pt > 0, sum_pt, 1.0)
    jet_phi = np.arctan2(per_jet(py), per_jet(px))
    dphi = _wrap(phi - jet_phi[jet])
    x = rap - (per_jet(pt * rap) / safe)[jet]
    y = dphi - (per_jet(pt * dphi) / safe)[jet]

    # principal axis: angle of the eigenvector of the largest eigenvalue of the 2x2 tensor
    sxx, syy, sxy = per_jet(pt * x * x), per_jet(pt * y * y), per_jet(pt * x * y)
    theta = 0.5 * np.arctan2(2.0 * sxy, sxx - syy)
    alpha = (0.5 * np.pi - theta)[jet]  # rotates the axis (cos theta, sin theta) onto (0, 1)
    cos_a, sin_a = np.cos(alpha), np.sin(alpha)
    u = x * cos_a - y * sin_a
    v = x * sin_a + y * cos_a

    # flip the hardest quadrant onto (+, +); the tolerance puts on-axis constituents on "+"
    scale = np.sqrt(np.maximum(sxx + syy, 0.0) / safe)[jet]  # jet size, for the tolerance
    tol = EDGE_TOLERANCE * np.maximum(scale, 1e-12)
    pos_u, pos_v = u >= -tol, v >= -tol
    quadrant_pt = np.stack(
        [per_jet(pt * ((pos_u == (su > 0)) & (pos_v == (sv > 0)))) for su, sv in _QUADRANTS],
        axis=1,
    )
    best = np.argmax(quadrant_pt, axis=1)  # first maximum on ties
    signs = np.asarray(_QUADRANTS, dtype=np.float64)[best]
    u = u * signs[jet, 0]
    v = v * signs[jet, 1]
    return u, v, pt


def _wrap(angle: np.ndarray) -> np.ndarray:
    """Angles wrapped into [-pi, pi)."""
    return (angle + np.pi) % (2.0 * np.pi) - np.pi

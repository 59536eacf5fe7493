"""Jet images against a slow per-jet reference (plain Python + numpy.linalg.eigh), by-hand pixels
of two-prong toy jets, pT conservation, and invariance under phi rotations and longitudinal boosts."""

from __future__ import annotations

import math

import awkward as ak
import numpy as np
import pytest

from adhunt.images import jet_images

# --- independent slow reference: one jet at a time, eigen-decomposition by numpy.linalg -------------


def _p4(pt, rap, phi, m=0.0):
    mt = math.hypot(pt, m)
    return (pt * math.cos(phi), pt * math.sin(phi), mt * math.sinh(rap), mt * math.cosh(rap))


def reference_image(jet, radius, size):
    """(image before normalisation, pT inside, n outside) of one jet, written independently."""
    pts, raps, phis = [], [], []
    for px, py, pz, E in jet:
        pts.append(math.hypot(px, py))
        raps.append(0.5 * math.log((E + pz) / (E - pz)))
        phis.append(math.atan2(py, px))
    total = sum(pts)
    axis_phi = math.atan2(sum(p[1] for p in jet), sum(p[0] for p in jet))
    dphis = [math.remainder(f - axis_phi, 2 * math.pi) for f in phis]
    rc = sum(p * r for p, r in zip(pts, raps, strict=True)) / total
    fc = sum(p * f for p, f in zip(pts, dphis, strict=True)) / total
    xs = [r - rc for r in raps]
    ys = [f - fc for f in dphis]
    tensor = np.zeros((2, 2))
    for p, x, y in zip(pts, xs, ys, strict=True):
        tensor += p * np.array([[x * x, x * y], [x * y, y * y]])
    _, vectors = np.linalg.eigh(tensor)
    ex, ey = vectors[:, 1]  # largest eigenvalue's eigenvector -> (0, 1)
    us = [ey * x - ex * y for x, y in zip(xs, ys, strict=True)]
    vs = [ex * x + ey * y for x, y in zip(xs, ys, strict=True)]
    quadrants = {}
    for su, sv in ((1, 1), (-1, 1), (1, -1), (-1, -1)):
        quadrants[(su, sv)] = sum(
            p
            for p, u, v in zip(pts, us, vs, strict=True)
            if (u >= 0) == (su > 0) and (v >= 0) == (sv > 0)
        )
    su, sv = max(quadrants, key=quadrants.get)
    image = np.zeros((size, size))
    width = 2 * radius / size
    inside, outside = 0.0, 0
    for p, u, v in zip(pts, us, vs, strict=True):
        i, j = math.floor((sv * v + radius) / width), math.floor((su * u + radius) / width)
        if 0 <= i < size and 0 <= j < size:
            image[i, j] += p
            inside += p
        else:
            outside += 1
    return image, inside, outside


def _random_jet(rng, n, n_prongs, spread=0.2):
    rap0, phi0 = rng.uniform(-2, 2), rng.uniform(-np.pi, np.pi)
    centres = [(rap0, phi0)] + [
        (rap0 + rng.uniform(-0.5, 0.5), phi0 + rng.uniform(-0.5, 0.5)) for _ in range(n_prongs - 1)
    ]
    out = []
    for k in range(n):
        r0, f0 = centres[k % n_prongs]
        out.append(
            _p4(
                rng.exponential(40) + 0.5,
                r0 + rng.normal(0, spread),
                f0 + rng.normal(0, spread),
                0.14,
            )
        )
    return out


def _awkward(jets):
    return ak.Array([[dict(zip(("px", "py", "pz", "E"), p, strict=True)) for p in j] for j in jets])


@pytest.fixture(scope="module")
def jets():
    rng = np.random.default_rng(11)
    # includes a jet across phi = +-pi, and big spreads so that some constituents leave the grid
    jets = [_random_jet(rng, n, 1 + i % 3) for i, n in enumerate([3, 7, 20, 45, 80, 150])]
    jets.append([_p4(100.0, 0.3, math.pi - 0.05), _p4(60.0, 0.1, -math.pi + 0.1), _p4(5, 0, 3.0)])
    jets.append(_random_jet(rng, 60, 2, spread=0.6))
    return jets


@pytest.mark.parametrize("size", [32, 15])
def test_vectorised_equals_slow_reference(jets, size):
    result = jet_images(_awkward(jets), radius=1.0, size=size)
    assert result.images.shape == (len(jets), size, size) and result.images.dtype == np.float32
    for k, jet in enumerate(jets):
        image, inside, outside = reference_image(jet, 1.0, size)
        np.testing.assert_allclose(result.images[k], image / inside, atol=2e-7)
        assert result.pt_sum[k] == pytest.approx(inside, rel=1e-12)
        assert result.outside[k] == outside
    assert result.outside[-1] > 0  # the wide jet loses constituents: the count is exercised


def test_pt_conservation_before_normalisation(jets):
    """pt_sum = sum of constituent pT inside the grid; the images sum to exactly 1."""
    result = jet_images(_awkward(jets), radius=1.0, size=32)
    for k, jet in enumerate(jets):
        total = sum(math.hypot(p[0], p[1]) for p in jet)
        if result.outside[k] == 0:
            assert result.pt_sum[k] == pytest.approx(total, rel=1e-12)
        else:
            assert result.pt_sum[k] < total
    np.testing.assert_allclose(result.images.sum(axis=(1, 2)), 1.0, rtol=1e-6)


def _transform(jet, dphi=0.0, boost=0.0):
    out = []
    for px, py, pz, E in jet:
        c, s = math.cos(dphi), math.sin(dphi)
        ch, sh = math.cosh(boost), math.sinh(boost)
        out.append((c * px - s * py, s * px + c * py, ch * pz + sh * E, ch * E + sh * pz))
    return out


@pytest.mark.parametrize("dphi,boost", [(1.234, 0.0), (-2.9, 0.0), (0.0, 0.8), (2.0, -1.3)])
def test_invariant_under_phi_rotation_and_boost(jets, dphi, boost):
    """Rotating the event in phi / boosting it along the beam changes no image (float precision)."""
    before = jet_images(_awkward(jets), 1.0, 32)
    after = jet_images(_awkward([_transform(j, dphi, boost) for j in jets]), 1.0, 32)
    np.testing.assert_allclose(after.images, before.images, atol=1e-6)
    np.testing.assert_allclose(after.pt_sum, before.pt_sum, rtol=1e-9)


def test_two_prong_pixels_by_hand():
    """Prongs of pT 300 and 100, DeltaR = d apart, at any orientation: the centroid sits d/4
    from the hard prong; the line through them becomes vertical; the hard prong is in the upper
    half (hardest quadrant up-right, both prongs on the axis u = 0 count as u >= 0)."""
    radius, size = 1.0, 16
    width = 2 * radius / size
    for angle, d, rap0, phi0 in (
        (0.3, 0.4, 0.5, 1.0),
        (2.0, 0.6, -1.2, 3.1),
        (-1.0, 0.25, 0.0, -2),
    ):
        hard = _p4(300.0, rap0, phi0)
        soft = _p4(100.0, rap0 + d * math.cos(angle), phi0 + d * math.sin(angle))
        result = jet_images(_awkward([[hard, soft]]), radius, size)
        image = result.images[0]
        col = size // 2  # u = 0 -> the column starting at the centre
        hard_row = math.floor((d * 100 / 400 + radius) / width)
        soft_row = math.floor((-d * 300 / 400 + radius) / width)
        expected = np.zeros((size, size))
        expected[hard_row, col] += 0.75
        expected[soft_row, col] += 0.25
        np.testing.assert_allclose(image, expected, atol=1e-7)
        assert result.pt_sum[0] == pytest.approx(400.0)


def test_hardest_quadrant_is_upper_right(jets):
    """After the flip the quadrant u >= 0, v >= 0 (rows and columns >= S/2) carries the most pT,
    and the principal axis is vertical: the pT-weighted spread along v exceeds that along u."""
    size = 32
    images = jet_images(_awkward(jets), 1.0, size).images.astype(np.float64)
    h = size // 2
    centres = (np.arange(size) - h + 0.5) / h
    for image in images[2:]:  # jets with enough constituents to have a shape
        quadrants = [
            image[h:, h:].sum(),
            image[h:, :h].sum(),
            image[:h, h:].sum(),
            image[:h, :h].sum(),
        ]
        assert quadrants[0] == max(quadrants)
        v_mean, u_mean = image.sum(axis=1) @ centres, image.sum(axis=0) @ centres
        v_spread = image.sum(axis=1) @ (centres - v_mean) ** 2
        u_spread = image.sum(axis=0) @ (centres - u_mean) ** 2
        assert v_spread > u_spread


def test_empty_jets_and_bad_arguments():
    result = jet_images(_awkward([[], [_p4(50.0, 0.0, 0.0)]]), 1.0, 8)
    assert result.images[0].sum() == 0 and result.pt_sum[0] == 0 and result.outside[0] == 0
    assert result.images[1, 4, 4] == pytest.approx(1.0)  # a lone particle sits at the centre
    assert jet_images(_awkward([]), 1.0, 8).images.shape == (0, 8, 8)
    with pytest.raises(ValueError, match="size"):
        jet_images(_awkward([[]]), 1.0, 1)
    with pytest.raises(ValueError, match="radius"):
        jet_images(_awkward([[]]), 0.0, 8)

"""Per-event dijet features from the two leading-pT jets: the one code path for mjj, mj, tau ratios.

Both the PF-candidate reclustering and the NanoAOD ``FatJet`` mode end here, so every feature
table means the same thing whatever produced the jets. Units are GeV. The two jets are the
leading two in pT; in the table they are re-ordered BY MASS (j1 = lighter, j2 = heavier), as in
the LHC Olympics benchmark, so that ``delta_mj = mj2 - mj1 >= 0``. On equal masses the leading-pT
jet is j1.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

from adhunt.schema import DERIVED_FEATURES, FEATURE_COLUMNS, LEADING_COLUMNS, TRAILING_COLUMNS
from adhunt.substructure import safe_ratio

#: Columns produced by :func:`dijet_features`: the feature table's columns without the bookkeeping
#: ones (dataset/run/luminosityBlock/event before, truth_label/weight after), so the two lists
#: cannot drift apart.
DIJET_COLUMNS = FEATURE_COLUMNS[len(LEADING_COLUMNS) : -len(TRAILING_COLUMNS)]


def invariant_mass(px: np.ndarray, py: np.ndarray, pz: np.ndarray, E: np.ndarray) -> np.ndarray:
    """sqrt(E^2 - |p|^2), clipped at 0: rounding can make m^2 of a light jet slightly negative."""
    m2 = np.asarray(E) ** 2 - (np.asarray(px) ** 2 + np.asarray(py) ** 2 + np.asarray(pz) ** 2)
    return np.sqrt(np.clip(m2, 0.0, None))


def pseudorapidity(px: np.ndarray, py: np.ndarray, pz: np.ndarray) -> np.ndarray:
    """eta = asinh(pz / pT) (the detector coordinate of the jet axis)."""
    return np.arcsinh(np.asarray(pz) / np.hypot(px, py))


def leading_is_lighter(mass_a: np.ndarray, mass_b: np.ndarray) -> np.ndarray:
    """Per event: is the leading-pT jet j1 (the lighter one)? Equal masses: yes.

    The one rule that orders j1/j2: the feature columns, the extended columns and the jet images
    all follow it, so column ``..._j1`` and image channel 0 describe the same jet.
    """
    return np.asarray(mass_a) <= np.asarray(mass_b)


def by_mass_order(per_jet: np.ndarray, a_is_light: np.ndarray) -> np.ndarray:
    """(n_events, 2, ...) values of (leading, subleading) jets -> (j1 = lighter, j2 = heavier)."""
    per_jet = np.asarray(per_jet)
    swap = ~np.asarray(a_is_light, dtype=bool)
    out = per_jet.copy()
    out[swap, 0], out[swap, 1] = per_jet[swap, 1], per_jet[swap, 0]
    return out


def jet_masses(jet_a: dict[str, np.ndarray], jet_b: dict[str, np.ndarray]):
    """Invariant masses of the two leading jets (px/py/pz/E dicts)."""
    return tuple(invariant_mass(j["px"], j["py"], j["pz"], j["E"]) for j in (jet_a, jet_b))


def dijet_features(
    jet_a: dict[str, np.ndarray],
    jet_b: dict[str, np.ndarray],
    taus_a: np.ndarray,
    taus_b: np.ndarray,
    masses: tuple[np.ndarray, np.ndarray] | None = None,
) -> dict[str, np.ndarray]:
    """Feature columns for events whose two leading-pT jets are ``jet_a`` (leading) and ``jet_b``.

    ``jet_a``/``jet_b`` map px, py, pz, E to 1-d arrays (one entry per event); ``taus_a``/``taus_b``
    are (n_events, 3) arrays of tau_1..tau_3. Returns numpy float64 columns named as
    :data:`DIJET_COLUMNS`. ``masses`` replaces the jets' own masses as mj (e.g. the soft-drop
    masses of NanoAOD FatJets, what CMS analyses cut on); mjj always uses the full four-vectors.
    """
    a = {k: np.asarray(jet_a[k], dtype=np.float64) for k in ("px", "py", "pz", "E")}
    b = {k: np.asarray(jet_b[k], dtype=np.float64) for k in ("px", "py", "pz", "E")}
    taus_a = np.asarray(taus_a, dtype=np.float64)
    taus_b = np.asarray(taus_b, dtype=np.float64)
    n = len(a["E"])
    if taus_a.shape != (n, 3) or taus_b.shape != (n, 3):
        raise ValueError(f"taus must have shape ({n}, 3), got {taus_a.shape} and {taus_b.shape}")

    mass_a = invariant_mass(a["px"], a["py"], a["pz"], a["E"])
    mass_b = invariant_mass(b["px"], b["py"], b["pz"], b["E"])
    if masses is not None:
        mass_a, mass_b = (np.asarray(m, dtype=np.float64) for m in masses)
        if mass_a.shape != (n,) or mass_b.shape != (n,):
            raise ValueError(f"masses must have shape ({n},), got {mass_a.shape}, {mass_b.shape}")
    mjj = invariant_mass(*(a[k] + b[k] for k in ("px", "py", "pz", "E")))
    a_is_light = leading_is_lighter(mass_a, mass_b)

    def by_mass(value_a: np.ndarray, value_b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        light = np.where(a_is_light, value_a, value_b)
        heavy = np.where(a_is_light, value_b, value_a)
        return light, heavy

    mj1, mj2 = by_mass(mass_a, mass_b)
    pt_j1, pt_j2 = by_mass(np.hypot(a["px"], a["py"]), np.hypot(b["px"], b["py"]))
    eta_j1, eta_j2 = by_mass(
        pseudorapidity(a["px"], a["py"], a["pz"]), pseudorapidity(b["px"], b["py"], b["pz"])
    )
    tau_j1 = np.where(a_is_light[:, None], taus_a, taus_b)
    tau_j2 = np.where(a_is_light[:, None], taus_b, taus_a)

    return {
        "mjj": mjj,
        "mj1": mj1,
        "mj2": mj2,
        "delta_mj": mj2 - mj1,
        "tau1_j1": tau_j1[:, 0],
        "tau2_j1": tau_j1[:, 1],
        "tau3_j1": tau_j1[:, 2],
        "tau1_j2": tau_j2[:, 0],
        "tau2_j2": tau_j2[:, 1],
        "tau3_j2": tau_j2[:, 2],
        "tau21_j1": safe_ratio(tau_j1[:, 1], tau_j1[:, 0]),
        "tau21_j2": safe_ratio(tau_j2[:, 1], tau_j2[:, 0]),
        "tau32_j1": safe_ratio(tau_j1[:, 2], tau_j1[:, 1]),
        "tau32_j2": safe_ratio(tau_j2[:, 2], tau_j2[:, 1]),
        "pt_j1": pt_j1,
        "pt_j2": pt_j2,
        "eta_j1": eta_j1,
        "eta_j2": eta_j2,
        "delta_eta": np.abs(eta_j1 - eta_j2),
    }


def required_columns(names: Iterable[str]) -> list[str]:
    """The stored columns behind ``names``: derived features replaced by their ingredients."""
    out: list[str] = []
    for name in names:
        out.extend(DERIVED_FEATURES.get(name, (name,)))
    return list(dict.fromkeys(out))


def with_derived_features(frame: pd.DataFrame, names: Iterable[str]) -> pd.DataFrame:
    """``frame`` with the :data:`~adhunt.schema.DERIVED_FEATURES` among ``names`` added as columns.

    The one code path for those ratios: the scan, ``adhunt score`` and the inference processor all
    reach it through the model API, so a model trained on ``mj1_over_mjj`` is scored on the same
    quantity everywhere. Columns already present are kept (a table may carry them); a missing
    ingredient is left for the caller's column check to report by name. Returns a copy only when
    a column is added.
    """
    wanted = [n for n in dict.fromkeys(names) if n in DERIVED_FEATURES and n not in frame.columns]
    ready = [n for n in wanted if all(c in frame.columns for c in DERIVED_FEATURES[n])]
    if not ready:
        return frame
    new = {}
    for name in ready:
        num, den = DERIVED_FEATURES[name]
        new[name] = safe_ratio(
            frame[num].to_numpy(dtype=np.float64), frame[den].to_numpy(dtype=np.float64)
        )
    return frame.assign(**new)

"""Jet clustering and jet-level selections: the one code path for jets used everywhere.

The generator's trigger and the feature processor both call these functions, so "a jet" means the
same thing at generation and at analysis time.
"""

from __future__ import annotations

from dataclasses import dataclass

import awkward as ak
import fastjet
import numpy as np
import vector

vector.register_awkward()

_ALGORITHMS = {
    "antikt": fastjet.antikt_algorithm,
    "kt": fastjet.kt_algorithm,
    "cambridge": fastjet.cambridge_algorithm,
}


@dataclass(frozen=True)
class TriggerConfig:
    """LHC Olympics R&D trigger: at least one jet with pT > pt_min and |eta| < abs_eta_max (GeV)."""

    pt_min: float = 1200.0
    abs_eta_max: float = 2.5


def to_fastjet_input(particles: ak.Array) -> ak.Array:
    """Packed (px, py, pz, E) records from particles with pt/eta/phi/mass fields.

    ``ak.to_packed`` protects against fastjet releases that cluster the wrong particles when the
    awkward array is a slice or a reordering of a larger one.
    """
    p4 = ak.zip(
        {"pt": particles.pt, "eta": particles.eta, "phi": particles.phi, "mass": particles.mass},
        with_name="Momentum4D",
    )
    return ak.to_packed(
        ak.zip(
            {
                "px": ak.values_astype(p4.px, np.float64),
                "py": ak.values_astype(p4.py, np.float64),
                "pz": ak.values_astype(p4.pz, np.float64),
                "E": ak.values_astype(p4.E, np.float64),
            }
        )
    )


def cluster(
    particles: ak.Array, radius: float = 1.0, algorithm: str = "antikt"
) -> tuple[ak.Array, ak.Array]:
    """Cluster each event's particles; return (jets, constituent indices), both sorted by jet pT.

    ``jets`` are ``Momentum4D`` records (px, py, pz, E); ``constituent indices`` index into each
    event's particle list, jagged as (event, jet, constituent).
    """
    if algorithm not in _ALGORITHMS:
        raise ValueError(f"unknown jet algorithm {algorithm!r}; choose from {sorted(_ALGORITHMS)}")
    n_events = len(particles)
    if n_events == 0:
        empty = ak.Array([[]] * 0)
        return ak.zip({"px": empty, "py": empty, "pz": empty, "E": empty}, with_name="Momentum4D"), empty
    jetdef = fastjet.JetDefinition(_ALGORITHMS[algorithm], radius)
    sequence = fastjet.ClusterSequence(to_fastjet_input(particles), jetdef)
    raw = sequence.inclusive_jets()
    index = sequence.constituent_index()
    jets = ak.zip({"px": raw.px, "py": raw.py, "pz": raw.pz, "E": raw.E}, with_name="Momentum4D")
    order = ak.argsort(jets.pt, axis=1, ascending=False)
    return jets[order], index[order]


def passes_trigger(jets: ak.Array, trigger: TriggerConfig = TriggerConfig()) -> np.ndarray:
    """Boolean mask of events with at least one jet above the trigger threshold."""
    ok = (jets.pt > trigger.pt_min) & (abs(jets.eta) < trigger.abs_eta_max)
    return ak.to_numpy(ak.any(ok, axis=1))

"""Experiment inputs as CMS and Delphes write them: collections, event weights, HLT bits, lumi masks.

Why a module of its own: the feature processor must read files that adhunt did not write (CMS
NanoAOD / PFNanoAOD of every version, Delphes), and every difference between those formats is
decided here, once, so that the processor only sees "candidates", "fat jets", "weights" and
"selected events". Functions take plain arrays or awkward records (no coffea imports), raise
:class:`InputError` naming what is missing and what the file does have, and never print.

Conventions:

* PF candidates are ``PFCands_*`` (PFNano, NanoAOD <= v14) or ``PFCand_*`` (NanoAOD v15, no
  ``charge`` branch); the first present wins. PUPPI weights (``puppiWeight``), when present, scale
  each candidate's four-momentum (pT and mass: eta and phi are unchanged), which is how CMS builds
  its AK8 PUPPI jets; candidates with weight 0 are then dropped (they carry no momentum).
* Event weights: ``genWeight`` for simulation, 1 for data (declared ``is_data`` in the fileset
  metadata, or no ``genWeight`` branch), times an optional per-dataset scale
  (cross-section x luminosity / sum of generator weights, :func:`normalisation`).
* Physical momenta: a candidate (or fat jet) with pT <= 0 (negative or zero energy once the
  mass is 0), or with a mass below ``-MASS_ROUNDING x |p|``, is not a particle; its event is
  rejected and counted, like NaN/inf (:func:`physical_events`). Real NanoAOD does store small
  negative masses: ``PFCands_mass`` down to -1.9 MeV (|m|/|p| <= 1.6e-4) in PFNanoAOD and
  ``PFCand_mass`` down to -4 keV in v15, i.e. M() of a massless float32 four-vector computed
  with rounding (-sqrt(-m2)); those are accepted (clustering uses m2, so they act as |m|, a
  relative change below 1e-6 of the energy). ``FatJet_msoftdrop`` uses -1 for "soft drop found
  no subjets" (seen in the v15 and collision-data samples); it is not a kinematic input here
  and is not checked (``jet_mass="msoftdrop"`` then gives mj = -1 for such jets, and the
  feature processor reports how many selected jets had it).
* Delphes: energy-flow objects (EFlowTrack, EFlowPhoton, EFlowNeutralHadron) play the role of PF
  candidates; Delphes ``FatJet`` the role of NanoAOD ``FatJet`` (``Tau_5`` holds tau_1..tau_5).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import awkward as ak
import numpy as np

#: PF-candidate collections, in order of preference (PFNano / NanoAOD <= v14, NanoAOD v15).
CANDIDATE_COLLECTIONS = ("PFCands", "PFCand")
KINEMATIC_FIELDS = ("pt", "eta", "phi", "mass")
PUPPI_FIELD = "puppiWeight"
TAUS = ("tau1", "tau2", "tau3")
#: Delphes energy-flow collections that together are the particle-flow candidates.
DELPHES_EFLOW = ("EFlowTrack", "EFlowPhoton", "EFlowNeutralHadron")
DELPHES_FATJET = "FatJet"
SCHEMAS = ("nanoaod", "delphes")
#: The tree a schema's files hold when the fileset does not name one.
DEFAULT_TREES = {"nanoaod": "Events", "delphes": "Delphes"}
HLT_PREFIX = "HLT_"
#: A negative mass m with |m| <= MASS_ROUNDING x |p| is float rounding of a massless particle
#: (3x sqrt(float32 epsilon); real NanoAOD has |m|/|p| up to 1.6e-4): accepted.
MASS_ROUNDING = 1e-3


class InputError(ValueError):
    """An input that cannot be used as asked; the message names what is missing and what is there."""


def collections_in(names: Iterable[str]) -> list[str]:
    """Collection names of a NanoAOD branch list (``Jet_pt`` -> ``Jet``; counters ``nJet`` dropped).

    For error messages: "the file has FatJet, Jet, Muon, ..." tells a user at once which naming
    the file uses.
    """
    names = set(names)
    out = set()
    for name in names:
        head = name.split("/", 1)[0].split("_", 1)[0]
        if head.startswith("n") and head[1:] and any(n.startswith(head[1:] + "_") for n in names):
            continue
        out.add(head)
    return sorted(out)


def _listing(names: Iterable[str], limit: int = 40) -> str:
    names = list(names)
    shown = ", ".join(names[:limit])
    return shown + (f", ... ({len(names)} in all)" if len(names) > limit else "")


def candidate_collection(fields: Iterable[str]) -> str:
    """The PF-candidate collection of an event record / branch list: ``PFCands`` or ``PFCand``."""
    fields = list(fields)
    present = set(fields) | {f.split("_", 1)[0] for f in fields}
    for name in CANDIDATE_COLLECTIONS:
        if name in present:
            return name
    raise InputError(
        "no PF candidates: neither PFCands_* (PFNano, NanoAOD <= v14) nor PFCand_* (NanoAOD v15) "
        f"is in the file; it has the collections {_listing(collections_in(fields))}"
    )


def missing_branches(
    keys: Iterable[str], schema: str, jets: str, extra: Sequence[str] = ()
) -> str | None:
    """Why a file cannot be processed (naming what it has instead), or None if it can.

    ``extra`` are further branches the configuration needs (HLT bits, ``FatJet_jetId`` ...).
    """
    keys = set(keys)
    if schema == "delphes":
        wanted = DELPHES_EFLOW if jets == "pfcands" else (DELPHES_FATJET,)
        have = {k.split("/", 1)[0] for k in keys}
        missing = [f"{c} (branches {c}/{c}.*)" for c in wanted if c not in have]
        if missing:
            return (
                f"missing Delphes collection(s) {', '.join(missing)}; the tree has "
                f"{_listing(sorted(h for h in have if not h.endswith('_size')))}"
            )
        return None
    event = ["run", "luminosityBlock", "event"]
    if jets == "fatjet":
        needed = [*event, "nFatJet", *(f"FatJet_{f}" for f in (*KINEMATIC_FIELDS, *TAUS))]
    else:
        try:
            collection = candidate_collection(keys)
        except InputError as err:
            return str(err)
        needed = [*event, f"n{collection}", *(f"{collection}_{f}" for f in KINEMATIC_FIELDS)]
    hlt_missing = [b for b in extra if b.startswith(HLT_PREFIX) and b not in keys]
    if hlt_missing:
        have_hlt = [k.removeprefix(HLT_PREFIX) for k in keys if k.startswith(HLT_PREFIX)]
        return missing_hlt_message([b.removeprefix(HLT_PREFIX) for b in hlt_missing], have_hlt)
    needed += [b for b in extra if not b.startswith(HLT_PREFIX)]
    missing = [b for b in needed if b not in keys]
    if missing:
        prefixes = {m.split("_", 1)[0] for m in missing if "_" in m}
        similar = sorted(k for k in keys if k.split("_", 1)[0] in prefixes)
        hint = f"; the file has {_listing(similar)}" if similar else ""
        if not similar and any("_" in m for m in missing):
            hint = f"; the file has the collections {_listing(collections_in(keys))}"
        return f"missing branch(es) {', '.join(missing)}{hint}"
    return None


def candidates(events: Any, puppi: bool = True) -> tuple[ak.Array, str, bool]:
    """(pt, eta, phi, mass) candidates of NanoAOD events, the collection used, whether PUPPI-weighted.

    With ``puppi`` and a ``puppiWeight`` field, pT and mass are multiplied by the weight (the
    four-momentum scales as a whole) and zero-weight candidates are removed.
    """
    name = candidate_collection(events.fields)
    coll = events[name]
    missing = [f"{name}_{f}" for f in KINEMATIC_FIELDS if f not in coll.fields]
    if missing:
        raise InputError(
            f"missing branch(es) {', '.join(missing)}; {name} has {_listing(coll.fields)}"
        )
    columns = {f: _materialize(coll[f]) for f in KINEMATIC_FIELDS}
    weighted = bool(puppi and PUPPI_FIELD in coll.fields)
    if weighted:
        columns = puppi_weighted(columns, _materialize(coll[PUPPI_FIELD]))
    return ak.zip(columns), name, weighted


def puppi_weighted(columns: Mapping[str, ak.Array], weight: ak.Array) -> dict[str, ak.Array]:
    """Candidates with pT and mass scaled by their PUPPI weight; zero-weight candidates removed.

    Scaling pT and mass by w scales (px, py, pz, E) by w, as CMS does before clustering PUPPI jets.
    NaN weights are kept (times the momenta they make them NaN), so that the event is rejected as
    non-finite, not silently changed.
    """
    keep = weight != 0
    out = {k: v[keep] for k, v in columns.items()}
    w = weight[keep]
    out["pt"] = out["pt"] * w
    out["mass"] = out["mass"] * w
    return out


def delphes_candidates(events: Any) -> ak.Array:
    """Delphes energy-flow objects (tracks, photons, neutral hadrons) as (pt, eta, phi, mass).

    Photons and neutral-hadron towers are massless in coffea's DelphesSchema (mass 0).
    """
    parts = []
    for name in DELPHES_EFLOW:
        if name not in events.fields:
            raise InputError(
                f"missing Delphes collection {name}; the tree has {_listing(sorted(events.fields))}"
            )
        coll = events[name]
        parts.append(
            ak.zip(
                {f: ak.values_astype(_materialize(coll[f]), np.float64) for f in KINEMATIC_FIELDS}
            )
        )
    return ak.concatenate(parts, axis=1)


def _materialize(array: ak.Array) -> ak.Array:
    return ak.materialize(array) if hasattr(ak, "materialize") else array


def physical_events(pt: ak.Array, eta: ak.Array, mass: ak.Array) -> np.ndarray:
    """Events whose objects (candidates or jets) all have pT > 0 and mass >= -MASS_ROUNDING |p|.

    pT > 0 makes the energy positive whatever the mass. Non-finite values fail too (the
    processor rejects, and counts, those first). See the module doc for what real files hold.
    """
    # on the flat buffers (the same element-wise operations; awkward's jagged version costs ~5%
    # of the default feature pass), reduced per event only when some object fails
    counts = ak.to_numpy(ak.num(pt, axis=1))
    flat_pt, flat_eta, flat_mass = (ak.to_numpy(ak.flatten(a, axis=1)) for a in (pt, eta, mass))
    momentum = abs(flat_pt * np.cosh(flat_eta))
    bad = ~((flat_pt > 0) & (flat_mass >= -MASS_ROUNDING * momentum))
    if not bad.any():
        return np.ones(len(counts), dtype=bool)
    event_of = np.repeat(np.arange(len(counts)), counts)
    return np.bincount(event_of[bad], minlength=len(counts)) == 0


# --- event weights ------------------------------------------------------------------------------


@dataclass(frozen=True)
class DatasetWeights:
    """How a dataset's events are weighted: data (1) or simulation (generator weight x ``scale``).

    ``is_data`` None: decided per file (no ``genWeight`` branch -> data). ``scale`` is the
    normalisation cross-section x luminosity / sum of generator weights (1: none).
    """

    is_data: bool | None = None
    scale: float = 1.0


def event_weights(events: Any, info: DatasetWeights, schema: str = "nanoaod") -> np.ndarray:
    """Per-event weights (float64) of a chunk: see :class:`DatasetWeights`."""
    n = len(events)
    if info.is_data:
        return np.ones(n)
    if schema == "delphes":
        if "Event" in events.fields and "Weight" in events.Event.fields:
            raw = ak.to_numpy(ak.flatten(events.Event.Weight, axis=None)).astype(np.float64)
            if len(raw) != n:
                raise InputError(f"Delphes Event.Weight has {len(raw)} entries for {n} events")
            return raw * info.scale
        return np.full(n, info.scale)
    if "genWeight" not in events.fields:
        if info.is_data is False:
            raise InputError(
                "the fileset declares this dataset simulation (is_data: false) but the file has no "
                "genWeight branch"
            )
        return np.ones(n)
    return ak.to_numpy(events.genWeight).astype(np.float64) * info.scale


def sum_of_generator_weights(path: str, tree: str = "Events") -> tuple[float, str]:
    """(sum of generator weights, where it came from) of one NanoAOD file.

    Prefers the ``Runs`` tree's ``genEventSumw`` (all generated events, before any skim that
    NanoAOD production applied); falls back to summing ``genWeight`` over the events tree.
    """
    import uproot

    with uproot.open(path) as handle:
        if "Runs" in handle and "genEventSumw" in handle["Runs"].keys():
            return float(
                np.sum(handle["Runs"]["genEventSumw"].array(library="np"), dtype=np.float64)
            ), "Runs"
        if tree in handle and "genWeight" in handle[tree].keys():
            return float(
                np.sum(handle[tree]["genWeight"].array(library="np"), dtype=np.float64)
            ), tree
    raise InputError(f"{path}: no generator weights (neither Runs/genEventSumw nor genWeight)")


def normalisation(xsec_pb: float, luminosity_pb: float, sum_weights: float) -> float:
    """Scale of each generator weight so that the weights sum to xsec x luminosity."""
    if not (math.isfinite(xsec_pb) and xsec_pb > 0):
        raise InputError(f"cross-section must be a positive number of pb, got {xsec_pb!r}")
    if not (math.isfinite(sum_weights) and sum_weights != 0):
        raise InputError(f"sum of generator weights is {sum_weights}: cannot normalise")
    return float(xsec_pb) * float(luminosity_pb) / float(sum_weights)


# --- event selections ---------------------------------------------------------------------------


def hlt_branch(path: str) -> str:
    """``HLT_X`` for ``X`` or ``HLT_X`` (users write either)."""
    path = path.strip()
    return path if path.startswith(HLT_PREFIX) else HLT_PREFIX + path


def hlt_mask(events: Any, paths: Sequence[str]) -> np.ndarray:
    """Events firing at least one of the HLT ``paths`` (an OR); all events when ``paths`` is empty."""
    n = len(events)
    if not paths:
        return np.ones(n, dtype=bool)
    hlt = events["HLT"] if "HLT" in events.fields else None
    have = set(hlt.fields) if hlt is not None else set()
    names = [hlt_branch(p).removeprefix(HLT_PREFIX) for p in paths]
    missing = [n for n in names if n not in have]
    if missing:
        raise InputError(missing_hlt_message(missing, have))
    mask = np.zeros(n, dtype=bool)
    for name in names:
        mask |= ak.to_numpy(hlt[name]).astype(bool)
    return mask


def missing_hlt_message(missing: Sequence[str], have: Iterable[str]) -> str:
    """Names the missing HLT bits and the file's bits that look like them (same first 8 letters)."""
    have = sorted(have)
    near = sorted({h for m in missing for h in have if h[:8].lower() == m[:8].lower()})
    hint = f"; similar bits in the file: {_listing(HLT_PREFIX + h for h in near)}" if near else ""
    if not have:
        hint = "; the file has no HLT_* branches"
    return f"HLT bit(s) {', '.join(HLT_PREFIX + m for m in missing)} not in the file{hint}"


def load_lumi_mask(path: str | Path) -> Any:
    """A ``coffea.lumi_tools.LumiMask`` from a CMS golden JSON, checked to be one.

    The format: ``{"run": [[first_lumi, last_lumi], ...], ...}`` with inclusive ranges.
    """
    from coffea.lumi_tools import LumiMask

    path = Path(path)
    if not path.is_file():
        raise InputError(f"lumi mask (golden JSON) not found: {path}")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise InputError(f"lumi mask {path}: not valid JSON ({err})") from err
    if not isinstance(data, dict) or not all(
        str(run).isdigit()
        and isinstance(ranges, list)
        and all(isinstance(r, list) and len(r) == 2 for r in ranges)
        for run, ranges in data.items()
    ):
        raise InputError(
            f"lumi mask {path}: expected a CMS golden JSON {{'run': [[first, last], ...]}}"
        )
    return LumiMask(str(path))


def lumi_mask(mask: Any, run: np.ndarray, luminosity_block: np.ndarray) -> np.ndarray:
    """Events whose (run, luminosity block) the golden JSON certifies."""
    run = np.asarray(run).astype(np.uint32)
    lumi = np.asarray(luminosity_block).astype(np.uint32)
    return np.asarray(mask(run, lumi), dtype=bool)

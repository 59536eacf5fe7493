"""Small NanoAOD-like event files written by the tests themselves (uproot ``mktree``).

The events are built so that the expected selection is known by construction:

- ``dijet``: two narrow sprays of particles back to back in phi, each 1.3-1.8 TeV (pass all cuts);
- ``monojet``: one 1.5 TeV spray of particles within dR < 0.3, nothing else (1 jet: fails ``two_jets``);
- ``soft``: a few GeV of scattered particles (fails the trigger);
- ``empty``: no particles (fails the trigger);
- ``nan``: a dijet event with one NaN pT (rejected at ``finite_momenta``).

Kinds for the physical-momentum check (:data:`MOMENTUM_KINDS`, not in :data:`KINDS`):

- ``negpt``: a dijet event with one negative candidate pT (rejected at ``physical_momenta``);
- ``negmass``: a dijet event with one candidate of mass -1 GeV, far beyond rounding (rejected);
- ``roundmass``: a dijet event whose candidates all have mass -2e-4 x |p|, float rounding as in
  real NanoAOD (accepted: passes every cut like ``dijet``).
"""

from __future__ import annotations

from pathlib import Path

import awkward as ak
import numpy as np
import uproot

KINDS = ("dijet", "monojet", "soft", "empty", "nan")
MOMENTUM_KINDS = ("negpt", "negmass", "roundmass")
_DIJETS = ("dijet", "nan", *MOMENTUM_KINDS)


def _spray(rng: np.random.Generator, pt_total: float, eta: float, phi: float, n: int, width: float):
    fractions = rng.dirichlet(np.ones(n))
    return (
        pt_total * fractions,
        eta + rng.normal(0, width, n),
        phi + rng.normal(0, width, n),
    )


def make_event(kind: str, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Particles (pt, eta, phi, mass) of one event of the given kind."""
    parts = []
    if kind in _DIJETS:
        phi0 = rng.uniform(-np.pi, np.pi)
        eta0 = rng.uniform(-1, 1)
        for sign in (1, -1):
            pt_total = rng.uniform(1300, 1800)
            n = int(rng.integers(15, 40))
            # Two prongs per jet so that tau2 < tau1 is non-trivial.
            for frac, offset in ((0.7, 0.0), (0.3, 0.35)):
                pt, eta, phi = _spray(
                    rng, frac * pt_total, sign * eta0 + offset, phi0 + (sign < 0) * np.pi, n, 0.05
                )
                parts.append((pt, eta, phi))
    elif kind == "monojet":
        parts.append(_spray(rng, 1500.0, rng.uniform(-1, 1), rng.uniform(-np.pi, np.pi), 30, 0.08))
    elif kind == "soft":
        n = 10
        parts.append(
            (rng.uniform(0.5, 2.0, n), rng.uniform(-3, 3, n), rng.uniform(-np.pi, np.pi, n))
        )
    elif kind != "empty":
        raise ValueError(kind)
    if parts:
        pt, eta, phi = (np.concatenate(x) for x in zip(*parts, strict=True))
    else:
        pt = eta = phi = np.zeros(0)
    phi = (phi + np.pi) % (2 * np.pi) - np.pi
    mass = np.full(len(pt), 0.13957)
    if kind == "nan":
        pt[3] = np.nan
    elif kind == "negpt":
        pt[3] = -pt[3]
    elif kind == "negmass":
        mass[3] = -1.0
    elif kind == "roundmass":
        mass = -2e-4 * pt * np.cosh(eta)
    return {"pt": pt, "eta": eta, "phi": phi, "mass": mass}


def make_events(kinds: list[str], seed: int) -> dict[str, object]:
    """Column dict (jagged PFCands + event branches) for a list of event kinds."""
    rng = np.random.default_rng(seed)
    events = [make_event(k, rng) for k in kinds]
    counts = np.array([len(e["pt"]) for e in events], dtype=np.int64)
    flat = {
        f: np.concatenate([np.zeros(0), *(e[f] for e in events)]).astype(np.float32)
        for f in ("pt", "eta", "phi", "mass")
    }
    n = len(counts)
    flat["charge"] = np.zeros(len(flat["pt"]), np.int32)
    flat["pdgId"] = np.full(len(flat["pt"]), 211, np.int32)
    return {
        "PFCands": ak.unflatten(ak.zip(flat), counts),
        "run": np.ones(n, np.int32),
        "luminosityBlock": np.ones(n, np.int32),
        "event": np.arange(seed * 100_000, seed * 100_000 + n, dtype=np.int64),
        "truthLabel": np.zeros(n, np.int32),
    }


def write_events(
    path: str | Path, columns: dict[str, object], drop: tuple[str, ...] = (), tree: str = "Events"
) -> Path:
    """Write a TTree (``Events``) in the NanoAOD layout; ``drop`` removes branches (bad-input tests).

    ``drop`` entries are ``"truthLabel"`` or ``"PFCands_<field>"``.
    """
    columns = dict(columns)
    for name in drop:
        if name.startswith("PFCands_"):
            field = name.removeprefix("PFCands_")
            pf = columns["PFCands"]
            columns["PFCands"] = ak.zip({f: pf[f] for f in pf.fields if f != field})
        else:
            columns.pop(name)
    path = Path(path)
    with uproot.recreate(path) as handle:
        handle.mktree(
            tree,
            {
                k: (v.type.content if isinstance(v, ak.Array) else v.dtype)
                for k, v in columns.items()
            },
        )
        if len(columns["run"]):
            handle[tree].extend(columns)
    return path


def expected_cutflow(kinds: list[str]) -> dict[str, int]:
    """The cutflow the kinds imply, counted independently of the processor."""
    return {
        "events": len(kinds),
        "lumi_mask": len(kinds),
        "hlt": len(kinds),
        "finite_momenta": sum(k != "nan" for k in kinds),
        "physical_momenta": sum(k not in ("nan", "negpt", "negmass") for k in kinds),
        "trigger": sum(k in ("dijet", "monojet", "roundmass") for k in kinds),
        "two_jets": sum(k in ("dijet", "roundmass") for k in kinds),
    }


def corrupt_baskets(source: Path, target: Path) -> Path:
    """Overwrite the middle of the compressed PFCands_pt baskets: the file opens, reading fails."""
    data = bytearray(source.read_bytes())
    with uproot.open(source) as handle:
        branch = handle["Events"]["PFCands_pt"]
        start = int(branch.member("fBasketSeek")[0])
        size = int(branch.member("fBasketBytes")[0])
    key_len = 100  # skip the TKey header; garble the compressed payload
    data[start + key_len : start + size - 8] = b"\x5a" * (size - 8 - key_len)
    target.write_bytes(bytes(data))
    return target


def write_delphes(path: str | Path, columns: dict[str, object], fatjets: object = None) -> Path:
    """The same events as a Delphes ROOT file: tree ``Delphes``, collections as Delphes writes them.

    Delphes stores each collection as a split TClonesArray: a counter ``X_size`` and leaves that
    uproot (and so coffea's DelphesSchema) names ``X/X.Field`` (coffea's own test sample
    ``tests/samples/delphes.root``, tree ``Delphes``, read with ``{path: "Delphes"}``). uproot
    cannot write split objects, so the leaves are written as flat branches with exactly those
    names, which is all the schema looks at. The candidates are dealt out round-robin to
    EFlowTrack (PT/Eta/Phi/Mass, charged pions), EFlowPhoton (ET/Eta/Phi, massless) and
    EFlowNeutralHadron (ET/Eta/Phi, massless); their masses are set to 0 in the returned
    nanoaod-style columns for photons and neutral hadrons, so both files hold the same
    four-momenta. ``fatjets``: optional jagged records pt/eta/phi/mass/tau (5 values) for
    ``FatJet``. Returns the path; ``columns["PFCands"]`` is updated in place.
    """
    pf = columns["PFCands"]
    counts = ak.num(pf, axis=1)
    local = ak.local_index(pf, axis=1)
    kind = local % 3
    mass = ak.where(kind == 0, pf.mass, 0.0)
    columns["PFCands"] = ak.zip(
        {"pt": pf.pt, "eta": pf.eta, "phi": pf.phi, "mass": ak.values_astype(mass, np.float32),
         "charge": pf.charge, "pdgId": pf.pdgId}
    )  # fmt: skip
    assert ak.all(ak.num(columns["PFCands"], axis=1) == counts)
    f32 = np.float32
    ones = np.ones(len(pf), np.int64)
    track = pf[kind == 0]
    photon = pf[kind == 1]
    hadron = pf[kind == 2]
    data = {
        "Event": ak.zip(
            {
                "Number": ak.unflatten(np.asarray(columns["event"], np.int64), ones),
                "Weight": ak.unflatten(
                    np.asarray(columns.get("weight", np.ones(len(pf))), f32), ones
                ),
            }
        ),
        "EFlowTrack": ak.zip(
            {
                "PT": track.pt,
                "Eta": track.eta,
                "Phi": track.phi,
                "Mass": ak.values_astype(track.mass, f32),
                "Charge": ak.values_astype(track.charge, np.int32),
            }
        ),
        "EFlowPhoton": ak.zip({"ET": photon.pt, "Eta": photon.eta, "Phi": photon.phi}),
        "EFlowNeutralHadron": ak.zip({"ET": hadron.pt, "Eta": hadron.eta, "Phi": hadron.phi}),
    }
    if fatjets is not None:
        data["FatJet"] = fatjets
    path = Path(path)
    with uproot.recreate(path) as handle:
        handle.mktree(
            "Delphes",
            {k: v.type.content for k, v in data.items()},
            counter_name=lambda name: f"{name}_size",
            field_name=lambda outer, inner: f"{outer}/{outer}.{inner}",
        )
        handle["Delphes"].extend(data)
    return path

"""Coffea processor: NanoAOD-like events -> dijet feature tables (one parquet file per chunk).

Per chunk: PF candidates -> anti-kT jets (``adhunt.jets``) -> trigger, >= 2 jets -> the two
leading-pT jets -> exclusive-kT N-subjettiness axes (``adhunt.substructure``) -> features
(``adhunt.dijet``). With ``jets="fatjet"`` the NanoAOD ``FatJet`` collection and its own tau
branches replace the reclustering (NanoAOD FatJets are AK8: their taus use R0 = 0.8).

The output accumulator, summed over chunks by coffea::

    {"cutflow": {dataset: {step: n_events}}, "files": [parquet paths],
     "chunks": [(dataset, file, entrystart, entrystop)], "warnings": [...], "errors": [...]}

Cutflow steps, in order (:data:`CUTFLOW_STEPS`): events read; events whose inputs are all finite
(NaN/inf momenta reject the whole event, counted and reported); trigger; >= 2 jets. Each count is
a subset of the previous one, so rejections add up exactly.

(No ``from __future__ import annotations`` here: ``adhunt.config.load_config`` needs real class
objects in ``FeatureConfig``'s field types to build the nested ``TriggerConfig`` from a file.)
"""

import logging
from dataclasses import dataclass, field
from pathlib import Path

import awkward as ak
import numpy as np
import pandas as pd
from coffea import processor
from coffea.nanoevents import PFNanoAODSchema

from adhunt.dijet import dijet_features
from adhunt.jets import ClusteredEvents, TriggerConfig, passes_trigger, to_fastjet_input
from adhunt.schema import PFCANDS_FLOAT_FIELDS, TRUTH_BRANCH
from adhunt.substructure import nsubjettiness
from adhunt.tables import chunk_filename, make_feature_frame, write_chunk

logger = logging.getLogger(__name__)

CUTFLOW_STEPS = ("events", "finite_momenta", "trigger", "two_jets")
JET_SOURCES = ("pfcands", "fatjet")
FATJET_FIELDS = ("pt", "eta", "phi", "mass", "tau1", "tau2", "tau3")
#: Radius of NanoAOD FatJets (AK8); their stored taus are normalised with it.
FATJET_RADIUS = 0.8


class FeatureInputError(Exception):
    """An input file (or chunk of it) that cannot be turned into features; the message names it."""


class QuietPFNanoAODSchema(PFNanoAODSchema):
    """PFNanoAODSchema without the warnings about cross-references to collections we do not write.

    Our files hold PFCands (and maybe FatJet) only; NanoAOD's index links to Electron, Jet, SV...
    are irrelevant, and warning about each of them on every chunk would bury real warnings.
    """

    warn_missing_crossrefs = False


@dataclass(frozen=True)
class FeatureConfig:
    """What a feature run computes. Echoed into ``features_config.json`` next to the tables."""

    jets: str = "pfcands"  # "pfcands": recluster PFCands with anti-kT; "fatjet": NanoAOD FatJet
    radius: float = 1.0  # anti-kT radius and N-subjettiness R0 (pfcands mode)
    beta: float = 1.0  # N-subjettiness angular exponent
    trigger: TriggerConfig = field(default_factory=TriggerConfig)

    def __post_init__(self) -> None:
        if self.jets not in JET_SOURCES:
            raise ValueError(f"jets must be one of {JET_SOURCES}, got {self.jets!r}")
        if not self.radius > 0:
            raise ValueError(f"radius must be positive, got {self.radius}")
        if isinstance(self.trigger, dict):  # tolerate a plain mapping from a config file
            object.__setattr__(self, "trigger", TriggerConfig(**self.trigger))

    def required_branches(self) -> tuple[str, ...]:
        """Branches an input file must have (the driver checks them before processing)."""
        event = ("run", "luminosityBlock", "event")
        if self.jets == "fatjet":
            return (*event, "nFatJet", *(f"FatJet_{f}" for f in FATJET_FIELDS))
        # PFNanoAODSchema needs PFCands_charge to build the collection.
        return (*event, "nPFCands", *(f"PFCands_{f}" for f in (*PFCANDS_FLOAT_FIELDS, "charge")))


class DijetFeatureProcessor(processor.ProcessorABC):
    """Writes each chunk's feature table to ``output_dir`` and returns cutflow + file list."""

    def __init__(
        self, config: FeatureConfig, output_dir: str | Path, skip_bad_chunks: bool = False
    ) -> None:
        self.config = config
        self.output_dir = str(Path(output_dir).resolve())
        self.skip_bad_chunks = skip_bad_chunks

    def process(self, events) -> dict:
        meta = events.metadata
        dataset, filename = meta["dataset"], meta["filename"]
        start, stop = int(meta["entrystart"]), int(meta["entrystop"])
        where = f"{filename} (dataset {dataset!r}, entries {start}-{stop})"
        chunk = (dataset, filename, start, stop)
        try:
            frame, cutflow, warnings = self._features(events, dataset, where)
            path = write_chunk(
                frame, self.output_dir, chunk_filename(dataset, filename, start, stop)
            )
        except Exception as err:
            reason = str(err) if isinstance(err, FeatureInputError) else f"{where}: {err!r}"
            if not self.skip_bad_chunks:
                raise FeatureInputError(reason) from err
            return {
                "cutflow": {},
                "files": [],
                "chunks": [],
                "warnings": [],
                "errors": [(*chunk, reason)],
            }
        return {
            "cutflow": {dataset: cutflow},
            "files": [str(path)],
            "chunks": [chunk],
            "warnings": warnings,
            "errors": [],
        }

    def postprocess(self, accumulator: dict) -> dict:
        return accumulator

    def _features(self, events, dataset: str, where: str):
        return compute_features(events, self.config, dataset, where)


def compute_features(
    events, config: FeatureConfig, dataset: str, where: str
) -> tuple[pd.DataFrame, dict[str, int], list[str]]:
    """One chunk of NanoEvents -> (feature frame, cutflow, warnings).

    The one implementation of the per-chunk selection and features: the feature processor writes
    its frame to parquet, the inference processor (``adhunt.processors.inference``) scores it, so
    both count events with the same cutflow. ``where`` names the chunk in error messages.
    """
    fields = set(events.fields)
    collection = "FatJet" if config.jets == "fatjet" else "PFCands"
    needed = FATJET_FIELDS if config.jets == "fatjet" else PFCANDS_FLOAT_FIELDS
    if collection not in fields:
        raise FeatureInputError(
            f"{where}: missing collection {collection} (branches {collection}_*)"
        )
    have = set(events[collection].fields)
    missing = [f"{collection}_{f}" for f in needed if f not in have]
    missing += [b for b in ("run", "event") if b not in fields]
    if missing:
        raise FeatureInputError(f"{where}: missing branch(es) {', '.join(missing)}")

    n_events = len(events)
    cutflow = dict.fromkeys(CUTFLOW_STEPS, 0)
    cutflow["events"] = n_events
    warnings: list[str] = []
    coll = events[collection]
    columns = {
        f: ak.materialize(coll[f]) if hasattr(ak, "materialize") else coll[f] for f in needed
    }

    finite = np.ones(n_events, dtype=bool)
    for values in columns.values():
        finite &= ak.to_numpy(ak.all(np.isfinite(values), axis=1))
    n_bad = int(n_events - finite.sum())
    if n_bad:
        # Reported by the driver: a worker's log is not where a user looks.
        warnings.append(f"{where}: {n_bad} event(s) with non-finite {collection} values rejected")
    cutflow["finite_momenta"] = int(finite.sum())
    columns = {f: v[finite] for f, v in columns.items()}
    run = ak.to_numpy(events.run)[finite]
    event = ak.to_numpy(events.event)[finite]
    if TRUTH_BRANCH in fields:
        truth = ak.to_numpy(events[TRUTH_BRANCH])[finite]
    else:
        truth = np.full(len(run), -1, dtype=np.int32)

    if config.jets == "fatjet":
        sel, jet_a, jet_b, taus_a, taus_b = _fatjets(columns, cutflow, config)
    else:
        sel, jet_a, jet_b, taus_a, taus_b = _recluster(columns, cutflow, config)
    features = dijet_features(jet_a, jet_b, taus_a, taus_b)
    frame = make_feature_frame(dataset, run[sel], event[sel], truth[sel], features)
    return frame, cutflow, warnings


def _select(jets: ak.Array, cutflow: dict, config: FeatureConfig) -> np.ndarray:
    """Trigger then >= 2 jets; fills the cutflow; returns the selected-event mask."""
    trigger = passes_trigger(jets, config.trigger)
    two_jets = trigger & (ak.to_numpy(ak.num(jets, axis=1)) >= 2)
    cutflow["trigger"] = int(trigger.sum())
    cutflow["two_jets"] = int(two_jets.sum())
    return two_jets


def _recluster(columns: dict, cutflow: dict, config: FeatureConfig):
    clustered = ClusteredEvents(to_fastjet_input(ak.zip(columns)), config.radius, "antikt")
    sel = _select(clustered.jets, cutflow, config)
    leading = clustered.leading(sel, 2)
    taus = nsubjettiness(leading.constituents, config.radius, 3, config.beta)
    taus = taus.reshape(-1, 2, 3)
    jet_a = {k: v[:, 0] for k, v in leading.jets.items()}
    jet_b = {k: v[:, 1] for k, v in leading.jets.items()}
    return sel, jet_a, jet_b, taus[:, 0], taus[:, 1]


def _fatjets(columns: dict, cutflow: dict, config: FeatureConfig):
    fatjets = ak.zip(columns)
    fatjets = fatjets[ak.argsort(fatjets.pt, axis=1, ascending=False)]
    p4 = to_fastjet_input(fatjets)
    jets = ak.zip({k: p4[k] for k in ("px", "py", "pz", "E")}, with_name="Momentum4D")
    sel = _select(jets, cutflow, config)
    jets, fatjets = jets[sel], fatjets[sel]
    jet_a = {k: ak.to_numpy(jets[k][:, 0]) for k in ("px", "py", "pz", "E")}
    jet_b = {k: ak.to_numpy(jets[k][:, 1]) for k in ("px", "py", "pz", "E")}

    def taus(i: int) -> np.ndarray:
        return np.stack([ak.to_numpy(fatjets[f"tau{n}"][:, i]) for n in (1, 2, 3)], axis=1)

    return sel, jet_a, jet_b, taus(0), taus(1)

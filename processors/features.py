"""Coffea processor: NanoAOD-like events -> dijet feature tables (one parquet file per chunk).

Per chunk: PF candidates -> anti-kT jets (``adhunt.jets``) -> trigger, >= 2 jets -> the two
leading-pT jets -> exclusive-kT N-subjettiness axes (``adhunt.substructure``) -> features
(``adhunt.dijet``). With ``jets="fatjet"`` the NanoAOD ``FatJet`` collection and its own tau
branches replace the reclustering (NanoAOD FatJets are AK8: their taus use R0 = 0.8).

The output accumulator, summed over chunks by coffea::

    {"cutflow": {dataset: {step: n_events}}, "files": [parquet paths],
     "chunks": [(dataset, file, entrystart, entrystop)], "warnings": [...], "errors": [...]}

Cutflow steps, in order (:data:`CUTFLOW_STEPS`): events read; golden JSON; HLT bits; events whose
inputs are all finite (NaN/inf momenta reject the whole event, counted and reported); events
whose candidates (fat jets) are all physical (pT > 0, mass not below float rounding of zero, see
:func:`adhunt.inputs.physical_events`; rejected, counted and reported the same way); trigger;
>= 2 jets. Each count is a subset of the previous one, so rejections add up exactly.

(No ``from __future__ import annotations`` here: ``adhunt.config.load_config`` needs real class
objects in ``FeatureConfig``'s field types to build the nested ``TriggerConfig`` from a file.)
"""

import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path

import awkward as ak
import numpy as np
import pandas as pd
from coffea import processor
from coffea.nanoevents import DelphesSchema, PFNanoAODSchema

from adhunt.dijet import by_mass_order, dijet_features, jet_masses, leading_is_lighter
from adhunt.images import jet_images
from adhunt.inputs import (
    DEFAULT_TREES,
    KINEMATIC_FIELDS,
    MASS_ROUNDING,
    SCHEMAS,
    TAUS,
    DatasetWeights,
    InputError,
    candidates,
    delphes_candidates,
    event_weights,
    hlt_branch,
    hlt_mask,
    load_lumi_mask,
    lumi_mask,
    missing_branches,
    physical_events,
)
from adhunt.jets import (
    ClusteredEvents,
    LeadingJets,
    TriggerConfig,
    passes_trigger,
    to_fastjet_input,
)
from adhunt.processors.chunklog import events_logging
from adhunt.schema import (
    EXTENDED_BETAS,
    EXTENDED_N_MAX,
    IMAGE_COLUMNS,
    IMAGE_SUFFIX,
    TRUTH_BRANCH,
    beta_tag,
    extended_columns,
)
from adhunt.substructure import (
    SOFTDROP_BETA,
    SOFTDROP_ZCUT,
    groomed_observables,
    nsubjettiness,
    nsubjettiness_betas,
    safe_ratio,
)
from adhunt.tables import chunk_filename, make_feature_frame, write_chunk, write_chunk_images

logger = logging.getLogger(__name__)

CUTFLOW_STEPS = (
    "events",
    "lumi_mask",
    "hlt",
    "finite_momenta",
    "physical_momenta",
    "trigger",
    "two_jets",
)
JET_SOURCES = ("pfcands", "fatjet")
JET_MASSES = ("mass", "msoftdrop")
FATJET_FIELDS = ("pt", "eta", "phi", "mass", "tau1", "tau2", "tau3")
#: Radius of NanoAOD FatJets (AK8); their stored taus are normalised with it.
FATJET_RADIUS = 0.8
#: Anti-kT radius of the PF-candidate reclustering when none is given (LHC Olympics R&D).
DEFAULT_RADIUS = 1.0


class FeatureInputError(Exception):
    """An input file (or chunk of it) that cannot be turned into features; the message names it."""


class FeatureOutputError(RuntimeError):
    """A feature table that cannot be written: the output's fault, never a reason to skip the
    input (not an OSError, so coffea's skip-bad-files never swallows it)."""


class QuietPFNanoAODSchema(PFNanoAODSchema):
    """PFNanoAODSchema without the warnings about cross-references to collections we do not write.

    Our files hold PFCands (and maybe FatJet) only; NanoAOD's index links to Electron, Jet, SV...
    are irrelevant, and warning about each of them on every chunk would bury real warnings.
    """

    warn_missing_crossrefs = False


class QuietDelphesSchema(DelphesSchema):
    """DelphesSchema without cross-reference warnings (same reason as QuietPFNanoAODSchema)."""

    warn_missing_crossrefs = False


#: NanoEvents schema class of each ``FeatureConfig.schema``.
SCHEMA_CLASSES = {"nanoaod": QuietPFNanoAODSchema, "delphes": QuietDelphesSchema}


@dataclass(frozen=True)
class FeatureConfig:
    """What a feature run computes and selects. Echoed into ``features_config.json``.

    Selection, in cutflow order: golden-JSON ``lumi_mask`` (CMS data), OR of the ``hlt`` bits,
    finite inputs, the jet ``trigger`` (LHC Olympics: a jet above ``trigger.pt_min``; off with
    ``apply_trigger=False``), >= 2 jets. ``radius`` is the reclustering radius (pfcands); in
    fatjet mode it is the collection's own (NanoAOD AK8: 0.8, and no other value is accepted).
    ``jet_abs_eta_max``/``jet_id``/``jet_mass`` apply to fat jets: the jets failing them are
    removed before the leading two are taken. ``luminosity`` (pb^-1) turns on the normalisation
    of simulation to cross-section x luminosity (``xsec`` in pb from the fileset metadata).
    """

    schema: str = "nanoaod"  # "nanoaod" (CMS NanoAOD / PFNanoAOD) | "delphes"
    jets: str = "pfcands"  # "pfcands": recluster candidates with anti-kT; "fatjet": stored fat jets
    radius: float | None = None  # anti-kT radius and tau_N R0; None: 1.0 (pfcands), 0.8 (fatjet)
    beta: float = 1.0  # N-subjettiness angular exponent
    trigger: TriggerConfig = field(default_factory=TriggerConfig)
    apply_trigger: bool = True  # False: no jet-pT trigger (e.g. when HLT bits select instead)
    hlt: tuple[str, ...] = ()  # OR of these HLT bits (names with or without "HLT_")
    puppi: bool = True  # weight candidate four-momenta by PFCands_puppiWeight when present
    jet_abs_eta_max: float | None = None  # fatjet mode: drop fat jets with |eta| >= this
    jet_id: int = 0  # fatjet mode: required FatJet_jetId bits (2: tight, 6: tight + lepton veto)
    jet_mass: str = "mass"  # fatjet mode: "mass" | "msoftdrop" as the jet mass mj
    lumi_mask: str | None = None  # CMS golden JSON applied to (run, luminosityBlock)
    luminosity: float | None = None  # pb^-1: normalise simulation to xsec x luminosity
    # Opt-in jet representations (pfcands only); the default pass computes none of them.
    extended: bool = False  # extended substructure columns (adhunt.schema.extended_columns)
    softdrop_zcut: float = SOFTDROP_ZCUT  # extended: soft-drop z_cut
    softdrop_beta: float = SOFTDROP_BETA  # extended: soft-drop angular exponent
    images: bool = False  # jet images of both jets, one .images.npy per chunk (adhunt.images)
    image_size: int = 32  # images: pixels per side, over |u|, |v| < radius

    def __post_init__(self) -> None:
        if self.schema not in SCHEMAS:
            raise ValueError(f"schema must be one of {SCHEMAS}, got {self.schema!r}")
        if self.jets not in JET_SOURCES:
            raise ValueError(f"jets must be one of {JET_SOURCES}, got {self.jets!r}")
        if isinstance(self.trigger, dict):  # tolerate a plain mapping from a config file
            object.__setattr__(self, "trigger", TriggerConfig(**self.trigger))
        if isinstance(self.hlt, str):
            object.__setattr__(self, "hlt", tuple(p for p in self.hlt.split(",") if p.strip()))
        object.__setattr__(self, "hlt", tuple(hlt_branch(p) for p in self.hlt))
        if self.jets == "fatjet" and self.schema == "nanoaod":
            if self.radius is not None and self.radius != FATJET_RADIUS:
                raise ValueError(
                    f"radius {self.radius} cannot be used with jets='fatjet': NanoAOD FatJets are "
                    f"AK8 (R = {FATJET_RADIUS}) and their taus were computed with R0 = 0.8"
                )
            object.__setattr__(self, "radius", FATJET_RADIUS)
        elif self.radius is None:
            default = FATJET_RADIUS if self.jets == "fatjet" else DEFAULT_RADIUS
            object.__setattr__(self, "radius", default)
        if not self.radius > 0:
            raise ValueError(f"radius must be positive, got {self.radius}")
        if self.jet_mass not in JET_MASSES:
            raise ValueError(f"jet_mass must be one of {JET_MASSES}, got {self.jet_mass!r}")
        fat_only = {
            "jet_abs_eta_max": self.jet_abs_eta_max is not None,
            "jet_id": self.jet_id != 0,
            "jet_mass": self.jet_mass != "mass",
        }
        if self.jets != "fatjet" and any(fat_only.values()):
            used = [k for k, v in fat_only.items() if v]
            raise ValueError(f"{', '.join(used)} only apply to jets='fatjet'")
        if self.schema == "delphes" and (self.jet_id or self.jet_mass != "mass"):
            raise ValueError("jet_id and jet_mass='msoftdrop' need NanoAOD FatJet branches")
        if self.jet_abs_eta_max is not None and not self.jet_abs_eta_max > 0:
            raise ValueError(f"jet_abs_eta_max must be positive, got {self.jet_abs_eta_max}")
        if self.jet_id < 0:
            raise ValueError(f"jet_id must be a non-negative bit mask, got {self.jet_id}")
        if self.luminosity is not None and not self.luminosity > 0:
            raise ValueError(f"luminosity must be positive (pb^-1), got {self.luminosity}")
        if (self.images or self.extended) and self.jets != "pfcands":
            raise ValueError(
                "images and extended substructure need jet constituents: use jets='pfcands' "
                f"(got jets={self.jets!r})"
            )
        if self.image_size < 2:
            raise ValueError(f"image_size must be >= 2 pixels, got {self.image_size}")
        if not 0 < self.softdrop_zcut < 1 or self.softdrop_beta < 0:
            raise ValueError(
                f"soft drop needs 0 < z_cut < 1 and beta >= 0, got z_cut={self.softdrop_zcut}, "
                f"beta={self.softdrop_beta}"
            )

    def extra_columns(self) -> tuple[str, ...]:
        """Columns written after FEATURE_COLUMNS (declared in ``features_config.json``)."""
        extra: tuple[str, ...] = ()
        if self.extended:
            extra += extended_columns()
        if self.images:
            extra += IMAGE_COLUMNS
        return extra

    def image_spec(self) -> dict | None:
        """What ``features_config.json`` records about the images (None: no images)."""
        if not self.images:
            return None
        return {
            "size": self.image_size,
            "radius": self.radius,
            "shape": ["event", "jet (0: j1, 1: j2)", "v (principal axis)", "u"],
            "file_suffix": IMAGE_SUFFIX,
        }

    @property
    def tree(self) -> str:
        """The tree read when the fileset does not name one."""
        return DEFAULT_TREES[self.schema]

    @property
    def schema_class(self) -> type:
        """The NanoEvents schema that reads this configuration's files."""
        return SCHEMA_CLASSES[self.schema]

    def extra_branches(self) -> tuple[str, ...]:
        """Branches the options need beyond the jets' own (HLT bits, jet ID, soft-drop mass)."""
        extra = list(self.hlt)
        if self.jets == "fatjet" and self.schema == "nanoaod":
            if self.jet_id:
                extra.append("FatJet_jetId")
            if self.jet_mass == "msoftdrop":
                extra.append("FatJet_msoftdrop")
        return tuple(extra)

    def missing_branches(self, keys) -> str | None:
        """Why a file with these branches cannot be processed (None: it can)."""
        return missing_branches(keys, self.schema, self.jets, self.extra_branches())

    def required_branches(self) -> tuple[str, ...]:
        """Branches a PFCands-style NanoAOD input must have (see :meth:`missing_branches`)."""
        event = ("run", "luminosityBlock", "event")
        if self.jets == "fatjet":
            return (*event, "nFatJet", *(f"FatJet_{f}" for f in FATJET_FIELDS))
        return (*event, "nPFCands", *(f"PFCands_{f}" for f in KINEMATIC_FIELDS))


class DijetFeatureProcessor(processor.ProcessorABC):
    """Writes each chunk's feature table to ``output_dir`` and returns cutflow + file list.

    ``weights`` maps dataset names to how their events are weighted (data / simulation and the
    normalisation scale, decided by the driver from the fileset); datasets not in it get
    ``DatasetWeights()`` (genWeight when the file has it, else 1).
    """

    def __init__(
        self,
        config: FeatureConfig,
        output_dir: str | Path,
        skip_bad_chunks: bool = False,
        weights: dict[str, DatasetWeights] | None = None,
        stamps: dict[str, dict] | None = None,
    ) -> None:
        self.config = config
        self.output_dir = str(Path(output_dir).resolve())
        self.skip_bad_chunks = skip_bad_chunks
        self.weights = dict(weights or {})
        # {"fingerprint": {dataset: sha}, "inputs": {file: identity}} (``adhunt.manifest``):
        # stamped into each chunk with its cutflow, so a resumed run knows what is done.
        self.stamps = stamps or {"fingerprint": {}, "inputs": {}}

    def process(self, events) -> dict:
        """One chunk; its log records name it (``[dataset file:start-stop]``, see
        :mod:`adhunt.processors.chunklog`)."""
        with events_logging(events):
            return self._process(events)

    def _process(self, events) -> dict:
        meta = events.metadata
        dataset, filename = meta["dataset"], meta["filename"]
        start, stop = int(meta["entrystart"]), int(meta["entrystop"])
        where = f"{filename} (dataset {dataset!r}, entries {start}-{stop})"
        chunk = (dataset, filename, start, stop)
        try:
            result = compute_chunk(events, self.config, dataset, where, self.weights.get(dataset))
            frame, cutflow, warnings = result.frame, result.cutflow, result.warnings
            relative = chunk_filename(dataset, filename, start, stop)
        except Exception as err:
            reason = str(err) if isinstance(err, FeatureInputError) else f"{where}: {err!r}"
            if not self.skip_bad_chunks:
                raise FeatureInputError(reason) from err
            logger.info("chunk skipped (--skip-bad-files): %s", reason)
            return {
                "cutflow": {},
                "files": [],
                "chunks": [],
                "warnings": [],
                "errors": [(*chunk, reason)],
            }
        try:
            if result.images is not None:  # before the table: the table marks the chunk done
                write_chunk_images(result.images, self.output_dir, relative)
            stamp = {
                "fingerprint": self.stamps["fingerprint"].get(dataset),
                "input": self.stamps["inputs"].get(filename),
                "cutflow": cutflow,
                "warnings": warnings,
            }
            path = write_chunk(frame, self.output_dir, relative, stamp)
        except Exception as err:  # OSError, or pyarrow's own errors on a full disk
            raise FeatureOutputError(
                f"cannot write the feature table {Path(self.output_dir) / relative}: {err}"
            ) from None
        return {
            "cutflow": {dataset: cutflow},
            "files": [str(path)],
            "chunks": [chunk],
            "warnings": warnings,
            "errors": [],
        }

    def postprocess(self, accumulator: dict) -> dict:
        return accumulator


_LUMI_MASKS: dict[str, object] = {}


def _lumi_mask(path: str):
    """The LumiMask of a golden JSON, parsed once per process and content (workers reuse it
    across chunks; a file rewritten between runs is parsed again)."""
    try:
        key = hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError as err:
        raise InputError(f"lumi mask (golden JSON) cannot be read: {path} ({err})") from err
    if key not in _LUMI_MASKS:
        _LUMI_MASKS[key] = load_lumi_mask(path)
    return _LUMI_MASKS[key]


@dataclass(frozen=True)
class ChunkFeatures:
    """One chunk's feature table, cutflow, warnings and (with ``images``) its jet images,
    float32 (rows of ``frame``, 2, S, S), channel 0 = j1 (the lighter jet)."""

    frame: pd.DataFrame
    cutflow: dict[str, int]
    warnings: list[str]
    images: np.ndarray | None = None


def compute_features(
    events,
    config: FeatureConfig,
    dataset: str,
    where: str,
    weights: DatasetWeights | None = None,
) -> tuple[pd.DataFrame, dict[str, int], list[str]]:
    """One chunk of NanoEvents -> (feature frame, cutflow, warnings).

    The one implementation of the per-chunk selection and features: the feature processor writes
    its frame to parquet, the inference processor (``adhunt.processors.inference``) scores it, so
    both count events with the same cutflow. ``where`` names the chunk in error messages.
    """
    result = compute_chunk(events, config, dataset, where, weights)
    return result.frame, result.cutflow, result.warnings


def compute_chunk(
    events,
    config: FeatureConfig,
    dataset: str,
    where: str,
    weights: DatasetWeights | None = None,
) -> ChunkFeatures:
    """:func:`compute_features` plus the jet images when ``config.images``."""
    try:
        return _compute(events, config, dataset, where, weights or DatasetWeights())
    except InputError as err:
        raise FeatureInputError(f"{where}: {err}") from err


def _compute(events, config: FeatureConfig, dataset: str, where: str, weights: DatasetWeights):
    fields = set(events.fields)
    n_events = len(events)
    cutflow = dict.fromkeys(CUTFLOW_STEPS, 0)
    cutflow["events"] = n_events
    warnings: list[str] = []

    run, lumi, event = _event_ids(events, config)
    weight = event_weights(events, weights, config.schema)

    keep = np.ones(n_events, dtype=bool)
    if config.lumi_mask is not None:
        keep &= lumi_mask(_lumi_mask(config.lumi_mask), run, lumi)
    cutflow["lumi_mask"] = int(keep.sum())
    keep &= hlt_mask(events, config.hlt)
    cutflow["hlt"] = int(keep.sum())

    if config.jets == "fatjet":
        columns, collection = _fatjet_columns(events, config)
    elif config.schema == "delphes":
        parts = delphes_candidates(events)
        columns, collection = {f: parts[f] for f in KINEMATIC_FIELDS}, "EFlow"
    else:
        parts, collection, _ = candidates(events, config.puppi)
        columns = {f: parts[f] for f in KINEMATIC_FIELDS}

    finite = np.isfinite(weight)
    for values in columns.values():
        finite &= _all_finite(values)
    n_bad = int((keep & ~finite).sum())
    if n_bad:
        # Reported by the driver: a worker's log is not where a user looks.
        warnings.append(f"{where}: {n_bad} event(s) with non-finite {collection} values rejected")
    keep &= finite
    cutflow["finite_momenta"] = int(keep.sum())
    physical = physical_events(columns["pt"], columns["eta"], columns["mass"])
    n_bad = int((keep & ~physical).sum())
    if n_bad:
        warnings.append(
            f"{where}: {n_bad} event(s) with non-physical {collection} momenta (pT <= 0 or "
            f"mass < -{MASS_ROUNDING:g} x |p|) rejected"
        )
    keep &= physical
    cutflow["physical_momenta"] = int(keep.sum())
    if not keep.all():  # (a mask of all True would copy every candidate for nothing)
        columns = {f: v[keep] for f, v in columns.items()}
    if TRUTH_BRANCH in fields:
        truth = ak.to_numpy(events[TRUTH_BRANCH])[keep]
    else:
        truth = np.full(int(keep.sum()), -1, dtype=np.int32)
    run, lumi, event, weight = run[keep], lumi[keep], event[keep], weight[keep]

    extra, images = None, None
    if config.jets == "fatjet":
        sel, jet_a, jet_b, taus_a, taus_b, masses = _fatjets(columns, cutflow, config)
        if masses is not None:
            # rounding leaves |msoftdrop| ~ 1e-5 GeV below zero; the sentinel is -1
            n_sentinel = sum(int(np.sum(m < -0.01)) for m in masses)
            if n_sentinel:  # NanoAOD's -1: soft drop found no subjets (see adhunt.inputs)
                warnings.append(
                    f"{where}: {n_sentinel} selected jet(s) with negative FatJet_msoftdrop "
                    "(NanoAOD's -1: no soft-drop subjets); their mj is that value"
                )
    else:
        sel, jet_a, jet_b, taus_a, taus_b, extra, images = _recluster(columns, cutflow, config)
        masses = None
    features = dijet_features(jet_a, jet_b, taus_a, taus_b, masses=masses)
    frame = make_feature_frame(
        dataset,
        run[sel],
        event[sel],
        truth[sel],
        features,
        luminosity_block=lumi[sel],
        weight=weight[sel],
        extra=extra,
    )
    return ChunkFeatures(frame, cutflow, warnings, images)


def _all_finite(values: ak.Array) -> np.ndarray:
    """Per event: are all of its (event, object) ``values`` finite? On the flat buffer, with the
    per-event reduction only when something is not finite (ak.all(np.isfinite) costs ~10% of
    the whole default pass)."""
    flat = ak.to_numpy(ak.flatten(values, axis=1))
    bad = ~np.isfinite(flat)
    counts = ak.to_numpy(ak.num(values, axis=1))
    if not bad.any():
        return np.ones(len(counts), dtype=bool)
    event_of = np.repeat(np.arange(len(counts)), counts)
    return np.bincount(event_of[bad], minlength=len(counts)) == 0


def _event_ids(events, config: FeatureConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(run, luminosityBlock, event) numbers; Delphes has only an event number (run/lumi 0)."""
    n = len(events)
    if config.schema == "delphes":
        if config.lumi_mask is not None:
            raise InputError("a lumi mask needs CMS run/luminosityBlock numbers, not Delphes")
        if "Event" in events.fields and "Number" in events.Event.fields:
            number = ak.to_numpy(ak.flatten(events.Event.Number, axis=None)).astype(np.int64)
        else:
            number = np.arange(n, dtype=np.int64)
        return np.zeros(n, np.int64), np.zeros(n, np.int64), number
    missing = [b for b in ("run", "luminosityBlock", "event") if b not in events.fields]
    if missing:
        raise InputError(f"missing branch(es) {', '.join(missing)}")
    return tuple(
        ak.to_numpy(events[b]).astype(np.int64) for b in ("run", "luminosityBlock", "event")
    )


def _fatjet_columns(events, config: FeatureConfig) -> tuple[dict, str]:
    """Fat-jet kinematics, taus and (for the options) soft-drop mass and jet ID, per event."""
    if "FatJet" not in events.fields:
        expected = "FatJet/FatJet.*" if config.schema == "delphes" else "FatJet_*"
        raise InputError(f"missing collection FatJet (branches {expected})")
    coll = events.FatJet
    have = set(coll.fields)
    if config.schema == "delphes":
        needed = {f: f for f in KINEMATIC_FIELDS}
        if "Tau_5" not in have:
            raise InputError(f"Delphes FatJet has no Tau[5] branch (fields {sorted(have)})")
        columns = {f: ak.values_astype(_mat(coll[f]), np.float64) for f in needed}
        tau = _mat(coll["Tau_5"])
        for i, name in enumerate(TAUS):
            columns[name] = ak.values_astype(tau[:, :, i], np.float64)
        return columns, "FatJet"
    wanted = list(FATJET_FIELDS)
    if config.jet_mass == "msoftdrop":
        wanted.append("msoftdrop")
    if config.jet_id:
        wanted.append("jetId")
    missing = [f"FatJet_{f}" for f in wanted if f not in have]
    if missing:
        raise InputError(f"missing branch(es) {', '.join(missing)}")
    return {f: _mat(coll[f]) for f in wanted}, "FatJet"


def _mat(array):
    return ak.materialize(array) if hasattr(ak, "materialize") else array


def _select(jets: ak.Array, cutflow: dict, config: FeatureConfig, clustered=None) -> np.ndarray:
    """Trigger then >= 2 jets; fills the cutflow; returns the selected-event mask.

    ``clustered``: the ClusteredEvents behind ``jets``, whose numpy trigger gives the same mask.
    """
    if config.apply_trigger and clustered is not None:
        trigger = clustered.passes_trigger(config.trigger)
    elif config.apply_trigger:
        trigger = passes_trigger(jets, config.trigger)
    else:
        trigger = np.ones(len(jets), dtype=bool)
    two_jets = trigger & (ak.to_numpy(ak.num(jets, axis=1)) >= 2)
    cutflow["trigger"] = int(trigger.sum())
    cutflow["two_jets"] = int(two_jets.sum())
    return two_jets


#: Events per fastjet cluster sequence. fastjet keeps every event's clustering history (~80 kB
#: per event), so a chunk is clustered in batches and only the leading jets' constituents are
#: kept: peak memory then grows with the chunk by ~30 kB per event instead of ~110 kB.
CLUSTER_BATCH = 5000


def _leading_jets(columns: dict, cutflow: dict, config: FeatureConfig):
    """(selected-event mask, LeadingJets) of anti-kT jets, clustered CLUSTER_BATCH events at a
    time (events are clustered independently: the same jets as one sequence over the chunk)."""
    inputs = to_fastjet_input(ak.zip(columns))
    sels, parts = [], []
    for start in range(0, max(len(inputs), 1), CLUSTER_BATCH):
        clustered = ClusteredEvents(inputs[start : start + CLUSTER_BATCH], config.radius, "antikt")
        counts: dict[str, int] = {}
        sels.append(_select(clustered.jets, counts, config, clustered))
        parts.append(clustered.leading(sels[-1], 2))
        del clustered  # its cluster sequences are the bulk of the memory
        for step, n in counts.items():
            cutflow[step] = cutflow.get(step, 0) + n if start else n
    if len(parts) == 1:
        return sels[0], parts[0]
    jets = {k: np.concatenate([p.jets[k] for p in parts]) for k in parts[0].jets}
    constituents = ak.to_packed(ak.concatenate([p.constituents for p in parts], axis=0))
    return np.concatenate(sels), LeadingJets(jets, constituents)


def _recluster(columns: dict, cutflow: dict, config: FeatureConfig):
    sel, leading = _leading_jets(columns, cutflow, config)
    jet_a = {k: v[:, 0] for k, v in leading.jets.items()}
    jet_b = {k: v[:, 1] for k, v in leading.jets.items()}
    if not (config.extended or config.images):  # the default pass: nothing more than before
        taus = nsubjettiness(leading.constituents, config.radius, 3, config.beta)
        taus = taus.reshape(-1, 2, 3)
        return sel, jet_a, jet_b, taus[:, 0], taus[:, 1], None, None
    a_is_light = leading_is_lighter(*jet_masses(jet_a, jet_b))
    extra: dict[str, np.ndarray] = {}
    images = None
    if config.extended:
        betas = tuple(dict.fromkeys((config.beta, *EXTENDED_BETAS)))  # one kT reclustering
        all_taus = nsubjettiness_betas(leading.constituents, config.radius, EXTENDED_N_MAX, betas)
        taus = all_taus[:, 0, :3].reshape(-1, 2, 3)
        extra.update(_extended_columns(leading, all_taus, betas, a_is_light, config))
    else:
        taus = nsubjettiness(leading.constituents, config.radius, 3, config.beta)
        taus = taus.reshape(-1, 2, 3)
    if config.images:
        jets = jet_images(leading.constituents, config.radius, config.image_size)
        size = config.image_size
        images = by_mass_order(jets.images.reshape(-1, 2, size, size), a_is_light)
        pt_sum = by_mass_order(jets.pt_sum.reshape(-1, 2), a_is_light)
        outside = by_mass_order(jets.outside.reshape(-1, 2), a_is_light)
        extra.update(
            {
                "image_pt_j1": pt_sum[:, 0],
                "image_pt_j2": pt_sum[:, 1],
                "image_outside_j1": outside[:, 0],
                "image_outside_j2": outside[:, 1],
            }
        )
    return sel, jet_a, jet_b, taus[:, 0], taus[:, 1], extra, images


def _extended_columns(leading, all_taus, betas, a_is_light, config) -> dict[str, np.ndarray]:
    """The extended substructure set (``adhunt.schema.extended_columns``), j1/j2 by mass."""
    n_jets = len(leading.constituents)
    out: dict[str, np.ndarray] = {}
    per_jet: dict[str, np.ndarray] = {}
    for beta in EXTENDED_BETAS:
        tag, taus = beta_tag(beta), all_taus[:, betas.index(beta), :]
        for n in range(1, EXTENDED_N_MAX + 1):
            per_jet[f"tau{n}_b{tag}"] = taus[:, n - 1]
        for n in range(2, EXTENDED_N_MAX + 1):
            per_jet[f"tau{n}{n - 1}_b{tag}"] = safe_ratio(taus[:, n - 1], taus[:, n - 2])
    groomed = groomed_observables(
        leading.constituents, config.radius, config.softdrop_zcut, config.softdrop_beta
    )
    per_jet["msd"], per_jet["d2"] = groomed["msd"], groomed["d2"]
    counts = ak.to_numpy(ak.num(leading.constituents, axis=1)).astype(np.int64)
    per_jet["nconst"] = counts if n_jets else np.zeros(0, np.int64)
    for name, values in per_jet.items():
        ordered = by_mass_order(np.asarray(values).reshape(-1, 2), a_is_light)
        out[f"{name}_j1"], out[f"{name}_j2"] = ordered[:, 0], ordered[:, 1]
    return {name: out[name] for name in extended_columns()}


def _fatjets(columns: dict, cutflow: dict, config: FeatureConfig):
    fatjets = ak.zip(columns)
    good = ak.ones_like(fatjets.pt, dtype=bool)
    if config.jet_abs_eta_max is not None:
        good = good & (abs(fatjets.eta) < config.jet_abs_eta_max)
    if config.jet_id:
        good = good & ((fatjets.jetId & config.jet_id) == config.jet_id)
    fatjets = fatjets[good]
    fatjets = fatjets[ak.argsort(fatjets.pt, axis=1, ascending=False)]
    p4 = to_fastjet_input(fatjets)
    jets = ak.zip({k: p4[k] for k in ("px", "py", "pz", "E")}, with_name="Momentum4D")
    sel = _select(jets, cutflow, config)
    jets, fatjets = jets[sel], fatjets[sel]
    jet_a = {k: ak.to_numpy(jets[k][:, 0]) for k in ("px", "py", "pz", "E")}
    jet_b = {k: ak.to_numpy(jets[k][:, 1]) for k in ("px", "py", "pz", "E")}

    def taus(i: int) -> np.ndarray:
        return np.stack([ak.to_numpy(fatjets[f"tau{n}"][:, i]) for n in (1, 2, 3)], axis=1)

    masses = None
    if config.jet_mass == "msoftdrop":
        masses = tuple(ak.to_numpy(fatjets.msoftdrop[:, i]).astype(np.float64) for i in (0, 1))
    return sel, jet_a, jet_b, taus(0), taus(1), masses

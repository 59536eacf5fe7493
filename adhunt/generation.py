"""Pythia 8 event generation: QCD dijets and W' -> X Y -> (qq)(qq), triggered, to NanoAOD-like ROOT.

Why this shape:

* The unit of work is a *batch* of written events whose Pythia and detector seeds are derived from
  (seed, process, batch index) only. Workers just pick batches up, so the files are identical
  whatever ``workers`` is, and a batch's first events do not depend on how many events it holds.
* The LHCO trigger (``adhunt.jets.cluster`` + ``adhunt.jets.passes_trigger``, the same code path the
  analysis uses) is applied at generation on the float32 values that are written, so every event on
  disk passes it when re-clustered and no disk is spent on events that never could.
* pythia8mc hands out particles one object at a time, so extraction is the Python hot spot: one
  ``event.particles()`` call, C-level ``map`` over unbound methods into ``np.fromiter``, and
  per-species quantities (charge, visibility) looked up once per distinct pdgId.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.metadata
import itertools
import logging
import math
import multiprocessing
import re
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import awkward as ak
import numpy as np

from adhunt.config import config_from_dict, config_to_dict
from adhunt.detector import DetectorConfig, apply_detector
from adhunt.jets import TriggerConfig, cluster, passes_trigger
from adhunt.rootio import PFCANDS_TYPES, fileset_entry, make_events, write_events, write_fileset

log = logging.getLogger(__name__)

PROCESSES = ("qcd", "wprime")
#: Leading digit of the ``run`` branch per process; see :func:`run_number`.
RUN_NUMBER = {"qcd": 1, "wprime": 2}
TRUTH_LABEL = {"qcd": 0, "wprime": 1}


def run_number(process: str, seed: int) -> int:
    """``run`` of a generated sample: process digit x 10^6 + seed mod 10^6 (fits NanoAOD's uint32).

    Event numbers restart at 1 in every sample, and k-fold splits, injection and duplicate checks
    identify events by (run, event): two samples of one process with different seeds (data and an
    IAD reference, say) must therefore differ in ``run`` for their events to stay distinct.
    """
    return RUN_NUMBER[process] * 1_000_000 + int(seed) % 1_000_000


#: Pythia's ``Random:seed`` must lie in 1..900000000.
PYTHIA_SEED_MAX = 900_000_000
FILESET_NAME = "fileset.json"


@dataclass(frozen=True)
class GenerationConfig:
    """Everything that determines a generated sample (energies and masses in GeV).

    ``n_events`` counts events written, i.e. after the trigger. MPI is off by default: measured
    here it cuts the QCD rate by ~3x (see ``benchmarks/bench_generation.py``), more than the
    factor 2 we accept for realism; switch it on with ``mpi=True``.
    """

    process: str = "qcd"
    n_events: int = 1000
    seed: int = 1
    sqrt_s: float = 13000.0
    pthat_min: float = 1000.0
    m_wprime: float = 3500.0
    m_x: float = 500.0
    m_y: float = 100.0
    mpi: bool = False
    detector: DetectorConfig = field(default_factory=DetectorConfig)
    trigger: TriggerConfig = field(default_factory=TriggerConfig)
    jet_radius: float = 1.0
    events_per_file: int = 50_000
    batch_size: int = 1000
    #: give up when fewer than one event in this many passes the trigger (a misconfiguration).
    max_trials_per_event: int = 500

    def __post_init__(self) -> None:
        # Nested sections arrive as dicts from YAML/TOML (adhunt.config.load_config): build them here.
        for name, cls in (("detector", DetectorConfig), ("trigger", TriggerConfig)):
            value = getattr(self, name)
            if isinstance(value, dict):
                object.__setattr__(self, name, config_from_dict(cls, value))
            elif not isinstance(value, cls):
                raise ValueError(f"{name} must be a {cls.__name__}, got {type(value).__name__}")
        if self.process not in PROCESSES:
            raise ValueError(
                f"unknown process {self.process!r}; choose from {', '.join(PROCESSES)}"
            )
        for name in ("n_events", "events_per_file", "batch_size", "max_trials_per_event"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if (
            isinstance(self.seed, bool)
            or not isinstance(self.seed, int | np.integer)
            or self.seed < 0
        ):
            raise ValueError(f"seed must be a non-negative integer, got {self.seed!r}")
        for name in ("sqrt_s", "m_wprime", "m_x", "m_y", "jet_radius"):
            value = getattr(self, name)
            if not math.isfinite(value) or value <= 0:
                raise ValueError(f"{name} must be a positive number, got {value!r}")
        if not math.isfinite(self.pthat_min) or self.pthat_min < 0:
            raise ValueError(f"pthat_min must be >= 0, got {self.pthat_min!r}")
        if self.pthat_min >= self.sqrt_s / 2:
            raise ValueError(
                f"pthat_min ({self.pthat_min}) must be below sqrt_s/2 ({self.sqrt_s / 2})"
            )
        if self.m_x + self.m_y >= self.m_wprime:
            raise ValueError(
                f"m_x + m_y ({self.m_x} + {self.m_y}) must be below m_wprime ({self.m_wprime}) "
                "for W' -> X Y to be open"
            )
        if self.m_wprime >= self.sqrt_s:
            raise ValueError(f"m_wprime ({self.m_wprime}) must be below sqrt_s ({self.sqrt_s})")

    @property
    def effective_batch_size(self) -> int:
        """Batches never straddle files."""
        return min(self.batch_size, self.events_per_file)

    @property
    def n_files(self) -> int:
        return math.ceil(self.n_events / self.events_per_file)


@dataclass(frozen=True)
class BatchSpec:
    """Where one batch of written events sits in the sample."""

    index: int
    file_index: int
    first_event: int  # 0-based index of its first event within the process sample
    n_events: int


@dataclass(frozen=True)
class BatchStats:
    """Bookkeeping of one batch: how many events Pythia made to get the triggered ones."""

    n_written: int
    n_generated: int
    n_failed: int
    sigma_gen_mb: float
    n_particles: int


def plan_batches(config: GenerationConfig) -> list[BatchSpec]:
    """All batches of a sample, in file order. Depends on n_events, events_per_file and batch_size."""
    size = config.effective_batch_size
    per_file = math.ceil(config.events_per_file / size)
    specs = []
    for file_index in range(config.n_files):
        file_first = file_index * config.events_per_file
        file_n = min(config.events_per_file, config.n_events - file_first)
        for b in range(math.ceil(file_n / size)):
            first = file_first + b * size
            specs.append(
                BatchSpec(
                    index=file_index * per_file + b,
                    file_index=file_index,
                    first_event=first,
                    n_events=min(size, file_first + file_n - first),
                )
            )
    return specs


def batch_seeds(seed: int, process: str, batch_index: int) -> tuple[int, np.random.SeedSequence]:
    """(Pythia ``Random:seed`` in 1..900000000, numpy SeedSequence for the detector) of one batch."""
    sequence = np.random.SeedSequence([int(seed), PROCESSES.index(process), int(batch_index)])
    pythia_child, detector_child = sequence.spawn(2)
    pythia_seed = int(pythia_child.generate_state(1, dtype=np.uint64)[0] % PYTHIA_SEED_MAX) + 1
    return pythia_seed, detector_child


def pythia_settings(config: GenerationConfig, pythia_seed: int) -> list[str]:
    """The Pythia 8 command strings of a sample (recipes in PHYSICS.md)."""
    settings = [
        f"Beams:eCM = {config.sqrt_s:g}",
        "Print:quiet = on",
        "Next:numberCount = 0",
        "Random:setSeed = on",
        f"Random:seed = {pythia_seed}",
        f"PartonLevel:MPI = {'on' if config.mpi else 'off'}",
    ]
    if config.process == "qcd":
        settings += ["HardQCD:all = on", f"PhaseSpace:pTHatMin = {config.pthat_min:g}"]
    else:
        # W' -> W Z with the W and Z re-purposed as X and Y (this sample only), hadronic decays.
        settings += [
            "NewGaugeBoson:ffbar2Wprime = on",
            "Wprime:coup2WZ = 1",  # default 0: "all processes have vanishing cross sections"
            f"34:m0 = {config.m_wprime:g}",
            "34:onMode = off",
            "34:onIfAll = 24 23",
            f"24:m0 = {config.m_x:g}",
            f"24:mMin = {0.5 * config.m_x:g}",
            f"24:mMax = {1.5 * config.m_x:g}",
            "24:onMode = off",
            "24:onIfAny = 1 2 3 4",
            f"23:m0 = {config.m_y:g}",
            f"23:mMin = {0.5 * config.m_y:g}",
            f"23:mMax = {1.5 * config.m_y:g}",
            "23:onMode = off",
            "23:onIfAny = 1 2 3 4 5",
        ]
    return settings


def make_pythia(config: GenerationConfig, pythia_seed: int) -> Any:
    """A silent, initialised Pythia instance for one batch."""
    import pythia8mc

    pythia = pythia8mc.Pythia("", False)
    for line in pythia_settings(config, pythia_seed):
        if not pythia.readString(line):
            raise RuntimeError(f"Pythia rejected the setting {line!r}")
    if not pythia.init():
        raise RuntimeError(
            f"Pythia failed to initialise for {config.process} with {pythia_settings(config, pythia_seed)}"
        )
    return pythia


# --- particle extraction --------------------------------------------------------------------------


class ParticleExtractor:
    """Collects the final-state particles of successive events into flat arrays.

    Per event: one ``event.particles()`` call, ``isFinal`` mapped over it at C level, then each
    accessor mapped over the final particles straight into ``np.fromiter``. Charge and visibility are
    per species, so they are looked up once per distinct pdgId at :meth:`take`. Particle objects
    are not kept across events: holding ~10^5 of them makes the garbage collector the hot spot.
    """

    _ACCESSORS = (("pt", "pT"), ("eta", "eta"), ("phi", "phi"), ("mass", "m"))

    def __init__(self, particle_data: Any) -> None:
        import pythia8mc

        cls = pythia8mc.Particle
        self._is_final = cls.isFinal
        self._id = cls.id
        self._getters = [(name, getattr(cls, method)) for name, method in self._ACCESSORS]
        self._data = particle_data
        self._species: dict[int, tuple[float, bool]] = {}
        self._arrays: dict[str, list[np.ndarray]] = {
            name: [] for name in ("pdgId", *dict(self._ACCESSORS))
        }
        self._counts: list[int] = []

    def add(self, event: Any) -> None:
        particles = event.particles()
        final = list(itertools.compress(particles, map(self._is_final, particles)))
        n = len(final)
        arrays = self._arrays
        arrays["pdgId"].append(np.fromiter(map(self._id, final), np.int32, n))
        for name, getter in self._getters:
            arrays[name].append(np.fromiter(map(getter, final), np.float64, n))
        self._counts.append(n)

    def take(self) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """(flat visible particles, per-event counts) of everything added since the last take."""
        flat = {
            name: np.concatenate(parts)
            if parts
            else np.zeros(0, np.int32 if name == "pdgId" else np.float64)
            for name, parts in self._arrays.items()
        }
        pdg = flat["pdgId"]
        species, inverse = np.unique(pdg, return_inverse=True)
        table = np.array([self._lookup(int(s)) for s in species], dtype=np.float64).reshape(-1, 2)
        flat["charge"] = np.rint(table[inverse, 0]).astype(np.int32)
        visible = table[inverse, 1].astype(bool)
        event_index = np.repeat(np.arange(len(self._counts)), self._counts)
        counts = np.bincount(event_index[visible], minlength=len(self._counts))
        self._arrays = {name: [] for name in self._arrays}
        self._counts = []
        return {k: v[visible] for k, v in flat.items()}, counts

    def _lookup(self, pdg: int) -> tuple[float, bool]:
        if pdg not in self._species:
            self._species[pdg] = (self._data.charge(pdg), bool(self._data.isVisible(pdg)))
        return self._species[pdg]


def extract_particles_naive(event: Any) -> dict[str, np.ndarray]:
    """Reference extraction of one event's visible final-state particles with a plain per-particle loop.

    Kept for the benchmark and as an independent check of :class:`ParticleExtractor`.
    """
    rows = []
    for i in range(event.size()):
        p = event[i]
        if p.isFinal() and p.isVisible():
            rows.append((p.pT(), p.eta(), p.phi(), p.m(), p.charge(), p.id()))
    arr = np.array(rows, dtype=np.float64).reshape(-1, 6)
    return {
        "pt": arr[:, 0],
        "eta": arr[:, 1],
        "phi": arr[:, 2],
        "mass": arr[:, 3],
        "charge": np.rint(arr[:, 4]).astype(np.int32),
        "pdgId": arr[:, 5].astype(np.int32),
    }


# --- batches ----------------------------------------------------------------------------------------


def _spec_for(config: GenerationConfig, batch_index: int) -> BatchSpec:
    for spec in plan_batches(config):
        if spec.index == batch_index:
            return spec
    raise ValueError(
        f"batch {batch_index} does not exist for {config.n_events} events "
        f"({config.events_per_file} per file, batches of {config.effective_batch_size})"
    )


def generate_batch(config: GenerationConfig, batch_index: int, n: int | None = None) -> ak.Array:
    """Triggered events of one batch: ``run, luminosityBlock, event, truthLabel`` and ``PFCands``.

    ``n`` defaults to the batch's size in the sample plan; a smaller ``n`` gives the first ``n``
    events of the same batch (same seeds).
    """
    return _generate_batch(config, batch_index, n)[0]


def _generate_batch(
    config: GenerationConfig, batch_index: int, n: int | None = None
) -> tuple[ak.Array, BatchStats]:
    spec = _spec_for(config, batch_index)
    if n is None:
        n = spec.n_events
    if not 0 < n <= spec.n_events:
        raise ValueError(f"batch {batch_index} holds 1..{spec.n_events} events, asked for {n}")
    pythia_seed, detector_seq = batch_seeds(config.seed, config.process, batch_index)
    pythia = make_pythia(config, pythia_seed)
    rng = np.random.default_rng(detector_seq)
    extractor = ParticleExtractor(pythia.particleData)

    pieces: list[ak.Array] = []
    n_kept = n_generated = n_failed = 0
    efficiency = 0.5  # first guess of the trigger efficiency, refined as we go
    max_trials = config.max_trials_per_event * n + 100
    while n_kept < n:
        if n_generated >= max_trials:
            raise RuntimeError(
                f"{config.process}: only {n_kept} of {n_generated} generated events passed the trigger "
                f"(pT > {config.trigger.pt_min} GeV); lower the trigger or raise pthat_min "
                f"(now {config.pthat_min})"
            )
        chunk = int(np.clip(math.ceil(1.1 * (n - n_kept) / efficiency), 16, 512))
        made = 0
        while made < chunk:
            if not pythia.next():
                n_failed += 1
                if n_failed > 100 + n_generated // 10:
                    raise RuntimeError(f"Pythia failed {n_failed} times in batch {batch_index}")
                continue
            extractor.add(pythia.event)
            made += 1
        events, passed = _triggered(extractor, config, rng)
        if n_kept + len(events) >= n:
            # Count generated events only up to the last one written: an unbiased efficiency.
            made = int(np.flatnonzero(passed)[n - n_kept - 1]) + 1
        n_generated += made
        n_kept += len(events)
        pieces.append(events)
        efficiency = max(n_kept / n_generated, 0.01)

    cands = ak.concatenate(pieces)[:n] if len(pieces) > 1 else pieces[0][:n]
    numbers = np.arange(spec.first_event + 1, spec.first_event + n + 1, dtype=np.uint64)
    flat = {name: ak.to_numpy(ak.flatten(cands[name])) for name in PFCANDS_TYPES}
    events = make_events(
        run=run_number(config.process, config.seed),
        luminosity_block=spec.file_index + 1,
        event=numbers,
        truth_label=TRUTH_LABEL[config.process],
        counts=ak.to_numpy(ak.num(cands)),
        candidates=flat,
    )
    stats = BatchStats(
        n_written=n,
        n_generated=n_generated,
        n_failed=n_failed,
        sigma_gen_mb=float(pythia.infoPython().sigmaGen()),
        n_particles=int(sum(len(x) for x in flat.values()) // len(flat)),
    )
    return events, stats


def _triggered(
    extractor: ParticleExtractor, config: GenerationConfig, rng: np.random.Generator
) -> tuple[ak.Array, np.ndarray]:
    """Detector response, float32 rounding as on disk, then the trigger on exactly those values.

    Returns the passing events' candidates and the per-event trigger decision.
    """
    flat, counts = extractor.take()
    objects, kept = apply_detector(flat, config.detector, rng)
    event_index = np.repeat(np.arange(len(counts)), counts)
    det_counts = np.bincount(event_index[kept], minlength=len(counts))
    cands = ak.zip(
        {
            name: ak.unflatten(objects[name].astype(dtype), det_counts)
            for name, dtype in PFCANDS_TYPES.items()
        },
        depth_limit=2,
    )
    jets, _ = cluster(cands, radius=config.jet_radius, algorithm="antikt")
    passed = passes_trigger(jets, config.trigger)
    return cands[passed], passed


# --- whole samples ----------------------------------------------------------------------------------


def _run_batch(config: GenerationConfig, batch_index: int) -> tuple[ak.Array, BatchStats]:
    return _generate_batch(config, batch_index)


def _quiet_worker() -> None:
    """Worker initialiser: print fastjet's one-time banner into /dev/null instead of K times."""
    import ctypes
    import os
    import sys

    import fastjet._swig

    sys.stdout.flush()
    saved = os.dup(1)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 1)
            fastjet._swig.ClusterSequence.print_banner()
            ctypes.CDLL(None).fflush(None)
    finally:
        os.dup2(saved, 1)
        os.close(saved)


def _ordered_results(
    config: GenerationConfig,
    specs: list[BatchSpec],
    workers: int,
    mapper: Callable[[Callable[[int], Any], list[int]], Iterator[Any]] | None = None,
) -> Iterator[tuple[BatchSpec, ak.Array, BatchStats]]:
    """Batch results in plan order, with at most ~2 x workers batches in flight (bounded memory).

    ``mapper(fn, batch_indices)`` (e.g. a dask cluster's) yields ``fn(index)`` in order; it gets
    2 x ``workers`` batches at a time."""
    if mapper is not None:
        run = functools.partial(_run_batch, config)
        for start in range(0, len(specs), 2 * workers):
            window = specs[start : start + 2 * workers]
            for spec, (events, stats) in zip(
                window, mapper(run, [s.index for s in window]), strict=True
            ):
                yield spec, events, stats
        return
    if workers == 1:
        for spec in specs:
            events, stats = _generate_batch(config, spec.index)
            yield spec, events, stats
        return
    context = multiprocessing.get_context("spawn")  # no fork of a process that may hold threads
    with ProcessPoolExecutor(
        max_workers=workers, mp_context=context, initializer=_quiet_worker
    ) as pool:
        pending: deque[tuple[BatchSpec, Future]] = deque()
        todo = iter(specs)
        try:
            for spec in itertools.islice(todo, 2 * workers):
                pending.append((spec, pool.submit(_run_batch, config, spec.index)))
            while pending:
                spec, future = pending.popleft()
                events, stats = future.result()
                nxt = next(todo, None)
                if nxt is not None:
                    pending.append((nxt, pool.submit(_run_batch, config, nxt.index)))
                yield spec, events, stats
        finally:
            for _, future in pending:
                future.cancel()


def output_name(process: str, seed: int, file_index: int) -> str:
    return f"{process}_s{seed}_{file_index:04d}.root"


def generate_to_root(
    config: GenerationConfig,
    output_dir: str | Path,
    workers: int = 1,
    progress_callback: Callable[[int], None] | None = None,
    dataset: str | None = None,
    mapper: Callable[[Callable[[int], Any], list[int]], Iterator[Any]] | None = None,
    restart: bool = False,
) -> list[Path]:
    """Generate the sample into ``output_dir`` (ROOT files + ``fileset.json``); return the file paths.

    ``progress_callback(n)`` is called with the number of events each finished batch wrote. Files of
    an earlier run with the same process and seed are overwritten, surplus ones removed, and the
    dataset's fileset entry replaced (other datasets in the fileset are kept). ``mapper`` runs the
    batches elsewhere (``mapper(fn, items)`` yielding ``fn(item)`` in order, e.g. the ``map`` of
    a dask task pool; ``workers`` then sizes how many are handed to it at once); the output is
    the same whatever runs the batches.

    Resumable: each finished file gets a hidden marker (``.<file>.done.json``: the configuration's
    fingerprint, the file's identity and its batches' bookkeeping), so the same call after an
    interrupt generates only the missing files and writes the same fileset; ``restart`` ignores
    the markers. They are removed once the fileset is written.
    """
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be a positive integer, got {workers!r}")
    output_dir = Path(output_dir)
    if output_dir.exists() and not output_dir.is_dir():
        raise ValueError(f"output {output_dir} exists and is not a directory")
    output_dir.mkdir(parents=True, exist_ok=True)
    specs = plan_batches(config)
    totals = {"n_generated": 0, "n_failed": 0, "n_particles": 0, "sigma_weighted": 0.0}
    key = _generation_key(config)
    n_files = max(s.file_index for s in specs) + 1
    done = {} if restart else _done_files(output_dir, config, key, n_files)
    todo = [s for s in specs if s.file_index not in done]
    if done:
        log.info(
            "skipping %d of %d file(s) already generated in %s", len(done), n_files, output_dir
        )
    workers = max(1, min(workers, len(todo)))

    def add(stats: BatchStats) -> None:
        totals["n_generated"] += stats.n_generated
        totals["n_failed"] += stats.n_failed
        totals["n_particles"] += stats.n_particles
        totals["sigma_weighted"] += stats.sigma_gen_mb * stats.n_generated
        if progress_callback is not None:
            progress_callback(stats.n_written)

    def consume(
        group: Iterator[tuple[BatchSpec, ak.Array, BatchStats]], seen: list[BatchStats]
    ) -> Iterator[ak.Array]:
        for _, events, stats in group:
            seen.append(stats)
            yield events

    paths: list[Path] = []
    groups = itertools.groupby(
        _ordered_results(config, todo, workers, mapper) if todo else iter(()),
        key=lambda r: r[0].file_index,
    )
    for file_index in range(n_files):
        path = output_dir / output_name(config.process, config.seed, file_index)
        if file_index in done:
            batches = done[file_index]
        else:
            index, group = next(groups)
            assert index == file_index, (index, file_index)
            batches = []
            write_events(path, consume(group, batches))
            _write_marker(path, key, batches)
            log.info("wrote %s", path)
        for stats in batches:  # in plan order: the totals add up as in an uninterrupted run
            add(stats)
        paths.append(path.resolve())
    _remove_stale(output_dir, config, len(paths))

    n_gen = totals["n_generated"]
    sigma_mb = totals["sigma_weighted"] / n_gen
    efficiency = config.n_events / n_gen
    metadata = {
        "process": config.process,
        "seed": config.seed,
        "n_events": config.n_events,
        "truth_label": TRUTH_LABEL[config.process],
        "run": run_number(config.process, config.seed),
        "n_generated": n_gen,
        "trigger_efficiency": efficiency,
        "sigma_gen_pb": sigma_mb * 1e9,
        "sigma_triggered_pb": sigma_mb * 1e9 * efficiency,
        "mean_candidates": totals["n_particles"] / config.n_events,
        "config": _config_dict(config),
        "adhunt_version": _version("adhunt"),
        "generator": f"pythia8mc {_version('pythia8mc')}",
    }
    name = dataset or config.process
    write_fileset(output_dir / FILESET_NAME, {name: fileset_entry(paths, metadata)}, update=True)
    for path in paths:
        _marker(path).unlink(missing_ok=True)
    return paths


def _generation_key(config: GenerationConfig) -> str:
    from adhunt.manifest import fingerprint

    return fingerprint(
        _config_dict(config), None, {"adhunt": _version("adhunt"), "pythia": _version("pythia8mc")}
    )


def _marker(path: Path) -> Path:
    return path.with_name(f".{path.name}.done.json")


def _write_marker(path: Path, key: str, batches: list[BatchStats]) -> None:
    from adhunt.config import write_json
    from adhunt.manifest import file_identity

    write_json(
        _marker(path),
        {
            "key": key,
            "file": file_identity(str(path)),
            "batches": [dataclasses.asdict(b) for b in batches],
        },
    )


def _done_files(
    output_dir: Path, config: GenerationConfig, key: str, n_files: int
) -> dict[int, list[BatchStats]]:
    """Files an interrupted run of the same configuration finished (marker and file agree)."""
    import json

    from adhunt.manifest import file_identity

    done = {}
    for file_index in range(n_files):
        path = output_dir / output_name(config.process, config.seed, file_index)
        marker = _marker(path)
        if not (marker.is_file() and path.is_file()):
            continue
        try:
            doc = json.loads(marker.read_text())
            if doc["key"] == key and doc["file"] == file_identity(str(path)):
                done[file_index] = [BatchStats(**b) for b in doc["batches"]]
        except (ValueError, KeyError, TypeError):
            continue
    return done


def _config_dict(config: GenerationConfig) -> dict[str, Any]:
    return config_to_dict(config)


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover
        return "unknown"


def _remove_stale(output_dir: Path, config: GenerationConfig, n_files: int) -> None:
    pattern = re.compile(rf"^{re.escape(config.process)}_s{config.seed}_(\d{{4,}})\.root$")
    for path in output_dir.iterdir():
        match = pattern.match(path.name)
        if match and int(match.group(1)) >= n_files:
            log.info("removing %s left by an earlier, larger run", path)
            path.unlink()
            _marker(path).unlink(missing_ok=True)

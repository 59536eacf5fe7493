"""Feature-processor throughput versus bare fastjet clustering, and its memory (not a test).

Measured side by side in ONE run on the same QCD events (machines are noisy, so only ratios are
meaningful). The events are cut from the cached 8 x 50k QCD files (``.cache/bench/qcd400k``, see
``benchfiles.py``) when present, else generated (``--generate`` forces generation):

1. bare clustering: read the PF candidates with uproot and anti-kT (R = 1.0) cluster them;
2. the feature processor (iterative executor, one process): NanoEvents reading, clustering,
   selection, exclusive-kT N-subjettiness of both jets, features, parquet writing, cutflow.

Target (issue 11): processor >= 0.60 of bare clustering events/s/core. 1 vs 2 workers (target
>= 1.8x) is ``bench_scaling.py``.

Options:

- ``--axes-fastjet``: also time the processor with fastjet's exclusive-kT reclustering for the
  tau_N axes (``adhunt.substructure.AXES_BACKEND = "fastjet"``), interleaved with the rest;
- ``--reference CHECKOUT``: also time another checkout's processor (e.g. ``/work/main``: its
  ``.venv/bin/python``, in a subprocess that warms up and times itself), interleaved with the
  rest: the before/after ratio in one run;
- ``--profile``: where one processor pass spends its time (cProfile, cumulative times of the
  stages; CPU clock unless ``--profile-clock wall``), as fractions of the bare anti-kT time, and
  the self time per package (awkward, numpy, fastjet, uproot, coffea, pandas, pyarrow, ...);
- ``--memory-files A.root B.root ...`` or ``--memory-cached`` (the 8 x 50k cached files), with
  ``--memory-events-per-file N`` to first build files of N events from them (``benchfiles.py``):
  peak RSS of ``adhunt features`` (a subprocess each) on ``--memory-base-files`` files at each
  ``--memory-chunks`` size, on 4 x as many files at each ``--memory-scale-chunks`` size, and of
  a 1-worker LocalCluster's driver and worker at each ``--memory-dask-chunks`` size;
  ``--memory-only`` skips the throughput runs; ``--memory-trace CHUNK`` instead prints, after
  each chunk of a run on the 4x fileset, the RSS and the memory Python/numpy still hold
  (tracemalloc): a leak grows the held memory chunk after chunk.

    python benchmarks/bench_features.py --events 4000 --repeats 3 --profile --reference /work/main
    python benchmarks/bench_features.py --memory-only --memory-cached \\
        --memory-events-per-file 100000 --memory-dask-chunks 50000
    python benchmarks/bench_features.py --memory-only --memory-cached --memory-trace 5000
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def sample(n_events: int, seed: int, generate: bool = False) -> dict[str, list[str]]:
    """QCD events in 4 files, as a fileset: cut from the cached 8 x 50k QCD files when present
    (``benchfiles.build_files``; ``seed`` unused), else generated (cached under .cache/bench/)."""
    from benchfiles import build_files, cached_sources

    if not generate and cached_sources() and n_events % 4 == 0:
        return {"qcd": build_files(cached_sources(), n_events // 4, 4)}
    from adhunt.config import config_to_dict
    from adhunt.generation import FILESET_NAME, GenerationConfig, generate_to_root

    config = GenerationConfig(
        process="qcd", n_events=n_events, seed=seed, events_per_file=max(1, n_events // 4)
    )
    key = hashlib.sha256(json.dumps(config_to_dict(config), sort_keys=True).encode()).hexdigest()[
        :12
    ]
    directory = REPO / ".cache" / "bench" / f"qcd-{n_events}-{key}"
    marker = directory / ".complete"
    if not marker.exists():
        print(f"generating {n_events} QCD events into {directory} ...", flush=True)
        generate_to_root(config, directory, workers=2)
        marker.write_text("ok\n")
    with open(directory / FILESET_NAME) as handle:
        fileset = json.load(handle)
    return {"qcd": sorted(fileset["qcd"]["files"])}


def bare_clustering(
    files: list[str], radius: float, with_constituents: bool
) -> tuple[float, float, int]:
    """(wall s, CPU s) to read the candidates and anti-kT cluster them; events clustered.

    Without constituents: fastjet ClusterSequence + inclusive_jets only (the strict baseline).
    With: ``adhunt.jets.cluster`` (also pT-sorted jets and every jet's constituent indices).
    """
    import awkward as ak
    import fastjet
    import uproot

    from adhunt.jets import cluster, to_fastjet_input

    start, cpu = time.perf_counter(), time.process_time()
    n = 0
    for name in files:
        with uproot.open(name) as handle:
            arrays = handle["Events"].arrays(
                ["PFCands_pt", "PFCands_eta", "PFCands_phi", "PFCands_mass"]
            )
        particles = ak.zip({f: arrays[f"PFCands_{f}"] for f in ("pt", "eta", "phi", "mass")})
        if with_constituents:
            cluster(particles, radius)
        else:
            sequence = fastjet.ClusterSequence(
                to_fastjet_input(particles), fastjet.JetDefinition(fastjet.antikt_algorithm, radius)
            )
            sequence.inclusive_jets()
        n += len(particles)
    return time.perf_counter() - start, time.process_time() - cpu, n


def processor_run(fileset: dict, runner, output_dir: Path) -> tuple[float, float, int]:
    """(wall s, CPU s of this process) for one processor pass through ``runner``; events read."""
    from adhunt.processors.features import DijetFeatureProcessor, FeatureConfig

    start, cpu = time.perf_counter(), time.process_time()
    out = runner(fileset, DijetFeatureProcessor(FeatureConfig(), output_dir), treename="Events")
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    return elapsed, cpu, sum(c["events"] for c in out["cutflow"].values())


_REFERENCE_SNIPPET = """
import json, sys, tempfile, time, logging
logging.basicConfig(level=logging.ERROR)
from adhunt.jobs.executors import ExecutorConfig, coffea_runner
from adhunt.processors.features import DijetFeatureProcessor, FeatureConfig, QuietPFNanoAODSchema
files = json.loads(sys.argv[1])
out = tempfile.mkdtemp(prefix="bench-ref-")
with coffea_runner(ExecutorConfig(executor="iterative", chunksize=100_000), QuietPFNanoAODSchema) as run:
    run({"qcd": files[:1]}, DijetFeatureProcessor(FeatureConfig(), out + "/warm"), treename="Events")
    start, cpu = time.perf_counter(), time.process_time()
    run({"qcd": files}, DijetFeatureProcessor(FeatureConfig(), out + "/run"), treename="Events")
    print(json.dumps([time.perf_counter() - start, time.process_time() - cpu]))
"""


def reference_run(checkout: Path, files: list[str]) -> tuple[float, float]:
    """(wall s, CPU s) of one processor pass of another checkout (its own venv), warmed up."""
    python = checkout / ".venv" / "bin" / "python"
    done = subprocess.run(
        [str(python), "-c", _REFERENCE_SNIPPET, json.dumps(files)],
        cwd=checkout,
        capture_output=True,
        text=True,
        check=True,
    )
    wall, cpu = json.loads(done.stdout.strip().splitlines()[-1])
    return wall, cpu


#: Profile stages: (label, match on cProfile's (file, function name)); cumulative times.
_STAGES = (
    ("coffea runner, NanoEvents set-up (outside process())", None),
    ("reading + NanoEvents: PF candidates (uproot, materialise)", ("inputs.py", "candidates")),
    ("rest of _compute: ids, weights, finite check, zips, slicing", None),
    ("to_fastjet_input (pt/eta/phi/m -> px/py/pz/E)", ("jets.py", "to_fastjet_input")),
    ("anti-kT ClusteredEvents (fastjet + jet sorting)", ("jets.py", "__init__")),
    ("  of which fastjet anti-kT cluster sequence", ("_multievent.py", "__init__")),
    ("trigger + >= 2 jets selection", ("features.py", "_select")),
    ("constituents of the two leading jets", ("jets.py", "leading")),
    ("  of which fastjet constituent_index", ("_multievent.py", "constituent_index")),
    ("_leading_jets itself: ak.zip, batch slices, joins", None),
    ("tau_N: exclusive-kT axes", ("substructure.py", "kt_axes")),
    ("tau_N: distance sums + conversions", None),
    ("dijet features", ("dijet.py", "dijet_features")),
    ("feature frame", ("tables.py", "make_feature_frame")),
    ("parquet writing", ("tables.py", "write_chunk")),
)

#: Packages of the by-package table (self time; a C function counts for its caller's package).
_PACKAGES = ("awkward", "numpy", "fastjet", "uproot", "coffea", "pandas", "pyarrow", "vector")


def _package(filename: str) -> str:
    if "site-packages/" in filename:
        name = filename.split("site-packages/")[1].split("/")[0]
        return name if name in _PACKAGES else "other packages"
    if filename.startswith(str(REPO)) or "/adhunt/" in filename:
        return "adhunt (incl. compiled numba kernels)"
    return "Python stdlib / interpreter"


def by_package(stats: dict) -> dict[str, float]:
    """Self time per package: a Python function's own time goes to its file's package, a C
    function's (numpy ufuncs, awkward kernels, fastjet's C++, numba kernels) to its callers'."""
    out: dict[str, float] = {}
    for (filename, _line, _name), (_cc, _nc, tt, _ct, callers) in stats.items():
        if filename == "~":
            for caller, timing in callers.items():
                key = _package(caller[0])
                out[key] = out.get(key, 0.0) + timing[2]
        else:
            key = _package(filename)
            out[key] = out.get(key, 0.0) + tt
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))


def profile_breakdown(
    fileset: dict, runner, output_dir: Path, clock: str = "cpu"
) -> tuple[dict[str, float], dict[str, float]]:
    """Seconds per stage of one processor pass under cProfile (cumulative times; the stages
    marked None are differences: runner = total - process(), tau sums = nsubjettiness_betas -
    kt_axes, batches = _leading_jets - its named stages, selection rest = _compute - the named
    stages inside it), and self seconds per package (:func:`by_package`). ``clock``: "cpu"
    (process time: robust to load from other processes) or "wall"."""
    import cProfile
    import pstats

    profiler = cProfile.Profile(time.process_time if clock == "cpu" else time.perf_counter)
    profiler.enable()
    processor_run(fileset, runner, output_dir)
    profiler.disable()
    stats = pstats.Stats(profiler).stats  # (file, line, name) -> (cc, nc, tt, ct, callers)

    def cumulative(file: str, name: str) -> float:
        return sum(v[3] for k, v in stats.items() if k[0].endswith(file) and k[2] == name)

    total = cumulative("bench_features.py", "processor_run")
    process = cumulative("features.py", "process")
    out = {label: cumulative(*m) for label, m in _STAGES if m is not None}
    out[_STAGES[0][0]] = total - process
    nsub = cumulative("substructure.py", "nsubjettiness_betas")
    out["tau_N: distance sums + conversions"] = nsub - out["tau_N: exclusive-kT axes"]
    batched = (
        "to_fastjet_input (pt/eta/phi/m -> px/py/pz/E)",
        "anti-kT ClusteredEvents (fastjet + jet sorting)",
        "trigger + >= 2 jets selection",
        "constituents of the two leading jets",
    )
    out["_leading_jets itself: ak.zip, batch slices, joins"] = cumulative(
        "features.py", "_leading_jets"
    ) - sum(out[k] for k in batched)
    inner = (
        "reading + NanoEvents: PF candidates (uproot, materialise)",
        *batched,
        "_leading_jets itself: ak.zip, batch slices, joins",
        "dijet features",
        "feature frame",
    )
    compute = cumulative("features.py", "_compute")
    out["rest of _compute: ids, weights, finite check, zips, slicing"] = (
        compute - nsub - sum(out[k] for k in inner)
    )
    ordered = {label: out[label] for label, _ in _STAGES}
    ordered["total (processor pass under cProfile)"] = total
    return ordered, by_package(stats)


def _vm_hwm(pid: int) -> float | None:
    """The kernel's peak RSS (VmHWM, MiB) of a live process so far; None once it is gone."""
    try:
        with open(f"/proc/{pid}/status") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def peak_memory(command: list[str]) -> dict:
    """Run ``command``; peak RSS of it and of every process it starts.

    ``tree``: ru_maxrss from wait4 (the largest peak of the command and its waited-for
    children: exact); ``driver``: VmHWM (the kernel's peak RSS) of the command itself, read
    every 0.2 s; ``first_half``/``second_half``: the largest sampled RSS of the command in each
    half of the run (a leak shows as a larger second half); ``workers``: {pid: VmHWM MiB} of each
    child process started with multiprocessing (dask workers), read every 0.2 s while they live
    (a peak reached in the last 0.2 s of a process's life would be missed; chunks take seconds).
    """
    import psutil

    start = time.perf_counter()
    child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    watched = psutil.Process(child.pid)
    samples, workers, driver = [], {}, 0.0
    while True:
        pid, status, usage = os.wait4(child.pid, os.WNOHANG)
        if pid:
            break
        driver = max(driver, _vm_hwm(child.pid) or 0.0)
        with contextlib.suppress(psutil.Error):
            samples.append((time.perf_counter() - start, watched.memory_info().rss / 2**20))
            for proc in watched.children(recursive=True):
                cmdline = " ".join(proc.cmdline())
                if "spawn_main" in cmdline and "resource_tracker" not in cmdline:
                    hwm = _vm_hwm(proc.pid)
                    if hwm is not None:
                        workers[proc.pid] = max(workers.get(proc.pid, 0.0), hwm)
        time.sleep(0.2)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status):
        raise RuntimeError(f"{' '.join(command)} failed: {child.stderr.read().decode()[-2000:]}")
    return {
        "tree": usage.ru_maxrss / 1024,
        "driver": driver,
        "first_half": max((rss for t, rss in samples if t < wall / 2), default=float("nan")),
        "second_half": max((rss for t, rss in samples if t >= wall / 2), default=float("nan")),
        "workers": workers,
        "wall": wall,
    }


def features_command(fileset: Path, output: Path, chunksize: int, workers: int = 0) -> list[str]:
    """``adhunt features`` of this venv: iterative (``workers`` 0) or a LocalCluster."""
    command = [str(Path(sys.executable).with_name("adhunt")), "features", str(fileset)]
    command += ["--output", str(output), "--chunksize", str(chunksize)]
    if workers:
        return [*command, "--executor", "dask", "--workers", str(workers)]
    return [*command, "--executor", "iterative"]


def memory_table(
    files: list[str],
    chunks: list[int],
    scratch: Path,
    base_files: int = 1,
    scale_chunks: list[int] | None = None,
    dask_chunks: list[int] | None = None,
) -> list[dict]:
    """Peak RSS of ``adhunt features`` on the first ``base_files`` files at each chunk size, on
    4 x as many files at each of ``scale_chunks`` (default: all), and the peak RSS of the driver
    and the worker of a 1-worker LocalCluster on the base files at each of ``dask_chunks``."""
    import uproot

    def events(names: list[str]) -> int:
        return sum(uproot.open(n)["Events"].num_entries for n in names)

    if len(files) < 4 * base_files:
        raise ValueError(f"the 4x fileset needs {4 * base_files} files, got {len(files)}")
    scale_chunks = chunks if scale_chunks is None else scale_chunks
    runs = [(files[:base_files], c, 0) for c in chunks]
    runs += [(files[: 4 * base_files], c, 0) for c in scale_chunks]
    runs += [(files[:base_files], c, 1) for c in dask_chunks or []]
    rows = []
    for i, (names, chunk, workers) in enumerate(runs):
        fileset = scratch / f"memory-{i}.json"
        fileset.write_text(json.dumps({"qcd": names}))
        output = scratch / f"memory-{i}"
        peak = peak_memory(features_command(fileset, output, chunk, workers))
        n = events(names)
        manifest = (output / "manifest.json").stat().st_size / 1024
        rows.append(
            {"files": len(names), "events": n, "chunk": chunk, "chunks": -(-n // chunk),
             "executor": "dask, 1 worker" if workers else "iterative",
             "manifest_kib": manifest, **peak}
        )  # fmt: skip
        print(f"  memory: {rows[-1]}", flush=True)
    return rows


def print_memory(rows: list[dict]) -> None:
    print(
        "\npeak RSS (MiB) of `adhunt features`, one subprocess per row; peak: wait4 ru_maxrss "
        "(exact: the command or its largest child), driver/worker: VmHWM read every 0.2 s"
    )
    print(
        f"  {'executor':15s} {'files':>5s} {'events':>8s} {'chunk':>7s} {'chunks':>6s} "
        f"{'peak':>6s} {'driver':>7s} {'1st half':>8s} {'2nd half':>8s} {'worker':>7s} "
        f"{'manifest':>9s} {'wall s':>6s}"
    )
    for r in rows:
        worker = max(r["workers"].values(), default=float("nan"))
        print(
            f"  {r['executor']:15s} {r['files']:5d} {r['events']:8d} {r['chunk']:7d} "
            f"{r['chunks']:6d} {r['tree']:6.0f} {r['driver']:7.0f} {r['first_half']:8.0f} "
            f"{r['second_half']:8.0f} {worker:7.0f} {r['manifest_kib']:7.0f}kB {r['wall']:6.0f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=4000, help="QCD events to generate/use")
    parser.add_argument(
        "--repeats", type=int, default=3, help="timings per measurement (best kept)"
    )
    parser.add_argument("--seed", type=int, default=4242)
    parser.add_argument(
        "--no-dask", action="store_true", help="ignored: 1 vs 2 workers is bench_scaling.py"
    )
    parser.add_argument(
        "--profile-clock", choices=("cpu", "wall"), default="cpu", help="--profile's clock"
    )
    parser.add_argument("--axes-fastjet", action="store_true", help="also time fastjet kT axes")
    parser.add_argument("--reference", type=Path, help="another checkout to time side by side")
    parser.add_argument("--profile", action="store_true", help="stage breakdown (cProfile)")
    parser.add_argument(
        "--generate",
        action="store_true",
        help="generate the --events sample with Pythia even when cached QCD files exist "
        "(default: cut from .cache/bench/qcd400k when present, see benchfiles.py)",
    )
    parser.add_argument("--memory-files", nargs="+", default=[], help="distinct ROOT files")
    parser.add_argument(
        "--memory-cached",
        action="store_true",
        help="--memory-files = the cached 8 x 50k QCD files (.cache/bench/qcd400k)",
    )
    parser.add_argument(
        "--memory-events-per-file",
        type=int,
        default=0,
        help="first build files of this many events from --memory-files (0: use them as they are)",
    )
    parser.add_argument(
        "--memory-chunks", default="10000,50000,100000", help="chunk sizes for --memory-files"
    )
    parser.add_argument(
        "--memory-base-files", type=int, default=1, help="files of the base fileset (4x: 4 times)"
    )
    parser.add_argument(
        "--memory-scale-chunks", default=None, help="chunk sizes of the 4x fileset (default: all)"
    )
    parser.add_argument(
        "--memory-dask-chunks",
        default="",
        help="also peak RSS of a 1-worker LocalCluster's worker at these chunk sizes (base files)",
    )
    parser.add_argument(
        "--memory-only", action="store_true", help="only the memory table (no throughput runs)"
    )
    parser.add_argument(
        "--memory-trace",
        type=int,
        default=0,
        help="instead of the table: RSS and held memory after each chunk of this size, on the "
        "4x fileset (a leak shows as growth chunk after chunk)",
    )
    args = parser.parse_args()
    if args.memory_only:
        memory_main(args)
        return

    import logging

    logging.basicConfig(level=logging.WARNING)
    for noisy in ("distributed", "coffea"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    from adhunt import substructure
    from adhunt.jobs.executors import ExecutorConfig, coffea_runner
    from adhunt.processors.features import QuietPFNanoAODSchema

    print(f"load before: {os.getloadavg()} on {os.cpu_count()} cores", flush=True)
    fileset = sample(args.events, args.seed, args.generate)
    files = fileset["qcd"]
    scratch = Path(tempfile.mkdtemp(prefix="bench-features-"))
    best: dict[str, float] = {}
    n_events = 0

    def keep(name: str, seconds: float) -> None:
        best[name] = min(best.get(name, float("inf")), seconds)

    # Interleave the single-core measurements so that load changes hit all alike.
    iterative = ExecutorConfig(executor="iterative", chunksize=100_000)
    bare_clustering(files[:1], 1.0, True)  # warm-up: imports, fastjet banner, page cache
    with coffea_runner(iterative, QuietPFNanoAODSchema) as runner:
        processor_run({"qcd": files[:1]}, runner, scratch / "warm")
        for _ in range(args.repeats):
            wall, cpu, n_events = bare_clustering(files, 1.0, False)
            keep("bare", wall)
            keep("bare_cpu", cpu)
            wall, cpu, _ = bare_clustering(files, 1.0, True)
            keep("cluster", wall)
            keep("cluster_cpu", cpu)
            wall, cpu, n_proc = processor_run(fileset, runner, scratch / "iterative")
            keep("processor", wall)
            keep("processor_cpu", cpu)
            if args.axes_fastjet:
                substructure.AXES_BACKEND = "fastjet"
                try:
                    wall, cpu, _ = processor_run(fileset, runner, scratch / "axes-fastjet")
                finally:
                    substructure.AXES_BACKEND = "compiled"
                keep("axes_fastjet", wall)
                keep("axes_fastjet_cpu", cpu)
            if args.reference:
                wall, cpu = reference_run(args.reference, files)
                keep("reference", wall)
                keep("reference_cpu", cpu)
        profiles = {}
        if args.profile:
            profiles["compiled axes"], packages = profile_breakdown(
                fileset, runner, scratch / "profile", args.profile_clock
            )
            if args.axes_fastjet:
                substructure.AXES_BACKEND = "fastjet"
                try:
                    profiles["fastjet axes"], _ = profile_breakdown(
                        fileset, runner, scratch / "pf", args.profile_clock
                    )
                finally:
                    substructure.AXES_BACKEND = "compiled"
    assert n_proc == n_events, (n_proc, n_events)

    rate = {name: n_events / seconds for name, seconds in best.items()}
    print(f"\nevents: {n_events} QCD events, best of {args.repeats} (wall | CPU of the process)")
    rows = [
        ("bare anti-kT R=1.0 (read + ClusterSequence)", "bare"),
        ("adhunt.jets.cluster (+ sorted constituents)", "cluster"),
        ("feature processor (iterative, 1 process)", "processor"),
    ]
    if args.axes_fastjet:
        rows.append(("  same, fastjet kT axes (AXES_BACKEND)", "axes_fastjet"))
    if args.reference:
        rows.append((f"  reference checkout {args.reference}", "reference"))
    for label, key in rows:
        print(f"{label:46s} {rate[key]:7.0f} | {rate[key + '_cpu']:7.0f} events/s/core")
    for _label, key in rows[2:]:
        print(
            f"{'ratio ' + key + ' / bare clustering':46s} {rate[key] / rate['bare']:7.2f} | "
            f"{rate[key + '_cpu'] / rate['bare_cpu']:7.2f}   (target >= 0.60)"
        )
    if profiles:
        cpu = args.profile_clock == "cpu"
        bare = best["bare_cpu" if cpu else "bare"]
        unprofiled = best["processor_cpu" if cpu else "processor"]
        clock = "CPU" if cpu else "wall"
        print(
            f"\nprofile of one processor pass (cProfile, {clock} clock), fractions of the bare "
            f"anti-kT {clock} time {bare:.2f} s (processor without cProfile: {unprofiled:.2f} s "
            f"= {unprofiled / bare:.3f})"
        )
        print(f"  {'':60s}" + "".join(f" {name:>14s}" for name in profiles))
        for label in next(iter(profiles.values())):
            cells = "".join(f" {p[label] / bare:14.3f}" for p in profiles.values())
            print(f"  {label:60s}{cells}")
        if len(profiles) > 1:
            print("  (fastjet axes: its kT ClusterSequence counts under the axes AND anti-kT)")
        print(f"\nself time by package (compiled axes pass), fractions of the bare {clock} time")
        for name, seconds in packages.items():
            print(f"  {name:60s} {seconds / bare:14.3f}")
    if args.memory_files or args.memory_cached:
        memory_main(args)
    print(f"load after: {os.getloadavg()}")


_TRACE_SNIPPET = """
import json, resource, sys, tracemalloc, logging
import psutil
logging.basicConfig(level=logging.ERROR)
from adhunt.jobs.features import run_features
from adhunt.processors import features

rows, process = [], psutil.Process()
original = features.DijetFeatureProcessor.process

def traced(self, events):
    out = original(self, events)
    current, _ = tracemalloc.get_traced_memory()
    rows.append([len(events), int(features.ak.sum(features.ak.num(events.PFCands, axis=1))),
                 process.memory_info().rss / 2**20,
                 resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, current / 2**20])
    return out

features.DijetFeatureProcessor.process = traced
tracemalloc.start()
run_features({"qcd": json.loads(sys.argv[1])}, sys.argv[2], chunksize=int(sys.argv[3]))
print(json.dumps(rows))
"""


def memory_trace(files: list[str], chunk: int, scratch: Path) -> list[list[float]]:
    """Per chunk of ``run_features`` (iterative, a subprocess): events, candidates, RSS after
    the chunk, peak RSS so far, and the memory Python and numpy hold (tracemalloc) after it. A
    leak grows the held memory chunk after chunk; allocator retention grows RSS only."""
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            _TRACE_SNIPPET,
            json.dumps(files),
            str(scratch / "trace"),
            str(chunk),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    rows = json.loads(done.stdout.strip().splitlines()[-1])
    print(
        f"\nper chunk of run_features on {len(files)} file(s), chunks of {chunk} (tracemalloc on)"
    )
    print(
        f"  {'chunk':>5s} {'events':>7s} {'cands':>9s} {'RSS after':>9s} {'peak':>7s} {'held':>7s}  (MiB)"
    )
    for i, (n, cands, rss, peak, held) in enumerate(rows):
        print(f"  {i:5d} {n:7d} {cands:9d} {rss:9.0f} {peak:7.0f} {held:7.1f}")
    return rows


def memory_main(args) -> None:
    """The memory table of the ``--memory-*`` options, printed with the load around it."""
    from benchfiles import build_files, cached_sources

    files = cached_sources() if args.memory_cached else args.memory_files
    if not files:
        raise SystemExit("--memory-cached: no .cache/bench/qcd400k/qcd_s7_*.root here")
    chunks = [int(c) for c in args.memory_chunks.split(",")]
    if args.memory_events_per_file:
        n_files = 4 * args.memory_base_files
        files = build_files(files, args.memory_events_per_file, n_files)
    scale = args.memory_scale_chunks
    scale = None if scale is None else [int(c) for c in scale.split(",") if c]
    dask = [int(c) for c in args.memory_dask_chunks.split(",") if c]
    scratch = Path(tempfile.mkdtemp(prefix="bench-memory-", dir=REPO / ".cache"))
    print(f"load before: {os.getloadavg()} on {os.cpu_count()} cores", flush=True)
    if args.memory_trace:
        memory_trace(files[: 4 * args.memory_base_files], args.memory_trace, scratch)
        print(f"load after: {os.getloadavg()}")
        return
    rows = memory_table(
        files,
        chunks,
        scratch,
        args.memory_base_files,
        scale,
        dask,
    )
    print_memory(rows)
    print(f"load after: {os.getloadavg()}")


if __name__ == "__main__":
    main()

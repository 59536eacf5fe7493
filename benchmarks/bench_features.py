"""Feature-processor throughput versus bare fastjet clustering, and dask scaling (not a test).

Measured side by side in ONE run on the same generated QCD events (machines are noisy, so only
ratios are meaningful):

1. bare clustering: read the PF candidates with uproot and anti-kT (R = 1.0) cluster them;
2. the feature processor (iterative executor, one process): NanoEvents reading, clustering,
   selection, exclusive-kT N-subjettiness of both jets, features, parquet writing, cutflow;
3. the processor on a dask LocalCluster with 1 and with 2 single-threaded workers (clusters are
   started and warmed up before the clock starts).

Targets (issue 11): processor >= 0.60 of bare clustering events/s/core; >= 1.8x with 2 workers.

Options:

- ``--axes-fastjet``: also time the processor with fastjet's exclusive-kT reclustering for the
  tau_N axes (``adhunt.substructure.AXES_BACKEND = "fastjet"``), interleaved with the rest;
- ``--reference CHECKOUT``: also time another checkout's processor (e.g. ``/work/main``: its
  ``.venv/bin/python``, in a subprocess that warms up and times itself), interleaved with the
  rest: the before/after ratio in one run;
- ``--profile``: where one processor pass spends its time (cProfile, cumulative times of the
  stages), as fractions of the bare anti-kT time;
- ``--memory-files A.root B.root ...`` (distinct files, >= 4): peak RSS of ``adhunt features``
  (iterative executor, a subprocess each, ``wait4`` ru_maxrss) on the first file at each
  ``--memory-chunks`` size, and on the first four files at the smallest chunk size.

    python benchmarks/bench_features.py --events 4000 --repeats 3 --profile --reference /work/main
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


def sample(n_events: int, seed: int) -> dict[str, list[str]]:
    """Generated QCD events (cached under .cache/bench/), as a fileset."""
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
    ("tau_N: exclusive-kT axes", ("substructure.py", "kt_axes")),
    ("tau_N: distance sums + conversions", None),
    ("dijet features", ("dijet.py", "dijet_features")),
    ("feature frame", ("tables.py", "make_feature_frame")),
    ("parquet writing", ("tables.py", "write_chunk")),
)


def profile_breakdown(fileset: dict, runner, output_dir: Path) -> dict[str, float]:
    """Seconds per stage of one processor pass under cProfile (cumulative times; the stages
    marked None are differences: runner = total - process(), tau sums = nsubjettiness_betas -
    kt_axes, selection rest = _compute - the named stages inside it)."""
    import cProfile
    import pstats

    profiler = cProfile.Profile()
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
    inner = (
        "reading + NanoEvents: PF candidates (uproot, materialise)",
        "to_fastjet_input (pt/eta/phi/m -> px/py/pz/E)",
        "anti-kT ClusteredEvents (fastjet + jet sorting)",
        "trigger + >= 2 jets selection",
        "constituents of the two leading jets",
        "dijet features",
        "feature frame",
    )
    compute = cumulative("features.py", "_compute")
    out["rest of _compute: ids, weights, finite check, zips, slicing"] = (
        compute - nsub - sum(out[k] for k in inner)
    )
    ordered = {label: out[label] for label, _ in _STAGES}
    ordered["total (processor pass under cProfile)"] = total
    return ordered


def peak_rss(fileset_path: Path, output_dir: Path, chunksize: int) -> tuple[float, float, float]:
    """(peak RSS MiB, peak RSS MiB in the first half of the run, wall s) of ``adhunt features``
    (iterative executor) in a subprocess: ru_maxrss from wait4, the half from psutil samples
    (a leak shows as a larger peak in the second half)."""
    import psutil

    adhunt = Path(sys.executable).with_name("adhunt")
    command = [str(adhunt), "features", str(fileset_path), "--output", str(output_dir)]
    command += ["--executor", "iterative", "--chunksize", str(chunksize)]
    start = time.perf_counter()
    child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    samples = []
    watched = psutil.Process(child.pid)
    while True:
        pid, status, usage = os.wait4(child.pid, os.WNOHANG)
        if pid:
            break
        with contextlib.suppress(psutil.Error):
            samples.append((time.perf_counter() - start, watched.memory_info().rss / 2**20))
        time.sleep(0.5)
    wall = time.perf_counter() - start
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode:
        raise RuntimeError(f"adhunt features failed: {child.stderr.read().decode()[-2000:]}")
    first_half = max((rss for t, rss in samples if t < wall / 2), default=float("nan"))
    return usage.ru_maxrss / 1024, first_half, wall


def memory_table(files: list[str], chunks: list[int], scratch: Path) -> list[tuple]:
    """Peak RSS on the first file at each chunk size, then on the first 4 files at the smallest."""
    import uproot

    def events(names: list[str]) -> int:
        return sum(uproot.open(n)["Events"].num_entries for n in names)

    runs = [(files[:1], c) for c in chunks] + [(files[:4], min(chunks))]
    rows = []
    for i, (names, chunk) in enumerate(runs):
        fileset = scratch / f"memory-{i}.json"
        fileset.write_text(json.dumps({"qcd": names}))
        mib, first_half, wall = peak_rss(fileset, scratch / f"memory-{i}", chunk)
        rows.append((len(names), events(names), chunk, mib, first_half, wall))
        print(f"  memory: {rows[-1]}", flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=4000, help="QCD events to generate/use")
    parser.add_argument(
        "--repeats", type=int, default=3, help="timings per measurement (best kept)"
    )
    parser.add_argument("--seed", type=int, default=4242)
    parser.add_argument("--no-dask", action="store_true", help="skip the LocalCluster scaling")
    parser.add_argument("--axes-fastjet", action="store_true", help="also time fastjet kT axes")
    parser.add_argument("--reference", type=Path, help="another checkout to time side by side")
    parser.add_argument("--profile", action="store_true", help="stage breakdown (cProfile)")
    parser.add_argument("--memory-files", nargs="+", default=[], help="distinct ROOT files")
    parser.add_argument(
        "--memory-chunks", default="10000,50000,100000", help="chunk sizes for --memory-files"
    )
    args = parser.parse_args()

    import logging

    logging.basicConfig(level=logging.WARNING)
    for noisy in ("distributed", "coffea"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    from adhunt import substructure
    from adhunt.jobs.executors import ExecutorConfig, coffea_runner
    from adhunt.processors.features import QuietPFNanoAODSchema

    print(f"load before: {os.getloadavg()} on {os.cpu_count()} cores", flush=True)
    fileset = sample(args.events, args.seed)
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
            profiles["compiled axes"] = profile_breakdown(fileset, runner, scratch / "profile")
            if args.axes_fastjet:
                substructure.AXES_BACKEND = "fastjet"
                try:
                    profiles["fastjet axes"] = profile_breakdown(fileset, runner, scratch / "pf")
                finally:
                    substructure.AXES_BACKEND = "compiled"
    assert n_proc == n_events, (n_proc, n_events)

    if not args.no_dask:
        # Both clusters up at once, runs alternated: load changes hit 1 and 2 workers alike.
        chunk = max(1, n_events // 8)
        with contextlib.ExitStack() as stack:
            runners = {}
            for workers in (1, 2):
                config = ExecutorConfig(executor="dask", workers=workers, chunksize=chunk)
                runners[workers] = stack.enter_context(coffea_runner(config, QuietPFNanoAODSchema))
                processor_run({"qcd": files[:1]}, runners[workers], scratch / "warm")
            for _ in range(args.repeats):
                for workers, runner in runners.items():
                    keep(
                        f"dask{workers}",
                        processor_run(fileset, runner, scratch / f"dask{workers}")[0],
                    )

    memory = []
    if args.memory_files:
        chunks = [int(c) for c in args.memory_chunks.split(",")]
        memory = memory_table(args.memory_files, chunks, scratch)

    rate = {name: n_events / seconds for name, seconds in best.items()}
    print(
        f"\nevents: {n_events} generated QCD events, best of {args.repeats} (wall | CPU of the process)"
    )
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
        bare = best["bare"]
        print(
            f"\nprofile of one processor pass (cProfile), fractions of the bare time {bare:.2f} s"
        )
        print(f"  {'':60s}" + "".join(f" {name:>14s}" for name in profiles))
        for label in next(iter(profiles.values())):
            cells = "".join(f" {p[label] / bare:14.3f}" for p in profiles.values())
            print(f"  {label:60s}{cells}")
        if len(profiles) > 1:
            print("  (fastjet axes: its kT ClusterSequence counts under the axes AND anti-kT)")
    if not args.no_dask:
        print(f"{'dask LocalCluster, 1 worker (wall)':46s} {rate['dask1']:7.0f} events/s")
        print(f"{'dask LocalCluster, 2 workers (wall)':46s} {rate['dask2']:7.0f} events/s")
        speedup = rate["dask2"] / rate["dask1"]
        print(f"{'speed-up 2 workers / 1 worker':46s} {speedup:7.2f}   (target >= 1.8)")
    if memory:
        print("\npeak RSS of `adhunt features` (iterative executor, one subprocess each)")
        print(
            f"  {'files':>5s} {'events':>8s} {'chunk':>8s} {'peak MiB':>9s} "
            f"{'1st half':>9s} {'wall s':>7s}"
        )
        for n_files, n, chunk, mib, first_half, wall in memory:
            print(f"  {n_files:5d} {n:8d} {chunk:8d} {mib:9.0f} {first_half:9.0f} {wall:7.0f}")
    print(f"load after: {os.getloadavg()}")


if __name__ == "__main__":
    main()

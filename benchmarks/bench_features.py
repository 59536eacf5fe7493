"""Feature-processor throughput versus bare fastjet clustering, and dask scaling (not a test).

Measured side by side in ONE run on the same generated QCD events (machines are noisy, so only
ratios are meaningful):

1. bare clustering: read the PF candidates with uproot and anti-kT (R = 1.0) cluster them;
2. the feature processor (iterative executor, one process): NanoEvents reading, clustering,
   selection, exclusive-kT N-subjettiness of both jets, features, parquet writing, cutflow;
3. the processor on a dask LocalCluster with 1 and with 2 single-threaded workers (clusters are
   started and warmed up before the clock starts).

Targets: processor >= 50% of bare clustering events/s/core; >= 1.7x with 2 workers.

    python benchmarks/bench_features.py --events 4000 --repeats 3
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=4000, help="QCD events to generate/use")
    parser.add_argument(
        "--repeats", type=int, default=3, help="timings per measurement (best kept)"
    )
    parser.add_argument("--seed", type=int, default=4242)
    parser.add_argument("--no-dask", action="store_true", help="skip the LocalCluster scaling")
    args = parser.parse_args()

    import logging

    logging.basicConfig(level=logging.WARNING)
    for noisy in ("distributed", "coffea"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    from adhunt.jobs.executors import ExecutorConfig, coffea_runner
    from adhunt.processors.features import QuietPFNanoAODSchema

    fileset = sample(args.events, args.seed)
    files = fileset["qcd"]
    scratch = Path(tempfile.mkdtemp(prefix="bench-features-"))
    best: dict[str, float] = {}
    n_events = 0

    def keep(name: str, seconds: float) -> None:
        best[name] = min(best.get(name, float("inf")), seconds)

    # Interleave the two single-core measurements so that load changes hit both alike.
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

    rate = {name: n_events / seconds for name, seconds in best.items()}
    print(
        f"\nevents: {n_events} generated QCD events, best of {args.repeats} (wall | CPU of the process)"
    )
    for label, key in (
        ("bare anti-kT R=1.0 (read + ClusterSequence)", "bare"),
        ("adhunt.jets.cluster (+ sorted constituents)", "cluster"),
        ("feature processor (iterative, 1 process)", "processor"),
    ):
        print(f"{label:46s} {rate[key]:7.0f} | {rate[key + '_cpu']:7.0f} events/s/core")
    print(
        f"{'ratio processor / bare clustering':46s} {rate['processor'] / rate['bare']:7.2f} | "
        f"{rate['processor_cpu'] / rate['bare_cpu']:7.2f}   (target >= 0.50)"
    )
    if not args.no_dask:
        print(f"{'dask LocalCluster, 1 worker (wall)':46s} {rate['dask1']:7.0f} events/s")
        print(f"{'dask LocalCluster, 2 workers (wall)':46s} {rate['dask2']:7.0f} events/s")
        speedup = rate["dask2"] / rate["dask1"]
        print(f"{'speed-up 2 workers / 1 worker':46s} {speedup:7.2f}   (target >= 1.7)")


if __name__ == "__main__":
    main()

"""Generation throughput per core and the cost of particle extraction, measured side by side.

    .venv/bin/python benchmarks/bench_generation.py [--events 300] [--seed 1]

For each process (qcd, wprime) and MPI setting (off, on), on the same seed, interleaved so that a
noisy machine slows every configuration alike:
  * Pythia alone: ``pythia.next()`` events/s;
  * full pipeline (``generate_batch``: Pythia, extraction, detector, anti-kT, trigger): generated and
    written (triggered) events/s;
  * extraction: ``ParticleExtractor`` vs the naive per-particle loop on the very same events, as a ratio.
One process, one core; absolute rates depend on the machine, ratios within one run are what to compare.
"""

from __future__ import annotations

import argparse
import time

from adhunt.generation import (
    GenerationConfig,
    ParticleExtractor,
    _generate_batch,
    batch_seeds,
    extract_particles_naive,
    make_pythia,
)

CONFIGS = [(process, mpi) for process in ("qcd", "wprime") for mpi in (False, True)]


def _min_time(fn, event, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn(event)
        best = min(best, time.perf_counter() - t0)
    return best


def bench_pythia_and_extraction(n_events: int, seed: int, repeats: int = 3) -> dict:
    """Round-robin over the four (process, MPI) Pythia instances, so machine noise hits all alike."""
    instances = {}
    for process, mpi in CONFIGS:
        config = GenerationConfig(process=process, n_events=1, seed=seed, mpi=mpi)
        pythia = make_pythia(config, batch_seeds(seed, process, 0)[0])
        instances[(process, mpi)] = (pythia, ParticleExtractor(pythia.particleData))
    acc = {key: {"gen": 0.0, "fast": 0.0, "naive": 0.0, "particles": 0} for key in instances}

    for i in range(n_events):
        for key, (pythia, extractor) in instances.items():
            t0 = time.perf_counter()
            pythia.next()
            acc[key]["gen"] += time.perf_counter() - t0

            def fast(event, extractor=extractor):
                extractor.add(event)
                return extractor.take()

            # Alternate which method runs first; best of `repeats` for each on the same event.
            order = (fast, extract_particles_naive) if i % 2 else (extract_particles_naive, fast)
            times = {fn: _min_time(fn, pythia.event, repeats) for fn in order}
            acc[key]["fast"] += times[fast]
            acc[key]["naive"] += times[extract_particles_naive]
            acc[key]["particles"] += len(extract_particles_naive(pythia.event)["pt"])
    return acc


def bench_pipeline(n_events: int, seed: int, rounds: int = 4) -> dict:
    """``generate_batch`` (Pythia, extraction, detector, anti-kT, trigger), round-robin in small batches."""
    per = max(1, n_events // rounds)
    acc = {key: {"time": 0.0, "generated": 0, "written": 0} for key in CONFIGS}
    for r in range(rounds):
        for process, mpi in CONFIGS:
            config = GenerationConfig(
                process=process, n_events=per * rounds, seed=seed, mpi=mpi, batch_size=per
            )
            t0 = time.perf_counter()
            _, stats = _generate_batch(config, r)
            acc[(process, mpi)]["time"] += time.perf_counter() - t0
            acc[(process, mpi)]["generated"] += stats.n_generated
            acc[(process, mpi)]["written"] += stats.n_written
    return acc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200, help="events per configuration")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    ext = bench_pythia_and_extraction(args.events, args.seed)
    pipe = bench_pipeline(args.events, args.seed)
    print(f"\nGeneration on one core, {args.events} events per configuration, seed {args.seed}")
    header = (
        f"{'process':8s} {'MPI':4s} {'pythia ev/s':>11s} {'pipeline gen ev/s':>17s} {'written ev/s':>12s} "
        f"{'trig eff':>8s} {'particles':>9s} {'naive ms':>8s} {'fast ms':>8s} {'naive/fast':>10s}"
    )
    print(header)
    print("-" * len(header))
    for key in CONFIGS:
        e, p = ext[key], pipe[key]
        print(
            f"{key[0]:8s} {'on' if key[1] else 'off':4s} {args.events / e['gen']:11.0f} "
            f"{p['generated'] / p['time']:17.0f} {p['written'] / p['time']:12.1f} "
            f"{p['written'] / p['generated']:8.2f} {e['particles'] / args.events:9.0f} "
            f"{1e3 * e['naive'] / args.events:8.3f} {1e3 * e['fast'] / args.events:8.3f} "
            f"{e['naive'] / e['fast']:10.2f}"
        )
    for process in ("qcd", "wprime"):
        on, off = pipe[(process, True)], pipe[(process, False)]
        ratio = (on["generated"] / on["time"]) / (off["generated"] / off["time"])
        print(f"{process}: pipeline rate MPI on / MPI off = {ratio:.2f}")
    print("naive = per-particle loop (isFinal, isVisible, 6 accessors); fast = ParticleExtractor;")
    print("both timed best-of-3 on the very same events, in alternating order.")


if __name__ == "__main__":
    main()

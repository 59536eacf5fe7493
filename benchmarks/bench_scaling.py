"""Feature pass on 1 vs 2 workers, and why the speed-up is what it is (not a test).

One command, a few minutes, prints the ratio (issue 11 target: >= 1.8x with 2 workers)::

    python benchmarks/bench_scaling.py            # 32k cached QCD events, 16 equal chunks

Measured side by side, runs alternated so that load changes hit every configuration alike:

- ``dask``: the feature processor on a LocalCluster of 1 and of 2 single-threaded workers (both
  clusters started and warmed up with a full pass before the clock starts: imports, numba
  caches, coffea's file metadata);
- ``futures``: the same through coffea's FuturesExecutor on a warmed process pool of 1 and of 2
  processes (a cross-check without dask's scheduler);
- ``capacity``: what this machine gives two processes right now, with the processor's own kind
  of work: bare fastjet anti-kT clustering of one input file in 1 process, then in 2 processes
  at once (and a pure-Python loop, the same way). On an idle 2-core machine it is ~2.0; under
  load from other processes it drops, and no executor can beat it.

For every run it reports the CPU seconds of the driver (for dask: the scheduler runs in the
driver process too) and of the workers, the CPU seconds that *other* processes used meanwhile
(``/proc/stat`` busy time minus ours), the hypervisor's steal time, and for dask the task stream:
the workers' busy time, the idle tail (last task end - first worker free) and chunk imbalance.

The efficiency bound of ``C`` equal chunks on 2 workers is C / (2 * ceil(C / 2)) (1 for an even
C); the defaults give 16 chunks of 2000 events (~1 s each). ``--events 4000 --chunks 8``
reproduces the earlier bench_features setting (500-event chunks).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import json
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_features import REPO, bare_clustering, processor_run, sample


def machine_cpu() -> tuple[float, float]:
    """(busy CPU s, steal s) of the whole machine since boot, from /proc/stat."""
    with open("/proc/stat") as handle:
        fields = [int(v) for v in handle.readline().split()[1:]]
    tick = os.sysconf("SC_CLK_TCK")
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields[:8]
    return (user + nice + system + irq + softirq) / tick, steal / tick


def process_cpu(pids: list[int]) -> float:
    """CPU s (user + system) of these processes so far."""
    import psutil

    total = 0.0
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            times = psutil.Process(pid).cpu_times()
            total += times.user + times.system
    return total


def _spin(n: int) -> float:
    """A pure-Python CPU loop (no memory traffic): the capacity calibration's second kernel."""
    start, total = time.process_time(), 0
    for i in range(n):
        total += i * i % 7
    return time.process_time() - start


def _cluster_file(name: str) -> float:
    return bare_clustering([name], 1.0, False)[0]


def capacity(pool, files: list[str], spin: int) -> dict[str, float]:
    """2 x (time of one task alone) / (time of two at once), for clustering and for _spin."""
    out = {}
    for label, fn, args in (("cluster", _cluster_file, files[:2]), ("spin", _spin, [spin, spin])):
        start = time.perf_counter()
        pool.submit(fn, args[0]).result()
        alone = time.perf_counter() - start
        start = time.perf_counter()
        list(pool.map(fn, args))
        both = time.perf_counter() - start
        out[label] = 2 * alone / both
    return out


def timed(run, pids: list[int]) -> dict[str, float]:
    """Wall, driver CPU, workers' CPU, others' CPU and steal during ``run()``."""
    busy0, steal0 = machine_cpu()
    workers0 = process_cpu(pids)
    cpu0, start = time.process_time(), time.perf_counter()
    extra = run()
    wall, driver = time.perf_counter() - start, time.process_time() - cpu0
    workers = process_cpu(pids) - workers0
    busy1, steal1 = machine_cpu()
    return {
        "wall": wall,
        "driver": driver,
        "workers": workers,
        "others": max(0.0, (busy1 - busy0) - driver - workers),
        "steal": steal1 - steal0,
        **(extra or {}),
    }


def task_stream_summary(data: list[dict], n_workers: int) -> dict[str, float]:
    """Busy time, idle tail and chunk imbalance of the processing tasks of one dask run."""
    spans: dict[str, list[tuple[float, float]]] = {}
    for task in data:  # every compute counts: chunk tasks and the tree reduction
        for ss in task.get("startstops", ()):
            if ss.get("action") == "compute":
                spans.setdefault(task["worker"], []).append((ss["start"], ss["stop"]))
    if not spans:
        return {}
    first = min(a for s in spans.values() for a, _ in s)
    last = max(b for s in spans.values() for _, b in s)
    busy = {w: sum(b - a for a, b in s) for w, s in spans.items()}
    durations = [b - a for s in spans.values() for a, b in s]
    free = [max(b for _, b in s) for s in spans.values()]
    return {
        "busy": sum(busy.values()),
        "span": last - first,
        "tail": (last - min(free)) if len(free) == n_workers else last - first,
        "tasks": len(durations),
        "task_cv": statistics.pstdev(durations) / statistics.mean(durations),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=32000, help="QCD events (4 files)")
    parser.add_argument("--chunks", type=int, default=16, help="equal chunks (a multiple of 4)")
    parser.add_argument("--repeats", type=int, default=3, help="alternated repeats (best kept)")
    parser.add_argument("--no-futures", action="store_true", help="skip the futures cross-check")
    parser.add_argument("--spin", type=int, default=10_000_000, help="_spin loop length")
    parser.add_argument("--json", type=Path, help="also write the measurements here")
    args = parser.parse_args()
    if args.chunks % 4 or args.events % args.chunks:
        raise SystemExit("--chunks must be a multiple of 4 that divides --events (4 files)")

    import logging

    logging.basicConfig(level=logging.WARNING)
    for noisy in ("distributed", "coffea"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    from coffea import processor
    from distributed import get_task_stream

    from adhunt.jobs.executors import ExecutorConfig, coffea_runner
    from adhunt.processors.features import QuietPFNanoAODSchema

    print(f"load before: {os.getloadavg()} on {os.cpu_count()} cores", flush=True)
    files = sample(args.events, 4242)["qcd"]
    fileset = {"qcd": files}
    chunk = args.events // args.chunks
    scratch = Path(tempfile.mkdtemp(prefix="bench-scaling-", dir=REPO / ".cache"))
    results: dict[str, list[dict]] = {}
    spawn = multiprocessing.get_context("spawn")

    with contextlib.ExitStack() as stack:
        runs = {}
        for n in (1, 2):
            config = ExecutorConfig(executor="dask", workers=n, chunksize=chunk)
            runner = stack.enter_context(coffea_runner(config, QuietPFNanoAODSchema))
            client = runner.executor.client
            pids = list(client.run(os.getpid).values())
            runs[f"dask {n}"] = (runner, pids, client)
        if not args.no_futures:
            for n in (1, 2):
                pool = stack.enter_context(
                    concurrent.futures.ProcessPoolExecutor(max_workers=n, mp_context=spawn)
                )
                list(pool.map(abs, range(n)))  # start the processes
                runner = processor.Runner(
                    executor=processor.FuturesExecutor(
                        pool=pool, workers=n, status=False, retries=0
                    ),
                    chunksize=chunk,
                    schema=QuietPFNanoAODSchema,
                    metadata_cache={},
                )
                runs[f"futures {n}"] = (runner, list(pool._processes), None)
        calibration = stack.enter_context(
            concurrent.futures.ProcessPoolExecutor(max_workers=2, mp_context=spawn)
        )
        list(calibration.map(_spin, [10, 10]))
        capacity(calibration, files, 1000)  # warm-up: imports, fastjet banner, page cache

        for name, (runner, _, _) in runs.items():  # warm-up: a full pass each
            processor_run(fileset, runner, scratch / name.replace(" ", ""))
        print(f"warmed up; load {os.getloadavg()}", flush=True)

        for repeat in range(args.repeats):
            cap = capacity(calibration, files, args.spin)
            results.setdefault("capacity", []).append(cap)
            for name, (runner, pids, client) in runs.items():
                output = scratch / name.replace(" ", "")

                def run(runner=runner, client=client, output=output, n=int(name[-1])):
                    if client is None:
                        processor_run(fileset, runner, output)
                        return None
                    with get_task_stream(client) as stream:
                        processor_run(fileset, runner, output)
                    return task_stream_summary(stream.data, n)

                results.setdefault(name, []).append(timed(run, pids))
            print(
                f"repeat {repeat + 1}: load {os.getloadavg()}; "
                + ", ".join(
                    f"{k} {v[-1]['wall']:.2f} s" for k, v in results.items() if "wall" in v[-1]
                )
                + f"; capacity {cap['cluster']:.2f} (clustering) {cap['spin']:.2f} (spin)",
                flush=True,
            )

    report(results, args.events, args.chunks)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


def report(results: dict[str, list[dict]], events: int, chunks: int) -> None:
    best = {k: min(v, key=lambda r: r["wall"]) for k, v in results.items() if k != "capacity"}
    print(
        f"\n{events} events in {chunks} equal chunks of {events // chunks}; best wall of "
        f"{len(results['capacity'])} alternated repeats (CPU columns: that run's)"
    )
    print(
        f"  {'':10s} {'wall s':>7s} {'ev/s':>6s} {'driver':>7s} {'workers':>8s} {'others':>7s} "
        f"{'steal':>6s} {'busy':>6s} {'tail':>5s} {'tasks':>5s} {'cv':>5s}   (CPU s)"
    )
    for name, r in best.items():
        stream = (
            f"{r['busy']:6.2f} {r['tail']:5.2f} {r['tasks']:5d} {r['task_cv']:5.2f}"
            if "busy" in r
            else ""
        )
        print(
            f"  {name:10s} {r['wall']:7.2f} {events / r['wall']:6.0f} {r['driver']:7.2f} "
            f"{r['workers']:8.2f} {r['others']:7.2f} {r['steal']:6.2f} {stream}"
        )
    cap = results["capacity"]
    cap_cluster = max(c["cluster"] for c in cap)
    cap_spin = max(c["spin"] for c in cap)
    print(
        f"  capacity of 2 processes now (2 x alone / together, best): clustering "
        f"{cap_cluster:.2f}, pure Python {cap_spin:.2f}   (idle machine: 2.00)"
    )
    print("  per repeat (same repeat's runs): speed-up dask | futures, capacity, others' CPU s")
    for i, c in enumerate(cap):
        cells = []
        for kind in ("dask", "futures"):
            if f"{kind} 1" in results:
                one, two = results[f"{kind} 1"][i], results[f"{kind} 2"][i]
                cells.append(f"{one['wall'] / two['wall']:5.2f}")
        others = sum(r[i]["others"] for k, r in results.items() if k != "capacity")
        print(
            f"    repeat {i + 1}: {' | '.join(cells)}   capacity {c['cluster']:.2f} "
            f"(spin {c['spin']:.2f})   others {others:6.1f}"
        )
    if "dask 2" in best and "busy" in best["dask 2"]:
        # idle 2-core machine: 1 worker runs on its own core (driver on the other), 2 workers
        # share both cores with the driver, and wait for the last chunk (the tail)
        one, two = best["dask 1"], best["dask 2"]
        estimate = one["workers"] / ((two["workers"] + two["driver"]) / 2 + two["tail"])
        print(
            f"  idle-machine estimate from CPU times, dask: W1 / ((W2 + D2) / 2 + tail) = "
            f"{one['workers']:.2f} / (({two['workers']:.2f} + {two['driver']:.2f}) / 2 + "
            f"{two['tail']:.2f}) = {estimate:.2f}"
        )
    for kind in ("dask", "futures"):
        if f"{kind} 1" not in best:
            continue
        one, two = best[f"{kind} 1"], best[f"{kind} 2"]
        speedup = one["wall"] / two["wall"]
        cpu_ratio = (two["workers"] / one["workers"]) if one["workers"] else float("nan")
        print(
            f"speed-up 2 workers / 1 worker, {kind:8s} {speedup:5.2f}   (target >= 1.8; "
            f"{speedup / cap_cluster:.2f} of the clustering capacity; workers' CPU 2/1 "
            f"{cpu_ratio:.2f})"
        )
    print(f"load after: {os.getloadavg()}")


if __name__ == "__main__":
    main()

"""Cost of the feature directory's manifest and input identity, and of resuming (not a test).

Measured side by side in ONE run on the same events (machines are noisy: only ratios count):

1. ``run_features`` as it is: input identity (stat), preprocessing, chunk stamps, the manifest
   written before and after, done chunks looked up and the cutflow summed from the stamps;
2. the same feature pass without that bookkeeping: input checks, one ``coffea`` runner call
   over the fileset with ``DijetFeatureProcessor``, cutflow and config JSON (what
   ``run_features`` did before the manifest). Both write the same tables.

Alternated (on, off, on, off, ...) into fresh directories, ``--repeats`` times each; the
overhead is median(on) / median(off) - 1 (target < 3%), in wall and in CPU time of this process
(the iterative executor works in it; CPU time is far less disturbed by other jobs on a shared
machine). Also timed directly: the seconds spent inside the bookkeeping functions of
``adhunt.manifest`` during the "on" runs, as a fraction of those runs.

3. resume of a run that was 90% done: the last 10% of the chunks (in processing order) are
   removed from a complete directory and ``run_features`` is called again; its wall time as a
   fraction of the full run (ideal: 0.10 plus start-up).

    python benchmarks/bench_manifest.py --fileset path/to/fileset.json --chunksize 50
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run_without_manifest(fileset: Path, out: Path, chunksize: int) -> None:
    """The feature pass without manifest, identity or stamps lookup (the pre-manifest driver)."""
    from adhunt.config import config_to_dict
    from adhunt.jobs.executors import ExecutorConfig, coffea_runner
    from adhunt.jobs.features import check_inputs, load_datasets, summarize_run
    from adhunt.processors.features import DijetFeatureProcessor, FeatureConfig

    config = FeatureConfig()
    exec_config = ExecutorConfig("iterative", 1, chunksize)
    datasets = load_datasets(fileset, config.tree)
    files = {d: e["files"] for d, e in datasets.items()}
    good, bad, entries = check_inputs(files, config.missing_branches, config.tree)
    out.mkdir(parents=True, exist_ok=True)
    runnable = {d: {"files": {f: files[d][f] for f in names}} for d, names in good.items()}
    with coffea_runner(exec_config, config.schema_class) as runner:
        result = runner(runnable, DijetFeatureProcessor(config, out), treename=None)
    _, cutflow = summarize_run(result, bad, good, entries, files)
    (out / "cutflow.json").write_text(json.dumps({"cutflow": cutflow}, indent=2))
    (out / "features_config.json").write_text(
        json.dumps({"features": config_to_dict(config), "fileset": files}, indent=2)
    )


def run_with_manifest(fileset: Path, out: Path, chunksize: int) -> int:
    from adhunt.jobs.features import run_features

    return run_features(fileset, out, chunksize=chunksize).resumed_chunks


BOOKKEEPING = ("load_manifest", "check_other_datasets", "file_identity", "prepare_dataset",
               "write_manifest", "finish_dataset", "fingerprint")  # fmt: skip
SPENT = [0.0]


def instrument_bookkeeping() -> None:
    """Wrap the manifest functions ``run_features`` calls with a timer (benchmark only)."""
    import functools

    from adhunt import manifest

    for name in BOOKKEEPING:
        fn = getattr(manifest, name)

        @functools.wraps(fn)
        def wrapper(*a, _fn=fn, **k):
            start = time.perf_counter()
            try:
                return _fn(*a, **k)
            finally:
                SPENT[0] += time.perf_counter() - start

        setattr(manifest, name, wrapper)


def timed(fn, *args) -> tuple[float, float]:
    """(wall s, CPU s of this process: the iterative executor works in it, and CPU time is less
    disturbed by other jobs on a shared machine)."""
    start, cpu = time.perf_counter(), time.process_time()
    fn(*args)
    return time.perf_counter() - start, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fileset", type=Path, required=True, help="fileset JSON (a few k events)")
    parser.add_argument("--chunksize", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    import logging

    import uproot

    from adhunt.jobs.features import load_datasets
    from adhunt.manifest import load_manifest
    from adhunt.tables import chunk_filename

    logging.basicConfig(level=logging.WARNING)
    n_events = 0
    for entry in load_datasets(args.fileset).values():
        for name, tree in entry["files"].items():
            with uproot.open(name) as handle:
                n_events += handle[tree].num_entries
    with tempfile.TemporaryDirectory(prefix="bench-integrity-") as tmp:
        root = Path(tmp)
        run_with_manifest(args.fileset, root / "warmup", args.chunksize)  # imports, fastjet banner
        instrument_bookkeeping()
        on, off = [], []
        for i in range(args.repeats):
            on.append(timed(run_with_manifest, args.fileset, root / f"on{i}", args.chunksize))
            off.append(timed(run_without_manifest, args.fileset, root / f"off{i}", args.chunksize))
        spent_on = SPENT[0]
        same = all(
            (root / "on0" / p.relative_to(root / "off0")).is_file()
            for p in (root / "off0").glob("*/*.parquet")
        )

        # resume a run that was 90% done
        full = root / "on0"
        manifest = load_manifest(full)
        chunks = [(d, c) for d, r in manifest.datasets.items() for c in r.chunks]
        n_lost = max(1, round(0.1 * len(chunks)))
        for dataset, chunk in chunks[-n_lost:]:
            (full / chunk_filename(dataset, *chunk)).unlink()
        start, cpu = time.perf_counter(), time.process_time()
        resumed = run_with_manifest(args.fileset, full, args.chunksize)
        t_resume, cpu_resume = time.perf_counter() - start, time.process_time() - cpu

    print(f"events: {n_events}, chunksize {args.chunksize}, chunks {len(chunks)}, "
          f"repeats {args.repeats} (alternated)")  # fmt: skip
    medians = {}
    for k, what in enumerate(("wall", "CPU")):
        m_on, m_off = (statistics.median(t[k] for t in ts) for ts in (on, off))
        medians[what] = m_on
        print(f"{what:4s} with manifest    : {', '.join(f'{t[k]:.2f}' for t in on)} s "
              f"(median {m_on:.2f} s)")  # fmt: skip
        print(f"{what:4s} without manifest : {', '.join(f'{t[k]:.2f}' for t in off)} s "
              f"(median {m_off:.2f} s)")  # fmt: skip
        print(f"{what:4s} manifest + input identity overhead: {m_on / m_off - 1:+.1%} "
              "(target < 3%)")  # fmt: skip
    total_on = sum(t[0] for t in on)
    print(f"time inside the manifest bookkeeping: {spent_on:.3f} s of {total_on:.2f} s "
          f"= {spent_on / total_on:.2%} of the runs with manifest (target < 3%)")  # fmt: skip
    print(f"same chunk files written: {same}")
    print(
        f"resume of a 90%-done run: skipped {resumed} of {len(chunks)} chunks; wall "
        f"{t_resume:.2f} s = {t_resume / medians['wall']:.2f}, CPU {cpu_resume:.2f} s = "
        f"{cpu_resume / medians['CPU']:.2f} of the full run (ideal 0.10 + start-up)"
    )


if __name__ == "__main__":
    main()

"""Extra cost of the opt-in jet representations, as ratios to the default feature pass (not a test).

One run, the same events, the passes interleaved (machines are noisy: only ratios mean anything):

1. default: ``FeatureConfig()`` (what ``adhunt features`` does without options);
2. images: ``--images`` (32 x 32 images of both jets, one ``.images.npy`` per chunk);
3. extended: ``--extended`` (tau_N up to 5 at beta 0.5/1/2, soft-drop mass, D2, n constituents);
4. both options.

Each pass is the whole feature processor (iterative executor, one process): NanoEvents reading,
clustering, selection, features, parquet (and image) writing. Best of ``--repeats`` wall times.

    python benchmarks/bench_representations.py --events 3000 --repeats 3
    python benchmarks/bench_representations.py --fileset .cache/tests/qcd-.../fileset.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

PASSES = {
    "default": {},
    "images": {"images": True},
    "extended": {"extended": True},
    "images + extended": {"images": True, "extended": True},
}


def processor_run(fileset: dict, runner, config, output_dir: Path) -> tuple[float, float, int]:
    """(wall s, CPU s of this process) of one processor pass; events read."""
    from adhunt.processors.features import DijetFeatureProcessor

    start, cpu = time.perf_counter(), time.process_time()
    out = runner(fileset, DijetFeatureProcessor(config, output_dir), treename="Events")
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    return elapsed, cpu, sum(c["events"] for c in out["cutflow"].values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=3000, help="QCD events to generate/use")
    parser.add_argument("--fileset", type=Path, help="use this fileset's first dataset instead")
    parser.add_argument("--repeats", type=int, default=3, help="timings per pass (best kept)")
    parser.add_argument("--seed", type=int, default=4242)
    args = parser.parse_args()

    import logging

    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("coffea").setLevel(logging.ERROR)
    from adhunt.jobs.executors import ExecutorConfig, coffea_runner
    from adhunt.processors.features import FeatureConfig, QuietPFNanoAODSchema

    if args.fileset:
        datasets = json.loads(args.fileset.read_text())
        first = next(iter(datasets.values()))
        files = sorted(first["files"] if isinstance(first, dict) else first)
        fileset = {"qcd": files}
    else:
        from bench_features import sample

        fileset = sample(args.events, args.seed)
    scratch = Path(tempfile.mkdtemp(prefix="bench-representations-"))
    configs = {name: FeatureConfig(**options) for name, options in PASSES.items()}
    best = {name: float("inf") for name in PASSES}
    best_cpu = dict(best)
    n_events = {}
    with coffea_runner(
        ExecutorConfig(executor="iterative", chunksize=100_000), QuietPFNanoAODSchema
    ) as runner:
        processor_run(
            {"qcd": fileset["qcd"][:1]}, runner, configs["images + extended"], scratch / "warm"
        )
        for _ in range(args.repeats):
            for name, config in configs.items():
                wall, cpu, n = processor_run(
                    fileset, runner, config, scratch / name.replace(" ", "")
                )
                best[name], best_cpu[name] = min(best[name], wall), min(best_cpu[name], cpu)
                n_events[name] = n
    assert len(set(n_events.values())) == 1, n_events
    n = n_events["default"]
    print(f"\nevents: {n} QCD events, best of {args.repeats} (wall | CPU of the process)")
    print(f"{'pass':22s} {'events/s':>9s} {'ratio to default':>17s}")
    for name in PASSES:
        print(
            f"{name:22s} {n / best[name]:9.0f} "
            f"{best[name] / best['default']:8.2f} | {best_cpu[name] / best_cpu['default']:5.2f}"
        )
    size = sum(p.stat().st_size for p in (scratch / "images").rglob("*.images.npy"))
    print(f"image files: {size / n / 1024:.1f} KiB per event (2 x 32 x 32 float32 = 8.0 KiB)")


if __name__ == "__main__":
    main()

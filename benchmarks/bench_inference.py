"""Cost of model inference relative to feature extraction (not a test).

Measured side by side in ONE run on the same generated events (machines are noisy, so only ratios
are meaningful), all in one process (iterative executor, scoring threads capped at 1):

a. the feature processor alone (``DijetFeatureProcessor``: NanoEvents reading, anti-kT, selection,
   N-subjettiness, features, parquet writing, cutflow);
b. the scoring step alone: ``model.score(frame, mode="kfold")`` on the whole feature frame;
c. the whole inference processor (``InferenceProcessor``: the same feature code, scoring, cut
   efficiencies and histogram filling), thresholds fixed beforehand.

The model is a CWoLa boosted-tree ensemble with the default ``TrainConfig`` (5 folds x 5 members,
up to 200 iterations each), trained on the features of the generated QCD + W' events in the
default signal region. Target: scoring adds < 10% to the cost of feature extraction, i.e.
(b)/(a) < 0.10 and (c)/(a) < 1.10. Events are generated with ``adhunt.generation`` and cached
under ``bench-output/bench-inference/``.

    python benchmarks/bench_inference.py --events 3000 --repeats 3
"""

from __future__ import annotations

import argparse
import hashlib
import json
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CACHE = REPO / "bench-output" / "bench-inference"


def sample(process: str, n_events: int, seed: int) -> list[str]:
    """ROOT files of a generated sample (cached), sorted."""
    from adhunt.config import config_to_dict
    from adhunt.generation import FILESET_NAME, GenerationConfig, generate_to_root

    config = GenerationConfig(
        process=process, n_events=n_events, seed=seed, events_per_file=max(1, n_events // 2)
    )
    digest = hashlib.sha256(json.dumps(config_to_dict(config), sort_keys=True).encode())
    directory = CACHE / f"{process}-{n_events}-{digest.hexdigest()[:12]}"
    marker = directory / ".complete"
    if not marker.exists():
        print(f"generating {n_events} {process} events into {directory} ...", flush=True)
        generate_to_root(config, directory, workers=2)
        marker.write_text("ok\n")
    fileset = json.loads((directory / FILESET_NAME).read_text())
    return sorted(fileset[process]["files"])


def timed(fn):
    """(wall s, CPU s of this process incl. its threads, result) of ``fn()``."""
    start, cpu = time.perf_counter(), time.process_time()
    result = fn()
    return time.perf_counter() - start, time.process_time() - cpu, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=3000, help="QCD events to generate/use")
    parser.add_argument("--signal-events", type=int, default=300, help="W' events added")
    parser.add_argument("--repeats", type=int, default=3, help="timings per measurement (best)")
    parser.add_argument("--seed", type=int, default=5151)
    args = parser.parse_args()

    import logging

    logging.basicConfig(level=logging.WARNING)
    for noisy in ("distributed", "coffea"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    from threadpoolctl import threadpool_limits

    from adhunt.histograms import DEFAULT_EFFICIENCIES
    from adhunt.jobs.executors import ExecutorConfig, coffea_runner
    from adhunt.jobs.infer import calibrate_thresholds
    from adhunt.models.base import TrainConfig
    from adhunt.models.registry import get_method
    from adhunt.processors.features import (
        DijetFeatureProcessor,
        FeatureConfig,
        QuietPFNanoAODSchema,
    )
    from adhunt.processors.inference import InferenceProcessor, ModelRef, artifact_digest
    from adhunt.regions import SignalRegion
    from adhunt.schema import STANDARD_FEATURES
    from adhunt.tables import read_features

    fileset = {
        "qcd": sample("qcd", args.events, args.seed),
        "wprime": sample("wprime", args.signal_events, args.seed + 1),
    }
    scratch = Path(tempfile.mkdtemp(prefix="bench-inference-"))
    features = FeatureConfig()
    config = ExecutorConfig(executor="iterative", chunksize=100_000)

    # Training data and model (not timed).
    with coffea_runner(config, QuietPFNanoAODSchema) as runner:
        out = runner(fileset, DijetFeatureProcessor(features, scratch / "train"), treename="Events")
    frame = read_features(scratch / "train")
    n_read = sum(c["events"] for c in out["cutflow"].values())
    t0 = time.perf_counter()
    model = get_method("cwola")(
        STANDARD_FEATURES, SignalRegion(), n_folds=5, seed=1, config=TrainConfig()
    ).fit(frame)
    train_s = time.perf_counter() - t0
    model_dir = model.save(scratch / "model")
    with threadpool_limits(limits=1):
        thresholds = calibrate_thresholds(model, frame, DEFAULT_EFFICIENCIES, name="cwola")
    ref = ModelRef("cwola", str(model_dir), artifact_digest(model_dir), thresholds)
    inference = InferenceProcessor(
        [ref], DEFAULT_EFFICIENCIES, features, mode="kfold", datasets=list(fileset), num_threads=1
    )

    best: dict[str, float] = {}

    def keep(name: str, wall: float, cpu: float) -> None:
        best[name] = min(best.get(name, float("inf")), wall)
        best[name + "_cpu"] = min(best.get(name + "_cpu", float("inf")), cpu)

    def score() -> object:
        with threadpool_limits(limits=1):
            return model.score(frame, mode="kfold")

    with coffea_runner(config, QuietPFNanoAODSchema) as runner:
        # warm-up: imports, numba/fastjet initialisation, page cache, the model cache
        runner({"qcd": fileset["qcd"][:1]}, inference, treename="Events")
        score()
        for _ in range(args.repeats):  # interleaved: load changes hit all three alike
            wall, cpu, _ = timed(
                lambda: runner(
                    fileset, DijetFeatureProcessor(features, scratch / "feat"), treename="Events"
                )
            )
            keep("features", wall, cpu)
            wall, cpu, _ = timed(score)
            keep("score", wall, cpu)
            wall, cpu, result = timed(lambda: runner(fileset, inference, treename="Events"))
            keep("inference", wall, cpu)
    n_scored = sum(result["scored"].values())
    assert n_scored == len(frame), (n_scored, len(frame))
    assert result["hist"].sum(flow=True).value == n_scored

    rate = {name: n_read / seconds for name, seconds in best.items()}
    print(
        f"\nevents: {n_read} generated events ({args.events} QCD + {args.signal_events} W'), "
        f"{len(frame)} selected; model: CWoLa HGB, default TrainConfig (5 folds x 5 members), "
        f"trained in {train_s:.0f} s; best of {args.repeats} (wall | CPU of the process)"
    )
    for label, key in (
        ("(a) feature processor (iterative)", "features"),
        ("(b) scoring alone (model.score, kfold)", "score"),
        ("(c) inference processor (iterative)", "inference"),
    ):
        print(f"{label:42s} {rate[key]:9.0f} | {rate[key + '_cpu']:9.0f} events/s/core")
    for label, key, target in (
        ("cost (b)/(a)", "score", "< 0.10"),
        ("cost (c)/(a)", "inference", "< 1.10"),
    ):
        print(
            f"{label:42s} {best[key] / best['features']:9.3f} | "
            f"{best[key + '_cpu'] / best['features_cpu']:9.3f}   (target {target})"
        )


if __name__ == "__main__":
    main()

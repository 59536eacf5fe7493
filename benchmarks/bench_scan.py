"""The sliding-window scan at dataset scale: false excesses, discovery power, speed (not a test).

Everything on one generated LHCO-like table (Pythia 8 QCD dijets + W'(3.5 TeV) -> X(500) Y(100),
detector response and trigger as ``adhunt generate``), measured side by side in one run:

1. ``null``: signal-free QCD, the largest local Z over all windows and cuts for each variant:
   the pre-#7 default (CWoLa on the standard features, training sideband = every event outside
   the window), CWoLa with adjacent sidebands, and the scan-safe default (CWoLa on jet masses
   divided by mjj, adjacent sidebands). Target: < 3 for every variant the README calls safe.
2. ``inject``: the same QCD plus ``--inject`` W' events: local Z in the window of the signal and
   the largest local Z elsewhere, before and after the cheaper per-window training of item 4
   (``n_ensemble`` 5 -> 1, sidebands subsampled to ``max_sideband_ratio`` x SR), with the
   per-window cost ratio.
3. ``speed``: wall time of the default scan on a 1- and a 2-worker dask ``LocalCluster``.
4. ``big`` (timing only): the default scan of ``--big-rows`` rows resampled from the QCD table.

    python benchmarks/bench_scan.py --qcd-events 400000 --signal-events 5000 --inject 700

Samples and feature tables are cached under ``bench-output/bench-scan/`` (or give existing
feature directories with ``--qcd-features`` / ``--signal-features``). A JSON summary is written
to ``bench-output/bench-scan/summary.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
CACHE = REPO / "bench-output" / "bench-scan"


def features_of(process: str, n_events: int, seed: int) -> Path:
    """Feature directory of a generated sample (generated and processed once, cached)."""
    from adhunt.generation import FILESET_NAME, GenerationConfig, generate_to_root
    from adhunt.jobs.features import run_features

    root = CACHE / f"{process}-{n_events}-s{seed}"
    events, feats = root / "events", root / "features"
    if not (events / ".complete").exists():
        print(f"generating {n_events} {process} events into {events} ...", flush=True)
        generate_to_root(GenerationConfig(process=process, n_events=n_events, seed=seed), events, 2)
        (events / ".complete").write_text("ok\n")
    if not (feats / ".complete").exists():
        print(f"features of {events} ...", flush=True)
        run_features(events / FILESET_NAME, feats, executor="dask", workers=2, chunksize=50_000)
        (feats / ".complete").write_text("ok\n")
    return feats


def run(data: Any, config: Any, workers: int = 1, cluster: bool = False) -> tuple[Any, float]:
    """One scan, in this process (threads = cores) or on a dask LocalCluster of ``workers``
    single-threaded workers (``cluster``); (result, wall seconds)."""
    from adhunt.bumphunt import scan
    from adhunt.jobs.executors import ExecutorConfig, task_pool
    from adhunt.models.windows import window_scorer

    exe = ExecutorConfig("dask" if cluster else "iterative", workers=workers)
    truth = data["truth_label"].to_numpy() if (data["truth_label"] == 1).any() else None
    t0 = time.perf_counter()
    with task_pool(exe) as pool:
        cols = [*config.features, "mjj", "mj1", "mj2", "delta_mj", "run", "event"]
        table = data[[c for c in dict.fromkeys(cols) if c in data.columns]]
        threads = 1 if cluster else None  # in-process: the library's default (all cores)
        scorer = window_scorer(pool.share(table), config, num_threads=threads)
        result = scan(data["mjj"], scorer, config, truth=truth, mapper=pool.map)
    return result, time.perf_counter() - t0


def z_table(result: Any, signal_mjj: float | None = None) -> dict[str, Any]:
    """Per cut: max local Z, where, and (with a signal) Z in the signal's window vs elsewhere."""
    out: dict[str, Any] = {}
    for label in result.config.labels:
        entry: dict[str, Any] = {
            "max_z": result.max_local_z([label]),
            "best_window": result.summaries[label].best_window,
            "fit_failed": result.summaries[label].n_windows_fit_failed,
        }
        if signal_mjj is not None:
            near = [w for w in result.windows if w.low <= signal_mjj < w.high]
            far = [
                w for w in result.windows if w.high <= signal_mjj - 200 or w.low >= signal_mjj + 200
            ]
            entry["z_at_signal"] = max((w.z(label) for w in near), default=float("nan"))
            zs = [w.z(label) for w in far if w.z(label) == w.z(label)]
            entry["max_z_elsewhere"] = max(zs, default=float("nan"))
        out[label] = entry
    return out


def show(title: str, table: dict[str, Any], seconds: float, n_windows: int) -> None:
    print(f"\n{title}  ({n_windows} windows, {seconds:.0f} s, {seconds / n_windows:.1f} s/window)")
    for label, e in table.items():
        extra = ""
        if "z_at_signal" in e:
            extra = f"  Z at signal {e['z_at_signal']:+.2f}  max Z elsewhere {e['max_z_elsewhere']:+.2f}"
        print(
            f"  {label:<10} max local Z {e['max_z']:+.2f} at {e['best_window']}  fit_failed {e['fit_failed']}{extra}"
        )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--qcd-events", type=int, default=400_000)
    p.add_argument("--signal-events", type=int, default=5_000)
    p.add_argument("--inject", type=int, default=700)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--qcd-features", type=Path, default=None)
    p.add_argument("--signal-features", type=Path, default=None)
    p.add_argument("--stages", default="null,inject,speed", help="null, inject, speed, big")
    p.add_argument("--big-rows", type=int, default=1_000_000, help="rows of the 'big' stage")
    p.add_argument("--toys", type=int, default=30)
    p.add_argument("--range", default=None, help="scan range LOW:HIGH (default: the fit range)")
    p.add_argument(
        "--old-default",
        action="store_true",
        help="null stage also with the pre-#7 default (all-event sidebands: ~15x the cost)",
    )
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    for noisy in ("distributed", "coffea"):
        logging.getLogger(noisy).setLevel(logging.ERROR)

    from adhunt.bumphunt import ScanConfig
    from adhunt.injection import inject_signal
    from adhunt.schema import STANDARD_FEATURES
    from adhunt.tables import read_table

    stages = set(args.stages.split(","))
    qcd_dir = args.qcd_features or features_of("qcd", args.qcd_events, args.seed)
    qcd = read_table(qcd_dir)
    print(f"QCD: {len(qcd)} selected events from {qcd_dir}")
    if stages & {"inject", "speed"}:
        sig_dir = args.signal_features or features_of("wprime", args.signal_events, args.seed + 1)
        signal = read_table(sig_dir)
        print(f"W': {len(signal)} selected events from {sig_dir}")
    base = ScanConfig(n_toys=args.toys, seed=args.seed, scan_range=args.range)
    default = dataclasses.replace(base)  # the scan-safe default, as `adhunt scan` runs it
    summary: dict[str, Any] = {"n_qcd": len(qcd)}

    if "null" in stages:
        variants = {}
        if args.old_default:
            variants["pre-#7 default: cwola, standard features, all-event sidebands"] = (
                dataclasses.replace(base, features=STANDARD_FEATURES, sideband_width="all")
            )
        variants |= {
            "cwola, standard features, adjacent sidebands": dataclasses.replace(
                base, features=STANDARD_FEATURES
            ),
            "default: cwola, masses / mjj, adjacent sidebands": default,
        }
        summary["null"] = {}
        for name, cfg in variants.items():
            result, seconds = run(qcd, cfg)
            table = z_table(result)
            show(f"[null] {name}", table, seconds, len(result.windows))
            summary["null"][name] = {"z": table, "seconds": seconds, "fit_range": result.fit_range}

    if "inject" in stages or "speed" in stages:
        data = inject_signal(qcd, signal, args.inject, args.seed)
        centre = float(signal["mjj"].median())
    if "inject" in stages:
        before = dataclasses.replace(default, n_ensemble=5, max_sideband_ratio=None)
        after = default
        summary["inject"] = {"n_injected": args.inject, "median_signal_mjj": centre}
        for name, cfg in (
            ("before item 4 (n_ensemble 5, all sideband events)", before),
            ("after item 4 (default)", after),
        ):
            result, seconds = run(data, cfg)
            table = z_table(result, centre)
            tw = result.truth_window
            sic = None if tw is None or tw.roc is None else tw.roc["max_sic"]
            show(
                f"[inject {args.inject}] {name}; max SIC in the signal window {sic}",
                table,
                seconds,
                len(result.windows),
            )
            summary["inject"][name] = {
                "z": table, "seconds": seconds, "per_window_s": seconds / len(result.windows),
                "max_sic_truth_window": sic,
            }  # fmt: skip
        names = list(summary["inject"])[2:]
        ratio = (
            summary["inject"][names[1]]["per_window_s"]
            / summary["inject"][names[0]]["per_window_s"]
        )
        summary["inject"]["per_window_cost_ratio_after_before"] = ratio
        print(f"\nper-window cost after / before item 4: {ratio:.2f}")

    if "speed" in stages:
        _, t1 = run(data, default, workers=1, cluster=True)
        _, t2 = run(data, default, workers=2, cluster=True)
        _, t0 = run(data, default)
        summary["speed"] = {
            "one_worker_s": t1, "two_workers_s": t2, "speedup": t1 / t2, "in_process_s": t0,
        }  # fmt: skip
        print(
            f"\n[speed] default scan on LocalClusters of single-threaded workers: 1 worker "
            f"{t1:.0f} s, 2 workers {t2:.0f} s: speed-up {t1 / t2:.2f}x; in one process with "
            f"2 training threads {t0:.0f} s ({t1 / t0:.2f}x)"
        )

    if "big" in stages:
        # Timing only: a table of --big-rows resampled from the QCD events (new event ids), to
        # check the wall time of the default scan at LHC-Olympics size on this machine.
        import numpy as np

        rows = np.random.default_rng(args.seed).integers(0, len(qcd), args.big_rows)
        big = qcd.iloc[rows].reset_index(drop=True).assign(run=999, event=np.arange(len(rows)))
        result, seconds = run(big, dataclasses.replace(default, n_toys=100))
        summary["big"] = {"rows": args.big_rows, "seconds": seconds}
        print(
            f"\n[big] default scan of {args.big_rows} resampled rows, {len(result.windows)} "
            f"windows, 100 toys, in one process: {seconds:.0f} s"
        )

    CACHE.mkdir(parents=True, exist_ok=True)
    (CACHE / "summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    print(f"\nwrote {CACHE / 'summary.json'}")


if __name__ == "__main__":
    main()

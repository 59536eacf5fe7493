"""Cost of the integrity checks of issue 8 (items 1, 4, 7), as ratios measured side by side.

* input identity (``adhunt.filesets.load_datasets``: stat of every file, duplicate search) vs the
  feature pass over the same fileset;
* the physical-momentum check (``adhunt.inputs.physical_events``) vs the feature pass;
* the duplicate (run, event) check (``adhunt.tables.check_unique_events``) vs ``read_table`` of
  the same table (which includes it).

    python benchmarks/bench_integrity.py                      # 4 files x 2000 events, 1M-row table
    python benchmarks/bench_integrity.py --files 8 --events 5000 --rows 3000000

Events come from ``tests/eventfiles.py`` (dijet sprays of 30-80 candidates, as in the tests).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def best_of(fn, repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=4)
    parser.add_argument("--events", type=int, default=2000, help="events per file")
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows of the parquet table")
    args = parser.parse_args()

    import awkward as ak
    from eventfiles import make_events, write_events

    from adhunt.filesets import load_datasets
    from adhunt.inputs import physical_events
    from adhunt.jobs.features import run_features
    from adhunt.tables import check_unique_events, read_table

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        kinds = ["dijet", "dijet", "monojet", "soft"] * (args.events // 4)
        files = [
            str(write_events(root / f"f{i}.root", make_events(kinds, seed=i + 1)))
            for i in range(args.files)
        ]
        fileset = {"qcd": files}
        t_pass = best_of(lambda: run_features(fileset, root / "out", chunksize=10_000), repeat=1)
        t_identity = best_of(lambda: load_datasets(fileset), repeat=5)
        cands = make_events(kinds, seed=1)["PFCands"]
        cols = {f: ak.values_astype(cands[f], np.float64) for f in ("pt", "eta", "mass")}
        t_physical = best_of(lambda: physical_events(cols["pt"], cols["eta"], cols["mass"]))
        n_events = len(kinds) * args.files
        print(f"feature pass: {n_events} events in {args.files} files, {t_pass:.2f} s")
        print(f"input identity: {t_identity * 1e3:.2f} ms = {t_identity / t_pass:.2e} of the pass")
        print(
            f"physical check: {t_physical * args.files * 1e3:.1f} ms "
            f"= {t_physical * args.files / t_pass:.2%} of the pass"
        )

        rng = np.random.default_rng(0)
        n = args.rows
        table = pd.DataFrame({f"f{i}": rng.normal(size=n) for i in range(12)})
        table["mjj"] = rng.uniform(2000, 6000, n)
        table["run"] = np.repeat(np.arange(1, 11), -(-n // 10))[:n]
        table["event"] = rng.permutation(n)
        table.to_parquet(root / "table.parquet", index=False)
        columns = [f"f{i}" for i in range(4)]
        t_read = best_of(lambda: read_table(root / "table.parquet", None, columns))
        frame = read_table(root / "table.parquet", None, columns)
        t_check = best_of(lambda: check_unique_events(frame))
        print(
            f"duplicate check: {t_check * 1e3:.0f} ms on {n} rows = {t_check / t_read:.1%} of "
            f"read_table ({t_read:.2f} s, check included)"
        )


if __name__ == "__main__":
    main()

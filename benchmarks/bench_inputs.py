"""Real-input costs of the feature pass (not a test): PUPPI weighting, and TTree vs RNTuple.

Events: the 10 PFNano events of ``tests/samples/pfnano.root`` (real CMS PFCands with PUPPI weights,
~1700 candidates per event) replicated ``--copies`` times into one TTree and into one RNTuple with
the same content (written under ``.cache/bench/``). Measured in ONE run, interleaved, best of
``--repeats`` (machines are noisy, so only the ratios are meaningful), with the feature processor on
the iterative executor (reading, PUPPI weighting, anti-kT R = 0.8, N-subjettiness, parquet):

1. TTree, PUPPI on vs off: the same events; PUPPI removes zero-weight candidates, so weighting
   also changes what is clustered (target: on costs < 5% more than off);
2. TTree vs RNTuple, PUPPI on: time per event (target: RNTuple within 2x), plus the bare read of
   the same columns with uproot for each format, to show where the time goes.

    python benchmarks/bench_inputs.py --copies 50 --repeats 3
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SOURCE = REPO / "tests" / "samples" / "pfnano.root"
FIELDS = ("pt", "eta", "phi", "mass", "puppiWeight", "charge", "pdgId")


def build_inputs(copies: int) -> tuple[Path, Path]:
    """(TTree file, RNTuple file) with the pfnano events repeated ``copies`` times."""
    import awkward as ak
    import numpy as np
    import uproot

    directory = REPO / ".cache" / "bench" / f"pfnano-x{copies}"
    ttree, rntuple = directory / "ttree.root", directory / "rntuple.root"
    if ttree.exists() and rntuple.exists():
        return ttree, rntuple
    directory.mkdir(parents=True, exist_ok=True)
    with uproot.open(SOURCE) as handle:
        raw = handle["Events"].arrays(
            ["run", "luminosityBlock", "event", "genWeight", *(f"PFCands_{f}" for f in FIELDS)]
        )
    n = len(raw)
    index = np.tile(np.arange(n), copies)
    cands = ak.zip({f: raw[f"PFCands_{f}"][index] for f in FIELDS})
    columns = {
        "run": ak.to_numpy(raw.run)[index],
        "luminosityBlock": ak.to_numpy(raw.luminosityBlock)[index],
        "event": np.arange(len(index), dtype=np.uint64),
        "genWeight": ak.to_numpy(raw.genWeight)[index],
    }
    with uproot.recreate(ttree) as out:
        out.mktree(
            "Events", {**{k: v.dtype for k, v in columns.items()}, "PFCands": cands.type.content}
        )
        out["Events"].extend({**columns, "PFCands": cands})
    # RNTuple, NanoAOD-style flat fields (nPFCands + PFCands_pt ...), as CMS writes RNTuple NanoAOD
    flat = {**columns, "nPFCands": ak.to_numpy(ak.num(cands)).astype(np.int32)}
    flat.update({f"PFCands_{f}": cands[f] for f in FIELDS})
    with uproot.recreate(rntuple) as out:
        out["Events"] = ak.Array(flat)
    return ttree, rntuple


def processor_pass(path: Path, puppi: bool, scratch: Path) -> tuple[float, int]:
    """(wall s, events) of one feature-processor pass (iterative executor) over one file."""
    from adhunt.jobs.executors import ExecutorConfig, coffea_runner
    from adhunt.processors.features import DijetFeatureProcessor, FeatureConfig

    config = FeatureConfig(radius=0.8, apply_trigger=False, puppi=puppi)
    start = time.perf_counter()
    with coffea_runner(ExecutorConfig(chunksize=100_000), config.schema_class) as runner:
        out = runner(
            {"pf": {"files": {str(path): "Events"}}},
            DijetFeatureProcessor(config, scratch),
            treename=None,
        )
    return time.perf_counter() - start, sum(c["events"] for c in out["cutflow"].values())


def bare_read(path: Path) -> float:
    """Wall s to read the candidate columns with uproot alone (the format's own cost)."""
    import uproot

    start = time.perf_counter()
    with uproot.open(path) as handle:
        handle["Events"].arrays(
            [f"PFCands_{f}" for f in ("pt", "eta", "phi", "mass", "puppiWeight")]
        )
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--copies", type=int, default=50, help="copies of the 10 pfnano events")
    parser.add_argument(
        "--repeats", type=int, default=3, help="timings per measurement (best kept)"
    )
    args = parser.parse_args()

    import logging
    import warnings

    logging.basicConfig(level=logging.WARNING)
    warnings.filterwarnings("ignore")
    ttree, rntuple = build_inputs(args.copies)
    scratch = Path(tempfile.mkdtemp(prefix="bench-inputs-"))
    best: dict[str, float] = {}
    n_events = 0
    processor_pass(ttree, True, scratch / "warm")  # imports, fastjet banner, page cache
    processor_pass(rntuple, True, scratch / "warm")
    for _ in range(args.repeats):
        for name, path, puppi in (
            ("ttree_puppi", ttree, True),
            ("ttree_nopuppi", ttree, False),
            ("rntuple_puppi", rntuple, True),
        ):
            wall, n_events = processor_pass(path, puppi, scratch / name)
            best[name] = min(best.get(name, float("inf")), wall)
        for name, path in (("read_ttree", ttree), ("read_rntuple", rntuple)):
            best[name] = min(best.get(name, float("inf")), bare_read(path))

    def per_event(key: str) -> str:
        return f"{1e3 * best[key] / n_events:.3f} ms/event"

    print(f"events per pass: {n_events} ({args.copies} x pfnano.root), best of {args.repeats}")
    print(f"TTree, PUPPI on : {best['ttree_puppi']:.3f} s  {per_event('ttree_puppi')}")
    print(f"TTree, PUPPI off: {best['ttree_nopuppi']:.3f} s  {per_event('ttree_nopuppi')}")
    print(f"PUPPI cost ratio (on / off): {best['ttree_puppi'] / best['ttree_nopuppi']:.3f}")
    print(f"RNTuple, PUPPI on: {best['rntuple_puppi']:.3f} s  {per_event('rntuple_puppi')}")
    print(f"RNTuple / TTree per event: {best['rntuple_puppi'] / best['ttree_puppi']:.3f}")
    print(
        f"bare uproot read of the candidates: TTree {best['read_ttree']:.3f} s, "
        f"RNTuple {best['read_rntuple']:.3f} s (ratio {best['read_rntuple'] / best['read_ttree']:.3f})"
    )


if __name__ == "__main__":
    main()

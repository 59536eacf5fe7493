"""CATHODE speed benchmark: the default flow settings vs the reference configuration, side by side.

The reference (CATHODE paper) flow is a 15-block MAF x 128 hidden, batch 256, lr 1e-4; on ~550k sideband
events and 2 CPU cores it costs ~50 s/epoch and ~25 min in all. This script trains both configurations on
the SAME data in the same run (machines are noisy: only ratios are meaningful) and prints wall time,
epochs, validation NLL and, when truth labels are available, the max SIC of the resulting CATHODE score.

    python benchmarks/bench_cathode.py --n-events 200000            # LHCO-like toy
    python benchmarks/bench_cathode.py --features DIR --n-events 800000
    python benchmarks/bench_cathode.py --scan --n-events 100000     # flow settings: NLL vs time
    python benchmarks/bench_cathode.py --flow-only ...              # flows only (no classifier)

The toy mimics the LHCO R&D features (GeV): a steeply falling mjj, jet masses that scale with mjj,
tau21 in (0, 1) correlated with the jet mass, and a W'(3.5 TeV) -> X(500) Y(100) signal with two-prong
jets (low tau21).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time

import numpy as np
import pandas as pd

FEATURES = ("mj1", "delta_mj", "tau21_j1", "tau21_j2")


def make_toy_events(n_background: int, n_signal: int, seed: int) -> pd.DataFrame:
    """LHCO-like feature table (subset of FEATURE_COLUMNS) with truth labels, seeded."""
    rng = np.random.default_rng(seed)

    def background(n: int) -> dict[str, np.ndarray]:
        # Power-law mjj above 2.6 TeV, truncated at 7 TeV.
        mjj = 2600.0 * rng.uniform(1e-3, 1.0, n) ** (-1.0 / 5.0)
        mjj = np.where(mjj < 7000.0, mjj, 2600.0 + rng.uniform(0, 400, n))
        scale = 0.03 * mjj * (mjj / 3500.0) ** 0.3
        ma = scale * rng.lognormal(0.0, 0.55, n)
        mb = scale * rng.lognormal(0.0, 0.55, n)
        light, heavy = np.minimum(ma, mb), np.maximum(ma, mb)

        def tau21(m: np.ndarray) -> np.ndarray:
            base = rng.beta(5.0, 2.5, len(m))
            logit = np.log(base) - np.log1p(-base) - 0.35 * np.log(m / scale)
            return 1.0 / (1.0 + np.exp(-logit))

        return {
            "mjj": mjj,
            "mj1": light,
            "mj2": heavy,
            "tau21_j1": tau21(light),
            "tau21_j2": tau21(heavy),
        }

    def signal(n: int) -> dict[str, np.ndarray]:
        mjj = rng.normal(3500.0, 110.0, n)
        mx = rng.normal(500.0, 25.0, n)
        my = rng.normal(100.0, 8.0, n)
        return {
            "mjj": mjj,
            "mj1": np.minimum(mx, my),
            "mj2": np.maximum(mx, my),
            "tau21_j1": rng.beta(2.0, 5.0, n),
            "tau21_j2": rng.beta(2.0, 5.0, n),
        }

    parts = []
    for label, n, gen in ((0, n_background, background), (1, n_signal, signal)):
        cols = gen(n)
        df = pd.DataFrame(cols)
        df["delta_mj"] = df["mj2"] - df["mj1"]
        df["truth_label"] = label
        df["dataset"] = "toy_bkg" if label == 0 else "toy_sig"
        parts.append(df)
    out = pd.concat(parts, ignore_index=True)
    out = out.sample(frac=1.0, random_state=seed).reset_index(drop=True)
    out["run"] = 1
    out["event"] = np.arange(len(out), dtype=np.int64)
    return out


def _load(args: argparse.Namespace) -> pd.DataFrame:
    if args.features:
        from adhunt.tables import read_features  # helper B's reader

        data = read_features(args.features)
        if args.n_events and len(data) > args.n_events:
            data = data.sample(n=args.n_events, random_state=args.seed).reset_index(drop=True)
        return data
    n_sig = args.n_signal if args.n_signal is not None else round(args.n_events * 0.005)
    return make_toy_events(args.n_events - n_sig, n_sig, args.seed)


def _flow_inputs(data: pd.DataFrame, args: argparse.Namespace):
    """Sideband events -> logit+standardised features, split train/val/test (fixed, seeded)."""
    from adhunt.models.preprocessing import LogitScaler, Pipeline, Standardizer
    from adhunt.regions import SignalRegion

    region = SignalRegion(args.low, args.high)
    sb = data[region.in_sb(data["mjj"].to_numpy())]
    x = sb[list(FEATURES)].to_numpy(np.float64)
    m = sb["mjj"].to_numpy(np.float64)[:, None] / 1000.0
    rng = np.random.default_rng(args.seed)
    perm = rng.permutation(len(x))
    n_test = len(x) // 10
    n_val = len(x) // 5
    test, val, train = perm[:n_test], perm[n_test : n_test + n_val], perm[n_test + n_val :]
    pre = Pipeline([LogitScaler(margin=0.05), Standardizer()]).fit(x[train])
    lo, hi = pre.steps[0].low, pre.steps[0].high
    inside = np.all((x >= lo) & (x <= hi), axis=1)  # as CATHODE does: no clipped values in NLLs
    z = pre.transform(x)
    return {
        k: (z[i[inside[i]]], m[i[inside[i]]])
        for k, i in (("train", train), ("val", val), ("test", test))
    }


def _scan(args: argparse.Namespace) -> None:
    """Validation NLL vs wall time for a set of flow configurations on the same sideband data."""
    from adhunt.models.flows import REFERENCE_FLOW_CONFIG, ConditionalFlow, FlowConfig

    data = _load(args)
    parts = _flow_inputs(data, args)
    n_train = len(parts["train"][0])
    cands = {
        "reference maf15x128 b256": dataclasses.replace(
            REFERENCE_FLOW_CONFIG, epochs=args.ref_epochs
        ),
        "default": FlowConfig(),
        "rqs4x64L2 b4096": FlowConfig(kind="rqs", n_blocks=4, hidden=64, n_layers=2),
        "rqs4x32L1 b4096": FlowConfig(kind="rqs", n_blocks=4, hidden=32, n_layers=1),
        "rqs3x64L1 b8192 lr3e-3": FlowConfig(
            kind="rqs", n_blocks=3, hidden=64, n_layers=1, batch_size=8192, lr=3e-3
        ),
        "maf6x64L1 b4096": FlowConfig(kind="maf", n_blocks=6, hidden=64, n_layers=1),
        "maf8x64L2 b4096": FlowConfig(kind="maf", n_blocks=8, hidden=64, n_layers=2),
    }
    if args.only:
        cands = {k: v for k, v in cands.items() if any(s in k for s in args.only.split(","))}
    print(f"# flow scan on {n_train} sideband training events, seed {args.seed}")
    print(
        f"{'config':28s} {'params':>8s} {'epochs':>6s} {'s/epoch':>8s} {'wall s':>8s} "
        f"{'val NLL':>9s} {'test NLL':>9s}"
    )
    rows = []
    for name, cfg in cands.items():
        flow = ConditionalFlow(len(FEATURES), cfg, seed=args.seed)
        t0 = time.perf_counter()
        flow.fit(*parts["train"], *parts["val"])
        wall = time.perf_counter() - t0
        ep = len(flow.history.val_loss)
        test = -float(np.mean(flow.log_prob(*parts["test"])))
        rows.append((name, wall, test))
        print(
            f"{name:28s} {flow.n_parameters():8d} {ep:6d} {wall / ep:8.2f} {wall:8.1f} "
            f"{flow.history.best_val_loss:9.4f} {test:9.4f}",
            flush=True,
        )
    ref = rows[0]
    if not ref[0].startswith("reference"):
        return
    for name, wall, test in rows[1:]:
        print(
            f"{name:28s} speed-up x{ref[1] / wall:5.1f}   test NLL - reference: {test - ref[2]:+.4f}"
        )


def _cathode(args: argparse.Namespace) -> None:
    """End-to-end CATHODE with the default flow vs the reference flow on the same data."""
    from adhunt.models.base import TrainConfig
    from adhunt.models.cathode import Cathode, CathodeConfig
    from adhunt.models.flows import REFERENCE_FLOW_CONFIG, FlowConfig
    from adhunt.performance import roc_sic
    from adhunt.regions import SignalRegion

    data = _load(args)
    region = SignalRegion(args.low, args.high)
    sr = region.in_sr(data["mjj"].to_numpy())
    labels = data["truth_label"].to_numpy() if "truth_label" in data else None
    print(
        f"# {len(data)} events, {int(sr.sum())} in SR, "
        f"{int(labels[sr].sum()) if labels is not None else '?'} signal in SR"
    )
    if args.features:
        # Labelled features dir: k-fold scores of the SR events themselves.
        test, test_mode = data[sr & (labels >= 0)] if labels is not None else None, "kfold"
    else:
        # Toy: an independent SR test set with plenty of signal, scored by the fold ensemble.
        t = make_toy_events(args.n_events // 2, args.n_events // 50, args.seed + 1000)
        test, test_mode = t[region.in_sr(t["mjj"].to_numpy())], "ensemble"
    configs = {
        "default": FlowConfig(),
        "reference": dataclasses.replace(REFERENCE_FLOW_CONFIG, epochs=args.ref_epochs),
    }
    if args.skip_reference:
        configs.pop("reference")
    results = {}
    for name, flow_cfg in configs.items():
        cfg = CathodeConfig(flow=flow_cfg, classifier=TrainConfig(backend=args.backend))
        model = Cathode(FEATURES, region, n_folds=args.folds, seed=args.seed, config=cfg)
        t0 = time.perf_counter()
        model.fit(data.drop(columns=["truth_label"], errors="ignore"))
        wall = time.perf_counter() - t0
        summ = model.summary
        line = (
            f"{name:10s} wall {wall:7.1f} s  flow {summ['flow_seconds']:7.1f} s  "
            f"epochs {summ['flow_epochs']}  flow val NLL {summ['flow_val_nll']:.4f}"
        )
        if test is not None and test["truth_label"].sum() > 0:
            perf = roc_sic(test["truth_label"].to_numpy(), model.score(test, mode=test_mode))
            line += f"  AUC {perf['auc']:.3f}  max SIC {perf['max_sic'] or float('nan'):.2f}"
        results[name] = wall
        print(line, flush=True)
    if "reference" in results:
        print(f"speed-up default vs reference: x{results['reference'] / results['default']:.2f}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n-events", type=int, default=200_000)
    p.add_argument("--n-signal", type=int, default=None, help="toy only; default 0.1%% of events")
    p.add_argument(
        "--features", default=None, help="features dir (adhunt.tables) instead of the toy"
    )
    p.add_argument("--low", type=float, default=3300.0)
    p.add_argument("--high", type=float, default=3700.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--backend", default="hgb")
    p.add_argument("--ref-epochs", type=int, default=30, help="epoch cap of the reference flow")
    p.add_argument("--skip-reference", action="store_true")
    p.add_argument("--scan", action="store_true", help="flow settings scan only")
    p.add_argument("--only", default=None, help="scan: comma-separated substrings of config names")
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    if args.scan:
        _scan(args)
    else:
        _cathode(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())

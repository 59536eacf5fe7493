"""Make the figures of the docs pages (docs/figures/*.png) from a real run of the chain.

    .venv/bin/python docs/make_figures.py   # 2 min on 2 cores with the demo sample cached, 8 without

What it runs, in order (everything with the defaults of ``adhunt demo``, seed 20261124):

1. ``adhunt demo`` (the library call ``run_demo``): generates 40k QCD + 200 W' events with Pythia 8
   (or reuses them from ``--cache-dir``, the cache ``make demo`` fills), extracts the features on a
   dask LocalCluster, trains CWoLa hunting in the SR 3300-3700 GeV, runs the inference processor into
   mjj histograms per score cut and fits them with the SR masked;
2. ``adhunt scan`` on the demo's feature table (CWoLa per window, 0 toys: local Z only);
3. the plots below, drawn from those outputs.

Figures (docs/figures/):

    generate_candidates.png  invariant mass and multiplicity of all PF candidates (uproot, no jets)
    features.png             adhunt.feature_plots.plot_feature_distributions (what demo draws)
    train_sic.png            SIC of the k-fold CWoLa score on the SR events (demo's sic.png)
    infer_mjj_cuts.png       mjj per score cut from inference/histograms.json
    scan_spectrum.png        demo's post-cut spectrum (1% cut) with the dijet fit, SR masked, local Z
    scan_local_significance.png  local Z per window of ``adhunt scan``

It also prints the cutflow as a markdown table (pasted into docs/features.md) and the demo's
significance table. PNGs are scaled to 640-1000 pixels wide (about 70-80 dpi for the library's
9-inch figures) and reduced to a 256-colour palette, so each stays well below 150 kB; the work
directory (``--work``, default ``.cache/docs-figures``) is not committed.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

DOCS = Path(__file__).resolve().parent
MAX_BYTES = 150_000
DPI = 80

logger = logging.getLogger("make_figures")


def shrink_png(src: Path, dst: Path, width: int = 800) -> Path:
    """Copy ``src`` to ``dst`` scaled to ``width`` pixels and quantised to 256 colours."""
    from PIL import Image

    with Image.open(src) as img:
        img = img.convert("RGB")
        if img.width > width:
            img = img.resize((width, round(img.height * width / img.width)), Image.LANCZOS)
        img.quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(dst, optimize=True)
    size = dst.stat().st_size
    if size > MAX_BYTES:
        raise RuntimeError(f"{dst}: {size} bytes, more than {MAX_BYTES}")
    logger.info("wrote %s (%d kB)", dst, size // 1000)
    return dst


def candidate_observables(fileset_json: Path) -> dict[str, dict[str, np.ndarray]]:
    """Per dataset: invariant mass of all PF candidates of each event, and their number.

    Read straight from the ROOT files with uproot and numpy (no jets), as a check of the generated
    events before any processor runs: the same code works on any file of the schema."""
    import awkward as ak
    import uproot

    out: dict[str, dict[str, np.ndarray]] = {}
    fileset = json.loads(fileset_json.read_text())
    for dataset, entry in fileset.items():
        masses, counts = [], []
        for path, tree in entry["files"].items():
            with uproot.open(path) as f:
                a = f[tree].arrays(["PFCands_pt", "PFCands_eta", "PFCands_phi", "PFCands_mass"])
            pt, eta, phi, m = (a[f"PFCands_{k}"] for k in ("pt", "eta", "phi", "mass"))
            px = ak.sum(pt * np.cos(phi), axis=1)
            py = ak.sum(pt * np.sin(phi), axis=1)
            pz = ak.sum(pt * np.sinh(eta), axis=1)
            e = ak.sum(np.sqrt((pt * np.cosh(eta)) ** 2 + m**2), axis=1)
            m2 = ak.to_numpy(e**2 - px**2 - py**2 - pz**2)
            masses.append(np.sqrt(np.clip(m2, 0.0, None)))
            counts.append(ak.to_numpy(ak.num(pt, axis=1)))
        out[dataset] = {"mass": np.concatenate(masses), "n": np.concatenate(counts)}
    return out


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import mplhep

    plt.style.use(mplhep.style.CMS)  # as the library's own plots
    return plt


def plot_candidates(obs: dict[str, dict[str, np.ndarray]], path: Path) -> Path:
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(18, 7))
    panels = (
        ("mass", np.linspace(0, 8000, 41), "invariant mass of all PF candidates [GeV]"),
        ("n", np.linspace(0, 600, 41), "number of PF candidates"),
    )
    for ax, (key, bins, xlabel) in zip(axes, panels, strict=True):
        for dataset, values in obs.items():
            ax.hist(
                values[key],
                bins=bins,
                density=True,
                histtype="step",
                lw=1.5,
                label=f"{dataset} ({len(values[key])} events)",
            )
        ax.set_xlabel(xlabel)
        ax.set_ylabel("normalised")
    axes[0].legend(fontsize="small", title="after detector and trigger", title_fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def plot_cut_spectra(histograms_json: Path, model: str, path: Path) -> Path:
    """mjj of all events ("data" = every dataset) per score cut, and of the W' events alone."""
    from adhunt.histograms import cut_spectra, read_histogram_json

    plt = _pyplot()
    h = read_histogram_json(histograms_json)
    fig, axes = plt.subplots(1, 2, figsize=(18, 7.5), sharey=True)
    for ax, dataset, title in (
        (axes[0], None, "all events (QCD + injected W')"),
        (axes[1], "wprime", "W' events only (truth)"),
    ):
        for label, spectrum in cut_spectra(h, model, dataset=dataset).items():
            edges = spectrum.axes[0].edges
            values = spectrum.values()
            ax.stairs(
                values, edges, lw=1.5, label=f"{label} ({spectrum.sum(flow=True).value:.0f} events)"
            )
        ax.axvspan(3300, 3700, color="gold", alpha=0.25, lw=0)
        ax.set_yscale("log")
        ax.set_xlim(1500, 6500)
        ax.set_xlabel(r"$m_{jj}$ [GeV]")
        ax.set_title(title, fontsize="medium")
        ax.legend(title=f"{model} cut (bkg. eff.)", fontsize="small", title_fontsize="small")
    axes[0].set_ylabel("events / bin")
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def cutflow_markdown(cutflow: dict[str, dict[str, int]]) -> str:
    datasets = list(cutflow)
    steps = list(next(iter(cutflow.values())))
    lines = ["| step | " + " | ".join(datasets) + " |", "|---" * (len(datasets) + 1) + "|"]
    for step in steps:
        lines.append(f"| {step} | " + " | ".join(str(cutflow[d][step]) for d in datasets) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", type=Path, default=Path(".cache/docs-figures"))
    parser.add_argument("--cache-dir", type=Path, default=Path(".cache/demo"))
    parser.add_argument("--figures", type=Path, default=DOCS / "figures")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--reuse", action="store_true", help="Keep the demo/scan outputs of an earlier run."
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")

    from adhunt.jobs.demo import DemoConfig, run_demo

    work: Path = args.work
    demo_dir, scan_dir, raw = work / "demo", work / "scan", work / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    args.figures.mkdir(parents=True, exist_ok=True)

    if not (args.reuse and (demo_dir / "demo.json").exists()):
        run_demo(
            demo_dir, DemoConfig(workers=args.workers), cache_dir=args.cache_dir, overwrite=True
        )
    summary = json.loads((demo_dir / "demo.json").read_text())

    if not (args.reuse and (scan_dir / "scan.json").exists()):
        # The CLI itself, as a user runs it: per-window CWoLa on the demo's (QCD + W') table.
        adhunt = Path(sys.executable).with_name("adhunt")
        command = [
            str(adhunt), "scan", "--features", str(demo_dir / "features"), "--output",
            str(scan_dir), "--range", "2600:5000", "--toys", "0", "--seed", "1",
            "--executor", "futures", "--workers", str(args.workers), "--overwrite",
        ]  # fmt: skip
        logger.info("running %s", " ".join(command))
        subprocess.run(command, check=True)

    fig = args.figures
    plot_candidates(candidate_observables(demo_dir / "fileset.json"), raw / "generate.png")
    shrink_png(raw / "generate.png", fig / "generate_candidates.png", width=1000)
    shrink_png(demo_dir / "features.png", fig / "features.png", width=1000)
    shrink_png(demo_dir / "sic.png", fig / "train_sic.png", width=640)
    plot_cut_spectra(demo_dir / "inference" / "histograms.json", "cwola", raw / "infer.png")
    shrink_png(raw / "infer.png", fig / "infer_mjj_cuts.png", width=1000)
    spectrum = demo_dir / "spectrum_1pct.png"
    if not spectrum.exists():  # the tightest cut that could be fit
        spectrum = sorted(demo_dir.glob("spectrum_*.png"))[-1]
    shrink_png(spectrum, fig / "scan_spectrum.png", width=640)
    shrink_png(scan_dir / "local_significance.png", fig / "scan_local_significance.png", width=640)
    shutil.copy(scan_dir / "scan.json", raw / "scan.json")

    print("\ncutflow (docs/features.md):\n")
    print(cutflow_markdown(summary["cutflow"]))
    print("\nSR significance per cut (docs/scan.md):\n")
    for label, entry in summary["significance"].items():
        if entry.get("status") == "ok":
            print(
                f"| {label} | {entry['observed']:.0f} | {entry['expected']:.1f} +- "
                f"{entry['expected_error']:.1f} | {entry.get('true_signal_in_sr', float('nan')):.0f}"
                f" | {entry['z_signed']:+.2f} |"
            )
        else:
            print(f"| {label} | {entry.get('status')}: {entry.get('reason')} |")
    scan = json.loads((scan_dir / "scan.json").read_text())
    print("\nscan best:", json.dumps(scan.get("best")))
    print("timings (s):", summary["timings_s"])


if __name__ == "__main__":
    main()

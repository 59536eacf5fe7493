"""Names shared by every stage: event-file branches and feature-table columns.

Event files follow CMS NanoAOD / PFNanoAOD naming so that the same processor reads real PFNano.
Feature tables are in GeV; jets j1/j2 are the two leading-pT jets, re-ordered by mass (j1 = lighter),
as in the LHC Olympics reference benchmark.
"""

from __future__ import annotations

TREE_NAME = "Events"

#: PF-candidate branches (float32 kinematics, int32 charge/pdgId) and event-level branches.
PFCANDS_FLOAT_FIELDS = ("pt", "eta", "phi", "mass")
PFCANDS_INT_FIELDS = ("charge", "pdgId")
EVENT_BRANCHES = ("run", "luminosityBlock", "event")
#: int32, 1 signal, 0 background. One word: NanoAOD naming splits ``a_b`` into collection and field.
TRUTH_BRANCH = "truthLabel"

#: Every column of a feature table, in order. ``weight``: genWeight (simulation, optionally
#: normalised to cross-section x luminosity) or 1 (data); ``luminosityBlock`` for lumi masks.
FEATURE_COLUMNS = (
    "dataset",
    "run",
    "luminosityBlock",
    "event",
    "mjj",
    "mj1",
    "mj2",
    "delta_mj",
    "tau1_j1",
    "tau2_j1",
    "tau3_j1",
    "tau1_j2",
    "tau2_j2",
    "tau3_j2",
    "tau21_j1",
    "tau21_j2",
    "tau32_j1",
    "tau32_j2",
    "pt_j1",
    "pt_j2",
    "eta_j1",
    "eta_j2",
    "delta_eta",
    "truth_label",
    "weight",
)
#: Bookkeeping columns before and after the dijet features in :data:`FEATURE_COLUMNS`.
LEADING_COLUMNS = ("dataset", "run", "luminosityBlock", "event")
TRAILING_COLUMNS = ("truth_label", "weight")

#: The standard five features of the CWoLa / CATHODE papers (mjj is the conditioning variable).
STANDARD_FEATURES = ("mj1", "delta_mj", "tau21_j1", "tau21_j2")  # + mjj, the conditioning variable
RESONANT_VARIABLE = "mjj"

#: Default signal region of the LHCO R&D benchmark, GeV.
DEFAULT_SIGNAL_REGION = (3300.0, 3700.0)

#: Jet-mass features divided by mjj. QCD jet masses grow with the jet pT (m ~ pT R sqrt(alpha_s)),
#: hence with mjj: a classifier of signal region vs sidebands learns that correlation and its cut
#: sculpts a bump into whichever window it was trained on. m/mjj is nearly mjj-independent for QCD
#: while a resonance's daughters stay sharp peaks in it. Computed, never stored: see
#: :func:`adhunt.dijet.with_derived_features`. ``m/pT`` of each jet is the boost-invariant mass
#: that FORCE regresses the jet pT from (a pT regression must not see a scale).
DERIVED_FEATURES: dict[str, tuple[str, str]] = {
    "mj1_over_mjj": ("mj1", "mjj"),
    "mj2_over_mjj": ("mj2", "mjj"),
    "delta_mj_over_mjj": ("delta_mj", "mjj"),
    "mj1_over_pt_j1": ("mj1", "pt_j1"),
    "mj2_over_pt_j2": ("mj2", "pt_j2"),
}

#: Per-jet inputs of the outlier detectors (ae, vae, tnt): each jet's mass and tau ratios. j1 and
#: j2 columns pair up by name (``mj1`` <-> ``mj2``, ``*_j1`` <-> ``*_j2``).
JET_FEATURES = ("mj1", "tau21_j1", "tau32_j1", "mj2", "tau21_j2", "tau32_j2")
#: Per-jet scale/boost-invariant inputs of FORCE (it regresses the jet pT from them).
INVARIANT_JET_FEATURES = (
    "mj1_over_pt_j1", "tau21_j1", "tau32_j1", "mj2_over_pt_j2", "tau21_j2", "tau32_j2",
)  # fmt: skip

#: Default inputs of the sliding-window scan: the standard features with the masses scaled by mjj.
SCAN_FEATURES = ("mj1_over_mjj", "delta_mj_over_mjj", "tau21_j1", "tau21_j2")

# --- optional columns (``adhunt features --extended`` / ``--images``) -----------------------------
# Written only when configured, after FEATURE_COLUMNS, and listed in ``features_config.json``
# ("extra_columns"); the table readers refuse extra columns a directory does not declare.

#: N-subjettiness exponents of the extended set, and their tag in column names (0.5 -> "05").
EXTENDED_BETAS = (0.5, 1.0, 2.0)
EXTENDED_N_MAX = 5


def beta_tag(beta: float) -> str:
    """Column-name tag of an angular exponent: 0.5 -> "05", 1.0 -> "1", 2.0 -> "2"."""
    text = f"{beta:g}"
    return text.replace(".", "") if text.startswith("0.") else text.replace(".", "p")


def extended_columns() -> tuple[str, ...]:
    """Columns of the extended substructure set, per jet j1 (lighter) and j2 (heavier):

    - ``tau{N}_b{B}_j{k}``: tau_N, N = 1..5, at beta = 0.5, 1, 2 (B = 05, 1, 2), R0 = jet radius
      (``tau{N}_b1_j{k}`` equals ``tau{N}_j{k}`` of the default set when its beta is 1);
    - ``tau{N}{N-1}_b{B}_j{k}``: the ratios tau21, tau32, tau43, tau54 (0 on a zero denominator);
    - ``msd_j{k}``: soft-drop mass (z_cut 0.1, beta 0 by default; GeV);
    - ``d2_j{k}``: energy-correlation ratio D2 (beta 1) of the ungroomed jet;
    - ``nconst_j{k}``: number of constituents.

    Jet pT and eta are ``pt_j{k}``/``eta_j{k}`` of :data:`FEATURE_COLUMNS`.
    """
    names = []
    for k in (1, 2):
        for beta in EXTENDED_BETAS:
            tag = beta_tag(beta)
            names += [f"tau{n}_b{tag}_j{k}" for n in range(1, EXTENDED_N_MAX + 1)]
            names += [f"tau{n}{n - 1}_b{tag}_j{k}" for n in range(2, EXTENDED_N_MAX + 1)]
        names += [f"msd_j{k}", f"d2_j{k}", f"nconst_j{k}"]
    return tuple(names)


#: Columns written with jet images: per jet, the pT inside the image grid before normalisation
#: (GeV) and the number of constituents dropped because they fell outside it.
IMAGE_COLUMNS = ("image_pt_j1", "image_pt_j2", "image_outside_j1", "image_outside_j2")
#: Suffix of a chunk's image file, next to its parquet table (``<chunk>.images.npy``).
IMAGE_SUFFIX = ".images.npy"
#: Pseudo-columns of the jet images (``read_table(..., columns=[..., "image_j1"])``): one float32
#: ``[S, S]`` array per row, j1 = the lighter jet. Not stored in the parquet tables: loaded from the
#: chunks' ``.images.npy`` files only when asked for, so feature-only readers pay nothing.
IMAGE_PSEUDO_COLUMNS = ("image_j1", "image_j2")

"""A simple, switchable detector response for generated particles.

Why: the LHC Olympics reference sample went through Delphes; a particle-level sample is a useful
limit, but the jet-mass and tau_N distributions that anomaly scores learn shift once finite acceptance,
thresholds and resolution are applied. This module is a deliberately small stand-in for that, with
every number in one frozen :class:`DetectorConfig` so that outputs record exactly what was applied.

The model, per visible final-state particle (neutrinos and other invisible particles never reach it):

* **Tracks** — charged particles with ``|eta| < tracker_abs_eta``. Transverse momentum smeared with
  ``sigma_pT / pT = track_constant (+) track_pt_term * pT`` (``(+)`` = sum in quadrature); eta, phi,
  mass, charge and pdgId kept.
* **Calorimeter deposits** — neutral particles, and charged particles outside the tracker, with
  ``|eta| < calo_abs_eta``. Energy smeared with ``sigma_E / E = stochastic / sqrt(E) (+) constant``,
  with electromagnetic terms for photons and electrons and hadronic terms for everything else. The
  smearing is log-normal with mean E and that width (as Delphes does for calorimeter cells): a
  Gaussian would give negative energies for soft hadrons (sigma/E ~ 100% at 1 GeV), and dropping
  those would bias the jet energy *upwards* by several per cent. A
  deposit is a massless, neutral object at the particle's (eta, phi): charge 0 and the particle-flow
  ids 22 (electromagnetic) or 130 (hadronic). Muons outside the tracker leave no usable deposit and
  are dropped.
* Everything else (outside the calorimeter) is lost; after smearing, objects with
  ``pT < min_pt`` are dropped (this also removes the rare non-positive smeared energies).

With ``enabled=False`` the response is the identity on the visible particles (particle level).
Smearing draws from a caller-supplied ``numpy.random.Generator`` so a seed fixes the output.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Particle-flow ids given to calorimeter deposits.
PF_PHOTON_ID = 22
PF_NEUTRAL_HADRON_ID = 130
_EM_IDS = (11, 22)
_MUON_ID = 13


@dataclass(frozen=True)
class DetectorConfig:
    """Acceptance, resolution and threshold of the detector response (GeV, pseudorapidity)."""

    enabled: bool = True
    tracker_abs_eta: float = 2.5
    calo_abs_eta: float = 4.9
    #: sigma_pT/pT of tracks = track_constant (+) track_pt_term * pT[GeV]
    track_constant: float = 0.005
    track_pt_term: float = 5e-5
    #: sigma_E/E of electromagnetic deposits = em_stochastic/sqrt(E[GeV]) (+) em_constant
    em_stochastic: float = 0.05
    em_constant: float = 0.01
    #: sigma_E/E of hadronic deposits = had_stochastic/sqrt(E[GeV]) (+) had_constant
    had_stochastic: float = 1.0
    had_constant: float = 0.05
    min_pt: float = 0.5

    def __post_init__(self) -> None:
        for name in (
            "tracker_abs_eta",
            "calo_abs_eta",
            "track_constant",
            "track_pt_term",
            "em_stochastic",
            "em_constant",
            "had_stochastic",
            "had_constant",
            "min_pt",
        ):
            value = getattr(self, name)
            if not np.isfinite(value) or value < 0:
                raise ValueError(
                    f"DetectorConfig.{name} must be a finite number >= 0, got {value!r}"
                )
        if self.calo_abs_eta < self.tracker_abs_eta:
            raise ValueError(
                f"DetectorConfig.calo_abs_eta ({self.calo_abs_eta}) must be >= tracker_abs_eta "
                f"({self.tracker_abs_eta}): the calorimeter covers the tracker"
            )


def track_resolution(pt: np.ndarray, config: DetectorConfig) -> np.ndarray:
    """Relative pT resolution of tracks."""
    return np.hypot(config.track_constant, config.track_pt_term * np.asarray(pt))


def calo_resolution(
    energy: np.ndarray, electromagnetic: np.ndarray, config: DetectorConfig
) -> np.ndarray:
    """Relative energy resolution of calorimeter deposits (EM or hadronic terms per particle)."""
    energy = np.asarray(energy, dtype=np.float64)
    stochastic = np.where(electromagnetic, config.em_stochastic, config.had_stochastic)
    constant = np.where(electromagnetic, config.em_constant, config.had_constant)
    with np.errstate(divide="ignore", invalid="ignore"):
        term = stochastic / np.sqrt(energy)
    return np.hypot(term, constant)


def lognormal_factor(sigma: np.ndarray, normal: np.ndarray) -> np.ndarray:
    """Log-normal response factors with mean 1 and standard deviation ``sigma`` from standard normals."""
    s2 = np.log1p(np.asarray(sigma) ** 2)
    return np.exp(np.sqrt(s2) * normal - 0.5 * s2)


def apply_detector(
    particles: dict[str, np.ndarray], config: DetectorConfig, rng: np.random.Generator
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Detector-level objects from flat arrays of visible final-state particles.

    ``particles`` holds equal-length arrays ``pt, eta, phi, mass`` (float) and ``charge, pdgId``
    (int). Returns ``(objects, kept)``: the same fields for the surviving objects, in the input
    order, and the boolean mask of input particles that survived (so callers can re-count events).
    Random numbers are drawn for every input particle, in order, whatever the acceptance, so the
    stream does not depend on which particles are kept.
    """
    pt = np.asarray(particles["pt"], dtype=np.float64)
    eta = np.asarray(particles["eta"], dtype=np.float64)
    phi = np.asarray(particles["phi"], dtype=np.float64)
    mass = np.asarray(particles["mass"], dtype=np.float64)
    charge = np.asarray(particles["charge"], dtype=np.int32)
    pdg = np.asarray(particles["pdgId"], dtype=np.int32)
    n = len(pt)
    for name in ("eta", "phi", "mass", "charge", "pdgId"):
        if len(particles[name]) != n:
            raise ValueError(
                f"particle field {name!r} has length {len(particles[name])}, expected {n}"
            )
    if not config.enabled:
        kept = np.ones(n, dtype=bool)
        return {
            "pt": pt,
            "eta": eta,
            "phi": phi,
            "mass": mass,
            "charge": charge,
            "pdgId": pdg,
        }, kept

    abs_eta = np.abs(eta)
    abs_id = np.abs(pdg)
    is_track = (charge != 0) & (abs_eta < config.tracker_abs_eta)
    is_calo = ~is_track & (abs_eta < config.calo_abs_eta) & ~((charge != 0) & (abs_id == _MUON_ID))
    electromagnetic = np.isin(abs_id, _EM_IDS)

    noise = rng.standard_normal(n)
    out_pt = np.zeros(n)
    # Tracks: smear pT, keep everything else.
    out_pt[is_track] = pt[is_track] * (
        1.0 + track_resolution(pt[is_track], config) * noise[is_track]
    )
    # Calorimeter: smear the energy, massless deposit along the particle's direction.
    energy = np.sqrt((pt[is_calo] * np.cosh(eta[is_calo])) ** 2 + mass[is_calo] ** 2)
    sigma = calo_resolution(energy, electromagnetic[is_calo], config)
    out_pt[is_calo] = energy * lognormal_factor(sigma, noise[is_calo]) / np.cosh(eta[is_calo])

    kept = (is_track | is_calo) & (out_pt >= config.min_pt) & (out_pt > 0)
    calo_kept = is_calo[kept]
    out_mass = np.where(calo_kept, 0.0, mass[kept])
    out_charge = np.where(calo_kept, 0, charge[kept]).astype(np.int32)
    out_pdg = np.where(
        calo_kept,
        np.where(electromagnetic[kept], PF_PHOTON_ID, PF_NEUTRAL_HADRON_ID),
        pdg[kept],
    ).astype(np.int32)
    return {
        "pt": out_pt[kept],
        "eta": eta[kept],
        "phi": phi[kept],
        "mass": out_mass,
        "charge": out_charge,
        "pdgId": out_pdg,
    }, kept

"""Autoencoders (``ae``) and variational autoencoders (``vae``): per-jet reconstruction loss as the
anomaly score.

An autoencoder trained on (mostly background) jets reconstructs typical jets well and atypical ones
badly; the per-jet loss is an "anti-QCD" score that needs no signal in the training data, so its
performance does not depend on the signal fraction (the CMS dijet anomaly search: a VAE trained in
a control region, |delta_eta_jj| >= 1.4, applied in the signal region).

Per-jet inputs. By default each jet's mass and tau ratios (``mj1, tau21_j1, tau32_j1`` and the j2
columns). With ``jets="shared"`` (the default) ONE network sees the j1 block and the j2 block of
every event as two samples: a jet's anomaly is then measured by the same yardstick whichever mass
slot it sits in, so the min/max/sum rules compare like with like, and the network trains on twice
the jets. ``jets="separate"`` trains one network per jet (the lighter and heavier jets have
different distributions, at the price of incomparable loss scales); ``jets="event"`` one network
on all columns (any features; the event score is its loss).

Networks are pluggable (:func:`register_network`): a builder takes the input shape and returns a
module mapping ``[N, *shape]`` to ``(reconstruction, mu, logvar)``, with ``mu``/``logvar`` None for
a plain autoencoder. ``"dense"`` is built here for ``[N, F]`` feature vectors; image networks
(``[N, 1, S, S]``) live in ``adhunt.models.image_networks``, imported on first use of a name not
registered here. In eval mode a variational network decodes ``mu`` (deterministic scores); in
train mode it samples with torch's global RNG, which the trainer seeds.

Losses per jet: ``reco`` = mean squared error over the (standardised) inputs; ``kl`` =
KL(q(z|x) || N(0, 1)) summed over the latent dimensions; VAE training minimises
``total = reco + beta * kl``, and its score is any of the three (``vae_score``). Inputs are
standardised with the statistics of each fold's training jets, stored in the artifact.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from adhunt.models.base import FoldModel, unprefixed
from adhunt.models.classifiers import _member_seed, resolve_device
from adhunt.models.outliers import (
    EVENT_RULES,
    INPUT_KINDS,
    JET_MODES,
    OutlierModel,
    PerJetNetworks,
    check_choice,
    cut_columns,
    fit_network,
    network_state,
    seeded,
    torch_threads,
)
from adhunt.models.preprocessing import Standardizer, transform_from_dict
from adhunt.schema import JET_FEATURES

__all__ = [
    "NETWORKS",
    "Autoencoder",
    "AutoencoderConfig",
    "AutoencoderFold",
    "VariationalAutoencoder",
    "build_network",
    "jet_losses",
    "register_network",
]

log = logging.getLogger(__name__)

#: Per-jet score of a VAE: reconstruction, KL divergence, or the training loss reco + beta * KL.
VAE_SCORES = ("reco", "kl", "total")


@dataclass(frozen=True)
class AutoencoderConfig:
    """Settings of ``ae`` and ``vae`` (and of the starting tagger of ``tnt``)."""

    network: str = "dense"  # a registered network builder (see register_network)
    inputs: str = "features"  # features (feature columns) | images (jet images, conv network)
    image_size: int | None = None  # images: pixels per side; None = taken from the training data
    jets: str = "shared"  # shared | separate | event (see the module doc)
    rule: str = "min"  # per-jet -> event score: min | max | sum | heavier | lighter
    control_region: str | None = None  # None (all data), "sidebands", or e.g. "abs(delta_eta)>=1.4"
    hidden: tuple[int, ...] = (32, 32)  # encoder widths; the decoder mirrors them
    latent_dim: int = 2
    network_options: dict[str, Any] = dataclasses.field(default_factory=dict)  # builder extras
    beta: float = 0.1  # weight of the KL term (vae); reco is a mean over inputs, KL a sum
    vae_score: str = "total"  # reco | kl | total (vae)
    n_ensemble: int = 1  # networks per fold; their mean loss is the score
    epochs: int = 50
    batch_size: int = 1024  # small per-jet networks on many jets: large batches
    lr: float = 1e-3
    weight_decay: float = 0.0
    patience: int = 5
    val_fraction: float = 0.2  # hashed validation subset, for early stopping
    device: str = "auto"  # "auto" (CUDA if available), "cpu", "cuda", "cuda:1", ...
    num_threads: int | None = None  # torch CPU threads while training; None = library default
    score_batch_size: int = 65536  # images: at most IMAGE_SCORE_BATCH (conv activations)

    def __post_init__(self) -> None:
        check_choice("AutoencoderConfig.jets", self.jets, JET_MODES)
        check_choice("AutoencoderConfig.rule", self.rule, EVENT_RULES)
        check_choice("AutoencoderConfig.vae_score", self.vae_score, VAE_SCORES)
        check_choice("AutoencoderConfig.inputs", self.inputs, INPUT_KINDS)
        if self.inputs == "images":
            if self.network == "dense":  # the default network is for feature vectors
                object.__setattr__(self, "network", "conv")
            if self.jets == "event":
                raise ValueError(
                    "AutoencoderConfig: inputs='images' scores each jet's image; use "
                    "jets='shared' or 'separate', not 'event'"
                )
        if self.image_size is not None and (
            not isinstance(self.image_size, int) or self.image_size < 1
        ):
            raise ValueError(
                f"AutoencoderConfig.image_size must be a positive integer, got {self.image_size!r}"
            )
        positive = (
            "latent_dim",
            "n_ensemble",
            "epochs",
            "batch_size",
            "patience",
            "score_batch_size",
        )
        for name in positive:
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(
                    f"AutoencoderConfig.{name} must be a positive integer, got {value!r}"
                )
        if not self.hidden or any(int(h) < 1 for h in self.hidden):
            raise ValueError(
                f"AutoencoderConfig.hidden must list positive widths, got {self.hidden}"
            )
        object.__setattr__(self, "hidden", tuple(int(h) for h in self.hidden))
        object.__setattr__(self, "network_options", dict(self.network_options or {}))
        if not self.lr > 0 or self.beta < 0 or self.weight_decay < 0:
            raise ValueError("AutoencoderConfig: lr must be positive, beta and weight_decay >= 0")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in [0, 1), got {self.val_fraction}")
        cut_columns(self.control_region)  # a bad expression fails here, not after loading data


# --------------------------------------------------------------------------------------------
# Networks
# --------------------------------------------------------------------------------------------

#: name -> builder(input_shape, *, latent_dim, hidden, variational, **options) -> torch module.
NETWORKS: dict[str, Callable[..., Any]] = {}


def register_network(name: str, builder: Callable[..., Any]) -> None:
    """Make ``builder`` available as ``AutoencoderConfig.network = name``."""
    other = NETWORKS.get(name)
    if other is not None and other is not builder:
        raise ValueError(f"network {name!r} is already registered")
    NETWORKS[name] = builder


def build_network(
    name: str,
    input_shape: Sequence[int],
    *,
    latent_dim: int,
    hidden: Sequence[int],
    variational: bool,
    options: Mapping[str, Any] | None = None,
) -> Any:
    """A fresh (untrained) network of a registered kind."""
    if name not in NETWORKS:
        try:  # image networks register themselves when their module is imported
            import adhunt.models.image_networks  # noqa: F401
        except ImportError:
            pass
    if name not in NETWORKS:
        raise ValueError(f"unknown network {name!r}; registered: {sorted(NETWORKS)}")
    return NETWORKS[name](
        tuple(int(s) for s in input_shape),
        latent_dim=int(latent_dim),
        hidden=tuple(int(h) for h in hidden),
        variational=bool(variational),
        **dict(options or {}),
    )


def _dense_autoencoder(
    input_shape: tuple[int, ...], *, latent_dim: int, hidden: tuple[int, ...], variational: bool
) -> Any:
    import torch
    import torch.nn as nn

    if len(input_shape) != 1:
        raise ValueError(f"the dense network takes [N, F] inputs, got input shape {input_shape}")
    n_in = input_shape[0]

    def mlp(widths: Sequence[int], n_out: int) -> nn.Sequential:
        layers: list[nn.Module] = []
        for a, b in itertools.pairwise(widths):
            layers += [nn.Linear(a, b), nn.ELU()]
        layers.append(nn.Linear(widths[-1], n_out))
        return nn.Sequential(*layers)

    class DenseAutoencoder(nn.Module):
        """[N, F] -> (reconstruction [N, F], mu [N, L] | None, logvar [N, L] | None)."""

        def __init__(self) -> None:
            super().__init__()
            self.variational = variational
            self.encoder = mlp([n_in, *hidden], latent_dim * (2 if variational else 1))
            self.decoder = mlp([latent_dim, *reversed(hidden)], n_in)

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, Any, Any]:
            h = self.encoder(x)
            if not self.variational:
                return self.decoder(h), None, None
            mu, logvar = h.chunk(2, dim=1)
            logvar = logvar.clamp(-20.0, 20.0)
            z = mu
            if self.training:
                z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
            return self.decoder(z), mu, logvar

    return DenseAutoencoder()


register_network("dense", _dense_autoencoder)


def jet_losses(net: Any, x: Any, images: bool = False) -> dict[str, Any]:
    """Per-sample ``reco`` (mean squared error over the input), ``kl`` (None for a plain AE).

    ``images``: unit-sum jet images ``[N, 1, S, S]``, whose squared error is taken in units of the
    mean pixel (:func:`adhunt.models.image_networks.image_losses`), so that the reconstruction
    term has the same order as for standardised features and ``beta`` means the same.
    """
    recon, mu, logvar = net(x)
    if images:
        from adhunt.models.image_networks import image_losses

        out = image_losses(x, recon, mu, logvar)
        return {"reco": out["reconstruction"], "kl": None if mu is None else out["kl"]}
    reco = ((recon - x) ** 2).flatten(1).mean(dim=1)
    kl = None
    if mu is not None:
        kl = -0.5 * (1.0 + logvar - mu**2 - logvar.exp()).flatten(1).sum(dim=1)
    return {"reco": reco, "kl": kl}


def _loss_of(losses: Mapping[str, Any], which: str, beta: float) -> Any:
    if losses["kl"] is None or which == "reco":
        return losses["reco"]
    if which == "kl":
        return losses["kl"]
    return losses["reco"] + beta * losses["kl"]


# --------------------------------------------------------------------------------------------
# Fold model
# --------------------------------------------------------------------------------------------


class AutoencoderFold(PerJetNetworks, FoldModel):
    """Networks of one fold: per-jet (or per-event) losses, combined into an event score.

    ``nets[g][m]``: member ``m`` of network group ``g`` (one group for ``shared``/``event``, two
    for ``separate``); ``scalers[g]`` standardises that group's input.
    """

    kind = "autoencoder"
    what = "autoencoder"

    def __init__(
        self,
        states: Sequence[Sequence[Mapping[str, np.ndarray]]],
        scalers: Sequence[Standardizer],
        spec: Mapping[str, Any],
        info: Mapping[str, Any] | None = None,
        device: str = "auto",
    ) -> None:
        self.spec = dict(spec)
        check_choice("jets", self.spec["jets"], JET_MODES)
        check_choice("rule", self.spec["rule"], EVENT_RULES)
        check_choice("score", self.spec["score"], VAE_SCORES)
        n_groups = 2 if self.spec["jets"] == "separate" else 1
        n_scalers = 0 if self.images else n_groups  # images are used as they are (unit sum)
        if len(states) != n_groups or len(scalers) != n_scalers or not all(states):
            raise ValueError(
                f"autoencoder fold needs {n_groups} network group(s) and {n_scalers} scaler(s)"
            )
        self.scalers = list(scalers)
        self.info = dict(info or {})
        self.device = resolve_device(device)
        self.load_networks(states, self._build, "autoencoder")

    def _build(self) -> Any:
        s = self.spec
        return build_network(
            s["network"], s["input_shape"], latent_dim=s["latent_dim"], hidden=s["hidden"],
            variational=s["variational"], options=s.get("options"),
        )  # fmt: skip

    @property
    def n_inputs(self) -> int:
        return int(np.prod(self.spec["input_shape"]))

    @property
    def images(self) -> bool:
        return self.spec.get("inputs", "features") == "images"

    def as_inputs(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(x, dtype=np.float32 if self.images else np.float64)

    def losses(self, x: np.ndarray, group: int, which: str | None = None) -> np.ndarray:
        """Mean over the members of group ``group`` of the per-sample loss ``which``."""
        import torch

        which = which or self.spec["score"]
        if self.images:
            z = np.asarray(x, dtype=np.float32)
        else:
            z = self.scalers[group].transform(np.asarray(x, dtype=np.float64)).astype(np.float32)
        shape = tuple(self.spec["input_shape"])
        out = np.zeros(len(z))
        bs = int(self.spec.get("score_batch_size", 65536))
        with torch.no_grad():
            for start in range(0, len(z), bs):
                xb = torch.from_numpy(z[start : start + bs]).reshape(-1, *shape).to(self.device)
                for net in self.nets[group]:
                    loss = _loss_of(jet_losses(net, xb, self.images), which, self.spec["beta"])
                    out[start : start + len(xb)] += loss.double().cpu().numpy()
        return out / len(self.nets[group])

    def per_sample(self, x: np.ndarray, group: int, which: str | None = None) -> np.ndarray:
        return self.losses(x, group, which)

    def metadata(self) -> dict[str, Any]:
        return {**self.network_metadata(), "info": self.info}

    @classmethod
    def from_parts(
        cls, tensors: Mapping[str, np.ndarray], metadata: Mapping[str, Any]
    ) -> AutoencoderFold:
        states = [
            [unprefixed(f"group{g}/member{m}", tensors) for m in range(int(n))]
            for g, n in enumerate(metadata["n_members"])
        ]
        scalers = [transform_from_dict(d) for d in metadata["preprocessing"]]  # none for images
        if not all(isinstance(s, Standardizer) for s in scalers):
            raise ValueError("autoencoder preprocessing must be Standardizers")
        return cls(states, scalers, metadata["spec"], metadata.get("info"))


# --------------------------------------------------------------------------------------------
# Methods
# --------------------------------------------------------------------------------------------


def fit_autoencoder_fold(
    x: np.ndarray,
    x_val: np.ndarray | None,
    n_inputs_per_group: int,
    config: AutoencoderConfig,
    *,
    variational: bool,
    seed: int,
    jets: str,
) -> AutoencoderFold:
    """Train the networks of one fold on the rows of ``x`` (input columns, j1 block then j2)."""

    device = resolve_device(config.device)
    score = config.vae_score if variational else "reco"
    images = config.inputs == "images"
    shape = [n_inputs_per_group]
    if images:
        size = math.isqrt(n_inputs_per_group)
        if config.image_size is None or size * size != n_inputs_per_group:
            raise ValueError(
                f"image inputs of {n_inputs_per_group} pixels per jet do not match "
                f"image_size={config.image_size}"
            )
        shape = [1, size, size]
    if images:
        from adhunt.models.image_networks import IMAGE_SCORE_BATCH

        limit = min(config.score_batch_size, IMAGE_SCORE_BATCH)
        config = dataclasses.replace(config, score_batch_size=limit)
    spec = {
        "network": config.network, "inputs": config.inputs, "input_shape": shape,
        "latent_dim": config.latent_dim, "hidden": list(config.hidden),
        "variational": variational, "options": dict(config.network_options), "jets": jets,
        "rule": config.rule, "score": score, "beta": float(config.beta),
        "score_batch_size": config.score_batch_size,
    }  # fmt: skip
    f = n_inputs_per_group

    def groups(a: np.ndarray | None) -> list[np.ndarray | None]:
        if a is None:
            return [None] * (2 if jets == "separate" else 1)
        if jets == "event":
            return [a]
        if jets == "shared":  # both jets of every event: two samples of one network
            return [np.concatenate([a[:, :f], a[:, f:]])]
        return [a[:, :f], a[:, f:]]

    def batch_loss(net: Any, xb: Any, _: Any) -> Any:
        return _loss_of(jet_losses(net, xb.reshape(-1, *shape), images), "total", config.beta)

    states, scalers, info = [], [], {"history": [], "device": device, "seed": int(seed)}
    with torch_threads(config.num_threads):
        for g, (xg, vg) in enumerate(zip(groups(x), groups(x_val), strict=True)):
            if images:  # unit-sum images: no standardisation (it would undo the normalisation)
                scaler, zt = None, np.asarray(xg, dtype=np.float32)
                zv = None if vg is None or len(vg) == 0 else np.asarray(vg, dtype=np.float32)
            else:
                scaler = Standardizer().fit(xg)
                zt = scaler.transform(xg)
                zv = None if vg is None or len(vg) == 0 else scaler.transform(vg)
            members = []
            for m in range(config.n_ensemble):
                ms = _member_seed(seed, 100 * g + m)
                with seeded(ms, device):
                    net = build_network(
                        config.network, shape, latent_dim=config.latent_dim,
                        hidden=config.hidden, variational=variational,
                        options=config.network_options,
                    ).to(device)  # fmt: skip
                    history = fit_network(
                        net, batch_loss, zt, None, zv, None, config=config, seed=ms, device=device
                    )
                members.append(network_state(net))
                info["history"].append(
                    {
                        "group": g,
                        "member": m,
                        "epochs": len(history["train_loss"]),
                        "best_epoch": history["best_epoch"],
                        "best_val_loss": history["best_val_loss"],
                        "train_loss": history["train_loss"],
                    }
                )
            states.append(members)
            if scaler is not None:
                scalers.append(scaler)
    return AutoencoderFold(states, scalers, spec, info, device=config.device)


class Autoencoder(OutlierModel):
    """Per-jet autoencoder; event score = the rule applied to the jets' reconstruction losses."""

    method = "ae"
    config_class = AutoencoderConfig
    default_features = JET_FEATURES
    variational: ClassVar[bool] = False

    def _fit_fold(
        self, k: int, train: pd.DataFrame, val: pd.DataFrame, reference: pd.DataFrame | None
    ) -> FoldModel:
        train = self.training_rows(train, k)
        val = self.training_rows(val, k, "validation")
        cfg: AutoencoderConfig = self.config
        width = len(self.input_columns) if self.layout is None else self.layout.width
        if self.images:  # pixels per jet image
            width = int(self.image_size) ** 2
        fold = fit_autoencoder_fold(
            self.inputs(train),
            self.inputs(val) if len(val) else None,
            width,
            cfg,
            variational=self.variational,
            seed=self.fold_seed(k),
            jets=cfg.jets,
        )
        fold.info["n_train"], fold.info["n_val"] = len(train), len(val)
        return fold


class VariationalAutoencoder(Autoencoder):
    """Per-jet VAE; per-jet score = reconstruction, KL or their sum (``vae_score``)."""

    method = "vae"
    variational = True

"""FORCE (``force``): regress a kinematic variable from scale/boost-invariant substructure; the
prediction is the anomaly score.

Factorised Observables for Regressing Conditional Expectations. If, for signal and background
separately, the kinematics (here the jet pT) factorise from boost-invariant substructure O (tau
ratios, m/pT, unit-sum images), then with signal fraction f

    E[pT | O] = (f p_s(O) <pT>_s + (1 - f) p_b(O) <pT>_b) / (f p_s(O) + (1 - f) p_b(O)),

a monotonic function of the likelihood ratio p_s(O)/p_b(O) whenever the signal's pT is harder
than the background's (a heavy resonance's jets are). The MSE regression learns E[pT | O] from
unlabelled data; with no signal it is flat (uninformative), the price of needing no labels.

Target. The feature tables carry each jet's pT (``pt_j1``, ``pt_j2``), so by default each jet's pT
is regressed from that jet's invariant inputs (``mj*_over_pt_j*``, ``tau21_j*``, ``tau32_j*``) by
one network shared by both jets (each jet a sample, as in ``ae``), and the per-jet predictions
(GeV) become the event score by a rule (default ``sum``). ``jets="event"`` regresses one table
column (``target``, e.g. ``mjj``) from all input features. The target is never an input.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from adhunt.models.base import FoldModel, unprefixed
from adhunt.models.classifiers import _build_mlp, _member_seed, resolve_device
from adhunt.models.outliers import (
    EVENT_RULES,
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
from adhunt.schema import INVARIANT_JET_FEATURES

__all__ = ["Force", "ForceConfig", "ForceFold"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ForceConfig:
    """FORCE settings: what is regressed, the regressor ensemble and its training."""

    target: str = "pt"  # per-jet: "<target>_j1"/"<target>_j2"; jets="event": a column (e.g. mjj)
    jets: str = "shared"  # shared | separate | event
    rule: str = "sum"  # per-jet predictions -> event score: min | max | sum | heavier | lighter
    control_region: str | None = None  # None (all data), "sidebands", or a cut expression
    n_ensemble: int = 5  # regressors per fold; the score is their mean prediction
    hidden: tuple[int, ...] = (64, 64)
    dropout: float = 0.0
    epochs: int = 50
    batch_size: int = 1024  # small per-jet networks on many jets: large batches
    lr: float = 1e-3
    weight_decay: float = 0.0
    patience: int = 5
    val_fraction: float = 0.2
    device: str = "auto"
    num_threads: int | None = None
    score_batch_size: int = 65536

    def __post_init__(self) -> None:
        check_choice("ForceConfig.jets", self.jets, JET_MODES)
        check_choice("ForceConfig.rule", self.rule, EVENT_RULES)
        for name in ("n_ensemble", "epochs", "batch_size", "patience", "score_batch_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"ForceConfig.{name} must be a positive integer, got {value!r}")
        if not self.hidden or any(int(h) < 1 for h in self.hidden):
            raise ValueError(f"ForceConfig.hidden must list positive widths, got {self.hidden}")
        object.__setattr__(self, "hidden", tuple(int(h) for h in self.hidden))
        if not self.lr > 0 or self.weight_decay < 0 or not 0.0 <= self.dropout < 1.0:
            raise ValueError("ForceConfig: lr > 0, weight_decay >= 0, dropout in [0, 1)")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in [0, 1), got {self.val_fraction}")
        if not self.target or not isinstance(self.target, str):
            raise ValueError(f"ForceConfig.target must name a column, got {self.target!r}")
        cut_columns(self.control_region)


class ForceFold(PerJetNetworks, FoldModel):
    """Regressor ensembles of one fold; score = mean prediction (target units), jets combined."""

    kind = "force"
    what = "FORCE model"

    def __init__(
        self,
        states: Sequence[Sequence[Mapping[str, np.ndarray]]],
        scalers: Sequence[Standardizer],
        target_scale: tuple[float, float],
        spec: Mapping[str, Any],
        info: Mapping[str, Any] | None = None,
        device: str = "auto",
    ) -> None:
        self.spec = dict(spec)
        check_choice("jets", self.spec["jets"], JET_MODES)
        check_choice("rule", self.spec["rule"], EVENT_RULES)
        n_groups = 2 if self.spec["jets"] == "separate" else 1
        if len(states) != n_groups or len(scalers) != n_groups or not all(states):
            raise ValueError(f"force fold needs {n_groups} regressor group(s) and scalers")
        mean, std = (float(v) for v in target_scale)
        if not (np.isfinite(mean) and np.isfinite(std) and std > 0):
            raise ValueError(f"force target scale must be finite with std > 0, got {target_scale}")
        self.target_scale = (mean, std)
        self.scalers = list(scalers)
        self.info = dict(info or {})
        self.device = resolve_device(device)
        self.load_networks(
            states,
            lambda: _build_mlp(self.n_inputs, self.spec["hidden"], self.spec["dropout"]),
            "force",
        )

    @property
    def n_inputs(self) -> int:
        return int(self.spec["n_inputs"])

    def per_sample(self, x: np.ndarray, group: int) -> np.ndarray:
        """Mean prediction of the group's members, in target units (e.g. GeV)."""
        import torch

        z = self.scalers[group].transform(np.asarray(x, dtype=np.float64)).astype(np.float32)
        out = np.zeros(len(z))
        bs = int(self.spec.get("score_batch_size", 65536))
        with torch.no_grad():
            for start in range(0, len(z), bs):
                xb = torch.from_numpy(z[start : start + bs]).to(self.device)
                for net in self.nets[group]:
                    out[start : start + len(xb)] += net(xb)[:, 0].double().cpu().numpy()
        mean, std = self.target_scale
        return mean + std * out / len(self.nets[group])

    def metadata(self) -> dict[str, Any]:
        return {
            **self.network_metadata(),
            "target_scale": list(self.target_scale),
            "info": self.info,
        }

    @classmethod
    def from_parts(
        cls, tensors: Mapping[str, np.ndarray], metadata: Mapping[str, Any]
    ) -> ForceFold:
        states = [
            [unprefixed(f"group{g}/member{m}", tensors) for m in range(int(n))]
            for g, n in enumerate(metadata["n_members"])
        ]
        scalers = [transform_from_dict(d) for d in metadata["preprocessing"]]
        if not all(isinstance(s, Standardizer) for s in scalers):
            raise ValueError("force preprocessing must be Standardizers")
        return cls(
            states, scalers, tuple(metadata["target_scale"]), metadata["spec"], metadata.get("info")
        )


class Force(OutlierModel):
    """FORCE: per-jet pT (or one event-level target) regressed from invariant substructure."""

    method = "force"
    config_class = ForceConfig
    default_features = INVARIANT_JET_FEATURES

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        overlap = set(self.target_columns) & set(self.input_columns)
        if overlap:
            raise ValueError(f"force: the regression target {sorted(overlap)} cannot be an input")

    @property
    def target_columns(self) -> tuple[str, ...]:
        target = self.config.target
        if self.layout is None:
            return (target,)
        return (f"{target}_j1", f"{target}_j2")

    def _xy(self, frame: pd.DataFrame) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Inputs and targets per regressor group (per-jet blocks stacked for ``shared``)."""
        x = self.inputs(frame)
        t = frame[list(self.target_columns)].to_numpy(dtype=np.float64)
        if self.layout is None:
            return [x], [t[:, 0]]
        x1, x2 = self.layout.split(x)
        if self.config.jets == "shared":
            return [np.concatenate([x1, x2])], [np.concatenate([t[:, 0], t[:, 1]])]
        return [x1, x2], [t[:, 0], t[:, 1]]

    def _fit_fold(
        self, k: int, train: pd.DataFrame, val: pd.DataFrame, reference: pd.DataFrame | None
    ) -> FoldModel:

        cfg: ForceConfig = self.config
        train = self.training_rows(train, k)
        val = self.training_rows(val, k, "validation")
        device = resolve_device(cfg.device)
        xs, ts = self._xy(train)
        xvs, tvs = self._xy(val) if len(val) else ([None] * len(xs), [None] * len(xs))
        # One target scale for all groups, so per-jet predictions share units before the rule.
        all_t = np.concatenate(ts)
        t_mean, t_std = float(all_t.mean()), float(all_t.std()) or 1.0

        def batch_loss(net: Any, xb: Any, yb: Any) -> Any:
            return (net(xb)[:, 0] - yb) ** 2

        states, scalers = [], []
        info: dict[str, Any] = {"history": [], "device": device, "n_train": len(train)}
        with torch_threads(cfg.num_threads):
            for g, (x, t, xv, tv) in enumerate(zip(xs, ts, xvs, tvs, strict=True)):
                scaler = Standardizer().fit(x)
                z, y = scaler.transform(x), (t - t_mean) / t_std
                zv = None if xv is None or len(xv) == 0 else scaler.transform(xv)
                yv = None if zv is None else (tv - t_mean) / t_std
                members = []
                for m in range(cfg.n_ensemble):
                    ms = _member_seed(self.fold_seed(k), 100 * g + m)
                    with seeded(ms, device):
                        net = _build_mlp(x.shape[1], cfg.hidden, cfg.dropout).to(device)
                        history = fit_network(
                            net, batch_loss, z, y, zv, yv, config=cfg, seed=ms, device=device
                        )
                    members.append(network_state(net))
                    info["history"].append(
                        {
                            "group": g,
                            "member": m,
                            "epochs": len(history["train_loss"]),
                            "best_epoch": history["best_epoch"],
                            "best_val_mse": history["best_val_loss"],
                        }
                    )
                states.append(members)
                scalers.append(scaler)
        n_inputs = len(self.input_columns) if self.layout is None else self.layout.width
        spec = {
            "n_inputs": n_inputs, "hidden": list(cfg.hidden), "dropout": float(cfg.dropout),
            "jets": cfg.jets, "rule": cfg.rule, "target": list(self.target_columns),
            "score_batch_size": cfg.score_batch_size,
        }  # fmt: skip
        return ForceFold(states, scalers, (t_mean, t_std), spec, info, device=cfg.device)

"""R-ANODE: fit a signal flow and a signal fraction to SR data, with the background density fixed.

Das, Kasieczka, Shih, arXiv:2312.11629. In the signal region the data density is modelled as

    p_data(x | m) = w p_sig(x | m) + (1 - w) p_bg(x | m),

where p_bg is the sideband flow interpolated into the SR and held FIXED, p_sig is a (small) flow and
w = sigmoid(a) a learned signal fraction; both are fitted by maximum likelihood on SR data. Because the
background is not re-learned, all of the data's extra density must be explained by p_sig, which makes
the method data-efficient at small signal fractions. Score = log p_sig(x | m) - log p_bg(x | m).
Since p_bg is fixed, its log-density per SR event is computed once, not per epoch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from adhunt.models.base import FoldModel, prefixed, unprefixed
from adhunt.models.cathode import FlowMethod, _flow_config_cls, _nested
from adhunt.models.preprocessing import Pipeline, transform_from_dict
from adhunt.schema import RESONANT_VARIABLE

__all__ = ["RAnode", "RAnodeConfig", "RAnodeFold", "default_signal_flow"]


def default_signal_flow() -> Any:
    """A small spline flow: the signal sample is tiny, a large flow would just fit noise.

    Small batches: the SR sample is small and w must move far from its start within few epochs.
    A modest lr (5e-4): with 2e-3 the first epochs of the mixture fit could leave p_sig worse than
    p_bg everywhere, w then collapsed below w_init and the fold stalled (2 of 5 folds on the
    LHCO-like benchmark, 300k events, S/B 1.5%); w has its own, larger lr (RAnodeConfig.w_lr).
    """
    return _flow_config_cls()(
        kind="rqs", n_blocks=2, hidden=32, batch_size=256, lr=5e-4, epochs=60, patience=8
    )


@dataclass(frozen=True)
class RAnodeConfig:
    """R-ANODE settings: the (fixed) sideband flow, the signal flow and the initial w."""

    flow: Any = None  # FlowConfig of the sideband (background) flow; None = defaults
    signal_flow: Any = None  # FlowConfig of the signal flow; None = default_signal_flow()
    w_init: float = 0.001  # initial signal fraction in the SR (small: w grows only as data demand)
    # Adam learning rate of logit(w): one scalar fitted to the whole SR sample can move much faster
    # than the network weights; with the flow's lr it would barely leave w_init within early stopping.
    w_lr: float = 0.02
    # Epochs of a plain fit of p_sig to the SR data before the mixture fit. From a random start
    # p_sig is worse than p_bg everywhere, so w shrinks first, the responsibilities (~w) starve
    # p_sig of gradient and some folds stall at w ~ w_init (seen on the LHCO-like benchmark); started
    # at the data density, p_sig only has to concentrate on the data's excess. 0 = off.
    warm_start_epochs: int = 5
    shared_flow: bool = True
    logit_margin: float = 0.05
    val_fraction: float = 0.2

    def __post_init__(self) -> None:
        fc = _flow_config_cls()
        object.__setattr__(self, "flow", fc() if self.flow is None else _nested(self.flow, fc))
        sig = default_signal_flow() if self.signal_flow is None else _nested(self.signal_flow, fc)
        object.__setattr__(self, "signal_flow", sig)
        if not self.w_lr > 0:
            raise ValueError(f"RAnodeConfig.w_lr must be positive, got {self.w_lr}")
        if int(self.warm_start_epochs) != self.warm_start_epochs or self.warm_start_epochs < 0:
            raise ValueError(
                f"RAnodeConfig.warm_start_epochs must be a non-negative integer, "
                f"got {self.warm_start_epochs!r}"
            )
        if not 0.0 < self.w_init < 1.0:
            raise ValueError(f"RAnodeConfig.w_init must be in (0, 1), got {self.w_init}")
        if not 0.0 < self.val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in (0, 1), got {self.val_fraction}")


class RAnodeFold(FoldModel):
    """Preprocessing + fixed background flow + signal flow + fitted w (features then mjj in)."""

    kind = "ranode"

    def __init__(self, preprocessing: Pipeline, bg_flow: Any, sig_flow: Any, w: float) -> None:
        self.preprocessing = preprocessing
        self.bg_flow = bg_flow
        self.sig_flow = sig_flow
        self.w = float(w)

    def log_densities(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(log p_sig, log p_bg) in preprocessed coordinates; last column of x is mjj."""
        x = np.asarray(x, dtype=np.float64)
        z = self.preprocessing.transform(x[:, :-1])
        m = x[:, -1]
        return self.sig_flow.log_prob(z, m), self.bg_flow.log_prob(z, m)

    def score(self, x: np.ndarray) -> np.ndarray:
        log_sig, log_bg = self.log_densities(x)
        return log_sig - log_bg

    def tensors(self) -> dict[str, np.ndarray]:
        return {
            **prefixed("bg", self.bg_flow.tensors()),
            **prefixed("sig", self.sig_flow.tensors()),
        }

    def metadata(self) -> dict[str, Any]:
        return {
            "preprocessing": self.preprocessing.to_dict(),
            "bg_flow": self.bg_flow.metadata(),
            "sig_flow": self.sig_flow.metadata(),
            "w": self.w,
        }

    @classmethod
    def from_parts(
        cls, tensors: Mapping[str, np.ndarray], metadata: Mapping[str, Any]
    ) -> RAnodeFold:
        from adhunt.models.flows import ConditionalFlow

        return cls(
            transform_from_dict(metadata["preprocessing"]),
            ConditionalFlow.from_parts(unprefixed("bg", tensors), metadata["bg_flow"]),
            ConditionalFlow.from_parts(unprefixed("sig", tensors), metadata["sig_flow"]),
            float(metadata["w"]),
        )


def fit_mixture(
    bg_flow: Any,
    z: np.ndarray,
    m: np.ndarray,
    z_val: np.ndarray,
    m_val: np.ndarray,
    config: Any,
    w_init: float,
    seed: int,
    progress: Any = None,
    w_lr: float = 0.02,
    warm_start_epochs: int = 0,
) -> tuple[Any, float]:
    """Maximum-likelihood fit of (p_sig, w) in w p_sig + (1 - w) p_bg with p_bg fixed.

    With ``warm_start_epochs`` p_sig first gets a plain NLL fit to the (SR) data, so that the
    mixture fit starts from p_sig ~ p_data instead of a random density (see RAnodeConfig).
    Returns the fitted signal flow (best validation epoch) and w.
    """
    import dataclasses

    import torch
    from torch import nn

    from adhunt.models.flows import ConditionalFlow, _Threads, train_by_nll

    sig = ConditionalFlow(z.shape[1], config, seed=seed)
    if warm_start_epochs > 0:
        warm_cfg = dataclasses.replace(config, epochs=int(warm_start_epochs))
        warm = ConditionalFlow(z.shape[1], warm_cfg, seed=seed).fit(z, m, z_val, m_val)
        sig.net.load_state_dict(warm.net.state_dict())
    sig.set_standardization(z, m)
    dev = sig.device
    f32 = np.float32

    class _Weight(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.logit = nn.Parameter(torch.tensor(float(np.log(w_init / (1 - w_init)))))

    weight = _Weight().to(dev)

    def tensors(zz: np.ndarray, mm: np.ndarray) -> tuple[torch.Tensor, ...]:
        log_bg = bg_flow.log_prob(zz, mm)  # fixed: computed once
        if not np.all(np.isfinite(log_bg)):
            raise FloatingPointError("background flow gives non-finite log-densities in the SR")
        return tuple(
            torch.from_numpy(np.ascontiguousarray(a, dtype=f32)).to(dev)
            for a in (zz, mm.reshape(-1, 1), log_bg)
        )

    def nll(batch: Sequence[torch.Tensor]) -> torch.Tensor:
        zb, mb, log_bg = batch
        log_sig = sig.log_prob_tensor(zb, mb)
        lw = torch.nn.functional.logsigmoid(weight.logit)
        l1w = torch.nn.functional.logsigmoid(-weight.logit)
        return -torch.logaddexp(lw + log_sig, l1w + log_bg)

    with _Threads(config.num_threads), torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed + 1)
        sig.history = train_by_nll(
            [sig.net, weight],
            [{"params": list(sig.net.parameters())}, {"params": [weight.logit], "lr": w_lr}],
            nll,
            tensors(z, m),
            tensors(z_val, m_val),
            config,
            seed,
            progress,
        )
    sig.fitted = True
    return sig, float(torch.sigmoid(weight.logit.detach()).cpu())


class RAnode(FlowMethod):
    """R-ANODE: score = log p_sig(x | m) - log p_bg(x | m); the fitted w is in `summary`."""

    method = "ranode"
    config_class = RAnodeConfig

    @property
    def input_columns(self) -> tuple[str, ...]:
        return (*self.features, RESONANT_VARIABLE)

    def fit(self, data: pd.DataFrame, reference: pd.DataFrame | None = None, **kwargs: Any):
        self._w: list[float] = []
        self._n_sr_train: list[int] = []
        super().fit(data, reference, **kwargs)
        w = np.array(self._w)
        self.summary.update(
            {
                "w": w.tolist(),
                "w_mean": float(w.mean()),
                "w_std": float(w.std()),
                # Signal events in the SR implied by the fit (mean w times SR count).
                "n_signal_fitted": float(w.mean() * self.training["n_sr"]),
            }
        )
        return self

    def _fit_fold(
        self, k: int, train: pd.DataFrame, val: pd.DataFrame, reference: pd.DataFrame | None
    ) -> FoldModel:
        cfg: RAnodeConfig = self.config
        pre, bg_flow = self._sideband_flow(k, train, val)
        sr_train = self.inside_range(pre, train[self.region.in_sr(self._m(train))], f"fold {k} SR")
        sr_val = self.inside_range(pre, val[self.region.in_sr(self._m(val))], f"fold {k} SR val")
        if len(sr_train) < 10 or len(sr_val) < 1:
            raise ValueError(
                f"ranode fold {k}: too few SR events for the signal fit "
                f"({len(sr_train)} training, {len(sr_val)} validation) in {self.region}"
            )
        sig, w = fit_mixture(
            bg_flow,
            pre.transform(self._x(sr_train)),
            self._m(sr_train),
            pre.transform(self._x(sr_val)),
            self._m(sr_val),
            cfg.signal_flow,
            cfg.w_init,
            self.fold_seed(k, 4),
            self.flow_progress,
            w_lr=cfg.w_lr,
            warm_start_epochs=cfg.warm_start_epochs,
        )
        h = sig.history
        self._flow_stats.append(
            {
                "what": f"signal flow (fold {k})",
                "seconds": h.seconds,
                "epochs": len(h.val_loss),
                "best_epoch": h.best_epoch,
                "val_nll": h.best_val_loss,  # of the mixture
                "n_train": len(sr_train),
            }
        )
        self._w.append(w)
        self._n_sr_train.append(len(sr_train))
        return RAnodeFold(pre, bg_flow, sig, w)

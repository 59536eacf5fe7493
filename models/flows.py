"""Conditional normalizing flows p(x | m) for the density-based resonant methods (CATHODE, ANODE, R-ANODE).

Built from nflows masked autoregressive transforms: affine (MAF) or rational-quadratic splines (RQS).
The flow conditions on the resonant variable m (mjj) so that a density learned in the sidebands can be
interpolated into the signal region.

Why the training loop looks the way it does: the reference CATHODE setup (15-block MAF x 128, batch 256,
lr 1e-4, a DataLoader) costs ~50 s per epoch on ~550k sideband events with 2 CPU cores. Here the data sit
in one contiguous float32 tensor and batches are index permutations of it (no DataLoader, no per-sample
Python), the batches are large (thousands) with a correspondingly higher learning rate that is cut on
validation plateaus (a cosine schedule fights early stopping: the run stops before the lr is small),
and the default flow is a small spline flow, which reaches the same validation NLL with far
fewer network evaluations (`benchmarks/bench_cathode.py` measures the trade-off).

Both x and m are standardised inside the flow (shift/scale fitted on the training data, stored as
buffers) and the Jacobian of that affine map is included, so `log_prob` is a density in the caller's
coordinates. Weights export as a flat tensor dict plus JSON metadata; the network is rebuilt from the
config, never unpickled.
"""

from __future__ import annotations

import copy
import logging
import math
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from adhunt.config import config_from_dict, config_to_dict

logger = logging.getLogger(__name__)

#: Callback for progress reporting: (epoch, train loss, validation loss). Jobs turn it into a bar.
ProgressCallback = Callable[[int, float, float], None]

_LOG_2PI = math.log(2.0 * math.pi)


@dataclass(frozen=True)
class FlowConfig:
    """Architecture and training settings of a conditional flow.

    Defaults from the speed/quality scan in `benchmarks/bench_cathode.py --scan`: a 3-block
    rational-quadratic spline flow (MADE 64 wide, one residual block) with batches of 8192 at lr 3e-3
    had the best test NLL of the fast candidates (4-block 32-wide RQS, 6- and 8-block MAFs were
    within 0.01 nats) at ~1.2 s/epoch on 73k events with 2 loaded cores.
    """

    kind: str = "rqs"  # "maf" (affine) or "rqs" (rational-quadratic spline)
    n_blocks: int = 3  # autoregressive transforms (each followed by a permutation)
    hidden: int = 64  # MADE hidden width
    n_layers: int = 1  # residual blocks per MADE
    n_bins: int = 8  # spline bins (rqs only)
    tail_bound: float = (
        5.0  # spline interval [-B, B] in standardised units; identity outside (rqs only)
    )
    batch_norm: bool = False  # nflows BatchNorm between transforms
    permutation: str = "reverse"  # "reverse" or "random" (seeded) between transforms
    batch_size: int = 8192
    lr: float = 3e-3
    weight_decay: float = 0.0
    # "plateau" (lr x lr_factor after `lr_patience` epochs without improvement), "cosine" (anneal
    # over `epochs`; fights early stopping) or "constant"
    lr_schedule: str = "plateau"
    lr_factor: float = 0.3
    lr_patience: int = 2
    epochs: int = 30  # maximum (large samples converge in fewer epochs: more steps per epoch)
    patience: int = 6  # epochs without validation improvement before stopping
    min_delta: float = 1e-4  # improvement (nats/event) that resets patience
    grad_clip: float | None = 5.0
    val_fraction: float = 0.2  # split of the training data when no validation set is given
    eval_batch_size: int = 65536
    device: str = "auto"  # "auto" (CUDA if present), "cpu", "cuda"
    num_threads: int | None = None  # torch intra-op threads during fit; None leaves torch's setting

    def __post_init__(self) -> None:
        if self.kind not in {"maf", "rqs"}:
            raise ValueError(f"FlowConfig.kind must be 'maf' or 'rqs', got {self.kind!r}")
        if self.permutation not in {"reverse", "random"}:
            raise ValueError(
                f"FlowConfig.permutation must be 'reverse' or 'random', got {self.permutation!r}"
            )
        if self.lr_schedule not in {"plateau", "cosine", "constant"}:
            raise ValueError(
                "FlowConfig.lr_schedule must be 'plateau', 'cosine' or 'constant', "
                f"got {self.lr_schedule!r}"
            )
        if not 0.0 < self.lr_factor < 1.0:
            raise ValueError(f"FlowConfig.lr_factor must be in (0, 1), got {self.lr_factor}")
        for name in ("n_blocks", "hidden", "n_layers", "n_bins", "batch_size", "epochs"):
            if getattr(self, name) < 1:
                raise ValueError(f"FlowConfig.{name} must be >= 1, got {getattr(self, name)}")
        if not 0.0 < self.val_fraction < 1.0:
            raise ValueError(f"FlowConfig.val_fraction must be in (0, 1), got {self.val_fraction}")


#: The reference configuration the speed requirement is measured against (CATHODE paper setup).
REFERENCE_FLOW_CONFIG = FlowConfig(
    kind="maf",
    n_blocks=15,
    hidden=128,
    n_layers=1,
    batch_norm=True,
    permutation="random",
    batch_size=256,
    lr=1e-4,
    lr_schedule="constant",
    epochs=100,
    patience=10,
)


@dataclass
class TrainingHistory:
    """Per-epoch losses (mean NLL, nats/event) and the epoch whose weights were kept."""

    train_loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    best_epoch: int = -1
    best_val_loss: float = float("inf")
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "train_loss": list(self.train_loss),
            "val_loss": list(self.val_loss),
            "best_epoch": self.best_epoch,
            "best_val_loss": self.best_val_loss,
            "seconds": self.seconds,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainingHistory:
        return cls(**data)


def resolve_device(device: str) -> torch.device:
    """'auto' -> CUDA when available, else CPU; explicit names are checked."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"device {device!r} requested but CUDA is not available")
    return torch.device(device)


class _FlowNet(nn.Module):
    """The nflows transform stack plus the affine standardisation of x and m (as buffers)."""

    def __init__(self, n_features: int, n_context: int, config: FlowConfig, seed: int) -> None:
        super().__init__()
        from nflows.transforms import (
            CompositeTransform,
            MaskedAffineAutoregressiveTransform,
            MaskedPiecewiseRationalQuadraticAutoregressiveTransform,
            Permutation,
        )
        from nflows.transforms.normalization import BatchNorm

        self.n_features = n_features
        gen = torch.Generator().manual_seed(seed)
        layers: list[nn.Module] = []
        for i in range(config.n_blocks):
            if config.kind == "maf":
                layers.append(
                    MaskedAffineAutoregressiveTransform(
                        features=n_features,
                        hidden_features=config.hidden,
                        context_features=n_context,
                        num_blocks=config.n_layers,
                        use_residual_blocks=True,
                    )
                )
            else:
                layers.append(
                    MaskedPiecewiseRationalQuadraticAutoregressiveTransform(
                        features=n_features,
                        hidden_features=config.hidden,
                        context_features=n_context,
                        num_bins=config.n_bins,
                        tails="linear",
                        tail_bound=config.tail_bound,
                        num_blocks=config.n_layers,
                        use_residual_blocks=True,
                    )
                )
            if config.batch_norm and i < config.n_blocks - 1:
                layers.append(BatchNorm(n_features))
            if config.permutation == "random":
                perm = torch.randperm(n_features, generator=gen)
            else:
                perm = torch.arange(n_features - 1, -1, -1)
            # Permutation keeps `perm` as a buffer, so it travels in the state dict.
            layers.append(Permutation(perm))
        self.transform = CompositeTransform(layers)
        self.register_buffer("x_shift", torch.zeros(n_features))
        self.register_buffer("x_scale", torch.ones(n_features))
        self.register_buffer("m_shift", torch.zeros(n_context))
        self.register_buffer("m_scale", torch.ones(n_context))

    def log_prob(self, x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        z, logdet = self.transform((x - self.x_shift) / self.x_scale, context=self._context(m))
        base = -0.5 * (z * z).sum(dim=1) - 0.5 * self.n_features * _LOG_2PI
        return base + logdet - torch.log(self.x_scale).sum()

    def sample(self, noise: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        x, _ = self.transform.inverse(noise, context=self._context(m))
        return x * self.x_scale + self.x_shift

    def _context(self, m: torch.Tensor) -> torch.Tensor:
        return (m - self.m_shift) / self.m_scale


def _as_2d(name: str, a: Any, n_cols: int | None = None) -> np.ndarray:
    arr = np.asarray(a, dtype=np.float32)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2:
        raise ValueError(f"{name} must be 1D or 2D, got shape {arr.shape}")
    if n_cols is not None and arr.shape[1] != n_cols:
        raise ValueError(f"{name} has {arr.shape[1]} columns, expected {n_cols}")
    if not np.all(np.isfinite(arr)):
        bad = np.argwhere(~np.isfinite(arr))[0]
        raise ValueError(f"{name} contains NaN/inf (first at row {bad[0]}, column {bad[1]})")
    return np.ascontiguousarray(arr)


def _std_params(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    shift = a.mean(axis=0, dtype=np.float64)
    scale = a.std(axis=0, dtype=np.float64)
    scale = np.where(scale > 0, scale, 1.0)
    return shift.astype(np.float32), scale.astype(np.float32)


def train_by_nll(
    modules: Sequence[nn.Module],
    parameters: Iterable[torch.nn.Parameter] | Sequence[dict[str, Any]],
    nll: Callable[[Sequence[torch.Tensor]], torch.Tensor],
    train: Sequence[torch.Tensor],
    val: Sequence[torch.Tensor],
    config: FlowConfig,
    seed: int,
    progress: ProgressCallback | None = None,
) -> TrainingHistory:
    """Minibatch Adam on a per-event NLL with early stopping; the best-validation weights are restored.

    `nll(batch)` returns per-event negative log-likelihoods for a tuple of row-aligned tensors. Batches
    are index permutations of the (device-resident) tensors: no DataLoader overhead. Shared by the
    plain flow fit and R-ANODE's mixture fit so both stop and restore the same way. `parameters` may
    be torch parameter groups (dicts with their own "lr").
    """
    n = int(train[0].shape[0])
    if n == 0:
        raise ValueError("no training events")
    if int(val[0].shape[0]) == 0:
        raise ValueError("no validation events")
    groups = list(parameters)
    if groups and isinstance(groups[0], dict):
        groups = [{**g, "params": [p for p in g["params"] if p.requires_grad]} for g in groups]
        params = [p for g in groups for p in g["params"]]
    else:
        params = [p for p in groups if p.requires_grad]
        groups = params
    opt = torch.optim.Adam(groups, lr=config.lr, weight_decay=config.weight_decay)
    sched: Any = None
    if config.lr_schedule == "cosine":
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=config.epochs)
    elif config.lr_schedule == "plateau":
        sched = torch.optim.lr_scheduler.ReduceLROnPlateau(
            opt, factor=config.lr_factor, patience=config.lr_patience, threshold=config.min_delta,
            threshold_mode="abs",
        )  # fmt: skip
    gen = torch.Generator().manual_seed(seed)
    history = TrainingHistory()
    best_state = [copy.deepcopy(m.state_dict()) for m in modules]
    bad_epochs = 0
    t0 = time.perf_counter()
    for epoch in range(config.epochs):
        for m in modules:
            m.train()
        perm = torch.randperm(n, generator=gen).to(train[0].device)
        total, count = 0.0, 0
        for start in range(0, n, config.batch_size):
            idx = perm[start : start + config.batch_size]
            loss = nll([t[idx] for t in train]).mean()
            if not torch.isfinite(loss):
                raise FloatingPointError(
                    f"non-finite training loss at epoch {epoch}, batch starting at {start}; "
                    "lower FlowConfig.lr or check the inputs"
                )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if config.grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(params, config.grad_clip)
            opt.step()
            total += float(loss.detach()) * len(idx)
            count += len(idx)
        train_loss = total / count
        val_loss = _mean_nll(modules, nll, val, config.eval_batch_size)
        if isinstance(sched, torch.optim.lr_scheduler.ReduceLROnPlateau):
            sched.step(val_loss)
        elif sched is not None:
            sched.step()
        history.train_loss.append(train_loss)
        history.val_loss.append(val_loss)
        if progress is not None:
            progress(epoch, train_loss, val_loss)
        logger.debug("epoch %d: train NLL %.5f, val NLL %.5f", epoch, train_loss, val_loss)
        if val_loss < history.best_val_loss - config.min_delta:
            history.best_val_loss = val_loss
            history.best_epoch = epoch
            best_state = [copy.deepcopy(m.state_dict()) for m in modules]
            bad_epochs = 0
        else:
            if np.isfinite(val_loss) and val_loss < history.best_val_loss:
                # Tiny improvement: keep the better weights but let patience run on.
                history.best_val_loss = val_loss
                history.best_epoch = epoch
                best_state = [copy.deepcopy(m.state_dict()) for m in modules]
            bad_epochs += 1
            if bad_epochs >= config.patience:
                logger.info("early stop at epoch %d (best %d)", epoch, history.best_epoch)
                break
    for m, state in zip(modules, best_state, strict=True):
        m.load_state_dict(state)
        m.eval()
    history.seconds = time.perf_counter() - t0
    return history


@torch.no_grad()
def _mean_nll(
    modules: Sequence[nn.Module],
    nll: Callable[[Sequence[torch.Tensor]], torch.Tensor],
    data: Sequence[torch.Tensor],
    batch: int,
) -> float:
    for m in modules:
        m.eval()
    n = int(data[0].shape[0])
    total = 0.0
    for start in range(0, n, batch):
        total += float(nll([t[start : start + batch] for t in data]).sum())
    return total / n


class _Threads:
    """Temporarily set torch's intra-op thread count (restored on exit)."""

    def __init__(self, n: int | None) -> None:
        self.n = n
        self.old = torch.get_num_threads()

    def __enter__(self) -> None:
        if self.n is not None:
            torch.set_num_threads(max(1, min(self.n, os.cpu_count() or 1)))

    def __exit__(self, *exc: object) -> None:
        torch.set_num_threads(self.old)


class ConditionalFlow:
    """A conditional density p(x | m) (nflows MAF or RQS), trainable, sampleable and exportable."""

    def __init__(
        self,
        n_features: int,
        config: FlowConfig | None = None,
        seed: int = 0,
        n_context: int = 1,
    ) -> None:
        if n_features < 2:
            # nflows' MADE cannot build autoregressive masks for a single feature.
            raise ValueError(f"ConditionalFlow needs at least 2 features, got {n_features}")
        self.n_features = int(n_features)
        self.n_context = int(n_context)
        self.config = config or FlowConfig()
        self.seed = int(seed)
        self.device = resolve_device(self.config.device)
        self.history = TrainingHistory()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)  # nflows/torch initialise weights from the global RNG
            self.net = _FlowNet(self.n_features, self.n_context, self.config, self.seed)
        self.net.to(self.device).eval()
        self.fitted = False

    # ----------------------------------------------------------------------------------- training
    def fit(
        self,
        x: np.ndarray,
        m: np.ndarray,
        x_val: np.ndarray | None = None,
        m_val: np.ndarray | None = None,
        progress: ProgressCallback | None = None,
    ) -> ConditionalFlow:
        """Maximum-likelihood fit with early stopping on the validation NLL (best weights restored).

        Without an explicit validation set a seeded `val_fraction` split of (x, m) is used.
        """
        x = _as_2d("x", x, self.n_features)
        m = _as_2d("m", m, self.n_context)
        if len(x) != len(m):
            raise ValueError(f"x has {len(x)} rows but m has {len(m)}")
        if (x_val is None) != (m_val is None):
            raise ValueError("give both x_val and m_val, or neither")
        if x_val is None:
            rng = np.random.default_rng(self.seed)
            perm = rng.permutation(len(x))
            n_val = max(1, round(self.config.val_fraction * len(x)))
            x_val, m_val = x[perm[:n_val]], m[perm[:n_val]]
            x, m = x[perm[n_val:]], m[perm[n_val:]]
        else:
            x_val = _as_2d("x_val", x_val, self.n_features)
            m_val = _as_2d("m_val", m_val, self.n_context)
            if len(x_val) != len(m_val):
                raise ValueError(f"x_val has {len(x_val)} rows but m_val has {len(m_val)}")
        if len(x) < 2:
            raise ValueError(f"need at least 2 training events, got {len(x)}")
        self.set_standardization(x, m)
        dev = self.device
        train = (torch.from_numpy(x).to(dev), torch.from_numpy(m).to(dev))
        val = (torch.from_numpy(x_val).to(dev), torch.from_numpy(m_val).to(dev))
        net = self.net

        def nll(batch: Sequence[torch.Tensor]) -> torch.Tensor:
            return -net.log_prob(batch[0], batch[1])

        with _Threads(self.config.num_threads), torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed + 1)
            self.history = train_by_nll(
                [net], net.parameters(), nll, train, val, self.config, self.seed, progress
            )
        self.fitted = True
        logger.info(
            "flow (%s, %d blocks x %d) fitted: best val NLL %.4f at epoch %d of %d, %.1f s",
            self.config.kind,
            self.config.n_blocks,
            self.config.hidden,
            self.history.best_val_loss,
            self.history.best_epoch,
            len(self.history.val_loss),
            self.history.seconds,
        )
        return self

    def set_standardization(self, x: np.ndarray, m: np.ndarray) -> None:
        """Fix the internal affine scaling of x and m from (training) data; `fit` calls this.

        Public for custom objectives (R-ANODE's mixture fit) that train the network directly.
        """
        x = _as_2d("x", x, self.n_features)
        m = _as_2d("m", m, self.n_context)
        xs, xsc = _std_params(x)
        ms, msc = _std_params(m)
        with torch.no_grad():
            self.net.x_shift.copy_(torch.from_numpy(xs))
            self.net.x_scale.copy_(torch.from_numpy(xsc))
            self.net.m_shift.copy_(torch.from_numpy(ms))
            self.net.m_scale.copy_(torch.from_numpy(msc))

    # ---------------------------------------------------------------------------------- inference
    @torch.no_grad()
    def log_prob(self, x: np.ndarray, m: np.ndarray) -> np.ndarray:
        """log p(x | m) per event (float64 array), in the coordinates x was given in."""
        x = _as_2d("x", x, self.n_features)
        m = _as_2d("m", m, self.n_context)
        if len(x) != len(m):
            raise ValueError(f"x has {len(x)} rows but m has {len(m)}")
        self.net.eval()
        out = np.empty(len(x), dtype=np.float64)
        bs = self.config.eval_batch_size
        for start in range(0, len(x), bs):
            xb = torch.from_numpy(x[start : start + bs]).to(self.device)
            mb = torch.from_numpy(m[start : start + bs]).to(self.device)
            out[start : start + bs] = self.net.log_prob(xb, mb).double().cpu().numpy()
        return out

    def log_prob_tensor(self, x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        """Differentiable log p(x | m) on tensors already on `self.device` (for joint fits)."""
        return self.net.log_prob(x, m)

    @torch.no_grad()
    def sample(self, m: np.ndarray, seed: int) -> np.ndarray:
        """One sample x ~ p(x | m_i) for each conditioning value m_i (seeded; float32 array)."""
        m = _as_2d("m", m, self.n_context)
        gen = torch.Generator().manual_seed(int(seed))
        self.net.eval()
        out = np.empty((len(m), self.n_features), dtype=np.float32)
        bs = self.config.eval_batch_size
        for start in range(0, len(m), bs):
            mb = torch.from_numpy(m[start : start + bs]).to(self.device)
            noise = torch.randn(len(mb), self.n_features, generator=gen).to(self.device)
            out[start : start + bs] = self.net.sample(noise, mb).cpu().numpy()
        return out

    # ------------------------------------------------------------------------------------- export
    def tensors(self) -> dict[str, np.ndarray]:
        """All weights and buffers (masks, permutations, standardisation) as numpy arrays."""
        return {k: v.detach().cpu().numpy().copy() for k, v in self.net.state_dict().items()}

    def metadata(self) -> dict[str, Any]:
        """JSON-able description from which `from_parts` rebuilds the network."""
        return {
            "class": "ConditionalFlow",
            "n_features": self.n_features,
            "n_context": self.n_context,
            "seed": self.seed,
            "config": config_to_dict(self.config),
            "fitted": self.fitted,
            "history": self.history.to_dict(),
        }

    @classmethod
    def from_parts(
        cls, tensors: dict[str, np.ndarray], metadata: dict[str, Any], device: str | None = None
    ) -> ConditionalFlow:
        """Rebuild from `tensors()` + `metadata()`; refuses missing or mismatched tensors."""
        cfg_dict = dict(metadata["config"])
        if device is not None:
            cfg_dict["device"] = device
        config = config_from_dict(FlowConfig, cfg_dict)
        flow = cls(
            int(metadata["n_features"]),
            config,
            seed=int(metadata["seed"]),
            n_context=int(metadata.get("n_context", 1)),
        )
        state = flow.net.state_dict()
        missing = sorted(set(state) - set(tensors))
        extra = sorted(set(tensors) - set(state))
        if missing or extra:
            raise ValueError(
                f"flow tensors do not match the architecture in the metadata: "
                f"missing {missing[:5]}, unexpected {extra[:5]}"
            )
        for k, v in state.items():
            if tuple(v.shape) != tuple(np.shape(tensors[k])):
                raise ValueError(
                    f"flow tensor {k!r} has shape {np.shape(tensors[k])}, expected {tuple(v.shape)}"
                )
        flow.net.load_state_dict(
            {k: torch.as_tensor(np.asarray(tensors[k])) for k in state}, strict=True
        )
        flow.net.to(flow.device).eval()
        flow.fitted = bool(metadata.get("fitted", True))
        if "history" in metadata:
            flow.history = TrainingHistory.from_dict(metadata["history"])
        return flow

    def n_parameters(self) -> int:
        return sum(p.numel() for p in self.net.parameters())

"""Binary classifiers behind one interface: a torch MLP ensemble and a boosted-tree ensemble.

``fit_classifier(x, y, w, x_val, y_val, w_val, seed, config) -> FoldModel`` trains the back-end
named by ``config.backend``; the returned fold model scores with the mean signal probability of its
ensemble members. Both are saved as plain arrays (no pickle) by the model artifact.

The boosted trees are sklearn's ``HistGradientBoostingClassifier``. sklearn has no pickle-free
serialisation, and unpickling executes code, so after training each tree's node arrays are exported
and scoring uses our own tree walk (``HGBEnsemble``, compiled with numba), which reproduces
sklearn's ``predict_proba`` bit for bit (same float64 thresholds, same NaN routing, same summation
order) at about sklearn's single-thread speed.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from adhunt.models.base import FoldModel, TrainConfig, prefixed, unprefixed
from adhunt.models.preprocessing import Standardizer, transform_from_dict

__all__ = [
    "HGBEnsemble",
    "MLPEnsemble",
    "class_balance_weights",
    "fit_classifier",
    "fit_hgb",
    "fit_mlp",
    "resolve_device",
]

log = logging.getLogger(__name__)


def _member_seed(seed: int, member: int) -> int:
    return int(np.random.SeedSequence([int(seed), int(member)]).generate_state(1)[0] % (2**31 - 1))


def class_balance_weights(y: np.ndarray, w: np.ndarray | None = None) -> np.ndarray:
    """Per-event weights giving both classes the same total weight (mean weight 1).

    CWoLa's SR/SB and IAD's data/reference samples differ a lot in size; without balancing the
    classifier's output drifts towards the prior instead of the likelihood ratio we want.
    """
    y = np.asarray(y)
    w = np.ones(len(y)) if w is None else np.asarray(w, dtype=np.float64)
    out = w.astype(np.float64).copy()
    total = w.sum()
    for c in (0, 1):
        sel = y == c
        wc = w[sel].sum()
        if wc <= 0:
            raise ValueError(
                f"class {c} has no events (or zero total weight); cannot train a classifier"
            )
        out[sel] *= 0.5 * total / wc
    return out * (len(y) / out.sum())


def _check_xy(
    x: Any, y: Any, w: Any, what: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y)
    if x.ndim != 2:
        raise ValueError(f"{what}: x must be 2-D (events x features), got shape {x.shape}")
    if y.shape != (x.shape[0],):
        raise ValueError(f"{what}: y has shape {y.shape}, expected ({x.shape[0]},)")
    if not np.all(np.isin(y, (0, 1))):
        raise ValueError(f"{what}: labels must be 0 or 1")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{what}: x contains NaN or inf")
    y = y.astype(np.int64)
    if w is not None:
        w = np.asarray(w, dtype=np.float64)
        if w.shape != y.shape or not np.all(np.isfinite(w)) or np.any(w < 0):
            raise ValueError(f"{what}: weights must be finite, non-negative, one per event")
    return x, y, w


def _split(
    x: np.ndarray, y: np.ndarray, w: np.ndarray | None, fraction: float, seed: int
) -> tuple[tuple, tuple]:
    rng = np.random.default_rng(seed)
    is_val = rng.random(len(y)) < fraction
    wt = None if w is None else w[~is_val]
    wv = None if w is None else w[is_val]
    return (x[~is_val], y[~is_val], wt), (x[is_val], y[is_val], wv)


def fit_classifier(
    x: np.ndarray,
    y: np.ndarray,
    w: np.ndarray | None = None,
    x_val: np.ndarray | None = None,
    y_val: np.ndarray | None = None,
    w_val: np.ndarray | None = None,
    seed: int = 0,
    config: TrainConfig | None = None,
) -> FoldModel:
    """Train the back-end ``config.backend`` ("hgb" or "mlp"); labels 1 = signal-like class.

    Without ``x_val`` a random ``config.val_fraction`` of ``x`` is held out for early stopping.
    """
    config = config or TrainConfig()
    fit = {"hgb": fit_hgb, "mlp": fit_mlp}[config.backend]
    return fit(x, y, w, x_val, y_val, w_val, seed=seed, config=config)


def _prepare(x, y, w, x_val, y_val, w_val, seed, config):
    x, y, w = _check_xy(x, y, w, "training sample")
    if x_val is None:
        if y_val is not None:
            raise ValueError("y_val given without x_val")
        if config.val_fraction > 0:
            (x, y, w), (x_val, y_val, w_val) = _split(x, y, w, config.val_fraction, seed)
    if x_val is not None:
        x_val, y_val, w_val = _check_xy(x_val, y_val, w_val, "validation sample")
        if x_val.shape[1] != x.shape[1]:
            raise ValueError(
                f"validation sample has {x_val.shape[1]} features, training {x.shape[1]}"
            )
        if len(y_val) == 0 or len(np.unique(y_val)) < 2:
            log.warning("validation sample lacks one class; training without early stopping")
            x_val = y_val = w_val = None
    if config.balance_classes:
        w = class_balance_weights(y, w)
        if x_val is not None:
            w_val = class_balance_weights(y_val, w_val)
    elif len(np.unique(y)) < 2:
        raise ValueError("training sample has a single class; cannot train a classifier")
    return x, y, w, x_val, y_val, w_val


# --------------------------------------------------------------------------------------------
# Boosted trees
# --------------------------------------------------------------------------------------------

_NODE_FIELDS = {
    "value": np.float64,
    "feature_idx": np.int64,
    "num_threshold": np.float64,
    "missing_go_to_left": np.uint8,
    "left": np.int64,
    "right": np.int64,
    "is_leaf": np.uint8,
}


def _export_hgb(estimator: Any) -> dict[str, np.ndarray]:
    """Node arrays of every tree of a fitted binary HistGradientBoostingClassifier, concatenated.

    ``left``/``right`` become global indices into the concatenation; ``roots`` holds each tree's
    root index. Relies on sklearn's (private but stable since 0.21) ``_predictors`` /
    ``_baseline_prediction``; a changed layout fails loudly here rather than scoring wrongly
    (and the exactness test against ``predict_proba`` guards it).
    """
    if getattr(estimator, "n_trees_per_iteration_", None) != 1:
        raise ValueError("only binary HistGradientBoostingClassifier models can be exported")
    if getattr(estimator, "is_categorical_", None) is not None and np.any(
        estimator.is_categorical_
    ):
        raise ValueError("categorical features are not supported by the exported tree scorer")
    parts: dict[str, list[np.ndarray]] = {f: [] for f in _NODE_FIELDS}
    roots, offset = [], 0
    for iteration in estimator._predictors:
        (predictor,) = iteration
        nodes = predictor.nodes
        missing = set(_NODE_FIELDS) - set(nodes.dtype.names)
        if missing:
            raise ValueError(
                f"sklearn tree nodes lack fields {sorted(missing)}; unsupported version"
            )
        if "is_categorical" in nodes.dtype.names and np.any(nodes["is_categorical"]):
            raise ValueError("categorical splits are not supported by the exported tree scorer")
        for f, dt in _NODE_FIELDS.items():
            arr = nodes[f].astype(dt)
            if f in ("left", "right"):
                arr = np.where(nodes["is_leaf"].astype(bool), 0, arr + offset)
            parts[f].append(arr)
        roots.append(offset)
        offset += len(nodes)
    out = {
        f: np.concatenate(v) if v else np.zeros(0, dt)
        for (f, v), dt in zip(parts.items(), _NODE_FIELDS.values(), strict=True)
    }
    out["roots"] = np.asarray(roots, dtype=np.int64)
    out["baseline"] = np.asarray(estimator._baseline_prediction, dtype=np.float64).reshape(1)
    return out


class _Trees:
    """One exported boosted-tree model: validated node arrays and their raw log-odds.

    The arrays are checked on construction (indices in range, no cycles) because they come from
    a file: the compiled walk below trusts them.
    """

    def __init__(self, arrays: Mapping[str, np.ndarray], n_features: int) -> None:
        missing = {*_NODE_FIELDS, "roots", "baseline"} - set(arrays)
        if missing:
            raise ValueError(f"tree arrays missing {sorted(missing)}")
        a = {k: np.asarray(arrays[k]) for k in (*_NODE_FIELDS, "roots", "baseline")}
        n_nodes = len(a["value"])
        if any(len(a[f]) != n_nodes for f in _NODE_FIELDS) or a["baseline"].shape != (1,):
            raise ValueError("tree node arrays have inconsistent lengths")
        leaf = a["is_leaf"].astype(bool)
        inner = ~leaf
        for f in ("left", "right"):
            if np.any((a[f][inner] < 0) | (a[f][inner] >= n_nodes)):
                raise ValueError(f"tree {f} child index out of range")
        if np.any((a["feature_idx"][inner] < 0) | (a["feature_idx"][inner] >= n_features)):
            raise ValueError("tree feature index out of range")
        roots = a["roots"].astype(np.int64)
        if np.any((roots < 0) | (roots >= max(n_nodes, 1))):
            raise ValueError("tree root index out of range")
        self.left = np.where(leaf, 0, a["left"]).astype(np.int64)
        self.right = np.where(leaf, 0, a["right"]).astype(np.int64)
        self.is_leaf = leaf
        self.feature = np.where(leaf, 0, a["feature_idx"]).astype(np.int64)
        self.threshold = a["num_threshold"].astype(np.float64)
        self.missing_left = a["missing_go_to_left"].astype(bool)
        self.value = a["value"].astype(np.float64)
        self.roots = roots
        self.baseline = float(a["baseline"][0])
        self.n_features = int(n_features)
        # depth = number of splits on the longest path. Rejects cyclic (corrupt) trees, which
        # would otherwise loop forever in the compiled walk.
        # In a forest every node is reached at most once from the roots; counting visits level by
        # level stops (with bounded memory) at the first node reached twice.
        depth, frontier = 0, roots if n_nodes else roots[:0]
        visited = len(frontier)
        while len(frontier):
            inner_front = frontier[~leaf[frontier]]
            if len(inner_front) == 0:
                break
            depth += 1
            frontier = np.concatenate([a["left"][inner_front], a["right"][inner_front]])
            visited += len(frontier)
            if visited > n_nodes:
                raise ValueError("tree arrays contain a cycle or a shared node")
        self.depth = depth

    def raw(self, x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x, dtype=np.float64)
        out = np.empty(x.shape[0], dtype=np.float64)
        _tree_kernel()(
            x, self.roots, self.feature, self.threshold, self.missing_left, self.left, self.right,
            self.is_leaf, self.value, self.baseline, out,
        )  # fmt: skip
        return out


_KERNEL = None


def _tree_kernel():
    """Compiled per-event tree walk (numba, cached on disk); ~sklearn's own Cython speed.

    A numpy version that walks all trees level by level costs several gathers per level over an
    (events x trees) array and measured 5-10x slower than sklearn on 200 trees; compiled, one
    event walks each tree to its leaf with no temporary arrays.
    """
    global _KERNEL
    if _KERNEL is None:
        import numba

        @numba.njit(cache=True, nogil=True)
        def kernel(
            x, roots, feature, threshold, missing_left, left, right, is_leaf, value, baseline, out
        ):
            for i in range(x.shape[0]):
                acc = 0.0
                acc += baseline  # sklearn: zeros + baseline, then tree by tree in order
                for t in range(roots.shape[0]):
                    node = roots[t]
                    while not is_leaf[node]:
                        v = x[i, feature[node]]
                        if np.isnan(v):
                            go_left = missing_left[node]
                        else:
                            go_left = v <= threshold[node]
                        node = left[node] if go_left else right[node]
                    acc += value[node]
                out[i] = acc

        _KERNEL = kernel
    return _KERNEL


def _expit(z: np.ndarray) -> np.ndarray:
    from scipy.special import expit

    return expit(z)


class HGBEnsemble(FoldModel):
    """Mean probability of exported HistGradientBoosting classifiers (no sklearn needed to score)."""

    kind = "hgb"

    def __init__(
        self,
        members: Sequence[Mapping[str, np.ndarray]],
        n_features: int,
        info: Mapping[str, Any] | None = None,
    ) -> None:
        if not members:
            raise ValueError("HGBEnsemble needs at least one member")
        self.n_features = int(n_features)
        self.members = [dict(m) for m in members]
        self._trees = [_Trees(m, self.n_features) for m in self.members]
        self.info = dict(info or {})

    @classmethod
    def from_estimators(
        cls, estimators: Sequence[Any], info: Mapping[str, Any] | None = None
    ) -> HGBEnsemble:
        """Export fitted sklearn classifiers (all trained on the same feature columns)."""
        n_features = {int(e.n_features_in_) for e in estimators}
        if len(n_features) != 1:
            raise ValueError(f"estimators disagree on the number of features: {n_features}")
        return cls([_export_hgb(e) for e in estimators], n_features.pop(), info)

    def raw_scores(self, x: np.ndarray) -> np.ndarray:
        """Log-odds of each member, shape (members, events)."""
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.n_features:
            raise ValueError(
                f"HGBEnsemble expects (events, {self.n_features}) inputs, got {x.shape}"
            )
        return np.stack([t.raw(x) for t in self._trees])

    def score(self, x: np.ndarray) -> np.ndarray:
        return _expit(self.raw_scores(x)).mean(axis=0)

    def tensors(self) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        for i, m in enumerate(self.members):
            out.update(prefixed(f"member{i}", m))
        return out

    def metadata(self) -> dict[str, Any]:
        return {"n_features": self.n_features, "n_members": len(self.members), "info": self.info}

    @classmethod
    def from_parts(
        cls, tensors: Mapping[str, np.ndarray], metadata: Mapping[str, Any]
    ) -> HGBEnsemble:
        members = [unprefixed(f"member{i}", tensors) for i in range(int(metadata["n_members"]))]
        return cls(members, metadata["n_features"], metadata.get("info"))


def fit_hgb(
    x: np.ndarray,
    y: np.ndarray,
    w: np.ndarray | None = None,
    x_val: np.ndarray | None = None,
    y_val: np.ndarray | None = None,
    w_val: np.ndarray | None = None,
    seed: int = 0,
    config: TrainConfig | None = None,
) -> HGBEnsemble:
    """Ensemble of ``config.n_ensemble`` HistGradientBoostingClassifiers with early stopping.

    Boosted trees are deterministic given their data, so members differ by their train/validation
    split: member 0 uses the split given, member i > 0 re-splits the pooled events with its own seed
    (the k-fold ensembling of the boosted-tree IAD studies).
    """
    from sklearn.ensemble import HistGradientBoostingClassifier
    from threadpoolctl import threadpool_limits

    config = config or TrainConfig()
    x, y, w, x_val, y_val, w_val = _prepare(x, y, w, x_val, y_val, w_val, seed, config)
    estimators, iters = [], []
    for i in range(config.n_ensemble):
        ms = _member_seed(seed, i)
        xt, yt, wt, xv, yv, wv = x, y, w, x_val, y_val, w_val
        if i > 0 and x_val is not None:
            xa, ya = np.concatenate([x, x_val]), np.concatenate([y, y_val])
            wa = np.concatenate([w, w_val]) if w is not None else None
            frac = len(y_val) / len(ya)
            (xt, yt, wt), (xv, yv, wv) = _split(xa, ya, wa, frac, ms)
            if len(np.unique(yv)) < 2 or len(np.unique(yt)) < 2:
                xt, yt, wt, xv, yv, wv = x, y, w, x_val, y_val, w_val
            elif config.balance_classes:
                wt, wv = class_balance_weights(yt, wt), class_balance_weights(yv, wv)
        clf = HistGradientBoostingClassifier(
            learning_rate=config.hgb_learning_rate,
            max_iter=config.hgb_max_iter,
            max_leaf_nodes=config.hgb_max_leaf_nodes,
            max_depth=config.hgb_max_depth,
            min_samples_leaf=config.hgb_min_samples_leaf,
            l2_regularization=config.hgb_l2_regularization,
            max_bins=config.hgb_max_bins,
            categorical_features=None,
            early_stopping=xv is not None,
            n_iter_no_change=config.hgb_n_iter_no_change,
            random_state=ms,
        )
        with threadpool_limits(limits=config.num_threads, user_api="openmp"):
            if xv is not None:
                clf.fit(xt, yt, sample_weight=wt, X_val=xv, y_val=yv, sample_weight_val=wv)
            else:
                clf.fit(xt, yt, sample_weight=wt)
        estimators.append(clf)
        iters.append(int(clf.n_iter_))
        log.debug("HGB member %d: %d iterations", i, clf.n_iter_)
    return HGBEnsemble.from_estimators(estimators, {"n_iter": iters, "seed": int(seed)})


# --------------------------------------------------------------------------------------------
# Torch MLP
# --------------------------------------------------------------------------------------------


def resolve_device(device: str = "auto") -> str:
    """``"auto"`` -> ``"cuda"`` when a GPU is usable, else ``"cpu"``; others are checked."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"device {device!r} requested but CUDA is not available")
    return device


def _build_mlp(n_in: int, hidden: Sequence[int], dropout: float):
    import torch.nn as nn

    layers: list[nn.Module] = []
    width = n_in
    for h in hidden:
        layers += [nn.Linear(width, int(h)), nn.ReLU()]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        width = int(h)
    layers.append(nn.Linear(width, 1))
    return nn.Sequential(*layers)


class MLPEnsemble(FoldModel):
    """Mean sigmoid output of torch MLPs, inputs standardised with training-sample statistics."""

    kind = "mlp"

    def __init__(
        self,
        states: Sequence[Mapping[str, Any]],
        n_features: int,
        hidden: Sequence[int],
        dropout: float,
        scaler: Standardizer,
        info: Mapping[str, Any] | None = None,
        device: str = "auto",
        batch_size: int = 65536,
    ) -> None:
        import torch

        if not states:
            raise ValueError("MLPEnsemble needs at least one member")
        self.n_features = int(n_features)
        self.hidden = tuple(int(h) for h in hidden)
        self.dropout = float(dropout)
        self.scaler = scaler
        self.info = dict(info or {})
        self.batch_size = int(batch_size)
        self.device = resolve_device(device)
        self.nets = []
        for state in states:
            net = _build_mlp(self.n_features, self.hidden, self.dropout)
            tensors = {k: torch.from_numpy(np.array(v, copy=True)) for k, v in state.items()}
            try:
                net.load_state_dict(tensors, strict=True)
            except RuntimeError as exc:
                raise ValueError(f"MLP weights do not match the architecture: {exc}") from exc
            self.nets.append(net.to(self.device).eval())

    def logits(self, x: np.ndarray) -> np.ndarray:
        """Per-member logits, shape (members, events); batched so large samples fit in memory."""
        import torch

        z = self.scaler.transform(np.asarray(x, dtype=np.float64)).astype(np.float32)
        out = np.empty((len(self.nets), len(z)), dtype=np.float64)
        with torch.no_grad():
            for start in range(0, len(z), self.batch_size):
                xb = torch.from_numpy(z[start : start + self.batch_size]).to(self.device)
                for i, net in enumerate(self.nets):
                    out[i, start : start + len(xb)] = net(xb)[:, 0].double().cpu().numpy()
        return out

    def score(self, x: np.ndarray) -> np.ndarray:
        return _expit(self.logits(x)).mean(axis=0)

    def tensors(self) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        for i, net in enumerate(self.nets):
            state = {k: v.detach().cpu().numpy() for k, v in net.state_dict().items()}
            out.update(prefixed(f"member{i}", state))
        return out

    def metadata(self) -> dict[str, Any]:
        return {
            "n_features": self.n_features,
            "n_members": len(self.nets),
            "hidden": list(self.hidden),
            "dropout": self.dropout,
            "preprocessing": self.scaler.to_dict(),
            "info": self.info,
        }

    @classmethod
    def from_parts(
        cls, tensors: Mapping[str, np.ndarray], metadata: Mapping[str, Any]
    ) -> MLPEnsemble:
        states = [unprefixed(f"member{i}", tensors) for i in range(int(metadata["n_members"]))]
        scaler = transform_from_dict(metadata["preprocessing"])
        if not isinstance(scaler, Standardizer):
            raise ValueError("MLPEnsemble preprocessing must be a Standardizer")
        return cls(
            states,
            metadata["n_features"],
            metadata["hidden"],
            metadata["dropout"],
            scaler,
            metadata.get("info"),
        )


def fit_mlp(
    x: np.ndarray,
    y: np.ndarray,
    w: np.ndarray | None = None,
    x_val: np.ndarray | None = None,
    y_val: np.ndarray | None = None,
    w_val: np.ndarray | None = None,
    seed: int = 0,
    config: TrainConfig | None = None,
) -> MLPEnsemble:
    """Ensemble of MLPs: weighted BCE, Adam, early stopping on validation loss (best epoch kept)."""
    import torch

    config = config or TrainConfig()
    x, y, w, x_val, y_val, w_val = _prepare(x, y, w, x_val, y_val, w_val, seed, config)
    device = resolve_device(config.device)
    scaler = Standardizer().fit(x)

    def tensors(xa, ya, wa):
        xt = torch.as_tensor(scaler.transform(xa), dtype=torch.float32, device=device)
        yt = torch.as_tensor(ya, dtype=torch.float32, device=device)
        wt = torch.as_tensor(
            np.ones(len(ya)) if wa is None else wa, dtype=torch.float32, device=device
        )
        return xt, yt, wt

    previous_threads = torch.get_num_threads()
    if config.num_threads is not None:
        torch.set_num_threads(config.num_threads)
    try:
        return _train_mlps(x, y, w, x_val, y_val, w_val, seed, config, device, scaler, tensors)
    finally:
        torch.set_num_threads(previous_threads)


def _train_mlps(x, y, w, x_val, y_val, w_val, seed, config, device, scaler, tensors) -> MLPEnsemble:
    import torch

    xt, yt, wt = tensors(x, y, w)
    val = tensors(x_val, y_val, w_val) if x_val is not None else None
    loss_fn = torch.nn.BCEWithLogitsLoss(reduction="none")
    states, info = [], {"epochs": [], "best_val_loss": [], "seed": int(seed), "device": device}
    n = len(yt)
    for i in range(config.n_ensemble):
        ms = _member_seed(seed, i)
        gen = torch.Generator().manual_seed(ms)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(ms)
            net = _build_mlp(x.shape[1], config.hidden, config.dropout).to(device)
        opt = torch.optim.Adam(net.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        best, best_state, bad_epochs, epoch = np.inf, None, 0, 0
        for epoch in range(1, config.epochs + 1):  # noqa: B007 - epoch reported below
            net.train()
            perm = torch.randperm(n, generator=gen).to(device)
            for start in range(0, n, config.batch_size):
                b = perm[start : start + config.batch_size]
                opt.zero_grad()
                loss = (loss_fn(net(xt[b])[:, 0], yt[b]) * wt[b]).sum() / wt[b].sum()
                loss.backward()
                opt.step()
            if val is None:
                continue
            net.eval()
            with torch.no_grad():
                vl = 0.0
                for start in range(0, len(val[1]), config.score_batch_size):
                    sl = slice(start, start + config.score_batch_size)
                    vl += float((loss_fn(net(val[0][sl])[:, 0], val[1][sl]) * val[2][sl]).sum())
                vl /= float(val[2].sum())
            if vl < best - 1e-7:
                best, bad_epochs = vl, 0
                best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
            else:
                bad_epochs += 1
                if bad_epochs >= config.patience:
                    break
        if best_state is not None:
            net.load_state_dict(best_state)
        states.append({k: v.detach().cpu().numpy() for k, v in net.state_dict().items()})
        info["epochs"].append(epoch)
        info["best_val_loss"].append(None if not np.isfinite(best) else float(best))
        log.debug("MLP member %d: %d epochs, best validation loss %.5f", i, epoch, best)
    return MLPEnsemble(
        states, x.shape[1], config.hidden, config.dropout, scaler, info,
        device=config.device, batch_size=config.score_batch_size,
    )  # fmt: skip

"""What the outlier detectors (ae, vae, force, tnt) share: per-jet inputs, event rules, control
regions, per-jet k-fold scoring and one seeded torch training loop.

Outlier methods need no signal in the training data and no signal region: they learn what the
bulk of the jets looks like and score how far a jet is from it. They are :class:`ResonantModel`
subclasses like the resonant methods (same k-fold, artifacts, blinding, ``adhunt train|score|
evaluate|infer``); the window they carry only says which region a report describes, unless the
control region is its sidebands.

Per-jet layout. The dijet table holds the two jets side by side (j1 = lighter, j2 = heavier by
mass, see :mod:`adhunt.schema`). Input columns pair up by name: ``mj1`` <-> ``mj2`` and
``X_j1`` <-> ``X_j2`` (``mj1_over_pt_j1`` <-> ``mj2_over_pt_j2``). A per-jet network sees each jet
as one sample; per-jet scores become one event score by a rule (:data:`EVENT_RULES`).
"""

from __future__ import annotations

import ast
import contextlib
import dataclasses
import logging
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from adhunt.models.base import ID_COLUMNS, SCORE_MODES, ResonantModel
from adhunt.provenance import MODE_ENSEMBLE, MODE_KFOLD
from adhunt.regions import SignalRegion, kfold_assignments
from adhunt.schema import IMAGE_PSEUDO_COLUMNS, RESONANT_VARIABLE

__all__ = [
    "EVENT_RULES",
    "INPUT_KINDS",
    "JET_MODES",
    "SIDEBANDS",
    "JetLayout",
    "OutlierModel",
    "coerce_config",
    "combine_jets",
    "control_mask",
    "cut_columns",
    "fit_network",
    "torch_threads",
]

log = logging.getLogger(__name__)

#: Per-jet scores -> event score: both jets above the cut (min), either (max), their sum, or the
#: single heavier (j2) / lighter (j1) jet of the mass-ordered table.
EVENT_RULES = ("min", "max", "sum", "heavier", "lighter")
#: One network for both jets (each jet a sample), one per jet, or one on the whole event.
JET_MODES = ("shared", "separate", "event")
#: What a per-jet network reads: feature columns, or the jet images (``image_j1``, ``image_j2``).
INPUT_KINDS = ("features", "images")
#: Control-region keyword: the mjj sidebands of the model's window.
SIDEBANDS = "sidebands"


def combine_jets(scores: np.ndarray, rule: str) -> np.ndarray:
    """Event scores from per-jet scores ``(events, 2)`` (column 0 = j1, the lighter jet)."""
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 2 or s.shape[1] != 2:
        raise ValueError(f"per-jet scores must have shape (events, 2), got {s.shape}")
    if rule == "min":
        return s.min(axis=1)
    if rule == "max":
        return s.max(axis=1)
    if rule == "sum":
        return s.sum(axis=1)
    if rule == "heavier":
        return s[:, 1].copy()
    if rule == "lighter":
        return s[:, 0].copy()
    raise ValueError(f"event rule must be one of {EVENT_RULES}, got {rule!r}")


# --------------------------------------------------------------------------------------------
# Jet layout
# --------------------------------------------------------------------------------------------

_JET_TOKEN = re.compile(r"(m?)j([12])")


def _jet_of(name: str) -> tuple[int | None, str]:
    """(jet 1 or 2, name with the jet replaced by ``*``), or (None, name) for event columns."""
    jets, tokens = set(), []
    for token in name.split("_"):
        match = _JET_TOKEN.fullmatch(token)
        if match:
            jets.add(int(match.group(2)))
            tokens.append(f"{match.group(1)}j*")
        else:
            tokens.append(token)
    if len(jets) != 1:
        return None, name
    return jets.pop(), "_".join(tokens)


@dataclass(frozen=True)
class JetLayout:
    """The input columns of jet 1 and jet 2, paired by position (``jet1[i]`` <-> ``jet2[i]``)."""

    jet1: tuple[str, ...]
    jet2: tuple[str, ...]

    @classmethod
    def from_features(cls, features: Sequence[str]) -> JetLayout:
        """Pair the j1 and j2 columns of ``features``; every column must have its partner."""
        per_jet: dict[int, dict[str, str]] = {1: {}, 2: {}}
        event_level = []
        for name in features:
            jet, key = _jet_of(name)
            if jet is None:
                event_level.append(name)
            else:
                per_jet[jet][key] = name
        if event_level:
            raise ValueError(
                f"column(s) {event_level} belong to neither jet; per-jet networks take columns "
                "named mj1/mj2 or *_j1/*_j2 (use jets='event' for one network on the whole event)"
            )
        unpaired = sorted(
            [per_jet[1][k] for k in set(per_jet[1]) - set(per_jet[2])]
            + [per_jet[2][k] for k in set(per_jet[2]) - set(per_jet[1])]
        )
        if unpaired:
            raise ValueError(
                f"column(s) {unpaired} have no partner of the other jet "
                "(mj1 <-> mj2, X_j1 <-> X_j2); per-jet networks need the same inputs for both jets"
            )
        keys = list(per_jet[1])  # in the order the j1 columns were given
        return cls(tuple(per_jet[1][k] for k in keys), tuple(per_jet[2][k] for k in keys))

    @property
    def columns(self) -> tuple[str, ...]:
        return self.jet1 + self.jet2

    @property
    def width(self) -> int:
        return len(self.jet1)

    def split(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Rows of :attr:`columns` -> (jet-1 block, jet-2 block)."""
        return x[:, : self.width], x[:, self.width :]


def image_stack(frame: pd.DataFrame, column: str, what: str = "data") -> np.ndarray:
    """The images of an image pseudo-column as one float32 array ``[N, S, S]``."""
    values = frame[column].to_numpy(dtype=object)
    if len(values) == 0:
        return np.zeros((0, 0, 0), np.float32)
    shapes = {np.shape(v) for v in values}
    if len(shapes) != 1 or len(next(iter(shapes))) != 2:
        raise ValueError(
            f"{what}: column {column!r} must hold one 2-D image per row of a single shape, "
            f"got shapes {sorted(shapes)[:3]}"
        )
    return np.stack(values).astype(np.float32, copy=False)


# --------------------------------------------------------------------------------------------
# Control regions
# --------------------------------------------------------------------------------------------

_FUNCTIONS = {"abs": np.abs}
_COMPARE = {
    ast.Lt: np.less, ast.LtE: np.less_equal, ast.Gt: np.greater, ast.GtE: np.greater_equal,
    ast.Eq: np.equal, ast.NotEq: np.not_equal,
}  # fmt: skip
_BINARY = {
    ast.Add: np.add, ast.Sub: np.subtract, ast.Mult: np.multiply, ast.Div: np.divide,
    ast.Pow: np.power, ast.BitAnd: np.logical_and, ast.BitOr: np.logical_or,
}  # fmt: skip


def _parse_cut(expr: str) -> ast.Expression:
    try:
        tree = ast.parse(str(expr).strip(), mode="eval")
    except SyntaxError as exc:
        raise ValueError(f"control region {expr!r} is not a valid cut expression") from exc
    allowed = (
        ast.Expression, ast.BoolOp, ast.And, ast.Or, ast.UnaryOp, ast.Not, ast.USub, ast.UAdd,
        ast.BinOp, ast.Compare, ast.Call, ast.Name, ast.Load, ast.Constant,
        *_COMPARE, *_BINARY,
    )  # fmt: skip
    for node in ast.walk(tree):
        if not isinstance(node, allowed):
            raise ValueError(
                f"control region {expr!r}: {type(node).__name__} is not allowed (use columns, "
                "numbers, abs(), + - * / **, comparisons, and/or/not, & |)"
            )
        if isinstance(node, ast.Call) and (
            not isinstance(node.func, ast.Name)
            or node.func.id not in _FUNCTIONS
            or len(node.args) != 1
            or node.keywords
        ):
            raise ValueError(f"control region {expr!r}: only abs(x) may be called")
        if isinstance(node, ast.Constant) and (
            isinstance(node.value, bool) or not isinstance(node.value, int | float)
        ):
            raise ValueError(f"control region {expr!r}: constant {node.value!r} is not a number")
    return tree


def cut_columns(expr: str | None) -> list[str]:
    """Table columns a control-region expression reads (``sidebands`` reads mjj)."""
    if expr is None:
        return []
    if str(expr).strip() == SIDEBANDS:
        return [RESONANT_VARIABLE]
    tree = _parse_cut(expr)
    names = [n.id for n in ast.walk(tree) if isinstance(n, ast.Name)]
    called = {n.func.id for n in ast.walk(tree) if isinstance(n, ast.Call)}
    return list(dict.fromkeys(n for n in names if n not in called))


def control_mask(frame: pd.DataFrame, expr: str | None, region: SignalRegion) -> np.ndarray:
    """Events of ``frame`` in the control region ``expr`` (None: all events).

    ``expr`` is ``"sidebands"`` (the mjj sidebands of ``region``) or a cut on table columns such
    as ``"abs(delta_eta) >= 1.4"`` (the CMS dijet anomaly search's control region). Expressions
    are evaluated by a small whitelist interpreter, never by ``eval``.
    """
    n = len(frame)
    if expr is None:
        return np.ones(n, dtype=bool)
    if str(expr).strip() == SIDEBANDS:
        return region.in_sb(frame[RESONANT_VARIABLE].to_numpy(dtype=np.float64))
    tree = _parse_cut(expr)
    missing = [c for c in cut_columns(expr) if c not in frame.columns]
    if missing:
        raise ValueError(f"control region {expr!r}: the table has no column(s) {missing}")

    def ev(node: ast.AST) -> Any:
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.Name):
            return frame[node.id].to_numpy(dtype=np.float64)
        if isinstance(node, ast.Constant):
            return float(node.value)
        if isinstance(node, ast.Call):
            return _FUNCTIONS[node.func.id](ev(node.args[0]))
        if isinstance(node, ast.UnaryOp):
            value = ev(node.operand)
            if isinstance(node.op, ast.Not):
                return np.logical_not(value)
            return -value if isinstance(node.op, ast.USub) else value
        if isinstance(node, ast.BinOp):
            return _BINARY[type(node.op)](ev(node.left), ev(node.right))
        if isinstance(node, ast.BoolOp):
            combine = np.logical_and if isinstance(node.op, ast.And) else np.logical_or
            out = ev(node.values[0])
            for value in node.values[1:]:
                out = combine(out, ev(value))
            return out
        if isinstance(node, ast.Compare):
            left, out = ev(node.left), np.ones(n, dtype=bool)
            for op, right_node in zip(node.ops, node.comparators, strict=True):
                right = ev(right_node)
                out = out & _COMPARE[type(op)](left, right)
                left = right
            return out
        raise ValueError(f"control region {expr!r}: cannot evaluate {type(node).__name__}")

    with np.errstate(invalid="ignore", divide="ignore"):
        mask = np.broadcast_to(np.asarray(ev(tree)), (n,))
    if mask.dtype != bool:
        raise ValueError(f"control region {expr!r} is not a cut (it gives numbers, not true/false)")
    return np.array(mask, dtype=bool)


def coerce_config(value: Any, cls: type) -> Any:
    """Nested configs may arrive as dicts (YAML/JSON): turn them into their dataclass."""
    if isinstance(value, dict):
        from adhunt.config import config_from_dict

        return config_from_dict(cls, value)
    if not isinstance(value, cls):
        raise TypeError(f"expected a {cls.__name__} or a dict, got {type(value).__name__}")
    return value


def check_choice(what: str, value: Any, choices: Sequence[Any]) -> None:
    if value not in choices:
        raise ValueError(f"{what} must be one of {tuple(choices)}, got {value!r}")


# --------------------------------------------------------------------------------------------
# The model base
# --------------------------------------------------------------------------------------------


class OutlierModel(ResonantModel):
    """k-fold outlier detector on per-jet (or whole-event) inputs.

    Config fields used here: ``jets`` (:data:`JET_MODES`), ``rule`` (:data:`EVENT_RULES`),
    ``control_region`` (None, ``"sidebands"`` or a cut expression). Subclasses implement
    ``_fit_fold`` (calling :meth:`training_rows`) and return fold models that have
    ``jet_scores(x) -> (events, 2)`` besides ``score``.
    """

    needs_sideband: ClassVar[bool] = False
    needs_signal_region: ClassVar[bool] = False
    #: Whether the method's per-jet mode is required (tnt trains one classifier per jet).
    per_jet_only: ClassVar[bool] = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        jets = getattr(self.config, "jets", "shared")
        if self.per_jet_only and jets == "event":
            raise ValueError(f"{self.method} scores each jet; jets='event' does not apply")
        images = [f for f in self.features if f in IMAGE_PSEUDO_COLUMNS]
        if self.images and tuple(self.features) != IMAGE_PSEUDO_COLUMNS:
            raise ValueError(
                f"{self.method} with inputs='images' reads exactly the columns "
                f"{list(IMAGE_PSEUDO_COLUMNS)}, got features {list(self.features)}"
            )
        if images and not self.images:
            raise ValueError(
                f"feature(s) {images} are jet images: train with inputs='images' (--inputs images)"
            )
        self.layout = None if jets == "event" else JetLayout.from_features(self.features)

    @property
    def images(self) -> bool:
        """Whether the inputs are jet images (``config.inputs == "images"``)."""
        return getattr(self.config, "inputs", "features") == "images"

    @property
    def image_size(self) -> int | None:
        """Pixels per side of the images the model reads (None: features, or not yet fitted)."""
        return getattr(self.config, "image_size", None) if self.images else None

    @property
    def input_columns(self) -> tuple[str, ...]:
        return self.features if self.layout is None else self.layout.columns

    @property
    def control_region(self) -> str | None:
        return getattr(self.config, "control_region", None)

    @property
    def target_columns(self) -> tuple[str, ...]:
        """Columns a regression learns (FORCE); never inputs."""
        return ()

    @property
    def table_columns(self) -> tuple[str, ...]:
        return tuple(
            dict.fromkeys(
                [
                    *super().table_columns,
                    *cut_columns(self.control_region),
                    *self.target_columns,
                ]
            )
        )

    def _fit_columns(self) -> list[str]:
        return list(dict.fromkeys([*super()._fit_columns(), *self.table_columns]))

    def _derive(self, df: Any) -> Any:
        """Derived inputs and derived columns of the control-region cut (e.g. ``mj1_over_mjj``)."""
        if not isinstance(df, pd.DataFrame):
            return df
        from adhunt.dijet import with_derived_features

        return with_derived_features(df, [*self.input_columns, *cut_columns(self.control_region)])

    def fit(self, data: pd.DataFrame, reference: pd.DataFrame | None = None, **kwargs: Any):
        if self.images and self.image_size is None and isinstance(data, pd.DataFrame):
            # The image size is part of the model: taken from the training images, recorded in
            # the config (so the artifact refuses images of another size).
            name = IMAGE_PSEUDO_COLUMNS[0]
            if name in data.columns and len(data):
                shape = np.shape(data[name].iloc[0])
                if len(shape) != 2 or shape[0] != shape[1]:
                    raise ValueError(
                        f"data: column {name!r} must hold square 2-D images, got shape {shape}"
                    )
                self.config = dataclasses.replace(self.config, image_size=int(shape[0]))
        if self.control_region == SIDEBANDS and isinstance(data, pd.DataFrame):
            if RESONANT_VARIABLE in data and not self.region.in_sb(data[RESONANT_VARIABLE]).any():
                raise ValueError(f"data: no sideband events around {self.region} to train on")
        if isinstance(data, pd.DataFrame):
            # Fail before training, with the cut's own message, on a bad expression or column.
            cut_columns(self.control_region)
        super().fit(data, reference, **kwargs)
        if self.control_region is not None and isinstance(data, pd.DataFrame):
            in_cr = control_mask(self._derive(data), self.control_region, self.region)
            self.summary["control_region"] = self.control_region
            self.summary["n_control_region"] = int(in_cr.sum())
        return self

    def training_rows(self, frame: pd.DataFrame, k: int, what: str = "training") -> pd.DataFrame:
        """The events of ``frame`` inside the control region (all of them without one)."""
        if self.control_region is None:
            return frame
        keep = control_mask(frame, self.control_region, self.region)
        if what == "training" and not keep.any():
            raise ValueError(
                f"{self.method} fold {k}: no {what} events in the control region "
                f"{self.control_region!r} ({len(frame)} events before the cut)"
            )
        return frame[keep].reset_index(drop=True)

    def inputs(self, frame: pd.DataFrame) -> np.ndarray:
        """Input rows: feature columns as float64, or images as float32 ``[N, 2 * S * S]``
        (j1's pixels, then j2's, each row-major)."""
        if self.images:
            if len(frame) == 0:
                return np.zeros((0, 2 * (self.image_size or 0) ** 2), np.float32)
            return np.concatenate(
                [image_stack(frame, c).reshape(len(frame), -1) for c in self.input_columns], axis=1
            )
        return frame[list(self.input_columns)].to_numpy(dtype=np.float64)

    def _score_inputs(self, data: pd.DataFrame) -> np.ndarray:
        return self.inputs(data)

    def _validate(self, df: Any, what: str, columns: Sequence[str]) -> pd.DataFrame:
        """Image pseudo-columns: arrays of the model's size with finite pixels; others as usual."""
        image_cols = [c for c in columns if c in IMAGE_PSEUDO_COLUMNS]
        if not image_cols:
            return super()._validate(df, what, columns)
        df = super()._validate(df, what, [c for c in columns if c not in IMAGE_PSEUDO_COLUMNS])
        missing = [c for c in image_cols if c not in df.columns]
        if missing:
            raise ValueError(
                f"{what}: missing jet image column(s) {missing} needed by {self.method} "
                "(read the table with those columns from an `adhunt features --images` directory)"
            )
        for col in image_cols:
            stack = image_stack(df, col, what)
            size = self.image_size
            if len(stack) == 0:
                continue
            if size is not None and stack.shape[1:] != (size, size):
                raise ValueError(
                    f"{what}: column {col!r} holds {stack.shape[1]}x{stack.shape[2]} images; "
                    f"the {self.method} model was trained on {size}x{size} images"
                )
            bad = ~np.isfinite(stack.reshape(len(stack), -1)).all(axis=1)
            if bad.any():
                first = int(np.flatnonzero(bad)[0])
                raise ValueError(
                    f"{what}: column {col!r} has {int(bad.sum())} image(s) with NaN/inf pixels, "
                    f"first at row {first}"
                )
        return df

    def jet_scores(self, data: pd.DataFrame, mode: str = "kfold") -> np.ndarray:
        """Per-jet scores ``(events, 2)`` (j1, j2), with the k-fold rules of :meth:`score`."""
        if self.layout is None:
            raise ValueError(f"{self.method} model with jets='event' has no per-jet scores")
        return self._per_fold(data, mode, lambda fold, x: fold.jet_scores(x), width=2)

    def _per_fold(
        self, data: pd.DataFrame, mode: str, fn: Callable[[Any, np.ndarray], np.ndarray], width: int
    ) -> np.ndarray:
        if not self.fitted:
            raise RuntimeError(f"{type(self).__name__} used before fit() or load()")
        if mode not in SCORE_MODES:
            raise ValueError(f"score mode must be one of {SCORE_MODES}, got {mode!r}")
        if mode == "auto":
            mask = self.trained_mask(data)
            mask = np.ones(len(data), bool) if mask is None else np.asarray(mask, bool)
            out = np.zeros((len(data), width))
            if mask.any():
                out[mask] = self._per_fold(data[mask], MODE_KFOLD, fn, width)
            if (~mask).any():
                out[~mask] = self._per_fold(data[~mask], MODE_ENSEMBLE, fn, width)
            return out
        cols = list(self.input_columns) + (list(ID_COLUMNS) if mode == MODE_KFOLD else [])
        data = self._validate(self._derive(data), "data to score", list(dict.fromkeys(cols)))
        x = self.inputs(data)
        out = np.zeros((len(data), width))
        if len(data) == 0:
            return out
        if mode == MODE_ENSEMBLE:
            for fold in self.fold_models:
                out += np.asarray(fn(fold, x), dtype=np.float64).reshape(len(x), width)
            return out / self.n_folds
        folds = kfold_assignments(data["run"], data["event"], self.n_folds, self.seed)
        for k, fold in enumerate(self.fold_models):
            rows = folds == k
            if rows.any():
                out[rows] = np.asarray(fn(fold, x[rows]), dtype=np.float64).reshape(-1, width)
        return out


# --------------------------------------------------------------------------------------------
# Torch training loop
# --------------------------------------------------------------------------------------------


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """torch CPU threads set to ``n`` for the block (None: leave the library default)."""
    import torch

    previous = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@contextlib.contextmanager
def seeded(seed: int, device: str) -> Iterator[None]:
    """torch's global RNG (CPU, and the GPU in use) seeded for the block, restored afterwards.

    Network initialisation and a VAE's reparametrisation noise draw from it, so one seed fixes a
    whole training run.
    """
    import torch

    devices = []
    if str(device).startswith("cuda"):
        devices = [torch.device(device).index or 0]
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(int(seed))
        yield


def fit_network(
    net: Any,
    batch_loss: Callable[[Any, Any, Any], Any],
    x: np.ndarray,
    y: np.ndarray | None,
    x_val: np.ndarray | None,
    y_val: np.ndarray | None,
    *,
    config: Any,
    seed: int,
    device: str,
) -> dict[str, Any]:
    """Adam on the mean of ``batch_loss(net, xb, yb)`` (per-sample losses); best epoch kept.

    Early stopping on the validation loss after ``config.patience`` epochs without improvement;
    without a validation sample all ``config.epochs`` run. The network is left at its best state.
    ``config`` needs ``epochs, batch_size, lr, weight_decay, patience, score_batch_size``.
    Returns the history (``train_loss``, ``val_loss`` per epoch, ``best_epoch``, ``best_val_loss``).
    """
    import torch

    def tensor(a: np.ndarray | None) -> Any:
        return None if a is None else torch.as_tensor(a, dtype=torch.float32, device=device)

    xt, yt, xv, yv = tensor(x), tensor(y), tensor(x_val), tensor(y_val)
    n = len(xt)
    if n == 0:
        raise ValueError("no training samples")
    gen = torch.Generator().manual_seed(int(seed))
    opt = torch.optim.Adam(net.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    history: dict[str, Any] = {"train_loss": [], "val_loss": [], "best_epoch": None}
    best, best_state, bad = np.inf, None, 0
    for epoch in range(1, config.epochs + 1):
        net.train()
        perm = torch.randperm(n, generator=gen).to(device)
        total = 0.0
        for start in range(0, n, config.batch_size):
            b = perm[start : start + config.batch_size]
            opt.zero_grad()
            loss = batch_loss(net, xt[b], None if yt is None else yt[b]).mean()
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(b)
        history["train_loss"].append(total / n)
        if xv is None or len(xv) == 0:
            continue
        net.eval()
        with torch.no_grad():
            vl = 0.0
            for start in range(0, len(xv), config.score_batch_size):
                sl = slice(start, start + config.score_batch_size)
                vl += float(batch_loss(net, xv[sl], None if yv is None else yv[sl]).sum())
            vl /= len(xv)
        history["val_loss"].append(vl)
        if not np.isfinite(vl):
            raise FloatingPointError(f"validation loss is {vl} at epoch {epoch}")
        if vl < best - 1e-7:
            best, bad, history["best_epoch"] = vl, 0, epoch
            best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
        else:
            bad += 1
            if bad >= config.patience:
                break
    if best_state is not None:
        net.load_state_dict(best_state)
    history["best_val_loss"] = None if not np.isfinite(best) else float(best)
    net.eval()
    return history


class PerJetNetworks:
    """What the ae/vae and force fold models share: ``nets[group][member]`` (group 1 only with
    ``jets='separate'``) applied to each jet, or to the whole event with ``jets='event'``, and
    combined by the event rule; saved as ``group{g}/member{m}`` tensors.

    Subclasses set ``spec``, ``nets``, ``scalers``, ``info`` and implement :meth:`per_sample`
    (mean over a group's members of the per-sample output: a loss, a regressed value).
    """

    spec: dict[str, Any]
    nets: list[list[Any]]
    scalers: list[Any]
    info: Any
    what: ClassVar[str] = "model"

    @property
    def n_inputs(self) -> int:
        raise NotImplementedError

    def per_sample(self, x: np.ndarray, group: int, *options: Any) -> np.ndarray:
        raise NotImplementedError

    def as_inputs(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(x, dtype=np.float64)

    def score(self, x: np.ndarray) -> np.ndarray:
        if self.spec["jets"] == "event":
            x = np.asarray(x, dtype=np.float64)
            if x.ndim != 2 or x.shape[1] != self.n_inputs:
                raise ValueError(f"expected (events, {self.n_inputs}) inputs, got {x.shape}")
            return self.per_sample(x, 0)
        return combine_jets(self.jet_scores(x), self.spec["rule"])

    def jet_scores(self, x: np.ndarray, *options: Any) -> np.ndarray:
        """``(events, 2)`` per-jet outputs of the inputs ``[jet-1 columns | jet-2 columns]``;
        ``options`` go to :meth:`per_sample` (the autoencoders' loss term)."""
        x = self.as_inputs(x)
        if self.spec["jets"] == "event":
            raise ValueError(f"a {self.what} with jets='event' has no per-jet scores")
        f = self.n_inputs
        if x.ndim != 2 or x.shape[1] != 2 * f:
            raise ValueError(f"expected (events, {2 * f}) inputs, got {x.shape}")
        g2 = 1 if self.spec["jets"] == "separate" else 0
        jet1, jet2 = self.per_sample(x[:, :f], 0, *options), self.per_sample(x[:, f:], g2, *options)
        return np.stack([jet1, jet2], axis=1)

    def tensors(self) -> dict[str, np.ndarray]:
        from adhunt.models.base import prefixed

        out: dict[str, np.ndarray] = {}
        for g, nets in enumerate(self.nets):
            for m, net in enumerate(nets):
                out.update(prefixed(f"group{g}/member{m}", network_state(net)))
        return out

    def load_networks(
        self,
        states: Sequence[Sequence[Mapping[str, np.ndarray]]],
        build: Callable[[], Any],
        label: str,
    ) -> None:
        """``nets[g][m]`` from saved states: ``build()`` makes each network, on ``self.device``."""
        self.nets = []
        for g, group in enumerate(states):
            nets = []
            for m, state in enumerate(group):
                net = build()
                load_state(net, state, f"{label} group {g} member {m}")
                nets.append(net.to(self.device).eval())
            self.nets.append(nets)

    def network_metadata(self) -> dict[str, Any]:
        """The metadata keys every such fold model writes (subclasses add theirs, then info)."""
        return {
            "spec": self.spec,
            "n_members": [len(n) for n in self.nets],
            "preprocessing": [s.to_dict() for s in self.scalers],
        }


def network_state(net: Any) -> dict[str, np.ndarray]:
    return {k: v.detach().cpu().numpy() for k, v in net.state_dict().items()}


def load_state(net: Any, state: Mapping[str, np.ndarray], what: str) -> Any:
    import torch

    tensors = {k: torch.from_numpy(np.array(v, copy=True)) for k, v in state.items()}
    try:
        net.load_state_dict(tensors, strict=True)
    except RuntimeError as exc:
        raise ValueError(f"{what}: weights do not match the architecture: {exc}") from exc
    return net

"""Feature preprocessing fitted on training data only, serialisable to plain JSON.

Every transform is fitted on the training events of one fold (never on the events that fold will
score) and stored as a JSON-able dict inside the model artifact, so a saved model re-applies
exactly the same numbers on another machine without pickles.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

__all__ = ["LogitScaler", "Pipeline", "Standardizer", "Transform", "transform_from_dict"]


def _as_2d(x: np.ndarray, name: str) -> np.ndarray:
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 2:
        raise ValueError(f"{name}: expected a 2-D array (events x features), got shape {arr.shape}")
    return arr


class Transform(ABC):
    """An invertible, per-feature transform with a JSON round trip."""

    kind: ClassVar[str]
    _KINDS: ClassVar[dict[str, type[Transform]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "kind" in cls.__dict__:
            Transform._KINDS[cls.kind] = cls

    @property
    def fitted(self) -> bool:
        return self._params() is not None

    @abstractmethod
    def _params(self) -> dict[str, Any] | None: ...

    @abstractmethod
    def fit(self, x: np.ndarray) -> Transform: ...

    @abstractmethod
    def transform(self, x: np.ndarray) -> np.ndarray: ...

    @abstractmethod
    def inverse_transform(self, z: np.ndarray) -> np.ndarray: ...

    @abstractmethod
    def log_abs_det_jacobian(self, x: np.ndarray) -> np.ndarray:
        """``log |dz/dx|`` per event, so densities in z convert back to densities in x."""

    def fit_transform(self, x: np.ndarray) -> np.ndarray:
        return self.fit(x).transform(x)

    def _check(self, x: np.ndarray, param: str) -> np.ndarray:
        """Fitted, 2-D, and as many features as the fitted parameter ``param`` has."""
        if not self.fitted:
            raise RuntimeError(f"{type(self).__name__} used before fit()")
        n_features = len(getattr(self, param))
        arr = _as_2d(x, type(self).__name__)
        if arr.shape[1] != n_features:
            raise ValueError(
                f"{type(self).__name__} was fitted on {n_features} features, got {arr.shape[1]}"
            )
        return arr

    @abstractmethod
    def to_dict(self) -> dict[str, Any]: ...

    @classmethod
    @abstractmethod
    def from_dict(cls, data: dict[str, Any]) -> Transform: ...


class Standardizer(Transform):
    """``z = (x - mean) / std``; constant features keep std = 1 so they map to 0, not NaN."""

    kind = "standardizer"

    def __init__(self) -> None:
        self.mean: np.ndarray | None = None
        self.std: np.ndarray | None = None

    def _params(self) -> dict[str, Any] | None:
        return None if self.mean is None else {"mean": self.mean, "std": self.std}

    def fit(self, x: np.ndarray) -> Standardizer:
        arr = _as_2d(x, "Standardizer.fit")
        if arr.shape[0] == 0:
            raise ValueError("Standardizer.fit: no events")
        if not np.all(np.isfinite(arr)):
            raise ValueError("Standardizer.fit: input contains NaN or inf")
        self.mean = arr.mean(axis=0)
        std = arr.std(axis=0)
        self.std = np.where(std > 0, std, 1.0)
        return self

    def transform(self, x: np.ndarray) -> np.ndarray:
        arr = self._check(x, "mean")
        return (arr - self.mean) / self.std

    def inverse_transform(self, z: np.ndarray) -> np.ndarray:
        arr = self._check(z, "mean")
        return arr * self.std + self.mean

    def log_abs_det_jacobian(self, x: np.ndarray) -> np.ndarray:
        arr = self._check(x, "mean")
        return np.full(arr.shape[0], -np.sum(np.log(self.std)))

    def to_dict(self) -> dict[str, Any]:
        if not self.fitted:
            raise RuntimeError("Standardizer.to_dict before fit()")
        return {"kind": self.kind, "mean": self.mean.tolist(), "std": self.std.tolist()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Standardizer:
        obj = cls()
        obj.mean = np.asarray(data["mean"], dtype=np.float64)
        obj.std = np.asarray(data["std"], dtype=np.float64)
        if obj.mean.shape != obj.std.shape or np.any(obj.std <= 0):
            raise ValueError("Standardizer.from_dict: inconsistent mean/std")
        return obj


class LogitScaler(Transform):
    """Min-max to ``(eps, 1 - eps)`` then logit: unbounded inputs for normalizing flows.

    Features with hard edges (masses >= 0, tau21 in [0, 1]) make flows waste capacity on the
    edges; the logit stretches them to the whole real line. Values beyond the training range are
    clipped into ``(eps, 1 - eps)`` so they stay finite (they are rare and at the tails).
    """

    kind = "logit"

    def __init__(self, eps: float = 1e-6, margin: float = 0.0) -> None:
        if not 0.0 < eps < 0.5:
            raise ValueError(f"LogitScaler eps must be in (0, 0.5), got {eps}")
        if margin < 0:
            raise ValueError(f"LogitScaler margin must be >= 0, got {margin}")
        self.eps = float(eps)
        self.margin = float(margin)
        self.low: np.ndarray | None = None
        self.high: np.ndarray | None = None

    def _params(self) -> dict[str, Any] | None:
        return None if self.low is None else {"low": self.low, "high": self.high}

    def fit(self, x: np.ndarray) -> LogitScaler:
        arr = _as_2d(x, "LogitScaler.fit")
        if arr.shape[0] == 0:
            raise ValueError("LogitScaler.fit: no events")
        if not np.all(np.isfinite(arr)):
            raise ValueError("LogitScaler.fit: input contains NaN or inf")
        low, high = arr.min(axis=0), arr.max(axis=0)
        span = np.where(high > low, high - low, 1.0)
        self.low = low - self.margin * span
        self.high = high + self.margin * span
        self.high = np.where(self.high > self.low, self.high, self.low + 1.0)
        return self

    def _unit(self, arr: np.ndarray) -> np.ndarray:
        u = (arr - self.low) / (self.high - self.low)
        return self.eps + (1.0 - 2.0 * self.eps) * np.clip(u, 0.0, 1.0)

    def transform(self, x: np.ndarray) -> np.ndarray:
        arr = self._check(x, "low")
        u = self._unit(arr)
        return np.log(u) - np.log1p(-u)

    def inverse_transform(self, z: np.ndarray) -> np.ndarray:
        arr = self._check(z, "low")
        s = 1.0 / (1.0 + np.exp(-arr))
        u = (s - self.eps) / (1.0 - 2.0 * self.eps)
        return self.low + u * (self.high - self.low)

    def log_abs_det_jacobian(self, x: np.ndarray) -> np.ndarray:
        arr = self._check(x, "low")
        u = self._unit(arr)
        # z = logit(eps + (1-2eps)(x-low)/(high-low)); dz/dx = (1-2eps) / ((high-low) u (1-u))
        per = np.log1p(-2.0 * self.eps) - np.log(self.high - self.low) - np.log(u) - np.log1p(-u)
        return per.sum(axis=1)

    def to_dict(self) -> dict[str, Any]:
        if not self.fitted:
            raise RuntimeError("LogitScaler.to_dict before fit()")
        return {
            "kind": self.kind,
            "eps": self.eps,
            "margin": self.margin,
            "low": self.low.tolist(),
            "high": self.high.tolist(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LogitScaler:
        obj = cls(eps=data["eps"], margin=data.get("margin", 0.0))
        obj.low = np.asarray(data["low"], dtype=np.float64)
        obj.high = np.asarray(data["high"], dtype=np.float64)
        if obj.low.shape != obj.high.shape or np.any(obj.high <= obj.low):
            raise ValueError("LogitScaler.from_dict: inconsistent low/high")
        return obj


class Pipeline(Transform):
    """Transforms applied in order (e.g. LogitScaler then Standardizer for flows)."""

    kind = "pipeline"

    def __init__(self, steps: Sequence[Transform]) -> None:
        self.steps = list(steps)
        if not all(isinstance(s, Transform) for s in self.steps):
            raise TypeError("Pipeline steps must be Transform instances")

    def _params(self) -> dict[str, Any] | None:
        return {} if all(s.fitted for s in self.steps) else None

    def fit(self, x: np.ndarray) -> Pipeline:
        z = _as_2d(x, "Pipeline.fit")
        for step in self.steps:
            z = step.fit_transform(z)
        return self

    def transform(self, x: np.ndarray) -> np.ndarray:
        z = x
        for step in self.steps:
            z = step.transform(z)
        return np.asarray(z, dtype=np.float64)

    def inverse_transform(self, z: np.ndarray) -> np.ndarray:
        x = z
        for step in reversed(self.steps):
            x = step.inverse_transform(x)
        return np.asarray(x, dtype=np.float64)

    def log_abs_det_jacobian(self, x: np.ndarray) -> np.ndarray:
        z = _as_2d(x, "Pipeline")
        total = np.zeros(z.shape[0])
        for step in self.steps:
            total += step.log_abs_det_jacobian(z)
            z = step.transform(z)
        return total

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "steps": [s.to_dict() for s in self.steps]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Pipeline:
        return cls([transform_from_dict(s) for s in data["steps"]])


def transform_from_dict(data: dict[str, Any]) -> Transform:
    """Rebuild any transform from its ``to_dict()`` form (dispatch on ``kind``)."""
    if not isinstance(data, dict) or "kind" not in data:
        raise ValueError(f"not a serialised transform: {data!r:.200}")
    kind = data["kind"]
    if kind not in Transform._KINDS:
        raise ValueError(f"unknown transform kind {kind!r}; known: {sorted(Transform._KINDS)}")
    return Transform._KINDS[kind].from_dict(data)

"""Signal region / sideband definition in the resonant variable, and event-level k-fold assignment.

The fold of an event is a pure function of its identity ``(run, event)`` and a seed, never of its
position in a table: the same event lands in the same fold whatever the chunking, executor or row
order, so "which model may score this event" is a property of the event itself.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from adhunt.schema import DEFAULT_SIGNAL_REGION

__all__ = ["SignalRegion", "event_hash", "kfold_assignments", "validation_mask"]


@dataclass(frozen=True)
class SignalRegion:
    """A window ``low <= mjj < high`` (GeV) and its sidebands.

    The sideband (SB) is everything outside the SR, or only ``sideband_width`` GeV on either side
    of it when given (narrow sidebands keep the background template close in mjj).
    """

    low: float = DEFAULT_SIGNAL_REGION[0]
    high: float = DEFAULT_SIGNAL_REGION[1]
    sideband_width: float | None = None

    def __post_init__(self) -> None:
        for name in ("low", "high", "sideband_width"):
            value = getattr(self, name)
            if value is None and name == "sideband_width":
                continue
            try:
                number = float(value)
            except (TypeError, ValueError):
                raise ValueError(f"SignalRegion.{name} must be a number, got {value!r}") from None
            if not math.isfinite(number):
                raise ValueError(f"SignalRegion.{name} must be finite, got {value!r}")
            object.__setattr__(self, name, number)
        if not self.low < self.high:
            raise ValueError(f"SignalRegion needs low < high, got {self.low}:{self.high}")
        if self.sideband_width is not None and not (
            math.isfinite(self.sideband_width) and self.sideband_width > 0
        ):
            raise ValueError(
                f"SignalRegion.sideband_width must be positive, got {self.sideband_width!r}"
            )

    @property
    def center(self) -> float:
        return 0.5 * (self.low + self.high)

    @property
    def width(self) -> float:
        return self.high - self.low

    def in_sr(self, mjj: np.ndarray) -> np.ndarray:
        """Boolean mask of events inside the signal region (NaN is outside both SR and SB)."""
        m = np.asarray(mjj, dtype=np.float64)
        return (m >= self.low) & (m < self.high)

    def in_sb(self, mjj: np.ndarray) -> np.ndarray:
        """Boolean mask of sideband events: outside the SR, within ``sideband_width`` if set."""
        m = np.asarray(mjj, dtype=np.float64)
        outside = (m < self.low) | (m >= self.high)
        if self.sideband_width is None:
            return outside & np.isfinite(m)
        return (
            outside & (m >= self.low - self.sideband_width) & (m < self.high + self.sideband_width)
        )

    def __str__(self) -> str:
        text = f"{self.low:g}:{self.high:g}"
        return text if self.sideband_width is None else f"{text}:{self.sideband_width:g}"

    @classmethod
    def parse(cls, text: str, sideband_width: float | None = None) -> SignalRegion:
        """``"3300:3700"`` (GeV) or ``"3300:3700:200"`` (with a sideband width) -> SignalRegion."""
        parts = str(text).strip().split(":")
        if len(parts) not in (2, 3):
            raise ValueError(
                f"window must look like LOW:HIGH or LOW:HIGH:SIDEBAND (GeV), got {text!r}"
            )
        try:
            values = [float(p) for p in parts]
        except ValueError:
            raise ValueError(f"window {text!r}: LOW, HIGH (and SIDEBAND) must be numbers") from None
        if len(values) == 3:
            if sideband_width is not None and sideband_width != values[2]:
                raise ValueError(f"window {text!r} and sideband_width={sideband_width} disagree")
            sideband_width = values[2]
        return cls(values[0], values[1], sideband_width)


_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser: a fast, well-mixed bijection of uint64 (vectorised)."""
    with np.errstate(over="ignore"):
        z = x + _GOLDEN
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def _as_uint64(values: np.ndarray, name: str) -> np.ndarray:
    arr = np.asarray(values)
    if arr.dtype.kind not in "iu":
        if arr.dtype.kind == "f" and np.all(np.isfinite(arr)) and np.all(arr == np.round(arr)):
            arr = arr.astype(np.int64)
        else:
            raise ValueError(f"{name} must hold integers (event identity), got dtype {arr.dtype}")
    return arr.astype(np.int64).view(np.uint64) if arr.dtype.kind == "i" else arr.astype(np.uint64)


def event_hash(run: np.ndarray, event: np.ndarray, seed: int, salt: int = 0) -> np.ndarray:
    """Deterministic 64-bit hash of ``(run, event, seed, salt)`` per event (uint64 array)."""
    r = _as_uint64(run, "run")
    e = _as_uint64(event, "event")
    if r.shape != e.shape:
        raise ValueError(f"run and event have different shapes: {r.shape} vs {e.shape}")
    key = np.uint64((int(seed) * 0x632BE59BD9B4E019 + int(salt) * 0x2545F4914F6CDD1D) % 2**64)
    h = _splitmix64(r ^ key)
    return _splitmix64(h ^ e)


def kfold_assignments(run: np.ndarray, event: np.ndarray, n_folds: int, seed: int) -> np.ndarray:
    """Fold index in ``[0, n_folds)`` of each event, a function of ``(run, event, seed)`` only."""
    if int(n_folds) < 1:
        raise ValueError(f"n_folds must be >= 1, got {n_folds}")
    return (event_hash(run, event, seed) % np.uint64(n_folds)).astype(np.int64)


def validation_mask(run: np.ndarray, event: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """True for the events set aside for validation (early stopping), ~``fraction`` of them.

    Uses a hash independent of the fold hash (different salt), so validation events are spread
    evenly over the training folds and chosen the same way on every machine.
    """
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"validation fraction must be in [0, 1), got {fraction}")
    h = event_hash(run, event, seed, salt=1)
    # Top 53 bits -> uniform double in [0, 1).
    u = (h >> np.uint64(11)).astype(np.float64) / float(2**53)
    return u < fraction

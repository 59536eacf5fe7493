"""Per-window training for the sliding-window scan: a picklable ``score_window`` callable.

:func:`adhunt.bumphunt.scan` needs, for every window, one anomaly score per event from a model
trained on that window and scored k-fold (no event scored by a model that saw it). This module
builds that callable from a feature table and a :class:`~adhunt.bumphunt.ScanConfig`; it holds
no coffea and no executor logic, so the same object runs in this process, in a process pool or
on a Dask worker and gives the same scores.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from adhunt.bumphunt import ScanConfig
from adhunt.regions import SignalRegion, event_hash
from adhunt.schema import RESONANT_VARIABLE

__all__ = ["WindowTrainer", "method_config", "window_scorer", "with_classifier_settings"]

log = logging.getLogger(__name__)


def with_classifier_settings(config: Any, **changes: Any) -> Any:
    """``config`` with ``changes`` applied to its classifier settings (a ``TrainConfig``, the
    config itself or a nested field). Keys whose value is None are left alone."""
    from adhunt.models.base import TrainConfig

    changes = {k: v for k, v in changes.items() if v is not None}
    if not changes:
        return config
    if isinstance(config, TrainConfig):
        return dataclasses.replace(config, **changes)
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if isinstance(value, TrainConfig):
            return dataclasses.replace(config, **{f.name: dataclasses.replace(value, **changes)})
    raise ValueError(
        f"{sorted(changes)} do not apply to {type(config).__name__} (no classifier settings)"
    )


def method_config(
    method: str,
    source: str | Path | Mapping[str, Any] | None = None,
    *,
    backend: str | None = None,
    n_ensemble: int | None = None,
    num_threads: int | None = None,
) -> Any:
    """The config of ``method``: its defaults, a YAML/TOML file or a mapping, with overrides."""
    from adhunt.config import config_from_dict, load_config
    from adhunt.models.registry import get_method

    cls = get_method(method)
    if source is None:
        config = cls.config_class()
    elif isinstance(source, Mapping):
        config = config_from_dict(cls.config_class, dict(source))
    else:
        config = load_config(cls.config_class, source)
    config = with_classifier_settings(config, backend=backend, n_ensemble=n_ensemble)
    classifier = _classifier_settings(config)
    if num_threads is not None and classifier is not None and classifier.num_threads is None:
        # A default for windows running side by side; a thread count the user set stays.
        config = with_classifier_settings(config, num_threads=num_threads)
    return config


def _classifier_settings(config: Any) -> Any:
    """The ``TrainConfig`` in ``config`` (itself or a field), or None."""
    from adhunt.models.base import TrainConfig

    if isinstance(config, TrainConfig):
        return config
    for f in dataclasses.fields(config):
        if isinstance(getattr(config, f.name), TrainConfig):
            return getattr(config, f.name)
    return None


@dataclass
class WindowTrainer:
    """Train ``method`` k-fold on one window and score every event of ``data``.

    ``sideband_width``: GeV on each side of the window (None: every event outside it).
    ``max_sideband_ratio``: keep at most that many sideband events per SR event for training,
    chosen by a hash of (run, event, seed) so the choice is the same on every executor; events
    left out of training are still scored (by their fold's model, which never saw them either).
    ``save_dir``: when set, each window's model is saved to ``save_dir/LOW_HIGH`` with
    ``extra`` as its provenance record. ``decorrelate="qr"``: the model also fits the
    mjj decorrelation of its k-fold scores on every event of ``data`` outside the window and
    returns (and saves) decorrelated scores. ``data``/``reference`` may be handles with a ``load()``
    method, so that a pool sends a large table to each worker once rather than with every task.
    """

    data: Any
    method: str
    features: tuple[str, ...]
    config: Any
    folds: int
    seed: int
    sideband_width: float | str | None
    max_sideband_ratio: float | None = None
    reference: Any = None
    save_dir: str | None = None
    extra: Mapping[str, Any] | None = None
    decorrelate: str = "none"

    def region(self, bounds: tuple[float, float]) -> SignalRegion:
        width = self.sideband_width
        if width == "window":
            width = float(bounds[1] - bounds[0])
        elif width == "all":
            width = None
        return SignalRegion(float(bounds[0]), float(bounds[1]), width)

    def training_mask(self, data: pd.DataFrame, region: SignalRegion) -> np.ndarray:
        """Events the window's model trains on: the SR and the (subsampled) sidebands."""
        mjj = data[RESONANT_VARIABLE].to_numpy(dtype=np.float64)
        sr, sb = region.in_sr(mjj), region.in_sb(mjj)
        if self.max_sideband_ratio is not None:
            n_sr, n_sb = int(sr.sum()), int(sb.sum())
            keep = self.max_sideband_ratio * n_sr / max(n_sb, 1)
            if keep < 1.0:
                h = event_hash(data["run"], data["event"], self.seed, salt=2)
                u = (h >> np.uint64(11)).astype(np.float64) / float(2**53)
                sb &= u < keep
        return sr | sb

    def __call__(self, bounds: tuple[float, float], data: pd.DataFrame | None = None) -> np.ndarray:
        from adhunt.models.registry import get_method

        data = _resolve(self.data if data is None else data)
        if data is None:
            raise ValueError("WindowTrainer has no data")
        reference = _resolve(self.reference)
        region = self.region(bounds)
        cls = get_method(self.method)
        model = cls(
            list(self.features), region, n_folds=self.folds, seed=self.seed, config=self.config
        )
        train = data[self.training_mask(data, region)]
        model.fit(train, reference)
        if self.decorrelate == "qr":
            from adhunt.models.decorrelation import QRConfig, fit_decorrelation

            # every event outside the window, scored by the fold model that never saw it
            fit_decorrelation(model, data, QRConfig(fit_region="sidebands", seed=self.seed))
        scores = model.score(data, mode="kfold")
        if self.save_dir is not None:
            model.save(Path(self.save_dir) / f"{region.low:g}_{region.high:g}", extra=self.extra)
        return scores


def _resolve(table: Any) -> Any:
    """A table, or a handle to one (anything with ``load()``, e.g. a copy on a Dask worker)."""
    return table.load() if hasattr(table, "load") else table


def window_scorer(
    data: Any,
    config: ScanConfig | None = None,
    *,
    reference: Any = None,
    num_threads: int | None = None,
    save_dir: str | Path | None = None,
    extra: Mapping[str, Any] | None = None,
) -> WindowTrainer:
    """The ``score_window`` of :func:`adhunt.bumphunt.scan` for ``config.method`` on ``data``.

    ``num_threads``: CPU threads of each training (set it to cores / parallel windows so that
    windows running side by side do not oversubscribe the cores).
    """
    cfg = config or ScanConfig()
    mcfg = method_config(
        cfg.method,
        cfg.method_config,
        backend=cfg.backend,
        n_ensemble=cfg.n_ensemble,
        num_threads=num_threads,
    )
    return WindowTrainer(
        data=data,
        method=cfg.method,
        features=tuple(cfg.features),
        config=mcfg,
        folds=cfg.folds,
        seed=cfg.seed,
        sideband_width=cfg.sideband_width,
        max_sideband_ratio=cfg.max_sideband_ratio,
        reference=reference,
        save_dir=None if save_dir is None else str(save_dir),
        extra=extra,
        decorrelate=cfg.decorrelate,
    )

"""``adhunt train combine``: a model whose score is the mean of its members' rank-normalised scores.

Why rank normalisation: the members' scores live on unrelated scales (a classifier probability,
an autoencoder loss, a decorrelated quantile level), so their raw mean would be dominated by
whichever has the widest spread. Each member's score is mapped to its rank level in [0, 1] by
its empirical CDF on one reference sample (:func:`adhunt.quantiles.rank_table`), and the
combined score is the mean of those levels.

Where the CDFs come from (decided here): the signal-region events of the members' training table
(the table recorded in the first member's provenance, rebuilt with the same signal injection), or
of ``--features`` when given, each member scoring them in ``auto`` mode (k-fold for the events it
trained on, so the reference scores are the honest held-out ones). The CDFs are stored in the
artifact as quantile tables (``rank{i}/levels``, ``rank{i}/values``), so scoring new events is
deterministic and per event: it never depends on which other events are scored with them.

The members are stored whole inside the combined artifact (``member{i}/...`` tensors, their
metadata under ``members``), so it is self-contained and verified like any other. Members must
share one feature set and one signal region (a combination of different windows has no single
region to cut in); other mismatches are refused with the member's path.

Modes: ``kfold`` (and ``auto``) scores every member in its own ``auto`` mode, so no event is ever
scored by a member that trained on it, even when the members trained on different events;
``ensemble`` scores every member with its fold ensemble.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from adhunt.config import config_from_dict, json_safe
from adhunt.models.artifact import ArtifactError
from adhunt.models.base import (
    SCORE_MODES,
    FoldModel,
    ResonantModel,
    _load_decorrelation,
    prefixed,
    unprefixed,
)
from adhunt.quantiles import rank_table, rank_transform
from adhunt.regions import SignalRegion
from adhunt.schema import RESONANT_VARIABLE

__all__ = ["CombineConfig", "CombinedModel", "check_members", "run_combine"]

log = logging.getLogger(__name__)

#: Fewest reference (SR) events a rank table may be built from.
MIN_REFERENCE_EVENTS = 100


@dataclass(frozen=True)
class CombineConfig:
    """Settings of a combination: points of each member's stored rank table."""

    n_points: int = 4001

    def __post_init__(self) -> None:
        if int(self.n_points) < 11:
            raise ValueError(f"CombineConfig.n_points must be >= 11, got {self.n_points}")


def check_members(members: Sequence[ResonantModel], names: Sequence[str] | None = None) -> None:
    """Refuse members that cannot be combined (naming the first offending member)."""
    names = list(names) if names is not None else [f"member {i}" for i in range(len(members))]
    if len(members) < 2:
        raise ValueError(f"combine needs at least two models, got {len(members)}")
    first = members[0]
    for name, m in zip(names, members, strict=True):
        if not isinstance(m, ResonantModel) or not m.fitted:
            raise ValueError(f"combine: {name} is not a fitted model")
        if set(m.features) != set(first.features):
            raise ValueError(
                f"combine: {name} ({m.method}) was trained on features {list(m.features)}, "
                f"{names[0]} ({first.method}) on {list(first.features)}; members must share one "
                "feature set"
            )
        if m.region != first.region:
            raise ValueError(
                f"combine: {name} ({m.method}) has signal region {m.region}, {names[0]} has "
                f"{first.region}; members must share one window"
            )


class CombinedModel(ResonantModel):
    """Mean of the members' rank-normalised scores (see the module docstring)."""

    method = "combine"
    needs_sideband = False
    config_class = CombineConfig

    def __init__(
        self,
        features: Sequence[str],
        region: SignalRegion,
        n_folds: int = 2,
        seed: int = 0,
        config: CombineConfig | None = None,
    ) -> None:
        super().__init__(features, region, n_folds, seed, config)
        self.members: list[ResonantModel] = []
        #: Per member: (levels, values) of its score's empirical quantile function.
        self.rank_tables: list[tuple[np.ndarray, np.ndarray]] = []
        self.reference: dict[str, Any] = {}

    # ----- construction -----------------------------------------------------------------------

    @classmethod
    def build(
        cls,
        members: Sequence[ResonantModel],
        reference: pd.DataFrame,
        names: Sequence[str] | None = None,
        config: CombineConfig | None = None,
        reference_info: Mapping[str, Any] | None = None,
    ) -> CombinedModel:
        """Combine fitted ``members``; their rank tables come from ``reference``'s SR events."""
        names = list(names) if names is not None else [m.method for m in members]
        check_members(members, names)
        first = members[0]
        obj = cls(first.features, first.region, max(2, first.n_folds), first.seed, config)
        obj.members = list(members)
        if not isinstance(reference, pd.DataFrame) or RESONANT_VARIABLE not in reference.columns:
            raise ValueError(f"combine: the reference table needs a {RESONANT_VARIABLE} column")
        sr = obj.region.in_sr(reference[RESONANT_VARIABLE].to_numpy(dtype=np.float64))
        table = reference[sr]
        if len(table) < MIN_REFERENCE_EVENTS:
            raise ValueError(
                f"combine: the reference table has {len(table)} events in the signal region "
                f"{obj.region}, at least {MIN_REFERENCE_EVENTS} are needed for the rank tables"
            )
        for name, m in zip(names, members, strict=True):
            missing = [c for c in m.input_columns if c not in table.columns]
            if missing and not set(missing) <= _derivable(table, m):
                raise ValueError(
                    f"combine: the reference table lacks column(s) {missing} of {name} ({m.method})"
                )
            obj.rank_tables.append(rank_table(m.score(table, mode="auto"), obj.config.n_points))
        obj.reference = {
            **dict(reference_info or {}),
            "n_events": len(table),
            "selection": f"SR {obj.region}",
            "member_mode": "auto",
        }
        obj.summary = {
            "members": [
                {"name": n, "method": m.method} for n, m in zip(names, members, strict=True)
            ]
        }
        return obj

    def fit(self, *args: Any, **kwargs: Any) -> CombinedModel:
        raise TypeError("a combined model is built from fitted members: CombinedModel.build(...)")

    def _fit_fold(self, k, train, val, reference) -> FoldModel:  # pragma: no cover - not trainable
        raise TypeError("a combined model has no folds of its own")

    # ----- the model API ------------------------------------------------------------------------

    @property
    def input_columns(self) -> tuple[str, ...]:
        cols = [c for m in self.members for c in m.input_columns]
        return tuple(dict.fromkeys(cols)) or self.features

    @property
    def fitted(self) -> bool:
        return (
            bool(self.members)
            and len(self.rank_tables) == len(self.members)
            and all(m.fitted for m in self.members)
        )

    def trained_mask(self, data: pd.DataFrame) -> np.ndarray | None:
        """Events any member trained on (None if a member does not record its events)."""
        masks = [m.trained_mask(data) for m in self.members]
        if any(mask is None for mask in masks):
            return None
        return np.logical_or.reduce(masks)

    def member_levels(self, data: pd.DataFrame, mode: str = "kfold") -> np.ndarray:
        """``(events, members)`` rank levels of every member's score."""
        if mode not in SCORE_MODES:
            raise ValueError(f"score mode must be one of {SCORE_MODES}, got {mode!r}")
        member_mode = "ensemble" if mode == "ensemble" else "auto"
        out = np.empty((len(data), len(self.members)), dtype=np.float64)
        for i, (m, (levels, values)) in enumerate(zip(self.members, self.rank_tables, strict=True)):
            out[:, i] = rank_transform(levels, values, m.score(data, mode=member_mode))
        return out

    def raw_score(self, data: pd.DataFrame, mode: str = "kfold") -> np.ndarray:
        if not self.fitted:
            raise RuntimeError("CombinedModel.score called before build() or load()")
        if len(data) == 0:
            return np.zeros(0, dtype=np.float64)
        return self.member_levels(data, mode).mean(axis=1)

    # ----- persistence -------------------------------------------------------------------------

    def describe(self) -> dict[str, Any]:
        out = super().describe()
        out["reference"] = json_safe(self.reference)
        return out

    def artifact_parts(self) -> tuple[dict[str, Any], dict[str, Any]]:
        tensors, metadata = super().artifact_parts()  # decorrelation, description, extra
        members = []
        for i, m in enumerate(self.members):
            t, meta = m.artifact_parts()
            tensors.update(prefixed(f"member{i}", t))
            members.append(meta)
            levels, values = self.rank_tables[i]
            tensors[f"rank{i}/levels"] = np.asarray(levels, dtype=np.float64)
            tensors[f"rank{i}/values"] = np.asarray(values, dtype=np.float64)
        metadata["members"] = members
        return tensors, metadata

    @classmethod
    def _build_from_parts(
        cls, tensors: Mapping[str, np.ndarray], meta: Mapping[str, Any], path: Any
    ) -> CombinedModel:
        try:
            members = [
                ResonantModel.from_artifact_parts(
                    unprefixed(f"member{i}", tensors), m, f"{path} (member {i})"
                )
                for i, m in enumerate(meta["members"])
            ]
            obj = cls(
                meta["features"],
                SignalRegion(**meta["region"]),
                meta["n_folds"],
                meta["seed"],
                config_from_dict(CombineConfig, meta["config"]),
            )
            obj.members = members
            obj.rank_tables = [
                (np.asarray(tensors[f"rank{i}/levels"]), np.asarray(tensors[f"rank{i}/values"]))
                for i in range(len(members))
            ]
        except ArtifactError:
            raise
        except (KeyError, TypeError, ValueError) as exc:
            raise ArtifactError(f"{path}: inconsistent combined-model metadata ({exc!r})") from exc
        check_members(members, [f"{path} member {i}" for i in range(len(members))])
        if list(obj.input_columns) != list(meta["input_columns"]):
            raise ArtifactError(f"{path}: input columns differ from the saved ones")
        obj.summary = dict(meta.get("summary") or {})
        obj.reference = dict(meta.get("reference") or {})
        obj.extra = dict(meta.get("extra") or {})
        obj.decorrelation = _load_decorrelation(tensors, meta, path)
        return obj


def _derivable(table: pd.DataFrame, model: ResonantModel) -> set[str]:
    """Input columns of ``model`` that the model API derives from ``table``'s columns."""
    from adhunt.dijet import required_columns

    if all(c in table.columns for c in required_columns(model.input_columns)):
        return set(model.input_columns)
    return set()


def run_combine(
    model_dirs: Sequence[Path],
    output: Path,
    reference_dir: Path | None = None,
    datasets: list[str] | None = None,
    decorrelate: str = "none",
    decorrelate_region: str = "sidebands",
    overwrite: bool = False,
    config: CombineConfig | None = None,
    allow_duplicates: bool = False,
) -> CombinedModel:
    """Build and save the combination of the saved models ``model_dirs`` (see the module doc).

    The rank reference is ``reference_dir`` or else the training table recorded in the first
    member's provenance. ``decorrelate="qr"`` fits the mjj decorrelation of the combined score
    on the same table (:mod:`adhunt.models.decorrelation`).
    """
    from adhunt.models.decorrelation import DECORRELATIONS, QRConfig, fit_decorrelation
    from adhunt.provenance import (
        make_provenance,
        provenance_extra,
        read_provenance,
        rebuild_training_table,
    )
    from adhunt.tables import read_table

    if decorrelate not in DECORRELATIONS:
        raise ValueError(
            f"--decorrelate must be one of {', '.join(DECORRELATIONS)}, got {decorrelate!r}"
        )
    if not model_dirs:
        raise ValueError("adhunt train combine needs --models A,B,...")
    if len({Path(d).resolve() for d in model_dirs}) != len(model_dirs):
        raise ValueError(f"--models lists a model twice: {[str(d) for d in model_dirs]}")
    from adhunt.outputs import check_output_dir

    output = check_output_dir(output, command="train", overwrite=overwrite)
    members = [ResonantModel.load(d) for d in model_dirs]
    names = [str(d) for d in model_dirs]
    check_members(members, names)
    columns = sorted({c for m in members for c in m.input_columns} - {RESONANT_VARIABLE})
    if reference_dir is not None:
        table = read_table(
            reference_dir, datasets, columns, what="--features", allow_duplicates=allow_duplicates
        )
        record = make_provenance("train", reference_dir, datasets or sorted(set(table["dataset"])))
        info = {"source": str(reference_dir)}
    else:
        record = next((r for r in map(read_provenance, members) if r and r.features_dir), None)
        if record is None:
            raise ValueError(
                "combine: no member records the table it was trained on; give a rank reference "
                "table with --features"
            )
        table = rebuild_training_table(
            record, columns, datasets, "combine rank reference", allow_duplicates
        )
        info = {"source": record.features_dir, "origin": "member training provenance"}
    model = CombinedModel.build(members, table, names, config, info)
    if decorrelate == "qr":
        fit_decorrelation(model, table, QRConfig(fit_region=decorrelate_region, seed=model.seed))
    extra = provenance_extra(record)
    extra["members"] = names
    model.save(output, extra=extra)
    log.info("saved the combination of %s to %s", ", ".join(names), output)
    return model

"""Coffea processor: events -> dijet features -> anomaly scores of trained models -> mjj histograms.

Per chunk (:class:`InferenceProcessor`): the feature processor's own per-chunk code
(:func:`adhunt.processors.features.compute_chunk`: same selection, same cutflow) builds the
feature frame; every model scores it in one batched call (``model.score(frame, mode)``); the scores
are turned into the tightest passed background-efficiency cut with thresholds fixed beforehand from
a reference sample; and one :func:`adhunt.histograms.make_inference_histogram` is filled
(axes dataset, model, bkg_eff, mjj). Accumulator, summed over chunks by coffea::

    {"hist": hist.Hist, "cutflow": {dataset: {step: n}}, "scored": {dataset: n events scored},
     "weighted": {dataset: sum of the scored events' weights},
     "chunks": [(dataset, file, start, stop)], "warnings": [...], "errors": [...],
     "model_loads": {model: n loads}, "devices": {model: {"cpu" | "cuda" ...}},
     "workers": {"host:pid": n chunks}}

Every event read is counted once in the cutflow; every event passing the selection is scored once
per model and sits in exactly one ``bkg_eff`` bin per model, so ``scored == cutflow["two_jets"]``
and the histogram's sum over bkg_eff and mjj (flow included) of one model equals the scored events'
sum of weights (``weighted``; the feature table's ``weight`` column: genWeight, normalised or not,
for simulation, 1 for data), which is ``scored`` for unweighted samples.

Models travel to workers as :class:`ModelRef` (name, artifact path, digest, thresholds), never as
weights: each worker process loads an artifact once and keeps it in a module-level cache keyed by
(path, digest), where the digest is the artifact's own metadata+weights checksums. A changed
artifact therefore has a new key and is reloaded (and rejected if it no longer matches the digest
the driver checked). Loading verifies every checksum (``ResonantModel.load``).

Devices: torch fold models choose their device when loaded (``TrainConfig.device`` /
``FlowConfig.device``, ``"auto"`` by default), i.e. CUDA when ``torch.cuda.is_available()`` in the
worker process that loads them, CPU otherwise; boosted trees always run on CPU. The accumulator
reports which devices each model ran on. On CPU, ``num_threads`` caps the BLAS/OpenMP/torch thread
pools during scoring (coffea workers are single-threaded processes, one per core: letting each
spawn a pool of all cores oversubscribes the machine).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import os
import socket
import sys
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from coffea import processor

from adhunt.histograms import (
    DEFAULT_EFFICIENCIES,
    efficiency_fill_values,
    make_inference_histogram,
    validate_efficiencies,
    validate_mjj_edges,
)
from adhunt.inputs import DatasetWeights
from adhunt.models.artifact import METADATA_FILE, ArtifactError
from adhunt.processors.chunklog import events_logging
from adhunt.processors.features import FeatureConfig, FeatureInputError, compute_chunk
from adhunt.tables import with_image_columns

logger = logging.getLogger(__name__)

SCORE_MODES = ("kfold", "ensemble")

__all__ = [
    "SCORE_MODES",
    "InferenceError",
    "InferenceProcessor",
    "ModelRef",
    "artifact_digest",
    "clear_model_cache",
    "load_model_cached",
    "model_cache_info",
]


class InferenceError(ValueError):
    """Inference cannot run on these inputs (models vs data, thresholds, options); names what."""


@dataclass(frozen=True)
class ModelRef:
    """What a task carries about one model: a name, where the artifact is, what it must be, cuts.

    ``thresholds`` are the score cuts of the processor's efficiencies, loosest first
    (:func:`adhunt.histograms.thresholds_from_scores`).
    """

    name: str
    path: str
    digest: str
    thresholds: tuple[float, ...]


def artifact_digest(path: str | Path) -> str:
    """Identity of an artifact's content from its ``model.json`` (metadata and weights sha256).

    Cheap (no hashing of the weights): ``ResonantModel.load`` verifies the files against these
    checksums, so equal digests mean equal verified content.
    """
    meta = Path(path) / METADATA_FILE
    if not Path(path).is_dir():
        raise ArtifactError(f"model artifact not found (expected a directory): {path}")
    try:
        doc = json.loads(meta.read_text())
        return f"{doc['metadata_sha256']}:{doc['weights_sha256']}"
    except FileNotFoundError as err:
        raise ArtifactError(
            f"model artifact {path} is incomplete: {METADATA_FILE} is missing"
        ) from err
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as err:
        raise ArtifactError(f"{meta}: not a valid adhunt model artifact ({err!r})") from err


# --- the per-process model cache ------------------------------------------------------------
_CACHE: dict[tuple[str, str], Any] = {}
_CACHE_LOCK = threading.Lock()
_LOADS: dict[tuple[str, str], int] = {}


def load_model_cached(path: str, digest: str) -> tuple[Any, bool]:
    """``(model, loaded_now)`` for an artifact, loading it at most once per process and digest.

    Raises ArtifactError (naming the path) when the artifact is missing, corrupt, or no longer
    has the digest the driver checked (it was replaced while the job ran).
    """
    from adhunt.models.base import ResonantModel

    key = (str(path), str(digest))
    with _CACHE_LOCK:  # dask workers may run several threads
        model = _CACHE.get(key)
        if model is not None:
            return model, False
        current = artifact_digest(path)
        if current != digest:
            raise ArtifactError(
                f"model artifact {path} changed since the job started (digest {digest[:12]}... "
                f"expected, found {current[:12]}...)"
            )
        model = ResonantModel.load(path)
        _CACHE[key] = model
        _LOADS[key] = _LOADS.get(key, 0) + 1
        return model, True


def model_cache_info() -> dict[str, Any]:
    """This process's cache: pid, cached keys and how often each was loaded (for tests/debugging)."""
    with _CACHE_LOCK:
        return {
            "pid": os.getpid(),
            "cached": [list(k) for k in _CACHE],
            "loads": {f"{p}|{d}": n for (p, d), n in _LOADS.items()},
        }


def clear_model_cache() -> None:
    """Forget every cached model of this process (the next chunk reloads)."""
    with _CACHE_LOCK:
        _CACHE.clear()
        _LOADS.clear()


@contextlib.contextmanager
def _thread_limits(n: int | None) -> Iterator[None]:
    """Cap BLAS/OpenMP (threadpoolctl) and torch intra-op threads to ``n`` while scoring."""
    if n is None:
        yield
        return
    from threadpoolctl import threadpool_limits

    torch = sys.modules.get("torch")  # only if a model imported it: never import torch for trees
    previous = torch.get_num_threads() if torch is not None else None
    try:
        if torch is not None:
            torch.set_num_threads(int(n))
        with threadpool_limits(limits=int(n)):
            yield
    finally:
        if torch is not None and previous is not None:
            torch.set_num_threads(previous)


def _devices(model: Any) -> set[str]:
    """Devices the fold models (or their direct parts, e.g. a flow and a classifier) live on."""
    found: set[str] = set()
    for fold in getattr(model, "fold_models", []):
        for obj in (fold, *getattr(fold, "__dict__", {}).values()):
            device = getattr(obj, "device", None)
            if device is not None and not callable(device):
                found.add(str(device).split(":")[0])
    return found or {"cpu"}


class InferenceProcessor(processor.ProcessorABC):
    """Features + scores + histogram per chunk. Holds only small settings, never model weights.

    ``datasets`` pre-seeds the dataset axis (all chunk histograms then have identical axes and the
    summed histogram does not depend on the order chunks finish in). ``mode``: ``"kfold"`` (each
    event scored by the fold model that did not train on it: right when the data are the training
    data) or ``"ensemble"`` (mean of the folds: for independent data). With ``skip_bad_chunks``,
    chunks whose *input* cannot be read are reported in ``errors``; scoring failures always raise.
    """

    def __init__(
        self,
        models: Sequence[ModelRef],
        efficiencies: Sequence[float] = DEFAULT_EFFICIENCIES,
        feature_config: FeatureConfig | None = None,
        mjj_edges: Sequence[float] | None = None,
        mode: str = "kfold",
        datasets: Sequence[str] = (),
        num_threads: int | None = None,
        skip_bad_chunks: bool = False,
        weights: dict[str, DatasetWeights] | None = None,
        partials: dict[str, Any] | None = None,
    ) -> None:
        if not models:
            raise InferenceError("at least one model is needed")
        names = [m.name for m in models]
        if len(set(names)) != len(names):
            raise InferenceError(f"model names must be unique, got {names}")
        if mode not in SCORE_MODES:
            raise InferenceError(f"score mode must be one of {SCORE_MODES}, got {mode!r}")
        self.efficiencies = validate_efficiencies(efficiencies)
        for ref in models:
            if len(ref.thresholds) != len(self.efficiencies):
                raise InferenceError(
                    f"model {ref.name!r}: {len(ref.thresholds)} thresholds for "
                    f"{len(self.efficiencies)} efficiencies"
                )
            if any(not np.isfinite(t) for t in ref.thresholds) or any(
                b < a for a, b in itertools.pairwise(ref.thresholds)
            ):
                raise InferenceError(
                    f"model {ref.name!r}: thresholds must be finite and non-decreasing from the "
                    f"loosest cut, got {list(ref.thresholds)}"
                )
        self.models = tuple(models)
        self.feature_config = feature_config or FeatureConfig()
        self.mjj_edges = validate_mjj_edges(mjj_edges)
        self.mode = mode
        self.datasets = tuple(datasets)
        self.num_threads = num_threads
        self.skip_bad_chunks = skip_bad_chunks
        self.weights = dict(weights or {})
        # {"dir": output dir, "key": fingerprint, "inputs": {file: identity}}: each chunk's result
        # is also saved there (``adhunt.manifest.write_partial``), so an interrupted run resumes
        self.partials = partials

    def empty_histogram(self):
        """The histogram every chunk fills (same axes everywhere)."""
        return make_inference_histogram(
            [m.name for m in self.models], self.efficiencies, self.mjj_edges, self.datasets
        )

    def empty_output(self) -> dict[str, Any]:
        return {
            "hist": self.empty_histogram(),
            "cutflow": {},
            "scored": {},
            "weighted": {},
            "chunks": [],
            "warnings": [],
            "errors": [],
            "model_loads": {},
            "devices": {},
            "workers": {},
        }

    def process(self, events) -> dict[str, Any]:
        """One chunk; its log records name it (``[dataset file:start-stop]``, see
        :mod:`adhunt.processors.chunklog`)."""
        with events_logging(events):
            return self._process(events)

    def _process(self, events) -> dict[str, Any]:
        meta = events.metadata
        dataset, filename = meta["dataset"], meta["filename"]
        start, stop = int(meta["entrystart"]), int(meta["entrystop"])
        where = f"{filename} (dataset {dataset!r}, entries {start}-{stop})"
        chunk = (dataset, filename, start, stop)
        out = self.empty_output()
        try:
            result = compute_chunk(
                events, self.feature_config, dataset, where, self.weights.get(dataset)
            )
            frame, cutflow, warnings = result.frame, result.cutflow, result.warnings
            if result.images is not None:  # image models read them as pseudo-columns
                frame = with_image_columns(frame, result.images)
        except Exception as err:
            reason = str(err) if isinstance(err, FeatureInputError) else f"{where}: {err!r}"
            if not self.skip_bad_chunks:
                raise FeatureInputError(reason) from err
            logger.info("chunk skipped (--skip-bad-files): %s", reason)
            out["errors"] = [(*chunk, reason)]
            return out

        h = out["hist"]
        weight = frame["weight"].to_numpy(dtype=np.float64)
        for ref in self.models:
            model, loaded = load_model_cached(ref.path, ref.digest)
            out["model_loads"][ref.name] = int(loaded)
            out["devices"][ref.name] = _devices(model)
            if len(frame) == 0:
                continue
            try:
                with _thread_limits(self.num_threads):
                    scores = model.score(frame, mode=self.mode)
            except Exception as err:
                raise InferenceError(
                    f"{where}: scoring with model {ref.name!r} ({ref.path}) failed: {err}"
                ) from err
            h.fill(
                dataset=dataset,
                model=ref.name,
                bkg_eff=efficiency_fill_values(scores, ref.thresholds, self.efficiencies),
                mjj=frame["mjj"].to_numpy(dtype=np.float64),
                weight=weight,
            )
        out.update(
            cutflow={dataset: cutflow},
            scored={dataset: len(frame)},
            weighted={dataset: float(weight.sum())},
            chunks=[chunk],
            warnings=warnings,
            workers={f"{socket.gethostname()}:{os.getpid()}": 1},
        )
        if self.partials is not None:
            self._save_partial(chunk, out)
        return out

    def _save_partial(self, chunk: tuple[str, str, int, int], out: dict[str, Any]) -> None:
        from adhunt.manifest import partial_path, write_partial

        view = out["hist"].view(flow=True)
        meta = {k: v for k, v in out.items() if k != "hist"}
        meta["chunks"] = [list(c) for c in meta["chunks"]]
        meta["devices"] = {k: sorted(v) for k, v in meta["devices"].items()}
        stamp = {"key": self.partials["key"], "input": self.partials["inputs"].get(chunk[1])}
        write_partial(
            partial_path(self.partials["dir"], *chunk),
            {"value": view["value"], "variance": view["variance"]},
            meta,
            stamp,
        )

    def output_from_partial(self, arrays: dict[str, Any], meta: dict[str, Any]) -> dict[str, Any]:
        """The accumulator a chunk returned, rebuilt from its saved partial."""
        out = self.empty_output()
        view = out["hist"].view(flow=True)
        view["value"][...] = arrays["value"]
        view["variance"][...] = arrays["variance"]
        out.update({k: v for k, v in meta.items() if k in out and k != "hist"})
        out["chunks"] = [tuple(c) for c in meta["chunks"]]
        out["devices"] = {k: set(v) for k, v in meta["devices"].items()}
        return out

    def postprocess(self, accumulator: dict[str, Any]) -> dict[str, Any]:
        return accumulator

"""Self-contained model artifacts: safetensors weights + JSON metadata, verified on load.

Layout of an artifact directory::

    MODEL_DIR/
      model.json           metadata (method, features, window, folds, seed, config, preprocessing,
                           adhunt version) + sha256 of the weights file and of every tensor
      weights.safetensors  every tensor, flat name -> array; its header records the sha256 of the
                           metadata, so neither file can be edited without the other noticing

Loading never executes code: no pickle, only JSON and safetensors (a format with no code path).
Any mismatch (edited, truncated, missing or swapped file) raises :class:`ArtifactError`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "METADATA_FILE",
    "WEIGHTS_FILE",
    "ArtifactError",
    "load_artifact",
    "save_artifact",
]

log = logging.getLogger(__name__)

FORMAT = "adhunt-model"
FORMAT_VERSION = 1
METADATA_FILE = "model.json"
WEIGHTS_FILE = "weights.safetensors"
_HEADER_KEY = "adhunt_metadata_sha256"


class ArtifactError(RuntimeError):
    """A model artifact is missing, corrupt, tampered with or of an unknown format."""


def _sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _canonical(metadata: Mapping[str, Any]) -> bytes:
    try:
        return json.dumps(metadata, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()
    except (TypeError, ValueError) as exc:
        raise ArtifactError(f"model metadata is not plain JSON: {exc}") from exc


def _tensor_sha(arr: np.ndarray) -> str:
    a = np.ascontiguousarray(arr)
    return _sha256_bytes(f"{a.dtype.str}{a.shape}".encode() + a.tobytes())


def _to_numpy(name: str, value: Any) -> np.ndarray:
    if hasattr(value, "detach"):  # torch tensor, without importing torch here
        value = value.detach().cpu().numpy()
    arr = np.asarray(value)
    if arr.dtype.kind not in "biuf" or arr.dtype.kind == "c":
        raise ArtifactError(f"tensor {name!r}: unsupported dtype {arr.dtype} (numbers only)")
    if arr.dtype.byteorder == ">":
        arr = arr.astype(arr.dtype.newbyteorder("<"))
    return np.ascontiguousarray(arr)


def save_artifact(
    path: str | Path, tensors: Mapping[str, Any], metadata: Mapping[str, Any]
) -> Path:
    """Write ``tensors`` (name -> numpy/torch array) and JSON ``metadata`` to the directory ``path``.

    Files are written to temporaries and renamed, so an interrupted save never leaves a
    half-written artifact that looks valid.
    """
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise ArtifactError(f"artifact path exists and is not a directory: {out}")
    out.mkdir(parents=True, exist_ok=True)
    arrays = {str(k): _to_numpy(str(k), v) for k, v in tensors.items()}
    meta = json.loads(_canonical(dict(metadata)))  # plain JSON copy; fails early on odd types
    meta_sha = _sha256_bytes(_canonical(meta))

    fd, tmp_w = tempfile.mkstemp(prefix=".weights-", dir=out)
    os.close(fd)
    try:
        _write(out, arrays, meta, meta_sha, tmp_w)
    finally:  # a failed or interrupted save leaves no temporary file behind
        Path(tmp_w).unlink(missing_ok=True)
    log.debug("saved artifact %s (%d tensors)", out, len(arrays))
    return out


def _write(
    out: Path, arrays: dict[str, np.ndarray], meta: dict[str, Any], meta_sha: str, tmp_w: str
) -> None:
    from safetensors.numpy import save_file

    save_file(arrays, tmp_w, metadata={_HEADER_KEY: meta_sha, "format": FORMAT})
    weights_sha = _sha256_file(Path(tmp_w))
    doc = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "weights_file": WEIGHTS_FILE,
        "weights_sha256": weights_sha,
        "metadata_sha256": meta_sha,
        "tensors": {
            name: {"dtype": a.dtype.str, "shape": list(a.shape), "sha256": _tensor_sha(a)}
            for name, a in sorted(arrays.items())
        },
        "metadata": meta,
    }
    fd, tmp_m = tempfile.mkstemp(prefix=".model-", suffix=".json", dir=out)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(doc, f, indent=1, sort_keys=True, allow_nan=False)
            f.write("\n")
        os.replace(tmp_w, out / WEIGHTS_FILE)
        os.replace(tmp_m, out / METADATA_FILE)
    finally:
        Path(tmp_m).unlink(missing_ok=True)


def load_artifact(path: str | Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Read and verify an artifact; returns ``(tensors, metadata)`` or raises ArtifactError."""
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    root = Path(path)
    if not root.is_dir():
        raise ArtifactError(f"model artifact not found (expected a directory): {root}")
    meta_path, weights_path = root / METADATA_FILE, root / WEIGHTS_FILE
    for p in (meta_path, weights_path):
        if not p.is_file():
            raise ArtifactError(f"model artifact {root} is incomplete: {p.name} is missing")
    try:
        doc = json.loads(meta_path.read_text(), parse_constant=_reject_constant)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"{meta_path}: not valid JSON ({exc})") from exc
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise ArtifactError(f"{meta_path}: not an adhunt model artifact")
    if doc.get("format_version") != FORMAT_VERSION:
        raise ArtifactError(
            f"{meta_path}: artifact format version {doc.get('format_version')!r} is not supported "
            f"(this adhunt reads version {FORMAT_VERSION})"
        )
    for key in ("weights_sha256", "metadata_sha256", "tensors", "metadata"):
        if key not in doc:
            raise ArtifactError(f"{meta_path}: missing field {key!r}")
    metadata = doc["metadata"]
    if _sha256_bytes(_canonical(metadata)) != doc["metadata_sha256"]:
        raise ArtifactError(f"{meta_path}: metadata was modified after saving (checksum mismatch)")
    actual = _sha256_file(weights_path)
    if actual != doc["weights_sha256"]:
        raise ArtifactError(
            f"{weights_path}: checksum mismatch (file truncated or modified): "
            f"expected sha256 {doc['weights_sha256'][:16]}..., got {actual[:16]}..."
        )
    try:
        from safetensors import safe_open

        with safe_open(str(weights_path), framework="numpy") as f:
            header = f.metadata() or {}
        tensors = load_file(str(weights_path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise ArtifactError(f"{weights_path}: unreadable safetensors file ({exc})") from exc
    if header.get(_HEADER_KEY) != doc["metadata_sha256"]:
        raise ArtifactError(f"{root}: weights file belongs to a different model.json")
    expected = doc["tensors"]
    if set(expected) != set(tensors):
        missing = sorted(set(expected) - set(tensors))
        extra = sorted(set(tensors) - set(expected))
        raise ArtifactError(
            f"{weights_path}: tensor names differ (missing {missing}, extra {extra})"
        )
    for name, info in expected.items():
        if _tensor_sha(tensors[name]) != info.get("sha256"):
            raise ArtifactError(f"{weights_path}: tensor {name!r} does not match its checksum")
    return tensors, metadata


def _reject_constant(name: str) -> float:
    # NaN / Infinity are not JSON; a file containing them was not written by save_artifact.
    raise ValueError(f"non-standard JSON constant {name}")

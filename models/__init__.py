"""Anomaly-detection models: pandas/numpy in, scores out (no coffea, no processors).

``get_method(name)`` returns a method's class; :func:`window_scorer` builds the per-window
training callable of :func:`adhunt.bumphunt.scan`. Resolved lazily, so that loading a saved model
imports only what that model needs.
"""

from typing import Any

__all__ = ["available_methods", "get_method", "window_scorer"]


def __getattr__(name: str) -> Any:
    if name in ("available_methods", "get_method"):
        from adhunt.models import registry

        return getattr(registry, name)
    if name == "window_scorer":
        from adhunt.models.windows import window_scorer

        return window_scorer
    raise AttributeError(f"module 'adhunt.models' has no attribute {name!r}")

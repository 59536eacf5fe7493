"""Anomaly-detection models: pandas/numpy in, scores out (no coffea, no processors).

``get_method(name)`` returns a method's class; :func:`window_scorer` builds the per-window
training callable of :func:`adhunt.bumphunt.scan`.
"""

from adhunt.models.registry import available_methods, get_method
from adhunt.models.windows import window_scorer

__all__ = ["available_methods", "get_method", "window_scorer"]

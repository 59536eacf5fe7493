"""adhunt: model-agnostic resonance searches with Coffea processors and ML anomaly detection.

Layout (data and imports flow one way)::

    adhunt.jobs  ->  adhunt.processors  ->  adhunt (core: physics, I/O, statistics)  <-  adhunt.models

The core package ``adhunt`` imports none of ``jobs``, ``processors`` or ``models``.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("adhunt")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]

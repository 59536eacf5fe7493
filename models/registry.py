"""Method name -> ResonantModel class, resolved lazily by module path.

Lazy so that ``adhunt --help`` imports no torch, and so that a method whose module is missing or
broken fails with a clear message only when it is asked for.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from adhunt.models.base import ResonantModel

__all__ = ["METHODS", "available_methods", "get_method"]

METHODS: dict[str, str] = {
    "cwola": "adhunt.models.cwola:CWoLa",
    "cathode": "adhunt.models.cathode:Cathode",
    "anode": "adhunt.models.anode:Anode",
    "ranode": "adhunt.models.ranode:RAnode",
    "iad": "adhunt.models.references:IdealizedAD",
    "supervised": "adhunt.models.references:Supervised",
    "combine": "adhunt.models.combine:CombinedModel",
    "ae": "adhunt.models.autoencoders:Autoencoder",
    "vae": "adhunt.models.autoencoders:VariationalAutoencoder",
    "force": "adhunt.models.force:Force",
    "tnt": "adhunt.models.tagntrain:TagNTrain",
}


class UnknownMethodError(KeyError):
    """No method of that name is registered."""

    def __str__(self) -> str:  # KeyError would quote the whole message
        return str(self.args[0])


def available_methods() -> tuple[str, ...]:
    return tuple(METHODS)


def get_method(name: str) -> type[ResonantModel]:
    """The class implementing method ``name`` (e.g. ``"cwola"``)."""
    from adhunt.models.base import ResonantModel

    if name not in METHODS:
        raise UnknownMethodError(f"unknown method {name!r}; available: {', '.join(METHODS)}")
    module_name, _, attr = METHODS[name].partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ImportError(
            f"method {name!r} is not available: cannot import {module_name} ({exc})"
        ) from exc
    cls = getattr(module, attr, None)
    if not (isinstance(cls, type) and issubclass(cls, ResonantModel)):
        raise ImportError(f"method {name!r}: {METHODS[name]} is not a ResonantModel subclass")
    if getattr(cls, "method", None) != name:
        raise ImportError(
            f"method {name!r}: {METHODS[name]} declares method={getattr(cls, 'method', None)!r}"
        )
    return cls

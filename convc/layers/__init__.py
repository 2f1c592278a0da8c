"""The layer registry: every Keras class convc knows, by class name and alias.

A layer is defined in one family module of this package: a ``LayerType`` subclass whose
``spec_class`` (``convc.specs``) names its family, registered beside it (``@layer_type``, or
``register(...)`` for types made per rank or kind). Importing this package imports every module
in it, so a new module needs no list entry. Lowering (``convc.lower``) and the reference
(``convc.reference``) register by the spec class; ``tests/test_registry.py`` holds the three
registries equal.
"""

from __future__ import annotations

import difflib
import importlib
import pkgutil

from convc.layers.base import REGISTERED, LayerType

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

LAYER_TYPES: dict[str, LayerType] = REGISTERED


def lookup(name: str) -> LayerType | None:
    return LAYER_TYPES.get(name)


def lookup_snake(name: str) -> LayerType | None:
    """The class whose Keras name prefix is ``name`` (TF1's ``tf.layers.conv2d`` functions)."""
    return next((t for t in LAYER_TYPES.values() if t.prefix == name), None)


def suggest(name: str) -> str | None:
    """The known class name closest to a misspelt one (case-insensitively first)."""
    by_lower = {known.lower(): known for known in LAYER_TYPES}
    if name.lower() in by_lower:
        return by_lower[name.lower()]
    close = difflib.get_close_matches(name, list(LAYER_TYPES), n=1, cutoff=0.6)
    return close[0] if close else None

"""The layer registry: every Keras class convc knows, by class name and alias.

Adding a layer means adding its type to one family module here, a lowering rule in
``convc.lower.rules``, a function in ``convc.reference`` and a row in the test tables.
"""

from __future__ import annotations

import difflib

from convc.layers.base import LayerType
from convc.layers.conv import convolution_types
from convc.layers.resize import resize_types

LAYER_TYPES: dict[str, LayerType] = {}
for _type in [*convolution_types(), *resize_types()]:
    for _name in (_type.class_name, *_type.aliases):
        LAYER_TYPES[_name] = _type


def lookup(name: str) -> LayerType | None:
    return LAYER_TYPES.get(name)


def suggest(name: str) -> str | None:
    """The known class name closest to a misspelt one (case-insensitively first)."""
    by_lower = {known.lower(): known for known in LAYER_TYPES}
    if name.lower() in by_lower:
        return by_lower[name.lower()]
    close = difflib.get_close_matches(name, list(LAYER_TYPES), n=1, cutoff=0.6)
    return close[0] if close else None

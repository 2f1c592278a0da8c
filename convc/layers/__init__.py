"""The layer registry: every Keras class convc knows, by class name and alias.

Adding a layer means adding its type to one family module here (its spec, if a new family, to
``convc.specs``), a lowering rule in ``convc.lower.rules``, a function in ``convc.reference`` and
a row in the test tables.
"""

from __future__ import annotations

import difflib

from convc.layers.activation_layers import activation_layer_types
from convc.layers.applications import application_types
from convc.layers.base import LayerType
from convc.layers.conv import convolution_types
from convc.layers.core import core_types
from convc.layers.core_activations import core_activation_types
from convc.layers.inference import inference_types
from convc.layers.merge import merge_types
from convc.layers.normalization import normalization_types
from convc.layers.pooling import pooling_types
from convc.layers.preprocessing import preprocessing_types
from convc.layers.resize import resize_types

LAYER_TYPES: dict[str, LayerType] = {}
_CORE = [*core_types(), *core_activation_types(), *inference_types(), *preprocessing_types()]
for _type in [
    *convolution_types(),
    *resize_types(),
    *merge_types(),
    *activation_layer_types(),
    *normalization_types(),
    *pooling_types(),
    *_CORE,
    *application_types(),
]:
    for _name in (_type.class_name, *_type.aliases):
        LAYER_TYPES[_name] = _type


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

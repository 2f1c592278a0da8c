"""Lowering of the layers Keras's applications define (``convc.layers.applications``).

Both work in any physical order: CustomScaleLayer is a Mul and an Add after its inputs agree
on one layout; LayerScale's ``gamma`` is laid along the physical position of the Keras last axis.
"""

from __future__ import annotations

from convc.lower.core import _to_physical
from convc.lower.emitter import Emitter, Value
from convc.model import Node
from convc.specs import LayerScaleSpec, ScaledAddSpec, expect
from convc.weights import Weights


def lower_scaled_add(em: Emitter, layer: Node, xs: list[Value], weights: Weights) -> Value:
    """``x + residual * scale``, in Keras's order of operations."""
    from convc.lower.rules import _common_layout  # rules imports this module

    x, residual = _common_layout(em, xs)
    scale = expect(layer.spec, ScaledAddSpec).scale
    scaled = em.op("Mul", [residual.name, em.scalar(scale)], "scale")
    return Value(em.op("Add", [x.name, scaled], "add"), x.perm, layer.output_shape)


def lower_layer_scale(em: Emitter, layer: Node, x: Value, weights: Weights) -> Value:
    expect(layer.spec, LayerScaleSpec)
    gamma = em.weight("gamma", _to_physical(em, weights["gamma"], x))
    return Value(em.op("Mul", [x.name, gamma], "layer_scale"), x.perm, x.shape)


RULES = {"scaled_add": lower_scaled_add, "layer_scale": lower_layer_scale}
LAYOUT_FREE = frozenset(RULES)

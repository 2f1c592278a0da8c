"""Lowering of the layers Keras's applications define (``convc.layers.applications``).

Both work in any physical order: CustomScaleLayer is a Mul and an Add after its inputs agree
on one layout; LayerScale's ``gamma`` is laid along the physical position of the Keras last axis.
"""

from __future__ import annotations

from convc.lower.emitter import Emitter, Value
from convc.lower.layout import common_layout, to_physical
from convc.lower.registry import Weights, lowers
from convc.model import Node
from convc.specs import LayerScaleSpec, ScaledAddSpec, expect


@lowers(ScaledAddSpec, any_layout=True)
def lower_scaled_add(em: Emitter, layer: Node, xs: list[Value], weights: Weights) -> Value:
    """``x + residual * scale``, in Keras's order of operations."""
    x, residual = common_layout(em, xs)
    scale = expect(layer.spec, ScaledAddSpec).scale
    scaled = em.op("Mul", [residual.name, em.scalar(scale)], "scale")
    return Value(em.op("Add", [x.name, scaled], "add"), x.perm, layer.output_shape)


@lowers(LayerScaleSpec, any_layout=True)
def lower_layer_scale(em: Emitter, layer: Node, x: Value, weights: Weights) -> Value:
    expect(layer.spec, LayerScaleSpec)
    gamma = em.weight("gamma", to_physical(em, weights["gamma"], x))
    return Value(em.op("Mul", [x.name, gamma], "layer_scale"), x.perm, x.shape)

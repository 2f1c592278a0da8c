"""Lowering of the Activation and ReLU layers (``convc.layers.activation_layers``), in any
physical order."""

from __future__ import annotations

from convc.lower.activations import emit_activation
from convc.lower.emitter import Emitter, Value
from convc.lower.registry import Weights, lowers
from convc.model import Node
from convc.specs import (
    ActivationSpec,
    ReLUSpec,
    expect,
)


@lowers(ActivationSpec, any_layout=True)
def lower_activation(em: Emitter, layer: Node, x: Value, weights: Weights) -> Value:
    out = emit_activation(em, expect(layer.spec, ActivationSpec).activation, x)
    return Value(out.name, out.perm, layer.output_shape)


@lowers(ReLUSpec, any_layout=True)
def lower_relu(em: Emitter, layer: Node, x: Value, weights: Weights) -> Value:
    """Keras's ReLU: x where x > threshold (at most max_value), else
    negative_slope * (x - threshold). The common cases are one node."""
    c = expect(layer.spec, ReLUSpec)
    top, slope, threshold = c.max_value, c.negative_slope, c.threshold
    if threshold == 0 and slope == 0:
        out = (
            em.clip(x.name, 0.0, top, "relu6" if top == 6 else "clip")
            if top is not None
            else (em.op("Relu", [x.name], "relu"))
        )
        return Value(out, x.perm, layer.output_shape)
    if threshold == 0 and top is None:
        return Value(em.op("LeakyRelu", [x.name], "leaky_relu", alpha=slope), x.perm, x.shape)
    above = em.op("Greater", [x.name, em.scalar(threshold)], "above")
    kept = em.clip(x.name, None, top, "clip") if top is not None else x.name
    out = em.op("Where", [above, kept, em.scalar(0.0)], "relu")
    if slope:
        below = em.op(
            "Min", [em.op("Sub", [x.name, em.scalar(threshold)], "shift"), em.scalar(0.0)], "below"
        )
        out = em.op("Add", [out, em.op("Mul", [below, em.scalar(slope)], "slope")], "leaky")
    return Value(out, x.perm, layer.output_shape)

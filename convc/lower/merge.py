"""Lowering of the merges (``convc.layers.merge``): their inputs are brought to one rank and
the physical order that transposes the fewest elements, then combined."""

from __future__ import annotations

from convc.lower.emitter import Emitter, Value
from convc.lower.layout import common_layout
from convc.lower.registry import Weights, lowers
from convc.model import Node
from convc.specs import (
    ConcatenateSpec,
    MergeSpec,
    expect,
)

_MERGE_OPS = {"add": "Sum", "maximum": "Max", "minimum": "Min", "multiply": "Mul"}


@lowers(MergeSpec, any_layout=True)
def lower_merge(em: Emitter, layer: Node, xs: list[Value], weights: Weights) -> Value:
    xs = common_layout(em, xs)
    names = [x.name for x in xs]
    operation = expect(layer.spec, MergeSpec).operation
    if len(names) == 1:
        out = names[0]
    elif operation == "subtract":
        out = em.op("Sub", names, "subtract")
    elif len(names) == 2 and operation in ("add", "average"):
        out = em.op("Add", names, "add")
    elif operation == "multiply":
        out = names[0]
        for other in names[1:]:  # Mul is binary; Keras multiplies left to right
            out = em.op("Mul", [out, other], "multiply")
    elif operation == "average":
        out = em.op("Sum", names, "add")
    else:
        op = _MERGE_OPS[operation]
        out = em.op("Add" if op == "Sum" and len(names) == 2 else op, names, operation)
    if operation == "average" and len(names) > 1:
        out = em.op("Div", [out, em.scalar(float(len(names)))], "average")
    return Value(out, xs[0].perm, layer.output_shape)


@lowers(ConcatenateSpec, any_layout=True)
def lower_concatenate(em: Emitter, layer: Node, xs: list[Value], weights: Weights) -> Value:
    xs = common_layout(em, xs)
    if len(xs) == 1:
        return Value(xs[0].name, xs[0].perm, layer.output_shape)
    axis = xs[0].physical_axis(expect(layer.spec, ConcatenateSpec).axis)
    out = em.op("Concat", [x.name for x in xs], "concat", axis=axis)
    return Value(out, xs[0].perm, layer.output_shape)

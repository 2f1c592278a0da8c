"""Lower a resolved ``Model`` with its weights to a checked, shape-inferred ONNX model.

The driver walks the layers in order, hands each to its family's rule, and restores Keras's
layout at the output. Then it checks the result with ONNX's own checker (``full_check``) and
requires shape inference to agree with resolve's shapes on every layer's output: a disagreement
is a convc bug, reported as such.
"""

from __future__ import annotations

import numpy as np
import onnx

from convc import __version__
from convc.lower import rewrites
from convc.lower.emitter import Emitter, Value, identity, onnx_type, tensor_info
from convc.lower.rules import RULES
from convc.model import Model
from convc.onnxfile import skeleton

DEFAULT_OPSET = 28
"""The newest opset of the pinned onnx; onnxruntime 1.32 has a CPU kernel for the newest version
of every op convc emits at this opset (tests/test_opsets.py checks it against its registry)."""

MIN_OPSET = 13
"""Softmax and LogSoftmax along one axis, Resize's and Pad's input forms, Split/Slice inputs."""


class InternalError(Exception):
    """A bug in convc: the emitted graph contradicts what resolve computed."""


def lower(
    model: Model,
    weights: dict[str, dict[str, np.ndarray]],
    *,
    opset: int = DEFAULT_OPSET,
    layer_outputs: bool = False,
    optimize: bool = True,
) -> onnx.ModelProto:
    """Build the ONNX model. With ``layer_outputs``, every layer's output (in Keras layout) is
    also a graph output, named after the layer, for checking layer by layer. ``optimize``
    applies the exact graph rewrites of ``convc.lower.rewrites``."""
    em = Emitter(opset)
    rank = len(model.input.shape)
    x = Value(model.input.name, identity(rank), model.input.shape)
    if model.input.dtype != "float32":
        em.scope = model.input.name
        x = Value(em.op("Cast", [x.name], "cast", to=onnx_type("float32")), x.perm, x.shape)
    outputs: list[tuple[str, Value]] = []
    for layer in model.layers:
        em.scope = layer.name
        x = RULES[layer.family](em, layer, x, weights.get(layer.name, {}))
        em.value_shapes[x.name] = tuple(0 if d is None else d for d in (x.shape[a] for a in x.perm))
        if layer_outputs and layer is not model.layers[-1]:
            outputs.append((layer.name, x))
    outputs.append((model.layers[-1].name, x))

    graph_outputs = []
    published: dict[str, str] = {}  # value name -> the graph output it becomes
    for name, value in outputs:
        em.scope = name
        keras_layout = em.in_layout(value, identity(value.rank)).name
        if keras_layout == model.input.name or keras_layout in published:
            # A no-op layer shares its input's value; an output needs a value of its own.
            keras_layout = em.op("Identity", [keras_layout], "output")
        published[keras_layout] = name
        graph_outputs.append(tensor_info(name, "float32", value.shape))
    em.rename(published)

    if optimize:
        rewrites.optimize(em, {info.name for info in graph_outputs})
    proto = em.model(
        model.name,
        [tensor_info(model.input.name, model.input.dtype, model.input.shape)],
        graph_outputs,
    )
    proto.producer_version = __version__
    return check(proto, model)


def check(proto: onnx.ModelProto, model: Model) -> onnx.ModelProto:
    """ONNX's full check, then shape inference that must give every value a static shape."""
    # Checked without its weights, so that models beyond protobuf's 2 GiB are checked too.
    try:
        onnx.checker.check_model(proto_without_weights := skeleton(proto), full_check=True)
        inferred = onnx.shape_inference.infer_shapes(
            proto_without_weights, check_type=True, strict_mode=True
        )
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as error:
        raise InternalError(f"the emitted ONNX model is invalid: {error}") from error
    batch = model.input.shape[0]
    for info in inferred.graph.value_info:
        tensor = info.type.tensor_type
        dims = tensor.shape.dim
        if (
            not tensor.HasField("shape")
            or not dims
            or any(not d.HasField("dim_value") for d in dims[1:])
        ):
            raise InternalError(f"shape inference left the shape of '{info.name}' unknown")
        # Batch is physical axis 0 of every value; some ops' inference drops its symbolic name.
        if batch is None:
            dims[0].Clear()
            dims[0].dim_param = "batch"
        elif dims[0].dim_value != batch:
            raise InternalError(f"shape inference gave '{info.name}' a batch of {dims[0]}")
    proto.graph.value_info.extend(inferred.graph.value_info)
    return proto

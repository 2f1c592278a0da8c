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
from convc.lower.emitter import Emitter, Value, channels_first, identity, onnx_type, tensor_info
from convc.lower.rules import RULES
from convc.model import Layer, Model
from convc.onnxfile import skeleton
from convc.targets import DEFAULT_TARGET, NEWEST_OPSET, OLDEST_OPSET, TARGETS, Target

DEFAULT_OPSET = TARGETS[DEFAULT_TARGET].opset
"""The opset of the default target. onnxruntime 1.32 has a CPU kernel for the newest version of
every op convc emits at any opset up to 28 (tests/test_opsets.py checks it against its registry)."""

MIN_OPSET = OLDEST_OPSET
MAX_OPSET = NEWEST_OPSET

IO_LAYOUTS = ("keras", "channels_first", "channels_last")
"""The order of the model's inputs and outputs: Keras's own, or channels first / last whatever
the layers' data_format (a channels_last net with channels_first I/O carries no Transpose)."""


class InternalError(Exception):
    """A bug in convc: the emitted graph contradicts what resolve computed."""


def lower(
    model: Model,
    weights: dict[str, dict[str, np.ndarray]],
    *,
    opset: int = DEFAULT_OPSET,
    target: Target = TARGETS[DEFAULT_TARGET],
    io_layout: str = "keras",
    layer_outputs: bool = False,
    optimize: bool = True,
) -> onnx.ModelProto:
    """Build the ONNX model for ``target``. With ``layer_outputs``, every layer's output is also
    a graph output, named after the layer, for checking layer by layer. ``io_layout`` orders the
    graph's inputs and outputs (``IO_LAYOUTS``). ``optimize`` picks the faster exact forms of
    ``convc.lower.conv_forms`` and applies the graph rewrites of ``convc.lower.rewrites``."""
    em = Emitter(opset, target, optimize)
    rank = len(model.input.shape)
    x = Value(model.input.name, io_order(model.layers[0], rank, io_layout), model.input.shape)
    input_shape = [model.input.shape[a] for a in x.perm]
    if model.input.dtype != "float32":
        em.scope = model.input.name
        x = Value(em.op("Cast", [x.name], "cast", to=onnx_type("float32")), x.perm, x.shape)
    outputs: list[tuple[Layer, Value]] = []
    for layer in model.layers:
        em.scope = layer.name
        x = RULES[layer.family](em, layer, x, weights.get(layer.name, {}))
        em.value_shapes[x.name] = tuple(0 if d is None else d for d in (x.shape[a] for a in x.perm))
        if layer_outputs and layer is not model.layers[-1]:
            outputs.append((layer, x))
    outputs.append((model.layers[-1], x))

    graph_outputs = []
    published: dict[str, str] = {}  # value name -> the graph output it becomes
    for layer, value in outputs:
        name = em.scope = layer.name
        order = io_order(layer, value.rank, io_layout)
        result = em.in_layout(value, order).name
        if result == model.input.name or result in published:
            # A no-op layer shares its input's value; an output needs a value of its own.
            result = em.op("Identity", [result], "output")
        published[result] = name
        graph_outputs.append(tensor_info(name, "float32", [value.shape[a] for a in order]))
    em.rename(published)

    if optimize:
        rewrites.optimize(em, {info.name for info in graph_outputs})
    proto = em.model(
        model.name,
        [tensor_info(model.input.name, model.input.dtype, input_shape)],
        graph_outputs,
    )
    proto.producer_version = __version__
    if em.workarounds:
        entry = proto.metadata_props.add()
        entry.key = "convc.workarounds"
        entry.value = "\n".join(f"{layer}: {text}" for layer, text in em.workarounds)
    return check(proto, model)


def io_order(layer: Layer, rank: int, io_layout: str) -> tuple[int, ...]:
    """The physical order of a graph input or output next to ``layer``, for ``io_layout``."""
    data_format = layer.config.get("data_format", "channels_last")
    if io_layout == "keras" or io_layout == data_format:
        return identity(rank)
    if io_layout == "channels_first":  # a channels_last tensor, channels moved to axis 1
        return channels_first(rank)
    return (0, *range(2, rank), 1)  # a channels_first tensor, channels moved last


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

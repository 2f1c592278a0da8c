"""Lower a resolved ``Model`` with its weights to a checked, shape-inferred ONNX model.

The driver walks the layers in order, hands each to its family's rule, and restores Keras's
layout at the output. Then it checks the result with ONNX's own checker (``full_check``) and
requires shape inference to agree with resolve's shapes on every layer's output: a disagreement
is a convc bug, reported as such.
"""

from __future__ import annotations

import collections
import importlib
import pkgutil
from collections.abc import Collection

import numpy as np
import onnx
from onnx import helper

from convc import __version__
from convc.collector import collector_paused
from convc.lower import rewrites
from convc.lower.emitter import Emitter, Value, channels_first, identity, onnx_type, tensor_info
from convc.lower.registry import lowering_of
from convc.model import Model, Node, Tensor
from convc.onnxfile import DetachedModel, InvalidModel, check_and_infer
from convc.progress import track
from convc.specs import (
    ConvSpec,
    CroppingSpec,
    NormalizationSpec,
    RescalingSpec,
    ZeroPaddingSpec,
    data_format_of,
)
from convc.targets import DEFAULT_TARGET, TARGETS, Target

for _module in pkgutil.iter_modules(__path__):  # each family's module registers its rule
    importlib.import_module(f"{__name__}.{_module.name}")

DEFAULT_OPSET = TARGETS[DEFAULT_TARGET].opset
"""The opset of the default target. onnxruntime 1.32 has a CPU kernel for the newest version of
every op convc emits at any opset up to 28 (tests/test_opsets.py checks it against its registry)."""


WORKAROUNDS_KEY = "convc.workarounds"
"""The metadata entry listing the target's workarounds, ``layer: what`` per line
(``convc.workarounds`` decodes it)."""


class InternalError(Exception):
    """A bug in convc: the emitted graph contradicts what resolve computed."""


def lower(model: Model, weights: dict[str, dict[str, np.ndarray]], **options) -> onnx.ModelProto:
    """``lower_detached``'s model with its weights in it."""
    return lower_detached(model, weights, **options).attach()


@collector_paused
def lower_detached(
    model: Model,
    weights: dict[str, dict[str, np.ndarray]],
    *,
    opset: int = DEFAULT_OPSET,
    target: Target = TARGETS[DEFAULT_TARGET],
    io_layout: str = "keras",
    layer_outputs: bool = False,
    optimize: bool = True,
    release_weights: bool = False,
) -> DetachedModel:
    """Build the ONNX model for ``target``, its large weights kept apart as arrays
    (``convc.onnxfile.DetachedModel``). With ``layer_outputs``, every node's output is also
    a graph output, named after the node, for checking layer by layer. ``io_layout`` orders the
    graph's inputs and outputs (``convc.options.IO_LAYOUTS``). ``optimize`` picks the faster
    exact forms of ``convc.lower.conv_forms`` and applies the graph rewrites of
    ``convc.lower.rewrites``. With ``release_weights``, a layer's entry is removed from
    ``weights`` once its last application is lowered: a caller that loaded the weights for this
    build alone then holds each array in Keras's layout or in ONNX's, not both (a build's peak
    memory, #18); and a rewrite may then change an array in place."""
    em = Emitter(opset, target, optimize)
    em.owns_arrays = release_weights
    values: dict[int, Value] = {}  # tensor id -> its value in the graph
    graph_inputs = []
    for model_input in model.inputs:
        order = graph_order(model, model_input, io_layout)
        x = Value(model_input.name, order, model_input.shape)
        graph_inputs.append(
            tensor_info(model_input.name, model_input.dtype, [model_input.shape[a] for a in order])
        )
        if model_input.dtype != "float32":
            em.scope = model_input.name
            x = Value(em.op("Cast", [x.name], "cast", to=onnx_type("float32")), x.perm, x.shape)
        if _feeds_convolutions_through_padding(model, model_input) and x.perm == identity(x.rank):
            em.scope = model_input.name
            x = em.in_layout(x, channels_first(x.rank))
        values[id(model_input)] = x
    applications: dict[int, int] = {}
    for node in model.nodes:
        applications[id(node.layer)] = applications.get(id(node.layer), 0) + 1
    shared = {layer: count > 1 for layer, count in applications.items()}
    for node in track(model.nodes, "lowering layers"):
        em.scope = node.name
        # Only a shared layer's weights are remembered for reuse: the others' arrays are
        # dropped as soon as their bytes are in the model (building is bounded by memory).
        em.layer = node.layer.name if shared[id(node.layer)] else ""
        inputs = [values[id(tensor)] for tensor in node.inputs]
        lowering = lowering_of(node.spec)
        if lowering.any_layout:
            inputs = [em.existing_layout(x) for x in inputs]
        x = lowering.rule(
            em,
            node,
            inputs if node.type.takes_list else inputs[0],
            weights.get(node.layer.name, {}),
        )
        em.value_shapes[x.name] = tuple(0 if d is None else d for d in (x.shape[a] for a in x.perm))
        values[id(node.output)] = x
        applications[id(node.layer)] -= 1
        if release_weights and not applications[id(node.layer)]:
            weights.pop(node.layer.name, None)

    exposed = list(model.outputs)
    if layer_outputs:
        listed = {id(t) for t in exposed}
        exposed += [node.output for node in model.nodes if id(node.output) not in listed]
    graph_outputs = []
    published: dict[str, str] = {}  # value name -> the graph output it becomes
    input_names = {model_input.name for model_input in model.inputs}
    for tensor in exposed:
        value = values[id(tensor)]
        name = em.scope = tensor.name
        order = graph_order(model, tensor, io_layout)
        result = em.in_layout(value, order).name
        if result in input_names or result in published:
            # A no-op layer shares its input's value; an output needs a value of its own.
            result = em.op("Identity", [result], "output")
        published[result] = name
        graph_outputs.append(tensor_info(name, "float32", [value.shape[a] for a in order]))
    em.rename(published)

    if optimize:
        rewrites.optimize(em, {info.name for info in graph_outputs})
    if not em.target.conv_output_read_by_add:
        _conv_outputs_apart_from_adds(em, {info.name for info in graph_outputs})
    detached = em.model(model.name, graph_inputs, graph_outputs)
    proto = detached.proto
    proto.producer_version = __version__
    if em.workarounds:
        entry = proto.metadata_props.add()
        entry.key = WORKAROUNDS_KEY
        entry.value = "\n".join(f"{layer}: {text}" for layer, text in em.workarounds)
    check(proto, model, detached.arrays)
    return detached


def _conv_outputs_apart_from_adds(em: Emitter, graph_outputs: set[str]) -> None:
    """A Conv whose output is a graph output and is read by an Add writes another name, which
    its readers read, and the graph output is an Identity of it
    (``Target.conv_output_read_by_add``)."""
    convs = [n for n in em.nodes if n.op_type == "Conv" and n.output[0] in graph_outputs]
    if not convs:
        return
    # Indexed once (``convc check`` makes every layer's output a graph output: a walk of the
    # graph per Conv would be quadratic). Renaming one Conv's output changes no other's readers.
    readers_of: dict[str, list[onnx.NodeProto]] = {conv.output[0]: [] for conv in convs}
    for node in em.nodes:
        for name in dict.fromkeys(node.input):
            if name in readers_of:
                readers_of[name].append(node)
    for conv in convs:
        output = conv.output[0]
        readers = readers_of[output]
        if not any(n.op_type == "Add" for n in readers):
            continue
        em.scope = output
        em.workaround("the output is an Identity of the Conv: onnxruntime fuses an Add into it")
        inner = em.fresh("conv")
        conv.output[0] = inner
        for reader in readers:
            reader.input[:] = [inner if name == output else name for name in reader.input]
        em.nodes.append(helper.make_node("Identity", [inner], [output], name=em.fresh("output")))


_ON_THE_WAY = (ZeroPaddingSpec, CroppingSpec, RescalingSpec, NormalizationSpec)
"""Layers between a channels_last input and its convolutions that work in either layout:
padding and cropping (which then fold into the convolution), and the per-channel affine
preprocessing of Keras's applications (Rescaling, Normalization), which onnxruntime
broadcasts over whole channel planes in channels-first order, and over three numbers at a time
in channels-last (EfficientNetB0: 1.8 ms of 27)."""


def _feeds_convolutions_through_padding(model: Model, tensor: Tensor) -> bool:
    """Whether a channels_last input reaches only convolutions, through the layers of
    ``_ON_THE_WAY``: then it is transposed first."""
    consumers = model.consumers.get(id(tensor), ())
    return bool(consumers) and all(
        isinstance(node.spec, _ON_THE_WAY) and _reaches_only_convolutions(model, node)
        for node in consumers
    )


def _reaches_only_convolutions(model: Model, node: Node) -> bool:
    """Whether ``node`` is a channels_last convolution, or an ``_ON_THE_WAY`` layer (of
    channels_last or any layout) whose readers all are such nodes, recursively. Walked with a
    stack, not by recursion: a chain of thousands of paddings and croppings is a legitimate
    (and a hostile) model."""
    waiting = [node]
    while waiting:
        node = waiting.pop()
        if isinstance(node.spec, ConvSpec):
            if data_format_of(node.spec) != "channels_last":
                return False
            continue
        if not isinstance(node.spec, _ON_THE_WAY) or data_format_of(node.spec) not in (
            "channels_last",
            None,
        ):
            return False
        readers = model.consumers.get(id(node.output), ())
        if not readers:
            return False
        waiting.extend(readers)
    return True


def tensor_format(model: Model, tensor: Tensor) -> str:
    """The data_format of the layers nearest a graph input or output: where a layout-free layer
    (a merge, an activation) stands between, the nearest layer beyond it decides."""
    # Breadth first; a chain of layout-free layers (100,000 activations) is walked to its end
    # from the input and from the output, so each step is kept to a few lookups.
    producers, consumers = model.producers, model.consumers
    seen: set[int] = set()
    frontier = collections.deque([tensor])
    while frontier:
        current = frontier.popleft()
        key = id(current)
        if key in seen:
            continue
        seen.add(key)
        producer = producers.get(key)
        readers = consumers.get(key, ())
        for node in (producer, *readers) if producer is not None else readers:
            data_format = data_format_of(node.spec)
            if data_format is not None:
                return data_format
        if producer is not None:
            frontier.extend(producer.inputs)
        frontier.extend(node.output for node in readers)
    return "channels_last"


def graph_order(model: Model, tensor: Tensor, io_layout: str) -> tuple[int, ...]:
    """The physical order of ``tensor``, a graph input or output of ``model``, for
    ``io_layout``. The tensor's data_format (a walk of the graph) is looked for only where the
    order depends on it: a build in Keras's layout, the default, walks nothing."""
    rank = tensor.rank
    if io_layout == "keras" or rank < 3 or io_layout == tensor_format(model, tensor):
        return identity(rank)
    if io_layout == "channels_first":  # a channels_last tensor, channels moved to axis 1
        return channels_first(rank)
    return (0, *range(2, rank), 1)  # a channels_first tensor, channels moved last


def check(proto: onnx.ModelProto, model: Model, detached: Collection[str] = ()) -> onnx.ModelProto:
    """ONNX's full check, then shape inference that must give every value a static shape
    (``detached`` names the initializers whose values are kept apart); the value shapes are
    added to ``proto``."""
    try:
        inferred = check_and_infer(proto, detached)
    except InvalidModel as error:
        raise InternalError(f"the emitted ONNX model is invalid: {error}") from error
    batch = model.inputs[0].shape[0]
    for info in inferred.graph.value_info:
        tensor = info.type.tensor_type
        dims = tensor.shape.dim
        if (
            not tensor.HasField("shape")
            or not dims
            or any(not d.HasField("dim_value") for d in dims[1:])
        ):
            raise InternalError(f"shape inference left the shape of '{info.name}' unknown")
        # Batch is physical axis 0 of every value. An intermediate value's batch is left
        # unnamed: the graph's "batch" would make a runtime that pins the input's shape
        # (tract's set_input_fact, OpenVINO's reshape) fail to unify "batch" with the number.
        if batch is None:
            dims[0].Clear()
        elif dims[0].dim_value != batch:
            raise InternalError(f"shape inference gave '{info.name}' a batch of {dims[0]}")
    proto.graph.value_info.extend(inferred.graph.value_info)
    return proto

"""float16 models: one pass over a finished float32 model (``convc build --precision float16``).

Every float32 tensor of the graph becomes float16: the weights, the constants, every value in
between and the ``to`` of each Cast to float32, so that a GPU computes the whole network in half
precision. The graph's inputs and outputs stay float32 by default (a Cast after each input and
before each output, so a caller's arrays are unchanged) or become float16 with
``io_dtype="float16"``.

Some inputs and ops stay float32, each for a stated reason (``FLOAT32_SLOTS``, ``FLOAT32_OPS``);
a Cast to float32 goes before them and one back to float16 after. The pass runs after lowering and
its checks, so every target's workarounds are kept, and it ends with ONNX's checker and shape
inference as ``convc.lower`` does. (``int8`` is ``convc.quantize``'s pass.)

onnxruntime's CPU provider runs every op of a float16 model: where it has no float16 kernel it
inserts the Casts itself (its ``InsertCastTransformer``), so on the CPU part of the arithmetic is
float32; CUDA and TensorRT run float16 kernels. ``tests/test_precision.py`` checks every sample in
onnxruntime and in ``onnx.reference`` (which computes in NumPy's float16) against the float32
NumPy reference at ``FLOAT16_RTOL`` and ``FLOAT16_ATOL``.
"""

from __future__ import annotations

from typing import Literal, get_args

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from convc.diagnostics import ConvcError
from convc.names import UniqueNames
from convc.onnxfile import DetachedModel, InvalidModel, check_and_infer

Precision = Literal["float32", "float16", "int8"]
IODtype = Literal["float32", "float16"]
PRECISIONS: tuple[Precision, ...] = get_args(Precision)
IO_DTYPES: tuple[IODtype, ...] = get_args(IODtype)

FLOAT16_RTOL = 1e-2
FLOAT16_ATOL = 1e-2
"""Tolerances of a float16 model against the float32 NumPy reference (``convc check`` and
``convc golden`` take them for a float16 model). float16 keeps 11 significant bits: each
rounding is off by up to 2**-11 (4.9e-4) of the value, and a layer sums many rounded products.
Measured on every sample and every per-layer case of the runtime matrix (1,093 models, random
weights, standard-normal inputs, batch 2), as ``|float16 - reference| / (1 + |reference|)``:
at most 2.9e-3 in onnxruntime's CPU provider (LayerNormalization with rms_scaling; 1.5e-3 for
any other case) and 1.4e-3 in onnx.reference on the samples. 1e-2 leaves a margin of 3 for
GPU kernels that accumulate in float16 where onnxruntime's CPU provider widens to float32."""

FLOAT32_SLOTS = {"Resize": (1, 2)}
"""Inputs that ONNX types as float32 whatever the data's type: Resize's ``roi`` and ``scales``
(``tensor(float)`` in every opset convc emits). Their constants are kept float32."""

FLOAT32_OPS = {
    "Celu": "ONNX defines Celu for float32 only (no float16 type in its schema)",
    "ReduceSumSquare": "a sum of squares overflows float16 (largest value 65504) on the "
    "channels of a UnitNormalization or a GroupNormalization of modest activations (512 "
    "channels of magnitude 12 already sum to 73,728)",
    "ReduceL2": "its sum of squares overflows float16 as ReduceSumSquare's does",
}
"""Ops computed in float32 inside a float16 model, and why."""

_FLOAT, _HALF = TensorProto.FLOAT, TensorProto.FLOAT16


def check_precision(precision: str, io_dtype: str = "float32") -> None:
    if precision not in PRECISIONS:
        raise ConvcError(
            f"unknown precision {precision!r}", help="choose one of: " + ", ".join(PRECISIONS)
        )
    if io_dtype not in IO_DTYPES:
        raise ConvcError(
            f"unknown input/output dtype {io_dtype!r}",
            help="choose one of: " + ", ".join(IO_DTYPES),
        )
    if precision != "float16" and io_dtype != "float32":
        raise ConvcError(
            "float16 inputs and outputs need --precision float16",
            help=f"a {precision} model takes and returns float32 arrays",
        )


def model_precision(proto: onnx.ModelProto) -> str:
    """``float16`` for a model this pass made, ``int8`` for one ``convc.quantize`` made, else
    ``float32``."""
    for entry in proto.metadata_props:
        if entry.key == "convc.precision":
            return entry.value
    return "float32"


def to_float16(proto: onnx.ModelProto, *, io_dtype: str = "float32") -> onnx.ModelProto:
    """A float16 copy of the float32 model ``proto`` (see the module's docstring)."""
    return _to_float16(proto, {}, io_dtype)


def to_float16_detached(model: DetachedModel, *, io_dtype: str = "float32") -> DetachedModel:
    """``to_float16`` of a model whose large weights are kept apart as arrays: each array is
    rounded to float16 in turn and the float32 one let go (``model``'s arrays are taken), so
    that a build holds about its float32 weights at most, as the float32 build does; the
    model is written as the same bytes as ``to_float16`` of the attached one."""
    arrays, model.arrays = model.arrays, {}
    converted = _to_float16(model.proto, arrays, io_dtype)
    return DetachedModel(converted, arrays)


def _to_float16(
    proto: onnx.ModelProto, arrays: dict[str, np.ndarray], io_dtype: str
) -> onnx.ModelProto:
    """``to_float16``; the float32 ``arrays`` of a ``DetachedModel`` are replaced by their
    float16 roundings (those an input keeps float32 stay)."""
    check_precision("float16", io_dtype)
    if model_precision(proto) != "float32":
        raise ConvcError(f"the model is already {model_precision(proto)}")
    model = onnx.ModelProto()
    model.CopyFrom(proto)
    graph = model.graph
    names = _names(graph)

    # Which constants must stay float32: those that only feed float32 inputs.
    needs: dict[str, set[bool]] = {}
    for node in graph.node:
        keep = _float32_inputs(node)
        for i, name in enumerate(node.input):
            needs.setdefault(name, set()).add(i in keep)
    initializers = {tensor.name for tensor in graph.initializer}
    kept = {name for name, wanted in needs.items() if wanted == {True} and name in initializers}

    for tensor in graph.initializer:
        if tensor.data_type != _FLOAT or tensor.name in kept:
            continue
        if tensor.name in arrays:
            arrays[tensor.name] = arrays[tensor.name].astype("<f2")
            tensor.data_type = _HALF
            continue
        values = numpy_helper.to_array(tensor).astype("float16")
        tensor.CopyFrom(numpy_helper.from_array(values, tensor.name))
    for info in graph.value_info:
        _retype(info)

    nodes: list[onnx.NodeProto] = []
    float_values = _float_values(proto)
    for node in graph.node:
        if node.op_type == "Cast" and _attribute(node, "to") == _FLOAT:
            _set_attribute(node, "to", _HALF)
        keep = _float32_inputs(node)
        for i, name in enumerate(node.input):
            if i in keep and name in float_values and name not in kept:
                node.input[i] = _cast(nodes, names, name, _FLOAT)
        if node.op_type in FLOAT32_OPS:
            for j, name in enumerate(node.output):
                if name in float_values:
                    wide = names.unique(f"{name}/float32")
                    node.output[j] = wide
                    nodes.append(node)
                    nodes.append(_cast_node(names, wide, name, _HALF))
                    break
            else:
                nodes.append(node)
            continue
        nodes.append(node)

    if io_dtype == "float32":
        head: list[onnx.NodeProto] = []
        for info in graph.input:
            if info.type.tensor_type.elem_type == _FLOAT:
                half = names.unique(f"{info.name}/float16")
                _rename_uses(nodes, info.name, half)
                head.append(_cast_node(names, info.name, half, _HALF))
        tail: list[onnx.NodeProto] = []
        for info in graph.output:
            if info.type.tensor_type.elem_type == _FLOAT:
                half = names.unique(f"{info.name}/float16")
                _rename_uses(nodes, info.name, half, outputs=True)
                tail.append(_cast_node(names, half, info.name, _FLOAT))
        nodes = head + nodes + tail
    else:
        for info in (*graph.input, *graph.output):
            _retype(info)

    del graph.node[:]
    graph.node.extend(nodes)
    del graph.value_info[:]
    entry = model.metadata_props.add()
    entry.key, entry.value = "convc.precision", "float16"
    try:
        inferred = check_and_infer(model, arrays)
    except InvalidModel as error:
        raise ConvcError(f"the float16 model is not valid ONNX: {error}") from None
    graph.value_info.extend(inferred.graph.value_info)
    return model


def _float32_inputs(node: onnx.NodeProto) -> set[int]:
    if node.op_type in FLOAT32_OPS:
        return set(range(len(node.input)))
    return set(FLOAT32_SLOTS.get(node.op_type, ()))


def _float_values(proto: onnx.ModelProto) -> set[str]:
    """Names of the float32 values of the original model."""
    graph = proto.graph
    infos = (*graph.input, *graph.output, *graph.value_info)
    names = {info.name for info in infos if info.type.tensor_type.elem_type == _FLOAT}
    names |= {t.name for t in graph.initializer if t.data_type == _FLOAT}
    return names


def _retype(info: onnx.ValueInfoProto) -> None:
    if info.type.tensor_type.elem_type == _FLOAT:
        info.type.tensor_type.elem_type = _HALF


def _attribute(node: onnx.NodeProto, name: str):
    for attribute in node.attribute:
        if attribute.name == name:
            return helper.get_attribute_value(attribute)
    return None


def _set_attribute(node: onnx.NodeProto, name: str, value: int) -> None:
    for attribute in node.attribute:
        if attribute.name == name:
            attribute.i = value


def _cast(nodes: list[onnx.NodeProto], names: UniqueNames, name: str, to: int) -> str:
    result = names.unique(f"{name}/float32" if to == _FLOAT else f"{name}/float16")
    nodes.append(_cast_node(names, name, result, to))
    return result


def _cast_node(names: UniqueNames, source: str, result: str, to: int) -> onnx.NodeProto:
    return helper.make_node("Cast", [source], [result], name=names.unique(f"{result}/cast"), to=to)


def _rename_uses(nodes: list[onnx.NodeProto], old: str, new: str, *, outputs: bool = False) -> None:
    """Rename ``old`` in every node's inputs (and outputs, for a graph output's producer)."""
    for node in nodes:
        for i, name in enumerate(node.input):
            if name == old:
                node.input[i] = new
        if outputs:
            for i, name in enumerate(node.output):
                if name == old:
                    node.output[i] = new


def _names(graph: onnx.GraphProto) -> UniqueNames:
    """Every name the graph uses; a new value's name gets the first free suffix from ``_2``."""
    used = {info.name for info in (*graph.input, *graph.output, *graph.value_info)}
    used |= {t.name for t in graph.initializer}
    for node in graph.node:
        used.add(node.name)
        used.update(node.output)
    return UniqueNames(used, first=2)

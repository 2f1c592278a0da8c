"""The int8 reference: what each quantized group of an int8 model must compute, in NumPy.

An int8 model (``convc.quantize``) is a float graph with QuantizeLinear/DequantizeLinear pairs.
A *quantized group* is the float work between one QuantizeLinear and the DequantizeLinear
outputs, graph inputs and constants it reads: a Conv with its folded BatchNormalization and its
removed ReLU, an Add, a pooling, a Transpose. A runtime runs a group as one integer kernel
(onnxruntime's QLinearConv, QLinearAdd, ...) and writes the QuantizeLinear's integers.

``compute_group`` computes a group's integers itself: the input integers dequantized with the
plan's scales and zero points, the weights' integers dequantized per channel, the group's float
ops in NumPy, and the quantization of the result (``x / scale`` rounded half to even, plus the
zero point, saturated to the type's range). ``convc.int8_check`` feeds each group the runtime's
own integers for its inputs, so that errors do not compound from group to group, and requires
every element to agree within one step: a correct integer kernel differs from the exact value by
less than a step before its final rounding, so only a rounding boundary can separate it from the
reference by one.

Why groups of ONNX ops and not Keras layers, as ``convc.reference`` computes: the groups are set
by the quantizer, not by the layers. A Conv2D with ``activation="swish"`` is three groups (the
convolution, its Sigmoid, the Mul), a Dense on a 3-D input two (MatMul, then Add), and the values
between groups are in lowering's physical layout, after its rewrites (a Flatten's Transpose
folded into the Dense's rows). What is under test here is the runtime's integer arithmetic; the
float semantics of each op against Keras is what ``convc check`` in float32 establishes for the
same lowering. The arithmetic itself is the reference's: convolutions are
``convc.reference.convolve`` on the kernel moved back to Keras's ``(*kernel, in, out)`` layout,
activations ``convc.reference.ACTIVATIONS``. None of it runs onnxruntime.

An op that the reference does not know makes its group *unchecked*; ``convc.int8_check`` counts
such groups and does not pass them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

from convc.quantize import QuantizationPlan, QuantizedTensor
from convc.reference import ACTIVATIONS, _erf, convolve

Values = dict[str, np.ndarray]


@dataclass(frozen=True, eq=False)
class Group:
    """The float work that one QuantizeLinear quantizes: its ``nodes`` in graph order (the
    DequantizeLinear of weights and of activations among them), the integer tensors it reads
    (``integer_inputs``, each a QuantizeLinear's output), the graph inputs it reads, and the
    quantization of its result."""

    output: QuantizedTensor
    nodes: tuple[onnx.NodeProto, ...]
    integer_inputs: tuple[str, ...]
    graph_inputs: tuple[str, ...]

    @property
    def layer(self) -> str:
        """The Keras layer of the group's result, from lowering's ``<layer>/<what>`` names."""
        name = self.output.tensor
        for suffix in ("_QuantizeLinear_Input", "_DequantizeLinear_Output"):
            name = name.removesuffix(suffix)
        return name.split("/")[0]

    @property
    def ops(self) -> tuple[str, ...]:
        """The group's float ops, DequantizeLinear aside."""
        return tuple(n.op_type for n in self.nodes if n.op_type != "DequantizeLinear")

    @property
    def unknown_ops(self) -> tuple[str, ...]:
        return tuple(sorted({op for op in self.ops if op not in OPS}))


def quantized_groups(proto: onnx.ModelProto, plan: QuantizationPlan) -> list[Group]:
    """Every QuantizeLinear's group, in graph order."""
    graph = proto.graph
    constants = {t.name for t in graph.initializer}
    inputs = {i.name for i in graph.input}
    producers = {name: node for node in graph.node for name in node.output}
    order = {id(node): index for index, node in enumerate(graph.node)}
    by_integers = {a.integers: a for a in plan.activations}
    groups = []
    for node in graph.node:
        if node.op_type != "QuantizeLinear":
            continue
        members: dict[int, onnx.NodeProto] = {}
        integer_inputs: list[str] = []
        graph_inputs: list[str] = []
        pending, seen = [node.input[0]], set()
        while pending:
            name = pending.pop()
            if name in seen or name in constants or not name:
                continue
            seen.add(name)
            if name in inputs:
                graph_inputs.append(name)
                continue
            producer = producers[name]
            members[id(producer)] = producer
            if producer.op_type == "DequantizeLinear" and producer.input[0] not in constants:
                integer_inputs.append(producer.input[0])
                continue
            pending.extend(producer.input)
        nodes = tuple(sorted(members.values(), key=lambda n: order[id(n)]))
        groups.append(
            Group(
                by_integers[node.output[0]],
                nodes,
                tuple(dict.fromkeys(integer_inputs)),
                tuple(dict.fromkeys(graph_inputs)),
            )
        )
    return groups


def compute_group(
    group: Group,
    integers: Mapping[str, np.ndarray],
    graph_inputs: Mapping[str, np.ndarray],
    constants: Mapping[str, np.ndarray],
) -> np.ndarray:
    """The integers of ``group``'s QuantizeLinear, from the integers of its inputs
    (``integers``, by tensor name), the graph's inputs and the model's constants."""
    values: Values = {**{name: np.asarray(integers[name]) for name in group.integer_inputs}}
    values.update({name: np.asarray(graph_inputs[name]) for name in group.graph_inputs})

    def value(name: str) -> np.ndarray:
        return values[name] if name in values else constants[name]

    for node in group.nodes:
        arguments = [value(name) if name else None for name in node.input]
        attributes = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        result = OPS[node.op_type](arguments, attributes)
        values[node.output[0]] = result
    return quantize(values[group.output.tensor], group.output)


def quantize(x: np.ndarray, tensor: QuantizedTensor) -> np.ndarray:
    """ONNX's QuantizeLinear: ``x / scale`` rounded half to even, plus the zero point,
    saturated."""
    low, high = tensor.bounds
    scaled = np.rint(np.asarray(x, np.float32) / np.float32(tensor.scale))
    return np.clip(scaled + tensor.zero_point, low, high).astype(tensor.dtype)


def dequantize(x: np.ndarray, scale: np.ndarray, zero_point: np.ndarray, axis: int = 1):
    """ONNX's DequantizeLinear, one scale or one per slice along ``axis``."""
    scale, zero_point = np.asarray(scale, np.float32), np.asarray(zero_point)
    if scale.ndim == 1 and x.ndim > 1:
        shape = [1] * x.ndim
        shape[axis] = -1
        scale, zero_point = scale.reshape(shape), zero_point.reshape(shape)
    if x.dtype.itemsize <= 2:
        # 8 and 16 bits: x - zero_point is exact in float32, and float32's product rounds as
        # the exact float64 product does, at a third of the int64 route's memory
        return (x.astype(np.float32) - zero_point.astype(np.float32)) * scale
    return ((x.astype(np.int64) - zero_point.astype(np.int64)) * scale).astype(np.float32)


def evaluate(proto: onnx.ModelProto, inputs: Mapping[str, np.ndarray]) -> Values:
    """The whole int8 model computed by the reference, each QuantizeLinear from the reference's
    own values (errors compound here as they do in the runtime, where ``compute_group`` stops
    them): the graph's outputs by name. ``Unsupported`` for an op the reference lacks."""
    values: Values = {**constants_of(proto), **{k: np.asarray(v) for k, v in inputs.items()}}
    for node in proto.graph.node:
        if node.op_type not in OPS or len(node.output) != 1:
            raise Unsupported(node.op_type)
        arguments = [values[name] if name else None for name in node.input]
        attributes = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        values[node.output[0]] = OPS[node.op_type](arguments, attributes)
    return {info.name: values[info.name] for info in proto.graph.output}


def constants_of(proto: onnx.ModelProto) -> Values:
    return {t.name: numpy_helper.to_array(t) for t in proto.graph.initializer}


# -- the ops ------------------------------------------------------------------------------------

Op = Callable[[list, dict], np.ndarray]
OPS: dict[str, Op] = {}


def op(*names: str) -> Callable[[Op], Op]:
    def register(function: Op) -> Op:
        for name in names:
            OPS[name] = function
        return function

    return register


@op("QuantizeLinear")
def _quantize(a, attrs):
    zero_point = a[2] if len(a) > 2 and a[2] is not None else np.zeros((), np.uint8)
    info = np.iinfo(zero_point.dtype)
    scale = np.asarray(a[1], np.float32)
    if scale.ndim == 1 and a[0].ndim > 1:
        shape = [1] * a[0].ndim
        shape[attrs.get("axis", 1)] = -1
        scale, zero_point = scale.reshape(shape), zero_point.reshape(shape)
    scaled = np.rint(np.asarray(a[0], np.float32) / scale) + zero_point.astype(np.int64)
    return np.clip(scaled, info.min, info.max).astype(zero_point.dtype)


@op("DequantizeLinear")
def _dequantize(a, attrs):
    zero_point = a[2] if len(a) > 2 else np.zeros((), a[0].dtype)
    return dequantize(a[0], a[1], zero_point, attrs.get("axis", 1))


def _spatial_pads(attrs: dict, rank: int) -> list[tuple[int, int]]:
    pads = list(attrs.get("pads", [0] * 2 * rank))
    return list(zip(pads[:rank], pads[rank:], strict=True))


@op("Conv")
def _conv(a, attrs):
    x, kernel = a[0], a[1]
    rank = x.ndim - 2
    y = convolve(
        np.ascontiguousarray(np.moveaxis(x, 1, -1)),
        np.ascontiguousarray(np.moveaxis(kernel, (0, 1), (-1, -2))),  # (out, in, *k) -> Keras's
        tuple(attrs.get("strides", [1] * rank)),
        tuple(attrs.get("dilations", [1] * rank)),
        _spatial_pads(attrs, rank),
        attrs.get("group", 1),
    )
    if len(a) > 2 and a[2] is not None:
        y = y + a[2]
    return np.moveaxis(y, -1, 1).astype(np.float32)


@op("Gemm")
def _gemm(a, attrs):
    x = a[0].T if attrs.get("transA", 0) else a[0]
    w = a[1].T if attrs.get("transB", 0) else a[1]
    y = attrs.get("alpha", 1.0) * (x.astype(np.float32) @ w.astype(np.float32))
    if len(a) > 2 and a[2] is not None:
        y = y + attrs.get("beta", 1.0) * a[2]
    return y.astype(np.float32)


@op("MatMul")
def _matmul(a, attrs):
    return np.matmul(a[0], a[1]).astype(np.float32)


def _elementwise(function: Callable[..., np.ndarray]) -> Op:
    return lambda a, attrs: np.asarray(function(*a), np.float32)


OPS["Add"] = _elementwise(np.add)
OPS["Sub"] = _elementwise(np.subtract)
OPS["Mul"] = _elementwise(np.multiply)
OPS["Div"] = _elementwise(np.divide)
OPS["Relu"] = _elementwise(ACTIVATIONS["relu"])
OPS["Sigmoid"] = _elementwise(ACTIVATIONS["sigmoid"])
OPS["Tanh"] = _elementwise(ACTIVATIONS["tanh"])
OPS["Identity"] = _elementwise(lambda x: x)
OPS["Erf"] = _elementwise(_erf)
OPS["HardSwish"] = _elementwise(lambda x: x * np.clip(x / 6.0 + 0.5, 0.0, 1.0))
OPS["Sum"] = _elementwise(lambda *xs: sum(xs[1:], xs[0]))
OPS["PRelu"] = _elementwise(lambda x, slope: np.where(x >= 0, x, slope * x))


@op("BatchNormalization")
def _batch_normalization(a, attrs):
    """Inference batch normalization over axis 1 (a DenseNet's, after a Concatenate, which no
    convolution's kernel can take)."""
    x, gamma, beta, mean, variance = (np.asarray(v, np.float64) for v in a[:5])
    shape = (1, -1) + (1,) * (x.ndim - 2)
    scale = gamma / np.sqrt(variance + attrs.get("epsilon", 1e-5))
    return ((x - mean.reshape(shape)) * scale.reshape(shape) + beta.reshape(shape)).astype(
        np.float32
    )


@op("Elu")
def _elu(a, attrs):
    alpha = attrs.get("alpha", 1.0)
    return np.where(a[0] > 0, a[0], alpha * np.expm1(np.minimum(a[0], 0))).astype(np.float32)


@op("Selu")
def _selu(a, attrs):
    alpha, gamma = (
        attrs.get("alpha", 1.67326319217681884765625),
        attrs.get("gamma", 1.05070102214813232421875),
    )
    x = a[0].astype(np.float64)
    return (gamma * np.where(x > 0, x, alpha * np.expm1(np.minimum(x, 0)))).astype(np.float32)


class Unsupported(Exception):
    """An op's form that the reference does not compute (its group is not checked)."""


@op("ConvTranspose")
def _conv_transpose(a, attrs):
    """A transposed convolution as the convolution of the stride-dilated input with the flipped
    kernel, as ``convc.reference`` computes Keras's."""
    x, kernel = a[0], a[1]
    rank = x.ndim - 2
    strides = list(attrs.get("strides", [1] * rank))
    dilations = list(attrs.get("dilations", [1] * rank))
    group = attrs.get("group", 1)
    if "output_shape" in attrs or attrs.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
        raise Unsupported("ConvTranspose with output_shape or auto_pad")
    extra = list(attrs.get("output_padding", [0] * rank))
    pads = _spatial_pads(attrs, rank)
    last = np.moveaxis(x, 1, -1)
    dilated = np.zeros(
        (
            last.shape[0],
            *[(n - 1) * s + 1 for n, s in zip(last.shape[1:-1], strides, strict=True)],
            last.shape[-1],
        ),
        np.float32,
    )
    dilated[(slice(None), *[slice(None, None, s) for s in strides], slice(None))] = last
    channels_in, per_group_out, taps = kernel.shape[0], kernel.shape[1], kernel.shape[2:]
    grouped = kernel.reshape(group, channels_in // group, per_group_out, *taps)
    keras = np.moveaxis(grouped, (0, 1, 2), (-2, -3, -1)).reshape(
        *taps, channels_in // group, group * per_group_out
    )
    flipped = np.ascontiguousarray(keras[tuple(slice(None, None, -1) for _ in taps)])
    conv_pads = [
        (d * (k - 1) - b, d * (k - 1) - e + p)
        for k, d, (b, e), p in zip(taps, dilations, pads, extra, strict=True)
    ]
    y = convolve(dilated, flipped, (1,) * rank, tuple(dilations), conv_pads, group)
    if len(a) > 2 and a[2] is not None:
        y = y + a[2]
    return np.moveaxis(y, -1, 1).astype(np.float32)


@op("Resize")
def _resize(a, attrs):
    """Resize by whole factors: nearest (each element repeated) or linear with half-pixel
    centres (a matrix per axis)."""
    x = a[0]
    scales = a[2] if len(a) > 2 and a[2] is not None and a[2].size else None
    if scales is None and len(a) > 3 and a[3] is not None:
        scales = np.asarray(a[3], np.float64) / np.asarray(x.shape)
    if scales is None:
        raise Unsupported("Resize without scales or sizes")
    mode = attrs.get("mode", b"nearest")
    mode = mode.decode() if isinstance(mode, bytes) else mode
    transform = attrs.get("coordinate_transformation_mode", b"half_pixel")
    transform = transform.decode() if isinstance(transform, bytes) else transform
    factors = [float(f) for f in np.asarray(scales).tolist()]
    if any(f != int(f) or f < 1 for f in factors):
        raise Unsupported("Resize by a factor that is not a whole number")
    y = x.astype(np.float32)
    for axis, factor in enumerate(int(f) for f in factors):
        if factor == 1:
            continue
        if mode == "nearest":
            y = np.repeat(y, factor, axis=axis)
        elif mode == "linear" and transform in ("half_pixel", "pytorch_half_pixel"):
            y = np.moveaxis(
                np.tensordot(_linear(y.shape[axis], factor), y, axes=([1], [axis])), 0, axis
            )
        else:
            raise Unsupported(f"Resize mode {mode} with {transform}")
    return y.astype(np.float32)


def _linear(length: int, factor: int) -> np.ndarray:
    """Linear interpolation with half-pixel centres, clamped at the edges, as a matrix."""
    out = length * factor
    source = np.clip((np.arange(out) + 0.5) / factor - 0.5, 0, length - 1)
    low = np.floor(source).astype(int)
    high = np.minimum(low + 1, length - 1)
    weight = source - low
    matrix = np.zeros((out, length))
    matrix[np.arange(out), low] += 1 - weight
    matrix[np.arange(out), high] += weight
    return matrix


@op("Clip")
def _clip(a, attrs):
    low = a[1] if len(a) > 1 and a[1] is not None else -np.inf
    high = a[2] if len(a) > 2 and a[2] is not None else np.inf
    return np.clip(a[0], low, high).astype(np.float32)


@op("LeakyRelu")
def _leaky_relu(a, attrs):
    alpha = np.float32(attrs.get("alpha", 0.01))
    return np.where(a[0] >= 0, a[0], alpha * a[0]).astype(np.float32)


@op("HardSigmoid")
def _hard_sigmoid(a, attrs):
    alpha, beta = attrs.get("alpha", 0.2), attrs.get("beta", 0.5)
    return np.clip(alpha * a[0] + beta, 0, 1).astype(np.float32)


@op("Softmax")
def _softmax(a, attrs):
    x = a[0].astype(np.float64)
    e = np.exp(x - x.max(axis=attrs.get("axis", -1), keepdims=True))
    return (e / e.sum(axis=attrs.get("axis", -1), keepdims=True)).astype(np.float32)


@op("MaxPool")
def _max_pool(a, attrs):
    return _pool(a[0], attrs, maximum=True)


@op("AveragePool")
def _average_pool(a, attrs):
    return _pool(a[0], attrs, maximum=False)


def _pool(x: np.ndarray, attrs: dict, *, maximum: bool) -> np.ndarray:
    """ONNX's MaxPool and AveragePool (explicit pads; ``ceil_mode`` adds end padding that an
    average never counts)."""
    rank = x.ndim - 2
    size = list(attrs["kernel_shape"])
    strides = list(attrs.get("strides", [1] * rank))
    dilations = list(attrs.get("dilations", [1] * rank))
    pads = _spatial_pads(attrs, rank)
    extra = [0] * rank
    if attrs.get("ceil_mode", 0):
        for i in range(rank):
            span = dilations[i] * (size[i] - 1) + 1
            length = x.shape[2 + i] + pads[i][0] + pads[i][1]
            out = -(-(length - span) // strides[i]) + 1
            if (out - 1) * strides[i] >= x.shape[2 + i] + pads[i][0]:
                out -= 1  # the last window must start inside the input or its left padding
            extra[i] = max(0, (out - 1) * strides[i] + span - length)
    widths = [(b, e + x_) for (b, e), x_ in zip(pads, extra, strict=True)]
    fill = -np.inf if maximum else 0.0
    padded = np.pad(x.astype(np.float32), [(0, 0), (0, 0), *widths], constant_values=fill)
    windows = _windows(padded, size, strides, dilations)
    taps = tuple(range(-rank, 0))
    if maximum:
        return windows.max(axis=taps).astype(np.float32)
    sums = windows.sum(axis=taps, dtype=np.float64)
    ones = np.ones(x.shape[2:], np.float32)
    if attrs.get("count_include_pad", 0):
        ones = np.pad(ones, pads, constant_values=1.0)
        ones = np.pad(ones, [(0, e) for e in extra])
    else:
        ones = np.pad(ones, widths)
    counts = _windows(ones[None, None], size, strides, dilations).sum(axis=taps)
    return (sums / counts).astype(np.float32)


def _windows(x: np.ndarray, size, strides, dilations) -> np.ndarray:
    rank = len(size)
    spans = [d * (k - 1) + 1 for k, d in zip(size, dilations, strict=True)]
    view = np.lib.stride_tricks.sliding_window_view(x, spans, axis=tuple(range(2, 2 + rank)))
    stepped = view[(slice(None), slice(None), *[slice(None, None, s) for s in strides])]
    index: tuple[Any, ...] = (Ellipsis, *(slice(None, None, d) for d in dilations))
    return stepped[index]


@op("GlobalAveragePool")
def _global_average(a, attrs):
    return (
        a[0]
        .mean(axis=tuple(range(2, a[0].ndim)), keepdims=True, dtype=np.float64)
        .astype(np.float32)
    )


@op("GlobalMaxPool")
def _global_max(a, attrs):
    return a[0].max(axis=tuple(range(2, a[0].ndim)), keepdims=True)


@op("ReduceMean")
def _reduce_mean(a, attrs):
    axes = attrs.get("axes", a[1].tolist() if len(a) > 1 and a[1] is not None else None)
    keep = bool(attrs.get("keepdims", 1))
    axis = tuple(axes) if axes is not None else None
    return a[0].mean(axis=axis, keepdims=keep, dtype=np.float64).astype(np.float32)


@op("Transpose")
def _transpose(a, attrs):
    return np.transpose(a[0], attrs.get("perm"))


@op("Reshape")
def _reshape(a, attrs):
    keep = not attrs.get("allowzero", 0)  # a 0 copies the input's dimension
    shape = [a[0].shape[i] if d == 0 and keep else d for i, d in enumerate(a[1].tolist())]
    return a[0].reshape(shape)


@op("Flatten")
def _flatten(a, attrs):
    axis = attrs.get("axis", 1) % max(a[0].ndim, 1)
    return a[0].reshape(int(np.prod(a[0].shape[:axis])), -1)


@op("Squeeze")
def _squeeze(a, attrs):
    axes = a[1].tolist() if len(a) > 1 and a[1] is not None else attrs.get("axes")
    return np.squeeze(a[0], axis=tuple(axes) if axes is not None else None)


@op("Unsqueeze")
def _unsqueeze(a, attrs):
    axes = a[1].tolist() if len(a) > 1 and a[1] is not None else attrs["axes"]
    return np.expand_dims(a[0], tuple(axes))


@op("Concat")
def _concat(a, attrs):
    return np.concatenate(a, axis=attrs["axis"])


@op("Pad")
def _pad(a, attrs):
    mode = attrs.get("mode", b"constant")
    if isinstance(mode, bytes):
        mode = mode.decode()
    pads = a[1].tolist()
    value = a[2].item() if len(a) > 2 and a[2] is not None and a[2].size else 0.0
    rank = a[0].ndim
    axes = a[3].tolist() if len(a) > 3 and a[3] is not None else list(range(rank))
    width = [(0, 0)] * rank
    for i, axis in enumerate(axes):
        width[axis % rank] = (pads[i], pads[i + len(axes)])
    if mode == "reflect":
        return np.pad(a[0], width, mode="reflect")
    if mode == "edge":
        return np.pad(a[0], width, mode="edge")
    return np.pad(a[0], width, constant_values=value)


@op("Slice")
def _slice(a, attrs):
    x = a[0]
    starts, ends = a[1].tolist(), a[2].tolist()
    axes = a[3].tolist() if len(a) > 3 and a[3] is not None else list(range(len(starts)))
    steps = a[4].tolist() if len(a) > 4 and a[4] is not None else [1] * len(starts)
    index = [slice(None)] * x.ndim
    for start, end, axis, step in zip(starts, ends, axes, steps, strict=True):
        index[axis] = slice(start, end, step)
    return x[tuple(index)]

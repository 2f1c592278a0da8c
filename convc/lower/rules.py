"""One lowering rule per layer family: a resolved layer in, ONNX nodes out.

A rule receives the emitter, the layer (Keras arguments and shapes), its input value and its
weights in Keras layouts, and returns its output value. Convolutions ask for channels-first
order; Pad, Slice and Resize work in whatever order the value already has, mapping their axes
through the layout. Pads are explicit numbers from ``convc.layers.shapes``: never ``auto_pad``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from convc.layers import shapes
from convc.layers.base import spatial_axes
from convc.lower import conv_forms
from convc.lower.activations import emit_activation
from convc.lower.applications import RULES as APPLICATION_RULES
from convc.lower.core import RULES as CORE_RULES
from convc.lower.emitter import KERAS_INTERPOLATIONS, Emitter, Value, channels_first, identity
from convc.lower.normalization import (
    lower_batch_normalization,
    lower_group_normalization,
    lower_layer_normalization,
    lower_unit_normalization,
)
from convc.lower.pooling import lower_global_pooling, lower_pooling
from convc.model import Node
from convc.specs import (
    ActivationSpec,
    ConcatenateSpec,
    ConvSpec,
    CroppingSpec,
    MergeSpec,
    ReLUSpec,
    SpatialSpec,
    UpSamplingSpec,
    ZeroPaddingSpec,
    expect,
)

Weights = dict[str, np.ndarray]
Rule = Callable[[Emitter, Node, Any, Weights], Value]


def onnx_kernel(kernel: np.ndarray) -> np.ndarray:
    """Keras (k1..kr, in, out) -> ONNX (out, in, k1..kr); for ConvTranspose Keras's
    (k.., out, in) becomes ONNX's (in, out, k..) by the same permutation."""
    r = kernel.ndim - 2
    return kernel.transpose(r + 1, r, *range(r))


def _conv_layout(spec: SpatialSpec, rank: int) -> tuple[int, ...]:
    return channels_first(rank) if spec.data_format == "channels_last" else identity(rank)


def _spatial_lengths(spec: ConvSpec, shape: tuple) -> list[int]:
    return [shape[a] for a in spatial_axes(spec.rank, spec.data_format)]


def _forward_pads(layer: Node) -> list[int]:
    c = expect(layer.spec, ConvSpec)
    lengths = _spatial_lengths(c, layer.input_shape)
    pairs = [
        shapes.conv_pads(n, k, s, d, c.padding)
        for n, k, s, d in zip(lengths, c.kernel_size, c.strides, c.dilation_rate, strict=True)
    ]
    return [b for b, _ in pairs] + [e for _, e in pairs]


def _conv_attrs(c: ConvSpec, pads: list[int], group: int) -> dict:
    return {
        "kernel_shape": list(c.kernel_size),
        "strides": list(c.strides),
        "dilations": list(c.dilation_rate),
        "pads": pads,
        "group": group,
    }


def _finish(em: Emitter, layer: Node, out: str, x: Value) -> Value:
    """Wrap a channels-first result as a Value and apply the layer's activation."""
    value = Value(out, x.perm, _pre_activation_shape(layer))
    return emit_activation(em, expect(layer.spec, ConvSpec).activation, value)


def _pre_activation_shape(layer: Node) -> tuple:
    shape = list(layer.output_shape)
    if expect(layer.spec, ConvSpec).activation == "glu":
        shape[-1] *= 2
    return tuple(shape)


def lower_conv(em: Emitter, layer: Node, x: Value, weights: Weights) -> Value:
    c = expect(layer.spec, ConvSpec)
    x = em.in_layout(x, _conv_layout(c, x.rank))
    out = conv_forms.conv(
        em,
        x.name,
        onnx_kernel(weights["kernel"]),
        weights.get("bias"),
        _conv_attrs(c, _forward_pads(layer), c.groups),
    )
    return _finish(em, layer, out, x)


def lower_conv_transpose(em: Emitter, layer: Node, x: Value, weights: Weights) -> Value:
    c = expect(layer.spec, ConvSpec)
    x = em.in_layout(x, _conv_layout(c, x.rank))
    lengths = _spatial_lengths(c, layer.input_shape)
    output_padding = c.output_padding or (None,) * len(lengths)
    triples = [
        shapes.transpose_pads(n, k, s, d, c.padding, op)
        for n, k, s, d, op in zip(
            lengths, c.kernel_size, c.strides, c.dilation_rate, output_padding, strict=True
        )
    ]
    pads = [t[0] for t in triples] + [t[1] for t in triples]
    attrs = _conv_attrs(c, pads, 1)
    if any(t[2] for t in triples):
        attrs["output_padding"] = [t[2] for t in triples]
    out = conv_forms.conv_transpose(
        em,
        x.name,
        onnx_kernel(weights["kernel"]),
        weights.get("bias"),
        attrs,
        lengths,
        _spatial_lengths(c, layer.output_shape),
    )
    return _finish(em, layer, out, x)


def _depthwise_kernel(kernel: np.ndarray) -> np.ndarray:
    """Keras (k.., in, m) -> ONNX grouped (in*m, 1, k..): output channel c*m + j."""
    *k, cin, m = kernel.shape
    return onnx_kernel(kernel.reshape(*k, 1, cin * m))


def lower_depthwise(em: Emitter, layer: Node, x: Value, weights: Weights) -> Value:
    c = expect(layer.spec, ConvSpec)
    x = em.in_layout(x, _conv_layout(c, x.rank))
    kernel = weights["kernel"]
    inputs = [x.name, em.weight("kernel", _depthwise_kernel(kernel))]
    if "bias" in weights:
        inputs.append(em.weight("bias", weights["bias"]))
    attrs = _conv_attrs(c, _forward_pads(layer), kernel.shape[-2])
    out = em.op("Conv", inputs, "depthwise_conv", **attrs)
    return _finish(em, layer, out, x)


def lower_separable(em: Emitter, layer: Node, x: Value, weights: Weights) -> Value:
    c = expect(layer.spec, ConvSpec)
    x = em.in_layout(x, _conv_layout(c, x.rank))
    depthwise = weights["depthwise_kernel"]
    attrs = _conv_attrs(c, _forward_pads(layer), depthwise.shape[-2])
    mid = em.op(
        "Conv",
        [x.name, em.weight("depthwise_kernel", _depthwise_kernel(depthwise))],
        "depthwise_conv",
        **attrs,
    )
    pointwise = weights["pointwise_kernel"]
    inputs = [mid, em.weight("pointwise_kernel", onnx_kernel(pointwise))]
    if "bias" in weights:
        inputs.append(em.weight("bias", weights["bias"]))
    ones = [1] * c.rank
    out = em.op(
        "Conv",
        inputs,
        "pointwise_conv",
        kernel_shape=ones,
        strides=ones,
        dilations=ones,
        pads=[0] * (2 * c.rank),
        group=1,
    )
    return _finish(em, layer, out, x)


def _spatial_physical_axes(spec: SpatialSpec, x: Value) -> list[int]:
    return [x.perm.index(a) for a in spatial_axes(spec.rank, spec.data_format)]


def lower_cropping(em: Emitter, layer: Node, x: Value, weights: Weights) -> Value:
    c = expect(layer.spec, CroppingSpec)
    axes, starts, ends = [], [], []
    logical = spatial_axes(c.rank, c.data_format)
    for physical, axis, (begin, end) in zip(
        _spatial_physical_axes(c, x), logical, c.cropping, strict=True
    ):
        if begin or end:
            axes.append(physical)
            starts.append(begin)
            ends.append(layer.input_shape[axis] - end)
    if not axes:
        return Value(x.name, x.perm, layer.output_shape)
    return Value(em.slice(x.name, starts, ends, axes, "crop"), x.perm, layer.output_shape)


def lower_zero_padding(em: Emitter, layer: Node, x: Value, weights: Weights) -> Value:
    # Keras's negative ZeroPadding2D/3D crops: that part becomes a Slice, which every runtime
    # takes (ONNX allows negative Pad amounts, but not every implementation does).
    c = expect(layer.spec, ZeroPaddingSpec)
    begins, ends = [0] * x.rank, [0] * x.rank
    axes, starts, stops = [], [], []
    logical = spatial_axes(c.rank, c.data_format)
    for physical, axis, (begin, end) in zip(
        _spatial_physical_axes(c, x), logical, c.padding, strict=True
    ):
        begins[physical], ends[physical] = max(begin, 0), max(end, 0)
        if begin < 0 or end < 0:
            axes.append(physical)
            starts.append(max(-begin, 0))
            stops.append(layer.input_shape[axis] - max(-end, 0))
    name = x.name
    if axes:
        name = em.slice(name, starts, stops, axes, "crop")
    if any(begins) or any(ends):
        name = em.pad(name, begins + ends)
    return Value(name, x.perm, layer.output_shape)


def lower_up_sampling(em: Emitter, layer: Node, x: Value, weights: Weights) -> Value:
    c = expect(layer.spec, UpSamplingSpec)
    logical = spatial_axes(c.rank, c.data_format)
    if all(factor == 1 for factor in c.size):
        return Value(x.name, x.perm, layer.output_shape)
    # Along an axis of length 1 every interpolated sample is that one value: a repeat.
    interpolates = c.interpolation != "nearest" and any(
        factor > 1 and layer.input_shape[axis] > 1
        for axis, factor in zip(logical, c.size, strict=True)
    )
    if interpolates:
        x = em.in_layout(x, _interpolation_layout(em, c, x))
    spatial = _spatial_physical_axes(c, x)
    factors = [1] * x.rank
    for physical, factor in zip(spatial, c.size, strict=True):
        factors[physical] = factor
    if not interpolates:
        return Value(_nearest(em, x, factors), x.perm, layer.output_shape)
    out = _interpolate(em, x, spatial, factors, c.interpolation)
    return Value(out, x.perm, layer.output_shape)


def _interpolate(
    em: Emitter, x: Value, spatial: list[int], factors: list[int], interpolation: str
) -> str:
    """A bilinear or bicubic Resize. OpenCV's reads out of bounds along an axis of length 1, so
    such an axis is repeated before the Resize instead (exact: every sample along it is its one
    value), and one that is not scaled is doubled and sliced back after it."""
    physical = [x.shape[axis] for axis in x.perm]
    units = [axis for axis in spatial if physical[axis] == 1]
    repeats = [max(factors[axis], 2) if axis in units else 1 for axis in range(x.rank)]
    scales = [1.0 if axis in units else float(factors[axis]) for axis in range(x.rank)]
    out = _repeat(em, x.name, physical, repeats) if units else x.name
    attrs = dict(KERAS_INTERPOLATIONS[interpolation])
    out = em.resize(out, scales, attrs.pop("mode"), "upsample", **attrs)
    doubled = [axis for axis in units if factors[axis] == 1]
    if doubled:
        out = em.slice(out, [0] * len(doubled), [1] * len(doubled), doubled, "unrepeat")
    return out


def _interpolation_layout(em: Emitter, spec: UpSamplingSpec, x: Value) -> tuple[int, ...]:
    """The order in which a bilinear or bicubic Resize gets its input. onnxruntime's linear
    Resize scales the inner or the middle axes, its cubic one only the inner ones; a mixed-format
    chain can leave the spatial axes elsewhere. Some targets take only the inner ones."""
    positions = sorted(_spatial_physical_axes(spec, x))
    inner = list(range(2, x.rank))
    if positions == inner:
        return x.perm
    if spec.interpolation == "bilinear" and positions == list(range(1, x.rank - 1)):
        if not em.target.resize_inner_axes_only:
            return x.perm
        em.workaround("Resize in channels-first order (a Resize of middle axes is mishandled)")
    return _conv_layout(spec, x.rank)


def _nearest(em: Emitter, x: Value, factors: list[int]) -> str:
    """Keras's nearest upsampling repeats each entry ``factor`` times along an axis. Where the
    innermost axis is not scaled (channels last), one Reshape-Concat-Reshape repeats every
    scaled axis: onnxruntime runs it 3 to 25 times faster than Resize. Otherwise a Resize scales
    the two innermost axes (asymmetric coordinates with floor rounding are exactly a repeat), on
    a 4-D view of the tensor where the target needs one, and a repeat takes the axes before."""
    physical = [x.shape[axis] for axis in x.perm]
    if factors[-1] == 1:
        return _repeat(em, x.name, physical, factors)
    inner = [1.0] * (x.rank - 2) + [float(f) for f in factors[-2:]]
    if x.rank in em.target.resize_ranks:
        resized = _nearest_resize(em, x.name, inner)
    else:
        if x.rank == 3:
            em.workaround("1-D Resize on a 4-D view (Resize is taken only on 4-D tensors)")
        view = [0, int(np.prod(physical[1:-2])), *physical[-2:]]
        resized = _nearest_resize(em, em.reshape(x.name, view, "view"), [1.0, 1.0, *inner[-2:]])
    scaled = [*physical[:-2], *(n * f for n, f in zip(physical[-2:], factors[-2:], strict=True))]
    if x.rank not in em.target.resize_ranks:
        resized = em.reshape(resized, [0, *scaled[1:]], "unview")
    rest = [*factors[:-2], 1, 1]
    if any(f > 1 for f in rest):
        return _repeat(em, resized, scaled, rest)
    return resized


def _nearest_resize(em: Emitter, x: str, scales: list[float]) -> str:
    return em.resize(
        x,
        scales,
        "nearest",
        "upsample",
        coordinate_transformation_mode="asymmetric",
        nearest_mode="floor",
    )


def _repeat(em: Emitter, x: str, physical: list, factors: list[int]) -> str:
    """Repeat entries along the axes with a factor above 1: a Reshape gives each such axis a
    unit axis after it, a Concat of ``factor`` copies fills that axis, a Reshape merges the
    pairs. Runs of unscaled axes are merged so that the copies are long rows. (An Expand in
    place of the Concat is slower in onnxruntime and breaks tract's optimizer before a Conv.)"""
    if all(length == 1 for length, f in zip(physical, factors, strict=True) if f > 1):
        for axis, factor in enumerate(factors):  # axes of length 1: only the copies
            if factor > 1:
                x = em.op("Concat", [x] * factor, "upsample", axis=axis)
        return x
    view, copies = [0], []  # 0: Reshape copies the batch, which is symbolic
    run = 1
    for length, factor in zip(physical[1:], factors[1:], strict=True):
        if factor == 1:
            run *= length
            continue
        if run != 1:
            view.append(run)
        run = 1
        view += [length, 1]
        copies.append((len(view) - 1, factor))
    if run != 1:
        view.append(run)
    repeated = em.reshape(x, view, "view")
    for axis, factor in copies:
        repeated = em.op("Concat", [repeated] * factor, "repeat", axis=axis)
    out = [0, *(n * f for n, f in zip(physical[1:], factors[1:], strict=True))]
    return em.reshape(repeated, out, "upsample")


# ---------------------------------------------------------------------------------------------
# Merges and activation layers


def _common_layout(em: Emitter, xs: list[Value]) -> list[Value]:
    """The inputs of a merge in one rank and one physical order. A lower-rank input gains unit
    axes after the batch axis (Keras aligns the other axes from the right). The order is the one
    that transposes the fewest elements, so a channels_last graph merges channels-first values
    without a Transpose; ties keep the first input's order."""
    rank = max(x.rank for x in xs)
    aligned = []
    for x in xs:
        if x.rank < rank:
            x = em.in_layout(x, identity(x.rank))
            added = list(range(1, rank - x.rank + 1))
            name = em.op("Unsqueeze", [x.name, em.constant(added)], "align")
            shape = (x.shape[0], *([1] * len(added)), *x.shape[1:])
            x = Value(name, identity(rank), shape)
        aligned.append(x)

    def size(x: Value) -> int:
        return int(np.prod([d or 1 for d in x.shape]))

    candidates = list(dict.fromkeys(x.perm for x in aligned))
    best = min(candidates, key=lambda perm: sum(size(x) for x in aligned if x.perm != perm))
    return [em.in_layout(x, best) for x in aligned]


_MERGE_OPS = {"add": "Sum", "maximum": "Max", "minimum": "Min", "multiply": "Mul"}


def lower_merge(em: Emitter, layer: Node, xs: list[Value], weights: Weights) -> Value:
    xs = _common_layout(em, xs)
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


def lower_concatenate(em: Emitter, layer: Node, xs: list[Value], weights: Weights) -> Value:
    xs = _common_layout(em, xs)
    if len(xs) == 1:
        return Value(xs[0].name, xs[0].perm, layer.output_shape)
    axis = xs[0].physical_axis(expect(layer.spec, ConcatenateSpec).axis)
    out = em.op("Concat", [x.name for x in xs], "concat", axis=axis)
    return Value(out, xs[0].perm, layer.output_shape)


def lower_activation(em: Emitter, layer: Node, x: Value, weights: Weights) -> Value:
    out = emit_activation(em, expect(layer.spec, ActivationSpec).activation, x)
    return Value(out.name, out.perm, layer.output_shape)


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


RULES: dict[str, Rule] = {
    "merge": lower_merge,
    "concatenate": lower_concatenate,
    "activation": lower_activation,
    "relu": lower_relu,
    "conv": lower_conv,
    "conv_transpose": lower_conv_transpose,
    "depthwise": lower_depthwise,
    "separable": lower_separable,
    "cropping": lower_cropping,
    "zero_padding": lower_zero_padding,
    "up_sampling": lower_up_sampling,
    "batch_normalization": lower_batch_normalization,
    "layer_normalization": lower_layer_normalization,
    "group_normalization": lower_group_normalization,
    "unit_normalization": lower_unit_normalization,
    "pooling": lower_pooling,
    "global_pooling": lower_global_pooling,
    **CORE_RULES,
    **APPLICATION_RULES,
}

"""Lowering of the core layers, the activation layers with arguments, the inference no-ops and
the preprocessing layers.

The layout tracker does most of the work. Layers that act elementwise or along named axes
(LeakyReLU, ELU, PReLU, Softmax, Rescaling, Normalization, the no-ops) run in whatever physical
order their input has, mapping Keras axes and constants through the permutation. ``Permute``
emits nothing at all: it relabels which Keras axis each physical axis holds. ``Dense`` needs
Keras's last axis physically last (a MatMul), or physically second (then it is a 1x1 Conv, and a
channels_last net that was transposed for its convolutions needs no Transpose back); ``Flatten``
and ``Reshape`` need Keras's own element order, and a Transpose is emitted only when the
non-unit axes are held in another order.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from convc.geometry import (
    EPSILON,
    aspect_crop,
    aspect_pad,
    center_crop_slices,
    rescaling_scale_shape,
    source_size,
)
from convc.lower.activations import emit_activation, last_physically
from convc.lower.emitter import KERAS_INTERPOLATIONS, Emitter, Value, identity, known
from convc.lower.layout import to_physical
from convc.lower.registry import Weights, lowers
from convc.lower.resampling import only_by_matrices, resize_by_matrices
from convc.model import Node
from convc.specs import (
    DenseSpec,
    ELUSpec,
    FlattenSpec,
    LeakyReLUSpec,
    NormalizationSpec,
    PassThroughSpec,
    PermuteSpec,
    PReLUSpec,
    RescalingSpec,
    ReshapeSpec,
    ResizingSpec,
    SoftmaxSpec,
    expect,
)


def _same_order(x: Value, order: tuple[int, ...]) -> bool:
    """Whether ``x``'s elements are already in the row-major order of logical order ``order``:
    axes of length 1 do not move any data, whatever their place."""

    def moving(axes: tuple[int, ...]) -> list[int]:
        return [a for a in axes if x.shape[a] != 1]

    return moving(x.perm) == moving(order)


# -- Dense ------------------------------------------------------------------------------------


@lowers(DenseSpec)
def lower_dense(em: Emitter, layer: Node, x: Value, weights: Weights) -> Value:
    c = expect(layer.spec, DenseSpec)
    kernel, bias = weights["kernel"], weights.get("bias")
    last = x.rank - 1
    shape = (*layer.input_shape[:-1], c.units)
    if x.rank > 2 and x.perm[1] == last and x.perm[-1] != last and x.rank <= 5:
        # Keras's last axis is held where ONNX convolutions keep channels: a 1x1 Conv.
        ones = [1] * (x.rank - 2)
        inputs = [x.name, em.weight("kernel", kernel.T.reshape(c.units, -1, *ones))]
        if bias is not None:
            inputs.append(em.weight("bias", bias))
        out = em.conv(
            inputs,
            "dense",
            kernel_shape=ones,
            strides=ones,
            dilations=ones,
            pads=[0] * (2 * len(ones)),
            group=1,
        )
    else:
        if x.perm[-1] != last:
            x = em.in_layout(x, (*(a for a in x.perm if a != last), last))
        if x.rank == 2:
            inputs = [x.name, em.weight("kernel", kernel)]
            if bias is not None:
                inputs.append(em.weight("bias", bias))
            out = em.op("Gemm", inputs, "dense")
        else:
            out = em.op("MatMul", [x.name, em.weight("kernel", kernel)], "matmul")
            if bias is not None:
                out = em.op("Add", [out, em.weight("bias", bias)], "dense")
    result = emit_activation(em, c.activation, Value(out, x.perm, shape))
    return Value(result.name, result.perm, layer.output_shape)


# -- Flatten, Reshape, Permute, no-ops --------------------------------------------------------


@lowers(FlattenSpec)
def lower_flatten(em: Emitter, layer: Node, x: Value, weights: Weights) -> Value:
    """Keras's element order: a channels_last tensor's own (height, width, channels), and for
    data_format='channels_first' the channels moved last first. A value held in another order
    is transposed to it (the one Transpose a channels_last classifier owes after its
    convolutions), unless only unit axes are out of place."""
    c = expect(layer.spec, FlattenSpec)
    if x.rank == 2:
        return Value(x.name, x.perm, layer.output_shape)
    order = identity(x.rank)
    if c.data_format == "channels_first":
        order = (0, *range(2, x.rank), 1)
    if not _same_order(x, order):
        x = em.in_layout(x, order)
    out = em.reshape(x.name, [0, known(layer.output_shape[1])], "flatten")
    return Value(out, (0, 1), layer.output_shape)


@lowers(ReshapeSpec)
def lower_reshape(em: Emitter, layer: Node, x: Value, weights: Weights) -> Value:
    if layer.output_shape == layer.input_shape:  # the same shape: nothing moves
        return Value(x.name, x.perm, layer.output_shape)
    order = identity(x.rank)
    if not _same_order(x, order):
        x = em.in_layout(x, order)
    shape = layer.output_shape
    perm = identity(len(shape))
    if len(shape) >= 3 and all(d == 1 for d in shape[1:-1]):
        # (N, 1, ..., 1, C), as a squeeze-and-excitation block makes for its 1x1 convolutions:
        # unit axes move no data, so it is as cheap channels-first, where those convs want it.
        perm = (0, len(shape) - 1, *range(1, len(shape) - 1))
    target = [0, *(known(shape[a]) for a in perm[1:])]
    out = em.reshape(x.name, target, "reshape")
    return Value(out, perm, shape)


@lowers(PermuteSpec)
def lower_permute(em: Emitter, layer: Node, x: Value, weights: Weights) -> Value:
    """No node: output axis j is input axis (0, *dims)[j], so the physical axis that holds
    input axis a now holds output axis sources.index(a)."""
    sources = (0, *expect(layer.spec, PermuteSpec).dims)
    return Value(x.name, tuple(sources.index(a) for a in x.perm), layer.output_shape)


@lowers(PassThroughSpec, any_layout=True)
def lower_pass_through(em: Emitter, layer: Node, x: Value, weights: Weights) -> Value:
    return Value(x.name, x.perm, layer.output_shape)


# -- activation layers ------------------------------------------------------------------------


@lowers(LeakyReLUSpec, any_layout=True)
def lower_leaky_relu(em: Emitter, layer: Node, x: Value, weights: Weights) -> Value:
    slope = expect(layer.spec, LeakyReLUSpec).negative_slope
    return Value(em.op("LeakyRelu", [x.name], "leaky_relu", alpha=slope), x.perm, x.shape)


@lowers(ELUSpec, any_layout=True)
def lower_elu(em: Emitter, layer: Node, x: Value, weights: Weights) -> Value:
    alpha = expect(layer.spec, ELUSpec).alpha
    return Value(em.op("Elu", [x.name], "elu", alpha=alpha), x.perm, x.shape)


@lowers(PReLUSpec, any_layout=True)
def lower_prelu(em: Emitter, layer: Node, x: Value, weights: Weights) -> Value:
    """PRelu with ``alpha`` (the input's shape without batch, 1 on shared axes) in x's physical
    order: x where x >= 0, else alpha * x, which is Keras's relu(x) - alpha * relu(-x)."""
    alpha = to_physical(em, weights["alpha"], x)
    slope = em.weight("alpha", alpha)
    channels = x.physical_shape()[1] if x.rank > 1 else 0
    per_channel = alpha.shape == (channels, *(1,) * (x.rank - 2))
    if not em.target.prelu_any_slope and not per_channel:
        em.workaround(
            "PReLU as Where(x >= 0, x, alpha * x): a PRelu after a Conv must be per-channel"
        )
        scaled = em.op("Mul", [x.name, slope], "prelu_scaled")
        positive = em.op("GreaterOrEqual", [x.name, em.scalar(0.0)], "prelu_positive")
        return Value(em.op("Where", [positive, x.name, scaled], "prelu"), x.perm, x.shape)
    return Value(em.op("PRelu", [x.name, slope], "prelu"), x.perm, x.shape)


@lowers(SoftmaxSpec, any_layout=True)
def lower_softmax(em: Emitter, layer: Node, x: Value, weights: Weights) -> Value:
    """One axis: a Softmax. Several (Keras: exp(x - logsumexp(x, axes))): the axes are brought
    together physically (a Transpose only if they are apart), merged by a Reshape, normalized
    by one Softmax, and split again."""
    axes = [a % x.rank for a in expect(layer.spec, SoftmaxSpec).axis]
    if len(axes) == 1:
        x = last_physically(em, x, axes[0])
        out = em.op("Softmax", [x.name], "softmax", axis=x.physical_axis(axes[0]))
        return Value(out, x.perm, x.shape)
    positions = sorted(x.physical_axis(a) for a in axes)
    if positions != list(range(positions[0], positions[0] + len(positions))):
        kept = [a for a in x.perm if a not in axes]
        x = em.in_layout(x, (*kept, *sorted(axes, key=x.physical_axis)))
        positions = sorted(x.physical_axis(a) for a in axes)
    shape = x.physical_shape()
    first, end = positions[0], positions[-1] + 1
    merged = [*shape[:first], math.prod(shape[first:end]), *shape[end:]]
    flat = em.reshape(x.name, merged, "softmax_merge")
    normalized = em.op("Softmax", [flat], "softmax_flat", axis=first)
    return Value(em.reshape(normalized, shape, "softmax"), x.perm, x.shape)


# -- preprocessing ----------------------------------------------------------------------------


def _constant(value: tuple[tuple[int, ...], tuple[float, ...]], shape=None) -> np.ndarray:
    dims, values = value
    return np.asarray(values, dtype=np.float32).reshape(shape or dims)


@lowers(RescalingSpec, any_layout=True)
def lower_rescaling(em: Emitter, layer: Node, x: Value, weights: Weights) -> Value:
    c = expect(layer.spec, RescalingSpec)
    scale = _constant(c.scale, rescaling_scale_shape(c))
    offset = _constant(c.offset)
    out = x.name
    if not (scale == 1).all():
        out = em.op("Mul", [out, em.weight("scale", to_physical(em, scale, x))], "scale")
    if not (offset == 0).all():
        out = em.op("Add", [out, em.weight("offset", to_physical(em, offset, x))], "offset")
    return Value(out, x.perm, x.shape)


@lowers(NormalizationSpec, any_layout=True)
def lower_normalization(em: Emitter, layer: Node, x: Value, weights: Weights) -> Value:
    c = expect(layer.spec, NormalizationSpec)
    shape = layer.input_shape
    rank = len(shape)
    keep = sorted(a % rank for a in c.axis)
    broadcast = [known(shape[d]) if d in keep else 1 for d in range(rank)]
    if c.mean is None:
        mean = weights["mean"].reshape(broadcast)
        variance = weights["variance"].reshape(broadcast)
    else:
        assert c.variance is not None, "resolve requires mean and variance together"
        expanded = [1] * rank
        for i in range(1, len(c.mean[0]) + 1):
            expanded[keep[-i]] = c.mean[0][-i]
        mean = np.broadcast_to(_constant(c.mean, expanded), broadcast)
        variance = np.broadcast_to(_constant(c.variance, expanded), broadcast)
    deviation = np.maximum(np.sqrt(variance.astype(np.float32)), np.float32(EPSILON))
    mean_name = em.weight("mean", to_physical(em, np.asarray(mean, np.float32), x))
    deviation_name = em.weight("deviation", to_physical(em, deviation, x))
    if c.invert:
        scaled = em.op("Mul", [x.name, deviation_name], "scale")
        out = em.op("Add", [mean_name, scaled], "normalization")
    else:
        centred = em.op("Sub", [x.name, mean_name], "center")
        out = em.op("Div", [centred, deviation_name], "normalization")
    return Value(out, x.perm, x.shape)


_ANTIALIASED: dict[str, dict[str, Any]] = {
    # antialiased filters (JAX's, TensorFlow's and torch's): support widened by the downscale,
    # weights renormalized at the borders (exclude_outside), bicubic's the a = -0.5 kernel
    "bilinear": {
        "mode": "linear",
        "coordinate_transformation_mode": "half_pixel",
        "antialias": 1,
        "exclude_outside": 1,
    },
    "bicubic": {
        "mode": "cubic",
        "coordinate_transformation_mode": "half_pixel",
        "cubic_coeff_a": -0.5,
        "antialias": 1,
        "exclude_outside": 1,
    },
}


@lowers(ResizingSpec)
def lower_resizing(em: Emitter, layer: Node, x: Value, weights: Weights) -> Value:
    """Resizing and CenterCrop, on the images in channels-first order (the height and width
    physically last, where every runtime's Resize takes them): a crop (Slice) or a pad to the
    target's aspect ratio, then the resize itself."""
    c = expect(layer.spec, ResizingSpec)
    order = (0, 3, 1, 2) if c.data_format == "channels_last" else identity(4)
    x = em.in_layout(x, order)
    height, width = (known(x.shape[a]) for a in order[2:])
    out = x.name
    if center_crop_slices(c, height, width):
        starts = [(height - c.height) // 2, (width - c.width) // 2]
        sizes = ((height, c.height), (width, c.width))
        axes = [i for i, (n, m) in zip((2, 3), sizes, strict=True) if n != m]
        if axes:
            out = em.slice(
                out,
                [starts[a - 2] for a in axes],
                [starts[a - 2] + (c.height, c.width)[a - 2] for a in axes],
                axes,
                "crop",
            )
        return Value(out, x.perm, layer.output_shape)
    if c.crop_to_aspect_ratio:
        box = aspect_crop(c, height, width)
        axes = [a for a, (start, n) in zip((2, 3), box, strict=True) if n != (height, width)[a - 2]]
        if axes:
            out = em.slice(
                out,
                [box[a - 2][0] for a in axes],
                [box[a - 2][0] + box[a - 2][1] for a in axes],
                axes,
                "crop",
            )
    elif c.pad_to_aspect_ratio:
        rows, columns = aspect_pad(c, height, width)
        if rows or columns:
            pads = em.constant([0, 0, rows, columns, 0, 0, rows, columns])
            out = em.op("Pad", [out, pads, em.scalar(c.fill_value)], "pad", mode="constant")
    source = source_size(c, height, width)
    target = (c.height, c.width)
    if source != target:
        out = _resize(em, layer, out, source, target, c)
    return Value(out, x.perm, layer.output_shape)


def _resize(em: Emitter, layer: Node, x: str, source, target, c: ResizingSpec) -> str:
    if c.interpolation == "nearest":  # torch's nearest-exact: exact integer sources, gathered
        for axis, (n, m) in zip((2, 3), zip(source, target, strict=True), strict=True):
            if n != m:
                indices = np.minimum((2 * np.arange(m) + 1) * n // (2 * m), n - 1)
                x = em.op("Gather", [x, em.constant(indices)], "resize", axis=axis)
        return x
    if only_by_matrices(em, c.interpolation):  # an antialias widens only a shrinking axis
        return resize_by_matrices(em, x, source, target, c.interpolation, antialias=c.antialias)
    shrinks = any(m < n for n, m in zip(source, target, strict=True))
    # torch's antialiased bicubic is Keys's a = -0.5 even when enlarging; an antialias changes
    # nothing else that enlarges
    antialiased = c.antialias and (shrinks or c.interpolation == "bicubic_torch")
    if antialiased and em.opset >= 18 and not em.target.resize_antialias:
        em.workaround("antialiased resize by constant matrices (the target's differs)")
    elif antialiased and em.opset >= 18:
        attrs = dict(_ANTIALIASED[c.interpolation.removesuffix("_torch")])
        x = _tile_unit_axes(em, x, source, target)
        source = tuple(m if n == 1 else n for n, m in zip(source, target, strict=True))
        if source == target:
            return x
        return em.resize(x, _scales(source, target), attrs.pop("mode"), "resize", **attrs)
    if antialiased or (shrinks and c.interpolation in ("bicubic", "bicubic_torch")):
        # Below opset 18 (or where the target's antialias differs), and for a shrinking
        # bicubic resize (onnxruntime's layout optimizer moves a Resize between two
        # Transposes into NHWC order, where its cubic kernel refuses to shrink and the model
        # fails to load): constant matrices.
        return resize_by_matrices(em, x, source, target, c.interpolation, antialias=antialiased)
    x = _tile_unit_axes(em, x, source, target)
    source = tuple(m if n == 1 else n for n, m in zip(source, target, strict=True))
    if source == target:
        return x
    attrs = dict(KERAS_INTERPOLATIONS[c.interpolation])
    return em.resize(x, _scales(source, target), attrs.pop("mode"), "resize", **attrs)


def _tile_unit_axes(em: Emitter, x: str, source, target) -> str:
    """Along an axis of length 1 every interpolated sample is its one value: copies by Concat
    (OpenCV's Resize reads out of bounds along such an axis; tract's optimizer fails on an
    Expand before a convolution)."""
    for axis, (n, m) in zip((2, 3), zip(source, target, strict=True), strict=True):
        if n == 1 and m > 1:
            x = em.op("Concat", [x] * m, "tile", axis=axis)
    return x


def _scales(source, target) -> list[float]:
    return [1.0, 1.0] + [_scale(n, m) for n, m in zip(source, target, strict=True)]


def _scale(n: int, m: int) -> float:
    """The smallest float32 at least m / n: every runtime's floor(n * scale) is then m."""
    scale = np.float32(m / n)
    while float(scale) * n < m:
        scale = np.nextafter(scale, np.float32(np.inf))
    return float(scale)

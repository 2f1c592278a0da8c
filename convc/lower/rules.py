"""One lowering rule per layer family: a resolved layer in, ONNX nodes out.

A rule receives the emitter, the layer (Keras arguments and shapes), its input value and its
weights in Keras layouts, and returns its output value. Convolutions ask for channels-first
order; Pad, Slice and Resize work in whatever order the value already has, mapping their axes
through the layout. Pads are explicit numbers from ``convc.layers.shapes``: never ``auto_pad``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from convc.layers import shapes
from convc.layers.base import spatial_axes
from convc.lower import conv_forms
from convc.lower.activations import emit_activation
from convc.lower.emitter import Emitter, Value, channels_first, identity
from convc.model import Layer

Weights = dict[str, np.ndarray]
Rule = Callable[[Emitter, Layer, Value, Weights], Value]


def onnx_kernel(kernel: np.ndarray) -> np.ndarray:
    """Keras (k1..kr, in, out) -> ONNX (out, in, k1..kr); for ConvTranspose Keras's
    (k.., out, in) becomes ONNX's (in, out, k..) by the same permutation."""
    r = kernel.ndim - 2
    return kernel.transpose(r + 1, r, *range(r))


def _conv_layout(layer: Layer, rank: int) -> tuple[int, ...]:
    return (
        channels_first(rank) if layer.config["data_format"] == "channels_last" else identity(rank)
    )


def _spatial_lengths(layer: Layer, shape: tuple) -> list[int]:
    return [shape[a] for a in spatial_axes(layer.type.rank, layer.config["data_format"])]


def _forward_pads(layer: Layer) -> list[int]:
    c = layer.config
    lengths = _spatial_lengths(layer, layer.input_shape)
    pairs = [
        shapes.conv_pads(n, k, s, d, c["padding"])
        for n, k, s, d in zip(
            lengths, c["kernel_size"], c["strides"], c["dilation_rate"], strict=True
        )
    ]
    return [b for b, _ in pairs] + [e for _, e in pairs]


def _conv_attrs(layer: Layer, pads: list[int], group: int) -> dict:
    c = layer.config
    return {
        "kernel_shape": list(c["kernel_size"]),
        "strides": list(c["strides"]),
        "dilations": list(c["dilation_rate"]),
        "pads": pads,
        "group": group,
    }


def _finish(em: Emitter, layer: Layer, out: str, x: Value) -> Value:
    """Wrap a channels-first result as a Value and apply the layer's activation."""
    value = Value(out, x.perm, _pre_activation_shape(layer))
    return emit_activation(em, layer.config["activation"], value)


def _pre_activation_shape(layer: Layer) -> tuple:
    shape = list(layer.output_shape)
    if layer.config["activation"] == "glu":
        shape[-1] *= 2
    return tuple(shape)


def lower_conv(em: Emitter, layer: Layer, x: Value, weights: Weights) -> Value:
    x = em.in_layout(x, _conv_layout(layer, x.rank))
    out = conv_forms.conv(
        em,
        x.name,
        onnx_kernel(weights["kernel"]),
        weights.get("bias"),
        _conv_attrs(layer, _forward_pads(layer), layer.config["groups"]),
    )
    return _finish(em, layer, out, x)


def lower_conv_transpose(em: Emitter, layer: Layer, x: Value, weights: Weights) -> Value:
    c = layer.config
    x = em.in_layout(x, _conv_layout(layer, x.rank))
    lengths = _spatial_lengths(layer, layer.input_shape)
    output_padding = c["output_padding"] or (None,) * len(lengths)
    triples = [
        shapes.transpose_pads(n, k, s, d, c["padding"], op)
        for n, k, s, d, op in zip(
            lengths, c["kernel_size"], c["strides"], c["dilation_rate"], output_padding, strict=True
        )
    ]
    pads = [t[0] for t in triples] + [t[1] for t in triples]
    attrs = _conv_attrs(layer, pads, 1)
    if any(t[2] for t in triples):
        attrs["output_padding"] = [t[2] for t in triples]
    out = conv_forms.conv_transpose(
        em,
        x.name,
        onnx_kernel(weights["kernel"]),
        weights.get("bias"),
        attrs,
        lengths,
        _spatial_lengths(layer, layer.output_shape),
    )
    return _finish(em, layer, out, x)


def _depthwise_kernel(kernel: np.ndarray) -> np.ndarray:
    """Keras (k.., in, m) -> ONNX grouped (in*m, 1, k..): output channel c*m + j."""
    *k, cin, m = kernel.shape
    return onnx_kernel(kernel.reshape(*k, 1, cin * m))


def lower_depthwise(em: Emitter, layer: Layer, x: Value, weights: Weights) -> Value:
    x = em.in_layout(x, _conv_layout(layer, x.rank))
    kernel = weights["kernel"]
    inputs = [x.name, em.weight("kernel", _depthwise_kernel(kernel))]
    if "bias" in weights:
        inputs.append(em.weight("bias", weights["bias"]))
    attrs = _conv_attrs(layer, _forward_pads(layer), kernel.shape[-2])
    out = em.op("Conv", inputs, "depthwise_conv", **attrs)
    return _finish(em, layer, out, x)


def lower_separable(em: Emitter, layer: Layer, x: Value, weights: Weights) -> Value:
    x = em.in_layout(x, _conv_layout(layer, x.rank))
    depthwise = weights["depthwise_kernel"]
    attrs = _conv_attrs(layer, _forward_pads(layer), depthwise.shape[-2])
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
    ones = [1] * layer.type.rank
    out = em.op(
        "Conv",
        inputs,
        "pointwise_conv",
        kernel_shape=ones,
        strides=ones,
        dilations=ones,
        pads=[0] * (2 * layer.type.rank),
        group=1,
    )
    return _finish(em, layer, out, x)


def _spatial_physical_axes(layer: Layer, x: Value) -> list[int]:
    return [x.perm.index(a) for a in spatial_axes(layer.type.rank, layer.config["data_format"])]


def lower_cropping(em: Emitter, layer: Layer, x: Value, weights: Weights) -> Value:
    axes, starts, ends = [], [], []
    logical = spatial_axes(layer.type.rank, layer.config["data_format"])
    for physical, axis, (begin, end) in zip(
        _spatial_physical_axes(layer, x), logical, layer.config["cropping"], strict=True
    ):
        if begin or end:
            axes.append(physical)
            starts.append(begin)
            ends.append(layer.input_shape[axis] - end)
    if not axes:
        return Value(x.name, x.perm, layer.output_shape)
    return Value(em.slice(x.name, starts, ends, axes, "crop"), x.perm, layer.output_shape)


def lower_zero_padding(em: Emitter, layer: Layer, x: Value, weights: Weights) -> Value:
    # Keras's negative ZeroPadding2D/3D crops: that part becomes a Slice, which every runtime
    # takes (ONNX allows negative Pad amounts, but not every implementation does).
    begins, ends = [0] * x.rank, [0] * x.rank
    axes, starts, stops = [], [], []
    logical = spatial_axes(layer.type.rank, layer.config["data_format"])
    for physical, axis, (begin, end) in zip(
        _spatial_physical_axes(layer, x), logical, layer.config["padding"], strict=True
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


def lower_up_sampling(em: Emitter, layer: Layer, x: Value, weights: Weights) -> Value:
    c = layer.config
    logical = spatial_axes(layer.type.rank, c["data_format"])
    if all(factor == 1 for factor in c["size"]):
        return Value(x.name, x.perm, layer.output_shape)
    # Along an axis of length 1 every interpolated sample is that one value: a repeat.
    interpolates = c["interpolation"] != "nearest" and any(
        factor > 1 and layer.input_shape[axis] > 1
        for axis, factor in zip(logical, c["size"], strict=True)
    )
    if interpolates:
        x = em.in_layout(x, _interpolation_layout(em, layer, x))
    spatial = _spatial_physical_axes(layer, x)
    factors = [1] * x.rank
    for physical, factor in zip(spatial, c["size"], strict=True):
        factors[physical] = factor
    if not interpolates:
        return Value(_nearest(em, x, factors), x.perm, layer.output_shape)
    out = _interpolate(em, x, spatial, factors, c["interpolation"])
    return Value(out, x.perm, layer.output_shape)


_INTERPOLATIONS = {
    "bilinear": {"mode": "linear", "coordinate_transformation_mode": "half_pixel"},
    # bicubic as Keras's torch backend computes it
    "bicubic": {
        "mode": "cubic",
        "coordinate_transformation_mode": "half_pixel",
        "cubic_coeff_a": -0.75,
        "exclude_outside": 0,
    },
}


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
    attrs = dict(_INTERPOLATIONS[interpolation])
    out = em.resize(out, scales, attrs.pop("mode"), "upsample", **attrs)
    doubled = [axis for axis in units if factors[axis] == 1]
    if doubled:
        out = em.slice(out, [0] * len(doubled), [1] * len(doubled), doubled, "unrepeat")
    return out


def _interpolation_layout(em: Emitter, layer: Layer, x: Value) -> tuple[int, ...]:
    """The order in which a bilinear or bicubic Resize gets its input. onnxruntime's linear
    Resize scales the inner or the middle axes, its cubic one only the inner ones; a mixed-format
    chain can leave the spatial axes elsewhere. Some targets take only the inner ones."""
    positions = sorted(_spatial_physical_axes(layer, x))
    inner = list(range(2, x.rank))
    if positions == inner:
        return x.perm
    if layer.config["interpolation"] == "bilinear" and positions == list(range(1, x.rank - 1)):
        if not em.target.resize_inner_axes_only:
            return x.perm
        em.workaround("Resize in channels-first order (a Resize of middle axes is mishandled)")
    return _conv_layout(layer, x.rank)


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


RULES: dict[str, Rule] = {
    "conv": lower_conv,
    "conv_transpose": lower_conv_transpose,
    "depthwise": lower_depthwise,
    "separable": lower_separable,
    "cropping": lower_cropping,
    "zero_padding": lower_zero_padding,
    "up_sampling": lower_up_sampling,
}

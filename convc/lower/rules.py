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


def _forward_pads(layer: Layer) -> list[int]:
    c = layer.config
    lengths = [layer.input_shape[a] for a in spatial_axes(layer.type.rank, c["data_format"])]
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
    inputs = [x.name, em.weight("kernel", onnx_kernel(weights["kernel"]))]
    if "bias" in weights:
        inputs.append(em.weight("bias", weights["bias"]))
    out = em.op(
        "Conv", inputs, "conv", **_conv_attrs(layer, _forward_pads(layer), layer.config["groups"])
    )
    return _finish(em, layer, out, x)


def lower_conv_transpose(em: Emitter, layer: Layer, x: Value, weights: Weights) -> Value:
    c = layer.config
    x = em.in_layout(x, _conv_layout(layer, x.rank))
    lengths = [layer.input_shape[a] for a in spatial_axes(layer.type.rank, c["data_format"])]
    output_padding = c["output_padding"] or (None,) * len(lengths)
    triples = [
        shapes.transpose_pads(n, k, s, d, c["padding"], op)
        for n, k, s, d, op in zip(
            lengths, c["kernel_size"], c["strides"], c["dilation_rate"], output_padding, strict=True
        )
    ]
    pads = [t[0] for t in triples] + [t[1] for t in triples]
    inputs = [x.name, em.weight("kernel", onnx_kernel(weights["kernel"]))]
    if "bias" in weights:
        inputs.append(em.weight("bias", weights["bias"]))
    attrs = _conv_attrs(layer, pads, 1)
    if any(t[2] for t in triples):
        attrs["output_padding"] = [t[2] for t in triples]
    out = em.op("ConvTranspose", inputs, "conv_transpose", **attrs)
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
    if c["interpolation"] != "nearest":
        # onnxruntime's linear Resize scales only the inner or the middle axes, its cubic one
        # only the inner ones; a mixed-format chain can leave the spatial axes elsewhere.
        positions = sorted(_spatial_physical_axes(layer, x))
        allowed = [list(range(2, x.rank))]
        if c["interpolation"] == "bilinear":
            allowed.append(list(range(1, x.rank - 1)))
        if positions not in allowed:
            x = em.in_layout(x, _conv_layout(layer, x.rank))
    scales = [1.0] * x.rank
    for physical, factor in zip(_spatial_physical_axes(layer, x), c["size"], strict=True):
        scales[physical] = float(factor)
    if all(s == 1.0 for s in scales):
        return Value(x.name, x.perm, layer.output_shape)
    interpolation = c["interpolation"]
    if interpolation == "nearest":
        # Keras repeats each entry (out[i] = in[floor(i / s)]): asymmetric + floor is exact.
        out = em.resize(
            x.name,
            scales,
            "nearest",
            "upsample",
            coordinate_transformation_mode="asymmetric",
            nearest_mode="floor",
        )
    elif interpolation == "bilinear":
        out = em.resize(
            x.name, scales, "linear", "upsample", coordinate_transformation_mode="half_pixel"
        )
    else:  # bicubic, as Keras's torch backend computes it
        out = em.resize(
            x.name,
            scales,
            "cubic",
            "upsample",
            coordinate_transformation_mode="half_pixel",
            cubic_coeff_a=-0.75,
            exclude_outside=0,
        )
    return Value(out, x.perm, layer.output_shape)


RULES: dict[str, Rule] = {
    "conv": lower_conv,
    "conv_transpose": lower_conv_transpose,
    "depthwise": lower_depthwise,
    "separable": lower_separable,
    "cropping": lower_cropping,
    "zero_padding": lower_zero_padding,
    "up_sampling": lower_up_sampling,
}

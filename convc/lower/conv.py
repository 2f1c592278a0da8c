"""Lowering of the convolution family (``convc.layers.conv``): Conv, ConvTranspose,
DepthwiseConv and SeparableConv, in channels-first order, with explicit pads from
``convc.geometry`` (never ``auto_pad``); ``convc.lower.conv_forms`` picks the faster exact forms."""

from __future__ import annotations

import numpy as np

from convc import geometry
from convc.geometry import spatial_axes
from convc.lower import conv_forms
from convc.lower.activations import emit_activation
from convc.lower.emitter import Emitter, Value, known
from convc.lower.layout import channels_first_layout
from convc.lower.registry import Weights, lowers
from convc.model import Node, Shape
from convc.specs import (
    ConvSpec,
    expect,
)


def onnx_kernel(kernel: np.ndarray) -> np.ndarray:
    """Keras (k1..kr, in, out) -> ONNX (out, in, k1..kr); for ConvTranspose Keras's
    (k.., out, in) becomes ONNX's (in, out, k..) by the same permutation."""
    r = kernel.ndim - 2
    return kernel.transpose(r + 1, r, *range(r))


def _spatial_lengths(spec: ConvSpec, shape: Shape) -> list[int]:
    return [known(shape[a]) for a in spatial_axes(spec.rank, spec.data_format)]


def _forward_pads(layer: Node) -> list[int]:
    c = expect(layer.spec, ConvSpec)
    lengths = _spatial_lengths(c, layer.input_shape)
    pairs = [
        geometry.conv_pads(n, k, s, d, c.padding)
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


def _pre_activation_shape(layer: Node) -> Shape:
    shape = list(layer.output_shape)
    if expect(layer.spec, ConvSpec).activation == "glu":
        shape[-1] = known(shape[-1]) * 2
    return tuple(shape)


def lower_conv(em: Emitter, layer: Node, x: Value, weights: Weights) -> Value:
    c = expect(layer.spec, ConvSpec)
    x = em.in_layout(x, channels_first_layout(c, x.rank))
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
    x = em.in_layout(x, channels_first_layout(c, x.rank))
    lengths = _spatial_lengths(c, layer.input_shape)
    output_padding = c.output_padding or (None,) * len(lengths)
    triples = [
        geometry.transpose_pads(n, k, s, d, c.padding, op)
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
    x = em.in_layout(x, channels_first_layout(c, x.rank))
    kernel = weights["kernel"]
    inputs = [x.name, em.weight("kernel", _depthwise_kernel(kernel))]
    if "bias" in weights:
        inputs.append(em.weight("bias", weights["bias"]))
    attrs = _conv_attrs(c, _forward_pads(layer), kernel.shape[-2])
    out = em.op("Conv", inputs, "depthwise_conv", **attrs)
    return _finish(em, layer, out, x)


def lower_separable(em: Emitter, layer: Node, x: Value, weights: Weights) -> Value:
    c = expect(layer.spec, ConvSpec)
    x = em.in_layout(x, channels_first_layout(c, x.rank))
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


_KINDS = {
    "conv": lower_conv,
    "transpose": lower_conv_transpose,
    "depthwise": lower_depthwise,
    "separable": lower_separable,
}


@lowers(ConvSpec)
def lower_convolution(em: Emitter, layer: Node, x: Value, weights: Weights) -> Value:
    return _KINDS[expect(layer.spec, ConvSpec).kind](em, layer, x, weights)

"""Lowering of the pooling layers.

MaxPooling and AveragePooling become one MaxPool or AveragePool in channels-first order (like
a convolution), with explicit pads from ``convc.geometry``, never ``auto_pad``. A 'same' max
ignores the pads (MaxPool ``pads``). A 'same' average is the mean of each window's entries
inside the input, as TensorFlow computes it (and so Keras 1, Keras 2, tf.keras, and Keras 3 on
TensorFlow and JAX): one AveragePool with the pads, equal or not, and ``count_include_pad=0``.

``padding="same_torch"`` is Keras 3's torch backend's 'same' average: where every axis pads as
much at its end as at its start, the same; otherwise torch pads every axis by repeating the
edge entries and pools that with no padding, so the repeated entries count (a Pad in "edge"
mode, then an AveragePool).

Global pooling is a ReduceMean or ReduceMax over the spatial axes, wherever the layout has put
them, so it needs no Transpose; without ``keepdims`` the result is (batch, channels).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from convc import geometry
from convc.geometry import channel_axis, spatial_axes
from convc.lower.emitter import Emitter, Value, channels_first, identity, known
from convc.lower.registry import Weights, lowers
from convc.model import Node
from convc.specs import GlobalPoolSpec, PoolSpec, expect


@lowers(PoolSpec)
def lower_pooling(em: Emitter, layer: Node, x: Value, weights: Weights) -> Value:
    c = expect(layer.spec, PoolSpec)
    if set(c.pool_size) == {1} and set(c.strides) == {1}:  # each output is its one input
        return Value(x.name, x.perm, layer.output_shape)
    layout = channels_first(x.rank) if c.data_format == "channels_last" else identity(x.rank)
    x = em.in_layout(x, layout)
    lengths = [known(layer.input_shape[a]) for a in spatial_axes(c.rank, c.data_format)]
    pairs = [
        geometry.conv_pads(n, k, s, 1, c.window_padding)
        for n, k, s in zip(lengths, c.pool_size, c.strides, strict=True)
    ]
    begins, ends = [b for b, _ in pairs], [e for _, e in pairs]
    attrs: dict[str, Any] = {"kernel_shape": list(c.pool_size), "strides": list(c.strides)}
    source = x.name
    unpadded = [0] * (2 * c.rank)
    if c.pool_mode == "max":
        pads = begins + ends
        if any(pads) and set(c.strides) == {1} and not em.target.unit_stride_max_pool_pads:
            em.workaround("padded by a Pad node: a MaxPool with unit strides pads wrongly")
            source, pads = _edge_pad(em, source, begins, ends), unpadded
        out = em.op("MaxPool", [source], "max_pool", **attrs, pads=pads)
    elif begins == ends or c.padding != "same_torch":  # the mean of the entries inside
        attrs["count_include_pad"] = 0
        out = em.op("AveragePool", [source], "average_pool", **attrs, pads=begins + ends)
    else:  # torch's edge padding: the repeated entries count
        padded = _edge_pad(em, source, begins, ends)
        out = em.op("AveragePool", [padded], "average_pool", **attrs, pads=unpadded)
    return Value(out, x.perm, layer.output_shape)


def _edge_pad(em: Emitter, x: str, begins: list[int], ends: list[int]) -> str:
    """Pad the spatial axes of a channels-first value by repeating their edge entries."""
    amounts = em.constant([0, 0, *begins, 0, 0, *ends])
    return em.op("Pad", [x, amounts], "edge_pad", mode="edge")


_REDUCE = {"max": "ReduceMax", "average": "ReduceMean"}


@lowers(GlobalPoolSpec, any_layout=True)
def lower_global_pooling(em: Emitter, layer: Node, x: Value, weights: Weights) -> Value:
    c = expect(layer.spec, GlobalPoolSpec)
    op, what = _REDUCE[c.pool_mode], f"global_{c.pool_mode}_pool"
    axes = sorted(x.perm.index(a) for a in spatial_axes(c.rank, c.data_format))
    if c.keepdims:
        perm = x.perm
    else:  # what is left is batch and channels, in their physical order
        channels = channel_axis(c.rank, c.data_format)
        perm = tuple(0 if axis == 0 else 1 for axis in x.perm if axis in (0, channels))
    if axes == [1, 2, 3] and x.rank == 5 and not em.target.reduce_three_middle_axes:
        em.workaround("the spatial axes reduced as one (a Reshape): three middle axes are not")
        physical = x.physical_shape()
        view = em.reshape(x.name, [0, int(np.prod(physical[1:4])), physical[4]], "view")
        out = em.reduce(op, view, [1], what, keepdims=False)
        if c.keepdims:
            out = em.reshape(out, [0, 1, 1, 1, physical[4]], "keepdims")
        return Value(out, perm, layer.output_shape)
    return Value(em.reduce(op, x.name, axes, what, keepdims=c.keepdims), perm, layer.output_shape)

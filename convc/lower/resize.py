"""Lowering of Cropping, ZeroPadding and UpSampling (``convc.layers.resize``): Slice, Pad and
Resize work in whatever physical order the value already has, mapping their axes through it.
``UpSampling2D`` with a Lanczos kernel or ``bicubic_keras2`` (TensorFlow's bicubic), which no
Resize computes, is two MatMuls with constant matrices on the channels-first image
(``convc.lower.resampling``)."""

from __future__ import annotations

import numpy as np

from convc.geometry import spatial_axes
from convc.lower.emitter import KERAS_INTERPOLATIONS, Emitter, Value, known
from convc.lower.layout import channels_first_layout
from convc.lower.registry import Weights, lowers
from convc.lower.resampling import only_by_matrices, resize_by_matrices
from convc.model import Node
from convc.specs import (
    CroppingSpec,
    SpatialSpec,
    UpSamplingSpec,
    ZeroPaddingSpec,
    expect,
)


def _spatial_physical_axes(spec: SpatialSpec, x: Value) -> list[int]:
    return [x.perm.index(a) for a in spatial_axes(spec.rank, spec.data_format)]


@lowers(CroppingSpec, any_layout=True)
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
            ends.append(known(layer.input_shape[axis]) - end)
    if not axes:
        return Value(x.name, x.perm, layer.output_shape)
    return Value(em.slice(x.name, starts, ends, axes, "crop"), x.perm, layer.output_shape)


@lowers(ZeroPaddingSpec, any_layout=True)
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
            stops.append(known(layer.input_shape[axis]) - max(-end, 0))
    name = x.name
    if axes:
        name = em.slice(name, starts, stops, axes, "crop")
    if any(begins) or any(ends):
        name = em.pad(name, begins + ends)
    return Value(name, x.perm, layer.output_shape)


@lowers(UpSamplingSpec, any_layout=True)
def lower_up_sampling(em: Emitter, layer: Node, x: Value, weights: Weights) -> Value:
    c = expect(layer.spec, UpSamplingSpec)
    logical = spatial_axes(c.rank, c.data_format)
    if all(factor == 1 for factor in c.size):
        return Value(x.name, x.perm, layer.output_shape)
    # Along an axis of length 1 every interpolated sample is that one value: a repeat.
    interpolates = c.interpolation != "nearest" and any(
        factor > 1 and known(layer.input_shape[axis]) > 1
        for axis, factor in zip(logical, c.size, strict=True)
    )
    if interpolates and only_by_matrices(em, c.interpolation):
        x = em.in_layout(x, channels_first_layout(c, x.rank))
        lengths = [known(layer.input_shape[axis]) for axis in logical]
        scaled = [n * f for n, f in zip(lengths, c.size, strict=True)]
        out = resize_by_matrices(em, x.name, lengths, scaled, c.interpolation, antialias=False)
        return Value(out, x.perm, layer.output_shape)
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
    physical = x.physical_shape()
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
    linear = KERAS_INTERPOLATIONS[spec.interpolation]["mode"] == "linear"
    if linear and positions == list(range(1, x.rank - 1)):
        if not em.target.resize_inner_axes_only:
            return x.perm
        em.workaround("Resize in channels-first order (a Resize of middle axes is mishandled)")
    return channels_first_layout(spec, x.rank)


def _nearest(em: Emitter, x: Value, factors: list[int]) -> str:
    """Keras's nearest upsampling repeats each entry ``factor`` times along an axis. Where the
    innermost axis is not scaled (channels last), one Reshape-Concat-Reshape repeats every
    scaled axis: onnxruntime runs it 3 to 25 times faster than Resize. Otherwise a Resize scales
    the two innermost axes (asymmetric coordinates with floor rounding are exactly a repeat), on
    a 4-D view of the tensor where the target needs one, and a repeat takes the axes before."""
    physical = x.physical_shape()
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


def _repeat(em: Emitter, x: str, physical: list[int], factors: list[int]) -> str:
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

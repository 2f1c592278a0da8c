"""Preprocessing layers that compute at inference: Rescaling, Normalization, Resizing and
CenterCrop, as Keras 3's torch backend computes them (``keras/src/layers/preprocessing/``).

* ``Rescaling``: ``x * scale + offset``; scale and offset may be arrays that broadcast against
  the input. Keras reshapes an array scale (not the offset) to ``(C, 1, 1)`` when the image data
  format is channels_first; convc reads the format where the layer is constructed (Keras reads
  it when the layer is called).
* ``Normalization``: ``(x - mean) / max(sqrt(variance), 1e-7)``, or ``mean + x * max(...)``
  with ``invert=True``; mean and variance are given as arguments (broadcast onto the kept axes
  from the right) or are the layer's non-trainable weights ``mean``, ``variance`` and an integer
  ``count`` (shape ``()``), shaped by the kept axes.
* ``Resizing``: half-pixel centres; bilinear; bicubic and the Lanczos kernels as JAX and
  TensorFlow compute them (bicubic: Keys's a = -0.5, renormalized at the borders); nearest as
  "nearest-exact"; ``antialias=True`` widens the filter by the downscale; after Keras's crop or
  pad to the target's aspect ratio. Its arguments are checked by Keras only when it is called;
  convc checks them at build time. ``bicubic_torch`` is Keras's torch backend's bicubic (a =
  -0.75, edges repeated); ``bicubic_keras2`` is tf.keras's (TensorFlow's table,
  ``convc.lower.resampling``), which imported Keras 2 files use.
* ``CenterCrop``: a centred crop when the input is at least the target size on both axes;
  otherwise Keras's ``smart_resize`` (crop to the aspect ratio, then bilinear).

A rank-3 input is an unbatched image to Keras's image layers, which in a model would resize the
batch axis: convc takes the image layers on rank-4 inputs only.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from convc.diagnostics import ConvcError
from convc.geometry import rescaling_scale_shape, source_size
from convc.layers.args import Bound, bool_arg, is_int, params
from convc.layers.base import Built, LayerType, layer_type
from convc.layers.initializers import parse_initializer
from convc.model import Shape, Variable, format_shape, known_dim
from convc.specs import Constant, NormalizationSpec, RescalingSpec, ResizingSpec
from convc.syntax import Literal


def constant_arg(args: Bound, name: str) -> Constant:
    """A number or a rectangular nested list of numbers, as ``(shape, values)``."""
    value = args.python(name)
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        array = None
    if array is None or array.dtype == object or not np.isfinite(array).all():
        raise ConvcError(
            f"'{name}' must be a number or a (nested) list of finite numbers, got {name}={value!r}",
            args.span(name),
        )
    return tuple(int(d) for d in array.shape), tuple(float(v) for v in array.ravel())


def _broadcast_into(
    shape: tuple[int, ...], input_shape: Shape, what: str, args: Bound, name: str, label: str
) -> None:
    """An array argument must broadcast onto the input without changing its shape, and may
    not vary along the batch axis."""
    fits = len(shape) <= len(input_shape) and all(
        d == 1 or (axis > 0 and d == input_shape[axis])
        for axis, d in zip(
            range(len(input_shape) - len(shape), len(input_shape)), shape, strict=True
        )
    )
    if not fits:
        raise ConvcError(
            f"{label}: {what} of shape {format_shape(shape)} does not broadcast onto its input "
            f"of shape {format_shape(input_shape)}",
            args.span(name),
            help="arrays align with the input's last axes, each entry 1 or the input's size",
        )


@layer_type
class Rescaling(LayerType[RescalingSpec]):
    spec_class = RescalingSpec
    class_name = "Rescaling"
    own_params = params("scale", ("offset", 0.0))

    def configure(self, args: Bound, default_data_format: str) -> RescalingSpec:
        return RescalingSpec(
            scale=constant_arg(args, "scale"),
            offset=constant_arg(args, "offset"),
            data_format=default_data_format,
        )

    def build(self, spec: RescalingSpec, input_shape: Shape, args: Bound, name: str) -> Built:
        label = self.label(name)
        _broadcast_into(rescaling_scale_shape(spec), input_shape, "scale", args, "scale", label)
        _broadcast_into(spec.offset[0], input_shape, "offset", args, "offset", label)
        return Built(input_shape)


@layer_type
class Normalization(LayerType[NormalizationSpec]):
    spec_class = NormalizationSpec
    class_name = "Normalization"
    own_params = params(("axis", -1), ("mean", None), ("variance", None), ("invert", False))

    def configure(self, args: Bound, default_data_format: str) -> NormalizationSpec:
        value = args.python("axis")
        axes = () if value is None else value if isinstance(value, tuple | list) else (value,)
        if not all(is_int(a) for a in axes):
            raise ConvcError(
                f"'axis' of a Normalization layer must be an integer, a list of integers or "
                f"None, got axis={value!r}",
                args.span("axis"),
            )
        axes = tuple(int(a) for a in axes)
        given = [args.python(n) is not None for n in ("mean", "variance")]
        if given[0] != given[1]:
            missing = "variance" if given[0] else "mean"
            raise ConvcError(
                "when setting values directly, both 'mean' and 'variance' must be set, got "
                f"{missing}=None",
                args.span("mean" if given[0] else "variance"),
            )
        mean = variance = None
        if given[0]:
            mean, variance = constant_arg(args, "mean"), constant_arg(args, "variance")
            if mean[0] != variance[0]:
                raise ConvcError(
                    f"'mean' and 'variance' must have the same shape, got {format_shape(mean[0])}"
                    f" and {format_shape(variance[0])}",
                    args.span("variance"),
                )
            if len(mean[0]) > len(axes):
                raise ConvcError(
                    f"the rank of 'mean' ({len(mean[0])}) must be at most the number of axes "
                    f"({len(axes)}), axis={value!r}",
                    args.span("mean"),
                )
        return NormalizationSpec(
            axis=axes, mean=mean, variance=variance, invert=bool_arg(args, "invert")
        )

    def build(self, spec: NormalizationSpec, input_shape: Shape, args: Bound, name: str) -> Built:
        keep = normalization_axes(spec, input_shape, args, self.label(name))
        kept_shape = tuple(known_dim(input_shape, a) for a in keep)
        if spec.mean is not None:
            broadcast = [input_shape[d] if d in keep else 1 for d in range(len(input_shape))]
            expanded = [1] * len(input_shape)
            for i in range(1, len(spec.mean[0]) + 1):
                expanded[keep[-i]] = spec.mean[0][-i]
            if any(e not in (1, b) for e, b in zip(expanded, broadcast, strict=True)):
                raise ConvcError(
                    f"{self.label(name)}: mean and variance of shape "
                    f"{format_shape(spec.mean[0])} do not fit the kept axes {keep} of an input "
                    f"of shape {format_shape(input_shape)} (sizes {format_shape(kept_shape)})",
                    args.span("mean"),
                )
            return Built(input_shape)
        zeros = parse_initializer(Literal("zeros", args.call.name_span), "mean")
        ones = parse_initializer(Literal("ones", args.call.name_span), "variance")
        return Built(
            input_shape,
            (
                Variable("mean", kept_shape, zeros, trainable=False),
                Variable("variance", kept_shape, ones, trainable=False),
                Variable("count", (), zeros, trainable=False, dtype="int32"),
            ),
        )


def normalization_axes(
    spec: NormalizationSpec, input_shape: Shape, args: Bound, label: str
) -> tuple[int, ...]:
    """The kept axes, non-negative and sorted; each must have a known size."""
    rank = len(input_shape)
    if any(not -rank <= a < rank for a in spec.axis):
        raise ConvcError(
            f"{label}: every axis must be in [-{rank}, {rank}) for an input of shape "
            f"{format_shape(input_shape)}, got axis={spec.axis}",
            args.span("axis"),
        )
    keep = tuple(sorted(a % rank for a in spec.axis))
    if len(set(keep)) != len(keep):
        raise ConvcError(f"{label}: an axis appears twice in axis={spec.axis}", args.span("axis"))
    if any(input_shape[a] is None for a in keep):
        raise ConvcError(
            f"{label} keeps the batch axis, whose size is unknown: give the Input a batch_size",
            args.span("axis"),
        )
    return keep


RESIZE_INTERPOLATIONS = (
    "bilinear",
    "nearest",
    "bicubic",
    "lanczos3",
    "lanczos5",
    "bicubic_torch",
    "bicubic_keras2",
)
"""What Keras 3 resizes with on JAX and TensorFlow (``area`` is TensorFlow's alone), convc's
name for Keras's torch backend's bicubic, and ``bicubic_keras2``, convc's name for tf.keras's
``bicubic`` (TensorFlow's ``ResizeBicubic``, ``convc.layers.resize.KERAS2_INTERPOLATIONS``), which
imported Keras 2 files use."""


@layer_type
class Resizing(LayerType[ResizingSpec]):
    spec_class = ResizingSpec
    class_name = "Resizing"
    own_params = params(
        "height",
        "width",
        ("interpolation", "bilinear"),
        ("crop_to_aspect_ratio", False),
        ("pad_to_aspect_ratio", False),
        ("fill_mode", "constant"),
        ("fill_value", 0.0),
        ("antialias", False),
        ("data_format", None),
    )

    def configure(self, args: Bound, default_data_format: str) -> ResizingSpec:
        height, width = _size(args, "height"), _size(args, "width")
        interpolation = args.python("interpolation")
        if interpolation == "area":
            raise ConvcError(
                "interpolation='area' exists only on Keras's TensorFlow backend (JAX has no "
                "area resize); convc does not build it",
                args.span("interpolation"),
                help="use 'bilinear', 'nearest', 'bicubic', 'lanczos3' or 'lanczos5'",
            )
        if interpolation not in RESIZE_INTERPOLATIONS:
            raise ConvcError(
                f"'interpolation' must be one of {', '.join(map(repr, RESIZE_INTERPOLATIONS))}, "
                f"got interpolation={interpolation!r}",
                args.span("interpolation"),
            )
        antialias = bool(args.python("antialias"))
        if antialias and interpolation == "bicubic_keras2":
            raise ConvcError(
                "antialias=True cannot be combined with interpolation='bicubic_keras2': "
                "tf.keras's Resizing had no antialias, and TensorFlow's antialiased bicubic is "
                "another filter (its support widened by the downscale), which convc does not "
                "build",
                args.span("antialias"),
                help="remove antialias=True, or use interpolation='bicubic' (Keras 3's, whose "
                "antialiased filter is TensorFlow's)",
            )
        crop = _truth(args, "crop_to_aspect_ratio")
        pad = _truth(args, "pad_to_aspect_ratio")
        if crop and pad:
            raise ConvcError(
                "only one of 'pad_to_aspect_ratio' and 'crop_to_aspect_ratio' can be True",
                args.span("pad_to_aspect_ratio"),
            )
        if args.python("fill_mode") != "constant":
            raise ConvcError(
                f"Keras's torch backend only pads with fill_mode='constant', got "
                f"fill_mode={args.python('fill_mode')!r}",
                args.span("fill_mode"),
            )
        fill = args.python("fill_value")
        if isinstance(fill, bool) or not isinstance(fill, int | float) or not math.isfinite(fill):
            raise ConvcError(
                f"'fill_value' must be a finite number, got fill_value={fill!r}",
                args.span("fill_value"),
            )
        return ResizingSpec(
            height=height,
            width=width,
            interpolation=interpolation,
            crop_to_aspect_ratio=crop,
            pad_to_aspect_ratio=pad,
            fill_mode="constant",
            fill_value=float(fill),
            antialias=antialias,
            data_format=self.data_format_arg(args, default_data_format),
        )

    def build(self, spec: ResizingSpec, input_shape: Shape, args: Bound, name: str) -> Built:
        height, width = image_size(spec, input_shape, args, self.label(name))
        if spec.interpolation == "nearest":
            sources = source_size(spec, height, width)
            for axis, (n, m) in enumerate(zip(sources, (spec.height, spec.width), strict=True)):
                _check_nearest(n, m, axis, args, self.label(name))
        return Built(resized_shape(spec, input_shape))


@layer_type
class CenterCrop(LayerType[ResizingSpec]):
    spec_class = ResizingSpec
    class_name = "CenterCrop"
    own_params = params("height", "width", ("data_format", None))

    def configure(self, args: Bound, default_data_format: str) -> ResizingSpec:
        return ResizingSpec(
            height=_size(args, "height"),
            width=_size(args, "width"),
            crop_to_aspect_ratio=True,
            data_format=self.data_format_arg(args, default_data_format),
            center_crop=True,
        )

    def build(self, spec: ResizingSpec, input_shape: Shape, args: Bound, name: str) -> Built:
        image_size(spec, input_shape, args, self.label(name))
        return Built(resized_shape(spec, input_shape))


def _size(args: Bound, name: str) -> int:
    value = args.python(name)
    if not is_int(value) or value <= 0:
        raise ConvcError(
            f"'{name}' must be a positive integer, got {name}={value!r}", args.span(name)
        )
    return int(value)


def _truth(args: Bound, name: str) -> bool:
    value: Any = args.python(name)
    if not isinstance(value, bool | int):
        raise ConvcError(f"'{name}' must be True or False, got {name}={value!r}", args.span(name))
    return bool(value)


def image_size(spec: ResizingSpec, input_shape: Shape, args: Bound, label: str) -> tuple[int, int]:
    """(height, width) of a batch of images; convc takes rank-4 inputs only (see above)."""
    if len(input_shape) != 4:
        raise ConvcError(
            f"{label} expects a batch of images, a 4-D input (batch, height, width, channels) "
            f"or (batch, channels, height, width), got shape {format_shape(input_shape)}",
            args.call.name_span,
            help="Keras takes a 3-D input as one unbatched image, which in a model would "
            "resize the batch axis",
        )
    if spec.data_format == "channels_first":
        return known_dim(input_shape, 2), known_dim(input_shape, 3)
    return known_dim(input_shape, 1), known_dim(input_shape, 2)


def resized_shape(spec: ResizingSpec, input_shape: Shape) -> Shape:
    out = list(input_shape)
    axes = (2, 3) if spec.data_format == "channels_first" else (1, 2)
    out[axes[0]], out[axes[1]] = spec.height, spec.width
    return tuple(out)


def _check_nearest(n: int, m: int, axis: int, args: Bound, label: str) -> None:
    """torch's nearest-exact takes source index floor((i + 0.5) * (n / m)) in float32. Where
    that float product rounds across an integer, the index differs from the exact one, and
    torch's own kernels disagree about which to take; those sizes are refused (about 2 in 100
    size pairs). Every other pair checked gave torch's indices: all up to 300 samples, and
    20,000 drawn up to 2,000."""
    i = np.arange(m)
    single = np.floor((i.astype(np.float32) + np.float32(0.5)) * (np.float32(n) / np.float32(m)))
    exact = (2 * i + 1) * n // (2 * m)
    if (np.minimum(single.astype(np.int64), n - 1) != np.minimum(exact, n - 1)).any():
        raise ConvcError(
            f"{label}: nearest resizing of {n} to {m} along the {('height', 'width')[axis]} "
            "hits source positions that torch rounds in float32 differently from the exact "
            "ones, and its CPU kernels disagree there: convc cannot match Keras exactly",
            args.span("interpolation"),
            help="use another size or interpolation='bilinear'",
        )

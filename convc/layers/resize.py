"""Cropping, ZeroPadding and UpSampling, 1-D to 3-D: layers that only move or repeat pixels.

Their arguments normalize to one form per spatial axis: ``(begin, end)`` pairs for cropping and
padding, a factor for upsampling. The argument rules are Keras 3's, including its asymmetries:
``ZeroPadding2D(-1)`` is accepted (and crops), ``Cropping2D(-1)`` is not; ``Cropping2D((1, 2))``
means height 1 on both sides and width 2 on both sides.
"""

from __future__ import annotations

from typing import Any, TypeVar

from convc.diagnostics import ConvcError
from convc.geometry import spatial_axes
from convc.layers.args import Bound, check_magnitude, choice_arg, int_tuple_arg, is_int, params
from convc.layers.base import Built, LayerType, register
from convc.model import Shape, format_shape
from convc.specs import CroppingSpec, UpSamplingSpec, ZeroPaddingSpec

_ORDINALS = ("1st", "2nd", "3rd")
_AXIS_WORDS = {1: ("steps",), 2: ("height", "width"), 3: ("dim1", "dim2", "dim3")}

INTERPOLATIONS = ("nearest", "bilinear", "bicubic", "lanczos3", "lanczos5")
"""UpSampling2D interpolations as Keras 3 computes them on JAX and TensorFlow: bicubic is Keys's
cubic with a = -0.5, the samples outside the image left out and the others renormalized (JAX's
exactly; TensorFlow's reads the kernel from a table, ``bicubic_keras2``); Lanczos's kernels are
JAX's and TensorFlow's (Keras's torch backend has none). ``area`` is TensorFlow's alone."""

TORCH_INTERPOLATIONS = ("bicubic_torch",)
"""convc's names for what Keras 3's torch backend computes where the others compute something
else: ``bicubic_torch`` is torch's bicubic, Keys's a = -0.75 with the edge samples repeated."""

KERAS2_INTERPOLATIONS = ("bilinear_keras2", "bicubic_keras2")
"""convc's names for what an older Keras meant by an interpolation, which imported files of
those versions use: ``bilinear_keras2`` is the multi-backend Keras 2.2/2.3's ``bilinear``
(TensorFlow 1's ``resize_bilinear``: source coordinate ``i / size``, no half-pixel offset);
``bicubic_keras2`` is tf.keras's ``bicubic``, TensorFlow's ``ResizeBicubic`` with half-pixel
centres (Keys's a = -0.5, the weights of samples outside the image dropped and the rest
renormalized, the fractional source position rounded to 1/1024), which Keras 3 on TensorFlow
computes too."""


def _pairs(
    args: Bound, name: str, rank: int, *, negative_int_ok: bool
) -> tuple[tuple[int, int], ...]:
    """Keras's int / tuple-of-ints / tuple-of-pairs forms of cropping and padding."""
    value = args.python(name)
    span = args.span(name)
    if rank == 1:
        return (_pair(value, name, span),)
    if is_int(value):
        check_magnitude(value, name, span)
        if value < 0 and not negative_int_ok:
            raise ConvcError(f"'{name}' cannot be negative, got {name}={value}", span)
        return ((int(value), int(value)),) * rank
    if isinstance(value, tuple | list):
        if len(value) != rank:
            raise ConvcError(
                f"'{name}' must have {rank} entries, one per spatial axis "
                f"({', '.join(_AXIS_WORDS[rank])}), got {name}={value}",
                span,
            )
        return tuple(
            _pair(entry, f"{_ORDINALS[i]} entry of {name}", span) for i, entry in enumerate(value)
        )
    raise ConvcError(
        f"'{name}' must be an int, a tuple of {rank} ints or a tuple of {rank} (begin, end) "
        f"pairs, got {name}={value!r}",
        span,
    )


def _pair(value: Any, what: str, span) -> tuple[int, int]:
    if is_int(value):
        pair = (int(value), int(value))
    elif isinstance(value, tuple | list) and len(value) == 2 and all(is_int(v) for v in value):
        pair = (int(value[0]), int(value[1]))
    else:
        raise ConvcError(
            f"{what} must be an int or a (begin, end) pair of ints, got {value!r}", span
        )
    for entry in pair:
        check_magnitude(entry, what, span)
    if min(pair) < 0:
        raise ConvcError(f"{what} cannot be negative, got {value!r}", span)
    return pair


_Spec = TypeVar("_Spec", CroppingSpec, ZeroPaddingSpec, UpSamplingSpec)


class _SpatialLayer(LayerType[_Spec]):
    """A layer acting on the spatial axes; 1-D Cropping and UpSampling have no data_format."""

    has_data_format = True

    def __init__(self, rank: int):
        self.rank = rank
        self.class_name = self.name_template.format(r=rank)
        self.has_data_format = self.has_data_format or rank > 1
        own = self.params_by_rank[rank]
        self.own_params = own + (params(("data_format", None)) if self.has_data_format else ())

    name_template = ""
    params_by_rank: dict[int, tuple] = {}

    def data_format_of(self, args: Bound, default: str) -> str:
        return self.data_format_arg(args, default) if self.has_data_format else "channels_last"

    def build(self, spec: _Spec, input_shape: Shape, args: Bound, name: str) -> Built:
        self.check_rank(input_shape, spec, args, name)
        output = list(input_shape)
        for axis, position in enumerate(spatial_axes(self.rank, spec.data_format)):
            if input_shape[position] is not None:
                output[position] = self.output_length(spec, name, axis, input_shape, position, args)
        return Built(tuple(output))

    def output_length(self, spec: _Spec, name, axis, input_shape, position, args) -> int:
        raise NotImplementedError


class Cropping(_SpatialLayer[CroppingSpec]):
    spec_class = CroppingSpec
    name_template = "Cropping{r}D"
    has_data_format = False
    params_by_rank = {
        1: params(("cropping", (1, 1))),
        2: params(("cropping", ((0, 0), (0, 0)))),
        3: params(("cropping", ((1, 1), (1, 1), (1, 1)))),
    }

    def configure(self, args: Bound, default_data_format: str) -> CroppingSpec:
        return CroppingSpec(
            rank=self.rank,
            cropping=_pairs(args, "cropping", self.rank, negative_int_ok=False),
            data_format=self.data_format_of(args, default_data_format),
        )

    def output_length(self, spec, name, axis, input_shape, position, args) -> int:
        begin, end = spec.cropping[axis]
        length = input_shape[position]
        if begin + end >= length:
            raise ConvcError(
                f"{self.label(name)} would crop {begin} + {end} = {begin + end} of the "
                f"{length} entries of spatial axis {axis}, leaving nothing",
                args.span("cropping"),
                help=f"the crop on each axis must be smaller than its length; input shape "
                f"{format_shape(input_shape)}",
            )
        return length - begin - end


class ZeroPadding(_SpatialLayer[ZeroPaddingSpec]):
    spec_class = ZeroPaddingSpec
    name_template = "ZeroPadding{r}D"
    params_by_rank = {
        1: params(("padding", 1)),
        2: params(("padding", (1, 1))),
        3: params(("padding", ((1, 1), (1, 1), (1, 1)))),
    }

    def configure(self, args: Bound, default_data_format: str) -> ZeroPaddingSpec:
        return ZeroPaddingSpec(
            rank=self.rank,
            padding=_pairs(args, "padding", self.rank, negative_int_ok=True),
            data_format=self.data_format_of(args, default_data_format),
        )

    def output_length(self, spec, name, axis, input_shape, position, args) -> int:
        begin, end = spec.padding[axis]
        length = input_shape[position] + begin + end
        if length <= 0:
            raise ConvcError(
                f"{self.label(name)} with padding {begin} would leave spatial axis {axis} "
                f"({input_shape[position]} entries) with {length}",
                args.span("padding"),
                help="a negative ZeroPadding crops; it must leave at least one entry",
            )
        return length


class UpSampling(_SpatialLayer[UpSamplingSpec]):
    spec_class = UpSamplingSpec
    name_template = "UpSampling{r}D"
    has_data_format = False
    params_by_rank = {
        1: params(("size", 2)),
        2: params(("size", (2, 2))),
        3: params(("size", (2, 2, 2))),
    }

    def __init__(self, rank: int):
        super().__init__(rank)
        if rank == 2:  # only UpSampling2D takes an interpolation, after data_format
            self.own_params = self.own_params + params(("interpolation", "nearest"))

    def configure(self, args: Bound, default_data_format: str) -> UpSamplingSpec:
        value = args.python("size")
        if self.rank == 1 and (not is_int(value) or isinstance(value, bool)):
            raise ConvcError(f"'size' must be an integer, got size={value!r}", args.span("size"))
        return UpSamplingSpec(
            rank=self.rank,
            size=int_tuple_arg(args, "size", self.rank),
            data_format=self.data_format_of(args, default_data_format),
            interpolation=self._interpolation(args) if self.rank == 2 else "nearest",
        )

    def _interpolation(self, args: Bound) -> str:
        value = args.python("interpolation")
        if isinstance(value, str) and value.lower() == "area":
            raise ConvcError(
                f"interpolation={value!r} is not supported: Keras computes it only on the "
                "TensorFlow backend (JAX has no area resize)",
                args.span("interpolation"),
                help="use 'nearest', 'bilinear', 'bicubic', 'lanczos3' or 'lanczos5'",
            )
        known = INTERPOLATIONS + TORCH_INTERPOLATIONS + KERAS2_INTERPOLATIONS
        return choice_arg(args, "interpolation", known)

    def output_length(self, spec, name, axis, input_shape, position, args) -> int:
        return input_shape[position] * spec.size[axis]


register(*(cls(rank) for cls in (Cropping, ZeroPadding, UpSampling) for rank in (1, 2, 3)))

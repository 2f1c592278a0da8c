"""Pooling layers: MaxPooling, AveragePooling, GlobalMaxPooling and GlobalAveragePooling, 1-D
to 3-D, with their aliases (``MaxPool2D``, ``AvgPool2D``, ``GlobalAvgPool2D`` ...).

The argument rules are Keras 3's (``keras/src/layers/pooling/base_pooling.py`` and
``base_global_pooling.py``). Three of them are not what the other layers do:

* ``AveragePooling*D`` has no default ``pool_size`` (``MaxPooling*D``'s is 2 per axis).
* ``padding`` is compared case-sensitively when Keras builds the model: ``padding="SAME"``, which
  a convolution accepts, makes a pooling layer fail (Keras lowercases it only when called on
  concrete tensors). convc refuses it, and says so.
* ``strides`` may be 0 for Keras's constructor, but building then divides by zero; convc refuses
  it where it is written.

The output length is a convolution's with a dilation of 1 (``convc.geometry``); 'same'
pads put the odd element at the end.

A 'same' average pooling is the mean of each window's entries inside the input, whatever its
pads: what TensorFlow computes, and so Keras 1, Keras 2, tf.keras and Keras 3 on TensorFlow and
JAX. Keras 3's torch backend (3.15.1) counts repeated edge entries instead where an axis pads its
two ends unequally (keras-team/keras#23233); ``AveragePooling*D(padding="same_torch")`` is
convc's name for that, for a model trained there (``convc.lower.pooling``). A max pooling has no
such variant, since every backend's 'same' max ignores the pads.
"""

from __future__ import annotations

from typing import cast

from convc import geometry
from convc.diagnostics import ConvcError
from convc.geometry import channel_axis, spatial_axes
from convc.layers.args import Bound, bool_arg, choice_arg, int_tuple_arg, params
from convc.layers.base import Built, LayerType, register
from convc.model import Shape, format_shape
from convc.specs import GlobalPoolSpec, PoolMode, PoolPadding, PoolSpec

_MODES: dict[PoolMode, tuple[str, str]] = {"max": ("Max", "Max"), "average": ("Average", "Avg")}
"""Each pool mode's word in the class name and in its short alias."""

_PADDINGS = ("valid", "same")

TORCH_PADDINGS = ("same_torch",)
"""convc's names for what Keras 3's torch backend computes for an average pooling's ``padding``
where the other backends compute something else: ``same_torch`` counts repeated edge entries
where an axis pads its ends unequally."""


class Pooling(LayerType[PoolSpec]):
    """MaxPooling{r}D (MaxPool{r}D) and AveragePooling{r}D (AvgPool{r}D)."""

    spec_class = PoolSpec

    def __init__(self, pool_mode: PoolMode, rank: int):
        word, short = _MODES[pool_mode]
        self.pool_mode = pool_mode
        self.rank = rank
        self.class_name = f"{word}Pooling{rank}D"
        self.aliases = (f"{short}Pool{rank}D",)
        default = {1: 2, 2: (2, 2), 3: (2, 2, 2)}[rank]
        size = ("pool_size", default) if pool_mode == "max" else "pool_size"
        self.own_params = params(
            size, ("strides", None), ("padding", "valid"), ("data_format", None), ("name", None)
        )

    def configure(self, args: Bound, default_data_format: str) -> PoolSpec:
        pool_size = _window_arg(args, "pool_size", self.rank)
        strides = pool_size
        if args.python("strides") is not None:
            strides = _window_arg(args, "strides", self.rank)
        return PoolSpec(
            rank=self.rank,
            pool_mode=self.pool_mode,
            pool_size=pool_size,
            strides=strides,
            padding=_padding(args, self.pool_mode),
            data_format=self.data_format_arg(args, default_data_format),
        )

    def build(self, spec: PoolSpec, input_shape: Shape, args: Bound, name: str) -> Built:
        self.check_rank(input_shape, spec, args, name)
        output = list(input_shape)
        for axis, position in enumerate(spatial_axes(self.rank, spec.data_format)):
            length = input_shape[position]
            if length is None:
                continue
            k, s = spec.pool_size[axis], spec.strides[axis]
            out = geometry.conv_output_length(length, k, s, 1, spec.window_padding)
            if out <= 0:
                raise ConvcError(
                    f"{self.label(name)} with padding='valid' would give an output of length "
                    f"{out} on spatial axis {axis}: the input has length {length} and "
                    f"pool_size={k}",
                    args.span("pool_size"),
                    help=f"output length = floor(({length} - {k}) / {s}) + 1 = {out}; input "
                    f"shape {format_shape(input_shape)}; use padding='same' or a smaller pool",
                )
            output[position] = out
        return Built(tuple(output))


def _window_arg(args: Bound, name: str, rank: int) -> tuple[int, ...]:
    """``pool_size`` or ``strides``: Keras's ``standardize_tuple``; True and False, which it
    lets through, make Keras's torch backend fail when the layer runs, so they are refused."""
    value = args.python(name)
    items = value if isinstance(value, tuple | list) else (value,)
    if any(isinstance(item, bool) for item in items):
        raise ConvcError(
            f"'{name}' must be an integer or a tuple of {rank} integers, got {name}={value!r}",
            args.span(name),
            help="Keras accepts a bool here but fails when the layer runs",
        )
    return int_tuple_arg(args, name, rank)


def _padding(args: Bound, pool_mode: PoolMode) -> PoolPadding:
    value = args.python("padding")
    known = _PADDINGS + TORCH_PADDINGS
    if isinstance(value, str) and value != value.lower() and value.lower() in known:
        why = (
            "convc's name is lower case"
            if value.lower() in TORCH_PADDINGS
            else "Keras 3 compares it case-sensitively when it builds the model, and fails"
        )
        raise ConvcError(
            f"padding={value!r} must be written in lower case for a pooling layer: {why}",
            args.span("padding"),
            help=f"write padding={value.lower()!r}",
        )
    if value in TORCH_PADDINGS and pool_mode == "max":
        raise ConvcError(
            f"padding={value!r} is for an average pooling: it names Keras's torch backend's "
            "'same' average, which counts repeated edge entries; every backend's 'same' max "
            "pooling ignores the pads",
            args.span("padding"),
            help="write padding='same'",
        )
    choices = known if pool_mode == "average" else _PADDINGS
    return cast(PoolPadding, choice_arg(args, "padding", choices, lower=False))


class GlobalPooling(LayerType[GlobalPoolSpec]):
    """GlobalMaxPooling{r}D (GlobalMaxPool{r}D), GlobalAveragePooling{r}D (GlobalAvgPool{r}D)."""

    spec_class = GlobalPoolSpec
    own_params = params(("data_format", None), ("keepdims", False))

    def __init__(self, pool_mode: PoolMode, rank: int):
        word, short = _MODES[pool_mode]
        self.pool_mode = pool_mode
        self.rank = rank
        self.class_name = f"Global{word}Pooling{rank}D"
        self.aliases = (f"Global{short}Pool{rank}D",)

    def configure(self, args: Bound, default_data_format: str) -> GlobalPoolSpec:
        # Keras's shape inference takes any truthy keepdims, but its torch backend fails on
        # anything but a bool when the layer runs.
        return GlobalPoolSpec(
            rank=self.rank,
            pool_mode=self.pool_mode,
            data_format=self.data_format_arg(args, default_data_format),
            keepdims=bool_arg(args, "keepdims"),
        )

    def build(self, spec: GlobalPoolSpec, input_shape: Shape, args: Bound, name: str) -> Built:
        self.check_rank(input_shape, spec, args, name)
        channels = input_shape[channel_axis(self.rank, spec.data_format)]
        if not spec.keepdims:
            return Built((input_shape[0], channels))
        output = list(input_shape)
        for position in spatial_axes(self.rank, spec.data_format):
            output[position] = 1
        return Built(tuple(output))


register(
    *(
        cls(mode, rank)
        for cls in (Pooling, GlobalPooling)
        for mode in ("max", "average")
        for rank in (1, 2, 3)
    )
)

"""The convolution family: Conv, ConvTranspose, DepthwiseConv and SeparableConv, 1-D to 3-D.

One class carries what they share; the four kinds differ only in their signature, their weight
shapes and how the output length is computed. Constructor checks and build checks follow Keras 3
(``keras/src/layers/convolutional/base_*.py``), with Keras's meaning and a located message.
"""

from __future__ import annotations

import math
from typing import Any

from convc.diagnostics import ConvcError, Span
from convc.layers import shapes
from convc.layers.activations import parse_activation
from convc.layers.args import (
    Bound,
    Param,
    bool_arg,
    choice_arg,
    int_arg,
    int_tuple_arg,
    optional_int_arg,
    params,
)
from convc.layers.base import Built, LayerType, channel_axis, spatial_axes
from convc.layers.initializers import parse_constraint, parse_initializer, parse_regularizer
from convc.model import Shape, Variable, format_shape
from convc.syntax import Literal, Value


def _signature(kind: str, rank: int) -> tuple[Param, ...]:
    """The constructor's parameters in Keras's positional order."""
    head = params("filters", "kernel_size", ("strides", 1), ("padding", "valid"))
    regularized = ("kernel_regularizer", "bias_regularizer", "activity_regularizer")
    constrained = ("kernel_constraint", "bias_constraint")
    tail = (("activation", None), ("use_bias", True))
    if kind == "conv":
        return (
            head
            + params(
                ("data_format", None),
                ("dilation_rate", 1),
                ("groups", 1),
                *tail,
                ("kernel_initializer", "glorot_uniform"),
                ("bias_initializer", "zeros"),
                *((n, None) for n in regularized + constrained),
            )
            + params(("lora_rank", None), ("lora_alpha", None), keyword_only=True)
        )
    if kind == "transpose":
        formats = [("output_padding", None), ("data_format", None)]
        if rank == 3:  # Conv3DTranspose takes data_format before output_padding
            formats.reverse()
        return head + params(
            *formats,
            ("dilation_rate", 1),
            *tail,
            ("kernel_initializer", "glorot_uniform"),
            ("bias_initializer", "zeros"),
            *((n, None) for n in regularized + constrained),
        )
    if kind == "depthwise":
        return params(
            "kernel_size",
            ("strides", 1),
            ("padding", "valid"),
            ("depth_multiplier", 1),
            ("data_format", None),
            ("dilation_rate", 1),
            *tail,
            ("depthwise_initializer", "glorot_uniform"),
            ("bias_initializer", "zeros"),
            ("depthwise_regularizer", None),
            ("bias_regularizer", None),
            ("activity_regularizer", None),
            ("depthwise_constraint", None),
            ("bias_constraint", None),
        )
    assert kind == "separable"
    return head + params(
        ("data_format", None),
        ("dilation_rate", 1),
        ("depth_multiplier", 1),
        *tail,
        ("depthwise_initializer", "glorot_uniform"),
        ("pointwise_initializer", "glorot_uniform"),
        ("bias_initializer", "zeros"),
        ("depthwise_regularizer", None),
        ("pointwise_regularizer", None),
        ("bias_regularizer", None),
        ("activity_regularizer", None),
        ("depthwise_constraint", None),
        ("pointwise_constraint", None),
        ("bias_constraint", None),
    )


class Convolution(LayerType):
    """Conv{r}D, Conv{r}DTranspose, DepthwiseConv{r}D, SeparableConv{r}D."""

    _CLASS = {
        "conv": ("Conv{r}D", ("Convolution{r}D",)),
        "transpose": ("Conv{r}DTranspose", ("Convolution{r}DTranspose",)),
        "depthwise": ("DepthwiseConv{r}D", ()),
        "separable": ("SeparableConv{r}D", ("SeparableConvolution{r}D",)),
    }

    def __init__(self, kind: str, rank: int):
        name, aliases = self._CLASS[kind]
        self.kind = kind
        self.family = {"conv": "conv", "transpose": "conv_transpose"}.get(kind, kind)
        self.rank = rank
        self.class_name = name.format(r=rank)
        self.aliases = tuple(a.format(r=rank) for a in aliases)
        self.own_params = _signature(kind, rank)

    def configure(self, args: Bound, default_data_format: str) -> dict[str, Any]:
        r = self.rank
        config: dict[str, Any] = {}
        if self.kind != "depthwise":
            config["filters"] = int_arg(args, "filters", minimum=1)
        config["kernel_size"] = int_tuple_arg(args, "kernel_size", r)
        config["strides"] = int_tuple_arg(args, "strides", r)
        allowed = (
            ("valid", "same", "causal") if self.kind == "conv" and r == 1 else ("valid", "same")
        )
        if args.python("padding") == "causal" and "causal" not in allowed:
            raise ConvcError(
                f"padding='causal' is only supported by Conv1D, not {self.class_name}",
                args.span("padding"),
                help="Keras accepts padding='valid' or 'same' here",
            )
        config["padding"] = choice_arg(args, "padding", allowed)
        config["data_format"] = self.data_format_arg(args, default_data_format)
        config["dilation_rate"] = int_tuple_arg(args, "dilation_rate", r)
        if self.kind == "conv":
            config["groups"] = int_arg(args, "groups", minimum=1)
            if config["filters"] % config["groups"]:
                raise ConvcError(
                    f"filters={config['filters']} must be divisible by groups={config['groups']}",
                    args.span("groups"),
                )
        if self.kind in ("depthwise", "separable"):
            config["depth_multiplier"] = int_arg(args, "depth_multiplier", minimum=1)
        if self.kind in ("conv", "transpose"):
            strides, dilation = config["strides"], config["dilation_rate"]
            if max(strides) > 1 and max(dilation) > 1:
                raise ConvcError(
                    f"strides={_tuple(strides)} cannot be combined with "
                    f"dilation_rate={_tuple(dilation)}",
                    args.span("strides") if args.given("strides") else args.span("dilation_rate"),
                    help=f"{self.class_name} allows strides > 1 or dilation_rate > 1, not both",
                )
        if self.kind == "transpose":
            config["output_padding"] = self._output_padding(args, config["strides"])
        config["activation"] = parse_activation(args.value("activation"))
        config["use_bias"] = bool_arg(args, "use_bias")
        for name in self.own_params:
            if name.name.endswith("_initializer"):
                config[name.name] = parse_initializer(_value(args, name.name), name.name)
            elif name.name.endswith("_regularizer"):
                config[name.name] = parse_regularizer(_value(args, name.name), name.name)
            elif name.name.endswith("_constraint"):
                config[name.name] = parse_constraint(_value(args, name.name), name.name)
        if self.kind == "conv":
            config["lora_rank"] = optional_int_arg(args, "lora_rank", minimum=1)
            alpha = args.python("lora_alpha")
            if alpha is not None and (
                isinstance(alpha, bool)
                or not isinstance(alpha, int | float)
                or not math.isfinite(alpha)
            ):
                raise ConvcError(
                    f"'lora_alpha' must be a finite number, got lora_alpha={alpha!r}",
                    args.span("lora_alpha"),
                )
            config["lora_alpha"] = alpha if alpha is not None else config["lora_rank"]
            if config["lora_rank"] and config["kernel_constraint"] is not None:
                raise ConvcError(
                    "lora_rank cannot be combined with kernel_constraint (Keras refuses it)",
                    args.span("lora_rank"),
                )
        return config

    def _output_padding(self, args: Bound, strides: tuple[int, ...]) -> tuple[int, ...] | None:
        if args.python("output_padding") is None:
            return None
        output_padding = int_tuple_arg(args, "output_padding", self.rank, minimum=0)
        for axis, (pad, stride) in enumerate(zip(output_padding, strides, strict=True)):
            if pad >= stride:
                raise ConvcError(
                    f"output_padding={_tuple(output_padding)} must be smaller than "
                    f"strides={_tuple(strides)} on every axis (axis {axis}: {pad} >= {stride})",
                    args.span("output_padding"),
                )
        return output_padding

    def build(self, config: dict[str, Any], input_shape: Shape, args: Bound) -> Built:
        self.check_rank(input_shape, config, args)
        data_format = config["data_format"]
        channels = input_shape[channel_axis(self.rank, data_format)]
        if channels is None:
            raise ConvcError(
                f"{self.label(config)} needs a known number of input channels, "
                f"got input shape {format_shape(input_shape)}",
                args.call.name_span,
            )
        groups = config.get("groups", 1)
        if channels % groups:
            raise ConvcError(
                f"{self.label(config)} gets {channels} input channels, which groups={groups} "
                "does not divide",
                args.span("groups"),
                help=f"input shape {format_shape(input_shape)}",
            )
        lengths = [input_shape[a] for a in spatial_axes(self.rank, data_format)]
        out_lengths = [
            self._output_length(config, axis, length, input_shape, args)
            for axis, length in enumerate(lengths)
        ]
        out_channels = {
            "depthwise": channels * config.get("depth_multiplier", 1),
        }.get(self.kind, config.get("filters"))
        output = [input_shape[0]]
        if data_format == "channels_first":
            output += [out_channels, *out_lengths]
        else:
            output += [*out_lengths, out_channels]
        if config["activation"] == "glu":
            output[-1] = _glu_length(output[-1], args)
        return Built(tuple(output), self._variables(config, channels))

    def _output_length(
        self, config: dict[str, Any], axis: int, length: int | None, input_shape: Shape, args: Bound
    ) -> int | None:
        if length is None:
            return None
        k = config["kernel_size"][axis]
        s = config["strides"][axis]
        d = config["dilation_rate"][axis]
        padding = config["padding"]
        if self.kind == "transpose":
            op = config["output_padding"][axis] if config["output_padding"] else None
            out = shapes.transpose_output_length(length, k, s, d, padding, op)
            if out <= 0:  # 'same' on a length-1 axis, an even span and output_padding=0
                span = shapes.effective_kernel(k, d)
                raise ConvcError(
                    f"{self.label(config)} with padding='same' and output_padding={op} would give "
                    f"an output of length {out} on spatial axis {axis}",
                    args.span("output_padding"),
                    help=f"output length = ({length} - 1) * {s} + {span} % 2 + {op} = {out}; "
                    f"input shape {format_shape(input_shape)}; "
                    "drop output_padding or use padding='valid'",
                )
            return out
        out = shapes.conv_output_length(length, k, s, d, padding)
        if out <= 0:
            span = shapes.effective_kernel(k, d)
            kernel = f"kernel_size={k}" + (f" with dilation_rate={d} spans {span}" if d > 1 else "")
            raise ConvcError(
                f"{self.label(config)} with padding='valid' would give an output of length {out} "
                f"on spatial axis {axis}: the input has length {length} and {kernel}",
                args.span("kernel_size"),
                help=f"output length = floor(({length} - {span}) / {s}) + 1 = {out}; input shape "
                f"{format_shape(input_shape)}; use padding='same' or a smaller kernel",
            )
        return out

    def _variables(self, config: dict[str, Any], channels: int) -> tuple[Variable, ...]:
        k = config["kernel_size"]
        bias = config["use_bias"]
        if self.kind == "conv":
            kernel = (*k, channels // config["groups"], config["filters"])
            out = config["filters"]
            found = [Variable("kernel", kernel, config["kernel_initializer"])]
        elif self.kind == "transpose":
            found = [
                Variable("kernel", (*k, config["filters"], channels), config["kernel_initializer"])
            ]
            out = config["filters"]
        elif self.kind == "depthwise":
            m = config["depth_multiplier"]
            found = [Variable("kernel", (*k, channels, m), config["depthwise_initializer"])]
            out = channels * m
        else:
            m = config["depth_multiplier"]
            ones = (1,) * self.rank
            found = [
                Variable("depthwise_kernel", (*k, channels, m), config["depthwise_initializer"]),
                Variable(
                    "pointwise_kernel",
                    (*ones, channels * m, config["filters"]),
                    config["pointwise_initializer"],
                ),
            ]
            out = config["filters"]
        if bias:
            found.append(Variable("bias", (out,), config["bias_initializer"]))
        if config.get("lora_rank"):
            found = self._lora_variables(config, found)
        return tuple(found)

    @staticmethod
    def _lora_variables(config: dict[str, Any], found: list[Variable]) -> list[Variable]:
        """Keras's enable_lora: the kernel freezes, and two low-rank kernels follow the bias
        (A: he_uniform, B: zeros). Keras's .weights.h5 stores the merged kernel without them."""
        kernel = found[0]
        rank = config["lora_rank"]
        span = Span(0, 0, 0, 0)
        a = parse_initializer(Literal("he_uniform", span), "lora_kernel_a")
        b = parse_initializer(Literal("zeros", span), "lora_kernel_b")
        return [
            Variable(kernel.name, kernel.shape, kernel.initializer, trainable=False),
            *found[1:],
            Variable("lora_kernel_a", (*kernel.shape[:-1], rank), a, optional=True),
            Variable("lora_kernel_b", (rank, kernel.shape[-1]), b, optional=True),
        ]


def _glu_length(length: int | None, args: Bound) -> int | None:
    # Keras's glu halves the tensor's last axis (channels only with channels_last). Its symbolic
    # shape inference forgets this; what we compute is what Keras's eager call returns.
    if length is None:
        return None
    if length % 2:
        raise ConvcError(
            f"activation='glu' splits the last axis in halves, but it has {length} entries",
            args.span("activation"),
        )
    return length // 2


def _value(args: Bound, name: str) -> Value:
    """An argument as written, or its default as a literal placed at the layer's name."""
    value = args.value(name)
    return value if value is not None else Literal(args.defaults[name], args.call.name_span)


def _tuple(values: tuple[int, ...]) -> str:
    return "(" + ", ".join(map(str, values)) + ("," if len(values) == 1 else "") + ")"


def convolution_types() -> list[Convolution]:
    return [Convolution(kind, rank) for kind in ("conv", "transpose") for rank in (1, 2, 3)] + [
        Convolution(kind, rank) for kind in ("depthwise", "separable") for rank in (1, 2)
    ]

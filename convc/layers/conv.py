"""The convolution family: Conv, ConvTranspose, DepthwiseConv and SeparableConv, 1-D to 3-D.

One class carries what they share; the four kinds differ only in their signature, their weight
shapes and how the output length is computed. Constructor checks and build checks follow Keras 3
(``keras/src/layers/convolutional/base_*.py``), with Keras's meaning and a located message.
"""

from __future__ import annotations

from convc import geometry
from convc.diagnostics import ConvcError, Span
from convc.geometry import channel_axis, spatial_axes
from convc.layers.activations import parse_activation
from convc.layers.args import (
    Bound,
    Param,
    bool_arg,
    choice_arg,
    int_arg,
    int_tuple_arg,
    lora_alpha_arg,
    optional_int_arg,
    params,
)
from convc.layers.base import Built, LayerType, register
from convc.layers.initializers import parse_initializer, parse_keras_objects
from convc.model import Shape, Variable, format_shape
from convc.specs import ConvKind, ConvSpec
from convc.syntax import Literal


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


class Convolution(LayerType[ConvSpec]):
    """Conv{r}D, Conv{r}DTranspose, DepthwiseConv{r}D, SeparableConv{r}D."""

    spec_class = ConvSpec
    _CLASS = {
        "conv": ("Conv{r}D", ("Convolution{r}D",)),
        "transpose": ("Conv{r}DTranspose", ("Convolution{r}DTranspose",)),
        "depthwise": ("DepthwiseConv{r}D", ()),
        "separable": ("SeparableConv{r}D", ("SeparableConvolution{r}D",)),
    }

    def __init__(self, kind: ConvKind, rank: int):
        name, aliases = self._CLASS[kind]
        self.kind = kind
        self.rank = rank
        self.class_name = name.format(r=rank)
        self.aliases = tuple(a.format(r=rank) for a in aliases)
        self.own_params = _signature(kind, rank)

    def configure(self, args: Bound, default_data_format: str) -> ConvSpec:
        r = self.rank
        filters = None if self.kind == "depthwise" else int_arg(args, "filters", minimum=1)
        kernel_size = int_tuple_arg(args, "kernel_size", r)
        strides = int_tuple_arg(args, "strides", r)
        allowed = (
            ("valid", "same", "causal") if self.kind == "conv" and r == 1 else ("valid", "same")
        )
        if args.python("padding") == "causal" and "causal" not in allowed:
            raise ConvcError(
                f"padding='causal' is only supported by Conv1D, not {self.class_name}",
                args.span("padding"),
                help="Keras accepts padding='valid' or 'same' here",
            )
        padding = choice_arg(args, "padding", allowed)
        data_format = self.data_format_arg(args, default_data_format)
        dilation_rate = int_tuple_arg(args, "dilation_rate", r)
        groups = 1
        if self.kind == "conv":
            groups = int_arg(args, "groups", minimum=1)
            assert filters is not None  # every kind but depthwise takes filters
            if filters % groups:
                raise ConvcError(
                    f"filters={filters} must be divisible by groups={groups}",
                    args.span("groups"),
                )
        depth_multiplier = 1
        if self.kind in ("depthwise", "separable"):
            depth_multiplier = int_arg(args, "depth_multiplier", minimum=1)
        if self.kind in ("conv", "transpose") and max(strides) > 1 and max(dilation_rate) > 1:
            raise ConvcError(
                f"strides={_tuple(strides)} cannot be combined with "
                f"dilation_rate={_tuple(dilation_rate)}",
                args.span("strides") if args.given("strides") else args.span("dilation_rate"),
                help=f"{self.class_name} allows strides > 1 or dilation_rate > 1, not both",
            )
        output_padding = self._output_padding(args, strides) if self.kind == "transpose" else None
        activation = parse_activation(args.value("activation"))
        use_bias = bool_arg(args, "use_bias")
        keras_objects = parse_keras_objects(args, (param.name for param in self.own_params))
        # Every layer's activity_regularizer is the Layer's, not the spec's: it is read here only
        # so that its errors come in the constructor's order.
        del keras_objects["activity_regularizer"]
        lora_rank = lora_alpha = None
        if self.kind == "conv":
            lora_rank, lora_alpha = self._lora(args, keras_objects["kernel_constraint"])
        return ConvSpec(
            kind=self.kind,
            rank=r,
            filters=filters,
            kernel_size=kernel_size,
            strides=strides,
            padding=padding,
            data_format=data_format,
            dilation_rate=dilation_rate,
            groups=groups,
            depth_multiplier=depth_multiplier,
            output_padding=output_padding,
            activation=activation,
            use_bias=use_bias,
            **keras_objects,
            lora_rank=lora_rank,
            lora_alpha=lora_alpha,
        )

    @staticmethod
    def _lora(args: Bound, kernel_constraint: object) -> tuple[int | None, float | None]:
        """``lora_rank`` and ``lora_alpha`` (which defaults to the rank)."""
        rank = optional_int_arg(args, "lora_rank", minimum=1)
        alpha = lora_alpha_arg(args, rank, kernel_constraint)
        return rank, alpha if alpha is not None else rank

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

    def build(self, spec: ConvSpec, input_shape: Shape, args: Bound, name: str) -> Built:
        self.check_rank(input_shape, spec, args, name)
        data_format = spec.data_format
        channels = input_shape[channel_axis(self.rank, data_format)]
        if channels is None:
            raise ConvcError(
                f"{self.label(name)} needs a known number of input channels, "
                f"got input shape {format_shape(input_shape)}",
                args.call.name_span,
            )
        groups = spec.groups
        if channels % groups:
            raise ConvcError(
                f"{self.label(name)} gets {channels} input channels, which groups={groups} "
                "does not divide",
                args.span("groups"),
                help=f"input shape {format_shape(input_shape)}",
            )
        lengths = [input_shape[a] for a in spatial_axes(self.rank, data_format)]
        out_lengths = [
            self._output_length(spec, name, axis, length, input_shape, args)
            for axis, length in enumerate(lengths)
        ]
        out_channels = (
            channels * spec.depth_multiplier if spec.kind == "depthwise" else spec.filters
        )
        output = [input_shape[0]]
        if data_format == "channels_first":
            output += [out_channels, *out_lengths]
        else:
            output += [*out_lengths, out_channels]
        if spec.activation == "glu":
            output[-1] = _glu_length(output[-1], args)
        return Built(tuple(output), self._variables(spec, channels))

    def _output_length(
        self,
        spec: ConvSpec,
        name: str,
        axis: int,
        length: int | None,
        input_shape: Shape,
        args: Bound,
    ) -> int | None:
        if length is None:
            return None
        k = spec.kernel_size[axis]
        s = spec.strides[axis]
        d = spec.dilation_rate[axis]
        padding = spec.padding
        if spec.kind == "transpose":
            op = spec.output_padding[axis] if spec.output_padding else None
            out = geometry.transpose_output_length(length, k, s, d, padding, op)
            if out <= 0:  # 'same' on a length-1 axis, an even span and output_padding=0
                span = geometry.effective_kernel(k, d)
                raise ConvcError(
                    f"{self.label(name)} with padding='same' and output_padding={op} would give "
                    f"an output of length {out} on spatial axis {axis}",
                    args.span("output_padding"),
                    help=f"output length = ({length} - 1) * {s} + {span} % 2 + {op} = {out}; "
                    f"input shape {format_shape(input_shape)}; "
                    "drop output_padding or use padding='valid'",
                )
            return out
        out = geometry.conv_output_length(length, k, s, d, padding)
        if out <= 0:
            span = geometry.effective_kernel(k, d)
            kernel = f"kernel_size={k}" + (f" with dilation_rate={d} spans {span}" if d > 1 else "")
            raise ConvcError(
                f"{self.label(name)} with padding='valid' would give an output of length {out} "
                f"on spatial axis {axis}: the input has length {length} and {kernel}",
                args.span("kernel_size"),
                help=f"output length = floor(({length} - {span}) / {s}) + 1 = {out}; input shape "
                f"{format_shape(input_shape)}; use padding='same' or a smaller kernel",
            )
        return out

    def _variables(self, spec: ConvSpec, channels: int) -> tuple[Variable, ...]:
        k = spec.kernel_size
        # configure gives each kind the filters and the initializers it takes
        if spec.kind == "conv":
            assert spec.filters is not None and spec.kernel_initializer is not None
            kernel = (*k, channels // spec.groups, spec.filters)
            out = spec.filters
            found = [Variable("kernel", kernel, spec.kernel_initializer)]
        elif spec.kind == "transpose":
            assert spec.filters is not None and spec.kernel_initializer is not None
            found = [Variable("kernel", (*k, spec.filters, channels), spec.kernel_initializer)]
            out = spec.filters
        elif spec.kind == "depthwise":
            assert spec.depthwise_initializer is not None
            m = spec.depth_multiplier
            found = [Variable("kernel", (*k, channels, m), spec.depthwise_initializer)]
            out = channels * m
        else:
            assert spec.filters is not None
            assert spec.depthwise_initializer is not None
            assert spec.pointwise_initializer is not None
            m = spec.depth_multiplier
            ones = (1,) * self.rank
            found = [
                Variable("depthwise_kernel", (*k, channels, m), spec.depthwise_initializer),
                Variable(
                    "pointwise_kernel",
                    (*ones, channels * m, spec.filters),
                    spec.pointwise_initializer,
                ),
            ]
            out = spec.filters
        if spec.use_bias:
            found.append(Variable("bias", (out,), spec.bias_initializer))
        if spec.lora_rank:
            found = self._lora_variables(spec.lora_rank, found)
        return tuple(found)

    @staticmethod
    def _lora_variables(rank: int, found: list[Variable]) -> list[Variable]:
        """Keras's enable_lora: the kernel freezes, and two low-rank kernels follow the bias
        (A: he_uniform, B: zeros). Keras's .weights.h5 stores the merged kernel without them."""
        kernel = found[0]
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


def _tuple(values: tuple[int, ...]) -> str:
    return "(" + ", ".join(map(str, values)) + ("," if len(values) == 1 else "") + ")"


register(
    *(Convolution(kind, rank) for kind in ("conv", "transpose") for rank in (1, 2, 3)),
    *(Convolution(kind, rank) for kind in ("depthwise", "separable") for rank in (1, 2)),
)

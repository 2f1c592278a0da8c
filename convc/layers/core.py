"""The core layers: Dense, Flatten, Reshape, Permute and Identity.

Their checks are Keras 3's (``keras/src/layers/core/dense.py``, ``layers/reshaping/``), with
Keras's meaning and a located message that repeats the bad value. Two Keras facts shape them:
``Dense`` acts on the last axis of an input of any rank >= 2 (a kernel ``(in, units)``), and
``Flatten(data_format="channels_first")`` moves the channels last before flattening, so a
flattened image is in (height, width, channels) order whatever its data_format.
"""

from __future__ import annotations

import math

from convc.diagnostics import ConvcError, Span
from convc.layers.activations import parse_activation
from convc.layers.args import Bound, bool_arg, check_magnitude, is_int, lora_alpha_arg, params
from convc.layers.base import Built, LayerType, layer_type
from convc.layers.initializers import parse_initializer, parse_keras_objects
from convc.model import Shape, Variable, format_shape, known_dim, sample_shape
from convc.specs import DenseSpec, FlattenSpec, PassThroughSpec, PermuteSpec, ReshapeSpec
from convc.syntax import Literal


def finite_number(args: Bound, name: str, what: str) -> float:
    """A number argument (an int, a float or a bool, as Keras's comparisons take them)."""
    value = args.python(name)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConvcError(
            f"'{name}' of {what} must be a finite number, got {name}={value!r}", args.span(name)
        )
    return float(value)


@layer_type
class Dense(LayerType[DenseSpec]):
    spec_class = DenseSpec
    class_name = "Dense"
    own_params = params(
        "units",
        ("activation", None),
        ("use_bias", True),
        ("kernel_initializer", "glorot_uniform"),
        ("bias_initializer", "zeros"),
        ("kernel_regularizer", None),
        ("bias_regularizer", None),
        ("activity_regularizer", None),
        ("kernel_constraint", None),
        ("bias_constraint", None),
        ("lora_rank", None),
        ("lora_alpha", None),
        ("quantization_config", None),
    )

    def configure(self, args: Bound, default_data_format: str) -> DenseSpec:
        units = args.python("units")
        if not is_int(units) or units <= 0:
            raise ConvcError(
                f"'units' must be a positive integer, got units={units!r}", args.span("units")
            )
        check_magnitude(int(units), "units", args.span("units"))
        activation = parse_activation(args.value("activation"))
        use_bias = bool_arg(args, "use_bias")
        objects = parse_keras_objects(args, (param.name for param in self.own_params))
        del objects["activity_regularizer"]  # the Layer's; read here for the errors' order
        lora_rank, lora_alpha = _lora(args, objects["kernel_constraint"])
        if args.python("quantization_config") is not None:
            raise ConvcError(
                "a quantized Dense (quantization_config=...) is not supported: convc computes "
                "in float32",
                args.span("quantization_config"),
            )
        return DenseSpec(
            units=int(units),
            activation=activation,
            use_bias=use_bias,
            **objects,
            lora_rank=lora_rank,
            lora_alpha=lora_alpha,
        )

    def build(self, spec: DenseSpec, input_shape: Shape, args: Bound, name: str) -> Built:
        if len(input_shape) < 2:
            raise ConvcError(
                f"{self.label(name)} expects an input of rank 2 or more, got shape "
                f"{format_shape(input_shape)}",
                args.call.name_span,
            )
        features = known_dim(input_shape, -1)  # not the batch axis: the rank is 2 or more
        kernel = (features, spec.units)
        found = [Variable("kernel", kernel, spec.kernel_initializer)]
        if spec.use_bias:
            found.append(Variable("bias", (spec.units,), spec.bias_initializer))
        if spec.lora_rank:
            a = parse_initializer(Literal("he_uniform", Span(0, 0, 0, 0)), "lora_kernel_a")
            b = parse_initializer(Literal("zeros", Span(0, 0, 0, 0)), "lora_kernel_b")
            found = [
                Variable("kernel", kernel, spec.kernel_initializer, trainable=False),
                *found[1:],
                Variable("lora_kernel_a", (features, spec.lora_rank), a, optional=True),
                Variable("lora_kernel_b", (spec.lora_rank, spec.units), b, optional=True),
            ]
        units = spec.units
        if spec.activation == "glu":  # Keras's eager glu halves the last axis
            if units % 2:
                raise ConvcError(
                    f"activation='glu' splits the last axis in halves, but it has {units} entries",
                    args.span("activation"),
                )
            units //= 2
        return Built((*input_shape[:-1], units), tuple(found))


def _lora(args: Bound, kernel_constraint: object) -> tuple[int | None, float | None]:
    """``lora_rank`` (0 or None: no LoRA, as ``if self.lora_rank`` reads it) and the alpha that
    scales the LoRA kernels."""
    rank = args.python("lora_rank")
    if rank is not None and (not is_int(rank) or rank < 0):
        raise ConvcError(
            f"'lora_rank' must be a positive integer or None, got lora_rank={rank!r}",
            args.span("lora_rank"),
        )
    rank = int(rank) if rank else None
    lora_alpha_arg(args, rank, kernel_constraint)
    if rank:
        check_magnitude(rank, "lora_rank", args.span("lora_rank"))
    # Keras 3.15.1's Dense.build calls enable_lora(rank) without lora_alpha, which resets the
    # alpha to the rank: the alpha given is checked, and the rank is what scales.
    return rank, (float(rank) if rank else None)


@layer_type
class Flatten(LayerType[FlattenSpec]):
    spec_class = FlattenSpec
    class_name = "Flatten"
    own_params = params(("data_format", None))

    def configure(self, args: Bound, default_data_format: str) -> FlattenSpec:
        return FlattenSpec(data_format=self.data_format_arg(args, default_data_format))

    def build(self, spec: FlattenSpec, input_shape: Shape, args: Bound, name: str) -> Built:
        return Built((input_shape[0], math.prod(sample_shape(input_shape))))


@layer_type
class Reshape(LayerType[ReshapeSpec]):
    spec_class = ReshapeSpec
    class_name = "Reshape"
    own_params = params("target_shape")

    def configure(self, args: Bound, default_data_format: str) -> ReshapeSpec:
        value = args.python("target_shape")
        span = args.span("target_shape")
        if not isinstance(value, tuple | list):
            raise ConvcError(
                f"'target_shape' must be a tuple of integers, got target_shape={value!r}",
                span,
                help="e.g. Reshape((4, 4, 2)); batch excluded",
            )
        shape = []
        for entry in value:
            if entry is None:  # Keras takes None as the unknown axis when it is called
                entry = -1
            if not is_int(entry):
                raise ConvcError(
                    f"every entry of 'target_shape' must be an integer, got target_shape={value!r}",
                    span,
                )
            if entry < -1:
                raise ConvcError(
                    "each entry of 'target_shape' must be a non-negative integer, or -1 for a "
                    f"single unknown dimension, got target_shape={tuple(value)}",
                    span,
                )
            check_magnitude(int(entry), "target_shape", span)
            shape.append(int(entry))
        if shape.count(-1) > 1:
            raise ConvcError(
                "'target_shape' can have at most one unknown dimension (-1 or None), got "
                f"target_shape={tuple(value)}",
                span,
            )
        return ReshapeSpec(target_shape=tuple(shape))

    def build(self, spec: ReshapeSpec, input_shape: Shape, args: Bound, name: str) -> Built:
        size = math.prod(sample_shape(input_shape))
        target = list(spec.target_shape)
        known = math.prod(d for d in target if d != -1)
        shown = format_shape(tuple(spec.target_shape))
        if -1 in target:
            if known == 0:
                raise ConvcError(
                    f"{self.label(name)} cannot infer the -1 of {shown}: the other entries "
                    "multiply to 0",
                    args.span("target_shape"),
                )
            if size % known:
                raise ConvcError(
                    f"{self.label(name)} cannot reshape an input of shape "
                    f"{format_shape(input_shape)} ({size} entries per sample) to {shown}: "
                    f"{size} is not a multiple of {known}",
                    args.span("target_shape"),
                )
            target[target.index(-1)] = size // known
        elif known != size:
            raise ConvcError(
                f"{self.label(name)} cannot reshape an input of shape "
                f"{format_shape(input_shape)} ({size} entries per sample) to {shown} "
                f"({known} entries): the total size must be unchanged",
                args.span("target_shape"),
            )
        return Built((input_shape[0], *target))


@layer_type
class Permute(LayerType[PermuteSpec]):
    spec_class = PermuteSpec
    class_name = "Permute"
    own_params = params("dims")

    def configure(self, args: Bound, default_data_format: str) -> PermuteSpec:
        value = args.python("dims")
        span = args.span("dims")
        if (
            not isinstance(value, tuple | list)
            or not all(is_int(d) for d in value)
            or sorted(int(d) for d in value) != list(range(1, len(value) + 1))
        ):
            raise ConvcError(
                "'dims' of a Permute layer must be a permutation of 1 .. n (the batch axis "
                f"is 0 and not included), got dims={value!r}",
                span,
                help="e.g. Permute((2, 1)) swaps the two axes after the batch",
            )
        return PermuteSpec(dims=tuple(int(d) for d in value))

    def build(self, spec: PermuteSpec, input_shape: Shape, args: Bound, name: str) -> Built:
        if len(input_shape) != len(spec.dims) + 1:
            raise ConvcError(
                f"{self.label(name)} with dims={spec.dims} expects an input of rank "
                f"{len(spec.dims) + 1}, got shape {format_shape(input_shape)}",
                args.span("dims"),
            )
        return Built((input_shape[0], *(input_shape[d] for d in spec.dims)))


@layer_type
class Identity(LayerType[PassThroughSpec]):
    spec_class = PassThroughSpec
    class_name = "Identity"

    def configure(self, args: Bound, default_data_format: str) -> PassThroughSpec:
        return PassThroughSpec(arguments=())

    def build(self, spec: PassThroughSpec, input_shape: Shape, args: Bound, name: str) -> Built:
        return Built(input_shape)

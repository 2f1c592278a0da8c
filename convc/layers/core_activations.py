"""Activation layers with arguments: LeakyReLU, PReLU, ELU and Softmax.

Keras 3's defaults and checks (``keras/src/layers/activations/``): ``LeakyReLU``'s slope is 0.3
(not the 0.2 of the ``leaky_relu`` activation) and its deprecated ``alpha`` keyword, when given,
replaces ``negative_slope``; ``PReLU``'s ``alpha`` weight has the input's shape without the
batch axis, with a 1 on each shared axis (``shared_axes=i`` sets entry ``i - 1``, so 0 and
negative axes index from the end, as Python does); ``Softmax`` takes one axis or several.
"""

from __future__ import annotations

from convc.diagnostics import ConvcError
from convc.layers.args import Bound, is_int, params
from convc.layers.base import Built, LayerType, layer_type
from convc.layers.core import finite_number
from convc.layers.initializers import parse_keras_objects
from convc.model import Shape, Variable, format_shape, sample_shape
from convc.specs import ELUSpec, LeakyReLUSpec, PReLUSpec, SoftmaxSpec, SpecT


class _SameShape(LayerType[SpecT]):
    def build(self, spec: SpecT, input_shape: Shape, args: Bound, name: str) -> Built:
        return Built(input_shape)


@layer_type
class LeakyReLU(_SameShape[LeakyReLUSpec]):
    spec_class = LeakyReLUSpec
    class_name = "LeakyReLU"
    own_params = params(("negative_slope", 0.3)) + params(("alpha", None), keyword_only=True)

    def configure(self, args: Bound, default_data_format: str) -> LeakyReLUSpec:
        name = "alpha" if args.given("alpha") else "negative_slope"  # Keras: alpha wins
        value = args.python(name)
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise ConvcError(
                f"the negative slope of a LeakyReLU layer cannot be None or negative, got "
                f"{name}={value!r}",
                args.span(name),
            )
        return LeakyReLUSpec(negative_slope=finite_number(args, name, "a LeakyReLU layer"))


@layer_type
class ELU(_SameShape[ELUSpec]):
    spec_class = ELUSpec
    class_name = "ELU"
    own_params = params(("alpha", 1.0))

    def configure(self, args: Bound, default_data_format: str) -> ELUSpec:
        return ELUSpec(alpha=finite_number(args, "alpha", "an ELU layer"))


@layer_type
class PReLU(LayerType[PReLUSpec]):
    spec_class = PReLUSpec
    class_name = "PReLU"
    own_params = params(
        ("alpha_initializer", "Zeros"),
        ("alpha_regularizer", None),
        ("alpha_constraint", None),
        ("shared_axes", None),
    )

    def configure(self, args: Bound, default_data_format: str) -> PReLUSpec:
        objects = parse_keras_objects(
            args, ("alpha_initializer", "alpha_regularizer", "alpha_constraint")
        )
        initializer, regularizer, constraint = objects.values()
        shared = args.python("shared_axes")
        if shared is not None:
            shared = list(shared) if isinstance(shared, tuple | list) else [shared]
            if not all(is_int(axis) for axis in shared):
                raise ConvcError(
                    f"'shared_axes' must be an axis or a list of axes (integers), got "
                    f"shared_axes={args.python('shared_axes')!r}",
                    args.span("shared_axes"),
                )
            shared = tuple(int(axis) for axis in shared)
        return PReLUSpec(
            alpha_initializer=initializer,
            alpha_regularizer=regularizer,
            alpha_constraint=constraint,
            shared_axes=shared,
        )

    def build(self, spec: PReLUSpec, input_shape: Shape, args: Bound, name: str) -> Built:
        shape = alpha_shape(spec, input_shape, args, self.label(name))
        return Built(input_shape, (Variable("alpha", shape, spec.alpha_initializer),))


def alpha_shape(spec: PReLUSpec, input_shape: Shape, args: Bound, label: str) -> tuple[int, ...]:
    """Keras's PReLU.build: the input's shape without the batch axis, and for each shared axis
    ``i``, entry ``i - 1`` set to 1 (Python indexing: 0 and negative axes count from the end)."""
    shape = list(sample_shape(input_shape))
    for axis in spec.shared_axes or ():
        if not -len(shape) <= axis - 1 < len(shape):
            raise ConvcError(
                f"{label} cannot share axis {axis} of an input of shape "
                f"{format_shape(input_shape)}",
                args.span("shared_axes"),
                help=f"shared axes are 1 to {len(shape)} (the batch axis is 0)",
            )
        shape[axis - 1] = 1
    return tuple(shape)


@layer_type
class Softmax(_SameShape[SoftmaxSpec]):
    spec_class = SoftmaxSpec
    class_name = "Softmax"
    own_params = params(("axis", -1))

    def configure(self, args: Bound, default_data_format: str) -> SoftmaxSpec:
        value = args.python("axis")
        span = args.span("axis")
        if value is None:
            raise ConvcError(
                "Softmax(axis=None) normalizes over every axis, the batch axis included: "
                "convc compiles models whose samples are independent",
                span,
                help="give the axes after the batch, e.g. axis=(1, 2, 3)",
            )
        axes = list(value) if isinstance(value, tuple | list) else [value]
        if not axes or not all(is_int(a) for a in axes):
            raise ConvcError(
                f"'axis' of a Softmax layer must be an integer or a list of integers, got "
                f"axis={value!r}",
                span,
            )
        return SoftmaxSpec(axis=tuple(int(a) for a in axes))

    def build(self, spec: SoftmaxSpec, input_shape: Shape, args: Bound, name: str) -> Built:
        softmax_axes(spec.axis, len(input_shape), args, self.label(name))
        return Built(input_shape)


def softmax_axes(axes: tuple[int, ...], rank: int, args: Bound, label: str) -> tuple[int, ...]:
    """The Keras logical axes of a Softmax, each checked: in range, not the batch, not twice."""
    span = args.span("axis")
    found = []
    for axis in axes:
        if not -rank <= axis < rank:
            raise ConvcError(
                f"{label}: axis {axis} is out of range for an input of rank {rank} (axes "
                f"{-rank} to {rank - 1})",
                span,
            )
        if axis % rank == 0:
            raise ConvcError(
                f"{label} along axis 0 would normalize across the batch: convc compiles "
                "models whose samples are independent",
                span,
            )
        if axis % rank in found:
            raise ConvcError(
                f"{label}: axis {axis % rank} appears more than once in axis={axes}", span
            )
        found.append(axis % rank)
    return tuple(found)

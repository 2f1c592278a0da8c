"""Layers that only apply an activation: ``Activation`` and ``ReLU``.

``Activation`` takes any name ``activation=`` takes. ``ReLU`` is Keras's general rectifier,
``max_value``, ``negative_slope`` and ``threshold`` included; its constructor checks are Keras's.
Both keep their input's shape (``Activation('glu')`` aside, which halves the last axis).
"""

from __future__ import annotations

import math

from convc.diagnostics import ConvcError
from convc.layers.activations import parse_activation
from convc.layers.args import Bound, params
from convc.layers.base import Built, LayerType, layer_type
from convc.model import Shape
from convc.specs import ActivationSpec, ReLUSpec


@layer_type
class Activation(LayerType[ActivationSpec]):
    spec_class = ActivationSpec
    class_name = "Activation"
    own_params = params("activation")

    def configure(self, args: Bound, default_data_format: str) -> ActivationSpec:
        return ActivationSpec(activation=parse_activation(args.value("activation")))

    def build(self, spec: ActivationSpec, input_shape: Shape, args: Bound, name: str) -> Built:
        if spec.activation != "glu":
            return Built(input_shape)
        last = input_shape[-1]
        if last is not None and last % 2:
            raise ConvcError(
                f"activation='glu' splits the last axis in halves, but it has {last} entries",
                args.span("activation"),
            )
        return Built((*input_shape[:-1], None if last is None else last // 2))


@layer_type
class ReLU(LayerType[ReLUSpec]):
    spec_class = ReLUSpec
    class_name = "ReLU"
    own_params = params(("max_value", None), ("negative_slope", 0.0), ("threshold", 0.0))

    def configure(self, args: Bound, default_data_format: str) -> ReLUSpec:
        max_value = None if args.python("max_value") is None else _number(args, "max_value")
        return ReLUSpec(
            max_value=max_value,
            negative_slope=_number(args, "negative_slope"),
            threshold=_number(args, "threshold"),
        )

    def build(self, spec: ReLUSpec, input_shape: Shape, args: Bound, name: str) -> Built:
        return Built(input_shape)


def _number(args: Bound, name: str) -> float:
    """A ReLU argument, checked as Keras checks it: a finite number, not negative."""
    value = args.python(name)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConvcError(
            f"'{name}' of a ReLU layer must be a number, got {name}={value!r}",
            args.span(name),
        )
    if not math.isfinite(value) or value < 0:
        raise ConvcError(
            f"'{name}' of a ReLU layer cannot be negative, got {name}={value}",
            args.span(name),
        )
    return float(value)

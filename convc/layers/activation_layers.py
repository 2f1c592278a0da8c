"""Layers that only apply an activation: ``Activation`` and ``ReLU``.

``Activation`` takes any name ``activation=`` takes. ``ReLU`` is Keras's general rectifier,
``max_value``, ``negative_slope`` and ``threshold`` included; its constructor checks are Keras's.
Both keep their input's shape (``Activation('glu')`` aside, which halves the last axis).
"""

from __future__ import annotations

import math
from typing import Any

from convc.diagnostics import ConvcError
from convc.layers.activations import parse_activation
from convc.layers.args import Bound, params
from convc.layers.base import Built, LayerType


class Activation(LayerType):
    family = "activation"
    class_name = "Activation"
    own_params = params("activation")

    def configure(self, args: Bound, default_data_format: str) -> dict[str, Any]:
        return {"activation": parse_activation(args.value("activation"))}

    def build(self, config, input_shape, args) -> Built:
        if config["activation"] != "glu":
            return Built(input_shape)
        last = input_shape[-1]
        if last is not None and last % 2:
            raise ConvcError(
                f"activation='glu' splits the last axis in halves, but it has {last} entries",
                args.span("activation"),
            )
        return Built((*input_shape[:-1], None if last is None else last // 2))


class ReLU(LayerType):
    family = "relu"
    class_name = "ReLU"
    own_params = params(("max_value", None), ("negative_slope", 0.0), ("threshold", 0.0))

    def configure(self, args: Bound, default_data_format: str) -> dict[str, Any]:
        config = {}
        for name in ("max_value", "negative_slope", "threshold"):
            value = args.python(name)
            if name == "max_value" and value is None:
                config[name] = None
                continue
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
            config[name] = float(value)
        return config

    def build(self, config, input_shape, args) -> Built:
        return Built(input_shape)


def activation_layer_types() -> list[LayerType]:
    return [Activation(), ReLU()]

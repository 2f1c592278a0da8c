"""The resolved program: a Keras Sequential model as data, with every shape known.

Resolve builds it from the syntax tree; weights, lowering, the reference and ``summary`` read it.
Shapes are Keras's logical shapes, batch first (``None`` when the batch is dynamic).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from convc.diagnostics import Span

if TYPE_CHECKING:
    from convc.layers.base import LayerType
    from convc.layers.initializers import Initializer

Shape = tuple[int | None, ...]


def format_shape(shape: Shape) -> str:
    inner = ", ".join("None" if d is None else str(d) for d in shape)
    return f"({inner},)" if len(shape) == 1 else f"({inner})"


@dataclass(frozen=True)
class Variable:
    """A weight of a layer, in Keras's own layout (as ``layer.weights`` lists it)."""

    name: str
    shape: tuple[int, ...]
    initializer: Initializer
    trainable: bool = True
    optional: bool = False  # may be absent from a weights file (a LoRA layer's LoRA kernels)

    @property
    def size(self) -> int:
        return math.prod(self.shape)


@dataclass(frozen=True)
class ModelInput:
    name: str
    shape: Shape  # batch first
    dtype: str
    span: Span


@dataclass(frozen=True, eq=False)
class Layer:
    """One layer: its Keras class, Keras name, normalized arguments and shapes."""

    type: LayerType
    name: str
    weights_key: str  # the group name Keras's .weights.h5 uses for this layer
    config: dict[str, Any]
    input_shape: Shape
    output_shape: Shape
    variables: tuple[Variable, ...]
    span: Span

    @property
    def class_name(self) -> str:
        return self.type.class_name

    @property
    def family(self) -> str:
        return self.type.family

    @property
    def parameter_count(self) -> int:
        return sum(v.size for v in self.variables)

    @property
    def trainable_parameter_count(self) -> int:
        if not self.config.get("trainable", True):
            return 0
        return sum(v.size for v in self.variables if v.trainable)


@dataclass(frozen=True, eq=False)
class Model:
    name: str
    input: ModelInput
    layers: tuple[Layer, ...]

    @property
    def output_shape(self) -> Shape:
        return self.layers[-1].output_shape if self.layers else self.input.shape

    @property
    def parameter_count(self) -> int:
        return sum(layer.parameter_count for layer in self.layers)

"""The resolved program: a Keras model as a graph of layer applications, every shape known.

A front end (the ``.conv`` resolver) builds it; weights, lowering, the reference, ``check`` and
``summary`` read it. The graph is Keras's functional model: ``Tensor``s flow from the graph's
``ModelInput``s through ``Node``s, each one application of a ``Layer`` to its input tensors. A
layer applied twice (a shared layer) is one ``Layer``, with one set of weights, and two nodes. A
Sequential model is a chain: one input, one node per layer, the last node's output the output.

Shapes are Keras's logical shapes, batch first (``None`` when the batch is dynamic). This module
imports nothing of the front end: a layer's type is any object with the ``LayerKind`` protocol,
and its arguments are its family's spec (``convc.specs``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property
from typing import Protocol

from convc.diagnostics import ConvcError, Span
from convc.records import fast_init
from convc.specs import Draw, LayerSpec, TrainingOnly

Shape = tuple[int | None, ...]


def format_shape(shape: Shape) -> str:
    inner = ", ".join("None" if d is None else str(d) for d in shape)
    return f"({inner},)" if len(shape) == 1 else f"({inner})"


def known_dim(shape: Shape, axis: int) -> int:
    """``shape[axis]`` where it is known: any axis but the batch's (resolve refuses an unknown
    dimension anywhere else in an input, and every layer's build computes its output's), or an
    axis the caller has checked."""
    dim = shape[axis]
    assert dim is not None, f"axis {axis} of {format_shape(shape)} is unknown"
    return dim


def sample_shape(shape: Shape) -> tuple[int, ...]:
    """``shape`` without its batch axis: one sample's shape, every dimension known (see
    ``known_dim``)."""
    return tuple(known_dim(shape, axis) for axis in range(1, len(shape)))


class LayerKind(Protocol):
    """What the IR needs of a layer's type: its Keras class and rank, and whether it is called
    on a list of tensors (a merge). Its family is its spec's class."""

    class_name: str
    rank: int
    takes_list: bool


@fast_init
@dataclass(frozen=True)
class Variable:
    """A weight of a layer, in Keras's own layout (as ``layer.weights`` lists it)."""

    name: str
    shape: tuple[int, ...]
    initializer: Draw
    trainable: bool = True
    optional: bool = False  # may be absent from a weights file (a LoRA layer's LoRA kernels)
    dtype: str = "float32"  # "int32" for a counter (Normalization's count), unused at inference

    @property
    def size(self) -> int:
        return math.prod(self.shape)


@fast_init
@dataclass(frozen=True, eq=False)
class Tensor:
    """A value of the graph: a model input or a node's output, named as its ONNX value is."""

    name: str
    shape: Shape

    @property
    def rank(self) -> int:
        return len(self.shape)


@fast_init
@dataclass(frozen=True, eq=False)
class ModelInput(Tensor):
    """A graph input, as ``keras.Input`` declares it."""

    dtype: str = "float32"
    span: Span = field(default_factory=lambda: Span(0, 0, 0, 0))


@fast_init
@dataclass(frozen=True, eq=False)
class Layer:
    """One layer object: its Keras class, Keras name, its family's arguments (``spec``), the
    arguments every Keras layer takes, and its weights."""

    type: LayerKind
    name: str
    spec: LayerSpec
    variables: tuple[Variable, ...]
    span: Span  # where it is constructed
    trainable: bool = True
    autocast: bool = True
    activity_regularizer: TrainingOnly | None = None

    @property
    def class_name(self) -> str:
        return self.type.class_name

    @property
    def parameter_count(self) -> int:
        return sum(v.size for v in self.variables)

    @property
    def trainable_parameter_count(self) -> int:
        if not self.trainable:
            return 0
        return sum(v.size for v in self.variables if v.trainable)


@fast_init
@dataclass(frozen=True, eq=False)
class Node:
    """One application of a layer to input tensors, giving one output tensor.

    Its name is its output's: the layer's name for the layer's first application, ``name[1]``,
    ``name[2]`` ... for later ones (Keras's "Connected to" notation). Single-input rules read
    ``spec``, ``type``, ``input_shape`` and ``output_shape`` straight from the node."""

    layer: Layer
    inputs: tuple[Tensor, ...]
    output: Tensor
    span: Span  # where it is applied

    @property
    def name(self) -> str:
        return self.output.name

    @property
    def spec(self) -> LayerSpec:
        return self.layer.spec

    @property
    def type(self) -> LayerKind:
        return self.layer.type

    @property
    def class_name(self) -> str:
        return self.layer.class_name

    @property
    def input_shape(self) -> Shape:
        return self.inputs[0].shape

    @property
    def output_shape(self) -> Shape:
        return self.output.shape


@fast_init
@dataclass(frozen=True, eq=False)
class Model:
    """A Keras model: inputs, nodes in an order where every tensor is made before it is used,
    and outputs. ``warnings`` are what resolve noticed but did not refuse (an unused input)."""

    name: str
    inputs: tuple[ModelInput, ...]
    nodes: tuple[Node, ...]
    outputs: tuple[Tensor, ...]
    warnings: tuple[ConvcError, ...] = ()

    @property
    def input(self) -> ModelInput:
        """The model's one input; a model with several has no single one."""
        if len(self.inputs) != 1:
            raise ConvcError(
                f"the model has {len(self.inputs)} inputs: "
                + ", ".join(i.name for i in self.inputs),
                help="give each input by name",
            )
        return self.inputs[0]

    @cached_property
    def layers(self) -> tuple[Layer, ...]:
        """Every layer once, in the order of its first application."""
        seen: dict[int, Layer] = {}
        for node in self.nodes:
            seen.setdefault(id(node.layer), node.layer)
        return tuple(seen.values())

    @cached_property
    def consumers(self) -> dict[int, tuple[Node, ...]]:
        """For each tensor (by ``id``), the nodes that read it, in order."""
        found: dict[int, list[Node]] = {}
        for node in self.nodes:
            for tensor in dict.fromkeys(node.inputs):
                found.setdefault(id(tensor), []).append(node)
        return {key: tuple(value) for key, value in found.items()}

    @cached_property
    def producers(self) -> dict[int, Node]:
        return {id(node.output): node for node in self.nodes}

    @property
    def is_chain(self) -> bool:
        """A Sequential model: one input, one output, each node reading the one before."""
        if len(self.inputs) != 1 or len(self.outputs) != 1:
            return False
        previous: Tensor = self.inputs[0]
        for node in self.nodes:
            if len(node.inputs) != 1 or node.inputs[0] is not previous:
                return False
            previous = node.output
        return self.outputs[0] is previous

    @property
    def output_shape(self) -> Shape:
        return self.outputs[0].shape

    @property
    def parameter_count(self) -> int:
        return sum(layer.parameter_count for layer in self.layers)

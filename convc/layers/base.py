"""What every layer type shares: its signature, naming, data_format, and the build contract.

A layer type is constructed once per Keras class (``Conv2D``, ``Cropping3D`` ...). ``configure``
does what the Keras constructor does (normalize and validate arguments into the family's spec,
``convc.specs``); ``build`` does what Keras does when the layer first sees its input shape (check
it, compute the output shape and the weights' shapes). Both raise located ``ConvcError``s.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from convc.diagnostics import ConvcError
from convc.layers.args import Bound, Param, choice_arg, params
from convc.model import Shape, Variable, format_shape
from convc.names import snake_case
from convc.records import fast_init
from convc.specs import LayerSpec, SpatialSpec, SpecT

COMMON_PARAMS = params(
    ("name", None),
    ("dtype", None),
    ("trainable", True),
    ("autocast", True),
    ("activity_regularizer", None),
    # Keras 2 forms of declaring the model's input on its first layer:
    ("input_shape", None),
    ("input_dim", None),
    ("batch_size", None),
    ("batch_input_shape", None),
    keyword_only=True,
)
"""Keyword arguments every Keras layer takes (``Layer.__init__``)."""

DATA_FORMATS = ("channels_last", "channels_first")


@fast_init
@dataclass(frozen=True)
class Built:
    output_shape: Shape
    variables: tuple[Variable, ...] = ()


class LayerType(Generic[SpecT]):
    """A Keras layer class. Subclasses fix the family (its spec class); instances fix the rank."""

    spec_class: type[LayerSpec]
    """The family: lowering and the reference find this layer's rule and function by it."""
    class_name: str
    rank: int = 0
    aliases: tuple[str, ...] = ()
    own_params: tuple[Param, ...] = ()
    takes_list: bool = False
    """Whether the layer is called on a list of tensors (a merge) rather than on one tensor."""

    @property
    def keras_class(self) -> str:
        """Where Keras defines the class (the tests' oracle imports it from there)."""
        return f"keras.layers.{self.class_name}"

    @functools.cached_property
    def prefix(self) -> str:
        """The stem of Keras's automatic layer names and weight-file keys."""
        return snake_case(self.class_name)

    @functools.cached_property
    def signature(self) -> tuple[Param, ...]:
        own = {p.name for p in self.own_params}
        return self.own_params + tuple(p for p in COMMON_PARAMS if p.name not in own)

    def configure(self, args: Bound, default_data_format: str) -> SpecT:
        raise NotImplementedError

    def inner_prefixes(self, spec: SpecT) -> tuple[str, ...]:
        """The name prefixes of the layers this layer's Keras constructor makes inside it: each
        takes an automatic name, as the next layer of its class would."""
        return ()

    def build(self, spec: SpecT, input_shape: Shape, args: Bound, name: str) -> Built:
        """The output shape and weights of the layer called ``name`` on ``input_shape``."""
        raise NotImplementedError

    def build_inputs(
        self,
        spec: SpecT,
        input_shapes: tuple[Shape, ...],
        args: Bound,
        name: str,
        input_names: Sequence[str],
    ) -> Built:
        """``build`` for the shapes of every input (named as the file names them, for errors);
        a one-input layer has one."""
        return self.build(spec, input_shapes[0], args, name)

    # Helpers shared by the families.

    def data_format_arg(self, args: Bound, default: str) -> str:
        if args.python("data_format") is None:
            return default
        return choice_arg(args, "data_format", DATA_FORMATS)

    def check_rank(self, input_shape: Shape, spec: SpatialSpec, args: Bound, name: str) -> None:
        expected = self.rank + 2
        if len(input_shape) != expected:
            layout = self.layout_words(spec.data_format)
            raise ConvcError(
                f"{self.label(name)} expects a {expected}-D input {layout}, "
                f"got shape {format_shape(input_shape)}",
                args.call.name_span,
            )

    def label(self, name: str) -> str:
        """How build-time errors name the layer: ``Conv2D 'enc1'``."""
        return f"{self.class_name} '{name}'"

    def layout_words(self, data_format: str) -> str:
        spatial = {1: ["steps"], 2: ["height", "width"], 3: ["depth", "height", "width"]}[self.rank]
        axes = (
            ["batch", *spatial, "channels"]
            if data_format == "channels_last"
            else ["batch", "channels", *spatial]
        )
        return "(" + ", ".join(axes) + ")"


REGISTERED: dict[str, LayerType] = {}
"""Every layer type by Keras class name and alias, as the family modules register them."""


def register(*layer_types: LayerType) -> None:
    """Register layer types under their class names and aliases: one name, one type."""
    for registered in layer_types:
        for name in (registered.class_name, *registered.aliases):
            if name in REGISTERED:
                raise RuntimeError(f"two layer types are named {name}")
            REGISTERED[name] = registered


LayerClass = TypeVar("LayerClass", bound=type[LayerType])


def layer_type(cls: LayerClass) -> LayerClass:
    """Register a layer type that takes no arguments (a class decorator)."""
    register(cls())
    return cls

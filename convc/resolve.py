"""Turn parsed statements into a ``Model``: Keras's Sequential, resolved and shape-checked.

This is where the file's meaning is decided: which statement is the input, which class each call
names, each layer's Keras name (auto-named exactly as Keras 3 names it in a fresh session) and
weight-file key, and every layer's output shape. Errors are collected so that one run reports
several independent mistakes; after a layer fails, later layers are still checked for everything
that does not depend on its output shape.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Any

from convc import layers as registry
from convc.diagnostics import ConvcError, ConvcErrors, Span
from convc.layers.args import Bound, bind, bool_arg, params, string_arg
from convc.layers.base import DATA_FORMATS, LayerType, snake_case
from convc.layers.initializers import parse_regularizer
from convc.limits import MAX_ERRORS, MAX_INT, MAX_LAYERS, MAX_WEIGHT_BYTES
from convc.model import Layer, Model, ModelInput, Shape
from convc.syntax import Call, Directive, Literal, Program, Sequence

INPUT_PARAMS = params(
    ("shape", None),
    ("batch_size", None),
    ("dtype", None),
    ("sparse", None),
    ("ragged", None),
    ("batch_shape", None),
    ("name", None),
    ("tensor", None),
    ("optional", False),
)
"""``keras.Input``'s signature. ``InputLayer`` takes the same arguments (and Keras 2's names)."""

INPUT_LAYER_PARAMS = params(
    ("shape", None),
    ("batch_size", None),
    ("dtype", None),
    ("sparse", None),
    ("ragged", None),
    ("batch_shape", None),
    ("input_tensor", None),
    ("optional", False),
    ("name", None),
) + params(("input_shape", None), ("batch_input_shape", None), keyword_only=True)

INPUT_DTYPES = ("float32", "float16", "float64", "bfloat16")
"""Input dtypes convc accepts; Keras's layers cast a non-float32 input to float32 (autocast)."""

_OTHER_KERAS_LAYERS = {
    "Dense",
    "Flatten",
    "Dropout",
    "BatchNormalization",
    "LayerNormalization",
    "Activation",
    "ReLU",
    "LeakyReLU",
    "PReLU",
    "ELU",
    "Softmax",
    "MaxPooling1D",
    "MaxPooling2D",
    "MaxPooling3D",
    "AveragePooling1D",
    "AveragePooling2D",
    "AveragePooling3D",
    "GlobalAveragePooling2D",
    "GlobalMaxPooling2D",
    "Reshape",
    "Permute",
    "Add",
    "Concatenate",
    "Embedding",
    "LSTM",
    "GRU",
    "Conv2DLSTM",
    "ConvLSTM2D",
    "Rescaling",
    "Resizing",
}


def resolve(program: Program) -> Model:
    """Resolve a parsed program; raise ``ConvcError`` (or ``ConvcErrors``, for several)."""
    return _Resolver().run(program)


@dataclass
class _Resolver:
    errors: list[ConvcError] = field(default_factory=list)
    model_name: str | None = None
    data_format: str = "channels_last"
    model_input: ModelInput | None = None
    layers: list[Layer] = field(default_factory=list)
    names: dict[str, Span] = field(default_factory=dict)
    auto_counts: dict[str, int] = field(default_factory=dict)
    key_counts: dict[str, int] = field(default_factory=dict)
    shape: Shape | None = None  # the running output shape; None once it is unknown
    weight_bytes: int = 0
    failed: bool = False

    def run(self, program: Program) -> Model:
        layer_calls = 0
        for statement in program.statements:
            try:
                if isinstance(statement, Directive):
                    self.directive(statement)
                elif _is_data_format_call(statement):
                    self.data_format = self.data_format_value(statement)
                elif statement.short_name in ("Input", "InputLayer"):
                    self.input_statement(statement)
                else:
                    layer_calls += 1
                    if layer_calls > MAX_LAYERS:
                        raise ConvcError(
                            f"the model has more than {MAX_LAYERS:,} layers", statement.name_span
                        )
                    self.layer_statement(statement)
            except ConvcErrors as several:
                self.errors.extend(several.errors)
            except ConvcError as error:
                self.errors.append(error)
                if isinstance(statement, Call) and statement.short_name not in (
                    "Input",
                    "InputLayer",
                ):
                    self.failed = True
                    self.shape = None
            if len(self.errors) >= MAX_ERRORS or (self.errors and layer_calls > MAX_LAYERS):
                break
        if not self.errors and not self.layers:
            raise ConvcError(
                "the model has no layers",
                help="add layers after Input(...), one per line, e.g. Conv2D(8, 3)",
            )
        if self.errors:
            raise self.errors[0] if len(self.errors) == 1 else ConvcErrors(self.errors)
        assert self.model_input is not None
        return Model(self.model_name or "sequential", self.model_input, tuple(self.layers))

    # -- directives -------------------------------------------------------------------------

    def directive(self, directive: Directive) -> None:
        if directive.name == "model":
            if self.model_name is not None:
                raise ConvcError("the model is named twice", directive.name_span)
            if not directive.value:
                raise ConvcError("the model name cannot be empty", directive.value_span)
            self.model_name = directive.value
        elif directive.name == "data_format":
            self.data_format = self.check_data_format(directive.value, directive.value_span)
        else:
            close = difflib.get_close_matches(directive.name, ["model", "data_format"], n=1)
            raise ConvcError(
                f"unknown directive '{directive.name}'",
                directive.name_span,
                help=f"did you mean '{close[0]}'?"
                if close
                else "directives are 'model NAME' and 'data_format channels_first|channels_last'",
            )

    def data_format_value(self, call: Call) -> str:
        args = bind(call, params("data_format"), call.short_name)
        return self.check_data_format(args.python("data_format"), args.span("data_format"))

    @staticmethod
    def check_data_format(value: Any, span: Span) -> str:
        if not isinstance(value, str) or value.lower() not in DATA_FORMATS:
            raise ConvcError(
                f"data_format must be 'channels_last' or 'channels_first', got {value!r}", span
            )
        return value.lower()

    # -- the input --------------------------------------------------------------------------

    def input_statement(self, call: Call) -> None:
        if self.model_input is not None or self.layers or self.failed:
            raise ConvcError(
                f"{call.short_name}(...) must be the first statement of the model",
                call.name_span,
                help="a Sequential model has one input, declared before its layers",
            )
        is_layer = call.short_name == "InputLayer"
        args = bind(call, INPUT_LAYER_PARAMS if is_layer else INPUT_PARAMS, call.short_name)
        for unsupported in ("sparse", "ragged", "optional"):
            if args.python(unsupported):
                raise ConvcError(
                    f"{unsupported}=True inputs are not supported: convc compiles dense tensors",
                    args.span(unsupported),
                )
        tensor = "input_tensor" if is_layer else "tensor"
        if args.python(tensor) is not None:
            raise ConvcError(f"'{tensor}' cannot be used in a .conv file", args.span(tensor))
        shape_name = "shape"
        if is_layer and args.given("input_shape"):
            shape_name = "input_shape"
        batch_shape_name = (
            "batch_input_shape" if is_layer and args.given("batch_input_shape") else "batch_shape"
        )
        shape = self.input_shape_from(args, shape_name, batch_shape_name, "batch_size")
        if shape is None:
            raise ConvcError(
                f"{call.short_name} needs a shape, e.g. {call.short_name}(shape=(32, 32, 3))",
                call.span,
            )
        name = self.take_name(args, "input_layer")
        self.model_input = ModelInput(name, shape, self.input_dtype(args), call.span)
        self.shape = shape

    def input_shape_from(
        self, args: Bound, shape_name: str, batch_shape_name: str, batch_size_name: str
    ) -> Shape | None:
        """Keras's input shape forms: shape + batch_size, or batch_shape; None if absent."""
        if args.python(batch_shape_name) is not None:
            if args.given(shape_name) and args.python(shape_name) is not None:
                raise ConvcError(
                    f"give either '{shape_name}' or '{batch_shape_name}', not both",
                    args.span(batch_shape_name),
                )
            full = self.dims(args, batch_shape_name, with_batch=True)
            return (full[0], *full[1:])
        if args.python(shape_name) is None:
            return None
        dims = self.dims(args, shape_name, with_batch=False)
        batch = args.python(batch_size_name)
        if batch is not None and (
            not isinstance(batch, int) or isinstance(batch, bool) or not 1 <= batch <= MAX_INT
        ):
            raise ConvcError(
                f"'{batch_size_name}' must be a positive integer or None, got {batch!r}",
                args.span(batch_size_name),
            )
        return (batch, *dims)

    @staticmethod
    def dims(args: Bound, name: str, *, with_batch: bool) -> tuple:
        value = args.python(name)
        span = args.span(name)
        node = args.value(name)
        if isinstance(value, int) and not isinstance(value, bool) and not with_batch:
            value = (value,)
        if not isinstance(value, tuple | list) or not value:
            raise ConvcError(f"'{name}' must be a tuple of dimensions, got {name}={value!r}", span)
        for i, d in enumerate(value):
            where = node.items[i].span if isinstance(node, Sequence) else span
            if d is None and with_batch and i == 0:
                continue
            if d is None:
                raise ConvcError(
                    f"'{name}' has an unknown dimension (None) at position {i}: convc needs "
                    "every non-batch dimension, to compute pads and shapes exactly",
                    where,
                    help="give the size the model will run at",
                )
            if not isinstance(d, int) or isinstance(d, bool) or not 1 <= d <= MAX_INT:
                raise ConvcError(
                    f"every dimension of '{name}' must be a positive integer, got {d!r} at "
                    f"position {i}",
                    where,
                )
        return tuple(value)

    @staticmethod
    def input_dtype(args: Bound) -> str:
        dtype = args.python("dtype")
        if dtype is None:
            return "float32"
        if dtype not in INPUT_DTYPES:
            raise ConvcError(
                f"unsupported input dtype {dtype!r}",
                args.span("dtype"),
                help="accepted: " + ", ".join(INPUT_DTYPES),
            )
        return dtype

    # -- layers -----------------------------------------------------------------------------

    def layer_statement(self, call: Call) -> None:
        layer_type = self.layer_type(call)
        args = bind(call, layer_type.signature, layer_type.class_name)
        config = layer_type.configure(args, self.data_format)
        config.update(self.common_config(args))
        name = self.take_name(args, layer_type.prefix)
        key = self.weights_key(layer_type)
        if self.model_input is None and not self.failed:
            self.model_input = self.input_from_first_layer(call, args)
            self.shape = self.model_input.shape
        if self.shape is None:
            return  # an earlier error left the input shape unknown; constructor checks are done
        config["name"] = name
        built = layer_type.build(config, self.shape, args)
        self.check_size(layer_type, name, built, call)
        layer = Layer(
            layer_type,
            name,
            key,
            config,
            self.shape,
            built.output_shape,
            built.variables,
            call.span,
        )
        self.layers.append(layer)
        self.shape = built.output_shape

    def check_size(self, layer_type: LayerType, name: str, built, call: Call) -> None:
        """No dimension beyond 32 bits, no weights beyond MAX_WEIGHT_BYTES in all."""
        for axis, length in enumerate(built.output_shape):
            if length is not None and length > MAX_INT:
                raise ConvcError(
                    f"the output of {layer_type.class_name} '{name}' would have {length:,} entries "
                    f"on axis {axis}; convc allows at most {MAX_INT:,}",
                    call.name_span,
                )
        layer_bytes = 4 * sum(variable.size for variable in built.variables)
        self.weight_bytes += layer_bytes
        if self.weight_bytes > MAX_WEIGHT_BYTES:
            raise ConvcError(
                f"the model's weights would need {_bytes(self.weight_bytes)} with this layer "
                f"({_bytes(layer_bytes)} of its own); convc builds models with at most "
                f"{_bytes(MAX_WEIGHT_BYTES)} of weights",
                call.name_span,
            )

    def layer_type(self, call: Call) -> LayerType:
        module, _, name = call.name.rpartition(".")
        if module and module.rsplit(".", 1)[-1] != "layers":
            known = name if registry.lookup(name) else registry.suggest(name)
            raise ConvcError(
                f"'{call.name}' does not name a Keras layer",
                call.name_span,
                help=f"write {known}(...) or keras.layers.{known}(...)"
                if known
                else "convc compiles Keras layers, e.g. keras.layers.Conv2D(...)",
            )
        layer_type = registry.lookup(name)
        if layer_type is not None:
            return layer_type
        if name in _OTHER_KERAS_LAYERS:
            raise ConvcError(
                f"{name} is a Keras layer that convc does not support: convc compiles the "
                "convolution family (Conv, ConvTranspose, SeparableConv, DepthwiseConv, Cropping, "
                "ZeroPadding, UpSampling)",
                call.name_span,
            )
        close = registry.suggest(name)
        raise ConvcError(
            f"unknown layer '{name}'",
            call.name_span,
            help=f"did you mean {close}?" if close else None,
        )

    def common_config(self, args: Bound) -> dict[str, Any]:
        dtype = args.python("dtype")
        if dtype not in (None, "float32"):
            raise ConvcError(
                f"dtype={dtype!r} is not supported: convc layers compute in float32",
                args.span("dtype"),
            )
        return {
            "trainable": bool_arg(args, "trainable"),
            "autocast": bool_arg(args, "autocast"),
            "activity_regularizer": parse_regularizer(
                args.value("activity_regularizer") or Literal(None, args.call.name_span),
                "activity_regularizer",
            ),
        }

    def input_from_first_layer(self, call: Call, args: Bound) -> ModelInput:
        """Keras 2's way: the first layer carries input_shape= (with batch_size=) or
        batch_input_shape=."""
        shape = None
        if args.python("input_dim") is not None:
            shape = (args.python("batch_size"), args.python("input_dim"))
            self.dims(args, "input_dim", with_batch=False)
        else:
            shape = self.input_shape_from(args, "input_shape", "batch_input_shape", "batch_size")
        if shape is None:
            raise ConvcError(
                "the model's input shape is not declared",
                call.name_span,
                help="start the file with Input(shape=(...)), or give the first layer "
                "input_shape=(...)",
            )
        name = self.unique("input_layer", call.name_span)
        return ModelInput(name, shape, "float32", call.span)

    def take_name(self, args: Bound, prefix: str) -> str:
        """The layer's given name, or Keras's automatic one (prefix, prefix_1, prefix_2 ...)."""
        given = string_arg(args, "name")
        if given is None:
            count = self.auto_counts.get(prefix, 0)
            self.auto_counts[prefix] = count + 1
            name = prefix if count == 0 else f"{prefix}_{count}"
            return self.unique(name, args.call.name_span)
        if not given or "/" in given:
            raise ConvcError(
                f"a layer name must be non-empty and cannot contain '/', got name={given!r}",
                args.span("name"),
            )
        return self.unique(given, args.span("name"))

    def unique(self, name: str, span: Span) -> str:
        if name in self.names:
            first = self.names[name]
            raise ConvcError(
                f"the name {name!r} is already used by the layer at line {first.line}",
                span,
                help="every layer of a Sequential model needs a unique name",
            )
        self.names[name] = span
        return name

    def weights_key(self, layer_type: LayerType) -> str:
        base = snake_case(layer_type.class_name)
        count = self.key_counts.get(base, 0)
        self.key_counts[base] = count + 1
        return base if count == 0 else f"{base}_{count}"


def _bytes(n: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:,.0f} {unit}" if unit == "bytes" else f"{n:,.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def _is_data_format_call(call: Call) -> bool:
    return call.short_name == "set_image_data_format"

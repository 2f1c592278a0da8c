"""Turn parsed statements into a ``Model``: Keras's functional graph, resolved and shape-checked.

This is where the file's meaning is decided, as Python would decide it when Keras runs the same
text: names bound by assignment (tensors, layer objects, models), layers constructed (named
exactly as Keras 3 names them in a fresh session, with their arguments checked) and applied to
tensors (shapes computed, weights declared), which statement is an input and which tensors are
the outputs. Three ways of writing a model meet here:

* the functional form: ``x = Conv2D(8, 3)(inputs)``, ``conv = Conv2D(8, 3)`` then ``conv(a)``
  (a shared layer), merges on lists, ``keras.Model(inputs, outputs)``;
* the sequential shorthand: a bare layer call applies to the previous statement's tensor, so a
  file of constructor calls is a Sequential model (``keras.Sequential([...])`` and
  ``model.add(...)`` pasted from Keras code work too);
* TF1's layer functions, ``tf.layers.conv2d(inputs, filters, kernel_size, ...)``.

Errors are collected so that one run reports several independent mistakes; a name bound by a
failed statement is remembered as failed, so that its later uses stay quiet.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Any

from convc import layers as registry
from convc.catalog import compact_names
from convc.diagnostics import ConvcError, ConvcErrors, Span
from convc.layers.args import Bound, bind, bool_arg, params, string_arg
from convc.layers.base import DATA_FORMATS, LayerType
from convc.layers.initializers import parse_regularizer
from convc.layers.merge import MERGE_FUNCTIONS
from convc.layers.refused import REFUSED
from convc.limits import MAX_ERRORS, MAX_INT, MAX_LAYERS, MAX_SOURCE_BYTES, MAX_WEIGHT_BYTES
from convc.model import Layer, Model, ModelInput, Node, Shape, Tensor, format_shape
from convc.specs import LayerSpec, TrainingOnly
from convc.syntax import (
    Apply,
    Assign,
    Call,
    Directive,
    Import,
    Literal,
    Mapping,
    Program,
    Reference,
    Sequence,
    Statement,
    Value,
    parse,
)

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

MODEL_PARAMS = params(("inputs", None), ("outputs", None)) + params(
    ("name", None), ("trainable", True), keyword_only=True
)
"""``keras.Model(inputs, outputs, name=None, trainable=True)``, the functional constructor."""

SEQUENTIAL_PARAMS = params(("layers", None), ("trainable", True), ("name", None))

_TF1_LAYER_MODULES = ("tf.layers", "tf.compat.v1.layers", "tensorflow.layers")
"""Modules whose lowercase functions (``tf.layers.conv2d(inputs, ...)``) build and apply a
layer; TF1's layers default to channels_last whatever Keras's setting."""

_INERT_METHODS = ("summary", "compile", "build")
"""Methods a pasted program calls on its model that change nothing convc compiles."""

_FLOAT_DTYPES = ("float16", "float32", "float64", "bfloat16")


def resolve(program: Program) -> Model:
    """Resolve a parsed program; raise ``ConvcError`` (or ``ConvcErrors``, for several)."""
    return _Resolver(program).run()


def resolve_text(text: str) -> Model:
    """Parse and resolve a .conv text into a ``Model``."""
    if len(text) > MAX_SOURCE_BYTES:
        raise ConvcError(
            f"the file is {len(text):,} characters long; convc reads at most {MAX_SOURCE_BYTES:,}"
        )
    return resolve(parse(text))


class _Failed:
    """What a name is bound to when the statement that bound it failed."""


_FAILED = _Failed()


class _Quiet(Exception):
    """A statement used a name whose own statement failed: already reported."""


@dataclass(eq=False)
class _LayerObject:
    """A constructed layer: named and checked; its weights are known once it is applied."""

    type: LayerType
    name: str
    spec: LayerSpec
    trainable: bool
    autocast: bool
    activity_regularizer: TrainingOnly | None
    args: Bound
    layer: Layer | None = None
    applications: int = 0


@dataclass(eq=False)
class _SequentialObject:
    """A ``keras.Sequential``: a chain that grows with ``add``."""

    name: str | None
    span: Span
    output: Tensor | None = None


@dataclass(eq=False)
class _ModelSpec:
    """``keras.Model(inputs, outputs)``: which tensors are the graph's inputs and outputs."""

    inputs: list[ModelInput]
    outputs: list[Tensor]
    name: str | None
    span: Span


@dataclass
class _Resolver:
    program: Program
    errors: list[ConvcError] = field(default_factory=list)
    warnings: list[ConvcError] = field(default_factory=list)
    model_name: str | None = None
    data_format: str = "channels_last"
    bindings: dict[str, Any] = field(default_factory=dict)
    aliases: dict[str, str] = field(default_factory=dict)  # imported name -> dotted path
    assigned_at: dict[str, list[int]] = field(default_factory=dict)  # name -> lines assigned
    inputs: list[ModelInput] = field(default_factory=list)
    nodes: list[Node] = field(default_factory=list)
    names: dict[str, Span] = field(default_factory=dict)
    auto_counts: dict[str, int] = field(default_factory=dict)
    current: Tensor | _Failed | None = None  # the previous statement's tensor
    last_statement: Statement | None = None
    model_spec: _ModelSpec | None = None
    sequential: _SequentialObject | None = None
    functional: bool = False  # whether the file uses functional forms at all
    layers_constructed: int = 0
    constructed: list[_LayerObject] = field(default_factory=list)
    weight_bytes: int = 0

    def run(self) -> Model:
        for statement in self.program.statements:
            if isinstance(statement, Assign):
                self.assigned_at.setdefault(statement.target, []).append(statement.span.line)
        for statement in self.program.statements:
            try:
                self.statement(statement)
            except _Quiet:
                self.after_failure(statement)
            except ConvcErrors as several:
                self.errors.extend(several.errors)
                self.after_failure(statement)
            except ConvcError as error:
                self.errors.append(error)
                self.after_failure(statement)
            if len(self.errors) >= MAX_ERRORS or self.layers_constructed > MAX_LAYERS:
                break
        if not self.errors:
            model = self.finish()
            if model is not None:
                return model
        raise self.errors[0] if len(self.errors) == 1 else ConvcErrors(self.errors)

    def after_failure(self, statement: Statement) -> None:
        if isinstance(statement, Assign):
            self.bindings[statement.target] = _FAILED
        if not isinstance(statement, Directive | Import):
            self.current = _FAILED

    # -- statements -------------------------------------------------------------------------

    def statement(self, statement: Statement) -> None:
        if isinstance(statement, Directive):
            self.directive(statement)
        elif isinstance(statement, Import):
            for bound, path in statement.names:
                self.aliases[bound] = path
        elif isinstance(statement, Assign):
            self.functional = True
            value = self.evaluate(statement.value)
            self.bindings[statement.target] = value
            if isinstance(value, Tensor):
                self.current = value
        elif isinstance(statement, Call) and _is_data_format_call(statement):
            self.data_format = self.data_format_value(statement)
        else:
            value = self.expression_statement(statement)
            if isinstance(value, Tensor):
                self.current = value
        if not isinstance(statement, Directive | Import):
            self.last_statement = statement

    def expression_statement(self, statement: Call | Apply) -> Any:
        """A statement that assigns nothing: the sequential shorthand, an applied layer, a bare
        ``Input(...)`` or ``model.add(...)``."""
        if isinstance(statement, Call):
            kind, target = self.classify(statement)
            if kind == "layer":
                obj = self.construct(statement, target)
                return self.apply_to_previous(obj, statement)
            started = self.nodes or self.inputs or self.current is _FAILED
            if kind == "input" and started and not self.functional:
                raise ConvcError(
                    f"{statement.short_name}(...) must be the first statement of the model",
                    statement.name_span,
                    help="a Sequential model has one input, declared before its layers; "
                    "for a second input, bind it to a name: input_2 = Input(...)",
                )
        else:
            self.functional = True
        return self.evaluate(statement)

    def apply_to_previous(self, obj: _LayerObject, call: Call) -> Tensor:
        """The sequential shorthand: a bare layer applies to the previous statement's tensor."""
        if self.current is _FAILED:
            raise _Quiet
        if self.current is None:
            self.current = self.input_from_first_layer(call, obj.args)
        return self.apply(obj, [self.current], call, call.span)

    # -- evaluating values ------------------------------------------------------------------

    def evaluate(self, value: Value) -> Any:
        """What an expression stands for: a Tensor, a list, a layer object, a model."""
        if isinstance(value, Reference):
            return self.lookup(value.name, value.span)
        if isinstance(value, Sequence):
            return [self.evaluate(item) for item in value.items]
        if isinstance(value, Apply):
            self.functional = True
            callee = self.evaluate(value.callee)
            return self.call_object(callee, value.callee, value)
        if isinstance(value, Call):
            return self.evaluate_call(value)
        shown = "a literal" if isinstance(value, Literal) else "a dict"
        raise ConvcError(f"expected a tensor or a layer here, got {shown}", value.span)

    def lookup(self, name: str, span: Span) -> Any:
        head, _, rest = name.partition(".")
        if head in self.bindings:
            bound = self.bindings[head]
            if bound is _FAILED:
                raise _Quiet
            if rest:
                raise ConvcError(
                    f"'{name}': convc reads no attributes of '{head}'",
                    span,
                    help="refer to tensors and layers by the names they are bound to",
                )
            return bound
        later = [line for line in self.assigned_at.get(head, []) if line > span.line]
        if later:
            raise ConvcError(
                f"'{head}' is used before it is assigned (at line {later[0]})",
                span,
                help="a statement can only use names bound by the statements before it",
            )
        close = difflib.get_close_matches(head, list(self.bindings), n=1, cutoff=0.6)
        raise ConvcError(
            f"unknown name '{head}'",
            span,
            help=f"did you mean '{close[0]}'?" if close else None,
        )

    def canonical(self, dotted: str) -> str:
        """A dotted name with an imported alias replaced by what it stands for."""
        head, dot, rest = dotted.partition(".")
        if head in self.aliases and head not in self.bindings:
            return self.aliases[head] + dot + rest
        return dotted

    def classify(self, call: Call) -> tuple[str, Any]:
        """What a call's name refers to: ("bound", object), ("method", object), ("input", None),
        ("model", None), ("sequential", None), ("merge_function", class name),
        ("tf1_function", layer type) or ("layer", layer type)."""
        head, _, rest = call.name.partition(".")
        if head in self.bindings:
            bound = self.bindings[head]
            if bound is _FAILED:
                raise _Quiet
            return ("method" if rest else "bound"), bound
        name = self.canonical(call.name)
        module, _, short = name.rpartition(".")
        if short in ("Input", "InputLayer"):
            return "input", None
        if short in ("Model", "Functional"):
            return "model", None
        if short == "Sequential":
            return "sequential", None
        if short in MERGE_FUNCTIONS and (not module or module.rsplit(".", 1)[-1] == "layers"):
            return "merge_function", MERGE_FUNCTIONS[short]
        if module in _TF1_LAYER_MODULES and short.islower():
            layer_type = registry.lookup_snake(short)
            if layer_type is not None:
                return "tf1_function", layer_type
        later = [line for line in self.assigned_at.get(head, []) if line > call.span.line]
        if later and "." not in call.name and registry.lookup(short) is None:
            raise ConvcError(
                f"'{head}' is used before it is assigned (at line {later[0]})", call.name_span
            )
        return "layer", self.layer_type(call, name)

    def evaluate_call(self, call: Call) -> Any:
        kind, target = self.classify(call)
        if kind == "bound":
            return self.call_object(target, Reference(call.name, call.name_span), call)
        if kind == "method":
            return self.method(target, call)
        if kind == "input":
            return self.input_statement(call)
        if kind == "model":
            self.functional = True
            return self.model_statement(call)
        if kind == "sequential":
            return self.sequential_statement(call)
        if kind == "merge_function":
            return self.merge_function(call, target)
        if kind == "tf1_function":
            return self.tf1_function(call, target)
        return self.construct(call, target)

    def call_object(self, callee: Any, callee_node: Value, call: Call | Apply) -> Any:
        """``callee(args)``: a layer object applied to a tensor or a list of tensors."""
        if isinstance(callee, Tensor):
            raise ConvcError(
                "a tensor cannot be called: it is not a layer",
                callee_node.span,
                help="apply a layer to it instead, e.g. Conv2D(8, 3)(x)",
            )
        if isinstance(callee, _SequentialObject | _ModelSpec):
            raise ConvcError(
                "applying a whole model to a tensor (a nested model) is not supported yet",
                callee_node.span,
                help="write its layers into this model",
            )
        if not isinstance(callee, _LayerObject):
            raise ConvcError("only a layer can be called on tensors", callee_node.span)
        for keyword in call.kwargs:
            if keyword.name not in ("training", "mask", "inputs"):
                raise ConvcError(
                    f"a layer call takes its input tensors and 'training', not '{keyword.name}'",
                    keyword.span,
                )
            masked = keyword.name == "mask" and not (
                isinstance(keyword.value, Literal) and keyword.value.value is None
            )
            if masked and callee.type.class_name == "Softmax":
                raise ConvcError(
                    "a Softmax with a mask is not supported: convc compiles no masks",
                    keyword.span,
                )
        given = list(call.args) + [k.value for k in call.kwargs if k.name == "inputs"]
        if len(given) != 1:
            raise ConvcError(
                f"{callee.type.class_name} '{callee.name}' is called on one "
                f"{'list of tensors' if callee.type.takes_list else 'tensor'}, got "
                f"{len(given)} arguments",
                call.span,
            )
        inputs = self.evaluate(given[0])
        return self.apply(callee, inputs, given[0], call.span)

    # -- layers -----------------------------------------------------------------------------

    def construct(
        self, call: Call, layer_type: LayerType, *, data_format: str | None = None, args=None
    ) -> _LayerObject:
        """A layer object: the constructor's checks, and Keras's automatic name."""
        self.layers_constructed += 1
        if self.layers_constructed > MAX_LAYERS:
            raise ConvcError(f"the model has more than {MAX_LAYERS:,} layers", call.name_span)
        args = args or bind(call, layer_type.signature, layer_type.class_name)
        spec = layer_type.configure(args, data_format or self.data_format)
        check_layer_dtype(args)
        trainable = bool_arg(args, "trainable")
        autocast = bool_arg(args, "autocast")
        activity_regularizer = parse_regularizer(
            args.value("activity_regularizer") or Literal(None, args.call.name_span),
            "activity_regularizer",
        )
        name = self.take_name(args, layer_type.prefix)
        for inner in layer_type.inner_prefixes(spec):  # layers its constructor makes
            self.auto_counts[inner] = self.auto_counts.get(inner, 0) + 1
        obj = _LayerObject(layer_type, name, spec, trainable, autocast, activity_regularizer, args)
        self.constructed.append(obj)
        return obj

    def apply(self, obj: _LayerObject, inputs: Any, where: Any, span: Span) -> Tensor:
        """A node: ``obj`` applied to ``inputs`` (a tensor, or a list for a merge)."""
        where_span = where.span if hasattr(where, "span") else span
        tensors = self.tensors(obj, inputs, where)
        for tensor in tensors:
            if tensor is _FAILED:
                raise _Quiet
        shapes = tuple(t.shape for t in tensors)
        names = tuple(self.tensor_label(t) for t in tensors)
        built = obj.type.build_inputs(obj.spec, shapes, obj.args, obj.name, names)
        if obj.layer is None:
            self.check_size(obj, built)
            obj.layer = Layer(
                obj.type,
                obj.name,
                obj.spec,
                built.variables,
                obj.args.call.span,
                trainable=obj.trainable,
                autocast=obj.autocast,
                activity_regularizer=obj.activity_regularizer,
            )
        elif [v.shape for v in built.variables] != [v.shape for v in obj.layer.variables]:
            first = next(n for n in self.nodes if n.layer is obj.layer)
            raise ConvcError(
                f"the shared layer '{obj.name}' was built for input shape "
                f"{format_shape(first.input_shape)} and cannot take {format_shape(shapes[0])}: "
                "its weights would need other shapes",
                where_span,
            )
        self.check_output_size(obj, built.output_shape)
        name = obj.name if obj.applications == 0 else f"{obj.name}[{obj.applications}]"
        obj.applications += 1
        output = Tensor(name, built.output_shape)
        self.nodes.append(Node(obj.layer, tuple(tensors), output, span))
        return output

    def tensors(self, obj: _LayerObject, inputs: Any, where: Any) -> list:
        span = where.span if hasattr(where, "span") else obj.args.call.span
        if obj.type.takes_list:
            if not isinstance(inputs, list):
                raise ConvcError(
                    f"{obj.type.class_name} '{obj.name}' is called on a list of tensors, "
                    f"e.g. {obj.type.class_name}()([a, b])",
                    span,
                )
            items = inputs
        else:
            if isinstance(inputs, list):
                if len(inputs) != 1:
                    raise ConvcError(
                        f"{obj.type.class_name} '{obj.name}' takes one tensor, got a list of "
                        f"{len(inputs)}",
                        span,
                        help="merge the tensors first, e.g. Concatenate()([a, b])",
                    )
                items = inputs
            else:
                items = [inputs]
        for item in items:
            if item is _FAILED:
                raise _Quiet
            if not isinstance(item, Tensor):
                what = (
                    f"the layer '{item.name}'"
                    if isinstance(item, _LayerObject)
                    else "a list"
                    if isinstance(item, list)
                    else "a model"
                )
                raise ConvcError(
                    f"{obj.type.class_name} '{obj.name}' is applied to {what}, not a tensor",
                    span,
                    help="a layer is applied to the tensor another layer returned, "
                    "e.g. Conv2D(8, 3)(x)",
                )
        return items

    def tensor_label(self, tensor: Tensor) -> str:
        """How an error names a tensor: the name it is bound to, else its producer's."""
        bound = [name for name, value in self.bindings.items() if value is tensor]
        return bound[-1] if bound else tensor.name

    def merge_function(self, call: Call, class_name: str) -> Tensor:
        """``layers.add([a, b], **kwargs)``: a merge layer made and applied at once."""
        layer_type = registry.lookup(class_name)
        assert layer_type is not None
        inputs_value = call.args[0] if call.args else None
        kwargs = tuple(k for k in call.kwargs if k.name != "inputs")
        if inputs_value is None:
            inputs_value = next((k.value for k in call.kwargs if k.name == "inputs"), None)
        if inputs_value is None:
            raise ConvcError(
                f"{call.short_name}() takes the list of tensors to merge first",
                call.span,
                help=f"e.g. {call.short_name}([a, b])",
            )
        ctor = Call(call.name, call.args[1:], kwargs, call.span, call.name_span)
        obj = self.construct(ctor, layer_type)
        return self.apply(obj, self.evaluate(inputs_value), inputs_value, call.span)

    def tf1_function(self, call: Call, layer_type: LayerType) -> Tensor:
        """``tf.layers.conv2d(inputs, filters, kernel_size, ...)``: TF1's layer functions."""
        inputs_value = call.args[0] if call.args else None
        kwargs = tuple(k for k in call.kwargs if k.name not in ("inputs", "reuse"))
        if inputs_value is None:
            inputs_value = next((k.value for k in call.kwargs if k.name == "inputs"), None)
        if inputs_value is None:
            raise ConvcError(f"{call.name}() takes its input tensor first", call.span)
        ctor = Call(call.name, call.args[1:], kwargs, call.span, call.name_span)
        obj = self.construct(ctor, layer_type, data_format="channels_last")
        return self.apply(obj, self.evaluate(inputs_value), inputs_value, call.span)

    # -- models -----------------------------------------------------------------------------

    def model_statement(self, call: Call) -> _ModelSpec:
        args = bind(call, MODEL_PARAMS, call.short_name)
        inputs_value, outputs_value = args.value("inputs"), args.value("outputs")
        if inputs_value is None or outputs_value is None:
            raise ConvcError(
                f"{call.short_name}(...) needs the model's inputs and outputs",
                call.span,
                help="e.g. keras.Model(inputs, outputs) or keras.Model(inputs=x, outputs=y)",
            )
        inputs: list[ModelInput] = []
        for tensor, node in zip(
            self.tensor_list(inputs_value, "inputs"), _items(inputs_value), strict=True
        ):
            if not isinstance(tensor, ModelInput):
                raise ConvcError(
                    "a model's inputs must be tensors made by Input(...)",
                    node.span,
                    help=f"'{self.tensor_label(tensor)}' is the output of a layer",
                )
            inputs.append(tensor)
        outputs = self.tensor_list(outputs_value, "outputs")
        name = string_arg(args, "name")
        if self.model_spec is not None:
            raise ConvcError(
                "the file defines a second model",
                call.name_span,
                help=f"the first is at line {self.model_spec.span.line}; a .conv file "
                "compiles one model",
            )
        self.model_spec = _ModelSpec(inputs, outputs, name, call.span)
        return self.model_spec

    def tensor_list(self, value: Value, what: str) -> list[Tensor]:
        """A tensor, or a list, tuple or dict of tensors, in order."""
        items = _items(value)
        tensors = []
        for item in items:
            tensor = self.evaluate(item)
            if tensor is _FAILED:
                raise _Quiet
            if not isinstance(tensor, Tensor):
                raise ConvcError(f"every entry of '{what}' must be a tensor", item.span)
            tensors.append(tensor)
        return tensors

    def sequential_statement(self, call: Call) -> _SequentialObject:
        args = bind(call, SEQUENTIAL_PARAMS, call.short_name)
        name = string_arg(args, "name")
        sequential = _SequentialObject(name, call.span)
        if self.sequential is not None:
            raise ConvcError(
                "the file defines a second Sequential model",
                call.name_span,
                help=f"the first is at line {self.sequential.span.line}",
            )
        self.sequential = sequential
        listed = args.value("layers")
        if listed is None or isinstance(listed, Literal) and listed.value is None:
            return sequential
        if not isinstance(listed, Sequence):
            raise ConvcError("Sequential takes a list of layers", listed.span)
        for item in listed.items:
            self.sequential_add(sequential, item)
        return sequential

    def method(self, bound: Any, call: Call) -> Any:
        method = call.name.split(".", 1)[1]
        if isinstance(bound, _SequentialObject | _ModelSpec) and method in _INERT_METHODS:
            return None
        if isinstance(bound, _SequentialObject) and method == "add":
            if len(call.args) != 1 or call.kwargs:
                raise ConvcError("add() takes one layer", call.span)
            self.sequential_add(bound, call.args[0])
            return bound.output
        raise ConvcError(
            f"'{call.name}(...)' builds nothing that convc compiles",
            call.name_span,
            help="a statement is a layer call, an assignment, model.add(...) or an import",
        )

    def sequential_add(self, sequential: _SequentialObject, item: Value) -> None:
        if isinstance(item, Call):
            kind, target = self.classify(item)
            if kind == "input":
                if sequential.output is not None:
                    raise ConvcError(
                        "a Sequential model's Input must come before its layers", item.name_span
                    )
                sequential.output = self.input_statement(item)
                self.current = sequential.output
                return
            if kind == "layer":
                obj = self.construct(item, target)
                if sequential.output is None:
                    sequential.output = self.input_from_first_layer(item, obj.args)
                sequential.output = self.apply(obj, sequential.output, item, item.span)
                self.current = sequential.output
                return
        obj = self.evaluate(item)
        if isinstance(obj, _LayerObject):
            if sequential.output is None:
                raise ConvcError(
                    "the Sequential model's input shape is not declared",
                    item.span,
                    help="begin its list with Input(shape=(...))",
                )
            sequential.output = self.apply(obj, sequential.output, item, item.span)
            self.current = sequential.output
            return
        raise ConvcError("a Sequential model takes layers", item.span)

    # -- the end ----------------------------------------------------------------------------

    def finish(self) -> Model | None:
        spec = self.model_spec
        if spec is not None:
            inputs, outputs, name = spec.inputs, spec.outputs, spec.name or "functional"
        elif self.sequential is not None and self.sequential.output is not None:
            outputs = [self.sequential.output]
            inputs = list(self.inputs)
            name = self.sequential.name or "sequential"
        else:
            if not self.nodes:
                # At the Input, else the Sequential(...), else the last statement; an empty
                # file (comments and imports at most) has no place to point at.
                first: Span | None
                if self.inputs:
                    first = self.inputs[0].span
                elif self.sequential is not None:
                    first = self.sequential.span
                else:
                    first = self.last_statement.span if self.last_statement else None
                self.errors.append(
                    ConvcError(
                        "the model has no layers"
                        + ("" if first else ": the file has no Input and no layer"),
                        first,
                        help="add layers after Input(...), one per line, e.g. Conv2D(8, 3)",
                    )
                )
                return None
            last = self.current
            if not isinstance(last, Tensor):
                where = self.last_statement.span if self.last_statement else None
                self.errors.append(
                    ConvcError(
                        "the last statement gives no tensor, so the model's output is unknown",
                        where,
                        help="end with keras.Model(inputs, outputs)",
                    )
                )
                return None
            inputs, outputs = list(self.inputs), [last]
            name = "functional" if self.functional else "sequential"
        if self.model_name is not None:
            name = self.model_name
        nodes = self.reachable(inputs, outputs, spec)
        if nodes is None:
            return None
        if not nodes:
            where = spec.span if spec else (self.inputs[0].span if self.inputs else None)
            self.errors.append(
                ConvcError(
                    "the model has no layers: its outputs are its inputs",
                    where,
                    help="add layers between Input(...) and the outputs",
                )
            )
            return None
        self.check_outputs(outputs, spec)
        if self.errors:
            return None
        return Model(name, tuple(inputs), tuple(nodes), tuple(outputs), tuple(self.warnings))

    def reachable(self, inputs, outputs, spec) -> list[Node] | None:
        """The nodes the outputs depend on, in statement order; warnings for the rest."""
        producers = {id(n.output): n for n in self.nodes}
        needed: set[int] = set()
        used_inputs: set[int] = set()
        stack = list(outputs)
        while stack:
            tensor = stack.pop()
            node = producers.get(id(tensor))
            if node is None:
                used_inputs.add(id(tensor))
                continue
            if id(node) in needed:
                continue
            needed.add(id(node))
            stack.extend(node.inputs)
        declared = {id(t) for t in inputs}
        for tensor in self.inputs:
            if id(tensor) in used_inputs and id(tensor) not in declared:
                self.errors.append(
                    ConvcError(
                        f"the outputs depend on the input '{tensor.name}', which is not among "
                        "the model's inputs",
                        spec.span if spec else tensor.span,
                        help=f"add it to keras.Model's inputs (declared at line "
                        f"{tensor.span.line})",
                    )
                )
        if self.errors:
            return None
        for tensor in inputs:
            if id(tensor) not in used_inputs:
                self.warnings.append(
                    ConvcError(f"the input '{tensor.name}' is not used by any output", tensor.span)
                )
        for obj in self.constructed:
            if obj.applications == 0:
                self.warnings.append(
                    ConvcError(
                        f"the layer '{obj.name}' ({obj.type.class_name}) is never applied to a "
                        "tensor",
                        obj.args.call.span,
                    )
                )
        for node in self.nodes:
            if id(node) not in needed:
                self.warnings.append(
                    ConvcError(
                        f"'{node.name}' ({node.class_name}) does not reach any output: it is "
                        "left out of the model",
                        node.span,
                    )
                )
        return [node for node in self.nodes if id(node) in needed]

    def check_outputs(self, outputs: list[Tensor], spec: _ModelSpec | None) -> None:
        seen: set[int] = set()
        for tensor in outputs:
            where = spec.span if spec else None
            if isinstance(tensor, ModelInput):
                self.errors.append(
                    ConvcError(
                        f"the input '{tensor.name}' is also an output: ONNX cannot name one "
                        "value twice",
                        where,
                        help="output a layer's result",
                    )
                )
            elif id(tensor) in seen:
                self.errors.append(ConvcError(f"the output '{tensor.name}' is listed twice", where))
            seen.add(id(tensor))

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

    def input_statement(self, call: Call) -> ModelInput:
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
        model_input = ModelInput(name, shape, self.input_dtype(args), call.span)
        self.inputs.append(model_input)
        return model_input

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
        if name == "input_dim" and isinstance(value, int) and not isinstance(value, bool):
            value = (value,)  # input_dim is one dimension; shape= takes a tuple (Keras 3)
        elif isinstance(value, int | float) and not isinstance(value, bool):
            # Keras 3 refuses a number where a shape is due (Input(shape=8)); so does convc
            fix = f"({value},)" if not with_batch else f"(None, {value})"
            raise ConvcError(
                f"Cannot convert '{value!r}' to a shape: '{name}' must be a tuple of dimensions, "
                f"got {name}={value!r}",
                span,
                help=f"write {name}={fix}: ({value}) without a comma is just the number"
                if isinstance(value, int)
                else None,
            )
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
        dtype = dtype_arg(args, "dtype")
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

    def check_size(self, obj: _LayerObject, built) -> None:
        """No weights beyond MAX_WEIGHT_BYTES in all."""
        layer_bytes = 4 * sum(variable.size for variable in built.variables)
        self.weight_bytes += layer_bytes
        if self.weight_bytes > MAX_WEIGHT_BYTES:
            raise ConvcError(
                f"the model's weights would need {_bytes(self.weight_bytes)} with this layer "
                f"({_bytes(layer_bytes)} of its own); convc builds models with at most "
                f"{_bytes(MAX_WEIGHT_BYTES)} of weights",
                obj.args.call.name_span,
            )

    def check_output_size(self, obj: _LayerObject, output_shape: Shape) -> None:
        """No dimension beyond 32 bits."""
        for axis, length in enumerate(output_shape):
            if length is not None and length > MAX_INT:
                raise ConvcError(
                    f"the output of {obj.type.class_name} '{obj.name}' would have {length:,} "
                    f"entries on axis {axis}; convc allows at most {MAX_INT:,}",
                    obj.args.call.name_span,
                )

    def layer_type(self, call: Call, dotted: str) -> LayerType:
        module, _, name = dotted.rpartition(".")
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
        if name in REFUSED:
            raise ConvcError(
                f"{name} is a Keras layer that convc does not support: {REFUSED[name]}",
                call.name_span,
                help=f"convc compiles {compact_names()}",
            )
        close = registry.suggest(name)
        raise ConvcError(
            f"unknown layer '{name}'",
            call.name_span,
            help=f"did you mean {close}?" if close else None,
        )

    def input_from_first_layer(self, call: Call, args: Bound) -> ModelInput:
        """Keras 2's way: the first layer carries input_shape= (with batch_size=) or
        batch_input_shape=."""
        shape: Shape | None = None
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
        model_input = ModelInput(name, shape, "float32", call.span)
        self.inputs.append(model_input)
        return model_input

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
                help="every layer of a model needs a unique name",
            )
        self.names[name] = span
        return name


def _bytes(n: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:,.0f} {unit}" if unit == "bytes" else f"{n:,.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def _is_data_format_call(call: Call) -> bool:
    return call.short_name == "set_image_data_format"


def _items(value: Value) -> list[Value]:
    """The entries of a tensor-or-list argument; a dict's values in the order of its sorted
    keys, as Keras flattens a dict of outputs."""
    if isinstance(value, Sequence):
        return list(value.items)
    if isinstance(value, Mapping):
        keyed: list[tuple[str, Value]] = []
        for key, entry in value.entries:
            if not isinstance(key, Literal) or not isinstance(key.value, str):
                raise ConvcError("the keys of a dict of tensors must be strings", key.span)
            keyed.append((key.value, entry))
        return [entry for _, entry in sorted(keyed, key=lambda pair: pair[0])]
    return [value]


def check_layer_dtype(args: Bound) -> None:
    """A layer's ``dtype=``: convc layers compute in float32 only."""
    dtype = dtype_arg(args, "dtype")
    if dtype not in (None, "float32"):
        raise ConvcError(
            f"dtype={dtype!r} is not supported: convc layers compute in float32",
            args.span("dtype"),
        )


def dtype_arg(args: Bound, name: str) -> Any:
    """A dtype written as a string or as a framework's attribute (``tf.float32``)."""
    value = args.value(name)
    if isinstance(value, Reference):
        module, _, short = value.name.rpartition(".")
        if module.split(".")[0] in ("tf", "tensorflow", "np", "numpy", "keras", "torch") and (
            short in _FLOAT_DTYPES or short in ("int32", "int64", "uint8", "bool")
        ):
            return short
        raise ConvcError(f"'{value.name}' is not a dtype convc knows", value.span)
    return args.python(name)

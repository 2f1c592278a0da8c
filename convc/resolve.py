"""Build a ``Model`` from a program: Keras's functional graph, resolved and shape-checked.

``convc.evaluate`` runs the program as Python would; this module is what Keras is to it. A name
the program does not bind (``Conv2D``, ``keras.layers``, ``tf.keras.initializers.HeNormal``) is
Keras's, and calling it constructs a layer (named exactly as Keras 3 names it in a fresh
session, its arguments checked by the layer registry), declares an input, makes a model, or
makes a Keras object (an initializer, a regularizer) that a layer's argument takes. A layer
called on tensors is applied (shapes computed, weights declared); a tensor has its static
``shape``. Three ways of writing a model meet here:

* the functional form: ``x = Conv2D(8, 3)(inputs)``, ``conv = Conv2D(8, 3)`` then ``conv(a)``
  (a shared layer), merges on lists, ``keras.Model(inputs, outputs)``, in loops and functions;
* the sequential shorthand: a layer call that is a statement of its own, outside a function,
  applies to the previous statement's tensor, so a file of constructor calls is a Sequential
  model (``keras.Sequential([...])`` and ``model.add(...)`` pasted from Keras code work too);
* TF1's layer functions, ``tf.layers.conv2d(inputs, filters, kernel_size, ...)``.

Errors are collected so that one run reports several independent mistakes; a name bound by a
failed statement is remembered as failed, so that its later uses stay quiet.
"""

from __future__ import annotations

import collections.abc
import difflib
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache, lru_cache
from typing import Any

from convc import layers as registry
from convc.catalog import compact_names
from convc.collector import collector_paused
from convc.diagnostics import ConvcError, Span
from convc.evaluate import Evaluator
from convc.layers.args import REQUIRED, Bound, Param, bind, bool_arg, params, string_arg
from convc.layers.base import DATA_FORMATS, LayerType
from convc.layers.initializers import (
    CONSTRAINTS,
    INITIALIZERS,
    REGULARIZERS,
    parse_regularizer,
)
from convc.layers.merge import MERGE_FUNCTIONS
from convc.layers.refused import REFUSED
from convc.limits import MAX_INT, MAX_LAYERS, MAX_SOURCE_BYTES, MAX_WEIGHT_BYTES
from convc.model import Layer, Model, ModelInput, Node, Shape, Tensor, format_shape
from convc.specs import LayerSpec, TrainingOnly
from convc.syntax import (
    Apply,
    Assign,
    AssignTo,
    AugmentedAssign,
    Call,
    CallExpression,
    Comprehension,
    Def,
    Directive,
    ExpressionStatement,
    Import,
    Literal,
    Program,
    Reference,
    Sequence,
    Statement,
    Value,
    parse,
)
from convc.values import FAILED, CallSite, KerasName, Method, Opaque, Quiet, describe

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

_SPECIAL_NAMES = (
    "Input",
    "InputLayer",
    "Model",
    "Functional",
    "Sequential",
    "set_image_data_format",
)

_FLOAT_DTYPES = ("float16", "float32", "float64", "bfloat16")


def resolve(program: Program) -> Model:
    """Resolve a parsed program; raise ``ConvcError`` (or ``ConvcErrors``, for several)."""
    return _Resolver().run(program)


@collector_paused
def resolve_text(
    text: str, max_chars: int = MAX_SOURCE_BYTES, parsed: Program | None = None
) -> Model:
    """Parse and resolve a .conv text of at most ``max_chars`` characters into a ``Model``.
    ``parsed`` is the text's syntax where its writer made it along with the text (``convc
    import`` does), exactly what ``parse(text)`` gives: then the text is not parsed again."""
    if len(text) > max_chars:
        raise ConvcError(
            f"the text is {len(text):,} characters long; convc reads at most {max_chars:,}"
        )
    return resolve(parse(text) if parsed is None else parsed)


class _Labels(collections.abc.Sequence[str]):
    """How errors name a node's input tensors, each found only when an error asks for it:
    finding one scans the names bound, which for every node of a long model is quadratic."""

    def __init__(self, label: Callable[[Tensor], str], tensors: list[Tensor]):
        self.label, self.tensors = label, tensors

    def __len__(self) -> int:
        return len(self.tensors)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self.label(t) for t in self.tensors[index]]
        return self.label(self.tensors[index])


@dataclass(eq=False)
class _LayerObject(Opaque):
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

    def describe(self) -> str:
        return f"the layer '{self.name}'"

    def type_name(self) -> str:
        return self.type.class_name


@dataclass(eq=False)
class _SequentialObject(Opaque):
    """A ``keras.Sequential``: a chain that grows with ``add``."""

    name: str | None
    span: Span
    output: Tensor | None = None

    def describe(self) -> str:
        return "a model"

    def type_name(self) -> str:
        return "Sequential"


@dataclass(eq=False)
class _ModelSpec(Opaque):
    """``keras.Model(inputs, outputs)``: which tensors are the graph's inputs and outputs."""

    inputs: list[ModelInput]
    outputs: list[Tensor]
    name: str | None
    span: Span

    def describe(self) -> str:
        return "a model"

    def type_name(self) -> str:
        return "Functional"


@dataclass(eq=False)
class _KerasObject(Opaque):
    """A Keras object that is not a layer (``HeNormal(seed=1)``, ``keras.regularizers.l2(1e-4)``):
    kept as its call, for the layer argument that takes it to read."""

    call: Call
    canonical: str

    def describe(self) -> str:
        return f"{self.call.name}(...)"

    def type_name(self) -> str:
        return self.call.short_name

    def reify(self, span: Span) -> Value:
        return self.call


@cache
def _object_names() -> frozenset[str]:
    """The bare names of Keras objects that are not layers: initializers, regularizers,
    constraints (their classes and functions)."""
    names: set[str] = set()
    for kind in (INITIALIZERS, REGULARIZERS, CONSTRAINTS):
        names |= set(kind.attributes) | set(kind.classes)
    return frozenset(names)


@dataclass
class _Resolver:
    errors: list[ConvcError] = field(default_factory=list)
    warnings: list[ConvcError] = field(default_factory=list)
    model_name: str | None = None
    data_format: str = "channels_last"
    inputs: list[ModelInput] = field(default_factory=list)
    nodes: list[Node] = field(default_factory=list)
    names: dict[str, Span] = field(default_factory=dict)
    auto_counts: dict[str, int] = field(default_factory=dict)
    current: Any = None  # the previous statement's tensor (a Tensor, FAILED or None)
    last_statement: Statement | None = None
    model_spec: _ModelSpec | None = None
    sequential: _SequentialObject | None = None
    functional: bool = False  # whether the file uses functional forms at all
    layers_constructed: int = 0
    constructed: list[_LayerObject] = field(default_factory=list)
    weight_bytes: int = 0
    evaluator: Evaluator | None = None

    def run(self, program: Program) -> Model:
        self.evaluator = Evaluator(program, self)
        try:
            self.errors = self.evaluator.run(stop=lambda: self.layers_constructed > MAX_LAYERS)
            if not self.errors:
                model = self.finish()
                if model is not None:
                    return model
        finally:
            # the evaluator and the resolver refer to each other: without this, all a model's
            # program made stays alive until the cycle collector walks it (a second, for a
            # 100,000-layer model)
            self.evaluator = None
        raise self.take_errors()

    def take_errors(self) -> ConvcError:
        """The errors, as one exception, handed over rather than kept: its traceback holds the
        frames it is raised through, and through them this resolver."""
        from convc.diagnostics import ConvcErrors

        errors, self.errors = self.errors, []
        return errors[0] if len(errors) == 1 else ConvcErrors(errors)

    # -- what the evaluator asks ------------------------------------------------------------

    def module_statement(self, statement: Statement, value: Any) -> None:
        if isinstance(statement, Directive | Import | Def):
            return
        if isinstance(statement, ExpressionStatement) and _has_no_effect(statement.value):
            self.warnings.append(ConvcError("this statement has no effect", statement.span))
        if isinstance(value, Tensor):
            self.current = value
            if isinstance(statement, Assign | AssignTo | AugmentedAssign):
                self.functional = True
        elif isinstance(statement, Assign | AssignTo | AugmentedAssign) and not _is_data(value):
            self.functional = True
        self.last_statement = statement

    def failed(self, statement: Statement) -> None:
        if not isinstance(statement, Directive | Import):
            self.current = FAILED

    def is_keras_name(self, name: str) -> bool:
        return (
            self.is_layer_name(name)
            or name in REFUSED
            or name in _SPECIAL_NAMES
            or name in MERGE_FUNCTIONS
            or name in _object_names()
        )

    def is_layer_name(self, name: str) -> bool:
        return registry.lookup(name) is not None

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

    def call_keras(self, name: KerasName, site: CallSite, *, statement: bool) -> Any:
        """A call of a Keras name: what Keras's function or class does."""
        module, _, short = name.canonical.rpartition(".")
        written = name.written
        if not name.known:  # a bare name neither the program nor Keras has
            if statement or registry.suggest(short):
                self.layer_type(Call(written, (), (), site.span, site.function_span), written)
            assert self.evaluator is not None
            error = self.evaluator.unknown_name(written, site.function_span)
            close = difflib.get_close_matches(short, sorted(_object_names()), n=1, cutoff=0.8)
            if error.help is None and close:  # HeNormall(seed=1): an initializer misspelt
                error.help = f"did you mean '{close[0]}'?"
            raise error
        layer_type = _layer_class(name)
        if layer_type is not None:  # as most calls are: what the branches below come to for it
            obj = self.construct(site.call(written), layer_type)
            return self.apply_to_previous(obj, obj.args.call) if statement else obj
        if short in ("Input", "InputLayer"):
            started = self.nodes or self.inputs or self.current is FAILED
            if statement and started and not self.functional:
                raise ConvcError(
                    f"{short}(...) must be the first statement of the model",
                    site.function_span,
                    help="a Sequential model has one input, declared before its layers; "
                    "for a second input, bind it to a name: input_2 = Input(...)",
                )
            return self.input_statement(site.call(written))
        if short in ("Model", "Functional"):
            self.functional = True
            return self.model_statement(site, short)
        if short == "Sequential":
            return self.sequential_statement(site, short)
        if short == "set_image_data_format":
            call = site.call(written)
            self.data_format = self.data_format_value(call)
            return None
        if short in MERGE_FUNCTIONS and (not module or module.rsplit(".", 1)[-1] == "layers"):
            return self.merge_function(site, written, MERGE_FUNCTIONS[short])
        if module in _TF1_LAYER_MODULES and short.islower():
            layer_type = registry.lookup_snake(short)
            if layer_type is not None:
                return self.tf1_function(site, written, layer_type)
        if (short == "int_shape" and module.rsplit(".", 1)[-1] == "backend") or (
            short == "shape" and module.rsplit(".", 1)[-1] in ("ops", "numpy")
        ):
            return self.static_shape(site, written)
        if short == "shape" and module.split(".")[0] in ("tf", "tensorflow"):
            raise ConvcError(
                f"{written}(x) is the shape of a running tensor; convc builds with static shapes",
                site.function_span,
                help="use x.shape, or keras.ops.shape(x)",
            )
        call = Call(written, (), (), site.span, site.function_span)
        is_layer = (not module or module.rsplit(".", 1)[-1] == "layers") and registry.lookup(
            short
        ) is not None
        if not is_layer and not statement:
            # an initializer, a regularizer, an optimizer for model.compile ...: what takes it
            # says whether it is right (a layer's argument, through the registry)
            return _KerasObject(site.call(written), name.canonical)
        layer_type = self.layer_type(call, name.canonical)
        obj = self.construct(site.call(written), layer_type)
        if statement:
            return self.apply_to_previous(obj, obj.args.call)
        return obj

    def call_literals(self, name: KerasName, call: Call, *, statement: bool) -> Any:
        """``call_keras`` for a call written with literal arguments only (as the layer calls
        ``convc import`` writes are), where it needs no ``CallSite``: a layer class's call.
        ``NotImplemented`` for any other name, which takes the general path."""
        layer_type = _layer_class(name)
        if layer_type is None or call.name != name.written:
            return NotImplemented
        obj = self.construct(call, layer_type)
        return self.apply_to_previous(obj, call) if statement else obj

    def apply_object(self, callee: Any, inputs: Any, where: Span, span: Span) -> Any:
        """``call_object`` for ``layer(x)``, as most calls are, without a ``CallSite``: the
        checks there pass a layer object called on one positional argument.
        ``NotImplemented`` for any other callee, which takes the general path."""
        if type(callee) is not _LayerObject:
            return NotImplemented
        self.functional = True
        return self.apply(callee, inputs, where, span)

    def call_object(self, callee: Any, site: CallSite) -> Any:
        """``callee(args)``: a layer object applied to a tensor or a list of tensors."""
        if type(callee) is _LayerObject and len(site.args) == 1 and not site.keywords:
            return self.apply_object(callee, site.args[0], site.arg_spans[0], site.span)
        if isinstance(callee, Tensor):
            raise ConvcError(
                "a tensor cannot be called: it is not a layer",
                site.function_span,
                help="apply a layer to it instead, e.g. Conv2D(8, 3)(x)",
            )
        if isinstance(callee, _SequentialObject | _ModelSpec):
            raise ConvcError(
                "applying a whole model to a tensor (a nested model) is not supported yet",
                site.function_span,
                help="write its layers into this model",
            )
        if isinstance(callee, _KerasObject):
            self.layer_type(callee.call, callee.canonical)  # says why it is not a layer
        if not isinstance(callee, _LayerObject):
            raise ConvcError(
                f"only a layer can be called on tensors, not {describe(callee)}",
                site.function_span,
            )
        for key, value, _node, span, _value_span in site.keywords:
            if key not in ("training", "mask", "inputs"):
                raise ConvcError(
                    f"a layer call takes its input tensors and 'training', not '{key}'", span
                )
            if key == "mask" and value is not None and callee.type.class_name == "Softmax":
                raise ConvcError(
                    "a Softmax with a mask is not supported: convc compiles no masks", span
                )
        given = [(value, span) for value, span in zip(site.args, site.arg_spans, strict=True)]
        given += [
            (value, value_span) for key, value, _, _, value_span in site.keywords if key == "inputs"
        ]
        if len(given) != 1:
            raise ConvcError(
                f"{callee.type.class_name} '{callee.name}' is called on one "
                f"{'list of tensors' if callee.type.takes_list else 'tensor'}, got "
                f"{len(given)} arguments",
                site.span,
            )
        self.functional = True
        inputs, where = given[0]
        return self.apply(callee, inputs, where, site.span)

    def attribute(self, value: Any, name: str, span: Span) -> Any:
        """The attributes of Keras's objects that a program may read."""
        if isinstance(value, Tensor):
            if name == "shape":
                return tuple(value.shape)
            if name == "ndim":
                return len(value.shape)
            if name == "dtype":
                return value.dtype if isinstance(value, ModelInput) else "float32"
            readable = "shape, ndim, dtype"
        elif isinstance(value, _LayerObject):
            if name == "name":
                return value.name
            readable = "name"
        elif isinstance(value, _SequentialObject | _ModelSpec):
            if name == "add" and isinstance(value, _SequentialObject):
                return Method(value, name, self.add_method)
            if name in _INERT_METHODS:
                return Method(value, name, lambda evaluator, receiver, site: None)
            readable = (
                "add, summary, compile, build"
                if isinstance(value, _SequentialObject)
                else ("summary, compile, build")
            )
        else:
            readable = ""
        raise ConvcError(
            f"convc reads no attribute '{name}' of {describe(value)}",
            span,
            help=f"it reads {readable}" if readable else None,
        )

    # -- layers -----------------------------------------------------------------------------

    def apply_to_previous(self, obj: _LayerObject, call: Call) -> Tensor:
        """The sequential shorthand: a bare layer applies to the previous statement's tensor."""
        if self.current is FAILED:
            raise Quiet
        if self.current is None:
            self.current = self.input_from_first_layer(call, obj.args)
        return self.apply(obj, self.current, call.span, call.span)

    def construct(
        self, call: Call, layer_type: LayerType, *, data_format: str | None = None, args=None
    ) -> _LayerObject:
        """A layer object: the constructor's checks, and Keras's automatic name."""
        self.layers_constructed += 1
        if self.layers_constructed > MAX_LAYERS:
            raise ConvcError(f"the model has more than {MAX_LAYERS:,} layers", call.name_span)
        args = args or bind(call, layer_type.signature, layer_type.class_name)
        spec = layer_type.configure(args, data_format or self.data_format)
        given = args.values
        if "dtype" in given:
            check_layer_dtype(args)
        trainable = bool_arg(args, "trainable") if "trainable" in given else True
        autocast = bool_arg(args, "autocast") if "autocast" in given else True
        activity_regularizer = (
            parse_regularizer(given["activity_regularizer"], "activity_regularizer")
            if "activity_regularizer" in given
            else None
        )  # each default as Layer.__init__ has it, without reading it through the signature
        name = self.take_name(args, layer_type.prefix)
        for inner in layer_type.inner_prefixes(spec):  # layers its constructor makes
            self.auto_counts[inner] = self.auto_counts.get(inner, 0) + 1
        obj = _LayerObject(layer_type, name, spec, trainable, autocast, activity_regularizer, args)
        self.constructed.append(obj)
        return obj

    def apply(self, obj: _LayerObject, inputs: Any, where_span: Span, span: Span) -> Tensor:
        """A node: ``obj`` applied to ``inputs`` (a tensor, or a list for a merge)."""
        tensors = self.tensors(obj, inputs, where_span)
        shapes = tuple([t.shape for t in tensors])
        names = _Labels(self.tensor_label, tensors)
        built = obj.type.build_inputs(obj.spec, shapes, obj.args, obj.name, names)
        if obj.layer is None:
            if built.variables:
                self.check_size(obj, built)
            obj.layer = Layer(
                obj.type,
                obj.name,
                obj.spec,
                built.variables,
                obj.args.call.span,
                obj.trainable,
                obj.autocast,
                obj.activity_regularizer,
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

    def tensors(self, obj: _LayerObject, inputs: Any, span: Span) -> list[Tensor]:
        if obj.type.takes_list:
            if type(inputs) not in (list, tuple):
                raise ConvcError(
                    f"{obj.type.class_name} '{obj.name}' is called on a list of tensors, "
                    f"e.g. {obj.type.class_name}()([a, b])",
                    span,
                )
            items = list(inputs)
        elif type(inputs) in (list, tuple) and all(isinstance(i, Tensor) for i in inputs):
            if len(inputs) != 1:
                raise ConvcError(
                    f"{obj.type.class_name} '{obj.name}' takes one tensor, got a "
                    f"{type(inputs).__name__} of {len(inputs)}",
                    span,
                    help="merge the tensors first, e.g. Concatenate()([a, b])",
                )
            items = list(inputs)
        else:
            items = [inputs]
        for item in items:
            if not isinstance(item, Tensor):
                if isinstance(item, KerasName):
                    self.unknown(item)
                raise ConvcError(
                    f"{obj.type.class_name} '{obj.name}' is applied to {describe(item)}, not a "
                    "tensor",
                    span,
                    help="a layer is applied to the tensor another layer returned, "
                    "e.g. Conv2D(8, 3)(x)",
                )
        return items

    def unknown(self, name: KerasName) -> None:
        """A Keras name used as a tensor: unknown, unless it is a Keras name (then the caller
        says why it is not a tensor)."""
        head = name.written.split(".")[0]
        if self.is_keras_name(head) or "." in name.written:
            return
        assert self.evaluator is not None
        known = list(self.evaluator.globals)
        close = difflib.get_close_matches(head, known, n=1, cutoff=0.6)
        raise ConvcError(
            f"unknown name '{head}'",
            name.span,
            help=f"did you mean '{close[0]}'?" if close else None,
        )

    def tensor_label(self, tensor: Tensor) -> str:
        """How an error names a tensor: the name it is bound to, else its producer's."""
        assert self.evaluator is not None
        return self.evaluator.name_of(tensor) or tensor.name

    def merge_function(self, site: CallSite, written: str, class_name: str) -> Tensor:
        """``layers.add([a, b], **kwargs)``: a merge layer made and applied at once."""
        layer_type = registry.lookup(class_name)
        assert layer_type is not None
        short = written.rsplit(".", 1)[-1]
        if site.args:
            inputs, where, drop = site.args[0], site.arg_spans[0], 1
        elif any(k[0] == "inputs" for k in site.keywords):
            inputs = site.keyword("inputs")
            where = next(k[4] for k in site.keywords if k[0] == "inputs")
            drop = 0
        else:
            raise ConvcError(
                f"{short}() takes the list of tensors to merge first",
                site.span,
                help=f"e.g. {short}([a, b])",
            )
        obj = self.construct(
            site.call(written, drop_args=drop, drop_keywords=("inputs",)), layer_type
        )
        self.functional = True
        return self.apply(obj, inputs, where, site.span)

    def tf1_function(self, site: CallSite, written: str, layer_type: LayerType) -> Tensor:
        """``tf.layers.conv2d(inputs, filters, kernel_size, ...)``: TF1's layer functions."""
        if site.args:
            inputs, where, drop = site.args[0], site.arg_spans[0], 1
        elif any(k[0] == "inputs" for k in site.keywords):
            inputs = site.keyword("inputs")
            where = next(k[4] for k in site.keywords if k[0] == "inputs")
            drop = 0
        else:
            raise ConvcError(f"{written}() takes its input tensor first", site.span)
        call = site.call(written, drop_args=drop, drop_keywords=("inputs", "reuse"))
        obj = self.construct(call, layer_type, data_format="channels_last")
        self.functional = True
        return self.apply(obj, inputs, where, site.span)

    def static_shape(self, site: CallSite, written: str) -> tuple:
        """``keras.backend.int_shape(x)``, ``keras.ops.shape(x)``: a tensor's static shape."""
        if len(site.args) != 1 or site.keywords or not isinstance(site.args[0], Tensor):
            raise ConvcError(f"{written}() takes one tensor", site.span)
        return tuple(site.args[0].shape)

    # -- models -----------------------------------------------------------------------------

    def model_statement(self, site: CallSite, what: str) -> _ModelSpec:
        args = bind_values(site, MODEL_PARAMS, what)
        if "inputs" not in args or "outputs" not in args:
            raise ConvcError(
                f"{what}(...) needs the model's inputs and outputs",
                site.span,
                help="e.g. keras.Model(inputs, outputs) or keras.Model(inputs=x, outputs=y)",
            )
        inputs: list[ModelInput] = []
        for tensor, span in self.tensor_list(args["inputs"], "inputs"):
            if not isinstance(tensor, ModelInput):
                raise ConvcError(
                    "a model's inputs must be tensors made by Input(...)",
                    span,
                    help=f"'{self.tensor_label(tensor)}' is the output of a layer",
                )
            inputs.append(tensor)
        outputs = [tensor for tensor, _ in self.tensor_list(args["outputs"], "outputs")]
        name = _string_value(args, "name")
        if self.model_spec is not None:
            raise ConvcError(
                "the file defines a second model",
                site.function_span,
                help=f"the first is at line {self.model_spec.span.line}; a .conv file "
                "compiles one model",
            )
        self.model_spec = _ModelSpec(inputs, outputs, name, site.span)
        return self.model_spec

    def tensor_list(self, argument: tuple[Any, Any, Span], what: str) -> list[tuple[Tensor, Span]]:
        """A tensor, or a list, tuple or dict of tensors (a dict's values in the order of its
        sorted keys, as Keras flattens a dict of outputs), each with its span."""
        value, node, span = argument
        if type(value) is dict:
            for key in value:
                if type(key) is not str:
                    raise ConvcError("the keys of a dict of tensors must be strings", span)
            items = [(value[key], span) for key in sorted(value)]
        elif type(value) in (list, tuple):
            nodes = getattr(node, "items", None)
            spans = (
                [n.span for n in nodes]
                if nodes is not None and len(nodes) == len(value)
                else [span] * len(value)
            )
            items = list(zip(value, spans, strict=True))
        else:
            items = [(value, span)]
        for item, item_span in items:
            if not isinstance(item, Tensor):
                if isinstance(item, KerasName):
                    self.unknown(item)
                raise ConvcError(f"every entry of '{what}' must be a tensor", item_span)
        return items

    def sequential_statement(self, site: CallSite, what: str) -> _SequentialObject:
        args = bind_values(site, SEQUENTIAL_PARAMS, what)
        name = _string_value(args, "name")
        sequential = _SequentialObject(name, site.span)
        if self.sequential is not None:
            raise ConvcError(
                "the file defines a second Sequential model",
                site.function_span,
                help=f"the first is at line {self.sequential.span.line}",
            )
        self.sequential = sequential
        if "layers" not in args or args["layers"][0] is None:
            return sequential
        listed, node, span = args["layers"]
        if type(listed) not in (list, tuple):
            raise ConvcError("Sequential takes a list of layers", span)
        nodes = getattr(node, "items", None)
        for i, item in enumerate(listed):
            item_span = nodes[i].span if nodes is not None and len(nodes) == len(listed) else span
            self.sequential_add(sequential, item, item_span)
        return sequential

    def add_method(
        self, evaluator: Evaluator, sequential: _SequentialObject, site: CallSite
    ) -> None:
        if len(site.args) != 1 or site.keywords:
            raise ConvcError("add() takes one layer", site.span)
        self.sequential_add(sequential, site.args[0], site.arg_spans[0])

    def sequential_add(self, sequential: _SequentialObject, item: Any, span: Span) -> None:
        if isinstance(item, ModelInput):
            if sequential.output is not None:
                raise ConvcError("a Sequential model's Input must come before its layers", span)
            sequential.output = item
            self.current = sequential.output
            return
        if isinstance(item, _LayerObject):
            if sequential.output is None:
                if not _declares_input(item.args):
                    raise ConvcError(
                        "the Sequential model's input shape is not declared",
                        span,
                        help="begin its list with Input(shape=(...))",
                    )
                sequential.output = self.input_from_first_layer(item.args.call, item.args)
            sequential.output = self.apply(item, sequential.output, span, span)
            self.current = sequential.output
            return
        if isinstance(item, KerasName):
            self.unknown(item)
        if isinstance(item, _KerasObject):
            self.layer_type(item.call, item.canonical)  # says why it is not a layer
        raise ConvcError("a Sequential model takes layers", span)

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
        # tensors and nodes compare by identity: sets and dicts of them need no id()
        producers = {n.output: n for n in self.nodes}
        needed: set[Node] = set()
        used_inputs: set[Tensor] = set()
        stack = list(outputs)
        while stack:
            tensor = stack.pop()
            node = producers.get(tensor)
            if node is None:
                used_inputs.add(tensor)
                continue
            if node in needed:
                continue
            needed.add(node)
            stack.extend(node.inputs)
        declared = set(inputs)
        for tensor in self.inputs:
            if tensor in used_inputs and tensor not in declared:
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
            if tensor not in used_inputs:
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
            if node not in needed:
                self.warnings.append(
                    ConvcError(
                        f"'{node.name}' ({node.class_name}) does not reach any output: it is "
                        "left out of the model",
                        node.span,
                    )
                )
        return [node for node in self.nodes if node in needed]

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

    # -- directives and data_format ------------------------------------------------------

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
        # Keras names it automatically: a later Input(...) is input_layer_1
        self.auto_counts["input_layer"] = self.auto_counts.get("input_layer", 0) + 1
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


def _is_data(value: Any) -> bool:
    """Whether a value is plain data (a number, a string, a list of them ...), not a tensor, a
    layer or a model: binding one does not make a file functional."""
    if isinstance(value, list | tuple):
        return all(_is_data(item) for item in value[:100])
    if isinstance(value, dict):
        return all(_is_data(item) for item in list(value.values())[:100])
    return value is None or isinstance(value, bool | int | float | str | range)


def _layer_class(name: KerasName) -> LayerType | None:
    """The layer type a call of ``name`` constructs, where ``name`` is a known layer class
    (``Conv2D``, ``layers.Conv2D``) rather than a special name, a merge function or a name
    outside a ``layers`` module."""
    return _layer_class_named(name.canonical) if name.known else None


@lru_cache(maxsize=1024)
def _layer_class_named(canonical: str) -> LayerType | None:
    module, _, short = canonical.rpartition(".")
    if short in _SPECIAL_NAMES or short in MERGE_FUNCTIONS:
        return None
    if module and module.rsplit(".", 1)[-1] != "layers":
        return None
    return registry.lookup(short)


def _has_no_effect(expression: Any) -> bool:
    """An expression statement that computes a value and drops it: a number, a name, an
    arithmetic expression (a string is a docstring; a call may do something)."""
    if isinstance(expression, Literal):
        return not isinstance(expression.value, str)
    return not isinstance(expression, Call | Apply | CallExpression | Comprehension)


def _declares_input(args: Bound) -> bool:
    return any(
        args.python(name) is not None for name in ("input_shape", "batch_input_shape", "input_dim")
    )


def bind_values(
    site: CallSite, signature: tuple[Param, ...], what: str
) -> dict[str, tuple[Any, Any, Span]]:
    """Bind a call's evaluated arguments to a signature as ``convc.layers.args.bind`` binds
    written ones (the same complaints): each parameter given, as (value, node, span)."""
    positional = [p for p in signature if not p.keyword_only]
    if len(site.args) > len(positional):
        raise ConvcError(
            f"{what} takes at most {len(positional)} positional argument"
            f"{'' if len(positional) == 1 else 's'}, got {len(site.args)}",
            site.arg_spans[len(positional)],
            help="positional order: " + ", ".join(p.name for p in positional),
        )
    values = {
        p.name: (value, node, span)
        for p, value, node, span in zip(
            positional, site.args, site.arg_nodes, site.arg_spans, strict=False
        )
    }
    names = {p.name for p in signature}
    for key, value, node, name_span, value_span in site.keywords:
        if key not in names:
            close = difflib.get_close_matches(key, sorted(names), n=1, cutoff=0.6)
            raise ConvcError(
                f"{what} has no argument '{key}'",
                name_span,
                help=f"did you mean '{close[0]}'?" if close else None,
            )
        if key in values:
            raise ConvcError(f"{what} got '{key}' both by position and by name", name_span)
        values[key] = (value, node, value_span)
    missing = [p.name for p in signature if p.default is REQUIRED and p.name not in values]
    if missing:
        raise ConvcError(f"{what} is missing its required argument '{missing[0]}'", site.span)
    return values


def _string_value(args: dict[str, tuple[Any, Any, Span]], name: str) -> str | None:
    if name not in args:
        return None
    value, _, span = args[name]
    if value is not None and not isinstance(value, str):
        raise ConvcError(f"'{name}' must be a string, got {name}={value!r}", span)
    return value


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

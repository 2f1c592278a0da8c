"""The values a program computes with, beyond Python's own numbers, strings and containers.

A program's data are Python's values, operated on with Python's operators. This module holds
the rest: a name the program does not bind (``KerasName``, Keras's, given a meaning by the model
builder), a module that is not Keras's (``ForeignModule``), functions, builtins and bound
methods, the builder's objects (``Opaque``), a function call's scope, a call's evaluated
arguments (``CallSite``) and their conversion back into the layer registry's syntax
(``reify``), and how messages name values (``type_name``, ``describe``) and Python's own errors
(``python_error``).
"""

from __future__ import annotations

import types
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from convc.diagnostics import ConvcError, Span
from convc.model import Tensor
from convc.syntax import (
    Apply,
    Call,
    Def,
    DictDisplay,
    Display,
    Expr,
    Keyword,
    Lambda,
    Literal,
    Mapping,
    Reference,
    Sequence,
    Starred,
    Value,
)

if TYPE_CHECKING:
    from convc.evaluate import Evaluator


class Quiet(Exception):
    """A statement used a name whose own statement failed: that failure is already reported."""


class _Failed:
    """What a name is bound to when the statement that bound it failed."""

    def __repr__(self) -> str:
        return "FAILED"


FAILED = _Failed()


class KerasName:
    """A name the program does not bind, such as ``Conv2D`` or ``keras.layers.Dense``: a
    Keras or TensorFlow name, kept as written (for messages and for the layer registry, which
    reads names as written) and as imports make it (``L.Conv2D`` after ``import keras.layers as
    L`` is ``keras.layers.Conv2D``). Only the model builder gives it a meaning. A name called
    that Keras does not have either (``Conv2d(8, 3)``) is not ``known``: the builder says why."""

    __slots__ = ("written", "canonical", "span", "known")

    def __init__(self, written: str, canonical: str, span: Span, known: bool = True):
        self.written = written
        self.canonical = canonical
        self.span = span
        self.known = known

    def child(self, attr: str, span: Span) -> KerasName:
        return KerasName(f"{self.written}.{attr}", f"{self.canonical}.{attr}", span, self.known)


class ForeignModule:
    """An imported module that is not Keras's or TensorFlow's (``import os``): importing it
    binds its name, and any use of the name is refused."""

    __slots__ = ("name",)

    def __init__(self, name: str):
        self.name = name


class Function:
    """A function made by ``def`` or ``lambda``: its definition, the defaults evaluated when it
    was made, and the scope it closes over."""

    __slots__ = ("name", "definition", "defaults", "closure")

    def __init__(self, name: str, definition: Def | Lambda, defaults: dict, closure: Scope | None):
        self.name = name
        self.definition = definition
        self.defaults = defaults
        self.closure = closure


class Builtin:
    """A builtin function (``len``, ``range`` ...) or type (``int``, ``list`` ...)."""

    __slots__ = ("name", "function", "type")

    def __init__(self, name: str, function: Callable[[Evaluator, CallSite], Any], type_=None):
        self.name = name
        self.function = function
        self.type = type_  # the Python type it stands for in isinstance(), if any


class Method:
    """An attribute that is a method, bound to its receiver (``widths.append``)."""

    __slots__ = ("receiver", "name", "function")

    def __init__(
        self, receiver: Any, name: str, function: Callable[[Evaluator, Any, CallSite], Any]
    ):
        self.receiver = receiver
        self.name = name
        self.function = function


class Opaque:
    """A value the model builder makes (a layer, a model, a Keras object): what the program may
    do with it is the builder's."""

    def describe(self) -> str:
        return "an object"

    def type_name(self) -> str:
        return "object"

    def reify(self, span: Span) -> Value:
        raise ConvcError(f"expected a value here, got {self.describe()}", span)


class Scope:
    """The names of one function call or comprehension: those it binds (``locals``, fixed when
    it is parsed, as in Python), their values, and the scope it is nested in."""

    __slots__ = ("locals", "values", "parent")

    def __init__(self, locals_: frozenset[str], values: dict, parent: Scope | None):
        self.locals = locals_
        self.values = values
        self.parent = parent


class CallSite:
    """One call: its evaluated arguments, the syntax they came from, and where it is."""

    __slots__ = (
        "node",
        "span",
        "function_span",
        "args",
        "arg_nodes",
        "arg_spans",
        "keywords",
        "evaluator",
    )

    def __init__(self, node: Any, function_span: Span, evaluator: Evaluator | None = None):
        self.node = node
        self.evaluator = evaluator
        self.span: Span = node.span
        self.function_span = function_span
        self.args: list[Any] = []
        self.arg_nodes: list[Expr | None] = []
        self.arg_spans: list[Span] = []
        # (name, value, node of the value or None, span of the name, span of the value)
        self.keywords: list[tuple[str, Any, Expr | None, Span, Span]] = []

    def add_arg(self, value: Any, node: Expr | None, span: Span) -> None:
        """A positional argument's value, the syntax it came from (``None`` for an item of a
        starred one) and where it was written."""
        self.args.append(value)
        self.arg_nodes.append(node)
        self.arg_spans.append(span)

    def keyword(self, name: str, default: Any = None) -> Any:
        for key, value, *_ in self.keywords:
            if key == name:
                return value
        return default

    def call(self, name: str, *, drop_args: int = 0, drop_keywords: tuple[str, ...] = ()) -> Call:
        """The call as the layer registry reads it: every argument a value with its span."""
        if self.evaluator is not None:  # the registry's copy of a big value is made too
            for value, span in zip(self.args, self.arg_spans, strict=True):
                self.evaluator.charge(value, span)
            for _key, value, _node, _name_span, value_span in self.keywords:
                self.evaluator.charge(value, value_span)
        node = self.node
        if (
            type(node) is Call
            and not drop_args
            and not drop_keywords
            and node.name == name
            and self.function_span is node.name_span
            and all(
                type(n) is Literal and n.value is v
                for v, n in zip(self.args, self.arg_nodes, strict=True)
            )
            and all(type(k[2]) is Literal and k[2].value is k[1] for k in self.keywords)
        ):
            # a call of literals, as written (a layer call convc import wrote): the call built
            # below would equal the node, argument for argument
            return node
        args = tuple(
            reify(value, node, span)
            for value, node, span in zip(
                self.args[drop_args:],
                self.arg_nodes[drop_args:],
                self.arg_spans[drop_args:],
                strict=True,
            )
        )
        kwargs = tuple(
            Keyword(key, reify(value, node, value_span), name_span)
            for key, value, node, name_span, value_span in self.keywords
            if key not in drop_keywords
        )
        return Call(name, args, kwargs, self.span, self.function_span)


SCALARS = (int, float, str, bool, type(None))
NUMBERS = {int, float, bool}
DATA: tuple[type, ...] = (
    int,
    float,
    str,
    bool,
    type(None),
    tuple,
    list,
    dict,
    range,
    type({}.keys()),
    type({}.values()),
    type({}.items()),
)
ITERATORS: tuple[type, ...] = (
    types.GeneratorType,
    enumerate,
    zip,
    reversed,
    type(iter([])),
    type(iter(())),
    type(iter("")),
    type(iter(range(0))),
    type(iter({})),
    type(reversed([])),
    type(iter({}.values())),
    type(iter({}.items())),
    type(reversed(range(0))),
)


_INTERNAL_NAMES = {
    "'ModelInput'": "'KerasTensor'",
    "'Tensor'": "'KerasTensor'",
    "'KerasName'": "'module'",
    "'Function'": "'function'",
    "'Builtin'": "'builtin_function_or_method'",
    "'Method'": "'method'",
    "'ForeignModule'": "'module'",
}


def python_error(error: Exception, span: Span) -> ConvcError:
    """A Python exception from an operation on values, in Python's words."""
    message = str(error) or type(error).__name__
    for internal, shown in _INTERNAL_NAMES.items():
        message = message.replace(internal, shown)
    if "'_LayerObject'" in message or "'_" in message:
        message = message.replace("'_LayerObject'", "'Layer'")
    return ConvcError(message, span)


def is_data(value: Any) -> bool:
    """Whether ``value`` is one of Python's own values (a number, a string, a tuple, list or
    dict, a range, a dict's view), which the language operates on with Python's operators."""
    return isinstance(value, DATA)


def type_name(value: Any) -> str:
    """A value's type as Python (and Keras) would name it in a message."""
    if isinstance(value, Tensor):
        return "KerasTensor"
    if isinstance(value, Opaque):
        return value.type_name()
    if isinstance(value, KerasName | ForeignModule):
        return "module"
    if isinstance(value, Function):
        return "function"
    if isinstance(value, Builtin):
        return "type" if value.type is not None else "builtin_function_or_method"
    if isinstance(value, Method):
        return "builtin_function_or_method"
    return type(value).__name__


def describe(value: Any) -> str:
    """A value as a message names it: 'a tensor', 'the layer 'conv2d'', 'a list' ..."""
    if isinstance(value, Tensor):
        return "a tensor"
    if isinstance(value, Opaque):
        return value.describe()
    if isinstance(value, KerasName):
        return f"'{value.written}'"
    if isinstance(value, Function):
        return f"the function {value.name}()"
    if isinstance(value, Builtin | Method):
        return f"the builtin {value.name}()"
    if isinstance(value, ForeignModule):
        return f"the module '{value.name}'"
    name = type(value).__name__
    if value is None:
        return "None"
    if isinstance(value, SCALARS):
        return f"{'an' if name[0] in 'aeiou' else 'a'} {name} ({value!r})"[:80]
    return f"{'an' if name[0] in 'aeiou' else 'a'} {name}"


# ---------------------------------------------------------------------------------------------
# From values back to the registry's syntax


def reify(value: Any, node: Expr | None, span: Span) -> Value:
    """A computed value as the layer registry reads arguments: a literal tree whose spans are
    those of the expressions that made each part (where the argument is written as a display,
    item by item; else the whole argument's)."""
    if isinstance(node, Literal) and node.value is value:
        return node
    kind = type(value)
    if value is None or kind in (bool, int, float, str):
        return Literal(value, span)
    if kind is tuple or kind is list:
        nodes: tuple = (None,) * len(value)
        if (
            isinstance(node, Sequence | Display)
            and len(node.items) == len(value)
            and not any(isinstance(item, Starred) for item in node.items)
        ):
            nodes = node.items
        return Sequence(
            "tuple" if kind is tuple else "list",
            tuple(
                reify(item, item_node, span if item_node is None else item_node.span)
                for item, item_node in zip(value, nodes, strict=True)
            ),
            span,
        )
    if kind is dict:
        pairs: list = [(None, None)] * len(value)
        if isinstance(node, Mapping) and len(node.entries) == len(value):
            pairs = list(node.entries)
        elif (
            isinstance(node, DictDisplay) and None not in node.keys and len(node.keys) == len(value)
        ):
            pairs = list(zip(node.keys, node.values, strict=True))
        return Mapping(
            tuple(
                (
                    reify(key, key_node, span if key_node is None else key_node.span),
                    reify(item, item_node, span if item_node is None else item_node.span),
                )
                for (key, item), (key_node, item_node) in zip(value.items(), pairs, strict=True)
            ),
            span,
        )
    if isinstance(value, KerasName):
        return Reference(value.written, span)
    if isinstance(value, Builtin):
        return Reference(value.name, span)  # dtype=float, as TF1 code passes it
    if isinstance(value, Opaque):
        return value.reify(span)
    if isinstance(value, Tensor):
        name = Call(value.name, (), (), span, span)
        return Apply(name, (), (), span)
    raise ConvcError(f"expected a value here, got {describe(value)}", span)

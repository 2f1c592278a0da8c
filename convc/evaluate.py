"""Run a parsed program: a small interpreter of convc's hermetic subset of Python.

A ``.conv`` program is evaluated statement by statement, as Python would run it, by walking its
syntax objects (``convc.syntax``); nothing is ever handed to Python's ``eval``. Numbers,
strings, tuples, lists and dicts are Python's own values, so arithmetic, comparison, indexing and
formatting have Python's semantics exactly; functions, names and scopes (local, enclosing,
module, builtin) follow Python's rules; the values Python lacks (functions, Keras names ...)
are in ``convc.values``, the builtins in ``convc.prelude``. What the program does with Keras (a
name such as ``Conv2D`` or ``keras.layers`` that it does not bind, a layer, a tensor) is the
model builder's (``convc.resolve``), which this module reaches through the ``Builder``
protocol.

It is hermetic: there is no I/O, no import of code (an ``import`` binds a name to a module
*name*), no attribute beyond the few this module and the builder list, no ``while``, no
recursion. It is bounded: every expression evaluated, statement executed and item iterated is a
step (``MAX_STEPS``), values have bounded sizes (``MAX_ITEMS``) and all the values a program
makes together too (``MAX_ALLOCATION``), integers have at most ``MAX_INT_DIGITS`` digits, and
evaluation nests at most ``MAX_EVALUATION_DEPTH`` deep. Exceeding a bound is a located error.

Errors are located: an error inside a function records the chain of calls that reached it.
"""

from __future__ import annotations

import difflib
import operator
from collections.abc import Callable, Iterator
from typing import Any, ClassVar, Protocol

from convc import prelude
from convc.diagnostics import ConvcError, ConvcErrors, Span
from convc.limits import (
    MAX_ALLOCATION,
    MAX_CALL_DEPTH,
    MAX_ERRORS,
    MAX_EVALUATION_DEPTH,
    MAX_INT_DIGITS,
    MAX_ITEMS,
    MAX_NESTING,
    MAX_STEPS,
)
from convc.model import Tensor
from convc.syntax import (
    Apply,
    Assert,
    Assign,
    AssignTo,
    Attribute,
    AugmentedAssign,
    BooleanOperation,
    Break,
    Call,
    CallExpression,
    Comparison,
    Comprehension,
    Conditional,
    Continue,
    Def,
    DictDisplay,
    Directive,
    Display,
    Expr,
    ExpressionStatement,
    For,
    FString,
    If,
    Import,
    KeywordArgument,
    Lambda,
    Literal,
    Mapping,
    Operation,
    Pass,
    Program,
    Reference,
    Return,
    Sequence,
    Slice,
    Starred,
    Statement,
    Subscript,
    UnaryOperation,
)
from convc.values import (
    DATA,
    FAILED,
    ITERATORS,
    NUMBERS,
    SCALARS,
    Builtin,
    CallSite,
    ForeignModule,
    Function,
    KerasName,
    Method,
    Opaque,
    Quiet,
    Scope,
    is_data,
    python_error,
    type_name,
)

_BREAK = 1  # what a block returns when a break, continue or return ends it
_CONTINUE = 2
_RETURN = 3


class Builder(Protocol):
    """What the evaluator asks of the model builder."""

    def call_keras(self, name: KerasName, site: CallSite, *, statement: bool) -> Any:
        """Call a Keras name: construct a layer, declare an input, make a model ... With
        ``statement``, the call is a statement of its own at module level (the sequential
        shorthand)."""

    def call_literals(self, name: KerasName, call: Call, *, statement: bool) -> Any:
        """``call_keras`` for a call whose arguments are all literals, where the builder has a
        shorter path for it; ``NotImplemented`` where it has none."""

    def apply_object(self, callee: Any, value: Any, value_span: Span, span: Span) -> Any:
        """``call_object`` for a call of one positional argument, already evaluated, where the
        builder has a shorter path for it; ``NotImplemented`` where it has none."""

    def call_object(self, callee: Any, site: CallSite) -> Any:
        """Call a tensor or a builder's object (apply a layer to tensors)."""

    def attribute(self, value: Any, name: str, span: Span) -> Any:
        """An attribute of a tensor or of a builder's object (``x.shape``, ``model.add``)."""

    def directive(self, directive: Directive) -> None: ...

    def module_statement(self, statement: Statement, value: Any) -> None:
        """A statement at module level has run, giving ``value`` (an assignment's value)."""

    def failed(self, statement: Statement) -> None:
        """A statement at module level failed."""

    def is_keras_name(self, name: str) -> bool:
        """Whether an unbound bare name is one of Keras's (a layer class, ``keras`` ...)."""

    def is_layer_name(self, name: str) -> bool:
        """Whether a bare name is a layer class (which no later assignment can make unknown)."""


# ---------------------------------------------------------------------------------------------
# The interpreter


class Evaluator:
    """Runs one program. ``run`` executes its statements, reporting each failed statement's
    error and going on with the next (a name a failed statement binds stays quiet)."""

    def __init__(self, program: Program, builder: Builder | None = None):
        self.program = program
        self.builder = builder
        self.globals: dict[str, Any] = {}
        self.builtins = prelude.BUILTINS
        self.methods = prelude.METHODS
        self.scope: Scope | None = None
        self.steps = 0
        self.allocated = 0
        self.depth = 0
        self.active: list[Def | Lambda] = []
        self.returned: Any = None
        self.errors: list[ConvcError] = []

    # -- the program ------------------------------------------------------------------------

    def run(
        self, *, keep_going: bool = True, stop: Callable[[], bool] | None = None
    ) -> list[ConvcError]:
        """Execute every statement; the errors of the statements that failed."""
        for statement in self.program.statements:
            self.depth = 0
            self.scope = None
            self.active = []
            try:
                self.execute(statement)
            except Quiet:
                self.after_failure(statement)
            except ConvcErrors as several:
                self.errors.extend(_detached(e) for e in several.errors)
                self.after_failure(statement)
            except ConvcError as error:
                self.errors.append(_detached(error))
                self.after_failure(statement)
            if self.errors and not keep_going:
                break
            if len(self.errors) >= MAX_ERRORS or (stop is not None and stop()):
                break
        return self.errors

    def after_failure(self, statement: Statement) -> None:
        for name in _bound_names(statement):
            self.globals[name] = FAILED
        if self.builder is not None:
            self.builder.failed(statement)

    def name_of(self, value: Any) -> str | None:
        """The name ``value`` is bound to, innermost scope first (the last bound, if several)."""
        scope = self.scope
        while scope is not None:
            names = [n for n, v in scope.values.items() if v is value]
            if names:
                return names[-1]
            scope = scope.parent
        names = [n for n, v in self.globals.items() if v is value]
        return names[-1] if names else None

    # -- bounds -----------------------------------------------------------------------------

    def step(self, span: Span, count: int = 1) -> None:
        self.steps += count
        if self.steps > MAX_STEPS:
            raise ConvcError(
                f"the program takes more than {MAX_STEPS:,} evaluation steps",
                span,
                help="convc evaluates a program that builds a model; a loop this long builds "
                "nothing a model needs",
            )

    def allocate(
        self, size: int, span: Span, what: str = "the value", *, added: int | None = None
    ) -> None:
        """A value of ``size`` items (a string's characters) is made, ``added`` of them new (all,
        by default): each value is bounded, and so is all the program makes."""
        if size > MAX_ITEMS:
            unit = "characters" if what == "the string" else "items"
            raise ConvcError(
                f"{what} would have {size:,} {unit}; convc allows at most {MAX_ITEMS:,}", span
            )
        self.allocated += size if added is None else added
        if self.allocated > MAX_ALLOCATION:
            raise ConvcError(
                f"the program makes more than {MAX_ALLOCATION:,} items and characters in all",
                span,
            )

    def charge(self, value: Any, span: Span) -> None:
        """Count the items of a container the registry is given a copy of."""
        if type(value) in (list, tuple, dict):
            count = self.weigh(value, span)
            self.allocate(count, span, added=count)

    def check_int(self, value: int, span: Span) -> int:
        if value.bit_length() > 330 and abs(value) >= 10**MAX_INT_DIGITS:
            raise ConvcError(
                f"the integer would have more than {MAX_INT_DIGITS} digits; convc computes with "
                "smaller ones",
                span,
            )
        return value

    def weigh(self, value: Any, span: Span) -> int:
        """How many items comparing or hashing ``value`` visits (each shared item each time it
        is reached), charged as steps; values nested deeper than ``MAX_NESTING`` are refused."""
        total = 0
        stack = [(value, 0)]
        limit = MAX_STEPS - self.steps + 1
        while stack:
            item, depth = stack.pop()
            total += 1
            if total > limit:
                break
            kind = type(item)
            if kind is list or kind is tuple:
                if depth >= MAX_NESTING:
                    raise _too_deep(span)
                stack.extend((x, depth + 1) for x in item)
            elif kind is dict:
                if depth >= MAX_NESTING:
                    raise _too_deep(span)
                stack.extend((x, depth + 1) for x in item)
                stack.extend((x, depth + 1) for x in item.values())
        self.step(span, total)
        return total

    # -- statements -------------------------------------------------------------------------

    def execute(self, statement: Statement) -> int | None:
        self.steps += 1
        if self.steps > MAX_STEPS:
            self.step(statement.span, 0)
        return self.executors[type(statement)](self, statement)

    def block(self, statements: tuple[Statement, ...]) -> int | None:
        self.depth += 1
        if self.depth > MAX_EVALUATION_DEPTH:
            raise _nesting(statements[0].span)
        for statement in statements:
            signal = self.execute(statement)
            if signal is not None:
                self.depth -= 1
                return signal
        self.depth -= 1
        return None

    def module_statement(self, statement: Statement, value: Any) -> None:
        if self.scope is None and self.builder is not None:
            self.builder.module_statement(statement, value)

    def assign(self, node: Assign) -> None:
        value = self.evaluate(node.value)
        self.store(node.target, value)
        self.module_statement(node, value)

    def assign_to(self, node: AssignTo) -> None:
        value = self.evaluate(node.value)
        for target in node.targets:
            self.assign_target(target, value)
        self.module_statement(node, value)

    def store(self, name: str, value: Any) -> None:
        if self.scope is None:
            self.globals[name] = value
        else:
            self.scope.values[name] = value

    def assign_target(self, target: Expr, value: Any) -> None:
        if isinstance(target, Reference):
            self.store(target.name, value)
        elif isinstance(target, Display):
            self.unpack(target, value)
        elif isinstance(target, Subscript):
            container = self.evaluate(target.value)
            index = self.evaluate(target.index)
            self.set_item(container, index, value, target)
        else:  # the parser makes no other target
            raise ConvcError("this cannot be assigned to", target.span)

    def unpack(self, target: Display, value: Any) -> None:
        items = self.materialize(value, target.span)
        starred = [i for i, t in enumerate(target.items) if isinstance(t, Starred)]
        count = len(target.items)
        if not starred:
            if len(items) != count:
                raise ConvcError(
                    f"too many values to unpack (expected {count})"
                    if len(items) > count
                    else f"not enough values to unpack (expected {count}, got {len(items)})",
                    target.span,
                )
            for item_target, item in zip(target.items, items, strict=True):
                self.assign_target(item_target, item)
            return
        star = starred[0]
        after = count - star - 1
        if len(items) < count - 1:
            raise ConvcError(
                f"not enough values to unpack (expected at least {count - 1}, got {len(items)})",
                target.span,
            )
        for item_target, item in zip(target.items[:star], items[:star], strict=True):
            self.assign_target(item_target, item)
        rest = target.items[star]
        assert isinstance(rest, Starred)
        self.assign_target(rest.value, items[star : len(items) - after])
        for item_target, item in zip(
            target.items[star + 1 :], items[len(items) - after :], strict=True
        ):
            self.assign_target(item_target, item)

    def set_item(self, container: Any, index: Any, value: Any, node: Subscript) -> None:
        kind = type(container)
        if kind is dict:
            self.hashable(index, node.index.span)
            if index not in container:
                self.allocate(len(container) + 1, node.span, "the dict", added=1)
        elif kind is not list:
            raise ConvcError(
                f"'{type_name(container)}' object does not support item assignment",
                node.value.span,
            )
        elif type(index) is slice and not isinstance(value, list | tuple):
            value = self.materialize(value, node.span)  # bounded, before the list takes it
        try:
            container[index] = value
        except (TypeError, ValueError, IndexError, KeyError) as error:
            raise python_error(error, node.span) from None
        if kind is list and len(container) > MAX_ITEMS:
            self.allocate(len(container), node.span, "the list", added=0)

    def augmented_assign(self, node: AugmentedAssign) -> None:
        target = node.target
        if isinstance(target, Subscript):
            container = self.evaluate(target.value)
            index = self.evaluate(target.index)
            current = self.get_item(container, index, target)
            result = self.binary(node.op, current, self.evaluate(node.value), node, inplace=True)
            self.set_item(container, index, result, target)
        else:
            assert isinstance(target, Reference)
            current = self.lookup(target.name, target.span)
            result = self.binary(node.op, current, self.evaluate(node.value), node, inplace=True)
            self.store(target.name, result)
        self.module_statement(node, result)

    def expression_statement(self, node: Call | Apply | ExpressionStatement) -> None:
        expression = node.value if isinstance(node, ExpressionStatement) else node
        module_level = self.scope is None and self.builder is not None
        if module_level and isinstance(expression, Call | Apply | CallExpression):
            value = self.call_node(expression, statement=True)
        else:
            value = self.evaluate(expression)
        if module_level and isinstance(value, KerasName):
            raise ConvcError(
                f"expected '(' after the layer name '{value.written}'",
                Span(
                    node.span.end_line,
                    node.span.end_column,
                    node.span.end_line,
                    node.span.end_column + 1,
                    node.span.end,
                    node.span.end + 1,
                ),  # fmt: skip
                help="a statement is a layer call such as Conv2D(8, 3), an assignment or a "
                "directive such as 'model NAME'",
            )
        self.module_statement(node, value)

    def if_(self, node: If) -> int | None:
        if self.truth(self.evaluate(node.test), node.test.span):
            return self.block(node.body)
        if node.orelse:
            return self.block(node.orelse)
        return None

    def for_(self, node: For) -> int | None:
        iterator = self.iterate(self.evaluate(node.iterable), node.iterable.span)
        span = node.iterable.span
        for item in iterator:
            self.steps += 1
            if self.steps > MAX_STEPS:
                self.step(span, 0)
            self.assign_target(node.target, item)
            signal = self.block(node.body)
            if signal == _BREAK:
                return None
            if signal == _RETURN:
                return signal
        if node.orelse:
            return self.block(node.orelse)
        return None

    def def_(self, node: Def) -> None:
        self.store(node.name, self.make_function(node.name, node))

    def make_function(self, name: str, node: Def | Lambda) -> Function:
        defaults = {}
        for parameter in node.parameters.positional + node.parameters.keyword_only:
            if parameter.default is not None:
                defaults[parameter.name] = self.evaluate(parameter.default)
        return Function(name, node, defaults, self.scope)

    def return_(self, node: Return) -> int:
        self.returned = None if node.value is None else self.evaluate(node.value)
        return _RETURN

    def assert_(self, node: Assert) -> None:
        if self.truth(self.evaluate(node.test), node.test.span):
            return
        message = "assertion failed"
        if node.message is not None:
            message += ": " + self.to_str(self.evaluate(node.message), node.message.span)
        raise ConvcError(message, node.test.span)

    def import_(self, node: Import) -> None:
        for bound, path in node.names:
            root = path.split(".")[0]
            if root in _MODULE_ROOTS:
                value: Any = KerasName(bound, path, node.span)
            else:
                value = ForeignModule(path)
            self.store(bound, value)

    def directive(self, node: Directive) -> None:
        if self.builder is not None:
            self.builder.directive(node)

    # -- expressions ------------------------------------------------------------------------

    def evaluate(self, node: Expr) -> Any:
        self.steps += 1
        self.depth += 1
        if self.depth > MAX_EVALUATION_DEPTH:
            raise _nesting(node.span)
        value = self.evaluators[type(node)](self, node)
        self.depth -= 1
        return value

    def literal(self, node: Literal) -> Any:
        return node.value

    def sequence(self, node: Sequence) -> Any:
        items = [self.evaluate(item) for item in node.items]
        self.allocate(len(items), node.span)
        return tuple(items) if node.kind == "tuple" else items

    def mapping(self, node: Mapping) -> dict:
        result: dict = {}
        for key_node, value_node in node.entries:
            key = self.evaluate(key_node)
            self.hashable(key, key_node.span)
            result[key] = self.evaluate(value_node)
        self.allocate(len(result), node.span)
        return result

    def reference(self, node: Reference) -> Any:
        return self.dotted(node.name, node.span)

    def dotted(self, name: str, span: Span, *, call: bool = False) -> Any:
        if "." not in name:
            return self.lookup(name, span, call=call)
        head, *attributes = name.split(".")
        exact = span.line == span.end_line and span.end - span.start == len(name)
        head_span = _part(span, 0, len(head)) if exact else span
        value = self.lookup(head, head_span, call=call and not attributes)
        position = len(head) + 1
        for attr in attributes:
            width = position + len(attr)
            attr_span = _part(span, 0, width) if exact and width < len(name) else span
            value = self.attribute(value, attr, attr_span)
            position += len(attr) + 1
        return value

    def lookup(self, name: str, span: Span, *, call: bool = False) -> Any:
        """A name's value, as Python finds it: the innermost function scope that binds it,
        then the module, then the builtins; else a Keras name."""
        scope = self.scope
        while scope is not None:
            if name in scope.locals:
                try:
                    return scope.values[name]
                except KeyError:
                    raise ConvcError(
                        f"'{name}' is used before it is assigned", span,
                        help="a name a function assigns anywhere is its own (local) name",
                    ) from None  # fmt: skip
            scope = scope.parent
        value = self.globals.get(name, _MISSING)
        if value is not _MISSING:
            if value is FAILED:
                raise Quiet
            return value
        builtin = self.builtins.get(name)
        if builtin is not None:
            return builtin
        builder = self.builder
        assigned = self.program.assigned.get(name)
        if assigned and not (call and builder is not None and builder.is_layer_name(name)):
            later = [line for line in assigned if line > span.line] or list(assigned)
            raise ConvcError(
                f"'{name}' is used before it is assigned (at line {later[0]})",
                span,
                help="a statement can only use names bound by the statements before it",
            )
        if name in _MODULE_ROOTS or (builder is not None and builder.is_keras_name(name)):
            return KerasName(name, name, span)
        if call:  # the builder says what it is not: an unknown layer, or an unknown name
            return KerasName(name, name, span, known=False)
        raise self.unknown_name(name, span)

    def unknown_name(self, name: str, span: Span) -> ConvcError:
        known = list(self.globals) + list(self.builtins)
        scope = self.scope
        while scope is not None:
            known += list(scope.values)
            scope = scope.parent
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
        return ConvcError(
            f"unknown name '{name}'", span, help=f"did you mean '{close[0]}'?" if close else None
        )

    def attribute_node(self, node: Attribute) -> Any:
        return self.attribute(self.evaluate(node.value), node.attr, node.span)

    def attribute(self, value: Any, attr: str, span: Span) -> Any:
        if isinstance(value, KerasName):
            return value.child(attr, span)
        methods = self.methods.get(type(value))
        if methods is not None:
            function = methods.get(attr)
            if function is not None:
                return Method(value, attr, function)
            raise ConvcError(
                f"'{type_name(value)}' object has no attribute '{attr}' that convc reads",
                span,
                help="convc reads these: " + ", ".join(sorted(methods)),
            )
        if isinstance(value, Tensor | Opaque) and self.builder is not None:
            return self.builder.attribute(value, attr, span)
        if isinstance(value, ForeignModule):
            raise _foreign(value, span)
        raise ConvcError(f"'{type_name(value)}' object has no attribute '{attr}'", span)

    def subscript(self, node: Subscript) -> Any:
        return self.get_item(self.evaluate(node.value), self.evaluate(node.index), node)

    def get_item(self, container: Any, index: Any, node: Subscript) -> Any:
        kind = type(container)
        if kind is dict:
            self.hashable(index, node.index.span)
        elif kind not in (list, tuple, str, range):
            if isinstance(container, Tensor):
                raise ConvcError(
                    "indexing or slicing a tensor is a Keras operation convc does not compile",
                    node.span,
                    help="x.shape[i] is a dimension; Cropping and Reshape layers take parts",
                )
            raise ConvcError(
                f"'{type_name(container)}' object is not subscriptable", node.value.span
            )
        try:
            result = container[index]
        except KeyError as error:
            raise ConvcError(f"key {error.args[0]!r} is not in the dict", node.index.span) from None
        except (TypeError, ValueError, IndexError) as error:
            raise python_error(error, node.span) from None
        if type(index) is slice and kind is not range:
            self.allocate(len(result), node.span)
        return result

    def slice(self, node: Slice) -> slice:
        parts = [
            None if p is None else self.evaluate(p) for p in (node.lower, node.upper, node.step)
        ]
        for part, part_node in zip(parts, (node.lower, node.upper, node.step), strict=True):
            if part is not None and type(part) not in (int, bool):
                raise ConvcError(
                    "slice indices must be integers or None",
                    part_node.span,  # type: ignore[union-attr]
                )
        return slice(*parts)

    def operation(self, node: Operation) -> Any:
        return self.binary(node.op, self.evaluate(node.left), self.evaluate(node.right), node)

    def binary(self, op: str, left: Any, right: Any, node: Any, *, inplace: bool = False) -> Any:
        span = node.span
        left_type, right_type = type(left), type(right)
        if left_type in NUMBERS and right_type in NUMBERS:
            if left_type is not float and right_type is not float:
                _check_int_operation(self, op, left, right, span)
            try:
                result = _OPERATIONS[op](left, right)
            except (ArithmeticError, ValueError, TypeError) as error:
                raise python_error(error, span) from None
            if type(result) is int:
                return self.check_int(result, span)
            if type(result) is complex:
                raise ConvcError(
                    "the result is a complex number, which convc's language does not have", span
                )
            return result
        if inplace and op == "+" and left_type is list:
            items = self.materialize(right, span)  # list += any iterable, in place
            self.allocate(len(left) + len(items), span, "the list", added=len(items))
            left.extend(items)
            return left
        if not is_data(left) or not is_data(right):
            raise _unsupported(op, left, right, span)
        if op == "%" and left_type is str:
            return prelude.percent_format(self, left, right, span)
        if op == "*":
            count = right if left_type in (str, list, tuple) else left
            sized = left if left_type in (str, list, tuple) else right
            if type(count) in (int, bool) and type(sized) in (str, list, tuple):
                what = "the string" if type(sized) is str else "the value"
                self.allocate(len(sized) * max(0, count), span, what)
        elif op in ("+", "|") and left_type is right_type and left_type in (str, list, tuple, dict):
            what = "the string" if left_type is str else "the value"
            self.allocate(len(left) + len(right), span, what)
        try:
            if inplace:
                result = _INPLACE.get(op, _OPERATIONS[op])(left, right)
            else:
                result = _OPERATIONS[op](left, right)
        except (ArithmeticError, ValueError, TypeError) as error:
            raise python_error(error, span) from None
        return result

    def unary(self, node: UnaryOperation) -> Any:
        operand = self.evaluate(node.operand)
        if node.op == "not":
            return not self.truth(operand, node.operand.span)
        if type(operand) not in NUMBERS:
            if isinstance(operand, Tensor):
                raise ConvcError(
                    f"'{node.op}' on a tensor is a Keras operation convc does not compile",
                    node.span,
                )
            raise ConvcError(
                f"bad operand type for unary {node.op}: '{type_name(operand)}'", node.span
            )
        try:
            result = _UNARY[node.op](operand)
        except TypeError as error:  # ~1.5
            raise python_error(error, node.span) from None
        return result

    def boolean(self, node: BooleanOperation) -> Any:
        value = None
        for operand in node.values:
            value = self.evaluate(operand)
            truth = self.truth(value, operand.span)
            if truth if node.op == "or" else not truth:
                return value
        return value

    def comparison(self, node: Comparison) -> bool:
        left = self.evaluate(node.left)
        for op, comparator in zip(node.ops, node.comparators, strict=True):
            right = self.evaluate(comparator)
            if not self.compare(op, left, right, node):
                return False
            left = right
        return True

    def compare(self, op: str, left: Any, right: Any, node: Comparison) -> bool:
        span = node.span
        if op == "is":
            return left is right
        if op == "is not":
            return left is not right
        if isinstance(left, Tensor) or (isinstance(right, Tensor) and op not in ("in", "not in")):
            raise ConvcError(
                f"'{op}' on a tensor is a Keras operation convc does not compile",
                span,
                help="compare its shape instead, e.g. x.shape[-1] == 64",
            )
        if op in ("in", "not in"):
            if type(right) is dict:
                self.hashable(left, span)
            elif type(right) is str:
                if type(left) is not str:
                    raise ConvcError(
                        f"'in <string>' requires string as left operand, not {type_name(left)}",
                        span,
                    )
                self.step(span, (len(left) + len(right)) >> 5)
            elif isinstance(right, ITERATORS) or (
                type(right) is range and type(left) not in (int, bool)
            ):  # consumed up to the first equal item (a range searched item by item)
                if not isinstance(left, SCALARS):
                    self.weigh(left, span)
                for item in self.iterate(right, span):
                    self.step(span)
                    if item is left or self.compare("==", item, left, node):
                        return op == "in"
                return op == "not in"
            elif is_data(right) and hasattr(right, "__len__"):
                if type(right) is not range:  # an int in a range is arithmetic, not a search
                    if not isinstance(left, SCALARS):
                        self.weigh(left, span)
                    self.step(span, len(right))
            else:
                raise ConvcError(f"argument of type '{type_name(right)}' is not iterable", span)
            try:
                found = left in right
            except TypeError as error:
                raise python_error(error, span) from None
            return found if op == "in" else not found
        if type(left) is str and type(right) is str:
            self.steps += (len(left) + len(right)) >> 5
        elif not isinstance(left, SCALARS) and not isinstance(right, SCALARS):
            self.weigh(left, span)
            self.weigh(right, span)
        try:
            return bool(_COMPARE[op](left, right))
        except TypeError as error:
            raise python_error(error, span) from None

    def conditional(self, node: Conditional) -> Any:
        if self.truth(self.evaluate(node.test), node.test.span):
            return self.evaluate(node.body)
        return self.evaluate(node.orelse)

    def display(self, node: Display) -> Any:
        items: list = []
        for item in node.items:
            if isinstance(item, Starred):
                items.extend(self.materialize(self.evaluate(item.value), item.span))
            else:
                items.append(self.evaluate(item))
        self.allocate(len(items), node.span)
        return tuple(items) if node.kind == "tuple" else items

    def dict_display(self, node: DictDisplay) -> dict:
        result: dict = {}
        for key_node, value_node in zip(node.keys, node.values, strict=True):
            if key_node is None:
                mapping = self.evaluate(value_node)
                if type(mapping) is not dict:
                    raise ConvcError(
                        f"'{type_name(mapping)}' object is not a mapping", value_node.span
                    )
                self.weigh(list(mapping), value_node.span)
                result.update(mapping)
            else:
                key = self.evaluate(key_node)
                self.hashable(key, key_node.span)
                result[key] = self.evaluate(value_node)
            self.allocate(len(result), node.span, added=1)
        return result

    def comprehension(self, node: Comprehension) -> Any:
        first = self.iterate(self.evaluate(node.clauses[0].iterable), node.clauses[0].iterable.span)
        scope = Scope(node.locals, {}, self.scope)
        if node.kind == "generator":
            return self.generator(node, first, scope)
        outer = self.scope
        self.scope = scope
        try:
            if node.kind == "list":
                items: list = []
                for _ in self.clauses(node, 0, first):
                    items.append(self.evaluate(node.element))
                    self.allocate(len(items), node.span, added=1)
                return items
            result: dict = {}
            assert node.value is not None
            for _ in self.clauses(node, 0, first):
                key = self.evaluate(node.element)
                self.hashable(key, node.element.span)
                result[key] = self.evaluate(node.value)
                self.allocate(len(result), node.span, added=1)
            return result
        finally:
            self.scope = outer

    def clauses(self, node: Comprehension, index: int, iterator: Iterator) -> Iterator[None]:
        """Yield once per combination of the clauses' items that passes their conditions, with
        the targets bound (in the current scope, the comprehension's)."""
        clause = node.clauses[index]
        span = clause.iterable.span
        last = index == len(node.clauses) - 1
        for item in iterator:
            self.step(span)
            self.assign_target(clause.target, item)
            if all(self.truth(self.evaluate(c), c.span) for c in clause.conditions):
                if last:
                    yield None
                else:
                    following = node.clauses[index + 1].iterable
                    yield from self.clauses(
                        node, index + 1, self.iterate(self.evaluate(following), following.span)
                    )

    def generator(self, node: Comprehension, first: Iterator, scope: Scope) -> Iterator[Any]:
        """A generator expression: lazy, as in Python; its own scope while it computes."""

        def produce() -> Iterator[Any]:
            outer = self.scope
            self.scope = scope
            try:
                walk = self.clauses(node, 0, first)
                while True:
                    try:
                        next(walk)
                    except StopIteration:
                        return
                    value = self.evaluate(node.element)
                    self.scope = outer
                    yield value
                    outer = self.scope
                    self.scope = scope
            finally:
                self.scope = outer

        return produce()

    def fstring(self, node: FString) -> str:
        pieces: list[str] = []
        length = 0
        for part in node.parts:
            if isinstance(part, str):
                pieces.append(part)
            else:
                value = self.evaluate(part.value)
                if part.conversion == "s":
                    value = self.to_str(value, part.span)
                elif part.conversion in ("r", "a"):
                    value = self.to_repr(value, part.span)
                    if part.conversion == "a":
                        value = value.encode("ascii", "backslashreplace").decode("ascii")
                spec = "" if part.spec is None else self.fstring(part.spec)
                pieces.append(prelude.format_value(self, value, spec, part.span))
            length += len(pieces[-1])
            self.allocate(length, node.span, "the string", added=len(pieces[-1]))
        return "".join(pieces)

    def lambda_(self, node: Lambda) -> Function:
        return self.make_function("<lambda>", node)

    # -- calls ------------------------------------------------------------------------------

    def call_node(self, node: Call | Apply | CallExpression, statement: bool = False) -> Any:
        if isinstance(node, Call):
            function = self.dotted(node.name, node.name_span, call=True)
            if (
                type(function) is KerasName
                and self.builder is not None
                and all(type(arg) is Literal for arg in node.args)
                and all(type(keyword.value) is Literal for keyword in node.kwargs)
            ):  # most layer calls: evaluating each argument would give the literal's value
                self.steps += len(node.args) + len(node.kwargs)
                value = self.builder.call_literals(function, node, statement=statement)
                if value is not NotImplemented:
                    return value
            function_span = node.name_span
        elif isinstance(node, Apply):
            function = self.evaluate(node.callee)
            function_span = node.callee.span
            if len(node.args) == 1 and not node.kwargs and self.builder is not None:
                # layer(x), as most applications are
                arg = node.args[0]
                value = self.evaluate(arg)
                result = self.builder.apply_object(function, value, arg.span, node.span)
                if result is not NotImplemented:
                    return result
                site = CallSite(node, function_span, self)  # the argument is evaluated once
                site.add_arg(value, arg, arg.span)
                return self.invoke(function, site, statement=statement)
        else:
            callee = node.function
            if isinstance(callee, Reference):
                function = self.dotted(callee.name, callee.span, call=True)
            else:
                function = self.evaluate(callee)
            function_span = callee.span
        site = self.arguments(node, function_span)
        return self.invoke(function, site, statement=statement)

    def arguments(self, node: Call | Apply | CallExpression, function_span: Span) -> CallSite:
        site = CallSite(node, function_span, self)
        args = site.args
        for arg in node.args:
            if isinstance(arg, Starred):
                items = self.materialize(self.evaluate(arg.value), arg.span)
                args.extend(items)
                site.arg_nodes.extend([None] * len(items))
                site.arg_spans.extend([arg.span] * len(items))
            else:
                site.add_arg(self.evaluate(arg), arg, arg.span)
        keywords = node.keywords if isinstance(node, CallExpression) else node.kwargs
        for keyword in keywords:
            if keyword.name is None:  # **mapping
                assert isinstance(keyword, KeywordArgument)
                mapping = self.evaluate(keyword.value)
                if type(mapping) is not dict:
                    raise ConvcError(
                        f"argument after ** must be a mapping, not {type_name(mapping)}",
                        keyword.span,
                    )
                for key, value in mapping.items():
                    if type(key) is not str:
                        raise ConvcError("keywords must be strings", keyword.span)
                    self.add_keyword(site, key, value, None, keyword.span, keyword.span)
            else:
                value = self.evaluate(keyword.value)
                self.add_keyword(
                    site, keyword.name, value, keyword.value, keyword.span, keyword.value.span
                )
        return site

    @staticmethod
    def add_keyword(
        site: CallSite, name: str, value: Any, node: Expr | None, span: Span, value_span: Span
    ) -> None:
        if any(k[0] == name for k in site.keywords):
            raise ConvcError(f"keyword argument '{name}' is given twice", span)
        site.keywords.append((name, value, node, span, value_span))

    def invoke(self, function: Any, site: CallSite, *, statement: bool = False) -> Any:
        if isinstance(function, Function):
            return self.call_function(function, site)
        if isinstance(function, Builtin):
            return function.function(self, site)
        if isinstance(function, Method):
            return function.function(self, function.receiver, site)
        if isinstance(function, KerasName):
            if self.builder is None:
                raise ConvcError(f"unknown name '{function.written}'", site.function_span)
            return self.builder.call_keras(function, site, statement=statement)
        if isinstance(function, Tensor | Opaque) and self.builder is not None:
            return self.builder.call_object(function, site)
        if isinstance(function, ForeignModule):
            raise _foreign(function, site.function_span)
        raise ConvcError(f"'{type_name(function)}' object is not callable", site.function_span)

    def call_function(self, function: Function, site: CallSite) -> Any:
        definition = function.definition
        if any(active is definition for active in self.active):
            raise ConvcError(
                f"{function.name}() calls itself: recursion is not part of convc's language",
                site.span,
                help="write a loop instead",
            )
        if len(self.active) >= MAX_CALL_DEPTH:
            raise ConvcError(f"function calls nest more than {MAX_CALL_DEPTH} deep", site.span)
        values = self.bind_arguments(function, site)
        outer = self.scope
        self.scope = Scope(definition.locals, values, function.closure)
        self.active.append(definition)
        try:
            if isinstance(definition, Lambda):
                return self.evaluate(definition.body)
            signal = self.block(definition.body)
            if signal == _RETURN:
                value, self.returned = self.returned, None
                return value
            return None
        except ConvcError as error:
            error.called_from(function.name, site.span)
            raise
        finally:
            self.active.pop()
            self.scope = outer

    def bind_arguments(self, function: Function, site: CallSite) -> dict:
        """Python's binding of a call's arguments to a function's parameters, with its messages."""
        parameters = function.definition.parameters
        name = function.name
        positional = parameters.positional
        values: dict = {}
        args = site.args
        if len(args) > len(positional) and parameters.vararg is None:
            given = len(args)
            takes = len(positional)
            raise ConvcError(
                f"{name}() takes {takes} positional argument{'' if takes == 1 else 's'} but "
                f"{given} {'was' if given == 1 else 'were'} given",
                site.arg_spans[takes],
            )
        for parameter, value in zip(positional, args, strict=False):
            values[parameter.name] = value
        if parameters.vararg is not None:
            values[parameters.vararg] = tuple(args[len(positional) :])
        extra: dict = {}
        by_keyword = {p.name: p for p in positional[parameters.positional_only :]}
        by_keyword.update((p.name, p) for p in parameters.keyword_only)
        for key, value, _node, span, _value_span in site.keywords:
            if key not in by_keyword:
                if parameters.kwarg is not None:
                    extra[key] = value
                    continue
                close = difflib.get_close_matches(key, list(by_keyword), n=1, cutoff=0.6)
                raise ConvcError(
                    f"{name}() got an unexpected keyword argument '{key}'",
                    span,
                    help=f"did you mean '{close[0]}'?" if close else None,
                )
            if key in values:
                raise ConvcError(f"{name}() got multiple values for argument '{key}'", span)
            values[key] = value
        for group, kind in ((positional, "positional"), (parameters.keyword_only, "keyword-only")):
            missing = []
            for parameter in group:
                if parameter.name in values:
                    continue
                if parameter.name in function.defaults:
                    values[parameter.name] = function.defaults[parameter.name]
                else:
                    missing.append(parameter.name)
            if missing:
                raise ConvcError(
                    f"{name}() missing {len(missing)} required {kind} argument"
                    f"{'' if len(missing) == 1 else 's'}: {_and(missing)}",
                    site.span,
                )
        if parameters.kwarg is not None:
            values[parameters.kwarg] = extra
        return values

    # -- values -----------------------------------------------------------------------------

    def truth(self, value: Any, span: Span) -> bool:
        if isinstance(value, Tensor):
            raise ConvcError(
                "a tensor has no truth value: its values are known only when the model runs",
                span,
                help="test its shape instead, e.g. if x.shape[-1] != filters:",
            )
        if isinstance(value, ForeignModule):
            raise _foreign(value, span)
        return bool(value) if isinstance(value, DATA) else True

    def hashable(self, value: Any, span: Span) -> None:
        if type(value) is tuple:
            self.weigh(value, span)
        try:
            hash(value)
        except TypeError as error:
            raise python_error(error, span) from None

    def iterate(self, value: Any, span: Span) -> Iterator:
        """An iterator over ``value``'s items, as a ``for`` loop takes them."""
        kind = type(value)
        if kind is list or kind is tuple or kind is range or kind is str:
            return iter(value)
        if is_data(value) or isinstance(value, ITERATORS):
            try:
                iterator = iter(value)
            except TypeError as error:  # a number
                raise python_error(error, span) from None
            # a dict changed while it is iterated, zip(strict=True) ...: Python's errors
            return _guarded(iterator, span)
        if isinstance(value, Tensor):
            raise ConvcError(
                "a tensor cannot be iterated over: its values are known only when the model runs",
                span,
            )
        raise ConvcError(f"'{type_name(value)}' object is not iterable", span)

    def materialize(self, value: Any, span: Span) -> list:
        """``value``'s items as a list, at most ``MAX_ITEMS`` of them."""
        if type(value) in (list, tuple, str):
            self.step(span, len(value))
            return list(value)
        items = []
        for item in self.iterate(value, span):
            items.append(item)
            if len(items) > MAX_ITEMS:
                self.allocate(len(items), span, added=0)
            self.steps += 1
        self.step(span, 0)
        self.allocate(len(items), span)
        return items

    def to_str(self, value: Any, span: Span) -> str:
        return prelude.to_str(self, value, span)

    def to_repr(self, value: Any, span: Span) -> str:
        return prelude.to_repr(self, value, span)

    # What evaluates each kind of expression, and executes each kind of statement: plain
    # functions, called with the evaluator (methods bound to it would make every evaluator a
    # reference cycle, which keeps its program and all it built alive until the cycle collector
    # walks them).
    evaluators: ClassVar[dict[type, Callable[[Evaluator, Any], Any]]] = {
        Literal: literal,
        Reference: reference,
        Sequence: sequence,
        Mapping: mapping,
        Call: call_node,
        Apply: call_node,
        CallExpression: call_node,
        Attribute: attribute_node,
        Subscript: subscript,
        Slice: slice,
        Operation: operation,
        UnaryOperation: unary,
        BooleanOperation: boolean,
        Comparison: comparison,
        Conditional: conditional,
        Display: display,
        DictDisplay: dict_display,
        Comprehension: comprehension,
        FString: fstring,
        Lambda: lambda_,
    }
    executors: ClassVar[dict[type, Callable[[Evaluator, Any], Any]]] = {
        Assign: assign,
        AssignTo: assign_to,
        AugmentedAssign: augmented_assign,
        Call: expression_statement,
        Apply: expression_statement,
        ExpressionStatement: expression_statement,
        If: if_,
        For: for_,
        Def: def_,
        Return: return_,
        Break: lambda evaluator, node: _BREAK,
        Continue: lambda evaluator, node: _CONTINUE,
        Pass: lambda evaluator, node: None,
        Assert: assert_,
        Import: import_,
        Directive: directive,
    }


def _detached(error: ConvcError) -> ConvcError:
    """``error`` without the frames it was raised through, its own or those of the exception it
    was raised from or while handling (``raise ... from None`` still keeps that one): an error
    kept while the program goes on would otherwise keep the evaluator, and all it made, in a
    reference cycle. Its message and place are all that is shown of it."""
    error.__traceback__ = None
    error.__context__ = None
    error.__cause__ = None
    return error


_MISSING = object()

_MODULE_ROOTS = frozenset(
    {"keras", "tf", "tensorflow", "tf_keras", "layers", "initializers", "regularizers",
     "constraints", "activations", "models", "np", "numpy", "torch"}
)  # fmt: skip
"""Module names a program may use without importing them (as convc always has), and the roots
an ``import`` may name; an import of another module binds a name whose every use is refused."""

_OPERATIONS: dict[str, Callable[[Any, Any], Any]] = {
    "+": operator.add,
    "-": operator.sub,
    "*": operator.mul,
    "/": operator.truediv,
    "//": operator.floordiv,
    "%": operator.mod,
    "**": operator.pow,
    "<<": operator.lshift,
    ">>": operator.rshift,
    "&": operator.and_,
    "|": operator.or_,
    "^": operator.xor,
}
_INPLACE: dict[str, Callable[[Any, Any], Any]] = {
    "+": operator.iadd,
    "*": operator.imul,
    "|": operator.ior,
}
"""The operators that change a list or dict in place (``xs *= 2``, ``d |= other``); on other
values they make a new one, as in Python."""
_UNARY: dict[str, Callable[[Any], Any]] = {
    "-": operator.neg,
    "+": operator.pos,
    "~": operator.invert,
}
_COMPARE: dict[str, Callable[[Any, Any], Any]] = {
    "==": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}

_INT_BITS = 340  # a little more than 10**MAX_INT_DIGITS needs


def _check_int_operation(evaluator: Evaluator, op: str, left: int, right: int, span: Span) -> None:
    """Refuse, before computing it, an integer result far beyond ``MAX_INT_DIGITS`` digits."""
    if op == "**":
        if right > 0 and abs(left) > 1 and right * (abs(left).bit_length() - 1) > _INT_BITS:
            evaluator.check_int(10**MAX_INT_DIGITS, span)
    elif op == "*":
        if left.bit_length() + right.bit_length() > _INT_BITS + 2:
            evaluator.check_int(10**MAX_INT_DIGITS, span)
    elif op == "<<" and right > 0 and left and left.bit_length() + right > _INT_BITS + 2:
        evaluator.check_int(10**MAX_INT_DIGITS, span)


def _part(span: Span, offset: int, width: int) -> Span:
    """The part of a one-line span ``offset`` characters in, ``width`` wide."""
    column = span.column + offset
    start = span.start + offset
    return Span(span.line, column, span.line, column + width, start, start + width)


def _guarded(iterator: Iterator, span: Span) -> Iterator:
    while True:
        try:
            item = next(iterator)
        except StopIteration:
            return
        except (RuntimeError, ValueError, TypeError) as error:
            raise python_error(error, span) from None
        yield item


def _and(names: list[str]) -> str:
    quoted = [f"'{n}'" for n in names]
    if len(quoted) == 1:
        return quoted[0]
    return ", ".join(quoted[:-1]) + (", and " if len(quoted) > 2 else " and ") + quoted[-1]


def _nesting(span: Span) -> ConvcError:
    return ConvcError(
        f"evaluation nests more than {MAX_EVALUATION_DEPTH} levels deep (expressions, blocks "
        "and calls together)",
        span,
    )


def _too_deep(span: Span) -> ConvcError:
    return ConvcError(f"the value nests more than {MAX_NESTING} levels deep", span)


def _foreign(module: ForeignModule, span: Span) -> ConvcError:
    return ConvcError(
        f"'{module.name}' is not a module convc's language has: it reads no code but Keras's",
        span,
        help="a .conv program uses Keras and TensorFlow names only",
    )


def _unsupported(op: str, left: Any, right: Any, span: Span) -> ConvcError:
    help = None
    if isinstance(left, Tensor) or isinstance(right, Tensor):
        layer = {"+": "Add", "-": "Subtract", "*": "Multiply"}.get(op)
        help = (
            f"convc compiles layers: write layers.{layer}()([a, b])"
            if layer and isinstance(left, Tensor) and isinstance(right, Tensor)
            else "arithmetic on tensors is a Keras operation convc does not compile"
        )
    return ConvcError(
        f"unsupported operand type(s) for {op}: '{type_name(left)}' and '{type_name(right)}'",
        span,
        help=help,
    )


def _bound_names(statement: Statement) -> list[str]:
    """The module-level names a statement binds (to mark them failed when it fails)."""
    names: list[str] = []

    def targets(target: Any) -> None:
        if isinstance(target, Reference):
            names.append(target.name)
        elif isinstance(target, Display):
            for item in target.items:
                targets(item)
        elif isinstance(target, Starred):
            targets(target.value)

    def walk(node: Any) -> None:
        if isinstance(node, Assign):
            names.append(node.target)
        elif isinstance(node, AssignTo):
            for target in node.targets:
                targets(target)
        elif isinstance(node, AugmentedAssign):
            targets(node.target)
        elif isinstance(node, For):
            targets(node.target)
            for child in node.body + node.orelse:
                walk(child)
        elif isinstance(node, If):
            for child in node.body + node.orelse:
                walk(child)
        elif isinstance(node, Def):
            names.append(node.name)
        elif isinstance(node, Import):
            names.extend(bound for bound, _ in node.names)

    walk(statement)
    return names


def evaluate_text(text: str) -> dict[str, Any]:
    """Run a program that builds no model and return its module's names and values; the first
    error raises. (For tests: the same text run by Python must give the same values.)"""
    from convc.syntax import parse

    evaluator = Evaluator(parse(text))
    errors = evaluator.run(keep_going=False)
    if errors:
        raise errors[0]
    return evaluator.globals

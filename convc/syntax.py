"""Parse .conv text into plain, frozen syntax objects with their source spans.

A ``.conv`` file is Keras model code: a hermetic subset of Python (names, arithmetic, lists,
dicts, comprehensions, f-strings, ``if``, ``for``, ``def``) plus two directives (``model NAME``,
``data_format channels_first``). Python's own parser reads it: ``ast.parse`` parses and never
compiles or runs anything, it is exactly Python's grammar with Python's error positions, and
its C parser reads a 10,000-statement file in a third of a second. This module bounds the text
first (its brackets' nesting), then turns Python's tree into convc's syntax objects, refusing every
construct outside the subset (``while``, ``class``, ``try``, sets ...) with a located message,
so that the evaluator (``convc.evaluate``) never meets a construct it does not know. Python's
syntax errors become ``ConvcError``s in convc's words where convc has better ones.

Two vocabularies live here. The *values* (``Literal``, ``Sequence``, ``Mapping``, ``Reference``,
``Call``, ``Apply``, ``Keyword``) are arguments as the layer registry reads them: the parser
makes them wherever an expression is just that (so a file of layer calls parses as it always
did), and the evaluator makes them from computed values for the registry. The *program* objects
(``Operation``, ``Display``, ``Comprehension``, ``If``, ``For``, ``Def`` ...) carry everything else.
"""

from __future__ import annotations

import ast
import bisect
import keyword as python_keywords
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

from convc.diagnostics import ConvcError, Span
from convc.limits import MAX_BLOCK_DEPTH, MAX_EXPRESSION_DEPTH, MAX_INT_DIGITS, MAX_NESTING
from convc.records import fast_init

# ---------------------------------------------------------------------------------------------
# Values: arguments as the layer registry reads them


@fast_init
@dataclass(frozen=True)
class Literal:
    """An int, float, str, bool or None, as written (or as computed, for the registry)."""

    value: Any
    span: Span


@fast_init
@dataclass(frozen=True)
class Sequence:
    """A tuple ``(a, b)`` or a list ``[a, b]`` of values."""

    kind: str  # "tuple" or "list"
    items: tuple[Value, ...]
    span: Span


@fast_init
@dataclass(frozen=True)
class Mapping:
    """A dict ``{"class_name": "HeNormal", "config": {...}}`` of values."""

    entries: tuple[tuple[Value, Value], ...]
    span: Span


@fast_init
@dataclass(frozen=True)
class Reference:
    """A (dotted) name used as a value, e.g. ``x`` or ``keras.activations.relu``."""

    name: str
    span: Span


@fast_init
@dataclass(frozen=True)
class Keyword:
    name: str
    value: Value
    span: Span  # of the name

    @property
    def full_span(self) -> Span:
        return self.span.to(self.value.span)


@fast_init
@dataclass(frozen=True)
class Call:
    """``name(args..., key=value...)``; the name may be dotted (``keras.layers.Conv2D``)."""

    name: str
    args: tuple[Value, ...]
    kwargs: tuple[Keyword, ...]
    span: Span
    name_span: Span

    @property
    def short_name(self) -> str:
        return self.name.rsplit(".", 1)[-1]


@fast_init
@dataclass(frozen=True)
class Apply:
    """A call of a call's result: ``Conv2D(8, 3)(x)``, ``Concatenate()([a, b])``.

    (A bound layer called by name, ``conv(x)``, parses as a ``Call``.) For the registry, a
    tensor (a layer's output) is an ``Apply``."""

    callee: Call | Apply
    args: tuple[Value, ...]
    kwargs: tuple[Keyword, ...]
    span: Span

    @property
    def name_span(self) -> Span:
        return self.callee.span


Value = Literal | Sequence | Mapping | Reference | Call | Apply
_VALUES = (Literal, Sequence, Mapping, Reference, Call, Apply)


def to_python(value: Value) -> Any:
    """The plain Python value of a literal tree; a call or bare name inside is an error."""
    if isinstance(value, Literal):
        return value.value
    if isinstance(value, Sequence):
        items = [to_python(item) for item in value.items]
        return tuple(items) if value.kind == "tuple" else items
    if isinstance(value, Mapping):
        return {_hashable(to_python(k), k): to_python(v) for k, v in value.entries}
    if isinstance(value, Apply):
        what = "a tensor (a layer's output)"
    elif isinstance(value, Call):
        what = "a call"
    else:
        what = f"the name '{value.name}'"
    raise ConvcError(f"expected a literal value here, got {what}", value.span)


def _hashable(key: Any, node: Value) -> Any:
    try:
        hash(key)
    except TypeError:
        raise ConvcError("a dict key must be a string, number or tuple", node.span) from None
    return key


# ---------------------------------------------------------------------------------------------
# Expressions beyond values


@fast_init
@dataclass(frozen=True)
class Attribute:
    """``value.attr`` where ``value`` is not a name (``f(x).shape``); ``a.b`` is a Reference."""

    value: Expr
    attr: str
    span: Span


@fast_init
@dataclass(frozen=True)
class Subscript:
    """``value[index]``; a slice index is a ``Slice``, ``x[1:, 0]`` a tuple of them."""

    value: Expr
    index: Expr
    span: Span


@fast_init
@dataclass(frozen=True)
class Slice:
    lower: Expr | None
    upper: Expr | None
    step: Expr | None
    span: Span


@fast_init
@dataclass(frozen=True)
class Starred:
    """``*items`` in a call, a display or an assignment's targets."""

    value: Expr
    span: Span


@fast_init
@dataclass(frozen=True)
class KeywordArgument:
    """``name=value`` in a call; ``**mapping`` has no name."""

    name: str | None
    value: Expr
    span: Span  # of the name (of the whole ``**mapping``)


@fast_init
@dataclass(frozen=True)
class CallExpression:
    """A call that is not a ``Call`` or ``Apply`` value: computed arguments, ``*args``,
    ``**kwargs``, or a callee such as ``blocks[0]``."""

    function: Expr
    args: tuple[Expr, ...]
    keywords: tuple[KeywordArgument, ...]
    span: Span


@fast_init
@dataclass(frozen=True)
class Operation:
    """``left op right`` for ``+ - * / // % ** << >> & | ^``."""

    left: Expr
    op: str
    right: Expr
    span: Span


@fast_init
@dataclass(frozen=True)
class UnaryOperation:
    """``-x``, ``+x``, ``~x``, ``not x``."""

    op: str
    operand: Expr
    span: Span


@fast_init
@dataclass(frozen=True)
class BooleanOperation:
    """``a and b and ...`` or ``a or b or ...``: the deciding operand's value, as in Python."""

    op: str
    values: tuple[Expr, ...]
    span: Span


@fast_init
@dataclass(frozen=True)
class Comparison:
    """``a < b <= c``: a chain, each operand evaluated once, stopping at the first false."""

    left: Expr
    ops: tuple[str, ...]
    comparators: tuple[Expr, ...]
    span: Span


@fast_init
@dataclass(frozen=True)
class Conditional:
    """``body if test else orelse``."""

    test: Expr
    body: Expr
    orelse: Expr
    span: Span


@fast_init
@dataclass(frozen=True)
class Display:
    """A tuple or list display that is not a ``Sequence`` value (computed items, ``*items``)."""

    kind: str  # "tuple" or "list"
    items: tuple[Expr, ...]
    span: Span


@fast_init
@dataclass(frozen=True)
class DictDisplay:
    """A dict display with computed entries; a key of None marks ``**mapping``."""

    keys: tuple[Expr | None, ...]
    values: tuple[Expr, ...]
    span: Span


@fast_init
@dataclass(frozen=True)
class Clause:
    """``for target in iterable if condition ...`` of a comprehension."""

    target: Expr
    iterable: Expr
    conditions: tuple[Expr, ...]


@fast_init
@dataclass(frozen=True)
class Comprehension:
    """``[element for ...]``, ``(element for ...)`` or ``{element: value for ...}``; its
    targets are its own names (``locals``), as in Python 3."""

    kind: str  # "list", "generator" or "dict"
    element: Expr
    value: Expr | None
    clauses: tuple[Clause, ...]
    span: Span
    locals: frozenset[str]


@fast_init
@dataclass(frozen=True)
class FormattedValue:
    """``{value!conversion:spec}`` in an f-string."""

    value: Expr
    conversion: str  # "", "s", "r" or "a"
    spec: FString | None
    span: Span


@fast_init
@dataclass(frozen=True)
class FString:
    parts: tuple[str | FormattedValue, ...]
    span: Span


@fast_init
@dataclass(frozen=True)
class Parameter:
    name: str
    default: Expr | None
    span: Span


@fast_init
@dataclass(frozen=True)
class Parameters:
    """A function's parameters as Python binds them: ``positional`` (the first
    ``positional_only`` of them by position only), ``*vararg``, ``keyword_only``, ``**kwarg``."""

    positional: tuple[Parameter, ...]
    positional_only: int
    vararg: str | None
    keyword_only: tuple[Parameter, ...]
    kwarg: str | None

    def names(self) -> list[str]:
        names = [p.name for p in self.positional + self.keyword_only]
        return names + [n for n in (self.vararg, self.kwarg) if n is not None]


@fast_init
@dataclass(frozen=True)
class Lambda:
    parameters: Parameters
    body: Expr
    span: Span
    locals: frozenset[str]


Expr = (
    Value
    | Attribute
    | Subscript
    | Slice
    | Starred
    | CallExpression
    | Operation
    | UnaryOperation
    | BooleanOperation
    | Comparison
    | Conditional
    | Display
    | DictDisplay
    | Comprehension
    | FString
    | Lambda
)

# ---------------------------------------------------------------------------------------------
# Statements


@fast_init
@dataclass(frozen=True)
class Assign:
    """``NAME = value``."""

    target: str
    value: Expr
    span: Span
    target_span: Span


@fast_init
@dataclass(frozen=True)
class AssignTo:
    """Any other assignment: ``x, skips = f(x)``, ``a = b = 0``, ``widths[0] = 8``."""

    targets: tuple[Expr, ...]
    value: Expr
    span: Span


@fast_init
@dataclass(frozen=True)
class AugmentedAssign:
    """``target op= value``."""

    target: Expr
    op: str
    value: Expr
    span: Span


@fast_init
@dataclass(frozen=True)
class ExpressionStatement:
    """An expression evaluated for its effects; a call statement is a ``Call`` or ``Apply``."""

    value: Expr
    span: Span


@fast_init
@dataclass(frozen=True)
class If:
    test: Expr
    body: tuple[Statement, ...]
    orelse: tuple[Statement, ...]
    span: Span


@fast_init
@dataclass(frozen=True)
class For:
    target: Expr
    iterable: Expr
    body: tuple[Statement, ...]
    orelse: tuple[Statement, ...]
    span: Span


@fast_init
@dataclass(frozen=True)
class Def:
    """``def name(parameters): body``; ``locals`` are the names it binds (Python's rule: a name
    assigned anywhere in a function is local to all of it)."""

    name: str
    parameters: Parameters
    body: tuple[Statement, ...]
    span: Span
    name_span: Span
    locals: frozenset[str]


@fast_init
@dataclass(frozen=True)
class Return:
    value: Expr | None
    span: Span


@fast_init
@dataclass(frozen=True)
class Break:
    span: Span


@fast_init
@dataclass(frozen=True)
class Continue:
    span: Span


@fast_init
@dataclass(frozen=True)
class Pass:
    span: Span


@fast_init
@dataclass(frozen=True)
class Assert:
    test: Expr
    message: Expr | None
    span: Span


@fast_init
@dataclass(frozen=True)
class Import:
    """``import keras`` or ``from keras import layers as L``: binds names to modules.

    ``names`` pairs each bound name with the dotted path it stands for."""

    names: tuple[tuple[str, str], ...]
    span: Span


@fast_init
@dataclass(frozen=True)
class Directive:
    """A file-level setting: ``model tiny`` or ``data_format channels_first``."""

    name: str
    value: str
    span: Span
    name_span: Span
    value_span: Span


Statement = (
    Directive
    | Import
    | Assign
    | AssignTo
    | AugmentedAssign
    | Call
    | Apply
    | ExpressionStatement
    | If
    | For
    | Def
    | Return
    | Break
    | Continue
    | Pass
    | Assert
)


@fast_init
@dataclass(frozen=True)
class Program:
    statements: tuple[Statement, ...]
    assigned: dict[str, tuple[int, ...]] = field(default_factory=dict)
    """The lines where the module level binds each name (to say 'used before it is assigned')."""


# ---------------------------------------------------------------------------------------------
# Parsing


def parse(source: str) -> Program:
    """Parse a whole .conv text; raise ``ConvcError`` on the first syntax error."""
    if not source.endswith("\n"):
        source += "\n"
    lines = _Lines(source)
    _check_characters(source, lines)
    _check_brackets(source, lines)
    directives = _directives(source, lines)
    tree = _python_parse(_blank(source, directives), source, lines)
    if directives:
        # A line that looks like a directive inside a statement (a string, brackets, a block)
        # is not one: parse again with it kept, so that Python judges it.
        ranges = [(s.lineno, s.end_lineno or s.lineno) for s in tree.body]
        inside = [d for d in directives if any(a <= d.span.line <= b for a, b in ranges)]
        if inside:
            directives = [d for d in directives if d not in inside]
            tree = _python_parse(_blank(source, directives), source, lines)
    converter = _Converter(lines)
    statements: list[Statement] = list(converter.module(tree.body))
    if directives:
        statements = sorted(statements + list(directives), key=lambda s: s.span.start)
    assigned = {name: tuple(at) for name, at in converter.module_assigned.items()}
    return Program(tuple(statements), assigned)


class _Lines:
    """The text's lines, and Python's (line, UTF-8 byte column) positions as convc's spans."""

    def __init__(self, source: str):
        self.text = source.split("\n")
        self.starts = [0]
        for line in self.text:
            self.starts.append(self.starts[-1] + len(line) + 1)
        self.ascii = [line.isascii() for line in self.text]

    def column(self, line: int, byte_column: int) -> int:
        """The 0-based character column of a byte column."""
        if self.ascii[line - 1]:
            return byte_column
        return len(self.text[line - 1].encode("utf-8")[:byte_column].decode("utf-8", "replace"))

    def span(self, node: Any) -> Span:
        line, end_line = node.lineno, node.end_lineno
        column = self.column(line, node.col_offset)
        end_column = self.column(end_line, node.end_col_offset)
        return Span(
            line,
            column + 1,
            end_line,
            end_column + 1,
            self.starts[line - 1] + column,
            self.starts[end_line - 1] + end_column,
        )

    def at(self, offset: int, width: int = 1) -> Span:
        """The span of ``width`` characters at a character offset (on one line)."""
        line = bisect.bisect_right(self.starts, offset)
        column = offset - self.starts[line - 1] + 1
        return Span(line, column, line, column + width, offset, offset + width)

    def offset(self, line: int, column: int) -> int:
        """The character offset of a 1-based line and column."""
        return self.starts[line - 1] + column - 1


def _check_characters(source: str, lines: _Lines) -> None:
    nul = source.find("\0")
    if nul >= 0:
        raise ConvcError("the file contains a NUL character", lines.at(nul))
    for match in re.finditer(r"\r(?!\n)", source):
        raise ConvcError(
            "a carriage return (\\r) that does not end a line",
            lines.at(match.start()),
            help="convc reads lines that end with \\n or \\r\\n",
        )


_SCAN = re.compile(r"#[^\n]*|'''|\"\"\"|'|\"|[()\[\]{}]")
_STRING_BODY = {
    "'": re.compile(r"(?:[^'\\\n]|\\.)*'", re.S),
    '"': re.compile(r'(?:[^"\\\n]|\\.)*"', re.S),
    "'''": re.compile(r"(?:[^\\]|\\.)*?'''", re.S),
    '"""': re.compile(r'(?:[^\\]|\\.)*?"""', re.S),
}
_OPENERS = {"(": ")", "[": "]", "{": "}"}


def _open_brackets(source: str, lines: _Lines, stop: int | None = None) -> list[int]:
    """The offsets of the brackets open at ``stop`` (or at the end), outside strings and
    comments; raises at the first bracket nested deeper than ``MAX_NESTING``."""
    opened: list[int] = []
    position = 0
    end = len(source) if stop is None else stop
    while position < end:
        match = _SCAN.search(source, position, end)
        if match is None:
            break
        token = match.group()
        position = match.end()
        if token[0] == "#":
            continue
        if token[0] in "'\"":
            body = _STRING_BODY[token].match(source, position)
            if body is None:  # unterminated: Python says where
                break
            position = body.end()
        elif token in _OPENERS:
            opened.append(match.start())
            if len(opened) > MAX_NESTING:
                raise ConvcError(
                    f"brackets nest more than {MAX_NESTING} levels deep",
                    lines.at(match.start()),
                    help="Keras arguments need at most three levels, as in ((1, 2), (3, 4))",
                )
        elif opened and source[opened[-1]] == {")": "(", "]": "[", "}": "{"}[token]:
            opened.pop()
        else:  # an unmatched closer: Python says where
            break
    return opened


def _check_brackets(source: str, lines: _Lines) -> None:
    _open_brackets(source, lines)


_DIRECTIVE = re.compile(
    r"^(?P<name>[A-Za-z_][A-Za-z0-9_]*)[ \t]+"
    r"(?P<value>[A-Za-z_][A-Za-z0-9_]*|\"(?:[^\"\\\n]|\\.)*\"|'(?:[^'\\\n]|\\.)*')"
    r"[ \t]*(?:#[^\n]*)?\r?$",
    re.M,
)


def _directives(source: str, lines: _Lines) -> list[Directive]:
    """The lines that are directives: ``NAME WORD`` or ``NAME "string"``, which no Python
    statement is."""
    found = []
    for match in _DIRECTIVE.finditer(source):
        name, value = match.group("name"), match.group("value")
        if python_keywords.iskeyword(name):
            continue
        name_span = lines.at(match.start("name"), len(name))
        value_span = lines.at(match.start("value"), len(value))
        text = value
        if value[0] in "'\"":
            text = _string_value(value, value_span)
        found.append(Directive(name, text, name_span.to(value_span), name_span, value_span))
    return found


def _string_value(text: str, span: Span) -> str:
    try:
        value = ast.literal_eval(text)
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ConvcError(_SURROGATE, span) from None
    except (ValueError, SyntaxError) as error:
        raise ConvcError(f"invalid string literal: {error}", span) from None
    return value


_SURROGATE = "the string holds an unpaired surrogate (\\ud800-\\udfff), which is not text"


def _blank(source: str, directives: list[Directive]) -> str:
    """The text with each directive's line emptied (its line breaks kept)."""
    if not directives:
        return source
    pieces = []
    position = 0
    for directive in directives:
        start = source.rfind("\n", 0, directive.span.start) + 1
        end = source.find("\n", directive.span.start)
        pieces.append(source[position:start])
        position = end
    pieces.append(source[position:])
    return "".join(pieces)


def _python_parse(text: str, source: str, lines: _Lines) -> ast.Module:
    try:
        with warnings.catch_warnings():  # Python's warnings about the text are not convc's
            warnings.simplefilter("ignore")
            return ast.parse(text)
    except SyntaxError as error:
        raise _syntax_error(error, source, lines) from None
    except (RecursionError, MemoryError):
        raise ConvcError(
            "the text nests too deeply for convc to read it",
            _busiest_line(lines),
            help=f"an expression may nest at most {MAX_EXPRESSION_DEPTH} levels deep",
        ) from None


def _busiest_line(lines: _Lines) -> Span:
    """The line with the most operators: where an expression too deep to parse most likely is."""
    counts = [len(re.findall(r"[-+*/%<>=&|^~(.\[]|\bnot\b", text)) for text in lines.text]
    line = counts.index(max(counts)) + 1
    return Span(line, 1, line, len(lines.text[line - 1]) + 1)


# ---------------------------------------------------------------------------------------------
# From Python's tree to convc's

_OPERATORS = {
    ast.Add: "+",
    ast.Sub: "-",
    ast.Mult: "*",
    ast.Div: "/",
    ast.FloorDiv: "//",
    ast.Mod: "%",
    ast.Pow: "**",
    ast.LShift: "<<",
    ast.RShift: ">>",
    ast.BitOr: "|",
    ast.BitXor: "^",
    ast.BitAnd: "&",
}
_UNARY = {ast.USub: "-", ast.UAdd: "+", ast.Not: "not", ast.Invert: "~"}
_COMPARISONS = {
    ast.Eq: "==",
    ast.NotEq: "!=",
    ast.Lt: "<",
    ast.LtE: "<=",
    ast.Gt: ">",
    ast.GtE: ">=",
    ast.Is: "is",
    ast.IsNot: "is not",
    ast.In: "in",
    ast.NotIn: "not in",
}
_CONVERSIONS = {-1: "", 115: "s", 114: "r", 97: "a"}

_NOT_IN_THE_LANGUAGE = " is not part of convc's language"
_REFUSED_STATEMENTS: dict[type, tuple[str, str, str | None]] = {
    ast.While: (
        "while",
        "a 'while' loop" + _NOT_IN_THE_LANGUAGE + ": every loop runs over a finite sequence",
        "write for i in range(n): ...",
    ),
    ast.ClassDef: (
        "class",
        "a class definition" + _NOT_IN_THE_LANGUAGE,
        "convc compiles models made of Keras layers; a custom class cannot be compiled",
    ),
    ast.Try: ("try", "'try'" + _NOT_IN_THE_LANGUAGE + ": an error ends the build", None),
    ast.With: ("with", "'with'" + _NOT_IN_THE_LANGUAGE, None),
    ast.Raise: ("raise", "'raise'" + _NOT_IN_THE_LANGUAGE, "an assert states a condition"),
    ast.Global: ("global", "'global'" + _NOT_IN_THE_LANGUAGE, "return the value instead"),
    ast.Nonlocal: ("nonlocal", "'nonlocal'" + _NOT_IN_THE_LANGUAGE, "return the value instead"),
    ast.Delete: ("del", "'del'" + _NOT_IN_THE_LANGUAGE, None),
    ast.AsyncFunctionDef: ("async", "'async'" + _NOT_IN_THE_LANGUAGE, None),
    ast.AsyncFor: ("async", "'async'" + _NOT_IN_THE_LANGUAGE, None),
    ast.AsyncWith: ("async", "'async'" + _NOT_IN_THE_LANGUAGE, None),
}
for _name in ("Match", "TryStar", "TypeAlias"):
    if hasattr(ast, _name):
        _word = {"Match": "match", "TryStar": "try", "TypeAlias": "type"}[_name]
        _REFUSED_STATEMENTS[getattr(ast, _name)] = (
            _word,
            f"'{_word}'" + _NOT_IN_THE_LANGUAGE,
            None,
        )

_REFUSED_EXPRESSIONS: dict[type, tuple[str, str | None]] = {
    ast.Set: ("a set" + _NOT_IN_THE_LANGUAGE + " (its order is not deterministic)", "use a list"),
    ast.SetComp: (
        "a set comprehension" + _NOT_IN_THE_LANGUAGE + " (its order is not deterministic)",
        "use a list comprehension",
    ),
    ast.NamedExpr: (
        "the assignment expression ':='" + _NOT_IN_THE_LANGUAGE,
        "assign on a line of its own",
    ),
    ast.Await: ("'await'" + _NOT_IN_THE_LANGUAGE, None),
    ast.Yield: ("'yield'" + _NOT_IN_THE_LANGUAGE, "build a list and return it"),
    ast.YieldFrom: ("'yield'" + _NOT_IN_THE_LANGUAGE, "build a list and return it"),
}


_Converted = TypeVar("_Converted")
# a node's type -> what converts a node of it, given the converter
_Table = dict[type, Callable[[Any, Any], _Converted]]


class _Converter:
    """Python's tree to convc's syntax objects, with the scopes Python's rules give names."""

    def __init__(self, lines: _Lines):
        self.lines = lines
        self.depth = 0
        self.blocks = 0
        self.loops = 0
        self.functions = 0
        self.scopes: list[
            set[str]
        ] = []  # the names each enclosing function (or comprehension) binds
        self.module_assigned: dict[str, list[int]] = {}

    def span(self, node: Any) -> Span:
        return self.lines.span(node)

    def keyword_span(self, node: Any, word: str) -> Span:
        span = self.span(node)
        return Span(span.line, span.column, span.line, span.column + len(word), span.start,
                    span.start + len(word))  # fmt: skip

    def bind(self, name: str, line: int) -> None:
        if self.scopes:
            self.scopes[-1].add(name)
        else:
            self.module_assigned.setdefault(name, []).append(line)

    # -- statements -------------------------------------------------------------------------

    def module(self, body: list[ast.stmt]) -> tuple[Statement, ...]:
        return tuple(self.statement(node) for node in body)

    def block(self, body: list[ast.stmt]) -> tuple[Statement, ...]:
        self.blocks += 1
        if self.blocks > MAX_BLOCK_DEPTH:
            raise ConvcError(
                f"blocks (if, for, def) nest more than {MAX_BLOCK_DEPTH} levels deep",
                self.span(body[0]),
                help="move the inner blocks into a function",
            )
        try:
            return tuple(self.statement(node) for node in body)
        finally:
            self.blocks -= 1

    def statement(self, node: ast.stmt) -> Statement:
        method = self.statements.get(type(node))
        if method is not None:
            return method(self, node)
        word, message, help = _REFUSED_STATEMENTS.get(
            type(node), ("", "this statement" + _NOT_IN_THE_LANGUAGE, None)
        )
        raise ConvcError(message, self.keyword_span(node, word or " "), help=help)

    def expression_statement(self, node: ast.Expr) -> Statement:
        value = self.expr(node.value)
        if isinstance(value, Call | Apply):
            return value
        return ExpressionStatement(value, self.span(node))

    def assign(self, node: ast.Assign) -> Statement:
        value = self.expr(node.value)
        if len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            target = node.targets[0]
            self.bind(target.id, node.lineno)
            return Assign(target.id, value, self.span(node), self.span(target))
        targets = tuple(self.target(t) for t in node.targets)
        return AssignTo(targets, value, self.span(node))

    def annotated_assign(self, node: ast.AnnAssign) -> Statement:
        """``x: int = 3`` assigns; the annotation is not evaluated. ``x: int`` does nothing."""
        if node.value is None:
            return Pass(self.span(node))
        value = self.expr(node.value)
        if isinstance(node.target, ast.Name):
            self.bind(node.target.id, node.lineno)
            return Assign(node.target.id, value, self.span(node), self.span(node.target))
        return AssignTo((self.target(node.target),), value, self.span(node))

    def augmented_assign(self, node: ast.AugAssign) -> Statement:
        op = self.operator(node.op, node)
        return AugmentedAssign(self.target(node.target), op, self.expr(node.value), self.span(node))

    def target(self, node: ast.expr) -> Expr:
        """An assignment target: a name (bound in the current scope), a tuple or list of
        targets, ``*name``, or a subscript."""
        span = self.span(node)
        if isinstance(node, ast.Name):
            self.bind(node.id, node.lineno)
            return Reference(node.id, span)
        if isinstance(node, ast.Tuple | ast.List):
            kind = "tuple" if isinstance(node, ast.Tuple) else "list"
            return Display(kind, tuple(self.target(t) for t in node.elts), span)
        if isinstance(node, ast.Starred):
            return Starred(self.target(node.value), span)
        if isinstance(node, ast.Subscript):
            return Subscript(self.expr(node.value), self.expr(node.slice), span)
        if isinstance(node, ast.Attribute):
            raise ConvcError(
                f"convc cannot assign to an attribute ('.{node.attr}')",
                span,
                help="a layer's arguments are given when it is made: Dense(8, trainable=False)",
            )
        raise ConvcError("this cannot be assigned to", span)

    def if_(self, node: ast.If) -> Statement:
        orelse = self.block(node.orelse) if node.orelse else ()
        return If(self.expr(node.test), self.block(node.body), orelse, self.span(node))

    def for_(self, node: ast.For) -> Statement:
        iterable = self.expr(node.iter)
        target = self.target(node.target)
        self.loops += 1
        try:
            body = self.block(node.body)
        finally:
            self.loops -= 1
        orelse = self.block(node.orelse) if node.orelse else ()
        return For(target, iterable, body, orelse, self.span(node))

    def def_(self, node: ast.FunctionDef) -> Statement:
        if node.decorator_list:
            raise ConvcError(
                "a decorator" + _NOT_IN_THE_LANGUAGE, self.span(node.decorator_list[0])
            )
        parameters = self.parameters(node.args)
        self.bind(node.name, node.lineno)
        span = self.span(node)
        text = self.lines.text[span.line - 1]
        column = text.find(node.name, span.column - 1 + len("def"))
        name_span = Span(span.line, column + 1, span.line, column + 1 + len(node.name),
                         self.lines.offset(span.line, column + 1),
                         self.lines.offset(span.line, column + 1) + len(node.name))  # fmt: skip
        scope = set(parameters.names())
        self.scopes.append(scope)
        loops, self.loops = self.loops, 0
        self.functions += 1
        try:
            body = self.block(node.body)
        finally:
            self.scopes.pop()
            self.loops = loops
            self.functions -= 1
        return Def(node.name, parameters, body, span, name_span, frozenset(scope))

    def parameters(self, arguments: ast.arguments) -> Parameters:
        """The parameters, their defaults converted in the enclosing scope (Python evaluates
        them when the ``def`` runs)."""
        positional_nodes = arguments.posonlyargs + arguments.args
        defaults: list[ast.expr | None] = [None] * (
            len(positional_nodes) - len(arguments.defaults)
        ) + list(arguments.defaults)
        positional = tuple(
            Parameter(a.arg, None if d is None else self.expr(d), self.span(a))
            for a, d in zip(positional_nodes, defaults, strict=True)
        )
        keyword_only = tuple(
            Parameter(a.arg, None if d is None else self.expr(d), self.span(a))
            for a, d in zip(arguments.kwonlyargs, arguments.kw_defaults, strict=True)
        )
        return Parameters(
            positional,
            len(arguments.posonlyargs),
            arguments.vararg.arg if arguments.vararg else None,
            keyword_only,
            arguments.kwarg.arg if arguments.kwarg else None,
        )

    def return_(self, node: ast.Return) -> Statement:
        if not self.functions:
            raise ConvcError("'return' outside a function", self.keyword_span(node, "return"))
        return Return(None if node.value is None else self.expr(node.value), self.span(node))

    def break_(self, node: ast.Break) -> Statement:
        if not self.loops:
            raise ConvcError("'break' outside a loop", self.keyword_span(node, "break"))
        return Break(self.span(node))

    def continue_(self, node: ast.Continue) -> Statement:
        if not self.loops:
            raise ConvcError("'continue' outside a loop", self.keyword_span(node, "continue"))
        return Continue(self.span(node))

    def assert_(self, node: ast.Assert) -> Statement:
        message = None if node.msg is None else self.expr(node.msg)
        return Assert(self.expr(node.test), message, self.span(node))

    def import_(self, node: ast.Import) -> Statement:
        names = []
        for alias in node.names:
            # ``import keras.layers`` binds ``keras``; ``import keras.layers as L`` binds ``L``
            bound = alias.asname or alias.name.split(".")[0]
            names.append((bound, alias.name if alias.asname else bound))
            self.bind(bound, node.lineno)
        return Import(tuple(names), self.span(node))

    def import_from(self, node: ast.ImportFrom) -> Statement:
        if node.level:
            raise ConvcError(
                "a relative import names another file; convc reads nothing beyond this one",
                self.span(node),
            )
        module = node.module or ""
        names = []
        for alias in node.names:
            if alias.name == "*" or module == "__future__":
                continue
            bound = alias.asname or alias.name
            names.append((bound, f"{module}.{alias.name}"))
            self.bind(bound, node.lineno)
        return Import(tuple(names), self.span(node))

    # -- expressions ------------------------------------------------------------------------

    def expr(self, node: ast.expr) -> Expr:
        self.depth += 1
        try:
            if self.depth > MAX_EXPRESSION_DEPTH:
                raise ConvcError(
                    f"the expression nests more than {MAX_EXPRESSION_DEPTH} levels deep",
                    self.span(node),
                    help="split it into several statements",
                )
            method = self.expressions.get(type(node))
            if method is None:
                message, help = _REFUSED_EXPRESSIONS.get(
                    type(node), ("this expression" + _NOT_IN_THE_LANGUAGE, None)
                )
                raise ConvcError(message, self.span(node), help=help)
            return method(self, node)
        finally:
            self.depth -= 1

    def constant(self, node: ast.Constant) -> Expr:
        value = node.value
        span = self.span(node)
        if isinstance(value, bool | float) or value is None:
            return Literal(value, span)
        if isinstance(value, int):
            if span.end_line == span.line and span.end - span.start > MAX_INT_DIGITS:
                raise ConvcError(
                    f"an integer of {span.end - span.start:,} digits; convc reads at most "
                    f"{MAX_INT_DIGITS}",
                    span,
                )
            return Literal(value, span)
        if isinstance(value, str):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                raise ConvcError(_SURROGATE, span) from None
            return Literal(value, span)
        kind = (
            "a bytes literal"
            if isinstance(value, bytes)
            else "a complex number"
            if isinstance(value, complex)
            else "'...' (Ellipsis)"
        )
        raise ConvcError(kind + _NOT_IN_THE_LANGUAGE, span)

    def name(self, node: ast.Name) -> Expr:
        return Reference(node.id, self.span(node))

    def attribute(self, node: ast.Attribute) -> Expr:
        value = self.expr(node.value)
        span = self.span(node)
        if isinstance(value, Reference):
            return Reference(f"{value.name}.{node.attr}", span)
        return Attribute(value, node.attr, span)

    def call(self, node: ast.Call) -> Expr:
        function = self.expr(node.func)
        args = tuple(self.expr(a) for a in node.args)
        keywords = []
        for keyword in node.keywords:
            value = self.expr(keyword.value)
            if keyword.arg is None:
                keywords.append(KeywordArgument(None, value, self.span(keyword)))
                continue
            start = self.span(keyword)
            name_span = Span(start.line, start.column, start.line, start.column + len(keyword.arg),
                             start.start, start.start + len(keyword.arg))  # fmt: skip
            if any(k.name == keyword.arg for k in keywords):
                raise ConvcError(f"keyword argument '{keyword.arg}' is given twice", name_span)
            keywords.append(KeywordArgument(keyword.arg, value, name_span))
        span = self.span(node)
        values = all(isinstance(a, _VALUES) for a in args) and all(
            k.name is not None and isinstance(k.value, _VALUES) for k in keywords
        )
        if values and isinstance(function, Reference | Call | Apply):
            kwargs = tuple(Keyword(k.name, k.value, k.span) for k in keywords)  # type: ignore[arg-type]
            if isinstance(function, Reference):
                return Call(function.name, args, kwargs, span, function.span)  # type: ignore[arg-type]
            return Apply(function, args, kwargs, span)  # type: ignore[arg-type]
        return CallExpression(function, args, tuple(keywords), span)

    def display(self, node: ast.Tuple | ast.List) -> Expr:
        kind = "tuple" if isinstance(node, ast.Tuple) else "list"
        items = tuple(self.expr(e) for e in node.elts)
        if all(isinstance(item, _VALUES) for item in items):
            return Sequence(kind, items, self.span(node))  # type: ignore[arg-type]
        return Display(kind, items, self.span(node))

    def dict(self, node: ast.Dict) -> Expr:
        keys = tuple(None if k is None else self.expr(k) for k in node.keys)
        values = tuple(self.expr(v) for v in node.values)
        span = self.span(node)
        if all(isinstance(k, _VALUES) for k in keys) and all(
            isinstance(v, _VALUES) for v in values
        ):
            return Mapping(tuple(zip(keys, values, strict=True)), span)  # type: ignore[arg-type]
        return DictDisplay(keys, values, span)

    def subscript(self, node: ast.Subscript) -> Expr:
        return Subscript(self.expr(node.value), self.expr(node.slice), self.span(node))

    def slice(self, node: ast.Slice) -> Expr:
        parts = [None if p is None else self.expr(p) for p in (node.lower, node.upper, node.step)]
        return Slice(parts[0], parts[1], parts[2], self.span(node))

    def starred(self, node: ast.Starred) -> Expr:
        return Starred(self.expr(node.value), self.span(node))

    def operator(self, op: ast.operator, node: ast.AST) -> str:
        symbol = _OPERATORS.get(type(op))
        if symbol is None:
            raise ConvcError("'@' (matrix multiplication)" + _NOT_IN_THE_LANGUAGE, self.span(node))
        return symbol

    def operation(self, node: ast.BinOp) -> Expr:
        op = self.operator(node.op, node)
        return Operation(self.expr(node.left), op, self.expr(node.right), self.span(node))

    def unary(self, node: ast.UnaryOp) -> Expr:
        op = _UNARY[type(node.op)]
        operand = self.expr(node.operand)
        span = self.span(node)
        if (
            op in "-+"
            and isinstance(node.operand, ast.Constant)
            and isinstance(operand, Literal)
            and type(operand.value) in (int, float)
        ):
            return Literal(-operand.value if op == "-" else operand.value, span)
        return UnaryOperation(op, operand, span)

    def boolean(self, node: ast.BoolOp) -> Expr:
        op = "and" if isinstance(node.op, ast.And) else "or"
        return BooleanOperation(op, tuple(self.expr(v) for v in node.values), self.span(node))

    def comparison(self, node: ast.Compare) -> Expr:
        return Comparison(
            self.expr(node.left),
            tuple(_COMPARISONS[type(op)] for op in node.ops),
            tuple(self.expr(c) for c in node.comparators),
            self.span(node),
        )

    def conditional(self, node: ast.IfExp) -> Expr:
        test, body, orelse = self.expr(node.test), self.expr(node.body), self.expr(node.orelse)
        return Conditional(test, body, orelse, self.span(node))

    def comprehension(self, node: ast.ListComp | ast.GeneratorExp | ast.DictComp) -> Expr:
        # Python evaluates the first iterable in the enclosing scope, the rest in the
        # comprehension's own, where its targets live
        first = self.expr(node.generators[0].iter)
        scope: set[str] = set()
        self.scopes.append(scope)
        try:
            clauses = []
            for i, generator in enumerate(node.generators):
                if generator.is_async:
                    raise ConvcError("'async'" + _NOT_IN_THE_LANGUAGE, self.span(node))
                iterable = first if i == 0 else self.expr(generator.iter)
                target = self.target(generator.target)
                conditions = tuple(self.expr(c) for c in generator.ifs)
                clauses.append(Clause(target, iterable, conditions))
            if isinstance(node, ast.DictComp):
                kind, element, value = "dict", self.expr(node.key), self.expr(node.value)
            else:
                kind = "list" if isinstance(node, ast.ListComp) else "generator"
                element, value = self.expr(node.elt), None
        finally:
            self.scopes.pop()
        return Comprehension(
            kind, element, value, tuple(clauses), self.span(node), frozenset(scope)
        )

    def fstring(self, node: ast.JoinedStr) -> Expr:
        parts: list[str | FormattedValue] = []
        for part in node.values:
            if isinstance(part, ast.Constant):
                parts.append(str(part.value))
            else:
                assert isinstance(part, ast.FormattedValue)
                spec = None
                if part.format_spec is not None:
                    assert isinstance(part.format_spec, ast.JoinedStr)
                    converted = self.fstring(part.format_spec)
                    if isinstance(converted, Literal):
                        converted = FString((converted.value,), converted.span)
                    assert isinstance(converted, FString)
                    spec = converted
                parts.append(
                    FormattedValue(
                        self.expr(part.value), _CONVERSIONS[part.conversion], spec, self.span(part)
                    )
                )
        span = self.span(node)
        if all(isinstance(p, str) for p in parts):
            return Literal("".join(parts), span)  # type: ignore[arg-type]
        return FString(tuple(parts), span)

    def lambda_(self, node: ast.Lambda) -> Expr:
        parameters = self.parameters(node.args)
        scope = set(parameters.names())
        self.scopes.append(scope)
        try:
            body = self.expr(node.body)
        finally:
            self.scopes.pop()
        return Lambda(parameters, body, self.span(node), frozenset(scope))

    # What converts each kind of Python node: plain functions, called with the converter
    # (methods bound to it would make every converter a reference cycle, kept with the source's
    # lines until the cycle collector walks it).
    expressions: ClassVar[_Table[Expr]] = {
        ast.Constant: constant,
        ast.Name: name,
        ast.Attribute: attribute,
        ast.Call: call,
        ast.Tuple: display,
        ast.List: display,
        ast.Dict: dict,
        ast.Subscript: subscript,
        ast.Slice: slice,
        ast.Starred: starred,
        ast.BinOp: operation,
        ast.UnaryOp: unary,
        ast.BoolOp: boolean,
        ast.Compare: comparison,
        ast.IfExp: conditional,
        ast.ListComp: comprehension,
        ast.GeneratorExp: comprehension,
        ast.DictComp: comprehension,
        ast.JoinedStr: fstring,
        ast.Lambda: lambda_,
    }
    statements: ClassVar[_Table[Statement]] = {
        ast.Expr: expression_statement,
        ast.Assign: assign,
        ast.AnnAssign: annotated_assign,
        ast.AugAssign: augmented_assign,
        ast.If: if_,
        ast.For: for_,
        ast.FunctionDef: def_,
        ast.Return: return_,
        ast.Break: break_,
        ast.Continue: continue_,
        ast.Pass: lambda converter, node: Pass(converter.span(node)),
        ast.Assert: assert_,
        ast.Import: import_,
        ast.ImportFrom: import_from,
    }


# ---------------------------------------------------------------------------------------------
# Syntax errors in words


def _syntax_error(error: SyntaxError, source: str, lines: _Lines) -> ConvcError:
    message = error.msg
    line = error.lineno or 1
    line = min(line, len(lines.text))
    column = max(1, error.offset or 1)
    text = lines.text[line - 1]
    column = min(column, len(text) + 1)
    end_column = column + 1
    if error.end_lineno == line and error.end_offset and error.end_offset > column:
        end_column = error.end_offset
    offset = lines.offset(line, column)
    span = Span(line, column, line, end_column, offset, offset + end_column - column)
    token = _token_at(text, column - 1)

    if message.endswith("' was never closed"):
        opener = message[1]
        return ConvcError(
            f"'{opener}' is never closed", span, help=f"add the matching '{_OPENERS[opener]}'"
        )
    if message.startswith("closing parenthesis"):
        closer, opener = re.findall(r"'(.)'", message)[:2]
        return ConvcError(f"unmatched '{closer}'; expected '{_OPENERS[opener]}'", span)
    if message.startswith("unterminated string literal"):
        quote = text[column - 1] if column <= len(text) else '"'
        width = len(text) - column + 1
        return ConvcError(
            "unterminated string",
            Span(line, column, line, column + width, offset, offset + width),
            help=f"close it with {quote} on the same line",
        )
    if message.startswith("unterminated triple-quoted string literal"):
        return ConvcError("unterminated string", span, help="close it with the same three quotes")
    if message == "positional argument follows keyword argument":
        start = _argument_start(source, offset)
        return ConvcError(
            "a positional argument cannot follow a keyword argument",
            lines.at(start, max(1, offset - start)),
            help="write it before the keyword arguments or give it by name",
        )
    if message.startswith("invalid syntax"):
        return _invalid_syntax(message, source, lines, span, token)
    digits = re.search(r"value has (\d+) digits", message)
    if message.startswith("Exceeds the limit") and digits:  # Python's own limit, 4300 digits
        literal = re.search(rf"\d[\d_]{{{MAX_INT_DIGITS},}}", text)
        if literal is not None:
            start = lines.offset(line, literal.start() + 1)
            span = lines.at(start, literal.end() - literal.start())
        return ConvcError(
            f"an integer of {int(digits.group(1)):,} digits; convc reads at most {MAX_INT_DIGITS}",
            span,
        )
    if message == "unexpected indent":
        indent = len(text) - len(text.lstrip(" \t"))
        start = lines.offset(line, 1)
        return ConvcError(
            "unexpected indent",
            Span(line, 1, line, indent + 1, start, start + indent),
            help="a statement outside a block starts at the beginning of its line",
        )
    return ConvcError(message[:1].lower() + message[1:] if message[:2].istitle() else message, span)


def _invalid_syntax(message: str, source: str, lines: _Lines, span: Span, token: str) -> ConvcError:
    """Python's 'invalid syntax', said with what was expected where convc can tell."""
    got = f"'{token}'" if token else "the end of the line"
    if token and token[0] in "@$?!`":
        return ConvcError(f"unexpected character '{token[0]}'", span)
    opened = _open_brackets(source, lines, span.start)
    closer = _OPENERS[source[opened[-1]]] if opened else None
    before = source[: span.start].rstrip(" \t\\\n")
    previous = before[-1:] if before else ""
    if "forgot a comma" in message:
        gap = re.search(r"\S\s+(?=\S)", source[span.start : span.end])
        if gap is not None:
            start = span.start + gap.end()
            second = _token_at(source, start)
            where = lines.at(start, max(1, len(second)))
            if closer:
                return ConvcError(
                    f"expected ',' or '{closer}', got '{second}'",
                    where,
                    help="separate the values with commas",
                )
            return ConvcError(
                f"expected the end of the statement, got '{second}'",
                where,
                help="write one statement per line",
            )
    if previous and previous in "(,=[{:" and (not token or token in ",)]}"):
        return ConvcError(f"expected a value, got {got}", span)
    if token == "=" and previous not in "=<>!":
        return ConvcError("unexpected '='", span, help="a keyword argument is written name=value")
    if closer and (previous.isalnum() or previous in "_)]}'\""):
        return ConvcError(f"expected ',' or '{closer}', got {got}", span)
    if not closer and previous and (previous.isalnum() or previous in "_)]}'\""):
        return ConvcError(
            f"expected the end of the statement, got {got}",
            span,
            help="write one statement per line",
        )
    return ConvcError(f"invalid syntax at {got}", span)


def _token_at(text: str, index: int) -> str:
    match = re.compile(r"[\w.]+|'[^'\n]*'?|\"[^\"\n]*\"?|\S").match(text, index)
    return match.group() if match else ""


def _argument_start(source: str, end: int) -> int:
    """Where the argument that ends at ``end`` begins: after the comma before it at its level."""
    depth = 0
    position = end - 1
    while position > 0:
        char = source[position]
        if char in ")]}":
            depth += 1
        elif char in "([{":
            if depth == 0:
                break
            depth -= 1
        elif char == "," and depth == 0:
            break
        position -= 1
    position += 1
    while position < end and source[position] in " \t\n\\":
        position += 1
    return position

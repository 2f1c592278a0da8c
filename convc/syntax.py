"""Parse .conv text into plain, frozen syntax objects with their source spans.

The grammar is ``convc/convc.lark`` (LALR). A small post-lexer drops newlines inside brackets,
as Python does, so that a call may span lines. Lark's exceptions never leave this module: they
become ``ConvcError``s that say what was expected, in words, at the right line and column.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from lark import Lark, Token, Transformer, v_args
from lark.exceptions import UnexpectedCharacters, UnexpectedInput, UnexpectedToken, VisitError

from convc.diagnostics import ConvcError, Span
from convc.limits import MAX_INT_DIGITS, MAX_NESTING

# ---------------------------------------------------------------------------------------------
# The syntax objects


@dataclass(frozen=True)
class Literal:
    """An int, float, str, bool or None, as written."""

    value: Any
    span: Span


@dataclass(frozen=True)
class Sequence:
    """A tuple ``(a, b)`` or a list ``[a, b]``."""

    kind: str  # "tuple" or "list"
    items: tuple[Value, ...]
    span: Span


@dataclass(frozen=True)
class Mapping:
    """A dict literal ``{"class_name": "HeNormal", "config": {...}}``."""

    entries: tuple[tuple[Value, Value], ...]
    span: Span


@dataclass(frozen=True)
class Reference:
    """A bare (dotted) name used as a value, e.g. ``keras.activations.relu``."""

    name: str
    span: Span


@dataclass(frozen=True)
class Keyword:
    name: str
    value: Value
    span: Span  # of the name

    @property
    def full_span(self) -> Span:
        return self.span.to(self.value.span)


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


@dataclass(frozen=True)
class Apply:
    """A layer called on tensors: ``Conv2D(8, 3)(x)``, ``Concatenate()([a, b])``.

    (A bound layer called by name, ``conv(x)``, parses as a ``Call``; resolve tells them apart.)
    """

    callee: Call | Apply
    args: tuple[Value, ...]
    kwargs: tuple[Keyword, ...]
    span: Span

    @property
    def name_span(self) -> Span:
        return self.callee.span


@dataclass(frozen=True)
class Assign:
    """``NAME = value``: binds a tensor, a layer object or a model to a name."""

    target: str
    value: Value
    span: Span
    target_span: Span


@dataclass(frozen=True)
class Import:
    """``import keras`` or ``from keras import layers as L``: builds nothing, but names modules.

    ``names`` pairs each bound name with the dotted path it stands for."""

    names: tuple[tuple[str, str], ...]
    span: Span


@dataclass(frozen=True)
class Directive:
    """A file-level setting: ``model tiny`` or ``data_format channels_first``."""

    name: str
    value: str
    span: Span
    name_span: Span
    value_span: Span


Value = Literal | Sequence | Mapping | Reference | Call | Apply
Statement = Directive | Call | Apply | Assign | Import


@dataclass(frozen=True)
class Program:
    statements: tuple[Statement, ...]


def to_python(value: Value) -> Any:
    """The plain Python value of a literal tree; a call or bare name inside is an error."""
    if isinstance(value, Literal):
        return value.value
    if isinstance(value, Sequence):
        items = [to_python(item) for item in value.items]
        return tuple(items) if value.kind == "tuple" else items
    if isinstance(value, Mapping):
        return {_hashable(to_python(k), k): to_python(v) for k, v in value.entries}
    what = "a call" if isinstance(value, Call | Apply) else f"the name '{value.name}'"
    raise ConvcError(f"expected a literal value here, got {what}", value.span)


def _hashable(key: Any, node: Value) -> Any:
    try:
        hash(key)
    except TypeError:
        raise ConvcError("a dict key must be a string, number or tuple", node.span) from None
    return key


# ---------------------------------------------------------------------------------------------
# Parsing


def parse(source: str) -> Program:
    """Parse a whole .conv text; raise ``ConvcError`` on the first syntax error."""
    if not source.endswith("\n"):
        source += "\n"
    parser, postlexer = _parser()
    try:
        tree = parser.parse(source)
        return _ToSyntax().transform(tree)
    except UnexpectedInput as error:
        raise _syntax_error(error, source, postlexer) from None
    except VisitError as error:
        if isinstance(error.orig_exc, ConvcError):
            raise error.orig_exc from None
        raise


@cache
def _parser() -> tuple[Lark, _BracketPostLexer]:
    postlexer = _BracketPostLexer()
    grammar = resources.files("convc").joinpath("convc.lark").read_text()
    parser = Lark(
        grammar,
        parser="lalr",
        lexer="contextual",
        propagate_positions=True,
        maybe_placeholders=True,
        postlex=postlexer,
        cache=True,
    )
    return parser, postlexer


_OPENERS = {"LPAR": "RPAR", "LSQB": "RSQB", "LBRACE": "RBRACE"}
_CLOSERS = {v: k for k, v in _OPENERS.items()}


class _BracketPostLexer:
    """Drops newlines inside brackets and remembers which brackets are open."""

    always_accept = ("_NL",)

    def __init__(self) -> None:
        self.open: list[Token] = []

    def process(self, stream):
        self.open = []
        for token in stream:
            if token.type in _OPENERS:
                self.open.append(token)
                if len(self.open) > MAX_NESTING:
                    raise ConvcError(
                        f"brackets nest more than {MAX_NESTING} levels deep",
                        _token_span(token),
                        help="Keras arguments need at most three levels, as in ((1, 2), (3, 4))",
                    )
            elif (
                token.type in _CLOSERS and self.open and self.open[-1].type == _CLOSERS[token.type]
            ):
                self.open.pop()
            elif token.type == "_NL" and self.open:
                continue
            yield token


def _token_span(token: Token) -> Span:
    # lark types a Token's position Optional (a Token made by hand has none); the lexer's
    # tokens, and those it borrows positions for, always have their start
    assert token.line is not None and token.column is not None
    end_line = token.end_line if token.end_line is not None else token.line
    end_column = token.end_column if token.end_column is not None else token.column + len(token)
    start = token.start_pos or 0
    end = token.end_pos if token.end_pos is not None else start + len(token)
    return Span(token.line, token.column, end_line, end_column, start, end)


def _meta_span(meta) -> Span:
    return Span(
        meta.line, meta.column, meta.end_line, meta.end_column, meta.start_pos, meta.end_pos
    )


@v_args(meta=True)
class _ToSyntax(Transformer):
    def start(self, meta, children):
        return Program(tuple(c for c in children if c is not None))

    def directive(self, meta, children):
        name, value = children
        text = _string_value(value) if value.type == "STRING" else str(value)
        return Directive(str(name), text, _meta_span(meta), _token_span(name), _token_span(value))

    def call(self, meta, children):
        dotted, *arguments = children
        name, name_span = dotted
        args, kwargs = _split_arguments(arguments)
        return Call(name, args, kwargs, _meta_span(meta), name_span)

    def apply(self, meta, children):
        callee, *arguments = children
        args, kwargs = _split_arguments(arguments)
        return Apply(callee, args, kwargs, _meta_span(meta))

    def assign(self, meta, children):
        target, value = children
        return Assign(str(target), value, _meta_span(meta), _token_span(target))

    def import_modules(self, meta, children):
        names = []
        for (path, _), alias in zip(children[::2], children[1::2], strict=True):
            # ``import keras.layers`` binds ``keras``; ``import keras.layers as L`` binds ``L``
            bound = str(alias) if alias is not None else path.split(".")[0]
            names.append((bound, path if alias is not None else bound))
        return Import(tuple(names), _meta_span(meta))

    def import_from(self, meta, children):
        module = children[0][0] if children and isinstance(children[0], tuple) else ""
        rest = children[1:] if module else children
        names = [
            (str(alias if alias is not None else name), f"{module}.{name}" if module else str(name))
            for name, alias in zip(rest[::2], rest[1::2], strict=True)
        ]
        return Import(tuple(names), _meta_span(meta))

    def keyword(self, meta, children):
        name, value = children
        return Keyword(str(name), value, _token_span(name))

    def dotted(self, meta, children):
        return ".".join(str(c) for c in children), _meta_span(meta)

    def reference(self, meta, children):
        ((name, span),) = children
        constants = {"True": True, "False": False, "None": None}
        if name in constants:
            return Literal(constants[name], span)
        return Reference(name, span)

    def tuple(self, meta, children):
        return Sequence("tuple", tuple(c for c in children if c is not None), _meta_span(meta))

    def list(self, meta, children):
        return Sequence("list", tuple(c for c in children if c is not None), _meta_span(meta))

    def dict(self, meta, children):
        items = [c for c in children if c is not None]
        return Mapping(tuple(zip(items[::2], items[1::2], strict=True)), _meta_span(meta))

    def int(self, meta, children):
        (token,) = children
        if len(token) > MAX_INT_DIGITS:
            raise ConvcError(
                f"an integer of {len(token):,} digits; convc reads at most {MAX_INT_DIGITS}",
                _token_span(token),
            )
        return Literal(
            int(token, 0) if token[:2].lower() in {"0x", "0o", "0b"} else int(token),
            _token_span(token),
        )

    def negative_int(self, meta, children):
        return Literal(-self.int(meta, children).value, _meta_span(meta))

    def float(self, meta, children):
        (token,) = children
        return Literal(float(token), _token_span(token))

    def negative_float(self, meta, children):
        return Literal(-self.float(meta, children).value, _meta_span(meta))

    def string(self, meta, children):
        (token,) = children
        return Literal(_string_value(token), _token_span(token))


def _split_arguments(arguments: list) -> tuple[tuple[Value, ...], tuple[Keyword, ...]]:
    """A call's positional and keyword arguments, with Python's complaints about their order."""
    args: list[Value] = []
    kwargs: list[Keyword] = []
    for argument in arguments:
        if argument is None:
            continue
        if isinstance(argument, Keyword):
            if any(k.name == argument.name for k in kwargs):
                raise ConvcError(
                    f"keyword argument '{argument.name}' is given twice", argument.span
                )
            kwargs.append(argument)
        elif kwargs:
            raise ConvcError(
                "a positional argument cannot follow a keyword argument",
                argument.span,
                help=f"write it before '{kwargs[0].name}=' or give it by name",
            )
        else:
            args.append(argument)
    return tuple(args), tuple(kwargs)


def _string_value(token: Token) -> str:
    try:
        value = ast.literal_eval(str(token))
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ConvcError(
            "the string holds an unpaired surrogate (\\ud800-\\udfff), which is not text",
            _token_span(token),
        ) from None
    except (ValueError, SyntaxError) as error:
        raise ConvcError(f"invalid string literal: {error}", _token_span(token)) from None
    return value


# ---------------------------------------------------------------------------------------------
# Syntax errors in words

_TOKEN_WORDS = {
    "LPAR": "'('",
    "RPAR": "')'",
    "LSQB": "'['",
    "RSQB": "']'",
    "LBRACE": "'{'",
    "RBRACE": "'}'",
    "COMMA": "','",
    "EQUAL": "'='",
    "COLON": "':'",
    "DOT": "'.'",
    "MINUS": "'-'",
    "PLUS": "'+'",
    "_NL": "the end of the line",
    "$END": "the end of the file",
    "NAME": "a name",
    "INT": "a number",
    "FLOAT": "a number",
    "STRING": "a string",
}


def _describe(token: Token) -> str:
    if token.type == "$END":
        return "the end of the file"
    if token.type == "_NL":
        return "the end of the line"
    return f"'{token}'"


_VALUE_STARTS = {"INT", "FLOAT", "STRING", "NAME", "LPAR", "LSQB", "LBRACE", "MINUS", "PLUS"}


def _syntax_error(error: UnexpectedInput, source: str, postlexer: _BracketPostLexer) -> ConvcError:
    if isinstance(error, UnexpectedCharacters):
        return _bad_character(error, source)
    assert isinstance(error, UnexpectedToken)
    token = error.token
    expected = set(error.expected) | set(getattr(error, "accepts", None) or ())
    span = _token_span(token) if token.type != "$END" else _end_span(source)
    got = _describe(token)
    open_brackets = [t for t in postlexer.open if t is not token]
    opened = open_brackets[-1] if open_brackets else None

    if str(token) == "*" and token.type != "STRING":
        return ConvcError(
            "unexpected '*': arguments are literal values, not expressions",
            span,
            help="write the number itself, e.g. 1024 rather than 2**10",
        )
    if token.type == "$END" and opened is not None:
        return ConvcError(
            f"'{opened}' is never closed",
            _token_span(opened),
            help=f"add the matching '{_closing(opened)}'",
        )
    if token.type in _CLOSERS and (opened is None or _OPENERS[opened.type] != token.type):
        expected_closer = f"; expected '{_closing(opened)}'" if opened is not None else ""
        return ConvcError(f"unmatched '{token}'{expected_closer}", span)
    if "LPAR" in expected and "DOT" in expected:  # just after a name
        where = "the layer name" if opened is None else "a name"
        wanted = "'('" if opened is None else "'(', '=', ',' or '" + _closing(opened) + "'"
        return ConvcError(
            f"expected {wanted} after {where}, got {got}",
            span,
            help="a statement is a layer call such as Conv2D(8, 3) or a directive such as "
            "'model NAME'"
            if opened is None
            else None,
        )
    if opened is None:
        if "_NL" in expected and "NAME" in expected:
            return ConvcError(
                f"expected a layer call such as Conv2D(8, 3) or a directive, got {got}", span
            )
        return ConvcError(
            f"expected the end of the statement, got {got}",
            span,
            help="write one layer per line; a call may span lines only inside its brackets",
        )
    if "COMMA" in expected or "COLON" in expected:
        separator = "':'" if opened.type == "LBRACE" and "COLON" in expected else "','"
        help = None
        if token.line > opened.line:
            help = (
                f"the '{opened}' at line {opened.line}, column {opened.column} is not closed"
                " before this line"
            )
        elif token.type in _VALUE_STARTS:
            help = "separate arguments with commas"
        return ConvcError(
            f"expected {separator} or '{_closing(opened)}', got {got}", span, help=help
        )
    if expected & _VALUE_STARTS:
        return ConvcError(f"expected a value, got {got}", span)
    words = sorted({_TOKEN_WORDS.get(t, t) for t in expected})
    return ConvcError(f"unexpected {got}; expected {', '.join(words)}", span)


def _closing(token: Token) -> str:
    return {"(": ")", "[": "]", "{": "}"}[str(token)]


def _end_span(source: str) -> Span:
    stripped = source.rstrip("\n")
    line = stripped.count("\n") + 1
    column = len(stripped) - (stripped.rfind("\n") + 1) + 1
    return Span(line, column, line, column + 1, len(stripped), len(stripped))


def _bad_character(error: UnexpectedCharacters, source: str) -> ConvcError:
    # lark's stub is wrong here: UnexpectedInput declares ``pos_in_stream = None`` at class
    # level, so mypy types it None, but UnexpectedCharacters.__init__ always sets it to the
    # lexer's int position.
    pos: int = error.pos_in_stream  # type: ignore[assignment]
    char = source[pos] if pos < len(source) else ""
    span = Span(error.line, error.column, error.line, error.column + 1, pos, pos + 1)
    if char in "\"'":
        line_end = source.find("\n", pos)
        line_end = len(source) if line_end < 0 else line_end
        width = line_end - pos
        return ConvcError(
            "unterminated string",
            Span(error.line, error.column, error.line, error.column + width, pos, line_end),
            help=f"close it with {char} on the same line",
        )
    if char == "=":
        return ConvcError("unexpected '='", span, help="a keyword argument is written name=value")
    if char in "/%":
        return ConvcError(
            f"unexpected '{char}': arguments are literal values, not expressions",
            span,
            help="write the number itself, e.g. 1024 rather than 2**10",
        )
    shown = repr(char) if char.isprintable() and char != " " else f"U+{ord(char):04X}"
    return ConvcError(f"unexpected character {shown}", span)

"""Source locations and user-facing errors.

Every mistake a user can make ends as a ``ConvcError``: a message, the span of source text it is
about, and optionally a ``help`` line. ``render`` turns one into the familiar compiler format::

    net.conv:3:18: error: strides=(2, 2) cannot be combined with dilation_rate=(2, 2)
        3 | Conv2D(8, 3, strides=2, dilation_rate=2)
          |              ^^^^^^^^^
      help: Keras allows strides > 1 or dilation_rate > 1, not both

An error raised inside a function of the program carries the chain of calls that reached it,
innermost first, rendered after the carets: ``in conv_block(), called at line 31, in stack(),
called at line 40``.
"""

from __future__ import annotations

import unicodedata
from typing import NamedTuple


class Span(NamedTuple):
    """A range of source text: 1-based lines and columns, end exclusive; offsets into the text.

    A named tuple rather than a frozen dataclass: a span is made for every call, name and literal
    (four a layer of an imported model), and a tuple is made in two thirds of the time and held
    in half the memory (no instance dict)."""

    line: int
    column: int
    end_line: int
    end_column: int
    start: int = 0
    end: int = 0

    def to(self, other: Span) -> Span:
        """The span from the start of this one to the end of ``other``."""
        return Span(self.line, self.column, other.end_line, other.end_column, self.start, other.end)


class ConvcError(Exception):
    """A user error: a precise message, where it is, and how to fix it when we can say."""

    def __init__(
        self,
        message: str,
        span: Span | None = None,
        help: str | None = None,
        *,
        path: str | None = None,
        origin: tuple[str, str] | None = None,
    ):
        super().__init__(message)
        self.message = message
        self.span = span
        self.help = help
        self.path = path  # the file it is about, when that is not the .conv source
        # (name, text) of the text the span points into, when that is neither the .conv source
        # nor a file: a command-line option's value (--replace NAME=CALL)
        self.origin = origin
        self.trace: tuple[
            tuple[str, Span], ...
        ] = ()  # (function, where it was called), innermost first

    def called_from(self, function: str, span: Span) -> None:
        """Record that the error happened in a call of ``function`` made at ``span``."""
        for error in errors_of(self):
            error.trace = (*error.trace, (function, span))


class ConvcErrors(ConvcError):
    """Several independent errors found in one pass, reported together."""

    def __init__(self, errors: list[ConvcError]):
        super().__init__(errors[0].message, errors[0].span, errors[0].help)
        self.errors = errors


def errors_of(error: ConvcError) -> list[ConvcError]:
    return error.errors if isinstance(error, ConvcErrors) else [error]


def printable(text: str) -> str:
    """``text`` safe for a terminal: control and format characters (an ESC sequence, a
    right-to-left override) written as escapes; line breaks kept. Names from a model file reach
    convc's output through this."""
    if is_printable(text):  # the common case, at C speed
        return text
    return "".join(
        char if char == "\n" or not unicodedata.category(char).startswith("C") else _escape(char)
        for char in text
    )


def is_printable(text: str) -> bool:
    """Whether ``printable(text)`` is ``text``: nothing in it to escape."""
    return text.replace("\n", "").isprintable()


def abbreviated(text: str, width: int = 120) -> str:
    """``text`` cut to about ``width`` characters for a message, saying how long it was."""
    if len(text) <= width:
        return text
    return f"{text[: width - 40]}... ({len(text):,} characters)"


def _escape(char: str) -> str:
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def render(error: ConvcError, source: str | None, filename: str = "<input>") -> str:
    """Format one error (or each of a ``ConvcErrors``) as ``FILE:LINE:COL: error: ...`` blocks."""
    return printable("\n".join(_render_one(e, source, filename) for e in errors_of(error)))


def _render_one(error: ConvcError, source: str | None, filename: str) -> str:
    span = error.span
    if error.origin is not None:
        filename, source = error.origin
    elif error.path is not None:
        filename, span = error.path, None
    if span is None:
        head = f"{filename}: error: {error.message}"
        return head + (f"\n  help: {error.help}" if error.help else "")
    lines = [f"{filename}:{span.line}:{span.column}: error: {error.message}"]
    # lines as spans count them: a line ends at \n only (splitlines would also break at \f,
    # \x1c, U+2028 ..., which Python's parser reads as characters of the line)
    source_lines = [line.removesuffix("\r") for line in source.split("\n")] if source else []
    if 0 < span.line <= len(source_lines):
        # one character for one, so that the carets stay under the columns they mark
        text = "".join(
            "\ufffd" if unicodedata.category(c).startswith("C") else c
            for c in source_lines[span.line - 1].expandtabs(1)
        )
        number = str(span.line)
        gutter = " " * len(number)
        if span.end_line == span.line:
            width = max(1, span.end_column - span.column)
        else:
            width = max(1, len(text) - span.column + 1)
        lines.append(f"  {number} | {text}")
        lines.append(f"  {gutter} | {' ' * (span.column - 1)}{'^' * width}")
    if error.trace:
        lines.append(
            "  "
            + ", ".join(f"in {name}(), called at line {where.line}" for name, where in error.trace)
        )
    if error.help:
        lines.append(f"  help: {error.help}")
    return "\n".join(lines)

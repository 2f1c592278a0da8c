"""Keras argument rules: binding a call to a signature, and normalizing each argument.

``bind`` does what Python does when it calls a constructor: positional arguments in order, then
keywords, with the same complaints (too many, unknown, given twice), each at the exact span and
with a "did you mean" when a keyword is misspelt. The ``*_arg`` helpers then normalize one bound
value as Keras's constructors do (``standardize_tuple``, ``standardize_padding`` ...), and raise a
located error that repeats the value received.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from convc.diagnostics import ConvcError, Span, abbreviated
from convc.limits import MAX_INT
from convc.records import fast_init
from convc.syntax import Call, Value, to_python

REQUIRED = object()
"""Default of a parameter that has none."""


@fast_init
@dataclass(frozen=True)
class Param:
    name: str
    default: Any = REQUIRED
    keyword_only: bool = False


def params(*names: str | tuple[str, Any], keyword_only: bool = False) -> tuple[Param, ...]:
    """A signature written compactly: ``params("filters", ("strides", 1))``."""
    out = []
    for item in names:
        name, default = (item, REQUIRED) if isinstance(item, str) else item
        out.append(Param(name, default, keyword_only))
    return tuple(out)


@fast_init
@dataclass(frozen=True)
class Bound:
    """The arguments of one call, bound to parameter names; unbound ones take their defaults."""

    call: Call
    values: dict[str, Value]
    defaults: Mapping[str, Any]  # every parameter's default (read only where not given)

    def given(self, name: str) -> bool:
        return name in self.values

    def value(self, name: str) -> Value | None:
        return self.values.get(name)

    def python(self, name: str) -> Any:
        """The plain Python value of an argument (or its default)."""
        if name in self.values:
            return to_python(self.values[name])
        return self.defaults[name]

    def span(self, name: str) -> Span:
        """Where an argument was written; the call's name when it was not written."""
        value = self.values.get(name)
        return value.span if value is not None else self.call.name_span


@fast_init
@dataclass(frozen=True)
class _Shape:
    """What binding reads of a signature, worked out once per signature (a model binds the
    same few signatures once a layer)."""

    signature: tuple[Param, ...]  # held, so that its id is not reused while it is a key
    positional: tuple[Param, ...]
    names: frozenset[str]
    required: tuple[str, ...]
    defaults: Mapping[str, Any]


_SHAPES: dict[int, _Shape] = {}


def _shape(signature: tuple[Param, ...]) -> _Shape:
    shape = _SHAPES.get(id(signature))
    if shape is None or shape.signature is not signature:
        shape = _Shape(
            signature,
            tuple(p for p in signature if not p.keyword_only),
            frozenset(p.name for p in signature),
            tuple(p.name for p in signature if p.default is REQUIRED),
            MappingProxyType({p.name: p.default for p in signature}),
        )
        if len(_SHAPES) >= 1024:  # signatures made on the fly (params(...) in a call) pass
            _SHAPES.clear()
        _SHAPES[id(signature)] = shape
    return shape


def bind(call: Call, signature: tuple[Param, ...], what: str) -> Bound:
    """Bind ``call``'s arguments to ``signature`` as Python would; ``what`` names the callee."""
    shape = _shape(signature)
    positional = shape.positional
    values: dict[str, Value] = {}
    if len(call.args) > len(positional):
        extra = call.args[len(positional)]
        raise ConvcError(
            f"{what} takes at most {len(positional)} positional argument"
            f"{'' if len(positional) == 1 else 's'}, got {len(call.args)}",
            extra.span,
            help="positional order: " + ", ".join(p.name for p in positional),
        )
    for param, value in zip(positional, call.args, strict=False):
        values[param.name] = value
    names = shape.names
    for keyword in call.kwargs:
        if keyword.name not in names:
            close = difflib.get_close_matches(keyword.name, sorted(names), n=1, cutoff=0.6)
            raise ConvcError(
                f"{what} has no argument '{keyword.name}'",
                keyword.span,
                help=f"did you mean '{close[0]}'?" if close else None,
            )
        if keyword.name in values:
            raise ConvcError(
                f"{what} got '{keyword.name}' both by position and by name", keyword.span
            )
        values[keyword.name] = keyword.value
    missing = [name for name in shape.required if name not in values]
    if missing:
        raise ConvcError(
            f"{what} is missing its required argument '{missing[0]}'",
            call.span,
            help="required: " + ", ".join(p.name for p in signature if p.default is REQUIRED),
        )
    return Bound(call, values, shape.defaults)


# ---------------------------------------------------------------------------------------------
# Normalizers. Each takes the bound arguments and a parameter name and returns plain Python.


def shown(value: Any) -> str:
    """An argument's value as a message shows it: a string quoted, a long value cut short (a
    file's argument may hold a list of a million numbers)."""
    return abbreviated(repr(value) if isinstance(value, str) else str(value))


def is_int(value: Any) -> bool:
    """Keras's ints: Python ints and bools (bool is an int subclass, and Keras accepts it)."""
    return isinstance(value, int)


def int_arg(args: Bound, name: str, *, minimum: int | None = None) -> int:
    value = args.python(name)
    if not is_int(value):
        raise ConvcError(f"'{name}' must be an integer, got {name}={shown(value)}", args.span(name))
    value = int(value)
    check_magnitude(value, name, args.span(name))
    if minimum is not None and value < minimum:
        bound = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        raise ConvcError(f"'{name}' must be {bound}, got {name}={value}", args.span(name))
    return value


def optional_int_arg(args: Bound, name: str, *, minimum: int | None = None) -> int | None:
    return None if args.python(name) is None else int_arg(args, name, minimum=minimum)


def int_tuple_arg(args: Bound, name: str, n: int, *, minimum: int = 1) -> tuple[int, ...]:
    """An int repeated ``n`` times, or a tuple/list of exactly ``n`` ints (Keras's
    ``standardize_tuple``)."""
    value = args.python(name)
    span = args.span(name)
    shape = "an integer" if n == 1 else f"an integer or a tuple of {n} integers"
    if is_int(value):
        items = (int(value),) * n
    elif isinstance(value, tuple | list):
        if len(value) != n or not all(is_int(v) for v in value):
            raise ConvcError(f"'{name}' must be {shape}, got {name}={shown(value)}", span)
        items = tuple(int(v) for v in value)
    else:
        raise ConvcError(f"'{name}' must be {shape}, got {name}={shown(value)}", span)
    for v in items:
        check_magnitude(v, name, span)
    if any(v < minimum for v in items):
        need = "> 0" if minimum == 1 else f">= {minimum}"
        raise ConvcError(f"every entry of '{name}' must be {need}, got {name}={shown(value)}", span)
    return items


def check_magnitude(value: int, what: str, span: Span | None) -> None:
    """Integers beyond 32 bits are refused: no layer or runtime can use them."""
    if abs(value) > MAX_INT:
        raise ConvcError(f"'{what}' is too large: {value} (the limit is {MAX_INT:,})", span)


def choice_arg(args: Bound, name: str, choices: tuple[str, ...], *, lower: bool = True) -> str:
    value = args.python(name)
    span = args.span(name)
    accepted = ", ".join(repr(c) for c in choices)
    if not isinstance(value, str):
        raise ConvcError(f"'{name}' must be one of {accepted}, got {name}={shown(value)}", span)
    normalized = value.lower() if lower else value
    if normalized not in choices:
        close = difflib.get_close_matches(normalized, choices, n=1, cutoff=0.6)
        raise ConvcError(
            f"'{name}' must be one of {accepted}, got {name}={shown(value)}",
            span,
            help=f"did you mean {close[0]!r}?" if close else None,
        )
    return normalized


def bool_arg(args: Bound, name: str) -> bool:
    value = args.python(name)
    if not isinstance(value, bool):
        raise ConvcError(
            f"'{name}' must be True or False, got {name}={shown(value)}", args.span(name)
        )
    return value


def string_arg(args: Bound, name: str) -> str | None:
    value = args.python(name)
    if value is not None and not isinstance(value, str):
        raise ConvcError(f"'{name}' must be a string, got {name}={shown(value)}", args.span(name))
    return value


def lora_alpha_arg(args: Bound, rank: int | None, kernel_constraint: object) -> float | None:
    """A LoRA layer's ``lora_alpha`` (checked: a finite number or None), and Keras's refusal of
    ``lora_rank`` with a ``kernel_constraint``; Conv and Dense take both."""
    alpha = args.python("lora_alpha")
    if alpha is not None and (
        isinstance(alpha, bool) or not isinstance(alpha, int | float) or not math.isfinite(alpha)
    ):
        raise ConvcError(
            f"'lora_alpha' must be a finite number, got lora_alpha={alpha!r}",
            args.span("lora_alpha"),
        )
    if rank and kernel_constraint is not None:
        raise ConvcError(
            "lora_rank cannot be combined with kernel_constraint (Keras refuses it)",
            args.span("lora_rank"),
        )
    return alpha

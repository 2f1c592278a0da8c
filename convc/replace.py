"""Replacing a layer of a model by a `.conv` layer call: ``--replace NAME=CALL``.

A model file may hold layers whose computation is Python code (``Lambda``, a custom class, a
tf.keras operation) that convc never decodes, unmarshals or runs. The user says what such a
layer computes as a `.conv` layer call, ``--replace lambda_1="Rescaling(0.00392156862745098,
offset=-0.5)"``, and convc writes that call where the layer was, under the layer's name, and
resolves the text as it resolves any `.conv` file. The call is parsed by convc's own parser
(so it takes exactly what the language takes) and every error about it points into the option's
text (``ConvcError.origin``), wherever the resolver found it.

This module holds what does not depend on where the layer comes from: parsing the option and the
call, writing the call in place of a layer (``render``), mapping errors back to the option
(``Placement``), the placeholder that ``convc import`` writes for a layer nobody has replaced
yet (``placeholder_errors`` refuses it, located), replacing layers of `.conv` text
(``replace_in_text``), and where a replaced layer's weights come from (``source_weights``).
The model-file side (recorded shapes, placeholders in the written text) is in
``convc.importer``.
"""

from __future__ import annotations

import difflib
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from shlex import quote
from typing import Any

import numpy as np

from convc.diagnostics import ConvcError, ConvcErrors, Span, errors_of
from convc.layers.refused import REFUSED
from convc.syntax import Apply, Assign, Call, Keyword, Literal, Program, parse
from convc.syntax import Sequence as SequenceNode

PLACEHOLDER = "REPLACE"
"""The callee of a placeholder line: ``REPLACE("Lambda", name="lambda_1")``. No Keras layer has
this name, so a placeholder can never build."""

EXAMPLE_CALL = "Rescaling(0.00392156862745098, offset=-0.5)"
"""The example shown in refusals: ``x / 255 - 0.5``, the input normalization that most Lambda
layers in published models compute (written with the literal that the language takes today)."""

_NOT_LAYERS = ("Input", "InputLayer", "Model", "Functional", "Sequential")


@dataclass(frozen=True)
class Replacement:
    """One ``--replace NAME=CALL``: the layer's name, the call's text and its syntax."""

    name: str
    text: str
    label: str
    """How messages name the option: ``--replace lambda_1`` or ``replace['lambda_1']``."""
    call: Call

    @property
    def origin(self) -> tuple[str, str]:
        return (self.label, self.text)

    def error(self, message: str, span: Span | None = None, help: str | None = None):
        return ConvcError(message, span or self.call.span, help, origin=self.origin)


def parse_option(spec: str) -> tuple[str, str]:
    """``NAME=CALL`` as the command line gives it: the name is what precedes the first ``=``."""
    name, equals, call = spec.partition("=")
    if not equals or not name.strip() or not call.strip():
        raise ConvcError(
            f"--replace {spec!r}: expected NAME=CALL",
            help="e.g. --replace 'lambda_1=" + EXAMPLE_CALL + "'",
        )
    return name.strip(), call


def replacements(
    given: Mapping[str, str] | Sequence[Replacement] | None, *, option: bool = False
) -> tuple[Replacement, ...]:
    """``given`` (``{"NAME": "CALL"}``, or replacements already parsed) parsed and checked;
    ``option`` names them as the command line's ``--replace`` in messages."""
    if not given:
        return ()
    if not isinstance(given, Mapping):
        return tuple(given)
    parsed = []
    for name, text in given.items():
        if not isinstance(name, str) or not isinstance(text, str):
            raise TypeError("replace maps layer names to .conv layer calls, both str")
        label = f"--replace {name}" if option else f"replace[{name!r}]"
        parsed.append(Replacement(name, text, label, _parse_call(name, text, label)))
    return tuple(parsed)


def from_options(specs: Iterable[str] | None) -> tuple[Replacement, ...]:
    """The command line's ``--replace NAME=CALL`` options, each name once."""
    given: dict[str, str] = {}
    for spec in specs or ():
        name, call = parse_option(spec)
        if name in given:
            raise ConvcError(f"--replace {name} is given twice")
        given[name] = call
    return replacements(given, option=True)


def _parse_call(name: str, text: str, label: str) -> Call:
    origin = (label, text)
    try:
        program = parse(text)
    except ConvcErrors as several:
        for error in several.errors:
            error.origin = origin
        raise
    except ConvcError as error:
        error.origin = origin
        raise
    statements = program.statements
    whole = Span(1, 1, 1, max(2, len(text.split("\n")[0]) + 1), 0, len(text))
    if len(statements) != 1:
        raise ConvcError(
            "expected one layer call" + (", got nothing" if not statements else ""),
            statements[1].span if len(statements) > 1 else whole,
            help="e.g. " + EXAMPLE_CALL,
            origin=origin,
        )
    (call,) = statements
    if isinstance(call, Apply):
        raise ConvcError(
            "expected a layer call, not a layer applied to tensors",
            call.span,
            help=f"give the layer alone, {_source(text, call.callee)}: convc applies it to the "
            "replaced layer's inputs",
            origin=origin,
        )
    if not isinstance(call, Call):
        raise ConvcError("expected a layer call, e.g. " + EXAMPLE_CALL, call.span, origin=origin)
    if call.short_name in _NOT_LAYERS or call.short_name == PLACEHOLDER:
        raise ConvcError(f"{call.short_name}(...) is not a layer", call.name_span, origin=origin)
    for keyword in call.kwargs:
        if keyword.name != "name":
            continue
        value = keyword.value
        if not isinstance(value, Literal) or value.value != name:
            raise ConvcError(
                f"the replacement keeps the layer's name {name!r}",
                keyword.full_span,
                help="leave name= out",
                origin=origin,
            )
    return call


def _source(text: str, node: Any) -> str:
    return text[node.span.start : node.span.end]


# --- writing a replacement where the layer was --------------------------------------------------


@dataclass(frozen=True)
class Rendered:
    """A replacement's call as written: ``text``, in which the option's characters
    ``source[0]:source[1]`` appear unchanged from offset ``at``."""

    text: str
    at: int
    source: tuple[int, int]


def render(replacement: Replacement, prefix: str = "") -> Rendered:
    """The call with the layer's name added (``Rescaling(0.5, name="lambda_1")``); ``prefix``
    (``layers.``) goes before a bare layer name."""
    call, text = replacement.call, replacement.text
    start = call.span.start
    lead = prefix if "." not in call.name else ""
    if any(keyword.name == "name" for keyword in call.kwargs):
        end = call.span.end
        return Rendered(lead + text[start:end], len(lead), (start, end))
    items: list[Any] = [*call.args, *call.kwargs]
    if items:
        end = max(_end(item) for item in items)
        tail = f", name={json.dumps(replacement.name)})"
    else:
        end = call.span.end - 1  # the closing parenthesis
        tail = f"name={json.dumps(replacement.name)})"
    return Rendered(lead + text[start:end] + tail, len(lead), (start, end))


def _end(item: Any) -> int:
    return item.full_span.end if isinstance(item, Keyword) else item.span.end


@dataclass(frozen=True)
class Placement:
    """Where a rendered replacement sits in a text: the call from ``start``, its statement (the
    call applied to its inputs) up to ``end``."""

    replacement: Replacement
    rendered: Rendered
    start: int
    end: int

    def covers(self, span: Span) -> bool:
        return self.start <= span.start < max(self.end, self.start + 1)

    def locate(self, error: ConvcError) -> ConvcError:
        """``error``, found in the placed text, as an error about the option's text: exactly
        where it falls inside the option's own characters, on the whole call elsewhere (the
        name convc added, the application to the layer's inputs)."""
        assert error.span is not None
        replacement, rendered = self.replacement, self.rendered
        first, last = rendered.source
        begin = self.start + rendered.at
        offset_start = error.span.start - begin + first
        offset_end = error.span.end - begin + first
        text = replacement.text
        if first <= offset_start and offset_end <= last and offset_start < offset_end:
            span = span_in(text, offset_start, offset_end)
        else:
            span = replacement.call.span
        return ConvcError(error.message, span, error.help, origin=replacement.origin)


def span_in(text: str, start: int, end: int) -> Span:
    """The span of ``text[start:end]``: 1-based lines and columns."""

    def position(offset: int) -> tuple[int, int]:
        line = text.count("\n", 0, offset) + 1
        return line, offset - (text.rfind("\n", 0, offset) + 1) + 1

    line, column = position(start)
    end_line, end_column = position(end)
    return Span(line, column, end_line, end_column, start, end)


def locate_errors(
    error: ConvcError, placements: Sequence[Placement], other: Any = None
) -> ConvcError:
    """``error`` (one or several) with each error inside a placement told about the option's
    text; ``other(error)`` rewrites the rest (or they stay as they are)."""
    mapped = []
    for one in errors_of(error):
        placement = None
        if one.span is not None and one.path is None and one.origin is None:
            placement = next((p for p in placements if p.covers(one.span)), None)
        if placement is not None:
            mapped.append(placement.locate(one))
        else:
            mapped.append(other(one) if other is not None else one)
    return mapped[0] if len(mapped) == 1 else ConvcErrors(mapped)


def unknown_name(replacement: Replacement, names: Sequence[str], what: str = "layer") -> ConvcError:
    """The error for a name that matches no layer, with the names it may have meant."""
    close = difflib.get_close_matches(replacement.name, list(names), n=3, cutoff=0.5)
    if close:
        help = "did you mean " + " or ".join(repr(c) for c in close) + "?"
    else:
        shown = list(names)[:12]
        help = "its layers: " + ", ".join(shown) + (", ..." if len(names) > 12 else "")
    return ConvcError(
        f"{replacement.label}: the model has no {what} named {replacement.name!r}",
        help=help if names else None,
    )


# --- placeholders ------------------------------------------------------------------------------


def placeholder_call(class_name: str, name: str, prefix: str = "") -> str:
    """The call ``convc import`` writes for a layer it cannot write: it names the class and the
    layer in quoted literals and resolves to nothing."""
    del prefix  # REPLACE is no Keras layer: never ``layers.REPLACE``
    return f"{PLACEHOLDER}({json.dumps(class_name)}, name={json.dumps(name)})"


def placeholder_errors(text: str) -> list[ConvcError]:
    """One located error per placeholder of ``text``; empty when it has none."""
    if PLACEHOLDER not in text:
        return []
    errors = []
    for call in _calls(parse(text)):
        if call.short_name != PLACEHOLDER:
            continue
        class_name = _literal(call.args[0]) if call.args else None
        name = next((_literal(k.value) for k in call.kwargs if k.name == "name"), None)
        what = f"the {class_name} layer" if isinstance(class_name, str) else "a layer"
        if isinstance(name, str):
            what += f" {name!r}"
        reason = REFUSED.get(class_name) if isinstance(class_name, str) else None
        if reason is None:
            reason = "convc does not know its class, whose code is not in the model file"
        shown = json.dumps(name) if isinstance(name, str) else '"..."'
        option = quote(f"{name}=CALL" if isinstance(name, str) else "NAME=CALL")
        errors.append(
            ConvcError(
                f"a placeholder, not a layer: `convc import` wrote it for {what} ({reason})",
                call.span,
                help=f"write the layer call that computes the same in its place, keeping "
                f"name={shown} (e.g. {EXAMPLE_CALL[:-1]}, name={shown}) for x / 255 - 0.5), or "
                f"build with --replace {option}",
            )
        )
    return errors


def _literal(node: Any) -> Any:
    return node.value if isinstance(node, Literal) else None


def _calls(program: Program) -> Iterable[Call]:
    """Every call of the program, callees and arguments included, in order."""

    def walk(node: Any) -> Iterable[Call]:
        if isinstance(node, Assign):
            yield from walk(node.value)
        elif isinstance(node, Apply):
            yield from walk(node.callee)
            for item in (*node.args, *(k.value for k in node.kwargs)):
                yield from walk(item)
        elif isinstance(node, Call):
            yield node
            for item in (*node.args, *(k.value for k in node.kwargs)):
                yield from walk(item)
        elif isinstance(node, SequenceNode):
            for item in node.items:
                yield from walk(item)

    for statement in program.statements:
        yield from walk(statement)


# --- replacing layers of .conv text -------------------------------------------------------------


@dataclass(frozen=True)
class Edit:
    """``text[start:end]`` of the original becomes ``new``; ``placement`` when ``new`` is a
    replacement (``None`` for a name pinned to a layer)."""

    start: int
    end: int
    new: str
    replacement: Replacement | None = None
    rendered: Rendered | None = None


@dataclass(frozen=True)
class Replaced:
    """`.conv` text with layers replaced: the new text, where each replacement sits in it, and
    the edits, to map errors in the new text back to the original's lines."""

    text: str
    placements: tuple[Placement, ...]
    edits: tuple[Edit, ...]

    def locate(self, error: ConvcError, original: str) -> ConvcError:
        """An error found resolving the new text, located in the option or in the original."""
        return locate_errors(error, self.placements, lambda one: self._back(one, original))

    def _back(self, error: ConvcError, original: str) -> ConvcError:
        if error.span is None or error.path is not None or error.origin is not None:
            return error
        start = self._original_offset(error.span.start)
        end = max(start, self._original_offset(error.span.end))
        error.span = span_in(original, start, end)
        return error

    def _original_offset(self, offset: int) -> int:
        shift = 0
        for edit in self.edits:
            new_start = edit.start + shift
            if offset < new_start:
                break
            if offset < new_start + len(edit.new):
                return edit.start
            shift += len(edit.new) - (edit.end - edit.start)
        return offset - shift


def replace_in_text(text: str, given: Sequence[Replacement], resolve: Any) -> Replaced:
    """Replace layers of `.conv` text by name. A layer is found by the ``name=`` its call
    gives (imported text names every layer, a placeholder too) or, failing that, in the
    resolved model; replacing an automatically named layer pins the names of the others, which
    Keras's counters would otherwise shift. ``resolve`` resolves text (placeholders refused)."""
    program = parse(text)
    named: dict[str, Call] = {}
    for call in _calls(program):
        if call.short_name in _NOT_LAYERS:
            continue
        for keyword in call.kwargs:
            if keyword.name == "name" and isinstance(_literal(keyword.value), str):
                named.setdefault(keyword.value.value, call)  # type: ignore[union-attr]
    targets: dict[str, Call] = {}
    pins: dict[int, tuple[Call, str]] = {}
    missing = [r for r in given if r.name not in named]
    for replacement in given:
        if replacement.name in named:
            targets[replacement.name] = named[replacement.name]
    if missing and any(call.short_name == PLACEHOLDER for call in named.values()):
        # text with placeholders resolves to nothing: its layers are the ones it names
        raise unknown_name(missing[0], sorted(named))
    if missing:
        model = resolve(text)
        by_start = {call.span.start: call for call in _calls(program)}
        layers = {layer.name: by_start.get(layer.span.start) for layer in model.layers}
        for replacement in missing:
            found = layers.get(replacement.name)
            if found is None:
                names = sorted({*named, *layers, *(i.name for i in model.inputs)})
                raise unknown_name(replacement, names)
            targets[replacement.name] = found
        for name, other in layers.items():
            if other is not None and name not in targets and name not in named:
                pins[other.span.start] = (other, name)
    edits: list[Edit] = []
    for replacement in given:
        call = targets[replacement.name]
        rendered = render(replacement)
        edits.append(Edit(call.span.start, call.span.end, rendered.text, replacement, rendered))
    for call, name in pins.values():
        items: list[Any] = [*call.args, *call.kwargs]
        at = max(_end(item) for item in items) if items else call.span.end - 1
        separator = ", " if items else ""
        edits.append(Edit(at, at, f"{separator}name={json.dumps(name)}"))
    edits.sort(key=lambda edit: edit.start)
    for before, after in zip(edits, edits[1:], strict=False):
        if after.start < before.end:
            raise ConvcError("two --replace options replace layers built by one call")
    pieces, placements, cursor, shift = [], [], 0, 0
    for edit in edits:
        pieces.append(text[cursor : edit.start])
        if edit.replacement is not None and edit.rendered is not None:
            start = edit.start + shift
            placements.append(
                Placement(edit.replacement, edit.rendered, start, start + len(edit.new))
            )
        pieces.append(edit.new)
        shift += len(edit.new) - (edit.end - edit.start)
        cursor = edit.end
    pieces.append(text[cursor:])
    return Replaced("".join(pieces), tuple(placements), tuple(edits))


# --- weights ------------------------------------------------------------------------------------


def source_weights(
    model: Any,
    file_weights: Mapping[str, np.ndarray] | None,
    replaced: Sequence[str],
    given: Any,
    where: str | None = None,
) -> Any:
    """The weights to build a model file with, whose layers ``replaced`` were replaced.

    The file has no arrays for a replaced layer. Without ``given`` weights, a replaced layer
    with variables is refused (its numbers would be made up). With ``given`` arrays (a dict or
    an ``.npz``), they are laid over the file's own, key by key: they need only hold the
    replaced layers' arrays. A ``.weights.h5`` holds every layer's, and is used alone."""
    if file_weights is None or not replaced:
        return given if given is not None else file_weights
    if given is None:
        needing = [layer for layer in model.layers if layer.name in replaced and layer.variables]
        if needing:
            layer = needing[0]
            keys = ", ".join(f"'{layer.name}/{v.name}' {v.shape}" for v in layer.variables)
            raise ConvcError(
                f"the layer {layer.name!r} is replaced by a {layer.class_name}, which has "
                f"weights that the model file cannot give: {keys}",
                path=where,
                help="give them with --weights FILE.npz (keys 'layer/variable'; the other "
                "layers keep the file's weights), or replace the layer by one without weights",
            )
        return file_weights
    if isinstance(given, Mapping):
        extra = dict(given)
    elif str(os.fspath(given)).endswith(".npz"):
        from convc.arrays import read_npz

        extra = dict(read_npz(Path(os.fspath(given))))
    else:
        return given
    return {**file_weights, **extra}

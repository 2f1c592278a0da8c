"""A flattened Keras graph written as `.conv` text that reads like hand-written Keras.

Functional models become Keras functional code (``x = layers.Conv2D(...)(y)``), Sequential
chains the one-call-per-line form. Arguments equal to the layer's defaults are left out, so an
imported ResNet reads like the code that made it; every layer keeps its Keras name. Before any
text is written, ``unsupported`` lists every problem of the whole model at once.
"""

from __future__ import annotations

import bisect
import functools
import json
import keyword
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from dataclasses import replace as with_changes
from typing import Any

import convc.layers as registry
from convc.diagnostics import ConvcError, Span
from convc.importer.graph import Application, Graph, InputEntry, LayerEntry, TensorRef
from convc.importer.operations import (
    OPERATIONS,
    operation_problem,
    render_merge,
    render_operation,
)
from convc.layers.args import REQUIRED
from convc.layers.refused import REFUSED
from convc.limits import (
    IMPORTED_SYNTAX_BASE,
    MAX_INT_DIGITS,
    imported_syntax_values,
    imported_text_chars,
)
from convc.model import Shape, format_shape
from convc.names import UniqueNames, snake_case
from convc.replace import EXAMPLE_CALL, PLACEHOLDER
from convc.syntax import (
    Apply,
    Assign,
    Call,
    Directive,
    Import,
    Keyword,
    Literal,
    Program,
    Reference,
    Sequence,
    Statement,
    Value,
)

_DROPPED_KEYS = ("name", "trainable", "dtype")
_COLLAPSIBLE = {
    "kernel_size",
    "strides",
    "dilation_rate",
    "pool_size",
    "size",
    "padding",
    "cropping",
}
_RESERVED = {
    "keras",
    "layers",
    "tf",
    "ops",
    "model",
    "inputs",
    "outputs",
    "np",
    "Input",
    PLACEHOLDER,
}
_CALL_KWARGS_IGNORED = {"mask": (None,), "training": (None, False)}


CODE_CLASSES = ("Lambda", "TFOpLambda", "SlicingOpLambda")
"""Keras layers whose computation is code in the file (Python bytecode, a TensorFlow op's name)."""


@dataclass(frozen=True)
class Problem:
    class_name: str
    layer: str
    reason: str
    detail: str = ""
    """What the file records of the layer: its shapes (and a tf.keras operation's name)."""
    replaceable: bool = False
    """A layer convc cannot write, whose computation ``--replace`` can say."""


def is_code_layer(layer: LayerEntry) -> bool:
    """A layer whose computation is code: a Lambda, a tf.keras operation, a class convc does
    not know (a custom layer), or a Keras operation convc does not compile."""
    if layer.class_name in CODE_CLASSES:
        return True
    return registry.lookup(layer.class_name) is None and layer.class_name not in REFUSED


def unsupported(graph: Graph) -> list[Problem]:
    """Every layer class, argument, call and input of the graph that convc cannot compile."""
    problems: list[Problem] = []
    lookup: Lookup | None = None  # made for the first layer described: most models need none
    shown: dict[int, str] = {}  # a value shared by many calls (one nested model's) shown once

    def description(layer: LayerEntry) -> str:
        nonlocal lookup
        lookup = lookup or Lookup(graph)
        return describe(graph, layer, lookup)

    for entry in graph.inputs:
        problems += _input_problems(entry)
    operations: set[int] = set()  # the ids of the layers that are Keras operations
    for layer in graph.layers:
        if _is_operation(layer):
            operations.add(id(layer))
            continue  # checked per call, where its arguments are
        found = _layer_problems(layer)
        if found and is_code_layer(layer):
            detail = description(layer)
            found = [with_changes(p, detail=detail, replaceable=True) for p in found]
        problems += found
    for application in graph.applications:
        layer = application.layer
        if id(layer) in operations:
            reason = operation_problem(layer.class_name, application.args, graph.ranks)
            if reason:
                problems.append(
                    Problem(
                        layer.class_name,
                        layer.name,
                        reason,
                        description(layer),
                        replaceable=True,
                    )
                )
        for key, value in application.kwargs.items():
            if key not in _CALL_KWARGS_IGNORED or value not in _CALL_KWARGS_IGNORED[key]:
                if id(value) not in shown:
                    shown[id(value)] = _show(value)
                problems.append(
                    Problem(
                        layer.class_name,
                        layer.name,
                        f"it is called with {key}={shown[id(value)]}, which convc cannot compile",
                        replaceable=is_code_layer(layer),
                    )
                )
    return problems


def _is_operation(layer: LayerEntry) -> bool:
    """A Keras operation recorded in the graph (``x + 3.0``) rather than a layer. Files without
    ``module`` keys (Keras 3's .h5) tell them apart by config: an operation's has a name only."""
    if layer.module is not None:
        return layer.module.startswith("keras.src.ops")
    return layer.class_name in OPERATIONS and set(layer.config) == {"name"}


def _input_problems(entry: InputEntry) -> list[Problem]:
    problems = []
    if entry.batch_shape is None:
        problems.append(Problem("InputLayer", entry.name, "it does not say its shape"))
    for flag in ("sparse", "ragged"):
        if entry.config.get(flag):
            problems.append(Problem("InputLayer", entry.name, f"{flag} inputs are not supported"))
    return problems


def _layer_problems(layer: LayerEntry) -> list[Problem]:
    """The problems of a layer that is not a Keras operation."""
    layer_type = registry.lookup(layer.class_name)
    if layer_type is None:
        reason = REFUSED.get(layer.class_name)
        if reason is None:
            close = registry.suggest(layer.class_name)
            custom = layer.module and not layer.module.startswith("keras")
            reason = (
                "a custom layer: its code is not in the file"
                if custom
                else "convc does not support this layer"
            )
            if close:
                reason += f" (did you mean {close}?)"
        return [Problem(layer.class_name, layer.name, reason)]
    problems = []
    known = _argument_names(layer_type)
    for key, value in layer.config.items():
        if key in known:
            continue
        if value in (None, False, [], {}):
            continue  # a newer Keras's switch, off
        problems.append(
            Problem(layer.class_name, layer.name, f"its argument {key}={_show(value)} is unknown")
        )
    policy = _dtype_policy(layer.config.get("dtype"))
    if policy not in (None, "float32"):
        problems.append(
            Problem(
                layer.class_name,
                layer.name,
                f"its dtype policy is {policy!r}; convc builds float32 models "
                "(set the policy to float32 and save again, or build from the float32 weights)",
            )
        )
    return problems


@functools.cache
def _argument_names(layer_type: registry.LayerType) -> frozenset[str]:
    """The config keys a layer class takes: its arguments, and those the writer drops."""
    return frozenset(param.name for param in layer_type.signature).union(_DROPPED_KEYS)


def _dtype_policy(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        config = value.get("config")
        name = config.get("name") if isinstance(config, dict) else None
        return name if isinstance(name, str) else None
    return None


def report(problems: list[Problem]) -> str:
    """One message for all problems, grouped by layer class (and by what the file records)."""
    by_class: dict[tuple[str, str, str], list[str]] = {}
    for problem in problems:
        key = (problem.class_name, problem.reason, problem.detail)
        by_class.setdefault(key, []).append(problem.layer)
    lines = []
    for (class_name, reason, detail), names in by_class.items():
        shown = ", ".join(repr(n) for n in names[:6]) + (
            f" and {len(names) - 6} more" if len(names) > 6 else ""
        )
        line = f"  {class_name} ({shown}): {reason}" + (f" [{detail}]" if detail else "")
        # a class or key name from the file may hold a line break: it must not begin a line
        lines.append(line.replace("\r", "\\r").replace("\n", "\\n"))
    return "\n".join(lines)


def replace_help(problems: list[Problem]) -> str | None:
    """How to go on when some problems are layers whose computation is code: ``--replace``."""
    names = list(dict.fromkeys(p.layer for p in problems if p.replaceable))
    if not names:
        return None
    from shlex import quote

    example = quote(f"{names[0]}={EXAMPLE_CALL}")
    more = "" if len(names) == 1 else f" (one --replace for each of {len(names)} layers)"
    return (
        "convc never runs code from a file; say what the layer computes with a .conv layer "
        f"call{more}, e.g. --replace {example} for x / 255 - 0.5, or run `convc import` for "
        ".conv text with a placeholder line to edit"
    )


class Lookup:
    """A graph's applications by layer, readers by tensor and inputs by tensor, found once: a
    scan of every application per layer described is quadratic (4,000 Lambdas took a minute)."""

    def __init__(self, graph: Graph):
        self.first: dict[int, Application] = {}
        self.readers: dict[TensorRef, list[Application]] = {}
        for application in graph.applications:
            self.first.setdefault(id(application.layer), application)
            refs = tensor_args(application.args)
            for ref in refs if len(refs) == 1 else dict.fromkeys(refs):
                self.readers.setdefault(ref, []).append(application)
        self.inputs = {entry.output: entry for entry in graph.inputs}


def describe(graph: Graph, layer: LayerEntry, lookup: Lookup | None = None) -> str:
    """What the file records of a layer's tensors: ``input (None, 8, 8, 3), output (None, 8, 8,
    3)``, ``not recorded`` where it does not say; a tf.keras operation's name too."""
    lookup = lookup or Lookup(graph)
    application = lookup.first.get(id(layer))
    if application is None:
        return ""
    inputs, output = recorded_shapes(graph, application, lookup)
    shown = [_shape_text(shape) for shape in inputs]
    parts = [("input " if len(shown) == 1 else "inputs ") + ", ".join(shown)] if shown else []
    parts.append("output " + _shape_text(output))
    function = layer.config.get("function")
    if layer.class_name == "TFOpLambda" and isinstance(function, str) and _dotted_name(function):
        parts.insert(0, f"tf.{function}")
    elif _is_operation(layer):  # the constants it was called with: TrueDivide(x, 255.0)
        called = ", ".join("x" if isinstance(a, TensorRef) else _show(a) for a in application.args)
        parts.insert(0, f"{layer.class_name}({called})")
    return ", ".join(parts)


def _shape_text(shape: Shape | None) -> str:
    return format_shape(shape) if shape is not None else "not recorded"


def recorded_shapes(
    graph: Graph, application: Any, lookup: Lookup | None = None
) -> tuple[list[Shape | None], Shape | None]:
    """The shapes, batch first, that the file records for an application's input tensors and
    its output: Keras 3 records each tensor where a layer reads it, and an input's shape; a
    layer's ``build_config`` the input shape it was built for; a Lambda may state its output's
    (``output_shape``, without the batch)."""
    lookup = lookup or Lookup(graph)
    refs = tensor_args(application.args)
    inputs = [_recorded(graph, ref, lookup) for ref in refs]
    layer = application.layer
    if len(refs) == 1 and inputs[0] is None and layer.applications == 1:
        inputs[0] = _shape(layer.build_input_shape, batch=True)
    output = _recorded(graph, application.output, lookup)
    if output is None:  # the input shape that a layer it feeds alone was built for
        for consumer in lookup.readers.get(application.output, []):
            if consumer.layer.applications == 1 and tensor_args(consumer.args) == [
                application.output
            ]:
                output = _shape(consumer.layer.build_input_shape, batch=True)
                if output is not None:
                    break
    if output is None and application.layer.class_name == "Lambda":
        config = application.layer.config
        stated = _shape(config.get("output_shape"), batch=False)
        if stated is not None and config.get("output_shape_type", "raw") == "raw":
            batch = inputs[0][0] if inputs and inputs[0] else None
            output = (batch, *stated)
    return inputs, output


def _recorded(graph: Graph, ref: TensorRef, lookup: Lookup) -> Shape | None:
    shape = _shape(graph.shapes.get(ref), batch=True)
    if shape is None:
        entry = lookup.inputs.get(ref)
        if entry is not None:
            shape = _shape(entry.batch_shape, batch=True)
    return shape


def _shape(value: Any, *, batch: bool) -> Shape | None:
    """A JSON list of dimensions (``None`` or positive integers), or ``None``."""
    if not isinstance(value, list) or not value or (batch and len(value) < 2):
        return None
    if not all(
        d is None or (isinstance(d, int) and not isinstance(d, bool) and d > 0) for d in value
    ):
        return None
    return tuple(value)


def tensor_args(args: Any) -> list[TensorRef]:
    """The tensors among an application's arguments, in order."""
    if isinstance(args, TensorRef):
        return [args]
    if isinstance(args, dict):
        args = args.values()
    elif not isinstance(args, list | tuple):
        return []
    found = []
    for item in args:
        if isinstance(item, TensorRef):  # most arguments: no call for each
            found.append(item)
        else:
            found += tensor_args(item)
    return found


# --- writing --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Special:
    """What the writer puts in place of a layer's own constructor call: a replacement, a
    placeholder, a stand-in. ``call(prefix)`` gives the call; it is applied to the layer's
    input tensors only (the file's other call arguments belong to the code it replaces)."""

    call: Callable[[str], str]
    comment: str = ""
    """Written after the statement, as a comment (already escaped)."""


@dataclass
class Written:
    text: str
    positions: dict[str, tuple[int, int]] = field(default_factory=dict)
    """For each special layer, where its call starts in ``text`` and where its statement ends."""
    program: Program | None = None
    """``text`` as ``convc.syntax.parse`` reads it, made as it was written, so that the resolver
    need not parse it again (Python's parser alone takes 1.7 s for 100,000 layers); ``None``
    where a line was written without its syntax (a replacement, a Keras operation, a value
    the writer does not mirror), and the text must be parsed."""
    values: int = 0
    """The values of syntax written (``limits.imported_syntax_values``)."""

    def line_of(self, name: str) -> int:
        return bisect.bisect_left(self._line_ends, self.positions[name][0]) + 1

    @functools.cached_property
    def _line_ends(self) -> list[int]:
        """Where each line ends: counting from the text's start for each special layer is
        quadratic (50,000 placeholders)."""
        return [match.start() for match in re.finditer("\n", self.text)]


def write(graph: Graph, header: str, input_shapes: dict[str, tuple[int, ...]]) -> str:
    """The graph as `.conv` text. ``input_shapes`` replaces unknown input dimensions."""
    return write_text(graph, header, input_shapes).text


def _statements(graph: Graph) -> int:
    """The inputs, layers and calls of ``graph``, by which the limits on its text grow."""
    return len(graph.inputs) + len(graph.layers) + len(graph.applications)


def text_limit(graph: Graph) -> int:
    """The longest text the import of ``graph`` may write (``limits.imported_text_chars``)."""
    return imported_text_chars(_statements(graph))


def write_text(
    graph: Graph,
    header: str,
    input_shapes: dict[str, tuple[int, ...]],
    special: Mapping[str, Special] | None = None,
) -> Written:
    """``write``, with the layers named in ``special`` written as they say. Refused as soon as
    the text passes ``text_limit(graph)`` characters or ``limits.imported_syntax_values``
    values of syntax: a file's names and arguments could make it far longer, and each value
    costs about 300 bytes."""
    lines = _Lines(
        text_limit(graph),
        imported_syntax_values(_statements(graph)),
        f"{len(graph.layers):,} layers and {len(graph.applications):,} calls of them",
    )
    if graph.sequential and len(graph.inputs) == 1:
        _write_sequential(graph, header, input_shapes, lines, special or {})
    else:
        _write_functional(graph, header, input_shapes, lines, special or {})
    return lines.written()


_new_tuple = tuple.__new__


class _Lines:
    """The text being written, where each special layer's call sits in it, and the syntax of
    its statements while every line has come with its own (``Written.program``)."""

    def __init__(self, limit: int, values: int, model: str) -> None:
        self.limit, self.values, self.model = limit, values, model  # the most, and for what
        self.spans = 0  # one a value of syntax
        self.lines: list[str] = []
        self.marks: dict[str, tuple[int, int]] = {}  # name -> (start, end) in the text
        self.statements: list[Statement] | None = []
        self.assigned: dict[str, tuple[int, ...]] = {}
        self.offset = 0  # where the next line starts in the text
        self.number = 1  # the next line's number

    def append(
        self, line: str, statement: Statement | None = None, bound: str | None = None
    ) -> None:
        """Add a line, which assigns ``bound`` at module level (``Program.assigned``); a line of
        code without its ``statement`` leaves the text to be parsed."""
        if statement is None and line.strip() and not line.lstrip().startswith("#"):
            self.statements = None
        elif statement is not None and self.statements is not None:
            self.statements.append(statement)
        if bound is not None:
            # tuples, not lists converted at the end: the writer binds each of its names once
            earlier = self.assigned.get(bound)
            self.assigned[bound] = (self.number,) if earlier is None else (*earlier, self.number)
        self.lines.append(line)
        self.offset += len(line) + 1
        self.number += 1
        if self.offset > self.limit:
            raise ConvcError(
                f"the imported text would be more than {self.limit:,} characters long, the "
                f"most convc writes for a model of {self.model} (1 MiB, and 64 characters "
                "for each input, layer and call): its names and arguments are longer than a "
                "model of this size needs"
            )
        if self.spans > self.values:
            raise ConvcError(
                f"the imported text would hold more than {self.values:,} values (numbers, "
                f"strings, calls), the most convc writes for a model of {self.model} "
                f"({IMPORTED_SYNTAX_BASE:,}, and 6 for each input, layer and call): its layers' "
                "arguments hold more values than a model of this size needs"
            )

    def __iadd__(self, lines: list[str]) -> _Lines:
        for line in lines:
            self.append(line)
        return self

    def mark(self, name: str, line: str, column: int, end: int) -> None:
        self.marks[name] = (self.offset + column, self.offset + end)
        self.append(line)

    def at(self, column: int, end: int) -> Span:
        """The span of columns ``column`` to ``end`` (0-based) of the next line."""
        line, offset = self.number, self.offset
        self.spans += 1
        # made as the tuple it is: eight spans a layer, in half the time of Span(...)
        return _new_tuple(Span, (line, column + 1, line, end + 1, offset + column, offset + end))

    def written(self) -> Written:
        text = "\n".join(self.lines) + "\n"
        program = None
        if self.statements is not None:
            program = Program(tuple(self.statements), self.assigned)
        return Written(text, self.marks, program, self.spans)


def _write_sequential(
    graph: Graph, header: str, input_shapes, lines: _Lines, special: Mapping[str, Special]
) -> None:
    lines.append(header)
    if graph.name:
        bare = graph.name.isascii() and graph.name.isidentifier()
        written = graph.name if bare else _value(graph.name)
        directive = None
        if bare or _reads_back(graph.name):
            name_span, value_span = lines.at(0, 5), lines.at(6, 6 + len(written))
            directive = Directive(
                "model", graph.name, name_span.to(value_span), name_span, value_span
            )
        lines.append(f"model {written}", directive)
    _append_call(lines, "", "Input", [], _input_arguments(graph.inputs[0], input_shapes))
    for application in graph.applications:
        layer = application.layer
        if layer.name in special:
            call = special[layer.name].call("")
            lines.mark(layer.name, call + _comment(special[layer.name]), 0, len(call))
        else:
            text, syntax = _call_syntax(lines, 0, layer.class_name, *_layer_arguments(layer))
            lines.append(text, syntax)


def _comment(special: Special) -> str:
    return f"  # {special.comment}" if special.comment else ""


def _write_functional(
    graph: Graph, header: str, input_shapes, lines: _Lines, special: Mapping[str, Special]
) -> None:
    names = _Names()
    lines.append(header)
    imports = [
        ("import keras", "keras", "keras"),
        ("from keras import layers", "layers", "keras.layers"),
    ]
    for text, bound, path in imports:
        lines.append(text, Import(((bound, path),), lines.at(0, len(text))), bound)
    lines.append("")
    variables: dict[TensorRef, str] = {}
    for entry in graph.inputs:
        variable = names.take(entry.name)
        variables[entry.output] = variable
        keywords = _input_arguments(entry, input_shapes)
        _append_call(lines, f"{variable} = ", "keras.Input", [], keywords, bound=variable)
    layer_objects: dict[str, str] = {}
    calls: dict[str, int] = {}
    for application in graph.applications:
        layer = application.layer
        comment = ""
        if layer.name in special:
            _write_special(application, special[layer.name], variables, names, layer_objects, lines)
            continue
        operation = _is_operation(layer)
        if operation and all(isinstance(a, TensorRef) for a in application.args):
            operands = [variables[a] for a in application.args]
            call, source = render_merge(layer.class_name, layer.config, operands)
            expression = f"{call}([{', '.join(operands)}])"
            comment = f"  # {source}"
        elif operation:
            tensor = next(a for a in application.args if isinstance(a, TensorRef))
            call, source = render_operation(layer.class_name, layer.config, application.args)
            expression = f"{call}({variables[tensor]})"
            comment = "  # " + source.replace("x", variables[tensor], 1)
        elif layer.applications > 1:  # a shared layer: made once, called on each input
            if layer.name not in layer_objects:
                layer_objects[layer.name] = names.take(layer.name)
                prefix = f"{layer_objects[layer.name]} = "
                positional, keywords = _layer_arguments(layer)
                bound = layer_objects[layer.name]
                callee = f"layers.{layer.class_name}"
                _append_call(lines, prefix, callee, positional, keywords, bound=bound)
                calls[layer.name] = 0
            calls[layer.name] += 1
        tensor_name = application.output.name
        if layer.name in layer_objects:
            tensor_name = f"{layer_objects[layer.name]}_out{calls[layer.name]}"
        variable = names.take(tensor_name)
        variables[application.output] = variable
        if comment:  # a Keras operation, written as the layer that computes it
            lines.append(f"{variable} = {expression}{comment}")
        elif layer.name in layer_objects:  # conv(x): a call of the name bound to the layer
            callee = layer_objects[layer.name]
            _append_shared_call(lines, variable, callee, application.args, variables)
        else:  # layers.Conv2D(8, 3)(x)
            positional, keywords = _layer_arguments(layer)
            applied = (application.args, variables)
            callee = f"layers.{layer.class_name}"
            prefix = f"{variable} = "
            _append_call(
                lines, prefix, callee, positional, keywords, bound=variable, applied=applied
            )
    model_inputs = [variables[entry.output] for entry in graph.inputs]
    inputs_text = model_inputs[0] if len(model_inputs) == 1 else "[" + ", ".join(model_inputs) + "]"
    outputs_text = _render_outputs(graph.outputs, variables)
    name = f", name={_value(graph.name)}" if graph.name else ""
    lines.append("")
    line = f"model = keras.Model({inputs_text}, {outputs_text}{name})"
    statement = None
    if isinstance(graph.outputs, TensorRef | list):  # a dict of outputs is left to the parser
        inputs = [e.output for e in graph.inputs]
        args = [inputs[0] if len(inputs) == 1 else inputs, graph.outputs]
        statement = _model_statement(graph, args, variables, lines, line)
    lines.append(line, statement, "model")


def _write_special(
    application: Any,
    special: Special,
    variables: dict[TensorRef, str],
    names: _Names,
    layer_objects: dict[str, str],
    lines: _Lines,
) -> None:
    """A special layer's statement: its call applied to the application's tensors (made once
    and then applied, for a shared layer)."""
    layer = application.layer
    tensors = [variables[t] for t in tensor_args(application.args)]
    inputs = tensors[0] if len(tensors) == 1 else "[" + ", ".join(tensors) + "]"
    call = special.call("layers.")
    if layer.applications > 1:
        if layer.name not in layer_objects:
            layer_objects[layer.name] = names.take(layer.name)
            head = f"{layer_objects[layer.name]} = "
            line = head + call + _comment(special)
            lines.mark(layer.name, line, len(head), len(head) + len(call))
        tensor_name = f"{layer_objects[layer.name]}_out{application.output.index + 1}"
        variable = names.take(tensor_name)
        variables[application.output] = variable
        lines.append(f"{variable} = {layer_objects[layer.name]}({inputs})")
        return
    variable = names.take(application.output.name)
    variables[application.output] = variable
    head = f"{variable} = "
    statement = f"{call}({inputs})"
    lines.mark(
        layer.name, head + statement + _comment(special), len(head), len(head) + len(statement)
    )


def _render_args(args: list, variables: dict[TensorRef, str]) -> str:
    def one(value: Any) -> str:
        if isinstance(value, TensorRef):
            return variables[value]
        if isinstance(value, list):
            return "[" + ", ".join(one(v) for v in value) + "]"
        return _value(value)

    return ", ".join(one(arg) for arg in args)


def _render_outputs(outputs: Any, variables: dict[TensorRef, str]) -> str:
    if isinstance(outputs, TensorRef):
        return variables[outputs]
    if isinstance(outputs, list):
        return "[" + ", ".join(variables[o] for o in outputs) + "]"
    return (
        "{"
        + ", ".join(f"{_value(k)}: {_render_outputs(v, variables)}" for k, v in outputs.items())
        + "}"
    )


def _input_arguments(entry: InputEntry, input_shapes) -> list[tuple[str, Any]]:
    """The keyword arguments of an input's ``Input(...)`` call."""
    config = entry.config
    batch_shape = entry.batch_shape
    assert batch_shape is not None, "unsupported() ran first"
    shape = list(batch_shape[1:])
    override = input_shapes.get(entry.name)
    if override is not None:
        shape = list(override)
    arguments: list[tuple[str, Any]] = [("shape", tuple(shape))]
    if batch_shape[0] is not None:
        arguments.append(("batch_size", batch_shape[0]))
    dtype = config.get("dtype")
    dtype = _dtype_policy(dtype)
    if dtype not in (None, "float32"):
        arguments.append(("dtype", dtype))
    arguments.append(("name", entry.name))
    return arguments


def _layer_arguments(layer: LayerEntry) -> tuple[list[Any], list[tuple[str, Any]]]:
    """The positional and keyword arguments of a layer's constructor call, as values."""
    config = layer.config
    positional: list[Any] = []
    keywords: list[tuple[str, Any]] = []
    in_order = True
    for name, default, required, keyword_only in _written_params(layer.class_name):
        value = config.get(name, _ABSENT)
        if value is _ABSENT:
            if required:
                in_order = False
            continue
        if not required and _is_default(name, value, default):
            in_order = False
            continue
        argument = _argument(name, value)
        if required and in_order and not keyword_only:
            positional.append(argument)
        else:
            in_order = False
            keywords.append((name, argument))
    if config.get("trainable") is False:
        keywords.append(("trainable", False))
    keywords.append(("name", layer.name))
    return positional, keywords


_ABSENT = object()
"""A config key's value where the config does not have the key."""


@functools.cache
def _written_params(class_name: str) -> tuple[tuple[str, Any, bool, bool], ...]:
    """The parameters of a layer class's constructor that its call may write, each as (name,
    default, whether it is required, whether it is keyword-only): worked out once a class,
    not once a layer."""
    layer_type = registry.lookup(class_name)
    assert layer_type is not None, "unsupported() ran first"
    return tuple(
        (p.name, p.default, p.default is REQUIRED, p.keyword_only)
        for p in layer_type.signature
        if p.name not in _DROPPED_KEYS
    )


def _layer_call(layer: LayerEntry, prefix: str) -> str:
    return _call(f"{prefix}{layer.class_name}", *_layer_arguments(layer))


def _call(callee: str, positional: list[Any], keywords: list[tuple[str, Any]]) -> str:
    arguments = [_value(v) for v in positional] + [f"{k}={_value(v)}" for k, v in keywords]
    return f"{callee}({', '.join(arguments)})"


def _argument(name: str, value: Any) -> Any:
    """A kernel size, stride ... whose numbers are all one number is written as that number."""
    if name in _COLLAPSIBLE:
        flat = _flat_ints(value)
        if flat and len(set(flat)) == 1:
            return flat[0]
    return value


# --- the syntax of the text, as it is written -------------------------------------------------


def _append_call(
    lines: _Lines,
    prefix: str,
    callee: str,
    positional: list[Any],
    keywords: list[tuple[str, Any]],
    *,
    bound: str | None = None,
    applied: tuple[list, dict[TensorRef, str]] | None = None,
) -> None:
    """Append the statement ``callee(positional..., key=value...)`` after ``prefix`` (``NAME =
    `` where the statement binds ``bound``), applied to ``applied`` (an application's arguments
    and the variables of its tensors) when given, with its syntax."""
    column = len(prefix)
    call, call_syntax = _call_syntax(lines, column, callee, positional, keywords)
    text = prefix + call
    syntax: Call | Apply | None = call_syntax
    if applied is not None:
        args, variables = applied
        if call_syntax is None:
            text += f"({_render_args(args, variables)})"
        else:
            start = call_syntax.span.end - lines.offset + 1
            written, arguments, end = _applied_arguments(lines, start, args, variables)
            text += f"({written})"
            span = lines.at(column, end + 1)
            syntax = None if arguments is None else Apply(call_syntax, arguments, (), span)
    _append_statement(lines, text, syntax, bound)


def _append_shared_call(
    lines: _Lines, variable: str, callee: str, args: list, variables: dict[TensorRef, str]
) -> None:
    """Append ``variable = callee(tensors)``: a call of the name a shared layer is bound to."""
    prefix = f"{variable} = "
    column = len(prefix)
    written, arguments, end = _applied_arguments(lines, column + len(callee) + 1, args, variables)
    text = f"{prefix}{callee}({written})"
    syntax = None
    if arguments is not None:
        name_span = lines.at(column, column + len(callee))
        syntax = Call(callee, arguments, (), lines.at(column, end + 1), name_span)
    _append_statement(lines, text, syntax, variable)


def _append_statement(lines: _Lines, text: str, syntax: Call | Apply | None, bound: str | None):
    """Append ``text``, the statement that is ``syntax`` (assigned to ``bound``): its syntax is
    used only where it ends where the text does."""
    statement: Statement | None = None
    if syntax is not None and syntax.span.end - lines.offset == len(text):
        if bound is None:
            statement = syntax
        else:
            statement = Assign(bound, syntax, lines.at(0, len(text)), lines.at(0, len(bound)))
    lines.append(text, statement, bound)


def _call_syntax(
    lines: _Lines, column: int, callee: str, positional: list[Any], keywords: list[tuple[str, Any]]
) -> tuple[str, Call | None]:
    """``_call(callee, positional, keywords)``, and its syntax written at ``column`` (``None``
    where a value is left to the parser): each value's text is made once, for both."""
    at = column + len(callee) + 1
    texts: list[str] = []
    args: list[Value] = []
    kwargs: list[Keyword] = []
    for value in positional:
        at += 2 if texts else 0
        syntax, text = _value_syntax(value, lines, at)
        if syntax is None:
            return _call(callee, positional, keywords), None
        texts.append(text)
        args.append(syntax)
        at += len(text)
    for key, value in keywords:
        at += 2 if texts else 0
        name_span = lines.at(at, at + len(key))
        at += len(key) + 1
        syntax, text = _value_syntax(value, lines, at)
        if syntax is None:
            return _call(callee, positional, keywords), None
        texts.append(f"{key}={text}")
        kwargs.append(Keyword(key, syntax, name_span))
        at += len(text)
    at += 1
    name_span = lines.at(column, column + len(callee))
    call = Call(callee, tuple(args), tuple(kwargs), lines.at(column, at), name_span)
    return f"{callee}({', '.join(texts)})", call


def _applied_arguments(
    lines: _Lines, column: int, args: list, variables: dict[TensorRef, str]
) -> tuple[str, tuple[Value, ...] | None, int]:
    """``_render_args(args, variables)``, its syntax written at ``column`` and the column after
    it; most calls are on one tensor, whose variable is looked up once for both."""
    if len(args) == 1 and isinstance(args[0], TensorRef):
        name = variables[args[0]]
        end = column + len(name)
        return name, (Reference(name, lines.at(column, end)),), end
    text = _render_args(args, variables)
    arguments, end = _tensors_syntax(lines, column, args, variables)
    return text, arguments, end


def _tensors_syntax(
    lines: _Lines, column: int, args: list, variables: dict[TensorRef, str]
) -> tuple[tuple[Value, ...] | None, int]:
    """The syntax of ``_render_args(args, variables)`` written at ``column``, and the column
    after it."""

    def one(value: Any, at: int) -> tuple[Value | None, int]:
        if isinstance(value, TensorRef):
            name = variables[value]
            return Reference(name, lines.at(at, at + len(name))), at + len(name)
        if isinstance(value, list):
            items, end = many(value, at + 1)
            if items is None:
                return None, at
            return Sequence("list", items, lines.at(at, end + 1)), end + 1
        syntax, text = _value_syntax(value, lines, at)
        return syntax, at + len(text)

    def many(values: list, at: int) -> tuple[tuple[Value, ...] | None, int]:
        items = []
        for index, value in enumerate(values):
            item, at = one(value, at + (2 if index else 0))
            if item is None:
                return None, at
            items.append(item)
        return tuple(items), at

    return many(args, column)


def _value_syntax(
    value: Any, lines: _Lines, column: int, depth: int = 0
) -> tuple[Value | None, str]:
    """The syntax of ``_value(value)`` written at ``column`` of the next line, as
    ``convc.syntax.parse`` reads it, and that text; ``None`` (and no text) for a value this
    mirror leaves to the parser (a Keras object, a dict, a number that is not finite, a string
    that does not read back as itself, a deep nest)."""
    if isinstance(value, str):  # first: every layer's name is one
        if not (value.isascii() or _reads_back(value)):  # ASCII: as most names, no call
            return None, ""
        text = _string(value)
    elif value is None or isinstance(value, bool):
        text = repr(value)
    elif isinstance(value, int):
        text = str(value)
        if len(text) - text.startswith("-") > MAX_INT_DIGITS:
            return None, ""
    elif isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return None, ""
        text = repr(value)
    elif depth >= _MIRRORED_DEPTH:
        return None, ""
    elif isinstance(value, tuple) or (isinstance(value, list) and _flat_ints(value) is not None):
        items = [tuple(v) if isinstance(v, list) else v for v in value]
        return _sequence_syntax("tuple", items, lines, column, depth)
    elif isinstance(value, list):
        return _sequence_syntax("list", value, lines, column, depth)
    else:
        return None, ""
    return Literal(value, lines.at(column, column + len(text))), text


_MIRRORED_DEPTH = 8
"""How deeply nested a value ``_value_syntax`` mirrors; deeper ones are parsed (and refused
past ``MAX_NESTING``, as any text is)."""


def _sequence_syntax(
    kind: str, values: list, lines: _Lines, column: int, depth: int
) -> tuple[Value | None, str]:
    at = column + 1
    items: list[Value] = []
    texts: list[str] = []
    for value in values:
        at += 2 if texts else 0
        item, text = _value_syntax(value, lines, at, depth + 1)
        if item is None:
            return None, ""
        items.append(item)
        texts.append(text)
        at += len(text)
    text = _sequence_text(kind, texts)
    return Sequence(kind, tuple(items), lines.at(column, column + len(text))), text


def _sequence_text(kind: str, items: list[str]) -> str:
    """A tuple's or a list's literal, of its items' texts."""
    if kind == "tuple":
        return "(" + ", ".join(items) + ("," if len(items) == 1 else "") + ")"
    return "[" + ", ".join(items) + "]"


def _model_statement(
    graph: Graph, args: list, variables: dict[TensorRef, str], lines: _Lines, text: str
) -> Statement | None:
    """The syntax of ``model = keras.Model(inputs, outputs, name=...)``."""
    column = len("model = ")
    callee = "keras.Model"
    arguments, at = _tensors_syntax(lines, column + len(callee) + 1, args, variables)
    if arguments is None:
        return None
    keywords: tuple[Keyword, ...] = ()
    if graph.name:
        at += 2
        name_span = lines.at(at, at + len("name"))
        at += len("name=")
        name, name_text = _value_syntax(graph.name, lines, at)
        if name is None:
            return None
        at += len(name_text)
        keywords = (Keyword("name", name, name_span),)
    at += 1
    if at != len(text):
        return None
    name_span = lines.at(column, column + len(callee))
    call = Call(callee, arguments, keywords, lines.at(column, at), name_span)
    return Assign("model", call, lines.at(0, len(text)), lines.at(0, len("model")))


def _reads_back(text: str) -> bool:
    """Whether ``json.dumps(text)`` read as a Python string literal is ``text``: JSON writes a
    character beyond the 16-bit range as two escaped surrogates, which Python reads as two
    characters (and an unpaired surrogate is refused by the parser)."""
    if text.isascii():
        return True
    return all(ord(c) <= 0xFFFF and not 0xD800 <= ord(c) <= 0xDFFF for c in text)


def _string(text: str) -> str:
    """``json.dumps(text)``, a double-quoted literal with every character outside printable
    ASCII escaped; written directly where nothing needs escaping (most names), in half the
    time."""
    if text.isascii() and text.isprintable() and '"' not in text and "\\" not in text:
        return f'"{text}"'
    return json.dumps(text)


def _flat_ints(value: Any) -> list[int] | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return [value]
    if isinstance(value, list | tuple) and value:
        out = []
        for item in value:
            inner = _flat_ints(item)
            if inner is None:
                return None
            out += inner
        return out
    return None


def _is_default(name: str, value: Any, default: Any) -> bool:
    if name == "data_format" and default is None:
        return value == "channels_last"
    if name == "activation" and default in (None, "linear"):
        return value in (None, "linear")
    if value is None and default is None:  # most of a config: regularizers, constraints ...
        return True
    if _is_keras_object(value):
        given = value.get("config")
        if not isinstance(given, dict):
            return False
        config = {k: v for k, v in given.items() if v is not None}
        if isinstance(default, str):
            return not config and snake_case(str(value["class_name"])) == default
        return False
    flat, flat_default = _flat_ints(value), _flat_ints(default)
    if flat is not None and flat_default is not None:
        if len(flat_default) == 1 and len(set(flat)) == 1:
            return flat[0] == flat_default[0]
        return flat == flat_default
    if (
        isinstance(value, float)
        and isinstance(default, int | float)
        and not isinstance(default, bool)
    ):
        return value == default
    if isinstance(value, list) and isinstance(default, tuple):
        return tuple(value) == default
    return value == default and type(value) is type(default)


def _is_keras_object(value: Any) -> bool:
    return (
        isinstance(value, dict) and isinstance(value.get("class_name"), str) and "config" in value
    )


def _value(value: Any) -> str:
    """A JSON value as a Python literal; a serialized Keras object as its constructor call."""
    if value is None or isinstance(value, bool):
        return repr(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return f'float("{value}")'
        return repr(value)
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, tuple) or (isinstance(value, list) and _flat_ints(value) is not None):
        items = [_value(tuple(v) if isinstance(v, list) else v) for v in value]
        return _sequence_text("tuple", items)
    if isinstance(value, list):
        return _sequence_text("list", [_value(v) for v in value])
    if _is_keras_object(value):
        config = value.get("config") or {}
        if not isinstance(config, dict):
            return _value(config)
        keys = [str(key) for key in config]
        if not _dotted_name(value["class_name"]) or not all(key.isidentifier() for key in keys):
            raise ConvcError(
                "a Keras object in the file has a class or argument name that is not a Python "
                f"name: {json.dumps(value)[:80]}"
            )
        args = ", ".join(f"{k}={_value(v)}" for k, v in config.items() if v is not None)
        return f"{value['class_name']}({args})"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_value(k)}: {_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"not a JSON value: {value!r}")


def _dotted_name(text: Any) -> bool:
    """Whether ``text`` is a Python name or a dotted path of names (``keras.initializers.X``)."""
    return isinstance(text, str) and all(part.isidentifier() for part in text.split("."))


def _show(value: Any) -> str:
    text = _value(value) if not isinstance(value, TensorRef) else value.name
    return text if len(text) <= 60 else text[:57] + "..."


_NOT_IN_NAMES = re.compile(r"[^0-9A-Za-z_]")


class _Names:
    """Python variable names for tensors: the layer name, made an identifier and unique."""

    def __init__(self) -> None:
        self.names = UniqueNames(_RESERVED)

    def take(self, name: str) -> str:
        if name.isascii() and name.isidentifier():  # most names: nothing to replace
            base = name
        else:
            base = _NOT_IN_NAMES.sub("_", name)  # the .conv language's names are ASCII
            if not base or base[0].isdigit():
                base = "t_" + base
        if keyword.iskeyword(base) or base in ("True", "False", "None"):
            base += "_"
        return self.names.unique(base)

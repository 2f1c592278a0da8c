"""A flattened Keras graph written as `.conv` text that reads like hand-written Keras.

Functional models become Keras functional code (``x = layers.Conv2D(...)(y)``), Sequential
chains the one-call-per-line form. Arguments equal to the layer's defaults are left out, so an
imported ResNet reads like the code that made it; every layer keeps its Keras name. Before any
text is written, ``unsupported`` lists every problem of the whole model at once.
"""

from __future__ import annotations

import json
import keyword
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from dataclasses import replace as with_changes
from typing import Any

import convc.layers as registry
from convc.diagnostics import ConvcError
from convc.importer.graph import Application, Graph, InputEntry, LayerEntry, TensorRef
from convc.importer.operations import (
    OPERATIONS,
    operation_problem,
    render_merge,
    render_operation,
)
from convc.layers.args import REQUIRED
from convc.layers.refused import REFUSED
from convc.model import Shape, format_shape
from convc.names import UniqueNames, snake_case
from convc.replace import EXAMPLE_CALL, PLACEHOLDER

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
    lookup = Lookup(graph)
    shown: dict[int, str] = {}  # a value shared by many calls (one nested model's) shown once
    for entry in graph.inputs:
        problems += _input_problems(entry)
    for layer in graph.layers:
        found = _layer_problems(layer)
        if found and is_code_layer(layer):
            detail = describe(graph, layer, lookup)
            found = [with_changes(p, detail=detail, replaceable=True) for p in found]
        problems += found
    for application in graph.applications:
        if _is_operation(application.layer):
            reason = operation_problem(application.layer.class_name, application.args, graph.ranks)
            if reason:
                problems.append(
                    Problem(
                        application.layer.class_name,
                        application.layer.name,
                        reason,
                        describe(graph, application.layer, lookup),
                        replaceable=True,
                    )
                )
        for key, value in application.kwargs.items():
            if key not in _CALL_KWARGS_IGNORED or value not in _CALL_KWARGS_IGNORED[key]:
                if id(value) not in shown:
                    shown[id(value)] = _show(value)
                problems.append(
                    Problem(
                        application.layer.class_name,
                        application.layer.name,
                        f"it is called with {key}={shown[id(value)]}, which convc cannot compile",
                        replaceable=is_code_layer(application.layer),
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
    if _is_operation(layer):
        return []  # checked per call, where its arguments are
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
    known = {param.name for param in layer_type.signature}
    for key, value in layer.config.items():
        if key in _DROPPED_KEYS or key in known:
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
            for ref in dict.fromkeys(tensor_args(application.args)):
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
    if isinstance(args, list | tuple):
        return [t for item in args for t in tensor_args(item)]
    if isinstance(args, dict):
        return [t for item in args.values() for t in tensor_args(item)]
    return []


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

    def line_of(self, name: str) -> int:
        return self.text.count("\n", 0, self.positions[name][0]) + 1


def write(graph: Graph, header: str, input_shapes: dict[str, tuple[int, ...]]) -> str:
    """The graph as `.conv` text. ``input_shapes`` replaces unknown input dimensions."""
    return write_text(graph, header, input_shapes).text


def write_text(
    graph: Graph,
    header: str,
    input_shapes: dict[str, tuple[int, ...]],
    special: Mapping[str, Special] | None = None,
) -> Written:
    """``write``, with the layers named in ``special`` written as they say."""
    lines = _Lines()
    if graph.sequential and len(graph.inputs) == 1:
        _write_sequential(graph, header, input_shapes, lines, special or {})
    else:
        _write_functional(graph, header, input_shapes, lines, special or {})
    return lines.written()


class _Lines:
    """The text being written, and where each special layer's call sits in it."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.marks: dict[str, tuple[int, int, int]] = {}  # name -> (line, column, end column)

    def append(self, line: str) -> None:
        self.lines.append(line)

    def __iadd__(self, lines: list[str]) -> _Lines:
        self.lines += lines
        return self

    def mark(self, name: str, line: str, column: int, end: int) -> None:
        self.marks[name] = (len(self.lines), column, end)
        self.lines.append(line)

    def written(self) -> Written:
        text = "\n".join(self.lines) + "\n"
        starts, offset = [], 0
        for line in self.lines:
            starts.append(offset)
            offset += len(line) + 1
        positions = {
            name: (starts[index] + column, starts[index] + end)
            for name, (index, column, end) in self.marks.items()
        }
        return Written(text, positions)


def _write_sequential(
    graph: Graph, header: str, input_shapes, lines: _Lines, special: Mapping[str, Special]
) -> None:
    lines.append(header)
    if graph.name:
        bare = graph.name.isascii() and graph.name.isidentifier()
        lines.append(f"model {graph.name if bare else _value(graph.name)}")
    lines.append(_input_call(graph.inputs[0], "Input", input_shapes))
    for application in graph.applications:
        layer = application.layer
        if layer.name in special:
            call = special[layer.name].call("")
            lines.mark(layer.name, call + _comment(special[layer.name]), 0, len(call))
        else:
            lines.append(_layer_call(layer, ""))


def _comment(special: Special) -> str:
    return f"  # {special.comment}" if special.comment else ""


def _write_functional(
    graph: Graph, header: str, input_shapes, lines: _Lines, special: Mapping[str, Special]
) -> None:
    names = _Names()
    lines += [header, "import keras", "from keras import layers", ""]
    variables: dict[TensorRef, str] = {}
    for entry in graph.inputs:
        variable = names.take(entry.name)
        variables[entry.output] = variable
        lines.append(f"{variable} = {_input_call(entry, 'keras.Input', input_shapes)}")
    layer_objects: dict[str, str] = {}
    calls: dict[str, int] = {}
    for application in graph.applications:
        layer = application.layer
        inputs = _render_args(application.args, variables)
        comment = ""
        if layer.name in special:
            _write_special(application, special[layer.name], variables, names, layer_objects, lines)
            continue
        if _is_operation(layer) and all(isinstance(a, TensorRef) for a in application.args):
            operands = [variables[a] for a in application.args]
            call, source = render_merge(layer.class_name, layer.config, operands)
            expression = f"{call}([{', '.join(operands)}])"
            comment = f"  # {source}"
        elif _is_operation(layer):
            tensor = next(a for a in application.args if isinstance(a, TensorRef))
            call, source = render_operation(layer.class_name, layer.config, application.args)
            expression = f"{call}({variables[tensor]})"
            comment = "  # " + source.replace("x", variables[tensor], 1)
        elif layer.applications > 1:  # a shared layer: made once, called on each input
            if layer.name not in layer_objects:
                layer_objects[layer.name] = names.take(layer.name)
                lines.append(f"{layer_objects[layer.name]} = {_layer_call(layer, 'layers.')}")
                calls[layer.name] = 0
            calls[layer.name] += 1
            expression = f"{layer_objects[layer.name]}({inputs})"
        else:
            expression = f"{_layer_call(layer, 'layers.')}({inputs})"
        tensor_name = application.output.name
        if layer.name in layer_objects:
            tensor_name = f"{layer_objects[layer.name]}_out{calls[layer.name]}"
        variable = names.take(tensor_name)
        variables[application.output] = variable
        lines.append(f"{variable} = {expression}{comment}")
    model_inputs = [variables[entry.output] for entry in graph.inputs]
    inputs_text = model_inputs[0] if len(model_inputs) == 1 else "[" + ", ".join(model_inputs) + "]"
    outputs_text = _render_outputs(graph.outputs, variables)
    name = f", name={_value(graph.name)}" if graph.name else ""
    lines += ["", f"model = keras.Model({inputs_text}, {outputs_text}{name})"]


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


def _input_call(entry: InputEntry, callee: str, input_shapes) -> str:
    config = entry.config
    batch_shape = entry.batch_shape
    assert batch_shape is not None, "unsupported() ran first"
    shape = list(batch_shape[1:])
    override = input_shapes.get(entry.name)
    if override is not None:
        shape = list(override)
    args = [f"shape={_value(tuple(shape))}"]
    if batch_shape[0] is not None:
        args.append(f"batch_size={_value(batch_shape[0])}")
    dtype = config.get("dtype")
    dtype = _dtype_policy(dtype)
    if dtype not in (None, "float32"):
        args.append(f"dtype={_value(dtype)}")
    args.append(f"name={_value(entry.name)}")
    return f"{callee}({', '.join(args)})"


def _layer_call(layer: LayerEntry, prefix: str) -> str:
    layer_type = registry.lookup(layer.class_name)
    assert layer_type is not None, "unsupported() ran first"
    config = layer.config
    positional: list[str] = []
    keywords: list[str] = []
    in_order = True
    for param in layer_type.signature:
        if param.name in _DROPPED_KEYS or param.name not in config:
            in_order = in_order and param.default is not REQUIRED
            continue
        value = config[param.name]
        if param.default is not REQUIRED and _is_default(param.name, value, param.default):
            in_order = False
            continue
        rendered = _argument(param.name, value)
        if param.default is REQUIRED and in_order and not param.keyword_only:
            positional.append(rendered)
        else:
            in_order = False
            keywords.append(f"{param.name}={rendered}")
    if config.get("trainable") is False:
        keywords.append("trainable=False")
    keywords.append(f"name={_value(layer.name)}")
    return f"{prefix}{layer.class_name}({', '.join(positional + keywords)})"


def _argument(name: str, value: Any) -> str:
    if name in _COLLAPSIBLE:
        flat = _flat_ints(value)
        if flat and len(set(flat)) == 1:
            return str(flat[0])
    return _value(value)


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
        return json.dumps(value)
    if isinstance(value, tuple) or (isinstance(value, list) and _flat_ints(value) is not None):
        items = [_value(tuple(v) if isinstance(v, list) else v) for v in value]
        return "(" + ", ".join(items) + ("," if len(items) == 1 else "") + ")"
    if isinstance(value, list):
        return "[" + ", ".join(_value(v) for v in value) + "]"
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


class _Names:
    """Python variable names for tensors: the layer name, made an identifier and unique."""

    def __init__(self) -> None:
        self.names = UniqueNames(_RESERVED)

    def take(self, name: str) -> str:
        base = re.sub(r"[^0-9A-Za-z_]", "_", name)  # the .conv language's names are ASCII
        if not base or base[0].isdigit():
            base = "t_" + base
        if keyword.iskeyword(base) or base in ("True", "False", "None"):
            base += "_"
        return self.names.unique(base)

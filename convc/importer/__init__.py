"""Importing a Keras model file: `.keras`, full-model `.h5` or `model.to_json()` JSON.

``import_file`` reads the file as untrusted data (``files``), flattens its config to one graph
(``graph``), reports everything convc cannot compile in one error (``text.unsupported``), writes
the graph as `.conv` text (``text.write``) and resolves that text, so an imported model and its
written-out text are the same model by construction. The weights are then read for the resolved
model (``weights``). Keras, TensorFlow and PyTorch are never imported.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from convc.collector import collector_paused
from convc.diagnostics import ConvcError, abbreviated
from convc.importer import generations
from convc.importer.files import MODEL_SUFFIXES, is_model_file, open_model_file
from convc.importer.graph import Application, Graph, flatten
from convc.importer.text import (
    Lookup,
    Problem,
    Special,
    recorded_shapes,
    replace_help,
    report,
    tensor_args,
    text_limit,
    unsupported,
    write_text,
)
from convc.importer.weights import read_weights
from convc.model import Model, format_shape
from convc.replace import (
    Placement,
    Rendered,
    Replacement,
    locate_errors,
    placeholder_call,
    render,
    replacements,
    source_weights,
    unknown_name,
)
from convc.resolve import resolve_text

__all__ = ["MODEL_SUFFIXES", "Imported", "Placeholder", "import_file", "is_model_file"]


@dataclass
class Imported:
    text: str
    """The model as `.conv` text."""
    model: Model | None
    """The resolved model; ``None`` when the text has placeholders (it does not resolve)."""
    weights: dict[str, np.ndarray] | None
    """``{"layer/variable": array}`` in Keras's layouts; ``None`` for an architecture-only
    JSON file (and where placeholders keep the weights from being read: ``weights_note``)."""
    format: str
    warnings: list[ConvcError] = field(default_factory=list)
    replaced: tuple[str, ...] = ()
    """The layers replaced by ``replace``: the file gives them no weights."""
    placeholders: list[Placeholder] = field(default_factory=list)
    weights_note: str | None = None
    """Why the weights of a model with placeholders could not be read."""
    weights_file: str | None = None
    """The Keras 1 or 2 weights file read with an architecture-only JSON."""


@dataclass(frozen=True)
class Placeholder:
    """A layer that ``convc import`` wrote as a placeholder line, for the user to edit."""

    name: str
    class_name: str
    line: int
    detail: str


@collector_paused
def import_file(
    path: str | Path,
    *,
    input_shapes: dict[str, tuple[int, ...]] | None = None,
    replace: Mapping[str, str] | Sequence[Replacement] | None = None,
    placeholders: bool = False,
    weights_file: str | Path | None = None,
) -> Imported:
    """Read a Keras model file. ``input_shapes`` gives dimensions the file leaves unknown, by
    input name (``""`` for every input). ``replace`` maps layer names to the `.conv` layer calls
    that stand in their place (``convc.replace``). With ``placeholders``, a layer whose
    computation is code (a Lambda, a custom layer) that nothing replaces is written as a
    placeholder line instead of being refused; the text then does not build until it is
    edited, and ``Imported.model`` is ``None``. ``weights_file`` is read with an
    architecture-only JSON when it is Keras 1 or 2's ``save_weights`` HDF5, which is laid out by
    layer name as a full-model ``.h5`` is (``Imported.weights_file`` then says so); any other
    weights file is left to ``convc.weights``."""
    where = str(path)
    given = replacements(replace)
    with open_model_file(path) as model_file:
        attached = weights_file is not None and model_file.attach_legacy_weights(weights_file)
        generation = generations.detect(model_file)
        translation = generations.translate(model_file.config, generation, where)
        graph = flatten(translation.config, where)
        _check_names(graph, given, where)
        replaced = {r.name for r in given}
        problems = [p for p in unsupported(graph) if p.layer not in replaced]
        pending = list(dict.fromkeys(p.layer for p in problems if p.replaceable))
        if problems and not (placeholders and all(p.replaceable for p in problems)):
            raise ConvcError(
                "convc cannot compile "
                + ("this layer" if len(problems) == 1 else f"{len(problems)} things in this model")
                + (f" of a {generation.label} file" if generation.major == 1 else "")
                + ":\n"
                + report(problems),
                path=where,
                help=replace_help(problems),
            )
        shapes = _input_shapes(graph, input_shapes or {}, where)
        # a comment, so the file's name and version are escaped: a newline would end it
        header = f"# Imported from {_escaped(Path(where).name)} by convc"
        if generation.version:
            header += f" (saved by Keras {_escaped(generation.version)})"
        header += "."
        if given:
            first, lookup = _first_applications(graph), Lookup(graph)
            for replacement in given:
                _check_recorded_shapes(graph, replacement, first, lookup)
        rendered: dict[str, Rendered] = {}
        special = {r.name: _replaced(r, graph, rendered) for r in given}
        if pending:
            return _with_placeholders(
                graph, header, shapes, special, problems, model_file, given, where
            )
        try:
            written = write_text(graph, header, shapes, special)
        except ConvcError as error:  # too long: no line to show
            raise _of_generation(_in_imported_text(error, "", where), generation) from None
        text = written.text
        placements = [Placement(r, rendered[r.name], *written.positions[r.name]) for r in given]
        try:
            model = resolve_text(text, text_limit(graph), written.program)
        except ConvcError as error:
            raise locate_errors(
                error,
                placements,
                lambda one: _of_generation(_in_imported_text(one, text, where), generation),
            ) from None
        generations.check_built(model, translation, generation, where)
        for replacement in given:
            _check_resolved_shapes(graph, model, replacement)
        weights = None
        if model_file.has_weights:
            try:
                weights = _read_file_weights(model, _without(graph, replaced), model_file, where)
            except ConvcError as error:
                if given:
                    error.help = _replaced_shapes_hint(model, given, error.help)
                raise _of_generation(error, generation) from None
        notes = generations.warnings(generation, graph.layers, weights is not None, where)
        if notes:  # the model's, so that whatever shows the model's warnings shows them
            model = dataclasses.replace(model, warnings=(*model.warnings, *notes))
        return Imported(
            text,
            model,
            weights,
            model_file.format,
            list(model.warnings),
            replaced=tuple(r.name for r in given),
            weights_file=str(weights_file) if attached else None,
        )


def _check_names(graph: Graph, given: Sequence[Replacement], where: str) -> None:
    """Each replacement names a layer of the model."""
    layers = [layer.name for layer in graph.layers]
    inputs = {entry.name for entry in graph.inputs}
    for replacement in given:
        if replacement.name in inputs:
            raise ConvcError(
                f"{replacement.label}: {replacement.name!r} is an input of the model; "
                "--replace replaces layers",
                path=where,
            )
        if replacement.name not in layers:
            error = unknown_name(replacement, layers)
            error.path = where
            raise error


def _replaced(replacement: Replacement, graph: Graph, rendered: dict[str, Rendered]) -> Special:
    layer = next(entry for entry in graph.layers if entry.name == replacement.name)

    def call(prefix: str) -> str:
        rendered[replacement.name] = render(replacement, prefix)
        return rendered[replacement.name].text

    return Special(
        call,
        f"replaces the file's {_escaped(layer.class_name)} layer (--replace)",
    )


def _first_applications(graph: Graph) -> dict[str, Application]:
    """Each layer's first application, by the layer's name."""
    first: dict[str, Application] = {}
    for application in graph.applications:
        first.setdefault(application.layer.name, application)
    return first


def _check_recorded_shapes(
    graph: Graph, replacement: Replacement, first: dict[str, Application], lookup: Lookup
) -> None:
    """Where the file records the replaced layer's input shapes, the call is built on them
    alone, so that its mistakes and its output shape are told about the call itself."""
    inputs, output = recorded_shapes(graph, first[replacement.name], lookup)
    if not inputs or any(shape is None or None in shape[1:] for shape in inputs):
        return
    lines = [
        f"i{index} = Input(batch_shape={tuple(shape)!r}, name={json.dumps(f'input {index}')})"
        for index, shape in enumerate(inputs)
        if shape is not None
    ]
    rendered = render(replacement)
    head = "\n".join(lines) + "\nout = "
    arguments = (
        "i0" if len(lines) == 1 else "[" + ", ".join(f"i{i}" for i in range(len(lines))) + "]"
    )
    statement = f"{rendered.text}({arguments})"
    text = head + statement + "\n"
    placement = Placement(replacement, rendered, len(head), len(head) + len(statement))
    try:
        model = resolve_text(text, text_limit(graph))
    except ConvcError as error:
        raise locate_errors(error, [placement]) from None
    _check_output(replacement, model.nodes[-1].output.shape, output, recorded=True)


def _check_resolved_shapes(graph: Graph, model: Model, replacement: Replacement) -> None:
    nodes = [node for node in model.nodes if node.layer.name == replacement.name]
    applications = [a for a in graph.applications if a.layer.name == replacement.name]
    if len(nodes) != len(applications):
        return  # an application that reaches no output was left out: nothing to pair
    for node, application in zip(nodes, applications, strict=True):
        _, output = recorded_shapes(graph, application)
        _check_output(replacement, node.output.shape, output, recorded=True)


def _check_output(
    replacement: Replacement, actual: tuple, expected: tuple | None, *, recorded: bool
) -> None:
    if expected is None:
        return
    fits = len(actual) == len(expected) and all(
        want is None or have is None or want == have
        for have, want in zip(actual[1:], expected[1:], strict=True)
    )
    if not fits:
        raise replacement.error(
            f"this call gives an output of shape {format_shape(actual)}, but the model file "
            f"records {format_shape(expected)} for layer {replacement.name!r}",
            help="the layers after it were built for the recorded shape: the call must "
            "compute a tensor of that shape",
        )


def _replaced_shapes_hint(
    model: Model, given: Sequence[Replacement], help: str | None
) -> str | None:
    """Arrays that do not fit a model with replaced layers: the replacements' shapes are the
    first suspects, when the file does not record the shapes they replace."""
    shapes = []
    for replacement in given:
        node = next((n for n in model.nodes if n.layer.name == replacement.name), None)
        if node is not None:
            shapes.append(f"{replacement.label} gives {format_shape(node.output.shape)}")
    if not shapes:
        return help
    hint = (
        "the file's arrays fit the model as it was saved; a replacement whose output shape "
        "differs from the replaced layer's changes the layers after it (" + "; ".join(shapes) + ")"
    )
    return hint if help is None else f"{help}; {hint}"


def _read_file_weights(model: Model, graph: Graph, model_file: Any, where: str):
    """The file's arrays for ``model``'s layers that ``graph`` holds."""
    variables = [variable for layer in model.layers for variable in layer.variables]
    handle = model_file.open_weights(sum(v.size for v in variables), len(variables))
    generation = generations.detect(model_file)  # Keras 1's layouts, Theano's kernels
    return read_weights(model, graph, handle, model_file.format, where, generation)


def _without(graph: Graph, names: set[str]) -> Graph:
    """The graph without the layers ``names``, for reading weights: the file has none for a
    replaced layer (a Lambda has none at all)."""
    if not names:
        return graph
    return dataclasses.replace(graph, layers=[e for e in graph.layers if e.name not in names])


def _with_placeholders(
    graph: Graph,
    header: str,
    shapes: dict[str, tuple[int, ...]],
    special: dict[str, Special],
    problems: list[Problem],
    model_file: Any,
    given: Sequence[Replacement],
    where: str,
) -> Imported:
    """The text with a placeholder line for each layer whose code nothing replaces; the
    weights of the other layers, read with each placeholder standing as an Identity."""
    details = {p.layer: p.detail for p in problems if p.replaceable}
    classes = {p.layer: p.class_name for p in problems if p.replaceable}
    count = len(details)
    header += (
        f"\n# convc: {count} placeholder line{'s' if count > 1 else ''} (REPLACE) below must be "
        "replaced with the layer call that computes the same before this model builds."
    )
    marked = dict(special)
    for name, class_name in classes.items():
        marked[name] = Special(
            _fixed(placeholder_call(class_name, name)),
            f"convc: REPLACE this {_escaped(class_name)} ({_escaped(details[name])}) with a "
            "layer call that computes the same, keeping its name",
        )
    try:
        written = write_text(graph, header, shapes, marked)
    except ConvcError as error:  # too long: no line to show
        raise _in_imported_text(error, "", where) from None
    found = [
        Placeholder(name, classes[name], written.line_of(name), details[name]) for name in classes
    ]
    weights, note = None, None
    if model_file.has_weights:
        weights, note = _stand_in_weights(
            graph, header, shapes, special, classes, model_file, given, where
        )
    return Imported(
        written.text,
        None,
        weights,
        model_file.format,
        replaced=tuple(r.name for r in given),
        placeholders=found,
        weights_note=note,
    )


def _fixed(call: str) -> Callable[[str], str]:
    return lambda prefix: call


def _identity(name: str) -> Callable[[str], str]:
    return lambda prefix: f"{prefix}Identity(name={json.dumps(name)})"


def _stand_in_weights(graph, header, shapes, special, classes, model_file, given, where):
    """The file's weights for every layer but the placeholders, read for the model in which
    each placeholder is an ``Identity``: right wherever the layer keeps its input's shape, which
    the file's own arrays then confirm (each is checked against the shape it must have)."""
    stand_ins = dict(special)
    first, lookup = _first_applications(graph), Lookup(graph)
    for name in classes:
        application = first[name]
        inputs, output = recorded_shapes(graph, application, lookup)
        if len(tensor_args(application.args)) != 1:
            return None, f"the placeholder {name!r} takes several inputs"
        if inputs and inputs[0] is not None and output is not None and inputs[0] != output:
            return None, (
                f"the placeholder {name!r} changes its input's shape {format_shape(inputs[0])} "
                f"to {format_shape(output)}"
            )
        stand_ins[name] = Special(_identity(name))
    try:
        text = write_text(graph, header, shapes, stand_ins).text
        model = resolve_text(text, text_limit(graph))
    except ConvcError as error:
        return None, "with each placeholder standing as an Identity layer, " + error.message
    # a replaced layer with variables: refused as it is without placeholders
    source_weights(model, {}, [r.name for r in given], None, where)
    try:
        weights = _read_file_weights(
            model, _without(graph, {*classes, *(r.name for r in given)}), model_file, where
        )
    except ConvcError as error:
        return None, "with each placeholder standing as an Identity layer, " + error.message
    return weights, None


def _input_shapes(graph, given: dict[str, tuple[int, ...]], where: str):
    shapes = {}
    for entry in graph.inputs:
        stored = list((entry.batch_shape or [None])[1:])
        override = given.get(entry.name, given.get(""))
        if override is not None:
            if len(override) != len(stored) or any(
                known is not None and known != dim
                for known, dim in zip(stored, override, strict=True)
            ):
                raise ConvcError(
                    f"--input-shape {','.join(map(str, override))} does not fit input "
                    f"{entry.name!r}, whose shape is ({', '.join(_dim(d) for d in stored)})",
                    path=where,
                )
            shapes[entry.name] = tuple(override)
        elif any(dim is None for dim in stored):
            raise ConvcError(
                f"input {entry.name!r} has unknown dimensions "
                f"({', '.join(_dim(d) for d in stored)}); an ONNX model built by convc has "
                "every dimension but the batch known",
                path=where,
                help="give them: --input-shape "
                + ",".join(str(d) if d is not None else "224" for d in stored),
            )
    return shapes


def _escaped(text: str) -> str:
    """``text`` for a comment: quotes, backslashes, line breaks and control characters escaped
    as in a JSON string."""
    return json.dumps(text)[1:-1]


def _dim(value) -> str:
    return "None" if value is None else str(value)


def _of_generation(error: ConvcError, generation: generations.Generation) -> ConvcError:
    """An error about a Keras 1 file, which says so (convc reads it by translation)."""
    if generation.major == 1:
        error.message = f"this {generation.label} file: {error.message}"
    return error


def _in_imported_text(error: ConvcError, text: str, where: str) -> ConvcError:
    """A resolve error in the written text, told about the layer it concerns."""
    if error.span is None:
        error.path = error.path or where
        return error
    line = text.splitlines()[error.span.line - 1].strip()
    return ConvcError(
        f"{error.message}\n  in the imported model, at: {abbreviated(line)}",
        help=error.help,
        path=where,
    )

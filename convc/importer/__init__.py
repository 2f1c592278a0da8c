"""Importing a Keras model file: `.keras`, full-model `.h5` or `model.to_json()` JSON.

``import_file`` reads the file as untrusted data (``files``), flattens its config to one graph
(``graph``), reports everything convc cannot compile in one error (``text.unsupported``), writes
the graph as `.conv` text (``text.write``) and resolves that text, so an imported model and its
written-out text are the same model by construction. The weights are then read for the resolved
model (``weights``). Keras, TensorFlow and PyTorch are never imported.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from convc.diagnostics import ConvcError
from convc.importer import generations
from convc.importer.files import MODEL_SUFFIXES, is_model_file, open_model_file
from convc.importer.graph import flatten
from convc.importer.text import report, unsupported, write
from convc.importer.weights import read_weights
from convc.model import Model
from convc.resolve import resolve_text

__all__ = ["MODEL_SUFFIXES", "Imported", "import_file", "is_model_file"]


@dataclass
class Imported:
    text: str
    """The model as `.conv` text."""
    model: Model
    weights: dict[str, np.ndarray] | None
    """``{"layer/variable": array}`` in Keras's layouts; ``None`` for an architecture-only
    JSON file."""
    format: str
    warnings: list[ConvcError] = field(default_factory=list)


def import_file(
    path: str | Path, *, input_shapes: dict[str, tuple[int, ...]] | None = None
) -> Imported:
    """Read a Keras model file. ``input_shapes`` gives dimensions the file leaves unknown, by
    input name (``""`` for every input)."""
    where = str(path)
    with open_model_file(path) as model_file:
        keras1 = generations.keras1_evidence(model_file.config, model_file.keras_version)
        if keras1:
            raise ConvcError(
                f"this file was written by Keras 1 ({keras1}): convc reads the files of Keras 2, "
                "tf.keras and Keras 3, not yet Keras 1's",
                path=where,
                help="load it with Keras 2 (keras.models.load_model) and save it again, which "
                "converts its arguments and weights",
            )
        graph = flatten(model_file.config, where)
        problems = unsupported(graph)
        if problems:
            raise ConvcError(
                "convc cannot compile "
                + ("this layer" if len(problems) == 1 else f"{len(problems)} things in this model")
                + ":\n"
                + report(problems),
                path=where,
            )
        shapes = _input_shapes(graph, input_shapes or {}, where)
        # a comment, so the file's name and version are escaped: a newline would end it
        header = f"# Imported from {_escaped(Path(where).name)} by convc"
        if model_file.keras_version:
            header += f" (saved by Keras {_escaped(model_file.keras_version)})"
        text = write(graph, header + ".", shapes)
        try:
            model = resolve_text(text)
        except ConvcError as error:
            raise _in_imported_text(error, text, where) from None
        weights = None
        if model_file.has_weights:
            variables = [variable for layer in model.layers for variable in layer.variables]
            handle = model_file.open_weights(
                sum(variable.size for variable in variables), len(variables)
            )
            weights = read_weights(model, graph, handle, model_file.format, where)
        return Imported(text, model, weights, model_file.format, list(model.warnings))


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


def _in_imported_text(error: ConvcError, text: str, where: str) -> ConvcError:
    """A resolve error in the written text, told about the layer it concerns."""
    if error.span is None:
        error.path = error.path or where
        return error
    line = text.splitlines()[error.span.line - 1].strip()
    return ConvcError(
        f"{error.message}\n  in the imported model, at: {line}",
        help=error.help,
        path=where,
    )

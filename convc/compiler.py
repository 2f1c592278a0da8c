"""The compiler as functions: text or file in, checked ONNX model out.

``compile_text`` runs the whole pipeline: parse, resolve, weights (loaded or initialized), lower,
check. Writing is ``convc.onnxfile``'s job (``save`` and ``write_bytes`` are re-exported here).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

from convc import weights as weights_module
from convc.diagnostics import ConvcError
from convc.importer.files import is_model_file
from convc.limits import MAX_SOURCE_BYTES
from convc.lower import IO_LAYOUTS, lower
from convc.model import Model
from convc.onnxfile import save, write_bytes
from convc.resolve import resolve
from convc.syntax import parse
from convc.targets import DEFAULT_TARGET, get_target, resolve_opset

__all__ = [
    "check_io_layout",
    "compile_file",
    "compile_model",
    "compile_text",
    "is_model_file",
    "load_source",
    "model_weights",
    "read_source",
    "resolve_text",
    "save",
    "write_bytes",
]

WeightsSource = str | os.PathLike | Mapping[str, np.ndarray] | None


def resolve_text(text: str) -> Model:
    """Parse and resolve a .conv text into a ``Model``."""
    if len(text) > MAX_SOURCE_BYTES:
        raise ConvcError(
            f"the file is {len(text):,} characters long; convc reads at most {MAX_SOURCE_BYTES:,}"
        )
    return resolve(parse(text))


def model_weights(
    model: Model, weights: WeightsSource = None, seed: int = 0
) -> weights_module.Weights:
    """The model's weights from a file, from ``{"layer/variable": array}``, or initialized."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**63:
        raise ConvcError(f"the seed must be an integer from 0 to 2**63 - 1, got {seed!r}")
    if weights is None:
        return weights_module.initialize(model, seed)
    if isinstance(weights, Mapping):
        return weights_module.from_arrays(model, weights)
    return weights_module.load(model, weights)


def compile_model(
    model: Model,
    weights: WeightsSource = None,
    *,
    seed: int = 0,
    target: str = DEFAULT_TARGET,
    opset: int | None = None,
    io_layout: str = "keras",
    layer_outputs: bool = False,
    optimize: bool = True,
) -> onnx.ModelProto:
    """Lower a resolved model for ``target`` (``convc.targets``); ``opset`` defaults to the
    target's."""
    chosen = get_target(target)
    opset = resolve_opset(chosen, opset)
    check_io_layout(io_layout)
    return lower(
        model,
        model_weights(model, weights, seed),
        opset=opset,
        target=chosen,
        io_layout=io_layout,
        layer_outputs=layer_outputs,
        optimize=optimize,
    )


def compile_text(text: str, weights: WeightsSource = None, **options) -> onnx.ModelProto:
    """Compile .conv source text to an ONNX model (in memory); ``options`` are
    ``compile_model``'s."""
    return compile_model(resolve_text(text), weights, **options)


def compile_file(
    path: str | os.PathLike, weights: WeightsSource = None, **options
) -> onnx.ModelProto:
    return compile_text(read_source(path), weights, **options)


@dataclass
class Source:
    """A model read from a file: ``.conv`` text, or a Keras model file imported as text."""

    model: Model
    text: str
    weights: Mapping[str, np.ndarray] | None = None
    """The weights a Keras model file carries (``None`` for ``.conv`` text and JSON)."""
    imported: bool = False


def load_source(
    path: str | os.PathLike, *, input_shapes: Mapping[str, tuple[int, ...]] | None = None
) -> Source:
    """Read and resolve ``path``: ``.conv`` text, or a ``.keras``, ``.h5`` or ``.json`` Keras
    model (``convc.importer``); ``input_shapes`` fills the dimensions a model file leaves
    unknown."""
    from convc.importer import import_file

    if is_model_file(path):
        imported = import_file(path, input_shapes=dict(input_shapes or {}))
        return Source(imported.model, imported.text, imported.weights, imported=True)
    if input_shapes:
        raise ConvcError(
            "--input-shape applies to Keras model files; a .conv file states its input shape",
            path=str(path),
        )
    text = read_source(path)
    return Source(resolve_text(text), text)


def read_source(path: str | os.PathLike) -> str:
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > MAX_SOURCE_BYTES:
            raise ConvcError(
                f"the file is {size:,} bytes; convc reads at most {MAX_SOURCE_BYTES:,}",
                path=str(path),
            )
        return path.read_bytes().decode("utf-8-sig")  # a byte-order mark is not an error
    except FileNotFoundError:
        raise ConvcError("no such file", path=str(path)) from None
    except IsADirectoryError:
        raise ConvcError("is a directory, not a .conv file", path=str(path)) from None
    except UnicodeDecodeError as error:
        raise ConvcError(
            f"the file is not UTF-8 text (byte {error.start})", path=str(path)
        ) from None
    except OSError as error:
        raise ConvcError(f"cannot read the file: {error.strerror}", path=str(path)) from None


def check_io_layout(io_layout: str) -> None:
    if io_layout not in IO_LAYOUTS:
        raise ConvcError(
            f"unknown input/output layout {io_layout!r}",
            help="choose one of: " + ", ".join(IO_LAYOUTS),
        )

"""The compiler as functions: text or file in, checked ONNX model out, and a safe way to write it.

``compile_text`` runs the whole pipeline: parse, resolve, weights (loaded or initialized), lower,
check. ``save`` writes atomically: a temporary file in the target directory, then a rename, so a
failed build never leaves a partial file and never touches an existing one.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import onnx

from convc import weights as weights_module
from convc.diagnostics import ConvcError
from convc.lower import DEFAULT_OPSET, MIN_OPSET, lower
from convc.model import Model
from convc.resolve import resolve
from convc.syntax import parse

MAX_SOURCE_BYTES = 1 << 20
"""A .conv file larger than this (1 MiB, about 10,000 layers) is refused before parsing."""

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
    opset: int = DEFAULT_OPSET,
    layer_outputs: bool = False,
) -> onnx.ModelProto:
    check_opset(opset)
    return lower(
        model, model_weights(model, weights, seed), opset=opset, layer_outputs=layer_outputs
    )


def compile_text(
    text: str,
    weights: WeightsSource = None,
    *,
    seed: int = 0,
    opset: int = DEFAULT_OPSET,
    layer_outputs: bool = False,
) -> onnx.ModelProto:
    """Compile .conv source text to an ONNX model (in memory)."""
    return compile_model(
        resolve_text(text), weights, seed=seed, opset=opset, layer_outputs=layer_outputs
    )


def compile_file(
    path: str | os.PathLike, weights: WeightsSource = None, **options
) -> onnx.ModelProto:
    return compile_text(read_source(path), weights, **options)


def read_source(path: str | os.PathLike) -> str:
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > MAX_SOURCE_BYTES:
            raise ConvcError(
                f"the file is {size:,} bytes; convc reads at most {MAX_SOURCE_BYTES:,}",
                path=str(path),
            )
        return path.read_bytes().decode("utf-8")
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


def check_opset(opset: int) -> None:
    if not MIN_OPSET <= opset <= DEFAULT_OPSET:
        raise ConvcError(
            f"opset {opset} is not supported",
            help=f"convc emits opsets {MIN_OPSET} to {DEFAULT_OPSET}; below {MIN_OPSET}, Softmax "
            "works on flattened axes and Pad, Slice and Resize take other forms",
        )


def save(proto: onnx.ModelProto, path: str | os.PathLike) -> None:
    """Write a model atomically: nothing is left behind on failure, an old file stays intact."""
    write_bytes(proto.SerializeToString(), path)


def write_bytes(data: bytes, path: str | os.PathLike) -> None:
    path = Path(path)
    directory = path.parent if str(path.parent) else Path(".")
    if not directory.is_dir():
        raise ConvcError("the output directory does not exist", path=str(path))
    handle, temporary = tempfile.mkstemp(dir=directory, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise

"""The compiler as functions: text or file in, checked ONNX model out.

``compile_text`` runs the whole pipeline: parse, resolve, weights (loaded or initialized), lower,
check. Writing is ``convc.onnxfile``'s job (``save`` and ``write_bytes`` are re-exported here).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import onnx

from convc import weights as weights_module
from convc.diagnostics import ConvcError
from convc.limits import MAX_SOURCE_BYTES
from convc.lower import DEFAULT_OPSET, MIN_OPSET, lower
from convc.model import Model
from convc.onnxfile import save, write_bytes
from convc.resolve import resolve
from convc.syntax import parse

__all__ = [
    "check_opset",
    "compile_file",
    "compile_model",
    "compile_text",
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
    opset: int = DEFAULT_OPSET,
    layer_outputs: bool = False,
    optimize: bool = True,
) -> onnx.ModelProto:
    check_opset(opset)
    return lower(
        model,
        model_weights(model, weights, seed),
        opset=opset,
        layer_outputs=layer_outputs,
        optimize=optimize,
    )


def compile_text(
    text: str,
    weights: WeightsSource = None,
    *,
    seed: int = 0,
    opset: int = DEFAULT_OPSET,
    layer_outputs: bool = False,
    optimize: bool = True,
) -> onnx.ModelProto:
    """Compile .conv source text to an ONNX model (in memory)."""
    return compile_model(
        resolve_text(text),
        weights,
        seed=seed,
        opset=opset,
        layer_outputs=layer_outputs,
        optimize=optimize,
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


def check_opset(opset: int) -> None:
    if not MIN_OPSET <= opset <= DEFAULT_OPSET:
        raise ConvcError(
            f"opset {opset} is not supported",
            help=f"convc emits opsets {MIN_OPSET} to {DEFAULT_OPSET}; below {MIN_OPSET}, Softmax "
            "works on flattened axes and Pad, Slice and Resize take other forms",
        )

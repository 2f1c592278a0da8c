"""The internal pipeline: a file or text in, a resolved model, its weights, a checked ONNX model.

``load_source`` reads a path (``.conv`` text, or a Keras model file through ``convc.importer``),
``resolve_text`` resolves text (refusing the placeholders ``convc import`` writes), ``resolve_with``
resolves it with layers replaced (``convc.replace``), ``model_weights`` loads or draws the weights,
and ``compile_model`` lowers and checks (``compile_detached`` too, keeping the large weights apart
as arrays until they are written). ``convc.api`` is the public face of these; the command line
and the tests use them directly. Writing is ``convc.onnxfile``'s job (``save`` and
``write_bytes`` are re-exported here).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import onnx

from convc import resolve as resolver
from convc import weights as weights_module
from convc.collector import collector_paused
from convc.diagnostics import ConvcError, ConvcErrors, Span
from convc.importer.files import is_model_file
from convc.limits import MAX_SOURCE_BYTES
from convc.lower import lower_detached
from convc.model import Model
from convc.onnxfile import DetachedModel, save, write_bytes
from convc.options import BuildOptions, build_options, check_seed
from convc.replace import Replacement, placeholder_errors, replace_in_text, replacements
from convc.targets import get_target

if TYPE_CHECKING:
    from convc.memory import Bound
    from convc.quantize import Calibration

__all__ = [
    "Loaded",
    "compile_detached",
    "compile_model",
    "compile_text",
    "is_model_file",
    "load_source",
    "model_weights",
    "not_utf8",
    "read_source",
    "resolve_text",
    "resolve_with",
    "save",
    "write_bytes",
]

WeightsSource = str | os.PathLike | Mapping[str, np.ndarray] | None
Replace = Mapping[str, str] | Sequence[Replacement] | None
"""Layers to replace: ``{"NAME": ".conv layer call"}`` (``convc.replace``)."""


def resolve_text(text: str) -> Model:
    """Parse and resolve ``.conv`` text; a placeholder line that ``convc import`` wrote for a
    layer it could not write is an error at that line, which says so."""
    errors = placeholder_errors(text)
    if errors:
        raise errors[0] if len(errors) == 1 else ConvcErrors(errors)
    return resolver.resolve_text(text)


def resolve_with(text: str, replace: Replace = None) -> Model:
    """``resolve_text`` with layers of the text replaced by name (``--replace NAME=CALL``).
    Errors point into the text as it was given, or into the replacing call."""
    given = replacements(replace)
    if not given:
        return resolve_text(text)
    replaced = replace_in_text(text, given, resolve_text)
    try:
        return resolve_text(replaced.text)
    except ConvcError as error:
        raise replaced.locate(error, text) from None


@collector_paused
def model_weights(
    model: Model, weights: WeightsSource = None, seed: int = 0
) -> weights_module.Weights:
    """The model's weights from a file, from ``{"layer/variable": array}``, or initialized."""
    check_seed(seed)
    if weights is None:
        return weights_module.initialize(model, seed)
    if isinstance(weights, Mapping):
        return weights_module.from_arrays(model, weights)
    return weights_module.load(model, weights)


def compile_model(
    model: Model,
    weights: WeightsSource = None,
    options: BuildOptions | None = None,
    *,
    layer_outputs: bool = False,
    consume_weights: bool = False,
    bound: Bound | None = None,
    **build_keywords: Any,
) -> onnx.ModelProto:
    """Lower a resolved model with ``options`` (``convc.options.BuildOptions``; its fields may
    be given as keywords instead: ``target=``, ``opset=``, ``io_layout=``, ``optimize=``,
    ``seed=``, ``precision=``, ``calibration=``). With ``layer_outputs``, every layer's output
    is a graph output too. ``consume_weights`` says that a mapping of weights was loaded for
    this build alone (an imported model file's): it is emptied as lowering goes, and its arrays
    may be changed in place, as weights loaded from a file or drawn here always are, so that
    the model's arrays are held about once. An int8 build is held to ``bound``
    (``convc.memory.Bound``; by default ``convc.memory.default_max_memory()`` for ``build``)
    before it draws or reads its calibration samples (``bounded_calibration``)."""
    return compile_detached(
        model,
        weights,
        options,
        layer_outputs=layer_outputs,
        consume_weights=consume_weights,
        bound=bound,
        **build_keywords,
    ).attach()


def compile_detached(
    model: Model,
    weights: WeightsSource = None,
    options: BuildOptions | None = None,
    *,
    layer_outputs: bool = False,
    consume_weights: bool = False,
    bound: Bound | None = None,
    **build_keywords: Any,
) -> DetachedModel:
    """``compile_model``'s model, its large float32 weights kept apart as arrays
    (``convc.onnxfile.DetachedModel``) until it is written: then a build holds each weight
    once (its float16 form too). An int8 model is quantized whole, and comes with no arrays
    apart."""
    options = build_options(options, **build_keywords)
    arrays = model_weights(model, weights, options.seed)
    owned = consume_weights or not isinstance(weights, Mapping)
    if consume_weights and isinstance(weights, dict):
        weights.clear()  # the caller's references to the arrays go with it
    del weights
    detached = lower_detached(
        model,
        arrays,
        opset=options.resolved_opset,
        target=get_target(options.target_name),
        io_layout=options.io_layout,
        layer_outputs=layer_outputs,
        optimize=options.optimize,
        release_weights=owned,
    )
    if options.precision == "float16":
        from convc.precision import to_float16_detached

        return to_float16_detached(detached, io_dtype=options.io_dtype)
    if options.precision == "int8":
        calibration = bounded_calibration(detached.proto, model, options, bound)
        return DetachedModel(quantize(detached.attach(), model, options, calibration)[0], {})
    return detached


def bounded_calibration(
    proto: onnx.ModelProto, model: Model, options: BuildOptions, bound: Bound | None = None
) -> Calibration:
    """The calibration ``options`` name for the int8 build of the float32 ``proto`` (lowered
    from ``model``; its large weights may be apart), once ``bound`` (by default
    ``convc.memory.default_max_memory()`` for ``build``) allows what the calibration and the
    command after it would hold (``convc.memory.int8_build_estimate``, ``Bound.running``): a
    file is read first, as ``convc check`` reads it (its samples are counted as read); random
    samples are counted before they are drawn, ``calibration_count`` of them (a build holds
    none out)."""
    from convc.memory import FLOAT32, Bound, default_max_memory, int8_build_estimate
    from convc.quantize import random_samples, read_calibration

    bound = bound or Bound(default_max_memory())
    count = options.calibration_count
    drawn = random_samples(options.calibration, count, hold_out=False)
    calibration = None
    if drawn is None:
        calibration = read_calibration(options.calibration, model, count, options.seed)
    sample = sum(FLOAT32 * math.prod(d or 1 for d in i.shape[1:]) for i in model.inputs)
    if calibration is not None:
        size = calibration.size
        kept = sum(array.nbytes for array in calibration.samples.values())
    else:
        size = drawn or 0
        kept = size * sample
    calibrating = min(count, size)
    if options.io_layout != "keras":  # the calibrating samples moved to the graph's layout
        kept += calibrating * sample
    feed = model.inputs[0].shape[0] or 1
    estimate = int8_build_estimate(
        model,
        proto,
        command=bound.command,
        kept=kept,
        method=options.calibration_method,
        calibrating=calibrating,
        feed=feed,
        inputs=f"{size:,} calibration samples, {calibrating:,} calibrating {feed} at a time",
    )
    bound.enforce(estimate, proto)
    if calibration is None:
        calibration = read_calibration(
            options.calibration, model, count, options.seed, hold_out=False
        )
    return calibration


def quantize(
    proto: onnx.ModelProto,
    model: Model,
    options: BuildOptions,
    calibration: Calibration | None = None,
):
    """The int8 model of the float32 ``proto`` lowered from ``model`` with ``options``, its
    ``convc.quantize.QuantizationPlan`` and the ``Calibration`` it was calibrated on:
    ``calibration``, or the one ``options`` name, read here."""
    from convc.quantize import read_calibration, to_int8

    if calibration is None:
        calibration = read_calibration(
            options.calibration, model, options.calibration_count, options.seed
        )
    quantized, plan = to_int8(
        proto,
        model,
        calibration,
        method=options.calibration_method,
        keep_float=options.keep_float,
        weight_bits=options.weight_bits,
        io_layout=options.io_layout,
    )
    return quantized, plan, calibration


def compile_text(text: str, weights: WeightsSource = None, *args, **options) -> onnx.ModelProto:
    """Compile .conv source text to an ONNX model (in memory); the other arguments are
    ``compile_model``'s."""
    return compile_model(resolve_text(text), weights, *args, **options)


@dataclass
class Loaded:
    """A model read from a file: ``.conv`` text, or a Keras model file imported as text."""

    model: Model
    text: str
    weights: Mapping[str, np.ndarray] | None = None
    """The weights a Keras model file carries (``None`` for ``.conv`` text and JSON)."""
    imported: bool = False
    replaced: tuple[str, ...] = ()
    """The layers ``replace`` replaced."""
    weights_file: str | None = None
    """The weights file the importer read into ``weights`` (Keras 1 or 2's ``save_weights``
    beside a JSON architecture)."""

    def weights_for(self, given: WeightsSource, where: str | None = None) -> WeightsSource:
        """The weights to build with: ``given``, or the model file's own; a model file's
        replaced layers take theirs from ``given`` (``convc.replace.source_weights``)."""
        from convc.replace import source_weights

        if isinstance(given, str | os.PathLike) and os.fspath(given) == self.weights_file:
            given = None  # read already, by the importer
        return source_weights(self.model, self.weights, self.replaced, given, where)


def load_source(
    path: str | os.PathLike,
    *,
    input_shapes: Mapping[str, tuple[int, ...]] | None = None,
    replace: Replace = None,
    weights: WeightsSource = None,
) -> Loaded:
    """Read and resolve ``path``: ``.conv`` text, or a ``.keras``, ``.h5`` or ``.json`` Keras
    model (``convc.importer``); ``input_shapes`` fills the dimensions a model file leaves
    unknown, ``replace`` replaces layers by name. ``weights``, the weights the caller will
    build with, is read here when it is Keras 1 or 2's ``save_weights`` HDF5 beside a JSON
    architecture, whose layout only the importer knows (``Loaded.weights_file``)."""
    from convc.importer import import_file

    given = replacements(replace)
    if is_model_file(os.fspath(path)):
        imported = import_file(
            os.fspath(path),
            input_shapes=dict(input_shapes or {}),
            replace=given,
            weights_file=os.fspath(weights) if isinstance(weights, str | os.PathLike) else None,
        )
        assert imported.model is not None, "no placeholders were asked for"
        return Loaded(
            imported.model,
            imported.text,
            imported.weights,
            imported=True,
            replaced=imported.replaced,
            weights_file=imported.weights_file,
        )
    check_no_input_shapes(path, input_shapes)
    text = read_source(path)
    return Loaded(resolve_with(text, given), text, replaced=tuple(r.name for r in given))


def check_no_input_shapes(
    path: str | os.PathLike, input_shapes: Mapping[str, tuple[int, ...]] | None
) -> None:
    """Input shapes are given for Keras model files only: a .conv file states its own."""
    if input_shapes:
        raise ConvcError(
            "--input-shape applies to Keras model files; a .conv file states its input shape",
            path=str(path),
        )


def read_source(path: str | os.PathLike) -> str:
    """The text of a ``.conv`` file (UTF-8, a byte-order mark allowed), at most
    ``MAX_SOURCE_BYTES`` long."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > MAX_SOURCE_BYTES:
            raise ConvcError(
                f"the file is {size:,} bytes; convc reads at most {MAX_SOURCE_BYTES:,}",
                path=str(path),
                help="a .conv file holds 10,000 to 20,000 layers, by their arguments; a larger "
                "model that convc import wrote is built from its Keras model file",
            )
        data = path.read_bytes()
        return data.decode("utf-8-sig")  # a byte-order mark is not an error
    except FileNotFoundError:
        raise ConvcError("no such file", path=str(path)) from None
    except IsADirectoryError:
        raise ConvcError("is a directory, not a .conv file", path=str(path)) from None
    except UnicodeDecodeError as error:
        raise not_utf8(data, error) from None
    except OSError as error:
        raise ConvcError(f"cannot read the file: {error.strerror}", path=str(path)) from None


def not_utf8(data: bytes, error: UnicodeDecodeError) -> ConvcError:
    """The error for bytes that are not UTF-8, at the line and column (in characters) of the
    first byte that cannot be decoded."""
    body = data[3:] if data.startswith(b"\xef\xbb\xbf") else data  # as utf-8-sig decodes it
    before = body[: error.start]
    line = before.count(b"\n") + 1
    column = len(before[before.rfind(b"\n") + 1 :].decode("utf-8")) + 1
    return ConvcError(
        f"the file is not UTF-8 text: byte 0x{body[error.start]:02x} cannot be decoded",
        Span(line, column, line, column + 1, error.start, error.start + 1),
        help="save the file as UTF-8",
    )

"""Goldens of int8 models: what ``convc.golden`` records beside an int8 model, and the tolerance
it records.

The manifest of an int8 golden names how the model was quantized, so that ``verify`` quantizes
the recompiled model the same way: the calibration (``random``, or a file or folder with its path
relative to the golden directory and its sha256), the method, the count, the float32 layers and
the weight bits. Calibration given as arrays in Python has no file to name, and is refused.

The tolerance is derived from the int8 reference rather than from float32's: the recorded
outputs are onnxruntime's, and ``convc.int8_reference.evaluate`` computes the whole quantized
model from the same inputs, each group from its own previous integers, so that its disagreements
with the runtime (one step at a rounding boundary) compound through the model as another
runtime's or another CPU's correct kernels may. The recorded ``atol`` is twice the largest
difference seen at an output, and at least one quantization step of that output; ``rtol`` is 0.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

from convc.diagnostics import ConvcError
from convc.options import BuildOptions
from convc.quantize import CALIBRATION_METHODS, RANDOM, WEIGHT_BITS

MARGIN = 2.0
"""The recorded tolerance over the largest difference between onnxruntime and the int8
reference at an output."""


def manifest_entry(options: BuildOptions, directory: Path) -> dict[str, Any]:
    """The int8 settings of ``options`` for a golden manifest in ``directory``."""
    calibration = options.calibration
    if isinstance(calibration, str) and calibration == RANDOM:
        source: dict[str, Any] | str = RANDOM
    elif isinstance(calibration, str | os.PathLike):
        path = Path(calibration)
        source = {
            "path": os.path.relpath(path.resolve(), directory.resolve()),
            "sha256": calibration_hash(path),
        }
    else:
        raise ConvcError(
            "a golden of an int8 model needs its calibration data in a file or folder (or "
            "'random'), so that verify can quantize the recompiled model alike",
            help="save the samples with numpy.save and give the path",
        )
    return {
        "calibration": source,
        "calibration_method": options.calibration_method,
        "calibration_count": options.calibration_count,
        "keep_float": list(options.keep_float),
        "weight_bits": options.weight_bits,
    }


def calibration_hash(path: Path) -> str:
    """The sha256 of a calibration file, or of a folder's files (names and bytes, in order)."""
    digest = hashlib.sha256()
    files = sorted(p for p in path.iterdir() if p.is_file()) if path.is_dir() else [path]
    for file in files:
        digest.update(file.name.encode() + b"\0" + file.read_bytes())
    return digest.hexdigest()


def options_from(manifest: dict[str, Any], directory: Path) -> dict[str, Any]:
    """The int8 build options a manifest records (none for another precision); a malformed
    entry is an error that names it."""
    entry = manifest.get("int8")
    if manifest.get("precision") != "int8":
        return {}
    where = str(directory / "manifest.json")
    if not isinstance(entry, dict):
        raise ConvcError("the manifest of an int8 golden has no 'int8' object", path=where)
    source = entry.get("calibration")
    if isinstance(source, dict) and isinstance(source.get("path"), str):
        calibration: str = os.path.normpath(directory / source["path"])
    elif source == RANDOM:
        calibration = RANDOM
    else:
        raise ConvcError("the manifest's int8 'calibration' is malformed", path=where)
    method, count = entry.get("calibration_method"), entry.get("calibration_count")
    keep, bits = entry.get("keep_float", []), entry.get("weight_bits")
    if (
        method not in CALIBRATION_METHODS
        or isinstance(count, bool)
        or not isinstance(count, int)
        or not 1 <= count <= 1 << 20
        or not isinstance(keep, list)
        or not all(isinstance(name, str) for name in keep)
        or bits not in WEIGHT_BITS
    ):
        raise ConvcError("the manifest's int8 settings are malformed", path=where)
    return {
        "calibration": calibration,
        "calibration_method": method,
        "calibration_count": count,
        "keep_float": tuple(keep),
        "weight_bits": bits,
    }


def calibration_changed(manifest: dict[str, Any], directory: Path) -> str | None:
    """The calibration file, if the manifest names one whose bytes changed since."""
    entry = manifest.get("int8") or {}
    source = entry.get("calibration") if isinstance(entry, dict) else None
    if not isinstance(source, dict) or not isinstance(source.get("path"), str):
        return None
    path = Path(os.path.normpath(directory / source["path"]))
    if path.exists() and calibration_hash(path) != source.get("sha256"):
        return str(path)
    return None


def tolerance(
    proto: onnx.ModelProto, recorded: list[tuple[dict[str, np.ndarray], dict[str, np.ndarray]]]
) -> float:
    """The ``atol`` of an int8 golden (see the module's docstring) for ``recorded`` (inputs,
    onnxruntime's outputs) pairs."""
    from convc.int8_reference import Unsupported, evaluate

    steps = _output_steps(proto)
    worst = 0.0
    for inputs, outputs in recorded:
        try:
            expected = evaluate(proto, inputs)
        except Unsupported as refusal:
            raise ConvcError(
                f"the int8 reference cannot compute {refusal}, so the golden's tolerance cannot "
                "be derived",
                help="give --atol (and --rtol) to record with tolerances of your own",
            ) from None
        for name, actual in outputs.items():
            difference = float(np.abs(actual.astype(np.float64) - expected[name]).max(initial=0))
            worst = max(worst, MARGIN * difference, steps.get(name, 0.0))
    return worst


def _output_steps(proto: onnx.ModelProto) -> dict[str, float]:
    """The quantization step of each graph output that a DequantizeLinear writes."""
    constants = {t.name: t for t in proto.graph.initializer}
    steps = {}
    outputs = {info.name for info in proto.graph.output}
    for node in proto.graph.node:
        if node.op_type == "DequantizeLinear" and node.output[0] in outputs:
            scale = numpy_helper.to_array(constants[node.input[1]])
            steps[node.output[0]] = float(np.max(scale))
    return steps

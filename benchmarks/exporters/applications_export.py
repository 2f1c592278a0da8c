"""Make one keras.applications model for the applications benchmark, and export it with Keras.

Runs in the exporters' environment (``.venv-exporters``: Keras 3 on the torch backend), never
in convc's::

    python benchmarks/exporters/applications_export.py NAME SIZE OUTDIR

writes ``OUTDIR/NAME.keras`` (random weights, BatchNormalization statistics included, seeded),
``OUTDIR/NAME.npz`` (an input ``x`` and Keras's output ``y`` for it, batch 1), and Keras 3's own
ONNX export ``OUTDIR/NAME.keras-export.onnx`` (``model.export(format="onnx")``), and
``OUTDIR/NAME.report.json``: the export's wall time or its error (a file: exporters print to
stdout, even from C++).
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "torch")

import keras  # noqa: E402
import numpy as np  # noqa: E402

PIXEL_INPUTS = {"MobileNetV3Small", "MobileNetV3Large", "EfficientNetB0", "EfficientNetV2B0"}
PIXEL_INPUTS |= {"ConvNeXtTiny"}


def random_weights(model: keras.Model, seed: int = 7) -> None:
    """Every variable random, scaled by fan-in; variances positive (as the tests' oracle)."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        values = []
        for variable in layer.weights:
            shape = tuple(variable.shape)
            fan_in = max(1, int(np.prod(shape[:-1]))) if len(shape) > 1 else 1
            value = (rng.standard_normal(shape) / np.sqrt(fan_in)).astype(np.float32)
            if variable.name.endswith("variance"):
                value = np.abs(value) + np.float32(0.5)
            values.append(value)
        layer.set_weights(values)


def main() -> int:
    name, size, out = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3])
    model = getattr(keras.applications, name)(
        weights=None, input_shape=(size, size, 3), classifier_activation=None
    )
    random_weights(model)
    rng = np.random.default_rng(11)
    shape = (1, size, size, 3)
    x = (rng.uniform(0, 255, shape) if name in PIXEL_INPUTS else rng.standard_normal(shape)).astype(
        np.float32
    )
    y = keras.ops.convert_to_numpy(model(x, training=False))
    model.save(out / f"{name}.keras")
    np.savez(out / f"{name}.npz", x=x, y=y)
    report: dict = {"keras": keras.__version__}
    start = time.perf_counter()
    try:
        model.export(str(out / f"{name}.keras-export.onnx"), format="onnx")
        report["export_s"] = round(time.perf_counter() - start, 3)
    except Exception as error:  # a peer that fails is recorded with its error, not dropped
        report["error"] = f"{type(error).__name__}: {error}".splitlines()[0][:300]
        traceback.print_exc(file=sys.stderr)
    (out / f"{name}.report.json").write_text(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())

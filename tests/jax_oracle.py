"""Keras 3 on its JAX backend as an oracle, in a process of its own.

The test process runs Keras on torch (tests/conftest.py), and Keras picks its backend once, when
it is imported. Where Keras 3's backends disagree (bicubic and Lanczos resampling, a 'same'
average pooling whose pads are unequal), convc computes what JAX and TensorFlow compute, so those
layers are compared with Keras on JAX: ``keras_outputs_on_jax`` hands the .conv texts and their
inputs to ``python tests/jax_oracle.py`` and reads back what Keras computed.

    python tests/jax_oracle.py FOLDER     # FOLDER/cases.json, FOLDER/inputs.npz -> outputs.npz
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def keras_outputs_on_jax(
    texts: list[str], inputs: list[np.ndarray], folder: Path
) -> list[np.ndarray]:
    """What Keras 3 on JAX computes for each .conv text (a Keras model built from its calls, as
    ``tests.oracle.keras_model`` builds it, its weights from ``tests.oracle.random_weights``) on
    the matching input."""
    (folder / "cases.json").write_text(json.dumps(texts))
    np.savez(folder / "inputs.npz", *inputs)
    environment = dict(os.environ, KERAS_BACKEND="jax", JAX_PLATFORMS="cpu")
    subprocess.run(
        [sys.executable, str(Path(__file__)), str(folder)],
        cwd=ROOT,
        env=environment,
        check=True,
        timeout=900,
    )
    with np.load(folder / "outputs.npz") as outputs:
        return [outputs[f"arr_{i}"] for i in range(len(texts))]


def assert_matches_keras_on_jax(text: str, folder: Path, batch: int = 2):
    """``tests.oracle.assert_matches_keras`` with Keras on JAX: the same random weights (drawn
    by ``random_weights`` from the same model, so equal on both backends) and input; convc's
    model in onnxruntime and its NumPy reference must agree with JAX's output. One input, one
    output. Returns convc's ONNX model."""
    from convc.compiler import compile_text, resolve_text
    from convc.reference import model_outputs, run_reference
    from convc.weights import from_arrays

    from oracle import (
        ATOL,
        RTOL,
        convc_names,
        input_for,
        keras_model,
        onnx_output,
        random_weights,
    )

    model = keras_model(text)
    arrays = random_weights(model)
    x = input_for(model, batch)
    (expected,) = keras_outputs_on_jax([text], [x], folder)
    ours = resolve_text(text)
    arrays = convc_names(ours, model, arrays)
    proto = compile_text(text, arrays)
    np.testing.assert_allclose(onnx_output(proto, x), expected, atol=ATOL, rtol=RTOL)
    (name,) = (i.name for i in ours.inputs)
    outputs = model_outputs(ours, run_reference(ours, from_arrays(ours, arrays), {name: x}))
    (reference,) = outputs.values()
    np.testing.assert_allclose(reference, expected, atol=ATOL, rtol=RTOL)
    return proto


def main(folder: Path) -> None:
    import keras

    assert keras.backend.backend() == "jax", keras.backend.backend()
    from oracle import keras_model, random_weights

    texts = json.loads((folder / "cases.json").read_text())
    with np.load(folder / "inputs.npz") as inputs:
        xs = [inputs[f"arr_{i}"] for i in range(len(texts))]
    outputs = []
    for text, x in zip(texts, xs, strict=True):
        model = keras_model(text)
        random_weights(model)  # what the test process drew for the same model
        outputs.append(np.asarray(model(x, training=False)))
    np.savez(folder / "outputs.npz", *outputs)


if __name__ == "__main__":
    main(Path(sys.argv[1]))

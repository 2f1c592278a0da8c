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
import re
import subprocess
import sys
from dataclasses import dataclass
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


BACKENDS_DISAGREE = re.compile(r"AveragePooling[123]D\(.*['\"]same['\"]|bicubic['\"]|lanczos")
"""What, in .conv text, Keras on torch computes otherwise than on JAX and TensorFlow (a 'same'
average pooling, bicubic and Lanczos resampling): convc computes JAX's and TensorFlow's, so a
text that has one is compared with Keras on JAX."""


def torch_padding(pooling: str, padding: str) -> str:
    """A pooling's padding as a test compared with Keras on torch writes it (``pooling`` is its
    class name): an average's 'same' as convc's ``same_torch``, which Keras on torch computes
    (and ``oracle.keras_model`` reads as Keras's 'same'); convc's own 'same' is compared with
    Keras on JAX (tests/test_keras_backends.py)."""
    return "same_torch" if pooling.startswith("Average") and padding == "same" else padding


@dataclass(frozen=True)
class Expectation:
    """Keras on JAX's output for one .conv text: the weights it was given (by convc's names),
    its input, and its output."""

    arrays: dict[str, np.ndarray]
    x: np.ndarray
    expected: np.ndarray


def keras_on_jax(texts: list[str], folder: Path, batch: int = 2) -> dict[str, Expectation]:
    """Keras on JAX's output for each text (one input, one output), in one process: the same
    random weights as ``oracle.random_weights`` draws for the same model (equal on both
    backends, the variables being the same) and the input ``oracle.input_for`` makes."""
    from convc.compiler import resolve_text

    from oracle import convc_names, input_for, keras_model, random_weights

    drawn = []
    for text in texts:
        model = keras_model(text)
        arrays = convc_names(resolve_text(text), model, random_weights(model))
        drawn.append((arrays, input_for(model, batch)))
    outputs = keras_outputs_on_jax(texts, [x for _, x in drawn], folder)
    return {
        text: Expectation(arrays, x, expected)
        for text, (arrays, x), expected in zip(texts, drawn, outputs, strict=True)
    }


def assert_matches(text: str, expectation: Expectation):
    """convc's model of ``text`` in onnxruntime, and its NumPy reference, agree with Keras on
    JAX's output (``oracle.ATOL``, ``oracle.RTOL``). Returns convc's ONNX model."""
    from convc.compiler import compile_text, resolve_text
    from convc.reference import model_outputs, run_reference
    from convc.weights import from_arrays

    from oracle import ATOL, RTOL, onnx_output

    ours = resolve_text(text)
    arrays = expectation.arrays
    proto = compile_text(text, arrays)
    x, expected = expectation.x, expectation.expected
    np.testing.assert_allclose(onnx_output(proto, x), expected, atol=ATOL, rtol=RTOL)
    (name,) = (i.name for i in ours.inputs)
    outputs = model_outputs(ours, run_reference(ours, from_arrays(ours, arrays), {name: x}))
    (reference,) = outputs.values()
    np.testing.assert_allclose(reference, expected, atol=ATOL, rtol=RTOL)
    return proto


def assert_matches_keras_on_jax(text: str, folder: Path, batch: int = 2):
    """``oracle.assert_matches_keras`` with Keras on JAX, for one text of one input and one
    output. Returns convc's ONNX model."""
    return assert_matches(text, keras_on_jax([text], folder, batch)[text])


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

"""The Keras oracle: build the same .conv text in Keras 3, give both the same weights, compare
convc's ONNX model in ONNX Runtime and convc's NumPy reference with Keras.

Each call statement of a .conv file is Keras constructor syntax, so the oracle evaluates it
against ``keras.layers`` itself: the expectation is Keras's own behaviour, never hand-written.
``keras.backend.clear_session()`` before each model makes Keras's automatic names start afresh,
as in a new process, so names can be compared too.
"""

from __future__ import annotations

import os
import types

import numpy as np

os.environ.setdefault("KERAS_BACKEND", "torch")

import keras  # noqa: E402
import onnxruntime as ort  # noqa: E402

from convc.compiler import compile_text, resolve_text  # noqa: E402
from convc.reference import run_reference  # noqa: E402
from convc.syntax import Call, Directive, parse  # noqa: E402
from convc.weights import from_arrays  # noqa: E402

ATOL = 1e-4
RTOL = 1e-4

_tf = types.SimpleNamespace(keras=keras)
_NAMESPACE = {
    **{name: getattr(keras.layers, name) for name in dir(keras.layers) if not name.startswith("_")},
    "Input": keras.Input,
    "keras": keras,
    "layers": keras.layers,
    "tf": _tf,
    "initializers": keras.initializers,
    "regularizers": keras.regularizers,
    "constraints": keras.constraints,
    "activations": keras.activations,
}


def keras_model(text: str) -> keras.Model:
    """The Keras Sequential model a .conv text describes, built by Keras from the same calls."""
    keras.backend.clear_session()
    keras.config.set_image_data_format("channels_last")
    program = parse(text)
    source = text if text.endswith("\n") else text + "\n"
    items = []
    try:
        for statement in program.statements:
            if isinstance(statement, Directive):
                if statement.name == "data_format":
                    keras.config.set_image_data_format(statement.value)
                continue
            assert isinstance(statement, Call)
            code = source[statement.span.start : statement.span.end]
            if statement.short_name == "set_image_data_format":
                keras.config.set_image_data_format(eval(code.split("(", 1)[1].rsplit(")", 1)[0]))
                continue
            items.append(eval(code, dict(_NAMESPACE)))
        return keras.Sequential(items)
    finally:
        keras.config.set_image_data_format("channels_last")


def random_weights(model: keras.Model, seed: int = 0) -> dict[str, np.ndarray]:
    """Random values for every variable (biases too), set into the Keras model and returned as
    ``{"layer/variable": array}``; scaled by fan-in so outputs stay O(1)."""
    rng = np.random.default_rng(seed)
    arrays = {}
    for layer in model.layers:
        values = []
        for variable in layer.weights:
            shape = tuple(variable.shape)
            fan_in = max(1, int(np.prod(shape[:-1]))) if len(shape) > 1 else 1
            value = (rng.standard_normal(shape) / np.sqrt(fan_in)).astype(np.float32)
            values.append(value)
            arrays[f"{layer.name}/{variable.name}"] = value
        layer.set_weights(values)
    return arrays


def keras_output(model: keras.Model, x: np.ndarray) -> np.ndarray:
    return keras.ops.convert_to_numpy(model(x, training=False))


def onnx_output(proto, x: np.ndarray) -> np.ndarray:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(
        proto.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
    (output,) = session.run(None, {session.get_inputs()[0].name: x})
    return output


def input_for(model: keras.Model, batch: int = 2, seed: int = 1) -> np.ndarray:
    shape = tuple(batch if d is None else d for d in model.inputs[0].shape)
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def assert_matches_keras(
    text: str, *, batch: int = 2, atol: float = ATOL, rtol: float = RTOL, opset=None
):
    """Compile ``text`` with convc and build it in Keras; outputs and layer names must agree."""
    model = keras_model(text)
    arrays = random_weights(model)
    x = input_for(model, batch)
    expected = keras_output(model, x)
    options = {} if opset is None else {"opset": opset}
    proto = compile_text(text, arrays, **options)
    actual = onnx_output(proto, x)
    assert actual.shape == expected.shape, f"shape {actual.shape} != Keras {expected.shape}"
    np.testing.assert_allclose(actual, expected, atol=atol, rtol=rtol)
    ours = resolve_text(text)
    reference = run_reference(ours, from_arrays(ours, arrays), x)[-1]
    assert reference.shape == expected.shape, (
        f"reference shape {reference.shape} != Keras {expected.shape}"
    )
    np.testing.assert_allclose(
        reference, expected, atol=atol, rtol=rtol, err_msg="NumPy reference vs Keras"
    )
    return model, proto

"""The Keras oracle: build the same .conv text in Keras 3, give both the same weights, compare
convc's ONNX model in ONNX Runtime and convc's NumPy reference with Keras.

Each call statement of a .conv file is Keras constructor syntax, so the oracle evaluates it
against ``keras.layers`` itself: the expectation is Keras's own behaviour, never hand-written.
``keras.backend.clear_session()`` before each model makes Keras's automatic names start afresh,
as in a new process, so names can be compared too.
"""

from __future__ import annotations

import importlib
import os
import re
import textwrap
import types
from pathlib import Path

import numpy as np

os.environ.setdefault("KERAS_BACKEND", "torch")

import keras  # noqa: E402
import onnxruntime as ort  # noqa: E402

from convc.compiler import compile_text, resolve_text  # noqa: E402
from convc.layers import LAYER_TYPES  # noqa: E402
from convc.reference import model_outputs, run_reference  # noqa: E402
from convc.syntax import Call, Directive, parse  # noqa: E402
from convc.weights import from_arrays  # noqa: E402

ATOL = 1e-4
RTOL = 1e-4


def keras_class(layer_type) -> type:
    """The Keras class of a registered layer type (``LayerType.keras_class``): in keras.layers,
    or one that keras.applications defines and registers."""
    module, _, name = layer_type.keras_class.rpartition(".")
    return getattr(importlib.import_module(module), name)


_tf = types.SimpleNamespace(keras=keras)
_NAMESPACE = {
    **{
        name: keras_class(layer_type)
        for name, layer_type in LAYER_TYPES.items()
        if not layer_type.keras_class.startswith("keras.layers.")
    },
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


_TORCH_NAMES = re.compile(r"""(['"])(same|bicubic)_torch\1""")
"""convc's names for what Keras 3's torch backend computes where its other backends compute
something else (``padding="same_torch"``, ``interpolation="bicubic_torch"``)."""


def _as_keras(code: str) -> str:
    """``code`` with convc's torch-only names written as Keras's own, which this oracle's torch
    backend computes as convc's torch names mean."""
    if _TORCH_NAMES.search(code):
        assert keras.backend.backend() == "torch", f"{code!r} needs Keras on torch"
    return _TORCH_NAMES.sub(r"\1\2\1", code)


def keras_model(text: str) -> keras.Model:
    """The Keras model a .conv text describes, built by Keras from the same calls: a file in the
    functional form is run as the Python it is; a file of bare layer calls becomes a Sequential.
    convc's torch-only names (``same_torch``, ``bicubic_torch``) are Keras's own names to Keras
    on torch."""
    keras.backend.clear_session()
    keras.config.set_image_data_format("channels_last")
    program = parse(text)
    source = text if text.endswith("\n") else text + "\n"
    if not all(isinstance(s, Call | Directive) for s in program.statements):
        return _functional(program, source)  # bindings, loops, functions: a Python program
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
            items.append(eval(_as_keras(code), dict(_NAMESPACE)))
        return keras.Sequential(items)
    finally:
        keras.config.set_image_data_format("channels_last")


def _functional(program, source: str) -> keras.Model:
    """Run a functional .conv text as Python; the model is what keras.Model(...) built."""
    lines = []
    for statement in program.statements:
        if isinstance(statement, Directive):
            if statement.name == "data_format":
                lines.append(f"keras.config.set_image_data_format({statement.value!r})")
            continue
        lines.append(_as_keras(source[statement.span.start : statement.span.end]))
    namespace = dict(_NAMESPACE)
    try:
        exec("\n".join(lines), namespace)
    finally:
        keras.config.set_image_data_format("channels_last")
    models = [value for value in namespace.values() if isinstance(value, keras.Model)]
    assert models, "the functional text builds no keras.Model"
    return models[-1]


def keras_from_code(code: str) -> keras.Model:
    """The model that Keras code (indented as in a test's table) binds to ``model``, built in a
    fresh Keras session."""
    keras.backend.clear_session()
    namespace = {"keras": keras, "layers": keras.layers}
    exec(textwrap.dedent(code), namespace)
    return namespace["model"]


def save_model_files(model: keras.Model, folder: Path, stem: str) -> dict[str, Path]:
    """``model`` saved as Keras saves it: ``.keras``, ``.h5``, its JSON architecture, and its
    ``save_weights`` file (``weights``); the paths by format."""
    paths = {fmt: folder / f"{stem}.{fmt}" for fmt in ("keras", "h5", "json")}
    paths["weights"] = folder / f"{stem}.weights.h5"
    model.save(paths["keras"])
    model.save(paths["h5"])
    paths["json"].write_text(model.to_json())
    model.save_weights(paths["weights"])
    return paths


def random_weights(model: keras.Model, seed: int = 0) -> dict[str, np.ndarray]:
    """Random values for every variable (biases too), set into the Keras model and returned as
    ``{"layer/variable": array}``; scaled by fan-in so outputs stay O(1); variances |x| + 0.5."""
    rng = np.random.default_rng(seed)
    arrays = {}
    for layer in model.layers:
        values = []
        for variable in layer.weights:
            shape = tuple(variable.shape)
            fan_in = max(1, int(np.prod(shape[:-1]))) if len(shape) > 1 else 1
            value = (rng.standard_normal(shape) / np.sqrt(fan_in)).astype(np.float32)
            if variable.name.endswith("variance"):  # a variance is positive
                value = np.abs(value) + np.float32(0.5)
            values.append(value)
            arrays[f"{layer.name}/{variable.name}"] = value
        layer.set_weights(values)
    return arrays


def keras_outputs(model: keras.Model, xs: list[np.ndarray]) -> list[np.ndarray]:
    """Every output of the Keras model, in ``model.outputs`` order."""
    result = model(xs if len(xs) > 1 else xs[0], training=False)
    if isinstance(result, dict):
        result = [result[key] for key in sorted(result)]
    if not isinstance(result, list | tuple):
        result = [result]
    return [keras.ops.convert_to_numpy(r) for r in result]


def keras_output(model: keras.Model, x: np.ndarray) -> np.ndarray:
    return keras_outputs(model, [x])[0]


def onnx_outputs(proto, xs: list[np.ndarray]) -> list[np.ndarray]:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(
        proto.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
    feeds = {spec.name: x for spec, x in zip(session.get_inputs(), xs, strict=True)}
    return session.run(None, feeds)


def onnx_output(proto, x: np.ndarray) -> np.ndarray:
    (output,) = onnx_outputs(proto, [x])
    return output


def inputs_for(model: keras.Model, batch: int = 2, seed: int = 1) -> list[np.ndarray]:
    """One standard-normal array per model input (input i drawn from seed + i)."""
    return [
        np.random.default_rng(seed + i)
        .standard_normal(tuple(batch if d is None else d for d in tensor.shape))
        .astype(np.float32)
        for i, tensor in enumerate(model.inputs)
    ]


def input_for(model: keras.Model, batch: int = 2, seed: int = 1) -> np.ndarray:
    return inputs_for(model, batch, seed)[0]


def convc_names(ours, model: keras.Model, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``arrays`` with each layer's weights under convc's names where Keras's differ, matched by
    position as Keras's own files store them: Keras leaves some weights unnamed (LayerScale's
    ``gamma`` is ``variable``)."""
    renamed = dict(arrays)
    for layer in ours.layers:
        keras_names = [weight.name for weight in model.get_layer(layer.name).weights]
        names = [variable.name for variable in layer.variables]
        if set(keras_names) != set(names) and len(keras_names) == len(names):
            for keras_name, name in zip(keras_names, names, strict=True):
                renamed[f"{layer.name}/{name}"] = renamed.pop(f"{layer.name}/{keras_name}")
    return renamed


def assert_matches_keras(
    text: str, *, batch: int = 2, atol: float = ATOL, rtol: float = RTOL, opset=None
):
    """Compile ``text`` with convc and build it in Keras; outputs and layer names must agree."""
    model = keras_model(text)
    arrays = random_weights(model)
    xs = inputs_for(model, batch)
    expected = keras_outputs(model, xs)
    options = {} if opset is None else {"opset": opset}
    ours = resolve_text(text)
    arrays = convc_names(ours, model, arrays)
    proto = compile_text(text, arrays, **options)
    actual = onnx_outputs(proto, xs)
    assert [i.name for i in ours.inputs] == [t.name.split(":")[0] for t in proto.graph.input]
    assert len(actual) == len(expected), f"{len(actual)} outputs, Keras {len(expected)}"
    by_name = {i.name: x for i, x in zip(ours.inputs, xs, strict=True)}
    reference = model_outputs(ours, run_reference(ours, from_arrays(ours, arrays), by_name))
    for name, mine, theirs, ref in zip(
        [t.name for t in ours.outputs], actual, expected, reference.values(), strict=True
    ):
        assert mine.shape == theirs.shape, f"{name}: shape {mine.shape} != Keras {theirs.shape}"
        np.testing.assert_allclose(mine, theirs, atol=atol, rtol=rtol, err_msg=f"ONNX {name}")
        assert ref.shape == theirs.shape, f"{name}: reference {ref.shape} != Keras {theirs.shape}"
        np.testing.assert_allclose(
            ref, theirs, atol=atol, rtol=rtol, err_msg=f"NumPy reference vs Keras, {name}"
        )
    return model, proto


def keras_error(text: str) -> Exception | None:
    """The exception Keras raises building ``text`` or running it on a batch, or None. A caller
    that takes it for "Keras rejects this" checks its class and message (``assert_keras_error``),
    so that an oracle bug (a NameError, an AttributeError) is not taken for a rejection."""
    try:
        model = keras_model(text)
        keras_output(model, input_for(model))
    except Exception as error:  # noqa: BLE001 - returned, and checked by the caller
        return error
    return None


def keras_message(error: BaseException) -> str:
    """Keras's message on one line, without the frame Keras wraps a call-time error in."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", " ".join(str(error).split()))
    text = re.sub(r"^Exception encountered when calling \S+\.call\(\)\. ", "", text)
    return text.split(" Arguments received by ")[0]


def assert_keras_error(error: BaseException | None, expected: tuple[str, str] | None) -> None:
    """``error`` is Keras's rejection ``expected`` = (exception class name, message fragment)."""
    found = None if error is None else (type(error).__name__, keras_message(error))
    assert expected is not None, f"Keras's error is not recorded for this row: {found}"
    assert found is not None, f"Keras accepts this; it was recorded to raise {expected}"
    assert found[0] == expected[0] and expected[1] in found[1], (
        f"Keras raised {found[0]}: {found[1]!r}, expected {expected[0]} with {expected[1]!r}"
    )

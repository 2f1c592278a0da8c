"""Model files in the forms older Keras generations wrote (#24): a config as Keras 2 or tf.keras
stored it, with the arrays Keras 3 saved, must build and compute what Keras computes.

Keras 3's legacy ``.h5`` keeps the weights where Keras 2 kept them; each case rewrites only its
``model_config`` into the older form: a Sequential's plain list of layers (Keras up to 2.2.2),
BatchNormalization's ``axis=[3]`` (tf.keras 2.x), ``groups=1`` on transposed, depthwise and
separable convolutions (tf.keras 2.5+) and a SeparableConv's inherited ``kernel_*`` arguments.
"""

from __future__ import annotations

import json
import os
import shutil

import h5py
import numpy as np
import pytest

from oracle import ATOL, RTOL, inputs_for, keras_outputs, random_weights

os.environ.setdefault("KERAS_BACKEND", "torch")
import keras  # noqa: E402
from keras import layers  # noqa: E402

from convc.cli import main  # noqa: E402
from convc.diagnostics import ConvcError  # noqa: E402
from convc.importer import import_file  # noqa: E402
from convc.importer.generations import layer_config  # noqa: E402

from convc.compiler import compile_model  # noqa: E402  isort: skip

from oracle import onnx_outputs  # noqa: E402  isort: skip


def _model() -> keras.Model:
    keras.backend.clear_session()
    model = keras.Sequential(
        [
            keras.Input((8, 8, 3)),
            layers.Conv2D(6, 3, padding="same", name="conv"),
            layers.BatchNormalization(name="bn"),
            layers.DepthwiseConv2D(3, name="depthwise"),
            layers.SeparableConv2D(4, 3, padding="same", name="separable"),
            layers.Conv2DTranspose(3, 3, strides=2, name="transpose"),
            layers.GlobalAveragePooling2D(name="pool"),
            layers.Activation("softmax", name="softmax"),
        ]
    )
    random_weights(model)
    return model


def _tf_keras_2(config: dict) -> None:
    for layer in config["config"]["layers"]:
        inner = layer["config"]
        if layer["class_name"] == "BatchNormalization":
            inner["axis"] = [3]
        if layer["class_name"] in ("DepthwiseConv2D", "SeparableConv2D", "Conv2DTranspose"):
            inner["groups"] = 1
        if layer["class_name"] == "SeparableConv2D":
            inner["kernel_initializer"] = {"class_name": "GlorotUniform", "config": {"seed": None}}
            inner["kernel_regularizer"] = None
            inner["kernel_constraint"] = None


def _keras_2_2(config: dict) -> None:
    config["config"] = config["config"]["layers"]


FORMS = {"tf_keras-2": _tf_keras_2, "keras-2.2-list": _keras_2_2}


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    model = _model()
    path = tmp_path_factory.mktemp("generations") / "m.h5"
    model.save(path)
    xs = inputs_for(model, batch=2)
    return path, xs, keras_outputs(model, xs)


@pytest.mark.parametrize("form", sorted(FORMS))
def test_an_older_generations_config_builds_and_matches_keras(saved, form, tmp_path):
    original, xs, expected = saved
    path = tmp_path / "m.h5"
    shutil.copy(original, path)
    with h5py.File(path, "r+") as handle:
        config = json.loads(handle.attrs["model_config"])
        FORMS[form](config)
        handle.attrs["model_config"] = json.dumps(config)
    imported = import_file(path)
    actual = onnx_outputs(compile_model(imported.model, imported.weights), xs)
    for mine, theirs in zip(actual, expected, strict=True):
        np.testing.assert_allclose(mine, theirs, atol=ATOL, rtol=RTOL)
    assert main(["build", str(path), "-o", str(tmp_path / "m.onnx")]) == 0


@pytest.mark.parametrize(
    ("class_name", "config", "expected"),
    [
        ("BatchNormalization", {"axis": [3]}, {"axis": 3}),
        ("BatchNormalization", {"axis": [1, 3]}, {"axis": [1, 3]}),  # left for a refusal
        ("LayerNormalization", {"axis": [3]}, {"axis": [3]}),  # Keras 3 takes the list
        ("Conv2DTranspose", {"groups": 1}, {}),
        ("Conv2DTranspose", {"groups": 2}, {"groups": 2}),  # means something: refused later
        ("Conv3DTranspose", {"groups": 1}, {}),
        ("DepthwiseConv1D", {"groups": 1}, {}),
        ("SeparableConv1D", {"groups": 1, "kernel_initializer": "x"}, {}),
        (  # tf.keras 1.x: an init_ops initializer with its dtype, on the unused kernel too
            "SeparableConv2D",
            {
                "kernel_initializer": {"class_name": "Zeros", "config": {"dtype": "float32"}},
                "depthwise_initializer": {"class_name": "Ones", "config": {"dtype": "float32"}},
            },
            {"depthwise_initializer": {"class_name": "Ones", "config": {}}},
        ),
        (
            "Conv2D",
            {"kernel_initializer": {"class_name": "Zeros", "config": {"dtype": "float32"}}},
            {"kernel_initializer": {"class_name": "Zeros", "config": {}}},
        ),
        (
            "Conv2D",
            {"groups": 1, "kernel_initializer": "x"},
            {"groups": 1, "kernel_initializer": "x"},
        ),
    ],
)
def test_only_forms_that_mean_the_same_are_translated(class_name, config, expected):
    assert layer_config(class_name, config) == expected


def test_a_transposed_convolution_with_groups_is_still_refused(saved, tmp_path):
    original, _, _ = saved
    path = tmp_path / "m.h5"
    shutil.copy(original, path)
    with h5py.File(path, "r+") as handle:
        config = json.loads(handle.attrs["model_config"])
        for layer in config["config"]["layers"]:
            if layer["class_name"] == "Conv2DTranspose":
                layer["config"]["groups"] = 3
        handle.attrs["model_config"] = json.dumps(config)
    assert main(["build", str(path), "-o", str(tmp_path / "m.onnx")]) == 1


def test_weights_under_a_scope_other_than_the_layer_name_load_by_order(saved, tmp_path):
    """Keras 2.0 stored layer conv's arrays as conv/conv_1/kernel:0 (its variable scope); Keras
    reads a layer's group in the order of its weight_names, whatever the scope."""
    original, xs, expected = saved
    path = tmp_path / "m.h5"
    shutil.copy(original, path)
    with h5py.File(path, "r+") as handle:
        for layer in ("conv", "separable"):
            group = handle["model_weights"][layer]
            renamed = []
            for name in group.attrs["weight_names"]:
                name = name.decode() if isinstance(name, bytes) else str(name)
                scoped = f"{layer}_1/{name.rsplit('/', 1)[-1]}:0"
                group.move(name, scoped)
                renamed.append(scoped.encode())
            group.attrs["weight_names"] = renamed
    imported = import_file(path)
    actual = onnx_outputs(compile_model(imported.model, imported.weights), xs)
    for mine, theirs in zip(actual, expected, strict=True):
        np.testing.assert_allclose(mine, theirs, atol=ATOL, rtol=RTOL)


KERAS1_SEQUENTIAL = {
    "class_name": "Sequential",
    "config": [
        {
            "class_name": "Convolution2D",
            "config": {
                "name": "convolution2d_1",
                "nb_filter": 8,
                "nb_row": 3,
                "nb_col": 3,
                "border_mode": "same",
                "subsample": [1, 1],
                "dim_ordering": "th",
                "init": "glorot_uniform",
                "batch_input_shape": [None, 1, 28, 28],
            },
        },
        {"class_name": "Flatten", "config": {"name": "flatten_1"}},
    ],
    "keras_version": "1.2.2",
}


def test_a_keras_1_file_is_read(tmp_path):
    """Keras 1 files used to give one 'unknown argument' line per argument and layer (#24); they
    are translated now (tests/test_keras1.py has the cases)."""
    path = tmp_path / "model.json"
    path.write_text(json.dumps(KERAS1_SEQUENTIAL))
    assert main(["build", str(path), "-o", str(tmp_path / "m.onnx")]) == 0
    imported = import_file(path)
    assert 'Conv2D(8, 3, padding="same", data_format="channels_first"' in imported.text


def test_keras_1_evidence_is_the_version_or_its_argument_names():
    from convc.importer.generations import keras1_evidence

    keras3 = {
        "class_name": "Sequential",
        "config": {"layers": [{"class_name": "Embedding", "config": {"output_dim": 4}}]},
    }
    assert keras1_evidence(keras3, "3.15.1") is None
    assert keras1_evidence(keras3, "1.2.2") == "keras_version '1.2.2'"


# --- Keras 2's definitions where Keras 3 changed them -----------------------------------------
#
# A file says its generation (keras_version; Keras 2 also its backend). Keras 3's legacy .h5
# writer makes the files here; each case rewrites its root attributes to what Keras 2 or tf.keras
# wrote, so the arrays are Keras 3's and Keras 3 computes the parts the generations agree on.


def _saved_h5(model: keras.Model, path, version: str, backend: str | None = None):
    model.save(path)
    with h5py.File(path, "r+") as handle:
        handle.attrs["keras_version"] = version
        if backend is not None:
            handle.attrs["backend"] = backend
    return path


def _hard_sigmoid_model() -> keras.Model:
    keras.backend.clear_session()
    model = keras.Sequential(
        [
            keras.Input((6, 5, 3)),
            layers.Conv2D(4, 3, activation="hard_sigmoid", name="conv"),
            layers.Activation("hard_sigmoid", name="act"),
        ]
    )
    random_weights(model)
    model.layers[0].set_weights([w * 4 for w in model.layers[0].get_weights()])  # reach the clip
    return model


def _linear_part(model: keras.Model, x: np.ndarray) -> np.ndarray:
    """The convolution without its activation, as Keras 3 computes it."""
    linear = keras.Sequential([keras.Input((6, 5, 3)), layers.Conv2D(4, 3)])
    linear.layers[0].set_weights(model.layers[0].get_weights())
    return keras.ops.convert_to_numpy(linear(x))


def hard_sigmoid_keras2(x):
    return np.clip(0.2 * x + 0.5, 0.0, 1.0)  # Keras 1/2 and tf.keras backend.hard_sigmoid


def hard_sigmoid_keras3(x):
    return np.clip(x / 6.0 + 0.5, 0.0, 1.0)  # Keras 3: relu6(x + 3) / 6


@pytest.mark.parametrize(
    ("version", "definition"),
    [
        ("2.2.4", hard_sigmoid_keras2),  # multi-backend Keras 2
        ("2.2.4-tf", hard_sigmoid_keras2),  # tf.keras in TensorFlow 1.x / 2.0
        ("2.15.0", hard_sigmoid_keras2),  # tf.keras 2.15 / tf_keras
        ("3.15.1", hard_sigmoid_keras3),
    ],
)
def test_hard_sigmoid_is_the_files_generations(version, definition, tmp_path):
    """Keras 3 loading a Keras 2 file silently changes its hard_sigmoid (slope 1/6, not 0.2):
    convc builds the file's, applied twice here so that both definitions show."""
    model = _hard_sigmoid_model()
    path = _saved_h5(model, tmp_path / "m.h5", version)
    x = np.random.default_rng(3).standard_normal((2, 6, 5, 3)).astype(np.float32) * 2
    linear = _linear_part(model, x)
    assert np.abs(linear).max() > 4  # both definitions clip somewhere
    expected = definition(definition(linear))
    imported = import_file(path)
    expected_name = "hard_sigmoid" if definition is hard_sigmoid_keras3 else "hard_sigmoid_keras2"
    assert imported.text.count(f'"{expected_name}"') == 2
    (actual,) = onnx_outputs(compile_model(imported.model, imported.weights), [x])
    np.testing.assert_allclose(actual, expected, atol=ATOL, rtol=RTOL)
    if definition is hard_sigmoid_keras3:  # Keras 3 computes its own
        np.testing.assert_allclose(actual, keras_outputs(model, [x])[0], atol=ATOL, rtol=RTOL)
    else:
        assert np.abs(actual - keras_outputs(model, [x])[0]).max() > 0.02
    assert main(["check", str(path)]) == 0


def test_hard_sigmoid_keras2_is_one_definition_in_parse_lowering_and_reference():
    """The three registries agree on the name, and on Keras 2's formula (ONNX HardSigmoid's
    default slope 0.2), over the whole range including both clips."""
    from convc.layers.activations import KERAS2_DEFINITIONS, parse_activation
    from convc.lower.activations import _ELEMENTWISE
    from convc.reference import ACTIVATIONS
    from convc.syntax import Literal

    for name in KERAS2_DEFINITIONS:
        assert parse_activation(Literal(name, None)) == name
        assert name in _ELEMENTWISE and name in ACTIVATIONS
    x = np.linspace(-6, 6, 241, dtype=np.float32).reshape(1, 241, 1)
    text = "Input(shape=(241, 1))\nActivation('hard_sigmoid_keras2')\n"
    from convc.api import build_text

    proto = build_text(text)
    (actual,) = onnx_outputs(proto, [x])
    np.testing.assert_allclose(actual, hard_sigmoid_keras2(x), atol=1e-6)
    np.testing.assert_allclose(ACTIVATIONS["hard_sigmoid_keras2"](x), hard_sigmoid_keras2(x))


def _conv_model(padding: str = "valid", kernel=3, transpose=False) -> keras.Model:
    keras.backend.clear_session()
    conv = layers.Conv2DTranspose if transpose else layers.Conv2D
    model = keras.Sequential(
        [keras.Input((6, 7, 2)), conv(3, kernel, padding=padding, name="conv")]
    )
    random_weights(model)
    return model


@pytest.mark.parametrize("transpose", [False, True], ids=["conv2d", "conv2d_transpose"])
def test_a_theano_backend_file_convolves_with_flipped_kernels(transpose, tmp_path):
    """Keras 2 records its backend; Theano convolved (Keras 2's own loader flipped the kernels
    of a Theano file for TensorFlow, convert_kernel)."""
    model = _conv_model(transpose=transpose)
    path = _saved_h5(model, tmp_path / "m.h5", "2.2.4", backend="theano")
    x = np.random.default_rng(2).standard_normal((2, 6, 7, 2)).astype(np.float32)
    kernel, bias = model.layers[0].get_weights()
    flipped = _conv_model(transpose=transpose)
    flipped.layers[0].set_weights([kernel[::-1, ::-1], bias])
    imported = import_file(path)
    (actual,) = onnx_outputs(compile_model(imported.model, imported.weights), [x])
    np.testing.assert_allclose(actual, keras_outputs(flipped, [x])[0], atol=ATOL, rtol=RTOL)
    assert np.abs(actual - keras_outputs(model, [x])[0]).max() > 1e-2
    tensorflow = _saved_h5(model, tmp_path / "tf.h5", "2.2.4", backend="tensorflow")
    imported = import_file(tensorflow)
    (actual,) = onnx_outputs(compile_model(imported.model, imported.weights), [x])
    np.testing.assert_allclose(actual, keras_outputs(model, [x])[0], atol=ATOL, rtol=RTOL)


@pytest.mark.parametrize(
    ("model", "version", "backend", "message"),
    [
        (lambda: _conv_model("same", kernel=2), "2.2.4", "theano",
         "layer 'conv' (Conv2D) of this Theano-backend file (Keras 2 / tf.keras (keras_version "
         "'2.2.4')): padding='same' with kernel_size=[2, 2] and strides=[1, 1]: Theano pads "
         "k // 2 on both sides"),
        (lambda: keras.Sequential([keras.Input((6, 6, 2)), layers.AveragePooling2D(2, padding="same", name="p")]),
         "2.2.4", "theano", "layer 'p' (AveragePooling2D) of this Theano-backend file"),
    ],
    ids=["theano-same-even", "theano-same-pool"],
)  # fmt: skip
def test_what_a_keras2_file_computed_otherwise_is_refused_by_name(
    model, version, backend, message, tmp_path
):
    keras.backend.clear_session()
    path = _saved_h5(model(), tmp_path / "m.h5", version, backend)
    with pytest.raises(ConvcError) as caught:
        import_file(path)
    assert message in caught.value.message
    assert main(["build", str(path), "-o", str(tmp_path / "m.onnx")]) == 1


@pytest.mark.parametrize(
    ("layer", "version"),
    [
        (lambda: layers.AveragePooling2D(3, 1, padding="same", name="p"), "2.15.0"),  # equal pads
        (lambda: layers.UpSampling2D(2, interpolation="bilinear", name="u"), "2.15.0"),
    ],
    ids=["avgpool-same-equal-pads", "bilinear-tf_keras2.15"],
)
def test_where_the_generations_agree_a_keras2_file_matches_keras3(layer, version, tmp_path):
    keras.backend.clear_session()
    model = keras.Sequential([keras.Input((6, 7, 2)), layer()])
    path = _saved_h5(model, tmp_path / "m.h5", version)
    x = np.random.default_rng(5).standard_normal((2, 6, 7, 2)).astype(np.float32)
    imported = import_file(path)
    (actual,) = onnx_outputs(compile_model(imported.model, imported.weights), [x])
    np.testing.assert_allclose(actual, keras_outputs(model, [x])[0], atol=ATOL, rtol=RTOL)


def tf1_resize_bilinear(x: np.ndarray, factors: tuple[int, int]) -> np.ndarray:
    """TensorFlow 1's tf.image.resize_bilinear (align_corners=False, no half-pixel centres), on
    NHWC, pixel by pixel: output (i, j) reads the input at (i / fh, j / fw), the next row and
    column clamped to the edge."""
    n, h, w, c = x.shape
    fh, fw = factors
    y = np.zeros((n, h * fh, w * fw, c))
    for i in range(h * fh):
        top = int(np.floor(i / fh))
        bottom, dy = min(top + 1, h - 1), i / fh - top
        for j in range(w * fw):
            left = int(np.floor(j / fw))
            right, dx = min(left + 1, w - 1), j / fw - left
            upper = x[:, top, left] * (1 - dx) + x[:, top, right] * dx
            lower = x[:, bottom, left] * (1 - dx) + x[:, bottom, right] * dx
            y[:, i, j] = upper * (1 - dy) + lower * dy
    return y


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_keras2_2_bilinear_upsampling_is_tensorflow_1s(data_format, tmp_path):
    """Multi-backend Keras 2.2.3-2.3.1 resized with TensorFlow 1's resize_bilinear; Keras 3 (and
    tf.keras 2.4+) with half-pixel centres: convc builds the file's (bilinear_keras2)."""
    keras.backend.clear_session()
    shape = (4, 5, 3) if data_format == "channels_last" else (3, 4, 5)
    model = keras.Sequential(
        [
            keras.Input(shape),
            layers.UpSampling2D((2, 3), data_format=data_format, interpolation="bilinear"),
            layers.Conv2D(2, 1, data_format=data_format, name="mix"),  # channels mixed after
        ]
    )
    random_weights(model)
    x = np.random.default_rng(4).standard_normal((2, *shape)).astype(np.float32)
    kernel, bias = model.layers[1].get_weights()
    last = x if data_format == "channels_last" else x.transpose(0, 2, 3, 1)
    expected = tf1_resize_bilinear(last.astype(np.float64), (2, 3)) @ kernel[0, 0] + bias
    if data_format == "channels_first":
        expected = expected.transpose(0, 3, 1, 2)
    imported = import_file(_saved_h5(model, tmp_path / "m.h5", "2.2.4"))
    assert 'interpolation="bilinear_keras2"' in imported.text
    (actual,) = onnx_outputs(compile_model(imported.model, imported.weights), [x])
    np.testing.assert_allclose(actual, expected, atol=ATOL, rtol=RTOL)
    assert np.abs(actual - keras_outputs(model, [x])[0]).max() > 0.05  # Keras 3 differs
    assert main(["check", str(tmp_path / "m.h5")]) == 0

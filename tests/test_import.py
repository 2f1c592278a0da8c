"""Importing Keras model files: every case is a Keras model that Keras builds, saves as .keras
and .h5 (and as JSON), and convc imports, builds and runs; the outputs must match Keras's.

The imported `.conv` text must build to the same ONNX bytes as the file itself (graph and
weights), and `convc import` + `convc build --weights` must give the same model as
`convc build MODEL.keras`.
"""

from __future__ import annotations

import json
import os

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from oracle import (
    ATOL,
    RTOL,
    inputs_for,
    keras_from_code,
    keras_outputs,
    onnx_outputs,
    random_weights,
    save_model_files,
)

os.environ.setdefault("KERAS_BACKEND", "torch")
import keras  # noqa: E402
from keras import layers  # noqa: E402

import convc  # noqa: E402
from convc.cli import main  # noqa: E402
from convc.compiler import compile_model, compile_text  # noqa: E402
from convc.diagnostics import ConvcError  # noqa: E402
from convc.importer import import_file  # noqa: E402
from convc.reference import model_outputs, run_reference  # noqa: E402
from convc.weights import from_arrays  # noqa: E402

# Each case: Keras code that binds `model`. Written as a user would write it.
CASES = {
    "sequential-chain": """
        model = keras.Sequential([
            keras.Input((16, 16, 3)),
            layers.Conv2D(8, 3, strides=2, padding="same", activation="relu"),
            layers.BatchNormalization(),
            layers.MaxPooling2D(),
            layers.Flatten(),
            layers.Dropout(0.5),
            layers.Dense(5, activation="softmax"),
        ], name="chain")
    """,
    "functional-resnet-block": """
        x = keras.Input((12, 12, 4), name="image")
        y = layers.Conv2D(4, 3, padding="same", use_bias=False)(x)
        y = layers.BatchNormalization(epsilon=1.001e-5)(y)
        y = layers.Activation("relu")(y)
        y = layers.Add()([x, y])
        y = layers.ZeroPadding2D(((0, 1), (0, 1)))(y)
        y = layers.AveragePooling2D(3, strides=2)(y)
        y = layers.GlobalAveragePooling2D()(y)
        model = keras.Model(x, layers.Dense(3)(y))
    """,
    "nested-sequential-block": """
        x = keras.Input((8, 8, 6))
        down = keras.Sequential(
            [layers.LayerNormalization(epsilon=1e-6), layers.Conv2D(12, 2, strides=2)],
            name="downsample",
        )
        y = down(x)
        z = layers.DepthwiseConv2D(3, padding="same")(y)
        z = layers.Dense(12, activation="gelu")(z)
        model = keras.Model(x, layers.Add()([y, z]))
    """,
    "shared-functional-backbone": """
        i = keras.Input((10, 10, 3))
        backbone = keras.Model(i, layers.Conv2D(4, 3, activation="relu")(i), name="backbone")
        a = keras.Input((10, 10, 3), name="left")
        b = keras.Input((10, 10, 3), name="right")
        head = layers.Conv2D(2, 1, name="head")
        model = keras.Model([a, b], layers.Subtract()([head(backbone(a)), head(backbone(b))]))
    """,
    "backbone-and-augmentation-in-classifier": """
        i = keras.Input((16, 16, 3))
        f = layers.Conv2D(8, 3, strides=2, padding="same", use_bias=False)(i)
        f = layers.BatchNormalization()(f)
        backbone = keras.Model(i, layers.ReLU(6.0)(f), name="backbone")
        augment = keras.Sequential(
            [layers.RandomFlip("horizontal"), layers.RandomRotation(0.1)], name="augment"
        )
        x = keras.Input((16, 16, 3), name="image")
        y = backbone(augment(x))
        y = layers.GlobalAveragePooling2D()(y)
        model = keras.Model(x, layers.Dense(4, activation="softmax")(layers.Dropout(0.2)(y)))
    """,
    "two-outputs-dict": """
        x = keras.Input((20, 3))
        y = layers.Conv1D(8, 3, padding="causal", dilation_rate=2, activation="tanh")(x)
        z = layers.SeparableConv1D(4, 3, padding="same", depth_multiplier=2)(y)
        g = layers.GlobalMaxPooling1D(keepdims=True)(z)
        model = keras.Model(x, {"seq": z, "pooled": layers.Multiply()([z, g])})
    """,
    "operations-on-tensors": """
        x = keras.Input((6, 6, 4))
        y = layers.Conv2D(4, 1)(x)
        h = layers.ReLU(6.0)(y + 3.0) * (1.0 / 6.0)
        z = y * h - x + y
        model = keras.Model(x, [layers.Multiply()([y, h]), 2.5 - y, y - 0.5, z])
    """,
    "channels-first-and-concat": """
        x = keras.Input((3, 9, 9))
        a = layers.Conv2D(4, 3, padding="same", data_format="channels_first")(x)
        b = layers.MaxPooling2D(3, strides=1, padding="same", data_format="channels_first")(x)
        c = layers.Concatenate(axis=1)([a, b])
        c = layers.UpSampling2D(2, data_format="channels_first", interpolation="bilinear")(c)
        model = keras.Model(x, layers.Conv2DTranspose(2, 3, strides=2, data_format="channels_first")(c))
    """,
    "arguments-that-are-objects": """
        x = keras.Input((8, 8, 2))
        y = layers.Conv2D(
            3, 3, kernel_initializer=keras.initializers.HeNormal(seed=3),
            bias_initializer=keras.initializers.Constant(0.1),
            kernel_regularizer=keras.regularizers.L2(1e-4),
            kernel_constraint=keras.constraints.MaxNorm(2.0),
        )(x)
        y = layers.Rescaling(1.0 / 127.5, offset=-1)(y)
        y = layers.Normalization(mean=[0.1, 0.2, 0.3], variance=[1.0, 2.0, 0.5])(y)
        y = layers.PReLU(shared_axes=[1, 2])(y)
        model = keras.Model(x, layers.Reshape((6, 6 * 3))(y))
    """,
    "applications-custom-layers": """
        from keras.src.applications.convnext import LayerScale
        from keras.src.applications.inception_resnet_v2 import CustomScaleLayer
        x = keras.Input((5, 5, 8))
        r = layers.Conv2D(8, 1)(x)
        y = CustomScaleLayer(0.17)([x, r])
        model = keras.Model(x, LayerScale(0.5, 8)(y))
    """,
}


def _compare(proto, model: keras.Model, expected_model: keras.Model, arrays=None) -> int:
    xs = inputs_for(expected_model, batch=2)
    expected = keras_outputs(expected_model, xs)
    actual = onnx_outputs(proto, xs)
    assert len(actual) == len(expected)
    for mine, theirs in zip(actual, expected, strict=True):
        assert mine.shape == theirs.shape
        np.testing.assert_allclose(mine, theirs, atol=ATOL, rtol=RTOL)
    return len(actual)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """Each case built in Keras with random weights and saved as .keras, .h5 and .json."""
    root = tmp_path_factory.mktemp("models")
    cache = {}

    def get(case: str):
        if case not in cache:
            model = keras_from_code(CASES[case])
            random_weights(model)
            cache[case] = (model, save_model_files(model, root, case))
        return cache[case]

    return get


@pytest.mark.parametrize("fmt", ["keras", "h5"])
@pytest.mark.parametrize("case", list(CASES))
def test_imported_model_matches_keras(case, fmt, saved):
    model, paths = saved(case)
    imported = import_file(paths[fmt])
    assert imported.weights is not None
    proto = compile_model(imported.model, imported.weights)
    assert _compare(proto, imported.model, model) >= 1
    # the written-out text is the same model: same ONNX bytes
    again = compile_text(imported.text, imported.weights)
    assert again.SerializeToString() == proto.SerializeToString()
    # and the NumPy reference agrees with Keras too
    xs = inputs_for(model, batch=2)
    by_name = {i.name: x for i, x in zip(imported.model.inputs, xs, strict=True)}
    weights = from_arrays(imported.model, imported.weights)
    reference = model_outputs(
        imported.model, run_reference(imported.model, weights, by_name)
    ).values()
    for ref, theirs in zip(reference, keras_outputs(model, xs), strict=True):
        np.testing.assert_allclose(ref, theirs, atol=ATOL, rtol=RTOL)


@pytest.mark.parametrize("case", list(CASES))
def test_json_is_the_same_architecture(case, saved):
    """An architecture-only JSON imports to the same graph: with the .keras file's weights it
    builds the same bytes."""
    _, paths = saved(case)
    from_keras = import_file(paths["keras"])
    from_json = import_file(paths["json"])
    assert from_json.weights is None
    assert from_json.text.splitlines()[1:] == from_keras.text.splitlines()[1:]
    assert (
        compile_model(from_json.model, from_keras.weights).SerializeToString()
        == compile_model(from_keras.model, from_keras.weights).SerializeToString()
    )


def _keras2_save_weights(full_model_h5, path) -> None:
    """The weights file Keras 2's ``model.save_weights("w.h5")`` writes: a full-model .h5's
    ``model_weights`` group (layer_names, each layer's weight_names) as the file's root."""
    import h5py

    with h5py.File(full_model_h5, "r") as source, h5py.File(path, "w") as target:
        group = source["model_weights"]
        for name, value in group.attrs.items():
            target.attrs[name] = value
        for key in group:
            source.copy(group[key], target, name=key)


@pytest.mark.parametrize("case", ["sequential-chain", "functional-resnet-block"])
def test_json_with_keras2_save_weights_matches_keras(case, saved, tmp_path):
    """An architecture JSON beside Keras 1 or 2's save_weights HDF5 (``--weights``), as
    Keras 2's model_from_json + load_weights read them; seen failing before the importer read
    such a file ("not a Keras 3 .weights.h5 file")."""
    model, paths = saved(case)
    weights = tmp_path / "w.h5"
    _keras2_save_weights(paths["h5"], weights)
    built = convc.build(paths["json"], weights=weights)
    assert _compare(built, None, model) >= 1
    output = tmp_path / "m.onnx"
    assert main(["build", str(paths["json"]), "--weights", str(weights), "-o", str(output)]) == 0
    assert onnx.load(output).SerializeToString() == built.SerializeToString()


def test_json_written_as_a_json_string_is_the_same_architecture(saved, tmp_path):
    """``json.dump(model.to_json(), f)`` writes the JSON inside a string: read once more."""
    _, paths = saved("functional-resnet-block")
    doubled = tmp_path / "m.json"
    doubled.write_text(json.dumps(paths["json"].read_text()))
    assert (
        import_file(doubled).text.splitlines()[1:]
        == (import_file(paths["json"]).text.splitlines()[1:])
    )
    tripled = tmp_path / "m3.json"
    tripled.write_text(json.dumps(doubled.read_text()))
    with pytest.raises(ConvcError, match="not a serialized Keras model"):
        import_file(tripled)


def test_cli_import_then_build_equals_direct_build(saved, tmp_path, capsys):
    _, paths = saved("functional-resnet-block")
    direct, conv, npz, rebuilt = (tmp_path / n for n in ("d.onnx", "m.conv", "m.npz", "r.onnx"))
    assert main(["build", str(paths["keras"]), "-o", str(direct)]) == 0
    assert main(["import", str(paths["keras"]), "-o", str(conv), "--weights-out", str(npz)]) == 0
    assert main(["build", str(conv), "--weights", str(npz), "-o", str(rebuilt)]) == 0
    assert direct.read_bytes() == rebuilt.read_bytes()
    assert "layers.Add(" in conv.read_text()
    assert main(["check", str(paths["h5"])]) == 0
    assert "agree" in capsys.readouterr().out


def test_imported_text_reads_like_hand_written_keras(saved):
    _, paths = saved("functional-resnet-block")
    text = import_file(paths["keras"]).text
    assert 'layers.Conv2D(4, 3, padding="same", use_bias=False, name="conv2d")(image)' in text
    assert "kernel_initializer" not in text  # defaults are left out
    assert 'layers.ZeroPadding2D(padding=((0, 1), (0, 1)), name="zero_padding2d")' in text
    assert 'layers.AveragePooling2D(3, strides=2, name="average_pooling2d")' in text
    _, paths = saved("sequential-chain")
    chain = import_file(paths["keras"]).text.splitlines()
    assert chain[1:4] == [
        "model chain",
        'Input(shape=(16, 16, 3), name="input_layer")',
        'Conv2D(8, 3, strides=2, padding="same", activation="relu", name="conv2d")',
    ]


# --- unsupported content: one complete error ---------------------------------------------------


def test_every_unsupported_layer_is_reported_at_once(tmp_path):
    keras.backend.clear_session()
    x = keras.Input((8, 8, 3))
    y = layers.Lambda(lambda t: t * 2, name="double")(x)
    y = layers.Lambda(lambda t: t + 1, name="plus_one")(y)
    y = layers.Reshape((64, 3))(y)
    y = layers.LSTM(4, name="recurrent")(y)
    model = keras.Model(x, y)
    path = tmp_path / "m.json"
    path.write_text(model.to_json())
    with pytest.raises(ConvcError) as caught:
        import_file(path)
    message = caught.value.message
    assert "2 things" not in message and "3 things in this model" in message
    assert "Lambda ('double', 'plus_one'): a Lambda layer holds Python code" in message
    assert "LSTM ('recurrent')" in message


def test_mixed_precision_is_refused_with_its_reason(tmp_path):
    keras.backend.clear_session()
    x = keras.Input((8, 8, 3))
    y = layers.Conv2D(2, 3, dtype="mixed_float16", name="half")(x)
    path = tmp_path / "m.json"
    path.write_text(keras.Model(x, y).to_json())
    with pytest.raises(ConvcError, match="'half'.*dtype policy is 'mixed_float16'"):
        import_file(path)


def test_unknown_input_dimensions_need_input_shape(tmp_path):
    keras.backend.clear_session()
    x = keras.Input((None, None, 3), name="image")
    model = keras.Model(x, layers.Conv2D(2, 3)(x))
    random_weights(model)
    path = tmp_path / "m.keras"
    model.save(path)
    with pytest.raises(ConvcError, match=r"unknown dimensions \(None, None, 3\)") as caught:
        import_file(path)
    assert caught.value.help == "give them: --input-shape 224,224,3"
    imported = import_file(path, input_shapes={"": (9, 7, 3)})
    assert imported.model.inputs[0].shape == (None, 9, 7, 3)
    with pytest.raises(ConvcError, match="does not fit input 'image'"):
        import_file(path, input_shapes={"image": (9, 7, 4)})


def test_python_api_takes_model_files(saved):
    import convc

    model, paths = saved("functional-resnet-block")
    proto = convc.build(paths["keras"])
    assert _compare(proto, None, model) == 1
    assert convc.check(paths["h5"]).ok
    result = convc.run(paths["keras"], inputs_for(model, batch=2)[0])
    (output,) = result.outputs.values()
    np.testing.assert_allclose(output, keras_outputs(model, inputs_for(model))[0], 1e-4, 1e-4)


def test_golden_of_a_model_file_uses_its_weights_and_notices_an_edit(saved, tmp_path):
    from convc import golden

    model, paths = saved("functional-resnet-block")
    source = tmp_path / "net.keras"
    source.write_bytes(paths["keras"].read_bytes())
    recording = golden.record(source, tmp_path / "golden", sets=2)
    assert recording.sets == 2
    verification = golden.verify(tmp_path / "golden")
    assert verification.ok and verification.compiler_output == golden.UNCHANGED
    # the recorded outputs are Keras's (the file's own weights, not drawn ones)
    folder = tmp_path / "golden" / "test_data_set_0"
    x = numpy_helper.to_array(onnx.load_tensor(str(folder / "input_0.pb")))
    y = numpy_helper.to_array(onnx.load_tensor(str(folder / "output_0.pb")))
    np.testing.assert_allclose(y, keras_outputs(model, [x])[0], atol=ATOL, rtol=RTOL)
    # another model saved over the file: the source changed
    other, other_paths = saved("sequential-chain")
    source.write_bytes(other_paths["keras"].read_bytes())
    assert golden.verify(tmp_path / "golden").compiler_output.startswith(golden.SOURCE_CHANGED)

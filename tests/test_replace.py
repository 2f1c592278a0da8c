"""``--replace NAME=CALL`` (#24, item 2): a `.conv` layer call in the place of a model file's
Lambda, custom or tf.keras operation layer, whose code convc never runs.

Keras 3 is the oracle: it builds the models with their Lambda and custom layers, saves them as
``.keras``, ``.h5`` and JSON (and in the forms Keras 2 and tf.keras wrote), and predicts; convc
builds the files with the layers replaced and must predict the same. The refusal, the errors of a
wrong replacement (located in the option's text), the placeholder that ``convc import`` writes
and its edit-one-line round trip are checked through the command line and the Python API.
"""

from __future__ import annotations

import base64
import json
import marshal
import os
import pickle
import shutil

import h5py
import numpy as np
import pytest

from oracle import ATOL, RTOL, keras_outputs, onnx_outputs, random_weights

os.environ.setdefault("KERAS_BACKEND", "torch")
import keras  # noqa: E402
from keras import layers  # noqa: E402

import convc  # noqa: E402
from convc.cli import EXIT_PLACEHOLDERS, main  # noqa: E402
from convc.diagnostics import ConvcError, render  # noqa: E402
from convc.importer import import_file  # noqa: E402

NORMALIZE = "Rescaling(0.00392156862745098, offset=-0.5)"
"""x / 255 - 0.5, as the language writes it today (no arithmetic in arguments yet)."""


@keras.saving.register_keras_serializable(package="replace_tests")
class ScaleShift(layers.Layer):
    """A custom layer without weights: x * 3 - 1."""

    def call(self, x):
        return x * 3.0 - 1.0


@keras.saving.register_keras_serializable(package="replace_tests")
class Projection(layers.Layer):
    """A custom layer with a weight: x @ kernel (a Dense without bias, by another name)."""

    def __init__(self, units=4, **kwargs):
        super().__init__(**kwargs)
        self.units = units

    def build(self, input_shape):
        self.kernel = self.add_weight(shape=(input_shape[-1], self.units), name="kernel")

    def call(self, x):
        return keras.ops.matmul(x, self.kernel)

    def get_config(self):
        return {**super().get_config(), "units": self.units}


@keras.saving.register_keras_serializable(package="replace_tests")
class HalveWidth(layers.Layer):
    """A custom layer that changes its input's shape: every other column."""

    def call(self, x):
        return x[:, :, ::2, :]

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[1], input_shape[2] // 2, input_shape[3])


def _driving() -> keras.Model:
    """The driving-simulator regressor's shape: normalize, crop, convolve, regress."""
    keras.backend.clear_session()
    return keras.Sequential(
        [
            keras.Input((20, 40, 3)),
            layers.Lambda(lambda x: x / 255.0 - 0.5, name="lambda_1"),
            layers.Cropping2D(((4, 2), (0, 0)), name="cropping2d_1"),
            layers.Conv2D(4, 3, strides=2, activation="relu", name="conv2d_1"),
            layers.Flatten(name="flatten_1"),
            layers.Dense(1, name="dense_1"),
        ]
    )


def _two_lambdas() -> keras.Model:
    keras.backend.clear_session()
    x = keras.Input((6, 6, 3), name="image")
    a = layers.Lambda(lambda t: t * 2.0 + 1.0, name="affine")(x)
    b = layers.Conv2D(3, 3, padding="same", name="conv")(a)
    c = layers.Lambda(lambda t: keras.ops.maximum(t, 0.0), name="clip")(b)
    return keras.Model(x, layers.Add(name="add")([a, c]))


def _custom() -> keras.Model:
    keras.backend.clear_session()
    x = keras.Input((5, 5, 2), name="image")
    y = ScaleShift(name="scale_shift")(x)
    y = layers.Conv2D(3, 1, name="conv")(y)
    y = Projection(4, name="projection")(y)
    return keras.Model(x, layers.Conv2D(2, 1, name="head")(y))


def _halving() -> keras.Model:
    keras.backend.clear_session()
    x = keras.Input((4, 8, 2), name="image")
    y = layers.Conv2D(3, 1, name="conv")(x)
    y = HalveWidth(name="halve")(y)
    return keras.Model(x, layers.Conv2D(2, 1, name="head")(y))


def _keras_2(h5_path, edit) -> None:
    """Rewrite a Keras 3 legacy .h5's config into what Keras 2 wrote; the arrays stay."""
    with h5py.File(h5_path, "r+") as handle:
        config = json.loads(handle.attrs["model_config"])
        edit(config)
        handle.attrs["model_config"] = json.dumps(config)
        handle.attrs["keras_version"] = "2.2.4"


def _as_keras_2_sequential(config: dict) -> None:
    """A Keras 2.2 Sequential: the plain list of layers, the first one carrying
    batch_input_shape; the Lambda's function as (bytecode, defaults, closure); no shapes."""
    chain = [layer for layer in config["config"]["layers"] if layer["class_name"] != "InputLayer"]
    for layer in chain:
        layer.pop("build_config", None)
        layer["config"]["dtype"] = "float32"
    lam = chain[0]["config"]
    lam.update(
        batch_input_shape=[None, 20, 40, 3],
        function=[lam["function"]["config"]["code"], None, None],
        function_type="lambda",
        output_shape=None,
        output_shape_type="raw",
        arguments={},
    )
    config["config"] = chain


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Each model built in Keras with random weights, saved in each form, with Keras's outputs
    on image-like inputs (0..255, where the normalization matters)."""
    root = tmp_path_factory.mktemp("replace")
    built = {}
    for name, make in {
        "driving": _driving,
        "two_lambdas": _two_lambdas,
        "custom": _custom,
        "halving": _halving,
    }.items():
        model = make()
        arrays = random_weights(model)
        paths = {fmt: root / f"{name}.{fmt}" for fmt in ("keras", "h5", "json")}
        model.save(paths["keras"])
        model.save(paths["h5"])
        paths["json"].write_text(model.to_json())
        shape = tuple(2 if d is None else d for d in model.inputs[0].shape)
        x = np.random.default_rng(5).uniform(0, 255, shape).astype(np.float32)
        built[name] = (model, paths, arrays, x, keras_outputs(model, [x])[0])
    keras_2 = root / "driving-keras2.h5"
    shutil.copy(built["driving"][1]["h5"], keras_2)
    _keras_2(keras_2, _as_keras_2_sequential)
    built["driving"][1]["keras2-h5"] = keras_2
    return built


def _matches(proto, x, expected) -> int:
    (actual,) = onnx_outputs(proto, [x])
    assert actual.shape == expected.shape
    np.testing.assert_allclose(actual, expected, atol=ATOL, rtol=RTOL)
    return actual.size


# --- the replaced models compute what Keras computes ------------------------------------------


@pytest.mark.parametrize("fmt", ["keras", "h5", "json", "keras2-h5"])
def test_a_replaced_lambda_matches_keras(files, fmt):
    model, paths, arrays, x, expected = files["driving"]
    weights = arrays if fmt == "json" else None  # JSON carries no weights
    proto = convc.build(paths[fmt], weights, replace={"lambda_1": NORMALIZE})
    assert _matches(proto, x, expected) == 2
    # the check can fail: another normalization is caught
    wrong = convc.build(paths[fmt], weights, replace={"lambda_1": "Rescaling(0.004, offset=-0.5)"})
    (actual,) = onnx_outputs(wrong, [x])
    assert not np.allclose(actual, expected, atol=ATOL, rtol=RTOL)


def test_keras_itself_will_not_load_the_lambda_without_running_its_code(files):
    _, paths, _, _, _ = files["driving"]
    with pytest.raises(ValueError, match="safe_mode"):
        keras.saving.load_model(paths["keras"])


def test_several_replacements_match_keras(files):
    model, paths, _, x, expected = files["two_lambdas"]
    replace = {"affine": "Rescaling(2.0, offset=1.0)", "clip": "ReLU()"}
    for fmt in ("keras", "h5"):
        proto = convc.build(paths[fmt], replace=replace)
        assert _matches(proto, x, expected) == expected.size
        nodes = [node.op_type for node in proto.graph.node]
        assert "Relu" in nodes
    # each replacement matters: leaving one out is refused, naming the other
    with pytest.raises(ConvcError, match=r"Lambda \('clip'\)"):
        convc.build(paths["keras"], replace={"affine": "Rescaling(2.0, offset=1.0)"})


def test_a_shared_lambda_and_one_in_a_nested_model_are_replaced(tmp_path):
    keras.backend.clear_session()
    a, b = keras.Input((5, 5, 2), name="a"), keras.Input((5, 5, 2), name="b")
    half = layers.Lambda(lambda t: t * 0.5, name="half")
    block = keras.Sequential(
        [layers.Conv2D(2, 1, name="c1"), layers.Lambda(lambda t: t + 1.0, name="plus")],
        name="block",
    )
    model = keras.Model([a, b], layers.Add(name="add")([half(a), block(half(b))]))
    random_weights(model)
    xs = [np.random.default_rng(i).standard_normal((2, 5, 5, 2)).astype(np.float32) for i in (0, 1)]
    expected = keras_outputs(model, xs)[0]
    replace = {"half": "Rescaling(0.5)", "plus": "Rescaling(1.0, offset=1.0)"}
    for fmt in ("keras", "h5"):
        path = tmp_path / f"shared.{fmt}"
        model.save(path)
        (actual,) = onnx_outputs(convc.build(path, replace=replace), xs)
        np.testing.assert_allclose(actual, expected, atol=ATOL, rtol=RTOL)
    text = import_file(tmp_path / "shared.keras", replace=replace).text
    assert 'half = layers.Rescaling(0.5, name="half")  # replaces' in text
    assert "half_out1 = half(a)" in text and "half_out2 = half(b)" in text


def test_custom_layers_are_replaced_and_a_replacement_with_weights_takes_them_from_weights(files):
    model, paths, arrays, x, expected = files["custom"]
    kernel = model.get_layer("projection").get_weights()[0]
    replace = {
        "scale_shift": "Rescaling(3.0, offset=-1.0)",
        "projection": "Dense(4, use_bias=False)",
    }
    with pytest.raises(ConvcError) as caught:
        convc.build(paths["keras"], replace=replace)
    assert "'projection' is replaced by a Dense, which has weights" in caught.value.message
    assert "'projection/kernel' (3, 4)" in caught.value.message
    for fmt in ("keras", "h5"):
        # only the replaced layer's array is given: the others are the file's
        proto = convc.build(paths[fmt], {"projection/kernel": kernel}, replace=replace)
        assert _matches(proto, x, expected) == expected.size
    npz = paths["keras"].parent / "projection.npz"
    np.savez(npz, **{"projection/kernel": kernel})
    out = paths["keras"].parent / "custom.onnx"
    args = ["build", str(paths["h5"]), "-o", str(out), "--weights", str(npz)]
    args += [f"--replace=scale_shift={replace['scale_shift']}", "--replace"]
    assert main([*args, f"projection={replace['projection']}"]) == 0
    assert _matches(_load_onnx(out), x, expected) == expected.size


def _load_onnx(path):
    import onnx

    return onnx.load(str(path))


def test_a_tf_keras_operation_layer_is_refused_by_name_and_replaced(files, tmp_path):
    """tf.keras 2 records ``x / 255.0 - 0.5`` as two TFOpLambda layers, called with their
    constants as keyword arguments (Keras 2's node format)."""
    model, paths, _, x, expected = files["driving"]
    path = tmp_path / "tfop.h5"
    shutil.copy(paths["h5"], path)

    def tf_keras(config: dict) -> None:
        chain = config["config"]["layers"]
        rest = [layer for layer in chain if layer["class_name"] not in ("InputLayer", "Lambda")]

        def op(name, function, after, y):
            return {
                "class_name": "TFOpLambda",
                "config": {
                    "name": name,
                    "trainable": True,
                    "dtype": "float32",
                    "function": function,
                },
                "name": name,
                "inbound_nodes": [[[after, 0, 0, {"y": y, "name": None}]]],
            }

        body = [
            {
                "class_name": "InputLayer",
                "name": "input_1",
                "inbound_nodes": [],
                "config": {
                    "name": "input_1",
                    "batch_input_shape": [None, 20, 40, 3],
                    "dtype": "float32",
                },
            },
            op("tf.math.truediv", "math.truediv", "input_1", 255.0),
            op("tf.math.subtract", "math.subtract", "tf.math.truediv", 0.5),
        ]
        previous = "tf.math.subtract"
        for layer in rest:
            layer.pop("build_config", None)
            layer["config"]["dtype"] = "float32"
            layer["name"] = layer["config"]["name"]
            layer["inbound_nodes"] = [[[previous, 0, 0, {}]]]
            previous = layer["name"]
            body.append(layer)
        config["class_name"] = "Functional"
        config["config"] = {
            "name": "model",
            "layers": body,
            "input_layers": [["input_1", 0, 0]],
            "output_layers": [[previous, 0, 0]],
        }

    _keras_2(path, tf_keras)
    with pytest.raises(ConvcError) as caught:
        convc.build(path)
    message = caught.value.message
    assert "TFOpLambda ('tf.math.truediv')" in message
    assert "[tf.math.truediv, input (None, 20, 40, 3), output not recorded]" in message
    assert "it is called with y=255.0" in message
    assert "--replace 'tf.math.truediv=Rescaling(" in caught.value.help
    proto = convc.build(
        path,
        replace={
            "tf.math.truediv": "Rescaling(0.00392156862745098)",
            "tf.math.subtract": "Rescaling(1.0, offset=-0.5)",
        },
    )
    assert _matches(proto, x, expected) == 2


def test_a_keras_3_operation_convc_does_not_compile_is_replaced(tmp_path, capsys):
    """Keras 3 records ``x / 255.0`` between symbolic tensors as an operation layer."""
    keras.backend.clear_session()
    x = keras.Input((6, 6, 3), name="image")
    model = keras.Model(x, layers.Conv2D(2, 1, name="conv")(x / 255.0 - 0.5))
    random_weights(model)
    path = tmp_path / "ops.keras"
    model.save(path)
    with pytest.raises(ConvcError, match=r"TrueDivide \('true_divide'\).*\[TrueDivide\(x, 255.0\)"):
        convc.build(path)
    image = np.random.default_rng(2).uniform(0, 255, (2, 6, 6, 3)).astype(np.float32)
    expected = keras_outputs(model, [image])[0]
    replace = {"true_divide": "Rescaling(0.00392156862745098)"}
    assert _matches(convc.build(path, replace=replace), image, expected) == expected.size
    assert main(["import", str(path), "-o", str(tmp_path / "ops.conv")]) == EXIT_PLACEHOLDERS
    assert (
        'true_divide = REPLACE("TrueDivide", name="true_divide")(image)'
        in (tmp_path / "ops.conv").read_text()
    )


def test_the_lambdas_code_is_never_decoded(files, monkeypatch, tmp_path):
    """Whatever the Lambda's stored function holds, convc reads it as a string it never
    decodes: with every decoder broken, and the bytecode replaced by garbage, the build is the
    same."""
    _, paths, _, _, _ = files["driving"]
    reference = convc.build(paths["h5"], replace={"lambda_1": NORMALIZE}).SerializeToString()
    garbage = tmp_path / "garbage.h5"
    shutil.copy(paths["h5"], garbage)

    def poison(config: dict) -> None:
        lam = config["config"]["layers"][1]["config"]
        lam["function"]["config"]["code"] = base64.b64encode(b"\x00not bytecode\xff").decode()

    _keras_2(garbage, poison)

    def refuse(*args, **kwargs):
        raise AssertionError("convc decoded or ran something from the file")

    for module, name in (
        (marshal, "loads"),
        (pickle, "loads"),
        (pickle, "load"),
        (base64, "b64decode"),
        (base64, "decodebytes"),
    ):
        monkeypatch.setattr(module, name, refuse)
    for path in (paths["h5"], paths["keras"], garbage):
        proto = convc.build(path, replace={"lambda_1": NORMALIZE})
        assert proto.SerializeToString() == reference


# --- the refusal --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "recorded"),
    [
        ("keras", "input (None, 20, 40, 3), output (None, 20, 40, 3)"),
        ("h5", "input (None, 20, 40, 3), output not recorded"),  # a legacy .h5 has no build_config
        ("keras2-h5", "input (None, 20, 40, 3), output not recorded"),
    ],
)
def test_the_refusal_names_the_layer_its_shapes_and_the_option(files, fmt, recorded, capsys):
    _, paths, _, _, _ = files["driving"]
    assert main(["build", str(paths[fmt])]) == 1
    err = capsys.readouterr().err
    assert "Lambda ('lambda_1'): a Lambda layer holds Python code" in err
    assert f"[{recorded}]" in err
    assert "help: convc never runs code from a file" in err
    assert f"--replace 'lambda_1={NORMALIZE}'" in err


def test_a_custom_layer_is_refused_as_such_with_the_option(files):
    _, paths, _, _, _ = files["custom"]
    with pytest.raises(ConvcError) as caught:
        import_file(paths["keras"])
    message = caught.value.message
    assert "ScaleShift ('scale_shift'): a custom layer: its code is not in the file" in message
    assert "[input (None, 5, 5, 2), output (None, 5, 5, 2)]" in message
    assert "Projection ('projection')" in message
    assert "one --replace for each of 2 layers" in caught.value.help


# --- mistakes in a replacement: located in the option's text ------------------------------------


def _error(path, replace, **kwargs) -> ConvcError:
    with pytest.raises(ConvcError) as caught:
        convc.build(path, replace=replace, **kwargs)
    return caught.value


@pytest.mark.parametrize("fmt", ["keras", "keras2-h5"])  # built on recorded shapes, or in place
def test_an_argument_error_points_into_the_option(files, fmt):
    _, paths, _, _, _ = files["driving"]
    error = _error(paths[fmt], {"lambda_1": "Rescaling(0.5, offst=-0.5)"})
    assert error.message == "Rescaling has no argument 'offst'"
    assert error.origin == ("replace['lambda_1']", "Rescaling(0.5, offst=-0.5)")
    assert (error.span.line, error.span.column, error.span.end_column) == (1, 16, 21)
    assert render(error, None).splitlines() == [
        "replace['lambda_1']:1:16: error: Rescaling has no argument 'offst'",
        "  1 | Rescaling(0.5, offst=-0.5)",
        "    |                ^^^^^",
        "  help: did you mean 'offset'?",
    ]


def test_a_syntax_error_and_a_wrong_kind_of_call_point_into_the_option(files, capsys):
    _, paths, _, _, _ = files["driving"]
    path = str(paths["keras"])
    assert main(["build", path, "--replace", "lambda_1=Rescaling(0.5,, offset=1)"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("--replace lambda_1:1:15: error: ")
    assert "  1 | Rescaling(0.5,, offset=1)" in err
    error = _error(paths["keras"], {"lambda_1": "Rescaling(0.5)(x)"})
    assert error.message == "expected a layer call, not a layer applied to tensors"
    error = _error(paths["keras"], {"lambda_1": 'Rescaling(0.5, name="other")'})
    assert error.message == "the replacement keeps the layer's name 'lambda_1'"
    assert error.span.column == 16
    error = _error(paths["keras"], {"lambda_1": "Input(shape=(3,))"})
    assert error.message == "Input(...) is not a layer"


def test_an_error_in_applying_the_call_points_into_the_option(files):
    _, paths, _, _, _ = files["driving"]
    for fmt in ("keras", "keras2-h5"):
        error = _error(paths[fmt], {"lambda_1": "Conv1D(3, 1)"})
        assert error.origin == ("replace['lambda_1']", "Conv1D(3, 1)")
        assert (error.span.column, error.span.end_column) == (1, 7), error.message
        assert error.message == (
            "Conv1D 'lambda_1' expects a 3-D input (batch, steps, channels), got shape "
            "(None, 20, 40, 3)"
        )


def test_a_shape_the_file_records_must_be_kept(files, capsys):
    _, paths, _, _, _ = files["driving"]
    assert main(["build", str(paths["keras"]), "--replace", "lambda_1=Conv2D(4, 3)"]) == 1
    assert capsys.readouterr().err.splitlines()[:3] == [
        "--replace lambda_1:1:1: error: this call gives an output of shape (None, 18, 38, 4), "
        "but the model file records (None, 20, 40, 3) for layer 'lambda_1'",
        "  1 | Conv2D(4, 3)",
        "    | ^^^^^^^^^^^^",
    ]


@pytest.mark.parametrize(
    ("output_shape", "output_shape_type", "recorded"),
    [
        ([20, 40, 3], "raw", "output (None, 20, 40, 3)"),
        # a function's bytecode (Keras 2's form): never decoded, so nothing is recorded
        (["4wEAAAAAAAAA", None, None], "lambda", "output not recorded"),
    ],
)
def test_a_keras_2_lambdas_stated_output_shape_is_the_recorded_one(
    files, tmp_path, output_shape, output_shape_type, recorded
):
    _, paths, _, _, _ = files["driving"]
    path = tmp_path / "stated.h5"
    shutil.copy(paths["keras2-h5"], path)

    def state(config: dict) -> None:
        lam = config["config"][0]["config"]
        lam.update(output_shape=output_shape, output_shape_type=output_shape_type)

    _keras_2(path, state)
    with pytest.raises(ConvcError) as caught:
        convc.build(path)
    assert f"[input (None, 20, 40, 3), {recorded}]" in caught.value.message
    if output_shape_type == "raw":
        error = _error(path, {"lambda_1": "Conv2D(4, 3)"})
        assert error.message.endswith(
            "but the model file records (None, 20, 40, 3) for layer 'lambda_1'"
        )


def test_a_shape_the_file_does_not_record_is_checked_by_the_weights_after_it(files):
    """A Keras 2 file records no shapes: the next layer's arrays, checked against the shapes
    the replacement gives, find the mistake, and the message says what the replacement gives."""
    _, paths, _, _, _ = files["driving"]
    error = _error(paths["keras2-h5"], {"lambda_1": "Dense(5)"})
    assert error.message == "conv2d_1/kernel has shape (3, 3, 3, 4), expected (3, 3, 5, 4)"
    assert "replace['lambda_1'] gives (None, 20, 40, 5)" in error.help


def test_a_name_that_matches_no_layer_lists_the_close_names(files, capsys):
    _, paths, _, _, _ = files["two_lambdas"]
    error = _error(paths["keras"], {"clips": "ReLU()"})
    assert error.message == "replace['clips']: the model has no layer named 'clips'"
    assert error.help == "did you mean 'clip'?"
    error = _error(paths["keras"], {"zzz": "ReLU()"})
    assert error.help == "its layers: affine, conv, clip, add"
    error = _error(paths["keras"], {"image": "ReLU()"})
    assert "'image' is an input of the model" in error.message
    assert (
        main(["build", str(paths["keras"]), "--replace", "clip=ReLU()", "--replace", "clip=ReLU()"])
        == 1
    )
    assert "--replace clip is given twice" in capsys.readouterr().err
    assert main(["build", str(paths["keras"]), "--replace", "clip"]) == 1
    assert "expected NAME=CALL" in capsys.readouterr().err


# --- convc import: the placeholder, and the replaced text ---------------------------------------


def test_import_writes_a_placeholder_that_one_edited_line_makes_build(files, tmp_path, capsys):
    model, paths, _, x, expected = files["driving"]
    conv, npz = tmp_path / "driving.conv", tmp_path / "driving.npz"
    status = main(["import", str(paths["keras2-h5"]), "-o", str(conv)])
    assert status == EXIT_PLACEHOLDERS == 4
    out, err = capsys.readouterr()
    assert f"wrote {conv}: 1 placeholder line to edit" in out
    assert f"wrote {npz}: 4 arrays" in out
    lines = conv.read_text().splitlines()
    number = next(i for i, line in enumerate(lines, 1) if line.startswith("REPLACE("))
    assert f"{conv}:{number}:1: warning: a placeholder for the Lambda layer 'lambda_1'" in err
    assert lines[number - 1].startswith(
        'REPLACE("Lambda", name="lambda_1")  # convc: REPLACE this Lambda'
    )
    # the placeholder does not build: a located error that says what it is
    assert main(["build", str(conv), "--weights", str(npz)]) == 1
    err = capsys.readouterr().err
    assert f"{conv}:{number}:1: error: a placeholder, not a layer" in err
    assert "the Lambda layer 'lambda_1'" in err
    with pytest.raises(ConvcError, match="a placeholder, not a layer"):
        convc.load_text(conv.read_text())
    # edit one line, build with the written weights: Keras's numbers
    lines[number - 1] = f'{NORMALIZE[:-1]}, name="lambda_1")'
    edited = tmp_path / "edited.conv"
    edited.write_text("\n".join(lines) + "\n")
    onnx_path = tmp_path / "edited.onnx"
    assert main(["build", str(edited), "--weights", str(npz), "-o", str(onnx_path)]) == 0
    assert _matches(_load_onnx(onnx_path), x, expected) == 2
    # the same bytes as the model file built with --replace, and as the unedited text with it
    direct = tmp_path / "direct.onnx"
    replace = ["--replace", f"lambda_1={NORMALIZE}"]
    assert main(["build", str(paths["keras2-h5"]), "-o", str(direct), *replace]) == 0
    placeholder = tmp_path / "placeholder.onnx"
    assert main(["build", str(conv), "--weights", str(npz), "-o", str(placeholder), *replace]) == 0
    assert direct.read_bytes() == onnx_path.read_bytes() == placeholder.read_bytes()


def test_a_hostile_layer_name_stays_a_quoted_literal_in_the_placeholder(files, tmp_path):
    _, paths, _, x, expected = files["driving"]
    name = 'evil")\nDense(1)  # convc: REPLACE\r\x1b[2J'
    path = tmp_path / "evil.h5"
    shutil.copy(paths["keras2-h5"], path)

    def rename(config: dict) -> None:
        config["config"][0]["config"]["name"] = name

    _keras_2(path, rename)
    imported = import_file(path, placeholders=True)
    (placeholder,) = imported.placeholders
    line = imported.text.splitlines()[placeholder.line - 1]
    assert line.startswith(f'REPLACE("Lambda", name={json.dumps(name)})  # convc: REPLACE')
    assert len(imported.text.splitlines()) == 8  # nothing the name holds starts a line
    with pytest.raises(ConvcError) as caught:
        convc.load_text(imported.text)
    assert caught.value.span.line == placeholder.line
    proto = convc.build_text(imported.text, imported.weights, replace={name: NORMALIZE})
    assert _matches(proto, x, expected) == 2


def test_import_with_replace_writes_the_call_and_builds_the_same_model(files, tmp_path, capsys):
    _, paths, _, x, expected = files["two_lambdas"]
    replace = {"affine": "Rescaling(2.0, offset=1.0)", "clip": "ReLU()"}
    options = [f"--replace={name}={call}" for name, call in replace.items()]
    conv, npz, direct, rebuilt = (tmp_path / n for n in ("m.conv", "m.npz", "d.onnx", "r.onnx"))
    assert main(["import", str(paths["keras"]), "-o", str(conv), *options]) == 0
    text = conv.read_text()
    assert 'affine = layers.Rescaling(2.0, offset=1.0, name="affine")(image)' in text
    assert 'layers.ReLU(name="clip")(conv)  # replaces the file\'s Lambda layer' in text
    assert main(["build", str(paths["keras"]), "-o", str(direct), *options]) == 0
    assert main(["build", str(conv), "--weights", str(npz), "-o", str(rebuilt)]) == 0
    assert direct.read_bytes() == rebuilt.read_bytes()
    assert _matches(_load_onnx(rebuilt), x, expected) == expected.size


def test_import_of_a_placeholder_that_changes_its_shape_writes_the_text_alone(
    files, tmp_path, capsys
):
    _, paths, _, x, expected = files["halving"]
    conv = tmp_path / "halving.conv"
    assert main(["import", str(paths["keras"]), "-o", str(conv)]) == EXIT_PLACEHOLDERS
    out, err = capsys.readouterr()
    assert not (tmp_path / "halving.npz").exists()
    assert (
        "the weights were not written: the placeholder 'halve' changes its input's shape "
        "(None, 4, 8, 3) to (None, 4, 4, 3)" in err
    )
    # with the replacement, both are written, and they compute what Keras computes
    replace = "--replace=halve=AveragePooling2D((1, 1), strides=(1, 2))"
    assert main(["import", str(paths["keras"]), "-o", str(conv), replace]) == 0
    proto = convc.build(conv, tmp_path / "halving.npz")
    assert _matches(proto, x, expected) == expected.size


def test_a_shape_changing_custom_layer_is_replaced_by_what_computes_it(files):
    _, paths, _, x, expected = files["halving"]
    replace = {"halve": "AveragePooling2D((1, 1), strides=(1, 2))"}
    for fmt in ("keras", "h5"):
        assert _matches(convc.build(paths[fmt], replace=replace), x, expected) == expected.size
    # the same shape, another computation (the larger of each pair of columns): told apart
    wrong = convc.build(paths["keras"], replace={"halve": "MaxPooling2D((1, 2))"})
    (actual,) = onnx_outputs(wrong, [x])
    assert actual.shape == expected.shape
    assert not np.allclose(actual, expected, atol=ATOL, rtol=RTOL)


# --- .conv text, the other commands, golden -----------------------------------------------------


def test_a_conv_text_layer_is_replaced_by_its_automatic_name():
    text = "Input(shape=(8, 8, 3))\nConv2D(4, 3)\nConv2D(4, 3,)\nConv2D(2, 1)\n"
    model = convc.load_text(text, replace={"conv2d": 'Conv2D(4, 3, activation="relu")'})
    # the others keep their names, though Keras's counter would now start at the next one
    assert [layer.name for layer in model.layers] == ["conv2d", "conv2d_1", "conv2d_2"]
    assert model.layers[0].spec.activation == "relu"
    # an error the replacement causes further on points into the text as written
    with pytest.raises(ConvcError) as caught:
        convc.load_text(text, replace={"conv2d_1": "Flatten()"})
    assert caught.value.span.line == 4 and caught.value.span.column == 1
    assert caught.value.origin is None


def test_build_text_takes_replace_and_a_model_does_not():
    text = 'Input(shape=(4, 4, 2))\nREPLACE("Lambda", name="norm")\nConv2D(3, 1)\n'
    proto = convc.build_text(text, replace={"norm": "Rescaling(0.5)"})
    assert "Mul" in [node.op_type for node in proto.graph.node]
    model = convc.load_text(text, replace={"norm": "Rescaling(0.5)"})
    with pytest.raises(ConvcError, match="'replace' applies to a path or text"):
        convc.build(model, replace={"norm": "Rescaling(0.5)"})
    with pytest.raises(ConvcError, match="no layer named 'nrm'"):
        convc.load_text(text, replace={"nrm": "Rescaling(0.5)"})


def test_summary_check_and_run_take_replace(files, tmp_path, capsys):
    _, paths, _, _, _ = files["driving"]
    path, replace = str(paths["keras2-h5"]), f"--replace=lambda_1={NORMALIZE}"
    assert main(["summary", path, replace]) == 0
    assert "lambda_1 (Rescaling)" in capsys.readouterr().out
    assert main(["check", path, replace]) == 0
    assert "all 5 layers agree" in capsys.readouterr().out
    assert main(["run", path, replace]) == 0
    assert "dense_1: shape (1, 1)" in capsys.readouterr().out
    onnx_path = tmp_path / "m.onnx"
    assert main(["build", path, replace, "-o", str(onnx_path)]) == 0
    assert main(["run", str(onnx_path), replace]) == 1
    assert "an .onnx model is already built" in capsys.readouterr().err
    assert convc.check(paths["keras"], replace={"lambda_1": NORMALIZE}).ok
    _, _, _, x, expected = files["driving"]
    result = convc.run(paths["keras"], x, replace={"lambda_1": NORMALIZE})
    np.testing.assert_allclose(list(result.outputs.values())[0], expected, atol=ATOL, rtol=RTOL)


def test_golden_record_keeps_the_replacements_for_verify(files, tmp_path, capsys):
    _, paths, _, _, _ = files["driving"]
    golden = tmp_path / "golden"
    path, replace = str(paths["h5"]), f"--replace=lambda_1={NORMALIZE}"
    assert main(["golden", "record", path, str(golden), replace]) == 0
    manifest = json.loads((golden / "manifest.json").read_text())
    assert manifest["replace"] == {"lambda_1": NORMALIZE}
    assert main(["golden", "verify", str(golden), "--strict"]) == 0
    assert "the compiler's output: unchanged" in capsys.readouterr().out

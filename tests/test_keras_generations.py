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


def test_a_keras_1_file_is_named_as_such_in_one_message(tmp_path, capsys):
    """Keras 1 files used to give one 'unknown argument' line per argument and layer, and no
    word of which Keras wrote them (#24)."""
    path = tmp_path / "model.json"
    path.write_text(json.dumps(KERAS1_SEQUENTIAL))
    assert main(["build", str(path), "-o", str(tmp_path / "m.onnx")]) == 1
    err = capsys.readouterr().err
    assert "written by Keras 1" in err
    assert "border_mode, dim_ordering, init, nb_col, nb_filter, nb_row, subsample" in err
    assert "unknown" not in err and len(err.splitlines()) == 2


def test_keras_1_evidence_is_the_version_or_its_argument_names():
    from convc.importer.generations import keras1_evidence

    keras3 = {
        "class_name": "Sequential",
        "config": {"layers": [{"class_name": "Embedding", "config": {"output_dim": 4}}]},
    }
    assert keras1_evidence(keras3, "3.15.1") is None
    assert keras1_evidence(keras3, "1.2.2") == "keras_version '1.2.2'"

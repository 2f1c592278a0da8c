"""Strings from a model file cannot change the model (#23): names with quotes, backslashes,
newlines, '#', '(', non-ASCII letters and control characters are written into the imported
.conv text as quoted literals, so the model built is the model in the file. Each case edits one
name of a file Keras saved and requires the same outputs as the unedited file."""

from __future__ import annotations

import io
import json
import os
import zipfile

import numpy as np
import pytest

from oracle import random_weights

os.environ.setdefault("KERAS_BACKEND", "torch")
import keras  # noqa: E402
from keras import layers  # noqa: E402

from convc.cli import main  # noqa: E402
from convc.compiler import compile_model  # noqa: E402
from convc.diagnostics import ConvcError  # noqa: E402
from convc.importer import import_file  # noqa: E402

from oracle import onnx_outputs  # noqa: E402  isort: skip

HOSTILE = [
    'a", activation="relu',
    "b\nConv2D(4, 1)",
    'c\\\\"d',
    "e # f",
    "g(h)",
    "名前",
    "i\x1bj\x07",
    "k'l",
]


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    keras.backend.clear_session()
    x = keras.Input((6, 6, 2), name="image")
    y = layers.Conv2D(2, 3, padding="same", name="conv")(x)
    z = y + x  # recorded as an operation between two tensors
    w = z * 0.5  # and one between a tensor and a number
    model = keras.Model(x, layers.Dense(3, name="dense")(w), name="net")
    random_weights(model)
    path = tmp_path_factory.mktemp("inject") / "m.keras"
    model.save(path)
    return path


def _edited(source, tmp_path, edit, metadata=None):
    with zipfile.ZipFile(source) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    config = json.loads(members["config.json"])
    edit(config)
    members["config.json"] = json.dumps(config).encode()
    if metadata is not None:
        members["metadata.json"] = json.dumps(metadata).encode()
    path = tmp_path / "m.keras"
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    path.write_bytes(out.getvalue())
    return path


def _outputs(path):
    imported = import_file(path)
    x = np.random.default_rng(0).standard_normal((2, 6, 6, 2)).astype(np.float32)
    return imported, onnx_outputs(compile_model(imported.model, imported.weights), [x])


def _rename_operations(config, name):
    for layer in config["config"]["layers"]:
        if layer["class_name"] in ("Add", "Multiply"):
            layer["config"]["name"] = layer["name"] = f"{name}_{layer['class_name']}"
            _rename_history(config, layer["class_name"].lower(), f"{name}_{layer['class_name']}")


def _rename_history(node, old, new):
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "keras_history" and isinstance(value, list) and value and value[0] == old:
                value[0] = new
            else:
                _rename_history(value, old, new)
    elif isinstance(node, list):
        if len(node) == 3 and node[0] == old and isinstance(node[1], int):
            node[0] = new
        for item in node:
            _rename_history(item, old, new)


@pytest.mark.parametrize("name", HOSTILE, ids=range(len(HOSTILE)))
@pytest.mark.parametrize("where", ["model", "operations", "keras_version"])
def test_a_hostile_name_builds_the_model_in_the_file(saved, tmp_path, where, name):
    _, expected = _outputs(saved)
    if where == "model":
        path = _edited(saved, tmp_path, lambda c: c["config"].update(name=name))
    elif where == "operations":
        path = _edited(saved, tmp_path, lambda c: _rename_operations(c, name))
    else:
        path = _edited(saved, tmp_path, lambda c: None, {"keras_version": name, "date_saved": ""})
    imported, actual = _outputs(path)
    np.testing.assert_allclose(actual[0], expected[0], rtol=1e-6, atol=1e-6)
    assert [layer.name for layer in imported.model.layers][-1] == "dense"
    assert len(imported.model.layers) == 4, imported.text
    assert main(["build", str(path), "-o", str(tmp_path / "m.onnx")]) == 0


def test_a_keras_object_whose_class_name_is_not_a_name_is_refused(saved, tmp_path):
    def edit(config):
        for layer in config["config"]["layers"]:
            if layer["class_name"] == "Dense":
                layer["config"]["kernel_initializer"] = {
                    "class_name": "Zeros)\nDense(7",
                    "config": {},
                }

    with pytest.raises(ConvcError, match="not a Python name"):
        import_file(_edited(saved, tmp_path, edit))


def test_a_layer_named_like_a_shared_layers_second_output_keeps_its_own_tensor(tmp_path):
    """The importer named a shared layer s's second output "s#1", so a layer named "s#1" was
    the same tensor: Add([s_1, s_1]) was written, off by 13 with exit 0 (#23)."""
    keras.backend.clear_session()
    x = keras.Input((4,), name="x")
    shared = layers.Dense(4, name="s")
    second = shared(shared(x))
    other = layers.Dense(4, name="s#1")(x)
    model = keras.Model(x, layers.Add(name="add")([second, other]))
    random_weights(model)
    path = tmp_path / "m.keras"
    model.save(path)
    xs = np.random.default_rng(0).standard_normal((2, 4)).astype(np.float32)
    imported = import_file(path)
    (actual,) = onnx_outputs(compile_model(imported.model, imported.weights), [xs])
    np.testing.assert_allclose(actual, model.predict(xs, verbose=0), rtol=1e-4, atol=1e-4)
    assert 'Add(name="add")([s_out2, s_1])' in imported.text

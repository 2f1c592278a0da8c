"""Files of Keras generations between 2 and today. `.keras` archives written by tf.keras
2.13-2.15, shaped as the published ones are (the corpus's mnist-mlp-tf213/tf215): tf.keras 2.13 keys a layer's variables under
``_layer_checkpoint_dependencies`` by class and a number that each layer with weights advances
twice (``dense``, ``dense_2``); 2.15 keys them as Keras 3 does (``layers/dense``, ``dense_1``);
written on Windows, the separators are backslashes inside one HDF5 name. Neither Keras 3 nor
tf_keras 2.21 loads these files, so the expectation is NumPy's: the net is two Dense layers."""

from __future__ import annotations

import io
import json
import zipfile

import h5py
import numpy as np
import pytest

from convc.compiler import compile_model
from convc.importer import import_file

from oracle import onnx_outputs  # isort: skip


def _config() -> dict:
    def dense(name, units, activation):
        return {
            "module": "keras.layers",
            "class_name": "Dense",
            "config": {
                "name": name,
                "trainable": True,
                "dtype": "float32",
                "units": units,
                "activation": activation,
                "use_bias": True,
                "kernel_initializer": {"class_name": "GlorotUniform", "config": {"seed": None}},
                "bias_initializer": {"class_name": "Zeros", "config": {}},
            },
            "registered_name": None,
        }

    return {
        "module": "keras",
        "class_name": "Sequential",
        "config": {
            "name": "sequential",
            "layers": [
                {
                    "module": "keras.layers",
                    "class_name": "InputLayer",
                    "config": {
                        "batch_input_shape": [None, 4, 3],
                        "dtype": "float32",
                        "name": "flatten_input",
                    },
                    "registered_name": None,
                },
                {
                    "module": "keras.layers",
                    "class_name": "Flatten",
                    "config": {
                        "name": "flatten",
                        "dtype": "float32",
                        "data_format": "channels_last",
                    },
                    "registered_name": None,
                },
                dense("dense", 5, "relu"),
                dense("dense_1", 3, "linear"),
            ],
        },
    }


LAYOUTS = {
    "tf2.13": ("_layer_checkpoint_dependencies", ("dense", "dense_2"), "/"),
    "tf2.13-windows": ("_layer_checkpoint_dependencies", ("dense", "dense_2"), "\\"),
    "tf2.15-windows": ("layers", ("dense", "dense_1"), "\\"),
}


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_a_tf_keras_archive_builds_its_weights(layout, tmp_path):
    container, keys, separator = LAYOUTS[layout]
    rng = np.random.default_rng(3)
    arrays = [
        (rng.standard_normal((12, 5)), rng.standard_normal(5)),
        (rng.standard_normal((5, 3)), rng.standard_normal(3)),
    ]
    weights = io.BytesIO()
    with h5py.File(weights, "w") as handle:
        for key in ("flatten", *keys):
            handle.create_group(f"{container}{separator}{key}/vars")
        for key, pair in zip(keys, arrays, strict=True):
            for index, array in enumerate(pair):
                handle[f"{container}{separator}{key}/vars"][str(index)] = array.astype("f4")
        handle.create_dataset("optimizer/vars/0", data=np.int64(0))
    path = tmp_path / "m.keras"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("metadata.json", json.dumps({"keras_version": "2.13.1"}))
        archive.writestr("config.json", json.dumps(_config()))
        archive.writestr("model.weights.h5", weights.getvalue())
    imported = import_file(path)
    x = rng.standard_normal((2, 4, 3)).astype("f4")
    (first, bias1), (second, bias2) = arrays
    expected = np.maximum(x.reshape(2, 12) @ first + bias1, 0) @ second + bias2
    (got,) = onnx_outputs(compile_model(imported.model, imported.weights), [x])
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "value_range, refusal",
    [((0, 255), None), ([0.0, 1.0], None), ((1,), "'value_range' must be a list of two numbers")],
)
def test_keras_3_5s_random_rotation_value_range_is_read(value_range, refusal, tmp_path):
    """Keras 3.0-3.5 gave RandomRotation a value_range (default (0, 255)) and wrote it into
    every config: such a file builds (the layer does nothing at inference); a malformed one is
    refused by name."""
    rotation = {
        "module": "keras.layers",
        "class_name": "RandomRotation",
        "config": {
            "name": "random_rotation",
            "factor": [-0.1, 0.1],
            "fill_mode": "reflect",
            "interpolation": "bilinear",
            "seed": None,
            "fill_value": 0.0,
            "value_range": list(value_range),
            "data_format": "channels_last",
        },
    }
    config = {
        "class_name": "Sequential",
        "config": {
            "name": "sequential",
            "layers": [
                {
                    "class_name": "InputLayer",
                    "config": {"batch_shape": [None, 6, 6, 2], "name": "x"},
                },
                rotation,
                {"class_name": "Flatten", "config": {"name": "flatten"}},
            ],
        },
    }
    path = tmp_path / "m.json"
    path.write_text(json.dumps(config))
    if refusal is None:
        assert import_file(path).model.layers[0].class_name == "RandomRotation"
    else:
        with pytest.raises(Exception, match=refusal):
            import_file(path)


def test_tf_keras_1_initializers_with_a_dtype_are_read(tmp_path):
    """tf.keras 1.x-2.3 wrote TensorFlow's initializers with their dtype
    (``GlorotUniform(dtype="float32")``; the corpus's mnist-cnn-tf224): read as Keras's."""
    config = _config()
    for layer in config["config"]["layers"][2:]:
        for key in ("kernel_initializer", "bias_initializer"):
            layer["config"][key]["config"]["dtype"] = "float32"
    path = tmp_path / "m.json"
    path.write_text(json.dumps(config))
    imported = import_file(path)
    assert "dtype" not in imported.text  # Keras's defaults, left out of the text

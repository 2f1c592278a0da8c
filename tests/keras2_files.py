"""Model files as Keras 2 and tf.keras wrote them, written by hand for the tests: configs
shaped as tf.keras 2.x's ``to_json`` and ``model.save`` write them, and the ``.h5`` layout of
tf.keras 2.x's full-model files (the config and version on the root, a group per layer under
``model_weights`` whose ``weight_names`` carry the variable scopes). No Keras is needed to
write them, and none runs when they are read."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import onnx
import onnxruntime as ort


def tf_keras_conv(rank: int, filters: int, data_format: str) -> dict:
    return {
        "class_name": f"Conv{rank}D",
        "config": {
            "name": "conv",
            "trainable": True,
            "dtype": "float32",
            "filters": filters,
            "kernel_size": [1] * rank,
            "strides": [1] * rank,
            "padding": "valid",
            "data_format": data_format,
            "dilation_rate": [1] * rank,
            "groups": 1,
            "activation": "linear",
            "use_bias": True,
            "kernel_initializer": {"class_name": "GlorotUniform", "config": {"seed": None}},
            "bias_initializer": {"class_name": "Zeros", "config": {}},
            "kernel_regularizer": None,
            "bias_regularizer": None,
            "activity_regularizer": None,
            "kernel_constraint": None,
            "bias_constraint": None,
        },
    }


def input_layer(name: str, shape) -> dict:
    return {
        "class_name": "InputLayer",
        "config": {
            "batch_input_shape": [None, *shape],
            "dtype": "float32",
            "sparse": False,
            "ragged": False,
            "name": name,
        },
    }


def functional(entries: list[dict], shape) -> dict:
    """tf.keras 2.x's functional config: a chain from an input named 'image'."""
    layers = [{**input_layer("image", shape), "name": "image", "inbound_nodes": []}]
    for entry in entries:
        name = entry["config"]["name"]
        layers.append({**entry, "name": name, "inbound_nodes": [[[layers[-1]["name"], 0, 0, {}]]]})
    return {
        "class_name": "Functional",
        "config": {
            "name": "model",
            "layers": layers,
            "input_layers": [["image", 0, 0]],
            "output_layers": [[layers[-1]["name"], 0, 0]],
        },
    }


def sequential(entries: list[dict], shape) -> dict:
    """tf.keras 2.x's Sequential config, its input an InputLayer entry."""
    return {
        "class_name": "Sequential",
        "config": {"name": "sequential", "layers": [input_layer("input_1", shape), *entries]},
    }


def write_h5(path: Path, config: dict, version: str, weights: dict[str, list]) -> Path:
    """A full-model .h5 as tf.keras 2.x saved it: the config and version on the root, a group
    per layer under ``model_weights`` whose ``weight_names`` carry the variable scopes."""
    with h5py.File(path, "w") as handle:
        handle.attrs["keras_version"] = version
        handle.attrs["backend"] = "tensorflow"
        handle.attrs["model_config"] = json.dumps(config)
        group = handle.create_group("model_weights")
        layers = config["config"]["layers"]
        names = [
            entry["config"]["name"]
            for entry in layers
            if config["class_name"] != "Sequential" or entry["class_name"] != "InputLayer"
        ]
        group.attrs["layer_names"] = [name.encode() for name in names]
        group.attrs["backend"] = b"tensorflow"
        group.attrs["keras_version"] = version.encode()
        for name in names:
            layer = group.create_group(name)
            keys = [f"{name}/{variable}:0" for variable, _ in weights.get(name, [])]
            layer.attrs["weight_names"] = [key.encode() for key in keys]
            for key, (_, array) in zip(keys, weights.get(name, []), strict=True):
                layer.create_dataset(key, data=array)
    return path


def write_json(path: Path, config: dict, version: str) -> Path:
    path.write_text(json.dumps({**config, "keras_version": version, "backend": "tensorflow"}))
    return path


def onnxruntime_output(proto: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    """The first output of a one-input model run in onnxruntime on the CPU, one thread."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(
        proto.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
    return session.run(None, {session.get_inputs()[0].name: x})[0]

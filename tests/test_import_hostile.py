"""Keras model files that are broken or hostile: each is refused quickly, with a precise
message, and nothing is written. Also Keras 2 (tf.keras) files, written here by hand in the
format tf.keras saves, since TensorFlow is not installed."""

from __future__ import annotations

import io
import json
import os
import time
import zipfile

import h5py
import numpy as np
import pytest

from oracle import ATOL, RTOL, keras_outputs, onnx_outputs, random_weights

os.environ.setdefault("KERAS_BACKEND", "torch")
import keras  # noqa: E402
from keras import layers  # noqa: E402

from convc.cli import main  # noqa: E402
from convc.compiler import compile_model  # noqa: E402
from convc.diagnostics import ConvcError  # noqa: E402
from convc.importer import files, import_file  # noqa: E402


@pytest.fixture(scope="module")
def good(tmp_path_factory) -> bytes:
    """A small valid .keras file's bytes."""
    keras.backend.clear_session()
    x = keras.Input((8, 8, 3), name="image")
    y = layers.Conv2D(4, 3, name="conv")(x)
    model = keras.Model(x, layers.BatchNormalization(name="bn")(y))
    random_weights(model)
    path = tmp_path_factory.mktemp("good") / "m.keras"
    model.save(path)
    return path.read_bytes()


def _members(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def _zip(members: dict[str, bytes], compression=zipfile.ZIP_STORED) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return out.getvalue()


def _with_config(good: bytes, edit) -> bytes:
    members = _members(good)
    config = json.loads(members["config.json"])
    edit(config)
    members["config.json"] = json.dumps(config).encode()
    return _zip(members)


def _with_weights(good: bytes, edit) -> bytes:
    members = _members(good)
    buffer = io.BytesIO(members["model.weights.h5"])
    with h5py.File(buffer, "a") as handle:
        edit(handle)
    members["model.weights.h5"] = buffer.getvalue()
    return _zip(members)


def _deep(depth: int) -> bytes:
    return b'{"class_name": "Functional", "config": ' + b"[" * depth + b"]" * depth + b"}"


HOSTILE = {
    "truncated-archive": (lambda good: good[: len(good) // 2], "not a readable .keras archive"),
    "central-directory-cut": (lambda good: good[:-30], "not a readable .keras archive"),
    "path-traversal": (
        lambda good: _zip({**_members(good), "../../evil.sh": b"rm -rf /"}),
        "a member whose path escapes it: '../../evil.sh'",
    ),
    "absolute-member": (
        lambda good: _zip({**_members(good), "/etc/passwd": b"x"}),
        "a member whose path escapes it",
    ),
    "no-config": (
        lambda good: _zip({k: v for k, v in _members(good).items() if k != "config.json"}),
        "it has no config.json",
    ),
    "config-bomb": (
        lambda good: _zip(
            {**_members(good), "config.json": b" " * (files.MAX_CONFIG_BYTES + 1)},
            zipfile.ZIP_DEFLATED,
        ),
        f"config.json is {files.MAX_CONFIG_BYTES + 1:,} bytes; convc reads at most "
        f"{files.MAX_CONFIG_BYTES:,}",
    ),
    "config-nests-10000-deep": (
        lambda good: _zip({**_members(good), "config.json": _deep(10_000)}),
        "nests 10,001 levels deep",
    ),
    "config-not-json": (
        lambda good: _zip({**_members(good), "config.json": b"{'python': True}"}),
        "config is not valid JSON",
    ),
    "config-not-a-model": (
        lambda good: _zip({**_members(good), "config.json": b"[1, 2, 3]"}),
        "not a serialized Keras model",
    ),
    "subclassed-model": (
        lambda good: _with_config(good, lambda c: c.update(class_name="MyModel")),
        "holds a 'MyModel', not a Sequential or Functional model",
    ),
    "config-lies-about-filters": (
        lambda good: _with_config(
            good, lambda c: c["config"]["layers"][1]["config"].update(filters=5)
        ),
        "conv/kernel has shape (3, 3, 3, 4), expected (3, 3, 3, 5)",
    ),
    "weights-lie-about-shape": (
        lambda good: _with_weights(
            good,
            lambda h: (
                h.__delitem__("layers/conv2d/vars/0"),
                h.create_dataset("layers/conv2d/vars/0", data=np.zeros((9, 9, 9, 9), "f4")),
            ),
        ),
        "conv/kernel has shape (9, 9, 9, 9), expected (3, 3, 3, 4)",
    ),
    "weights-missing-a-variable": (
        lambda good: _with_weights(
            good, lambda h: h.__delitem__("layers/batch_normalization/vars/3")
        ),
        "layer 'bn' (BatchNormalization) has 3 arrays in the file; convc expects 4",
    ),
    "no-weights-member": (
        lambda good: _zip({k: v for k, v in _members(good).items() if k != "model.weights.h5"}),
        "the .keras archive has no model.weights.h5",
    ),
    "weights-not-hdf5": (
        lambda good: _zip({**_members(good), "model.weights.h5": b"\x89HDF\r\n\x1a\n" + b"0" * 64}),
        "cannot read the HDF5 data",
    ),
    "inbound-loop": (
        lambda good: _with_config(
            good,
            lambda c: c["config"]["layers"][1]["inbound_nodes"][0]["args"][0]["config"].update(
                keras_history=["bn", 0, 0]
            ),
        ),
        "has a loop or a layer fed by a tensor that no layer makes: bn, conv",
    ),
    "empty-file": (lambda good: b"", "not valid JSON"),
    "random-bytes": (lambda good: bytes(range(256)) * 4, "not a Keras model file"),
}


@pytest.mark.parametrize("case", list(HOSTILE))
def test_hostile_file_is_refused_quickly_and_nothing_is_written(case, good, tmp_path, capsys):
    make, expected = HOSTILE[case]
    path = tmp_path / "m.keras"
    path.write_bytes(make(good))
    start = time.monotonic()
    with pytest.raises(ConvcError) as caught:
        import_file(path)
    assert expected in caught.value.message, caught.value.message
    output = tmp_path / "m.onnx"
    assert main(["build", str(path), "-o", str(output)]) == 1
    assert time.monotonic() - start < 10
    assert not output.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.keras"]
    assert "error:" in capsys.readouterr().err


def test_a_real_config_meets_the_limit_on_values_before_the_limit_on_bytes():
    """The config Keras writes for MAX_LAYERS of a layer fits the limit on bytes wherever it
    fits the limit on values: the limit on values bounds the memory parsing takes, the one on
    bytes only what is read. 64 MiB refused a Sequential of 100,000 Dense layers (76 MB,
    5.4 million values)."""
    from convc.importer.files import MAX_CONFIG_BYTES, _json_shape
    from convc.limits import MAX_CONFIG_VALUES, MAX_LAYERS

    keras.backend.clear_session()
    x = inputs = keras.Input((8, 8, 4))
    for layer in [
        layers.Conv2D(4, 3, padding="same"),
        layers.BatchNormalization(),
        layers.ReLU(),
        layers.DepthwiseConv2D(3, padding="same"),
        layers.SeparableConv2D(4, 3, padding="same"),
        layers.Conv2DTranspose(4, 3, padding="same"),
        layers.LayerNormalization(),
        layers.Flatten(),
        layers.Dense(4),
    ]:
        x = layer(x)
    functional = keras.saving.serialize_keras_object(keras.Model(inputs, x))
    sequential = keras.saving.serialize_keras_object(keras.Sequential([layers.Dense(4)]))
    entries = functional["config"]["layers"][1:] + sequential["config"]["layers"]
    assert len(entries) == 10
    for entry in entries:
        text = json.dumps(entry).encode()
        values = _json_shape(text)[1]
        layers_by_values = MAX_CONFIG_VALUES // values
        assert len(text) * min(layers_by_values, MAX_LAYERS) <= MAX_CONFIG_BYTES, (
            entry["class_name"],
            len(text),
            values,
        )


@pytest.mark.parametrize("form", ["functional", "sequential"])
def test_the_text_of_keras_layers_fits_its_limits_at_max_layers(form):
    """The text and the syntax convc writes a statement for Keras's own layers, named as Keras
    names the 100,000th of each, fit ``limits.imported_text_chars`` and
    ``imported_syntax_values`` at MAX_LAYERS: 32 characters a statement refused a functional
    chain of Conv2D, BatchNormalization and ReLU of 60,000 layers (42.8 a statement)."""
    from convc.importer import _input_shapes
    from convc.importer.graph import flatten
    from convc.importer.text import unsupported, write_text
    from convc.limits import MAX_LAYERS, imported_syntax_values, imported_text_chars

    keras.backend.clear_session()
    made = []
    for unit in range(40):
        made += [
            layers.Conv2D(8, 3, padding="same", name=f"conv2d_{99_900 + unit}"),
            layers.BatchNormalization(name=f"batch_normalization_{99_900 + unit}"),
            layers.ReLU(name=f"re_lu_{99_900 + unit}"),
            layers.DepthwiseConv2D(3, padding="same", name=f"depthwise_conv2d_{99_900 + unit}"),
            layers.SeparableConv2D(8, 1, name=f"separable_conv2d_{99_900 + unit}"),
        ]
    if form == "functional":
        x = inputs = keras.Input((8, 8, 8))
        for layer in made:
            x = layer(x)
        model = keras.Model(inputs, x)
    else:
        model = keras.Sequential([keras.Input((8, 8, 8)), *made])
    graph = flatten(json.loads(model.to_json()), "m.keras")
    assert unsupported(graph) == []
    written = write_text(graph, "# m", _input_shapes(graph, {}, "m.keras"))
    statements = len(graph.inputs) + len(graph.layers) + len(graph.applications)
    at_most = 1 + 2 * MAX_LAYERS  # an input, and each layer with its one call
    chars, values = len(written.text) / statements, written.values / statements
    assert chars * at_most <= imported_text_chars(at_most), (chars, values)
    assert values * at_most <= imported_syntax_values(at_most), (chars, values)


def test_a_compressed_weights_member_inflates_only_as_far_as_the_model_needs(good, tmp_path):
    """A deflated model.weights.h5 padded with zeros (a zip bomb: 40 KB that inflates to 40 MiB)
    is refused as soon as it passes what a weights file of this model can hold, and the same
    archive without the padding, deflated, builds."""
    members = _members(good)
    padded = {**members, "model.weights.h5": members["model.weights.h5"] + bytes(40 << 20)}
    path = tmp_path / "m.keras"
    path.write_bytes(_zip(padded, zipfile.ZIP_DEFLATED))
    assert path.stat().st_size < 100_000
    with pytest.raises(ConvcError, match=r"model.weights.h5 expands past [0-9,]+ bytes"):
        import_file(path)
    path.write_bytes(_zip(members, zipfile.ZIP_DEFLATED))
    assert import_file(path).weights


def test_a_weights_file_given_as_a_model_says_what_to_do(tmp_path):
    keras.backend.clear_session()
    x = keras.Input((4,))
    model = keras.Model(x, layers.Dense(2)(x))
    path = tmp_path / "m.weights.h5"
    model.save_weights(path)
    renamed = tmp_path / "m.h5"
    path.rename(renamed)
    with pytest.raises(ConvcError, match="holds no model config") as caught:
        import_file(renamed)
    assert "weights file" in caught.value.help


# --- Keras 2 (tf.keras) full-model .h5, written as tf.keras writes it -------------------------


def _keras2_h5(path, config: dict, weights: dict[str, list[tuple[str, np.ndarray]]]) -> None:
    with h5py.File(path, "w") as handle:
        handle.attrs["keras_version"] = "2.15.0"
        handle.attrs["backend"] = "tensorflow"
        handle.attrs["model_config"] = json.dumps(config)
        group = handle.create_group("model_weights")
        group.attrs["layer_names"] = [name.encode() for name in weights]
        for layer, variables in weights.items():
            layer_group = group.create_group(layer)
            layer_group.attrs["weight_names"] = [name.encode() for name, _ in variables]
            for name, array in variables:
                layer_group.create_dataset(name, data=array)


def test_keras2_functional_h5(tmp_path):
    rng = np.random.default_rng(0)
    kernel = rng.standard_normal((3, 3, 2, 4)).astype("f4")
    bias = rng.standard_normal(4).astype("f4")
    dense = rng.standard_normal((4, 3)).astype("f4"), rng.standard_normal(3).astype("f4")
    glorot = {"class_name": "GlorotUniform", "config": {"seed": None}}
    config = {
        "class_name": "Functional",
        "config": {
            "name": "model",
            "layers": [
                {
                    "class_name": "InputLayer",
                    "config": {
                        "batch_input_shape": [None, 10, 10, 2],
                        "dtype": "float32",
                        "sparse": False,
                        "ragged": False,
                        "name": "input_1",
                    },
                    "name": "input_1",
                    "inbound_nodes": [],
                },
                {
                    "class_name": "Conv2D",
                    "config": {
                        "name": "conv2d",
                        "trainable": True,
                        "dtype": "float32",
                        "filters": 4,
                        "kernel_size": [3, 3],
                        "strides": [1, 1],
                        "padding": "same",
                        "data_format": "channels_last",
                        "dilation_rate": [1, 1],
                        "groups": 1,
                        "activation": "relu",
                        "use_bias": True,
                        "kernel_initializer": glorot,
                        "bias_initializer": {"class_name": "Zeros", "config": {}},
                        "kernel_regularizer": None,
                        "bias_regularizer": None,
                        "activity_regularizer": None,
                        "kernel_constraint": None,
                        "bias_constraint": None,
                    },
                    "name": "conv2d",
                    "inbound_nodes": [[["input_1", 0, 0, {}]]],
                },
                {
                    "class_name": "Add",
                    "config": {"name": "add", "trainable": True, "dtype": "float32"},
                    "name": "add",
                    "inbound_nodes": [[["conv2d", 0, 0, {}], ["conv2d", 0, 0, {}]]],
                },
                {
                    "class_name": "GlobalAveragePooling2D",
                    "config": {
                        "name": "pool",
                        "trainable": True,
                        "dtype": "float32",
                        "data_format": "channels_last",
                        "keepdims": False,
                    },
                    "name": "pool",
                    "inbound_nodes": [[["add", 0, 0, {}]]],
                },
                {
                    "class_name": "Dense",
                    "config": {
                        "name": "dense",
                        "trainable": True,
                        "dtype": "float32",
                        "units": 3,
                        "activation": "linear",
                        "use_bias": True,
                        "kernel_initializer": glorot,
                        "bias_initializer": {"class_name": "Zeros", "config": {}},
                        "kernel_regularizer": None,
                        "bias_regularizer": None,
                        "activity_regularizer": None,
                        "kernel_constraint": None,
                        "bias_constraint": None,
                    },
                    "name": "dense",
                    "inbound_nodes": [[["pool", 0, 0, {}]]],
                },
            ],
            "input_layers": [["input_1", 0, 0]],
            "output_layers": [["dense", 0, 0]],
        },
        "keras_version": "2.15.0",
        "backend": "tensorflow",
    }
    weights = {
        "input_1": [],
        "conv2d": [("conv2d/kernel:0", kernel), ("conv2d/bias:0", bias)],
        "add": [],
        "pool": [],
        "dense": [("dense/kernel:0", dense[0]), ("dense/bias:0", dense[1])],
    }
    path = tmp_path / "tf_keras.h5"
    _keras2_h5(path, config, weights)
    imported = import_file(path)
    proto = compile_model(imported.model, imported.weights)

    keras.backend.clear_session()
    x = keras.Input((10, 10, 2))
    y = layers.Conv2D(4, 3, padding="same", activation="relu")(x)
    y = layers.Dense(3)(layers.GlobalAveragePooling2D()(layers.Add()([y, y])))
    twin = keras.Model(x, y)
    twin.set_weights([kernel, bias, *dense])
    xs = [np.random.default_rng(1).standard_normal((2, 10, 10, 2)).astype("f4")]
    np.testing.assert_allclose(
        onnx_outputs(proto, xs)[0], keras_outputs(twin, xs)[0], atol=ATOL, rtol=RTOL
    )


def test_keras2_sequential_h5_without_an_input_layer(tmp_path):
    """tf.keras's Sequential: the first layer declares batch_input_shape; no InputLayer."""
    rng = np.random.default_rng(2)
    kernel = rng.standard_normal((3, 2, 5)).astype("f4")
    bias = rng.standard_normal(5).astype("f4")
    config = {
        "class_name": "Sequential",
        "config": {
            "name": "sequential",
            "layers": [
                {
                    "class_name": "Conv1D",
                    "config": {
                        "name": "conv1d",
                        "trainable": True,
                        "batch_input_shape": [None, 12, 2],
                        "dtype": "float32",
                        "filters": 5,
                        "kernel_size": [3],
                        "strides": [2],
                        "padding": "causal",
                        "data_format": "channels_last",
                        "dilation_rate": [1],
                        "groups": 1,
                        "activation": "elu",
                        "use_bias": True,
                        "kernel_initializer": {"class_name": "HeNormal", "config": {"seed": 4}},
                        "bias_initializer": {"class_name": "Zeros", "config": {}},
                        "kernel_regularizer": {"class_name": "L2", "config": {"l2": 0.01}},
                        "bias_regularizer": None,
                        "activity_regularizer": None,
                        "kernel_constraint": None,
                        "bias_constraint": None,
                    },
                },
                {
                    "class_name": "GlobalMaxPooling1D",
                    "config": {"name": "pool", "trainable": True, "dtype": "float32"},
                },
            ],
        },
    }
    path = tmp_path / "seq.h5"
    _keras2_h5(
        path, config, {"conv1d": [("conv1d/kernel:0", kernel), ("conv1d/bias:0", bias)], "pool": []}
    )
    imported = import_file(path)
    assert imported.text.splitlines()[2] == 'Input(shape=(12, 2), name="input_layer")'
    proto = compile_model(imported.model, imported.weights)

    keras.backend.clear_session()
    twin = keras.Sequential(
        [
            keras.Input((12, 2)),
            layers.Conv1D(5, 3, strides=2, padding="causal", activation="elu"),
            layers.GlobalMaxPooling1D(),
        ]
    )
    twin.set_weights([kernel, bias])
    xs = [np.random.default_rng(3).standard_normal((2, 12, 2)).astype("f4")]
    np.testing.assert_allclose(
        onnx_outputs(proto, xs)[0], keras_outputs(twin, xs)[0], atol=ATOL, rtol=RTOL
    )


_MUTANTS = [None, 0, -1, 1.5, "", "x", [], {}, [None], {"a": 1}, True, 10**12, [1, 2, 3], [[1]]]


def _paths(value, path=()):
    yield path
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _paths(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _paths(item, (*path, index))


def test_mutated_configs_import_or_are_refused_never_crash(good, tmp_path):
    """Every value of a real config replaced by a value of another type, or deleted, one to
    three at a time (seeded): each file imports or is refused with a ConvcError; nothing else."""
    import random

    members = _members(good)
    base = json.loads(members["config.json"])
    places = list(_paths(base))[1:]
    rng = random.Random(20261130)
    outcomes = {"imported": 0, "refused": 0}
    path = tmp_path / "m.keras"
    for _ in range(150):
        config = json.loads(json.dumps(base))
        for _ in range(rng.randint(1, 3)):
            *parents, last = rng.choice(places)
            holder = config
            try:
                for key in parents:
                    holder = holder[key]
                if isinstance(holder, dict) and rng.random() < 0.3:
                    del holder[last]
                else:
                    holder[last] = rng.choice(_MUTANTS)
            except (KeyError, IndexError, TypeError):  # an earlier mutation removed the place
                pass
        path.write_bytes(_zip({**members, "config.json": json.dumps(config).encode()}))
        try:
            import_file(path)
            outcomes["imported"] += 1
        except ConvcError:
            outcomes["refused"] += 1
    assert outcomes["imported"] >= 20 and outcomes["refused"] >= 50, outcomes

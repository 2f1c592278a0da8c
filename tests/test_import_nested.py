"""Models inside models (#24): every format that Keras 3 and tf.keras write a nested model in
imports, builds and computes what that Keras computed.

* Keras 3 is the oracle for its own files: each case is built here, given random weights, and
  saved as ``.keras``, legacy ``.h5`` and JSON with a ``.weights.h5``; convc's ONNX model must
  give Keras's outputs. Keras 3 numbers a nested Functional's calls from 1 in ``output_layers``
  (its calls from 0 elsewhere): a nested model as the model's output is ``["block", 1, 0]``.
* tf.keras is not installed here: ``tests/fixtures/tf_keras_nested/`` holds small models that
  tf_keras 2.21 saved (``.h5``, ``.keras`` and JSON) with random weights and the outputs
  tf_keras computed for recorded inputs, written by ``tests/fixtures/make_tf_keras_nested.py``.
  tf.keras numbers a nested model's calls from 1 everywhere, and stores a nested model's weights
  in a ``.h5`` in one group, trainable ones first, assigned by position on loading.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest

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

from convc.cli import main  # noqa: E402
from convc.compiler import compile_model, load_source  # noqa: E402
from convc.diagnostics import ConvcError  # noqa: E402
from convc.importer import import_file  # noqa: E402

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "tf_keras_nested"

# --- Keras 3 ------------------------------------------------------------------------------------

CASES = {
    # the case: a nested functional model is the model's output
    "functional-block-as-output": """
        i = keras.Input((6, 6, 3))
        y = layers.Conv2D(3, 3, padding="same")(i)
        block = keras.Model(i, layers.BatchNormalization()(y), name="block")
        x = keras.Input((6, 6, 3), name="image")
        model = keras.Model(x, block(layers.ReLU()(x)))
    """,
    "shared-block-and-its-second-call-as-outputs": """
        i = keras.Input((5, 4))
        block = keras.Model(i, layers.Conv1D(4, 3, padding="same", activation="tanh")(i), name="block")
        x = keras.Input((5, 4), name="seq")
        a = block(x)
        b = block(a)
        model = keras.Model(x, [layers.Add()([a, b]), b, a])
    """,
    "sequential-as-output": """
        head = keras.Sequential([layers.Dense(5), layers.LayerNormalization()], name="head")
        x = keras.Input((7,), name="features")
        model = keras.Model(x, head(layers.Dense(7, activation="relu")(x)))
    """,
    "functional-in-sequential-in-functional-with-a-frozen-layer": """
        i = keras.Input((6,))
        core = keras.Model(i, layers.BatchNormalization()(layers.Dense(6)(i)), name="core")
        frozen = layers.Dense(6, activation="tanh")
        frozen.trainable = False
        mid = keras.Sequential(
            [keras.Input((6,)), layers.Dense(6), core, frozen, layers.BatchNormalization()],
            name="mid",
        )
        x = keras.Input((6,), name="features")
        model = keras.Model(x, mid(layers.Dense(6)(x)))
    """,
    "two-inputs-two-outputs-called-twice": """
        a = keras.Input((4,))
        b = keras.Input((4,))
        s = layers.Dense(3)(layers.Add()([a, b]))
        d = layers.Dense(2)(layers.Subtract()([a, b]))
        pair = keras.Model([a, b], [s, d], name="pair")
        x = keras.Input((4,), name="x")
        z = keras.Input((4,), name="z")
        p, q = pair([x, z])
        r, t = pair([z, layers.Dense(4)(x)])
        model = keras.Model([x, z], [layers.Concatenate()([p, r]), q, t])
    """,
    "dict-outputs-of-a-nested-model": """
        i = keras.Input((4,))
        parts = keras.Model(
            i, {"zeta": layers.Dense(3)(i), "alpha": layers.Dense(2)(i)}, name="parts"
        )
        x = keras.Input((4,), name="x")
        out = parts(x)
        model = keras.Model(x, [layers.Dense(2)(out["zeta"]), out["alpha"]])
    """,
}


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """Each case built by Keras with random weights, saved as .keras, .h5, and JSON beside a
    .weights.h5; with Keras's outputs for fixed inputs."""
    root = tmp_path_factory.mktemp("nested")
    cache = {}

    def get(case: str):
        if case not in cache:
            model = keras_from_code(CASES[case])
            random_weights(model)
            paths = save_model_files(model, root, case)
            xs = inputs_for(model, batch=2)
            cache[case] = (paths, xs, keras_outputs(model, xs))
        return cache[case]

    return get


def _assert_close(actual: list, expected: list) -> None:
    assert len(actual) == len(expected)
    for mine, theirs in zip(actual, expected, strict=True):
        assert mine.shape == theirs.shape
        np.testing.assert_allclose(mine, theirs, atol=ATOL, rtol=RTOL)


@pytest.mark.parametrize("fmt", ["keras", "h5", "json"])
@pytest.mark.parametrize("case", list(CASES))
def test_keras3_nested_model_builds_and_matches_keras(case, fmt, saved):
    paths, xs, expected = saved(case)
    if fmt == "json":  # JSON with the weights model.save_weights wrote
        loaded = load_source(paths["json"])
        proto = compile_model(loaded.model, paths["weights"])
    else:
        imported = import_file(paths[fmt])
        proto = compile_model(imported.model, imported.weights)
    _assert_close(onnx_outputs(proto, xs), expected)


def test_keras3_numbers_a_nested_functional_output_from_one(saved):
    """What the file says, so that the case above tests the numbering it means to."""
    paths, _, _ = saved("functional-block-as-output")
    config = json.loads(paths["json"].read_text())["config"]
    assert config["output_layers"] == ["block", 1, 0]


def test_json_and_weights_with_one_layer_name_in_two_nested_models_is_refused(tmp_path):
    keras.backend.clear_session()
    x = keras.Input((3,), name="x")
    first = keras.Sequential([layers.Dense(3, name="dense")], name="first")
    second = keras.Sequential([layers.Dense(3, name="dense")], name="second")
    model = keras.Model(x, second(first(x)))
    random_weights(model)
    model.save_weights(tmp_path / "m.weights.h5")
    (tmp_path / "m.json").write_text(model.to_json())
    loaded = load_source(tmp_path / "m.json")
    assert [layer.name for layer in loaded.model.layers] == ["dense", "dense_1"]
    with pytest.raises(ConvcError, match="both hold weights of a layer named 'dense'"):
        compile_model(loaded.model, tmp_path / "m.weights.h5")
    # the .keras file has the structure itself: it builds
    model.save(tmp_path / "m.keras")
    imported = import_file(tmp_path / "m.keras")
    xs = inputs_for(model)
    _assert_close(
        onnx_outputs(compile_model(imported.model, imported.weights), xs), keras_outputs(model, xs)
    )


def test_weights_of_nested_models_without_layer_names_are_refused(saved, tmp_path):
    """Keras before 3.6 did not name the groups: the flattened model cannot be matched."""
    paths, _, _ = saved("sequential-as-output")
    weights = tmp_path / "old.weights.h5"
    shutil.copy(paths["weights"], weights)
    with h5py.File(weights, "r+") as handle:
        handle.visititems(lambda name, item: item.attrs.pop("name", None))
    loaded = load_source(paths["json"])
    with pytest.raises(ConvcError, match="not the layer's name"):
        compile_model(loaded.model, weights)


# --- tf.keras (fixtures written by tf_keras 2.21) --------------------------------------------------

TF_KERAS_CASES = sorted(path.stem for path in FIXTURES.glob("*.h5"))


def _recorded(case: str) -> tuple[list[np.ndarray], list[np.ndarray]]:
    data = np.load(FIXTURES / f"{case}.npz")
    xs = [data[f"x{i}"] for i in range(sum(k.startswith("x") for k in data.files))]
    ys = [data[f"y{i}"] for i in range(sum(k.startswith("y") for k in data.files))]
    return xs, ys


def test_the_tf_keras_fixtures_are_there():
    assert TF_KERAS_CASES == [
        "sequential_of_models",
        "shared_block_as_output",
        "three_sequentials",
        "two_inputs_two_outputs",
        "two_levels_frozen",
    ]


@pytest.mark.parametrize("fmt", ["h5", "keras"])
@pytest.mark.parametrize("case", TF_KERAS_CASES)
def test_tf_keras_nested_model_builds_and_matches_tf_keras(case, fmt):
    xs, expected = _recorded(case)
    imported = import_file(FIXTURES / f"{case}.{fmt}")
    proto = compile_model(imported.model, imported.weights)
    _assert_close(onnx_outputs(proto, xs), expected)
    # the JSON is the same architecture: the same text, and with these weights the same model
    from_json = import_file(FIXTURES / f"{case}.json")
    assert from_json.text.splitlines()[1:] == imported.text.splitlines()[1:]
    again = compile_model(from_json.model, dict(imported.weights or {}))
    assert again.SerializeToString() == proto.SerializeToString()


def test_tf_keras_numbers_a_nested_models_calls_from_one():
    """What the fixtures say, so that the cases above test the numbering they mean to: the
    block is called twice, as node 1 and node 2, and its second call is an output."""
    config = json.loads((FIXTURES / "shared_block_as_output.json").read_text())["config"]
    block = next(layer for layer in config["layers"] if layer["name"] == "block")
    assert [node[0][:2] for node in block["inbound_nodes"]] == [["image", 0], ["block", 1]]
    assert config["output_layers"] == [["add", 0, 0], ["block", 2, 0]]
    deferred = json.loads((FIXTURES / "three_sequentials.json").read_text())["config"]
    pool = next(layer for layer in deferred["layers"] if layer["name"] == "pool")
    assert pool["inbound_nodes"] == [[["deferred", 1, 0, {}]]]


def test_tf_keras_nested_weights_are_assigned_by_position_whatever_their_names(tmp_path):
    """Keras 2 loads a nested model's group by position; the names' scopes may differ from the
    layers' names (Keras 2.0 and TF1 graphs made them unique: 'core_dense_1/kernel:0')."""
    path = tmp_path / "renamed.h5"
    shutil.copy(FIXTURES / "two_levels_frozen.h5", path)
    with h5py.File(path, "r+") as handle:
        group = handle["model_weights/mid"]
        renamed = []
        for index, raw in enumerate(group.attrs["weight_names"]):
            name = raw.decode() if isinstance(raw, bytes) else str(raw)
            new = f"scope_{index}/weight_{index}:0"
            group.move(name, new)
            renamed.append(new.encode())
        group.attrs["weight_names"] = renamed
    xs, expected = _recorded("two_levels_frozen")
    imported = import_file(path)
    _assert_close(onnx_outputs(compile_model(imported.model, imported.weights), xs), expected)


def test_tf_keras_nested_group_with_an_array_too_few_is_refused(tmp_path):
    path = tmp_path / "short.h5"
    shutil.copy(FIXTURES / "two_levels_frozen.h5", path)
    with h5py.File(path, "r+") as handle:
        group = handle["model_weights/mid"]
        group.attrs["weight_names"] = list(group.attrs["weight_names"])[:-1]
    with pytest.raises(
        ConvcError, match="nested model 'mid' has 13 arrays in the file; its layers have 14"
    ):
        import_file(path)


def test_a_call_past_a_nested_models_calls_is_refused_with_the_numbering(tmp_path):
    config = json.loads((FIXTURES / "shared_block_as_output.json").read_text())
    config["config"]["output_layers"][1] = ["block", 3, 0]
    path = tmp_path / "m.json"
    path.write_text(json.dumps(config))
    with pytest.raises(ConvcError) as caught:
        import_file(path)
    assert caught.value.message == (
        "an output of the model names ['block', 3, 0], which no layer makes: 'block' is called "
        "2 times (this file numbers its calls from 1)"
    )


def test_cli_builds_a_tf_keras_nested_model(tmp_path, capsys):
    output = tmp_path / "m.onnx"
    assert main(["build", str(FIXTURES / "three_sequentials.h5"), "-o", str(output)]) == 0
    assert output.exists()
    assert main(["check", str(FIXTURES / "two_inputs_two_outputs.h5")]) == 0
    assert "agree" in capsys.readouterr().out

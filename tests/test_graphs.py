"""Functional graphs against Keras 3, and what a graph adds: names, weights files, layouts,
the Sequential forms pasted from Keras code, TF1's layer functions.

Every case of ``graph_cases.GRAPH_CASES`` is run by Keras itself (the text is Python), given the
same random weights (biases included) and compared output by output, in ONNX Runtime and in
the NumPy reference.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from graph_cases import GRAPH_CASES

from convc.compiler import compile_text, resolve_text
from convc.weights import load, weight_keys

from oracle import (
    assert_matches_keras,
    inputs_for,
    keras_model,
    keras_outputs,
    onnx_outputs,
    random_weights,
)


@pytest.mark.parametrize("text", GRAPH_CASES)
def test_graph_matches_keras(text):
    model, proto = assert_matches_keras(text)
    ours = resolve_text(text)
    theirs = {
        layer.name: layer for layer in model.layers if layer.__class__.__name__ != "InputLayer"
    }
    assert sorted(layer.name for layer in ours.layers) == sorted(theirs)
    for layer in ours.layers:
        assert layer.parameter_count == theirs[layer.name].count_params(), layer.name
    assert [o.name for o in proto.graph.output] == [t.name for t in ours.outputs]
    onnx.checker.check_model(proto, full_check=True)


@pytest.mark.parametrize("text", GRAPH_CASES)
def test_graph_weights_h5_from_keras(text, tmp_path):
    """Keras's own .weights.h5 of the functional model loads by Keras's group keys."""
    model = keras_model(text)
    random_weights(model, seed=3)
    path = tmp_path / "model.weights.h5"
    model.save_weights(path)
    ours = resolve_text(text)
    loaded = load(ours, path)
    xs = inputs_for(model, batch=1)
    expected = keras_outputs(model, xs)
    actual = onnx_outputs(compile_text(text, path), xs)
    for mine, theirs in zip(actual, expected, strict=True):
        np.testing.assert_allclose(mine, theirs, atol=1e-4, rtol=1e-4)
    assert set(loaded) == {layer.name for layer in ours.layers}


def test_weight_keys_follow_keras_depth_order():
    """Keras lists a functional model's layers deepest first, not in the order they are made."""
    text = next(p.values[0] for p in GRAPH_CASES if p.id == "output-not-last-and-branch-order")
    keys = {key: getattr(op, "name", None) for key, op in weight_keys(resolve_text(text)).items()}
    model = keras_model(text)
    expected = {}
    counts: dict[str, int] = {}
    for layer in model.layers:
        base = {"InputLayer": "input_layer"}.get(type(layer).__name__) or layer.path.split("/")[0]
        base = (
            "input_layer" if type(layer).__name__ == "InputLayer" else _snake(type(layer).__name__)
        )
        n = counts.get(base, 0)
        counts[base] = n + 1
        expected[base if n == 0 else f"{base}_{n}"] = layer.name
    assert keys == expected


def _snake(name: str) -> str:
    import re

    name = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", name).lower()


def _ops(proto) -> list[str]:
    return [node.op_type for node in proto.graph.node]


@pytest.mark.parametrize(
    "case_id",
    [
        "unet-skip-concat",
        "resnet-strided-shortcut",
        "two-inputs-two-outputs",
        "shared-layer",
        "3d-residual",
        "wavenet-gated",
        "dict-outputs",
    ],
)
def test_channels_last_graph_transposes_once_per_input_and_output(case_id):
    text = next(p.values[0] for p in GRAPH_CASES if p.id == case_id)
    proto = compile_text(text)
    model = resolve_text(text)
    assert _ops(proto).count("Transpose") == len(model.inputs) + len(model.outputs)


def test_mixed_format_merge_converts_one_side_once():
    text = next(p.values[0] for p in GRAPH_CASES if p.id == "mixed-formats-meet-at-merge")
    proto = compile_text(text)
    # input in, the channels_last branch out of its Conv's layout for the merge, two outputs
    assert _ops(proto).count("Transpose") <= 4


def test_zero_padding_folds_only_without_other_consumers():
    text = next(p.values[0] for p in GRAPH_CASES if p.id == "pad-shared-by-two-consumers")
    assert "Pad" in _ops(compile_text(text))
    single = "inputs = Input(shape=(8, 8, 3))\np = ZeroPadding2D(1)(inputs)\nmodel = keras.Model(inputs, Conv2D(4, 3)(p))\n"
    assert "Pad" not in _ops(compile_text(single))


SEQUENTIAL = """Input(shape=(10, 10, 3))
Conv2D(4, 3, activation="relu")
ReLU(max_value=6.0)
Conv2D(2, 3)
"""

EQUIVALENT_FORMS = [
    pytest.param(
        "model = keras.Sequential([keras.Input(shape=(10, 10, 3)), layers.Conv2D(4, 3, "
        "activation='relu'), layers.ReLU(max_value=6.0), layers.Conv2D(2, 3)])\n",
        id="sequential-list",
    ),
    pytest.param(
        "model = keras.Sequential()\nmodel.add(keras.Input(shape=(10, 10, 3)))\n"
        "model.add(Conv2D(4, 3, activation='relu'))\nmodel.add(ReLU(max_value=6.0))\n"
        "model.add(Conv2D(2, 3))\n",
        id="model-add",
    ),
    pytest.param(
        "x = Input(shape=(10, 10, 3))\nConv2D(4, 3, activation='relu')\nReLU(max_value=6.0)\n"
        "Conv2D(2, 3)\n",
        id="bound-input-then-shorthand",
    ),
    pytest.param(
        "import tensorflow as tf\nx = tf.keras.Input(shape=(10, 10, 3))\n"
        "y = tf.layers.conv2d(x, 4, 3, activation='relu')\nz = ReLU(max_value=6.0)(y)\n"
        "out = tf.layers.Conv2D(2, 3)(z)\n",
        id="tf1-functions",
    ),
    pytest.param(
        "import keras.layers as L\ninputs = L.Input(shape=(10, 10, 3))\n"
        "x = L.Conv2D(4, 3, activation='relu')(inputs)\nL.ReLU(max_value=6.0)\n"
        "L.Conv2D(2, 3)\n",
        id="import-alias-and-mixed-forms",
    ),
]


@pytest.mark.parametrize("text", EQUIVALENT_FORMS)
def test_sequential_forms_compute_the_same(text):
    weights = {
        "conv2d/kernel": np.random.default_rng(0).standard_normal((3, 3, 3, 4)).astype(np.float32),
        "conv2d/bias": np.linspace(-1, 1, 4, dtype=np.float32),
        "conv2d_1/kernel": np.random.default_rng(1)
        .standard_normal((3, 3, 4, 2))
        .astype(np.float32),
        "conv2d_1/bias": np.linspace(-1, 1, 2, dtype=np.float32),
    }
    x = np.random.default_rng(2).standard_normal((2, 10, 10, 3)).astype(np.float32)
    (expected,) = onnx_outputs(compile_text(SEQUENTIAL, weights), [x])
    (actual,) = onnx_outputs(compile_text(text, weights), [x])
    np.testing.assert_allclose(actual, expected, atol=1e-6)


def test_sequential_files_stay_sequential():
    model = resolve_text(SEQUENTIAL)
    assert model.is_chain and model.name == "sequential"
    assert resolve_text("x = Input(shape=(4, 4, 1))\ny = Conv2D(1, 1)(x)\n").name == "functional"
    named = resolve_text(
        "model = keras.Sequential([Input(shape=(4, 4, 1)), Conv2D(1, 1)], name='s')\n"
    )
    assert named.name == "s"


def test_warnings_for_unused_inputs_and_unreachable_statements():
    model = resolve_text(
        "a = Input(shape=(4, 4, 1))\nb = Input(shape=(4, 4, 1))\nx = Conv2D(1, 1)(a)\n"
        "unused = Conv2D(2, 1)(a)\nmodel = keras.Model([a, b], x)\n"
    )
    messages = [(w.message, w.span.line) for w in model.warnings]
    assert ("the input 'input_layer_1' is not used by any output", 2) in messages
    assert any("conv2d_1" in m and line == 4 for m, line in messages)
    assert [n.name for n in model.nodes] == ["conv2d"]


def _siamese():
    from pathlib import Path

    return Path(__file__).parent.parent / "samples" / "siamese_two_heads.conv"


def test_cli_runs_and_checks_a_two_input_two_output_model(tmp_path, capsys):
    from convc.cli import main

    left, right = tmp_path / "l.npy", tmp_path / "r.npy"
    np.save(left, np.ones((1, 48, 48, 3), np.float32))
    np.save(right, np.zeros((1, 48, 48, 3), np.float32))
    out = tmp_path / "out.npz"
    assert main(["run", str(_siamese()), "--input", f"left={left}", "--input", f"right={right}",
                 "-o", str(out)]) == 0  # fmt: skip
    saved = np.load(out)
    assert sorted(saved.files) == ["difference", "score"]
    assert saved["score"].shape == (1, 1, 1, 1)
    assert main(["check", str(_siamese())]) == 0
    printed = capsys.readouterr().out
    assert "input left (1, 48, 48, 3), right (1, 48, 48, 3)" in printed
    assert "encode1[1]" in printed and "agree" in printed


def test_io_layout_channels_first_graph_has_no_transpose():
    proto = compile_text(_siamese().read_text(), io_layout="channels_first")
    assert "Transpose" not in _ops(proto)
    assert [d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim[1:]] == [3, 48, 48]


def test_shared_layer_has_one_set_of_weights():
    model = resolve_text(_siamese().read_text())
    assert [n.name for n in model.nodes if n.layer.name == "encode1"] == ["encode1", "encode1[1]"]
    proto = compile_text(_siamese().read_text())
    kernels = [i.name for i in proto.graph.initializer if i.name.startswith("encode1")]
    assert len(kernels) == 2  # one kernel and one bias, used by both applications


def test_tf1_conv3d_with_tf1_initializers_builds_like_keras():
    """The TF1 signatures of the seed documents: the functional tf.layers.conv3d and the class
    with TF1's initializer objects, dtype=tf.float32 and reuse= accepted."""
    tf1 = (
        "x = tf.keras.Input(shape=(6, 6, 6, 2), dtype=tf.float32)\n"
        "y = tf.layers.conv3d(x, 4, 3, padding='same', bias_initializer=tf.zeros_initializer(),"
        " kernel_initializer=tf.glorot_uniform_initializer(), reuse=None, name='c3')\n"
        "z = tf.layers.Conv3D(4, 3, bias_initializer=tf.zeros_initializer())(y)\n"
    )
    keras_text = (
        "x = Input(shape=(6, 6, 6, 2))\ny = Conv3D(4, 3, padding='same', name='c3')(x)\n"
        "z = Conv3D(4, 3)(y)\nmodel = keras.Model(x, z)\n"
    )
    model = keras_model(keras_text)
    arrays = random_weights(model)
    xs = inputs_for(model)
    (expected,) = keras_outputs(model, xs)
    (actual,) = onnx_outputs(compile_text(tf1, arrays), xs)
    np.testing.assert_allclose(actual, expected, atol=1e-4, rtol=1e-4)


def test_summary_of_a_graph_shows_connections_and_shared_layers():
    from convc.summary import summary

    text = summary(resolve_text(_siamese().read_text()))
    assert "Connected to" in text
    assert "left (InputLayer)" in text and "right (InputLayer)" in text
    assert "encode1[1] (Conv2D)" in text and "0 (shared)" in text
    assert "encode1[1][0]" in text  # encode2's second application reads encode1's second
    assert " Outputs: difference, score" in text
    assert "Connected to" not in summary(resolve_text(SEQUENTIAL))

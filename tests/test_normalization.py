"""Normalization layers beyond the per-layer table (cases.py): BatchNormalization folded into the
convolution before it (node counts, numbers, and where it must not fold), LayerNormalization over
inner axes (which Keras's torch backend computes wrongly), weights files, initializers, opsets,
and what Keras's torch backend refuses but convc takes."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import numpy_helper

from convc.compiler import compile_text, resolve_text
from convc.layer_check import check_layers as check
from convc.summary import summary
from convc.weights import initialize, load

from matrix import COLUMNS, FAIL, NOT_RUN, evaluate
from oracle import (
    assert_matches_keras,
    input_for,
    keras_model,
    keras_output,
    onnx_output,
    onnx_outputs,
    random_weights,
)

LAST = "Input(shape=(9, 8, 3))\n"
FIRST = "data_format channels_first\nInput(shape=(3, 9, 8))\n"

FOLDS = [
    ("conv2d-no-bias-bn-relu", LAST + "Conv2D(4, 3, use_bias=False)\nBatchNormalization()\nReLU()\n",
     ["Transpose", "Conv", "Relu", "Transpose"]),
    ("conv2d-linear-bn-activation-relu",
     LAST + "Conv2D(4, 3, activation=None)\nBatchNormalization()\nActivation('relu')\n",
     ["Transpose", "Conv", "Relu", "Transpose"]),
    ("conv2d-channels-first-bn-relu", FIRST + "Conv2D(4, 3)\nBatchNormalization(axis=1)\nReLU()\n",
     ["Conv", "Relu"]),
    ("conv2d-few-filters-taps-form", LAST + "Conv2D(2, 3, padding='same')\nBatchNormalization()\n",
     ["Transpose", "Conv", "Conv", "Transpose"]),
    ("conv2d-groups", LAST + "Conv2D(4, 3, groups=1)\nConv2D(6, 3, groups=2)\nBatchNormalization()\n",
     ["Transpose", "Conv", "Conv", "Transpose"]),
    ("conv1d-causal", "Input(shape=(9, 3))\nConv1D(4, 3, padding='causal')\nBatchNormalization()\n",
     ["Transpose", "Conv", "Transpose"]),
    ("conv3d", "Input(shape=(4, 5, 6, 3))\nConv3D(4, 2)\nBatchNormalization()\n",
     ["Transpose", "Conv", "Transpose"]),
    ("conv2d_transpose", LAST + "Conv2DTranspose(4, 3, strides=2)\nBatchNormalization()\n",
     ["Transpose", "ConvTranspose", "Transpose"]),
    ("depthwise2d", LAST + "DepthwiseConv2D(3, depth_multiplier=2)\nBatchNormalization()\n",
     ["Transpose", "Conv", "Transpose"]),
    ("separable2d-into-pointwise", LAST + "SeparableConv2D(5, 3)\nBatchNormalization()\n",
     ["Transpose", "Conv", "Conv", "Transpose"]),
    ("two-batch-norms", LAST + "Conv2D(4, 1)\nBatchNormalization()\nBatchNormalization()\n",
     ["Transpose", "Conv", "Transpose"]),
    ("conv-with-activation-keeps-bn",
     LAST + "Conv2D(4, 3, activation='relu')\nBatchNormalization()\n",
     ["Transpose", "Conv", "Relu", "BatchNormalization", "Transpose"]),
    ("bn-on-another-axis-keeps-bn", LAST + "Conv2D(4, 1)\nBatchNormalization(axis=1)\n",
     ["Transpose", "Conv", "Mul", "Add", "Transpose"]),
    ("bn-on-the-input", LAST + "BatchNormalization()\nConv2D(4, 3)\n",
     ["Mul", "Add", "Transpose", "Conv", "Transpose"]),
    ("conv-output-read-twice-keeps-bn",
     "x = Input(shape=(9, 8, 3))\nc = Conv2D(4, 3)(x)\nn = BatchNormalization()(c)\n"
     "y = Add()([n, c])\nmodel = keras.Model(x, y)\n",
     ["Transpose", "Conv", "BatchNormalization", "Add", "Transpose"]),
    ("conv-output-is-a-model-output-keeps-bn",
     "x = Input(shape=(9, 8, 3))\nc = Conv2D(4, 3)(x)\nn = BatchNormalization()(c)\n"
     "model = keras.Model(x, [c, n])\n",
     ["Transpose", "Conv", "BatchNormalization", "Transpose", "Transpose"]),
    ("conv-output-is-a-model-output-channels-first-keeps-bn",
     "keras.config.set_image_data_format('channels_first')\nx = Input(shape=(3, 9, 8))\n"
     "c = Conv2D(4, 3)(x)\nn = BatchNormalization(axis=1)(c)\nmodel = keras.Model(x, [c, n])\n",
     ["Conv", "BatchNormalization"]),
    ("shared-conv-folds-one-application",
     "x = Input(shape=(9, 8, 3))\nconv = Conv2D(4, 3)\na = conv(x)\nb = conv(x)\n"
     "n = BatchNormalization()(b)\ny = Add()([a, n])\nmodel = keras.Model(x, y)\n",
     ["Transpose", "Conv", "Conv", "Add", "Transpose"]),
]  # fmt: skip


@pytest.mark.parametrize(("text", "ops"), [pytest.param(*c[1:], id=c[0]) for c in FOLDS])
def test_batch_norm_folds_into_the_convolution(text, ops):
    """Node counts, Keras's numbers, and the numbers of the unfolded model (--no-optimize)."""
    model, proto = assert_matches_keras(text)
    assert [node.op_type for node in proto.graph.node] == ops
    arrays = random_weights(model)
    plain = compile_text(text, arrays, optimize=False)
    xs = [input_for(model)]
    for folded, unfolded in zip(
        onnx_outputs(compile_text(text, arrays), xs), onnx_outputs(plain, xs), strict=True
    ):
        np.testing.assert_allclose(folded, unfolded, atol=1e-5, rtol=1e-5)


def test_the_folded_kernel_is_the_scaled_kernel():
    """The fold itself, on known numbers: kernel * gamma / sqrt(var + eps) per output channel,
    bias (b - mean) * that + beta."""
    text = "Input(shape=(1, 1, 1))\nConv2D(2, 1, name='c')\nBatchNormalization(epsilon=0.0)\n"
    arrays = {
        "c/kernel": np.array([[[[1.0, 2.0]]]], np.float32),
        "c/bias": np.array([1.0, -1.0], np.float32),
        "batch_normalization/gamma": np.array([2.0, 3.0], np.float32),
        "batch_normalization/beta": np.array([0.5, 0.0], np.float32),
        "batch_normalization/moving_mean": np.array([1.0, 1.0], np.float32),
        "batch_normalization/moving_variance": np.array([4.0, 9.0], np.float32),
    }
    proto = compile_text(text, arrays)
    (conv,) = [n for n in proto.graph.node if n.op_type == "Conv"]
    tensors = {t.name: t for t in proto.graph.initializer}
    kernel, bias = (numpy_helper.to_array(tensors[name]) for name in conv.input[1:])
    np.testing.assert_allclose(kernel.ravel(), [1.0, 2.0])  # 2/2 and 2*3/3
    np.testing.assert_allclose(bias, [0.5, -2.0])  # (1-1)*1 + .5, (-1-1)*1 + 0


def test_no_optimize_keeps_the_batch_norm_node():
    text = LAST + "Conv2D(4, 3, use_bias=False)\nBatchNormalization()\nReLU()\n"
    ops = [n.op_type for n in compile_text(text, optimize=False).graph.node]
    assert ops == ["Transpose", "Conv", "BatchNormalization", "Relu", "Transpose"]


def test_check_compares_the_batch_norm_layer_on_its_own():
    """`convc check` exposes every layer's output, so nothing folds there."""
    model = resolve_text(LAST + "Conv2D(4, 3, use_bias=False)\nBatchNormalization()\nReLU()\n")
    weights = initialize(model, 0)
    weights["batch_normalization"]["moving_mean"] += 0.5
    report = check(model, weights, np.ones((1, 9, 8, 3), np.float32))
    assert report.ok
    assert [layer.name for layer in report.layers] == ["conv2d", "batch_normalization", "re_lu"]


# -- LayerNormalization over inner axes -----------------------------------------------------

INNER = [
    ("channels-first-axis1", FIRST + "Conv2D(5, 3)\nLayerNormalization(axis=1)\n"),
    ("rank3-steps", "Input(shape=(9, 4))\nLayerNormalization(axis=1, center=False)\n"),
    ("height-and-width", LAST + "Conv2D(4, 1)\nLayerNormalization(axis=[1, 2])\n"),
    ("channels-first-channels-and-height", FIRST + "LayerNormalization(axis=(1, 2), scale=False)\n"),
    ("rank5-inner", "Input(shape=(3, 4, 5, 2))\nLayerNormalization(axis=-2, epsilon=0.2)\n"),
]  # fmt: skip


@pytest.fixture
def keras_generic_layer_norm(monkeypatch):
    """Keras's backend-independent LayerNormalization (the one its JAX and TensorFlow backends
    run). On torch, Keras hands contiguous axes to torch's layer_norm, which normalizes the
    trailing axes whatever ``axis`` says: inner axes fail, or give other numbers when the
    trailing axes happen to have the same sizes."""
    import keras.src.ops.nn as keras_nn

    monkeypatch.setattr(keras_nn, "is_continuous_axis", lambda axis: False)


@pytest.mark.parametrize("text", [pytest.param(c[1], id=c[0]) for c in INNER])
def test_layer_norm_over_inner_axes(text, keras_generic_layer_norm):
    assert_matches_keras(text)
    for opset in (13, 17):
        assert_matches_keras(text, opset=opset)


@pytest.mark.parametrize(("target", "runtime"), COLUMNS, ids=[f"{t}@{r}" for t, r in COLUMNS])
@pytest.mark.parametrize("text", [pytest.param(c[1], id=c[0]) for c in INNER])
def test_layer_norm_over_inner_axes_in_every_runtime(text, target, runtime):
    cell = evaluate(text, runtime, target)
    if cell.status == NOT_RUN:
        pytest.skip(cell.detail)
    assert cell.status != FAIL, cell.detail


def test_keras_torch_layer_norm_over_an_inner_axis_is_its_trailing_axis():
    """The Keras bug that the fixture above works around, as it stands in Keras 3.15.1: where
    the trailing axis has the inner axis's size, torch normalizes the trailing one. convc
    normalizes the axis asked for, as Keras's other backends do."""
    text = "Input(shape=(3, 4, 3))\nLayerNormalization(axis=1)\n"
    model = keras_model(text)
    arrays = random_weights(model)
    x = input_for(model)
    ours = onnx_output(compile_text(text, arrays), x)
    gamma, beta = arrays["layer_normalization/gamma"], arrays["layer_normalization/beta"]
    last = (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + 1e-3)
    np.testing.assert_allclose(keras_output(model, x), last * gamma + beta, atol=1e-5)
    inner = (x - x.mean(1, keepdims=True)) / np.sqrt(x.var(1, keepdims=True) + 1e-3)
    np.testing.assert_allclose(ours, inner * gamma[:, None, None] + beta[:, None, None], atol=1e-5)


# -- weights, initializers, summary ----------------------------------------------------------

WEIGHTS_TEXT = (
    LAST
    + "Conv2D(4, 3, use_bias=False)\nBatchNormalization()\nReLU()\n"
    + "BatchNormalization(center=False, renorm=True)\nLayerNormalization(axis=[1, 2, 3])\n"
    + "GroupNormalization(2, scale=False)\nUnitNormalization()\nConv2D(2, 1)\n"
)


def test_keras_weights_h5_with_normalization_layers(tmp_path):
    model = keras_model(WEIGHTS_TEXT)
    random_weights(model, seed=5)
    path = tmp_path / "net.weights.h5"
    model.save_weights(path)
    loaded = load(resolve_text(WEIGHTS_TEXT), path)
    assert list(loaded["batch_normalization_1"]) == [
        "gamma",
        "moving_mean",
        "moving_variance",
        "moving_stddev",
        "renorm_mean",
        "renorm_stddev",
    ]
    x = input_for(model)
    np.testing.assert_allclose(
        onnx_output(compile_text(WEIGHTS_TEXT, path), x),
        keras_output(model, x),
        atol=1e-4,
        rtol=1e-4,
    )


def test_npz_keys_of_normalization_layers(tmp_path):
    model = keras_model(WEIGHTS_TEXT)
    arrays = random_weights(model, seed=6)
    assert {
        "batch_normalization/gamma",
        "batch_normalization/beta",
        "batch_normalization/moving_mean",
        "batch_normalization/moving_variance",
        "layer_normalization/gamma",
        "group_normalization/beta",
    } <= set(arrays)
    path = tmp_path / "net.npz"
    np.savez(path, **arrays)
    x = input_for(model)
    np.testing.assert_allclose(
        onnx_output(compile_text(WEIGHTS_TEXT, path), x),
        keras_output(model, x),
        atol=1e-4,
        rtol=1e-4,
    )


def test_initializers_draw_keras_defaults():
    model = resolve_text(WEIGHTS_TEXT)
    weights = initialize(model, seed=0)
    bn = weights["batch_normalization"]
    np.testing.assert_array_equal(bn["gamma"], np.ones(4))
    np.testing.assert_array_equal(bn["beta"], np.zeros(4))
    np.testing.assert_array_equal(bn["moving_mean"], np.zeros(4))
    np.testing.assert_array_equal(bn["moving_variance"], np.ones(4))
    np.testing.assert_array_equal(weights["batch_normalization_1"]["moving_stddev"], np.ones(4))
    np.testing.assert_array_equal(weights["layer_normalization"]["gamma"], np.ones((7, 6, 4)))
    assert set(weights["group_normalization"]) == {"beta"}


def test_initializers_are_honoured():
    text = LAST + (
        "BatchNormalization(moving_variance_initializer=keras.initializers.Constant(4.0), "
        "moving_mean_initializer='random_normal', renorm=True)\n"
    )
    weights = initialize(resolve_text(text), seed=0)["batch_normalization"]
    np.testing.assert_array_equal(weights["moving_variance"], np.full(3, 4.0))
    np.testing.assert_array_equal(weights["moving_stddev"], np.full(3, 2.0))  # sqrt, as Keras
    assert 0 < np.abs(weights["moving_mean"]).max() < 0.5  # RandomNormal(stddev=0.05)


def test_summary_counts_moving_statistics_as_non_trainable():
    text = LAST + "Conv2D(4, 3, use_bias=False)\nBatchNormalization()\n"
    model = keras_model(text)
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    assert trainable == 3 * 3 * 3 * 4 + 8
    lines = summary(resolve_text(text))
    assert f"Trainable params: {trainable}" in lines
    assert "Non-trainable params: 8 " in lines


# -- opsets, and what only other Keras backends take ------------------------------------------

EVERY_LAYER = (
    "Input(shape=(6, 7, 4))\n"
    "Conv2D(8, 3, padding='same', use_bias=False)\nBatchNormalization()\nReLU()\n"
    "BatchNormalization(axis=1)\nLayerNormalization()\nLayerNormalization(axis=[-1, 1])\n"
    "LayerNormalization(rms_scaling=True)\nGroupNormalization(4)\nUnitNormalization([1, 2])\n"
    "Conv2D(4, 1)\n"
)


@pytest.mark.parametrize("opset", range(13, 29))
def test_every_opset(opset):
    assert_matches_keras(EVERY_LAYER, opset=opset)


def test_synchronized_is_accepted_as_on_tensorflow():
    """Keras's torch and JAX backends refuse synchronized=True; its TensorFlow backend takes it,
    and it changes only training. convc takes it and computes the same."""
    text = LAST + "Conv2D(4, 1)\nBatchNormalization(synchronized={})\n"
    model = resolve_text(text.format(True))
    assert model.layers[1].spec.synchronized
    weights = initialize(model, 0)
    weights["batch_normalization"]["moving_mean"] += 1.0
    arrays = {f"{layer}/{name}": a for layer, vs in weights.items() for name, a in vs.items()}
    x = np.random.default_rng(0).standard_normal((2, 9, 8, 3)).astype(np.float32)
    np.testing.assert_array_equal(
        onnx_output(compile_text(text.format(True), arrays), x),
        onnx_output(compile_text(text.format(False), arrays), x),
    )

"""The graph rewrites: each pattern's node sequence, and the same numbers as Keras and as the
model built without rewrites (--no-optimize)."""

from __future__ import annotations

import numpy as np
import pytest

from convc.compiler import compile_text, resolve_text
from convc.layer_check import check_layers as check
from convc.weights import exercise, initialize

from oracle import assert_matches_keras, onnx_output

HEAD = "Input(shape=(9, 8, 3))\n"

CASES = [
    ("pad-into-valid-conv", "Conv2D(4, 1)\nZeroPadding2D(((1, 2), (0, 1)))\nConv2D(4, 3)\n",
     ["Transpose", "Conv", "Conv", "Transpose"]),
    ("pad-into-same-conv", "Conv2D(4, 1)\nZeroPadding2D(1)\nConv2D(4, 3, strides=2, padding='same')\n",
     ["Transpose", "Conv", "Conv", "Transpose"]),
    ("pad-into-depthwise", "Conv2D(4, 1)\nZeroPadding2D(1)\nDepthwiseConv2D(3)\n",
     ["Transpose", "Conv", "Conv", "Transpose"]),
    ("pad-into-separable", "Conv2D(4, 1)\nZeroPadding2D(1)\nSeparableConv2D(2, 3)\n",
     ["Transpose", "Conv", "Conv", "Conv", "Transpose"]),
    ("pad-then-crop-cancel", "Conv2D(4, 1)\nZeroPadding2D(1)\nCropping2D(1)\nConv2D(2, 1)\n",
     ["Transpose", "Conv", "Conv", "Transpose"]),
    ("pad-then-smaller-crop", "Conv2D(4, 1)\nZeroPadding2D(2)\nCropping2D(1)\nConv2D(2, 2, padding='same')\n",
     ["Transpose", "Conv", "Conv", "Conv", "Transpose"]),  # Conv2D(2, 2) moves its taps: 2 Convs
    ("pad-into-pointwise-conv-stays", "Conv2D(4, 1)\nZeroPadding2D(1)\nConv2D(3, 1)\n",
     ["Transpose", "Conv", "Pad", "Conv", "Transpose"]),  # portable: OpenCV cannot pad a 1x1 Conv
    ("pad-then-larger-crop", "Conv2D(4, 1)\nZeroPadding2D(1)\nCropping2D(((2, 1), (1, 3)))\nConv2D(2, 1)\n",
     ["Transpose", "Conv", "Slice", "Conv", "Transpose"]),
    ("pad-and-crop-mixed-stay", "Conv2D(4, 1)\nZeroPadding2D(((1, 0), (0, 1)))\nCropping2D(((0, 1), (1, 0)))\n",
     ["Transpose", "Conv", "Pad", "Slice", "Transpose"]),
    ("pad-before-transpose-conv-stays", "Conv2D(4, 1)\nZeroPadding2D(1)\nConv2DTranspose(2, 3)\n",
     ["Transpose", "Conv", "Pad", "ConvTranspose", "Transpose"]),
    # the input is transposed before its padding, so that the padding folds into the Conv
    ("pad-on-the-input-folds", "ZeroPadding2D(1)\nConv2D(3, 3)\n",
     ["Transpose", "Conv", "Transpose"]),
    ("pad-on-the-input-stays-before-upsampling", "ZeroPadding2D(1)\nUpSampling2D(2)\n",
     ["Pad", "Reshape", "Concat", "Concat", "Reshape"]),
    ("pad-as-last-layer-stays", "Conv2D(4, 1)\nZeroPadding2D(1)\n",
     ["Transpose", "Conv", "Pad", "Transpose"]),
    ("cancelling-pair-at-the-output-stays", "ZeroPadding2D(2)\nCropping2D(2)\n", ["Pad", "Slice"]),
    ("cancelling-pair-before-the-output-transpose", "Conv2D(4, 1)\nZeroPadding2D(2)\nCropping2D(2)\n",
     ["Transpose", "Conv", "Transpose"]),
    # a zero pad of non-negative values cannot win a max: the MaxPool pads instead
    ("pad-into-max-pool-after-relu", "Conv2D(4, 1, activation='relu')\nZeroPadding2D(1)\nMaxPooling2D(3, 2)\n",
     ["Transpose", "Conv", "Relu", "MaxPool", "Transpose"]),
    ("pad-into-same-max-pool-after-relu6", "Conv2D(4, 1)\nReLU(6.0)\nZeroPadding2D(((0, 1), (1, 0)))\nMaxPooling2D(3, padding='same')\n",
     ["Transpose", "Conv", "Clip", "MaxPool", "Transpose"]),
    ("pad-before-max-pool-of-negatives-stays", "Conv2D(4, 1)\nZeroPadding2D(1)\nMaxPooling2D(3, 2)\n",
     ["Transpose", "Conv", "Pad", "MaxPool", "Transpose"]),
    ("pad-as-wide-as-the-pool-stays", "Conv2D(4, 1, activation='relu')\nZeroPadding2D(2)\nMaxPooling2D(2)\n",
     ["Transpose", "Conv", "Relu", "Pad", "MaxPool", "Transpose"]),
    ("pad-before-leaky-relu-pool-stays", "Conv2D(4, 1)\nLeakyReLU()\nZeroPadding2D(1)\nMaxPooling2D(3)\n",
     ["Transpose", "Conv", "LeakyRelu", "Pad", "MaxPool", "Transpose"]),
    # the portable target's onnx.reference reads a unit-stride MaxPool's pads wrongly
    ("pad-before-unit-stride-max-pool-stays", "Conv2D(4, 1, activation='relu')\nZeroPadding2D(1)\nMaxPooling2D(3, strides=1)\n",
     ["Transpose", "Conv", "Relu", "Pad", "MaxPool", "Transpose"]),
    # a reduction over every spatial axis that keeps them is a global pool (onnxruntime keeps
    # those in its blocked layout); a classifier's, which drops them, stays a ReduceMean
    ("global-average-pool-keepdims", "Conv2D(4, 1)\nGlobalAveragePooling2D(keepdims=True)\n",
     ["Transpose", "Conv", "GlobalAveragePool", "Transpose"]),
    ("global-max-pool-keepdims", "Conv2D(4, 1)\nGlobalMaxPooling2D(keepdims=True)\n",
     ["Transpose", "Conv", "GlobalMaxPool", "Transpose"]),
    ("global-pool-then-restoring-reshape", "Conv2D(4, 1)\nGlobalAveragePooling2D()\nReshape((1, 1, 4))\nConv2D(2, 1)\n",
     ["Transpose", "Conv", "GlobalAveragePool", "Conv", "Transpose"]),
    ("global-pool-of-a-classifier-stays", "Conv2D(4, 1)\nGlobalAveragePooling2D()\nDense(3)\n",
     ["Transpose", "Conv", "ReduceMean", "Gemm"]),
    ("global-pool-then-other-reshape-stays", "Conv2D(4, 1)\nGlobalAveragePooling2D()\nReshape((2, 2))\n",
     ["Transpose", "Conv", "ReduceMean", "Reshape"]),
    # Flatten's Transpose back to (height, width, channels) becomes an order of the kernel's rows
    ("flatten-transpose-into-dense", "Conv2D(4, 3, activation='relu')\nFlatten()\nDense(5)\n",
     ["Transpose", "Conv", "Relu", "Reshape", "Gemm"]),
    ("flatten-transpose-into-dense-no-bias", "Conv2D(4, 3)\nFlatten()\nDense(5, use_bias=False)\n",
     ["Transpose", "Conv", "Reshape", "Gemm"]),
    ("flatten-transpose-into-dense-after-permute", "Conv2D(4, 3)\nPermute((2, 1, 3))\nFlatten()\nDense(3)\n",
     ["Transpose", "Conv", "Reshape", "Gemm"]),
    ("flatten-as-output-keeps-its-transpose", "Conv2D(4, 3)\nFlatten()\n",
     ["Transpose", "Conv", "Transpose", "Reshape"]),
    ("flatten-before-no-dense-keeps-its-transpose", "Conv2D(4, 3)\nFlatten()\nReLU()\n",
     ["Transpose", "Conv", "Transpose", "Reshape", "Relu"]),
]  # fmt: skip


@pytest.mark.parametrize(("layers", "ops"), [pytest.param(*c[1:], id=c[0]) for c in CASES])
def test_rewrite(layers, ops):
    text = HEAD + layers
    _, proto = assert_matches_keras(text)
    assert [node.op_type for node in proto.graph.node] == ops
    x = np.random.default_rng(2).standard_normal((2, 9, 8, 3)).astype(np.float32)
    plain = compile_text(text, optimize=False)
    np.testing.assert_allclose(
        onnx_output(compile_text(text), x), onnx_output(plain, x), atol=1e-5, rtol=1e-5
    )


@pytest.mark.parametrize(
    "text",
    [
        "Input(shape=(9, 8, 3))\nConv2D(4, 1, activation='relu')\nZeroPadding2D(((1, 2), (0, 1)))\n"
        "MaxPooling2D(3, strides=1)\n",
        "Input(shape=(9, 3))\nConv1D(4, 1, activation='relu')\nZeroPadding1D(1)\n"
        "MaxPooling1D(2, strides=1)\n",
    ],
    ids=["2d", "1d"],
)
def test_a_pad_folds_into_a_unit_stride_max_pool_only_where_the_target_reads_its_pads(text):
    """onnx.reference reads a unit-stride MaxPool's pads in the wrong order (2-D) or not at all
    (1-D, 3-D), so the portable target never pads one (``Target.unit_stride_max_pool_pads``);
    the Pad-into-MaxPool rewrite padded it anyway, and a portable model that onnxruntime ran
    right gave onnx.reference a (2, 8, 9, 4) output for (2, 10, 7, 4) (found by
    test_rewrite_property). onnxruntime's own target still folds it."""
    from convc.runners import open_runner

    model = resolve_text(text)
    x = np.random.default_rng(3).standard_normal((2, *model.inputs[0].shape[1:]))
    x = x.astype(np.float32)
    expected = onnx_output(compile_text(text, optimize=False), x)
    portable = compile_text(text)
    assert "Pad" in [node.op_type for node in portable.graph.node]
    (found,) = open_runner(portable, "onnx-reference").run({model.inputs[0].name: x}).values()
    np.testing.assert_allclose(found, expected, rtol=1e-6, atol=1e-6)
    for_ort = compile_text(text, target="ort")
    assert "Pad" not in [node.op_type for node in for_ort.graph.node]
    np.testing.assert_allclose(onnx_output(for_ort, x), expected, rtol=1e-6, atol=1e-6)


def test_layer_outputs_are_never_folded_away():
    model = resolve_text(HEAD + "Conv2D(4, 1)\nZeroPadding2D(1)\nCropping2D(1)\nConv2D(2, 3)\n")
    x = np.ones((1, 9, 8, 3), np.float32)
    report = check(model, initialize(model, 0), x)
    assert report.ok and [layer.name for layer in report.layers][1:3] == [
        "zero_padding2d",
        "cropping2d",
    ]


def test_no_optimize_keeps_every_layer_node(tmp_path, capsys):
    from convc.cli import main

    source = tmp_path / "net.conv"
    source.write_text(HEAD + "Conv2D(4, 1)\nZeroPadding2D(1)\nCropping2D(1)\nConv2D(2, 1)\n")
    assert main(["build", str(source), "--no-optimize"]) == 0
    assert "6 nodes" in capsys.readouterr().out
    assert main(["build", str(source)]) == 0
    assert "4 nodes" in capsys.readouterr().out


_BEFORE_POOL = {
    "conv": "Conv2D(4, 3)",
    "batch_norm": "BatchNormalization()",
    "activation": "Activation('relu')",
}
_AFTER_POOL = {
    "activation": "Activation('relu')",
    "relu": "ReLU()",
    "softmax": "Softmax()",
    "leaky_relu": "LeakyReLU(0.1)",
    "dense": "Dense(3)",
    "rescaling": "Rescaling(0.5, offset=0.1)",
    "reshape-other": "Reshape((2, 2))",
    "batch_norm": "BatchNormalization()",
    "output": "",
}


@pytest.mark.parametrize("pool", ["GlobalAveragePooling2D", "GlobalMaxPooling2D"])
@pytest.mark.parametrize("before", sorted(_BEFORE_POOL))
@pytest.mark.parametrize("after", sorted(_AFTER_POOL))
def test_a_global_pool_without_keepdims_beside_any_one_input_layer(pool, before, after):
    """The reduce-to-global-pool rewrite read the reader's second input without asking whether
    the reader was a Reshape: GlobalAveragePooling2D() then Activation('softmax'), the end of
    every mini-Xception classifier, was an internal IndexError (#24). Keras's numbers, optimized
    and not."""
    text = f"Input(shape=(8, 8, 4))\n{_BEFORE_POOL[before]}\n{pool}()\n{_AFTER_POOL[after]}\n"
    assert_matches_keras(text)
    model = resolve_text(text)
    x = np.random.default_rng(0).standard_normal((2, 8, 8, 4)).astype(np.float32)
    drawn = exercise(model, 1)
    weights = {
        f"{layer}/{name}": a for layer, arrays in drawn.items() for name, a in arrays.items()
    }
    optimized = onnx_output(compile_text(text, weights), x)
    plain = onnx_output(compile_text(text, weights, optimize=False), x)
    np.testing.assert_allclose(optimized, plain, rtol=1e-5, atol=1e-5)

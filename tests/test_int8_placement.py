"""Where an int8 model is quantized (``convc.quantize.slower_in_int8``): a Softmax, a 3-D
convolution that onnxruntime's QLinearConv runs slower than float32 (with its layer) and a
transposed convolution's element-by-element interleave stay float32, with no
QuantizeLinear/DequantizeLinear pair of their own, while the same layers in 2-D are quantized;
onnxruntime then runs float kernels exactly there; and ``convc check --precision int8`` still
agrees with the int8 reference, which computes the float32 layers in float."""

from __future__ import annotations

import re

import numpy as np
import onnx
import pytest
from onnx import numpy_helper
from test_int8 import _optimized_ops

import convc
from convc import int8_reference
from convc.compiler import quantize, resolve_text
from convc.int8_check import Int8CheckReport
from convc.options import BuildOptions
from convc.quantize import conv_gains_in_int8, slower_in_int8

INT8 = BuildOptions(precision="int8", calibration="random", calibration_count=4)

VOLUME = """\
Input(shape=(6, 6, 6, 1), batch_size=1, name="volume")
Conv3D(16, 3, padding="same", activation="relu", name="stem")
Conv3D(16, 3, padding="same", activation="relu", name="body")
Conv3DTranspose(16, 3, strides=2, padding="same", name="up")
Conv3D(2, 1, activation="softmax", name="head")
"""
"""One layer of each kind the rule decides in 3-D: ``stem`` (1 input channel) and ``head``
(2 output channels) are slower in QLinearConv, ``body`` (16 to 16) is faster, ``up``'s phases
(16 to 16) are faster but its interleave is not, and the softmax is slower."""

PLANE = VOLUME.replace("(6, 6, 6, 1)", "(6, 6, 1)").replace("3D", "2D")
"""The same net in 2-D, where every convolution gains."""


def _int8(source: str) -> onnx.ModelProto:
    return convc.build(resolve_text(source), options=INT8)


def _layers_with(proto: onnx.ModelProto, data_type: int) -> set[str]:
    """The layers with a kernel that the model stores as ``data_type``: int8 integers
    (``<layer>/kernel_quantized``) or float32 (``<layer>/kernel``)."""
    kernel = re.compile(r"kernel(_\d+)?(_quantized)?$")
    return {
        t.name.split("/")[0]
        for t in proto.graph.initializer
        if kernel.match(t.name.split("/")[-1]) and t.data_type == data_type
    }


@pytest.mark.parametrize(
    ("kernel", "group", "gains"),
    [
        ((16, 16, 3, 3, 3), 1, True),
        ((32, 16, 3, 3, 3), 1, True),
        ((16, 32, 1, 1, 1), 1, True),
        ((16, 1, 3, 3, 3), 1, False),
        ((16, 12, 3, 3, 3), 1, False),
        ((16, 18, 3, 3, 3), 1, False),
        ((8, 16, 3, 3, 3), 1, False),
        ((12, 16, 3, 3, 3), 1, False),
        ((1, 16, 3, 3, 3), 1, False),
        ((32, 16, 3, 3, 3), 2, False),
        ((16, 1, 3, 3), 1, True),
        ((1, 16, 3, 3), 1, True),
        ((32, 1, 2), 1, True),
    ],
    ids=[
        "3d-16-to-16",
        "3d-16-to-32",
        "3d-pointwise-32-to-16",
        "3d-from-1-channel",
        "3d-from-12-channels",
        "3d-in-channels-not-a-multiple-of-4",
        "3d-to-8-channels",
        "3d-out-channels-not-a-multiple-of-8",
        "3d-to-1-channel",
        "3d-grouped",
        "2d-from-1-channel",
        "2d-to-1-channel",
        "1d-from-1-channel",
    ],
)
def test_which_convolutions_gain_in_int8(kernel, group, gains):
    assert conv_gains_in_int8(kernel, group) is gains


def test_a_conv3d_net_keeps_its_slow_layers_float32_and_a_conv2d_net_does_not(tmp_path):
    volume, plane = _int8(VOLUME), _int8(PLANE)

    assert _layers_with(volume, onnx.TensorProto.INT8) == {"body", "up"}
    assert _layers_with(volume, onnx.TensorProto.FLOAT) == {"stem", "head"}
    assert _layers_with(plane, onnx.TensorProto.INT8) == {"stem", "body", "up", "head"}
    assert _layers_with(plane, onnx.TensorProto.FLOAT) == set()

    def quantized_inputs(proto: onnx.ModelProto) -> set[str]:
        return {n.input[0] for n in proto.graph.node if n.op_type == "QuantizeLinear"}

    # the 3-D stem and head quantize nothing but the stem's result, which body reads (the 2-D
    # net quantizes its input, after its Transpose to channels first)
    assert {i for i in quantized_inputs(volume) if i.startswith(("volume", "stem/", "head/"))} == {
        "stem/relu"
    }
    assert "stem/transpose" in quantized_inputs(plane)

    volume_ran, plane_ran = _optimized_ops(volume, tmp_path), _optimized_ops(plane, tmp_path)
    assert volume_ran.count("QLinearConv") == 9, volume_ran  # body and up's 8 phases
    assert "Conv" in volume_ran or "FusedConv" in volume_ran, volume_ran
    assert "Concat" in volume_ran and "QLinearConcat" not in volume_ran, volume_ran
    assert "Softmax" in volume_ran and "QLinearSoftmax" not in volume_ran, volume_ran
    assert plane_ran.count("QLinearConv") == 3, plane_ran  # stem, body, head
    assert "Softmax" in plane_ran and "QLinearSoftmax" not in plane_ran, plane_ran

    model = resolve_text(VOLUME)
    _, plan, _ = quantize(convc.build(model), model, INT8)
    assert {"stem/conv", "stem/relu", "head/softmax", "up/conv_transpose_interleave"} <= set(
        plan.float_nodes
    )
    assert not any(name.startswith("body/") for name in plan.float_nodes)


def test_the_rule_says_why():
    reasons = slower_in_int8(convc.build(resolve_text(VOLUME)))
    assert "3-D convolution of 1 to 16 channels" in reasons["stem/conv"].why
    assert "QLinearSoftmax" in reasons["head/softmax"].why
    assert "runs of 1 element" in reasons["up/conv_transpose_interleave"].why
    assert [
        reasons[n].code for n in ("stem/conv", "head/softmax", "up/conv_transpose_interleave")
    ] == [
        "conv3d",
        "softmax",
        "short_concat",
    ]
    assert not any(name.startswith("body/") for name in reasons)
    assert slower_in_int8(convc.build(resolve_text(PLANE))) == {
        "head/softmax": reasons["head/softmax"]
    }


@pytest.mark.parametrize("source", [VOLUME, PLANE], ids=["conv3d", "conv2d"])
def test_the_int8_check_agrees_where_layers_stay_float32(source):
    model = resolve_text(source)
    x = np.random.default_rng(3).standard_normal((1, *model.inputs[0].shape[1:]))
    report = convc.check(model, inputs={"volume": x.astype(np.float32)}, options=INT8)
    assert isinstance(report, Int8CheckReport)
    assert report.ok, report.render()
    assert all(g.checked and g.elements for g in report.groups), report.render()
    if source is VOLUME:
        # the float stem is recomputed in float by the reference, inside the group of the
        # QuantizeLinear that body reads
        stem = next(g for g in report.groups if g.layer == "stem")
        assert {"Conv", "Relu"} <= set(stem.ops), stem


def test_the_check_fails_when_the_reference_computes_a_float32_layer_wrongly(monkeypatch):
    """The float stem of the 3-D net is checked, not passed: with a reference whose ReLU
    scales its result by 1.5 (a ReLU in a quantized group is folded into its range and removed;
    only a float32 layer's is computed), the stem's group is many steps off."""
    monkeypatch.setitem(
        int8_reference.OPS, "Relu", lambda a, attrs: 1.5 * np.maximum(a[0], 0).astype(np.float32)
    )
    model = resolve_text(VOLUME)
    x = np.random.default_rng(3).standard_normal((1, *model.inputs[0].shape[1:]))
    report = convc.check(model, inputs={"volume": x.astype(np.float32)}, options=INT8)
    assert not report.ok
    first = report.first_divergence
    assert first is not None and first.layer == "stem" and first.max_steps > 1, report.render()


def test_weights_of_float32_layers_are_the_float32_models():
    volume = _int8(VOLUME)
    float32 = convc.build(resolve_text(VOLUME))
    original = {t.name: numpy_helper.to_array(t) for t in float32.graph.initializer}
    for t in volume.graph.initializer:
        if t.name.startswith(("stem/", "head/")) and t.name in original:
            np.testing.assert_array_equal(numpy_helper.to_array(t), original[t.name])

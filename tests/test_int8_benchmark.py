"""benchmarks/run.py's int8 column (#27, item 4), on what can run here: a peer's float32 model
quantized by onnxruntime's quantize_static as convc quantizes its own (convc's float32 model
stands in for the peer, in both layouts), and the int8 table and targets on made-up figures."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

import convc
from convc.options import BuildOptions

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def run():
    spec = importlib.util.spec_from_file_location("bench_run_int8", ROOT / "benchmarks" / "run.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    yield module
    del sys.modules[spec.name]


@pytest.mark.parametrize("io_layout", ["keras", "channels_first"])
def test_a_peer_is_quantized_as_convc_quantizes(run, tmp_path, io_layout):
    source = ROOT / "samples" / "resnet_bn.conv"
    peer = tmp_path / "peer.onnx"
    convc.save(convc.build(source, options=BuildOptions(io_layout=io_layout)), peer)
    samples = np.random.default_rng(0).standard_normal((4, 64, 64, 3)).astype(np.float32)
    layout = "channels_first" if io_layout == "channels_first" else "as the .conv"
    out = tmp_path / "peer-int8.onnx"
    run.quantize_peer((peer, layout), samples, out)
    quantized = onnx.load(out)
    ops = {n.op_type for n in quantized.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    weights = [
        t
        for t in quantized.graph.initializer
        if t.name.endswith("_quantized") and t.data_type == onnx.TensorProto.INT8
    ]
    assert weights and all(np.abs(onnx.numpy_helper.to_array(t)).max() <= 64 for t in weights)
    # the same samples and settings as convc's own int8 build: the same activation scales
    ours = convc.build(
        source,
        options=BuildOptions(
            precision="int8", calibration=samples, calibration_count=4, io_layout=io_layout
        ),
    )

    def scales(model):
        return sorted(
            round(float(onnx.numpy_helper.to_array(t)), 7)
            for t in model.graph.initializer
            if t.name.endswith("relu_scale")
        )

    assert scales(quantized) == scales(ours)


def test_the_int8_table_and_targets(run):
    def timing(median):
        return {"median": median, "p10": median, "p90": median, "block_medians": [median] * 3}

    int8 = {
        "float32_ms": timing(10.0),
        "int8_ms": timing(4.0),
        "peer_float32_ms": timing(9.0),
        "peer_int8_ms": timing(5.0),
        "int8_over_float32": 0.4,
        "int8_over_best_float32": 0.444,
        "int8_over_peer_int8": 0.8,
        "peer": "keras-tf",
        "sqnr_db": 30.0,
        "peer_sqnr_db": 29.5,
    }
    results = {"nets": {"a": {"int8": int8}, "b": {"int8": {**int8, "int8_over_peer_int8": 1.2}}}}
    results["summary"] = {
        "geomean_int8_over_best_float32": 0.444,
        "target_int8_geomean_at_most_0.5": True,
        "nets_int8_slower_than_quantized_peer": ["b"],
    }
    text = "\n".join(run.int8_lines(results))
    assert (
        "| a | 10.00 [10.00, 10.00] | 4.00 [4.00, 4.00] | 0.40 | 9.00 [9.00, 9.00] (keras-tf)"
        in text
    )
    assert "30.0 / 29.5 dB" in text
    assert "at most 0.5: 0.444, met" in text
    assert "every net: not met (b)" in text
    alone = {"nets": {"a": {"int8": {k: v for k, v in int8.items() if "peer" not in k}}}}
    assert "| - | - | - | - | 30.0 dB / - |" in "\n".join(run.int8_lines(alone))

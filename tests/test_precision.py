"""float16 models (``convc build --precision float16``, ``convc.precision``): every sample and
every case of the runtime matrix builds, and computes what the float32 NumPy reference computes
within float16's tolerance (``FLOAT16_RTOL``/``FLOAT16_ATOL``), in onnxruntime's CPU provider and
(samples) in onnx.reference, which computes in NumPy's float16. Inputs and outputs stay float32
unless ``--io-dtype float16``; ``check`` and ``golden`` take the float16 tolerances.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper
from onnx.reference import ReferenceEvaluator

from convc import golden
from convc.cli import main
from convc.compiler import model_weights, resolve_text
from convc.diagnostics import ConvcError
from convc.lower import lower
from convc.precision import (
    FLOAT16_ATOL,
    FLOAT16_RTOL,
    FLOAT32_OPS,
    model_precision,
    to_float16,
)
from convc.reference import model_outputs, run_reference
from convc.runtime import open_session
from convc.targets import get_target

from matrix import all_cells

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = sorted((ROOT / "samples").glob("*.conv"))
CELLS = all_cells()
HALF, FLOAT = onnx.TensorProto.FLOAT16, onnx.TensorProto.FLOAT


def _built(text: str, target: str = "portable"):
    model = resolve_text(text)
    weights = model_weights(model, None, seed=0)
    chosen = get_target(target)
    proto = lower(model, weights, opset=chosen.opset, target=chosen)
    inputs = {
        i.name: np.random.default_rng(1 + n)
        .standard_normal((i.shape[0] or 2, *i.shape[1:]))
        .astype(np.float32)
        for n, i in enumerate(model.inputs)
    }
    return proto, inputs, model_outputs(model, run_reference(model, weights, inputs))


def _assert_close(outputs, expected):
    for name, want in expected.items():
        got = outputs[name]
        assert got.dtype == np.float32 and got.shape == want.shape, name
        np.testing.assert_allclose(got, want, rtol=FLOAT16_RTOL, atol=FLOAT16_ATOL, err_msg=name)


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: p.stem)
def test_sample_in_float16_matches_the_reference(path, tmp_path):
    """From the command line, in onnxruntime and in onnx.reference."""
    output = tmp_path / "net.onnx"
    assert main(["build", str(path), "-o", str(output), "--precision", "float16"]) == 0
    half = onnx.load(output)
    assert model_precision(half) == "float16"
    model = resolve_text(path.read_text())
    weights = model_weights(model, None, seed=0)
    inputs = {
        i.name: np.random.default_rng(1 + n)
        .standard_normal((i.shape[0] or 2, *i.shape[1:]))
        .astype(np.float32)
        for n, i in enumerate(model.inputs)
    }
    expected = model_outputs(model, run_reference(model, weights, inputs))
    _assert_close(open_session(half).run(inputs), expected)
    names = [o.name for o in half.graph.output]
    _assert_close(
        dict(zip(names, ReferenceEvaluator(half).run(None, inputs), strict=True)), expected
    )


@pytest.mark.parametrize(("row", "case_id", "text"), CELLS, ids=[c[1] for c in CELLS])
def test_matrix_case_in_float16(row, case_id, text):
    try:
        proto, inputs, expected = _built(text)
    except ConvcError:
        pytest.skip("the portable target refuses this case (see the runtime matrix)")
    _assert_close(open_session(to_float16(proto)).run(inputs), expected)


def test_everything_inside_is_float16_and_the_ends_are_cast():
    proto, inputs, expected = _built(
        "Input(shape=(8, 8, 3), name='image')\nConv2D(4, 3, name='c')\nUpSampling2D(2)\n"
        "Dense(2, name='d')\n"
    )
    half = to_float16(proto)
    kinds = {t.name: t.data_type for t in half.graph.initializer}
    resize = next(n for n in half.graph.node if n.op_type == "Resize")
    assert kinds[resize.input[2]] == FLOAT  # Resize's scales are float32 in ONNX
    assert {k for n, k in kinds.items() if n != resize.input[2] and k in (FLOAT, HALF)} == {HALF}
    casts = [n for n in half.graph.node if n.op_type == "Cast"]
    assert len(casts) == 2 and casts[0].input == ["image"] and casts[-1].output == ["d"]
    assert [i.type.tensor_type.elem_type for i in (*half.graph.input, *half.graph.output)] == [
        FLOAT,
        FLOAT,
    ]
    assert {i.type.tensor_type.elem_type for i in half.graph.value_info} <= {HALF}
    _assert_close(open_session(half).run(inputs), expected)
    np.testing.assert_array_equal(
        numpy_helper.to_array(next(t for t in half.graph.initializer if t.name == "c/kernel")),
        numpy_helper.to_array(
            next(t for t in proto.graph.initializer if t.name == "c/kernel")
        ).astype(np.float16),
    )


def test_float16_inputs_and_outputs(tmp_path):
    source = tmp_path / "net.conv"
    source.write_text("Input(shape=(8, 3), name='x')\nConv1D(2, 3, name='c')\n")
    output = tmp_path / "net.onnx"
    argv = ["build", str(source), "-o", str(output), "--precision", "float16"]
    assert main([*argv, "--io-dtype", "float16"]) == 0
    half = onnx.load(output)
    assert [i.type.tensor_type.elem_type for i in (*half.graph.input, *half.graph.output)] == [
        HALF,
        HALF,
    ]
    assert not any(n.op_type == "Cast" for n in half.graph.node)
    result = open_session(half).run({"x": np.ones((2, 8, 3), np.float16)})
    assert result["c"].dtype == np.float16 and result["c"].shape == (2, 6, 2)


@pytest.mark.parametrize(
    ("text", "op"),
    [
        ("Input(shape=(8, 3))\nConv1D(2, 3, activation='celu')\n", "Celu"),
        ("Input(shape=(6, 6, 8))\nUnitNormalization()\n", "ReduceL2"),
        ("Input(shape=(6, 6, 8))\nGroupNormalization(groups=2)\n", "ReduceSumSquare"),
    ],
    ids=["celu", "unit-normalization", "group-normalization"],
)
def test_ops_that_stay_float32(text, op):
    proto, inputs, expected = _built(text)
    half = to_float16(proto)
    node = next(n for n in half.graph.node if n.op_type == op)
    producers = {out: n for n in half.graph.node for out in n.output}
    assert producers[node.input[0]].op_type == "Cast"  # widened first
    consumers = [n for n in half.graph.node if node.output[0] in n.input]
    assert [n.op_type for n in consumers] == ["Cast"]  # and back to float16
    assert op in FLOAT32_OPS
    _assert_close(open_session(half).run(inputs), expected)


def test_sums_of_squares_that_overflow_float16_stay_finite():
    """512 channels of magnitude 12: the squares sum to 73,728, past float16's 65,504. In
    onnx.reference, which computes a float16 ReduceL2 in float16 as a GPU may (onnxruntime's CPU
    provider widens it to float32 itself)."""
    proto, _, _ = _built("Input(shape=(2, 512), name='x')\nUnitNormalization(name='u')\n")
    x = np.full((1, 2, 512), 12.0, np.float32)
    (result,) = ReferenceEvaluator(to_float16(proto)).run(None, {"x": x})
    np.testing.assert_allclose(result, np.full_like(x, 1 / np.sqrt(512)), rtol=FLOAT16_RTOL)


def test_check_compares_at_float16_tolerances(capsys):
    path = ROOT / "samples" / "resnet_like.conv"
    assert main(["check", str(path), "--precision", "float16"]) == 0
    out = capsys.readouterr().out
    assert f"layers agree (rtol {FLOAT16_RTOL:g}, atol {FLOAT16_ATOL:g})" in out
    # float32's tolerances are too tight for float16 arithmetic: the check can fail
    assert (
        main(["check", str(path), "--precision", "float16", "--rtol", "1e-4", "--atol", "1e-4"])
        == 1
    )
    assert "first divergence" in capsys.readouterr().out


def test_golden_record_and_verify_in_float16(tmp_path):
    source = tmp_path / "net.conv"
    source.write_text("Input(shape=(6, 6, 3))\nConv2D(4, 3, name='c')\n")
    assert (
        main(["golden", "record", str(source), str(tmp_path / "g"), "--precision", "float16"]) == 0
    )
    manifest = json.loads((tmp_path / "g" / "manifest.json").read_text())
    assert manifest["precision"] == "float16"
    assert (manifest["rtol"], manifest["atol"]) == (FLOAT16_RTOL, FLOAT16_ATOL)
    assert model_precision(onnx.load(tmp_path / "g" / "model.onnx")) == "float16"
    verification = golden.verify(tmp_path / "g")
    assert verification.ok and verification.compiler_output == "unchanged"


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["--io-dtype", "float16"], "float16 inputs and outputs need --precision float16"),
    ],
)
def test_precision_errors(tmp_path, capsys, argv, fragment):
    source = tmp_path / "net.conv"
    source.write_text("Input(shape=(8, 3))\nConv1D(2, 3)\n")
    assert main(["build", str(source), *argv]) == 1
    assert fragment in capsys.readouterr().err


def test_a_float16_model_is_not_converted_twice():
    proto, _, _ = _built("Input(shape=(8, 3))\nConv1D(2, 3)\n")
    with pytest.raises(ConvcError, match="already float16"):
        to_float16(to_float16(proto))

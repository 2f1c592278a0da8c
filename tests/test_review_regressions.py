"""Regressions for defects an adversarial review found: each was a crash, a hang, a silent loss
or a wrong count, and each now gives the right result or one clean error."""

from __future__ import annotations

import json
import os
import zipfile

import h5py
import numpy as np
import onnx
import pytest
from onnx import helper
from onnx.reference import ReferenceEvaluator

from convc.cli import main
from convc.compiler import compile_text, resolve_text
from convc.diagnostics import ConvcError
from convc.runtime import open_session, random_inputs
from convc.summary import summary
from convc.weights import load

NET = "Input(shape=(4, 4, 3))\nConv2D(2, 1, name='c')\n"


@pytest.mark.parametrize("name", ["file", "allow_pickle"])
def test_run_saves_outputs_named_like_savez_arguments(tmp_path, name):
    source = tmp_path / "net.conv"
    source.write_text(f"Input(shape=(4, 4, 3))\nConv2D(2, 1, name='{name}')\n")
    assert main(["run", str(source), "-o", str(tmp_path / "out.npz")]) == 0
    with np.load(tmp_path / "out.npz") as saved:
        assert saved[name].shape == (1, 4, 4, 2)


def test_summary_counts_lora_kernels_as_frozen():
    text = "Input(shape=(7, 8, 4))\nConv2D(4, 3, lora_rank=2)\nConv2D(4, 3, trainable=False)\n"
    out = summary(resolve_text(text))
    assert "Trainable params: 84 " in out and "Non-trainable params: 292 " in out  # Keras's


def test_bfloat16_input_models_run_and_check(tmp_path, capsys):
    source = tmp_path / "net.conv"
    source.write_text("Input(shape=(7, 8, 4), dtype='bfloat16')\nConv2D(4, 3)\n")
    assert main(["run", str(source)]) == 0
    assert main(["check", str(source)]) == 0
    assert "layers agree" in capsys.readouterr().out


def test_random_inputs_for_integer_and_boolean_models():
    graph = helper.make_graph(
        [helper.make_node("Cast", ["x"], ["y"], to=1), helper.make_node("Cast", ["b"], ["c"], to=1)],
        "g",
        [helper.make_tensor_value_info("x", onnx.TensorProto.INT64, [2, 3]),
         helper.make_tensor_value_info("b", onnx.TensorProto.BOOL, [2])],
        [helper.make_tensor_value_info("y", 1, [2, 3]), helper.make_tensor_value_info("c", 1, [2])],
    )  # fmt: skip
    session = open_session(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))
    inputs = random_inputs(session)
    assert inputs["x"].dtype == np.int64 and inputs["b"].dtype == np.bool_
    assert session.run(inputs)["y"].shape == (2, 3)


def _manifest(tmp_path, **changes):
    directory = tmp_path / "g"
    source = tmp_path / "net.conv"
    source.write_text(NET)
    assert main(["golden", "record", str(source), str(directory)]) == 0
    manifest = json.loads((directory / "manifest.json").read_text())
    manifest.update(changes)
    (directory / "manifest.json").write_text(json.dumps(manifest))
    return directory


@pytest.mark.parametrize(
    ("changes", "fragment"),
    [
        ({"sets": 10**12}, "'sets' must be an integer"),
        ({"seed": -1}, "'seed' must be an integer"),
        ({"versions": ["convc"]}, "'versions' must be an object"),
        ({"rtol": float("inf")}, "'rtol' must be a finite number"),
        ({"atol": -1}, "'atol' must be a finite number"),
    ],
)
def test_golden_manifest_values_are_checked(tmp_path, capsys, changes, fragment):
    directory = _manifest(tmp_path, **changes)
    assert main(["golden", "verify", str(directory)]) == 1
    assert fragment in capsys.readouterr().err


SMALL = "Input(shape=(8, 3))\nConv1D(4, 3, name='c')\n"


def test_h5_vars_that_is_not_a_group(tmp_path):
    path = tmp_path / "w.weights.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("layers/conv1d/vars", data=np.zeros(3, np.float32))
    with pytest.raises(ConvcError, match="is not a group of arrays"):
        load(resolve_text(SMALL), path)


def test_h5_huge_declared_dataset_is_refused_before_reading(tmp_path):
    path = tmp_path / "w.weights.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("layers/conv1d/vars/0", shape=(10**11,), dtype=np.float32)
    with pytest.raises(ConvcError, match=r"c/kernel has shape \(100000000000,\)"):
        load(resolve_text(SMALL), path)


def test_h5_non_canonical_index_is_refused(tmp_path):
    path = tmp_path / "w.weights.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("layers/conv1d/vars/00", data=np.zeros((3, 3, 4), np.float32))
    with pytest.raises(ConvcError, match="does not match a variable"):
        load(resolve_text(SMALL), path)


def _lying_npy(shape) -> bytes:
    header = {"descr": "<f4", "fortran_order": False, "shape": shape}
    import io

    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, header)
    return buffer.getvalue() + b"\0" * 16


def test_npz_member_claiming_a_huge_array_is_refused(tmp_path):
    path = tmp_path / "w.npz"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("c/kernel.npy", _lying_npy((100000000000,)))
    with pytest.raises(ConvcError, match="more than the file holds"):
        load(resolve_text(SMALL), path)


def test_npy_input_claiming_a_huge_array_is_refused(tmp_path, capsys):
    source = tmp_path / "net.conv"
    source.write_text(NET)
    (tmp_path / "x.npy").write_bytes(_lying_npy((1, 100000, 100000, 3)))
    assert main(["run", str(source), "--input", str(tmp_path / "x.npy")]) == 1
    assert "more than the file holds" in capsys.readouterr().err


def test_not_a_zip_is_not_called_pickled(tmp_path):
    path = tmp_path / "w.npz"
    path.write_text("hello")
    with pytest.raises(ConvcError, match="not an .npz archive"):
        load(resolve_text(SMALL), path)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        (r"Input(shape=(4, 4, 3))" + "\nConv2D(2, 1, name='\\ud800')\n", "unpaired surrogate"),
        ("Input(shape=(4, 4, 3))\nConv2D(2, " + "9" * 4301 + ")\n", "an integer of 4,301 digits"),
    ],
)
def test_odd_literals(text, fragment):
    with pytest.raises(ConvcError, match=fragment):
        compile_text(text)


def test_byte_order_mark_is_accepted(tmp_path):
    source = tmp_path / "net.conv"
    source.write_bytes(b"\xef\xbb\xbf" + NET.encode())
    assert main(["build", str(source)]) == 0


def test_onnx_errors_name_the_model_file(tmp_path, capsys):
    model = tmp_path / "broken.onnx"
    model.write_bytes(b"not a model")
    assert main(["run", str(model)]) == 1
    assert capsys.readouterr().err.startswith(f"{model}: error: onnxruntime cannot load")


def test_weights_with_an_onnx_model_is_an_error(tmp_path, capsys):
    source = tmp_path / "net.conv"
    source.write_text(NET)
    assert main(["build", str(source)]) == 0
    assert main(["run", str(tmp_path / "net.onnx"), "--weights", "w.npz"]) == 1
    assert "'weights' applies to .conv sources" in capsys.readouterr().err


@pytest.mark.parametrize(
    "text", ["ZeroPadding2D(-1)", "ZeroPadding2D(-1, data_format='channels_first')"]
)
def test_negative_zero_padding_runs_in_the_onnx_reference_evaluator(text):
    proto = compile_text(f"Input(shape=(6, 7, 3))\n{text}\n")
    assert [n.op_type for n in proto.graph.node] == ["Slice"]
    x = np.random.default_rng(0).standard_normal((1, 6, 7, 3)).astype(np.float32)
    (expected,) = open_session(proto).run({"input_layer": x}).values()
    np.testing.assert_array_equal(
        ReferenceEvaluator(proto).run(None, {"input_layer": x})[0], expected
    )


def test_check_refuses_bad_tolerances():
    from convc.layer_check import check_layers as check
    from convc.weights import initialize

    model = resolve_text(NET)
    with pytest.raises(ConvcError, match="rtol must be a finite number"):
        check(model, initialize(model), np.ones((1, 4, 4, 3), np.float32), rtol=float("nan"))


def test_umask_respected_for_golden_files(tmp_path):
    directory = _manifest(tmp_path)
    umask = os.umask(0)
    os.umask(umask)
    assert (directory / "model.onnx").stat().st_mode & 0o777 == 0o666 & ~umask

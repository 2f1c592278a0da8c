"""Goldens of int8 models (``convc.int8_golden``): the manifest records how the model was
quantized, verify quantizes the recompiled model alike (byte for byte), and the tolerance is
derived from the int8 reference: at least one quantization step of the output, twice the largest
difference between onnxruntime and the reference computed end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from convc import golden, int8_golden
from convc.cli import main
from convc.diagnostics import ConvcError
from convc.options import BuildOptions

ROOT = Path(__file__).resolve().parent.parent
INT8 = BuildOptions(precision="int8", calibration="random", calibration_count=4)


@pytest.mark.parametrize("name", ["resnet_bn", "siamese_two_heads", "unet_like"])
def test_an_int8_golden_records_its_quantization_and_verifies(tmp_path, name):
    directory = tmp_path / "golden"
    recording = golden.record(ROOT / "samples" / f"{name}.conv", directory, options=INT8, sets=2)
    manifest = json.loads((directory / "manifest.json").read_text())
    assert manifest["precision"] == "int8"
    assert manifest["int8"] == {
        "calibration": "random",
        "calibration_count": 4,
        "calibration_method": "minmax",
        "keep_float": [],
        "weight_bits": 7,
    }
    steps = int8_golden._output_steps(onnx.load(directory / "model.onnx"))
    assert manifest["rtol"] == 0.0
    assert manifest["atol"] >= max(steps.values()) > 0
    assert manifest["atol"] <= 8 * max(steps.values())  # a few steps, not float32's 1e-4
    verification = golden.verify(directory)
    assert verification.passes(strict=True), verification.render()
    assert recording.sets == 2


def test_an_int8_golden_fails_when_the_numbers_move_by_a_few_steps(tmp_path):
    directory = tmp_path / "golden"
    golden.record(ROOT / "samples" / "resnet_bn.conv", directory, options=INT8)
    manifest = json.loads((directory / "manifest.json").read_text())
    output = directory / "test_data_set_0" / "output_0.pb"
    tensor = numpy_helper.from_array(np.zeros(1, np.float32))
    tensor.ParseFromString(output.read_bytes())
    values = numpy_helper.to_array(tensor).copy()
    values.flat[100] += 1.5 * manifest["atol"]
    output.write_bytes(numpy_helper.from_array(values, tensor.name).SerializeToString())
    verification = golden.verify(directory)
    assert not verification.passes(), verification.render()
    assert "1 of 2,560 elements outside tolerance" in verification.render()


def test_a_changed_calibration_file_is_a_changed_source(tmp_path):
    samples = tmp_path / "cal.npy"
    np.save(samples, np.random.default_rng(0).standard_normal((6, 64, 64, 3)).astype(np.float32))
    directory = tmp_path / "golden"
    options = INT8.replace(calibration=samples)
    golden.record(ROOT / "samples" / "resnet_bn.conv", directory, options=options)
    entry = json.loads((directory / "manifest.json").read_text())["int8"]["calibration"]
    assert entry["path"] == "../cal.npy" and len(entry["sha256"]) == 64
    assert golden.verify(directory).passes(strict=True)
    np.save(samples, np.random.default_rng(1).standard_normal((6, 64, 64, 3)).astype(np.float32))
    verification = golden.verify(directory)
    assert verification.compiler_output == golden.SOURCE_CHANGED
    assert "cal.npy edited" in verification.compiler_detail
    samples.unlink()
    assert golden.verify(directory).compiler_output == golden.NOT_RECOMPILED


def test_calibration_arrays_cannot_be_recorded(tmp_path):
    options = INT8.replace(calibration=np.zeros((2, 64, 64, 3), np.float32))
    with pytest.raises(ConvcError, match="needs its calibration data in a file or folder"):
        golden.record(ROOT / "samples" / "resnet_bn.conv", tmp_path / "g", options=options)
    assert not (tmp_path / "g").exists()


def test_the_tolerance_grows_with_the_disagreement_it_measures(monkeypatch):
    """The derived atol is twice the largest difference from the reference: a reference that
    is off by half an output moves it."""
    import convc

    proto = convc.build(ROOT / "samples" / "resnet_bn.conv", options=INT8)
    x = {"image": np.random.default_rng(2).standard_normal((1, 64, 64, 3)).astype(np.float32)}
    outputs = convc.run(proto, x["image"]).outputs
    atol = int8_golden.tolerance(proto, [(x, outputs)])
    assert 0 < atol < 0.1
    shifted = int8_golden.tolerance(proto, [(x, {"logits": outputs["logits"] + 0.5})])
    assert 1.0 - atol <= shifted <= 1.0 + atol


def test_the_command_line_records_an_int8_golden(tmp_path, capsys):
    directory = tmp_path / "g"
    code = main(
        [
            "golden",
            "record",
            str(ROOT / "samples" / "vgg_like.conv"),
            str(directory),
            "--precision",
            "int8",
            "--calibration",
            "random",
            "--calibration-count",
            "4",
        ]
    )
    assert code == 0, capsys.readouterr().err
    assert main(["golden", "verify", str(directory), "--strict"]) == 0
    assert "within rtol 0, atol" in capsys.readouterr().out
    broken = json.loads((directory / "manifest.json").read_text())
    broken["int8"]["weight_bits"] = 6
    (directory / "manifest.json").write_text(json.dumps(broken))
    assert main(["golden", "verify", str(directory)]) == 1
    assert "int8 settings are malformed" in capsys.readouterr().err

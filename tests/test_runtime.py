"""Provider selection (tested without a GPU), inputs, and convc run."""

from __future__ import annotations

import numpy as np
import pytest

from convc import runtime
from convc.cli import main
from convc.diagnostics import ConvcError

CPU, CUDA, TRT = "CPUExecutionProvider", "CUDAExecutionProvider", "TensorrtExecutionProvider"


@pytest.mark.parametrize(
    ("choice", "available", "expected"),
    [
        ("cpu", [CPU], [CPU]),
        ("auto", [CPU], [CPU]),
        ("auto", [CUDA, CPU], [CUDA, CPU]),
        ("auto", [TRT, CUDA, CPU], [TRT, CUDA, CPU]),
        ("cuda", [CUDA, CPU], [CUDA, CPU]),
        ("tensorrt", [TRT, CUDA, CPU], [TRT, CPU]),
    ],
)
def test_select_providers(choice, available, expected):
    assert runtime.select_providers(choice, available) == expected


@pytest.mark.parametrize("choice", ["cuda", "tensorrt"])
def test_unavailable_gpu_provider_says_how_to_get_it(choice):
    with pytest.raises(ConvcError) as caught:
        runtime.select_providers(choice, [CPU])
    assert f"the {choice} execution provider is not available" in caught.value.message
    assert "onnxruntime-gpu" in caught.value.help


def test_unknown_provider():
    with pytest.raises(ConvcError, match="unknown provider 'rocm'"):
        runtime.select_providers("rocm", [CPU])


def test_command_line_cuda_without_gpu_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(runtime, "available_providers", lambda: [CPU])
    source = tmp_path / "net.conv"
    source.write_text("Input(shape=(8, 3))\nConv1D(2, 3)\n")
    assert main(["run", str(source), "--provider", "cuda"]) == 1
    err = capsys.readouterr().err
    assert "cuda execution provider is not available" in err and "onnxruntime-gpu" in err
    assert "Traceback" not in err


def test_silent_fallback_is_an_error(monkeypatch):
    class FakeSession:
        def __init__(self, *args, **kwargs):
            pass

        def get_providers(self):
            return [CPU]

    import onnxruntime

    monkeypatch.setattr(runtime, "available_providers", lambda: [CUDA, CPU])
    monkeypatch.setattr(onnxruntime, "InferenceSession", FakeSession)
    with pytest.raises(ConvcError, match="fell back to CPUExecutionProvider"):
        runtime.open_session("model.onnx", "cuda")


NET = "Input(shape=(8, 3), name='signal')\nConv1D(2, 3, name='c')\n"


def test_run_conv_with_random_inputs(tmp_path, capsys):
    source = tmp_path / "net.conv"
    source.write_text(NET)
    output = tmp_path / "out.npz"
    assert (
        main(
            ["run", str(source), "--random", "--input-seed", "3", "--batch", "4", "-o", str(output)]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "runtime: ort (CPUExecutionProvider)" in out
    assert "c: shape (4, 6, 2) float32  min " in out and "mean" in out
    with np.load(output) as saved:
        assert saved["c"].shape == (4, 6, 2)


def test_run_onnx_with_npy_and_npz_inputs(tmp_path, capsys):
    source = tmp_path / "net.conv"
    source.write_text(NET)
    assert main(["build", str(source)]) == 0
    x = np.ones((2, 8, 3), np.float32)
    np.save(tmp_path / "x.npy", x)
    np.savez(tmp_path / "x.npz", signal=x)
    model = str(tmp_path / "net.onnx")
    npy, npz = str(tmp_path / "x.npy"), str(tmp_path / "x.npz")
    for spec in (npy, f"signal={npy}", npz):
        assert main(["run", model, "--input", spec]) == 0
        assert "c: shape (2, 6, 2)" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ("other=x.npy", "the model has no input 'other'"),
        ("missing.npy", "no such file"),
        ("bad.npy", "not an .npy array"),
    ],
)
def test_run_input_errors(tmp_path, capsys, spec, fragment):
    source = tmp_path / "net.conv"
    source.write_text(NET)
    np.save(tmp_path / "x.npy", np.ones((1, 8, 3), np.float32))
    (tmp_path / "bad.npy").write_bytes(b"not an array")
    name, _, path = spec.rpartition("=")
    arg = (name + "=" if name else "") + str(tmp_path / path)
    assert main(["run", str(source), "--input", arg]) == 1
    assert fragment in capsys.readouterr().err


def test_run_missing_model(tmp_path, capsys):
    assert main(["run", str(tmp_path / "absent.onnx")]) == 1
    assert "no such file" in capsys.readouterr().err

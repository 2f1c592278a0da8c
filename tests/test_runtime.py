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


# -- GPU providers, tested with fakes of onnxruntime's providers and sessions ------------------


class FakeSession:
    """Stands in for onnxruntime.InferenceSession: runs on the first of ``providers`` that
    ``works`` lists, else falls back to the CPU as onnxruntime does."""

    works: tuple[str, ...] = (CPU,)
    calls: list = []

    def __init__(self, source, options=None, providers=()):
        FakeSession.calls.append(providers)
        names = [p[0] if isinstance(p, tuple) else p for p in providers]
        self.used = next((n for n in names if n in self.works), CPU)

    def get_providers(self):
        return [self.used]


@pytest.fixture
def fake_onnxruntime(monkeypatch):
    import onnxruntime

    FakeSession.calls = []
    monkeypatch.setattr(onnxruntime, "InferenceSession", FakeSession)
    monkeypatch.setattr(runtime, "missing_library", lambda provider: f"<{provider} diagnosis>")
    monkeypatch.delenv("NVIDIA_TF32_OVERRIDE", raising=False)
    return FakeSession


@pytest.mark.parametrize(
    ("available", "works", "expected", "notes"),
    [
        ([TRT, CUDA, CPU], (TRT, CUDA, CPU), TRT, []),
        ([TRT, CUDA, CPU], (CUDA, CPU), CUDA, ["tensorrt did not start: <tensorrt diagnosis>"]),
        (
            [TRT, CUDA, CPU],
            (CPU,),
            CPU,
            [
                "tensorrt did not start: <tensorrt diagnosis>",
                "cuda did not start: <cuda diagnosis>",
            ],
        ),
        ([CUDA, CPU], (CUDA, CPU), CUDA, []),
        ([CPU], (CPU,), CPU, []),
    ],
    ids=["tensorrt", "cuda-when-tensorrt-fails", "cpu-when-both-fail", "cuda", "cpu-only"],
)
def test_auto_takes_tensorrt_then_cuda_then_cpu_and_says_why(
    fake_onnxruntime, monkeypatch, available, works, expected, notes
):
    monkeypatch.setattr(runtime, "available_providers", lambda: available)
    monkeypatch.setattr(FakeSession, "works", works)
    session = runtime.open_session("model.onnx", "auto")
    assert session.provider == expected
    assert list(session.notes) == notes


@pytest.mark.parametrize(
    ("choice", "diagnosis"),
    [
        ("cuda", "the cuDNN library is missing (libcudnn.so.9 cannot be loaded)"),
        ("tensorrt", "the TensorRT library is missing (libnvinfer.so.10 cannot be loaded)"),
    ],
)
def test_explicit_provider_that_fails_to_start_names_what_is_missing(
    fake_onnxruntime, monkeypatch, choice, diagnosis
):
    monkeypatch.setattr(runtime, "available_providers", lambda: [TRT, CUDA, CPU])
    monkeypatch.setattr(runtime, "missing_library", lambda provider: diagnosis)
    with pytest.raises(ConvcError) as caught:
        runtime.open_session("model.onnx", choice)
    message = caught.value.message
    assert message == (
        f"the {choice} provider failed to start: {diagnosis}; "
        "onnxruntime fell back to CPUExecutionProvider"
    )
    assert "\n" not in message
    assert FakeSession.calls == [
        [
            (runtime.PROVIDERS[choice], runtime.PROVIDER_OPTIONS[runtime.PROVIDERS[choice]]),
            (CPU, {}),
        ]
    ]


def test_gpu_sessions_are_asked_for_float32(fake_onnxruntime, monkeypatch):
    monkeypatch.setattr(runtime, "available_providers", lambda: [TRT, CUDA, CPU])
    monkeypatch.setattr(FakeSession, "works", (TRT, CUDA, CPU))
    runtime.open_session("model.onnx", "tensorrt")
    runtime.open_session("model.onnx", "cuda")
    assert FakeSession.calls == [
        [(TRT, {"trt_fp16_enable": "False", "trt_int8_enable": "False"}), (CPU, {})],
        [(CUDA, {"use_tf32": "0"}), (CPU, {})],
    ]
    import os

    assert os.environ["NVIDIA_TF32_OVERRIDE"] == "0"  # TensorRT's builder: no TF32


def test_cpu_session_leaves_the_tf32_switch_alone(fake_onnxruntime, monkeypatch):
    runtime.open_session("model.onnx", "cpu")
    import os

    assert "NVIDIA_TF32_OVERRIDE" not in os.environ


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ("", {}),
        (
            "trt_engine_cache_enable=True, trt_builder_optimization_level=1",
            {"trt_engine_cache_enable": "True", "trt_builder_optimization_level": "1"},
        ),
    ],
)
def test_extra_tensorrt_options(extra, expected):
    options = runtime.provider_options([TRT, CPU], {"CONVC_TRT_OPTIONS": extra})
    assert options == [{**runtime.PROVIDER_OPTIONS[TRT], **expected}, {}]


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [("trt_fp16_enable=True", "trt_fp16_enable is convc's to set"), ("oops", "key=value")],
)
def test_extra_tensorrt_options_errors(extra, fragment):
    with pytest.raises(ConvcError, match=fragment):
        runtime.provider_options([TRT], {"CONVC_TRT_OPTIONS": extra})


def _fails_with(message):
    def load(path):
        raise OSError(message)

    return load


@pytest.mark.parametrize(
    ("provider", "load", "expected"),
    [
        (
            "cuda",
            _fails_with("libcudnn.so.9: cannot open shared object file: No such file or directory"),
            "the cuDNN library is missing (libcudnn.so.9 cannot be loaded)",
        ),
        (
            "cuda",
            _fails_with("libcublasLt.so.12: cannot open shared object file: No such file"),
            "the CUDA library is missing (libcublasLt.so.12 cannot be loaded)",
        ),
        (
            "tensorrt",
            _fails_with("libnvinfer.so.10: cannot open shared object file: No such file"),
            "the TensorRT library is missing (libnvinfer.so.10 cannot be loaded)",
        ),
        (
            "tensorrt",
            _fails_with("libcudart.so.12: cannot open shared object file: No such file"),
            "the CUDA library is missing (libcudart.so.12 cannot be loaded)",
        ),
        (
            "cuda",
            lambda path: None,
            "its libraries load, but no CUDA device is usable (see nvidia-smi: driver and GPU)",
        ),
    ],
    ids=["cudnn", "cublas", "tensorrt", "cuda-runtime-under-tensorrt", "no-device"],
)
def test_missing_library_names_it(provider, load, expected):
    assert runtime.missing_library(provider, load) == expected


def test_missing_library_of_the_cpu_package():
    """The CPU package has no GPU provider library at all (the real loader, here)."""
    if CUDA in runtime.available_providers():
        pytest.skip("onnxruntime-gpu is installed here")
    assert runtime.missing_library("cuda") == (
        "onnxruntime-gpu's provider library is missing "
        "(libonnxruntime_providers_cuda.so cannot be loaded)"
    )


def test_run_auto_says_which_provider_it_got(tmp_path, capsys):
    source = tmp_path / "net.conv"
    source.write_text(NET)
    assert main(["run", str(source), "--provider", "auto"]) == 0
    assert "runtime: ort (CPUExecutionProvider)" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "available", "opset"),
    [
        (["--provider", "tensorrt"], [TRT, CUDA, CPU], 17),
        (["--provider", "auto"], [TRT, CUDA, CPU], 17),
        (["--provider", "auto"], [CUDA, CPU], 28),
        (["--provider", "cuda"], [TRT, CUDA, CPU], 28),
        (["--provider", "tensorrt", "--target", "ort"], [TRT, CUDA, CPU], 28),
    ],
    ids=["tensorrt", "auto-with-tensorrt", "auto-without", "cuda", "target-given"],
)
def test_run_builds_for_tensorrt_where_tensorrt_runs(
    fake_onnxruntime, monkeypatch, tmp_path, capsys, argv, available, opset
):
    """A .conv run by TensorRT is built for the tensorrt target (opset 17: TensorRT's parser
    reads up to 22), unless --target says otherwise."""
    import onnx

    seen = []

    class Recording(FakeSession):
        works = (TRT, CUDA, CPU)

        def __init__(self, source, options=None, providers=()):
            super().__init__(source, options, providers)
            seen.append(onnx.load_from_string(source).opset_import[0].version)

        def get_inputs(self):
            return []

        def get_outputs(self):
            return []

        def run(self, names, feed):
            return []

    import onnxruntime

    monkeypatch.setattr(onnxruntime, "InferenceSession", Recording)
    monkeypatch.setattr(runtime, "available_providers", lambda: available)
    source = tmp_path / "net.conv"
    source.write_text(NET)
    main(["run", str(source), *argv])
    assert seen[:1] == [opset]


def test_an_in_memory_model_hands_its_weights_to_onnxruntime_as_arrays(tmp_path):
    """A CPU session of a ModelProto takes its large weights as arrays (not parsed out of the
    encoding): the same outputs as the same model from a file, the model left as it was."""
    from convc.compiler import compile_text, save

    text = "Input(shape=(9, 9, 3))\nConv2D(40, 3, name='big')\nConv2D(2, 1, name='small')\n"
    proto = compile_text(text, seed=3)
    before = proto.SerializeToString()
    path = tmp_path / "net.onnx"
    save(proto, path)
    in_memory, from_file = runtime.open_session(proto), runtime.open_session(path)
    handed = in_memory.session.convc_weights
    assert [array.shape for array in handed.values()] == [(40, 3, 3, 3)]  # 4,320 bytes
    x = {"input": np.random.default_rng(0).standard_normal((2, 9, 9, 3)).astype(np.float32)}
    x = {in_memory.input_names[0]: x["input"]}
    got, expected = in_memory.run(x), from_file.run(x)
    assert all(np.array_equal(got[name], expected[name]) for name in expected)
    assert proto.SerializeToString() == before

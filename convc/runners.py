"""Run an ONNX model in any runtime convc targets: one small runner per runtime.

A runner loads a model (an in-memory ``ModelProto`` or a file), lists the graph's inputs, and
maps ``{input name: array}`` to ``{output name: array}``. onnxruntime is convc's own dependency;
the others are optional extras (``pip install "convc[runtimes]"``), imported only when asked
for, and a missing one is a one-line error that says how to get it. Every runner computes in
float32: OpenVINO's CPU plugin would otherwise pick bfloat16 on processors that have it.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

from convc.diagnostics import ConvcError
from convc.onnxfile import save
from convc.targets import RUNTIMES

_PACKAGES = {
    "openvino": ("openvino", "openvino"),
    "opencv": ("cv2", "opencv-python-headless"),
    "tract": ("tract", "tract"),
}


@dataclass(frozen=True)
class InputSpec:
    """A graph input as ONNX declares it; dimensions are ints, or names for dynamic ones."""

    name: str
    shape: tuple[int | str, ...]
    type: str  # as onnxruntime spells it: "tensor(float)"


@dataclass
class Runner:
    """A loaded model in one runtime."""

    runtime: str
    device: str  # what actually runs it, in words (an execution provider, a plugin)
    inputs: list[InputSpec]
    output_names: list[str]
    _run: Callable[[dict[str, np.ndarray]], list[np.ndarray]]

    @property
    def input_names(self) -> list[str]:
        return [spec.name for spec in self.inputs]

    def run(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        try:
            outputs = self._run(dict(inputs))
        except ConvcError:
            raise
        except MemoryError:
            raise ConvcError("not enough memory to run the model on this input") from None
        except Exception as error:  # every runtime raises its own exception types
            message = f"{self.runtime} failed to run the model: {_one_line(error)}"
            raise ConvcError(message) from None
        return {
            name: np.asarray(array) for name, array in zip(self.output_names, outputs, strict=True)
        }


def open_runner(
    model: onnx.ModelProto | str | os.PathLike, runtime: str = "ort", provider: str = "cpu"
) -> Runner:
    """Load ``model`` in ``runtime``; ``provider`` picks onnxruntime's execution provider."""
    if runtime not in _OPENERS:
        raise ConvcError(
            f"unknown runtime {runtime!r}", help="choose one of: " + ", ".join(RUNTIMES)
        )
    if runtime in _PACKAGES:
        _require(runtime)
    if not isinstance(model, onnx.ModelProto) and not Path(model).is_file():
        raise ConvcError("no such file", path=str(model))
    try:
        return _OPENERS[runtime](model, provider)
    except ConvcError:
        raise
    except Exception as error:
        raise ConvcError(f"{runtime} cannot load the model: {_one_line(error)}") from None


def available(runtime: str) -> bool:
    """Whether ``runtime``'s package is installed (TensorRT: whether onnxruntime has it)."""
    if runtime == "tensorrt":
        from convc.runtime import available_providers

        return "TensorrtExecutionProvider" in available_providers()
    if runtime not in _PACKAGES:
        return runtime in RUNTIMES
    import importlib.util

    return importlib.util.find_spec(_PACKAGES[runtime][0]) is not None


def how_to_get(runtime: str) -> str:
    if runtime == "tensorrt":
        return "install onnxruntime-gpu and NVIDIA TensorRT (an NVIDIA GPU is needed)"
    package = _PACKAGES[runtime][1]
    return f'pip install "convc[runtimes]" (or only: pip install {package})'


def _require(runtime: str) -> None:
    if not available(runtime):
        raise ConvcError(f"the {runtime} runtime is not installed", help=how_to_get(runtime))


def _one_line(error: Exception) -> str:
    text = " ".join(str(error).split())
    return text if len(text) <= 400 else text[:397] + "..."


# -- the runners ------------------------------------------------------------------------------


def _graph_inputs(model: onnx.ModelProto) -> list[InputSpec]:
    initializers = {tensor.name for tensor in model.graph.initializer}
    specs = []
    for info in model.graph.input:
        if info.name in initializers:
            continue
        tensor = info.type.tensor_type
        dims = tuple(
            d.dim_value if d.HasField("dim_value") else (d.dim_param or "?")
            for d in tensor.shape.dim
        )
        type_name = onnx.helper.tensor_dtype_to_np_dtype(tensor.elem_type).name
        type_name = _ORT_TYPE_NAMES.get(type_name, type_name)
        specs.append(InputSpec(info.name, dims, f"tensor({type_name})"))
    return specs


_ORT_TYPE_NAMES = {"float32": "float", "float64": "double"}


def _skeleton(model: onnx.ModelProto | str | os.PathLike) -> onnx.ModelProto:
    """The model's graph without loading external weights (for names and shapes)."""
    if isinstance(model, onnx.ModelProto):
        return model
    return onnx.load(str(model), load_external_data=False)


@contextmanager
def _as_file(model: onnx.ModelProto | str | os.PathLike) -> Iterator[str]:
    """A path to the model: its own, or a temporary file for one in memory."""
    if not isinstance(model, onnx.ModelProto):
        yield str(model)
        return
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "model.onnx"
        save(model, path)
        yield str(path)


def _open_ort(model, provider: str) -> Runner:
    from convc.runtime import open_session

    session = open_session(model, provider)
    specs = [InputSpec(i.name, tuple(i.shape), i.type) for i in session.session.get_inputs()]
    names = session.output_names
    device = session.provider
    if session.notes:  # auto passed over a better provider: say why
        device += " (auto: " + "; ".join(session.notes) + ")"
    return Runner("ort", device, specs, names, lambda feed: list(session.run(feed).values()))


def _open_tensorrt(model, provider: str) -> Runner:
    runner = _open_ort(model, "tensorrt")
    runner.runtime = "tensorrt"
    return runner


def _open_reference(model, provider: str) -> Runner:
    from onnx.reference import ReferenceEvaluator

    proto = model if isinstance(model, onnx.ModelProto) else onnx.load(str(model))
    evaluator = ReferenceEvaluator(proto)
    names = [o.name for o in proto.graph.output]
    return Runner(
        "onnx-reference",
        "onnx.reference.ReferenceEvaluator",
        _graph_inputs(proto),
        names,
        lambda feed: list(evaluator.run(names, feed)),
    )


def _open_openvino(model, provider: str) -> Runner:
    import openvino as ov

    core = ov.Core()
    with _as_file(model) as path:
        compiled = core.compile_model(
            core.read_model(path), "CPU", {"INFERENCE_PRECISION_HINT": "f32"}
        )
    proto = _skeleton(model)
    names = [o.name for o in proto.graph.output]
    ports = [compiled.output(name) for name in names]

    def run(feed: dict[str, np.ndarray]) -> list[np.ndarray]:
        results = compiled(feed)
        return [results[port] for port in ports]

    return Runner("openvino", "OpenVINO CPU", _graph_inputs(proto), names, run)


def _open_opencv(model, provider: str) -> Runner:
    import cv2

    with _as_file(model) as path:
        net = cv2.dnn.readNetFromONNX(path)
    proto = _skeleton(model)
    names = [o.name for o in proto.graph.output]

    def run(feed: dict[str, np.ndarray]) -> list[np.ndarray]:
        for name, array in feed.items():
            net.setInput(np.ascontiguousarray(array), name)
        outputs = net.forward(names)
        return list(outputs)

    return Runner("opencv", "OpenCV DNN (CPU)", _graph_inputs(proto), names, run)


def _open_tract(model, provider: str) -> Runner:
    import tract

    with _as_file(model) as path:
        runnable = tract.onnx().load(path).into_model().into_runnable()
    proto = _skeleton(model)
    specs = _graph_inputs(proto)
    names = [o.name for o in proto.graph.output]

    def run(feed: dict[str, np.ndarray]) -> list[np.ndarray]:
        outputs = runnable.run([np.ascontiguousarray(feed[spec.name]) for spec in specs])
        return [output.to_numpy() for output in outputs]

    return Runner("tract", "tract (CPU)", specs, names, run)


_OPENERS = {
    "ort": _open_ort,
    "onnx-reference": _open_reference,
    "openvino": _open_openvino,
    "opencv": _open_opencv,
    "tract": _open_tract,
    "tensorrt": _open_tensorrt,
}

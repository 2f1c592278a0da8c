"""Running ONNX models in ONNX Runtime: choosing an execution provider, sessions, inputs.

Provider names on the command line are short (``cpu``, ``cuda``, ``tensorrt``, ``auto``).
``select_providers`` maps them to ONNX Runtime's execution providers given the ones installed;
it is a pure function so that its logic is tested without a GPU. A session that silently fell
back to the CPU when a GPU provider was asked for is an error, not a surprise.
"""

from __future__ import annotations

import math
import os
import re
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ml_dtypes
import numpy as np
import onnx

from convc.arrays import read_npy, read_npz
from convc.diagnostics import ConvcError
from convc.limits import EXTERNAL_DATA_BYTES
from convc.onnxfile import copy_without, raw_data_bytes, save, weight_bytes

PROVIDERS = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
}
PREFERENCE = ("tensorrt", "cuda", "cpu")
"""The order ``auto`` tries."""

PROVIDER_CHOICES = (*PROVIDERS, "auto")
"""The providers a user may name (``--provider``, ``provider=``)."""

_HOW_TO_GET = {
    "cuda": "install the onnxruntime-gpu package instead of onnxruntime "
    "(pip uninstall onnxruntime && pip install onnxruntime-gpu), with CUDA and cuDNN",
    "tensorrt": "install the onnxruntime-gpu package with NVIDIA TensorRT "
    "(pip uninstall onnxruntime && pip install onnxruntime-gpu tensorrt)",
}


PROVIDER_OPTIONS: dict[str, dict[str, str]] = {
    # The CUDA provider rounds the inputs of convolutions and matrix products to TF32 (10
    # significant bits) by default on Ampere and newer GPUs; convc asks for float32.
    "CUDAExecutionProvider": {"use_tf32": "0"},
    # TensorRT builds float32 engines unless asked for lower precision; convc says so
    # explicitly. TF32, which TensorRT also allows by default, has no provider option: it is
    # turned off by NVIDIA_TF32_OVERRIDE=0 in the environment when the engine is built
    # (``TF32_ENVIRONMENT``).
    "TensorrtExecutionProvider": {"trt_fp16_enable": "False", "trt_int8_enable": "False"},
}
"""Options convc gives each execution provider so that it computes in float32."""

TF32_ENVIRONMENT = ("NVIDIA_TF32_OVERRIDE", "0")
"""Set (unless already set) before a GPU session starts: NVIDIA's libraries (TensorRT's
builder, cuBLAS, cuDNN) then never use TF32 tensor cores for float32 arithmetic."""

EXTRA_TRT_OPTIONS = "CONVC_TRT_OPTIONS"
"""An environment variable of further TensorRT provider options, ``key=value,key=value``
(an engine cache or a builder optimization level for a test run); it cannot turn on fp16."""


def provider_options(
    providers: Sequence[str], environ: Mapping[str, str] | None = None
) -> list[dict[str, str]]:
    """The options of each of ``providers`` (see ``PROVIDER_OPTIONS``)."""
    environ = os.environ if environ is None else environ
    options = []
    for name in providers:
        chosen = dict(PROVIDER_OPTIONS.get(name, {}))
        if name == PROVIDERS["tensorrt"] and environ.get(EXTRA_TRT_OPTIONS):
            for item in environ[EXTRA_TRT_OPTIONS].split(","):
                key, equals, value = item.partition("=")
                key = key.strip()
                if not equals or not key:
                    raise ConvcError(f"{EXTRA_TRT_OPTIONS}: expected key=value items, got {item!r}")
                if key in PROVIDER_OPTIONS[name]:
                    raise ConvcError(f"{EXTRA_TRT_OPTIONS}: {key} is convc's to set")
                chosen[key] = value.strip()
        options.append(chosen)
    return options


PROVIDER_LIBRARIES = {
    "cuda": "libonnxruntime_providers_cuda.so",
    "tensorrt": "libonnxruntime_providers_tensorrt.so",
}
"""The library of each GPU provider in onnxruntime-gpu's package (Linux names)."""

_LIBRARY_KINDS = (
    ("libcudnn", "the cuDNN library"),
    ("libnvinfer", "the TensorRT library"),
    ("libnvonnxparser", "the TensorRT library"),
    ("libcu", "the CUDA library"),  # libcudart, libcublas, libcublasLt, libcufft, libcurand
    ("libnvrtc", "the CUDA library"),
    ("libnvJitLink", "the CUDA library"),
    ("libonnxruntime_providers", "onnxruntime-gpu's provider library"),
)
_MISSING = re.compile(r"(lib[\w.+-]+?\.(?:so[\w.]*|dll))\s*:\s*cannot open shared object file")


def missing_library(provider: str, load: Callable[[str], object] | None = None) -> str:
    """Why ``provider`` ("cuda" or "tensorrt") did not start, in a few words: the library the
    dynamic loader could not find (the CUDA or cuDNN library, the TensorRT library), or, when
    every library loads, that no GPU is usable. ``load`` opens a shared library by path
    (``ctypes.CDLL`` by default; tests give a fake)."""
    if load is None:
        import ctypes

        def load(path: str) -> object:
            return ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)

    library = PROVIDER_LIBRARIES.get(provider)
    if library is None:
        return "it did not start"
    try:
        import onnxruntime

        path = os.path.join(os.path.dirname(onnxruntime.__file__), "capi", library)
    except ImportError:  # pragma: no cover - onnxruntime is a dependency
        path = library
    try:
        load(path)
    except OSError as error:
        text = " ".join(str(error).split())
        found = _MISSING.search(text)
        name = found.group(1) if found else None
        if name is None and "No such file" in text and library in text:
            name = library
        if name is None:
            return f"its library does not load: {text}"
        kind = next(
            (words for prefix, words in _LIBRARY_KINDS if name.startswith(prefix)), "a library"
        )
        return f"{kind} is missing ({name} cannot be loaded)"
    return "its libraries load, but no CUDA device is usable (see nvidia-smi: driver and GPU)"


def available_providers() -> list[str]:
    import onnxruntime as ort

    return ort.get_available_providers()


def select_providers(choice: str, available: Sequence[str]) -> list[str]:
    """ONNX Runtime providers for ``choice``, best first, always ending with the CPU."""
    if choice == "auto":
        return [PROVIDERS[name] for name in PREFERENCE if PROVIDERS[name] in available]
    if choice not in PROVIDERS:
        raise ConvcError(
            f"unknown provider {choice!r}",
            help="choose one of: auto, " + ", ".join(PROVIDERS),
        )
    wanted = PROVIDERS[choice]
    if wanted not in available:
        raise ConvcError(
            f"the {choice} execution provider is not available in this onnxruntime "
            f"(available: {', '.join(available)})",
            help=_HOW_TO_GET.get(choice),
        )
    return [wanted] if choice == "cpu" else [wanted, PROVIDERS["cpu"]]


OrtSession = Any
"""An ``onnxruntime.InferenceSession`` (onnxruntime ships no type information)."""


@dataclass
class Session:
    """An ONNX Runtime session and the provider that actually runs the model; ``notes`` says why
    ``auto`` passed over a better provider."""

    session: OrtSession
    provider: str
    notes: tuple[str, ...] = ()

    @property
    def inputs(self) -> list:
        """The graph's inputs (each with ``name``, ``shape`` and ``type``)."""
        return self.session.get_inputs()

    @property
    def input_names(self) -> list[str]:
        return [i.name for i in self.inputs]

    @property
    def output_names(self) -> list[str]:
        return [o.name for o in self.session.get_outputs()]

    def run(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        import onnxruntime as ort

        feed = {}
        for name, array in inputs.items():
            if array.dtype == BFLOAT16:  # onnxruntime takes bfloat16 only as an OrtValue
                array = ort.OrtValue.ortvalue_from_numpy_with_onnx_type(array.view(np.uint16), 16)
            feed[name] = array
        try:
            outputs = self.session.run(None, feed)
        except MemoryError:
            raise ConvcError("not enough memory to run the model on this input") from None
        except Exception as error:  # onnxruntime raises its own exception types
            raise ConvcError(f"onnxruntime failed to run the model: {error}") from None
        return dict(zip(self.output_names, outputs, strict=True))


def open_session(
    model: onnx.ModelProto | str | os.PathLike,
    provider: str = "cpu",
    threads: int | None = None,
    *,
    spin: bool = True,
    memory_pattern: bool = True,
) -> Session:
    """A session for an in-memory model or a file, on the chosen provider. ``spin=False`` stops
    onnxruntime's threads from spinning on the cores between runs, which helps back-to-back
    runs but slows any other work of the process (``convc check``'s NumPy reference: 2 to 4
    times). ``memory_pattern=False`` keeps a session that runs many times at one run's memory:
    with onnxruntime's memory pattern, the second run lays its values out in one new block
    beside the arena the first run filled, and holds them twice (three 256x256x64 convolutions
    at batch 8: 542 MiB from the second run on, 264 without; no slower, within noise)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads is not None:
        options.intra_op_num_threads = threads
    if not memory_pattern:
        options.enable_mem_pattern = False
    if not spin:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if largest_tensor_bytes(model) > EXTERNAL_DATA_BYTES:
        # onnxruntime's NCHWc layout pass copies each weight into an embedded initializer,
        # which it then refuses beyond 2 GiB; the other optimizations are kept.
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED

    def start(providers: list[str]):
        if providers[0] != PROVIDERS["cpu"]:
            os.environ.setdefault(*TF32_ENVIRONMENT)
        return _start(ort, model, options, providers)

    session, used, notes = start_session(provider, available_providers(), start)
    return Session(session, used, notes)


def start_session(
    choice: str, available: Sequence[str], start: Callable[[list[str]], OrtSession]
) -> tuple[OrtSession, str, tuple[str, ...]]:
    """Start a session for ``choice`` with ``start(providers)`` (which returns an onnxruntime
    session): the session, the provider that runs it and notes. An explicit GPU provider that
    does not start is a one-line error naming what is missing, never a silent fallback; ``auto``
    tries TensorRT, then CUDA, then the CPU, and notes why it passed over each."""
    providers = select_providers(choice, available)
    if choice != "auto":
        session = start(providers)
        used = session.get_providers()[0]
        if used != providers[0]:
            raise ConvcError(
                f"the {choice} provider failed to start: {missing_library(choice)}; "
                f"onnxruntime fell back to {used}",
                help=_HOW_TO_GET.get(choice),
            )
        return session, used, ()
    notes = []
    for name in providers:
        short = next(key for key, value in PROVIDERS.items() if value == name)
        candidates = [name] if short == "cpu" else [name, PROVIDERS["cpu"]]
        try:
            session = start(candidates)
        except ConvcError as error:
            if short == "cpu":
                raise
            notes.append(f"{short} did not start: {error.message}")
            continue
        used = session.get_providers()[0]
        if used == name:
            return session, used, tuple(notes)
        notes.append(f"{short} did not start: {missing_library(short)}")
    raise ConvcError("no execution provider started")  # pragma: no cover - the CPU always does


def _start(ort, model, options, providers: list[str]):
    """An onnxruntime session on ``providers`` (with convc's options for each)."""
    chosen = list(zip(providers, provider_options(providers), strict=True))
    try:
        if isinstance(model, onnx.ModelProto) and weight_bytes(model) > EXTERNAL_DATA_BYTES:
            # Beyond protobuf's 2 GiB: hand it over as a file with external data.
            with tempfile.TemporaryDirectory() as directory:
                path = Path(directory) / "model.onnx"
                save(model, path)
                return ort.InferenceSession(str(path), options, providers=chosen)
        if isinstance(model, onnx.ModelProto) and providers[0] == PROVIDERS["cpu"]:
            skeleton, weights = _weights_handed_over(model)
            options.add_external_initializers(
                list(weights), [ort.OrtValue.ortvalue_from_numpy(a) for a in weights.values()]
            )
            session = ort.InferenceSession(skeleton, options, providers=chosen)
            session.convc_weights = weights  # onnxruntime reads them in place: keep them alive
            return session
        source = model.SerializeToString() if isinstance(model, onnx.ModelProto) else str(model)
        return ort.InferenceSession(source, options, providers=chosen)
    except Exception as error:  # onnxruntime raises its own exception types
        raise ConvcError(f"onnxruntime cannot load the model: {error}") from None


HANDED_OVER_BYTES = 4096
"""Initializers larger than this reach onnxruntime as arrays, not inside the serialized model."""


def _weights_handed_over(model: onnx.ModelProto) -> tuple[bytes, dict[str, np.ndarray]]:
    """The model serialized with its large weights marked as external data, and those weights
    as arrays by name, for ``SessionOptions.add_external_initializers``: onnxruntime then takes
    them as they are instead of parsing them out of the encoding, which costs more than the
    rest of starting a session (ResNet50: 0.37 s against 0.10 s)."""
    skeleton = copy_without(model, "graph")
    skeleton.graph.CopyFrom(copy_without(model.graph, "initializer"))
    graph = skeleton.graph
    weights = {}
    for tensor in model.graph.initializer:
        dtype = _HANDED_OVER_TYPES.get(tensor.data_type)
        if dtype is None or raw_data_bytes(tensor) <= HANDED_OVER_BYTES:
            graph.initializer.append(tensor)
            continue
        weights[tensor.name] = np.frombuffer(tensor.raw_data, dtype).reshape(tensor.dims)
        external = graph.initializer.add(
            name=tensor.name, data_type=tensor.data_type, dims=tensor.dims
        )
        external.data_location = onnx.TensorProto.EXTERNAL
        for key, value in (
            ("location", "convc-in-memory"),
            ("length", str(weights[tensor.name].nbytes)),
        ):
            external.external_data.add(key=key, value=value)
    return skeleton.SerializeToString(), weights


_HANDED_OVER_TYPES = {
    onnx.TensorProto.FLOAT: np.float32,
    onnx.TensorProto.FLOAT16: np.float16,
    onnx.TensorProto.DOUBLE: np.float64,
    onnx.TensorProto.INT64: np.int64,
    onnx.TensorProto.INT32: np.int32,
}


SMALL_MODEL_FILE = 64 << 20
"""A model file smaller than this may hold external-data references worth reading; a larger
one embeds its weights, so none of them exceeds 2 GiB."""


def largest_tensor_bytes(model: onnx.ModelProto | str | os.PathLike) -> int:
    """The size of the largest initializer, embedded or external, without loading weights."""
    if not isinstance(model, onnx.ModelProto):
        if not os.path.isfile(model):
            return 0  # onnxruntime will say what is wrong with it
        if os.path.getsize(model) > SMALL_MODEL_FILE:
            return 0  # weights embedded in the file: none can exceed protobuf's 2 GiB
        try:
            model = onnx.load(str(model), load_external_data=False)
        except Exception:  # not a model file: onnxruntime will say so when it loads it
            return 0
    sizes = [0]
    for tensor in model.graph.initializer:
        external = {entry.key: entry.value for entry in tensor.external_data}
        sizes.append(int(external.get("length", 0)) if external else raw_data_bytes(tensor))
    return max(sizes)


def random_array(shape, *, seed: int = 0, batch: int = 1, dtype=np.float32) -> np.ndarray:
    """A random array: standard-normal floats, small non-negative ints, or booleans. Unknown
    (None or symbolic) dimensions take ``batch``."""
    concrete = [d if isinstance(d, int) and d >= 0 else batch for d in shape]
    size = math.prod(concrete) * np.dtype(dtype).itemsize
    if size > MAX_INPUT_BYTES:
        raise ConvcError(
            f"a random input of shape {tuple(concrete)} would need {size / 2**30:,.1f} GiB",
            help="give a smaller --batch, or the input as a file",
        )
    rng = np.random.default_rng(seed)
    kind = np.dtype(dtype).kind
    if kind == "b":
        return rng.random(concrete, dtype=np.float32) < 0.5
    if kind in "iu":
        return rng.integers(0, 10, concrete).astype(dtype)
    return rng.standard_normal(concrete, dtype=np.float32).astype(dtype)


def random_inputs(session, *, seed: int = 0, batch: int = 1) -> dict[str, np.ndarray]:
    """Random inputs for every graph input of a ``Session`` or a ``convc.runners.Runner``
    (input i drawn with seed + i)."""
    return {
        spec.name: random_array(spec.shape, seed=seed + i, batch=batch, dtype=_dtype_of(spec))
        for i, spec in enumerate(session.inputs)
    }


BFLOAT16 = np.dtype(ml_dtypes.bfloat16)
MAX_INPUT_BYTES = 8 << 30
"""Random inputs convc draws are at most 8 GiB."""

_NUMPY_TYPES = {
    "tensor(float)": np.float32,
    "tensor(double)": np.float64,
    "tensor(float16)": np.float16,
    "tensor(bfloat16)": BFLOAT16,
    "tensor(bool)": np.bool_,
    **{
        f"tensor({t})": np.dtype(t)
        for t in ("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64")
    },
}


def _dtype_of(spec) -> np.dtype:
    if spec.type not in _NUMPY_TYPES:
        raise ConvcError(
            f"convc cannot make random values for input {spec.name!r} of type {spec.type}",
            help=f"give it with --input {spec.name}=FILE.npy",
        )
    return np.dtype(_NUMPY_TYPES[spec.type])


def read_inputs(specs: Sequence[str], input_names: Sequence[str]) -> dict[str, np.ndarray]:
    """Inputs from ``NAME=FILE.npy``, ``FILE.npy`` (the only input) or ``FILE.npz`` (by name)."""
    inputs: dict[str, np.ndarray] = {}
    for spec in specs:
        name, equals, path = spec.partition("=")
        if not equals:
            name, path = "", spec
        path_ = Path(path)
        if path_.suffix == ".npz":
            arrays = read_npz(path_)
            for key, array in arrays.items():
                if key not in input_names:
                    raise ConvcError(
                        f"the file has an array {key!r}, but the model's inputs are "
                        + ", ".join(input_names),
                        path=path,
                    )
                inputs[key] = array
            continue
        if not name:
            if len(input_names) != 1:
                raise ConvcError(f"say which input {path} is: --input NAME={path}")
            name = input_names[0]
        if name not in input_names:
            raise ConvcError(f"the model has no input {name!r} (inputs: {', '.join(input_names)})")
        inputs[name] = read_npy(path_)
    return inputs


def check_inputs(session, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Every input of a ``Session`` or a ``convc.runners.Runner`` given, with the model's rank,
    static dimensions and dtype."""
    checked = {}
    for spec in session.inputs:
        if spec.name not in inputs:
            raise ConvcError(f"no value for the model's input {spec.name!r}")
        array = np.asarray(inputs[spec.name])
        if array.ndim != len(spec.shape) or any(
            isinstance(d, int) and d >= 0 and d != n
            for d, n in zip(spec.shape, array.shape, strict=True)
        ):
            expected = (
                "(" + ", ".join(str(d) if isinstance(d, int) else "batch" for d in spec.shape) + ")"
            )
            raise ConvcError(f"input {spec.name!r} has shape {array.shape}, expected {expected}")
        if array.dtype.kind not in "fiub" and array.dtype != BFLOAT16:
            raise ConvcError(
                f"input {spec.name!r} has dtype {array.dtype}; the model takes real numbers"
            )
        checked[spec.name] = array.astype(_dtype_of(spec), copy=False)
    return checked

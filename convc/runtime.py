"""Running ONNX models in ONNX Runtime: choosing an execution provider, sessions, inputs.

Provider names on the command line are short (``cpu``, ``cuda``, ``tensorrt``, ``auto``).
``select_providers`` maps them to ONNX Runtime's execution providers given the ones installed;
it is a pure function so that its logic is tested without a GPU. A session that silently fell
back to the CPU when a GPU provider was asked for is an error, not a surprise.
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import ml_dtypes
import numpy as np
import onnx

from convc.arrays import read_npy, read_npz
from convc.diagnostics import ConvcError
from convc.limits import EXTERNAL_DATA_BYTES
from convc.onnxfile import save, weight_bytes

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


@dataclass
class Session:
    """An ONNX Runtime session and the provider that actually runs the model."""

    session: object
    provider: str

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
) -> Session:
    """A session for an in-memory model or a file, on the chosen provider. ``spin=False`` stops
    onnxruntime's threads from spinning on the cores between runs, which helps back-to-back
    runs but slows any other work of the process (``convc check``'s NumPy reference: 2 to 4
    times)."""
    import onnxruntime as ort

    providers = select_providers(provider, available_providers())
    options = ort.SessionOptions()
    if threads is not None:
        options.intra_op_num_threads = threads
    if not spin:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if largest_tensor_bytes(model) > EXTERNAL_DATA_BYTES:
        # onnxruntime's NCHWc layout pass copies each weight into an embedded initializer,
        # which it then refuses beyond 2 GiB; the other optimizations are kept.
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    try:
        if isinstance(model, onnx.ModelProto) and weight_bytes(model) > EXTERNAL_DATA_BYTES:
            # Beyond protobuf's 2 GiB: hand it over as a file with external data.
            with tempfile.TemporaryDirectory() as directory:
                path = Path(directory) / "model.onnx"
                save(model, path)
                session = ort.InferenceSession(str(path), options, providers=providers)
        else:
            source = model.SerializeToString() if isinstance(model, onnx.ModelProto) else str(model)
            session = ort.InferenceSession(source, options, providers=providers)
    except Exception as error:  # onnxruntime raises its own exception types
        raise ConvcError(f"onnxruntime cannot load the model: {error}") from None
    used = session.get_providers()[0]
    if provider not in ("auto", "cpu") and used != providers[0]:
        raise ConvcError(
            f"onnxruntime fell back to {used}: the {provider} provider failed to start",
            help=_HOW_TO_GET.get(provider),
        )
    return Session(session, used)


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
        sizes.append(int(external.get("length", 0)) if external else len(tensor.raw_data))
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

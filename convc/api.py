"""convc's Python API, re-exported by ``convc``: build, save, run and check models.

``source`` arguments take a ``.conv`` file as a ``pathlib.Path`` (or any ``os.PathLike``), a
``str`` path, or the source text itself: a ``str`` with a newline or a ``(`` in it is text,
any other ``str`` a path. A resolved ``convc.model.Model`` (from ``load``) is taken as it is.
Every mistake in the input is a ``convc.ConvcError`` (``convc.render`` formats it with the
source line and carets).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

from convc.check import CheckReport
from convc.compare import DEFAULT_ATOL, DEFAULT_RTOL
from convc.diagnostics import ConvcError
from convc.lower import WORKAROUNDS_KEY
from convc.model import Model
from convc.options import BuildOptions

Source = str | os.PathLike | Model
"""A .conv path, .conv text, a Keras model file (.keras, .h5, .json), or a resolved model."""

Weights = str | os.PathLike | Mapping[str, np.ndarray] | None
"""A weights file (``.npz`` with keys ``layer/variable``, or Keras ``.weights.h5``), the same
arrays as a dict, or None for the layers' initializers (seeded by ``BuildOptions.seed``)."""

Inputs = Mapping[str, np.ndarray] | np.ndarray | Sequence[str] | None
"""Arrays by input name (or one array for a one-input model), ``[NAME=]FILE.npy`` /
``FILE.npz`` specs to read them from, or None for random standard-normal inputs."""


def is_text(source: str | os.PathLike) -> bool:
    """Whether a ``str`` source is .conv text rather than a path."""
    return isinstance(source, str) and ("\n" in source or "(" in source)


def read(source: str | os.PathLike) -> tuple[str, str]:
    """The text of a source and the name errors are reported against (the path, or
    ``<input>`` for text)."""
    from convc.compiler import read_source

    if is_text(source):
        return str(source), "<input>"
    if not isinstance(source, str | os.PathLike):
        raise TypeError(f"a source is a path or .conv text, got {type(source).__name__}")
    return read_source(source), os.fspath(source)


def is_model_path(source: Source) -> bool:
    """Whether ``source`` names a Keras model file (``.keras``, ``.h5``, ``.json``)."""
    from convc.importer import is_model_file

    return isinstance(source, str | os.PathLike) and not is_text(source) and is_model_file(source)


def load(source: Source) -> Model:
    """Parse and resolve a .conv source, or import a Keras model file: its layers, shapes and
    parameters (``model.warnings`` holds the located warnings)."""
    return _load_with_weights(source, None)[0]


def _load_with_weights(source: Source, weights: Weights) -> tuple[Model, Weights]:
    """The model, and ``weights`` or, when None, the weights a Keras model file carries."""
    from convc.compiler import load_source, resolve_text

    if isinstance(source, Model):
        return source, weights
    if is_model_path(source):
        loaded = load_source(source)
        return loaded.model, weights if weights is not None else loaded.weights
    return resolve_text(read(source)[0]), weights


def build(
    source: Source,
    weights: Weights = None,
    *,
    options: BuildOptions | None = None,
    consume_weights: bool = False,
) -> onnx.ModelProto:
    """Compile a .conv source or a Keras model file to a checked ONNX model, in memory. A model
    file's own weights are used unless ``weights`` are given. ``consume_weights`` lets lowering
    empty a dict of ``weights`` as it goes, so that the arrays are held once, not twice (a model
    file's own weights always are)."""
    from convc.compiler import compile_model

    owned = consume_weights or (weights is None and is_model_path(source))
    model, weights = _load_with_weights(source, weights)
    return compile_model(model, weights, options or BuildOptions(), consume_weights=owned)


def save(model: onnx.ModelProto, path: str | os.PathLike) -> list[Path]:
    """Write ``model`` atomically; weights too large to embed (beyond protobuf's 2 GiB) go to
    ``<name>.data`` beside it. Returns the files written (the data file first)."""
    from convc.onnxfile import save as save_file

    return save_file(model, path)


def workarounds(model: onnx.ModelProto) -> list[str]:
    """The target's workarounds lowering applied (``"layer: what"``), from the model's
    metadata; empty when there were none."""
    return [
        line
        for entry in model.metadata_props
        if entry.key == WORKAROUNDS_KEY
        for line in entry.value.splitlines()
    ]


@dataclass(frozen=True)
class RunResult:
    """The outputs of one run, by name, and where it ran."""

    outputs: dict[str, np.ndarray]
    inputs: dict[str, np.ndarray]
    runtime: str
    device: str


def run(
    model: onnx.ModelProto | Source,
    inputs: Inputs = None,
    *,
    runtime: str = "ort",
    provider: str = "cpu",
    weights: Weights = None,
    options: BuildOptions | None = None,
    batch: int = 1,
    input_seed: int = 0,
) -> RunResult:
    """Run a model in ``runtime`` (``convc.targets.RUNTIMES``). ``model``: an ``onnx.ModelProto``,
    an ``.onnx`` file, or a .conv source (a ``.conv`` path, text, or a ``Model``) compiled in
    memory with ``options`` for ``runtime``'s own target unless ``options.target`` says
    otherwise. ``weights`` and ``options`` apply to .conv sources only. Random inputs
    (``inputs=None``) use ``input_seed`` (input i with ``input_seed + i``) and ``batch`` for a
    dynamic batch."""
    from convc.runners import open_runner
    from convc.runtime import check_inputs, random_inputs, read_inputs

    if provider != "cpu" and runtime != "ort":
        raise ConvcError("'provider' applies to the ort runtime")
    if is_conv(model):
        # TensorRT's parser reads opsets up to 22 only: a model for it is built for its target
        options = (options or BuildOptions()).for_runtime(
            "tensorrt" if runtime == "ort" and tensorrt_runs(provider) else runtime
        )
        proto = build(model, weights, options=options)
    else:
        path = None if isinstance(model, onnx.ModelProto) else os.fspath(model)
        if path is not None and not Path(path).is_file():
            raise ConvcError("no such file", path=path)
        if weights is not None:
            raise ConvcError(
                "'weights' applies to .conv sources; an .onnx model carries its weights",
                path=path,
            )
        for option in (options or BuildOptions()).non_defaults():
            raise ConvcError(
                f"'{option}' applies to .conv sources; an .onnx model is already built",
                path=path,
            )
        proto = model if path is None else path
    session = open_runner(proto, runtime, provider)
    if inputs is None:
        feeds = random_inputs(session, seed=input_seed, batch=batch)
    else:
        if isinstance(inputs, np.ndarray):
            if len(session.input_names) != 1:
                raise ConvcError(
                    f"the model has {len(session.input_names)} inputs: give arrays by name"
                )
            inputs = {session.input_names[0]: inputs}
        elif isinstance(inputs, Sequence) and not isinstance(inputs, str | bytes):
            inputs = read_inputs(list(inputs), session.input_names)
        feeds = check_inputs(session, dict(inputs))
    outputs = session.run(feeds)
    return RunResult(outputs, feeds, session.runtime, session.device)


def tensorrt_runs(provider: str) -> bool:
    """Whether onnxruntime's TensorRT provider will run a model for ``provider``."""
    if provider == "tensorrt":
        return True
    if provider != "auto":
        return False
    from convc.runtime import PROVIDERS, available_providers

    return PROVIDERS["tensorrt"] in available_providers()


def is_conv(model: onnx.ModelProto | Source) -> bool:
    """Whether ``run`` compiles ``model`` (a .conv path, .conv text or a Model) rather than
    loading a built one."""
    if isinstance(model, Model):
        return True
    if isinstance(model, onnx.ModelProto):
        return False
    return is_text(model) or Path(model).suffix == ".conv" or is_model_path(model)


def check(
    source: Source,
    weights: Weights = None,
    inputs: Inputs = None,
    *,
    options: BuildOptions | None = None,
    provider: str = "cpu",
    rtol: float = DEFAULT_RTOL,
    atol: float = DEFAULT_ATOL,
    batch: int = 1,
    input_seed: int = 0,
) -> CheckReport:
    """Compile with every layer's output exposed, run it in ONNX Runtime and compare each
    layer with the NumPy reference (``convc.compare``'s rule). Random inputs (``inputs=None``)
    use ``input_seed`` (input i with ``input_seed + i``) and ``batch``; the report says where
    the model first diverges. ``options.io_layout`` does not apply: layers are compared in
    Keras's layout."""
    from convc.check import check as check_model
    from convc.compiler import model_weights

    options = options or BuildOptions()
    model, weights = _load_with_weights(source, weights)
    arrays = model_weights(model, weights, options.seed)
    return check_model(
        model,
        arrays,
        model_inputs(model, inputs, batch=batch, seed=input_seed),
        provider=provider,
        rtol=rtol,
        atol=atol,
        options=options,
    )


def model_inputs(
    model: Model, inputs: Inputs = None, *, batch: int = 1, seed: int = 0
) -> dict[str, np.ndarray]:
    """Inputs for a resolved model: given ones by name (arrays, or file specs), or random ones
    (input i drawn with ``seed + i``; ``batch`` where the batch is dynamic)."""
    from convc.runtime import random_array, read_inputs

    names = [model_input.name for model_input in model.inputs]
    if inputs is None:
        return {
            model_input.name: random_array(model_input.shape, seed=seed + i, batch=batch)
            for i, model_input in enumerate(model.inputs)
        }
    if isinstance(inputs, np.ndarray):
        if len(names) != 1:
            raise ConvcError(f"the model has {len(names)} inputs: give arrays by name")
        return {names[0]: inputs}
    if isinstance(inputs, Sequence) and not isinstance(inputs, str | bytes):
        return read_inputs(list(inputs), names)
    return dict(inputs)

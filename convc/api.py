"""convc's Python API, re-exported by ``convc``: load, build, save, run and check models.

Paths and text are different functions, as ``json.load`` and ``json.loads`` are: ``load``,
``build``, ``run`` and ``check`` take a path (``str`` or ``os.PathLike``: a ``.conv`` file or a
Keras model file, ``.keras``, ``.h5`` or ``.json``) or a loaded ``convc.model.Model``, never
text; ``load_text`` and ``build_text`` take ``.conv`` text. Every mistake in the input is a
``convc.ConvcError`` (``convc.render`` formats it with the source line and carets).

``replace={"lambda_1": "Rescaling(0.00392156862745098, offset=-0.5)"}`` (the command line's
``--replace``) puts a ``.conv`` layer call in the place of a model's layer, by name: the way to
build a model file whose Lambda or custom layers hold code, which convc never runs
(``convc.replace``). A model file's weights stay; the replaced layers' come from ``weights``.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import onnx

from convc.compiler import (
    Replace,
    WeightsSource,
    compile_model,
    load_source,
    model_weights,
    resolve_with,
)
from convc.diagnostics import ConvcError
from convc.importer.files import is_model_file
from convc.int8_check import Int8CheckReport
from convc.layer_check import CheckReport, check_layers
from convc.lower import WORKAROUNDS_KEY
from convc.model import Model
from convc.options import BuildOptions

if TYPE_CHECKING:
    from convc.memory import Bound

PathLike = str | os.PathLike[str]
"""A path: a ``.conv`` file, or a Keras model file (``.keras``, ``.h5``, ``.json``)."""

Source = PathLike | Model
"""What ``build``, ``run`` and ``check`` compile: a path, or a model ``load`` resolved."""

Weights = WeightsSource
"""A weights file (``.npz`` with keys ``layer/variable``, or Keras ``.weights.h5``), the same
arrays as a dict, or None for the layers' initializers (seeded by ``BuildOptions.seed``)."""

Inputs = Mapping[str, np.ndarray] | np.ndarray | Sequence[str] | None
"""Arrays by input name (or one array for a one-input model), ``[NAME=]FILE.npy`` /
``FILE.npz`` specs to read them from, or None for random standard-normal inputs."""


def _path(source: object) -> PathLike:
    """``source`` checked to be a path: text is for ``load_text`` and ``build_text``."""
    if not isinstance(source, str | os.PathLike):
        raise TypeError(f"expected a path or a convc Model, got {type(source).__name__}")
    if isinstance(source, str) and "\n" in source and not os.path.lexists(source):
        raise ConvcError(
            "no such file: this str has several lines, like .conv text; a path was expected",
            help="compile text with convc.build_text(text) or convc.load_text(text)",
        )
    return source


def load(
    path: PathLike,
    *,
    input_shapes: Mapping[str, tuple[int, ...]] | None = None,
    replace: Replace = None,
) -> Model:
    """Read and resolve a ``.conv`` file, or import a Keras model file (``input_shapes`` gives,
    by input name, the dimensions a model file leaves unknown; ``""`` names every input;
    ``replace`` replaces layers by name). The model's layers, shapes and parameters;
    ``model.warnings`` holds the located warnings."""
    return load_source(_path(path), input_shapes=input_shapes, replace=replace).model


def load_text(text: str, *, replace: Replace = None) -> Model:
    """Parse and resolve ``.conv`` text (``replace`` replaces layers by name)."""
    return resolve_with(text, replace)


def _load_with_weights(
    source: Source, weights: Weights, replace: Replace = None
) -> tuple[Model, Weights, bool]:
    """The model; ``weights`` or, when None, the weights a Keras model file carries (with the
    replaced layers' from ``weights``); and whether those arrays were loaded for this call
    alone (lowering may then let them go)."""
    if isinstance(source, Model):
        if replace:
            raise ConvcError(
                "'replace' applies to a path or text: this Model is already resolved",
                help="give replace= to convc.load (or build from the path)",
            )
        return source, weights, False
    path = _path(source)
    loaded = load_source(path, replace=replace, weights=weights)
    chosen = loaded.weights_for(weights, os.fspath(path))
    return loaded.model, chosen, chosen is not weights and isinstance(chosen, Mapping)


def build(
    source: Source,
    weights: Weights = None,
    *,
    options: BuildOptions | None = None,
    consume_weights: bool = False,
    replace: Replace = None,
    max_memory: int | str | None = None,
) -> onnx.ModelProto:
    """Compile a ``.conv`` file, a Keras model file or a loaded model to a checked ONNX model,
    in memory. A model file's own weights are used unless ``weights`` are given (with
    ``replace``, ``weights`` give the replaced layers' arrays, laid over the file's).
    ``consume_weights`` hands the arrays of a dict of ``weights`` over: lowering empties the
    dict as it goes and may change an array in place, so that the arrays are held once, not
    twice (a model file's own weights always are). An int8 build (``options.precision="int8"``)
    runs the model to calibrate it: one that would hold more than ``max_memory`` (bytes, or a
    size such as ``"16G"``; default ``convc.memory.default_max_memory()``) is refused before a
    calibration sample is drawn (``convc.memory.int8_build_estimate``)."""
    options = options or BuildOptions()
    bound = _build_bound(options, max_memory)
    model, weights, owned = _load_with_weights(source, weights, replace)
    return compile_model(
        model, weights, options, consume_weights=consume_weights or owned, bound=bound
    )


def _build_bound(options: BuildOptions, max_memory: int | str | None) -> Bound:
    """What a build is held to: ``max_memory`` applies to int8 builds, which run the model."""
    from convc.memory import Bound, max_memory_bytes

    limit = max_memory_bytes(max_memory)
    if max_memory is not None and options.precision != "int8":
        raise ConvcError(
            f"max_memory applies to int8 builds, which run the model to calibrate it; a "
            f"{options.precision} build runs nothing and holds its weights about once",
            help="build with --precision int8, or leave --max-memory out",
        )
    return Bound(limit)


@dataclass(frozen=True)
class Saved:
    """What ``build_and_save`` wrote."""

    files: list[Path]
    """The files written, as ``save`` gives them: the model, or its data file and the model."""
    model: onnx.ModelProto
    """The model written, without its large weights' bytes (those initializers keep their
    names, data types and shapes): its graph, opset and metadata, for ``workarounds``."""


def build_and_save(
    source: Source,
    path: PathLike,
    weights: Weights = None,
    *,
    options: BuildOptions | None = None,
    consume_weights: bool = False,
    replace: Replace = None,
    max_memory: int | str | None = None,
) -> Saved:
    """``build`` then ``save`` (the arguments are theirs), holding each weight once: a large
    weight goes from the array lowering made to the file, never into an ``onnx.ModelProto``,
    where protobuf would copy it (and copy it again to write it). For a model file whose
    weights are hundreds of megabytes this is the difference between holding them once and
    about twice (``convc build`` builds this way)."""
    from convc.compiler import compile_detached
    from convc.onnxfile import save as save_file

    options = options or BuildOptions()
    bound = _build_bound(options, max_memory)
    model, weights, owned = _load_with_weights(source, weights, replace)
    detached = compile_detached(
        model, weights, options, consume_weights=consume_weights or owned, bound=bound
    )
    del weights
    files = save_file(detached, path)
    return Saved(files, detached.proto)


def build_text(
    text: str,
    weights: Weights = None,
    *,
    options: BuildOptions | None = None,
    replace: Replace = None,
    max_memory: int | str | None = None,
) -> onnx.ModelProto:
    """Compile ``.conv`` text to a checked ONNX model, in memory (``replace`` replaces layers
    by name; ``max_memory`` bounds an int8 build, as ``build``'s does)."""
    options = options or BuildOptions()
    bound = _build_bound(options, max_memory)
    return compile_model(resolve_with(text, replace), weights, options, bound=bound)


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
    replace: Replace = None,
    max_memory: int | str | None = None,
) -> RunResult:
    """Run a model in ``runtime`` (``convc.targets.RUNTIMES``). ``model``: an ``onnx.ModelProto``,
    an ``.onnx`` file, or a source (a ``.conv`` file, a Keras model file, or a ``Model``) compiled
    in memory with ``options`` for ``runtime``'s own target unless ``options.target`` says
    otherwise. ``weights``, ``options`` and ``replace`` apply to .conv sources only. Random inputs
    (``inputs=None``) use ``input_seed`` (input i with ``input_seed + i``) and ``batch`` for a
    dynamic batch. A run that would hold more than ``max_memory`` (bytes, or a size such as
    ``"16G"``; default ``convc.memory.default_max_memory()``) is refused before the model is
    loaded in the runtime (``convc.memory``); one that builds an int8 model, before it draws a
    calibration sample, when the calibration or the run would (``convc.memory.Bound``)."""
    from convc.memory import Bound, input_names, max_memory_bytes, model_graph, run_estimate
    from convc.runners import open_runner
    from convc.runtime import check_inputs, random_inputs

    if provider != "cpu" and runtime != "ort":
        raise ConvcError("'provider' applies to the ort runtime")
    limit = max_memory_bytes(max_memory)
    everything = runtime == "onnx-reference"  # its evaluator keeps every value

    def estimate_run(graph: onnx.ModelProto, given: Mapping[str, np.ndarray] | None):
        shapes = None if given is None else {name: np.shape(a) for name, a in given.items()}
        estimate = run_estimate(graph, shapes, batch=batch, keeps_everything=everything)
        if isinstance(weights, Mapping):  # the caller's arrays stay alive beside the model's
            held = sum(np.asarray(array).nbytes for array in weights.values())
            estimate = dataclasses.replace(estimate, weights=estimate.weights + held)
        return estimate

    proto: onnx.ModelProto | str
    given = None
    if isinstance(model, onnx.ModelProto):
        _refuse_build_arguments(None, weights, options, replace)
        proto = model
    elif not is_conv(model):
        proto = os.fspath(_path(model))
        if not Path(proto).is_file():
            raise ConvcError("no such file", path=proto)
        _refuse_build_arguments(proto, weights, options, replace)
    else:
        # TensorRT's parser reads opsets up to 22 only: a model for it is built for its target
        options = (options or BuildOptions()).for_runtime(
            "tensorrt" if runtime == "ort" and tensorrt_runs(provider) else runtime
        )
        loaded, chosen, owned = _load_with_weights(model, weights, replace)
        # read before an int8 build, whose bound counts the run on them
        given = None if inputs is None else model_inputs(loaded, inputs)
        proto = compile_model(
            loaded,
            chosen,
            options,
            consume_weights=owned,
            bound=Bound(limit, "run", running=lambda graph: estimate_run(graph, given)),
        )
    try:
        graph = model_graph(proto)
    except ConvcError:
        open_runner(proto, runtime, provider)  # the runtime's own words for what is wrong
        raise
    if given is None and inputs is not None:
        given = _given_arrays(inputs, input_names(graph))
    estimate = estimate_run(graph, given)
    del graph
    estimate.enforce(limit, path=proto if isinstance(proto, str) else None)
    session = open_runner(proto, runtime, provider)
    if given is None:
        feeds = random_inputs(session, seed=input_seed, batch=batch)
    else:
        feeds = check_inputs(session, given)
    outputs = session.run(feeds)
    return RunResult(outputs, feeds, session.runtime, session.device)


def _given_arrays(inputs: Inputs, names: list[str]) -> dict[str, np.ndarray]:
    """Given inputs as arrays by name: one array for a one-input model, arrays by name, or
    file specs, read."""
    from convc.runtime import read_inputs

    if isinstance(inputs, np.ndarray):
        if len(names) != 1:
            raise ConvcError(f"the model has {len(names)} inputs: give arrays by name")
        return {names[0]: inputs}
    if isinstance(inputs, Mapping):
        return dict(inputs)
    return read_inputs(_specs(inputs or []), names)


def _refuse_build_arguments(
    path: str | None, weights: Weights, options: BuildOptions | None, replace: Replace = None
) -> None:
    """A built model takes no weights, no build options and no replacements."""
    if replace:
        raise ConvcError(
            "'replace' applies to .conv sources and Keras model files; an .onnx model is "
            "already built",
            path=path,
        )
    if weights is not None:
        raise ConvcError(
            "'weights' applies to .conv sources; an .onnx model carries its weights", path=path
        )
    for option in (options or BuildOptions()).non_defaults():
        raise ConvcError(
            f"'{option}' applies to .conv sources; an .onnx model is already built", path=path
        )


def tensorrt_runs(provider: str) -> bool:
    """Whether onnxruntime's TensorRT provider will run a model for ``provider``."""
    if provider == "tensorrt":
        return True
    if provider != "auto":
        return False
    from convc.runtime import PROVIDERS, available_providers

    return PROVIDERS["tensorrt"] in available_providers()


def is_conv(model: onnx.ModelProto | Source) -> bool:
    """Whether ``run`` compiles ``model`` (a ``.conv`` file, a Keras model file or a Model)
    rather than loading a built one."""
    if isinstance(model, Model):
        return True
    if isinstance(model, onnx.ModelProto):
        return False
    path = os.fspath(_path(model))
    return Path(path).suffix == ".conv" or is_model_file(path)


def check(
    source: Source,
    weights: Weights = None,
    inputs: Inputs = None,
    *,
    options: BuildOptions | None = None,
    provider: str = "cpu",
    rtol: float | None = None,
    atol: float | None = None,
    batch: int = 1,
    input_seed: int = 0,
    replace: Replace = None,
    max_memory: int | str | None = None,
) -> CheckReport | Int8CheckReport:
    """Compile ``source`` (a path or a loaded model) with every layer's output exposed, run it in
    ONNX Runtime and compare each layer with the NumPy reference (``convc.compare``'s rule).
    Random inputs (``inputs=None``) use ``input_seed`` (input i with ``input_seed + i``) and
    ``batch``; the report says where the model first diverges. ``rtol`` and ``atol`` default to
    the precision's, as ``convc check``'s do (1e-4 for float32, ``convc.precision``'s 1e-2 for
    float16). ``options.io_layout`` does not
    apply: layers are compared in Keras's layout. ``replace`` replaces layers by name. A check
    that would hold more than ``max_memory`` (bytes, or a size such as ``"16G"``; default
    ``convc.memory.default_max_memory()``) is refused before it runs (``convc.memory``).

    An int8 model (``options.precision="int8"``) is checked by ``convc.int8_check``: every
    quantized group against the int8 reference within one step, and the accuracy cost against
    float32 on held-out ``inputs`` (without them, the calibration samples after the calibrating
    ones, else random ones); ``rtol`` and ``atol`` do not apply. ``max_memory`` does: the
    estimate counts the calibration, the two models' runs on the held-out inputs and the int8
    reference (``convc.memory.int8_check_estimate``), before random calibration samples are
    drawn."""
    options = options or BuildOptions()
    model, weights, _ = _load_with_weights(source, weights, replace)
    arrays = model_weights(model, weights, options.seed)
    if options.precision == "int8":
        from convc.int8_check import check_int8

        given = None if inputs is None else model_inputs(model, inputs)
        return check_int8(
            model,
            arrays,
            given,
            options=options,
            provider=provider,
            batch=batch,
            input_seed=input_seed,
            max_memory=max_memory,
        )
    return check_layers(
        model,
        arrays,
        None if inputs is None else model_inputs(model, inputs),
        provider=provider,
        rtol=rtol,
        atol=atol,
        options=options,
        batch=batch,
        input_seed=input_seed,
        max_memory=max_memory,
    )


def model_inputs(
    model: Model, inputs: Inputs = None, *, batch: int = 1, seed: int = 0
) -> dict[str, np.ndarray]:
    """Inputs for a resolved model: given ones by name (arrays, or file specs), or random ones
    (input i drawn with ``seed + i``; ``batch`` where the batch is dynamic)."""
    from convc.runtime import random_array

    names = [model_input.name for model_input in model.inputs]
    if inputs is None:
        return {
            model_input.name: random_array(model_input.shape, seed=seed + i, batch=batch)
            for i, model_input in enumerate(model.inputs)
        }
    return _given_arrays(inputs, names)


def _specs(inputs: Sequence[str]) -> list[str]:
    """Input file specs, given as a list: a lone str is one spec's characters, not a list."""
    if isinstance(inputs, str | bytes):
        raise TypeError(f"give input files as a list of specs, [{inputs!r}]")
    return list(inputs)

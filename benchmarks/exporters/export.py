"""Export a .conv net to ONNX with another exporter, for the side-by-side benchmark.

Runs inside one of the exporters' virtualenvs (``benchmarks/exporters/setup.sh`` makes them),
never in convc's own: convc does not depend on anything imported here.

    python export.py NET.conv --save-weights W.weights.h5 [--seed N]
    python export.py NET.conv OUT.onnx --exporter NAME --weights W.weights.h5
                     [--torch-exporter dynamo|torchscript]

The first form builds the Keras model, draws random weights (seeded, scaled by fan-in so that
outputs stay O(1)) and writes them with Keras's own ``save_weights``; convc and every exporter
then load that one file, so their ONNX models can be compared output for output. The second
form exports; NAME is one of

* ``keras-torch`` (torch venv): Keras 3 on the torch backend, Keras's own
  ``model.export(OUT, format="onnx", opset_version=18)``; the report records which
  ``torch.onnx.export`` calls Keras made inside (``torch_onnx_calls``) and their failures;
* ``keras-tf`` (tf venv): Keras 3 on the TensorFlow backend, the same ``model.export``, which
  converts the traced model with tf2onnx's ``from_function``;
* ``tf_keras-tf2onnx`` (tf venv): the same net built in tf_keras (Keras 2), the Keras 3 model's
  weights copied in layer by layer, converted with ``tf2onnx.convert.from_keras`` (opset 18);
* ``torch-native`` (torch venv): the net written as ``torch.nn`` modules (torch_native.py: what
  a PyTorch user would write, channels-first input and output; functional graphs replayed in
  Keras's own order), the Keras weights copied in, exported with ``torch.onnx.export``, opset
  18, by the exporter ``--torch-exporter`` names: ``dynamo`` (the default) or ``torchscript``
  (run.py's torch-native-ts). No fallback from one to the other.

Each .conv statement is a Keras constructor call, so the model is built by evaluating each one
against ``keras.layers`` (or ``tf_keras.layers``); a functional text is run as the Python it
is; directives (``model NAME``, ``data_format channels_first``) are read as convc reads them.
On success the last line on stdout is a JSON object: "exporter", "variant" (what exported it),
"input_layout", "export_s" (the export call alone), "failures" (errors of exporters tried
inside and not used), "versions", and phase timings. On failure the exit status is 1 and the
last line on stderr is "NAME failed: " and the error (with its innermost cause).
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import json
import os
import re
import sys
import time
import tokenize
import traceback
from pathlib import Path

EXPORTERS = ("keras-torch", "keras-tf", "tf_keras-tf2onnx", "torch-native")
OPSET = 18


def statements(text: str) -> list[tuple[str, str]]:
    """The logical lines of a .conv text as (kind, source): ("directive", "data_format x") or
    ("call", "Conv2D(...)"). Python's tokenizer joins bracketed lines and drops comments, as
    convc's own grammar does."""
    found: list[tuple[str, str]] = []
    tokens: list[tokenize.TokenInfo] = []
    lines = text.splitlines(keepends=True)
    for token in tokenize.generate_tokens(io.StringIO(text).readline):
        if token.type in (tokenize.NEWLINE, tokenize.ENDMARKER):
            if tokens:
                (row, col), (end_row, end_col) = tokens[0].start, tokens[-1].end
                chunk = "".join(lines[row - 1 : end_row])
                # Offsets are within the first and last line of the chunk.
                source = chunk[col : len(chunk) - len(lines[end_row - 1]) + end_col]
                is_call = any(t.type == tokenize.OP and t.string == "(" for t in tokens[:4])
                names = [t for t in tokens if t.type in (tokenize.NAME, tokenize.STRING)]
                kind = "directive" if not is_call and len(names) == len(tokens) == 2 else "call"
                found.append((kind, source))
            tokens = []
        elif token.type not in (tokenize.COMMENT, tokenize.NL, tokenize.INDENT, tokenize.DEDENT):
            tokens.append(token)
    return found


def keras_model(text: str, api=None):
    """The model of a .conv text in ``api`` (the ``keras`` module, Keras 3, by default; or
    ``tf_keras``): a graph in functional syntax is run as the Python it is; a stack of calls
    becomes a Sequential, each call evaluated by that Keras itself."""
    import types

    if api is None:
        import keras as api

    namespace = {name: getattr(api.layers, name) for name in dir(api.layers)}
    namespace.update(
        Input=api.Input,
        keras=api,
        layers=api.layers,
        tf=types.SimpleNamespace(keras=api),
        initializers=api.initializers,
        regularizers=api.regularizers,
        constraints=api.constraints,
        activations=api.activations,
    )
    api.backend.clear_session()  # automatic names start afresh: conv2d, conv2d_1, ...
    api.backend.set_image_data_format("channels_last")
    found = statements(text)
    if any(re.match(r"\s*(\w+\s*=[^=]|import |from )", source) for _, source in found):
        code = "\n".join(source for kind, source in found if kind == "call")
        exec(code, namespace)
        return [value for value in namespace.values() if isinstance(value, api.Model)][-1]
    items = []
    for kind, source in found:
        if kind == "directive":
            name, value = source.split(None, 1)
            if name == "data_format":
                api.backend.set_image_data_format(value.strip("\"'"))
            continue
        if source.split("(", 1)[0].strip().endswith("set_image_data_format"):
            api.backend.set_image_data_format(eval(source.split("(", 1)[1].rsplit(")", 1)[0]))
            continue
        items.append(eval(source, dict(namespace)))
    return api.Sequential(items)


def draw_weights(model, seed: int) -> None:
    """Seeded random values for every variable, biases too; kernels scaled by sqrt(2 / fan-in)
    so that a deep ReLU stack neither explodes nor dies out."""
    import numpy as np

    rng = np.random.default_rng(seed)
    for layer in model.layers:
        values = []
        for variable in layer.weights:
            shape = tuple(variable.shape)
            fan_in = int(np.prod(shape[:-1])) if len(shape) > 1 else 1
            scale = np.sqrt(2.0 / max(1, fan_in)) if len(shape) > 1 else 0.1
            values.append((rng.standard_normal(shape) * scale).astype(np.float32))
        layer.set_weights(values)


def input_shape(model) -> tuple[int, ...]:
    """The model's input shape, a free batch axis taken as 1."""
    return tuple(1 if d is None else int(d) for d in model.inputs[0].shape)


def call_once(model) -> None:
    """Run the model once on zeros, as a user has before exporting: Keras's ``export`` refuses
    a model never called ("The model provided has never called."), and loading weights does
    not count as a call."""
    import numpy as np

    model(np.zeros(input_shape(model), dtype=np.float32), training=False)


def record_torch_onnx_calls(report: dict) -> None:
    """Wrap ``torch.onnx.export`` so the report says which of torch's exporters Keras's own
    ``export`` called: the dynamo one first unless the input signature has a free axis (it
    always has: Keras frees the batch axis), the TorchScript one when dynamo is skipped or
    raises (silently). Only observes: arguments and results pass through unchanged."""
    import torch

    original = torch.onnx.export

    def observed(*args, **kwargs):
        variant = "dynamo=True" if kwargs.get("dynamo", True) else "dynamo=False"
        report["torch_onnx_calls"].append(variant)
        try:
            return original(*args, **kwargs)
        except Exception as error:
            report["failures"].append(f"{variant}: {type(error).__name__}: {first_line(error)}")
            raise

    report.update(failures=[], torch_onnx_calls=[])
    torch.onnx.export = observed


def first_line(error: BaseException) -> str:
    """An error's message up to its first line break (torch's run to dozens of lines)."""
    return (str(error).splitlines() or [""])[0]


def export_keras_torch(model, out: Path, report: dict) -> None:
    """Keras 3 on torch, Keras's own ``model.export(format="onnx")``."""
    record_torch_onnx_calls(report)
    keras_model_export(model, out, report)
    report["variant"] += "torch.onnx.export " + ", then ".join(report["torch_onnx_calls"])


def export_keras_tf(model, out: Path, report: dict) -> None:
    """Keras 3 on TensorFlow, Keras's own ``model.export(format="onnx")``: it traces the
    model's call as a tf.function and converts it with tf2onnx's ``from_function``, after
    patching tf2onnx for numpy 2 (keras/src/export/tf2onnx_lib.py)."""
    import tf2onnx

    keras_model_export(model, out, report)
    report["variant"] += f"tf2onnx {tf2onnx.__version__} convert.from_function"


def keras_model_export(model, out: Path, report: dict) -> None:
    """``model.export(format="onnx")`` as a user calls it, on whichever backend is loaded (the
    model run once first: Keras refuses one never called); ``variant`` says what was called,
    for the caller to add what Keras called inside."""
    import keras

    report["input_layout"] = "as the .conv (Keras)"
    call_once(model)
    start = time.perf_counter()
    model.export(str(out), format="onnx", opset_version=OPSET)
    report["export_s"] = round(time.perf_counter() - start, 3)
    report["variant"] = (
        f"keras {keras.__version__} Model.export(format='onnx', opset_version={OPSET}): "
    )


def export_tf_keras_tf2onnx(model, text: str, out: Path, report: dict) -> None:
    """The same net built in tf_keras (Keras 2), the Keras 3 model's weights copied in,
    converted with ``tf2onnx.convert.from_keras`` as tf2onnx's users do."""
    import tensorflow as tf
    import tf2onnx
    import tf_keras

    report["input_layout"] = "as the .conv (Keras)"
    twin = keras_model(text, tf_keras)
    copy_weights(model, twin)
    spec = (tf.TensorSpec(input_shape(twin), tf.float32, name="input"),)
    start = time.perf_counter()
    tf2onnx.convert.from_keras(twin, input_signature=spec, opset=OPSET, output_path=str(out))
    report["export_s"] = round(time.perf_counter() - start, 3)
    report["variant"] = (
        f"tf_keras {tf_keras.__version__}, tf2onnx {tf2onnx.__version__} "
        f"convert.from_keras, opset {OPSET}"
    )


def copy_weights(source, target) -> None:
    """Copy every layer's weights from a Keras 3 model into its tf_keras twin. The layers are
    matched by name (both Kerases name them by class in creation order: conv2d, conv2d_1, ...),
    which, unlike a position in ``layers``, cannot pair two same-shaped layers of a graph's
    parallel branches the wrong way round; kinds and shapes are checked."""
    targets = {layer.name: layer for layer in target.layers if layer.weights}
    sources = {layer.name: layer for layer in source.layers if layer.weights}
    if set(targets) != set(sources):
        raise ValueError(
            f"tf_keras's layers with weights {sorted(targets)} are not Keras 3's {sorted(sources)}"
        )
    for name, layer in sources.items():
        twin = targets[name]
        if type(layer).__name__ != type(twin).__name__:
            raise ValueError(f"{name}: {type(layer).__name__} in Keras 3, {type(twin).__name__}")
        values = layer.get_weights()
        shapes = [tuple(v.shape) for v in values]
        wanted = [tuple(w.shape) for w in twin.get_weights()]
        if shapes != wanted:
            raise ValueError(f"{name}: weights {shapes} in Keras 3, {wanted} in tf_keras")
        twin.set_weights(values)


def export_torch_native(model, out: Path, report: dict, variant: str) -> None:
    """The net written with torch.nn (torch_native.py), exported with ``torch.onnx.export``,
    the dynamo exporter or the TorchScript one."""
    import torch
    from torch_native import export_module, native_module

    module = native_module(model).eval()
    shape = input_shape(model)
    example = torch.zeros((shape[0], shape[-1], *shape[1:-1]), dtype=torch.float32)
    report["input_layout"] = "channels_first (torch's own)"
    report["export_s"] = export_module(module, example, out, variant, OPSET)
    report["variant"] = f"torch {torch.__version__} torch.onnx.export dynamo={variant == 'dynamo'}"
    report["variant"] += f", opset {OPSET}"


def failure_summary(error: BaseException) -> str:
    """One line for an export's failure: the exception and, where it wraps another (torch's
    exporters wrap the error that stopped them), the innermost cause too."""
    summary = f"{type(error).__name__}: {first_line(error)}"
    cause = error
    while cause.__cause__ is not None:
        cause = cause.__cause__
    if cause is not error:
        summary += f" (cause: {type(cause).__name__}: {first_line(cause)})"
    return summary


def main() -> int:
    """Build the .conv's Keras model, then draw and save its weights, or export it."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("net", type=Path)
    parser.add_argument("output", type=Path, nargs="?")
    parser.add_argument("--exporter", choices=EXPORTERS)
    parser.add_argument("--weights", type=Path, help="Keras .weights.h5 to load")
    parser.add_argument("--save-weights", type=Path, help="draw weights, save them, then stop")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--torch-exporter",
        choices=("dynamo", "torchscript"),
        default="dynamo",
        help="torch.onnx's exporter for torch-native",
    )
    args = parser.parse_args()
    launched = time.perf_counter()
    if args.exporter:
        backend = "torch" if args.exporter in ("keras-torch", "torch-native") else "tensorflow"
    else:  # drawing weights: whichever backend this environment has
        backend = "torch" if importlib.util.find_spec("torch") else "tensorflow"
    os.environ["KERAS_BACKEND"] = backend
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras

    report: dict = {"exporter": args.exporter, "keras_backend": backend, "failures": []}
    report["import_s"] = round(time.perf_counter() - launched, 3)
    start = time.perf_counter()
    text = args.net.read_text()
    model = keras_model(text)
    if args.save_weights:
        draw_weights(model, args.seed)
        model.save_weights(str(args.save_weights))
        print(json.dumps({"weights": str(args.save_weights)}))
        return 0
    if not (args.output and args.exporter):
        parser.error("an export needs OUT.onnx and --exporter")
    if args.weights:
        model.load_weights(str(args.weights))
    report["build_s"] = round(time.perf_counter() - start, 3)
    try:
        if args.exporter == "keras-torch":
            export_keras_torch(model, args.output, report)
        elif args.exporter == "keras-tf":
            export_keras_tf(model, args.output, report)
        elif args.exporter == "tf_keras-tf2onnx":
            export_tf_keras_tf2onnx(model, text, args.output, report)
        else:
            export_torch_native(model, args.output, report, args.torch_exporter)
    except Exception as error:
        # run.py records the last lines of stderr as this exporter's failure on this net: the
        # summary goes there, the whole traceback (dozens of lines) to stdout.
        traceback.print_exc(file=sys.stdout)
        print(f"{args.exporter} failed: {failure_summary(error)}", file=sys.stderr)
        return 1
    report["versions"] = {"keras": keras.__version__}
    for name in ("torch", "tensorflow", "tf_keras", "tf2onnx", "onnxscript", "onnx"):
        if name in sys.modules:
            report["versions"][name] = getattr(sys.modules[name], "__version__", "?")
    report["in_process_s"] = round(time.perf_counter() - launched, 3)
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())

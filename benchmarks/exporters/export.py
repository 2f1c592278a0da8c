"""Export a .conv net to ONNX with another exporter, for the side-by-side benchmark.

Runs inside the exporters' virtualenv (``benchmarks/exporters/setup.sh`` makes it), never in
convc's own: convc does not depend on anything imported here.

    python export.py NET.conv --save-weights W.weights.h5 [--seed N]
    python export.py NET.conv OUT.onnx --exporter NAME --weights W.weights.h5

The first form builds the Keras model, draws random weights (seeded, scaled by fan-in so that
outputs stay O(1)) and writes them with Keras's own ``save_weights``; convc and every exporter
then load that one file, so their ONNX models can be compared output for output. The second
form exports; NAME is one of

* ``keras-torch``: Keras 3 on the torch backend, exported with ``torch.onnx.export``, the
  dynamo exporter first and the TorchScript exporter if that fails;
* ``keras-tf2onnx``: Keras 3 on the TensorFlow backend, the model traced as a ``tf.function``
  and converted with ``tf2onnx.convert.from_function``;
* ``torch-native``: the same layers written as ``torch.nn`` modules (what a PyTorch user would
  write, channels-first input and output), the Keras weights copied in, exported with
  ``torch.onnx.export`` as above.

Each .conv statement is a Keras constructor call, so the model is built by evaluating each one
against ``keras.layers``; directives (``model NAME``, ``data_format channels_first``) are read
as convc reads them. The last line on stdout is a JSON object: the exporter, the variant that
succeeded, the input layout, timings of the phases and the failures of variants tried first.
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
from pathlib import Path

EXPORTERS = ("keras-torch", "keras-tf2onnx", "torch-native")
OPSET = 18
TORCH_EXPORTER = "auto"  # --torch-exporter: auto (dynamo, then torchscript), dynamo, torchscript


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


def keras_model(text: str):
    """The Keras model of a .conv text: a graph in functional syntax is run as the Python it
    is; a stack of calls becomes a Sequential, each call evaluated by Keras itself."""
    import types

    import keras

    namespace = {name: getattr(keras.layers, name) for name in dir(keras.layers)}
    namespace.update(
        Input=keras.Input,
        keras=keras,
        layers=keras.layers,
        tf=types.SimpleNamespace(keras=keras),
        initializers=keras.initializers,
        regularizers=keras.regularizers,
        constraints=keras.constraints,
        activations=keras.activations,
    )
    keras.backend.clear_session()  # automatic names start afresh: conv2d, conv2d_1, ...
    keras.config.set_image_data_format("channels_last")
    found = statements(text)
    if any(re.match(r"\s*(\w+\s*=[^=]|import |from )", source) for _, source in found):
        code = "\n".join(source for kind, source in found if kind == "call")
        exec(code, namespace)
        return [value for value in namespace.values() if isinstance(value, keras.Model)][-1]
    items = []
    for kind, source in found:
        if kind == "directive":
            name, value = source.split(None, 1)
            if name == "data_format":
                keras.config.set_image_data_format(value.strip("\"'"))
            continue
        if source.split("(", 1)[0].strip().endswith("set_image_data_format"):
            keras.config.set_image_data_format(eval(source.split("(", 1)[1].rsplit(")", 1)[0]))
            continue
        items.append(eval(source, dict(namespace)))
    return keras.Sequential(items)


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
    return tuple(1 if d is None else int(d) for d in model.inputs[0].shape)


def export_with_torch(module, example, out: Path, report: dict) -> None:
    """torch.onnx.export: the dynamo exporter first, the TorchScript one if it fails."""
    import torch

    failures = report.setdefault("failures", [])
    variants = ("dynamo", "torchscript") if TORCH_EXPORTER == "auto" else (TORCH_EXPORTER,)
    for variant in variants:
        start = time.perf_counter()
        try:
            with torch.no_grad():
                program = torch.onnx.export(
                    module,
                    (example,),
                    str(out) if variant == "torchscript" else None,
                    dynamo=variant == "dynamo",
                    opset_version=OPSET,
                    input_names=["input"],
                    output_names=["output"],
                    external_data=False,
                )
            if variant == "dynamo":
                program.save(str(out), external_data=False)
        except Exception as error:  # noqa: BLE001 - any failure falls back to the next variant
            failures.append(f"{variant}: {type(error).__name__}: {str(error).splitlines()[0]}")
            continue
        report["variant"] = f"torch.onnx {variant}, opset {OPSET}"
        report["export_s"] = round(time.perf_counter() - start, 3)
        return
    raise RuntimeError("every torch.onnx exporter failed: " + "; ".join(failures))


def export_keras_torch(model, out: Path, report: dict) -> None:
    import torch

    model.eval()
    example = torch.zeros(input_shape(model), dtype=torch.float32)
    report["input_layout"] = "as the .conv (Keras)"
    export_with_torch(model, example, out, report)


def export_keras_tf2onnx(model, out: Path, report: dict) -> None:
    import tensorflow as tf
    import tf2onnx

    spec = (tf.TensorSpec(input_shape(model), tf.float32, name="input"),)
    function = tf.function(lambda x: model(x, training=False))
    start = time.perf_counter()
    tf2onnx.convert.from_function(function, input_signature=spec, opset=OPSET, output_path=str(out))
    report["variant"] = f"tf2onnx {tf2onnx.__version__} from_function, opset {OPSET}"
    report["export_s"] = round(time.perf_counter() - start, 3)
    report["input_layout"] = "as the .conv (Keras)"


def export_torch_native(model, out: Path, report: dict) -> None:
    import torch

    module = native_module(model).eval()
    shape = input_shape(model)
    channels_first = (shape[0], shape[-1], *shape[1:-1])
    report["input_layout"] = "channels_first (torch's own)"
    export_with_torch(module, torch.zeros(channels_first, dtype=torch.float32), out, report)


def same_pads(size: int, kernel: int, stride: int, dilation: int) -> tuple[int, int]:
    """Keras's "same" padding of one axis: the odd pixel goes after."""
    out = -(-size // stride)
    total = max((out - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


def native_module(model):
    """The Keras model rewritten with torch.nn layers, channels first, Keras's weights copied."""
    import numpy as np
    import torch
    from torch import nn
    from torch.nn import functional

    class Pad(nn.Module):
        def __init__(self, pads: list[tuple[int, int]]):
            super().__init__()
            # functional.pad wants the last axis first.
            self.flat = [p for pair in reversed(pads) for p in pair]

        def forward(self, x):
            return functional.pad(x, self.flat)

    class Crop(nn.Module):
        def __init__(self, crops: list[tuple[int, int]]):
            super().__init__()
            self.crops = crops

        def forward(self, x):
            index = [slice(None), slice(None)]
            index += [slice(a, -b if b else None) for a, b in self.crops]
            return x[tuple(index)]

    class Resize(nn.Module):
        def __init__(self, scale: tuple[int, ...], mode: str):
            super().__init__()
            self.scale, self.mode = scale, mode

        def forward(self, x):
            align = False if self.mode in ("linear", "bilinear", "trilinear", "bicubic") else None
            return functional.interpolate(
                x, scale_factor=self.scale, mode=self.mode, align_corners=align
            )

    activations = {None: None, "linear": None, "relu": nn.ReLU, "tanh": nn.Tanh}

    def tensor(array) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))

    def conv_layers(config, in_shape, kernel, bias, groups=1) -> list:
        """Padding, then nn.ConvNd: kernel in Keras's (k..., in/groups, out) layout."""
        rank = kernel.ndim - 2
        k, s, d = config["kernel_size"], config["strides"], config["dilation_rate"]
        spatial = in_shape[1:-1]
        if config["padding"] == "valid":
            pads = [(0, 0)] * rank
        elif config["padding"] == "causal":
            pads = [((k[0] - 1) * d[0], 0)]
        else:
            pads = [same_pads(spatial[i], k[i], s[i], d[i]) for i in range(rank)]
        conv = getattr(nn, f"Conv{rank}d")(
            kernel.shape[-2] * groups,
            kernel.shape[-1],
            k,
            stride=s,
            dilation=d,
            groups=groups,
            bias=bias is not None,
        )
        order = (rank + 1, rank, *range(rank))
        conv.weight.data = tensor(kernel.transpose(order))
        if bias is not None:
            conv.bias.data = tensor(bias)
        out = []
        if all(a == b for a, b in pads):
            conv.padding = tuple(a for a, _ in pads)
        else:
            out.append(Pad(pads))
        return [*out, conv]

    def convert(layer) -> list:
        config = layer.get_config()
        if config.get("data_format", "channels_last") != "channels_last":
            raise NotImplementedError("torch-native covers channels_last nets only")
        kind = type(layer).__name__
        weights = {v.path.split("/")[-1]: np.asarray(v.numpy()) for v in layer.weights}
        in_shape = tuple(layer.input.shape)
        if kind in ("Conv1D", "Conv2D", "Conv3D"):
            found = conv_layers(config, in_shape, weights["kernel"], weights.get("bias"))
            if config["groups"] != 1:
                raise NotImplementedError("grouped Conv")
        elif kind in ("DepthwiseConv1D", "DepthwiseConv2D"):
            kernel = weights.get("depthwise_kernel", weights.get("kernel"))  # (k..., in, mult)
            cin, mult = kernel.shape[-2:]
            grouped = kernel.reshape(*kernel.shape[:-2], 1, cin * mult)
            found = conv_layers(config, in_shape, grouped, weights.get("bias"), groups=cin)
        elif kind in ("SeparableConv1D", "SeparableConv2D"):
            depthwise = weights["depthwise_kernel"]
            cin, mult = depthwise.shape[-2:]
            grouped = depthwise.reshape(*depthwise.shape[:-2], 1, cin * mult)
            found = conv_layers(config, in_shape, grouped, None, groups=cin)
            pointwise = weights["pointwise_kernel"]
            ones = {**config, "kernel_size": (1,) * (pointwise.ndim - 2), "padding": "valid"}
            ones.update(strides=ones["kernel_size"], dilation_rate=ones["kernel_size"])
            found += conv_layers(ones, in_shape, pointwise, weights.get("bias"))
        elif kind in ("Conv1DTranspose", "Conv2DTranspose", "Conv3DTranspose"):
            kernel = weights["kernel"]  # (k..., out, in)
            rank = kernel.ndim - 2
            k, s = config["kernel_size"], config["strides"]
            if config["padding"] != "same" or any(a < b for a, b in zip(k, s, strict=True)):
                raise NotImplementedError("ConvTranspose other than same padding, kernel >= stride")
            conv = getattr(nn, f"ConvTranspose{rank}d")(
                kernel.shape[-1], kernel.shape[-2], k, stride=s, bias="bias" in weights
            )
            conv.weight.data = tensor(kernel.transpose(rank + 1, rank, *range(rank)))
            if "bias" in weights:
                conv.bias.data = tensor(weights["bias"])
            # The full transposed conv is (n - 1) * s + k long; Keras keeps n * s of it, from
            # the "same" pad-before of the forward convolution on.
            crops = []
            for i in range(rank):
                before = max(k[i] - s[i], 0) // 2
                crops.append((before, k[i] - s[i] - before))
            found = [conv, Crop(crops)]
        elif kind in ("UpSampling1D", "UpSampling2D", "UpSampling3D"):
            size = config["size"]
            size = (size,) if isinstance(size, int) else tuple(size)
            if all(v == 1 for v in size):
                return []
            mode = config.get("interpolation", "nearest")
            if mode == "bilinear":
                mode = {1: "linear", 2: "bilinear", 3: "trilinear"}[len(size)]
            return [Resize(size, mode)]
        elif kind in ("ZeroPadding1D", "ZeroPadding2D", "ZeroPadding3D"):
            return [Pad(normalise_pairs(config["padding"], len(in_shape) - 2))]
        elif kind in ("Cropping1D", "Cropping2D", "Cropping3D"):
            return [Crop(normalise_pairs(config["cropping"], len(in_shape) - 2))]
        else:
            raise NotImplementedError(f"torch-native has no rule for {kind}")
        activation = config.get("activation")
        if activation not in activations:
            raise NotImplementedError(f"activation {activation}")
        if activations[activation] is not None:
            found.append(activations[activation]())
        return found

    modules = [m for layer in model.layers for m in convert(layer)]
    return nn.Sequential(*modules)


def normalise_pairs(value, rank: int) -> list[tuple[int, int]]:
    if isinstance(value, int):
        return [(value, value)] * rank
    value = list(value)
    if rank == 1 and len(value) == 2 and all(isinstance(v, int) for v in value):
        return [tuple(value)]
    return [(v, v) if isinstance(v, int) else tuple(v) for v in value]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("net", type=Path)
    parser.add_argument("output", type=Path, nargs="?")
    parser.add_argument("--exporter", choices=EXPORTERS)
    parser.add_argument("--weights", type=Path, help="Keras .weights.h5 to load")
    parser.add_argument("--save-weights", type=Path, help="draw weights, save them, then stop")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--torch-exporter", choices=("auto", "dynamo", "torchscript"), default="auto"
    )
    args = parser.parse_args()
    global TORCH_EXPORTER
    TORCH_EXPORTER = args.torch_exporter
    launched = time.perf_counter()
    if args.exporter:
        backend = "tensorflow" if args.exporter == "keras-tf2onnx" else "torch"
    else:  # drawing weights: whichever backend this environment has
        backend = "torch" if importlib.util.find_spec("torch") else "tensorflow"
    os.environ["KERAS_BACKEND"] = backend
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras

    report: dict = {"exporter": args.exporter, "keras_backend": backend}
    report["import_s"] = round(time.perf_counter() - launched, 3)
    start = time.perf_counter()
    model = keras_model(args.net.read_text())
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
    exporter = {
        "keras-torch": export_keras_torch,
        "keras-tf2onnx": export_keras_tf2onnx,
        "torch-native": export_torch_native,
    }[args.exporter]
    exporter(model, args.output, report)
    report["versions"] = {"keras": keras.__version__}
    for name in ("torch", "tensorflow", "tf2onnx", "onnxscript", "onnx"):
        if name in sys.modules:
            report["versions"][name] = getattr(sys.modules[name], "__version__", "?")
    report["in_process_s"] = round(time.perf_counter() - launched, 3)
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Make a keras.applications model, and export it with the peers of the speed benchmark.

Runs in an exporters' environment, never in convc's::

    python applications_export.py make NAME SIZE OUTDIR
    python applications_export.py export MODEL.keras OUT.onnx --exporter E [--torch-exporter T]

``make`` (``.venv-exporters``) writes ``OUTDIR/NAME.keras`` (random weights, BatchNormalization
statistics included, seeded) and ``OUTDIR/NAME.npz`` (a batch-1 input ``x`` and Keras's output
``y`` for it). ``export`` loads the .keras file on the backend E needs and exports it with E:

* ``keras-torch`` (``.venv-exporters``): Keras 3 on torch, Keras's own ``model.export(format=
  "onnx")``;
* ``keras-tf`` (``.venv-exporters-tf``): Keras 3 on TensorFlow, the same call (tf2onnx inside);
* ``tf_keras-tf2onnx`` (``.venv-exporters-tf``): the same architecture built in tf_keras
  (Keras 2), every variable copied across by layer name, ``tf2onnx.convert.from_keras``;
* ``torch-native`` (``.venv-exporters``): the torchvision twin, Keras's weights copied in by an
  explicit name map, adjusted where torchvision computes another function than Keras (each
  adjustment is said where it is made), channels first; ``torch.onnx.export`` with the dynamo
  exporter or, with ``--torch-exporter torchscript``, the TorchScript one.

The twins (tf_keras and torch) are checked against Keras's ``y`` from the ``.npz`` beside the
.keras file, when there is one, before they are exported. The last stdout line is a JSON report
(exporter, variant, input layout, the export call's seconds, failures of variants tried first,
package versions); a failure exits non-zero with the error's last line on stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
import traceback
from importlib import metadata
from pathlib import Path

OPSET = 18
BACKEND = {
    "keras-torch": "torch",
    "keras-tf": "tensorflow",
    "tf_keras-tf2onnx": "tensorflow",
    "torch-native": "torch",
}
PACKAGES = {
    "torch": ("keras", "torch", "torchvision", "onnx", "onnxscript"),
    "tensorflow": ("keras", "tensorflow", "tf_keras", "tf2onnx", "onnx"),
}
PIXEL_INPUTS = {"MobileNetV3Small", "MobileNetV3Large", "EfficientNetB0", "EfficientNetV2B0"}
PIXEL_INPUTS |= {"ConvNeXtTiny"}
TWIN_TOLERANCE = 1e-4  # of the output's scale (its largest magnitude)


# --- make -------------------------------------------------------------------------------------


def random_weights(model, images, seed: int = 7) -> None:
    """Every float variable random, drawn so that the output depends on the input.

    Kernels are scaled by He's sqrt(2 / fan-in) (a Dense's by LeCun's sqrt(1 / fan-in)), biases
    and betas are small, gammas near 1, Normalization's statistics those of pixels scaled to
    [0, 1]. BatchNormalization's moving statistics are those of ``images`` at each layer (one
    pass in training mode with momentum 0 sets them all, each layer seeing the ones before it
    normalized), then moved at random: the mean by a tenth of a deviation, the variance by up
    to 20 %. Statistics drawn without regard to the activations (every variable N(0, 1) over
    fan-in, as before) let the signal fade with depth into the BatchNormalizations' constant
    shifts: another input then moved MobileNetV2's and EfficientNetB0's logits by 2e-7 of
    their scale, and a comparison at 1e-4 proved nothing."""
    import keras
    import numpy as np

    rng = np.random.default_rng(seed)
    norms = []
    for layer in model.layers:
        kind = type(layer).__name__
        values = []
        for variable, current in zip(layer.weights, layer.get_weights(), strict=True):
            shape, name = tuple(variable.shape), variable.path.split("/")[-1]
            if not np.issubdtype(current.dtype, np.floating):
                values.append(current)  # a count
            elif kind == "Normalization":
                low, high = (0.04, 0.09) if name.endswith("variance") else (0.4, 0.6)
                values.append(rng.uniform(low, high, shape).astype(np.float32))
            elif name in ("gamma", "moving_variance"):
                values.append(rng.uniform(0.8, 1.2, shape).astype(np.float32))
            elif len(shape) < 2:
                values.append((0.1 * rng.standard_normal(shape)).astype(np.float32))
            else:
                depthwise = "depthwise" in name
                fan_in = int(np.prod(shape[:-2] if depthwise else shape[:-1]))
                gain = 1.0 if kind == "Dense" else 2.0
                scale = np.sqrt(gain / max(1, fan_in))
                values.append((scale * rng.standard_normal(shape)).astype(np.float32))
        layer.set_weights(values)
        if kind == "BatchNormalization":
            norms.append(layer)
    momenta = [layer.momentum for layer in norms]
    for layer in norms:
        layer.momentum = 0.0
    model(images, training=True)
    for layer, momentum in zip(norms, momenta, strict=True):
        layer.momentum = momentum
        mean, variance = (
            keras.ops.convert_to_numpy(v) for v in (layer.moving_mean, layer.moving_variance)
        )
        mean = mean + 0.1 * np.sqrt(variance) * rng.standard_normal(mean.shape)
        variance = variance * rng.uniform(0.8, 1.2, variance.shape)
        layer.moving_mean.assign(mean.astype(np.float32))
        layer.moving_variance.assign(variance.astype(np.float32))


def benchmark_images(name: str, size: int, count: int, seed: int):
    """Images for the benchmark: a smooth random field plus noise (whole-image structure,
    which global pooling keeps), as pixels 0..255 for the nets that scale their own input,
    else around 0."""
    import keras
    import numpy as np

    rng = np.random.default_rng(seed)
    coarse = rng.standard_normal((count, 8, 8, 3)).astype(np.float32)
    field = keras.ops.convert_to_numpy(
        keras.ops.image.resize(coarse, (size, size), interpolation="bilinear")
    )
    images = field + 0.3 * rng.standard_normal(field.shape)
    if name in PIXEL_INPUTS:
        images = np.clip(127.5 + 60 * images, 0, 255)
    return images.astype(np.float32)


def make(name: str, size: int, out: Path) -> dict:
    """Write NAME.keras and NAME.npz (x, y) into ``out``."""
    import keras
    import numpy as np

    model = getattr(keras.applications, name)(
        weights=None, input_shape=(size, size, 3), classifier_activation=None
    )
    random_weights(model, benchmark_images(name, size, 4, seed=3))
    x = benchmark_images(name, size, 1, seed=11)
    y = keras.ops.convert_to_numpy(model(x, training=False))
    out.mkdir(parents=True, exist_ok=True)
    model.save(out / f"{name}.keras")
    np.savez(out / f"{name}.npz", x=x, y=y)
    return {"made": name, "size": size, "keras": keras.__version__, "backend": "torch"}


# --- shared by the exporters ------------------------------------------------------------------


def reference(model_path: Path):
    """(x, y) from the .npz that ``make`` wrote beside the .keras file, or None."""
    import numpy as np

    data_path = model_path.with_suffix(".npz")
    if not data_path.exists():
        return None
    data = np.load(data_path)
    return data["x"], data["y"]


def check_twin(output, expected, what: str) -> float:
    """The twin's largest error relative to the output's scale; raises beyond TWIN_TOLERANCE."""
    import numpy as np

    error = float(np.abs(output - expected).max() / max(np.abs(expected).max(), 1e-12))
    if not error <= TWIN_TOLERANCE:
        raise AssertionError(f"{what} differs from Keras by {error:.3g} of the output's scale")
    return error


def static_shape(model) -> tuple[int, ...]:
    return tuple(1 if d is None else int(d) for d in model.inputs[0].shape)


def check_one_input(path: Path) -> None:
    """Raise unless the exported model takes one input, as the Keras model does: a converter
    that turns a variable into a graph input leaves a model that cannot run on the image."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    stored = {tensor.name for tensor in graph.initializer}
    inputs = [value.name for value in graph.input if value.name not in stored]
    if len(inputs) != 1:
        raise ValueError(f"the exported model takes {len(inputs)} inputs, not 1: {inputs}")


def onnx_opset(path: Path) -> int:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))


# --- keras-torch and keras-tf: Keras's own export ---------------------------------------------


@contextlib.contextmanager
def torch_export_calls(calls: list[dict]):
    """Record each torch.onnx.export call Keras makes (its variant and whether it raised),
    without changing it: Keras swallows a failed dynamo export and falls back silently."""
    import torch

    original = torch.onnx.export

    def recorded(*args, **kwargs):
        call = {
            "dynamo": bool(kwargs.get("dynamo")),
            "dynamic_axes": bool(kwargs.get("dynamic_axes")),
        }
        calls.append(call)
        try:
            return original(*args, **kwargs)
        except Exception as error:
            call["error"] = f"{type(error).__name__}: {str(error).strip().splitlines()[0][:300]}"
            raise

    torch.onnx.export = recorded
    try:
        yield
    finally:
        torch.onnx.export = original


def export_keras(model_path: Path, out: Path, report: dict) -> None:
    """Keras 3's ``model.export(format="onnx")`` on the backend this process runs."""
    import keras
    import numpy as np

    model = keras.saving.load_model(model_path)
    backend = keras.backend.backend()
    report["input_layout"] = "as the .conv (Keras)"
    calls: list[dict] = []
    recorder = torch_export_calls(calls) if backend == "torch" else contextlib.nullcontext()
    with recorder:
        try:
            start = time.perf_counter()
            model.export(str(out), format="onnx")
        except ValueError as error:
            # Keras refuses a model it has not run yet ("has never called"), as a loaded one
            # is: a user runs it once, on a batch of zeros, and exports again.
            if "never called" not in str(error):
                raise
            report["failures"].append(f"model.export: ValueError: {str(error).strip()}")
            model(np.zeros(static_shape(model), np.float32), training=False)
            start = time.perf_counter()
            model.export(str(out), format="onnx")
        report["export_s"] = round(time.perf_counter() - start, 3)
    opset = onnx_opset(out)
    if backend == "torch":
        used = calls[-1]
        inner = "torch.onnx " + ("dynamo" if used["dynamo"] else "torchscript")
        if used["dynamic_axes"]:
            inner += ", dynamic batch"
        report["failures"] += [
            f"torch.onnx {'dynamo' if c['dynamo'] else 'torchscript'}: {c['error']}"
            for c in calls
            if "error" in c
        ]
    else:
        import tf2onnx

        inner = f"tf2onnx {tf2onnx.__version__} from_function, dynamic batch"
    report["variant"] = f'keras model.export(format="onnx") ({inner}), opset {opset}'


# --- tf_keras-tf2onnx -------------------------------------------------------------------------


def name_key(layer_name: str) -> str:
    """A layer's name as both Keras versions agree on it. Keras 3 forbids "/" in names and
    renamed some layers: tf_keras's DenseNet ``conv1/conv`` is Keras 3's ``conv1_conv``, its
    MobileNetV3 ``Conv/BatchNorm`` is ``conv_bn``."""
    return layer_name.replace("/", "_").lower().replace("_batchnorm", "_bn")


def copy_by_layer_name(source, target) -> int:
    """Copy every variable of the Keras 3 model ``source`` into the tf_keras model ``target``,
    layer by layer name; raises listing any layer with variables on one side only, or whose
    variables' shapes differ. Returns the number of layers copied."""
    with_weights = {name_key(layer.name): layer for layer in source.layers if layer.weights}
    targets = {name_key(layer.name): layer for layer in target.layers if layer.weights}
    only_source = sorted(set(with_weights) - set(targets))
    only_target = sorted(set(targets) - set(with_weights))
    if only_source or only_target:
        raise ValueError(
            f"layer names do not match: only in Keras 3: {only_source}; "
            f"only in tf_keras: {only_target}"
        )
    for name, layer in targets.items():
        values = with_weights[name].get_weights()
        shapes = [tuple(w.shape) for w in layer.get_weights()]
        if shapes != [tuple(v.shape) for v in values]:
            raise ValueError(f"{name}: tf_keras shapes {shapes} differ from Keras 3's")
        layer.set_weights(values)
    return len(targets)


def export_tf_keras(model_path: Path, out: Path, report: dict) -> None:
    """The architecture rebuilt in tf_keras, the weights copied, ``tf2onnx.convert.from_keras``
    with a static batch-1 signature (as the .conv peers)."""
    import keras
    import tensorflow as tf
    import tf2onnx
    import tf_keras

    source = keras.saving.load_model(model_path)
    name = application_name(source)
    shape = static_shape(source)
    twin = getattr(tf_keras.applications, name)(
        weights=None, input_shape=shape[1:], classifier_activation=None
    )
    report["layers_copied"] = copy_by_layer_name(source, twin)
    data = reference(model_path)
    if data is not None:
        output = twin(data[0], training=False).numpy()
        report["twin_error"] = float(f"{check_twin(output, data[1], 'the tf_keras twin'):.3g}")
    spec = (tf.TensorSpec(shape, tf.float32, name="input"),)
    report["input_layout"] = "as the .conv (Keras)"
    start = time.perf_counter()
    tf2onnx.convert.from_keras(twin, input_signature=spec, opset=OPSET, output_path=str(out))
    report["export_s"] = round(time.perf_counter() - start, 3)
    report["variant"] = f"tf_keras {tf_keras.__version__} + tf2onnx from_keras, opset {OPSET}"


def application_name(model) -> str:
    """The keras.applications constructor that made ``model``, from the model's own name
    (``resnet50``, ``mobilenetv2_1.00_224``, ``efficientnetv2-b0``, ``MobileNetV3Small``...)."""
    import keras

    key = model.name.lower()
    if key.startswith("mobilenetv2_"):
        return "MobileNetV2"
    if key.startswith("mobilenet_"):
        return "MobileNet"
    wanted = key.replace("_", "").replace("-", "")
    for name in dir(keras.applications):
        if name.lower() == wanted:
            return name
    raise ValueError(f"which keras.applications net is the model named {model.name!r}?")


# --- torch-native: the torchvision twins ------------------------------------------------------


def import_torchvision():
    """torchvision, for its pure-Python models only. Where its C++ ops do not load (a CUDA
    build of torchvision beside a CPU build of torch, as this machine's wheels give), its import
    fails registering fake kernels of ``nms`` and ``qnms``, ops that were never defined; the
    twins use neither, so the two schemas are declared first and the import goes through."""
    import importlib.util

    import torch

    if "torchvision" in sys.modules:  # a second twin in this process
        return sys.modules["torchvision"]
    library = Path(importlib.util.find_spec("torchvision").submodule_search_locations[0]) / "_C.so"
    try:
        torch.ops.load_library(str(library))
    except OSError:
        global _TORCHVISION_STUBS
        _TORCHVISION_STUBS = torch.library.Library("torchvision", "DEF")
        _TORCHVISION_STUBS.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        _TORCHVISION_STUBS.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    import torchvision

    return torchvision


_TORCHVISION_STUBS = None  # the Library that declares the stub schemas must stay alive


def channel_affine_module(scale, shift):
    """x * scale + shift per channel (channels first): Keras's input Rescaling and
    Normalization layers, which torchvision leaves to the user's preprocessing."""
    import torch

    class InputAffine(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.register_buffer("scale", torch.as_tensor(scale).reshape(1, -1, 1, 1))
            self.register_buffer("shift", torch.as_tensor(shift).reshape(1, -1, 1, 1))

        def forward(self, x):
            return x * self.scale + self.shift

    return InputAffine()


class WeightCopier:
    """Copies Keras layers' weights into torch modules by an explicit map, and checks at the end
    that every Keras layer with weights and every torch module with parameters was used once."""

    def __init__(self, model, module) -> None:
        self.model = model
        self.module = module
        self.keras_used: set[str] = set()
        self.torch_used: set[str] = set()

    def weights(self, name: str) -> list:
        if name in self.keras_used:
            raise ValueError(f"Keras layer {name} mapped twice")
        self.keras_used.add(name)
        return self.model.get_layer(name).get_weights()

    def target(self, path: str):
        if path in self.torch_used:
            raise ValueError(f"torch module {path} mapped twice")
        self.torch_used.add(path)
        return self.module.get_submodule(path)

    def conv(self, path: str, name: str):
        """A Conv2D or DepthwiseConv2D; returns Keras's bias when the torch conv has none (for
        the caller to fold into the next BatchNormalization)."""
        import torch

        conv, layer = self.target(path), self.model.get_layer(name)
        values = self.weights(name)
        kernel = values[0]
        if type(layer).__name__ == "DepthwiseConv2D":
            kh, kw, channels, multiplier = kernel.shape
            # (kh, kw, C, M) -> (C * M, 1, kh, kw): output channel c * M + m in both.
            kernel = kernel.reshape(kh, kw, channels * multiplier, 1).transpose(2, 3, 0, 1)
        else:
            kernel = kernel.transpose(3, 2, 0, 1)  # (kh, kw, in, out) -> (out, in, kh, kw)
        weight = torch.from_numpy(kernel.copy())
        if tuple(conv.weight.shape) != tuple(weight.shape):
            raise ValueError(f"{path} {tuple(conv.weight.shape)} vs {name} {tuple(weight.shape)}")
        conv.weight.data.copy_(weight)
        bias = values[1] if len(values) > 1 else None
        if bias is not None and conv.bias is not None:
            conv.bias.data.copy_(torch.from_numpy(bias))
            return None
        if conv.bias is not None:
            raise ValueError(f"{path} has a bias and {name} has none")
        return bias

    def batch_norm(self, path: str, name: str, folded_bias=None) -> None:
        """A BatchNormalization, its epsilon set to Keras's; a preceding conv's bias b folds
        exactly into the moving mean: BN(z + b) = BN'(z) with mean' = mean - b."""
        import torch

        bn, layer = self.target(path), self.model.get_layer(name)
        gamma, beta, mean, variance = self.weights(name)
        if folded_bias is not None:
            mean = mean - folded_bias
        for tensor, value in zip(
            (bn.weight, bn.bias, bn.running_mean, bn.running_var),
            (gamma, beta, mean, variance),
            strict=True,
        ):
            tensor.data.copy_(torch.from_numpy(value))
        bn.eps = float(layer.epsilon)

    def conv_bn(self, conv_path: str, conv_name: str, bn_path: str, bn_name: str) -> None:
        self.batch_norm(bn_path, bn_name, self.conv(conv_path, conv_name))

    def dense(self, path: str, name: str) -> None:
        import torch

        linear = self.target(path)
        kernel, bias = self.weights(name)
        linear.weight.data.copy_(torch.from_numpy(kernel.T.copy()))
        linear.bias.data.copy_(torch.from_numpy(bias))

    def check_complete(self) -> None:
        keras_all = {layer.name for layer in self.model.layers if layer.weights}
        torch_all = {
            path
            for path, module in self.module.named_modules()
            if any(True for _ in module.parameters(recurse=False))
        }
        missing = sorted(keras_all - self.keras_used) + sorted(torch_all - self.torch_used)
        if missing:
            raise ValueError(f"not mapped: {missing}")


def pad_like_keras(parent, attribute: str, padding) -> None:
    """Replace the conv ``parent.attribute`` by ZeroPad2d(Keras's pads) then the conv unpadded:
    Keras pads a stride-2 conv on an even input by one more pixel bottom/right (``same`` or
    ``correct_pad``), torchvision symmetrically, so they sample different pixels."""
    import torch

    conv = getattr(parent, attribute) if not attribute.isdigit() else parent[int(attribute)]
    (top, bottom), (left, right) = padding
    conv.padding = (0, 0)
    padded = torch.nn.Sequential(torch.nn.ZeroPad2d((left, right, top, bottom)), conv)
    if attribute.isdigit():
        parent[int(attribute)] = padded
    else:
        setattr(parent, attribute, padded)


def same_pads(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """Keras's ``same`` padding of one axis: the odd pixel goes after."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def keras_pads(model, name: str):
    """The ((top, bottom), (left, right)) of a Keras ZeroPadding2D layer."""
    return tuple(tuple(int(p) for p in axis) for axis in model.get_layer(name).padding)


def resnet_twin(model, depth: int):
    """torchvision's ResNet50/101 (v1.5) computing Keras's ResNet (v1)."""
    torchvision = import_torchvision()
    module = getattr(torchvision.models, f"resnet{depth}")(weights=None)
    blocks = tuple(len(getattr(module, f"layer{stage}")) for stage in (1, 2, 3, 4))
    copy = WeightCopier(model, module)
    copy.conv_bn("conv1", "conv1_conv", "bn1", "conv1_bn")
    for stage, count in enumerate(blocks):
        for index in range(count):
            path, name = f"layer{stage + 1}.{index}", f"conv{stage + 2}_block{index + 1}"
            for part in (1, 2, 3):
                copy.conv_bn(
                    f"{path}.conv{part}",
                    f"{name}_{part}_conv",
                    f"{path}.bn{part}",
                    f"{name}_{part}_bn",
                )
            if index == 0:
                copy.conv_bn(
                    f"{path}.downsample.0", f"{name}_0_conv", f"{path}.downsample.1", f"{name}_0_bn"
                )
            if index == 0 and stage > 0:
                # Keras (v1) strides the first 1x1 conv of a projection block, torchvision (v1.5)
                # the 3x3: move the stride back to the 1x1.
                block = module.get_submodule(path)
                block.conv1.stride, block.conv2.stride = (2, 2), (1, 1)
    copy.dense("fc", "predictions")
    copy.check_complete()
    # Keras zero-pads by 1 before its max pool, torchvision pads with -inf: the same, as the
    # pool follows a ReLU (a window always holds a value >= 0).
    return module


def mobilenet_v2_twin(model):
    """torchvision's MobileNetV2 computing Keras's (alpha 1.0)."""
    torchvision = import_torchvision()
    module = torchvision.models.mobilenet_v2(weights=None)
    copy = WeightCopier(model, module)
    names = {layer.name for layer in model.layers}
    pads = {}  # conv's parent -> Keras's pads, applied once the weights are in
    copy.conv_bn("features.0.0", "Conv1", "features.0.1", "bn_Conv1")
    copy.conv_bn(
        "features.1.conv.0.0", "expanded_conv_depthwise", "features.1.conv.0.1",
        "expanded_conv_depthwise_BN",
    )  # fmt: skip
    copy.conv_bn(
        "features.1.conv.1",
        "expanded_conv_project",
        "features.1.conv.2",
        "expanded_conv_project_BN",
    )
    for block in range(1, 17):
        path, name = f"features.{block + 1}.conv", f"block_{block}"
        copy.conv_bn(f"{path}.0.0", f"{name}_expand", f"{path}.0.1", f"{name}_expand_BN")
        copy.conv_bn(f"{path}.1.0", f"{name}_depthwise", f"{path}.1.1", f"{name}_depthwise_BN")
        copy.conv_bn(f"{path}.2", f"{name}_project", f"{path}.3", f"{name}_project_BN")
        if f"{name}_pad" in names:
            pads[f"{path}.1"] = keras_pads(model, f"{name}_pad")
    copy.conv_bn("features.18.0", "Conv_1", "features.18.1", "Conv_1_bn")
    copy.dense("classifier.1", "predictions")
    copy.check_complete()
    size = static_shape(model)[1:3]
    pads["features.0"] = [same_pads(n, 3, 2) for n in size]  # Conv1: a stride-2 "same" conv
    for path, padding in pads.items():
        pad_like_keras(module.get_submodule(path), "0", padding)
    return module


def efficientnet_b0_twin(model):
    """torchvision's EfficientNetB0 computing Keras's, its input layers included."""
    import numpy as np
    import torch

    torchvision = import_torchvision()
    module = torchvision.models.efficientnet_b0(weights=None)
    copy = WeightCopier(model, module)
    names = {layer.name for layer in model.layers}
    pads = {}  # conv's parent -> Keras's pads, applied once the weights are in
    copy.conv_bn("features.0.0", "stem_conv", "features.0.1", "stem_bn")
    for stage in range(1, 8):
        for index in range(len(module.features[stage])):
            path, name = f"features.{stage}.{index}.block", f"block{stage}{chr(97 + index)}_"
            parts = iter(range(4))
            if f"{name}expand_conv" in names:
                part = next(parts)
                copy.conv_bn(
                    f"{path}.{part}.0", f"{name}expand_conv", f"{path}.{part}.1", f"{name}expand_bn"
                )
            dw, se, project = next(parts), next(parts), next(parts)
            copy.conv_bn(f"{path}.{dw}.0", f"{name}dwconv", f"{path}.{dw}.1", f"{name}bn")
            copy.conv(f"{path}.{se}.fc1", f"{name}se_reduce")
            copy.conv(f"{path}.{se}.fc2", f"{name}se_expand")
            copy.conv_bn(
                f"{path}.{project}.0",
                f"{name}project_conv",
                f"{path}.{project}.1",
                f"{name}project_bn",
            )
            if f"{name}dwconv_pad" in names:
                pads[f"{path}.{dw}"] = keras_pads(model, f"{name}dwconv_pad")
    copy.conv_bn("features.8.0", "top_conv", "features.8.1", "top_bn")
    copy.dense("classifier.1", "predictions")
    # Keras's Rescaling(1/255) and Normalization (x - mean) / sqrt(variance), one per-channel
    # affine prepended; the Normalization's weights are the only Keras ones outside the map.
    rescale = float(model.get_layer("rescaling").scale)
    mean, variance = (np.asarray(v, np.float64) for v in copy.weights("normalization")[:2])
    std = np.maximum(np.sqrt(variance), 1e-7).reshape(-1)
    scale = (rescale / std).astype(np.float32)
    shift = (-mean.reshape(-1) / std).astype(np.float32)
    copy.check_complete()
    pads["features.0"] = keras_pads(model, "stem_conv_pad")
    for path, padding in pads.items():
        pad_like_keras(module.get_submodule(path), "0", padding)
    return torch.nn.Sequential(channel_affine_module(scale, shift), module)


def densenet121_twin(model):
    """torchvision's DenseNet121 computing Keras's."""
    torchvision = import_torchvision()
    module = torchvision.models.densenet121(weights=None)
    copy = WeightCopier(model, module)
    copy.conv_bn("features.conv0", "conv1_conv", "features.norm0", "conv1_bn")
    for block, count in enumerate((6, 12, 24, 16), start=1):
        for index in range(1, count + 1):
            path, name = (
                f"features.denseblock{block}.denselayer{index}",
                f"conv{block + 1}_block{index}",
            )
            copy.batch_norm(f"{path}.norm1", f"{name}_0_bn")
            copy.conv_bn(f"{path}.conv1", f"{name}_1_conv", f"{path}.norm2", f"{name}_1_bn")
            copy.conv(f"{path}.conv2", f"{name}_2_conv")
        if block < 4:
            path, name = f"features.transition{block}", f"pool{block + 1}"
            copy.batch_norm(f"{path}.norm", f"{name}_bn")
            copy.conv(f"{path}.conv", f"{name}_conv")
    copy.batch_norm("features.norm5", "bn")
    copy.dense("classifier", "predictions")
    copy.check_complete()
    # As in ResNet, Keras's zero padding before the max pool equals torchvision's -inf padding.
    return module


TWINS = {
    "ResNet50": lambda model: resnet_twin(model, 50),
    "ResNet101": lambda model: resnet_twin(model, 101),
    "MobileNetV2": mobilenet_v2_twin,
    "EfficientNetB0": efficientnet_b0_twin,
    "DenseNet121": densenet121_twin,
}


def export_torch_native(model_path: Path, out: Path, report: dict, variant: str) -> None:
    """The torchvision twin, checked against Keras, exported channels first."""
    import keras
    import numpy as np
    import torch
    from torch_native import export_module

    model = keras.saving.load_model(model_path)
    name = application_name(model)
    if name not in TWINS:
        raise NotImplementedError(f"no torchvision twin for {name} (twins: {', '.join(TWINS)})")
    module = TWINS[name](model).eval()
    shape = static_shape(model)
    data = reference(model_path)
    if data is not None:
        x = torch.from_numpy(np.ascontiguousarray(np.moveaxis(data[0], -1, 1)))
        with torch.no_grad():
            output = module(x).numpy()
        report["twin_error"] = float(f"{check_twin(output, data[1], 'the torch twin'):.3g}")
    example = torch.zeros((shape[0], shape[-1], *shape[1:-1]), dtype=torch.float32)
    report["input_layout"] = "channels_first (torch's own)"
    report["export_s"] = export_module(module, example, out, variant, OPSET)
    report["variant"] = f"torchvision {name} twin, torch.onnx {variant}, opset {OPSET}"


# --- the command line -------------------------------------------------------------------------


@contextlib.contextmanager
def stdout_on_stderr():
    """Send file descriptor 1 to stderr while the exporters run (they print, from C++ too), so
    that the JSON report printed afterwards is the last line on stdout."""
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def versions(backend: str) -> dict[str, str]:
    found = {}
    for package in PACKAGES[backend]:
        with contextlib.suppress(metadata.PackageNotFoundError):
            found[package] = metadata.version(package)
    return found


def run_export(args: argparse.Namespace) -> dict:
    report: dict = {"exporter": args.exporter, "failures": []}
    model_path, out = Path(args.model), Path(args.out)
    if args.exporter in ("keras-torch", "keras-tf"):
        export_keras(model_path, out, report)
    elif args.exporter == "tf_keras-tf2onnx":
        export_tf_keras(model_path, out, report)
    else:
        export_torch_native(model_path, out, report, args.torch_exporter)
    check_one_input(out)
    report["versions"] = versions(BACKEND[args.exporter])
    return report


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    made = commands.add_parser("make", help="write NAME.keras and NAME.npz (torch venv)")
    made.add_argument("name")
    made.add_argument("size", type=int)
    made.add_argument("outdir", type=Path)
    exported = commands.add_parser("export", help="export MODEL.keras with one exporter")
    exported.add_argument("model")
    exported.add_argument("out")
    exported.add_argument("--exporter", required=True, choices=list(BACKEND))
    exported.add_argument("--torch-exporter", choices=("dynamo", "torchscript"), default="dynamo")
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse(argv)
    backend = "torch" if args.command == "make" else BACKEND[args.exporter]
    os.environ["KERAS_BACKEND"] = backend
    if args.command == "export" and args.exporter == "tf_keras-tf2onnx":
        os.environ["TF_USE_LEGACY_KERAS"] = "1"  # tf2onnx's from_keras reads tf.keras
    with stdout_on_stderr():
        try:
            if args.command == "make":
                report = make(args.name, args.size, args.outdir)
            else:
                report = run_export(args)
        except Exception as error:  # the caller records the failure, from stderr
            traceback.print_exc(file=sys.stderr)
            # One line last, the message's first: a long message's last line is often only
            # its tail (a type, a source location).
            lines = [line for line in str(error).splitlines() if line.strip()]
            print(f"{type(error).__name__}: {lines[0] if lines else ''}"[:500], file=sys.stderr)
            return 1
    print(json.dumps(report), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

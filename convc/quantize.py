"""int8 models: one pass over a finished float32 model (``convc build --precision int8``).

The float32 model that lowering made (BatchNormalization folded, activations known, checked) is
calibrated and quantized statically into ONNX's QDQ form: each weight is stored as integers with
a DequantizeLinear, and each activation that a quantized op reads or writes passes through a
QuantizeLinear/DequantizeLinear pair whose scale and zero point come from calibration. Runtimes
fuse ``DequantizeLinear -> op -> QuantizeLinear`` into integer kernels (onnxruntime's
QLinearConv, QLinearAdd, QGemm, ...).

The quantization itself is onnxruntime's ``quantize_static``: it places the pairs where
onnxruntime fuses them (Conv, MatMul/Gemm, pooling, Add, Mul, Concat, Transpose, Reshape ...),
folds a ReLU or ReLU6 into the range of the quantization before it (and removes the op), and
quantizes biases to int32 at ``input scale * weight scale``. convc fixes the choices for a CPU:

* weights int8, symmetric, per output channel (Conv and ConvTranspose, and Dense's MatMul by its
  output column);
* activations uint8, asymmetric, with ranges from the calibration data by ``minmax`` (the
  observed extremes), ``percentile`` (the central ``CALIBRATION_PERCENTILE`` % of values) or
  ``entropy`` (the range whose quantized histogram keeps the most information, by KL
  divergence over 2048 bins). ``minmax`` holds two numbers per tensor; the histogram methods
  hold every activation of every calibrating sample until the end;
* weights on 7 bits by default (``weight_bits=7``: onnxruntime's ``reduce_range``). x86 CPUs
  without VNNI (AVX2) multiply uint8 by int8 in pairs summed into 16 bits, which saturates for
  8-bit weights: on such a CPU a stem convolution of resnet_bn then came out 63 steps off the
  exact result, and ``convc check --precision int8`` sees it. 7-bit weights cannot saturate;
  ``weight_bits=8`` keeps the last bit for CPUs with VNNI, ARM and GPUs.

Quantization is placed only where onnxruntime's integer kernel is faster than its float32
kernel (``slower_in_int8``, measured on this project's CPU): a Softmax, a layer whose 3-D
convolution falls outside MLAS's fast integer convolution, and a transposed convolution's
element-by-element interleave stay float32, with no QuantizeLinear/DequantizeLinear pair of their
own. Layers named in ``keep_float`` (``first`` and ``last`` name the first and last layers with
weights) stay float32 too: the ONNX nodes of both are excluded from quantization. The model's
``convc.int8`` metadata names every layer with nodes kept float32 and why, in the short stable
codes of ``FLOAT32_REASONS`` (``float32_layers``); ``float32_line`` says it in one line.

The calibration data is read by ``read_calibration``: ``.npy`` (one input's samples along axis
0), ``.npz`` (by input name), a folder of images (with Pillow, resized to the input and taken as
0-255 pixel values, as Keras's image loading gives them) or of ``.npy`` files, or ``random``
(standard-normal samples from a seed, for models with random weights). The first
``calibration_count`` samples calibrate (``DEFAULT_CALIBRATION_COUNT``); ``convc check`` holds the
others out to measure the accuracy cost.

``QuantizationPlan`` is read back from the QDQ model (``read_plan``): for every quantized tensor
its scale, zero point and type; for every weight its integers' scales per channel. The int8
reference (``convc.int8_reference``) computes the quantized model from it.
"""

from __future__ import annotations

import io
import json
import logging
import math
import os
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, redirect_stdout
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_args

import numpy as np
import onnx
from onnx import numpy_helper

from convc.arrays import read_npy, read_npz
from convc.diagnostics import ConvcError, printable
from convc.onnxfile import InvalidModel, check_and_infer

if TYPE_CHECKING:
    from convc.model import Model

CalibrationMethod = Literal["minmax", "percentile", "entropy"]
CALIBRATION_METHODS: tuple[CalibrationMethod, ...] = get_args(CalibrationMethod)
WeightBits = Literal[7, 8]
WEIGHT_BITS: tuple[WeightBits, ...] = get_args(WeightBits)

DEFAULT_CALIBRATION_COUNT = 64
"""Samples that calibrate by default: enough for stable min-max ranges of a CNN's activations
(TFLite's converter asks for 100 to 500 "representative" samples, onnxruntime's examples use a
few dozen) and quick (the float model runs once per sample with every activation exposed)."""

CALIBRATION_PERCENTILE = 99.999
"""``percentile`` calibration keeps this central share of an activation's values (onnxruntime's
default): a few outliers no longer stretch the range, and so the step, of everything else."""

RANDOM = "random"
"""The calibration source ``random``: standard-normal samples (for models with random weights,
whose activations no real data describes)."""

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")

MAX_CALIBRATION_BYTES = 4 << 30
"""The most bytes of calibration samples (float32) read at once."""

INT8_MAX_OPSET = 27
"""The newest opset of an int8 model: onnxruntime 1.32 has no QuantizeLinear or DequantizeLinear
kernel for opset 28. Without ``--opset``, an int8 model takes its target's opset or this,
whichever is older."""

PRECISION_KEY = "convc.precision"
INT8_KEY = "convc.int8"
"""Metadata of an int8 model: ``convc.precision`` is ``int8``; ``convc.int8`` is JSON with the
calibration (method, samples used), the weight bits, ``keep_float`` as given, and
``float32_layers``: each layer with nodes kept float32, with the sorted codes of
``FLOAT32_REASONS`` that kept them (models made before it was recorded lack the key)."""

FLOAT32_REASONS: dict[str, str] = {
    "keep_float": "asked by --keep-float",
    "conv3d": "3-D convolution slower in int8",
    "softmax": "softmax slower in int8",
    "short_concat": "interleave slower in int8",
}
"""Why a layer kept nodes float32, by the code that ``convc.int8`` metadata records (stable: a
code is never renamed or reused), with the words ``float32_line`` says it in. ``keep_float``:
the user named the layer (all its nodes). The others are ``slower_in_int8``'s: ``conv3d``, a
3-D convolution outside onnxruntime's fast integer kernel (all the layer's nodes); ``softmax``,
the layer's Softmax alone; ``short_concat``, a transposed convolution's element-by-element
interleave (all but its convolutions)."""

FLOAT32_LINE_NAMES = 4
"""The most layer names ``float32_line`` gives for one reason (it counts the others)."""

FLOAT32_LINE_NAME_WIDTH = 40
"""The most characters of a layer name ``float32_line`` gives (it cuts a longer one)."""

CalibrationSource = str | os.PathLike | np.ndarray | Mapping[str, np.ndarray] | None
"""A path (``.npy``, ``.npz``, a folder), ``"random"``, one array (a one-input model's samples)
or arrays by input name."""


@dataclass(frozen=True, eq=False)
class Calibration:
    """Samples in Keras's layout, by input name, each array ``(samples, *input shape)``; where
    they came from; and how many of them calibrate (the rest are held out)."""

    samples: dict[str, np.ndarray]
    source: str
    count: int

    @property
    def size(self) -> int:
        return len(next(iter(self.samples.values())))

    @property
    def used(self) -> int:
        """How many samples calibrate: ``count``, or all there are when fewer."""
        return min(self.count, self.size)

    def calibrating(self) -> dict[str, np.ndarray]:
        return {name: array[: self.count] for name, array in self.samples.items()}

    def held_out(self) -> dict[str, np.ndarray] | None:
        """The samples after the calibrating ones, or None when there are none."""
        if self.size <= self.count:
            return None
        return {name: array[self.count :] for name, array in self.samples.items()}


def check_int8_options(
    precision: str,
    calibration: Any,
    method: str,
    count: Any,
    keep_float: Any,
    weight_bits: Any,
    opset: int | None = None,
) -> None:
    """Errors for int8 options that are wrong in themselves or given without ``int8``."""
    if method not in CALIBRATION_METHODS:
        raise ConvcError(
            f"unknown calibration method {method!r}",
            help="choose one of: " + ", ".join(CALIBRATION_METHODS),
        )
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ConvcError(f"the calibration count must be a positive integer, got {count!r}")
    if weight_bits not in WEIGHT_BITS:
        raise ConvcError(f"weight_bits must be 7 or 8, got {weight_bits!r}")
    if not isinstance(keep_float, tuple) or not all(isinstance(n, str) for n in keep_float):
        raise ConvcError(f"keep_float must be a tuple of layer names, got {keep_float!r}")
    if precision == "int8":
        if opset is not None and opset > INT8_MAX_OPSET:
            raise ConvcError(
                f"opset {opset} is too new for an int8 model",
                help=f"onnxruntime quantizes and runs int8 models up to opset {INT8_MAX_OPSET}",
            )
        if calibration is None:
            raise ConvcError(
                "an int8 model needs calibration data",
                help="give --calibration FILE.npz, FILE.npy or a folder of images "
                "(samples of real input), or --calibration random for a model with random "
                "weights",
            )
        return
    given = [
        name
        for name, value, default in (
            ("calibration", calibration, None),
            ("calibration method", method, "minmax"),
            ("calibration count", count, DEFAULT_CALIBRATION_COUNT),
            ("keep_float", keep_float, ()),
            ("weight bits", weight_bits, 7),
        )
        if value is not default and not (isinstance(value, str | int | tuple) and value == default)
    ]
    if given:
        raise ConvcError(
            f"the {given[0]} applies to int8 models",
            help="build with --precision int8",
        )


# -- calibration data ---------------------------------------------------------------------------


def read_calibration(
    source: CalibrationSource,
    model: Model,
    count: int = DEFAULT_CALIBRATION_COUNT,
    seed: int = 0,
    *,
    hold_out: bool = True,
) -> Calibration:
    """The samples of ``source`` for ``model``'s inputs (see the module's docstring), checked
    against the inputs' shapes; ``count`` of them calibrate. ``random`` draws ``count``
    samples from ``seed`` (and, to ``hold_out``, as many more: a build holds none out)."""
    inputs = {i.name: i for i in model.inputs}
    drawn = random_samples(source, count, hold_out=hold_out)
    if drawn is not None:
        samples = {
            name: _standard_normal([seed, index, 27], drawn, _sample_shape(i.shape))
            for index, (name, i) in enumerate(inputs.items())
        }
        return Calibration(samples, RANDOM, count)
    if isinstance(source, np.ndarray):
        arrays, where = _one_input(inputs, source, "<calibration array>"), "<calibration array>"
    elif isinstance(source, Mapping):
        arrays, where = dict(source), "<calibration arrays>"
    elif isinstance(source, str | os.PathLike):
        path = Path(source)
        where = str(path)
        if not path.exists():
            raise ConvcError("no such calibration file or folder", path=where)
        if path.is_dir():
            arrays = _read_folder(path, model)
        elif path.suffix == ".npz":
            arrays = read_npz(path)
            if len(arrays) == 1 and len(inputs) == 1 and next(iter(arrays)) not in inputs:
                arrays = {next(iter(inputs)): next(iter(arrays.values()))}
        elif path.suffix == ".npy":
            arrays = _one_input(inputs, read_npy(path), where)
        else:
            raise ConvcError(
                "unknown calibration format",
                path=where,
                help="give .npy (one input's samples), .npz (by input name), a folder of images "
                "or of .npy files, or 'random'",
            )
    else:
        raise ConvcError(f"calibration data must be a path or arrays, got {type(source).__name__}")
    return Calibration(_checked(arrays, inputs, where), where, count)


def random_samples(source: CalibrationSource, count: int, *, hold_out: bool = True) -> int | None:
    """How many samples ``read_calibration`` draws for ``random``, without drawing them:
    ``count`` to calibrate and, to ``hold_out``, as many more. None for any other source. The
    calibrating samples are the same either way: the first ``count`` of one stream."""
    if isinstance(source, str) and source == RANDOM:
        return 2 * count if hold_out else count
    return None


def _standard_normal(seed: list[int], count: int, shape: tuple[int, ...]) -> np.ndarray:
    """``count`` standard-normal samples of ``shape`` from ``seed``, float32: the numbers of
    one float64 draw cast to float32, drawn a block of samples at a time into the result, so
    that the float64 draw (twice the samples' bytes) is never whole."""
    generator = np.random.default_rng(seed)
    samples = np.empty((count, *shape), np.float32)
    block = max(1, (1 << 15) // max(1, math.prod(shape)))  # 256 KiB of float64 at a time
    for start in range(0, count, block):
        part = samples[start : start + block]
        part[...] = generator.standard_normal(part.shape)
    return samples


def _one_input(inputs: dict, array: np.ndarray, where: str) -> dict[str, np.ndarray]:
    if len(inputs) != 1:
        raise ConvcError(
            f"the model has {len(inputs)} inputs: give calibration samples by input name in "
            "an .npz file",
            path=where,
        )
    return {next(iter(inputs)): array}


def _sample_shape(shape: tuple[int | None, ...]) -> tuple[int, ...]:
    return tuple(1 if d is None else d for d in shape[1:])


def _checked(arrays: dict[str, Any], inputs: dict, where: str) -> dict[str, np.ndarray]:
    """Every input's samples, as float32 ``(samples, *shape)``, the same number for each."""
    unknown = sorted(set(arrays) - set(inputs))
    if unknown:
        raise ConvcError(
            f"the calibration data has an array {unknown[0]!r}, but the model's inputs are "
            + ", ".join(inputs),
            path=where,
        )
    checked: dict[str, np.ndarray] = {}
    for name, model_input in inputs.items():
        if name not in arrays:
            raise ConvcError(f"the calibration data has no samples for input {name!r}", path=where)
        array = np.asarray(arrays[name])
        want = _sample_shape(model_input.shape)
        if array.dtype.kind not in "fiu" or array.dtype.itemsize > 8:
            raise ConvcError(
                f"the calibration samples of {name!r} have dtype {array.dtype}; real numbers "
                "are needed",
                path=where,
            )
        if array.ndim == len(want) and array.shape == want:
            array = array[None]  # one sample
        if array.ndim != len(want) + 1 or array.shape[1:] != want or not len(array):
            raise ConvcError(
                f"the calibration samples of {name!r} have shape {array.shape}; expected "
                f"(samples, {', '.join(map(str, want))})",
                path=where,
            )
        if math.prod(array.shape) * 4 > MAX_CALIBRATION_BYTES:
            raise ConvcError(
                f"the calibration samples of {name!r} take more than "
                f"{MAX_CALIBRATION_BYTES >> 30} GiB as float32",
                path=where,
                help="give fewer samples",
            )
        array = array.astype(np.float32)
        if not np.isfinite(array).all():
            raise ConvcError(
                f"the calibration samples of {name!r} hold NaN or infinite values", path=where
            )
        checked[name] = array
    sizes = {len(a) for a in checked.values()}
    if len(sizes) > 1:
        raise ConvcError(
            "the calibration data has different numbers of samples for the model's inputs: "
            + ", ".join(f"{name} {len(a)}" for name, a in checked.items()),
            path=where,
        )
    return checked


def _read_folder(folder: Path, model: Model) -> dict[str, np.ndarray]:
    """A folder's ``.npy`` files (each one sample or a batch of them) or images, in name order;
    files of other kinds are ignored, a mix of the two is refused."""
    if len(model.inputs) != 1:
        raise ConvcError(
            f"the model has {len(model.inputs)} inputs: give calibration samples by input name "
            "in an .npz file",
            path=str(folder),
        )
    model_input = model.inputs[0]
    files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    arrays = [p for p in files if p.suffix == ".npy"]
    images = [p for p in files if p.suffix.lower() in IMAGE_SUFFIXES]
    if arrays and images:
        raise ConvcError(
            "the calibration folder holds both .npy files and images; give one kind",
            path=str(folder),
        )
    want = _sample_shape(model_input.shape)
    if arrays:
        samples = []
        for path in arrays:
            array = read_npy(path)
            samples.append(array[None] if array.shape == want else array)
        try:
            return {model_input.name: np.concatenate(samples)}
        except ValueError:
            shapes = sorted({tuple(a.shape) for a in samples})
            raise ConvcError(
                f"the .npy files of the calibration folder have shapes {shapes}; each should be "
                f"{want} or (samples, {', '.join(map(str, want))})",
                path=str(folder),
            ) from None
    if not images:
        raise ConvcError(
            "the calibration folder holds no images (" + ", ".join(IMAGE_SUFFIXES) + ") and no "
            ".npy files",
            path=str(folder),
        )
    return {model_input.name: np.stack([_read_image(p, want) for p in images])}


def _read_image(path: Path, shape: tuple[int, ...]) -> np.ndarray:
    """An image as Keras's ``load_img`` and ``img_to_array`` give it: RGB (or grayscale for one
    channel), resized to the input's height and width (bilinear), float32 pixel values 0-255, in
    the input's layout (channels last; channels first when the first axis is 1 or 3 and the
    last is not)."""
    try:
        from PIL import Image
    except ImportError:
        raise ConvcError(
            "reading images needs Pillow, which is not installed",
            path=str(path),
            help="pip install 'convc[images]', or give the samples as .npy/.npz arrays",
        ) from None
    if len(shape) != 3:
        raise ConvcError(
            f"images calibrate an image input (height, width, channels); this input's shape is "
            f"{shape}",
            path=str(path),
        )
    first = shape[0] in (1, 3) and shape[2] not in (1, 3)
    channels, height, width = (shape[0], *shape[1:]) if first else (shape[2], *shape[:2])
    if channels not in (1, 3):
        raise ConvcError(f"images have 1 or 3 channels; this input has {channels}", path=str(path))
    Image.MAX_IMAGE_PIXELS = 1 << 28  # a decompression bomb is an error, not a hang
    try:
        with Image.open(path) as opened:
            converted = opened.convert("L" if channels == 1 else "RGB")
            resized = converted.resize((width, height), Image.Resampling.BILINEAR)
            pixels = np.asarray(resized, dtype=np.float32)
    except (OSError, ValueError, Image.DecompressionBombError) as error:
        raise ConvcError(f"cannot read the image: {error}", path=str(path)) from None
    pixels = pixels.reshape(height, width, channels)
    return np.moveaxis(pixels, -1, 0) if first else pixels


# -- the pass -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class QuantizedTensor:
    """An activation that a QuantizeLinear quantizes: the float tensor it reads (``tensor``),
    the integer tensor it writes (``integers``), and its scale, zero point and type."""

    tensor: str
    integers: str
    scale: float
    zero_point: int
    dtype: str

    @property
    def bounds(self) -> tuple[int, int]:
        info = np.iinfo(self.dtype)
        return int(info.min), int(info.max)


@dataclass(frozen=True, eq=False)
class QuantizedWeight:
    """A weight stored as integers (``integers``, an initializer) that a DequantizeLinear turns
    into the float tensor ``tensor``: per-channel ``scales`` and ``zero_points`` along
    ``axis`` (None for one scale)."""

    tensor: str
    integers: str
    scales: np.ndarray
    zero_points: np.ndarray
    axis: int | None
    dtype: str


@dataclass(frozen=True, eq=False)
class QuantizationPlan:
    """What the quantization chose, read back from the QDQ model (``read_plan``)."""

    activations: tuple[QuantizedTensor, ...]
    weights: tuple[QuantizedWeight, ...]
    float_nodes: tuple[str, ...]
    """The float32 model's nodes excluded from quantization (``keep_float``'s and
    ``slower_in_int8``'s)."""

    def activation(self, integers: str) -> QuantizedTensor:
        return next(a for a in self.activations if a.integers == integers)


def model_int8_settings(proto: onnx.ModelProto) -> dict[str, Any] | None:
    """The ``convc.int8`` metadata of an int8 model (None for another)."""
    for entry in proto.metadata_props:
        if entry.key == INT8_KEY:
            return json.loads(entry.value)
    return None


def float32_layers(proto: onnx.ModelProto) -> dict[str, tuple[str, ...]]:
    """The layers of an int8 model that kept nodes float32, each with the codes of
    ``FLOAT32_REASONS`` that kept them, in the model's order (none for another model, or for an
    int8 model made before its metadata recorded them)."""
    settings = model_int8_settings(proto) or {}
    recorded = settings.get("float32_layers")
    if not isinstance(recorded, dict):
        return {}
    order: dict[str, int] = {}
    for index, node in enumerate(proto.graph.node):
        if node.op_type not in ("QuantizeLinear", "DequantizeLinear"):  # weights' come first
            order.setdefault(_layer_of(node), index)
    layers = sorted(recorded, key=lambda layer: (order.get(layer, len(order)), layer))
    return {
        layer: tuple(str(code) for code in recorded[layer])
        for layer in layers
        if isinstance(recorded[layer], list)
    }


def float32_line(layers: Mapping[str, Sequence[str]]) -> str | None:
    """One line that names the layers kept float32, grouped by reason (``FLOAT32_REASONS``'s
    order; at most ``FLOAT32_LINE_NAMES`` names each, cut to ``FLOAT32_LINE_NAME_WIDTH``
    characters and escaped for a terminal, as they come from files), or None when there are
    none."""
    by_reason: dict[str, list[str]] = {}
    for layer, codes in layers.items():
        for code in codes:
            by_reason.setdefault(code, []).append(layer)
    if not by_reason:
        return None
    known = [code for code in FLOAT32_REASONS if code in by_reason]
    groups = []
    for code in known + sorted(set(by_reason) - set(known)):
        names = by_reason[code]
        shown = ", ".join(_short_name(name) for name in names[:FLOAT32_LINE_NAMES])
        if len(names) > FLOAT32_LINE_NAMES:
            shown += f" and {len(names) - FLOAT32_LINE_NAMES} more"
        groups.append(f"{shown} ({FLOAT32_REASONS.get(code, printable(code))})")
    count = sum(1 for codes in layers.values() if codes)
    return f"kept float32 ({count} layer{'s' if count != 1 else ''}): " + "; ".join(groups)


def _short_name(name: str) -> str:
    if len(name) > FLOAT32_LINE_NAME_WIDTH:
        name = name[: FLOAT32_LINE_NAME_WIDTH - 3] + "..."
    return printable(name)


def to_int8(
    proto: onnx.ModelProto,
    model: Model,
    calibration: Calibration,
    *,
    method: CalibrationMethod = "minmax",
    keep_float: Sequence[str] = (),
    weight_bits: WeightBits = 7,
    io_layout: str = "keras",
) -> tuple[onnx.ModelProto, QuantizationPlan]:
    """The QDQ int8 model of the float32 model ``proto`` (lowered from ``model``), calibrated on
    ``calibration``'s first ``count`` samples, and its plan (see the module's docstring)."""
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    for entry in proto.metadata_props:
        if entry.key == PRECISION_KEY and entry.value != "float32":
            raise ConvcError(f"the model is already {entry.value}")
    asked = _excluded_nodes(proto, model, keep_float)
    slower = slower_in_int8(proto)
    excluded = asked | set(slower)
    feeds = _feeds(proto, model, calibration.calibrating(), io_layout)

    extra: dict[str, Any] = {
        "ActivationSymmetric": False,
        "WeightSymmetric": True,
        "QDQOpTypePerChannelSupportToAxis": {"MatMul": 1},
    }
    with tempfile.TemporaryDirectory(prefix="convc-int8-") as folder, _quiet():
        source = Path(folder) / "float32.onnx"
        target = Path(folder) / "int8.onnx"
        float_model = onnx.ModelProto()
        float_model.CopyFrom(proto)
        del float_model.graph.value_info[:]  # onnxruntime infers them again
        onnx.save(float_model, source)
        del float_model
        try:
            ranges = _calibrate(source, feeds, method, Path(folder))
            quantize_static(
                str(source),
                str(target),
                None,
                calibration_cache_path=ranges,
                calibrate_method=_ORT_METHODS[method](),
                quant_format=QuantFormat.QDQ,
                per_channel=True,
                reduce_range=weight_bits == 7,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                nodes_to_exclude=list(excluded),
                extra_options=extra,
            )
        except (ValueError, RuntimeError) as error:  # onnxruntime's own refusals
            raise ConvcError(f"onnxruntime could not quantize the model: {error}") from None
        quantized = onnx.load(str(target))
    del quantized.metadata_props[:]
    for entry in proto.metadata_props:
        if entry.key != PRECISION_KEY:
            quantized.metadata_props.add().CopyFrom(entry)
    settings = {
        "calibration": {"method": method, "samples": calibration.used},
        "weight_bits": weight_bits,
        "keep_float": sorted(keep_float),
        "float32_layers": _reasons_by_layer(proto, asked, slower),
    }
    for key, value in ((PRECISION_KEY, "int8"), (INT8_KEY, json.dumps(settings, sort_keys=True))):
        entry = quantized.metadata_props.add()
        entry.key, entry.value = key, value
    quantized.producer_name = proto.producer_name
    quantized.producer_version = proto.producer_version
    try:
        inferred = check_and_infer(quantized)
    except InvalidModel as error:
        raise ConvcError(f"the int8 model is not valid ONNX: {error}") from None
    del quantized.graph.value_info[:]
    quantized.graph.value_info.extend(inferred.graph.value_info)
    return quantized, read_plan(quantized, excluded)


def _reasons_by_layer(
    proto: onnx.ModelProto, asked: set[str], slower: Mapping[str, KeptFloat]
) -> dict[str, list[str]]:
    """The layers with nodes kept float32 (``asked`` by ``keep_float``, or ``slower`` in int8),
    each with the sorted codes of why."""
    reasons: dict[str, set[str]] = {}
    for node in proto.graph.node:
        if node.name in asked:
            reasons.setdefault(_layer_of(node), set()).add("keep_float")
        if node.name in slower:
            reasons.setdefault(_layer_of(node), set()).add(slower[node.name].code)
    return {layer: sorted(codes) for layer, codes in reasons.items()}


def _ort_method(name: str) -> Callable[[], Any]:
    def method() -> Any:
        from onnxruntime.quantization import CalibrationMethod

        return getattr(CalibrationMethod, name)

    return method


_ORT_METHODS = {
    "minmax": _ort_method("MinMax"),
    "percentile": _ort_method("Percentile"),
    "entropy": _ort_method("Entropy"),
}

_HISTOGRAM = {
    "percentile": {"num_bins": 2048, "percentile": CALIBRATION_PERCENTILE},
    "entropy": {"num_bins": 2048, "num_quantized_bins": 128},
}
"""The histogram methods' settings. ``quantize_static`` passes no bin counts to its calibrator,
whose entropy default is 128 bins for 128 quantized levels: the search for a narrower range then
has one candidate, the whole range, and ``entropy`` gave ``minmax``'s ranges. So convc runs
onnxruntime's calibrator itself with 2048 bins (TensorRT's entropy calibration uses the same) and
hands ``quantize_static`` the ranges."""


def _calibrate(
    model_path: Path, feeds: list[dict[str, np.ndarray]], method: str, folder: Path
) -> Path:
    """Run onnxruntime's calibrator of ``method`` on ``feeds``; the ranges, in the cache file
    that ``quantize_static`` reads (returned)."""
    from onnxruntime.quantization.calibrate import (
        CalibrationDataReader,
        create_calibrator,
        save_tensors_data,
    )
    from onnxruntime.quantization.registry import QDQRegistry, QLinearOpsRegistry

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._feeds = iter(feeds)

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self._feeds, None)

    calibrator = create_calibrator(
        model_path,
        sorted(set(QLinearOpsRegistry) | set(QDQRegistry)),  # what quantize_static calibrates
        augmented_model_path=str(folder / "augmented.onnx"),
        calibrate_method=_ORT_METHODS[method](),
        extra_options=_HISTOGRAM.get(method, {}),
    )
    calibrator.collect_data(Reader())
    ranges = folder / "ranges.json"
    save_tensors_data(calibrator.compute_data(), ranges)
    del calibrator
    return ranges


def _feeds(
    proto: onnx.ModelProto, model: Model, samples: dict[str, np.ndarray], io_layout: str
) -> list[dict[str, np.ndarray]]:
    """The calibrating samples as the graph takes them: in its inputs' layout, one sample at a
    time (or as many as a static batch holds)."""
    from convc.lower import graph_order

    layouts = {i.name: graph_order(model, i, io_layout) for i in model.inputs}
    batch = model.inputs[0].shape[0] or 1
    size = len(next(iter(samples.values())))
    feeds = []
    for start in range(0, size - batch + 1, batch):
        feeds.append(
            {
                name: np.ascontiguousarray(
                    np.transpose(array[start : start + batch], layouts[name])
                )
                for name, array in samples.items()
            }
        )
    if not feeds:
        raise ConvcError(
            f"the model's batch is {batch}: calibration needs at least {batch} samples, got {size}"
        )
    return feeds


# -- where int8 is faster -------------------------------------------------------------------------
#
# quantize_static places QuantizeLinear/DequantizeLinear pairs around every op that onnxruntime
# *can* run on integers; it does not ask whether the integer kernel is faster. On a CPU some are
# not, and the slowest op decides a model's time: volume3d (benchmarks/nets) took 3.5 times its
# float32 time in int8 (179 against 56 ms, benchmarks/run.py, onnxruntime 1.32, 2 threads, AMD
# EPYC Zen 3 with AVX2 and no VNNI), wavenet_gated1d 1.07 times. Profiles of the int8 models
# (SessionOptions.enable_profiling) named the kernels, and onnxruntime's sources said why. With
# the rule below, timed side by side in one process: volume3d 3.8 -> 0.73-0.77 of its float32 time,
# wavenet_gated1d 1.06-1.09 -> 0.69-0.74 (docs/int8.md, Speed).


@dataclass(frozen=True)
class KeptFloat:
    """Why ``slower_in_int8`` keeps a node float32: ``code``, a key of ``FLOAT32_REASONS`` (what
    the model's metadata records), and ``why``, the measurement behind it in words."""

    code: str
    why: str


FLOAT_OPS: dict[str, KeptFloat] = {
    "Softmax": KeptFloat(
        "softmax",
        "onnxruntime's QLinearSoftmax looks every element up in a table and divides it by its "
        "row's sum one element at a time: wavenet_gated1d's 4000 x 256 softmax took 11.6 ms "
        "against 1.9 ms in float32",
    ),
}
"""Ops that stay float32 wherever they are, with why. Only the op: the convolution before a
softmax still gains (wavenet_gated1d's last Conv1D: 1.1 ms in int8, 3.6 ms in float32)."""

CONCAT_INT8_MIN_RUN = 4
"""The shortest contiguous run (elements) that a Concat which stays int8 copies from an input: the
product of the input's dimensions from the concatenation axis on. onnxruntime's QLinearConcat
copies (or, where the scales differ, looks up) one run at a time, on one thread; its float32
Concat does not pay per run. Concatenating two (1, 16, 32, 32 * 32 / r, r) tensors on their
last axis: runs of 1, 2, 4, 8 and 16 elements took 6.0, 1.5, 0.74, 0.41 and 0.28 ms in
QLinearConcat, 0.33, 0.79, 0.40, 0.23 and 0.16 ms in float32, where keeping it float32 costs a
DequantizeLinear of its inputs and a QuantizeLinear of its output (0.14 and 0.16 ms). volume3d's
transposed convolution interleaves its 8 phases element by element: four such Concats, 3.0 to
3.6 ms each in int8 against 0.4 to 0.6 ms in float32."""

CONV3D_INT8_MIN_CHANNELS = 16
"""The fewest input channels of a 3-D convolution that stays int8 (see ``conv_gains_in_int8``)."""


def conv_gains_in_int8(kernel_shape: Sequence[int], group: int) -> bool:
    """Whether onnxruntime's QLinearConv is faster on a CPU than its float32 Conv, for a kernel
    of ONNX shape ``(out channels, in channels / group, *taps)`` in ``group`` groups. Timed as
    one-layer models (Keras layout, float32 in and out), int8 time over float32 time.

    1-D and 2-D: yes. QLinearConv builds the im2col rows of each thread's share of the output
    in that thread, and the integer GEMM is faster (Conv2D(16, 3) at 192 x 192 from 4 channels:
    0.71; wavenet_like1d, unet_like2d and resnet_like2d gain as whole nets). Narrow ones lose
    up to a millisecond (from 1 or 3 channels: 2.2 and 1.5; to 1, 3 or 8 channels from 16: 2.1,
    1.2 and 1.1; the same in 1-D gain: 0.95 and 0.76): not ruled on here.

    3-D: only on MLAS's symmetric integer convolution, which reads the input through pointers
    on every thread: one group, input channels a multiple of 4, output channels a multiple of 8
    and at least 16 (MlasConvSymPackWSize on x86-64), and at least ``CONV3D_INT8_MIN_CHANNELS``
    input channels. Outside it, QLinearConv builds the whole im2col buffer on one thread with a
    generic N-d loop before its GEMM starts: Conv3D(16, 3) at 32^3 from 1 channel: 12.7; from
    16 channels to 8 or 12: 2.6 and 2.7 (in volume3d, its first Conv3D took 80 ms against 5 ms
    in float32, its last, to 1 channel, 54 against 10 ms). Inside it, few input channels leave
    its kernel too little work per pointer: from 4, 8, 12, 16, 24 and 32 channels 2.1, 1.2,
    0.99, 0.79, 0.58 and 0.50 (volume3d's Conv3D(32, 3, strides=2) from 16: 7 against 17 ms)."""
    if len(kernel_shape) != 5:
        return True
    out_channels, in_channels = kernel_shape[0], kernel_shape[1]
    return (
        group == 1
        and in_channels % 4 == 0
        and in_channels >= CONV3D_INT8_MIN_CHANNELS
        and out_channels % 8 == 0
        and out_channels >= 16
    )


def slower_in_int8(proto: onnx.ModelProto) -> dict[str, KeptFloat]:
    """The nodes of the float32 model ``proto`` that stay float32 because onnxruntime's integer
    kernel would be slower there, each with why (a ``KeptFloat``; lowering names a layer's nodes
    ``<layer>/...``):

    * every op of ``FLOAT_OPS``, alone;
    * every node of a layer whose convolution ``conv_gains_in_int8`` refuses: its activation and
      Transposes go with it, since quantizing them alone would only put a
      QuantizeLinear/DequantizeLinear pair around a float op;
    * every node but the convolutions of a layer with a Concat of runs shorter than
      ``CONCAT_INT8_MIN_RUN`` (a transposed convolution's interleave): were any Concat, Reshape
      or Unsqueeze after it int8, onnxruntime would move that QuantizeLinear back through the
      Reshapes (its QDQ propagation) and run the short Concat as QLinearConcat after all."""
    kernels = {t.name: tuple(t.dims) for t in proto.graph.initializer}
    shapes = _static_shapes(proto)
    kept: dict[str, KeptFloat] = {}
    slow_layers: dict[str, KeptFloat] = {}
    short_concat_layers: dict[str, KeptFloat] = {}
    for node in proto.graph.node:
        if node.op_type in FLOAT_OPS:
            kept[node.name] = FLOAT_OPS[node.op_type]
        elif node.op_type == "Concat":
            run = _shortest_run(node, shapes)
            if run is not None and run < CONCAT_INT8_MIN_RUN:
                short_concat_layers.setdefault(
                    _layer_of(node),
                    KeptFloat(
                        "short_concat",
                        f"a Concat that copies runs of {run} element{'s' if run != 1 else ''} "
                        "is slower in onnxruntime's QLinearConcat than in float32 (see "
                        "CONCAT_INT8_MIN_RUN)",
                    ),
                )
        elif node.op_type == "Conv" and len(node.input) > 1 and node.input[1] in kernels:
            shape = kernels[node.input[1]]
            group = next((a.i for a in node.attribute if a.name == "group"), 1)
            if not conv_gains_in_int8(shape, group):
                slow_layers.setdefault(
                    _layer_of(node),
                    KeptFloat(
                        "conv3d",
                        f"a 3-D convolution of {shape[1] * group} to {shape[0]} channels in "
                        f"{group} group{'s' if group != 1 else ''} is slower in onnxruntime's "
                        "QLinearConv than in float32 (see conv_gains_in_int8)",
                    ),
                )
    for node in proto.graph.node:
        layer = _layer_of(node)
        if layer in slow_layers:
            kept.setdefault(node.name, slow_layers[layer])
        elif layer in short_concat_layers and node.op_type != "Conv":
            kept.setdefault(node.name, short_concat_layers[layer])
    return kept


def _static_shapes(proto: onnx.ModelProto) -> dict[str, tuple[int | None, ...]]:
    """The shapes that lowering's shape inference recorded, by value (None for a dimension that
    is not a number: the batch)."""
    shapes = {}
    for info in (*proto.graph.input, *proto.graph.value_info, *proto.graph.output):
        dims = info.type.tensor_type.shape.dim
        shapes[info.name] = tuple(d.dim_value if d.HasField("dim_value") else None for d in dims)
    return shapes


def _shortest_run(node: onnx.NodeProto, shapes: Mapping[str, tuple[int | None, ...]]) -> int | None:
    """The fewest contiguous elements a Concat copies from one of its inputs at a time (None when
    a shape is not known)."""
    axis = next((a.i for a in node.attribute if a.name == "axis"), None)
    runs = []
    for name in node.input:
        shape = shapes.get(name)
        if axis is None or shape is None or not shape:
            return None
        tail = shape[axis % len(shape) :]
        if any(d is None for d in tail):
            return None
        runs.append(math.prod(d for d in tail if d is not None))
    return min(runs, default=None)


def _layer_of(node: onnx.NodeProto) -> str:
    """The Keras layer of a node that lowering named ``<layer>/<what>`` (the node's own name for
    another)."""
    layer, _, _ = node.name.rpartition("/")
    return layer or node.name


def _excluded_nodes(proto: onnx.ModelProto, model: Model, keep_float: Sequence[str]) -> set[str]:
    """The ONNX nodes of the layers to keep float32 (``first``/``last``: the first and the
    last layers with weights), by the ``<layer>/...`` names lowering gives them."""
    if not keep_float:
        return set()
    weighted = [node.name for node in model.nodes if node.layer.variables]
    names = {node.name for node in model.nodes}
    wanted = set()
    for name in keep_float:
        if name in ("first", "last"):
            if not weighted:
                raise ConvcError(f"keep_float {name!r}: the model has no layer with weights")
            wanted.add(weighted[0] if name == "first" else weighted[-1])
        elif name in names:
            wanted.add(name)
        else:
            raise ConvcError(
                f"keep_float: the model has no layer {name!r}",
                help="name a layer, or 'first' or 'last'",
            )
    return {node.name for node in proto.graph.node if node.name.rpartition("/")[0] in wanted}


@contextmanager
def _quiet() -> Iterator[None]:
    """onnxruntime's quantizer logs advice (pre-processing) through the root logger and prints
    its histogram calibration's progress: neither is for convc's users."""
    logger = logging.getLogger()
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with redirect_stdout(io.StringIO()):
            yield
    finally:
        logger.setLevel(level)


def read_plan(proto: onnx.ModelProto, float_nodes: set[str] | None = None) -> QuantizationPlan:
    """The plan of a QDQ model: every QuantizeLinear's and every weight DequantizeLinear's
    scale and zero point (``float_nodes`` as excluded, or none)."""
    constants = {t.name: t for t in proto.graph.initializer}

    def value(name: str) -> np.ndarray:
        return numpy_helper.to_array(constants[name])

    activations, weights = [], []
    for node in proto.graph.node:
        if node.op_type not in ("QuantizeLinear", "DequantizeLinear"):
            continue
        scale, zero_point = value(node.input[1]), value(node.input[2])
        if node.op_type == "QuantizeLinear":
            activations.append(
                QuantizedTensor(
                    node.input[0],
                    node.output[0],
                    float(scale),
                    int(zero_point),
                    str(zero_point.dtype),
                )
            )
        elif node.input[0] in constants:
            axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
            weights.append(
                QuantizedWeight(
                    node.output[0],
                    node.input[0],
                    scale.astype(np.float32).reshape(-1),
                    zero_point.reshape(-1),
                    axis if scale.ndim else None,
                    str(zero_point.dtype),
                )
            )
    return QuantizationPlan(tuple(activations), tuple(weights), tuple(sorted(float_nodes or ())))

"""The NumPy reference: every layer computed from Keras's definition, not from the ONNX graph.

This is the second derivation that ``convc check`` holds the compiled model against. It reads each
layer's Keras arguments and Keras-layout weights and computes padding, output sizes and values
its own way; it never imports the shape helpers, the lowering or ONNX, so a lowering bug cannot
hide in both. Where the lowering uses closed forms (ONNX pads, output_padding), this follows
Keras's mechanisms: a transposed convolution is a convolution of the stride-dilated input with
the flipped kernel, padded as Keras's JAX backend pads it; resizing is a matrix per axis built
from the source coordinates PyTorch uses.

One rank-generic convolution (a matmul per kernel tap over strided views of the input) serves
every convolution flavour: dilation, groups and depthwise are arguments. Tensors are computed in
float32 in channels_last order, as Keras computes them.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np

from convc.model import Model
from convc.model import Node as Layer  # a rule reads one application of a layer
from convc.progress import track
from convc.specs import (
    ActivationSpec,
    ConcatenateSpec,
    ConvSpec,
    CroppingSpec,
    DenseSpec,
    ELUSpec,
    FlattenSpec,
    GlobalPoolSpec,
    LayerScaleSpec,
    LayerSpec,
    LeakyReLUSpec,
    MergeSpec,
    NormalizationSpec,
    NormSpec,
    PassThroughSpec,
    PermuteSpec,
    PoolSpec,
    PReLUSpec,
    ReLUSpec,
    RescalingSpec,
    ReshapeSpec,
    ResizingSpec,
    RMSNormSpec,
    ScaledAddSpec,
    SoftmaxSpec,
    UpSamplingSpec,
    ZeroPaddingSpec,
    expect,
)

Arrays = dict[str, np.ndarray]
Compute = Callable[[Layer, Arrays, Any], np.ndarray]
ComputeT = TypeVar("ComputeT", bound=Compute)

COMPUTES: dict[type[LayerSpec], Compute] = {}
"""Each family's function, by spec class: ``@computes(ConvSpec)`` registers one beside its code.
A function takes one application of a layer, its Keras-layout weights and its input (a list for
a layer called on a list), and returns its output in Keras's layout."""


def computes(spec_class: type[LayerSpec]) -> Callable[[ComputeT], ComputeT]:
    """Register the decorated function as the reference of ``spec_class``'s family."""

    def register(function: ComputeT) -> ComputeT:
        if spec_class in COMPUTES:
            raise RuntimeError(f"two reference functions for {spec_class.__name__}")
        COMPUTES[spec_class] = function
        return function

    return register


def run_reference(
    model: Model, weights: dict[str, Arrays], inputs: np.ndarray | dict[str, np.ndarray]
) -> list[np.ndarray]:
    """Every node's output (Keras layout), in the model's node order, for ``inputs``: one array
    for a one-input model, or arrays by input name. The last is a chain's output."""
    if not isinstance(inputs, dict):
        inputs = {model.input.name: inputs}
    values = {id(i): np.asarray(inputs[i.name]).astype(np.float32) for i in model.inputs}
    outputs = []
    for node in track(model.nodes, "reference layers"):
        x = run_node(node, weights, [values[id(tensor)] for tensor in node.inputs])
        values[id(node.output)] = x
        outputs.append(x)
    return outputs


def run_node(node: Layer, weights: dict[str, Arrays], inputs: list[np.ndarray]) -> np.ndarray:
    """One node's output (Keras layout) for its input arrays, in the order of ``node.inputs``."""
    return COMPUTES[type(node.spec)](
        node, weights.get(node.layer.name, {}), inputs if node.type.takes_list else inputs[0]
    )


def model_outputs(model: Model, node_outputs: list[np.ndarray]) -> dict[str, np.ndarray]:
    """The model's outputs by name, from ``run_reference``'s node outputs."""
    by_name = {node.name: out for node, out in zip(model.nodes, node_outputs, strict=True)}
    return {tensor.name: by_name[tensor.name] for tensor in model.outputs}


# ---------------------------------------------------------------------------------------------
# Layout: the reference works channels_last.


def _to_last(x: np.ndarray, data_format: str) -> np.ndarray:
    return np.moveaxis(x, 1, -1) if data_format == "channels_first" else x


def _from_last(x: np.ndarray, data_format: str) -> np.ndarray:
    return np.moveaxis(x, -1, 1) if data_format == "channels_first" else x


def _pad_or_crop(x: np.ndarray, pads: list[tuple[int, int]]) -> np.ndarray:
    """Zero-pad the spatial axes of a channels_last tensor; a negative pad crops."""
    grow = [(0, 0)] + [(max(b, 0), max(e, 0)) for b, e in pads] + [(0, 0)]
    x = np.pad(x, grow)
    crop = (slice(None),) + tuple(
        slice(max(-b, 0), x.shape[i + 1] - max(-e, 0)) for i, (b, e) in enumerate(pads)
    )
    return x[crop]


# ---------------------------------------------------------------------------------------------
# Convolution


def convolve(
    x: np.ndarray,
    kernel: np.ndarray,
    strides: tuple[int, ...],
    dilation: tuple[int, ...],
    pads: list[tuple[int, int]],
    groups: int = 1,
) -> np.ndarray:
    """Keras's convolution, any rank: x (N, *spatial, C), kernel (*k, C/groups, F).

    Output channels [j*F/g, (j+1)*F/g) see input channels [j*C/g, (j+1)*C/g). Computed one kernel
    tap at a time: each tap's strided view of the input times that tap's weights, accumulated;
    the arithmetic of im2col without its (positions x taps) matrix. Three exceptions: a few input
    channels (``_TAP_DEPTH``) or a small layer (``_IM2COL_ELEMENTS``), where that matrix is
    small and one product beats many thin ones, and few filters (``_FEW_FILTERS``), where
    multiplying first and shifting the products moves fewer numbers than gathering each tap's
    inputs.
    """
    rank = kernel.ndim - 2
    x = _pad_or_crop(x, pads)
    sizes = kernel.shape[:rank]
    out = [
        (n - (d * (k - 1) + 1)) // s + 1
        for n, k, s, d in zip(x.shape[1:-1], sizes, strides, dilation, strict=True)
    ]
    batch, channels, filters = x.shape[0], x.shape[-1], kernel.shape[-1]
    per_group_in, per_group_out = channels // groups, filters // groups
    positions = batch * math.prod(out)

    def window(tap: tuple[int, ...]) -> tuple[slice, ...]:
        return tuple(
            slice(t * d, t * d + (o - 1) * s + 1, s)
            for t, d, o, s in zip(tap, dilation, out, strides, strict=True)
        )

    def patch(tap: tuple[int, ...]) -> np.ndarray:
        return x[(slice(None), *window(tap), slice(None))]

    taps = list(np.ndindex(*sizes))
    if groups == 1 and channels <= _FEW_CHANNELS and channels * len(taps) <= _TAP_DEPTH:
        return _convolve_all_taps(kernel, taps, patch, (batch, *out))
    if groups == 1 and len(taps) > 1 and filters * _FEW_FILTERS <= channels and max(strides) == 1:
        return _convolve_products_first(x, kernel, taps, [window(t) for t in taps])
    if groups == 1 and len(taps) > 2 and positions * len(taps) * channels <= _IM2COL_ELEMENTS:
        return _convolve_im2col(x, kernel, strides, dilation)
    if groups == 1:
        result: np.ndarray | None = None
        for tap in taps:  # a 1x1 kernel's only tap is a view of the input, not a copy
            product = patch(tap).reshape(positions, channels) @ kernel[tap]
            if result is None:
                result = product
            else:
                result += product
        assert result is not None, "a kernel has at least one tap"
        return result.reshape(batch, *out, filters)

    result = np.zeros((positions, groups, per_group_out), dtype=np.float32)
    for tap in taps:
        grouped = patch(tap).reshape(positions, groups, per_group_in)
        weights = kernel[tap].reshape(per_group_in, groups, per_group_out).transpose(1, 0, 2)
        if per_group_in == 1:  # depthwise: a broadcast product, not tiny matmuls
            result += grouped * weights[:, 0, :]
        else:
            result += np.matmul(grouped.transpose(1, 0, 2), weights).transpose(1, 0, 2)
    return result.reshape(batch, *out, filters)


_TAP_DEPTH = 64
"""Up to this many input channels times taps, and at most ``_FEW_CHANNELS`` channels (a first
layer of 1 to 3), ``convolve`` multiplies all taps at once, gathered channel-major, however
large the layer."""

_FEW_CHANNELS = 8
"""Beyond this many channels, gathering channel-major copies a few numbers at a time: a causal
Conv1D(32, 2) over 16,000 steps of 32 channels took 6.4 ms that way, 1.0 ms one tap at a
time."""


def _convolve_all_taps(kernel, taps, patch, out_shape) -> np.ndarray:
    """Convolution as one product of every tap's inputs (im2col) with the kernel. The inputs are
    gathered channel-major, (channels x taps, positions): each copy then runs along a spatial
    axis, where a channels-last gather of one or three channels copies a few numbers at a time
    (3 times slower on a 1-channel Conv3D)."""
    channels, filters = kernel.shape[-2], kernel.shape[-1]
    gathered = np.empty((channels, len(taps), *out_shape), np.float32)
    for i, tap in enumerate(taps):
        gathered[:, i] = np.moveaxis(patch(tap), -1, 0)
    weights = np.moveaxis(kernel.reshape(len(taps), channels, filters), 1, 0)
    products = gathered.reshape(channels * len(taps), -1).T @ weights.reshape(-1, filters)
    return products.reshape(*out_shape, filters)


_IM2COL_ELEMENTS = 1 << 21
"""Up to this many elements in the (positions x taps x channels) matrix, ``convolve`` builds
it and multiplies once: for small layers one well-shaped product beats a thin one per tap
(a 64x64x16 Conv2D(16, 3): 0.6 against 1.0 ms); for larger ones the matrix stops fitting the
caches and costs more than the per-tap products."""


def _convolve_im2col(x, kernel, strides, dilation) -> np.ndarray:
    """Convolution as one product of every output position's window (im2col) with the kernel;
    the windows are a strided view of ``x``, copied once into the matrix by ``tensordot``."""
    rank = kernel.ndim - 2
    spans = [d * (k - 1) + 1 for k, d in zip(kernel.shape[:rank], dilation, strict=True)]
    windows = np.lib.stride_tricks.sliding_window_view(x, spans, axis=tuple(range(1, rank + 1)))
    # (N, *window starts, C, *span offsets): every stride-th start, every dilation-th offset
    windows = windows[
        (
            slice(None),
            *(slice(None, None, s) for s in strides),
            slice(None),
            *(slice(None, None, d) for d in dilation),
        )
    ]
    tap_axes = [*range(rank + 2, 2 * rank + 2), rank + 1]
    return np.tensordot(windows, kernel, axes=(tap_axes, list(range(rank + 1))))


_FEW_FILTERS = 4
"""With this many times fewer filters than input channels (and stride 1), ``convolve`` multiplies
the whole input by every tap's weights first and adds shifted views of the products: fewer
numbers move than in gathering each tap's inputs (a 16-to-1 Conv3D: 6 times faster)."""


def _convolve_products_first(x, kernel, taps, windows) -> np.ndarray:
    """Stride-1 convolution as one product of the (padded) input with every tap's weights, then
    a sum of each tap's window of its products. The products are laid out tap- and filter-major
    so that a window is a view of long contiguous rows."""
    channels, filters = x.shape[-1], kernel.shape[-1]
    by_tap = kernel.reshape(len(taps), channels, filters).transpose(0, 2, 1).reshape(-1, channels)
    products = (by_tap @ x.reshape(-1, channels).T).reshape(len(taps), filters, *x.shape[:-1])
    result = products[(0, slice(None), slice(None), *windows[0])].copy()
    for i in range(1, len(taps)):
        result += products[(i, slice(None), slice(None), *windows[i])]
    return np.ascontiguousarray(np.moveaxis(result, 0, -1))


def _same_pads(length: int, kernel: int, stride: int, dilation: int) -> tuple[int, int]:
    span = dilation * (kernel - 1) + 1
    out = -(-length // stride)
    total = max((out - 1) * stride + span - length, 0)
    return total // 2, total - total // 2


def _forward_pads(c: ConvSpec, x_last: np.ndarray) -> list[tuple[int, int]]:
    padding = c.padding
    pads = []
    for axis, (k, s, d) in enumerate(zip(c.kernel_size, c.strides, c.dilation_rate, strict=True)):
        if padding == "valid":
            pads.append((0, 0))
        elif padding == "causal":
            pads.append((d * (k - 1), 0))
        else:
            pads.append(_same_pads(x_last.shape[axis + 1], k, s, d))
    return pads


def _bias_and_activation(c: ConvSpec, weights: Arrays, y: np.ndarray) -> np.ndarray:
    if "bias" in weights:
        y = y + weights["bias"]
    y = _from_last(y, c.data_format)
    return ACTIVATIONS[c.activation](y).astype(np.float32)


def conv(layer: Layer, weights: Arrays, x: np.ndarray) -> np.ndarray:
    c = expect(layer.spec, ConvSpec)
    x = _to_last(x, c.data_format)
    y = convolve(x, weights["kernel"], c.strides, c.dilation_rate, _forward_pads(c, x), c.groups)
    return _bias_and_activation(c, weights, y)


def depthwise(layer: Layer, weights: Arrays, x: np.ndarray) -> np.ndarray:
    c = expect(layer.spec, ConvSpec)
    x = _to_last(x, c.data_format)
    y = _depthwise(x, weights["kernel"], c, _forward_pads(c, x))
    return _bias_and_activation(c, weights, y)


def _depthwise(x: np.ndarray, kernel: np.ndarray, c: ConvSpec, pads) -> np.ndarray:
    *k, channels, multiplier = kernel.shape
    grouped = kernel.reshape(*k, 1, channels * multiplier)  # output channel c*M + j
    return convolve(x, grouped, c.strides, c.dilation_rate, pads, groups=channels)


def separable(layer: Layer, weights: Arrays, x: np.ndarray) -> np.ndarray:
    c = expect(layer.spec, ConvSpec)
    x = _to_last(x, c.data_format)
    mid = _depthwise(x, weights["depthwise_kernel"], c, _forward_pads(c, x))
    pointwise = weights["pointwise_kernel"]
    y = np.matmul(mid, pointwise.reshape(pointwise.shape[-2], pointwise.shape[-1]))
    return _bias_and_activation(c, weights, y)


def _transpose_pads(kernel: int, stride: int, dilation: int, padding: str, output_padding):
    """Keras's pads of the stride-dilated input (its JAX backend's formulation)."""
    span = dilation * (kernel - 1) + 1
    if padding == "valid":
        extra = max(span, stride) - span if output_padding is None else output_padding
        return span - 1, span - 1 + extra
    with_default = output_padding is None
    total = stride + span - 2 if with_default else span + span % 2 - 2 + output_padding
    left = min(total // 2 + total % 2, span - 1)
    return left, total - left


def conv_transpose(layer: Layer, weights: Arrays, x: np.ndarray) -> np.ndarray:
    """Keras's transposed convolution: a convolution of the input dilated by the strides, padded
    by ``_transpose_pads``, with the kernel flipped. Computed directly: each kernel tap scatters
    its product into the unpadded ("full") output, which is then cropped or extended to what the
    padded convolution would give, without the products of the dilation's zeros."""
    c = expect(layer.spec, ConvSpec)
    x = _to_last(x, c.data_format)
    rank = x.ndim - 2
    strides, dilation = c.strides, c.dilation_rate
    kernel = weights["kernel"]  # (*k, out, in)
    sizes = kernel.shape[:rank]
    lengths = x.shape[1:-1]
    full = np.zeros(
        (
            x.shape[0],
            *[
                (n - 1) * s + d * (k - 1) + 1
                for n, s, d, k in zip(lengths, strides, dilation, sizes, strict=True)
            ],
            kernel.shape[-2],
        ),
        dtype=np.float32,
    )
    for tap in np.ndindex(*sizes):
        window = tuple(
            slice(t * d, t * d + (n - 1) * s + 1, s)
            for t, d, n, s in zip(tap, dilation, lengths, strides, strict=True)
        )
        full[(slice(None), *window, slice(None))] += x @ kernel[tap].T
    output_padding = c.output_padding or (None,) * rank
    # The padded convolution's output o is full-output position o + span - 1 - left; positions
    # past the full output's end hold only the bias.
    pads = []
    for k, s, d, op, n, m in zip(
        sizes, strides, dilation, output_padding, lengths, full.shape[1:-1], strict=True
    ):
        left, right = _transpose_pads(k, s, d, c.padding, op)
        span = d * (k - 1) + 1
        out = (n - 1) * s + 1 + left + right - span + 1
        start = span - 1 - left
        pads.append((-start, start + out - m))
    y = _pad_or_crop(full, pads)
    return _bias_and_activation(c, weights, y)


# ---------------------------------------------------------------------------------------------
# Cropping, padding, upsampling


@computes(CroppingSpec)
def cropping(layer: Layer, weights: Arrays, x: np.ndarray) -> np.ndarray:
    c = expect(layer.spec, CroppingSpec)
    x = _to_last(x, c.data_format)
    return _from_last(_pad_or_crop(x, [(-b, -e) for b, e in c.cropping]), c.data_format)


@computes(ZeroPaddingSpec)
def zero_padding(layer: Layer, weights: Arrays, x: np.ndarray) -> np.ndarray:
    c = expect(layer.spec, ZeroPaddingSpec)
    x = _to_last(x, c.data_format)
    return _from_last(_pad_or_crop(x, list(c.padding)), c.data_format)


@computes(UpSamplingSpec)
def up_sampling(layer: Layer, weights: Arrays, x: np.ndarray) -> np.ndarray:
    c = expect(layer.spec, UpSamplingSpec)
    x = _to_last(x, c.data_format)
    for axis, factor in enumerate(c.size, start=1):
        if c.interpolation == "nearest":
            x = np.repeat(x, factor, axis=axis)
        else:
            matrix = _RESIZE[c.interpolation](x.shape[axis], factor)
            x = np.moveaxis(np.tensordot(matrix, x, axes=([1], [axis])), 0, axis)
    return _from_last(x.astype(np.float32), c.data_format)


def _bilinear(length: int, factor: int) -> np.ndarray:
    """PyTorch's linear resize (align_corners=False) as an (out, in) matrix."""
    matrix = np.zeros((length * factor, length), dtype=np.float64)
    for i in range(length * factor):
        source = max((i + 0.5) / factor - 0.5, 0.0)
        low = min(int(math.floor(source)), length - 1)
        high = low + 1 if low < length - 1 else low
        weight = min(max(source - low, 0.0), 1.0)
        matrix[i, low] += 1.0 - weight
        matrix[i, high] += weight
    return matrix


def _bicubic_torch(length: int, factor: int, a: float = -0.75) -> np.ndarray:
    """PyTorch's cubic resize (Keys, a=-0.75, align_corners=False, borders replicated), which
    Keras 3's torch backend computes for 'bicubic'."""

    def near(t: float) -> float:  # |t| <= 1
        return ((a + 2) * t - (a + 3)) * t * t + 1

    def far(t: float) -> float:  # 1 < |t| < 2
        return ((a * t - 5 * a) * t + 8 * a) * t - 4 * a

    matrix = np.zeros((length * factor, length), dtype=np.float64)
    for i in range(length * factor):
        source = (i + 0.5) / factor - 0.5
        base = int(math.floor(source))
        t = source - base
        for offset, weight in ((-1, far(t + 1)), (0, near(t)), (1, near(1 - t)), (2, far(2 - t))):
            matrix[i, min(max(base + offset, 0), length - 1)] += weight
    return matrix


def _bilinear_keras2(length: int, factor: int) -> np.ndarray:
    """Keras 2.2/2.3's bilinear upsampling, TensorFlow 1's resize_bilinear (no align_corners,
    no half-pixel centres): output ``i`` samples the input at ``i / factor``."""
    matrix = np.zeros((length * factor, length), dtype=np.float64)
    for i in range(length * factor):
        source = i / factor
        low = min(int(math.floor(source)), length - 1)
        high = min(low + 1, length - 1)
        matrix[i, low] += 1.0 - (source - low)
        matrix[i, high] += source - low
    return matrix


def _tensorflow_bicubic(n: int, m: int) -> np.ndarray:
    """TensorFlow's ResizeBicubic with half-pixel centres, which tf.image.resize(method=
    "bicubic") runs for tf.keras's UpSampling2D and Resizing, from n to m samples as an (m, n)
    matrix. Output i reads the input at ``(i + 0.5) * (n / m) - 0.5``, computed in float32 as
    TensorFlow computes it; its distance t past its floor is rounded (half to even) to a multiple
    of 1/1024, since TensorFlow reads the weights from a table at those distances; Keys's cubic
    with a = -0.5 weighs the samples floor - 1 to floor + 2, at distances 1 + t, t, 1 - t and
    2 - t; samples outside the input get no weight, and the others are divided by their sum."""
    matrix = np.zeros((m, n), dtype=np.float64)
    scale = np.float32(n) / np.float32(m)
    for i in range(m):
        position = float((np.float32(i) + np.float32(0.5)) * scale - np.float32(0.5))
        base = math.floor(position)
        t = round((position - base) * 1024) / 1024
        taps = [
            (base + offset, weight)
            for offset, weight in zip((-1, 0, 1, 2), _keys_weights(t, -0.5), strict=True)
            if 0 <= base + offset < n
        ]
        total = sum(weight for _, weight in taps)
        for j, weight in taps:
            matrix[i, j] = weight / total
    return matrix


def _kernel(name: str) -> Callable[[np.ndarray], np.ndarray]:
    """A resampling kernel of jax.image.scale_and_translate (and TensorFlow's, which agrees):
    Keys's cubic with a = -0.5, or Lanczos's windowed sinc of radius 3 or 5."""
    if name == "bicubic":

        def keys(d: np.ndarray) -> np.ndarray:
            d = np.abs(d)
            near = ((1.5 * d - 2.5) * d) * d + 1.0
            far = ((-0.5 * d + 2.5) * d - 4.0) * d + 2.0
            return np.where(d < 1.0, near, np.where(d < 2.0, far, 0.0))

        return keys
    radius = float(name.removeprefix("lanczos"))

    def lanczos(d: np.ndarray) -> np.ndarray:
        return np.where(np.abs(d) < radius, np.sinc(d) * np.sinc(d / radius), 0.0)

    return lanczos


def _kernel_resize(n: int, m: int, interpolation: str, antialias: bool) -> np.ndarray:
    """Resampling from n to m samples as JAX defines it (jax.image.resize, which Keras 3's JAX
    backend calls; TensorFlow's agrees but for its bicubic table): output i is centred on input
    position ``(i + 0.5) * n / m - 0.5``; every input sample j is weighed by the kernel at the
    distance from it, divided by ``n / m`` when antialiasing a shrink; the weights are divided
    by their sum (so samples past the borders count for nothing)."""
    kernel = _kernel(interpolation)
    widen = max(n / m, 1.0) if antialias else 1.0
    centres = (np.arange(m) + 0.5) * (n / m) - 0.5
    weights = kernel((centres[:, None] - np.arange(n)[None, :]) / widen)
    return weights / weights.sum(axis=1, keepdims=True)


_RESIZE: dict[str, Callable[[int, int], np.ndarray]] = {
    "bilinear": _bilinear,
    "bicubic": lambda length, factor: _kernel_resize(length, length * factor, "bicubic", False),
    "bicubic_torch": _bicubic_torch,
    "lanczos3": lambda length, factor: _kernel_resize(length, length * factor, "lanczos3", False),
    "lanczos5": lambda length, factor: _kernel_resize(length, length * factor, "lanczos5", False),
    "bilinear_keras2": _bilinear_keras2,
    "bicubic_keras2": lambda length, factor: _tensorflow_bicubic(length, length * factor),
}


# ---------------------------------------------------------------------------------------------
# Activations, as keras/src/activations defines them (float32)


def _erf(x: np.ndarray) -> np.ndarray:
    # Abramowitz and Stegun 7.1.26 (|error| < 1.5e-7), evaluated in float64.
    z = np.abs(x.astype(np.float64))
    t = 1.0 / (1.0 + 0.3275911 * z)
    poly = t * (
        0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429)))
    )
    return np.sign(x) * (1.0 - poly * np.exp(-z * z))


def _sigmoid(x):
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def _softplus(x):
    return np.logaddexp(x, 0.0)


def _softmax(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _log_softmax(x):
    shifted = x - x.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def _hard_sigmoid(x):
    return np.clip(x / 6.0 + 0.5, 0.0, 1.0)


def _hard_sigmoid_keras2(x):
    # Keras 1 and 2's backend hard_sigmoid (TensorFlow's and Theano's): slope 0.2
    return np.clip(0.2 * x + 0.5, 0.0, 1.0)


def _glu(x):
    a, b = np.split(x, 2, axis=-1)
    return a * _sigmoid(b)


def _sparsemax(x):
    ordered = -np.sort(-x, axis=-1)
    cumulative = np.cumsum(ordered, axis=-1)
    positions = np.arange(1, x.shape[-1] + 1, dtype=x.dtype)
    support = ordered - (cumulative - 1) / positions > 0
    size = support.sum(axis=-1, keepdims=True)
    tau = (np.where(support, cumulative, 0.0).sum(axis=-1, keepdims=True) - 1) / size
    return np.maximum(x - tau, 0.0)


SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946

ACTIVATIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "linear": lambda x: x,
    "relu": lambda x: np.maximum(x, 0.0),
    "relu6": lambda x: np.clip(x, 0.0, 6.0),
    "leaky_relu": lambda x: np.maximum(x, 0.2 * x),
    "elu": lambda x: np.where(x > 0, x, np.expm1(np.minimum(x, 0.0))),
    "selu": lambda x: SELU_SCALE * np.where(x > 0, x, SELU_ALPHA * np.expm1(np.minimum(x, 0.0))),
    "celu": lambda x: np.maximum(x, 0.0) + np.expm1(np.minimum(x, 0.0)),
    "sigmoid": _sigmoid,
    "tanh": np.tanh,
    "softmax": _softmax,
    "log_softmax": _log_softmax,
    "gelu": lambda x: 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0))),
    "silu": lambda x: x * _sigmoid(x),
    "hard_sigmoid": _hard_sigmoid,
    "hard_sigmoid_keras2": _hard_sigmoid_keras2,
    "hard_silu": lambda x: x * _hard_sigmoid(x),
    "softplus": _softplus,
    "softsign": lambda x: x / (1.0 + np.abs(x)),
    "exponential": np.exp,
    "mish": lambda x: x * np.tanh(_softplus(x)),
    "log_sigmoid": lambda x: -_softplus(-x),
    "hard_tanh": lambda x: np.clip(x, -1.0, 1.0),
    "tanh_shrink": lambda x: x - np.tanh(x),
    "soft_shrink": lambda x: np.where(x > 0.5, x - 0.5, np.where(x < -0.5, x + 0.5, 0.0)),
    "hard_shrink": lambda x: np.where(np.abs(x) > 0.5, x, 0.0),
    "squareplus": lambda x: (x + np.sqrt(x * x + 4.0)) / 2.0,
    "sparse_sigmoid": lambda x: np.clip(0.5 * (x + 1.0), 0.0, 1.0),
    "sparse_plus": lambda x: np.where(x <= -1, 0.0, np.where(x < 1, 0.25 * (x + 1) ** 2, x)),
    "glu": _glu,
    "sparsemax": _sparsemax,
}

# ---------------------------------------------------------------------------------------------
# Merges and activation layers, as keras/src/layers/merging and activations compute them


def _aligned(xs: list[np.ndarray]) -> list[np.ndarray]:
    """Keras's Merge: inputs of lower rank gain axes right after the batch axis."""
    rank = max(x.ndim for x in xs)
    out = []
    for x in xs:
        while x.ndim < rank:
            x = np.expand_dims(x, 1)
        out.append(x)
    return out


@computes(MergeSpec)
def merge(layer: Layer, weights: Arrays, xs: list[np.ndarray]) -> np.ndarray:
    xs = _aligned(xs)
    operation = expect(layer.spec, MergeSpec).operation
    result = xs[0]
    if operation == "subtract":
        return (xs[0] - xs[1]).astype(np.float32)
    combine = {
        "add": np.add,
        "average": np.add,
        "multiply": np.multiply,
        "maximum": np.maximum,
        "minimum": np.minimum,
    }[operation]
    for x in xs[1:]:
        result = combine(result, x)
    if operation == "average":
        result = result / np.float32(len(xs))
    return np.asarray(result, dtype=np.float32)


@computes(ConcatenateSpec)
def concatenate(layer: Layer, weights: Arrays, xs: list[np.ndarray]) -> np.ndarray:
    return np.concatenate(xs, axis=expect(layer.spec, ConcatenateSpec).axis)


@computes(ActivationSpec)
def activation(layer: Layer, weights: Arrays, x: np.ndarray) -> np.ndarray:
    return ACTIVATIONS[expect(layer.spec, ActivationSpec).activation](x).astype(np.float32)


@computes(ReLUSpec)
def relu(layer: Layer, weights: Arrays, x: np.ndarray) -> np.ndarray:
    """keras.activations.relu with all its arguments: above the threshold, x capped at
    max_value; at or below it, negative_slope times the distance below it."""
    c = expect(layer.spec, ReLUSpec)
    threshold = np.float32(c.threshold)
    positive = np.where(x > threshold, x, np.float32(0.0))
    if c.max_value is not None:
        positive = np.minimum(positive, np.float32(c.max_value))
    negative = np.maximum(threshold - x, np.float32(0.0))
    return (positive - np.float32(c.negative_slope) * negative).astype(np.float32)


# ---------------------------------------------------------------------------------------------
# Normalization, as keras/src/layers/normalization computes it in inference


def _statistics(x: np.ndarray, axes: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Mean and (population) variance over ``axes``, kept, in float64."""
    wide = x.astype(np.float64)
    return wide.mean(axis=axes, keepdims=True), wide.var(axis=axes, keepdims=True)


def batch_normalization(layer: Layer, weights: Arrays, x: np.ndarray) -> np.ndarray:
    """The moving statistics: (x - moving_mean) * rsqrt(moving_variance + epsilon) * gamma
    + beta, each vector along ``axis``."""
    c = expect(layer.spec, NormSpec)
    shape = [1] * x.ndim
    shape[c.axis[0]] = x.shape[c.axis[0]]
    ones = np.ones(shape, np.float32)

    def along(name: str, default: np.ndarray) -> np.ndarray:
        return weights[name].reshape(shape) if name in weights else default

    mean = weights["moving_mean"].reshape(shape)
    variance = weights["moving_variance"].reshape(shape)
    inverse = along("gamma", ones) / np.sqrt(variance + np.float32(c.epsilon))
    return ((x - mean) * inverse + along("beta", 0 * ones)).astype(np.float32)


def layer_normalization(layer: Layer, weights: Arrays, x: np.ndarray) -> np.ndarray:
    """Over the axes given; gamma and beta (shaped by the axes in sorted order, negative ones
    first) reshaped to the input's rank as Keras reshapes them. ``rms_scaling`` divides x itself
    by the standard deviation (Keras's formula), with no beta."""
    c = expect(layer.spec, NormSpec)
    axes = tuple(sorted(c.axis))
    shape = [1] * x.ndim
    for axis in axes:
        shape[axis] = x.shape[axis]
    mean, variance = _statistics(x, axes)
    centered = x if c.rms_scaling else x - mean
    y = centered / np.sqrt(variance + c.epsilon)
    if "gamma" in weights:
        y = y * weights["gamma"].reshape(shape)
    if "beta" in weights:
        y = y + weights["beta"].reshape(shape)
    return y.astype(np.float32)


def group_normalization(layer: Layer, weights: Arrays, x: np.ndarray) -> np.ndarray:
    """The channels along ``axis`` split into ``groups`` consecutive groups; each sample's group
    normalized over its channels and every other non-batch axis; gamma and beta per channel."""
    c = expect(layer.spec, NormSpec)
    axis = c.axis[0] % x.ndim
    channels = x.shape[axis]
    groups = channels if c.groups == -1 else c.groups
    grouped = x.reshape(*x.shape[:axis], groups, channels // groups, *x.shape[axis + 1 :])
    others = tuple(a for a in range(1, grouped.ndim) if a != axis)
    mean, variance = _statistics(grouped, others)
    y = ((grouped - mean) / np.sqrt(variance + c.epsilon)).reshape(x.shape)
    shape = [1] * x.ndim
    shape[axis] = channels
    if "gamma" in weights:
        y = y * weights["gamma"].reshape(shape)
    if "beta" in weights:
        y = y + weights["beta"].reshape(shape)
    return y.astype(np.float32)


def unit_normalization(layer: Layer, weights: Arrays, x: np.ndarray) -> np.ndarray:
    """x * min(1 / ||x||, 1 / epsilon), the L2 norm over the axes given."""
    c = expect(layer.spec, NormSpec)
    norm = np.sqrt(np.square(x.astype(np.float64)).sum(axis=c.axis, keepdims=True))
    with np.errstate(divide="ignore"):
        inverse = np.minimum(1.0 / norm, 1.0 / c.epsilon)
    return (x * inverse).astype(np.float32)


# Pooling, as TensorFlow and JAX compute it, and Keras 3's torch backend for 'same_torch'
# (keras/src/backend/torch/nn.py)


@computes(PoolSpec)
def pooling(layer: Layer, weights: Arrays, x: np.ndarray) -> np.ndarray:
    """Max or average over each window. 'same' pools the windows' entries inside the input (a
    max ignores the pads, an average divides by the entries it has), as tf.nn.avg_pool does.
    'same_torch' is the torch backend's: where an axis pads its two ends unequally, the input is
    padded by repeating its edge entries on every axis, and the windows of that are pooled."""
    c = expect(layer.spec, PoolSpec)
    x = _to_last(x, c.data_format).astype(np.float64)
    pads = [(0, 0)] * c.rank
    if c.padding in ("same", "same_torch"):
        pads = [
            _same_pads(n, k, s, 1)
            for n, k, s in zip(x.shape[1:-1], c.pool_size, c.strides, strict=True)
        ]
    axes = tuple(range(1, c.rank + 1))
    spread = [(0, 0), *pads, (0, 0)]
    if any(b != e for b, e in pads) and c.padding == "same_torch":
        values, counts = np.pad(x, spread, mode="edge"), None
    elif c.pool_mode == "max":
        values, counts = np.pad(x, spread, constant_values=-np.inf), None
    else:
        values = np.pad(x, spread)
        counts = np.pad(np.ones(x.shape[1:-1]), pads)
    windows = _windows(values, c.pool_size, c.strides, axes)
    window_axes = tuple(range(-c.rank, 0))
    if c.pool_mode == "max":
        y = windows.max(axis=window_axes)
    elif counts is None:
        y = windows.mean(axis=window_axes)
    else:
        inside = _windows(counts[None, ..., None], c.pool_size, c.strides, axes)
        y = windows.sum(axis=window_axes) / inside.sum(axis=window_axes)
    return _from_last(y.astype(np.float32), c.data_format)


def _windows(x: np.ndarray, size, strides, axes) -> np.ndarray:
    """Every ``size`` window of ``x`` along ``axes`` at the ``strides``; the window's own axes
    come last."""
    view = np.lib.stride_tricks.sliding_window_view(x, size, axis=axes)
    steps = [slice(None)] * x.ndim
    for axis, stride in zip(axes, strides, strict=True):
        steps[axis] = slice(None, None, stride)
    return view[tuple(steps)]


@computes(GlobalPoolSpec)
def global_pooling(layer: Layer, weights: Arrays, x: np.ndarray) -> np.ndarray:
    c = expect(layer.spec, GlobalPoolSpec)
    first = 1 if c.data_format == "channels_last" else 2
    axes = tuple(range(first, first + c.rank))
    reduce = np.max if c.pool_mode == "max" else np.mean
    return reduce(x.astype(np.float64), axis=axes, keepdims=c.keepdims).astype(np.float32)


# Core layers, activation layers, no-ops and preprocessing, as keras/src/layers/core, reshaping,
# activations and preprocessing compute them (torch backend)


@computes(DenseSpec)
def dense(layer: Layer, weights: Arrays, x: np.ndarray) -> np.ndarray:
    """matmul(x, kernel) + bias on the last axis, then the activation."""
    y = np.matmul(x, weights["kernel"])
    if "bias" in weights:
        y = y + weights["bias"]
    return ACTIVATIONS[expect(layer.spec, DenseSpec).activation](y).astype(np.float32)


@computes(FlattenSpec)
def flatten(layer: Layer, weights: Arrays, x: np.ndarray) -> np.ndarray:
    if expect(layer.spec, FlattenSpec).data_format == "channels_first" and x.ndim > 1:
        x = np.transpose(x, (0, *range(2, x.ndim), 1))
    return x.reshape(x.shape[0], -1)


@computes(ReshapeSpec)
def reshape(layer: Layer, weights: Arrays, x: np.ndarray) -> np.ndarray:
    return x.reshape(x.shape[0], *expect(layer.spec, ReshapeSpec).target_shape)


@computes(PermuteSpec)
def permute(layer: Layer, weights: Arrays, x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.transpose(x, (0, *expect(layer.spec, PermuteSpec).dims)))


@computes(PassThroughSpec)
def pass_through(layer: Layer, weights: Arrays, x: np.ndarray) -> np.ndarray:
    return x


@computes(LeakyReLUSpec)
def leaky_relu(layer: Layer, weights: Arrays, x: np.ndarray) -> np.ndarray:
    slope = np.float32(expect(layer.spec, LeakyReLUSpec).negative_slope)
    return np.where(x > 0, x, slope * x).astype(np.float32)


@computes(ELUSpec)
def elu(layer: Layer, weights: Arrays, x: np.ndarray) -> np.ndarray:
    alpha = np.float32(expect(layer.spec, ELUSpec).alpha)
    return np.where(x > 0, x, alpha * np.expm1(np.minimum(x, 0.0))).astype(np.float32)


@computes(ScaledAddSpec)
def scaled_add(layer: Layer, weights: Arrays, xs: list[np.ndarray]) -> np.ndarray:
    """Keras's CustomScaleLayer: inputs[0] + inputs[1] * scale."""
    scale = np.float32(expect(layer.spec, ScaledAddSpec).scale)
    x, residual = _aligned(xs)
    return (x + residual * scale).astype(np.float32)


@computes(LayerScaleSpec)
def layer_scale(layer: Layer, weights: Arrays, x: np.ndarray) -> np.ndarray:
    """Keras's LayerScale: x * gamma along the last axis."""
    expect(layer.spec, LayerScaleSpec)
    return (x * weights["gamma"]).astype(np.float32)


@computes(PReLUSpec)
def prelu(layer: Layer, weights: Arrays, x: np.ndarray) -> np.ndarray:
    """relu(x) - alpha * relu(-x); alpha (the input's shape without batch) broadcasts."""
    expect(layer.spec, PReLUSpec)
    alpha = weights["alpha"]
    return (np.maximum(x, 0.0) - alpha * np.maximum(-x, 0.0)).astype(np.float32)


@computes(SoftmaxSpec)
def softmax(layer: Layer, weights: Arrays, x: np.ndarray) -> np.ndarray:
    axes = tuple(a % x.ndim for a in expect(layer.spec, SoftmaxSpec).axis)
    e = np.exp(x - x.max(axis=axes, keepdims=True))
    return (e / e.sum(axis=axes, keepdims=True)).astype(np.float32)


@computes(RescalingSpec)
def rescaling(layer: Layer, weights: Arrays, x: np.ndarray) -> np.ndarray:
    c = expect(layer.spec, RescalingSpec)
    scale = np.asarray(c.scale[1], np.float32).reshape(c.scale[0])
    if scale.ndim and c.data_format == "channels_first":  # Keras: scale to (C, 1, 1)
        scale = scale.reshape(scale.shape + (1,) * (3 - scale.ndim))
    offset = np.asarray(c.offset[1], np.float32).reshape(c.offset[0])
    return (x * scale + offset).astype(np.float32)


@computes(NormalizationSpec)
def normalization(layer: Layer, weights: Arrays, x: np.ndarray) -> np.ndarray:
    """(x - mean) / max(sqrt(variance), epsilon), mean and variance shaped as Keras's build."""
    c = expect(layer.spec, NormalizationSpec)
    keep = sorted(a % x.ndim for a in c.axis)
    shape = [x.shape[d] if d in keep else 1 for d in range(x.ndim)]
    if c.mean is None or c.variance is None:  # both given, or both weights
        mean, variance = weights["mean"].reshape(shape), weights["variance"].reshape(shape)
    else:
        mean = np.asarray(c.mean[1], np.float32).reshape(c.mean[0])
        variance = np.asarray(c.variance[1], np.float32).reshape(c.variance[0])
        if mean.ndim:
            expanded = [1] * x.ndim
            for i in range(1, mean.ndim + 1):
                expanded[keep[-i]] = mean.shape[-i]
            mean, variance = mean.reshape(expanded), variance.reshape(expanded)
        mean, variance = np.broadcast_to(mean, shape), np.broadcast_to(variance, shape)
    deviation = np.maximum(np.sqrt(variance), np.float32(1e-7))
    if c.invert:
        return (mean + x * deviation).astype(np.float32)
    return ((x - mean) / deviation).astype(np.float32)


@computes(ResizingSpec)
def resizing(layer: Layer, weights: Arrays, x: np.ndarray) -> np.ndarray:
    """Keras's Resizing, or CenterCrop: the crop or pad to the target's aspect ratio that
    keras/src/backend/torch/image.py makes (as the other backends do), then a resampling matrix
    per axis: JAX's for bicubic, torch's for bilinear, nearest and ``bicubic_torch``,
    TensorFlow's for ``bicubic_keras2`` (tf.keras's bicubic)."""
    c = expect(layer.spec, ResizingSpec)
    x = _to_last(x, c.data_format)
    height, width = x.shape[1], x.shape[2]
    target = (c.height, c.width)
    if c.center_crop and height >= c.height and width >= c.width:
        top, left = (height - c.height) // 2, (width - c.width) // 2
        return _from_last(x[:, top : top + c.height, left : left + c.width], c.data_format)
    if c.crop_to_aspect_ratio:
        crop_h = max(min(height, int(float(width * c.height) / c.width)), 1)
        crop_w = max(min(width, int(float(height * c.width) / c.height)), 1)
        top, left = int(float(height - crop_h) / 2), int(float(width - crop_w) / 2)
        x = x[:, top : top + crop_h, left : left + crop_w]
    elif c.pad_to_aspect_ratio:
        pad_h = max(height, int(float(width * c.height) / c.width))
        pad_w = max(width, int(float(height * c.width) / c.height))
        rows, columns = int(float(pad_h - height) / 2), int(float(pad_w - width) / 2)
        x = np.pad(
            x, [(0, 0), (rows, rows), (columns, columns), (0, 0)], constant_values=c.fill_value
        )
    for axis, size in zip((1, 2), target, strict=True):
        if c.interpolation == "bicubic_keras2":
            matrix = _tensorflow_bicubic(x.shape[axis], size)
        elif c.interpolation in ("bicubic", "lanczos3", "lanczos5"):
            matrix = _kernel_resize(x.shape[axis], size, c.interpolation, c.antialias)
        else:
            kind = "bicubic" if c.interpolation == "bicubic_torch" else c.interpolation
            matrix = _torch_resize_matrix(x.shape[axis], size, kind, c.antialias)
        x = np.moveaxis(np.tensordot(matrix, x, axes=([1], [axis])), 0, axis)
    return _from_last(x.astype(np.float32), c.data_format)


def _torch_resize_matrix(n: int, m: int, interpolation: str, antialias: bool) -> np.ndarray:
    """torch.nn.functional.interpolate from n to m samples as an (m, n) matrix: align_corners
    False; nearest is "nearest-exact"; antialias (bilinear, bicubic) is torch's separable
    filter with its support widened by the downscale and bicubic's a = -0.5."""
    matrix = np.zeros((m, n), dtype=np.float64)
    scale = n / m
    if interpolation == "nearest":
        for i in range(m):
            matrix[i, min((2 * i + 1) * n // (2 * m), n - 1)] = 1.0
        return matrix
    if antialias:
        size = 2 if interpolation == "bilinear" else 4
        support = size / 2 * scale if scale >= 1 else size / 2
        inverse = 1 / scale if scale >= 1 else 1.0
        for i in range(m):
            centre = scale * (i + 0.5)
            low = max(int(centre - support + 0.5), 0)
            high = min(int(centre + support + 0.5), n)
            taps = [
                (j, _aa_filter((j - centre + 0.5) * inverse, interpolation))
                for j in range(low, high)
            ]
            total = sum(w for _, w in taps)
            for j, w in taps:
                matrix[i, j] += w / total if total else w
        return matrix
    for i in range(m):
        source = scale * (i + 0.5) - 0.5
        if interpolation == "bilinear":
            source = max(source, 0.0)
            low = min(int(math.floor(source)), n - 1)
            weight = min(max(source - low, 0.0), 1.0)
            matrix[i, low] += 1.0 - weight
            matrix[i, low + 1 if low < n - 1 else low] += weight
        else:
            base = int(math.floor(source))
            t = source - base
            for offset, w in zip((-1, 0, 1, 2), _keys_weights(t, -0.75), strict=True):
                matrix[i, min(max(base + offset, 0), n - 1)] += w
    return matrix


def _keys_weights(t: float, a: float) -> tuple[float, float, float, float]:
    def near(d: float) -> float:
        return ((a + 2) * d - (a + 3)) * d * d + 1

    def far(d: float) -> float:
        return ((a * d - 5 * a) * d + 8 * a) * d - 4 * a

    return far(t + 1), near(t), near(1 - t), far(2 - t)


def _aa_filter(d: float, interpolation: str) -> float:
    d = abs(d)
    if interpolation == "bilinear":
        return max(0.0, 1.0 - d)
    a = -0.5
    if d < 1:
        return ((a + 2) * d - (a + 3)) * d * d + 1
    if d < 2:
        return (((d - 5) * d + 8) * d - 4) * a
    return 0.0


@computes(RMSNormSpec)
def rms_normalization(layer: Layer, weights: Arrays, x: np.ndarray) -> np.ndarray:
    """``x * rsqrt(mean(x ** 2) + epsilon) * scale`` over the axes, the mean in float64;
    ``scale`` is laid along the axes in Keras's sorted order."""
    c = expect(layer.spec, RMSNormSpec)
    axes = tuple(sorted(a % x.ndim for a in c.axis))
    mean_square = np.mean(np.square(x.astype(np.float64)), axis=axes, keepdims=True)
    shape = [1] * x.ndim
    for axis in axes:
        shape[axis] = x.shape[axis]
    y = x / np.sqrt(mean_square + c.epsilon) * weights["scale"].reshape(shape)
    return y.astype(np.float32)


_CONV_KINDS = {
    "conv": conv,
    "transpose": conv_transpose,
    "depthwise": depthwise,
    "separable": separable,
}


@computes(ConvSpec)
def convolution(layer: Layer, weights: Arrays, x: np.ndarray) -> np.ndarray:
    return _CONV_KINDS[expect(layer.spec, ConvSpec).kind](layer, weights, x)


_NORM_KINDS = {
    "batch": batch_normalization,
    "layer": layer_normalization,
    "group": group_normalization,
    "unit": unit_normalization,
}


@computes(NormSpec)
def norm(layer: Layer, weights: Arrays, x: np.ndarray) -> np.ndarray:
    return _NORM_KINDS[expect(layer.spec, NormSpec).kind](layer, weights, x)

"""Lowering of the normalization layers, in whatever physical order their input has.

Keras's ``axis`` is logical; each rule maps it through the value's layout, so no Transpose is
needed where the op does not ask for one:

* **BatchNormalization** (inference: moving statistics) is one ``BatchNormalization`` op where
  the normalized axis is physical axis 1 (after a convolution, always), else a ``Mul`` and an
  ``Add`` by per-channel constants along that axis (onnxruntime runs the op as fast or faster
  where it applies: 2x on 256 x 14 x 14). After a linear convolution it folds into the
  convolution's weights (``convc.lower.rewrites``).
* **LayerNormalization** is ONNX's ``LayerNormalization`` (opset 17+) over the trailing axes; the
  input is transposed to put the normalized axes last if they are not (a Transpose pair and the
  op run twice as fast in onnxruntime as the composite in place). Before opset 17, and for
  Keras's ``rms_scaling`` (which divides by the standard deviation without centering), a
  composite of reductions in the current layout.
* **GroupNormalization** is a composite on a grouped view (Reshape) of the tensor with its
  axis at physical axis 1 (channels first, as a convolution leaves it), so that every reduction
  is over the trailing axes: onnxruntime runs them fastest (a Transpose pair and the composite
  run as fast as the composite on channels-last data), and OpenCV reduces only those correctly.
  ONNX's ``GroupNormalization`` (opset 21 for a scale per channel; opset 18's took one per
  group) runs only 10% faster in onnxruntime, and ONNX's shape inference gives its output no
  shape, which convc requires of every value.
* **UnitNormalization** is ``ReduceL2``, a floor at Keras's epsilon, and ``Div``.

The composite computes ``(x - mean) / sqrt(var + eps)`` as ``d * sqrt(n) / sqrt(sum(d^2) + n *
eps)`` with ``d = x - mean`` over ``n`` elements, ``sqrt(n)`` folded into gamma: one node less
than dividing the sum of squares by ``n``, the same numbers to float32 rounding.
"""

from __future__ import annotations

import math

import numpy as np

from convc.lower.emitter import Emitter, Value, known
from convc.lower.registry import Weights, lowers
from convc.model import Node, Shape
from convc.specs import NormSpec, RMSNormSpec, expect


def lower_batch_normalization(em: Emitter, layer: Node, x: Value, weights: Weights) -> Value:
    c = expect(layer.spec, NormSpec)
    axis = c.axis[0] % x.rank
    channels = known(layer.input_shape[axis])
    gamma = weights.get("gamma", np.ones(channels, np.float32))
    beta = weights.get("beta", np.zeros(channels, np.float32))
    mean, variance = weights["moving_mean"], weights["moving_variance"]
    physical = x.perm.index(axis)
    if physical == 1:
        inputs = [
            x.name,
            em.weight("gamma", gamma),
            em.weight("beta", beta),
            em.weight("moving_mean", mean),
            em.weight("moving_variance", variance),
        ]
        out = em.op("BatchNormalization", inputs, "batch_norm", epsilon=c.epsilon)
        return Value(out, x.perm, layer.output_shape)
    scale, shift = batch_norm_affine(gamma, beta, mean, variance, c.epsilon)
    shape = [channels] + [1] * (x.rank - 1 - physical)
    scale, shift = (a.astype(np.float32).reshape(shape) for a in (scale, shift))
    out = em.op("Mul", [x.name, em.weight("scale", scale)], "scale")
    out = em.op("Add", [out, em.weight("shift", shift)], "shift")
    return Value(out, x.perm, layer.output_shape)


def batch_norm_affine(gamma, beta, mean, variance, epsilon: float) -> tuple[np.ndarray, ...]:
    """Inference batch normalization as ``x * scale + shift``: Keras's
    ``(x - mean) * (rsqrt(variance + epsilon) * gamma) + beta``, computed in float64."""
    scale = gamma.astype(np.float64) / np.sqrt(variance.astype(np.float64) + np.float32(epsilon))
    shift = beta.astype(np.float64) - mean.astype(np.float64) * scale
    return scale, shift


def lower_layer_normalization(em: Emitter, layer: Node, x: Value, weights: Weights) -> Value:
    c = expect(layer.spec, NormSpec)
    rank = x.rank
    axes = sorted(a % rank for a in c.axis)
    gamma = _keras_broadcast(weights.get("gamma"), c.axis, layer.input_shape)
    beta = _keras_broadcast(weights.get("beta"), c.axis, layer.input_shape)
    if not c.rms_scaling and em.has("LayerNormalization"):
        x = em.in_layout(x, _normalized_last(x.perm, axes))
        first = rank - len(axes)
        trailing = [known(x.shape[a]) for a in x.perm[first:]]
        scale = np.ones(trailing, np.float32) if gamma is None else _physical(gamma, x.perm)
        inputs = [x.name, em.weight("gamma", scale.reshape(trailing))]
        if beta is not None:
            inputs.append(em.weight("beta", _physical(beta, x.perm).reshape(trailing)))
        out = em.op("LayerNormalization", inputs, "layer_norm", axis=first, epsilon=c.epsilon)
        return Value(out, x.perm, layer.output_shape)
    x = _reducible(em, x, axes)
    physical_axes = sorted(x.perm.index(a) for a in axes)
    count = math.prod(known(layer.input_shape[a]) for a in axes)
    out = _standardize(em, x.name, physical_axes, count, c.epsilon, centered=not c.rms_scaling)
    out = _scale_and_shift(
        em,
        out,
        count,
        None if gamma is None else _physical(gamma, x.perm),
        None if beta is None else _physical(beta, x.perm),
    )
    return Value(out, x.perm, layer.output_shape)


def lower_group_normalization(em: Emitter, layer: Node, x: Value, weights: Weights) -> Value:
    c = expect(layer.spec, NormSpec)
    rank = x.rank
    axis = c.axis[0] % rank
    channels = known(layer.input_shape[axis])
    groups = channels if c.groups == -1 else c.groups
    gamma, beta = weights.get("gamma"), weights.get("beta")
    x = em.in_layout(x, (0, axis, *(a for a in x.perm if a not in (0, axis))))
    dims = x.physical_shape()
    grouped = em.reshape(x.name, [0, groups, channels // groups, *dims[2:]], "group")
    count = math.prod(dims[1:]) // groups
    out = _standardize(em, grouped, list(range(2, rank + 1)), count, c.epsilon, centered=True)
    out = em.reshape(out, [0, *dims[1:]], "ungroup")
    shape = [channels] + [1] * (rank - 2)
    out = _scale_and_shift(
        em,
        out,
        count,
        None if gamma is None else gamma.reshape(shape),
        None if beta is None else beta.reshape(shape),
    )
    return Value(out, x.perm, layer.output_shape)


def lower_unit_normalization(em: Emitter, layer: Node, x: Value, weights: Weights) -> Value:
    """Keras's ``x * min(rsqrt(sum(x^2)), 1 / epsilon)`` as ``x / max(norm, epsilon)``."""
    c = expect(layer.spec, NormSpec)
    x = _reducible(em, x, [a % x.rank for a in c.axis])
    axes = sorted(x.physical_axis(a) for a in c.axis)
    norm = em.reduce("ReduceL2", x.name, axes, "norm", keepdims=True)
    norm = em.op("Max", [norm, em.scalar(c.epsilon)], "norm_floor")
    return Value(em.op("Div", [x.name, norm], "normalize"), x.perm, layer.output_shape)


# ---------------------------------------------------------------------------------------------


def _reducible(em: Emitter, x: Value, axes: list[int]) -> Value:
    """``x`` in an order in which the target reduces over logical ``axes`` correctly."""
    physical = sorted(x.perm.index(a) for a in axes)
    if len(axes) < 3 or physical == list(range(x.rank - len(axes), x.rank)):
        return x
    if em.target.reduce_inner_axes:
        return x
    em.workaround("reduced axes moved last (a reduction over three inner axes is mishandled)")
    return em.in_layout(x, _normalized_last(x.perm, axes))


def _standardize(
    em: Emitter, x: str, axes: list[int], count: int, epsilon: float, *, centered: bool
) -> str:
    """``(x - mean) / sqrt(var + eps) / sqrt(count)`` over physical ``axes`` (``x`` itself over
    the same denominator when not ``centered``: Keras's ``rms_scaling``)."""
    mean = em.reduce("ReduceMean", x, axes, "mean", keepdims=True)
    centered_x = em.op("Sub", [x, mean], "center")
    squares = em.reduce("ReduceSumSquare", centered_x, axes, "sum_squares", keepdims=True)
    shifted = em.op("Add", [squares, em.scalar(count * epsilon)], "variance")
    deviation = em.op("Sqrt", [shifted], "deviation")
    return em.op("Div", [centered_x if centered else x, deviation], "normalize")


def _scale_and_shift(
    em: Emitter, x: str, count: int, gamma: np.ndarray | None, beta: np.ndarray | None
) -> str:
    """``x * sqrt(count) * gamma + beta``, constants in the physical layout."""
    root = math.sqrt(count)
    if gamma is None:
        factor = em.scalar(root)
    else:
        factor = em.weight("gamma", _trim((gamma.astype(np.float64) * root).astype(np.float32)))
    out = em.op("Mul", [x, factor], "scale")
    if beta is not None:
        out = em.op("Add", [out, em.weight("beta", _trim(beta))], "shift")
    return out


def _keras_broadcast(
    array: np.ndarray | None, axis: tuple[int, ...], input_shape: Shape
) -> np.ndarray | None:
    """LayerNormalization's gamma or beta as Keras broadcasts it: shaped by the axes in sorted
    order, then reshaped (not transposed) to the input's rank with the sizes at those axes. For
    axes such as [1, -1] (sorted: -1, 1) this reinterprets the weights' order, as Keras does."""
    if array is None:
        return None
    shape = [1] * len(input_shape)
    for dim in sorted(axis):
        shape[dim] = known(input_shape[dim])
    return array.reshape(shape)


def _physical(array: np.ndarray, perm: tuple[int, ...]) -> np.ndarray:
    """A logical-rank constant in the physical order ``perm``."""
    return np.ascontiguousarray(np.transpose(array, perm))


def _trim(array: np.ndarray) -> np.ndarray:
    """A full-rank constant without its leading unit axes (it broadcasts the same)."""
    while array.ndim > 1 and array.shape[0] == 1:
        array = array[0]
    return array


def _normalized_last(perm: tuple[int, ...], axes: list[int]) -> tuple[int, ...]:
    """``perm`` with the normalized axes moved last, each group keeping its order: ``perm``
    itself when they are last already."""
    return tuple(a for a in perm if a not in axes) + tuple(a for a in perm if a in axes)


_KINDS = {
    "batch": lower_batch_normalization,
    "layer": lower_layer_normalization,
    "group": lower_group_normalization,
    "unit": lower_unit_normalization,
}


@lowers(NormSpec, any_layout=True)
def lower_norm(em: Emitter, layer: Node, x: Value, weights: Weights) -> Value:
    return _KINDS[expect(layer.spec, NormSpec).kind](em, layer, x, weights)


@lowers(RMSNormSpec, any_layout=True)
def lower_rms_normalization(em: Emitter, layer: Node, x: Value, weights: Weights) -> Value:
    """``x / sqrt(sum(x ** 2) + n * epsilon) * (sqrt(n) * scale)`` over the n elements of the
    normalized axes: the mean's division folded into the constants."""
    c = expect(layer.spec, RMSNormSpec)
    axes = sorted(a % x.rank for a in c.axis)
    x = _reducible(em, x, axes)
    count = math.prod(known(layer.input_shape[a]) for a in axes)
    physical_axes = sorted(x.perm.index(a) for a in axes)
    squares = em.reduce("ReduceSumSquare", x.name, physical_axes, "sum_squares", keepdims=True)
    shifted = em.op("Add", [squares, em.scalar(count * c.epsilon)], "mean_square")
    root = em.op("Sqrt", [shifted], "root")
    out = em.op("Div", [x.name, root], "normalize")
    scale = _keras_broadcast(weights["scale"], c.axis, layer.input_shape)
    assert scale is not None
    out = _scale_and_shift(em, out, count, _physical(scale, x.perm), None)
    return Value(out, x.perm, layer.output_shape)

"""Keras activations as ONNX nodes.

Elementwise ones keep any layout. softmax, log_softmax, glu and sparsemax work along Keras's last
axis, which the layout tracker maps to its physical position. Constants that differ from ONNX's
defaults are spelled out (leaky_relu's 0.2, hard_sigmoid's 1/6; hard_sigmoid_keras2, Keras 2's,
is ONNX's HardSigmoid with its default slope 0.2).
"""

from __future__ import annotations

import numpy as np

from convc.lower.emitter import Emitter, Value, known


def emit_activation(em: Emitter, activation: str, x: Value) -> Value:
    if activation == "linear":
        return x
    if activation in ("softmax", "log_softmax"):
        x = last_physically(em, x, -1)
    if activation in _AXIS_RULES:
        return _AXIS_RULES[activation](em, x, x.physical_axis(-1))
    return Value(_ELEMENTWISE[activation](em, x.name), x.perm, x.shape)


def last_physically(em: Emitter, x: Value, axis: int) -> Value:
    """``x`` stored with logical ``axis`` last, for a Softmax along it: onnxruntime normalizes
    along any other axis by transposing there and back inside its kernel (a quarter of
    wavenet_gated1d's time, its channels-first softmax head), where the Transpose this adds
    usually replaces the one the graph's channels_last output needs anyway."""
    axis %= x.rank
    if x.perm[-1] == axis:
        return x
    return em.in_layout(x, (*[a for a in x.perm if a != axis], axis))


def _unary(op: str, **attrs):
    return lambda em, x: em.op(op, [x], _name(op), **attrs)


def _name(op: str) -> str:
    return {
        "HardSigmoid": "hard_sigmoid",
        "LeakyRelu": "leaky_relu",
        "LogSoftmax": "log_softmax",
    }.get(op, op.lower())


def _silu(em: Emitter, x: str) -> str:
    return em.op("Mul", [x, em.op("Sigmoid", [x], "silu_gate")], "silu")


def _log_sigmoid(em: Emitter, x: str) -> str:
    negated = em.op("Neg", [x], "log_sigmoid_neg")
    return em.op("Neg", [em.op("Softplus", [negated], "log_sigmoid_softplus")], "log_sigmoid")


def _tanh_shrink(em: Emitter, x: str) -> str:
    return em.op("Sub", [x, em.op("Tanh", [x], "tanh_shrink_tanh")], "tanh_shrink")


def _squareplus(em: Emitter, x: str) -> str:
    # (x + sqrt(x^2 + 4)) / 2, Keras's default b=4
    square = em.op("Mul", [x, x], "squareplus_square")
    root = em.op(
        "Sqrt", [em.op("Add", [square, em.scalar(4.0)], "squareplus_add")], "squareplus_sqrt"
    )
    return em.op("Mul", [em.op("Add", [x, root], "squareplus_sum"), em.scalar(0.5)], "squareplus")


def _sparse_plus(em: Emitter, x: str) -> str:
    # 0 for x <= -1, (x + 1)^2 / 4 in between, x for x >= 1, written as
    # q(clip(x, -1, 1)) + relu(x - 1): both pieces agree at the seams.
    clipped = em.op(
        "Add", [em.clip(x, -1.0, 1.0, "sparse_plus_clip"), em.scalar(1.0)], "sparse_plus_shift"
    )
    quarter = em.op(
        "Mul",
        [em.op("Mul", [clipped, clipped], "sparse_plus_square"), em.scalar(0.25)],
        "sparse_plus_quad",
    )
    above = em.op(
        "Relu", [em.op("Sub", [x, em.scalar(1.0)], "sparse_plus_excess")], "sparse_plus_linear"
    )
    return em.op("Add", [quarter, above], "sparse_plus")


_ELEMENTWISE = {
    "relu": _unary("Relu"),
    "relu6": lambda em, x: em.clip(x, 0.0, 6.0, "relu6"),
    "leaky_relu": _unary("LeakyRelu", alpha=0.2),
    "elu": _unary("Elu", alpha=1.0),
    "selu": _unary("Selu"),
    "celu": _unary("Celu", alpha=1.0),
    "sigmoid": _unary("Sigmoid"),
    "tanh": _unary("Tanh"),
    "gelu": lambda em, x: em.gelu(x),
    "silu": _silu,
    "hard_sigmoid": _unary("HardSigmoid", alpha=1.0 / 6.0, beta=0.5),
    "hard_sigmoid_keras2": _unary("HardSigmoid", alpha=0.2, beta=0.5),  # ONNX's defaults
    "hard_silu": lambda em, x: em.hard_swish(x),
    "softplus": _unary("Softplus"),
    "softsign": _unary("Softsign"),
    "exponential": _unary("Exp"),
    "mish": lambda em, x: em.mish(x),
    "log_sigmoid": _log_sigmoid,
    "hard_tanh": lambda em, x: em.clip(x, -1.0, 1.0, "hard_tanh"),
    "tanh_shrink": _tanh_shrink,
    "soft_shrink": lambda em, x: em.op("Shrink", [x], "soft_shrink", lambd=0.5, bias=0.5),
    "hard_shrink": lambda em, x: em.op("Shrink", [x], "hard_shrink", lambd=0.5, bias=0.0),
    "squareplus": _squareplus,
    "sparse_sigmoid": _unary("HardSigmoid", alpha=0.5, beta=0.5),  # clip((x + 1) / 2, 0, 1)
    "sparse_plus": _sparse_plus,
}


def _softmax(em: Emitter, x: Value, axis: int) -> Value:
    return Value(em.op("Softmax", [x.name], "softmax", axis=axis), x.perm, x.shape)


def _log_softmax(em: Emitter, x: Value, axis: int) -> Value:
    return Value(em.op("LogSoftmax", [x.name], "log_softmax", axis=axis), x.perm, x.shape)


def _glu(em: Emitter, x: Value, axis: int) -> Value:
    half = known(x.shape[-1]) // 2
    first = em.slice(x.name, [0], [half], [axis], "glu_a")
    second = em.slice(x.name, [half], [2 * half], [axis], "glu_b")
    gated = em.op("Mul", [first, em.op("Sigmoid", [second], "glu_gate")], "glu")
    return Value(gated, x.perm, (*x.shape[:-1], half))


def _sparsemax(em: Emitter, x: Value, axis: int) -> Value:
    # Keras's sparsemax, the same on every backend: sort descending, take the support
    # z_(j) - (cumsum_j - 1) / j > 0, then tau = (sum of cumsum over the support - 1) / k.
    # (The published sparsemax sums z over the support instead; Keras's differs, and we follow it.)
    n = known(x.shape[-1])
    index_shape = [1] * x.rank
    index_shape[axis] = n
    positions = em.constant(np.arange(1, n + 1, dtype=np.float32).reshape(index_shape), np.float32)
    ordered = em.node(
        "TopK",
        [x.name, em.constant([n])],
        "sparsemax_sort",
        outputs=2,
        axis=axis,
        largest=1,
        sorted=1,
    )[0]
    cumulative = em.op("CumSum", [ordered, em.constant(axis)], "sparsemax_cumsum")
    excess = em.op(
        "Div",
        [em.op("Sub", [cumulative, em.scalar(1.0)], "sparsemax_excess"), positions],
        "sparsemax_mean",
    )
    in_support = em.op(
        "Greater",
        [em.op("Sub", [ordered, excess], "sparsemax_margin"), em.scalar(0.0)],
        "sparsemax_in",
    )
    support = em.op("Cast", [in_support], "sparsemax_mask", to=1)
    size = em.reduce_sum(support, axis, "sparsemax_k")
    kept = em.reduce_sum(
        em.op("Mul", [cumulative, support], "sparsemax_kept"), axis, "sparsemax_sum"
    )
    tau = em.op(
        "Div", [em.op("Sub", [kept, em.scalar(1.0)], "sparsemax_shift"), size], "sparsemax_tau"
    )
    out = em.op("Relu", [em.op("Sub", [x.name, tau], "sparsemax_centered")], "sparsemax")
    return Value(out, x.perm, x.shape)


_AXIS_RULES = {
    "softmax": _softmax,
    "log_softmax": _log_softmax,
    "glu": _glu,
    "sparsemax": _sparsemax,
}

"""Keras 1 model files (#24): configs and weights shaped exactly as Keras 1.2.2 wrote them must
build and compute what Keras 1 computed.

Nothing here can run Keras 1, so every case is checked against a NumPy computation written from
Keras 1.2.2's own definitions, in Keras 1's layouts (``dim_ordering="th"`` kernels
``(filters, channels, rows, cols)``, Theano's true convolution with flipped kernels,
TensorFlow's 'same' pads, ``Deconvolution2D`` as TensorFlow's ``conv2d_transpose`` to the
output shape it names, BatchNormalization's ``running_std`` as the variance it is since Keras
1.0.7). Where Keras 3 can build the same model its output is compared too. The fixtures are
written by h5py as Keras 1.2.2's ``save_model`` wrote them: ``keras_version`` and
``model_config`` on the root, ``model_weights`` with ``layer_names``, a group per layer with
``weight_names`` such as ``convolution2d_1_W`` (``convolution2d_1_W:0`` on TensorFlow) and no
``backend`` attribute (Keras 1 wrote none; a case that says Theano sets one, as the docs tell a
user to).
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
import onnx
import pytest

from convc.cli import main
from convc.compiler import compile_model
from convc.diagnostics import ConvcError
from convc.importer import import_file
from convc.importer.generations import KERAS1_CLASSES, Generation, translate
from convc.reference import run_reference

from oracle import onnx_outputs

ATOL = 1e-4
RTOL = 1e-4

# =============================================================================================
# Keras 1.2.2's configs, as its get_config() wrote them

_NO_REGULARIZERS = {
    "W_regularizer": None,
    "b_regularizer": None,
    "activity_regularizer": None,
    "W_constraint": None,
    "b_constraint": None,
}


def _layer(class_name: str, name: str, config: dict, first: tuple | None = None) -> dict:
    """A Sequential entry: ``{"class_name", "config"}``; the first layer also says the input."""
    config = {"name": name, "trainable": True, **config}
    if first is not None:
        config["batch_input_shape"] = [None, *first]
        config["input_dtype"] = "float32"
    return {"class_name": class_name, "config": config}


def conv2d(name, nb_filter, nb_row, nb_col, *, ordering, border_mode="valid",
           subsample=(1, 1), activation="linear", first=None, atrous=None):  # fmt: skip
    config = {
        "nb_filter": nb_filter,
        "nb_row": nb_row,
        "nb_col": nb_col,
        "init": "glorot_uniform",
        "activation": activation,
        "border_mode": border_mode,
        "subsample": list(subsample),
        "dim_ordering": ordering,
        **_NO_REGULARIZERS,
        "bias": True,
    }
    class_name = "Convolution2D"
    if atrous is not None:
        config["atrous_rate"] = list(atrous)
        class_name = "AtrousConvolution2D"
    return _layer(class_name, name, config, first)


def deconv2d(name, nb_filter, nb_row, nb_col, output_shape, *, ordering, border_mode="valid",
             subsample=(1, 1), first=None):  # fmt: skip
    layer = conv2d(
        name, nb_filter, nb_row, nb_col, ordering=ordering, border_mode=border_mode,
        subsample=subsample, first=first,
    )  # fmt: skip
    layer["class_name"] = "Deconvolution2D"
    layer["config"]["output_shape"] = [None, *output_shape]
    return layer


def separable2d(name, nb_filter, nb_row, nb_col, *, ordering, depth_multiplier, border_mode,
                subsample=(1, 1), first=None):  # fmt: skip
    config = {
        "nb_filter": nb_filter,
        "nb_row": nb_row,
        "nb_col": nb_col,
        "init": "glorot_uniform",
        "activation": "linear",
        "border_mode": border_mode,
        "subsample": list(subsample),
        "depth_multiplier": depth_multiplier,
        "dim_ordering": ordering,
        "depthwise_regularizer": None,
        "pointwise_regularizer": None,
        "b_regularizer": None,
        "activity_regularizer": None,
        "depthwise_constraint": None,
        "pointwise_constraint": None,
        "b_constraint": None,
        "bias": True,
    }
    return _layer("SeparableConvolution2D", name, config, first)


def conv3d(name, nb_filter, kernel, *, ordering, border_mode="valid", first=None):
    config = {
        "nb_filter": nb_filter,
        "kernel_dim1": kernel[0],
        "kernel_dim2": kernel[1],
        "kernel_dim3": kernel[2],
        "dim_ordering": ordering,
        "init": "glorot_uniform",
        "activation": "linear",
        "border_mode": border_mode,
        "subsample": [1, 1, 1],
        **_NO_REGULARIZERS,
        "bias": True,
    }
    return _layer("Convolution3D", name, config, first)


def conv1d(name, nb_filter, filter_length, *, border_mode="valid", subsample_length=1,
           atrous=None, input_shape=None):  # fmt: skip
    config = {
        "nb_filter": nb_filter,
        "filter_length": filter_length,
        "init": "uniform",
        "activation": "linear",
        "border_mode": border_mode,
        "subsample_length": subsample_length,
        **_NO_REGULARIZERS,
        "bias": True,
        "input_dim": input_shape[1] if input_shape else None,
        "input_length": input_shape[0] if input_shape else None,
    }
    class_name = "Convolution1D"
    if atrous is not None:
        config["atrous_rate"] = atrous
        class_name = "AtrousConvolution1D"
    return _layer(class_name, name, config, input_shape)


def dense(name, output_dim, activation="linear", first=None):
    config = {
        "output_dim": output_dim,
        "init": "glorot_uniform",
        "activation": activation,
        **_NO_REGULARIZERS,
        "bias": True,
        "input_dim": first[0] if first else None,
    }
    return _layer("Dense", name, config, first)


def pool2d(name, kind, pool_size, strides, border_mode, ordering):
    config = {
        "pool_size": list(pool_size),
        "border_mode": border_mode,
        "strides": list(strides),
        "dim_ordering": ordering,
    }
    return _layer(f"{kind}Pooling{len(pool_size)}D", name, config)


def pool1d(name, kind, pool_length, stride, border_mode):
    config = {"stride": stride, "pool_length": pool_length, "border_mode": border_mode}
    return _layer(f"{kind}Pooling1D", name, config)


def batchnorm(name, axis, epsilon=1e-3, mode=0):
    config = {
        "epsilon": epsilon,
        "mode": mode,
        "axis": axis,
        "gamma_regularizer": None,
        "beta_regularizer": None,
        "momentum": 0.99,
    }
    return _layer("BatchNormalization", name, config)


def simple(class_name, name, **config):
    return _layer(class_name, name, config)


def merge(name, mode, concat_axis=-1, layers=None, mode_type="raw"):
    config = {
        "name": name,
        "mode": mode,
        "mode_type": mode_type,
        "concat_axis": concat_axis,
        "dot_axes": -1,
        "output_shape": None,
        "output_shape_type": "raw",
        "output_mask": None,
        "output_mask_type": "raw",
        "arguments": {},
    }
    if layers is not None:
        config["layers"] = layers
    return {"class_name": "Merge", "config": config}


# =============================================================================================
# Keras 1's computations, in NumPy, in Keras 1's layouts


def correlate(x, w, strides, dilation, pads):
    """Channels-first correlation: ``x`` (N, C, *L), ``w`` (F, C, *k), explicit pads."""
    rank = x.ndim - 2
    x = np.pad(x, [(0, 0), (0, 0), *pads])
    kernel = w.shape[2:]
    out = [
        (x.shape[2 + i] - dilation[i] * (kernel[i] - 1) - 1) // strides[i] + 1 for i in range(rank)
    ]
    y = np.zeros((x.shape[0], w.shape[0], *out), np.float64)
    for tap in itertools.product(*(range(k) for k in kernel)):
        window = tuple(
            slice(t * d, t * d + s * (o - 1) + 1, s)
            for t, d, s, o in zip(tap, dilation, strides, out, strict=True)
        )
        patch = x[(slice(None), slice(None), *window)]
        y += np.einsum("nc...,fc->nf...", patch, w[(slice(None), slice(None), *tap)])
    return y


def tf_same(length, kernel, stride, dilation=1):
    """TensorFlow's SAME pads: the odd one at the end."""
    effective = dilation * (kernel - 1) + 1
    total = max(0, (-(-length // stride) - 1) * stride + effective - length)
    return total // 2, total - total // 2


def to_first(x):
    return np.moveaxis(x, -1, 1)


def to_last(x):
    return np.moveaxis(x, 1, -1)


def k1_conv(x, W, b, *, ordering, border_mode="valid", subsample=None, dilation=None,
            theano=False):  # fmt: skip
    """Convolution2D/3D (and 1D, given its W[:, 0]) as Keras 1 computed it: TensorFlow
    correlates; Theano convolves, which is a correlation with the kernel flipped."""
    rank = x.ndim - 2
    subsample = subsample or (1,) * rank
    dilation = dilation or (1,) * rank
    if ordering == "tf":
        x = to_first(x)
        W = W.transpose(rank + 1, rank, *range(rank))
    if theano:
        W = W[(slice(None), slice(None), *(slice(None, None, -1),) * rank)]
    pads = [
        (0, 0) if border_mode == "valid" else tf_same(x.shape[2 + i], W.shape[2 + i],
                                                      subsample[i], dilation[i])
        for i in range(rank)
    ]  # fmt: skip
    y = correlate(x, W, subsample, dilation, pads) + b.reshape(1, -1, *(1,) * rank)
    return to_last(y) if ordering == "tf" else y


def k1_deconv(x, W, b, output_shape, *, ordering, border_mode, subsample):
    """Deconvolution2D on TensorFlow: conv2d_transpose to ``output_shape`` (the gradient of a
    correlation of an input that long), W as Convolution2D's (th: (out, in, rows, cols))."""
    if ordering == "tf":
        x = to_first(x)
        W = W.transpose(3, 2, 0, 1)
        spatial = output_shape[0:2]
    else:
        spatial = output_shape[1:3]
    n, _, h, w = x.shape
    out_channels, _, kh, kw = W.shape
    full = np.zeros((n, out_channels, (h - 1) * subsample[0] + kh, (w - 1) * subsample[1] + kw))
    for i, j in itertools.product(range(h), range(w)):
        rows = slice(i * subsample[0], i * subsample[0] + kh)
        cols = slice(j * subsample[1], j * subsample[1] + kw)
        full[:, :, rows, cols] += np.einsum("nc,fcab->nfab", x[:, :, i, j], W)
    begins = []
    for length, inner, k, s in zip(spatial, (h, w), (kh, kw), subsample, strict=True):
        total = max(0, (inner - 1) * s + k - length) if border_mode == "same" else 0
        begins.append(total // 2)
    y = np.zeros((n, out_channels, *spatial))
    for i, j in itertools.product(range(spatial[0]), range(spatial[1])):
        a, c = i + begins[0], j + begins[1]
        if a < full.shape[2] and c < full.shape[3]:
            y[:, :, i, j] = full[:, :, a, c]
    y += b.reshape(1, -1, 1, 1)
    return to_last(y) if ordering == "tf" else y


def k1_separable(x, depthwise, pointwise, b, *, ordering, border_mode, subsample):
    """SeparableConvolution2D (TensorFlow only): tf.nn.separable_conv2d, depthwise output
    channel ``c * multiplier + m``."""
    if ordering == "th":
        depthwise = depthwise.transpose(2, 3, 1, 0)
        pointwise = pointwise.transpose(2, 3, 1, 0)
        x = to_last(x)
    xc = to_first(x)
    kh, kw, channels, multiplier = depthwise.shape
    pads = [
        (0, 0) if border_mode == "valid" else tf_same(xc.shape[2 + i], k, subsample[i])
        for i, k in enumerate((kh, kw))
    ]
    parts = [
        correlate(xc[:, c : c + 1], depthwise[:, :, c, :].transpose(2, 0, 1)[:, None],
                  subsample, (1, 1), pads)
        for c in range(channels)
    ]  # fmt: skip
    depth = np.concatenate(parts, axis=1)
    y = np.einsum("nchw,cf->nfhw", depth, pointwise[0, 0]) + b.reshape(1, -1, 1, 1)
    return y if ordering == "th" else to_last(y)


def k1_pool(x, pool_size, strides, border_mode, kind, ordering):
    """Max and average pooling as TensorFlow computes them: 'same' pads are out of every window
    (a mean counts only the entries inside)."""
    if ordering == "tf":
        x = to_first(x)
    rank = x.ndim - 2
    pads = [
        (0, 0) if border_mode == "valid" else tf_same(x.shape[2 + i], pool_size[i], strides[i])
        for i in range(rank)
    ]
    padded = np.pad(x.astype(np.float64), [(0, 0), (0, 0), *pads], constant_values=np.nan)
    out = [(padded.shape[2 + i] - pool_size[i]) // strides[i] + 1 for i in range(rank)]
    y = np.zeros((*x.shape[:2], *out))
    for position in itertools.product(*(range(o) for o in out)):
        window = tuple(
            slice(p * s, p * s + k) for p, s, k in zip(position, strides, pool_size, strict=True)
        )
        values = padded[(slice(None), slice(None), *window)].reshape(*x.shape[:2], -1)
        reduce = np.nanmax if kind == "Max" else np.nanmean
        y[(slice(None), slice(None), *position)] = reduce(values, axis=-1)
    return to_last(y) if ordering == "tf" else y


def k1_batchnorm(x, gamma, beta, mean, var, axis, epsilon):
    shape = [1] * x.ndim
    shape[axis] = -1
    r = [a.reshape(shape) for a in (gamma, beta, mean, var)]
    return (x - r[2]) / np.sqrt(r[3] + epsilon) * r[0] + r[1]


def k1_softmax(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


K1_ACTIVATIONS = {
    "linear": lambda x: x,
    "relu": lambda x: np.maximum(x, 0),
    "tanh": np.tanh,
    "sigmoid": lambda x: 1 / (1 + np.exp(-x)),
    "hard_sigmoid": lambda x: np.clip(0.2 * x + 0.5, 0, 1),  # Keras 1's K.hard_sigmoid
    "softmax": k1_softmax,
    "softplus": lambda x: np.log1p(np.exp(x)),
    "softsign": lambda x: x / (1 + np.abs(x)),
    "elu": lambda x: np.where(x > 0, x, np.expm1(np.minimum(x, 0))),
}


# =============================================================================================
# Cases: a Keras 1 model, its arrays, and what Keras 1 computed


@dataclass
class Case:
    config: dict
    """``{"class_name", "config"}`` as Keras 1's save_model wrote it (to_json adds the version)."""
    weights: dict[str, list[tuple[str, np.ndarray]]]
    """Per layer, ``(suffix, array)`` in the layer's weight order (``W``, ``b``, ...)."""
    inputs: list[tuple[int, ...]]
    expected: Callable[..., np.ndarray]
    backend: str | None = None
    version: str = "1.2.2"
    tf_names: bool = False
    """TensorFlow named Keras 1's variables ``convolution2d_1_W:0``; Theano without ``:0``."""
    keras3: Callable | None = None
    """Keras 3's version of the model, given the arrays, where Keras 3 can build it."""
    notes: list[str] = field(default_factory=list)


def _rng(seed: int = 0):
    return np.random.default_rng(seed)


def _arrays(rng, *shapes, scale=0.5):
    return [(rng.standard_normal(s) * scale).astype(np.float32) for s in shapes]


def _bn_arrays(rng, channels):
    gamma = rng.uniform(0.5, 1.5, channels).astype(np.float32)
    beta = rng.normal(0, 0.3, channels).astype(np.float32)
    mean = rng.normal(0, 0.3, channels).astype(np.float32)
    var = rng.uniform(0.2, 2.0, channels).astype(np.float32)
    return gamma, beta, mean, var


def case_th_conv(backend: str | None, tf_names: bool, border_mode: str = "valid") -> Case:
    """A classic Keras 1 'th' net: Convolution2D, BatchNormalization(axis=1), MaxPooling2D,
    Flatten (channels first: (channels, rows, cols) order), Dense."""
    rng = _rng(1)
    W, b = _arrays(rng, (4, 2, 3, 3), (4,))
    gamma, beta, mean, var = _bn_arrays(rng, 4)
    side = 2 if border_mode == "valid" else 3
    W2, b2 = _arrays(rng, (4 * side * side, 3), (3,))
    layers = [
        conv2d(
            "convolution2d_1",
            4,
            3,
            3,
            ordering="th",
            activation="relu",
            first=(2, 7, 7),
            border_mode=border_mode,
        ),  # fmt: skip
        batchnorm("batchnormalization_1", axis=1),
        pool2d("maxpooling2d_1", "Max", (2, 2), (2, 2), "valid", "th"),
        simple("Flatten", "flatten_1"),
        dense("dense_1", 3, activation="softmax"),
    ]
    theano = backend == "theano"

    def expected(x):
        y = np.maximum(k1_conv(x, W, b, ordering="th", border_mode=border_mode, theano=theano), 0)
        y = k1_batchnorm(y, gamma, beta, mean, var, 1, 1e-3)
        y = k1_pool(y, (2, 2), (2, 2), "valid", "Max", "th")
        return k1_softmax(y.reshape(len(y), -1) @ W2 + b2)

    def keras3(keras):
        from keras import layers as L

        model = keras.Sequential(
            [
                keras.Input((2, 7, 7)),
                L.Conv2D(
                    4, 3, padding=border_mode, data_format="channels_first", activation="relu"
                ),  # fmt: skip
                L.BatchNormalization(axis=1),
                L.MaxPooling2D(2, data_format="channels_first"),
                L.Flatten(),
                L.Dense(3, activation="softmax"),
            ]
        )
        kernel = W.transpose(2, 3, 1, 0)
        if theano:
            kernel = kernel[::-1, ::-1]
        model.layers[0].set_weights([kernel, b])
        model.layers[1].set_weights([gamma, beta, mean, var])
        model.layers[4].set_weights([W2, b2])
        return model

    return Case(
        {"class_name": "Sequential", "config": layers},
        {
            "convolution2d_1": [("W", W), ("b", b)],
            "batchnormalization_1": [
                ("gamma", gamma),
                ("beta", beta),
                ("running_mean", mean),
                ("running_std", var),
            ],
            "dense_1": [("W", W2), ("b", b2)],
        },
        [(2, 7, 7)],
        expected,
        backend=backend,
        tf_names=tf_names,
        keras3=keras3,
    )


def case_th_same_strided() -> Case:
    """'same' convolutions with an even kernel and a stride (TensorFlow's pads), average
    pooling, global max pooling, in 'th' order."""
    rng = _rng(2)
    W, b = _arrays(rng, (3, 2, 3, 2), (3,))
    W2, b2 = _arrays(rng, (5, 3, 2, 2), (5,))
    layers = [
        conv2d("c1", 3, 3, 2, ordering="th", border_mode="same", subsample=(2, 2), first=(2, 7, 8)),
        conv2d("c2", 5, 2, 2, ordering="th", border_mode="same", activation="tanh"),
        pool2d("p1", "Average", (2, 2), (1, 1), "valid", "th"),
        simple("GlobalMaxPooling2D", "g1", dim_ordering="th"),
    ]

    def expected(x):
        y = k1_conv(x, W, b, ordering="th", border_mode="same", subsample=(2, 2))
        y = np.tanh(k1_conv(y, W2, b2, ordering="th", border_mode="same"))
        y = k1_pool(y, (2, 2), (1, 1), "valid", "Average", "th")
        return y.max(axis=(2, 3))

    return Case(
        {"class_name": "Sequential", "config": layers},
        {"c1": [("W", W), ("b", b)], "c2": [("W", W2), ("b", b2)]},
        [(2, 7, 8)],
        expected,
        tf_names=True,
    )


def case_tf_image() -> Case:
    """'tf' order: an atrous convolution, ZeroPadding2D with Keras 1's 4-tuple, Cropping2D and
    UpSampling2D (whose dim_ordering Keras 1.2.2 did not save), a Dense with hard_sigmoid."""
    rng = _rng(3)
    W, b = _arrays(rng, (3, 3, 3, 4), (4,))
    Wa, ba = _arrays(rng, (2, 2, 4, 4), (4,))
    Wd, bd = _arrays(rng, (4, 2), (2,))
    layers = [
        conv2d("c", 4, 3, 3, ordering="tf", border_mode="same", activation="relu", first=(6, 6, 3)),
        conv2d("a", 4, 2, 2, ordering="tf", atrous=(2, 2)),
        simple("ZeroPadding2D", "z", padding=[1, 0, 2, 1]),
        simple("Cropping2D", "cr", cropping=[[0, 1], [1, 0]]),
        simple("UpSampling2D", "u", size=[2, 1]),
        simple("GlobalAveragePooling2D", "g", dim_ordering="tf"),
        dense("d", 2, activation="hard_sigmoid"),
    ]

    def expected(x):
        y = np.maximum(k1_conv(x, W, b, ordering="tf", border_mode="same"), 0)
        y = k1_conv(y, Wa, ba, ordering="tf", dilation=(2, 2))
        y = np.pad(y, [(0, 0), (1, 0), (2, 1), (0, 0)])
        y = y[:, 0 : y.shape[1] - 1, 1:]
        y = y.repeat(2, axis=1)
        y = y.mean(axis=(1, 2))
        return np.clip(0.2 * (y @ Wd + bd) + 0.5, 0, 1)

    return Case(
        {"class_name": "Sequential", "config": layers},
        {"c": [("W", W), ("b", b)], "a": [("W", Wa), ("b", ba)], "d": [("W", Wd), ("b", bd)]},
        [(6, 6, 3)],
        expected,
    )


def case_conv1d(version: str) -> Case:
    """Convolution1D (Keras 1.2.2 stores W as (length, 1, channels, filters); Keras 1.0/1.1 as
    (filters, channels, length, 1)), AtrousConvolution1D, pooling by pool_length/stride,
    UpSampling1D(length), ZeroPadding1D's dict form, Flatten, Dense."""
    rng = _rng(4)
    W, b = _arrays(rng, (3, 1, 2, 4), (4,))
    Wa, ba = _arrays(rng, (2, 1, 4, 3), (3,))
    Wd, bd = _arrays(rng, (3 * 7, 2), (2,))
    stored = W if version >= "1.2" else W.transpose(3, 2, 0, 1)
    stored_a = Wa if version >= "1.2" else Wa.transpose(3, 2, 0, 1)
    layers = [
        conv1d("c", 4, 3, border_mode="same", input_shape=(9, 2)),
        conv1d("a", 3, 2, atrous=2),
        pool1d("p", "Max", 2, 1, "valid"),
        simple("UpSampling1D", "u", length=2),
        simple("ZeroPadding1D", "z", padding={"left_pad": 1, "right_pad": 0}),
        pool1d("p2", "Average", 3, 2, "same"),
        simple("Flatten", "f"),
        dense("d", 2, activation="sigmoid"),
    ]

    def expected(x):
        y = k1_conv(x, W[:, 0], b, ordering="tf", border_mode="same")
        y = k1_conv(y, Wa[:, 0], ba, ordering="tf", dilation=(2,))
        y = k1_pool(y, (2,), (1,), "valid", "Max", "tf")
        y = np.pad(y.repeat(2, axis=1), [(0, 0), (1, 0), (0, 0)])
        y = k1_pool(y, (3,), (2,), "same", "Average", "tf")
        return 1 / (1 + np.exp(-(y.reshape(len(y), -1) @ Wd + bd)))

    return Case(
        {"class_name": "Sequential", "config": layers},
        {"c": [("W", stored), ("b", b)], "a": [("W", stored_a), ("b", ba)], "d": [("W", Wd), ("b", bd)]},
        [(9, 2)],
        expected,
        version=version,
    )  # fmt: skip


def case_deconv(ordering: str, border_mode: str, output_hw: tuple[int, int], stride=2) -> Case:
    """Deconvolution2D to the output shape it names (Keras 3 computes its own and needs an
    output_padding for the others)."""
    rng = _rng(5)
    W, b = _arrays(rng, (3, 2, 3, 2) if ordering == "th" else (3, 2, 2, 3), (3,))
    shape = (3, *output_hw) if ordering == "th" else (*output_hw, 3)
    first = (2, 4, 5) if ordering == "th" else (4, 5, 2)
    layers = [
        deconv2d("dc", 3, 3, 2, shape, ordering=ordering, border_mode=border_mode,
                 subsample=(stride, stride), first=first),
        simple("Activation", "act", activation="softsign"),
    ]  # fmt: skip

    def expected(x):
        y = k1_deconv(
            x, W, b, shape, ordering=ordering, border_mode=border_mode, subsample=(stride, stride)
        )
        return y / (1 + np.abs(y))

    return Case({"class_name": "Sequential", "config": layers}, {"dc": [("W", W), ("b", b)]},
                [first], expected)  # fmt: skip


def case_separable(ordering: str) -> Case:
    rng = _rng(6)
    if ordering == "th":
        dw, pw, b = _arrays(rng, (2, 3, 3, 3), (5, 6, 1, 1), (5,))
        first = (3, 6, 5)
    else:
        dw, pw, b = _arrays(rng, (3, 3, 3, 2), (1, 1, 6, 5), (5,))
        first = (6, 5, 3)
    layers = [
        separable2d("s", 5, 3, 3, ordering=ordering, depth_multiplier=2, border_mode="same",
                    subsample=(2, 1), first=first),
    ]  # fmt: skip

    def expected(x):
        return k1_separable(x, dw, pw, b, ordering=ordering, border_mode="same", subsample=(2, 1))

    return Case({"class_name": "Sequential", "config": layers},
                {"s": [("depthwise_kernel", dw), ("pointwise_kernel", pw), ("b", b)]},
                [first], expected)  # fmt: skip


def case_conv3d() -> Case:
    rng = _rng(7)
    W, b = _arrays(rng, (3, 2, 2, 3, 2), (3,))
    layers = [
        conv3d("c3", 3, (2, 3, 2), ordering="th", first=(2, 4, 5, 4)),
        pool2d("p3", "Max", (1, 2, 2), (1, 1, 1), "same", "th"),
        simple("ZeroPadding3D", "z3", padding=[1, 0, 1]),
        simple("Flatten", "f"),
    ]

    def expected(x):
        y = k1_conv(x, W, b, ordering="th")
        y = k1_pool(y, (1, 2, 2), (1, 1, 1), "same", "Max", "th")
        y = np.pad(y, [(0, 0), (0, 0), (1, 1), (0, 0), (1, 1)])
        return y.reshape(len(y), -1)

    return Case({"class_name": "Sequential", "config": layers}, {"c3": [("W", W), ("b", b)]},
                [(2, 4, 5, 4)], expected)  # fmt: skip


MERGES = {
    "sum": lambda a, b: a + b,
    "mul": lambda a, b: a * b,
    "ave": lambda a, b: (a + b) / 2,
    "max": np.maximum,
    "concat": lambda a, b: np.concatenate([a, b], axis=-1),
}


def case_merged_sequential(mode: str) -> Case:
    """Keras 1's ``Sequential([Merge([left, right], mode=...), Dense])``: two inputs (named
    after each branch's first layer), weights stored per branch layer (flattened_layers)."""
    rng = _rng(8)
    W1, b1 = _arrays(rng, (3, 4), (4,))
    W2, b2 = _arrays(rng, (5, 4), (4,))
    width = 8 if mode == "concat" else 4
    W3, b3 = _arrays(rng, (width, 2), (2,))
    left = {"class_name": "Sequential", "config": [dense("left_dense", 4, "tanh", first=(3,))]}
    right = {
        "class_name": "Sequential",
        "config": [dense("right_dense", 4, first=(5,)), simple("Activation", "r_act", activation="relu")],
    }  # fmt: skip
    layers = [merge("merge_1", mode, layers=[left, right]), dense("out", 2)]

    def expected(a, c):
        y = MERGES[mode](np.tanh(a @ W1 + b1), np.maximum(c @ W2 + b2, 0))
        return y @ W3 + b3

    def keras3(keras):
        from keras import layers as L

        a, c = keras.Input((3,)), keras.Input((5,))
        first, second, last = L.Dense(4, activation="tanh"), L.Dense(4), L.Dense(2)
        merged = {
            "sum": L.Add(),
            "mul": L.Multiply(),
            "ave": L.Average(),
            "max": L.Maximum(),
            "concat": L.Concatenate(),
        }[mode]([first(a), L.Activation("relu")(second(c))])
        model = keras.Model([a, c], last(merged))
        for layer, arrays in zip(
            (first, second, last), [(W1, b1), (W2, b2), (W3, b3)], strict=True
        ):
            layer.set_weights(list(arrays))
        return model

    return Case(
        {"class_name": "Sequential", "config": layers},
        {"left_dense": [("W", W1), ("b", b1)], "right_dense": [("W", W2), ("b", b2)],
         "out": [("W", W3), ("b", b3)]},
        [(3,), (5,)],
        expected,
        keras3=keras3,
    )  # fmt: skip


def case_functional() -> Case:
    """A Keras 1 functional model (``Model(input=..., output=...)``) with ``merge([...],
    mode='sum')`` and ``merge(..., mode='concat', concat_axis=1)`` in 'th' order, PReLU whose
    shared axes Keras 1 did not save (its alphas show them), ELU and LeakyReLU."""
    rng = _rng(9)
    Wa, ba = _arrays(rng, (3, 2, 3, 3), (3,))
    Wb, bb = _arrays(rng, (3, 2, 1, 1), (3,))
    alphas = rng.uniform(0.1, 0.5, (6, 1, 1)).astype(np.float32)

    def node(class_name, name, config, inbound):
        return {
            "class_name": class_name,
            "name": name,
            "config": {"name": name, "trainable": True, **config},
            "inbound_nodes": [[[i, 0, 0] for i in inbound]] if inbound else [],
        }

    conv_a = conv2d("conv_a", 3, 3, 3, ordering="th", border_mode="same")["config"]
    conv_b = conv2d("conv_b", 3, 1, 1, ordering="th")["config"]
    sum_config = merge("merge_sum", "sum")["config"]
    cat_config = merge("merge_cat", "concat", concat_axis=1)["config"]
    layers = [
        node("InputLayer", "input_1", {"batch_input_shape": [None, 2, 5, 5],
                                        "input_dtype": "float32", "sparse": False}, []),
        node("Convolution2D", "conv_a", conv_a, ["input_1"]),
        node("Convolution2D", "conv_b", conv_b, ["input_1"]),
        node("Merge", "merge_sum", sum_config, ["conv_a", "conv_b"]),
        node("ELU", "elu_1", {"alpha": 0.5}, ["merge_sum"]),
        node("LeakyReLU", "leakyrelu_1", {"alpha": 0.1}, ["conv_b"]),
        node("Merge", "merge_cat", cat_config, ["elu_1", "leakyrelu_1"]),
        node("PReLU", "prelu_1", {"init": "zero"}, ["merge_cat"]),
    ]  # fmt: skip
    config = {
        "name": "model_1",
        "layers": layers,
        "input_layers": [["input_1", 0, 0]],
        "output_layers": [["prelu_1", 0, 0]],
    }

    def expected(x):
        a = k1_conv(x, Wa, ba, ordering="th", border_mode="same")
        c = k1_conv(x, Wb, bb, ordering="th")
        s = a + c
        elu = np.where(s > 0, s, 0.5 * np.expm1(np.minimum(s, 0)))
        leaky = np.where(c > 0, c, 0.1 * c)
        y = np.concatenate([elu, leaky], axis=1)
        return np.where(y > 0, y, alphas[None] * y)

    return Case(
        {"class_name": "Model", "config": config},
        {"conv_a": [("W", Wa), ("b", ba)], "conv_b": [("W", Wb), ("b", bb)],
         "prelu_1": [("alphas", alphas)]},
        [(2, 5, 5)],
        expected,
    )  # fmt: skip


CASES: dict[str, Callable[[], Case]] = {
    "th-conv-bn-pool-dense-theano": lambda: case_th_conv("theano", tf_names=False),
    "th-conv-bn-pool-dense-tensorflow": lambda: case_th_conv("tensorflow", tf_names=True),
    "th-conv_same_odd-theano": lambda: case_th_conv("theano", tf_names=False, border_mode="same"),
    "th-same-even_kernel-strided-avgpool": case_th_same_strided,
    "tf-atrous-padding-cropping-upsampling-hard_sigmoid": case_tf_image,
    "conv1d-keras1.2": lambda: case_conv1d("1.2.2"),
    "conv1d-keras1.1-legacy_kernel": lambda: case_conv1d("1.1.2"),
    "deconv2d-th-valid-default_shape": lambda: case_deconv("th", "valid", (9, 10)),
    "deconv2d-th-valid-longer_shape": lambda: case_deconv("th", "valid", (10, 11)),
    "deconv2d-tf-same-default_shape": lambda: case_deconv("tf", "same", (8, 10)),
    "deconv2d-tf-same-other_shape": lambda: case_deconv("tf", "same", (7, 9)),
    "deconv2d-th-same-stride3-other_shape": lambda: case_deconv("th", "same", (11, 14), 3),
    "deconv2d-tf-valid-stride3-other_shape": lambda: case_deconv("tf", "valid", (13, 14), 3),
    "separable2d-th": lambda: case_separable("th"),
    "separable2d-tf": lambda: case_separable("tf"),
    "conv3d-th-pool3d-same": case_conv3d,
    **{f"merged_sequential-{mode}": (lambda m=mode: case_merged_sequential(m)) for mode in MERGES},
    "functional-merge-prelu_shared": case_functional,
}


# =============================================================================================
# Writing the files as Keras 1 did


def _flattened_names(layers: list) -> list[str]:
    """Keras 1's ``flattened_layers`` order: a leading Merge's branch layers first."""
    names = []
    for entry in layers:
        if entry["class_name"] == "Merge" and "layers" in entry["config"]:
            for branch in entry["config"]["layers"]:
                inner = branch["config"]
                names += _flattened_names(inner if isinstance(inner, list) else inner["layers"])
        elif entry["class_name"] == "Sequential":  # its layers' groups: a test regroups them
            names += _flattened_names(entry["config"])
        elif entry["class_name"] != "Merge" or "layers" not in entry["config"]:
            names.append(entry.get("name") or entry["config"]["name"])
    return names


def write_h5(case: Case, path: Path) -> Path:
    """A full-model ``.h5`` as Keras 1's save_model wrote it."""
    config = case.config
    layers = config["config"] if isinstance(config["config"], list) else config["config"]["layers"]
    with h5py.File(path, "w") as handle:
        handle.attrs["keras_version"] = case.version.encode()
        if case.backend is not None:
            handle.attrs["backend"] = case.backend.encode()
        handle.attrs["model_config"] = json.dumps(config).encode()
        group = handle.create_group("model_weights")
        names = _flattened_names(layers)
        group.attrs["layer_names"] = [name.encode() for name in names]
        for name in names:
            layer_group = group.create_group(name)
            arrays = case.weights.get(name, [])
            weight_names = [
                f"{name}_{suffix}" + (":0" if case.tf_names else "") for suffix, _ in arrays
            ]
            layer_group.attrs["weight_names"] = [w.encode() for w in weight_names]
            for weight_name, (_, array) in zip(weight_names, arrays, strict=True):
                layer_group.create_dataset(weight_name, data=array)
    return path


def write_json(case: Case, path: Path) -> Path:
    """``model.to_json()`` of Keras 1.2.2: the config and the version."""
    path.write_text(json.dumps({**case.config, "keras_version": case.version}))
    return path


def _inputs(case: Case, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((2, *shape)).astype(np.float32) for shape in case.inputs]


def _reference_output(imported, xs):
    arrays: dict[str, dict[str, np.ndarray]] = {}
    for key, array in imported.weights.items():
        layer, variable = key.split("/")
        arrays.setdefault(layer, {})[variable] = array
    model = imported.model
    feeds = {tensor.name: x for tensor, x in zip(model.inputs, xs, strict=True)}
    outputs = run_reference(model, arrays, feeds)
    by_name = {node.output.name: out for node, out in zip(model.nodes, outputs, strict=True)}
    return by_name[model.outputs[0].name]


# =============================================================================================
# Tests


@pytest.mark.parametrize("name", sorted(CASES))
def test_a_keras1_h5_builds_and_computes_what_keras1_computed(name, tmp_path):
    case = CASES[name]()
    path = write_h5(case, tmp_path / "model.h5")
    imported = import_file(path)
    xs = _inputs(case)
    expected = case.expected(*[x.astype(np.float64) for x in xs])
    proto = compile_model(imported.model, imported.weights)
    onnx.checker.check_model(proto, full_check=True)
    (actual,) = onnx_outputs(proto, xs)
    assert actual.shape == expected.shape
    np.testing.assert_allclose(actual, expected, atol=ATOL, rtol=RTOL)
    np.testing.assert_allclose(_reference_output(imported, xs), expected, atol=ATOL, rtol=RTOL)
    # every layer matters: the output moves when any array does
    assert np.abs(expected).max() > 1e-3
    assert main(["check", str(path)]) == 0


@pytest.mark.parametrize("name", sorted(n for n in CASES if CASES[n]().keras3 is not None))
def test_keras3_agrees_where_it_can_build_the_model(name, tmp_path):
    import os

    os.environ.setdefault("KERAS_BACKEND", "torch")
    import keras

    keras.backend.clear_session()
    case = CASES[name]()
    assert case.keras3 is not None
    xs = _inputs(case)
    model = case.keras3(keras)
    theirs = keras.ops.convert_to_numpy(model(xs if len(xs) > 1 else xs[0], training=False))
    imported = import_file(write_h5(case, tmp_path / "model.h5"))
    (mine,) = onnx_outputs(compile_model(imported.model, imported.weights), xs)
    np.testing.assert_allclose(mine, theirs, atol=ATOL, rtol=RTOL)
    expected = case.expected(*[x.astype(np.float64) for x in xs])
    np.testing.assert_allclose(theirs, expected, atol=ATOL, rtol=RTOL)


def test_theano_kernels_are_flipped_only_where_the_file_says_theano(tmp_path, capsys):
    """Keras 1 saved no backend: read as TensorFlow's (as Keras 2 does), with a warning when the
    convolutions use Theano's 'th' order; the same arrays read as Theano's differ."""
    theano = case_th_conv("theano", tf_names=False)
    unsaid = case_th_conv(None, tf_names=False)  # the same arrays
    xs = _inputs(theano)
    outputs = {}
    for label, case in (("theano", theano), ("unsaid", unsaid)):
        imported = import_file(write_h5(case, tmp_path / f"{label}.h5"))
        (outputs[label],) = onnx_outputs(compile_model(imported.model, imported.weights), xs)
        if label == "unsaid":
            (warning,) = imported.warnings
            assert "does not say which backend" in warning.message
            assert "convolution2d_1" in warning.message and "'theano'" in warning.help
        else:
            assert imported.warnings == []
    assert np.abs(outputs["theano"] - outputs["unsaid"]).max() > 1e-3  # softmax outputs
    np.testing.assert_allclose(outputs["theano"], theano.expected(*xs), atol=ATOL, rtol=RTOL)
    np.testing.assert_allclose(outputs["unsaid"], unsaid.expected(*xs), atol=ATOL, rtol=RTOL)
    capsys.readouterr()
    assert main(["build", str(tmp_path / "unsaid.h5"), "-o", str(tmp_path / "u.onnx")]) == 0
    assert "warning: this Keras 1 file does not say which backend" in capsys.readouterr().err


def test_a_keras1_json_builds_and_imports_as_keras3_text(tmp_path, capsys):
    case = CASES["th-conv-bn-pool-dense-tensorflow"]()
    path = write_json(case, tmp_path / "model.json")
    assert main(["build", str(path), "-o", str(tmp_path / "m.onnx")]) == 0
    assert main(["import", str(path), "-o", str(tmp_path / "m.conv")]) == 0
    text = (tmp_path / "m.conv").read_text()
    assert "(saved by Keras 1.2.2)" in text
    assert 'Conv2D(4, 3, data_format="channels_first", activation="relu"' in text
    assert 'BatchNormalization(axis=1, name="batchnormalization_1")' in text
    assert 'Dense(3, activation="softmax", name="dense_1")' in text
    for keras1 in ("nb_filter", "border_mode", "dim_ordering", "output_dim", "init"):
        assert keras1 not in text


def test_a_merged_sequential_imports_as_a_functional_model(tmp_path):
    case = CASES["merged_sequential-concat"]()
    imported = import_file(write_h5(case, tmp_path / "m.h5"))
    assert [i.name for i in imported.model.inputs] == ["left_dense_input", "right_dense_input"]
    assert "layers.Concatenate(" in imported.text and 'name="merge_1"' in imported.text


@pytest.mark.parametrize(
    ("class_name", "config", "expected_class", "expected"),
    [
        (
            "Convolution2D",
            {"nb_filter": 8, "nb_row": 3, "nb_col": 5, "border_mode": "same", "subsample": [2, 1],
             "dim_ordering": "th", "init": "he_normal", "bias": False, "W_regularizer": None,
             "W_constraint": {"name": "MaxNorm", "m": 2, "axis": 0}},
            "Conv2D",
            {"filters": 8, "kernel_size": [3, 5], "padding": "same", "strides": [2, 1],
             "data_format": "channels_first", "kernel_initializer": "he_normal",
             "use_bias": False},
        ),
        (
            "AtrousConvolution1D",
            {"nb_filter": 2, "filter_length": 3, "atrous_rate": 2, "subsample_length": 1,
             "input_dim": 4, "input_length": 10},
            "Conv1D",
            {"filters": 2, "kernel_size": 3, "dilation_rate": 2, "strides": 1},
        ),
        (  # built after another layer: input_dim is the size it was built on, not a shape
            "Dense",
            {"output_dim": 3, "init": "uniform", "bias": True, "input_dim": 7},
            "Dense",
            {"units": 3, "kernel_initializer": "uniform", "use_bias": True},
        ),
        (
            "SeparableConvolution2D",
            {"nb_filter": 4, "nb_row": 3, "nb_col": 3, "init": "glorot_uniform",
             "depth_multiplier": 2, "dim_ordering": "tf", "depthwise_regularizer": None},
            "SeparableConv2D",
            {"filters": 4, "kernel_size": [3, 3], "depthwise_initializer": "glorot_uniform",
             "pointwise_initializer": "glorot_uniform", "depth_multiplier": 2,
             "data_format": "channels_last"},
        ),
        (
            "Convolution3D",
            {"nb_filter": 2, "kernel_dim1": 1, "kernel_dim2": 2, "kernel_dim3": 3,
             "dim_ordering": "tf"},
            "Conv3D",
            {"filters": 2, "kernel_size": [1, 2, 3], "data_format": "channels_last"},
        ),
        (
            "MaxPooling1D",
            {"pool_length": 3, "stride": 2, "border_mode": "valid"},
            "MaxPooling1D",
            {"pool_size": 3, "strides": 2, "padding": "valid"},
        ),
        ("UpSampling1D", {"length": 3}, "UpSampling1D", {"size": 3}),
        (
            "BatchNormalization",
            {"mode": 0, "axis": 1, "epsilon": 1e-5, "beta_init": "zero", "gamma_init": "one",
             "gamma_regularizer": None},
            "BatchNormalization",
            {"axis": 1, "epsilon": 1e-5, "beta_initializer": "zero", "gamma_initializer": "one"},
        ),
        ("Dropout", {"p": 0.5}, "Dropout", {"rate": 0.5}),
        ("SpatialDropout2D", {"p": 0.2, "dim_ordering": "th"}, "SpatialDropout2D",
         {"rate": 0.2, "data_format": "channels_first"}),
        ("GaussianNoise", {"sigma": 0.1}, "GaussianNoise", {"stddev": 0.1}),
        ("PReLU", {"init": "zero"}, "PReLU", {"alpha_initializer": "zero"}),
        ("InputLayer", {"batch_input_shape": [None, 3], "input_dtype": "float32"}, "InputLayer",
         {"batch_input_shape": [None, 3], "dtype": "float32"}),
        ("ZeroPadding2D", {"padding": [1, 1]}, "ZeroPadding2D",
         {"padding": [1, 1], "data_format": "channels_first"}),  # the file's other layers say th
        ("Highway", {"init": "x"}, "Highway", {"init": "x"}),  # not read: refused by name later
    ],
)  # fmt: skip
def test_keras1_arguments_translate_by_the_table(class_name, config, expected_class, expected):
    model = {
        "class_name": "Sequential",
        "config": [
            {"class_name": "Convolution2D", "config": {"name": "c", "nb_filter": 1, "nb_row": 1,
                                                       "nb_col": 1, "dim_ordering": "th"}},
            {"class_name": class_name, "config": {"name": "x", **config}},
        ],
    }  # fmt: skip
    generation = Generation(1, "1.2.2", None, "keras_version '1.2.2'")
    translated = translate(model, generation, "m.json").config
    layer = translated["config"]["layers"][1]
    assert layer["class_name"] == expected_class
    assert layer["config"] == {"name": "x", **expected}


@pytest.mark.parametrize(
    ("first", "shape"),
    [
        ({"class_name": "Dense", "config": {"name": "d", "output_dim": 2, "input_dim": 7}},
         [None, 7]),
        ({"class_name": "Convolution1D", "config": {"name": "c", "nb_filter": 2,
          "filter_length": 3, "input_dim": 4, "input_length": 10}}, [None, 10, 4]),
        ({"class_name": "Dense", "config": {"name": "d", "output_dim": 2, "input_dim": 7,
          "batch_input_shape": [5, 7]}}, [5, 7]),
    ],
)  # fmt: skip
def test_a_first_layers_input_dim_declares_the_input(first, shape):
    """Keras 1 saved a Dense's ``input_dim`` wherever it was (the size it was built on): only a
    first layer's declares the model's input."""
    model = {"class_name": "Sequential", "config": [first, dense("d2", 1)]}
    model["config"][1]["config"]["input_dim"] = 2
    generation = Generation(1, "1.2.2", None, "keras_version '1.2.2'")
    layers = translate(model, generation, "m.json").config["config"]["layers"]
    assert layers[0]["config"]["batch_input_shape"] == shape
    assert "batch_input_shape" not in layers[1]["config"]
    assert "input_dim" not in layers[0]["config"] and "input_dim" not in layers[1]["config"]


def test_every_keras1_class_in_the_table_is_one_convc_compiles():
    import convc.layers as registry

    for keras1, rule in KERAS1_CLASSES.items():
        assert rule.keras3 == "InputLayer" or registry.lookup(rule.keras3) is not None, keras1


# --- what a Keras 1 file cannot say, and how convc says it ---------------------------------


def _sequential(*layers) -> dict:
    return {"class_name": "Sequential", "config": list(layers), "keras_version": "1.2.2"}


_FIRST = conv2d("conv", 2, 3, 3, ordering="th", first=(1, 6, 6))


@pytest.mark.parametrize(
    ("model", "backend", "message"),
    [
        (_sequential(merge("m", "dot", layers=[
            {"class_name": "Sequential", "config": [dense("a", 2, first=(3,))]},
            {"class_name": "Sequential", "config": [dense("b", 2, first=(3,))]}])), None,
         "the Merge layer 'm' has mode='dot', which no Keras 3 merge layer that convc compiles "
         "computes (a batch dot product)"),
        (_sequential(merge("m", "cos", layers=[
            {"class_name": "Sequential", "config": [dense("a", 2, first=(3,))]},
            {"class_name": "Sequential", "config": [dense("b", 2, first=(3,))]}])), None,
         "mode='cos'"),
        (_sequential(merge("m", ["x", "y"], mode_type="lambda", layers=[
            {"class_name": "Sequential", "config": [dense("a", 2, first=(3,))]},
            {"class_name": "Sequential", "config": [dense("b", 2, first=(3,))]}])), None,
         "the Merge layer 'm' merges with a Python function (mode_type='lambda'), whose code "
         "convc never runs"),
        (_sequential(_FIRST, batchnorm("bn", 1, mode=2)), None,
         "layer 'bn' (BatchNormalization) has mode=2, which normalizes with the statistics of "
         "the batch, at inference too"),
        (_sequential(_FIRST, batchnorm("bn", 1, mode=1)), None, "mode=1"),
        (_sequential(conv2d("conv", 2, 3, 3, ordering="th", border_mode="full", first=(1, 6, 6))),
         None, "layer 'conv' (Convolution2D) has border_mode='full'"),
        (_sequential(conv2d("conv", 2, 2, 2, ordering="th", border_mode="same", first=(1, 6, 6))),
         "theano", "layer 'conv' (Conv2D) of this Theano-backend file (Keras 1 (keras_version "
         "'1.2.2')): padding='same' with kernel_size=[2, 2]"),
        (_sequential(_FIRST, pool2d("p", "Max", (2, 2), (2, 2), "same", "th")), "theano",
         "padding='same' pooling"),
        (_sequential(_FIRST, conv2d("c2", 2, 1, 1, ordering="tf"), simple("ZeroPadding2D", "z")),
         None, "layer 'z' (ZeroPadding2D) does not say its dim_ordering (Keras 1 saved none for "
               "it), and the file's other layers use both 'th' and 'tf'"),
        (_sequential(_FIRST, simple("Highway", "h", activation="linear")), None,
         "convc cannot compile this layer of a Keras 1 (keras_version '1.2.2') file:\n"
         "  Highway ('h'): convc does not support this layer"),
        (_sequential(_FIRST, simple("Convolution2D", "c", nb_filter=2, nb_row=3)), None,
         "layer 'c' (Convolution2D) does not give its kernel size as nb_row, nb_col"),
        (_sequential(_FIRST, dense("d", 2), merge("m", "sum")), None,
         "the Merge layer 'm' is not the first layer"),
    ],
    ids=["merge-dot", "merge-cos", "merge-lambda", "batchnorm-mode2", "batchnorm-mode1",
         "border_mode-full", "theano-same-even", "theano-same-pool", "dim_ordering-unsaid-mixed",
         "unknown-layer", "kernel-size-missing", "merge-not-first"],
)  # fmt: skip
def test_what_convc_cannot_read_is_said_with_the_generation_and_the_layer(
    model, backend, message, tmp_path
):
    if backend:
        model = {**model, "backend": backend}
    path = tmp_path / "model.json"
    path.write_text(json.dumps(model))
    with pytest.raises(ConvcError) as caught:
        import_file(path)
    assert message in caught.value.message
    assert "Keras 1" in caught.value.message
    assert main(["build", str(path), "-o", str(tmp_path / "m.onnx")]) == 1


def test_a_deconvolution_whose_stated_output_shape_its_input_cannot_give_is_refused(tmp_path):
    case = case_deconv("tf", "valid", (11, 14), 3)  # from 4 rows, 12 to 14 are possible
    with pytest.raises(ConvcError) as caught:
        import_file(write_h5(case, tmp_path / "m.h5"))
    assert caught.value.message == (
        "this Keras 1 (keras_version '1.2.2') file: layer 'dc' states its output shape as "
        "(11, 14, 3), but from its input (4, 5, 2) it gives (14, 14, 3) (Keras 1 failed on it "
        "when the model ran)"
    )


def test_a_weights_mismatch_names_the_generation(tmp_path):
    case = CASES["th-conv-bn-pool-dense-tensorflow"]()
    case.weights["convolution2d_1"] = [("W", np.zeros((4, 2, 3, 4), np.float32)),
                                       case.weights["convolution2d_1"][1]]  # fmt: skip
    with pytest.raises(ConvcError) as caught:
        import_file(write_h5(case, tmp_path / "m.h5"))
    message = caught.value.message
    assert message.startswith("this Keras 1 (keras_version '1.2.2') file: ")
    assert "has shape (4, 2, 3, 4), expected (4, 2, 3, 3)" in message  # Keras 1's 'th' layout


def test_a_nested_sequentials_weights_are_found_by_their_keras1_names(tmp_path):
    """Keras 1 saved a Sequential nested in a Sequential as one group named after the nested
    model (a name its config does not keep), its weight names ``<layer>_W`` unscoped."""
    case = CASES["th-conv-bn-pool-dense-tensorflow"]()
    inner = case.config["config"][:2]
    case.config["config"] = [
        {"class_name": "Sequential", "config": inner},
        *case.config["config"][2:],
    ]
    xs = _inputs(case)
    expected = case.expected(*xs)
    path = tmp_path / "m.h5"
    write_h5(case, path)
    with h5py.File(path, "r+") as handle:
        group = handle["model_weights"]
        nested = group.create_group("sequential_2")
        names = []
        for layer in ("convolution2d_1", "batchnormalization_1"):
            for name in group[layer].attrs["weight_names"]:
                name = name.decode() if isinstance(name, bytes) else str(name)
                nested.create_dataset(name, data=group[layer][name][()])
                names.append(name.encode())
            del group[layer]
        nested.attrs["weight_names"] = names
        group.attrs["layer_names"] = [b"sequential_2", b"maxpooling2d_1", b"flatten_1", b"dense_1"]
    imported = import_file(path)
    (actual,) = onnx_outputs(compile_model(imported.model, imported.weights), xs)
    np.testing.assert_allclose(actual, expected, atol=ATOL, rtol=RTOL)


_ODD_VALUES = [None, -1, 2.5, "th", [], {}, [1, 2, 3], {"left_pad": "x"}]


@pytest.mark.parametrize(
    "name",
    ["functional-merge-prelu_shared", "merged_sequential-concat", "deconv2d-tf-same-other_shape",
     "conv1d-keras1.2"],
)  # fmt: skip
def test_a_malformed_keras1_config_is_an_error_never_a_crash(name, tmp_path):
    """Every argument of every layer, set to each of a few values of the wrong kind: the import
    succeeds or raises a ConvcError (a file is hostile input)."""
    case = CASES[name]()
    path = tmp_path / "model.json"
    trials = refused = 0

    def configs(value):
        if isinstance(value, dict):
            if isinstance(value.get("config"), dict):
                yield value["config"]
            for item in value.values():
                yield from configs(item)
        elif isinstance(value, list):
            for item in value:
                yield from configs(item)

    for index, config in enumerate(list(configs(case.config))):
        for key in list(config):
            for odd in _ODD_VALUES:
                broken = json.loads(json.dumps(case.config))
                target = list(configs(broken))[index]
                target[key] = odd
                path.write_text(json.dumps({**broken, "keras_version": "1.2.2"}))
                trials += 1
                try:
                    import_file(path)
                except ConvcError:
                    refused += 1
    assert trials > 100 and refused > trials // 4


def test_a_merge_of_a_functional_branch_and_a_sequential_one(tmp_path):
    """Keras 1's Merge at the head of a Sequential also took functional models as branches:
    their layers (input included) join the model as they are."""
    rng = _rng(11)
    W1, b1 = _arrays(rng, (3, 4), (4,))
    W2, b2 = _arrays(rng, (5, 4), (4,))
    functional = {
        "class_name": "Model",
        "config": {
            "name": "model_1",
            "layers": [
                {"class_name": "InputLayer", "name": "in_a", "inbound_nodes": [],
                 "config": {"name": "in_a", "batch_input_shape": [None, 3],
                            "input_dtype": "float32", "sparse": False}},
                {"class_name": "Dense", "name": "fa", "inbound_nodes": [[["in_a", 0, 0]]],
                 "config": dense("fa", 4, "relu")["config"]},
            ],
            "input_layers": [["in_a", 0, 0]],
            "output_layers": [["fa", 0, 0]],
        },
    }  # fmt: skip
    sequential = {"class_name": "Sequential", "config": [dense("sb", 4, first=(5,))]}
    case = Case(
        {
            "class_name": "Sequential",
            "config": [merge("m", "mul", layers=[functional, sequential])],
        },
        {"fa": [("W", W1), ("b", b1)], "sb": [("W", W2), ("b", b2)]},
        [(3,), (5,)],
        lambda a, c: np.maximum(a @ W1 + b1, 0) * (c @ W2 + b2),
    )
    path = tmp_path / "m.h5"
    write_h5(case, path)  # flattened_layers took a Model branch's .layers, its input too
    imported = import_file(path)
    assert [i.name for i in imported.model.inputs] == ["in_a", "sb_input"]
    xs = _inputs(case)
    (actual,) = onnx_outputs(compile_model(imported.model, imported.weights), xs)
    np.testing.assert_allclose(actual, case.expected(*xs), atol=ATOL, rtol=RTOL)

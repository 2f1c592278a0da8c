"""A 'same' average pooling in a Keras 1 or Keras 2 file computes what TensorFlow computed (#24).

Keras 1, Keras 2 and tf.keras pooled with ``tf.nn.avg_pool(padding="SAME")``: each window's
mean over its entries inside the input, the pads (the odd one at the end) left out. That is
convc's ``padding="same"`` (and Keras 3's on TensorFlow and JAX); Keras 3's torch backend counts
repeated edge entries where an axis pads its two ends unequally, convc's ``same_torch``.

Nothing here runs TensorFlow: every expectation is ``tensorflow_same_average`` below, written
window by window from TensorFlow's definition, independently of convc's geometry, lowering and
reference. (Keras 3 on its JAX backend computes the same: tests/test_keras_backends.py.) The
fixtures are configs shaped as each generation wrote them: tf.keras 2.x's functional and
Sequential ``.h5`` with ``model_weights``, Keras 2.1's JSON Sequential as a plain list of
layers, and Keras 1.2.2's ``border_mode``/``pool_length`` arguments.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import onnx
import pytest
from keras2_files import (
    functional,
    onnxruntime_output,
    sequential,
    tf_keras_conv,
    write_h5,
    write_json,
)

from convc import int8_reference
from convc.cli import main
from convc.compiler import compile_model, compile_text, resolve_text
from convc.diagnostics import ConvcError
from convc.importer import import_file
from convc.reference import model_outputs, run_reference
from convc.runners import available, open_runner
from convc.targets import RUNTIMES
from convc.weights import from_arrays

ATOL = 1e-5
RTOL = 1e-5


# =============================================================================================
# What TensorFlow computed, and what Keras 3's torch backend computes


def _tensorflow_pads(length: int, pool: int, stride: int) -> tuple[int, int]:
    """TensorFlow's 'SAME' (GetWindowedOutputSize): ceil(n / s) outputs, the total padding
    split with the odd element after."""
    outputs = -(-length // stride)
    total = max((outputs - 1) * stride + pool - length, 0)
    return total // 2, total - total // 2


def _channels_last(x: np.ndarray, data_format: str) -> np.ndarray:
    return x if data_format == "channels_last" else np.moveaxis(x, 1, -1)


def _back(y: np.ndarray, data_format: str) -> np.ndarray:
    return y if data_format == "channels_last" else np.moveaxis(y, -1, 1)


def tensorflow_same_average(x, pool, strides, data_format="channels_last") -> np.ndarray:
    """tf.nn.avg_pool(padding="SAME"), one window at a time: the mean of the entries of the
    window that lie inside the input."""
    x = _channels_last(np.asarray(x, np.float64), data_format)
    lengths = x.shape[1:-1]
    pads = [_tensorflow_pads(n, k, s) for n, k, s in zip(lengths, pool, strides, strict=True)]
    outputs = [-(-n // s) for n, s in zip(lengths, strides, strict=True)]
    y = np.empty((x.shape[0], *outputs, x.shape[-1]))
    for index in itertools.product(*(range(o) for o in outputs)):
        window = tuple(
            slice(max(i * s - before, 0), min(i * s - before + k, n))
            for i, s, (before, _), k, n in zip(index, strides, pads, pool, lengths, strict=True)
        )
        inside = x[(slice(None), *window, slice(None))]
        y[(slice(None), *index, slice(None))] = inside.mean(axis=tuple(range(1, len(pool) + 1)))
    return _back(y, data_format)


def torch_same_average(x, pool, strides, data_format="channels_last") -> np.ndarray:
    """Keras 3.15's torch backend, where some axis pads unequally: every axis padded by
    repeating its edge entries, then a plain mean of each window (keras-team/keras#23233)."""
    x = _channels_last(np.asarray(x, np.float64), data_format)
    pads = [_tensorflow_pads(n, k, s) for n, k, s in zip(x.shape[1:-1], pool, strides, strict=True)]
    assert any(b != e for b, e in pads), "torch pads by itself where the pads are equal"
    padded = np.pad(x, [(0, 0), *pads, (0, 0)], mode="edge")
    outputs = [-(-n // s) for n, s in zip(x.shape[1:-1], strides, strict=True)]
    y = np.empty((x.shape[0], *outputs, x.shape[-1]))
    for index in itertools.product(*(range(o) for o in outputs)):
        window = tuple(
            slice(i * s, i * s + k) for i, s, k in zip(index, strides, pool, strict=True)
        )
        inside = padded[(slice(None), *window, slice(None))]
        y[(slice(None), *index, slice(None))] = inside.mean(axis=tuple(range(1, len(pool) + 1)))
    return _back(y, data_format)


def _unequal(shape, pool, strides, data_format) -> bool:
    lengths = shape[:-1] if data_format == "channels_last" else shape[1:]
    pads = [_tensorflow_pads(n, k, s) for n, k, s in zip(lengths, pool, strides, strict=True)]
    return any(b != e for b, e in pads)


def _reference(model, arrays: dict[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    outputs = model_outputs(model, run_reference(model, from_arrays(model, arrays), x))
    return next(iter(outputs.values()))


# =============================================================================================
# The files, as each generation wrote them


def _tf_keras_pooling(name: str, rank: int, pool, strides, data_format: str) -> dict:
    return {
        "class_name": f"AveragePooling{rank}D",
        "config": {
            "name": name,
            "trainable": True,
            "dtype": "float32",
            "pool_size": list(pool),
            "padding": "same",
            "strides": list(strides),
            "data_format": data_format,
        },
    }


RNG = np.random.default_rng(24)
KERNEL_2D = RNG.standard_normal((1, 1, 3, 4)).astype(np.float32)
BIAS_2D = RNG.standard_normal(4).astype(np.float32)
KERNEL_3D = RNG.standard_normal((1, 1, 1, 2, 3)).astype(np.float32)
BIAS_3D = RNG.standard_normal(3).astype(np.float32)


def _conv_last(x, kernel, bias):
    """A 1x1 convolution, channels_last: the channels times the kernel's matrix, plus bias."""
    return x.astype(np.float64) @ kernel.reshape(kernel.shape[-2:]) + bias


def _tf_keras_2d(path: Path, version: str = "2.15.0") -> Path:
    """tf.keras 2.15, functional: a 1x1 Conv2D, then AveragePooling2D(3, 2) on (7, 6) (pads
    (1, 1) and (0, 1)), then AveragePooling2D(2, 1) (pads (0, 1) on both axes)."""
    entries = [
        tf_keras_conv(2, 4, "channels_last"),
        _tf_keras_pooling("pool", 2, (3, 3), (2, 2), "channels_last"),
        _tf_keras_pooling("pool_1", 2, (2, 2), (1, 1), "channels_last"),
    ]
    config = functional(entries, (7, 6, 3))
    return write_h5(path, config, version, {"conv": [("kernel", KERNEL_2D), ("bias", BIAS_2D)]})


def _expected_2d(x, average=tensorflow_same_average):
    y = average(_conv_last(x, KERNEL_2D, BIAS_2D), (3, 3), (2, 2))
    return average(y, (2, 2), (1, 1))


def _tf_keras_3d(path: Path) -> Path:
    """tf.keras 2.4, Sequential, channels_first: a 1x1x1 Conv3D, then AveragePooling3D((2, 3,
    2), (1, 2, 2)) on (5, 6, 7): pads (0, 1) on every axis."""
    entries = [
        tf_keras_conv(3, 3, "channels_first"),
        _tf_keras_pooling("pool", 3, (2, 3, 2), (1, 2, 2), "channels_first"),
    ]
    config = sequential(entries, (2, 5, 6, 7))
    return write_h5(path, config, "2.4.0", {"conv": [("kernel", KERNEL_3D), ("bias", BIAS_3D)]})


def _expected_3d(x, average=tensorflow_same_average):
    conv = _conv_last(np.moveaxis(x, 1, -1), KERNEL_3D, BIAS_3D)
    y = average(conv, (2, 3, 2), (1, 2, 2))
    return np.moveaxis(y, -1, 1)


def _keras_2_1_1d(path: Path) -> Path:
    """Keras 2.1.6's JSON, a Sequential as the plain list of its layers: AveragePooling1D(4, 3)
    on 9 steps (pads (0, 1)), then AveragePooling1D(2, 1) (pads (0, 1))."""
    layers = [
        {
            "class_name": "AveragePooling1D",
            "config": {
                "name": "average_pooling1d_1",
                "trainable": True,
                "batch_input_shape": [None, 9, 2],
                "dtype": "float32",
                "strides": [3],
                "pool_size": [4],
                "padding": "same",
            },
        },
        {
            "class_name": "AveragePooling1D",
            "config": {
                "name": "average_pooling1d_2",
                "trainable": True,
                "strides": [1],
                "pool_size": [2],
                "padding": "same",
            },
        },
    ]
    return write_json(path, {"class_name": "Sequential", "config": layers}, "2.1.6")


def _expected_1d(x, average=tensorflow_same_average):
    return average(average(x, (4,), (3,)), (2,), (1,))


def _keras_1_2d(path: Path) -> Path:
    """Keras 1.2.2's JSON: AveragePooling2D with ``border_mode="same"`` and ``dim_ordering``,
    pool 3, strides 2 on (7, 6), then AveragePooling1D's Keras 1 arguments after a Reshape."""
    layers = [
        {
            "class_name": "AveragePooling2D",
            "config": {
                "name": "averagepooling2d_1",
                "trainable": True,
                "batch_input_shape": [None, 7, 6, 3],
                "input_dtype": "float32",
                "pool_size": [3, 3],
                "strides": [2, 2],
                "border_mode": "same",
                "dim_ordering": "tf",
            },
        },
        {
            "class_name": "Reshape",
            "config": {"name": "reshape_1", "trainable": True, "target_shape": [12, 3]},
        },
        {
            "class_name": "AveragePooling1D",
            "config": {
                "name": "averagepooling1d_1",
                "trainable": True,
                "pool_length": 2,
                "stride": 1,
                "border_mode": "same",
            },
        },
    ]
    return write_json(path, {"class_name": "Sequential", "config": layers}, "1.2.2")


def _expected_keras1(x, average=tensorflow_same_average):
    y = average(x, (3, 3), (2, 2))
    return average(y.reshape(len(x), 12, 3), (2,), (1,))


FILES = {
    # id: (writer, file name, input shape, expectation, the poolings' (shape, pool, strides, format))
    "tf_keras-2.15-functional-h5-2d": (
        _tf_keras_2d,
        "m.h5",
        (7, 6, 3),
        _expected_2d,
        [
            ((7, 6, 4), (3, 3), (2, 2), "channels_last"),
            ((4, 3, 4), (2, 2), (1, 1), "channels_last"),
        ],
    ),
    "tf_keras-2.4-sequential-h5-3d-channels_first": (
        _tf_keras_3d,
        "m.h5",
        (2, 5, 6, 7),
        _expected_3d,
        [((3, 5, 6, 7), (2, 3, 2), (1, 2, 2), "channels_first")],
    ),
    "keras-2.1-list-json-1d": (
        _keras_2_1_1d,
        "m.json",
        (9, 2),
        _expected_1d,
        [((9, 2), (4,), (3,), "channels_last"), ((3, 2), (2,), (1,), "channels_last")],
    ),
    "keras-1.2.2-json-2d-then-1d": (
        _keras_1_2d,
        "m.json",
        (7, 6, 3),
        _expected_keras1,
        [((7, 6, 3), (3, 3), (2, 2), "channels_last"), ((12, 3), (2,), (1,), "channels_last")],
    ),
}


# =============================================================================================
# Tests


@pytest.mark.parametrize("name", sorted(FILES))
def test_a_keras_1_or_2_files_same_average_pooling_is_tensorflows(name, tmp_path):
    writer, file_name, shape, expected_of, poolings = FILES[name]
    assert all(_unequal(*pooling) for pooling in poolings)  # where torch's differs
    path = writer(tmp_path / file_name)
    x = np.random.default_rng(7).standard_normal((2, *shape)).astype(np.float32)
    expected = expected_of(x)
    assert np.abs(expected - expected_of(x, torch_same_average)).max() > 0.05

    imported = import_file(path)
    assert imported.text.count('padding="same"') == len(poolings)
    assert "same_torch" not in imported.text
    proto = compile_model(imported.model, imported.weights)
    np.testing.assert_allclose(onnxruntime_output(proto, x), expected, atol=ATOL, rtol=RTOL)
    reference = run_reference(imported.model, _by_layer(imported.weights), x)
    np.testing.assert_allclose(
        next(iter(model_outputs(imported.model, reference).values())),
        expected,
        atol=ATOL,
        rtol=RTOL,
    )
    assert main(["build", str(path), "-o", str(tmp_path / "m.onnx")]) == 0
    assert main(["check", str(path)]) == 0


def _by_layer(weights) -> dict[str, dict[str, np.ndarray]]:
    arrays: dict[str, dict[str, np.ndarray]] = {}
    for key, array in (weights or {}).items():
        layer, variable = key.split("/")
        arrays.setdefault(layer, {})[variable] = array
    return arrays


def test_a_keras_3_file_means_tensorflows_same_too(tmp_path):
    """The same functional config with Keras 3's version means Keras 3's 'same', which its
    TensorFlow and JAX backends compute as TensorFlow always did (docs/language.md): the same
    numbers, not the torch backend's."""
    path = _tf_keras_2d(tmp_path / "m.h5", version="3.15.1")
    x = np.random.default_rng(8).standard_normal((2, 7, 6, 3)).astype(np.float32)
    imported = import_file(path)
    assert imported.text.count('padding="same"') == 2
    actual = onnxruntime_output(compile_model(imported.model, imported.weights), x)
    np.testing.assert_allclose(actual, _expected_2d(x), atol=ATOL, rtol=RTOL)
    assert np.abs(actual - _expected_2d(x, torch_same_average)).max() > 0.05


def test_poolings_keep_their_paddings(tmp_path):
    """Every backend's 'same' max ignores the pads, 'valid' pads nothing, and a Keras 1 or 2
    'same' average is convc's 'same': no pooling of such a file is renamed."""
    entries = [
        _tf_keras_pooling("average", 2, (3, 3), (2, 2), "channels_last"),
        _tf_keras_pooling("valid", 2, (2, 2), (1, 1), "channels_last"),
        {
            **_tf_keras_pooling("max", 2, (2, 2), (1, 1), "channels_last"),
            "class_name": "MaxPooling2D",
        },
    ]
    entries[1]["config"]["padding"] = "valid"
    path = write_json(tmp_path / "m.json", sequential(entries, (7, 6, 3)), "2.15.0")
    text = import_file(path).text
    assert '\nAveragePooling2D(3, strides=2, padding="same", name="average")\n' in text
    assert '\nAveragePooling2D(2, strides=1, name="valid")\n' in text
    assert '\nMaxPooling2D(strides=1, padding="same", name="max")\n' in text


def _one_d_cases():
    """Every 1-D 'same' average pooling of lengths 1 to 7, pools 1 to 5 (longer than the input
    too, which TensorFlow computes), strides 1 to 4."""
    return [
        ((n, 2), (k,), (s,), "channels_last")
        for n, k, s in itertools.product(range(1, 8), range(1, 6), range(1, 5))
    ]


def _random_cases(count: int, seed: int):
    rng = np.random.default_rng(seed)
    cases = []
    for _ in range(count):
        rank = int(rng.choice([2, 3]))
        lengths = [int(rng.integers(1, 8 if rank == 2 else 6)) for _ in range(rank)]
        pool = tuple(int(rng.integers(1, 5)) for _ in range(rank))
        strides = tuple(int(rng.integers(1, 4)) for _ in range(rank))
        data_format = str(rng.choice(["channels_last", "channels_first"]))
        channels = int(rng.integers(1, 4))
        shape = (*lengths, channels) if data_format == "channels_last" else (channels, *lengths)
        cases.append((shape, pool, strides, data_format))
    return cases


def test_no_same_average_pooling_that_tensorflow_computes_is_refused(tmp_path):
    """A tf.keras 2 file of one 'same' average pooling builds and gives TensorFlow's numbers for
    every 1-D case and 60 random 2-D and 3-D ones (both data formats): none is refused."""
    cases = _one_d_cases() + _random_cases(60, seed=24)
    compared = unequal = 0
    for index, (shape, pool, strides, data_format) in enumerate(cases):
        rank = len(pool)
        entry = _tf_keras_pooling("pool", rank, pool, strides, data_format)
        path = write_json(tmp_path / f"m{index}.json", sequential([entry], shape), "2.15.0")
        imported = import_file(path)
        x = np.random.default_rng(index).standard_normal((2, *shape)).astype(np.float32)
        actual = onnxruntime_output(compile_model(imported.model, imported.weights), x)
        expected = tensorflow_same_average(x, pool, strides, data_format)
        np.testing.assert_allclose(
            actual, expected, atol=ATOL, rtol=RTOL, err_msg=str(cases[index])
        )
        compared += 1
        unequal += _unequal(shape, pool, strides, data_format)
    assert compared == len(cases) == 200
    assert unequal > 80  # most cases are the ones that were refused before


CONV_TEXT = "Input(shape=(2, 7, 6))\nAveragePooling2D(3, 2, 'same', 'channels_first')\n"


def test_same_is_one_average_pool_that_leaves_the_pads_out():
    """In .conv text: one AveragePool, the pads unequal and explicit, count_include_pad=0, in
    every target (no Pad node, unlike torch's ``same_torch``); the NumPy reference and every
    runtime installed give TensorFlow's numbers."""
    x = np.random.default_rng(9).standard_normal((2, 2, 7, 6)).astype(np.float32)
    expected = tensorflow_same_average(x, (3, 3), (2, 2), "channels_first")
    for target in ("portable", *RUNTIMES):
        proto = compile_text(CONV_TEXT, target=target)
        assert [node.op_type for node in proto.graph.node] == ["AveragePool"]
        attributes = {
            a.name: onnx.helper.get_attribute_value(a) for a in proto.graph.node[0].attribute
        }
        assert attributes["pads"] == [1, 0, 1, 1]
        assert attributes["count_include_pad"] == 0
        if target == "portable" or target == "tensorrt" or not available(target):
            continue
        runner = open_runner(proto, target)
        actual = runner.run({runner.input_names[0]: x})
        np.testing.assert_allclose(next(iter(actual.values())), expected, atol=ATOL, rtol=RTOL)
    model = resolve_text(CONV_TEXT)
    np.testing.assert_allclose(_reference(model, {}, x), expected, atol=ATOL, rtol=RTOL)
    # the int8 reference's AveragePool (it computes the float ops of a quantized model too)
    (int8_float,) = int8_reference.evaluate(proto, {proto.graph.input[0].name: x}).values()
    np.testing.assert_allclose(int8_float, expected, atol=ATOL, rtol=RTOL)
    torch_same = compile_text(CONV_TEXT.replace("same", "same_torch"))
    assert [node.op_type for node in torch_same.graph.node] == ["Pad", "AveragePool"]
    torch_model = resolve_text(CONV_TEXT.replace("same", "same_torch"))
    torch_expected = torch_same_average(x, (3, 3), (2, 2), "channels_first")
    np.testing.assert_allclose(_reference(torch_model, {}, x), torch_expected, atol=ATOL, rtol=RTOL)
    np.testing.assert_allclose(
        onnxruntime_output(torch_same, x), torch_expected, atol=ATOL, rtol=RTOL
    )


@pytest.mark.parametrize(
    ("text", "message", "column"),
    [
        (
            "Input(shape=(7, 2))\nMaxPooling1D(3, 2, padding='same_torch')\n",
            "padding='same_torch' is for an average pooling: it names Keras's torch backend's "
            "'same' average, which counts repeated edge entries",
            28,
        ),
        (
            "Input(shape=(7, 2))\nAveragePooling1D(3, 2, padding='Same_Torch')\n",
            "padding='Same_Torch' must be written in lower case for a pooling layer: convc's "
            "name is lower case",
            32,
        ),
        (
            "Input(shape=(7, 2))\nAveragePooling1D(3, 2, padding='same_keras3')\n",
            "'padding' must be one of 'valid', 'same', 'same_torch', got padding='same_keras3'",
            32,
        ),
        (
            "Input(shape=(7, 2))\nMaxPooling1D(3, 2, padding='sane')\n",
            "'padding' must be one of 'valid', 'same', got padding='sane'",
            28,
        ),
    ],
    ids=["max-pooling", "upper-case", "unknown", "max-pooling-lists-its-own"],
)
def test_same_torch_is_refused_where_it_means_nothing(text, message, column):
    with pytest.raises(ConvcError) as caught:
        compile_text(text)
    assert message in caught.value.message
    assert (caught.value.span.line, caught.value.span.column) == (2, column)

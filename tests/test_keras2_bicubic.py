"""A bicubic UpSampling2D or Resizing in a Keras 2 (tf.keras) file computes what TensorFlow
computed (#24).

tf.keras's ``UpSampling2D(interpolation="bicubic")`` and ``Resizing(interpolation="bicubic")``
call ``tf.image.resize(method="bicubic")``, which runs TensorFlow's ``ResizeBicubic`` kernel with
half-pixel centres (tensorflow/core/kernels/image/resize_bicubic_op.cc): Keys's cubic with
a = -0.5 on the four samples around the source position, the weights of samples outside the
image set to zero and the rest renormalized, and the position's fraction rounded to 1/1024 (the
weights come from a table). convc's ``bicubic`` is Keras 3's on JAX, the same kernel without the
table; Keras 3's torch backend computes a = -0.75 with the edge samples repeated (convc's
``bicubic_torch``). The importer writes such a layer of a Keras 1 or 2 file as
``interpolation="bicubic_keras2"``, convc's name for TensorFlow's.

Nothing here runs TensorFlow: every expectation is ``tensorflow_resize_bicubic`` below, written
output pixel by output pixel from that C++ source (its table, its weights and indices, its
order of sums, all in float32), independently of convc's lowering and reference. (It was checked
once by hand against tf.image.resize of TensorFlow 2.21, not a dependency of these tests.) The
fixtures are configs shaped as tf.keras 2.x wrote them (``tests/keras2_files.py``).
"""

from __future__ import annotations

import math

import numpy as np
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

ATOL = 1e-5
RTOL = 1e-5


# =============================================================================================
# What TensorFlow computed


def _coefficients_table() -> np.ndarray:
    """InitCoeffsTable(-0.5): at x = i / 1024, Keys's weight at distance x (column 0) and at
    distance x + 1 (column 1), computed in double and stored as float."""
    a = -0.5
    table = np.empty((1025, 2), dtype=np.float32)
    for i in range(1025):
        x = i * 1.0 / 1024
        table[i, 0] = ((a + 2) * x - (a + 3)) * x * x + 1
        x += 1.0
        table[i, 1] = ((a * x - 5 * a) * x + 8 * a) * x - 4 * a
    return table


TABLE = _coefficients_table()


def _weights_and_indices(scale: np.float32, out_loc: int, limit: int):
    """GetWeightsAndIndices<HalfPixelScaler, use_keys_cubic=true>: the four samples' indices
    (bounded to the image) and weights, a sample outside the image weighing zero, the weights
    then multiplied by the reciprocal of their sum."""
    in_loc_f = (np.float32(out_loc) + np.float32(0.5)) * scale - np.float32(0.5)
    in_loc = math.floor(in_loc_f)
    delta = in_loc_f - np.float32(in_loc)
    offset = int(np.rint(delta * np.float32(1024)))  # lrintf: half to even
    coefficients = (
        TABLE[offset, 1],
        TABLE[offset, 0],
        TABLE[1024 - offset, 0],
        TABLE[1024 - offset, 1],
    )
    indices, weights = [], []
    for tap, coefficient in zip((-1, 0, 1, 2), coefficients, strict=True):
        index = min(limit - 1, max(0, in_loc + tap))
        indices.append(index)
        weights.append(coefficient if index == in_loc + tap else np.float32(0))
    total = weights[0] + weights[1] + weights[2] + weights[3]
    if abs(total) >= 1000 * np.finfo(np.float32).tiny:
        reciprocal = np.float32(1) / total
        weights = [w * reciprocal for w in weights]
    return indices, weights


def tensorflow_resize_bicubic(x: np.ndarray, height: int, width: int) -> np.ndarray:
    """tf.image.resize(x, (height, width), method="bicubic") on an NHWC batch, pixel by pixel
    as resize_bicubic_op.cc computes it: for each of the four columns around the output pixel,
    the four rows interpolated, then those four values interpolated across."""
    x = np.asarray(x, np.float32)
    batch, in_height, in_width, channels = x.shape
    height_scale = np.float32(in_height) / np.float32(height)
    width_scale = np.float32(in_width) / np.float32(width)
    columns = [_weights_and_indices(width_scale, j, in_width) for j in range(width)]
    y = np.empty((batch, height, width, channels), dtype=np.float32)
    for i in range(height):
        rows, row_weights = _weights_and_indices(height_scale, i, in_height)
        for j, (cols, col_weights) in enumerate(columns):
            across = []
            for col in cols:
                v = [x[:, row, col] for row in rows]
                w = row_weights
                across.append(v[0] * w[0] + v[1] * w[1] + v[2] * w[2] + v[3] * w[3])
            w = col_weights
            y[:, i, j] = across[0] * w[0] + across[1] * w[1] + across[2] * w[2] + across[3] * w[3]
    return y


def tensorflow_upsampling(x: np.ndarray, size, data_format: str) -> np.ndarray:
    """tf.keras's backend.resize_images: the image resized to (height * fh, width * fw)."""
    last = x if data_format == "channels_last" else x.transpose(0, 2, 3, 1)
    y = tensorflow_resize_bicubic(last, last.shape[1] * size[0], last.shape[2] * size[1])
    return y if data_format == "channels_last" else y.transpose(0, 3, 1, 2)


def smart_resize_crop(x: np.ndarray, height: int, width: int) -> np.ndarray:
    """tf.keras's image_utils.smart_resize, before its resize: the largest centred box of the
    target's aspect ratio (sizes and start in float32, truncated)."""
    h, w = x.shape[1], x.shape[2]
    crop_h = min(h, int(np.float32(w * height) / np.float32(width)))
    crop_w = min(w, int(np.float32(h * width) / np.float32(height)))
    top, left = int(np.float32(h - crop_h) / 2), int(np.float32(w - crop_w) / 2)
    return x[:, top : top + crop_h, left : left + crop_w]


def _keys(d: float, a: float) -> float:
    d = abs(d)
    if d <= 1:
        return ((a + 2) * d - (a + 3)) * d * d + 1
    return a * (d - 1) * (d - 2) ** 2 if d < 2 else 0.0


def _unquantized_matrix(n: int, m: int) -> np.ndarray:
    """TensorFlow's definition without the 1/1024 table, exact positions in float64: what a
    Resize with cubic_coeff_a=-0.5 and exclude_outside=1 computes."""
    matrix = np.zeros((m, n))
    for i in range(m):
        position = (i + 0.5) * n / m - 0.5
        base = math.floor(position)
        taps = [(base + k, _keys(position - base - k, -0.5)) for k in range(-1, 3)]
        inside = [(j, w) for j, w in taps if 0 <= j < n]
        total = sum(w for _, w in inside)
        for j, w in inside:
            matrix[i, j] = w / total
    return matrix


def unquantized_upsampling(x: np.ndarray, size) -> np.ndarray:
    """channels_last, with ``_unquantized_matrix`` per axis."""
    rows = _unquantized_matrix(x.shape[1], x.shape[1] * size[0])
    cols = _unquantized_matrix(x.shape[2], x.shape[2] * size[1])
    return np.einsum("ih,jw,nhwc->nijc", rows, cols, x.astype(np.float64))


# =============================================================================================
# The files, as tf.keras 2.x wrote them


def _upsampling(name: str, size, data_format: str, interpolation: str = "bicubic") -> dict:
    return {
        "class_name": "UpSampling2D",
        "config": {
            "name": name,
            "trainable": True,
            "dtype": "float32",
            "size": list(size),
            "data_format": data_format,
            "interpolation": interpolation,
        },
    }


def _resizing(name: str, height: int, width: int, interpolation: str, crop: bool) -> dict:
    """tf.keras's Resizing config: no data_format (channels_last only), no antialias, and the
    interpolation as the user wrote it (its Resizing stored it before lower-casing)."""
    return {
        "class_name": "Resizing",
        "config": {
            "name": name,
            "trainable": True,
            "dtype": "float32",
            "height": height,
            "width": width,
            "interpolation": interpolation,
            "crop_to_aspect_ratio": crop,
        },
    }


RNG = np.random.default_rng(2024)
KERNEL = RNG.standard_normal((1, 1, 3, 4)).astype(np.float32)
BIAS = RNG.standard_normal(4).astype(np.float32)


def _tf_keras_functional_h5(path, version="2.15.0"):
    """tf.keras 2.15, functional, .h5 with weights: a 1x1 Conv2D on (5, 4, 3), then
    UpSampling2D((2, 3), interpolation="bicubic")."""
    entries = [tf_keras_conv(2, 4, "channels_last"), _upsampling("up", (2, 3), "channels_last")]
    config = functional(entries, (5, 4, 3))
    return write_h5(path, config, version, {"conv": [("kernel", KERNEL), ("bias", BIAS)]})


def _expected_functional(x):
    conv = x.astype(np.float64) @ KERNEL[0, 0] + BIAS
    return tensorflow_upsampling(conv.astype(np.float32), (2, 3), "channels_last")


def _tf_keras_channels_first_json(path):
    """tf.keras 2.12's JSON, Sequential, channels_first: UpSampling2D(3) on (2, 5, 4), then
    UpSampling2D((2, 1)) on (2, 15, 12)."""
    entries = [
        _upsampling("up_sampling2d", (3, 3), "channels_first"),
        _upsampling("up_sampling2d_1", (2, 1), "channels_first"),
    ]
    return write_json(path, sequential(entries, (2, 5, 4)), "2.12.0")


def _expected_channels_first(x):
    y = tensorflow_upsampling(x, (3, 3), "channels_first")
    return tensorflow_upsampling(y, (2, 1), "channels_first")


def _tf_keras_resizing_h5(path):
    """tf.keras 2.21, Sequential .h5: Resizing(4, 11, "bicubic") on (7, 5, 2), shrinking the
    height and enlarging the width, then Resizing(6, 7, "BICUBIC", crop_to_aspect_ratio=True),
    as the user spelled it."""
    entries = [
        _resizing("resizing", 4, 11, "bicubic", crop=False),
        _resizing("resizing_1", 6, 7, "BICUBIC", crop=True),
    ]
    return write_h5(path, sequential(entries, (7, 5, 2)), "2.21.0", {})


def _expected_resizing(x):
    y = tensorflow_resize_bicubic(x, 4, 11)
    return tensorflow_resize_bicubic(smart_resize_crop(y, 6, 7), 6, 7)


FILES = {
    # id: (writer, file name, input shape, expectation, bicubic layers)
    "tf_keras-2.15-functional-h5-upsampling-2x3": (
        _tf_keras_functional_h5,
        "m.h5",
        (5, 4, 3),
        _expected_functional,
        1,
    ),
    "tf_keras-2.12-sequential-json-channels_first-3-then-2x1": (
        _tf_keras_channels_first_json,
        "m.json",
        (2, 5, 4),
        _expected_channels_first,
        2,
    ),
    "tf_keras-2.21-sequential-h5-resizing-shrink-enlarge-crop": (
        _tf_keras_resizing_h5,
        "m.h5",
        (7, 5, 2),
        _expected_resizing,
        2,
    ),
}


def _by_layer(weights) -> dict[str, dict[str, np.ndarray]]:
    arrays: dict[str, dict[str, np.ndarray]] = {}
    for key, array in (weights or {}).items():
        layer, variable = key.split("/")
        arrays.setdefault(layer, {})[variable] = array
    return arrays


def _reference(imported, x: np.ndarray) -> np.ndarray:
    outputs = run_reference(imported.model, _by_layer(imported.weights), x)
    return next(iter(model_outputs(imported.model, outputs).values()))


# =============================================================================================
# Tests


@pytest.mark.parametrize("name", sorted(FILES))
def test_a_tf_keras_files_bicubic_resize_is_tensorflows(name, tmp_path):
    writer, file_name, shape, expected_of, layers = FILES[name]
    path = writer(tmp_path / file_name)
    x = np.random.default_rng(3).standard_normal((2, *shape)).astype(np.float32)
    expected = expected_of(x)

    imported = import_file(path)
    assert imported.text.count('interpolation="bicubic_keras2"') == layers
    assert 'interpolation="bicubic"' not in imported.text
    proto = compile_model(imported.model, imported.weights)
    assert "Resize" not in {node.op_type for node in proto.graph.node}
    np.testing.assert_allclose(onnxruntime_output(proto, x), expected, atol=ATOL, rtol=RTOL)
    np.testing.assert_allclose(_reference(imported, x), expected, atol=ATOL, rtol=RTOL)
    assert main(["build", str(path), "-o", str(tmp_path / "m.onnx")]) == 0
    assert main(["check", str(path)]) == 0


def test_the_same_file_from_keras_3_means_jaxs_bicubic(tmp_path):
    """The functional config with Keras 3's version means Keras 3's bicubic, which convc
    computes as JAX does (docs/language.md): TensorFlow's kernel without its table, so within
    the table's rounding of TensorFlow's numbers, and far from the torch backend's."""
    path = _tf_keras_functional_h5(tmp_path / "m.h5", version="3.15.1")
    x = np.random.default_rng(4).standard_normal((2, 5, 4, 3)).astype(np.float32)
    imported = import_file(path)
    assert "bicubic_keras2" not in imported.text
    assert 'interpolation="bicubic"' in imported.text
    actual = onnxruntime_output(compile_model(imported.model, imported.weights), x)
    assert np.abs(actual - _expected_functional(x)).max() < 1e-2
    torch_text = imported.text.replace('"bicubic"', '"bicubic_torch"')
    torch = onnxruntime_output(compile_model(resolve_text(torch_text), imported.weights), x)
    assert np.abs(actual - torch).max() > 0.05


def test_the_1024_step_table_is_what_tensorflow_computed():
    """For a factor of 3 TensorFlow's rounding of the position to 1/1024 moves the numbers by
    about 1e-3 against the exact formula (which a Resize with a = -0.5 and exclude_outside
    computes), far beyond the tolerances here; for a factor of 2 the positions are exact."""
    x = np.random.default_rng(5).standard_normal((2, 4, 5, 3)).astype(np.float32)
    for size, apart in (((3, 3), 1e-4), ((2, 2), None)):
        tensorflow = tensorflow_upsampling(x, size, "channels_last")
        unquantized = unquantized_upsampling(x, size)
        difference = np.abs(tensorflow - unquantized).max()
        if apart is None:
            assert difference < 1e-5
        else:
            assert difference > apart
        text = f"Input(shape=(4, 5, 3))\nUpSampling2D({size}, interpolation='bicubic_keras2')\n"
        np.testing.assert_allclose(
            onnxruntime_output(compile_text(text), x), tensorflow, atol=ATOL, rtol=RTOL
        )


def _upsampling_cases(count: int, seed: int):
    rng = np.random.default_rng(seed)
    cases = []
    for _ in range(count):
        lengths = [int(rng.integers(1, 8)) for _ in range(2)]
        size = tuple(int(rng.integers(1, 6)) for _ in range(2))
        data_format = str(rng.choice(["channels_last", "channels_first"]))
        channels = int(rng.integers(1, 4))
        shape = (*lengths, channels) if data_format == "channels_last" else (channels, *lengths)
        cases.append((shape, size, data_format))
    return cases


def test_no_bicubic_upsampling_of_a_tf_keras_file_is_refused(tmp_path):
    """Every factor pair of 1 to 3 on odd and even sizes from 1 to 4 (both data formats), and 60
    random cases up to size 7 and factor 5: each tf.keras file builds, and onnxruntime and the
    NumPy reference give TensorFlow's numbers."""
    systematic = [
        ((h, w, 2) if data_format == "channels_last" else (2, h, w), (fh, fw), data_format)
        for h, w in ((1, 2), (2, 3), (3, 4), (4, 1))
        for fh in (1, 2, 3)
        for fw in (1, 2, 3)
        for data_format in ("channels_last", "channels_first")
    ]
    cases = systematic + _upsampling_cases(60, seed=24)
    compared = 0
    for index, (shape, size, data_format) in enumerate(cases):
        entry = _upsampling("up", size, data_format)
        path = write_json(tmp_path / f"m{index}.json", sequential([entry], shape), "2.15.0")
        imported = import_file(path)
        assert 'interpolation="bicubic_keras2"' in imported.text
        x = np.random.default_rng(index).standard_normal((2, *shape)).astype(np.float32)
        actual = onnxruntime_output(compile_model(imported.model, imported.weights), x)
        expected = tensorflow_upsampling(x, size, data_format)
        case = str(cases[index])
        np.testing.assert_allclose(actual, expected, atol=ATOL, rtol=RTOL, err_msg=case)
        reference = _reference(imported, x)
        np.testing.assert_allclose(reference, expected, atol=ATOL, rtol=RTOL, err_msg=case)
        compared += 1
    assert compared == len(cases) == 132


def _resizing_cases(count: int, seed: int):
    """Random sizes 1 to 9 resized to 1 to 12, with or without crop_to_aspect_ratio; a crop
    that tf.keras's smart_resize would make empty is drawn again (TensorFlow fails at run time
    there, so no such model ran)."""
    rng = np.random.default_rng(seed)
    cases = []
    while len(cases) < count:
        h, w, channels = (int(v) for v in rng.integers(1, 10, size=3))
        height, width = (int(v) for v in rng.integers(1, 13, size=2))
        crop = bool(rng.integers(0, 2))
        if crop and 0 in smart_resize_crop(np.zeros((1, h, w, 1)), height, width).shape:
            continue
        cases.append(((h, w, channels), height, width, crop))
    return cases


def test_no_bicubic_resizing_of_a_tf_keras_file_is_refused(tmp_path):
    """40 random tf.keras Resizing layers (shrinking, enlarging, or both; with and without
    crop_to_aspect_ratio): each builds, and onnxruntime and the NumPy reference give
    TensorFlow's numbers."""
    compared = shrinking = 0
    for index, (shape, height, width, crop) in enumerate(_resizing_cases(40, seed=25)):
        entry = _resizing("resize", height, width, "bicubic", crop)
        path = write_json(tmp_path / f"r{index}.json", sequential([entry], shape), "2.13.1")
        imported = import_file(path)
        x = np.random.default_rng(index).standard_normal((2, *shape)).astype(np.float32)
        source = smart_resize_crop(x, height, width) if crop else x
        expected = tensorflow_resize_bicubic(source, height, width)
        case = str((shape, height, width, crop))
        actual = onnxruntime_output(compile_model(imported.model, imported.weights), x)
        np.testing.assert_allclose(actual, expected, atol=ATOL, rtol=RTOL, err_msg=case)
        reference = _reference(imported, x)
        np.testing.assert_allclose(reference, expected, atol=ATOL, rtol=RTOL, err_msg=case)
        compared += 1
        shrinking += height < source.shape[1] or width < source.shape[2]
    assert compared == 40
    assert shrinking > 10


CONV_TEXT = "Input(shape=(3, 5, 4))\nUpSampling2D((3, 2), 'channels_first', 'bicubic_keras2')\n"


def test_bicubic_keras2_is_two_matmuls_in_every_target():
    """In .conv text: two MatMuls with constant matrices in every target (no Resize, whose
    cubic has no 1/1024 table); the NumPy reference, the int8 reference's float ops and every
    runtime installed give TensorFlow's numbers."""
    x = np.random.default_rng(9).standard_normal((2, 3, 5, 4)).astype(np.float32)
    expected = tensorflow_upsampling(x, (3, 2), "channels_first")
    ran = 0
    for target in ("portable", *RUNTIMES):
        proto = compile_text(CONV_TEXT, target=target)
        assert [node.op_type for node in proto.graph.node] == ["MatMul", "MatMul"]
        if target == "portable" or target == "tensorrt" or not available(target):
            continue
        runner = open_runner(proto, target)
        actual = runner.run({runner.input_names[0]: x})
        np.testing.assert_allclose(next(iter(actual.values())), expected, atol=ATOL, rtol=RTOL)
        ran += 1
    assert ran >= 1
    model = resolve_text(CONV_TEXT)
    reference = next(iter(model_outputs(model, run_reference(model, {}, x)).values()))
    np.testing.assert_allclose(reference, expected, atol=ATOL, rtol=RTOL)
    (int8_float,) = int8_reference.evaluate(proto, {proto.graph.input[0].name: x}).values()
    np.testing.assert_allclose(int8_float, expected, atol=ATOL, rtol=RTOL)
    for other in ("bicubic", "bicubic_torch"):  # onnxruntime's Resize computes these
        proto = compile_text(CONV_TEXT.replace("bicubic_keras2", other), target="ort")
        assert [node.op_type for node in proto.graph.node] == ["Resize"]


@pytest.mark.parametrize(
    ("text", "message", "column"),
    [
        (
            "Input(shape=(6, 7, 3))\nResizing(3, 4, 'bicubic_keras2', antialias=True)\n",
            "antialias=True cannot be combined with interpolation='bicubic_keras2': tf.keras's "
            "Resizing had no antialias",
            44,
        ),
        (
            "Input(shape=(6, 7, 3))\nResizing(3, 4, 'BICUBIC_KERAS2')\n",
            "'interpolation' must be one of 'bilinear', 'nearest', 'bicubic', 'lanczos3', "
            "'lanczos5', 'bicubic_torch', 'bicubic_keras2', got interpolation='BICUBIC_KERAS2'",
            16,
        ),
        (
            "Input(shape=(6, 7, 3))\nUpSampling2D(2, interpolation='bicubic_keras3')\n",
            "'interpolation' must be one of 'nearest', 'bilinear', 'bicubic', 'lanczos3', "
            "'lanczos5', 'bicubic_torch', 'bilinear_keras2', 'bicubic_keras2', got "
            "interpolation='bicubic_keras3'",
            31,
        ),
    ],
    ids=["resizing-antialias", "resizing-upper-case", "upsampling-unknown"],
)
def test_bicubic_keras2_is_refused_where_it_means_nothing(text, message, column):
    with pytest.raises(ConvcError) as caught:
        compile_text(text)
    assert message in caught.value.message
    assert (caught.value.span.line, caught.value.span.column) == (2, column)

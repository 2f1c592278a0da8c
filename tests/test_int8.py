"""int8 models (``--precision int8``, ``convc.quantize``): calibration data is read from every
form it takes and refused with a located error where it is wrong; the QDQ model carries what the
options ask for (per-channel weights of 7 or 8 bits, float32 layers kept, the calibration method,
the metadata) and onnxruntime runs it on its integer kernels."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import numpy_helper

import convc
from convc.arrays import npz_bytes
from convc.cli import main
from convc.compiler import resolve_text
from convc.diagnostics import ConvcError
from convc.options import BuildOptions
from convc.precision import model_precision
from convc.quantize import (
    DEFAULT_CALIBRATION_COUNT,
    INT8_MAX_OPSET,
    model_int8_settings,
    read_calibration,
    read_plan,
)

ROOT = Path(__file__).resolve().parent.parent
RESNET = ROOT / "samples" / "resnet_bn.conv"

SMALL = """\
import keras
from keras import layers

inputs = keras.Input(shape=(12, 12, 3), name="image")
x = layers.Conv2D(8, 3, padding="same", use_bias=False, name="stem")(inputs)
x = layers.BatchNormalization(name="stem_bn")(x)
x = layers.ReLU(name="stem_relu")(x)
x = layers.MaxPooling2D(2, name="pool")(x)
x = layers.Conv2D(16, 3, activation="relu", name="body")(x)
x = layers.GlobalAveragePooling2D(name="gap")(x)
outputs = layers.Dense(5, name="head")(x)
model = keras.Model(inputs, outputs)
"""


WIDE = """\
import keras
from keras import layers

inputs = keras.Input(shape=(64, 64, 3), name="image")
x = layers.Conv2D(8, 3, padding="same", name="stem")(inputs)
outputs = layers.ReLU(name="relu")(x)
model = keras.Model(inputs, outputs)
"""


def _int8(source=SMALL, **options) -> onnx.ModelProto:
    options = {"precision": "int8", "calibration": "random", "calibration_count": 8, **options}
    model = resolve_text(source) if isinstance(source, str) else source
    return convc.build(model, options=BuildOptions(**options))


def _optimized_ops(proto: onnx.ModelProto, tmp_path: Path) -> list[str]:
    """The op types of onnxruntime's optimized graph: what it runs."""
    so = ort.SessionOptions()
    so.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    so.log_severity_level = 3
    ort.InferenceSession(proto.SerializeToString(), so, providers=["CPUExecutionProvider"])
    return [node.op_type for node in onnx.load(so.optimized_model_filepath).graph.node]


def _weights(proto: onnx.ModelProto) -> dict[str, np.ndarray]:
    return {
        t.name: numpy_helper.to_array(t)
        for t in proto.graph.initializer
        if t.name.endswith("_quantized") and t.data_type == onnx.TensorProto.INT8
    }


# -- the model ----------------------------------------------------------------------------------


def test_an_int8_build_runs_on_onnxruntimes_integer_kernels(tmp_path):
    proto = _int8(resolve_text(RESNET.read_text()))
    assert model_precision(proto) == "int8"
    settings = model_int8_settings(proto)
    assert settings == {
        "calibration": {"method": "minmax", "samples": 8},
        "float32_layers": {},
        "keep_float": [],
        "weight_bits": 7,
    }
    onnx.checker.check_model(proto, full_check=True)
    ops = _optimized_ops(proto, tmp_path)
    assert ops.count("QLinearConv") == 9, ops  # every convolution of resnet_bn
    assert ops.count("QLinearAdd") == 3, ops
    assert "Conv" not in ops and "Add" not in ops, ops  # nothing left in float


def test_weights_are_per_channel_int8_of_7_bits_unless_8_are_asked_for():
    seven, eight = _weights(_int8()), _weights(_int8(weight_bits=8))
    assert (
        set(seven)
        == set(eight)
        == {"stem/kernel_quantized", "body/kernel_quantized", "head/kernel_quantized"}
    )
    for name in seven:
        assert np.abs(seven[name]).max() == 64, name  # symmetric 7 bits: -64 .. 64
        assert np.abs(eight[name]).max() == 127, name
    plan = read_plan(_int8())
    scales = {w.tensor: w.scales for w in plan.weights if w.dtype == "int8"}
    assert scales["stem/kernel_DequantizeLinear_Output"].shape == (8,)  # one per output channel
    assert scales["head/kernel_DequantizeLinear_Output"].shape == (5,)  # per Dense output column


def test_the_plan_lists_every_quantized_tensor():
    proto = _int8()
    plan = read_plan(proto)
    quantize_nodes = [n for n in proto.graph.node if n.op_type == "QuantizeLinear"]
    assert len(plan.activations) == len(quantize_nodes) >= 5
    for tensor in plan.activations:
        assert tensor.scale > 0 and tensor.dtype == "uint8" and 0 <= tensor.zero_point <= 255
    # the ReLU's range was folded into the convolution's quantization: zero point 0
    relu = next(t for t in plan.activations if t.tensor == "stem_relu/relu")
    assert relu.zero_point == 0
    assert "stem_relu/relu" not in [n.op_type for n in proto.graph.node]
    assert not any(n.op_type == "Relu" for n in proto.graph.node)


@pytest.mark.parametrize(
    ("keep", "float_layers"),
    [(("first",), {"stem"}), (("last",), {"head"}), (("first", "body"), {"stem", "body"})],
    ids=["first", "last", "first-and-named"],
)
def test_kept_layers_stay_float32(keep, float_layers):
    proto = _int8(keep_float=keep)
    weights = {"stem", "body", "head"}
    quantized = {name.split("/")[0] for name in _weights(proto)}
    assert quantized == weights - float_layers
    floats = {
        t.name.split("/")[0]
        for t in proto.graph.initializer
        if t.name.endswith("/kernel") and t.data_type == onnx.TensorProto.FLOAT
    }
    assert floats == float_layers
    assert model_int8_settings(proto)["keep_float"] == sorted(keep)


def test_the_calibration_sets_the_ranges():
    """More samples widen min-max ranges (never narrow them); percentile and entropy ranges
    ignore an outlier that min-max keeps."""

    def scales(model=SMALL, **options):
        return {t.tensor: t.scale for t in read_plan(_int8(model, **options)).activations}

    few, many = scales(calibration_count=2), scales(calibration_count=16)
    assert all(many[name] >= few[name] for name in few)
    assert any(many[name] > few[name] for name in few)

    model = resolve_text(WIDE)
    samples = np.random.default_rng(0).standard_normal((8, 64, 64, 3)).astype(np.float32)
    samples[3, 5, 5, 1] = 40.0  # one pixel of one sample
    minmax = scales(model, calibration=samples)
    assert minmax["stem/transpose"] == pytest.approx((40 - samples.min()) / 255, rel=1e-6)
    percentile = scales(model, calibration=samples, calibration_method="percentile")
    entropy = scales(model, calibration=samples, calibration_method="entropy")
    assert set(percentile) == set(entropy) == set(minmax)
    assert all(percentile[name] <= minmax[name] * 1.0001 for name in minmax)
    # 99.999 % of 98,304 input values keeps the outlier; the convolutions' outputs narrow
    assert percentile["relu/relu"] < 0.9 * minmax["relu/relu"]
    assert entropy["stem/transpose"] < 0.3 * minmax["stem/transpose"]


def test_a_channels_first_interface_takes_the_same_samples_in_keras_layout():
    """The calibration samples are in Keras's layout whatever --io-layout says: the two models
    are quantized alike and compute the same numbers."""
    keras_io, first_io = _int8(), _int8(io_layout="channels_first")
    # the channels_last input is quantized before and after its Transpose, at one scale
    assert {t.scale for t in read_plan(keras_io).activations} == {
        t.scale for t in read_plan(first_io).activations
    }
    x = np.random.default_rng(5).standard_normal((2, 12, 12, 3)).astype(np.float32)
    a = convc.run(keras_io, x).outputs["head"]
    b = convc.run(first_io, np.ascontiguousarray(x.transpose(0, 3, 1, 2))).outputs["head"]
    np.testing.assert_array_equal(a, b)


def test_int8_outputs_are_near_the_float32_ones():
    model = resolve_text(SMALL)
    x = np.random.default_rng(9).standard_normal((4, 12, 12, 3)).astype(np.float32)
    float32 = convc.run(convc.build(model), x).outputs["head"]
    int8 = convc.run(_int8(model, calibration_count=32), x).outputs["head"]
    assert not np.array_equal(float32, int8)
    error = np.abs(int8 - float32).max() / np.abs(float32).max()
    assert error < 0.1, error


def test_the_opset_is_at_most_what_onnxruntime_quantizes():
    assert _int8(target="ort").opset_import[0].version == INT8_MAX_OPSET
    assert _int8(opset=19).opset_import[0].version == 19
    with pytest.raises(ConvcError, match="opset 28 is too new for an int8 model"):
        BuildOptions(precision="int8", calibration="random", opset=28)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"precision": "int8"}, "an int8 model needs calibration data"),
        ({"calibration": "random"}, "the calibration applies to int8 models"),
        ({"weight_bits": 8}, "the weight bits applies to int8 models"),
        ({"keep_float": ("first",)}, "the keep_float applies to int8 models"),
        ({"calibration_method": "entropy"}, "the calibration method applies to int8 models"),
        (
            {"precision": "int8", "calibration": "random", "calibration_method": "mse"},
            "unknown calibration method 'mse'",
        ),
        (
            {"precision": "int8", "calibration": "random", "calibration_count": 0},
            "positive integer, got 0",
        ),
        (
            {"precision": "int8", "calibration": "random", "weight_bits": 6},
            "weight_bits must be 7 or 8",
        ),
        (
            {"precision": "int8", "calibration": "random", "io_dtype": "float16"},
            "float16 inputs and outputs need --precision float16",
        ),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_wrong_int8_options_are_errors(options, message):
    with pytest.raises(ConvcError, match=message):
        BuildOptions(**options)


def test_keep_float_names_a_layer_of_the_model():
    with pytest.raises(ConvcError, match="the model has no layer 'nope'"):
        _int8(keep_float=("nope",))


def test_the_default_calibration_count_is_documented():
    assert BuildOptions().calibration_count == DEFAULT_CALIBRATION_COUNT
    assert f"default {DEFAULT_CALIBRATION_COUNT}" in (ROOT / "docs" / "int8.md").read_text()


# -- calibration data ---------------------------------------------------------------------------


def _samples(count=6, shape=(12, 12, 3), seed=0):
    return np.random.default_rng(seed).standard_normal((count, *shape)).astype(np.float32)


def test_calibration_from_npy_npz_a_folder_and_arrays(tmp_path):
    model = resolve_text(SMALL)
    samples = _samples()
    np.save(tmp_path / "s.npy", samples)
    (tmp_path / "s.npz").write_bytes(npz_bytes({"image": samples}))
    (tmp_path / "other.npz").write_bytes(npz_bytes({"x": samples}))  # one input: any name
    folder = tmp_path / "folder"
    folder.mkdir()
    np.save(folder / "a.npy", samples[:2])  # a batch
    for i in range(2, 6):
        np.save(folder / f"b{i}.npy", samples[i])  # one sample each
    (folder / "notes.txt").write_text("ignored")
    sources = [tmp_path / "s.npy", tmp_path / "s.npz", tmp_path / "other.npz", folder]
    sources += [str(tmp_path / "s.npy"), samples, {"image": samples}]
    for source in sources:
        calibration = read_calibration(source, model, count=4)
        np.testing.assert_array_equal(calibration.samples["image"], samples)
        assert calibration.used == 4 and calibration.size == 6
        np.testing.assert_array_equal(calibration.held_out()["image"], samples[4:])
    one = read_calibration(samples[0], model, count=4)  # a single sample, without the axis
    assert one.size == one.used == 1 and one.held_out() is None


def test_random_calibration_is_seeded_and_holds_as_many_out():
    model = resolve_text(SMALL)
    a, b = read_calibration("random", model, 5, seed=1), read_calibration("random", model, 5, 1)
    np.testing.assert_array_equal(a.samples["image"], b.samples["image"])
    assert a.size == 10 and a.held_out()["image"].shape == (5, 12, 12, 3)
    c = read_calibration("random", model, 5, seed=2)
    assert not np.array_equal(a.samples["image"], c.samples["image"])


def test_images_need_pillow_or_are_read_as_keras_reads_them(tmp_path):
    model = resolve_text(SMALL)
    folder = tmp_path / "images"
    folder.mkdir()
    try:
        from PIL import Image
    except ImportError:
        (folder / "a.png").write_bytes(b"\x89PNG\r\n\x1a\n")
        with pytest.raises(ConvcError, match="reading images needs Pillow") as caught:
            read_calibration(folder, model)
        assert "convc[images]" in caught.value.help
        return
    pixels = np.random.default_rng(0).integers(0, 256, (24, 36, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(folder / "a.png")
    calibration = read_calibration(folder, model)
    assert calibration.samples["image"].shape == (1, 12, 12, 3)
    assert calibration.samples["image"].min() >= 0 and calibration.samples["image"].max() <= 255


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (
            lambda d: np.save(d / "c.npy", _samples(shape=(12, 12, 4))),
            r"shape \(6, 12, 12, 4\); expected \(samples, 12, 12, 3\)",
        ),
        (
            lambda d: np.save(d / "c.npy", np.zeros((2, 12, 12, 3), bool)),
            "dtype bool; real numbers",
        ),
        (lambda d: np.save(d / "c.npy", np.full((2, 12, 12, 3), np.nan)), "NaN or infinite"),
        (lambda d: np.save(d / "c.npy", np.zeros((0, 12, 12, 3))), r"shape \(0, 12, 12, 3\)"),
        (
            lambda d: (d / "c.npz").write_bytes(
                npz_bytes({"image": _samples(), "extra": _samples()})
            ),
            "has an array 'extra'",
        ),
        (lambda d: (d / "c.txt").write_text("1 2 3"), "unknown calibration format"),
        (lambda d: (d / "c.npy").write_bytes(b"not an array"), "not an .npy array"),
        (lambda d: None, "no such calibration file or folder"),
    ],
    ids=["shape", "dtype", "nan", "empty", "extra-array", "format", "corrupt", "missing"],
)
def test_wrong_calibration_data_is_a_located_error(tmp_path, make, message):
    make(tmp_path)
    path = next(iter(sorted(tmp_path.iterdir())), tmp_path / "missing.npy")
    with pytest.raises(ConvcError, match=message) as caught:
        read_calibration(path, resolve_text(SMALL))
    assert caught.value.path is not None and Path(caught.value.path).name.startswith(
        ("c.", "missing")
    )


def test_a_folder_of_mixed_or_no_samples_is_refused(tmp_path):
    model = resolve_text(SMALL)
    with pytest.raises(ConvcError, match="holds no images"):
        read_calibration(tmp_path, model)
    np.save(tmp_path / "a.npy", _samples(1))
    (tmp_path / "b.png").write_bytes(b"")
    with pytest.raises(ConvcError, match="both .npy files and images"):
        read_calibration(tmp_path, model)


def test_a_model_with_two_inputs_takes_samples_by_name(tmp_path):
    two = resolve_text(
        "import keras\nfrom keras import layers\n"
        'a = keras.Input(shape=(4,), name="a")\nb = keras.Input(shape=(4,), name="b")\n'
        "outputs = layers.Dense(3)(layers.Add()([a, b]))\n"
        "model = keras.Model([a, b], outputs)\n"
    )
    with pytest.raises(ConvcError, match="the model has 2 inputs"):
        read_calibration(_samples(shape=(4,)), two)
    with pytest.raises(ConvcError, match="different numbers of samples"):
        read_calibration({"a": _samples(3, (4,)), "b": _samples(4, (4,))}, two)
    with pytest.raises(ConvcError, match="no samples for input 'b'"):
        read_calibration({"a": _samples(3, (4,))}, two)
    proto = convc.build(
        two,
        options=BuildOptions(
            precision="int8", calibration={"a": _samples(8, (4,)), "b": _samples(8, (4,), 1)}
        ),
    )
    assert model_precision(proto) == "int8"


# -- the command line ---------------------------------------------------------------------------


def test_the_command_line_builds_and_runs_an_int8_model(tmp_path, capsys):
    source = tmp_path / "small.conv"
    source.write_text(SMALL)
    np.save(tmp_path / "cal.npy", _samples(10))
    output = tmp_path / "small.onnx"
    assert (
        main(
            [
                "build",
                str(source),
                "-o",
                str(output),
                "--precision",
                "int8",
                "--calibration",
                str(tmp_path / "cal.npy"),
                "--calibration-method",
                "percentile",
                "--calibration-count",
                "6",
                "--keep-float",
                "last",
                "--weight-bits",
                "8",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert ", int8" in out
    assert "  kept float32 (1 layer): head (asked by --keep-float)\n" in out
    proto = onnx.load(output)
    assert model_int8_settings(proto) == {
        "calibration": {"method": "percentile", "samples": 6},
        "float32_layers": {"head": ["keep_float"]},
        "keep_float": ["last"],
        "weight_bits": 8,
    }
    assert main(["run", str(output)]) == 0
    assert "head: shape (1, 5)" in capsys.readouterr().out
    assert main(["run", str(source), "--precision", "int8", "--calibration", "random"]) == 0
    assert main(["build", str(source), "--precision", "int8"]) == 1
    assert "an int8 model needs calibration data" in capsys.readouterr().err
    assert main(["build", str(source), "--calibration", "random"]) == 1
    assert "applies to int8 models" in capsys.readouterr().err
    assert main(["run", str(output), "--precision", "int8", "--calibration", "random"]) == 1
    assert "'precision' applies to .conv sources" in capsys.readouterr().err
    settings = json.loads(next(e.value for e in proto.metadata_props if e.key == "convc.int8"))
    assert settings["weight_bits"] == 8

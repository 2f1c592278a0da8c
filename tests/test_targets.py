"""Targets, runtimes and input/output layouts: what `--target`, `--runtime` and `--io-layout`
promise, checked against the NumPy reference in every runtime that is installed."""

from __future__ import annotations

import numpy as np
import pytest

from convc.cli import main
from convc.compiler import compile_text, model_weights, resolve_text
from convc.diagnostics import ConvcError
from convc.reference import run_reference
from convc.runners import available, open_runner
from convc.targets import NEWEST_OPSET, OLDEST_OPSET, RUNTIMES, TARGETS
from convc.weights import exercise

from matrix import runtime_missing

EVERY_LAYER = """\
Input(shape=(6, 7, 3))
Conv2D(4, 2, padding='same', activation='gelu')
SeparableConv2D(6, 3, padding='same', activation='hard_silu')
Conv2DTranspose(4, 3, strides=2, padding='same', output_padding=1, activation='mish')
UpSampling2D((2, 1), interpolation='bilinear')
ZeroPadding2D(((1, 0), (2, 1)))
Cropping2D((1, 2))
DepthwiseConv2D(3, strides=2, activation='relu6')
UpSampling2D(2)
Conv2D(4, 1, activation='softmax')
Conv2D(4, 1, activation='sparsemax')
Conv2D(6, 1, activation='glu')
"""


def _reference(text: str, batch: int = 2):
    model = resolve_text(text)
    weights = model_weights(model)
    x = np.random.default_rng(3).standard_normal((batch, *model.input.shape[1:]))
    x = x.astype(np.float32)
    return model, x, run_reference(model, weights, x)[-1]


def _run(proto, runtime: str, x: np.ndarray) -> np.ndarray:
    runner = open_runner(proto, runtime)
    (y,) = runner.run({runner.input_names[0]: x}).values()
    return y


def _need(runtime: str) -> None:
    missing = runtime_missing(runtime)
    if missing:
        pytest.skip(missing)


@pytest.mark.parametrize("runtime", RUNTIMES)
@pytest.mark.parametrize("opset", range(OLDEST_OPSET, NEWEST_OPSET + 1))
def test_every_opset_runs_in_every_runtime(opset, runtime):
    _need(runtime)
    if opset > TARGETS[runtime].max_opset:
        pytest.skip(f"{runtime} reads opsets up to {TARGETS[runtime].max_opset}")
    _, x, expected = _reference(EVERY_LAYER)
    proto = compile_text(EVERY_LAYER, target=runtime, opset=opset)
    assert proto.opset_import[0].version == opset
    np.testing.assert_allclose(_run(proto, runtime, x), expected, rtol=1e-4, atol=1e-4)


# -- input/output layouts ---------------------------------------------------------------------

LAST = "Input(shape=(8, 9, 3))\nConv2D(4, 3, padding='same')\nUpSampling2D(2)\nConv2D(2, 1)\n"
FIRST = (
    "Input(shape=(3, 8, 9))\nConv2D(4, 3, data_format='channels_first')\n"
    "Cropping2D(1, data_format='channels_first')\n"
)


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_channels_first_io_spares_a_channels_last_net_its_transposes(runtime):
    _need(runtime)
    _, x, expected = _reference(LAST)
    proto = compile_text(LAST, io_layout="channels_first")
    assert [n.op_type for n in proto.graph.node].count("Transpose") == 0
    dims = [d.dim_value or d.dim_param for d in proto.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch", 3, 8, 9]
    actual = _run(proto, runtime, x.transpose(0, 3, 1, 2))
    np.testing.assert_allclose(actual, expected.transpose(0, 3, 1, 2), rtol=1e-4, atol=1e-4)


def test_channels_last_io_on_a_channels_first_net():
    _, x, expected = _reference(FIRST)
    proto = compile_text(FIRST, io_layout="channels_last")
    dims = [d.dim_value or d.dim_param for d in proto.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch", 8, 9, 3]
    actual = _run(proto, "ort", x.transpose(0, 2, 3, 1))
    np.testing.assert_allclose(actual, expected.transpose(0, 2, 3, 1), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(
    ("text", "io_layout", "same"),
    [
        (FIRST, "channels_first", True),
        (LAST, "channels_last", True),
        (FIRST, "channels_last", False),
        (LAST, "channels_first", False),
    ],
    ids=["first-as-first", "last-as-last", "first-as-last", "last-as-first"],
)
def test_io_layout_matching_keras_changes_nothing(text, io_layout, same):
    """A layout that is already the layers' own is Keras's layout (the default, ``keras``): the
    same model; the other layout is another model, so that the comparison can fail."""
    assert (compile_text(text, io_layout=io_layout) == compile_text(text)) is same
    assert (
        compile_text(text, io_layout=io_layout) == compile_text(text, io_layout="keras")
    ) is same


# -- workarounds ------------------------------------------------------------------------------


def _workarounds(proto) -> str:
    return "".join(p.value for p in proto.metadata_props if p.key == "convc.workarounds")


def test_one_d_resize_is_seen_as_two_d_where_a_runtime_needs_it():
    text = "Input(shape=(6, 4))\nConv1D(3, 1)\nUpSampling1D(3)\n"
    for target in ("portable", "opencv"):
        proto = compile_text(text, target=target)
        resize = next(n for n in proto.graph.node if n.op_type == "Resize")
        assert "up_sampling1d: 1-D Resize on a 4-D view" in _workarounds(proto)
        assert resize.input[0].endswith("/view")
    proto = compile_text(text, target="ort")
    assert _workarounds(proto) == ""
    assert "Reshape" not in [n.op_type for n in proto.graph.node]


def test_bilinear_of_middle_axes_moves_to_channels_first_where_a_runtime_needs_it():
    text = "Input(shape=(4, 5, 3))\nUpSampling2D(2, interpolation='bilinear')\n"
    ops = [n.op_type for n in compile_text(text, target="ort").graph.node]
    assert ops == ["Resize"]
    proto = compile_text(text, target="opencv")
    assert [n.op_type for n in proto.graph.node] == ["Transpose", "Resize", "Transpose"]
    assert "Resize in channels-first order" in _workarounds(proto)


def test_nearest_upsampling_of_channels_last_values_is_a_repeat():
    """Reshape-Concat-Reshape, 3 to 25 times faster than Resize in onnxruntime."""
    text = "Input(shape=(4, 5, 6, 3))\nUpSampling3D((2, 1, 3))\n"
    ops = [n.op_type for n in compile_text(text).graph.node]
    assert ops == ["Reshape", "Concat", "Concat", "Reshape"]


def test_nearest_upsampling_3d_after_a_conv_resizes_a_4d_view():
    text = "Input(shape=(4, 5, 6, 3))\nConv3D(2, 1)\nUpSampling3D(2)\n"
    ops = [n.op_type for n in compile_text(text, target="ort").graph.node]
    assert ops.count("Resize") == 1 and "Concat" in ops  # H, W by Resize; D by a repeat


@pytest.mark.parametrize(
    "text",
    [
        "Input(shape=(1, 6, 2))\nConv2D(3, 1)\nUpSampling2D((3, 2), interpolation='bicubic')\nConv2D(3, 1)\n",
        "Input(shape=(1, 1, 2))\nUpSampling2D((3, 2), interpolation='bilinear')\n",
        "Input(shape=(5, 1, 2))\nConv2D(2, 1)\nUpSampling2D((1, 4), interpolation='bilinear')\n",
        "Input(shape=(1, 5, 1, 2))\nConv3D(2, 1)\nUpSampling3D((2, 2, 3))\nConv3D(2, 1)\n",
    ],
    ids=["bicubic-h1", "bilinear-1x1", "bilinear-w1", "nearest3d-unit-axes"],
)
@pytest.mark.parametrize("runtime", RUNTIMES)
def test_upsampling_of_length_one_axes(text, runtime):
    """OpenCV's linear Resize reads out of bounds along a length-1 axis; tract's optimizer
    breaks on an Expand of one. convc repeats such an axis with a Concat."""
    _need(runtime)
    _, x, expected = _reference(text)
    actual = _run(compile_text(text, target=runtime), runtime, x)
    np.testing.assert_allclose(actual, expected, rtol=1e-4, atol=1e-4)


# -- runners and the command line ------------------------------------------------------------


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_run_command_in_each_runtime(runtime, capsys):
    _need(runtime)
    assert main(["run", "samples/tiny.conv", "--runtime", runtime]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"runtime: {runtime} (")


def test_a_missing_runtime_says_how_to_get_it(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "tract" else real(name, *a)
    )
    assert not available("tract")
    with pytest.raises(ConvcError, match="the tract runtime is not installed") as info:
        open_runner(compile_text(LAST), "tract")
    assert 'pip install "convc[runtimes]"' in info.value.help


def test_run_refuses_target_options_for_a_built_model(tmp_path, capsys):
    model = tmp_path / "net.onnx"
    assert main(["build", "samples/tiny.conv", "-o", str(model)]) == 0
    assert main(["run", str(model), "--target", "opencv"]) == 1
    assert "'target' applies to .conv sources" in capsys.readouterr().err


def test_build_reports_target_opset_and_workarounds(tmp_path, capsys):
    source = tmp_path / "net.conv"
    source.write_text("Input(shape=(6, 4))\nConv1D(3, 1)\nUpSampling1D(3)\n")
    assert main(["build", str(source), "--target", "opencv"]) == 0
    out = capsys.readouterr().out
    assert "target opencv, opset 17" in out
    assert "workaround for opencv: up_sampling1d: 1-D Resize on a 4-D view" in out
    assert main(["build", str(source), "--target", "nvidia"]) == 1
    assert "unknown target 'nvidia'" in capsys.readouterr().err


def test_run_with_io_layout(capsys):
    assert main(["run", "samples/tiny.conv", "--io-layout", "channels_first"]) == 0


def _upsampling_stacks(count: int = 40):
    """Seeded draws over rank, data_format, a conv before and after or not, axis lengths
    (1 included) and factors: the nearest and interpolating lowerings in every layout."""
    rng = np.random.default_rng(7)
    for _ in range(count):
        rank = int(rng.integers(1, 4))
        first = bool(rng.integers(2))
        fmt = ", data_format='channels_first'" if first else ""
        lengths = [int(rng.choice([1, 2, 3])) for _ in range(rank)]
        factors = [int(rng.choice([1, 2, 3])) for _ in range(rank)]
        channels = int(rng.choice([1, 3]))
        shape = (channels, *lengths) if first else (*lengths, channels)
        size = factors[0] if rank == 1 else tuple(factors)
        interpolation = ""
        if rank == 2:
            interpolation = (
                ", interpolation='" + str(rng.choice(["nearest", "bilinear", "bicubic"])) + "'"
            )
        lines = [f"Input(shape={shape})"]
        conv = f"Conv{rank}D(2, 1{fmt})"
        if rng.integers(2):
            lines.append(conv)
        upsampling_format = fmt if rank > 1 else ""  # UpSampling1D has no data_format
        lines.append(f"UpSampling{rank}D({size}{upsampling_format}{interpolation})")
        if rng.integers(2):
            lines.append(conv)
        yield "\n".join(lines) + "\n"


@pytest.mark.parametrize("runtime", RUNTIMES)
@pytest.mark.parametrize("text", list(_upsampling_stacks()))
def test_random_upsampling_stacks(text, runtime):
    _need(runtime)
    _, x, expected = _reference(text)
    for target in ("portable", runtime):
        actual = _run(compile_text(text, target=target), runtime, x)
        np.testing.assert_allclose(actual, expected, rtol=1e-4, atol=1e-4, err_msg=target)


@pytest.mark.parametrize(
    ("shared", "target", "ops"),
    [
        ("[1, 2]", "portable", ["PRelu"]),
        ("None", "ort", ["PRelu"]),
        ("None", "portable", ["Mul", "GreaterOrEqual", "Where"]),
        ("[-1]", "opencv", ["Mul", "GreaterOrEqual", "Where"]),
    ],
    ids=["per-channel", "ort", "portable", "opencv"],
)
def test_prelu_whose_alpha_is_not_per_channel_avoids_opencvs_fused_prelu(shared, target, ops):
    """OpenCV fuses a PRelu after a Conv and asserts one slope per channel (random alphas found
    it): elsewhere than per-channel, portable and opencv compute Where(x >= 0, x, alpha * x)."""
    text = f"Input(shape=(5, 6, 3))\nConv2D(4, 3)\nPReLU(shared_axes={shared})\n"
    proto = compile_text(text, target=target)
    assert [n.op_type for n in proto.graph.node][-len(ops) - 1 : -1] == ops  # then a Transpose


CONV_OUTPUT_ADDED = """inputs = Input(shape=(9, 7, 7), name="x")
shared = DepthwiseConv2D((1, 3), padding="same", data_format="channels_first")
first = shared(inputs)
second = shared(Conv2D(9, 1, data_format="channels_first")(inputs))
model = keras.Model(inputs, {"mean": Average()([first, second]), "first": first})
"""


@pytest.mark.parametrize("target", ["portable", "ort"])
@pytest.mark.parametrize("workaround", [True, False], ids=["identity", "plain"])
def test_a_conv_output_that_an_add_reads_loads_in_onnxruntime(target, workaround, monkeypatch):
    """onnxruntime fuses an Add into a Conv whose output is also a graph output, and the session
    does not load (random files found it: a shared layer's first application as a model
    output, its two applications averaged); the graph output is an Identity of the Conv."""
    import dataclasses

    import onnxruntime as ort

    import convc.targets

    if not workaround:  # what onnxruntime does without it: the check can fail
        plain = dataclasses.replace(TARGETS[target], conv_output_read_by_add=True)
        monkeypatch.setitem(convc.targets.TARGETS, target, plain)
    model = resolve_text(CONV_OUTPUT_ADDED)
    weights = exercise(model, seed=5)  # non-zero biases
    x = np.random.default_rng(3).standard_normal((2, 9, 7, 7)).astype(np.float32)
    expected = run_reference(model, weights, x)
    arrays = {f"{layer}/{name}": a for layer, vs in weights.items() for name, a in vs.items()}
    proto = compile_text(CONV_OUTPUT_ADDED, arrays, target=target)
    if not workaround:
        with pytest.raises(Exception, match="Failed to find node output"):
            ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
        return
    assert "Identity" in [n.op_type for n in proto.graph.node]
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    outputs = dict(zip(names, session.run(None, {"x": x}), strict=True))
    nodes = {node.name: out for node, out in zip(model.nodes, expected, strict=True)}
    np.testing.assert_allclose(outputs["depthwise_conv2d"], nodes["depthwise_conv2d"], atol=1e-5)
    np.testing.assert_allclose(outputs["average"], nodes["average"], atol=1e-5)


def test_the_target_names_type_lists_every_target():
    from typing import get_args

    from convc.targets import TARGETS, TargetName

    assert set(get_args(TargetName)) == set(TARGETS)

"""Memory bounded by what the model needs (#23, item 4).

``run``, ``check`` and ``golden`` estimate what they would hold from the model's static shapes
and refuse beyond ``--max-memory`` before allocating it; ``build`` copies one weight's bytes at a
time. Sizes here are tiny and the limits small, so that nothing in these tests allocates more
than a few MB, and a refusal is checked to have allocated nothing of what it refused.
"""

from __future__ import annotations

import json
import math
import tracemalloc
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

import convc
from convc import memory, onnxfile
from convc.cli import main
from convc.compiler import compile_model, compile_text
from convc.diagnostics import ConvcError
from convc.memory import (
    RUNTIME_MARGIN,
    WEIGHT_COPIES,
    calibration_bytes,
    check_estimate,
    format_size,
    int8_build_estimate,
    int8_check_estimate,
    live_peak,
    option_value,
    parse_size,
    run_estimate,
)
from convc.resolve import resolve_text

KIB, MIB, GIB = 1 << 10, 1 << 20, 1 << 30

SMALL = "Input(shape=(16, 16, 3), name='image')\nConv2D(8, 3, padding='same')\nReLU()\n"


def _hostile_json(path: Path, batch_shape: list) -> Path:
    """A Sequential model of a few hundred bytes: an input of ``batch_shape`` and three
    Conv2D(64, 3, padding="same"); at (8192, 8192, 3) its activations are 48 GiB at batch 1."""
    conv = [
        {
            "class_name": "Conv2D",
            "config": {"name": f"c{i}", "filters": 64, "kernel_size": 3, "padding": "same"},
        }
        for i in range(3)
    ]
    layers = [{"class_name": "InputLayer", "config": {"name": "x", "batch_shape": batch_shape}}]
    config = {"class_name": "Sequential", "config": {"name": "big", "layers": layers + conv}}
    path.write_text(json.dumps(config))
    return path


class _Traced:
    """Python's and NumPy's allocations (``tracemalloc``): ``growth`` is the most bytes held at
    once since the last ``reset``, beyond what was held then."""

    def reset(self) -> None:
        tracemalloc.reset_peak()
        self.start = tracemalloc.get_traced_memory()[0]

    @property
    def growth(self) -> int:
        return tracemalloc.get_traced_memory()[1] - self.start


@pytest.fixture
def traced():
    tracemalloc.start()
    watch = _Traced()
    watch.reset()
    try:
        yield watch
    finally:
        tracemalloc.stop()


# -- sizes ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("1048576", 1 << 20),
        ("512M", 512 * MIB),
        ("512m", 512 * MIB),
        ("8G", 8 * GIB),
        ("8g", 8 * GIB),
        ("1.5GiB", 3 * GIB // 2),
        ("1.5 GiB", 3 * GIB // 2),
        ("2T", 2 << 40),
        ("64K", 64 * KIB),
        ("64KiB", 64 * KIB),
        ("4Gi", 4 * GIB),
        ("50GB", 50 * 10**9),
        ("50gb", 50 * 10**9),
        ("10MB", 10 * 10**6),
        ("1kB", 1000),
        ("100B", 100),
        (".5G", GIB // 2),
        (" 8G ", 8 * GIB),
    ],
)
def test_sizes_parse(text, size):
    assert parse_size(text) == size


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "is not a size"),
        ("G", "is not a size"),
        ("8X", "is not a size"),
        ("8 G B", "is not a size"),
        ("-1G", "is not a size"),
        ("1e9", "is not a size"),
        ("8GiBs", "is not a size"),
        ("1.5", "a number of bytes is a whole number"),
        ("0", "at least one byte"),
        ("0.1B", "a number of bytes is a whole number"),
        ("0G", "at least one byte"),
    ],
)
def test_sizes_that_are_refused(text, problem):
    with pytest.raises(ConvcError, match=problem):
        parse_size(text)


@pytest.mark.parametrize(
    ("size", "text", "option"),
    [
        (100, "100 B", "1M"),
        (1536, "1.5 KiB", "1M"),
        (512 * MIB, "512 MiB", "512M"),
        (512 * MIB + 1, "512 MiB", "513M"),
        (52_831_420_416, "49.2 GiB", "50G"),
        (8 * GIB, "8 GiB", "8G"),
    ],
)
def test_sizes_are_shown_in_binary_units_and_the_option_allows_the_figure(size, text, option):
    assert format_size(size) == text
    assert option_value(size) == option
    assert parse_size(option) >= size


def test_the_default_limit_is_8_gib_or_three_quarters_of_the_memory(monkeypatch):
    monkeypatch.setattr(memory, "usable_memory", lambda: 64 * GIB)
    assert memory.default_max_memory() == 8 * GIB
    monkeypatch.setattr(memory, "usable_memory", lambda: 4 * GIB)
    assert memory.default_max_memory() == 3 * GIB
    monkeypatch.setattr(memory, "usable_memory", lambda: None)
    assert memory.default_max_memory() == 8 * GIB
    assert memory.max_memory_bytes(None) == 8 * GIB
    assert memory.max_memory_bytes("1K") == memory.max_memory_bytes(1024) == 1024
    with pytest.raises(ConvcError, match="at least one byte"):
        memory.max_memory_bytes(0)
    with pytest.raises(TypeError, match="max_memory"):
        memory.max_memory_bytes(1.5)  # type: ignore[arg-type]


def test_usable_memory_is_read_from_this_machine():
    usable = memory.usable_memory()
    assert usable is None or usable > 64 * MIB


# -- the estimate -----------------------------------------------------------------------------


def _chain(dims: list) -> onnx.ModelProto:
    """x -> Relu a -> Neg b, Abs c (both of a) -> Add d, with a dead end e = Sqrt(b); every value
    of shape ``dims`` (float32), d the graph output."""
    value = lambda name: helper.make_tensor_value_info(name, TensorProto.FLOAT, dims)  # noqa: E731
    nodes = [
        helper.make_node("Relu", ["x"], ["a"]),
        helper.make_node("Neg", ["a"], ["b"]),
        helper.make_node("Sqrt", ["b"], ["e"]),
        helper.make_node("Abs", ["a"], ["c"]),
        helper.make_node("Add", ["b", "c"], ["d"]),
    ]
    graph = helper.make_graph(
        nodes, "chain", [value("x")], [value("d")], value_info=[value(n) for n in "abce"]
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_live_peak_counts_the_values_alive_at_once():
    """By hand, in values of 400 bytes: a; a b; a b e (e is never read: it dies at once); a b c
    (a's last reader); b c d; d. The peak is 3 values, d is kept to the end."""
    proto = _chain([1, 100])
    assert live_peak(proto) == 3 * 400


def test_unknown_and_named_dimensions_take_the_inputs_sizes_or_the_batch():
    proto = _chain(["N", 100])
    assert live_peak(proto, {"N": 3}) == 3 * 3 * 400
    assert live_peak(proto, batch=5) == 3 * 5 * 400  # unbound: the batch, as random inputs
    for info in proto.graph.value_info:
        info.type.tensor_type.shape.dim[0].Clear()  # unknown, as in convc's models
    assert live_peak(proto, {"N": 3}) == 2 * 400 + 3 * 400  # b, c unknown (1), d named (3)
    assert live_peak(proto, {"N": 3}, batch=3) == 3 * 3 * 400


def test_run_estimate_counts_inputs_values_kept_sets_and_weights():
    proto = _chain(["N", 100])
    weight = helper.make_tensor(
        "w", TensorProto.FLOAT, [10], np.zeros(10, np.float32).tobytes(), raw=True
    )
    proto.graph.initializer.append(weight)
    estimate = run_estimate(proto, {"x": (3, 100)})
    assert estimate.batch == 3
    assert estimate.activations == 1200 + int(3 * 1200 * RUNTIME_MARGIN)
    assert estimate.weights == WEIGHT_COPIES["run"] * 40
    recorded = run_estimate(proto, {"x": (3, 100)}, kept_sets=2)
    assert recorded.activations == estimate.activations + 2 * (1200 + 1200)
    everything = run_estimate(proto, {"x": (3, 100)}, keeps_everything=True)
    assert everything.activations == 1200 + int(5 * 1200 * RUNTIME_MARGIN)  # a b c d e


def _dense_without_shapes() -> onnx.ModelProto:
    """y = Relu(x @ w), x (N, 512), w a 1 MiB weight: a model from elsewhere, which states no
    shapes of its inner values."""
    weight = np.zeros((512, 512), np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["m"]), helper.make_node("Relu", ["m"], ["y"])],
        "dense",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 512])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [onnx.numpy_helper.from_array(weight, "w")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_a_model_without_shapes_is_shape_inferred_without_its_weights_becoming_inputs(tmp_path):
    proto = _dense_without_shapes()
    assert memory.input_names(proto) == ["x"]
    estimate = run_estimate(proto, {"x": (2, 512)})
    # m (4 KiB), then y beside it: 8 KiB at the peak; x 4 KiB; w 1 MiB
    assert estimate.activations == 4 * KIB + int(8 * KIB * RUNTIME_MARGIN)
    assert estimate.weights == WEIGHT_COPIES["run"] * MIB
    path = tmp_path / "dense.onnx"
    onnx.save(proto, path)
    x = tmp_path / "x.npy"
    np.save(x, np.ones((2, 512), np.float32))
    assert main(["run", str(path), "--input", str(x)]) == 0
    assert main(["run", str(path), "--input", str(x), "--max-memory", "1M"]) == 1


def test_check_estimate_by_hand():
    """Input (8, 8, 3), Conv2D(4, 3, 'same'), ReLU at batch 2, float32: the input is 1,536 bytes,
    each output 2,048. The convolution's temporaries: 2 inputs, 3 outputs and its 27 gathered
    taps of 512 bytes per channel (3 channels x 9 taps <= 64, so the reference gathers them all):
    3,072 + 6,144 + 13,824 = 23,040, more than the ReLU's (2,048 + 2 x 2,048)."""
    model = resolve_text(
        "Input(shape=(8, 8, 3))\nConv2D(4, 3, padding='same', name='conv')\nReLU(name='relu')\n"
    )
    proto = compile_model(model, None, layer_outputs=True)
    workspace = {node.name: memory.reference_workspace(node, 2) for node in model.nodes}
    assert workspace == {"conv": 23_040, "relu": 6_144}
    estimate = check_estimate(model, proto, 2)
    runtime = int(live_peak(proto, batch=2) * RUNTIME_MARGIN)
    assert runtime > 2 * 2048  # the per-layer outputs stay to the end
    assert estimate.activations == 2 * 1536 + 2 * 2048 + max(23_040, runtime)
    assert estimate.weights == WEIGHT_COPIES["check"] * 4 * (3 * 3 * 3 * 4 + 4)
    assert estimate.batch == 2
    fixed = resolve_text("Input(shape=(8, 8, 3), batch_size=4)\nReLU()\n")
    assert check_estimate(fixed, compile_model(fixed, None, layer_outputs=True), 1).batch == 4


def test_the_hostile_model_is_estimated_at_its_activations():
    """The issue's example, from its shapes alone: 3 x 16 GiB of convolution outputs."""
    model = resolve_text("Input(shape=(8192, 8192, 3))\n" + "Conv2D(64, 3, padding='same')\n" * 3)
    outputs = 3 * 8192 * 8192 * 64 * 4
    proto = compile_model(model, None, layer_outputs=True)
    assert run_estimate(compile_model(model, None)).activations >= outputs
    assert check_estimate(model, proto, 1).activations >= 2 * outputs


# -- refusals ---------------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["check", "run"])
def test_a_hostile_model_file_is_refused_before_anything_is_allocated(
    command, tmp_path, capsys, traced
):
    path = _hostile_json(tmp_path / "big.json", [None, 8192, 8192, 3])
    assert path.stat().st_size < 600
    assert main([command, str(path)]) == 1
    err = capsys.readouterr().err
    assert f"big.json: error: {command} would hold about " in err
    assert "GiB of activations (batch 1)" in err
    assert "the limit is " in err and "help: give --max-memory " in err
    assert traced.growth < 64 * MIB  # its input alone would be 768 MiB


@pytest.mark.parametrize("command", ["check", "run"])
def test_dimensions_given_by_input_shape_are_estimated_too(command, tmp_path, capsys):
    path = _hostile_json(tmp_path / "flexible.json", [None, None, None, 3])
    assert main([command, str(path), "--input-shape", "8192,8192,3"]) == 1
    assert f"{command} would hold about " in capsys.readouterr().err
    args = [command, str(path), "--input-shape", "8,8,3", "--max-memory", "64M"]
    assert main(args) == 0


@pytest.mark.parametrize("command", ["check", "run"])
def test_the_option_raises_the_limit(command, tmp_path, capsys, traced):
    source = tmp_path / "small.conv"
    source.write_text(SMALL)
    assert main([command, str(source), "--max-memory", "16K"]) == 1
    err = capsys.readouterr().err
    assert f"{command} would hold about " in err and "; the limit is 16 KiB" in err
    suggested = err.split("give --max-memory ")[1].split()[0]
    assert main([command, str(source), "--max-memory", suggested]) == 0
    assert main([command, str(source), "--batch", "64", "--max-memory", suggested]) == 1
    assert "(batch 64)" in capsys.readouterr().err


def test_a_given_input_is_estimated_at_its_own_shape(tmp_path, capsys):
    """An .onnx model with named dimensions: the input file's shape binds them."""
    model = tmp_path / "chain.onnx"
    onnx.save(_chain(["N", "W"]), model)
    x = tmp_path / "x.npy"
    np.save(x, np.ones((2, 100_000), np.float32))  # 0.8 MB; 3 values of it at the peak
    assert main(["run", str(model), "--input", str(x), "--max-memory", "4M"]) == 1
    err = capsys.readouterr().err
    assert f"{model}: error: run would hold about " in err and "(batch 2)" in err
    assert main(["run", str(model), "--input", str(x), "--max-memory", "8M"]) == 0


def test_the_size_option_is_a_usage_error_when_it_is_not_a_size(tmp_path, capsys):
    source = tmp_path / "small.conv"
    source.write_text(SMALL)
    with pytest.raises(SystemExit) as exit_:
        main(["check", str(source), "--max-memory", "lots"])
    assert exit_.value.code == 2
    assert "argument --max-memory: 'lots' is not a size" in capsys.readouterr().err


def test_golden_record_and_verify_are_bounded_too(tmp_path, capsys):
    source = tmp_path / "small.conv"
    source.write_text(SMALL)
    golden = tmp_path / "golden"
    assert main(["golden", "record", str(source), str(golden), "--max-memory", "16K"]) == 1
    assert "golden record would hold about " in capsys.readouterr().err
    assert not golden.exists()
    assert main(["golden", "record", str(source), str(golden), "--sets", "2"]) == 0
    assert main(["golden", "verify", str(golden), "--max-memory", "16K"]) == 1
    err = capsys.readouterr().err
    assert f"{golden}: error: golden verify would hold about " in err
    assert main(["golden", "verify", str(golden), "--max-memory", "64M"]) == 0


def test_the_api_takes_max_memory(tmp_path):
    source = tmp_path / "small.conv"
    source.write_text(SMALL)
    for call in (convc.run, convc.check):
        with pytest.raises(ConvcError, match="would hold about .*; the limit is 1 KiB"):
            call(source, max_memory="1K")
        with pytest.raises(ConvcError, match="would hold about"):
            call(source, max_memory=1024)
    assert convc.check(source, max_memory="64M").ok
    assert convc.run(source, max_memory=64 * MIB).outputs
    proto = compile_text(SMALL)
    with pytest.raises(ConvcError, match="run would hold about"):
        convc.run(proto, max_memory="1K")
    x = np.zeros((3, 16, 16, 3), np.float32)
    with pytest.raises(ConvcError, match=r"\(batch 3\)"):
        convc.check(source, inputs={"image": x}, max_memory="1K")


# -- the int8 check ---------------------------------------------------------------------------

INT8 = ["--precision", "int8", "--calibration", "random", "--calibration-count", "4"]
INT8_OPTIONS = convc.BuildOptions(precision="int8", calibration="random", calibration_count=4)


def test_int8_check_estimate_by_hand():
    """Input (8, 8, 3), Conv2D(4, 3, 'same'), ReLU. The float32 model's values for one sample:
    the input transposed (768 bytes), the convolution, the ReLU and the output transposed back
    (1,024 each): 3,840 bytes; two of 1,024 alive at once at the most (``live_peak``).

    * calibration, 4 feeds of one sample: every value, twice (7,680), and for each feed 14 small
      arrays (a minimum and a maximum of the 4 values and the input, and 4 for the feed):
      7,680 + 4 x 14 x 192 = 18,432; with 100 feeds, 7,680 + 268,800. The histogram methods,
      with 8 feeds, add every value of the 8 feeds and two copies of the largest value of the 8
      instead: 7,680 + 30,720 + 16,384 = 54,784;
    * accuracy, 3 inputs at a time: the float32 session's values (6,144 x 1.5 = 9,216), the int8
      session's, half of that (4,608), both outputs (2 x 3,072) and two float64 copies of one
      input's output (4 x 1,024): 24,064;
    * agreement, 2 inputs at a time: the integers of every value, twice (2 x 7,680 / 4), and
      the convolution recomputed: its reference temporaries (23,040), two copies of its input
      (2 x 1,536) and of its output (2 x 2,048): 3,840 + 30,208 = 34,048, more than the
      ReLU's (6,144 + 2 x 2,048 + 2 x 2,048 + 3,840)."""
    model = resolve_text(
        "Input(shape=(8, 8, 3))\nConv2D(4, 3, padding='same', name='conv')\nReLU(name='relu')\n"
    )
    proto = compile_model(model, None)
    assert live_peak(proto, batch=3) == 2 * 3 * 1024
    sizes = {"kept": 1000, "calibrating": 4, "feed": 1, "chunk": 3, "agreement": 2}
    estimate = int8_check_estimate(model, proto, method="minmax", inputs="given", **sizes)
    assert estimate.activations == 1000 + 34_048
    assert estimate.weights == WEIGHT_COPIES["int8 check"] * 4 * (3 * 3 * 3 * 4 + 4)
    assert (estimate.command, estimate.batch, estimate.inputs) == ("int8 check", 3, "given")
    many = sizes | {"calibrating": 100}
    minmax = int8_check_estimate(model, proto, method="minmax", inputs="given", **many)
    assert minmax.activations == 1000 + 7_680 + 268_800
    eight = sizes | {"calibrating": 8}
    entropy = int8_check_estimate(model, proto, method="entropy", inputs="given", **eight)
    assert entropy.activations == 1000 + 7_680 + 30_720 + 16_384
    wide = int8_check_estimate(
        model, proto, method="minmax", inputs="given", **(sizes | {"chunk": 30})
    )
    # 30 at a time: 61,440 x 1.5 + 30,720 + 2 x 30,720 + 4,096
    assert wide.activations == 1000 + 92_160 + 46_080 + 61_440 + 4_096


def test_a_hostile_model_file_is_refused_before_int8_calibration_samples_are_drawn(
    tmp_path, capsys, traced
):
    """128 random calibration samples of (8192, 8192, 3) would be 96 GiB."""
    path = _hostile_json(tmp_path / "big.json", [None, 8192, 8192, 3])
    args = ["check", str(path), "--precision", "int8", "--calibration", "random"]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "big.json: error: int8 check would hold about " in err
    assert "of activations (128 calibration samples, 64 held-out calibration inputs " in err
    assert "help: give --max-memory " in err and "--calibration-count" in err
    assert traced.growth < 64 * MIB  # one sample alone would be 768 MiB


def test_an_int8_check_is_refused_beyond_the_limit_and_the_option_raises_it(tmp_path, capsys):
    source = tmp_path / "small.conv"
    source.write_text(SMALL)
    assert main(["check", str(source), *INT8, "--max-memory", "16K"]) == 1
    err = capsys.readouterr().err
    assert "int8 check would hold about " in err and "; the limit is 16 KiB" in err
    assert "(8 calibration samples, 4 held-out calibration inputs 4 at a time)" in err
    suggested = err.split("give --max-memory ")[1].split()[0]
    assert main(["check", str(source), *INT8, "--max-memory", suggested]) == 0
    out = capsys.readouterr().out
    assert "within one step of the int8 reference" in out
    assert "on 4 held-out calibration inputs" in out  # the check ran, and compared numbers
    more = ["--calibration-count", "400", "--max-memory", suggested]
    assert main(["check", str(source), *INT8, *more]) == 1
    assert "(800 calibration samples, 400 held-out calibration inputs 8 at a time)" in (
        capsys.readouterr().err
    )


def test_the_api_takes_max_memory_for_an_int8_check(tmp_path):
    source = tmp_path / "small.conv"
    source.write_text(SMALL)
    with pytest.raises(ConvcError, match="int8 check would hold about .*; the limit is 1 KiB"):
        convc.check(source, options=INT8_OPTIONS, max_memory="1K")
    report = convc.check(source, options=INT8_OPTIONS, max_memory="64M")
    assert report.ok and sum(g.elements for g in report.groups) > 0
    x = np.zeros((5, 16, 16, 3), np.float32)
    with pytest.raises(ConvcError, match=r"\(8 calibration samples, 5 given inputs 5 at a time\)"):
        convc.check(source, inputs={"image": x}, options=INT8_OPTIONS, max_memory="1K")
    samples = np.zeros((6, 16, 16, 3), np.float32)
    given = INT8_OPTIONS.replace(calibration=samples)
    with pytest.raises(ConvcError, match=r"\(6 calibration samples, 2 held-out calibration"):
        convc.check(source, options=given, max_memory="1K")


def _returns_of(monkeypatch, module, name: str) -> list:
    """What ``module.name`` returns from now on, one entry a call (it still runs as before)."""
    returned: list = []
    function = getattr(module, name)

    def spy(*args, **kwargs):
        returned.append(function(*args, **kwargs))
        return returned[-1]

    monkeypatch.setattr(module, name, spy)
    return returned


def test_what_numpy_holds_in_an_int8_check_is_within_the_estimate(tmp_path, traced, monkeypatch):
    """64 held-out inputs of a model whose output is larger than its input (32 KiB each): the
    check holds one chunk of outputs at a time, not all of them (it held six float64 copies of
    every output, 24 MiB, against an estimate of 2)."""
    from convc import int8_check

    source = tmp_path / "up.conv"
    source.write_text(
        "Input(shape=(16, 16, 3), name='image')\nConv2D(8, 3, padding='same')\nUpSampling2D(2)\n"
    )
    estimates = _returns_of(monkeypatch, int8_check, "int8_check_estimate")
    options = INT8_OPTIONS.replace(calibration_count=64)
    model = convc.load(source)
    convc.check(model, options=INT8_OPTIONS)  # what the first check imports is not its data
    estimates.clear()
    traced.reset()
    report = convc.check(model, options=options)
    assert report.ok and report.samples == 64
    [used] = estimates
    assert used.activations > 128 * 16 * 16 * 3 * 4  # the calibration samples, at least
    assert traced.growth <= used.activations, (format_size(traced.growth), used)


# -- build: one weight's bytes at a time ------------------------------------------------------

WIDE = "Input(shape=(1024,))\nDense(1024, name='wide')\nDense(512, name='narrow')\n"
"""Two kernels: 4 MiB and 2 MiB."""


def test_sizes_of_weights_are_read_without_copying_their_bytes(traced):
    proto = compile_text(WIDE)
    traced.reset()
    assert onnxfile.weight_bytes(proto) == 4 * (1024 * 1024 + 1024 + 1024 * 512 + 512)
    skeleton = onnxfile.skeleton(proto)
    assert all(len(t.raw_data) <= onnxfile.SMALL_TENSOR_BYTES for t in skeleton.graph.initializer)
    assert traced.growth < 256 * KIB


def test_save_copies_one_weight_at_a_time(tmp_path, traced):
    """Before, a weight's encoding was concatenated with its key (two copies of the largest)."""
    proto = compile_text(WIDE)
    traced.reset()
    (path,) = onnxfile.save(proto, tmp_path / "wide.onnx")
    assert traced.growth < 5 * MIB  # the 4 MiB kernel once, not twice
    assert onnx.load(path) == proto


def test_external_data_is_written_one_weight_at_a_time(tmp_path, monkeypatch, traced):
    """Before, every weight's bytes were held at once while the data file was written."""
    monkeypatch.setattr(onnxfile, "EXTERNAL_DATA_BYTES", 1000)
    proto = compile_text(WIDE)
    before = proto.SerializeToString()
    traced.reset()
    written = onnxfile.save(proto, tmp_path / "wide.onnx")
    assert traced.growth < 5 * MIB  # 6 MiB of weights
    assert [p.name for p in written] == ["wide.onnx.data", "wide.onnx"]
    assert proto.SerializeToString() == before  # the model is not touched
    loaded = onnx.load(written[1])
    assert [(t.name, t.raw_data) for t in loaded.graph.initializer] == [
        (t.name, t.raw_data) for t in proto.graph.initializer
    ]


def test_a_tensor_is_written_in_field_order_with_fields_after_its_bytes(tmp_path):
    """The pieces of a tensor with fields numbered above raw_data's (doc_string, data_location,
    metadata_props) join to protobuf's own encoding of it, byte for byte."""
    proto = compile_text(WIDE)
    tensor = proto.graph.initializer[0]
    tensor.doc_string = "the wide kernel"
    tensor.data_location = TensorProto.DEFAULT
    tensor.metadata_props.add(key="k", value="v")
    del proto.graph.initializer[1:]
    pieces = list(onnxfile.serialized_pieces(proto))
    encoded = tensor.SerializeToString()
    assert b"".join(pieces[1:]) == onnxfile.length_delimited(5, len(encoded)) + encoded
    parsed = onnx.ModelProto()
    parsed.ParseFromString(b"".join(pieces))
    assert parsed == proto


def test_a_tensor_whose_bytes_contradict_its_shape_is_not_written(tmp_path):
    proto = compile_text(WIDE)
    proto.graph.initializer[0].dims[0] = 1023  # 4 KiB fewer than its bytes
    with pytest.raises(ConvcError, match="'wide/kernel' holds 4,194,304 bytes where its data type"):
        onnxfile.save(proto, tmp_path / "bad.onnx")
    assert list(tmp_path.iterdir()) == []


def test_build_lets_each_array_go_once_its_bytes_are_in_the_model():
    """A caller's weights given to be consumed are not held after the build (with the model's
    copy, that would be two copies of every weight)."""
    import weakref

    model = resolve_text(WIDE)
    kernel = np.random.default_rng(0).standard_normal((1024, 1024), np.float32)
    watched = weakref.ref(kernel)
    weights = {
        "wide/kernel": kernel,
        "wide/bias": np.zeros(1024, np.float32),
        "narrow/kernel": np.zeros((1024, 512), np.float32),
        "narrow/bias": np.zeros(512, np.float32),
    }
    del kernel
    proto = convc.build(model, weights, consume_weights=True)
    assert watched() is None and weights == {}
    assert len(proto.graph.initializer) == 4


# -- int8 builds: calibration bounded before it starts ------------------------------------------

BUILDERS = {
    "build": lambda path, tmp: ["build", str(path), "-o", str(tmp / "out.onnx")],
    "run": lambda path, tmp: ["run", str(path)],
    "golden record": lambda path, tmp: ["golden", "record", str(path), str(tmp / "golden")],
}
"""The commands that build an int8 model, and so calibrate it, by the name their refusal
gives."""


@pytest.fixture
def calibrations(monkeypatch):
    """The calibrations run and the random calibration samples drawn, counted: a refusal comes
    before either."""
    from convc import quantize

    counts = {"calibrated": 0, "drawn": 0}
    calibrate, draw = quantize._calibrate, quantize._standard_normal

    def counted_calibrate(*args, **kwargs):
        counts["calibrated"] += 1
        return calibrate(*args, **kwargs)

    def counted_draw(seed, count, shape):
        counts["drawn"] += count
        assert count * math.prod(shape) * 4 < 64 * MIB, "a hostile draw"
        return draw(seed, count, shape)

    monkeypatch.setattr(quantize, "_calibrate", counted_calibrate)
    monkeypatch.setattr(quantize, "_standard_normal", counted_draw)
    return counts


def test_int8_build_estimate_by_hand():
    """The model of ``test_int8_check_estimate_by_hand``: 4 feeds of one sample calibrate
    (18,432 bytes, as there), beside the 1,000 bytes of samples; the weights 4 times."""
    model = resolve_text(
        "Input(shape=(8, 8, 3))\nConv2D(4, 3, padding='same', name='conv')\nReLU(name='relu')\n"
    )
    proto = compile_model(model, None)
    sizes = {"kept": 1000, "calibrating": 4, "feed": 1}
    estimate = int8_build_estimate(
        model, proto, command="run", method="minmax", inputs="4 samples", **sizes
    )
    assert estimate.activations == 1000 + 18_432
    assert estimate.weights == WEIGHT_COPIES["int8 build"] * 4 * (3 * 3 * 3 * 4 + 4)
    assert (estimate.command, estimate.inputs) == ("int8 run", "4 samples")
    assert calibration_bytes(model, proto, method="minmax", calibrating=4, feed=1) == 18_432


@pytest.mark.parametrize("command", BUILDERS)
def test_a_hostile_model_file_is_refused_before_an_int8_build_draws_calibration_samples(
    command, tmp_path, capsys, traced, calibrations
):
    """64 random calibration samples of (8192, 8192, 3) would be 48 GiB, and calibrating on
    them three times that."""
    path = _hostile_json(tmp_path / "big.json", [None, 8192, 8192, 3])
    assert main([*BUILDERS[command](path, tmp_path), *INT8[:4]]) == 1
    err = capsys.readouterr().err
    assert f"big.json: error: int8 {command} would hold about " in err
    assert "GiB of activations (64 calibration samples, 64 calibrating 1 at a time)" in err
    assert "help: give --max-memory " in err and "--calibration-count" in err
    assert calibrations == {"calibrated": 0, "drawn": 0}
    assert traced.growth < 64 * MIB
    assert not (tmp_path / "out.onnx").exists() and not (tmp_path / "golden").exists()


@pytest.mark.parametrize("command", BUILDERS)
def test_an_int8_build_is_refused_beyond_the_limit_and_the_option_raises_it(
    command, tmp_path, capsys, calibrations
):
    source = tmp_path / "small.conv"
    source.write_text(SMALL)
    argv = [*BUILDERS[command](source, tmp_path), *INT8]
    assert main([*argv, "--max-memory", "16K"]) == 1
    err = capsys.readouterr().err
    assert f"int8 {command} would hold about " in err and "; the limit is 16 KiB" in err
    assert "(4 calibration samples, 4 calibrating 1 at a time)" in err
    assert calibrations == {"calibrated": 0, "drawn": 0}
    suggested = err.split("give --max-memory ")[1].split()[0]
    assert main([*argv, "--max-memory", suggested]) == 0, capsys.readouterr().err
    assert calibrations == {"calibrated": 1, "drawn": 4}  # a build holds no samples out
    out = capsys.readouterr().out
    if command == "build":
        built = onnx.load(tmp_path / "out.onnx")
        assert any(node.op_type == "QuantizeLinear" for node in built.graph.node)
    elif command == "run":
        assert "min " in out and "max " in out
    else:
        assert (tmp_path / "golden" / "manifest.json").is_file()


def test_an_int8_run_is_refused_before_calibrating_when_the_run_after_it_would_be(
    tmp_path, capsys, calibrations
):
    """Calibrating on 4 samples fits in 1 MiB; the run on a batch of 4096 that follows does
    not (12 MiB of inputs alone): it is refused before the calibration, not after it."""
    source = tmp_path / "small.conv"
    source.write_text(SMALL)
    argv = ["run", str(source), *INT8, "--batch", "4096", "--max-memory", "1M"]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "error: run would hold about " in err and "(batch 4,096)" in err
    assert calibrations == {"calibrated": 0, "drawn": 0}


def test_a_float_build_takes_no_memory_limit(tmp_path, capsys):
    source = tmp_path / "small.conv"
    source.write_text(SMALL)
    assert main(["build", str(source), "--max-memory", "8G"]) == 1
    assert "max_memory applies to int8 builds" in capsys.readouterr().err
    with pytest.raises(ConvcError, match="max_memory applies to int8 builds"):
        convc.build(source, max_memory="8G")


def test_the_api_takes_max_memory_for_an_int8_build(tmp_path, calibrations):
    from convc import golden

    source = tmp_path / "small.conv"
    source.write_text(SMALL)
    calls = {
        "build": lambda limit: convc.build(source, options=INT8_OPTIONS, max_memory=limit),
        "build and save": lambda limit: convc.build_and_save(
            source, tmp_path / "out.onnx", options=INT8_OPTIONS, max_memory=limit
        ),
        "build text": lambda limit: convc.build_text(SMALL, options=INT8_OPTIONS, max_memory=limit),
        "run": lambda limit: convc.run(source, options=INT8_OPTIONS, max_memory=limit),
        "golden record": lambda limit: golden.record(
            source, tmp_path / "golden", options=INT8_OPTIONS, max_memory=limit
        ),
    }
    for name, call in calls.items():
        command = "build" if name.startswith("build") else name
        with pytest.raises(ConvcError, match=f"int8 {command} would hold about .*limit is 1 KiB"):
            call("1K")
        assert calibrations["calibrated"] == 0, name
    for call in calls.values():
        call("64M")
    assert calibrations["calibrated"] == len(calls)


def test_an_int8_golden_verify_is_refused_before_it_recalibrates(tmp_path, capsys, calibrations):
    """The refusal is the verification's, not a recompilation that failed (which would run
    model.onnx as recorded instead)."""
    source = tmp_path / "small.conv"
    source.write_text(SMALL)
    golden = tmp_path / "golden"
    assert main(["golden", "record", str(source), str(golden), *INT8]) == 0
    assert calibrations["calibrated"] == 1
    assert main(["golden", "verify", str(golden), "--max-memory", "16K"]) == 1
    err = capsys.readouterr().err
    assert f"{golden}: error: int8 golden verify would hold about " in err
    assert calibrations["calibrated"] == 1
    assert main(["golden", "verify", str(golden), "--max-memory", "64M"]) == 0
    assert calibrations["calibrated"] == 2


def test_a_build_draws_the_calibrating_samples_a_check_draws_and_none_to_hold_out():
    from convc.quantize import read_calibration

    model = resolve_text(SMALL)
    held = read_calibration("random", model, 5, seed=3)
    built = read_calibration("random", model, 5, seed=3, hold_out=False)
    assert (held.size, built.size, built.held_out()) == (10, 5, None)
    assert built.samples["image"].tobytes() == held.calibrating()["image"].tobytes()


def test_what_numpy_holds_in_an_int8_build_is_within_the_estimate(tmp_path, traced, monkeypatch):
    """The build of ``test_what_numpy_holds_in_an_int8_check_is_within_the_estimate``'s model,
    calibrated on 64 samples: the samples, the calibrator's results and the model's arrays that
    NumPy and Python hold stay within the estimate (onnxruntime's own are not traced)."""
    estimates = _returns_of(monkeypatch, memory, "int8_build_estimate")
    source = tmp_path / "up.conv"
    source.write_text(
        "Input(shape=(16, 16, 3), name='image')\nConv2D(8, 3, padding='same')\nUpSampling2D(2)\n"
    )
    model = convc.load(source)
    options = INT8_OPTIONS.replace(calibration_count=64)
    convc.build(model, options=INT8_OPTIONS)  # what the first build imports is not its data
    estimates.clear()
    traced.reset()
    convc.build(model, options=options)
    [used] = estimates
    assert used.activations > 64 * 16 * 16 * 3 * 4  # the calibration samples, at least
    assert traced.growth <= used.total, (format_size(traced.growth), used)

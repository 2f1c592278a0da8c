"""``convc check --precision int8`` (``convc.int8_check``, ``convc.int8_reference``): every
sample's int8 model agrees with the int8 reference within one step per element in every
quantized group, and its weights are quantized as its plan says; the check fails when the
reference's scale or rounding is broken or a weight is changed; the accuracy report computes
what it says it computes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

import convc
from convc import int8_check, int8_reference
from convc.cli import main
from convc.compiler import resolve_text
from convc.int8_check import OFF_BY_ONE_SHARE, Int8CheckReport
from convc.options import BuildOptions

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = sorted((ROOT / "samples").glob("*.conv"))
RESNET = ROOT / "samples" / "resnet_bn.conv"
INT8 = BuildOptions(precision="int8", calibration="random", calibration_count=4)


def _one_input(path: Path, seed: int = 7) -> dict[str, np.ndarray]:
    model = resolve_text(path.read_text())
    return {
        i.name: np.random.default_rng(seed + n)
        .standard_normal((1, *(d for d in i.shape[1:])))
        .astype(np.float32)
        for n, i in enumerate(model.inputs)
    }


def _check(path: Path = RESNET, options: BuildOptions = INT8) -> Int8CheckReport:
    report = convc.check(path, inputs=_one_input(path), options=options)
    assert isinstance(report, Int8CheckReport)
    return report


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: p.stem)
def test_every_sample_agrees_with_the_int8_reference(path):
    report = _check(path)
    assert report.ok, report.render()
    assert all(g.checked for g in report.groups)
    assert sum(g.elements for g in report.groups) > 0  # numbers were compared
    assert report.weights and all(w.ok for w in report.weights)
    for group in report.groups:  # rounding boundaries are rare
        if not set(group.ops) & set(int8_check.OWN_ROUNDING):
            assert group.off_by_one <= 0.001 * group.elements + 1, (group.tensor, group.off_by_one)
    assert any(op.startswith(("QLinear", "QGemm")) for op, _ in report.kernels), report.kernels


def test_the_integer_kernels_run_in_the_checked_model_as_in_the_built_one():
    report = _check()
    integer = {op: n for op, n in report.kernels if op.startswith("QLinear")}
    checked = {op: n for op, n in report.checked_kernels if op.startswith("QLinear")}
    assert integer == checked == {"QLinearConv": 9, "QLinearAdd": 3}
    assert "Conv" not in dict(report.checked_kernels)


def test_a_perturbed_scale_fails_the_check(monkeypatch):
    exact = int8_reference.quantize

    def off_scale(x, tensor):
        from dataclasses import replace

        return exact(x, replace(tensor, scale=tensor.scale * 1.02))

    monkeypatch.setattr(int8_reference, "quantize", off_scale)
    report = _check()
    assert not report.ok
    assert max(g.max_steps for g in report.groups) > 1
    assert "steps off the int8 reference" in report.render()


def test_rounding_down_fails_the_check_though_each_element_is_one_step_off(monkeypatch):
    """np.floor for round-half-to-even: every element within one step, but far more than
    OFF_BY_ONE_SHARE of them off by one."""
    monkeypatch.setattr(int8_reference.np, "rint", np.floor)
    report = _check()
    assert not report.ok
    assert max(g.max_steps for g in report.groups) == 1
    worst = max(g.off_by_one / g.elements for g in report.groups)
    assert worst > 10 * OFF_BY_ONE_SHARE
    assert "it rounds another way" in report.render()


def test_a_changed_weight_fails_the_check(monkeypatch):
    quantize = int8_check.quantize

    def changed(proto, model, options, calibration=None):
        quantized, plan, calibration = quantize(proto, model, options, calibration)
        for tensor in quantized.graph.initializer:
            if tensor.name == "conv2d_1/kernel_quantized":
                values = numpy_helper.to_array(tensor).copy()
                values.flat[5] = values.flat[5] + 3 if values.flat[5] < 60 else values.flat[5] - 3
                tensor.CopyFrom(numpy_helper.from_array(values, tensor.name))
        return quantized, plan, calibration

    monkeypatch.setattr(int8_check, "quantize", changed)
    report = _check()
    assert not report.ok
    bad = [w for w in report.weights if not w.ok]
    assert [w.name for w in bad] == ["conv2d_1/kernel"] and bad[0].max_steps == 3
    assert report.groups and all(g.ok for g in report.groups)  # the runtime computes that model


def test_an_unknown_op_leaves_its_group_unchecked_and_the_check_failed(monkeypatch):
    monkeypatch.delitem(int8_reference.OPS, "MaxPool")
    report = _check()
    assert not report.ok
    unchecked = [g for g in report.groups if not g.checked]
    assert [g.layer for g in unchecked] == ["shortcut"]
    assert "NOT CHECKED (MaxPool)" in report.render()


class _Runs:
    def __init__(self, outputs):
        self.outputs = outputs

    def run(self, feeds):
        size = len(next(iter(feeds.values())))
        start = int(next(iter(feeds.values()))[0, 0])
        return {name: value[start : start + size] for name, value in self.outputs.items()}


def test_the_accuracy_report_measures_what_it_says():
    f = np.array([[1.0, 2.0, 0.5], [0.0, -4.0, 1.0], [3.0, 1.0, 2.0], [1.0, 1.0, 0.0]])
    q = f + np.array([[0.0, 0.0, 2.0], [0.0, 0.4, 0.0], [0.0, 0.0, 0.0], [0.2, 0.0, 0.0]])
    inputs = {"x": np.arange(4.0).reshape(4, 1)}  # row i of the outputs for input i
    chunks = list(int8_check._chunks(inputs, 3))  # two runs: 3 inputs, then 1
    [result] = int8_check._accuracy(_Runs({"y": f}), _Runs({"y": q}), chunks)
    assert result.worst_relative == pytest.approx(2.0 / 4.0)
    assert result.mean_relative == pytest.approx((2.0 + 0.4 + 0.2) / 12 / 4.0)
    assert result.sqnr_db == pytest.approx(10 * np.log10((f**2).sum() / (4 + 0.16 + 0.04)))
    assert result.top1_agreement == pytest.approx(0.75)  # the first row's top class moved
    images = {"y": np.ones((4, 2, 2))}
    [image] = int8_check._accuracy(_Runs(images), _Runs(images), [inputs])
    assert image.top1_agreement is None and image.sqnr_db == float("inf")


def test_held_out_inputs_are_given_the_calibrations_others_or_random(tmp_path):
    model = resolve_text(RESNET.read_text())
    samples = np.random.default_rng(3).standard_normal((6, 64, 64, 3)).astype(np.float32)
    options = INT8.replace(calibration=samples)
    given = convc.check(model, inputs={"image": samples[:2]}, options=options)
    assert (given.held_out, given.samples) == ("given", 2)
    held = convc.check(model, options=options)
    assert (held.held_out, held.samples, held.agreement_samples) == ("held-out calibration", 2, 2)
    everything = convc.check(model, options=options.replace(calibration_count=6), batch=3)
    assert (everything.held_out, everything.samples) == ("random", 3)


def test_the_command_line_checks_an_int8_model(tmp_path, capsys):
    assert (
        main(
            [
                "check",
                str(RESNET),
                "--precision",
                "int8",
                "--calibration",
                "random",
                "--calibration-count",
                "4",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "all 15 quantized groups within one step of the int8 reference" in out
    assert "accuracy cost against float32 on 4 held-out calibration inputs" in out
    assert "QLinearConv x9" in out


def test_8_bit_weights_saturate_on_a_cpu_without_vnni(capsys):
    """On x86 without VNNI (this project's machine: AVX2), onnxruntime's uint8 x int8 kernels
    sum pairs of products in 16 bits: 8-bit weights saturate there, which the check sees and
    explains; 7-bit weights (the default) cannot."""
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    code = main(
        [
            "check",
            str(RESNET),
            "--precision",
            "int8",
            "--calibration",
            "random",
            "--calibration-count",
            "4",
            "--weight-bits",
            "8",
        ]
    )
    out = capsys.readouterr().out
    if "avx2" in flags and "vnni" not in flags:
        assert code == 1
        assert "steps off the int8 reference" in out and "--weight-bits 7" in out
    else:
        assert code == 0, out


def test_the_reference_computes_a_group_from_the_given_integers():
    """compute_group reads the integers it is given, not the runtime's: feeding it a group's
    inputs shifted by one step changes its result."""
    proto = convc.build(RESNET, options=INT8)
    from convc.quantize import read_plan

    plan = read_plan(proto)
    groups = int8_reference.quantized_groups(proto, plan)
    add = next(g for g in groups if g.ops == ("Add",))
    constants = int8_reference.constants_of(proto)
    shape = (1, 32, 32, 32)
    integers = {name: np.full(shape, 100, np.uint8) for name in add.integer_inputs}
    base = int8_reference.compute_group(add, integers, {}, constants)
    integers[add.integer_inputs[0]] = np.full(shape, 140, np.uint8)
    assert not np.array_equal(base, int8_reference.compute_group(add, integers, {}, constants))
    assert onnx.TensorProto.UINT8 in {
        i.type.tensor_type.elem_type for i in int8_check._expose_integers(proto).graph.output
    }


def test_a_model_with_a_static_batch_is_checked_that_many_samples_at_a_time():
    """A benchmark net declares batch_size=1: its held-out samples run one by one."""
    text = (
        "import keras\nfrom keras import layers\n"
        'inputs = keras.Input(shape=(16, 16, 3), batch_size=1, name="x")\n'
        'x = layers.Conv2D(8, 3, activation="relu")(inputs)\n'
        "outputs = layers.Conv2D(4, 1)(layers.MaxPooling2D(2)(x))\n"
        "model = keras.Model(inputs, outputs)\n"
    )
    model = resolve_text(text)
    options = INT8.replace(calibration_count=3)
    report = convc.check(model, options=options)
    assert report.ok, report.render()
    assert (report.held_out, report.samples, report.agreement_samples) == (
        "held-out calibration",
        3,
        3,
    )
    assert sum(g.elements for g in report.groups) > 0


def test_densenet_forms_are_checked():
    """A BatchNormalization after a Concatenate (no convolution takes it) is its own quantized
    group, and an AveragePool of a transition rounds ties its own way: both checked."""
    text = (
        "import keras\nfrom keras import layers\n"
        'inputs = keras.Input(shape=(16, 16, 8), name="x")\n'
        'y = layers.Conv2D(8, 3, padding="same")(inputs)\n'
        "x = layers.Concatenate()([inputs, y])\n"
        "x = layers.BatchNormalization()(x)\n"
        "x = layers.ReLU()(x)\n"
        "outputs = layers.AveragePooling2D(2)(layers.Conv2D(8, 1)(x))\n"
        "model = keras.Model(inputs, outputs)\n"
    )
    from convc.weights import exercise

    model = resolve_text(text)
    weights = {
        f"{layer}/{name}": array
        for layer, arrays in exercise(model).items()
        for name, array in arrays.items()
    }
    report = convc.check(model, weights, options=INT8.replace(calibration_count=8))
    assert report.ok, report.render()
    ops = {op for g in report.groups for op in g.ops}
    assert {"BatchNormalization", "AveragePool", "Concat"} <= ops, ops

"""``convc check --precision int8``: an int8 model checked against the int8 reference, and its
accuracy cost against float32.

The model is lowered as ``convc check`` lowers it (Keras's layout at the interface) and quantized
as ``convc build --precision int8`` quantizes it. Then two separate questions:

1. **Does the runtime compute the quantized model?** The integer output of every QuantizeLinear
   is exposed as a graph output, the model runs in onnxruntime, and each quantized group is
   computed by ``convc.int8_reference`` from the runtime's own integers for the group's inputs:
   every element must agree within one quantization step. The weights' integers are checked too:
   each must be the float32 model's weight divided by the plan's scale, rounded half to even and
   saturated (biases: int32 at input scale times weight scale). Exposing the integer tensors
   keeps onnxruntime's fusions (a fused QLinearConv writes that very tensor); the report lists the
   integer kernels onnxruntime ran, in the built model and in the checked one, and the layers
   kept float32 and why (``convc.quantize.float32_line``).
2. **What does int8 cost?** The float32 and the int8 model run on held-out inputs (given ones, else
   the calibration samples after the calibrating ones, else random ones), and per output the
   report gives the worst and the mean relative error (``|int8 - float32|`` over the float32
   output's largest magnitude), the SQNR (``10 log10(sum f^2 / sum (q - f)^2)``, in dB) and, for
   a classifier (an output of shape ``(batch, classes)``), the share of inputs whose top-1 class
   is unchanged.

The check passes when every group and every weight agree; the accuracy cost is reported, not
judged (what a model can afford is the user's call).
"""

from __future__ import annotations

import math
import os
import re
import tempfile
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from convc.compiler import quantize
from convc.diagnostics import ConvcError, printable
from convc.int8_reference import Unsupported, compute_group, constants_of, quantized_groups
from convc.lower import lower
from convc.memory import FLOAT32, int8_check_estimate, max_memory_bytes
from convc.model import Model
from convc.options import BuildOptions
from convc.quantize import (
    QuantizationPlan,
    float32_layers,
    float32_line,
    random_samples,
    read_calibration,
)
from convc.runtime import check_inputs, open_session, random_array
from convc.targets import get_target
from convc.weights import Weights

AGREEMENT_SAMPLES = 4
"""Held-out samples the int8 reference recomputes (every group of every one of them)."""

OFF_BY_ONE_SHARE = 0.01
"""The most elements of a group that may be one step off. A correct integer kernel is one step
off only where the exact value lies on a rounding boundary (tests/test_int8_check.py holds every
sample's groups to 0.1 %; most have none); a kernel that rounds another way (down, or half away
from zero) is one step off everywhere the fraction falls between, a third to a half of the
elements, which the per-element bound of one step alone would pass."""

OFF_BY_ONE_FLOOR = 2
"""Elements one step off that any group may have, however small (a Softmax over 12 classes had
one: onnxruntime computes it through a lookup table)."""

OWN_ROUNDING = {
    "Resize": "onnxruntime's uint8 linear Resize interpolates with fixed-point weights: a few "
    "per cent of the elements one step off",
    "AveragePool": "an average of integers lies exactly on a half step often (a quarter of the "
    "2x2 windows): onnxruntime's QLinearAveragePool rounds such ties its own way (DenseNet121's "
    "transitions: 2 % of the elements one step off)",
}
"""Ops whose onnxruntime integer kernels round their own way, so that many elements are one
step off the exact result (measured on the samples): groups of them are held to the one-step
bound per element, not to ``OFF_BY_ONE_SHARE``. (onnxruntime's QLinearSoftmax, a table of
exponentials and its own fixed point, was one: about half of the elements one step off. convc
keeps a Softmax float32 now, ``convc.quantize.FLOAT_OPS``, and a float op rounds as the
reference does.)"""

CHUNK = 8
"""Samples run at once when measuring the accuracy cost."""

INTEGER_KERNELS = re.compile(r"^(QLinear|QGemm|MatMulInteger|ConvInteger|DynamicQuantize|Nhwc|Q)")
"""onnxruntime's op types that compute on integers."""


@dataclass(frozen=True)
class OutputAccuracy:
    """The accuracy cost of one output over the held-out inputs."""

    name: str
    shape: tuple[int, ...]
    worst_relative: float
    mean_relative: float
    sqnr_db: float
    top1_agreement: float | None
    """For a classifier: the share of inputs whose top-1 class int8 leaves unchanged."""


@dataclass(frozen=True)
class GroupAgreement:
    """One quantized group against the int8 reference: the largest difference in steps, how
    many elements differ by exactly one, of how many compared."""

    tensor: str
    layer: str
    ops: tuple[str, ...]
    elements: int
    max_steps: int
    off_by_one: int
    unknown_ops: tuple[str, ...] = ()

    @property
    def checked(self) -> bool:
        return not self.unknown_ops

    @property
    def ok(self) -> bool:
        return (
            self.checked
            and self.max_steps <= 1
            and (
                self.off_by_one <= OFF_BY_ONE_SHARE * self.elements + OFF_BY_ONE_FLOOR
                or any(op in OWN_ROUNDING for op in self.ops)
            )
        )


@dataclass(frozen=True)
class WeightAgreement:
    """A weight's integers against the reference's quantization of the float32 weight."""

    name: str
    elements: int
    max_steps: int

    @property
    def ok(self) -> bool:
        return self.max_steps == 0


@dataclass(frozen=True)
class Int8CheckReport:
    groups: tuple[GroupAgreement, ...]
    weights: tuple[WeightAgreement, ...]
    accuracy: tuple[OutputAccuracy, ...]
    held_out: str
    samples: int
    agreement_samples: int
    provider: str
    kernels: tuple[tuple[str, int], ...]
    checked_kernels: tuple[tuple[str, int], ...]
    weight_bits: int
    hint: str | None = None
    float32_layers: tuple[tuple[str, tuple[str, ...]], ...] = ()
    """The layers that kept nodes float32, with the codes of why
    (``convc.quantize.float32_layers``)."""

    @property
    def ok(self) -> bool:
        return (
            bool(self.groups) and all(g.ok for g in self.groups) and all(w.ok for w in self.weights)
        )

    @property
    def first_divergence(self) -> GroupAgreement | None:
        return next((g for g in self.groups if not g.ok), None)

    def render(self) -> str:
        rows: list[tuple[str, ...]] = [
            ("quantized tensor", "layer", "ops", "elements", "max steps", "off by 1", "verdict")
        ]
        for g in self.groups:
            verdict = "ok" if g.ok else ("MISMATCH" if g.checked else "NOT CHECKED")
            rows.append(
                (
                    g.tensor,
                    g.layer,
                    "+".join(g.ops) or "-",
                    f"{g.elements:,}",
                    str(g.max_steps) if g.checked else "-",
                    f"{g.off_by_one / max(g.elements, 1):.2%}" if g.checked else "-",
                    verdict + (f" ({', '.join(g.unknown_ops)})" if g.unknown_ops else ""),
                )
            )
        lines = _table(rows)
        checked = [g for g in self.groups if g.checked]
        lines.append(
            f"a group agrees when every element is within one step of the reference and at "
            f"most {OFF_BY_ONE_SHARE:.0%} (and {OFF_BY_ONE_FLOOR}) are one step off ("
            + ", ".join(OWN_ROUNDING)
            + ": any number, as onnxruntime rounds those its own way)"
        )
        compared = sum(g.elements for g in checked)
        lines.append(
            f"{len(checked)} of {len(self.groups)} quantized groups recomputed from "
            f"onnxruntime's own integers on {self.agreement_samples} held-out "
            f"input{'s' if self.agreement_samples != 1 else ''} ({compared:,} elements)"
        )
        bad_weights = [w for w in self.weights if not w.ok]
        lines.append(
            f"weights: {len(self.weights) - len(bad_weights)} of {len(self.weights)} quantized "
            f"as the plan says ({sum(w.elements for w in self.weights):,} integers)"
            + "".join(f"; {w.name}: up to {w.max_steps} off" for w in bad_weights)
        )
        lines.append("onnxruntime ran: " + _kernels(self.kernels))
        if self.checked_kernels != self.kernels:
            lines.append("  with the integer tensors exposed: " + _kernels(self.checked_kernels))
        kept = float32_line(dict(self.float32_layers))
        if kept:
            lines.append(kept)
        lines.append("")
        lines.append(
            f"accuracy cost against float32 on {self.samples} {self.held_out} "
            f"input{'s' if self.samples != 1 else ''}:"
        )
        rows = [("output", "shape", "worst rel err", "mean rel err", "SQNR", "top-1 unchanged")]
        for a in self.accuracy:
            rows.append(
                (
                    a.name,
                    str(a.shape),
                    f"{a.worst_relative:.2e}",
                    f"{a.mean_relative:.2e}",
                    f"{a.sqnr_db:.1f} dB",
                    "-" if a.top1_agreement is None else f"{a.top1_agreement:.1%}",
                )
            )
        lines += ["  " + line for line in _table(rows)]
        first = self.first_divergence
        if first is not None and first.checked and first.max_steps > 1:
            lines.append(
                f"first divergence: {first.tensor} (layer '{first.layer}', "
                f"{'+'.join(first.ops) or 'quantization'}) is up to {first.max_steps} steps off "
                "the int8 reference"
            )
        elif first is not None and first.checked:
            lines.append(
                f"first divergence: {first.tensor} (layer '{first.layer}') is one step off the "
                f"int8 reference in {first.off_by_one / first.elements:.1%} of its elements "
                f"(at most {OFF_BY_ONE_SHARE:.0%}: rounding boundaries): it rounds another way"
            )
        elif first is not None:
            lines.append(
                f"not checked: the int8 reference has no {', '.join(first.unknown_ops)} "
                f"(group {first.tensor})"
            )
        elif bad_weights:
            lines.append(f"weight {bad_weights[0].name} is not quantized as the plan says")
        else:
            lines.append(
                f"all {len(self.groups)} quantized groups within one step of the int8 reference"
            )
        if self.hint and not self.ok:
            lines.append(f"  hint: {self.hint}")
        return printable("\n".join(lines))  # names come from files


def _table(rows: Sequence[tuple[str, ...]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return lines


def _kernels(counts: tuple[tuple[str, int], ...]) -> str:
    integer = [f"{op} x{n}" for op, n in counts if INTEGER_KERNELS.match(op)]
    other = [f"{op} x{n}" for op, n in counts if not INTEGER_KERNELS.match(op)]
    return ", ".join(integer) + (f"; other ops: {', '.join(other)}" if other else "")


def check_int8(
    model: Model,
    weights: Weights,
    inputs: dict[str, np.ndarray] | None,
    *,
    options: BuildOptions,
    provider: str = "cpu",
    batch: int = 1,
    input_seed: int = 0,
    max_memory: int | str | None = None,
) -> Int8CheckReport:
    """Quantize ``model`` with ``options`` and check it (see the module's docstring).
    ``inputs`` (arrays by input name, samples along the first axis) are the held-out inputs;
    without them, the calibration samples after the calibrating ones, else ``batch`` random
    ones from ``input_seed``. Before the calibration samples are drawn (``random``; a file's
    are read, as given inputs are) or anything runs, the memory the check would hold is
    estimated (``convc.memory.int8_check_estimate``) and beyond ``max_memory`` (bytes or a size
    such as ``"16G"``; None for ``convc.memory.default_max_memory``) it is refused."""
    options = options.replace(io_layout="keras")
    limit = max_memory_bytes(max_memory)
    float_proto = lower(
        model,
        weights,
        opset=options.resolved_opset,
        target=get_target(options.target_name),
        optimize=options.optimize,
    )
    count = options.calibration_count
    drawn = random_samples(options.calibration, count)
    calibration = None
    if drawn is None:  # read now, as given inputs are; random samples are drawn once allowed
        calibration = read_calibration(options.calibration, model, count, options.seed)
    if inputs is not None:
        inputs = {name: np.asarray(array) for name, array in inputs.items()}
    size = calibration.size if calibration is not None else drawn or 0
    planned = _plan_samples(model, size, count, inputs, batch)
    sample = sum(FLOAT32 * math.prod(d or 1 for d in i.shape[1:]) for i in model.inputs)
    kept = size * sample
    if calibration is not None:
        kept = sum(array.nbytes for array in calibration.samples.values())
    if inputs is not None:
        kept += sum(array.nbytes for array in inputs.values())
    elif planned.where == "random":
        kept += planned.held_out * sample
    int8_check_estimate(
        model,
        float_proto,
        kept=kept,
        method=options.calibration_method,
        calibrating=min(count, size),
        feed=planned.static or 1,
        chunk=planned.chunk,
        agreement=planned.agreement,
        inputs=f"{size:,} calibration samples, {planned.held_out:,} {planned.where} inputs "
        f"{planned.chunk} at a time",
    ).enforce(limit)

    int8_proto, plan, calibration = quantize(float_proto, model, options, calibration)
    if inputs is not None:
        held = inputs
    elif planned.where == "held-out calibration":
        held = calibration.held_out() or {}
    else:
        held = {
            i.name: random_array(i.shape, seed=input_seed + n, batch=batch)
            for n, i in enumerate(model.inputs)
        }
    held = {name: np.asarray(array)[: planned.held_out] for name, array in held.items()}
    float_session = open_session(float_proto, provider, spin=False, memory_pattern=False)
    int8_session = open_session(int8_proto, provider, spin=False, memory_pattern=False)
    chunks = (check_inputs(float_session, c) for c in _chunks(held, planned.chunk))
    accuracy = _accuracy(float_session, int8_session, chunks)
    del float_session, int8_session  # their arenas hold the peak of their runs

    exposed = _expose_integers(int8_proto)
    checked_session = open_session(exposed, provider, spin=False, memory_pattern=False)
    constants = constants_of(int8_proto)
    tallies: dict[str, list[int]] = {}
    unknown: dict[str, tuple[str, ...]] = {}
    groups_of_model = quantized_groups(int8_proto, plan)
    agreed = {name: array[: planned.agreed] for name, array in held.items()}
    for part in _chunks(agreed, planned.agreement):
        feeds = check_inputs(checked_session, part)
        integers = checked_session.run(feeds)
        for group in groups_of_model:
            key = group.output.integers
            if group.unknown_ops or key in unknown:
                unknown.setdefault(key, group.unknown_ops)
                continue
            try:
                expected = compute_group(group, integers, feeds, constants)
            except Unsupported as refusal:
                unknown[key] = (str(refusal),)
                continue
            steps = _steps(integers[key], expected)
            tally = tallies.setdefault(key, [0, 0, 0])
            tally[0] += int(steps.size)
            tally[1] = max(tally[1], int(steps.max(initial=0)))
            tally[2] += int((steps == 1).sum())
    groups = []
    for group in groups_of_model:
        key = group.output.integers
        if key in unknown:
            groups.append(GroupAgreement(key, group.layer, group.ops, 0, 0, 0, unknown[key]))
        else:
            elements, most, off = tallies[key]
            groups.append(GroupAgreement(key, group.layer, group.ops, elements, most, off))
    weight_bits = options.weight_bits
    report = Int8CheckReport(
        groups=tuple(groups),
        weights=tuple(_weight_agreement(float_proto, int8_proto, plan, weight_bits, constants)),
        accuracy=tuple(accuracy),
        held_out=planned.where,
        samples=planned.held_out,
        agreement_samples=planned.agreed,
        provider=checked_session.provider,
        kernels=_ran(int8_proto),
        checked_kernels=_ran(exposed),
        weight_bits=weight_bits,
        hint=_hint(weight_bits),
        float32_layers=tuple(float32_layers(int8_proto).items()),
    )
    return report


def _steps(actual: np.ndarray, expected: np.ndarray) -> np.ndarray:
    """``|actual - expected|`` of two integer tensors, in int16 for 8-bit ones (whose
    differences it holds exactly) and in int64 for wider ones: one array of temporaries."""
    wide = np.int16 if max(actual.dtype.itemsize, expected.dtype.itemsize) == 1 else np.int64
    steps = actual.astype(wide)
    np.subtract(steps, expected, out=steps)
    return np.abs(steps, out=steps)


@dataclass(frozen=True)
class _Samples:
    """What the check runs on, known before any sample is drawn: ``held_out`` inputs from
    ``where`` (``given``, ``held-out calibration`` or ``random``; a whole number of the model's
    ``static`` batch, if it has one), ``chunk`` at a time for the accuracy cost, and the first
    ``agreed`` of them ``agreement`` at a time for the agreement with the int8 reference."""

    where: str
    held_out: int
    static: int | None
    chunk: int
    agreed: int
    agreement: int


def _plan_samples(
    model: Model, size: int, count: int, inputs: dict[str, np.ndarray] | None, batch: int
) -> _Samples:
    """The held-out inputs for ``size`` calibration samples of which ``count`` calibrate:
    ``inputs`` given, else the calibration's others, else ``batch`` random ones."""
    static = model.inputs[0].shape[0]
    if inputs is not None:
        total, where = len(next(iter(inputs.values()))), "given"
    elif size > count:
        total, where = size - count, "held-out calibration"
    else:
        total, where = static or batch, "random"
    usable = total if static is None else total // static * static
    if usable == 0:
        raise ConvcError(
            f"the model's batch is {static}: the check needs at least {static} held-out inputs"
        )
    step = static or AGREEMENT_SAMPLES
    agreed = min(usable, max(AGREEMENT_SAMPLES // step, 1) * step)
    return _Samples(where, usable, static, min(static or CHUNK, usable), agreed, min(step, agreed))


def _chunks(inputs: dict[str, np.ndarray], size: int = CHUNK) -> Iterator[dict[str, np.ndarray]]:
    total = len(next(iter(inputs.values())))
    for start in range(0, total, size):
        yield {name: array[start : start + size] for name, array in inputs.items()}


@dataclass
class _Tally:
    """An output's accuracy figures, summed chunk by chunk (float64), so that the check holds one
    chunk's outputs at a time however many held-out inputs there are."""

    shape: tuple[int, ...]
    elements: int = 0
    largest: float = 0.0
    worst: float = 0.0
    error_sum: float = 0.0
    noise: float = 0.0
    signal: float = 0.0
    top1_same: int = 0
    rows: int = 0

    def add(self, expected: np.ndarray, actual: np.ndarray) -> None:
        """One chunk's outputs, one input's row at a time: two float64 copies of a row."""
        for row, quantized in zip(expected, actual, strict=True):
            f = row.astype(np.float64)
            error = quantized.astype(np.float64)
            np.abs(np.subtract(error, f, out=error), out=error)
            self.elements += error.size
            self.worst = max(self.worst, float(error.max(initial=0.0)))
            self.error_sum += float(error.sum())
            self.noise += float(np.square(error, out=error).sum())
            self.largest = max(self.largest, float(np.abs(f, out=error).max(initial=0.0)))
            self.signal += float(np.square(f, out=f).sum())
        if expected.ndim == 2 and expected.shape[1] > 1:
            self.top1_same += int((expected.argmax(axis=1) == actual.argmax(axis=1)).sum())
            self.rows += len(expected)

    def result(self, name: str) -> OutputAccuracy:
        scale = self.largest if self.largest > 0 else 1.0
        noise, signal = self.noise, max(self.signal, 1e-300)
        sqnr = float("inf") if noise == 0 else float(10 * np.log10(signal / noise))
        return OutputAccuracy(
            name,
            self.shape,
            self.worst / scale,
            self.error_sum / max(self.elements, 1) / scale,
            sqnr,
            self.top1_same / self.rows if self.rows else None,
        )


def _accuracy(float_session, int8_session, chunks) -> list[OutputAccuracy]:
    """The accuracy cost over ``chunks`` of inputs (feeds the sessions take as they are), one
    chunk at a time."""
    tallies: dict[str, _Tally] = {}
    for chunk in chunks:
        expected = float_session.run(chunk)
        actual = int8_session.run(chunk)
        for name, value in expected.items():
            tally = tallies.setdefault(name, _Tally(tuple(value.shape[1:])))
            tally.add(value, actual[name])
        del expected, actual
    return [tally.result(name) for name, tally in tallies.items()]


def _expose_integers(proto: onnx.ModelProto) -> onnx.ModelProto:
    """A copy whose graph outputs include every QuantizeLinear's integers."""
    exposed = onnx.ModelProto()
    exposed.CopyFrom(proto)
    types = {info.name: info for info in proto.graph.value_info}
    present = {info.name for info in proto.graph.output}
    for node in proto.graph.node:
        if node.op_type == "QuantizeLinear" and node.output[0] not in present:
            info = types.get(node.output[0])
            if info is None:
                raise ConvcError(f"the int8 model gives no type for {node.output[0]!r}")
            exposed.graph.output.append(info)
    return exposed


def _ran(proto: onnx.ModelProto) -> tuple[tuple[str, int], ...]:
    """The op types of the graph that onnxruntime's CPU provider optimizes ``proto`` into."""
    import onnxruntime as ort

    with tempfile.TemporaryDirectory(prefix="convc-int8-") as folder:
        path = os.path.join(folder, "optimized.onnx")
        options = ort.SessionOptions()
        options.optimized_model_filepath = path
        options.log_severity_level = 3
        ort.InferenceSession(proto.SerializeToString(), options, providers=["CPUExecutionProvider"])
        optimized = onnx.load(path, load_external_data=False)
    counts = Counter(node.op_type for node in optimized.graph.node)
    return tuple(sorted(counts.items()))


def _weight_agreement(
    float_proto: onnx.ModelProto,
    int8_proto: onnx.ModelProto,
    plan: QuantizationPlan,
    weight_bits: int,
    integers: Mapping[str, np.ndarray],
) -> Iterator[WeightAgreement]:
    """Each weight's integers (``integers``: the int8 model's constants) against the float32
    weight quantized with the plan's scales: int8 weights symmetric in
    ``[-2**(bits-1), 2**(bits-1)]`` (onnxruntime's 7-bit range is -64..64, its 8-bit one
    -127..127), int32 biases at the input's scale times the weights'. One float32 weight is
    read out of ``float_proto`` at a time, and compared in place."""
    floats = {tensor.name: tensor for tensor in float_proto.graph.initializer}
    consumers: dict[str, list[tuple[onnx.NodeProto, int]]] = {}
    for node in int8_proto.graph.node:
        for position, name in enumerate(node.input):
            consumers.setdefault(name, []).append((node, position))
    scales = {w.tensor: w for w in plan.weights}
    activations = {a.tensor: a for a in plan.activations}
    by_output = {a.integers: a for a in plan.activations}
    high = 64 if weight_bits == 7 else 127
    for weight in plan.weights:
        source = weight.integers.removesuffix("_quantized")
        if source not in floats:
            continue
        values = numpy_helper.to_array(floats[source])
        axis = weight.axis if weight.axis is not None else 0
        if weight.dtype == "int8":
            expected = _quantize_per_channel(values, weight.scales, axis, -high, high)
        else:  # int32: a bias at the scale of the op's input times its weight's
            expected = _quantize_per_channel(
                values, weight.scales, 0, -(2**31), 2**31 - 1, wide=True
            )
            user = consumers.get(weight.tensor, [])
            if user and user[0][0].op_type in ("Conv", "ConvTranspose", "Gemm") and user[0][1] == 2:
                node = user[0][0]
                input_scale = _input_scale(node, activations, by_output, int8_proto)
                kernel = scales.get(node.input[1])
                if input_scale is not None and kernel is not None:
                    wanted = (np.float32(input_scale) * kernel.scales).astype(np.float32)
                    if not np.allclose(wanted, weight.scales, rtol=1e-6):
                        yield WeightAgreement(f"{source} (scale)", values.size, 1 << 31)
                        continue
        # exact: the integers are whole numbers within float32's (int8) or float64's (int32)
        steps = np.abs(np.subtract(expected, integers[weight.integers], out=expected), out=expected)
        yield WeightAgreement(source, int(values.size), int(steps.max(initial=0)))


def _quantize_per_channel(values, scales, axis, low, high, *, wide: bool = False) -> np.ndarray:
    """``values / scale`` rounded half to even and saturated: in float32 for int8 weights, as
    ONNX's QuantizeLinear divides (float64 was one off at a half on two benchmark nets); in
    float64 for an int32 bias, which for a channel whose weights are all but zero (a
    BatchNormalization's gamma near 0) nears 2**31, where float32's step is 256."""
    shape = [1] * values.ndim
    if values.ndim:
        shape[axis] = -1
    scale = scales.reshape(shape) if scales.size > 1 else scales.reshape(())
    kind = np.float64 if wide else np.float32
    quantized = values.astype(kind)  # a copy, divided, rounded and saturated in place
    np.divide(quantized, scale.astype(kind), out=quantized)
    np.rint(quantized, out=quantized)
    return np.clip(quantized, low, high, out=quantized)


def _input_scale(node, activations, by_output, proto) -> float | None:
    """The scale of the activation a Conv, Gemm or MatMul reads, through its DequantizeLinear."""
    producers = {name: n for n in proto.graph.node for name in n.output}
    dequantize = producers.get(node.input[0])
    if dequantize is None or dequantize.op_type != "DequantizeLinear":
        return None
    quantized = by_output.get(dequantize.input[0])
    return None if quantized is None else quantized.scale


def _hint(weight_bits: int) -> str | None:
    """Why a group may be many steps off: 8-bit weights on an x86 CPU without VNNI."""
    if weight_bits != 8:
        return None
    flags = Path("/proc/cpuinfo")
    try:
        text = flags.read_text()
    except OSError:
        return None
    if "avx2" in text and "vnni" not in text:
        return (
            "this CPU has AVX2 without VNNI, where onnxruntime's uint8 x int8 kernels sum "
            "pairs of products in 16 bits, which 8-bit weights can saturate: build with "
            "--weight-bits 7 for this CPU"
        )
    return None

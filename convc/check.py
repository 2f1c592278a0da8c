"""``convc check``: the compiled model, layer by layer, against the NumPy reference.

The model is compiled with every layer's output exposed as a graph output, run in ONNX Runtime,
and each layer's output is compared with the reference's. An element agrees when
``|onnx - reference| <= atol + rtol * |reference|`` (NumPy's ``isclose``). The defaults suit
float32: both outputs round differently at each layer, by a few units in the last place.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from convc.diagnostics import ConvcError
from convc.lower import lower
from convc.model import Model, format_shape
from convc.reference import run_reference
from convc.runtime import check_inputs, open_session
from convc.targets import DEFAULT_TARGET, get_target, resolve_opset
from convc.weights import Weights

DEFAULT_RTOL = 1e-4
DEFAULT_ATOL = 1e-4


@dataclass(frozen=True)
class LayerComparison:
    name: str
    class_name: str
    line: int
    shape: tuple[int, ...]
    max_abs: float
    max_rel: float
    ok: bool


@dataclass(frozen=True)
class CheckReport:
    layers: tuple[LayerComparison, ...]
    provider: str
    rtol: float
    atol: float

    @property
    def ok(self) -> bool:
        return all(layer.ok for layer in self.layers)

    @property
    def first_divergence(self) -> LayerComparison | None:
        return next((layer for layer in self.layers if not layer.ok), None)

    def render(self) -> str:
        rows = [("layer", "class", "output shape", "max abs err", "max rel err", "verdict")]
        for layer in self.layers:
            rows.append(
                (
                    layer.name,
                    layer.class_name,
                    format_shape(layer.shape),
                    f"{layer.max_abs:.2e}",
                    f"{layer.max_rel:.2e}",
                    "ok" if layer.ok else "MISMATCH",
                )
            )
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        lines = [
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
            for row in rows
        ]
        lines.insert(1, "  ".join("-" * width for width in widths))
        first = self.first_divergence
        if first is None:
            lines.append(
                f"all {len(self.layers)} layers agree (rtol {self.rtol:g}, atol {self.atol:g})"
            )
        else:
            lines.append(
                f"first divergence: layer '{first.name}' ({first.class_name}, line {first.line}): "
                f"max abs error {first.max_abs:.3g} exceeds rtol {self.rtol:g}, atol {self.atol:g}"
            )
        return "\n".join(lines)


def check(
    model: Model,
    weights: Weights,
    x: np.ndarray | dict[str, np.ndarray],
    *,
    provider: str = "cpu",
    rtol: float | None = None,
    atol: float | None = None,
    target: str = DEFAULT_TARGET,
    opset: int | None = None,
    optimize: bool = True,
    precision: str = "float32",
) -> CheckReport:
    """Run ONNX Runtime and the reference on ``x`` (one array for a one-input model, else arrays
    by input name) and compare every node's output, in the model's order; the model is lowered
    for ``target`` (``convc.targets``) as ``convc build`` lowers it, and made float16 by
    ``convc.precision`` for ``precision="float16"``. Tolerances default to the precision's
    (``DEFAULT_RTOL``/``DEFAULT_ATOL``, or ``convc.precision.FLOAT16_RTOL``/``FLOAT16_ATOL``);
    the reference always computes in float32 (float64 where Keras does)."""
    from convc.precision import FLOAT16_ATOL, FLOAT16_RTOL, check_precision, to_float16

    check_precision(precision)
    half = precision == "float16"
    rtol = (FLOAT16_RTOL if half else DEFAULT_RTOL) if rtol is None else rtol
    atol = (FLOAT16_ATOL if half else DEFAULT_ATOL) if atol is None else atol
    for name, value in (("rtol", rtol), ("atol", atol)):
        if not 0 <= value < float("inf"):
            raise ConvcError(f"{name} must be a finite number >= 0, got {value}")
    chosen = get_target(target)
    opset = resolve_opset(chosen, opset)
    proto = lower(model, weights, opset=opset, target=chosen, layer_outputs=True, optimize=optimize)
    if half:
        proto = to_float16(proto)
    # Without spinning: onnxruntime's idle threads would otherwise compete with NumPy's.
    session = open_session(proto, provider, spin=False)
    given = x if isinstance(x, dict) else {model.input.name: x}
    inputs = check_inputs(session, given)
    expected = run_reference(model, weights, inputs)
    actual = session.run(inputs)
    layers = tuple(
        _compare(
            node.name, node.class_name, node.span.line, actual[node.name], reference, rtol, atol
        )
        for node, reference in zip(model.nodes, expected, strict=True)
    )
    return CheckReport(layers, session.provider, rtol, atol)


def _compare(name, class_name, line, actual, expected, rtol, atol) -> LayerComparison:
    if actual.shape != expected.shape:
        return LayerComparison(
            name, class_name, line, actual.shape, float("inf"), float("inf"), False
        )
    errors = _Errors(rtol, atol)
    flat_actual = actual.reshape(-1)
    flat_expected = np.ascontiguousarray(expected).reshape(-1)
    for start in range(0, flat_actual.size, _CHUNK):
        errors.add(flat_actual[start : start + _CHUNK], flat_expected[start : start + _CHUNK])
    return LayerComparison(
        name, class_name, line, actual.shape, errors.max_abs, errors.max_rel, errors.ok
    )


_CHUNK = 1 << 16
"""Elements compared at a time. Layer outputs are the largest arrays a check touches; a chunk's
few float32 buffers stay in the cache and are reused, where whole-array temporaries would each
cost a pass through memory and fresh pages (3 to 6 times slower on a 3-D net)."""


class _Errors:
    """The running verdict, worst absolute error and worst relative error of a comparison fed
    chunk by chunk. Where one side only is NaN, both worst errors are NaN; NaN in both, or equal
    infinities, agree (NumPy's ``isclose`` with ``equal_nan``)."""

    def __init__(self, rtol: float, atol: float):
        self.rtol, self.atol = np.float32(rtol), np.float32(atol)
        self.ok, self.max_abs, self.max_rel = True, 0.0, 0.0
        self._error = np.empty(_CHUNK, np.float32)
        self._scale = np.empty(_CHUNK, np.float32)
        self._bound = np.empty(_CHUNK, np.float32)
        self._within = np.empty(_CHUNK, bool)

    def add(self, actual: np.ndarray, expected: np.ndarray) -> None:
        n = actual.size
        error, scale, bound, within = (
            self._error[:n],
            self._scale[:n],
            self._bound[:n],
            self._within[:n],
        )
        with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
            np.subtract(actual, expected, out=error)
            np.abs(error, out=error)
            np.abs(expected, out=scale)
            np.multiply(scale, self.rtol, out=bound)
            bound += self.atol
            np.less_equal(error, bound, out=within)
            if not within.all():
                same = (actual == expected) | (np.isnan(actual) & np.isnan(expected))
                error[same] = 0.0
                self.ok = self.ok and bool(np.all(within | same))
            self.max_abs = _worst(self.max_abs, float(np.max(error)))
            np.fmax(scale, self.atol, out=scale)  # a relative error's base: at least atol
            np.divide(error, scale, out=scale)
            relative = float(np.max(scale))
            if np.isnan(relative):  # 0 / 0 where atol is 0 is no error; x / 0 is infinite
                scale[error == 0] = 0.0
                relative = float(np.max(scale))
            self.max_rel = _worst(self.max_rel, relative)


def _worst(so_far: float, value: float) -> float:
    """The larger of two errors, NaN once either is."""
    return math.nan if math.isnan(so_far) or math.isnan(value) else max(so_far, value)

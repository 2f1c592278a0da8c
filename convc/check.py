"""``convc check``: the compiled model, layer by layer, against the NumPy reference.

The model is compiled with every layer's output exposed as a graph output, run in ONNX Runtime,
and each layer's output is compared with the reference's. An element agrees when
``|onnx - reference| <= atol + rtol * |reference|`` (NumPy's ``isclose``). The defaults suit
float32: both outputs round differently at each layer, by a few units in the last place.
"""

from __future__ import annotations

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
    x: np.ndarray,
    *,
    provider: str = "cpu",
    rtol: float = DEFAULT_RTOL,
    atol: float = DEFAULT_ATOL,
    target: str = DEFAULT_TARGET,
    opset: int | None = None,
    optimize: bool = True,
) -> CheckReport:
    """Run ONNX Runtime and the reference on input ``x`` and compare every layer's output; the
    model is lowered for ``target`` (``convc.targets``) as ``convc build`` lowers it."""
    for name, value in (("rtol", rtol), ("atol", atol)):
        if not 0 <= value < float("inf"):
            raise ConvcError(f"{name} must be a finite number >= 0, got {value}")
    chosen = get_target(target)
    opset = resolve_opset(chosen, opset)
    proto = lower(model, weights, opset=opset, target=chosen, layer_outputs=True, optimize=optimize)
    # Without spinning: onnxruntime's idle threads would otherwise compete with NumPy's.
    session = open_session(proto, provider, spin=False)
    inputs = check_inputs(session, {model.input.name: x})
    expected = run_reference(model, weights, inputs[model.input.name])
    actual = session.run(inputs)
    layers = tuple(
        _compare(
            layer.name, layer.class_name, layer.span.line, actual[layer.name], reference, rtol, atol
        )
        for layer, reference in zip(model.layers, expected, strict=True)
    )
    return CheckReport(layers, session.provider, rtol, atol)


def _compare(name, class_name, line, actual, expected, rtol, atol) -> LayerComparison:
    if actual.shape != expected.shape:
        return LayerComparison(
            name, class_name, line, actual.shape, float("inf"), float("inf"), False
        )
    if actual.size == 0:
        return LayerComparison(name, class_name, line, actual.shape, 0.0, 0.0, True)
    # In float32 (two close floats differ exactly) and in place: these are the largest arrays a
    # check touches, and each fresh one costs page faults.
    with np.errstate(invalid="ignore", over="ignore"):
        error = np.subtract(actual, expected)
        np.abs(error, out=error)
        scale = np.abs(expected)  # |expected|, then the tolerance, then the relative error's base
        bound = scale * np.float32(rtol)
        bound += np.float32(atol)
        ok = bool(np.all(error <= bound))
        if not ok:  # NaN in both, or equal infinities, also agree (numpy's isclose rule)
            same = (actual == expected) | (np.isnan(actual) & np.isnan(expected))
            error[same] = 0.0
            ok = bool(np.all(same | (error <= bound)))
        del bound
        max_abs = float(np.max(error))  # NaN where only one side is NaN
        np.maximum(scale, np.float32(atol), out=scale)
        np.divide(error, scale, out=scale)
        max_rel = float(np.max(scale))
    return LayerComparison(name, class_name, line, actual.shape, max_abs, max_rel, ok)

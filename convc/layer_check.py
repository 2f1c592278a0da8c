"""``convc check``: the compiled model, layer by layer, against the NumPy reference.

The model is compiled with every layer's output exposed as a graph output, run in ONNX Runtime,
and each layer's output is compared with the reference's by ``convc.compare`` (the comparator
golden verification uses too): ``|onnx - reference| <= atol + rtol * |reference|``. The
defaults suit float32: both outputs round differently at each layer, by a few units in the last
place.

Those differences travel down the model, and a layer may amplify what it receives: a trained
BatchNormalization whose variance is tiny multiplies its input's rounding by its gain (37.7 in
a published Keras 2 U-Net, whose output still matches Keras and tf.keras to 4e-5). So a layer
whose output parts from the reference's is computed again by the reference on onnxruntime's
own inputs to it: if that agrees, the layer computes what it should and only inherits its
input's difference (verdict ``inherited``); if not, it is where the model diverges
(``MISMATCH``). A wrong lowering parts on its own inputs too, and the layers after it inherit.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from convc.compare import DEFAULT_ATOL, DEFAULT_RTOL, check_tolerances, compare
from convc.diagnostics import ConvcError, printable
from convc.lower import lower
from convc.memory import check_estimate, input_batch, max_memory_bytes
from convc.model import Model, format_shape
from convc.options import BuildOptions, build_options
from convc.reference import run_node, run_reference
from convc.runtime import check_inputs, open_session, random_array
from convc.targets import get_target
from convc.weights import Weights


@dataclass(frozen=True)
class LayerComparison:
    name: str
    class_name: str
    line: int
    shape: tuple[int, ...]
    max_abs: float
    max_rel: float
    ok: bool
    inherited: bool = False
    """Outside the tolerance, but the reference agrees on onnxruntime's inputs to the layer: the
    difference came with its input (``ok`` is then True)."""

    @property
    def verdict(self) -> str:
        return "MISMATCH" if not self.ok else "inherited" if self.inherited else "ok"


@dataclass(frozen=True)
class CheckReport:
    layers: tuple[LayerComparison, ...]
    provider: str
    rtol: float
    atol: float
    input_shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)
    """The shape of each input the layers were compared on, by name."""

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
                    layer.verdict,
                )
            )
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        lines = [
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
            for row in rows
        ]
        lines.insert(1, "  ".join("-" * width for width in widths))
        first = self.first_divergence
        inherited = [layer.name for layer in self.layers if layer.inherited]
        if inherited:
            lines.append(
                "inherited (outside the tolerance only by what their inputs bring; on "
                "onnxruntime's own inputs the reference agrees): "
                + ", ".join(inherited[:5])
                + (f" and {len(inherited) - 5} more" if len(inherited) > 5 else "")
            )
        if first is None:
            some = f", {len(inherited)} of them by inheriting" if inherited else ""
            lines.append(
                f"all {len(self.layers)} layers agree{some} (rtol {self.rtol:g}, "
                f"atol {self.atol:g})"
            )
        else:
            lines.append(
                f"first divergence: layer '{first.name}' ({first.class_name}, line {first.line}): "
                f"max abs error {first.max_abs:.3g} exceeds rtol {self.rtol:g}, atol {self.atol:g}"
            )
        return printable("\n".join(lines))  # names come from files


def check_layers(
    model: Model,
    weights: Weights,
    x: np.ndarray | dict[str, np.ndarray] | None,
    *,
    provider: str = "cpu",
    rtol: float | None = None,
    atol: float | None = None,
    options: BuildOptions | None = None,
    batch: int = 1,
    input_seed: int = 0,
    max_memory: int | str | None = None,
    **build_keywords: Any,
) -> CheckReport:
    """Run ONNX Runtime and the reference on ``x`` (one array for a one-input model, else arrays
    by input name; None for random ones of ``batch``, input i drawn with ``input_seed + i``) and
    compare every node's output, in the model's order. Before any input is drawn or anything
    runs, the memory the check would hold is estimated (``convc.memory.check_estimate``) and
    beyond ``max_memory`` (bytes or a size such as ``"16G"``; None for
    ``convc.memory.default_max_memory``) it is refused. The model is lowered
    with ``options`` (``target=``, ``opset=``, ``optimize=``, ``precision=`` may be given as
    keywords instead) as ``convc build`` lowers it, but in Keras's layout (``io_layout`` does not
    apply), and made float16 by ``convc.precision`` for ``precision="float16"``. Tolerances
    default to the precision's (``DEFAULT_RTOL``/``DEFAULT_ATOL``, or
    ``convc.precision.FLOAT16_RTOL``/``FLOAT16_ATOL``); the reference always computes in float32
    (float64 where Keras does)."""
    from convc.precision import FLOAT16_ATOL, FLOAT16_RTOL, to_float16

    options = build_options(options, **build_keywords)
    limit = max_memory_bytes(max_memory)
    if options.precision == "int8":
        raise ConvcError("an int8 model is checked by convc.int8_check.check_int8")
    half = options.precision == "float16"
    rtol = (FLOAT16_RTOL if half else DEFAULT_RTOL) if rtol is None else rtol
    atol = (FLOAT16_ATOL if half else DEFAULT_ATOL) if atol is None else atol
    check_tolerances(rtol, atol)
    proto = lower(
        model,
        weights,
        opset=options.resolved_opset,
        target=get_target(options.target_name),
        layer_outputs=True,
        optimize=options.optimize,
    )
    if half:
        proto = to_float16(proto)
    given = None if x is None else x if isinstance(x, dict) else {model.input.name: x}
    estimate = check_estimate(model, proto, batch if given is None else input_batch(model, given))
    estimate.enforce(limit)
    if given is None:
        given = {
            model_input.name: random_array(model_input.shape, seed=input_seed + i, batch=batch)
            for i, model_input in enumerate(model.inputs)
        }
    # Without spinning: onnxruntime's idle threads would otherwise compete with NumPy's.
    session = open_session(proto, provider, spin=False)
    del proto  # the session holds the weights it needs: one copy fewer while the layers run
    inputs = check_inputs(session, given)
    expected = run_reference(model, weights, inputs)
    actual = session.run(inputs)
    layers = []
    for node, reference in zip(model.nodes, expected, strict=True):
        layer = _compare(
            node.name, node.class_name, node.span.line, actual[node.name], reference, rtol, atol
        )
        if not layer.ok and layer.max_abs != float("inf"):
            own_inputs = [
                actual[tensor.name] if tensor.name in actual else inputs[tensor.name]
                for tensor in node.inputs
            ]
            local = run_node(node, weights, [x.astype(np.float32) for x in own_inputs])
            if compare(actual[node.name], local, rtol, atol).ok:
                layer = dataclasses.replace(layer, ok=True, inherited=True)
        layers.append(layer)
    shapes = {name: tuple(array.shape) for name, array in inputs.items()}
    return CheckReport(tuple(layers), session.provider, rtol, atol, shapes)


def _compare(name, class_name, line, actual, expected, rtol, atol) -> LayerComparison:
    if actual.shape != expected.shape:
        return LayerComparison(
            name, class_name, line, actual.shape, float("inf"), float("inf"), False
        )
    result = compare(actual, expected, rtol, atol)
    return LayerComparison(
        name, class_name, line, actual.shape, result.max_abs, result.max_rel, result.ok
    )

"""The portability matrix: every per-layer case and sample, built for a target, run in a runtime,
compared with convc's NumPy reference.

``evaluate`` gives one cell; test_runtime_matrix.py asserts that no cell fails, and

    python tests/matrix.py

runs every cell and writes the matrix of docs/runtimes.md (between its ``matrix`` markers) and
the per-case detail in docs/runtime-matrix.md, so the table is generated from the same function
the tests assert on, never written by hand (tests/test_docs.py checks its rows against the cells).

Each cell draws random weights (``convc.weights.exercise``: non-zero biases, random normalization
statistics), so a runtime that drops a bias or a statistic fails. A refusal is a failure unless
``EXPECTED_REFUSALS`` lists it. Each runtime is also called as its users call it: the default
``portable`` model the way ``convc.runners`` loads it (dynamic batch; onnxruntime at
``ORT_ENABLE_ALL``), and each runtime's own ``--target`` model with its input shape pinned first
(tract's ``set_input_fact`` then ``analyse``, OpenVINO's ``reshape`` before ``compile_model``,
OpenCV on the model with its batch fixed, fed an unnamed blob; onnxruntime at ``ORT_ENABLE_BASIC``).
"""

from __future__ import annotations

import fnmatch
import re
import sys
import tempfile
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

from convc.compiler import model_weights, resolve_text
from convc.diagnostics import ConvcError
from convc.layers import LAYER_TYPES
from convc.lower import lower
from convc.onnxfile import save
from convc.reference import model_outputs, run_reference
from convc.runners import available, how_to_get, open_runner
from convc.targets import RUNTIMES, get_target, resolve_opset
from convc.weights import exercise

ROOT = Path(__file__).resolve().parent.parent
MATRIX_PAGE = "docs/runtimes.md"  # the page whose matrix main() rewrites
MATRIX_MARKERS = ("<!-- matrix:start -->", "<!-- matrix:end -->")
SAMPLES = sorted((ROOT / "samples").glob("*.conv"))
ATOL = RTOL = 1e-4
BATCH = 2

PASS, WORKAROUND, REFUSED, FAIL, NOT_RUN = (
    "pass",
    "pass with workaround",
    "refused",
    "FAIL",
    "not run",
)


# (case id pattern, "target@runtime" pattern, a fragment of the reason): the refusals that are
# expected. Any other refusal fails its cell, and so does a listed one that no longer refuses.
EXPECTED_REFUSALS: list[tuple[str, str, str]] = []


def expected_refusal(case_id: str, target: str, runtime: str) -> str | None:
    """The reason fragment of the ``EXPECTED_REFUSALS`` row that covers this cell, or None."""
    for case, column, reason in EXPECTED_REFUSALS:
        if fnmatch.fnmatchcase(case_id, case) and fnmatch.fnmatchcase(
            f"{target}@{runtime}", column
        ):
            return reason
    return None


@dataclass(frozen=True)
class Cell:
    status: str
    detail: str = ""


def runtime_missing(runtime: str) -> str | None:
    """Why ``runtime`` cannot run here, or None."""
    if available(runtime):
        return None
    return f"{runtime} is not installed here ({how_to_get(runtime)})"


def evaluate(text: str, runtime: str, target: str | None = None, case_id: str = "") -> Cell:
    """Build ``text`` for ``target`` (the runtime's own by default) with random weights, run it
    in ``runtime`` on a random batch, as ``PINNED`` says for that column, and compare every
    output with the NumPy reference."""
    missing = runtime_missing(runtime)
    if missing:
        return Cell(NOT_RUN, missing)
    model = resolve_text(text)
    weights = model_weights(model, _flat(exercise(model, seed=0)))
    target = target or runtime
    chosen = get_target(target)
    expected_reason = expected_refusal(case_id, target, runtime)
    try:
        proto = lower(model, weights, opset=resolve_opset(chosen, None), target=chosen)
    except ConvcError as error:
        if expected_reason is not None and expected_reason in error.message:
            return Cell(REFUSED, error.message)
        return Cell(FAIL, f"refused, and EXPECTED_REFUSALS does not list it: {error.message}")
    if expected_reason is not None:
        return Cell(FAIL, f"EXPECTED_REFUSALS lists a refusal ({expected_reason}), but it built")
    inputs = {
        i.name: np.random.default_rng(1 + n)
        .standard_normal((i.shape[0] or BATCH, *i.shape[1:]))
        .astype(np.float32)
        for n, i in enumerate(model.inputs)
    }
    expected = model_outputs(model, run_reference(model, weights, inputs))
    pinned = target != "portable" and runtime in PINNED
    try:
        if pinned:
            outputs = PINNED[runtime](proto, inputs)
        else:
            outputs = open_runner(proto, runtime).run(inputs)
    except ConvcError as error:
        return Cell(FAIL, error.message)
    except Exception as error:  # a pinned call's runtime error, as its user would see it
        how = PINNED_HOW.get(runtime, "")
        return Cell(FAIL, f"{how}: {type(error).__name__}: {' '.join(str(error).split())[:300]}")
    for name, want in expected.items():
        got = np.asarray(outputs[name])
        if got.shape != want.shape:
            return Cell(FAIL, f"{name}: shape {got.shape}, expected {want.shape}")
        if not np.allclose(got, want, rtol=RTOL, atol=ATOL):
            return Cell(FAIL, f"{name}: max abs difference {np.abs(got - want).max():.3g}")
    notes = [p.value for p in proto.metadata_props if p.key == "convc.workarounds"]
    if notes:
        texts = sorted({line.split(": ", 1)[1] for line in notes[0].splitlines()})
        return Cell(WORKAROUND, "; ".join(texts))
    return Cell(PASS)


def _flat(weights: dict[str, dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    return {f"{layer}/{name}": a for layer, arrays in weights.items() for name, a in arrays.items()}


# -- runtimes called as their users call them -------------------------------------------------


def _file(proto: onnx.ModelProto, directory: str) -> str:
    path = f"{directory}/model.onnx"
    save(proto, path)
    return path


def _dims(array: np.ndarray) -> list[int]:
    return [int(d) for d in array.shape]


def _tract_pinned(proto: onnx.ModelProto, inputs: dict[str, np.ndarray]) -> dict:
    import tract

    names = [i.name for i in proto.graph.input]
    with tempfile.TemporaryDirectory() as directory:
        model = tract.onnx().load(_file(proto, directory))
    for index, name in enumerate(names):
        model.set_input_fact(index, ",".join(map(str, _dims(inputs[name]))) + ",f32")
    model.analyse()
    runnable = model.into_model().into_runnable()
    outputs = runnable.run([np.ascontiguousarray(inputs[name]) for name in names])
    return {o.name: out.to_numpy() for o, out in zip(proto.graph.output, outputs, strict=True)}


def _openvino_pinned(proto: onnx.ModelProto, inputs: dict[str, np.ndarray]) -> dict:
    import openvino as ov

    core = ov.Core()
    with tempfile.TemporaryDirectory() as directory:
        model = core.read_model(_file(proto, directory))
    model.reshape({name: ov.PartialShape(_dims(array)) for name, array in inputs.items()})
    compiled = core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    results = compiled(inputs)
    return {o.name: results[compiled.output(o.name)] for o in proto.graph.output}


def _opencv_pinned(proto: onnx.ModelProto, inputs: dict[str, np.ndarray]) -> dict:
    """OpenCV on a model whose dynamic batch is fixed to the blob's (as onnxruntime's
    make_dynamic_shape_fixed tool does), fed unnamed blobs as blobFromImage's users do."""
    import cv2

    fixed = onnx.ModelProto()
    fixed.CopyFrom(proto)
    batch = next(iter(inputs.values())).shape[0]
    for value in (*fixed.graph.input, *fixed.graph.output):
        dim = value.type.tensor_type.shape.dim[0]
        if not dim.HasField("dim_value"):
            dim.dim_value = batch
    with tempfile.TemporaryDirectory() as directory:
        net = cv2.dnn.readNetFromONNX(_file(fixed, directory))
    names = [o.name for o in proto.graph.output]
    if len(inputs) == 1 and len(names) == 1:
        net.setInput(np.ascontiguousarray(next(iter(inputs.values()))))
        return {names[0]: net.forward()}
    for name, array in inputs.items():
        net.setInput(np.ascontiguousarray(array), name)
    return dict(zip(names, net.forward(names), strict=True))


def _ort_basic(proto: onnx.ModelProto, inputs: dict[str, np.ndarray]) -> dict:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(
        proto.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
    names = [o.name for o in proto.graph.output]
    return dict(zip(names, session.run(names, inputs), strict=True))


PINNED: dict[str, Callable[[onnx.ModelProto, dict[str, np.ndarray]], dict]] = {
    "tract": _tract_pinned,
    "openvino": _openvino_pinned,
    "opencv": _opencv_pinned,
    "ort": _ort_basic,
}
PINNED_HOW = {
    "tract": "tract with set_input_fact (the input shape pinned)",
    "openvino": "OpenVINO with model.reshape to the input's static shape",
    "opencv": "OpenCV on the model with a fixed batch, an unnamed input blob",
    "ort": "onnxruntime at ORT_ENABLE_BASIC",
}


# -- rows -------------------------------------------------------------------------------------

_PATHS = {"valid", "same", "causal", "nearest", "bilinear", "bicubic", "cf"}
_PATHS |= {"channels_last", "keepdims"}  # global pooling


def row_of(case_id: str) -> str:
    """The matrix row a per-layer case belongs to: its layer and argument path."""
    words = case_id.split("-")
    if words[0] == "activation":
        return "Conv + activation (every Keras activation)"
    head = words[0].lower()
    layer = _LAYERS.get(head)
    if layer is None:
        return "stacks, data_format directives, mixed formats"
    if len(words) > 1 and words[1] in _PATHS:
        path = "channels_first" if words[1] == "cf" else words[1]
        return f"{layer} {path}"
    if len(words) > 1 and words[1] == "channels_first":
        return f"{layer} channels_first"
    return f"{layer} other forms"


def _layer_names() -> dict[str, str]:
    """The class a case id's first word names: from the registry, under the spellings the case
    tables use (Keras's name prefix, the lower-case class, ``depthwise2d`` for
    ``depthwiseconv2d``)."""
    names = {"leaky_relu": "LeakyReLU", "noop": "Dropout, noise and Random* layers (no-ops)"}
    for layer_type in LAYER_TYPES.values():
        lower = layer_type.class_name.lower()
        for spelling in (
            layer_type.prefix,
            lower,
            re.sub(r"^(depthwise|separable)conv", r"\1", lower),
        ):
            names.setdefault(spelling, layer_type.class_name)
    return names


_LAYERS = _layer_names()


def all_cells() -> list[tuple[str, str, str]]:
    """(row, case id, text) for every per-layer case and every sample."""
    from graph_cases import GRAPH_CASES

    from cases import ALL_CASES

    rows = [(row_of(p.id), p.id, p.values[0]) for p in ALL_CASES]
    rows += [(f"graph {p.id}", p.id, p.values[0]) for p in GRAPH_CASES]
    rows += [(f"sample {path.name}", path.stem, path.read_text()) for path in SAMPLES]
    return rows


# -- the generated tables ---------------------------------------------------------------------

_WORST = [FAIL, NOT_RUN, REFUSED, WORKAROUND, PASS]
COLUMNS = [("portable", runtime) for runtime in RUNTIMES] + [(r, r) for r in RUNTIMES]


def render(results: dict[tuple[str, str, str, str], Cell]) -> tuple[str, str]:
    """The matrix of docs/runtimes.md (one row per layer and argument path) and the per-case
    detail."""
    import onnxruntime

    versions = _versions()
    grouped: dict[str, dict[tuple[str, str], list[tuple[str, Cell]]]] = defaultdict(
        lambda: defaultdict(list)
    )
    for (row, case_id, target, runtime), cell in results.items():
        grouped[row][(target, runtime)].append((case_id, cell))
    header = ["layer / argument path", "cases"] + [
        runtime if target == "portable" else f"{runtime} (--target {target})"
        for target, runtime in COLUMNS
    ]
    notes: list[str] = []  # footnotes: each distinct reason or workaround once
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in sorted(grouped, key=_row_order):
        cells = grouped[row]
        count = len(next(iter(cells.values())))
        rendered = [_summarise(cells[column], notes) for column in COLUMNS]
        lines.append("| " + " | ".join([row, str(count), *rendered]) + " |")
    legend = (
        f"Columns `ort` to `tensorrt`: the default `--target portable` model in each runtime, "
        f"loaded as `convc run --runtime` loads it; then each runtime's own `--target`, called "
        f"with its input shape pinned (tract `set_input_fact`, OpenVINO `reshape`, OpenCV on "
        f"the model with its batch fixed and an unnamed input blob; onnxruntime at `ORT_ENABLE_BASIC`). Weights are random, biases and "
        f"normalization statistics too; a refusal not listed as expected fails. Versions: onnxruntime {onnxruntime.__version__}, "
        + ", ".join(f"{name} {version}" for name, version in versions.items())
        + f". Each cell: every case of the row, batch {BATCH}, compared with convc's NumPy "
        f"reference (atol = rtol = {ATOL})."
    )
    footnotes = [f"[{i}] {note}" for i, note in enumerate(notes, 1)]
    table = legend + "\n\n" + "\n".join(lines) + "\n\n" + "  \n".join(footnotes)
    detail = ["# Runtime matrix, case by case", "", "Generated by `python tests/matrix.py`.", ""]
    detail.append("Every cell that is not a plain pass (runtimes that did not run: once each).")
    detail.append("")
    not_run = set()
    for row in sorted(grouped, key=_row_order):
        for column in COLUMNS:
            for case_id, cell in grouped[row][column]:
                if cell.status == NOT_RUN:
                    not_run.add(f"- {column[1]}: {cell.detail}")
                elif cell.status != PASS:
                    detail.append(
                        f"- {case_id}, target {column[0]}, {column[1]}: {cell.status}"
                        + (f": {cell.detail}" if cell.detail else "")
                    )
    detail += sorted(not_run)
    return table, "\n".join(detail) + "\n"


def _row_order(row: str) -> tuple:
    return (
        row.startswith("sample"),
        row.startswith("graph"),
        row.startswith("stacks"),
        row.startswith("Conv +"),
        row,
    )


def _summarise(cells: list[tuple[str, Cell]], notes: list[str]) -> str:
    worst = min((cell.status for _, cell in cells), key=_WORST.index)
    if worst == PASS:
        return "pass"
    marks = []
    for detail in sorted({cell.detail for _, cell in cells if cell.status == worst}):
        if detail not in notes:
            notes.append(detail)
        marks.append(f"[{notes.index(detail) + 1}]")
    count = sum(cell.status == worst for _, cell in cells)
    share = "" if worst == NOT_RUN or count == len(cells) else f" ({count} of {len(cells)})"
    return f"{worst}{share} {''.join(marks)}"


def _versions() -> dict[str, str]:
    import importlib.metadata

    versions = {}
    for name, package in (
        ("onnx", "onnx"),
        ("OpenVINO", "openvino"),
        ("OpenCV", "opencv-python-headless"),
        ("tract", "tract"),
    ):
        try:
            versions[name] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def main() -> int:
    results = {}
    for row, case_id, text in all_cells():
        for target, runtime in COLUMNS:
            results[(row, case_id, target, runtime)] = evaluate(text, runtime, target, case_id)
    table, detail = render(results)
    page = ROOT / MATRIX_PAGE
    start, end = MATRIX_MARKERS
    text = page.read_text()
    if start not in text or end not in text:
        print(f"{MATRIX_PAGE} lacks the {start} and {end} markers", file=sys.stderr)
        return 1
    before, rest = text.split(start, 1)
    after = rest.split(end, 1)[1]
    page.write_text(f"{before}{start}\n{table}\n{end}{after}")
    (ROOT / "docs").mkdir(exist_ok=True)
    (ROOT / "docs" / "runtime-matrix.md").write_text(detail)
    failed = [key for key, cell in results.items() if cell.status == FAIL]
    print(
        f"{len(results)} cells, {len(failed)} failed; wrote {MATRIX_PAGE} and docs/runtime-matrix.md"
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    sys.exit(main())

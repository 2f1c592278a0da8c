"""Golden outputs: record what a compiled model computes, and verify later that it still does.

A golden directory uses the layout of ONNX's own backend test data, so that other tools (ONNX's
backend test runner, onnxruntime's ``onnx_test_runner``) read it as it is::

    DIR/model.onnx                        the compiled model, self-contained
    DIR/test_data_set_0/input_0.pb        serialized TensorProto, in graph input order
    DIR/test_data_set_0/output_0.pb       ONNX Runtime's outputs, in graph output order
    DIR/test_data_set_1/...               one set per recorded input
    DIR/manifest.json                     how it was made: see ``record``

``verify`` gives two verdicts that mean different things. *The compiler's output* compares the
model recompiled from the source (when the source is still there) with ``model.onnx``: the graph
and the initializers separately. *The numbers* run the recompiled model (or ``model.onnx`` when
the source cannot be recompiled) on the recorded inputs and compare element-wise with the
recorded outputs by ``convc.compare`` (the comparator ``convc check`` uses too). A
golden fails when the numbers change; a compiler-output change alone fails only when strict.

Without a weights file, ``record`` draws *random* weights (``convc.weights.exercise``: non-zero
biases, random normalization statistics), not the initializers' zeros and ones, under which most
models compute a nearly constant output that would pass for almost any model. ``record`` then
measures how much the golden constrains, by what verification itself accepts: a golden is weak
where one constant tensor, the same for every recorded set and every batch item, would pass
verification against all of them, that is where the model's outputs do not depend on its input
(a ReLU that kills everything, weights too small to matter, zero kernels). ``constant_share``
is, per output, the share of its elements at which such a constant passes. An output that
changes with the input beyond tolerance is not matched however small it is: a single score
counts like a large map. One input (one set of batch 1, the default) cannot tell, as any output
matches itself, so ``record`` then runs the model on one more input (the one ``sets=2`` would
record next) for the measure only. It refuses a golden where a constant matches every element
of an output, and warns above ``WEAK_SHARE``.

Format 2 adds ``weights_draw`` (``random`` or ``initializers``; format 1 golden directories,
which lack it, were drawn from the initializers and still verify) and ``constant_share``.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import onnx
from google.protobuf.message import DecodeError
from onnx import helper, numpy_helper

import convc
from convc.compare import DEFAULT_ATOL, DEFAULT_RTOL, agreement
from convc.compare import compare as compare_arrays
from convc.compiler import compile_model, is_model_file, read_source, write_bytes
from convc.diagnostics import ConvcError, printable
from convc.memory import (
    Bound,
    Estimate,
    TooMuchMemory,
    input_names,
    max_memory_bytes,
    run_estimate,
)
from convc.model import Model
from convc.options import BuildOptions, build_options
from convc.progress import track
from convc.runtime import Session, check_inputs, open_session, random_inputs
from convc.targets import DEFAULT_TARGET, target_name
from convc.weights import exercise

MANIFEST = "manifest.json"
MAX_SETS = 10_000
MODEL = "model.onnx"
FORMAT_VERSION = 2
DRAWS = ("random", "initializers")
WEAK_SHARE = 0.5  # warn when a constant matches more than this share of an output's elements
MIN_JUDGED = 2  # inputs (sets x batch items) the weak-golden measure needs: one matches itself
_SET = re.compile(r"test_data_set_(\d+)")
_TENSOR = re.compile(r"(input|output)_(\d+)\.pb")

CompilerOutput = Literal[
    "unchanged",
    "graph changed",
    "weights changed",
    "graph and weights changed",
    "source changed",
    "not recompiled",
]
"""The verdict on the compiler's output; ``Verification.compiler_detail`` says what and where."""

UNCHANGED: CompilerOutput = "unchanged"
GRAPH_CHANGED: CompilerOutput = "graph changed"
WEIGHTS_CHANGED: CompilerOutput = "weights changed"
BOTH_CHANGED: CompilerOutput = "graph and weights changed"
SOURCE_CHANGED: CompilerOutput = "source changed"
NOT_RECOMPILED: CompilerOutput = "not recompiled"


class CompilerOutputChanged(UserWarning):
    """A golden's numbers still hold, but the compiler no longer emits the recorded model."""


class WeakGolden(UserWarning):
    """A constant would match much of a recorded output: the golden constrains little."""


@dataclass(frozen=True)
class Recording:
    directory: Path
    sets: int
    outputs: tuple[tuple[str, tuple[int, ...]], ...]
    provider: str
    opset: int
    nodes: int
    constant_share: tuple[tuple[str, float], ...] = ()

    @property
    def weak(self) -> tuple[str, ...]:
        """The outputs that a constant (the same for every input) matches in more than
        ``WEAK_SHARE`` of their elements."""
        return tuple(name for name, share in self.constant_share if share > WEAK_SHARE)

    def render(self) -> str:
        plural = "s" if self.sets != 1 else ""
        lines = [
            f"recorded {self.directory}: model.onnx (opset {self.opset}, {self.nodes} nodes) and "
            f"{self.sets} input set{plural}, run on {self.provider}"
        ]
        shares = dict(self.constant_share)
        lines += [
            f"  output {name}: shape {shape}; a constant matches {shares.get(name, 0.0):.1%} "
            "of its elements"
            for name, shape in self.outputs
        ]
        if self.weak:
            lines.append(
                f"  warning: a constant would pass verify for most elements of "
                f"{', '.join(self.weak)}: this golden constrains little"
            )
        lines.append(f"  verify with: convc golden verify {self.directory}")
        return printable("\n".join(lines))  # names come from files


@dataclass(frozen=True)
class Failure:
    """One output of one set outside tolerance: its worst element (the largest excess over its
    tolerance), or ``problem`` when the output cannot be compared element by element."""

    set_index: int
    output: str
    index: tuple[int, ...] | None = None
    actual: float | None = None
    expected: float | None = None
    abs_error: float | None = None
    rel_error: float | None = None
    mismatched: int = 0
    size: int = 0
    problem: str = ""

    def render(self) -> str:
        head = f"set {self.set_index}, output {self.output!r}"
        if self.problem:
            return f"{head}: {self.problem}"
        index = "[" + ", ".join(str(i) for i in self.index or ()) + "]"
        return (
            f"{head}: {self.mismatched:,} of {self.size:,} elements outside tolerance; worst at "
            f"{index}: actual {self.actual:.9g}, expected {self.expected:.9g} "
            f"(abs error {self.abs_error:.3g}, rel error {self.rel_error:.3g})"
        )


@dataclass(frozen=True)
class Verification:
    directory: Path
    compiler_output: CompilerOutput
    compiler_detail: str
    failures: tuple[Failure, ...]
    ran: str
    sets: int
    outputs: int
    provider: str
    rtol: float
    atol: float
    changes: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()

    @property
    def numbers_ok(self) -> bool:
        return not self.failures

    @property
    def ok(self) -> bool:
        return self.numbers_ok

    def passes(self, *, strict: bool = False) -> bool:
        """Numbers within tolerance, and with ``strict`` the compiler's output unchanged too."""
        return self.numbers_ok and (not strict or self.compiler_output == UNCHANGED)

    def render(self) -> str:
        sets = f"{self.sets} set{'s' if self.sets != 1 else ''}"
        outputs = f"{self.outputs} output{'s' if self.outputs != 1 else ''}"
        lines = [f"golden {self.directory}: {sets} x {outputs}, {self.ran} run on {self.provider}"]
        detail = f" ({self.compiler_detail})" if self.compiler_detail else ""
        lines.append(f"  the compiler's output: {self.compiler_output}{detail}")
        tolerance = f"rtol {self.rtol:g}, atol {self.atol:g}"
        if self.numbers_ok:
            lines.append(f"  the numbers: ok, every element within {tolerance}")
        else:
            lines.append(
                f"  the numbers: CHANGED, {len(self.failures)} of {self.sets * self.outputs} "
                f"outputs outside {tolerance}"
            )
            lines += [f"    {failure.render()}" for failure in self.failures]
        if self.changes:
            lines.append("  since the recording: " + "; ".join(self.changes))
        lines += [f"  note: {note}" for note in self.notes]
        return printable("\n".join(lines))  # names come from files


def record(
    source: Path,
    directory: Path,
    *,
    weights: Path | None = None,
    options: BuildOptions | None = None,
    sets: int = 1,
    batch: int = 1,
    rtol: float | None = None,
    atol: float | None = None,
    provider: str = "cpu",
    draw: str = "random",
    allow_weak: bool = False,
    replace: Any = None,
    max_memory: int | str | None = None,
    **build_keywords: Any,
) -> Recording:
    """Compile ``source`` with ``options`` (or their fields as keywords: ``seed=``, ``target=``,
    ``opset=``, ...), run it on ``sets`` random inputs (seeds ``seed``, ``seed + 1``, …) and
    write the golden directory. An existing golden directory is replaced; the directory's other
    contents are never touched, and a non-empty directory that is not a golden is refused.
    ``source`` may be a Keras model file (``convc.importer``); its own weights are used unless
    ``weights`` are given. ``replace`` (``{"NAME": "CALL"}``, ``convc.replace``) replaces layers
    by name, and is recorded in the manifest so that ``verify`` recompiles the same model.

    Without ``weights``, ``draw`` says where the weights come from: ``random`` (every variable
    random, biases and statistics too) or ``initializers`` (the layers' own, zero biases). A
    golden that one constant, the same for every set and batch item, matches entirely (some
    output: it does not depend on the input) is refused unless ``allow_weak``; one that such a
    constant matches in more than ``WEAK_SHARE`` of an output warns (``WeakGolden``). With a
    single input (``sets=1, batch=1``) the model runs on one more input to tell. A recording
    that would hold more than ``max_memory`` (``convc.memory``) is refused before it runs."""
    options = build_options(options, **build_keywords)
    int8 = options.precision == "int8"
    if int8:  # before the work: arrays of calibration data have no path to record
        from convc import int8_golden

        int8_entry = int8_golden.manifest_entry(options, Path(directory))
    seed, target, opset = options.seed, options.target_name, options.resolved_opset
    source, directory = Path(source), Path(directory)
    if not 1 <= sets <= MAX_SETS:
        raise ConvcError(f"sets={sets}: record from 1 to {MAX_SETS:,} input sets")
    if batch < 1:
        raise ConvcError(f"batch={batch}: the batch size must be at least 1")
    from convc.precision import FLOAT16_ATOL, FLOAT16_RTOL

    half = options.precision == "float16"
    derive_atol = int8 and atol is None  # from the int8 reference, once recorded
    rtol = (0.0 if int8 else FLOAT16_RTOL if half else DEFAULT_RTOL) if rtol is None else rtol
    atol = (FLOAT16_ATOL if half else DEFAULT_ATOL) if atol is None else atol
    if rtol < 0 or atol < 0:
        raise ConvcError(f"rtol={rtol}, atol={atol}: tolerances cannot be negative")
    if draw not in DRAWS:
        raise ConvcError(f"draw={draw!r}: choose one of: {', '.join(DRAWS)}")
    from convc.replace import replacements

    given = replacements(replace)
    limit = max_memory_bytes(max_memory)
    weights = Path(weights) if weights is not None else None
    model, chosen = _load_model(source, given, weights)
    source_hash = _source_hash(source)

    def estimate_run(proto: onnx.ModelProto) -> Estimate:
        return run_estimate(proto, batch=batch, command="golden record", kept_sets=sets + 1)

    bound = Bound(limit, "golden record", str(source), estimate_run)
    proto = compile_model(model, _weights(model, chosen, draw, seed), options, bound=bound)
    estimate_run(proto).enforce(limit, path=str(source))
    model_bytes = proto.SerializeToString()
    session = open_session(proto, provider)
    recorded = []
    for index in track(range(sets), "running input sets"):
        inputs = random_inputs(session, seed=seed + index, batch=batch)
        recorded.append((inputs, session.run(inputs)))
    if derive_atol:
        atol = int8_golden.tolerance(proto, recorded)
    judged = [outputs for _, outputs in recorded]
    if _items(judged, batch) < MIN_JUDGED:  # one input: any output matches itself
        judged.append(session.run(random_inputs(session, seed=seed + sets, batch=batch)))
    shares = constant_share(judged, rtol, atol, batch=batch)
    useless = [name for name, share in shares if share >= 1.0]
    if useless and not allow_weak:
        drawn = "" if weights is not None or draw == "random" else " (drawn from the initializers)"
        tried = _items(judged, batch)
        raise ConvcError(
            f"a constant matches every element of output {', '.join(useless)} within rtol "
            f"{rtol:g}, atol {atol:g} for each of the {tried} inputs run: with these "
            f"weights{drawn} the output does not depend on the input, and the golden would pass "
            "for a model that ignores it",
            path=str(source),
            help=(
                "the random weights leave it so: give a weights file that makes every layer matter"
                if weights is None and draw == "random"
                else "record with random weights (the default without --weights) or a weights "
                "file that makes every layer matter"
            )
            + "; --allow-weak records it anyway",
        )
    weak = [name for name, share in shares if share > WEAK_SHARE]
    if weak:
        warnings.warn(
            f"a constant matches more than {WEAK_SHARE:.0%} of the elements of output "
            f"{', '.join(weak)}: the golden constrains little",
            WeakGolden,
            stacklevel=2,
        )

    _prepare(directory)
    write_bytes(model_bytes, directory / MODEL)
    for index, (inputs, outputs) in enumerate(recorded):
        folder = directory / f"test_data_set_{index}"
        folder.mkdir(exist_ok=True)
        for kind, arrays in (("input", inputs), ("output", outputs)):
            for j, (name, array) in enumerate(arrays.items()):
                tensor = numpy_helper.from_array(np.ascontiguousarray(array), name)
                write_bytes(tensor.SerializeToString(), folder / f"{kind}_{j}.pb")
        _remove_stale(folder, {"input": len(inputs), "output": len(outputs)})
    for folder in _set_folders(directory)[sets:]:
        shutil.rmtree(folder)

    first_inputs, first_outputs = recorded[0]
    manifest = {
        "format_version": FORMAT_VERSION,
        "source": {"path": _relative(source, directory), "sha256": source_hash},
        "weights": None
        if weights is None
        else {"path": _relative(weights, directory), "sha256": _file_hash(weights)},
        "weights_draw": None if weights is not None else draw,
        **({"replace": {r.name: r.text for r in given}} if given else {}),
        "constant_share": {name: round(share, 6) for name, share in shares},
        "seed": seed,
        "target": target,
        "opset": opset,
        "batch": batch,
        "sets": sets,
        "rtol": rtol,
        "atol": atol,
        "provider": session.provider,
        "model_sha256": hashlib.sha256(model_bytes).hexdigest(),
        "inputs": _signature(first_inputs),
        "outputs": _signature(first_outputs),
        "versions": _versions(),
    }
    for option in ("io_layout", "optimize", "precision", "io_dtype"):  # when not the default
        if option in options.non_defaults():
            manifest[option] = getattr(options, option)
    if int8:
        manifest["int8"] = int8_entry
    write_bytes(
        (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode(), directory / MANIFEST
    )
    return Recording(
        directory=directory,
        sets=sets,
        outputs=tuple((name, tuple(array.shape)) for name, array in first_outputs.items()),
        provider=session.provider,
        opset=opset,
        nodes=len(proto.graph.node),
        constant_share=tuple(shares),
    )


def constant_share(
    outputs: list[dict[str, np.ndarray]], rtol: float, atol: float, *, batch: int = 1
) -> list[tuple[str, float]]:
    """For each output, the share of its elements at which one constant tensor, the same for
    every set of ``outputs`` and every item of their batch (axis 0 when it has ``batch`` items),
    passes verification (``|c - e| <= atol + rtol * |e|``, NaN matching NaN) against every one:
    0 for an output that changes with the input everywhere, 1 for one a constant passes. With a
    single item every element matches itself: judge at least ``MIN_JUDGED``."""
    shares = []
    for name in outputs[0]:
        items = [_rows(np.asarray(o[name]), batch) for o in outputs]
        shares.append((name, _constant_matches(items, rtol, atol)))
    return shares


def _rows(array: np.ndarray, batch: int) -> np.ndarray:
    """An output as one row per batch item; an output without a batch axis is one item."""
    if array.ndim and array.shape[0] == batch:
        return array.reshape(batch, -1)
    return array.reshape(1, -1)


def _items(outputs: list[dict[str, np.ndarray]], batch: int) -> int:
    """How many inputs (sets times batch items) ``outputs`` hold, the fewest of any output."""
    return min(
        sum(_rows(np.asarray(o[name]), batch).shape[0] for o in outputs) for name in outputs[0]
    )


def _constant_matches(items: list[np.ndarray], rtol: float, atol: float) -> float:
    """The share of the columns of ``items`` (each ``(n, size)``) at which one constant of their
    dtype agrees (``convc.compare.agreement``) with every row. Each row allows an interval around
    its value; a constant exists where the intervals meet, and the representable value nearest
    their common part's middle is then inside it if any is. Where a row is NaN or infinite, the
    first row's value is the only candidate (verify agrees it with that same value only)."""
    size = items[0].shape[1]
    if not size:
        return 1.0
    rows = [row.astype(np.float64) for array in items for row in array]
    low = np.full(size, -np.inf)
    high = np.full(size, np.inf)
    finite = np.ones(size, bool)
    with np.errstate(invalid="ignore", over="ignore"):
        for row in rows:
            tolerance = atol + rtol * np.abs(row)
            np.fmax(low, row - tolerance, out=low)
            np.fmin(high, row + tolerance, out=high)
            finite &= np.isfinite(row)
        middle = _representable(np.where(finite, (low + high) / 2, 0.0), items[0].dtype)
    constant = np.where(finite, middle, rows[0])
    matched = np.ones(size, bool)
    for row in rows:
        matched &= agreement(constant, row, rtol, atol)
    return float(matched.mean())


def _representable(values: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """``values`` rounded to the nearest of ``dtype`` (integers and booleans: to whole numbers),
    back in float64."""
    if np.issubdtype(dtype, np.integer) or dtype == np.bool_:
        values = np.rint(values)
        if dtype == np.bool_:
            return np.clip(values, 0, 1)
        info = np.iinfo(dtype)
        return np.clip(values, info.min, info.max)
    with np.errstate(over="ignore"):
        return values.astype(dtype).astype(np.float64)


def _source_hash(source: Path) -> str:
    """What tells whether the source was edited: the hash of the text for .conv, of the file
    for a Keras model file (which holds its weights too)."""
    return _file_hash(source) if is_model_file(source) else _text_hash(read_source(source))


def _load_model(source: Path, replace: Any, weights: Path | None) -> tuple[Model, Any]:
    """The source's model, with ``replace``'s layers replaced, and its weights: ``weights``, or a
    Keras model file's own (None for .conv: drawn)."""
    from convc.compiler import load_source

    loaded = load_source(source, replace=replace)
    return loaded.model, loaded.weights_for(weights, str(source))


def _weights(model: Model, given: Any, draw: str, seed: int):
    """What ``compile_model`` takes: the weights file or a model file's arrays, or the drawn
    arrays as ``{"layer/var": array}``."""
    if given is not None or draw == "initializers":
        return given
    return {
        f"{layer}/{name}": array
        for layer, arrays in exercise(model, seed).items()
        for name, array in arrays.items()
    }


def verify(
    directory: Path,
    *,
    provider: str = "cpu",
    rtol: float | None = None,
    atol: float | None = None,
    max_memory: int | str | None = None,
) -> Verification:
    """Recompile (when the source is there), compare with ``model.onnx``, run on the recorded
    inputs and compare with the recorded outputs. Tolerances default to the recorded ones. A
    verification that would hold more than ``max_memory`` (``convc.memory``) is refused before
    the model runs."""
    directory = Path(directory)
    limit = max_memory_bytes(max_memory)
    manifest = _read_manifest(directory)
    rtol = float(manifest["rtol"]) if rtol is None else rtol
    atol = float(manifest["atol"]) if atol is None else atol
    model_path = directory / MODEL
    model_bytes = _read_file(model_path)
    recorded = _parse_model(model_bytes, model_path)
    data = _read_sets(directory, recorded, int(manifest["sets"]))

    changes = _version_changes(manifest)
    if hashlib.sha256(model_bytes).hexdigest() != manifest.get("model_sha256"):
        changes.append("model.onnx is not the file recorded (its sha256 differs from the manifest)")

    def estimate_run(target: onnx.ModelProto) -> Estimate:
        first = data[0].inputs if data else ()
        names = input_names(target)
        shapes = {name: array.shape for name, array in zip(names, first, strict=False)}
        return run_estimate(target, shapes, command="golden verify", kept_sets=len(data))

    bound = Bound(limit, "golden verify", str(directory), estimate_run)
    recompiled, compiler_output, compiler_detail = _recompile(directory, manifest, recorded, bound)
    target = recompiled if recompiled is not None else recorded
    estimate_run(target).enforce(limit, path=str(directory))
    session = _open(target, provider, None if recompiled is not None else model_path)
    if session.provider != manifest.get("provider"):
        changes.append(f"provider {manifest.get('provider')} -> {session.provider}")
    failures = _check_numbers(session, data, rtol, atol)

    notes = []
    if failures and recompiled is not None and compiler_output != UNCHANGED:
        cause = "the edit" if compiler_output == SOURCE_CHANGED else "the compiler's change"
        notes.append(_diagnose(recorded, provider, data, rtol, atol, cause))
    return Verification(
        directory=directory,
        compiler_output=compiler_output,
        compiler_detail=compiler_detail,
        failures=tuple(failures),
        ran="the recompiled model" if recompiled is not None else "model.onnx as recorded",
        sets=len(data),
        outputs=len(recorded.graph.output),
        provider=session.provider,
        rtol=rtol,
        atol=atol,
        changes=tuple(changes),
        notes=tuple(notes),
    )


def assert_golden(directory: Path, *, strict: bool = False, **options: Any) -> Verification:
    """``verify`` for any test runner: raises ``AssertionError`` with the report on failure."""
    verification = verify(Path(directory), **options)
    if not verification.passes(strict=strict):
        raise AssertionError(verification.render())
    return verification


# -- recording --------------------------------------------------------------------------------


def _prepare(directory: Path) -> None:
    if directory.exists() and not directory.is_dir():
        raise ConvcError("exists and is not a directory", path=str(directory))
    if directory.is_dir() and any(directory.iterdir()) and not (directory / MANIFEST).is_file():
        raise ConvcError(
            f"the directory is not empty and has no {MANIFEST}, so it is not a golden directory",
            path=str(directory),
            help="record into a new or empty directory, or into an existing golden directory",
        )
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ConvcError(
            f"cannot create the directory: {error.strerror}", path=str(directory)
        ) from None


def _remove_stale(folder: Path, counts: dict[str, int]) -> None:
    for path in folder.iterdir():
        match = _TENSOR.fullmatch(path.name)
        if match and int(match[2]) >= counts[match[1]]:
            path.unlink()


def _set_folders(directory: Path) -> list[Path]:
    folders = [
        (int(match[1]), path)
        for path in directory.iterdir()
        if path.is_dir() and (match := _SET.fullmatch(path.name))
    ]
    return [path for _, path in sorted(folders)]


def _relative(path: Path, directory: Path) -> str:
    try:
        return Path(os.path.relpath(os.path.abspath(path), os.path.abspath(directory))).as_posix()
    except ValueError:  # another drive on Windows
        return Path(os.path.abspath(path)).as_posix()


def _text_hash(text: str) -> str:
    """Of the text with its line endings normalized, so that a checkout with CRLF agrees."""
    return hashlib.sha256(text.replace("\r\n", "\n").encode("utf-8")).hexdigest()


def _file_hash(path: Path) -> str:
    return hashlib.sha256(_read_file(path)).hexdigest()


def _signature(arrays: dict[str, np.ndarray]) -> list[dict[str, Any]]:
    return [
        {"name": name, "shape": list(array.shape), "dtype": str(array.dtype)}
        for name, array in arrays.items()
    ]


def _versions() -> dict[str, str]:
    import onnxruntime

    return {
        "convc": convc.__version__,
        "numpy": np.__version__,
        "onnx": onnx.__version__,
        "onnxruntime": onnxruntime.__version__,
        "python": platform.python_version(),
    }


# -- reading a golden directory ---------------------------------------------------------------


@dataclass(frozen=True)
class _Set:
    index: int
    inputs: tuple[np.ndarray, ...]
    outputs: tuple[tuple[str, np.ndarray], ...]


_REQUIRED = ("source", "seed", "opset", "sets", "rtol", "atol")


def _read_manifest(directory: Path) -> dict[str, Any]:
    if not directory.is_dir():
        what = "is not a directory" if directory.exists() else "no such golden directory"
        raise ConvcError(what, path=str(directory))
    path = directory / MANIFEST
    if not path.is_file():
        raise ConvcError(
            f"no {MANIFEST}: not a golden directory",
            path=str(directory),
            help="record one with: convc golden record NET.conv DIR",
        )
    try:
        manifest = json.loads(_read_file(path).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ConvcError(f"the manifest is not valid JSON: {error}", path=str(path)) from None
    if not isinstance(manifest, dict):
        raise ConvcError("the manifest is not a JSON object", path=str(path))
    missing = [key for key in _REQUIRED if key not in manifest]
    if missing:
        raise ConvcError(f"the manifest lacks {', '.join(map(repr, missing))}", path=str(path))
    source = manifest["source"]
    if not isinstance(source, dict) or not isinstance(source.get("path"), str):
        raise ConvcError("the manifest's 'source' has no 'path'", path=str(path))
    weights = manifest.get("weights")
    if weights is not None and not (
        isinstance(weights, dict) and isinstance(weights.get("path"), str)
    ):
        raise ConvcError("the manifest's 'weights' has no 'path'", path=str(path))
    bounds = {
        "seed": (0, 2**63 - 1),
        "opset": (1, 10_000),
        "sets": (1, MAX_SETS),
        "batch": (1, 2**31 - 1),
    }
    for key, (low, high) in bounds.items():
        value = manifest.get(key, 1)
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise ConvcError(
                f"the manifest's {key!r} must be an integer from {low} to {high:,}, got {value!r}",
                path=str(path),
            )
    for key in ("rtol", "atol"):
        value = manifest[key]
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not 0 <= value < float("inf")
        ):
            raise ConvcError(
                f"the manifest's {key!r} must be a finite number >= 0, got {value!r}",
                path=str(path),
            )
    if manifest.get("weights_draw", "initializers") not in (*DRAWS, None):
        raise ConvcError(
            f"the manifest's 'weights_draw' must be one of {', '.join(DRAWS)}, got "
            f"{manifest['weights_draw']!r}",
            path=str(path),
        )
    replace = manifest.get("replace", {})
    if not isinstance(replace, dict) or not all(
        isinstance(key, str) and isinstance(value, str) for key, value in replace.items()
    ):
        raise ConvcError(
            "the manifest's 'replace' must map layer names to .conv calls", path=str(path)
        )
    if not isinstance(manifest.get("versions", {}), dict):
        raise ConvcError("the manifest's 'versions' must be an object", path=str(path))
    target = manifest.get("target", DEFAULT_TARGET)
    if not isinstance(target, str):
        raise ConvcError(f"the manifest's 'target' must be a name, got {target!r}", path=str(path))
    from convc.int8_golden import options_from

    options_from(manifest, directory)  # an int8 golden's settings are well formed
    return manifest


def _read_file(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise ConvcError("no such file", path=str(path)) from None
    except IsADirectoryError:
        raise ConvcError("is a directory, not a file", path=str(path)) from None
    except OSError as error:
        raise ConvcError(f"cannot read the file: {error.strerror}", path=str(path)) from None


def _parse_model(data: bytes, path: Path) -> onnx.ModelProto:
    proto = onnx.ModelProto()
    try:
        proto.ParseFromString(data)
    except DecodeError:
        raise ConvcError("not an ONNX model (cannot parse it)", path=str(path)) from None
    if not proto.HasField("graph") or not proto.graph.output:
        raise ConvcError("not an ONNX model (it has no graph outputs)", path=str(path))
    return proto


def _read_tensor(path: Path) -> tuple[str, np.ndarray]:
    tensor = onnx.TensorProto()
    try:
        tensor.ParseFromString(_read_file(path))
        array = numpy_helper.to_array(tensor)
    except ConvcError:
        raise
    except Exception as error:  # protobuf and numpy raise several types for a corrupt tensor
        raise ConvcError(
            f"not a serialized TensorProto ({type(error).__name__}: {error})", path=str(path)
        ) from None
    if not tensor.dims and array.size != 1 or tensor.data_type == onnx.TensorProto.UNDEFINED:
        raise ConvcError("not a serialized TensorProto (it has no type or shape)", path=str(path))
    return tensor.name, array


def _set_index(folder: Path) -> int:
    """The number of a ``test_data_set_N`` folder (``_set_folders`` lists no other)."""
    found = _SET.fullmatch(folder.name)
    assert found is not None, f"not a set folder: {folder.name}"
    return int(found[1])


def _read_sets(directory: Path, proto: onnx.ModelProto, recorded_sets: int) -> list[_Set]:
    folders = _set_folders(directory)
    present = {_set_index(folder) for folder in folders}
    missing = [i for i in range(recorded_sets) if i not in present]
    if missing:
        raise ConvcError(
            f"test_data_set_{missing[0]} is missing (the manifest records {recorded_sets} sets)",
            path=str(directory),
        )
    data = []
    for folder in folders:
        index = _set_index(folder)
        inputs = tuple(
            _read_tensor(folder / f"input_{j}.pb")[1] for j in range(len(proto.graph.input))
        )
        outputs = tuple(
            _read_tensor(folder / f"output_{j}.pb") for j in range(len(proto.graph.output))
        )
        names = [output.name for output in proto.graph.output]
        data.append(
            _Set(index, inputs, tuple((n or names[j], a) for j, (n, a) in enumerate(outputs)))
        )
    return data


# -- the compiler's output --------------------------------------------------------------------


def _recompile(
    directory: Path,
    manifest: dict[str, Any],
    recorded: onnx.ModelProto,
    bound: Bound | None = None,
) -> tuple[onnx.ModelProto | None, CompilerOutput, str]:
    """The model recompiled from the source the manifest names (an int8 one held to ``bound``
    while it calibrates), and how it compares with ``recorded``; None where it cannot be."""
    source = Path(os.path.normpath(directory / manifest["source"]["path"]))
    if not source.is_file():
        return None, NOT_RECOMPILED, f"the source {source} is missing"
    weights_entry = manifest.get("weights")
    weights = Path(os.path.normpath(directory / weights_entry["path"])) if weights_entry else None
    if weights is not None and not weights.is_file():
        return None, NOT_RECOMPILED, f"the weights file {weights} is missing"
    from convc import int8_golden

    edited = []
    calibration = int8_golden.calibration_changed(manifest, directory)
    if calibration is not None:
        edited.append(calibration)
    if _source_hash(source) != manifest["source"].get("sha256"):
        edited.append(str(source))
    if weights_entry and weights is not None and _file_hash(weights) != weights_entry.get("sha256"):
        edited.append(str(weights))
    draw = manifest.get("weights_draw") or "initializers"  # format 1 drew from initializers
    try:
        model, chosen = _load_model(source, manifest.get("replace"), weights)
        options = BuildOptions(
            target=target_name(str(manifest.get("target", DEFAULT_TARGET))),
            opset=int(manifest["opset"]),
            io_layout=manifest.get("io_layout", "keras"),
            optimize=manifest.get("optimize", True),
            seed=int(manifest["seed"]),
            precision=manifest.get("precision", "float32"),
            io_dtype=manifest.get("io_dtype", "float32"),
            **int8_golden.options_from(manifest, directory),
        )
        arrays = _weights(model, chosen, draw, options.seed)
        recompiled = compile_model(model, arrays, options, bound=bound)
    except TooMuchMemory:
        raise
    except ConvcError as error:
        where = f"{error.path}: " if error.path else ""
        line = f" (line {error.span.line})" if error.span else ""
        return None, NOT_RECOMPILED, f"{where}{error.message}{line}"
    verdict, detail = compare_models(recorded, recompiled)
    if edited:
        outcome = f"{verdict}: {detail}" if detail else verdict
        return recompiled, SOURCE_CHANGED, f"{' and '.join(edited)} edited; recompiled, {outcome}"
    return recompiled, verdict, detail


def compare_models(
    recorded: onnx.ModelProto, recompiled: onnx.ModelProto
) -> tuple[CompilerOutput, str]:
    """The verdict on the compiler's output (``unchanged``, ``graph changed``, ``weights
    changed``, ``graph and weights changed``) and a line that says where they first differ."""
    graph = _graph_difference(recorded, recompiled)
    weights = _weights_difference(recorded, recompiled)
    if graph and weights:
        return BOTH_CHANGED, f"{graph}; {weights}"
    if graph:
        return GRAPH_CHANGED, graph
    if weights:
        return WEIGHTS_CHANGED, weights
    return UNCHANGED, ""


def _graph_difference(recorded: onnx.ModelProto, recompiled: onnx.ModelProto) -> str:
    """Where the models differ, initializers and the producer's version aside ('' if nowhere)."""
    old = [(i.domain, i.version) for i in recorded.opset_import]
    new = [(i.domain, i.version) for i in recompiled.opset_import]
    if old != new:
        return f"opset {_opsets(old)} -> {_opsets(new)}"
    if recorded.ir_version != recompiled.ir_version:
        return f"IR version {recorded.ir_version} -> {recompiled.ir_version}"
    a, b = _skeleton(recorded.graph), _skeleton(recompiled.graph)
    if a == b:
        return ""
    for what in ("input", "output"):
        x, y = getattr(a, what), getattr(b, what)
        if x != y:
            return f"the graph {what}s differ: {_values(x)} -> {_values(y)}"
    for index, (x, y) in enumerate(zip(a.node, b.node, strict=False)):
        if x != y:
            return f"node {index} differs: {_node_difference(x, y)}"
    if len(a.node) != len(b.node):
        return f"{len(a.node)} nodes recorded, {len(b.node)} recompiled"
    if a.value_info != b.value_info:
        return "the intermediate values' shapes differ (value_info)"
    if a.name != b.name:
        return f"the graph's name {a.name!r} -> {b.name!r}"
    return "the graph's metadata differs"


def _skeleton(graph: onnx.GraphProto) -> onnx.GraphProto:
    copy = onnx.GraphProto()
    copy.CopyFrom(graph)
    del copy.initializer[:]
    return copy


def _opsets(opsets: list[tuple[str, int]]) -> str:
    return ", ".join(f"{domain or 'ai.onnx'} {version}" for domain, version in opsets)


def _values(values) -> str:
    return ", ".join(v.name for v in values) or "none"


def _node_difference(x: onnx.NodeProto, y: onnx.NodeProto) -> str:
    head = f"{x.name!r} ({x.op_type})"
    if (x.name, x.op_type) != (y.name, y.op_type):
        return f"{head} -> {y.name!r} ({y.op_type})"
    if list(x.input) != list(y.input) or list(x.output) != list(y.output):
        return f"{head} has other inputs or outputs"
    old = {a.name: helper.get_attribute_value(a) for a in x.attribute}
    new = {a.name: helper.get_attribute_value(a) for a in y.attribute}
    for name in sorted(old.keys() | new.keys()):
        if old.get(name) != new.get(name):
            before, after = _attribute(old.get(name)), _attribute(new.get(name))
            return f"{head} attribute {name}: {before} -> {after}"
    return f"{head} differs"


def _attribute(value: Any) -> str:
    if value is None:
        return "absent"
    if isinstance(value, bytes):
        return repr(value.decode("utf-8", "replace"))
    if isinstance(value, list):
        return "[" + ", ".join(map(str, value)) + "]"
    return str(value) if not isinstance(value, onnx.TensorProto) else "a tensor"


def _weights_difference(recorded: onnx.ModelProto, recompiled: onnx.ModelProto) -> str:
    old = {t.name: t for t in recorded.graph.initializer}
    new = {t.name: t for t in recompiled.graph.initializer}
    for name in [*old, *(n for n in new if n not in old)]:
        if name not in new:
            return f"initializer {name!r} is gone"
        if name not in old:
            return f"new initializer {name!r}"
        if old[name] != new[name]:
            return f"initializer {name!r} differs: {_tensor_difference(old[name], new[name])}"
    if [t.name for t in recorded.graph.initializer] != [
        t.name for t in recompiled.graph.initializer
    ]:
        return "the initializers' order differs"
    return ""


def _tensor_difference(old: onnx.TensorProto, new: onnx.TensorProto) -> str:
    try:
        a, b = numpy_helper.to_array(old), numpy_helper.to_array(new)
    except Exception:  # a tampered tensor may not convert
        return "its stored bytes differ"
    if a.shape != b.shape or a.dtype != b.dtype:
        return f"{a.dtype}{list(a.shape)} -> {b.dtype}{list(b.shape)}"
    diff = np.abs(a.astype(np.float64) - b.astype(np.float64))
    if not diff.size or not np.nanmax(diff, initial=0.0) > 0:
        return "its stored bytes differ"
    index = tuple(int(i) for i in np.unravel_index(int(np.nanargmax(diff)), diff.shape))
    return (
        f"largest difference at {list(index)}: {a[index].item():.9g} recorded, "
        f"{b[index].item():.9g} recompiled"
    )


# -- the numbers ------------------------------------------------------------------------------


def _open(proto: onnx.ModelProto, provider: str, path: Path | None) -> Session:
    try:
        return open_session(proto, provider)
    except ConvcError as error:
        if path is not None and error.path is None:
            error.path = str(path)
        raise


def _check_numbers(session: Session, data: list[_Set], rtol: float, atol: float) -> list[Failure]:
    failures = []
    names = session.output_names
    for golden in track(data, "verifying input sets"):
        if len(golden.inputs) != len(session.input_names):
            failures.append(
                Failure(
                    golden.index,
                    names[0],
                    problem=f"the model has {len(session.input_names)} inputs, the golden "
                    f"{len(golden.inputs)}",
                )
            )
            continue
        try:
            feeds = check_inputs(
                session, dict(zip(session.input_names, golden.inputs, strict=True))
            )
            actual = session.run(feeds)
        except ConvcError as error:
            failures.append(Failure(golden.index, names[0], problem=error.message))
            continue
        except Exception as error:  # onnxruntime raises its own exception types
            failures.append(Failure(golden.index, names[0], problem=f"onnxruntime: {error}"))
            continue
        for j, (name, expected) in enumerate(golden.outputs):
            if j >= len(names):
                failures.append(Failure(golden.index, name, problem="the model has no such output"))
                continue
            failure = compare(golden.index, name, actual[names[j]], expected, rtol, atol)
            if failure is not None:
                failures.append(failure)
        if len(names) > len(golden.outputs):
            extra = ", ".join(names[len(golden.outputs) :])
            failures.append(
                Failure(golden.index, extra, problem="the model has outputs the golden lacks")
            )
    return failures


def compare(
    set_index: int,
    name: str,
    actual: np.ndarray,
    expected: np.ndarray,
    rtol: float,
    atol: float,
) -> Failure | None:
    """``None`` when every element is within tolerance, else the worst element's ``Failure``."""
    if actual.shape != expected.shape:
        return Failure(
            set_index,
            name,
            problem=f"shape {tuple(actual.shape)}, but the golden has {tuple(expected.shape)}",
        )
    if actual.dtype != expected.dtype:
        return Failure(
            set_index, name, problem=f"dtype {actual.dtype}, but the golden has {expected.dtype}"
        )
    result = compare_arrays(actual, expected, rtol, atol)
    if result.ok:
        return None
    worst = result.worst
    assert worst is not None, "a failed comparison has a worst element"
    return Failure(
        set_index,
        name,
        index=worst.index,
        actual=worst.actual,
        expected=worst.expected,
        abs_error=worst.abs_error,
        rel_error=worst.rel_error,
        mismatched=result.mismatched,
        size=result.size,
    )


def _diagnose(
    recorded: onnx.ModelProto,
    provider: str,
    data: list[_Set],
    rtol: float,
    atol: float,
    cause: str,
) -> str:
    """Whether model.onnx as recorded still gives the recorded numbers: if it does, what changed
    the model (the compiler, or an edit of its source) changed them."""
    try:
        failures = _check_numbers(open_session(recorded, provider), data, rtol, atol)
    except ConvcError as error:
        return f"model.onnx as recorded cannot be run to compare: {error.message}"
    if failures:
        return (
            "model.onnx as recorded is outside tolerance too, so more changed than the model: "
            "the runtime, the provider or the recorded files"
        )
    return f"model.onnx as recorded still gives the recorded numbers: {cause} did this"


def _version_changes(manifest: dict[str, Any]) -> list[str]:
    recorded = manifest.get("versions") or {}
    return [
        f"{name} {recorded[name]} -> {version}"
        for name, version in _versions().items()
        if name in recorded and recorded[name] != version
    ]

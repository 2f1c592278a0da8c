"""convc on published Keras model files: build, check and import each, and compare its numbers
with the framework that wrote the file, where that framework can load it.

    python benchmarks/corpus/run.py FOLDER [--tf-keras-python PATH] [--timeout S] [--only ID ...]

FOLDER holds the files (``python benchmarks/corpus/fetch.py FOLDER`` downloads the corpus of
sources.json). For every model file in it, each in its own subprocess with a time limit:

* ``convc build FILE`` (with ``--weights`` where sources.json pairs a JSON file with a weights
  file, and ``--input-shape`` where it gives one for a file that leaves its input's size open),
  ``convc check FILE`` and ``convc import FILE``; an import is then rebuilt from its
  ``.conv`` and ``.npz`` and must give the same ONNX bytes as the build.
* Each outcome is one of: ``ok``; ``refused``, a located error (exit 1) whose first line is kept;
  ``disagrees`` (check: a layer outside the tolerance); ``crash`` (exit 3, a signal, or any other
  status); ``timeout``.
* Where convc built the file, its ONNX model runs in ONNX Runtime on seeded standard-normal
  inputs (batch 2), and the same inputs go to Keras 3 (this environment, torch backend, or
  ``--keras-python``) and to tf_keras (``--tf-keras-python``: a separate environment with
  ``tf_keras`` and ``tensorflow-cpu``; neither is ever a dependency of convc), each loading the
  file as it loads it (benchmarks/corpus/predict.py). Outputs are compared with convc's own rule
  (``convc.compare``, rtol = atol = 1e-4). A file that a framework cannot load is recorded with
  the framework's message; a file with a ``Lambda`` layer is not given to a framework (its
  loaders would run the file's code).
* A file with ``Lambda`` layers (found in its config) or an entry with ``replace`` (sources.json:
  ``{"lambda_1": "Rescaling(...)"}``, what each layer computes, read from the model's published
  source code, ``replace_source`` saying where) is built, checked and imported again with a
  ``--replace NAME=CALL`` for each; it counts as ``builds with --replace`` when the plain
  build's refusal names every such layer and the replaced build succeeds (an entry whose layers
  no convc layer computes says why in ``replace_missing``). Its outputs are compared with the
  same ONNX model whose replaced layer is ``Activation("linear")``, fed the inputs that the
  Lambda's own function (``replace_numpy``, one of ``LAMBDA_FUNCTIONS``) has transformed in
  NumPy, where that layer is a Sequential model's first; otherwise ``not compared (Lambda)``.

Results go to benchmarks/corpus/results.json and benchmarks/corpus/results.md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(REPO))

from describe import describe, first_layer, model_config  # noqa: E402
from describe import lambda_layers as describe_lambdas  # noqa: E402

from convc.compare import DEFAULT_ATOL, DEFAULT_RTOL, compare  # noqa: E402

MODEL_SUFFIXES = {".h5", ".hdf5", ".keras", ".json"}
BATCH = 2
INPUT_SEED = 0


def git_commit() -> str:
    try:
        commit = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(REPO), "status", "--porcelain", "--", "convc"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        return commit + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def first_line(text: str, folder: Path) -> str:
    """The first line of convc's message (with the next one where it ends in a colon), without
    the file's name and location (``FILE:3:5: error: ``), at most 200 characters."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for index, line in enumerate(lines):
        if line.endswith(":") and index + 1 < len(lines):  # "cannot compile this layer:" + what
            line = f"{line} {lines[index + 1]}"
        if line:
            line = line.replace(str(folder) + os.sep, "")
            line = re.sub(r"^\S+?\.(h5|hdf5|keras|json|npz|conv)(:\d+)*: (error: )?", "", line)
            return line if len(line) <= 200 else line[:197] + "..."
    return ""


def convc(args: list[str], timeout: float, folder: Path) -> dict:
    """Run ``python -m convc ARGS`` from the repository root; its outcome."""
    start = time.perf_counter()
    try:
        done = subprocess.run(
            [sys.executable, "-m", "convc", *args],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        return {"status": "timeout", "seconds": round(time.perf_counter() - start, 2)}
    seconds = round(time.perf_counter() - start, 2)
    if done.returncode == 0:
        return {"status": "ok", "seconds": seconds, "stdout": done.stdout[-2000:]}
    message = first_line(done.stderr, folder) or first_line(done.stdout, folder)
    if done.returncode == 4 and args and args[0] == "import":  # placeholder lines written
        return {"status": "placeholders", "seconds": seconds, "message": message}
    if done.returncode == 1:
        status = "disagrees" if "first divergence" in done.stdout else "refused"
        if status == "disagrees":
            message = first_line(done.stdout.split("first divergence", 1)[1], folder)
            message = "first divergence" + message
    else:
        status = "crash"
        message = f"exit {done.returncode}: {message}"
    return {"status": status, "seconds": seconds, "message": message, "_stderr": done.stderr}


def onnx_io(path: Path) -> tuple[list[tuple[str, tuple[int, ...]]], list[str]]:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    inputs = []
    for value in model.graph.input:
        dims = value.type.tensor_type.shape.dim
        inputs.append((value.name, tuple(d.dim_value if d.dim_value > 0 else BATCH for d in dims)))
    return inputs, [value.name for value in model.graph.output]


def run_onnx(path: Path, arrays: list[np.ndarray]) -> list[np.ndarray]:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    feeds = {i.name: a for i, a in zip(session.get_inputs(), arrays, strict=True)}
    return session.run(None, feeds)


def framework_predictions(
    python: str, framework: str, jobs: list[dict], timeout: float, scratch: Path
) -> tuple[str | None, dict[str, dict]]:
    """Run predict.py for ``jobs`` in ``python``; the framework's version and each job's result."""
    if not jobs:
        return None, {}
    jobs_file = scratch / f"jobs-{framework}.json"
    jobs_file.write_text(json.dumps(jobs))
    env = {**os.environ, "KERAS_BACKEND": "torch", "TF_CPP_MIN_LOG_LEVEL": "3"}
    env.pop("PYTHONPATH", None)
    results: dict[str, dict] = {}
    version = None
    try:
        done = subprocess.run(
            [python, str(HERE / "predict.py"), "--framework", framework, str(jobs_file)],
            capture_output=True,
            text=True,
            timeout=timeout * len(jobs) + 60,
            env=env,
        )
        out, err = done.stdout, done.stderr
    except subprocess.TimeoutExpired as expired:
        out = (expired.stdout or b"").decode() if isinstance(expired.stdout, bytes) else ""
        err = "timed out"
    for line in out.splitlines():
        if not line.startswith("{"):
            continue
        record = json.loads(line)
        if "framework" in record:
            version = record["version"]
        elif "id" in record:
            results[record["id"]] = record
    for job in jobs:
        if job["id"] not in results:
            results[job["id"]] = {"error": f"the {framework} process ended first: {err[-300:]}"}
    return version, results


def versus(
    ours: list[np.ndarray] | None, record: dict | None, outputs: Path | None, folder: Path
) -> dict:
    """convc's outputs against a framework's, by convc.compare's rule."""
    if record is None:
        return {"status": "not run"}
    if "error" in record:
        return {"status": "cannot load", "message": record["error"].replace(str(folder), "FOLDER")}
    if ours is None or outputs is None:
        return {"status": "loads"}
    with np.load(outputs) as data:
        theirs = [data[f"output_{i}"] for i in range(len(data.files))]
    if len(theirs) != len(ours):
        return {"status": "differs", "message": f"{len(ours)} outputs, framework {len(theirs)}"}
    worst_abs = worst_rel = 0.0
    ok = True
    for mine, expected in zip(ours, theirs, strict=True):
        if mine.shape != expected.shape:
            return {
                "status": "differs",
                "message": f"shape {mine.shape}, framework {expected.shape}",
            }
        result = compare(mine, expected.astype(np.float32), DEFAULT_RTOL, DEFAULT_ATOL)
        ok = ok and result.ok
        worst_abs = max(worst_abs, result.max_abs)
        worst_rel = max(worst_rel, result.max_rel)
    return {
        "status": "match" if ok else "differs",
        "max_abs": float(f"{worst_abs:.3g}"),
        "max_rel": float(f"{worst_rel:.3g}"),
    }


def model_files(folder: Path, entries: list[dict], only: set[str] | None) -> list[dict]:
    """The entries of sources.json found in ``folder``, then any other model file there."""
    found = []
    companions = {e["weights"]["file"] for e in entries if "weights" in e}
    listed = set()
    for entry in entries:
        listed.add(entry["file"])
        if only and entry["id"] not in only:
            continue
        if (folder / entry["file"]).is_file():
            found.append(entry)
        else:
            print(f"missing: {entry['file']} (python benchmarks/corpus/fetch.py {folder})")
    for path in sorted(folder.iterdir()):
        if path.name in listed or path.name in companions or path.suffix not in MODEL_SUFFIXES:
            continue
        if path.name.endswith(".weights.h5") or (only and path.stem not in only):
            continue
        described = describe(path)
        if described.format == "h5-weights":
            continue
        found.append(
            {
                "id": path.stem,
                "file": path.name,
                "kind": "",
                "source": {"type": "local"},
                **{k: v for k, v in described.as_dict().items() if k != "classes"},
            }
        )
    return found


# The Lambda functions of sources.json's ``replace_numpy``, as the model's source code writes
# them: the replaced model's outputs are compared with the same model, its replaced layer made
# an identity, on the inputs this function has already transformed (in float64).
LAMBDA_FUNCTIONS = {
    "x / 127.5 - 1.0": lambda x: x / 127.5 - 1.0,
    "x / 255.0 - 0.5": lambda x: x / 255.0 - 0.5,
}


def named_layers(refusal: str) -> set[str]:
    """The layer names a refusal quotes in its ``Class ('name', ...)`` lines."""
    names: set[str] = set()
    for match in re.finditer(r"^\s*\w+ \(((?:'[^']*'(?:, )?)+)", refusal, re.MULTILINE):
        names.update(re.findall(r"'([^']*)'", match.group(1)))
    return names


def rebuild_import(conv: Path, onnx_path: Path, extra: list[str], timeout: float, folder: Path):
    """Build an imported ``.conv`` with its ``.npz``: the outcome, ``ok, different ONNX`` where
    the bytes differ from ``onnx_path``'s."""
    again = conv.with_name(conv.stem + "-import.onnx")
    weights = (
        ["--weights", str(conv.with_suffix(".npz"))] if conv.with_suffix(".npz").is_file() else []
    )
    rebuilt = convc(["build", str(conv), *weights, "-o", str(again), *extra], timeout, folder)
    if rebuilt["status"] != "ok":
        return {**rebuilt, "status": "rebuild " + rebuilt["status"]}
    if again.read_bytes() != onnx_path.read_bytes():
        return {"status": "ok, different ONNX"}
    return None


def random_inputs(onnx_path: Path) -> list[np.ndarray]:
    inputs, _ = onnx_io(onnx_path)
    rng = np.random.default_rng(INPUT_SEED)
    return [rng.standard_normal(shape).astype(np.float32) for _, shape in inputs]


def replaced(entry: dict, config, plain: dict, common: dict, scratch: Path, timeout: float):
    """A file with Lambda or custom layers: whether the plain build's refusal names each of them,
    and how build, check and import go with the entry's ``replace`` calls."""
    folder, path, weights, shapes = (common[k] for k in ("folder", "path", "weights", "shapes"))
    layers = list(dict.fromkeys([*describe_lambdas(config), *entry.get("replace", {})]))
    named = named_layers(plain.get("_stderr", "")) if plain["status"] == "refused" else set()
    outcome: dict = {"layers": layers, "unnamed": [n for n in layers if n not in named]}
    calls = entry.get("replace", {})
    options = [item for name, call in calls.items() for item in ("--replace", f"{name}={call}")]
    if entry.get("replace_missing"):
        outcome["missing"] = entry["replace_missing"]
    if not calls:
        outcome["status"] = "no replacement"
        return outcome, None
    ident = entry["id"]
    onnx_path = scratch / f"{ident}-replaced.onnx"
    outcome["build"] = convc(
        ["build", str(path), "-o", str(onnx_path), *weights, *shapes, *options], timeout, folder
    )
    outcome["check"] = convc(["check", str(path), *weights, *shapes, *options], timeout, folder)
    conv = scratch / f"{ident}-replaced.conv"
    outcome["import"] = convc(
        ["import", str(path), "-o", str(conv), *shapes, *options], timeout, folder
    )
    if outcome["import"]["status"] == "ok" and outcome["build"]["status"] == "ok":
        if weights:  # convc import takes no --weights: the .conv has no arrays to rebuild with
            outcome["import"]["note"] = "not rebuilt: convc import takes no --weights"
        else:
            outcome["import"] = (
                rebuild_import(conv, onnx_path, [], timeout, folder) or outcome["import"]
            )
    if outcome["unnamed"]:
        outcome["status"] = "refusal does not name " + ", ".join(outcome["unnamed"])
    elif outcome["build"]["status"] == "ok":
        outcome["status"] = "builds with --replace"
    else:
        outcome["status"] = f"{outcome['build']['status']} with --replace"
    ours = None
    if outcome["build"]["status"] == "ok":
        arrays = random_inputs(onnx_path)
        ours = run_onnx(onnx_path, arrays)
        outcome["numpy"] = numpy_comparison(entry, config, arrays, ours, common, scratch, timeout)
    return outcome, ours


def numpy_comparison(entry, config, arrays, ours, common, scratch: Path, timeout: float) -> dict:
    """The replaced model against the same model with its replaced layer an identity, fed the
    inputs that the Lambda's own function (``replace_numpy``) has transformed in NumPy: only
    for a Lambda that is a Sequential model's first layer, whose inputs are the model's."""
    functions = entry.get("replace_numpy", {})
    if len(functions) != 1 or len(entry.get("replace", {})) != 1:
        return {"status": "not compared (Lambda)"}
    ((name, expression),) = functions.items()
    if first_layer(config) != name or expression not in LAMBDA_FUNCTIONS or len(arrays) != 1:
        return {"status": "not compared (Lambda)"}
    folder, path, weights, shapes = (common[k] for k in ("folder", "path", "weights", "shapes"))
    identity = scratch / f"{entry['id']}-identity.onnx"
    built = convc(
        [
            "build",
            str(path),
            "-o",
            str(identity),
            *weights,
            *shapes,
            "--replace",
            f'{name}=Activation("linear")',
        ],
        timeout,
        folder,
    )
    if built["status"] != "ok":
        return {"status": "not compared", "message": built.get("message", "")}
    transformed = LAMBDA_FUNCTIONS[expression](arrays[0].astype(np.float64)).astype(np.float32)
    theirs = run_onnx(identity, [transformed])
    worst_abs = worst_rel = 0.0
    ok = True
    for mine, expected in zip(ours, theirs, strict=True):
        result = compare(mine, expected, DEFAULT_RTOL, DEFAULT_ATOL)
        ok = ok and result.ok
        worst_abs = max(worst_abs, result.max_abs)
        worst_rel = max(worst_rel, result.max_rel)
    return {
        "status": "match" if ok else "differs",
        "function": expression,
        "max_abs": float(f"{worst_abs:.3g}"),
        "max_rel": float(f"{worst_rel:.3g}"),
    }


def measure(entry: dict, folder: Path, scratch: Path, timeout: float) -> dict:
    path = folder / entry["file"]
    weights = ["--weights", str(folder / entry["weights"]["file"])] if "weights" in entry else []
    shapes = [item for s in entry.get("input_shapes", []) for item in ("--input-shape", s)]
    ident = entry["id"]
    onnx_path = scratch / f"{ident}.onnx"
    result: dict = {"id": ident}
    result["build"] = convc(
        ["build", str(path), "-o", str(onnx_path), *weights, *shapes], timeout, folder
    )
    result["check"] = convc(["check", str(path), *weights, *shapes], timeout, folder)
    conv = scratch / f"{ident}.conv"
    result["import"] = convc(["import", str(path), "-o", str(conv), *shapes], timeout, folder)
    if result["import"]["status"] == "ok" and result["build"]["status"] == "ok":
        if weights:  # convc import takes no --weights: the .conv has no arrays to rebuild with
            result["import"]["note"] = "not rebuilt: convc import takes no --weights"
        else:
            result["import"] = (
                rebuild_import(conv, onnx_path, [], timeout, folder) or result["import"]
            )
    config = model_config(path)
    if describe_lambdas(config) or "replace" in entry or "replace_missing" in entry:
        common = {"folder": folder, "path": path, "weights": weights, "shapes": shapes}
        result["replace"], _ = replaced(entry, config, result["build"], common, scratch, timeout)
    for outcome in (result, result.get("replace", {})):
        for step in ("build", "check", "import"):
            if step in outcome:
                outcome[step].pop("stdout", None)
                outcome[step].pop("_stderr", None)
    if result["build"]["status"] == "ok":
        arrays = random_inputs(onnx_path)
        np.savez(scratch / f"{ident}-inputs.npz", **{f"input_{i}": a for i, a in enumerate(arrays)})
        result["_ours"] = run_onnx(onnx_path, arrays)
    return result


def short_source(entry: dict) -> str:
    source = entry["source"]
    if source["type"] == "git":
        return f"{source['repository']}@{source['commit'][:7]}"
    if source["type"] == "pypi":
        return f"{source['package']}=={source['version']} (PyPI)"
    return "local"


def cell(outcome: dict) -> str:
    status = outcome["status"]
    if outcome.get("note"):
        return f"{status} ({outcome['note']})"
    if status in ("match", "differs") and "max_abs" in outcome:
        return f"{status} ({outcome['max_abs']:.1e})"
    if status in ("refused", "crash", "disagrees", "cannot load", "differs") and outcome.get(
        "message"
    ):
        text = outcome["message"].replace("|", "\\|")
        return f"{status}: {text[:90]}{'...' if len(text) > 90 else ''}"
    return status


def cause(message: str) -> str:
    """A message with its particulars (quoted names) blanked, to group by."""
    text = re.sub(r"^[^:]*\.(h5|hdf5|keras|json)(:\d+)*:\s*", "", message)
    text = re.sub(r"'[^']*'|\"[^\"]*\"", "'…'", text)
    return text[:160]


def replaced_cell(r: dict) -> str:
    """What --replace gives a file with Lambda or custom layers: its status, then its check,
    import and NumPy comparison."""
    outcome = r.get("replace")
    if not outcome:
        return ""
    status = outcome["status"]
    if status != "builds with --replace":
        if "build" in outcome and outcome["build"]["status"] != "ok":
            return cell(outcome["build"]) + " (with --replace)"
        if outcome.get("missing"):
            return f"{status}: {outcome['missing'][:90]}..."
        return status
    parts = [status, "check " + cell(outcome["check"]), "import " + cell(outcome["import"])]
    numpy_outcome = outcome.get("numpy", {"status": "not compared (Lambda)"})
    if "function" in numpy_outcome:
        parts.append(f"NumPy `{numpy_outcome['function']}`: {cell(numpy_outcome)}")
    else:
        parts.append(numpy_outcome["status"])
    return "; ".join(parts).replace("|", "\\|")


def passes(r: dict) -> str | None:
    """``built`` or ``replaced`` where the file counts as passing, else None."""
    if r["build"]["status"] == "ok":
        return "built"
    if r.get("replace", {}).get("status") == "builds with --replace":
        return "replaced"
    return None


def framework_matches(r: dict) -> bool:
    frameworks = ("keras", "tf_keras")
    return any(r[f]["status"] == "match" for f in frameworks) and not any(
        r[f]["status"] == "differs" for f in frameworks
    )


GENERATIONS = [
    "Keras 1",
    "Keras 2.0-2.3",
    "tf.keras 1.x-2.3",
    "tf.keras 2.4+",
    "tf.keras 2.13-2.15 (.keras)",
    "Keras 3",
]


def generation_lines(results: list[dict]) -> list[str]:
    lines = [
        "| generation | files | build | build with --replace | match a framework | refused |",
        "|---|---|---|---|---|---|",
    ]
    names = GENERATIONS + sorted({r["generation"] for r in results} - set(GENERATIONS))
    for name in names:
        group = [r for r in results if r["generation"] == name]
        if not group:
            continue
        built = sum(passes(r) == "built" for r in group)
        replaced = sum(passes(r) == "replaced" for r in group)
        matched = sum(passes(r) == "built" and framework_matches(r) for r in group)
        refused = len(group) - built - replaced
        lines.append(f"| {name} | {len(group)} | {built} | {replaced} | {matched} | {refused} |")
    return lines


def render(results: list[dict], header: dict) -> str:
    lines = [
        "# convc on published Keras files",
        "",
        f"convc {header['convc']}, {header['date']}; {header['platform']}. Keras 3: "
        f"{header['keras'] or 'not run'}; tf_keras: {header['tf_keras'] or 'not run'}. "
        "`python benchmarks/corpus/run.py FOLDER --tf-keras-python PATH` "
        "(files: `python benchmarks/corpus/fetch.py FOLDER`; where each comes from: "
        "[sources.json](sources.json)).",
        "",
        "build, check, import: `ok`, `refused` (a located error, its first line), `disagrees` "
        "(check: a layer outside tolerance), `crash` (internal error), `timeout`; import: "
        "`placeholders` (exit 4: the text has a placeholder line for each Lambda or custom "
        "layer). Keras 3, "
        "tf_keras: convc's ONNX outputs against the framework loading the same file, on the same "
        "random inputs, by convc's rule (rtol = atol = 1e-4; the worst absolute error in "
        "brackets); `loads` where convc built nothing to compare; `not run` for a file with "
        "a Lambda layer (the framework would run its code).",
        "",
        "with --replace: a file with Lambda or custom layers passes (`builds with --replace`) "
        "when the plain build's refusal names each such layer and the build with sources.json's "
        "`replace` calls (what the layer computes, read from the model's published source code: "
        "`replace_source`) succeeds; check and import then run with the same calls. As no "
        "framework may load such a file, its outputs are compared instead with the same ONNX "
        "model whose replaced layer is an identity, fed the inputs transformed by the Lambda's "
        "own function in NumPy (`NumPy`), where that layer is the model's first; otherwise `not "
        "compared (Lambda)`.",
        "",
    ]
    total = len(results)
    built = sum(passes(r) == "built" for r in results)
    replaced = sum(passes(r) == "replaced" for r in results)
    matched = sum(passes(r) == "built" and framework_matches(r) for r in results)
    numpy_matched = sum(
        r.get("replace", {}).get("numpy", {}).get("status") == "match" for r in results
    )
    counts = Counter(r["build"]["status"] for r in results if not passes(r))
    per_framework = {
        f: sum(r[f]["status"] == "match" for r in results) for f in ("keras", "tf_keras")
    }
    differ = sum(any(r[f]["status"] == "differs" for f in ("keras", "tf_keras")) for r in results)
    lines.append(
        f"**{total} files: {built} build; {matched} of them match every framework that loads "
        f"them (Keras 3: {per_framework['keras']}, tf_keras: {per_framework['tf_keras']}), "
        f"{differ} differ from one; {replaced} more build with --replace ({numpy_matched} "
        "compared with NumPy); " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) + ".**"
    )
    lines += ["", *generation_lines(results), ""]
    lines.append(
        "| file | source | format | generation | build | check | import | Keras 3 | tf_keras "
        "| with --replace |"
    )
    lines.append("|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        version = f" {r['keras_version']}" if r.get("keras_version") else ""
        lines.append(
            "| "
            + " | ".join(
                [
                    f"{r['id']}" + (f" ({r['kind']})" if r.get("kind") else ""),
                    r["source_short"],
                    r["format"],
                    f"{r['generation']}{version}",
                    cell(r["build"]),
                    cell(r["check"]),
                    cell(r["import"]),
                    cell(r["keras"]),
                    cell(r["tf_keras"]),
                    replaced_cell(r),
                ]
            )
            + " |"
        )
    groups: dict[str, list[str]] = {}
    for r in results:  # each file under the first step that did not succeed
        steps, prefix = r, ""
        if "build" in r.get("replace", {}) and r["build"]["status"] != "ok":
            steps, prefix = r["replace"], "with --replace, "  # what is left once replaced
        for step in ("build", "check", "import"):
            if steps[step]["status"] not in ("ok", "ok, different ONNX"):
                message = cause(steps[step].get("message", ""))
                text = f"{prefix}{step} {steps[step]['status']}: {message}"
                groups.setdefault(text, []).append(r["id"])
                break
    if groups:
        lines += ["", "## What failed, grouped by message", ""]
        lines += ["| files | first step that failed, and its message | which |", "|---|---|---|"]
        for text, ids in sorted(groups.items(), key=lambda item: -len(item[1])):
            lines.append(f"| {len(ids)} | {text.replace('|', '/')} | {', '.join(ids)} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--tf-keras-python", metavar="PATH", help="a Python with tf_keras")
    parser.add_argument(
        "--keras-python", metavar="PATH", default=sys.executable, help="a Python with Keras 3"
    )
    parser.add_argument("--timeout", type=float, default=300, help="seconds per command")
    parser.add_argument(
        "--only", nargs="+", metavar="ID", help="measure these again, keep the other results"
    )
    parser.add_argument(
        "--results", type=Path, default=HERE / "results", help="results path, without suffix"
    )
    args = parser.parse_args(argv)
    folder = args.folder.resolve()
    entries = json.loads((HERE / "sources.json").read_text())["files"]
    files = model_files(folder, entries, set(args.only) if args.only else None)
    results = []
    with tempfile.TemporaryDirectory() as scratch_name:
        scratch = Path(scratch_name)
        for entry in files:
            print(f"{entry['id']} ...", flush=True)
            result = measure(entry, folder, scratch, args.timeout)
            result.update(
                file=entry["file"],
                kind=entry.get("kind", ""),
                source=entry["source"],
                source_short=short_source(entry),
                format=entry["format"],
                generation=entry["generation"],
                keras_version=entry.get("keras_version"),
            )
            print(
                "   "
                + "  ".join(f"{s}: {result[s]['status']}" for s in ("build", "check", "import"))
                + (f"  replace: {result['replace']['status']}" if "replace" in result else ""),
                flush=True,
            )
            results.append(result)
        versions: dict[str, str | None] = {}
        for framework, python in (("keras", args.keras_python), ("tf_keras", args.tf_keras_python)):
            if not python:
                for r in results:
                    r[framework] = {"status": "not run"}
                versions[framework] = None
                continue
            jobs = []
            by_id = {e["id"]: e for e in files}
            for r in results:
                entry = by_id[r["id"]]
                built = "_ours" in r
                jobs.append(
                    {
                        "id": r["id"],
                        "model": str(folder / entry["file"]),
                        "weights": str(folder / entry["weights"]["file"])
                        if "weights" in entry
                        else None,
                        "inputs": str(scratch / f"{r['id']}-inputs.npz") if built else None,
                        "outputs": str(scratch / f"{r['id']}-{framework}.npz"),
                    }
                )
            print(f"{framework}: {len(jobs)} files ...", flush=True)
            version, records = framework_predictions(python, framework, jobs, args.timeout, scratch)
            versions[framework] = version
            for r in results:
                record = records.get(r["id"])
                outputs = scratch / f"{r['id']}-{framework}.npz"
                if record and record.get("error", "").startswith("RuntimeError: not loaded"):
                    r[framework] = {"status": "not run", "message": record["error"]}
                    continue
                r[framework] = versus(
                    r.get("_ours"), record, outputs if outputs.is_file() else None, folder
                )
    for r in results:
        r.pop("_ours", None)
    json_path = args.results.with_suffix(".json")
    if args.only and json_path.is_file():  # measured again: the others keep their results
        fresh = {r["id"]: r for r in results}
        previous = json.loads(json_path.read_text())["files"]
        results = [fresh.pop(r["id"], r) for r in previous] + list(fresh.values())
    header = {
        "convc": git_commit(),
        "date": datetime.date.today().isoformat(),
        "platform": f"{platform.machine()}, Python {platform.python_version()}",
        "keras": versions.get("keras"),
        "tf_keras": versions.get("tf_keras"),
        "command": "python benchmarks/corpus/run.py FOLDER --tf-keras-python PATH",
    }
    args.results.with_suffix(".json").write_text(
        json.dumps({"header": header, "files": results}, indent=1) + "\n"
    )
    args.results.with_suffix(".md").write_text(render(results, header))
    print(f"wrote {args.results.with_suffix('.json')} and {args.results.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

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

from describe import describe  # noqa: E402

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
    if done.returncode == 1:
        status = "disagrees" if "first divergence" in done.stdout else "refused"
        if status == "disagrees":
            message = first_line(done.stdout.split("first divergence", 1)[1], folder)
            message = "first divergence" + message
    else:
        status = "crash"
        message = f"exit {done.returncode}: {message}"
    return {"status": status, "seconds": seconds, "message": message}


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
    if result["import"]["status"] == "ok" and result["build"]["status"] == "ok" and not weights:
        again = scratch / f"{ident}-import.onnx"
        rebuilt = convc(
            ["build", str(conv), "--weights", str(conv.with_suffix(".npz")), "-o", str(again)],
            timeout,
            folder,
        )
        if rebuilt["status"] != "ok":
            result["import"] = {**rebuilt, "status": "rebuild " + rebuilt["status"]}
        elif again.read_bytes() != onnx_path.read_bytes():
            result["import"]["status"] = "ok, different ONNX"
    for step in ("build", "check", "import"):
        result[step].pop("stdout", None)
    if result["build"]["status"] == "ok":
        inputs, _ = onnx_io(onnx_path)
        rng = np.random.default_rng(INPUT_SEED)
        arrays = [rng.standard_normal(shape).astype(np.float32) for _, shape in inputs]
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
        "(check: a layer outside tolerance), `crash` (internal error), `timeout`. Keras 3, "
        "tf_keras: convc's ONNX outputs against the framework loading the same file, on the same "
        "random inputs, by convc's rule (rtol = atol = 1e-4; the worst absolute error in "
        "brackets); `loads` where convc built nothing to compare; `not run` for a file with "
        "a Lambda layer (the framework would run its code).",
        "",
    ]
    total = len(results)
    built = sum(r["build"]["status"] == "ok" for r in results)
    matched = sum(
        r["build"]["status"] == "ok"
        and any(r[f]["status"] == "match" for f in ("keras", "tf_keras"))
        and not any(r[f]["status"] == "differs" for f in ("keras", "tf_keras"))
        for r in results
    )
    counts = Counter(r["build"]["status"] for r in results)
    per_framework = {
        f: sum(r[f]["status"] == "match" for r in results) for f in ("keras", "tf_keras")
    }
    differ = sum(any(r[f]["status"] == "differs" for f in ("keras", "tf_keras")) for r in results)
    lines.append(
        f"**{total} files: {built} build; {matched} of them match every framework that loads "
        f"them (Keras 3: {per_framework['keras']}, tf_keras: {per_framework['tf_keras']}), "
        f"{differ} differ from one; "
        + ", ".join(f"{n} {s}" for s, n in sorted(counts.items()) if s != "ok")
        + ".**"
    )
    lines.append("")
    lines.append(
        "| file | source | format | generation | build | check | import | Keras 3 | tf_keras |"
    )
    lines.append("|---|---|---|---|---|---|---|---|---|")
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
                ]
            )
            + " |"
        )
    groups: dict[str, list[str]] = {}
    for r in results:  # each file under the first step that did not succeed
        for step in ("build", "check", "import"):
            if r[step]["status"] not in ("ok", "ok, different ONNX"):
                text = f"{step} {r[step]['status']}: {cause(r[step].get('message', ''))}"
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
                + "  ".join(f"{s}: {result[s]['status']}" for s in ("build", "check", "import")),
                flush=True,
            )
            results.append(result)
        versions = {}
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

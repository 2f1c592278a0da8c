"""Random model files written by the frameworks themselves, built by convc and compared (#24).

    python benchmarks/corpus/random_files.py [--count N] [--seed S] [--tf-keras-python PATH]
                                             [--frameworks keras tf_keras] [--keep DIR]

The architectures are the random functional graphs of tests/test_random_graphs.py (every merge,
shared layers, mixed data formats, the conv, pooling, normalization, core and activation layers,
classifier heads, several inputs and outputs), drawn with a fixed seed. Each is built by the
framework, given random weights in every variable (biases and BatchNormalization statistics
too: ``oracle.random_weights``' recipe, scaled by fan-in, variances positive), saved in every
format the framework writes, and each file is given to ``convc.build``; convc's model runs in
ONNX Runtime on the inputs the framework predicted on (seeded, standard normal, batch 2) and is
compared with the framework's prediction by convc's rule (``convc.compare``, rtol = atol = 1e-4).

* Keras 3 (this environment, JAX backend: where Keras 3's backends disagree, convc computes what
  JAX and TensorFlow compute, and a file does not say which backend wrote it): ``.keras``,
  legacy ``.h5``, and ``to_json()`` with ``save_weights(".weights.h5")``.
* tf_keras (``--tf-keras-python``, a separate environment with ``tf_keras`` and
  ``tensorflow-cpu``; never a dependency of convc): ``.h5``, ``.keras``, and ``to_json()`` with
  ``save_weights(".h5")``. The graphs are written in Keras 3's spelling; the few arguments that
  tf_keras spells differently are translated, and a graph that tf_keras still cannot build is
  counted as such (it is no file, and no test of convc).

Each file ends as ``match``, ``differs`` (built, numbers outside tolerance), ``refused`` (a
ConvcError), ``crash`` (any other exception) or ``no file`` (the framework could not build or
save it). The summary groups refusals and crashes by message. Results go to
benchmarks/corpus/random_results.json and random_results.md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import subprocess
import sys
import tempfile
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
for folder in (REPO, REPO / "tests", HERE):
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))

os.environ.setdefault("KERAS_BACKEND", "jax")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

FORMATS = {"keras": ["keras", "h5", "json"], "tf_keras": ["h5", "keras", "json"]}
"""The files each framework writes: a ``.keras`` archive, a legacy ``.h5`` model, and the JSON of
``to_json()`` with the weights ``save_weights`` writes (``.weights.h5`` for Keras 3, the Keras 2
HDF5 layout for tf_keras)."""


def draw_texts(count: int, seed: int) -> list[str]:
    """``count`` graphs of tests/test_random_graphs.py, the same ones for the same seed."""
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import seed as hypothesis_seed
    from test_random_graphs import graphs

    texts: list[str] = []

    @hypothesis_seed(seed)
    @settings(
        max_examples=count,
        database=None,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(graphs())
    def collect(text: str) -> None:
        if text not in texts:
            texts.append(text)

    collect()
    return texts[:count]


def python_source(text: str) -> str:
    """The .conv text as the Python a framework runs: statements as written, a ``data_format``
    directive as the call that sets it (as tests/oracle.py runs functional text), convc's
    ``same_torch`` (which the random graphs draw for Keras on torch) as Keras's ``same``, what the
    frameworks here compute as convc's ``same``."""
    from convc.syntax import Directive, parse

    program = parse(text)
    source = text if text.endswith("\n") else text + "\n"
    lines = []
    for statement in program.statements:
        if isinstance(statement, Directive):
            if statement.name == "data_format":
                lines.append(f"keras.config.set_image_data_format({statement.value!r})")
            continue
        lines.append(source[statement.span.start : statement.span.end])
    return re.sub(r"(['\"])same_torch\1", r"\1same\1", "\n".join(lines) + "\n")


# -- Keras 3, in this process ------------------------------------------------------------------


def keras_files(text: str, folder: Path, stem: str) -> dict:
    """Build ``text`` in Keras 3 with random weights, save it in each format, predict. Returns
    ``{"files": {format: (model path, weights path or None)}, "inputs": [...], "outputs": [...]}``
    or ``{"error": message}``."""
    import keras

    from oracle import inputs_for, keras_model, keras_outputs, random_weights

    try:
        model = keras_model(text)
        random_weights(model, seed=0)
        xs = inputs_for(model, batch=2)
        expected = keras_outputs(model, xs)
    except Exception as error:  # noqa: BLE001 - the framework's own failure, counted
        return {"error": f"Keras 3 cannot build it: {type(error).__name__}: {error}"[:300]}
    files: dict[str, tuple[Path, Path | None]] = {}
    for form in FORMATS["keras"]:
        try:
            if form == "json":
                path, weights = folder / f"{stem}.json", folder / f"{stem}.weights.h5"
                path.write_text(model.to_json())
                model.save_weights(weights)
                files[form] = (path, weights)
            else:
                path = folder / f"{stem}.{form}"
                model.save(path)
                files[form] = (path, None)
        except Exception as error:  # noqa: BLE001
            files[form] = (Path(f"error: {type(error).__name__}: {error}"[:300]), None)
    names = [t._keras_history.operation.name for t in model.inputs]
    keras.backend.clear_session()
    return {"files": files, "inputs": dict(zip(names, xs, strict=True)), "outputs": expected}


# -- tf_keras, in its own environment -----------------------------------------------------------


def tf_keras_spelling(source: str) -> str:
    """Keras 3 spellings that tf_keras writes differently, where they mean the same."""
    source = re.sub(r"LeakyReLU\(negative_slope=", "LeakyReLU(alpha=", source)
    return source


def tf_keras_files(
    python: str, texts: dict[str, str], folder: Path, timeout: float
) -> tuple[str | None, dict[str, dict]]:
    """Build, weight, save and run every text in tf_keras; by stem, as keras_files returns."""
    jobs = [
        {"stem": stem, "source": tf_keras_spelling(python_source(t))} for stem, t in texts.items()
    ]
    (folder / "jobs.json").write_text(json.dumps(jobs))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    try:
        done = subprocess.run(
            [python, str(HERE / "tf_keras_worker.py"), str(folder / "jobs.json"), str(folder)],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
        )
        out = done.stdout
    except subprocess.TimeoutExpired as expired:
        out = expired.stdout.decode() if isinstance(expired.stdout, bytes) else ""
    version, results = None, {}
    for line in out.splitlines():
        if not line.startswith("{"):
            continue
        record = json.loads(line)
        if "version" in record:
            version = record["version"]
            continue
        stem = record["stem"]
        if "error" in record:
            results[stem] = {"error": record["error"]}
            continue
        with np.load(folder / f"{stem}-io.npz") as data:
            names = record["input_names"]
            inputs = {name: data[f"input_{i}"] for i, name in enumerate(names)}
            n = sum(k.startswith("output_") for k in data.files)
            outputs = [data[f"output_{i}"] for i in range(n)]
        files = {
            form: (Path(p), Path(w) if w else None) for form, (p, w) in record["files"].items()
        }
        results[stem] = {"files": files, "inputs": inputs, "outputs": outputs}
    for stem in texts:
        results.setdefault(stem, {"error": "the tf_keras process ended before this graph"})
    return version, results


# -- convc --------------------------------------------------------------------------------------


def convc_outcome(path: Path, weights: Path | None, inputs, expected) -> dict:
    """convc.build of one file, run in ONNX Runtime on ``inputs`` (by the framework's input
    names, which convc keeps), against ``expected``."""
    import onnxruntime as ort

    import convc
    from convc.compare import DEFAULT_ATOL, DEFAULT_RTOL, compare

    if str(path).startswith("error: "):
        return {"status": "no file", "message": str(path)[len("error: ") :]}
    try:
        proto = convc.build(path, weights)
    except convc.ConvcError as error:
        return {"status": "refused", "message": str(error.message).splitlines()[0][:300]}
    except Exception as error:  # noqa: BLE001 - a convc bug, counted as a crash
        return {"status": "crash", "message": f"{type(error).__name__}: {error}"[:300]}
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    try:
        session = ort.InferenceSession(
            proto.SerializeToString(), options, providers=["CPUExecutionProvider"]
        )
    except Exception as error:  # noqa: BLE001 - a model onnxruntime cannot load: convc's bug
        message = str(error).splitlines()[0] if str(error) else ""
        return {"status": "crash", "message": f"onnxruntime cannot load it: {message}"[:300]}
    names = [i.name for i in session.get_inputs()]
    if sorted(names) != sorted(inputs):
        return {"status": "differs", "message": f"inputs {names}, framework {sorted(inputs)}"}
    actual = session.run(None, {name: inputs[name] for name in names})
    if len(actual) != len(expected):
        return {"status": "differs", "message": f"{len(actual)} outputs, framework {len(expected)}"}
    worst = 0.0
    for mine, theirs in zip(actual, expected, strict=True):
        if mine.shape != theirs.shape:
            return {"status": "differs", "message": f"shape {mine.shape}, framework {theirs.shape}"}
        result = compare(mine, np.asarray(theirs, np.float32), DEFAULT_RTOL, DEFAULT_ATOL)
        worst = max(worst, result.max_abs)
        if not result.ok:
            return {"status": "differs", "max_abs": result.max_abs}
    return {"status": "match", "max_abs": worst}


def cause(message: str) -> str:
    """A message with quoted names and numbers blanked, to group failures by."""
    lines = [line for line in message.splitlines() if line.strip()]
    text = re.sub(r"'[^']*'|\"[^\"]*\"", "'…'", lines[0] if lines else "")
    text = re.sub(r"\(\d+(, \d+)*,?\)|\[\d+(, \d+)*\]|\b\d+(\.\d+)?(e-?\d+)?\b", "N", text)
    return text[:150]


def evaluate(framework: str, built: dict[str, dict], texts: dict[str, str]) -> list[dict]:
    """convc on every file of every graph one framework built."""
    rows = []
    for stem, record in built.items():
        if "error" in record:
            for form in FORMATS[framework]:
                rows.append(
                    {
                        "framework": framework,
                        "graph": stem,
                        "format": form,
                        "status": "no file",
                        "message": record["error"],
                    }
                )
            continue
        for form, (path, weights) in record["files"].items():
            outcome = convc_outcome(path, weights, record["inputs"], record["outputs"])
            rows.append({"framework": framework, "graph": stem, "format": form, **outcome})
    return rows


def summarize(rows: list[dict], header: dict, texts: dict[str, str]) -> str:
    lines = [
        "# Random files from the frameworks, built by convc",
        "",
        f"convc {header['convc']}, {header['date']}; seed {header['seed']}, {header['count']} "
        f"graphs; Keras {header.get('keras') or 'not run'}, tf_keras "
        f"{header.get('tf_keras') or 'not run'}. `{header['command']}`",
        "",
        "| framework | format | files | match | differs | refused | crash | no file |",
        "|---|---|---|---|---|---|---|---|",
    ]
    table: dict[tuple[str, str], Counter] = defaultdict(Counter)
    for row in rows:
        table[(row["framework"], row["format"])][row["status"]] += 1
    for (framework, form), counts in table.items():
        total = sum(counts.values())
        cells = [counts[s] for s in ("match", "differs", "refused", "crash", "no file")]
        lines.append(f"| {framework} | {form} | {total} | " + " | ".join(map(str, cells)) + " |")
    groups: dict[str, list[str]] = defaultdict(list)
    for row in rows:
        if row["status"] in ("refused", "crash", "differs", "no file"):
            key = f"{row['framework']} {row['status']}: {cause(row.get('message', ''))}"
            groups[key].append(f"{row['graph']}.{row['format']}")
    if groups:
        lines += ["", "## Failures by class", "", "| files | class | examples |", "|---|---|---|"]
        for key, where in sorted(groups.items(), key=lambda item: -len(item[1])):
            lines.append(f"| {len(where)} | {key.replace('|', '/')} | {', '.join(where[:4])} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=300, help="graphs to draw")
    parser.add_argument("--seed", type=int, default=24)
    parser.add_argument("--frameworks", nargs="+", default=["keras", "tf_keras"])
    parser.add_argument("--tf-keras-python", metavar="PATH")
    parser.add_argument("--keep", type=Path, metavar="DIR", help="keep the files here")
    parser.add_argument("--results", type=Path, default=HERE / "random_results")
    args = parser.parse_args(argv)
    from run import git_commit

    texts = {f"g{i:03d}": t for i, t in enumerate(draw_texts(args.count, args.seed))}
    header = {
        "convc": git_commit(),
        "date": datetime.date.today().isoformat(),
        "seed": args.seed,
        "count": len(texts),
        "command": "python benchmarks/corpus/random_files.py "
        f"--count {args.count} --seed {args.seed} --tf-keras-python PATH",
    }
    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as scratch:
        root = args.keep or Path(scratch)
        if "keras" in args.frameworks:
            import keras

            header["keras"] = keras.__version__
            folder = root / "keras"
            folder.mkdir(parents=True, exist_ok=True)
            built = {stem: keras_files(text, folder, stem) for stem, text in texts.items()}
            rows += evaluate("keras", built, texts)
            print(f"keras: {Counter(r['status'] for r in rows if r['framework'] == 'keras')}")
        if "tf_keras" in args.frameworks:
            if not args.tf_keras_python:
                parser.error("tf_keras needs --tf-keras-python PATH")
            folder = root / "tf_keras"
            folder.mkdir(parents=True, exist_ok=True)
            version, built = tf_keras_files(
                args.tf_keras_python, texts, folder, timeout=30 * len(texts) + 120
            )
            header["tf_keras"] = version
            new = evaluate("tf_keras", built, texts)
            rows += new
            print(f"tf_keras: {Counter(r['status'] for r in new)}")
    args.results.with_suffix(".json").write_text(
        json.dumps({"header": header, "files": rows, "graphs": texts}, indent=1) + "\n"
    )
    args.results.with_suffix(".md").write_text(summarize(rows, header, texts))
    print(f"wrote {args.results.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""convc on Keras's own architectures: imported from .keras beside Keras 3's own ONNX export.

    python benchmarks/applications.py [--nets NAME ...] [--size N] [--blocks N]

Needs the exporters' environment (``bash benchmarks/exporters/setup.sh torch``). For each
``keras.applications`` architecture (random weights, BatchNormalization statistics included):

* the exporters' environment makes the model and saves it as ``.keras`` with an input and
  Keras's output for it; a second process loads the .keras and exports it with
  ``model.export(format="onnx")`` (Keras 3, torch backend): the launch-to-file time of that
  process is recorded, and an export that fails is recorded with its error;
* ``convc build NAME.keras`` as a whole process (median of 3) and its peak memory;
* both models' outputs are compared with Keras's before anything is timed;
* nodes and Transposes of each, and their latency in ONNX Runtime (CPU, batch 1, one shared
  pool of 2 threads), timed in blocks round-robin in one process: median, p10, p90.

Results go to benchmarks/applications.json and benchmarks/applications.md.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import (  # noqa: E402
    HERE,
    THREADS,
    exporter_python,
    git_commit,
    graph_counts,
    latency_summary,
    ort_latency,
    ort_outputs,
    set_thread_pool,
    timed_process,
)

CORPUS = [
    "VGG16",
    "VGG19",
    "ResNet50",
    "ResNet50V2",
    "ResNet101",
    "InceptionV3",
    "InceptionResNetV2",
    "Xception",
    "MobileNet",
    "MobileNetV2",
    "MobileNetV3Small",
    "MobileNetV3Large",
    "DenseNet121",
    "EfficientNetB0",
    "EfficientNetV2B0",
    "ConvNeXtTiny",
]
DEFAULT_SIZES = {"InceptionV3": 299, "InceptionResNetV2": 299, "Xception": 299}
EXPORT_SCRIPT = HERE / "exporters" / "applications_export.py"
TOLERANCE = (1e-4, 1e-4)


def exporter_process(python: Path, args: list[str], scratch: Path):
    """One run of exporters/applications_export.py: its wall time and the finished process."""
    env = {"PATH": "/usr/bin:/bin", "HOME": str(scratch)}
    start = time.perf_counter()
    done = subprocess.run(
        [str(python), str(EXPORT_SCRIPT), *args], capture_output=True, text=True, env=env
    )
    return time.perf_counter() - start, done


def export(python: Path, name: str, size: int, scratch: Path) -> tuple[float, dict]:
    """Make NAME.keras and NAME.npz, then Keras's own export of the .keras file (torch backend)
    as a process of its own: its launch-to-file time and its report, or its error."""
    _, done = exporter_process(python, ["make", name, str(size), str(scratch)], scratch)
    if done.returncode != 0:
        raise RuntimeError(f"making {name} failed: {done.stderr.strip().splitlines()[-1:]}")
    source, onnx_path = scratch / f"{name}.keras", scratch / f"{name}.keras-export.onnx"
    args = ["export", str(source), str(onnx_path), "--exporter", "keras-torch"]
    wall, done = exporter_process(python, args, scratch)
    if done.returncode != 0:  # a peer that fails is recorded with its error, not dropped
        lines = done.stderr.strip().splitlines() or [f"exit status {done.returncode}"]
        return wall, {"error": lines[-1][:300]}
    return wall, json.loads(done.stdout.strip().splitlines()[-1])


def agrees(output: np.ndarray, expected: np.ndarray) -> tuple[bool, float]:
    atol, rtol = TOLERANCE
    error = np.abs(output - expected)
    return bool(np.all(error <= atol + rtol * np.abs(expected))), float(error.max())


def measure(name: str, size: int, python: Path, scratch: Path, blocks: int) -> dict:
    export_wall, report = export(python, name, size, scratch)
    source = scratch / f"{name}.keras"
    data = np.load(scratch / f"{name}.npz")
    x, expected = data["x"], data["y"]
    convc_model = scratch / f"{name}.onnx"
    build_s, peak_kib = timed_process(["build", str(source), "-o", str(convc_model)], 3)
    result: dict = {
        "commit": git_commit(),
        "size": size,
        "keras_file_mb": round(source.stat().st_size / 2**20, 1),
        "convc": {"build_s": round(build_s, 3), "peak_mb": round(peak_kib / 1024, 1)},
        "keras_export": {"process_s": round(export_wall, 3), **report},
    }
    models = {"convc": (convc_model, "channels_last")}
    keras_model = scratch / f"{name}.keras-export.onnx"
    if "error" not in report and keras_model.exists():
        models["keras_export"] = (keras_model, "channels_last")
    for label, (path, _) in models.items():
        nodes, transposes = graph_counts(path)
        result[label].update(nodes=nodes, transposes=transposes)
    outputs = ort_outputs(models, x)
    samples = ort_latency(models, x, runs=20 * blocks, warmup=3, blocks=blocks)
    for label, output in outputs.items():
        ok, error = agrees(output, expected)
        result[label]["agrees_with_keras"] = ok
        result[label]["max_abs_error"] = float(f"{error:.3g}")
        summary, _ = latency_summary(samples[label], 0.0, blocks)
        result[label]["latency_ms"] = summary
    if "keras_export" in models:
        result["latency_ratio"] = round(
            result["convc"]["latency_ms"]["median"]
            / result["keras_export"]["latency_ms"]["median"],
            3,
        )
    for path in scratch.iterdir():
        if path.is_file():
            path.unlink()
    return result


def markdown(results: dict) -> str:
    lines = [
        "# keras.applications: convc beside Keras 3's own ONNX export",
        "",
        f"Commit {results['commit']}, {results['date']}; {results['machine']} (a net measured "
        "in an earlier run with --add keeps its own commit in applications.json). "
        f"onnxruntime {results['onnxruntime']}, CPU, batch 1, {THREADS} threads; "
        "`python benchmarks/applications.py`. Latency: median of the timed runs (ms); "
        "ratio: convc / Keras export. Build: `convc build NAME.keras` as a whole process; "
        "Keras export: launch to file of a process that loads the .keras and calls "
        '`model.export(format="onnx")` (torch backend).',
        "",
        "| net | input | convc nodes | Transposes | Keras export nodes | Transposes | "
        "convc ms | Keras export ms | ratio | convc build s | peak MB | Keras export s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in results["nets"].items():
        c, k = r["convc"], r["keras_export"]
        failed = "error" in k
        lines.append(
            f"| {name} | {r['size']} | {c['nodes']} | {c['transposes']} | "
            + ("failed | - | " if failed else f"{k['nodes']} | {k['transposes']} | ")
            + f"{c['latency_ms']['median']:.2f} | "
            + (
                "- | - | "
                if failed
                else f"{k['latency_ms']['median']:.2f} | {r['latency_ratio']} | "
            )
            + f"{c['build_s']:.2f} | {c['peak_mb']:.0f} | "
            + (f"{k['process_s']:.1f} |")
        )
    failures = {
        n: r["keras_export"]["error"]
        for n, r in results["nets"].items()
        if "error" in r["keras_export"]
    }
    if failures:
        lines += ["", "Keras export failures:", ""]
        lines += [f"* {name}: `{error}`" for name, error in failures.items()]
    disagreements = [
        f"{n} ({label})"
        for n, r in results["nets"].items()
        for label in ("convc", "keras_export")
        if r[label].get("agrees_with_keras") is False
    ]
    lines += [
        "",
        "Every model listed was compared with Keras's output on the benchmark's input before "
        "it was timed (1e-4 + 1e-4 relative)"
        + (f"; these disagreed: {', '.join(disagreements)}." if disagreements else ": all agree."),
    ]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nets", nargs="+", default=CORPUS, choices=CORPUS, metavar="NAME")
    parser.add_argument("--size", type=int, help="input size (default: each net's own)")
    parser.add_argument("--blocks", type=int, default=5)
    parser.add_argument(
        "--add",
        action="store_true",
        help="keep the other nets of benchmarks/applications.json (each net is measured in one "
        "run, side by side with its peer)",
    )
    args = parser.parse_args()
    python = exporter_python("keras-torch")
    if python is None:
        print("run `bash benchmarks/exporters/setup.sh torch` first", file=sys.stderr)
        return 2
    import onnxruntime

    set_thread_pool()
    results = {
        "commit": git_commit(),
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {len(__import__('os').sched_getaffinity(0))} cores",
        "onnxruntime": onnxruntime.__version__,
        "nets": {},
    }
    saved = HERE / "applications.json"
    if args.add and saved.exists():
        results["nets"] = json.loads(saved.read_text())["nets"]
    with tempfile.TemporaryDirectory() as scratch:
        for name in args.nets:
            size = args.size or DEFAULT_SIZES.get(name, 224)
            print(f"{name} at {size}...", file=sys.stderr, flush=True)
            results["nets"][name] = measure(name, size, python, Path(scratch), args.blocks)
            write(results)  # after each net: a long run that stops keeps what it measured
    print(markdown(results))
    return 0


def write(results: dict) -> None:
    ratios = [r["latency_ratio"] for r in results["nets"].values() if "latency_ratio" in r]
    if ratios:
        results["geomean_latency_ratio"] = round(statistics.geometric_mean(ratios), 3)
    (HERE / "applications.json").write_text(json.dumps(results, indent=2) + "\n")
    (HERE / "applications.md").write_text(markdown(results))


if __name__ == "__main__":
    sys.exit(main())

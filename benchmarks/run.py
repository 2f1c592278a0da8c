"""convc's speed benchmark: the compiler, the emitted models in ONNX Runtime, and the reference.

    python benchmarks/run.py [--quick] [--nets NAME ...]

For each net in benchmarks/nets/ (the five reference nets, unchanged) it measures:

* ``convc build`` as a whole process, launch to written .onnx (median of 5), and its peak
  resident memory;
* the emitted model: node count, Transposes, and its latency in ONNX Runtime on the CPU
  (batch 1, default session options, 2 intra-op threads; warm-up, then timed runs in blocks,
  round-robin across the models of a net so that drift hits all alike): median, p10, p90 and
  GFLOP/s (FLOPs are 2 x multiply-adds of the convolutions);
* ``convc check`` as a whole process, and its ratio to one ORT inference;
* build time of generated stacks of 1,000 and 10,000 layers (linear scaling).

Exporters other than convc are not installed here; the Markdown table quotes the figures the
speed issue gives for the fastest exporter per net (measured on this kind of machine, not in
this run), and says so. Results go to benchmarks/results.json and benchmarks/results.md.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
NETS = HERE / "nets"

# The fastest exporter per net, from the speed issue (2 cores, onnxruntime 1.32 CPU, batch 1).
EXPORTERS = {
    "unet_like2d": {"gflop": 0.52, "ms": 4.7, "nodes": 16, "export_s": 3.4},
    "mobilenet_like": {"gflop": 0.56, "ms": 3.7, "nodes": 24, "export_s": 3.8},
    "wavenet_like1d": {"gflop": 0.66, "ms": 9.3, "nodes": 24, "export_s": 4.3},
    "volume3d": {"gflop": 2.26, "ms": 89.0, "nodes": 11, "export_s": 4.8},
    "deep_stack2d": {"gflop": 3.77, "ms": 32.0, "nodes": 402, "export_s": 12.6},
}

_MEASURE_BUILD = (
    "import resource, sys; from convc.cli import main; code = main(sys.argv[1:]); "
    "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr); sys.exit(code)"
)


def timed_process(args: list[str], repeats: int) -> tuple[float, int]:
    """Median wall time of a convc command as a fresh process, and its peak RSS (KiB)."""
    times, peak = [], 0
    for _ in range(repeats):
        start = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-c", _MEASURE_BUILD, *args], capture_output=True, text=True
        )
        times.append(time.perf_counter() - start)
        if done.returncode not in (0, 1):
            raise RuntimeError(f"convc {' '.join(args)} failed:\n{done.stderr}")
        peak = max(peak, int(done.stderr.strip().splitlines()[-1]))
    return statistics.median(times), peak


def gflop(model) -> float:
    """2 x multiply-adds of the convolution layers, batch 1."""
    total = 0
    for layer in model.layers:
        c = layer.config
        kernel = math.prod(c.get("kernel_size", (1,)))
        first = c.get("data_format") == "channels_first"
        in_spatial = layer.input_shape[2:] if first else layer.input_shape[1:-1]
        out_positions = math.prod(layer.output_shape[2:] if first else layer.output_shape[1:-1])
        cin = layer.input_shape[1] if first else layer.input_shape[-1]
        if layer.family == "conv":
            total += out_positions * c["filters"] * kernel * cin // c["groups"]
        elif layer.family == "conv_transpose":
            total += math.prod(in_spatial) * cin * c["filters"] * kernel
        elif layer.family == "depthwise":
            total += out_positions * cin * c["depth_multiplier"] * kernel
        elif layer.family == "separable":
            total += out_positions * cin * c["depth_multiplier"] * (kernel + c["filters"])
    return 2 * total / 1e9


def ort_latency(model_path: Path, runs: int, warmup: int) -> list[float]:
    import numpy as np
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    session = ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
    spec = session.get_inputs()[0]
    x = (
        np.random.default_rng(0)
        .standard_normal([d if isinstance(d, int) else 1 for d in spec.shape])
        .astype(np.float32)
    )
    feed = {spec.name: x}
    for _ in range(warmup):
        session.run(None, feed)
    samples = []
    blocks = 5
    for _ in range(blocks):  # one model per net here; blocks keep the protocol of the issue
        for _ in range(max(1, runs // blocks)):
            start = time.perf_counter()
            session.run(None, feed)
            samples.append((time.perf_counter() - start) * 1000)
    return samples


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = (len(ordered) - 1) * q
    low, high = math.floor(index), math.ceil(index)
    return ordered[low] + (ordered[high] - ordered[low]) * (index - low)


def stack_text(layers: int) -> str:
    return "Input(shape=(32, 8))\n" + "Conv1D(8, 3, padding='same', activation='relu')\n" * layers


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats (a smoke run)")
    parser.add_argument("--nets", nargs="*", default=None, help="only these nets")
    args = parser.parse_args()
    sys.path.insert(0, str(HERE.parent))
    import onnx

    from convc.compiler import resolve_text

    repeats, runs, warmup = (2, 20, 3) if args.quick else (5, 200, 20)
    nets = sorted(NETS.glob("*.conv"))
    if args.nets:
        nets = [n for n in nets if n.stem in args.nets]
    results: dict = {"nets": {}, "scaling": {}, "skipped": []}
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        for net in nets:
            out = scratch / f"{net.stem}.onnx"
            build_s, build_kib = timed_process(["build", str(net), "-o", str(out)], repeats)
            proto = onnx.load(out)
            model = resolve_text(net.read_text())
            latency = ort_latency(out, runs, warmup)
            median = statistics.median(latency)
            check_s, _ = timed_process(["check", str(net)], max(1, repeats // 2))
            work = gflop(model)
            results["nets"][net.stem] = {
                "gflop": round(work, 3),
                "build_s": round(build_s, 3),
                "build_peak_mib": round(build_kib / 1024, 1),
                "weights_mib": round(model.parameter_count * 4 / 2**20, 2),
                "nodes": len(proto.graph.node),
                "transposes": sum(n.op_type == "Transpose" for n in proto.graph.node),
                "ort_ms": {
                    "median": round(median, 3),
                    "p10": round(percentile(latency, 0.1), 3),
                    "p90": round(percentile(latency, 0.9), 3),
                    "runs": len(latency),
                },
                "gflops_per_s": round(work / (median / 1000), 1),
                "check_s": round(check_s, 3),
                "check_over_ort": round(check_s / (median / 1000), 1),
            }
            print(
                f"{net.stem}: build {build_s:.2f} s, {len(proto.graph.node)} nodes, "
                f"ORT {median:.2f} ms",
                flush=True,
            )
        for layers in (1_000, 10_000):
            source = scratch / f"stack{layers}.conv"
            source.write_text(stack_text(layers))
            build_s, build_kib = timed_process(
                ["build", str(source), "-o", str(scratch / "s.onnx")], 1
            )
            results["scaling"][str(layers)] = {
                "build_s": round(build_s, 2),
                "peak_mib": round(build_kib / 1024, 1),
            }
            print(
                f"{layers}-layer stack: build {build_s:.2f} s, peak {build_kib / 1024:.0f} MiB",
                flush=True,
            )
    results["skipped"].append(
        "other exporters (torch.onnx, tf2onnx) are not installed in this environment; the table "
        "quotes the speed issue's figures for the fastest exporter per net, not measured in "
        "this run"
    )
    import onnxruntime

    results["machine"] = {
        "date": time.strftime("%Y-%m-%d"),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "processor": platform.processor() or platform.machine(),
        "onnxruntime": onnxruntime.__version__,
        "onnx": onnx.__version__,
        "command": "python benchmarks/run.py" + (" --quick" if args.quick else ""),
    }
    (HERE / "results.json").write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    (HERE / "results.md").write_text(markdown(results))
    print(markdown(results))
    return 0


def markdown(results: dict) -> str:
    m = results["machine"]
    lines = [
        f"Measured {m['date']} with `{m['command']}`: {m['cpu_count']} cores, "
        f"Python {m['python']}, "
        f"onnxruntime {m['onnxruntime']} (CPU, 2 intra-op threads, batch 1).",
        "",
        "| net | GFLOP | convc build (process) | build peak | nodes (fewest exporter) | transposes "
        "| ORT median [p10, p90] | GFLOP/s | fastest exporter (issue) | check | check / ORT |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in results["nets"].items():
        exporter = EXPORTERS.get(name, {})
        o = r["ort_ms"]
        lines.append(
            f"| {name} | {r['gflop']:.2f} | {r['build_s']:.2f} s | {r['build_peak_mib']:.0f} MiB "
            f"| {r['nodes']} ({exporter.get('nodes', '?')}) | {r['transposes']} "
            f"| {o['median']:.2f} ms [{o['p10']:.2f}, {o['p90']:.2f}] | {r['gflops_per_s']:.0f} "
            f"| {exporter.get('ms', '?')} ms, export {exporter.get('export_s', '?')} s "
            f"| {r['check_s']:.2f} s | {r['check_over_ort']:.0f}x |"
        )
    lines.append("")
    for layers, r in results["scaling"].items():
        lines.append(
            f"- a {int(layers):,}-layer Conv1D stack builds in {r['build_s']:.2f} s, "
            f"peak {r['peak_mib']:.0f} MiB"
        )
    for note in results["skipped"]:
        lines.append(f"- skipped: {note}")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
